//! CLIP-L and T5 text-encoder exports against transformers (goldens in tests/fixtures/pipeline,
//! tools/reference/make_pipeline_fixtures.py): ONNX Runtime (CPU, the `ort` crate on the
//! library in Python's onnxruntime or ORT_DYLIB_PATH) on the golden token ids, with and without
//! the CLIP LoRA in its slots (PEFT and kohya files); `onnx.checker`; the engine-folder layout
//! of `export_text_encoders`; typed errors for bad inputs.
//!
//! Bound: max|Δ| / max|golden| < 1e-5 in fp32 (observed ~1e-7: the graphs follow transformers
//! op for op; the remaining difference is summation order in GEMMs and softmax).
#![cfg(all(feature = "export", feature = "ort"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flux_trt::checkpoint::CheckpointError;
use flux_trt::lora::plan::PlanOptions;
use flux_trt::lora::{PlanError, SlotPlan, SlotWeights};
use flux_trt::manifest::component::{COPIED_DIRS, TEXT_ENCODER_2_DIR, TEXT_ENCODER_DIR};
use flux_trt::manifest::{ComponentKind, ComponentManifest, IoDType, Precision};
use flux_trt::onnx::components::{clip_config, export_clip, export_t5, export_text_encoders, TextEncoderOptions};
use flux_trt::onnx::OnnxError;
use ort::session::Session;

mod ort_support;
#[cfg(feature = "tensorrt")]
mod trt_support;
use ort::value::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline")
}
fn pipeline() -> PathBuf {
    fixtures().join("flux-tiny")
}

// ------------------------------------------------------------------ helpers

fn ort_env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = ort_support::ort_library();
        ort::init_from(&lib).expect("load onnxruntime").with_name("text-encoders-test").build().expect("ORT environment")
    })
}

/// (shape, data) of every tensor of a golden file; I64 kept as i64, F32 as f32.
struct Goldens {
    bytes: Vec<u8>,
}
impl Goldens {
    fn open(rel: &str) -> Self {
        let p = fixtures().join(rel);
        Goldens { bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) }
    }
    fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("goldens");
        let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
        (v.shape().to_vec(), v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("goldens");
        let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name}");
        (v.shape().to_vec(), v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
    }
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    d / want.iter().map(|v| v.abs()).fold(0.0, f32::max).max(f32::MIN_POSITIVE)
}

const TOL: f32 = 1e-5;

fn session(dir: &Path) -> Session {
    Session::builder(ort_env())
        .expect("builder")
        .with_intra_threads(1)
        .expect("threads")
        .commit_from_file(dir.join("model.onnx"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Runs `dir`'s model on `input_ids` (+ slot feeds) and returns output `out` as (shape, data).
fn run(sess: &mut Session, ids: &(Vec<usize>, Vec<i64>), slots: Option<(&SlotPlan, &SlotWeights)>, out: &str) -> (Vec<usize>, Vec<f32>) {
    let mut feeds: Vec<(String, ort::value::DynValue)> =
        vec![("input_ids".into(), Tensor::from_array((ids.0.clone(), ids.1.clone())).expect("ids").into_dyn())];
    if let Some((plan, w)) = slots {
        for (i, s) in plan.slots.iter().enumerate() {
            feeds.push((s.a_name(), Tensor::from_array((vec![w.a[i].rows, w.a[i].cols], w.a[i].data.clone())).expect("A").into_dyn()));
            feeds.push((s.b_name(), Tensor::from_array((vec![w.b[i].rows, w.b[i].cols], w.b[i].data.clone())).expect("B").into_dyn()));
        }
    }
    let outputs = sess.run(feeds).expect("run");
    let (shape, data) = outputs[out].try_extract_tensor::<f32>().expect("f32 output");
    (shape.iter().map(|d| *d as usize).collect(), data.to_vec())
}

fn opts() -> TextEncoderOptions {
    TextEncoderOptions { hash_sources: false, ..TextEncoderOptions::new(Precision::Fp32) }
}

fn lora(form: &str) -> flux_trt::Adapter {
    flux_trt::lora::load(&fixtures().join(format!("loras/clip.{form}.safetensors"))).unwrap_or_else(|e| panic!("{e}"))
}

/// `onnx.checker.check_model(full_check=True)` on `model` (external data next to it).
fn onnx_check(model: &Path) {
    let out = Command::new("python3")
        .args(["-c", "import sys,onnx;onnx.checker.check_model(sys.argv[1],full_check=True);print('ok')"])
        .arg(model)
        .output()
        .expect("python3");
    assert!(out.status.success(), "onnx.checker on {}: {}", model.display(), String::from_utf8_lossy(&out.stderr));
}

// ------------------------------------------------------------------ parity

#[test]
fn clip_matches_transformers_pooled_output() {
    let dir = tempfile::tempdir().unwrap();
    let m = export_clip(&pipeline().join("text_encoder"), None, &opts(), dir.path()).expect("export");
    assert_eq!(m.kind, ComponentKind::ClipText);
    assert!(m.lora.is_none());
    assert_eq!(m.inputs.len(), 1);
    assert_eq!((m.inputs[0].name.as_str(), m.inputs[0].dtype, m.inputs[0].shape.clone()), ("input_ids", IoDType::I64, vec![None, Some(77)]));
    assert_eq!((m.outputs[0].name.as_str(), m.outputs[0].shape.clone()), ("pooled", vec![None, Some(32)]));
    let g = Goldens::open("generation.safetensors");
    let ids = g.i64("clip_input_ids");
    let want = g.f32("pooled_prompt_embeds");
    let mut s = session(dir.path());
    let got = run(&mut s, &ids, None, "pooled");
    assert_eq!(got.0, want.0);
    let e = rel_err(&got.1, &want.1);
    eprintln!("clip pooled rel err {e:e}");
    assert!(e < TOL, "CLIP pooled rel err {e}");
    onnx_check(&dir.path().join("model.onnx"));
}

#[test]
fn t5_matches_transformers_last_hidden_state() {
    let dir = tempfile::tempdir().unwrap();
    let m = export_t5(&pipeline().join("text_encoder_2"), &opts(), dir.path()).expect("export");
    assert_eq!(m.kind, ComponentKind::T5Encoder);
    assert_eq!(m.t5().map(|c| c.max_length), Some(512));
    assert_eq!((m.outputs[0].name.as_str(), m.outputs[0].shape.clone()), ("last_hidden_state", vec![None, Some(512), Some(32)]));
    let g = Goldens::open("generation.safetensors");
    let ids = g.i64("t5_input_ids");
    let want = g.f32("prompt_embeds");
    let mut s = session(dir.path());
    let got = run(&mut s, &ids, None, "last_hidden_state");
    assert_eq!(got.0, want.0);
    let e = rel_err(&got.1, &want.1);
    eprintln!("t5 rel err {e:e}");
    assert!(e < TOL, "T5 rel err {e}");
    // batch 2: the same sequence twice gives the same rows
    let ids2 = (vec![2, 512], [ids.1.clone(), ids.1.clone()].concat());
    let got2 = run(&mut s, &ids2, None, "last_hidden_state");
    assert_eq!(got2.0, vec![2, 512, 32]);
    assert_eq!(&got2.1[..got.1.len()], &got.1[..]);
    assert_eq!(&got2.1[got.1.len()..], &got.1[..]);
    onnx_check(&dir.path().join("model.onnx"));
}

#[test]
fn clip_lora_slots_match_diffusers_for_peft_and_kohya_files() {
    let cfg = clip_config(&pipeline()).expect("config");
    let peft = lora("peft");
    let kohya = lora("kohya");
    assert_eq!(peft.text_encoder.len(), 12);
    assert!(peft.modules.is_empty() && kohya.modules.is_empty());
    let plan = SlotPlan::for_clip(&cfg, &[&peft], &PlanOptions::default()).expect("plan");
    assert_eq!(plan.max_rank, 4);
    assert_eq!(plan.slots.len(), 12);
    let dir = tempfile::tempdir().unwrap();
    let o = TextEncoderOptions { lora_files: vec![fixtures().join("loras/clip.peft.safetensors")], hash_sources: true, ..opts() };
    let m = export_clip(&pipeline().join("text_encoder"), Some(&plan), &o, dir.path()).expect("export");
    let slots = m.lora.as_ref().expect("slots");
    assert_eq!(slots.plan(), plan);
    assert_eq!(slots.slots[0].a, "lora.text_model.encoder.layers.0.self_attn.q_proj.A");
    assert_eq!(m.sources.iter().map(|s| s.role.as_str()).collect::<Vec<_>>(), ["weights", "lora"]);
    assert!(m.inputs.iter().all(|i| !i.name.starts_with("lora.")), "slots are not listed as data inputs");
    let reloaded = ComponentManifest::load_kind(dir.path(), ComponentKind::ClipText).expect("reload");
    assert_eq!(reloaded, m);

    let base = Goldens::open("generation.safetensors");
    let ids = base.i64("clip_input_ids");
    let want_base = base.f32("pooled_prompt_embeds");
    let want_lora = Goldens::open("generation_clip_lora.safetensors").f32("pooled_prompt_embeds");
    let mut s = session(dir.path());
    // defaults (zero slots) and explicit zeros: the base model
    let e = rel_err(&run(&mut s, &ids, None, "pooled").1, &want_base.1);
    assert!(e < TOL, "zero slots: {e}");
    let zeros = plan.zeros();
    let e = rel_err(&run(&mut s, &ids, Some((&plan, &zeros)), "pooled").1, &want_base.1);
    assert!(e < TOL, "explicit zero slots: {e}");
    for (form, ad) in [("peft", &peft), ("kohya", &kohya)] {
        let w = plan.lay_out_text_encoder(&[(ad, 1.0)]).expect("lay out");
        let got = run(&mut s, &ids, Some((&plan, &w)), "pooled");
        let e = rel_err(&got.1, &want_lora.1);
        eprintln!("clip lora ({form}) rel err {e:e}");
        assert!(e < TOL, "{form}: CLIP LoRA rel err {e}");
        assert!(rel_err(&got.1, &want_base.1) > 1e-2, "{form}: the LoRA changes the output");
    }
    // back to the base after LoRA runs
    let e = rel_err(&run(&mut s, &ids, None, "pooled").1, &want_base.1);
    assert!(e < TOL, "defaults restored: {e}");
    onnx_check(&dir.path().join("model.onnx"));
}

#[test]
fn clip_target_presets_plan_slots_without_adapters() {
    let cfg = clip_config(&pipeline()).expect("config");
    let plan = SlotPlan::for_clip(&cfg, &[], &PlanOptions { max_rank: Some(8), targets: vec!["attn".into()] }).expect("attn");
    assert_eq!(plan.slots.len(), 2 * 4);
    assert!(plan.slots.iter().all(|s| s.module.contains(".self_attn.")));
    let plan = SlotPlan::for_clip(&cfg, &[], &PlanOptions { max_rank: Some(2), targets: vec!["*.mlp.fc2".into()] }).expect("glob");
    assert_eq!(
        plan.slots.iter().map(|s| s.module.as_str()).collect::<Vec<_>>(),
        ["text_model.encoder.layers.0.mlp.fc2", "text_model.encoder.layers.1.mlp.fc2"]
    );
    // a rank-4 adapter does not fit rank-2 slots
    let err = plan.lay_out_text_encoder(&[(&lora("peft"), 1.0)]).expect_err("rank");
    assert!(matches!(err, PlanError::OutsideSlots { .. } | PlanError::RankTooLarge { .. }), "{err}");
    assert!(matches!(
        SlotPlan::for_clip(&cfg, &[], &PlanOptions { max_rank: Some(2), targets: vec!["mod".into()] }),
        Err(flux_trt::Error::Plan(PlanError::BadTarget { .. }))
    ));
}

// ------------------------------------------------------------------ engine folder

#[test]
fn export_text_encoders_writes_the_engine_layout() {
    let cfg = clip_config(&pipeline()).expect("config");
    let plan = SlotPlan::for_clip(&cfg, &[&lora("kohya")], &PlanOptions::default()).expect("plan");
    let engine = tempfile::tempdir().unwrap();
    let o = TextEncoderOptions { t5_max_length: 77, ..opts() };
    let r = export_text_encoders(&pipeline(), Some(&plan), &o, engine.path()).expect("export");
    let clip = ComponentManifest::load_kind(&engine.path().join(TEXT_ENCODER_DIR), ComponentKind::ClipText).expect("clip manifest");
    let t5 = ComponentManifest::load_kind(&engine.path().join(TEXT_ENCODER_2_DIR), ComponentKind::T5Encoder).expect("t5 manifest");
    assert_eq!(clip, r.clip);
    assert_eq!(t5, r.t5);
    assert_eq!(t5.t5().map(|c| c.max_length), Some(77));
    assert_eq!(t5.inputs[0].shape, vec![None, Some(77)]);
    for m in [&clip, &t5] {
        let dir = engine.path().join(m.kind.dir_name());
        let (hash, _) = flux_trt::util::hash_file(&dir.join(&m.onnx.file)).expect("hash");
        assert_eq!(hash, m.onnx.blake3);
        assert!(dir.join(&m.onnx.data_file).is_file());
        // Graph and weights recorded with the size and BLAKE3 of the files on disk.
        assert_eq!(m.files.len(), 2);
        for r in &m.files {
            let (h, n) = flux_trt::util::hash_file(&dir.join(&r.path)).expect("hash");
            assert_eq!((r.bytes, &r.blake3), (n, &h), "{}", r.path);
        }
        onnx_check(&dir.join(&m.onnx.file));
    }
    assert!(ComponentManifest::load_kind(&engine.path().join(TEXT_ENCODER_DIR), ComponentKind::T5Encoder).is_err());
    // tokenizers and scheduler copied byte for byte
    let mut n = 0;
    for d in COPIED_DIRS {
        for e in std::fs::read_dir(pipeline().join(d)).expect("read") {
            let e = e.expect("entry");
            let copy = engine.path().join(d).join(e.file_name());
            assert_eq!(std::fs::read(e.path()).expect("src"), std::fs::read(&copy).expect("copy"), "{}", copy.display());
            n += 1;
        }
    }
    assert_eq!(r.copied.len(), n);
}

// ------------------------------------------------------------------ bad inputs

/// A copy of the tiny pipeline's `text_encoder/` with its weights rewritten by `edit`.
fn edited_clip(edit: impl Fn(&str, Vec<usize>, Vec<u8>) -> Option<(String, Vec<usize>, Vec<u8>)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = pipeline().join("text_encoder");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, v) in st.tensors() {
        if let Some(t) = edit(&name, v.shape().to_vec(), v.data().to_vec()) {
            kept.push(t);
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        kept.iter().map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

#[test]
fn bad_inputs_give_typed_errors_naming_file_and_tensor() {
    let out = tempfile::tempdir().unwrap();
    // missing tensor
    let d = edited_clip(|n, s, b| (n != "encoder.layers.1.mlp.fc2.weight").then(|| (n.to_string(), s, b)));
    let err = export_clip(d.path(), None, &opts(), out.path()).expect_err("missing");
    match &err {
        OnnxError::Checkpoint(CheckpointError::MissingTensor { path, tensor, .. }) => {
            assert_eq!(tensor, "encoder.layers.1.mlp.fc2.weight");
            assert_eq!(path, d.path());
        }
        e => panic!("expected MissingTensor, got {e}"),
    }
    // wrong shape: fc1.bias [64] stored as [32, 2]
    let d = edited_clip(|n, s, b| Some((n.to_string(), if n == "encoder.layers.0.mlp.fc1.bias" { vec![32, 2] } else { s }, b)));
    let err = export_clip(d.path(), None, &opts(), out.path()).expect_err("shape");
    match &err {
        OnnxError::Checkpoint(CheckpointError::Shape { path, tensor, expected, found }) => {
            assert_eq!(tensor, "encoder.layers.0.mlp.fc1.bias");
            assert_eq!(path, &d.path().join("model.safetensors"));
            assert_eq!((expected.clone(), found.clone()), (vec![64], vec![32, 2]));
        }
        e => panic!("expected Shape, got {e}"),
    }
    // the Hub's `text_model.` names are read too; an unknown layout is refused
    let d = edited_clip(|n, s, b| Some((format!("text_model.{n}"), s, b)));
    let g = Goldens::open("generation.safetensors");
    let pref = tempfile::tempdir().unwrap();
    export_clip(d.path(), None, &opts(), pref.path()).expect("text_model. prefix");
    let got = run(&mut session(pref.path()), &g.i64("clip_input_ids"), None, "pooled");
    assert!(rel_err(&got.1, &g.f32("pooled_prompt_embeds").1) < TOL);
    let d = edited_clip(|n, s, b| Some((format!("model.{n}"), s, b)));
    let err = export_clip(d.path(), None, &opts(), out.path()).expect_err("layout");
    assert!(matches!(&err, OnnxError::Component { path, .. } if path == d.path()), "{err}");
    // nothing was written by the failed exports
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    // a CLIP LoRA module the model does not have
    let cfg = clip_config(&pipeline()).expect("config");
    let mut ad = lora("peft");
    let m = ad.text_encoder.remove("text_model.encoder.layers.1.mlp.fc2").unwrap();
    ad.text_encoder.insert("text_model.encoder.layers.7.mlp.fc2".into(), m);
    let err = SlotPlan::for_clip(&cfg, &[&ad], &PlanOptions::default()).expect_err("unknown module");
    assert!(matches!(&err, flux_trt::Error::Plan(PlanError::UnknownModule { module, .. }) if module == "text_model.encoder.layers.7.mlp.fc2"), "{err}");
    // a plan naming a module the graph does not have
    let mut plan = SlotPlan::for_clip(&cfg, &[&lora("peft")], &PlanOptions::default()).expect("plan");
    plan.slots[0].module = "text_model.encoder.layers.9.self_attn.q_proj".into();
    let err = export_clip(&pipeline().join("text_encoder"), Some(&plan), &opts(), out.path()).expect_err("bad slot");
    assert!(matches!(&err, OnnxError::BadSlot { module, .. } if module == "text_model.encoder.layers.9.self_attn.q_proj"), "{err}");
    // fp8 is refused; a missing pipeline folder is named
    let err = export_text_encoders(&pipeline(), None, &TextEncoderOptions::new(Precision::Fp8), out.path()).expect_err("fp8");
    assert!(matches!(err, OnnxError::Fp8Options(_)), "{err}");
    let err = export_text_encoders(&fixtures(), None, &opts(), out.path()).expect_err("not a pipeline");
    assert!(matches!(&err, OnnxError::Component { path, .. } if path.starts_with(fixtures())), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

// ------------------------------------------------------------------ TensorRT parser

/// TensorRT-RTX's own ONNX parser (no GPU needed) on both text-encoder graphs: the inputs and
/// outputs are the manifests', every CLIP slot A/B is marked refittable (and nothing else), the
/// attentions become `IAttention` layers, and a wrong slot name is a typed error.
#[cfg(feature = "tensorrt")]
#[test]
fn tensorrt_parser_accepts_both_graphs_and_marks_clip_slots() {
    use flux_trt::engine::{inspect_component_network_with, EngineError};
    let lib = trt_support::trt_library();
    let cfg = clip_config(&pipeline()).expect("config");
    let plan = SlotPlan::for_clip(&cfg, &[&lora("peft")], &PlanOptions::default()).expect("plan");
    let engine = tempfile::tempdir().unwrap();
    let r = export_text_encoders(&pipeline(), Some(&plan), &opts(), engine.path()).expect("export");

    let clip_dir = engine.path().join(TEXT_ENCODER_DIR);
    let rep = inspect_component_network_with(&clip_dir, &r.clip, &lib).unwrap_or_else(|e| panic!("CLIP: {e}"));
    let slot_names: Vec<String> = plan.slots.iter().flat_map(|s| [s.a_name(), s.b_name()]).collect();
    assert_eq!(rep.refittable, slot_names);
    assert_eq!(rep.inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["input_ids"]);
    assert_eq!(rep.outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["pooled"]);
    assert_eq!(rep.count("ATTENTION_INPUT"), cfg.num_layers, "{:?}", rep.layer_counts);
    eprintln!("CLIP layers: {:?}", rep.layer_counts);

    let t5_dir = engine.path().join(TEXT_ENCODER_2_DIR);
    let rep = inspect_component_network_with(&t5_dir, &r.t5, &lib).unwrap_or_else(|e| panic!("T5: {e}"));
    assert!(rep.refittable.is_empty());
    assert_eq!(rep.outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["last_hidden_state"]);
    assert_eq!(rep.count("ATTENTION_INPUT"), r.t5.t5().map_or(0, |c| c.num_layers), "{:?}", rep.layer_counts);
    eprintln!("T5 layers: {:?}", rep.layer_counts);

    let mut wrong = r.clip.clone();
    if let Some(l) = wrong.lora.as_mut() {
        l.slots[0].b = "lora.no_such_module.B".into();
    }
    match inspect_component_network_with(&clip_dir, &wrong, &lib) {
        Err(EngineError::MarkRefittable { name, .. }) => assert_eq!(name, "lora.no_such_module.B"),
        other => panic!("expected MarkRefittable, got {other:?}"),
    }
}

/// `eos_token_id != 2` pools at the first `eos_token_id` (transformers' non-legacy branch). The
/// tiny tokenizer pads with `<|endoftext|>` (913, its largest id), so for the golden ids the first
/// 913 is also the argmax: the same golden holds, through the `Equal` path of the graph.
#[test]
fn clip_first_eos_pooling_matches_the_golden() {
    use flux_trt::encoders::ClipPooling;
    let d = tempfile::tempdir().unwrap();
    let src = pipeline().join("text_encoder");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["eos_token_id"] = 913.into();
    std::fs::write(d.path().join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    std::fs::copy(src.join("model.safetensors"), d.path().join("model.safetensors")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let m = export_clip(d.path(), None, &opts(), out.path()).expect("export");
    assert_eq!(m.clip().map(|c| c.pooling), Some(ClipPooling::FirstEos { eos_token_id: 913 }));
    let g = Goldens::open("generation.safetensors");
    let ids = g.i64("clip_input_ids");
    let first = ids.1.iter().position(|&t| t == 913).expect("an eos");
    assert_eq!(ids.1.iter().enumerate().max_by_key(|(i, t)| (**t, std::cmp::Reverse(*i))).map(|(i, _)| i), Some(first));
    let got = run(&mut session(out.path()), &ids, None, "pooled");
    let e = rel_err(&got.1, &g.f32("pooled_prompt_embeds").1);
    assert!(e < TOL, "first-eos pooling rel err {e}");
}

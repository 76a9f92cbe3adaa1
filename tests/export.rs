//! Exporter tests on the bundled tiny fixtures (tests/fixtures, see tools/reference/README.md):
//! graph structure read back from model.onnx, external-data layout, bytes against the
//! checkpoint, the manifest, and parity with the diffusers goldens through ONNX Runtime
//! (tools/reference/check_onnx.py, which needs python3 with onnx, onnxruntime, numpy, safetensors).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::{Manifest, Precision};
use flux_trt::onnx::{export, ExportOptions, OnnxError, DATA_FILE, MODEL_FILE};
use flux_trt::tensor::DType;
use flux_trt::{Adapter, Checkpoint, SlotPlan};
use onnx_protobuf::{tensor_proto::DataLocation, tensor_shape_proto::dimension::Value as DV, type_proto::Value as TV, ModelProto};
use protobuf::Message;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixtures_json() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("fixtures.json")).unwrap()).unwrap()
}

fn load_adapter(rel: &str) -> Adapter {
    flux_trt::lora::formats::load(&fixtures().join(rel)).unwrap()
}

fn read_model(dir: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(dir.join(MODEL_FILE)).unwrap()).unwrap()
}

/// `(name, [dims as Some(n) or None], [dim_param])`
fn io(v: &onnx_protobuf::ValueInfoProto) -> (String, Vec<Option<i64>>, Vec<String>) {
    let Some(TV::TensorType(t)) = &v.type_.value else { panic!("{} is not a tensor", v.name) };
    let mut dims = Vec::new();
    let mut params = Vec::new();
    for d in &t.shape.dim {
        match &d.value {
            Some(DV::DimValue(n)) => dims.push(Some(*n)),
            Some(DV::DimParam(p)) => {
                dims.push(None);
                params.push(p.clone());
            }
            _ => panic!("{}: dimension without value", v.name),
        }
    }
    (v.name.clone(), dims, params)
}

fn ext_field(t: &onnx_protobuf::TensorProto, key: &str) -> u64 {
    t.external_data.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("{}: no external `{key}`", t.name)).value.parse().unwrap()
}

/// Asserts everything the graph contract promises, for `ckpt` exported with `plan`.
fn check_structure(dir: &Path, ckpt: &Checkpoint, plan: &SlotPlan, dtype: DType) {
    let cfg = ckpt.config();
    let m = read_model(dir);
    assert_eq!(m.ir_version, 10);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!((m.opset_import[0].domain.as_str(), m.opset_import[0].version), ("", 23));
    let g = &m.graph;

    // data inputs then slot inputs; output
    let mut want: Vec<(String, Vec<Option<i64>>, Vec<String>)> = vec![
        ("hidden_states".into(), vec![None, None, Some(cfg.in_channels as i64)], vec!["batch".into(), "img_seq".into()]),
        ("encoder_hidden_states".into(), vec![None, None, Some(cfg.context_dim as i64)], vec!["batch".into(), "txt_seq".into()]),
        ("pooled_projections".into(), vec![None, Some(cfg.pooled_dim as i64)], vec!["batch".into()]),
        ("timestep".into(), vec![None], vec!["batch".into()]),
    ];
    if cfg.variant.has_guidance() {
        want.push(("guidance".into(), vec![None], vec!["batch".into()]));
    }
    let half = Some((cfg.head_dim / 2) as i64);
    want.push(("rope_cos".into(), vec![None, half], vec!["joint_seq".into()]));
    want.push(("rope_sin".into(), vec![None, half], vec!["joint_seq".into()]));
    let r = plan.max_rank as i64;
    for s in &plan.slots {
        want.push((s.a_name(), vec![Some(r), Some(s.in_features as i64)], vec![]));
        want.push((s.b_name(), vec![Some(s.out_features as i64), Some(r)], vec![]));
    }
    let got: Vec<_> = g.input.iter().map(io).collect();
    assert_eq!(got, want);
    for v in &g.input[..g.input.len() - 2 * plan.slots.len()] {
        let Some(TV::TensorType(t)) = &v.type_.value else { unreachable!() };
        assert_eq!(t.elem_type, 1, "{} must be float32", v.name);
    }
    assert_eq!(
        g.output.iter().map(io).collect::<Vec<_>>(),
        vec![("sample".to_string(), vec![None, None, Some(cfg.out_channels as i64)], vec!["batch".to_string(), "img_seq".to_string()])]
    );

    // LoRA slots: inline zero initializers of the precision's dtype, also graph inputs
    let inits: BTreeMap<&str, &onnx_protobuf::TensorProto> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    for s in &plan.slots {
        for (name, dims) in [(s.a_name(), [plan.max_rank, s.in_features]), (s.b_name(), [s.out_features, plan.max_rank])] {
            let t = inits.get(name.as_str()).unwrap_or_else(|| panic!("no initializer {name}"));
            assert_eq!(t.data_type, dtype.onnx_code(), "{name}");
            assert_eq!(t.dims, dims.iter().map(|d| *d as i64).collect::<Vec<_>>(), "{name}");
            assert_eq!(t.raw_data.len(), dims[0] * dims[1] * dtype.size(), "{name} stored inline");
            assert!(t.raw_data.iter().all(|b| *b == 0), "{name} defaults to zeros");
        }
    }

    // base weights: exactly the canonical parameters with fused groups merged, all external,
    // 4096-aligned, inside the data file, not overlapping
    let groups = cfg.fused_groups();
    let fused_members: BTreeSet<&str> = groups.iter().flat_map(|g| g.members.iter().map(String::as_str)).collect();
    let mut want_ext: BTreeSet<String> = BTreeSet::new();
    for lm in cfg.linear_modules() {
        if !fused_members.contains(lm.name.as_str()) {
            want_ext.insert(format!("{}.weight", lm.name));
            want_ext.insert(format!("{}.bias", lm.name));
        }
    }
    for gr in &groups {
        want_ext.insert(format!("{}.weight", gr.name));
        want_ext.insert(format!("{}.bias", gr.name));
    }
    want_ext.extend(cfg.norm_params());
    let ext: Vec<&onnx_protobuf::TensorProto> = g.initializer.iter().filter(|t| t.data_location.enum_value() == Ok(DataLocation::EXTERNAL)).collect();
    assert_eq!(ext.iter().map(|t| t.name.clone()).collect::<BTreeSet<_>>(), want_ext);
    let inline_names: Vec<&str> =
        g.initializer.iter().filter(|t| t.data_location.enum_value() != Ok(DataLocation::EXTERNAL)).map(|t| t.name.as_str()).collect();
    assert!(inline_names.iter().all(|n| n.starts_with("lora.") || n.starts_with("const.")), "only slots and small constants inline: {inline_names:?}");
    let data = std::fs::read(dir.join(DATA_FILE)).unwrap();
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for t in &ext {
        assert_eq!(t.external_data.iter().find(|e| e.key == "location").unwrap().value, DATA_FILE);
        let (off, len) = (ext_field(t, "offset"), ext_field(t, "length"));
        assert_eq!(off % 4096, 0, "{} offset {off} not aligned", t.name);
        let numel: i64 = t.dims.iter().product();
        assert_eq!(len, numel as u64 * dtype.size() as u64, "{}", t.name);
        assert!(off + len <= data.len() as u64, "{} beyond the data file", t.name);
        assert_eq!(t.data_type, dtype.onnx_code());
        spans.push((off, len, &t.name));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{} overlaps {}", w[0].2, w[1].2);
    }

    // base bytes are the checkpoint's (fused groups stacked q|k|v[|mlp]), converted if needed
    let bytes_of = |name: &str| {
        let t = ext.iter().find(|t| t.name == name).unwrap();
        let (off, len) = (ext_field(t, "offset") as usize, ext_field(t, "length") as usize);
        &data[off..off + len]
    };
    let expect = |tr: flux_trt::checkpoint::TensorRef<'_>| {
        let mut out = Vec::new();
        for p in &tr.parts {
            flux_trt::tensor::convert_into(tr.dtype, dtype, p, &mut out);
        }
        out
    };
    for gr in &groups {
        assert_eq!(bytes_of(&format!("{}.weight", gr.name)), expect(ckpt.fused(gr, "weight").unwrap()).as_slice(), "{}", gr.name);
        assert_eq!(bytes_of(&format!("{}.bias", gr.name)), expect(ckpt.fused(gr, "bias").unwrap()).as_slice(), "{}", gr.name);
    }
    for n in ["x_embedder.weight", "norm_out.linear.weight", "norm_out.linear.bias", "proj_out.weight"] {
        assert_eq!(bytes_of(n), expect(ckpt.tensor(n).unwrap()).as_slice(), "{n}");
    }

    // one Attention per block; base GEMMs fused; two LoRA GEMMs per slot
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(count("Attention"), cfg.num_double_blocks + cfg.num_single_blocks);
    let base_gemms = cfg.linear_modules().len() - fused_members.len() + groups.len();
    assert_eq!(count("Gemm"), base_gemms + 2 * plan.slots.len());
    for gr in &groups {
        let w = format!("{}.weight", gr.name);
        let n = g.node.iter().filter(|n| n.op_type == "Gemm" && n.input.get(1) == Some(&w)).count();
        assert_eq!(n, 1, "one fused GEMM for {}", gr.name);
    }
    assert!(g.node.iter().all(|n| n.op_type != "Gemm" || n.attribute.iter().any(|a| a.name == "transB" && a.i == 1)));

    // manifest
    let man = Manifest::load(dir).unwrap();
    assert_eq!(&man.model, cfg);
    assert_eq!(man.lora.plan(), *plan);
    assert_eq!(man.lora.dtype, dtype);
    assert_eq!(man.onnx.opset, 23);
    assert_eq!(man.onnx.blake3, flux_trt::util::hash_file(&dir.join(MODEL_FILE)).unwrap().0);
    // Every file written is recorded with the size and BLAKE3 of the file on disk.
    assert_eq!(man.format_version, flux_trt::manifest::MANIFEST_VERSION);
    let recorded: Vec<(String, u64, String)> = man.files.iter().map(|r| (r.path.clone(), r.bytes, r.blake3.clone())).collect();
    let on_disk: Vec<(String, u64, String)> = [MODEL_FILE, "model.onnx.data"]
        .iter()
        .map(|f| {
            let (h, n) = flux_trt::util::hash_file(&dir.join(f)).unwrap();
            (f.to_string(), n, h)
        })
        .collect();
    assert_eq!(recorded, on_disk);
    assert_eq!(
        man.inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        want.iter().take(want.len() - 2 * plan.slots.len()).map(|w| w.0.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(man.outputs.len(), 1);
    for f in ckpt.files() {
        let s = man.sources.iter().find(|s| s.role == "checkpoint" && Path::new(&s.path) == f).unwrap_or_else(|| panic!("{} not in sources", f.display()));
        assert_eq!(s.blake3, flux_trt::util::hash_file(f).unwrap().0);
    }
    // no temporary files left behind
    let names: BTreeSet<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["manifest.json", "model.onnx", "model.onnx.data"].map(String::from).into_iter().collect());
}

/// Writes each adapter laid into the plan's slots by the Rust loader as a safetensors feed file;
/// returns `FILE=OUTPUT_KEY` arguments for check_onnx.py.
fn rust_slot_feeds(dir: &Path, plan: &SlotPlan, adapters: &[(&str, Adapter)]) -> Vec<String> {
    let fx = fixtures_json();
    let mut args = Vec::new();
    for (rel, ad) in adapters {
        let entry = fx["loras"].as_array().unwrap().iter().find(|l| l["path"] == *rel).unwrap();
        let key = entry["output_key"].as_str().unwrap();
        let w = plan.lay_out(&[(ad, 1.0)]).unwrap();
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = plan
            .slots
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                [(s.a_name(), &w.a[i]), (s.b_name(), &w.b[i])].map(|(n, m)| (n, m.data.iter().flat_map(|v| v.to_le_bytes()).collect(), vec![m.rows, m.cols]))
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
            bytes.iter().map(|(n, b, s)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
        let path = dir.join(format!("slots-{}.safetensors", ad.name));
        safetensors::tensor::serialize_to_file(views, None, &path).unwrap();
        args.push(format!("{}={key}", path.display()));
    }
    args
}

fn run_check_onnx(dir: &Path, slot_args: &[String]) {
    let probe = Command::new("python3").args(["-c", "import onnx, onnxruntime, numpy, safetensors"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks the packages tools/reference/check_onnx.py needs (tools/env.sh installs them: onnx onnxruntime numpy safetensors): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 not runnable ({e}); tools/reference/check_onnx.py needs python3 with onnx, onnxruntime, numpy, safetensors"),
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference/check_onnx.py");
    // the Rust RoPE tables for the golden ids, compared by the script with its own
    let man = Manifest::load(dir).unwrap();
    let golden = fixtures().join(fixtures_json()["models"][man.model.variant.name()]["outputs"].as_str().unwrap());
    let gbytes = std::fs::read(&golden).unwrap();
    let st = safetensors::SafeTensors::deserialize(&gbytes).unwrap();
    let ids = |k: &str| -> Vec<[f32; 3]> {
        let t = st.tensor(k).unwrap();
        t.data().chunks_exact(12).map(|c| [0, 1, 2].map(|i| f32::from_le_bytes(c[4 * i..4 * i + 4].try_into().unwrap()))).collect()
    };
    let (cos, sin) = flux_trt::flux::rope_tables(&man.model, &ids("txt_ids"), &ids("img_ids"));
    let rows = cos.len() / (man.model.head_dim / 2);
    let (cb, sb): (Vec<u8>, Vec<u8>) = (cos.iter().flat_map(|v| v.to_le_bytes()).collect(), sin.iter().flat_map(|v| v.to_le_bytes()).collect());
    let shape = vec![rows, man.model.head_dim / 2];
    let views = vec![
        ("rope_cos".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), &cb).unwrap()),
        ("rope_sin".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &sb).unwrap()),
    ];
    let rope_file = dir.join("rust-rope.safetensors");
    safetensors::tensor::serialize_to_file(views, None, &rope_file).unwrap();

    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(dir).arg("--fixtures").arg(fixtures()).arg("--rust-rope").arg(&rope_file);
    for a in slot_args {
        cmd.arg("--slots").arg(a);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "check_onnx.py failed for {}:\n{text}", dir.display());
    assert!(text.contains("ok   base") && text.contains("ok   rust rope_tables"), "{text}");
}

fn export_fixture(
    model_rel: &str,
    loras: &[&str],
    opts_plan: PlanOptions,
    precision: Precision,
) -> (tempfile::TempDir, Checkpoint, SlotPlan, Vec<(String, Adapter)>) {
    let ckpt = Checkpoint::open(&fixtures().join(model_rel)).unwrap();
    let adapters: Vec<(String, Adapter)> = loras.iter().map(|l| (l.to_string(), load_adapter(l))).collect();
    let refs: Vec<&Adapter> = adapters.iter().map(|(_, a)| a).collect();
    let plan = SlotPlan::new(ckpt.config(), &refs, &opts_plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ExportOptions::new(precision);
    opts.lora_files = loras.iter().map(|l| fixtures().join(l)).collect();
    let mut last = (0, 0);
    let rep = export(&ckpt, &plan, &opts, dir.path(), &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last, (rep.data_bytes, rep.data_bytes), "progress reaches the total");
    assert_eq!(rep.manifest.sources.iter().filter(|s| s.role == "lora").count(), loras.len());
    (dir, ckpt, plan, adapters)
}

fn check_parity(dir: &Path, plan: &SlotPlan, adapters: &[(String, Adapter)]) {
    let refs: Vec<(&str, Adapter)> = adapters.iter().map(|(p, a)| (p.as_str(), a.clone())).collect();
    let args = rust_slot_feeds(dir, plan, &refs);
    run_check_onnx(dir, &args);
}

#[test]
fn dev_bfl_attn_mlp_slots() {
    // linear1 fused with every member slotted (attn q/k/v + mlp proj_mlp); double-block qkv all slotted
    let loras = ["loras/attn.peft.safetensors", "loras/mlp.peft.safetensors"];
    let (dir, ckpt, plan, adapters) = export_fixture("models/dev-bfl.safetensors", &loras, PlanOptions::default(), Precision::Fp32);
    check_structure(dir.path(), &ckpt, &plan, DType::F32);
    check_parity(dir.path(), &plan, &adapters);
}

#[test]
fn dev_diffusers_sharded_all_slots_rank16() {
    // every Linear has a slot; a sharded diffusers folder; kohya (block-diagonal) loaded by Rust
    let loras = ["loras/full.peft.safetensors", "loras/rank16.peft.safetensors", "loras/full.kohya.safetensors"];
    let (dir, ckpt, plan, adapters) = export_fixture("models/dev-diffusers", &loras, PlanOptions::default(), Precision::Fp32);
    assert_eq!(plan.max_rank, 16);
    assert_eq!(plan.slots.len(), ckpt.config().linear_modules().len());
    check_structure(dir.path(), &ckpt, &plan, DType::F32);
    check_parity(dir.path(), &plan, &adapters);
}

#[test]
fn schnell_partial_fused_slots() {
    // single-block linear1 with q/k/v slotted but not proj_mlp (split-add-concat path), no guidance
    let loras = ["loras/schnell-attn.peft.safetensors"];
    let (dir, ckpt, plan, adapters) = export_fixture("models/schnell-bfl.safetensors", &loras, PlanOptions::default(), Precision::Fp32);
    assert!(plan.slot_index("single_transformer_blocks.0.attn.to_q").is_some());
    assert!(plan.slot_index("single_transformer_blocks.0.proj_mlp").is_none());
    check_structure(dir.path(), &ckpt, &plan, DType::F32);
    check_parity(dir.path(), &plan, &adapters);
    // and the kohya file of the same adapter through the same slots
    let kohya = [("loras/schnell-attn.kohya.safetensors".to_string(), load_adapter("loras/schnell-attn.kohya.safetensors"))];
    let kohya_plan = SlotPlan { slots: plan.slots.clone(), max_rank: plan.max_rank };
    // the kohya file carries a zero proj_mlp ΔW (fused linear1), which has no slot here: lay out what fits
    let mut ad = kohya[0].1.clone();
    ad.modules.retain(|m, _| kohya_plan.slot_index(m).is_some());
    check_parity(dir.path(), &kohya_plan, &[(kohya[0].0.clone(), ad)]);
}

#[test]
fn schnell_diffusers_fp16_converts_weights() {
    let (dir, ckpt, plan, _) =
        export_fixture("models/schnell-diffusers", &[], PlanOptions { max_rank: Some(4), targets: vec!["attn".into()] }, Precision::Fp16);
    check_structure(dir.path(), &ckpt, &plan, DType::F16);
    let m = read_model(dir.path());
    let casts = m.graph.node.iter().filter(|n| n.op_type == "Cast").count();
    assert!(casts >= 4, "fp16 graph casts its float32 inputs and output");
}

#[test]
fn fp8_and_bad_slots_write_nothing() {
    let ckpt = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let plan = SlotPlan::new(ckpt.config(), &[], &PlanOptions { max_rank: Some(2), targets: vec!["attn".into()] }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = export(&ckpt, &plan, &ExportOptions::new(Precision::Fp8), dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, flux_trt::Error::Export(OnnxError::Fp8Options(_))), "{err}");
    assert_eq!(err.kind(), flux_trt::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("calibrated activation scales"), "{err}");
    let mut bad = plan.clone();
    bad.slots[0].in_features += 1;
    let err = export(&ckpt, &bad, &ExportOptions::new(Precision::Fp32), dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(&err, flux_trt::Error::Export(OnnxError::BadSlot { module, .. }) if *module == bad.slots[0].module), "{err}");
    assert_eq!(err.kind(), flux_trt::ErrorKind::Incompatible);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn random_checkpoints_from_make_random_flux_export() {
    // the generator's small BFL file and diffusers folder load and export like real checkpoints
    let tmp = tempfile::tempdir().unwrap();
    for (layout, out, schnell) in [("bfl", tmp.path().join("r.safetensors"), false), ("diffusers", tmp.path().join("rd"), true)] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_make-random-flux"));
        cmd.args([
            "--layout",
            layout,
            "--dtype",
            "fp16",
            "--double",
            "2",
            "--single",
            "3",
            "--hidden",
            "64",
            "--heads",
            "2",
            "--context",
            "48",
            "--pooled",
            "40",
        ]);
        cmd.arg("--out").arg(&out);
        if schnell {
            cmd.arg("--schnell");
        }
        let st = cmd.output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let ckpt = Checkpoint::open(&out).unwrap();
        let c = ckpt.config();
        assert_eq!((c.num_double_blocks, c.num_single_blocks, c.hidden_size, c.num_heads, c.context_dim, c.pooled_dim), (2, 3, 64, 2, 48, 40));
        assert_eq!(c.variant.has_guidance(), !schnell);
        let plan = SlotPlan::new(c, &[], &PlanOptions { max_rank: Some(8), targets: vec!["attn".into()] }).unwrap();
        let dir = tmp.path().join(format!("engine-{layout}"));
        export(&ckpt, &plan, &ExportOptions::new(Precision::Bf16), &dir, &mut |_, _| {}).unwrap();
        check_structure(&dir, &ckpt, &plan, DType::BF16);
    }
}

//! TensorRT's own ONNX parser on flux-trt exports (feature `tensorrt`; no GPU needed).
//!
//! Needs the TensorRT-RTX libraries: `TRT_RTX_LIB_DIR` (CI and `tools/test.sh` set it), else the
//! folder of Python's `tensorrt_rtx_libs` package. Checks, for the tiny fixture model and for a
//! full-width FLUX.1-dev graph with 1 double + 1 single block (random weights made here):
//! the parser accepts the export; every manifest slot marks refittable and nothing else; a wrong
//! slot name fails with a typed error carrying TensorRT's text; one `IAttention` per block; no
//! Q/DQ layers in non-FP8 graphs; and the engine build on a GPU-less machine fails with
//! TensorRT's own CUDA message, writing nothing.
#![cfg(feature = "tensorrt")]

mod trt_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use flux_trt::engine::{self, BuildOptions, EngineError, NetworkReport, ProfileRecipe, Target, TrtLibrary};
use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::{Manifest, Precision};
use flux_trt::onnx::fp8::{self, Fp8Options, WeightScale};
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::{Checkpoint, SlotPlan};
use trt_support::trt_library;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Exports `ckpt` with slots on `targets` at rank `rank` into a fresh temp folder.
fn export_dir(ckpt: &Checkpoint, targets: &[&str], rank: usize, precision: Precision) -> (tempfile::TempDir, Manifest) {
    let plan =
        SlotPlan::new(ckpt.config(), &[], &PlanOptions { max_rank: Some(rank), targets: targets.iter().map(|s| s.to_string()).collect() }).expect("slot plan");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = ExportOptions { hash_sources: false, ..ExportOptions::new(precision) };
    let report = export(ckpt, &plan, &opts, dir.path(), &mut |_, _| {}).expect("export");
    (dir, report.manifest)
}

/// The checks every export must pass; returns the report for graph-specific counts.
fn check_export(dir: &Path, manifest: &Manifest, lib: &TrtLibrary) -> NetworkReport {
    let report = engine::inspect_network_with(dir, manifest, lib).unwrap_or_else(|e| panic!("parse {}: {e}", dir.display()));
    let slot_names: Vec<String> = manifest.lora.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()]).collect();
    assert_eq!(report.refittable, slot_names, "every slot A/B, in manifest order");
    // Slots stay weights: none is a network input; the inputs are exactly the manifest's.
    let mut inputs: Vec<&str> = report.inputs.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = manifest.inputs.iter().map(|t| t.name.as_str()).collect();
    inputs.sort();
    want.sort();
    assert_eq!(inputs, want);
    assert_eq!(report.outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["sample"]);
    // One IAttention per transformer block (double and single blocks alike).
    let blocks = manifest.model.num_double_blocks + manifest.model.num_single_blocks;
    assert_eq!(report.count("ATTENTION_INPUT"), blocks, "{:?}", report.layer_counts);
    assert_eq!(report.count("ATTENTION_OUTPUT"), blocks, "{:?}", report.layer_counts);
    // Each of them reports getDecomposable() == true (the builder's fallback for shapes and
    // types without a fused kernel).
    assert_eq!(report.decomposable_attention, blocks);
    check_qdq(manifest, &report);

    // A slot name that is not a weight of the graph: typed error naming it, with TensorRT's text.
    let mut wrong = manifest.clone();
    wrong.lora.slots[0].b = "lora.no_such_module.B".into();
    match engine::inspect_network_with(dir, &wrong, lib) {
        Err(EngineError::MarkRefittable { name, log, .. }) => {
            assert_eq!(name, "lora.no_such_module.B");
            assert!(log.contains("lora.no_such_module.B") && !log.starts_with("(TensorRT logged"), "TensorRT's message: {log}");
        }
        other => panic!("expected MarkRefittable, got {other:?}"),
    }
    report
}

/// Non-FP8 graphs have no Q/DQ layers. FP8 graphs: one QUANTIZE per quantized GEMM input (plus
/// Q, K, V per attention with `fp8.attention`), one DEQUANTIZE per quantized input and weight.
fn check_qdq(manifest: &Manifest, report: &NetworkReport) {
    match manifest.precision {
        Precision::Fp8 => {
            let f = manifest.fp8.as_ref().expect("FP8 manifest has an fp8 section");
            let blocks = manifest.model.num_double_blocks + manifest.model.num_single_blocks;
            let attn = if f.attention { 3 * blocks } else { 0 };
            assert_eq!(report.quantize_layers(), f.quantized.len() + attn, "{:?}", report.layer_counts);
            assert_eq!(report.dequantize_layers(), 2 * f.quantized.len() + attn, "{:?}", report.layer_counts);
        }
        _ => assert_eq!(report.quantize_layers() + report.dequantize_layers(), 0, "{:?}", report.layer_counts),
    }
}

/// FP8 export options with every activation amax set to 1 (the parser does not care about values).
fn fp8_opts(ckpt: &Checkpoint, float_dtype: flux_trt::tensor::DType, mode: WeightScale, attention: bool) -> ExportOptions {
    let cfg = ckpt.config();
    let mut points = fp8::quantized_gemms(cfg);
    points.extend(fp8::attention_points(cfg));
    let mut f = Fp8Options::new(points.into_iter().map(|p| (p, 1.0)).collect());
    f.float_dtype = float_dtype;
    f.weight_scale = mode;
    f.attention = attention;
    ExportOptions { hash_sources: false, fp8: Some(f), ..ExportOptions::new(Precision::Fp8) }
}

fn export_fp8_dir(ckpt: &Checkpoint, targets: &[&str], rank: usize, opts: &ExportOptions) -> (tempfile::TempDir, Manifest) {
    let plan =
        SlotPlan::new(ckpt.config(), &[], &PlanOptions { max_rank: Some(rank), targets: targets.iter().map(|s| s.to_string()).collect() }).expect("slot plan");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = export(ckpt, &plan, opts, dir.path(), &mut |_, _| {}).expect("fp8 export");
    (dir, report.manifest)
}

#[test]
fn fp8_exports_parse_with_quantize_dequantize_layers() {
    use flux_trt::tensor::DType;
    let lib = trt_library();
    let ckpt = Checkpoint::open(&fixture("models/dev-bfl.safetensors")).expect("fixture checkpoint");
    for (dtype, mode, attention) in
        [(DType::BF16, WeightScale::Channel, false), (DType::BF16, WeightScale::Tensor, true), (DType::F32, WeightScale::Channel, false)]
    {
        let (dir, manifest) = export_fp8_dir(&ckpt, &["all"], 4, &fp8_opts(&ckpt, dtype, mode, attention));
        check_export(dir.path(), &manifest, &lib);
    }
    // FP8 needs sm89+: an sm80/sm86 target is refused before TensorRT runs, naming the target
    let (dir, _) = export_fp8_dir(&ckpt, &["attn"], 2, &fp8_opts(&ckpt, DType::BF16, WeightScale::Channel, false));
    let opts = BuildOptions { library: lib, ..BuildOptions::new(vec![Target::Sm89, Target::Sm86], ProfileRecipe::tiny()) };
    match engine::build(dir.path(), &opts) {
        Err(EngineError::Target { message }) => assert!(message.contains("sm86") && message.contains("FP8"), "{message}"),
        other => panic!("expected EngineError::Target, got {other:?}"),
    }
    assert!(!dir.path().join(engine::PLAN_FILE).exists());
}

#[test]
fn tiny_export_parses_marks_slots_and_fails_to_build_without_cuda() {
    let lib = trt_library();
    let ckpt = Checkpoint::open(&fixture("models/dev-bfl.safetensors")).expect("fixture checkpoint");
    let (dir, manifest) = export_dir(&ckpt, &["all"], 4, Precision::Fp32);
    let report = check_export(dir.path(), &manifest, &lib);
    assert!(report.count("MATRIX_MULTIPLY") >= manifest.lora.slots.len(), "{:?}", report.layer_counts);

    // The build needs a CUDA driver: on this GPU-less machine it must fail with TensorRT's own
    // message, and leave the folder as it was.
    let manifest_before = std::fs::read(dir.path().join("manifest.json")).unwrap();
    let opts = BuildOptions { library: lib.clone(), ..BuildOptions::new(vec![Target::Sm89], ProfileRecipe::tiny()) };
    match engine::build(dir.path(), &opts) {
        Err(EngineError::Build { log, .. }) => {
            assert!(!log.is_empty() && !log.starts_with("(TensorRT logged"), "TensorRT's message: {log}");
            assert!(log.contains("CUDA"), "message names CUDA: {log}");
        }
        Ok(r) => panic!("built {} on a machine without a GPU?", r.plan_path.display()),
        Err(e) => panic!("expected EngineError::Build, got {e}"),
    }
    assert!(!dir.path().join(engine::PLAN_FILE).exists());
    assert_eq!(std::fs::read(dir.path().join("manifest.json")).unwrap(), manifest_before);
}

#[test]
fn build_options_are_checked_before_tensorrt_runs() {
    let ckpt = Checkpoint::open(&fixture("models/dev-bfl.safetensors")).expect("fixture checkpoint");
    let (dir, _) = export_dir(&ckpt, &["attn"], 2, Precision::Fp32);
    let lib = trt_library();
    let no_targets = BuildOptions { library: lib.clone(), ..BuildOptions::new(vec![], ProfileRecipe::tiny()) };
    assert!(matches!(engine::build(dir.path(), &no_targets), Err(EngineError::Target { .. })));
    let mut recipe = ProfileRecipe::tiny();
    recipe.img_seq.max = 1;
    let bad = BuildOptions { library: lib, ..BuildOptions::new(vec![Target::Sm120], recipe) };
    assert!(matches!(engine::build(dir.path(), &bad), Err(EngineError::Profile { .. })));
}

/// FLUX.1-dev at full width (hidden 3072, 24 heads × 128, T5 4096, CLIP 768) with 1 double and
/// 1 single block, random bf16 weights from `make-random-flux` (≈1.1 GB), exported in bf16 with
/// slots on every Linear module.
#[test]
fn full_width_flux_dev_export_parses_and_marks_every_slot() {
    let lib = trt_library();
    let work = tempfile::tempdir().expect("temp dir");
    let ckpt_path = work.path().join("flux-dev-1x1.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_make-random-flux"))
        .args(["--out", ckpt_path.to_str().unwrap(), "--layout", "bfl", "--dtype", "bf16", "--double", "1", "--single", "1"])
        .status()
        .expect("run make-random-flux");
    assert!(status.success(), "make-random-flux failed");
    let ckpt = Checkpoint::open(&ckpt_path).expect("random checkpoint");
    let c = ckpt.config().clone();
    assert_eq!((c.hidden_size, c.num_heads, c.head_dim, c.context_dim, c.pooled_dim), (3072, 24, 128, 4096, 768));
    let (dir, manifest) = export_dir(&ckpt, &["all"], 16, Precision::Bf16);
    // the same model as FP8 (bf16 elsewhere, per-channel scales, attention Q/DQ): TensorRT's
    // parser makes QUANTIZE/DEQUANTIZE layers for every quantized GEMM and attention input
    let (fp8_dir, fp8_manifest) = export_fp8_dir(&ckpt, &["all"], 16, &fp8_opts(&ckpt, flux_trt::tensor::DType::BF16, WeightScale::Channel, true));
    drop(ckpt);
    std::fs::remove_file(&ckpt_path).expect("remove checkpoint");
    assert_eq!(manifest.lora.slots.len(), c.linear_modules().len());
    check_export(fp8_dir.path(), &fp8_manifest, &lib);
    drop(fp8_dir);
    let report = check_export(dir.path(), &manifest, &lib);
    // Every base Linear is a MatMul/Gemm (fused q|k|v and linear1 count once) plus two per slot.
    assert!(report.count("MATRIX_MULTIPLY") >= 2 * manifest.lora.slots.len(), "{:?}", report.layer_counts);
}

/// `build-engine --pipeline` components go through the same builder: each one is parsed, CLIP's
/// slots are marked refittable, the VAE's latent sides take the recipe's `latent_side`, and the
/// build itself fails here (no GPU) with TensorRT's message, leaving the manifest unchanged.
#[test]
fn pipeline_components_reach_the_tensorrt_build() {
    let lib = trt_library();
    let work = tempfile::tempdir().expect("temp dir");
    let out = work.path().join("tiny");
    let st = Command::new(env!("CARGO_BIN_EXE_build-engine"))
        .arg("--pipeline")
        .arg(fixture("pipeline/flux-tiny"))
        .arg("--model")
        .arg(fixture("models/dev-diffusers"))
        .arg("--lora")
        .arg(fixture("loras/attn.peft.safetensors"))
        .arg("--lora")
        .arg(fixture("pipeline/loras/clip.peft.safetensors"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run build-engine");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let opts = BuildOptions { library: lib, ..BuildOptions::new(vec![Target::Sm89], ProfileRecipe::tiny()) };
    for (dir, refittable) in [("text_encoder", 24), ("text_encoder_2", 0), ("vae_decoder", 0)] {
        let d = out.join(dir);
        let before = std::fs::read(d.join("manifest.json")).unwrap();
        match engine::build_component(&d, &opts) {
            Err(EngineError::Build { log, .. }) => {
                // Graphs whose kernels TensorRT-RTX must tune on a device fail here, with its message.
                assert!(log.contains("CUDA"), "{dir}: {log}");
                assert_eq!(std::fs::read(d.join("manifest.json")).unwrap(), before, "{dir}: manifest changed");
                assert!(!d.join(engine::PLAN_FILE).exists());
                eprintln!("{dir}: build stops at the GPU step: {}", log.lines().next().unwrap_or(""));
            }
            // TensorRT-RTX's ahead-of-time builder can finish some graphs without a GPU (seen: T5).
            Ok(r) => {
                let plan = std::fs::read(&r.plan_path).unwrap();
                assert_eq!(plan.len() as u64, r.plan_bytes);
                let m = flux_trt::manifest::ComponentManifest::load(&d).unwrap();
                assert_eq!(m.engine.as_ref(), Some(&r.engine), "{dir}: manifest records the plan");
                assert_eq!(r.engine.blake3, flux_trt::util::hash_bytes(&plan));
                let rec = m.files.iter().find(|f| f.path == r.engine.file).expect("plan recorded in files");
                assert_eq!((rec.bytes, &rec.blake3), (plan.len() as u64, &flux_trt::util::hash_bytes(&plan)));
                eprintln!("{dir}: built {} bytes without a GPU", r.plan_bytes);
            }
            Err(e) => panic!("{dir}: expected a plan or EngineError::Build, got {e}"),
        }
        let m = flux_trt::manifest::ComponentManifest::load(&d).unwrap();
        let report = engine::inspect_component_network_with(&d, &m, &opts.library).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(report.refittable.len(), refittable, "{dir}");
    }
}

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

use std::path::{Path, PathBuf};
use std::process::Command;

use flux_trt::engine::{self, BuildOptions, EngineError, NetworkReport, ProfileRecipe, Target, TrtLibrary};
use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::{Manifest, Precision};
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::{Checkpoint, SlotPlan};

/// `TRT_RTX_LIB_DIR` if set, else Python's `tensorrt_rtx_libs` package folder.
fn trt_library() -> TrtLibrary {
    let from_env = TrtLibrary::from_env();
    if from_env.dir.is_some() {
        return from_env;
    }
    let out = Command::new("python3")
        .args(["-c", "import tensorrt_rtx_libs,os;print(os.path.dirname(tensorrt_rtx_libs.__file__))"])
        .output()
        .expect("TRT_RTX_LIB_DIR is unset and python3 could not be run to find tensorrt_rtx_libs");
    assert!(out.status.success(), "TRT_RTX_LIB_DIR is unset and python3 has no tensorrt_rtx_libs: {}", String::from_utf8_lossy(&out.stderr));
    TrtLibrary::in_dir(String::from_utf8_lossy(&out.stdout).trim())
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Exports `ckpt` with slots on `targets` at rank `rank` into a fresh temp folder.
fn export_dir(ckpt: &Checkpoint, targets: &[&str], rank: usize, precision: Precision) -> (tempfile::TempDir, Manifest) {
    let plan = SlotPlan::new(ckpt.config(), &[], &PlanOptions { max_rank: Some(rank), targets: targets.iter().map(|s| s.to_string()).collect() })
        .expect("slot plan");
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

/// FP8 hook: non-FP8 graphs have no Q/DQ layers. FP8 exports (FP8 issue) add their per-GEMM
/// Q/DQ count assertions here.
fn check_qdq(manifest: &Manifest, report: &NetworkReport) {
    match manifest.precision {
        Precision::Fp8 => assert!(report.quantize_layers() > 0 && report.dequantize_layers() > 0, "{:?}", report.layer_counts),
        _ => assert_eq!(report.quantize_layers() + report.dequantize_layers(), 0, "{:?}", report.layer_counts),
    }
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
    drop(ckpt);
    std::fs::remove_file(&ckpt_path).expect("remove checkpoint");
    assert_eq!(manifest.lora.slots.len(), c.linear_modules().len());
    let report = check_export(dir.path(), &manifest, &lib);
    // Every base Linear is a MatMul/Gemm (fused q|k|v and linear1 count once) plus two per slot.
    assert!(report.count("MATRIX_MULTIPLY") >= 2 * manifest.lora.slots.len(), "{:?}", report.layer_counts);
}

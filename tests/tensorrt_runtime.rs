//! `TrtSession::open`'s checks that run before any GPU work (feature `tensorrt`): missing engine
//! entry, plan size and hash (a truncated plan, a flipped bit), TensorRT variant; then, on a machine without a CUDA
//! driver, a typed CUDA error instead of a panic. Running plans and refit need a GPU that can run
//! TensorRT-RTX plans (sm75–sm121 except sm90); no machine of this project has one, so
//! `selftest --backend tensorrt` is where that is checked.
#![cfg(feature = "tensorrt")]

mod trt_support;

use std::path::Path;

use flux_trt::engine::PLAN_FILE;
use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::{EngineArtifact, FileRecord, FileRole, IntegrityError, Manifest, ManifestError, Precision, VerifyPolicy};
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::runtime::tensorrt::{SessionOptions, TrtError, TrtSession};
use flux_trt::{Checkpoint, SlotPlan};

fn options() -> SessionOptions {
    SessionOptions { library: trt_support::trt_library(), device: 0, verify: Default::default() }
}

fn exported() -> (tempfile::TempDir, Manifest) {
    let ckpt = Checkpoint::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/dev-bfl.safetensors")).expect("fixture");
    let plan = SlotPlan::new(ckpt.config(), &[], &PlanOptions { max_rank: Some(2), targets: vec!["attn".into()] }).expect("plan");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = ExportOptions { hash_sources: false, ..ExportOptions::new(Precision::Fp32) };
    let report = export(&ckpt, &plan, &opts, dir.path(), &mut |_, _| {}).expect("export");
    (dir, report.manifest)
}

/// Writes `plan` as the folder's plan and records it (with `blake3`) in the manifest.
fn with_plan(dir: &Path, manifest: &Manifest, plan: &[u8], blake3: String, variant: &str) {
    std::fs::write(dir.join(PLAN_FILE), plan).unwrap();
    let mut m = manifest.clone();
    m.engine = Some(EngineArtifact {
        file: PLAN_FILE.into(),
        tensorrt_variant: variant.into(),
        tensorrt_version: "1.7.1.116".into(),
        targets: vec!["sm89".into()],
        stripped_weights: false,
        blake3: blake3.clone(),
    });
    // What the builder records: the plan's size and hash (of the plan it wrote).
    flux_trt::manifest::integrity::upsert(&mut m.files, FileRecord { path: PLAN_FILE.into(), role: FileRole::Plan, bytes: 4096, blake3 });
    m.save(dir).unwrap();
}

#[test]
fn open_checks_manifest_plan_and_driver() {
    let (dir, manifest) = exported();
    let opts = options();
    assert!(matches!(TrtSession::open(dir.path(), &opts), Err(TrtError::NoEngine { .. })));

    // A plan cut short no longer has the recorded size (checked under every policy).
    let plan: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    with_plan(dir.path(), &manifest, &plan[..1000], flux_trt::util::hash_bytes(&plan), "tensorrt-rtx");
    let never = SessionOptions { verify: VerifyPolicy::Never, ..options() };
    match TrtSession::open(dir.path(), &never) {
        Err(TrtError::Manifest(ManifestError::Integrity(IntegrityError::Size { path, expected: 4096, found: 1000, .. }))) => {
            assert_eq!(path, dir.path().join(PLAN_FILE))
        }
        other => panic!("expected a size mismatch naming the plan, got {other:?}"),
    }
    // One flipped bit: the hash differs (default policy), named, before TensorRT sees the plan.
    let mut flipped = plan.clone();
    flipped[2000] ^= 1;
    with_plan(dir.path(), &manifest, &flipped, flux_trt::util::hash_bytes(&plan), "tensorrt-rtx");
    match TrtSession::open(dir.path(), &opts) {
        Err(TrtError::Manifest(ManifestError::Integrity(IntegrityError::Hash { path, expected, found, .. }))) => {
            assert_eq!(path, dir.path().join(PLAN_FILE));
            assert_ne!(expected, found);
        }
        other => panic!("expected a hash mismatch naming the plan, got {other:?}"),
    }

    // A plan from the other TensorRT variant.
    with_plan(dir.path(), &manifest, &plan, flux_trt::util::hash_bytes(&plan), "tensorrt");
    assert!(matches!(TrtSession::open(dir.path(), &opts), Err(TrtError::Variant { .. })));

    // Hash and variant right, but the bytes are no plan: without a CUDA driver this is a typed
    // CUDA error (not a panic); with one, TensorRT refuses the plan with its own message.
    with_plan(dir.path(), &manifest, &plan, flux_trt::util::hash_bytes(&plan), "tensorrt-rtx");
    match TrtSession::open(dir.path(), &opts) {
        // No driver library (this machine), or a driver but no usable device.
        Err(TrtError::Cuda { what, message }) => {
            assert!((what == "driver" && message.contains("libcuda")) || (what == "device 0" && !message.is_empty()), "{what}: {message}")
        }
        Err(TrtError::Incompatible { detail, .. }) => assert!(!detail.log.is_empty()),
        Err(TrtError::Deserialize { log, .. }) => assert!(!log.is_empty()),
        other => panic!("expected a CUDA or TensorRT error, got {other:?}"),
    }
}

/// `flux-trt selftest --backend tensorrt` from an unrelated working directory: the built-in
/// fixtures are written into the work folder (no path depends on the current directory), and
/// on this GPU-less machine it stops with the typed CUDA error and a non-zero exit, never PASS.
#[test]
fn selftest_uses_built_in_fixtures_and_never_passes_without_a_gpu() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flux-trt"))
        .current_dir(cwd.path())
        .args(["selftest", "--backend", "tensorrt", "--work-dir"])
        .arg(work.path())
        .arg("--trt-lib-dir")
        .arg(options().library.dir.expect("library folder"))
        .output()
        .expect("run flux-trt selftest");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "selftest succeeded without a GPU?\n{stdout}\n{stderr}");
    assert!(!stdout.lines().any(|l| l.starts_with("PASS")), "{stdout}");
    assert!(stderr.contains("libcuda") || stderr.contains("CUDA"), "typed CUDA error expected: {stderr}");
    assert!(stderr.contains("nothing was checked"), "it says that nothing was verified: {stderr}");
    assert!(!work.path().join("selftest-report.json").exists(), "no report for a self-test that did not start");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (written, original) in [
        ("dev-bfl.safetensors", "models/dev-bfl.safetensors"),
        ("attn.peft.safetensors", "loras/attn.peft.safetensors"),
        ("mlp.peft.safetensors", "loras/mlp.peft.safetensors"),
    ] {
        let got = std::fs::read(work.path().join("fixtures").join(written)).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(got, std::fs::read(fixtures.join(original)).unwrap(), "{written}");
    }
}

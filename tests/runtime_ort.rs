//! ONNX Runtime backend against diffusers goldens: engines exported from the bundled tiny
//! checkpoints by the real exporter, run on the golden inputs, every adapter format swapped in.

#[path = "ort_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flux_trt::manifest::{IntegrityError, Manifest, ManifestError, VerifyPolicy};
use flux_trt::runtime::ort::{ExecutionProvider, FluxSession};
use flux_trt::runtime::{RuntimeError, Slotted};
use support::*;

const TOL: f32 = 1e-4;

/// (tempdir kept alive, engine dir) for `model`, with slots for all its fixture adapters.
fn engine(model: &'static str) -> &'static Path {
    static DEV: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    static SCHNELL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let cell = if model == "dev" { &DEV } else { &SCHNELL };
    &cell
        .get_or_init(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join(model);
            let adapters: Vec<_> = lora_fixtures(model).iter().map(|f| flux_trt::lora::load(&f.path).unwrap_or_else(|e| panic!("{e}"))).collect();
            let refs: Vec<_> = adapters.iter().collect();
            // dev from the sharded diffusers folder, schnell from the BFL single file.
            let layout = if model == "dev" { "diffusers" } else { "bfl" };
            export_engine(model, layout, &refs, None, &dir);
            (tmp, dir)
        })
        .1
}

fn parity(model: &'static str) {
    let s = session(engine(model), 2);
    let (inputs, golden) = goldens(model, &s);
    let base = s.run(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let e = rel_err(&base, &golden["out.base"]);
    println!("{model} base: rel err {e:.2e}");
    assert!(e <= TOL, "{model} base: rel err {e:e}");
    let fixtures = lora_fixtures(model);
    assert!(!fixtures.is_empty());
    for f in &fixtures {
        let ad = flux_trt::lora::load(&f.path).unwrap_or_else(|e| panic!("{e}"));
        s.swap(&[(&ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        let out = s.run(&inputs).unwrap_or_else(|e| panic!("{e}"));
        let e = rel_err(&out, &golden[&f.output_key]);
        let moved = rel_err(&golden[&f.output_key], &golden["out.base"]);
        println!("{model} {} ({}): rel err {e:.2e} (adapter moves the output by {moved:.2e})", f.stem, ad.format);
        assert!(e <= TOL, "{model} {}: rel err {e:e}", f.stem);
    }
}

#[test]
fn dev_base_and_every_adapter_match_diffusers() {
    parity("dev");
}

#[test]
fn schnell_base_and_every_adapter_match_diffusers() {
    parity("schnell");
}

#[test]
fn half_strength_matches_diffusers() {
    let s = session(engine("dev"), 2);
    let (inputs, golden) = goldens("dev", &s);
    let ad = load_lora("attn.peft");
    s.swap(&[(&ad, 0.5)]).unwrap_or_else(|e| panic!("{e}"));
    let out = s.run(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let e = rel_err(&out, &golden["out.attn@0.5"]);
    println!("attn.peft @0.5: rel err {e:.2e}");
    assert!(e <= TOL, "attn@0.5: rel err {e:e}");
    s.clear().unwrap_or_else(|e| panic!("{e}"));
    let e = rel_err(&s.run(&inputs).unwrap_or_else(|e| panic!("{e}")), &golden["out.base"]);
    assert!(e <= TOL, "base after clear: rel err {e:e}");
}

#[test]
fn inputs_are_checked_against_the_engine() {
    let dev = session(engine("dev"), 1);
    let (inputs, _) = goldens("dev", &dev);
    let mut no_guidance = inputs.clone();
    no_guidance.guidance = None;
    match dev.run(&no_guidance) {
        Err(RuntimeError::Input { tensor, .. }) => assert_eq!(tensor, "guidance"),
        other => panic!("expected a missing-guidance error, got {other:?}"),
    }
    let schnell = session(engine("schnell"), 1);
    match schnell.run(&inputs) {
        Err(RuntimeError::Input { tensor, message }) => {
            assert_eq!(tensor, "guidance");
            assert!(message.contains("no guidance"), "{message}");
        }
        other => panic!("expected an unexpected-guidance error, got {other:?}"),
    }
    let mut short_rope = inputs.clone();
    short_rope.rope_cos =
        flux_trt::runtime::HostTensor::new(vec![1, inputs.rope_cos.shape()[1]], inputs.rope_cos.data()[..inputs.rope_cos.shape()[1]].to_vec()).expect("shape");
    match dev.run(&short_rope) {
        Err(RuntimeError::Input { tensor, .. }) => assert_eq!(tensor, "rope_cos"),
        other => panic!("expected a rope_cos error, got {other:?}"),
    }
}

/// Copies the dev engine so a test can tamper with it.
fn copy_engine() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("engine");
    std::fs::create_dir(&dir).expect("mkdir");
    for f in ["model.onnx", "model.onnx.data", "manifest.json"] {
        std::fs::copy(engine("dev").join(f), dir.join(f)).expect("copy");
    }
    (tmp, dir)
}

fn mismatch_of(dir: &Path) -> String {
    match FluxSession::builder(dir).with_library(ort_library()).build() {
        Err(RuntimeError::Manifest(ManifestError::Mismatch { message, .. })) => message,
        other => panic!("expected a manifest mismatch, got {other:?}"),
    }
}

#[test]
fn manifest_must_match_the_model() {
    // Engine files against their records: one flipped bit in the weights (hash), a truncated
    // graph (size), a missing weights file; each a typed error naming the file, before ONNX
    // Runtime reads anything.
    let open = |dir: &Path, policy| FluxSession::builder(dir).with_library(ort_library()).with_verify(policy).build();
    let (_t, dir) = copy_engine();
    let data = dir.join("model.onnx.data");
    let mut bytes = std::fs::read(&data).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&data, &bytes).expect("write");
    for policy in [VerifyPolicy::Always, VerifyPolicy::First] {
        match open(&dir, policy) {
            Err(RuntimeError::Manifest(ManifestError::Integrity(IntegrityError::Hash { path, .. }))) => assert_eq!(path, data),
            other => panic!("bit flip under {policy}: expected a hash mismatch naming model.onnx.data, got {other:?}"),
        }
    }
    let model = dir.join("model.onnx");
    let len = std::fs::metadata(&model).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&model).expect("open").set_len(len - 1).expect("truncate");
    match open(&dir, VerifyPolicy::Never) {
        Err(RuntimeError::Manifest(ManifestError::Integrity(IntegrityError::Size { path, found, expected, .. }))) => {
            assert_eq!((path, found, expected), (model.clone(), len - 1, len))
        }
        other => panic!("truncated graph: expected a size mismatch, got {other:?}"),
    }
    std::fs::remove_file(&data).expect("rm");
    std::fs::copy(engine("dev").join("model.onnx"), &model).expect("restore");
    match open(&dir, VerifyPolicy::Never) {
        Err(RuntimeError::Manifest(ManifestError::Integrity(IntegrityError::Missing { path, .. }))) => assert_eq!(path, data),
        other => panic!("missing weights: expected a missing-file error, got {other:?}"),
    }

    // A format-1 manifest (no records) still loads; its graph hash is still checked.
    let (_t, dir) = copy_engine();
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["format_version"] = 1.into();
    v.as_object_mut().expect("object").remove("files");
    std::fs::write(dir.join("manifest.json"), v.to_string()).expect("write");
    open(&dir, VerifyPolicy::First).expect("format-1 engine opens");
    v["onnx"]["blake3"] = "0".repeat(64).into();
    std::fs::write(dir.join("manifest.json"), v.to_string()).expect("write");
    match open(&dir, VerifyPolicy::First) {
        Err(RuntimeError::Manifest(ManifestError::Integrity(IntegrityError::Hash { path, .. }))) => assert_eq!(path, dir.join("model.onnx")),
        other => panic!("format-1 graph hash: got {other:?}"),
    }

    // A slot whose shape differs from the initializer (rank 1 more than the model's).
    let (_t, dir) = copy_engine();
    let mut m = Manifest::load(&dir).expect("manifest");
    m.lora.max_rank += 1;
    m.save(&dir).expect("save");
    let msg = mismatch_of(&dir);
    assert!(msg.contains("lora.") && msg.contains("slot initializer"), "{msg}");

    // A slot the model does not have.
    let (_t, dir) = copy_engine();
    let mut m = Manifest::load(&dir).expect("manifest");
    let mut extra = m.lora.slots[0].clone();
    extra.module = "proj_out".into();
    extra.a = "lora.proj_out.A".into();
    extra.b = "lora.proj_out.B".into();
    extra.in_features = m.model.hidden_size;
    extra.out_features = m.model.out_channels;
    if m.lora.slots.iter().any(|s| s.module == "proj_out") {
        m.lora.slots.retain(|s| s.module != "proj_out");
        m.save(&dir).expect("save");
        let msg = mismatch_of(&dir);
        assert!(msg.contains("lora.proj_out.A") && msg.contains("does not list"), "{msg}");
    } else {
        m.lora.slots.push(extra);
        m.save(&dir).expect("save");
        let msg = mismatch_of(&dir);
        assert!(msg.contains("lora.proj_out.A"), "{msg}");
    }

    // A renamed data input.
    let (_t, dir) = copy_engine();
    let mut m = Manifest::load(&dir).expect("manifest");
    m.inputs[0].name = "latents".into();
    m.save(&dir).expect("save");
    let msg = mismatch_of(&dir);
    assert!(msg.contains("latents"), "{msg}");
}

#[test]
fn onnx_runtime_errors_keep_their_code_and_text() {
    use std::error::Error as _;
    // A model file ONNX Runtime cannot parse, recorded in the manifest (so only ORT refuses it).
    let (_t, dir) = copy_engine();
    std::fs::write(dir.join("model.onnx"), b"not a protobuf at all").expect("write");
    let mut m = Manifest::load(&dir).expect("manifest");
    m.onnx.blake3 = flux_trt::util::hash_file(&dir.join("model.onnx")).expect("hash").0;
    for r in m.files.iter_mut().filter(|r| r.path == "model.onnx") {
        *r = flux_trt::manifest::FileRecord::hash(&dir, "model.onnx", r.role).expect("record");
    }
    m.save(&dir).expect("save");
    let err = FluxSession::builder(&dir).with_library(ort_library()).build().expect_err("garbage model");
    let code = err.ort_code().unwrap_or_else(|| panic!("not an ONNX Runtime error: {err:?}"));
    assert_eq!(code, ort::ErrorCode::InvalidProtobuf, "{err}");
    // the original ort::Error is the source, with ONNX Runtime's own message
    let source = err.source().and_then(|s| s.downcast_ref::<ort::Error>()).expect("ort::Error as the source");
    assert_eq!(source.code(), code);
    assert!(!source.message().is_empty() && err.to_string().contains(source.message()), "{err}");
    // through the crate error: same chain, and a kind
    let err = flux_trt::Error::from(err);
    assert_eq!(err.kind(), flux_trt::ErrorKind::Incompatible);
    assert!(err.source().and_then(|s| s.downcast_ref::<ort::Error>()).is_some());
}

#[test]
fn library_and_provider_errors_are_typed() {
    let missing = PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1");
    match FluxSession::builder(engine("dev")).with_library(&missing).build() {
        Err(RuntimeError::LibraryMissing { path }) => assert_eq!(path, missing),
        other => panic!("expected LibraryMissing, got {other:?}"),
    }
    // Once loaded, the process keeps its library: another file is refused, not silently ignored.
    let _loaded = session(engine("dev"), 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("libonnxruntime.so.copy");
    std::fs::copy(ort_library(), &copy).expect("copy library");
    match FluxSession::builder(engine("dev")).with_library(&copy).build() {
        Err(RuntimeError::LibraryConflict { loaded, requested }) => {
            assert_eq!(requested, copy.canonicalize().expect("canonical"));
            assert_eq!(loaded, ort_library().canonicalize().expect("canonical"));
        }
        other => panic!("expected LibraryConflict, got {other:?}"),
    }
    // The PyPI CPU library has no CUDA provider: an error, never a CPU fallback.
    match FluxSession::builder(engine("dev")).with_library(ort_library()).with_execution_provider(ExecutionProvider::Cuda { device: 0 }).build() {
        Err(RuntimeError::ExecutionProvider { provider, message, .. }) => {
            assert!(provider.contains("CUDA"), "{provider}");
            println!("CUDA refused: {message}");
        }
        Ok(_) => println!("CUDA provider available in this library: session created on CUDA"),
        Err(other) => panic!("expected an execution-provider error, got {other}"),
    }
}

fn cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_flux-trt"));
    c.env_remove("ORT_DYLIB_PATH");
    c
}

#[test]
fn cli_run_with_lora_strength_matches_diffusers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.safetensors");
    let golden = fixtures().join("golden/outputs/dev.safetensors");
    let lora = format!("{}:0.5", fixtures().join("loras/attn.peft.safetensors").display());
    let r = cli()
        .args(["run", "--threads", "1", "--engine"])
        .arg(engine("dev"))
        .arg("--inputs")
        .arg(&golden)
        .args(["--lora", &lora, "--out"])
        .arg(&out)
        .arg("--ort-lib")
        .arg(ort_library())
        .output()
        .expect("run flux-trt");
    assert!(r.status.success(), "flux-trt run failed: {}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).expect("output file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("output safetensors");
    let v = st.tensor("sample").expect("sample");
    let got = flux_trt::runtime::HostTensor::new(v.shape().to_vec(), v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        .expect("shape");
    let s = session(engine("dev"), 1);
    let (_, g) = goldens("dev", &s);
    let e = rel_err(&got, &g["out.attn@0.5"]);
    assert!(e <= TOL, "cli attn@0.5: rel err {e:e}");
}

#[test]
fn cli_names_a_wrong_or_missing_library() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let not_ort = fixtures().join("fixtures.json");
    for lib in [not_ort.clone(), tmp.path().join("nope.so")] {
        let r = cli()
            .args(["run", "--engine"])
            .arg(engine("dev"))
            .arg("--inputs")
            .arg(fixtures().join("golden/outputs/dev.safetensors"))
            .arg("--out")
            .arg(tmp.path().join("o.safetensors"))
            .arg("--ort-lib")
            .arg(&lib)
            .output()
            .expect("run flux-trt");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "flux-trt accepted {}", lib.display());
        assert!(err.contains(&lib.display().to_string()) || err.contains(&lib.canonicalize().unwrap_or(lib.clone()).display().to_string()), "{err}");
        println!("{}", err.trim());
    }
    // No library at all: an error that says how to give one.
    let r = cli()
        .args(["run", "--engine"])
        .arg(engine("dev"))
        .arg("--inputs")
        .arg(fixtures().join("golden/outputs/dev.safetensors"))
        .arg("--out")
        .arg(tmp.path().join("o.safetensors"))
        .output()
        .expect("run flux-trt");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("ORT_DYLIB_PATH"), "{err}");
}

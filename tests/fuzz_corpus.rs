//! The CI smoke run of the fuzzers (`tools/fuzz.sh`): every committed input of `fuzz/corpus/<target>/`
//! (seeds) and `fuzz/regressions/<target>/` (inputs that once crashed a target) goes through its
//! target's body, `flux_trt::fuzz`, exactly as the AFL++ binaries run it. A panic or a broken
//! invariant fails the test and names the file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_runs_through_its_target_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for target in flux_trt::fuzz::TARGETS {
        let seeds = inputs(&root.join("corpus").join(target.name));
        assert!(!seeds.is_empty(), "fuzz target `{}` has no seed corpus in fuzz/corpus/{}/", target.name, target.name);
        for file in seeds.iter().chain(&inputs(&root.join("regressions").join(target.name))) {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (target.run)(&bytes))) {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                failures.push(format!("{} ({}): {msg}", file.display(), target.name));
            }
        }
    }
    assert!(failures.is_empty(), "fuzz inputs that panic:\n{}", failures.join("\n"));
}

#[test]
fn every_fuzz_target_has_a_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for target in flux_trt::fuzz::TARGETS {
        assert!(manifest.contains(&format!("name = \"{}\"", target.name)), "fuzz/Cargo.toml has no [[bin]] `{}`", target.name);
        assert!(root.join("fuzz_targets").join(format!("{}.rs", target.name)).is_file(), "fuzz/fuzz_targets/{}.rs is missing", target.name);
    }
}

// Inputs that crashed a target once (`fuzz/regressions/`), each now a typed error naming what is wrong.

fn regression(target: &str, file: &str) -> (std::path::PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target).join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

/// A PEFT file whose `lora_adapter_metadata` has `lora_alpha: 1e300`: the scale alpha/r overflowed
/// `f32` to infinity and the adapter loaded, so every slot it filled became inf/NaN.
#[test]
fn regression_lora_alpha_beyond_f32_is_refused_naming_the_key() {
    let (path, bytes) = regression("lora", "alpha-1e300.safetensors");
    let e = flux_trt::lora::load_bytes(&path, &bytes, "x").expect_err("an infinite scale must not load");
    assert!(
        matches!(&e, flux_trt::Error::Lora(flux_trt::lora::LoraError::Invalid { key, .. }) if key.starts_with("transformer.") && key.ends_with(".lora_A.weight")),
        "{e:?}"
    );
    assert!(e.to_string().contains("not a finite 32-bit float"), "{e}");
}

/// An FP8 manifest with `"scale_floor": 1e39`: it loaded as infinity, and the manifest
/// `build-engine --tensorrt` saves back (with `null` there) no longer loaded.
#[test]
fn regression_manifest_float_beyond_f32_is_a_parse_error_naming_the_field() {
    let (path, bytes) = regression("manifest", "scale-floor-1e39.json");
    let e = flux_trt::Manifest::parse(&path, std::str::from_utf8(&bytes).unwrap()).expect_err("an f32 overflow must not load");
    assert!(matches!(&e, flux_trt::manifest::ManifestError::Parse { .. }), "{e:?}");
    let source = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
    assert!(source.contains("`fp8.scale_floor`") && source.contains("32-bit float"), "{source}");
}

/// A `--prompts` line with `"steps": 1000000000000`: the schedule tried to allocate 8 TB and the
/// process aborted.
#[test]
fn regression_batch_step_count_above_the_maximum_is_an_error() {
    use flux_trt::pipeline::{scheduler::MAX_STEPS, Schedule, SchedulerConfig};
    let (path, bytes) = regression("batch", "steps-1e12.jsonl");
    let lines = flux_trt::pipeline::batch::parse_batch(&path, std::str::from_utf8(&bytes).unwrap()).unwrap();
    let steps = lines[0].steps.unwrap();
    let e = Schedule::flux(&SchedulerConfig::flux_dev(), steps, 4096).expect_err("a huge step count must be refused");
    assert!(e.to_string().contains(&format!("at most {MAX_STEPS}")), "{e}");
    assert!(Schedule::flux(&SchedulerConfig::flux_dev(), MAX_STEPS, 4096).is_ok());
}

/// A manifest whose model or data file name leaves the engine folder (`../`, absolute) is refused
/// when it is read, naming the manifest and the name, so no engine opener reads or hashes a file
/// outside its folder (found reading the `manifest` target's parser).
#[test]
fn manifest_file_names_outside_the_engine_folder_are_refused() {
    use flux_trt::manifest::{ComponentManifest, IntegrityError, Manifest, ManifestError};
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/manifest");
    let transformer: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus.join("transformer.json")).unwrap()).unwrap();
    let component: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus.join("text_encoder.json")).unwrap()).unwrap();
    let file = Path::new("engine/manifest.json");
    for (field, bad) in [("file", "../model.onnx"), ("data_file", "/etc/passwd"), ("file", "a/../../b.onnx"), ("file", "")] {
        let mut t = transformer.clone();
        t["onnx"][field] = bad.into();
        let e = Manifest::parse(file, &t.to_string()).expect_err(bad);
        assert!(matches!(&e, ManifestError::Integrity(IntegrityError::BadRecord { path, .. }) if path == bad), "{bad}: {e}");
        assert!(e.to_string().contains("engine/manifest.json"), "{e}");
        let mut c = component.clone();
        c["onnx"][field] = bad.into();
        assert!(ComponentManifest::parse(file, &c.to_string()).is_err(), "component {field} = {bad}");
    }
    assert!(Manifest::parse(file, &transformer.to_string()).is_ok(), "the seed itself loads");
}

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

//! `flux-trt inspect` on the bundled fixtures: JSON matches the fixture index, bad files fail
//! with a message naming the file and key.

use std::path::Path;
use std::process::Command;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn inspect(path: &Path, json: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flux-trt"));
    c.arg("inspect").arg(path);
    if json {
        c.arg("--json");
    }
    c.output().expect("run flux-trt")
}

fn index() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("fixtures.json")).unwrap()).unwrap()
}

#[test]
fn checkpoints_report_layout_variant_and_blocks() {
    for (path, layout, variant, double, single) in [
        ("models/dev-bfl.safetensors", "bfl", "dev", 2, 2),
        ("models/dev-diffusers", "diffusers", "dev", 2, 2),
        ("models/schnell-bfl.safetensors", "bfl", "schnell", 1, 1),
        ("models/schnell-diffusers", "diffusers", "schnell", 1, 1),
    ] {
        let out = inspect(&fixtures().join(path), true);
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["layout"], layout, "{path}");
        assert_eq!(v["config"]["variant"], variant, "{path}");
        assert_eq!(v["config"]["num_double_blocks"], double, "{path}");
        assert_eq!(v["config"]["num_single_blocks"], single, "{path}");
        let text = inspect(&fixtures().join(path), false);
        assert!(String::from_utf8_lossy(&text.stdout).contains(variant), "{path}: text output names the variant");
    }
}

#[test]
fn loras_report_format_modules_and_ranks() {
    let idx = index();
    for l in idx["loras"].as_array().unwrap() {
        let path = l["path"].as_str().unwrap();
        let out = inspect(&fixtures().join(path), true);
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["format"], l["format"], "{path}");
        let mods: Vec<&str> = v["modules"].as_array().unwrap().iter().map(|m| m["module"].as_str().unwrap()).collect();
        let want: Vec<&str> = l["modules"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
        assert_eq!(mods, want, "{path}");
        assert!(v["modules"].as_array().unwrap().iter().all(|m| m["rank"].as_u64().unwrap() <= l["rank"].as_u64().unwrap() * 4));
    }
}

#[test]
fn bad_files_fail_naming_file_and_key() {
    let idx = index();
    for b in idx["bad"].as_array().unwrap() {
        let path = b["path"].as_str().unwrap();
        let out = inspect(&fixtures().join(path), false);
        assert!(!out.status.success(), "{path}: inspect must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        let file_name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&file_name), "{path}: error does not name the file: {err}");
        if let Some(key) = b["key"].as_str() {
            assert!(err.contains(key), "{path}: error does not name `{key}`: {err}");
        }
    }
}

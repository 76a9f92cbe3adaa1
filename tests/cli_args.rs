//! Command-line choices are `clap::ValueEnum`s: a bad value is refused by clap before anything
//! runs, with the valid values listed; flags that would be ignored are refused too.

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run the binary")
}

fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`:\n{err}");
    }
}

#[test]
fn bad_choices_are_refused_with_the_valid_values() {
    let flux = env!("CARGO_BIN_EXE_flux-trt");
    let out = run(flux, &["run", "--engine", "nowhere", "--inputs", "none.safetensors", "--cpu-fallback", "sometimes"]);
    // clap's usage error: exit status 2, the value and the possible values named
    assert_eq!(out.status.code(), Some(2));
    refused(&out, &["invalid value 'sometimes'", "--cpu-fallback", "[possible values: shape-only, forbid, allow]"]);
    let out = run(flux, &["generate", "--engine", "nowhere", "--prompt", "x", "--cpu-fallback", "never"]);
    assert_eq!(out.status.code(), Some(2));
    refused(&out, &["invalid value 'never'", "[possible values: shape-only, forbid, allow]"]);
    let out = run(flux, &["selftest", "--backend", "onnxruntime"]);
    assert_eq!(out.status.code(), Some(2));
    refused(&out, &["invalid value 'onnxruntime'", "[possible values: tensorrt, cuda]"]);
    let out = run(flux, &["selftest", "--trt-targets", "sm89,sm42"]);
    assert_eq!(out.status.code(), Some(2));
    refused(&out, &["sm42", "sm89"]);
}

#[test]
fn build_engine_choices_and_ignored_flags() {
    let be = env!("CARGO_BIN_EXE_build-engine");
    for (flag, bad, values) in [
        ("--precision", "fp7", "[possible values: fp32, fp16, bf16, fp8]"),
        ("--vae-precision", "int8", "[possible values: fp32, fp16, bf16, fp8]"),
        ("--fp8-weight-scale", "row", "[possible values: channel, tensor]"),
        ("--fp8-float", "fp16", "[possible values: bf16, fp32]"),
    ] {
        let out = run(be, &["--model", "m", "--out", "o", flag, bad]);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}");
        refused(&out, &[&format!("invalid value '{bad}'"), flag, values]);
    }
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/dev-bfl.safetensors");
    // A flag that only applies to a part that is not built is an error, not silently dropped
    // (checked before the model is read).
    let out = run(be, &["--model", model, "--out", "/nonexistent/o", "--vae-precision", "fp16"]);
    refused(&out, &["--vae-precision applies to the pipeline components"]);
    // (`f32`: the alias of fp32 is accepted, or clap would refuse it first)
    let out = run(be, &["--model", model, "--out", "/nonexistent/o", "--precision", "f32", "--trt-targets", "sm89"]);
    refused(&out, &["--trt-targets applies to the TensorRT build"]);
}

//! Shared by the ONNX Runtime tests: where libonnxruntime is, and small helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `ORT_DYLIB_PATH` if set (CI), else the library inside Python's `onnxruntime` package.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import onnxruntime,os,glob;d=os.path.join(os.path.dirname(onnxruntime.__file__),'capi');print(sorted(glob.glob(os.path.join(d,'libonnxruntime.so.*')))[-1])"])
        .output()
        .expect("ORT_DYLIB_PATH is unset and python3 could not be run to find onnxruntime");
    assert!(out.status.success(), "ORT_DYLIB_PATH is unset and python3 has no onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Relative error max|Δ| / max|reference|.
pub fn rel_err(got: &flux_trt::runtime::HostTensor, want: &flux_trt::runtime::HostTensor) -> f32 {
    let d = got.max_abs_diff(want).unwrap_or_else(|| panic!("shape {:?} vs {:?}", got.shape(), want.shape()));
    d / want.max_abs().max(f32::MIN_POSITIVE)
}

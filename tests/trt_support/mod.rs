//! Shared by the TensorRT tests: where the TensorRT-RTX libraries are.
#![allow(dead_code)]

use std::process::Command;

use flux_trt::engine::TrtLibrary;

/// `TRT_RTX_LIB_DIR` if set (CI, `tools/test.sh`), else the folder of Python's `tensorrt_rtx_libs` package.
pub fn trt_library() -> TrtLibrary {
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

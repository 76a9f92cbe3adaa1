//! Errors of the native CUDA backend. Every variant names the call, library, kernel, file or
//! tensor it is about; the library's own status code and message are kept.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// No NVIDIA driver library, or the driver reports no CUDA device.
    #[error("no CUDA GPU: {message}")]
    NoGpu { message: String },
    /// A CUDA driver API call failed.
    #[error("CUDA driver: {call} failed with {code}: {message}")]
    Driver { call: String, code: i32, message: String },
    /// A run-time loaded library (cuBLASLt, cuDNN, NVRTC) is missing or too old.
    #[error("{name}: {message}")]
    Library { name: String, message: String },
    /// NVRTC rejected a kernel source; `log` is the compiler's log.
    #[error("NVRTC: kernel `{kernel}` did not compile:\n{log}")]
    Nvrtc { kernel: String, log: String },
    /// A cuBLASLt call failed.
    #[error("cuBLASLt: {call} failed with status {status}")]
    Cublas { call: String, status: String },
    /// A cuDNN call failed.
    #[error("cuDNN: {call} failed with status {status}: {message}")]
    Cudnn { call: String, status: String, message: String },
    /// cuDNN has no fused attention engine for this head dimension / dtype.
    #[error("attention: head dim {head_dim} is not supported by cuDNN's fused SDPA here (supported: multiples of 8 up to 256): {message}")]
    UnsupportedHeadDim { head_dim: usize, message: String },
    /// FP8 attention was asked for (`CudaOptions::fp8_attention`) but cannot run here: the GPU,
    /// the cuDNN version, or no cuDNN engine for the FP8 graph (no silent bf16 fallback).
    #[error("FP8 attention unavailable: {reason}")]
    Fp8AttentionUnavailable { reason: String },
    /// A device allocation failed.
    #[error("out of device memory: {bytes} bytes for {what}")]
    OutOfMemory { bytes: usize, what: String },
    /// The engine folder cannot be run by this backend (missing initializer, wrong dtype or shape, FP8, ...).
    #[error("{path}: {message}")]
    Engine { path: PathBuf, message: String },
    /// A request or step input has the wrong shape or value.
    #[error("input `{tensor}`: {message}")]
    Input { tensor: String, message: String },
    /// A staged set or lease made by another session.
    #[error("{what} belongs to another CUDA session")]
    ForeignSlots { what: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CudaError {
    /// A failed driver call (`call` names it and what it was for).
    pub fn driver(call: impl Into<String>, e: cudarc::driver::DriverError) -> Self {
        let code = e.0 as i32;
        let message = e.to_string();
        if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            return CudaError::OutOfMemory { bytes: 0, what: call.into() };
        }
        if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE {
            return CudaError::NoGpu { message };
        }
        CudaError::Driver { call: call.into(), code, message }
    }

    pub fn cublas(call: impl Into<String>, e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Cublas { call: call.into(), status: format!("{:?}", e.0) }
    }

    pub fn cudnn(call: impl Into<String>, e: cudarc::cudnn::result::CudnnError) -> Self {
        let message = format!("{e}");
        CudaError::Cudnn { call: call.into(), status: format!("{:?}", e.0), message }
    }
}

//! Errors of the runtime area (ONNX Runtime sessions, inputs, hot-swap). Every variant names
//! the file, engine, tensor or library it is about; ONNX Runtime's own message is kept verbatim.

use std::path::PathBuf;

use crate::lora::PlanError;
use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Neither an explicit library path nor `ORT_DYLIB_PATH` was given.
    #[error("no ONNX Runtime library: set ORT_DYLIB_PATH to libonnxruntime.so (1.31 or newer) or pass it with .with_library(path)")]
    NoLibrary,
    #[error("{path}: ONNX Runtime library does not exist")]
    LibraryMissing { path: PathBuf },
    /// dlopen failed, the file is not ONNX Runtime, or its version is too old.
    #[error("{path}: cannot load ONNX Runtime: {message}")]
    Library { path: PathBuf, message: String },
    /// The process already loaded ONNX Runtime from another file; a process holds one library.
    #[error("ONNX Runtime is already loaded from {loaded} in this process; cannot also load {requested}")]
    LibraryConflict { loaded: PathBuf, requested: PathBuf },
    /// An ONNX Runtime call failed; `what` says which call and on which engine or tensor. The
    /// source is ONNX Runtime's own error (its [`::ort::Error::code`] and message).
    #[cfg(feature = "ort")]
    #[error("{what}: ONNX Runtime: {source}")]
    Ort {
        what: String,
        #[source]
        source: ::ort::Error,
    },
    /// A CUDA driver call failed (slot uploads); the source is the driver's error code.
    #[cfg(feature = "ort")]
    #[error("{what}: {source}")]
    Cuda {
        what: String,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("{engine}: execution provider {provider} is not available: {message}")]
    ExecutionProvider { engine: PathBuf, provider: String, message: String },
    /// ONNX Runtime's extended optimizers fuse FP8 Q/DQ into kernels that reject float8.
    #[error("{engine}: FP8 engine needs graph optimization level Disable or Level1 (basic) on ONNX Runtime, not {level}")]
    Fp8Level { engine: PathBuf, level: String },
    /// FP8 engines exported for TensorRT keep bf16 elsewhere; ORT's CPU provider has no bf16 Gemm.
    #[error("{engine}: this FP8 engine computes its unquantized parts in bf16 (the TensorRT form), which ONNX Runtime's CPU provider cannot run (no bf16 Gemm); export it with --fp8-float fp32 for ONNX Runtime CPU")]
    Fp8Bf16OnCpu { engine: PathBuf },
    /// A pipeline component (text encoder, VAE decoder) exported in bf16; ORT's CPU provider has
    /// no bf16 kernels for its ops (`Mul`, `MatMul`, ...).
    #[error("{component}: this component was exported in bf16, which ONNX Runtime's CPU provider cannot run (no bf16 kernels); rebuild with --text-encoder-precision fp32 (FP8 engines: --fp8-float fp32 implies it) or --vae-precision fp32, or run on a GPU provider")]
    Bf16ComponentOnCpu { component: PathBuf },
    /// Staging a slot set would pass the session's device-memory budget for slot sets.
    #[error("{engine}: staging {needed} bytes of LoRA slots would exceed the slot budget ({used} of {limit} bytes in use); drop staged adapters or raise the budget")]
    SlotBudget { engine: PathBuf, needed: u64, used: u64, limit: u64 },
    /// A staged adapter or lease was made by another session.
    #[error("{engine}: {what} belongs to session {owner}, not to this session ({session})")]
    ForeignSlots { engine: PathBuf, what: &'static str, owner: u64, session: u64 },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An adapter does not fit the engine's slots (nothing was changed).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    /// A run input is missing, unexpected or has the wrong shape.
    #[error("input `{tensor}`: {message}")]
    Input { tensor: String, message: String },
    /// An inputs file could not be read as flux-trt inputs.
    #[error("{path}: {message}")]
    InputFile { path: PathBuf, message: String },
    /// The model produced something other than the manifest's output.
    #[error("{engine}: output `{tensor}`: {message}")]
    Output { engine: PathBuf, tensor: String, message: String },
}

#[cfg(feature = "ort")]
impl RuntimeError {
    pub(crate) fn ort(what: impl Into<String>, e: impl Into<::ort::Error>) -> Self {
        RuntimeError::Ort { what: what.into(), source: e.into() }
    }

    /// ONNX Runtime's error code, when an ONNX Runtime call failed.
    pub fn ort_code(&self) -> Option<::ort::ErrorCode> {
        match self {
            RuntimeError::Ort { source, .. } => Some(source.code()),
            _ => None,
        }
    }
}

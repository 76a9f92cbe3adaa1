//! Errors of the TensorRT build area. Every variant that comes from a TensorRT call carries the
//! text TensorRT logged during that call (`log`), verbatim.

use std::path::PathBuf;

use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// This build of flux-trt has no TensorRT support.
    #[error("flux-trt was built without TensorRT support: rebuild with `--features tensorrt` (or `tensorrt-enterprise`)")]
    NotCompiled,
    #[error("{path}: cannot load the TensorRT library: {message}")]
    Library { path: PathBuf, message: String },
    /// A process loads one TensorRT library; another folder was asked for later.
    #[error("TensorRT is already loaded from {loaded} in this process; cannot also load {requested}")]
    LibraryConflict { loaded: PathBuf, requested: PathBuf },
    /// A TensorRT call failed; `step` names the call and its subject, `failure` is the error
    /// TensorRT returned (code and message), `log` what it logged during the call.
    #[error("TensorRT {step} failed: {failure}; TensorRT said: {log}")]
    Tensorrt {
        step: String,
        #[source]
        failure: TensorrtFailure,
        log: String,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: TensorRT's ONNX parser rejected the model: {log}")]
    Parse { path: PathBuf, log: String },
    /// A manifest slot name is not a weight of the parsed network.
    #[error("{path}: cannot mark LoRA slot weight `{name}` refittable: {log}")]
    MarkRefittable { path: PathBuf, name: String, log: String },
    /// The parser exposed a LoRA slot as a network input instead of keeping it a weight.
    #[error("{path}: LoRA slot `{name}` became a network input, not a refittable weight")]
    SlotIsInput { path: PathBuf, name: String },
    /// The parsed network's inputs/outputs differ from the manifest's.
    #[error("{path}: network does not match manifest.json: {message}")]
    Io { path: PathBuf, message: String },
    /// A dynamic dimension of the network is not covered by the profile recipe.
    #[error("profile: dimension `{dim}` {message}")]
    Profile { dim: String, message: String },
    #[error("{message}")]
    Target { message: String },
    /// The manifest says FP8 but the network has no Q/DQ layers (or the reverse).
    #[error("{path}: {message}")]
    Precision { path: PathBuf, message: String },
    /// `build_serialized_network` failed.
    #[error("{path}: TensorRT engine build failed: {log}")]
    Build { path: PathBuf, log: String },
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
}

/// What kind of failure a TensorRT call returned (the `trtx` binding's error kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TensorrtCode {
    InvalidArgument,
    OutOfMemory,
    /// A runtime error inside TensorRT.
    Runtime,
    /// A CUDA error reported through TensorRT.
    Cuda,
    /// The TensorRT (or ONNX parser) library is not loaded.
    NotLoaded,
    /// An unexpected answer from a call that returned no TensorRT error (a null result, `false`).
    Other,
}

/// The error one TensorRT call returned: its [`TensorrtCode`] and TensorRT's message, verbatim.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TensorrtFailure {
    pub code: TensorrtCode,
    pub message: String,
}

impl From<&str> for TensorrtFailure {
    fn from(message: &str) -> Self {
        TensorrtFailure { code: TensorrtCode::Other, message: message.to_string() }
    }
}

impl From<String> for TensorrtFailure {
    fn from(message: String) -> Self {
        TensorrtFailure { code: TensorrtCode::Other, message }
    }
}

#[cfg(feature = "tensorrt")]
impl From<trtx::Error> for TensorrtFailure {
    fn from(e: trtx::Error) -> Self {
        let code = match &e {
            trtx::Error::InvalidArgument(_) => TensorrtCode::InvalidArgument,
            trtx::Error::OutOfMemory(_) => TensorrtCode::OutOfMemory,
            trtx::Error::Runtime(_) => TensorrtCode::Runtime,
            trtx::Error::Cuda(_) => TensorrtCode::Cuda,
            trtx::Error::TrtRtxLibraryNotLoaded | trtx::Error::TrtOnnxParserLibraryNotLoaded => TensorrtCode::NotLoaded,
            _ => TensorrtCode::Other,
        };
        TensorrtFailure { code, message: e.to_string() }
    }
}

//! The crate's one error type: [`Error`] wraps each area's error (checkpoint, LoRA, slot plan,
//! manifest, runtime, TensorRT, pipeline, ...) with the cause kept as its source, and
//! [`Error::kind`] classifies it without matching on the areas.

use crate::checkpoint::CheckpointError;
use crate::engine::EngineError;
use crate::lora::{LoraError, PlanError};
use crate::manifest::ManifestError;
use crate::pipeline::PipelineError;
#[cfg(feature = "cuda")]
use crate::runtime::cuda::CudaError;
use crate::runtime::tensorrt::TrtError;
use crate::runtime::RuntimeError;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any flux-trt error. Each variant keeps its area's typed error (and through it the original
/// ONNX Runtime / TensorRT / CUDA / I/O error) as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lora(#[from] LoraError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tensorrt(#[from] TrtError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The native CUDA backend (feature `cuda`).
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

/// What kind of failure an [`Error`] is, for callers that react differently (an HTTP status, a
/// retry) without matching every area's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad user input: a file, adapter, request or option the caller can fix.
    InvalidInput,
    /// An adapter that does not fit the engine's slots.
    Incompatible,
    /// The backend (library, device, driver) failed or is missing.
    Backend,
    /// Reading or writing a file failed.
    Io,
}

impl Error {
    /// This error's [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Checkpoint(_) | Error::Lora(_) | Error::Manifest(_) | Error::Pipeline(_) => ErrorKind::InvalidInput,
            Error::Plan(_) => ErrorKind::Incompatible,
            Error::Runtime(RuntimeError::Plan(_)) => ErrorKind::Incompatible,
            Error::Runtime(RuntimeError::Io { .. }) => ErrorKind::Io,
            Error::Runtime(RuntimeError::Input { .. } | RuntimeError::InputFile { .. }) => ErrorKind::InvalidInput,
            Error::Runtime(_) | Error::Engine(_) | Error::Tensorrt(_) => ErrorKind::Backend,
            #[cfg(feature = "cuda")]
            Error::Cuda(CudaError::Input { .. }) => ErrorKind::InvalidInput,
            #[cfg(feature = "cuda")]
            Error::Cuda(CudaError::Io { .. }) => ErrorKind::Io,
            #[cfg(feature = "cuda")]
            Error::Cuda(_) => ErrorKind::Backend,
        }
    }
}

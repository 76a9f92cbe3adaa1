//! Exporter errors; every variant names the file and, where there is one, the tensor.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: tensor `{tensor}` has shape {found:?}, the {what} needs {expected:?}")]
    Shape { path: PathBuf, tensor: String, what: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{path}: tensor `{tensor}` holds {found} bytes, its shape and dtype need {expected}")]
    ByteCount { path: PathBuf, tensor: String, expected: u64, found: u64 },
    #[error("slot plan: module `{module}` is not a Linear module of this model ({detail})")]
    BadSlot { module: String, detail: String },
    #[error("fp8 export: {0}")]
    Fp8Options(String),
    #[error(transparent)]
    Fp8(#[from] super::fp8::Fp8Error),
    #[error(transparent)]
    Vae(#[from] super::components::vae::VaeError),
    #[error("{path}: the graph protobuf would be {bytes} bytes, above protobuf's 2 GiB limit (lower --max-rank or the targets)")]
    TooLarge { path: PathBuf, bytes: u64 },
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    #[error("{path}: cannot serialize the ONNX model: {message}")]
    Serialize { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Component { path: PathBuf, message: String },
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

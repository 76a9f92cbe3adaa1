//! Checkpoint errors; every variant names the file and, where there is one, the tensor.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: not a FLUX.1 transformer checkpoint: {message}")]
    NotFlux { path: PathBuf, message: String },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("checkpoint has no tensor `{name}`")]
    Missing { name: String },
}

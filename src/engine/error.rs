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
    /// A TensorRT call failed; `step` names the call and its subject.
    #[error("TensorRT {step} failed: {error}; TensorRT said: {log}")]
    Tensorrt { step: String, error: String, log: String },
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

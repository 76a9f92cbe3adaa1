//! Errors raised while reading LoRA files. Every variant names the file, and the tensor or
//! key where there is one ([`LoraError::Spec`]: the `FILE[:STRENGTH]` argument as given).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: file holds no tensors")]
    Empty { path: PathBuf },
    #[error("{path}: cannot tell which LoRA format this is (first keys: {sample})")]
    UnknownFormat { path: PathBuf, sample: String },
    #[error("{path}: tensor `{tensor}` has dtype {dtype}; LoRA factors must be f32, f16 or bf16")]
    UnsupportedDtype { path: PathBuf, tensor: String, dtype: String },
    #[error("{path}: tensor `{tensor}` contains NaN or Inf")]
    NonFinite { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected}")]
    Shape { path: PathBuf, tensor: String, expected: String, found: Vec<usize> },
    #[error("{path}: key `{key}` is not a LoRA key of the {format} format")]
    UnknownKey { path: PathBuf, key: String, format: &'static str },
    #[error("{path}: key `{key}` is {what}, which flux-trt does not support")]
    Unsupported { path: PathBuf, key: String, what: &'static str },
    #[error("{path}: module `{module}` has {present} but not {missing}")]
    Incomplete { path: PathBuf, module: String, present: String, missing: String },
    #[error("{path}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
    #[error("adapter `{spec}` (FILE or FILE:STRENGTH): {problem}")]
    Spec { spec: String, problem: &'static str },
}

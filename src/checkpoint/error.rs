//! Checkpoint errors; every variant names the file and, where there is one, the tensor.
//!
//! `tensor` / `key` fields hold the name **as stored in the file** (BFL or diffusers name,
//! prefix included), so the user can find it with any safetensors viewer.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    /// Empty, truncated or malformed safetensors file (header, offsets, sizes).
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// No FLUX.1 transformer keys at all (a LoRA, a VAE, another model…).
    #[error("{path}: not a FLUX.1 transformer checkpoint: {message}")]
    NotFlux { path: PathBuf, message: String },
    /// A tensor-level problem not covered by a more specific variant.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    /// Element type other than f32 / f16 / bf16.
    #[error("{path}: tensor `{tensor}` has dtype {dtype}; only F32, F16 and BF16 are supported")]
    DType { path: PathBuf, tensor: String, dtype: String },
    /// An expected parameter of the detected architecture is absent.
    #[error("{path}: missing tensor `{tensor}`{}", canonical_note(.tensor, .canonical))]
    MissingTensor { path: PathBuf, tensor: String, canonical: String },
    /// A tensor whose shape differs from what the detected architecture requires.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },
    /// A key that is not a parameter of the detected architecture (never silently ignored).
    #[error("{path}: unexpected tensor `{key}`: {message}")]
    UnknownKey { path: PathBuf, key: String, message: String },
    /// BFL-named and diffusers-named keys in one checkpoint.
    #[error("{path}: mixes BFL keys (e.g. `{bfl_key}`) and diffusers keys (e.g. `{diffusers_key}`)")]
    MixedLayout { path: PathBuf, bfl_key: String, diffusers_key: String },
    /// A folder that has neither `config.json` nor a `transformer/config.json`.
    #[error("{path}: diffusers folder without config.json (expected {path}/config.json or {path}/transformer/config.json)")]
    NoConfig { path: PathBuf },
    /// `config.json` unreadable, unsupported, or contradicting the tensors.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// Anything else about the checkpoint's files (index, shard list, …).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// [`super::Checkpoint::tensor`] / `fused` asked for a name the checkpoint does not have.
    #[error("checkpoint has no tensor `{name}`")]
    Missing { name: String },
}

fn canonical_note(tensor: &str, canonical: &str) -> String {
    if tensor == canonical {
        String::new()
    } else {
        format!(" (canonical `{canonical}`)")
    }
}

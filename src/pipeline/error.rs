//! Text-to-image pipeline errors; every variant names the file (and tensor or key) it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading or writing a file failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    #[error("{path}: not valid JSON for {what}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: scheduler config: {message}")]
    SchedulerConfig { path: PathBuf, message: String },
    #[error("scheduler: {0}")]
    Schedule(String),
    #[error("{0}")]
    Value(String),
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("resolution {width}x{height}: {message}")]
    Resolution { width: usize, height: usize, message: String },
    /// A request above a configured limit (checked before any work).
    #[error("request {requested} exceeds {limit} (a configured limit; raise it to allow this request){}", estimate.as_ref().map(|e| format!("; estimated transformer activation memory {e}")).unwrap_or_default())]
    Limit { requested: String, limit: String, estimate: Option<String> },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("transformer at step {step}")]
    Transformer {
        step: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A backend stage (text encoder, VAE decoder) failed; its own error is the source.
    #[error("{stage}")]
    Stage {
        stage: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The caller's step callback stopped the generation (a cancelled or timed-out request).
    #[error("cancelled after step {step}")]
    Cancelled { step: usize },
    /// A line of a `generate --prompts` batch file that is not a prompt object (1-based line).
    #[error("{}:{line}: not a prompt object", path.display())]
    BatchLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: no prompts", path.display())]
    EmptyBatch { path: PathBuf },
    /// A batch line's `out` that would leave the output folder (absolute, or with `..`).
    #[error("{}:{line}: `out` {out:?} must be a relative path inside the output folder (no `..`, not absolute)", path.display())]
    BatchOut { path: PathBuf, line: usize, out: PathBuf },
    #[error("{what}: expected {expected} values, got {found}")]
    Length { what: String, expected: usize, found: usize },
}

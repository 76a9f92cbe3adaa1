//! Errors of the TensorRT runtime. Everything that comes from TensorRT carries the text it logged
//! (`log`) verbatim; CUDA errors carry the driver's message.

use std::path::PathBuf;

use crate::engine::{EngineError, TensorrtFailure};
use crate::lora::PlanError;
use crate::manifest::ManifestError;
use crate::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum TrtError {
    /// This build of flux-trt has no TensorRT support.
    #[error("flux-trt was built without TensorRT support: rebuild with `--features tensorrt` (or `tensorrt-enterprise`)")]
    NotCompiled,
    /// Library loading, logger, or another build-area failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: manifest.json has no `engine` entry: build the TensorRT plan first (build-engine --tensorrt)")]
    NoEngine { path: PathBuf },
    /// Reading the plan failed (the path is named). A plan that differs from its record is a
    /// [`ManifestError::Integrity`] (through [`TrtError::Manifest`]).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    /// The plan was built by another TensorRT variant than this build loads.
    #[error("{path}: plan was built with {found}, this build of flux-trt runs {expected}")]
    Variant { path: PathBuf, expected: String, found: String },
    /// TensorRT says the plan cannot run here (TensorRT version, GPU compute capability, driver).
    #[error("{path}: {detail}")]
    Incompatible { path: PathBuf, detail: Box<Incompatibility> },
    /// An FP8 engine on a GPU without FP8 tensor cores (compute capability below 8.9).
    #[error("{path}: FP8 engine, but {gpu} has compute capability {major}.{minor}; FP8 (E4M3) needs 8.9 or newer (Ada, Blackwell)")]
    Fp8Gpu { path: PathBuf, gpu: String, major: i32, minor: i32 },
    /// `deserializeCudaEngine` refused the plan.
    #[error("{path}: TensorRT cannot deserialize the plan: {log}")]
    Deserialize { path: PathBuf, log: String },
    #[error("{path}: {message}")]
    Bindings { path: PathBuf, message: String },
    #[error("CUDA {what}: {message}")]
    Cuda { what: String, message: String },
    /// A TensorRT call failed; `step` names the call and its subject, `failure` is the error
    /// TensorRT returned (code and message), `log` what it logged during the call.
    #[error("TensorRT {step} failed: {failure}; TensorRT said: {log}")]
    Tensorrt {
        step: String,
        #[source]
        failure: TensorrtFailure,
        log: String,
    },
    /// An adapter does not fit the engine's slots (nothing changed).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Bad run inputs (nothing ran).
    #[error(transparent)]
    Input(#[from] RuntimeError),
    /// A slot's refit prototype differs from the manifest (count or type).
    #[error("{path}: refit weights `{name}`: {message}")]
    SlotPrototype { path: PathBuf, name: String, message: String },
    /// The refitter still misses weights after every slot was set (e.g. base weights stripped).
    #[error("{path}: refit is missing weights that are not LoRA slots: {names:?}")]
    MissingWeights { path: PathBuf, names: Vec<String> },
    /// A self-test step outside TensorRT (loading the model or adapters, export) failed.
    #[error("self-test {step}: {message}")]
    Selftest { step: String, message: String },
    /// A refit failed and so did the rollback: the engine's slots may hold a mix of two
    /// adapters. Runs refuse until a refit of every slot from one complete set succeeds (each
    /// run retries it with its slot set; swapping to another set is allowed).
    #[error("{path}: the session is unusable until a full refit succeeds (its LoRA slots may hold a mix of two adapters): {cause}")]
    Poisoned { path: PathBuf, cause: String },
    /// The engine's refittable weights (`getAllWeights`) differ from the manifest's slots.
    #[error("{path}: refittable weights differ from manifest.json's LoRA slots: refittable but not slots: {not_in_manifest:?}; slots TensorRT cannot refit: {not_refittable:?}")]
    RefitSet { path: PathBuf, not_in_manifest: Vec<String>, not_refittable: Vec<String> },
    /// The execution context reports an output dimension that is negative or unresolved.
    #[error("{path}: output `{name}` has dims {dims:?} (nbDims {nb_dims}) after the inputs were set: not a buffer size")]
    OutputShape { path: PathBuf, name: String, nb_dims: i32, dims: Vec<i64> },
    /// A slot value is NaN or infinite in the slots' dtype (nothing changed).
    #[error("slot `{slot}`: value {value} at index {index} is not finite as {dtype:?} (check the adapters and strengths); nothing was changed")]
    NonFinite { slot: String, index: usize, value: f32, dtype: crate::tensor::DType },
    /// `refitCudaEngineAsync` failed; `restored` says whether the previous slots were refit back.
    #[error("{path}: refit failed (previous adapter restored: {restored}): {log}")]
    Refit { path: PathBuf, restored: bool, log: String },
}

/// Why TensorRT refuses a plan on this machine ([`TrtError::Incompatible`]).
#[derive(Debug)]
pub struct Incompatibility {
    /// From `manifest.engine`.
    pub built_version: String,
    pub targets: Vec<String>,
    /// The library loaded now.
    pub loaded_version: String,
    pub gpu: String,
    /// `getEngineValidity`'s diagnostics bits.
    pub diagnostics: String,
    /// What TensorRT logged.
    pub log: String,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plan (TensorRT {}, targets {:?}) cannot run with TensorRT {} on {}: {}; TensorRT said: {}",
            self.built_version, self.targets, self.loaded_version, self.gpu, self.diagnostics, self.log
        )
    }
}

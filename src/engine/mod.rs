//! TensorRT engine build: an exported folder (`model.onnx` + `model.onnx.data` +
//! `manifest.json`) → `engine.plan`, with `manifest.engine` filled in.
//!
//! - The model is parsed by TensorRT's own ONNX parser (external data resolved next to the
//!   model file), and its inputs/outputs are checked against the manifest.
//! - `kREFIT_INDIVIDUAL`: only the manifest's LoRA slot weights (`lora.<module>.A/B`) are marked
//!   refittable, nothing else, so base GEMMs (and their biases) stay constant and fusable. A slot
//!   name the network does not have is an [`EngineError::MarkRefittable`] naming it, with
//!   TensorRT's message.
//! - Precision comes from the graph (TensorRT-RTX and TensorRT 11 networks are strongly typed);
//!   FP8 manifests must have Q/DQ layers, other precisions none.
//! - One optimization profile from a [`ProfileRecipe`] (`batch`, `img_seq`, `txt_seq`;
//!   `joint_seq = txt_seq + img_seq`).
//! - TensorRT-RTX targets: `setNbComputeCapabilities(n)` before `setComputeCapability(cc, i)`;
//!   no "current GPU" target (see [`Target`]).
//! - Optional `kSTRIP_PLAN`; the plan is written atomically, then `manifest.engine` (variant,
//!   library version, targets, stripped, BLAKE3).
//!
//! Every TensorRT failure carries TensorRT's logged text. Without the `tensorrt` feature the
//! same functions return [`EngineError::NotCompiled`].
//!
//! Where this runs: parsing, marking and the network checks run on any machine with the
//! TensorRT-RTX libraries (no GPU needed); the build itself needs a CUDA driver (on a GPU-less
//! machine it fails with TensorRT's "CUDA driver version is insufficient" message).

use std::path::Path;

mod error;
mod options;
mod report;

#[cfg(feature = "tensorrt")]
mod build;
#[cfg(feature = "tensorrt")]
mod network;
#[cfg(feature = "tensorrt")]
pub(crate) mod trt;

#[cfg(not(feature = "tensorrt"))]
mod stub;

#[cfg(feature = "tensorrt")]
use build as imp;
#[cfg(not(feature = "tensorrt"))]
use stub as imp;

pub use error::{EngineError, TensorrtCode, TensorrtFailure};
pub use options::{check_fp8_targets, fp8_capable, BuildOptions, DimRange, ProfileRecipe, Target, TrtLibrary, LIB_DIR_ENV};
pub use report::{EngineReport, NetworkReport, NetworkTensor};

use crate::manifest::{ComponentManifest, Manifest};

/// Default plan file name inside an engine folder.
pub const PLAN_FILE: &str = "engine.plan";

/// True when this build of flux-trt has TensorRT support.
pub const fn compiled() -> bool {
    cfg!(feature = "tensorrt")
}

/// Builds `dir/engine.plan` (or `opts.plan_file`) from the exported folder `dir` and records it
/// in `dir/manifest.json`. On error neither file is changed.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    imp::build(dir, opts)
}

/// Builds the plan of a pipeline component folder (`text_encoder/`, `text_encoder_2/`,
/// `vae_decoder/`) with the same builder and records it in the component's manifest.json.
pub fn build_component(dir: &Path, opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    imp::build_component(dir, opts)
}

/// Parses `dir`'s model, checks it against its manifest and marks the slots refittable, without
/// building: layer counts, inputs/outputs, refittable names. Library from [`TrtLibrary::from_env`].
pub fn inspect_network(dir: &Path) -> Result<NetworkReport, EngineError> {
    let manifest = Manifest::load(dir)?;
    imp::inspect_network_with(dir, &manifest, &TrtLibrary::from_env())
}

/// Parses a pipeline component folder (`text_encoder/`, ...) with TensorRT's ONNX parser, checks
/// its inputs/outputs against its [`ComponentManifest`] and marks its LoRA slots (CLIP) refittable.
pub fn inspect_component_network_with(dir: &Path, manifest: &ComponentManifest, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    imp::inspect_component_network_with(dir, manifest, lib)
}

/// Parses one ONNX model file with TensorRT's parser and describes the network (layer counts,
/// inputs, outputs), with no manifest.
pub fn inspect_onnx(model: &Path, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    imp::inspect_onnx(model, lib)
}

/// [`inspect_network`] against a given manifest (e.g. one edited in memory) and library.
pub fn inspect_network_with(dir: &Path, manifest: &Manifest, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    imp::inspect_network_with(dir, manifest, lib)
}

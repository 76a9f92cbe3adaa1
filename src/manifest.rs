//! `manifest.json`: what an exported artifact (ONNX model and, later, TensorRT plan) contains,
//! written by the exporter, validated by every runtime before it runs anything.
//!
//! Versioned: readers refuse a `format_version` they do not know. Format 2 adds `files`, the
//! size and BLAKE3 of every file the exporter and the TensorRT builder wrote ([`integrity`]);
//! format 1 still loads (its files cannot be verified).

pub mod component;
pub mod integrity;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::flux::FluxConfig;
use crate::lora::{Slot, SlotPlan};
use crate::tensor::DType;

pub use component::{ComponentConfig, ComponentKind, ComponentManifest, IoDType, IoSpec, VaeDecoderConfig, COMPONENT_MANIFEST_VERSION};
pub use integrity::{FileRecord, FileRole, IntegrityError, VerifyPolicy};

/// Version of the manifest schema written by this build (2: `files` records).
pub const MANIFEST_VERSION: u32 = 2;
/// Oldest manifest version this build reads (1: no `files`; loads, cannot be verified).
pub const MIN_MANIFEST_VERSION: u32 = 1;
/// File name of the manifest inside an engine folder.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading or writing the manifest failed (the operation and path are named).
    #[error(transparent)]
    File(#[from] crate::util::FileError),
    #[error("{path}: manifest is not valid JSON for this schema")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: manifest format_version {found} is not supported (this build reads {min} to {supported})")]
    Version { path: PathBuf, found: u32, min: u32, supported: u32 },
    #[error("{path}: manifest does not match the model: {message}")]
    Mismatch { path: PathBuf, message: String },
    /// An engine file differs from its record (missing, wrong size, wrong BLAKE3).
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// Numeric precision of the exported base weights / compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    #[cfg_attr(feature = "cli", value(alias = "f32"))]
    Fp32,
    #[cfg_attr(feature = "cli", value(alias = "f16"))]
    Fp16,
    Bf16,
    /// FP8 (E4M3) Q/DQ on base weights and activations, the rest in bf16.
    Fp8,
}

impl Precision {
    /// Element type of unquantized weights, activations and LoRA slots.
    pub fn float_dtype(self) -> DType {
        match self {
            Precision::Fp32 => DType::F32,
            Precision::Fp16 => DType::F16,
            Precision::Bf16 | Precision::Fp8 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "fp16" | "f16" => Ok(Precision::Fp16),
            "bf16" => Ok(Precision::Bf16),
            "fp8" => Ok(Precision::Fp8),
            o => Err(format!("unknown precision `{o}` (use fp32, fp16, bf16 or fp8)")),
        }
    }
}

/// A graph input or output. `None` in `shape` is a dynamic dimension named in `dim_names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<usize>>,
    pub dim_names: Vec<Option<String>>,
}

/// One refittable slot in the artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSpec {
    pub module: String,
    /// Initializer name of A (`[max_rank, in_features]`).
    pub a: String,
    /// Initializer name of B (`[out_features, max_rank]`).
    pub b: String,
    pub in_features: usize,
    pub out_features: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoraSlots {
    pub max_rank: usize,
    /// Element type of every A and B.
    pub dtype: DType,
    pub slots: Vec<SlotSpec>,
}

impl LoraSlots {
    pub fn from_plan(plan: &SlotPlan, dtype: DType) -> Self {
        LoraSlots {
            max_rank: plan.max_rank,
            dtype,
            slots: plan
                .slots
                .iter()
                .map(|s| SlotSpec { module: s.module.clone(), a: s.a_name(), b: s.b_name(), in_features: s.in_features, out_features: s.out_features })
                .collect(),
        }
    }

    /// The slot plan these slots were exported from.
    pub fn plan(&self) -> SlotPlan {
        SlotPlan {
            max_rank: self.max_rank,
            slots: self.slots.iter().map(|s| Slot { module: s.module.clone(), in_features: s.in_features, out_features: s.out_features }).collect(),
        }
    }
}

/// A file the artifact was built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// `checkpoint` or `lora`.
    pub role: String,
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

/// The ONNX files of the artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnnxArtifact {
    /// Model file name, relative to the manifest's folder.
    pub file: String,
    /// External-data file name, relative to the manifest's folder.
    pub data_file: String,
    pub opset: i64,
    /// BLAKE3 of the model file (the graph; weights are in `data_file`).
    pub blake3: String,
}

/// The TensorRT plan of the artifact, once built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineArtifact {
    pub file: String,
    /// `tensorrt-rtx` or `tensorrt`.
    pub tensorrt_variant: String,
    pub tensorrt_version: String,
    /// Compute-capability targets, e.g. `["sm89", "sm120"]`.
    pub targets: Vec<String>,
    pub stripped_weights: bool,
    pub blake3: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// `flux-trt <version>` of the exporter.
    pub exporter: String,
    pub model: FluxConfig,
    pub precision: Precision,
    pub onnx: OnnxArtifact,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub lora: LoraSlots,
    pub sources: Vec<SourceFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineArtifact>,
    /// Size and BLAKE3 of every file of the folder the exporter and builder wrote (format 2;
    /// empty for format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRecord>,
    /// Per-quantized-input activation scales (FP8 only), by quantization point: the GEMM name
    /// (e.g. `transformer_blocks.0.attn.qkv`) or `<block>.attn.q|k|v` (`--fp8-attention`).
    /// Scale = max(amax / 448, 2⁻²⁴), before rounding to the graph's float dtype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp8_activation_scales: Option<std::collections::BTreeMap<String, f32>>,
    /// FP8 settings (weight scale mode, float dtype, quantized GEMMs, calibration); FP8 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp8: Option<Fp8Manifest>,
}

/// Granularity of the weight scales.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum WeightScale {
    /// One scale per output channel (row of `[out, in]`).
    #[default]
    Channel,
    /// One scale per weight tensor (per fused GEMM).
    Tensor,
}

impl std::str::FromStr for WeightScale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "channel" => Ok(WeightScale::Channel),
            "tensor" => Ok(WeightScale::Tensor),
            o => Err(format!("unknown weight scale mode `{o}` (use channel or tensor)")),
        }
    }
}

impl std::fmt::Display for WeightScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightScale::Channel => "channel",
            WeightScale::Tensor => "tensor",
        })
    }
}

/// How the activation scales were obtained (recorded in the manifest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    pub samples: usize,
    pub seed: u64,
    /// `--calib-data` file, if real embeddings were used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    pub img_seq: usize,
    pub txt_seq: usize,
    /// σ of each sample (flow-match schedule).
    pub sigmas: Vec<f32>,
}

/// FP8 section of the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fp8Manifest {
    pub format: String,
    pub weight_scale: WeightScale,
    /// Float dtype of the unquantized graph parts (bf16 for TensorRT, f32 for ORT CPU tests).
    pub float_dtype: DType,
    pub attention: bool,
    /// Quantized GEMMs (weights and inputs).
    pub quantized: Vec<String>,
    pub scale_floor: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationInfo>,
}

impl Manifest {
    /// Reads and version-checks `dir/manifest.json` (or the file itself if `path` is a file).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let (file, text) = read_text(path)?;
        Self::parse(&file, &text)
    }

    /// Parses and version-checks the text of a manifest; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        check_version(file, text, MIN_MANIFEST_VERSION, MANIFEST_VERSION)?;
        let m: Manifest = serde_json::from_str(text).map_err(|source| ManifestError::Parse { path: file.to_path_buf(), source })?;
        check_artifact_names(file, &m.onnx, m.engine.as_ref())?;
        Ok(m)
    }

    /// Writes the manifest atomically to `dir/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ManifestError> {
        save_json(self, dir)
    }
}

/// The model and engine file names a manifest gives stay inside its folder (an engine folder
/// never reads or hashes a file elsewhere); otherwise the typed `BadRecord` naming the manifest.
pub(crate) fn check_artifact_names(file: &Path, onnx: &OnnxArtifact, engine: Option<&EngineArtifact>) -> Result<(), ManifestError> {
    let names = [Some(onnx.file.as_str()), (!onnx.data_file.is_empty()).then_some(onnx.data_file.as_str()), engine.map(|e| e.file.as_str())];
    match names.into_iter().flatten().find(|n| !integrity::inside_folder(n)) {
        Some(bad) => Err(IntegrityError::BadRecord { manifest: file.to_path_buf(), path: bad.to_string() }.into()),
        None => Ok(()),
    }
}

/// Reads `path` (a folder's `manifest.json` or the file): the file read and its text.
pub(crate) fn read_text(path: &Path) -> Result<(PathBuf, String), ManifestError> {
    use crate::util::{FileError, FileOp};
    let file = if path.is_dir() { path.join(MANIFEST_FILE) } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file).map_err(|e| FileError::new(FileOp::Read, &file, e))?;
    Ok((file, text))
}

/// Checks the manifest text before the full schema is read: its `format_version` is in
/// `min..=max` (so an old/new manifest gets the right message), and no number lies beyond the
/// `f32` range. Every float of the manifest schemas is an `f32`: a larger number would load as
/// infinity and be written back as `null`, which no longer loads.
pub(crate) fn check_version(file: &Path, text: &str, min: u32, max: u32) -> Result<(), ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        format_version: u32,
    }
    let parse = |source| ManifestError::Parse { path: file.to_path_buf(), source };
    let value: serde_json::Value = serde_json::from_str(text).map_err(parse)?;
    let probe = Probe::deserialize(&value).map_err(parse)?;
    if !(min..=max).contains(&probe.format_version) {
        return Err(ManifestError::Version { path: file.to_path_buf(), found: probe.format_version, min, supported: max });
    }
    if let Some(at) = beyond_f32(&value, "") {
        return Err(parse(serde::de::Error::custom(format!("the number at `{at}` is beyond the range of a 32-bit float"))));
    }
    Ok(())
}

/// The JSON path of the first number that overflows `f32`.
fn beyond_f32(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|x| (x as f32).is_infinite()).then(|| at.to_string()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| beyond_f32(x, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, x)| beyond_f32(x, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") })),
        _ => None,
    }
}

/// Writes `value` as pretty JSON to `dir/manifest.json`, atomically.
pub(crate) fn save_json(value: &impl Serialize, dir: &Path) -> Result<(), ManifestError> {
    let file = dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(value).map_err(|source| ManifestError::Parse { path: file.clone(), source })?;
    Ok(crate::util::write_atomic(&file, &json)?)
}

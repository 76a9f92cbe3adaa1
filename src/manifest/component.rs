//! `manifest.json` of a pipeline component folder (`engines/NAME/text_encoder/`,
//! `text_encoder_2/`, `vae_decoder/`): what the component's ONNX graph computes, its inputs and
//! outputs, and its LoRA slots (CLIP only).
//!
//! Engine folder layout (the transformer stays at the top level, [`super::Manifest`]):
//! ```text
//! engines/NAME/manifest.json, model.onnx, model.onnx.data        transformer
//! engines/NAME/text_encoder/{manifest.json, model.onnx, model.onnx.data}    CLIP-L  (kind clip-text)
//! engines/NAME/text_encoder_2/{...}                                T5 encoder (kind t5-encoder)
//! engines/NAME/vae_decoder/{...}                                   VAE decoder (kind vae-decoder)
//! engines/NAME/tokenizer/, tokenizer_2/, scheduler/               copied from the diffusers pipeline
//! ```
//! Versioned separately from the transformer manifest: readers refuse a `format_version` they
//! do not know, and a `kind` that does not match `config`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{EngineArtifact, FileRecord, LoraSlots, ManifestError, OnnxArtifact, Precision, SourceFile, MANIFEST_FILE, MIN_MANIFEST_VERSION};
use crate::encoders::{ClipTextConfig, T5EncoderConfig};

/// Version of the component manifest schema written by this build (2: `files` records).
pub const COMPONENT_MANIFEST_VERSION: u32 = 2;
/// Sub-folder of the CLIP-L text encoder in an engine folder.
pub const TEXT_ENCODER_DIR: &str = "text_encoder";
/// Sub-folder of the T5 encoder in an engine folder.
pub const TEXT_ENCODER_2_DIR: &str = "text_encoder_2";
/// Sub-folder of the VAE decoder in an engine folder.
pub const VAE_DECODER_DIR: &str = "vae_decoder";
/// Pipeline folders copied verbatim into an engine folder (tokenizers, scheduler config).
pub const COPIED_DIRS: [&str; 3] = ["tokenizer", "tokenizer_2", "scheduler"];

/// What a component folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// CLIP text model, output `pooled [batch, hidden]`.
    ClipText,
    /// T5 encoder, output `last_hidden_state [batch, L, d_model]`.
    T5Encoder,
    /// VAE decoder.
    VaeDecoder,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::ClipText => "clip-text",
            ComponentKind::T5Encoder => "t5-encoder",
            ComponentKind::VaeDecoder => "vae-decoder",
        }
    }
    /// The sub-folder of an engine folder this component lives in.
    pub fn dir_name(self) -> &'static str {
        match self {
            ComponentKind::ClipText => TEXT_ENCODER_DIR,
            ComponentKind::T5Encoder => TEXT_ENCODER_2_DIR,
            ComponentKind::VaeDecoder => VAE_DECODER_DIR,
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// VAE decoder settings the pipeline needs around the graph (diffusers `AutoencoderKL` config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeDecoderConfig {
    pub latent_channels: usize,
    pub out_channels: usize,
    /// Pixels per latent along each side (8 for FLUX.1).
    pub spatial_factor: usize,
    /// Latents are divided by this before decoding...
    pub scaling_factor: f32,
    /// ...and then this is added (`z / scaling + shift`), as FluxPipeline does.
    pub shift_factor: f32,
}

/// The component's typed config; the variant is the component kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentConfig {
    ClipText(ClipTextConfig),
    T5Encoder(T5EncoderConfig),
    VaeDecoder(VaeDecoderConfig),
}

impl ComponentConfig {
    pub fn kind(&self) -> ComponentKind {
        match self {
            ComponentConfig::ClipText(_) => ComponentKind::ClipText,
            ComponentConfig::T5Encoder(_) => ComponentKind::T5Encoder,
            ComponentConfig::VaeDecoder(_) => ComponentKind::VaeDecoder,
        }
    }
}

/// Element type of a component input/output (token ids are int64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoDType {
    F32,
    F16,
    Bf16,
    I64,
}

impl IoDType {
    /// From an ONNX `DataType` code; `None` for types components do not use.
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match code {
            1 => IoDType::F32,
            10 => IoDType::F16,
            16 => IoDType::Bf16,
            7 => IoDType::I64,
            _ => return None,
        })
    }
}

/// A component graph input or output. `None` in `shape` is a dynamic dimension named in
/// `dim_names` (like [`super::TensorSpec`], with integer types allowed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoSpec {
    pub name: String,
    pub dtype: IoDType,
    pub shape: Vec<Option<usize>>,
    pub dim_names: Vec<Option<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentManifest {
    pub format_version: u32,
    /// `flux-trt <version>` of the exporter.
    pub exporter: String,
    pub kind: ComponentKind,
    pub config: ComponentConfig,
    pub precision: Precision,
    pub onnx: OnnxArtifact,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    /// LoRA slots (CLIP text encoders exported with slots); slot A/B are graph inputs too
    /// (overridable initializers) but are not listed in `inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSlots>,
    /// Weight files (role `weights`) and LoRA files (role `lora`) the component was built from.
    pub sources: Vec<SourceFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineArtifact>,
    /// Size and BLAKE3 of every file of the folder (format 2; empty for format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRecord>,
}

impl ComponentManifest {
    /// Reads and checks `dir/manifest.json` (or the file itself): version, and `kind` against
    /// `config`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let (file, text) = super::read_text(path)?;
        Self::parse(&file, &text)
    }

    /// Parses and checks the text of a component manifest (version, `kind` against `config`);
    /// `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        super::check_version(file, text, MIN_MANIFEST_VERSION, COMPONENT_MANIFEST_VERSION)?;
        let m: ComponentManifest = serde_json::from_str(text).map_err(|source| ManifestError::Parse { path: file.to_path_buf(), source })?;
        super::check_artifact_names(file, &m.onnx, m.engine.as_ref())?;
        if m.kind != m.config.kind() {
            return Err(ManifestError::Mismatch {
                path: file.to_path_buf(),
                message: format!("kind `{}` but the config is for `{}`", m.kind, m.config.kind()),
            });
        }
        Ok(m)
    }

    /// Expects `kind`; loads like [`Self::load`].
    pub fn load_kind(path: &Path, kind: ComponentKind) -> Result<Self, ManifestError> {
        let m = Self::load(path)?;
        if m.kind != kind {
            let file = if path.is_dir() { path.join(MANIFEST_FILE) } else { path.to_path_buf() };
            return Err(ManifestError::Mismatch { path: file, message: format!("expected a `{kind}` component, found `{}`", m.kind) });
        }
        Ok(m)
    }

    /// Writes the manifest atomically to `dir/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ManifestError> {
        super::save_json(self, dir)
    }

    pub fn clip(&self) -> Option<&ClipTextConfig> {
        match &self.config {
            ComponentConfig::ClipText(c) => Some(c),
            _ => None,
        }
    }
    pub fn t5(&self) -> Option<&T5EncoderConfig> {
        match &self.config {
            ComponentConfig::T5Encoder(c) => Some(c),
            _ => None,
        }
    }
    pub fn vae(&self) -> Option<&VaeDecoderConfig> {
        match &self.config {
            ComponentConfig::VaeDecoder(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoders::{ClipActivation, ClipPooling};

    fn manifest() -> ComponentManifest {
        ComponentManifest {
            format_version: COMPONENT_MANIFEST_VERSION,
            exporter: "test".into(),
            kind: ComponentKind::ClipText,
            config: ComponentConfig::ClipText(ClipTextConfig {
                vocab_size: 10,
                hidden_size: 4,
                intermediate_size: 8,
                num_layers: 1,
                num_heads: 1,
                max_length: 77,
                activation: ClipActivation::QuickGelu,
                layer_norm_eps: 1e-5,
                pooling: ClipPooling::FirstEos { eos_token_id: 9 },
            }),
            precision: Precision::Fp32,
            onnx: OnnxArtifact { file: "model.onnx".into(), data_file: "model.onnx.data".into(), opset: 23, blake3: "x".into() },
            inputs: vec![IoSpec { name: "input_ids".into(), dtype: IoDType::I64, shape: vec![None, Some(77)], dim_names: vec![Some("batch".into()), None] }],
            outputs: vec![],
            lora: None,
            sources: vec![],
            engine: None,
            files: vec![],
        }
    }

    #[test]
    fn round_trips_and_refuses_other_versions_and_mismatched_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest();
        m.save(dir.path()).unwrap();
        assert_eq!(ComponentManifest::load(dir.path()).unwrap(), m);
        assert!(matches!(ComponentManifest::load_kind(dir.path(), ComponentKind::T5Encoder), Err(ManifestError::Mismatch { .. })));
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("\"kind\": \"clip-text\"") && text.contains("\"dtype\": \"i64\""), "{text}");
        std::fs::write(dir.path().join(MANIFEST_FILE), text.replace("\"kind\": \"clip-text\"", "\"kind\": \"vae-decoder\"")).unwrap();
        assert!(matches!(ComponentManifest::load(dir.path()), Err(ManifestError::Mismatch { .. })));
        let version = format!("\"format_version\": {COMPONENT_MANIFEST_VERSION}");
        assert!(text.contains(&version), "{text}");
        std::fs::write(dir.path().join(MANIFEST_FILE), text.replace(&version, "\"format_version\": 7")).unwrap();
        assert!(matches!(ComponentManifest::load(dir.path()), Err(ManifestError::Version { found: 7, .. })));
        // Format 1 (no `files`) still loads.
        std::fs::write(dir.path().join(MANIFEST_FILE), text.replace(&version, "\"format_version\": 1")).unwrap();
        assert_eq!(ComponentManifest::load(dir.path()).unwrap().files, vec![]);
    }
}

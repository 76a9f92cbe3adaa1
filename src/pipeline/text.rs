//! The text side of an engine folder: both tokenizers, CLIP (pooled embedding, with its LoRA
//! slots) and T5 (prompt embeddings) on ONNX Runtime, run as diffusers `FluxPipeline.encode_prompt`
//! runs them. [`super::engine::PipelineEngine`] holds one for its generations; FP8 calibration on
//! real prompts opens one alone (`build-engine --calib-prompts`, before any transformer exists;
//! `flux-trt calibrate`).

use std::path::Path;

use super::engine::{check_tokenizers, component, EngineFolderError};
use super::tokenize::{Encoded, PromptIds, PromptTokenizers};
use super::PipelineError;
use crate::manifest::component::{TEXT_ENCODER_2_DIR, TEXT_ENCODER_DIR};
use crate::manifest::{ComponentConfig, ComponentKind, ComponentManifest};
use crate::runtime::ort::{ComponentSession, ComponentSlots, SessionOptions};
use crate::runtime::{Lease, Slotted};

/// Text that tokenizer truncation cut, per encoder (`clip`, `t5`), as diffusers warns.
pub type Truncated = Vec<(&'static str, String)>;

/// Both tokenizers and both text encoders of an engine folder.
pub struct TextEncoders {
    tokenizers: PromptTokenizers,
    pub(super) clip: ComponentSession,
    pub(super) clip_manifest: ComponentManifest,
    t5: ComponentSession,
}

/// One prompt's conditioning.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptEmbedding {
    /// CLIP's pooled embedding `[pooled_dim]`.
    pub pooled: Vec<f32>,
    /// T5's `[text_len, context_dim]`, row-major.
    pub embeds: Vec<f32>,
    pub text_len: usize,
}

/// Many prompts' conditioning, stacked (the layout of `--calib-data`).
#[derive(Clone, Debug, PartialEq)]
pub struct PromptEmbeddings {
    pub n: usize,
    pub text_len: usize,
    /// `[n, text_len, context_dim]`.
    pub embeds: Vec<f32>,
    /// `[n, pooled_dim]`.
    pub pooled: Vec<f32>,
}

/// A prompt file (FP8 calibration): one prompt per line, trimmed; blank lines and lines starting
/// with `#` are skipped; a file with none is [`PipelineError::EmptyBatch`].
pub fn read_prompt_file(path: &Path) -> Result<Vec<String>, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::util::FileError::new(crate::util::FileOp::Read, path, e))?;
    let prompts: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    if prompts.is_empty() {
        return Err(PipelineError::EmptyBatch { path: path.to_path_buf() });
    }
    Ok(prompts)
}

fn ids_i64(e: &Encoded) -> Vec<i64> {
    e.ids.iter().map(|&i| i64::from(i)).collect()
}

impl TextEncoders {
    /// Opens `dir/text_encoder`, `dir/text_encoder_2` and the tokenizers beside them (T5's
    /// length is the exported encoder's), checking that the tokenizers fit the encoders.
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        let (t5, t5m) = component(&dir.join(TEXT_ENCODER_2_DIR), ComponentKind::T5Encoder, opts)?;
        let t5_len = match &t5m.config {
            ComponentConfig::T5Encoder(c) => c.max_length,
            _ => super::tokenize::T5_MAX_SEQUENCE_LENGTH,
        };
        let tokenizers = PromptTokenizers::from_pipeline_dir(dir, t5_len)?;
        let (clip, clip_manifest) = component(&dir.join(TEXT_ENCODER_DIR), ComponentKind::ClipText, opts)?;
        check_tokenizers(dir, &tokenizers, &clip_manifest, &t5m)?;
        Ok(TextEncoders { tokenizers, clip, clip_manifest, t5 })
    }

    /// The CLIP encoder (its adapter slots).
    pub fn clip(&self) -> &ComponentSession {
        &self.clip
    }

    /// FluxPipeline's tokenization; text that truncation cut is logged (as diffusers warns) and
    /// returned per encoder.
    pub fn tokenize(&self, prompt: &str, prompt_2: Option<&str>) -> Result<(PromptIds, Truncated), PipelineError> {
        let ids = self.tokenizers.encode(prompt, prompt_2)?;
        let mut truncated = Vec::new();
        for (which, e) in [("clip", &ids.clip), ("t5", &ids.t5)] {
            if let Some(removed) = &e.removed {
                tracing::warn!(encoder = which, removed = %removed, "prompt truncated: the tokenizer's max length cuts this text (as diffusers does)");
                truncated.push((which, removed.clone()));
            }
        }
        Ok((ids, truncated))
    }

    /// Both encoders on tokenized ids, CLIP with the slot set of `clip`.
    pub fn embed(&self, clip: &Lease<ComponentSlots>, ids: &PromptIds) -> Result<PromptEmbedding, PipelineError> {
        let stage = |stage: &'static str| move |e: crate::runtime::RuntimeError| PipelineError::Stage { stage, source: Box::new(e) };
        let pooled = self.clip.encode(clip, &ids_i64(&ids.clip)).map_err(stage("CLIP text encoder"))?;
        let embeds = self.t5.encode(&self.t5.lease(), &ids_i64(&ids.t5)).map_err(stage("T5 text encoder"))?;
        Ok(PromptEmbedding { pooled, embeds, text_len: ids.t5.ids.len() })
    }

    /// Every prompt through both encoders with CLIP's installed slot set (the base set unless a
    /// swap installed another), stacked.
    pub fn embed_all(&self, prompts: &[String]) -> Result<PromptEmbeddings, PipelineError> {
        let lease = self.clip.lease();
        let mut all = PromptEmbeddings { n: 0, text_len: 0, embeds: Vec::new(), pooled: Vec::new() };
        for p in prompts {
            let (ids, _) = self.tokenize(p, None)?;
            let e = self.embed(&lease, &ids)?;
            all.text_len = e.text_len;
            all.embeds.extend_from_slice(&e.embeds);
            all.pooled.extend_from_slice(&e.pooled);
            all.n += 1;
        }
        Ok(all)
    }
}

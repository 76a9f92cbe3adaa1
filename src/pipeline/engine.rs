//! [`PipelineEngine`]: a whole text-to-image engine folder on ONNX Runtime — the transformer
//! (top level: `manifest.json`, `model.onnx`), `text_encoder/` (CLIP-L, optional LoRA slots),
//! `text_encoder_2/` (T5), `vae_decoder/`, `tokenizer/`, `tokenizer_2/`, `scheduler/` — with
//! adapters swapped into the transformer's and CLIP's slots together.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::generate::{GenerateRequest, Generated, Stages};
use super::tokenize::PromptTokenizers;
use super::{PipelineError, SchedulerConfig};
use crate::lora::{Adapter, SlotWeights};
use crate::manifest::component::{TEXT_ENCODER_2_DIR as TEXT_ENCODER_2, TEXT_ENCODER_DIR as TEXT_ENCODER, VAE_DECODER_DIR as VAE_DECODER};
use crate::manifest::{ComponentConfig, ComponentKind, ComponentManifest};
use crate::runtime::ort::{ComponentSession, ComponentSpec, FluxSession, SessionOptions, StagedAdapter};
use crate::runtime::{AdapterLabel, RuntimeError};

const TOKENIZER: &str = "tokenizer";
const TOKENIZER_2: &str = "tokenizer_2";
const SCHEDULER: &str = "scheduler/scheduler_config.json";

/// Errors opening or using a pipeline engine folder.
#[derive(Debug, thiserror::Error)]
pub enum EngineFolderError {
    #[error("{engine}: not a complete text-to-image engine, missing {missing:?} (build it with `build-engine --pipeline DIR`)")]
    MissingParts { engine: PathBuf, missing: Vec<String> },
    #[error("{path}: {kind} component expected, the manifest says {found}")]
    WrongKind { path: PathBuf, kind: &'static str, found: String },
    /// A tokenizer that does not fit its text encoder (ids beyond the embedding table, other length).
    #[error("{engine}: {tokenizer} does not match {encoder}: {message}")]
    TokenizerMismatch { engine: PathBuf, tokenizer: &'static str, encoder: &'static str, message: String },
    #[error(
        "{engine}: adapter `{adapter}` has CLIP text-encoder modules but this engine has no text-encoder LoRA slots (rebuild with --text-encoder-lora-rank)"
    )]
    NoClipSlots { engine: PathBuf, adapter: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Plan(#[from] crate::lora::PlanError),
}

/// What one swap installed, and how long each half took.
#[derive(Clone, Debug)]
pub struct PipelineSwap {
    pub adapters: Vec<AdapterLabel>,
    pub transformer: Duration,
    pub text_encoder: Duration,
    pub total: Duration,
}

/// An adapter set validated and laid out for the transformer's and the text encoder's slots
/// ([`PipelineEngine::stage`]); installing it ([`PipelineEngine::install`]) does no validation.
#[derive(Clone, Debug)]
pub struct PipelineStaged {
    adapters: Vec<AdapterLabel>,
    transformer: StagedAdapter,
    text_encoder: Option<SlotWeights>,
    elapsed: Duration,
}

impl PipelineStaged {
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
    /// Bytes held: the transformer's staged slot tensors plus the text encoder's f32 weights.
    pub fn bytes(&self) -> u64 {
        let te: usize = self.text_encoder.iter().flat_map(|w| w.a.iter().chain(&w.b)).map(|m| m.data.len() * 4).sum();
        self.transformer.bytes() + te as u64
    }
    /// Time [`PipelineEngine::stage`] took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// Every stage of an engine folder, loaded.
pub struct PipelineEngine {
    dir: PathBuf,
    tokenizers: PromptTokenizers,
    scheduler: SchedulerConfig,
    transformer: FluxSession,
    clip: ComponentSession,
    clip_manifest: ComponentManifest,
    t5: ComponentSession,
    vae: ComponentSession,
}

fn component(dir: &Path, kind: ComponentKind, opts: &SessionOptions) -> Result<(ComponentSession, ComponentManifest), EngineFolderError> {
    let m = ComponentManifest::load(dir)?;
    if m.kind != kind {
        return Err(EngineFolderError::WrongKind { path: dir.join(crate::manifest::MANIFEST_FILE), kind: kind.name(), found: m.kind.name().to_string() });
    }
    let spec = ComponentSpec {
        dir: dir.to_path_buf(),
        model_file: m.onnx.file.clone(),
        blake3: m.onnx.blake3.clone(),
        input: m.inputs.first().map(|i| i.name.clone()).unwrap_or_default(),
        output: m.outputs.first().map(|o| o.name.clone()).unwrap_or_default(),
        lora: m.lora.clone(),
    };
    Ok((ComponentSession::open(spec, opts)?, m))
}

/// Token ids must index the encoders' embedding tables and CLIP's length must be the model's.
fn check_tokenizers(dir: &Path, t: &PromptTokenizers, clip: &ComponentManifest, t5: &ComponentManifest) -> Result<(), EngineFolderError> {
    let bad = |tokenizer, encoder, message| Err(EngineFolderError::TokenizerMismatch { engine: dir.to_path_buf(), tokenizer, encoder, message });
    if let Some(c) = clip.clip() {
        if t.clip.vocab_size() > c.vocab_size {
            return bad("tokenizer/", "text_encoder/", format!("{} token ids, the model embeds {}", t.clip.vocab_size(), c.vocab_size));
        }
        if t.clip.max_length() != c.max_length {
            return bad("tokenizer/", "text_encoder/", format!("model_max_length {}, the model takes {} tokens", t.clip.max_length(), c.max_length));
        }
    }
    if let Some(c) = t5.t5() {
        if t.t5.vocab_size() > c.vocab_size {
            return bad("tokenizer_2/", "text_encoder_2/", format!("{} token ids, the model embeds {}", t.t5.vocab_size(), c.vocab_size));
        }
    }
    Ok(())
}

impl PipelineEngine {
    /// Opens every part of `dir`; lists all missing parts at once.
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        let manifest = |p: &str| dir.join(p).join(crate::manifest::MANIFEST_FILE);
        let mut missing = Vec::new();
        for (part, path) in [
            ("transformer (manifest.json)", dir.join(crate::manifest::MANIFEST_FILE)),
            ("text_encoder/manifest.json", manifest(TEXT_ENCODER)),
            ("text_encoder_2/manifest.json", manifest(TEXT_ENCODER_2)),
            ("vae_decoder/manifest.json", manifest(VAE_DECODER)),
            ("tokenizer/", dir.join(TOKENIZER)),
            ("tokenizer_2/", dir.join(TOKENIZER_2)),
            ("scheduler/scheduler_config.json", dir.join(SCHEDULER)),
        ] {
            if !path.exists() {
                missing.push(part.to_string());
            }
        }
        if !missing.is_empty() {
            return Err(EngineFolderError::MissingParts { engine: dir.to_path_buf(), missing });
        }
        let scheduler = SchedulerConfig::from_file(&dir.join(SCHEDULER))?;
        let mut b = FluxSession::builder(dir).with_execution_provider(opts.provider).with_tf32(opts.tf32).with_cpu_fallback(opts.cpu_fallback);
        if let Some(l) = &opts.library {
            b = b.with_library(l);
        }
        if let Some(n) = opts.threads {
            b = b.with_threads(n);
        }
        let transformer = b.build()?;
        let (t5, t5m) = component(&dir.join(TEXT_ENCODER_2), ComponentKind::T5Encoder, opts)?;
        let tokenizers = PromptTokenizers::from_pipeline_dir(
            dir,
            match &t5m.config {
                ComponentConfig::T5Encoder(c) => c.max_length,
                _ => super::tokenize::T5_MAX_SEQUENCE_LENGTH,
            },
        )?;
        let (clip, clip_manifest) = component(&dir.join(TEXT_ENCODER), ComponentKind::ClipText, opts)?;
        let (vae, _) = component(&dir.join(VAE_DECODER), ComponentKind::VaeDecoder, opts)?;
        check_tokenizers(dir, &tokenizers, &clip_manifest, &t5m)?;
        Ok(PipelineEngine { dir: dir.to_path_buf(), tokenizers, scheduler, transformer, clip, clip_manifest, t5, vae })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn transformer(&self) -> &FluxSession {
        &self.transformer
    }
    pub fn text_encoder(&self) -> &ComponentSession {
        &self.clip
    }

    /// Validates `adapters` against the transformer's and (where they have CLIP modules) the text
    /// encoder's slots and lays them out for both, ready for [`PipelineEngine::install`]; changes
    /// nothing installed.
    pub fn stage(&self, adapters: &[(&Adapter, f32)]) -> Result<PipelineStaged, EngineFolderError> {
        let t0 = Instant::now();
        let clip_plan = self.clip_manifest.lora.as_ref().map(|l| l.plan());
        let text_encoder = match &clip_plan {
            Some(plan) => Some(plan.lay_out_text_encoder(adapters)?),
            None => {
                if let Some((a, _)) = adapters.iter().find(|(a, _)| !a.text_encoder.is_empty()) {
                    return Err(EngineFolderError::NoClipSlots { engine: self.dir.clone(), adapter: a.name.clone() });
                }
                None
            }
        };
        let adapters_labels = adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect();
        let transformer = self.transformer.stage(adapters)?;
        Ok(PipelineStaged { adapters: adapters_labels, transformer, text_encoder, elapsed: t0.elapsed() })
    }

    /// Makes a staged set current in both models. The text encoder is installed first; its
    /// failure leaves both on the previous adapters.
    pub fn install(&self, staged: &PipelineStaged) -> Result<PipelineSwap, EngineFolderError> {
        let t0 = Instant::now();
        let text_encoder = match &staged.text_encoder {
            Some(w) => self.clip.swap_weights(w.clone(), staged.adapters.clone())?.elapsed,
            None => Duration::ZERO,
        };
        let t1 = Instant::now();
        self.transformer.swap_staged(&staged.transformer)?;
        Ok(PipelineSwap { adapters: staged.adapters.clone(), transformer: t1.elapsed(), text_encoder, total: t0.elapsed() })
    }

    /// Lays `adapters` into the transformer's and (where they have CLIP modules) the text
    /// encoder's slots: [`PipelineEngine::stage`] then [`PipelineEngine::install`]. Everything is
    /// validated and converted before either is installed, so a failed swap leaves both on the
    /// previous adapters.
    pub fn swap(&self, adapters: &[(&Adapter, f32)]) -> Result<PipelineSwap, EngineFolderError> {
        let t0 = Instant::now();
        let staged = self.stage(adapters)?;
        let mut swap = self.install(&staged)?;
        swap.transformer += staged.elapsed;
        swap.total = t0.elapsed();
        Ok(swap)
    }

    /// Generates one image with the current adapters; `on_step(i, n)` after each step may stop it.
    pub fn generate(&self, req: &GenerateRequest, on_step: impl FnMut(usize, usize) -> std::ops::ControlFlow<()>) -> Result<Generated, PipelineError> {
        let model = &self.transformer.manifest().model;
        let stages = Stages {
            tokenizers: &self.tokenizers,
            clip: &self.clip,
            t5: &self.t5,
            transformer: &self.transformer,
            vae: &self.vae,
            scheduler: &self.scheduler,
            guidance_embeds: model.variant.has_guidance(),
            context_dim: model.context_dim,
        };
        stages.generate(req, on_step)
    }
}

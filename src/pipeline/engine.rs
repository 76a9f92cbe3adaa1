//! [`PipelineEngine`]: a whole text-to-image engine folder on ONNX Runtime — the transformer
//! (top level: `manifest.json`, `model.onnx`), `text_encoder/` (CLIP-L, optional LoRA slots),
//! `text_encoder_2/` (T5), `vae_decoder/`, `tokenizer/`, `tokenizer_2/`, `scheduler/` — with
//! adapters swapped into the transformer's and CLIP's slots together.
//!
//! The transformer is any runtime [`Transformer`] ([`PipelineEngine::open`]: ONNX Runtime's
//! [`FluxSession`]; [`PipelineEngine::with_transformer`]: any other backend); the text encoders
//! and the VAE decoder are ONNX Runtime component sessions.
//!
//! **Consistency.** [`PipelineEngine::swap`] stages both halves first (validated, laid out,
//! nothing installed), then installs the transformer's and CLIP's sets under one lock;
//! [`PipelineEngine::leases`] takes both leases under the same lock. A generation runs every
//! stage and step with the leases it took, so its image is exactly one adapter set's, whatever
//! is swapped meanwhile, and the next generation sees the new set.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::generate::{GenerateRequest, Generated, Leases, Stages};
use super::limits::{self, ActivationEstimate, AttentionMemory, Limits};
use super::text::TextEncoders;
use super::tokenize::PromptTokenizers;
use super::{PipelineError, SchedulerConfig};
use crate::lora::Adapter;
use crate::manifest::component::{TEXT_ENCODER_2_DIR as TEXT_ENCODER_2, TEXT_ENCODER_DIR as TEXT_ENCODER, VAE_DECODER_DIR as VAE_DECODER};
use crate::manifest::{ComponentKind, ComponentManifest};
use crate::runtime::ort::{ComponentSession, ComponentSpec, ComponentStaged, FluxSession, SessionOptions, StagedAdapter};
use crate::runtime::{AdapterLabel, RuntimeError, Slotted, Transformer};

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
    /// A runtime interface call (stage, install) failed.
    #[error(transparent)]
    Backend(#[from] crate::Error),
}

/// What one swap installed, and how long each half took.
#[derive(Clone, Debug)]
pub struct PipelineSwap {
    pub adapters: Vec<AdapterLabel>,
    pub transformer: Duration,
    pub text_encoder: Duration,
    pub total: Duration,
}

/// An adapter set validated and laid out for the transformer's (`S`: the backend's
/// [`Slotted::Staged`]) and the text encoder's slots ([`PipelineEngine::stage`]); installing it
/// ([`PipelineEngine::install`]) does no validation.
#[derive(Clone, Debug)]
pub struct PipelineStaged<S = StagedAdapter> {
    adapters: Vec<AdapterLabel>,
    transformer: S,
    text_encoder: ComponentStaged,
    text_encoder_bytes: u64,
    elapsed: Duration,
}

impl<S> PipelineStaged<S> {
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
    /// The transformer's staged set.
    pub fn transformer(&self) -> &S {
        &self.transformer
    }
    /// Bytes of the text encoder's staged slot tensors.
    pub fn text_encoder_bytes(&self) -> u64 {
        self.text_encoder_bytes
    }
    /// Time [`PipelineEngine::stage`] took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl PipelineStaged<StagedAdapter> {
    /// Bytes held: the transformer's staged slot tensors plus the text encoder's.
    pub fn bytes(&self) -> u64 {
        self.transformer.bytes() + self.text_encoder_bytes
    }
}

/// Every stage of an engine folder, loaded; the transformer is any runtime [`Transformer`].
pub struct PipelineEngine<T: Transformer = FluxSession> {
    dir: PathBuf,
    text: TextEncoders,
    scheduler: SchedulerConfig,
    transformer: T,
    vae: ComponentSession,
    limits: Limits,
    attention: AttentionMemory,
    /// Held while a swap installs both halves and while a generation takes its leases.
    swap_lock: Mutex<()>,
}

pub(super) fn component(dir: &Path, kind: ComponentKind, opts: &SessionOptions) -> Result<(ComponentSession, ComponentManifest), EngineFolderError> {
    let m = ComponentManifest::load(dir)?;
    if m.kind != kind {
        return Err(EngineFolderError::WrongKind { path: dir.join(crate::manifest::MANIFEST_FILE), kind: kind.name(), found: m.kind.name().to_string() });
    }
    if m.precision == crate::manifest::Precision::Bf16 && opts.provider == crate::runtime::ort::ExecutionProvider::Cpu {
        return Err(RuntimeError::Bf16ComponentOnCpu { component: dir.to_path_buf() }.into());
    }
    let spec = ComponentSpec {
        dir: dir.to_path_buf(),
        model_file: m.onnx.file.clone(),
        blake3: m.onnx.blake3.clone(),
        files: m.files.clone(),
        input: m.inputs.first().map(|i| i.name.clone()).unwrap_or_default(),
        output: m.outputs.first().map(|o| o.name.clone()).unwrap_or_default(),
        lora: m.lora.clone(),
    };
    Ok((ComponentSession::open(spec, opts)?, m))
}

/// Token ids must index the encoders' embedding tables and CLIP's length must be the model's.
pub(super) fn check_tokenizers(dir: &Path, t: &PromptTokenizers, clip: &ComponentManifest, t5: &ComponentManifest) -> Result<(), EngineFolderError> {
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

/// Every part an engine folder must have; all missing ones listed at once.
fn check_parts(dir: &Path) -> Result<(), EngineFolderError> {
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
    Ok(())
}

/// Checks that `dir` has every part of a text-to-image engine folder (all missing ones listed
/// at once), e.g. before opening a transformer backend for [`PipelineEngine::with_transformer`].
pub fn check_engine_folder(dir: &Path) -> Result<(), EngineFolderError> {
    check_parts(dir)
}

impl PipelineEngine<FluxSession> {
    /// Opens every part of `dir` on ONNX Runtime with `opts` (transformer and components alike);
    /// lists all missing parts at once.
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        check_parts(dir)?;
        let transformer = FluxSession::builder(dir).with_options(opts.clone()).build()?;
        Self::with_transformer(dir, transformer, opts)
    }
}

#[cfg(feature = "cuda")]
impl PipelineEngine<crate::runtime::cuda::CudaSession> {
    /// Opens `dir` with the transformer on the native CUDA backend (`cuda`) and the text encoders
    /// and VAE decoder on ONNX Runtime (`opts`). The folder's parts are checked before the GPU
    /// work (the transformer's upload takes seconds at full size).
    pub fn open_cuda(dir: &Path, cuda: crate::runtime::cuda::CudaOptions, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        check_parts(dir)?;
        let transformer = crate::runtime::cuda::CudaSession::open(dir, cuda)?;
        let mut engine = Self::with_transformer(dir, transformer, opts)?;
        engine.attention = AttentionMemory::Fused;
        Ok(engine)
    }
}

impl<T: Transformer> PipelineEngine<T> {
    /// Opens `dir`'s text encoders, VAE decoder, tokenizers and scheduler on ONNX Runtime with
    /// `opts`, around `transformer` (any backend, opened on the same folder).
    pub fn with_transformer(dir: &Path, transformer: T, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        check_parts(dir)?;
        let scheduler = SchedulerConfig::from_file(&dir.join(SCHEDULER))?;
        let text = TextEncoders::open(dir, opts)?;
        let (vae, _) = component(&dir.join(VAE_DECODER), ComponentKind::VaeDecoder, opts)?;
        // ONNX Runtime's CPU kernel of ONNX Attention materializes the scores; CUDA's is fused.
        let attention = match opts.provider {
            crate::runtime::ort::ExecutionProvider::Cpu => AttentionMemory::Materialized,
            crate::runtime::ort::ExecutionProvider::Cuda { .. } => AttentionMemory::Fused,
        };
        Ok(PipelineEngine { dir: dir.to_path_buf(), text, scheduler, transformer, vae, limits: Limits::default(), attention, swap_lock: Mutex::new(()) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn transformer(&self) -> &T {
        &self.transformer
    }
    pub fn text_encoder(&self) -> &ComponentSession {
        &self.text.clip
    }
    /// The request limits [`Self::generate`] enforces (default [`Limits::default`]).
    pub fn limits(&self) -> Limits {
        self.limits
    }
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
    /// How the transformer's attention holds its scores, for the activation estimate (set from
    /// the components' provider by default; a transformer backend with fused attention on a
    /// CPU-provider folder sets [`AttentionMemory::Fused`]).
    pub fn set_attention_memory(&mut self, attention: AttentionMemory) {
        self.attention = attention;
    }

    /// Estimated transformer activation memory of one step at `res` on this engine's provider.
    pub fn activation_estimate(&self, res: super::Resolution) -> ActivationEstimate {
        let m = self.transformer.manifest();
        let txt =
            m.inputs.iter().find(|i| i.name == crate::runtime::inputs::ENCODER_HIDDEN_STATES).and_then(|i| i.shape.get(1).copied().flatten()).unwrap_or(512);
        limits::estimate_for(&m.model, res, txt, m.precision.float_dtype().size(), self.attention)
    }

    /// Validates `adapters` against the transformer's and (where they have CLIP modules) the text
    /// encoder's slots and lays them out for both, ready for [`PipelineEngine::install`]; changes
    /// nothing installed.
    pub fn stage(&self, adapters: &[(&Adapter, f32)]) -> Result<PipelineStaged<T::Staged>, EngineFolderError> {
        let t0 = Instant::now();
        let text_encoder_bytes = match &self.text.clip_manifest.lora {
            Some(l) => l.slots.iter().map(|s| (l.max_rank * (s.in_features + s.out_features) * l.dtype.size()) as u64).sum(),
            None => {
                if let Some((a, _)) = adapters.iter().find(|(a, _)| !a.text_encoder.is_empty()) {
                    return Err(EngineFolderError::NoClipSlots { engine: self.dir.clone(), adapter: a.name.clone() });
                }
                0
            }
        };
        let text_encoder = self.text.clip.stage(adapters)?;
        let t1 = Instant::now();
        let transformer = self.transformer.stage(adapters)?;
        let labels = adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect();
        tracing::debug!(engine = %self.dir.display(), clip_stage = ?(t1 - t0), transformer_stage = ?t1.elapsed(), "pipeline stage");
        Ok(PipelineStaged { adapters: labels, transformer, text_encoder, text_encoder_bytes, elapsed: t0.elapsed() })
    }

    /// Makes a staged set current in both models, under the lock [`PipelineEngine::leases`]
    /// takes, so no generation sees one half. The transformer is installed first: CLIP's install
    /// cannot fail, so both or neither change.
    pub fn install(&self, staged: &PipelineStaged<T::Staged>) -> Result<PipelineSwap, EngineFolderError> {
        let t0 = Instant::now();
        let (transformer, text_encoder) = {
            let _both = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
            let t = self.transformer.install(&staged.transformer)?.elapsed;
            let c = self.text.clip.install(&staged.text_encoder)?.elapsed;
            (t, c)
        };
        Ok(PipelineSwap { adapters: staged.adapters.clone(), transformer, text_encoder, total: t0.elapsed() })
    }

    /// Lays `adapters` into the transformer's and (where they have CLIP modules) the text
    /// encoder's slots: [`PipelineEngine::stage`] then [`PipelineEngine::install`]. Both are
    /// staged (validated, laid out, converted) before either is installed, so a failed swap
    /// leaves both on the previous adapters; both are installed under the lock
    /// [`PipelineEngine::leases`] takes.
    pub fn swap(&self, adapters: &[(&Adapter, f32)]) -> Result<PipelineSwap, EngineFolderError> {
        let t0 = Instant::now();
        let staged = self.stage(adapters)?;
        let mut swap = self.install(&staged)?;
        swap.transformer += staged.elapsed;
        swap.total = t0.elapsed();
        Ok(swap)
    }

    /// The CLIP and transformer slot sets installed by the same swap, for one generation.
    pub fn leases(&self) -> Leases<T::Slots> {
        let _both = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        Leases { clip: self.text.clip.lease(), transformer: self.transformer.lease() }
    }

    /// Generates one image with the current adapters (one set of [`PipelineEngine::leases`] for
    /// every stage and step); `on_step(i, n)` after each step may stop it
    /// ([`ControlFlow::Break`]: [`PipelineError::Cancelled`]).
    pub fn generate(&self, req: &GenerateRequest, on_step: impl FnMut(usize, usize) -> ControlFlow<()>) -> Result<Generated, PipelineError> {
        self.generate_with(req, &self.leases(), on_step)
    }

    /// Generates one image with the slot sets of `leases`. Requests above [`Self::limits`] are
    /// refused before any work, with the activation estimate.
    pub fn generate_with(
        &self,
        req: &GenerateRequest,
        leases: &Leases<T::Slots>,
        on_step: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        let res = req.resolution;
        self.limits.check(res.width, res.height, 1).map_err(|e| limits::with_estimate(e, self.activation_estimate(res)))?;
        let model = &self.transformer.manifest().model;
        let stages = Stages {
            text: &self.text,
            transformer: &self.transformer,
            vae: &self.vae,
            scheduler: &self.scheduler,
            guidance_embeds: model.variant.has_guidance(),
            context_dim: model.context_dim,
        };
        stages.generate(req, leases, on_step)
    }
}

//! One text-to-image generation as diffusers `FluxPipeline.__call__` does it (batch 1, no true
//! CFG): tokenize → CLIP pooled embedding + T5 prompt embeddings → initial noise (seeded like
//! torch's CPU generator, or given) → denoising loop → unpack → VAE decoder → pixels.
//!
//! The transformer is any runtime [`Transformer`] (ONNX Runtime, TensorRT, native CUDA); the
//! text encoders and the VAE decoder are ONNX Runtime [`ComponentSession`]s. A generation runs
//! with the CLIP lease and the transformer lease it is given, for all of its steps.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::latents::{self, Resolution, LATENT_CHANNELS};
use super::noise::torch_randn;
use super::text::TextEncoders;
use super::{denoise, Conditioning, PipelineError, Schedule, SchedulerConfig};
use crate::runtime::ort::{ComponentInput, ComponentSession, ComponentSlots};
use crate::runtime::{Lease, Transformer};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    /// T5 prompt (FluxPipeline's `prompt_2`); default: `prompt`.
    pub prompt_2: Option<String>,
    pub resolution: Resolution,
    pub steps: usize,
    /// Guidance scale; used by guidance-distilled (dev) models, ignored by schnell-type models.
    pub guidance: f32,
    pub seed: u64,
    /// Packed initial latents `[1, S, 64]` instead of seeded noise (`--latents FILE`).
    pub latents: Option<Vec<f32>>,
    /// Keep the packed latents after every step in [`Generated::step_latents`] (off: empty).
    pub keep_step_latents: bool,
}

impl GenerateRequest {
    /// `prompt` at `resolution`: 28 steps, guidance 3.5, seed 0, seeded noise, no step latents.
    pub fn new(prompt: impl Into<String>, resolution: Resolution) -> Self {
        GenerateRequest { prompt: prompt.into(), prompt_2: None, resolution, steps: 28, guidance: 3.5, seed: 0, latents: None, keep_step_latents: false }
    }
}

/// Wall time of each stage of one generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    pub tokenize: Duration,
    /// Both text encoders.
    pub encode: Duration,
    /// One entry per denoising step (the transformer call plus the Euler step).
    pub steps: Vec<Duration>,
    pub decode: Duration,
}

impl Timings {
    pub fn denoise(&self) -> Duration {
        self.steps.iter().sum()
    }
    pub fn total(&self) -> Duration {
        self.tokenize + self.encode + self.denoise() + self.decode
    }
    /// Median time per step (zero without steps).
    pub fn median_step(&self) -> Duration {
        let mut s = self.steps.clone();
        s.sort();
        s.get(s.len() / 2).copied().unwrap_or_default()
    }
}

/// One generated image.
#[derive(Clone, Debug)]
pub struct Generated {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB `[H, W, 3]` (FluxPipeline's `output_type="pil"` pixels).
    pub rgb8: Vec<u8>,
    /// Denormalized image `[1, 3, H, W]` in [0, 1] (`output_type="pt"`).
    pub image: Vec<f32>,
    /// Packed latents after every step (only with [`GenerateRequest::keep_step_latents`]).
    pub step_latents: Vec<Vec<f32>>,
    pub timings: Timings,
    /// Text cut by tokenizer truncation, per encoder (`clip`, `t5`), as diffusers warns.
    pub truncated: super::text::Truncated,
}

/// The stages of one text-to-image pipeline. Borrowed, so a service can keep its sessions (and
/// swap their adapters) between calls.
pub struct Stages<'a, T: Transformer + ?Sized> {
    pub text: &'a TextEncoders,
    pub transformer: &'a T,
    pub vae: &'a ComponentSession,
    pub scheduler: &'a SchedulerConfig,
    /// Whether the transformer takes a guidance input (dev) or not (schnell).
    pub guidance_embeds: bool,
    /// T5 hidden size (the transformer's `joint_attention_dim`).
    pub context_dim: usize,
}

/// The adapter sets one generation runs with: CLIP's and the transformer's, taken together (see
/// [`super::engine::PipelineEngine::leases`]).
pub struct Leases<S> {
    pub clip: Lease<ComponentSlots>,
    pub transformer: Lease<S>,
}

impl<T: Transformer + ?Sized> Stages<'_, T> {
    /// Generates one image with the slot sets of `leases` for every stage and step;
    /// `on_step(i, n)` is called after each of the `n` steps and may stop the generation there
    /// ([`ControlFlow::Break`]: [`PipelineError::Cancelled`]).
    pub fn generate(
        &self,
        req: &GenerateRequest,
        leases: &Leases<T::Slots>,
        mut on_step: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        let res = req.resolution;
        let t0 = Instant::now();
        let (ids, truncated) = self.text.tokenize(&req.prompt, req.prompt_2.as_deref())?;
        let tokenize = t0.elapsed();

        let t1 = Instant::now();
        let e = self.text.embed(&leases.clip, &ids)?;
        let guidance = self.guidance_embeds.then_some(req.guidance);
        let cond = Conditioning::new(e.embeds, e.text_len, self.context_dim, e.pooled, guidance)?;
        let encode = t1.elapsed();

        let (lh, lw) = res.latent_hw();
        let init = match &req.latents {
            Some(l) => l.clone(),
            None => latents::pack(&torch_randn(req.seed, LATENT_CHANNELS * lh * lw)?, 1, LATENT_CHANNELS, lh, lw)?,
        };
        let schedule = Schedule::flux(self.scheduler, req.steps, res.image_seq_len())?;
        let n = schedule.num_steps();
        let mut steps = Vec::with_capacity(n);
        let mut step_latents = Vec::with_capacity(if req.keep_step_latents { n } else { 0 });
        let mut last = Instant::now();
        let out = denoise(self.transformer, &leases.transformer, &schedule, res, &cond, init, |i, x| {
            steps.push(last.elapsed());
            if req.keep_step_latents {
                step_latents.push(x.to_vec());
            }
            let flow = on_step(i, n);
            last = Instant::now();
            flow
        })?;

        let t3 = Instant::now();
        let z = latents::unpack(&out, 1, LATENT_CHANNELS, lh, lw)?;
        let decoded =
            self.vae.run(ComponentInput::F32(&z), &res.unpacked_shape()).map_err(|e| PipelineError::Stage { stage: "VAE decoder", source: Box::new(e) })?.1;
        let want = 3 * res.height * res.width;
        if decoded.len() != want {
            return Err(PipelineError::Length {
                what: format!("VAE decoder output [1, 3, {}, {}]", res.height, res.width),
                expected: want,
                found: decoded.len(),
            });
        }
        let image = super::image::denormalize(&decoded);
        let rgb8 = super::image::to_rgb8(&image, res.height, res.width)?;
        let decode = t3.elapsed();
        Ok(Generated { width: res.width, height: res.height, rgb8, image, step_latents, timings: Timings { tokenize, encode, steps, decode }, truncated })
    }
}

/// Writes interleaved RGB8 pixels as a PNG, atomically (temp file + rename).
pub fn write_png(path: &std::path::Path, rgb8: &[u8], width: usize, height: usize) -> Result<(), PipelineError> {
    use image::ImageEncoder as _;
    let (w, h) = (u32::try_from(width), u32::try_from(height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(PipelineError::Value(format!("{}: image {width}x{height} is too large for PNG", path.display())));
    };
    if rgb8.len() != 3 * width * height {
        return Err(PipelineError::Length { what: format!("RGB pixels of {width}x{height}"), expected: 3 * width * height, found: rgb8.len() });
    }
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(rgb8, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| PipelineError::Value(format!("{}: PNG encoding: {e}", path.display())))?;
    Ok(crate::util::write_atomic(path, &buf)?)
}

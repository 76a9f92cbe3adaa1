//! The denoising loop of diffusers `FluxPipeline.__call__` (no true-CFG, batch 1) over any
//! transformer backend: for each step `i`, the transformer gets the packed latents,
//! `timestep = t_i / 1000`, the constant guidance and prompt conditioning, and the ids; its output
//! (the flow velocity) drives one Euler step of the [`Schedule`].

use std::ops::ControlFlow;

use super::latents::{txt_ids, Resolution, LATENT_CHANNELS};
use super::{PipelineError, Schedule};

/// Prompt conditioning, constant over the steps: T5 `prompt_embeds` `[1, L, D]`, CLIP
/// `pooled_prompt_embeds` `[1, P]`, and the guidance scale (`None` for schnell-type models,
/// which have no guidance embedder).
#[derive(Clone, Debug, PartialEq)]
pub struct Conditioning {
    prompt_embeds: Vec<f32>,
    text_len: usize,
    context_dim: usize,
    pooled: Vec<f32>,
    guidance: Option<f32>,
}

impl Conditioning {
    /// Checks lengths (`prompt_embeds.len() == text_len · context_dim`, non-empty) and finiteness.
    pub fn new(prompt_embeds: Vec<f32>, text_len: usize, context_dim: usize, pooled: Vec<f32>, guidance: Option<f32>) -> Result<Self, PipelineError> {
        let len = |what: &str, expected: usize, found: usize| PipelineError::Length { what: what.into(), expected, found };
        if text_len == 0 || context_dim == 0 || prompt_embeds.len() != text_len * context_dim {
            return Err(len(&format!("prompt_embeds [1, {text_len}, {context_dim}]"), text_len * context_dim, prompt_embeds.len()));
        }
        if pooled.is_empty() {
            return Err(len("pooled_prompt_embeds", 1, 0));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&prompt_embeds) || !finite(&pooled) || !guidance.is_none_or(f32::is_finite) {
            return Err(PipelineError::Value("prompt conditioning holds a non-finite value".into()));
        }
        Ok(Conditioning { prompt_embeds, text_len, context_dim, pooled, guidance })
    }

    pub fn prompt_embeds(&self) -> &[f32] {
        &self.prompt_embeds
    }
    /// `[1, L, D]`.
    pub fn prompt_shape(&self) -> [usize; 3] {
        [1, self.text_len, self.context_dim]
    }
    pub fn pooled(&self) -> &[f32] {
        &self.pooled
    }
    pub fn guidance(&self) -> Option<f32> {
        self.guidance
    }
}

/// Everything one transformer evaluation receives (diffusers' keyword arguments).
#[derive(Clone, Copy, Debug)]
pub struct TransformerCall<'a> {
    /// Step index, 0-based.
    pub step: usize,
    /// Packed latents `[1, S_img, 64]`.
    pub hidden_states: &'a [f32],
    /// `S_img`.
    pub image_seq_len: usize,
    /// `timesteps[step] / 1000` (σ); the transformer multiplies by 1000 itself.
    pub timestep: f32,
    pub conditioning: &'a Conditioning,
    /// `(0, r, c)` per image token.
    pub img_ids: &'a [[f32; 3]],
    /// Zeros, one per text token.
    pub txt_ids: &'a [[f32; 3]],
}

/// A FLUX transformer backend: returns the velocity `[1, S_img, 64]` (diffusers' `noise_pred`).
pub trait Transformer {
    fn velocity(&self, call: &TransformerCall<'_>) -> Result<Vec<f32>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Runs every step of `schedule` from the packed initial noise `init` (`[1, S_img, 64]`, e.g. from
/// [`super::latents::load_latents`]); `on_step(i, latents)` sees the latents after step `i` (the
/// pipeline's `callback_on_step_end`) and may stop the loop there ([`ControlFlow::Break`]:
/// [`PipelineError::Cancelled`]). Returns the final packed latents.
pub fn denoise<T: Transformer + ?Sized>(
    transformer: &T,
    schedule: &Schedule,
    resolution: Resolution,
    conditioning: &Conditioning,
    init: Vec<f32>,
    mut on_step: impl FnMut(usize, &[f32]) -> ControlFlow<()>,
) -> Result<Vec<f32>, PipelineError> {
    let seq = resolution.image_seq_len();
    let n = seq * LATENT_CHANNELS * 4;
    if init.len() != n {
        return Err(PipelineError::Length { what: format!("initial latents [1, {seq}, {}]", LATENT_CHANNELS * 4), expected: n, found: init.len() });
    }
    let img_ids = resolution.img_ids();
    let txt_ids = txt_ids(conditioning.text_len);
    let mut latents = init;
    for step in 0..schedule.num_steps() {
        let call = TransformerCall {
            step,
            hidden_states: &latents,
            image_seq_len: seq,
            timestep: schedule.transformer_timestep(step),
            conditioning,
            img_ids: &img_ids,
            txt_ids: &txt_ids,
        };
        let v = transformer.velocity(&call).map_err(|source| PipelineError::Transformer { step, source })?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(PipelineError::Transformer { step, source: format!("the velocity holds a non-finite value ({bad})").into() });
        }
        schedule.step(step, &mut latents, &v)?;
        if on_step(step, &latents).is_break() {
            return Err(PipelineError::Cancelled { step });
        }
    }
    Ok(latents)
}

/// The ONNX Runtime session as a [`Transformer`]: each call feeds the step's latents, σ, guidance,
/// prompt conditioning and the RoPE tables of its ids (with the session's current LoRA slots).
#[cfg(feature = "ort")]
impl Transformer for crate::runtime::ort::FluxSession {
    fn velocity(&self, call: &TransformerCall<'_>) -> Result<Vec<f32>, Box<dyn std::error::Error + Send + Sync>> {
        use crate::runtime::{FluxInputs, HostTensor};
        let t = |shape: Vec<usize>, data: Vec<f32>, what: &str| {
            HostTensor::new(shape, data).ok_or_else(|| format!("{what}: element count does not match its shape"))
        };
        let c = call.conditioning;
        let inputs = FluxInputs::with_ids(
            &self.manifest().model,
            t(vec![1, call.image_seq_len, LATENT_CHANNELS * 4], call.hidden_states.to_vec(), "hidden_states")?,
            t(c.prompt_shape().to_vec(), c.prompt_embeds().to_vec(), "encoder_hidden_states")?,
            t(vec![1, c.pooled().len()], c.pooled().to_vec(), "pooled_projections")?,
            t(vec![1], vec![call.timestep], "timestep")?,
            c.guidance().map(|g| t(vec![1], vec![g], "guidance")).transpose()?,
            call.txt_ids,
            call.img_ids,
        )?;
        Ok(self.run(&inputs)?.into_data())
    }
}

//! The denoising loop of diffusers `FluxPipeline.__call__` (no true-CFG, batch 1) over any
//! runtime [`Transformer`] backend: for each step `i`, the transformer gets the packed latents,
//! `timestep = t_i / 1000`, the constant guidance and prompt conditioning, and the ids; its output
//! (the flow velocity) drives one Euler step of the [`Schedule`].

use std::ops::ControlFlow;

use super::latents::{txt_ids, Resolution, LATENT_CHANNELS};
use super::{PipelineError, Schedule};
use crate::runtime::{Lease, RequestInputs, Transformer};

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

/// Runs every step of `schedule` from the packed initial noise `init` (`[1, S_img, 64]`, e.g. from
/// [`super::latents::load_latents`]) on any runtime [`Transformer`], with the slot set of
/// `lease` for every step (a swap meanwhile does not reach this loop). The prompt conditioning,
/// guidance and ids are bound once ([`Transformer::bind`]); each step passes only the latents and
/// the timestep. `on_step(i, latents)` sees the latents after step `i` (the pipeline's
/// `callback_on_step_end`) and may stop the loop there ([`ControlFlow::Break`]:
/// [`PipelineError::Cancelled`]). Returns the final packed latents.
pub fn denoise<T: Transformer + ?Sized>(
    transformer: &T,
    lease: &Lease<T::Slots>,
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
    let request = RequestInputs {
        batch: 1,
        image_seq_len: seq,
        text_len: conditioning.text_len,
        encoder_hidden_states: &conditioning.prompt_embeds,
        pooled_projections: &conditioning.pooled,
        guidance: conditioning.guidance,
        txt_ids: &txt_ids,
        img_ids: &img_ids,
    };
    let mut bound = transformer.bind(&request).map_err(|e| PipelineError::Transformer { step: 0, source: Box::new(e) })?;
    let mut latents = init;
    let mut velocity = vec![0f32; n];
    for step in 0..schedule.num_steps() {
        transformer
            .step(lease, &mut bound, &latents, schedule.transformer_timestep(step), &mut velocity)
            .map_err(|e| PipelineError::Transformer { step, source: Box::new(e) })?;
        if let Some(bad) = velocity.iter().find(|x| !x.is_finite()) {
            return Err(PipelineError::Transformer { step, source: format!("the velocity holds a non-finite value ({bad})").into() });
        }
        schedule.step(step, &mut latents, &velocity)?;
        if on_step(step, &latents).is_break() {
            return Err(PipelineError::Cancelled { step });
        }
    }
    Ok(latents)
}

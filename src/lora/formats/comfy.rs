//! BFL / ComfyUI-named files: `diffusion_model.<BFL path>` (prefix optional) with
//! `.lora_A.weight`/`.lora_B.weight` or `.lora_down.weight`/`.lora_up.weight` and optional
//! `.alpha`; ComfyUI's `single_blocks.N.linear1_qkv` (q, k, v rows of linear1 only); CLIP-L as
//! `text_encoders.clip_l.transformer.<module>`. fal's Kontext LoRAs (`base_model.model.<BFL
//! path>.lora_A/B.weight`, no alpha) are the same form under another prefix.
//!
//! `scale = alpha / rank` with `.alpha`, else 1 (ComfyUI `weight_adapter/lora.py`).

use super::build::{alpha_scale, factors, group, Collector, Target, LORA_AB_SUFFIXES};
use super::names::{bfl_target, dotted_clip};
use super::source::Source;
use super::Loaded;
use crate::lora::{LoraError, LoraFormat};

pub(crate) fn read(src: &Source) -> Result<Loaded, LoraError> {
    let layers = group(src, src.keys(), LORA_AB_SUFFIXES, LoraFormat::BflComfy)?;
    let mut unet = Collector::new(src);
    let mut text = Collector::new(src);
    for (stem, layer) in &layers {
        let first = layer.down.as_ref().or(layer.up.as_ref()).or(layer.alpha.as_ref()).cloned().unwrap_or_default();
        let unknown = || LoraError::UnknownKey { path: src.path_buf(), key: first.clone(), format: LoraFormat::BflComfy.name() };
        let (collector, target) = if let Some(clip) = stem.strip_prefix("text_encoders.clip_l.transformer.") {
            (&mut text, Target::One(dotted_clip(clip).ok_or_else(unknown)?))
        } else {
            let path = stem.strip_prefix("diffusion_model.").or_else(|| stem.strip_prefix("base_model.model.")).unwrap_or(stem);
            (&mut unet, bfl_target(path, true).ok_or_else(unknown)?)
        };
        let (a, b) = factors(src, stem, layer, "lora_A/lora_down", "lora_B/lora_up")?;
        let scale = match &layer.alpha {
            Some(k) => alpha_scale(src.scalar(k)?, a.rows),
            None => 1.0,
        };
        collector.add(&first, target, a, b, scale)?;
    }
    Ok(Loaded { modules: unet.modules, text_encoder: text.modules })
}

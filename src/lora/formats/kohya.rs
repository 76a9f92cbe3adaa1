//! kohya sd-scripts files: `lora_unet_<BFL path with _>.lora_down.weight` / `.lora_up.weight`
//! / `.alpha`, CLIP-L under `lora_te1_` (or `lora_te_`).
//!
//! `scale = alpha / lora_down.rows` (the file's rank, also for block-diagonal split files);
//! without an `.alpha` key the scale is 1 (diffusers: alpha = rank; ComfyUI: 1.0).

use super::build::{alpha_scale, factors, group, Collector, Part, Target};
use super::names::{bfl_target, kohya_clip, kohya_to_bfl};
use super::source::Source;
use super::Loaded;
use crate::lora::{LoraError, LoraFormat};

const SUFFIXES: &[(&str, Part)] = &[(".lora_down.weight", Part::Down), (".lora_up.weight", Part::Up), (".alpha", Part::Alpha)];

pub(crate) fn read(src: &Source) -> Result<Loaded, LoraError> {
    let layers = group(src, src.keys(), SUFFIXES, LoraFormat::Kohya)?;
    let mut unet = Collector::new(src);
    let mut text = Collector::new(src);
    for (stem, layer) in &layers {
        let first = layer.down.as_ref().or(layer.up.as_ref()).or(layer.alpha.as_ref()).cloned().unwrap_or_default();
        let unknown = || LoraError::UnknownKey { path: src.path_buf(), key: first.clone(), format: LoraFormat::Kohya.name() };
        let (collector, target) = if let Some(body) = stem.strip_prefix("lora_unet_") {
            let path = kohya_to_bfl(body).ok_or_else(unknown)?;
            (&mut unet, bfl_target(&path, false).ok_or_else(unknown)?)
        } else if let Some(body) = stem.strip_prefix("lora_te1_").or_else(|| stem.strip_prefix("lora_te_")) {
            (&mut text, Target::One(kohya_clip(body).ok_or_else(unknown)?))
        } else {
            return Err(unknown());
        };
        let (a, b) = factors(src, stem, layer, "lora_down", "lora_up")?;
        let scale = match &layer.alpha {
            Some(k) => alpha_scale(src.scalar(k)?, a.rows),
            None => 1.0,
        };
        collector.add(&first, target, a, b, scale)?;
    }
    Ok(Loaded { modules: unet.modules, text_encoder: text.modules })
}

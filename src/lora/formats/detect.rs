//! Format detection (diffusers' `FluxLoraLoaderMixin.lora_state_dict` order) and the
//! up-front rejection of adapter kinds flux-trt does not apply.

use super::names::{is_bfl_layer, is_diffusers_module};
use super::source::Source;
use crate::lora::{LoraError, LoraFormat};

/// Key fragments of adapter kinds that are not plain low-rank updates, checked on every key
/// before the format is chosen. First match wins.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("lora_magnitude_vector", "a DoRA magnitude vector"),
    ("dora_scale", "a DoRA scale"),
    ("hada_", "a LoHa factor"),
    ("lokr_", "a LoKr factor"),
    (".lora_mid.", "a LoCon/Tucker mid factor"),
    ("lora_B.bias", "a LoRA bias (lora_bias)"),
    ("lora_up.bias", "a LoRA bias (lora_bias)"),
    ("text_encoders.t5xxl.", "a T5 text-encoder LoRA"),
    ("lora_te3_", "a T5 text-encoder LoRA"),
    ("lora_transformer_", "a OneTrainer (`lora_transformer_`) LoRA"),
];

/// Key endings of full-tensor replacements or differences.
const UNSUPPORTED_END: &[(&str, &str)] = &[
    (".diff", "a full weight difference"),
    (".diff_b", "a full bias difference"),
    (".set_weight", "a full weight replacement"),
    (".reshape_weight", "a weight reshape"),
    ("query_norm.scale", "a Control-LoRA norm replacement"),
    ("key_norm.scale", "a Control-LoRA norm replacement"),
    ("norm_q.weight", "a Control-LoRA norm replacement"),
    ("norm_k.weight", "a Control-LoRA norm replacement"),
    ("norm_added_q.weight", "a Control-LoRA norm replacement"),
    ("norm_added_k.weight", "a Control-LoRA norm replacement"),
];

/// Rejects the first key (sorted order) of an unsupported adapter kind.
pub(crate) fn reject_unsupported(src: &Source) -> Result<(), LoraError> {
    for key in src.keys() {
        let what = UNSUPPORTED
            .iter()
            .find(|(frag, _)| key.contains(frag))
            .or_else(|| UNSUPPORTED_END.iter().find(|(end, _)| key.ends_with(end)))
            .map(|(_, what)| *what);
        if let Some(what) = what {
            return Err(LoraError::Unsupported { path: src.path_buf(), key: key.clone(), what });
        }
    }
    Ok(())
}

/// Picks the format from the key set (first rule that matches, like diffusers):
/// 1. any `.lora_down.weight` / `.lora_up.weight`: kohya if a key starts with `lora_unet_` or
///    `lora_te`, PEFT if one starts with `transformer.`, else BFL/ComfyUI;
/// 2. any key containing `processor`: XLabs;
/// 3. `transformer.` / `text_encoder.` prefixes or bare diffusers module names: PEFT;
/// 4. `diffusion_model.` / `text_encoders.` / `base_model.model.` (fal Kontext) prefixes or bare
///    BFL layer names: BFL/ComfyUI.
pub(crate) fn classify(src: &Source) -> Result<LoraFormat, LoraError> {
    let keys = src.keys();
    let any = |f: &dyn Fn(&str) -> bool| keys.iter().any(|k| f(k));
    if any(&|k| k.ends_with(".lora_down.weight") || k.ends_with(".lora_up.weight")) {
        return Ok(if any(&|k| k.starts_with("lora_unet_") || k.starts_with("lora_te")) {
            LoraFormat::Kohya
        } else if any(&|k| k.starts_with("transformer.")) {
            LoraFormat::Peft
        } else {
            LoraFormat::BflComfy
        });
    }
    if any(&|k| k.contains("processor")) {
        return Ok(LoraFormat::XLabs);
    }
    if any(&|k| k.starts_with("transformer.") || k.starts_with("text_encoder.") || is_diffusers_module(k)) {
        return Ok(LoraFormat::Peft);
    }
    let bfl = |k: &str| k.starts_with("diffusion_model.") || k.starts_with("text_encoders.") || is_bfl_layer(k.strip_prefix("base_model.model.").unwrap_or(k));
    if any(&bfl) {
        return Ok(LoraFormat::BflComfy);
    }
    let sample = keys.iter().take(3).map(String::as_str).collect::<Vec<_>>().join(", ");
    Err(LoraError::UnknownFormat { path: src.path_buf(), sample })
}

//! XLabs (x-flux) files: `[diffusion_model.]double_blocks.N.processor.{qkv,proj}_lora{1,2}` and
//! `single_blocks.N.processor.{qkv,proj}_lora` with `.down.weight` / `.up.weight`. No alpha:
//! scale 1 (diffusers passes no network alphas; x-flux's `network_alpha=None`).

use super::build::{factors, group, Collector, Part, Target};
use super::source::Source;
use super::Loaded;
use crate::lora::{LoraError, LoraFormat};

const SUFFIXES: &[(&str, Part)] = &[(".down.weight", Part::Down), (".up.weight", Part::Up)];

fn target(stem: &str) -> Option<Target> {
    let stem = stem.strip_prefix("diffusion_model.").unwrap_or(stem);
    let (kind, rest) = if let Some(r) = stem.strip_prefix("double_blocks.") { ("double", r) } else { ("single", stem.strip_prefix("single_blocks.")?) };
    let (idx, leaf) = rest.split_once(".processor.")?;
    if idx.is_empty() || !idx.bytes().all(|c| c.is_ascii_digit()) || (idx.len() > 1 && idx.starts_with('0')) {
        return None;
    }
    let split = |p: String, names: [&str; 3]| Some(Target::Split(names.iter().map(|n| format!("{p}.attn.{n}")).collect()));
    match kind {
        "double" => {
            let p = format!("transformer_blocks.{idx}");
            match leaf {
                "qkv_lora1" => split(p, ["to_q", "to_k", "to_v"]),
                "qkv_lora2" => split(p, ["add_q_proj", "add_k_proj", "add_v_proj"]),
                "proj_lora1" => Some(Target::One(format!("{p}.attn.to_out.0"))),
                "proj_lora2" => Some(Target::One(format!("{p}.attn.to_add_out"))),
                _ => None,
            }
        }
        _ => {
            let p = format!("single_transformer_blocks.{idx}");
            match leaf {
                "qkv_lora" => split(p, ["to_q", "to_k", "to_v"]),
                "proj_lora" => Some(Target::One(format!("{p}.proj_out"))),
                _ => None,
            }
        }
    }
}

pub(crate) fn read(src: &Source) -> Result<Loaded, LoraError> {
    let layers = group(src, src.keys(), SUFFIXES, LoraFormat::XLabs)?;
    let mut unet = Collector::new(src);
    for (stem, layer) in &layers {
        let first = layer.down.as_ref().or(layer.up.as_ref()).cloned().unwrap_or_default();
        let t = target(stem).ok_or_else(|| LoraError::UnknownKey { path: src.path_buf(), key: first.clone(), format: LoraFormat::XLabs.name() })?;
        let (a, b) = factors(src, stem, layer, "down", "up")?;
        unet.add(&first, t, a, b, 1.0)?;
    }
    Ok(Loaded { modules: unet.modules, text_encoder: Default::default() })
}

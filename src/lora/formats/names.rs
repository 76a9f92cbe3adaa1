//! Layer names: BFL (original FLUX) paths and kohya's underscore form of them → canonical
//! diffusers modules (the renames of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`), and CLIP-L text-encoder module names.

use super::build::Target;

/// Parses `<prefix><index>.<rest>` and returns `(index, rest)`; the index must be a plain
/// decimal number.
fn block<'k>(path: &'k str, prefix: &str, sep: char) -> Option<(usize, &'k str)> {
    let rest = path.strip_prefix(prefix)?;
    let (idx, rest) = rest.split_once(sep)?;
    if idx.is_empty() || !idx.bytes().all(|c| c.is_ascii_digit()) || (idx.len() > 1 && idx.starts_with('0')) {
        return None;
    }
    Some((idx.parse().ok()?, rest))
}

/// A BFL layer path (dotted, no `diffusion_model.` prefix) → its canonical target.
/// `linear1_qkv` (ComfyUI: the q, k, v rows of `linear1` only) is accepted when `allow_qkv_part`.
pub(crate) fn bfl_target(path: &str, allow_qkv_part: bool) -> Option<Target> {
    let one = |s: String| Some(Target::One(s));
    if let Some((i, rest)) = block(path, "double_blocks.", '.') {
        let p = format!("transformer_blocks.{i}");
        let split = |names: [&str; 3]| Some(Target::Split(names.iter().map(|n| format!("{p}.attn.{n}")).collect()));
        return match rest {
            "img_attn.qkv" => split(["to_q", "to_k", "to_v"]),
            "txt_attn.qkv" => split(["add_q_proj", "add_k_proj", "add_v_proj"]),
            "img_attn.proj" => one(format!("{p}.attn.to_out.0")),
            "txt_attn.proj" => one(format!("{p}.attn.to_add_out")),
            "img_mlp.0" => one(format!("{p}.ff.net.0.proj")),
            "img_mlp.2" => one(format!("{p}.ff.net.2")),
            "txt_mlp.0" => one(format!("{p}.ff_context.net.0.proj")),
            "txt_mlp.2" => one(format!("{p}.ff_context.net.2")),
            "img_mod.lin" => one(format!("{p}.norm1.linear")),
            "txt_mod.lin" => one(format!("{p}.norm1_context.linear")),
            _ => None,
        };
    }
    if let Some((i, rest)) = block(path, "single_blocks.", '.') {
        let p = format!("single_transformer_blocks.{i}");
        let qkv = ["to_q", "to_k", "to_v"].map(|n| format!("{p}.attn.{n}")).to_vec();
        return match rest {
            "linear1" => Some(Target::Split(qkv.into_iter().chain([format!("{p}.proj_mlp")]).collect())),
            "linear1_qkv" if allow_qkv_part => Some(Target::Split(qkv)),
            "linear2" => one(format!("{p}.proj_out")),
            "modulation.lin" => one(format!("{p}.norm.linear")),
            _ => None,
        };
    }
    let name = match path {
        "img_in" => "x_embedder",
        "txt_in" => "context_embedder",
        "time_in.in_layer" => "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer" => "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer" => "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer" => "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer" => "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer" => "time_text_embed.guidance_embedder.linear_2",
        "final_layer.linear" => "proj_out",
        "final_layer.adaLN_modulation.1" => return Some(Target::SwapHalves("norm_out.linear".into())),
        _ => return None,
    };
    one(name.to_string())
}

fn lookup(table: &[(&'static str, &'static str)], k: &str) -> Option<&'static str> {
    table.iter().find(|(a, _)| *a == k).map(|(_, b)| *b)
}

/// kohya's `lora_unet_` name body (BFL path with `.` → `_`) → the dotted BFL path.
pub(crate) fn kohya_to_bfl(name: &str) -> Option<String> {
    const DOUBLE: &[(&str, &str)] = &[
        ("img_attn_qkv", "img_attn.qkv"),
        ("txt_attn_qkv", "txt_attn.qkv"),
        ("img_attn_proj", "img_attn.proj"),
        ("txt_attn_proj", "txt_attn.proj"),
        ("img_mlp_0", "img_mlp.0"),
        ("img_mlp_2", "img_mlp.2"),
        ("txt_mlp_0", "txt_mlp.0"),
        ("txt_mlp_2", "txt_mlp.2"),
        ("img_mod_lin", "img_mod.lin"),
        ("txt_mod_lin", "txt_mod.lin"),
    ];
    const SINGLE: &[(&str, &str)] = &[("linear1", "linear1"), ("linear2", "linear2"), ("modulation_lin", "modulation.lin")];
    const GLOBAL: &[(&str, &str)] = &[
        ("img_in", "img_in"),
        ("txt_in", "txt_in"),
        ("time_in_in_layer", "time_in.in_layer"),
        ("time_in_out_layer", "time_in.out_layer"),
        ("vector_in_in_layer", "vector_in.in_layer"),
        ("vector_in_out_layer", "vector_in.out_layer"),
        ("guidance_in_in_layer", "guidance_in.in_layer"),
        ("guidance_in_out_layer", "guidance_in.out_layer"),
        ("final_layer_linear", "final_layer.linear"),
        ("final_layer_adaLN_modulation_1", "final_layer.adaLN_modulation.1"),
    ];
    if let Some((i, rest)) = block(name, "double_blocks_", '_') {
        return lookup(DOUBLE, rest).map(|r| format!("double_blocks.{i}.{r}"));
    }
    if let Some((i, rest)) = block(name, "single_blocks_", '_') {
        return lookup(SINGLE, rest).map(|r| format!("single_blocks.{i}.{r}"));
    }
    lookup(GLOBAL, name).map(str::to_string)
}

const CLIP_LEAVES: &[(&str, &str)] = &[
    ("self_attn_q_proj", "self_attn.q_proj"),
    ("self_attn_k_proj", "self_attn.k_proj"),
    ("self_attn_v_proj", "self_attn.v_proj"),
    ("self_attn_out_proj", "self_attn.out_proj"),
    ("mlp_fc1", "mlp.fc1"),
    ("mlp_fc2", "mlp.fc2"),
];

/// kohya's CLIP-L name body (after `lora_te1_` / `lora_te_`), e.g.
/// `text_model_encoder_layers_3_self_attn_q_proj` → `text_model.encoder.layers.3.self_attn.q_proj`.
pub(crate) fn kohya_clip(name: &str) -> Option<String> {
    let (i, rest) = block(name, "text_model_encoder_layers_", '_')?;
    let leaf = CLIP_LEAVES.iter().find(|(k, _)| *k == rest)?.1;
    Some(format!("text_model.encoder.layers.{i}.{leaf}"))
}

/// A dotted CLIP-L module name; `text_model.` is added when missing (newer transformers
/// flatten `CLIPTextModel`). `None` unless it is one of the encoder layers' Linear modules.
pub(crate) fn dotted_clip(name: &str) -> Option<String> {
    let name = name.strip_prefix("text_model.").unwrap_or(name);
    let (i, rest) = block(name, "encoder.layers.", '.')?;
    CLIP_LEAVES.iter().find(|(_, d)| *d == rest)?;
    Some(format!("text_model.encoder.layers.{i}.{rest}"))
}

/// First dotted segment of every canonical (diffusers) transformer module.
pub(crate) const DIFFUSERS_ROOTS: &[&str] =
    &["transformer_blocks", "single_transformer_blocks", "x_embedder", "context_embedder", "time_text_embed", "norm_out", "proj_out"];

/// True when `name` starts with a canonical transformer root segment.
pub(crate) fn is_diffusers_module(name: &str) -> bool {
    let root = name.split('.').next().unwrap_or("");
    DIFFUSERS_ROOTS.contains(&root)
}

/// First dotted segment of every BFL transformer layer.
pub(crate) const BFL_ROOTS: &[&str] = &["double_blocks", "single_blocks", "img_in", "txt_in", "time_in", "vector_in", "guidance_in", "final_layer"];

pub(crate) fn is_bfl_layer(name: &str) -> bool {
    let root = name.split('.').next().unwrap_or("");
    BFL_ROOTS.contains(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kohya_and_bfl_names() {
        assert_eq!(kohya_to_bfl("double_blocks_12_img_attn_qkv").as_deref(), Some("double_blocks.12.img_attn.qkv"));
        assert_eq!(kohya_to_bfl("single_blocks_0_modulation_lin").as_deref(), Some("single_blocks.0.modulation.lin"));
        assert_eq!(kohya_to_bfl("final_layer_adaLN_modulation_1").as_deref(), Some("final_layer.adaLN_modulation.1"));
        assert_eq!(kohya_to_bfl("double_blocks_01_img_attn_qkv"), None);
        assert_eq!(kohya_to_bfl("double_blocks_1_img_attn_norm"), None);
        assert_eq!(bfl_target("double_blocks.3.txt_attn.proj", false), Some(Target::One("transformer_blocks.3.attn.to_add_out".into())));
        assert_eq!(bfl_target("single_blocks.2.linear1_qkv", false), None);
        assert!(matches!(bfl_target("single_blocks.2.linear1_qkv", true), Some(Target::Split(v)) if v.len() == 3));
        assert_eq!(kohya_clip("text_model_encoder_layers_11_mlp_fc2").as_deref(), Some("text_model.encoder.layers.11.mlp.fc2"));
        assert_eq!(dotted_clip("encoder.layers.0.self_attn.out_proj").as_deref(), Some("text_model.encoder.layers.0.self_attn.out_proj"));
        assert_eq!(dotted_clip("text_model.embeddings.position_embedding"), None);
    }
}

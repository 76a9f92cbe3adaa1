//! Where each canonical (diffusers) parameter lives in a checkpoint: the stored key, its
//! expected shape, and how its rows map onto canonical tensors.
//!
//! BFL → diffusers follows diffusers' `convert_flux_transformer_checkpoint_to_diffusers`
//! (`diffusers/loaders/single_file_utils.py`): fused `qkv` / `linear1` are split by rows, `final_layer.adaLN_modulation.1` has
//! its (shift, scale) halves swapped into diffusers' (scale, shift) order, everything else is a
//! rename. A diffusers checkpoint stores every canonical parameter under its own name.

use crate::flux::FluxConfig;

/// How a stored tensor's rows become canonical tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// The whole tensor is `targets[0]`.
    Whole,
    /// Consecutive row ranges of these lengths are `targets[0]`, `targets[1]`, ….
    Rows(Vec<usize>),
    /// `targets[0]` is the second half of the rows followed by the first half.
    SwapHalves,
}

/// One stored tensor (name without any file prefix) and the canonical tensors it provides.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub key: String,
    pub shape: Vec<usize>,
    pub targets: Vec<String>,
    pub split: Split,
}

/// Every stored tensor of a diffusers checkpoint with configuration `c`.
pub(crate) fn diffusers_sources(c: &FluxConfig) -> Vec<Source> {
    c.parameter_shapes().into_iter().map(|(name, shape)| Source { key: name.clone(), shape, targets: vec![name], split: Split::Whole }).collect()
}

/// Every stored tensor of a BFL checkpoint with configuration `c`.
pub(crate) fn bfl_sources(c: &FluxConfig) -> Vec<Source> {
    let (h, m, d) = (c.hidden_size, c.mlp_hidden, c.head_dim);
    let mut v = Vec::new();
    // A Linear: `.weight` [out, in] and `.bias` [out], both split the same way.
    let mut linear = |bfl: &str, canon: &[String], out: usize, inp: usize, split: Split| {
        for (suffix, shape) in [("weight", vec![out, inp]), ("bias", vec![out])] {
            v.push(Source { key: format!("{bfl}.{suffix}"), shape, targets: canon.iter().map(|n| format!("{n}.{suffix}")).collect(), split: split.clone() });
        }
    };
    let one = |s: &str| vec![s.to_string()];
    linear("img_in", &one("x_embedder"), h, c.in_channels, Split::Whole);
    linear("txt_in", &one("context_embedder"), h, c.context_dim, Split::Whole);
    let t = crate::flux::TIME_EMBED_DIM;
    let mut embedders = vec![("time_in", "timestep_embedder", t), ("vector_in", "text_embedder", c.pooled_dim)];
    if c.variant.has_guidance() {
        embedders.push(("guidance_in", "guidance_embedder", t));
    }
    for (bfl, canon, width) in embedders {
        linear(&format!("{bfl}.in_layer"), &one(&format!("time_text_embed.{canon}.linear_1")), h, width, Split::Whole);
        linear(&format!("{bfl}.out_layer"), &one(&format!("time_text_embed.{canon}.linear_2")), h, h, Split::Whole);
    }
    for i in 0..c.num_double_blocks {
        let (b, p) = (format!("double_blocks.{i}"), format!("transformer_blocks.{i}"));
        let at = |names: &[&str]| names.iter().map(|n| format!("{p}.{n}")).collect::<Vec<_>>();
        linear(&format!("{b}.img_mod.lin"), &at(&["norm1.linear"]), 6 * h, h, Split::Whole);
        linear(&format!("{b}.txt_mod.lin"), &at(&["norm1_context.linear"]), 6 * h, h, Split::Whole);
        let rows = Split::Rows(vec![h, h, h]);
        linear(&format!("{b}.img_attn.qkv"), &at(&["attn.to_q", "attn.to_k", "attn.to_v"]), 3 * h, h, rows.clone());
        linear(&format!("{b}.txt_attn.qkv"), &at(&["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]), 3 * h, h, rows);
        linear(&format!("{b}.img_attn.proj"), &at(&["attn.to_out.0"]), h, h, Split::Whole);
        linear(&format!("{b}.txt_attn.proj"), &at(&["attn.to_add_out"]), h, h, Split::Whole);
        linear(&format!("{b}.img_mlp.0"), &at(&["ff.net.0.proj"]), m, h, Split::Whole);
        linear(&format!("{b}.img_mlp.2"), &at(&["ff.net.2"]), h, m, Split::Whole);
        linear(&format!("{b}.txt_mlp.0"), &at(&["ff_context.net.0.proj"]), m, h, Split::Whole);
        linear(&format!("{b}.txt_mlp.2"), &at(&["ff_context.net.2"]), h, m, Split::Whole);
    }
    for i in 0..c.num_single_blocks {
        let (b, p) = (format!("single_blocks.{i}"), format!("single_transformer_blocks.{i}"));
        let at = |names: &[&str]| names.iter().map(|n| format!("{p}.{n}")).collect::<Vec<_>>();
        linear(&format!("{b}.modulation.lin"), &at(&["norm.linear"]), 3 * h, h, Split::Whole);
        let rows = Split::Rows(vec![h, h, h, m]);
        linear(&format!("{b}.linear1"), &at(&["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]), 3 * h + m, h, rows);
        linear(&format!("{b}.linear2"), &at(&["proj_out"]), h, h + m, Split::Whole);
    }
    linear("final_layer.linear", &one("proj_out"), c.out_channels, h, Split::Whole);
    linear("final_layer.adaLN_modulation.1", &one("norm_out.linear"), 2 * h, h, Split::SwapHalves);

    // QK RMSNorm scales (no bias).
    let mut norm = |bfl: String, canon: String| {
        v.push(Source { key: bfl, shape: vec![d], targets: vec![canon], split: Split::Whole });
    };
    for i in 0..c.num_double_blocks {
        let (b, p) = (format!("double_blocks.{i}"), format!("transformer_blocks.{i}.attn"));
        norm(format!("{b}.img_attn.norm.query_norm.scale"), format!("{p}.norm_q.weight"));
        norm(format!("{b}.img_attn.norm.key_norm.scale"), format!("{p}.norm_k.weight"));
        norm(format!("{b}.txt_attn.norm.query_norm.scale"), format!("{p}.norm_added_q.weight"));
        norm(format!("{b}.txt_attn.norm.key_norm.scale"), format!("{p}.norm_added_k.weight"));
    }
    for i in 0..c.num_single_blocks {
        let (b, p) = (format!("single_blocks.{i}"), format!("single_transformer_blocks.{i}.attn"));
        norm(format!("{b}.norm.query_norm.scale"), format!("{p}.norm_q.weight"));
        norm(format!("{b}.norm.key_norm.scale"), format!("{p}.norm_k.weight"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux::Variant;
    use std::collections::BTreeMap;

    /// The canonical tensors produced by splitting each source, with their shapes.
    fn produced(sources: &[Source]) -> BTreeMap<String, Vec<usize>> {
        let mut out = BTreeMap::new();
        for s in sources {
            match &s.split {
                Split::Whole | Split::SwapHalves => {
                    assert_eq!(s.targets.len(), 1);
                    out.insert(s.targets[0].clone(), s.shape.clone());
                }
                Split::Rows(rows) => {
                    assert_eq!(rows.len(), s.targets.len());
                    assert_eq!(rows.iter().sum::<usize>(), s.shape[0]);
                    for (t, r) in s.targets.iter().zip(rows) {
                        let mut sh = s.shape.clone();
                        sh[0] = *r;
                        assert!(out.insert(t.clone(), sh).is_none(), "{t} twice");
                    }
                }
            }
        }
        out
    }

    #[test]
    fn bfl_mapping_covers_every_parameter_exactly() {
        for variant in [Variant::Dev, Variant::Schnell, Variant::Fill] {
            let c = FluxConfig { num_double_blocks: 2, num_single_blocks: 3, ..FluxConfig::flux1(variant) };
            let want: BTreeMap<String, Vec<usize>> = c.parameter_shapes().into_iter().collect();
            let srcs = bfl_sources(&c);
            assert_eq!(produced(&srcs), want, "{variant}");
            // Stored keys are unique.
            let keys: std::collections::BTreeSet<_> = srcs.iter().map(|s| &s.key).collect();
            assert_eq!(keys.len(), srcs.len());
        }
    }

    #[test]
    fn bfl_full_size_parameter_count() {
        // Same total as the BFL FLUX.1-dev file (11,901,408,320).
        let n: usize = bfl_sources(&FluxConfig::flux1(Variant::Dev)).iter().map(|s| s.shape.iter().product::<usize>()).sum();
        assert_eq!(n, 11_901_408_320);
    }
}

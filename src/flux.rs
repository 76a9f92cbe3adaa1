//! The FLUX.1 transformer's architecture: configuration, variants and the canonical
//! module naming every other part of flux-trt uses.
//!
//! **Canonical naming = diffusers `FluxTransformer2DModel` names** (split q/k/v,
//! `norm_out.linear` in diffusers' (scale, shift) order). Both checkpoint layouts and every
//! LoRA format are mapped onto these names ([`crate::checkpoint`] for BFL checkpoints,
//! [`crate::lora::formats`] for adapter files).
//! The exporter re-fuses the split projections into one GEMM ([`FusedGroup`]).

use serde::{Deserialize, Serialize};

/// Which FLUX.1 model a checkpoint is, detected from its keys and shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Guidance-distilled (dev, krea, kontext): `guidance_in` present, 64 input channels.
    Dev,
    /// Timestep-distilled: no guidance embedder.
    Schnell,
    /// Fill (inpainting): guidance, 384 input channels.
    Fill,
    /// Canny / Depth control: guidance, 128 input channels.
    Control,
}

impl Variant {
    pub fn has_guidance(self) -> bool {
        !matches!(self, Variant::Schnell)
    }
    pub fn name(self) -> &'static str {
        match self {
            Variant::Dev => "dev",
            Variant::Schnell => "schnell",
            Variant::Fill => "fill",
            Variant::Control => "control",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Transformer hyper-parameters. FLUX.1-dev: hidden 3072, 24 heads × 128, 19 double + 38 single
/// blocks, 64 in/out channels, T5 width 4096, CLIP pooled 768, RoPE axes (16, 56, 56).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FluxConfig {
    pub variant: Variant,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub num_double_blocks: usize,
    pub num_single_blocks: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// T5 hidden width (`joint_attention_dim`).
    pub context_dim: usize,
    /// CLIP pooled width (`pooled_projection_dim`).
    pub pooled_dim: usize,
    pub mlp_hidden: usize,
    /// RoPE axes dims; their sum is `head_dim`.
    pub axes_dim: [usize; 3],
    pub rope_theta: u32,
}

/// Width of the sinusoidal timestep / guidance embedding.
pub const TIME_EMBED_DIM: usize = 256;

impl FluxConfig {
    /// FLUX.1-dev (or schnell with `Variant::Schnell`) at full size.
    pub fn flux1(variant: Variant) -> Self {
        let in_channels = match variant {
            Variant::Fill => 384,
            Variant::Control => 128,
            _ => 64,
        };
        FluxConfig {
            variant,
            hidden_size: 3072,
            num_heads: 24,
            head_dim: 128,
            num_double_blocks: 19,
            num_single_blocks: 38,
            in_channels,
            out_channels: 64,
            context_dim: 4096,
            pooled_dim: 768,
            mlp_hidden: 12288,
            axes_dim: [16, 56, 56],
            rope_theta: 10_000,
        }
    }

    /// RoPE axes used when a checkpoint does not say (BFL files carry no config):
    /// `(d/8, 7d/16, 7d/16)`, which is `(16, 56, 56)` for FLUX.1's head_dim 128.
    /// `None` when `head_dim` does not split into even parts that way.
    pub fn default_axes_dim(head_dim: usize) -> Option<[usize; 3]> {
        let a0 = head_dim / 8;
        let rest = head_dim.checked_sub(a0)?;
        let a1 = rest / 2;
        let ok = head_dim.is_multiple_of(16) && a0.is_multiple_of(2) && a1 % 2 == 0 && a0 + 2 * a1 == head_dim;
        ok.then_some([a0, a1, a1])
    }

    /// Every Linear layer of the transformer under its canonical (diffusers) name.
    pub fn linear_modules(&self) -> Vec<LinearModule> {
        let h = self.hidden_size;
        let m = self.mlp_hidden;
        let mut v = Vec::new();
        let mut push = |name: String, in_f: usize, out_f: usize| v.push(LinearModule { name, in_features: in_f, out_features: out_f });
        push("x_embedder".into(), self.in_channels, h);
        push("context_embedder".into(), self.context_dim, h);
        push("time_text_embed.timestep_embedder.linear_1".into(), TIME_EMBED_DIM, h);
        push("time_text_embed.timestep_embedder.linear_2".into(), h, h);
        if self.variant.has_guidance() {
            push("time_text_embed.guidance_embedder.linear_1".into(), TIME_EMBED_DIM, h);
            push("time_text_embed.guidance_embedder.linear_2".into(), h, h);
        }
        push("time_text_embed.text_embedder.linear_1".into(), self.pooled_dim, h);
        push("time_text_embed.text_embedder.linear_2".into(), h, h);
        for i in 0..self.num_double_blocks {
            let p = format!("transformer_blocks.{i}");
            push(format!("{p}.norm1.linear"), h, 6 * h);
            push(format!("{p}.norm1_context.linear"), h, 6 * h);
            for n in ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"] {
                push(format!("{p}.attn.{n}"), h, h);
            }
            push(format!("{p}.ff.net.0.proj"), h, m);
            push(format!("{p}.ff.net.2"), m, h);
            push(format!("{p}.ff_context.net.0.proj"), h, m);
            push(format!("{p}.ff_context.net.2"), m, h);
        }
        for i in 0..self.num_single_blocks {
            let p = format!("single_transformer_blocks.{i}");
            push(format!("{p}.norm.linear"), h, 3 * h);
            for n in ["to_q", "to_k", "to_v"] {
                push(format!("{p}.attn.{n}"), h, h);
            }
            push(format!("{p}.proj_mlp"), h, m);
            push(format!("{p}.proj_out"), h + m, h);
        }
        push("norm_out.linear".into(), h, 2 * h);
        push("proj_out".into(), h, self.out_channels);
        v
    }

    /// Looks up one canonical Linear module.
    pub fn linear_module(&self, name: &str) -> Option<LinearModule> {
        self.linear_modules().into_iter().find(|m| m.name == name)
    }

    /// The split projections that the exported graph computes as one GEMM, in row order.
    pub fn fused_groups(&self) -> Vec<FusedGroup> {
        let mut g = Vec::new();
        for i in 0..self.num_double_blocks {
            let p = format!("transformer_blocks.{i}.attn");
            g.push(FusedGroup { name: format!("{p}.qkv"), members: ["to_q", "to_k", "to_v"].map(|n| format!("{p}.{n}")).to_vec() });
            g.push(FusedGroup { name: format!("{p}.add_qkv"), members: ["add_q_proj", "add_k_proj", "add_v_proj"].map(|n| format!("{p}.{n}")).to_vec() });
        }
        for i in 0..self.num_single_blocks {
            let p = format!("single_transformer_blocks.{i}");
            g.push(FusedGroup {
                name: format!("{p}.linear1"),
                members: vec![format!("{p}.attn.to_q"), format!("{p}.attn.to_k"), format!("{p}.attn.to_v"), format!("{p}.proj_mlp")],
            });
        }
        g
    }

    /// Canonical names of the non-Linear parameters (QK RMSNorm scales).
    pub fn norm_params(&self) -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..self.num_double_blocks {
            for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
                v.push(format!("transformer_blocks.{i}.attn.{n}.weight"));
            }
        }
        for i in 0..self.num_single_blocks {
            for n in ["norm_q", "norm_k"] {
                v.push(format!("single_transformer_blocks.{i}.attn.{n}.weight"));
            }
        }
        v
    }

    /// Every canonical parameter name (`<linear>.weight`, `<linear>.bias`, norm scales) with its shape.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for m in self.linear_modules() {
            v.push((format!("{}.weight", m.name), vec![m.out_features, m.in_features]));
            v.push((format!("{}.bias", m.name), vec![m.out_features]));
        }
        for n in self.norm_params() {
            v.push((n, vec![self.head_dim]));
        }
        v
    }
}

/// One Linear layer: `y = x·Wᵀ + b`, `W: [out_features, in_features]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearModule {
    pub name: String,
    pub in_features: usize,
    pub out_features: usize,
}

/// Split projections computed as one GEMM in the exported graph; members are stacked by rows
/// in this order (q, k, v[, proj_mlp]), exactly BFL's fused `qkv` / `linear1` layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedGroup {
    pub name: String,
    pub members: Vec<String>,
}

/// The GEMMs an FP8 engine quantizes, in graph order (fused groups by group name): the transformer
/// blocks' base projections (the rules are in `onnx::fp8`'s docs; the exporter and the native CUDA
/// backend both plan from this list).
pub fn quantized_gemms(cfg: &FluxConfig) -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..cfg.num_double_blocks {
        let p = format!("transformer_blocks.{i}");
        for n in ["attn.qkv", "attn.add_qkv", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"] {
            v.push(format!("{p}.{n}"));
        }
    }
    for i in 0..cfg.num_single_blocks {
        let p = format!("single_transformer_blocks.{i}");
        v.push(format!("{p}.linear1"));
        v.push(format!("{p}.proj_out"));
    }
    v
}

/// Attention quantization points (`<block>.attn.q|k|v`), used with `--fp8-attention`.
pub fn attention_points(cfg: &FluxConfig) -> Vec<String> {
    let mut v = Vec::new();
    let blocks = (0..cfg.num_double_blocks)
        .map(|i| format!("transformer_blocks.{i}"))
        .chain((0..cfg.num_single_blocks).map(|i| format!("single_transformer_blocks.{i}")));
    for b in blocks {
        for n in ["q", "k", "v"] {
            v.push(format!("{b}.attn.{n}"));
        }
    }
    v
}

/// Position ids of the packed image tokens: `(0, r, c)` for every cell of an `h × w` grid in
/// row-major order, where `h`/`w` are the **packed** grid dims (pixel height / 16, width / 16).
pub fn img_ids(h: usize, w: usize) -> Vec<[f32; 3]> {
    let mut v = Vec::with_capacity(h * w);
    for r in 0..h {
        for c in 0..w {
            v.push([0.0, r as f32, c as f32]);
        }
    }
    v
}

/// RoPE tables for the joint sequence `[txt; img]`: `(cos, sin)`, each row-major
/// `[S_txt + S_img, head_dim / 2]`, one value per rotated (interleaved) pair, axes concatenated
/// in order 0, 1, 2 — the graph inputs `rope_cos` / `rope_sin`.
///
/// Computed like diffusers `FluxPosEmbed` (f64 frequencies `1 / θ^(2i/d_axis)`, angle
/// `pos · ω_i` in f64, then rounded to f32). Text ids are normally all zeros.
pub fn rope_tables(config: &FluxConfig, txt_ids: &[[f32; 3]], img_ids: &[[f32; 3]]) -> (Vec<f32>, Vec<f32>) {
    let half = config.axes_dim.iter().sum::<usize>() / 2;
    let n = txt_ids.len() + img_ids.len();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    let theta = config.rope_theta as f64;
    for id in txt_ids.iter().chain(img_ids) {
        for (axis, &d) in config.axes_dim.iter().enumerate() {
            let pos = id[axis] as f64;
            for i in 0..d / 2 {
                let omega = 1.0 / theta.powf((2 * i) as f64 / d as f64);
                let angle = pos * omega;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_dev_parameter_count() {
        // FLUX.1-dev has 11.9 B parameters (11,901,408,320 in the BFL file).
        let c = FluxConfig::flux1(Variant::Dev);
        let n: usize = c.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(n, 11_901_408_320);
    }

    #[test]
    fn rope_tables_layout() {
        let c = FluxConfig { axes_dim: [2, 2, 4], head_dim: 8, ..FluxConfig::flux1(Variant::Dev) };
        let ids = img_ids(2, 3);
        assert_eq!(ids[4], [0.0, 1.0, 1.0]);
        let (cos, sin) = rope_tables(&c, &[[0.0; 3]], &ids);
        assert_eq!(cos.len(), 7 * 4);
        // txt row: angle 0 everywhere
        assert!(cos[..4].iter().all(|v| *v == 1.0) && sin[..4].iter().all(|v| *v == 0.0));
        // img id (0,1,2) = ids[5] → row 6: axis1 pair0 angle 1, axis2 pair0 angle 2, pair1 angle 2/100
        let row = &sin[6 * 4..7 * 4];
        assert_eq!(row[0], 0.0);
        assert!((row[1] - 1f32.sin()).abs() < 1e-7);
        assert!((row[2] - 2f32.sin()).abs() < 1e-7);
        assert!((row[3] - (0.02f32).sin()).abs() < 1e-7);
    }

    #[test]
    fn default_axes() {
        assert_eq!(FluxConfig::default_axes_dim(128), Some([16, 56, 56]));
        assert_eq!(FluxConfig::default_axes_dim(32), Some([4, 14, 14]));
        assert_eq!(FluxConfig::default_axes_dim(20), None);
    }
}

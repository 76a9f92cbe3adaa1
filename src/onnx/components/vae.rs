//! The FLUX.1 VAE **decoder** (diffusers `AutoencoderKL.decode`) as ONNX nodes, as
//! `FluxPipeline` uses it: `vae.decode(latents / scaling_factor + shift_factor)`.
//!
//! # Graph contract
//! - Input `latents [batch, latent_channels, latent_height, latent_width]` float32: the raw
//!   denoised latents, already unpacked to the VAE grid (see [`crate::pipeline`]'s `unpack`).
//!   The `latents / scaling_factor + shift_factor` of `FluxPipeline` is done **inside the graph**,
//!   in float32 (`Div`, then `Add`, the pipeline's order), before anything else.
//! - Output `image [batch, out_channels, height, width]` float32, `height = latent_height · 2^(n−1)`
//!   (`n = len(block_out_channels)`, 8 for FLUX.1): the decoder output itself, about −1..1. The
//!   pipeline's post-processing (`(image / 2 + 0.5).clamp(0, 1)`, then to 8-bit) is **not** in the graph.
//! - batch, latent_height and latent_width are dynamic.
//!
//! # Layers (diffusers 0.42.1 `Decoder`, op by op)
//! optional `post_quant_conv` (1×1) → `decoder.conv_in` (3×3) → `mid_block` (`resnets.0`,
//! `attentions.0` when `mid_block_add_attention`, `resnets.1`) → `up_blocks` over reversed
//! `block_out_channels`, each `layers_per_block + 1` `ResnetBlock2D` and (all but the last) an
//! upsampler (nearest ×2, 3×3 conv) → `conv_norm_out` (GroupNorm) → SiLU → `conv_out`.
//! - `ResnetBlock2D`: GroupNorm(eps 1e-6) → SiLU → conv1 → GroupNorm → SiLU → (dropout: none at
//!   inference) → conv2, plus the input (through the 1×1 `conv_shortcut` when channels change);
//!   `output_scale_factor` 1.
//! - GroupNorm: ONNX `GroupNormalization` (opset 21 semantics: per-channel scale/bias `[C]`,
//!   statistics in float32), always run in float32 (cast around it in fp16/bf16 graphs, scale and
//!   bias stored as float32), like diffusers' upcast.
//! - Mid attention (one head, `attention_head_dim = C`): GroupNorm → `to_q`/`to_k`/`to_v` Linear over
//!   the `H·W` tokens (`Gemm(transB=1)` on `[B·H·W, C]`) → ONNX `Attention` (opset 23) on
//!   `[B, 1, H·W, C]`, scale `1/√C` → `to_out.0` → back to `[B, C, H, W]` → residual add
//!   (`rescale_output_factor` 1). In fp16/bf16 graphs Q/K/V are in the graph dtype and the
//!   softmax precision is the runtime's (TensorRT's parser refuses ONNX `softmax_precision`;
//!   TensorRT's fused attention accumulates in float32). fp32 graphs and the tiny test models'
//!   head sizes have no fused TensorRT kernel: an engine build must let the attention decompose
//!   (as the transformer's engine build does).
//! - Upsampling: `Resize(mode=nearest, coordinate_transformation_mode=asymmetric,
//!   nearest_mode=floor, scales [1,1,2,2])` = torch `F.interpolate(scale_factor=2, mode="nearest")`.
//! - SiLU: `x · Sigmoid(x)`.
//!
//! # Precision
//! float32 is the default and the recommended precision: FLUX.1's VAE config says
//! `force_upcast: true` (diffusers runs it in float32 where pipelines honour that). fp16/bf16
//! graphs keep float32 inputs/outputs and cast inside; weights are stored in the graph dtype
//! except GroupNorm scale/bias (float32).
//!
//! The graph replaces `crate::pipeline::VaeConfig::to_decoder_input`: feed it the unpacked
//! latents as the denoising loop leaves them, without scaling them first.
//!
//! Checked (tests/vae.rs) against diffusers 0.42.1 fp32 on ONNX Runtime CPU: max|Δ|/max|golden|
//! ≈ 1.4e-6 .. 1.9e-6 in fp32, ≈ 1.6e-3 in fp16; bf16 graphs pass `onnx.checker` and TensorRT's
//! parser (ONNX Runtime's CPU provider has no bf16 Conv).
//!
//! # Weights
//! Every initializer is the checkpoint tensor under its stored name (`decoder.conv_in.weight`, ...),
//! stored externally through [`Graph::external`] (byte-identical in float32 graphs).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checkpoint::ComponentWeights;
use crate::onnx::graph::{ExternalWeight, Graph};
use crate::onnx::proto::{attr_float, attr_int, attr_ints, attr_str, value_info, Dim, FLOAT};
use crate::onnx::OnnxError;
use crate::tensor::DType;

/// Name of the graph input.
pub const INPUT: &str = "latents";
/// Name of the graph output.
pub const OUTPUT: &str = "image";
/// GroupNorm epsilon of every norm in the decoder (`resnet_eps`).
const EPS: f32 = 1e-6;

/// Errors of the VAE decoder export that are not checkpoint errors: the config.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: `{key}` = {value} is not supported: {reason}")]
    Unsupported { path: PathBuf, key: String, value: String, reason: String },
}

/// `config.json` of a diffusers `AutoencoderKL` as stored (keys the decoder needs and the ones
/// it must refuse). A missing key takes the `AutoencoderKL.__init__` default, as diffusers
/// itself does when loading.
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfigFile {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(default = "defaults::block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "defaults::layers_per_block")]
    pub layers_per_block: usize,
    #[serde(default = "defaults::latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "defaults::out_channels")]
    pub out_channels: usize,
    #[serde(default = "defaults::norm_num_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "defaults::act_fn")]
    pub act_fn: String,
    #[serde(default = "defaults::yes")]
    pub mid_block_add_attention: bool,
    #[serde(default = "defaults::yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "defaults::scaling_factor")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "defaults::yes")]
    pub force_upcast: bool,
    pub up_block_types: Option<Vec<String>>,
    #[serde(default)]
    pub latents_mean: Option<serde_json::Value>,
    #[serde(default)]
    pub latents_std: Option<serde_json::Value>,
    #[serde(default)]
    pub norm_type: Option<String>,
}

/// `AutoencoderKL.__init__` defaults (diffusers 0.42.1).
mod defaults {
    pub fn block_out_channels() -> Vec<usize> {
        vec![64]
    }
    pub fn layers_per_block() -> usize {
        1
    }
    pub fn latent_channels() -> usize {
        4
    }
    pub fn out_channels() -> usize {
        3
    }
    pub fn norm_num_groups() -> usize {
        32
    }
    pub fn act_fn() -> String {
        "silu".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn scaling_factor() -> f64 {
        0.18215
    }
}

/// A validated VAE decoder config (see [`VaeDecoderConfig::from_file`] /
/// `TryFrom<&ComponentWeights>`). The activation is SiLU (the only one accepted).
#[derive(Clone, Debug, PartialEq)]
pub struct VaeDecoderConfig {
    /// Encoder order (the decoder walks it reversed); `[128, 256, 512, 512]` for FLUX.1.
    pub block_out_channels: Vec<usize>,
    /// Resnets per up block are `layers_per_block + 1`.
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub out_channels: usize,
    pub norm_num_groups: usize,
    pub mid_block_add_attention: bool,
    pub use_post_quant_conv: bool,
    /// `latents / scaling_factor + shift_factor` before decoding (in the graph).
    pub scaling_factor: f32,
    pub shift_factor: f32,
    /// diffusers' hint that the VAE should run in float32.
    pub force_upcast: bool,
}

impl VaeDecoderConfig {
    /// Reads and validates a VAE `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, VaeError> {
        let text = std::fs::read_to_string(path).map_err(|e| VaeError::Config { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| VaeError::Config { path: path.to_path_buf(), message: format!("invalid JSON: {e}") })?;
        let raw = parse_raw(&value).map_err(|message| VaeError::Config { path: path.to_path_buf(), message })?;
        Self::validate(path, raw)
    }

    /// Validates a parsed config; errors name `path` and the key.
    pub fn validate(path: &Path, raw: VaeConfigFile) -> Result<Self, VaeError> {
        let bad = |key: &str, value: String, reason: &str| VaeError::Unsupported { path: path.to_path_buf(), key: key.into(), value, reason: reason.into() };
        if let Some(c) = raw.class_name.as_deref().filter(|c| *c != "AutoencoderKL") {
            return Err(bad("_class_name", format!("{c:?}"), "only diffusers AutoencoderKL is exported"));
        }
        if !matches!(raw.act_fn.as_str(), "silu" | "swish") {
            return Err(bad("act_fn", format!("{:?}", raw.act_fn), "only silu/swish"));
        }
        if let Some(t) = raw.norm_type.as_deref().filter(|t| *t != "group") {
            return Err(bad("norm_type", format!("{t:?}"), "only group norm"));
        }
        let chans = &raw.block_out_channels;
        if chans.is_empty() || chans.contains(&0) {
            return Err(bad("block_out_channels", format!("{chans:?}"), "needs at least one positive channel count"));
        }
        if chans.len() > 8 {
            return Err(bad("block_out_channels", format!("{chans:?}"), "more than 8 blocks (upscale above 128×)"));
        }
        if let Some(types) = &raw.up_block_types {
            if types.len() != chans.len() || types.iter().any(|t| t != "UpDecoderBlock2D") {
                return Err(bad("up_block_types", format!("{types:?}"), "needs one UpDecoderBlock2D per block_out_channels entry"));
            }
        }
        let g = raw.norm_num_groups;
        if g == 0 {
            return Err(bad("norm_num_groups", "0".into(), "must be positive"));
        }
        if let Some(c) = chans.iter().find(|c| !c.is_multiple_of(g)) {
            return Err(bad("norm_num_groups", g.to_string(), &format!("does not divide block channel count {c}")));
        }
        if raw.latent_channels == 0 {
            return Err(bad("latent_channels", "0".into(), "must be positive"));
        }
        if raw.out_channels == 0 {
            return Err(bad("out_channels", "0".into(), "must be positive"));
        }
        let finite_f32 = |v: f64| v.is_finite() && (v as f32).is_finite();
        if !finite_f32(raw.scaling_factor) || raw.scaling_factor == 0.0 {
            return Err(bad("scaling_factor", raw.scaling_factor.to_string(), "must be finite and non-zero"));
        }
        let shift = match raw.shift_factor {
            Some(s) if finite_f32(s) => s,
            Some(s) => return Err(bad("shift_factor", s.to_string(), "must be finite")),
            None => return Err(bad("shift_factor", "null".into(), "FluxPipeline decodes `latents / scaling_factor + shift_factor`; a FLUX VAE has one")),
        };
        for (key, v) in [("latents_mean", &raw.latents_mean), ("latents_std", &raw.latents_std)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
                return Err(bad(key, v.to_string(), "FluxPipeline ignores per-channel latent statistics; refusing a VAE that has them"));
            }
        }
        Ok(VaeDecoderConfig {
            block_out_channels: raw.block_out_channels,
            layers_per_block: raw.layers_per_block,
            latent_channels: raw.latent_channels,
            out_channels: raw.out_channels,
            norm_num_groups: g,
            mid_block_add_attention: raw.mid_block_add_attention,
            use_post_quant_conv: raw.use_post_quant_conv,
            scaling_factor: raw.scaling_factor as f32,
            shift_factor: shift as f32,
            force_upcast: raw.force_upcast,
        })
    }

    /// Pixels per latent cell: `2^(len(block_out_channels) − 1)`.
    pub fn upscale(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Re-checks a config built in code (fields are public) the way [`Self::validate`] does.
    fn check(&self, path: &Path) -> Result<(), VaeError> {
        let raw = VaeConfigFile {
            class_name: None,
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            latent_channels: self.latent_channels,
            out_channels: self.out_channels,
            norm_num_groups: self.norm_num_groups,
            act_fn: "silu".into(),
            mid_block_add_attention: self.mid_block_add_attention,
            use_post_quant_conv: self.use_post_quant_conv,
            scaling_factor: self.scaling_factor as f64,
            shift_factor: Some(self.shift_factor as f64),
            force_upcast: self.force_upcast,
            up_block_types: None,
            latents_mean: None,
            latents_std: None,
            norm_type: None,
        };
        Self::validate(path, raw).map(|_| ())
    }
}

impl TryFrom<&ComponentWeights> for VaeDecoderConfig {
    type Error = VaeError;
    /// The validated config of a VAE component folder (its `config.json`).
    fn try_from(w: &ComponentWeights) -> Result<Self, VaeError> {
        let raw = parse_raw(w.config()).map_err(|message| VaeError::Config { path: w.config_path().to_path_buf(), message })?;
        Self::validate(w.config_path(), raw)
    }
}

/// Deserializes `config.json`; an error names the first key whose value has the wrong type.
fn parse_raw(v: &serde_json::Value) -> Result<VaeConfigFile, String> {
    VaeConfigFile::deserialize(v).map_err(|e| {
        let culprit = v.as_object().and_then(|o| {
            o.iter().find(|(k, x)| {
                let one = serde_json::Value::Object([((*k).clone(), (*x).clone())].into_iter().collect());
                VaeConfigFile::deserialize(&one).is_err()
            })
        });
        match culprit {
            Some((k, x)) => format!("invalid VAE config: `{k}` = {x}: {e}"),
            None => format!("invalid VAE config: {e}"),
        }
    })
}

type R<T> = Result<T, OnnxError>;

struct Decoder<'g, 'a> {
    g: &'g mut Graph<'a>,
    w: &'a ComponentWeights,
    groups: usize,
}

impl<'a> Decoder<'_, 'a> {
    /// The checkpoint tensor `name`, checked to have `shape`, as an external initializer in the
    /// graph dtype (`f32`: always float32).
    fn param(&mut self, name: &str, shape: &[usize], f32: bool) -> R<String> {
        let t = self.w.tensor_shaped(name, shape)?;
        let want = (t.numel() * t.dtype.size()) as u64;
        if t.nbytes() as u64 != want {
            return Err(OnnxError::ByteCount { path: self.w.file_of(name), tensor: name.into(), expected: want, found: t.nbytes() as u64 });
        }
        if f32 {
            self.g.external.push(ExternalWeight { name: name.into(), shape: t.shape.clone(), dtype: DType::F32, source: t, fp8_scales: None });
            Ok(name.into())
        } else {
            Ok(self.g.external(name.into(), t))
        }
    }

    /// `k×k` convolution (padding `k/2`) `prefix.weight [cout, cin, k, k]` + `prefix.bias`.
    fn conv(&mut self, x: &str, prefix: &str, cin: usize, cout: usize, k: usize) -> R<String> {
        let w = self.param(&format!("{prefix}.weight"), &[cout, cin, k, k], false)?;
        let b = self.param(&format!("{prefix}.bias"), &[cout], false)?;
        let p = (k / 2) as i64;
        let attrs = vec![attr_ints("kernel_shape", &[k as i64, k as i64]), attr_ints("pads", &[p, p, p, p])];
        Ok(self.g.scoped(prefix, |g| g.op("Conv", &[x, &w, &b], attrs)))
    }

    /// GroupNorm `prefix.weight/bias [c]` in float32.
    fn group_norm(&mut self, x: &str, prefix: &str, c: usize) -> R<String> {
        let s = self.param(&format!("{prefix}.weight"), &[c], true)?;
        let b = self.param(&format!("{prefix}.bias"), &[c], true)?;
        let groups = self.groups as i64;
        Ok(self.g.scoped(prefix, |g| {
            let xf = g.to_f32(x);
            let y = g.op("GroupNormalization", &[&xf, &s, &b], vec![attr_int("num_groups", groups), attr_float("epsilon", EPS)]);
            g.to_compute(&y)
        }))
    }

    fn silu(&mut self, x: &str) -> String {
        let s = self.g.op("Sigmoid", &[x], vec![]);
        self.g.op("Mul", &[x, &s], vec![])
    }

    /// `ResnetBlock2D` (no time embedding, output scale 1).
    fn resnet(&mut self, x: &str, p: &str, cin: usize, cout: usize) -> R<String> {
        let h = self.group_norm(x, &format!("{p}.norm1"), cin)?;
        let h = self.silu(&h);
        let h = self.conv(&h, &format!("{p}.conv1"), cin, cout, 3)?;
        let h = self.group_norm(&h, &format!("{p}.norm2"), cout)?;
        let h = self.silu(&h);
        let h = self.conv(&h, &format!("{p}.conv2"), cout, cout, 3)?;
        let skip = if cin != cout { self.conv(x, &format!("{p}.conv_shortcut"), cin, cout, 1)? } else { x.to_string() };
        Ok(self.g.op("Add", &[&skip, &h], vec![]))
    }

    /// Linear `prefix.weight [c, c]` + bias on 2-D `x2 [N, c]`.
    fn linear(&mut self, x2: &str, prefix: &str, c: usize) -> R<String> {
        let w = self.param(&format!("{prefix}.weight"), &[c, c], false)?;
        let b = self.param(&format!("{prefix}.bias"), &[c], false)?;
        Ok(self.g.scoped(prefix, |g| g.op("Gemm", &[x2, &w, &b], vec![attr_int("transB", 1)])))
    }

    /// The mid block's single-head self-attention over the `H·W` positions, with residual.
    fn attention(&mut self, x: &str, p: &str, c: usize) -> R<String> {
        let xn = self.group_norm(x, &format!("{p}.group_norm"), c)?;
        let ci = c as i64;
        let (x_shape, tok2, tok3, tok4) = self.g.scoped(p, |g| {
            let x_shape = g.op("Shape", &[x], vec![]);
            let flat = g.i64s(&[0, 0, -1]);
            let x3 = g.op("Reshape", &[&xn, &flat], vec![]);
            let t = g.op("Transpose", &[&x3], vec![attr_ints("perm", &[0, 2, 1])]);
            let two = g.i64s(&[-1, ci]);
            let tok2 = g.op("Reshape", &[&t, &two], vec![]);
            let batch = g.op("Shape", &[x], vec![attr_int("start", 0), attr_int("end", 1)]);
            let rest3 = g.i64s(&[-1, ci]);
            let tok3 = g.op("Concat", &[&batch, &rest3], vec![attr_int("axis", 0)]);
            let rest4 = g.i64s(&[1, -1, ci]);
            let tok4 = g.op("Concat", &[&batch, &rest4], vec![attr_int("axis", 0)]);
            (x_shape, tok2, tok3, tok4)
        });
        // [B·HW, C] → [B, 1, HW, C] (one head)
        let mut qkv = Vec::with_capacity(3);
        for n in ["to_q", "to_k", "to_v"] {
            let y = self.linear(&tok2, &format!("{p}.{n}"), c)?;
            qkv.push(self.g.scoped(p, |g| g.op("Reshape", &[&y, &tok4], vec![])));
        }
        let scale = (1.0 / (c as f64).sqrt()) as f32;
        // No `softmax_precision`: TensorRT's parser rejects the attribute; the softmax runs in
        // the runtime's own precision for the graph dtype.
        let attrs = vec![attr_float("scale", scale)];
        let a = self.g.scoped(p, |g| g.op("Attention", &[&qkv[0], &qkv[1], &qkv[2]], attrs));
        let two = self.g.i64s(&[-1, ci]);
        let a2 = self.g.scoped(p, |g| g.op("Reshape", &[&a, &two], vec![]));
        let o = self.linear(&a2, &format!("{p}.to_out.0"), c)?;
        Ok(self.g.scoped(p, |g| {
            // [B·HW, C] → [B, HW, C] → [B, C, HW] → [B, C, H, W], + residual
            let bsc = g.op("Reshape", &[&o, &tok3], vec![]);
            let t = g.op("Transpose", &[&bsc], vec![attr_ints("perm", &[0, 2, 1])]);
            let y = g.op("Reshape", &[&t, &x_shape], vec![]);
            g.op("Add", &[&y, x], vec![])
        }))
    }

    /// `Upsample2D`: nearest ×2 then a 3×3 conv.
    fn upsample(&mut self, x: &str, p: &str, c: usize) -> R<String> {
        let scales = self.g.floats(&[4], &[1.0, 1.0, 2.0, 2.0], true);
        let up = self.g.scoped(p, |g| {
            let attrs = vec![attr_str("mode", "nearest"), attr_str("coordinate_transformation_mode", "asymmetric"), attr_str("nearest_mode", "floor")];
            g.op("Resize", &[x, "", &scales], attrs)
        });
        self.conv(&up, &format!("{p}.conv"), c, c, 3)
    }
}

/// Adds the decoder to `g`: input [`INPUT`], output [`OUTPUT`] (float32, see the module docs)
/// and every node, with the checkpoint tensors of `w` as external initializers in `g.dtype`.
/// An invalid config, a missing or mis-shaped tensor is an error naming the file and the
/// key/tensor, and `g` is left unchanged (the graph is first built into a scratch [`Graph`]).
pub fn build_decoder<'a>(g: &mut Graph<'a>, w: &'a ComponentWeights, cfg: &VaeDecoderConfig) -> Result<(), OnnxError> {
    cfg.check(w.config_path())?;
    add_decoder(&mut Graph::new(g.dtype), w, cfg)?;
    add_decoder(g, w, cfg)
}

fn add_decoder<'a>(g: &mut Graph<'a>, w: &'a ComponentWeights, cfg: &VaeDecoderConfig) -> Result<(), OnnxError> {
    let chans = &cfg.block_out_channels;
    let top = *chans.last().ok_or_else(|| VaeError::Config { path: w.config_path().to_path_buf(), message: "empty block_out_channels".into() })?;
    let lc = cfg.latent_channels;
    g.inputs.push(value_info(INPUT, FLOAT, &[Dim::Named("batch"), Dim::Fixed(lc), Dim::Named("latent_height"), Dim::Named("latent_width")]));
    let mut d = Decoder { g, w, groups: cfg.norm_num_groups };

    let z = d.g.scoped("scale", |g| {
        let s = g.floats(&[], &[cfg.scaling_factor], true);
        let sh = g.floats(&[], &[cfg.shift_factor], true);
        let z = g.op("Div", &[INPUT, &s], vec![]);
        let z = g.op("Add", &[&z, &sh], vec![]);
        g.to_compute(&z)
    });
    let z = if cfg.use_post_quant_conv { d.conv(&z, "post_quant_conv", lc, lc, 1)? } else { z };
    let mut x = d.conv(&z, "decoder.conv_in", lc, top, 3)?;

    x = d.resnet(&x, "decoder.mid_block.resnets.0", top, top)?;
    if cfg.mid_block_add_attention {
        x = d.attention(&x, "decoder.mid_block.attentions.0", top)?;
    }
    x = d.resnet(&x, "decoder.mid_block.resnets.1", top, top)?;

    let reversed: Vec<usize> = chans.iter().rev().copied().collect();
    let mut prev = top;
    for (i, &out) in reversed.iter().enumerate() {
        for j in 0..=cfg.layers_per_block {
            let cin = if j == 0 { prev } else { out };
            x = d.resnet(&x, &format!("decoder.up_blocks.{i}.resnets.{j}"), cin, out)?;
        }
        if i + 1 < reversed.len() {
            x = d.upsample(&x, &format!("decoder.up_blocks.{i}.upsamplers.0"), out)?;
        }
        prev = out;
    }

    let bottom = chans[0];
    x = d.group_norm(&x, "decoder.conv_norm_out", bottom)?;
    x = d.silu(&x);
    x = d.conv(&x, "decoder.conv_out", bottom, cfg.out_channels, 3)?;
    if d.g.dtype == DType::F32 {
        d.g.op_named("Identity", &[&x], vec![], OUTPUT);
    } else {
        d.g.op_named("Cast", &[&x], vec![attr_int("to", FLOAT as i64)], OUTPUT);
    }
    d.g.outputs.push(value_info(OUTPUT, FLOAT, &[Dim::Named("batch"), Dim::Fixed(cfg.out_channels), Dim::Named("height"), Dim::Named("width")]));
    tracing::debug!(nodes = d.g.nodes.len(), weights = d.g.external.len(), "VAE decoder graph built");
    Ok(())
}

/// The decoder as a whole ONNX model in `dtype` (for tests and until the component writer
/// lands): mirrors the transformer exporter's assembly (opset/IR version, external data layout).
pub fn build_decoder_model<'a>(w: &'a ComponentWeights, cfg: &VaeDecoderConfig, dtype: DType) -> Result<crate::onnx::BuiltModel<'a>, OnnxError> {
    let mut g = Graph::new(dtype);
    build_decoder(&mut g, w, cfg)?;
    Ok(crate::onnx::finish_graph(g, "vae_decoder"))
}

//! FLUX.1's text encoders as typed configs: CLIP-L (`CLIPTextModel`, pooled output) and the T5
//! v1.1 encoder (`T5EncoderModel`, last hidden state), read from a Hugging Face component
//! folder's `config.json` and validated. The exporter ([`crate::onnx::components`]) builds the
//! graphs from them; the component manifest records them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointError;
use crate::flux::LinearModule;

/// CLIP's MLP activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipActivation {
    /// `x·σ(1.702·x)` (OpenAI CLIP, FLUX.1's CLIP-L).
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh GELU (`gelu_new` / `gelu_pytorch_tanh`).
    GeluTanh,
}

/// How `pooler_output` picks the token (transformers' `CLIPTextTransformer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum ClipPooling {
    /// `eos_token_id == 2` (legacy configs, FLUX.1's): the position of `argmax(input_ids)`.
    ArgmaxId,
    /// The first position whose id equals `eos_token_id`.
    FirstEos { eos_token_id: i64 },
}

/// CLIP text model (`CLIPTextModel`) as FluxPipeline uses it: `pooler_output`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Token length of `input_ids` (= `max_position_embeddings`, 77 for CLIP-L).
    pub max_length: usize,
    pub activation: ClipActivation,
    pub layer_norm_eps: f32,
    pub pooling: ClipPooling,
}

/// T5 feed-forward (`feed_forward_proj`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum T5FeedForward {
    /// `wo(gelu_tanh(wi_0 x) · wi_1 x)` (T5 v1.1, FLUX.1's T5-XXL).
    GatedGelu,
    /// `wo(relu(wi_0 x) · wi_1 x)`.
    GatedRelu,
    /// `wo(relu(wi x))` (original T5).
    Relu,
}

/// T5 encoder (`T5EncoderModel`) as FluxPipeline uses it: `last_hidden_state`, no attention mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct T5EncoderConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f32,
    pub feed_forward: T5FeedForward,
    /// Token length of `input_ids`, fixed at export (FLUX.1-dev 512, schnell 256).
    pub max_length: usize,
}

#[derive(Deserialize)]
struct HfClip {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f32,
    eos_token_id: i64,
}

#[derive(Deserialize)]
struct HfT5 {
    vocab_size: usize,
    d_model: usize,
    d_kv: usize,
    d_ff: usize,
    num_layers: usize,
    num_heads: usize,
    relative_attention_num_buckets: usize,
    relative_attention_max_distance: usize,
    layer_norm_epsilon: f32,
    feed_forward_proj: String,
}

fn bad(path: &Path, message: String) -> CheckpointError {
    CheckpointError::Config { path: path.to_path_buf(), message }
}

fn positive(path: &Path, fields: &[(&str, usize)]) -> Result<(), CheckpointError> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((k, _)) => Err(bad(path, format!("`{k}` must be positive"))),
        None => Ok(()),
    }
}

impl ClipTextConfig {
    /// From a `CLIPTextModel` `config.json` (already parsed; `path` names it in errors).
    pub fn from_hf(path: &Path, json: &serde_json::Value) -> Result<Self, CheckpointError> {
        let c: HfClip = serde_json::from_value(json.clone()).map_err(|e| bad(path, format!("not a CLIP text config: {e}")))?;
        positive(
            path,
            &[
                ("vocab_size", c.vocab_size),
                ("hidden_size", c.hidden_size),
                ("intermediate_size", c.intermediate_size),
                ("num_hidden_layers", c.num_hidden_layers),
                ("num_attention_heads", c.num_attention_heads),
                ("max_position_embeddings", c.max_position_embeddings),
            ],
        )?;
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(bad(path, format!("hidden_size {} is not a multiple of num_attention_heads {}", c.hidden_size, c.num_attention_heads)));
        }
        let activation = match c.hidden_act.as_str() {
            "quick_gelu" => ClipActivation::QuickGelu,
            "gelu" => ClipActivation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => ClipActivation::GeluTanh,
            o => return Err(bad(path, format!("hidden_act `{o}` is not supported (quick_gelu, gelu, gelu_new)"))),
        };
        if !(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0) {
            return Err(bad(path, format!("layer_norm_eps {} must be a positive number", c.layer_norm_eps)));
        }
        let pooling = if c.eos_token_id == 2 { ClipPooling::ArgmaxId } else { ClipPooling::FirstEos { eos_token_id: c.eos_token_id } };
        Ok(ClipTextConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            max_length: c.max_position_embeddings,
            activation,
            layer_norm_eps: c.layer_norm_eps,
            pooling,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The encoder layers' Linear modules (LoRA slot candidates), in layer order: `q_proj`,
    /// `k_proj`, `v_proj`, `out_proj`, `fc1`, `fc2`, named as [`crate::Adapter::text_encoder`]
    /// names them (`text_model.encoder.layers.N.self_attn.q_proj`, ...).
    pub fn linear_modules(&self) -> Vec<LinearModule> {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let mut v = Vec::with_capacity(self.num_layers * 6);
        for i in 0..self.num_layers {
            let p = format!("{CLIP_MODULE_PREFIX}encoder.layers.{i}");
            for (leaf, in_f, out_f) in [
                ("self_attn.q_proj", h, h),
                ("self_attn.k_proj", h, h),
                ("self_attn.v_proj", h, h),
                ("self_attn.out_proj", h, h),
                ("mlp.fc1", h, f),
                ("mlp.fc2", f, h),
            ] {
                v.push(LinearModule { name: format!("{p}.{leaf}"), in_features: in_f, out_features: out_f });
            }
        }
        v
    }
}

/// Prefix of canonical CLIP module names (LoRA slots); stored weights may lack it.
pub const CLIP_MODULE_PREFIX: &str = "text_model.";

impl T5EncoderConfig {
    /// From a `T5EncoderModel` `config.json`; `max_length` is the export's fixed token length.
    pub fn from_hf(path: &Path, json: &serde_json::Value, max_length: usize) -> Result<Self, CheckpointError> {
        let c: HfT5 = serde_json::from_value(json.clone()).map_err(|e| bad(path, format!("not a T5 config: {e}")))?;
        positive(
            path,
            &[
                ("vocab_size", c.vocab_size),
                ("d_model", c.d_model),
                ("d_kv", c.d_kv),
                ("d_ff", c.d_ff),
                ("num_layers", c.num_layers),
                ("num_heads", c.num_heads),
                ("relative_attention_num_buckets", c.relative_attention_num_buckets),
                ("relative_attention_max_distance", c.relative_attention_max_distance),
                ("max_length", max_length),
            ],
        )?;
        // transformers' T5Config: "gated-gelu" means gelu_new (tanh); otherwise `[gated-]ACT`.
        let feed_forward = match c.feed_forward_proj.as_str() {
            "gated-gelu" | "gated-gelu_new" => T5FeedForward::GatedGelu,
            "gated-relu" => T5FeedForward::GatedRelu,
            "relu" => T5FeedForward::Relu,
            o => return Err(bad(path, format!("feed_forward_proj `{o}` is not supported (gated-gelu, gated-relu, relu)"))),
        };
        // Bidirectional buckets: half per direction, half of those exact; the log buckets need
        // max_distance above the exact range.
        if c.relative_attention_num_buckets < 4 || c.relative_attention_max_distance <= c.relative_attention_num_buckets / 4 {
            return Err(bad(
                path,
                format!(
                    "relative_attention_num_buckets {} / max_distance {} leave no logarithmic buckets",
                    c.relative_attention_num_buckets, c.relative_attention_max_distance
                ),
            ));
        }
        if !(c.layer_norm_epsilon.is_finite() && c.layer_norm_epsilon > 0.0) {
            return Err(bad(path, format!("layer_norm_epsilon {} must be a positive number", c.layer_norm_epsilon)));
        }
        Ok(T5EncoderConfig {
            vocab_size: c.vocab_size,
            d_model: c.d_model,
            d_kv: c.d_kv,
            d_ff: c.d_ff,
            num_layers: c.num_layers,
            num_heads: c.num_heads,
            relative_attention_num_buckets: c.relative_attention_num_buckets,
            relative_attention_max_distance: c.relative_attention_max_distance,
            layer_norm_epsilon: c.layer_norm_epsilon,
            feed_forward,
            max_length,
        })
    }

    /// Inner width of the attention (`num_heads · d_kv`).
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Bucket of every (query i, key j) pair, row-major `[L, L]`: transformers'
    /// `T5Attention._relative_position_bucket(j − i, bidirectional=True, ...)` (f32 log, truncation
    /// toward zero, like torch's `.to(torch.long)`).
    pub fn relative_buckets(&self) -> Vec<i64> {
        let l = self.max_length as i64;
        let nb = (self.relative_attention_num_buckets / 2) as i64;
        let max_exact = nb / 2;
        let max_distance = self.relative_attention_max_distance as f64;
        let denom = (max_distance / max_exact as f64).ln() as f32;
        let mut out = Vec::with_capacity((l * l) as usize);
        for i in 0..l {
            for j in 0..l {
                let rel = j - i;
                let mut b = if rel > 0 { nb } else { 0 };
                let n = rel.abs();
                b += if n < max_exact {
                    n
                } else {
                    // torch: (log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)).to(long)
                    let large = ((n as f32 / max_exact as f32).ln() / denom * (nb - max_exact) as f32) as i64 + max_exact;
                    large.min(nb - 1)
                };
                out.push(b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_buckets_match_hand_values() {
        let c = T5EncoderConfig {
            vocab_size: 1,
            d_model: 1,
            d_kv: 1,
            d_ff: 1,
            num_layers: 1,
            num_heads: 1,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward: T5FeedForward::GatedGelu,
            max_length: 200,
        };
        let b = c.relative_buckets();
        let at = |i: usize, j: usize| b[i * 200 + j];
        // exact range: |d| < 8; keys after the query use the upper 16 buckets
        assert_eq!(at(10, 10), 0);
        assert_eq!(at(10, 3), 7);
        assert_eq!(at(3, 10), 16 + 7);
        // log range: d = 8 → 8, d = 127 → 15 (8 + floor(ln(127/8)/ln(16)·8) = 8 + 7), beyond max → 15
        assert_eq!(at(20, 12), 8);
        assert_eq!(at(150, 23), 15);
        assert_eq!(at(0, 199), 16 + 15);
    }
}

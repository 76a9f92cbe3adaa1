//! T5 encoder → ONNX, op for op as transformers' `T5EncoderModel(input_ids).last_hidden_state`
//! (FluxPipeline passes no attention mask): embedding `shared.weight` (or
//! `encoder.embed_tokens.weight`); per block `x += o(attn(rms(x)))` with the relative position
//! bias of block 0 as an additive mask and no `1/√d` scaling, `x += ff(rms(x))` (gated-gelu with
//! tanh GELU, gated-relu or relu); final RMS norm. RMS norms run in f32.
//!
//! The bias is `relative_attention_bias.weight [buckets, heads]` gathered with a constant
//! `[L, L]` int64 bucket table computed at export ([`T5EncoderConfig::relative_buckets`]) and
//! transposed to `[1, heads, L, L]`, computed once and shared by every block.
//!
//! Graph: input `input_ids [batch, L]` int64 (L fixed at export); output
//! `last_hidden_state [batch, L, d_model]` f32.

use super::super::graph::Graph;
use super::super::proto::{attr_int, attr_ints, attr_str, value_info, Dim, FLOAT, INT64};
use super::super::OnnxError;
use super::nn::{Attn, Net, R};
use crate::checkpoint::ComponentWeights;
use crate::encoders::{T5EncoderConfig, T5FeedForward};
use crate::tensor::DType;

/// Name of the T5 graph's input.
pub const T5_INPUT: &str = "input_ids";
/// Name of the T5 graph's output.
pub const T5_OUTPUT: &str = "last_hidden_state";

/// Stored name of the token embedding: `shared.weight`, else `encoder.embed_tokens.weight`.
fn embedding_name(w: &ComponentWeights) -> Result<&'static str, OnnxError> {
    for n in ["shared.weight", "encoder.embed_tokens.weight"] {
        if w.contains(n) {
            return Ok(n);
        }
    }
    Err(OnnxError::Component {
        path: w.dir().to_path_buf(),
        message: "not a T5 encoder: neither `shared.weight` nor `encoder.embed_tokens.weight` is stored".into(),
    })
}

/// Builds the T5 encoder graph of `w` (config `cfg`, `cfg.max_length` tokens) in `dtype`.
pub fn build_t5<'a>(w: &'a ComponentWeights, cfg: &T5EncoderConfig, dtype: DType) -> R<Graph<'a>> {
    let (dm, l, inner, heads) = (cfg.d_model, cfg.max_length, cfg.inner_dim(), cfg.num_heads);
    let eps = cfg.layer_norm_epsilon;
    let mut g = Graph::new(dtype);
    g.inputs.push(value_info(T5_INPUT, INT64, &[Dim::Named("batch"), Dim::Fixed(l)]));
    let mut n = Net::new(g, w, "", l);

    let emb = embedding_name(w)?;
    let table = n.weight(emb, &[cfg.vocab_size, dm])?;
    let mut x = n.g.op("Gather", &[&table, T5_INPUT], vec![attr_int("axis", 0)]);

    // Relative position bias [1, heads, L, L] from block 0.
    let rel = n.weight("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", &[cfg.relative_attention_num_buckets, heads])?;
    let buckets = cfg.relative_buckets();
    let bias = n.g.scoped("position_bias", |g| {
        let raw = buckets.iter().flat_map(|b| b.to_le_bytes()).collect();
        g.inline.push(super::super::proto::tensor_inline("t5.relative_position_buckets", INT64, &[l, l], raw));
        let b = g.op("Gather", &[&rel, "t5.relative_position_buckets"], vec![attr_int("axis", 0)]);
        let t = g.op("Transpose", &[&b], vec![attr_ints("perm", &[2, 0, 1])]);
        let axes = g.i64s(&[0]);
        g.op("Unsqueeze", &[&t, &axes], vec![])
    });

    for i in 0..cfg.num_layers {
        let p = format!("encoder.block.{i}.layer");
        let a = format!("{p}.0.SelfAttention");
        let h = n.rms_norm(&x, &format!("{p}.0.layer_norm"), dm, eps)?;
        let q = n.linear(&h, &format!("{a}.q"), &format!("{a}.q"), dm, inner, false)?;
        let k = n.linear(&h, &format!("{a}.k"), &format!("{a}.k"), dm, inner, false)?;
        let v = n.linear(&h, &format!("{a}.v"), &format!("{a}.v"), dm, inner, false)?;
        let q = n.split_heads(&q, heads, cfg.d_kv);
        let k = n.split_heads(&k, heads, cfg.d_kv);
        let v = n.split_heads(&v, heads, cfg.d_kv);
        let att = n.attention([&q, &k, &v], Attn { scale: 1.0, causal: false, mask: Some(&bias) }, inner);
        let o = n.linear(&att, &format!("{a}.o"), &format!("{a}.o"), inner, dm, false)?;
        x = n.g.op("Add", &[&x, &o], vec![]);
        x = n.fp16_clip(&x);

        let f = format!("{p}.1.DenseReluDense");
        let h = n.rms_norm(&x, &format!("{p}.1.layer_norm"), dm, eps)?;
        let y = match cfg.feed_forward {
            T5FeedForward::GatedGelu | T5FeedForward::GatedRelu => {
                let g0 = n.linear(&h, &format!("{f}.wi_0"), &format!("{f}.wi_0"), dm, cfg.d_ff, false)?;
                let g0 = if cfg.feed_forward == T5FeedForward::GatedGelu {
                    n.g.op("Gelu", &[&g0], vec![attr_str("approximate", "tanh")])
                } else {
                    n.g.op("Relu", &[&g0], vec![])
                };
                let g1 = n.linear(&h, &format!("{f}.wi_1"), &format!("{f}.wi_1"), dm, cfg.d_ff, false)?;
                n.g.op("Mul", &[&g0, &g1], vec![])
            }
            T5FeedForward::Relu => {
                let y = n.linear(&h, &format!("{f}.wi"), &format!("{f}.wi"), dm, cfg.d_ff, false)?;
                n.g.op("Relu", &[&y], vec![])
            }
        };
        let y = n.linear(&y, &format!("{f}.wo"), &format!("{f}.wo"), cfg.d_ff, dm, false)?;
        x = n.g.op("Add", &[&x, &y], vec![]);
        x = n.fp16_clip(&x);
    }
    let x = n.rms_norm(&x, "encoder.final_layer_norm", dm, eps)?;
    if dtype == DType::F32 {
        n.g.op_named("Identity", &[&x], vec![], T5_OUTPUT);
    } else {
        n.g.op_named("Cast", &[&x], vec![attr_int("to", FLOAT as i64)], T5_OUTPUT);
    }
    n.g.outputs.push(value_info(T5_OUTPUT, FLOAT, &[Dim::Named("batch"), Dim::Fixed(l), Dim::Fixed(dm)]));
    Ok(n.g)
}

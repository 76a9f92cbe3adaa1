//! CLIP-L text model → ONNX, op for op as transformers' `CLIPTextModel` computes
//! `pooler_output` (what FluxPipeline feeds the transformer as `pooled_projections`):
//! token + position embeddings; per layer `x += out_proj(attn(LN1(x)))` with a causal mask and
//! scale `1/√head_dim`, `x += fc2(act(fc1(LN2(x))))`; final LayerNorm; pooling at
//! `argmax(input_ids)` (`eos_token_id == 2`, FLUX.1's config) or at the first `eos_token_id`.
//!
//! Graph: input `input_ids [batch, max_length]` int64; output `pooled [batch, hidden]` f32.
//! Stored names: transformers 5 writes `embeddings.…`, older files `text_model.embeddings.…`;
//! both are read, anything else is refused. LoRA slots (`lora.text_model.encoder.layers.N.
//! {self_attn.{q,k,v,out}_proj,mlp.fc1,mlp.fc2}.A/B`) work as in the transformer.

use super::super::graph::Graph;
use super::super::proto::{attr_int, value_info, Dim, FLOAT, INT64};
use super::super::OnnxError;
use super::nn::{Net, R};
use crate::checkpoint::ComponentWeights;
use crate::encoders::{ClipActivation, ClipPooling, ClipTextConfig, CLIP_MODULE_PREFIX};
use crate::lora::SlotPlan;
use crate::tensor::DType;

/// Name of the CLIP graph's input.
pub const CLIP_INPUT: &str = "input_ids";
/// Name of the CLIP graph's output.
pub const CLIP_OUTPUT: &str = "pooled";

/// The stored-name prefix of a CLIP text model: `""` (transformers 5) or `text_model.`.
pub fn clip_prefix(w: &ComponentWeights) -> Result<&'static str, OnnxError> {
    const KEY: &str = "embeddings.token_embedding.weight";
    match (w.contains(KEY), w.contains(&format!("{CLIP_MODULE_PREFIX}{KEY}"))) {
        (true, false) => Ok(""),
        (false, true) => Ok(CLIP_MODULE_PREFIX),
        (true, true) => Err(OnnxError::Component {
            path: w.dir().to_path_buf(),
            message: format!("both `{KEY}` and `{CLIP_MODULE_PREFIX}{KEY}` are stored; cannot tell which CLIP text model to export"),
        }),
        (false, false) => Err(OnnxError::Component {
            path: w.dir().to_path_buf(),
            message: format!("not a CLIP text model: neither `{KEY}` nor `{CLIP_MODULE_PREFIX}{KEY}` is stored"),
        }),
    }
}

/// Builds the CLIP text graph of `w` (config `cfg`) with `plan`'s slots (if any) in `dtype`.
pub fn build_clip<'a>(w: &'a ComponentWeights, cfg: &ClipTextConfig, plan: Option<&SlotPlan>, dtype: DType) -> R<Graph<'a>> {
    let prefix = clip_prefix(w)?;
    let (h, s, f) = (cfg.hidden_size, cfg.max_length, cfg.intermediate_size);
    let mut g = Graph::new(dtype);
    g.inputs.push(value_info(CLIP_INPUT, INT64, &[Dim::Named("batch"), Dim::Fixed(s)]));
    let mut n = Net::new(g, w, prefix, s);
    if let Some(p) = plan {
        n.add_slots(p, cfg.linear_modules())?;
    }

    let tok = n.weight("embeddings.token_embedding.weight", &[cfg.vocab_size, h])?;
    let pos = n.weight("embeddings.position_embedding.weight", &[s, h])?;
    let e = n.g.op("Gather", &[&tok, CLIP_INPUT], vec![attr_int("axis", 0)]);
    let mut x = n.g.op("Add", &[&e, &pos], vec![]);

    let d = cfg.head_dim();
    let scale = 1.0 / (d as f32).sqrt();
    for i in 0..cfg.num_layers {
        let p = format!("encoder.layers.{i}");
        let m = format!("{CLIP_MODULE_PREFIX}{p}");
        let ln = n.layer_norm(&x, &format!("{p}.layer_norm1"), h, cfg.layer_norm_eps)?;
        let q = n.linear(&ln, &format!("{p}.self_attn.q_proj"), &format!("{m}.self_attn.q_proj"), h, h, true)?;
        let k = n.linear(&ln, &format!("{p}.self_attn.k_proj"), &format!("{m}.self_attn.k_proj"), h, h, true)?;
        let v = n.linear(&ln, &format!("{p}.self_attn.v_proj"), &format!("{m}.self_attn.v_proj"), h, h, true)?;
        let q = n.split_heads(&q, cfg.num_heads, d);
        let k = n.split_heads(&k, cfg.num_heads, d);
        let v = n.split_heads(&v, cfg.num_heads, d);
        let a = n.attention(&q, &k, &v, None, scale, true, h);
        let o = n.linear(&a, &format!("{p}.self_attn.out_proj"), &format!("{m}.self_attn.out_proj"), h, h, true)?;
        x = n.g.op("Add", &[&x, &o], vec![]);
        let ln = n.layer_norm(&x, &format!("{p}.layer_norm2"), h, cfg.layer_norm_eps)?;
        let y = n.linear(&ln, &format!("{p}.mlp.fc1"), &format!("{m}.mlp.fc1"), h, f, true)?;
        let y = activation(&mut n, &y, cfg.activation);
        let y = n.linear(&y, &format!("{p}.mlp.fc2"), &format!("{m}.mlp.fc2"), f, h, true)?;
        x = n.g.op("Add", &[&x, &y], vec![]);
    }
    let x = n.layer_norm(&x, "final_layer_norm", h, cfg.layer_norm_eps)?;

    // Pooling position per sequence: ArgMax over f32 (ids < 2^24 are exact; TensorRT's TopK
    // takes no int64), first maximum like torch.argmax.
    let key = match cfg.pooling {
        ClipPooling::ArgmaxId => n.g.op("Cast", &[CLIP_INPUT], vec![attr_int("to", FLOAT as i64)]),
        ClipPooling::FirstEos { eos_token_id } => {
            let eos = n.g.i64s(&[eos_token_id]);
            let eq = n.g.op("Equal", &[CLIP_INPUT, &eos], vec![]);
            n.g.op("Cast", &[&eq], vec![attr_int("to", FLOAT as i64)])
        }
    };
    let idx = n.g.op("ArgMax", &[&key], vec![attr_int("axis", 1), attr_int("keepdims", 1)]);
    let pooled = n.g.op("GatherND", &[&x, &idx], vec![attr_int("batch_dims", 1)]);
    let out = if dtype == DType::F32 { "Identity" } else { "Cast" };
    let attrs = if dtype == DType::F32 { vec![] } else { vec![attr_int("to", FLOAT as i64)] };
    n.g.op_named(out, &[&pooled], attrs, CLIP_OUTPUT);
    n.g.outputs.push(value_info(CLIP_OUTPUT, FLOAT, &[Dim::Named("batch"), Dim::Fixed(h)]));
    Ok(n.g)
}

fn activation(n: &mut Net<'_>, x: &str, act: ClipActivation) -> String {
    match act {
        ClipActivation::QuickGelu => {
            let k = n.g.scalar(1.702);
            let kx = n.g.op("Mul", &[x, &k], vec![]);
            let s = n.g.op("Sigmoid", &[&kx], vec![]);
            n.g.op("Mul", &[x, &s], vec![])
        }
        ClipActivation::Gelu => n.g.op("Gelu", &[x], vec![]),
        ClipActivation::GeluTanh => n.g.op("Gelu", &[x], vec![super::super::proto::attr_str("approximate", "tanh")]),
    }
}

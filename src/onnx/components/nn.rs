//! Building blocks shared by the text-encoder graphs: weights of a component folder under a
//! stored-name prefix, Linear layers with optional LoRA slots, norms, multi-head attention.
//!
//! Sequences have a fixed length `S` (set at export), batch is dynamic: every reshape is a
//! constant `[-1, S, C]` / `[-1, C]`, no `Shape` ops.

use super::super::graph::Graph;
use super::super::proto::{attr_float, attr_int, attr_ints};
use super::super::slots::LoraSlots;
use super::super::OnnxError;
use crate::checkpoint::ComponentWeights;
use crate::flux::LinearModule;
use crate::lora::SlotPlan;

pub(super) type R<T> = Result<T, OnnxError>;

/// Attention settings: score scale, causal masking, an optional additive float mask
/// (`[1, heads, S, S]`).
pub(super) struct Attn<'m> {
    pub scale: f32,
    pub causal: bool,
    pub mask: Option<&'m str>,
}

pub(super) struct Net<'a> {
    pub g: Graph<'a>,
    w: &'a ComponentWeights,
    /// Stored-name prefix of every weight (`""`, or `text_model.` for older CLIP files).
    prefix: String,
    /// Fixed sequence length.
    pub seq: usize,
    slots: LoraSlots,
}

impl<'a> Net<'a> {
    pub fn new(g: Graph<'a>, w: &'a ComponentWeights, prefix: &str, seq: usize) -> Self {
        Net { g, w, prefix: prefix.to_string(), seq, slots: LoraSlots::default() }
    }

    /// Adds `plan`'s slots ([`LoraSlots::declare`]), checked against `modules` (the model's
    /// slot-capable Linear layers).
    pub fn add_slots(&mut self, plan: &SlotPlan, modules: Vec<LinearModule>) -> R<()> {
        self.slots = LoraSlots::declare(&mut self.g, plan, modules)?;
        Ok(())
    }

    /// The weight stored as `prefix + name`, checked to have `shape`, as an external initializer.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> R<String> {
        let stored = format!("{}{name}", self.prefix);
        let t = self.w.tensor_shaped(&stored, shape)?;
        let want = (t.numel() * t.dtype.size()) as u64;
        if t.nbytes() as u64 != want {
            return Err(OnnxError::ByteCount { path: self.w.file_of(&stored), tensor: stored, expected: want, found: t.nbytes() as u64 });
        }
        Ok(self.g.external(stored, t))
    }

    /// `[B, S, C]` → `[B·S, C]`.
    pub fn flat(&mut self, x: &str, c: usize) -> String {
        let s = self.g.i64s(&[-1, c as i64]);
        self.g.op("Reshape", &[x, &s], vec![])
    }

    /// `[B·S, C]` → `[B, S, C]`.
    pub fn unflat(&mut self, x: &str, c: usize) -> String {
        let s = self.g.i64s(&[-1, self.seq as i64, c as i64]);
        self.g.op("Reshape", &[x, &s], vec![])
    }

    /// Linear `stored` (`<stored>.weight [out, in]`, `<stored>.bias` when `bias`) on 3-D `x`, plus
    /// the LoRA slot of canonical module `module` if the plan has one.
    pub fn linear(&mut self, x: &str, stored: &str, module: &str, in_f: usize, out_f: usize, bias: bool) -> R<String> {
        let w = self.weight(&format!("{stored}.weight"), &[out_f, in_f])?;
        let b = if bias { Some(self.weight(&format!("{stored}.bias"), &[out_f])?) } else { None };
        let x2 = self.flat(x, in_f);
        let t = vec![attr_int("transB", 1)];
        let y = match &b {
            Some(b) => self.g.scoped(stored, |g| g.op("Gemm", &[&x2, &w, b], t.clone())),
            None => self.g.scoped(stored, |g| g.op("Gemm", &[&x2, &w], t.clone())),
        };
        let y = match self.slots.delta(&mut self.g, &x2, module) {
            Some(d) => self.g.scoped("lora", |g| g.op("Add", &[&y, &d], vec![])),
            None => y,
        };
        Ok(self.unflat(&y, out_f))
    }

    /// LayerNorm over the last axis with the stored affine `<stored>.weight/.bias`.
    pub fn layer_norm(&mut self, x: &str, stored: &str, width: usize, eps: f32) -> R<String> {
        let w = self.weight(&format!("{stored}.weight"), &[width])?;
        let b = self.weight(&format!("{stored}.bias"), &[width])?;
        Ok(self.g.op("LayerNormalization", &[x, &w, &b], vec![attr_int("axis", -1), attr_float("epsilon", eps)]))
    }

    /// T5 RMS norm (no mean subtraction) in f32, times the stored `<stored>.weight`.
    pub fn rms_norm(&mut self, x: &str, stored: &str, width: usize, eps: f32) -> R<String> {
        let w = self.weight(&format!("{stored}.weight"), &[width])?;
        let xf = self.g.to_f32(x);
        let sq = self.g.op("Mul", &[&xf, &xf], vec![]);
        let axes = self.g.i64s(&[-1]);
        let ms = self.g.op("ReduceMean", &[&sq, &axes], vec![attr_int("keepdims", 1)]);
        let e = self.g.floats(&[], &[eps], true);
        let v = self.g.op("Add", &[&ms, &e], vec![]);
        let r = self.g.op("Sqrt", &[&v], vec![]);
        let n = self.g.op("Div", &[&xf, &r], vec![]);
        let n = self.g.to_compute(&n);
        Ok(self.g.op("Mul", &[&w, &n], vec![]))
    }

    /// `[B, S, heads·d]` → `[B, heads, S, d]`.
    pub fn split_heads(&mut self, x: &str, heads: usize, d: usize) -> String {
        let s = self.g.i64s(&[-1, self.seq as i64, heads as i64, d as i64]);
        let r = self.g.op("Reshape", &[x, &s], vec![]);
        self.g.op("Transpose", &[&r], vec![attr_ints("perm", &[0, 2, 1, 3])])
    }

    /// ONNX `Attention` (opset 23) on `[B, heads, S, d]` q/k/v, merged back to `[B, S, width]`.
    pub fn attention(&mut self, qkv: [&str; 3], how: Attn<'_>, width: usize) -> String {
        let [q, k, v] = qkv;
        let mut attrs = vec![attr_float("scale", how.scale)];
        if how.causal {
            attrs.push(attr_int("is_causal", 1));
        }
        let y = match how.mask {
            Some(m) => self.g.op("Attention", &[q, k, v, m], attrs),
            None => self.g.op("Attention", &[q, k, v], attrs),
        };
        let t = self.g.op("Transpose", &[&y], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let s = self.g.i64s(&[-1, self.seq as i64, width as i64]);
        self.g.op("Reshape", &[&t, &s], vec![])
    }

    /// Clips the residual stream to ±65504 in fp16 graphs (transformers' T5 does the same).
    pub fn fp16_clip(&mut self, x: &str) -> String {
        if self.g.dtype != crate::tensor::DType::F16 {
            return x.to_string();
        }
        let lo = self.g.scalar(-65504.0);
        let hi = self.g.scalar(65504.0);
        self.g.op("Clip", &[x, &lo, &hi], vec![])
    }
}

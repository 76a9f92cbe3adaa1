//! The FLUX.1 transformer as ONNX nodes, following diffusers `FluxTransformer2DModel` op by op
//! (diffusers 0.42.1 `transformer_flux.py`): embeddings, double and single blocks, final layer.
//!
//! Activations are 3-D `[B, S, C]`; every Linear flattens to `[B·S, C]`, runs
//! `Gemm(transB=1)` against the checkpoint's `[out, in]` weight and adds its LoRA slot(s).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::graph::Graph;
use super::proto::{attr_float, attr_int, attr_ints, attr_str};
use super::slots::LoraSlots;
use super::OnnxError;
use crate::checkpoint::{Checkpoint, TensorRef};
use crate::flux::{FluxConfig, FusedGroup, LinearModule, TIME_EMBED_DIM};
use crate::lora::SlotPlan;

const EPS: f32 = 1e-6;

/// What the builder does at each FP8 quantization point (see [`super::fp8`]).
#[derive(Clone, Debug, Default)]
pub enum Quant {
    /// Plain float graph.
    #[default]
    None,
    /// Float graph with an extra f32 scalar output `amax.<point>` = max|input| per point.
    Calibrate,
    /// Q/DQ on weights and activations.
    Fp8(Fp8Graph),
}

/// FP8 graph settings with the activation scales already derived (point → scale).
#[derive(Clone, Debug)]
pub struct Fp8Graph {
    pub weight_scale: super::fp8::WeightScale,
    pub attention: bool,
    pub activation_scales: BTreeMap<String, f32>,
}

pub struct Flux<'a> {
    pub g: Graph<'a>,
    ckpt: &'a Checkpoint,
    cfg: FluxConfig,
    slots: LoraSlots,
    /// `Shape(hidden_states)[0:1]`.
    batch: String,
    /// `[S_txt, S_img]` for splitting the joint sequence.
    seq_split: String,
    rope_cos: String,
    rope_sin: String,
    shape_cache: HashMap<Vec<i64>, String>,
    ln_params: Option<(String, String)>,
    quant: Quant,
    /// GEMMs that are FP8 quantization points.
    quantized: HashSet<String>,
    mapped: super::weights::MappedFiles,
}

type R<T> = Result<T, OnnxError>;

impl<'a> Flux<'a> {
    fn path(&self) -> PathBuf {
        self.ckpt.files().first().cloned().unwrap_or_default()
    }

    /// Adds the LoRA slots of `plan` ([`LoraSlots::declare`]).
    fn new(mut g: Graph<'a>, ckpt: &'a Checkpoint, plan: &SlotPlan, quant: Quant) -> R<Self> {
        let cfg = ckpt.config().clone();
        let quantized = super::fp8::quantized_gemms(&cfg).into_iter().collect();
        let mapped = match quant {
            Quant::Fp8(_) => super::weights::MappedFiles::find(ckpt.files()),
            _ => super::weights::MappedFiles::default(),
        };
        let slots = LoraSlots::declare(&mut g, plan, cfg.linear_modules())?;
        Ok(Flux {
            g,
            ckpt,
            cfg,
            slots,
            batch: String::new(),
            seq_split: String::new(),
            rope_cos: String::new(),
            rope_sin: String::new(),
            shape_cache: HashMap::new(),
            ln_params: None,
            quant,
            quantized,
            mapped,
        })
    }

    // ---------- weights ----------

    fn checked(&self, t: TensorRef<'a>, what: &str, expected: &[usize]) -> R<TensorRef<'a>> {
        if t.shape != expected {
            return Err(OnnxError::Shape { path: self.path(), tensor: t.name.clone(), what: what.into(), expected: expected.to_vec(), found: t.shape.clone() });
        }
        let want = (t.numel() * t.dtype.size()) as u64;
        if t.nbytes() as u64 != want {
            return Err(OnnxError::ByteCount { path: self.path(), tensor: t.name.clone(), expected: want, found: t.nbytes() as u64 });
        }
        Ok(t)
    }

    fn weight(&mut self, name: &str, shape: &[usize]) -> R<String> {
        let t = self.ckpt.tensor(name)?;
        let t = self.checked(t, "model config", shape)?;
        Ok(self.g.external(name.to_string(), t))
    }

    // ---------- shapes ----------

    /// `[B, dims...]` as a shape tensor (`dims` may hold one -1).
    fn bshape(&mut self, dims: &[i64]) -> String {
        if let Some(s) = self.shape_cache.get(dims) {
            return s.clone();
        }
        let c = self.g.i64s(dims);
        let b = self.batch.clone();
        let s = self.g.scoped("shape", |g| g.op("Concat", &[&b, &c], vec![attr_int("axis", 0)]));
        self.shape_cache.insert(dims.to_vec(), s.clone());
        s
    }

    fn flat(&mut self, x: &str, width: usize) -> String {
        let s = self.g.i64s(&[-1, width as i64]);
        self.g.op("Reshape", &[x, &s], vec![])
    }

    fn unflat(&mut self, y: &str, width: usize) -> String {
        let s = self.bshape(&[-1, width as i64]);
        self.g.op("Reshape", &[y, &s], vec![])
    }

    // ---------- linear layers ----------

    /// LoRA delta of `module` on 2-D `x2`, if it has a slot.
    fn lora_delta(&mut self, x2: &str, module: &str) -> Option<String> {
        self.slots.delta(&mut self.g, x2, module)
    }

    /// One Linear on 2-D `x2`: `x·Wᵀ + b + LoRA`.
    fn linear2(&mut self, x2: &str, module: &str) -> R<String> {
        let m = self.slots.module(module)?.clone();
        let wname = format!("{module}.weight");
        let wt = self.ckpt.tensor(&wname)?;
        let wt = self.checked(wt, "model config", &[m.out_features, m.in_features])?;
        let b = self.weight(&format!("{module}.bias"), &[m.out_features])?;
        let y = self.base_gemm(x2, module, wname, wt, &b)?;
        Ok(match self.lora_delta(x2, module) {
            Some(d) => self.g.op("Add", &[&y, &d], vec![]),
            None => y,
        })
    }

    /// A fused group (q|k|v[|mlp]) as one GEMM on 2-D `x2`, the members' LoRA deltas added to
    /// their column ranges.
    fn fused2(&mut self, x2: &str, group: &FusedGroup) -> R<String> {
        let members: Vec<LinearModule> = group.members.iter().map(|n| self.slots.module(n).cloned()).collect::<R<_>>()?;
        let in_f = members[0].in_features;
        let out: usize = members.iter().map(|m| m.out_features).sum();
        let wt = self.ckpt.fused(group, "weight")?;
        let wt = self.checked(wt, "fused group", &[out, in_f])?;
        let bt = self.ckpt.fused(group, "bias")?;
        let bt = self.checked(bt, "fused group", &[out])?;
        let b = self.g.external(format!("{}.bias", group.name), bt);
        let y = self.base_gemm(x2, &group.name, format!("{}.weight", group.name), wt, &b)?;
        let deltas: Vec<Option<String>> = members.iter().map(|m| self.lora_delta(x2, &m.name)).collect();
        if deltas.iter().all(Option::is_none) {
            return Ok(y);
        }
        let name = group.name.clone();
        Ok(self.g.scoped(&name, |g| {
            if deltas.iter().all(Option::is_some) {
                let ds: Vec<&str> = deltas.iter().flatten().map(String::as_str).collect();
                let cat = g.op("Concat", &ds, vec![attr_int("axis", 1)]);
                return g.op("Add", &[&y, &cat], vec![]);
            }
            let sizes: Vec<i64> = members.iter().map(|m| m.out_features as i64).collect();
            let split = g.i64s(&sizes);
            let parts = g.op_n("Split", &[&y, &split], vec![attr_int("axis", 1)], members.len());
            let summed: Vec<String> = parts
                .iter()
                .zip(&deltas)
                .map(|(p, d)| match d {
                    Some(d) => g.op("Add", &[p, d], vec![]),
                    None => p.clone(),
                })
                .collect();
            let refs: Vec<&str> = summed.iter().map(String::as_str).collect();
            g.op("Concat", &refs, vec![attr_int("axis", 1)])
        }))
    }

    /// The base GEMM `x2·Wᵀ + b` of `gemm`, with FP8 Q/DQ (or an amax output) when `gemm` is a
    /// quantization point. `wt` is the checked `[out, in]` weight stored as `wname`.
    fn base_gemm(&mut self, x2: &str, gemm: &str, wname: String, wt: TensorRef<'a>, b: &str) -> R<String> {
        let t = vec![attr_int("transB", 1)];
        let point = self.quantized.contains(gemm);
        let (x, w) = match self.quant.clone() {
            Quant::Fp8(q) if point => {
                let x = self.act_qdq(x2, gemm, &q)?;
                (x, self.weight_fp8(wname, wt, q.weight_scale)?)
            }
            Quant::Calibrate if point => {
                self.record_amax(x2, gemm);
                (x2.to_string(), self.g.external(wname, wt))
            }
            _ => (x2.to_string(), self.g.external(wname, wt)),
        };
        Ok(self.g.scoped(gemm, |g| g.op("Gemm", &[&x, &w, b], t)))
    }

    /// FLOAT8E4M3FN weight `wname` + scale + `DequantizeLinear(axis=0)`; returns the DQ output.
    fn weight_fp8(&mut self, wname: String, wt: TensorRef<'a>, mode: super::fp8::WeightScale) -> R<String> {
        use super::fp8::{scale_from_amax, weight_amax, WeightScale};
        let cols = wt.shape.get(1).copied().unwrap_or(1);
        let per_row = mode == WeightScale::Channel;
        let path = self.path();
        let mapped = &self.mapped;
        let file_of = |p: &[u8]| mapped.file_of(p).unwrap_or_else(|| path.clone());
        let amax = weight_amax(&wt, cols, per_row, &file_of, &|p| mapped.release(p))?;
        let dtype = self.g.dtype;
        // amax is finite and ≥ 0 here, so every scale exists; round it to the graph dtype so the
        // stored weight is quantized with exactly the scale DequantizeLinear will use.
        let scales: Vec<f32> = amax
            .iter()
            .map(|a| scale_from_amax(*a).map(|s| round_to(dtype, s)).ok_or_else(|| super::fp8::Fp8Error::BadActivation { point: wname.clone(), value: *a }))
            .collect::<Result<_, _>>()?;
        let dims: Vec<usize> = if per_row { vec![scales.len()] } else { vec![] };
        let sname = self.g.named_floats(&format!("{wname}_scale"), &dims, &scales);
        let w = self.g.external_fp8(wname.clone(), wt, scales);
        Ok(self.g.scoped(&wname, |g| g.op("DequantizeLinear", &[&w, &sname], vec![attr_int("axis", 0)])))
    }

    /// `DequantizeLinear(QuantizeLinear(x, s), s)` with the calibrated scalar scale of `point`.
    fn act_qdq(&mut self, x: &str, point: &str, q: &Fp8Graph) -> R<String> {
        let s = *q.activation_scales.get(point).ok_or_else(|| super::fp8::Fp8Error::MissingActivation { point: point.to_string() })?;
        let sname = self.g.named_floats(&format!("{point}.input_scale"), &[], &[s]);
        let code = super::fp8::e4m3::ONNX_CODE as i64;
        Ok(self.g.scoped(point, |g| {
            let qx = g.op("QuantizeLinear", &[x, &sname], vec![attr_int("output_dtype", code)]);
            g.op("DequantizeLinear", &[&qx, &sname], vec![])
        }))
    }

    /// Calibration graphs: output `amax.<point>` = ReduceMax(Abs(x)) as an f32 scalar.
    fn record_amax(&mut self, x: &str, point: &str) {
        use super::proto::{value_info, FLOAT};
        let out = super::fp8::amax_output(point);
        let xf = self.g.to_f32(x);
        self.g.scoped(point, |g| {
            let a = g.op("Abs", &[&xf], vec![]);
            g.op_named("ReduceMax", &[&a], vec![attr_int("keepdims", 0)], &out);
        });
        self.g.outputs.push(value_info(&out, FLOAT, &[]));
    }

    /// Attention input `x` of `point` (`<block>.attn.q|k|v`): Q/DQ with `--fp8-attention`, an
    /// amax output in calibration graphs, unchanged otherwise.
    fn attn_input(&mut self, x: &str, point: &str) -> R<String> {
        match self.quant.clone() {
            Quant::Fp8(q) if q.attention => self.act_qdq(x, point, &q),
            Quant::Calibrate => {
                self.record_amax(x, point);
                Ok(x.to_string())
            }
            _ => Ok(x.to_string()),
        }
    }

    /// Linear on 3-D `x` `[B, S, in]` → `[B, S, out]`.
    fn linear3(&mut self, x: &str, module: &str) -> R<String> {
        let m = self.slots.module(module)?.clone();
        let x2 = self.flat(x, m.in_features);
        let y = self.linear2(&x2, module)?;
        Ok(self.unflat(&y, m.out_features))
    }

    // ---------- elementwise helpers ----------

    fn silu(&mut self, x: &str) -> String {
        let s = self.g.op("Sigmoid", &[x], vec![]);
        self.g.op("Mul", &[x, &s], vec![])
    }

    fn gelu_tanh(&mut self, x: &str) -> String {
        self.g.op("Gelu", &[x], vec![attr_str("approximate", "tanh")])
    }

    /// LayerNorm over the last axis, no affine, eps 1e-6.
    fn layer_norm(&mut self, x: &str) -> String {
        let (ones, zeros) = match &self.ln_params {
            Some(p) => p.clone(),
            None => {
                let h = self.cfg.hidden_size;
                let p = (self.g.floats(&[h], &vec![1.0; h], false), self.g.floats(&[h], &vec![0.0; h], false));
                self.ln_params = Some(p.clone());
                p
            }
        };
        self.g.op("LayerNormalization", &[x, &ones, &zeros], vec![attr_int("axis", -1), attr_float("epsilon", EPS)])
    }

    /// `x·(1 + scale) + shift`, `scale`/`shift` `[B, 1, H]`.
    fn modulate(&mut self, x: &str, shift: &str, scale: &str) -> String {
        let one = self.g.scalar(1.0);
        let s1 = self.g.op("Add", &[scale, &one], vec![]);
        let m = self.g.op("Mul", &[x, &s1], vec![]);
        self.g.op("Add", &[&m, shift], vec![])
    }

    /// `Linear(SiLU(temb))` chunked into `n` pieces of `[B, 1, H]` (diffusers chunk order).
    fn modulation(&mut self, silu_temb: &str, module: &str, n: usize) -> R<Vec<String>> {
        let y = self.linear2(silu_temb, module)?;
        let h = self.cfg.hidden_size as i64;
        let split = self.g.i64s(&vec![h; n]);
        let axes = self.g.i64s(&[1]);
        let parts = self.g.op_n("Split", &[&y, &split], vec![attr_int("axis", 1)], n);
        Ok(parts.iter().map(|p| self.g.op("Unsqueeze", &[p, &axes], vec![])).collect())
    }

    /// RMSNorm over the last axis in f32 (eps 1e-6), times the learned scale, diffusers order.
    fn rms_norm(&mut self, x: &str, weight: &str) -> R<String> {
        let hd = self.cfg.head_dim;
        let w = self.weight(weight, &[hd])?;
        let xf = self.g.to_f32(x);
        let sq = self.g.op("Mul", &[&xf, &xf], vec![]);
        let axes = self.g.i64s(&[-1]);
        let ms = self.g.op("ReduceMean", &[&sq, &axes], vec![attr_int("keepdims", 1)]);
        let eps = self.g.floats(&[], &[EPS], true);
        let v = self.g.op("Add", &[&ms, &eps], vec![]);
        let r = self.g.op("Sqrt", &[&v], vec![]);
        let n = self.g.op("Div", &[&xf, &r], vec![]);
        let n = self.g.to_compute(&n);
        Ok(self.g.op("Mul", &[&n, &w], vec![]))
    }

    /// `[B·S, H]` → `[B, heads, S, D]`.
    fn split_heads(&mut self, x2: &str) -> String {
        let s = self.bshape(&[-1, self.cfg.num_heads as i64, self.cfg.head_dim as i64]);
        let r = self.g.op("Reshape", &[x2, &s], vec![]);
        self.g.op("Transpose", &[&r], vec![attr_ints("perm", &[0, 2, 1, 3])])
    }

    /// Interleaved-pair RoPE on `[B, heads, S, D]`, computed in f32 like diffusers.
    fn rope(&mut self, x: &str) -> String {
        let xf = self.g.to_f32(x);
        let s5 = self.g.i64s(&[0, 0, 0, -1, 2]);
        let x5 = self.g.op("Reshape", &[&xf, &s5], vec![]);
        let ones = self.g.i64s(&[1, 1]);
        let p = self.g.op_n("Split", &[&x5, &ones], vec![attr_int("axis", -1)], 2);
        let (c, s) = (self.rope_cos.clone(), self.rope_sin.clone());
        let x0c = self.g.op("Mul", &[&p[0], &c], vec![]);
        let x1s = self.g.op("Mul", &[&p[1], &s], vec![]);
        let o0 = self.g.op("Sub", &[&x0c, &x1s], vec![]);
        let x1c = self.g.op("Mul", &[&p[1], &c], vec![]);
        let x0s = self.g.op("Mul", &[&p[0], &s], vec![]);
        let o1 = self.g.op("Add", &[&x1c, &x0s], vec![]);
        let o = self.g.op("Concat", &[&o0, &o1], vec![attr_int("axis", -1)]);
        let s4 = self.g.i64s(&[0, 0, 0, -1]);
        let o = self.g.op("Reshape", &[&o, &s4], vec![]);
        self.g.to_compute(&o)
    }

    /// ONNX `Attention` (opset 23) on `[B, heads, S, D]`, merged back to `[B, S, H]`.
    /// `block` names the FP8 attention points `<block>.attn.q|k|v`.
    fn attention(&mut self, block: &str, q: &str, k: &str, v: &str) -> R<String> {
        let scale = 1.0 / (self.cfg.head_dim as f32).sqrt();
        let q = self.attn_input(q, &format!("{block}.attn.q"))?;
        let k = self.attn_input(k, &format!("{block}.attn.k"))?;
        let v = self.attn_input(v, &format!("{block}.attn.v"))?;
        let y = self.g.op("Attention", &[&q, &k, &v], vec![attr_float("scale", scale)]);
        let t = self.g.op("Transpose", &[&y], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let s = self.g.i64s(&[0, 0, -1]);
        Ok(self.g.op("Reshape", &[&t, &s], vec![]))
    }

    /// Splits a fused `[B·S, n·H]` projection output into per-head q, k, v (and the rest).
    fn split_cols(&mut self, y2: &str, sizes: &[usize]) -> Vec<String> {
        let s: Vec<i64> = sizes.iter().map(|x| *x as i64).collect();
        let split = self.g.i64s(&s);
        self.g.op_n("Split", &[y2, &split], vec![attr_int("axis", 1)], sizes.len())
    }

    fn fp16_clip(&mut self, x: &str) -> String {
        if self.g.dtype != crate::tensor::DType::F16 {
            return x.to_string();
        }
        let lo = self.g.scalar(-65504.0);
        let hi = self.g.scalar(65504.0);
        self.g.op("Clip", &[x, &lo, &hi], vec![])
    }

    // ---------- blocks ----------

    fn sinusoid(&mut self, t: &str) -> String {
        // diffusers get_timestep_embedding(flip_sin_to_cos=True, shift 0), f32 throughout
        let half = TIME_EMBED_DIM / 2;
        let k = -(10000f64.ln() as f32);
        let freqs: Vec<f32> = (0..half).map(|i| (k * i as f32 / half as f32).exp()).collect();
        let thousand = self.g.floats(&[], &[1000.0], true);
        let t = self.g.op("Mul", &[t, &thousand], vec![]);
        let axes = self.g.i64s(&[1]);
        let t = self.g.op("Unsqueeze", &[&t, &axes], vec![]);
        let f = self.g.floats(&[1, half], &freqs, true);
        let a = self.g.op("Mul", &[&t, &f], vec![]);
        let c = self.g.op("Cos", &[&a], vec![]);
        let s = self.g.op("Sin", &[&a], vec![]);
        let e = self.g.op("Concat", &[&c, &s], vec![attr_int("axis", 1)]);
        self.g.to_compute(&e)
    }

    fn mlp_embed(&mut self, x: &str, prefix: &str) -> R<String> {
        let h = self.linear2(x, &format!("{prefix}.linear_1"))?;
        let h = self.silu(&h);
        self.linear2(&h, &format!("{prefix}.linear_2"))
    }

    fn double_block(&mut self, i: usize, img: &str, txt: &str, silu_temb: &str) -> R<(String, String)> {
        let p = format!("transformer_blocks.{i}");
        let h = self.cfg.hidden_size;
        let groups = self.cfg.fused_groups();
        let find = |n: &str| groups.iter().find(|g| g.name == n).cloned();
        let gi = find(&format!("{p}.attn.qkv")).ok_or_else(|| OnnxError::BadSlot { module: format!("{p}.attn.qkv"), detail: "no fused group".into() })?;
        let gt =
            find(&format!("{p}.attn.add_qkv")).ok_or_else(|| OnnxError::BadSlot { module: format!("{p}.attn.add_qkv"), detail: "no fused group".into() })?;

        let im = self.modulation(silu_temb, &format!("{p}.norm1.linear"), 6)?;
        let tm = self.modulation(silu_temb, &format!("{p}.norm1_context.linear"), 6)?;
        let ln = self.layer_norm(img);
        let img_n = self.modulate(&ln, &im[0], &im[1]);
        let ln = self.layer_norm(txt);
        let txt_n = self.modulate(&ln, &tm[0], &tm[1]);

        let x2 = self.flat(&img_n, h);
        let y = self.fused2(&x2, &gi)?;
        let qkv = self.split_cols(&y, &[h, h, h]);
        let iq = self.split_heads(&qkv[0]);
        let ik = self.split_heads(&qkv[1]);
        let iv = self.split_heads(&qkv[2]);
        let iq = self.rms_norm(&iq, &format!("{p}.attn.norm_q.weight"))?;
        let ik = self.rms_norm(&ik, &format!("{p}.attn.norm_k.weight"))?;

        let c2 = self.flat(&txt_n, h);
        let y = self.fused2(&c2, &gt)?;
        let qkv = self.split_cols(&y, &[h, h, h]);
        let tq = self.split_heads(&qkv[0]);
        let tk = self.split_heads(&qkv[1]);
        let tv = self.split_heads(&qkv[2]);
        let tq = self.rms_norm(&tq, &format!("{p}.attn.norm_added_q.weight"))?;
        let tk = self.rms_norm(&tk, &format!("{p}.attn.norm_added_k.weight"))?;

        let ax2 = vec![attr_int("axis", 2)];
        let q = self.g.op("Concat", &[&tq, &iq], ax2.clone());
        let k = self.g.op("Concat", &[&tk, &ik], ax2.clone());
        let v = self.g.op("Concat", &[&tv, &iv], ax2);
        let q = self.rope(&q);
        let k = self.rope(&k);
        let a = self.attention(&p, &q, &k, &v)?;
        let split = self.seq_split.clone();
        let parts = self.g.op_n("Split", &[&a, &split], vec![attr_int("axis", 1)], 2);

        let img_a = self.linear3(&parts[1], &format!("{p}.attn.to_out.0"))?;
        let txt_a = self.linear3(&parts[0], &format!("{p}.attn.to_add_out"))?;

        let img = self.gated_residual(img, &im[2], &img_a);
        let ln = self.layer_norm(&img);
        let n = self.modulate(&ln, &im[3], &im[4]);
        let f = self.feed_forward(&n, &format!("{p}.ff"))?;
        let img = self.gated_residual(&img, &im[5], &f);

        let txt = self.gated_residual(txt, &tm[2], &txt_a);
        let ln = self.layer_norm(&txt);
        let n = self.modulate(&ln, &tm[3], &tm[4]);
        let f = self.feed_forward(&n, &format!("{p}.ff_context"))?;
        let txt = self.gated_residual(&txt, &tm[5], &f);
        let txt = self.fp16_clip(&txt);
        Ok((img, txt))
    }

    fn gated_residual(&mut self, x: &str, gate: &str, y: &str) -> String {
        let gy = self.g.op("Mul", &[gate, y], vec![]);
        self.g.op("Add", &[x, &gy], vec![])
    }

    fn feed_forward(&mut self, x: &str, prefix: &str) -> R<String> {
        let h = self.linear3(x, &format!("{prefix}.net.0.proj"))?;
        let h = self.gelu_tanh(&h);
        self.linear3(&h, &format!("{prefix}.net.2"))
    }

    fn single_block(&mut self, i: usize, x: &str, silu_temb: &str) -> R<String> {
        let p = format!("single_transformer_blocks.{i}");
        let (h, m) = (self.cfg.hidden_size, self.cfg.mlp_hidden);
        let group = self
            .cfg
            .fused_groups()
            .into_iter()
            .find(|g| g.name == format!("{p}.linear1"))
            .ok_or_else(|| OnnxError::BadSlot { module: format!("{p}.linear1"), detail: "no fused group".into() })?;
        let md = self.modulation(silu_temb, &format!("{p}.norm.linear"), 3)?;
        let ln = self.layer_norm(x);
        let n = self.modulate(&ln, &md[0], &md[1]);
        let x2 = self.flat(&n, h);
        let y = self.fused2(&x2, &group)?;
        let parts = self.split_cols(&y, &[h, h, h, m]);
        let q = self.split_heads(&parts[0]);
        let k = self.split_heads(&parts[1]);
        let v = self.split_heads(&parts[2]);
        let q = self.rms_norm(&q, &format!("{p}.attn.norm_q.weight"))?;
        let k = self.rms_norm(&k, &format!("{p}.attn.norm_k.weight"))?;
        let q = self.rope(&q);
        let k = self.rope(&k);
        let a = self.attention(&p, &q, &k, &v)?;
        let mlp = self.gelu_tanh(&parts[3]);
        let mlp = self.unflat(&mlp, m);
        let cat = self.g.op("Concat", &[&a, &mlp], vec![attr_int("axis", 2)]);
        let o = self.linear3(&cat, &format!("{p}.proj_out"))?;
        let out = self.gated_residual(x, &md[2], &o);
        Ok(self.fp16_clip(&out))
    }
}

/// Builds the whole transformer into `g` (inputs, slots, nodes, outputs).
pub fn build<'a>(g: Graph<'a>, ckpt: &'a Checkpoint, plan: &SlotPlan, quant: Quant) -> Result<Graph<'a>, OnnxError> {
    use super::proto::{value_info, Dim, FLOAT};
    let cfg = ckpt.config().clone();
    let mut inputs = vec![
        value_info("hidden_states", FLOAT, &[Dim::Named("batch"), Dim::Named("img_seq"), Dim::Fixed(cfg.in_channels)]),
        value_info("encoder_hidden_states", FLOAT, &[Dim::Named("batch"), Dim::Named("txt_seq"), Dim::Fixed(cfg.context_dim)]),
        value_info("pooled_projections", FLOAT, &[Dim::Named("batch"), Dim::Fixed(cfg.pooled_dim)]),
        value_info("timestep", FLOAT, &[Dim::Named("batch")]),
    ];
    if cfg.variant.has_guidance() {
        inputs.push(value_info("guidance", FLOAT, &[Dim::Named("batch")]));
    }
    let half = cfg.head_dim / 2;
    inputs.push(value_info("rope_cos", FLOAT, &[Dim::Named("joint_seq"), Dim::Fixed(half)]));
    inputs.push(value_info("rope_sin", FLOAT, &[Dim::Named("joint_seq"), Dim::Fixed(half)]));

    let mut g = g;
    g.inputs = inputs;
    let mut f = Flux::new(g, ckpt, plan, quant)?;
    let hid = "hidden_states";
    f.batch = f.g.scoped("shape", |g| g.op("Shape", &[hid], vec![attr_int("start", 0), attr_int("end", 1)]));
    f.seq_split = f.g.scoped("shape", |g| {
        let st = g.op("Shape", &["encoder_hidden_states"], vec![attr_int("start", 1), attr_int("end", 2)]);
        let si = g.op("Shape", &[hid], vec![attr_int("start", 1), attr_int("end", 2)]);
        g.op("Concat", &[&st, &si], vec![attr_int("axis", 0)])
    });
    let (c, s) = f.g.scoped("rope", |g| {
        let axes = g.i64s(&[-1]);
        (g.op("Unsqueeze", &["rope_cos", &axes], vec![]), g.op("Unsqueeze", &["rope_sin", &axes], vec![]))
    });
    f.rope_cos = c;
    f.rope_sin = s;

    // embeddings
    let x = f.g.to_compute("hidden_states");
    let img = f.linear3(&x, "x_embedder")?;
    let ctx = f.g.to_compute("encoder_hidden_states");
    let txt = f.linear3(&ctx, "context_embedder")?;
    let te = f.sinusoid("timestep");
    let mut temb = f.mlp_embed(&te, "time_text_embed.timestep_embedder")?;
    if cfg.variant.has_guidance() {
        let ge = f.sinusoid("guidance");
        let gemb = f.mlp_embed(&ge, "time_text_embed.guidance_embedder")?;
        temb = f.g.op("Add", &[&temb, &gemb], vec![]);
    }
    let pooled = f.g.to_compute("pooled_projections");
    let pemb = f.mlp_embed(&pooled, "time_text_embed.text_embedder")?;
    let temb = f.g.op("Add", &[&temb, &pemb], vec![]);
    let silu_temb = f.silu(&temb);

    let (mut img, mut txt) = (img, txt);
    for i in 0..cfg.num_double_blocks {
        let (a, b) = f.double_block(i, &img, &txt, &silu_temb)?;
        img = a;
        txt = b;
    }
    let mut x = f.g.op("Concat", &[&txt, &img], vec![attr_int("axis", 1)]);
    for i in 0..cfg.num_single_blocks {
        x = f.single_block(i, &x, &silu_temb)?;
    }
    let split = f.seq_split.clone();
    let parts = f.g.op_n("Split", &[&x, &split], vec![attr_int("axis", 1)], 2);
    let img = parts[1].clone();

    // final layer: AdaLayerNormContinuous (scale, shift) then proj_out
    let md = f.modulation(&silu_temb, "norm_out.linear", 2)?;
    let ln = f.layer_norm(&img);
    let n = f.modulate(&ln, &md[1], &md[0]);
    let out = f.linear3(&n, "proj_out")?;
    if f.g.dtype == crate::tensor::DType::F32 {
        f.g.op_named("Identity", &[&out], vec![], "sample");
    } else {
        f.g.op_named("Cast", &[&out], vec![attr_int("to", FLOAT as i64)], "sample");
    }
    f.g.outputs.push(value_info("sample", FLOAT, &[Dim::Named("batch"), Dim::Named("img_seq"), Dim::Fixed(cfg.out_channels)]));
    Ok(f.g)
}

/// `v` as stored in `dtype` (round to nearest even), back in f32.
fn round_to(dtype: crate::tensor::DType, v: f32) -> f32 {
    let mut b = Vec::new();
    crate::tensor::encode_into(dtype, &[v], &mut b);
    let mut out = Vec::new();
    crate::tensor::decode_into(dtype, &b, &mut out);
    out[0]
}

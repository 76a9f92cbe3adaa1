//! The FLUX transformer's forward pass (diffusers `FluxTransformer2DModel`, op for op as the
//! exported ONNX graph computes it), enqueued on the session's stream: cuBLASLt GEMMs with bias /
//! GELU epilogues, LoRA slots accumulated into the base GEMM outputs, the fused kernels, and the
//! attention. Every buffer has a fixed address (weights, slot buffer, arena), so one call can be
//! captured as a CUDA graph and replayed.

use std::collections::HashMap;

use super::attention::Attention;
use super::device::Gpu;
use super::gemm::{Gemm, Lt};
use super::kernels::{Joint, Kernels, Streams};
use super::plan::{Arena, SlotLayout};
use super::weights::DeviceWeights;
use super::CudaError;
use crate::flux::{FluxConfig, TIME_EMBED_DIM};
use crate::tensor::DType;

/// Which rows of the joint `[B, S_tot, ·]` layout a GEMM covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    All,
    Txt,
    Img,
}

/// An operand over joint rows: base address, row stride (elements) and column offset (elements).
#[derive(Clone, Copy, Debug)]
struct Mat {
    base: u64,
    ld: usize,
    col: usize,
}

pub struct Model {
    pub cfg: FluxConfig,
    pub dtype: DType,
    pub weights: DeviceWeights,
    pub kernels: Kernels,
    pub lt: Lt,
    pub slots: SlotLayout,
    /// module → slot index.
    slot_of: HashMap<String, usize>,
    /// Device address of the fixed slot buffer the forward pass reads.
    pub slot_base: u64,
    pub slot_features: Vec<(usize, usize)>,
    /// Benchmarks only: leave parts out of eager timing runs ([`SKIP_ATTENTION`], [`SKIP_LORA`]).
    pub skip: std::sync::atomic::AtomicU32,
}

pub const SKIP_ATTENTION: u32 = 1;
pub const SKIP_LORA: u32 = 2;

impl Model {
    pub fn new(
        cfg: FluxConfig,
        weights: DeviceWeights,
        kernels: Kernels,
        lt: Lt,
        slots: SlotLayout,
        manifest_slots: &crate::manifest::LoraSlots,
        slot_base: u64,
    ) -> Self {
        let slot_of = manifest_slots.slots.iter().enumerate().map(|(i, s)| (s.module.clone(), i)).collect();
        let slot_features = manifest_slots.slots.iter().map(|s| (s.in_features, s.out_features)).collect();
        let dtype = weights.map.dtype;
        Model { cfg, dtype, weights, kernels, lt, slots, slot_of, slot_base, slot_features, skip: Default::default() }
    }

    fn e(&self) -> u64 {
        self.dtype.size() as u64
    }

    fn w(&self, name: &str) -> Result<u64, CudaError> {
        self.weights.ptr(name)
    }

    /// (row offset, rows per batch entry, batch entries, rows between entries).
    fn rows(&self, j: Joint, r: Rows) -> (usize, usize, usize, usize) {
        let s_img = j.s_tot - j.s_txt;
        let (off, len) = match r {
            Rows::All => return (0, j.rows(), 1, 0),
            Rows::Txt => (0, j.s_txt),
            Rows::Img => (j.s_txt, s_img),
        };
        if j.batch == 1 {
            (off, len, 1, 0)
        } else {
            (off, len, j.batch, j.s_tot)
        }
    }

    /// One GEMM `y[rows] (+)= x[rows] · W[n, k]ᵀ` over `r` rows of joint operands.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        gpu: &Gpu,
        j: Joint,
        r: Rows,
        x: Mat,
        w: (u64, usize),
        n: usize,
        k: usize,
        y: Mat,
        bias: Option<(u64, bool)>,
        acc: bool,
    ) -> Result<(), CudaError> {
        let (off, m, batch, stride_rows) = self.rows(j, r);
        if m == 0 {
            return Ok(());
        }
        let xp = x.base + ((off * x.ld + x.col) as u64) * self.e();
        let yp = y.base + ((off * y.ld + y.col) as u64) * self.e();
        let mut g = Gemm::new(m, n, k, xp, w.0, yp).strides(x.ld, w.1, y.ld).batched(batch, stride_rows * x.ld, stride_rows * y.ld);
        if let Some((b, gelu)) = bias {
            g = g.bias(b, gelu);
        }
        if acc {
            g = g.accumulate();
        }
        self.lt.run(gpu, &g)
    }

    /// LoRA of `module` (if it has a slot): `y[:, cols] += (x·Aᵀ)·Bᵀ` through the arena's rank buffer.
    /// `xs` is the input as column segments `(operand, width)` (split-K for concatenated inputs).
    #[allow(clippy::too_many_arguments)]
    fn lora(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, module: &str, xs: &[(Mat, usize)], y: Mat) -> Result<bool, CudaError> {
        let Some(&i) = self.slot_of.get(module) else { return Ok(false) };
        if self.skip.load(std::sync::atomic::Ordering::Relaxed) & SKIP_LORA != 0 {
            return Ok(true);
        }
        let (ao, bo) = self.slots.offsets[i];
        let (in_f, out_f) = self.slot_features[i];
        let rank = self.slots.max_rank;
        let t = Mat { base: base + a.lora as u64, ld: rank, col: 0 };
        let mut col = 0;
        for (seg, (x, width)) in xs.iter().enumerate() {
            let ap = self.slot_base + ao as u64 + (col as u64) * self.e();
            self.gemm(gpu, j, r, *x, (ap, in_f), rank, *width, t, None, seg > 0)?;
            col += width;
        }
        debug_assert_eq!(col, in_f);
        let bp = self.slot_base + bo as u64;
        self.gemm(gpu, j, r, t, (bp, rank), out_f, rank, y, None, true)?;
        Ok(true)
    }

    /// The LoRA of several same-shaped members of a fused group (q, k, v) as two strided-batched
    /// GEMMs (`T[i] = x·A[i]ᵀ` into the arena's `tmp`, then `y[:, cols i] += T[i]·B[i]ᵀ`) instead of
    /// two per member. Returns false (nothing done) when the group does not fit that form: a member
    /// without a slot, different shapes, slot offsets not evenly spaced, batch > 1 on a stream's rows.
    #[allow(clippy::too_many_arguments)]
    fn lora_group(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, members: &[&str], x: Mat, y: Mat) -> Result<bool, CudaError> {
        let Some(idx) = members.iter().map(|m| self.slot_of.get(*m).copied()).collect::<Option<Vec<usize>>>() else { return Ok(false) };
        let n = idx.len();
        let (off, m, batch, _) = self.rows(j, r);
        let rank = self.slots.max_rank;
        if n < 2 || batch != 1 || m == 0 || n * rank > self.cfg.hidden_size {
            return Ok(false);
        }
        let (in_f, out_f) = self.slot_features[idx[0]];
        if idx.iter().any(|i| self.slot_features[*i] != (in_f, out_f)) {
            return Ok(false);
        }
        let e = self.e() as usize;
        let even = |o: &dyn Fn(usize) -> usize| -> Option<usize> {
            let d = o(idx[1]).checked_sub(o(idx[0]))?;
            (idx.windows(2).all(|w| o(w[1]).checked_sub(o(w[0])) == Some(d)) && d.is_multiple_of(e)).then_some(d / e)
        };
        let (Some(da), Some(db)) = (even(&|i| self.slots.offsets[i].0), even(&|i| self.slots.offsets[i].1)) else { return Ok(false) };
        if self.skip.load(std::sync::atomic::Ordering::Relaxed) & SKIP_LORA != 0 {
            return Ok(true);
        }
        let e = e as u64;
        let t = base + a.tmp as u64;
        let xp = x.base + ((off * x.ld + x.col) as u64) * e;
        let (ap, bp) = (self.slot_base + self.slots.offsets[idx[0]].0 as u64, self.slot_base + self.slots.offsets[idx[0]].1 as u64);
        self.lt.run(gpu, &Gemm::new(m, rank, in_f, xp, ap, t).strides(x.ld, in_f, rank).batched(n, 0, m * rank).weight_stride(da))?;
        let yp = y.base + ((off * y.ld + y.col) as u64) * e;
        self.lt.run(gpu, &Gemm::new(m, out_f, rank, t, bp, yp).strides(rank, rank, y.ld).batched(n, m * rank, out_f).weight_stride(db).accumulate())?;
        Ok(true)
    }

    /// A Linear module (not fused): `y = x·Wᵀ + b (+ LoRA)`, GELU fused when asked and possible;
    /// returns whether GELU still has to be applied.
    #[allow(clippy::too_many_arguments)]
    fn linear(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, module: &str, x: Mat, y: Mat, gelu: bool) -> Result<bool, CudaError> {
        let lm = self
            .cfg
            .linear_module(module)
            .ok_or_else(|| CudaError::Engine { path: self.weights.map.dir.clone(), message: format!("no Linear `{module}` in the model config") })?;
        let has_slot = self.slot_of.contains_key(module);
        let w = self.w(&format!("{module}.weight"))?;
        let b = self.w(&format!("{module}.bias"))?;
        let fuse = gelu && !has_slot;
        self.gemm(gpu, j, r, x, (w, lm.in_features), lm.out_features, lm.in_features, y, Some((b, fuse)), false)?;
        self.lora(gpu, a, base, j, r, module, &[(x, lm.in_features)], y)?;
        Ok(gelu && !fuse)
    }

    /// A fused group `<group>.weight` (q|k|v[|mlp]) into `y`, the members' LoRA on their column ranges.
    #[allow(clippy::too_many_arguments)]
    fn fused(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, group: &str, members: &[&str], x: Mat, y: Mat) -> Result<(), CudaError> {
        let wb = (self.w(&format!("{group}.weight"))?, self.w(&format!("{group}.bias"))?);
        self.fused_rows(gpu, a, base, j, r, wb, members, x, y)
    }

    /// The first rows of a fused group's weight `(w, bias)` (the members' outputs, in order) into
    /// `y`, the members' LoRA on their column ranges.
    #[allow(clippy::too_many_arguments)]
    fn fused_rows(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, (w, bias): (u64, u64), members: &[&str], x: Mat, y: Mat) -> Result<(), CudaError> {
        let mods: Vec<_> = members.iter().filter_map(|m| self.cfg.linear_module(m)).collect();
        let out: usize = mods.iter().map(|m| m.out_features).sum();
        let k = self.cfg.hidden_size;
        self.gemm(gpu, j, r, x, (w, k), out, k, y, Some((bias, false)), false)?;
        if self.lora_group(gpu, a, base, j, r, members, x, y)? {
            return Ok(());
        }
        let mut col = y.col;
        for m in &mods {
            self.lora(gpu, a, base, j, r, &m.name, &[(x, k)], Mat { col, ..y })?;
            col += m.out_features;
        }
        Ok(())
    }

    /// Modulation `Linear(SiLU(temb))` → `[B, n·H]` at `dst`.
    fn modulation(&self, gpu: &Gpu, a: &Arena, base: u64, b: usize, module: &str, dst: usize) -> Result<(), CudaError> {
        let j1 = Joint { batch: 1, s_tot: b, s_txt: 0 };
        let lm = self.cfg.linear_module(module).ok_or_else(|| CudaError::Engine { path: self.weights.map.dir.clone(), message: format!("no `{module}`") })?;
        let x = Mat { base: base + a.silu_temb as u64, ld: self.cfg.hidden_size, col: 0 };
        let y = Mat { base: base + dst as u64, ld: lm.out_features, col: 0 };
        self.linear(gpu, a, base, j1, Rows::All, module, x, y, false)?;
        Ok(())
    }

    /// One transformer call on the arena's inputs (latents, timestep, guidance, encoder states,
    /// pooled, RoPE tables, freqs) → `out_f32`. Enqueued only; capturable.
    pub fn forward(&self, gpu: &Gpu, a: &Arena, base: u64, attn: &Attention, attn_ws: u64) -> Result<(), CudaError> {
        let cfg = &self.cfg;
        let (h, m, heads, d) = (cfg.hidden_size, cfg.mlp_hidden, cfg.num_heads, cfg.head_dim);
        let s = a.shape;
        let b = s.batch;
        let j = Joint { batch: b, s_tot: s.s_tot(), s_txt: s.s_txt };
        let p = |off: usize| base + off as u64;
        let e = self.e();
        let k = &self.kernels;
        let f16 = self.dtype == DType::F16;

        // inputs to the compute dtype
        k.from_f32(gpu, p(a.latents), p(a.latents_t), b * s.s_img * cfg.in_channels)?;
        k.from_f32(gpu, p(a.encoder), p(a.encoder_t), b * s.s_txt * cfg.context_dim)?;
        k.from_f32(gpu, p(a.pooled), p(a.pooled_t), b * cfg.pooled_dim)?;

        // embedders: image tokens → hidden's image rows, text tokens → its text rows
        let hid = Mat { base: p(a.hidden), ld: h, col: 0 };
        let img_in = Joint { batch: 1, s_tot: s.s_img, s_txt: 0 };
        let hid_img = Mat { base: p(a.hidden) + (s.s_txt * h) as u64 * e, ..hid };
        // per sample: latents [S_img, in] → hidden rows [S_txt.., H]; batch strides differ, so one GEMM per sample when B > 1
        for bi in 0..b {
            let xi = Mat { base: p(a.latents_t) + (bi * s.s_img * cfg.in_channels) as u64 * e, ld: cfg.in_channels, col: 0 };
            let yi = Mat { base: hid_img.base + (bi * s.s_tot() * h) as u64 * e, ..hid };
            self.linear(gpu, a, base, img_in, Rows::All, "x_embedder", xi, yi, false)?;
            let xt = Mat { base: p(a.encoder_t) + (bi * s.s_txt * cfg.context_dim) as u64 * e, ld: cfg.context_dim, col: 0 };
            let yt = Mat { base: p(a.hidden) + (bi * s.s_tot() * h) as u64 * e, ..hid };
            let jt = Joint { batch: 1, s_tot: s.s_txt, s_txt: 0 };
            self.linear(gpu, a, base, jt, Rows::All, "context_embedder", xt, yt, false)?;
        }

        // time / guidance / pooled embeddings → SiLU(temb)
        let vec1 = Joint { batch: 1, s_tot: b, s_txt: 0 };
        let half = TIME_EMBED_DIM / 2;
        let mlp_embed = |x: Mat, prefix: &str, dst: usize| -> Result<(), CudaError> {
            let hh = Mat { base: p(a.emb_h), ld: h, col: 0 };
            self.linear(gpu, a, base, vec1, Rows::All, &format!("{prefix}.linear_1"), x, hh, false)?;
            k.silu(gpu, p(a.emb_h), b * h)?;
            self.linear(gpu, a, base, vec1, Rows::All, &format!("{prefix}.linear_2"), hh, Mat { base: p(dst), ld: h, col: 0 }, false)?;
            Ok(())
        };
        let tp = Mat { base: p(a.tproj), ld: TIME_EMBED_DIM, col: 0 };
        k.time_embed(gpu, p(a.timestep), p(a.freqs), p(a.tproj), b, half)?;
        mlp_embed(tp, "time_text_embed.timestep_embedder", a.emb[0])?;
        let pooled = Mat { base: p(a.pooled_t), ld: cfg.pooled_dim, col: 0 };
        if cfg.variant.has_guidance() {
            k.time_embed(gpu, p(a.guidance), p(a.freqs), p(a.tproj), b, half)?;
            mlp_embed(tp, "time_text_embed.guidance_embedder", a.emb[1])?;
            mlp_embed(pooled, "time_text_embed.text_embedder", a.emb[2])?;
            k.add_silu(gpu, p(a.emb[0]), p(a.emb[1]), p(a.emb[2]), p(a.silu_temb), b * h)?;
        } else {
            mlp_embed(pooled, "time_text_embed.text_embedder", a.emb[2])?;
            k.add_silu(gpu, p(a.emb[0]), p(a.emb[2]), 0, p(a.silu_temb), b * h)?;
        }

        let normed = Mat { base: p(a.normed), ld: h, col: 0 };
        let tmp = Mat { base: p(a.tmp), ld: h, col: 0 };
        let o = Mat { base: p(a.o), ld: h, col: 0 };
        let rope = (p(a.rope_cos), p(a.rope_sin));
        let qkv = [p(a.q), p(a.k), p(a.v)];
        let chunk = |base_off: usize, i: usize| -> u64 { p(base_off) + (i * h) as u64 * e };

        for i in 0..cfg.num_double_blocks {
            let pre = format!("transformer_blocks.{i}");
            self.modulation(gpu, a, base, b, &format!("{pre}.norm1.linear"), a.mod_img)?;
            self.modulation(gpu, a, base, b, &format!("{pre}.norm1_context.linear"), a.mod_txt)?;
            let st = |c: usize| Streams { txt: chunk(a.mod_txt, c), img: chunk(a.mod_img, c), stride: (6 * h) as i32 };
            k.ln_mod(gpu, p(a.hidden), p(a.normed), h, j, st(0), st(1))?;
            let proj = Mat { base: p(a.proj), ld: 3 * h, col: 0 };
            let at = format!("{pre}.attn");
            let (mi, mt) = (["to_q", "to_k", "to_v"].map(|n| format!("{at}.{n}")), ["add_q_proj", "add_k_proj", "add_v_proj"].map(|n| format!("{at}.{n}")));
            let (mi, mt): (Vec<&str>, Vec<&str>) = (mi.iter().map(String::as_str).collect(), mt.iter().map(String::as_str).collect());
            self.fused(gpu, a, base, j, Rows::Img, &format!("{at}.qkv"), &mi, normed, proj)?;
            self.fused(gpu, a, base, j, Rows::Txt, &format!("{at}.add_qkv"), &mt, normed, proj)?;
            let nq = |n: &str| self.w(&format!("{at}.{n}.weight"));
            k.qk_norm_rope(gpu, proj.base, 3 * h, [0, h, 2 * h], (j.s_txt, s.s_img), j, heads, d, (nq("norm_q")?, nq("norm_k")?), rope, qkv)?;
            k.qk_norm_rope(gpu, proj.base, 3 * h, [0, h, 2 * h], (0, j.s_txt), j, heads, d, (nq("norm_added_q")?, nq("norm_added_k")?), rope, qkv)?;
            // SAFETY: q/k/v/o are [B, S_tot, heads, D] arena buffers of the attention's shape.
            if self.skip.load(std::sync::atomic::Ordering::Relaxed) & SKIP_ATTENTION == 0 {
                unsafe { attn.run(qkv[0], qkv[1], qkv[2], p(a.o), attn_ws)? };
            }
            self.linear(gpu, a, base, j, Rows::Img, &format!("{at}.to_out.0"), o, tmp, false)?;
            self.linear(gpu, a, base, j, Rows::Txt, &format!("{at}.to_add_out"), o, tmp, false)?;
            k.gate_res(gpu, p(a.hidden), p(a.tmp), h, h, j, st(2), (false, false))?;
            k.ln_mod(gpu, p(a.hidden), p(a.normed), h, j, st(3), st(4))?;
            let up = Mat { base: p(a.proj), ld: m, col: 0 };
            let gi = self.linear(gpu, a, base, j, Rows::Img, &format!("{pre}.ff.net.0.proj"), normed, up, true)?;
            let gt = self.linear(gpu, a, base, j, Rows::Txt, &format!("{pre}.ff_context.net.0.proj"), normed, up, true)?;
            if gi || gt {
                // a LoRA'd MLP: GELU after the delta (re-applying it to a fused stream would be wrong)
                if gi && gt {
                    k.gelu_tanh(gpu, up.base, j.rows(), m, m, 0)?;
                } else {
                    let (off, len) = if gi { (j.s_txt, s.s_img) } else { (0, j.s_txt) };
                    for bi in 0..b {
                        k.gelu_tanh(gpu, up.base + ((bi * j.s_tot + off) * m) as u64 * e, len, m, m, 0)?;
                    }
                }
            }
            self.linear(gpu, a, base, j, Rows::Img, &format!("{pre}.ff.net.2"), up, tmp, false)?;
            self.linear(gpu, a, base, j, Rows::Txt, &format!("{pre}.ff_context.net.2"), up, tmp, false)?;
            k.gate_res(gpu, p(a.hidden), p(a.tmp), h, h, j, st(5), (f16, false))?;
        }

        for i in 0..cfg.num_single_blocks {
            let pre = format!("single_transformer_blocks.{i}");
            self.modulation(gpu, a, base, b, &format!("{pre}.norm.linear"), a.mod_img)?;
            let st = |c: usize| Streams { txt: chunk(a.mod_img, c), img: chunk(a.mod_img, c), stride: (3 * h) as i32 };
            k.ln_mod(gpu, p(a.hidden), p(a.normed), h, j, st(0), st(1))?;
            let w1 = 3 * h + m;
            let proj = Mat { base: p(a.proj), ld: w1, col: 0 };
            let at = format!("{pre}.attn");
            let members = [format!("{at}.to_q"), format!("{at}.to_k"), format!("{at}.to_v"), format!("{pre}.proj_mlp")];
            let mref: Vec<&str> = members.iter().map(String::as_str).collect();
            if self.slot_of.contains_key(&members[3]) {
                // a LoRA'd MLP: one GEMM, the deltas, then GELU
                self.fused(gpu, a, base, j, Rows::All, &format!("{pre}.linear1"), &mref, normed, proj)?;
                k.gelu_tanh(gpu, proj.base, j.rows(), m, w1, 3 * h)?;
            } else {
                // q|k|v rows of linear1, then its MLP rows with GELU-tanh + bias in the epilogue
                let (w, bias) = (self.w(&format!("{pre}.linear1.weight"))?, self.w(&format!("{pre}.linear1.bias"))?);
                self.fused_rows(gpu, a, base, j, Rows::All, (w, bias), &mref[..3], normed, proj)?;
                let mlp = Mat { col: 3 * h, ..proj };
                self.gemm(gpu, j, Rows::All, normed, (w + (3 * h * h) as u64 * e, h), m, h, mlp, Some((bias + (3 * h) as u64 * e, true)), false)?;
            }
            let nq = |n: &str| self.w(&format!("{at}.{n}.weight"));
            k.qk_norm_rope(gpu, proj.base, w1, [0, h, 2 * h], (0, j.s_tot), Joint { s_txt: 0, ..j }, heads, d, (nq("norm_q")?, nq("norm_k")?), rope, qkv)?;
            // SAFETY: as above.
            if self.skip.load(std::sync::atomic::Ordering::Relaxed) & SKIP_ATTENTION == 0 {
                unsafe { attn.run(qkv[0], qkv[1], qkv[2], p(a.o), attn_ws)? };
            }
            // proj_out over cat(attn, gelu(mlp)) as two K-segments
            let name = format!("{pre}.proj_out");
            let w2 = self.w(&format!("{name}.weight"))?;
            let b2 = self.w(&format!("{name}.bias"))?;
            let mlp = Mat { col: 3 * h, ..proj };
            // the long segment first: it is autotuned (accumulating GEMMs keep the heuristic's pick)
            self.gemm(gpu, j, Rows::All, mlp, (w2 + h as u64 * e, h + m), h, m, tmp, Some((b2, false)), false)?;
            self.gemm(gpu, j, Rows::All, o, (w2, h + m), h, h, tmp, None, true)?;
            self.lora(gpu, a, base, j, Rows::All, &name, &[(o, h), (mlp, m)], tmp)?;
            k.gate_res(gpu, p(a.hidden), p(a.tmp), h, h, j, st(2), (f16, f16))?;
        }

        // norm_out (AdaLayerNormContinuous: scale, shift) + proj_out on the image rows
        self.modulation(gpu, a, base, b, "norm_out.linear", a.mod_img)?;
        let sc = Streams { txt: chunk(a.mod_img, 0), img: chunk(a.mod_img, 0), stride: (2 * h) as i32 };
        let sh = Streams { txt: chunk(a.mod_img, 1), img: chunk(a.mod_img, 1), stride: (2 * h) as i32 };
        k.ln_mod(gpu, p(a.hidden), p(a.normed), h, j, sh, sc)?;
        let oc = cfg.out_channels;
        for bi in 0..b {
            let xi = Mat { base: p(a.normed) + ((bi * s.s_tot() + s.s_txt) * h) as u64 * e, ld: h, col: 0 };
            let yi = Mat { base: p(a.out_t) + (bi * s.s_img * oc) as u64 * e, ld: oc, col: 0 };
            self.linear(gpu, a, base, img_in, Rows::All, "proj_out", xi, yi, false)?;
        }
        k.to_f32_rows(gpu, p(a.out_t), p(a.out_f32), b, s.s_img, 0, s.s_img, oc)?;
        Ok(())
    }
}

//! The FLUX transformer's forward pass (diffusers `FluxTransformer2DModel`, op for op as the
//! exported ONNX graph computes it), enqueued on the session's stream: cuBLASLt GEMMs with bias /
//! GELU epilogues, LoRA slots accumulated into the base GEMM outputs, the fused kernels, and the
//! attention. Every buffer has a fixed address (weights, slot buffer, arena), so one call can be
//! captured as a CUDA graph and replayed.
//!
//! FP8 engines ([`Fp8Run`]): the quantized GEMMs (see [`super::fp8_plan`]) quantize their bf16
//! input into the arena's E4M3 buffer (static scale from the engine, or dynamic per tensor: amax
//! pass, scale, quantize; all scales in device memory) and run as E4M3 cuBLASLt GEMMs with bf16
//! output and the bias in the epilogue (per-channel weight scales: the column-scaling kernel, see
//! [`super::fp8`]). LoRA slots read the unquantized bf16 input and accumulate into the output as in
//! bf16. GELU-tanh, which the bf16 path fuses into the MLP GEMM's epilogue, is instead fused into
//! the consumer's quantization (`gelu(x)` quantized, never written back) when that consumer has no
//! LoRA slot reading the bf16 input, else applied by the in-place GELU kernel.
//!
//! FP8 attention ([`StepAttention::Fp8`], `CudaOptions::fp8_attention`): the bf16 q, k, v that
//! `qk_norm_rope` writes are quantized per tensor (dynamic scales, on the device) into the arena's
//! E4M3 scratch and cuDNN's FP8 flash attention writes the bf16 `o` the output projections read
//! (see [`super::attention_fp8`]); every other op is unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::attention::Attention;
use super::attention_fp8::Fp8Attention;
use super::device::{DeviceBuffer, Gpu};
use super::fp8::{Fp8Gemm, Fp8Kernels, Fp8Shape, MAX_WORKSPACE};
use super::fp8_plan::{Fp8Layer, Fp8Plan};
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

/// The FP8 side of a model: the plan, its scale buffer, the GEMM plans per shape.
pub struct Fp8Run {
    pub plan: Fp8Plan,
    /// f32 scales ([`Fp8Plan::scales`] layout).
    pub scales: DeviceBuffer,
    kernels: Arc<Fp8Kernels>,
    gemms: Mutex<HashMap<Fp8Shape, Arc<Fp8Gemm>>>,
    workspace: DeviceBuffer,
    /// Dynamic per-tensor activation scales (amax of this call's input) instead of the static ones.
    pub dynamic: bool,
    /// Hopper's fast FP8 accumulation in every GEMM ([`super::CudaOptions::fp8_fast_accum`]).
    pub fast_accum: bool,
}

impl Fp8Run {
    /// Uploads the scales (`opts.fp8_activation_scales` replaces the engine's static activation
    /// scales by GEMM name) and loads the quantization kernels.
    pub fn new(gpu: &Gpu, mut plan: Fp8Plan, opts: &super::CudaOptions) -> Result<Self, CudaError> {
        if let Some(over) = &opts.fp8_activation_scales {
            for (name, l) in plan.layers.iter_mut() {
                let v =
                    *over.get(name).ok_or_else(|| CudaError::Input { tensor: "fp8 activation scales".into(), message: format!("no scale for `{name}`") })?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(CudaError::Input { tensor: "fp8 activation scales".into(), message: format!("`{name}`: scale {v}") });
                }
                l.input_scale = v;
                plan.scales[l.act] = v;
            }
        }
        let scales = gpu.alloc(plan.scale_bytes(), "FP8 scales")?;
        gpu.htod(bytemuck::cast_slice(&plan.scales), scales.ptr(), "FP8 scales")?;
        let kernels = Fp8Kernels::load(&gpu.stream)?;
        let workspace = gpu.alloc(MAX_WORKSPACE, "FP8 GEMM workspace")?;
        gpu.sync("FP8 scales upload")?;
        let (dynamic, fast_accum) = (opts.fp8_activations == super::Fp8Activations::Dynamic, opts.fp8_fast_accum);
        Ok(Fp8Run { plan, scales, kernels, gemms: Mutex::new(HashMap::new()), workspace, dynamic, fast_accum })
    }

    fn scale_ptr(&self, i: usize) -> u64 {
        self.scales.ptr() + (i * 4) as u64
    }

    /// The GEMM plan of `shape` (planned on first use: the first step runs eagerly, before capture).
    fn gemm(&self, lt: &Lt, gpu: &Gpu, shape: Fp8Shape) -> Result<Arc<Fp8Gemm>, CudaError> {
        let mut g = self.gemms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.get(&shape) {
            return Ok(p.clone());
        }
        let p = Arc::new(Fp8Gemm::new(lt.handle(), &gpu.stream, shape)?);
        g.insert(shape, p.clone());
        Ok(p)
    }

    /// Activation scales now in the device buffer, by GEMM name (after a dynamic run: that run's).
    pub fn activation_scales(&self, gpu: &Gpu) -> Result<std::collections::BTreeMap<String, f32>, CudaError> {
        let mut bytes = vec![0u8; self.plan.scales.len() * 4];
        gpu.dtoh(self.scales.ptr(), &mut bytes, "FP8 scales")?;
        let v: &[f32] = bytemuck::cast_slice(&bytes);
        Ok(self.plan.layers.iter().map(|(n, l)| (n.clone(), v[l.act])).collect())
    }

    /// How the per-channel weight scales are applied (one GEMM plan's choice; None before the first step).
    pub fn channel_impl(&self) -> Option<super::fp8::ChannelImpl> {
        self.gemms.lock().unwrap_or_else(|e| e.into_inner()).values().next().map(|g| g.channel_impl())
    }
}

/// The attention of one shape's forward pass.
pub enum StepAttention {
    /// bf16 / fp16 (cuDNN) or fp32 (the NVRTC kernel) on the model's q, k, v.
    Float(Attention),
    /// FP8 (`CudaOptions::fp8_attention`): q, k, v quantized into the arena's
    /// [`super::plan::AttnFp8Arena`] scratch, O back in the model's bf16 `o`.
    Fp8(Fp8Attention),
}

impl StepAttention {
    /// Device workspace the cuDNN plan needs (bytes).
    pub fn workspace_bytes(&self) -> usize {
        match self {
            StepAttention::Float(a) => a.workspace_bytes(),
            StepAttention::Fp8(a) => a.workspace_bytes(),
        }
    }

    /// Description of the engine (logs, benchmarks).
    pub fn engine(&self) -> String {
        match self {
            StepAttention::Float(a) => a.engine(),
            StepAttention::Fp8(a) => format!("FP8 ({:?} O): {}", a.out(), a.engine()),
        }
    }

    /// # Safety
    /// q, k, v, o are the arena's `[B, S, H, D]` buffers of the attention's shape; `ws` holds
    /// [`Self::workspace_bytes`].
    unsafe fn run(&self, a: &Arena, base: u64, [q, k, v]: [u64; 3], o: u64, ws: u64) -> Result<(), CudaError> {
        match self {
            StepAttention::Float(att) => att.run(q, k, v, o, ws),
            StepAttention::Fp8(att) => {
                let f = a.attn_fp8.as_ref().ok_or_else(|| CudaError::Input {
                    tensor: "fp8 attention".into(),
                    message: "the activation arena was planned without the FP8 attention scratch".into(),
                })?;
                att.run(q, k, v, o, &f.scratch(base), ws)
            }
        }
    }
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
    /// Benchmarks only: leave parts out of eager timing runs ([`SKIP_ATTENTION`], [`SKIP_LORA`], [`SKIP_QUANT`]).
    pub skip: std::sync::atomic::AtomicU32,
    /// FP8 engines: the quantized GEMMs.
    pub fp8: Option<Fp8Run>,
}

pub const SKIP_ATTENTION: u32 = 1;
pub const SKIP_LORA: u32 = 2;
/// The FP8 activation quantization (amax, scale, quantize kernels).
pub const SKIP_QUANT: u32 = 8;

impl Model {
    pub fn new(
        cfg: FluxConfig,
        weights: DeviceWeights,
        kernels: Kernels,
        lt: Lt,
        slots: SlotLayout,
        manifest_slots: &crate::manifest::LoraSlots,
        slot_base: u64,
        fp8: Option<Fp8Run>,
    ) -> Self {
        let slot_of = manifest_slots.slots.iter().enumerate().map(|(i, s)| (s.module.clone(), i)).collect();
        let slot_features = manifest_slots.slots.iter().map(|s| (s.in_features, s.out_features)).collect();
        let dtype = weights.map.dtype;
        Model { cfg, dtype, weights, kernels, lt, slots, slot_of, slot_base, slot_features, skip: Default::default(), fp8 }
    }

    /// The FP8 plan of GEMM `name` (a module or fused group), if it is quantized in this engine.
    fn fp8_layer(&self, name: &str) -> Option<(&Fp8Run, &Fp8Layer)> {
        let f = self.fp8.as_ref()?;
        f.plan.layers.get(name).map(|l| (f, l))
    }

    /// Whether the FP8 GEMM `consumer` applies GELU-tanh to its input while quantizing it: it is
    /// FP8 and no LoRA slot reads its (bf16) input.
    fn fuses_gelu(&self, consumer: &str) -> bool {
        self.fp8_layer(consumer).is_some() && !self.slot_of.contains_key(consumer)
    }

    /// FP8 GEMM `name`: `y[rows] = (q(x) · Wᵀ) · sx · sw + b` over `r` rows, `x` given as column
    /// segments `(operand, width, gelu)` that together make its K (each quantized into the
    /// arena's E4M3 buffer, GELU-tanh applied on the way where asked). `y` must be `[rows, N]`.
    #[allow(clippy::too_many_arguments)]
    fn fp8_gemm(
        &self,
        gpu: &Gpu,
        (f, l): (&Fp8Run, &Fp8Layer),
        a: &Arena,
        base: u64,
        j: Joint,
        r: Rows,
        name: &str,
        xs: &[(Mat, usize, bool)],
        y: Mat,
    ) -> Result<(), CudaError> {
        let (off, m, batch, stride_rows) = self.rows(j, r);
        if m == 0 {
            return Ok(());
        }
        let internal = |message: String| CudaError::Engine { path: self.weights.map.dir.clone(), message };
        let k: usize = xs.iter().map(|x| x.1).sum();
        if k != l.k || y.ld != l.n || y.col != 0 || batch * m * l.k > a.q8_bytes {
            return Err(internal(format!(
                "FP8 `{name}`: input width {k}, output stride {} col {} for a {}×{} GEMM of {m} rows × {batch}",
                y.ld, y.col, l.n, l.k
            )));
        }
        let e = self.e();
        let q = base + a.q8 as u64;
        let (act, amax) = (f.scale_ptr(l.act), f.scale_ptr(l.act + 1));
        let row_of = |bi: usize| off + bi * stride_rows;
        if self.skip.load(std::sync::atomic::Ordering::Relaxed) & SKIP_QUANT == 0 {
            let kq = &f.kernels;
            // SAFETY: every segment lies inside its arena buffer ([rows, ld] bf16), the E4M3
            // buffer holds batch·m·K bytes (checked above), the scale slots are in the scale buffer.
            unsafe {
                if f.dynamic {
                    kq.amax_begin(amax)?;
                    for bi in 0..batch {
                        for (x, w, gelu) in xs {
                            kq.amax_rows(x.base + ((row_of(bi) * x.ld + x.col) as u64) * e, x.ld, m, *w, *gelu, amax)?;
                        }
                    }
                    kq.amax_end(amax, act)?;
                }
                for bi in 0..batch {
                    let mut col = 0;
                    for (x, w, gelu) in xs {
                        let xp = x.base + ((row_of(bi) * x.ld + x.col) as u64) * e;
                        kq.quantize_rows(xp, x.ld, q + (bi * m * l.k + col) as u64, l.k, act, m, *w, *gelu)?;
                        col += w;
                    }
                }
            }
        }
        let g = f.gemm(&self.lt, gpu, Fp8Shape { fast_accum: f.fast_accum, ..l.shape(m) })?;
        let (w, bias) = (self.w(&format!("{name}.weight"))?, self.w(&format!("{name}.bias"))?);
        for bi in 0..batch {
            let yp = y.base + ((row_of(bi) * y.ld) as u64) * e;
            // SAFETY: E4M3 input [m, K] and weight [N, K], bf16 output [m, N] and bias [N], the
            // scales and the workspace are live device buffers of those extents.
            unsafe { g.run(q + (bi * m * l.k) as u64, act, w, f.scale_ptr(l.wscale), bias, yp, f.workspace.ptr())? };
        }
        Ok(())
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
        self.linear_in(gpu, a, base, j, r, module, (x, false), y, gelu)
    }

    /// [`Self::linear`] whose input is `gelu(x)` when `x.1` (only for a GEMM that
    /// [`Self::fuses_gelu`]).
    #[allow(clippy::too_many_arguments)]
    fn linear_in(
        &self,
        gpu: &Gpu,
        a: &Arena,
        base: u64,
        j: Joint,
        r: Rows,
        module: &str,
        (x, x_gelu): (Mat, bool),
        y: Mat,
        gelu: bool,
    ) -> Result<bool, CudaError> {
        if let Some(fl) = self.fp8_layer(module) {
            self.fp8_gemm(gpu, fl, a, base, j, r, module, &[(x, fl.1.k, x_gelu)], y)?;
            self.lora(gpu, a, base, j, r, module, &[(x, fl.1.k)], y)?;
            return Ok(gelu);
        }
        if x_gelu {
            return Err(CudaError::Engine {
                path: self.weights.map.dir.clone(),
                message: format!("`{module}` is not an FP8 GEMM: it cannot apply GELU to its input"),
            });
        }
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
        if let Some(fl) = self.fp8_layer(group) {
            self.fp8_gemm(gpu, fl, a, base, j, r, group, &[(x, fl.1.k, false)], y)?;
            return self.fused_lora(gpu, a, base, j, r, members, x, y);
        }
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
        self.fused_lora(gpu, a, base, j, r, members, x, y)
    }

    /// The members' LoRA of a fused group on their column ranges of `y`.
    #[allow(clippy::too_many_arguments)]
    fn fused_lora(&self, gpu: &Gpu, a: &Arena, base: u64, j: Joint, r: Rows, members: &[&str], x: Mat, y: Mat) -> Result<(), CudaError> {
        if self.lora_group(gpu, a, base, j, r, members, x, y)? {
            return Ok(());
        }
        let k = self.cfg.hidden_size;
        let mods: Vec<_> = members.iter().filter_map(|m| self.cfg.linear_module(m)).collect();
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
    pub fn forward(&self, gpu: &Gpu, a: &Arena, base: u64, attn: &StepAttention, attn_ws: u64) -> Result<(), CudaError> {
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
                unsafe { attn.run(a, base, qkv, p(a.o), attn_ws)? };
            }
            self.linear(gpu, a, base, j, Rows::Img, &format!("{at}.to_out.0"), o, tmp, false)?;
            self.linear(gpu, a, base, j, Rows::Txt, &format!("{at}.to_add_out"), o, tmp, false)?;
            k.gate_res(gpu, p(a.hidden), p(a.tmp), h, h, j, st(2), (false, false))?;
            k.ln_mod(gpu, p(a.hidden), p(a.normed), h, j, st(3), st(4))?;
            let up = Mat { base: p(a.proj), ld: m, col: 0 };
            let gi = self.linear(gpu, a, base, j, Rows::Img, &format!("{pre}.ff.net.0.proj"), normed, up, true)?;
            let gt = self.linear(gpu, a, base, j, Rows::Txt, &format!("{pre}.ff_context.net.0.proj"), normed, up, true)?;
            let (down_i, down_t) = (format!("{pre}.ff.net.2"), format!("{pre}.ff_context.net.2"));
            // FP8: GELU in the down projection's quantization where it can be
            let (fi, ft) = (gi && self.fuses_gelu(&down_i), gt && self.fuses_gelu(&down_t));
            let (gi, gt) = (gi && !fi, gt && !ft);
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
            self.linear_in(gpu, a, base, j, Rows::Img, &down_i, (up, fi), tmp, false)?;
            self.linear_in(gpu, a, base, j, Rows::Txt, &down_t, (up, ft), tmp, false)?;
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
            let name = format!("{pre}.proj_out");
            // FP8 linear1 or a LoRA'd MLP: one GEMM, the deltas, then GELU (FP8: in proj_out's
            // quantization when it can be)
            let gelu_in_proj_out = self.fp8_layer(&format!("{pre}.linear1")).is_some() && self.fuses_gelu(&name);
            if self.fp8_layer(&format!("{pre}.linear1")).is_some() || self.slot_of.contains_key(&members[3]) {
                self.fused(gpu, a, base, j, Rows::All, &format!("{pre}.linear1"), &mref, normed, proj)?;
                if !gelu_in_proj_out {
                    k.gelu_tanh(gpu, proj.base, j.rows(), m, w1, 3 * h)?;
                }
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
                unsafe { attn.run(a, base, qkv, p(a.o), attn_ws)? };
            }
            // proj_out over cat(attn, gelu(mlp)) as two K-segments
            let mlp = Mat { col: 3 * h, ..proj };
            if let Some(fl) = self.fp8_layer(&name) {
                self.fp8_gemm(gpu, fl, a, base, j, Rows::All, &name, &[(o, h, false), (mlp, m, gelu_in_proj_out)], tmp)?;
            } else {
                let w2 = self.w(&format!("{name}.weight"))?;
                let b2 = self.w(&format!("{name}.bias"))?;
                // the long segment first: it is autotuned (accumulating GEMMs keep the heuristic's pick)
                self.gemm(gpu, j, Rows::All, mlp, (w2 + h as u64 * e, h + m), h, m, tmp, Some((b2, false)), false)?;
                self.gemm(gpu, j, Rows::All, o, (w2, h + m), h, h, tmp, None, true)?;
            }
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

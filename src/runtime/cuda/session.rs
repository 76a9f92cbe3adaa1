//! [`CudaSession`]: an engine folder on one GPU, implementing [`Slotted`] and [`Transformer`].
//!
//! - Weights: `model.onnx.data` uploaded once.
//! - Slots: the forward pass (and its captured graphs) reads one fixed slot buffer. Staged sets
//!   are device buffers, laid out on the device ([`SlotStager`]: one packed upload, a scatter
//!   kernel); an install only swaps the current set (no copy); a step whose lease
//!   holds another set than the fixed buffer has copies it in first (device to device, stream
//!   ordered). Steps are serialized, so a run never sees a set other than its lease's.
//! - Shapes: per (batch, text length, image length) an activation arena, an attention plan and,
//!   from the second step on, a CUDA graph of the whole call; per step the host writes the latents
//!   and the timestep into the arena, replays, and reads the output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{sys, CudaGraph};

use super::attention::{Attention, AttentionShape, MAX_HEAD_DIM};
use super::attention_fp8::Fp8Attention;
use super::device::{DeviceBuffer, Gpu};
use super::gemm::Lt;
use super::kernels::Kernels;
use super::model::{Fp8Run, Model, StepAttention};
use super::plan::{Arena, Shape, SlotLayout};
use super::stage::{PackedAdapter, SetBuffer, SlotStager};
use super::weights::{DeviceWeights, WeightMap};
use super::CudaError;
use crate::flux::TIME_EMBED_DIM;
use crate::lora::Adapter;
use crate::manifest::{integrity, Manifest, ManifestError, VerifyPolicy};
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::{RequestInputs, Slotted, SwapReport, Transformer};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One slot set on the device (layout: [`SlotLayout`]).
#[derive(Debug)]
pub struct DeviceSlots {
    session: u64,
    buf: SetBuffer,
}

/// A staged adapter set: validated, laid out and uploaded; installing it copies nothing.
#[derive(Debug, Clone)]
pub struct StagedSlots {
    labels: Vec<AdapterLabel>,
    slots: Arc<DeviceSlots>,
}

impl StagedSlots {
    /// Device bytes the staged set holds.
    pub fn bytes(&self) -> u64 {
        self.slots.buf.bytes() as u64
    }
}

/// A request's constants on the device.
#[derive(Debug)]
pub struct Bound {
    id: u64,
    session: u64,
    shape: Shape,
    encoder: DeviceBuffer,
    pooled: DeviceBuffer,
    guidance: DeviceBuffer,
    rope_cos: DeviceBuffer,
    rope_sin: DeviceBuffer,
}

impl Bound {
    pub fn shape(&self) -> Shape {
        self.shape
    }
}

struct ShapeState {
    plan: Arena,
    arena: DeviceBuffer,
    attn: StepAttention,
    attn_ws: Option<DeviceBuffer>,
    graph: Option<Graph>,
    /// Eager runs done (the graph is captured on the second step).
    runs: u64,
}

struct Graph(CudaGraph);
// SAFETY: used only under the runner lock with the session's context bound.
unsafe impl Send for Graph {}

struct Runner {
    /// Version of the slot set in the fixed slot buffer.
    loaded_slots: u64,
    /// Bound request whose constants are in each shape's arena.
    loaded_request: HashMap<Shape, u64>,
    shapes: HashMap<Shape, ShapeState>,
}

/// How an FP8 engine's GEMM inputs are scaled to E4M3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fp8Activations {
    /// The engine's calibrated static scales (default; `FLUX_TRT_FP8_DYNAMIC=1` selects dynamic).
    #[default]
    Static,
    /// Per tensor from each call's amax (one more pass over every quantized input).
    Dynamic,
}

/// Options of [`CudaSession::open`].
#[derive(Clone, Debug)]
pub struct CudaOptions {
    pub device: usize,
    /// Capture and replay CUDA graphs (default on; `FLUX_TRT_CUDA_GRAPHS=0` turns them off).
    pub graphs: bool,
    /// When opening hashes the engine files (sizes are always checked), as for the other
    /// backends ([`crate::manifest::integrity`]).
    pub verify: VerifyPolicy,
    /// FP8 engines: static or dynamic activation scales.
    pub fp8_activations: Fp8Activations,
    /// FP8 engines: static activation scales by GEMM name replacing the engine's (e.g. from
    /// [`CudaSession::fp8_activation_scales`] after dynamic runs); every quantized GEMM needs one.
    pub fp8_activation_scales: Option<std::collections::BTreeMap<String, f32>>,
    /// FP8 (E4M3) attention through cuDNN's fused FP8 flash attention, q/k/v scaled per tensor
    /// from each call's amax (default off; `FLUX_TRT_FP8_ATTENTION=1` turns it on). bf16 and FP8
    /// engines on Hopper (sm_90+); elsewhere opening fails with
    /// [`CudaError::Fp8AttentionUnavailable`] naming the reason (no silent fallback to bf16).
    /// Off by default because it misses issue 13's accuracy bar: on an H100 (2026-12-07) it saved
    /// 3.5 ms of a 98 ms FP8 step at 1024² but moved the full-size output by rel L2 0.10 (cosine
    /// 0.9951) on its own, E4M3's 3-bit mantissa on the softmax probabilities; measured by
    /// `tests/cuda_attention.rs` and `examples/cuda_fp8_check.rs --fp8-attention`.
    pub fp8_attention: bool,
    /// FP8 engines: Hopper's fast FP8 accumulation in the GEMMs (`CUBLASLT_MATMUL_DESC_FAST_ACCUM`,
    /// as torchao's FP8 inference uses; default on, `FLUX_TRT_FP8_FAST_ACCUM=0` turns it off).
    /// Per GEMM rel L2 1.9e-3 instead of 1.7e-3 against the fp32 product of the same E4M3
    /// operands (`tests/cuda_fp8.rs`, H200); at full size on an H100 (2026-12-07) 93.5 instead of
    /// 98.0 ms per 1024² step with the output's cosine to the bf16 engine unchanged (0.99578 vs 0.99580).
    pub fp8_fast_accum: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok();
        CudaOptions {
            device: 0,
            graphs: env("FLUX_TRT_CUDA_GRAPHS").map(|v| v != "0").unwrap_or(true),
            verify: VerifyPolicy::default(),
            fp8_activations: if env("FLUX_TRT_FP8_DYNAMIC").is_some_and(|v| v == "1") { Fp8Activations::Dynamic } else { Fp8Activations::Static },
            fp8_activation_scales: None,
            fp8_attention: env("FLUX_TRT_FP8_ATTENTION").is_some_and(|v| v == "1"),
            fp8_fast_accum: env("FLUX_TRT_FP8_FAST_ACCUM").map(|v| v != "0").unwrap_or(true),
        }
    }
}

/// Timings of session creation.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub total: Duration,
    pub upload: Duration,
    pub kernels: Duration,
    pub kernels_cached: bool,
    pub weight_bytes: usize,
}

pub struct CudaSession {
    dir: PathBuf,
    manifest: Manifest,
    id: u64,
    gpu: Gpu,
    model: Model,
    stager: SlotStager,
    fixed_slots: DeviceBuffer,
    active: ActiveSlots<Arc<DeviceSlots>>,
    runner: Mutex<Runner>,
    graphs: bool,
    fp8_attention: bool,
    pub open_report: OpenReport,
}

impl std::fmt::Debug for CudaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaSession").field("dir", &self.dir).field("id", &self.id).finish_non_exhaustive()
    }
}

fn input_err(tensor: &str, message: impl Into<String>) -> CudaError {
    CudaError::Input { tensor: tensor.into(), message: message.into() }
}

fn bytes_of(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// With `fp8_attention` on: fails at open, with [`CudaError::Fp8AttentionUnavailable`], on a GPU
/// or cuDNN without the fused FP8 attention, or when cuDNN has no engine for the model's heads
/// (planned on a small probe shape, batch 1 × 256 tokens; each step shape is planned on its first
/// step and may still fail there).
fn probe_fp8_attention(gpu: &Gpu, cfg: &crate::flux::FluxConfig, dtype: crate::tensor::DType) -> Result<(), CudaError> {
    let shape = AttentionShape { batch: 1, heads: cfg.num_heads, seq: 256, head_dim: cfg.head_dim, dtype };
    match Fp8Attention::new(&gpu.stream, shape) {
        Ok(a) => {
            tracing::info!("FP8 attention: {:?} O, {}", a.out(), a.engine());
            Ok(())
        }
        Err(e @ CudaError::Fp8AttentionUnavailable { .. }) => Err(e),
        Err(e) => Err(CudaError::Fp8AttentionUnavailable { reason: e.to_string() }),
    }
}

/// The attention head dimensions this backend runs (a typed error naming the limit otherwise),
/// checked when a session opens rather than at its first step.
pub fn check_head_dim(head_dim: usize) -> Result<(), CudaError> {
    if head_dim == 0 || head_dim > MAX_HEAD_DIM || !head_dim.is_multiple_of(8) {
        return Err(CudaError::UnsupportedHeadDim {
            head_dim,
            message: format!("the model's attention heads are {head_dim} wide; fused attention needs a multiple of 8 up to {MAX_HEAD_DIM}"),
        });
    }
    Ok(())
}

impl CudaSession {
    /// Opens an engine folder (`manifest.json`, `model.onnx`, `model.onnx.data`) on GPU `opts.device`.
    ///
    /// Everything that needs no GPU is checked first, so a bad folder gets its own error on any
    /// machine: the manifest, the engine files against the sizes and hashes it records
    /// (`opts.verify`), the weight table against the model config. Then the driver, the GPU and
    /// the libraries (each missing or too old one named).
    pub fn open(dir: &Path, opts: CudaOptions) -> crate::Result<Self> {
        let t0 = Instant::now();
        let manifest = Manifest::load(dir)?;
        integrity::check_onnx(dir, &manifest.files, &manifest.onnx.file, &manifest.onnx.blake3, opts.verify).map_err(ManifestError::from)?;
        let map = WeightMap::open(dir, &manifest)?;
        check_head_dim(manifest.model.head_dim)?;
        let gpu = Gpu::open(opts.device)?;
        super::nvrtc::require()?;
        let dtype = map.dtype;
        if manifest.lora.dtype != dtype && !manifest.lora.slots.is_empty() {
            return Err(CudaError::Engine { path: dir.to_path_buf(), message: format!("LoRA slots are {}, weights {}", manifest.lora.dtype, dtype) }.into());
        }
        let tk = Instant::now();
        let kernels = Kernels::load(&gpu, dtype)?;
        let kernels_time = tk.elapsed();
        let lt = Lt::new(&gpu, dtype)?;
        if opts.fp8_attention {
            probe_fp8_attention(&gpu, &manifest.model, dtype)?;
        }
        let tu = Instant::now();
        let weights = DeviceWeights::upload(&gpu, map)?;
        let upload = tu.elapsed();
        let fp8 = match weights.map.fp8.clone() {
            Some(plan) => Some(Fp8Run::new(&gpu, plan, &opts)?),
            None => None,
        };
        let layout = SlotLayout::new(&manifest.lora);
        let stager = SlotStager::new(&gpu, &manifest.lora)?;
        let fixed_slots = gpu.zeros(layout.bytes, "LoRA slots")?;
        let base_set = gpu.zeros(layout.bytes, "LoRA slots (base set)")?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let weight_bytes = weights.bytes();
        let model = Model::new(manifest.model.clone(), weights, kernels, lt, layout, &manifest.lora, fixed_slots.ptr(), fp8);
        let open_report = OpenReport { total: t0.elapsed(), upload, kernels: kernels_time, kernels_cached: false, weight_bytes };
        tracing::info!(engine = %dir.display(), gpu = %gpu.name(), ?open_report, "cuda session open");
        Ok(CudaSession {
            dir: dir.to_path_buf(),
            stager,
            manifest,
            id,
            gpu,
            model,
            fixed_slots,
            active: ActiveSlots::new(Arc::new(DeviceSlots { session: id, buf: SetBuffer::owned(base_set) })),
            runner: Mutex::new(Runner { loaded_slots: 0, loaded_request: HashMap::new(), shapes: HashMap::new() }),
            graphs: opts.graphs,
            fp8_attention: opts.fp8_attention,
            open_report,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn shape_state(&self, shape: Shape) -> Result<ShapeState, CudaError> {
        let cfg = &self.manifest.model;
        let fp8_k = self.model.fp8.as_ref().map_or(0, |f| f.plan.max_k);
        let ashape = AttentionShape { batch: shape.batch, heads: cfg.num_heads, seq: shape.s_tot(), head_dim: cfg.head_dim, dtype: self.model.dtype };
        let mut plan = Arena::new(cfg, self.model.dtype, self.manifest.lora.max_rank, shape, fp8_k);
        let attn = if self.fp8_attention {
            let a = Fp8Attention::new(&self.gpu.stream, ashape)?;
            plan = plan.with_fp8_attention(a.scratch_sizes());
            StepAttention::Fp8(a)
        } else {
            StepAttention::Float(Attention::new(&self.gpu.stream, ashape)?)
        };
        let arena = self.gpu.zeros(plan.bytes, &format!("activations for batch {} × {} tokens", shape.batch, shape.s_tot()))?;
        let ws = attn.workspace_bytes();
        let attn_ws = if ws > 0 { Some(self.gpu.alloc(ws, "attention workspace")?) } else { None };
        // diffusers' sinusoid frequencies, in f32 like the exported graph
        let half = TIME_EMBED_DIM / 2;
        let k = -(10000f64.ln() as f32);
        let freqs: Vec<f32> = (0..half).map(|i| (k * i as f32 / half as f32).exp()).collect();
        self.gpu.htod(bytes_of(&freqs), arena.ptr() + plan.freqs as u64, "time frequencies")?;
        self.gpu.sync("arena setup")?;
        Ok(ShapeState { plan, arena, attn, attn_ws, graph: None, runs: 0 })
    }

    /// The request's constants into the shape's arena (device to device).
    fn load_request(&self, st: &ShapeState, bound: &Bound) -> Result<(), CudaError> {
        let a = &st.plan;
        let base = st.arena.ptr();
        for (src, off) in [
            (&bound.encoder, a.encoder),
            (&bound.pooled, a.pooled),
            (&bound.guidance, a.guidance),
            (&bound.rope_cos, a.rope_cos),
            (&bound.rope_sin, a.rope_sin),
        ] {
            self.gpu.dtod(src.ptr(), base + off as u64, src.bytes(), "request constants")?;
        }
        Ok(())
    }

    /// One transformer call. It returns with the stream idle, also on an error, so no GPU work
    /// still reads the lease's slot set once the caller releases the lease (a released set's
    /// buffer is reused by the next stage: [`SetBuffer`]).
    fn run_step(&self, lease: &Lease<Arc<DeviceSlots>>, bound: &Bound, latents: &[f32], timestep: f32, out: &mut [f32], eager: bool) -> Result<(), CudaError> {
        let r = self.enqueue_step(lease, bound, latents, timestep, out, eager);
        if r.is_err() {
            let _ = self.gpu.sync("a failed transformer call");
        }
        r
    }

    /// [`Self::run_step`]'s work; synchronizes when it succeeds (the output download).
    fn enqueue_step(
        &self,
        lease: &Lease<Arc<DeviceSlots>>,
        bound: &Bound,
        latents: &[f32],
        timestep: f32,
        out: &mut [f32],
        eager: bool,
    ) -> Result<(), CudaError> {
        if bound.session != self.id {
            return Err(CudaError::ForeignSlots { what: "bound request" });
        }
        if lease.tensors().session != self.id {
            return Err(CudaError::ForeignSlots { what: "lease" });
        }
        let cfg = &self.manifest.model;
        let shape = bound.shape;
        let n_in = shape.batch * shape.s_img * cfg.in_channels;
        if latents.len() != n_in {
            return Err(input_err(
                "hidden_states",
                format!("{} values, expected batch {} × {} tokens × {}", latents.len(), shape.batch, shape.s_img, cfg.in_channels),
            ));
        }
        let n_out = shape.batch * shape.s_img * cfg.out_channels;
        if out.len() != n_out {
            return Err(input_err("sample", format!("output buffer holds {} values, expected {n_out}", out.len())));
        }
        if !timestep.is_finite() {
            return Err(input_err("timestep", format!("{timestep} is not finite")));
        }
        let mut guard = self.runner.lock().unwrap_or_else(|e| e.into_inner());
        let runner = &mut *guard;
        self.gpu.bind()?;
        if !runner.shapes.contains_key(&shape) {
            let st = self.shape_state(shape)?;
            runner.shapes.insert(shape, st);
        }
        // the lease's slot set into the fixed buffer
        if runner.loaded_slots != lease.version() {
            let src = &lease.tensors().buf;
            self.gpu.dtod(src.ptr(), self.fixed_slots.ptr(), src.bytes().min(self.fixed_slots.bytes()), "LoRA slot set")?;
            runner.loaded_slots = lease.version();
        }
        let st = runner.shapes.get_mut(&shape).expect("inserted above");
        if runner.loaded_request.get(&shape) != Some(&bound.id) {
            self.load_request(st, bound)?;
            runner.loaded_request.insert(shape, bound.id);
        }
        let base = st.arena.ptr();
        let a = &st.plan;
        let ts = vec![timestep; shape.batch];
        self.gpu.htod(bytes_of(latents), base + a.latents as u64, "latents")?;
        self.gpu.htod(bytes_of(&ts), base + a.timestep as u64, "timestep")?;
        let ws = st.attn_ws.as_ref().map(|b| b.ptr()).unwrap_or(0);
        match &st.graph {
            _ if eager => self.model.forward(&self.gpu, a, base, &st.attn, ws)?,
            Some(g) => g.0.launch().map_err(|e| CudaError::driver("cuGraphLaunch", e))?,
            None if self.graphs && st.runs >= 1 => {
                self.gpu
                    .stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| CudaError::driver("cuStreamBeginCapture", e))?;
                let r = self.model.forward(&self.gpu, a, base, &st.attn, ws);
                let g =
                    self.gpu.stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(|e| CudaError::driver("cuStreamEndCapture / cuGraphInstantiate", e));
                r?;
                let g = g?.ok_or_else(|| CudaError::Driver { call: "cuStreamEndCapture".into(), code: 0, message: "captured an empty graph".into() })?;
                g.launch().map_err(|e| CudaError::driver("cuGraphLaunch", e))?;
                st.graph = Some(Graph(g));
            }
            None => self.model.forward(&self.gpu, a, base, &st.attn, ws)?,
        }
        if !eager {
            st.runs += 1;
        }
        let mut bytes = vec![0u8; n_out * 4];
        self.gpu.dtoh(base + a.out_f32 as u64, &mut bytes, "transformer output")?;
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }

    /// Benchmarks: one step with CUDA events around it (GPU ms, including the input and output
    /// copies). `eager` runs without the graph; `skip` leaves parts out of an eager run
    /// ([`super::model::SKIP_ATTENTION`], [`super::model::SKIP_LORA`], 4 = the fused kernels,
    /// [`super::model::SKIP_QUANT`]) so
    /// differences give each category's time. The output is meaningless when `skip` is not 0.
    pub fn time_step(
        &self,
        lease: &Lease<Arc<DeviceSlots>>,
        bound: &mut Bound,
        latents: &[f32],
        timestep: f32,
        out: &mut [f32],
        eager: bool,
        skip: u32,
    ) -> crate::Result<f32> {
        let ctx = &self.gpu.ctx;
        let eager = eager || skip != 0;
        self.model.skip.store(skip & (3 | super::model::SKIP_QUANT), Ordering::Relaxed);
        self.model.kernels.skip.store(skip & 4 != 0, Ordering::Relaxed);
        let e0 = ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| CudaError::driver("cuEventCreate", e))?;
        let e1 = ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| CudaError::driver("cuEventCreate", e))?;
        e0.record(&self.gpu.stream).map_err(|e| CudaError::driver("cuEventRecord", e))?;
        let r = self.run_step(lease, bound, latents, timestep, out, eager);
        self.model.skip.store(0, Ordering::Relaxed);
        self.model.kernels.skip.store(false, Ordering::Relaxed);
        r?;
        e1.record(&self.gpu.stream).map_err(|e| CudaError::driver("cuEventRecord", e))?;
        e1.synchronize().map_err(|e| CudaError::driver("cuEventSynchronize", e))?;
        Ok(e0.elapsed_ms(&e1).map_err(|e| CudaError::driver("cuEventElapsedTime", e))?)
    }

    /// Packs `adapter` once for this session's slots ([`SlotStager::pack`]): later stages of it,
    /// at any strength ([`Self::stage_packed`]), copy its bytes and run the scatter kernel only.
    pub fn pack(&self, adapter: std::sync::Arc<Adapter>) -> crate::Result<PackedAdapter> {
        self.stager.pack(adapter)
    }

    /// [`Slotted::stage`] from packed adapters (of this session).
    pub fn stage_packed(&self, adapters: &[(&PackedAdapter, f32)]) -> crate::Result<StagedSlots> {
        let (buf, _) = self.stager.stage_packed(adapters)?;
        let labels = adapters.iter().map(|(p, s)| AdapterLabel { name: p.adapter().name.clone(), strength: *s }).collect();
        Ok(StagedSlots { labels, slots: Arc::new(DeviceSlots { session: self.id, buf }) })
    }

    /// FP8 engines: the activation scales in use by GEMM name (static: the engine's or the
    /// override; dynamic: those of the last step), `None` for float engines. A calibration pass
    /// runs dynamic steps over its samples and keeps the largest scale per GEMM.
    pub fn fp8_activation_scales(&self) -> crate::Result<Option<std::collections::BTreeMap<String, f32>>> {
        let _guard = self.runner.lock().unwrap_or_else(|e| e.into_inner());
        self.gpu.bind()?;
        match &self.model.fp8 {
            Some(f) => Ok(Some(f.activation_scales(&self.gpu)?)),
            None => Ok(None),
        }
    }

    /// FP8 engines: whether activation scales are dynamic, and how per-channel weight scales are applied.
    pub fn fp8_mode(&self) -> Option<(bool, Option<super::fp8::ChannelImpl>)> {
        self.model.fp8.as_ref().map(|f| (f.dynamic, f.channel_impl()))
    }

    /// Whether attention runs in FP8 ([`CudaOptions::fp8_attention`]).
    pub fn fp8_attention(&self) -> bool {
        self.fp8_attention
    }

    /// The attention engine of each shape planned so far (benchmarks report it).
    pub fn attention_engines(&self) -> Vec<(Shape, String)> {
        let guard = self.runner.lock().unwrap_or_else(|e| e.into_inner());
        guard.shapes.iter().map(|(s, st)| (*s, st.attn.engine())).collect()
    }

    /// What cuBLASLt autotuning measured so far, per GEMM shape (benchmarks report it).
    pub fn gemm_tuning(&self) -> Vec<super::gemm::TuneRecord> {
        self.model.lt.tuning()
    }

    /// Device memory in use by the whole process on this GPU (total − free), bytes.
    pub fn device_memory_used(&self) -> crate::Result<usize> {
        let (free, total) = self.gpu.mem_info()?;
        Ok(total - free)
    }
}

/// FP8 calibration on the GPU: the largest activation amax per quantized GEMM over the steps
/// of a session opened with [`Fp8Activations::Dynamic`] (`flux-trt calibrate` and the full-size
/// accuracy check use it). The static scale of a GEMM is then `amax / 448`.
#[derive(Debug, Clone, Default)]
pub struct AmaxObserver {
    amax: std::collections::BTreeMap<String, f32>,
    steps: usize,
}

impl AmaxObserver {
    /// Records the dynamic scales of the step `s` just ran. Errors if `s` is not an FP8 engine
    /// with dynamic activations, or a GEMM's amax is not finite (named in the error).
    pub fn observe(&mut self, s: &CudaSession) -> crate::Result<()> {
        if s.fp8_mode().map(|(dynamic, _)| dynamic) != Some(true) {
            return Err(CudaError::Input {
                tensor: "fp8 calibration".into(),
                message: "the session must be an FP8 engine opened with dynamic activation scales".into(),
            }
            .into());
        }
        for (gemm, scale) in s.fp8_activation_scales()?.unwrap_or_default() {
            let a = scale * super::fp8::E4M3_MAX;
            if !a.is_finite() {
                return Err(CudaError::Input { tensor: gemm, message: format!("activation amax {a} after {} calibrated steps", self.steps) }.into());
            }
            let m = self.amax.entry(gemm).or_insert(0.0);
            *m = m.max(a);
        }
        self.steps += 1;
        Ok(())
    }

    /// Steps observed so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The largest amax per GEMM.
    pub fn amax(&self) -> &std::collections::BTreeMap<String, f32> {
        &self.amax
    }

    /// The static activation scales (`amax / 448`) per GEMM, the form
    /// [`CudaOptions::fp8_activation_scales`] takes.
    pub fn scales(&self) -> std::collections::BTreeMap<String, f32> {
        self.amax.iter().map(|(g, a)| (g.clone(), a / super::fp8::E4M3_MAX)).collect()
    }
}

impl Slotted for CudaSession {
    type Slots = Arc<DeviceSlots>;
    type Staged = StagedSlots;

    fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<StagedSlots> {
        let buf = self.stager.stage(adapters)?;
        let labels = adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect();
        Ok(StagedSlots { labels, slots: Arc::new(DeviceSlots { session: self.id, buf }) })
    }

    fn install(&self, staged: &StagedSlots) -> crate::Result<SwapReport> {
        let t0 = Instant::now();
        if staged.slots.session != self.id {
            return Err(CudaError::ForeignSlots { what: "staged adapter set" }.into());
        }
        let version = self.active.install(staged.labels.clone(), staged.slots.clone());
        Ok(SwapReport { version, elapsed: t0.elapsed() })
    }

    fn lease(&self) -> Lease<Arc<DeviceSlots>> {
        self.active.lease()
    }
}

impl Transformer for CudaSession {
    type Bound = Bound;

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn bind(&self, r: &RequestInputs<'_>) -> crate::Result<Bound> {
        let cfg = &self.manifest.model;
        let (b, st, si) = (r.batch, r.text_len, r.image_seq_len);
        if b == 0 || si == 0 {
            return Err(input_err("hidden_states", format!("batch {b} × {si} image tokens: both must be at least 1")).into());
        }
        let check = |name: &str, got: usize, want: usize| -> Result<(), CudaError> {
            if got != want {
                return Err(input_err(name, format!("{got} values, expected {want}")));
            }
            Ok(())
        };
        check("encoder_hidden_states", r.encoder_hidden_states.len(), b * st * cfg.context_dim)?;
        check("pooled_projections", r.pooled_projections.len(), b * cfg.pooled_dim)?;
        check("txt_ids", r.txt_ids.len(), st)?;
        check("img_ids", r.img_ids.len(), si)?;
        let guidance = match (cfg.variant.has_guidance(), r.guidance) {
            (true, Some(g)) => g,
            (true, None) => return Err(input_err("guidance", "this model is guidance-distilled (dev): give a guidance scale").into()),
            (false, _) => 0.0,
        };
        let (cos, sin) = crate::flux::rope_tables(cfg, r.txt_ids, r.img_ids);
        self.gpu.bind()?;
        let up = |v: &[f32], what: &str| -> Result<DeviceBuffer, CudaError> {
            let buf = self.gpu.alloc(v.len() * 4, what)?;
            self.gpu.htod(bytes_of(v), buf.ptr(), what)?;
            Ok(buf)
        };
        let bound = Bound {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            session: self.id,
            shape: Shape { batch: b, s_txt: st, s_img: si },
            encoder: up(r.encoder_hidden_states, "encoder states")?,
            pooled: up(r.pooled_projections, "pooled projections")?,
            guidance: up(&vec![guidance; b], "guidance")?,
            rope_cos: up(&cos, "RoPE cos")?,
            rope_sin: up(&sin, "RoPE sin")?,
        };
        self.gpu.sync("request upload")?;
        Ok(bound)
    }

    fn step(&self, lease: &Lease<Arc<DeviceSlots>>, bound: &mut Bound, latents: &[f32], timestep: f32, out: &mut [f32]) -> crate::Result<()> {
        Ok(self.run_step(lease, bound, latents, timestep, out, false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_dims_outside_the_attention_limits_are_refused_at_open() {
        for d in [8, 16, 64, 128, 256] {
            assert!(check_head_dim(d).is_ok(), "{d}");
        }
        for d in [0, 12, 264, 512] {
            let e = check_head_dim(d).unwrap_err();
            assert!(matches!(e, CudaError::UnsupportedHeadDim { head_dim, .. } if head_dim == d));
            assert!(e.to_string().contains("256"), "{e}");
        }
    }
}

//! FP8 (E4M3) attention on Hopper: the bf16 q, k, v of the model are quantized per tensor with
//! dynamic scales, cuDNN's fused FP8 flash attention ([`super::attention::fp8_plan`]) runs on them,
//! and O comes back in bf16 (directly, or through a dequantization kernel when cuDNN only takes an
//! E4M3 O). Behind `CudaOptions::fp8_attention`; bf16 attention stays the default.
//!
//! Per call, all on the stream, no host synchronization (a step with it can be graph-captured):
//! 1. `attn_fp8_amax`: per-block `max |x|` of q, k and v (one launch, `blockIdx.y` picks the tensor);
//! 2. `attn_fp8_scales`: `descale_x = max(amax_x / 448, 1e-12)` (amax = 0: zeros stay zeros),
//!    `scale_s = 448` and `descale_s = 1/448` (the probabilities lie in [0, 1]), `scale_o` = 1 for
//!    a bf16 O, `448 / (amax_v · 17/16)` for an E4M3 O (O is a convex combination of v's rows, up
//!    to the probabilities' E4M3 rounding);
//! 3. `attn_fp8_quantize`: `x8 = e4m3(x / descale_x)`;
//! 4. the cuDNN graph (it also writes `amax(P)` and `amax(O)` into the scalars buffer);
//! 5. E4M3 O only: `attn_fp8_dequantize_o`, `o = o8 / scale_o`.
//!
//! Accuracy is not asserted here: `tests/cuda_attention.rs` measures it against the fp32-accumulating
//! bf16 reference kernel on a Hopper GPU (cosine and relative L2, with the bound it states).

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use super::attention::{Attention, AttentionImpl, AttentionShape, Fp8Out, FP8_SCALARS_BYTES};
use super::fp8::elementwise_grid;
use super::CudaError;

/// Kernel names in `kernels/attention_fp8.cu` (E4M3 conversion needs sm_89+).
pub const KERNEL_NAMES: [&str; 4] = ["attn_fp8_amax", "attn_fp8_scales", "attn_fp8_quantize", "attn_fp8_dequantize_o"];

/// Blocks per tensor of the amax pass: the partial-max scratch holds `3 ·` this many f32.
pub const AMAX_BLOCKS: usize = 512;
const THREADS: u32 = 256;

/// Device scratch of one FP8 attention call (byte sizes; every buffer 256-byte aligned by its owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScratchSizes {
    /// Each of q8, k8, v8: `B·S·H·D` E4M3 bytes.
    pub qkv8: usize,
    /// The E4M3 O (0 for a bf16 O).
    pub o8: usize,
    /// [`FP8_SCALARS_BYTES`]: one f32 per 16-byte slot.
    pub scalars: usize,
    /// `3 · AMAX_BLOCKS` f32.
    pub partial: usize,
}

impl ScratchSizes {
    pub fn new(shape: &AttentionShape, out: Fp8Out) -> Self {
        let n = shape.elements();
        ScratchSizes { qkv8: n, o8: if out == Fp8Out::Fp8 { n } else { 0 }, scalars: FP8_SCALARS_BYTES, partial: 3 * AMAX_BLOCKS * 4 }
    }
}

/// Device addresses of one call's scratch ([`ScratchSizes`]; `o8` 0 for a bf16 O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scratch {
    pub q8: u64,
    pub k8: u64,
    pub v8: u64,
    pub o8: u64,
    pub scalars: u64,
    pub partial: u64,
}

/// The quantization kernels, loaded for one device.
struct Kernels {
    amax: CudaFunction,
    scales: CudaFunction,
    quantize: CudaFunction,
    dequantize_o: CudaFunction,
}

impl Kernels {
    fn load(stream: &Arc<CudaStream>) -> Result<Self, CudaError> {
        let module = super::nvrtc::load_module(stream, super::nvrtc::source("attention_fp8.cu"))?;
        let f = |name: &str| module.load_function(name).map_err(|e| CudaError::driver(format!("cuModuleGetFunction({name})"), e));
        Ok(Kernels { amax: f("attn_fp8_amax")?, scales: f("attn_fp8_scales")?, quantize: f("attn_fp8_quantize")?, dequantize_o: f("attn_fp8_dequantize_o")? })
    }
}

fn launch_err(name: &'static str) -> impl Fn(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::driver(format!("cuLaunchKernel({name})"), e)
}

/// FP8 attention for one shape: the cuDNN FP8 plan and the quantization kernels.
pub struct Fp8Attention {
    attn: Attention,
    out: Fp8Out,
    kernels: Kernels,
    stream: Arc<CudaStream>,
}

impl std::fmt::Debug for Fp8Attention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fp8Attention").field("attention", &self.attn).field("out", &self.out).finish()
    }
}

impl Fp8Attention {
    /// Plans FP8 attention for a bf16 `shape`: the graph with a bf16 O first, then with an E4M3 O
    /// (logged: which one cuDNN took). Neither: [`CudaError::Fp8AttentionUnavailable`] with both
    /// reasons (also for a pre-Hopper GPU or an old cuDNN).
    pub fn new(stream: &Arc<CudaStream>, shape: AttentionShape) -> Result<Self, CudaError> {
        if shape.dtype != crate::tensor::DType::BF16 {
            return Err(CudaError::Fp8AttentionUnavailable {
                reason: format!("FP8 attention quantizes bf16 activations; this engine computes in {:?}", shape.dtype),
            });
        }
        let kernels = Kernels::load(stream)?;
        let plan = |out| Attention::with_impl(stream, shape, AttentionImpl::CudnnFp8(out));
        let (attn, out) = match plan(Fp8Out::Bf16) {
            Ok(a) => {
                tracing::info!("FP8 attention {shape:?}: bf16 O; {}", a.engine());
                (a, Fp8Out::Bf16)
            }
            Err(e @ CudaError::Fp8AttentionUnavailable { .. }) => return Err(e),
            Err(bf16) => match plan(Fp8Out::Fp8) {
                Ok(a) => {
                    tracing::info!("FP8 attention {shape:?}: E4M3 O + dequantization (a bf16 O was refused: {bf16}); {}", a.engine());
                    (a, Fp8Out::Fp8)
                }
                Err(fp8) => {
                    return Err(CudaError::Fp8AttentionUnavailable {
                        reason: format!("no cuDNN engine for the FP8 attention graph of {shape:?}: with a bf16 O: {bf16}; with an E4M3 O: {fp8}"),
                    })
                }
            },
        };
        Ok(Fp8Attention { attn, out, kernels, stream: stream.clone() })
    }

    /// Plans with one given output type (tests compare them).
    pub fn with_out(stream: &Arc<CudaStream>, shape: AttentionShape, out: Fp8Out) -> Result<Self, CudaError> {
        let attn = Attention::with_impl(stream, shape, AttentionImpl::CudnnFp8(out))?;
        let kernels = Kernels::load(stream)?;
        Ok(Fp8Attention { attn, out, kernels, stream: stream.clone() })
    }

    pub fn shape(&self) -> AttentionShape {
        self.attn.shape()
    }

    /// The output type cuDNN took.
    pub fn out(&self) -> Fp8Out {
        self.out
    }

    pub fn engine(&self) -> String {
        self.attn.engine()
    }

    /// Device workspace of the cuDNN plan (bytes).
    pub fn workspace_bytes(&self) -> usize {
        self.attn.workspace_bytes()
    }

    /// The scratch one call needs.
    pub fn scratch_sizes(&self) -> ScratchSizes {
        ScratchSizes::new(&self.shape(), self.out)
    }

    fn check(&self, q: u64, k: u64, v: u64, o: u64, s: &Scratch) -> Result<(), CudaError> {
        let mut bad = Vec::new();
        for (name, p, align) in [
            ("q", q, 16),
            ("k", k, 16),
            ("v", v, 16),
            ("o", o, 16),
            ("q8", s.q8, 16),
            ("k8", s.k8, 16),
            ("v8", s.v8, 16),
            ("scalars", s.scalars, 16),
            ("partial", s.partial, 4),
        ] {
            if p == 0 || !p.is_multiple_of(align) {
                bad.push(format!("{name} {p:#x} (needs {align}-byte alignment)"));
            }
        }
        if self.out == Fp8Out::Fp8 && (s.o8 == 0 || !s.o8.is_multiple_of(16)) {
            bad.push(format!("o8 {:#x} (an E4M3 O needs a 16-byte aligned buffer)", s.o8));
        }
        if !self.shape().elements().is_multiple_of(8) {
            bad.push(format!("{} elements (the kernels move 8 at a time)", self.shape().elements()));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(CudaError::Input { tensor: "fp8 attention".into(), message: bad.join(", ") })
        }
    }

    /// Steps 1-3: the dynamic scales into `s.scalars` and q, k, v into `s.q8`, `s.k8`, `s.v8`.
    ///
    /// # Safety
    /// q, k, v: `shape.elements()` bf16 each; the scratch buffers of [`Self::scratch_sizes`]; all
    /// valid until the stream has run the work.
    pub unsafe fn quantize(&self, q: u64, k: u64, v: u64, s: &Scratch) -> Result<(), CudaError> {
        let n8 = (self.shape().elements() / 8) as i64;
        let mut b = self.stream.launch_builder(&self.kernels.amax);
        b.arg(&q).arg(&k).arg(&v).arg(&s.partial).arg(&n8);
        b.launch(LaunchConfig { grid_dim: (AMAX_BLOCKS as u32, 3, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
            .map_err(launch_err("attn_fp8_amax"))?;
        let (parts, fp8_out) = (AMAX_BLOCKS as i32, i32::from(self.out == Fp8Out::Fp8));
        let mut b = self.stream.launch_builder(&self.kernels.scales);
        b.arg(&s.partial).arg(&parts).arg(&s.scalars).arg(&fp8_out);
        b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }).map_err(launch_err("attn_fp8_scales"))?;
        let mut b = self.stream.launch_builder(&self.kernels.quantize);
        b.arg(&q).arg(&k).arg(&v).arg(&s.q8).arg(&s.k8).arg(&s.v8).arg(&s.scalars).arg(&n8);
        b.launch(LaunchConfig { grid_dim: (elementwise_grid(n8 as usize), 3, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
            .map(|_| ())
            .map_err(launch_err("attn_fp8_quantize"))
    }

    /// Enqueues `o = attention(q, k, v)` through FP8: [`Self::quantize`], the cuDNN FP8 graph,
    /// and for an E4M3 O the dequantization into `o`.
    ///
    /// # Safety
    /// As [`Attention::run`] for q, k, v, o (bf16 `[B, S, H, D]`) and `workspace`
    /// ([`Self::workspace_bytes`]); the scratch as in [`Self::quantize`].
    pub unsafe fn run(&self, q: u64, k: u64, v: u64, o: u64, s: &Scratch, workspace: u64) -> Result<(), CudaError> {
        self.check(q, k, v, o, s)?;
        self.stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (FP8 attention)", e))?;
        self.quantize(q, k, v, s)?;
        self.run_quantized(o, s, workspace)
    }

    /// Steps 4-5 on already quantized inputs (benchmarks time the graph alone with it).
    ///
    /// # Safety
    /// As [`Self::run`]; `s` holds this call's quantized q, k, v and scales.
    pub unsafe fn run_quantized(&self, o: u64, s: &Scratch, workspace: u64) -> Result<(), CudaError> {
        match self.out {
            Fp8Out::Bf16 => self.attn.run_fp8(s.q8, s.k8, s.v8, s.scalars, o, workspace),
            Fp8Out::Fp8 => {
                self.attn.run_fp8(s.q8, s.k8, s.v8, s.scalars, s.o8, workspace)?;
                let n8 = (self.shape().elements() / 8) as i64;
                let mut b = self.stream.launch_builder(&self.kernels.dequantize_o);
                b.arg(&s.o8).arg(&o).arg(&s.scalars).arg(&n8);
                b.launch(LaunchConfig { grid_dim: (elementwise_grid(n8 as usize), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
                    .map(|_| ())
                    .map_err(launch_err("attn_fp8_dequantize_o"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    #[test]
    fn scratch_sizes_follow_the_output_type() {
        let s = AttentionShape { batch: 1, heads: 24, seq: 4608, head_dim: 128, dtype: DType::BF16 };
        let bf = ScratchSizes::new(&s, Fp8Out::Bf16);
        assert_eq!(bf.qkv8, 24 * 4608 * 128, "one byte per element");
        assert_eq!(bf.o8, 0, "a bf16 O is written straight into the model's o");
        assert_eq!(ScratchSizes::new(&s, Fp8Out::Fp8).o8, bf.qkv8);
        assert_eq!(bf.scalars, 8 * 16);
        assert_eq!(bf.partial, 3 * AMAX_BLOCKS * 4);
    }

    #[test]
    fn plans_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Fp8Attention>();
    }

    /// NVRTC compiles the FP8 attention kernels for Ada and Hopper (no GPU needed; needs libnvrtc).
    #[test]
    fn kernels_compile_for_sm89_sm90() {
        super::super::nvrtc::assert_compiles("attention_fp8.cu", &[89, 90], &KERNEL_NAMES);
    }
}

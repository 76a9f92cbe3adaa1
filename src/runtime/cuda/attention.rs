//! Fused scaled-dot-product attention for the CUDA backend.
//!
//! - bf16 / fp16: cuDNN's fused flash attention, built once per shape from the backend graph API
//!   ([`super::cudnn`]). Two graph forms are tried, in this order:
//!   1. the composite graph cudnn-frontend builds for SDPA (matmul → scale → softmax as
//!      max/sub/exp/sum/div → matmul), which cuDNN's fused-attention engine matches on sm_80+;
//!   2. the dedicated `CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR` (cuDNN ≥ 9.13.1).
//!
//!   For each, engine heuristics (mode A) rank engine configs and the first that finalizes into an
//!   execution plan is kept.
//! - FP8 (E4M3, Hopper, behind `CudaOptions::fp8_attention`): the graph cudnn-frontend's FP8 SDPA
//!   forward builds (`sdpa_fp8.h` + `matmul_fp8.h`), [`fp8_plan`]: FP8 Q, Kᵀ, V with per-tensor
//!   descales, the same composite softmax, `amax(P)` and `P·scale_s` in E4M3 into the second matmul,
//!   then descales, `amax(O)` and `O·scale_o`, O in bf16 ([`Fp8Out::Bf16`], tried first) or E4M3
//!   ([`Fp8Out::Fp8`]). The quantization of q, k, v and the scales live in [`super::attention_fp8`].
//! - fp32: cuDNN has no fp32 SDPA; a plain NVRTC kernel (online softmax over key tiles, fp32
//!   throughout) runs it, so fp32 engines can be checked against goldens at 1e-4.
//!
//! Layout: q, k, v, o are `[B, S, H, D]` row-major and contiguous (token stride `H*D`), the layout
//! the fused QKV projection writes; cuDNN reads them as `[B, H, S, D]` views through strides.
//! The softmax scale is `1/sqrt(D)`.

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cudnn::sys as dnn;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use super::cudnn::{self, Attr, Descriptor, Handle, Kind};
use super::CudaError;
use crate::tensor::DType;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

impl AttentionShape {
    /// Elements of one of q, k, v, o.
    pub fn elements(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    fn describe(&self) -> String {
        format!("{:?} B={} H={} S={} D={}", self.dtype, self.batch, self.heads, self.seq, self.head_dim)
    }
}

/// Largest head dimension cuDNN's fused attention (and the fp32 kernel) accept.
pub const MAX_HEAD_DIM: usize = 256;

/// Which implementation a plan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionImpl {
    /// cuDNN: the composite matmul-softmax-matmul graph (what cudnn-frontend builds on Hopper).
    CudnnComposite,
    /// cuDNN: the dedicated SDPA forward operation.
    CudnnSdpaOp,
    /// The NVRTC fp32 kernel.
    KernelF32,
    /// cuDNN FP8 (E4M3) fused attention ([`fp8_plan`]); run with [`Attention::run_fp8`].
    CudnnFp8(Fp8Out),
}

/// Output type of the FP8 attention graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp8Out {
    /// O in the shape's dtype (bf16): what the next layer reads, no dequantization pass.
    Bf16,
    /// O in E4M3 (as in cuDNN's FP8 samples), scaled by `scale_o`; dequantized into bf16 afterwards.
    Fp8,
}

/// One attention plan per shape, built once and reused; `run` only enqueues work.
pub struct Attention {
    shape: AttentionShape,
    stream: Arc<CudaStream>,
    backend: Backend,
}

impl std::fmt::Debug for Attention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attention").field("shape", &self.shape).field("engine", &self.engine()).field("workspace_bytes", &self.workspace_bytes()).finish()
    }
}

enum Backend {
    Cudnn(CudnnPlan),
    Kernel(KernelPlan),
}

impl Attention {
    /// Plans attention for `shape` on `stream` (bf16/fp16: cuDNN; fp32: the NVRTC kernel).
    pub fn new(stream: &Arc<CudaStream>, shape: AttentionShape) -> Result<Self, CudaError> {
        match shape.dtype {
            DType::F32 => Self::with_impl(stream, shape, AttentionImpl::KernelF32),
            DType::BF16 | DType::F16 => match Self::with_impl(stream, shape, AttentionImpl::CudnnComposite) {
                Ok(a) => Ok(a),
                Err(composite) => match Self::with_impl(stream, shape, AttentionImpl::CudnnSdpaOp) {
                    Ok(a) => {
                        tracing::info!("attention {}: composite cuDNN graph failed ({composite}); using the SDPA operation", shape.describe());
                        Ok(a)
                    }
                    Err(op) => Err(CudaError::Cudnn {
                        call: format!("fused attention plan for {}", shape.describe()),
                        status: "no engine".into(),
                        message: format!("composite graph: {composite}; SDPA operation: {op}"),
                    }),
                },
            },
        }
    }

    /// Plans attention with one given implementation (tests and benchmarks compare them).
    pub fn with_impl(stream: &Arc<CudaStream>, shape: AttentionShape, imp: AttentionImpl) -> Result<Self, CudaError> {
        validate(&shape, imp)?;
        stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (attention plan)", e))?;
        let backend = match imp {
            AttentionImpl::KernelF32 => Backend::Kernel(KernelPlan::new(stream, &shape)?),
            AttentionImpl::CudnnComposite | AttentionImpl::CudnnSdpaOp | AttentionImpl::CudnnFp8(_) => Backend::Cudnn(CudnnPlan::new(stream, &shape, imp)?),
        };
        Ok(Attention { shape, stream: stream.clone(), backend })
    }

    pub fn shape(&self) -> AttentionShape {
        self.shape
    }

    pub fn implementation(&self) -> AttentionImpl {
        match &self.backend {
            Backend::Cudnn(p) => p.imp,
            Backend::Kernel(_) => AttentionImpl::KernelF32,
        }
    }

    /// Human-readable description of the chosen engine (for logs and reports).
    pub fn engine(&self) -> String {
        match &self.backend {
            Backend::Cudnn(p) => p.engine.clone(),
            Backend::Kernel(_) => "NVRTC attention_f32 kernel".into(),
        }
    }

    /// Device workspace `run` needs (bytes; may be 0, then any pointer, even 0, will do).
    pub fn workspace_bytes(&self) -> usize {
        match &self.backend {
            Backend::Cudnn(p) => p.workspace,
            Backend::Kernel(_) => 0,
        }
    }

    /// Enqueues `o = softmax(q kᵀ / sqrt(D)) v` on the stream.
    ///
    /// q, k, v, o: `[B, S, H, D]` row-major, contiguous (token stride `H*D`), of the plan's dtype.
    ///
    /// # Safety
    /// q, k, v, o must be device pointers to `shape.elements()` elements each (o not aliasing the
    /// inputs), 16-byte aligned, and `workspace` must hold `workspace_bytes()`; all must stay valid
    /// until the stream has run the work.
    pub unsafe fn run(&self, q: u64, k: u64, v: u64, o: u64, workspace: u64) -> Result<(), CudaError> {
        // cuDNN uses the CUDA runtime, which follows the calling thread's current context.
        if let AttentionImpl::CudnnFp8(_) = self.implementation() {
            return Err(CudaError::Input { tensor: "attention".into(), message: "an FP8 plan runs through `run_fp8` (E4M3 inputs and their scales)".into() });
        }
        self.stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (attention)", e))?;
        match &self.backend {
            Backend::Cudnn(p) => p.run(&[q, k, v, o], 0, workspace),
            Backend::Kernel(p) => p.run(&self.stream, &self.shape, q, k, v, o),
        }
    }

    /// Enqueues the FP8 plan: `o = softmax(deq(q8) deq(k8)ᵀ / sqrt(D)) deq(v8) · scale_o`, with
    /// `deq(x8) = x8 · descale_x` and the probabilities quantized as `e4m3(P · scale_s)`.
    ///
    /// q8, k8, v8: E4M3 `[B, S, H, D]` (token stride `H*D` bytes); o: `[B, S, H, D]` bf16 or E4M3
    /// (the plan's [`Fp8Out`]); `scalars`: [`FP8_SCALARS_BYTES`] of device f32 slots in the [`Fp8Scalar`] order
    /// (the first six are read, `amax_s` and `amax_o` are written).
    ///
    /// # Safety
    /// As [`Self::run`]; `scalars` is a 16-byte aligned device buffer of [`FP8_SCALARS_BYTES`].
    pub unsafe fn run_fp8(&self, q8: u64, k8: u64, v8: u64, scalars: u64, o: u64, workspace: u64) -> Result<(), CudaError> {
        let (Backend::Cudnn(p), AttentionImpl::CudnnFp8(_)) = (&self.backend, self.implementation()) else {
            return Err(CudaError::Input { tensor: "attention".into(), message: format!("run_fp8 on a {:?} plan", self.implementation()) });
        };
        if scalars == 0 || !scalars.is_multiple_of(16) {
            return Err(CudaError::Input {
                tensor: "fp8 attention scalars".into(),
                message: format!("address {scalars:#x}: needs a 16-byte aligned device buffer"),
            });
        }
        self.stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (FP8 attention)", e))?;
        p.run(&[q8, k8, v8, o], scalars, workspace)
    }
}

fn validate(shape: &AttentionShape, imp: AttentionImpl) -> Result<(), CudaError> {
    let AttentionShape { batch, heads, seq, head_dim, dtype } = *shape;
    if batch == 0 || heads == 0 || seq == 0 || head_dim == 0 {
        return Err(CudaError::Input { tensor: "attention".into(), message: format!("empty shape {}", shape.describe()) });
    }
    if head_dim > MAX_HEAD_DIM || !head_dim.is_multiple_of(8) {
        return Err(CudaError::UnsupportedHeadDim {
            head_dim,
            message: format!("{}: fused attention needs a head dim that is a multiple of 8 and at most {MAX_HEAD_DIM}", shape.describe()),
        });
    }
    let cudnn_dtype = matches!(dtype, DType::BF16 | DType::F16);
    match imp {
        AttentionImpl::KernelF32 if dtype != DType::F32 => {
            Err(CudaError::Input { tensor: "attention".into(), message: format!("the fp32 kernel runs fp32 only, not {dtype:?}") })
        }
        AttentionImpl::CudnnFp8(_) if dtype != DType::BF16 => {
            Err(CudaError::Input { tensor: "attention".into(), message: format!("FP8 attention quantizes bf16 activations and writes bf16, not {dtype:?}") })
        }
        AttentionImpl::CudnnComposite | AttentionImpl::CudnnSdpaOp if !cudnn_dtype => Err(CudaError::Input {
            tensor: "attention".into(),
            message: format!("cuDNN fused attention runs bf16 and fp16 only, not {dtype:?} (fp32 uses the NVRTC kernel)"),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side graph planning (pure; unit-tested without a GPU).

/// Tensor ids of the variant pack.
pub(crate) const UID_Q: i64 = 1;
pub(crate) const UID_K: i64 = 2;
pub(crate) const UID_V: i64 = 3;
pub(crate) const UID_O: i64 = 4;
pub(crate) const UID_SCALE: i64 = 5;
/// FP8 plans: the scalars buffer's slot `i` ([`Fp8Scalar`] order) is tensor `UID_FP8_SCALARS + i`.
pub(crate) const UID_FP8_SCALARS: i64 = 6;

/// The FP8 plan's device scalars, in buffer order: one f32 each at the start of a 16-byte slot
/// ([`FP8_SCALAR_STRIDE`]; every tensor of the graph is declared 16-byte aligned, as cudnn-frontend
/// declares them), [`FP8_SCALARS`] in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Fp8Scalar {
    /// `amax(q) / 448`: dequantizes E4M3 q (read).
    DescaleQ = 0,
    DescaleK = 1,
    DescaleV = 2,
    /// Quantizes the softmax probabilities into E4M3: 448 (they lie in [0, 1]) (read).
    ScaleS = 3,
    /// `1 / scale_s` (read).
    DescaleS = 4,
    /// Multiplies O before it is written: 1 for a bf16 O; `448 / (amax(v) · 17/16)` for an E4M3 O (read).
    ScaleO = 5,
    /// `amax(P)` of the call (written by cuDNN; ≈ the largest probability, at most 1).
    AmaxS = 6,
    /// `amax(O)` before `scale_o` of the call (written by cuDNN).
    AmaxO = 7,
}

/// Scalars in the FP8 plan's scalars buffer.
pub const FP8_SCALARS: usize = 8;
/// Bytes between two scalars (each 16-byte aligned).
pub const FP8_SCALAR_STRIDE: usize = 16;
/// Bytes of the scalars buffer.
pub const FP8_SCALARS_BYTES: usize = FP8_SCALARS * FP8_SCALAR_STRIDE;

impl Fp8Scalar {
    pub const ALL: [Fp8Scalar; FP8_SCALARS] = [
        Fp8Scalar::DescaleQ,
        Fp8Scalar::DescaleK,
        Fp8Scalar::DescaleV,
        Fp8Scalar::ScaleS,
        Fp8Scalar::DescaleS,
        Fp8Scalar::ScaleO,
        Fp8Scalar::AmaxS,
        Fp8Scalar::AmaxO,
    ];

    /// Tensor id in the FP8 graph.
    pub(crate) fn uid(self) -> i64 {
        UID_FP8_SCALARS + self as i64
    }

    /// Byte offset in the scalars buffer.
    pub fn offset(self) -> u64 {
        (self as usize * FP8_SCALAR_STRIDE) as u64
    }
}

/// Element type of a planned tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    /// The I/O type (bf16 / fp16).
    Io,
    /// fp32 (intermediates, the scale).
    F32,
    /// FP8 E4M3 (the FP8 plan's q, k, v, quantized probabilities, optionally O).
    Fp8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorPlan {
    pub uid: i64,
    pub dims: [i64; 4],
    pub strides: [i64; 4],
    pub elem: Elem,
    pub is_virtual: bool,
    pub by_value: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pw {
    Mul,
    Sub,
    Exp,
    Div,
    Log,
    Add,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Red {
    Max,
    Sum,
    /// Maximum of absolute values (the FP8 plan's `amax` outputs).
    Amax,
}

/// Operations by tensor uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpPlan {
    Matmul { a: i64, b: i64, c: i64 },
    Pointwise { mode: Pw, x: i64, b: Option<i64>, y: i64 },
    Reduction { op: Red, x: i64, y: i64 },
    Sdpa { q: i64, k: i64, v: i64, o: i64, scale: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphPlan {
    pub tensors: Vec<TensorPlan>,
    pub ops: Vec<OpPlan>,
}

#[cfg(test)]
impl GraphPlan {
    pub(crate) fn tensor(&self, uid: i64) -> Option<&TensorPlan> {
        self.tensors.iter().find(|t| t.uid == uid)
    }
}

/// `[B, H, S, D]` view over `[B, S, H, D]` memory.
pub(crate) fn bhsd_view(s: &AttentionShape) -> ([i64; 4], [i64; 4]) {
    let (b, h, n, d) = (s.batch as i64, s.heads as i64, s.seq as i64, s.head_dim as i64);
    ([b, h, n, d], [n * h * d, d, h * d, 1])
}

/// `Kᵀ` as a `[B, H, D, S]` view over `[B, S, H, D]` memory (dims and strides 2 and 3 swapped).
pub(crate) fn kt_view(s: &AttentionShape) -> ([i64; 4], [i64; 4]) {
    let (dims, strides) = bhsd_view(s);
    ([dims[0], dims[1], dims[3], dims[2]], [strides[0], strides[1], strides[3], strides[2]])
}

fn io(uid: i64, (dims, strides): ([i64; 4], [i64; 4])) -> TensorPlan {
    TensorPlan { uid, dims, strides, elem: Elem::Io, is_virtual: false, by_value: false }
}

fn scale_tensor() -> TensorPlan {
    TensorPlan { uid: UID_SCALE, dims: [1; 4], strides: [1; 4], elem: Elem::F32, is_virtual: false, by_value: true }
}

/// Dims and strides of a planned tensor.
type View = ([i64; 4], [i64; 4]);

/// `[B, H, S, S]` scores and `[B, H, S, 1]` row statistics (contiguous virtual tensors).
fn score_views(s: &AttentionShape) -> (View, View) {
    let (b, h, n) = (s.batch as i64, s.heads as i64, s.seq as i64);
    (([b, h, n, n], [h * n * n, n * n, n, 1]), ([b, h, n, 1], [h * n, n, 1, 1]))
}

fn virt(uid: i64, (dims, strides): View, elem: Elem) -> TensorPlan {
    TensorPlan { uid, dims, strides, elem, is_virtual: true, by_value: false }
}

/// The composite softmax with statistics cudnn-frontend emits (flash attention: stats, no
/// `1/Z` output): `M = max(x); E = exp(x - M); Z = sum(E); stats = M + log Z; p = E / Z`, with
/// `p` planned as `p_elem`. Virtual ids 103..=108.
fn softmax_into(s: &AttentionShape, x: i64, p: i64, p_elem: Elem, tensors: &mut Vec<TensorPlan>, ops: &mut Vec<OpPlan>) {
    let (full, row) = score_views(s);
    let (max, sub, exp, sum, log, stats) = (103, 104, 105, 106, 107, 108);
    tensors.extend([
        virt(max, row, Elem::F32),
        virt(sub, full, Elem::F32),
        virt(exp, full, Elem::F32),
        virt(sum, row, Elem::F32),
        virt(log, row, Elem::F32),
        virt(stats, row, Elem::F32),
        virt(p, full, p_elem),
    ]);
    ops.extend([
        OpPlan::Reduction { op: Red::Max, x, y: max },
        OpPlan::Pointwise { mode: Pw::Sub, x, b: Some(max), y: sub },
        OpPlan::Pointwise { mode: Pw::Exp, x: sub, b: None, y: exp },
        OpPlan::Reduction { op: Red::Sum, x: exp, y: sum },
        OpPlan::Pointwise { mode: Pw::Log, x: sum, b: None, y: log },
        OpPlan::Pointwise { mode: Pw::Add, x: max, b: Some(log), y: stats },
        OpPlan::Pointwise { mode: Pw::Div, x: exp, b: Some(sum), y: p },
    ]);
}

/// The composite graph cudnn-frontend builds for inference SDPA (no mask, no dropout):
/// `S = Q·Kᵀ; S *= scale; M = max(S); E = exp(S - M); Z = sum(E); stats = M + log Z; P = E / Z; O = P·V`.
pub(crate) fn composite_plan(s: &AttentionShape) -> GraphPlan {
    let (full, _) = score_views(s);
    // Virtual tensor ids (103..=108: the softmax).
    let (s_raw, s_scaled, p) = (101, 102, 109);
    let mut tensors = vec![
        io(UID_Q, bhsd_view(s)),
        io(UID_K, kt_view(s)),
        io(UID_V, bhsd_view(s)),
        io(UID_O, bhsd_view(s)),
        scale_tensor(),
        virt(s_raw, full, Elem::F32),
        virt(s_scaled, full, Elem::F32),
    ];
    let mut ops = vec![OpPlan::Matmul { a: UID_Q, b: UID_K, c: s_raw }, OpPlan::Pointwise { mode: Pw::Mul, x: s_raw, b: Some(UID_SCALE), y: s_scaled }];
    // The probabilities feed the second matmul in the I/O type (cuDNN requires bmm2's A in it).
    softmax_into(s, s_scaled, p, Elem::Io, &mut tensors, &mut ops);
    ops.push(OpPlan::Matmul { a: p, b: UID_V, c: UID_O });
    GraphPlan { tensors, ops }
}

/// The graph cudnn-frontend's FP8 SDPA forward (`SDPAFP8Node` + `MatmulFP8Node`, inference, no
/// mask) decomposes into, which cuDNN's fused FP8 flash-attention engine matches on sm_90:
///
/// `S = Q8·K8ᵀ · scale · descale_q · descale_k` → the composite softmax → `P` (f32);
/// `amax_s = amax(P)`; `P8 = e4m3(P · scale_s)`; `O' = P8·V8 · descale_s · descale_v`;
/// `O = O' · scale_o` (bf16 or E4M3); `amax_o = amax(O')`.
///
/// Q, Kᵀ, V are E4M3 views over `[B, S, H, D]` memory; the six scales are `[1,1,1,1]` f32 device
/// tensors and the two amax outputs `[1,1,1,1]` f32 (all in one scalars buffer, [`Fp8Scalar`]).
pub(crate) fn fp8_plan(s: &AttentionShape, out: Fp8Out) -> GraphPlan {
    let (full, _) = score_views(s);
    let (b, h, n, d) = (s.batch as i64, s.heads as i64, s.seq as i64, s.head_dim as i64);
    let o_full = ([b, h, n, d], [h * n * d, n * d, d, 1]);
    let fp8 = |uid: i64, view: ([i64; 4], [i64; 4])| TensorPlan { elem: Elem::Fp8, ..io(uid, view) };
    let scalar = |which: Fp8Scalar| TensorPlan { uid: which.uid(), dims: [1; 4], strides: [1; 4], elem: Elem::F32, is_virtual: false, by_value: false };
    let out_elem = match out {
        Fp8Out::Bf16 => Elem::Io,
        Fp8Out::Fp8 => Elem::Fp8,
    };
    // Virtual tensor ids (103..=108: the softmax).
    let (s_raw, s_scaled, s_dq, s_dk, p, p8, o_raw, o_ds, o_dv) = (101, 102, 110, 111, 109, 112, 113, 114, 115);
    let mut tensors = vec![
        fp8(UID_Q, bhsd_view(s)),
        fp8(UID_K, kt_view(s)),
        fp8(UID_V, bhsd_view(s)),
        TensorPlan { elem: out_elem, ..io(UID_O, bhsd_view(s)) },
        scale_tensor(),
    ];
    tensors.extend(Fp8Scalar::ALL.map(scalar));
    tensors.extend([virt(s_raw, full, Elem::F32), virt(s_scaled, full, Elem::F32), virt(s_dq, full, Elem::F32), virt(s_dk, full, Elem::F32)]);
    let mul = |x: i64, by: Fp8Scalar, y: i64| OpPlan::Pointwise { mode: Pw::Mul, x, b: Some(by.uid()), y };
    let mut ops = vec![
        OpPlan::Matmul { a: UID_Q, b: UID_K, c: s_raw },
        OpPlan::Pointwise { mode: Pw::Mul, x: s_raw, b: Some(UID_SCALE), y: s_scaled },
        mul(s_scaled, Fp8Scalar::DescaleQ, s_dq),
        mul(s_dq, Fp8Scalar::DescaleK, s_dk),
    ];
    softmax_into(s, s_dk, p, Elem::F32, &mut tensors, &mut ops);
    tensors.extend([virt(p8, full, Elem::Fp8), virt(o_raw, o_full, Elem::F32), virt(o_ds, o_full, Elem::F32), virt(o_dv, o_full, Elem::F32)]);
    ops.extend([
        OpPlan::Reduction { op: Red::Amax, x: p, y: Fp8Scalar::AmaxS.uid() },
        // bmm2's A in Q's type (E4M3), as the frontend sets it.
        mul(p, Fp8Scalar::ScaleS, p8),
        OpPlan::Matmul { a: p8, b: UID_V, c: o_raw },
        mul(o_raw, Fp8Scalar::DescaleS, o_ds),
        mul(o_ds, Fp8Scalar::DescaleV, o_dv),
        mul(o_dv, Fp8Scalar::ScaleO, UID_O),
        OpPlan::Reduction { op: Red::Amax, x: o_dv, y: Fp8Scalar::AmaxO.uid() },
    ]);
    GraphPlan { tensors, ops }
}

/// The dedicated SDPA forward operation (K in its natural `[B, H, S, D]` view).
pub(crate) fn sdpa_op_plan(s: &AttentionShape) -> GraphPlan {
    GraphPlan {
        tensors: vec![io(UID_Q, bhsd_view(s)), io(UID_K, bhsd_view(s)), io(UID_V, bhsd_view(s)), io(UID_O, bhsd_view(s)), scale_tensor()],
        ops: vec![OpPlan::Sdpa { q: UID_Q, k: UID_K, v: UID_V, o: UID_O, scale: UID_SCALE }],
    }
}

// ---------------------------------------------------------------------------------------------
// cuDNN plan.

struct CudnnPlan {
    imp: AttentionImpl,
    handle: Handle,
    plan: Descriptor,
    workspace: usize,
    engine: String,
    /// The by-value scale the variant pack points at (boxed: its address must not move).
    scale: Box<f32>,
    /// cuDNN handles must not execute concurrently from several threads.
    lock: Mutex<()>,
}

impl CudnnPlan {
    fn new(stream: &Arc<CudaStream>, shape: &AttentionShape, imp: AttentionImpl) -> Result<Self, CudaError> {
        let version = cudnn::version()?;
        if imp == AttentionImpl::CudnnSdpaOp && version < 9_13_01 {
            return Err(CudaError::Library {
                name: "cuDNN".into(),
                message: format!("the SDPA forward operation needs cuDNN 9.13.1, found {}", cudnn::format_version(version)),
            });
        }
        if let AttentionImpl::CudnnFp8(_) = imp {
            check_fp8_support(stream, version)?;
        }
        let graph = match imp {
            AttentionImpl::CudnnComposite => composite_plan(shape),
            AttentionImpl::CudnnFp8(out) => fp8_plan(shape, out),
            _ => sdpa_op_plan(shape),
        };
        let io_type = match shape.dtype {
            DType::BF16 => dnn::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
            _ => dnn::cudnnDataType_t::CUDNN_DATA_HALF,
        };
        let handle = Handle::new(stream.cu_stream())?;
        let op_graph = build_graph(&handle, &graph, io_type)?;
        let (plan, workspace, engine) = pick_plan(&handle, &op_graph).map_err(|e| no_engine(shape, e))?;
        let engine = format!("cuDNN {} {imp:?}: {engine}", cudnn::format_version(version));
        tracing::debug!("attention {}: {engine}, workspace {workspace} B", shape.describe());
        let scale = Box::new(1.0 / (shape.head_dim as f32).sqrt());
        Ok(CudnnPlan { imp, handle, plan, workspace, engine, scale, lock: Mutex::new(()) })
    }

    /// `io`: q, k, v, o; `scalars`: the FP8 plan's scalars buffer (ignored by the others).
    unsafe fn run(&self, io: &[u64; 4], scalars: u64, workspace: u64) -> Result<(), CudaError> {
        let scale_ptr = (&*self.scale as *const f32).cast_mut().cast::<c_void>();
        let mut uids = vec![UID_Q, UID_K, UID_V, UID_O, UID_SCALE];
        let mut ptrs: Vec<*mut c_void> = io.iter().map(|&p| p as *mut c_void).collect();
        ptrs.push(scale_ptr);
        if let AttentionImpl::CudnnFp8(_) = self.imp {
            for s in Fp8Scalar::ALL {
                uids.push(s.uid());
                ptrs.push((scalars + s.offset()) as *mut c_void);
            }
        }
        let pack = Descriptor::new(Kind::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
        pack.set_ptrs(Attr::CUDNN_ATTR_VARIANT_PACK_WORKSPACE, &[workspace as *mut c_void])?;
        pack.set_ptrs(Attr::CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, &ptrs)?;
        pack.set_i64s(Attr::CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, &uids)?;
        pack.finalize()?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        cudnn::execute(&self.handle, &self.plan, &pack)
    }
}

/// Oldest cuDNN with the fused FP8 flash-attention forward (cudnn-frontend checks the same).
pub const FP8_MIN_CUDNN: usize = 9_01_00;

/// cuDNN's fused FP8 attention runs on Hopper (sm_90) and newer with cuDNN ≥ 9.1 (typed error otherwise).
fn check_fp8_support(stream: &Arc<CudaStream>, version: usize) -> Result<(), CudaError> {
    let (major, minor) = stream.context().compute_capability().map_err(|e| CudaError::driver("cuDeviceGetAttribute(compute capability)", e))?;
    fp8_support(major, minor, version).map_err(|reason| CudaError::Fp8AttentionUnavailable { reason })
}

/// Why FP8 attention cannot run on compute capability `major.minor` with cuDNN `version` (pure).
pub(crate) fn fp8_support(major: i32, minor: i32, version: usize) -> Result<(), String> {
    if major < 9 {
        return Err(format!("cuDNN's fused FP8 attention needs a Hopper GPU (compute capability 9.0+), this GPU is {major}.{minor}"));
    }
    if version < FP8_MIN_CUDNN {
        return Err(format!("cuDNN's fused FP8 attention needs cuDNN {}, found {}", cudnn::format_version(FP8_MIN_CUDNN), cudnn::format_version(version)));
    }
    Ok(())
}

fn no_engine(shape: &AttentionShape, e: CudaError) -> CudaError {
    if shape.head_dim > 128 {
        // cuDNN's fused forward on pre-Blackwell GPUs covers head dims up to 128 for most shapes.
        CudaError::UnsupportedHeadDim { head_dim: shape.head_dim, message: format!("{}: {e}", shape.describe()) }
    } else {
        e
    }
}

/// Creates the tensor and operation descriptors of `plan` and finalizes the operation graph.
fn build_graph(handle: &Handle, plan: &GraphPlan, io_type: dnn::cudnnDataType_t) -> Result<Descriptor, CudaError> {
    let mut tensors: Vec<(i64, Descriptor)> = Vec::with_capacity(plan.tensors.len());
    for t in &plan.tensors {
        let d = Descriptor::new(Kind::CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
        let ty = match t.elem {
            Elem::Io => io_type,
            Elem::F32 => dnn::cudnnDataType_t::CUDNN_DATA_FLOAT,
            Elem::Fp8 => dnn::cudnnDataType_t::CUDNN_DATA_FP8_E4M3,
        };
        d.set_data_type(Attr::CUDNN_ATTR_TENSOR_DATA_TYPE, ty)?;
        d.set_i64s(Attr::CUDNN_ATTR_TENSOR_DIMENSIONS, &t.dims)?;
        d.set_i64s(Attr::CUDNN_ATTR_TENSOR_STRIDES, &t.strides)?;
        d.set_i64s(Attr::CUDNN_ATTR_TENSOR_UNIQUE_ID, &[t.uid])?;
        d.set_i64s(Attr::CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, &[16])?;
        if t.is_virtual {
            d.set_bool(Attr::CUDNN_ATTR_TENSOR_IS_VIRTUAL, true)?;
        }
        if t.by_value {
            d.set_bool(Attr::CUDNN_ATTR_TENSOR_IS_BY_VALUE, true)?;
        }
        d.finalize()?;
        tensors.push((t.uid, d));
    }
    let get = |uid: i64| -> Result<&Descriptor, CudaError> {
        tensors.iter().find(|(u, _)| *u == uid).map(|(_, d)| d).ok_or_else(|| CudaError::Cudnn {
            call: "attention graph".into(),
            status: "internal".into(),
            message: format!("tensor uid {uid} not planned"),
        })
    };
    let f32_t = dnn::cudnnDataType_t::CUDNN_DATA_FLOAT;
    let mut ops: Vec<Descriptor> = Vec::with_capacity(plan.ops.len());
    // Sub-descriptors (matmul / pointwise / reduction configs) must outlive the graph's finalize.
    let mut configs: Vec<Descriptor> = Vec::new();
    for op in &plan.ops {
        let d = match op {
            OpPlan::Matmul { a, b, c } => {
                let mm = Descriptor::new(Kind::CUDNN_BACKEND_MATMUL_DESCRIPTOR)?;
                mm.set_data_type(Attr::CUDNN_ATTR_MATMUL_COMP_TYPE, f32_t)?;
                mm.finalize()?;
                let d = Descriptor::new(Kind::CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR)?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_MATMUL_ADESC, &[get(*a)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_MATMUL_BDESC, &[get(*b)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_MATMUL_CDESC, &[get(*c)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_MATMUL_DESC, &[&mm])?;
                d.finalize()?;
                configs.push(mm);
                d
            }
            OpPlan::Pointwise { mode, x, b, y } => {
                let pw = Descriptor::new(Kind::CUDNN_BACKEND_POINTWISE_DESCRIPTOR)?;
                pw.set_pointwise_mode(match mode {
                    Pw::Mul => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_MUL,
                    Pw::Sub => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_SUB,
                    Pw::Exp => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_EXP,
                    Pw::Div => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_DIV,
                    Pw::Log => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_LOG,
                    Pw::Add => dnn::cudnnPointwiseMode_t::CUDNN_POINTWISE_ADD,
                })?;
                pw.set_data_type(Attr::CUDNN_ATTR_POINTWISE_MATH_PREC, f32_t)?;
                pw.finalize()?;
                let d = Descriptor::new(Kind::CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR)?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &[&pw])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &[get(*x)?])?;
                if let Some(b) = b {
                    d.set_descs(Attr::CUDNN_ATTR_OPERATION_POINTWISE_BDESC, &[get(*b)?])?;
                }
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_POINTWISE_YDESC, &[get(*y)?])?;
                d.set_f32(Attr::CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, 1.0)?;
                d.set_f32(Attr::CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, 1.0)?;
                d.finalize()?;
                configs.push(pw);
                d
            }
            OpPlan::Reduction { op, x, y } => {
                let r = Descriptor::new(Kind::CUDNN_BACKEND_REDUCTION_DESCRIPTOR)?;
                r.set_reduction_op(match op {
                    Red::Max => dnn::cudnnReduceTensorOp_t::CUDNN_REDUCE_TENSOR_MAX,
                    Red::Sum => dnn::cudnnReduceTensorOp_t::CUDNN_REDUCE_TENSOR_ADD,
                    Red::Amax => dnn::cudnnReduceTensorOp_t::CUDNN_REDUCE_TENSOR_AMAX,
                })?;
                r.set_data_type(Attr::CUDNN_ATTR_REDUCTION_COMP_TYPE, f32_t)?;
                r.finalize()?;
                let d = Descriptor::new(Kind::CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR)?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_REDUCTION_XDESC, &[get(*x)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_REDUCTION_YDESC, &[get(*y)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_REDUCTION_DESC, &[&r])?;
                d.finalize()?;
                configs.push(r);
                d
            }
            OpPlan::Sdpa { q, k, v, o, scale } => {
                let d = Descriptor::new(Kind::CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR)?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, &[get(*q)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, &[get(*k)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, &[get(*v)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, &[get(*o)?])?;
                d.set_descs(Attr::CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, &[get(*scale)?])?;
                d.finalize()?;
                d
            }
        };
        ops.push(d);
    }
    let graph = Descriptor::new(Kind::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
    graph.set_handle(Attr::CUDNN_ATTR_OPERATIONGRAPH_HANDLE, handle)?;
    graph.set_descs(Attr::CUDNN_ATTR_OPERATIONGRAPH_OPS, &ops.iter().collect::<Vec<_>>())?;
    graph.finalize()?;
    drop(configs);
    Ok(graph)
}

/// Heuristics mode A → engine configs in rank order → the first that finalizes into a plan.
/// Returns the plan, its workspace size and a description of its engine.
fn pick_plan(handle: &Handle, graph: &Descriptor) -> Result<(Descriptor, usize, String), CudaError> {
    let engines_total = graph.get_i64(Attr::CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT).unwrap_or(-1);
    let heur = Descriptor::new(Kind::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    heur.set_descs(Attr::CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, &[graph])?;
    heur.set_heur_mode(dnn::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_A)?;
    heur.finalize()?;
    let configs = heur.get_descs(Attr::CUDNN_ATTR_ENGINEHEUR_RESULTS, Kind::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, None)?;
    let mut failures = Vec::new();
    for (i, cfg) in configs.iter().enumerate() {
        let attempt = || -> Result<(Descriptor, usize), CudaError> {
            let plan = Descriptor::new(Kind::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
            plan.set_handle(Attr::CUDNN_ATTR_EXECUTION_PLAN_HANDLE, handle)?;
            plan.set_descs(Attr::CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[cfg])?;
            plan.finalize()?;
            let ws = plan.get_i64(Attr::CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?;
            Ok((plan, ws.max(0) as usize))
        };
        match attempt() {
            Ok((plan, ws)) => {
                let engine = describe_engine(cfg).unwrap_or_else(|e| format!("engine ? ({e})"));
                let desc = format!("config {i} of {} from heuristics (graph has {engines_total} engines), {engine}", configs.len());
                return Ok((plan, ws, desc));
            }
            Err(e) => failures.push(format!("config {i}: {e}")),
        }
    }
    Err(CudaError::Cudnn {
        call: "execution plan".into(),
        status: "no engine".into(),
        message: format!(
            "heuristics returned {} engine configs (graph has {engines_total} engines), none finalized{}{}",
            configs.len(),
            if failures.is_empty() { "" } else { ": " },
            failures.join(" | ")
        ),
    })
}

fn describe_engine(cfg: &Descriptor) -> Result<String, CudaError> {
    let engine = cfg.get_descs(Attr::CUDNN_ATTR_ENGINECFG_ENGINE, Kind::CUDNN_BACKEND_ENGINE_DESCRIPTOR, Some(1))?;
    let engine = engine.first().ok_or_else(|| CudaError::Cudnn { call: "engine of config".into(), status: "empty".into(), message: String::new() })?;
    let index = engine.get_i64(Attr::CUDNN_ATTR_ENGINE_GLOBAL_INDEX)?;
    let notes = engine.get_behavior_notes().unwrap_or_default();
    Ok(format!("engine {index} [{}]", notes.join(", ")))
}

// ---------------------------------------------------------------------------------------------
// NVRTC kernels: the fp32 attention path and fp32-accumulating references for bf16 / fp16.

/// Warps (query rows) per block and keys per shared-memory tile of the NVRTC kernels.
pub(crate) const KERNEL_WARPS: usize = 4;
pub(crate) const KERNEL_TILE: usize = 32;

/// Kernel names in `kernels/attention.cu` (compiled through [`super::nvrtc`]'s disk cache).
pub const KERNEL_NAMES: [&str; 3] = ["attention_f32", "attention_ref_bf16", "attention_ref_f16"];

/// Dynamic shared memory of the kernels for head dim `d` (bytes).
pub(crate) fn kernel_smem_bytes(d: usize) -> usize {
    (KERNEL_TILE * (d + 1) + KERNEL_TILE * d + KERNEL_WARPS * d) * 4
}

/// Launch geometry of the kernels for `shape`.
pub(crate) fn kernel_launch(shape: &AttentionShape) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (shape.seq.div_ceil(KERNEL_WARPS) as u32, (shape.batch * shape.heads) as u32, 1),
        block_dim: ((KERNEL_WARPS * 32) as u32, 1, 1),
        shared_mem_bytes: kernel_smem_bytes(shape.head_dim) as u32,
    }
}

/// Loads one of [`KERNEL_NAMES`] for the stream's device (compiled for its compute capability),
/// with enough dynamic shared memory allowed for head dim `head_dim`.
pub fn load_kernel(stream: &Arc<CudaStream>, name: &str, head_dim: usize) -> Result<CudaFunction, CudaError> {
    let module = super::nvrtc::load_module(stream, super::nvrtc::source("attention.cu"))?;
    let func = module.load_function(name).map_err(|e| CudaError::driver(format!("cuModuleGetFunction({name})"), e))?;
    let smem = kernel_smem_bytes(head_dim);
    if smem > 48 * 1024 {
        use cudarc::driver::sys::CUfunction_attribute_enum as A;
        func.set_attribute(A::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| CudaError::driver(format!("cuFuncSetAttribute({name}, max dynamic shared memory {smem})"), e))?;
    }
    Ok(func)
}

/// Enqueues one of the NVRTC kernels: `o` (fp32) = attention of q, k, v (the kernel's input type).
///
/// # Safety
/// As [`Attention::run`]; `o` holds `shape.elements()` fp32 values.
pub unsafe fn launch_kernel(stream: &Arc<CudaStream>, func: &CudaFunction, shape: &AttentionShape, q: u64, k: u64, v: u64, o: u64) -> Result<(), CudaError> {
    let (b, h, s, d) = (shape.batch as i32, shape.heads as i32, shape.seq as i32, shape.head_dim as i32);
    let scale = 1.0f32 / (shape.head_dim as f32).sqrt();
    let mut launch = stream.launch_builder(func);
    launch.arg(&q).arg(&k).arg(&v).arg(&o).arg(&b).arg(&h).arg(&s).arg(&d).arg(&scale);
    launch.launch(kernel_launch(shape)).map(|_| ()).map_err(|e| CudaError::driver("cuLaunchKernel(attention)", e))
}

struct KernelPlan {
    func: CudaFunction,
}

impl KernelPlan {
    fn new(stream: &Arc<CudaStream>, shape: &AttentionShape) -> Result<Self, CudaError> {
        Ok(KernelPlan { func: load_kernel(stream, "attention_f32", shape.head_dim)? })
    }

    unsafe fn run(&self, stream: &Arc<CudaStream>, shape: &AttentionShape, q: u64, k: u64, v: u64, o: u64) -> Result<(), CudaError> {
        launch_kernel(stream, &self.func, shape, q, k, v, o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: usize, heads: usize, seq: usize, head_dim: usize) -> AttentionShape {
        AttentionShape { batch, heads, seq, head_dim, dtype: DType::BF16 }
    }

    /// Element offset of (b, h, s, d) through a planned view.
    fn offset(strides: &[i64; 4], idx: [i64; 4]) -> i64 {
        (0..4).map(|i| strides[i] * idx[i]).sum()
    }

    #[test]
    fn bhsd_view_addresses_bshd_memory() {
        let s = shape(2, 3, 5, 8);
        let (dims, strides) = bhsd_view(&s);
        assert_eq!(dims, [2, 3, 5, 8]);
        // Row-major [B, S, H, D]: ((b*S + s)*H + h)*D + d.
        for (b, h, n, d) in [(0, 0, 0, 0), (1, 2, 4, 7), (1, 0, 3, 5), (0, 2, 1, 1)] {
            let want = ((b * 5 + n) * 3 + h) * 8 + d;
            assert_eq!(offset(&strides, [b, h, n, d]), want, "b={b} h={h} s={n} d={d}");
        }
    }

    #[test]
    fn kt_view_is_the_transpose() {
        let s = shape(2, 3, 5, 8);
        let (kd, ks) = kt_view(&s);
        let (_, qs) = bhsd_view(&s);
        assert_eq!(kd, [2, 3, 8, 5]);
        // Kᵀ[b, h, d, s] is K[b, h, s, d].
        for (b, h, n, d) in [(1, 2, 4, 7), (0, 1, 3, 2)] {
            assert_eq!(offset(&ks, [b, h, d, n]), offset(&qs, [b, h, n, d]));
        }
    }

    /// Unique ids; every op refers to planned tensors; every virtual tensor is produced exactly once.
    fn assert_consistent(g: &GraphPlan) {
        let mut uids: Vec<i64> = g.tensors.iter().map(|t| t.uid).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), g.tensors.len(), "unique tensor ids");
        let mut produced = Vec::new();
        for op in &g.ops {
            let (ins, out) = match *op {
                OpPlan::Matmul { a, b, c } => (vec![a, b], c),
                OpPlan::Pointwise { x, b, y, .. } => (std::iter::once(x).chain(b).collect(), y),
                OpPlan::Reduction { x, y, .. } => (vec![x], y),
                OpPlan::Sdpa { .. } => unreachable!(),
            };
            for u in ins.iter().chain(std::iter::once(&out)) {
                assert!(g.tensor(*u).is_some(), "uid {u} planned");
            }
            // Inputs are produced before they are read (the ops are in data-flow order).
            for u in &ins {
                let t = g.tensor(*u).unwrap();
                assert!(!t.is_virtual || produced.contains(u), "virtual {u} read before it is produced");
            }
            produced.push(out);
        }
        for t in g.tensors.iter().filter(|t| t.is_virtual) {
            assert_eq!(produced.iter().filter(|&&u| u == t.uid).count(), 1, "virtual {} produced once", t.uid);
        }
    }

    #[test]
    fn composite_plan_is_consistent() {
        let s = shape(1, 24, 4608, 128);
        let g = composite_plan(&s);
        assert_consistent(&g);
        // Matmul shapes: [B,H,S,D] x [B,H,D,S] -> [B,H,S,S]; [B,H,S,S] x [B,H,S,D] -> [B,H,S,D].
        let OpPlan::Matmul { a, b, c } = g.ops[0] else { panic!("first op is Q·Kᵀ") };
        let (ta, tb, tc) = (g.tensor(a).unwrap(), g.tensor(b).unwrap(), g.tensor(c).unwrap());
        assert_eq!((ta.dims[2], ta.dims[3], tb.dims[2], tb.dims[3]), (4608, 128, 128, 4608));
        assert_eq!(tc.dims, [1, 24, 4608, 4608]);
        assert_eq!(tc.strides, [24 * 4608 * 4608, 4608 * 4608, 4608, 1]);
        let OpPlan::Matmul { a, c, .. } = *g.ops.last().unwrap() else { panic!("last op is P·V") };
        assert_eq!(g.tensor(a).unwrap().elem, Elem::Io, "P enters bmm2 in the I/O type");
        assert_eq!(c, UID_O);
        // Row statistics are [B,H,S,1].
        for op in &g.ops {
            if let OpPlan::Reduction { y, .. } = op {
                assert_eq!(g.tensor(*y).unwrap().dims, [1, 24, 4608, 1]);
                assert_eq!(g.tensor(*y).unwrap().strides, [24 * 4608, 4608, 1, 1]);
            }
        }
        let scale = g.tensor(UID_SCALE).unwrap();
        assert!(scale.by_value && !scale.is_virtual && scale.elem == Elem::F32);
        // The variant pack's tensors are exactly the non-virtual ones.
        let mut io: Vec<i64> = g.tensors.iter().filter(|t| !t.is_virtual).map(|t| t.uid).collect();
        io.sort();
        assert_eq!(io, vec![UID_Q, UID_K, UID_V, UID_O, UID_SCALE]);
    }

    /// The op sequence of cudnn-frontend's FP8 SDPA forward (inference, no mask).
    #[test]
    fn fp8_plan_follows_the_frontend_graph() {
        let s = shape(1, 24, 4608, 128);
        for out in [Fp8Out::Bf16, Fp8Out::Fp8] {
            let g = fp8_plan(&s, out);
            assert_consistent(&g);
            let kinds: Vec<String> = g
                .ops
                .iter()
                .map(|op| match op {
                    OpPlan::Matmul { .. } => "matmul".to_string(),
                    OpPlan::Pointwise { mode, .. } => format!("{mode:?}").to_lowercase(),
                    OpPlan::Reduction { op, .. } => format!("{op:?}").to_lowercase(),
                    OpPlan::Sdpa { .. } => "sdpa".into(),
                })
                .collect();
            let want = [
                "matmul", "mul", "mul", "mul", // Q·Kᵀ, scale, descale_q, descale_k
                "max", "sub", "exp", "sum", "log", "add", "div", // softmax with stats
                "amax", "mul", // amax_s, scale_s
                "matmul", "mul", "mul", "mul", "amax", // P·V, descale_s, descale_v, scale_o, amax_o
            ];
            assert_eq!(kinds, want, "{out:?}");
            // The multipliers, in order.
            let muls: Vec<i64> = g.ops.iter().filter_map(|op| if let OpPlan::Pointwise { mode: Pw::Mul, b, .. } = op { *b } else { None }).collect();
            let sc = |x: Fp8Scalar| x.uid();
            assert_eq!(
                muls,
                vec![
                    UID_SCALE,
                    sc(Fp8Scalar::DescaleQ),
                    sc(Fp8Scalar::DescaleK),
                    sc(Fp8Scalar::ScaleS),
                    sc(Fp8Scalar::DescaleS),
                    sc(Fp8Scalar::DescaleV),
                    sc(Fp8Scalar::ScaleO)
                ]
            );
            // Data types: E4M3 q, k, v; O as asked; P in f32 into amax_s, E4M3 into bmm2.
            for u in [UID_Q, UID_K, UID_V] {
                let t = g.tensor(u).unwrap();
                assert!(t.elem == Elem::Fp8 && !t.is_virtual && !t.by_value, "uid {u}");
            }
            let o = g.tensor(UID_O).unwrap();
            assert_eq!(o.elem, if out == Fp8Out::Bf16 { Elem::Io } else { Elem::Fp8 });
            assert_eq!((o.dims, o.strides), bhsd_view(&s));
            assert_eq!((g.tensor(UID_K).unwrap().dims, g.tensor(UID_K).unwrap().strides), kt_view(&s));
            let OpPlan::Pointwise { mode: Pw::Div, y: p, .. } = g.ops[10] else { panic!("op 10 is the softmax division") };
            assert_eq!(g.tensor(p).unwrap().elem, Elem::F32);
            assert_eq!(g.ops[11], OpPlan::Reduction { op: Red::Amax, x: p, y: Fp8Scalar::AmaxS.uid() });
            let OpPlan::Pointwise { x, y: p8, .. } = g.ops[12] else { panic!("op 12 is scale_s") };
            assert_eq!(x, p);
            let t = g.tensor(p8).unwrap();
            assert!(t.is_virtual && t.elem == Elem::Fp8, "P enters bmm2 in E4M3 (Q's type)");
            let OpPlan::Matmul { a, b, .. } = g.ops[13] else { panic!("op 13 is P·V") };
            assert_eq!((a, b), (p8, UID_V));
            // amax_o reads the tensor scale_o multiplies (after descale_v), O is scale_o's output.
            let OpPlan::Pointwise { x: before_o, y, .. } = g.ops[16] else { panic!("op 16 is scale_o") };
            assert_eq!(y, UID_O);
            assert_eq!(g.ops[17], OpPlan::Reduction { op: Red::Amax, x: before_o, y: Fp8Scalar::AmaxO.uid() });
            assert_eq!(g.tensor(before_o).unwrap().dims, [1, 24, 4608, 128]);
            // Scalars: [1,1,1,1] f32 device tensors (not by value), ids in buffer order.
            for (i, which) in Fp8Scalar::ALL.into_iter().enumerate() {
                let t = g.tensor(which.uid()).unwrap();
                assert!(t.dims == [1; 4] && t.elem == Elem::F32 && !t.is_virtual && !t.by_value, "{which:?}");
                assert_eq!(which.uid(), UID_FP8_SCALARS + i as i64);
                assert_eq!(which.offset(), 16 * i as u64, "16-byte aligned scalars");
            }
            // The variant pack's tensors are exactly the non-virtual ones: q, k, v, o, the scale and the 8 scalars.
            let mut io: Vec<i64> = g.tensors.iter().filter(|t| !t.is_virtual).map(|t| t.uid).collect();
            io.sort();
            let mut want: Vec<i64> = vec![UID_Q, UID_K, UID_V, UID_O, UID_SCALE];
            want.extend(Fp8Scalar::ALL.map(Fp8Scalar::uid));
            assert_eq!(io, want);
            let scale = g.tensor(UID_SCALE).unwrap();
            assert!(scale.by_value && scale.elem == Elem::F32);
        }
    }

    #[test]
    fn fp8_needs_hopper_and_cudnn_9_1() {
        assert!(fp8_support(9, 0, 9_19_00).is_ok());
        assert!(fp8_support(10, 0, 9_01_00).is_ok());
        let ada = fp8_support(8, 9, 9_19_00).unwrap_err();
        assert!(ada.contains("8.9") && ada.contains("Hopper"), "{ada}");
        let old = fp8_support(9, 0, 9_00_00).unwrap_err();
        assert!(old.contains("9.1.0") && old.contains("9.0.0"), "{old}");
    }

    #[test]
    fn fp8_runs_bf16_only() {
        let s = shape(1, 2, 24, 128);
        assert!(validate(&s, AttentionImpl::CudnnFp8(Fp8Out::Bf16)).is_ok());
        for dtype in [DType::F16, DType::F32] {
            let e = validate(&AttentionShape { dtype, ..s }, AttentionImpl::CudnnFp8(Fp8Out::Fp8)).unwrap_err();
            assert!(matches!(e, CudaError::Input { .. }), "{e}");
        }
    }

    #[test]
    fn sdpa_op_plan_uses_natural_k() {
        let s = shape(2, 24, 1536, 128);
        let g = sdpa_op_plan(&s);
        assert_eq!(g.tensor(UID_K).unwrap().dims, [2, 24, 1536, 128]);
        assert_eq!(g.tensor(UID_K).unwrap().strides, g.tensor(UID_Q).unwrap().strides);
        assert_eq!(g.ops.len(), 1);
    }

    #[test]
    fn head_dim_limits_are_typed() {
        for (d, ok) in [(32, true), (128, true), (256, true), (264, false), (60, false)] {
            let r = validate(&shape(1, 2, 24, d), AttentionImpl::CudnnComposite);
            assert_eq!(r.is_ok(), ok, "head dim {d}");
            if !ok {
                assert!(matches!(r, Err(CudaError::UnsupportedHeadDim { head_dim, .. }) if head_dim == d));
            }
        }
        let f32_on_cudnn = AttentionShape { dtype: DType::F32, ..shape(1, 2, 24, 32) };
        assert!(validate(&f32_on_cudnn, AttentionImpl::CudnnComposite).is_err());
        assert!(validate(&f32_on_cudnn, AttentionImpl::KernelF32).is_ok());
    }

    #[test]
    fn plans_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Attention>();
    }

    #[test]
    fn kernel_launch_geometry() {
        let s = shape(2, 24, 4608, 128);
        let cfg = kernel_launch(&s);
        assert_eq!(cfg.grid_dim, (1152, 48, 1));
        assert_eq!(cfg.block_dim, (128, 1, 1));
        assert_eq!(kernel_smem_bytes(128), (32 * 129 + 32 * 128 + 4 * 128) * 4);
        assert!(kernel_smem_bytes(MAX_HEAD_DIM) <= 227 * 1024, "fits Hopper/Ampere opt-in shared memory");
    }

    /// NVRTC compiles the kernels for every architecture the backend targets (no GPU needed; needs
    /// libnvrtc, e.g. pip nvidia-cuda-nvrtc, on the library path — the test says how to get it otherwise).
    #[test]
    fn kernels_compile_for_sm80_sm89_sm90() {
        super::super::nvrtc::assert_compiles("attention.cu", &[80, 89, 90], &KERNEL_NAMES);
    }
}

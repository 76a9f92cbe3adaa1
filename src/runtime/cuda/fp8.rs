//! FP8 (E4M3) GEMMs for the CUDA backend: `Y[M, N] (bf16) = (X[M, K] · W[N, K]ᵀ) · sx · sw (+ bias[N])`
//! through cuBLASLt's raw bindings, and the NVRTC kernels that quantize bf16 activations to E4M3.
//!
//! Operands as the exporter stores them (`crate::onnx::fp8`): W is the E4M3 weight `[N, K]`
//! row-major (`out_features × in_features`), dequantized as `w · scale` with one fp32 scale per
//! tensor or per output channel (row of W); X is the activation `[M, K]` row-major, quantized as
//! `e4m3(x / sx)` with `sx = amax / 448` (static from the engine's calibration, or dynamic from
//! this call's amax). Both scales live in device memory, so a whole step can be graph-captured.
//!
//! Layout: cuBLASLt is column-major and FP8 on Hopper only runs the "TN" form (op(A) transposed,
//! op(B) not, both K-contiguous). Row-major `Y = X·Wᵀ` is column-major `Yᵀ[N, M] = W·Xᵀ`, so
//! cuBLASLt's **A is W** (`[K, N]`, ld K, TRANSA = T), its **B is X** (`[K, M]`, ld K, TRANSB = N)
//! and D is Y (`[N, M]`, ld N). Hence the weight scale is cuBLASLt's A scale, the activation
//! scale its B scale, and a per-output-channel weight scale is a vector along cuBLASLt's M (the
//! rows of op(A)): `CUBLASLT_MATMUL_DESC_A_SCALE_MODE = OUTER_VEC_32F` (cuBLAS ≥ 12.9).
//!
//! Per-channel scales: [`ChannelImpl::OuterVector`] when the library accepts it for the shape,
//! else [`ChannelImpl::Epilogue`]: the GEMM runs with the activation scale only and no bias, and
//! one NVRTC kernel multiplies every column by its scale and adds the bias in place (one extra
//! read + write of Y). The algorithm is cuBLASLt's heuristic pick, chosen once per plan.
//!
//! Measured on the H200 (2026-11-29, cuBLASLt 13.1, `tests/cuda_fp8.rs`): per-tensor E4M3 GEMMs
//! match the dequantized fp32 reference at 1.7e-3 relative L2 and take 43.1 ms for one FLUX.1
//! step's GEMMs at 1024² (39.2 with fast accumulation); the outer-vector scale mode is rejected
//! there (`CUBLAS_STATUS_INVALID_VALUE`), so per-channel scales take the epilogue kernel (62.1 ms).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

pub use super::gemm::LtHandle;
use super::gemm::{ck, heuristic_algos, matrix_layout, set_desc};
use super::CudaError;

/// Largest finite E4M3 value; activation scales are `amax / E4M3_MAX`.
pub const E4M3_MAX: f32 = 448.0;
/// Most workspace a plan may ask for (bytes).
pub const MAX_WORKSPACE: usize = 32 << 20;
/// Blocks of the dynamic amax pass: the partial-max buffer holds this many f32.
pub const AMAX_BLOCKS: usize = 1024;
const THREADS: u32 = 256;

/// `CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F` / `..._OUTER_VEC_32F` (cublasLt.h, cuBLAS ≥ 12.9).
const SCALE_SCALAR_32F: i32 = 0;
const SCALE_OUTER_VEC_32F: i32 = 3;

/// How the weight is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightScaling {
    /// One fp32 scale for the whole weight.
    PerTensor,
    /// One fp32 scale per output channel (row of W, `N` values).
    PerChannel,
}

/// How a per-channel weight scale is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelImpl {
    /// Per-tensor weight: cuBLASLt's scalar A scale.
    Scalar,
    /// cuBLASLt's outer-vector A scale (fused in the GEMM).
    OuterVector,
    /// The GEMM without the weight scale and bias, then the column-scaling kernel.
    Epilogue,
}

/// One FP8 GEMM shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fp8Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub weight: WeightScaling,
    pub bias: bool,
    /// Hopper's fast FP8 accumulation (`CUBLASLT_MATMUL_DESC_FAST_ACCUM`): faster, fewer
    /// intermediate promotions to fp32.
    pub fast_accum: bool,
}

impl Fp8Shape {
    pub fn new(m: usize, n: usize, k: usize, weight: WeightScaling) -> Self {
        Fp8Shape { m, n, k, weight, bias: true, fast_accum: false }
    }

    fn describe(&self) -> String {
        format!(
            "FP8 GEMM m={} n={} k={} {:?}{}{}",
            self.m,
            self.n,
            self.k,
            self.weight,
            if self.bias { " +bias" } else { "" },
            if self.fast_accum { " fast-accum" } else { "" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side planning (pure; unit-tested without a GPU).

/// A column-major cuBLASLt matrix layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub rows: u64,
    pub cols: u64,
    pub ld: i64,
    pub fp8: bool,
}

/// Everything the descriptors of one plan are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GemmPlan {
    /// cuBLASLt A = W, B = X, D = Y.
    pub a: Layout,
    pub b: Layout,
    pub d: Layout,
    pub trans_a: bool,
    pub trans_b: bool,
    /// Scale modes of A (weight) and B (activation); `None`: no scale pointer (1).
    pub a_scale: Option<i32>,
    pub b_scale: Option<i32>,
    /// Bias epilogue inside the GEMM.
    pub gemm_bias: bool,
    pub channel: ChannelImpl,
}

/// Checks the shape against cuBLASLt's FP8 requirements (K and the leading dimensions multiples
/// of 16 bytes, i.e. 16 E4M3 / 8 bf16 elements).
pub(crate) fn validate(s: &Fp8Shape) -> Result<(), CudaError> {
    if s.m == 0 || s.n == 0 || s.k == 0 {
        return Err(CudaError::Input { tensor: "fp8 gemm".into(), message: format!("{}: empty shape", s.describe()) });
    }
    if !s.k.is_multiple_of(16) || !s.n.is_multiple_of(8) {
        return Err(CudaError::Input {
            tensor: "fp8 gemm".into(),
            message: format!("{}: FP8 GEMMs need K a multiple of 16 and N a multiple of 8 (16-byte rows)", s.describe()),
        });
    }
    if s.m > i32::MAX as usize || s.n > i32::MAX as usize || s.k > i32::MAX as usize {
        return Err(CudaError::Input { tensor: "fp8 gemm".into(), message: format!("{}: dimension beyond i32", s.describe()) });
    }
    Ok(())
}

/// The TN plan for `s` with per-channel scales applied by `channel` (ignored for per-tensor).
pub(crate) fn plan(s: &Fp8Shape, channel: ChannelImpl) -> GemmPlan {
    let (m, n, k) = (s.m as u64, s.n as u64, s.k as u64);
    let channel = if s.weight == WeightScaling::PerTensor { ChannelImpl::Scalar } else { channel };
    let (a_scale, gemm_bias) = match channel {
        ChannelImpl::Scalar => (Some(SCALE_SCALAR_32F), s.bias),
        ChannelImpl::OuterVector => (Some(SCALE_OUTER_VEC_32F), s.bias),
        ChannelImpl::Epilogue => (None, false),
    };
    GemmPlan {
        a: Layout { rows: k, cols: n, ld: k as i64, fp8: true },
        b: Layout { rows: k, cols: m, ld: k as i64, fp8: true },
        d: Layout { rows: n, cols: m, ld: n as i64, fp8: false },
        trans_a: true,
        trans_b: false,
        a_scale,
        b_scale: Some(SCALE_SCALAR_32F),
        gemm_bias,
        channel,
    }
}

/// Grid of the elementwise kernels over `n` items (grid-stride loops; capped).
pub(crate) fn elementwise_grid(n: usize) -> u32 {
    (n.div_ceil(THREADS as usize)).clamp(1, 132 * 32) as u32
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt (the handle and the checked helpers are shared with the bf16 GEMMs of `gemm`).

/// Owned descriptors of one plan (freed on drop, also when planning fails half-way).
struct Descs {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each was created once by `Descs::build`.
        unsafe {
            for l in &self.layouts {
                let _ = lt::destroy_matrix_layout(*l);
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
        }
    }
}

impl Descs {
    fn build(p: &GemmPlan, fast_accum: bool) -> Result<Self, CudaError> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        let desc = ck("cublasLtMatmulDescCreate", lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F))?;
        let mut d = Descs { desc, layouts: Vec::new() };
        for l in [p.a, p.b, p.d] {
            let ty = if l.fp8 { sys::cudaDataType::CUDA_R_8F_E4M3 } else { sys::cudaDataType::CUDA_R_16BF };
            d.layouts.push(matrix_layout(ty, l.rows as usize, l.cols as usize, l.ld as usize, 1, 0)?);
        }
        // cublasOperation_t (not in cudarc's cuBLASLt bindings): CUBLAS_OP_N = 0, CUBLAS_OP_T = 1.
        let op = |t: bool| -> i32 { i32::from(t) };
        // SAFETY: every value has the attribute's documented type (i32 enums, i8 flag, pointers).
        unsafe {
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &op(p.trans_a), "TRANSA")?;
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_TRANSB, &op(p.trans_b), "TRANSB")?;
            if let Some(mode) = p.a_scale {
                if mode != SCALE_SCALAR_32F {
                    set_desc(desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, "A_SCALE_MODE")?;
                }
            }
            if let Some(mode) = p.b_scale {
                if mode != SCALE_SCALAR_32F {
                    set_desc(desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, "B_SCALE_MODE")?;
                }
            }
            let epi = if p.gemm_bias { sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS } else { sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT };
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, "EPILOGUE")?;
            if p.gemm_bias {
                let bt = sys::cudaDataType::CUDA_R_16BF;
                set_desc(desc, A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, "BIAS_DATA_TYPE")?;
            }
            let fast: i8 = fast_accum.into();
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, "FAST_ACCUM")?;
        }
        Ok(d)
    }

    /// Sets the per-call pointers (scales, bias).
    unsafe fn set_pointers(&self, p: &GemmPlan, a_scale: u64, b_scale: u64, bias: u64) -> Result<(), CudaError> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        if p.a_scale.is_some() {
            set_desc(self.desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, "A_SCALE_POINTER")?;
        }
        if p.b_scale.is_some() {
            set_desc(self.desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, "B_SCALE_POINTER")?;
        }
        if p.gemm_bias {
            set_desc(self.desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, "BIAS_POINTER")?;
        }
        Ok(())
    }
}

/// One FP8 GEMM plan: descriptors and the heuristic's algorithm, built once per shape; `run`
/// only enqueues work.
pub struct Fp8Gemm {
    shape: Fp8Shape,
    plan: GemmPlan,
    handle: Arc<LtHandle>,
    descs: Descs,
    algo: sys::cublasLtMatmulAlgo_t,
    workspace: usize,
    stream: Arc<CudaStream>,
    kernels: Option<Arc<Fp8Kernels>>,
    /// Serializes the pointer attributes and the call (the descriptor is shared state).
    lock: std::sync::Mutex<()>,
}

// SAFETY: the raw descriptors are only touched under `lock`.
unsafe impl Send for Fp8Gemm {}
unsafe impl Sync for Fp8Gemm {}

impl std::fmt::Debug for Fp8Gemm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fp8Gemm").field("shape", &self.shape).field("channel", &self.plan.channel).field("workspace", &self.workspace).finish()
    }
}

impl Fp8Gemm {
    /// Plans `shape` (per-channel: the outer-vector scale if the library takes it, else the epilogue kernel).
    pub fn new(handle: &Arc<LtHandle>, stream: &Arc<CudaStream>, shape: Fp8Shape) -> Result<Self, CudaError> {
        if shape.weight == WeightScaling::PerTensor {
            return Self::with_channel_impl(handle, stream, shape, ChannelImpl::Scalar);
        }
        match Self::with_channel_impl(handle, stream, shape, ChannelImpl::OuterVector) {
            Ok(g) => Ok(g),
            Err(outer) => {
                tracing::info!("{}: cuBLASLt outer-vector scaling unavailable ({outer}); per-channel scales by the epilogue kernel", shape.describe());
                Self::with_channel_impl(handle, stream, shape, ChannelImpl::Epilogue)
            }
        }
    }

    /// Plans `shape` with one given per-channel implementation (tests compare them).
    pub fn with_channel_impl(handle: &Arc<LtHandle>, stream: &Arc<CudaStream>, shape: Fp8Shape, channel: ChannelImpl) -> Result<Self, CudaError> {
        validate(&shape)?;
        stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (FP8 GEMM plan)", e))?;
        let plan = plan(&shape, channel);
        let descs = Descs::build(&plan, shape.fast_accum)?;
        let (algo, workspace) = heuristic(handle, &descs, &plan).map_err(|e| match e {
            CudaError::Cublas { call, status } => CudaError::Cublas { call: format!("{call} ({}, {:?})", shape.describe(), plan.channel), status },
            e => e,
        })?;
        let kernels = if plan.channel == ChannelImpl::Epilogue { Some(Fp8Kernels::load(stream)?) } else { None };
        Ok(Fp8Gemm { shape, plan, handle: handle.clone(), descs, algo, workspace, stream: stream.clone(), kernels, lock: std::sync::Mutex::new(()) })
    }

    pub fn shape(&self) -> Fp8Shape {
        self.shape
    }
    pub fn channel_impl(&self) -> ChannelImpl {
        self.plan.channel
    }
    /// Device workspace `run` needs (bytes).
    pub fn workspace_bytes(&self) -> usize {
        self.workspace
    }

    /// Enqueues `y = (x · wᵀ) · x_scale · w_scale (+ bias)`.
    ///
    /// # Safety
    /// Device pointers: `x` E4M3 `[m, k]`, `w` E4M3 `[n, k]`, `y` bf16 `[m, n]`, `x_scale` one f32,
    /// `w_scale` one f32 (per tensor) or `n` f32 (per channel), `bias` `n` bf16 (0 when the shape
    /// has none), `workspace` [`Self::workspace_bytes`] bytes; all 16-byte aligned and valid until
    /// the stream has run the work.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(&self, x: u64, x_scale: u64, w: u64, w_scale: u64, bias: u64, y: u64, workspace: u64) -> Result<(), CudaError> {
        if self.shape.bias && bias == 0 {
            return Err(CudaError::Input { tensor: "bias".into(), message: format!("{}: planned with a bias, none given", self.shape.describe()) });
        }
        self.stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (FP8 GEMM)", e))?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.descs.set_pointers(&self.plan, w_scale, x_scale, bias)?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let l = &self.descs.layouts;
        ck(
            "cublasLtMatmul",
            lt::matmul(
                self.handle.0,
                self.descs.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                w as *const c_void,
                l[0],
                x as *const c_void,
                l[1],
                y as *const c_void,
                l[2],
                y as *mut c_void,
                l[2],
                &self.algo,
                workspace as *mut c_void,
                self.workspace,
                self.stream.cu_stream() as sys::cudaStream_t,
            ),
        )
        .map_err(|e| match e {
            CudaError::Cublas { call, status } => CudaError::Cublas { call: format!("{call} ({})", self.shape.describe()), status },
            e => e,
        })?;
        if let Some(k) = &self.kernels {
            k.scale_columns(y, w_scale, if self.shape.bias { bias } else { 0 }, self.shape.m, self.shape.n)?;
        }
        Ok(())
    }
}

/// cuBLASLt's heuristic: the first algorithm it ranks that fits [`MAX_WORKSPACE`].
fn heuristic(handle: &LtHandle, descs: &Descs, p: &GemmPlan) -> Result<(sys::cublasLtMatmulAlgo_t, usize), CudaError> {
    let l = &descs.layouts;
    // SAFETY: the descriptors are live.
    let found = unsafe { heuristic_algos(handle, descs.desc, (l[0], l[1], l[2], l[2]), MAX_WORKSPACE, None, 8) }.map_err(|e| match e {
        CudaError::Cublas { call, status } => CudaError::Cublas { call: format!("{call} (scale modes A {:?} B {:?})", p.a_scale, p.b_scale), status },
        e => e,
    })?;
    Ok(found[0])
}

/// The strided quantization kernels read 16-byte vectors of 8 bf16 and write 8-byte vectors.
pub(crate) fn check_rows(x: u64, ldx: usize, q: u64, ldq: usize, cols: usize) -> Result<(), CudaError> {
    if !cols.is_multiple_of(8) || !ldx.is_multiple_of(8) || !ldq.is_multiple_of(8) || !x.is_multiple_of(16) || !q.is_multiple_of(8) {
        return Err(CudaError::Input {
            tensor: "fp8 quantize".into(),
            message: format!("{cols} columns, row strides {ldx} / {ldq}, addresses {x:#x} / {q:#x}: needs multiples of 8 and 16/8-byte aligned rows"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// NVRTC kernels: activation quantization (static / dynamic per-tensor), the per-channel epilogue
// and the fp32 reference GEMM of the tests.

/// Kernel names in `kernels/fp8.cu` (no headers; E4M3 conversion needs sm_89+; compiled through
/// [`super::nvrtc`]'s disk cache).
pub const KERNEL_NAMES: [&str; 7] =
    ["fp8_quantize_bf16", "fp8_amax_bf16", "fp8_scale", "fp8_scale_columns_bf16", "fp8_reference_gemm", "fp8_quantize_rows_bf16", "fp8_amax_rows_bf16"];

/// The FP8 kernels, loaded for one device.
pub struct Fp8Kernels {
    stream: Arc<CudaStream>,
    quantize: CudaFunction,
    amax: CudaFunction,
    scale: CudaFunction,
    columns: CudaFunction,
    reference: CudaFunction,
    quantize_rows: CudaFunction,
    amax_rows: CudaFunction,
}

impl std::fmt::Debug for Fp8Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fp8Kernels")
    }
}

fn launch_err(name: &str) -> impl Fn(cudarc::driver::DriverError) -> CudaError + '_ {
    move |e| CudaError::driver(format!("cuLaunchKernel({name})"), e)
}

impl Fp8Kernels {
    /// Compiles the kernels for the stream's device (needs compute capability 8.9+).
    pub fn load(stream: &Arc<CudaStream>) -> Result<Arc<Self>, CudaError> {
        let ctx = stream.context();
        let (major, minor) = ctx.compute_capability().map_err(|e| CudaError::driver("cuDeviceGetAttribute(compute capability)", e))?;
        if (major, minor) < (8, 9) {
            return Err(CudaError::Library { name: "FP8".into(), message: format!("E4M3 needs compute capability 8.9 or newer, this GPU is {major}.{minor}") });
        }
        let module = super::nvrtc::load_module(stream, super::nvrtc::source("fp8.cu"))?;
        let f = |name: &str| module.load_function(name).map_err(|e| CudaError::driver(format!("cuModuleGetFunction({name})"), e));
        Ok(Arc::new(Fp8Kernels {
            stream: stream.clone(),
            quantize: f("fp8_quantize_bf16")?,
            amax: f("fp8_amax_bf16")?,
            scale: f("fp8_scale")?,
            columns: f("fp8_scale_columns_bf16")?,
            reference: f("fp8_reference_gemm")?,
            quantize_rows: f("fp8_quantize_rows_bf16")?,
            amax_rows: f("fp8_amax_rows_bf16")?,
        }))
    }

    fn cfg(n: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (elementwise_grid(n), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// Static scaling: `q = e4m3(x / scale[0])` for `n` bf16 values (`n` even).
    ///
    /// # Safety
    /// `x` holds `n` bf16, `q` `n` bytes, `scale` one f32 (device; 4-byte aligned `x`).
    pub unsafe fn quantize(&self, x: u64, q: u64, scale: u64, n: usize) -> Result<(), CudaError> {
        if !n.is_multiple_of(2) {
            return Err(CudaError::Input { tensor: "fp8 quantize".into(), message: format!("{n} values: needs an even count") });
        }
        let n2 = (n / 2) as i64;
        let mut b = self.stream.launch_builder(&self.quantize);
        b.arg(&x).arg(&q).arg(&scale).arg(&n2);
        b.launch(Self::cfg(n / 2)).map(|_| ()).map_err(launch_err("fp8_quantize_bf16"))
    }

    /// Dynamic per-tensor scaling: `scale[0] = max(amax(x) / 448, floor)`, then [`Self::quantize`].
    ///
    /// # Safety
    /// As [`Self::quantize`]; `partial` holds [`AMAX_BLOCKS`] f32 of scratch.
    pub unsafe fn quantize_dynamic(&self, x: u64, q: u64, scale: u64, partial: u64, n: usize) -> Result<(), CudaError> {
        if !n.is_multiple_of(2) {
            return Err(CudaError::Input { tensor: "fp8 quantize".into(), message: format!("{n} values: needs an even count") });
        }
        let n2 = (n / 2) as i64;
        let mut b = self.stream.launch_builder(&self.amax);
        b.arg(&x).arg(&partial).arg(&n2);
        b.launch(LaunchConfig { grid_dim: (AMAX_BLOCKS as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
            .map_err(launch_err("fp8_amax_bf16"))?;
        let parts = AMAX_BLOCKS as i32;
        let mut b = self.stream.launch_builder(&self.scale);
        b.arg(&partial).arg(&parts).arg(&scale);
        b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }).map_err(launch_err("fp8_scale"))?;
        self.quantize(x, q, scale, n)
    }

    /// Static scaling of a strided block: `q[r, c] = e4m3(f(x[r, c]) / scale[0])` for `rows × cols`
    /// bf16 values (row stride `ldx` elements) into E4M3 rows of stride `ldq` bytes; `f` is GELU-tanh
    /// when `gelu` (the MLP's activation fused into its consumer's quantization), else identity.
    ///
    /// # Safety
    /// `x` holds `rows` rows of `ldx` bf16 (16-byte aligned), `q` `rows` rows of `ldq` bytes (8-byte
    /// aligned), `scale` one f32; `cols`, `ldx`, `ldq` multiples of 8 (checked).
    pub unsafe fn quantize_rows(&self, x: u64, ldx: usize, q: u64, ldq: usize, scale: u64, rows: usize, cols: usize, gelu: bool) -> Result<(), CudaError> {
        check_rows(x, ldx, q, ldq, cols)?;
        let (ldx, ldq, r, c, g) = (ldx as i64, ldq as i64, rows as i64, cols as i32, i32::from(gelu));
        let mut b = self.stream.launch_builder(&self.quantize_rows);
        b.arg(&x).arg(&ldx).arg(&q).arg(&ldq).arg(&scale).arg(&r).arg(&c).arg(&g);
        b.launch(Self::cfg(rows * cols / 8)).map(|_| ()).map_err(launch_err("fp8_quantize_rows_bf16"))
    }

    /// Dynamic scaling of a tensor made of strided blocks: [`Self::amax_begin`] zeroes the f32 at
    /// `amax`, [`Self::amax_rows`] folds each block's `max |f(x)|` into it, [`Self::amax_end`] writes
    /// `scale[0] = max(amax / 448, floor)`.
    ///
    /// # Safety
    /// `amax` is one device f32.
    pub unsafe fn amax_begin(&self, amax: u64) -> Result<(), CudaError> {
        cudarc::driver::result::memset_d8_async(amax, 0, 4, self.stream.cu_stream()).map_err(|e| CudaError::driver("cuMemsetD8Async (FP8 amax)", e))
    }

    /// # Safety
    /// As [`Self::quantize_rows`] for `x`; `amax` one device f32.
    pub unsafe fn amax_rows(&self, x: u64, ldx: usize, rows: usize, cols: usize, gelu: bool, amax: u64) -> Result<(), CudaError> {
        check_rows(x, ldx, 0, 8, cols)?;
        let (ldx, r, c, g) = (ldx as i64, rows as i64, cols as i32, i32::from(gelu));
        let mut b = self.stream.launch_builder(&self.amax_rows);
        b.arg(&x).arg(&ldx).arg(&r).arg(&c).arg(&g).arg(&amax);
        let blocks = elementwise_grid(rows * cols / 8).min(AMAX_BLOCKS as u32);
        b.launch(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
            .map(|_| ())
            .map_err(launch_err("fp8_amax_rows_bf16"))
    }

    /// # Safety
    /// `amax` and `scale` are device f32.
    pub unsafe fn amax_end(&self, amax: u64, scale: u64) -> Result<(), CudaError> {
        let parts = 1i32;
        let mut b = self.stream.launch_builder(&self.scale);
        b.arg(&amax).arg(&parts).arg(&scale);
        b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 }).map(|_| ()).map_err(launch_err("fp8_scale"))
    }

    /// `y[r, c] = y[r, c] · wscale[c] (+ bias[c])`, bf16 in place (the per-channel epilogue).
    ///
    /// # Safety
    /// `y` holds `rows × cols` bf16, `wscale` `cols` f32, `bias` `cols` bf16 or 0.
    pub unsafe fn scale_columns(&self, y: u64, wscale: u64, bias: u64, rows: usize, cols: usize) -> Result<(), CudaError> {
        let (r, c) = (rows as i64, cols as i32);
        let mut b = self.stream.launch_builder(&self.columns);
        b.arg(&y).arg(&wscale).arg(&bias).arg(&r).arg(&c);
        b.launch(Self::cfg(rows * cols)).map(|_| ()).map_err(launch_err("fp8_scale_columns_bf16"))
    }

    /// fp32 reference of the dequantized GEMM for rows `0, step, 2·step, …` (`rows` of them) into
    /// `out` (`rows × n` f32). Tests only: one thread per output, fp32 accumulation.
    ///
    /// # Safety
    /// As [`Fp8Gemm::run`] for `x`, `w`, the scales and `bias`; `out` holds `rows × n` f32.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn reference(
        &self,
        s: &Fp8Shape,
        x: u64,
        x_scale: u64,
        w: u64,
        w_scale: u64,
        bias: u64,
        out: u64,
        rows: usize,
        step: usize,
    ) -> Result<(), CudaError> {
        let per_channel = i32::from(s.weight == WeightScaling::PerChannel);
        let (r, st, n, k) = (rows as i32, step as i32, s.n as i32, s.k as i32);
        let mut b = self.stream.launch_builder(&self.reference);
        b.arg(&x).arg(&w).arg(&x_scale).arg(&w_scale).arg(&per_channel).arg(&bias).arg(&out).arg(&r).arg(&st).arg(&n).arg(&k);
        b.launch(LaunchConfig { grid_dim: (s.n.div_ceil(THREADS as usize) as u32, rows as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 })
            .map(|_| ())
            .map_err(launch_err("fp8_reference_gemm"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column-major element offset.
    fn at(l: &Layout, r: u64, c: u64) -> i64 {
        r as i64 + c as i64 * l.ld
    }

    #[test]
    fn tn_layout_addresses_the_row_major_operands() {
        let s = Fp8Shape::new(4608, 3072, 12288, WeightScaling::PerTensor);
        let p = plan(&s, ChannelImpl::OuterVector);
        assert!(p.trans_a && !p.trans_b, "Hopper FP8 needs TN");
        assert_eq!(p.channel, ChannelImpl::Scalar, "per-tensor weights use the scalar scale whatever is asked");
        // A = W [N, K] row-major: element (n, k) at n*K + k = column-major [K, N] (k, n).
        let (n, k) = (17u64, 1234u64);
        assert_eq!(at(&p.a, k, n), (n * s.k as u64 + k) as i64);
        assert_eq!((p.a.rows, p.a.cols), (s.k as u64, s.n as u64));
        // B = X [M, K] row-major: (m, k) at m*K + k = column-major [K, M] (k, m).
        let m = 4000u64;
        assert_eq!(at(&p.b, k, m), (m * s.k as u64 + k) as i64);
        // D = Y [M, N] row-major: (m, n) at m*N + n = column-major [N, M] (n, m).
        assert_eq!(at(&p.d, n, m), (m * s.n as u64 + n) as i64);
        assert!(p.a.fp8 && p.b.fp8 && !p.d.fp8);
        // op(A) = Wᵀᵀ: rows of op(A) are N (output channels) = the outer-vector dimension of A.
        assert_eq!(p.a.cols, s.n as u64);
    }

    #[test]
    fn per_channel_scales_go_on_the_weight() {
        let s = Fp8Shape::new(64, 96, 128, WeightScaling::PerChannel);
        let outer = plan(&s, ChannelImpl::OuterVector);
        assert_eq!((outer.a_scale, outer.b_scale), (Some(SCALE_OUTER_VEC_32F), Some(SCALE_SCALAR_32F)));
        assert!(outer.gemm_bias);
        let epi = plan(&s, ChannelImpl::Epilogue);
        assert_eq!((epi.a_scale, epi.b_scale), (None, Some(SCALE_SCALAR_32F)), "epilogue: the weight scale is applied after the GEMM");
        assert!(!epi.gemm_bias, "and the bias after the scale");
        let no_bias = plan(&Fp8Shape { bias: false, ..s }, ChannelImpl::OuterVector);
        assert!(!no_bias.gemm_bias);
    }

    #[test]
    fn shapes_are_validated() {
        let ok = |m, n, k| validate(&Fp8Shape::new(m, n, k, WeightScaling::PerTensor)).is_ok();
        // the six FLUX.1 GEMMs at 1024²
        for (n, k) in [(9216, 3072), (3072, 3072), (12288, 3072), (3072, 12288), (21504, 3072), (3072, 15360)] {
            assert!(ok(4608, n, k), "{n}x{k}");
        }
        assert!(ok(1, 64, 64), "any M");
        assert!(!ok(16, 64, 40), "K not a multiple of 16");
        assert!(!ok(16, 60, 64), "N not a multiple of 8");
        assert!(!ok(0, 64, 64));
        let e = validate(&Fp8Shape::new(16, 64, 40, WeightScaling::PerChannel)).unwrap_err();
        assert!(e.to_string().contains("k=40"), "{e}");
    }

    #[test]
    fn elementwise_grid_is_capped() {
        assert_eq!(elementwise_grid(1), 1);
        assert_eq!(elementwise_grid(256 * 10), 10);
        assert_eq!(elementwise_grid(4608 * 21504), 132 * 32);
    }

    #[test]
    fn plans_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Fp8Gemm>();
        check::<Fp8Kernels>();
    }

    /// NVRTC compiles the FP8 kernels for Ada and Hopper (no GPU needed; needs libnvrtc).
    #[test]
    fn kernels_compile_for_sm89_sm90() {
        super::super::nvrtc::assert_compiles("fp8.cu", &[89, 90], &KERNEL_NAMES);
    }
}

//! Row-major GEMMs `Y[M, N] (+)= X[M, K] · W[N, K]ᵀ (+ bias) (→ GELU-tanh)` through cuBLASLt,
//! optionally strided-batched. One cuBLASLt handle per session ([`LtHandle`], shared with the FP8
//! GEMMs of [`super::fp8`]); the workspace is preallocated.
//!
//! Algorithm choice, once per shape (and pointer alignment): cuBLASLt's heuristic ranks up to
//! [`CANDIDATES`] algorithms; at the shape's first eager call (never under stream capture) each is
//! timed with CUDA events on the call's real buffers and the fastest is kept (autotuning; set
//! `FLUX_TRT_GEMM_TUNE=0` to keep the heuristic's first pick). Accumulating GEMMs (`beta = 1`)
//! are not re-run for timing (that would add the product twice) and keep the heuristic's pick.
//! f32 engines compute in plain f32 (no TF32).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::CudaStream;

use super::device::{DeviceBuffer, Gpu};
use super::CudaError;
use crate::tensor::DType;

/// Workspace of every bf16/fp16/f32 GEMM (bytes).
pub const WORKSPACE: usize = 32 << 20;
/// Algorithms asked from the heuristic (and timed) per shape.
pub const CANDIDATES: usize = 8;

pub(crate) fn ck<T>(call: &str, r: Result<T, lt::CublasError>) -> Result<T, CudaError> {
    r.map_err(|e| CudaError::cublas(call, e))
}

/// A cuBLASLt handle (one per session, shared by the bf16 plans of [`Lt`] and the FP8 GEMMs).
pub struct LtHandle(pub(crate) sys::cublasLtHandle_t);

// SAFETY: cuBLASLt handles may be used from any thread; calls on one stream are serialized by the caller.
unsafe impl Send for LtHandle {}
unsafe impl Sync for LtHandle {}

impl LtHandle {
    /// Creates a handle on the stream's context (typed error when libcublasLt cannot be loaded).
    pub fn new(stream: &Arc<CudaStream>) -> Result<Arc<Self>, CudaError> {
        // SAFETY: only probes whether the library can be dlopened.
        super::device::require_library("cublasLt", unsafe { sys::is_culib_present() }, "libcublasLt.so.13")?;
        stream.context().bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent (cuBLASLt)", e))?;
        Ok(Arc::new(LtHandle(ck("cublasLtCreate", lt::create_handle())?)))
    }

    /// cuBLASLt's version number (e.g. 130100 for 13.1.0).
    pub fn version() -> usize {
        // SAFETY: no arguments; the library is loaded.
        unsafe { sys::cublasLtGetVersion() }
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        // SAFETY: created once in `new`, destroyed once.
        let _ = unsafe { lt::destroy_handle(self.0) };
    }
}

impl std::fmt::Debug for LtHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LtHandle")
    }
}

/// A column-major `rows × cols` layout with leading dimension `ld`, strided-batched over `batch`
/// matrices `stride` elements apart when `batch > 1`.
pub(crate) fn matrix_layout(
    ty: sys::cudaDataType,
    rows: usize,
    cols: usize,
    ld: usize,
    batch: usize,
    stride: i64,
) -> Result<sys::cublasLtMatrixLayout_t, CudaError> {
    let l = ck("cublasLtMatrixLayoutCreate", lt::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64))?;
    if batch > 1 {
        use sys::cublasLtMatrixLayoutAttribute_t as L;
        let count = batch as i32;
        // SAFETY: an i32 count and an i64 stride, as the attributes require; `l` is live.
        let r = unsafe {
            ck(
                "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)",
                lt::set_matrix_layout_attribute(l, L::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count as *const i32 as *const c_void, 4),
            )
            .and_then(|()| {
                ck(
                    "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)",
                    lt::set_matrix_layout_attribute(l, L::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride as *const i64 as *const c_void, 8),
                )
            })
        };
        if let Err(e) = r {
            // SAFETY: created above, not stored anywhere.
            let _ = unsafe { lt::destroy_matrix_layout(l) };
            return Err(e);
        }
    }
    Ok(l)
}

/// Sets one matmul-descriptor attribute of type `T`.
///
/// # Safety
/// `desc` is live and `T` is the attribute's documented type.
pub(crate) unsafe fn set_desc<T>(desc: sys::cublasLtMatmulDesc_t, attr: sys::cublasLtMatmulDescAttributes_t, v: &T, what: &str) -> Result<(), CudaError> {
    ck(&format!("cublasLtMatmulDescSetAttribute({what})"), lt::set_matmul_desc_attribute(desc, attr, v as *const T as *const c_void, std::mem::size_of::<T>()))
}

/// Sets one preference attribute of type `T`.
///
/// # Safety
/// `pref` is live and `T` is the attribute's documented type.
pub(crate) unsafe fn set_pref<T>(
    pref: sys::cublasLtMatmulPreference_t,
    attr: sys::cublasLtMatmulPreferenceAttributes_t,
    v: &T,
    what: &str,
) -> Result<(), CudaError> {
    ck(
        &format!("cublasLtMatmulPreferenceSetAttribute({what})"),
        lt::set_matmul_pref_attribute(pref, attr, v as *const T as *const c_void, std::mem::size_of::<T>()),
    )
}

/// The heuristic's ranked algorithms that fit `max_workspace` (at most `n`; an error when none).
///
/// # Safety
/// Every descriptor is live.
pub(crate) unsafe fn heuristic_algos(
    handle: &LtHandle,
    desc: sys::cublasLtMatmulDesc_t,
    (a, b, c, d): (sys::cublasLtMatrixLayout_t, sys::cublasLtMatrixLayout_t, sys::cublasLtMatrixLayout_t, sys::cublasLtMatrixLayout_t),
    max_workspace: usize,
    alignments: Option<[u32; 4]>,
    n: usize,
) -> Result<Vec<(sys::cublasLtMatmulAlgo_t, usize)>, CudaError> {
    use sys::cublasLtMatmulPreferenceAttributes_t as P;
    let pref = ck("cublasLtMatmulPreferenceCreate", lt::create_matmul_pref())?;
    let r = (|| {
        set_pref(pref, P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &(max_workspace as u64), "MAX_WORKSPACE_BYTES")?;
        if let Some(al) = alignments {
            set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], "MIN_ALIGNMENT_A_BYTES")?;
            set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], "MIN_ALIGNMENT_B_BYTES")?;
            set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], "MIN_ALIGNMENT_C_BYTES")?;
            set_pref(pref, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], "MIN_ALIGNMENT_D_BYTES")?;
        }
        let mut results: Vec<sys::cublasLtMatmulHeuristicResult_t> = vec![std::mem::zeroed(); n.max(1)];
        let mut count = 0i32;
        ck(
            "cublasLtMatmulAlgoGetHeuristic",
            sys::cublasLtMatmulAlgoGetHeuristic(handle.0, desc, a, b, c, d, pref, results.len() as i32, results.as_mut_ptr(), &mut count).result(),
        )?;
        let found: Vec<_> = results[..count.clamp(0, n as i32) as usize]
            .iter()
            .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS && r.workspaceSize <= max_workspace)
            .map(|r| (r.algo, r.workspaceSize))
            .collect();
        if found.is_empty() {
            return Err(CudaError::Cublas {
                call: format!("cublasLtMatmulAlgoGetHeuristic ({count} algorithms)"),
                status: "CUBLAS_STATUS_NOT_SUPPORTED".into(),
            });
        }
        Ok(found)
    })();
    // SAFETY: created above.
    let _ = lt::destroy_matmul_pref(pref);
    r
}

/// Fused epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None,
    Bias,
    GeluBias,
}

/// One GEMM call. Pointers are device addresses; `ld*` are row strides in elements.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Rows per batch entry.
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x: u64,
    pub ldx: usize,
    pub w: u64,
    /// Row stride of W (`k` unless W is a column slice of a wider matrix).
    pub ldw: usize,
    pub y: u64,
    pub ldy: usize,
    /// Batch entries and their strides in elements (W's is 0 when it is shared).
    pub batch: usize,
    pub stride_x: usize,
    pub stride_w: usize,
    pub stride_y: usize,
    pub epilogue: Epilogue,
    pub bias: u64,
    /// Accumulate into Y (beta = 1).
    pub accumulate: bool,
}

impl Gemm {
    /// A plain `[m, k] · [n, k]ᵀ → [m, n]` with contiguous rows.
    pub fn new(m: usize, n: usize, k: usize, x: u64, w: u64, y: u64) -> Self {
        Gemm { m, n, k, x, ldx: k, w, ldw: k, y, ldy: n, batch: 1, stride_x: 0, stride_w: 0, stride_y: 0, epilogue: Epilogue::None, bias: 0, accumulate: false }
    }
    pub fn bias(mut self, bias: u64, gelu: bool) -> Self {
        self.bias = bias;
        self.epilogue = if gelu { Epilogue::GeluBias } else { Epilogue::Bias };
        self
    }
    pub fn accumulate(mut self) -> Self {
        self.accumulate = true;
        self
    }
    pub fn strides(mut self, ldx: usize, ldw: usize, ldy: usize) -> Self {
        (self.ldx, self.ldw, self.ldy) = (ldx, ldw, ldy);
        self
    }
    pub fn batched(mut self, batch: usize, stride_x: usize, stride_y: usize) -> Self {
        (self.batch, self.stride_x, self.stride_y) = (batch, stride_x, stride_y);
        self
    }
    /// Batch entries with their own W, `stride_w` elements apart.
    pub fn weight_stride(mut self, stride_w: usize) -> Self {
        self.stride_w = stride_w;
        self
    }
    fn describe(&self) -> String {
        format!("GEMM m={} n={} k={} batch={} {:?}{}", self.m, self.n, self.k, self.batch, self.epilogue, if self.accumulate { " +=" } else { "" })
    }
}

fn align_of(p: u64) -> u32 {
    if p == 0 {
        return 256;
    }
    (1u64 << p.trailing_zeros().min(8)) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    m: usize,
    n: usize,
    k: usize,
    ldx: usize,
    ldw: usize,
    ldy: usize,
    batch: usize,
    stride_x: usize,
    stride_w: usize,
    stride_y: usize,
    epilogue: Epilogue,
    accumulate: bool,
    align: [u32; 4],
}

struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    /// The heuristic's candidates, best-ranked first.
    candidates: Vec<sys::cublasLtMatmulAlgo_t>,
    /// Index into `candidates` of the algorithm in use.
    chosen: usize,
    tuned: bool,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each created once by `Lt::plan` (null when planning failed before it), destroyed once.
        unsafe {
            for l in [self.a, self.b, self.d] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// What autotuning found for one GEMM shape (milliseconds per call, CUDA events).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneRecord {
    pub gemm: String,
    pub candidates: usize,
    /// The heuristic's first pick.
    pub heuristic_ms: f32,
    pub best_ms: f32,
    /// Rank of the winner in the heuristic's list (0 = its first pick).
    pub best_rank: usize,
}

/// The cuBLASLt handle, workspace and plan cache of a session.
pub struct Lt {
    handle: Arc<LtHandle>,
    dtype: DType,
    workspace: DeviceBuffer,
    plans: Mutex<HashMap<Key, Box<Plan>>>,
    tune: bool,
    tuning: Mutex<Vec<TuneRecord>>,
}

// SAFETY: the handle is used under the session's run lock (one stream); plans are behind a Mutex.
unsafe impl Send for Lt {}
unsafe impl Sync for Lt {}

impl std::fmt::Debug for Lt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lt").field("dtype", &self.dtype).field("tune", &self.tune).finish_non_exhaustive()
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn data_type(d: DType) -> sys::cudaDataType {
    match d {
        DType::F32 => sys::cudaDataType::CUDA_R_32F,
        DType::F16 => sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
    }
}

fn with_shape(g: &Gemm) -> impl Fn(CudaError) -> CudaError + '_ {
    move |e| match e {
        CudaError::Cublas { call, status } => CudaError::Cublas { call: format!("{call} ({})", g.describe()), status },
        e => e,
    }
}

/// Whether autotuning is on (`FLUX_TRT_GEMM_TUNE=0` turns it off).
fn tune_enabled() -> bool {
    std::env::var("FLUX_TRT_GEMM_TUNE").map(|v| v != "0").unwrap_or(true)
}

impl Lt {
    pub fn new(gpu: &Gpu, dtype: DType) -> Result<Self, CudaError> {
        let handle = LtHandle::new(&gpu.stream)?;
        let workspace = gpu.alloc(WORKSPACE, "cuBLASLt workspace")?;
        Ok(Lt { handle, dtype, workspace, plans: Mutex::new(HashMap::new()), tune: tune_enabled(), tuning: Mutex::new(Vec::new()) })
    }

    /// The session's cuBLASLt handle (for the FP8 GEMMs).
    pub fn handle(&self) -> &Arc<LtHandle> {
        &self.handle
    }

    /// Every autotuned shape so far (benchmarks report it).
    pub fn tuning(&self) -> Vec<TuneRecord> {
        self.tuning.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn plan(&self, g: &Gemm) -> Result<Box<Plan>, CudaError> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        let dt = data_type(self.dtype);
        let desc = ck("cublasLtMatmulDescCreate", lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F))?;
        // Own the descriptors at once so an error below frees them.
        let null = std::ptr::null_mut();
        let mut plan = Box::new(Plan { desc, a: null, b: null, d: null, candidates: Vec::new(), chosen: 0, tuned: false });
        let epi = match g.epilogue {
            Epilogue::None => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
        };
        // SAFETY: values of the attributes' documented types.
        unsafe {
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &1i32, "TRANSA")?;
            set_desc(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, "EPILOGUE")?;
            if g.epilogue != Epilogue::None {
                // the bias pointer is set per call; the heuristic only needs one that is aligned
                set_desc(desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, "BIAS_POINTER")?;
            }
        }
        // Column-major view: A = W as [k, n] (transposed), B = X as [k, m], D = Y as [n, m].
        plan.a = matrix_layout(dt, g.k, g.n, g.ldw, g.batch, g.stride_w as i64)?;
        plan.b = matrix_layout(dt, g.k, g.m, g.ldx, g.batch, g.stride_x as i64)?;
        plan.d = matrix_layout(dt, g.n, g.m, g.ldy, g.batch, g.stride_y as i64)?;
        let al = [align_of(g.w), align_of(g.x), align_of(g.y), align_of(g.y)];
        // SAFETY: the descriptors are live.
        let found = unsafe { heuristic_algos(&self.handle, desc, (plan.a, plan.b, plan.d, plan.d), WORKSPACE, Some(al), CANDIDATES)? };
        plan.candidates = found.into_iter().map(|(a, _)| a).collect();
        Ok(plan)
    }

    /// # Safety
    /// As [`Lt::run`]: `g`'s operands are valid device memory of its extents.
    unsafe fn matmul(&self, gpu: &Gpu, p: &Plan, algo: &sys::cublasLtMatmulAlgo_t, g: &Gemm) -> Result<(), CudaError> {
        let (alpha, beta) = (1.0f32, if g.accumulate { 1.0f32 } else { 0.0 });
        ck(
            "cublasLtMatmul",
            lt::matmul(
                self.handle.0,
                p.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                g.w as *const c_void,
                p.a,
                g.x as *const c_void,
                p.b,
                g.y as *const c_void,
                p.d,
                g.y as *mut c_void,
                p.d,
                algo,
                self.workspace.ptr() as *mut c_void,
                WORKSPACE,
                gpu.raw_stream() as sys::cudaStream_t,
            ),
        )
    }

    /// Times every candidate of `p` on `g`'s buffers (a non-accumulating GEMM: re-running it
    /// rewrites the same output) and keeps the fastest. Candidates that fail to run are skipped.
    fn tune(&self, gpu: &Gpu, p: &mut Plan, g: &Gemm) -> Result<(), CudaError> {
        p.tuned = true;
        if p.candidates.len() < 2 {
            return Ok(());
        }
        let ev = || gpu.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| CudaError::driver("cuEventCreate", e));
        let (e0, e1) = (ev()?, ev()?);
        const REPS: usize = 5;
        let mut times = Vec::with_capacity(p.candidates.len());
        for algo in &p.candidates {
            // SAFETY: as `run`; the output is rewritten with the same values.
            let ok = unsafe { self.matmul(gpu, p, algo, g) }.is_ok();
            if !ok {
                times.push(f32::INFINITY);
                continue;
            }
            e0.record(&gpu.stream).map_err(|e| CudaError::driver("cuEventRecord", e))?;
            for _ in 0..REPS {
                // SAFETY: as above.
                unsafe { self.matmul(gpu, p, algo, g)? };
            }
            e1.record(&gpu.stream).map_err(|e| CudaError::driver("cuEventRecord", e))?;
            e1.synchronize().map_err(|e| CudaError::driver("cuEventSynchronize", e))?;
            times.push(e0.elapsed_ms(&e1).map_err(|e| CudaError::driver("cuEventElapsedTime", e))? / REPS as f32);
        }
        let (best, best_ms) = times.iter().enumerate().fold((0, f32::INFINITY), |acc, (i, t)| if *t < acc.1 { (i, *t) } else { acc });
        if best_ms.is_finite() {
            p.chosen = best;
        }
        let rec = TuneRecord { gemm: g.describe(), candidates: p.candidates.len(), heuristic_ms: times[0], best_ms, best_rank: p.chosen };
        tracing::debug!(?rec, "cuBLASLt autotune");
        self.tuning.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
        Ok(())
    }

    /// Enqueues `g` on the stream (capturable). A new shape is planned (and, outside stream
    /// capture, autotuned) first.
    pub fn run(&self, gpu: &Gpu, g: &Gemm) -> Result<(), CudaError> {
        let key = Key {
            m: g.m,
            n: g.n,
            k: g.k,
            ldx: g.ldx,
            ldw: g.ldw,
            ldy: g.ldy,
            batch: g.batch,
            stride_x: g.stride_x,
            stride_w: g.stride_w,
            stride_y: g.stride_y,
            epilogue: g.epilogue,
            accumulate: g.accumulate,
            align: [align_of(g.w), align_of(g.x), align_of(g.y), align_of(g.bias)],
        };
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if !plans.contains_key(&key) {
            let p = self.plan(g).map_err(with_shape(g))?;
            plans.insert(key, p);
        }
        let p = plans.get_mut(&key).expect("inserted above");
        // SAFETY: the plan's descriptor is only touched under the cache lock; bias is set right
        // before the call (runs are serialized).
        unsafe {
            if g.epilogue != Epilogue::None {
                set_desc(p.desc, sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, "BIAS_POINTER")?;
            }
        }
        if self.tune && !p.tuned && !g.accumulate {
            let capturing = gpu.stream.capture_status().map_err(|e| CudaError::driver("cuStreamIsCapturing", e))?
                != cudarc::driver::sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
            if !capturing {
                self.tune(gpu, p, g).map_err(with_shape(g))?;
            }
        }
        let algo = p.candidates[p.chosen];
        // SAFETY: the caller's buffer plan guarantees every operand's extent; the plan's
        // descriptors live in the cache.
        unsafe { self.matmul(gpu, p, &algo, g) }.map_err(with_shape(g))
    }
}

//! Row-major GEMMs `Y[M, N] (+)= X[M, K] · W[N, K]ᵀ (+ bias) (→ GELU-tanh)` through cuBLASLt,
//! optionally strided-batched over the samples of a joint buffer. The algorithm is chosen by
//! cuBLASLt's heuristic once per shape (and pointer alignment) and cached; the workspace is
//! preallocated. f32 engines compute in plain f32 (no TF32).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;

use super::device::{DeviceBuffer, Gpu};
use super::CudaError;
use crate::tensor::DType;

const WORKSPACE: usize = 32 << 20;

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
    /// Batch entries and their strides in elements (X and Y; W is shared).
    pub batch: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    pub epilogue: Epilogue,
    pub bias: u64,
    /// Accumulate into Y (beta = 1).
    pub accumulate: bool,
}

impl Gemm {
    /// A plain `[m, k] · [n, k]ᵀ → [m, n]` with contiguous rows.
    pub fn new(m: usize, n: usize, k: usize, x: u64, w: u64, y: u64) -> Self {
        Gemm { m, n, k, x, ldx: k, w, ldw: k, y, ldy: n, batch: 1, stride_x: 0, stride_y: 0, epilogue: Epilogue::None, bias: 0, accumulate: false }
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
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created once by `Lt::plan`, destroyed once.
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.d);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// The cuBLASLt handle, workspace and plan cache of a session.
pub struct Lt {
    handle: sys::cublasLtHandle_t,
    dtype: DType,
    workspace: DeviceBuffer,
    plans: Mutex<HashMap<Key, Box<Plan>>>,
}

// SAFETY: the handle is used under the session's run lock (one stream); plans are behind a Mutex.
unsafe impl Send for Lt {}
unsafe impl Sync for Lt {}

impl std::fmt::Debug for Lt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lt").field("dtype", &self.dtype).finish_non_exhaustive()
    }
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // SAFETY: created once in `new`.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

fn data_type(d: DType) -> sys::cudaDataType {
    match d {
        DType::F32 => sys::cudaDataType::CUDA_R_32F,
        DType::F16 => sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
    }
}

fn ck<T>(call: &str, r: Result<T, lt::CublasError>) -> Result<T, CudaError> {
    r.map_err(|e| CudaError::cublas(call, e))
}

impl Lt {
    pub fn new(gpu: &Gpu, dtype: DType) -> Result<Self, CudaError> {
        // SAFETY: only probes whether the library can be dlopened.
        super::device::require_library("cublasLt", unsafe { sys::is_culib_present() }, "libcublasLt.so.13")?;
        gpu.bind()?;
        let handle = ck("cublasLtCreate", lt::create_handle())?;
        let workspace = gpu.alloc(WORKSPACE, "cuBLASLt workspace")?;
        Ok(Lt { handle, dtype, workspace, plans: Mutex::new(HashMap::new()) })
    }

    fn plan(&self, g: &Gemm) -> Result<Box<Plan>, CudaError> {
        let dt = data_type(self.dtype);
        let desc = ck("cublasLtMatmulDescCreate", lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F))?;
        // Own the descriptors at once so an error below frees them.
        let mut plan = Box::new(Plan { desc, a: std::ptr::null_mut(), b: std::ptr::null_mut(), d: std::ptr::null_mut(), algo: unsafe { std::mem::zeroed() } });
        let set_desc = |attr: sys::cublasLtMatmulDescAttributes_t, v: *const c_void, n: usize| {
            // SAFETY: `v` points to `n` bytes of the attribute's type.
            ck("cublasLtMatmulDescSetAttribute", unsafe { lt::set_matmul_desc_attribute(desc, attr, v, n) })
        };
        let t: i32 = 1;
        set_desc(sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, &t as *const i32 as *const c_void, 4)?;
        let epi = match g.epilogue {
            Epilogue::None => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            Epilogue::Bias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            Epilogue::GeluBias => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS,
        };
        set_desc(sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi as *const _ as *const c_void, std::mem::size_of_val(&epi))?;
        // Column-major view: A = W as [k, n] (transposed), B = X as [k, m], D = Y as [n, m].
        plan.a = ck("cublasLtMatrixLayoutCreate", lt::create_matrix_layout(dt, g.k as u64, g.n as u64, g.ldw as i64))?;
        plan.b = ck("cublasLtMatrixLayoutCreate", lt::create_matrix_layout(dt, g.k as u64, g.m as u64, g.ldx as i64))?;
        plan.d = ck("cublasLtMatrixLayoutCreate", lt::create_matrix_layout(dt, g.n as u64, g.m as u64, g.ldy as i64))?;
        if g.batch > 1 {
            let count = g.batch as i32;
            for (layout, stride) in [(plan.a, 0i64), (plan.b, g.stride_x as i64), (plan.d, g.stride_y as i64)] {
                // SAFETY: i32 count and i64 stride, as the attributes require.
                unsafe {
                    ck(
                        "cublasLtMatrixLayoutSetAttribute",
                        lt::set_matrix_layout_attribute(
                            layout,
                            sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                            &count as *const i32 as *const c_void,
                            4,
                        ),
                    )?;
                    ck(
                        "cublasLtMatrixLayoutSetAttribute",
                        lt::set_matrix_layout_attribute(
                            layout,
                            sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                            &stride as *const i64 as *const c_void,
                            8,
                        ),
                    )?;
                }
            }
        }
        let pref = ck("cublasLtMatmulPreferenceCreate", lt::create_matmul_pref())?;
        let result = (|| {
            let ws = WORKSPACE as u64;
            // SAFETY: attribute values of the documented types.
            unsafe {
                ck(
                    "cublasLtMatmulPreferenceSetAttribute",
                    lt::set_matmul_pref_attribute(
                        pref,
                        sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                        &ws as *const u64 as *const c_void,
                        8,
                    ),
                )?;
                let al = [align_of(g.w), align_of(g.x), align_of(g.y), align_of(g.y)];
                for (attr, v) in [
                    (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al[0]),
                    (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al[1]),
                    (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al[2]),
                    (sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al[3]),
                ] {
                    ck("cublasLtMatmulPreferenceSetAttribute", lt::set_matmul_pref_attribute(pref, attr, &v as *const u32 as *const c_void, 4))?;
                }
                if g.epilogue != Epilogue::None {
                    // the bias pointer is set per call; the heuristic only needs one that is aligned
                    self.set_bias(desc, g.bias)?;
                }
                let h = ck("cublasLtMatmulAlgoGetHeuristic", lt::get_matmul_algo_heuristic(self.handle, desc, plan.a, plan.b, plan.d, plan.d, pref))?;
                Ok(h.algo)
            }
        })();
        // SAFETY: created above.
        let _ = unsafe { lt::destroy_matmul_pref(pref) };
        plan.algo = result.map_err(|e| match e {
            CudaError::Cublas { call, status } => {
                CudaError::Cublas { call: format!("{call} (GEMM m={} n={} k={} batch={} {:?})", g.m, g.n, g.k, g.batch, g.epilogue), status }
            }
            e => e,
        })?;
        Ok(plan)
    }

    unsafe fn set_bias(&self, desc: sys::cublasLtMatmulDesc_t, bias: u64) -> Result<(), CudaError> {
        ck(
            "cublasLtMatmulDescSetAttribute(BIAS_POINTER)",
            lt::set_matmul_desc_attribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &bias as *const u64 as *const c_void,
                8,
            ),
        )
    }

    /// Enqueues `g` on the stream (capturable).
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
            stride_y: g.stride_y,
            epilogue: g.epilogue,
            accumulate: g.accumulate,
            align: [align_of(g.w), align_of(g.x), align_of(g.y), align_of(g.bias)],
        };
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if !plans.contains_key(&key) {
            let p = self.plan(g)?;
            plans.insert(key, p);
        }
        let p = &plans[&key];
        let (alpha, beta) = (1.0f32, if g.accumulate { 1.0f32 } else { 0.0 });
        // SAFETY: the caller's buffer plan guarantees every operand's extent; the plan's
        // descriptors live in the cache; bias is set right before the call (runs are serialized).
        unsafe {
            if g.epilogue != Epilogue::None {
                self.set_bias(p.desc, g.bias)?;
            }
            ck(
                "cublasLtMatmul",
                lt::matmul(
                    self.handle,
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
                    &p.algo,
                    self.workspace.ptr() as *mut c_void,
                    WORKSPACE,
                    gpu.raw_stream() as sys::cudaStream_t,
                ),
            )
            .map_err(|e| match e {
                CudaError::Cublas { call, status } => {
                    CudaError::Cublas { call: format!("{call} (m={} n={} k={} batch={} {:?})", g.m, g.n, g.k, g.batch, g.epilogue), status }
                }
                e => e,
            })
        }
    }
}

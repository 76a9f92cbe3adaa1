//! The fused kernels of `kernels/fused.cu`, loaded for one storage dtype, with typed launchers.
//! Pointers are raw device addresses (`u64`); shapes are checked by the callers' buffer plan.

use std::ffi::{c_void, CString};

use cudarc::driver::{result, sys};

use super::device::Gpu;
use super::nvrtc;
use super::CudaError;
use crate::tensor::DType;

/// Kernel-parameter array: each argument by address, in order.
macro_rules! params {
    ($($a:expr),* $(,)?) => { [$(&$a as *const _ as *mut c_void),*] };
}

/// A loaded module (unloaded on drop).
#[derive(Debug)]
pub struct Module {
    module: sys::CUmodule,
    pub from_cache: bool,
}

// SAFETY: CUmodule handles are usable from any thread of the process (the context is bound by
// the caller before every use).
unsafe impl Send for Module {}
unsafe impl Sync for Module {}

impl Module {
    /// Compiles (or takes from the cache) `source` for the GPU and loads it.
    pub fn load(gpu: &Gpu, source: nvrtc::Source) -> Result<Self, CudaError> {
        let cc = (gpu.cc.0 * 10 + gpu.cc.1) as u32;
        let (cubin, from_cache) = nvrtc::compile_cached(source, cc)?;
        gpu.bind()?;
        // SAFETY: a complete cubin image produced by NVRTC for this architecture.
        let module = unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) }
            .map_err(|e| CudaError::driver(format!("cuModuleLoadData {}", source.name), e))?;
        Ok(Module { module, from_cache })
    }

    pub fn function(&self, name: &str) -> Result<sys::CUfunction, CudaError> {
        let c = CString::new(name).map_err(|_| CudaError::Nvrtc { kernel: name.into(), log: "bad kernel name".into() })?;
        // SAFETY: the module is loaded until drop.
        unsafe { result::module::get_function(self.module, c) }.map_err(|e| CudaError::driver(format!("cuModuleGetFunction {name}"), e))
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: loaded once, unloaded once.
        let _ = unsafe { result::module::unload(self.module) };
    }
}

pub fn suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
    }
}

/// Every fused kernel for one dtype.
#[derive(Debug)]
pub struct Kernels {
    _module: Module,
    /// Benchmarks only: launch nothing (timing runs that leave the fused kernels out).
    pub skip: std::sync::atomic::AtomicBool,
    /// Bytes per element of the storage dtype.
    elem: usize,
    ln_mod: sys::CUfunction,
    qk_norm_rope: sys::CUfunction,
    gate_res: sys::CUfunction,
    gelu_tanh: sys::CUfunction,
    /// 16-byte vectorized variants, used when every operand is aligned to a vector.
    ln_mod_v: sys::CUfunction,
    qk_norm_rope_v: sys::CUfunction,
    gate_res_v: sys::CUfunction,
    gelu_tanh_v: sys::CUfunction,
    time_embed: sys::CUfunction,
    add_silu: sys::CUfunction,
    silu: sys::CUfunction,
    from_f32: sys::CUfunction,
    to_f32_rows: sys::CUfunction,
}

// SAFETY: CUfunction handles of a loaded module are process-wide; see `Module`.
unsafe impl Send for Kernels {}
unsafe impl Sync for Kernels {}

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per).max(1) as u32
}

/// Whether every address is a multiple of `bytes`.
fn aligned(bytes: u64, ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p.is_multiple_of(bytes))
}

/// Registers per thread row chunk of `ln_mod_v` (`LN_CHUNKS` in fused.cu).
const LN_CHUNKS: usize = 4;

/// Per-stream modulation parameters for a kernel over joint rows: the text and image rows' vectors
/// (the same pointer twice for single blocks), and the per-sample stride (elements).
#[derive(Clone, Copy, Debug)]
pub struct Streams {
    pub txt: u64,
    pub img: u64,
    pub stride: i32,
}

/// A joint `[B, S_tot, ·]` layout: the text rows of each sample come first.
#[derive(Clone, Copy, Debug)]
pub struct Joint {
    pub batch: usize,
    pub s_tot: usize,
    pub s_txt: usize,
}

impl Joint {
    pub fn rows(&self) -> usize {
        self.batch * self.s_tot
    }
}

impl Kernels {
    /// # Safety
    /// As [`Gpu::launch`].
    unsafe fn go(
        &self,
        gpu: &Gpu,
        f: sys::CUfunction,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        p: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        if self.skip.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        gpu.launch(f, name, grid, block, p)
    }

    pub fn load(gpu: &Gpu, dtype: DType) -> Result<Self, CudaError> {
        let module = Module::load(gpu, nvrtc::source("fused.cu"))?;
        let s = suffix(dtype);
        let f = |n: &str| module.function(&format!("{n}_{s}"));
        Ok(Kernels {
            elem: dtype.size(),
            ln_mod_v: f("ln_mod_v")?,
            qk_norm_rope_v: f("qk_norm_rope_v")?,
            gate_res_v: f("gate_res_v")?,
            gelu_tanh_v: f("gelu_tanh_v")?,
            ln_mod: f("ln_mod")?,
            qk_norm_rope: f("qk_norm_rope")?,
            gate_res: f("gate_res")?,
            gelu_tanh: f("gelu_tanh")?,
            time_embed: f("time_embed")?,
            add_silu: f("add_silu")?,
            silu: f("silu")?,
            from_f32: f("from_f32")?,
            to_f32_rows: f("to_f32_rows")?,
            _module: module,
            skip: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `y = LN(x)·(1 + scale) + shift` over every joint row; `shift`/`scale` per stream.
    pub fn ln_mod(&self, gpu: &Gpu, x: u64, y: u64, h: usize, j: Joint, shift: Streams, scale: Streams) -> Result<(), CudaError> {
        let (hh, st, sx, ms) = (h as i32, j.s_tot as i32, j.s_txt as i32, shift.stride);
        let mut p = params![x, y, hh, st, sx, shift.txt, scale.txt, shift.img, scale.img, ms];
        let v = 16 / self.elem;
        let nv = h / v;
        if h.is_multiple_of(v)
            && (shift.stride as usize).is_multiple_of(v)
            && nv <= LN_CHUNKS * 1024
            && aligned(16, &[x, y, shift.txt, scale.txt, shift.img, scale.img])
        {
            let threads = (nv.div_ceil(LN_CHUNKS).div_ceil(32) * 32).clamp(32, 1024) as u32;
            // SAFETY: as below; every vector access is in bounds and 16-byte aligned.
            return unsafe { self.go(gpu, self.ln_mod_v, "ln_mod_v", (j.rows() as u32, 1, 1), (threads, 1, 1), &mut p) };
        }
        // SAFETY: x, y hold rows·h elements; the modulation vectors hold batch·stride.
        unsafe { self.go(gpu, self.ln_mod, "ln_mod", (j.rows() as u32, 1, 1), (256, 1, 1), &mut p) }
    }

    /// QK RMSNorm + RoPE of one stream's rows of the projection output `src` into Q, K, V.
    #[allow(clippy::too_many_arguments)]
    pub fn qk_norm_rope(
        &self,
        gpu: &Gpu,
        src: u64,
        ld: usize,
        cols: [usize; 3],
        stream: (usize, usize),
        j: Joint,
        heads: usize,
        head_dim: usize,
        norm: (u64, u64),
        rope: (u64, u64),
        qkv: [u64; 3],
    ) -> Result<(), CudaError> {
        let (ld, qo, ko, vo) = (ld as i64, cols[0] as i32, cols[1] as i32, cols[2] as i32);
        let (s_off, s_len) = (stream.0 as i32, stream.1 as i32);
        let (st, hs, d, b) = (j.s_tot as i32, heads as i32, head_dim as i32, j.batch as i32);
        let mut p = params![src, ld, qo, ko, vo, s_len, s_off, st, hs, d, norm.0, norm.1, rope.0, rope.1, qkv[0], qkv[1], qkv[2], b];
        let grid = ((j.batch * stream.1) as u32, blocks(heads, 4), 1);
        let e4 = 4 * self.elem as u64;
        let vec = head_dim.is_multiple_of(4)
            && head_dim <= 128
            && ld % 4 == 0
            && cols.iter().all(|c| c.is_multiple_of(4))
            && aligned(e4, &[src, norm.0, norm.1, qkv[0], qkv[1], qkv[2]])
            && aligned(8, &[rope.0, rope.1]);
        let (f, name) = if vec { (self.qk_norm_rope_v, "qk_norm_rope_v") } else { (self.qk_norm_rope, "qk_norm_rope") };
        // SAFETY: src rows cover the joint rows; Q/K/V hold rows·heads·D; tables hold s_tot·D/2;
        // the vector variant's accesses are aligned (checked above).
        unsafe { self.go(gpu, f, name, grid, (32, 4, 1), &mut p) }
    }

    /// `x += gate · y` over every joint row (y with row stride `ldy`), clipping per stream.
    #[allow(clippy::too_many_arguments)]
    pub fn gate_res(&self, gpu: &Gpu, x: u64, y: u64, ldy: usize, h: usize, j: Joint, gate: Streams, clip: (bool, bool)) -> Result<(), CudaError> {
        let (ldy, rows, hh, st, sx, ms) = (ldy as i64, j.rows() as i64, h as i32, j.s_tot as i32, j.s_txt as i32, gate.stride);
        let (ct, ci) = (clip.0 as i32, clip.1 as i32);
        let mut p = params![x, y, ldy, rows, hh, st, sx, gate.txt, gate.img, ms, ct, ci];
        let v = 16 / self.elem;
        if h.is_multiple_of(v) && (ldy as usize).is_multiple_of(v) && (gate.stride as usize).is_multiple_of(v) && aligned(16, &[x, y, gate.txt, gate.img]) {
            // SAFETY: as below, on aligned 16-byte vectors.
            return unsafe { self.go(gpu, self.gate_res_v, "gate_res_v", (blocks(j.rows() * h / v, 256), 1, 1), (256, 1, 1), &mut p) };
        }
        // SAFETY: x holds rows·h, y rows·ldy elements.
        unsafe { self.go(gpu, self.gate_res, "gate_res", (blocks(j.rows() * h, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    /// In-place GELU-tanh on columns `[col0, col0 + cols)` of a `[rows, ld]` matrix.
    pub fn gelu_tanh(&self, gpu: &Gpu, ptr: u64, rows: usize, cols: usize, ld: usize, col0: usize) -> Result<(), CudaError> {
        let (r, c, l, c0) = (rows as i64, cols as i32, ld as i64, col0 as i32);
        let mut p = params![ptr, r, c, l, c0];
        let v = 16 / self.elem;
        if cols.is_multiple_of(v) && ld.is_multiple_of(v) && col0.is_multiple_of(v) && aligned(16, &[ptr]) {
            // SAFETY: as below, on aligned 16-byte vectors.
            return unsafe { self.go(gpu, self.gelu_tanh_v, "gelu_tanh_v", (blocks(rows * cols / v, 256), 1, 1), (256, 1, 1), &mut p) };
        }
        // SAFETY: the matrix holds rows·ld elements.
        unsafe { self.go(gpu, self.gelu_tanh, "gelu_tanh", (blocks(rows * cols, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    /// Sinusoidal embedding `[batch, 2·half]` of `t·1000` (t: f32 `[batch]`, freqs: f32 `[half]`).
    pub fn time_embed(&self, gpu: &Gpu, t: u64, freqs: u64, out: u64, batch: usize, half: usize) -> Result<(), CudaError> {
        let (b, h) = (batch as i32, half as i32);
        let mut p = params![t, freqs, out, b, h];
        // SAFETY: sizes as documented.
        unsafe { self.go(gpu, self.time_embed, "time_embed", (blocks(batch * 2 * half, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    /// `out = SiLU(a + b [+ c])` (`c` = 0: none).
    pub fn add_silu(&self, gpu: &Gpu, a: u64, b: u64, c: u64, out: u64, n: usize) -> Result<(), CudaError> {
        let nn = n as i32;
        let mut p = params![a, b, c, out, nn];
        // SAFETY: every pointer holds n elements (or c is null).
        unsafe { self.go(gpu, self.add_silu, "add_silu", (blocks(n, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    pub fn silu(&self, gpu: &Gpu, x: u64, n: usize) -> Result<(), CudaError> {
        let nn = n as i32;
        let mut p = params![x, nn];
        // SAFETY: x holds n elements.
        unsafe { self.go(gpu, self.silu, "silu", (blocks(n, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    /// f32 → storage dtype, `n` elements.
    pub fn from_f32(&self, gpu: &Gpu, src: u64, dst: u64, n: usize) -> Result<(), CudaError> {
        let nn = n as i64;
        let mut p = params![src, dst, nn];
        // SAFETY: both hold n elements.
        unsafe { self.go(gpu, self.from_f32, "from_f32", (blocks(n, 256), 1, 1), (256, 1, 1), &mut p) }
    }

    /// Rows `[s_off, s_off + s_len)` of each sample of `src [batch, s_tot, c]` → f32 `dst [batch, s_len, c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn to_f32_rows(&self, gpu: &Gpu, src: u64, dst: u64, batch: usize, s_tot: usize, s_off: usize, s_len: usize, c: usize) -> Result<(), CudaError> {
        let (b, st, so, sl, cc) = (batch as i32, s_tot as i32, s_off as i32, s_len as i32, c as i32);
        let mut p = params![src, dst, b, st, so, sl, cc];
        // SAFETY: sizes as documented.
        unsafe { self.go(gpu, self.to_f32_rows, "to_f32_rows", (blocks(batch * s_len * c, 256), 1, 1), (256, 1, 1), &mut p) }
    }
}

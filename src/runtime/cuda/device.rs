//! Checked driver calls: the device (context + one stream), raw device buffers with RAII, copies
//! and kernel launches. Every driver status is checked here and turned into a [`CudaError`].

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaStream};

use super::CudaError;

/// Checks that a run-time loaded library can be opened; `soname` is what CUDA 13 installs.
pub fn require_library(name: &str, present: bool, soname: &str) -> Result<(), CudaError> {
    if present {
        return Ok(());
    }
    Err(CudaError::Library {
        name: name.into(),
        message: format!(
            "not found on the library path (looked for lib{name}.so and the CUDA 12 names); for CUDA 13 or the pip `nvidia-*` packages put a directory with a link `lib{name}.so -> {soname}` on LD_LIBRARY_PATH (tools/device/cuda.sh shows how)"
        ),
    })
}

/// The oldest driver API this backend calls (CUDA 12.0; cudarc is built against the 12.8 API but
/// uses nothing newer than 12.0 here).
pub const MIN_DRIVER_VERSION: i32 = 12000;

/// The driver's CUDA version (`major*1000 + minor*10`, e.g. 13000 for CUDA 13.0).
pub fn driver_version() -> Result<i32, CudaError> {
    let mut v = 0;
    // SAFETY: one out-parameter; callable before cuInit.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(|e| CudaError::driver("cuDriverGetVersion", e))?;
    Ok(v)
}

/// A typed error naming the driver library when `version` is older than [`MIN_DRIVER_VERSION`].
pub fn driver_version_ok(version: i32) -> Result<(), CudaError> {
    if version >= MIN_DRIVER_VERSION {
        return Ok(());
    }
    Err(CudaError::Library {
        name: "NVIDIA driver (libcuda.so.1)".into(),
        message: format!(
            "supports CUDA {}.{}, the native CUDA backend needs CUDA {}.{} or newer (driver 525 or newer)",
            version / 1000,
            version % 1000 / 10,
            MIN_DRIVER_VERSION / 1000,
            MIN_DRIVER_VERSION % 1000 / 10
        ),
    })
}

/// One GPU: its primary context and the session's stream.
#[derive(Debug, Clone)]
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// Compute capability `(major, minor)`.
    pub cc: (i32, i32),
}

impl Gpu {
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        // SAFETY: only probes whether libcuda can be dlopened.
        if !unsafe { sys::is_culib_present() } {
            return Err(CudaError::NoGpu { message: "libcuda.so (the NVIDIA driver) is not installed or not on the library path".into() });
        }
        // cuInit fails with a status (not a panic) when there is no device or the driver is broken.
        result::init().map_err(|e| CudaError::NoGpu { message: format!("cuInit: {e}") })?;
        driver_version_ok(driver_version()?)?;
        let n = CudaContext::device_count().map_err(|e| CudaError::NoGpu { message: format!("cuDeviceGetCount: {e}") })?;
        if ordinal as i32 >= n {
            return Err(CudaError::NoGpu { message: format!("device {ordinal} requested, the driver sees {n}") });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| CudaError::driver(format!("open device {ordinal}"), e))?;
        // One stream per session; cudarc's cross-stream event tracking is not needed.
        // SAFETY: before any allocation of this session.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| CudaError::driver("cuStreamCreate", e))?;
        let cc = ctx.compute_capability().map_err(|e| CudaError::driver("compute capability", e))?;
        if cc.0 < 8 {
            return Err(CudaError::NoGpu { message: format!("compute capability {}.{} is below 8.0 (Ampere), which bf16 kernels need", cc.0, cc.1) });
        }
        Ok(Gpu { ctx, stream, cc })
    }

    pub fn bind(&self) -> Result<(), CudaError> {
        self.ctx.bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent", e))
    }

    pub fn raw_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "CUDA device".into())
    }

    /// An uninitialized device buffer of `bytes` (typed OOM error naming `what`).
    pub fn alloc(&self, bytes: usize, what: &str) -> Result<DeviceBuffer, CudaError> {
        self.bind()?;
        // SAFETY: plain allocation in the bound context.
        let ptr = unsafe { result::malloc_sync(bytes.max(256)) }.map_err(|e| match e.0 {
            sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => CudaError::OutOfMemory { bytes, what: what.into() },
            _ => CudaError::driver(format!("cuMemAlloc {bytes} bytes for {what}"), e),
        })?;
        Ok(DeviceBuffer { ptr, bytes, ctx: self.ctx.clone() })
    }

    /// A zeroed device buffer (synchronous).
    pub fn zeros(&self, bytes: usize, what: &str) -> Result<DeviceBuffer, CudaError> {
        let b = self.alloc(bytes, what)?;
        // SAFETY: the range is inside the allocation.
        unsafe { result::memset_d8_sync(b.ptr, 0, b.bytes.max(256)) }.map_err(|e| CudaError::driver(format!("cuMemset {what}"), e))?;
        Ok(b)
    }

    /// Stream-ordered host → device copy. The host memory must stay valid until the stream
    /// reaches the copy (callers synchronize before releasing it).
    pub fn htod(&self, src: &[u8], dst: u64, what: &str) -> Result<(), CudaError> {
        // SAFETY: `dst` points to at least src.len() bytes (callers check), src outlives the copy.
        unsafe { result::memcpy_htod_async(dst, src, self.raw_stream()) }.map_err(|e| CudaError::driver(format!("upload {what}"), e))
    }

    /// Synchronous device → host copy (after the stream's work).
    pub fn dtoh(&self, src: u64, dst: &mut [u8], what: &str) -> Result<(), CudaError> {
        // SAFETY: `src` holds at least dst.len() bytes.
        unsafe { result::memcpy_dtoh_async(dst, src, self.raw_stream()) }.map_err(|e| CudaError::driver(format!("download {what}"), e))?;
        self.sync(what)
    }

    pub fn dtod(&self, src: u64, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError> {
        // SAFETY: both ranges are inside live allocations (callers check).
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.raw_stream()) }.map_err(|e| CudaError::driver(format!("device copy {what}"), e))
    }

    pub fn sync(&self, what: &str) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(|e| CudaError::driver(format!("cuStreamSynchronize after {what}"), e))
    }

    /// Launches `f` on the stream.
    ///
    /// # Safety
    /// `params` must match the kernel's signature and every pointer in them must be valid for
    /// what the kernel reads and writes.
    pub unsafe fn launch(
        &self,
        f: sys::CUfunction,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        params: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        result::launch_kernel(f, grid, block, 0, self.raw_stream(), params).map_err(|e| CudaError::driver(format!("launch {name}"), e))
    }

    /// `(free, total)` device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize), CudaError> {
        self.bind()?;
        result::mem_get_info().map_err(|e| CudaError::driver("cuMemGetInfo", e))
    }
}

/// A raw device allocation, freed on drop.
#[derive(Debug)]
pub struct DeviceBuffer {
    ptr: u64,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DeviceBuffer {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by malloc_sync in this context and freed once; the session
            // synchronizes its stream before dropping buffers its work uses.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_driver_is_named_with_both_versions() {
        assert!(driver_version_ok(13000).is_ok());
        assert!(driver_version_ok(12000).is_ok());
        let e = driver_version_ok(11080).unwrap_err();
        assert!(matches!(&e, CudaError::Library { name, .. } if name.contains("libcuda")), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("CUDA 11.8") && msg.contains("CUDA 12.0"), "{msg}");
    }

    #[test]
    fn a_missing_library_is_named_with_the_link_to_make() {
        assert!(require_library("cublasLt", true, "libcublasLt.so.13").is_ok());
        let e = require_library("cublasLt", false, "libcublasLt.so.13").unwrap_err();
        assert!(matches!(&e, CudaError::Library { name, .. } if name == "cublasLt"), "{e}");
        assert!(e.to_string().contains("libcublasLt.so -> libcublasLt.so.13"), "{e}");
    }
}

//! Thin checked wrappers over cudarc's driver API for the TensorRT runtime: one context and one
//! stream per session (shared through `Arc`), byte buffers on the device.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};

use super::TrtError;

fn cuda_err(what: impl Into<String>, e: impl std::fmt::Display) -> TrtError {
    TrtError::Cuda { what: what.into(), message: e.to_string() }
}

/// A CUDA device with the session's stream.
#[derive(Debug, Clone)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

impl Gpu {
    /// Opens device `ordinal` (its primary context) and creates a stream. Fails with a typed
    /// error, not a panic, when no CUDA driver library is installed.
    pub fn open(ordinal: usize) -> Result<Self, TrtError> {
        // SAFETY: only probes whether libcuda can be dlopened.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(cuda_err("driver", "libcuda.so (the NVIDIA driver) is not installed or not on the library path"));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err(format!("device {ordinal}"), e))?;
        // One stream per session: cudarc's cross-stream event tracking is not needed.
        // SAFETY: called before any allocation on this context by this session.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| cuda_err("stream creation", e))?;
        Ok(Gpu { ctx, stream })
    }

    /// `(major, minor)` compute capability and the device name, e.g. `"NVIDIA H200 (sm90)"`.
    pub fn describe(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|e| format!("device {} (name: {e})", self.ctx.ordinal()));
        match self.ctx.compute_capability() {
            Ok((ma, mi)) => format!("{name} (sm{ma}{mi})"),
            Err(e) => format!("{name} (compute capability: {e})"),
        }
    }

    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> Result<(i32, i32), TrtError> {
        self.ctx.compute_capability().map_err(|e| cuda_err("compute capability", e))
    }

    /// Makes the context current on the calling thread (TensorRT uses the current context).
    pub fn bind(&self) -> Result<(), TrtError> {
        self.ctx.bind_to_thread().map_err(|e| cuda_err("bind context", e))
    }

    /// The raw `cudaStream_t` for TensorRT.
    pub fn raw_stream(&self) -> *mut std::ffi::c_void {
        self.stream.cu_stream() as *mut std::ffi::c_void
    }

    pub fn synchronize(&self) -> Result<(), TrtError> {
        self.stream.synchronize().map_err(|e| cuda_err("stream synchronize", e))
    }

    pub fn zeros(&self, bytes: usize, what: &str) -> Result<DeviceBuffer, TrtError> {
        let buf = self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| cuda_err(format!("allocate {bytes} bytes for {what}"), e))?;
        Ok(DeviceBuffer { buf, len: bytes })
    }

    /// Copies `src` into the start of `dst` (stream-ordered).
    pub fn upload(&self, src: &[u8], dst: &mut DeviceBuffer, what: &str) -> Result<(), TrtError> {
        if src.len() > dst.len {
            return Err(cuda_err(format!("upload {what}"), format!("{} bytes into a {}-byte buffer", src.len(), dst.len)));
        }
        let mut view = dst.buf.slice_mut(..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| cuda_err(format!("upload {what}"), e))
    }

    /// Copies the first `dst.len()` bytes of `src` to the host and waits for them.
    pub fn download(&self, src: &DeviceBuffer, dst: &mut [u8], what: &str) -> Result<(), TrtError> {
        if dst.len() > src.len {
            return Err(cuda_err(format!("download {what}"), format!("{} bytes from a {}-byte buffer", dst.len(), src.len)));
        }
        let view = src.buf.slice(..dst.len());
        self.stream.memcpy_dtoh(&view, dst).map_err(|e| cuda_err(format!("download {what}"), e))?;
        self.synchronize()
    }

    /// Device address of `buf` for TensorRT bindings and refit weights.
    pub fn address(&self, buf: &DeviceBuffer) -> u64 {
        let (ptr, _record) = buf.buf.device_ptr(&self.stream);
        ptr
    }
}

/// Device memory of a fixed byte length.
#[derive(Debug)]
pub struct DeviceBuffer {
    buf: CudaSlice<u8>,
    len: usize,
}

impl Drop for DeviceBuffer {
    /// cudarc frees without making the buffer's context current; bind it first so a buffer
    /// dropped on another thread (a request's [`super::TrtBound`], a session) is freed in its own
    /// context.
    fn drop(&mut self) {
        if let Err(e) = self.buf.context().bind_to_thread() {
            tracing::warn!(error = %e, bytes = self.len, "CUDA context bind before freeing a device buffer");
        }
    }
}

impl DeviceBuffer {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

//! A checked layer over cuDNN's backend (graph) API, from cudarc's raw `cudnn::sys` bindings.
//!
//! cuDNN is loaded at run time (libcudnn.so.9). Every raw call goes through [`check`], which turns
//! a failed status into [`CudaError::Cudnn`] naming the call and carrying cuDNN's own message
//! (`cudnnGetErrorString` + `cudnnGetLastErrorString`). Handles and backend descriptors are RAII
//! wrappers that destroy themselves on drop.

use std::ffi::{c_void, CStr};

use cudarc::cudnn::sys;
pub(crate) use sys::cudnnBackendAttributeName_t as Attr;
pub(crate) use sys::cudnnBackendDescriptorType_t as Kind;

use super::CudaError;

/// Oldest cuDNN this backend drives: the 9.x backend API with the fused flash-attention patterns.
pub const MIN_VERSION: usize = 9_00_00;

/// Turns a cuDNN status into a result; on failure the error names `call` and keeps cuDNN's messages.
pub(crate) fn check(call: impl FnOnce() -> String, status: sys::cudnnStatus_t) -> Result<(), CudaError> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    Err(CudaError::Cudnn { call: call(), status: format!("{status:?}"), message: last_error(status) })
}

/// cuDNN's description of `status` plus the last detailed error it recorded on this thread.
fn last_error(status: sys::cudnnStatus_t) -> String {
    // SAFETY: both calls return/write NUL-terminated strings owned by cuDNN or by our buffer.
    let general = unsafe {
        let p = sys::cudnnGetErrorString(status);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let mut buf = vec![0 as std::ffi::c_char; 4096];
    unsafe { sys::cudnnGetLastErrorString(buf.as_mut_ptr(), buf.len()) };
    let detail = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().to_string();
    if detail.is_empty() {
        general
    } else {
        format!("{general}; {detail}")
    }
}

/// Loads libcudnn and returns its version (`major*10000 + minor*100 + patch`), or a typed error when
/// the library is missing or older than [`MIN_VERSION`]. Call before any other function here:
/// cudarc panics when a symbol of a library it cannot load is used.
pub fn version() -> Result<usize, CudaError> {
    // SAFETY: only tries to dlopen the candidate names.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::Library {
            name: "cuDNN".into(),
            message: "libcudnn.so.9 not found: install cuDNN 9 (e.g. pip nvidia-cudnn-cu12 / nvidia-cudnn-cu13) and put its lib folder on LD_LIBRARY_PATH"
                .into(),
        });
    }
    // SAFETY: the library is present; cudnnGetVersion has no preconditions.
    let v = unsafe { sys::cudnnGetVersion() };
    if v < MIN_VERSION {
        return Err(CudaError::Library {
            name: "cuDNN".into(),
            message: format!("version {} is too old: fused attention needs cuDNN {} or newer", format_version(v), format_version(MIN_VERSION)),
        });
    }
    Ok(v)
}

/// `91900` → `9.19.0`.
pub fn format_version(v: usize) -> String {
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

/// A cuDNN handle bound to one CUDA stream.
pub(crate) struct Handle(sys::cudnnHandle_t);

// SAFETY: a cuDNN handle may move between threads; concurrent use is serialised by its owner.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    /// Creates a handle on the calling thread's current context and binds it to `stream`.
    pub(crate) fn new(stream: cudarc::driver::sys::CUstream) -> Result<Self, CudaError> {
        let mut raw = std::ptr::null_mut();
        check(|| "cudnnCreate".into(), unsafe { sys::cudnnCreate(&mut raw) })?;
        let handle = Handle(raw);
        check(|| "cudnnSetStream".into(), unsafe { sys::cudnnSetStream(raw, stream as sys::cudaStream_t) })?;
        Ok(handle)
    }

    pub(crate) fn raw(&self) -> sys::cudnnHandle_t {
        self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate, destroyed once.
        unsafe { sys::cudnnDestroy(self.0) };
    }
}

/// One cuDNN backend descriptor (tensor, operation, graph, engine config, plan, variant pack, ...).
pub(crate) struct Descriptor {
    raw: sys::cudnnBackendDescriptor_t,
    kind: Kind,
}

// SAFETY: descriptors are plain host objects; a finalized one is only read.
unsafe impl Send for Descriptor {}
unsafe impl Sync for Descriptor {}

impl Descriptor {
    pub(crate) fn new(kind: Kind) -> Result<Self, CudaError> {
        let mut raw = std::ptr::null_mut();
        check(|| format!("cudnnBackendCreateDescriptor({kind:?})"), unsafe { sys::cudnnBackendCreateDescriptor(kind, &mut raw) })?;
        Ok(Descriptor { raw, kind })
    }

    pub(crate) fn raw(&self) -> sys::cudnnBackendDescriptor_t {
        self.raw
    }

    /// # Safety
    /// `values` must point to `count` elements of the C type that `ty` names.
    unsafe fn set_raw(&self, name: Attr, ty: sys::cudnnBackendAttributeType_t, count: usize, values: *const c_void) -> Result<(), CudaError> {
        check(|| format!("cudnnBackendSetAttribute({:?}, {name:?})", self.kind), sys::cudnnBackendSetAttribute(self.raw, name, ty, count as i64, values))
    }

    pub(crate) fn set_i64s(&self, name: Attr, values: &[i64]) -> Result<(), CudaError> {
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_INT64, values.len(), values.as_ptr().cast()) }
    }

    pub(crate) fn set_bool(&self, name: Attr, value: bool) -> Result<(), CudaError> {
        // cuDNN's CUDNN_TYPE_BOOLEAN is C `bool` (one byte).
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_BOOLEAN, 1, (&value as *const bool).cast()) }
    }

    pub(crate) fn set_f32(&self, name: Attr, value: f32) -> Result<(), CudaError> {
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_FLOAT, 1, (&value as *const f32).cast()) }
    }

    pub(crate) fn set_data_type(&self, name: Attr, value: sys::cudnnDataType_t) -> Result<(), CudaError> {
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_DATA_TYPE, 1, (&value as *const sys::cudnnDataType_t).cast()) }
    }

    pub(crate) fn set_pointwise_mode(&self, value: sys::cudnnPointwiseMode_t) -> Result<(), CudaError> {
        let ty = sys::cudnnBackendAttributeType_t::CUDNN_TYPE_POINTWISE_MODE;
        unsafe { self.set_raw(Attr::CUDNN_ATTR_POINTWISE_MODE, ty, 1, (&value as *const sys::cudnnPointwiseMode_t).cast()) }
    }

    pub(crate) fn set_reduction_op(&self, value: sys::cudnnReduceTensorOp_t) -> Result<(), CudaError> {
        let ty = sys::cudnnBackendAttributeType_t::CUDNN_TYPE_REDUCTION_OPERATOR_TYPE;
        unsafe { self.set_raw(Attr::CUDNN_ATTR_REDUCTION_OPERATOR, ty, 1, (&value as *const sys::cudnnReduceTensorOp_t).cast()) }
    }

    pub(crate) fn set_heur_mode(&self, value: sys::cudnnBackendHeurMode_t) -> Result<(), CudaError> {
        let ty = sys::cudnnBackendAttributeType_t::CUDNN_TYPE_HEUR_MODE;
        unsafe { self.set_raw(Attr::CUDNN_ATTR_ENGINEHEUR_MODE, ty, 1, (&value as *const sys::cudnnBackendHeurMode_t).cast()) }
    }

    pub(crate) fn set_handle(&self, name: Attr, handle: &Handle) -> Result<(), CudaError> {
        let raw = handle.raw();
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_HANDLE, 1, (&raw as *const sys::cudnnHandle_t).cast()) }
    }

    pub(crate) fn set_descs(&self, name: Attr, descs: &[&Descriptor]) -> Result<(), CudaError> {
        let raws: Vec<sys::cudnnBackendDescriptor_t> = descs.iter().map(|d| d.raw).collect();
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_BACKEND_DESCRIPTOR, raws.len(), raws.as_ptr().cast()) }
    }

    pub(crate) fn set_ptrs(&self, name: Attr, ptrs: &[*mut c_void]) -> Result<(), CudaError> {
        unsafe { self.set_raw(name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_VOID_PTR, ptrs.len(), ptrs.as_ptr().cast()) }
    }

    pub(crate) fn finalize(&self) -> Result<(), CudaError> {
        check(|| format!("cudnnBackendFinalize({:?})", self.kind), unsafe { sys::cudnnBackendFinalize(self.raw) })
    }

    /// Reads a scalar int64 attribute (cuDNN insists on the exact element count).
    pub(crate) fn get_i64(&self, name: Attr) -> Result<i64, CudaError> {
        let mut value = 0i64;
        let mut count = 0i64;
        check(|| format!("cudnnBackendGetAttribute({:?}, {name:?})", self.kind), unsafe {
            sys::cudnnBackendGetAttribute(self.raw, name, sys::cudnnBackendAttributeType_t::CUDNN_TYPE_INT64, 1, &mut count, (&mut value as *mut i64).cast())
        })?;
        Ok(value)
    }

    /// Reads an attribute holding behaviour notes (an engine's CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE).
    pub(crate) fn get_behavior_notes(&self) -> Result<Vec<String>, CudaError> {
        let mut values = [0u32; 16];
        let mut count = 0i64;
        let name = Attr::CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE;
        check(|| format!("cudnnBackendGetAttribute({:?}, {name:?})", self.kind), unsafe {
            sys::cudnnBackendGetAttribute(
                self.raw,
                name,
                sys::cudnnBackendAttributeType_t::CUDNN_TYPE_BEHAVIOR_NOTE,
                values.len() as i64,
                &mut count,
                values.as_mut_ptr().cast(),
            )
        })?;
        Ok(values[..(count.clamp(0, 16) as usize)]
            .iter()
            .map(|v| match v {
                0 => "RUNTIME_COMPILATION".to_string(),
                3 => "SUPPORTS_CUDA_GRAPH_NATIVE_API".to_string(),
                4 => "CUBLASLT_DEPENDENCY".to_string(),
                other => format!("note{other}"),
            })
            .collect())
    }

    /// Reads a descriptor-array attribute into fresh descriptors of `kind` (cuDNN fills them in).
    /// `max` bounds the count; `None` asks cuDNN for the count first.
    pub(crate) fn get_descs(&self, name: Attr, kind: Kind, max: Option<usize>) -> Result<Vec<Descriptor>, CudaError> {
        let ty = sys::cudnnBackendAttributeType_t::CUDNN_TYPE_BACKEND_DESCRIPTOR;
        let call = || format!("cudnnBackendGetAttribute({:?}, {name:?})", self.kind);
        let n = match max {
            Some(n) => n,
            None => {
                let mut count = 0i64;
                check(call, unsafe { sys::cudnnBackendGetAttribute(self.raw, name, ty, 0, &mut count, std::ptr::null_mut()) })?;
                count.max(0) as usize
            }
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut out = (0..n).map(|_| Descriptor::new(kind)).collect::<Result<Vec<_>, _>>()?;
        let mut raws: Vec<sys::cudnnBackendDescriptor_t> = out.iter().map(|d| d.raw).collect();
        let mut count = 0i64;
        check(call, unsafe { sys::cudnnBackendGetAttribute(self.raw, name, ty, n as i64, &mut count, raws.as_mut_ptr().cast()) })?;
        out.truncate(count.clamp(0, n as i64) as usize);
        Ok(out)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: created by cudnnBackendCreateDescriptor, destroyed once.
        unsafe { sys::cudnnBackendDestroyDescriptor(self.raw) };
    }
}

/// Runs `plan` with `variant_pack` on the handle's stream.
///
/// # Safety
/// Every device pointer in the variant pack must be valid for the plan's tensors and its workspace.
pub(crate) unsafe fn execute(handle: &Handle, plan: &Descriptor, variant_pack: &Descriptor) -> Result<(), CudaError> {
    check(|| "cudnnBackendExecute".into(), sys::cudnnBackendExecute(handle.raw(), plan.raw(), variant_pack.raw()))
}

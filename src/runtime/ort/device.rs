//! Slot tensors of one adapter set and where they live: host tensors fed per run (plain path),
//! or tensors allocated once in the session's device memory and bound with I/O binding
//! ([`super::FluxSessionBuilder::with_io_binding`]). Device sets are charged to a byte budget
//! while any handle (a [`StagedAdapter`] or an installed lease) holds them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ::ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ::ort::session::Session;
use ::ort::value::DynTensor;

use std::path::Path;

use crate::lora::SlotWeights;
use crate::manifest::LoraSlots;
use crate::runtime::slots::AdapterLabel;
use crate::runtime::RuntimeError;

/// Bytes of device memory held by slot sets of one session, with an optional limit.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<u64>,
    used: AtomicU64,
}

/// A reservation on a [`Budget`], returned when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>) -> Arc<Self> {
        Arc::new(Budget { limit, used: AtomicU64::new(0) })
    }
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }
    /// Reserves `bytes`, or returns `(used, limit)` when that would pass the limit.
    pub(crate) fn charge(self: &Arc<Self>, bytes: u64) -> Result<Charge, (u64, u64)> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let next = used.saturating_add(bytes);
            if let Some(limit) = self.limit.filter(|l| next > *l) {
                return Err((used, limit));
            }
            match self.used.compare_exchange(used, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(Charge { budget: Arc::clone(self), bytes }),
                Err(now) => used = now,
            }
        }
    }
}

/// The slot tensors of one set, in manifest slot order (A then B per slot).
#[derive(Debug)]
pub(crate) struct SlotValues {
    pub(crate) tensors: Vec<(String, DynTensor)>,
    /// In the session's device memory (bound with I/O binding) rather than host tensors.
    pub(crate) on_device: bool,
    pub(crate) bytes: u64,
    pub(crate) _charge: Option<Charge>,
}

/// A slot set built ahead of time on the session's device: [`super::FluxSession::swap_staged`]
/// installs it without host work. Cloning shares the same device tensors; the memory is
/// released (and uncharged) when the last clone and the last lease using it are dropped.
#[derive(Clone, Debug)]
pub struct StagedAdapter {
    pub(crate) session_id: u64,
    pub(crate) adapters: Vec<AdapterLabel>,
    pub(crate) values: Arc<SlotValues>,
}

impl StagedAdapter {
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
    /// Device bytes of the slot tensors.
    pub fn bytes(&self) -> u64 {
        self.values.bytes
    }
    /// Id of the session the set was staged for (it cannot be installed in another).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }
}

/// Where device-resident slot tensors are allocated, and the memory outputs are bound to.
#[derive(Debug)]
pub(crate) struct Device {
    /// ONNX Runtime allocators are `Send` but not all are `Sync` (CUDA's), hence the lock.
    allocator: Mutex<Allocator>,
    pub(crate) name: String,
    /// CUDA device ordinal (`None`: host memory).
    cuda: Option<i32>,
}

impl Device {
    /// The session's allocator for `cuda_device` (CUDA memory), or for host memory when `None`.
    pub(crate) fn new(session: &Session, cuda_device: Option<i32>) -> Result<Self, ::ort::Error> {
        let (dev, id) = match cuda_device {
            Some(d) => (AllocationDevice::CUDA, d),
            None => (AllocationDevice::CPU, 0),
        };
        let info = MemoryInfo::new(dev.clone(), id, AllocatorType::Device, MemoryType::Default)?;
        let allocator = match cuda_device {
            Some(_) => Allocator::new(session, info)?,
            None => Allocator::default(),
        };
        Ok(Device { allocator: Mutex::new(allocator), name: format!("{}:{id}", dev.as_str()), cuda: cuda_device })
    }

    /// Copies host tensors into freshly allocated tensors of this device (through ONNX Runtime's
    /// own copy, synchronized before returning).
    pub(crate) fn upload(&self, host: Vec<(String, DynTensor)>, what: &str) -> Result<Vec<(String, DynTensor)>, RuntimeError> {
        let allocator = self.allocator.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(host.len());
        for (name, h) in host {
            let err = |e: ::ort::Error| RuntimeError::ort(format!("{what}: uploading slot tensor `{name}` to {}", self.name), e);
            let ::ort::value::ValueType::Tensor { ty, shape, .. } = h.dtype().clone() else {
                return Err(RuntimeError::Input { tensor: name, message: "slot value is not a tensor".into() });
            };
            let bf16 = ty == ::ort::value::TensorElementType::Bfloat16;
            let mut d = DynTensor::new(&allocator, ty, shape).map_err(err)?;
            match self.cuda {
                // ort copies through a one-node Identity session, and that Identity has no
                // bfloat16 kernel on CUDA: copy bf16 bytes with the CUDA driver instead.
                Some(ordinal) if bf16 => {
                    let (_, host) = h.try_extract_tensor::<half::bf16>().map_err(err)?;
                    copy_htod(ordinal, d.data_ptr_mut(), host)
                        .map_err(|message| RuntimeError::Ort { what: format!("{what}: uploading slot tensor `{name}` to {}", self.name), message })?;
                }
                _ => h.copy_into(&mut d).map_err(err)?,
            }
            out.push((name, d));
        }
        Ok(out)
    }
}

/// Synchronous host → device copy into ONNX Runtime-allocated CUDA memory of device `ordinal`
/// (the primary context, which ONNX Runtime's CUDA provider also uses).
fn copy_htod<T: Copy>(ordinal: i32, dst: *mut std::ffi::c_void, src: &[T]) -> Result<(), String> {
    let ordinal = usize::try_from(ordinal).map_err(|_| format!("bad CUDA device {ordinal}"))?;
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(|e| format!("CUDA context: {e}"))?;
    ctx.bind_to_thread().map_err(|e| format!("CUDA context: {e}"))?;
    // SAFETY: `dst` is a device allocation of `size_of_val(src)` bytes (allocated by ONNX
    // Runtime for a tensor of the same element type and shape), not aliased while we copy.
    unsafe { cudarc::driver::result::memcpy_htod_sync(dst as cudarc::driver::sys::CUdeviceptr, src) }.map_err(|e| format!("cuMemcpyHtoD: {e}"))
}

/// Laid-out slot weights → host tensors of the slots' dtype (encoded by [`crate::tensor::encode_into`],
/// the one slot encoding every backend uses), named and ordered as in `lora` (A then B per slot).
pub(crate) fn slot_tensors(lora: &LoraSlots, w: SlotWeights, what: &Path) -> Result<Vec<(String, DynTensor)>, RuntimeError> {
    if w.a.len() != lora.slots.len() || w.b.len() != lora.slots.len() {
        return Err(RuntimeError::Input {
            tensor: "lora slots".into(),
            message: format!("{} / {} slot tensors for {} slots", w.a.len(), w.b.len(), lora.slots.len()),
        });
    }
    let host = Allocator::default();
    let ty = super::check::element_type(lora.dtype);
    let mut bytes = Vec::new();
    let mut values = Vec::with_capacity(2 * lora.slots.len());
    for ((s, a), b) in lora.slots.iter().zip(w.a).zip(w.b) {
        for (name, m) in [(&s.a, a), (&s.b, b)] {
            let err = |e| RuntimeError::ort(format!("{}: slot tensor `{name}`", what.display()), e);
            bytes.clear();
            crate::tensor::encode_into(lora.dtype, &m.data, &mut bytes);
            if bytes.len() != m.rows * m.cols * lora.dtype.size() {
                return Err(RuntimeError::Input { tensor: name.clone(), message: format!("{} values for a {}×{} slot", m.data.len(), m.rows, m.cols) });
            }
            let mut t = DynTensor::new(&host, ty, vec![m.rows, m.cols]).map_err(err)?;
            // SAFETY: a host tensor of `rows × cols` elements of `lora.dtype`, i.e. exactly
            // `bytes.len()` bytes, freshly allocated and not shared yet.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), t.data_ptr_mut().cast::<u8>(), bytes.len()) };
            values.push((name.clone(), t));
        }
    }
    Ok(values)
}

/// Byte size of slot tensors (element size × elements).
pub(crate) fn tensor_bytes(tensors: &[(String, DynTensor)]) -> u64 {
    tensors
        .iter()
        .map(|(_, t)| match t.dtype() {
            ::ort::value::ValueType::Tensor { ty, shape, .. } => ty.byte_size(shape.num_elements()).unwrap_or(0) as u64,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_charges_and_releases() {
        let b = Budget::new(Some(100));
        let c1 = b.charge(60).expect("fits");
        assert_eq!(b.charge(50).err(), Some((60, 100)));
        let c2 = b.charge(40).expect("fits exactly");
        assert_eq!(b.used(), 100);
        drop(c1);
        assert_eq!(b.used(), 40);
        drop(c2);
        assert_eq!(b.used(), 0);
        let unlimited = Budget::new(None);
        let _c = unlimited.charge(u64::MAX / 2).expect("no limit");
    }
}

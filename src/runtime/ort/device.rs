//! Slot tensors of one adapter set and where they live: host tensors fed per run (plain path),
//! or tensors allocated once in the session's device memory and bound with I/O binding
//! ([`super::FluxSessionBuilder::with_io_binding`]). Device sets are charged to a byte budget
//! while any handle (a [`StagedAdapter`] or an installed lease) holds them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use ::ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ::ort::session::Session;
use ::ort::value::{DynTensor, DynValue, DynValueRefMut, Shape, TensorElementType, TensorRefMut};
use cudarc::driver::{CudaContext, CudaStream, DriverError, PinnedHostSlice};

use crate::lora::{SlotFill, SlotLayout};
use crate::runtime::slots::AdapterLabel;
use crate::runtime::RuntimeError;
use crate::tensor::DType;

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

/// The slot tensors of one set, in manifest slot order (A then B per slot): views into one
/// contiguous buffer (host memory, or one device allocation) laid out once in the slots' dtype.
#[derive(Debug)]
pub(crate) struct SlotValues {
    /// Declared before `storage`: views are released before the memory they point into.
    tensors: Vec<(String, SlotTensor)>,
    /// In the session's device memory (bound with I/O binding) rather than fed from the host.
    pub(crate) on_device: bool,
    pub(crate) bytes: u64,
    pub(crate) _charge: Option<Charge>,
    _storage: Storage,
}

/// One slot tensor: a view into the set's host buffer (fed per run), or a tensor that owns its
/// memory (bound with I/O binding: ONNX Runtime copies borrowed values on every bind).
#[derive(Debug)]
enum SlotTensor {
    View(DynValueRefMut<'static>),
    Owned(DynValue),
}

/// The memory the slot tensors of one set point into.
#[derive(Debug)]
enum Storage {
    /// Host memory (`u64` words keep it aligned for every slot dtype).
    Host(#[allow(dead_code)] Vec<u64>),
    /// The tensors own their memory.
    Owned,
}

impl SlotValues {
    /// The slot tensors, by initializer name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &DynValue)> {
        self.tensors.iter().map(|(n, v)| {
            (
                n.as_str(),
                match v {
                    SlotTensor::View(v) => &**v,
                    SlotTensor::Owned(v) => v,
                },
            )
        })
    }
}

/// Lays `fill` out in `layout`'s dtype and makes the slot set: host tensors over one buffer when
/// `device` is `None` or host memory, else one device allocation filled by one pipelined upload
/// from pinned memory. `names` are the slot initializers, A then B per slot.
pub(crate) fn slot_values(
    fill: &SlotFill<'_>,
    layout: &SlotLayout,
    names: &[String],
    device: Option<&Device>,
    charge: Option<Charge>,
    what: &str,
) -> Result<SlotValues, RuntimeError> {
    if names.len() != 2 * layout.num_slots() {
        return Err(RuntimeError::Input { tensor: "lora slots".into(), message: format!("{} slot names for {} slots", names.len(), layout.num_slots()) });
    }
    let bytes = layout.bytes() as u64;
    let ty = match layout.dtype() {
        DType::F32 => TensorElementType::Float32,
        DType::F16 => TensorElementType::Float16,
        DType::BF16 => TensorElementType::Bfloat16,
    };
    let shape = |s: [usize; 2]| Shape::new(s.map(|d| d as i64));
    if let Some(dev) = device {
        // Tensors owned by the session's allocator (bound without a copy), filled from one layout.
        let allocator = dev.allocator.lock().unwrap_or_else(|e| e.into_inner());
        let mut tensors = Vec::with_capacity(names.len());
        for (name, (_, s)) in names.iter().zip(layout.tensors()) {
            let t = DynTensor::new(&allocator, ty, shape(s))
                .map_err(|e| RuntimeError::ort(format!("{what}: allocating slot tensor `{name}` on {}", dev.name), e))?;
            tensors.push((name.clone(), t));
        }
        drop(allocator);
        let dsts: Vec<*mut std::ffi::c_void> = tensors.iter_mut().map(|(_, t)| t.data_ptr_mut()).collect();
        match &dev.cuda {
            Some(cuda) => {
                let dsts: Vec<u64> = dsts.iter().map(|p| *p as u64).collect();
                cuda.upload(fill, layout, &dsts)
                    .map_err(|source| RuntimeError::Cuda { what: format!("{what}: uploading {bytes} bytes of LoRA slots to {}", dev.name), source })?;
            }
            None => {
                let mut words = vec![0u64; layout.bytes().div_ceil(8)];
                let host = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..layout.bytes()];
                fill.write(layout, 0..layout.num_slots(), host);
                for (dst, (range, _)) in dsts.iter().zip(layout.tensors()) {
                    // SAFETY: each destination is a host tensor of exactly this range's bytes.
                    unsafe { std::ptr::copy_nonoverlapping(host[range.clone()].as_ptr(), dst.cast::<u8>(), range.len()) };
                }
            }
        }
        let tensors = tensors.into_iter().map(|(n, t)| (n, SlotTensor::Owned(t.into_dyn()))).collect();
        return Ok(SlotValues { tensors, on_device: true, bytes, _charge: charge, _storage: Storage::Owned });
    }
    let mut words = vec![0u64; layout.bytes().div_ceil(8)];
    fill.write(layout, 0..layout.num_slots(), &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..layout.bytes()]);
    let base = words.as_mut_ptr().cast::<std::ffi::c_void>();
    let info = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)
        .map_err(|e| RuntimeError::ort(format!("{what}: host memory info"), e))?;
    let storage = Storage::Host(words);
    let mut tensors = Vec::with_capacity(names.len());
    for (name, (range, s)) in names.iter().zip(layout.tensors()) {
        let shape = shape(s);
        // SAFETY: `range` lies inside the `layout.bytes()` bytes at `base`, which `storage` owns
        // and keeps at the same address (a Vec's heap block) for as long as these views live:
        // `SlotValues` drops `tensors` before `_storage`. The offset is a multiple of the element
        // size, so the view is aligned.
        let ptr = unsafe { base.cast::<u8>().add(range.start) }.cast::<std::ffi::c_void>();
        let view = unsafe {
            match layout.dtype() {
                DType::F32 => TensorRefMut::<f32>::from_raw(info.clone(), ptr, shape).map(|t| t.into_dyn()),
                DType::F16 => TensorRefMut::<half::f16>::from_raw(info.clone(), ptr, shape).map(|t| t.into_dyn()),
                DType::BF16 => TensorRefMut::<half::bf16>::from_raw(info.clone(), ptr, shape).map(|t| t.into_dyn()),
            }
        }
        .map_err(|e| RuntimeError::ort(format!("{what}: slot tensor `{name}`"), e))?;
        tensors.push((name.clone(), SlotTensor::View(view)));
    }
    Ok(SlotValues { tensors, on_device: false, bytes, _charge: charge, _storage: storage })
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
    /// The session's CUDA uploader (`None`: host memory).
    cuda: Option<CudaUpload>,
}

impl Device {
    /// The session's allocator for `cuda_device` (CUDA memory), or for host memory when `None`.
    pub(crate) fn new(session: &Session, cuda_device: Option<i32>) -> Result<Self, RuntimeError> {
        let (dev, id) = match cuda_device {
            Some(d) => (AllocationDevice::CUDA, d),
            None => (AllocationDevice::CPU, 0),
        };
        let name = format!("{}:{id}", dev.as_str());
        let what = || format!("creating the {name} allocator for slot tensors (I/O binding; `.with_io_binding(false)` feeds host slots instead)");
        let info = MemoryInfo::new(dev.clone(), id, AllocatorType::Device, MemoryType::Default).map_err(|e| RuntimeError::ort(what(), e))?;
        let allocator = match cuda_device {
            Some(_) => Allocator::new(session, info).map_err(|e| RuntimeError::ort(what(), e))?,
            None => Allocator::default(),
        };
        let cuda = match cuda_device {
            Some(ordinal) => {
                Some(CudaUpload::new(ordinal).map_err(|source| RuntimeError::Cuda { what: format!("{name}: CUDA context for slot uploads"), source })?)
            }
            None => None,
        };
        Ok(Device { allocator: Mutex::new(allocator), name, cuda })
    }
}

/// Bytes laid out before each asynchronous copy is issued: the copy of one chunk overlaps the
/// layout of the next.
const UPLOAD_CHUNK: usize = 32 << 20;

/// Host → device uploads of slot sets for one session: the device's primary context (the one
/// ONNX Runtime's CUDA provider uses), created once, a copy stream, and pinned staging buffers
/// reused across swaps (page-locked memory is slow to allocate).
#[derive(Debug)]
pub struct CudaUpload {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pinned: Mutex<Vec<PinnedHostSlice<u8>>>,
}

/// What [`CudaUpload::upload`] spent.
#[derive(Clone, Copy, Debug, Default)]
pub struct UploadTiming {
    /// Laying out and converting on the host (summed over chunks).
    pub layout: Duration,
    /// Waiting for the copies after the last chunk was laid out.
    pub wait: Duration,
    /// Allocating a pinned staging buffer (zero when one was reused).
    pub pin: Duration,
}

impl CudaUpload {
    /// The primary context of CUDA device `ordinal` and a copy stream on it.
    pub fn new(ordinal: i32) -> Result<Self, DriverError> {
        let ordinal = usize::try_from(ordinal).map_err(|_| DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_DEVICE))?;
        let ctx = CudaContext::new(ordinal)?;
        let stream = ctx.new_stream()?;
        Ok(CudaUpload { ctx, stream, pinned: Mutex::new(Vec::new()) })
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A pinned buffer of at least `bytes` (reused when one is free).
    fn take_pinned(&self, bytes: usize) -> Result<(PinnedHostSlice<u8>, Duration), DriverError> {
        let mut pool = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pool.iter().position(|p| p.len() >= bytes) {
            return Ok((pool.swap_remove(i), Duration::ZERO));
        }
        drop(pool);
        let t0 = Instant::now();
        // SAFETY: the memory is uninitialized; every byte that is copied is written first.
        let p = unsafe { self.ctx.alloc_pinned::<u8>(bytes.max(1)) }?;
        Ok((p, t0.elapsed()))
    }

    fn give_back(&self, p: PinnedHostSlice<u8>) {
        let mut pool = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        // Keep a couple of staging buffers (concurrent stages); free the rest.
        if pool.len() < 2 {
            pool.push(p);
        }
    }

    /// Lays `fill` out in `layout`'s dtype into pinned memory, chunk by chunk, copying each chunk's
    /// tensors asynchronously (on this session's one stream) while the next chunk is laid out;
    /// returns once everything has landed.
    ///
    /// `dsts` are the device addresses of the slot tensors (A then B per slot, as
    /// [`SlotLayout::tensors`]), allocations of this context of each tensor's bytes that nothing
    /// else uses during the call.
    pub fn upload(&self, fill: &SlotFill<'_>, layout: &SlotLayout, dsts: &[cudarc::driver::sys::CUdeviceptr]) -> Result<UploadTiming, DriverError> {
        if dsts.len() != 2 * layout.num_slots() {
            return Err(DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_INVALID_VALUE));
        }
        let ranges: Vec<std::ops::Range<usize>> = layout.tensors().map(|(r, _)| r).collect();
        let mut timing = UploadTiming::default();
        self.ctx.bind_to_thread()?;
        let (mut pinned, pin) = self.take_pinned(layout.bytes())?;
        timing.pin = pin;
        let host_ptr = pinned.as_mut_ptr()?;
        // SAFETY: `pinned` holds at least `layout.bytes()` bytes, owned by this call until
        // returned to the pool after the stream is synchronized below.
        let host = unsafe { std::slice::from_raw_parts_mut(host_ptr, layout.bytes()) };
        let result = (|| {
            let mut start = 0;
            while start < layout.num_slots() {
                let mut end = start + 1;
                while end < layout.num_slots() && layout.range(start..end + 1).len() <= UPLOAD_CHUNK {
                    end += 1;
                }
                let range = layout.range(start..end);
                let t = Instant::now();
                fill.write(layout, start..end, &mut host[range]);
                timing.layout += t.elapsed();
                for (dst, r) in dsts[2 * start..2 * end].iter().zip(&ranges[2 * start..2 * end]) {
                    // SAFETY: `dst` holds this tensor's bytes; the source stays alive and
                    // unwritten until the stream is synchronized.
                    unsafe { cudarc::driver::result::memcpy_htod_async(*dst, &host[r.clone()], self.stream.cu_stream()) }?;
                }
                start = end;
            }
            let t = Instant::now();
            let synced = self.stream.synchronize();
            timing.wait = t.elapsed();
            synced
        })();
        match result {
            Ok(()) => {
                self.give_back(pinned);
                Ok(timing)
            }
            Err(e) => {
                // The copies may still read the buffer: wait before it can be reused or freed.
                let _ = self.stream.synchronize();
                Err(e)
            }
        }
    }
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

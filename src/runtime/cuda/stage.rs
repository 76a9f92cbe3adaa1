//! [`SlotStager`]: a LoRA slot set laid out on the device.
//!
//! The host packs each placed module's factors compactly into page-locked memory ([`super::pack`]);
//! one host → device copy moves them with a table of [`Piece`]s; the `scatter` kernel
//! (`kernels/slots.cu`) writes every piece into its rows of the zero-filled slot buffer,
//! multiplying B by the file's scale × the strength. The result equals the host lay-out
//! ([`SlotLayout::image`], the reference) bit for bit (`tests/cuda.rs`, on a GPU).
//!
//! Two ways in: [`SlotStager::stage`] packs the adapters of the set on every call (into one
//! reused pinned buffer, table included: one copy); [`SlotStager::pack`] packs one adapter once
//! ([`PackedAdapter`], its own pinned buffer) so that [`SlotStager::stage_packed`] at any strength
//! does no host work but the table: the copy and the kernel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys, PinnedHostSlice};

use super::device::{DeviceBuffer, Gpu};
use super::kernels::Module;
use super::pack::{align, encode_table, pack_into, pack_layout, pieces, Packed, Piece, Upload, PIECE_BYTES};
use super::plan::SlotLayout;
use super::{nvrtc, CudaError};
use crate::lora::{Adapter, LoraModule, SlotPlan, SlotTarget};
use crate::manifest::LoraSlots;
use crate::tensor::DType;

/// What one stage spent.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTiming {
    /// Validation, exactness checks, table and packing on the host.
    pub pack: Duration,
    /// From the packed bytes to the laid-out set on the device: zero fill, copies, scatter, sync.
    pub device: Duration,
    /// Bytes copied host → device.
    pub upload_bytes: usize,
}

/// One adapter's transformer factors packed once for a stager's slot dtype, in page-locked host
/// memory ([`SlotStager::pack`]); staged at any strength by [`SlotStager::stage_packed`]. Holds
/// the adapter (shared, so it cannot change while packed).
pub struct PackedAdapter {
    adapter: Arc<Adapter>,
    dtype: DType,
    session: u64,
    /// By module name.
    modules: HashMap<String, Packed>,
    pinned: PinnedHostSlice<u8>,
    bytes: usize,
}

impl std::fmt::Debug for PackedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedAdapter").field("adapter", &self.adapter.name).field("dtype", &self.dtype).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl PackedAdapter {
    pub fn adapter(&self) -> &Arc<Adapter> {
        &self.adapter
    }
    /// Bytes one stage copies for it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A staged set's device buffer ([`SlotLayout::bytes`]). Dropped, it goes back to its stager,
/// which keeps one spare: the next stage reuses it instead of a `cuMemFree` and a `cuMemAlloc` of
/// the whole set (each a few hundred µs at full size, synchronous). So a stager holds at most
/// one set's bytes beyond the sets in use.
#[derive(Debug)]
pub struct SetBuffer {
    buf: Option<DeviceBuffer>,
    home: Weak<Mutex<Option<DeviceBuffer>>>,
}

impl SetBuffer {
    /// A buffer that is freed when dropped (no stager).
    pub fn owned(buf: DeviceBuffer) -> Self {
        SetBuffer { buf: Some(buf), home: Weak::new() }
    }
}

impl std::ops::Deref for SetBuffer {
    type Target = DeviceBuffer;
    fn deref(&self) -> &DeviceBuffer {
        self.buf.as_ref().expect("present until dropped")
    }
}

impl Drop for SetBuffer {
    fn drop(&mut self) {
        // No GPU work reads the buffer any more: every run that used it synchronized its stream
        // before releasing its lease (`CudaSession::run_step`), and a stage synchronizes before
        // returning.
        if let (Some(buf), Some(home)) = (self.buf.take(), self.home.upgrade()) {
            let mut spare = home.lock().unwrap_or_else(|e| e.into_inner());
            if spare.is_none() {
                *spare = Some(buf);
            }
        }
    }
}

/// Reused between stages (page-locked host memory and device memory are slow to allocate).
#[derive(Default)]
struct Scratch {
    pinned: Option<PinnedHostSlice<u8>>,
    device: Option<DeviceBuffer>,
}

impl Scratch {
    fn device(&mut self, gpu: &Gpu, bytes: usize) -> Result<DeviceBuffer, CudaError> {
        match self.device.take() {
            Some(b) if b.bytes() >= bytes => Ok(b),
            old => {
                drop(old);
                gpu.alloc(bytes, "the packed LoRA upload")
            }
        }
    }

    fn pinned(&mut self, gpu: &Gpu, bytes: usize) -> Result<&mut [u8], CudaError> {
        if self.pinned.as_ref().is_none_or(|p| p.len() < bytes) {
            self.pinned = None;
            self.pinned = Some(alloc_pinned(gpu, bytes)?);
        }
        let p = self.pinned.as_mut().expect("allocated above");
        let ptr = p.as_mut_ptr().map_err(|e| CudaError::driver("pinned staging buffer", e))?;
        // SAFETY: the buffer holds at least `bytes` bytes and is used under the stager's mutex
        // only; no copy from it is in flight (every stage synchronizes before unlocking).
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, bytes) })
    }
}

fn alloc_pinned(gpu: &Gpu, bytes: usize) -> Result<PinnedHostSlice<u8>, CudaError> {
    // SAFETY: uninitialized page-locked memory; every byte copied from it is written first.
    unsafe { gpu.ctx.alloc_pinned::<u8>(bytes.max(1)) }.map_err(|e| match e.0 {
        sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => CudaError::OutOfMemory { bytes, what: "page-locked host memory for LoRA staging".into() },
        _ => CudaError::driver(format!("cuMemHostAlloc {bytes} bytes"), e),
    })
}

static NEXT_STAGER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Lays adapter sets into slot buffers on the device: the slot plan of an engine folder's
/// manifest, a stream of its own and the `scatter` kernel. Needs no model weights.
pub struct SlotStager {
    id: u64,
    gpu: Gpu,
    plan: SlotPlan,
    layout: SlotLayout,
    _module: Module,
    scatter: sys::CUfunction,
    scratch: Mutex<Scratch>,
    /// One released set buffer, reused by the next stage ([`SetBuffer`]).
    spare: Arc<Mutex<Option<DeviceBuffer>>>,
}

// SAFETY: the CUfunction belongs to `_module` (see `Module`); the scratch buffers are used under
// the mutex only.
unsafe impl Send for SlotStager {}
unsafe impl Sync for SlotStager {}

impl std::fmt::Debug for SlotStager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotStager").field("slots", &self.plan.slots.len()).field("bytes", &self.layout.bytes).finish_non_exhaustive()
    }
}

impl SlotStager {
    /// A stager for `slots` (a manifest's LoRA slots) on `gpu`, with a stream of its own.
    pub fn new(gpu: &Gpu, slots: &LoraSlots) -> Result<Self, CudaError> {
        gpu.bind()?;
        let stream = gpu.ctx.new_stream().map_err(|e| CudaError::driver("cuStreamCreate (slot staging)", e))?;
        let gpu = Gpu { stream, ..gpu.clone() };
        let module = Module::load(&gpu, nvrtc::source("slots.cu"))?;
        let scatter = module.function(&format!("scatter_{}", super::kernels::suffix(slots.dtype)))?;
        let id = NEXT_STAGER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(SlotStager {
            id,
            plan: slots.plan(),
            layout: SlotLayout::new(slots),
            gpu,
            _module: module,
            scatter,
            scratch: Mutex::new(Scratch::default()),
            spare: Arc::default(),
        })
    }

    pub fn layout(&self) -> &SlotLayout {
        &self.layout
    }

    pub fn plan(&self) -> &SlotPlan {
        &self.plan
    }

    /// Validates `adapters` against the slots and lays them out in a new device buffer
    /// ([`SlotLayout::bytes`]). Errors (invalid adapters, out of memory as
    /// [`CudaError::OutOfMemory`], a failed copy) leave nothing behind.
    pub fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<SetBuffer> {
        Ok(self.stage_timed(adapters)?.0)
    }

    /// [`Self::stage`] with where the time went.
    pub fn stage_timed(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<(SetBuffer, StageTiming)> {
        let t0 = Instant::now();
        let fill = self.plan.fill(SlotTarget::Transformer, adapters)?;
        let modules: Vec<&LoraModule> = fill.placements().map(|p| p.module).collect();
        let dtype = self.layout.dtype;
        let table = align(2 * modules.len() * PIECE_BYTES);
        let (packed, bytes) = pack_layout(&modules, dtype, table);
        let pieces = pieces(&fill, &self.layout, &packed)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.set_buffer()?;
        if modules.is_empty() {
            self.zero(&out)?;
            self.gpu.sync("zeroing a staged LoRA set")?;
            return Ok((out, StageTiming { pack: t0.elapsed(), ..Default::default() }));
        }
        let up = scratch.device(&self.gpu, bytes)?;
        let host = scratch.pinned(&self.gpu, bytes)?;
        encode_table(&pieces, host);
        pack_into(&modules, &packed, dtype, host);
        let pack = t0.elapsed();
        let t1 = Instant::now();
        let r = self.zero(&out).and_then(|()| self.gpu.htod(host, up.ptr(), "packed LoRA factors")).and_then(|()| self.scatter(&pieces, &up, &out));
        self.finish(&mut scratch, up, r)?;
        Ok((out, StageTiming { pack, device: t1.elapsed(), upload_bytes: bytes }))
    }

    /// Packs `adapter`'s transformer modules once, for [`Self::stage_packed`] (validated against
    /// the slots; its own page-locked buffer).
    pub fn pack(&self, adapter: Arc<Adapter>) -> crate::Result<PackedAdapter> {
        self.plan.validate(&adapter)?;
        let (names, modules): (Vec<&String>, Vec<&LoraModule>) = adapter.modules.iter().unzip();
        let dtype = self.layout.dtype;
        let (packed, bytes) = pack_layout(&modules, dtype, 0);
        self.gpu.bind()?;
        let mut pinned = alloc_pinned(&self.gpu, bytes)?;
        let ptr = pinned.as_mut_ptr().map_err(|e| CudaError::driver("pinned adapter buffer", e))?;
        // SAFETY: `bytes` bytes (at least 1 allocated), not yet used by any copy.
        let host = unsafe { std::slice::from_raw_parts_mut(ptr, bytes) };
        pack_into(&modules, &packed, dtype, host);
        let modules = names.into_iter().cloned().zip(packed).collect();
        Ok(PackedAdapter { dtype, session: self.id, modules, pinned, bytes, adapter })
    }

    /// [`Self::stage`] from packed adapters: validation and the table on the host, then one copy
    /// per adapter (and the table's), the scatter kernel.
    pub fn stage_packed(&self, adapters: &[(&PackedAdapter, f32)]) -> crate::Result<(SetBuffer, StageTiming)> {
        let t0 = Instant::now();
        if adapters.iter().any(|(p, _)| p.session != self.id || p.dtype != self.layout.dtype) {
            return Err(CudaError::ForeignSlots { what: "packed adapter" }.into());
        }
        let refs: Vec<(&Adapter, f32)> = adapters.iter().map(|(p, s)| (&*p.adapter, *s)).collect();
        let fill = self.plan.fill(SlotTarget::Transformer, &refs)?;
        let given: Vec<_> = adapters.iter().map(|(p, _)| (&*p.adapter, &p.modules, p.bytes)).collect();
        let up_plan = Upload::new(&fill, &given)?;
        let n = up_plan.src.len();
        let pieces = pieces(&fill, &self.layout, &up_plan.src)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.set_buffer()?;
        let up = scratch.device(&self.gpu, up_plan.bytes)?;
        let table = scratch.pinned(&self.gpu, up_plan.table)?;
        encode_table(&pieces, table);
        let pack = t0.elapsed();
        let t1 = Instant::now();
        let r = (|| {
            self.zero(&out)?;
            if n == 0 {
                return Ok(());
            }
            self.gpu.htod(table, up.ptr(), "LoRA piece table")?;
            for (i, base) in &up_plan.copies {
                let u = adapters[*i].0;
                let ptr = u.pinned.as_ptr().map_err(|e| CudaError::driver("pinned adapter buffer", e))?;
                // SAFETY: the adapter's buffer holds `u.bytes` bytes and outlives this call,
                // which synchronizes before it returns.
                let host = unsafe { std::slice::from_raw_parts(ptr, u.bytes) };
                self.gpu.htod(host, up.ptr() + *base as u64, "packed adapter")?;
            }
            self.scatter(&pieces, &up, &out)
        })();
        self.finish(&mut scratch, up, r)?;
        Ok((out, StageTiming { pack, device: t1.elapsed(), upload_bytes: up_plan.bytes }))
    }

    /// The spare set buffer, else a new one.
    fn set_buffer(&self) -> Result<SetBuffer, CudaError> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        let buf = match spare {
            Some(b) => b,
            None => self.gpu.alloc(self.layout.bytes, "a staged LoRA set")?,
        };
        Ok(SetBuffer { buf: Some(buf), home: Arc::downgrade(&self.spare) })
    }

    /// Waits for the stream (copies may read pinned memory even after an error) and keeps the
    /// device scratch for the next stage.
    fn finish(&self, scratch: &mut Scratch, up: DeviceBuffer, r: Result<(), CudaError>) -> Result<(), CudaError> {
        let synced = self.gpu.sync("LoRA slot staging");
        scratch.device = Some(up);
        r.and(synced)
    }

    fn zero(&self, out: &SetBuffer) -> Result<(), CudaError> {
        // SAFETY: the range is the allocation.
        unsafe { result::memset_d8_async(out.ptr(), 0, out.bytes(), self.gpu.raw_stream()) }.map_err(|e| CudaError::driver("cuMemsetD8Async (LoRA slots)", e))
    }

    fn scatter(&self, pieces: &[Piece], up: &DeviceBuffer, out: &SetBuffer) -> Result<(), CudaError> {
        if pieces.is_empty() {
            return Ok(());
        }
        let n = pieces.len() as i32;
        let most = pieces.iter().map(|p| p.rows as usize * p.cols as usize).max().unwrap_or(1);
        let grid = (most.div_ceil(256 * 8).clamp(1, 1024) as u32, pieces.len().min(65535) as u32, 1);
        let (table, packed, slots) = (up.ptr(), up.ptr(), out.ptr());
        let mut p = [&table as *const _ as *mut std::ffi::c_void, &n as *const _ as *mut _, &packed as *const _ as *mut _, &slots as *const _ as *mut _];
        // SAFETY: the table at the start of `up` holds n pieces; every piece's source lies in
        // `up` and its destination rows in `out` (planned for this layout); both live until the
        // stream is synchronized.
        unsafe { self.gpu.launch(self.scatter, "scatter (LoRA slots)", grid, (256, 1, 1), &mut p) }
    }
}

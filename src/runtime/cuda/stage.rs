//! [`SlotStager`]: a LoRA slot set laid out on the device.
//!
//! The host packs each placed module's factors compactly (A, then B, no padding, in the slot dtype
//! where that is exact) into page-locked memory; one host → device copy moves them with a table of
//! [`Piece`]s; the `scatter` kernel (`kernels/slots.cu`) writes every piece into its rows of the
//! zero-filled slot buffer, multiplying B by the file's scale × the strength. The result equals
//! the host lay-out ([`SlotLayout::image`], the reference) bit for bit.
//!
//! Two ways in: [`SlotStager::stage`] packs the adapters of the set on every call (into one
//! reused pinned buffer, table included: one copy); [`SlotStager::pack`] packs one adapter once
//! ([`PackedAdapter`], its own pinned buffer) so that [`SlotStager::stage_packed`] at any strength
//! does no host work but the table: the copy and the kernel.
//!
//! Exactness: A is written unscaled, so the host converts it to the slot dtype once (as the host
//! lay-out does). B is scaled before its one rounding (`dtype(b · scale)`), so it is packed in the
//! slot dtype only when every value converts exactly (e.g. adapters saved in bf16, bf16 slots);
//! then the kernel's `dtype(f32(b) · scale)` is the same number. Otherwise B is packed in f32.
//!
//! The host side ([`pack_layout`], [`pieces`], [`pack_into`]) needs no GPU and is unit-tested.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys, PinnedHostSlice};
use rayon::prelude::*;

use super::device::{DeviceBuffer, Gpu};
use super::kernels::Module;
use super::plan::SlotLayout;
use super::{nvrtc, CudaError};
use crate::lora::plan::SlotFill;
use crate::lora::{Adapter, LoraModule, SlotPlan, SlotTarget};
use crate::manifest::LoraSlots;
use crate::tensor::DType;

/// The source is f32 (else the slot dtype).
pub const F32_SOURCE: u32 = 1;
/// Multiply by [`Piece::scale`] before rounding to the slot dtype.
pub const SCALED: u32 = 2;

/// Bytes of one [`Piece`] in the table (`struct Piece` in `kernels/slots.cu`).
pub const PIECE_BYTES: usize = 40;

/// Regions of a packed buffer start on this many bytes.
const ALIGN: usize = 256;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// One matrix of the packed upload and where it goes in the slot buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Piece {
    /// Byte offset of the source in the device copy of the upload.
    pub src: u64,
    /// Byte offset of element (0, 0) in the slot buffer.
    pub dst: u64,
    pub rows: u32,
    pub cols: u32,
    /// Destination row stride, elements.
    pub ld: u32,
    /// [`F32_SOURCE`] | [`SCALED`].
    pub flags: u32,
    pub scale: f32,
}

impl Piece {
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.src.to_le_bytes());
        out[8..16].copy_from_slice(&self.dst.to_le_bytes());
        for (i, v) in [self.rows, self.cols, self.ld, self.flags, self.scale.to_bits(), 0].into_iter().enumerate() {
            out[16 + 4 * i..20 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Writes `pieces` as the kernel's table into `out` (at least `pieces.len() · PIECE_BYTES`).
pub fn encode_table(pieces: &[Piece], out: &mut [u8]) {
    for (p, t) in pieces.iter().zip(out.chunks_exact_mut(PIECE_BYTES)) {
        p.encode(t);
    }
}

/// Whether every value of `data` converts to `dtype` and back unchanged.
pub fn exact_in(dtype: DType, data: &[f32]) -> bool {
    const CHUNK: usize = 1 << 14;
    match dtype {
        DType::F32 => true,
        // bf16 keeps the upper 16 bits (NaNs take the f32 path: their quiet bit may change)
        DType::BF16 => data.par_chunks(CHUNK).all(|c| c.iter().all(|v| v.to_bits() & 0xFFFF == 0 && !v.is_nan())),
        DType::F16 => data.par_chunks(CHUNK).all(|c| c.iter().all(|v| half::f16::from_f32(*v).to_f32().to_bits() == v.to_bits())),
    }
}

/// Where one module's factors lie in a packed buffer (byte offsets) and in which dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    pub a: usize,
    pub b: usize,
    /// B is f32 (it does not convert exactly to the slot dtype).
    pub b_f32: bool,
}

fn src_bytes(m: &LoraModule, dtype: DType, which: usize, b_f32: bool) -> usize {
    let n = if which == 0 { m.a.data.len() } else { m.b.data.len() };
    n * if which == 1 && b_f32 { 4 } else { dtype.size() }
}

/// Packs `modules` one after the other from byte `start` on (each A, then B, `ALIGN`ed): where
/// each goes, and the end. Checks each B's exactness in `dtype` ([`exact_in`]).
pub fn pack_layout(modules: &[&LoraModule], dtype: DType, start: usize) -> (Vec<Packed>, usize) {
    let mut at = start;
    let packed = modules
        .iter()
        .map(|m| {
            let b_f32 = !exact_in(dtype, &m.b.data);
            let a = at;
            let b = a + align(src_bytes(m, dtype, 0, b_f32));
            at = b + align(src_bytes(m, dtype, 1, b_f32));
            Packed { a, b, b_f32 }
        })
        .collect();
    (packed, at)
}

/// Writes `modules` where `packed` says ([`pack_layout`]) into `out` (its offsets index `out`,
/// 16-byte aligned), in parallel; bytes between regions are left as they are.
pub fn pack_into(modules: &[&LoraModule], packed: &[Packed], dtype: DType, out: &mut [u8]) {
    assert_eq!(modules.len(), packed.len(), "a pack layout of other modules");
    let mut regions: Vec<(usize, usize, &[f32], bool)> = Vec::with_capacity(2 * modules.len());
    for (m, p) in modules.iter().zip(packed) {
        regions.push((p.a, src_bytes(m, dtype, 0, p.b_f32), &m.a.data, false));
        regions.push((p.b, src_bytes(m, dtype, 1, p.b_f32), &m.b.data, p.b_f32));
    }
    regions.sort_by_key(|r| r.0);
    let (mut rest, mut at) = (out, 0usize);
    let mut jobs = Vec::with_capacity(regions.len());
    for (start, len, src, f32_source) in regions {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
        let (dst, tail) = tail.split_at_mut(len);
        (rest, at) = (tail, start + len);
        jobs.push((src, f32_source, dst));
    }
    jobs.into_par_iter().for_each(|(src, f32_source, dst)| encode(if f32_source { DType::F32 } else { dtype }, src, dst));
}

/// The pieces of `fill` into `layout` (the device layout of the same plan's slots): A and B of
/// each placement ([`SlotFill::placements`] order); `src[k]` is where placement `k`'s module lies
/// in the device copy of the upload.
pub fn pieces(fill: &SlotFill<'_>, layout: &SlotLayout, src: &[Packed]) -> Result<Vec<Piece>, CudaError> {
    let (e, r) = (layout.dtype.size(), layout.max_rank);
    if fill.placements().count() != src.len() || fill.plan().slots.len() != layout.offsets.len() || fill.plan().max_rank != r {
        return Err(CudaError::Input { tensor: "lora slots".into(), message: "slot plan and device slot layout differ".into() });
    }
    let dim = |n: usize, what: &str| -> Result<u32, CudaError> {
        u32::try_from(n)
            .ok()
            .filter(|v| (*v as u64) * (r.max(1) as u64) < 1 << 31)
            .ok_or_else(|| CudaError::Input { tensor: "lora slots".into(), message: format!("{what} {n} × rank {r} is too large for the device lay-out") })
    };
    let mut out = Vec::with_capacity(2 * src.len());
    for (p, s) in fill.placements().zip(src) {
        let (rank, in_f, out_f) = (p.module.rank(), p.module.in_features(), p.module.out_features());
        let (a_off, b_off) = layout.offsets[p.slot];
        let a = Piece {
            src: s.a as u64,
            dst: (a_off + p.offset * in_f * e) as u64,
            rows: rank as u32,
            cols: dim(in_f, "in_features")?,
            ld: in_f as u32,
            flags: 0,
            scale: 1.0,
        };
        let flags = SCALED | if s.b_f32 && layout.dtype != DType::F32 { F32_SOURCE } else { 0 };
        let b = Piece {
            src: s.b as u64,
            dst: (b_off + p.offset * e) as u64,
            rows: dim(out_f, "out_features")?,
            cols: rank as u32,
            ld: r as u32,
            flags,
            scale: p.scale,
        };
        out.extend([a, b]);
    }
    Ok(out)
}

/// `src` converted to `dtype` into `dst`, rounding as the host lay-out does (`half`'s `from_f32`).
fn encode(dtype: DType, src: &[f32], dst: &mut [u8]) {
    const CHUNK: usize = 1 << 14;
    match dtype {
        DType::F32 => bytemuck::cast_slice_mut::<u8, f32>(dst).copy_from_slice(src),
        DType::F16 => bytemuck::cast_slice_mut::<u8, half::f16>(dst)
            .par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, v)| *d = half::f16::from_f32(*v))),
        DType::BF16 => bytemuck::cast_slice_mut::<u8, half::bf16>(dst)
            .par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, v)| *d = half::bf16::from_f32(*v))),
    }
}

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
        Ok(SlotStager { id, plan: slots.plan(), layout: SlotLayout::new(slots), gpu, _module: module, scatter, scratch: Mutex::new(Scratch::default()) })
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
    pub fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<DeviceBuffer> {
        Ok(self.stage_timed(adapters)?.0)
    }

    /// [`Self::stage`] with where the time went.
    pub fn stage_timed(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<(DeviceBuffer, StageTiming)> {
        let t0 = Instant::now();
        let fill = self.plan.fill(SlotTarget::Transformer, adapters)?;
        let modules: Vec<&LoraModule> = fill.placements().map(|p| p.module).collect();
        let dtype = self.layout.dtype;
        let table = align(2 * modules.len() * PIECE_BYTES);
        let (packed, bytes) = pack_layout(&modules, dtype, table);
        let pieces = pieces(&fill, &self.layout, &packed)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.gpu.alloc(self.layout.bytes, "a staged LoRA set")?;
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
    pub fn stage_packed(&self, adapters: &[(&PackedAdapter, f32)]) -> crate::Result<(DeviceBuffer, StageTiming)> {
        let t0 = Instant::now();
        if adapters.iter().any(|(p, _)| p.session != self.id || p.dtype != self.layout.dtype) {
            return Err(CudaError::ForeignSlots { what: "packed adapter" }.into());
        }
        let refs: Vec<(&Adapter, f32)> = adapters.iter().map(|(p, s)| (&*p.adapter, *s)).collect();
        let fill = self.plan.fill(SlotTarget::Transformer, &refs)?;
        // each distinct adapter once, after the table
        let n = fill.placements().count();
        let mut at = align(2 * n * PIECE_BYTES);
        let mut uploads: Vec<(&PackedAdapter, usize)> = Vec::new();
        for (p, _) in adapters {
            if !uploads.iter().any(|(u, _)| std::ptr::eq(*u, *p)) {
                uploads.push((p, at));
                at += align(p.bytes);
            }
        }
        // placement → its module's packed place, by the module's address in its adapter
        let mut src = Vec::with_capacity(n);
        for pl in fill.placements() {
            let found = uploads.iter().find_map(|(u, base)| {
                u.adapter.modules.iter().find(|(_, m)| std::ptr::eq(*m, pl.module)).and_then(|(name, _)| u.modules.get(name)).map(|p| (p, base))
            });
            let (p, base) =
                found.ok_or_else(|| CudaError::Input { tensor: "lora slots".into(), message: "a placed module is not in its packed adapter".into() })?;
            src.push(Packed { a: base + p.a, b: base + p.b, b_f32: p.b_f32 });
        }
        let pieces = pieces(&fill, &self.layout, &src)?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.gpu.alloc(self.layout.bytes, "a staged LoRA set")?;
        let up = scratch.device(&self.gpu, at)?;
        let table = scratch.pinned(&self.gpu, n * PIECE_BYTES)?;
        encode_table(&pieces, table);
        let pack = t0.elapsed();
        let t1 = Instant::now();
        let r = (|| {
            self.zero(&out)?;
            if n == 0 {
                return Ok(());
            }
            self.gpu.htod(table, up.ptr(), "LoRA piece table")?;
            for (u, base) in &uploads {
                let ptr = u.pinned.as_ptr().map_err(|e| CudaError::driver("pinned adapter buffer", e))?;
                // SAFETY: the adapter's buffer holds `u.bytes` bytes and outlives this call,
                // which synchronizes before it returns.
                let host = unsafe { std::slice::from_raw_parts(ptr, u.bytes) };
                self.gpu.htod(host, up.ptr() + *base as u64, "packed adapter")?;
            }
            self.scatter(&pieces, &up, &out)
        })();
        self.finish(&mut scratch, up, r)?;
        Ok((out, StageTiming { pack, device: t1.elapsed(), upload_bytes: at }))
    }

    /// Waits for the stream (copies may read pinned memory even after an error) and keeps the
    /// device scratch for the next stage.
    fn finish(&self, scratch: &mut Scratch, up: DeviceBuffer, r: Result<(), CudaError>) -> Result<(), CudaError> {
        let synced = self.gpu.sync("LoRA slot staging");
        scratch.device = Some(up);
        r.and(synced)
    }

    fn zero(&self, out: &DeviceBuffer) -> Result<(), CudaError> {
        // SAFETY: the range is the allocation.
        unsafe { result::memset_d8_async(out.ptr(), 0, out.bytes(), self.gpu.raw_stream()) }.map_err(|e| CudaError::driver("cuMemsetD8Async (LoRA slots)", e))
    }

    fn scatter(&self, pieces: &[Piece], up: &DeviceBuffer, out: &DeviceBuffer) -> Result<(), CudaError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::plan::tests::{adapter, module, tiny};
    use crate::lora::plan::PlanOptions;

    /// Applies `pieces` to `packed` on the host as the kernel does (the plan's semantics; the
    /// kernel itself is checked against the host lay-out on a GPU, `tests/cuda.rs`).
    fn scatter_on_host(pieces: &[Piece], packed: &[u8], out: &mut [u8]) {
        out.fill(0);
        let bf = |b: &[u8], i: usize| half::bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        for p in pieces {
            for i in 0..(p.rows * p.cols) as usize {
                let (r, c) = (i / p.cols as usize, i % p.cols as usize);
                let src = &packed[p.src as usize..];
                let v = if p.flags & F32_SOURCE != 0 { f32::from_le_bytes(src[4 * i..4 * i + 4].try_into().unwrap()) } else { bf(src, i).to_f32() };
                let v = if p.flags & SCALED != 0 { v * p.scale } else { v };
                let at = p.dst as usize + 2 * (r * p.ld as usize + c);
                out[at..at + 2].copy_from_slice(&half::bf16::from_f32(v).to_le_bytes());
            }
        }
    }

    fn bf16_exact(mut m: LoraModule) -> LoraModule {
        m.a.data.iter_mut().chain(m.b.data.iter_mut()).for_each(|v| *v = half::bf16::from_f32(*v).to_f32());
        m
    }

    #[test]
    fn pieces_offsets_scales_and_sources() {
        let c = tiny();
        let q = "transformer_blocks.0.attn.to_q";
        let a1 = adapter("a1", vec![(q, module(2, 8, 8, 0.5, 0.75)), ("proj_out", module(1, 8, 4, 0.3, 1.0))]);
        let a2 = adapter("a2", vec![(q, bf16_exact(module(1, 8, 8, -0.3, 1.5)))]);
        let splan = SlotPlan::new(&c, &[&a1, &a2], &PlanOptions { max_rank: Some(4), targets: vec!["attn".into()] }).unwrap();
        let slots = LoraSlots::from_plan(&splan, DType::BF16);
        let layout = SlotLayout::new(&slots);
        let fill = splan.fill(SlotTarget::Transformer, &[(&a1, 0.5), (&a2, -2.0)]).unwrap();
        // placements: q gets a1 (rows 0..2) then a2 (rows 2..3); proj_out gets a1
        let (qi, oi) = (splan.slot_index(q).unwrap(), splan.slot_index("proj_out").unwrap());
        let pl: Vec<_> = fill.placements().map(|p| (p.slot, p.offset, p.scale)).collect();
        assert_eq!(pl, vec![(qi, 0, 0.375), (qi, 2, -3.0), (oi, 0, 0.5)]);
        let modules: Vec<&LoraModule> = fill.placements().map(|p| p.module).collect();
        let (packed, end) = pack_layout(&modules, DType::BF16, 512);
        // a1's B is not bf16-exact (f32), a2's is; regions 256-aligned, disjoint, in order
        assert_eq!(packed.iter().map(|p| p.b_f32).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(packed[0], Packed { a: 512, b: 768, b_f32: true });
        assert_eq!(packed[1].a, 1024);
        assert_eq!(end, packed[2].b + 256);
        let ps = pieces(&fill, &layout, &packed).unwrap();
        assert_eq!(ps.len(), 6);
        let (qa, qb) = layout.offsets[qi];
        // A: the adapter's rows at its rank offset, unscaled, in the slot dtype
        assert_eq!((ps[2].src, ps[2].dst, ps[2].rows, ps[2].cols, ps[2].ld, ps[2].flags, ps[2].scale), (1024, (qa + 2 * 8 * 2) as u64, 1, 8, 8, 0, 1.0));
        // B: out rows, its rank columns at the offset, max_rank stride, scaled; f32 when inexact
        assert_eq!((ps[3].dst, ps[3].rows, ps[3].cols, ps[3].ld, ps[3].flags, ps[3].scale), ((qb + 2 * 2) as u64, 8, 1, 4, SCALED, -3.0));
        assert_eq!((ps[1].flags, ps[1].scale), (SCALED | F32_SOURCE, 0.375));
        // f32 slots never convert
        let f32_layout = SlotLayout::new(&LoraSlots::from_plan(&splan, DType::F32));
        assert!(pieces(&fill, &f32_layout, &packed).unwrap().iter().all(|p| p.flags & F32_SOURCE == 0));
        // a layout of other slots is refused
        let other = LoraSlots { max_rank: 8, ..slots.clone() };
        assert!(pieces(&fill, &SlotLayout::new(&other), &packed).is_err());
        assert!(pieces(&fill, &layout, &packed[..2]).is_err());
    }

    #[test]
    fn packed_pieces_scattered_equal_the_host_lay_out() {
        let c = tiny();
        let q = "transformer_blocks.0.attn.to_q";
        let a1 = adapter("a1", vec![(q, module(2, 8, 8, 0.5, 0.75)), ("proj_out", module(1, 8, 4, 0.3, 1.0))]);
        let a2 = adapter("a2", vec![(q, bf16_exact(module(2, 8, 8, -0.3, 1.5)))]);
        let splan = SlotPlan::new(&c, &[&a1, &a2], &PlanOptions { max_rank: Some(5), targets: vec!["attn".into()] }).unwrap();
        let layout = SlotLayout::new(&LoraSlots::from_plan(&splan, DType::BF16));
        for set in [vec![], vec![(&a1, 0.37f32)], vec![(&a2, 1.0)], vec![(&a1, 0.37), (&a2, -1.9)]] {
            let fill = splan.fill(SlotTarget::Transformer, &set).unwrap();
            let modules: Vec<&LoraModule> = fill.placements().map(|p| p.module).collect();
            let table = align(2 * modules.len() * PIECE_BYTES);
            let (packed, bytes) = pack_layout(&modules, DType::BF16, table);
            let ps = pieces(&fill, &layout, &packed).unwrap();
            let mut words = vec![0u64; bytes / 8];
            let buf = bytemuck::cast_slice_mut::<u64, u8>(&mut words);
            encode_table(&ps, buf);
            pack_into(&modules, &packed, DType::BF16, buf);
            if let Some(p) = ps.first() {
                assert_eq!(&buf[16..20], &p.rows.to_le_bytes()[..], "table entry 0: rows");
            }
            let mut got = vec![0xA5u8; layout.bytes];
            scatter_on_host(&ps, buf, &mut got);
            let want = layout.image(&splan, &set).unwrap();
            assert!(bytemuck::cast_slice::<u32, u8>(&want) == &got[..], "{} adapters", set.len());
        }
    }

    #[test]
    fn exactness_per_dtype() {
        assert!(exact_in(DType::F32, &[0.1, f32::NAN]));
        assert!(exact_in(DType::BF16, &[1.0, -0.5, 2f32.powi(100), 0.0, f32::INFINITY]));
        assert!(!exact_in(DType::BF16, &[1.0, 0.1]));
        assert!(!exact_in(DType::BF16, &[f32::NAN]));
        assert!(exact_in(DType::F16, &[1.0, -0.5, half::f16::from_f32(0.1).to_f32()]));
        assert!(!exact_in(DType::F16, &[1.0e6]));
        assert!(!exact_in(DType::F16, &[0.1]));
    }
}

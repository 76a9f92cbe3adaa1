//! The host side of [`super::stage`]: the packed upload's format (each placed module's A, then B,
//! no padding, in the slot dtype where that is exact, else B in f32), the table of [`Piece`]s the
//! `scatter` kernel (`kernels/slots.cu`) reads, and the packing itself. Needs no GPU.
//!
//! Exactness: A is written unscaled, so the host converts it to the slot dtype once (as the host
//! lay-out does). B is scaled before its one rounding (`dtype(b · scale)`), so it is packed in the
//! slot dtype only when every value converts exactly (e.g. adapters saved in bf16, bf16 slots);
//! then the kernel's `dtype(f32(b) · scale)` is the same number. Otherwise B is packed in f32.

use std::collections::HashMap;

use rayon::prelude::*;

use super::plan::SlotLayout;
use super::CudaError;
use crate::lora::plan::SlotFill;
use crate::lora::{Adapter, LoraModule};
use crate::tensor::DType;

/// The source is f32 (else the slot dtype).
pub const F32_SOURCE: u32 = 1;
/// Multiply by [`Piece::scale`] before rounding to the slot dtype.
pub const SCALED: u32 = 2;

/// Bytes of one [`Piece`] in the table (`struct Piece` in `kernels/slots.cu`).
pub const PIECE_BYTES: usize = 40;

/// Regions of a packed buffer start on this many bytes.
pub const ALIGN: usize = 256;

pub fn align(n: usize) -> usize {
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
    assert!(out.len() >= pieces.len() * PIECE_BYTES, "piece table buffer too small");
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
    let exact: Vec<bool> = modules.par_iter().map(|m| exact_in(dtype, &m.b.data)).collect();
    let mut at = start;
    let packed = modules
        .iter()
        .zip(exact)
        .map(|(m, exact)| {
            let b_f32 = !exact;
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

/// One upload of several adapters packed beforehand ([`pack_layout`] from byte 0 of each one's
/// own buffer): the piece table first, then each distinct adapter once.
#[derive(Clone, Debug, PartialEq)]
pub struct Upload {
    /// `(index into the adapters given, byte offset in the upload)` of each adapter to copy.
    pub copies: Vec<(usize, usize)>,
    /// Where placement `k`'s module lies in the upload (for [`pieces`]).
    pub src: Vec<Packed>,
    /// Bytes of the piece table at offset 0 (A and B of every placement).
    pub table: usize,
    pub bytes: usize,
}

impl Upload {
    /// `adapters[i]`: an adapter of `fill` (by address), where its modules lie in its packed
    /// buffer (by name) and that buffer's bytes.
    pub fn new(fill: &SlotFill<'_>, adapters: &[(&Adapter, &HashMap<String, Packed>, usize)]) -> Result<Self, CudaError> {
        let n = fill.placements().count();
        let table = 2 * n * PIECE_BYTES;
        let mut at = align(table);
        let mut copies: Vec<(usize, usize)> = Vec::new();
        for (i, (a, _, bytes)) in adapters.iter().enumerate() {
            if !copies.iter().any(|(j, _)| std::ptr::eq(adapters[*j].0, *a)) {
                copies.push((i, at));
                at += align(*bytes);
            }
        }
        let mut src = Vec::with_capacity(n);
        for pl in fill.placements() {
            let found = copies.iter().find_map(|(i, base)| {
                let (a, packed, _) = adapters[*i];
                a.modules.iter().find(|(_, m)| std::ptr::eq(*m, pl.module)).and_then(|(name, _)| packed.get(name)).map(|p| (p, base))
            });
            let (p, base) =
                found.ok_or_else(|| CudaError::Input { tensor: "lora slots".into(), message: "a placed module is not in its packed adapter".into() })?;
            src.push(Packed { a: base + p.a, b: base + p.b, b_f32: p.b_f32 });
        }
        Ok(Upload { copies, src, table, bytes: at })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::plan::tests::{adapter, module, tiny};
    use crate::lora::plan::PlanOptions;
    use crate::lora::{SlotPlan, SlotTarget};
    use crate::manifest::LoraSlots;

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

    /// Adapters packed once each (one of them twice in the set), uploaded after the table:
    /// scattered, the same bytes as the host lay-out.
    #[test]
    fn packed_adapters_uploaded_together_equal_the_host_lay_out() {
        let c = tiny();
        let q = "transformer_blocks.0.attn.to_q";
        let a1 = adapter("a1", vec![(q, module(2, 8, 8, 0.5, 0.75)), ("proj_out", module(1, 8, 4, 0.3, 1.0))]);
        let a2 = adapter("a2", vec![(q, bf16_exact(module(2, 8, 8, -0.3, 1.5)))]);
        let splan = SlotPlan::new(&c, &[&a1, &a2], &PlanOptions { max_rank: Some(6), targets: vec!["attn".into()] }).unwrap();
        let layout = SlotLayout::new(&LoraSlots::from_plan(&splan, DType::BF16));
        let pack = |a: &Adapter| {
            let modules: Vec<&LoraModule> = a.modules.values().collect();
            let (packed, bytes) = pack_layout(&modules, DType::BF16, 0);
            let mut words = vec![0u64; bytes / 8];
            pack_into(&modules, &packed, DType::BF16, bytemuck::cast_slice_mut(&mut words));
            (a.modules.keys().cloned().zip(packed).collect::<HashMap<_, _>>(), words, bytes)
        };
        let (p1, p2) = (pack(&a1), pack(&a2));
        let set = [(&a1, 0.37f32), (&a2, -1.9), (&a1, 0.5)];
        let fill = splan.fill(SlotTarget::Transformer, &set).unwrap();
        let given = [(&a1, &p1.0, p1.2), (&a2, &p2.0, p2.2), (&a1, &p1.0, p1.2)];
        let up = Upload::new(&fill, &given).unwrap();
        assert_eq!(up.copies.len(), 2, "a1 once");
        assert_eq!(up.table, 2 * 5 * PIECE_BYTES, "A and B of the 5 placements");
        let ps = pieces(&fill, &layout, &up.src).unwrap();
        let mut words = vec![0u64; up.bytes / 8];
        let buf = bytemuck::cast_slice_mut::<u64, u8>(&mut words);
        encode_table(&ps, &mut buf[..up.table]);
        for (i, base) in &up.copies {
            let w = if *i == 1 { &p2.1 } else { &p1.1 };
            buf[*base..*base + given[*i].2].copy_from_slice(bytemuck::cast_slice(w));
        }
        let mut got = vec![0u8; layout.bytes];
        scatter_on_host(&ps, buf, &mut got);
        let want = layout.image(&splan, &set).unwrap();
        assert!(bytemuck::cast_slice::<u32, u8>(&want) == &got[..]);
        // a module not in the packed maps given is refused
        let empty = HashMap::new();
        assert!(Upload::new(&fill, &[(&a1, &empty, 0), (&a2, &p2.0, p2.2)]).is_err());
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

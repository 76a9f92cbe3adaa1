//! Host-side plans: the activation arena of one (batch, text length, image length) shape and the
//! device layout of a LoRA slot set. Offsets are 256-byte aligned; nothing here touches a GPU.

use crate::flux::{FluxConfig, TIME_EMBED_DIM};
use crate::manifest::LoraSlots;
use crate::tensor::DType;

const ALIGN: usize = 256;

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The shape a graph is captured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub batch: usize,
    pub s_txt: usize,
    pub s_img: usize,
}

impl Shape {
    pub fn s_tot(&self) -> usize {
        self.s_txt + self.s_img
    }
}

/// Byte offsets of every activation buffer inside one arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arena {
    pub shape: Shape,
    pub bytes: usize,
    // f32 inputs / outputs (fixed addresses the graph reads and writes)
    pub latents: usize,
    pub encoder: usize,
    pub pooled: usize,
    pub timestep: usize,
    pub guidance: usize,
    pub freqs: usize,
    pub rope_cos: usize,
    pub rope_sin: usize,
    pub out_f32: usize,
    // compute-dtype buffers
    pub latents_t: usize,
    pub encoder_t: usize,
    pub pooled_t: usize,
    pub tproj: usize,
    pub emb_h: usize,
    pub emb: [usize; 3],
    pub silu_temb: usize,
    pub mod_img: usize,
    pub mod_txt: usize,
    pub hidden: usize,
    pub normed: usize,
    /// `[rows, proj_width]`: q|k|v(|mlp) projections and the MLP hidden.
    pub proj: usize,
    pub proj_width: usize,
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub o: usize,
    pub tmp: usize,
    /// `[rows, max_rank]` LoRA intermediate.
    pub lora: usize,
    pub out_t: usize,
    /// FP8 engines: `[rows, max K]` E4M3 quantized GEMM input (0 bytes otherwise).
    pub q8: usize,
    pub q8_bytes: usize,
    /// FP8 attention (`CudaOptions::fp8_attention`): its scratch, after everything else.
    pub attn_fp8: Option<AttnFp8Arena>,
}

/// Byte offsets of the FP8 attention scratch in an arena ([`super::attention_fp8::Scratch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnFp8Arena {
    pub q8: usize,
    pub k8: usize,
    pub v8: usize,
    /// E4M3 O (only when cuDNN writes O in E4M3; else `None`).
    pub o8: Option<usize>,
    pub scalars: usize,
    pub partial: usize,
}

impl AttnFp8Arena {
    /// Device addresses in the arena at `base`.
    pub fn scratch(&self, base: u64) -> super::attention_fp8::Scratch {
        let p = |o: usize| base + o as u64;
        super::attention_fp8::Scratch {
            q8: p(self.q8),
            k8: p(self.k8),
            v8: p(self.v8),
            o8: self.o8.map_or(0, p),
            scalars: p(self.scalars),
            partial: p(self.partial),
        }
    }
}

impl Arena {
    /// `fp8_k`: the largest K of an FP8 engine's quantized GEMMs (0: not FP8).
    pub fn new(cfg: &FluxConfig, dtype: DType, max_rank: usize, shape: Shape, fp8_k: usize) -> Self {
        let (b, st) = (shape.batch, shape.s_tot());
        let rows = b * st;
        let (h, m) = (cfg.hidden_size, cfg.mlp_hidden);
        let e = dtype.size();
        let mut at = 0usize;
        let mut take = |bytes: usize| {
            let o = at;
            at += align(bytes.max(1));
            o
        };
        let f = 4usize;
        let latents = take(b * shape.s_img * cfg.in_channels * f);
        let encoder = take(b * shape.s_txt * cfg.context_dim * f);
        let pooled = take(b * cfg.pooled_dim * f);
        let timestep = take(b * f);
        let guidance = take(b * f);
        let freqs = take(TIME_EMBED_DIM / 2 * f);
        let half = cfg.head_dim / 2;
        let rope_cos = take(st * half * f);
        let rope_sin = take(st * half * f);
        let out_f32 = take(b * shape.s_img * cfg.out_channels * f);
        let latents_t = take(b * shape.s_img * cfg.in_channels * e);
        let encoder_t = take(b * shape.s_txt * cfg.context_dim * e);
        let pooled_t = take(b * cfg.pooled_dim * e);
        let tproj = take(b * TIME_EMBED_DIM * e);
        let emb_h = take(b * h * e);
        let emb = [take(b * h * e), take(b * h * e), take(b * h * e)];
        let silu_temb = take(b * h * e);
        let mod_img = take(b * 6 * h * e);
        let mod_txt = take(b * 6 * h * e);
        let hidden = take(rows * h * e);
        let normed = take(rows * h * e);
        let proj_width = (3 * h + m).max(m);
        let proj = take(rows * proj_width * e);
        let q = take(rows * h * e);
        let k = take(rows * h * e);
        let v = take(rows * h * e);
        let o = take(rows * h * e);
        let tmp = take(rows * h * e);
        let lora = take(rows * max_rank.max(1) * e);
        let out_t = take(b * shape.s_img * cfg.out_channels * e);
        let q8_bytes = rows * fp8_k;
        let q8 = if fp8_k > 0 { take(q8_bytes) } else { 0 };
        Arena {
            shape,
            bytes: at,
            latents,
            encoder,
            pooled,
            timestep,
            guidance,
            freqs,
            rope_cos,
            rope_sin,
            out_f32,
            latents_t,
            encoder_t,
            pooled_t,
            tproj,
            emb_h,
            emb,
            silu_temb,
            mod_img,
            mod_txt,
            hidden,
            normed,
            proj,
            proj_width,
            q,
            k,
            v,
            o,
            tmp,
            lora,
            out_t,
            q8,
            q8_bytes,
            attn_fp8: None,
        }
    }

    /// Appends the FP8 attention scratch of `sizes` (allocated only when FP8 attention is on).
    pub fn with_fp8_attention(mut self, sizes: super::attention_fp8::ScratchSizes) -> Self {
        let mut take = |bytes: usize| {
            let o = self.bytes;
            self.bytes += align(bytes.max(1));
            o
        };
        let (q8, k8, v8) = (take(sizes.qkv8), take(sizes.qkv8), take(sizes.qkv8));
        let o8 = (sizes.o8 > 0).then(|| take(sizes.o8));
        let scalars = take(sizes.scalars);
        let partial = take(sizes.partial);
        self.attn_fp8 = Some(AttnFp8Arena { q8, k8, v8, o8, scalars, partial });
        self
    }
}

/// Where slot `i`'s A `[max_rank, in]` and B `[out, max_rank]` live in a slot-set buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    pub max_rank: usize,
    pub dtype: DType,
    /// `(a_offset, b_offset)` in bytes, per slot in manifest order.
    pub offsets: Vec<(usize, usize)>,
    pub bytes: usize,
}

impl SlotLayout {
    pub fn new(slots: &LoraSlots) -> Self {
        let e = slots.dtype.size();
        let r = slots.max_rank;
        let mut at = 0;
        let offsets = slots
            .slots
            .iter()
            .map(|s| {
                let a = at;
                at += align(r * s.in_features * e);
                let b = at;
                at += align(s.out_features * r * e);
                (a, b)
            })
            .collect();
        SlotLayout { max_rank: r, dtype: slots.dtype, offsets, bytes: at.max(ALIGN) }
    }

    /// The host image of `adapters` laid into `plan`'s slots (the manifest's plan), in the slots'
    /// dtype, written straight from the adapters' tensors in parallel ([`SlotFill::write`]): the
    /// same bytes as [`SlotLayout::encode`] of [`SlotPlan::lay_out`] without the f32 copy.
    /// `self.bytes` bytes, held as `u32` words (the writer needs the dtype's alignment). The
    /// reference for the device lay-out ([`super::stage::SlotStager`]), which must equal it.
    ///
    /// [`SlotFill::write`]: crate::lora::plan::SlotFill::write
    /// [`SlotPlan::lay_out`]: crate::lora::SlotPlan::lay_out
    pub fn image(&self, plan: &crate::lora::SlotPlan, adapters: &[(&crate::lora::Adapter, f32)]) -> Result<Vec<u32>, crate::lora::PlanError> {
        let fill = plan.fill(crate::lora::plan::SlotTarget::Transformer, adapters)?;
        let dense = crate::lora::plan::SlotLayout::new(plan, self.dtype);
        let starts: Vec<usize> = dense.tensors().map(|(r, _)| r.start).collect();
        let packed = starts.chunks_exact(2).map(|c| (c[0], c[1])).eq(self.offsets.iter().copied());
        let mut words = vec![0u32; self.bytes.max(dense.bytes()).div_ceil(4)];
        fill.write(&dense, 0..dense.num_slots(), &mut bytemuck::cast_slice_mut(&mut words)[..dense.bytes()]);
        if packed {
            // no padding between tensors (each a multiple of 256 bytes, as at full size)
            words.truncate(self.bytes / 4);
            return Ok(words);
        }
        let mut out = vec![0u32; self.bytes / 4];
        let (src, dst): (&[u8], &mut [u8]) = (bytemuck::cast_slice(&words), bytemuck::cast_slice_mut(&mut out));
        for ((range, _), at) in dense.tensors().zip(self.offsets.iter().flat_map(|(a, b)| [*a, *b])) {
            dst[at..at + range.len()].copy_from_slice(&src[range]);
        }
        Ok(out)
    }

    /// The host image of a slot set (`a[i]`, `b[i]` as laid out by the slot plan) in the slots' dtype.
    pub fn encode(&self, w: &crate::lora::plan::SlotWeights) -> Vec<u8> {
        let mut out = vec![0u8; self.bytes];
        let mut tmp = Vec::new();
        for ((a, b), (ao, bo)) in w.a.iter().zip(&w.b).zip(&self.offsets) {
            for (m, off) in [(a, *ao), (b, *bo)] {
                tmp.clear();
                crate::tensor::encode_into(self.dtype, &m.data, &mut tmp);
                out[off..off + tmp.len()].copy_from_slice(&tmp);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux::Variant;

    #[test]
    fn arena_regions_are_aligned_and_disjoint() {
        let cfg = FluxConfig::flux1(Variant::Dev);
        let s = Shape { batch: 1, s_txt: 512, s_img: 4096 };
        let a = Arena::new(&cfg, DType::BF16, 64, s, 3072 + 12288);
        let mut regions = vec![
            (a.hidden, 4608 * 3072 * 2),
            (a.proj, 4608 * (3 * 3072 + 12288) * 2),
            (a.q, 4608 * 3072 * 2),
            (a.k, 4608 * 3072 * 2),
            (a.v, 4608 * 3072 * 2),
            (a.o, 4608 * 3072 * 2),
            (a.tmp, 4608 * 3072 * 2),
            (a.lora, 4608 * 64 * 2),
            (a.latents, 4096 * 64 * 4),
            (a.rope_cos, 4608 * 64 * 4),
            (a.out_f32, 4096 * 64 * 4),
            (a.q8, 4608 * 15360),
        ];
        regions.sort();
        for w in regions.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?} overlap");
        }
        for (o, _) in &regions {
            assert_eq!(o % 256, 0);
        }
        assert!(regions.last().map(|(o, n)| o + n).unwrap() <= a.bytes);
        // the whole arena at 1024² stays well under the 6 GiB activation budget
        assert!(a.bytes < 1 << 30, "{} bytes", a.bytes);
        assert_eq!(a.proj_width, 3 * 3072 + 12288);
        assert_eq!(a.q8_bytes, 4608 * 15360, "FP8: the widest quantized input (single proj_out, K = H + MLP)");
        let plain = Arena::new(&cfg, DType::BF16, 64, s, 0);
        assert_eq!((plain.q8_bytes, plain.bytes), (0, a.bytes - 4608 * 15360), "no FP8 buffer for float engines");
        assert_eq!(plain.attn_fp8, None, "no FP8 attention scratch unless asked");
    }

    #[test]
    fn fp8_attention_scratch_is_appended_aligned_and_disjoint() {
        use super::super::attention::{AttentionShape, Fp8Out};
        use super::super::attention_fp8::ScratchSizes;
        let cfg = FluxConfig::flux1(Variant::Dev);
        let s = Shape { batch: 1, s_txt: 512, s_img: 4096 };
        let shape = AttentionShape { batch: 1, heads: 24, seq: 4608, head_dim: 128, dtype: DType::BF16 };
        let plain = Arena::new(&cfg, DType::BF16, 64, s, 0);
        for out in [Fp8Out::Bf16, Fp8Out::Fp8] {
            let sizes = ScratchSizes::new(&shape, out);
            let a = plain.clone().with_fp8_attention(sizes);
            let f = a.attn_fp8.unwrap();
            assert_eq!(f.o8.is_some(), out == Fp8Out::Fp8);
            let mut regions = vec![(f.q8, sizes.qkv8), (f.k8, sizes.qkv8), (f.v8, sizes.qkv8), (f.scalars, sizes.scalars), (f.partial, sizes.partial)];
            regions.extend(f.o8.map(|o| (o, sizes.o8)));
            regions.sort();
            assert!(regions[0].0 >= plain.bytes, "after the float arena");
            for w in regions.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?} overlap");
            }
            assert!(regions.iter().all(|(o, _)| o % 256 == 0));
            assert!(regions.last().map(|(o, n)| o + n).unwrap() <= a.bytes);
            let sc = f.scratch(1 << 20);
            assert_eq!(sc.q8, (1 << 20) + f.q8 as u64);
            assert_eq!(sc.o8 == 0, out == Fp8Out::Bf16);
        }
    }

    #[test]
    fn slot_layout_packs_a_then_b() {
        let slots = LoraSlots {
            max_rank: 4,
            dtype: DType::BF16,
            slots: vec![
                crate::manifest::SlotSpec { module: "a".into(), a: "lora.a.A".into(), b: "lora.a.B".into(), in_features: 64, out_features: 192 },
                crate::manifest::SlotSpec { module: "b".into(), a: "lora.b.A".into(), b: "lora.b.B".into(), in_features: 256, out_features: 64 },
            ],
        };
        let l = SlotLayout::new(&slots);
        assert_eq!(l.offsets, vec![(0, 512), (512 + 1536, 512 + 1536 + 2048)]);
        assert_eq!(l.bytes, 512 + 1536 + 2048 + 512);
    }
}

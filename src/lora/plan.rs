//! The slot plan: which Linear modules carry a refittable LoRA slot, at what rank, and how an
//! adapter is laid into those slots.
//!
//! **Slots follow the split (diffusers) layout**: one slot per canonical module
//! (`…attn.to_q`, `…attn.to_k`, `…attn.to_v`, `…proj_mlp`, …). The *base* GEMMs stay fused in
//! the exported graph (q/k/v as one GEMM, `linear1` as one GEMM): the exporter adds each split
//! slot's `(x·Aᵀ)·Bᵀ` onto its row range of the fused output. Split slots keep every adapter's
//! own per-module rank and scale (PEFT files are split; kohya's shared-A fused factors are
//! split by rows of B with A repeated, exactly as diffusers converts them), so laying an adapter
//! in is a padded copy, never a block-diagonal expansion of `3r` columns.
//!
//! Every slot has `A: [max_rank, in]` and `B: [out, max_rank]`. An adapter of rank `r < max_rank`
//! fills the first `r` rows of A and the first `r` columns of B, zeros elsewhere; its scale
//! (the file's alpha/r × the user's strength) is folded into B. Modules the adapter does not
//! target are all zeros, so A → B → A restores A exactly.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::ops::Range;

use rayon::prelude::*;

use super::{Adapter, LoraModule};
use crate::encoders::ClipTextConfig;
use crate::flux::{FluxConfig, LinearModule};
use crate::tensor::{DType, Matrix};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no LoRA slots: give at least one adapter or a --targets pattern")]
    NoSlots,
    #[error("target pattern `{pattern}` matches no Linear module of this model")]
    BadTarget { pattern: String },
    #[error("{adapter}: module `{module}` is not a Linear module of this model")]
    UnknownModule { adapter: String, module: String },
    #[error("{adapter}: module `{module}` has no slot in this engine (slots were planned for other modules)")]
    OutsideSlots { adapter: String, module: String },
    #[error("{adapter}: module `{module}` has rank {rank}, above the slots' max rank {max_rank}")]
    RankTooLarge { adapter: String, module: String, rank: usize, max_rank: usize },
    #[error("{adapter}: adapters laid together need rank {rank} on `{module}`, above the slots' max rank {max_rank}")]
    CombinedRankTooLarge { adapter: String, module: String, rank: usize, max_rank: usize },
    #[error("{adapter}: module `{module}` is [{found_out}×{found_in}], the model's is [{out_features}×{in_features}]")]
    ShapeMismatch { adapter: String, module: String, out_features: usize, in_features: usize, found_out: usize, found_in: usize },
    #[error("{adapter}: strength {strength} is not a finite number")]
    BadStrength { adapter: String, strength: f32 },
    #[error("--max-rank must be at least 1")]
    ZeroRank,
}

/// One refittable slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Canonical module name, e.g. `transformer_blocks.0.attn.to_q`.
    pub module: String,
    pub in_features: usize,
    pub out_features: usize,
}

impl Slot {
    /// Name of the A initializer in the exported graph: `lora.<module>.A`.
    pub fn a_name(&self) -> String {
        format!("lora.{}.A", self.module)
    }
    /// Name of the B initializer in the exported graph: `lora.<module>.B`.
    pub fn b_name(&self) -> String {
        format!("lora.{}.B", self.module)
    }
}

/// Options for [`SlotPlan::new`].
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Slot rank; default: the largest rank of the given adapters.
    pub max_rank: Option<usize>,
    /// Extra modules to give slots even if no given adapter targets them (so adapters trained
    /// later can be swapped in). Each entry is a preset (`attn`, `mlp`, `mod`, `blocks`, `all`)
    /// or a module-name glob where `*` matches any run of characters.
    pub targets: Vec<String>,
}

/// The ordered set of slots and their common rank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotPlan {
    pub max_rank: usize,
    pub slots: Vec<Slot>,
}

/// Slot contents for one (set of) adapter(s): `a[i]` is `[max_rank, in]`, `b[i]` is `[out, max_rank]`
/// for `plan.slots[i]`, scale and strength folded into `b[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotWeights {
    pub a: Vec<Matrix>,
    pub b: Vec<Matrix>,
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn preset_match(preset: &str, module: &str) -> Option<bool> {
    let in_block = module.starts_with("transformer_blocks.") || module.starts_with("single_transformer_blocks.");
    let attn = module.contains(".attn.");
    let mlp = module.contains(".ff.")
        || module.contains(".ff_context.")
        || module.ends_with(".proj_mlp")
        || (module.starts_with("single_transformer_blocks.") && module.ends_with(".proj_out"));
    let modulation = module.ends_with("norm1.linear") || module.ends_with("norm1_context.linear") || module.ends_with(".norm.linear");
    Some(match preset {
        "attn" => in_block && attn,
        "mlp" => in_block && mlp,
        "mod" => in_block && modulation,
        "blocks" => in_block,
        "all" => true,
        _ => return None,
    })
}

/// Which model a plan's slots belong to (and so which of an [`Adapter`]'s module maps it reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotTarget {
    /// The FLUX transformer: [`Adapter::modules`], presets `attn`, `mlp`, `mod`, `blocks`, `all`.
    Transformer,
    /// The CLIP-L text encoder: [`Adapter::text_encoder`], presets `attn` (q/k/v/out_proj),
    /// `mlp` (fc1/fc2), `all`.
    ClipText,
}

impl SlotTarget {
    /// The adapter's modules for this target.
    pub fn modules(self, adapter: &Adapter) -> &BTreeMap<String, LoraModule> {
        match self {
            SlotTarget::Transformer => &adapter.modules,
            SlotTarget::ClipText => &adapter.text_encoder,
        }
    }

    fn preset(self, preset: &str, module: &str) -> Option<bool> {
        match self {
            SlotTarget::Transformer => preset_match(preset, module),
            SlotTarget::ClipText => Some(match preset {
                "attn" => module.contains(".self_attn."),
                "mlp" => module.contains(".mlp."),
                "all" => true,
                _ => return None,
            }),
        }
    }

    fn max_rank(self, adapter: &Adapter) -> usize {
        self.modules(adapter).values().map(LoraModule::rank).max().unwrap_or(0)
    }
}

impl SlotPlan {
    /// Plans slots for `adapters` (the union of the modules they target) plus `opts.targets`.
    /// Slots are ordered as [`FluxConfig::linear_modules`].
    ///
    /// ```
    /// use flux_trt::lora::plan::PlanOptions;
    /// use flux_trt::{Checkpoint, SlotPlan};
    /// # fn main() -> flux_trt::Result<()> {
    /// let ckpt = Checkpoint::open("tests/fixtures/models/dev-bfl.safetensors".as_ref())?;
    /// let attn = flux_trt::lora::load("tests/fixtures/loras/attn.peft.safetensors".as_ref())?;
    /// // Slots for the adapter's modules and, for adapters trained later, every MLP layer; rank 8.
    /// let opts = PlanOptions { max_rank: Some(8), targets: vec!["mlp".into()] };
    /// let plan = SlotPlan::new(ckpt.config(), &[&attn], &opts)?;
    /// assert_eq!(plan.max_rank, 8);
    /// assert!(attn.modules.keys().all(|m| plan.slots.iter().any(|s| &s.module == m)));
    /// assert!(plan.slots.iter().any(|s| s.module == "transformer_blocks.0.ff.net.0.proj"));
    /// // An adapter of a higher rank than the slots does not fit.
    /// let rank16 = flux_trt::lora::load("tests/fixtures/loras/rank16.peft.safetensors".as_ref())?;
    /// assert!(plan.validate(&rank16).is_err());
    /// # Ok(())
    /// # }
    /// ```
    /// Errors are [`crate::Error::Plan`].
    pub fn new(config: &FluxConfig, adapters: &[&Adapter], opts: &PlanOptions) -> crate::Result<Self> {
        Ok(Self::plan(SlotTarget::Transformer, config.linear_modules(), adapters, opts)?)
    }

    /// Plans CLIP text-encoder slots for the adapters' [`Adapter::text_encoder`] modules plus
    /// `opts.targets` (presets `attn`, `mlp`, `all`, or globs over
    /// `text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj,mlp.fc1,mlp.fc2}`). Slots are
    /// ordered as [`ClipTextConfig::linear_modules`].
    pub fn for_clip(config: &ClipTextConfig, adapters: &[&Adapter], opts: &PlanOptions) -> crate::Result<Self> {
        Ok(Self::plan(SlotTarget::ClipText, config.linear_modules(), adapters, opts)?)
    }

    /// Plans slots over `modules` (the model's Linear modules, in slot order) for `target`.
    pub fn plan(target: SlotTarget, modules: Vec<LinearModule>, adapters: &[&Adapter], opts: &PlanOptions) -> Result<Self, PlanError> {
        let mut selected = vec![false; modules.len()];
        for ad in adapters {
            for (name, lm) in target.modules(ad) {
                let idx =
                    modules.iter().position(|m| &m.name == name).ok_or_else(|| PlanError::UnknownModule { adapter: ad.name.clone(), module: name.clone() })?;
                check_shape(&ad.name, name, lm, modules[idx].in_features, modules[idx].out_features)?;
                selected[idx] = true;
            }
        }
        for pat in &opts.targets {
            let mut any = false;
            for (i, m) in modules.iter().enumerate() {
                let hit = target.preset(pat, &m.name).unwrap_or_else(|| glob_match(pat, &m.name));
                if hit {
                    selected[i] = true;
                    any = true;
                }
            }
            if !any {
                return Err(PlanError::BadTarget { pattern: pat.clone() });
            }
        }
        let adapter_rank = adapters.iter().map(|a| target.max_rank(a)).max().unwrap_or(0);
        let max_rank = match opts.max_rank {
            Some(0) => return Err(PlanError::ZeroRank),
            Some(r) => r,
            None => adapter_rank.max(1),
        };
        for ad in adapters {
            for (name, lm) in target.modules(ad) {
                if lm.rank() > max_rank {
                    return Err(PlanError::RankTooLarge { adapter: ad.name.clone(), module: name.clone(), rank: lm.rank(), max_rank });
                }
            }
        }
        let slots: Vec<Slot> = modules
            .into_iter()
            .zip(selected)
            .filter(|(_, s)| *s)
            .map(|(m, _)| Slot { module: m.name, in_features: m.in_features, out_features: m.out_features })
            .collect();
        if slots.is_empty() {
            return Err(PlanError::NoSlots);
        }
        Ok(SlotPlan { max_rank, slots })
    }

    pub fn slot_index(&self, module: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.module == module)
    }

    /// Checks that `adapter` fits these slots (every module has a slot, shapes match, rank fits)
    /// without building any tensor.
    pub fn validate(&self, adapter: &Adapter) -> Result<(), PlanError> {
        self.validate_for(SlotTarget::Transformer, adapter)
    }

    /// [`Self::validate`] for `target`'s modules of `adapter`.
    pub fn validate_for(&self, target: SlotTarget, adapter: &Adapter) -> Result<(), PlanError> {
        for (name, lm) in target.modules(adapter) {
            let idx = self.slot_index(name).ok_or_else(|| PlanError::OutsideSlots { adapter: adapter.name.clone(), module: name.clone() })?;
            let s = &self.slots[idx];
            check_shape(&adapter.name, name, lm, s.in_features, s.out_features)?;
            if lm.rank() > self.max_rank {
                return Err(PlanError::RankTooLarge { adapter: adapter.name.clone(), module: name.clone(), rank: lm.rank(), max_rank: self.max_rank });
            }
        }
        Ok(())
    }

    /// All-zero slot contents (the base model).
    pub fn zeros(&self) -> SlotWeights {
        SlotWeights {
            a: self.slots.iter().map(|s| Matrix::zeros(self.max_rank, s.in_features)).collect(),
            b: self.slots.iter().map(|s| Matrix::zeros(s.out_features, self.max_rank)).collect(),
        }
    }

    /// Lays one or more adapters (each with its user strength) into the slots.
    ///
    /// Adapters laid together are concatenated along the rank axis (their ΔW add up), so the sum
    /// of their ranks on a module must fit `max_rank`. Untargeted slots are zeros. Validates
    /// everything before building anything.
    pub fn lay_out(&self, adapters: &[(&Adapter, f32)]) -> Result<SlotWeights, PlanError> {
        self.lay_out_for(SlotTarget::Transformer, adapters)
    }

    /// [`Self::lay_out`] of the adapters' CLIP text-encoder modules (a [`Self::for_clip`] plan).
    pub fn lay_out_text_encoder(&self, adapters: &[(&Adapter, f32)]) -> Result<SlotWeights, PlanError> {
        self.lay_out_for(SlotTarget::ClipText, adapters)
    }

    /// [`Self::lay_out`] of `target`'s modules of each adapter, as `f32` matrices (one per slot
    /// tensor). Services lay adapters straight into the slots' dtype with [`Self::fill`] instead.
    pub fn lay_out_for(&self, target: SlotTarget, adapters: &[(&Adapter, f32)]) -> Result<SlotWeights, PlanError> {
        let fill = self.fill(target, adapters)?;
        let mut w = self.zeros();
        for (i, parts) in fill.parts.iter().enumerate() {
            for p in parts {
                let (r, o, in_f) = (p.module.rank(), p.offset, self.slots[i].in_features);
                w.a[i].data[o * in_f..(o + r) * in_f].copy_from_slice(&p.module.a.data);
                for row in 0..self.slots[i].out_features {
                    let dst = &mut w.b[i].data[row * self.max_rank + o..row * self.max_rank + o + r];
                    dst.iter_mut().zip(p.module.b.row(row)).for_each(|(d, v)| *d = v * p.scale);
                }
            }
        }
        Ok(w)
    }

    /// Validates `target`'s modules of `adapters` (each with its user strength) against the slots
    /// and decides where each module goes (its rank offset in the slot); builds no tensor.
    /// Adapters laid together are concatenated along the rank axis, so the sum of their ranks on
    /// a module must fit `max_rank`.
    pub fn fill<'a>(&'a self, target: SlotTarget, adapters: &[(&'a Adapter, f32)]) -> Result<SlotFill<'a>, PlanError> {
        let mut parts: Vec<Vec<Part<'a>>> = vec![Vec::new(); self.slots.len()];
        let mut used = vec![0usize; self.slots.len()];
        for (ad, strength) in adapters {
            if !strength.is_finite() {
                return Err(PlanError::BadStrength { adapter: ad.name.clone(), strength: *strength });
            }
            self.validate_for(target, ad)?;
            for (name, lm) in target.modules(ad) {
                let i = self.slot_index(name).ok_or_else(|| PlanError::OutsideSlots { adapter: ad.name.clone(), module: name.clone() })?;
                let offset = used[i];
                used[i] += lm.rank();
                if used[i] > self.max_rank {
                    return Err(PlanError::CombinedRankTooLarge { adapter: ad.name.clone(), module: name.clone(), rank: used[i], max_rank: self.max_rank });
                }
                parts[i].push(Part { module: lm, scale: lm.scale * strength, offset });
            }
        }
        Ok(SlotFill { plan: self, parts, used })
    }
}

/// Where the slot tensors of a plan lie in one contiguous buffer of `dtype` elements: A then B
/// of every slot, in slot order (the order of the manifest's slot list), each row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    dtype: DType,
    max_rank: usize,
    /// Per slot: `(in_features, out_features, byte offset of A)`; B follows A.
    slots: Vec<(usize, usize, usize)>,
    bytes: usize,
}

impl SlotLayout {
    /// The layout of `plan`'s slot tensors in `dtype`.
    pub fn new(plan: &SlotPlan, dtype: DType) -> Self {
        let mut offset = 0;
        let slots = plan
            .slots
            .iter()
            .map(|s| {
                let at = offset;
                offset += (s.in_features + s.out_features) * plan.max_rank * dtype.size();
                (s.in_features, s.out_features, at)
            })
            .collect();
        SlotLayout { dtype, max_rank: plan.max_rank, slots, bytes: offset }
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Bytes of all slot tensors.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn num_slots(&self) -> usize {
        self.slots.len()
    }
    /// Byte range of slots `slots` (A and B of each) in the buffer.
    pub fn range(&self, slots: Range<usize>) -> Range<usize> {
        let at = |i: usize| self.slots.get(i).map_or(self.bytes, |s| s.2);
        at(slots.start)..at(slots.end)
    }
    /// Byte range and shape of every slot tensor, A then B per slot.
    pub fn tensors(&self) -> impl Iterator<Item = (Range<usize>, [usize; 2])> + '_ {
        let (r, e) = (self.max_rank, self.dtype.size());
        self.slots.iter().flat_map(move |&(in_f, out_f, at)| {
            let b = at + r * in_f * e;
            [(at..b, [r, in_f]), (b..b + out_f * r * e, [out_f, r])]
        })
    }
}

/// One module of one adapter placed in a slot: rank rows `offset..offset + rank`.
#[derive(Clone, Copy, Debug)]
struct Part<'a> {
    module: &'a LoraModule,
    /// File scale × user strength, folded into B.
    scale: f32,
    offset: usize,
}

/// Adapters validated against a [`SlotPlan`] ([`SlotPlan::fill`]), ready to be written into slot
/// buffers of any dtype with [`SlotFill::write`].
#[derive(Clone, Debug)]
pub struct SlotFill<'a> {
    plan: &'a SlotPlan,
    parts: Vec<Vec<Part<'a>>>,
    /// Rank rows used per slot (the rest are zeros).
    used: Vec<usize>,
}

/// An element type slot buffers are written in; conversions round as `half`'s `from_f32` does.
trait SlotElem: bytemuck::Pod + Send {
    const ZERO: Self;
    fn from_f32(v: f32) -> Self;
}
impl SlotElem for f32 {
    const ZERO: Self = 0.0;
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl SlotElem for half::f16 {
    const ZERO: Self = half::f16::ZERO;
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}
impl SlotElem for half::bf16 {
    const ZERO: Self = half::bf16::ZERO;
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

/// One adapter module placed in a slot by [`SlotPlan::fill`]: what a device-side lay-out needs
/// to write it (the host lay-out is [`SlotFill::write`]).
#[derive(Clone, Copy, Debug)]
pub struct Placement<'a> {
    /// Index of the slot in the plan.
    pub slot: usize,
    pub module: &'a LoraModule,
    /// The file's scale × the user's strength, folded into B (`B·scale`, rounded once).
    pub scale: f32,
    /// First rank row of the slot it fills (rows `offset..offset + rank`).
    pub offset: usize,
}

impl<'a> SlotFill<'a> {
    /// Every placed module, slot by slot (in rank order within a slot). Rank rows from
    /// [`Self::used`] on, and slots without a placement, are zeros.
    pub fn placements(&self) -> impl Iterator<Item = Placement<'a>> + '_ {
        self.parts.iter().enumerate().flat_map(|(slot, ps)| ps.iter().map(move |p| Placement { slot, module: p.module, scale: p.scale, offset: p.offset }))
    }

    /// Rank rows filled in slot `slot`.
    pub fn used(&self, slot: usize) -> usize {
        self.used[slot]
    }

    /// The plan these placements are for.
    pub fn plan(&self) -> &'a SlotPlan {
        self.plan
    }
}

/// A whole slot set laid out on the host in its layout's dtype ([`SlotFill::image`]): A then B
/// of every slot, as [`SlotLayout::tensors`].
#[derive(Clone, Debug, PartialEq)]
pub struct SlotImage {
    /// `u64` words keep the bytes aligned for every slot dtype.
    words: Vec<u64>,
    len: usize,
}

impl SlotImage {
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl SlotFill<'_> {
    /// Every slot of `layout` (a layout of this fill's plan) written ([`Self::write`]) into one
    /// new host buffer.
    pub fn image(&self, layout: &SlotLayout) -> SlotImage {
        let mut words = vec![0u64; layout.bytes().div_ceil(8)];
        self.write(layout, 0..layout.num_slots(), &mut bytemuck::cast_slice_mut(&mut words)[..layout.bytes()]);
        SlotImage { words, len: layout.bytes() }
    }

    /// Writes slots `slots` (see [`SlotLayout::range`]) into `out`, which must be exactly those
    /// slots' bytes of `layout` (a layout of this fill's plan) and aligned to the dtype's size.
    /// Every byte is written (zeros where no adapter reaches); slots are written in parallel.
    ///
    /// # Panics
    /// If `out` does not match `layout.range(slots)` in length, is misaligned, or `layout` has
    /// another number of slots than the plan (programming errors, not input errors).
    pub fn write(&self, layout: &SlotLayout, slots: Range<usize>, out: &mut [u8]) {
        assert_eq!(layout.num_slots(), self.plan.slots.len(), "slot layout of another plan");
        assert_eq!(out.len(), layout.range(slots.clone()).len(), "buffer does not match the slot range");
        match layout.dtype {
            DType::F32 => self.write_typed::<f32>(layout, slots, bytemuck::cast_slice_mut(out)),
            DType::F16 => self.write_typed::<half::f16>(layout, slots, bytemuck::cast_slice_mut(out)),
            DType::BF16 => self.write_typed::<half::bf16>(layout, slots, bytemuck::cast_slice_mut(out)),
        }
    }

    fn write_typed<T: SlotElem>(&self, layout: &SlotLayout, slots: Range<usize>, mut out: &mut [T]) {
        let r = layout.max_rank;
        let mut jobs = Vec::with_capacity(slots.len());
        for i in slots {
            let (in_f, out_f, _) = layout.slots[i];
            let (a, rest) = std::mem::take(&mut out).split_at_mut(r * in_f);
            let (b, rest) = rest.split_at_mut(out_f * r);
            out = rest;
            jobs.push((i, a, b));
        }
        jobs.into_par_iter().for_each(|(i, a, b)| self.write_slot(i, r, a, b));
    }

    fn write_slot<T: SlotElem>(&self, i: usize, r: usize, a: &mut [T], b: &mut [T]) {
        let (in_f, used) = (self.plan.slots[i].in_features, self.used[i]);
        for p in &self.parts[i] {
            let dst = &mut a[p.offset * in_f..(p.offset + p.module.rank()) * in_f];
            dst.iter_mut().zip(&p.module.a.data).for_each(|(d, v)| *d = T::from_f32(*v));
        }
        a[used * in_f..].fill(T::ZERO);
        for (row, dst) in b.chunks_exact_mut(r).enumerate() {
            for p in &self.parts[i] {
                let d = &mut dst[p.offset..p.offset + p.module.rank()];
                d.iter_mut().zip(p.module.b.row(row)).for_each(|(d, v)| *d = T::from_f32(v * p.scale));
            }
            dst[used..].fill(T::ZERO);
        }
    }
}

fn check_shape(adapter: &str, module: &str, lm: &LoraModule, in_f: usize, out_f: usize) -> Result<(), PlanError> {
    if lm.in_features() != in_f || lm.out_features() != out_f {
        return Err(PlanError::ShapeMismatch {
            adapter: adapter.to_string(),
            module: module.to_string(),
            out_features: out_f,
            in_features: in_f,
            found_out: lm.out_features(),
            found_in: lm.in_features(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flux::Variant;
    use crate::lora::LoraFormat;
    use std::collections::BTreeMap;

    pub(crate) fn tiny() -> FluxConfig {
        FluxConfig {
            variant: Variant::Dev,
            hidden_size: 8,
            num_heads: 1,
            head_dim: 8,
            num_double_blocks: 1,
            num_single_blocks: 1,
            in_channels: 4,
            out_channels: 4,
            context_dim: 6,
            pooled_dim: 5,
            mlp_hidden: 16,
            axes_dim: [2, 2, 4],
            rope_theta: 10_000,
        }
    }

    pub(crate) fn module(rank: usize, in_f: usize, out_f: usize, seed: f32, scale: f32) -> LoraModule {
        let a = Matrix::from_vec(rank, in_f, (0..rank * in_f).map(|i| seed + i as f32 * 0.01).collect()).unwrap();
        let b = Matrix::from_vec(out_f, rank, (0..rank * out_f).map(|i| seed - i as f32 * 0.02).collect()).unwrap();
        LoraModule { a, b, scale }
    }

    pub(crate) fn adapter(name: &str, mods: Vec<(&str, LoraModule)>) -> Adapter {
        Adapter {
            name: name.into(),
            source: name.into(),
            format: LoraFormat::Peft,
            modules: mods.into_iter().map(|(n, m)| (n.to_string(), m)).collect::<BTreeMap<_, _>>(),
            text_encoder: BTreeMap::new(),
        }
    }

    #[test]
    fn padded_layout_reproduces_delta() {
        let c = tiny();
        let a1 = adapter("a1", vec![("transformer_blocks.0.attn.to_q", module(2, 8, 8, 0.5, 0.75))]);
        let a2 = adapter("a2", vec![("transformer_blocks.0.attn.to_k", module(4, 8, 8, -0.2, 2.0)), ("proj_out", module(3, 8, 4, 0.1, 1.0))]);
        let plan = SlotPlan::new(&c, &[&a1, &a2], &PlanOptions::default()).unwrap();
        assert_eq!(plan.max_rank, 4);
        let names: Vec<_> = plan.slots.iter().map(|s| s.module.as_str()).collect();
        assert_eq!(names, ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "proj_out"]);
        let w = plan.lay_out(&[(&a1, 0.5)]).unwrap();
        // targeted slot: B·A equals strength × scale × B_file·A_file
        let got = w.b[0].matmul(&w.a[0]).unwrap();
        let mut want = a1.modules["transformer_blocks.0.attn.to_q"].delta();
        want.scale(0.5);
        assert!(got.max_abs_diff(&want) < 1e-6);
        // padding is zero and untargeted slots are all zero
        assert!(w.a[0].data[2 * 8..].iter().all(|v| *v == 0.0));
        assert!(w.a[1].data.iter().chain(&w.b[1].data).chain(&w.a[2].data).all(|v| *v == 0.0));
    }

    #[test]
    fn stacking_adds_deltas_and_checks_rank_sum() {
        let c = tiny();
        let a1 = adapter("a1", vec![("transformer_blocks.0.attn.to_q", module(2, 8, 8, 0.5, 0.75))]);
        let a2 = adapter("a2", vec![("transformer_blocks.0.attn.to_q", module(2, 8, 8, -0.3, 1.5))]);
        let plan = SlotPlan::new(&c, &[&a1], &PlanOptions { max_rank: Some(4), ..Default::default() }).unwrap();
        let w = plan.lay_out(&[(&a1, 1.0), (&a2, -2.0)]).unwrap();
        let got = w.b[0].matmul(&w.a[0]).unwrap();
        let mut want = a2.modules["transformer_blocks.0.attn.to_q"].delta();
        want.scale(-2.0);
        let d1 = a1.modules["transformer_blocks.0.attn.to_q"].delta();
        want.data.iter_mut().zip(&d1.data).for_each(|(w, d)| *w += d);
        assert!(got.max_abs_diff(&want) < 1e-5);
        let plan3 = SlotPlan { max_rank: 3, ..plan };
        assert!(matches!(plan3.lay_out(&[(&a1, 1.0), (&a2, 1.0)]), Err(PlanError::CombinedRankTooLarge { .. })));
    }

    #[test]
    fn typed_errors() {
        let c = tiny();
        let big = adapter("big", vec![("transformer_blocks.0.attn.to_q", module(5, 8, 8, 0.1, 1.0))]);
        let err = SlotPlan::new(&c, &[&big], &PlanOptions { max_rank: Some(4), ..Default::default() }).unwrap_err();
        assert!(matches!(err, crate::Error::Plan(PlanError::RankTooLarge { rank: 5, max_rank: 4, .. })), "{err}");
        let unknown = adapter("u", vec![("transformer_blocks.7.attn.to_q", module(1, 8, 8, 0.1, 1.0))]);
        assert!(matches!(SlotPlan::new(&c, &[&unknown], &PlanOptions::default()), Err(crate::Error::Plan(PlanError::UnknownModule { .. }))));
        let wrong = adapter("w", vec![("transformer_blocks.0.attn.to_q", module(1, 7, 8, 0.1, 1.0))]);
        assert!(matches!(SlotPlan::new(&c, &[&wrong], &PlanOptions::default()), Err(crate::Error::Plan(PlanError::ShapeMismatch { .. }))));
        assert!(matches!(SlotPlan::new(&c, &[], &PlanOptions::default()), Err(crate::Error::Plan(PlanError::NoSlots))));
        assert!(matches!(
            SlotPlan::new(&c, &[], &PlanOptions { targets: vec!["nothing.*".into()], ..Default::default() }),
            Err(crate::Error::Plan(PlanError::BadTarget { .. }))
        ));
        let small = adapter("s", vec![("transformer_blocks.0.attn.to_q", module(1, 8, 8, 0.1, 1.0))]);
        let plan = SlotPlan::new(&c, &[&small], &PlanOptions::default()).unwrap();
        let other = adapter("o", vec![("transformer_blocks.0.attn.to_k", module(1, 8, 8, 0.1, 1.0))]);
        assert!(matches!(plan.lay_out(&[(&other, 1.0)]), Err(PlanError::OutsideSlots { .. })));
        assert!(matches!(plan.lay_out(&[(&small, f32::NAN)]), Err(PlanError::BadStrength { .. })));
    }

    /// Aligned scratch buffer of `n` bytes.
    fn buffer(n: usize) -> Vec<u64> {
        vec![0xA5A5_A5A5_A5A5_A5A5; n.div_ceil(8)]
    }

    #[test]
    fn fill_writes_what_lay_out_converts_bit_for_bit() {
        let c = tiny();
        let a1 = adapter("a1", vec![("transformer_blocks.0.attn.to_q", module(2, 8, 8, 0.5, 0.75)), ("proj_out", module(1, 8, 4, 0.3, 1.0))]);
        let a2 =
            adapter("a2", vec![("transformer_blocks.0.attn.to_q", module(1, 8, 8, -0.3, 1.5)), ("transformer_blocks.0.attn.to_k", module(3, 8, 8, 0.01, 3.3))]);
        let plan = SlotPlan::new(&c, &[&a1, &a2], &PlanOptions { max_rank: Some(4), targets: vec!["attn".into()] }).unwrap();
        let adapters = [(&a1, 0.37f32), (&a2, -1.9)];
        let w = plan.lay_out(&adapters).unwrap();
        let fill = plan.fill(SlotTarget::Transformer, &adapters).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let layout = SlotLayout::new(&plan, dtype);
            // the reference: today's f32 matrices, each converted with `half`'s from_f32
            let mut want = Vec::new();
            for (a, b) in w.a.iter().zip(&w.b) {
                crate::tensor::encode_into(dtype, &a.data, &mut want);
                crate::tensor::encode_into(dtype, &b.data, &mut want);
            }
            assert_eq!(layout.bytes(), want.len());
            let mut buf = buffer(layout.bytes());
            let got = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..layout.bytes()];
            fill.write(&layout, 0..layout.num_slots(), got);
            assert!(got == &want[..], "{dtype:?}");
            // written in two ranges (as an upload overlapping the layout does): the same bytes
            let mut buf2 = buffer(layout.bytes());
            let got2 = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf2)[..layout.bytes()];
            let split = layout.range(0..3).end;
            let (lo, hi) = got2.split_at_mut(split);
            fill.write(&layout, 0..3, lo);
            fill.write(&layout, 3..layout.num_slots(), hi);
            assert!(got2 == &want[..], "{dtype:?} in two ranges");
            // tensor ranges tile the buffer with the manifest's shapes
            let t: Vec<_> = layout.tensors().collect();
            assert_eq!(t.len(), 2 * plan.slots.len());
            assert_eq!((t[0].0.start, t.last().unwrap().0.end), (0, layout.bytes()));
            assert!(t.windows(2).all(|p| p[0].0.end == p[1].0.start));
            assert_eq!(t[1].1, [plan.slots[0].out_features, 4]);
        }
        // errors come before anything is written, as from lay_out
        let plan3 = SlotPlan { max_rank: 3, ..plan.clone() };
        assert!(matches!(plan3.fill(SlotTarget::Transformer, &[(&a1, 1.0), (&a1, 1.0)]), Err(PlanError::CombinedRankTooLarge { .. })));
        assert!(matches!(plan.fill(SlotTarget::Transformer, &[(&a1, f32::INFINITY)]), Err(PlanError::BadStrength { .. })));
    }

    #[test]
    fn target_presets_and_globs() {
        let c = tiny();
        let plan = SlotPlan::new(&c, &[], &PlanOptions { max_rank: Some(8), targets: vec!["attn".into()] }).unwrap();
        assert_eq!(plan.slots.len(), 8 + 3);
        let plan = SlotPlan::new(&c, &[], &PlanOptions { max_rank: Some(8), targets: vec!["single_transformer_blocks.*.proj_*".into()] }).unwrap();
        let names: Vec<_> = plan.slots.iter().map(|s| s.module.as_str()).collect();
        assert_eq!(names, ["single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out"]);
    }
}

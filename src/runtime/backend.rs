//! The one runtime interface every backend implements (ONNX Runtime CPU/CUDA, TensorRT, the
//! native CUDA backend), so the pipeline, `generate`, the self-test, the benchmarks and the
//! service are generic over it.
//!
//! The contract:
//! - **Adapters** ([`Slotted`]): [`Slotted::stage`] validates and lays out an adapter set
//!   completely (in the slots' dtype, ready for one upload) without touching what is installed;
//!   [`Slotted::install`] makes a staged set current, all-or-nothing, with no host work where the
//!   backend keeps staged sets on the device. [`Slotted::swap`] is the two in one.
//! - **Leases**: [`Slotted::lease`] pins the current set; a run given a lease computes with that
//!   set whatever is installed meanwhile. A generation takes one lease for all of its steps.
//! - **Requests** ([`Transformer`]): [`Transformer::bind`] binds the per-request constants once
//!   (encoder states, pooled projections, guidance, RoPE tables; on the device where there is
//!   one); [`Transformer::step`] then binds only the step's latents and timestep.

use std::time::Duration;

use crate::lora::Adapter;
use crate::manifest::Manifest;
use crate::runtime::slots::Lease;

/// What an install made current.
#[derive(Clone, Debug, PartialEq)]
pub struct SwapReport {
    /// The installed set's version (0 = the all-zero base set; +1 per install).
    pub version: u64,
    /// Time spent in the call that produced this report (stage + install for `swap`).
    pub elapsed: Duration,
}

/// Adapter slots of one model (the transformer, or the CLIP text encoder): staging, atomic
/// installs and leases. Implementors are `Send + Sync`: one session serves many threads.
pub trait Slotted: Send + Sync {
    /// The backend's tensors of one installed slot set (host tensors, device buffers, ...).
    type Slots: Send + Sync;
    /// A validated, laid-out adapter set, ready to install.
    type Staged: Send + Sync;

    /// Validates `adapters` against the slots and lays them out; changes nothing installed.
    fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<Self::Staged>;
    /// Makes `staged` the current set (all-or-nothing); runs holding an older lease keep it.
    fn install(&self, staged: &Self::Staged) -> crate::Result<SwapReport>;
    /// [`Slotted::stage`] then [`Slotted::install`]; on error nothing changed.
    fn swap(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<SwapReport> {
        let t0 = std::time::Instant::now();
        let staged = self.stage(adapters)?;
        let mut report = self.install(&staged)?;
        report.elapsed = t0.elapsed();
        Ok(report)
    }
    /// Pins the current slot set.
    fn lease(&self) -> Lease<Self::Slots>;
}

/// The per-request constants of a transformer call, bound once per request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInputs<'a> {
    pub batch: usize,
    /// Image tokens per sample (`S_img`).
    pub image_seq_len: usize,
    /// Text tokens per sample (`S_txt`).
    pub text_len: usize,
    /// T5 states `[B, S_txt, joint_attention_dim]`, row-major.
    pub encoder_hidden_states: &'a [f32],
    /// CLIP pooled `[B, pooled_projection_dim]`.
    pub pooled_projections: &'a [f32],
    /// Guidance scale for guidance-distilled (dev) models; `None` for schnell.
    pub guidance: Option<f32>,
    /// `S_txt` position ids (normally zeros).
    pub txt_ids: &'a [[f32; 3]],
    /// `S_img` position ids.
    pub img_ids: &'a [[f32; 3]],
}

/// A request's constants owned, for callers that keep a request alive across calls (self-tests,
/// benchmarks); [`OwnedRequest::inputs`] borrows it as the [`RequestInputs`] that
/// [`Transformer::bind`] takes. Position ids are per sample, so `image_seq_len = img_ids.len()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedRequest {
    pub batch: usize,
    /// T5 states `[B, S_txt, joint_attention_dim]`.
    pub encoder_hidden_states: Vec<f32>,
    /// CLIP pooled `[B, pooled_projection_dim]`.
    pub pooled_projections: Vec<f32>,
    pub guidance: Option<f32>,
    pub txt_ids: Vec<[f32; 3]>,
    pub img_ids: Vec<[f32; 3]>,
}

impl OwnedRequest {
    /// The request as [`Transformer::bind`] takes it.
    pub fn inputs(&self) -> RequestInputs<'_> {
        RequestInputs {
            batch: self.batch,
            image_seq_len: self.img_ids.len(),
            text_len: self.txt_ids.len(),
            encoder_hidden_states: &self.encoder_hidden_states,
            pooled_projections: &self.pooled_projections,
            guidance: self.guidance,
            txt_ids: &self.txt_ids,
            img_ids: &self.img_ids,
        }
    }
}

/// A FLUX transformer backend.
pub trait Transformer: Slotted {
    /// Request state bound once (device buffers where the backend has a device).
    type Bound: Send;

    /// The engine folder's manifest (model config, slots, precision).
    fn manifest(&self) -> &Manifest;
    /// Checks and binds the request's constants.
    fn bind(&self, request: &RequestInputs<'_>) -> crate::Result<Self::Bound>;
    /// One transformer call with the slot set of `lease`: packed `latents` `[B, S_img, 64]` and
    /// `timestep` (σ = t/1000; the model multiplies by 1000) → the velocity written to `out`
    /// (same shape as `latents`).
    fn step(&self, lease: &Lease<Self::Slots>, bound: &mut Self::Bound, latents: &[f32], timestep: f32, out: &mut [f32]) -> crate::Result<()>;
}

//! [`TrtSession`]: the TensorRT backend behind the runtime interface ([`Slotted`],
//! [`Transformer`]), `Send + Sync` with `&self` methods like the ONNX Runtime session.
//!
//! # Concurrency contract
//! TensorRT refits weights into the engine itself, so one engine holds one slot set at a time.
//! The session keeps versioned slot sets in an [`ActiveSlots`] (each set: its laid-out weights
//! on the host) and its [`PlanRunner`] (the execution context, the only one of the engine) behind
//! a mutex. [`Slotted::install`] does no GPU work; a step holding a lease first refits the
//! lease's set when it is not the one in the engine (upload + `refitCudaEngineAsync`, under the
//! mutex, stream-ordered before the run), then runs. So runs in flight keep the version they
//! leased, exactly as on ONNX Runtime; the price is a refit whenever consecutive runs hold
//! different versions (once per swap in the usual case, at every step if two generations with
//! different adapters interleave).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::session::{PlanRunner, TrtBound};
use super::{SessionOptions, TrtError};
use crate::lora::{Adapter, SlotImage, SlotLayout, SlotPlan, SlotTarget};
use crate::manifest::Manifest;
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::{FluxInputs, HostTensor, RequestInputs, RuntimeError, Slotted, SwapReport, Transformer};

static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// One installed (or staged) slot set of a [`TrtSession`]: laid out on the host in the slots'
/// dtype, refit on demand.
#[derive(Clone, Debug)]
pub struct TrtSlots {
    session_id: u64,
    values: Arc<SlotImage>,
}

/// A validated, laid-out adapter set for [`Slotted::install`] on a [`TrtSession`].
#[derive(Clone, Debug)]
pub struct TrtStaged {
    adapters: Vec<AdapterLabel>,
    slots: TrtSlots,
}

impl TrtStaged {
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
}

/// A TensorRT plan with hot-swappable LoRA slots (see the module docs for the contract).
///
/// Compiled in CI; it cannot run on the development machines (no GPU there, and the H200 is
/// sm_90, which TensorRT-RTX plans do not support). It needs an sm_75…sm_121 GPU other than
/// sm_90 for TensorRT-RTX, or TensorRT Enterprise with `tensorrt-enterprise`.
#[derive(Debug)]
pub struct TrtSession {
    // Field order is drop order: the runner (TensorRT objects) first.
    runner: Mutex<PlanRunner>,
    active: ActiveSlots<TrtSlots>,
    manifest: Manifest,
    plan: SlotPlan,
    layout: SlotLayout,
    gpu_name: String,
    plan_path: std::path::PathBuf,
    session_id: u64,
}

impl TrtSession {
    /// Opens `dir`'s plan (from `manifest.engine`): BLAKE3 against the manifest, TensorRT's own
    /// validity check for this library and GPU, deserialization, I/O check against the
    /// manifest, then every slot refit to zeros (the base model; stripped plans need it).
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, TrtError> {
        let runner = PlanRunner::open(dir, opts)?;
        let manifest = runner.manifest.clone();
        let plan = manifest.lora.plan();
        let layout = runner.layout.clone();
        let session_id = SESSIONS.fetch_add(1, Ordering::SeqCst) + 1;
        let zeros = plan.fill(SlotTarget::Transformer, &[])?.image(&layout);
        let base = TrtSlots { session_id, values: Arc::new(zeros) };
        let (gpu_name, plan_path) = (runner.gpu_name.clone(), runner.plan_path.clone());
        Ok(TrtSession { runner: Mutex::new(runner), active: ActiveSlots::new(base), manifest, plan, layout, gpu_name, plan_path, session_id })
    }

    /// Slot-set version: 0 at open (all zeros), +1 per install.
    pub fn version(&self) -> u64 {
        self.active.version()
    }
    /// Adapters in the current slot set (empty: base model).
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        self.active.lease().adapters().to_vec()
    }
    /// The GPU, e.g. `NVIDIA GeForce RTX 4090 (sm89)`.
    pub fn gpu(&self) -> &str {
        &self.gpu_name
    }

    /// One transformer call on explicit tensors (RoPE tables included) with the current slot
    /// set: the same bind-then-step path as the [`Transformer`] interface.
    pub fn run(&self, inputs: &FluxInputs) -> crate::Result<HostTensor> {
        inputs.validate(&self.manifest.inputs).map_err(TrtError::from)?;
        let lease = self.active.lease();
        let mut bound = self.lock().bind(self.session_id, inputs)?;
        let (b, s) = (bound.batch, bound.image_seq_len);
        let mut out = vec![0f32; b * s * self.manifest.model.out_channels];
        self.step_inner(&lease, &mut bound, inputs.hidden_states.data(), inputs.timestep.data(), &mut out)?;
        HostTensor::new(vec![b, s, self.manifest.model.out_channels], out)
            .ok_or_else(|| RuntimeError::Input { tensor: "sample".into(), message: "element count does not match its shape".into() }.into())
    }

    /// True after a failed refit whose rollback failed too (see [`TrtError::Poisoned`]); the next
    /// step refits its lease's slot set, which clears it on success.
    pub fn is_poisoned(&self) -> bool {
        self.lock().is_poisoned()
    }

    /// Refits the engine to the current slot set now instead of at the next step (e.g. to time
    /// a swap including its refit); returns whether a refit was needed.
    pub fn refit_current(&self) -> crate::Result<bool> {
        let lease = self.active.lease();
        let mut runner = self.lock();
        if !runner.needs_refit(lease.version()) {
            return Ok(false);
        }
        runner.refit_weights(&lease.tensors().values, lease.version())?;
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanRunner> {
        self.runner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn step_inner(&self, lease: &Lease<TrtSlots>, bound: &mut TrtBound, latents: &[f32], timestep: &[f32], out: &mut [f32]) -> crate::Result<()> {
        for (what, owner) in [("lease", lease.tensors().session_id), ("bound request", bound.session_id)] {
            if owner != self.session_id {
                return Err(RuntimeError::ForeignSlots { engine: self.plan_path.clone(), what, owner, session: self.session_id }.into());
            }
        }
        let n = bound.batch * bound.image_seq_len * self.manifest.model.in_channels;
        if latents.len() != n || timestep.len() != bound.batch {
            return Err(RuntimeError::Input {
                tensor: "hidden_states".into(),
                message: format!("{} latents / {} timesteps for the bound request's {n} / {}", latents.len(), timestep.len(), bound.batch),
            }
            .into());
        }
        let mut runner = self.lock();
        if runner.needs_refit(lease.version()) {
            let t0 = Instant::now();
            runner.refit_weights(&lease.tensors().values, lease.version())?;
            tracing::debug!(plan = %runner.plan_path.display(), version = lease.version(), elapsed = ?t0.elapsed(), "refit the lease's slot set");
        }
        Ok(runner.run_bound(bound, latents, timestep, out)?)
    }
}

impl Slotted for TrtSession {
    type Slots = TrtSlots;
    type Staged = TrtStaged;

    /// Validates and lays out `adapters` once, straight in the slots' dtype (every slot; zeros
    /// where they do not reach), and refuses values not finite in that dtype. No GPU work.
    fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<TrtStaged> {
        let values = self.plan.fill(SlotTarget::Transformer, adapters).map_err(TrtError::from)?.image(&self.layout);
        super::session::check_finite(&self.manifest.lora, &self.layout, &values)?;
        Ok(TrtStaged {
            adapters: adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect(),
            slots: TrtSlots { session_id: self.session_id, values: Arc::new(values) },
        })
    }

    /// Makes `staged` current; the refit happens at the next run that holds its lease.
    fn install(&self, staged: &TrtStaged) -> crate::Result<SwapReport> {
        let t0 = Instant::now();
        if staged.slots.session_id != self.session_id {
            return Err(RuntimeError::ForeignSlots {
                engine: self.plan_path.clone(),
                what: "staged adapter",
                owner: staged.slots.session_id,
                session: self.session_id,
            }
            .into());
        }
        let version = self.active.install(staged.adapters.clone(), staged.slots.clone());
        Ok(SwapReport { version, elapsed: t0.elapsed() })
    }

    fn lease(&self) -> Lease<TrtSlots> {
        self.active.lease()
    }
}

impl Transformer for TrtSession {
    type Bound = TrtBound;

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the request against the engine's inputs, computes the RoPE tables and uploads the
    /// constants to the device, once.
    fn bind(&self, r: &RequestInputs<'_>) -> crate::Result<TrtBound> {
        let inputs = FluxInputs::for_request(&self.manifest.model, r)?;
        inputs.validate(&self.manifest.inputs)?;
        Ok(self.lock().bind(self.session_id, &inputs)?)
    }

    fn step(&self, lease: &Lease<TrtSlots>, bound: &mut TrtBound, latents: &[f32], timestep: f32, out: &mut [f32]) -> crate::Result<()> {
        let ts = vec![timestep; bound.batch];
        self.step_inner(lease, bound, latents, &ts, out)
    }
}

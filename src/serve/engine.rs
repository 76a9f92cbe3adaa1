//! The one place the service touches the pipeline engine: open, stage, install, lease, generate.
//! The rest of `serve` sees only [`Engine`], [`Staged`] and [`EngineLeases`]. The engine is the
//! generic [`PipelineEngine`] on ONNX Runtime's transformer ([`FluxSession`]); each generation
//! runs with the lease pair it holds, whatever is installed meanwhile.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use crate::lora::Adapter;
use crate::pipeline::engine::{EngineFolderError, PipelineEngine, PipelineStaged};
use crate::pipeline::generate::{GenerateRequest, Generated, Leases};
use crate::pipeline::PipelineError;
use crate::runtime::ort::{FluxSession, OrtSlots, SessionOptions, StagedAdapter};
use crate::runtime::RuntimeError;
use crate::ErrorKind;

/// A validated, laid-out adapter set for both slotted models (transformer and CLIP).
pub(crate) type Staged = PipelineStaged<StagedAdapter>;

/// The CLIP and transformer slot sets one generation runs with.
pub(crate) type EngineLeases = Leases<OrtSlots>;

/// One text-to-image engine folder, shared by the worker, the stager and the HTTP handlers.
pub(crate) struct Engine {
    inner: PipelineEngine<FluxSession>,
}

/// Why staging or installing an adapter set failed, as the service reports it.
pub(crate) enum StageFailure {
    /// The set does not fit the engine's slots (HTTP 422); the message names the module.
    Incompatible(String),
    /// The backend failed (HTTP 500).
    Backend(String),
}

impl From<EngineFolderError> for StageFailure {
    fn from(e: EngineFolderError) -> Self {
        // Staging errors from the runtime interface come as the crate error: its kind says
        // whether the adapter is at fault (a module without a slot, a rank above the slots').
        let adapter_fault = match &e {
            EngineFolderError::Plan(_) | EngineFolderError::NoClipSlots { .. } | EngineFolderError::Runtime(RuntimeError::Plan(_)) => true,
            EngineFolderError::Backend(b) => matches!(b.kind(), ErrorKind::Incompatible | ErrorKind::InvalidInput),
            _ => false,
        };
        if adapter_fault {
            StageFailure::Incompatible(e.to_string())
        } else {
            StageFailure::Backend(e.to_string())
        }
    }
}

impl Engine {
    pub(crate) fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, EngineFolderError> {
        Ok(Engine { inner: PipelineEngine::open(dir, opts)? })
    }

    /// Validates and lays out `adapters`; nothing installed changes.
    pub(crate) fn stage(&self, adapters: &[(&Adapter, f32)]) -> Result<Staged, StageFailure> {
        Ok(self.inner.stage(adapters)?)
    }

    /// Makes `staged` current (all-or-nothing); returns the install time.
    pub(crate) fn install(&self, staged: &Staged) -> Result<Duration, StageFailure> {
        Ok(self.inner.install(staged)?.total)
    }

    /// The installed set's leases (both halves from the same install).
    pub(crate) fn leases(&self) -> EngineLeases {
        self.inner.leases()
    }

    /// One image with the sets of `leases`; `on_step` may stop it between steps.
    pub(crate) fn generate(
        &self,
        req: &GenerateRequest,
        leases: &EngineLeases,
        on_step: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        self.inner.generate_with(req, leases, on_step)
    }
}

//! The one place the service touches the pipeline engine: open, stage, install, lease, generate.
//! The rest of `serve` sees only [`Engine`], [`Staged`] and [`EngineLeases`]. The engine is the
//! generic [`PipelineEngine`] on the transformer backend [`Backend`] picks (ONNX Runtime's
//! [`FluxSession`], or the native CUDA backend); each generation runs with the lease pair it
//! holds, whatever is installed meanwhile.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use super::Backend;
use crate::lora::Adapter;
use crate::pipeline::engine::{EngineFolderError, PipelineEngine, PipelineStaged};
use crate::pipeline::generate::{GenerateRequest, Generated, Leases};
use crate::pipeline::PipelineError;
use crate::runtime::ort::{FluxSession, OrtSlots, SessionOptions, StagedAdapter};
use crate::runtime::RuntimeError;
use crate::ErrorKind;

#[cfg(feature = "cuda")]
use crate::runtime::cuda::{CudaSession, DeviceSlots, StagedSlots};

/// A validated, laid-out adapter set for both slotted models (transformer and CLIP), of the
/// engine's backend.
pub(crate) enum Staged {
    Ort(PipelineStaged<StagedAdapter>),
    #[cfg(feature = "cuda")]
    Cuda(PipelineStaged<StagedSlots>),
}

impl Staged {
    /// Bytes held (host memory for ONNX Runtime's staged tensors, device memory for CUDA's).
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Staged::Ort(s) => s.bytes(),
            #[cfg(feature = "cuda")]
            Staged::Cuda(s) => s.transformer().bytes() + s.text_encoder_bytes(),
        }
    }
}

/// The CLIP and transformer slot sets one generation runs with.
pub(crate) enum EngineLeases {
    Ort(Leases<OrtSlots>),
    #[cfg(feature = "cuda")]
    Cuda(Leases<std::sync::Arc<DeviceSlots>>),
}

/// One text-to-image engine folder, shared by the worker, the stager and the HTTP handlers.
// One per service, behind an `Arc`: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    Ort(PipelineEngine<FluxSession>),
    #[cfg(feature = "cuda")]
    Cuda(PipelineEngine<CudaSession>),
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

/// A staged set or lease pair of another backend than the engine's: a bug in the service.
fn mismatch() -> StageFailure {
    StageFailure::Backend("internal error: an adapter set staged for another backend".into())
}

impl Engine {
    /// Opens `dir`: the transformer on `backend`, the text encoders and VAE decoder on ONNX
    /// Runtime with `opts`.
    pub(crate) fn open(dir: &Path, opts: &SessionOptions, backend: &Backend) -> Result<Self, EngineFolderError> {
        Ok(match backend {
            Backend::Ort => Engine::Ort(PipelineEngine::open(dir, opts)?),
            #[cfg(feature = "cuda")]
            Backend::Cuda(cuda) => Engine::Cuda(PipelineEngine::open_cuda(dir, cuda.clone(), opts)?),
        })
    }

    /// Device memory in use on the transformer's GPU (total − free), for the native CUDA backend.
    pub(crate) fn device_memory_used(&self) -> Option<u64> {
        match self {
            Engine::Ort(_) => None,
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => e.transformer().device_memory_used().ok().map(|b| b as u64),
        }
    }

    /// Validates and lays out `adapters`; nothing installed changes.
    pub(crate) fn stage(&self, adapters: &[(&Adapter, f32)]) -> Result<Staged, StageFailure> {
        Ok(match self {
            Engine::Ort(e) => Staged::Ort(e.stage(adapters)?),
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => Staged::Cuda(e.stage(adapters)?),
        })
    }

    /// Makes `staged` current (all-or-nothing); returns the install time.
    pub(crate) fn install(&self, staged: &Staged) -> Result<Duration, StageFailure> {
        Ok(match (self, staged) {
            (Engine::Ort(e), Staged::Ort(s)) => e.install(s)?.total,
            #[cfg(feature = "cuda")]
            (Engine::Cuda(e), Staged::Cuda(s)) => e.install(s)?.total,
            #[allow(unreachable_patterns)]
            _ => return Err(mismatch()),
        })
    }

    /// The installed set's leases (both halves from the same install).
    pub(crate) fn leases(&self) -> EngineLeases {
        match self {
            Engine::Ort(e) => EngineLeases::Ort(e.leases()),
            #[cfg(feature = "cuda")]
            Engine::Cuda(e) => EngineLeases::Cuda(e.leases()),
        }
    }

    /// One image with the sets of `leases`; `on_step` may stop it between steps.
    pub(crate) fn generate(
        &self,
        req: &GenerateRequest,
        leases: &EngineLeases,
        on_step: impl FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, PipelineError> {
        match (self, leases) {
            (Engine::Ort(e), EngineLeases::Ort(l)) => e.generate_with(req, l, on_step),
            #[cfg(feature = "cuda")]
            (Engine::Cuda(e), EngineLeases::Cuda(l)) => e.generate_with(req, l, on_step),
            #[allow(unreachable_patterns)]
            _ => Err(PipelineError::Stage { stage: "transformer lease", source: "leases of another backend than the engine's (a service bug)".into() }),
        }
    }
}

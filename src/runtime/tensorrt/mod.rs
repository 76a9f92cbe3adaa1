//! TensorRT backend: [`TrtSession`] runs a plan built by [`crate::engine::build`] and swaps LoRA
//! adapters by refitting the slot weights (`lora.<module>.A/B`) from device memory.
//!
//! Layers: [`cuda`] (thin checked wrappers over cudarc: context, stream, device buffers) →
//! `session` (TensorRT runtime, engine, execution context, refit) → `transformer`
//! ([`TrtSession`]: the runtime interface, `Send + Sync`, versioned slot sets).
//! TensorRT's logged text is kept in every error (see `engine::trt`).
//!
//! **Where this runs.** It is compiled in CI (features `tensorrt` and `tensorrt-enterprise`) but
//! has not run on any machine of this project: the development machines have no GPU, and the
//! only GPU machine is an H200 (sm_90), on which TensorRT-RTX refuses to deserialize any plan.
//! It needs an sm_75…sm_121 GPU other than sm_90 with TensorRT-RTX 1.7, or TensorRT Enterprise
//! (`tensorrt-enterprise`) on the GPU the plan was built on. [`crate::selftest`] is the check to
//! run there. Without the `tensorrt` feature every entry point returns [`TrtError::NotCompiled`].

mod error;

#[cfg(feature = "tensorrt")]
pub mod cuda;
#[cfg(feature = "tensorrt")]
mod refit;
#[cfg(feature = "tensorrt")]
mod session;
#[cfg(not(feature = "tensorrt"))]
mod stub;
#[cfg(feature = "tensorrt")]
mod transformer;

pub use error::{Incompatibility, TrtError};
#[cfg(feature = "tensorrt")]
pub use session::TrtBound;
#[cfg(not(feature = "tensorrt"))]
pub use stub::{TrtBound, TrtSession, TrtSlots, TrtStaged};
#[cfg(feature = "tensorrt")]
pub use transformer::{TrtSession, TrtSlots, TrtStaged};

use crate::engine::TrtLibrary;

/// Options of [`TrtSession::open`].
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub library: TrtLibrary,
    /// CUDA device ordinal.
    pub device: usize,
    /// When opening hashes the plan (its size is always checked).
    pub verify: crate::manifest::VerifyPolicy,
}

impl SessionOptions {
    /// Library from [`TrtLibrary::from_env`], device 0.
    pub fn from_env() -> Self {
        SessionOptions { library: TrtLibrary::from_env(), device: 0, verify: Default::default() }
    }
}

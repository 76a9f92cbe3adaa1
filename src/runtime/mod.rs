//! Running exported engines with hot-swappable LoRA slots.
//!
//! - [`backend`]: the one interface every backend implements ([`Slotted`]: stage, install,
//!   swap, lease; [`Transformer`]: bind a request once, then step).
//! - [`inputs`]: host tensors and the transformer's input contract (backend independent).
//! - [`slots`]: versioned slot sets, replaced atomically; runs hold a lease on the set they use.
//! - [`ort`] (feature `ort`): ONNX Runtime sessions ([`ort::FluxSession`]).
//!
//! The TensorRT backend lives in [`tensorrt`] (feature `tensorrt`). The runtime depends on the
//! manifest, the LoRA slot plan and (for TensorRT) the engine builder's library loading only,
//! never on the exporter or the pipeline.

pub mod backend;
mod error;
pub mod inputs;
mod rope;
pub mod slots;

#[cfg(feature = "ort")]
pub mod ort;

pub mod tensorrt;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use backend::{OwnedRequest, RequestInputs, Slotted, SwapReport, Transformer};
pub use error::RuntimeError;
pub use inputs::{FluxInputs, HostTensor};
pub use slots::{ActiveSlots, AdapterLabel, Lease, SlotSet};

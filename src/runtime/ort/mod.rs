//! ONNX Runtime backend: [`FluxSession`] runs an exported engine folder (`manifest.json`,
//! `model.onnx`, `model.onnx.data`) and hot-swaps LoRA adapters: slot tensors (overridable
//! initializers) are fed on every run from host memory, or kept in the session's device memory
//! and bound with I/O binding (default on CUDA; [`StagedAdapter`]s are installed with no host
//! work). `libonnxruntime` is loaded at run time from an explicit path or `ORT_DYLIB_PATH`, never
//! downloaded.

mod check;
#[cfg(feature = "pipeline")]
mod component;
mod device;
pub mod env;
mod options;
pub mod placement;
mod session;

pub use crate::runtime::SwapReport;
#[cfg(feature = "pipeline")]
pub use component::{ComponentInput, ComponentSession, ComponentSlots, ComponentSpec};
pub use device::StagedAdapter;
pub use env::{library_path, loaded_library, ORT_DYLIB_PATH};
pub use options::SessionOptions;
pub use placement::{CpuFallback, PlacedNode, Placement};
pub use session::{sessions_created, ExecutionProvider, FluxSession, FluxSessionBuilder, OrtLease, OrtSlots};

//! ONNX Runtime backend: [`FluxSession`] runs an exported engine folder (`manifest.json`,
//! `model.onnx`, `model.onnx.data`) and hot-swaps LoRA adapters by feeding the slot tensors
//! (overridable initializers) on every run. `libonnxruntime` is loaded at run time from an
//! explicit path or `ORT_DYLIB_PATH`, never downloaded.

mod check;
#[cfg(feature = "pipeline")]
mod component;
pub mod env;
mod options;
mod session;

#[cfg(feature = "pipeline")]
pub use component::{ComponentInput, ComponentSession, ComponentSlots, ComponentSpec};
pub use options::SessionOptions;
pub use env::{library_path, loaded_library, ORT_DYLIB_PATH};
pub use session::{sessions_created, ExecutionProvider, FluxSession, FluxSessionBuilder, OrtLease, OrtSlots, SwapReport};

//! ONNX Runtime backend: [`FluxSession`] runs an exported engine folder (`manifest.json`,
//! `model.onnx`, `model.onnx.data`) and hot-swaps LoRA adapters by feeding the slot tensors
//! (overridable initializers) on every run. `libonnxruntime` is loaded at run time from an
//! explicit path or `ORT_DYLIB_PATH`, never downloaded.

mod check;
pub mod env;
mod session;

pub use env::{library_path, loaded_library, ORT_DYLIB_PATH};
pub use session::{sessions_created, ExecutionProvider, FluxSession, FluxSessionBuilder, OrtLease, OrtSlots, SwapReport};

//! # flux-trt
//!
//! FLUX.1 + LoRA adapters → an ONNX / TensorRT artifact whose LoRA weights live in fixed,
//! named **slots** that are swapped at run time (ONNX Runtime: slot feeds; TensorRT: refit),
//! never rebuilt.
//!
//! Data flow, one module each: [`checkpoint`] → [`lora`] (formats, slot plan) → [`onnx`]
//! (exporter, feature `export`) → [`engine`] (TensorRT build, feature `tensorrt`) →
//! [`runtime`] (ONNX Runtime / TensorRT sessions with hot-swap) → [`pipeline`] → `serve` (the
//! HTTP image service, feature `serve`).

pub mod checkpoint;
pub mod encoders;
mod error;
pub mod flux;
pub mod lora;
pub mod manifest;
pub mod tensor;
pub mod util;

#[cfg(feature = "export")]
pub mod onnx;

pub mod engine;
pub mod pipeline;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;

pub use checkpoint::Checkpoint;
pub use error::{Error, ErrorKind, Result};
pub use flux::{FluxConfig, Variant};
pub use lora::{Adapter, LoraFormat, LoraModule, SlotPlan};
pub use manifest::Manifest;

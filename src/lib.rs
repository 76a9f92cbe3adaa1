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
//!
//! # The runtime interface
//!
//! Every transformer backend (ONNX Runtime CPU/CUDA, TensorRT, native CUDA) implements
//! [`runtime::Slotted`] (stage / install / swap adapters, leases that pin one adapter set) and
//! [`runtime::Transformer`] (bind a request's constants once, then one call per step); the
//! pipeline is generic over it. Open an engine folder, swap, lease, generate:
//!
//! ```
//! # #[cfg(all(feature = "export", feature = "ort", feature = "pipeline"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use flux_trt::manifest::Precision;
//! # use flux_trt::onnx::components::{export_text_encoders, export_vae, TextEncoderOptions};
//! # let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path().join("tiny");
//! # let lora_file = fixtures.join("loras/attn.peft.safetensors");
//! # // The engine folder `build-engine --pipeline` makes, from the repository's tiny fixtures.
//! # let ckpt = flux_trt::Checkpoint::open(&fixtures.join("models/dev-diffusers"))?;
//! # let plan = flux_trt::SlotPlan::new(ckpt.config(), &[&flux_trt::lora::load(&lora_file)?], &Default::default())?;
//! # let opts = flux_trt::onnx::ExportOptions { hash_sources: false, ..flux_trt::onnx::ExportOptions::new(Precision::Fp32) };
//! # flux_trt::onnx::export(&ckpt, &plan, &opts, &dir, &mut |_, _| {})?;
//! # let pipe = fixtures.join("pipeline/flux-tiny");
//! # let te = TextEncoderOptions { hash_sources: false, ..TextEncoderOptions::new(Precision::Fp32) };
//! # export_text_encoders(&pipe, None, &te, &dir)?;
//! # export_vae(&pipe.join("vae"), Precision::Fp32, false, &dir.join(flux_trt::manifest::component::VAE_DECODER_DIR))?;
//! use flux_trt::pipeline::engine::PipelineEngine;
//! use flux_trt::pipeline::generate::GenerateRequest;
//! use flux_trt::pipeline::latents::Resolution;
//! use flux_trt::runtime::ort::SessionOptions;
//! use flux_trt::runtime::{Slotted, Transformer};
//!
//! // An engine folder on ONNX Runtime (CPU; `libonnxruntime` from ORT_DYLIB_PATH).
//! let engine = PipelineEngine::open(&dir, &SessionOptions { threads: Some(2), ..Default::default() })?;
//!
//! // Swap: validated and laid out first, then the transformer's and CLIP's slots are installed
//! // together; on error nothing changes.
//! let adapter = flux_trt::lora::load(&lora_file)?;
//! engine.swap(&[(&adapter, 0.8)])?;
//!
//! // Lease: one generation runs every step with the adapter set it leased, whatever is swapped
//! // meanwhile.
//! let leases = engine.leases();
//! assert_eq!(leases.transformer.adapters()[0].name, adapter.name);
//! let req = GenerateRequest { steps: 2, seed: 7, ..GenerateRequest::new("a cat", Resolution::new(64, 64)?) };
//! let image = engine.generate_with(&req, &leases, |step, n| {
//!     println!("step {}/{n}", step + 1);
//!     std::ops::ControlFlow::Continue(())
//! })?;
//! assert_eq!(image.rgb8.len(), 64 * 64 * 3);
//!
//! // The transformer alone, through the runtime interface any backend implements.
//! let transformer = engine.transformer();
//! assert_eq!(transformer.manifest().lora.slots.len(), plan.slots.len());
//! engine.swap(&[])?; // back to the base model
//! assert!(transformer.lease().adapters().is_empty());
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "export", feature = "ort", feature = "pipeline")))]
//! # fn main() {}
//! ```

pub mod checkpoint;
pub mod encoders;
mod error;
pub mod flux;
#[doc(hidden)]
pub mod fuzz;
pub mod lora;
pub mod manifest;
pub mod tensor;
pub mod util;

#[cfg(feature = "export")]
pub mod onnx;

pub mod engine;
pub mod pipeline;
pub mod runtime;
pub mod selftest;
#[cfg(feature = "serve")]
pub mod serve;

pub use checkpoint::Checkpoint;
pub use error::{Error, ErrorKind, Result};
pub use flux::{FluxConfig, Variant};
pub use lora::{Adapter, LoraFormat, LoraModule, SlotPlan};
pub use manifest::Manifest;

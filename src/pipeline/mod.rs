//! Text-to-image around an exported transformer, mirroring diffusers 0.42.1 `FluxPipeline`:
//! [`scheduler`] (FlowMatchEulerDiscrete sigmas, timesteps, Euler step) and [`latents`]
//! (packing, ids, VAE scaling, initial noise, resolution checks), [`denoise`] (the loop over
//! any [`crate::runtime::Transformer`] backend), [`image`] (decoder output → pixels); with feature `pipeline`,
//! [`tokenize`] (CLIP and T5 tokenizers). Parity references live in `tests/fixtures/pipeline/`
//! (`tools/reference/make_pipeline_fixtures.py`).

pub mod batch;
pub mod denoise;
#[cfg(all(feature = "pipeline", feature = "ort"))]
pub mod engine;
pub mod error;
#[cfg(all(feature = "pipeline", feature = "ort"))]
pub mod generate;
pub mod image;
pub mod latents;
pub mod limits;
pub mod noise;
pub mod scheduler;
#[cfg(all(feature = "pipeline", feature = "ort"))]
pub mod text;
#[cfg(feature = "pipeline")]
pub mod tokenize;

pub use denoise::{denoise, Conditioning};
pub use error::PipelineError;
pub use latents::{Resolution, VaeConfig};
pub use limits::{ActivationEstimate, AttentionMemory, Limits};
pub use scheduler::{Schedule, SchedulerConfig, TimeShiftType};

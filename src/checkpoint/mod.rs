//! FLUX.1 transformer checkpoints: BFL single files and diffusers folders, memory-mapped and
//! exposed under canonical (diffusers) names without copying weight bytes.
//!
//! API contract (used by the exporter and `inspect`):
//! - [`Checkpoint::open`] takes a `.safetensors` file (BFL layout, with or without the
//!   `model.diffusion_model.` prefix, or a single diffusers file) or a diffusers folder
//!   (`config.json` + `diffusion_pytorch_model.safetensors`, or shards listed in
//!   `diffusion_pytorch_model.safetensors.index.json`; a pipeline root's `transformer/` is used).
//!   BFL files and single diffusers files get RoPE axes from `FluxConfig::default_axes_dim`.
//! - [`Checkpoint::tensor`] returns a [`TensorRef`]: dtype, shape, and the bytes as one or more
//!   borrowed slices of the mmapped files (`parts`, concatenated in order). A BFL fused `qkv`
//!   split into `to_q`/`to_k`/`to_v` is one contiguous row range; the final layer's
//!   shift/scale swap is two parts in swapped order. Nothing is copied until a caller asks.
//! - [`Checkpoint::fused`] returns a fused group (q|k|v[|mlp]) as one [`TensorRef`] for the exporter.
//! - Opening validates everything up front: dtypes (f32/f16/bf16), layout (BFL xor diffusers),
//!   every parameter of the detected [`crate::flux::FluxConfig`] present with its shape, no
//!   unexpected keys, `config.json` consistent with the shapes. Errors are [`CheckpointError`]s
//!   naming the file and the tensor as stored.
//! - [`Checkpoint::describe`] gives a [`CheckpointSummary`] for `flux-trt inspect`.
//!
//! Files: `mapped` (mmap + safetensors header), `detect` (layout, config inference), `bfl`
//! (stored key → canonical mapping), `diffusers` (folders, config.json, shard index), `load`
//! ([`Checkpoint`]), `summary`.

use serde::{Deserialize, Serialize};

use crate::tensor::DType;

mod error;
pub use error::CheckpointError;

/// On-disk naming convention of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// black-forest-labs original names (`double_blocks.0.img_attn.qkv.weight`).
    Bfl,
    /// diffusers `FluxTransformer2DModel` names.
    Diffusers,
}

/// A weight under its canonical name, borrowed from the mapped files.
#[derive(Clone, Debug)]
pub struct TensorRef<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Little-endian element bytes, to be concatenated in order.
    pub parts: Vec<&'a [u8]>,
}

impl TensorRef<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn nbytes(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    /// Decodes to `f32` (a copy; for small tensors and tests).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.numel());
        for p in &self.parts {
            crate::tensor::decode_into(self.dtype, p, &mut out);
        }
        out
    }
}

mod bfl;
mod component;
mod detect;
mod diffusers;
mod load;
mod mapped;
mod summary;
#[cfg(test)]
mod tests;
pub use component::ComponentWeights;
pub use load::Checkpoint;
pub use summary::CheckpointSummary;

//! The native CUDA backend (feature `cuda`): runs an engine folder's FLUX transformer directly on
//! cuBLASLt GEMMs, cuDNN fused attention and NVRTC-compiled fused kernels, replayed as CUDA graphs.
//!
//! - [`attention`]: fused scaled-dot-product attention (cuDNN for bf16/fp16, an NVRTC kernel for fp32).
//! - [`cudnn`]: the checked layer over cuDNN's backend graph API.

pub mod attention;
pub mod cudnn;
mod error;

pub use attention::{Attention, AttentionImpl, AttentionShape};
pub use error::CudaError;

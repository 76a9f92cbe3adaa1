//! The native CUDA backend (feature `cuda`): runs an engine folder's FLUX transformer directly on
//! cuBLASLt GEMMs, cuDNN fused attention and NVRTC-compiled fused kernels, replayed as CUDA graphs.
//!
//! - [`attention`]: fused scaled-dot-product attention (cuDNN for bf16/fp16, an NVRTC kernel for fp32).
//! - [`cudnn`]: the checked layer over cuDNN's backend graph API.
//! - [`fp8`]: E4M3 GEMMs through cuBLASLt (per-tensor / per-channel weight scales) and the
//!   activation quantization kernels.

pub mod attention;
pub mod cudnn;
mod error;
pub mod fp8;

pub use attention::{Attention, AttentionImpl, AttentionShape};
pub use error::CudaError;
pub use fp8::{ChannelImpl, Fp8Gemm, Fp8Kernels, Fp8Shape, LtHandle, WeightScaling};

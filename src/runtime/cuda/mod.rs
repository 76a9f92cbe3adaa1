//! The native CUDA backend (feature `cuda`): runs an engine folder's FLUX transformer directly on
//! cuBLASLt GEMMs, cuDNN fused attention and NVRTC-compiled fused kernels, replayed as CUDA graphs.

mod error;

pub use error::CudaError;

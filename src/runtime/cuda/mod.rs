//! The native CUDA backend (feature `cuda`): runs an engine folder's FLUX transformer directly on
//! cuBLASLt GEMMs, cuDNN fused attention and NVRTC-compiled fused kernels, replayed as CUDA graphs.
//!
//! Layers: [`device`] (checked driver calls, raw buffers) → [`nvrtc`] / [`kernels`] (fused
//! kernels compiled for the GPU, cached on disk), [`gemm`] (cuBLASLt), [`attention`] (fused
//! scaled-dot-product attention: cuDNN for bf16/fp16, an NVRTC kernel for fp32) over [`cudnn`]
//! (the checked layer over cuDNN's backend graph API) → [`model`] (the forward pass over fixed
//! buffers) → [`session`] ([`CudaSession`]: weights, slots, graphs, the runtime traits).
//! [`stage`] ([`SlotStager`]) lays adapter sets out on the device (a scatter kernel over one packed
//! upload). Host-side planning ([`weights`], [`plan`], [`pack`]) needs no GPU and is unit-tested in CI.
//!
//! Libraries are loaded at run time (driver, NVRTC, cuBLASLt, cuDNN); for CUDA 13 the loader
//! needs unversioned links (`libcublasLt.so`, `libnvrtc.so`) on `LD_LIBRARY_PATH`, see
//! `tools/device/cuda.sh`.
//! [`fp8`]: E4M3 GEMMs through cuBLASLt (per-tensor / per-channel weight scales) and the
//! activation quantization kernels; [`fp8_plan`]: an FP8 engine's quantized GEMMs and scales,
//! which [`model`] runs through [`fp8`] (the rest of the step as in bf16).
//! [`attention_fp8`]: FP8 attention (cuDNN's fused E4M3 flash attention on Hopper, dynamic per-tensor
//! q/k/v scales), behind [`CudaOptions::fp8_attention`].

// Kernel-launch and GEMM wrappers take their operands one by one (pointers, sizes, strides); plan
// caches insert fallibly built plans (`?`), which the entry API does not express.
#![allow(clippy::too_many_arguments, clippy::map_entry)]

pub mod attention;
pub mod attention_fp8;
pub mod cudnn;
pub mod device;
mod error;
pub mod fp8;
pub mod fp8_plan;
pub mod gemm;
pub mod kernels;
pub mod model;
pub mod nvrtc;
pub mod pack;
pub mod plan;
pub mod session;
pub mod stage;
pub mod weights;

pub use attention::{Attention, AttentionImpl, AttentionShape, Fp8Out, Fp8Scalar};
pub use attention_fp8::Fp8Attention;
pub use error::CudaError;
pub use fp8::{ChannelImpl, Fp8Gemm, Fp8Kernels, Fp8Shape, LtHandle, WeightScaling};
pub use session::{AmaxObserver, Bound, CudaOptions, CudaSession, DeviceSlots, Fp8Activations, OpenReport, StagedSlots};
pub use stage::{PackedAdapter, SetBuffer, SlotStager, StageTiming};

//! PLACEHOLDER until the cuDNN fused SDPA (`attention.rs`, branch `attn`) is merged: the same
//! API over a naive one-warp-per-query kernel (`kernels/attention_ref.cu`). Correct, slow.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::device::Gpu;
use super::kernels::{params, Module};
use super::CudaError;
use crate::tensor::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

#[derive(Debug)]
pub struct Attention {
    gpu: Gpu,
    shape: AttentionShape,
    module: Module,
    f: cudarc::driver::sys::CUfunction,
}

// SAFETY: see `Module`.
unsafe impl Send for Attention {}
unsafe impl Sync for Attention {}

impl Attention {
    pub fn new(stream: &Arc<CudaStream>, shape: AttentionShape) -> Result<Self, CudaError> {
        if shape.head_dim > 256 {
            return Err(CudaError::UnsupportedHeadDim { head_dim: shape.head_dim, message: "the reference kernel takes at most 256".into() });
        }
        let ctx = stream.context().clone();
        let cc = ctx.compute_capability().map_err(|e| CudaError::driver("compute capability", e))?;
        let gpu = Gpu { ctx, stream: stream.clone(), cc };
        let module = Module::load(&gpu, super::nvrtc::source("attention_ref.cu"))?;
        let f = module.function(&format!("attention_ref_{}", super::kernels::suffix(shape.dtype)))?;
        Ok(Attention { gpu, shape, module, f })
    }

    pub fn workspace_bytes(&self) -> usize {
        let _ = &self.module;
        0
    }

    /// # Safety
    /// q, k, v, o: `[B, S, H, D]` device buffers of the shape's dtype.
    pub unsafe fn run(&self, q: u64, k: u64, v: u64, o: u64, _workspace: u64) -> Result<(), CudaError> {
        let s = self.shape;
        let (b, sq, h, d) = (s.batch as i32, s.seq as i32, s.heads as i32, s.head_dim as i32);
        let scale = 1.0f32 / (s.head_dim as f32).sqrt();
        let mut p = params![q, k, v, o, b, sq, h, d, scale];
        let warps = s.batch * s.seq * s.heads;
        self.gpu.launch(self.f, "attention_ref", (warps.div_ceil(4) as u32, 1, 1), (32, 4, 1), &mut p)
    }
}

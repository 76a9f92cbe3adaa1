//! Shared setup of the raw-stream GPU tests (`cuda_attention`, `cuda_fp8`).
#![allow(dead_code)]

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};

/// Device 0 and a stream. Raw pointers are handed to cuBLASLt / cuDNN and captured into graphs:
/// no implicit event tracking.
pub fn setup() -> (Arc<CudaContext>, Arc<CudaStream>) {
    let ctx = CudaContext::new(0).expect("CUDA device 0");
    // SAFETY: the tests synchronize explicitly and never share buffers across streams.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().expect("stream");
    (ctx, stream)
}

/// Deterministic values in [-amp, amp) (xorshift; fresh per seed).
pub fn random(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * amp - amp
        })
        .collect()
}

/// A buffer's device address.
pub fn ptr<T>(buf: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = buf.device_ptr(stream);
    p
}

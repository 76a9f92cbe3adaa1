//! Shared by the native CUDA examples (`cuda_bench`, `cuda_check`, `cuda_fp8_check`): the
//! deterministic noise their requests are made of, and the relative L2 distance they report.
#![allow(dead_code)]

/// `n` values in [-1, 1) from a 64-bit LCG seeded by `seed` (the values every committed result of
/// these examples was made with).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// ‖x − y‖ / ‖y‖ in f64.
pub fn rel_l2(x: &[f32], y: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in x.iter().zip(y) {
        num += ((*a - *b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

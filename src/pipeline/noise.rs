//! Initial noise that matches PyTorch's CPU generator: `torch.randn(n,
//! generator=torch.Generator("cpu").manual_seed(seed))` in float32, which is what diffusers'
//! `FluxPipeline` draws for `generator=torch.Generator("cpu").manual_seed(seed)` (then packs).
//! So `--seed S` here gives the same starting latents as diffusers with the same seed.
//!
//! PyTorch's algorithm (aten/src/ATen/native/cpu/DistributionTemplates.h, `normal_fill`, used for
//! contiguous float tensors of ≥ 16 elements): a 32-bit MT19937 seeded with the low 32 bits of the
//! seed; every element first gets a uniform `(u32 & 0xFFFFFF) · 2⁻²⁴`; then each block of 16 is
//! Box–Muller transformed in place (`u1 = 1 − x[j]`, `u2 = x[j+8]`, `r = √(−2 ln u1)`,
//! `x[j] = r cos 2πu2`, `x[j+8] = r sin 2πu2`, j < 8); when `n` is not a multiple of 16 the
//! last 16 elements are drawn again and transformed. PyTorch evaluates log/cos/sin with
//! vectorized (Sleef, ≤ 1 ulp) or libm routines depending on the CPU, so values agree with
//! PyTorch to about 1e-6 relative, not bit for bit (see `tests/pipeline.rs`).

use super::PipelineError;

/// 32-bit Mersenne Twister (MT19937), as `at::mt19937`.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for j in 1..624 {
            state[j] = 1_812_433_253u32.wrapping_mul(state[j - 1] ^ (state[j - 1] >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `at::uniform_real_distribution<float>(0, 1)`: 24 random bits scaled by 2⁻²⁴.
    fn uniform(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }
}

fn box_muller_16(x: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - x[j];
        let u2 = x[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        x[j] = radius * theta.cos();
        x[j + 8] = radius * theta.sin();
    }
}

/// `n` standard-normal float32 values as `torch.randn(n, generator=Generator("cpu").manual_seed(seed))`.
/// `n` must be at least 16 (PyTorch uses another algorithm below that; FLUX latents are ≥ 1024).
pub fn torch_randn(seed: u64, n: usize) -> Result<Vec<f32>, PipelineError> {
    if n < 16 {
        return Err(PipelineError::Value(format!("torch-compatible noise needs at least 16 values, asked for {n}")));
    }
    let mut rng = Mt19937::new(seed as u32);
    let mut x: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
    for block in x.chunks_exact_mut(16) {
        box_muller_16(block);
    }
    if !n.is_multiple_of(16) {
        let tail = &mut x[n - 16..];
        for v in tail.iter_mut() {
            *v = rng.uniform();
        }
        box_muller_16(tail);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_sequence() {
        // The 10000th output of std::mt19937 with the default seed 5489 is 4123659995 (C++11 §26.5.5).
        let mut r = Mt19937::new(5489);
        let v = (0..10_000).map(|_| r.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn short_requests_are_refused() {
        assert!(torch_randn(0, 15).is_err());
        assert_eq!(torch_randn(0, 16).map(|v| v.len()).ok(), Some(16));
    }
}

//! The calibration samples' schedule and noise, shared by the ONNX Runtime calibration
//! ([`super::calib`], feature `ort`) and the GPU one (`flux-trt calibrate`, native CUDA backend),
//! so both see the same σ and latents for a seed: sample `i` of `N` is at the `i`-th sigma of
//! diffusers' FluxPipeline `N`-step flow-match schedule, its latents σ·n₁ + (1−σ)·n₂ from one
//! SplitMix64 stream (Box–Muller normals).

use crate::flux::Variant;

/// diffusers FluxPipeline sigmas for `n` steps: `linspace(1, 1/n, n)`, with the dynamic
/// exponential shift `mu = m·img_seq + b` for guidance-distilled models, unshifted for schnell.
pub fn sigmas(n: usize, variant: Variant, img_seq: usize) -> Vec<f32> {
    let m = (1.15 - 0.5) / (4096.0 - 256.0);
    let b = 0.5 - 256.0 * m;
    let mu: f64 = m * img_seq as f64 + b;
    (0..n)
        .map(|i| {
            let s = if n == 1 { 1.0 } else { 1.0 - (1.0 - 1.0 / n as f64) * i as f64 / (n - 1) as f64 };
            let s = if variant.has_guidance() { mu.exp() / (mu.exp() + (1.0 / s - 1.0)) } else { s };
            s as f32
        })
        .collect()
}

/// SplitMix64 with Box–Muller standard normals.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let (u1, u2) = (self.uniform(), self.uniform());
            let r = (-2.0 * u1.ln()).sqrt();
            let t = std::f64::consts::TAU * u2;
            v.push((r * t.cos()) as f32);
            v.push((r * t.sin()) as f32);
        }
        v.truncate(n);
        v
    }

    /// A calibration sample's latents at `sigma`: σ·n₁ + (1−σ)·n₂ (noise, and a standard-normal
    /// stand-in for the clean latent), `n` values, n₁ drawn before n₂.
    pub fn latents(&mut self, sigma: f32, n: usize) -> Vec<f32> {
        let (n1, n2) = (self.normals(n), self.normals(n));
        n1.iter().zip(&n2).map(|(a, b)| sigma * a + (1.0 - sigma) * b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_diffusers_formula() {
        // schnell: unshifted linspace(1, 1/4, 4)
        assert_eq!(sigmas(4, Variant::Schnell, 4096), vec![1.0, 0.75, 0.5, 0.25]);
        // dev at img_seq 4096: mu = 1.15, σ' = e^mu / (e^mu + 1/σ - 1)
        let s = sigmas(4, Variant::Dev, 4096);
        assert_eq!(s[0], 1.0);
        let want = (1.15f64.exp() / (1.15f64.exp() + 1.0 / 0.25 - 1.0)) as f32;
        assert!((s[3] - want).abs() < 1e-7);
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.normals(5), b.normals(5));
    }
}

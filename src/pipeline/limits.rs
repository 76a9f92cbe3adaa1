//! Resource limits of a request, checked before any work: a configured maximum resolution
//! (area and side) and batch, and an estimate of the transformer's activation memory for the
//! request where the backend's memory behaviour is known.
//!
//! FLUX.1 is trained for about 0.1–2 megapixels; the default maximum (2048×2048 pixels, sides up
//! to 4096) leaves room above that and stops requests such as 65536×65536, which would otherwise
//! fail late (the scheduler's time shift overflows to NaN at 16.7 M image tokens, and the
//! attention scores alone would need petabytes).

use super::latents::{Resolution, PIXELS_PER_TOKEN};
use super::PipelineError;
use crate::flux::FluxConfig;

/// Maximum request size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width × height) of one image.
    pub max_pixels: usize,
    /// Longest side in pixels.
    pub max_side: usize,
    /// Most images (the transformer's batch dimension) per call.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_pixels: 2048 * 2048, max_side: 4096, max_batch: 1 }
    }
}

impl Limits {
    /// Checks one request of `batch` images at `width`×`height` against the limits; the error
    /// names the limit and the requested size.
    pub fn check(&self, width: usize, height: usize, batch: usize) -> Result<(), PipelineError> {
        let err = |limit: String| {
            Err(PipelineError::Limit {
                requested: format!("{width}x{height} ({} pixels) × batch {batch}", width.saturating_mul(height)),
                limit,
                estimate: None,
            })
        };
        if width > self.max_side || height > self.max_side {
            return err(format!("the maximum side of {} pixels", self.max_side));
        }
        if width.saturating_mul(height) > self.max_pixels {
            return err(format!("the maximum of {} pixels per image ({})", self.max_pixels, square(self.max_pixels)));
        }
        if batch > self.max_batch {
            return err(format!("the maximum batch of {}", self.max_batch));
        }
        Ok(())
    }

    /// [`Self::check`] for a transformer call of `batch` × `img_seq` packed image tokens.
    pub fn check_tokens(&self, batch: usize, img_seq: usize) -> Result<(), PipelineError> {
        let max_tokens = self.max_pixels / (PIXELS_PER_TOKEN * PIXELS_PER_TOKEN);
        if img_seq > max_tokens || batch > self.max_batch {
            return Err(PipelineError::Limit {
                requested: format!("batch {batch} × {img_seq} image tokens"),
                limit: format!("the maximum of batch {} × {max_tokens} image tokens ({} pixels, {})", self.max_batch, self.max_pixels, square(self.max_pixels)),
                estimate: None,
            });
        }
        Ok(())
    }
}

/// Adds the activation estimate to a [`PipelineError::Limit`] (other errors pass unchanged).
pub fn with_estimate(e: PipelineError, estimate: ActivationEstimate) -> PipelineError {
    match e {
        PipelineError::Limit { requested, limit, .. } => PipelineError::Limit { requested, limit, estimate: Some(estimate.to_string()) },
        other => other,
    }
}

fn square(pixels: usize) -> String {
    let side = (pixels as f64).sqrt() as usize;
    format!("{side}x{side}")
}

/// How a backend computes attention, which decides whether the `[B, heads, S, S]` scores exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionMemory {
    /// The scores are materialized in f32 (ONNX Runtime's CPU kernel of ONNX `Attention`).
    Materialized,
    /// Fused / flash attention: no `S × S` tensor (ONNX Runtime CUDA, TensorRT).
    Fused,
}

/// Estimated peak activation memory of one transformer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivationEstimate {
    /// The widest block's live intermediates (single-block `linear1` output, attention Q/K/V
    /// and output, the residual stream), in the activation dtype.
    pub dense_bytes: u64,
    /// `[B, heads, S, S]` f32 attention scores (0 for fused attention).
    pub attention_bytes: u64,
}

impl ActivationEstimate {
    /// An estimate (±2×) of the largest activations alive at once in one transformer call of
    /// `batch` × (`img_seq` + `txt_seq`) tokens with `dtype_bytes`-byte activations; weights and
    /// the backend's workspace are not included.
    pub fn transformer(cfg: &FluxConfig, batch: usize, img_seq: usize, txt_seq: usize, dtype_bytes: usize, attention: AttentionMemory) -> Self {
        let (b, s, h) = (batch as u64, (img_seq + txt_seq) as u64, cfg.hidden_size as u64);
        // linear1 output (3H + mlp), Q/K/V after RoPE (3H), attention output and MLP input (H + mlp), residual (H).
        let per_token = 3 * h + cfg.mlp_hidden as u64 + 3 * h + h + cfg.mlp_hidden as u64 + h;
        let dense_bytes = b.saturating_mul(s).saturating_mul(per_token).saturating_mul(dtype_bytes as u64);
        let attention_bytes = match attention {
            AttentionMemory::Materialized => b.saturating_mul(cfg.num_heads as u64).saturating_mul(s.saturating_mul(s)).saturating_mul(4),
            AttentionMemory::Fused => 0,
        };
        ActivationEstimate { dense_bytes, attention_bytes }
    }
    pub fn total(&self) -> u64 {
        self.dense_bytes.saturating_add(self.attention_bytes)
    }
}

impl std::fmt::Display for ActivationEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "≈ {}", human_bytes(self.total()))?;
        if self.attention_bytes > 0 {
            write!(f, " ({} of it attention scores)", human_bytes(self.attention_bytes))?;
        }
        Ok(())
    }
}

/// `1.5 GB`-style size.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// The request's estimate at `res` for a batch-1 call with `txt_seq` text tokens.
pub fn estimate_for(cfg: &FluxConfig, res: Resolution, txt_seq: usize, dtype_bytes: usize, attention: AttentionMemory) -> ActivationEstimate {
    ActivationEstimate::transformer(cfg, 1, res.image_seq_len(), txt_seq, dtype_bytes, attention)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux::{FluxConfig, Variant};

    #[test]
    fn oversize_requests_name_the_limit_and_the_requested_size() {
        let l = Limits::default();
        assert!(l.check(1024, 1024, 1).is_ok() && l.check(2048, 2048, 1).is_ok() && l.check(4096, 1024, 1).is_ok());
        let e = l.check(65536, 65536, 1).unwrap_err().to_string();
        assert!(e.contains("65536x65536") && e.contains("4096"), "{e}");
        let e = l.check(3072, 2048, 1).unwrap_err().to_string();
        assert!(e.contains("3072x2048 (6291456 pixels)") && e.contains("4194304 pixels per image (2048x2048)"), "{e}");
        let e = l.check(1024, 1024, 2).unwrap_err().to_string();
        assert!(e.contains("batch 2") && e.contains("maximum batch of 1"), "{e}");
        assert!(matches!(l.check_tokens(1, 16385), Err(PipelineError::Limit { .. })));
        assert!(l.check_tokens(1, 16384).is_ok());
        let cfg = FluxConfig::flux1(Variant::Dev);
        let est = ActivationEstimate::transformer(&cfg, 1, 65536 * 65536 / 256, 512, 2, AttentionMemory::Materialized);
        let e = with_estimate(l.check(65536, 65536, 1).unwrap_err(), est).to_string();
        assert!(e.contains("estimated transformer activation memory ≈ 27.0 PB (27.0 PB of it attention scores)"), "{e}");
    }

    #[test]
    fn activation_estimate_matches_hand_arithmetic() {
        let cfg = FluxConfig::flux1(Variant::Dev);
        // 1024²: 4096 image + 512 text tokens; per token 3·3072 + 12288 + 3·3072 + 3072 + 12288 + 3072 = 49152.
        let e = ActivationEstimate::transformer(&cfg, 1, 4096, 512, 2, AttentionMemory::Materialized);
        assert_eq!(e.dense_bytes, 4608 * 49152 * 2);
        assert_eq!(e.attention_bytes, 24 * 4608 * 4608 * 4);
        assert_eq!(ActivationEstimate::transformer(&cfg, 1, 4096, 512, 2, AttentionMemory::Fused).attention_bytes, 0);
        assert_eq!(human_bytes(e.attention_bytes), "2.0 GB");
    }
}

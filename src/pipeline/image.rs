//! VAE decoder output → image, as diffusers' `VaeImageProcessor.postprocess` does for FluxPipeline.

use super::PipelineError;

/// `output_type="pt"`: `(x · 0.5 + 0.5).clamp(0, 1)` element-wise (the layout is kept, `[1, 3, H, W]`).
pub fn denormalize(decoded: &[f32]) -> Vec<f32> {
    decoded.iter().map(|x| (x * 0.5 + 0.5).clamp(0.0, 1.0)).collect()
}

/// `output_type="pil"` pixels: a denormalized `[1, 3, H, W]` image → interleaved RGB `[H, W, 3]`
/// bytes, `(v · 255).round()` with numpy's round-half-to-even.
pub fn to_rgb8(image: &[f32], height: usize, width: usize) -> Result<Vec<u8>, PipelineError> {
    let plane = height * width;
    if image.len() != 3 * plane {
        return Err(PipelineError::Length { what: format!("image [1, 3, {height}, {width}]"), expected: 3 * plane, found: image.len() });
    }
    if let Some(bad) = image.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(PipelineError::Value(format!("image value {bad} is outside [0, 1]; denormalize the decoder output first")));
    }
    let mut out = Vec::with_capacity(3 * plane);
    for p in 0..plane {
        for c in 0..3 {
            out.push((image[c * plane + p] * 255.0).round_ties_even() as u8);
        }
    }
    Ok(out)
}

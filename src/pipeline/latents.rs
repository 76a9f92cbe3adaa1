//! Latent layout of FLUX.1 as diffusers `FluxPipeline` handles it: resolution checks, 2×2 packing
//! (`b c (h 2)(w 2) → b (h w)(c·4)`, channel index `c·4 + ph·2 + pw`), position ids, the VAE's
//! scaling/shift, and initial noise read from a safetensors file.
//!
//! Every latent tensor here is row-major f32, batch 1 unless a function says otherwise.

use std::path::Path;

use serde::Deserialize;

use super::PipelineError;
pub use crate::flux::img_ids;
use crate::tensor::{decode_into, DType};

/// FLUX.1's VAE latent channels (16); packed tokens have `4 ×` as many.
pub const LATENT_CHANNELS: usize = 16;
/// Pixels per latent cell (`2^(len(block_out_channels) − 1)` = 8 for the FLUX.1 VAE).
pub const VAE_SCALE_FACTOR: usize = 8;
/// Pixels per packed token side: the VAE factor times the 2×2 patch.
pub const PIXELS_PER_TOKEN: usize = 2 * VAE_SCALE_FACTOR;

/// An image size in pixels that FLUX can generate exactly: both sides positive multiples of 16.
/// (diffusers silently floors other sizes to a multiple of 16; flux-trt refuses them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub width: usize,
    pub height: usize,
}

impl Resolution {
    pub fn new(width: usize, height: usize) -> Result<Self, PipelineError> {
        let err = |message: String| Err(PipelineError::Resolution { width, height, message });
        if width == 0 || height == 0 {
            return err("width and height must be positive".into());
        }
        if !width.is_multiple_of(PIXELS_PER_TOKEN) || !height.is_multiple_of(PIXELS_PER_TOKEN) {
            let round = |v: usize| (v / PIXELS_PER_TOKEN).max(1) * PIXELS_PER_TOKEN;
            return err(format!(
                "both sides must be multiples of {PIXELS_PER_TOKEN} (VAE factor {VAE_SCALE_FACTOR} × 2×2 packing); nearest below: {}x{}",
                round(width),
                round(height)
            ));
        }
        Ok(Resolution { width, height })
    }

    /// VAE latent grid `(rows, cols)` = `(H/8, W/8)`.
    pub fn latent_hw(&self) -> (usize, usize) {
        (self.height / VAE_SCALE_FACTOR, self.width / VAE_SCALE_FACTOR)
    }

    /// Packed token grid `(rows, cols)` = `(H/16, W/16)`.
    pub fn packed_hw(&self) -> (usize, usize) {
        (self.height / PIXELS_PER_TOKEN, self.width / PIXELS_PER_TOKEN)
    }

    /// Number of image tokens the transformer sees, `(H/16)·(W/16)` (the scheduler's `image_seq_len`).
    pub fn image_seq_len(&self) -> usize {
        let (h, w) = self.packed_hw();
        h * w
    }

    /// Packed latent shape `[1, seq, 64]`.
    pub fn packed_shape(&self) -> [usize; 3] {
        [1, self.image_seq_len(), LATENT_CHANNELS * 4]
    }

    /// VAE latent shape `[1, 16, H/8, W/8]`.
    pub fn unpacked_shape(&self) -> [usize; 4] {
        let (h, w) = self.latent_hw();
        [1, LATENT_CHANNELS, h, w]
    }

    /// `img_ids` of the packed grid: `(0, r, c)` row-major (diffusers `_prepare_latent_image_ids`).
    pub fn img_ids(&self) -> Vec<[f32; 3]> {
        let (h, w) = self.packed_hw();
        img_ids(h, w)
    }
}

/// `txt_ids`: all zeros, one row per text token.
pub fn txt_ids(len: usize) -> Vec<[f32; 3]> {
    vec![[0.0; 3]; len]
}

/// diffusers `_pack_latents`: `[b, c, lh, lw]` → `[b, (lh/2)(lw/2), c·4]`.
pub fn pack(x: &[f32], batch: usize, channels: usize, lh: usize, lw: usize) -> Result<Vec<f32>, PipelineError> {
    check_grid(x.len(), batch, channels, lh, lw, "latents to pack")?;
    let (ph, pw) = (lh / 2, lw / 2);
    let mut out = Vec::with_capacity(x.len());
    for b in 0..batch {
        let xb = &x[b * channels * lh * lw..(b + 1) * channels * lh * lw];
        for r in 0..ph {
            for c in 0..pw {
                for ch in 0..channels {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            out.push(xb[(ch * lh + 2 * r + dy) * lw + 2 * c + dx]);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// diffusers `_unpack_latents`: `[b, (lh/2)(lw/2), c·4]` → `[b, c, lh, lw]`.
pub fn unpack(x: &[f32], batch: usize, channels: usize, lh: usize, lw: usize) -> Result<Vec<f32>, PipelineError> {
    check_grid(x.len(), batch, channels, lh, lw, "packed latents to unpack")?;
    let (ph, pw) = (lh / 2, lw / 2);
    let mut out = vec![0.0f32; x.len()];
    let per = channels * lh * lw;
    for b in 0..batch {
        let (xb, ob) = (&x[b * per..(b + 1) * per], &mut out[b * per..(b + 1) * per]);
        let mut i = 0;
        for r in 0..ph {
            for c in 0..pw {
                for ch in 0..channels {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            ob[(ch * lh + 2 * r + dy) * lw + 2 * c + dx] = xb[i];
                            i += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn check_grid(len: usize, batch: usize, channels: usize, lh: usize, lw: usize, what: &str) -> Result<(), PipelineError> {
    if !lh.is_multiple_of(2) || !lw.is_multiple_of(2) {
        return Err(PipelineError::Resolution {
            width: lw * VAE_SCALE_FACTOR,
            height: lh * VAE_SCALE_FACTOR,
            message: format!("{what}: latent grid {lh}x{lw} is not even, so it cannot be cut into 2x2 patches"),
        });
    }
    let expected = batch * channels * lh * lw;
    if len != expected {
        return Err(PipelineError::Length { what: format!("{what} [{batch}, {channels}, {lh}, {lw}]"), expected, found: len });
    }
    Ok(())
}

/// The VAE settings the pipeline needs, from a diffusers `vae/config.json` (`AutoencoderKL`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VaeConfig {
    pub scaling_factor: f32,
    /// Absent in SD VAEs; FLUX's is 0.1159.
    pub shift_factor: Option<f32>,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
}

impl VaeConfig {
    /// FLUX.1's VAE: scaling 0.3611, shift 0.1159, 16 latent channels, factor 8.
    pub fn flux1() -> Self {
        VaeConfig { scaling_factor: 0.3611, shift_factor: Some(0.1159), latent_channels: 16, block_out_channels: vec![128, 256, 512, 512] }
    }

    /// Reads and validates `vae/config.json`: FLUX's 16 latent channels and factor 8 are required.
    pub fn from_file(path: &Path) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))?;
        let cfg: VaeConfig =
            serde_json::from_str(&text).map_err(|source| PipelineError::Json { path: path.into(), what: "a diffusers AutoencoderKL config", source })?;
        let bad = |message: String| Err(PipelineError::Tensor { path: path.into(), tensor: "config".into(), message });
        if cfg.latent_channels != LATENT_CHANNELS {
            return bad(format!("latent_channels is {}, FLUX.1 needs {LATENT_CHANNELS}", cfg.latent_channels));
        }
        if cfg.block_out_channels.len() != 4 {
            return bad(format!(
                "{} block_out_channels give a VAE factor of 2^{}, FLUX.1 needs {VAE_SCALE_FACTOR}",
                cfg.block_out_channels.len(),
                cfg.block_out_channels.len().saturating_sub(1)
            ));
        }
        if !(cfg.scaling_factor.is_finite() && cfg.scaling_factor != 0.0 && cfg.shift_factor.unwrap_or(0.0).is_finite()) {
            return bad("scaling_factor must be finite and non-zero, shift_factor finite".into());
        }
        Ok(cfg)
    }

    /// Transformer latents → VAE decoder input, in place: `z / scaling_factor + shift_factor`.
    pub fn to_decoder_input(&self, z: &mut [f32]) {
        let shift = self.shift_factor.unwrap_or(0.0);
        z.iter_mut().for_each(|v| *v = *v / self.scaling_factor + shift);
    }
}

/// Name of the tensor a `--latents FILE` must hold.
pub const LATENTS_TENSOR: &str = "latents";

/// Reads initial noise for `res` from a safetensors file holding one tensor `latents` (f32, f16
/// or bf16), either packed `[1, seq, 64]` (as FluxPipeline's `latents=` argument) or unpacked
/// `[1, 16, H/8, W/8]` (packed here). Returns packed f32 `[1, seq, 64]`.
pub fn load_latents(path: &Path, res: Resolution) -> Result<Vec<f32>, PipelineError> {
    let bytes = std::fs::read(path).map_err(|e| PipelineError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| PipelineError::Safetensors { path: path.into(), message: e.to_string() })?;
    let tensor_err = |message: String| PipelineError::Tensor { path: path.into(), tensor: LATENTS_TENSOR.into(), message };
    let view = st.tensor(LATENTS_TENSOR).map_err(|_| {
        let mut names = st.names();
        names.sort();
        tensor_err(format!("missing (the file holds {names:?})"))
    })?;
    let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| tensor_err(format!("dtype {:?} is not f32, f16 or bf16", view.dtype())))?;
    let shape = view.shape().to_vec();
    let (packed, unpacked) = (res.packed_shape(), res.unpacked_shape());
    let mut values = Vec::with_capacity(shape.iter().product());
    decode_into(dtype, view.data(), &mut values);
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(tensor_err(format!("holds a non-finite value ({bad})")));
    }
    if shape == packed {
        Ok(values)
    } else if shape == unpacked {
        let (lh, lw) = res.latent_hw();
        pack(&values, 1, LATENT_CHANNELS, lh, lw)
    } else {
        Err(tensor_err(format!("shape {shape:?} fits neither packed {packed:?} nor unpacked {unpacked:?} latents of a {}x{} image", res.width, res.height)))
    }
}

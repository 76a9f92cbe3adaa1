//! `--calib-data FILE`: real text-encoder outputs for calibration.
//!
//! - `*.safetensors`: tensors `encoder_hidden_states` `[N, S, context_dim]` (T5) and
//!   `pooled_projections` `[N, pooled_dim]` (CLIP), f32, f16 or bf16; other tensors are ignored.
//! - `DIR/encoder_hidden_states.npy` (little-endian `<f4` or `<f2`, C order): the pooled
//!   projections are read from `DIR/pooled_projections.npy` next to it.
//!
//! Wrong rank, width, dtype, sample counts that differ, or non-finite values are
//! [`Fp8Error::CalibTensor`] naming the file and tensor.

use std::path::Path;

use super::Fp8Error;
use crate::flux::FluxConfig;
use crate::tensor::DType;

pub const ENCODER_HIDDEN_STATES: &str = "encoder_hidden_states";
pub const POOLED_PROJECTIONS: &str = "pooled_projections";

/// Calibration prompts: `n` samples of T5 `[txt_seq, context_dim]` and CLIP `[pooled_dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibData {
    pub n: usize,
    pub txt_seq: usize,
    /// `[n, txt_seq, context_dim]` row-major.
    pub encoder_hidden_states: Vec<f32>,
    /// `[n, pooled_dim]` row-major.
    pub pooled_projections: Vec<f32>,
}

struct Raw {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn tensor_err(path: &Path, tensor: &str, message: impl Into<String>) -> Fp8Error {
    Fp8Error::CalibTensor { path: path.to_path_buf(), tensor: tensor.to_string(), message: message.into() }
}

/// Loads and validates calibration data for a model with `cfg`.
pub fn load(path: &Path, cfg: &FluxConfig) -> Result<CalibData, Fp8Error> {
    let is_npy = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (ehs, ehs_path, pooled, pooled_path) = if is_npy {
        if path.file_name().and_then(|n| n.to_str()) != Some("encoder_hidden_states.npy") {
            return Err(Fp8Error::CalibFile {
                path: path.to_path_buf(),
                message: "a .npy calibration file must be named encoder_hidden_states.npy, with pooled_projections.npy next to it".into(),
            });
        }
        let pp = path.with_file_name("pooled_projections.npy");
        (read_npy(path, ENCODER_HIDDEN_STATES)?, path.to_path_buf(), read_npy(&pp, POOLED_PROJECTIONS)?, pp)
    } else {
        let bytes = std::fs::read(path).map_err(|e| Fp8Error::CalibFile { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Fp8Error::CalibFile { path: path.to_path_buf(), message: format!("not a safetensors file (or .npy): {e}") })?;
        let get = |name: &str| -> Result<Raw, Fp8Error> {
            let v = st.tensor(name).map_err(|_| tensor_err(path, name, "missing"))?;
            let dt = DType::from_safetensors(v.dtype()).ok_or_else(|| tensor_err(path, name, format!("dtype {:?}; use f32, f16 or bf16", v.dtype())))?;
            let mut data = Vec::new();
            crate::tensor::decode_into(dt, v.data(), &mut data);
            Ok(Raw { shape: v.shape().to_vec(), data })
        };
        (get(ENCODER_HIDDEN_STATES)?, path.to_path_buf(), get(POOLED_PROJECTIONS)?, path.to_path_buf())
    };
    validate(ehs, &ehs_path, pooled, &pooled_path, cfg)
}

fn validate(ehs: Raw, ehs_path: &Path, pooled: Raw, pooled_path: &Path, cfg: &FluxConfig) -> Result<CalibData, Fp8Error> {
    let e = ENCODER_HIDDEN_STATES;
    let p = POOLED_PROJECTIONS;
    if ehs.shape.len() != 3 || ehs.shape[2] != cfg.context_dim || ehs.shape[0] == 0 || ehs.shape[1] == 0 {
        return Err(tensor_err(ehs_path, e, format!("has shape {:?}, expected [N ≥ 1, S ≥ 1, {}]", ehs.shape, cfg.context_dim)));
    }
    if pooled.shape.len() != 2 || pooled.shape[1] != cfg.pooled_dim {
        return Err(tensor_err(pooled_path, p, format!("has shape {:?}, expected [N, {}]", pooled.shape, cfg.pooled_dim)));
    }
    if pooled.shape[0] != ehs.shape[0] {
        return Err(tensor_err(pooled_path, p, format!("has {} samples, {e} has {}", pooled.shape[0], ehs.shape[0])));
    }
    for (raw, path, name) in [(&ehs, ehs_path, e), (&pooled, pooled_path, p)] {
        if let Some(i) = raw.data.iter().position(|v| !v.is_finite()) {
            return Err(tensor_err(path, name, format!("element {i} is {}", raw.data[i])));
        }
    }
    Ok(CalibData { n: ehs.shape[0], txt_seq: ehs.shape[1], encoder_hidden_states: ehs.data, pooled_projections: pooled.data })
}

/// Minimal NumPy `.npy` reader (format 1.0–3.0, little-endian f4/f2, C order).
fn read_npy(path: &Path, tensor: &str) -> Result<Raw, Fp8Error> {
    let bytes = std::fs::read(path).map_err(|e| Fp8Error::CalibFile { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
    let bad = |m: &str| tensor_err(path, tensor, m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + hlen).and_then(|h| std::str::from_utf8(h).ok()).ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").and_then(|r| r.strip_prefix('\'')).and_then(|r| r.split('\'').next()).ok_or_else(|| bad("header has no descr"))?;
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f2" => DType::F16,
        d => return Err(bad(&format!("dtype `{d}`; use little-endian float32 (<f4) or float16 (<f2)"))),
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported"));
    }
    let shape_s = field("shape").and_then(|r| r.strip_prefix('(')).and_then(|r| r.split(')').next()).ok_or_else(|| bad("header has no shape"))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(&format!("bad shape `({shape_s})`"))))
        .collect::<Result<_, _>>()?;
    let body = &bytes[start + hlen..];
    let want = shape.iter().product::<usize>() * dtype.size();
    if body.len() != want {
        return Err(bad(&format!("holds {} data bytes, shape {shape:?} needs {want}", body.len())));
    }
    let mut data = Vec::with_capacity(want / dtype.size());
    crate::tensor::decode_into(dtype, body, &mut data);
    Ok(Raw { shape, data })
}

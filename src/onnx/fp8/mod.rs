//! FP8 (E4M3FN) export: `QuantizeLinear`/`DequantizeLinear` around the transformer blocks' base
//! GEMMs, weights stored already quantized, static activation scales from calibration.
//!
//! # What is quantized (exactly)
//! Per double block `i` (`transformer_blocks.i`): the fused `attn.qkv` (to_q|to_k|to_v) and
//! `attn.add_qkv` (add_q|add_k|add_v) GEMMs, `attn.to_out.0`, `attn.to_add_out`,
//! `ff.net.0.proj`, `ff.net.2`, `ff_context.net.0.proj`, `ff_context.net.2`.
//! Per single block `i` (`single_transformer_blocks.i`): the fused `linear1`
//! (to_q|to_k|to_v|proj_mlp) and `proj_out`. [`quantized_gemms`] lists them; the manifest
//! records the list (`fp8.quantized`).
//!
//! **Not quantized** (stay in the graph's float dtype): every bias, the modulation Linears
//! (`norm1.linear`, `norm1_context.linear`, single `norm.linear`, `norm_out.linear`), the
//! embedders (`x_embedder`, `context_embedder`, `time_text_embed.*`), the final `proj_out`, the
//! QK RMSNorm scales, and every LoRA slot: a slot's GEMMs read the **unquantized** input, so
//! the adapter contribution is exact in the float dtype.
//!
//! # Graph form (opset 23)
//! - Weight: FLOAT8E4M3FN initializer `<gemm>.weight` `[out, in]` in the external-data file
//!   (1 byte per element, converted while streaming, round-to-nearest-even, saturating; see
//!   [`e4m3`]), scale initializer `<gemm>.weight_scale` (`[out]` per output channel, or a scalar
//!   per tensor; `--fp8-weight-scale channel|tensor`), `DequantizeLinear(axis=0)` → `Gemm(transB=1)`.
//!   A fused group has one weight and one scale tensor (per-tensor: one scale for q|k|v[|mlp]).
//! - Activation: `QuantizeLinear(x, s, output_dtype=FLOAT8E4M3FN)` → `DequantizeLinear(·, s)`
//!   on the GEMM's 2-D input, scalar static scale `<gemm>.input_scale` from calibration.
//! - Attention (`--fp8-attention`, off by default): the same activation Q/DQ on the `Attention`
//!   node's Q, K, V inputs (after RoPE), scales `<block>.attn.{q,k,v}`.
//!   Q/K/V already hold the LoRA deltas of to_q/k/v, so with this flag those deltas pass through
//!   FP8 too (on the fixtures the schnell LoRA-delta cosine drops from 0.9916 to 0.9885, below the
//!   0.99 bar; `tools/bench/fp8_report.json`), which is why it is off by default.
//! - Scales are in the graph's float dtype (ONNX ties `DequantizeLinear`'s output type to the
//!   scale's); the weight is quantized with the scale **as rounded to that dtype**, so
//!   dequantization reproduces exactly what the exporter computed.
//!
//! # Scales
//! `scale = max(amax / 448, SCALE_FLOOR)` with [`SCALE_FLOOR`] = 2⁻²⁴: a weight row (or an
//! activation) that is all zeros gets the floor, never a zero scale (it quantizes to zeros
//! either way). A NaN/Inf weight is an error naming the tensor and element; a calibration amax
//! that is NaN/Inf is an error naming the quantization point.
//!
//! # Calibration
//! [`calib`] (feature `ort`) runs the fp32 calibration graph
//! ([`crate::onnx::build_calibration_model`]: the model plus one `amax.<point>` output per point)
//! on ONNX Runtime; `build-engine --calib N --calib-seed S [--calib-data FILE] [--calib-out F]`,
//! or `--calib-in F` to reuse a saved [`Calibration`]. The manifest records the scales
//! (`fp8_activation_scales`) and how they were made (`fp8.calibration`).
//!
//! # Float dtype
//! TensorRT builds use bf16 (`Precision::Fp8`, `fp8.float_dtype = bf16`). ONNX Runtime's CPU
//! provider has no bf16 `Gemm`, so accuracy tests export "fp8 weights/activations, fp32
//! elsewhere" (`--fp8-float fp32`); the quantization is identical, only the unquantized
//! arithmetic differs. ORT needs graph optimization level BASIC or lower for FP8 graphs
//! (its extended Q/DQ fusions reject float8); the ORT runtime selects it for FP8 manifests.

pub mod e4m3;
mod error;
mod scales;

#[cfg(feature = "ort")]
pub mod calib;
pub mod calib_data;
pub mod rescale;
pub mod samples;

use std::collections::BTreeMap;

pub use crate::flux::{attention_points, quantized_gemms};
pub use crate::manifest::{CalibrationInfo, Fp8Manifest, WeightScale};
pub use error::Fp8Error;
pub use scales::{scale_from_amax, weight_amax, SCALE_FLOOR};

use crate::flux::FluxConfig;
use crate::tensor::DType;

/// FP8 settings of one export.
#[derive(Clone, Debug, PartialEq)]
pub struct Fp8Options {
    pub weight_scale: WeightScale,
    /// Float dtype of everything not quantized: bf16 (TensorRT) or f32 (ORT CPU tests).
    pub float_dtype: DType,
    /// Q/DQ on the attention Q, K, V inputs.
    pub attention: bool,
    /// Activation amax per quantization point (from [`calib`]); scales are derived at export.
    pub activation_amax: BTreeMap<String, f32>,
    pub calibration: Option<CalibrationInfo>,
}

impl Fp8Options {
    pub fn new(activation_amax: BTreeMap<String, f32>) -> Self {
        Fp8Options { weight_scale: WeightScale::Channel, float_dtype: DType::BF16, attention: false, activation_amax, calibration: None }
    }
}

/// Result of calibration: max |input| per quantization point, and how it was obtained.
/// Saved as JSON by `build-engine --calib-out` and reused with `--calib-in` (no ONNX Runtime
/// needed then).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub amax: BTreeMap<String, f32>,
    pub info: CalibrationInfo,
}

impl Calibration {
    /// Writes the calibration as JSON (atomically).
    pub fn save(&self, path: &std::path::Path) -> Result<(), Fp8Error> {
        let err = |message: String| Fp8Error::CalibFile { path: path.to_path_buf(), message };
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        crate::util::write_atomic(path, &json).map_err(|e| err(format!("cannot write: {e}")))
    }

    /// Reads a saved calibration and checks it covers every quantization point of `cfg`
    /// (attention points too) with a finite, non-negative amax, and nothing else.
    pub fn load(path: &std::path::Path, cfg: &FluxConfig) -> Result<Self, Fp8Error> {
        let err = |message: String| Fp8Error::CalibFile { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let c: Calibration = serde_json::from_str(&text).map_err(|e| err(format!("not a flux-trt calibration file: {e}")))?;
        let mut points = quantized_gemms(cfg);
        points.extend(attention_points(cfg));
        for p in &points {
            match c.amax.get(p) {
                None => return Err(err(format!("no amax for `{p}` (calibrated for another model?)"))),
                Some(a) if !a.is_finite() || *a < 0.0 => return Err(err(format!("amax of `{p}` is {a}"))),
                Some(_) => {}
            }
        }
        if let Some(k) = c.amax.keys().find(|k| !points.contains(k)) {
            return Err(err(format!("`{k}` is not a quantization point of this model (calibrated for another model?)")));
        }
        Ok(c)
    }
}

/// Graph output name of a calibration point's amax.
pub fn amax_output(point: &str) -> String {
    format!("amax.{point}")
}

//! FP8 export and calibration errors; each names the file, tensor or quantization point.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Fp8Error {
    #[error("{path}: tensor `{tensor}` has a non-finite value {value} at row {row}, column {col}; FP8 scales need finite weights")]
    NonFiniteWeight { path: PathBuf, tensor: String, row: usize, col: usize, value: f32 },
    #[error("fp8 export: no calibrated activation amax for `{point}` (run calibration with --calib N)")]
    MissingActivation { point: String },
    #[error("fp8 export: activation amax for `{point}` is {value}; it must be finite and ≥ 0")]
    BadActivation { point: String, value: f32 },
    #[error("fp8 export: float dtype {0} is not supported (use bf16 for TensorRT or fp32 for ONNX Runtime CPU)")]
    FloatDtype(crate::tensor::DType),
    #[error("{path}: calibration data tensor `{tensor}`: {message}")]
    CalibTensor { path: PathBuf, tensor: String, message: String },
    #[error("{path}: calibration data: {message}")]
    CalibFile { path: PathBuf, message: String },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("{path}: cannot recalibrate this engine: {message}")]
    Engine { path: PathBuf, message: String },
    #[error("calibration sample {sample} (σ = {sigma}): activation `{point}` has amax {value}")]
    NonFiniteActivation { point: String, sample: usize, sigma: f32, value: f32 },
}

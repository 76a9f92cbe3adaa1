//! Element types and the small dense matrix used for LoRA factors.
//!
//! Base weights are never decoded here: they stay as borrowed byte slices of the
//! memory-mapped checkpoint (see [`crate::checkpoint`]). LoRA factors are small
//! (rank × width), so they are decoded once to `f32` [`Matrix`] values.

use serde::{Deserialize, Serialize};

/// Floating-point element types flux-trt reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The matching safetensors dtype; `None` for anything we do not read.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(DType::F32),
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            _ => None,
        }
    }

    pub const fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
        }
    }

    /// ONNX `TensorProto.DataType` code.
    pub const fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::F16 => 10,
            DType::BF16 => 16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            other => Err(format!("unknown dtype `{other}` (use fp32, fp16 or bf16)")),
        }
    }
}

/// Decodes little-endian `bytes` of `dtype` and appends them to `out` as `f32`.
///
/// `bytes.len()` must be a multiple of `dtype.size()`; a trailing partial element is ignored
/// (callers validate lengths against shapes before decoding).
pub fn decode_into(dtype: DType, bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        DType::F32 => out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DType::F16 => out.extend(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())),
        DType::BF16 => out.extend(bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())),
    }
}

/// Encodes `values` as little-endian `dtype` bytes, appending to `out` (round to nearest even).
pub fn encode_into(dtype: DType, values: &[f32], out: &mut Vec<u8>) {
    out.reserve(values.len() * dtype.size());
    match dtype {
        DType::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values.iter().for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values.iter().for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
    }
}

/// Converts `bytes` of `from` into `to`, appending to `out`. Same-type conversion is a copy.
pub fn convert_into(from: DType, to: DType, bytes: &[u8], out: &mut Vec<u8>) {
    if from == to {
        out.extend_from_slice(bytes);
        return;
    }
    let mut tmp = Vec::with_capacity(bytes.len() / from.size());
    decode_into(from, bytes, &mut tmp);
    encode_into(to, &tmp, out);
}

/// A dense row-major `f32` matrix (LoRA factors, ΔW).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Builds a matrix; `None` if `data.len() != rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Option<Self> {
        (data.len() == rows * cols).then_some(Matrix { rows, cols, data })
    }

    #[inline]
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Rows `start..end` as a new matrix.
    pub fn rows_slice(&self, start: usize, end: usize) -> Matrix {
        Matrix { rows: end - start, cols: self.cols, data: self.data[start * self.cols..end * self.cols].to_vec() }
    }

    /// Columns `start..end` as a new matrix.
    pub fn cols_slice(&self, start: usize, end: usize) -> Matrix {
        let mut data = Vec::with_capacity(self.rows * (end - start));
        for r in 0..self.rows {
            data.extend_from_slice(&self.row(r)[start..end]);
        }
        Matrix { rows: self.rows, cols: end - start, data }
    }

    /// Stacks matrices with equal column counts vertically.
    pub fn vstack(parts: &[Matrix]) -> Option<Matrix> {
        let cols = parts.first()?.cols;
        if parts.iter().any(|p| p.cols != cols) {
            return None;
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        parts.iter().for_each(|p| data.extend_from_slice(&p.data));
        Some(Matrix { rows: parts.iter().map(|p| p.rows).sum(), cols, data })
    }

    /// `self · other` (plain triple loop in f64 accumulation; LoRA sizes only).
    pub fn matmul(&self, other: &Matrix) -> Option<Matrix> {
        if self.cols != other.rows {
            return None;
        }
        let mut out = vec![0.0f32; self.rows * other.cols];
        let mut acc = vec![0.0f64; other.cols];
        for i in 0..self.rows {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for k in 0..self.cols {
                let a = self.get(i, k) as f64;
                if a == 0.0 {
                    continue;
                }
                let orow = other.row(k);
                for (j, o) in orow.iter().enumerate() {
                    acc[j] += a * (*o as f64);
                }
            }
            for (j, a) in acc.iter().enumerate() {
                out[i * other.cols + j] = *a as f32;
            }
        }
        Some(Matrix { rows: self.rows, cols: other.cols, data: out })
    }

    pub fn scale(&mut self, s: f32) {
        self.data.iter_mut().for_each(|v| *v *= s);
    }

    /// True when every element is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    pub fn max_abs_diff(&self, other: &Matrix) -> f32 {
        self.data.iter().zip(&other.data).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_bf16_f16() {
        let v = [1.0f32, -2.5, 0.1, 65504.0];
        for dt in [DType::F16, DType::BF16, DType::F32] {
            let mut bytes = Vec::new();
            encode_into(dt, &v, &mut bytes);
            assert_eq!(bytes.len(), v.len() * dt.size());
            let mut back = Vec::new();
            decode_into(dt, &bytes, &mut back);
            for (a, b) in v.iter().zip(&back) {
                assert!((a - b).abs() <= a.abs() * 8e-3, "{dt}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn matmul_small() {
        let a = Matrix::from_vec(2, 3, vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = Matrix::from_vec(3, 1, vec![1., 0., -1.]).unwrap();
        assert_eq!(a.matmul(&b).unwrap().data, vec![-2.0, -2.0]);
        assert!(a.matmul(&a).is_none());
    }
}

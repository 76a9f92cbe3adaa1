//! FLOAT8 E4M3FN (ONNX `FLOAT8E4M3FN`, torch `float8_e4m3fn`): 1 sign, 4 exponent (bias 7),
//! 3 mantissa bits, no infinities, NaN = `S.1111.111`, largest finite ±448, smallest subnormal
//! 2⁻⁹.
//!
//! [`from_f32`] is the saturating conversion of ONNX `QuantizeLinear(saturate=1)`: round to
//! nearest, ties to even; |x| ≥ 448 (±inf included) → ±448; NaN → NaN with the sign kept.
//! bf16 and f16 inputs are widened to f32 exactly first, so there is one rounding only.
//! Checked bit for bit against torch (`tools/reference/fp8_golden.py`, `tests/fp8.rs`).

use crate::tensor::DType;

/// Largest finite E4M3FN value.
pub const MAX: f32 = 448.0;
/// ONNX `TensorProto.DataType` code of FLOAT8E4M3FN.
pub const ONNX_CODE: i32 = 17;

/// Saturating f32 → E4M3FN, round to nearest even.
pub fn from_f32(x: f32) -> u8 {
    let bits = x.to_bits();
    let sign = ((bits >> 24) & 0x80) as u8;
    if x.is_nan() {
        return sign | 0x7F;
    }
    let a = x.abs();
    if a >= MAX {
        return sign | 0x7E;
    }
    if a < 0.015625 {
        // subnormal range (below 2⁻⁶): value = m · 2⁻⁹; m = 8 is exactly the smallest normal (0x08)
        let m = (a * 512.0).round_ties_even() as u8;
        return sign | m;
    }
    let ab = a.to_bits();
    let mut e = ((ab >> 23) as i32) - 127 + 7;
    let mant = ab & 0x7F_FFFF;
    let mut m3 = mant >> 20;
    let rem = mant & 0xF_FFFF;
    const HALF: u32 = 0x8_0000;
    if rem > HALF || (rem == HALF && m3 & 1 == 1) {
        m3 += 1;
    }
    if m3 == 8 {
        m3 = 0;
        e += 1;
    }
    // a < 448 keeps e ≤ 15 and (e, m3) ≠ (15, 7) (the rounding boundary above 448 is 464)
    sign | ((e as u8) << 3) | m3 as u8
}

/// E4M3FN → f32 (exact).
pub fn to_f32(q: u8) -> f32 {
    let sign = if q & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let e = (q >> 3) & 0xF;
    let m = (q & 7) as f32;
    if e == 0xF && q & 7 == 7 {
        return f32::NAN.copysign(sign);
    }
    if e == 0 {
        return sign * m * (1.0 / 512.0);
    }
    sign * (1.0 + m / 8.0) * (2.0f32).powi(e as i32 - 7)
}

/// Quantizes little-endian `dtype` elements of `bytes`, which start at flat element index
/// `first` of a row-major `[rows, cols]` tensor: `q = from_f32(x / scale[row])` (one scale for
/// every row when `scales.len() == 1`). Appends one byte per element to `out`.
pub fn quantize_into(dtype: DType, bytes: &[u8], first: usize, cols: usize, scales: &[f32], out: &mut Vec<u8>) {
    let mut vals = Vec::with_capacity(bytes.len() / dtype.size());
    crate::tensor::decode_into(dtype, bytes, &mut vals);
    out.reserve(vals.len());
    if scales.len() == 1 {
        let s = scales[0];
        out.extend(vals.iter().map(|v| from_f32(v / s)));
        return;
    }
    let cols = cols.max(1);
    let mut row = first / cols;
    let mut col = first % cols;
    for v in vals {
        out.push(from_f32(v / scales[row]));
        col += 1;
        if col == cols {
            col = 0;
            row += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for q in 0..=255u8 {
            let v = to_f32(q);
            if v.is_nan() {
                assert_eq!(q & 0x7F, 0x7F);
                continue;
            }
            // -0 encodes as 0x80
            assert_eq!(from_f32(v), q, "code {q:#04x} = {v}");
        }
        assert_eq!(to_f32(0x7E), 448.0);
        assert_eq!(to_f32(0x01), 2f32.powi(-9));
        assert_eq!(to_f32(0x08), 2f32.powi(-6));
    }

    #[test]
    fn rounding_and_saturation() {
        assert_eq!(from_f32(1000.0), 0x7E);
        assert_eq!(from_f32(f32::NEG_INFINITY), 0xFE);
        assert_eq!(from_f32(-f32::NAN), 0xFF);
        assert_eq!(from_f32(2f32.powi(-10)), 0x00, "tie to even (0)");
        assert_eq!(from_f32(1.0625), 0x38, "1 + 1/16 ties to 1.0");
        assert_eq!(from_f32(1.1875), 0x3A, "1.1875 ties up to 1.25");
    }
}

//! Weight amax (streamed over the mapped checkpoint bytes) and amax → scale.

use std::path::PathBuf;

use super::{e4m3, Fp8Error};
use crate::checkpoint::TensorRef;

/// Smallest scale ever used (2⁻²⁴): an all-zero row or activation gets this, not 0.
pub const SCALE_FLOOR: f32 = 5.960_464_5e-8;

/// `max(amax / 448, SCALE_FLOOR)`; `None` when `amax` is NaN, infinite or negative.
pub fn scale_from_amax(amax: f32) -> Option<f32> {
    (amax.is_finite() && amax >= 0.0).then(|| (amax / e4m3::MAX).max(SCALE_FLOOR))
}

const CHUNK: usize = 1 << 20;

/// max |w| per row of the `[rows, cols]` tensor `t` (`per_row`), or one value for the whole
/// tensor. Streams over the borrowed bytes in chunks; `release(part)` is called after each
/// part (drops its pages from the mapping). A NaN/Inf is an error naming the tensor, the element
/// and the file (`file_of(part)`: the shard holding the bad part).
pub fn weight_amax(t: &TensorRef<'_>, cols: usize, per_row: bool, file_of: &dyn Fn(&[u8]) -> PathBuf, release: &dyn Fn(&[u8])) -> Result<Vec<f32>, Fp8Error> {
    let cols = cols.max(1);
    let rows = t.numel() / cols;
    let mut amax = vec![0.0f32; if per_row { rows } else { 1 }];
    let esz = t.dtype.size();
    let mut idx = 0usize;
    let mut buf = Vec::with_capacity(CHUNK / esz);
    for part in &t.parts {
        for c in part.chunks(CHUNK - CHUNK % esz) {
            buf.clear();
            crate::tensor::decode_into(t.dtype, c, &mut buf);
            for (k, v) in buf.iter().enumerate() {
                let i = idx + k;
                if !v.is_finite() {
                    return Err(Fp8Error::NonFiniteWeight { path: file_of(part), tensor: t.name.clone(), row: i / cols, col: i % cols, value: *v });
                }
                let slot = if per_row { i / cols } else { 0 };
                let a = v.abs();
                if a > amax[slot] {
                    amax[slot] = a;
                }
            }
            idx += buf.len();
        }
        release(part);
    }
    Ok(amax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    #[test]
    fn zero_row_gets_floor_and_nan_is_named() {
        let vals = [0.0f32, 0.0, 1.5, -4.0];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = TensorRef { name: "w".into(), dtype: DType::F32, shape: vec![2, 2], parts: vec![&bytes[..8], &bytes[8..]] };
        let a = weight_amax(&t, 2, true, &|_| PathBuf::from("f"), &|_| {}).unwrap();
        assert_eq!(a, vec![0.0, 4.0]);
        assert_eq!(scale_from_amax(a[0]), Some(SCALE_FLOOR));
        assert_eq!(scale_from_amax(a[1]), Some(4.0 / 448.0));
        assert_eq!(weight_amax(&t, 2, false, &|_| PathBuf::from("f"), &|_| {}).unwrap(), vec![4.0]);
        assert_eq!(scale_from_amax(f32::NAN), None);
        let bad = [1.0f32, f32::NAN];
        let bytes: Vec<u8> = bad.iter().flat_map(|v| v.to_le_bytes()).collect();
        let t = TensorRef { name: "blk.w".into(), dtype: DType::F32, shape: vec![1, 2], parts: vec![&bytes] };
        let e = weight_amax(&t, 2, true, &|_| PathBuf::from("m.safetensors"), &|_| {}).unwrap_err();
        assert!(matches!(&e, Fp8Error::NonFiniteWeight { tensor, row: 0, col: 1, .. } if tensor == "blk.w"), "{e}");
        assert!(e.to_string().contains("m.safetensors"));
    }
}

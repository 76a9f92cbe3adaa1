//! Shared machinery for the format readers: grouping a file's keys into per-layer
//! (down, up, alpha) triples, and turning one file layer into canonical modules
//! (including the fused-projection split and the final-layer half swap).

use std::collections::BTreeMap;

use super::source::Source;
use crate::lora::{LoraError, LoraFormat, LoraModule};
use crate::tensor::Matrix;

/// Which part of a layer's factors a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Down,
    Up,
    Alpha,
}

/// Factor suffixes shared by the PEFT and BFL/ComfyUI readers: lora_A/lora_B and
/// lora_down/lora_up spellings, plus the per-module alpha.
pub(crate) const LORA_AB_SUFFIXES: &[(&str, Part)] =
    &[(".lora_A.weight", Part::Down), (".lora_B.weight", Part::Up), (".lora_down.weight", Part::Down), (".lora_up.weight", Part::Up), (".alpha", Part::Alpha)];

/// The keys of one file layer (`stem` + suffix).
#[derive(Clone, Debug, Default)]
pub(crate) struct Layer {
    pub down: Option<String>,
    pub up: Option<String>,
    pub alpha: Option<String>,
}

/// Splits `key` into `(stem, part)` by the first matching suffix.
pub(crate) fn split_suffix<'k>(key: &'k str, suffixes: &[(&str, Part)]) -> Option<(&'k str, Part)> {
    suffixes.iter().find_map(|(s, p)| key.strip_suffix(s).filter(|stem| !stem.is_empty()).map(|stem| (stem, *p)))
}

/// Groups keys by stem. A key with none of `suffixes` is [`LoraError::UnknownKey`]; two keys
/// for the same part of one stem (e.g. `lora_A` and `lora_down`) are [`LoraError::Invalid`].
pub(crate) fn group<K: AsRef<str>>(
    src: &Source,
    keys: impl IntoIterator<Item = K>,
    suffixes: &[(&str, Part)],
    format: LoraFormat,
) -> Result<BTreeMap<String, Layer>, LoraError> {
    let mut out: BTreeMap<String, Layer> = BTreeMap::new();
    for key in keys {
        let key = key.as_ref();
        let (stem, part) =
            split_suffix(key, suffixes).ok_or_else(|| LoraError::UnknownKey { path: src.path_buf(), key: key.to_string(), format: format.name() })?;
        let layer = out.entry(stem.to_string()).or_default();
        let slot = match part {
            Part::Down => &mut layer.down,
            Part::Up => &mut layer.up,
            Part::Alpha => &mut layer.alpha,
        };
        if let Some(prev) = slot {
            return Err(LoraError::Invalid {
                path: src.path_buf(),
                key: key.to_string(),
                message: format!("duplicates `{prev}` (both hold the same factor of `{stem}`)"),
            });
        }
        *slot = Some(key.to_string());
    }
    Ok(out)
}

/// The (down, up) factors of one layer, checked to be a pair of matching rank.
pub(crate) fn factors(src: &Source, stem: &str, layer: &Layer, down_name: &str, up_name: &str) -> Result<(Matrix, Matrix), LoraError> {
    let incomplete = |present: &str, missing: &str| LoraError::Incomplete {
        path: src.path_buf(),
        module: stem.to_string(),
        present: format!("`{present}`"),
        missing: missing.to_string(),
    };
    let (down_key, up_key) = match (&layer.down, &layer.up, &layer.alpha) {
        (Some(d), Some(u), _) => (d, u),
        (Some(d), None, _) => return Err(incomplete(d, up_name)),
        (None, Some(u), _) => return Err(incomplete(u, down_name)),
        (None, None, Some(al)) => return Err(incomplete(al, &format!("{down_name} and {up_name}"))),
        (None, None, None) => return Err(incomplete(stem, &format!("{down_name} and {up_name}"))),
    };
    let a = src.matrix(down_key)?;
    let b = src.matrix(up_key)?;
    if b.cols != a.rows {
        return Err(LoraError::Shape {
            path: src.path_buf(),
            tensor: up_key.clone(),
            expected: format!("[out, {}] (the rank of `{down_key}`)", a.rows),
            found: vec![b.rows, b.cols],
        });
    }
    Ok((a, b))
}

/// Where one file layer lands among the canonical modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One module, factors as they are.
    One(String),
    /// `norm_out.linear` from BFL's `final_layer.adaLN_modulation.1`: B's row halves swapped
    /// ((shift, scale) → (scale, shift)); A untouched.
    SwapHalves(String),
    /// A fused projection: B's rows split into `modules` with sizes `[h, h, h]` (qkv) or
    /// `[h, h, h, rest]` (single-block linear1), `h` = the layer's input width.
    Split(Vec<String>),
}

/// Canonical modules being collected for an adapter (transformer or text encoder).
pub(crate) struct Collector<'s, 'a> {
    pub src: &'s Source<'a>,
    pub modules: BTreeMap<String, LoraModule>,
}

impl<'s, 'a> Collector<'s, 'a> {
    pub fn new(src: &'s Source<'a>) -> Self {
        Collector { src, modules: BTreeMap::new() }
    }

    fn put(&mut self, key: &str, name: String, m: LoraModule) -> Result<(), LoraError> {
        if self.modules.contains_key(&name) {
            return Err(LoraError::Invalid {
                path: self.src.path_buf(),
                key: key.to_string(),
                message: format!("targets module `{name}`, which another key of this file already targets"),
            });
        }
        self.modules.insert(name, m);
        Ok(())
    }

    /// Adds one file layer (`key` names it in errors) mapped onto `target`. A scale that is not a
    /// finite number (an alpha such as `1e300` in the metadata overflows `f32`) is refused: it
    /// would turn every slot value it multiplies into infinity or NaN.
    pub fn add(&mut self, key: &str, target: Target, a: Matrix, b: Matrix, scale: f32) -> Result<(), LoraError> {
        if !scale.is_finite() {
            return Err(LoraError::Invalid {
                path: self.src.path_buf(),
                key: key.to_string(),
                message: format!("its scale (alpha / rank) is {scale}, not a finite 32-bit float"),
            });
        }
        match target {
            Target::One(name) => self.put(key, name, LoraModule { a, b, scale }),
            Target::SwapHalves(name) => {
                if !b.rows.is_multiple_of(2) {
                    return Err(self.shape_err(key, "an even number of rows (shift and scale halves)", &b));
                }
                let h = b.rows / 2;
                let b = Matrix::vstack(&[b.rows_slice(h, b.rows), b.rows_slice(0, h)]).expect("equal widths");
                self.put(key, name, LoraModule { a, b, scale })
            }
            Target::Split(names) => {
                let h = a.cols;
                let mut dims = vec![h; 3];
                match names.len() {
                    3 if b.rows == 3 * h => {}
                    4 if b.rows > 3 * h => dims.push(b.rows - 3 * h),
                    3 => return Err(self.shape_err(key, &format!("[3·{h}, r] (fused q, k, v of width {h})"), &b)),
                    _ => return Err(self.shape_err(key, &format!("[3·{h} + mlp, r] (fused q, k, v, mlp of width {h})"), &b)),
                }
                for (name, (a_i, b_i)) in names.into_iter().zip(split_fused(&a, &b, &dims)) {
                    self.put(key, name, LoraModule { a: a_i, b: b_i, scale })?;
                }
                Ok(())
            }
        }
    }

    fn shape_err(&self, key: &str, expected: &str, b: &Matrix) -> LoraError {
        LoraError::Shape { path: self.src.path_buf(), tensor: key.to_string(), expected: expected.to_string(), found: vec![b.rows, b.cols] }
    }
}

/// Splits a fused layer's factors by B's row blocks `dims`.
///
/// Dense (shared-A) factors give each part the full A and its rows of B. A block-diagonal up
/// matrix (rank divisible by the number of parts and every off-diagonal block exactly zero, as
/// written by kohya's `split_qkv` training and by sd-scripts' ai-toolkit conversion) is split
/// into its diagonal blocks with A chunked by rows — diffusers' detection. Both give exactly
/// the same ΔW; the second keeps each part's own rank.
pub(crate) fn split_fused(a: &Matrix, b: &Matrix, dims: &[usize]) -> Vec<(Matrix, Matrix)> {
    let n = dims.len();
    let offsets: Vec<usize> = dims
        .iter()
        .scan(0, |o, d| {
            let s = *o;
            *o += d;
            Some(s)
        })
        .collect();
    let r = a.rows;
    let block_diagonal = r.is_multiple_of(n) && {
        let k = r / n;
        (0..n).all(|j| {
            (offsets[j]..offsets[j] + dims[j]).all(|row| {
                let row = b.row(row);
                (0..n).filter(|c| *c != j).all(|c| row[c * k..(c + 1) * k].iter().all(|v| *v == 0.0))
            })
        })
    };
    (0..n)
        .map(|j| {
            let rows = b.rows_slice(offsets[j], offsets[j] + dims[j]);
            if block_diagonal {
                let k = r / n;
                (a.rows_slice(j * k, (j + 1) * k), rows.cols_slice(j * k, (j + 1) * k))
            } else {
                (a.clone(), rows)
            }
        })
        .collect()
}

/// `alpha / rank` in f64, as kohya, ComfyUI and PEFT compute it.
pub(crate) fn alpha_scale(alpha: f64, rank: usize) -> f32 {
    (alpha / rank as f64) as f32
}

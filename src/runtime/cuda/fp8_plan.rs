//! Host-side plan of an FP8 engine (`build-engine --precision fp8`) on the CUDA backend; no GPU.
//!
//! The engine stores every quantized GEMM ([`crate::flux::quantized_gemms`], recorded in the
//! manifest's `fp8.quantized`) as an E4M3 `<gemm>.weight` `[out, in]` in the data file (uploaded
//! as is, never dequantized), its weight scale `<gemm>.weight_scale` (`[out]` per channel or a
//! scalar per tensor) and its static activation scale `<gemm>.input_scale` (from calibration) as
//! inline initializers in the graph's float dtype. [`Fp8Plan`] reads those scales (as the graph
//! holds them: the weights were quantized with exactly these values) and lays them out in one f32
//! device buffer, per GEMM: `[activation scale, amax scratch, ·, ·]` (16 bytes) then the weight
//! scales padded to 16 bytes. Dynamic activation scaling writes the same activation-scale slot
//! every call, so static and dynamic runs capture the same graph shape.
//!
//! Everything else (biases, modulation, embedders, norms, the final projection, LoRA slots) is in
//! the engine's float dtype, which must be bf16 here: the FP8 GEMMs write bf16
//! ([`super::fp8::Fp8Gemm`]). FP8 attention (`--fp8-attention`) is not run by this backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::fp8::{Fp8Shape, WeightScaling};
use super::CudaError;
use crate::flux::FluxConfig;
use crate::manifest::{Fp8Manifest, WeightScale};
use crate::tensor::DType;

/// f32 values per scale-buffer slot alignment (16 bytes).
const SLOT: usize = 4;

/// A graph's inline initializers decoded to f32: name → (dims, values).
pub type InlineTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// One quantized GEMM.
#[derive(Clone, Debug, PartialEq)]
pub struct Fp8Layer {
    /// Output features (rows of the weight) and input features.
    pub n: usize,
    pub k: usize,
    pub scaling: WeightScaling,
    /// Static activation scale as the engine stores it (the float dtype's rounding of the calibrated one).
    pub input_scale: f32,
    pub weight_scale: Vec<f32>,
    /// f32 index in the scale buffer of the activation scale (the amax scratch is the next one)
    /// and of the first weight scale.
    pub act: usize,
    pub wscale: usize,
}

impl Fp8Layer {
    /// The GEMM shape for `m` rows.
    pub fn shape(&self, m: usize) -> Fp8Shape {
        Fp8Shape::new(m, self.n, self.k, self.scaling)
    }
}

/// Every quantized GEMM of an engine and the host image of its scale buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Fp8Plan {
    pub layers: HashMap<String, Fp8Layer>,
    /// Host image of the device scale buffer.
    pub scales: Vec<f32>,
    /// Largest K (bytes per row of the quantized-activation buffer).
    pub max_k: usize,
}

fn engine_err(path: &Path, message: impl Into<String>) -> CudaError {
    CudaError::Engine { path: path.to_path_buf(), message: message.into() }
}

/// The engine settings this backend runs, checked before anything is read: bf16 float parts, no
/// attention Q/DQ.
pub fn check_settings(fp8: &Fp8Manifest, path: &Path) -> Result<(), CudaError> {
    if fp8.float_dtype != DType::BF16 {
        return Err(engine_err(
            path,
            format!(
                "FP8 engine with {} float parts (--fp8-float): the cuda backend runs FP8 engines with bf16 float parts (build-engine --precision fp8 without --fp8-float)",
                fp8.float_dtype
            ),
        ));
    }
    if fp8.attention {
        return Err(engine_err(path, "FP8 attention Q/DQ (--fp8-attention) is not supported by the cuda backend; export without --fp8-attention"));
    }
    Ok(())
}

/// Names of the engine tensors stored as E4M3: `<gemm>.weight` of every quantized GEMM.
pub fn e4m3_weights(fp8: &Fp8Manifest) -> HashSet<String> {
    fp8.quantized.iter().map(|g| format!("{g}.weight")).collect()
}

impl Fp8Plan {
    /// Plans the quantized GEMMs of `fp8` for model `cfg`. `inline` holds the graph's inline
    /// initializers decoded to f32 (name → (dims, values)); `shapes` the weight shapes
    /// (`<gemm>.weight` → `[n, k]`, checked against the config by the caller).
    pub fn new(cfg: &FluxConfig, fp8: &Fp8Manifest, inline: &InlineTensors, shapes: &HashMap<String, Vec<usize>>, path: &Path) -> Result<Self, CudaError> {
        check_settings(fp8, path)?;
        let known: HashSet<String> = crate::flux::quantized_gemms(cfg).into_iter().collect();
        let scaling = match fp8.weight_scale {
            WeightScale::Channel => WeightScaling::PerChannel,
            WeightScale::Tensor => WeightScaling::PerTensor,
        };
        let mut layers = HashMap::new();
        let mut scales = Vec::new();
        let mut max_k = 0;
        for g in &fp8.quantized {
            if !known.contains(g) {
                return Err(engine_err(path, format!("manifest fp8.quantized names `{g}`, which is not a quantizable GEMM of this model")));
            }
            let wname = format!("{g}.weight");
            let (n, k) = match shapes.get(&wname).map(Vec::as_slice) {
                Some([n, k]) => (*n, *k),
                _ => return Err(engine_err(path, format!("tensor `{wname}` is missing from the engine or not 2-D"))),
            };
            super::fp8::validate(&Fp8Shape::new(1, n, k, scaling))
                .map_err(|e| engine_err(path, format!("`{g}`: {e} (the FP8 GEMMs need in_features % 16 == 0, out_features % 8 == 0)")))?;
            let get = |name: &str| inline.get(name).ok_or_else(|| engine_err(path, format!("scale `{name}` is missing from the graph")));
            let (sdims, ws) = get(&format!("{wname}_scale"))?;
            let want: &[usize] = if scaling == WeightScaling::PerChannel { &[n] } else { &[] };
            if sdims.as_slice() != want || ws.len() != want.iter().product::<usize>() {
                return Err(engine_err(path, format!("scale `{wname}_scale` has shape {sdims:?}, the {} weight scale needs {want:?}", fp8.weight_scale)));
            }
            let (idims, is) = get(&format!("{g}.input_scale"))?;
            if !idims.is_empty() || is.len() != 1 {
                return Err(engine_err(path, format!("scale `{g}.input_scale` has shape {idims:?}, needs a scalar")));
            }
            if let Some(bad) = ws.iter().chain(is).find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(engine_err(path, format!("`{g}`: scale {bad} (scales are finite and positive)")));
            }
            let act = scales.len();
            scales.extend([is[0], 0.0, 0.0, 0.0]);
            let wscale = scales.len();
            scales.extend_from_slice(ws);
            scales.resize(scales.len().div_ceil(SLOT) * SLOT, 0.0);
            max_k = max_k.max(k);
            layers.insert(g.clone(), Fp8Layer { n, k, scaling, input_scale: is[0], weight_scale: ws.clone(), act, wscale });
        }
        Ok(Fp8Plan { layers, scales, max_k })
    }

    /// Scale-buffer bytes.
    pub fn scale_bytes(&self) -> usize {
        self.scales.len().max(SLOT) * 4
    }
}

/// Decodes an inline initializer's raw data (f32 / f16 / bf16) to f32; `None` for other types.
pub fn decode_inline(data_type: i32, raw: &[u8]) -> Option<Vec<f32>> {
    let dt = match data_type {
        1 => DType::F32,
        10 => DType::F16,
        16 => DType::BF16,
        _ => return None,
    };
    let mut out = Vec::new();
    crate::tensor::decode_into(dt, raw, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux::Variant;

    fn manifest(cfg: &FluxConfig, mode: WeightScale) -> Fp8Manifest {
        Fp8Manifest {
            format: "qdq".into(),
            weight_scale: mode,
            float_dtype: DType::BF16,
            attention: false,
            quantized: crate::flux::quantized_gemms(cfg),
            scale_floor: 2f32.powi(-24), // the exporter's floor
            calibration: None,
        }
    }

    /// The inline scales and weight shapes an export of `cfg` holds.
    fn engine(cfg: &FluxConfig, mode: WeightScale) -> (InlineTensors, HashMap<String, Vec<usize>>) {
        let shapes: HashMap<String, Vec<usize>> = super::super::weights::required(cfg).into_iter().collect();
        let mut inline = BTreeMap::new();
        for (i, g) in crate::flux::quantized_gemms(cfg).iter().enumerate() {
            let n = shapes[&format!("{g}.weight")][0];
            let ws = match mode {
                WeightScale::Channel => (vec![n], (0..n).map(|r| 0.01 + r as f32 * 1e-4).collect()),
                WeightScale::Tensor => (vec![], vec![0.02]),
            };
            inline.insert(format!("{g}.weight_scale"), ws);
            inline.insert(format!("{g}.input_scale"), (vec![], vec![0.5 + i as f32]));
        }
        (inline, shapes)
    }

    #[test]
    fn flux_dev_plan_has_every_quantized_gemm_with_its_scales() {
        let cfg = FluxConfig::flux1(Variant::Dev);
        for mode in [WeightScale::Channel, WeightScale::Tensor] {
            let (inline, shapes) = engine(&cfg, mode);
            let p = Fp8Plan::new(&cfg, &manifest(&cfg, mode), &inline, &shapes, Path::new("e")).unwrap();
            // 8 per double block, 2 per single block
            assert_eq!(p.layers.len(), 8 * 19 + 2 * 38);
            let (h, m) = (cfg.hidden_size, cfg.mlp_hidden);
            let l = &p.layers["single_transformer_blocks.0.linear1"];
            assert_eq!((l.n, l.k), (3 * h + m, h));
            let l = &p.layers["single_transformer_blocks.37.proj_out"];
            assert_eq!((l.n, l.k), (h, h + m));
            assert_eq!(p.max_k, h + m);
            let l = &p.layers["transformer_blocks.3.attn.qkv"];
            assert_eq!((l.n, l.k), (3 * h, h));
            assert!(!p.layers.contains_key("transformer_blocks.0.norm1.linear"), "modulation stays bf16");
            assert!(!p.layers.contains_key("proj_out") && !p.layers.contains_key("x_embedder"));
            // slots: 16-byte aligned, disjoint, holding the engine's values
            let mut used = vec![false; p.scales.len()];
            for (g, l) in &p.layers {
                assert_eq!(l.act % 4, 0);
                assert_eq!(l.wscale % 4, 0);
                assert_eq!(p.scales[l.act], inline[&format!("{g}.input_scale")].1[0]);
                let nw = if mode == WeightScale::Channel { l.n } else { 1 };
                assert_eq!(l.weight_scale.len(), nw);
                assert_eq!(&p.scales[l.wscale..l.wscale + nw], &l.weight_scale[..]);
                assert_eq!(l.shape(7).weight, if mode == WeightScale::Channel { WeightScaling::PerChannel } else { WeightScaling::PerTensor });
                for i in (l.act..l.act + 2).chain(l.wscale..l.wscale + nw) {
                    assert!(!used[i], "{g}: slot {i} shared");
                    used[i] = true;
                }
            }
            assert!(p.scale_bytes() >= p.scales.len() * 4);
        }
    }

    #[test]
    fn unsupported_engines_and_bad_scales_are_named() {
        let cfg = FluxConfig::flux1(Variant::Dev);
        let (inline, shapes) = engine(&cfg, WeightScale::Channel);
        let path = Path::new("eng");
        let err = |m: Fp8Manifest, inline: &InlineTensors| Fp8Plan::new(&cfg, &m, inline, &shapes, path).unwrap_err().to_string();
        let e = err(Fp8Manifest { float_dtype: DType::F32, ..manifest(&cfg, WeightScale::Channel) }, &inline);
        assert!(e.contains("bf16 float parts") && e.contains("f32"), "{e}");
        let e = err(Fp8Manifest { attention: true, ..manifest(&cfg, WeightScale::Channel) }, &inline);
        assert!(e.contains("--fp8-attention"), "{e}");
        // tensor-mode manifest over per-channel scales
        let e = err(manifest(&cfg, WeightScale::Tensor), &inline);
        assert!(e.contains("transformer_blocks.0.attn.qkv.weight_scale") && e.contains("[]"), "{e}");
        let mut bad = inline.clone();
        bad.remove("single_transformer_blocks.5.proj_out.input_scale");
        let e = err(manifest(&cfg, WeightScale::Channel), &bad);
        assert!(e.contains("single_transformer_blocks.5.proj_out.input_scale") && e.contains("missing"), "{e}");
        let mut bad = inline.clone();
        bad.get_mut("transformer_blocks.1.ff.net.2.input_scale").unwrap().1[0] = 0.0;
        let e = err(manifest(&cfg, WeightScale::Channel), &bad);
        assert!(e.contains("transformer_blocks.1.ff.net.2") && e.contains("positive"), "{e}");
        let mut m = manifest(&cfg, WeightScale::Channel);
        m.quantized.push("norm_out.linear".into());
        let e = err(m, &inline);
        assert!(e.contains("norm_out.linear") && e.contains("not a quantizable"), "{e}");
    }

    #[test]
    fn e4m3_tensors_are_the_quantized_weights() {
        let cfg = FluxConfig::flux1(Variant::Schnell);
        let w = e4m3_weights(&manifest(&cfg, WeightScale::Channel));
        assert!(w.contains("transformer_blocks.0.attn.qkv.weight") && w.contains("single_transformer_blocks.37.linear1.weight"));
        assert!(!w.contains("transformer_blocks.0.attn.qkv.bias"), "biases stay bf16");
        assert_eq!(w.len(), 8 * 19 + 2 * 38);
    }

    #[test]
    fn inline_scales_decode_from_the_float_dtypes() {
        assert_eq!(decode_inline(16, &half::bf16::from_f32(0.015625).to_le_bytes()), Some(vec![0.015625]));
        assert_eq!(decode_inline(1, &2.5f32.to_le_bytes()), Some(vec![2.5]));
        assert_eq!(decode_inline(17, &[0]), None);
    }
}

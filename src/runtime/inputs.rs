//! Transformer inputs and outputs on the host, independent of the backend.
//!
//! The exported graph's contract (see `manifest.json` `inputs`): `hidden_states` [B,S_img,C_in],
//! `encoder_hidden_states` [B,S_txt,ctx], `pooled_projections` [B,pooled], `timestep` [B] (σ),
//! `guidance` [B] (guidance-distilled variants only), `rope_cos`/`rope_sin`
//! [S_txt+S_img, head_dim/2]; output `sample` [B,S_img,C_out], all f32.

use std::collections::BTreeMap;
use std::path::Path;

use crate::manifest::TensorSpec;
use crate::tensor::DType;

use super::RuntimeError;

pub const HIDDEN_STATES: &str = "hidden_states";
pub const ENCODER_HIDDEN_STATES: &str = "encoder_hidden_states";
pub const POOLED_PROJECTIONS: &str = "pooled_projections";
pub const TIMESTEP: &str = "timestep";
pub const GUIDANCE: &str = "guidance";
pub const ROPE_COS: &str = "rope_cos";
pub const ROPE_SIN: &str = "rope_sin";
pub const IMG_IDS: &str = "img_ids";
pub const TXT_IDS: &str = "txt_ids";
/// Name of the transformer's output.
pub const SAMPLE: &str = "sample";

/// A dense row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl HostTensor {
    /// `None` when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(HostTensor { shape, data })
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
    /// Largest absolute element-wise difference; `None` when the shapes differ.
    pub fn max_abs_diff(&self, other: &HostTensor) -> Option<f32> {
        (self.shape == other.shape).then(|| self.data.iter().zip(&other.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())))
    }
    /// True when both tensors have the same shape and bit-identical elements.
    pub fn bit_eq(&self, other: &HostTensor) -> bool {
        self.shape == other.shape && self.data.iter().zip(&other.data).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// One call's inputs to the transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct FluxInputs {
    pub hidden_states: HostTensor,
    pub encoder_hidden_states: HostTensor,
    pub pooled_projections: HostTensor,
    pub timestep: HostTensor,
    /// Present for guidance-distilled models (dev), absent for schnell.
    pub guidance: Option<HostTensor>,
    pub rope_cos: HostTensor,
    pub rope_sin: HostTensor,
}

fn input_err(tensor: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Input { tensor: tensor.to_string(), message: message.into() }
}

fn expect_rank(name: &str, t: &HostTensor, rank: usize) -> Result<(), RuntimeError> {
    if t.shape.len() != rank {
        return Err(input_err(name, format!("has shape {:?}, expected rank {rank}", t.shape)));
    }
    Ok(())
}

impl FluxInputs {
    /// Inputs with RoPE tables computed from FLUX position ids (`txt_ids` normally all zeros,
    /// `img_ids` from [`crate::flux::img_ids`]); checks the contract's relations.
    #[allow(clippy::too_many_arguments)]
    pub fn with_ids(
        config: &crate::flux::FluxConfig,
        hidden_states: HostTensor,
        encoder_hidden_states: HostTensor,
        pooled_projections: HostTensor,
        timestep: HostTensor,
        guidance: Option<HostTensor>,
        txt_ids: &[[f32; 3]],
        img_ids: &[[f32; 3]],
    ) -> Result<Self, RuntimeError> {
        let (cos, sin) = crate::flux::rope_tables(config, txt_ids, img_ids);
        let shape = vec![txt_ids.len() + img_ids.len(), config.axes_dim.iter().sum::<usize>() / 2];
        let bad = || input_err(ROPE_COS, format!("RoPE tables do not have shape {shape:?}"));
        let inputs = FluxInputs {
            hidden_states,
            encoder_hidden_states,
            pooled_projections,
            timestep,
            guidance,
            rope_cos: HostTensor::new(shape.clone(), cos).ok_or_else(bad)?,
            rope_sin: HostTensor::new(shape.clone(), sin).ok_or_else(bad)?,
        };
        inputs.check()?;
        Ok(inputs)
    }

    /// A request's constants ([`crate::runtime::Transformer::bind`]) as inputs: RoPE tables from
    /// its ids, guidance repeated per sample, and zero `hidden_states` / `timestep` of the
    /// request's shape (placeholders, so [`FluxInputs::validate`] checks the whole request once).
    pub fn for_request(config: &crate::flux::FluxConfig, r: &crate::runtime::RequestInputs<'_>) -> Result<Self, RuntimeError> {
        let (b, s) = (r.batch, r.image_seq_len);
        let t = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
            let n = shape.iter().product::<usize>();
            let found = data.len();
            HostTensor::new(shape, data).ok_or_else(|| input_err(name, format!("{found} values, the request's shape needs {n}")))
        };
        if r.txt_ids.len() != r.text_len {
            return Err(input_err(TXT_IDS, format!("{} ids for {} text tokens", r.txt_ids.len(), r.text_len)));
        }
        if r.img_ids.len() != s {
            return Err(input_err(IMG_IDS, format!("{} ids for {s} image tokens", r.img_ids.len())));
        }
        if b == 0 || r.pooled_projections.len() % b != 0 {
            return Err(input_err(POOLED_PROJECTIONS, format!("{} values for batch {b}", r.pooled_projections.len())));
        }
        FluxInputs::with_ids(
            config,
            t(HIDDEN_STATES, vec![b, s, config.in_channels], vec![0.0; b * s * config.in_channels])?,
            t(ENCODER_HIDDEN_STATES, vec![b, r.text_len, config.context_dim], r.encoder_hidden_states.to_vec())?,
            t(POOLED_PROJECTIONS, vec![b, r.pooled_projections.len() / b], r.pooled_projections.to_vec())?,
            t(TIMESTEP, vec![b], vec![0.0; b])?,
            r.guidance.map(|g| t(GUIDANCE, vec![b], vec![g; b])).transpose()?,
            r.txt_ids,
            r.img_ids,
        )
    }

    /// Every present input under its graph name, in contract order.
    pub fn named(&self) -> Vec<(&'static str, &HostTensor)> {
        let mut v = vec![
            (HIDDEN_STATES, &self.hidden_states),
            (ENCODER_HIDDEN_STATES, &self.encoder_hidden_states),
            (POOLED_PROJECTIONS, &self.pooled_projections),
            (TIMESTEP, &self.timestep),
        ];
        if let Some(g) = &self.guidance {
            v.push((GUIDANCE, g));
        }
        v.push((ROPE_COS, &self.rope_cos));
        v.push((ROPE_SIN, &self.rope_sin));
        v
    }

    pub fn batch(&self) -> usize {
        self.hidden_states.shape.first().copied().unwrap_or(0)
    }

    /// Checks the contract's own relations: ranks, one batch size, rope rows = S_txt + S_img.
    pub fn check(&self) -> Result<(), RuntimeError> {
        expect_rank(HIDDEN_STATES, &self.hidden_states, 3)?;
        expect_rank(ENCODER_HIDDEN_STATES, &self.encoder_hidden_states, 3)?;
        expect_rank(POOLED_PROJECTIONS, &self.pooled_projections, 2)?;
        expect_rank(TIMESTEP, &self.timestep, 1)?;
        expect_rank(ROPE_COS, &self.rope_cos, 2)?;
        expect_rank(ROPE_SIN, &self.rope_sin, 2)?;
        if let Some(g) = &self.guidance {
            expect_rank(GUIDANCE, g, 1)?;
        }
        let b = self.batch();
        for (name, t) in self.named() {
            if name != ROPE_COS && name != ROPE_SIN && t.shape[0] != b {
                return Err(input_err(name, format!("has batch {} but hidden_states has batch {b}", t.shape[0])));
            }
        }
        let seq = self.encoder_hidden_states.shape[1] + self.hidden_states.shape[1];
        if self.rope_cos.shape[0] != seq {
            return Err(input_err(ROPE_COS, format!("has {} rows, expected S_txt + S_img = {seq}", self.rope_cos.shape[0])));
        }
        if self.rope_sin.shape != self.rope_cos.shape {
            return Err(input_err(ROPE_SIN, format!("has shape {:?}, rope_cos has {:?}", self.rope_sin.shape, self.rope_cos.shape)));
        }
        Ok(())
    }

    /// Checks these inputs against an engine's input specs: the same set of names, f32, the
    /// specs' fixed dimensions, and each named dynamic dimension one size across all inputs.
    pub fn validate(&self, specs: &[TensorSpec]) -> Result<(), RuntimeError> {
        self.check()?;
        let named = self.named();
        for (name, _) in &named {
            if !specs.iter().any(|s| s.name == *name) {
                let why = if *name == GUIDANCE { "this engine takes no guidance (timestep-distilled model)" } else { "this engine has no such input" };
                return Err(input_err(name, why));
            }
        }
        let mut dims: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for spec in specs {
            let t =
                named.iter().find(|(n, _)| *n == spec.name).map(|(_, t)| *t).ok_or_else(|| input_err(&spec.name, "required by this engine but not given"))?;
            if spec.dtype != DType::F32 {
                return Err(input_err(&spec.name, format!("engine expects {}, flux-trt feeds f32", spec.dtype)));
            }
            if spec.shape.len() != t.shape.len() {
                return Err(input_err(&spec.name, format!("has shape {:?}, engine expects rank {}", t.shape, spec.shape.len())));
            }
            for (i, (want, got)) in spec.shape.iter().zip(&t.shape).enumerate() {
                match want {
                    Some(w) if w != got => {
                        return Err(input_err(&spec.name, format!("dimension {i} is {got}, engine expects {w} (shape {:?})", t.shape)));
                    }
                    Some(_) => {}
                    None => {
                        if let Some(Some(dim)) = spec.dim_names.get(i) {
                            match dims.get(dim.as_str()) {
                                Some((v, other)) if v != got => {
                                    return Err(input_err(&spec.name, format!("dimension `{dim}` is {got}, but {v} in `{other}`")));
                                }
                                Some(_) => {}
                                None => {
                                    dims.insert(dim.as_str(), (*got, spec.name.as_str()));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads inputs from a safetensors file (f32, f16 or bf16 tensors under the graph names).
    /// RoPE tables are taken from `rope_cos`/`rope_sin` when the file has them, otherwise
    /// computed from `txt_ids`/`img_ids` with `config`. Other tensors in the file (e.g. golden
    /// outputs) are not inputs and are left alone.
    pub fn from_safetensors(path: &Path, config: &crate::flux::FluxConfig) -> Result<Self, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|e| RuntimeError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("not a valid safetensors file: {e}") })?;
        let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        let get = |name: &str| -> Result<Option<HostTensor>, RuntimeError> {
            if !names.iter().any(|n| n == name) {
                return Ok(None);
            }
            let view = st.tensor(name).map_err(|e| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("tensor `{name}`: {e}") })?;
            decode_view(path, name, &view).map(Some)
        };
        let need = |name: &str| -> Result<HostTensor, RuntimeError> {
            get(name)?.ok_or_else(|| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("has no tensor `{name}`") })
        };
        let (rope_cos, rope_sin) = match (get(ROPE_COS)?, get(ROPE_SIN)?) {
            (Some(c), Some(s)) => (c, s),
            (None, None) => {
                let txt = need(TXT_IDS)?;
                let img = need(IMG_IDS)?;
                super::rope::tables(config, &txt, &img).map_err(|message| RuntimeError::InputFile { path: path.to_path_buf(), message })?
            }
            _ => {
                return Err(RuntimeError::InputFile { path: path.to_path_buf(), message: "has only one of rope_cos / rope_sin".into() });
            }
        };
        let inputs = FluxInputs {
            hidden_states: need(HIDDEN_STATES)?,
            encoder_hidden_states: need(ENCODER_HIDDEN_STATES)?,
            pooled_projections: need(POOLED_PROJECTIONS)?,
            timestep: need(TIMESTEP)?,
            guidance: get(GUIDANCE)?,
            rope_cos,
            rope_sin,
        };
        inputs.check().map_err(|e| RuntimeError::InputFile { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(inputs)
    }
}

/// Decodes one safetensors tensor to f32 (f32, f16, bf16; f64 and integer ids are converted).
pub(crate) fn decode_view(path: &Path, name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<HostTensor, RuntimeError> {
    use safetensors::Dtype;
    let shape = view.shape().to_vec();
    let raw = view.data();
    let mut data = Vec::with_capacity(shape.iter().product());
    match view.dtype() {
        d @ (Dtype::F32 | Dtype::F16 | Dtype::BF16) => {
            let dt = DType::from_safetensors(d)
                .ok_or_else(|| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("tensor `{name}`: dtype {d:?}") })?;
            crate::tensor::decode_into(dt, raw, &mut data);
        }
        Dtype::F64 => data.extend(raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)),
        Dtype::I64 => data.extend(raw.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)),
        Dtype::I32 => data.extend(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)),
        other => {
            return Err(RuntimeError::InputFile { path: path.to_path_buf(), message: format!("tensor `{name}` has dtype {other:?}; inputs must be float") });
        }
    }
    HostTensor::new(shape, data)
        .ok_or_else(|| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("tensor `{name}`: byte length does not match its shape") })
}

/// Writes `tensors` (f32) to a safetensors file atomically.
pub fn save_safetensors(path: &Path, tensors: &[(&str, &HostTensor)]) -> Result<(), RuntimeError> {
    let mut bufs = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let mut bytes = Vec::with_capacity(t.data.len() * 4);
        crate::tensor::encode_into(DType::F32, &t.data, &mut bytes);
        bufs.push((name.to_string(), t.shape.clone(), bytes));
    }
    let views = bufs
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("tensor `{n}`: {e}") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::tensor::serialize(views, None)
        .map_err(|e| RuntimeError::InputFile { path: path.to_path_buf(), message: format!("cannot serialize: {e}") })?;
    Ok(crate::util::write_atomic(path, &bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> HostTensor {
        let n = shape.iter().product::<usize>();
        HostTensor::new(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
    }

    fn inputs(b: usize, img: usize, txt: usize) -> FluxInputs {
        FluxInputs {
            hidden_states: t(&[b, img, 4]),
            encoder_hidden_states: t(&[b, txt, 6]),
            pooled_projections: t(&[b, 5]),
            timestep: t(&[b]),
            guidance: Some(t(&[b])),
            rope_cos: t(&[img + txt, 2]),
            rope_sin: t(&[img + txt, 2]),
        }
    }

    fn spec(name: &str, dims: &[(Option<usize>, Option<&str>)]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: dims.iter().map(|d| d.0).collect(),
            dim_names: dims.iter().map(|d| d.1.map(str::to_string)).collect(),
        }
    }

    fn specs(guidance: bool) -> Vec<TensorSpec> {
        let (b, img, txt, seq) = ((None, Some("batch")), (None, Some("img_seq")), (None, Some("txt_seq")), (None, Some("joint_seq")));
        let mut v = vec![
            spec(HIDDEN_STATES, &[b, img, (Some(4), None)]),
            spec(ENCODER_HIDDEN_STATES, &[b, txt, (Some(6), None)]),
            spec(POOLED_PROJECTIONS, &[b, (Some(5), None)]),
            spec(TIMESTEP, &[b]),
            spec(ROPE_COS, &[seq, (Some(2), None)]),
            spec(ROPE_SIN, &[seq, (Some(2), None)]),
        ];
        if guidance {
            v.push(spec(GUIDANCE, &[b]));
        }
        v
    }

    fn tensor_of(r: Result<(), RuntimeError>) -> String {
        match r {
            Err(RuntimeError::Input { tensor, .. }) => tensor,
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn validate_against_specs() {
        inputs(2, 3, 2).validate(&specs(true)).unwrap();
        assert_eq!(tensor_of(inputs(1, 3, 2).validate(&specs(false))), GUIDANCE);
        let mut no_g = inputs(1, 3, 2);
        no_g.guidance = None;
        no_g.validate(&specs(false)).unwrap();
        assert_eq!(tensor_of(no_g.validate(&specs(true))), GUIDANCE);
        let mut wide = inputs(1, 3, 2);
        wide.hidden_states = t(&[1, 3, 5]);
        assert_eq!(tensor_of(wide.validate(&specs(true))), HIDDEN_STATES);
        let mut batch = inputs(2, 3, 2);
        batch.timestep = t(&[1]);
        assert_eq!(tensor_of(batch.validate(&specs(true))), TIMESTEP);
        let mut rope = inputs(1, 3, 2);
        rope.rope_sin = t(&[4, 2]);
        assert!(rope.check().is_err());
        let mut scalar = inputs(1, 3, 2);
        scalar.guidance = Some(t(&[]));
        assert_eq!(tensor_of(scalar.check()), GUIDANCE);
    }

    #[test]
    fn with_ids_builds_rope_tables() {
        let mut c = crate::flux::FluxConfig::flux1(crate::flux::Variant::Dev);
        c.axes_dim = [2, 2, 4];
        let img = crate::flux::img_ids(1, 3);
        let txt = vec![[0.0f32; 3]; 2];
        let x = inputs(1, 3, 2);
        let y = FluxInputs::with_ids(&c, x.hidden_states, x.encoder_hidden_states, x.pooled_projections, x.timestep, x.guidance, &txt, &img).unwrap();
        assert_eq!(y.rope_cos.shape(), &[5, 4]);
        // Text rows have position 0: cos 1, sin 0.
        assert!(y.rope_cos.data()[..8].iter().all(|v| *v == 1.0) && y.rope_sin.data()[..8].iter().all(|v| *v == 0.0));
    }
}

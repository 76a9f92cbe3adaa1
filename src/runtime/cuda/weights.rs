//! The engine folder's weights, as the exporter wrote them: `model.onnx`'s external initializers
//! (name, dtype, shape, offset and length in `model.onnx.data`), checked against the model
//! config, and uploaded as one device copy of the data file (a weight's address is the upload's
//! base + its offset; no per-tensor host work). FP8 engines: the quantized GEMMs' weights are
//! E4M3 in the same file (uploaded as stored), their scales inline in the graph
//! ([`super::fp8_plan::Fp8Plan`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use onnx_protobuf::{tensor_proto::DataLocation, ModelProto};
use protobuf::Message;

use super::device::{DeviceBuffer, Gpu};
use super::fp8_plan::{decode_inline, e4m3_weights, Fp8Plan};
use super::CudaError;
use crate::flux::FluxConfig;
use crate::manifest::{Manifest, Precision};
use crate::tensor::DType;

/// How a tensor is stored in the data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Float(DType),
    /// FLOAT8E4M3FN (the quantized GEMMs of an FP8 engine), one byte per element.
    E4m3,
}

impl Stored {
    fn size(self) -> usize {
        match self {
            Stored::Float(d) => d.size(),
            Stored::E4m3 => 1,
        }
    }
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::Float(d) => write!(f, "{d}"),
            Stored::E4m3 => f.write_str("float8e4m3fn"),
        }
    }
}

/// One external initializer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightEntry {
    pub stored: Stored,
    pub shape: Vec<usize>,
    pub offset: u64,
    pub bytes: u64,
}

/// Every external initializer of an engine folder, validated.
#[derive(Clone, Debug)]
pub struct WeightMap {
    pub dir: PathBuf,
    pub data_path: PathBuf,
    pub data_len: u64,
    /// Float dtype of everything not quantized (and of the computation).
    pub dtype: DType,
    entries: HashMap<String, WeightEntry>,
    /// FP8 engines: the quantized GEMMs and their scales.
    pub fp8: Option<Fp8Plan>,
    /// Tensors stored as E4M3 (empty unless FP8).
    e4m3: HashSet<String>,
}

fn engine_err(path: &Path, message: impl Into<String>) -> CudaError {
    CudaError::Engine { path: path.to_path_buf(), message: message.into() }
}

/// Every tensor the forward pass reads, with its shape: the Linear weights and biases (the
/// fused groups as the exporter stores them, `<group>.weight`), the QK norm scales.
pub fn required(cfg: &FluxConfig) -> Vec<(String, Vec<usize>)> {
    let groups = cfg.fused_groups();
    let mut fused_members = std::collections::HashSet::new();
    let mut v = Vec::new();
    for g in &groups {
        let mods: Vec<_> = g.members.iter().filter_map(|m| cfg.linear_module(m)).collect();
        let out: usize = mods.iter().map(|m| m.out_features).sum();
        let inf = mods.first().map(|m| m.in_features).unwrap_or(0);
        v.push((format!("{}.weight", g.name), vec![out, inf]));
        v.push((format!("{}.bias", g.name), vec![out]));
        fused_members.extend(g.members.iter().cloned());
    }
    for m in cfg.linear_modules() {
        if !fused_members.contains(&m.name) {
            v.push((format!("{}.weight", m.name), vec![m.out_features, m.in_features]));
            v.push((format!("{}.bias", m.name), vec![m.out_features]));
        }
    }
    for n in cfg.norm_params() {
        v.push((n, vec![cfg.head_dim]));
    }
    v
}

impl WeightMap {
    /// Reads `dir/model.onnx`'s initializer table and checks it against `manifest` (every
    /// required tensor present, in the precision's dtype (E4M3 for an FP8 engine's quantized
    /// GEMMs), with the config's shape, inside the data file; FP8: every scale).
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<Self, CudaError> {
        let fp8 = match (manifest.precision, &manifest.fp8) {
            (Precision::Fp8, None) => return Err(engine_err(dir, "precision fp8 without the manifest's `fp8` section")),
            (Precision::Fp8, Some(f)) => {
                super::fp8_plan::check_settings(f, dir)?;
                Some(f)
            }
            _ => None,
        };
        let dtype = manifest.precision.float_dtype();
        let e4m3 = fp8.map(e4m3_weights).unwrap_or_default();
        let model_path = dir.join(&manifest.onnx.file);
        let data_path = dir.join(&manifest.onnx.data_file);
        let bytes = std::fs::read(&model_path).map_err(|source| CudaError::Io { path: model_path.clone(), source })?;
        let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| engine_err(&model_path, format!("not an ONNX model: {e}")))?;
        let data_len = std::fs::metadata(&data_path).map_err(|source| CudaError::Io { path: data_path.clone(), source })?.len();
        let mut entries = HashMap::new();
        let mut inline = BTreeMap::new();
        for t in &model.graph.initializer {
            if t.data_location.enum_value_or_default() != DataLocation::EXTERNAL {
                if fp8.is_some() && t.name.ends_with("_scale") {
                    let v = decode_inline(t.data_type, &t.raw_data)
                        .ok_or_else(|| engine_err(&model_path, format!("scale `{}` has ONNX type {}; expected f32/f16/bf16 raw data", t.name, t.data_type)))?;
                    inline.insert(t.name.clone(), (t.dims.iter().map(|d| *d as usize).collect::<Vec<_>>(), v));
                }
                continue;
            }
            let field = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
            let num = |k: &str| -> Result<u64, CudaError> {
                field(k)
                    .ok_or_else(|| engine_err(&model_path, format!("initializer `{}` has no external `{k}`", t.name)))?
                    .parse()
                    .map_err(|_| engine_err(&model_path, format!("initializer `{}`: bad `{k}`", t.name)))
            };
            let location = field("location").unwrap_or_default();
            if location != manifest.onnx.data_file {
                return Err(engine_err(&model_path, format!("initializer `{}` lives in `{location}`, not in {}", t.name, manifest.onnx.data_file)));
            }
            let dt = match t.data_type {
                1 => Stored::Float(DType::F32),
                10 => Stored::Float(DType::F16),
                16 => Stored::Float(DType::BF16),
                17 => Stored::E4m3,
                other => {
                    return Err(engine_err(
                        &model_path,
                        format!("initializer `{}` has ONNX type {other}; the cuda backend reads f32/f16/bf16/float8e4m3fn", t.name),
                    ))
                }
            };
            let shape: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
            let (offset, len) = (num("offset")?, num("length")?);
            let want = shape.iter().product::<usize>() as u64 * dt.size() as u64;
            if len != want || offset.checked_add(len).is_none_or(|end| end > data_len) {
                return Err(engine_err(
                    &data_path,
                    format!("initializer `{}`: {len} bytes at {offset} (expected {want} bytes inside the {data_len}-byte file)", t.name),
                ));
            }
            entries.insert(t.name.clone(), WeightEntry { stored: dt, shape, offset, bytes: len });
        }
        let mut map = WeightMap { dir: dir.to_path_buf(), data_path, data_len, dtype, entries, fp8: None, e4m3 };
        map.check(&manifest.model)?;
        if let Some(f) = fp8 {
            let shapes: HashMap<String, Vec<usize>> = map.e4m3.iter().filter_map(|n| map.entries.get(n).map(|e| (n.clone(), e.shape.clone()))).collect();
            map.fp8 = Some(Fp8Plan::new(&manifest.model, f, &inline, &shapes, &model_path)?);
        }
        Ok(map)
    }

    fn check(&self, cfg: &FluxConfig) -> Result<(), CudaError> {
        for (name, shape) in required(cfg) {
            let e = self.entries.get(&name).ok_or_else(|| engine_err(&self.data_path, format!("tensor `{name}` is missing from the engine")))?;
            if e.shape != shape {
                return Err(engine_err(&self.data_path, format!("tensor `{name}` has shape {:?}, the model config needs {shape:?}", e.shape)));
            }
            let want = self.stored(&name);
            if e.stored != want {
                return Err(engine_err(&self.data_path, format!("tensor `{name}` is {}, the engine's precision needs {want}", e.stored)));
            }
        }
        Ok(())
    }

    /// How tensor `name` must be stored: E4M3 for an FP8 engine's quantized GEMM weights, else the float dtype.
    pub fn stored(&self, name: &str) -> Stored {
        if self.e4m3.contains(name) {
            Stored::E4m3
        } else {
            Stored::Float(self.dtype)
        }
    }

    pub fn get(&self, name: &str) -> Option<&WeightEntry> {
        self.entries.get(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The data file on the device.
#[derive(Debug)]
pub struct DeviceWeights {
    pub map: WeightMap,
    buf: DeviceBuffer,
}

impl DeviceWeights {
    /// Maps the data file and copies it to the device in 256 MiB pieces.
    pub fn upload(gpu: &Gpu, map: WeightMap) -> Result<Self, CudaError> {
        let file = std::fs::File::open(&map.data_path).map_err(|source| CudaError::Io { path: map.data_path.clone(), source })?;
        // SAFETY: read-only map of a file the engine folder owns; not modified while mapped.
        let mm = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| CudaError::Io { path: map.data_path.clone(), source })?;
        let buf = gpu.alloc(mm.len(), "model weights")?;
        const PIECE: usize = 256 << 20;
        for (i, chunk) in mm.chunks(PIECE).enumerate() {
            gpu.htod(chunk, buf.ptr() + (i * PIECE) as u64, "model weights")?;
        }
        gpu.sync("weight upload")?;
        Ok(DeviceWeights { map, buf })
    }

    /// Device address of tensor `name` (checked at open by [`WeightMap::open`]).
    pub fn ptr(&self, name: &str) -> Result<u64, CudaError> {
        let e = self.map.get(name).ok_or_else(|| engine_err(&self.map.data_path, format!("tensor `{name}` is missing from the engine")))?;
        Ok(self.buf.ptr() + e.offset)
    }

    pub fn bytes(&self) -> usize {
        self.buf.bytes()
    }
}

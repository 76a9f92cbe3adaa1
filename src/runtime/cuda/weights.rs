//! The engine folder's weights, as the exporter wrote them: `model.onnx`'s external initializers
//! (name, dtype, shape, offset and length in `model.onnx.data`), checked against the model
//! config, and uploaded as one device copy of the data file (a weight's address is the upload's
//! base + its offset; no per-tensor host work).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use onnx_protobuf::{tensor_proto::DataLocation, ModelProto};
use protobuf::Message;

use super::device::{DeviceBuffer, Gpu};
use super::CudaError;
use crate::flux::FluxConfig;
use crate::manifest::{Manifest, Precision};
use crate::tensor::DType;

/// One external initializer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightEntry {
    pub dtype: DType,
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
    pub dtype: DType,
    entries: HashMap<String, WeightEntry>,
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
    /// required tensor present, in the precision's dtype, with the config's shape, inside the data file).
    pub fn open(dir: &Path, manifest: &Manifest) -> Result<Self, CudaError> {
        if manifest.precision == Precision::Fp8 {
            return Err(engine_err(dir, "FP8 engines are not supported by the cuda backend yet; export bf16 or fp16 (build-engine --precision bf16)"));
        }
        let dtype = manifest.precision.float_dtype();
        let model_path = dir.join(&manifest.onnx.file);
        let data_path = dir.join(&manifest.onnx.data_file);
        let bytes = std::fs::read(&model_path).map_err(|source| CudaError::Io { path: model_path.clone(), source })?;
        let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| engine_err(&model_path, format!("not an ONNX model: {e}")))?;
        let data_len = std::fs::metadata(&data_path).map_err(|source| CudaError::Io { path: data_path.clone(), source })?.len();
        let mut entries = HashMap::new();
        for t in &model.graph.initializer {
            if t.data_location.enum_value_or_default() != DataLocation::EXTERNAL {
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
                1 => DType::F32,
                10 => DType::F16,
                16 => DType::BF16,
                other => return Err(engine_err(&model_path, format!("initializer `{}` has ONNX type {other}; the cuda backend reads f32/f16/bf16", t.name))),
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
            entries.insert(t.name.clone(), WeightEntry { dtype: dt, shape, offset, bytes: len });
        }
        let map = WeightMap { dir: dir.to_path_buf(), data_path, data_len, dtype, entries };
        map.check(&manifest.model)?;
        Ok(map)
    }

    fn check(&self, cfg: &FluxConfig) -> Result<(), CudaError> {
        for (name, shape) in required(cfg) {
            let e = self.entries.get(&name).ok_or_else(|| engine_err(&self.data_path, format!("tensor `{name}` is missing from the engine")))?;
            if e.shape != shape {
                return Err(engine_err(&self.data_path, format!("tensor `{name}` has shape {:?}, the model config needs {shape:?}", e.shape)));
            }
            if e.dtype != self.dtype {
                return Err(engine_err(&self.data_path, format!("tensor `{name}` is {}, the engine's precision needs {}", e.dtype, self.dtype)));
            }
        }
        Ok(())
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

//! Recalibrating an exported FP8 engine folder in place: new activation amax for its quantized
//! GEMMs become the `<gemm>.input_scale` initializers of the model file (in the graph's float
//! dtype, exactly as the exporter writes them), `fp8_activation_scales` and `fp8.calibration` in
//! the manifest, and the model file's size and BLAKE3 there. The weights (`model.onnx.data`) are
//! not touched, so this takes seconds where a re-export takes minutes. `flux-trt calibrate`
//! measures the amax on the GPU (native CUDA backend) and writes them with [`rescale`].
//!
//! Points the amax map does not name keep their scales (the attention points of an
//! `--fp8-attention` engine, which a GEMM calibration does not measure). The model file is
//! replaced first, then the manifest, each atomically: an interruption between the two leaves a
//! folder whose integrity check names the model file, never a silently mixed one.

use std::collections::BTreeMap;
use std::path::Path;

use onnx_protobuf::ModelProto;
use protobuf::Message;

use super::{scale_from_amax, CalibrationInfo, Fp8Error};
use crate::manifest::integrity::{upsert, FileRecord, FileRole};
use crate::manifest::{Manifest, Precision};
use crate::onnx::OnnxError;
use crate::util::{FileError, FileOp};

fn engine_err(path: &Path, message: impl Into<String>) -> OnnxError {
    Fp8Error::Engine { path: path.to_path_buf(), message: message.into() }.into()
}

/// Writes `amax` (by quantized GEMM) into the FP8 engine folder `dir` (see the module docs);
/// returns the updated manifest. Every quantized GEMM of the engine needs a finite, non-negative
/// amax; an engine with a built TensorRT plan (made from the old scales) is refused.
pub fn rescale(dir: &Path, amax: &BTreeMap<String, f32>, info: CalibrationInfo) -> Result<Manifest, OnnxError> {
    let mut m = Manifest::load(dir)?;
    let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
    let fp8 = match (&m.precision, &m.fp8) {
        (Precision::Fp8, Some(f)) => f.clone(),
        _ => return Err(engine_err(&manifest_path, format!("precision {:?}: only FP8 engines have activation scales", m.precision))),
    };
    if let Some(e) = &m.engine {
        return Err(engine_err(&dir.join(&e.file), "a TensorRT plan built from the current scales: recalibrate the ONNX folder, then build the plan"));
    }
    let mut scales = BTreeMap::new();
    for g in &fp8.quantized {
        let a = *amax.get(g).ok_or_else(|| Fp8Error::MissingActivation { point: g.clone() })?;
        let s = scale_from_amax(a).ok_or_else(|| Fp8Error::BadActivation { point: g.clone(), value: a })?;
        scales.insert(g.clone(), s);
    }
    if let Some(extra) = amax.keys().find(|k| !fp8.quantized.contains(k)) {
        return Err(engine_err(&manifest_path, format!("`{extra}` is not a quantized GEMM of this engine")));
    }

    let model_path = dir.join(&m.onnx.file);
    let bytes = std::fs::read(&model_path).map_err(|e| FileError::new(FileOp::Read, &model_path, e))?;
    let mut model = ModelProto::parse_from_bytes(&bytes).map_err(|e| engine_err(&model_path, format!("not an ONNX model: {e}")))?;
    let inits = &mut model.graph.mut_or_insert_default().initializer;
    let index: BTreeMap<String, usize> = inits.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    for (g, s) in &scales {
        let name = format!("{g}.input_scale");
        let i = *index.get(&name).ok_or_else(|| engine_err(&model_path, format!("no initializer `{name}`")))?;
        let t = &mut inits[i];
        if !t.dims.is_empty() || t.data_type != fp8.float_dtype.onnx_code() {
            return Err(engine_err(&model_path, format!("initializer `{name}` is not a scalar of the graph's float dtype {}", fp8.float_dtype)));
        }
        let mut raw = Vec::new();
        crate::tensor::encode_into(fp8.float_dtype, &[*s], &mut raw);
        t.raw_data = raw;
        t.float_data.clear();
    }
    let out = model.write_to_bytes().map_err(|e| OnnxError::Serialize { path: model_path.clone(), message: e.to_string() })?;
    crate::util::write_atomic(&model_path, &out)?;

    let record = FileRecord::hash(dir, &m.onnx.file, FileRole::Onnx)?;
    m.onnx.blake3 = record.blake3.clone();
    if !m.files.is_empty() {
        upsert(&mut m.files, record);
    }
    let mut all = m.fp8_activation_scales.take().unwrap_or_default();
    all.extend(scales);
    m.fp8_activation_scales = Some(all);
    if let Some(f) = m.fp8.as_mut() {
        f.calibration = Some(info);
    }
    m.save(dir)?;
    Ok(m)
}

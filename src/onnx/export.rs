//! `export`: checkpoint + slot plan → `model.onnx`, `model.onnx.data`, `manifest.json`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};
use protobuf::{Message, MessageField};

use std::collections::BTreeMap;

use super::blocks::{Fp8Graph, Quant};
use super::fp8::{self, Fp8Error, Fp8Manifest, Fp8Options};
use super::graph::Graph;
use super::{blocks, proto, weights, OnnxError, DATA_FILE, IR_VERSION, MODEL_FILE, OPSET};
use crate::checkpoint::Checkpoint;
use crate::lora::SlotPlan;
use crate::manifest::{FileRecord, FileRole, LoraSlots, Manifest, OnnxArtifact, Precision, SourceFile, TensorSpec, MANIFEST_VERSION};
use crate::tensor::DType;
use crate::util::{FileError, FileOp};

/// What to export besides the checkpoint and the slot plan.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub precision: Precision,
    /// LoRA files given at build time (hashed into the manifest's `sources`, role `lora`).
    pub lora_files: Vec<PathBuf>,
    /// Compute BLAKE3 of the checkpoint and LoRA files (in a parallel thread).
    pub hash_sources: bool,
    /// FP8 settings and calibrated activation amax; required for `Precision::Fp8`.
    pub fp8: Option<Fp8Options>,
}

impl ExportOptions {
    pub fn new(precision: Precision) -> Self {
        ExportOptions { precision, lora_files: Vec::new(), hash_sources: true, fp8: None }
    }

    /// Float dtype of the graph: the precision's, or `fp8.float_dtype` for FP8.
    pub fn float_dtype(&self) -> DType {
        match (&self.fp8, self.precision) {
            (Some(f), Precision::Fp8) => f.float_dtype,
            _ => self.precision.float_dtype(),
        }
    }
}

/// Validates the FP8 options: float dtype, and a finite, non-negative amax for every point the
/// graph quantizes; returns the graph settings (point → scale).
fn fp8_graph(cfg: &crate::flux::FluxConfig, f: &Fp8Options) -> Result<Fp8Graph, OnnxError> {
    if !matches!(f.float_dtype, DType::BF16 | DType::F32) {
        return Err(Fp8Error::FloatDtype(f.float_dtype).into());
    }
    let mut points = fp8::quantized_gemms(cfg);
    if f.attention {
        points.extend(fp8::attention_points(cfg));
    }
    let mut scales = BTreeMap::new();
    for p in points {
        let a = *f.activation_amax.get(&p).ok_or_else(|| Fp8Error::MissingActivation { point: p.clone() })?;
        let s = fp8::scale_from_amax(a).ok_or_else(|| Fp8Error::BadActivation { point: p.clone(), value: a })?;
        scales.insert(p, s);
    }
    Ok(Fp8Graph { weight_scale: f.weight_scale, attention: f.attention, activation_scales: scales })
}

/// Result of [`export`].
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub manifest: Manifest,
    pub model_path: PathBuf,
    pub data_path: PathBuf,
    pub model_bytes: u64,
    pub data_bytes: u64,
    /// Number of initializers stored in the external-data file.
    pub external_tensors: usize,
    pub nodes: usize,
}

/// The ONNX model (external tensors referenced by offset) and the weights to stream.
pub struct BuiltModel<'a> {
    pub model: ModelProto,
    pub weights: Vec<super::graph::ExternalWeight<'a>>,
    pub offsets: Vec<u64>,
    pub data_len: u64,
}

/// Builds the graph for `ckpt` with `plan`'s LoRA slots as `opts` say (no file is written).
/// FP8 reads every quantized weight once here (amax for the scales).
pub fn build_model<'a>(ckpt: &'a Checkpoint, plan: &SlotPlan, opts: &ExportOptions) -> Result<BuiltModel<'a>, OnnxError> {
    let quant = match (opts.precision, &opts.fp8) {
        (Precision::Fp8, Some(f)) => Quant::Fp8(fp8_graph(ckpt.config(), f)?),
        (Precision::Fp8, None) => return Err(OnnxError::Fp8Options("precision fp8 needs FP8 options with calibrated activation scales".into())),
        (p, Some(_)) => return Err(OnnxError::Fp8Options(format!("FP8 options given for precision {p:?}"))),
        (_, None) => Quant::None,
    };
    assemble(ckpt, plan, opts.float_dtype(), quant)
}

/// The fp32 calibration graph of `ckpt` (no slots): the model's output plus an f32 scalar
/// output `amax.<point>` for every FP8 quantization point (GEMM inputs and attention Q/K/V).
pub fn build_calibration_model(ckpt: &Checkpoint) -> Result<BuiltModel<'_>, OnnxError> {
    let plan = SlotPlan { max_rank: 1, slots: Vec::new() };
    assemble(ckpt, &plan, DType::F32, Quant::Calibrate)
}

fn assemble<'a>(ckpt: &'a Checkpoint, plan: &SlotPlan, dtype: DType, quant: Quant) -> Result<BuiltModel<'a>, OnnxError> {
    let g = blocks::build(Graph::new(dtype), ckpt, plan, quant)?;
    Ok(finish_graph(g, "flux_transformer"))
}

/// Lays out `g`'s external weights (4096-aligned offsets in `model.onnx.data`) and wraps the
/// graph in an opset-23 / IR-10 model named `name`. Every exporter (transformer and pipeline
/// components) ends here and writes the result with [`write_files`].
pub fn finish_graph<'a>(g: Graph<'a>, name: &str) -> BuiltModel<'a> {
    let (offsets, data_len) = weights::layout(&g.external);
    let mut initializer = g.inline;
    for (w, off) in g.external.iter().zip(&offsets) {
        initializer.push(proto::tensor_external(&w.name, w.onnx_code(), &w.shape, DATA_FILE, *off, w.nbytes()));
    }
    let graph = GraphProto { name: name.into(), node: g.nodes, initializer, input: g.inputs, output: g.outputs, ..Default::default() };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET, ..Default::default() }],
        producer_name: "flux-trt".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: MessageField::some(graph),
        ..Default::default()
    };
    BuiltModel { model, weights: g.external, offsets, data_len }
}

/// A graph input/output as read from the model: name, ONNX element type, dims (`None` =
/// dynamic) and dim names.
pub(crate) struct ValueSpec {
    pub name: String,
    pub elem: i32,
    pub shape: Vec<Option<usize>>,
    pub dim_names: Vec<Option<String>>,
}

/// Every tensor-typed value info of `values`.
pub(crate) fn value_specs(values: &[onnx_protobuf::ValueInfoProto]) -> Vec<ValueSpec> {
    use onnx_protobuf::{tensor_shape_proto::dimension::Value as DV, type_proto::Value as TV};
    values
        .iter()
        .filter_map(|v| {
            let Some(TV::TensorType(t)) = &v.type_.value else { return None };
            let (mut shape, mut names) = (Vec::new(), Vec::new());
            for d in &t.shape.dim {
                match &d.value {
                    Some(DV::DimValue(n)) => {
                        shape.push(Some(*n as usize));
                        names.push(None);
                    }
                    Some(DV::DimParam(p)) => {
                        shape.push(None);
                        names.push(Some(p.clone()));
                    }
                    _ => {
                        shape.push(None);
                        names.push(None);
                    }
                }
            }
            Some(ValueSpec { name: v.name.clone(), elem: t.elem_type, shape, dim_names: names })
        })
        .collect()
}

/// The graph's data inputs and outputs as manifest specs (LoRA slot inputs are in `lora`).
fn io_specs(model: &ModelProto, slots: &LoraSlots) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let spec = |v: ValueSpec| -> Option<TensorSpec> {
        let dtype = match v.elem {
            1 => DType::F32,
            10 => DType::F16,
            16 => DType::BF16,
            _ => return None,
        };
        Some(TensorSpec { name: v.name, dtype, shape: v.shape, dim_names: v.dim_names })
    };
    let is_slot = |n: &str| slots.slots.iter().any(|s| s.a == n || s.b == n);
    let inputs = value_specs(&model.graph.input).into_iter().filter(|v| !is_slot(&v.name)).filter_map(spec).collect();
    let outputs = value_specs(&model.graph.output).into_iter().filter_map(spec).collect();
    (inputs, outputs)
}

fn hash_sources(ckpt_files: &[PathBuf], lora_files: &[PathBuf]) -> Result<Vec<SourceFile>, OnnxError> {
    let mut v = Vec::new();
    for (role, files) in [("checkpoint", ckpt_files), ("lora", lora_files)] {
        for f in files {
            let (blake3, bytes) = crate::util::hash_file(f).map_err(|e| FileError::new(FileOp::Read, f, e))?;
            v.push(SourceFile { role: role.into(), path: f.display().to_string(), bytes, blake3 });
        }
    }
    Ok(v)
}

pub(crate) fn io_err(op: FileOp, path: &Path) -> impl Fn(std::io::Error) -> OnnxError + '_ {
    move |source| FileError::new(op, path, source).into()
}

/// Exports `ckpt` with `plan`'s (zero) LoRA slots into `out_dir`: `model.onnx`,
/// `model.onnx.data` (weights, 4096-aligned, streamed) and `manifest.json`. Every file is written
/// under a temporary name in `out_dir` and renamed at the end (manifest last).
/// `progress(written, total)` reports external-data bytes. Errors are [`crate::Error::Export`].
pub fn export(ckpt: &Checkpoint, plan: &SlotPlan, opts: &ExportOptions, out_dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> crate::Result<ExportReport> {
    Ok(export_checked(ckpt, plan, opts, out_dir, progress)?)
}

fn export_checked(
    ckpt: &Checkpoint,
    plan: &SlotPlan,
    opts: &ExportOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, OnnxError> {
    std::fs::create_dir_all(out_dir).map_err(io_err(FileOp::Create, out_dir))?;
    let built = build_model(ckpt, plan, opts)?;
    let slots = LoraSlots::from_plan(plan, opts.float_dtype());
    let model_path = out_dir.join(MODEL_FILE);
    let data_path = out_dir.join(DATA_FILE);
    let model_size = built.model.compute_size();
    if model_size >= (1u64 << 31) {
        return Err(OnnxError::TooLarge { path: model_path, bytes: model_size });
    }
    tracing::info!(
        tensors = built.weights.len(),
        data_bytes = built.data_len,
        model_bytes = model_size,
        nodes = built.model.graph.node.len(),
        precision = ?opts.precision,
        "exporting ONNX graph"
    );

    let ckpt_files = ckpt.files().to_vec();
    let (sources, written) = std::thread::scope(|s| -> Result<_, OnnxError> {
        let hasher = opts.hash_sources.then(|| s.spawn(|| hash_sources(&ckpt_files, &opts.lora_files)));
        let written = write_files(&built, &ckpt_files, out_dir, &model_path, &data_path, progress);
        let sources = match hasher {
            Some(h) => h.join().map_err(|_| FileError::new(FileOp::Read, out_dir, std::io::Error::other("hash thread panicked")))??,
            None => Vec::new(),
        };
        Ok((sources, written?))
    })?;
    let Written { tmp_data, tmp_model, model_blake3: model_sha, files } = written;

    let (inputs, outputs) = io_specs(&built.model, &slots);
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        exporter: format!("flux-trt {}", env!("CARGO_PKG_VERSION")),
        model: ckpt.config().clone(),
        precision: opts.precision,
        onnx: OnnxArtifact { file: MODEL_FILE.into(), data_file: DATA_FILE.into(), opset: OPSET, blake3: model_sha },
        inputs,
        outputs,
        lora: slots,
        sources,
        engine: None,
        files,
        fp8_activation_scales: None,
        fp8: None,
    };
    let manifest = with_fp8(manifest, ckpt, opts)?;
    persist(tmp_data, &data_path)?;
    persist(tmp_model, &model_path)?;
    manifest.save(out_dir)?;
    for p in [&data_path, &model_path, &out_dir.join(crate::manifest::MANIFEST_FILE)] {
        readable(p)?;
    }
    tracing::info!(dir = %out_dir.display(), "export complete");
    Ok(ExportReport {
        manifest,
        model_path,
        data_path,
        model_bytes: model_size,
        data_bytes: built.data_len,
        external_tensors: built.weights.len(),
        nodes: built.model.graph.node.len(),
    })
}

/// The model and data written under temporary names, and their records (hashed while written).
pub(crate) struct Written {
    pub tmp_data: tempfile::NamedTempFile,
    pub tmp_model: tempfile::NamedTempFile,
    pub model_blake3: String,
    /// `model.onnx` and `model.onnx.data`: size and BLAKE3 as written.
    pub files: Vec<FileRecord>,
}

/// Renames a finished temporary file to `path` (errors name `path`).
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), OnnxError> {
    tmp.persist(path).map_err(|e| FileError::new(FileOp::Rename, path, e.error))?;
    Ok(())
}

/// Writes `built`'s external data and model under temporary names in `out_dir` (synced, not yet
/// renamed); `source_files` are the mapped weight files (their pages are released as written).
/// Both files are hashed (BLAKE3) as they are written, for the manifest's `files`.
pub(crate) fn write_files(
    built: &BuiltModel<'_>,
    ckpt_files: &[PathBuf],
    out_dir: &Path,
    model_path: &Path,
    data_path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, OnnxError> {
    let tmp = |prefix: &str, path: &Path| tempfile::Builder::new().prefix(prefix).suffix(".tmp").tempfile_in(out_dir).map_err(io_err(FileOp::Write, path));
    let total = built.data_len;
    let tmp_data = tmp(".model.onnx.data.", data_path)?;
    let mapped = weights::MappedFiles::find(ckpt_files);
    if mapped.is_empty() {
        tracing::debug!("checkpoint mappings not found in /proc/self/maps; pages will not be released early");
    }
    let mut w = crate::util::HashingWriter::new(BufWriter::with_capacity(8 << 20, tmp_data.as_file()));
    weights::write_data(&built.weights, &built.offsets, &mapped, &mut w, &mut |n| progress(n, total)).map_err(io_err(FileOp::Write, data_path))?;
    w.flush().map_err(io_err(FileOp::Write, data_path))?;
    let (_, data_blake3, data_bytes) = w.finish();
    tmp_data.as_file().sync_all().map_err(io_err(FileOp::Write, data_path))?;

    let tmp_model = tmp(".model.onnx.", model_path)?;
    let mut w = crate::util::HashingWriter::new(BufWriter::new(tmp_model.as_file()));
    built.model.write_to_writer(&mut w).map_err(|e| OnnxError::Serialize { path: model_path.to_path_buf(), message: e.to_string() })?;
    w.flush().map_err(io_err(FileOp::Write, model_path))?;
    let (_, model_blake3, model_bytes) = w.finish();
    tmp_model.as_file().sync_all().map_err(io_err(FileOp::Write, model_path))?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let files = vec![
        FileRecord { path: name(model_path), role: FileRole::Onnx, bytes: model_bytes, blake3: model_blake3.clone() },
        FileRecord { path: name(data_path), role: FileRole::OnnxData, bytes: data_bytes, blake3: data_blake3 },
    ];
    Ok(Written { tmp_data, tmp_model, model_blake3, files })
}

/// Temporary files are created 0600; the artifact is meant to be shared (0644).
pub(crate) fn readable(path: &Path) -> Result<(), OnnxError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io_err(FileOp::Write, path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Records the FP8 settings and activation scales in the manifest (FP8 exports only).
fn with_fp8(mut m: Manifest, ckpt: &Checkpoint, opts: &ExportOptions) -> Result<Manifest, OnnxError> {
    let Some(f) = opts.fp8.as_ref().filter(|_| opts.precision == Precision::Fp8) else { return Ok(m) };
    let g = fp8_graph(ckpt.config(), f)?;
    m.fp8_activation_scales = Some(g.activation_scales);
    m.fp8 = Some(Fp8Manifest {
        format: "e4m3fn".into(),
        weight_scale: f.weight_scale,
        float_dtype: f.float_dtype,
        attention: f.attention,
        quantized: fp8::quantized_gemms(ckpt.config()),
        scale_floor: fp8::SCALE_FLOOR,
        calibration: f.calibration.clone(),
    });
    Ok(m)
}

/// Writes only `model.onnx` + `model.onnx.data` of `built` into `dir` (no manifest), e.g. the
/// calibration graph.
pub fn write_model(built: &BuiltModel<'_>, ckpt: &Checkpoint, dir: &Path) -> Result<PathBuf, OnnxError> {
    write_model_files(built, ckpt.files(), dir)
}

/// [`write_model`] for a model whose weights come from `source_files` (any component; the
/// files' mappings are released page by page as they are written).
pub fn write_model_files(built: &BuiltModel<'_>, source_files: &[PathBuf], dir: &Path) -> Result<PathBuf, OnnxError> {
    std::fs::create_dir_all(dir).map_err(io_err(FileOp::Create, dir))?;
    let model_path = dir.join(MODEL_FILE);
    let data_path = dir.join(DATA_FILE);
    let w = write_files(built, source_files, dir, &model_path, &data_path, &mut |_, _| {})?;
    persist(w.tmp_data, &data_path)?;
    persist(w.tmp_model, &model_path)?;
    Ok(model_path)
}

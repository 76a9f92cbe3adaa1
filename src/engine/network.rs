//! Parsing an exported folder with TensorRT's ONNX parser, checking the network against
//! `manifest.json` and marking the LoRA slots refittable (feature `tensorrt`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use trtx::{Builder, DataType, LayerType, NetworkDefinition, OnnxParser};

use super::report::{NetworkReport, NetworkTensor};
use super::trt::{self, LogScope};
use super::{EngineError, TrtLibrary};
use crate::manifest::{ComponentManifest, Manifest, Precision};

/// What the network of an exported folder must look like: the transformer's [`Manifest`] or a
/// pipeline component's [`ComponentManifest`], reduced to what the parser checks.
pub(super) struct NetSpec {
    /// Model file name inside the folder.
    file: String,
    inputs: Vec<(String, Vec<Option<usize>>)>,
    outputs: Vec<(String, Vec<Option<usize>>)>,
    /// Slot A/B names to mark refittable, in order.
    slots: Vec<String>,
    precision: Precision,
}

impl NetSpec {
    pub fn from_manifest(m: &Manifest) -> Self {
        NetSpec {
            file: m.onnx.file.clone(),
            inputs: m.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect(),
            outputs: m.outputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect(),
            slots: m.lora.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()]).collect(),
            precision: m.precision,
        }
    }

    pub fn from_component(m: &ComponentManifest) -> Self {
        NetSpec {
            file: m.onnx.file.clone(),
            inputs: m.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect(),
            outputs: m.outputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect(),
            slots: m.lora.iter().flat_map(|l| l.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()])).collect(),
            precision: m.precision,
        }
    }
}

/// `ILogger::Severity::kWARNING`: the parser reports warnings and errors.
const PARSER_VERBOSITY: i32 = 2;

/// TensorRT's name of a layer type without the `k` prefix (`ATTENTION_INPUT`): the keys of
/// [`NetworkReport::layer_counts`]. An explicit table (the same enumerators in the TensorRT-RTX
/// 1.7 and Enterprise 11.4 headers), so no count depends on a `Debug` format.
pub(crate) fn layer_type_name(t: LayerType) -> &'static str {
    match t {
        LayerType::kCONVOLUTION => "CONVOLUTION",
        LayerType::kCAST => "CAST",
        LayerType::kACTIVATION => "ACTIVATION",
        LayerType::kPOOLING => "POOLING",
        LayerType::kLRN => "LRN",
        LayerType::kSCALE => "SCALE",
        LayerType::kSOFTMAX => "SOFTMAX",
        LayerType::kDECONVOLUTION => "DECONVOLUTION",
        LayerType::kCONCATENATION => "CONCATENATION",
        LayerType::kELEMENTWISE => "ELEMENTWISE",
        LayerType::kPLUGIN => "PLUGIN",
        LayerType::kUNARY => "UNARY",
        LayerType::kPADDING => "PADDING",
        LayerType::kSHUFFLE => "SHUFFLE",
        LayerType::kREDUCE => "REDUCE",
        LayerType::kTOPK => "TOPK",
        LayerType::kGATHER => "GATHER",
        LayerType::kMATRIX_MULTIPLY => "MATRIX_MULTIPLY",
        LayerType::kRAGGED_SOFTMAX => "RAGGED_SOFTMAX",
        LayerType::kCONSTANT => "CONSTANT",
        LayerType::kIDENTITY => "IDENTITY",
        LayerType::kPLUGIN_V2 => "PLUGIN_V2",
        LayerType::kSLICE => "SLICE",
        LayerType::kSHAPE => "SHAPE",
        LayerType::kPARAMETRIC_RELU => "PARAMETRIC_RELU",
        LayerType::kRESIZE => "RESIZE",
        LayerType::kTRIP_LIMIT => "TRIP_LIMIT",
        LayerType::kRECURRENCE => "RECURRENCE",
        LayerType::kITERATOR => "ITERATOR",
        LayerType::kLOOP_OUTPUT => "LOOP_OUTPUT",
        LayerType::kSELECT => "SELECT",
        LayerType::kFILL => "FILL",
        LayerType::kQUANTIZE => "QUANTIZE",
        LayerType::kDEQUANTIZE => "DEQUANTIZE",
        LayerType::kCONDITION => "CONDITION",
        LayerType::kCONDITIONAL_INPUT => "CONDITIONAL_INPUT",
        LayerType::kCONDITIONAL_OUTPUT => "CONDITIONAL_OUTPUT",
        LayerType::kSCATTER => "SCATTER",
        LayerType::kEINSUM => "EINSUM",
        LayerType::kASSERTION => "ASSERTION",
        LayerType::kONE_HOT => "ONE_HOT",
        LayerType::kNON_ZERO => "NON_ZERO",
        LayerType::kGRID_SAMPLE => "GRID_SAMPLE",
        LayerType::kNMS => "NMS",
        LayerType::kREVERSE_SEQUENCE => "REVERSE_SEQUENCE",
        LayerType::kNORMALIZATION => "NORMALIZATION",
        LayerType::kPLUGIN_V3 => "PLUGIN_V3",
        LayerType::kSQUEEZE => "SQUEEZE",
        LayerType::kUNSQUEEZE => "UNSQUEEZE",
        LayerType::kCUMULATIVE => "CUMULATIVE",
        LayerType::kDYNAMIC_QUANTIZE => "DYNAMIC_QUANTIZE",
        LayerType::kATTENTION_INPUT => "ATTENTION_INPUT",
        LayerType::kATTENTION_OUTPUT => "ATTENTION_OUTPUT",
        LayerType::kROTARY_EMBEDDING => "ROTARY_EMBEDDING",
        LayerType::kKVCACHE_UPDATE => "KVCACHE_UPDATE",
        LayerType::kMOE => "MOE",
        LayerType::kDIST_COLLECTIVE => "DIST_COLLECTIVE",
    }
}

/// TensorRT's name of a data type without the `k` prefix (`FLOAT`, `BF16`), as in
/// [`NetworkTensor::dtype`].
pub(crate) fn data_type_name(t: DataType) -> &'static str {
    match t {
        DataType::kFLOAT => "FLOAT",
        DataType::kHALF => "HALF",
        DataType::kINT8 => "INT8",
        DataType::kINT32 => "INT32",
        DataType::kBOOL => "BOOL",
        DataType::kUINT8 => "UINT8",
        DataType::kFP8 => "FP8",
        DataType::kBF16 => "BF16",
        DataType::kINT64 => "INT64",
        DataType::kINT4 => "INT4",
        DataType::kFP4 => "FP4",
        DataType::kE8M0 => "E8M0",
    }
}

const NOT_UTF8: &str = "path is not UTF-8 (TensorRT's parser takes a C string)";

fn read_err(path: &Path, kind: std::io::ErrorKind, message: &str) -> EngineError {
    crate::util::FileError::new(crate::util::FileOp::Read, path, std::io::Error::new(kind, message)).into()
}

/// Path of `dir`'s model file (checked to exist).
fn model_path(dir: &Path, manifest: &NetSpec) -> Result<PathBuf, EngineError> {
    let path = dir.join(&manifest.file);
    if !path.is_file() {
        return Err(read_err(&path, std::io::ErrorKind::NotFound, "ONNX model file not found"));
    }
    Ok(path)
}

/// Parses the ONNX model file `path` (external data resolved next to it) with TensorRT's parser
/// and hands the builder, the network and its description to `then`. The one parser setup of
/// the crate: [`parse_and_mark`] and [`parse_file`] both go through it.
pub(super) fn parse<R>(
    path: &Path,
    lib: &TrtLibrary,
    then: impl FnOnce(&mut Builder<'static>, &mut NetworkDefinition<'_>, NetworkReport) -> Result<R, EngineError>,
) -> Result<R, EngineError> {
    if !path.is_file() {
        return Err(read_err(path, std::io::ErrorKind::NotFound, "ONNX model file not found"));
    }
    let path_str = path.to_str().ok_or_else(|| read_err(path, std::io::ErrorKind::InvalidInput, NOT_UTF8))?;
    trt::load(lib)?;
    let logger = trt::logger()?;
    let scope = LogScope::begin();
    let mut builder = Builder::new(logger).map_err(|e| scope.error("builder creation", e))?;
    let network = builder.create_network(0).map_err(|e| scope.error("network creation", e))?;
    let mut parser = OnnxParser::new(network, logger).map_err(|e| scope.error("ONNX parser creation", e))?;
    let scope = LogScope::begin();
    parser.parse_from_file(path_str, PARSER_VERBOSITY).map_err(|_| EngineError::Parse { path: path.to_path_buf(), log: scope.text() })?;
    let net = parser.network_mut();
    let report = describe(net, path)?;
    then(&mut builder, net, report)
}

/// Parses the model of `dir` (external data resolved next to the model file), checks its
/// inputs/outputs against `manifest`, marks every slot A/B refittable, optionally lets every
/// `IAttention` decompose, and hands the builder and the network to `then`.
pub(super) fn parse_and_mark<R>(
    dir: &Path,
    manifest: &NetSpec,
    lib: &TrtLibrary,
    decomposable_attention: bool,
    then: impl FnOnce(&mut Builder<'static>, &mut NetworkDefinition<'_>, NetworkReport) -> Result<R, EngineError>,
) -> Result<R, EngineError> {
    let path = model_path(dir, manifest)?;
    parse(&path, lib, |builder, net, mut report| {
        check_io(&path, manifest, &report)?;
        for name in &manifest.slots {
            let scope = LogScope::begin();
            net.mark_weights_refittable(name).map_err(|_| EngineError::MarkRefittable { path: path.clone(), name: name.clone(), log: scope.text() })?;
            let marked = net.are_weights_marked_refittable(name).map_err(|e| scope.error(format!("areWeightsMarkedRefittable(`{name}`)"), e))?;
            if !marked {
                return Err(EngineError::MarkRefittable {
                    path: path.clone(),
                    name: name.clone(),
                    log: format!("accepted, but not reported as marked; {}", scope.text()),
                });
            }
            report.refittable.push(name.clone());
        }
        check_precision(&path, manifest, &report)?;
        if decomposable_attention {
            report.decomposable_attention = set_attention_decomposable(net, &path)?;
        }
        then(builder, net, report)
    })
}

/// Parses the model file `path` and describes the network, without a manifest (pipeline
/// components: text encoders, the VAE).
pub(super) fn parse_file(path: &Path, lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    parse(path, lib, |_, _, report| Ok(report))
}

/// `IAttention::setDecomposable(true)` on every attention of the network; returns how many
/// report `getDecomposable() == true` afterwards.
///
/// TensorRT's fused attention kernels cover fp16/bf16/fp8 with common head sizes; anything else
/// (fp32 graphs, the tiny test models' head_dim 32) fails the build with Myelin's "Attention
/// operation was not supported by a dedicated kernel" unless the attention may decompose.
/// Decomposable attention still uses the fused kernel where one exists. The ONNX parser offers
/// no switch for it; each `IAttention` is reached from its `IAttentionInputLayer` through the
/// typed downcast and accessor of the patched `trtx` (`vendor/trtx`).
fn set_attention_decomposable(net: &mut NetworkDefinition<'_>, path: &Path) -> Result<usize, EngineError> {
    use trtx::trtx_sys::nvinfer1::IAttentionInputLayer;
    let scope = LogScope::begin();
    let mut n = 0;
    for i in 0..net.nb_layers() {
        let layer = net.layer(i).map_err(|e| scope.error(format!("{}: layer {i}", path.display()), e))?;
        let Ok(mut input) = layer.downcast::<IAttentionInputLayer>() else { continue };
        let mut attention = input.attention(net).map_err(|e| scope.error(format!("{}: IAttention of layer {i}", path.display()), e))?;
        attention.set_decomposable(net, true).map_err(|e| scope.error(format!("{}: IAttention::setDecomposable on layer {i}", path.display()), e))?;
        if !attention.decomposable(net) {
            return Err(scope.error(format!("{}: IAttention::getDecomposable on layer {i}", path.display()), "false after setDecomposable(true)"));
        }
        n += 1;
    }
    Ok(n)
}

fn describe(net: &NetworkDefinition<'_>, path: &Path) -> Result<NetworkReport, EngineError> {
    let scope = LogScope::begin();
    let tensor = |t: trtx::Tensor<'_>| -> Result<NetworkTensor, EngineError> {
        let name = t.name(net).map_err(|e| scope.error(format!("{}: tensor name", path.display()), e))?;
        let dims = t.dimensions(net).map_err(|e| scope.error(format!("{}: dimensions of `{name}`", path.display()), e))?;
        Ok(NetworkTensor { dtype: data_type_name(t.data_type(net)).to_string(), name, dims })
    };
    let mut r = NetworkReport { layers: net.nb_layers().max(0) as usize, ..Default::default() };
    for i in 0..net.nb_layers() {
        let t = net.layer_type(i).map_err(|e| scope.error(format!("{}: type of layer {i}", path.display()), e))?;
        *r.layer_counts.entry(layer_type_name(t).to_string()).or_default() += 1;
    }
    for i in 0..net.nb_inputs() {
        r.inputs.push(tensor(net.input(i).map_err(|e| scope.error(format!("{}: input {i}", path.display()), e))?)?);
    }
    for i in 0..net.nb_outputs() {
        r.outputs.push(tensor(net.output(i).map_err(|e| scope.error(format!("{}: output {i}", path.display()), e))?)?);
    }
    Ok(r)
}

/// The network's inputs/outputs are exactly the manifest's (names, ranks, fixed sizes), and no
/// LoRA slot is a network input.
fn check_io(path: &Path, manifest: &NetSpec, r: &NetworkReport) -> Result<(), EngineError> {
    for slot in &manifest.slots {
        if r.inputs.iter().any(|t| &t.name == slot) {
            return Err(EngineError::SlotIsInput { path: path.to_path_buf(), name: slot.clone() });
        }
    }
    let err = |message: String| EngineError::Io { path: path.to_path_buf(), message };
    for (kind, specs, tensors) in [("input", &manifest.inputs, &r.inputs), ("output", &manifest.outputs, &r.outputs)] {
        let want: BTreeSet<&str> = specs.iter().map(|s| s.0.as_str()).collect();
        let have: BTreeSet<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        if let Some(n) = want.difference(&have).next() {
            return Err(err(format!("manifest {kind} `{n}` is not a network {kind} (network has {have:?})")));
        }
        if let Some(n) = have.difference(&want).next() {
            return Err(err(format!("network {kind} `{n}` is not in the manifest (manifest has {want:?})")));
        }
        for (name, shape) in specs.iter() {
            let t = tensors.iter().find(|t| &t.name == name).ok_or_else(|| err(format!("{kind} `{name}` vanished")))?;
            if !dims_match(shape, &t.dims) {
                return Err(err(format!("{kind} `{name}` has dims {:?} in the network, manifest says {shape:?}", t.dims)));
            }
        }
    }
    Ok(())
}

fn dims_match(shape: &[Option<usize>], dims: &[i64]) -> bool {
    shape.len() == dims.len()
        && shape.iter().zip(dims).all(|(s, d)| match s {
            Some(n) => i64::try_from(*n).is_ok_and(|n| n == *d),
            None => *d == -1,
        })
}

/// FP8 manifests must have Q/DQ layers and other precisions none.
///
/// Hook for the FP8 issue: finer assertions (Q/DQ per base GEMM) go here once the exporter
/// writes FP8 graphs.
fn check_precision(path: &Path, manifest: &NetSpec, r: &NetworkReport) -> Result<(), EngineError> {
    let qdq = r.quantize_layers() + r.dequantize_layers();
    let fp8 = manifest.precision == Precision::Fp8;
    if fp8 && qdq == 0 {
        return Err(EngineError::Precision { path: path.to_path_buf(), message: "manifest says fp8 but the network has no Quantize/Dequantize layers".into() });
    }
    if !fp8 && qdq > 0 {
        return Err(EngineError::Precision {
            path: path.to_path_buf(),
            message: format!("manifest says {:?} but the network has {qdq} Quantize/Dequantize layers", manifest.precision),
        });
    }
    Ok(())
}

/// The patched `trtx` accessor on a real parsed network (needs the TensorRT-RTX libraries:
/// `TRT_RTX_LIB_DIR`, else Python's `tensorrt_rtx_libs`; no GPU).
#[cfg(all(test, feature = "export"))]
mod tests {
    use trtx::trtx_sys::nvinfer1::{IAttentionInputLayer, IAttentionOutputLayer, IMatrixMultiplyLayer};
    use trtx::LayerType;

    use super::*;

    fn library() -> TrtLibrary {
        let lib = TrtLibrary::from_env();
        if lib.dir.is_some() {
            return lib;
        }
        let out = std::process::Command::new("python3")
            .args(["-c", "import tensorrt_rtx_libs,os;print(os.path.dirname(tensorrt_rtx_libs.__file__))"])
            .output()
            .expect("TRT_RTX_LIB_DIR is unset and python3 could not be run");
        assert!(out.status.success(), "TRT_RTX_LIB_DIR is unset and python3 has no tensorrt_rtx_libs");
        TrtLibrary::in_dir(String::from_utf8_lossy(&out.stdout).trim())
    }

    #[test]
    fn downcast_reaches_each_attention_and_nothing_else() {
        let ckpt = crate::Checkpoint::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/dev-bfl.safetensors")).unwrap();
        let blocks = ckpt.config().num_double_blocks + ckpt.config().num_single_blocks;
        let plan = crate::SlotPlan::new(ckpt.config(), &[], &crate::lora::plan::PlanOptions { max_rank: Some(2), targets: vec!["attn".into()] }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::onnx::ExportOptions { hash_sources: false, ..crate::onnx::ExportOptions::new(Precision::Fp32) };
        let report = crate::onnx::export(&ckpt, &plan, &opts, dir.path(), &mut |_, _| {}).unwrap();
        let model = dir.path().join(&report.manifest.onnx.file);
        parse(&model, &library(), |_, net, _| {
            let (mut inputs, mut outputs, mut others) = (0, 0, 0);
            for i in 0..net.nb_layers() {
                let layer = net.layer(i).unwrap();
                let ty = layer.layer_type_dynamic();
                match layer.downcast::<IAttentionInputLayer>() {
                    Ok(mut input) => {
                        assert_eq!(ty, LayerType::kATTENTION_INPUT);
                        // The accessor reaches the IAttention: what is set through it reads back.
                        let mut attention = input.attention(net).unwrap();
                        attention.set_decomposable(net, false).unwrap();
                        assert!(!attention.decomposable(net));
                        attention.set_decomposable(net, true).unwrap();
                        assert!(attention.decomposable(net));
                        inputs += 1;
                    }
                    // A refused downcast hands the same layer back.
                    Err(layer) => {
                        assert_eq!(layer.layer_type_dynamic(), ty);
                        assert_ne!(ty, LayerType::kATTENTION_INPUT);
                        match layer.downcast::<IAttentionOutputLayer>() {
                            Ok(mut output) => {
                                // Set to true through its input layer above.
                                assert!(output.attention(net).unwrap().decomposable(net));
                                outputs += 1;
                            }
                            Err(layer) => {
                                assert_eq!(layer.downcast::<IMatrixMultiplyLayer>().is_ok(), ty == LayerType::kMATRIX_MULTIPLY);
                                others += 1;
                            }
                        }
                    }
                }
            }
            assert_eq!((inputs, outputs), (blocks, blocks));
            assert!(others > 0);
            Ok(())
        })
        .unwrap();
    }
}

//! Pipeline components besides the transformer: the CLIP-L and T5 text encoders (and, from its
//! own module, the VAE decoder) as ONNX graphs in the sub-folders of an engine folder, each with
//! a [`ComponentManifest`] (layout: [`crate::manifest::component`]).
//!
//! [`export_component`] writes any built component graph atomically (temporary files, renamed,
//! manifest last); [`export_text_encoders`] exports both text encoders of a diffusers
//! FluxPipeline folder and copies its `tokenizer/`, `tokenizer_2/` and `scheduler/`.

pub mod clip;
mod nn;
pub mod t5;
pub mod vae;

use std::path::{Path, PathBuf};

pub use clip::{build_clip, clip_prefix, CLIP_INPUT, CLIP_OUTPUT};
pub use t5::{build_t5, T5_INPUT, T5_OUTPUT};

use super::export::{finish_graph, io_err, persist, readable, value_specs, write_files, BuiltModel, Written};
use super::{OnnxError, DATA_FILE, MODEL_FILE, OPSET};
use crate::checkpoint::ComponentWeights;
use crate::encoders::{ClipTextConfig, T5EncoderConfig};
use crate::lora::SlotPlan;
use crate::manifest::component::{COMPONENT_MANIFEST_VERSION, COPIED_DIRS};
use crate::manifest::{
    ComponentConfig, ComponentManifest, FileRecord, FileRole, IoDType, IoSpec, LoraSlots, OnnxArtifact, Precision, SourceFile, MANIFEST_FILE,
};
use crate::util::{FileError, FileOp};

/// What [`export_component`] records besides the graph.
#[derive(Clone, Debug)]
pub struct ComponentExport {
    pub config: ComponentConfig,
    pub precision: Precision,
    /// The graph's LoRA slots (must be the plan the graph was built with).
    pub lora: Option<LoraSlots>,
    /// Weight files the graph reads (role `weights`; their mapped pages are released as written).
    pub weight_files: Vec<PathBuf>,
    /// LoRA files that defined the slots (role `lora`).
    pub lora_files: Vec<PathBuf>,
    /// Compute BLAKE3 of `weight_files` and `lora_files` for `sources`.
    pub hash_sources: bool,
}

/// The graph's non-slot inputs and its outputs as component specs.
fn io_specs(built: &BuiltModel<'_>, slots: Option<&LoraSlots>) -> Result<(Vec<IoSpec>, Vec<IoSpec>), OnnxError> {
    let is_slot = |n: &str| slots.is_some_and(|s| s.slots.iter().any(|s| s.a == n || s.b == n));
    let graph = &built.model.graph;
    let conv = |v: super::export::ValueSpec| -> Result<IoSpec, OnnxError> {
        let dtype = IoDType::from_onnx(v.elem).ok_or_else(|| OnnxError::Component {
            path: PathBuf::from(MODEL_FILE),
            message: format!("graph value `{}` has ONNX element type {}, not f32/f16/bf16/i64", v.name, v.elem),
        })?;
        Ok(IoSpec { name: v.name, dtype, shape: v.shape, dim_names: v.dim_names })
    };
    let inputs = value_specs(&graph.input).into_iter().filter(|v| !is_slot(&v.name)).map(conv).collect::<Result<_, _>>()?;
    let outputs = value_specs(&graph.output).into_iter().map(conv).collect::<Result<_, _>>()?;
    Ok((inputs, outputs))
}

fn hash(role: &str, files: &[PathBuf]) -> Result<Vec<SourceFile>, OnnxError> {
    files
        .iter()
        .map(|f| {
            let (blake3, bytes) = crate::util::hash_file(f).map_err(|e| FileError::new(FileOp::Read, f, e))?;
            Ok(SourceFile { role: role.into(), path: f.display().to_string(), bytes, blake3 })
        })
        .collect()
}

/// Writes `built` into `out_dir` as `model.onnx` + `model.onnx.data` + `manifest.json`
/// ([`ComponentManifest`] of `spec.config.kind()`): every file under a temporary name first,
/// then renamed, the manifest last. Returns the manifest written.
pub fn export_component(built: &BuiltModel<'_>, spec: &ComponentExport, out_dir: &Path) -> Result<ComponentManifest, OnnxError> {
    std::fs::create_dir_all(out_dir).map_err(io_err(FileOp::Create, out_dir))?;
    let model_path = out_dir.join(MODEL_FILE);
    let data_path = out_dir.join(DATA_FILE);
    use protobuf::Message;
    let model_size = built.model.compute_size();
    if model_size >= (1u64 << 31) {
        return Err(OnnxError::TooLarge { path: model_path, bytes: model_size });
    }
    let (inputs, outputs) = io_specs(built, spec.lora.as_ref())?;
    let kind = spec.config.kind();
    tracing::info!(%kind, tensors = built.weights.len(), data_bytes = built.data_len, nodes = built.model.graph.node.len(), "exporting component");
    let (sources, written) = std::thread::scope(|s| -> Result<_, OnnxError> {
        let hasher = spec.hash_sources.then(|| {
            s.spawn(|| -> Result<Vec<SourceFile>, OnnxError> {
                let mut v = hash("weights", &spec.weight_files)?;
                v.extend(hash("lora", &spec.lora_files)?);
                Ok(v)
            })
        });
        let written = write_files(built, &spec.weight_files, out_dir, &model_path, &data_path, &mut |_, _| {});
        let sources = match hasher {
            Some(h) => h.join().map_err(|_| FileError::new(FileOp::Read, out_dir, std::io::Error::other("hash thread panicked")))??,
            None => Vec::new(),
        };
        Ok((sources, written?))
    })?;
    let Written { tmp_data, tmp_model, model_blake3: model_hash, files } = written;
    let manifest = ComponentManifest {
        format_version: COMPONENT_MANIFEST_VERSION,
        exporter: format!("flux-trt {}", env!("CARGO_PKG_VERSION")),
        kind,
        config: spec.config.clone(),
        precision: spec.precision,
        onnx: OnnxArtifact { file: MODEL_FILE.into(), data_file: DATA_FILE.into(), opset: OPSET, blake3: model_hash },
        inputs,
        outputs,
        lora: spec.lora.clone(),
        sources,
        engine: None,
        files,
    };
    persist(tmp_data, &data_path)?;
    persist(tmp_model, &model_path)?;
    let manifest_path = out_dir.join(MANIFEST_FILE);
    manifest.save(out_dir)?;
    for p in [&data_path, &model_path, &manifest_path] {
        readable(p)?;
    }
    tracing::info!(%kind, dir = %out_dir.display(), "component export complete");
    Ok(manifest)
}

/// Options of [`export_text_encoders`].
#[derive(Clone, Debug)]
pub struct TextEncoderOptions {
    /// fp32, fp16 or bf16 (fp8 is refused).
    pub precision: Precision,
    /// T5 token length (FLUX.1-dev 512, schnell 256).
    pub t5_max_length: usize,
    pub hash_sources: bool,
    /// LoRA files that defined the CLIP slots (recorded in the CLIP manifest's sources).
    pub lora_files: Vec<PathBuf>,
}

impl TextEncoderOptions {
    pub fn new(precision: Precision) -> Self {
        TextEncoderOptions { precision, t5_max_length: 512, hash_sources: true, lora_files: Vec::new() }
    }
}

/// Manifests written by [`export_text_encoders`].
#[derive(Clone, Debug)]
pub struct TextEncodersReport {
    pub clip: ComponentManifest,
    pub t5: ComponentManifest,
    /// Files copied from the pipeline's tokenizer/scheduler folders (relative to the engine folder).
    pub copied: Vec<PathBuf>,
    /// Their size and BLAKE3 as written (also recorded in the engine folder's top-level
    /// `manifest.json` when there is one).
    pub copied_files: Vec<FileRecord>,
}

/// The CLIP text encoder's config of a diffusers pipeline folder (`text_encoder/config.json`),
/// e.g. to plan its slots ([`SlotPlan::for_clip`]).
pub fn clip_config(pipeline_dir: &Path) -> Result<ClipTextConfig, OnnxError> {
    let w = ComponentWeights::open(&pipeline_dir.join(crate::manifest::component::TEXT_ENCODER_DIR))?;
    Ok(ClipTextConfig::from_hf(w.config_path(), w.config())?)
}

fn check_precision(p: Precision) -> Result<(), OnnxError> {
    if p == Precision::Fp8 {
        return Err(OnnxError::Fp8Options("the text encoders export in fp32, fp16 or bf16, not fp8".into()));
    }
    Ok(())
}

/// Exports the CLIP text encoder of the component folder `dir` (with `plan`'s slots) into `out_dir`.
pub fn export_clip(dir: &Path, plan: Option<&SlotPlan>, opts: &TextEncoderOptions, out_dir: &Path) -> Result<ComponentManifest, OnnxError> {
    check_precision(opts.precision)?;
    let w = ComponentWeights::open(dir)?;
    let cfg = ClipTextConfig::from_hf(w.config_path(), w.config())?;
    let dtype = opts.precision.float_dtype();
    let built = finish_graph(build_clip(&w, &cfg, plan, dtype)?, "clip_text_model");
    let spec = ComponentExport {
        config: ComponentConfig::ClipText(cfg),
        precision: opts.precision,
        lora: plan.map(|p| LoraSlots::from_plan(p, dtype)),
        weight_files: w.files(),
        lora_files: if plan.is_some() { opts.lora_files.clone() } else { Vec::new() },
        hash_sources: opts.hash_sources,
    };
    export_component(&built, &spec, out_dir)
}

/// Exports the T5 encoder of the component folder `dir` (`opts.t5_max_length` tokens) into `out_dir`.
pub fn export_t5(dir: &Path, opts: &TextEncoderOptions, out_dir: &Path) -> Result<ComponentManifest, OnnxError> {
    check_precision(opts.precision)?;
    let w = ComponentWeights::open(dir)?;
    let cfg = T5EncoderConfig::from_hf(w.config_path(), w.config(), opts.t5_max_length)?;
    let dtype = opts.precision.float_dtype();
    let built = finish_graph(build_t5(&w, &cfg, dtype)?, "t5_encoder");
    let spec = ComponentExport {
        config: ComponentConfig::T5Encoder(cfg),
        precision: opts.precision,
        lora: None,
        weight_files: w.files(),
        lora_files: Vec::new(),
        hash_sources: opts.hash_sources,
    };
    export_component(&built, &spec, out_dir)
}

/// Exports the VAE decoder of the diffusers `AutoencoderKL` folder `dir` (`vae/`) into `out_dir`
/// (graph contract in [`vae`]: raw latents in, scaling/shift inside, image in about [-1, 1] out).
/// FLUX.1's VAE asks for float32 (`force_upcast`); fp16/bf16 are allowed with a warning.
pub fn export_vae(dir: &Path, precision: Precision, hash_sources: bool, out_dir: &Path) -> Result<ComponentManifest, OnnxError> {
    if precision == Precision::Fp8 {
        return Err(OnnxError::Fp8Options("the VAE decoder exports in fp32, fp16 or bf16, not fp8".into()));
    }
    let w = ComponentWeights::open(dir)?;
    let cfg = vae::VaeDecoderConfig::try_from(&w)?;
    if cfg.force_upcast && precision != Precision::Fp32 {
        tracing::warn!(vae = %dir.display(), ?precision, "this VAE's config asks for float32 (force_upcast); exporting in lower precision anyway");
    }
    let built = vae::build_decoder_model(&w, &cfg, precision.float_dtype())?;
    let spec = ComponentExport {
        config: ComponentConfig::VaeDecoder(crate::manifest::VaeDecoderConfig {
            latent_channels: cfg.latent_channels,
            out_channels: cfg.out_channels,
            spatial_factor: 1 << cfg.block_out_channels.len().saturating_sub(1),
            scaling_factor: cfg.scaling_factor,
            shift_factor: cfg.shift_factor,
        }),
        precision,
        lora: None,
        weight_files: w.files(),
        lora_files: Vec::new(),
        hash_sources,
    };
    export_component(&built, &spec, out_dir)
}

/// Exports both text encoders of the diffusers FluxPipeline folder `pipeline_dir` into
/// `engine_dir/text_encoder/` (CLIP, with `clip_plan`'s slots) and `engine_dir/text_encoder_2/`
/// (T5), then copies `tokenizer/`, `tokenizer_2/` and `scheduler/` (each file atomically).
/// Every source folder is checked before anything is written.
pub fn export_text_encoders(
    pipeline_dir: &Path,
    clip_plan: Option<&SlotPlan>,
    opts: &TextEncoderOptions,
    engine_dir: &Path,
) -> Result<TextEncodersReport, OnnxError> {
    use crate::manifest::component::{TEXT_ENCODER_2_DIR, TEXT_ENCODER_DIR};
    check_precision(opts.precision)?;
    for d in COPIED_DIRS.iter().chain([&TEXT_ENCODER_DIR, &TEXT_ENCODER_2_DIR]) {
        let p = pipeline_dir.join(d);
        if !p.is_dir() {
            return Err(OnnxError::Component {
                path: p,
                message: "missing: a FluxPipeline folder has text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/ and scheduler/".into(),
            });
        }
    }
    let clip = export_clip(&pipeline_dir.join(TEXT_ENCODER_DIR), clip_plan, opts, &engine_dir.join(TEXT_ENCODER_DIR))?;
    let t5 = export_t5(&pipeline_dir.join(TEXT_ENCODER_2_DIR), opts, &engine_dir.join(TEXT_ENCODER_2_DIR))?;
    let mut copied_files = Vec::new();
    for d in COPIED_DIRS {
        copy_tree(&pipeline_dir.join(d), &engine_dir.join(d), Path::new(d), &mut copied_files)?;
    }
    if engine_dir.join(MANIFEST_FILE).is_file() {
        let mut m = crate::manifest::Manifest::load(engine_dir)?;
        for r in &copied_files {
            crate::manifest::integrity::upsert(&mut m.files, r.clone());
        }
        m.save(engine_dir)?;
    }
    let copied = copied_files.iter().map(|r| PathBuf::from(&r.path)).collect();
    Ok(TextEncodersReport { clip, t5, copied, copied_files })
}

/// Copies every regular file under `src` into `dst` (same relative paths), each atomically,
/// recording each file's size and BLAKE3 (path relative to the engine folder, `/`-separated).
fn copy_tree(src: &Path, dst: &Path, rel: &Path, copied: &mut Vec<FileRecord>) -> Result<(), OnnxError> {
    std::fs::create_dir_all(dst).map_err(io_err(FileOp::Create, dst))?;
    let mut entries: Vec<_> = std::fs::read_dir(src).map_err(io_err(FileOp::Read, src))?.collect::<Result<_, _>>().map_err(io_err(FileOp::Read, src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        if from.is_dir() {
            copy_tree(&from, &to, &rel.join(e.file_name()), copied)?;
        } else {
            let bytes = std::fs::read(&from).map_err(io_err(FileOp::Read, &from))?;
            crate::util::write_atomic(&to, &bytes)?;
            readable(&to)?;
            let path = rel.join(e.file_name()).components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
            copied.push(FileRecord { path, role: FileRole::Copied, bytes: bytes.len() as u64, blake3: crate::util::hash_bytes(&bytes) });
        }
    }
    Ok(())
}

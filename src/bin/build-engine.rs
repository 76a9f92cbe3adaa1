//! `build-engine`: checkpoint + LoRA files → ONNX (model.onnx + model.onnx.data) + manifest.json.
//!
//! The adapters given here define the LoRA slots (which modules, and the rank unless
//! `--max-rank` says); the slots are exported all-zero and the adapters are swapped in at run time.
//! A `--recipe engines/NAME.toml` supplies defaults for every flag (paths relative to the current
//! directory); flags given on the command line win.
//!
//! `--pipeline DIR` (a diffusers FluxPipeline folder) also exports its text encoders into
//! `OUT/text_encoder/` (CLIP-L, with LoRA slots for the adapters' CLIP modules and
//! `--text-encoder-targets` / `--text-encoder-lora-rank`) and `OUT/text_encoder_2/` (T5,
//! `--t5-max-length` tokens), and copies `tokenizer/`, `tokenizer_2/`, `scheduler/`. The
//! transformer comes from `--model`, else from the pipeline's `transformer/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::{Precision, WeightScale};
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::{Checkpoint, SlotPlan};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(name = "build-engine", about = "Export a FLUX.1 checkpoint with LoRA slots to ONNX (+ manifest)")]
struct Args {
    /// Checkpoint: BFL .safetensors file or diffusers folder (default: `--pipeline`'s transformer/).
    #[arg(long)]
    model: Option<PathBuf>,
    /// diffusers FluxPipeline folder: export its text encoders too and copy its tokenizers and
    /// scheduler config into the engine folder.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// T5 token length of the exported text encoder (FLUX.1-dev 512, schnell 256).
    #[arg(long)]
    t5_max_length: Option<usize>,
    /// Precision of the exported VAE decoder (default fp32: FLUX.1's VAE sets force_upcast).
    /// Needs --pipeline.
    #[arg(long, value_enum)]
    vae_precision: Option<Precision>,
    /// Precision of the exported text encoders. Default: `--precision`; for fp8 the transformer's
    /// float dtype (`--fp8-float`: bf16 for TensorRT, fp32 for ONNX Runtime CPU, which has no bf16 kernels).
    #[arg(long, value_enum)]
    text_encoder_precision: Option<Precision>,
    /// CLIP LoRA slot rank (default: the largest rank of the adapters' CLIP modules). Without
    /// CLIP adapters or --text-encoder-targets, slots go on every CLIP Linear module.
    #[arg(long)]
    text_encoder_lora_rank: Option<usize>,
    /// CLIP slot targets: presets attn, mlp, all, or module globs
    /// (`text_model.encoder.layers.N.self_attn.q_proj`, ...) (repeatable).
    #[arg(long = "text-encoder-targets", num_args = 1..)]
    text_encoder_targets: Vec<String>,
    /// LoRA file, optionally `FILE:strength` (repeatable). Defines the slots.
    #[arg(long = "lora")]
    loras: Vec<String>,
    /// Slot rank (default: the largest rank of the given adapters).
    #[arg(long)]
    max_rank: Option<usize>,
    /// Extra slot targets: presets attn, mlp, mod, blocks, all, or module globs (repeatable).
    #[arg(long = "targets", num_args = 1..)]
    targets: Vec<String>,
    /// Precision of the transformer (fp8: E4M3 Q/DQ, needs --calib or --calib-in; default fp32).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Recipe TOML with defaults for the flags above.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Output folder (engines/NAME/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the BLAKE3 of the source files in the manifest.
    #[arg(long)]
    no_hash: bool,
    /// FP8 weight scales: one per output channel (default) or one per tensor.
    #[arg(long, value_enum)]
    fp8_weight_scale: Option<WeightScale>,
    /// FP8: Q/DQ on the attention Q, K, V inputs too (off by default).
    #[arg(long)]
    fp8_attention: bool,
    /// FP8: float dtype of the unquantized parts: bf16 (TensorRT, default) or fp32 (ONNX Runtime CPU).
    #[arg(long, value_enum)]
    fp8_float: Option<Fp8Float>,
    /// FP8 calibration: number of (prompt embedding, timestep) samples (required for fp8 unless
    /// --calib-prompts gives the prompts: then 4 per prompt).
    #[arg(long, value_name = "N")]
    calib: Option<usize>,
    /// FP8 calibration on real conditioning: a text file of prompts (one per line; blank lines
    /// and lines starting with `#` skipped), encoded by the pipeline's own CLIP and T5 as the
    /// engine folder exports them (needs --pipeline; they must be able to run on ONNX Runtime's
    /// CPU provider: fp32 text encoders, e.g. --fp8-float fp32 or --text-encoder-precision fp32).
    #[arg(long, value_name = "FILE", conflicts_with = "calib_data")]
    calib_prompts: Option<PathBuf>,
    /// FP8 calibration seed.
    #[arg(long, default_value_t = 0)]
    calib_seed: u64,
    /// FP8 calibration data: safetensors with encoder_hidden_states [N,S,4096] and
    /// pooled_projections [N,768], or DIR/encoder_hidden_states.npy (+ pooled_projections.npy).
    #[arg(long, value_name = "FILE")]
    calib_data: Option<PathBuf>,
    /// FP8 calibration image size in pixels (square, multiple of 16).
    #[arg(long, default_value_t = 512)]
    calib_res: usize,
    /// FP8 calibration T5 length when no --calib-data is given.
    #[arg(long, default_value_t = 512)]
    calib_txt_len: usize,
    /// ONNX Runtime library for calibration (default ORT_DYLIB_PATH).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// FP8: save the calibration (activation amax per point + settings) as JSON.
    #[arg(long, value_name = "FILE")]
    calib_out: Option<PathBuf>,
    /// FP8: reuse a saved calibration instead of calibrating (no ONNX Runtime needed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["calib", "calib_data", "calib_prompts"])]
    calib_in: Option<PathBuf>,
    #[command(flatten)]
    trt: TrtArgs,
}

/// `engines/NAME.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Recipe {
    #[serde(default)]
    description: Option<String>,
    model: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    t5_max_length: Option<usize>,
    text_encoder_lora_rank: Option<usize>,
    #[serde(default)]
    text_encoder_targets: Vec<String>,
    text_encoder_precision: Option<Precision>,
    precision: Option<Precision>,
    max_rank: Option<usize>,
    #[serde(default)]
    targets: Vec<String>,
    out: Option<PathBuf>,
    #[serde(default)]
    lora: Vec<RecipeLora>,
    /// TensorRT optimization profile (read by the TensorRT build, not by the ONNX export).
    #[serde(default)]
    profile: Option<toml::Table>,
    /// TensorRT build settings (read by the TensorRT build).
    #[serde(default)]
    tensorrt: Option<toml::Table>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RecipeLora {
    path: PathBuf,
    #[serde(default = "one")]
    strength: f32,
}

/// `--fp8-float`: the dtype of an FP8 engine's unquantized parts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Fp8Float {
    Bf16,
    #[value(alias = "f32")]
    Fp32,
}

fn one() -> f32 {
    1.0
}

fn load_recipe(path: &Path) -> Result<Recipe> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read recipe", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid recipe", path.display()))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let recipe = match &args.recipe {
        Some(p) => load_recipe(p)?,
        None => Recipe::default(),
    };
    if let Some(d) = &recipe.description {
        tracing::info!(recipe = %d);
    }
    let t = &args.trt;
    if !t.tensorrt && !t.tensorrt_only {
        let given = [
            ("--trt-targets", !t.trt_targets.is_empty()),
            ("--strip-weights", t.strip_weights),
            ("--plan-file", t.plan_file.is_some()),
            ("--trt-lib-dir", t.trt_lib_dir.is_some()),
            ("--trt-report", t.trt_report.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            bail!("{flag} applies to the TensorRT build: add --tensorrt (or --tensorrt-only)");
        }
    }
    if args.trt.tensorrt_only {
        let out = args.out.clone().or(recipe.out.clone()).context("--out is required (or `out` in the recipe)")?;
        return tensorrt_stage(&out, &args.trt, &recipe);
    }
    let pipeline = args.pipeline.clone().or(recipe.pipeline.clone());
    if pipeline.is_none() {
        let given = [
            ("--vae-precision", args.vae_precision.is_some()),
            ("--t5-max-length", args.t5_max_length.is_some()),
            ("--text-encoder-lora-rank", args.text_encoder_lora_rank.is_some()),
            ("--text-encoder-targets", !args.text_encoder_targets.is_empty()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            bail!("{flag} applies to the pipeline components: give --pipeline DIR (or `pipeline` in the recipe)");
        }
    }
    if let Some(p) = &pipeline {
        // FLUX.1 latents need a 16-channel VAE with factor 8: refuse another one before writing anything.
        flux_trt::pipeline::VaeConfig::from_file(&p.join("vae").join("config.json"))
            .with_context(|| format!("--pipeline {}: its VAE cannot decode FLUX.1 latents", p.display()))?;
    }
    let pipeline_transformer = pipeline.as_ref().map(|p| p.join("transformer")).filter(|p| p.is_dir());
    let model = args
        .model
        .clone()
        .or(recipe.model.clone())
        .or(pipeline_transformer)
        .context("--model is required (or `model` in the recipe, or a --pipeline folder with transformer/)")?;
    let out = args.out.clone().or(recipe.out.clone()).context("--out is required (or `out` in the recipe)")?;
    let precision = args.precision.or(recipe.precision).unwrap_or(Precision::Fp32);
    let fp8_flags = args.fp8_weight_scale.is_some()
        || args.fp8_attention
        || args.fp8_float.is_some()
        || args.calib.is_some()
        || args.calib_data.is_some()
        || args.calib_prompts.is_some()
        || args.calib_in.is_some()
        || args.calib_out.is_some();
    if precision != Precision::Fp8 && fp8_flags {
        bail!("--fp8-*/--calib* flags need --precision fp8 (precision is {precision:?})");
    }
    let loras: Vec<(PathBuf, f32)> = if args.loras.is_empty() {
        recipe.lora.iter().map(|l| (l.path.clone(), l.strength)).collect()
    } else {
        args.loras.iter().map(|s| flux_trt::lora::parse_spec(s).context("--lora")).collect::<Result<_>>()?
    };
    let targets = if args.targets.is_empty() { recipe.targets.clone() } else { args.targets.clone() };
    let max_rank = args.max_rank.or(recipe.max_rank);

    let ckpt = Checkpoint::open(&model)?;
    tracing::info!(model = %model.display(), variant = %ckpt.config().variant, layout = ?ckpt.layout(), "checkpoint opened");
    let mut adapters = Vec::new();
    for (path, strength) in &loras {
        let a = flux_trt::lora::formats::load(path)?;
        tracing::info!(lora = %path.display(), format = %a.format, rank = a.max_rank(), modules = a.modules.len(), strength, "adapter loaded");
        adapters.push(a);
    }
    let refs: Vec<&flux_trt::Adapter> = adapters.iter().collect();
    let plan = SlotPlan::new(ckpt.config(), &refs, &PlanOptions { max_rank, targets })?;
    tracing::info!(slots = plan.slots.len(), max_rank = plan.max_rank, "slot plan");

    let te_precision = text_encoder_precision(&args, &recipe, precision)?;
    if pipeline.is_none() && args.text_encoder_precision.is_some() {
        bail!("--text-encoder-precision needs --pipeline (the text encoders come from the pipeline folder)");
    }
    // --calib-prompts runs the exported text encoders: they come first
    let prompts = args.calib_prompts.as_deref().map(read_prompts).transpose()?;
    if let Some(prompts) = &prompts {
        let p = pipeline.as_ref().context("--calib-prompts encodes the prompts with the pipeline's text encoders: give --pipeline DIR")?;
        text_encoders(&args, &recipe, p, &adapters, &loras, te_precision, &out)?;
        tracing::info!(prompts = prompts.len(), "text encoders exported first, for the calibration prompts");
    }
    let fp8 = if precision == Precision::Fp8 { Some(fp8_options(&args, &ckpt, &out, prompts.as_deref())?) } else { None };
    let opts = ExportOptions { precision, lora_files: loras.iter().map(|(p, _)| p.clone()).collect(), hash_sources: !args.no_hash, fp8 };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} weights [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let report = export(&ckpt, &plan, &opts, &out, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    tracing::info!(
        out = %out.display(),
        nodes = report.nodes,
        external_tensors = report.external_tensors,
        data_bytes = report.data_bytes,
        model_bytes = report.model_bytes,
        seconds = t0.elapsed().as_secs_f64(),
        "wrote {} and {}",
        report.model_path.display(),
        report.data_path.display()
    );
    if let Some(p) = pipeline.as_ref().filter(|_| prompts.is_none()) {
        text_encoders(&args, &recipe, p, &adapters, &loras, te_precision, &out)?;
    }
    if args.trt.tensorrt {
        tensorrt_stage(&out, &args.trt, &recipe)?;
    }
    Ok(())
}

/// Exports the pipeline's text encoders into `out/text_encoder*/` (CLIP slots for the adapters'
/// CLIP modules and the CLIP targets) and its VAE decoder into `out/vae_decoder/`, and copies its
/// tokenizers and scheduler.
fn text_encoders(
    args: &Args,
    recipe: &Recipe,
    pipeline: &Path,
    adapters: &[flux_trt::Adapter],
    loras: &[(PathBuf, f32)],
    te_precision: Precision,
    out: &Path,
) -> Result<()> {
    use flux_trt::onnx::components::{clip_config, export_text_encoders, TextEncoderOptions};
    let rank = args.text_encoder_lora_rank.or(recipe.text_encoder_lora_rank);
    let mut targets = if args.text_encoder_targets.is_empty() { recipe.text_encoder_targets.clone() } else { args.text_encoder_targets.clone() };
    let clip_adapters: Vec<&flux_trt::Adapter> = adapters.iter().filter(|a| !a.text_encoder.is_empty()).collect();
    if clip_adapters.is_empty() && targets.is_empty() && rank.is_some() {
        targets.push("all".into());
    }
    let plan = if clip_adapters.is_empty() && targets.is_empty() {
        None
    } else {
        let cfg = clip_config(pipeline)?;
        let plan = SlotPlan::for_clip(&cfg, &clip_adapters, &PlanOptions { max_rank: rank, targets })?;
        tracing::info!(slots = plan.slots.len(), max_rank = plan.max_rank, "CLIP slot plan");
        Some(plan)
    };
    let mut opts = TextEncoderOptions::new(te_precision);
    opts.hash_sources = !args.no_hash;
    opts.t5_max_length = args.t5_max_length.or(recipe.t5_max_length).unwrap_or(512);
    opts.lora_files = loras.iter().zip(adapters).filter(|(_, a)| !a.text_encoder.is_empty()).map(|((p, _), _)| p.clone()).collect();
    let t0 = std::time::Instant::now();
    let r = export_text_encoders(pipeline, plan.as_ref(), &opts, out)?;
    tracing::info!(
        precision = ?te_precision,
        clip_slots = r.clip.lora.as_ref().map_or(0, |l| l.slots.len()),
        t5_max_length = opts.t5_max_length,
        copied = r.copied.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "text encoders exported"
    );
    let vae_dir = pipeline.join("vae");
    let vae_precision = args.vae_precision.unwrap_or(Precision::Fp32);
    let t1 = std::time::Instant::now();
    let m = flux_trt::onnx::components::export_vae(&vae_dir, vae_precision, !args.no_hash, &out.join(flux_trt::manifest::component::VAE_DECODER_DIR))?;
    tracing::info!(precision = ?m.precision, seconds = t1.elapsed().as_secs_f64(), "VAE decoder exported");
    Ok(())
}

/// The text encoders' precision: `--text-encoder-precision` (or the recipe's), else the
/// transformer's, and for FP8 (which applies to the transformer's GEMMs only) the float dtype of
/// its unquantized parts, so that an engine made for one backend runs there whole (`--fp8-float
/// fp32`: ONNX Runtime CPU, which cannot run bf16; bf16: TensorRT).
fn text_encoder_precision(args: &Args, recipe: &Recipe, precision: Precision) -> Result<Precision> {
    use flux_trt::tensor::DType;
    if let Some(p) = args.text_encoder_precision.or(recipe.text_encoder_precision) {
        if p == Precision::Fp8 {
            bail!("--text-encoder-precision fp8: FP8 applies to the transformer only; use fp32, fp16 or bf16");
        }
        return Ok(p);
    }
    Ok(match precision {
        Precision::Fp8 if fp8_float_dtype(args)? == DType::F32 => Precision::Fp32,
        Precision::Fp8 => Precision::Bf16,
        p => p,
    })
}

// ---- TensorRT stage: exported folder → engine.plan + manifest.engine (flux_trt::engine) ----

/// TensorRT flags of `build-engine` (recipe defaults: `[profile]` and `[tensorrt]` tables).
#[derive(clap::Args, Debug)]
struct TrtArgs {
    /// After the ONNX export, build the TensorRT plan.
    #[arg(long)]
    tensorrt: bool,
    /// Only build the TensorRT plan of the already exported `--out` folder.
    #[arg(long)]
    tensorrt_only: bool,
    /// Compute-capability targets, e.g. `sm89,sm120` (TensorRT-RTX; recipe `tensorrt.targets`).
    /// (`--targets` is taken by the LoRA slot targets.)
    #[arg(long, value_delimiter = ',')]
    trt_targets: Vec<flux_trt::engine::Target>,
    /// Strip the refittable (LoRA slot) weights from the plan (`kSTRIP_PLAN`).
    #[arg(long)]
    strip_weights: bool,
    /// Plan file name inside `--out` (default engine.plan).
    #[arg(long)]
    plan_file: Option<String>,
    /// Folder of the TensorRT libraries (default: TRT_RTX_LIB_DIR / TENSORRT_LIB_DIR).
    #[arg(long)]
    trt_lib_dir: Option<PathBuf>,
    /// Write the build report (timings, plan size, layer counts, peak host RSS) as JSON here.
    #[arg(long)]
    trt_report: Option<PathBuf>,
}

/// Recipe `[tensorrt]` table.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RecipeTrt {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    strip_weights: bool,
    workspace_bytes: Option<usize>,
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn tensorrt_stage(out: &Path, args: &TrtArgs, recipe: &Recipe) -> Result<()> {
    use flux_trt::engine::{self, BuildOptions, ProfileRecipe, Target, TrtLibrary};
    let trt: RecipeTrt = match &recipe.tensorrt {
        Some(t) => toml::Value::Table(t.clone()).try_into().context("recipe [tensorrt]")?,
        None => RecipeTrt::default(),
    };
    let profile: ProfileRecipe = match &recipe.profile {
        Some(t) => toml::Value::Table(t.clone()).try_into().context("recipe [profile] (batch/img_seq/txt_seq = { min, opt, max })")?,
        None => ProfileRecipe::flux_1024(),
    };
    let targets = if args.trt_targets.is_empty() {
        trt.targets.iter().map(|s| s.parse()).collect::<Result<Vec<Target>, _>>()?
    } else {
        let mut t: Vec<Target> = Vec::new();
        args.trt_targets.iter().for_each(|x| {
            if !t.contains(x) {
                t.push(*x)
            }
        });
        t
    };
    let mut opts = BuildOptions::new(targets, profile);
    opts.strip_weights = args.strip_weights || trt.strip_weights;
    opts.workspace_bytes = trt.workspace_bytes;
    if let Some(f) = &args.plan_file {
        opts.plan_file = f.clone();
    }
    if let Some(d) = &args.trt_lib_dir {
        opts.library = TrtLibrary::in_dir(d);
    }
    let t0 = std::time::Instant::now();
    let report = engine::build(out, &opts)?;
    let wall_seconds = t0.elapsed().as_secs_f64();
    tracing::info!(
        plan = %report.plan_path.display(),
        bytes = report.plan_bytes,
        targets = ?report.engine.targets,
        stripped = report.engine.stripped_weights,
        build_seconds = report.build_seconds,
        attention_layers = report.network.attention_layers(),
        refittable = report.network.refittable.len(),
        "TensorRT plan written"
    );
    // Pipeline components exported next to the transformer go through the same builder.
    let mut components = serde_json::Map::new();
    for kind in [flux_trt::manifest::ComponentKind::ClipText, flux_trt::manifest::ComponentKind::T5Encoder, flux_trt::manifest::ComponentKind::VaeDecoder] {
        let dir = out.join(kind.dir_name());
        if !dir.join(flux_trt::manifest::MANIFEST_FILE).is_file() {
            continue;
        }
        let r = engine::build_component(&dir, &opts)?;
        tracing::info!(component = %kind, plan = %r.plan_path.display(), bytes = r.plan_bytes, refittable = r.network.refittable.len(), "TensorRT plan written");
        components.insert(kind.name().into(), serde_json::to_value(&r)?);
    }
    if let Some(path) = &args.trt_report {
        let json = serde_json::json!({ "report": report, "components": components, "wall_seconds": wall_seconds, "peak_rss_bytes": peak_rss_bytes() });
        flux_trt::util::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// `--fp8-float`: the float dtype of an FP8 engine's unquantized parts (default bf16).
fn fp8_float_dtype(args: &Args) -> Result<flux_trt::tensor::DType> {
    use flux_trt::tensor::DType;
    Ok(match args.fp8_float.unwrap_or(Fp8Float::Bf16) {
        Fp8Float::Bf16 => DType::BF16,
        Fp8Float::Fp32 => DType::F32,
    })
}

/// Calibrates (ONNX Runtime, fp32 calibration graph) and returns the FP8 export options.
fn fp8_options(args: &Args, ckpt: &Checkpoint, out: &Path, prompts: Option<&[String]>) -> Result<flux_trt::onnx::fp8::Fp8Options> {
    use flux_trt::onnx::fp8::{calib, Fp8Options};
    let weight_scale = args.fp8_weight_scale.unwrap_or_default();
    let float_dtype = fp8_float_dtype(args)?;
    if let Some(p) = &args.calib_in {
        let cal = flux_trt::onnx::fp8::Calibration::load(p, ckpt.config())?;
        tracing::info!(file = %p.display(), samples = cal.info.samples, "FP8 calibration loaded");
        return Ok(Fp8Options { weight_scale, float_dtype, attention: args.fp8_attention, activation_amax: cal.amax, calibration: Some(cal.info) });
    }
    let prompts = match (prompts, &args.calib_prompts) {
        (Some(p), Some(file)) => Some(embed_prompts(p, file, out, args.ort_library.clone())?),
        _ => None,
    };
    let n = match (args.calib, &prompts) {
        (Some(n), _) => n,
        (None, Some((d, _))) => 4 * d.n,
        (None, None) => bail!("--precision fp8 needs --calib N (calibration samples for the activation scales), --calib-prompts FILE or --calib-in FILE"),
    };
    if args.calib_res == 0 || !args.calib_res.is_multiple_of(16) {
        bail!("--calib-res {}: must be a positive multiple of 16", args.calib_res);
    }
    let grid = args.calib_res / 16;
    let mut c = calib::CalibOptions::new(n);
    c.seed = args.calib_seed;
    c.data = args.calib_data.clone();
    c.embeddings = prompts;
    c.img_hw = (grid, grid);
    c.txt_seq = args.calib_txt_len;
    c.library = args.ort_library.clone();
    c.work_dir = Some(out.to_path_buf());
    let t0 = std::time::Instant::now();
    let cal = calib::calibrate(ckpt, &c)?;
    tracing::info!(samples = n, points = cal.amax.len(), seconds = t0.elapsed().as_secs_f64(), "FP8 calibration");
    if let Some(p) = &args.calib_out {
        cal.save(p)?;
    }
    Ok(Fp8Options { weight_scale, float_dtype, attention: args.fp8_attention, activation_amax: cal.amax, calibration: Some(cal.info) })
}

/// `--calib-prompts FILE`: one prompt per line; blank lines and `#` comments skipped.
#[cfg(feature = "pipeline")]
fn read_prompts(file: &Path) -> Result<Vec<String>> {
    flux_trt::pipeline::text::read_prompt_file(file).context("--calib-prompts")
}

#[cfg(not(feature = "pipeline"))]
fn read_prompts(file: &Path) -> Result<Vec<String>> {
    bail!("--calib-prompts {}: this build has no text encoders (feature `pipeline`)", file.display())
}

/// The calibration prompts through the text encoders just exported into `out` (ONNX Runtime
/// CPU), as calibration embeddings with their description.
#[cfg(feature = "pipeline")]
fn embed_prompts(prompts: &[String], file: &Path, out: &Path, library: Option<PathBuf>) -> Result<(flux_trt::onnx::fp8::calib_data::CalibData, String)> {
    use flux_trt::pipeline::text::TextEncoders;
    use flux_trt::runtime::ort::SessionOptions;
    let t0 = std::time::Instant::now();
    let encoders = TextEncoders::open(out, &SessionOptions { library, ..Default::default() })
        .with_context(|| format!("--calib-prompts: opening the text encoders exported into {}", out.display()))?;
    let e = encoders.embed_all(prompts).with_context(|| format!("--calib-prompts {}", file.display()))?;
    tracing::info!(prompts = e.n, text_len = e.text_len, seconds = t0.elapsed().as_secs_f64(), "calibration prompts encoded");
    let data = flux_trt::onnx::fp8::calib_data::CalibData { n: e.n, txt_seq: e.text_len, encoder_hidden_states: e.embeds, pooled_projections: e.pooled };
    Ok((data, format!("prompts {} ({} prompts, CLIP + T5 of the engine folder)", file.display(), prompts.len())))
}

#[cfg(not(feature = "pipeline"))]
fn embed_prompts(_: &[String], file: &Path, _: &Path, _: Option<PathBuf>) -> Result<(flux_trt::onnx::fp8::calib_data::CalibData, String)> {
    bail!("--calib-prompts {}: this build has no text encoders (feature `pipeline`)", file.display())
}

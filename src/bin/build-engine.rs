//! `build-engine`: checkpoint + LoRA files → ONNX (model.onnx + model.onnx.data) + manifest.json.
//!
//! The adapters given here define the LoRA slots (which modules, and the rank unless
//! `--max-rank` says); the slots are exported all-zero and the adapters are swapped in at run time.
//! A `--recipe engines/NAME.toml` supplies defaults for every flag (paths relative to the current
//! directory); flags given on the command line win.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::Precision;
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::{Checkpoint, SlotPlan};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(name = "build-engine", about = "Export a FLUX.1 checkpoint with LoRA slots to ONNX (+ manifest)")]
struct Args {
    /// Checkpoint: BFL .safetensors file or diffusers folder.
    #[arg(long)]
    model: Option<PathBuf>,
    /// LoRA file, optionally `FILE:strength` (repeatable). Defines the slots.
    #[arg(long = "lora")]
    loras: Vec<String>,
    /// Slot rank (default: the largest rank of the given adapters).
    #[arg(long)]
    max_rank: Option<usize>,
    /// Extra slot targets: presets attn, mlp, mod, blocks, all, or module globs (repeatable).
    #[arg(long = "targets", num_args = 1..)]
    targets: Vec<String>,
    /// fp32, fp16 or bf16.
    #[arg(long)]
    precision: Option<String>,
    /// Recipe TOML with defaults for the flags above.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Output folder (engines/NAME/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the SHA-256 of the source files in the manifest.
    #[arg(long)]
    no_hash: bool,
}

/// `engines/NAME.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Recipe {
    #[serde(default)]
    description: Option<String>,
    model: Option<PathBuf>,
    precision: Option<String>,
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

fn one() -> f32 {
    1.0
}

fn parse_lora(s: &str) -> Result<(PathBuf, f32)> {
    // `FILE:strength` only when the part after the last ':' parses as a number.
    if let Some((f, st)) = s.rsplit_once(':') {
        if let Ok(v) = st.parse::<f32>() {
            if !v.is_finite() {
                bail!("--lora {s}: strength {st} is not a finite number");
            }
            return Ok((PathBuf::from(f), v));
        }
    }
    Ok((PathBuf::from(s), 1.0))
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
    let _ = (&recipe.profile, &recipe.tensorrt);
    let model = args.model.clone().or(recipe.model.clone()).context("--model is required (or `model` in the recipe)")?;
    let out = args.out.clone().or(recipe.out.clone()).context("--out is required (or `out` in the recipe)")?;
    let precision_s = args.precision.clone().or(recipe.precision.clone()).unwrap_or_else(|| "fp32".into());
    let precision: Precision = precision_s.parse().map_err(anyhow::Error::msg)?;
    if precision == Precision::Fp8 {
        bail!("--precision fp8: fp8 lands with the FP8 issue");
    }
    let loras: Vec<(PathBuf, f32)> = if args.loras.is_empty() {
        recipe.lora.iter().map(|l| (l.path.clone(), l.strength)).collect()
    } else {
        args.loras.iter().map(|s| parse_lora(s)).collect::<Result<_>>()?
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

    let opts = ExportOptions { precision, lora_files: loras.iter().map(|(p, _)| p.clone()).collect(), hash_sources: !args.no_hash };
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
    Ok(())
}

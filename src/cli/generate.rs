//! `flux-trt generate`: text → PNG on a whole engine folder (transformer, text encoders, VAE
//! decoder, tokenizers, scheduler) with ONNX Runtime; one prompt, or a JSONL batch that reuses the
//! loaded engine and hot-swaps adapters between lines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use flux_trt::pipeline::batch::{BatchLine, LoraField};
use serde::Serialize;

use super::{LimitArgs, OrtArgs};

#[derive(Args, Clone, Debug)]
pub struct GenerateArgs {
    /// Engine folder made by `build-engine --pipeline` (transformer + text_encoder/ +
    /// text_encoder_2/ + vae_decoder/ + tokenizers + scheduler).
    #[arg(long, value_name = "DIR")]
    pub engine: PathBuf,
    /// The prompt (CLIP, and T5 unless --prompt-2 is given).
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// A different prompt for T5 (FluxPipeline's `prompt_2`).
    #[arg(long)]
    pub prompt_2: Option<String>,
    /// Batch: a JSONL file, one object per line: {"prompt": ..., "prompt_2"?, "lora"?: "FILE[:S]" or [..],
    /// "seed"?, "steps"?, "guidance"?, "width"?, "height"?, "out"?}; missing keys take the flags' values.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// LoRA adapter (FILE or FILE:STRENGTH, default 1); repeat to stack. In a batch: the default for lines without "lora".
    #[arg(long = "lora", value_name = "FILE[:S]")]
    pub loras: Vec<String>,
    /// Denoising steps (default: 28 for guidance-distilled models such as dev, 4 otherwise).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Guidance scale (dev-type models; ignored by schnell-type models).
    #[arg(long, default_value_t = 3.5)]
    pub guidance: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    #[arg(long, default_value_t = 1024)]
    pub height: usize,
    /// Initial latents (safetensors with `latents`, packed [1,S,64] or unpacked [1,16,H/8,W/8]) instead of seeded noise.
    #[arg(long, value_name = "FILE")]
    pub latents: Option<PathBuf>,
    /// Output PNG (single prompt).
    #[arg(long, value_name = "FILE", default_value = "out.png")]
    pub out: PathBuf,
    /// Output folder for a batch (lines without "out" are written as NNNN.png).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out_dir: PathBuf,
    /// Also write the timing summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub timings_json: Option<PathBuf>,
    /// Let CUDA use TF32 for fp32 GEMMs (faster, ~1e-3 relative error).
    #[arg(long)]
    pub tf32: bool,
    /// Transformer backend: `ort` (ONNX Runtime, CPU or --cuda) or `cuda` (the native CUDA
    /// backend, needs a build with the `cuda` feature; GPU from --cuda, default 0). The text
    /// encoders and the VAE decoder always run on ONNX Runtime: on the CPU, or on its CUDA
    /// provider with --cuda.
    #[arg(long, value_enum, default_value_t = super::TransformerBackend::Ort)]
    pub backend: super::TransformerBackend,
    #[command(flatten)]
    pub ort: OrtArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Per-image timing record (also the JSON summary's rows).
#[derive(Clone, Debug, Serialize)]
struct ImageTiming {
    out: PathBuf,
    adapters: Vec<String>,
    /// Adapter swap time on the image's critical path: the install only, when the set was staged
    /// in the background during the previous image (`pre_staged`).
    swap_ms: f64,
    pre_staged: bool,
    tokenize_ms: f64,
    encode_ms: f64,
    steps: usize,
    step_median_ms: f64,
    denoise_ms: f64,
    decode_ms: f64,
    total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(all(feature = "ort", feature = "pipeline"))]
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    use flux_trt::pipeline::engine::PipelineEngine;
    use flux_trt::pipeline::latents::Resolution;
    use flux_trt::pipeline::limits::{self, AttentionMemory};

    let (lines, single) = match (&args.prompt, &args.prompts) {
        (Some(p), None) => (vec![BatchLine { prompt: p.clone(), prompt_2: args.prompt_2.clone(), out: Some(args.out.clone()), ..Default::default() }], true),
        (None, Some(f)) => (flux_trt::pipeline::batch::read_batch(f)?, false),
        _ => bail!("give --prompt TEXT or --prompts FILE.jsonl"),
    };
    let opts = args.ort.options(args.tf32);
    // Every line's size against the limits before anything is loaded.
    let limits = args.limits.limits();
    for (i, line) in lines.iter().enumerate() {
        let res = Resolution::new(line.width.unwrap_or(args.width), line.height.unwrap_or(args.height)).with_context(|| format!("prompt {}", i + 1))?;
        if let Err(e) = limits.check(res.width, res.height, 1) {
            // The estimate needs only the transformer's manifest (a small JSON file).
            let e = match flux_trt::Manifest::load(&args.engine) {
                Ok(m) => {
                    let fused = args.ort.cuda.is_some() || args.backend == super::TransformerBackend::Cuda;
                    let attention = if fused { AttentionMemory::Fused } else { AttentionMemory::Materialized };
                    limits::with_estimate(e, limits::estimate_for(&m.model, res, 512, m.precision.float_dtype().size(), attention))
                }
                Err(_) => e,
            };
            return Err(anyhow::Error::from(e).context(format!("prompt {}", i + 1)));
        }
    }
    let t_open = Instant::now();
    if args.backend == super::TransformerBackend::Cuda {
        return generate_cuda(&args, &opts, limits, &lines, single);
    }
    let mut engine = PipelineEngine::open(&args.engine, &opts)?;
    engine.set_limits(limits);
    let open = t_open.elapsed();
    eprintln!("engine {} loaded on {} in {open:.2?}", args.engine.display(), opts.provider);
    generate_lines(&engine, &args, &lines, single, &opts.provider.to_string(), open)
}

/// `generate --backend cuda`: the transformer on the native CUDA backend, the text encoders and
/// the VAE decoder on ONNX Runtime with `opts`.
#[cfg(all(feature = "ort", feature = "pipeline", feature = "cuda"))]
fn generate_cuda(
    args: &GenerateArgs,
    opts: &flux_trt::runtime::ort::SessionOptions,
    limits: flux_trt::pipeline::Limits,
    lines: &[BatchLine],
    single: bool,
) -> anyhow::Result<()> {
    use flux_trt::pipeline::engine::PipelineEngine;

    let t_open = std::time::Instant::now();
    let mut engine = PipelineEngine::open_cuda(&args.engine, super::cuda_options(&args.ort)?, opts)?;
    engine.set_limits(limits);
    let gpu = engine.transformer().gpu().name();
    let open = t_open.elapsed();
    eprintln!(
        "engine {} loaded in {open:.2?}: transformer on {gpu} (native CUDA), text encoders and VAE on ONNX Runtime {}",
        args.engine.display(),
        opts.provider
    );
    generate_lines(&engine, args, lines, single, "cuda", open)
}

#[cfg(all(feature = "ort", feature = "pipeline", not(feature = "cuda")))]
fn generate_cuda(_: &GenerateArgs, _: &flux_trt::runtime::ort::SessionOptions, _: flux_trt::pipeline::Limits, _: &[BatchLine], _: bool) -> anyhow::Result<()> {
    bail!("this flux-trt was built without the `cuda` feature (native CUDA backend): cargo build --release --features cuda")
}

/// Generates every line on `engine` (any transformer backend), swapping adapters between lines:
/// the next line's set, when it differs, is staged on another thread while the current image
/// generates, so only its install is on the next image's critical path. `open` is the engine's
/// load time (first-image latency = open + the first image's total).
#[cfg(all(feature = "ort", feature = "pipeline"))]
fn generate_lines<T: flux_trt::runtime::Transformer>(
    engine: &flux_trt::pipeline::engine::PipelineEngine<T>,
    args: &GenerateArgs,
    lines: &[BatchLine],
    single: bool,
    backend: &str,
    open: Duration,
) -> anyhow::Result<()> {
    use flux_trt::lora::Adapter;
    use flux_trt::pipeline::generate::{write_png, GenerateRequest};
    use flux_trt::pipeline::latents::{load_latents, Resolution};
    use indicatif::{ProgressBar, ProgressStyle};

    let guidance_model = engine.transformer().manifest().model.variant.has_guidance();
    let default_steps = if guidance_model { 28 } else { 4 };

    // Load every adapter file once (errors name the file before anything runs).
    let mut cache: BTreeMap<PathBuf, Adapter> = BTreeMap::new();
    let mut plans: Vec<Vec<(PathBuf, f32)>> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let specs = line.lora.as_ref().map_or_else(|| args.loras.clone(), LoraField::specs);
        let mut set = Vec::new();
        for s in &specs {
            let (path, strength) = flux_trt::lora::parse_spec(s).with_context(|| format!("prompt {}", i + 1))?;
            if !cache.contains_key(&path) {
                let a = flux_trt::lora::load(&path)?;
                cache.insert(path.clone(), a);
            }
            set.push((path, strength));
        }
        plans.push(set);
    }
    if !single {
        std::fs::create_dir_all(&args.out_dir).with_context(|| format!("{}: cannot create", args.out_dir.display()))?;
    }

    let resolve = |set: &[(PathBuf, f32)]| -> Vec<(&Adapter, f32)> { set.iter().filter_map(|(p, s)| cache.get(p).map(|a| (a, *s))).collect() };
    let mut rows = Vec::with_capacity(lines.len());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut current: Option<&Vec<(PathBuf, f32)>> = None;
        // the next line's set, being staged while this line's image generates
        let mut ahead = None;
        for (i, (line, set)) in lines.iter().zip(&plans).enumerate() {
            let mut swap = Duration::ZERO;
            let mut pre_staged = false;
            if current != Some(set) {
                let staged = match ahead.take() {
                    Some(handle) => {
                        pre_staged = true;
                        std::thread::ScopedJoinHandle::join(handle).map_err(|_| anyhow::anyhow!("the adapter staging thread panicked"))??
                    }
                    None => {
                        let t = std::time::Instant::now();
                        let staged = engine.stage(&resolve(set))?;
                        swap += t.elapsed();
                        staged
                    }
                };
                swap += engine.install(&staged)?.total;
                current = Some(set);
            }
            if let Some(next) = plans.get(i + 1).filter(|n| *n != set) {
                let adapters = resolve(next);
                ahead = Some(scope.spawn(move || engine.stage(&adapters)));
            }
            let res = Resolution::new(line.width.unwrap_or(args.width), line.height.unwrap_or(args.height))?;
            let latents = match &args.latents {
                Some(f) => Some(load_latents(f, res)?),
                None => None,
            };
            let req = GenerateRequest {
                prompt: line.prompt.clone(),
                prompt_2: line.prompt_2.clone(),
                resolution: res,
                steps: line.steps.or(args.steps).unwrap_or(default_steps),
                guidance: line.guidance.unwrap_or(args.guidance),
                seed: line.seed.unwrap_or(args.seed),
                latents,
                keep_step_latents: false,
            };
            let bar = ProgressBar::new(req.steps as u64);
            bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed}").unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_message(format!("image {}/{}", i + 1, lines.len()));
            let g = engine.generate(&req, |_, _| {
                bar.inc(1);
                std::ops::ControlFlow::Continue(())
            })?;
            bar.finish_and_clear();
            for (enc, removed) in &g.truncated {
                eprintln!("warning: prompt {}: the {enc} tokenizer truncated: \"{removed}\"", i + 1);
            }
            let out = if single { args.out.clone() } else { args.out_dir.join(line.out.clone().unwrap_or_else(|| PathBuf::from(format!("{i:04}.png")))) };
            write_png(&out, &g.rgb8, g.width, g.height)?;
            let t = &g.timings;
            let row = ImageTiming {
                out: out.clone(),
                adapters: set.iter().map(|(p, s)| format!("{}:{s}", p.display())).collect(),
                swap_ms: ms(swap),
                pre_staged,
                tokenize_ms: ms(t.tokenize),
                encode_ms: ms(t.encode),
                steps: t.steps.len(),
                step_median_ms: ms(t.median_step()),
                denoise_ms: ms(t.denoise()),
                decode_ms: ms(t.decode),
                total_ms: ms(t.total() + swap),
            };
            eprintln!(
                "{}: swap {:.1} ms | encode {:.1} ms | denoise {} × {:.1} ms (median) | decode {:.1} ms | total {:.1} ms",
                out.display(),
                row.swap_ms,
                row.encode_ms + row.tokenize_ms,
                row.steps,
                row.step_median_ms,
                row.decode_ms,
                row.total_ms
            );
            rows.push(row);
        }
        Ok(())
    })?;
    if rows.len() > 1 {
        let med = |f: &dyn Fn(&ImageTiming) -> f64| {
            let mut v: Vec<f64> = rows.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        eprintln!(
            "summary ({} images): median encode {:.1} ms, step {:.1} ms, decode {:.1} ms, swap {:.2} ms (over swaps), total {:.1} ms",
            rows.len(),
            med(&|r| r.encode_ms + r.tokenize_ms),
            med(&|r| r.step_median_ms),
            med(&|r| r.decode_ms),
            {
                let mut s: Vec<f64> = rows.iter().map(|r| r.swap_ms).filter(|v| *v > 0.0).collect();
                s.sort_by(f64::total_cmp);
                s.get(s.len() / 2).copied().unwrap_or(0.0)
            },
            med(&|r| r.total_ms)
        );
    }
    if let Some(p) = &args.timings_json {
        let first_image_ms = ms(open) + rows.first().map_or(0.0, |r| r.total_ms);
        let json = serde_json::json!({ "engine": args.engine, "provider": backend, "open_ms": ms(open), "first_image_ms": first_image_ms, "images": rows });
        flux_trt::util::write_atomic(p, serde_json::to_string_pretty(&json)?.as_bytes()).with_context(|| format!("{}: cannot write", p.display()))?;
    }
    Ok(())
}

#[cfg(not(all(feature = "ort", feature = "pipeline")))]
pub fn run(_: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("this flux-trt was built without the `ort` and `pipeline` features")
}

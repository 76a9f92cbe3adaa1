//! Per-step cost of the denoising loop on the tiny engine (ONNX Runtime, CPU): exports the
//! repository's tiny dev transformer (attention LoRA slots) into a temporary folder, then runs
//! `pipeline::denoise` for `--steps` steps at `--width`×`--height` with `--txt-len` text tokens and
//! prints the per-step wall times (median, min) as JSON. The tiny model's compute is small, so
//! the step time is dominated by the per-step host work around the transformer call (input
//! copies, RoPE tables, validation, feeds) — the figure issue 11 asks to make O(1).
//!
//! ```text
//! FLUX_TRT_SKIP_INSTALL=1 source tools/env.sh
//! cargo run --example step_overhead -- --width 512 --height 512 --steps 20 --txt-len 512
//! ```

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use flux_trt::manifest::Precision;
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::pipeline::latents::Resolution;
use flux_trt::pipeline::{denoise, Conditioning, Schedule, SchedulerConfig};
use flux_trt::runtime::ort::FluxSession;
use flux_trt::runtime::{Slotted, Transformer};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 512)]
    width: usize,
    #[arg(long, default_value_t = 512)]
    height: usize,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 512)]
    txt_len: usize,
    /// Denoising runs; the statistics pool the steps of all of them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let a = Args::parse();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tmp = tempfile::tempdir()?;
    let ckpt = flux_trt::Checkpoint::open(&fixtures.join("models/dev-diffusers"))?;
    let lora = flux_trt::lora::load(&fixtures.join("loras/attn.peft.safetensors"))?;
    let plan = flux_trt::SlotPlan::new(ckpt.config(), &[&lora], &Default::default())?;
    let opts = ExportOptions { hash_sources: false, ..ExportOptions::new(Precision::Fp32) };
    export(&ckpt, &plan, &opts, tmp.path(), &mut |_, _| {})?;
    let session = FluxSession::builder(tmp.path()).with_threads(a.threads).build()?;
    session.swap(&[(&lora, 1.0)])?;

    let cfg = &session.manifest().model;
    let res = Resolution::new(a.width, a.height)?;
    let seq = res.image_seq_len();
    let noise = |n: usize, k: u32| (0..n).map(|i| ((i as f32 * 0.618 + k as f32).sin()) * 0.5).collect::<Vec<f32>>();
    let cond = Conditioning::new(noise(a.txt_len * cfg.context_dim, 1), a.txt_len, cfg.context_dim, noise(cfg.pooled_dim, 2), Some(3.5))?;
    let sched = SchedulerConfig::from_file(&fixtures.join("pipeline/flux-tiny/scheduler/scheduler_config.json"))?;
    let schedule = Schedule::flux(&sched, a.steps, seq)?;
    let mut steps = Vec::new();
    for _ in 0..a.runs {
        let mut last = Instant::now();
        let lease = session.lease();
        denoise(&session, &lease, &schedule, res, &cond, noise(seq * 64, 3), |_, _| {
            steps.push(last.elapsed());
            last = Instant::now();
            std::ops::ControlFlow::Continue(())
        })?;
    }
    // The first step of each run includes binding the request (once per generation).
    let mut sorted = steps.clone();
    sorted.sort();
    let report = serde_json::json!({
        "width": a.width, "height": a.height, "image_seq_len": seq, "txt_len": a.txt_len, "steps": a.steps, "runs": a.runs, "ort_threads": a.threads,
        "step_ms": {"median": ms(sorted[sorted.len() / 2]), "min": ms(sorted[0]), "max": ms(sorted[sorted.len() - 1])},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

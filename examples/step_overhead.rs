//! Per-step cost of the denoising loop on the tiny engine (ONNX Runtime, CPU): exports the
//! repository's tiny dev transformer (attention LoRA slots) into a temporary folder, then runs
//! `pipeline::denoise` for `--steps` steps at `--width`×`--height` with `--txt-len` text tokens and
//! prints the per-step wall times (median, min) as JSON. The tiny model's compute is small, so
//! the step time is dominated by the per-step host work around the transformer call (input
//! copies, RoPE tables, validation, feeds) — the figure issue 11 asks to make O(1).
//!
//! It also times, at FLUX.1's full shapes (1024², 512 text tokens), the request constants'
//! host work (`FluxInputs::for_request`: RoPE tables, copies of the encoder states, checks) that
//! the loop did on every step before issue 11 and now does once per request in `bind`.
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
    // The request constants at FLUX.1 full size: per step before issue 11, per request now.
    let full = flux_trt::FluxConfig::flux1(flux_trt::flux::Variant::Dev);
    let (txt, img) = (512, flux_trt::flux::img_ids(64, 64));
    let enc = noise(txt * full.context_dim, 4);
    let pooled = noise(full.pooled_dim, 5);
    let txt_ids = vec![[0f32; 3]; txt];
    let req = flux_trt::runtime::RequestInputs {
        batch: 1,
        image_seq_len: img.len(),
        text_len: txt,
        encoder_hidden_states: &enc,
        pooled_projections: &pooled,
        guidance: Some(3.5),
        txt_ids: &txt_ids,
        img_ids: &img,
    };
    let mut constants = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        std::hint::black_box(flux_trt::runtime::FluxInputs::for_request(&full, &req)?);
        constants.push(t0.elapsed());
    }
    constants.sort();
    // The first step of each run includes binding the request (once per generation).
    let mut sorted = steps.clone();
    sorted.sort();
    let report = serde_json::json!({
        "width": a.width, "height": a.height, "image_seq_len": seq, "txt_len": a.txt_len, "steps": a.steps, "runs": a.runs, "ort_threads": a.threads,
        "step_ms": {"median": ms(sorted[sorted.len() / 2]), "min": ms(sorted[0]), "max": ms(sorted[sorted.len() - 1])},
        "full_size_request_constants_ms": {"median": ms(constants[constants.len() / 2]), "min": ms(constants[0])},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

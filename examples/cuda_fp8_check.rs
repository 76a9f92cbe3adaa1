//! Full-size FP8 accuracy on the native CUDA backend (issue 13 items 1 and 4), driven by
//! `tools/device/fp8-full.sh` on the GPU machine. One synthetic 1024² request (512 text tokens,
//! noise constants and latents), adapters A and B (rank-64 attention slots):
//!
//! `cuda_fp8_check ref --engine BF16_DIR --adapters a,b --out ref.bin`
//!     the bf16 engine's outputs for base, A, B (f32, concatenated) — the yardstick.
//! `cuda_fp8_check fp8 --engine FP8_DIR --adapters a,b --reference ref.bin --json out.json --scales-out calib.json`
//!     1. calibration on the GPU: dynamic-scale steps over `--calib` samples (the flow-match
//!        σ schedule at 1024², latents σ·n₁ + (1−σ)·n₂, the request's constants) keeping each
//!        GEMM's largest activation scale (written to `--scales-out`, loaded by `cuda_bench --fp8-scales`);
//!     2. for dynamic scales, then static scales (the calibrated ones, or the engine's with
//!        `--engine-scales`): base, A, B vs the bf16 outputs (cosine, relative L2), the LoRA
//!        deltas (A − base) vs bf16's own, and A→B→A bit-exact on graph replays.
//!
//! `cuda_fp8_check fp8 ... --fp8-attention`
//!     the same with FP8 attention (`CudaOptions::fp8_attention`, cuDNN's fused E4M3 flash attention
//!     on Hopper) on top; given a bf16 engine (`--engine BF16_DIR`), it measures FP8 attention
//!     alone against the bf16 outputs (one pass: there are no activation scales to calibrate).
//!
//! Exit status 1 when a bar fails (cosine ≥ 0.995 base and with adapters, LoRA delta ≥ 0.99).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use flux_trt::runtime::cuda::{AmaxObserver, CudaOptions, CudaSession, Fp8Activations};
use flux_trt::runtime::{OwnedRequest, Slotted, Transformer};
use serde_json::{json, Value};

#[path = "../tests/fp8_support/mod.rs"]
mod fp8_support;
mod support;
use fp8_support::metrics;
use support::noise;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Ref {
        #[arg(long)]
        engine: PathBuf,
        #[arg(long, value_delimiter = ',', required = true)]
        adapters: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        shape: ShapeArgs,
    },
    Fp8 {
        #[arg(long)]
        engine: PathBuf,
        #[arg(long, value_delimiter = ',', required = true)]
        adapters: Vec<PathBuf>,
        #[arg(long)]
        reference: PathBuf,
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        scales_out: Option<PathBuf>,
        /// Calibration samples (dynamic-scale steps).
        #[arg(long, default_value_t = 8)]
        calib: usize,
        /// Static runs use the engine's activation scales instead of the GPU calibration.
        #[arg(long)]
        engine_scales: bool,
        /// FP8 attention (cuDNN's fused E4M3 flash attention, Hopper) in every run.
        #[arg(long)]
        fp8_attention: bool,
        /// Without Hopper's fast FP8 accumulation in the GEMMs (`CudaOptions::fp8_fast_accum`, on by default).
        #[arg(long)]
        fp8_precise_accum: bool,
        #[command(flatten)]
        shape: ShapeArgs,
    },
}

#[derive(clap::Args, Clone, Copy)]
struct ShapeArgs {
    #[arg(long, default_value_t = 1024)]
    res: usize,
    #[arg(long, default_value_t = 512)]
    txt_len: usize,
}

struct Setup {
    req: OwnedRequest,
    latents: Vec<f32>,
    timestep: f32,
}

fn setup(cfg: &flux_trt::FluxConfig, sh: ShapeArgs) -> Setup {
    let g = sh.res / 16;
    let req = OwnedRequest {
        batch: 1,
        encoder_hidden_states: noise(sh.txt_len * cfg.context_dim, 1),
        pooled_projections: noise(cfg.pooled_dim, 2),
        guidance: cfg.variant.has_guidance().then_some(3.5),
        txt_ids: vec![[0f32; 3]; sh.txt_len],
        img_ids: flux_trt::flux::img_ids(g, g),
    };
    Setup { req, latents: noise(g * g * cfg.in_channels, 3), timestep: 0.6 }
}

fn step(s: &CudaSession, bound: &mut flux_trt::runtime::cuda::Bound, latents: &[f32], t: f32, n_out: usize) -> anyhow::Result<Vec<f32>> {
    let mut out = vec![0f32; n_out];
    s.step(&s.lease(), bound, latents, t, &mut out)?;
    Ok(out)
}

/// base, A, B, A again (graph replays after one eager warm-up per set).
fn outputs(s: &CudaSession, adapters: &[flux_trt::lora::Adapter], st: &Setup) -> anyhow::Result<(Vec<Vec<f32>>, bool)> {
    let cfg = s.manifest().model.clone();
    let n_out = st.latents.len() / cfg.in_channels * cfg.out_channels;
    let mut bound = s.bind(&st.req.inputs())?;
    let sets: Vec<_> = std::iter::once(Ok(s.stage(&[])?)).chain(adapters.iter().map(|a| s.stage(&[(a, 1.0)]))).collect::<Result<_, _>>()?;
    let mut outs = Vec::new();
    for set in &sets {
        s.install(set)?;
        step(s, &mut bound, &st.latents, st.timestep, n_out)?;
        outs.push(step(s, &mut bound, &st.latents, st.timestep, n_out)?);
    }
    s.install(&sets[1])?;
    let again = step(s, &mut bound, &st.latents, st.timestep, n_out)?;
    let aba = again.iter().zip(&outs[1]).all(|(x, y)| x.to_bits() == y.to_bits());
    Ok((outs, aba))
}

fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    match Args::parse().cmd {
        Cmd::Ref { engine, adapters, out, shape } => {
            let t0 = Instant::now();
            let s = CudaSession::open(&engine, CudaOptions::default())?;
            let ads: Vec<_> = adapters.iter().map(|p| flux_trt::lora::load(p)).collect::<Result<_, _>>()?;
            let st = setup(&s.manifest().model, shape);
            let (outs, aba) = outputs(&s, &ads, &st)?;
            let bytes: Vec<u8> = outs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
            flux_trt::util::write_atomic(&out, &bytes)?;
            println!("bf16 reference: {} outputs, A→B→A bit-exact {aba}, {:.1} s", outs.len(), t0.elapsed().as_secs_f64());
        }
        Cmd::Fp8 { engine, adapters, reference, json, scales_out, calib, engine_scales, fp8_attention, fp8_precise_accum, shape } => {
            let ads: Vec<_> = adapters.iter().map(|p| flux_trt::lora::load(p)).collect::<Result<_, _>>()?;
            let bytes = std::fs::read(&reference)?;
            let refs: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let mut report = serde_json::Map::new();
            let mut failures = Vec::new();
            let mut calibrated: Option<BTreeMap<String, f32>> = None;
            // A float engine (no FP8 GEMMs): one pass, FP8 attention alone.
            let float_engine = flux_trt::manifest::Manifest::load(&engine)?.precision != flux_trt::manifest::Precision::Fp8;
            anyhow::ensure!(!float_engine || fp8_attention, "{}: a float engine has nothing in FP8 (give --fp8-attention)", engine.display());
            let passes: &[Fp8Activations] = if float_engine { &[Fp8Activations::Dynamic] } else { &[Fp8Activations::Dynamic, Fp8Activations::Static] };
            for &act in passes {
                let t0 = Instant::now();
                let scales = if act == Fp8Activations::Static && !engine_scales { calibrated.clone() } else { None };
                let mut opts = CudaOptions { fp8_activations: act, fp8_activation_scales: scales, fp8_attention, ..Default::default() };
                opts.fp8_fast_accum &= !fp8_precise_accum;
                let fp8_fast_accum = opts.fp8_fast_accum;
                let s = CudaSession::open(&engine, opts)?;
                let open_s = t0.elapsed().as_secs_f64();
                let cfg = s.manifest().model.clone();
                let st = setup(&cfg, shape);
                let n_out = st.latents.len() / cfg.in_channels * cfg.out_channels;
                let want: Vec<&[f32]> = refs.chunks_exact(n_out).collect();
                anyhow::ensure!(want.len() == ads.len() + 1, "{}: {} outputs of {n_out} values, expected {}", reference.display(), want.len(), ads.len() + 1);
                let mut r = serde_json::Map::new();
                r.insert("open_s".into(), json!(open_s));
                r.insert("fp8_attention".into(), json!(fp8_attention));
                r.insert("fp8_fast_accum".into(), json!(fp8_fast_accum));
                if act == Fp8Activations::Dynamic && !float_engine {
                    // calibration: the largest dynamic scale per GEMM over the σ schedule (base set)
                    let tc = Instant::now();
                    let mut bound = s.bind(&st.req.inputs())?;
                    let img_seq = st.latents.len() / cfg.in_channels;
                    let sigmas = flux_trt::onnx::fp8::calib::sigmas(calib.max(1), cfg.variant, img_seq);
                    let n2 = noise(st.latents.len(), 7);
                    let mut observer = AmaxObserver::default();
                    for sg in &sigmas {
                        let lat: Vec<f32> = st.latents.iter().zip(&n2).map(|(a, b)| sg * a + (1.0 - sg) * b).collect();
                        step(&s, &mut bound, &lat, *sg, n_out)?;
                        observer.observe(&s)?;
                    }
                    let best = observer.scales();
                    r.insert(
                        "calibration".into(),
                        json!({"samples": sigmas.len(), "sigmas": sigmas, "seconds": tc.elapsed().as_secs_f64(), "gemms": best.len()}),
                    );
                    if let Some(p) = &scales_out {
                        flux_trt::util::write_atomic(p, serde_json::to_string_pretty(&best)?.as_bytes())?;
                    }
                    calibrated = Some(best);
                }
                let (outs, aba) = outputs(&s, &ads, &st)?;
                r.insert("mode".into(), json!(format!("{:?}", s.fp8_mode())));
                let names = ["base", "A", "B"];
                for (i, (o, w)) in outs.iter().zip(&want).enumerate() {
                    let fp8_support::Metrics { cosine: c, rel_l2: l2, .. } = metrics(o, w);
                    r.insert(format!("{}_vs_bf16", names[i]), json!({"cosine": c, "rel_l2": l2, "finite": o.iter().all(|v| v.is_finite())}));
                    if c < 0.995 {
                        failures.push(format!("{act:?} {}: cosine {c} < 0.995 (rel L2 {l2})", names[i]));
                    }
                    if i > 0 {
                        let fp8_support::Metrics { cosine: dc, rel_l2: dl, .. } = metrics(&sub(o, &outs[0]), &sub(w, want[0]));
                        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                        let moved = norm(&sub(w, want[0])) / norm(w).max(f64::MIN_POSITIVE);
                        r.insert(format!("{}_lora_delta_vs_bf16", names[i]), json!({"cosine": dc, "rel_l2": dl, "bf16_delta_rel_to_output": moved}));
                        if dc < 0.99 {
                            failures.push(format!("{act:?} {} LoRA delta: cosine {dc} < 0.99", names[i]));
                        }
                    }
                }
                r.insert("a_b_a_bit_exact".into(), json!(aba));
                r.insert("attention_engines".into(), json!(s.attention_engines().into_iter().map(|(_, e)| e).collect::<Vec<_>>()));
                if !aba {
                    failures.push(format!("{act:?}: A→B→A not bit-exact"));
                }
                println!("{act:?}: {}", serde_json::to_string(&r)?);
                let key = if float_engine { "fp8_attention_only".to_string() } else { format!("{act:?}").to_lowercase() };
                report.insert(key, Value::Object(r));
            }
            report.insert("failures".into(), json!(failures));
            report.insert("passed".into(), json!(failures.is_empty()));
            flux_trt::util::write_atomic(&json, serde_json::to_string_pretty(&Value::Object(report))?.as_bytes())?;
            if !failures.is_empty() {
                eprintln!("FAILED: {failures:?}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

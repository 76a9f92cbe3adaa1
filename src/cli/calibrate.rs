//! `flux-trt calibrate`: FP8 activation scales measured on the GPU on real conditioning and
//! written into the engine folder. The engine's own CLIP and T5 (ONNX Runtime; its CUDA provider
//! with `--cuda`) encode the prompts; the transformer runs on the native CUDA backend with dynamic
//! activation scales. Sample `i` of `N = prompts × --per-prompt` is prompt `i mod M` at the `i`-th
//! σ of the `N`-step flow-match schedule, latents σ·n₁ + (1−σ)·n₂ from `--seed` — the samples of
//! `build-engine --calib` on ONNX Runtime ([`flux_trt::onnx::fp8::samples`]). Each quantized GEMM
//! keeps its largest input amax, and [`flux_trt::onnx::fp8::rescale::rescale`] writes the scales
//! into the model file and manifest in place (weights untouched). A full-size FP8 engine
//! calibrates this way in minutes where the ONNX Runtime calibration needs an fp32 copy of the
//! model and a CPU forward pass per sample.

use std::path::PathBuf;

use clap::Args;

use super::OrtArgs;

#[derive(Args, Clone, Debug)]
pub struct CalibrateArgs {
    /// FP8 pipeline engine folder (`build-engine --pipeline … --precision fp8`); its scales are
    /// replaced in place.
    #[arg(long, value_name = "DIR")]
    pub engine: PathBuf,
    /// Prompts, one per line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// Samples per prompt, spread over the schedule.
    #[arg(long, default_value_t = 4)]
    pub per_prompt: usize,
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    #[arg(long, default_value_t = 1024)]
    pub height: usize,
    /// Guidance scale of the samples (dev-type models).
    #[arg(long, default_value_t = 3.5)]
    pub guidance: f32,
    /// Seed of the sample latents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Measure and print, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Text encoders on ONNX Runtime (`--cuda N`: its CUDA provider, and the transformer on GPU N; default GPU 0).
    #[command(flatten)]
    pub ort: OrtArgs,
}

#[cfg(all(feature = "cuda", feature = "pipeline", feature = "ort"))]
pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    use anyhow::{bail, ensure, Context};
    use flux_trt::manifest::{CalibrationInfo, Manifest, Precision};
    use flux_trt::onnx::fp8::samples::{sigmas, Rng};
    use flux_trt::pipeline::latents::{txt_ids, Resolution};
    use flux_trt::pipeline::text::{read_prompt_file, TextEncoders};
    use flux_trt::runtime::cuda::{AmaxObserver, CudaSession, Fp8Activations};
    use flux_trt::runtime::{RequestInputs, Slotted, Transformer};

    let manifest = Manifest::load(&args.engine)?;
    if manifest.precision != Precision::Fp8 {
        bail!("{}: a {:?} engine has no activation scales; calibrate an FP8 engine (build-engine --precision fp8)", args.engine.display(), manifest.precision);
    }
    ensure!(args.per_prompt >= 1, "--per-prompt must be at least 1");
    let res = Resolution::new(args.width, args.height)?;
    let prompts = read_prompt_file(&args.prompts)?;

    let t0 = Instant::now();
    let text = TextEncoders::open(&args.engine, &args.ort.options(false)).context("the engine's text encoders")?;
    let e = text.embed_all(&prompts)?;
    drop(text);
    let encode_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let opts = flux_trt::runtime::cuda::CudaOptions { fp8_activations: Fp8Activations::Dynamic, ..super::cuda_options(&args.ort)? };
    let s = CudaSession::open(&args.engine, opts)?;
    let open_s = t1.elapsed().as_secs_f64();
    let cfg = s.manifest().model.clone();
    let img_ids = res.img_ids();
    let tids = txt_ids(e.text_len);
    let guidance = cfg.variant.has_guidance().then_some(args.guidance);
    let mut bound = Vec::with_capacity(e.n);
    let (ew, pw) = (e.text_len * cfg.context_dim, cfg.pooled_dim);
    ensure!(
        e.embeds.len() == e.n * ew && e.pooled.len() == e.n * pw,
        "the text encoders' widths do not match the transformer's (context {}, pooled {})",
        cfg.context_dim,
        pw
    );
    for j in 0..e.n {
        let inputs = RequestInputs {
            batch: 1,
            image_seq_len: img_ids.len(),
            text_len: e.text_len,
            encoder_hidden_states: &e.embeds[j * ew..(j + 1) * ew],
            pooled_projections: &e.pooled[j * pw..(j + 1) * pw],
            guidance,
            txt_ids: &tids,
            img_ids: &img_ids,
        };
        bound.push(s.bind(&inputs)?);
    }
    let n = e.n * args.per_prompt;
    let sig = sigmas(n, cfg.variant, img_ids.len());
    let mut rng = Rng::new(args.seed);
    let lease = s.lease();
    let mut observer = AmaxObserver::default();
    let bar = indicatif::ProgressBar::new(n as u64);
    let mut out = vec![0f32; img_ids.len() * cfg.out_channels];
    let t2 = Instant::now();
    for (i, &sigma) in sig.iter().enumerate() {
        let latents = rng.latents(sigma, img_ids.len() * cfg.in_channels);
        s.step(&lease, &mut bound[i % e.n], &latents, sigma, &mut out)?;
        observer.observe(&s).with_context(|| format!("sample {i} (σ = {sigma}, prompt {})", i % e.n + 1))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let steps_s = t2.elapsed().as_secs_f64();
    drop((lease, bound, s));
    let amax = observer.amax();

    let (lo, hi) = amax.values().fold((f32::INFINITY, 0f32), |(lo, hi), a| (lo.min(*a), hi.max(*a)));
    eprintln!(
        "calibrated {} GEMMs on {} samples ({} prompts × {}, {}x{}): amax {lo:.4}–{hi:.4}; text encoders {encode_s:.1} s, session {open_s:.1} s, steps {steps_s:.1} s",
        amax.len(),
        n,
        e.n,
        args.per_prompt,
        res.width,
        res.height
    );
    if args.dry_run {
        for (g, a) in amax {
            println!("{g}\t{a}");
        }
        return Ok(());
    }
    let info = CalibrationInfo {
        samples: n,
        seed: args.seed,
        data: Some(format!("prompts {} ({} prompts), native CUDA backend, dynamic scales (flux-trt calibrate)", args.prompts.display(), e.n)),
        img_seq: img_ids.len(),
        txt_seq: e.text_len,
        sigmas: sig,
    };
    let t3 = Instant::now();
    flux_trt::onnx::fp8::rescale::rescale(&args.engine, amax, info)?;
    eprintln!("wrote the scales into {} in {:.2} s", args.engine.display(), t3.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(not(all(feature = "cuda", feature = "pipeline", feature = "ort")))]
pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    anyhow::bail!("{}: `flux-trt calibrate` runs the native CUDA backend and the text encoders: build with --features cuda,pipeline", args.engine.display())
}

//! Calibration (feature `ort`): runs the fp32 calibration graph
//! ([`crate::onnx::build_calibration_model`]) on ONNX Runtime over `N` (prompt embedding,
//! timestep) samples and keeps, per quantization point, the largest `max|input|` seen.
//!
//! Sample `i` of `N`:
//! - σ = the `i`-th sigma of diffusers' FluxPipeline `N`-step flow-match schedule
//!   (`linspace(1, 1/N, N)`, with the dynamic exponential shift `mu = m·img_seq + b` for
//!   guidance-distilled models, unshifted for schnell), timestep input = σ;
//! - `hidden_states` = σ·n₁ + (1−σ)·n₂ (n₁, n₂ standard normal: noise and a stand-in latent);
//! - `encoder_hidden_states` / `pooled_projections`: row `i mod M` of the `M` real prompt
//!   embeddings ([`CalibOptions::embeddings`]: `build-engine --calib-prompts` runs the pipeline's
//!   own CLIP and T5 over a prompt file) or of `--calib-data`, else standard normal (a stand-in:
//!   real T5/CLIP embeddings give better scales). Prompt `j` thus meets σ_j, σ_{j+M}, … — with
//!   `N = k·M` samples every prompt is seen at `k` points spread over the schedule;
//! - `guidance` = [`CalibOptions::guidance`] for guidance-distilled models;
//! - RoPE from all-zero text ids and the `img_h × img_w` packed image grid.
//!
//! Every random number comes from one SplitMix64 stream seeded with `seed` (Box–Muller normals),
//! so the scales are reproducible from the seed. The calibration graph is written (fp32) into a
//! temporary folder inside `work_dir` (default: the system temp dir) and deleted afterwards.
//!
//! Cost: that folder holds an fp32 copy of the model (4 bytes per parameter, ≈ 48 GB for
//! FLUX.1-dev) and every sample is a full forward pass on ONNX Runtime's CPU provider; calibrate
//! once (`build-engine --calib-out`) and reuse the result (`--calib-in`) for further exports.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::{Session, SessionInputValue};
use ::ort::value::TensorRef;

pub use super::samples::sigmas;
use super::samples::Rng;
use super::{amax_output, attention_points, calib_data, quantized_gemms, Calibration, CalibrationInfo, Fp8Error};
use crate::checkpoint::Checkpoint;
use crate::flux::FluxConfig;
use crate::onnx::OnnxError;

/// Calibration settings.
#[derive(Clone, Debug)]
pub struct CalibOptions {
    pub samples: usize,
    pub seed: u64,
    /// Real prompt embeddings from a file (see [`calib_data`]).
    pub data: Option<PathBuf>,
    /// Real prompt embeddings computed by the caller (takes precedence over `data`), with what
    /// they are (recorded in [`CalibrationInfo::data`], e.g. the prompt file).
    pub embeddings: Option<(calib_data::CalibData, String)>,
    /// Packed image grid (pixel height / 16, pixel width / 16).
    pub img_hw: (usize, usize),
    /// Text length when no data file is given.
    pub txt_seq: usize,
    pub guidance: f32,
    /// `libonnxruntime` (default `ORT_DYLIB_PATH`).
    pub library: Option<PathBuf>,
    pub threads: Option<usize>,
    pub work_dir: Option<PathBuf>,
}

impl CalibOptions {
    /// `samples` samples at 512×512 (32×32 packed grid), T5 length 512, guidance 3.5, seed 0.
    pub fn new(samples: usize) -> Self {
        CalibOptions {
            samples,
            seed: 0,
            data: None,
            embeddings: None,
            img_hw: (32, 32),
            txt_seq: 512,
            guidance: 3.5,
            library: None,
            threads: None,
            work_dir: None,
        }
    }
}

fn ort_err<R>(what: &str) -> impl Fn(::ort::Error<R>) -> OnnxError + '_ {
    move |e| Fp8Error::Calibration(format!("{what}: ONNX Runtime: {}", e.message())).into()
}

/// Runs the calibration (see the module docs) and returns the activation amax per point.
pub fn calibrate(ckpt: &Checkpoint, opts: &CalibOptions) -> Result<Calibration, OnnxError> {
    let cfg: FluxConfig = ckpt.config().clone();
    if opts.samples == 0 {
        return Err(Fp8Error::Calibration("--calib needs at least 1 sample".into()).into());
    }
    let loaded = match &opts.embeddings {
        Some((d, what)) => {
            check(d, what, &cfg)?;
            None
        }
        None => opts.data.as_deref().map(|p| calib_data::load(p, &cfg)).transpose()?,
    };
    let data = opts.embeddings.as_ref().map(|(d, _)| d).or(loaded.as_ref());
    let (h, w) = opts.img_hw;
    let img_seq = h * w;
    let txt_seq = data.as_ref().map_or(opts.txt_seq, |d| d.txt_seq);
    if img_seq == 0 || txt_seq == 0 {
        return Err(Fp8Error::Calibration(format!("empty calibration shape: image grid {h}×{w}, text length {txt_seq}")).into());
    }
    let sig = sigmas(opts.samples, cfg.variant, img_seq);

    let library = crate::runtime::ort::library_path(opts.library.as_deref()).map_err(|e| Fp8Error::Calibration(crate::util::error_chain(&e)))?;
    let env = crate::runtime::ort::env::environment(&library).map_err(|e| Fp8Error::Calibration(crate::util::error_chain(&e)))?;
    let base = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).map_err(|e| crate::util::FileError::new(crate::util::FileOp::Create, &base, e))?;
    let tmp =
        tempfile::Builder::new().prefix("flux-trt-calib.").tempdir_in(&base).map_err(|e| crate::util::FileError::new(crate::util::FileOp::Create, &base, e))?;
    let built = crate::onnx::build_calibration_model(ckpt)?;
    let model_path = crate::onnx::write_model(&built, ckpt, tmp.path())?;
    drop(built);
    let what = model_path.display().to_string();
    let mut b = Session::builder(&env).map_err(ort_err(&what))?;
    if let Some(n) = opts.threads {
        b = b.with_intra_threads(n).map_err(ort_err(&what))?;
    }
    b = b.with_optimization_level(GraphOptimizationLevel::Level1).map_err(ort_err(&what))?;
    let mut session = b.commit_from_file(&model_path).map_err(ort_err(&what))?;

    let mut points = quantized_gemms(&cfg);
    points.extend(attention_points(&cfg));
    let mut amax: BTreeMap<String, f32> = points.iter().map(|p| (p.clone(), 0.0f32)).collect();
    let mut rng = Rng::new(opts.seed);
    let half = cfg.head_dim / 2;
    let (cos, sin) = crate::flux::rope_tables(&cfg, &vec![[0.0; 3]; txt_seq], &crate::flux::img_ids(h, w));
    for (i, &sigma) in sig.iter().enumerate() {
        let n_img = img_seq * cfg.in_channels;
        let hidden = rng.latents(sigma, n_img);
        let (ehs, pooled) = match &data {
            Some(d) => {
                let r = i % d.n;
                let e = txt_seq * cfg.context_dim;
                (d.encoder_hidden_states[r * e..(r + 1) * e].to_vec(), d.pooled_projections[r * cfg.pooled_dim..(r + 1) * cfg.pooled_dim].to_vec())
            }
            None => (rng.normals(txt_seq * cfg.context_dim), rng.normals(cfg.pooled_dim)),
        };
        let t = [sigma];
        let g = [opts.guidance];
        let mut inputs: Vec<(&str, Vec<usize>, &[f32])> = vec![
            ("hidden_states", vec![1, img_seq, cfg.in_channels], &hidden),
            ("encoder_hidden_states", vec![1, txt_seq, cfg.context_dim], &ehs),
            ("pooled_projections", vec![1, cfg.pooled_dim], &pooled),
            ("timestep", vec![1], &t),
        ];
        if cfg.variant.has_guidance() {
            inputs.push(("guidance", vec![1], &g));
        }
        inputs.push(("rope_cos", vec![txt_seq + img_seq, half], &cos));
        inputs.push(("rope_sin", vec![txt_seq + img_seq, half], &sin));
        let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (name, shape, vals) in &inputs {
            let v = TensorRef::from_array_view((shape.clone(), *vals)).map_err(ort_err(name))?;
            feeds.push((Cow::Borrowed(*name), v.into()));
        }
        let outputs = session.run(feeds).map_err(ort_err(&what))?;
        for p in &points {
            let name = amax_output(p);
            let v = outputs.get(&name).ok_or_else(|| Fp8Error::Calibration(format!("{what}: no output `{name}`")))?;
            let (_, vals) = v.try_extract_tensor::<f32>().map_err(ort_err(&name))?;
            let a = vals.first().copied().ok_or_else(|| Fp8Error::Calibration(format!("{what}: output `{name}` is empty")))?;
            if !a.is_finite() {
                return Err(Fp8Error::NonFiniteActivation { point: p.clone(), sample: i, sigma, value: a }.into());
            }
            let e = amax.entry(p.clone()).or_insert(0.0);
            *e = e.max(a);
        }
        tracing::debug!(sample = i, sigma, "calibration sample done");
    }
    let described = match &opts.embeddings {
        Some((_, what)) => Some(what.clone()),
        None => opts.data.as_ref().map(|p| p.display().to_string()),
    };
    let info = CalibrationInfo { samples: opts.samples, seed: opts.seed, data: described, img_seq, txt_seq, sigmas: sig };
    tracing::info!(samples = opts.samples, points = amax.len(), "calibration done");
    Ok(Calibration { amax, info })
}

/// Embeddings given in memory have the model's widths, consistent lengths and finite values.
fn check(d: &calib_data::CalibData, what: &str, cfg: &FluxConfig) -> Result<(), Fp8Error> {
    let bad = |m: String| Fp8Error::Calibration(format!("{what}: {m}"));
    if d.n == 0 || d.txt_seq == 0 {
        return Err(bad(format!("{} samples of {} tokens: both must be at least 1", d.n, d.txt_seq)));
    }
    if d.encoder_hidden_states.len() != d.n * d.txt_seq * cfg.context_dim {
        return Err(bad(format!("{} prompt-embedding values, expected {} × {} × {}", d.encoder_hidden_states.len(), d.n, d.txt_seq, cfg.context_dim)));
    }
    if d.pooled_projections.len() != d.n * cfg.pooled_dim {
        return Err(bad(format!("{} pooled values, expected {} × {}", d.pooled_projections.len(), d.n, cfg.pooled_dim)));
    }
    if d.encoder_hidden_states.iter().chain(&d.pooled_projections).any(|v| !v.is_finite()) {
        return Err(bad("non-finite embedding values".into()));
    }
    Ok(())
}

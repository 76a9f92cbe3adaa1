//! `selftest --backend tensorrt|cuda`: on this machine's GPU, export the tiny model with slots
//! for two adapters, open it on the backend (TensorRT: build its plan first), swap base → A → B →
//! A → base, and check: A → B → A and back to base are bit-exact; each adapter changes the
//! output; and, given a reference backend (any runtime [`Transformer`], e.g. ONNX Runtime, opened
//! on an fp32 export of the same model and adapters), the backend matches it. Everything runs
//! through the runtime interface: one request bound once, a lease per call.
//!
//! Sits above the runtime (it exports and builds); needs `export` and the backend's feature
//! (`tensorrt` or `cuda`), otherwise the entry point returns an error saying so.

use std::path::{Path, PathBuf};

use crate::engine::Target;
use crate::runtime::tensorrt::{SessionOptions, TrtError};
use crate::runtime::{RequestInputs, Transformer};

#[derive(Clone, Debug)]
pub struct SelftestOptions {
    /// Tiny FLUX checkpoint (the repository's `tests/fixtures/models/dev-bfl.safetensors`).
    pub model: PathBuf,
    /// Two adapters for that model (`tests/fixtures/loras/attn.peft.safetensors`, `mlp.peft...`).
    pub adapter_a: PathBuf,
    pub adapter_b: PathBuf,
    /// Where the export and the plan go.
    pub work_dir: PathBuf,
    pub session: SessionOptions,
    /// Plan targets; `None`: this GPU's compute capability.
    pub targets: Option<Vec<Target>>,
    /// Largest accepted max|Δ| / max|reference| against the reference backend.
    pub tolerance: f32,
}

/// Options of [`selftest_cuda`] (the native CUDA backend).
#[derive(Clone, Debug)]
pub struct CudaSelftestOptions {
    /// Tiny FLUX checkpoint (the repository's `tests/fixtures/models/dev-bfl.safetensors`).
    pub model: PathBuf,
    pub adapter_a: PathBuf,
    pub adapter_b: PathBuf,
    /// Where the exports go.
    pub work_dir: PathBuf,
    pub device: usize,
    /// The tested engine's precision (bf16: cuDNN fused attention + bf16 GEMMs; fp32: the fp32 path).
    pub precision: crate::manifest::Precision,
    /// Largest accepted relative L2 distance (‖Δ‖/‖reference‖) to the reference backend.
    pub tolerance: f32,
}

impl CudaSelftestOptions {
    /// The default bound for `precision`: 1e-2 for bf16 / fp16, 1e-4 for fp32 (the bounds the
    /// backend meets against the diffusers goldens).
    pub fn default_tolerance(precision: crate::manifest::Precision) -> f32 {
        match precision {
            crate::manifest::Precision::Fp32 => 1e-4,
            _ => 1e-2,
        }
    }
}

/// One line per check, e.g. `PASS  A→B→A restores A exactly: max|Δ| = 0`.
#[derive(Clone, Debug, Default)]
pub struct SelftestReport {
    /// `tensorrt` or `cuda`.
    pub backend: String,
    pub gpu: String,
    pub lines: Vec<String>,
    pub passed: bool,
}

impl SelftestReport {
    #[cfg_attr(not(all(feature = "export", any(feature = "tensorrt", feature = "cuda"))), allow(dead_code))]
    fn check(&mut self, ok: bool, what: String) {
        self.lines.push(format!("{}  {what}", if ok { "PASS" } else { "FAIL" }));
        self.passed &= ok;
    }
}

impl std::fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "selftest backend={} gpu={}", self.backend, self.gpu)?;
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        write!(f, "{}", if self.passed { "PASS" } else { "FAIL" })
    }
}

/// Deterministic request for `config` at batch 1, a 4×4 packed image grid and 8 text tokens.
#[derive(Clone, Debug)]
pub struct TinyRequest {
    pub encoder_hidden_states: Vec<f32>,
    pub pooled_projections: Vec<f32>,
    pub guidance: Option<f32>,
    pub txt_ids: Vec<[f32; 3]>,
    pub img_ids: Vec<[f32; 3]>,
    /// `hidden_states` `[1, 16, in_channels]`.
    pub latents: Vec<f32>,
    pub timestep: f32,
}

impl TinyRequest {
    pub fn new(config: &crate::FluxConfig) -> Self {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        };
        let (img, txt) = (16, 8);
        let latents = rand(img * config.in_channels);
        TinyRequest {
            encoder_hidden_states: rand(txt * config.context_dim),
            pooled_projections: rand(config.pooled_dim),
            guidance: config.variant.has_guidance().then_some(3.5),
            txt_ids: vec![[0.0; 3]; txt],
            img_ids: crate::flux::img_ids(4, 4),
            latents,
            timestep: 0.5,
        }
    }

    pub fn request(&self) -> RequestInputs<'_> {
        RequestInputs {
            batch: 1,
            image_seq_len: self.img_ids.len(),
            text_len: self.txt_ids.len(),
            encoder_hidden_states: &self.encoder_hidden_states,
            pooled_projections: &self.pooled_projections,
            guidance: self.guidance,
            txt_ids: &self.txt_ids,
            img_ids: &self.img_ids,
        }
    }
}

/// A reference backend for [`selftest`]: its name and how to open it on the engine folder.
pub struct Reference<'a, R> {
    pub name: String,
    pub open: &'a dyn Fn(&Path) -> crate::Result<R>,
}

#[cfg(not(all(feature = "tensorrt", feature = "export")))]
pub fn selftest<R: Transformer>(_opts: &SelftestOptions, _reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    Err(TrtError::NotCompiled.into())
}

/// Runs the self-test (see the module docs). `Err` when a step cannot run at all (no GPU,
/// build failure, ...); `Ok` with `passed == false` when a check fails.
#[cfg(all(feature = "tensorrt", feature = "export"))]
pub fn selftest<R: Transformer>(opts: &SelftestOptions, reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    use crate::engine::{self, BuildOptions, ProfileRecipe};
    use crate::lora::plan::PlanOptions;
    use crate::manifest::Precision;
    use crate::onnx::{export, ExportOptions};
    use crate::runtime::tensorrt::cuda::Gpu;
    use crate::runtime::tensorrt::TrtSession;
    use crate::{Checkpoint, SlotPlan};

    let gpu = Gpu::open(opts.session.device)?;
    let mut report = SelftestReport { backend: "tensorrt".into(), gpu: gpu.describe(), passed: true, ..Default::default() };
    let targets = match &opts.targets {
        Some(t) => t.clone(),
        None => {
            let (ma, mi) = gpu.compute_capability()?;
            let sm: Target = format!("sm{ma}{mi}").parse().map_err(|_| TrtError::Selftest {
                step: "target".into(),
                message: format!("{}: TensorRT-RTX plans cannot run on sm{ma}{mi}; run the self-test on an sm75–sm121 GPU other than sm90", report.gpu),
            })?;
            vec![sm]
        }
    };
    drop(gpu);

    let step = |step: &str, e: &dyn std::fmt::Display| TrtError::Selftest { step: step.into(), message: e.to_string() };
    let ckpt = Checkpoint::open(&opts.model).map_err(|e| step("model", &e))?;
    let load = |p: &Path| crate::lora::load(p).map_err(|e| step("adapter", &e));
    let (a, b) = (load(&opts.adapter_a)?, load(&opts.adapter_b)?);
    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions::default()).map_err(|e| step("slot plan", &e))?;
    let export_opts = ExportOptions { hash_sources: false, ..ExportOptions::new(Precision::Fp32) };
    export(&ckpt, &plan, &export_opts, &opts.work_dir, &mut |_, _| {}).map_err(|e| step("export", &e))?;
    let build_opts = BuildOptions { library: opts.session.library.clone(), ..BuildOptions::new(targets.clone(), ProfileRecipe::tiny()) };
    let built = engine::build(&opts.work_dir, &build_opts)?;
    report.lines.push(format!("      built {} for {targets:?}: {} bytes in {:.1} s", built.plan_path.display(), built.plan_bytes, built.build_seconds));

    let session = TrtSession::open(&opts.work_dir, &opts.session)?;
    let shape_err = || TrtError::Selftest { step: "output".into(), message: "shape".into() }.into();
    let reference = reference.map(|r| (r, opts.work_dir.clone()));
    swap_and_compare(&mut report, &session, "TensorRT", ckpt.config(), &a, &b, reference, Metric::MaxRelative(opts.tolerance), &shape_err)?;
    Ok(report)
}

/// How the backend's output is compared with the reference's.
#[cfg(all(feature = "export", any(feature = "tensorrt", feature = "cuda")))]
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "tensorrt"), allow(dead_code))]
enum Metric {
    /// max|Δ| / max|reference| ≤ bound.
    MaxRelative(f32),
    /// ‖Δ‖₂ / ‖reference‖₂ ≤ bound.
    RelL2(f32),
}

/// The shared part of both self-tests: base → A → B → A → base on `session` (one request bound
/// once, a lease per call), the exactness and effect checks, and the comparison of base, A and B
/// with the reference backend opened on the given folder.
#[cfg(all(feature = "export", any(feature = "tensorrt", feature = "cuda")))]
fn swap_and_compare<T: Transformer, R: Transformer>(
    report: &mut SelftestReport,
    session: &T,
    name: &str,
    config: &crate::FluxConfig,
    a: &crate::lora::Adapter,
    b: &crate::lora::Adapter,
    reference: Option<(Reference<'_, R>, PathBuf)>,
    metric: Metric,
    shape_err: &dyn Fn() -> crate::Error,
) -> crate::Result<()> {
    use crate::lora::Adapter;
    use crate::runtime::HostTensor;

    let tiny = TinyRequest::new(config);
    let shape = vec![1, tiny.img_ids.len(), config.out_channels];
    // One call through the runtime interface with the backend's current slot set.
    fn call<T: Transformer>(t: &T, bound: &mut T::Bound, tiny: &TinyRequest, shape: &[usize], err: &dyn Fn() -> crate::Error) -> crate::Result<HostTensor> {
        let mut out = vec![0f32; shape.iter().product()];
        t.step(&t.lease(), bound, &tiny.latents, tiny.timestep, &mut out)?;
        HostTensor::new(shape.to_vec(), out).ok_or_else(err)
    }
    let mut bound = session.bind(&tiny.request())?;
    let sets: [(&str, Vec<(&Adapter, f32)>); 5] =
        [("base", vec![]), ("A", vec![(a, 1.0)]), ("B", vec![(b, 1.0)]), ("A again", vec![(a, 1.0)]), ("base again", vec![])];
    let mut outs = Vec::new();
    let mut version = 0;
    for (label, set) in &sets {
        if *label != "base" {
            version = session.swap(set)?.version;
        }
        let out = call(session, &mut bound, &tiny, &shape, shape_err)?;
        report.lines.push(format!("      {label}: version {version}, max|sample| = {:.4e}", out.max_abs()));
        outs.push(out);
    }
    let diff = |x: &HostTensor, y: &HostTensor| x.max_abs_diff(y).unwrap_or(f32::INFINITY);
    report.check(outs[3].bit_eq(&outs[1]), format!("A→B→A restores A exactly: max|Δ| = {:.3e}", diff(&outs[3], &outs[1])));
    report.check(outs[4].bit_eq(&outs[0]), format!("swap back to base restores base exactly: max|Δ| = {:.3e}", diff(&outs[4], &outs[0])));
    let scale = outs[0].max_abs().max(f32::MIN_POSITIVE);
    report.check(diff(&outs[1], &outs[0]) > 1e-3 * scale, format!("adapter A changes the output: max|Δ| = {:.3e}", diff(&outs[1], &outs[0])));
    report.check(diff(&outs[2], &outs[1]) > 1e-3 * scale, format!("adapter B differs from A: max|Δ| = {:.3e}", diff(&outs[2], &outs[1])));

    let Some((r, dir)) = reference else {
        report.lines.push("SKIP  no reference backend given (build with the `ort` feature for the ONNX Runtime comparison)".into());
        return Ok(());
    };
    let rname = &r.name;
    let run_reference = |set: &[(&Adapter, f32)]| -> crate::Result<HostTensor> {
        let backend = (r.open)(&dir)?;
        backend.swap(set)?;
        let mut bound = backend.bind(&tiny.request())?;
        call(&backend, &mut bound, &tiny, &shape, shape_err)
    };
    for (i, (label, set)) in sets.iter().enumerate().take(3) {
        match run_reference(set) {
            Ok(want) => {
                let (value, bound, what) = match metric {
                    Metric::MaxRelative(t) => (diff(&outs[i], &want) / want.max_abs().max(f32::MIN_POSITIVE), t, "max|Δ|/max|ref|"),
                    Metric::RelL2(t) => (rel_l2(outs[i].data(), want.data()), t, "‖Δ‖/‖ref‖"),
                };
                report.check(value <= bound, format!("{label}: {name} vs {rname}: {what} = {value:.3e} (≤ {bound:.1e})"));
            }
            Err(e) => report.check(false, format!("{label}: {rname} failed: {e}")),
        }
    }
    Ok(())
}

/// ‖x − y‖₂ / ‖y‖₂ (f64 sums).
#[cfg(all(feature = "export", any(feature = "tensorrt", feature = "cuda")))]
fn rel_l2(x: &[f32], y: &[f32]) -> f32 {
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in x.iter().zip(y) {
        num += ((*a - *b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt() as f32
}

/// The self-test of the native CUDA backend (see the module docs): the tiny model exported at
/// `opts.precision` with slots for both adapters, opened with [`crate::runtime::cuda::CudaSession`];
/// the reference (if any) is opened on an fp32 export of the same model and adapters.
/// `Err` when a step cannot run at all (no GPU, a missing library, ...); `Ok` with
/// `passed == false` when a check fails.
#[cfg(all(feature = "cuda", feature = "export"))]
pub fn selftest_cuda<R: Transformer>(opts: &CudaSelftestOptions, reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    use crate::lora::plan::PlanOptions;
    use crate::manifest::Precision;
    use crate::onnx::{export, ExportOptions};
    use crate::runtime::cuda::{CudaError, CudaOptions, CudaSession};
    use crate::{Checkpoint, SlotPlan};

    let ckpt = Checkpoint::open(&opts.model)?;
    let (a, b) = (crate::lora::load(&opts.adapter_a)?, crate::lora::load(&opts.adapter_b)?);
    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions::default())?;
    let folder = |p: Precision| opts.work_dir.join(format!("{p:?}").to_lowercase());
    let mut exports = vec![opts.precision];
    if reference.is_some() && opts.precision != Precision::Fp32 {
        exports.push(Precision::Fp32);
    }
    for p in &exports {
        let export_opts = ExportOptions { hash_sources: false, ..ExportOptions::new(*p) };
        export(&ckpt, &plan, &export_opts, &folder(*p), &mut |_, _| {})?;
    }
    let t0 = std::time::Instant::now();
    let session = CudaSession::open(&folder(opts.precision), CudaOptions { device: opts.device, ..Default::default() })?;
    let mut report = SelftestReport { backend: "cuda".into(), gpu: session.gpu().name(), passed: true, ..Default::default() };
    report.lines.push(format!(
        "      opened {} ({:?}, {} slots) in {:.2} s",
        folder(opts.precision).display(),
        opts.precision,
        session.manifest().lora.slots.len(),
        t0.elapsed().as_secs_f64()
    ));
    let shape_err = || CudaError::Input { tensor: "sample".into(), message: "output shape".into() }.into();
    let reference = reference.map(|r| (r, folder(Precision::Fp32)));
    let name = format!("native CUDA {:?}", opts.precision);
    swap_and_compare(&mut report, &session, &name, ckpt.config(), &a, &b, reference, Metric::RelL2(opts.tolerance), &shape_err)?;
    Ok(report)
}

//! `selftest --backend tensorrt`: on a GPU that can run TensorRT plans, export the tiny model
//! with slots for two adapters, build its plan for this GPU, run it, swap base → A → B → A →
//! base, and check: A → B → A and back to base are bit-exact; each adapter changes the output;
//! and, given a reference backend (any runtime [`Transformer`], e.g. ONNX Runtime, opened on the
//! same engine folder), TensorRT matches it. Both run through the runtime interface: one request
//! bound once, a lease per call.
//!
//! Sits above the runtime (it exports and builds); needs features `tensorrt` and `export`,
//! otherwise [`selftest`] returns `NotCompiled`.

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

/// One line per check, e.g. `PASS  A→B→A restores A exactly: max|Δ| = 0`.
#[derive(Clone, Debug, Default)]
pub struct SelftestReport {
    pub gpu: String,
    pub lines: Vec<String>,
    pub passed: bool,
}

impl SelftestReport {
    #[cfg_attr(not(all(feature = "tensorrt", feature = "export")), allow(dead_code))]
    fn check(&mut self, ok: bool, what: String) {
        self.lines.push(format!("{}  {what}", if ok { "PASS" } else { "FAIL" }));
        self.passed &= ok;
    }
}

impl std::fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "selftest backend=tensorrt gpu={}", self.gpu)?;
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
    use crate::lora::Adapter;
    use crate::manifest::Precision;
    use crate::onnx::{export, ExportOptions};
    use crate::runtime::tensorrt::cuda::Gpu;
    use crate::runtime::tensorrt::TrtSession;
    use crate::runtime::{HostTensor, Slotted};
    use crate::{Checkpoint, SlotPlan};

    let gpu = Gpu::open(opts.session.device)?;
    let mut report = SelftestReport { gpu: gpu.describe(), passed: true, ..Default::default() };
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
    let tiny = TinyRequest::new(ckpt.config());
    let shape = vec![1, tiny.img_ids.len(), ckpt.config().out_channels];
    // One call through the runtime interface with the backend's current slot set.
    fn call<T: Transformer>(t: &T, bound: &mut T::Bound, tiny: &TinyRequest, shape: &[usize]) -> crate::Result<HostTensor> {
        let mut out = vec![0f32; shape.iter().product()];
        t.step(&t.lease(), bound, &tiny.latents, tiny.timestep, &mut out)?;
        HostTensor::new(shape.to_vec(), out).ok_or_else(|| TrtError::Selftest { step: "output".into(), message: "shape".into() }.into())
    }
    let mut bound = session.bind(&tiny.request())?;
    let sets: [(&str, Vec<(&Adapter, f32)>); 5] =
        [("base", vec![]), ("A", vec![(&a, 1.0)]), ("B", vec![(&b, 1.0)]), ("A again", vec![(&a, 1.0)]), ("base again", vec![])];
    let mut outs = Vec::new();
    for (label, set) in &sets {
        if *label != "base" {
            session.swap(set)?;
        }
        let out = call(&session, &mut bound, &tiny, &shape)?;
        report.lines.push(format!("      {label}: version {}, max|sample| = {:.4e}", session.version(), out.max_abs()));
        outs.push(out);
    }
    let diff = |x: &HostTensor, y: &HostTensor| x.max_abs_diff(y).unwrap_or(f32::INFINITY);
    report.check(outs[3].bit_eq(&outs[1]), format!("A→B→A restores A exactly: max|Δ| = {:.3e}", diff(&outs[3], &outs[1])));
    report.check(outs[4].bit_eq(&outs[0]), format!("swap back to base restores base exactly: max|Δ| = {:.3e}", diff(&outs[4], &outs[0])));
    let scale = outs[0].max_abs().max(f32::MIN_POSITIVE);
    report.check(diff(&outs[1], &outs[0]) > 1e-3 * scale, format!("adapter A changes the output: max|Δ| = {:.3e}", diff(&outs[1], &outs[0])));
    report.check(diff(&outs[2], &outs[1]) > 1e-3 * scale, format!("adapter B differs from A: max|Δ| = {:.3e}", diff(&outs[2], &outs[1])));

    match reference {
        Some(r) => {
            let name = &r.name;
            let run_reference = |set: &[(&Adapter, f32)]| -> crate::Result<HostTensor> {
                let backend = (r.open)(&opts.work_dir)?;
                backend.swap(set)?;
                let mut bound = backend.bind(&tiny.request())?;
                call(&backend, &mut bound, &tiny, &shape)
            };
            for (i, (label, set)) in sets.iter().enumerate().take(3) {
                match run_reference(set) {
                    Ok(want) => {
                        let rel = diff(&outs[i], &want) / want.max_abs().max(f32::MIN_POSITIVE);
                        report.check(rel <= opts.tolerance, format!("{label}: TensorRT vs {name}: max|Δ|/max|ref| = {rel:.3e} (≤ {:.1e})", opts.tolerance));
                    }
                    Err(e) => report.check(false, format!("{label}: {name} failed: {e}")),
                }
            }
        }
        None => report.lines.push("SKIP  no reference backend given (build with the `ort` feature for the ONNX Runtime comparison)".into()),
    }
    Ok(report)
}

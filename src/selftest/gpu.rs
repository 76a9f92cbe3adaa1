//! The GPU part of the self-test (features `tensorrt` and `export`): exports, builds, runs and
//! the checks listed in the parent module's docs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{default_targets, median, relative_error, Reference, SelftestOptions, SelftestReport, TinyRequest, SHAPES};
use crate::engine::{self, BuildOptions, ProfileRecipe, Target};
use crate::lora::plan::PlanOptions;
use crate::lora::Adapter;
use crate::manifest::Precision;
use crate::onnx::fp8::{self, Fp8Options, WeightScale};
use crate::onnx::{export, ExportOptions};
use crate::runtime::tensorrt::cuda::Gpu;
use crate::runtime::tensorrt::{TrtError, TrtSession};
use crate::runtime::{HostTensor, Slotted, Transformer};
use crate::tensor::DType;
use crate::{Checkpoint, SlotPlan};

/// Activation amax at every FP8 quantization point of the self-test's FP8 engine. Any value
/// works for the comparison (TensorRT and the reference quantize with the same scales); 4 keeps
/// the tiny model's activations mostly unsaturated.
const FP8_AMAX: f32 = 4.0;

/// Swaps timed for the refit latency.
const LATENCY_SWAPS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Bf16,
    Fp16,
    Fp8,
    Bf16Stripped,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Bf16, Kind::Fp16, Kind::Fp8, Kind::Bf16Stripped];

    fn label(self) -> &'static str {
        match self {
            Kind::Bf16 => "bf16",
            Kind::Fp16 => "fp16",
            Kind::Fp8 => "fp8",
            Kind::Bf16Stripped => "bf16-stripped",
        }
    }

    fn precision(self) -> Precision {
        match self {
            Kind::Bf16 | Kind::Bf16Stripped => Precision::Bf16,
            Kind::Fp16 => Precision::Fp16,
            Kind::Fp8 => Precision::Fp8,
        }
    }

    fn tolerance(self, opts: &SelftestOptions) -> f32 {
        match self {
            Kind::Bf16 | Kind::Bf16Stripped => opts.tolerance.bf16,
            Kind::Fp16 => opts.tolerance.fp16,
            Kind::Fp8 => opts.tolerance.fp8,
        }
    }
}

/// The adapter sets of one engine's sequence, in order.
struct Sets<'a> {
    a: &'a Adapter,
    b: &'a Adapter,
    nan: &'a Adapter,
}

/// Labels of the runs kept per engine (each at every shape).
const BASE: usize = 0;
const A: usize = 1;
const B: usize = 2;
const STACK: usize = 3;
const AFTER_FAIL: usize = 4;
const A_AGAIN: usize = 5;
const BASE_AGAIN: usize = 6;

/// One compared run: its index in the outputs, a label and the adapter set.
type Run<'a> = (usize, &'static str, Vec<(&'a Adapter, f32)>);

/// Strengths of the stacked set: both ≠ 1, one negative.
const STACK_STRENGTHS: (f32, f32) = (0.75, -1.25);

/// Runs the self-test (see the module docs). `Err` when it cannot start at all (no GPU, no
/// TensorRT library, unreadable fixtures); everything after that is recorded as checks, so one
/// engine failing to build still leaves the others checked.
pub fn selftest<R: Transformer>(opts: &SelftestOptions, reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    // The CUDA context stays alive for the whole self-test, builds included.
    let gpu = Gpu::open(opts.session.device)?;
    gpu.bind()?;
    let mut report = SelftestReport { gpu: gpu.describe(), ..Default::default() };
    let (major, minor) = gpu.compute_capability()?;
    let targets = match &opts.targets {
        Some(t) => t.clone(),
        None => default_targets(major, minor, &report.gpu)?,
    };
    let loaded = engine::trt::load(&opts.session.library)?;
    report.tensorrt = format!("{} {}", engine::trt::VARIANT, loaded.version);

    let step = |step: &str, e: &dyn std::fmt::Display| TrtError::Selftest { step: step.into(), message: e.to_string() };
    let ckpt = Checkpoint::open(&opts.model).map_err(|e| step("model", &e))?;
    let load = |p: &Path| crate::lora::load(p).map_err(|e| step("adapter", &e));
    let (a, b) = (load(&opts.adapter_a)?, load(&opts.adapter_b)?);
    let nan = nan_adapter(&a)?;
    let rank = |ad: &Adapter| ad.modules.values().map(|m| m.rank()).max().unwrap_or(0);
    // Room for A and B stacked on a module both target.
    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions { max_rank: Some(rank(&a) + rank(&b)), targets: Vec::new() })
        .map_err(|e| step("slot plan", &e))?;
    let sets = Sets { a: &a, b: &b, nan: &nan };
    let inputs: Vec<TinyRequest> = SHAPES.iter().map(|s| TinyRequest::at(ckpt.config(), *s)).collect();

    let mut full_bf16: Option<(u64, Vec<Vec<HostTensor>>)> = None;
    for kind in Kind::ALL {
        let label = kind.label();
        if kind == Kind::Fp8 && !engine::fp8_capable(major, minor) {
            report.not_applicable(label, "FP8 engine", format!("{} has compute capability {major}.{minor}; FP8 needs 8.9+", report.gpu));
            continue;
        }
        let dir = opts.work_dir.join(label);
        let built = match export_and_build(&ckpt, &plan, kind, &targets, &dir, opts) {
            Ok(b) => b,
            Err(e) => {
                report.failed_step(label, "export and build", e);
                continue;
            }
        };
        report.notes.push(format!("{label}: built {} ({} bytes) for {targets:?} in {:.1} s", built.0.display(), built.1, built.2));
        let outs = match engine_checks(&mut report, kind, &dir, &sets, &inputs, opts, reference.as_ref()) {
            Ok(o) => o,
            Err(e) => {
                report.failed_step(label, "session", e);
                continue;
            }
        };
        match kind {
            Kind::Bf16 => full_bf16 = Some((built.1, outs)),
            Kind::Bf16Stripped => stripped_checks(&mut report, built.1, &outs, full_bf16.as_ref(), opts),
            _ => {}
        }
    }
    drop(gpu);
    Ok(report)
}

/// `(plan path, plan bytes, build seconds)`.
fn export_and_build(
    ckpt: &Checkpoint,
    plan: &SlotPlan,
    kind: Kind,
    targets: &[Target],
    dir: &Path,
    opts: &SelftestOptions,
) -> Result<(PathBuf, u64, f64), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut export_opts = ExportOptions { hash_sources: false, ..ExportOptions::new(kind.precision()) };
    if kind == Kind::Fp8 {
        let cfg = ckpt.config();
        let mut f = Fp8Options::new(fp8::quantized_gemms(cfg).into_iter().map(|p| (p, FP8_AMAX)).collect());
        f.float_dtype = DType::F32;
        f.weight_scale = WeightScale::Channel;
        export_opts.fp8 = Some(f);
    }
    export(ckpt, plan, &export_opts, dir, &mut |_, _| {}).map_err(|e| format!("export: {e}"))?;
    let build_opts = BuildOptions {
        library: opts.session.library.clone(),
        strip_weights: kind == Kind::Bf16Stripped,
        ..BuildOptions::new(targets.to_vec(), ProfileRecipe::tiny())
    };
    let built = engine::build(dir, &build_opts).map_err(|e| format!("build: {e}"))?;
    Ok((built.plan_path, built.plan_bytes, built.build_seconds))
}

/// `A` with one value of its first module's down projection set to NaN.
fn nan_adapter(a: &Adapter) -> crate::Result<Adapter> {
    let mut nan = a.clone();
    nan.name = format!("{} with a NaN", a.name);
    let m = nan
        .modules
        .values_mut()
        .next()
        .ok_or_else(|| crate::Error::from(TrtError::Selftest { step: "adapter".into(), message: format!("{} has no transformer module", a.name) }))?;
    m.a.data[0] = f32::NAN;
    Ok(nan)
}

fn max_diff(x: &HostTensor, y: &HostTensor) -> String {
    x.max_abs_diff(y).map_or_else(|| format!("shapes {:?} vs {:?}", x.shape(), y.shape()), |d| format!("max|Δ| = {d:.3e}"))
}

/// Opens `dir`'s plan and runs the swap sequence at every shape; returns the outputs
/// `[run][shape]` (runs: BASE … BASE_AGAIN). `Err` when the session cannot open or a run fails.
fn engine_checks<R: Transformer>(
    report: &mut SelftestReport,
    kind: Kind,
    dir: &Path,
    sets: &Sets<'_>,
    inputs: &[TinyRequest],
    opts: &SelftestOptions,
    reference: Option<&Reference<'_, R>>,
) -> crate::Result<Vec<Vec<HostTensor>>> {
    let label = kind.label();
    let s = TrtSession::open(dir, &opts.session)?;
    // Each shape's request bound once; every run is one step with the slot set current then.
    let mut bound = inputs.iter().map(|x| s.bind(&x.request())).collect::<crate::Result<Vec<_>>>()?;
    let mut run_all = |s: &TrtSession| -> crate::Result<Vec<HostTensor>> { inputs.iter().zip(&mut bound).map(|(x, b)| x.step(s, b)).collect() };

    // The first runs of each shape compile its kernels; the repeat must be identical.
    let first = run_all(&s)?;
    let base = run_all(&s)?;
    for (i, shape) in SHAPES.iter().enumerate() {
        report.check(
            label,
            "repeated run is bit-exact",
            format!("two runs of the base model, {shape}"),
            "max|Δ| = 0",
            max_diff(&base[i], &first[i]),
            base[i].bit_eq(&first[i]),
        );
    }
    let (sa, sb) = STACK_STRENGTHS;
    let stack: Vec<(&Adapter, f32)> = vec![(sets.a, sa), (sets.b, sb)];
    let mut outs = vec![base];
    for set in [vec![(sets.a, 1.0)], vec![(sets.b, 1.0)], stack.clone()] {
        s.swap(&set)?;
        outs.push(run_all(&s)?);
    }
    // Forced failure: a NaN adapter must be refused and change nothing.
    let version = s.version();
    let failed = s.swap(&[(sets.nan, 1.0)]);
    outs.push(run_all(&s)?);
    report.check(
        label,
        "failing swap is refused",
        format!("swap({}) result and version (was {version})", sets.nan.name),
        "an error, version unchanged, session not poisoned",
        match &failed {
            Ok(r) => format!("accepted as version {}", r.version),
            Err(e) => format!("error `{e}`, version {}, poisoned {}", s.version(), s.is_poisoned()),
        },
        failed.is_err() && s.version() == version && !s.is_poisoned(),
    );
    for (i, shape) in SHAPES.iter().enumerate() {
        let (before, after) = (&outs[STACK][i], &outs[AFTER_FAIL][i]);
        report.check(
            label,
            "failing swap leaves outputs bit-exact",
            format!("run before vs after the failed swap, {shape}"),
            "max|Δ| = 0",
            max_diff(after, before),
            after.bit_eq(before),
        );
    }
    s.swap(&[(sets.a, 1.0)])?;
    outs.push(run_all(&s)?);
    s.swap(&[])?;
    outs.push(run_all(&s)?);

    for (i, shape) in SHAPES.iter().enumerate() {
        let scale = outs[BASE][i].max_abs().max(f32::MIN_POSITIVE);
        let d = |x: usize, y: usize| outs[x][i].max_abs_diff(&outs[y][i]).unwrap_or(f32::INFINITY);
        report.check(
            label,
            "A→B→A restores A bit-exactly",
            format!("run(A) before and after B and the stack, {shape}"),
            "max|Δ| = 0",
            max_diff(&outs[A_AGAIN][i], &outs[A][i]),
            outs[A_AGAIN][i].bit_eq(&outs[A][i]),
        );
        report.check(
            label,
            "swap back to base is bit-exact",
            format!("run(base) at open vs after every swap, {shape}"),
            "max|Δ| = 0",
            max_diff(&outs[BASE_AGAIN][i], &outs[BASE][i]),
            outs[BASE_AGAIN][i].bit_eq(&outs[BASE][i]),
        );
        let bound = format!("> 1e-3 × max|base| = {:.3e}", 1e-3 * scale);
        report.check(
            label,
            "adapter A changes the output",
            format!("run(A) vs run(base), {shape}"),
            &bound,
            format!("max|Δ| = {:.3e}", d(A, BASE)),
            d(A, BASE) > 1e-3 * scale,
        );
        report.check(
            label,
            "adapter B differs from A",
            format!("run(B) vs run(A), {shape}"),
            &bound,
            format!("max|Δ| = {:.3e}", d(B, A)),
            d(B, A) > 1e-3 * scale,
        );
        report.check(
            label,
            "stacked set differs from A alone",
            format!("run(A·{sa} + B·{sb}) vs run(A), {shape}"),
            &bound,
            format!("max|Δ| = {:.3e}", d(STACK, A)),
            d(STACK, A) > 1e-3 * scale,
        );
    }

    // Refit latency: full refits, A and B alternating.
    let mut ms = Vec::with_capacity(LATENCY_SWAPS);
    for k in 0..LATENCY_SWAPS {
        let ad = if k % 2 == 0 { sets.a } else { sets.b };
        let t0 = Instant::now();
        s.swap(&[(ad, 1.0)])?;
        s.refit_current()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let med = median(&ms).unwrap_or(f64::INFINITY);
    let (lo, hi) = ms.iter().fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    report.check(
        label,
        "refit latency",
        format!("median of {LATENCY_SWAPS} swaps (stage + install + upload + refit + wait), A/B alternating"),
        format!("≤ {} ms", opts.max_refit_ms),
        format!("median {med:.2} ms (min {lo:.2}, max {hi:.2})"),
        med <= opts.max_refit_ms,
    );

    reference_checks(report, kind, dir, sets, inputs, &outs, opts, reference);
    Ok(outs)
}

/// TensorRT vs the reference backend on the same engine folder, for base, A, B and the stack at
/// every shape. A reference that is missing or cannot run the graph is a SKIP, never a pass.
#[allow(clippy::too_many_arguments)]
fn reference_checks<R: Transformer>(
    report: &mut SelftestReport,
    kind: Kind,
    dir: &Path,
    sets: &Sets<'_>,
    inputs: &[TinyRequest],
    outs: &[Vec<HostTensor>],
    opts: &SelftestOptions,
    reference: Option<&Reference<'_, R>>,
) {
    let label = kind.label();
    let tol = kind.tolerance(opts);
    let (sa, sb) = STACK_STRENGTHS;
    let runs: [Run<'_>; 4] =
        [(BASE, "base", vec![]), (A, "A", vec![(sets.a, 1.0)]), (B, "B", vec![(sets.b, 1.0)]), (STACK, "A·0.75 + B·(−1.25)", vec![(sets.a, sa), (sets.b, sb)])];
    let Some(r) = reference else {
        report.skip(
            label,
            "TensorRT vs reference",
            "outputs of base, A, B and the stack at both shapes",
            "no reference backend (build flux-trt with the `ort` feature)",
        );
        return;
    };
    let name = format!("TensorRT vs {}", r.name);
    let backend = match (r.open)(dir) {
        Ok(b) => b,
        Err(e) => {
            report.skip(label, &name, "outputs of base, A, B and the stack at both shapes", format!("{} could not open the engine folder: {e}", r.name));
            return;
        }
    };
    for (run, what, set) in &runs {
        let swapped = backend.swap(set);
        for (i, shape) in SHAPES.iter().enumerate() {
            let compared = format!("sample of {what}, {shape}, same engine folder");
            let got = swapped.as_ref().map_err(|e| e.to_string()).and_then(|_| {
                let mut bound = backend.bind(&inputs[i].request()).map_err(|e| e.to_string())?;
                inputs[i].step(&backend, &mut bound).map_err(|e| e.to_string())
            });
            match got {
                Ok(want) => {
                    let rel = relative_error(&outs[*run][i], &want);
                    report.check(label, &name, compared, format!("max|Δ|/max|ref| ≤ {tol:.1e}"), format!("{rel:.3e}"), rel <= tol);
                }
                Err(e) => report.skip(label, &name, compared, format!("{} could not run it: {e}", r.name)),
            }
        }
    }
}

/// The stripped plan (slot weights refit from the engine folder's slot set at open) against
/// the full bf16 plan: smaller, and the same outputs within the bf16 bound (separate builds may
/// pick different kernels, so not bit-exact).
fn stripped_checks(report: &mut SelftestReport, bytes: u64, outs: &[Vec<HostTensor>], full: Option<&(u64, Vec<Vec<HostTensor>>)>, opts: &SelftestOptions) {
    let label = Kind::Bf16Stripped.label();
    let Some((full_bytes, full)) = full else {
        report.skip(label, "stripped vs full plan", "outputs of the stripped and the full bf16 plan", "the full bf16 plan did not run");
        return;
    };
    report.check(label, "stripped plan is smaller", "plan bytes, stripped vs full bf16", "<", format!("{bytes} vs {full_bytes}"), bytes < *full_bytes);
    let tol = opts.tolerance.bf16;
    for (run, what) in [(BASE, "base"), (A, "A"), (STACK, "the stack")] {
        for (i, shape) in SHAPES.iter().enumerate() {
            let rel = relative_error(&outs[run][i], &full[run][i]);
            report.check(
                label,
                "stripped plan matches the full plan",
                format!("sample of {what}, {shape}"),
                format!("max|Δ|/max|full| ≤ {tol:.1e}"),
                format!("{rel:.3e}"),
                rel <= tol,
            );
        }
    }
}

//! `selftest --backend tensorrt`: on a GPU that can run TensorRT plans, prove the contract a user
//! relies on with the tiny fixture model and two adapters (A, B), and write a JSON report.
//!
//! For each engine — **bf16**, **fp16**, **FP8** (Q/DQ GEMMs, fp32 elsewhere, so ONNX Runtime's
//! CPU provider can be the reference; only on sm89+, "n/a" below) and a **stripped** bf16 plan
//! (`kSTRIP_PLAN`: the slot weights are not in the plan and are refit from the engine folder's
//! slot set at open) — it exports the model, builds the plan for this GPU, opens it, and runs two
//! shapes (batch 1 at 4×4 packed tokens + 8 text tokens; batch 2 at 8×8 + 16) through the swaps
//! base → A → B → A·0.75 + B·(−1.25) → (a NaN adapter, which must fail) → A → base, checking:
//!
//! - a repeated run is bit-exact (kernels fixed before the first comparison);
//! - A changes the output and B differs from A (the slots reach the graph);
//! - the failing swap returns an error, keeps the version and leaves outputs bit-exact;
//! - A → B → A restores A, and the swap back restores the base model, bit-exactly;
//! - the stripped plan is smaller than the full one and matches its outputs;
//! - the median of 20 swaps (A/B alternating, each a full refit) is within a bound;
//! - every set and shape matches a [`Reference`] backend (any runtime [`Transformer`], e.g. ONNX
//!   Runtime) opened on the same engine folder.
//!
//! TensorRT and the reference both run through the runtime interface: each shape's request bound
//! once, a lease per step. Sits above the runtime (it exports and builds).
//!
//! Every check records what it compared, the bound and the measured value. The verdict is
//! PASS only when every check ran and passed: a skipped check (no reference backend, or one that
//! cannot run a graph) makes it INCOMPLETE, listing what was not verified.
//!
//! The GPU work needs features `tensorrt` and `export`; otherwise [`selftest`] returns
//! `NotCompiled`. `selftest_cuda` (features `cuda`, `export`) runs the same kind of checks on the
//! native CUDA backend. The report and the target choice are plain Rust (tested on CPU).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Target;
use crate::runtime::tensorrt::{SessionOptions, TrtError};
use crate::runtime::{HostTensor, OwnedRequest, RequestInputs, Transformer};

/// A reference backend for [`selftest`]: its name and how to open it on an engine folder.
pub struct Reference<'a, R> {
    pub name: String,
    pub open: &'a dyn Fn(&Path) -> crate::Result<R>,
}

/// Bounds on max|Δ| / max|reference| against the reference backend, per engine precision.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    pub bf16: f32,
    pub fp16: f32,
    pub fp8: f32,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { bf16: 3e-2, fp16: 1e-2, fp8: 8e-2 }
    }
}

#[derive(Clone, Debug)]
pub struct SelftestOptions {
    /// Tiny FLUX checkpoint (the CLI writes the embedded `tests/fixtures/models/dev-bfl.safetensors`).
    pub model: PathBuf,
    /// Two adapters for that model (the CLI's defaults: the embedded `attn.peft` and `mlp.peft`).
    pub adapter_a: PathBuf,
    pub adapter_b: PathBuf,
    /// Where the exports and plans go (one folder per engine).
    pub work_dir: PathBuf,
    pub session: SessionOptions,
    /// Plan targets; `None`: see [`default_targets`].
    pub targets: Option<Vec<Target>>,
    pub tolerance: Tolerances,
    /// Largest accepted median swap (full refit) latency, milliseconds.
    pub max_refit_ms: f64,
}

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Could not be checked here (no reference backend, a graph the reference cannot run):
    /// the verdict cannot be PASS.
    Skip,
    /// Does not apply to this GPU (FP8 below sm89); does not block PASS.
    NotApplicable,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::NotApplicable => "N/A ",
        }
    }
}

/// One check: what was compared, against which bound, and what was measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// The engine (`bf16`, `fp16`, `fp8`, `bf16-stripped`) or `-`.
    pub engine: String,
    pub name: String,
    pub compared: String,
    pub bound: String,
    pub measured: String,
    pub status: Status,
}

/// Overall result: PASS only when every check ran and passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Nothing failed, but something was not checked (or nothing was checked at all).
    Incomplete,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SelftestReport {
    /// The backend tested (`""` = `tensorrt`, `cuda`).
    pub backend: &'static str,
    pub gpu: String,
    /// TensorRT variant and library version.
    pub tensorrt: String,
    /// Build sizes and times, latencies: context for the checks.
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    verdict: Verdict,
    backend: &'a str,
    gpu: &'a str,
    tensorrt: &'a str,
    not_checked: Vec<String>,
    notes: &'a [String],
    checks: &'a [Check],
}

impl SelftestReport {
    /// Records a check that ran; `ok` decides PASS or FAIL.
    pub fn check(&mut self, engine: &str, name: &str, compared: impl Into<String>, bound: impl Into<String>, measured: impl Into<String>, ok: bool) {
        let status = if ok { Status::Pass } else { Status::Fail };
        self.push(engine, name, compared.into(), bound.into(), measured.into(), status);
    }

    /// Records a check that could not run, and why (blocks PASS).
    pub fn skip(&mut self, engine: &str, name: &str, compared: impl Into<String>, why: impl Into<String>) {
        self.push(engine, name, compared.into(), "-".into(), format!("not checked: {}", why.into()), Status::Skip);
    }

    /// Records a check that does not apply here, and why.
    pub fn not_applicable(&mut self, engine: &str, name: &str, why: impl Into<String>) {
        self.push(engine, name, "-".into(), "-".into(), why.into(), Status::NotApplicable);
    }

    /// Records a step that failed before its checks could run (build, open, a run).
    pub fn failed_step(&mut self, engine: &str, step: &str, error: impl std::fmt::Display) {
        self.push(engine, step, "-".into(), "succeeds".into(), format!("error: {error}"), Status::Fail);
    }

    fn push(&mut self, engine: &str, name: &str, compared: String, bound: String, measured: String, status: Status) {
        self.checks.push(Check { engine: engine.into(), name: name.into(), compared, bound, measured, status });
    }

    pub fn verdict(&self) -> Verdict {
        if self.checks.iter().any(|c| c.status == Status::Fail) {
            Verdict::Fail
        } else if self.checks.iter().any(|c| c.status == Status::Skip) || !self.checks.iter().any(|c| c.status == Status::Pass) {
            Verdict::Incomplete
        } else {
            Verdict::Pass
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Pass
    }

    /// `[engine] name` of every skipped check.
    pub fn not_checked(&self) -> Vec<String> {
        self.checks.iter().filter(|c| c.status == Status::Skip).map(|c| format!("[{}] {}: {}", c.engine, c.name, c.measured)).collect()
    }

    /// The report as JSON: verdict, GPU, TensorRT, what was not checked, notes, every check.
    pub fn to_json(&self) -> String {
        let r = JsonReport {
            verdict: self.verdict(),
            backend: if self.backend.is_empty() { "tensorrt" } else { self.backend },
            gpu: &self.gpu,
            tensorrt: &self.tensorrt,
            not_checked: self.not_checked(),
            notes: &self.notes,
            checks: &self.checks,
        };
        serde_json::to_string_pretty(&r).unwrap_or_else(|e| format!("{{\"error\": \"report serialization: {e}\"}}"))
    }
}

impl std::fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if self.backend.is_empty() { "tensorrt" } else { self.backend };
        writeln!(f, "selftest backend={backend} gpu={} tensorrt={}", self.gpu, self.tensorrt)?;
        for n in &self.notes {
            writeln!(f, "      {n}")?;
        }
        for c in &self.checks {
            writeln!(f, "{}  [{}] {}: compared {}; bound {}; measured {}", c.status.label(), c.engine, c.name, c.compared, c.bound, c.measured)?;
        }
        let failed = self.checks.iter().filter(|c| c.status == Status::Fail).count();
        match self.verdict() {
            Verdict::Pass => write!(f, "PASS ({} checks)", self.checks.len()),
            Verdict::Fail => write!(f, "FAIL ({failed} of {} checks failed)", self.checks.len()),
            Verdict::Incomplete => {
                let missing = self.not_checked();
                if missing.is_empty() {
                    write!(f, "INCOMPLETE: no check ran")
                } else {
                    write!(f, "INCOMPLETE (not a pass): {} checks not verified: {}", missing.len(), missing.join("; "))
                }
            }
        }
    }
}

/// Plan targets when none are given: TensorRT Enterprise builds for the GPU it runs on and takes
/// no target; TensorRT-RTX needs this GPU's compute capability as a target, and cannot run on
/// sm90 (or anything outside sm75–sm121).
pub fn default_targets(major: i32, minor: i32, gpu: &str) -> Result<Vec<Target>, TrtError> {
    targets_for(cfg!(feature = "tensorrt-enterprise"), major, minor, gpu)
}

/// [`default_targets`] for TensorRT Enterprise (`enterprise`) or TensorRT-RTX.
fn targets_for(enterprise: bool, major: i32, minor: i32, gpu: &str) -> Result<Vec<Target>, TrtError> {
    if enterprise {
        return Ok(Vec::new());
    }
    format!("sm{major}{minor}").parse::<Target>().map(|t| vec![t]).map_err(|_| TrtError::Selftest {
        step: "target".into(),
        message: format!("{gpu}: TensorRT-RTX plans cannot run on sm{major}{minor}; run the self-test on an sm75–sm121 GPU other than sm90"),
    })
}

/// One input shape of the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    /// Packed image grid (tokens = h × w).
    pub h: usize,
    pub w: usize,
    pub txt: usize,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {} × ({}×{} image + {} text tokens)", self.batch, self.h, self.w, self.txt)
    }
}

/// The two shapes: the tiny profile's smallest, and a second resolution at batch 2 (its largest).
pub const SHAPES: [Shape; 2] = [Shape { batch: 1, h: 4, w: 4, txt: 8 }, Shape { batch: 2, h: 8, w: 8, txt: 16 }];

/// A deterministic request for `config` at one [`Shape`]: the bound constants and the latents
/// and timestep of one step.
#[derive(Clone, Debug)]
pub struct TinyRequest {
    pub shape: Shape,
    /// The constants bound once per shape.
    pub constants: OwnedRequest,
    /// `hidden_states` `[B, h·w, in_channels]`.
    pub latents: Vec<f32>,
    pub timestep: f32,
    /// `[B, h·w, out_channels]`: the shape of `sample`.
    pub out_shape: Vec<usize>,
}

impl TinyRequest {
    /// The request at the first of [`SHAPES`] (batch 1, a 4×4 packed image grid, 8 text tokens).
    pub fn new(config: &crate::FluxConfig) -> Self {
        Self::at(config, SHAPES[0])
    }

    /// The request at `shape`.
    pub fn at(config: &crate::FluxConfig, shape: Shape) -> Self {
        let mut state = 0x2545_f491_4f6c_dd1du64 ^ (shape.batch as u64) << 32 ^ (shape.h * shape.w) as u64;
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
        let (b, img, txt) = (shape.batch, shape.h * shape.w, shape.txt);
        let latents = rand(b * img * config.in_channels);
        let constants = OwnedRequest {
            batch: b,
            encoder_hidden_states: rand(b * txt * config.context_dim),
            pooled_projections: rand(b * config.pooled_dim),
            guidance: config.variant.has_guidance().then_some(3.5),
            txt_ids: vec![[0.0; 3]; txt],
            img_ids: crate::flux::img_ids(shape.h, shape.w),
        };
        TinyRequest { shape, constants, latents, timestep: 0.5, out_shape: vec![b, img, config.out_channels] }
    }

    /// The constants as [`Transformer::bind`] takes them.
    pub fn request(&self) -> RequestInputs<'_> {
        self.constants.inputs()
    }

    /// One step of `t` on this request (bound as `bound`) with the slot set current now.
    pub fn step<T: Transformer>(&self, t: &T, bound: &mut T::Bound) -> crate::Result<HostTensor> {
        let mut out = vec![0f32; self.out_shape.iter().product()];
        t.step(&t.lease(), bound, &self.latents, self.timestep, &mut out)?;
        HostTensor::new(self.out_shape.clone(), out)
            .ok_or_else(|| TrtError::Selftest { step: "output".into(), message: format!("sample is not {:?}", self.out_shape) }.into())
    }
}

/// max|Δ| / max|reference| (∞ when the shapes differ).
pub fn relative_error(got: &HostTensor, want: &HostTensor) -> f32 {
    got.max_abs_diff(want).map_or(f32::INFINITY, |d| d / want.max_abs().max(f32::MIN_POSITIVE))
}

/// Median of `v` (mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    (n > 0).then(|| if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

#[cfg(not(all(feature = "tensorrt", feature = "export")))]
pub fn selftest<R: Transformer>(_opts: &SelftestOptions, _reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    Err(TrtError::NotCompiled.into())
}

#[cfg(all(feature = "tensorrt", feature = "export"))]
pub use gpu::selftest;

#[cfg(all(feature = "tensorrt", feature = "export"))]
mod gpu;

#[cfg(all(feature = "cuda", feature = "export"))]
mod cuda;
#[cfg(all(feature = "cuda", feature = "export"))]
pub use cuda::{selftest_cuda, CudaSelftestOptions};

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SelftestReport {
        let mut r = SelftestReport { gpu: "NVIDIA RTX 4090 (sm89)".into(), tensorrt: "tensorrt-rtx 1.7.1.116".into(), ..Default::default() };
        r.check("bf16", "A→B→A restores A", "run(A) before and after B", "max|Δ| = 0", "max|Δ| = 0", true);
        r
    }

    #[test]
    fn pass_only_when_everything_ran_and_passed() {
        let r = report();
        assert_eq!(r.verdict(), Verdict::Pass);
        let text = r.to_string();
        assert!(text.lines().last().unwrap().starts_with("PASS"), "{text}");
        assert!(text.contains("PASS  [bf16] A→B→A restores A: compared run(A) before and after B; bound max|Δ| = 0; measured max|Δ| = 0"), "{text}");

        // Not applicable (FP8 below sm89) does not block a pass.
        let mut r = report();
        r.not_applicable("fp8", "FP8 engine", "sm86 has no FP8 tensor cores");
        assert!(r.passed());

        // A skipped reference comparison: never PASS, and it says what was not checked.
        let mut r = report();
        r.skip("bf16", "TensorRT vs reference", "TensorRT and ONNX Runtime outputs", "no reference backend given");
        assert_eq!(r.verdict(), Verdict::Incomplete);
        let text = r.to_string();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("INCOMPLETE (not a pass)") && last.contains("no reference backend given"), "{text}");
        assert!(!text.lines().any(|l| l == "PASS" || l.starts_with("PASS (")), "{text}");

        // A failure wins over a skip; nothing at all is not a pass.
        r.check("fp16", "A changes the output", "run(A) vs run(base)", "> 1e-3", "0", false);
        assert_eq!(r.verdict(), Verdict::Fail);
        assert!(r.to_string().lines().last().unwrap().starts_with("FAIL (1 of 3"));
        assert_eq!(SelftestReport::default().verdict(), Verdict::Incomplete);
    }

    #[test]
    fn json_report_has_the_verdict_and_every_check() {
        let mut r = report();
        r.skip("fp8", "TensorRT vs ONNX Runtime", "outputs of every set", "the reference could not load the graph");
        r.notes.push("built bf16 in 1.0 s".into());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["verdict"], "incomplete");
        assert_eq!(v["gpu"], "NVIDIA RTX 4090 (sm89)");
        assert_eq!(v["checks"].as_array().unwrap().len(), 2);
        assert_eq!(v["checks"][0]["status"], "pass");
        assert_eq!(v["checks"][0]["bound"], "max|Δ| = 0");
        assert_eq!(v["checks"][1]["status"], "skip");
        assert_eq!(v["not_checked"].as_array().unwrap().len(), 1);
        assert_eq!(v["notes"][0], "built bf16 in 1.0 s");
    }

    #[test]
    fn targets_follow_the_tensorrt_variant() {
        // Enterprise builds for the GPU it runs on and rejects any target (engine::build): none,
        // whatever the GPU, sm90 included.
        assert_eq!(targets_for(true, 9, 0, "H200").unwrap(), Vec::<Target>::new());
        assert_eq!(targets_for(true, 8, 9, "RTX 4090").unwrap(), Vec::<Target>::new());
        // TensorRT-RTX: this GPU's compute capability, and a typed refusal where it cannot run.
        assert_eq!(targets_for(false, 8, 9, "RTX 4090").unwrap(), vec![Target::Sm89]);
        assert_eq!(targets_for(false, 12, 0, "RTX 5090").unwrap(), vec![Target::Sm120]);
        match targets_for(false, 9, 0, "H200") {
            Err(TrtError::Selftest { message, .. }) => assert!(message.contains("sm90") && message.contains("H200"), "{message}"),
            other => panic!("{other:?}"),
        }
        // This build's variant.
        assert_eq!(default_targets(9, 0, "H200").is_ok(), cfg!(feature = "tensorrt-enterprise"));
    }

    #[test]
    fn shapes_inputs_and_statistics() {
        let cfg = crate::Checkpoint::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/dev-bfl.safetensors")).unwrap().config().clone();
        let x = TinyRequest::at(&cfg, SHAPES[1]);
        assert_eq!(x.latents.len(), 2 * 64 * cfg.in_channels);
        assert_eq!(x.constants.encoder_hidden_states.len(), 2 * 16 * cfg.context_dim);
        assert_eq!(x.constants.pooled_projections.len(), 2 * cfg.pooled_dim);
        assert_eq!((x.constants.img_ids.len(), x.constants.txt_ids.len()), (64, 16));
        assert_eq!(x.out_shape, [2, 64, cfg.out_channels]);
        let r = x.request();
        assert_eq!((r.batch, r.image_seq_len, r.text_len), (2, 64, 16));
        assert_eq!(TinyRequest::new(&cfg).shape, SHAPES[0]);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let a = HostTensor::new(vec![2], vec![1.0, -2.0]).unwrap();
        let b = HostTensor::new(vec![2], vec![1.0, -2.5]).unwrap();
        assert_eq!(relative_error(&a, &b), 0.5 / 2.5);
    }
}

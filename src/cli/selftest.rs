//! `flux-trt selftest --backend tensorrt`: the CLI side of
//! [`flux_trt::selftest`]. Exit code 0 only on PASS (every check ran and passed); the JSON
//! report goes to `--json` (default `selftest-report.json` in `--work-dir`, or in the current
//! directory when the work folder is a temporary one).
//!
//! The tiny model and the two adapters are built into the binary (the repository's
//! `tests/fixtures/models/dev-bfl.safetensors`, `tests/fixtures/loras/attn.peft.safetensors`
//! and `mlp.peft.safetensors`), so the command works from any directory and from a copied
//! binary; `--model` / `--adapter-a` / `--adapter-b` replace them.
//!
//! With the `ort` feature the TensorRT outputs are compared against ONNX Runtime running each
//! engine folder's `model.onnx` (library from `ORT_DYLIB_PATH`; `--reference cuda` for its CUDA
//! provider, which also runs bf16 graphs; `--reference none` skips it, and the verdict cannot be
//! PASS then).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use flux_trt::engine::{Target, TrtLibrary};
use flux_trt::runtime::tensorrt::SessionOptions;
use flux_trt::selftest::{selftest, SelftestOptions, Tolerances};

const MODEL: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/dev-bfl.safetensors"));
const ADAPTER_A: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loras/attn.peft.safetensors"));
const ADAPTER_B: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loras/mlp.peft.safetensors"));

#[derive(Args, Debug, Clone)]
pub struct SelftestArgs {
    /// Backend to test: `tensorrt` (builds plans for this GPU) or `cuda` (the native CUDA
    /// backend); ONNX Runtime is the reference of both.
    #[arg(long, value_enum, default_value_t = Backend::Tensorrt)]
    pub backend: Backend,
    /// Tiny FLUX checkpoint (default: the built-in dev-bfl fixture).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapter A (default: the built-in attn.peft fixture).
    #[arg(long)]
    pub adapter_a: Option<PathBuf>,
    /// Adapter B (default: the built-in mlp.peft fixture).
    #[arg(long)]
    pub adapter_b: Option<PathBuf>,
    /// Work folder for the exports and plans (default: a temporary folder).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Where to write the JSON report (default: `selftest-report.json` in --work-dir, else here).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Plan targets, comma-separated, e.g. `sm89,sm120` (default: this GPU; none with TensorRT
    /// Enterprise).
    #[arg(long, value_delimiter = ',')]
    pub trt_targets: Vec<Target>,
    /// Folder of the TensorRT libraries (default: TRT_RTX_LIB_DIR).
    #[arg(long)]
    pub trt_lib_dir: Option<PathBuf>,
    /// Reference backend (ONNX Runtime; needs the `ort` feature, otherwise no reference runs).
    #[arg(long, value_enum, default_value_t = ReferenceKind::Cpu)]
    pub reference: ReferenceKind,
    /// Largest accepted max|Δ|/max|reference| of the bf16 engines.
    #[arg(long, default_value_t = Tolerances::default().bf16)]
    pub tolerance_bf16: f32,
    /// Same for the fp16 engine.
    #[arg(long, default_value_t = Tolerances::default().fp16)]
    pub tolerance_fp16: f32,
    /// Same for the FP8 engine.
    #[arg(long, default_value_t = Tolerances::default().fp8)]
    pub tolerance_fp8: f32,
    /// Largest accepted median swap latency (ms).
    #[arg(long, default_value_t = 1000.0)]
    pub max_refit_ms: f64,
}

/// The context of an error that stops the self-test before its first check.
const NOT_STARTED: &str = "self-test could not start, nothing was checked (no report written)";

/// Backends the self-test covers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Tensorrt,
    /// The native CUDA backend (build with `--features cuda`): bf16 and fp32 engines.
    Cuda,
}

/// The reference backend the TensorRT outputs are compared against.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceKind {
    /// ONNX Runtime, CPU provider.
    Cpu,
    /// ONNX Runtime, CUDA provider (also runs bf16 graphs).
    Cuda,
    /// No reference: the verdict cannot be PASS.
    None,
}

/// Writes the built-in fixture `bytes` as `dir/name` unless `given` names a file.
fn fixture(given: &Option<PathBuf>, dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let path = dir.join(name);
    flux_trt::util::write_atomic(&path, bytes).with_context(|| format!("writing the built-in fixture {}", path.display()))?;
    Ok(path)
}

/// Runs the self-test, prints its report and writes the JSON; `Ok(true)` on PASS.
pub fn run(args: &SelftestArgs) -> Result<bool> {
    if args.backend == Backend::Cuda {
        return run_cuda(args);
    }
    let tmp = tempfile::tempdir()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().join("selftest"));
    let fixtures = work_dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).with_context(|| format!("creating {}", fixtures.display()))?;
    let library = match &args.trt_lib_dir {
        Some(d) => TrtLibrary::in_dir(d),
        None => TrtLibrary::from_env(),
    };
    let targets = (!args.trt_targets.is_empty()).then(|| dedup(&args.trt_targets));
    let opts = SelftestOptions {
        model: fixture(&args.model, &fixtures, "dev-bfl.safetensors", MODEL)?,
        adapter_a: fixture(&args.adapter_a, &fixtures, "attn.peft.safetensors", ADAPTER_A)?,
        adapter_b: fixture(&args.adapter_b, &fixtures, "mlp.peft.safetensors", ADAPTER_B)?,
        work_dir: work_dir.clone(),
        session: SessionOptions { library, device: args.device, verify: Default::default() },
        targets,
        tolerance: Tolerances { bf16: args.tolerance_bf16, fp16: args.tolerance_fp16, fp8: args.tolerance_fp8 },
        max_refit_ms: args.max_refit_ms,
    };
    #[cfg(feature = "ort")]
    let report = {
        use flux_trt::runtime::ort::FluxSession;
        match reference_provider(args) {
            Some(provider) => {
                let open = move |dir: &Path| -> flux_trt::Result<FluxSession> { Ok(FluxSession::builder(dir).with_execution_provider(provider).build()?) };
                selftest(&opts, Some(flux_trt::selftest::Reference { name: format!("ONNX Runtime ({provider})"), open: &open }))
            }
            None => selftest::<FluxSession>(&opts, None),
        }
    };
    #[cfg(not(feature = "ort"))]
    let report = selftest::<flux_trt::runtime::tensorrt::TrtSession>(&opts, None);
    finish(args, report)
}

/// The ONNX Runtime provider of `--reference` (`None`: no reference).
#[cfg(feature = "ort")]
fn reference_provider(args: &SelftestArgs) -> Option<flux_trt::runtime::ort::ExecutionProvider> {
    use flux_trt::runtime::ort::ExecutionProvider;
    match args.reference {
        ReferenceKind::Cpu => Some(ExecutionProvider::Cpu),
        ReferenceKind::Cuda => Some(ExecutionProvider::Cuda { device: args.device as i32 }),
        ReferenceKind::None => None,
    }
}

/// Prints the report and writes it as JSON (`--json`, else `selftest-report.json` in
/// `--work-dir` or here); `Ok(true)` on PASS.
fn finish(args: &SelftestArgs, report: flux_trt::Result<flux_trt::selftest::SelftestReport>) -> Result<bool> {
    let report = report.context(NOT_STARTED)?;
    println!("{report}");
    let json = args.json.clone().unwrap_or_else(|| match &args.work_dir {
        Some(d) => d.join("selftest-report.json"),
        None => PathBuf::from("selftest-report.json"),
    });
    flux_trt::util::write_atomic(&json, report.to_json().as_bytes()).with_context(|| format!("writing {}", json.display()))?;
    eprintln!("JSON report: {}", json.display());
    Ok(report.passed())
}

/// `targets` without repeats, in order.
fn dedup(targets: &[Target]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for t in targets {
        if !out.contains(t) {
            out.push(*t);
        }
    }
    out
}

/// `selftest --backend cuda`: the native CUDA backend's checks ([`flux_trt::selftest::selftest_cuda`]),
/// the reference being ONNX Runtime on the fp32 export (`--reference`), the report printed and
/// written as JSON like TensorRT's.
#[cfg(all(feature = "cuda", feature = "export"))]
fn run_cuda(args: &SelftestArgs) -> Result<bool> {
    use flux_trt::selftest::{selftest_cuda, CudaSelftestOptions};

    let tmp = tempfile::tempdir()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().join("selftest"));
    let fixtures = work_dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).with_context(|| format!("creating {}", fixtures.display()))?;
    let opts = CudaSelftestOptions {
        model: fixture(&args.model, &fixtures, "dev-bfl.safetensors", MODEL)?,
        adapter_a: fixture(&args.adapter_a, &fixtures, "attn.peft.safetensors", ADAPTER_A)?,
        adapter_b: fixture(&args.adapter_b, &fixtures, "mlp.peft.safetensors", ADAPTER_B)?,
        work_dir: work_dir.clone(),
        device: args.device,
    };
    #[cfg(feature = "ort")]
    let report = {
        use flux_trt::runtime::ort::FluxSession;
        match reference_provider(args) {
            Some(provider) => {
                let open = move |dir: &Path| -> flux_trt::Result<FluxSession> { Ok(FluxSession::builder(dir).with_execution_provider(provider).build()?) };
                selftest_cuda(&opts, Some(flux_trt::selftest::Reference { name: format!("ONNX Runtime ({provider})"), open: &open }))
            }
            None => selftest_cuda::<FluxSession>(&opts, None),
        }
    };
    #[cfg(not(feature = "ort"))]
    let report = selftest_cuda::<flux_trt::runtime::cuda::CudaSession>(&opts, None);
    finish(args, report)
}

#[cfg(not(all(feature = "cuda", feature = "export")))]
fn run_cuda(_: &SelftestArgs) -> Result<bool> {
    anyhow::bail!("this flux-trt was built without the `cuda` and `export` features (native CUDA backend): cargo build --release --features cuda")
}

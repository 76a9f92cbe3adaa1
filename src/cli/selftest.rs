//! `flux-trt selftest --backend tensorrt`: the CLI side of
//! [`flux_trt::selftest`]. Wire in with `mod cli { pub mod selftest; }` and a
//! `Selftest(cli::selftest::SelftestArgs)` subcommand calling [`run`]; exit code 0 on PASS.
//!
//! With the `ort` feature the TensorRT outputs are compared against ONNX Runtime (CPU) running
//! the same `model.onnx` (library from `ORT_DYLIB_PATH`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use flux_trt::engine::{Target, TrtLibrary};
use flux_trt::runtime::tensorrt::SessionOptions;
use flux_trt::selftest::{selftest, Reference, SelftestOptions};

#[derive(Args, Debug, Clone)]
pub struct SelftestArgs {
    /// Backend to test (only `tensorrt` here; ONNX Runtime is its reference).
    #[arg(long, value_enum, default_value_t = Backend::Tensorrt)]
    pub backend: Backend,
    /// Tiny FLUX checkpoint.
    #[arg(long, default_value = "tests/fixtures/models/dev-bfl.safetensors")]
    pub model: PathBuf,
    /// Adapter A.
    #[arg(long, default_value = "tests/fixtures/loras/attn.peft.safetensors")]
    pub adapter_a: PathBuf,
    /// Adapter B.
    #[arg(long, default_value = "tests/fixtures/loras/mlp.peft.safetensors")]
    pub adapter_b: PathBuf,
    /// Work folder for the export and plan (default: a temporary folder).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Plan targets, comma-separated, e.g. `sm89,sm120` (default: this GPU).
    #[arg(long, value_delimiter = ',')]
    pub trt_targets: Vec<Target>,
    /// Folder of the TensorRT libraries (default: TRT_RTX_LIB_DIR).
    #[arg(long)]
    pub trt_lib_dir: Option<PathBuf>,
    /// Largest accepted max|Δ|/max|reference| against ONNX Runtime.
    #[arg(long, default_value_t = 2e-2)]
    pub tolerance: f32,
}

/// Backends the self-test covers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Tensorrt,
}

/// Runs the self-test and prints its report; `Ok(true)` on PASS.
pub fn run(args: &SelftestArgs) -> Result<bool> {
    let Backend::Tensorrt = args.backend;
    let tmp = tempfile::tempdir()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().join("selftest"));
    let library = match &args.trt_lib_dir {
        Some(d) => TrtLibrary::in_dir(d),
        None => TrtLibrary::from_env(),
    };
    let targets = (!args.trt_targets.is_empty()).then(|| dedup(&args.trt_targets));
    let opts = SelftestOptions {
        model: args.model.clone(),
        adapter_a: args.adapter_a.clone(),
        adapter_b: args.adapter_b.clone(),
        work_dir,
        session: SessionOptions { library, device: args.device, verify: Default::default() },
        targets,
        tolerance: args.tolerance,
    };
    #[cfg(feature = "ort")]
    let report = {
        let open =
            |dir: &std::path::Path| -> flux_trt::Result<flux_trt::runtime::ort::FluxSession> { Ok(flux_trt::runtime::ort::FluxSession::builder(dir).build()?) };
        selftest(&opts, Some(Reference { name: "ONNX Runtime (CPU)".into(), open: &open }))?
    };
    #[cfg(not(feature = "ort"))]
    let report = selftest::<flux_trt::runtime::tensorrt::TrtSession>(&opts, None)?;
    println!("{report}");
    Ok(report.passed)
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

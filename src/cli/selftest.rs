//! `flux-trt selftest --backend tensorrt|cuda`: the CLI side of [`flux_trt::selftest`]; exit
//! code 0 on PASS.
//!
//! With the `ort` feature the backend's outputs are compared against ONNX Runtime (CPU) running
//! an fp32 `model.onnx` of the same model and adapters (library from `ORT_DYLIB_PATH` or
//! `--ort-lib`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use flux_trt::engine::{Target, TrtLibrary};
use flux_trt::runtime::tensorrt::SessionOptions;
use flux_trt::selftest::{selftest, Reference, SelftestOptions};

#[derive(Args, Debug, Clone)]
pub struct SelftestArgs {
    /// Backend to test: `tensorrt` (builds a plan for this GPU) or `cuda` (the native CUDA
    /// backend); ONNX Runtime (CPU) is the reference of both.
    #[arg(long, value_enum, default_value_t = Backend::Tensorrt)]
    pub backend: Backend,
    /// `cuda`: the tested engine's precision (bf16: cuDNN fused attention and bf16 GEMMs, the
    /// deployment path; fp32: the fp32 path).
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "fp16", "fp32"])]
    pub precision: String,
    /// libonnxruntime for the reference (default: $ORT_DYLIB_PATH).
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
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
    /// Largest accepted difference to ONNX Runtime: TensorRT max|Δ|/max|reference| (default
    /// 2e-2); cuda ‖Δ‖/‖reference‖ (default 1e-2 for bf16/fp16, 1e-4 for fp32).
    #[arg(long)]
    pub tolerance: Option<f32>,
}

/// Backends the self-test covers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Tensorrt,
    Cuda,
}

/// Runs the self-test and prints its report; `Ok(true)` on PASS.
pub fn run(args: &SelftestArgs) -> Result<bool> {
    if args.backend == Backend::Cuda {
        return run_cuda(args);
    }
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
        tolerance: args.tolerance.unwrap_or(2e-2),
    };
    #[cfg(feature = "ort")]
    let report = {
        let open = |dir: &std::path::Path| open_ort(dir, args);
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

/// The reference: ONNX Runtime (CPU) on `dir`.
#[cfg(feature = "ort")]
fn open_ort(dir: &std::path::Path, args: &SelftestArgs) -> flux_trt::Result<flux_trt::runtime::ort::FluxSession> {
    let mut b = flux_trt::runtime::ort::FluxSession::builder(dir);
    if let Some(lib) = &args.ort_lib {
        b = b.with_library(lib);
    }
    Ok(b.build()?)
}

/// `selftest --backend cuda`.
#[cfg(all(feature = "cuda", feature = "export"))]
fn run_cuda(args: &SelftestArgs) -> Result<bool> {
    use flux_trt::manifest::Precision;
    use flux_trt::selftest::{selftest_cuda, CudaSelftestOptions};

    let precision: Precision = args.precision.parse().map_err(|e| anyhow::anyhow!("--precision {}: {e}", args.precision))?;
    let tmp = tempfile::tempdir()?;
    let opts = CudaSelftestOptions {
        model: args.model.clone(),
        adapter_a: args.adapter_a.clone(),
        adapter_b: args.adapter_b.clone(),
        work_dir: args.work_dir.clone().unwrap_or_else(|| tmp.path().join("selftest")),
        device: args.device,
        precision,
        tolerance: args.tolerance.unwrap_or(CudaSelftestOptions::default_tolerance(precision)),
    };
    #[cfg(feature = "ort")]
    let report = {
        let open = |dir: &std::path::Path| open_ort(dir, args);
        selftest_cuda(&opts, Some(Reference { name: "ONNX Runtime (CPU, fp32)".into(), open: &open }))?
    };
    #[cfg(not(feature = "ort"))]
    let report = selftest_cuda::<flux_trt::runtime::cuda::CudaSession>(&opts, None)?;
    println!("{report}");
    Ok(report.passed)
}

#[cfg(not(all(feature = "cuda", feature = "export")))]
fn run_cuda(_: &SelftestArgs) -> Result<bool> {
    anyhow::bail!("this flux-trt was built without the `cuda` and `export` features (native CUDA backend): cargo build --release --features cuda")
}

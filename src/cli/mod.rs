//! Command implementations of the `flux-trt` binary, one module per command.

pub mod calibrate;
pub mod demo;
pub mod generate;
pub mod inspect;
pub mod run;
pub mod selftest;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "serve")]
pub mod serve_load;
pub mod verify;

use std::path::PathBuf;

use clap::Args;

/// The runtime of the transformer (`--backend`); text encoders and the VAE decoder always run
/// on ONNX Runtime (on the CPU, or on its CUDA provider with `--cuda`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransformerBackend {
    /// ONNX Runtime: on the CPU, or on its CUDA provider with --cuda DEVICE.
    Ort,
    /// The native CUDA backend (a build with the `cuda` feature); GPU from --cuda (default 0).
    Cuda,
}

/// Options shared by commands that open an ONNX Runtime session.
#[derive(Args, Clone, Debug)]
pub struct OrtArgs {
    /// libonnxruntime to load (default: $ORT_DYLIB_PATH; never downloaded).
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads (default: ONNX Runtime's choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run on this CUDA device instead of the CPU (an error if unavailable).
    #[arg(long, value_name = "DEVICE")]
    pub cuda: Option<i32>,
    /// With --cuda: nodes allowed on ONNX Runtime's CPU provider: shape-only (int64 shape
    /// arithmetic; every compute node must run on CUDA), forbid (ORT's
    /// session.disable_cpu_ep_fallback: no node at all), allow.
    #[cfg(feature = "ort")]
    #[arg(long, value_enum, default_value_t = flux_trt::runtime::ort::CpuFallback::ShapeOnly)]
    pub cpu_fallback: flux_trt::runtime::ort::CpuFallback,
    /// When opening the engine hashes its files (BLAKE3; sizes are always checked): always,
    /// first (once, then a verified stamp keyed by size, mtime, ctime and inode), never.
    #[arg(long, value_enum, default_value_t = flux_trt::manifest::VerifyPolicy::default())]
    pub verify: flux_trt::manifest::VerifyPolicy,
}

/// Request limits, checked before any work (defaults: [`flux_trt::pipeline::Limits::default`]).
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// Most pixels (width × height) of one image.
    #[arg(long, default_value_t = flux_trt::pipeline::Limits::default().max_pixels)]
    pub max_pixels: usize,
    /// Longest image side in pixels.
    #[arg(long, default_value_t = flux_trt::pipeline::Limits::default().max_side)]
    pub max_side: usize,
    /// Most images per transformer call (`run`: the inputs' batch dimension).
    #[arg(long, default_value_t = flux_trt::pipeline::Limits::default().max_batch)]
    pub max_batch: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> flux_trt::pipeline::Limits {
        flux_trt::pipeline::Limits { max_pixels: self.max_pixels, max_side: self.max_side, max_batch: self.max_batch }
    }
}

#[cfg(feature = "ort")]
impl OrtArgs {
    /// ONNX Runtime session options from the flags (`tf32`: TF32 for fp32 GEMMs on CUDA).
    pub fn options(&self, tf32: bool) -> flux_trt::runtime::ort::SessionOptions {
        use flux_trt::runtime::ort::{ExecutionProvider, SessionOptions};
        SessionOptions {
            library: self.ort_lib.clone(),
            provider: self.cuda.map_or(ExecutionProvider::Cpu, |device| ExecutionProvider::Cuda { device }),
            threads: self.threads,
            tf32,
            cpu_fallback: self.cpu_fallback,
            verify: self.verify,
            ..Default::default()
        }
    }

    pub fn session(&self, engine: &std::path::Path) -> Result<flux_trt::runtime::ort::FluxSession, flux_trt::runtime::RuntimeError> {
        use flux_trt::runtime::ort::{ExecutionProvider, FluxSession};
        let mut b = FluxSession::builder(engine).with_verify(self.verify);
        if let Some(lib) = &self.ort_lib {
            b = b.with_library(lib);
        }
        if let Some(n) = self.threads {
            b = b.with_threads(n);
        }
        if let Some(device) = self.cuda {
            b = b.with_execution_provider(ExecutionProvider::Cuda { device });
        }
        b.with_cpu_fallback(self.cpu_fallback).build()
    }
}

/// The native CUDA backend's options from the shared flags: the device is `--cuda N` (default 0),
/// `--verify` as for ONNX Runtime.
#[cfg(feature = "cuda")]
pub fn cuda_options(ort: &OrtArgs) -> anyhow::Result<flux_trt::runtime::cuda::CudaOptions> {
    let device = ort.cuda.unwrap_or(0);
    anyhow::ensure!(device >= 0, "--cuda {device}: a device ordinal is 0 or more");
    Ok(flux_trt::runtime::cuda::CudaOptions { device: device as usize, verify: ort.verify, ..Default::default() })
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

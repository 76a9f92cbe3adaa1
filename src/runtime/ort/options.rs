//! Session settings shared by every ONNX Runtime session flux-trt opens (transformer, text
//! encoders, VAE decoder) and the one place sessions are created: library, execution provider
//! (never a silent CPU fallback: see [`CpuFallback`]), threads, optimization level, TF32.

use std::path::{Path, PathBuf};

use ::ort::ep::{self, ExecutionProvider as _};
use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::Session;

use super::env;
use super::placement::{self, CpuFallback, Placement};
use super::session::ExecutionProvider;
use crate::runtime::RuntimeError;

/// How to open a session: the one set of session settings, held by
/// [`super::FluxSessionBuilder`] (see [`super::FluxSessionBuilder::with_options`]) and given to
/// every component session of a pipeline engine.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// `libonnxruntime` (default: `ORT_DYLIB_PATH`).
    pub library: Option<PathBuf>,
    pub provider: ExecutionProvider,
    pub threads: Option<usize>,
    /// Default: all optimizations (the transformer's FP8 engines: basic).
    pub optimization: Option<GraphOptimizationLevel>,
    /// TF32 for fp32 GEMMs on CUDA (default off: fp32 engines compute in fp32 on the GPU too).
    pub tf32: bool,
    /// What a CUDA session may leave on the CPU provider (default: shape arithmetic only).
    pub cpu_fallback: CpuFallback,
    /// ONNX Runtime's per-node profiling into a JSON trace with this file-name prefix.
    pub profile: Option<PathBuf>,
    /// When opening hashes the engine files (sizes are always checked).
    pub verify: crate::manifest::VerifyPolicy,
}

impl SessionOptions {
    /// Creates a session for `model_path` (of the engine or component folder `dir`) and reads
    /// back where ONNX Runtime placed each node. On CUDA, compute nodes placed on the CPU are an
    /// error naming them (policy [`CpuFallback`]), never a quiet slowdown.
    pub(crate) fn create(&self, model_path: &Path, dir: &Path) -> Result<(Session, Placement), RuntimeError> {
        let level = self.optimization.unwrap_or(GraphOptimizationLevel::All);
        let library = env::library_path(self.library.as_deref())?;
        let environment = env::environment(&library)?;
        let what = |step: &str| format!("{}: {step}", model_path.display());
        let ep_err = |message: String| RuntimeError::ExecutionProvider { engine: dir.to_path_buf(), provider: self.provider.to_string(), message };
        let mut b = Session::builder(&environment).map_err(|e| RuntimeError::ort(what("session options"), e))?;
        if let Some(n) = self.threads {
            b = b.with_intra_threads(n).map_err(|e| RuntimeError::ort(what("setting threads"), e))?;
        }
        b = b.with_optimization_level(level).map_err(|e| RuntimeError::ort(what("setting the optimization level"), e))?;
        if let Some(p) = &self.profile {
            b = b.with_profiling(p).map_err(|e| RuntimeError::ort(what("enabling profiling"), e))?;
        }
        b = b.with_config_entry(placement::RECORD_ASSIGNMENT, "1").map_err(|e| RuntimeError::ort(what("recording node placement"), e))?;
        let cuda = matches!(self.provider, ExecutionProvider::Cuda { .. });
        if cuda && self.cpu_fallback == CpuFallback::Forbid {
            b = b.with_disable_cpu_fallback().map_err(|e| ep_err(e.message().to_string()))?;
        }
        let dispatch = match self.provider {
            ExecutionProvider::Cpu => ep::CPU::default().build().error_on_failure(),
            ExecutionProvider::Cuda { device } => {
                let compiled = ep::CUDA::is_available().map_err(|e| ep_err(e.message().to_string()))?;
                if !compiled {
                    return Err(ep_err(format!("{} was built without the CUDA execution provider", library.display())));
                }
                ep::CUDA::default().with_device_id(device).with_tf32(self.tf32).build().error_on_failure()
            }
        };
        b = b.with_execution_providers([dispatch]).map_err(|e| ep_err(e.message().to_string()))?;
        let session = b.commit_from_file(model_path).map_err(|e| {
            // ORT's message when `session.disable_cpu_ep_fallback` rejects a placement.
            if cuda && e.message().contains("fallback to CPU EP has been explicitly disabled") {
                ep_err(e.message().to_string())
            } else {
                RuntimeError::ort(what("creating the session"), e)
            }
        })?;
        let placement = placement::read(&session).map_err(|e| RuntimeError::ort(what("reading node placement"), e))?;
        tracing::info!(model = %model_path.display(), per_provider = ?placement.nodes_per_provider, cpu_nodes = placement.cpu_nodes.len(), "node placement");
        if cuda && self.cpu_fallback == CpuFallback::ShapeOnly {
            let bad = placement.cpu_compute_nodes();
            if !bad.is_empty() {
                let list: Vec<String> = bad.iter().take(20).map(|n| format!("{} `{}`", n.op_type, n.name)).collect();
                return Err(ep_err(format!(
                    "{} compute node(s) were placed on the CPU provider (no CUDA kernel for their types): {}{}",
                    bad.len(),
                    list.join(", "),
                    if bad.len() > 20 { ", ..." } else { "" }
                )));
            }
        }
        Ok((session, placement))
    }
}

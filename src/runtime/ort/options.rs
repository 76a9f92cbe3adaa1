//! Session settings shared by every ONNX Runtime session flux-trt opens (transformer, text
//! encoders, VAE decoder): library, execution provider (never a silent CPU fallback), threads,
//! optimization level, TF32.

use std::path::{Path, PathBuf};

use ::ort::ep::{self, ExecutionProvider as _};
use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::Session;

use super::env;
use super::session::ExecutionProvider;
use crate::runtime::RuntimeError;

/// How to open a session.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub library: Option<PathBuf>,
    pub provider: ExecutionProvider,
    pub threads: Option<usize>,
    pub optimization: Option<GraphOptimizationLevel>,
    /// TF32 for fp32 GEMMs on CUDA (default off: fp32 engines compute in fp32 on the GPU too).
    pub tf32: bool,
}

impl SessionOptions {
    /// Creates a session for `model_path` (of the engine or component folder `dir`). With the
    /// CUDA provider, nodes CUDA cannot run are an error (`session.disable_cpu_ep_fallback`),
    /// never quietly placed on the CPU.
    pub fn commit(&self, model_path: &Path, dir: &Path, level: GraphOptimizationLevel) -> Result<Session, RuntimeError> {
        let library = env::library_path(self.library.as_deref())?;
        let environment = env::environment(&library)?;
        let what = |step: &str| format!("{}: {step}", model_path.display());
        let mut b = Session::builder(&environment).map_err(|e| RuntimeError::ort(what("session options"), e))?;
        if let Some(n) = self.threads {
            b = b.with_intra_threads(n).map_err(|e| RuntimeError::ort(what("setting threads"), e))?;
        }
        b = b.with_optimization_level(level).map_err(|e| RuntimeError::ort(what("setting the optimization level"), e))?;
        let ep_err = |message: String| RuntimeError::ExecutionProvider { engine: dir.to_path_buf(), provider: self.provider.to_string(), message };
        let dispatch = match self.provider {
            ExecutionProvider::Cpu => ep::CPU::default().build().error_on_failure(),
            ExecutionProvider::Cuda { device } => {
                let compiled = ep::CUDA::is_available().map_err(|e| ep_err(e.message().to_string()))?;
                if !compiled {
                    return Err(ep_err(format!("{} was built without the CUDA execution provider", library.display())));
                }
                b = b
                    .with_config_entry("session.disable_cpu_ep_fallback", "1")
                    .map_err(|e| RuntimeError::ort(what("disabling the CPU fallback"), e))?;
                ep::CUDA::default().with_device_id(device).with_tf32(self.tf32).build().error_on_failure()
            }
        };
        b = b.with_execution_providers([dispatch]).map_err(|e| ep_err(e.message().to_string()))?;
        b.commit_from_file(model_path).map_err(|e| match self.provider {
            ExecutionProvider::Cuda { .. } => ep_err(format!("creating the session for {}: {}", model_path.display(), e.message())),
            ExecutionProvider::Cpu => RuntimeError::ort(what("creating the session"), e),
        })
    }
}

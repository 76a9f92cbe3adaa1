//! `flux-trt serve`: the multi-tenant LoRA image service (see `flux_trt::serve`) on one engine
//! folder, until SIGTERM or Ctrl-C (then it drains and exits 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flux_trt::serve::{Backend as ServeBackend, Limits, Policy, ServeConfig, Server};

use super::{OrtArgs, TransformerBackend};

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Engine folder made by `build-engine --pipeline`.
    #[arg(long, value_name = "DIR")]
    pub engine: PathBuf,
    /// Adapter folder: every *.safetensors is registered under its file stem; POST /v1/adapters adds files from it.
    #[arg(long, value_name = "DIR")]
    pub adapters: PathBuf,
    /// Address to listen on (port 0: any free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Transformer backend: `ort` (ONNX Runtime: the CPU, or its CUDA provider with --cuda) or
    /// `cuda` (native CUDA backend; GPU from --cuda, default 0). The text encoders and the VAE
    /// decoder run on ONNX Runtime (the CPU, or its CUDA provider with --cuda).
    #[arg(long, value_enum, default_value_t = TransformerBackend::Ort)]
    pub backend: TransformerBackend,
    #[command(flatten)]
    pub ort: OrtArgs,
    /// TF32 for fp32 GEMMs on CUDA.
    #[arg(long)]
    pub tf32: bool,
    /// Which queued request runs next: adapter-aware (prefer the installed / staged adapter set,
    /// bounded by --max-wait-ms) or fifo.
    #[arg(long, value_enum, default_value_t = Policy::AdapterAware)]
    pub schedule: Policy,
    /// Queued requests before 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Adapter-aware scheduling: the longest the oldest request waits behind others.
    #[arg(long, default_value_t = 2000)]
    pub max_wait_ms: u64,
    /// Per-request timeout (queue + generation), seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_s: f64,
    #[arg(long, default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Memory for staged adapter sets (LRU), MiB.
    #[arg(long, default_value_t = 2048)]
    pub stage_budget_mib: u64,
    /// After SIGTERM: seconds /readyz fails before the listener closes.
    #[arg(long, default_value_t = 0.0)]
    pub shutdown_delay_s: f64,
    /// Largest image side.
    #[arg(long, default_value_t = 1024)]
    pub max_size: usize,
    /// Image side when a request has no `size`.
    #[arg(long, default_value_t = 1024)]
    pub default_size: usize,
    #[arg(long, default_value_t = 50)]
    pub max_steps: usize,
    /// Steps when a request has no `steps`.
    #[arg(long, default_value_t = 28)]
    pub default_steps: usize,
    /// Images per request.
    #[arg(long, default_value_t = 4)]
    pub max_n: usize,
    /// Adapters per request.
    #[arg(long, default_value_t = 4)]
    pub max_loras: usize,
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{what} must be a non-negative number of seconds"))
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let backend = match a.backend {
        TransformerBackend::Ort => ServeBackend::Ort,
        #[cfg(feature = "cuda")]
        TransformerBackend::Cuda => ServeBackend::Cuda(super::cuda_options(&a.ort)?),
        #[cfg(not(feature = "cuda"))]
        TransformerBackend::Cuda => {
            anyhow::bail!("this flux-trt was built without the `cuda` feature (native CUDA backend): cargo build --release --features cuda")
        }
    };
    let config = ServeConfig {
        session: a.ort.options(a.tf32),
        backend,
        policy: a.schedule,
        queue_capacity: a.queue,
        max_wait: Duration::from_millis(a.max_wait_ms),
        request_timeout: secs(a.timeout_s, "--timeout-s")?,
        max_body_bytes: a.max_body_bytes,
        stage_budget_bytes: a.stage_budget_mib << 20,
        shutdown_delay: secs(a.shutdown_delay_s, "--shutdown-delay-s")?,
        limits: Limits {
            max_side: a.max_size,
            default_side: a.default_size.min(a.max_size),
            max_steps: a.max_steps,
            default_steps: a.default_steps.min(a.max_steps),
            max_n: a.max_n,
            max_loras: a.max_loras,
            ..Limits::default()
        },
        ..ServeConfig::new(a.engine.clone(), a.adapters.clone())
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let server = Server::bind(config, a.listen).await?;
        let addr = server.local_addr()?;
        let names: Vec<String> = server.adapters().into_iter().map(|i| i.name).collect();
        tracing::info!(%addr, adapters = ?names, "serving");
        println!("listening on {addr}");
        server.run(flux_trt::serve::shutdown_signal()).await?;
        Ok(())
    })
}

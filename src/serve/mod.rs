//! `flux-trt serve`: a multi-tenant LoRA image service on one pipeline engine folder.
//!
//! - [`api`]: the OpenAI-style request/response and error shape;
//! - `http`: the axum routes (`/v1/images/generations`, `/v1/adapters`, `/healthz`, `/readyz`,
//!   `/metrics`);
//! - `worker`: the generation thread and the background stager; `scheduler`: adapter-aware
//!   (or FIFO) choice of the next request and the LRU of staged sets; `registry`: adapter names →
//!   files in the adapter folder; `metrics`: Prometheus; `engine`: the one adapter onto the
//!   pipeline engine; [`client`]: a minimal HTTP/1 client for tests and the load generator.
//!
//! Shutdown: the future given to [`Server::run`] resolving (SIGTERM, Ctrl-C via
//! [`shutdown_signal`]) makes `/readyz` fail and new generations answer 503, waits
//! `shutdown_delay` (so load balancers notice), stops accepting connections, answers every request
//! in flight, then stops the worker.

pub mod api;
pub mod client;
mod engine;
mod http;
mod metrics;
mod registry;
mod scheduler;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use registry::AdapterInfo;
pub use scheduler::{Policy, SetKey};

use crate::runtime::ort::SessionOptions;

/// Request limits (each violation is a 400 naming its field).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest image side in pixels.
    pub max_side: usize,
    /// Side when `size` is not given.
    pub default_side: usize,
    pub max_steps: usize,
    /// Steps when `steps` is not given.
    pub default_steps: usize,
    /// Images per request.
    pub max_n: usize,
    /// Adapters per request.
    pub max_loras: usize,
    pub max_prompt_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_side: 1024, default_side: 1024, max_steps: 50, default_steps: 28, max_n: 4, max_loras: 4, max_prompt_bytes: 8192 }
    }
}

/// The runtime of the engine's transformer; the text encoders and the VAE decoder run on ONNX
/// Runtime with [`ServeConfig::session`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Backend {
    /// ONNX Runtime with [`ServeConfig::session`] (CPU or its CUDA provider).
    #[default]
    Ort,
    /// The native CUDA backend.
    #[cfg(feature = "cuda")]
    Cuda(crate::runtime::cuda::CudaOptions),
}

/// Everything `flux-trt serve` is started with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Engine folder written by `build-engine --pipeline`.
    pub engine: PathBuf,
    /// Adapter folder: every `*.safetensors` is registered under its file stem.
    pub adapters: PathBuf,
    /// ONNX Runtime options of the text encoders and VAE decoder (and of the transformer with [`Backend::Ort`]).
    pub session: SessionOptions,
    pub backend: Backend,
    pub policy: Policy,
    /// Requests queued (not counting the one running) before 429.
    pub queue_capacity: usize,
    /// Adapter-aware scheduling never lets the oldest request wait longer than this.
    pub max_wait: Duration,
    /// From acceptance to response; past it a request is answered 504 (checked between steps).
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Bytes of staged adapter sets kept (LRU).
    pub stage_budget_bytes: u64,
    /// After the shutdown signal: time `/readyz` fails before the listener closes.
    pub shutdown_delay: Duration,
    pub limits: Limits,
}

impl ServeConfig {
    /// Defaults for everything but the folders.
    pub fn new(engine: PathBuf, adapters: PathBuf) -> Self {
        ServeConfig {
            engine,
            adapters,
            session: SessionOptions::default(),
            backend: Backend::Ort,
            policy: Policy::AdapterAware,
            queue_capacity: 64,
            max_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(300),
            max_body_bytes: 64 * 1024,
            stage_budget_bytes: 2 << 30,
            shutdown_delay: Duration::ZERO,
            limits: Limits::default(),
        }
    }
}

/// Errors starting the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] crate::pipeline::engine::EngineFolderError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
}

/// What the HTTP handlers share.
pub(crate) struct AppState {
    pub(crate) worker: Arc<worker::Shared>,
    pub(crate) registry: Arc<registry::Registry>,
    pub(crate) engine: Arc<engine::Engine>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) draining: AtomicBool,
    pub(crate) limits: Limits,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: usize,
}

/// A bound, ready service.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    worker: worker::Worker,
    shutdown_delay: Duration,
}

impl Server {
    /// Opens the engine, registers the adapter folder's files (a file that does not fit the
    /// engine is skipped with a warning), starts the worker and binds `addr`.
    pub async fn bind(config: ServeConfig, addr: SocketAddr) -> Result<Server, ServeError> {
        let c = config.clone();
        let (engine, registry) = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
            let engine = engine::Engine::open(&c.engine, &c.session, &c.backend)?;
            let io = |source| ServeError::Io { path: c.adapters.clone(), source };
            let registry = registry::Registry::new(&c.adapters).map_err(io)?;
            for file in registry.scan().map_err(io)? {
                let name = file.trim_end_matches(".safetensors").to_string();
                match registry.register(&engine, &name, &file) {
                    Ok(info) => tracing::info!(adapter = %info.name, modules = info.modules, rank = info.max_rank, "registered"),
                    Err(e) => tracing::warn!(file = %file, error = %e.message, "adapter not registered"),
                }
            }
            Ok((Arc::new(engine), Arc::new(registry)))
        })
        .await
        .map_err(|e| ServeError::Startup(format!("startup task failed: {e}")))??;
        let mut metrics = metrics::Metrics::new();
        if let Some(b) = engine.device_memory_used() {
            metrics.register_device_memory();
            metrics.device_memory.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        let metrics = Arc::new(metrics);
        let cfg = worker::WorkerConfig {
            policy: config.policy,
            queue_capacity: config.queue_capacity,
            max_wait: config.max_wait,
            stage_budget_bytes: config.stage_budget_bytes,
            lookahead: 4,
            max_loras: config.limits.max_loras,
        };
        let worker = worker::Worker::start(Arc::clone(&engine), Arc::clone(&registry), Arc::clone(&metrics), cfg)
            .map_err(|source| ServeError::Io { path: "worker thread".into(), source })?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Io { path: addr.to_string().into(), source })?;
        let state = Arc::new(AppState {
            worker: Arc::clone(worker.shared()),
            registry,
            engine,
            metrics,
            draining: AtomicBool::new(false),
            limits: config.limits,
            timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        });
        Ok(Server { listener, state, worker, shutdown_delay: config.shutdown_delay })
    }

    /// The bound address (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Registered adapters.
    pub fn adapters(&self) -> Vec<AdapterInfo> {
        self.state.registry.list()
    }

    /// Serves until `shutdown` resolves, then drains (see the module docs) and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let state = Arc::clone(&self.state);
        let delay = self.shutdown_delay;
        let drain = async move {
            shutdown.await;
            state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(in_flight = state.worker.load(), "shutting down: readiness off, draining");
            tokio::time::sleep(delay).await;
        };
        let app = http::router(Arc::clone(&self.state));
        let served = axum::serve(self.listener, app).with_graceful_shutdown(drain).await;
        let worker = self.worker;
        let _ = tokio::task::spawn_blocking(move || worker.shutdown()).await;
        tracing::info!("drained; exiting");
        served.map_err(|source| ServeError::Io { path: "listener".into(), source })
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

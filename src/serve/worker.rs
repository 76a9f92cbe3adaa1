//! The worker: one thread runs generations (blocking, off the async runtime), one thread stages
//! the adapter sets of queued requests ahead of time into the [`StagedCache`]. Every accepted
//! request gets exactly one reply: its images, or the error that ended it (timeout, client gone,
//! adapter failure, even a panic in the pipeline).

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::oneshot;

use super::api::{ApiError, ImageData, ImageRequest, ImageResponse, LoraRef, TimingsMs, Truncation};
use super::engine::{Engine, StageFailure, Staged};
use super::metrics::{LoraInfoLabels, Metrics};
use super::registry::Registry;
use super::scheduler::{pick, Policy, SetKey, StagedCache};
use crate::pipeline::generate::GenerateRequest;
use crate::pipeline::latents::Resolution;
use crate::pipeline::PipelineError;

/// HTTP status for a request whose client went away (nginx's convention; never sent).
pub(crate) const CLIENT_CLOSED: u16 = 499;

pub(crate) type Reply = Result<ImageResponse, ApiError>;

/// One accepted request.
pub(crate) struct Job {
    pub(crate) key: SetKey,
    pub(crate) request: ImageRequest,
    pub(crate) enqueued: Instant,
    pub(crate) deadline: Instant,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// Scheduling knobs.
#[derive(Clone, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) policy: Policy,
    pub(crate) queue_capacity: usize,
    pub(crate) max_wait: Duration,
    pub(crate) stage_budget_bytes: u64,
    /// Distinct queued sets the stager prepares ahead.
    pub(crate) lookahead: usize,
    pub(crate) max_loras: usize,
}

struct State {
    queue: VecDeque<Job>,
    closed: bool,
    /// The installed set; `None` when unknown (an adapter in it was deleted or re-registered,
    /// so the next request installs its set whatever its key).
    installed: Option<SetKey>,
    running: Option<SetKey>,
    /// Sets being staged now (by the stager or the worker).
    staging: HashSet<SetKey>,
    /// Sets the stager failed to stage (the worker retries on the request path and reports).
    failed: HashSet<SetKey>,
    cache: StagedCache<Arc<Staged>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    engine: Arc<Engine>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    /// Moving average of one request's service time, in ms (for `Retry-After`).
    avg_service_ms: AtomicU64,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Sets the request's cancel flag when dropped (the HTTP handler's future is dropped when the
/// client disconnects) and wakes the worker so a queued request leaves the queue at once.
pub(crate) struct CancelOnDrop {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the set's adapter files now and lays them out (blocking).
    fn stage_now(&self, key: &SetKey) -> Result<Staged, ApiError> {
        let t0 = Instant::now();
        let mut adapters = Vec::new();
        for (i, (name, strength)) in key.entries().enumerate() {
            let a = self.registry.load(name).map_err(|e| e.with_param(format!("loras[{i}].name")))?;
            adapters.push((a, strength));
        }
        let pairs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
        let staged = self.engine.stage(&pairs).map_err(|e| match e {
            StageFailure::Incompatible(m) => ApiError::new(422, "invalid_request_error", "adapter_incompatible", m).with_param("loras"),
            StageFailure::Backend(m) => ApiError::internal(m),
        })?;
        self.metrics.stage_latency.observe(t0.elapsed().as_secs_f64());
        Ok(staged)
    }

    fn publish_cache(&self, st: &State) {
        self.metrics.cache_bytes.set(i64::try_from(st.cache.bytes()).unwrap_or(i64::MAX));
        self.metrics.cache_sets.set(st.cache.len() as i64);
    }

    fn publish_queue(&self, st: &State) {
        self.metrics.waiting.set(st.queue.len() as i64);
        self.metrics.running.set(i64::from(st.running.is_some()));
        let mut waiting: Vec<String> = st.queue.iter().map(|j| j.key.to_string()).collect();
        waiting.sort();
        waiting.dedup();
        self.metrics.lora_info.clear();
        self.metrics
            .lora_info
            .get_or_create(&LoraInfoLabels {
                running_lora_adapters: st.running.as_ref().map(ToString::to_string).unwrap_or_default(),
                waiting_lora_adapters: waiting.join(","),
                max_lora: self.cfg.max_loras.to_string(),
            })
            .set(1);
    }

    /// Answers queued requests whose client left or whose deadline passed.
    fn reap(&self, st: &mut State, now: Instant) {
        let mut i = 0;
        while i < st.queue.len() {
            let j = &st.queue[i];
            let gone = j.cancel.load(Ordering::SeqCst);
            if gone || now >= j.deadline {
                let Some(job) = st.queue.remove(i) else { break };
                let (status, reply) = if gone {
                    (CLIENT_CLOSED, ApiError::new(CLIENT_CLOSED, "invalid_request_error", "client_closed", "the client closed the connection"))
                } else {
                    (504, ApiError::new(504, "timeout_error", "timeout", "the request timed out in the queue"))
                };
                self.metrics.count(status);
                self.metrics.e2e_latency.observe(job.enqueued.elapsed().as_secs_f64());
                let _ = job.reply.send(Err(reply));
            } else {
                i += 1;
            }
        }
    }

    /// The staged set for `key`: from the cache (hit), after the stager finishes it, or staged
    /// here on the request path (miss). Returns it and the time spent staging here.
    fn staged_for(&self, key: &SetKey) -> Result<(Arc<Staged>, Duration), ApiError> {
        {
            let mut st = self.lock();
            loop {
                if let Some(s) = st.cache.get(key) {
                    self.metrics.cache_hits.inc();
                    return Ok((s, Duration::ZERO));
                }
                if !st.staging.contains(key) {
                    break;
                }
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.staging.insert(key.clone());
            st.failed.remove(key);
        }
        self.metrics.cache_misses.inc();
        let t0 = Instant::now();
        let r = self.stage_now(key).map(Arc::new);
        let mut st = self.lock();
        st.staging.remove(key);
        if let Ok(s) = &r {
            st.cache.insert(key.clone(), Arc::clone(s), s.bytes());
            self.publish_cache(&st);
        }
        self.changed.notify_all();
        r.map(|s| (s, t0.elapsed()))
    }

    /// Runs one request: stage (unless cached), install (unless installed), generate `n` images.
    fn run(&self, job: &Job) -> Reply {
        let started = Instant::now();
        let req = &job.request;
        let mut timings = TimingsMs { queue_ms: ms(started - job.enqueued), ..Default::default() };
        let installed = self.lock().installed.clone();
        let swapped = installed.as_ref() != Some(&job.key);
        if swapped {
            let (staged, stage_time) = self.staged_for(&job.key)?;
            timings.stage_ms = ms(stage_time);
            let d = self.engine.install(&staged).map_err(|e| match e {
                StageFailure::Incompatible(m) => ApiError::new(422, "invalid_request_error", "adapter_incompatible", m).with_param("loras"),
                StageFailure::Backend(m) => ApiError::internal(m),
            })?;
            self.lock().installed = Some(job.key.clone());
            self.metrics.swaps.inc();
            self.metrics.swap_latency.observe(d.as_secs_f64());
            timings.swap_ms = ms(d);
        } else {
            self.metrics.cache_hits.inc();
        }
        let resolution = Resolution::new(req.width, req.height).map_err(|e| ApiError::invalid("size", e.to_string()))?;
        // Only this thread installs, so these are the request's set; every image runs with them.
        let leases = self.engine.leases();
        let mut data = Vec::with_capacity(req.n);
        let mut truncated = Vec::new();
        for i in 0..req.n {
            let seed = req.seed.wrapping_add(i as u64);
            let g = GenerateRequest {
                prompt: req.prompt.clone(),
                prompt_2: req.prompt_2.clone(),
                resolution,
                steps: req.steps,
                guidance: req.guidance,
                seed,
                latents: None,
                keep_step_latents: false,
            };
            let t0 = Instant::now();
            let out = self.engine.generate(&g, &leases, |_, _| {
                if job.cancel.load(Ordering::SeqCst) || Instant::now() >= job.deadline {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let out = match out {
                Ok(o) => o,
                Err(PipelineError::Cancelled { step }) if job.cancel.load(Ordering::SeqCst) => {
                    return Err(ApiError::new(
                        CLIENT_CLOSED,
                        "invalid_request_error",
                        "client_closed",
                        format!("the client closed the connection; stopped after step {step}"),
                    ));
                }
                Err(PipelineError::Cancelled { step }) => {
                    return Err(ApiError::new(504, "timeout_error", "timeout", format!("the request timed out during generation (after step {step})")));
                }
                Err(e) => return Err(ApiError::internal(format!("generation failed: {e}"))),
            };
            self.metrics.image_latency.observe(t0.elapsed().as_secs_f64());
            for s in &out.timings.steps {
                self.metrics.step_latency.observe(s.as_secs_f64());
            }
            let t = &out.timings;
            timings.tokenize_ms += ms(t.tokenize);
            timings.encode_ms += ms(t.encode);
            timings.denoise_ms += ms(t.denoise());
            timings.decode_ms += ms(t.decode);
            if i == 0 {
                truncated = out.truncated.iter().map(|(e, r)| Truncation { encoder: e, removed: r.clone() }).collect();
            }
            let png = encode_png(&out.rgb8, out.width, out.height)?;
            data.push(ImageData { b64_json: base64::engine::general_purpose::STANDARD.encode(png), seed });
        }
        if let Some(b) = self.engine.device_memory_used() {
            self.metrics.device_memory.set(i64::try_from(b).unwrap_or(i64::MAX));
        }
        timings.total_ms = ms(job.enqueued.elapsed());
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(ImageResponse {
            created,
            data,
            adapters: req.loras.iter().map(|l| LoraRef { name: l.name.clone(), strength: l.strength }).collect(),
            swapped,
            truncated,
            timings,
        })
    }

    fn worker_loop(&self) {
        loop {
            let job = {
                let mut st = self.lock();
                loop {
                    let now = Instant::now();
                    self.reap(&mut st, now);
                    let cache = &st.cache;
                    let i = pick(
                        st.queue.iter().map(|j| (&j.key, j.enqueued)),
                        self.cfg.policy,
                        st.installed.as_ref(),
                        |k| cache.contains(k),
                        now,
                        self.cfg.max_wait,
                    );
                    if let Some(job) = i.and_then(|i| st.queue.remove(i)) {
                        st.running = Some(job.key.clone());
                        st.failed.remove(&job.key);
                        self.publish_queue(&st);
                        self.changed.notify_all();
                        break job;
                    }
                    self.publish_queue(&st);
                    if st.closed {
                        return;
                    }
                    // Wake for deadlines of queued requests too.
                    let next = st.queue.iter().map(|j| j.deadline).min().map(|d| d.saturating_duration_since(now)).unwrap_or(Duration::from_secs(1));
                    st = self.changed.wait_timeout(st, next.max(Duration::from_millis(1))).unwrap_or_else(|e| e.into_inner()).0;
                }
            };
            let t0 = Instant::now();
            let reply = std::panic::catch_unwind(AssertUnwindSafe(|| self.run(&job))).unwrap_or_else(|p| {
                let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                tracing::error!(panic = %what, "generation panicked; the worker goes on");
                Err(ApiError::internal(format!("the generation panicked: {what}")))
            });
            let service = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            let avg = self.avg_service_ms.load(Ordering::Relaxed);
            self.avg_service_ms.store(if avg == 0 { service } else { (avg * 7 + service) / 8 }, Ordering::Relaxed);
            let status = match &reply {
                Ok(_) => 200,
                Err(e) => e.status,
            };
            if let Err(e) = &reply {
                tracing::warn!(status, adapters = %job.key, error = %e.message, "request failed");
            }
            self.metrics.count(status);
            self.metrics.queue_time.observe((t0 - job.enqueued).as_secs_f64());
            self.metrics.e2e_latency.observe(job.enqueued.elapsed().as_secs_f64());
            let _ = job.reply.send(reply);
            let mut st = self.lock();
            st.running = None;
            self.publish_queue(&st);
            self.changed.notify_all();
        }
    }

    fn stager_loop(&self) {
        loop {
            let key = {
                let mut st = self.lock();
                loop {
                    if st.closed {
                        return;
                    }
                    let mut seen = HashSet::new();
                    let next = st
                        .queue
                        .iter()
                        .map(|j| &j.key)
                        .filter(|k| seen.insert((*k).clone()))
                        .take(self.cfg.lookahead)
                        .find(|k| st.installed.as_ref() != Some(*k) && !st.cache.contains(k) && !st.staging.contains(*k) && !st.failed.contains(*k))
                        .cloned();
                    if let Some(k) = next {
                        st.staging.insert(k.clone());
                        break k;
                    }
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| self.stage_now(&key)));
            let mut st = self.lock();
            st.staging.remove(&key);
            match r {
                Ok(Ok(s)) => {
                    let bytes = s.bytes();
                    st.cache.insert(key, Arc::new(s), bytes);
                    self.publish_cache(&st);
                }
                Ok(Err(e)) => {
                    tracing::debug!(adapters = %key, error = %e.message, "background staging failed; the request will report it");
                    st.failed.insert(key);
                }
                Err(_) => {
                    st.failed.insert(key);
                }
            }
            self.changed.notify_all();
        }
    }
}

impl Shared {
    /// Queues `job`, or answers why not: 429 (queue full) or 503 (shutting down), with
    /// `Retry-After` from the queue length and the recent service time.
    pub(crate) fn submit(&self, job: Job) -> Result<(), ApiError> {
        let sh = self;
        let mut st = sh.lock();
        let avg_ms = sh.avg_service_ms.load(Ordering::Relaxed).max(1);
        let retry = |queued: usize| (queued as u64 * avg_ms).div_ceil(1000).max(1);
        if st.closed {
            return Err(ApiError { retry_after: Some(1), ..ApiError::new(503, "server_error", "shutting_down", "the server is shutting down") });
        }
        if st.queue.len() >= sh.cfg.queue_capacity {
            let msg = format!("the queue is full ({} requests); retry later", st.queue.len());
            return Err(ApiError { retry_after: Some(retry(st.queue.len())), ..ApiError::new(429, "rate_limit_error", "queue_full", msg) });
        }
        st.queue.push_back(job);
        sh.publish_queue(&st);
        sh.changed.notify_all();
        Ok(())
    }

    /// Forgets staged sets that use `name` (after it is deleted or re-registered).
    pub(crate) fn invalidate(&self, name: &str) {
        let mut st = self.lock();
        st.cache.remove_adapter(name);
        if st.installed.as_ref().is_some_and(|k| k.names().any(|n| n == name)) {
            st.installed = None;
        }
        st.failed.clear();
        self.publish_cache(&st);
    }

    /// Requests queued or running now.
    pub(crate) fn load(&self) -> usize {
        let st = self.lock();
        st.queue.len() + usize::from(st.running.is_some())
    }
}

fn encode_png(rgb8: &[u8], width: usize, height: usize) -> Result<Vec<u8>, ApiError> {
    use image::ImageEncoder as _;
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(ApiError::internal("image too large for PNG"));
    };
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(rgb8, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| ApiError::internal(format!("PNG encoding: {e}")))?;
    Ok(buf)
}

impl Worker {
    pub(crate) fn start(engine: Arc<Engine>, registry: Arc<Registry>, metrics: Arc<Metrics>, cfg: WorkerConfig) -> std::io::Result<Self> {
        let state = State {
            queue: VecDeque::new(),
            closed: false,
            installed: Some(SetKey::base()),
            running: None,
            staging: HashSet::new(),
            failed: HashSet::new(),
            cache: StagedCache::new(cfg.stage_budget_bytes),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), changed: Condvar::new(), engine, registry, metrics, cfg, avg_service_ms: AtomicU64::new(0) });
        let w = Arc::clone(&shared);
        let worker = std::thread::Builder::new().name("serve-worker".into()).spawn(move || w.worker_loop())?;
        let s = Arc::clone(&shared);
        let stager = std::thread::Builder::new().name("serve-stager".into()).spawn(move || s.stager_loop())?;
        Ok(Worker { shared, threads: vec![worker, stager] })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops taking requests, finishes the queued ones, joins the threads.
    pub(crate) fn shutdown(self) {
        {
            let mut st = self.shared.lock();
            st.closed = true;
            self.shared.changed.notify_all();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

//! ONNX Runtime benchmark and hot-swap stress test of one engine folder, written as one JSON file.
//! Every run goes through the runtime interface (`Transformer::bind` once per request, then
//! `Transformer::step` with a lease), as a generation does.
//!
//! Measures: session creation, node placement, transformer-call latency (median/min over
//! `--steps` after `--warmup`), slot swaps (staged: install only; from file: read + parse, and
//! lay-out + convert + upload), a stress loop of `--stress-swaps` swaps cycling the adapters
//! (staged installs, every `--stress-host-every`-th from the loaded adapter) interleaved with
//! inference every `--stress-run-every` swaps and
//! checked bit-exact against each adapter's reference output, device memory (peak sampled, and
//! before/after the stress loop) and host RSS, and a multithreaded check: `--threads` threads,
//! each holding a lease on its own slot set (the base model or one adapter), run concurrently and
//! must reproduce the single-threaded outputs bit for bit.
//!
//! ```text
//! cargo run --release --example ort_bench --features tensorrt -- --engine engines/dev-fp16 \
//!     --provider cuda --adapters a.safetensors,b.safetensors,c.safetensors --json out.json
//! ```
//! Device memory: CUDA's `cuMemGetInfo` through cudarc when built with the `tensorrt` feature,
//! otherwise `nvidia-smi --query-gpu=memory.used`; the JSON records which.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use flux_trt::manifest::Manifest;
use flux_trt::runtime::inputs::save_safetensors;
use flux_trt::runtime::ort::{CpuFallback, ExecutionProvider, FluxSession, StagedAdapter};
use flux_trt::runtime::{FluxInputs, HostTensor, Lease, OwnedRequest, Slotted, Transformer};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "ort_bench", about = "Benchmark and hot-swap stress test of an engine on ONNX Runtime")]
struct Args {
    #[arg(long)]
    engine: PathBuf,
    /// cpu or cuda
    #[arg(long, default_value = "cuda")]
    provider: String,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: i32,
    /// libonnxruntime (default ORT_DYLIB_PATH).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    #[arg(long, default_value_t = 1024)]
    width: usize,
    #[arg(long, default_value_t = 1024)]
    height: usize,
    #[arg(long, default_value_t = 512)]
    txt_len: usize,
    /// Timed transformer calls (after the warm-up).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Comma-separated LoRA files.
    #[arg(long, value_delimiter = ',')]
    adapters: Vec<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    stress_swaps: usize,
    /// Inference every this many stress swaps (0: none).
    #[arg(long, default_value_t = 10)]
    stress_run_every: usize,
    /// Every this many stress swaps is a swap from the loaded adapter (lay-out, convert, upload);
    /// the others install staged sets (0: staged only).
    #[arg(long, default_value_t = 20)]
    stress_host_every: usize,
    /// Threads of the multithreaded check (0: skip).
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Runs per thread in the multithreaded check.
    #[arg(long, default_value_t = 2)]
    thread_runs: usize,
    /// Intra-op threads of the session (default: ONNX Runtime's choice).
    #[arg(long)]
    intra_threads: Option<usize>,
    /// I/O binding with device-resident slots (default: on for cuda, off for cpu).
    #[arg(long)]
    io_binding: Option<bool>,
    /// CUDA: shape-only (default), forbid (ORT's session.disable_cpu_ep_fallback) or allow.
    #[arg(long, default_value = "shape-only")]
    cpu_fallback: String,
    #[arg(long)]
    tf32: bool,
    /// ONNX Runtime profiling of the warm-up and timed base runs (trace file name prefix).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Stop after the profiled base runs.
    #[arg(long)]
    profile_only: bool,
    /// Slot-set device-memory budget in MiB.
    #[arg(long)]
    slot_budget_mib: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inputs from a safetensors file (hidden_states, encoder_hidden_states, ... as for `flux-trt run`).
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Write `sample` (base model) and `sample.<adapter>` (each adapter) as safetensors.
    #[arg(long)]
    save_output: Option<PathBuf>,
    #[arg(long)]
    json: PathBuf,
}

/// Splitmix64 normals (Box-Muller), reproducible from `--seed`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let r = self.next();
                let u0 = 1.0 - ((r >> 40) as f32) / (1u64 << 24) as f32;
                let u1 = ((r >> 16) & 0xff_ffff) as f32 / (1u64 << 24) as f32;
                std * (-2.0 * u0.ln()).sqrt() * (std::f32::consts::TAU * u1).cos()
            })
            .collect()
    }
}

/// One request: its constants (bound once per request through the runtime interface) and the
/// step's latents and timestep.
struct Request {
    constants: OwnedRequest,
    latents: Vec<f32>,
    timestep: f32,
}

impl Request {
    fn shapes(&self, cfg: &flux_trt::FluxConfig) -> Value {
        let c = &self.constants;
        json!({
            "hidden_states": [1, c.img_ids.len(), cfg.in_channels],
            "encoder_hidden_states": [1, c.txt_ids.len(), cfg.context_dim],
            "pooled_projections": [1, c.pooled_projections.len()],
            "guidance": c.guidance.map(|_| [1]),
            "txt_ids": [c.txt_ids.len(), 3],
            "img_ids": [c.img_ids.len(), 3],
        })
    }
}

fn random_request(m: &Manifest, a: &Args) -> Result<Request> {
    let cfg = &m.model;
    if !a.width.is_multiple_of(16) || !a.height.is_multiple_of(16) {
        bail!("--width/--height must be multiples of 16");
    }
    let (h, w) = (a.height / 16, a.width / 16);
    let mut rng = Rng(a.seed);
    let latents = rng.normals(h * w * cfg.in_channels, 1.0);
    let constants = OwnedRequest {
        batch: 1,
        encoder_hidden_states: rng.normals(a.txt_len * cfg.context_dim, 0.25),
        pooled_projections: rng.normals(cfg.pooled_dim, 0.25),
        guidance: m.inputs.iter().any(|i| i.name == "guidance").then_some(3.5),
        txt_ids: vec![[0.0f32; 3]; a.txt_len],
        img_ids: flux_trt::flux::img_ids(h, w),
    };
    Ok(Request { constants, latents, timestep: 0.5 })
}

/// A request from an inputs file (as for `flux-trt run`, with `txt_ids` / `img_ids`, batch 1).
fn file_request(path: &std::path::Path, m: &Manifest) -> Result<Request> {
    let x = FluxInputs::from_safetensors(path, &m.model)?;
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let ids = |name: &str| -> Result<Vec<[f32; 3]>> {
        let v = st.tensor(name).with_context(|| format!("{}: `{name}` (the benchmark binds ids, not RoPE tables)", path.display()))?;
        let vals: Vec<f32> = match v.dtype() {
            safetensors::Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            safetensors::Dtype::I64 => v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
            d => bail!("{}: `{name}` has dtype {d:?}", path.display()),
        };
        Ok(vals.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
    };
    if x.batch() != 1 {
        bail!("{}: batch {} (the benchmark runs batch 1)", path.display(), x.batch());
    }
    let constants = OwnedRequest {
        batch: 1,
        encoder_hidden_states: x.encoder_hidden_states.data().to_vec(),
        pooled_projections: x.pooled_projections.data().to_vec(),
        guidance: x.guidance.as_ref().map(|g| g.data()[0]),
        txt_ids: ids("txt_ids")?,
        img_ids: ids("img_ids")?,
    };
    Ok(Request { constants, latents: x.hidden_states.data().to_vec(), timestep: x.timestep.data()[0] })
}

/// One transformer call on a bound request.
fn call<T: Transformer>(s: &T, lease: &Lease<T::Slots>, bound: &mut T::Bound, req: &Request) -> Result<HostTensor> {
    let shape = vec![1, req.constants.img_ids.len(), s.manifest().model.out_channels];
    let mut out = vec![0f32; shape.iter().product()];
    s.step(lease, bound, &req.latents, req.timestep, &mut out)?;
    HostTensor::new(shape, out).context("output shape")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `{median, min, max, n}` in milliseconds.
fn stats(v: &[Duration]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut s: Vec<f64> = v.iter().map(|d| ms(*d)).collect();
    s.sort_by(f64::total_cmp);
    json!({"median_ms": s[s.len() / 2], "min_ms": s[0], "max_ms": s[s.len() - 1], "n": s.len()})
}

/// Host memory of this process from /proc/self/status (`VmRSS`, `VmHWM`) in bytes.
fn host_memory() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb =
        |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).map(|k| k * 1024);
    json!({"rss_bytes": kb("VmRSS:"), "peak_rss_bytes": kb("VmHWM:")})
}

/// Device-wide used memory in bytes, and how it was measured.
struct GpuMem {
    method: &'static str,
    #[cfg(feature = "tensorrt")]
    ctx: Option<Arc<cudarc::driver::CudaContext>>,
    device: i32,
}

impl GpuMem {
    fn new(device: i32, cuda: bool) -> Self {
        if !cuda {
            return GpuMem {
                method: "none (cpu provider)",
                #[cfg(feature = "tensorrt")]
                ctx: None,
                device,
            };
        }
        #[cfg(feature = "tensorrt")]
        // SAFETY: only probes whether libcuda can be loaded.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            if let Ok(ctx) = cudarc::driver::CudaContext::new(device as usize) {
                return GpuMem { method: "cuMemGetInfo (cudarc, total - free)", ctx: Some(ctx), device };
            }
        }
        GpuMem {
            method: "nvidia-smi --query-gpu=memory.used",
            #[cfg(feature = "tensorrt")]
            ctx: None,
            device,
        }
    }
    fn used(&self) -> Option<u64> {
        #[cfg(feature = "tensorrt")]
        if let Some(ctx) = &self.ctx {
            return ctx.mem_get_info().ok().map(|(free, total)| (total - free) as u64);
        }
        if self.method.starts_with("none") {
            return None;
        }
        let out = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", &self.device.to_string()])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().ok().map(|mib| mib << 20)
    }
}

/// Samples device memory in a thread until dropped; keeps the peak.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(mem: Arc<GpuMem>) -> Self {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(u) = mem.used() {
                    p.fetch_max(u, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        PeakSampler { stop, peak, handle: Some(handle) }
    }
    fn peak(&self) -> Option<u64> {
        Some(self.peak.load(Ordering::Relaxed)).filter(|p| *p > 0)
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Transformer calls of one bound request with `lease` (the per-step cost of a generation).
fn timed_runs<T: Transformer>(s: &T, lease: &Lease<T::Slots>, req: &Request, warmup: usize, steps: usize) -> Result<(Vec<Duration>, HostTensor)> {
    let mut bound = s.bind(&req.constants.inputs())?;
    let mut last = None;
    for _ in 0..warmup {
        last = Some(call(s, lease, &mut bound, req)?);
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        last = Some(call(s, lease, &mut bound, req)?);
        times.push(t.elapsed());
    }
    Ok((times, last.context("no run")?))
}

fn main() -> Result<()> {
    let a = Args::parse();
    let cuda = match a.provider.as_str() {
        "cuda" => true,
        "cpu" => false,
        o => bail!("--provider {o}: use cpu or cuda"),
    };
    let mem = Arc::new(GpuMem::new(a.device, cuda));
    let sampler = PeakSampler::start(Arc::clone(&mem));
    let gpu_before_session = mem.used();
    let mut b = FluxSession::builder(&a.engine).with_tf32(a.tf32).with_cpu_fallback(a.cpu_fallback.parse::<CpuFallback>().map_err(anyhow::Error::msg)?);
    if cuda {
        b = b.with_execution_provider(ExecutionProvider::Cuda { device: a.device });
    }
    if let Some(p) = &a.profile {
        b = b.with_profiling(p);
    }
    if let Some(p) = &a.ort_lib {
        b = b.with_library(p);
    }
    if let Some(n) = a.intra_threads {
        b = b.with_threads(n);
    }
    if let Some(on) = a.io_binding {
        b = b.with_io_binding(on);
    }
    if let Some(mib) = a.slot_budget_mib {
        b = b.with_slot_budget(mib << 20);
    }
    let t0 = Instant::now();
    let s = b.build()?;
    let session_ms = ms(t0.elapsed());
    eprintln!("session on {} in {session_ms:.0} ms (io binding {})", a.provider, s.io_binding());
    let inputs = match &a.inputs {
        Some(p) => file_request(p, s.manifest())?,
        None => random_request(s.manifest(), &a)?,
    };
    let gpu_after_session = mem.used();
    let input_shapes = inputs.shapes(&s.manifest().model);

    // Transformer calls on the base model.
    let base_lease = s.lease();
    let (base_times, base_out) = timed_runs(&s, &base_lease, &inputs, a.warmup, a.steps)?;
    eprintln!("base: {}", stats(&base_times));
    if a.profile.is_some() {
        let trace = s.end_profiling()?;
        eprintln!("profile: {}", trace.display());
        if a.profile_only {
            return Ok(());
        }
    }

    // Adapters: file read + parse, staging (lay-out + convert + upload), staged installs.
    let mut loaded = Vec::new();
    let mut load_times = Vec::new();
    for p in &a.adapters {
        let t = Instant::now();
        let ad = flux_trt::lora::load(p).with_context(|| format!("{}", p.display()))?;
        load_times.push(t.elapsed());
        loaded.push(ad);
    }
    let mut stage_times = Vec::new();
    let mut staged: Vec<StagedAdapter> = Vec::new();
    for ad in &loaded {
        let t = Instant::now();
        staged.push(s.stage(&[(ad, 1.0)])?);
        stage_times.push(t.elapsed());
    }
    let mut outputs = vec![("sample".to_string(), base_out.clone())];
    let mut adapter_runs = Vec::new();
    let mut leases = vec![base_lease.clone()];
    for (st, ad) in staged.iter().zip(&loaded) {
        s.install(st)?;
        let lease = s.lease();
        let (times, out) = timed_runs(&s, &lease, &inputs, 1, a.steps.min(3))?;
        adapter_runs.push(json!({"adapter": ad.name, "modules": ad.modules.len(), "max_rank": ad.max_rank(), "slot_bytes": st.bytes(), "run": stats(&times), "max_abs_delta_vs_base": out.max_abs_diff(&base_out)}));
        outputs.push((format!("sample.{}", ad.name), out));
        leases.push(lease);
    }
    let mut staged_swaps = Vec::new();
    let mut host_swaps = Vec::new();
    if !staged.is_empty() {
        for i in 0..200 {
            staged_swaps.push(s.install(&staged[i % staged.len()])?.elapsed);
        }
        for i in 0..(3 * loaded.len()).max(3) {
            let ad = &loaded[i % loaded.len()];
            let t = Instant::now();
            s.swap(&[(ad, 1.0)])?;
            host_swaps.push(t.elapsed());
        }
    }
    if let Some(p) = &a.save_output {
        let refs: Vec<(&str, &HostTensor)> = outputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
        save_safetensors(p, &refs)?;
    }

    // Stress: swaps alternating the adapters, staged and from host in turn, with inference.
    let gpu_before_stress = mem.used();
    let host_before_stress = host_memory();
    let slot_bytes_before = s.slot_bytes_in_use();
    let (mut mismatches, mut stress_runs, mut stress_host_swaps, mut stress_swap_times) = (0usize, 0usize, 0usize, Vec::new());
    let t_stress = Instant::now();
    let mut stress_bound = s.bind(&inputs.constants.inputs())?;
    if !loaded.is_empty() {
        for i in 0..a.stress_swaps {
            let k = i % loaded.len();
            let t = Instant::now();
            if a.stress_host_every > 0 && (i + 1) % a.stress_host_every == 0 {
                s.swap(&[(&loaded[k], 1.0)])?;
                stress_host_swaps += 1;
            } else {
                s.install(&staged[k])?;
            }
            stress_swap_times.push(t.elapsed());
            if a.stress_run_every > 0 && (i + 1) % a.stress_run_every == 0 {
                let out = call(&s, &s.lease(), &mut stress_bound, &inputs)?;
                stress_runs += 1;
                if !out.bit_eq(&outputs[k + 1].1) {
                    mismatches += 1;
                }
            }
        }
    }
    let stress_s = t_stress.elapsed().as_secs_f64();
    let gpu_after_stress = mem.used();

    // Multithreaded: each thread runs with its own lease (base or one adapter) concurrently.
    let mut thread_report = Value::Null;
    if a.threads > 0 {
        let s = Arc::new(s);
        let inputs = Arc::new(inputs);
        let refs = Arc::new(outputs.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
        let leases = Arc::new(leases);
        let t = Instant::now();
        let handles: Vec<_> = (0..a.threads)
            .map(|i| {
                let (s, inputs, refs, leases, runs) = (Arc::clone(&s), Arc::clone(&inputs), Arc::clone(&refs), Arc::clone(&leases), a.thread_runs);
                std::thread::spawn(move || -> Result<(usize, usize)> {
                    let k = i % leases.len();
                    let mut equal = 0;
                    let mut bound = s.bind(&inputs.constants.inputs())?;
                    for _ in 0..runs {
                        if call(&*s, &leases[k], &mut bound, &inputs)?.bit_eq(&refs[k]) {
                            equal += 1;
                        }
                    }
                    Ok((k, equal))
                })
            })
            .collect();
        let mut per_thread = Vec::new();
        let mut all_equal = true;
        for h in handles {
            let (k, equal) = h.join().map_err(|_| anyhow::anyhow!("thread panicked"))??;
            all_equal &= equal == a.thread_runs;
            per_thread.push(json!({"set": outputs[k].0.strip_prefix("sample.").unwrap_or("base"), "bit_equal_runs": equal, "runs": a.thread_runs}));
        }
        thread_report = json!({"threads": a.threads, "all_bit_equal": all_equal, "seconds": t.elapsed().as_secs_f64(), "per_thread": per_thread});
        eprintln!("threads: all bit-equal {all_equal}");
    }
    let peak = sampler.peak();
    drop(sampler);

    let report = json!({
        "engine": a.engine.display().to_string(),
        "provider": a.provider,
        "device": a.device,
        "tf32": a.tf32,
        "cpu_fallback": a.cpu_fallback,
        "ort_library": flux_trt::runtime::ort::loaded_library().map(|p| p.display().to_string()),
        "precision": s_precision(&a.engine).map(|p| format!("{p:?}")),
        "inputs": {"source": a.inputs.as_ref().map_or_else(|| format!("random (seed {}, {}x{} px, {} text tokens)", a.seed, a.width, a.height, a.txt_len), |p| p.display().to_string()),
                   "shapes": input_shapes},
        "session": {"create_ms": session_ms, "io_binding": a.io_binding.unwrap_or(cuda)},
        "transformer_call_base": stats(&base_times),
        "adapters": adapter_runs,
        "swap": {
            "staged_install": stats(&staged_swaps),
            "from_loaded_adapter_layout_convert_upload": stats(&host_swaps),
            "file_read_parse": stats(&load_times),
            "stage_layout_convert_upload": stats(&stage_times),
        },
        "stress": {"swaps": stress_swap_times.len(), "from_host_swaps": stress_host_swaps, "swap": stats(&stress_swap_times), "runs": stress_runs, "bit_mismatches": mismatches, "seconds": stress_s,
                   "slot_bytes_before": slot_bytes_before},
        "threads": thread_report,
        "memory": {
            "device_method": mem.method,
            "device_used_bytes": {"before_session": gpu_before_session, "after_session": gpu_after_session, "before_stress": gpu_before_stress, "after_stress": gpu_after_stress, "peak_sampled": peak},
            "host_before_stress": host_before_stress,
            "host_after": host_memory(),
        },
    });
    let text = serde_json::to_vec_pretty(&report)?;
    flux_trt::util::write_atomic(&a.json, &text).with_context(|| format!("{}", a.json.display()))?;
    println!("{}", String::from_utf8_lossy(&text));
    if mismatches > 0 {
        bail!("{mismatches} stress runs were not bit-equal to their adapter's reference output");
    }
    Ok(())
}

fn s_precision(engine: &std::path::Path) -> Option<flux_trt::manifest::Precision> {
    flux_trt::Manifest::load(engine).ok().map(|m| m.precision)
}

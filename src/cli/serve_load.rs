//! `flux-trt serve-load`: load generator for `flux-trt serve` (loopback only, bounded in count and time): starts the
//! server once per scheduling policy, sends `--requests` image requests from `--concurrency`
//! clients with a mix of adapter sets, samples the server's RSS, stops it with SIGTERM, and writes
//! throughput, latency percentiles, swaps per image, errors and memory side by side as JSON.
//!
//! ```text
//! flux-trt serve-load \
//!     --engine engines/tiny --adapters adapters --requests 1000 --size 64x64 --steps 2 \
//!     --out tools/bench/results/serve_load_cpu.json -- --threads 1
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use flux_trt::serve::client::request;
use flux_trt::serve::Policy;
use serde_json::{json, Value};

#[derive(Args, Clone, Debug)]
pub struct ServeLoadArgs {
    /// The `flux-trt` binary to start (`serve` subcommand); default: this one.
    #[arg(long)]
    server: Option<PathBuf>,
    #[arg(long)]
    engine: PathBuf,
    #[arg(long)]
    adapters: PathBuf,
    /// Policies to compare, each on a fresh server.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Policy::AdapterAware, Policy::Fifo])]
    schedules: Vec<Policy>,
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop sending after this long (per policy).
    #[arg(long, default_value_t = 900.0)]
    max_seconds: f64,
    #[arg(long, default_value = "64x64")]
    size: String,
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Adapter sets to draw from uniformly: `base`, `NAME`, `NAME:S`, `A+B:0.5`
    /// (default: base and every registered adapter).
    #[arg(long, value_delimiter = ',')]
    mix: Vec<String>,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra `flux-trt serve` arguments (e.g. `--backend cuda --cuda 0`).
    #[arg(last = true)]
    server_args: Vec<String>,
}

fn loras(set: &str) -> Value {
    if set == "base" {
        return json!([]);
    }
    Value::Array(
        set.split('+')
            .map(|p| match p.split_once(':') {
                Some((n, s)) => json!({"name": n, "strength": s.parse::<f64>().unwrap_or(1.0)}),
                None => json!({"name": p, "strength": 1.0}),
            })
            .collect(),
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// The GPU memory gauge `flux-trt serve` exports on GPU backends.
const DEVICE_MEMORY: &str = "flux_trt_device_memory_used_bytes";

fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.split(['{', ' ']).next() == Some(name)).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
}

struct Sample {
    status: u16,
    latency_ms: f64,
    swapped: bool,
}

async fn run_policy(a: &ServeLoadArgs, policy: Policy) -> anyhow::Result<Value> {
    let server = match &a.server {
        Some(s) => s.clone(),
        None => std::env::current_exe().context("this executable")?,
    };
    let mut child = Command::new(&server)
        .args(["serve", "--engine"])
        .arg(&a.engine)
        .arg("--adapters")
        .arg(&a.adapters)
        .args(["--listen", "127.0.0.1:0", "--schedule", policy.name(), "--queue", &(a.concurrency * 2).max(16).to_string()])
        .args(&a.server_args)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", server.display()))?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().strip_prefix("listening on ").with_context(|| format!("unexpected server output {line:?}"))?.parse()?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address");
    }
    let listed = request(addr, "GET", "/v1/adapters", None).await?.json()?;
    let names: Vec<String> = listed["data"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str().map(String::from)).collect();
    let mix: Vec<String> = if a.mix.is_empty() { std::iter::once("base".to_string()).chain(names.iter().cloned()).collect() } else { a.mix.clone() };
    let body =
        |i: usize, set: &str| json!({"prompt": format!("a photo of a cat, variation {i}"), "size": a.size, "steps": a.steps, "seed": i, "loras": loras(set)});
    // Warm-up: every set once (not counted).
    for (i, set) in mix.iter().enumerate() {
        let r = request(addr, "POST", "/v1/images/generations", Some(body(i, set).to_string().into_bytes())).await?;
        if r.status != 200 {
            bail!("warm-up request for {set} failed: {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
    let rss_warm = rss_kib(pid);
    let before = String::from_utf8(request(addr, "GET", "/metrics", None).await?.body)?;
    let stop = Arc::new(AtomicBool::new(false));
    let rss = Arc::new(Mutex::new(Vec::<u64>::new()));
    // GPU memory from the server's own gauge (GPU backends export it), once a second.
    let gpu_mib = |text: &str| text.contains(DEVICE_MEMORY).then(|| metric(text, DEVICE_MEMORY) / (1 << 20) as f64);
    let gpu_warm = gpu_mib(&before);
    let gpu = Arc::new(Mutex::new(Vec::<f64>::new()));
    let sampler = {
        let (stop, rss, gpu) = (Arc::clone(&stop), Arc::clone(&rss), Arc::clone(&gpu));
        tokio::spawn(async move {
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    rss.lock().unwrap().push(k);
                }
                if gpu_warm.is_some() && tick.is_multiple_of(4) {
                    if let Some(m) = request(addr, "GET", "/metrics", None).await.ok().and_then(|r| String::from_utf8(r.body).ok()).and_then(|t| gpu_mib(&t)) {
                        gpu.lock().unwrap().push(m);
                    }
                }
                tick += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(a.max_seconds);
    let mut clients = Vec::new();
    for _ in 0..a.concurrency {
        let (next, samples, mix) = (Arc::clone(&next), Arc::clone(&samples), mix.clone());
        let n = a.requests;
        let (size, steps) = (a.size.clone(), a.steps);
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() >= deadline {
                    break;
                }
                // A fixed pseudo-random draw per index (same sequence for every policy).
                let set = &mix[(i.wrapping_mul(2654435761) >> 7) % mix.len()];
                let b = json!({"prompt": format!("a photo of a cat, variation {i}"), "size": size, "steps": steps, "seed": i, "loras": loras(set)});
                let t = Instant::now();
                let r = request(addr, "POST", "/v1/images/generations", Some(b.to_string().into_bytes())).await;
                let latency_ms = t.elapsed().as_secs_f64() * 1e3;
                let (status, swapped) = match r {
                    Ok(r) => {
                        let swapped = r.status == 200 && r.json().ok().and_then(|v| v["swapped"].as_bool()).unwrap_or(false);
                        (r.status, swapped)
                    }
                    Err(_) => (0, false),
                };
                samples.lock().unwrap().push(Sample { status, latency_ms, swapped });
            }
        }));
    }
    for c in clients {
        c.await?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = String::from_utf8(request(addr, "GET", "/metrics", None).await?.body)?;
    stop.store(true, Ordering::Relaxed);
    sampler.await?;
    let rss_end = rss_kib(pid);
    // SIGTERM: the server drains and exits 0.
    let t_stop = Instant::now();
    #[cfg(unix)]
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait()?;
    let shutdown_s = t_stop.elapsed().as_secs_f64();

    let samples = samples.lock().unwrap();
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.status == 200).collect();
    let mut lat: Vec<f64> = ok.iter().map(|s| s.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.status != 200) {
        *errors.entry(if s.status == 0 { "connection".into() } else { s.status.to_string() }).or_default() += 1;
    }
    let swaps = ok.iter().filter(|s| s.swapped).count();
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let rss = rss.lock().unwrap();
    let mib = |k: Option<u64>| k.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0);
    Ok(json!({
        "schedule": policy.name(),
        "requests": samples.len(),
        "ok": ok.len(),
        "errors": errors,
        "wall_s": wall,
        "images_per_s": ok.len() as f64 / wall,
        "latency_ms": {"p50": percentile(&lat, 50.0), "p95": percentile(&lat, 95.0), "p99": percentile(&lat, 99.0), "max": lat.last(), "mean": lat.iter().sum::<f64>() / lat.len().max(1) as f64},
        "swaps": swaps,
        "swaps_per_image": swaps as f64 / ok.len().max(1) as f64,
        "server_swaps_total": delta("flux_trt_adapter_swaps_total"),
        "staged_cache_hits": delta("flux_trt_staged_cache_hits_total"),
        "staged_cache_misses": delta("flux_trt_staged_cache_misses_total"),
        "mean_step_ms": 1e3 * delta("flux_trt_step_latency_seconds_sum") / delta("flux_trt_step_latency_seconds_count").max(1.0),
        "rss_mib": {"after_warmup": mib(rss_warm), "max": mib(rss.iter().copied().max()), "min": mib(rss.iter().copied().min()), "end": mib(rss_end), "samples": rss.len()},
        "gpu_memory_mib": gpu_warm.map(|warm| {
            let g = gpu.lock().unwrap();
            json!({"after_warmup": warm, "max": g.iter().copied().fold(warm, f64::max), "min": g.iter().copied().fold(warm, f64::min), "end": gpu_mib(&after), "samples": g.len()})
        }),
        "mix": mix,
        "sigterm_exit_code": status.code(),
        "shutdown_s": shutdown_s,
    }))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd).args(args).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn run(a: ServeLoadArgs) -> anyhow::Result<()> {
    let loadavg_start = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut runs = Vec::new();
    for s in &a.schedules {
        eprintln!("[serve_load] {}: {} requests, concurrency {}", s.name(), a.requests, a.concurrency);
        let r = rt.block_on(run_policy(&a, *s))?;
        eprintln!("[serve_load] {}: {}", s.name(), serde_json::to_string(&r)?);
        runs.push(r);
    }
    println!("| schedule | images/s | p50 ms | p95 ms | p99 ms | swaps/image | errors | RSS MiB (warm → max → end) | GPU MiB (warm → max → end) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let l = &r["latency_ms"];
        let m = &r["rss_mib"];
        let g = &r["gpu_memory_mib"];
        let gpu = if g.is_null() { "n/a".to_string() } else { format!("{} → {} → {}", g["after_warmup"], g["max"], g["end"]) };
        println!(
            "| {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.3} | {} | {} → {} → {} | {gpu} |",
            r["schedule"].as_str().unwrap_or(""),
            r["images_per_s"].as_f64().unwrap_or(0.0),
            l["p50"].as_f64().unwrap_or(0.0),
            l["p95"].as_f64().unwrap_or(0.0),
            l["p99"].as_f64().unwrap_or(0.0),
            r["swaps_per_image"].as_f64().unwrap_or(0.0),
            r["requests"].as_u64().unwrap_or(0) - r["ok"].as_u64().unwrap_or(0),
            m["after_warmup"],
            m["max"],
            m["end"]
        );
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()));
    let result = json!({
        "date": sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": {"cpu": cpu, "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(), "gpu": sh("nvidia-smi", &["-L"]), "kernel": sh("uname", &["-sr"]), "loadavg_start": loadavg_start, "loadavg_end": loadavg()},
        "build": if cfg!(debug_assertions) { "debug assertions on (dev/test profile)" } else { "release" },
        "config": {"requests": a.requests, "concurrency": a.concurrency, "size": a.size, "steps": a.steps, "server_args": a.server_args},
        "runs": runs,
    });
    if let Some(out) = &a.out {
        flux_trt::util::write_atomic(out, serde_json::to_string_pretty(&result)?.as_bytes()).with_context(|| out.display().to_string())?;
    }
    Ok(())
}

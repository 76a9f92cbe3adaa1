//! `flux-trt serve` end to end on ONNX Runtime (CPU): the tiny engine built by `build-engine
//! --pipeline` from the bundled fixtures, a real server on 127.0.0.1 with an ephemeral port, a
//! real HTTP client (hyper). Images are compared bit for bit with a direct `PipelineEngine`
//! generation of the same request (same session options).
#![cfg(all(feature = "serve", feature = "export", feature = "cli"))]

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use flux_trt::pipeline::engine::PipelineEngine;
use flux_trt::pipeline::generate::GenerateRequest;
use flux_trt::pipeline::latents::Resolution;
use flux_trt::runtime::ort::SessionOptions;
use flux_trt::serve::client::{request, HttpResponse};
use flux_trt::serve::{Limits, Policy, ServeConfig, Server};
use serde_json::{json, Value};

mod ort_support;
use ort_support::{build_tiny_pipeline_engine, fixtures, ort_library};

const PROMPT: &str = "a photo of a cat riding a horse, oil painting";

/// The engine (slots for the transformer LoRA and the CLIP LoRA), built once.
fn engine_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tiny");
        build_tiny_pipeline_engine(env!("CARGO_BIN_EXE_build-engine"), &out, &["loras/attn.peft.safetensors", "pipeline/loras/clip.peft.safetensors"], &[]);
        (dir, out)
    })
    .1
}

fn session() -> SessionOptions {
    SessionOptions { library: Some(ort_library()), threads: Some(1), ..Default::default() }
}

/// An adapter folder: `attn` (transformer), `clip` (text encoder); tests add `mlp.safetensors`
/// (modules without slots) and `fragile.safetensors` later.
fn adapter_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (src, name) in [("loras/attn.peft.safetensors", "attn"), ("pipeline/loras/clip.peft.safetensors", "clip")] {
        std::fs::copy(fixtures().join(src), d.path().join(format!("{name}.safetensors"))).unwrap();
    }
    d
}

fn config(adapters: &Path) -> ServeConfig {
    ServeConfig {
        session: session(),
        limits: Limits { max_side: 128, default_side: 64, max_steps: 5000, default_steps: 3, ..Limits::default() },
        ..ServeConfig::new(engine_dir().to_path_buf(), adapters.to_path_buf())
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), flux_trt::serve::ServeError>>,
}

async fn start(cfg: ServeConfig) -> Running {
    let server = Server::bind(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap_or_else(|e| panic!("{e}"));
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), done }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.done).await.expect("shutdown within 60 s").unwrap().unwrap();
    }
    async fn post(&self, path: &str, body: Value) -> HttpResponse {
        request(self.addr, "POST", path, Some(body.to_string().into_bytes())).await.unwrap()
    }
    async fn get(&self, path: &str) -> HttpResponse {
        request(self.addr, "GET", path, None).await.unwrap()
    }
    async fn metric(&self, name: &str) -> f64 {
        metric(self.addr, name).await
    }
}

/// The sum of a metric's series on the server at `addr`.
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let m = request(addr, "GET", "/metrics", None).await.unwrap();
    let text = String::from_utf8(m.body).unwrap();
    parse_metrics(&text).into_iter().filter(|(n, _)| n == name).map(|(_, v)| v).sum()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn body(loras: Value, seed: u64, steps: usize) -> Value {
    json!({ "prompt": PROMPT, "size": "64x64", "seed": seed, "steps": steps, "guidance": 3.5, "loras": loras })
}

/// Decoded pixels of the response's first image.
fn pixels(r: &HttpResponse) -> Vec<u8> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json().unwrap();
    let png = base64::engine::general_purpose::STANDARD.decode(v["data"][0]["b64_json"].as_str().unwrap()).unwrap();
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));
    img.into_raw()
}

/// The reference: the same request on a directly opened engine.
fn reference(engine: &PipelineEngine, adapters: &Path, loras: &[(&str, f32)], seed: u64, steps: usize) -> Vec<u8> {
    let loaded: Vec<_> = loras.iter().map(|(n, s)| (flux_trt::lora::load_with_name(&adapters.join(format!("{n}.safetensors")), n).unwrap(), *s)).collect();
    let pairs: Vec<_> = loaded.iter().map(|(a, s)| (a, *s)).collect();
    engine.swap(&pairs).unwrap();
    let req = GenerateRequest {
        prompt: PROMPT.into(),
        prompt_2: None,
        resolution: Resolution::new(64, 64).unwrap(),
        steps,
        guidance: 3.5,
        seed,
        latents: None,
        keep_step_latents: false,
    };
    engine.generate(&req, |_, _| std::ops::ControlFlow::Continue(())).unwrap().rgb8
}

/// `name{labels} value` lines of an OpenMetrics text; panics on a malformed line or a missing `# EOF`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF terminator");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed metrics line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name in {line:?}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push((name.to_string(), v));
    }
    out
}

#[test]
fn concurrent_clients_with_different_adapters_get_their_reference_images() {
    let adapters = adapter_dir();
    let mixes: Vec<(Value, Vec<(&str, f32)>)> = vec![
        (json!([]), vec![]),
        (json!([{"name": "attn", "strength": 1.0}]), vec![("attn", 1.0)]),
        (json!([{"name": "attn", "strength": 0.5}]), vec![("attn", 0.5)]),
        (json!([{"name": "clip"}]), vec![("clip", 1.0)]),
        (json!([{"name": "attn", "strength": 0.7}, {"name": "clip", "strength": 1.0}]), vec![("attn", 0.7), ("clip", 1.0)]),
    ];
    let engine = PipelineEngine::open(engine_dir(), &session()).unwrap();
    let refs: Vec<Vec<u8>> = mixes.iter().enumerate().map(|(i, (_, l))| reference(&engine, adapters.path(), l, 7 + i as u64, 3)).collect();
    for i in 1..refs.len() {
        assert_ne!(refs[0], refs[i], "adapter mix {i} must change the image (else the test proves nothing)");
    }
    rt().block_on(async {
        let s = start(ServeConfig { policy: Policy::AdapterAware, ..config(adapters.path()) }).await;
        let listed = s.get("/v1/adapters").await.json().unwrap();
        let mut names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["attn", "clip"]);
        // Three rounds of every mix, all in flight at once.
        let mut tasks = Vec::new();
        for round in 0..3 {
            for (i, (loras, _)) in mixes.iter().enumerate() {
                let b = body(loras.clone(), 7 + i as u64, 3);
                let addr = s.addr;
                tasks.push((
                    round,
                    i,
                    tokio::spawn(async move { request(addr, "POST", "/v1/images/generations", Some(b.to_string().into_bytes())).await.unwrap() }),
                ));
            }
        }
        let mut swapped = 0;
        for (round, i, t) in tasks {
            let r = t.await.unwrap();
            assert_eq!(pixels(&r), refs[i], "round {round}, mix {i}: the served image differs from the direct generation");
            swapped += usize::from(r.json().unwrap()["swapped"].as_bool().unwrap());
        }
        let swaps = s.metric("flux_trt_adapter_swaps_total").await;
        assert_eq!(swaps as usize, swapped, "swaps counted = responses that swapped");
        assert!(swapped < 15, "adapter-aware scheduling groups equal sets ({swapped} swaps for 15 requests)");
        assert_eq!(s.metric("flux_trt_requests_total").await, 15.0);
        let text = String::from_utf8(s.get("/metrics").await.body).unwrap();
        let m = parse_metrics(&text);
        for name in [
            "flux_trt_num_requests_waiting",
            "flux_trt_num_requests_running",
            "flux_trt_request_queue_time_seconds_count",
            "flux_trt_e2e_request_latency_seconds_bucket",
            "flux_trt_step_latency_seconds_count",
            "flux_trt_image_latency_seconds_sum",
            "flux_trt_adapter_swap_seconds_count",
            "flux_trt_staged_cache_hits_total",
            "flux_trt_staged_cache_misses_total",
            "flux_trt_staged_cache_bytes",
            "flux_trt_lora_requests_info",
        ] {
            assert!(m.iter().any(|(n, _)| n == name), "metric {name} missing:\n{text}");
        }
        let steps: f64 = m.iter().filter(|(n, _)| n == "flux_trt_step_latency_seconds_count").map(|(_, v)| v).sum();
        assert_eq!(steps, 45.0, "3 steps x 15 images");
        s.stop().await;
    });
}

fn err(r: &HttpResponse) -> (u16, String, String, String) {
    let v = r.json().unwrap_or_else(|e| panic!("status {}: not JSON ({e}): {}", r.status, String::from_utf8_lossy(&r.body)));
    let e = &v["error"];
    assert!(e["type"].is_string() && e["message"].is_string(), "not the OpenAI error shape: {v}");
    (r.status, e["param"].as_str().unwrap_or("").to_string(), e["code"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap().to_string())
}

#[test]
fn every_bad_input_is_a_4xx_naming_the_field_and_bad_adapter_files_fail_only_their_request() {
    let adapters = adapter_dir();
    let engine = PipelineEngine::open(engine_dir(), &session()).unwrap();
    let want_attn = reference(&engine, adapters.path(), &[("attn", 1.0)], 1, 2);
    let want_clip = reference(&engine, adapters.path(), &[("clip", 1.0)], 1, 2);
    assert_ne!(want_attn, want_clip);
    rt().block_on(async {
        let s = start(ServeConfig { max_body_bytes: 4096, ..config(adapters.path()) }).await;
        let gen = "/v1/images/generations";
        let raw = request(s.addr, "POST", gen, Some(b"{\"prompt\": ".to_vec())).await.unwrap();
        let (st, p, code, _) = err(&raw);
        assert_eq!((st, p.as_str(), code.as_str()), (400, "body", "invalid_json"));
        let cases = [
            (json!({"size": "64x64"}), 400, "prompt"),
            (json!({"prompt": "", "size": "64x64"}), 400, "prompt"),
            (json!({"prompt": PROMPT, "size": "72x64"}), 400, "size"),
            (json!({"prompt": PROMPT, "size": "256x256"}), 400, "size"),
            (json!({"prompt": PROMPT, "size": "big"}), 400, "size"),
            (json!({"prompt": PROMPT, "steps": 0}), 400, "steps"),
            (json!({"prompt": PROMPT, "steps": 5001}), 400, "steps"),
            (json!({"prompt": PROMPT, "n": 5}), 400, "n"),
            (json!({"prompt": PROMPT, "n": -1}), 400, "n"),
            (json!({"prompt": PROMPT, "guidance": "x"}), 400, "guidance"),
            (json!({"prompt": PROMPT, "response_format": "url"}), 400, "response_format"),
            (json!({"prompt": PROMPT, "loras": [{"name": "nope"}]}), 404, "loras[0].name"),
            (json!({"prompt": PROMPT, "loras": [{"name": "attn", "strength": 9}]}), 400, "loras[0].strength"),
            (json!({"prompt": PROMPT, "loras": "attn"}), 400, "loras"),
        ];
        for (b, status, param) in cases {
            let r = s.post(gen, b.clone()).await;
            let (st, p, _, msg) = err(&r);
            assert_eq!((st, p.as_str()), (status, param), "{b}: {msg}");
        }
        let big = json!({"prompt": "x".repeat(5000)});
        let (st, p, code, _) = err(&s.post(gen, big).await);
        assert_eq!((st, p.as_str(), code.as_str()), (413, "body", "body_too_large"));
        // Over-long prompt (below the byte limits): generated, and the cut text reported.
        let long = s.post(gen, json!({"prompt": vec!["cat"; 300].join(" "), "size": "64x64", "steps": 1, "seed": 1})).await;
        assert_eq!(long.status, 200);
        let t = long.json().unwrap()["truncated"].clone();
        assert!(t.as_array().is_some_and(|a| a.iter().any(|x| x["encoder"] == "clip" && x["removed"].as_str().is_some_and(|r| r.contains("cat")))), "{t}");

        // Adapter registry.
        let (st, p, _, _) = err(&s.post("/v1/adapters", json!({"name": "x", "file": "../attn.safetensors"})).await);
        assert_eq!((st, p.as_str()), (400, "file"));
        let (st, p, _, _) = err(&s.post("/v1/adapters", json!({"name": "x", "file": "/etc/passwd"})).await);
        assert_eq!((st, p.as_str()), (400, "file"));
        let (st, p, _, _) = err(&s.post("/v1/adapters", json!({"name": "x"})).await);
        assert_eq!((st, p.as_str()), (400, "file"));
        let (st, p, _, _) = err(&s.post("/v1/adapters", json!({"name": "x", "file": "missing.safetensors"})).await);
        assert_eq!((st, p.as_str()), (404, "file"));
        std::fs::copy(fixtures().join("loras/mlp.peft.safetensors"), adapters.path().join("mlp.safetensors")).unwrap();
        let (st, p, code, msg) = err(&s.post("/v1/adapters", json!({"name": "mlp", "file": "mlp.safetensors"})).await);
        assert_eq!((st, p.as_str(), code.as_str()), (422, "file", "adapter_incompatible"), "{msg}");
        assert!(msg.contains("module `"), "names the module: {msg}");
        let (st, p, _, _) = err(&s.post("/v1/adapters", json!({"name": "attn", "file": "attn.safetensors"})).await);
        assert_eq!((st, p.as_str()), (409, "name"));
        std::fs::copy(adapters.path().join("attn.safetensors"), adapters.path().join("fragile.safetensors")).unwrap();
        let r = s.post("/v1/adapters", json!({"name": "fragile", "file": "fragile.safetensors"})).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let (st, _, _, _) = err(&request(s.addr, "DELETE", "/v1/adapters/nope", None).await.unwrap());
        assert_eq!(st, 404);

        // Install attn, then break `fragile` on disk: its request fails alone, attn stays installed.
        assert_eq!(pixels(&s.post(gen, body(json!([{"name": "attn"}]), 1, 2)).await), want_attn);
        std::fs::write(adapters.path().join("fragile.safetensors"), b"not a safetensors file").unwrap();
        let (st, p, code, msg) = err(&s.post(gen, body(json!([{"name": "fragile"}]), 1, 2)).await);
        assert_eq!((st, p.as_str(), code.as_str()), (422, "loras[0].name", "adapter_invalid"), "{msg}");
        std::fs::remove_file(adapters.path().join("fragile.safetensors")).unwrap();
        let (st, p, _, msg) = err(&s.post(gen, body(json!([{"name": "fragile"}]), 1, 2)).await);
        assert_eq!((st, p.as_str()), (404, "loras[0].name"), "{msg}");
        let again = s.post(gen, body(json!([{"name": "attn"}]), 1, 2)).await;
        assert_eq!(pixels(&again), want_attn, "the previous adapter stays installed");
        assert_eq!(again.json().unwrap()["swapped"], false);
        // Delete: later requests naming it are 404.
        assert_eq!(request(s.addr, "DELETE", "/v1/adapters/fragile", None).await.unwrap().status, 200);
        let (st, p, _, _) = err(&s.post(gen, body(json!([{"name": "fragile"}]), 1, 2)).await);
        assert_eq!((st, p.as_str()), (404, "loras[0].name"));
        // A name deleted while installed and registered again for another file: the next
        // request installs the new file (nothing stale is reused).
        assert_eq!(s.post("/v1/adapters", json!({"name": "alias", "file": "attn.safetensors"})).await.status, 201);
        assert_eq!(pixels(&s.post(gen, body(json!([{"name": "alias"}]), 1, 2)).await), want_attn);
        assert_eq!(request(s.addr, "DELETE", "/v1/adapters/alias", None).await.unwrap().status, 200);
        assert_eq!(s.post("/v1/adapters", json!({"name": "alias", "file": "clip.safetensors"})).await.status, 201);
        let r = s.post(gen, body(json!([{"name": "alias"}]), 1, 2)).await;
        assert_eq!(pixels(&r), want_clip, "the re-registered name runs its new file");
        assert_eq!(r.json().unwrap()["swapped"], true);
        assert!(s.metric("flux_trt_requests_total").await >= 20.0);
        s.stop().await;
    });
}

/// Waits until `cond` holds on the metrics of the server at `addr` (30 s at most).
async fn until(addr: SocketAddr, name: &str, cond: impl Fn(f64) -> bool) {
    let t0 = Instant::now();
    while !cond(metric(addr, name).await) {
        assert!(t0.elapsed() < Duration::from_secs(30), "{name} never reached the expected value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn full_queue_is_429_with_retry_after_timeouts_are_504_and_disconnects_cancel() {
    let adapters = adapter_dir();
    rt().block_on(async {
        let s = start(ServeConfig { queue_capacity: 1, request_timeout: Duration::from_secs(20), ..config(adapters.path()) }).await;
        let gen = "/v1/images/generations";
        // A long request runs; one more fits the queue; the third is refused.
        let addr = s.addr;
        let long = tokio::spawn(async move { request(addr, "POST", gen, Some(body(json!([]), 1, 5000).to_string().into_bytes())).await });
        until(s.addr, "flux_trt_num_requests_running", |v| v == 1.0).await;
        let queued = tokio::spawn(async move { request(addr, "POST", gen, Some(body(json!([{"name": "attn"}]), 1, 1).to_string().into_bytes())).await });
        until(s.addr, "flux_trt_num_requests_waiting", |v| v == 1.0).await;
        let full = s.post(gen, body(json!([]), 1, 1)).await;
        let (st, _, code, _) = err(&full);
        assert_eq!((st, code.as_str()), (429, "queue_full"));
        assert!(full.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v >= 1), "Retry-After: {:?}", full.headers);
        // The client of the long request goes away: it stops between steps, the queued one runs.
        long.abort();
        until(s.addr, "flux_trt_requests_total", |v| v >= 1.0).await;
        let r = queued.await.unwrap().unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(s.get("/metrics").await.body).unwrap();
        assert!(text.contains("flux_trt_requests_total{status=\"499\"} 1"), "{text}");
        let steps = parse_metrics(&text).into_iter().filter(|(n, _)| n == "flux_trt_step_latency_seconds_count").map(|(_, v)| v).sum::<f64>();
        assert!(steps < 5000.0, "the cancelled generation stopped early ({steps} steps)");
        s.stop().await;

        let s = start(ServeConfig { request_timeout: Duration::from_millis(300), ..config(adapters.path()) }).await;
        let (st, _, code, msg) = err(&s.post(gen, body(json!([]), 1, 5000)).await);
        assert_eq!((st, code.as_str()), (504, "timeout"), "{msg}");
        s.stop().await;
    });
}

#[test]
fn graceful_shutdown_answers_every_request_in_flight() {
    let adapters = adapter_dir();
    rt().block_on(async {
        let s = start(ServeConfig { shutdown_delay: Duration::from_millis(500), ..config(adapters.path()) }).await;
        assert_eq!(s.get("/readyz").await.status, 200);
        assert_eq!(s.get("/healthz").await.status, 200);
        let addr = s.addr;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let loras = if i % 2 == 0 { json!([]) } else { json!([{"name": "clip"}]) };
                tokio::spawn(async move { request(addr, "POST", "/v1/images/generations", Some(body(loras, i, 20).to_string().into_bytes())).await })
            })
            .collect();
        until(s.addr, "flux_trt_num_requests_running", |v| v == 1.0).await;
        until(s.addr, "flux_trt_num_requests_waiting", |v| v == 3.0).await;
        let Running { addr, stop, done } = s;
        let _ = stop.unwrap().send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ready = request(addr, "GET", "/readyz", None).await.unwrap();
        assert_eq!(ready.status, 503, "readiness fails first");
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        tokio::time::timeout(Duration::from_secs(60), done).await.expect("server exits").unwrap().unwrap();
        assert!(request(addr, "GET", "/healthz", None).await.is_err(), "the listener is closed");
    });
}

/// The `flux-trt serve` binary itself: SIGTERM with one request generating and one queued makes
/// readiness fail, answers both, and exits 0.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let adapters = adapter_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flux-trt"))
        .arg("serve")
        .arg("--engine")
        .arg(engine_dir())
        .arg("--adapters")
        .arg(adapters.path())
        .arg("--ort-lib")
        .arg(ort_library())
        .args(["--listen", "127.0.0.1:0", "--threads", "1", "--max-size", "64", "--default-size", "64", "--shutdown-delay-s", "0.3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start flux-trt serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected output {line:?}")).parse().unwrap();
    rt().block_on(async {
        let tasks: Vec<_> = [json!([]), json!([{"name": "attn"}])]
            .into_iter()
            .map(|loras| tokio::spawn(async move { request(addr, "POST", "/v1/images/generations", Some(body(loras, 3, 40).to_string().into_bytes())).await }))
            .collect();
        until(addr, "flux_trt_num_requests_running", |v| v == 1.0).await;
        until(addr, "flux_trt_num_requests_waiting", |v| v == 1.0).await;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(request(addr, "GET", "/readyz", None).await.unwrap().status, 503, "readiness fails first");
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}

//! Text to image end to end on ONNX Runtime (CPU) against diffusers 0.42.1 `FluxPipeline`
//! (goldens: tests/fixtures/pipeline, tools/reference/make_pipeline_fixtures.py): an engine
//! folder built by `build-engine --pipeline` from the tiny pipeline, then `PipelineEngine` and
//! `flux-trt generate` from the prompt — tokenizers, CLIP, T5, torch-compatible seeded noise,
//! scheduler, transformer, VAE — compared after every step and on the final image, without LoRA,
//! with a transformer LoRA and with a CLIP LoRA (PEFT and kohya files).
//!
//! Bounds (fp32): packed latents after every step within 1e-4 · max|golden| (observed ~1e-6:
//! the noise matches torch to ~3e-7 and GEMM summation order differs), final image within 1e-4
//! absolute, 8-bit pixels within 1 level.
#![cfg(all(feature = "export", feature = "ort", feature = "pipeline", feature = "cli"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flux_trt::pipeline::engine::{EngineFolderError, PipelineEngine};
use flux_trt::pipeline::generate::GenerateRequest;
use flux_trt::pipeline::latents::Resolution;
use flux_trt::runtime::ort::SessionOptions;

mod ort_support;
use ort_support::{build_tiny_pipeline_engine, fixtures, ort_library};

fn pipe_fx() -> PathBuf {
    fixtures().join("pipeline")
}

const PROMPT: &str = "a photo of a cat riding a horse, oil painting";
const TRANSFORMER_LORA: &str = "loras/attn.peft.safetensors";
const CLIP_LORA_PEFT: &str = "pipeline/loras/clip.peft.safetensors";
const CLIP_LORA_KOHYA: &str = "pipeline/loras/clip.kohya.safetensors";

/// The engine folder, built once with slots for the transformer LoRA and the CLIP LoRA.
fn engine_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("tiny");
        build_tiny_pipeline_engine(env!("CARGO_BIN_EXE_build-engine"), &out, &[TRANSFORMER_LORA, CLIP_LORA_PEFT], &[]);
        (dir, out)
    })
    .1
}

fn open_engine(dir: &Path) -> PipelineEngine {
    let opts = SessionOptions { library: Some(ort_library()), threads: Some(2), ..Default::default() };
    PipelineEngine::open(dir, &opts).unwrap_or_else(|e| panic!("{e}"))
}

type Tensors = std::collections::HashMap<String, Vec<f32>>;

fn goldens(file: &str) -> Tensors {
    let p = pipe_fx().join(file);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    st.tensors()
        .into_iter()
        .filter_map(|(name, v)| {
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                safetensors::Dtype::U8 => v.data().iter().map(|&b| f32::from(b)).collect(),
                _ => return None,
            };
            Some((name, data))
        })
        .collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn request(latents: Option<Vec<f32>>) -> GenerateRequest {
    GenerateRequest {
        prompt: PROMPT.into(),
        prompt_2: None,
        resolution: Resolution::new(64, 64).unwrap(),
        steps: 3,
        guidance: 3.5,
        seed: 42,
        latents,
        keep_step_latents: true,
    }
}

/// Every step's latents, the image and its pixels vs one golden generation.
fn check_against(engine: &PipelineEngine, golden_file: &str, latents: Option<Vec<f32>>) -> Vec<u8> {
    let g = goldens(golden_file);
    let out = engine.generate(&request(latents), |_, _| std::ops::ControlFlow::Continue(())).unwrap_or_else(|e| panic!("{golden_file}: {e}"));
    assert_eq!(out.step_latents.len(), 3);
    for (i, x) in out.step_latents.iter().enumerate() {
        let want = &g[&format!("latents.{i}")];
        let err = max_abs_diff(x, want);
        eprintln!("{golden_file}: step {i} max|Δ| {err:.3e} (max|golden| {:.3})", max_abs(want));
        assert!(err <= 1e-4 * max_abs(want), "{golden_file}: latents after step {i}: max|Δ| {err}");
    }
    let err = max_abs_diff(&out.image, &g["image"]);
    eprintln!("{golden_file}: image max|Δ| {err:.3e}");
    assert!(err <= 1e-4, "{golden_file}: image max|Δ| {err}");
    let px: Vec<f32> = out.rgb8.iter().map(|&b| f32::from(b)).collect();
    assert!(max_abs_diff(&px, &g["image_rgb8"]) <= 1.0, "{golden_file}: pixels differ by more than one level");
    out.rgb8
}

#[test]
fn text_to_image_matches_flux_pipeline_with_and_without_adapters() {
    let engine = open_engine(engine_dir());
    let lora = flux_trt::lora::load(&fixtures().join(TRANSFORMER_LORA)).unwrap();
    let clip_peft = flux_trt::lora::load(&fixtures().join(CLIP_LORA_PEFT)).unwrap();
    let clip_kohya = flux_trt::lora::load(&fixtures().join(CLIP_LORA_KOHYA)).unwrap();

    let base = check_against(&engine, "generation.safetensors", None);
    engine.swap(&[(&lora, 1.0)]).unwrap();
    check_against(&engine, "generation_lora.safetensors", None);
    let s = engine.swap(&[(&clip_peft, 1.0)]).unwrap();
    assert_eq!(s.adapters.len(), 1);
    check_against(&engine, "generation_clip_lora.safetensors", None);
    engine.swap(&[(&clip_kohya, 1.0)]).unwrap();
    check_against(&engine, "generation_clip_lora.safetensors", None);

    // Back to the base model: bit-identical pixels to the first run (untargeted slots zeroed).
    engine.swap(&[]).unwrap();
    let again = engine.generate(&request(None), |_, _| std::ops::ControlFlow::Continue(())).unwrap();
    assert_eq!(again.rgb8, base, "base → adapters → base is not exact");
}

/// `--latents FILE` (FluxPipeline's own packed noise) gives the same run as `--seed 42`.
#[test]
fn given_latents_match_seeded_noise() {
    let engine = open_engine(engine_dir());
    let res = Resolution::new(64, 64).unwrap();
    let init = flux_trt::pipeline::latents::load_latents(&pipe_fx().join("noise.safetensors"), res).unwrap();
    check_against(&engine, "generation.safetensors", Some(init));
}

#[test]
fn failed_swap_keeps_the_previous_adapters() {
    let engine = open_engine(engine_dir());
    let clip = flux_trt::lora::load(&fixtures().join(CLIP_LORA_PEFT)).unwrap();
    engine.swap(&[(&clip, 1.0)]).unwrap();
    let before = engine.generate(&request(None), |_, _| std::ops::ControlFlow::Continue(())).unwrap();
    // mlp.peft targets transformer modules that have no slot in this engine.
    let outside = flux_trt::lora::load(&fixtures().join("loras/mlp.peft.safetensors")).unwrap();
    let err = engine.swap(&[(&clip, 1.0), (&outside, 1.0)]).expect_err("outside the slots");
    assert!(err.to_string().contains("no slot"), "{err}");
    let err = engine.swap(&[(&clip, f32::NAN)]).expect_err("NaN strength");
    assert!(err.to_string().contains("strength"), "{err}");
    assert_eq!(engine.transformer().adapters()[0].name, clip.name);
    assert_eq!(engine.text_encoder().adapters()[0].name, clip.name);
    let after = engine.generate(&request(None), |_, _| std::ops::ControlFlow::Continue(())).unwrap();
    assert_eq!(after.rgb8, before.rgb8);
}

/// A generation holds one pair of leases (CLIP + transformer, taken from the same swap) for all
/// of its steps: swaps during a generation (from its own step callback, and from a thread swapping
/// in a loop) never reach it — every image equals exactly one adapter set's single-thread
/// reference, bit for bit — and the next generation sees the newly installed set.
#[test]
fn swaps_racing_generations_never_mix_adapter_sets() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let engine = open_engine(engine_dir());
    let lora = flux_trt::lora::load(&fixtures().join(TRANSFORMER_LORA)).unwrap();
    let clip = flux_trt::lora::load(&fixtures().join(CLIP_LORA_PEFT)).unwrap();
    // Sets that change the transformer, CLIP, or both.
    let sets: Vec<Vec<(&flux_trt::Adapter, f32)>> = vec![vec![], vec![(&lora, 1.0)], vec![(&clip, 1.0)], vec![(&lora, 1.0), (&clip, 1.0)]];
    let label = |set: &[(&flux_trt::Adapter, f32)]| set.iter().map(|(a, _)| a.name.clone()).collect::<Vec<_>>();
    let mut req = request(None);
    req.keep_step_latents = false;
    req.steps = 4;

    // Single-thread references, pairwise different.
    let mut refs: Vec<(Vec<String>, Vec<f32>)> = Vec::new();
    for set in &sets {
        engine.swap(set).unwrap();
        refs.push((label(set), engine.generate(&req, |_, _| std::ops::ControlFlow::Continue(())).unwrap().image));
    }
    for i in 0..refs.len() {
        for j in 0..i {
            assert_ne!(refs[i].1, refs[j].1, "sets {:?} and {:?} give the same image", refs[i].0, refs[j].0);
        }
    }
    let matching = |image: &[f32]| refs.iter().filter(|(_, r)| r.as_slice() == image).map(|(n, _)| n.clone()).collect::<Vec<_>>();

    // Deterministic: a swap from inside the loop (after step 0) changes neither this image nor
    // any later step of it; the next generation runs with the new set.
    for (from, to) in [(0usize, 3usize), (3, 1), (1, 2), (2, 0)] {
        engine.swap(&sets[from]).unwrap();
        let mut swapped = false;
        let g = engine
            .generate(&req, |i, _| {
                if i == 0 {
                    engine.swap(&sets[to]).unwrap();
                    swapped = true;
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert!(swapped);
        assert_eq!(matching(&g.image), vec![refs[from].0.clone()], "swap {from} -> {to} mid-generation reached it");
        let next = engine.generate(&req, |_, _| std::ops::ControlFlow::Continue(())).unwrap();
        assert_eq!(matching(&next.image), vec![refs[to].0.clone()], "the next generation does not see set {to}");
    }

    // Concurrent: a thread swaps through the sets in a loop while generations run.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let swapper = scope.spawn(|| {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                engine.swap(&sets[n % sets.len()]).unwrap();
                n += 1;
            }
            n
        });
        let mut seen = Vec::new();
        for _ in 0..6 {
            let leases = engine.leases();
            let names = |l: &[flux_trt::runtime::AdapterLabel]| l.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
            // Both halves of one swap: the transformer set names every adapter, CLIP the same list.
            assert_eq!(names(leases.clip.adapters()), names(leases.transformer.adapters()), "CLIP and transformer leases from different swaps");
            let g = engine
                .generate_with(&req, &leases, |_, _| {
                    std::thread::yield_now();
                    std::ops::ControlFlow::Continue(())
                })
                .unwrap();
            let m = matching(&g.image);
            assert_eq!(m, vec![names(leases.transformer.adapters())], "image is not its leased set's reference");
            seen.push(m[0].clone());
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().expect("swapper");
        println!("{swaps} swaps during 6 generations; sets generated: {seen:?}");
        assert!(swaps > 6, "the swapper did not run during the generations");
    });

    // After the race: the next generation sees the last installed set.
    engine.swap(&sets[1]).unwrap();
    assert_eq!(matching(&engine.generate(&req, |_, _| std::ops::ControlFlow::Continue(())).unwrap().image), vec![refs[1].0.clone()]);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let engine = open_engine(engine_dir());
    // Not a multiple of 16.
    let err = Resolution::new(72, 64).expect_err("72 px");
    assert!(err.to_string().contains("72x64"), "{err}");
    // Over-long prompt: truncated with the removed text reported, as diffusers warns.
    let long = format!("{PROMPT} {}", "and a very long tail of words ".repeat(30));
    let mut req = request(None);
    req.prompt = long;
    let out = engine.generate(&req, |_, _| std::ops::ControlFlow::Continue(())).unwrap();
    assert!(out.truncated.iter().any(|(enc, removed)| *enc == "clip" && !removed.is_empty()), "{:?}", out.truncated);

    // A folder missing parts names all of them.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("partial");
    copy_dir(engine_dir(), &copy);
    std::fs::remove_dir_all(copy.join("vae_decoder")).unwrap();
    std::fs::remove_dir_all(copy.join("tokenizer_2")).unwrap();
    let opts = SessionOptions { library: Some(ort_library()), ..Default::default() };
    match PipelineEngine::open(&copy, &opts) {
        Err(EngineFolderError::MissingParts { missing, .. }) => {
            assert_eq!(missing, vec!["vae_decoder/manifest.json".to_string(), "tokenizer_2/".to_string()]);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened an engine without a VAE"),
    }

    // A CLIP tokenizer whose length is not the text encoder's.
    let other = dir.path().join("mismatch");
    copy_dir(engine_dir(), &other);
    let cfg_path = other.join("tokenizer/tokenizer_config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["model_max_length"] = serde_json::json!(64);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    // The edit changes a recorded file: opening refuses it, naming the file...
    match PipelineEngine::open(&other, &opts) {
        Err(e) => assert!(e.to_string().contains("tokenizer/tokenizer_config.json: ") && e.to_string().contains("bytes"), "{e}"),
        Ok(_) => panic!("opened an engine with a changed tokenizer file"),
    }
    // ...and once re-recorded, the tokenizer check itself speaks.
    let mut m = flux_trt::Manifest::load(&other).unwrap();
    let rec = flux_trt::manifest::FileRecord::hash(&other, "tokenizer/tokenizer_config.json", flux_trt::manifest::FileRole::Copied).unwrap();
    flux_trt::manifest::integrity::upsert(&mut m.files, rec);
    m.save(&other).unwrap();
    match PipelineEngine::open(&other, &opts) {
        Err(e @ EngineFolderError::TokenizerMismatch { .. }) => assert!(e.to_string().contains("model_max_length 64"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened an engine with a mismatched tokenizer"),
    }
}

/// `build-engine --pipeline` refuses a VAE whose latents FLUX.1 cannot produce (4 channels, or a
/// 4× instead of 8× factor) with the config check's message, and writes nothing.
#[test]
fn build_engine_refuses_a_vae_flux_cannot_use() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, key, value, expected) in [
        ("channels", "latent_channels", serde_json::json!(4), "latent_channels is 4, FLUX.1 needs 16"),
        ("factor4", "block_out_channels", serde_json::json!([8, 16, 16]), "VAE factor of 2^2, FLUX.1 needs 8"),
    ] {
        let pipe = tmp.path().join(name);
        copy_dir(&pipe_fx().join("flux-tiny"), &pipe);
        let cfg_path = pipe.join("vae/config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg[key] = value;
        if name == "factor4" {
            cfg["up_block_types"] = serde_json::json!(["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]);
            cfg["down_block_types"] = serde_json::json!(["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"]);
        }
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let out = tmp.path().join(format!("{name}-engine"));
        let st = Command::new(env!("CARGO_BIN_EXE_build-engine"))
            .arg("--pipeline")
            .arg(&pipe)
            .arg("--model")
            .arg(fixtures().join("models/dev-diffusers"))
            .arg("--out")
            .arg(&out)
            .env("ORT_DYLIB_PATH", ort_library())
            .output()
            .expect("run build-engine");
        let stderr = String::from_utf8_lossy(&st.stderr);
        assert!(!st.status.success(), "{name}: build-engine accepted the VAE");
        assert!(stderr.contains(expected) && stderr.contains(&cfg_path.display().to_string()), "{name}: {stderr}");
        assert_eq!(stderr.matches(expected).count(), 1, "{name}: the reason is repeated: {stderr}");
        assert!(!out.exists(), "{name}: build-engine wrote {}", out.display());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `flux-trt generate --prompts FILE.jsonl`: one engine, an adapter per line (swapped only when
/// it changes, staged in the background during the image before), PNGs equal to the diffusers
/// pixels, a timing summary.
#[test]
fn cli_batch_generates_pngs_and_timings() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("prompts.jsonl");
    let lora = fixtures().join(TRANSFORMER_LORA);
    let clip = fixtures().join(CLIP_LORA_PEFT);
    let lines = [
        serde_json::json!({"prompt": PROMPT, "out": "base.png", "lora": []}),
        serde_json::json!({"prompt": PROMPT, "out": "lora.png", "lora": lora.display().to_string()}),
        serde_json::json!({"prompt": PROMPT, "out": "lora2.png", "lora": [format!("{}:1.0", lora.display())]}),
        serde_json::json!({"prompt": PROMPT, "out": "clip.png", "lora": clip.display().to_string()}),
    ];
    std::fs::write(&jsonl, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let out_dir = dir.path().join("out");
    let timings = dir.path().join("timings.json");
    let st = Command::new(env!("CARGO_BIN_EXE_flux-trt"))
        .args(["generate", "--engine"])
        .arg(engine_dir())
        .arg("--prompts")
        .arg(&jsonl)
        .args(["--steps", "3", "--width", "64", "--height", "64", "--seed", "42", "--guidance", "3.5", "--out-dir"])
        .arg(&out_dir)
        .arg("--timings-json")
        .arg(&timings)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{stderr}");
    assert!(stderr.contains("summary (4 images)"), "{stderr}");
    for (png, golden) in [("base", "generation"), ("lora", "generation_lora"), ("lora2", "generation_lora"), ("clip", "generation_clip_lora")] {
        let img = image_rgb8(&out_dir.join(format!("{png}.png")));
        let want = &goldens(&format!("{golden}.safetensors"))["image_rgb8"];
        let px: Vec<f32> = img.iter().map(|&b| f32::from(b)).collect();
        assert!(max_abs_diff(&px, want) <= 1.0, "{png}.png vs {golden}");
    }
    let t: serde_json::Value = serde_json::from_slice(&std::fs::read(&timings).unwrap()).unwrap();
    let rows = t["images"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let swaps: Vec<bool> = rows.iter().map(|r| r["swap_ms"].as_f64().unwrap() > 0.0).collect();
    // base (initial swap to the empty set), lora (changed), lora again (unchanged), clip (changed).
    assert_eq!(swaps, vec![true, true, false, true]);
    // a changed set is staged while the image before it generates: only its install is on the path
    let pre: Vec<bool> = rows.iter().map(|r| r["pre_staged"].as_bool().unwrap()).collect();
    assert_eq!(pre, vec![false, true, false, true]);
    let (open, first) = (t["open_ms"].as_f64().unwrap(), t["first_image_ms"].as_f64().unwrap());
    assert!(open > 0.0 && first > open, "open {open} ms, first image {first} ms");
    assert!(rows.iter().all(|r| r["steps"] == 3));
}

/// A PNG's RGB8 pixels, read with the `image` crate's decoder.
fn image_rgb8(path: &Path) -> Vec<u8> {
    use image::ImageDecoder as _;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let d = image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(d.color_type(), image::ColorType::Rgb8);
    let mut buf = vec![0u8; usize::try_from(d.total_bytes()).unwrap()];
    d.read_image(&mut buf).unwrap();
    buf
}

// ---- error paths of the CLI: each a typed error naming the file, each message printed once ----

/// `flux-trt generate` on `engine` (1 step, 64×64) with `extra` arguments; (success, stderr).
fn generate(engine: &Path, extra: &[&str], out: &Path) -> (bool, String) {
    let st = Command::new(env!("CARGO_BIN_EXE_flux-trt"))
        .args(["generate", "--engine"])
        .arg(engine)
        .args(["--prompt", PROMPT, "--steps", "1", "--threads", "2", "--out"])
        .arg(out)
        .args(if extra.contains(&"--width") { &[][..] } else { &["--width", "64", "--height", "64"][..] })
        .args(extra)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .unwrap();
    (st.status.success(), String::from_utf8_lossy(&st.stderr).into_owned())
}

/// The `error: ...` line of a failed command: present once, `expected` in it once, and no part
/// of its cause chain (the `: `-separated pieces) printed twice.
fn error_line<'a>(stderr: &'a str, expected: &str) -> &'a str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{stderr}");
    let line = lines[0];
    assert_eq!(line.matches(expected).count(), 1, "`{expected}` once in: {line}");
    let parts: Vec<&str> = line.trim_start_matches("error: ").split(": ").map(str::trim).filter(|p| p.len() >= 6).collect();
    for p in &parts {
        assert_eq!(parts.iter().filter(|q| q == &p).count(), 1, "`{p}` printed twice in: {line}");
    }
    line
}

#[test]
fn cli_error_paths_name_the_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ok_out = tmp.path().join("ok.png");

    // Unwritable output: the write and the user's path, once; no temporary file name.
    let (ok, err) = generate(engine_dir(), &[], Path::new("/nonexistent-flux-trt/x.png"));
    assert!(!ok);
    let line = error_line(&err, "cannot write /nonexistent-flux-trt/x.png: No such file or directory");
    assert!(!line.contains(".tmp") && line.matches("x.png").count() == 1, "{line}");

    // Oversize request: the limit and the requested size, before the engine is loaded.
    let (ok, err) = generate(engine_dir(), &["--width", "65536", "--height", "65536"], &ok_out);
    assert!(!ok);
    let line = error_line(&err, "65536x65536 (4294967296 pixels)");
    assert!(line.contains("maximum side of 4096") && line.contains("estimated transformer activation memory ≈ ") && !line.contains("NaN"), "{line}");
    assert!(!err.contains("loaded on"), "the engine was loaded for an oversize request:\n{err}");

    // A missing engine folder: named once, with what is missing.
    let (ok, err) = generate(&tmp.path().join("no-engine"), &[], &ok_out);
    assert!(!ok);
    error_line(&err, "no-engine: not a complete text-to-image engine");

    // A flipped bit in the T5 weights: caught before any output under the default policy.
    let damaged = tmp.path().join("damaged");
    copy_dir(engine_dir(), &damaged);
    let data = damaged.join("text_encoder_2/model.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let third = bytes.len() / 3;
    bytes[third] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let (ok, err) = generate(&damaged, &[], &ok_out);
    assert!(!ok && !ok_out.exists());
    error_line(&err, &format!("{}: BLAKE3 ", data.display()));

    // `verify` names it (text and JSON), and only it.
    let verify = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_flux-trt")).arg("verify").arg(&damaged).args(args).output().unwrap();
    let v = verify(&[]);
    let stdout = String::from_utf8_lossy(&v.stdout);
    assert!(!v.status.success());
    let mismatches: Vec<&str> = stdout.lines().filter(|l| l.starts_with("MISMATCH")).collect();
    assert_eq!(mismatches.len(), 1, "{stdout}");
    assert!(mismatches[0].contains("text_encoder_2/model.onnx.data"), "{stdout}");
    error_line(&String::from_utf8_lossy(&v.stderr), "1 file(s) do not match");
    let j: serde_json::Value = serde_json::from_slice(&verify(&["--json"]).stdout).unwrap();
    assert_eq!(j["ok"], false);
    let bad: Vec<(String, String)> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["state"] != "ok")
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(bad, [(data.display().to_string(), "hash".to_string())]);
    // Every file the exporter wrote is recorded: 3 manifests with graph + weights, plus the
    // copied tokenizer and scheduler files at the top level.
    assert_eq!(j["manifests"].as_array().unwrap().len(), 4);
    assert!(j["files"].as_array().unwrap().iter().any(|f| f["role"] == "copied" && f["path"].as_str().unwrap().ends_with("scheduler/scheduler_config.json")));

    // Truncated and missing files: sizes are checked under every policy, `never` included.
    std::fs::write(&data, &bytes[..bytes.len() - 1]).unwrap();
    let (ok, err) = generate(&damaged, &["--verify", "never"], &ok_out);
    assert!(!ok);
    error_line(&err, &format!("{}: {} bytes", data.display(), bytes.len() - 1));
    let vae = damaged.join("vae_decoder/model.onnx");
    std::fs::write(&data, &bytes).unwrap();
    std::fs::copy(engine_dir().join("text_encoder_2/model.onnx.data"), &data).unwrap();
    std::fs::remove_file(&vae).unwrap();
    let (ok, err) = generate(&damaged, &["--verify", "never"], &ok_out);
    assert!(!ok && !ok_out.exists());
    error_line(&err, &format!("{}: missing", vae.display()));
    std::fs::copy(engine_dir().join("vae_decoder/model.onnx"), &vae).unwrap();

    // Repaired: verify passes, and `generate` under `first` writes the image.
    assert!(verify(&[]).status.success());
    let (ok, err) = generate(&damaged, &["--verify", "first"], &ok_out);
    assert!(ok && ok_out.exists(), "{err}");
}

//! FP8 pipeline engines on ONNX Runtime CPU: `build-engine --pipeline … --precision fp8
//! --fp8-float fp32` exports the text encoders in fp32 too (they follow the transformer's float
//! dtype), so `flux-trt generate` runs the whole image on the CPU; the image is compared with
//! diffusers' fp32 `FluxPipeline` goldens (tests/fixtures/pipeline) by PSNR, base and with a
//! transformer LoRA (its slots stay fp32). Bf16 components on the CPU are refused by name.
//!
//! Measured (tiny pipeline, 64×64, 3 steps, calibration: 8 stand-in samples, per-channel weight
//! scales; 2026-11-29): PSNR vs the fp32 goldens 51.1 dB base, 47.2 dB with the LoRA (the LoRA's
//! own effect is 27.3 dB); asserted ≥ 35 dB and ≥ 10 dB better than the LoRA's effect.
#![cfg(all(feature = "export", feature = "ort", feature = "pipeline", feature = "cli"))]

use std::path::Path;
use std::process::Command;

use flux_trt::manifest::{ComponentManifest, Manifest, Precision};
use flux_trt::pipeline::engine::{EngineFolderError, PipelineEngine};
use flux_trt::pipeline::generate::GenerateRequest;
use flux_trt::pipeline::latents::Resolution;
use flux_trt::runtime::ort::SessionOptions;
use flux_trt::runtime::RuntimeError;
use flux_trt::tensor::DType;

mod ort_support;
use ort_support::{build_tiny_pipeline_engine, fixtures, ort_library};

const PROMPT: &str = "a photo of a cat riding a horse, oil painting";
const TRANSFORMER_LORA: &str = "loras/attn.peft.safetensors";

fn build_engine(out: &Path, extra: &[&str]) {
    build_tiny_pipeline_engine(env!("CARGO_BIN_EXE_build-engine"), out, &[TRANSFORMER_LORA], &[&["--no-hash"], extra].concat());
}

/// `build-engine` on the tiny pipeline with the transformer LoRA and `extra`, for calls that may
/// fail (its output, whatever the status).
fn build_engine_output(extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_build-engine"))
        .arg("--pipeline")
        .arg(fixtures().join("pipeline/flux-tiny"))
        .arg("--model")
        .arg(fixtures().join("models/dev-diffusers"))
        .arg("--lora")
        .arg(fixtures().join(TRANSFORMER_LORA))
        .args(extra)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .expect("run build-engine")
}

/// Golden `image_rgb8` of one generation file.
fn golden_rgb8(file: &str) -> Vec<u8> {
    let p = fixtures().join("pipeline").join(file);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    st.tensor("image_rgb8").expect("image_rgb8").data().to_vec()
}

/// PSNR in dB of 8-bit pixels.
fn psnr(got: &[u8], want: &[u8]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mse = got.iter().zip(want).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>() / got.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

fn request() -> GenerateRequest {
    GenerateRequest {
        prompt: PROMPT.into(),
        prompt_2: None,
        resolution: Resolution::new(64, 64).unwrap(),
        steps: 3,
        guidance: 3.5,
        seed: 42,
        latents: None,
        keep_step_latents: false,
    }
}

fn cpu() -> SessionOptions {
    SessionOptions { library: Some(ort_library()), threads: Some(2), ..Default::default() }
}

/// A PNG's RGB8 pixels.
fn png_rgb8(path: &Path) -> Vec<u8> {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    img.to_rgb8().into_raw()
}

#[test]
fn fp8_pipeline_generates_on_the_cpu_close_to_the_fp32_goldens() {
    let dir = tempfile::tempdir().unwrap();
    let engine_dir = dir.path().join("tiny-fp8");
    build_engine(&engine_dir, &["--precision", "fp8", "--fp8-float", "fp32", "--calib", "8", "--calib-res", "64", "--calib-txt-len", "16"]);

    // Every component is fp32 (no bf16 anywhere ONNX Runtime CPU would have to run).
    let m = Manifest::load(&engine_dir).unwrap();
    assert_eq!(m.precision, Precision::Fp8);
    assert_eq!(m.fp8.as_ref().unwrap().float_dtype, DType::F32);
    for c in ["text_encoder", "text_encoder_2", "vae_decoder"] {
        assert_eq!(ComponentManifest::load(&engine_dir.join(c)).unwrap().precision, Precision::Fp32, "{c}");
    }

    // `flux-trt generate` end to end on the CPU.
    let png = dir.path().join("base.png");
    let st = Command::new(env!("CARGO_BIN_EXE_flux-trt"))
        .args(["generate", "--engine"])
        .arg(&engine_dir)
        .args(["--prompt", PROMPT, "--steps", "3", "--width", "64", "--height", "64", "--seed", "42", "--guidance", "3.5", "--out"])
        .arg(&png)
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .unwrap();
    assert!(st.status.success(), "flux-trt generate: {}", String::from_utf8_lossy(&st.stderr));
    let cli = png_rgb8(&png);

    // The same through the library, base and with the transformer LoRA, against the goldens.
    let engine = PipelineEngine::open(&engine_dir, &cpu()).unwrap_or_else(|e| panic!("{e}"));
    let base = engine.generate(&request(), |_, _| std::ops::ControlFlow::Continue(())).unwrap();
    assert_eq!(base.rgb8, cli, "CLI and library give the same pixels");
    let lora = flux_trt::lora::load(&fixtures().join(TRANSFORMER_LORA)).unwrap();
    engine.swap(&[(&lora, 1.0)]).unwrap();
    let with_lora = engine.generate(&request(), |_, _| std::ops::ControlFlow::Continue(())).unwrap();

    let golden_base = golden_rgb8("generation.safetensors");
    let golden_lora = golden_rgb8("generation_lora.safetensors");
    let (p_base, p_lora) = (psnr(&base.rgb8, &golden_base), psnr(&with_lora.rgb8, &golden_lora));
    // The FP8 error has to be well below the LoRA's own effect for the comparison to mean anything.
    let p_effect = psnr(&golden_lora, &golden_base);
    eprintln!("FP8 (fp32 float) vs fp32 goldens: PSNR base {p_base:.2} dB, LoRA {p_lora:.2} dB; LoRA's own effect {p_effect:.2} dB");
    assert!(p_base >= 35.0, "base image PSNR {p_base:.2} dB vs the fp32 golden");
    assert!(p_lora >= 35.0, "LoRA image PSNR {p_lora:.2} dB vs the fp32 golden");
    assert!(p_lora > p_effect + 10.0, "FP8 error ({p_lora:.2} dB) is not well below the LoRA's effect ({p_effect:.2} dB)");
    assert!(psnr(&with_lora.rgb8, &golden_base) < p_lora, "the LoRA image is closer to the base golden than to its own");
}

/// The precision of the text encoders follows the FP8 float dtype (TensorRT form: bf16), can be
/// set apart, and a bf16 component is refused on the CPU with a message naming it and the fix.
#[test]
fn text_encoder_precision_follows_the_backend_and_bf16_is_refused_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bf16-te");
    build_engine(&out, &["--text-encoder-precision", "bf16"]);
    assert_eq!(Manifest::load(&out).unwrap().precision, Precision::Fp32);
    for c in ["text_encoder", "text_encoder_2"] {
        assert_eq!(ComponentManifest::load(&out.join(c)).unwrap().precision, Precision::Bf16, "{c}");
    }
    let e = PipelineEngine::open(&out, &cpu()).err().expect("bf16 text encoder opened on the CPU");
    match &e {
        EngineFolderError::Runtime(RuntimeError::Bf16ComponentOnCpu { component }) => {
            assert!(component.ends_with("text_encoder_2") || component.ends_with("text_encoder"), "{e}")
        }
        other => panic!("expected Bf16ComponentOnCpu, got {other}"),
    }
    assert!(e.to_string().contains("--text-encoder-precision fp32"), "{e}");

    // FP8 in the TensorRT form (bf16 float dtype): bf16 text encoders, and the CPU refuses the engine.
    let trt = dir.path().join("fp8-bf16");
    let calib = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/device/fp8-tiny-calib.json");
    build_engine(&trt, &["--precision", "fp8", "--calib-in", calib.to_str().unwrap()]);
    for c in ["text_encoder", "text_encoder_2"] {
        assert_eq!(ComponentManifest::load(&trt.join(c)).unwrap().precision, Precision::Bf16, "{c}");
    }
    assert_eq!(ComponentManifest::load(&trt.join("vae_decoder")).unwrap().precision, Precision::Fp32);
    let e = PipelineEngine::open(&trt, &cpu()).err().expect("bf16 FP8 engine opened on the CPU");
    assert!(matches!(&e, EngineFolderError::Runtime(RuntimeError::Fp8Bf16OnCpu { .. })), "{e}");

    // fp8 is not a text-encoder precision.
    let st = build_engine_output(&["--text-encoder-precision", "fp8", "--out", dir.path().join("never").to_str().unwrap()]);
    assert!(!st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("transformer only"), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(!dir.path().join("never").exists(), "nothing written");
}

/// Golden f32 tensor `name` of `tests/fixtures/pipeline/generation.safetensors` with its shape.
fn golden_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    let p = fixtures().join("pipeline/generation.safetensors");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data()))
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let d: f64 = got.iter().zip(want).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
    let n: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

/// `--calib-prompts` calibrates on the pipeline's own CLIP and T5 embeddings of the prompts: the
/// encoders exported into the engine folder reproduce diffusers' `prompt_embeds` /
/// `pooled_prompt_embeds` (the pipeline goldens), and the activation scales equal those of
/// `--calib-data` holding diffusers' embeddings of the same prompt, not the stand-in's.
#[test]
fn calib_prompts_calibrate_on_the_pipelines_own_embeddings() {
    use flux_trt::onnx::fp8::Calibration;
    use flux_trt::pipeline::text::TextEncoders;
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(dir.path().join("prompts.txt"), format!("# calibration prompts\n\n  {PROMPT}  \n")).unwrap();
    let common = ["--precision", "fp8", "--fp8-float", "fp32", "--calib", "3", "--calib-res", "64"];
    build_engine(&dir.path().join("prompts"), &[&common[..], &["--calib-prompts", &path("prompts.txt"), "--calib-out", &path("prompts.json")]].concat());

    // the exported encoders give diffusers' conditioning of the prompt
    let (eshape, want_embeds) = golden_f32("prompt_embeds");
    let (_, want_pooled) = golden_f32("pooled_prompt_embeds");
    let text = TextEncoders::open(&dir.path().join("prompts"), &cpu()).unwrap_or_else(|e| panic!("{e}"));
    let e = text.embed_all(&[PROMPT.to_string()]).unwrap();
    assert_eq!((e.n, e.text_len), (1, eshape[1]));
    let (re, rp) = (rel_l2(&e.embeds, &want_embeds), rel_l2(&e.pooled, &want_pooled));
    assert!(re <= 1e-5 && rp <= 1e-5, "prompt embeddings vs diffusers: rel L2 {re:.2e} (T5), {rp:.2e} (CLIP pooled)");

    // the same calibration from diffusers' embeddings given as --calib-data
    let views = vec![
        (
            "encoder_hidden_states".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, eshape.clone(), bytemuck::cast_slice(&want_embeds)).unwrap(),
        ),
        (
            "pooled_projections".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, want_pooled.len()], bytemuck::cast_slice(&want_pooled)).unwrap(),
        ),
    ];
    std::fs::write(dir.path().join("golden.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    build_engine(&dir.path().join("data"), &[&common[..], &["--calib-data", &path("golden.safetensors"), "--calib-out", &path("data.json")]].concat());
    // and from the stand-in normal embeddings
    build_engine(&dir.path().join("normal"), &[&common[..], &["--calib-txt-len", "512", "--calib-out", &path("normal.json")]].concat());

    let cfg = flux_trt::Checkpoint::open(&fixtures().join("models/dev-diffusers")).unwrap().config().clone();
    let load = |n: &str| Calibration::load(&dir.path().join(n), &cfg).unwrap_or_else(|e| panic!("{n}: {e}"));
    let (prompts, data, normal) = (load("prompts.json"), load("data.json"), load("normal.json"));
    assert!(prompts.info.data.as_deref().is_some_and(|d| d.contains("prompts.txt") && d.contains("1 prompts")), "{:?}", prompts.info.data);
    assert_eq!(prompts.info.samples, 3);
    let mut worst = 0f64;
    let mut apart = 0f64;
    for (point, a) in &prompts.amax {
        let (d, n) = (data.amax[point], normal.amax[point]);
        worst = worst.max(f64::from((a - d).abs() / d.max(1e-12)));
        apart = apart.max(f64::from((a - n).abs() / n.max(1e-12)));
    }
    eprintln!("--calib-prompts vs --calib-data (diffusers' embeddings): largest relative amax difference {worst:.2e}; vs the stand-in {apart:.2e}");
    assert!(worst <= 1e-4, "prompt calibration differs from the golden-embedding calibration by {worst:.2e}");
    assert!(apart > 1e-2, "the stand-in calibration is not told apart ({apart:.2e})");

    // a prompt file with no prompts is refused by name
    std::fs::write(dir.path().join("empty.txt"), "# nothing\n\n").unwrap();
    let st = build_engine_output(&["--precision", "fp8", "--fp8-float", "fp32", "--calib-prompts", &path("empty.txt"), "--out", &path("never")]);
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success() && err.contains("empty.txt") && err.contains("no prompts"), "{err}");
    assert!(!dir.path().join("never").exists(), "nothing written");
}

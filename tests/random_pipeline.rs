//! `make-random-flux --pipeline`: the random FluxPipeline folder (here with `--tiny-components`
//! and a small transformer) stores exactly the tensors transformers and diffusers stored in the
//! committed tiny pipeline, and goes through `build-engine --pipeline` (slots from a random
//! adapter) and `flux-trt generate` on ONNX Runtime CPU like a real one: the seed and the adapter
//! both reach the image. (The full-size names and parameter counts are checked by the binary's
//! own unit tests.)
#![cfg(all(feature = "export", feature = "ort", feature = "pipeline", feature = "cli"))]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

mod ort_support;
use ort_support::{fixtures, ort_library};

/// The transformer: 1 double and 1 single block, 64 wide (text widths follow the components).
const SMALL: [&str; 8] = ["--double", "1", "--single", "1", "--hidden", "64", "--heads", "2"];

fn make(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_make-random-flux"))
        .args(["--pipeline", "--tiny-components"])
        .args(SMALL)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run make-random-flux")
}

fn must(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// name → (dtype, shape) of a safetensors file, the CLIP `text_model.` prefix dropped.
fn header(path: &Path) -> BTreeMap<String, (String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.tensors()
        .into_iter()
        .map(|(n, info)| (n.strip_prefix("text_model.").unwrap_or(&n).to_string(), (format!("{:?}", info.dtype), info.shape.clone())))
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("JSON")
}

#[test]
fn tiny_components_store_the_fixture_tensors_and_configs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("pipe");
    must(make(&["--dtype", "fp32"], &out), "make-random-flux --pipeline");
    let fx = fixtures().join("pipeline/flux-tiny");
    for (part, file, keys) in [
        (
            "text_encoder",
            "model.safetensors",
            &[
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "max_position_embeddings",
                "hidden_act",
                "layer_norm_eps",
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
                "projection_dim",
            ][..],
        ),
        (
            "text_encoder_2",
            "model.safetensors",
            &[
                "vocab_size",
                "d_model",
                "d_kv",
                "d_ff",
                "num_layers",
                "num_heads",
                "relative_attention_num_buckets",
                "relative_attention_max_distance",
                "feed_forward_proj",
                "dense_act_fn",
                "is_gated_act",
                "layer_norm_epsilon",
                "eos_token_id",
                "pad_token_id",
            ][..],
        ),
        (
            "vae",
            "diffusion_pytorch_model.safetensors",
            &[
                "_class_name",
                "act_fn",
                "block_out_channels",
                "down_block_types",
                "up_block_types",
                "force_upcast",
                "in_channels",
                "out_channels",
                "latent_channels",
                "latents_mean",
                "latents_std",
                "layers_per_block",
                "mid_block_add_attention",
                "norm_num_groups",
                "sample_size",
                "scaling_factor",
                "shift_factor",
                "use_post_quant_conv",
                "use_quant_conv",
            ][..],
        ),
    ] {
        assert_eq!(header(&out.join(part).join(file)), header(&fx.join(part).join(file)), "{part}: tensors");
        let (got, want) = (json(&out.join(part).join("config.json")), json(&fx.join(part).join("config.json")));
        for k in keys {
            assert_eq!(got[k], want[k], "{part}/config.json: {k}");
        }
    }
    for f in ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer_2/tokenizer.json"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(fx.join(f)).unwrap(), "{f}");
    }
    let t = json(&out.join("transformer/config.json"));
    assert_eq!((t["joint_attention_dim"].as_u64(), t["pooled_projection_dim"].as_u64()), (Some(32), Some(32)), "text widths from T5 / CLIP");
    assert!(!tmp.path().join("pipe.partial").exists());

    // Refusals, before anything is written: an existing folder, widths the encoders do not give.
    let err = make(&[], &out);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("already exists"));
    let other = tmp.path().join("other");
    let err = make(&["--context", "48"], &other);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("T5's d_model"), "{}", String::from_utf8_lossy(&err.stderr));
    assert!(!other.exists() && !tmp.path().join("other.partial").exists());
}

#[test]
fn random_pipeline_builds_an_engine_and_generates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pipe = tmp.path().join("pipe");
    // bf16 weights (the default), one T5 block: the exporter converts to the engine's fp32.
    must(make(&["--t5-layers", "1", "--seed", "9"], &pipe), "make-random-flux --pipeline");
    assert_eq!(json(&pipe.join("text_encoder_2/config.json"))["num_layers"], 1);
    // A random adapter for the same transformer defines the slots.
    let lora = tmp.path().join("attn.safetensors");
    must(
        Command::new(env!("CARGO_BIN_EXE_make-random-flux"))
            .args(SMALL)
            .args(["--context", "32", "--pooled", "32", "--lora", "attn", "--rank", "4", "--lora-std", "0.2", "--out"])
            .arg(&lora)
            .output()
            .expect("run make-random-flux --lora"),
        "make-random-flux --lora",
    );
    let engine = tmp.path().join("engine");
    must(
        Command::new(env!("CARGO_BIN_EXE_build-engine"))
            .arg("--pipeline")
            .arg(&pipe)
            .arg("--lora")
            .arg(&lora)
            .arg("--out")
            .arg(&engine)
            .arg("--no-hash")
            .env("ORT_DYLIB_PATH", ort_library())
            .output()
            .expect("run build-engine"),
        "build-engine --pipeline",
    );
    let mut pixels = Vec::new();
    let with_lora = format!("{}:1.0", lora.display());
    for (i, (seed, adapter)) in [("1", None), ("2", None), ("1", Some(with_lora.as_str()))].into_iter().enumerate() {
        let png = tmp.path().join(format!("{i}.png"));
        let lora_args: Vec<&str> = adapter.map(|a| vec!["--lora", a]).unwrap_or_default();
        must(
            Command::new(env!("CARGO_BIN_EXE_flux-trt"))
                .args(["generate", "--engine"])
                .arg(&engine)
                .args(["--prompt", "a photo of a cat", "--steps", "2", "--width", "64", "--height", "64", "--seed", seed, "--out"])
                .arg(&png)
                .args(lora_args)
                .env("ORT_DYLIB_PATH", ort_library())
                .output()
                .expect("run flux-trt generate"),
            "flux-trt generate",
        );
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
        assert_eq!(img.dimensions(), (64, 64));
        pixels.push(img.into_raw());
    }
    let diff = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    eprintln!("pixels that differ: seed 1 vs 2: {}, adapter vs none: {} (of {})", diff(&pixels[0], &pixels[1]), diff(&pixels[0], &pixels[2]), pixels[0].len());
    assert_ne!(pixels[0], pixels[1], "the seed reaches the image");
    assert_ne!(pixels[0], pixels[2], "the adapter reaches the image");
}

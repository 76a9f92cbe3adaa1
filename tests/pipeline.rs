//! Text-to-image pipeline parity with diffusers 0.42.1 FluxPipeline; goldens in
//! tests/fixtures/pipeline (tools/reference/make_pipeline_fixtures.py).

use std::path::{Path, PathBuf};

use flux_trt::pipeline::{PipelineError, Schedule, SchedulerConfig};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline")
}

fn read_json<T: for<'de> Deserialize<'de>>(rel: &str) -> T {
    let p = fixtures().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Tensors of a safetensors file, by name, with shapes, as f32 (F32 read as is, I64 converted exactly).
fn load_tensors(rel: &str) -> Tensors {
    let p = fixtures().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = match view.dtype() {
                safetensors::Dtype::F32 => view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                safetensors::Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| {
                        let v = i64::from_le_bytes(c.try_into().unwrap());
                        assert!(v.abs() < 1 << 24, "{name}: {v} is not exact in f32");
                        v as f32
                    })
                    .collect(),
                safetensors::Dtype::U8 => view.data().iter().map(|&b| b as f32).collect(),
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

// ---------------------------------------------------------------- scheduler

#[derive(Deserialize)]
struct SchedCase {
    config: String,
    steps: usize,
    image_seq_len: usize,
    mu: f64,
    #[serde(default)]
    diffusers_nan: bool,
    #[serde(default)]
    sigmas: Vec<f32>,
    #[serde(default)]
    timesteps: Vec<f32>,
    #[serde(default)]
    transformer_timesteps: Vec<f32>,
}

#[derive(Deserialize)]
struct SchedGoldens {
    cases: Vec<SchedCase>,
}

fn sched_config(name: &str) -> SchedulerConfig {
    SchedulerConfig::from_file(&fixtures().join("schedulers").join(name).join("scheduler_config.json")).unwrap()
}

#[test]
fn scheduler_matches_diffusers() {
    let g: SchedGoldens = read_json("scheduler.json");
    assert!(g.cases.len() >= 30);
    let mut exact = 0usize;
    let mut total = 0usize;
    for c in &g.cases {
        let cfg = sched_config(&c.config);
        let what = format!("{} steps={} seq={}", c.config, c.steps, c.image_seq_len);
        assert!((cfg.mu(c.image_seq_len) - c.mu).abs() <= 1e-12, "{what}: mu");
        let s = Schedule::flux(&cfg, c.steps, c.image_seq_len);
        if c.diffusers_nan {
            assert!(matches!(s, Err(PipelineError::Schedule(_))), "{what}: expected an error, got {s:?}");
            continue;
        }
        let s = s.unwrap();
        assert_eq!(s.sigmas.len(), c.steps + 1, "{what}");
        assert_eq!(s.num_steps(), c.steps, "{what}");
        assert!(max_abs_diff(&s.sigmas, &c.sigmas) <= 1e-6, "{what}: sigmas {:?} vs {:?}", s.sigmas, c.sigmas);
        for (a, b) in s.timesteps.iter().zip(&c.timesteps) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{what}: timestep {a} vs {b}");
        }
        let tt: Vec<f32> = (0..s.num_steps()).map(|i| s.transformer_timestep(i)).collect();
        assert!(max_abs_diff(&tt, &c.transformer_timesteps) <= 1e-6, "{what}: transformer timesteps");
        total += s.sigmas.len() + s.timesteps.len() + tt.len();
        exact += s.sigmas.iter().zip(&c.sigmas).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        exact += s.timesteps.iter().zip(&c.timesteps).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        exact += tt.iter().zip(&c.transformer_timesteps).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    }
    // The float32 arithmetic mirrors numpy/torch op for op: every value is bit-equal.
    assert_eq!(exact, total, "{} of {total} values differ in the last bits", total - exact);
}

#[test]
fn scheduler_presets_equal_hub_configs() {
    for (preset, name) in [(SchedulerConfig::flux_dev(), "dev"), (SchedulerConfig::flux_schnell(), "schnell")] {
        let file = sched_config(name);
        for (steps, seq) in [(4, 256), (28, 4096), (50, 1024)] {
            assert_eq!(Schedule::flux(&preset, steps, seq).unwrap(), Schedule::flux(&file, steps, seq).unwrap(), "{name}");
        }
    }
}

#[test]
fn scheduler_step_matches_diffusers() {
    let t = load_tensors("scheduler_steps.safetensors");
    let s = Schedule::flux(&sched_config("dev"), 4, 16).unwrap();
    let mut x = t["x0"].1.clone();
    for i in 0..4 {
        s.step(i, &mut x, &t[&format!("v.{i}")].1).unwrap();
        let want = &t[&format!("x.{i}")].1;
        assert!(max_abs_diff(&x, want) <= 1e-6, "step {i}: {}", max_abs_diff(&x, want));
    }
    let mut short = vec![0.0f32; 3];
    assert!(matches!(s.step(0, &mut short, &[0.0; 4]), Err(PipelineError::Length { .. })));
    assert!(matches!(s.step(4, &mut x.clone(), &x), Err(PipelineError::Schedule(_))));
}

#[test]
fn scheduler_config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"_class_name": "EulerDiscreteScheduler"}"#, "_class_name"),
        (r#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
        (r#"{"shift": -1.0}"#, "shift"),
        (r#"{"use_dynamic_shifting": true, "base_image_seq_len": 64, "max_image_seq_len": 64}"#, "max_image_seq_len"),
        (r#"{"time_shift_type": "cubic"}"#, "cubic"),
        (r#"{"shift": "three"}"#, "\"three\""),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.json"));
        std::fs::write(&p, text).unwrap();
        // The message names the file; the parser's own text (the field, the value) is its source.
        let e = flux_trt::util::error_chain(&SchedulerConfig::from_file(&p).unwrap_err());
        assert!(e.contains(&p.display().to_string()) && e.contains(needle), "{text}: {e}");
    }
    let e = Schedule::flux(&SchedulerConfig::flux_dev(), 0, 16).unwrap_err();
    assert!(matches!(e, PipelineError::Schedule(_)));
}

// ---------------------------------------------------------------- latents

use flux_trt::pipeline::latents::{self, Resolution, LATENT_CHANNELS};

#[derive(Deserialize)]
struct LatentCase {
    height: usize,
    width: usize,
    key: String,
}

#[derive(Deserialize)]
struct LatentIndex {
    cases: Vec<LatentCase>,
}

#[derive(Deserialize)]
struct PipelineIndex {
    latents: LatentIndex,
}

#[test]
fn pack_unpack_ids_match_diffusers() {
    let index: PipelineIndex = read_json("pipeline.json");
    let t = load_tensors("latents.safetensors");
    assert!(index.latents.cases.len() >= 3);
    for c in &index.latents.cases {
        let res = Resolution::new(c.width, c.height).unwrap();
        let (lh, lw) = res.latent_hw();
        let (ushape, unpacked) = &t[&format!("{}.unpacked", c.key)];
        let (pshape, packed) = &t[&format!("{}.packed", c.key)];
        assert_eq!(ushape[..], res.unpacked_shape()[..], "{}", c.key);
        assert_eq!(pshape[..], res.packed_shape()[..], "{}", c.key);
        assert_eq!(&latents::pack(unpacked, 1, LATENT_CHANNELS, lh, lw).unwrap(), packed, "{}: pack", c.key);
        assert_eq!(&latents::unpack(packed, 1, LATENT_CHANNELS, lh, lw).unwrap(), unpacked, "{}: unpack", c.key);
        let ids: Vec<f32> = res.img_ids().into_iter().flatten().collect();
        assert_eq!(ids, t[&format!("{}.img_ids", c.key)].1, "{}: img_ids", c.key);
        assert_eq!(res.image_seq_len(), pshape[1]);
    }
}

#[test]
fn resolution_and_grid_errors() {
    for (w, h) in [(0, 64), (64, 0), (72, 64), (64, 100), (1000, 1024)] {
        assert!(matches!(Resolution::new(w, h), Err(PipelineError::Resolution { .. })), "{w}x{h}");
    }
    let r = Resolution::new(1024, 768).unwrap();
    assert_eq!((r.packed_hw(), r.image_seq_len()), ((48, 64), 3072));
    assert!(matches!(latents::pack(&[0.0; 16 * 3 * 4], 1, 16, 3, 4), Err(PipelineError::Resolution { .. })));
    assert!(matches!(latents::pack(&[0.0; 10], 1, 16, 2, 2), Err(PipelineError::Length { .. })));
    assert!(matches!(latents::unpack(&[0.0; 64 * 4 + 1], 1, 16, 4, 4), Err(PipelineError::Length { .. })));
}

fn write_st(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn initial_latents_from_file() {
    let t = load_tensors("latents.safetensors");
    let res = Resolution::new(128, 64).unwrap();
    let (ushape, unpacked) = &t["64x128.unpacked"];
    let (pshape, packed) = &t["64x128.packed"];
    let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noise.safetensors");
    use safetensors::Dtype::{BF16, F32, I32};

    write_st(&p, &[("latents", F32, pshape.clone(), f32_bytes(packed))]);
    assert_eq!(&latents::load_latents(&p, res).unwrap(), packed);
    write_st(&p, &[("latents", F32, ushape.clone(), f32_bytes(unpacked))]);
    assert_eq!(&latents::load_latents(&p, res).unwrap(), packed, "unpacked input is packed");
    let bf: Vec<u8> = packed.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect();
    write_st(&p, &[("latents", BF16, pshape.clone(), bf)]);
    let got = latents::load_latents(&p, res).unwrap();
    assert!(max_abs_diff(&got, packed) <= 0.02 && got != *packed, "bf16 is decoded");

    let err = |p: &Path, needle: &str| {
        let e = match latents::load_latents(p, res) {
            Ok(_) => panic!("{}: loaded, expected an error with `{needle}`", p.display()),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(&p.display().to_string()) && e.contains(needle), "{e}");
    };
    write_st(&p, &[("noise", F32, pshape.clone(), f32_bytes(packed))]);
    err(&p, "`latents`: missing");
    write_st(&p, &[("latents", F32, vec![1, 16, 128], f32_bytes(packed))]);
    err(&p, "fits neither");
    write_st(&p, &[("latents", I32, pshape.clone(), f32_bytes(packed))]);
    err(&p, "dtype");
    let mut nan = packed.clone();
    nan[5] = f32::NAN;
    write_st(&p, &[("latents", F32, pshape.clone(), f32_bytes(&nan))]);
    err(&p, "non-finite");
    std::fs::write(&p, b"not safetensors").unwrap();
    err(&p, "safetensors");
    err(&dir.path().join("absent.safetensors"), "cannot read");
}

// ---------------------------------------------------------------- tokenizers

#[cfg(feature = "pipeline")]
mod tokenizers_parity {
    use super::*;
    use flux_trt::pipeline::tokenize::{FixedTokenizer, TokenizerKind};

    #[derive(Deserialize)]
    struct Case {
        prompt: String,
        #[serde(default)]
        max_length: usize,
        ids: Vec<u32>,
        truncated: bool,
        /// The removed text as diffusers' warning names it (transformers' `batch_decode`), when truncated.
        #[serde(default)]
        removed: Option<String>,
    }
    #[derive(Deserialize)]
    struct Clip {
        max_length: usize,
        cases: Vec<Case>,
    }
    #[derive(Deserialize)]
    struct T5 {
        cases: Vec<Case>,
    }
    #[derive(Deserialize)]
    struct Goldens {
        clip: Clip,
        t5: T5,
    }

    fn pipe() -> PathBuf {
        fixtures().join("flux-tiny")
    }

    #[test]
    fn clip_ids_match_transformers() {
        let g: Goldens = read_json("tokenizers.json");
        let tok = FixedTokenizer::clip(&pipe().join("tokenizer")).unwrap();
        assert_eq!((tok.kind(), tok.max_length()), (TokenizerKind::Clip, g.clip.max_length));
        assert!(g.clip.cases.iter().filter(|c| c.truncated).count() >= 3);
        for c in &g.clip.cases {
            let e = tok.encode(&c.prompt).unwrap();
            assert_eq!(e.ids, c.ids, "prompt {:?}", c.prompt);
            assert_eq!(c.removed.is_some(), c.truncated, "golden {:?}", c.prompt);
            assert_eq!(e.removed, c.removed, "removed text of prompt {:?}", c.prompt);
        }
    }

    #[test]
    fn clip_from_tokenizer_json_matches_vocab_merges() {
        // transformers 5 writes tokenizer.json only; the vocabulary/merges read from it give the same ids.
        let g: Goldens = read_json("tokenizers.json");
        let src = pipe().join("tokenizer");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(src.join("tokenizer_config.json"), dir.path().join("tokenizer_config.json")).unwrap();
        let vocab: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("vocab.json")).unwrap()).unwrap();
        let merges: Vec<Vec<String>> = std::fs::read_to_string(src.join("merges.txt"))
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(' ').map(String::from).collect())
            .collect();
        let tj = serde_json::json!({"model": {"type": "BPE", "vocab": vocab, "merges": merges}});
        std::fs::write(dir.path().join("tokenizer.json"), tj.to_string()).unwrap();
        let tok = FixedTokenizer::clip(dir.path()).unwrap();
        for c in &g.clip.cases {
            let e = tok.encode(&c.prompt).unwrap();
            assert_eq!((&e.ids, &e.removed), (&c.ids, &c.removed), "prompt {:?}", c.prompt);
        }
    }

    #[test]
    fn t5_ids_match_transformers() {
        let g: Goldens = read_json("tokenizers.json");
        let mut seen = std::collections::BTreeSet::new();
        for c in &g.t5.cases {
            let tok = FixedTokenizer::t5(&pipe().join("tokenizer_2"), c.max_length).unwrap();
            assert_eq!(tok.kind(), TokenizerKind::T5);
            let e = tok.encode(&c.prompt).unwrap();
            assert_eq!(e.ids, c.ids, "max_length {} prompt {:?}", c.max_length, c.prompt);
            assert_eq!(c.removed.is_some(), c.truncated, "golden {:?}", c.prompt);
            assert_eq!(e.removed, c.removed, "removed text, max_length {} prompt {:?}", c.max_length, c.prompt);
            seen.insert((c.max_length, c.truncated));
        }
        assert!(seen.contains(&(512, true)) && seen.contains(&(512, false)) && seen.contains(&(16, true)));
    }

    /// An older tokenizer.json serialization (Sequence[Precompiled, Replace] + Metaspace(add_prefix_space))
    /// that transformers 5 tokenizes exactly like the goldens (checked by the generator) while the
    /// tokenizers library, reading the file as is, does not.
    #[test]
    fn t5_legacy_file_tokenizes_like_transformers() {
        let g: Goldens = read_json("tokenizers.json");
        let dir = fixtures().join("t5-legacy");
        let mut raw_differs = 0;
        for c in &g.t5.cases {
            let tok = FixedTokenizer::t5(&dir, c.max_length).unwrap();
            assert_eq!(tok.encode(&c.prompt).unwrap().ids, c.ids, "max_length {} prompt {:?}", c.max_length, c.prompt);
            let mut raw = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
            raw.with_truncation(Some(tokenizers::TruncationParams { max_length: c.max_length, ..Default::default() })).unwrap();
            raw.with_padding(Some(tokenizers::PaddingParams {
                strategy: tokenizers::PaddingStrategy::Fixed(c.max_length),
                pad_token: "<pad>".into(),
                ..Default::default()
            }));
            raw_differs += usize::from(raw.encode(c.prompt.as_str(), true).unwrap().get_ids() != c.ids);
        }
        assert!(raw_differs > 0, "the legacy fixture no longer exercises the rebuilt T5 pipeline");
    }

    #[test]
    fn tokenizer_errors_name_the_file() {
        let t2 = pipe().join("tokenizer_2");
        for bad in [0, 513] {
            let e = FixedTokenizer::t5(&t2, bad).err().expect("error").to_string();
            assert!(e.contains("tokenizer.json") && e.contains("max_sequence_length"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e = FixedTokenizer::clip(dir.path()).err().expect("error").to_string();
        assert!(e.contains("tokenizer_config.json"), "{e}");
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"model_max_length": 77}"#).unwrap();
        let e = FixedTokenizer::clip(dir.path()).err().expect("error").to_string();
        assert!(e.contains("neither vocab.json"), "{e}");
        std::fs::write(dir.path().join("vocab.json"), r#"{"a": 0, "<|endoftext|>": 1}"#).unwrap();
        std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
        let e = FixedTokenizer::clip(dir.path()).err().expect("error").to_string();
        assert!(e.contains("merges.txt") && e.contains("line 2"), "{e}");
        std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\na a\n").unwrap();
        let e = FixedTokenizer::clip(dir.path()).err().expect("error").to_string();
        assert!(e.contains("vocab.json") && e.contains("<|startoftext|>"), "{e}");
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"bos_token": "<|endoftext|>"}"#).unwrap();
        let e = FixedTokenizer::clip(dir.path()).err().expect("error").to_string();
        assert!(e.contains("model_max_length"), "{e}");
    }
}

// ---------------------------------------------------------------- tiny FluxPipeline generation

#[derive(Deserialize)]
struct Generation {
    pipeline: String,
    goldens: String,
    noise: String,
    #[cfg_attr(not(feature = "pipeline"), allow(dead_code))]
    prompt: String,
    height: usize,
    width: usize,
    num_inference_steps: usize,
    guidance_scale: f32,
    max_sequence_length: usize,
}

#[derive(Deserialize)]
struct GenIndex {
    generation: Generation,
}

type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

fn generation() -> (Generation, Tensors) {
    let g: GenIndex = read_json("pipeline.json");
    let t = load_tensors(&g.generation.goldens);
    (g.generation, t)
}

/// Everything of FluxPipeline's 3-step run that does not need the transformer: schedule and the
/// timestep it is fed, ids, guidance, initial noise, the Euler chain driven by diffusers' own
/// velocities, and the VAE input.
#[test]
fn generation_matches_flux_pipeline_around_the_transformer() {
    let (g, t) = generation();
    let dir = fixtures().join(&g.pipeline);
    let res = Resolution::new(g.width, g.height).unwrap();
    let cfg = SchedulerConfig::from_file(&dir.join("scheduler/scheduler_config.json")).unwrap();
    let s = Schedule::flux(&cfg, g.num_inference_steps, res.image_seq_len()).unwrap();
    assert_eq!(t["guidance"].1, vec![g.guidance_scale]);
    let ids: Vec<f32> = res.img_ids().into_iter().flatten().collect();
    assert_eq!(ids, t["img_ids"].1);
    let (txt_shape, txt) = &t["text_ids"];
    assert_eq!(txt_shape[..], [g.max_sequence_length, 3]);
    assert_eq!(&latents::txt_ids(g.max_sequence_length).concat(), txt);

    let mut x = latents::load_latents(&fixtures().join(&g.noise), res).unwrap();
    assert_eq!(x, t["latents.init"].1);
    for i in 0..s.num_steps() {
        assert_eq!(vec![s.transformer_timestep(i)], t[&format!("timestep.{i}")].1, "timestep {i}");
        s.step(i, &mut x, &t[&format!("velocity.{i}")].1).unwrap();
        let want = &t[&format!("latents.{i}")].1;
        assert!(max_abs_diff(&x, want) <= 1e-6, "latents after step {i}: {}", max_abs_diff(&x, want));
    }

    let vae = flux_trt::pipeline::VaeConfig::from_file(&dir.join("vae/config.json")).unwrap();
    let (lh, lw) = res.latent_hw();
    let mut z = latents::unpack(&x, 1, LATENT_CHANNELS, lh, lw).unwrap();
    vae.to_decoder_input(&mut z);
    let (zshape, want) = &t["vae_input"];
    assert_eq!(zshape[..], res.unpacked_shape()[..]);
    assert!(max_abs_diff(&z, want) <= 1e-5, "vae input: {}", max_abs_diff(&z, want));
}

#[test]
fn image_postprocess_matches_diffusers() {
    use flux_trt::pipeline::image;
    let (g, t) = generation();
    let img = image::denormalize(&t["decoded"].1);
    assert!(max_abs_diff(&img, &t["image"].1) <= 1e-6);
    let rgb = image::to_rgb8(&img, g.height, g.width).unwrap();
    let want: Vec<u8> = t["image_rgb8"].1.iter().map(|&v| v as u8).collect();
    assert_eq!(t["image_rgb8"].0, vec![g.height, g.width, 3]);
    assert_eq!(rgb, want);
    assert!(want.iter().any(|&v| v != want[0]), "the golden image is not flat");
    assert!(matches!(image::to_rgb8(&img[1..], g.height, g.width), Err(PipelineError::Length { .. })));
    assert!(matches!(image::to_rgb8(&t["decoded"].1, g.height, g.width), Err(PipelineError::Value(_))));
}

#[cfg(feature = "pipeline")]
#[test]
fn generation_prompt_ids_match_flux_pipeline() {
    use flux_trt::pipeline::tokenize::PromptTokenizers;
    let (g, t) = generation();
    let tok = PromptTokenizers::from_pipeline_dir(&fixtures().join(&g.pipeline), g.max_sequence_length).unwrap();
    let ids = tok.encode(&g.prompt, None).unwrap();
    let (clip, t5) = (ids.clip, ids.t5);
    let as_f32 = |v: &[u32]| v.iter().map(|&i| i as f32).collect::<Vec<_>>();
    assert_eq!(as_f32(&clip.ids), t["clip_input_ids"].1);
    assert_eq!(as_f32(&t5.ids), t["t5_input_ids"].1);
}

#[test]
fn vae_config_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    for (text, needle) in [
        (r#"{"scaling_factor": 0.3611, "shift_factor": 0.1159, "latent_channels": 4, "block_out_channels": [1,2,3,4]}"#, "latent_channels"),
        (r#"{"scaling_factor": 0.3611, "shift_factor": 0.1159, "latent_channels": 16, "block_out_channels": [1,2,3]}"#, "factor"),
        (r#"{"scaling_factor": 0.0, "latent_channels": 16, "block_out_channels": [1,2,3,4]}"#, "scaling_factor"),
        (r#"{"latent_channels": 16}"#, "scaling_factor"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = flux_trt::util::error_chain(&flux_trt::pipeline::VaeConfig::from_file(&p).expect_err("error"));
        assert!(e.contains(&p.display().to_string()) && e.contains(needle), "{text}: {e}");
    }
    let real = flux_trt::pipeline::VaeConfig::from_file(&fixtures().join("flux-tiny/vae/config.json")).unwrap();
    assert_eq!((real.scaling_factor, real.shift_factor), (0.3611, Some(0.1159)));
}

// ---------------------------------------------------------------- denoise loop on ONNX Runtime

/// The tiny dev transformer exported by flux-trt's exporter and run by ONNX Runtime inside
/// [`flux_trt::pipeline::denoise`], fed diffusers' prompt embeds and initial noise: every step's
/// latents match FluxPipeline's.
#[cfg(all(feature = "ort", feature = "export"))]
mod ort_support;

#[cfg(all(feature = "ort", feature = "export"))]
mod ort_loop {
    use super::*;
    use flux_trt::lora::plan::PlanOptions;
    use flux_trt::manifest::Precision;
    use flux_trt::onnx::{export, ExportOptions};
    use flux_trt::pipeline::{denoise, Conditioning};
    use flux_trt::runtime::ort::FluxSession;
    use flux_trt::runtime::Slotted;
    use flux_trt::{Checkpoint, SlotPlan};

    #[test]
    fn denoise_loop_matches_flux_pipeline() {
        let (g, t) = generation();
        let ck = Checkpoint::open(&fixtures().join("../models/dev-diffusers")).unwrap();
        // Base model: slots on the attention modules, all zeros.
        let plan = SlotPlan::new(ck.config(), &[], &PlanOptions { max_rank: Some(1), targets: vec!["attn".into()] }).unwrap();
        let engine = tempfile::tempdir().unwrap();
        let mut opts = ExportOptions::new(Precision::Fp32);
        opts.hash_sources = false;
        export(&ck, &plan, &opts, engine.path(), &mut |_, _| {}).unwrap();
        let session = FluxSession::builder(engine.path()).with_library(super::ort_support::ort_library()).with_threads(2).build().unwrap();

        let res = Resolution::new(g.width, g.height).unwrap();
        let cfg = SchedulerConfig::from_file(&fixtures().join(&g.pipeline).join("scheduler/scheduler_config.json")).unwrap();
        let schedule = Schedule::flux(&cfg, g.num_inference_steps, res.image_seq_len()).unwrap();
        let (pshape, prompt) = &t["prompt_embeds"];
        let cond = Conditioning::new(prompt.clone(), pshape[1], pshape[2], t["pooled_prompt_embeds"].1.clone(), Some(g.guidance_scale)).unwrap();
        let init = latents::load_latents(&fixtures().join(&g.noise), res).unwrap();
        let mut seen = Vec::new();
        let out = denoise(&session, &session.lease(), &schedule, res, &cond, init, |i, x| {
            seen.push((i, x.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen.len(), g.num_inference_steps);
        for (i, x) in &seen {
            let want = &t[&format!("latents.{i}")].1;
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(x, want) / scale;
            eprintln!("step {i}: relative error vs diffusers {err:e}");
            assert!(err <= 1e-4, "step {i}: relative error {err}");
            // The loop really moved the latents: each step differs from the one before.
            let prev = if *i == 0 { &t["latents.init"].1 } else { &t[&format!("latents.{}", i - 1)].1 };
            assert!(max_abs_diff(want, prev) / scale > 1e-2, "step {i} does not move the latents");
        }
        assert_eq!(&out, &seen.last().unwrap().1);

        // A wrong-length conditioning is refused before any step runs.
        assert!(matches!(Conditioning::new(prompt.clone(), pshape[1] + 1, pshape[2], vec![0.0; 32], Some(3.5)), Err(PipelineError::Length { .. })));
        let e = denoise(&session, &session.lease(), &schedule, res, &cond, vec![0.0; 7], |_, _| panic!("no step may run")).unwrap_err();
        assert!(matches!(e, PipelineError::Length { .. }), "{e}");
    }
}

// ---------------------------------------------------------------- noise

/// `--seed` noise equals torch.randn on the CPU generator (tools/reference/noise_golden.py), and
/// the seed-42 draw, packed, is FluxPipeline's own initial latents of the generation golden.
#[test]
fn seeded_noise_matches_torch() {
    use flux_trt::pipeline::noise::torch_randn;
    let cases = load_tensors("noise_cases.safetensors");
    assert_eq!(cases.len(), 5);
    for (name, (_, want)) in &cases {
        let (seed, n) = name.strip_prefix("seed").and_then(|s| s.split_once(".n")).unwrap();
        let got = torch_randn(seed.parse().unwrap(), n.parse().unwrap()).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&got, want);
        eprintln!("{name}: max abs diff {err}");
        assert!(err <= 2e-6 * scale, "{name}: max abs diff {err} (max |x| {scale})");
    }
    let (g, t) = generation();
    let res = Resolution::new(g.width, g.height).unwrap();
    let (lh, lw) = res.latent_hw();
    let z = torch_randn(42, LATENT_CHANNELS * lh * lw).unwrap();
    let packed = latents::pack(&z, 1, LATENT_CHANNELS, lh, lw).unwrap();
    let err = max_abs_diff(&packed, &t["latents.init"].1);
    assert!(err <= 1e-5, "seed 42 vs FluxPipeline latents.init: {err}");
}

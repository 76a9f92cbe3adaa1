//! `make-random-flux --pipeline`: a whole diffusers `FluxPipeline` folder of random weights in
//! FLUX.1-dev's shapes, for full-size whole-image runs without a download:
//! - `transformer/`: the diffusers-layout transformer of `main.rs` (its shape flags apply);
//! - `text_encoder/`: CLIP-L (`CLIPTextModel`: 768 wide, 12 layers, 12 heads, MLP 3072, vocab
//!   49408, 77 positions, quick_gelu);
//! - `text_encoder_2/`: T5-XXL v1.1 (`T5EncoderModel`: d_model 4096, d_ff 10240, 64 heads of 64,
//!   gated-gelu, 32 relative-attention buckets up to distance 128, vocab 32128), `--t5-layers` of
//!   its 24 blocks;
//! - `vae/`: FLUX.1's `AutoencoderKL` (16 latent channels, blocks [128, 256, 512, 512], 2 layers
//!   per block, 32 groups, mid-block attention, no quant convs, scaling 0.3611, shift 0.1159),
//!   encoder and decoder, so diffusers loads it with no missing keys;
//! - `tokenizer/`, `tokenizer_2/`, `scheduler/`, `model_index.json`: copied from `--tokenizers`
//!   (by default the committed tiny pipeline, whose vocabularies are smaller than the models':
//!   every token id is still a valid row).
//!
//! Stored names are those of FLUX.1-dev's own files: CLIP under transformers 4's `text_model.`
//! prefix, T5's embedding as `shared.weight`, the VAE under diffusers' names. `--tiny-components`
//! writes CLIP, T5 and the VAE in the committed tiny pipeline's shapes instead (tests).
//! Values as for the transformer: weights, biases and embeddings uniform with std 0.02, LayerNorm /
//! GroupNorm / RMSNorm scales 1 ± 0.02; one seed per component (`--seed` + 1, 2, 3).
//! Everything is written into `OUT.partial/` and renamed to `OUT` at the end.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{linear, write_safetensors, Dt, Init, Spec};

/// CLIP stored-name prefix of FLUX.1-dev's `text_encoder/model.safetensors` (transformers 4).
pub const CLIP_PREFIX: &str = "text_model.";

/// The files copied from `--tokenizers`.
const COPIED: [&str; 4] = ["tokenizer", "tokenizer_2", "scheduler", "model_index.json"];

#[derive(Clone, Debug)]
pub struct ClipShape {
    pub vocab: usize,
    pub hidden: usize,
    pub ff: usize,
    pub layers: usize,
    pub heads: usize,
    pub positions: usize,
}

#[derive(Clone, Debug)]
pub struct T5Shape {
    pub vocab: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub heads: usize,
    pub d_ff: usize,
    pub layers: usize,
    pub buckets: usize,
    pub max_distance: usize,
}

#[derive(Clone, Debug)]
pub struct VaeShape {
    pub channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent: usize,
    pub groups: usize,
    pub sample_size: usize,
}

/// The shapes of the three non-transformer components.
#[derive(Clone, Debug)]
pub struct Components {
    pub clip: ClipShape,
    pub t5: T5Shape,
    pub vae: VaeShape,
}

impl Components {
    /// FLUX.1-dev's CLIP-L, T5-XXL and VAE.
    pub fn flux1() -> Self {
        Components {
            clip: ClipShape { vocab: 49408, hidden: 768, ff: 3072, layers: 12, heads: 12, positions: 77 },
            t5: T5Shape { vocab: 32128, d_model: 4096, d_kv: 64, heads: 64, d_ff: 10240, layers: 24, buckets: 32, max_distance: 128 },
            vae: VaeShape { channels: vec![128, 256, 512, 512], layers_per_block: 2, latent: 16, groups: 32, sample_size: 1024 },
        }
    }

    /// The committed tiny pipeline's (tests/fixtures/pipeline/flux-tiny).
    pub fn tiny() -> Self {
        Components {
            clip: ClipShape { vocab: 914, hidden: 32, ff: 64, layers: 2, heads: 2, positions: 77 },
            t5: T5Shape { vocab: 400, d_model: 32, d_kv: 8, heads: 4, d_ff: 64, layers: 2, buckets: 32, max_distance: 128 },
            vae: VaeShape { channels: vec![8, 16, 16, 16], layers_per_block: 1, latent: 16, groups: 4, sample_size: 64 },
        }
    }
}

/// LayerNorm / GroupNorm affine (scale ≈ 1, small bias), or an RMSNorm scale alone.
fn norm(v: &mut Vec<Spec>, name: &str, width: usize, bias: bool) {
    v.push((format!("{name}.weight"), vec![width], Init::NormScale));
    if bias {
        v.push((format!("{name}.bias"), vec![width], Init::Weight));
    }
}

fn conv(v: &mut Vec<Spec>, name: &str, cin: usize, cout: usize, k: usize) {
    v.push((format!("{name}.weight"), vec![cout, cin, k, k], Init::Weight));
    v.push((format!("{name}.bias"), vec![cout], Init::Weight));
}

/// transformers' `CLIPTextModel` state dict.
pub fn clip_specs(c: &ClipShape) -> Vec<Spec> {
    let (p, h) = (CLIP_PREFIX, c.hidden);
    let mut v = vec![
        (format!("{p}embeddings.token_embedding.weight"), vec![c.vocab, h], Init::Weight),
        (format!("{p}embeddings.position_embedding.weight"), vec![c.positions, h], Init::Weight),
    ];
    for i in 0..c.layers {
        let l = format!("{p}encoder.layers.{i}");
        norm(&mut v, &format!("{l}.layer_norm1"), h, true);
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            linear(&mut v, &format!("{l}.self_attn.{n}"), h, h, true);
        }
        norm(&mut v, &format!("{l}.layer_norm2"), h, true);
        linear(&mut v, &format!("{l}.mlp.fc1"), h, c.ff, true);
        linear(&mut v, &format!("{l}.mlp.fc2"), c.ff, h, true);
    }
    norm(&mut v, &format!("{p}final_layer_norm"), h, true);
    v
}

/// transformers' `T5EncoderModel` state dict (the embedding once, as `shared.weight`).
pub fn t5_specs(t: &T5Shape) -> Vec<Spec> {
    let (d, inner) = (t.d_model, t.heads * t.d_kv);
    let mut v = vec![("shared.weight".to_string(), vec![t.vocab, d], Init::Weight)];
    for i in 0..t.layers {
        let b = format!("encoder.block.{i}.layer");
        let a = format!("{b}.0.SelfAttention");
        for n in ["q", "k", "v"] {
            linear(&mut v, &format!("{a}.{n}"), d, inner, false);
        }
        linear(&mut v, &format!("{a}.o"), inner, d, false);
        if i == 0 {
            v.push((format!("{a}.relative_attention_bias.weight"), vec![t.buckets, t.heads], Init::Weight));
        }
        norm(&mut v, &format!("{b}.0.layer_norm"), d, false);
        let f = format!("{b}.1.DenseReluDense");
        linear(&mut v, &format!("{f}.wi_0"), d, t.d_ff, false);
        linear(&mut v, &format!("{f}.wi_1"), d, t.d_ff, false);
        linear(&mut v, &format!("{f}.wo"), t.d_ff, d, false);
        norm(&mut v, &format!("{b}.1.layer_norm"), d, false);
    }
    norm(&mut v, "encoder.final_layer_norm", d, false);
    v
}

/// diffusers' `ResnetBlock2D` without time embedding.
fn resnet(v: &mut Vec<Spec>, p: &str, cin: usize, cout: usize) {
    norm(v, &format!("{p}.norm1"), cin, true);
    conv(v, &format!("{p}.conv1"), cin, cout, 3);
    norm(v, &format!("{p}.norm2"), cout, true);
    conv(v, &format!("{p}.conv2"), cout, cout, 3);
    if cin != cout {
        conv(v, &format!("{p}.conv_shortcut"), cin, cout, 1);
    }
}

/// `UNetMidBlock2D`: resnet, single-head attention, resnet.
fn mid_block(v: &mut Vec<Spec>, p: &str, c: usize) {
    resnet(v, &format!("{p}.resnets.0"), c, c);
    let a = format!("{p}.attentions.0");
    norm(v, &format!("{a}.group_norm"), c, true);
    for n in ["to_q", "to_k", "to_v", "to_out.0"] {
        linear(v, &format!("{a}.{n}"), c, c, true);
    }
    resnet(v, &format!("{p}.resnets.1"), c, c);
}

/// diffusers' `AutoencoderKL` state dict (3 image channels, no quant convs).
pub fn vae_specs(s: &VaeShape) -> Vec<Spec> {
    let ch = &s.channels;
    let (n, bottom, top) = (ch.len(), ch[0], ch[ch.len() - 1]);
    let mut v = Vec::new();
    conv(&mut v, "encoder.conv_in", 3, bottom, 3);
    let mut prev = bottom;
    for (i, &out) in ch.iter().enumerate() {
        for j in 0..s.layers_per_block {
            resnet(&mut v, &format!("encoder.down_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { out }, out);
        }
        if i + 1 < n {
            conv(&mut v, &format!("encoder.down_blocks.{i}.downsamplers.0.conv"), out, out, 3);
        }
        prev = out;
    }
    mid_block(&mut v, "encoder.mid_block", top);
    norm(&mut v, "encoder.conv_norm_out", top, true);
    conv(&mut v, "encoder.conv_out", top, 2 * s.latent, 3);

    conv(&mut v, "decoder.conv_in", s.latent, top, 3);
    mid_block(&mut v, "decoder.mid_block", top);
    let mut prev = top;
    for (i, &out) in ch.iter().rev().enumerate() {
        for j in 0..=s.layers_per_block {
            resnet(&mut v, &format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { out }, out);
        }
        if i + 1 < n {
            conv(&mut v, &format!("decoder.up_blocks.{i}.upsamplers.0.conv"), out, out, 3);
        }
        prev = out;
    }
    norm(&mut v, "decoder.conv_norm_out", bottom, true);
    conv(&mut v, "decoder.conv_out", bottom, 3, 3);
    v
}

fn torch_dtype(dt: Dt) -> &'static str {
    match dt {
        Dt::Bf16 => "bfloat16",
        Dt::Fp16 => "float16",
        Dt::Fp32 => "float32",
    }
}

/// FLUX.1-dev's `text_encoder/config.json` with `c`'s shape.
pub fn clip_config(c: &ClipShape, dt: Dt) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": "quick_gelu",
        "hidden_size": c.hidden,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": c.ff,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": c.positions,
        "model_type": "clip_text_model",
        "num_attention_heads": c.heads,
        "num_hidden_layers": c.layers,
        "pad_token_id": 1,
        "projection_dim": c.hidden,
        "torch_dtype": torch_dtype(dt),
        "vocab_size": c.vocab,
    })
}

/// FLUX.1-dev's `text_encoder_2/config.json` with `t`'s shape.
pub fn t5_config(t: &T5Shape, dt: Dt) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["T5EncoderModel"],
        "classifier_dropout": 0.0,
        "d_ff": t.d_ff,
        "d_kv": t.d_kv,
        "d_model": t.d_model,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": true,
        "is_gated_act": true,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": t.layers,
        "num_heads": t.heads,
        "num_layers": t.layers,
        "output_past": true,
        "pad_token_id": 0,
        "relative_attention_max_distance": t.max_distance,
        "relative_attention_num_buckets": t.buckets,
        "tie_word_embeddings": false,
        "torch_dtype": torch_dtype(dt),
        "use_cache": true,
        "vocab_size": t.vocab,
    })
}

/// FLUX.1-dev's `vae/config.json` with `s`'s shape.
pub fn vae_config(s: &VaeShape) -> serde_json::Value {
    let n = s.channels.len();
    serde_json::json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.30.0.dev0",
        "act_fn": "silu",
        "block_out_channels": s.channels,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "force_upcast": true,
        "in_channels": 3,
        "latent_channels": s.latent,
        "latents_mean": null,
        "latents_std": null,
        "layers_per_block": s.layers_per_block,
        "mid_block_add_attention": true,
        "norm_num_groups": s.groups,
        "out_channels": 3,
        "sample_size": s.sample_size,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "use_post_quant_conv": false,
        "use_quant_conv": false,
    })
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    flux_trt::util::write_atomic(path, &bytes)?;
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// One past the largest token id of a tokenizer folder: `vocab.json` (CLIP), `tokenizer.json`'s
/// model vocabulary (object or Unigram list) and its added tokens.
fn token_id_bound(dir: &Path) -> Result<usize> {
    let ids = |v: &serde_json::Value| match v {
        serde_json::Value::Object(m) => m.values().filter_map(serde_json::Value::as_u64).max().map_or(0, |x| x as usize + 1),
        serde_json::Value::Array(a) => a.len(),
        _ => 0,
    };
    let mut n = 0;
    if dir.join("vocab.json").is_file() {
        n = ids(&read_json(&dir.join("vocab.json"))?);
    }
    if dir.join("tokenizer.json").is_file() {
        let t = read_json(&dir.join("tokenizer.json"))?;
        n = n.max(ids(&t["model"]["vocab"]));
        for a in t["added_tokens"].as_array().into_iter().flatten() {
            n = n.max(a["id"].as_u64().map_or(0, |x| x as usize + 1));
        }
    }
    if n == 0 {
        bail!("{}: no vocabulary (vocab.json or tokenizer.json)", dir.display());
    }
    Ok(n)
}

/// Checks `--tokenizers` against the models before anything is written: every copied part is
/// there, the CLIP tokenizer's `model_max_length` is CLIP's position count, and no token id is
/// past either model's embedding table.
fn check_tokenizers(src: &Path, c: &Components) -> Result<()> {
    for part in COPIED {
        if !src.join(part).exists() {
            bail!("--tokenizers {}: no {part} (it must hold tokenizer/, tokenizer_2/, scheduler/ and model_index.json)", src.display());
        }
    }
    let cfg = src.join("tokenizer").join("tokenizer_config.json");
    let max = read_json(&cfg)?["model_max_length"].as_f64();
    if max != Some(c.clip.positions as f64) {
        bail!("{}: model_max_length {max:?}, but CLIP takes {} tokens", cfg.display(), c.clip.positions);
    }
    for (dir, vocab, model) in [("tokenizer", c.clip.vocab, "CLIP"), ("tokenizer_2", c.t5.vocab, "T5")] {
        let n = token_id_bound(&src.join(dir))?;
        if n > vocab {
            bail!("{}: token ids up to {}, but {model}'s embedding has {vocab} rows", src.join(dir).display(), n - 1);
        }
    }
    Ok(())
}

/// Copies `src` (a file, or a folder's files recursively) to `dst`.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst).with_context(|| format!("{}: cannot create folder", dst.display()))?;
        for e in std::fs::read_dir(src).with_context(|| format!("{}: cannot list", src.display()))? {
            let e = e.with_context(|| format!("{}: cannot list", src.display()))?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(src, dst).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// What [`write_pipeline`] writes besides the transformer.
pub struct PipelineSpec<'a> {
    pub components: &'a Components,
    pub tokenizers: &'a Path,
    pub dtype: Dt,
    pub seed: u64,
}

/// Writes the pipeline folder `out` (refused if it exists): `transformer` writes `transformer/`
/// into the folder it is given and returns its bytes. Returns (part, bytes) per weight file.
pub fn write_pipeline(out: &Path, spec: &PipelineSpec<'_>, transformer: impl FnOnce(&Path) -> Result<u64>) -> Result<Vec<(String, u64)>> {
    if out.exists() {
        bail!("{}: already exists (remove it or choose another --out)", out.display());
    }
    let name = out.file_name().with_context(|| format!("{}: not a folder name", out.display()))?;
    let tmp: PathBuf = out.with_file_name(format!("{}.partial", name.to_string_lossy()));
    let c = spec.components;
    check_tokenizers(spec.tokenizers, c)?;
    if tmp.exists() {
        eprintln!("removing {} (left by an interrupted run)", tmp.display());
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    let mut sizes = Vec::new();
    let parts: [(&str, &str, Vec<Spec>, serde_json::Value); 3] = [
        ("text_encoder", "model.safetensors", clip_specs(&c.clip), clip_config(&c.clip, spec.dtype)),
        ("vae", "diffusion_pytorch_model.safetensors", vae_specs(&c.vae), vae_config(&c.vae)),
        ("text_encoder_2", "model.safetensors", t5_specs(&c.t5), t5_config(&c.t5, spec.dtype)),
    ];
    for (k, (dir, file, specs, config)) in parts.into_iter().enumerate() {
        let d = tmp.join(dir);
        std::fs::create_dir_all(&d).with_context(|| format!("{}: cannot create folder", d.display()))?;
        write_json(&d.join("config.json"), &config)?;
        eprintln!("{dir}/: {} tensors", specs.len());
        sizes.push((format!("{dir}/{file}"), write_safetensors(&d.join(file), &specs, spec.dtype, spec.seed.wrapping_add(k as u64 + 1))?));
    }
    for part in COPIED {
        copy_tree(&spec.tokenizers.join(part), &tmp.join(part))?;
    }
    let t = tmp.join("transformer");
    sizes.push(("transformer/diffusion_pytorch_model.safetensors".into(), transformer(&t)?));
    std::fs::rename(&tmp, out).with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/flux-tiny")
    }

    /// Stored names with every numeric path segment (layer, block, `to_out.0`) as `#`, the CLIP
    /// prefix dropped: the set of tensor kinds.
    fn kinds<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        names
            .map(|n| {
                let n = n.strip_prefix(CLIP_PREFIX).unwrap_or(n);
                n.split('.').map(|s| if s.bytes().all(|b| b.is_ascii_digit()) { "#" } else { s }).collect::<Vec<_>>().join(".")
            })
            .collect()
    }

    fn fixture_names(part: &str, file: &str) -> Vec<String> {
        let p = fixture().join(part).join(file);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        meta.tensors().into_keys().collect()
    }

    fn params(specs: &[Spec]) -> usize {
        specs.iter().map(|(_, s, _)| s.iter().product::<usize>()).sum()
    }

    /// The full-size specs name the same kinds of tensors per layer as the tiny pipeline that
    /// transformers and diffusers wrote themselves, and have the published parameter counts of
    /// FLUX.1-dev's components (CLIP-L text model 123,060,480; T5-XXL encoder 4,762,310,656, its
    /// bf16 file 9,524,621,312 bytes; the VAE 83,819,683).
    #[test]
    fn full_size_names_match_transformers_and_diffusers() {
        let c = Components::flux1();
        for (part, file, specs, count) in [
            ("text_encoder", "model.safetensors", clip_specs(&c.clip), 123_060_480usize),
            ("text_encoder_2", "model.safetensors", t5_specs(&c.t5), 4_762_310_656),
            ("vae", "diffusion_pytorch_model.safetensors", vae_specs(&c.vae), 83_819_683),
        ] {
            let want = fixture_names(part, file);
            assert_eq!(kinds(specs.iter().map(|(n, _, _)| n.as_str())), kinds(want.iter().map(String::as_str)), "{part}");
            assert_eq!(params(&specs), count, "{part}");
            let unique: BTreeSet<&str> = specs.iter().map(|(n, _, _)| n.as_str()).collect();
            assert_eq!(unique.len(), specs.len(), "{part}: duplicate names");
        }
    }
}

//! `make-random-flux`: writes a random FLUX.1-shaped transformer checkpoint (BFL single file or
//! diffusers folder) in bf16/fp16/fp32, streaming, so full-size runs need no download.
//!
//! Independent of the flux-trt library on purpose (it feeds the loader and exporter as an
//! outside input): its own key lists, its own safetensors header writer.
//! Values: weights and biases uniform with std ≈ 0.02, RMSNorm scales ≈ 1 ± 0.02, from a
//! seeded xorshift generator.
//!
//! With `--lora attn|all` it writes a random PEFT adapter for that model shape instead
//! (`transformer.<module>.lora_A.weight` [r, in] / `lora_B.weight` [out, r], normal values with
//! std `--lora-std`, no metadata, so alpha = r and scale 1): `attn` targets the double blocks'
//! to_q, to_k, to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj, to_add_out and the single
//! blocks' to_q, to_k, to_v; `all` every Linear layer of the model (diffusers names).
//!
//! With `--pipeline` it writes a whole diffusers FluxPipeline folder instead: this transformer
//! plus CLIP-L, T5-XXL and the VAE in their real shapes, tokenizers and scheduler copied
//! (see `pipeline.rs`).

mod pipeline;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Layout {
    Bfl,
    Diffusers,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Dt {
    Bf16,
    Fp16,
    Fp32,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum LoraSet {
    Attn,
    All,
}

#[derive(Parser, Debug)]
#[command(
    name = "make-random-flux",
    about = "Write a random FLUX.1-shaped checkpoint, LoRA or whole diffusers FluxPipeline folder (default: full FLUX.1-dev size)"
)]
struct Args {
    /// Output: a .safetensors file (bfl, --lora) or a folder (diffusers, --pipeline).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "bfl")]
    layout: Layout,
    #[arg(long, value_enum, default_value = "bf16")]
    dtype: Dt,
    #[arg(long, default_value_t = 19)]
    double: usize,
    #[arg(long, default_value_t = 38)]
    single: usize,
    #[arg(long, default_value_t = 3072)]
    hidden: usize,
    #[arg(long, default_value_t = 24)]
    heads: usize,
    /// Input channels (64 dev/schnell, 128 control, 384 fill).
    #[arg(long, default_value_t = 64)]
    in_channels: usize,
    /// Text-embedding width (T5's d_model; default 4096, with --pipeline T5's).
    #[arg(long)]
    context: Option<usize>,
    /// Pooled-embedding width (CLIP's hidden size; default 768, with --pipeline CLIP's).
    #[arg(long)]
    pooled: Option<usize>,
    /// No guidance embedder (schnell).
    #[arg(long)]
    schnell: bool,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Write a random PEFT LoRA (file `--out`) targeting these modules instead of a checkpoint.
    #[arg(long, value_enum)]
    lora: Option<LoraSet>,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// Standard deviation of the LoRA factors (normal).
    #[arg(long, default_value_t = 0.01)]
    lora_std: f32,
    /// Write a whole diffusers FluxPipeline folder `--out`: transformer/ (diffusers layout, the
    /// shape flags above), text_encoder/ (CLIP-L), text_encoder_2/ (T5-XXL), vae/ (FLUX.1's
    /// AutoencoderKL), and tokenizer/, tokenizer_2/, scheduler/, model_index.json copied from
    /// --tokenizers. Written as OUT.partial, renamed to OUT at the end; OUT must not exist.
    #[arg(long, conflicts_with_all = ["lora", "layout", "schnell"])]
    pipeline: bool,
    /// T5 encoder blocks to write (T5-XXL has 24, about 386 MB each in bf16; fewer keep its width).
    #[arg(long, requires = "pipeline")]
    t5_layers: Option<usize>,
    /// CLIP, T5 and the VAE in the shapes of the committed tiny pipeline
    /// (tests/fixtures/pipeline/flux-tiny) instead of FLUX.1's (tests).
    #[arg(long, requires = "pipeline")]
    tiny_components: bool,
    /// Folder to copy tokenizer/, tokenizer_2/, scheduler/ and model_index.json from
    /// (default: this crate's tests/fixtures/pipeline/flux-tiny, whose vocabularies fit the models).
    #[arg(long, requires = "pipeline")]
    tokenizers: Option<PathBuf>,
}

impl Args {
    fn context(&self) -> usize {
        self.context.unwrap_or(4096)
    }
    fn pooled(&self) -> usize {
        self.pooled.unwrap_or(768)
    }
}

/// How a tensor's values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Init {
    /// Uniform with std 0.02.
    Weight,
    /// RMSNorm scale, 1 ± 0.02.
    NormScale,
    /// Normal with this std.
    Normal(f32),
}

/// `(name, shape, init)`
type Spec = (String, Vec<usize>, Init);

/// A Linear layer `name` (`in_features` → `out_features`): its weight `[out, in]` and, with `bias`, its bias.
fn linear(v: &mut Vec<Spec>, name: &str, i: usize, o: usize, bias: bool) {
    v.push((format!("{name}.weight"), vec![o, i], Init::Weight));
    if bias {
        v.push((format!("{name}.bias"), vec![o], Init::Weight));
    }
}

fn bfl_specs(a: &Args) -> Vec<Spec> {
    let (h, m, hd) = (a.hidden, 4 * a.hidden, a.hidden / a.heads);
    let mut v: Vec<Spec> = Vec::new();
    linear(&mut v, "img_in", a.in_channels, h, true);
    linear(&mut v, "txt_in", a.context(), h, true);
    linear(&mut v, "time_in.in_layer", 256, h, true);
    linear(&mut v, "time_in.out_layer", h, h, true);
    linear(&mut v, "vector_in.in_layer", a.pooled(), h, true);
    linear(&mut v, "vector_in.out_layer", h, h, true);
    if !a.schnell {
        linear(&mut v, "guidance_in.in_layer", 256, h, true);
        linear(&mut v, "guidance_in.out_layer", h, h, true);
    }
    for i in 0..a.double {
        let p = format!("double_blocks.{i}");
        for s in ["img", "txt"] {
            linear(&mut v, &format!("{p}.{s}_mod.lin"), h, 6 * h, true);
            linear(&mut v, &format!("{p}.{s}_attn.qkv"), h, 3 * h, true);
            v.push((format!("{p}.{s}_attn.norm.query_norm.scale"), vec![hd], Init::NormScale));
            v.push((format!("{p}.{s}_attn.norm.key_norm.scale"), vec![hd], Init::NormScale));
            linear(&mut v, &format!("{p}.{s}_attn.proj"), h, h, true);
            linear(&mut v, &format!("{p}.{s}_mlp.0"), h, m, true);
            linear(&mut v, &format!("{p}.{s}_mlp.2"), m, h, true);
        }
    }
    for i in 0..a.single {
        let p = format!("single_blocks.{i}");
        linear(&mut v, &format!("{p}.linear1"), h, 3 * h + m, true);
        linear(&mut v, &format!("{p}.linear2"), h + m, h, true);
        v.push((format!("{p}.norm.query_norm.scale"), vec![hd], Init::NormScale));
        v.push((format!("{p}.norm.key_norm.scale"), vec![hd], Init::NormScale));
        linear(&mut v, &format!("{p}.modulation.lin"), h, 3 * h, true);
    }
    linear(&mut v, "final_layer.linear", h, 64, true);
    linear(&mut v, "final_layer.adaLN_modulation.1", h, 2 * h, true);
    v
}

fn diffusers_specs(a: &Args) -> Vec<Spec> {
    let (h, m, hd) = (a.hidden, 4 * a.hidden, a.hidden / a.heads);
    let mut v: Vec<Spec> = Vec::new();
    linear(&mut v, "x_embedder", a.in_channels, h, true);
    linear(&mut v, "context_embedder", a.context(), h, true);
    linear(&mut v, "time_text_embed.timestep_embedder.linear_1", 256, h, true);
    linear(&mut v, "time_text_embed.timestep_embedder.linear_2", h, h, true);
    if !a.schnell {
        linear(&mut v, "time_text_embed.guidance_embedder.linear_1", 256, h, true);
        linear(&mut v, "time_text_embed.guidance_embedder.linear_2", h, h, true);
    }
    linear(&mut v, "time_text_embed.text_embedder.linear_1", a.pooled(), h, true);
    linear(&mut v, "time_text_embed.text_embedder.linear_2", h, h, true);
    for i in 0..a.double {
        let p = format!("transformer_blocks.{i}");
        linear(&mut v, &format!("{p}.norm1.linear"), h, 6 * h, true);
        linear(&mut v, &format!("{p}.norm1_context.linear"), h, 6 * h, true);
        for n in ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"] {
            linear(&mut v, &format!("{p}.attn.{n}"), h, h, true);
        }
        for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
            v.push((format!("{p}.attn.{n}.weight"), vec![hd], Init::NormScale));
        }
        linear(&mut v, &format!("{p}.ff.net.0.proj"), h, m, true);
        linear(&mut v, &format!("{p}.ff.net.2"), m, h, true);
        linear(&mut v, &format!("{p}.ff_context.net.0.proj"), h, m, true);
        linear(&mut v, &format!("{p}.ff_context.net.2"), m, h, true);
    }
    for i in 0..a.single {
        let p = format!("single_transformer_blocks.{i}");
        linear(&mut v, &format!("{p}.norm.linear"), h, 3 * h, true);
        for n in ["to_q", "to_k", "to_v"] {
            linear(&mut v, &format!("{p}.attn.{n}"), h, h, true);
        }
        for n in ["norm_q", "norm_k"] {
            v.push((format!("{p}.attn.{n}.weight"), vec![hd], Init::NormScale));
        }
        linear(&mut v, &format!("{p}.proj_mlp"), h, m, true);
        linear(&mut v, &format!("{p}.proj_out"), h + m, h, true);
    }
    linear(&mut v, "norm_out.linear", h, 2 * h, true);
    linear(&mut v, "proj_out", h, 64, true);
    v
}

/// The PEFT adapter tensors for `set` over the diffusers Linear modules of `a`'s shape.
fn lora_specs(a: &Args, set: LoraSet) -> Vec<Spec> {
    const DOUBLE_ATTN: [&str; 8] = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"];
    const SINGLE_ATTN: [&str; 3] = ["to_q", "to_k", "to_v"];
    let wanted = |module: &str| -> bool {
        match set {
            LoraSet::All => true,
            LoraSet::Attn => {
                let parts: Vec<&str> = module.splitn(3, '.').collect();
                match (parts.first().copied(), parts.get(2).and_then(|r| r.strip_prefix("attn."))) {
                    (Some("transformer_blocks"), Some(p)) => DOUBLE_ATTN.contains(&p),
                    (Some("single_transformer_blocks"), Some(p)) => SINGLE_ATTN.contains(&p),
                    _ => false,
                }
            }
        }
    };
    let mut v = Vec::new();
    for (name, shape, init) in diffusers_specs(a) {
        let Some(module) = name.strip_suffix(".weight") else { continue };
        if init != Init::Weight || shape.len() != 2 || !wanted(module) {
            continue;
        }
        let (out, inp) = (shape[0], shape[1]);
        v.push((format!("transformer.{module}.lora_A.weight"), vec![a.rank, inp], Init::Normal(a.lora_std)));
        v.push((format!("transformer.{module}.lora_B.weight"), vec![out, a.rank], Init::Normal(a.lora_std)));
    }
    v
}

struct XorShift(u64);

impl XorShift {
    /// The generator for `seed`: distinct seeds give distinct streams. (It used to start at
    /// `seed | 1`, so seeds 2k and 2k+1 wrote identical files: the "a64" and "b64" adapters of
    /// `tools/device/cuda.sh`, seeds 2 and 3, were the same adapter.) SplitMix64's finalizer is a
    /// bijection, so only one seed maps to 0, which xorshift cannot use; it becomes 1.
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift(z.max(1))
    }

    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn write_safetensors(path: &Path, specs: &[Spec], dt: Dt, seed: u64) -> Result<u64> {
    let (code, size) = match dt {
        Dt::Bf16 => ("BF16", 2usize),
        Dt::Fp16 => ("F16", 2),
        Dt::Fp32 => ("F32", 4),
    };
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, shape, _) in specs {
        let n = shape.iter().product::<usize>() * size;
        header.insert(name.clone(), serde_json::json!({"dtype": code, "shape": shape, "data_offsets": [off, off + n]}));
        off += n;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt", "generator": "make-random-flux"}));
    let mut hbytes = serde_json::to_vec(&header)?;
    while hbytes.len() % 8 != 0 {
        hbytes.push(b' ');
    }
    let tmp = path.with_extension("safetensors.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    w.write_all(&(hbytes.len() as u64).to_le_bytes())?;
    w.write_all(&hbytes)?;
    let mut rng = XorShift::new(seed);
    // uniform(-a, a) has std a/√3; a = 0.02·√3
    let amp = 0.02f32 * 3f32.sqrt();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 22);
    let t0 = std::time::Instant::now();
    for (i, (name, shape, init)) in specs.iter().enumerate() {
        let n: usize = shape.iter().product();
        let mut left = n;
        while left > 0 {
            let k = left.min(1 << 20);
            buf.clear();
            for _ in 0..k.div_ceil(2) {
                let r = rng.next();
                let (h0, h1) = (r as u32, (r >> 32) as u32);
                // [0, 1) from the top 24 bits of each half; uniform(-1, 1) as before.
                let unit = |h: u32| (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
                let sym = |h: u32| unit(h) * 2.0 - 1.0;
                let pair = match init {
                    Init::Weight => [amp * sym(h0), amp * sym(h1)],
                    Init::NormScale => [1.0 + 0.02 * sym(h0), 1.0 + 0.02 * sym(h1)],
                    Init::Normal(std) => {
                        // Box-Muller on (0, 1] × [0, 1): two independent normals.
                        let u0 = 1.0 - unit(h0);
                        let (rad, th) = ((-2.0 * u0.ln()).sqrt(), std::f32::consts::TAU * unit(h1));
                        [std * rad * th.cos(), std * rad * th.sin()]
                    }
                };
                for v in pair {
                    match dt {
                        Dt::Bf16 => buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                        Dt::Fp16 => buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                        Dt::Fp32 => buf.extend_from_slice(&v.to_le_bytes()),
                    }
                }
            }
            w.write_all(&buf[..k * size])?;
            left -= k;
        }
        if i % 50 == 0 {
            eprintln!("[{:>6.1}s] {}/{} {name}", t0.elapsed().as_secs_f64(), i + 1, specs.len());
        }
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok((8 + hbytes.len() + off) as u64)
}

/// The diffusers-layout transformer folder `dir`: `diffusion_pytorch_model.safetensors` and
/// `config.json`. Returns the weight file's bytes.
fn write_diffusers(a: &Args, dir: &Path) -> Result<u64> {
    let hd = a.hidden / a.heads;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let n = write_safetensors(&dir.join("diffusion_pytorch_model.safetensors"), &diffusers_specs(a), a.dtype, a.seed)?;
    let cfg = serde_json::json!({
        "_class_name": "FluxTransformer2DModel",
        "attention_head_dim": hd,
        "axes_dims_rope": [hd / 8, 7 * hd / 16, 7 * hd / 16],
        "guidance_embeds": !a.schnell,
        "in_channels": a.in_channels,
        "joint_attention_dim": a.context(),
        "num_attention_heads": a.heads,
        "num_layers": a.double,
        "num_single_layers": a.single,
        "out_channels": null,
        "patch_size": 1,
        "pooled_projection_dim": a.pooled(),
    });
    pipeline::write_json(&dir.join("config.json"), &cfg)?;
    Ok(n)
}

/// `--pipeline`: the component shapes, the transformer's text widths checked against (or taken
/// from) them, then the folder.
fn write_pipeline(a: &mut Args) -> Result<()> {
    let mut comps = if a.tiny_components { pipeline::Components::tiny() } else { pipeline::Components::flux1() };
    if let Some(n) = a.t5_layers {
        if n == 0 {
            bail!("--t5-layers must be at least 1");
        }
        comps.t5.layers = n;
    }
    for (flag, given, width, what) in
        [("--context", &mut a.context, comps.t5.d_model, "T5's d_model"), ("--pooled", &mut a.pooled, comps.clip.hidden, "CLIP's hidden size")]
    {
        match *given {
            Some(g) if g != width => bail!("{flag} {g} must equal {what} {width} (the transformer reads its output)"),
            _ => *given = Some(width),
        }
    }
    if a.in_channels != 4 * comps.vae.latent {
        bail!("--in-channels {} must be 4 × the VAE's {} latent channels for a FluxPipeline", a.in_channels, comps.vae.latent);
    }
    let tokenizers = a.tokenizers.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/flux-tiny"));
    let spec = pipeline::PipelineSpec { components: &comps, tokenizers: &tokenizers, dtype: a.dtype, seed: a.seed };
    let a = &*a;
    let sizes = pipeline::write_pipeline(&a.out, &spec, |dir| write_diffusers(a, dir))?;
    for (file, bytes) in &sizes {
        eprintln!("{:>15} bytes  {file}", bytes);
    }
    eprintln!("wrote {} ({} bytes of weights)", a.out.display(), sizes.iter().map(|(_, b)| b).sum::<u64>());
    Ok(())
}

fn main() -> Result<()> {
    let mut a = Args::parse();
    if a.hidden % a.heads != 0 || (a.hidden / a.heads) % 16 != 0 {
        bail!("--hidden {} / --heads {} must give a head_dim that is a multiple of 16", a.hidden, a.heads);
    }
    if a.pipeline {
        return write_pipeline(&mut a);
    }
    if let Some(set) = a.lora {
        if a.rank == 0 || !(a.lora_std.is_finite() && a.lora_std > 0.0) {
            bail!("--rank must be > 0 and --lora-std a positive number");
        }
        let specs = lora_specs(&a, set);
        let bytes = write_safetensors(&a.out, &specs, a.dtype, a.seed)?;
        eprintln!("wrote {} ({} modules, rank {}, {bytes} bytes)", a.out.display(), specs.len() / 2, a.rank);
        return Ok(());
    }
    let bytes = match a.layout {
        Layout::Bfl => write_safetensors(&a.out, &bfl_specs(&a), a.dtype, a.seed)?,
        Layout::Diffusers => write_diffusers(&a, &a.out)?,
    };
    eprintln!("wrote {} ({bytes} bytes)", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::XorShift;

    #[test]
    fn neighbouring_seeds_give_different_streams() {
        let first = |seed: u64| {
            let mut r = XorShift::new(seed);
            [r.next(), r.next(), r.next()]
        };
        for seed in [0u64, 1, 2, 3, 0x5eed, 0x5eee, u64::MAX - 1, u64::MAX] {
            assert_ne!(first(seed), first(seed ^ 1), "seeds {seed} and {}", seed ^ 1);
            assert_ne!(first(seed)[0], 0);
        }
    }
}

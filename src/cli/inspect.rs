//! `flux-trt inspect FILE`: what a checkpoint, a LoRA file or an engine folder holds.

use std::path::{Path, PathBuf};

use clap::Args;
use flux_trt::checkpoint::{Checkpoint, CheckpointError};
use flux_trt::lora::{self, AdapterSummary, LoraError};
use flux_trt::manifest::{Manifest, MANIFEST_FILE};

#[derive(Args, Clone, Debug)]
pub struct InspectArgs {
    /// A checkpoint (BFL .safetensors or diffusers folder), a LoRA .safetensors file, or an engine folder.
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let p = args.path.as_path();
    if p.is_dir() && p.join(MANIFEST_FILE).is_file() {
        let m = Manifest::load(p)?;
        return print(args.json, &m, || manifest_text(p, &m));
    }
    // A file whose keys follow a LoRA convention is an adapter. A file the LoRA reader refuses
    // (unsupported adapter kind, bad header, ...) is still tried as a checkpoint; if it is not a
    // FLUX checkpoint either, the LoRA reader's error is the answer.
    if p.is_file() {
        match lora::detect_format(p) {
            Ok(_) => {
                let adapter = lora::load(p)?;
                let s = adapter.summary();
                return print(args.json, &s, || adapter_text(&s));
            }
            Err(LoraError::UnknownFormat { .. }) => {}
            Err(lora_err) => match Checkpoint::open(p) {
                Ok(ck) => {
                    let s = ck.describe();
                    return print(args.json, &s, || s.to_string());
                }
                Err(flux_trt::Error::Checkpoint(CheckpointError::NotFlux { .. })) => return Err(lora_err.into()),
                Err(e) => return Err(e.into()),
            },
        }
    }
    let ck = Checkpoint::open(p)?;
    let s = ck.describe();
    print(args.json, &s, || s.to_string())
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = if json { serde_json::to_string_pretty(value)? } else { text() };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        // `flux-trt inspect … | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn adapter_text(s: &AdapterSummary) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(t, "LoRA adapter {} ({})", s.name, s.source.display());
    let _ = writeln!(t, "  format:   {}", s.format);
    let _ = writeln!(t, "  modules:  {} (max rank {})", s.modules.len(), s.max_rank);
    if s.text_encoder_modules > 0 {
        let _ = writeln!(t, "  CLIP-L text-encoder modules: {} (kept for the text-encoder export)", s.text_encoder_modules);
    }
    for m in &s.modules {
        let _ = writeln!(t, "    {:<56} rank {:>3}  scale {:<9.5}  [{}×{}]", m.module, m.rank, m.scale, m.out_features, m.in_features);
    }
    t
}

fn manifest_text(dir: &Path, m: &Manifest) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let c = &m.model;
    let _ = writeln!(t, "engine folder {} (manifest v{}, {})", dir.display(), m.format_version, m.exporter);
    let _ = writeln!(
        t,
        "  model:     FLUX.1 {} — hidden {}, {} heads × {}, {} double + {} single blocks",
        c.variant, c.hidden_size, c.num_heads, c.head_dim, c.num_double_blocks, c.num_single_blocks
    );
    let _ = writeln!(t, "  precision: {:?}", m.precision);
    let _ = writeln!(t, "  onnx:      {} + {} (opset {})", m.onnx.file, m.onnx.data_file, m.onnx.opset);
    let _ = writeln!(t, "  slots:     {} at max rank {} ({})", m.lora.slots.len(), m.lora.max_rank, m.lora.dtype);
    match &m.engine {
        Some(e) => {
            let _ = writeln!(t, "  tensorrt:  {} {} for {} (stripped: {})", e.tensorrt_variant, e.tensorrt_version, e.targets.join(","), e.stripped_weights);
        }
        None => {
            let _ = writeln!(t, "  tensorrt:  no plan built");
        }
    }
    for s in &m.sources {
        let _ = writeln!(t, "  source:    {} {} ({} bytes, blake3 {})", s.role, s.path, s.bytes, &s.blake3[..s.blake3.len().min(16)]);
    }
    t
}

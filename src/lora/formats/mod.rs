//! Readers for every Flux LoRA file format, mapping each onto canonical (diffusers-named)
//! per-module factors. Entry points: [`load`], [`load_with_name`], [`detect_format`].
//!
//! A file is memory-mapped and parsed once; adapter kinds that are not plain low-rank
//! updates (DoRA, LoHa, LoKr, full diffs, LoRA bias, Control-LoRA norms, T5) are refused
//! before anything else, then the format is detected in diffusers' order ([`detect_format`]) and its
//! reader converts every key — a key it does not understand is an error, never skipped.

mod build;
mod comfy;
mod detect;
mod kohya;
mod names;
mod peft;
mod source;
mod summary;
mod xlabs;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

pub use summary::{AdapterSummary, ModuleSummary};

use super::{Adapter, LoraError, LoraFormat, LoraModule};
use source::Source;

/// What a format reader produces.
pub(crate) struct Loaded {
    pub modules: BTreeMap<String, LoraModule>,
    pub text_encoder: BTreeMap<String, LoraModule>,
}

/// Runs `f` on the parsed file.
fn with_source<T>(path: &Path, f: impl FnOnce(&Source) -> Result<T, LoraError>) -> Result<T, LoraError> {
    let io = |e| LoraError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e));
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(LoraError::Empty { path: path.to_path_buf() });
    }
    // SAFETY: the map is read-only and lives only for this call; flux-trt never writes LoRA
    // files, and a concurrent writer could at worst make us read garbage that the parser and
    // the finiteness checks reject.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let src = Source::parse(path, &map)?;
    f(&src)
}

fn detect(src: &Source) -> Result<LoraFormat, LoraError> {
    detect::reject_unsupported(src)?;
    detect::classify(src)
}

/// Detects a LoRA file's format from its header (no tensor data is decoded). Adapter kinds
/// flux-trt cannot apply are reported as [`LoraError::Unsupported`].
pub fn detect_format(path: &Path) -> Result<LoraFormat, LoraError> {
    with_source(path, detect)
}

/// Loads a LoRA file; the adapter is named after the file stem.
///
/// ```
/// use flux_trt::LoraFormat;
/// # fn main() -> flux_trt::Result<()> {
/// // A diffusers/PEFT adapter of rank 4 on every attention layer of the tiny dev fixture.
/// let adapter = flux_trt::lora::load("tests/fixtures/loras/attn.peft.safetensors".as_ref())?;
/// assert_eq!((adapter.name.as_str(), adapter.format, adapter.max_rank()), ("attn.peft", LoraFormat::Peft, 4));
/// // Factors under canonical (diffusers) module names: ΔW = scale · B · A.
/// let q = &adapter.modules["transformer_blocks.0.attn.to_q"];
/// assert_eq!((q.a.rows, q.a.cols, q.b.rows, q.b.cols), (4, 64, 64, 4));
/// # Ok(())
/// # }
/// ```
///
/// Errors are [`crate::Error::Lora`], naming the file and the tensor or key.
pub fn load(path: &Path) -> crate::Result<Adapter> {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    load_with_name(path, &name)
}

/// Loads a LoRA file under a display name.
pub fn load_with_name(path: &Path, name: &str) -> crate::Result<Adapter> {
    Ok(read_adapter(path, name)?)
}

/// Reads an adapter from the bytes of a safetensors file (already in memory); `path` is where it
/// came from, for the adapter's `source` and for error messages. [`load_with_name`] is this on
/// the memory-mapped file.
pub fn load_bytes(path: &Path, bytes: &[u8], name: &str) -> crate::Result<Adapter> {
    Ok(adapter_from(path, name, read_source(&Source::parse(path, bytes)?)?)?)
}

/// Detects the format and converts every key.
fn read_source(src: &Source) -> Result<(LoraFormat, Loaded), LoraError> {
    let format = detect(src)?;
    tracing::debug!(path = %src.path.display(), %format, tensors = src.keys().len(), "reading LoRA");
    let loaded = match format {
        LoraFormat::Peft => peft::read(src)?,
        LoraFormat::Kohya => kohya::read(src)?,
        LoraFormat::BflComfy => comfy::read(src)?,
        LoraFormat::XLabs => xlabs::read(src)?,
    };
    Ok((format, loaded))
}

fn read_adapter(path: &Path, name: &str) -> Result<Adapter, LoraError> {
    adapter_from(path, name, with_source(path, read_source)?)
}

fn adapter_from(path: &Path, name: &str, (format, loaded): (LoraFormat, Loaded)) -> Result<Adapter, LoraError> {
    if loaded.modules.is_empty() && loaded.text_encoder.is_empty() {
        return Err(LoraError::Empty { path: path.to_path_buf() });
    }
    tracing::info!(
        path = %path.display(),
        %format,
        modules = loaded.modules.len(),
        text_encoder_modules = loaded.text_encoder.len(),
        "loaded LoRA"
    );
    Ok(Adapter { name: name.to_string(), source: path.to_path_buf(), format, modules: loaded.modules, text_encoder: loaded.text_encoder })
}

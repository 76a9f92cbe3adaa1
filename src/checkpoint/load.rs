//! [`Checkpoint`]: opening, validation and canonical-name access (see the module docs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::bfl::{self, Source, Split};
use super::detect::{self, KeyView};
use super::diffusers;
use super::mapped::{self, RawTensor};
use super::{CheckpointError, Layout, TensorRef};
use crate::flux::{FluxConfig, FusedGroup};
use crate::tensor::DType;

/// A byte range of one mapped file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    file: usize,
    start: usize,
    end: usize,
}

/// A canonical tensor: element type, shape and the spans holding its bytes, in order.
#[derive(Clone, Debug)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    spans: Vec<Span>,
}

/// An opened, fully validated checkpoint (see the module docs for the contract).
///
/// Opening maps the files read-only; nothing is copied. A failed open returns an error and
/// leaves no state behind (each `Checkpoint` owns its maps; there is no global cache).
pub struct Checkpoint {
    path: PathBuf,
    config: FluxConfig,
    layout: Layout,
    prefix: &'static str,
    config_file: Option<PathBuf>,
    files: Vec<PathBuf>,
    maps: Vec<Arc<Mmap>>,
    stored_tensors: usize,
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("variant", &self.config.variant)
            .field("files", &self.files)
            .field("tensors", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens a `.safetensors` file or a diffusers folder (a pipeline root works too: its
    /// `transformer/` subfolder is used). Every expected parameter is checked for presence,
    /// shape and dtype; unexpected keys are errors.
    ///
    /// BFL files and single diffusers files carry no RoPE configuration: their `axes_dim` is
    /// [`FluxConfig::default_axes_dim`] (`(16, 56, 56)` for head_dim 128), and opening fails when
    /// head_dim has no such split. Diffusers folders use `axes_dims_rope` from `config.json`.
    ///
    /// ```
    /// use flux_trt::{Checkpoint, Variant};
    /// # fn main() -> flux_trt::Result<()> {
    /// // The tiny FLUX.1-dev-shaped fixture in BFL layout (fused qkv / linear1).
    /// let ckpt = Checkpoint::open("tests/fixtures/models/dev-bfl.safetensors".as_ref())?;
    /// let cfg = ckpt.config();
    /// assert_eq!(cfg.variant, Variant::Dev);
    /// assert_eq!((cfg.hidden_size, cfg.num_double_blocks, cfg.num_single_blocks), (64, 2, 2));
    /// // Its parameters under canonical (diffusers) names: q/k/v split out of the fused `qkv`.
    /// assert_eq!(ckpt.tensor("transformer_blocks.0.attn.to_q.weight")?.shape, [64, 64]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Errors are [`crate::Error::Checkpoint`], naming the file and tensor.
    pub fn open(path: &Path) -> crate::Result<Self> {
        Ok(Self::open_checked(path)?)
    }

    pub(crate) fn open_checked(path: &Path) -> Result<Self, CheckpointError> {
        let meta = std::fs::metadata(path).map_err(|e| CheckpointError::from(crate::util::FileError::new(crate::util::FileOp::Read, path, e)))?;
        if !meta.is_dir() && path.extension().is_some_and(|e| e == "json") {
            return Err(CheckpointError::Invalid {
                path: path.to_path_buf(),
                message: "a JSON file, not weights: pass the diffusers folder that holds it".into(),
            });
        }
        let ck = if meta.is_dir() { Self::open_folder(path)? } else { Self::open_file(path)? };
        tracing::debug!(
            path = %path.display(),
            layout = ?ck.layout,
            variant = %ck.config.variant,
            tensors = ck.entries.len(),
            "opened checkpoint"
        );
        Ok(ck)
    }

    fn open_file(path: &Path) -> Result<Self, CheckpointError> {
        let f = mapped::map_file(path, 0)?;
        let files = vec![f.path.clone()];
        Self::build(path, path, files, vec![f.map], f.tensors, None)
    }

    fn open_folder(dir: &Path) -> Result<Self, CheckpointError> {
        let folder = diffusers::resolve(dir)?;
        let mut maps = Vec::new();
        let mut tensors: BTreeMap<String, RawTensor> = BTreeMap::new();
        let mut located: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (i, file) in folder.files.iter().enumerate() {
            let f = mapped::map_file(file, i)?;
            for (name, t) in f.tensors {
                if let Some(prev) = located.get(&name) {
                    return Err(CheckpointError::Invalid { path: file.clone(), message: format!("tensor `{name}` is also stored in {}", prev.display()) });
                }
                located.insert(name.clone(), file.clone());
                tensors.insert(name, t);
            }
            maps.push(f.map);
        }
        let source = match &folder.index {
            Some((index_path, weight_map)) => {
                diffusers::check_index(index_path, weight_map, &located)?;
                index_path.clone()
            }
            None => folder.files.first().cloned().unwrap_or_else(|| folder.dir.clone()),
        };
        let axes = diffusers::axes_dim(&folder.config_path, &folder.config)?;
        let conf = (folder.config_path.clone(), folder.config, axes);
        Self::build(&folder.dir, &source, folder.files, maps, tensors, Some(conf))
    }

    /// Validates the stored tensors and maps them to canonical names. `source` is the file
    /// named in errors about absent tensors (the file itself, or the shard index).
    fn build(
        path: &Path,
        source: &Path,
        files: Vec<PathBuf>,
        maps: Vec<Arc<Mmap>>,
        tensors: BTreeMap<String, RawTensor>,
        conf: Option<(PathBuf, diffusers::DiffusersConfig, [usize; 3])>,
    ) -> Result<Self, CheckpointError> {
        let file_of = |t: &RawTensor| files.get(t.file).cloned().unwrap_or_else(|| source.to_path_buf());
        for (name, t) in &tensors {
            if DType::from_safetensors(t.dtype).is_none() {
                return Err(CheckpointError::DType { path: file_of(t), tensor: name.clone(), dtype: format!("{:?}", t.dtype) });
            }
        }
        let style = detect::classify(source, tensors.keys().map(String::as_str))?;
        if conf.is_some() && style.layout != Layout::Diffusers {
            let key = tensors.keys().next().cloned().unwrap_or_default();
            return Err(CheckpointError::UnknownKey {
                path: source.to_path_buf(),
                key,
                message: "BFL-named keys in a diffusers folder (use the BFL .safetensors file directly)".into(),
            });
        }
        let view = KeyView { tensors: &tensors, style, files: &files, source };
        let config = detect::infer_config(&view, conf.as_ref().map(|c| c.2))?;
        if let Some((config_path, dc, _)) = &conf {
            diffusers::check_config(config_path, dc, &config)?;
        }
        let sources = match style.layout {
            Layout::Bfl => bfl::bfl_sources(&config),
            Layout::Diffusers => bfl::diffusers_sources(&config),
        };
        let mut entries = BTreeMap::new();
        let mut used = std::collections::BTreeSet::new();
        for src in &sources {
            let stored = format!("{}{}", style.prefix, src.key);
            let Some(t) = tensors.get(&stored) else {
                return Err(CheckpointError::MissingTensor { path: source.to_path_buf(), tensor: stored, canonical: src.targets.join(", ") });
            };
            if t.shape != src.shape {
                return Err(CheckpointError::Shape { path: file_of(t), tensor: stored, expected: src.shape.clone(), found: t.shape.clone() });
            }
            split_into(src, t, &mut entries).map_err(|message| CheckpointError::Tensor { path: file_of(t), tensor: stored.clone(), message })?;
            used.insert(stored);
        }
        if let Some((key, t)) = tensors.iter().find(|(k, _)| !used.contains(*k)) {
            let c = &config;
            return Err(CheckpointError::UnknownKey {
                path: file_of(t),
                key: key.clone(),
                message: format!("not a parameter of FLUX.1 {} with {} double / {} single blocks", c.variant, c.num_double_blocks, c.num_single_blocks),
            });
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            config,
            layout: style.layout,
            prefix: style.prefix,
            config_file: conf.map(|c| c.0),
            files,
            maps,
            stored_tensors: tensors.len(),
            entries,
        })
    }

    pub fn config(&self) -> &FluxConfig {
        &self.config
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The weight files, in index order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    /// The path opened (for a pipeline root: its `transformer/` folder).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The prefix stripped from every stored key (`model.diffusion_model.` or empty).
    pub fn key_prefix(&self) -> &str {
        self.prefix
    }
    /// `config.json` of a diffusers folder.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }
    /// Number of tensors stored in the files (BFL fused tensors count once).
    pub fn stored_tensor_count(&self) -> usize {
        self.stored_tensors
    }

    /// Canonical names of every tensor, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
    /// Whether `name` is a canonical tensor of this checkpoint.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
    /// Total bytes of all canonical tensors (equal to the stored weight bytes).
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().flat_map(|e| &e.spans).map(|s| (s.end - s.start) as u64).sum()
    }
    /// Total number of parameters.
    pub fn total_params(&self) -> u64 {
        self.entries.values().map(|e| e.shape.iter().product::<usize>() as u64).sum()
    }
    /// Number of canonical tensors of each element type, keyed by [`DType::name`].
    pub fn dtype_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for e in self.entries.values() {
            *m.entry(e.dtype.name()).or_insert(0) += 1;
        }
        m
    }

    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>, CheckpointError> {
        let e = self.entries.get(name).ok_or_else(|| CheckpointError::Missing { name: name.to_string() })?;
        Ok(TensorRef { name: name.to_string(), dtype: e.dtype, shape: e.shape.clone(), parts: self.slices(name, &e.spans)? })
    }

    /// The members of a fused group (`FluxConfig::fused_groups`) stacked by rows, for `suffix`
    /// `weight` or `bias`. Adjacent byte ranges are merged, so for a BFL file this is the stored
    /// fused tensor as one part. Members must share dtype and trailing dimensions.
    pub fn fused(&self, group: &FusedGroup, suffix: &str) -> Result<TensorRef<'_>, CheckpointError> {
        let name = format!("{}.{suffix}", group.name);
        if suffix != "weight" && suffix != "bias" {
            return Err(CheckpointError::Missing { name });
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut first: Option<&Entry> = None;
        let mut rows = 0;
        for m in &group.members {
            let member = format!("{m}.{suffix}");
            let e = self.entries.get(&member).ok_or(CheckpointError::Missing { name: member.clone() })?;
            if let Some(f) = first {
                if f.dtype != e.dtype || f.shape.get(1..) != e.shape.get(1..) {
                    return Err(CheckpointError::Tensor {
                        path: self.path.clone(),
                        tensor: member,
                        message: format!("cannot stack into `{name}`: {} {:?} after {} {:?}", e.dtype, e.shape, f.dtype, f.shape),
                    });
                }
            }
            first.get_or_insert(e);
            rows += e.shape.first().copied().unwrap_or(0);
            for s in &e.spans {
                match spans.last_mut() {
                    Some(last) if last.file == s.file && last.end == s.start => last.end = s.end,
                    _ => spans.push(*s),
                }
            }
        }
        let f = first.ok_or(CheckpointError::Missing { name: name.clone() })?;
        let mut shape = f.shape.clone();
        if let Some(r) = shape.first_mut() {
            *r = rows;
        }
        Ok(TensorRef { parts: self.slices(&name, &spans)?, name, dtype: f.dtype, shape })
    }

    fn slices(&self, name: &str, spans: &[Span]) -> Result<Vec<&[u8]>, CheckpointError> {
        spans
            .iter()
            .map(|s| {
                self.maps.get(s.file).and_then(|m| m.get(s.start..s.end)).ok_or_else(|| CheckpointError::Tensor {
                    path: self.files.get(s.file).cloned().unwrap_or_else(|| self.path.clone()),
                    tensor: name.to_string(),
                    message: format!("byte range {}..{} outside the mapped file", s.start, s.end),
                })
            })
            .collect()
    }

    /// A serialisable summary for `flux-trt inspect` (also printable via `Display`).
    pub fn describe(&self) -> super::CheckpointSummary {
        super::summary::summarize(self)
    }
}

/// Adds the canonical tensors that stored tensor `t` provides (shape already checked).
fn split_into(src: &Source, t: &RawTensor, entries: &mut BTreeMap<String, Entry>) -> Result<(), String> {
    let dtype = DType::from_safetensors(t.dtype).ok_or_else(|| format!("unsupported dtype {:?}", t.dtype))?;
    let rows = src.shape.first().copied().unwrap_or(1);
    let row_bytes = (t.end - t.start).checked_div(rows).unwrap_or(0);
    let span = |a: usize, b: usize| Span { file: t.file, start: t.start + a * row_bytes, end: t.start + b * row_bytes };
    let with_rows = |r: usize| {
        let mut s = src.shape.clone();
        if let Some(x) = s.first_mut() {
            *x = r;
        }
        s
    };
    let first = || src.targets.first().cloned().ok_or_else(|| "no canonical target".to_string());
    match &src.split {
        Split::Whole => {
            entries.insert(first()?, Entry { dtype, shape: src.shape.clone(), spans: vec![span(0, rows)] });
        }
        Split::SwapHalves => {
            if rows % 2 != 0 {
                return Err(format!("{rows} rows do not split into two halves"));
            }
            let h = rows / 2;
            entries.insert(first()?, Entry { dtype, shape: src.shape.clone(), spans: vec![span(h, rows), span(0, h)] });
        }
        Split::Rows(lens) => {
            let mut at = 0;
            for (target, len) in src.targets.iter().zip(lens) {
                entries.insert(target.clone(), Entry { dtype, shape: with_rows(*len), spans: vec![span(at, at + len)] });
                at += len;
            }
            if at != rows {
                return Err(format!("row split {lens:?} does not cover {rows} rows"));
            }
        }
    }
    Ok(())
}

//! [`CheckpointSummary`]: what `flux-trt inspect` prints (JSON via serde, text via `Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::{Checkpoint, Layout};
use crate::flux::{FluxConfig, Variant};

/// Facts about an opened checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointSummary {
    /// The path opened (a pipeline root resolves to its `transformer/` folder).
    pub path: PathBuf,
    /// The weight files.
    pub files: Vec<PathBuf>,
    /// `config.json` of a diffusers folder.
    pub config_file: Option<PathBuf>,
    pub layout: Layout,
    /// Prefix stripped from every stored key (empty when none).
    pub key_prefix: String,
    pub variant: Variant,
    pub config: FluxConfig,
    /// Tensors as stored (a BFL fused `qkv` counts once).
    pub stored_tensors: usize,
    /// Tensors under canonical names.
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
    /// Canonical tensor count per dtype name (`f32`, `f16`, `bf16`).
    pub dtypes: BTreeMap<String, usize>,
}

pub(crate) fn summarize(ck: &Checkpoint) -> CheckpointSummary {
    CheckpointSummary {
        path: ck.path().to_path_buf(),
        files: ck.files().to_vec(),
        config_file: ck.config_file().map(|p| p.to_path_buf()),
        layout: ck.layout(),
        key_prefix: ck.key_prefix().to_string(),
        variant: ck.config().variant,
        config: ck.config().clone(),
        stored_tensors: ck.stored_tensor_count(),
        tensors: ck.names().len(),
        params: ck.total_params(),
        bytes: ck.total_bytes(),
        dtypes: ck.dtype_counts().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

impl fmt::Display for CheckpointSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let layout = match self.layout {
            Layout::Bfl => "BFL",
            Layout::Diffusers => "diffusers",
        };
        writeln!(f, "checkpoint  {}", self.path.display())?;
        for file in &self.files {
            writeln!(f, "  file      {}", file.display())?;
        }
        if let Some(cf) = &self.config_file {
            writeln!(f, "  config    {}", cf.display())?;
        }
        let prefix = if self.key_prefix.is_empty() { String::new() } else { format!(" (keys prefixed `{}`)", self.key_prefix) };
        writeln!(f, "layout      {layout}{prefix}")?;
        writeln!(f, "variant     FLUX.1 {} (guidance embedder: {})", self.variant, if self.variant.has_guidance() { "yes" } else { "no" })?;
        writeln!(f, "blocks      {} double + {} single", c.num_double_blocks, c.num_single_blocks)?;
        writeln!(f, "hidden      {} = {} heads × {}; MLP {}", c.hidden_size, c.num_heads, c.head_dim, c.mlp_hidden)?;
        writeln!(f, "channels    in {} / out {}; text {} / pooled {}", c.in_channels, c.out_channels, c.context_dim, c.pooled_dim)?;
        writeln!(f, "rope        axes {:?}, theta {}", c.axes_dim, c.rope_theta)?;
        writeln!(f, "tensors     {} canonical ({} stored)", self.tensors, self.stored_tensors)?;
        writeln!(f, "params      {} ({})", self.params, human(self.params as f64, 1000.0, &["", " K", " M", " B"]))?;
        writeln!(f, "bytes       {} ({})", self.bytes, human(self.bytes as f64, 1024.0, &[" B", " KiB", " MiB", " GiB"]))?;
        let d: Vec<String> = self.dtypes.iter().map(|(k, v)| format!("{k} × {v}")).collect();
        write!(f, "dtypes      {}", d.join(", "))
    }
}

/// `x` scaled to the largest unit below it, e.g. `11.90 B` or `1.9 MiB`.
fn human(mut x: f64, step: f64, units: &[&str]) -> String {
    let mut i = 0;
    while x >= step && i + 1 < units.len() {
        x /= step;
        i += 1;
    }
    format!("{x:.2}{}", units.get(i).unwrap_or(&""))
}

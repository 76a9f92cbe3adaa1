//! Placeholder: the loader is implemented by the checkpoint work (issue 2).
use std::path::{Path, PathBuf};

use super::{CheckpointError, Layout, TensorRef};
use crate::flux::FluxConfig;

/// An opened checkpoint (see the module docs for the contract).
pub struct Checkpoint {
    config: FluxConfig,
    layout: Layout,
    files: Vec<PathBuf>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        Err(CheckpointError::Invalid { path: path.to_path_buf(), message: "checkpoint loading not implemented yet".into() })
    }
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    /// Canonical names of every tensor, sorted.
    pub fn names(&self) -> Vec<String> {
        Vec::new()
    }
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>, CheckpointError> {
        Err(CheckpointError::Missing { name: name.to_string() })
    }
    /// The members of a fused group (`FluxConfig::fused_groups`) stacked by rows, for `suffix`
    /// `weight` or `bias`.
    pub fn fused(&self, group: &crate::flux::FusedGroup, suffix: &str) -> Result<TensorRef<'_>, CheckpointError> {
        Err(CheckpointError::Missing { name: format!("{}.{suffix}", group.name) })
    }
}

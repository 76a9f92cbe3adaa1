//! Without the `tensorrt` feature: the same API, every call returns [`TrtError::NotCompiled`].

use std::path::Path;

use super::{SessionOptions, TrtError};
use crate::lora::Adapter;
use crate::manifest::Manifest;
use crate::runtime::{AdapterLabel, FluxInputs, HostTensor};

/// Placeholder: cannot be constructed without the `tensorrt` feature.
#[derive(Debug)]
pub struct TrtSession {
    manifest: Manifest,
}

impl TrtSession {
    pub fn open(_dir: &Path, _opts: &SessionOptions) -> Result<Self, TrtError> {
        Err(TrtError::NotCompiled)
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn version(&self) -> u64 {
        0
    }
    pub fn adapters(&self) -> &[AdapterLabel] {
        &[]
    }
    pub fn gpu(&self) -> &str {
        ""
    }
    pub fn is_poisoned(&self) -> bool {
        false
    }
    pub fn run(&mut self, _inputs: &FluxInputs) -> Result<HostTensor, TrtError> {
        Err(TrtError::NotCompiled)
    }
    pub fn swap(&mut self, _adapters: &[(&Adapter, f32)]) -> Result<u64, TrtError> {
        Err(TrtError::NotCompiled)
    }
}

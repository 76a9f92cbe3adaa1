//! Without the `tensorrt` feature: the same API, every call returns [`TrtError::NotCompiled`].

use std::path::Path;

use super::{SessionOptions, TrtError};
use crate::lora::Adapter;
use crate::manifest::Manifest;
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::{FluxInputs, HostTensor, RequestInputs, Slotted, SwapReport, Transformer};

/// Placeholder: cannot be constructed without the `tensorrt` feature.
#[derive(Debug)]
pub struct TrtSession {
    manifest: Manifest,
    active: ActiveSlots<TrtSlots>,
}

/// Placeholder slot set.
#[derive(Debug)]
pub struct TrtSlots;
/// Placeholder staged set.
#[derive(Debug)]
pub struct TrtStaged;
/// Placeholder bound request.
#[derive(Debug)]
pub struct TrtBound;

impl TrtSession {
    pub fn open(_dir: &Path, _opts: &SessionOptions) -> Result<Self, TrtError> {
        Err(TrtError::NotCompiled)
    }
    pub fn version(&self) -> u64 {
        0
    }
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        Vec::new()
    }
    pub fn gpu(&self) -> &str {
        ""
    }
    pub fn is_poisoned(&self) -> bool {
        false
    }
    pub fn run(&self, _inputs: &FluxInputs) -> crate::Result<HostTensor> {
        Err(TrtError::NotCompiled.into())
    }
}

impl Slotted for TrtSession {
    type Slots = TrtSlots;
    type Staged = TrtStaged;
    fn stage(&self, _adapters: &[(&Adapter, f32)]) -> crate::Result<TrtStaged> {
        Err(TrtError::NotCompiled.into())
    }
    fn install(&self, _staged: &TrtStaged) -> crate::Result<SwapReport> {
        Err(TrtError::NotCompiled.into())
    }
    fn lease(&self) -> Lease<TrtSlots> {
        self.active.lease()
    }
}

impl Transformer for TrtSession {
    type Bound = TrtBound;
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn bind(&self, _request: &RequestInputs<'_>) -> crate::Result<TrtBound> {
        Err(TrtError::NotCompiled.into())
    }
    fn step(&self, _lease: &Lease<TrtSlots>, _bound: &mut TrtBound, _latents: &[f32], _timestep: f32, _out: &mut [f32]) -> crate::Result<()> {
        Err(TrtError::NotCompiled.into())
    }
}

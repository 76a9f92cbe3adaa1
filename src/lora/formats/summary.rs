//! A serialisable overview of a loaded adapter (`flux-trt inspect`).

use std::path::PathBuf;

use serde::Serialize;

use crate::lora::{Adapter, LoraFormat};

/// One transformer module of an adapter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModuleSummary {
    /// Canonical (diffusers) module name.
    pub module: String,
    pub rank: usize,
    /// The file's scaling (alpha/rank, alpha/√rank, or 1).
    pub scale: f32,
    pub in_features: usize,
    pub out_features: usize,
}

/// What an adapter file holds, by canonical module.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub source: PathBuf,
    pub format: LoraFormat,
    pub max_rank: usize,
    pub modules: Vec<ModuleSummary>,
    /// CLIP-L text-encoder modules in the file (kept, not applied to the transformer).
    pub text_encoder_modules: usize,
}

impl Adapter {
    /// The adapter's format and per-module rank, scale and shape.
    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary {
            name: self.name.clone(),
            source: self.source.clone(),
            format: self.format,
            max_rank: self.max_rank(),
            modules: self
                .modules
                .iter()
                .map(|(name, m)| ModuleSummary {
                    module: name.clone(),
                    rank: m.rank(),
                    scale: m.scale,
                    in_features: m.in_features(),
                    out_features: m.out_features(),
                })
                .collect(),
            text_encoder_modules: self.text_encoder.len(),
        }
    }
}

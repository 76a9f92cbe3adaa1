//! What a parse or a build found, for the CLI, the device scripts (JSON) and the tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::manifest::EngineArtifact;

/// A network input or output as TensorRT parsed it (`-1` = dynamic dimension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTensor {
    pub name: String,
    pub dims: Vec<i64>,
    /// TensorRT data type, e.g. `FLOAT`.
    pub dtype: String,
}

/// The parsed network (TensorRT's ONNX parser), before any build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    pub layers: usize,
    /// Layer count by TensorRT layer type (`ATTENTION_INPUT`, `MATRIX_MULTIPLY`, ...).
    pub layer_counts: BTreeMap<String, usize>,
    pub inputs: Vec<NetworkTensor>,
    pub outputs: Vec<NetworkTensor>,
    /// Weights marked refittable (every LoRA slot A and B), as confirmed by
    /// `areWeightsMarkedRefittable`, in manifest order.
    pub refittable: Vec<String>,
    /// Attentions set decomposable (fallback to unfused kernels where no fused one exists).
    pub decomposable_attention: usize,
}

impl NetworkReport {
    pub fn count(&self, layer_type: &str) -> usize {
        self.layer_counts.get(layer_type).copied().unwrap_or(0)
    }
    /// `IAttention` layers appear as one `ATTENTION_INPUT` + one `ATTENTION_OUTPUT` each.
    pub fn attention_layers(&self) -> usize {
        self.count("ATTENTION_INPUT")
    }
    pub fn quantize_layers(&self) -> usize {
        self.count("QUANTIZE")
    }
    pub fn dequantize_layers(&self) -> usize {
        self.count("DEQUANTIZE")
    }
}

/// Result of [`super::build`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EngineReport {
    pub plan_path: PathBuf,
    pub plan_bytes: u64,
    /// What was written into `manifest.json` as `engine`.
    pub engine: EngineArtifact,
    pub network: NetworkReport,
    pub parse_seconds: f64,
    pub build_seconds: f64,
}

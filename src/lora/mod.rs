//! LoRA adapters: every Flux LoRA file format mapped onto canonical (diffusers-named)
//! per-module factors `(A, B, scale)`, and the slot plan that lays adapters into
//! fixed-shape, zero-padded slots.
//!
//! `ΔW = scale · B · A` with `A: [r, in]` (down) and `B: [out, r]` (up); `scale` is the
//! file's own scaling (alpha/r, alpha/√r for rsLoRA, 1 where the format has none) and never
//! includes the user's strength, which is applied when an adapter is laid into slots.

pub mod error;
pub mod formats;
pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use error::LoraError;
pub use formats::{detect_format, load, load_bytes, load_with_name, AdapterSummary, ModuleSummary};
pub use plan::{PlanError, Slot, SlotFill, SlotImage, SlotLayout, SlotPlan, SlotTarget, SlotWeights};

use crate::tensor::Matrix;

/// The on-disk convention an adapter file was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoraFormat {
    /// diffusers / PEFT (`transformer.<module>.lora_A.weight`), also ai-toolkit.
    Peft,
    /// kohya sd-scripts (`lora_unet_<bfl_path>.lora_down.weight` + `.alpha`).
    Kohya,
    /// BFL / ComfyUI names (`diffusion_model.<bfl>.lora_A/B` or `.lora_down/up`).
    BflComfy,
    /// XLabs (`double_blocks.N.processor.qkv_lora1.down.weight`).
    XLabs,
}

impl LoraFormat {
    pub fn name(self) -> &'static str {
        match self {
            LoraFormat::Peft => "diffusers/peft",
            LoraFormat::Kohya => "kohya",
            LoraFormat::BflComfy => "bfl/comfyui",
            LoraFormat::XLabs => "xlabs",
        }
    }
}

impl std::fmt::Display for LoraFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One module's low-rank update.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraModule {
    /// Down projection `[rank, in_features]`.
    pub a: Matrix,
    /// Up projection `[out_features, rank]`.
    pub b: Matrix,
    /// The file's scaling: alpha/rank (PEFT, kohya), alpha/√rank (rsLoRA), or 1.
    pub scale: f32,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.a.rows
    }
    pub fn in_features(&self) -> usize {
        self.a.cols
    }
    pub fn out_features(&self) -> usize {
        self.b.rows
    }
    /// `scale · B · A`, `[out, in]`.
    pub fn delta(&self) -> Matrix {
        let mut d = self.b.matmul(&self.a).expect("LoraModule invariant: B.cols == A.rows");
        d.scale(self.scale);
        d
    }
}

/// A loaded adapter file.
#[derive(Clone, Debug)]
pub struct Adapter {
    /// Display name (file stem unless given).
    pub name: String,
    pub source: PathBuf,
    pub format: LoraFormat,
    /// Transformer modules by canonical (diffusers) name, e.g. `transformer_blocks.0.attn.to_q`.
    pub modules: BTreeMap<String, LoraModule>,
    /// CLIP-L text-encoder modules (`text_model.encoder.layers.N.self_attn.q_proj`, ...), kept
    /// for the text-encoder export; not used by the transformer slots.
    pub text_encoder: BTreeMap<String, LoraModule>,
}

impl Adapter {
    /// Largest rank over the transformer modules (0 for an empty adapter).
    pub fn max_rank(&self) -> usize {
        self.modules.values().map(LoraModule::rank).max().unwrap_or(0)
    }
}

/// Splits an adapter argument `FILE[:STRENGTH]` (the `--lora` form of every flux-trt command and
/// of prompt files) into the file and its strength (1 when absent). A suffix after the last `:`
/// that is not a number belongs to the file name (`C:dir/a.safetensors` is a file); a strength
/// that is not finite, or a strength without a file, is an error.
pub fn parse_spec(spec: &str) -> Result<(PathBuf, f32), LoraError> {
    if let Some((file, strength)) = spec.rsplit_once(':') {
        if let Ok(v) = strength.parse::<f32>() {
            if !v.is_finite() {
                return Err(LoraError::Spec { spec: spec.into(), problem: "the strength is not a finite number" });
            }
            if file.is_empty() {
                return Err(LoraError::Spec { spec: spec.into(), problem: "no file before the strength" });
            }
            return Ok((PathBuf::from(file), v));
        }
    }
    Ok((PathBuf::from(spec), 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_splits_file_and_strength() {
        assert_eq!(parse_spec("a.safetensors").unwrap(), (PathBuf::from("a.safetensors"), 1.0));
        assert_eq!(parse_spec("a.safetensors:0.5").unwrap(), (PathBuf::from("a.safetensors"), 0.5));
        assert_eq!(parse_spec("C:dir/a.safetensors").unwrap(), (PathBuf::from("C:dir/a.safetensors"), 1.0));
        assert_eq!(parse_spec("dir:v2/a.safetensors:1.5").unwrap(), (PathBuf::from("dir:v2/a.safetensors"), 1.5));
        assert_eq!(parse_spec("x:-1").unwrap(), (PathBuf::from("x"), -1.0));
        for bad in ["x:nan", "x:inf", "x:-inf", ":0.5"] {
            let e = parse_spec(bad).expect_err(bad);
            assert!(matches!(&e, LoraError::Spec { spec, .. } if spec == bad), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

//! diffusers folders: `config.json`, the weight files (single or sharded with an index) and
//! the check that `config.json` agrees with the tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CheckpointError;
use crate::flux::FluxConfig;

pub(crate) const CONFIG: &str = "config.json";
const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
const INDEX: &str = "diffusion_pytorch_model.safetensors.index.json";

/// `FluxTransformer2DModel` config.json. Absent keys take diffusers' constructor defaults, as
/// diffusers itself does.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DiffusersConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    #[serde(default = "one")]
    pub patch_size: usize,
    #[serde(default = "d64")]
    pub in_channels: usize,
    /// `null` / absent means "same as in_channels".
    #[serde(default)]
    pub out_channels: Option<usize>,
    #[serde(default = "d19")]
    pub num_layers: usize,
    #[serde(default = "d38")]
    pub num_single_layers: usize,
    #[serde(default = "d128")]
    pub attention_head_dim: usize,
    #[serde(default = "d24")]
    pub num_attention_heads: usize,
    #[serde(default = "d4096")]
    pub joint_attention_dim: usize,
    #[serde(default = "d768")]
    pub pooled_projection_dim: usize,
    #[serde(default)]
    pub guidance_embeds: bool,
    #[serde(default = "axes")]
    pub axes_dims_rope: Vec<usize>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn one() -> usize {
    1
}
fn d64() -> usize {
    64
}
fn d19() -> usize {
    19
}
fn d38() -> usize {
    38
}
fn d128() -> usize {
    128
}
fn d24() -> usize {
    24
}
fn d4096() -> usize {
    4096
}
fn d768() -> usize {
    768
}
fn axes() -> Vec<usize> {
    vec![16, 56, 56]
}

/// A resolved diffusers transformer folder.
pub(crate) struct Folder {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub config: DiffusersConfig,
    /// Weight files, in index order (sorted shard names) or the single file.
    pub files: Vec<PathBuf>,
    /// The index file and its `weight_map`, when sharded.
    pub index: Option<ShardIndex>,
}

/// A shard index file and its `weight_map` (stored name → shard file name).
pub(crate) type ShardIndex = (PathBuf, BTreeMap<String, String>);

/// Finds `config.json` in `dir` or in `dir/transformer` (a pipeline root), then the weights.
pub(crate) fn resolve(dir: &Path) -> Result<Folder, CheckpointError> {
    let dir = if dir.join(CONFIG).is_file() {
        dir.to_path_buf()
    } else if dir.join("transformer").join(CONFIG).is_file() {
        dir.join("transformer")
    } else {
        return Err(CheckpointError::NoConfig { path: dir.to_path_buf() });
    };
    let config_path = dir.join(CONFIG);
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| CheckpointError::from(crate::util::FileError::new(crate::util::FileOp::Read, &config_path, e)))?;
    let config: DiffusersConfig =
        serde_json::from_str(&text).map_err(|e| CheckpointError::Config { path: config_path.clone(), message: format!("invalid config.json: {e}") })?;
    let (files, index) = weight_files(&dir)?;
    Ok(Folder { dir, config_path, config, files, index })
}

fn weight_files(dir: &Path) -> Result<(Vec<PathBuf>, Option<ShardIndex>), CheckpointError> {
    let index_path = dir.join(INDEX);
    if index_path.is_file() {
        let (files, weight_map) = super::component::read_shard_index(&index_path, dir)?;
        return Ok((files, Some((index_path, weight_map))));
    }
    let single = dir.join(WEIGHTS);
    if single.is_file() {
        return Ok((vec![single], None));
    }
    Err(CheckpointError::Invalid { path: dir.to_path_buf(), message: format!("diffusers folder has neither {WEIGHTS} nor {INDEX}") })
}

/// The RoPE axes from config.json, checked to be three values.
pub(crate) fn axes_dim(path: &Path, c: &DiffusersConfig) -> Result<[usize; 3], CheckpointError> {
    <[usize; 3]>::try_from(c.axes_dims_rope.as_slice())
        .map_err(|_| CheckpointError::Config { path: path.to_path_buf(), message: format!("axes_dims_rope {:?}: expected three values", c.axes_dims_rope) })
}

/// Errors when config.json contradicts the configuration inferred from tensor shapes.
pub(crate) fn check_config(path: &Path, c: &DiffusersConfig, t: &FluxConfig) -> Result<(), CheckpointError> {
    let bad = |message: String| Err(CheckpointError::Config { path: path.to_path_buf(), message });
    if let Some(class) = &c.class_name {
        if class != "FluxTransformer2DModel" {
            return bad(format!("_class_name is `{class}`, expected FluxTransformer2DModel"));
        }
    }
    if c.patch_size != 1 {
        return bad(format!("patch_size {} is not supported (FLUX.1 uses 1)", c.patch_size));
    }
    for k in c.extra.keys().filter(|k| !k.starts_with('_')) {
        tracing::warn!(path = %path.display(), key = %k, "config.json key not used by flux-trt");
    }
    let out_channels = c.out_channels.unwrap_or(c.in_channels);
    if c.guidance_embeds != t.variant.has_guidance() {
        return bad(format!(
            "config.json says guidance_embeds = {}, but the tensors {} a guidance embedder",
            c.guidance_embeds,
            if t.variant.has_guidance() { "have" } else { "lack" }
        ));
    }
    let checks: [(&str, usize, usize); 8] = [
        ("in_channels", c.in_channels, t.in_channels),
        ("out_channels", out_channels, t.out_channels),
        ("num_layers", c.num_layers, t.num_double_blocks),
        ("num_single_layers", c.num_single_layers, t.num_single_blocks),
        ("attention_head_dim", c.attention_head_dim, t.head_dim),
        ("num_attention_heads", c.num_attention_heads, t.num_heads),
        ("joint_attention_dim", c.joint_attention_dim, t.context_dim),
        ("pooled_projection_dim", c.pooled_projection_dim, t.pooled_dim),
    ];
    for (key, said, found) in checks {
        if said != found {
            return bad(format!("config.json says {key} = {said}, but the tensors give {found}"));
        }
    }
    let sum: usize = t.axes_dim.iter().sum();
    if sum != t.head_dim || t.axes_dim.iter().any(|a| a % 2 != 0) {
        return bad(format!("axes_dims_rope {:?} must be even and sum to head_dim {}", t.axes_dim, t.head_dim));
    }
    Ok(())
}

/// Checks the shard index against the shards' actual contents (`found`: stored name → shard
/// file path): every listed tensor is in the listed shard and every stored tensor is listed.
pub(crate) fn check_index(index_path: &Path, weight_map: &BTreeMap<String, String>, found: &BTreeMap<String, PathBuf>) -> Result<(), CheckpointError> {
    for (name, shard) in weight_map {
        match found.get(name) {
            Some(p) if p.file_name().is_some_and(|f| f == shard.as_str()) => {}
            Some(p) => {
                return Err(CheckpointError::Invalid {
                    path: index_path.to_path_buf(),
                    message: format!("tensor `{name}` is listed in {shard} but stored in {}", p.display()),
                })
            }
            None => {
                return Err(CheckpointError::MissingTensor {
                    path: index_path.parent().unwrap_or(index_path).join(shard),
                    tensor: name.clone(),
                    canonical: name.clone(),
                })
            }
        }
    }
    if let Some((name, p)) = found.iter().find(|(n, _)| !weight_map.contains_key(*n)) {
        return Err(CheckpointError::UnknownKey { path: p.clone(), key: name.clone(), message: format!("not listed in {}", index_path.display()) });
    }
    Ok(())
}

//! Layout detection (BFL vs diffusers names, optional `model.diffusion_model.` prefix) and
//! inference of [`FluxConfig`] from the shapes of a few probe tensors.
//!
//! Only the probe tensors' dimensions are read here; every parameter's full shape is checked
//! afterwards against [`FluxConfig::parameter_shapes`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::mapped::RawTensor;
use super::{CheckpointError, Layout};
use crate::flux::{FluxConfig, Variant};

/// Prefix of BFL keys inside ComfyUI / original-repo full checkpoints.
pub(crate) const BFL_PREFIX: &str = "model.diffusion_model.";

const BFL_ROOTS: &[&str] = &["img_in", "txt_in", "time_in", "vector_in", "guidance_in", "double_blocks", "single_blocks", "final_layer"];
const DIFFUSERS_ROOTS: &[&str] =
    &["x_embedder", "context_embedder", "time_text_embed", "transformer_blocks", "single_transformer_blocks", "norm_out", "proj_out"];

/// Result of [`classify`]: the layout and the prefix every key carries ("" when none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyStyle {
    pub layout: Layout,
    pub prefix: &'static str,
}

/// Decides the layout from the stored key names. Errors: no FLUX key at all (`NotFlux`), both
/// layouts (`MixedLayout`), a key outside the layout or lacking the common prefix (`UnknownKey`).
pub(crate) fn classify<'a>(path: &Path, names: impl IntoIterator<Item = &'a str>) -> Result<KeyStyle, CheckpointError> {
    let names: Vec<&str> = names.into_iter().collect();
    let prefix = if names.iter().any(|n| n.starts_with(BFL_PREFIX)) { BFL_PREFIX } else { "" };
    let (mut bfl, mut diff, mut unknown) = (None, None, None);
    for &name in &names {
        let Some(stripped) = name.strip_prefix(prefix) else {
            unknown.get_or_insert((name, format!("other keys carry the `{prefix}` prefix")));
            continue;
        };
        let root = stripped.split('.').next().unwrap_or_default();
        if BFL_ROOTS.contains(&root) {
            bfl.get_or_insert(name);
        } else if DIFFUSERS_ROOTS.contains(&root) {
            diff.get_or_insert(name);
        } else {
            unknown.get_or_insert((name, "not a FLUX.1 transformer parameter".to_string()));
        }
    }
    let layout = match (bfl, diff) {
        (Some(b), Some(d)) => return Err(CheckpointError::MixedLayout { path: path.to_path_buf(), bfl_key: b.into(), diffusers_key: d.into() }),
        (Some(_), None) => Layout::Bfl,
        (None, Some(_)) => Layout::Diffusers,
        (None, None) => {
            let first = names.first().map_or("(no tensors)".to_string(), |n| format!("first key `{n}`"));
            return Err(CheckpointError::NotFlux { path: path.to_path_buf(), message: format!("no BFL or diffusers FLUX.1 transformer keys ({first})") });
        }
    };
    if let Some((key, message)) = unknown {
        return Err(CheckpointError::UnknownKey { path: path.to_path_buf(), key: key.into(), message });
    }
    if layout == Layout::Diffusers && !prefix.is_empty() {
        let key = names.iter().find(|n| n.starts_with(prefix)).copied().unwrap_or_default();
        return Err(CheckpointError::UnknownKey {
            path: path.to_path_buf(),
            key: key.into(),
            message: format!("diffusers-named keys do not take the `{prefix}` prefix"),
        });
    }
    Ok(KeyStyle { layout, prefix })
}

/// Names (without prefix) of the tensors whose shapes determine the configuration.
struct Probes {
    x_embedder: &'static str,
    context: &'static str,
    pooled: &'static str,
    proj_out: &'static str,
    guidance_root: &'static str,
    double: &'static str,
    single: &'static str,
    double_norm_q: &'static str,
    single_norm_q: &'static str,
    double_mlp_in: &'static str,
    /// Single-block tensor whose rows give the MLP width, and how many `hidden` rows to subtract.
    single_mlp_in: (&'static str, usize),
}

const BFL_PROBES: Probes = Probes {
    x_embedder: "img_in.weight",
    context: "txt_in.weight",
    pooled: "vector_in.in_layer.weight",
    proj_out: "final_layer.linear.weight",
    guidance_root: "guidance_in.",
    double: "double_blocks",
    single: "single_blocks",
    double_norm_q: "img_attn.norm.query_norm.scale",
    single_norm_q: "norm.query_norm.scale",
    double_mlp_in: "img_mlp.0.weight",
    single_mlp_in: ("linear1.weight", 3),
};

const DIFFUSERS_PROBES: Probes = Probes {
    x_embedder: "x_embedder.weight",
    context: "context_embedder.weight",
    pooled: "time_text_embed.text_embedder.linear_1.weight",
    proj_out: "proj_out.weight",
    guidance_root: "time_text_embed.guidance_embedder.",
    double: "transformer_blocks",
    single: "single_transformer_blocks",
    double_norm_q: "attn.norm_q.weight",
    single_norm_q: "attn.norm_q.weight",
    double_mlp_in: "ff.net.0.proj.weight",
    single_mlp_in: ("proj_mlp.weight", 0),
};

/// Stripped-name view of the raw tensors used while inferring the configuration.
pub(crate) struct KeyView<'a> {
    pub tensors: &'a BTreeMap<String, RawTensor>,
    pub style: KeyStyle,
    /// File names by `RawTensor::file`, and the path reported for absent tensors.
    pub files: &'a [std::path::PathBuf],
    pub source: &'a Path,
}

impl KeyView<'_> {
    fn stored(&self, key: &str) -> String {
        format!("{}{key}", self.style.prefix)
    }
    fn get(&self, key: &str) -> Result<&RawTensor, CheckpointError> {
        self.tensors.get(&self.stored(key)).ok_or_else(|| CheckpointError::MissingTensor {
            path: self.source.to_path_buf(),
            tensor: self.stored(key),
            canonical: self.stored(key),
        })
    }
    fn file_of(&self, t: &RawTensor) -> std::path::PathBuf {
        self.files.get(t.file).cloned().unwrap_or_else(|| self.source.to_path_buf())
    }
    /// Dimensions of a tensor that must have `rank` dims, none of them zero.
    fn dims(&self, key: &str, rank: usize) -> Result<Vec<usize>, CheckpointError> {
        let t = self.get(key)?;
        if t.shape.len() != rank || t.shape.contains(&0) {
            return Err(CheckpointError::Tensor {
                path: self.file_of(t),
                tensor: self.stored(key),
                message: format!("shape {:?}: expected {rank} non-zero dimensions", t.shape),
            });
        }
        Ok(t.shape.clone())
    }
    /// Number of blocks `root.<i>.…`; indices must be exactly `0..n`.
    fn block_count(&self, root: &str, probe: &str) -> Result<usize, CheckpointError> {
        let head = format!("{}{root}.", self.style.prefix);
        let mut seen = BTreeSet::new();
        for name in self.tensors.keys().filter(|n| n.starts_with(&head)) {
            let idx = name[head.len()..].split('.').next().and_then(|s| s.parse::<usize>().ok());
            match idx {
                Some(i) => seen.insert(i),
                None => {
                    return Err(CheckpointError::UnknownKey {
                        path: self.source.to_path_buf(),
                        key: name.clone(),
                        message: format!("`{root}.` must be followed by a block index"),
                    })
                }
            };
        }
        if let Some(gap) = (0..seen.len()).find(|i| !seen.contains(i)) {
            return Err(self
                .get(&format!("{root}.{gap}.{probe}"))
                .err()
                .unwrap_or_else(|| CheckpointError::Invalid { path: self.source.to_path_buf(), message: format!("block `{root}.{gap}` is absent") }));
        }
        Ok(seen.len())
    }
}

/// Infers the configuration. `axes_dim` comes from `config.json` when there is one; otherwise
/// [`FluxConfig::default_axes_dim`] (BFL files and single diffusers files carry no RoPE config).
pub(crate) fn infer_config(view: &KeyView<'_>, axes_dim: Option<[usize; 3]>) -> Result<FluxConfig, CheckpointError> {
    let p = match view.style.layout {
        Layout::Bfl => &BFL_PROBES,
        Layout::Diffusers => &DIFFUSERS_PROBES,
    };
    let x = view.dims(p.x_embedder, 2)?;
    let (hidden, in_channels) = (x[0], x[1]);
    let num_double = view.block_count(p.double, p.double_norm_q)?;
    let num_single = view.block_count(p.single, p.single_norm_q)?;
    let norm_q = match (num_double, num_single) {
        (0, 0) => {
            return Err(CheckpointError::NotFlux {
                path: view.source.to_path_buf(),
                message: format!("no `{}.N` or `{}.N` transformer blocks", p.double, p.single),
            })
        }
        (0, _) => format!("{}.0.{}", p.single, p.single_norm_q),
        _ => format!("{}.0.{}", p.double, p.double_norm_q),
    };
    let head_dim = view.dims(&norm_q, 1)?[0];
    if hidden % head_dim != 0 {
        return Err(CheckpointError::Tensor {
            path: view.file_of(view.get(&norm_q)?),
            tensor: view.stored(&norm_q),
            message: format!("head_dim {head_dim} does not divide the hidden size {hidden}"),
        });
    }
    let mlp_hidden = if num_double > 0 {
        view.dims(&format!("{}.0.{}", p.double, p.double_mlp_in), 2)?[0]
    } else {
        let key = format!("{}.0.{}", p.single, p.single_mlp_in.0);
        let rows = view.dims(&key, 2)?[0];
        rows.checked_sub(p.single_mlp_in.1 * hidden).filter(|m| *m > 0).ok_or_else(|| CheckpointError::Tensor {
            path: view.source.to_path_buf(),
            tensor: view.stored(&key),
            message: format!("{rows} rows leave no MLP rows after {} × hidden {hidden}", p.single_mlp_in.1),
        })?
    };
    let context_dim = view.dims(p.context, 2)?[1];
    let pooled_dim = view.dims(p.pooled, 2)?[1];
    let out_channels = view.dims(p.proj_out, 2)?[0];
    let guidance_root = format!("{}{}", view.style.prefix, p.guidance_root);
    let guidance = view.tensors.keys().any(|k| k.starts_with(&guidance_root));
    let variant = match (guidance, in_channels) {
        (false, _) => Variant::Schnell,
        (true, 384) => Variant::Fill,
        (true, 128) => Variant::Control,
        (true, _) => Variant::Dev,
    };
    let axes_dim = match axes_dim.or_else(|| FluxConfig::default_axes_dim(head_dim)) {
        Some(a) => a,
        None => {
            return Err(CheckpointError::Tensor {
                path: view.file_of(view.get(&norm_q)?),
                tensor: view.stored(&norm_q),
                message: format!(
                    "head_dim {head_dim} has no default RoPE axes split (d/8, 7d/16, 7d/16); use a diffusers folder whose config.json sets axes_dims_rope"
                ),
            })
        }
    };
    Ok(FluxConfig {
        variant,
        hidden_size: hidden,
        num_heads: hidden / head_dim,
        head_dim,
        num_double_blocks: num_double,
        num_single_blocks: num_single,
        in_channels,
        out_channels,
        context_dim,
        pooled_dim,
        mlp_hidden,
        axes_dim,
        rope_theta: 10_000,
    })
}

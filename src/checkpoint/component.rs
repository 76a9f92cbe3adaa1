//! Other pipeline components (CLIP-L / T5 text encoders, the VAE): a Hugging Face model folder
//! (`config.json` + `model.safetensors` / `diffusion_pytorch_model.safetensors`, or shards listed
//! in `*.safetensors.index.json`), memory-mapped, tensors under their stored names.
//!
//! Unlike [`super::Checkpoint`] this knows no architecture: the exporter of each component
//! asks for the tensors it needs and gets [`CheckpointError::MissingTensor`] /
//! [`CheckpointError::Shape`] naming the file when one is absent or has the wrong shape.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::mapped::{map_file, MappedFile};
use super::{CheckpointError, TensorRef};
use crate::tensor::DType;

/// Weight file names tried, in order (transformers, then diffusers naming).
const SINGLE: [&str; 2] = ["model.safetensors", "diffusion_pytorch_model.safetensors"];

#[derive(Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

/// A component folder's config and mapped weights.
pub struct ComponentWeights {
    dir: PathBuf,
    config_path: PathBuf,
    config: serde_json::Value,
    files: Vec<MappedFile>,
    /// Stored name → index into `files`.
    index: BTreeMap<String, usize>,
}

impl std::fmt::Debug for ComponentWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentWeights").field("dir", &self.dir).field("tensors", &self.index.len()).finish()
    }
}

impl ComponentWeights {
    /// Opens `dir` (e.g. `text_encoder/`, `vae/`): reads `config.json`, maps every weight file.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(CheckpointError::NoConfig { path: dir.to_path_buf() });
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| CheckpointError::from(crate::util::FileError::new(crate::util::FileOp::Read, &config_path, e)))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Config { path: config_path.clone(), message: format!("invalid config.json: {e}") })?;
        let paths = weight_files(dir)?;
        let mut files = Vec::with_capacity(paths.len());
        let mut index = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            let f = map_file(p, i)?;
            for (name, t) in &f.tensors {
                if DType::from_safetensors(t.dtype).is_none() {
                    return Err(CheckpointError::DType { path: p.clone(), tensor: name.clone(), dtype: format!("{:?}", t.dtype) });
                }
                if let Some(prev) = index.insert(name.clone(), i) {
                    return Err(CheckpointError::Invalid { path: p.clone(), message: format!("tensor `{name}` is also stored in {}", paths[prev].display()) });
                }
            }
            files.push(f);
        }
        Ok(ComponentWeights { dir: dir.to_path_buf(), config_path, config, files, index })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    /// The parsed `config.json`.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }
    /// Weight files, in the order they were mapped.
    pub fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
    /// Stored tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
    /// Total bytes of all stored tensors.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().flat_map(|f| f.tensors.values()).map(|t| (t.end - t.start) as u64).sum()
    }

    /// The tensor stored as `name`; errors name the folder (missing) or the file.
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>, CheckpointError> {
        let missing = || CheckpointError::MissingTensor { path: self.dir.clone(), tensor: name.to_string(), canonical: name.to_string() };
        let i = *self.index.get(name).ok_or_else(missing)?;
        let f = self.files.get(i).ok_or_else(missing)?;
        let t = f.tensors.get(name).ok_or_else(missing)?;
        let dtype = DType::from_safetensors(t.dtype).ok_or_else(|| CheckpointError::DType {
            path: f.path.clone(),
            tensor: name.to_string(),
            dtype: format!("{:?}", t.dtype),
        })?;
        let bytes = f.map.get(t.start..t.end).ok_or_else(|| CheckpointError::Tensor {
            path: f.path.clone(),
            tensor: name.to_string(),
            message: format!("byte range {}..{} outside the mapped file", t.start, t.end),
        })?;
        Ok(TensorRef { name: name.to_string(), dtype, shape: t.shape.clone(), parts: vec![bytes] })
    }

    /// [`Self::tensor`], checked to have `shape`.
    pub fn tensor_shaped(&self, name: &str, shape: &[usize]) -> Result<TensorRef<'_>, CheckpointError> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            return Err(CheckpointError::Shape { path: self.file_of(name), tensor: name.to_string(), expected: shape.to_vec(), found: t.shape });
        }
        Ok(t)
    }

    /// The file that stores `name` (the folder if none does).
    pub fn file_of(&self, name: &str) -> PathBuf {
        self.index.get(name).and_then(|&i| self.files.get(i)).map(|f| f.path.clone()).unwrap_or_else(|| self.dir.clone())
    }
}

/// A shard index (`*.safetensors.index.json`): its shard files in `dir` (sorted, deduplicated,
/// plain file names only) and its `weight_map` (stored name → shard file name).
pub(crate) fn read_shard_index(index_path: &Path, dir: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>), CheckpointError> {
    let text = std::fs::read_to_string(index_path).map_err(|e| CheckpointError::from(crate::util::FileError::new(crate::util::FileOp::Read, index_path, e)))?;
    let index: IndexFile =
        serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid { path: index_path.to_path_buf(), message: format!("invalid shard index: {e}") })?;
    let mut shards: Vec<&String> = index.weight_map.values().collect();
    shards.sort();
    shards.dedup();
    let mut files = Vec::new();
    for shard in shards {
        let plain = !shard.is_empty() && Path::new(shard).components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(CheckpointError::Invalid {
                path: index_path.to_path_buf(),
                message: format!("shard name `{shard}` is not a plain file name in this folder"),
            });
        }
        files.push(dir.join(shard));
    }
    if files.is_empty() {
        return Err(CheckpointError::Invalid { path: index_path.to_path_buf(), message: "empty weight_map".into() });
    }
    Ok((files, index.weight_map))
}

/// The weight files of `dir`: a shard index's files, or the single file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    for single in SINGLE {
        let index_path = dir.join(format!("{single}.index.json"));
        if index_path.is_file() {
            return Ok(read_shard_index(&index_path, dir)?.0);
        }
        if dir.join(single).is_file() {
            return Ok(vec![dir.join(single)]);
        }
    }
    Err(CheckpointError::Invalid { path: dir.to_path_buf(), message: format!("no weights: expected one of {SINGLE:?} or a .index.json") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/flux-tiny")
    }

    #[test]
    fn opens_the_tiny_pipeline_components() {
        let clip = ComponentWeights::open(&pipeline().join("text_encoder")).expect("clip");
        let t = clip.tensor("embeddings.token_embedding.weight").expect("embedding");
        assert_eq!(t.shape, vec![914, 32]);
        assert_eq!(clip.config()["hidden_size"], 32);
        let vae = ComponentWeights::open(&pipeline().join("vae")).expect("vae");
        assert!(vae.contains("decoder.conv_in.weight"));
        let err = vae.tensor_shaped("decoder.conv_in.weight", &[1, 2, 3]).expect_err("wrong shape");
        assert!(matches!(err, CheckpointError::Shape { .. }), "{err}");
        let err = vae.tensor("decoder.nope").expect_err("missing");
        assert!(err.to_string().contains("decoder.nope"), "{err}");
    }

    #[test]
    fn folder_without_config_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ComponentWeights::open(dir.path()).expect_err("no config");
        assert!(matches!(err, CheckpointError::NoConfig { .. }), "{err}");
    }
}

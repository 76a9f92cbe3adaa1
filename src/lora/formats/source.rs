//! One memory-mapped safetensors LoRA file: typed access to its tensors and metadata.
//!
//! Factors are validated (float dtype, 2-D, finite) as they are decoded; nothing here knows
//! about any naming convention.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use crate::lora::LoraError;
use crate::tensor::{decode_into, DType, Matrix};

/// A parsed file: the mmap's tensors plus its `__metadata__`.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    tensors: SafeTensors<'a>,
    metadata: HashMap<String, String>,
    /// Tensor names, sorted (the order safetensors' Python `safe_open.keys()` reports).
    keys: Vec<String>,
}

impl<'a> Source<'a> {
    /// Parses `bytes` (the whole file) as safetensors. A zero-length file or one without tensors
    /// is [`LoraError::Empty`]; a bad or truncated header is [`LoraError::Safetensors`].
    pub fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Self, LoraError> {
        if bytes.is_empty() {
            return Err(LoraError::Empty { path: path.to_path_buf() });
        }
        let bad = |e: safetensors::SafeTensorError| LoraError::Safetensors { path: path.to_path_buf(), message: e.to_string() };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(bad)?;
        if tensors.is_empty() {
            return Err(LoraError::Empty { path: path.to_path_buf() });
        }
        let mut keys: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
        keys.sort();
        Ok(Source { path, tensors, metadata: meta.metadata().clone().unwrap_or_default(), keys })
    }

    pub fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Every tensor name, sorted.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// One `__metadata__` entry.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    fn view(&self, key: &str) -> Result<(safetensors::tensor::TensorView<'a>, DType), LoraError> {
        let view = self.tensors.tensor(key).map_err(|e| LoraError::Safetensors { path: self.path_buf(), message: e.to_string() })?;
        let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| LoraError::UnsupportedDtype {
            path: self.path_buf(),
            tensor: key.to_string(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        Ok((view, dtype))
    }

    fn decode(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>), LoraError> {
        let (view, dtype) = self.view(key)?;
        let mut data = Vec::with_capacity(view.data().len() / dtype.size());
        decode_into(dtype, view.data(), &mut data);
        if data.iter().any(|v| !v.is_finite()) {
            return Err(LoraError::NonFinite { path: self.path_buf(), tensor: key.to_string() });
        }
        Ok((view.shape().to_vec(), data))
    }

    /// A 2-D float tensor as a matrix.
    pub fn matrix(&self, key: &str) -> Result<Matrix, LoraError> {
        let (shape, data) = self.decode(key)?;
        let shape_err = || LoraError::Shape { path: self.path_buf(), tensor: key.to_string(), expected: "a 2-D matrix".into(), found: shape.clone() };
        if shape.len() != 2 || shape.contains(&0) {
            return Err(shape_err());
        }
        Matrix::from_vec(shape[0], shape[1], data).ok_or_else(shape_err)
    }

    /// A float scalar (shape `[]` or `[1]`), e.g. a kohya `.alpha`.
    pub fn scalar(&self, key: &str) -> Result<f64, LoraError> {
        let (shape, data) = self.decode(key)?;
        match data.as_slice() {
            [v] if shape.len() <= 1 => Ok(*v as f64),
            _ => Err(LoraError::Shape { path: self.path_buf(), tensor: key.to_string(), expected: "a scalar".into(), found: shape }),
        }
    }
}

//! The adapter registry: names → `*.safetensors` files inside the one adapter folder. Files are
//! validated against the engine's slots when registered and read again when a set is staged, so
//! a file deleted or corrupted later fails only the requests that use it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use serde::Serialize;

use super::api::ApiError;
use super::engine::{Engine, StageFailure};
use crate::lora::Adapter;

/// One registered adapter, as `GET /v1/adapters` lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AdapterInfo {
    pub name: String,
    /// File name inside the adapter folder.
    pub file: String,
    pub format: String,
    pub modules: usize,
    pub text_encoder_modules: usize,
    pub max_rank: usize,
}

pub(crate) struct Registry {
    /// The adapter folder, canonical.
    dir: PathBuf,
    entries: RwLock<BTreeMap<String, AdapterInfo>>,
}

/// A file name for the folder: one plain component, `*.safetensors`.
pub(crate) fn plain_file(file: &str) -> Result<&Path, ApiError> {
    let p = Path::new(file);
    let mut comps = p.components();
    let ok = matches!((comps.next(), comps.next()), (Some(Component::Normal(_)), None));
    if !ok || file.contains(['/', '\\']) {
        return Err(ApiError::invalid("file", format!("`file` must be a file name inside the adapter folder, got {file:?}")));
    }
    if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(ApiError::invalid("file", format!("`file` must be a .safetensors file, got {file:?}")));
    }
    Ok(p)
}

/// A registered name: letters, digits, `-`, `_`, `.`; 1-128 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(ApiError::invalid("name", format!("adapter name {name:?} must be 1-128 characters of [A-Za-z0-9._-]")));
    }
    Ok(())
}

impl Registry {
    pub(crate) fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Registry { dir: dir.canonicalize()?, entries: RwLock::new(BTreeMap::new()) })
    }

    /// Every `*.safetensors` in the folder, sorted.
    pub(crate) fn scan(&self) -> std::io::Result<Vec<String>> {
        let mut files: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| f.ends_with(".safetensors"))
            .collect();
        files.sort();
        Ok(files)
    }

    fn path_of(&self, file: &str) -> Result<PathBuf, ApiError> {
        let p = self.dir.join(plain_file(file)?);
        let real = p.canonicalize().map_err(|e| ApiError::new(404, "not_found_error", "file_not_found", format!("{file}: {e}")).with_param("file"))?;
        if real.parent() != Some(self.dir.as_path()) {
            return Err(ApiError::invalid("file", format!("{file} resolves outside the adapter folder")));
        }
        Ok(real)
    }

    /// Reads `file` (inside the folder) as adapter `name`.
    fn read(&self, name: &str, file: &str) -> Result<Adapter, ApiError> {
        let path = self.path_of(file)?;
        crate::lora::load_with_name(&path, name)
            .map_err(|e| ApiError::new(422, "invalid_request_error", "adapter_invalid", format!("adapter `{name}`: {e}")).with_param("file"))
    }

    /// Validates `file` against the engine's slots and registers it as `name` (replacing nothing:
    /// a taken name is a 409). Blocking (reads and lays out the adapter).
    pub(crate) fn register(&self, engine: &Engine, name: &str, file: &str) -> Result<AdapterInfo, ApiError> {
        check_name(name)?;
        if self.get(name).is_some() {
            return Err(ApiError::new(409, "invalid_request_error", "adapter_exists", format!("adapter `{name}` is already registered")).with_param("name"));
        }
        let adapter = self.read(name, file)?;
        engine.stage(&[(&adapter, 1.0)]).map_err(|e| match e {
            StageFailure::Incompatible(m) => ApiError::new(422, "invalid_request_error", "adapter_incompatible", m).with_param("file"),
            StageFailure::Backend(m) => ApiError::internal(m),
        })?;
        let info = AdapterInfo {
            name: name.to_string(),
            file: file.to_string(),
            format: adapter.format.name().to_string(),
            modules: adapter.modules.len(),
            text_encoder_modules: adapter.text_encoder.len(),
            max_rank: adapter.max_rank(),
        };
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.contains_key(name) {
            return Err(ApiError::new(409, "invalid_request_error", "adapter_exists", format!("adapter `{name}` is already registered")).with_param("name"));
        }
        entries.insert(name.to_string(), info.clone());
        Ok(info)
    }

    pub(crate) fn remove(&self, name: &str) -> Option<AdapterInfo> {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<AdapterInfo> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub(crate) fn list(&self) -> Vec<AdapterInfo> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Reads a registered adapter's file now (for staging); a missing or broken file is this
    /// request's error.
    pub(crate) fn load(&self, name: &str) -> Result<Adapter, ApiError> {
        let info = self.get(name).ok_or_else(|| ApiError::new(404, "not_found_error", "adapter_not_found", format!("adapter `{name}` is not registered")))?;
        self.read(name, &info.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_safetensors_names() {
        for bad in ["../x.safetensors", "/etc/x.safetensors", "a/b.safetensors", "x.bin", "..", ""] {
            assert_eq!(plain_file(bad).unwrap_err().param.as_deref(), Some("file"), "{bad}");
        }
        assert!(plain_file("style-a.safetensors").is_ok());
        assert!(check_name("style-a_1.0").is_ok());
        assert!(check_name("a b").is_err());
    }
}

//! Without the `tensorrt` feature: the same API, every call returns [`EngineError::NotCompiled`].

use std::path::Path;

use super::report::{EngineReport, NetworkReport};
use super::{BuildOptions, EngineError, TrtLibrary};
use crate::manifest::{ComponentManifest, Manifest};

pub fn inspect_network_with(_dir: &Path, _manifest: &Manifest, _lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    Err(EngineError::NotCompiled)
}

pub fn inspect_component_network_with(_dir: &Path, _manifest: &ComponentManifest, _lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    Err(EngineError::NotCompiled)
}

pub fn build(_dir: &Path, _opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    Err(EngineError::NotCompiled)
}

pub fn build_component(_dir: &Path, _opts: &BuildOptions) -> Result<EngineReport, EngineError> {
    Err(EngineError::NotCompiled)
}

pub fn inspect_onnx(_model: &Path, _lib: &TrtLibrary) -> Result<NetworkReport, EngineError> {
    Err(EngineError::NotCompiled)
}

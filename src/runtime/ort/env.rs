//! Loading `libonnxruntime` and the process-wide ONNX Runtime environment.
//!
//! The library is never downloaded and never searched for: it comes from an explicit path or
//! from `ORT_DYLIB_PATH`. A process holds one library and one environment (an `ort`
//! restriction), so the first successful load fixes the path; asking for another file later
//! is an error rather than a silent reuse.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::ort::environment::Environment;
use ::ort::logging::LogLevel;

use crate::runtime::RuntimeError;

/// Environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

struct Loaded {
    path: PathBuf,
    env: Environment,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// The library to load: `explicit` if given, else `ORT_DYLIB_PATH`; the file must exist.
pub fn library_path(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(ORT_DYLIB_PATH) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => return Err(RuntimeError::NoLibrary),
        },
    };
    if !path.is_file() {
        return Err(RuntimeError::LibraryMissing { path });
    }
    Ok(path)
}

/// The path ONNX Runtime was loaded from in this process, if it was.
pub fn loaded_library() -> Option<PathBuf> {
    LOADED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|l| l.path.clone())
}

/// Loads the library (first call) and returns the process environment.
pub(crate) fn environment(library: &Path) -> Result<Environment, RuntimeError> {
    let requested = library.canonicalize().map_err(|e| RuntimeError::from(crate::util::FileError::new(crate::util::FileOp::Read, library, e)))?;
    let mut guard = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = guard.as_ref() {
        if l.path != requested {
            return Err(RuntimeError::LibraryConflict { loaded: l.path.clone(), requested });
        }
        return Ok(l.env.clone());
    }
    let builder = ::ort::init_from(&requested).map_err(|e| RuntimeError::Library { path: requested.clone(), message: e.to_string() })?;
    let env = builder
        .with_name("flux-trt")
        .with_logger(Arc::new(log_to_tracing))
        .build()
        .map_err(|e| RuntimeError::Library { path: requested.clone(), message: format!("creating the environment failed: {}", e.message()) })?;
    env.set_log_level(LogLevel::Warning);
    tracing::info!(library = %requested.display(), "loaded ONNX Runtime");
    *guard = Some(Loaded { path: requested, env: env.clone() });
    Ok(env)
}

fn log_to_tracing(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    // LoRA slots are overridable initializers by design; ORT warns once per slot tensor.
    let expected = message.contains("appears in graph inputs and will not be treated as constant");
    match level {
        LogLevel::Fatal | LogLevel::Error => tracing::error!(target: "onnxruntime", %category, %location, "{message}"),
        LogLevel::Warning if !expected => tracing::warn!(target: "onnxruntime", %category, %location, "{message}"),
        LogLevel::Warning | LogLevel::Info => tracing::debug!(target: "onnxruntime", %category, %location, "{message}"),
        LogLevel::Verbose => tracing::trace!(target: "onnxruntime", %category, %location, "{message}"),
    }
}

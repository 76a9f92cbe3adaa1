//! The process's TensorRT library and logger (feature `tensorrt`), shared by the builder and
//! the runtime.
//!
//! - [`load`] dlopens the core library and the ONNX parser once per process (through `trtx`)
//!   and reads the library's own version.
//! - [`logger`] is the one `ILogger` of the process (TensorRT keeps a single global logger: a
//!   second, different logger only gets a warning). It forwards every message to `tracing` and
//!   keeps warnings and errors in a bounded buffer; a [`LogScope`] taken before a call returns
//!   what TensorRT said during it, so errors carry TensorRT's own text instead of a bare `false`.
//!   Calls running at the same time on other threads may add their lines to a scope; lines are
//!   never dropped from an error for that reason.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use trtx::{LogHandler, Logger, Severity};

use super::{EngineError, TensorrtFailure, TrtLibrary};

/// Variant name written into `manifest.engine.tensorrt_variant`.
#[cfg(not(feature = "tensorrt-enterprise"))]
pub const VARIANT: &str = "tensorrt-rtx";
#[cfg(feature = "tensorrt-enterprise")]
pub const VARIANT: &str = "tensorrt";

const KEEP: usize = 4096;

struct LogBuffer {
    next: u64,
    lines: VecDeque<(u64, Severity, String)>,
}

static LOG: Mutex<LogBuffer> = Mutex::new(LogBuffer { next: 0, lines: VecDeque::new() });

fn log_buffer() -> std::sync::MutexGuard<'static, LogBuffer> {
    // The buffer is only appended to and read; a panic elsewhere leaves it consistent.
    LOG.lock().unwrap_or_else(|e| e.into_inner())
}

struct Capture;

impl LogHandler for Capture {
    fn log(&self, severity: Severity, message: &str) {
        match severity {
            Severity::InternalError | Severity::Error => tracing::error!(target: "tensorrt", "{message}"),
            Severity::Warning => tracing::warn!(target: "tensorrt", "{message}"),
            Severity::Info => tracing::debug!(target: "tensorrt", "{message}"),
            Severity::Verbose => tracing::trace!(target: "tensorrt", "{message}"),
        }
        if severity <= Severity::Warning {
            let mut b = log_buffer();
            let seq = b.next;
            b.next += 1;
            b.lines.push_back((seq, severity, message.to_string()));
            while b.lines.len() > KEEP {
                b.lines.pop_front();
            }
        }
    }
}

/// The process-wide TensorRT logger.
pub fn logger() -> Result<&'static Logger, EngineError> {
    static LOGGER: OnceLock<Logger> = OnceLock::new();
    if let Some(l) = LOGGER.get() {
        return Ok(l);
    }
    let l = Logger::new(Capture).map_err(|e| EngineError::Tensorrt { step: "logger creation".into(), failure: e.into(), log: String::new() })?;
    Ok(LOGGER.get_or_init(|| l))
}

/// Marks a point in TensorRT's log; [`LogScope::text`] returns what was logged since.
#[derive(Debug)]
pub struct LogScope(u64);

impl LogScope {
    pub fn begin() -> Self {
        LogScope(log_buffer().next)
    }

    /// Errors logged since the scope began, joined with " | "; warnings when there was no
    /// error; a note saying so when TensorRT logged nothing.
    pub fn text(&self) -> String {
        let b = log_buffer();
        let since = || b.lines.iter().filter(|(s, _, _)| *s >= self.0);
        let errors: Vec<&str> = since().filter(|(_, sev, _)| *sev <= Severity::Error).map(|(_, _, m)| m.as_str()).collect();
        let picked = if errors.is_empty() { since().map(|(_, _, m)| m.as_str()).collect() } else { errors };
        if picked.is_empty() {
            "(TensorRT logged no warning or error)".to_string()
        } else {
            picked.join(" | ")
        }
    }

    /// An [`EngineError::Tensorrt`] for a failed `step`, with the log since the scope began.
    pub fn error(&self, step: impl Into<String>, failure: impl Into<TensorrtFailure>) -> EngineError {
        EngineError::Tensorrt { step: step.into(), failure: failure.into(), log: self.text() }
    }
}

/// The loaded TensorRT library.
#[derive(Debug)]
pub struct Loaded {
    pub runtime_path: PathBuf,
    pub parser_path: PathBuf,
    /// `major.minor.patch.build` reported by the library itself.
    pub version: String,
    /// Keeps the library mapped (trtx holds its own handle to the same mapping).
    _handle: libloading::Library,
}

static LOADED: Mutex<Option<&'static Loaded>> = Mutex::new(None);

fn library_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Library { path: path.to_path_buf(), message: e.to_string() }
}

/// Loads TensorRT (core + ONNX parser) from `lib` once per process; later calls with the same
/// paths return the same value, other paths are an [`EngineError::LibraryConflict`].
pub fn load(lib: &TrtLibrary) -> Result<&'static Loaded, EngineError> {
    let (runtime_path, parser_path) = (lib.runtime_path(), lib.parser_path());
    let mut slot = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = *slot {
        if l.runtime_path != runtime_path || l.parser_path != parser_path {
            return Err(EngineError::LibraryConflict { loaded: l.runtime_path.clone(), requested: runtime_path });
        }
        return Ok(l);
    }
    if lib.dir.is_some() && !runtime_path.exists() {
        return Err(library_err(&runtime_path, "file does not exist"));
    }
    if lib.dir.is_some() && !parser_path.exists() {
        return Err(library_err(&parser_path, "file does not exist"));
    }
    // SAFETY: loading TensorRT runs no initialisation with preconditions.
    let handle = unsafe { libloading::Library::new(runtime_path.as_os_str()) }.map_err(|e| library_err(&runtime_path, e))?;
    let version = library_version(&runtime_path, &handle)?;
    trtx::dynamically_load_tensorrt(Some(runtime_path.as_os_str())).map_err(|e| library_err(&runtime_path, e))?;
    trtx::dynamically_load_tensorrt_onnxparser(Some(parser_path.as_os_str())).map_err(|e| library_err(&parser_path, e))?;
    tracing::info!(library = %runtime_path.display(), %version, "loaded TensorRT");
    let loaded: &'static Loaded = Box::leak(Box::new(Loaded { runtime_path, parser_path, version, _handle: handle }));
    *slot = Some(loaded);
    Ok(loaded)
}

/// `major.minor.patch.build` from the library's exported `getInferLib*Version` functions.
fn library_version(path: &Path, lib: &libloading::Library) -> Result<String, EngineError> {
    // SAFETY: these functions take no arguments and return an int32 (NvInferRuntime.h).
    unsafe {
        let mut parts = Vec::with_capacity(4);
        for sym in ["getInferLibMajorVersion", "getInferLibMinorVersion", "getInferLibPatchVersion", "getInferLibBuildVersion"] {
            let f: libloading::Symbol<unsafe extern "C" fn() -> i32> =
                lib.get(sym.as_bytes()).map_err(|e| library_err(path, format!("not a TensorRT library ({sym}: {e})")))?;
            parts.push(f().to_string());
        }
        Ok(parts.join("."))
    }
}

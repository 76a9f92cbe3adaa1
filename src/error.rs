//! The crate's one error type: [`Error`] wraps each area's error (checkpoint, LoRA, slot plan,
//! manifest, runtime, TensorRT, pipeline, ...) with the cause kept as its source, and
//! [`Error::kind`] classifies it without matching on the areas.

use crate::checkpoint::CheckpointError;
use crate::engine::{EngineError, TensorrtCode, TensorrtFailure};
use crate::lora::{LoraError, PlanError};
use crate::manifest::ManifestError;
use crate::pipeline::PipelineError;
#[cfg(feature = "cuda")]
use crate::runtime::cuda::CudaError;
use crate::runtime::tensorrt::TrtError;
use crate::runtime::RuntimeError;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any flux-trt error. Each variant keeps its area's typed error (and through it the original
/// ONNX Runtime / TensorRT / CUDA / I/O error) as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lora(#[from] LoraError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tensorrt(#[from] TrtError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The native CUDA backend (feature `cuda`).
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// Exporting ONNX (feature `export`).
    #[cfg(feature = "export")]
    #[error(transparent)]
    Export(#[from] crate::onnx::OnnxError),
}

/// What kind of failure an [`Error`] is, for callers that react differently (an HTTP status, a
/// retry) without matching every area's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad user input: a file, adapter, request or option the caller can fix.
    InvalidInput,
    /// Things that do not fit together: an adapter and the engine's slots, an engine and this
    /// library or GPU.
    Incompatible,
    /// A file, library or engine part that does not exist.
    NotFound,
    /// Device or host memory ran out, or a configured memory budget (the slot budget) is spent;
    /// retrying after memory is released can succeed.
    OutOfMemory,
    /// The backend (library, device, driver) failed or is missing.
    Backend,
    /// Reading or writing a file failed.
    Io,
}

impl Error {
    /// This error's [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Checkpoint(e) => checkpoint_kind(e),
            Error::Lora(LoraError::File(f)) => io_kind(&f.source),
            Error::Lora(_) => ErrorKind::InvalidInput,
            Error::Plan(e) => plan_kind(e),
            Error::Manifest(e) => manifest_kind(e),
            Error::Runtime(e) => runtime_kind(e),
            Error::Engine(e) => engine_kind(e),
            Error::Tensorrt(e) => trt_kind(e),
            Error::Pipeline(PipelineError::File(f)) => io_kind(&f.source),
            Error::Pipeline(PipelineError::Transformer { source, .. } | PipelineError::Stage { source, .. }) => boxed_kind(source.as_ref()),
            Error::Pipeline(_) => ErrorKind::InvalidInput,
            #[cfg(feature = "export")]
            Error::Export(e) => export_kind(e),
            #[cfg(feature = "cuda")]
            Error::Cuda(e) => cuda_kind(e),
        }
    }
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
        _ => ErrorKind::Io,
    }
}

/// The kind of a boxed backend error (a pipeline stage's), when it is one of ours.
fn boxed_kind(e: &(dyn std::error::Error + Send + Sync + 'static)) -> ErrorKind {
    if let Some(e) = e.downcast_ref::<RuntimeError>() {
        runtime_kind(e)
    } else if let Some(e) = e.downcast_ref::<TrtError>() {
        trt_kind(e)
    } else if let Some(e) = e.downcast_ref::<Error>() {
        e.kind()
    } else {
        ErrorKind::Backend
    }
}

#[cfg(feature = "export")]
fn export_kind(e: &crate::onnx::OnnxError) -> ErrorKind {
    use crate::onnx::OnnxError as O;
    match e {
        O::Checkpoint(c) => checkpoint_kind(c),
        O::File(f) => io_kind(&f.source),
        O::BadSlot { .. } => ErrorKind::Incompatible,
        O::Serialize { .. } => ErrorKind::Backend,
        _ => ErrorKind::InvalidInput,
    }
}

#[cfg(feature = "cuda")]
fn cuda_kind(e: &CudaError) -> ErrorKind {
    match e {
        CudaError::Input { .. } | CudaError::ForeignSlots { .. } => ErrorKind::InvalidInput,
        CudaError::Io { source, .. } => io_kind(source),
        CudaError::OutOfMemory { .. } => ErrorKind::OutOfMemory,
        // CUDA_ERROR_OUT_OF_MEMORY
        CudaError::Driver { code: 2, .. } => ErrorKind::OutOfMemory,
        CudaError::UnsupportedHeadDim { .. } | CudaError::Fp8AttentionUnavailable { .. } => ErrorKind::Incompatible,
        _ => ErrorKind::Backend,
    }
}

fn checkpoint_kind(e: &CheckpointError) -> ErrorKind {
    match e {
        CheckpointError::File(f) => io_kind(&f.source),
        _ => ErrorKind::InvalidInput,
    }
}

fn plan_kind(e: &PlanError) -> ErrorKind {
    match e {
        PlanError::NoSlots | PlanError::BadTarget { .. } | PlanError::BadStrength { .. } | PlanError::ZeroRank => ErrorKind::InvalidInput,
        _ => ErrorKind::Incompatible,
    }
}

fn manifest_kind(e: &ManifestError) -> ErrorKind {
    match e {
        ManifestError::File(f) => io_kind(&f.source),
        ManifestError::Integrity(_) => ErrorKind::Incompatible,
        ManifestError::Version { .. } | ManifestError::Mismatch { .. } => ErrorKind::Incompatible,
        _ => ErrorKind::InvalidInput,
    }
}

fn runtime_kind(e: &RuntimeError) -> ErrorKind {
    match e {
        RuntimeError::Plan(p) => plan_kind(p),
        RuntimeError::Manifest(m) => manifest_kind(m),
        RuntimeError::File(f) => io_kind(&f.source),
        RuntimeError::LibraryMissing { .. } => ErrorKind::NotFound,
        RuntimeError::SlotBudget { .. } => ErrorKind::OutOfMemory,
        RuntimeError::Input { .. } | RuntimeError::InputFile { .. } | RuntimeError::ForeignSlots { .. } => ErrorKind::InvalidInput,
        RuntimeError::Fp8Level { .. } | RuntimeError::Fp8Bf16OnCpu { .. } => ErrorKind::Incompatible,
        #[cfg(feature = "ort")]
        RuntimeError::Ort { source, .. } => ort_kind(source),
        #[cfg(feature = "ort")]
        RuntimeError::Cuda { source, .. } if source.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => ErrorKind::OutOfMemory,
        _ => ErrorKind::Backend,
    }
}

/// ONNX Runtime reports device allocation failures as runtime exceptions; their text says so.
#[cfg(feature = "ort")]
fn ort_kind(e: &::ort::Error) -> ErrorKind {
    use ::ort::ErrorCode as C;
    let text = e.message().to_ascii_lowercase();
    match e.code() {
        C::NoSuchFile | C::NotFound => ErrorKind::NotFound,
        C::InvalidArgument => ErrorKind::InvalidInput,
        C::InvalidProtobuf | C::InvalidGraph | C::NoModel => ErrorKind::Incompatible,
        _ if text.contains("out of memory") || text.contains("failed to allocate memory") => ErrorKind::OutOfMemory,
        _ => ErrorKind::Backend,
    }
}

fn engine_kind(e: &EngineError) -> ErrorKind {
    match e {
        EngineError::Manifest(m) => manifest_kind(m),
        EngineError::File(f) => io_kind(&f.source),
        EngineError::Tensorrt { failure, .. } => failure_kind(failure),
        EngineError::Profile { .. } | EngineError::Target { .. } | EngineError::Precision { .. } => ErrorKind::InvalidInput,
        EngineError::Parse { .. } | EngineError::SlotIsInput { .. } | EngineError::Io { .. } | EngineError::MarkRefittable { .. } => ErrorKind::Incompatible,
        _ => ErrorKind::Backend,
    }
}

fn failure_kind(f: &TensorrtFailure) -> ErrorKind {
    match f.code {
        TensorrtCode::OutOfMemory => ErrorKind::OutOfMemory,
        TensorrtCode::InvalidArgument => ErrorKind::InvalidInput,
        _ => ErrorKind::Backend,
    }
}

fn trt_kind(e: &TrtError) -> ErrorKind {
    match e {
        TrtError::Engine(e) => engine_kind(e),
        TrtError::Manifest(m) => manifest_kind(m),
        TrtError::Plan(p) => plan_kind(p),
        TrtError::Input(r) => runtime_kind(r),
        TrtError::File(f) => io_kind(&f.source),
        TrtError::Tensorrt { failure, .. } => failure_kind(failure),
        TrtError::NoEngine { .. } => ErrorKind::NotFound,
        TrtError::Variant { .. } | TrtError::Incompatible { .. } | TrtError::Fp8Gpu { .. } | TrtError::SlotPrototype { .. } | TrtError::RefitSet { .. } => {
            ErrorKind::Incompatible
        }
        // A slot value the adapters produced: bad input, nothing changed.
        TrtError::NonFinite { .. } => ErrorKind::InvalidInput,
        // Poisoned (failed rollback), OutputShape (TensorRT reported no buffer size), Refit, ...
        _ => ErrorKind::Backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::path::PathBuf;

    use crate::util::{FileError, FileOp};

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "underlying")
    }

    #[test]
    fn kinds() {
        let p = || PathBuf::from("x.safetensors");
        let cases: Vec<(Error, ErrorKind)> = vec![
            (LoraError::File(FileError::new(FileOp::Read, p(), io(std::io::ErrorKind::NotFound))).into(), ErrorKind::NotFound),
            (LoraError::File(FileError::new(FileOp::Read, p(), io(std::io::ErrorKind::PermissionDenied))).into(), ErrorKind::Io),
            (LoraError::Empty { path: p() }.into(), ErrorKind::InvalidInput),
            (PlanError::RankTooLarge { adapter: "a".into(), module: "m".into(), rank: 8, max_rank: 4 }.into(), ErrorKind::Incompatible),
            (PlanError::BadStrength { adapter: "a".into(), strength: f32::NAN }.into(), ErrorKind::InvalidInput),
            (RuntimeError::Plan(PlanError::OutsideSlots { adapter: "a".into(), module: "m".into() }).into(), ErrorKind::Incompatible),
            (RuntimeError::SlotBudget { engine: p(), needed: 2, used: 1, limit: 2 }.into(), ErrorKind::OutOfMemory),
            (RuntimeError::LibraryMissing { path: p() }.into(), ErrorKind::NotFound),
            (RuntimeError::NoLibrary.into(), ErrorKind::Backend),
            (RuntimeError::Input { tensor: "t".into(), message: "bad".into() }.into(), ErrorKind::InvalidInput),
            (ManifestError::Version { path: p(), found: 9, min: 1, supported: 1 }.into(), ErrorKind::Incompatible),
            (
                EngineError::Tensorrt {
                    step: "build".into(),
                    failure: TensorrtFailure { code: TensorrtCode::OutOfMemory, message: "no memory".into() },
                    log: String::new(),
                }
                .into(),
                ErrorKind::OutOfMemory,
            ),
            (TrtError::Engine(EngineError::File(FileError::new(FileOp::Read, p(), io(std::io::ErrorKind::NotFound)))).into(), ErrorKind::NotFound),
            (TrtError::NoEngine { path: p() }.into(), ErrorKind::NotFound),
            (TrtError::RefitSet { path: p(), not_in_manifest: vec!["base.w".into()], not_refittable: Vec::new() }.into(), ErrorKind::Incompatible),
            (TrtError::NonFinite { slot: "lora.a.A".into(), index: 0, value: f32::NAN, dtype: crate::tensor::DType::BF16 }.into(), ErrorKind::InvalidInput),
            (TrtError::Poisoned { path: p(), cause: "rollback failed".into() }.into(), ErrorKind::Backend),
            (TrtError::OutputShape { path: p(), name: "sample".into(), nb_dims: 3, dims: vec![1, -1, 64] }.into(), ErrorKind::Backend),
            (
                PipelineError::Stage { stage: "vae", source: Box::new(RuntimeError::SlotBudget { engine: p(), needed: 2, used: 1, limit: 2 }) }.into(),
                ErrorKind::OutOfMemory,
            ),
            (PipelineError::Value("bad".into()).into(), ErrorKind::InvalidInput),
        ];
        for (e, want) in cases {
            assert_eq!(e.kind(), want, "{e}");
        }
    }

    #[test]
    fn sources_chain_to_the_original_error() {
        let e: Error = RuntimeError::File(FileError::new(FileOp::Read, "m.onnx", io(std::io::ErrorKind::NotFound))).into();
        // transparent: the crate error's source is the area error's source, the io::Error itself
        let src = e.source().expect("source");
        let io = src.downcast_ref::<std::io::Error>().expect("io::Error in the chain");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("m.onnx"), "{e}");

        let e: Error = TrtError::Engine(EngineError::Tensorrt {
            step: "refitter creation".into(),
            failure: TensorrtFailure { code: TensorrtCode::Runtime, message: "refit not allowed".into() },
            log: "log line".into(),
        })
        .into();
        let f = e.source().and_then(|s| s.downcast_ref::<TensorrtFailure>()).expect("TensorRT failure in the chain");
        assert_eq!((f.code, f.message.as_str()), (TensorrtCode::Runtime, "refit not allowed"));
        assert!(e.to_string().contains("refit not allowed") && e.to_string().contains("log line"), "{e}");
    }
}

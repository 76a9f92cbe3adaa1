//! [`FluxSession`]: one ONNX Runtime session over an exported engine folder, whose LoRA slots
//! are fed on every run and hot-swapped without ever recreating the session.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::ort::ep::{self, ExecutionProvider as _};
use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::{Session, SessionInputValue};
use ::ort::value::{DynValue, Tensor, TensorRef};
use ::ort::AsPointer;

use super::{check, env};
use crate::lora::{Adapter, SlotPlan, SlotWeights};
use crate::manifest::{Manifest, ManifestError, Precision};
use crate::runtime::inputs::{FluxInputs, HostTensor, SAMPLE};
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::RuntimeError;
use crate::tensor::{DType, Matrix};

/// Where the session computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    /// CUDA on the given device. Requesting it on a library or machine without CUDA is an
    /// error, never a fallback to the CPU.
    Cuda { device: i32 },
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("CPU"),
            ExecutionProvider::Cuda { device } => write!(f, "CUDA (device {device})"),
        }
    }
}

/// The slot tensors of one installed set, in manifest slot order (A then B per slot).
#[derive(Debug)]
pub struct OrtSlots {
    session_id: u64,
    values: Vec<(String, DynValue)>,
}

/// A run's hold on the slot set it feeds.
pub type OrtLease = Lease<OrtSlots>;

/// What a swap installed.
#[derive(Clone, Debug)]
pub struct SwapReport {
    pub version: u64,
    /// Time to validate, lay out, convert and install (the session is untouched).
    pub elapsed: Duration,
}

static SESSIONS_CREATED: AtomicU64 = AtomicU64::new(0);

/// ONNX Runtime sessions this process has created (every [`FluxSessionBuilder::build`] makes one).
pub fn sessions_created() -> u64 {
    SESSIONS_CREATED.load(Ordering::SeqCst)
}

/// Consuming builder for [`FluxSession`].
#[derive(Clone, Debug)]
pub struct FluxSessionBuilder {
    dir: PathBuf,
    threads: Option<usize>,
    provider: ExecutionProvider,
    library: Option<PathBuf>,
    optimization: Option<GraphOptimizationLevel>,
    tf32: bool,
}

impl FluxSessionBuilder {
    /// Let the CUDA execution provider use TF32 for fp32 GEMMs/convolutions (default: off, so an
    /// fp32 engine computes in fp32 on the GPU as on the CPU; on the H200 the default-on TF32 of
    /// ONNX Runtime gave 4e-4 relative error on the tiny fixture vs 1e-6 on the CPU).
    pub fn with_tf32(mut self, enable: bool) -> Self {
        self.tf32 = enable;
        self
    }
    /// Intra-op threads (default: ONNX Runtime's choice).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }
    pub fn with_execution_provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }
    /// The `libonnxruntime` file to load (default: `ORT_DYLIB_PATH`).
    pub fn with_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.library = Some(path.into());
        self
    }
    /// Graph optimization level (default: all; FP8 engines use basic, since ORT's extended
    /// Q/DQ fusions reject float8).
    pub fn with_optimization_level(mut self, level: GraphOptimizationLevel) -> Self {
        self.optimization = Some(level);
        self
    }

    /// Loads the manifest and model, checks one against the other and creates the session.
    pub fn build(self) -> Result<FluxSession, RuntimeError> {
        let library = env::library_path(self.library.as_deref())?;
        let environment = env::environment(&library)?;
        let manifest = Manifest::load(&self.dir)?;
        let manifest_path = self.dir.join(crate::manifest::MANIFEST_FILE);
        check::check_slot_names(&manifest, &manifest_path)?;
        let model_path = self.dir.join(&manifest.onnx.file);
        let (sha, _) = crate::util::hash_file(&model_path).map_err(|source| RuntimeError::Io { path: model_path.clone(), source })?;
        if sha != manifest.onnx.blake3 {
            return Err(ManifestError::Mismatch {
                path: manifest_path,
                message: format!("{} has blake3 {sha}, the manifest records {}", model_path.display(), manifest.onnx.blake3),
            }
            .into());
        }
        let what = |step: &str| format!("{}: {step}", model_path.display());
        let mut b = Session::builder(&environment).map_err(|e| RuntimeError::ort(what("session options"), e))?;
        if let Some(n) = self.threads {
            b = b.with_intra_threads(n).map_err(|e| RuntimeError::ort(what("setting threads"), e))?;
        }
        let level = self.optimization.unwrap_or(match manifest.precision {
            Precision::Fp8 => GraphOptimizationLevel::Level1,
            _ => GraphOptimizationLevel::All,
        });
        let fp8_bf16 = manifest.precision == Precision::Fp8 && manifest.fp8.as_ref().is_none_or(|f| f.float_dtype == DType::BF16);
        if fp8_bf16 && self.provider == ExecutionProvider::Cpu {
            return Err(RuntimeError::Fp8Bf16OnCpu { engine: self.dir.clone() });
        }
        if manifest.precision == Precision::Fp8 && !matches!(level, GraphOptimizationLevel::Disable | GraphOptimizationLevel::Level1) {
            return Err(RuntimeError::Fp8Level { engine: self.dir.clone(), level: format!("{level:?}") });
        }
        b = b.with_optimization_level(level).map_err(|e| RuntimeError::ort(what("setting the optimization level"), e))?;
        let ep_err = |message: String| RuntimeError::ExecutionProvider { engine: self.dir.clone(), provider: self.provider.to_string(), message };
        let dispatch = match self.provider {
            ExecutionProvider::Cpu => ep::CPU::default().build().error_on_failure(),
            ExecutionProvider::Cuda { device } => {
                let compiled = ep::CUDA::is_available().map_err(|e| ep_err(e.message().to_string()))?;
                if !compiled {
                    return Err(ep_err(format!("{} was built without the CUDA execution provider", library.display())));
                }
                ep::CUDA::default().with_device_id(device).with_tf32(self.tf32).build().error_on_failure()
            }
        };
        b = b.with_execution_providers([dispatch]).map_err(|e| ep_err(e.message().to_string()))?;
        let session = b.commit_from_file(&model_path).map_err(|e| RuntimeError::ort(what("creating the session"), e))?;
        let session_id = SESSIONS_CREATED.fetch_add(1, Ordering::SeqCst) + 1;
        check::check_session(&manifest, &session, &manifest_path)?;
        let plan = manifest.lora.plan();
        let base = make_slots(&manifest, session_id, plan.zeros())?;
        tracing::info!(engine = %self.dir.display(), slots = plan.slots.len(), max_rank = plan.max_rank, provider = %self.provider, "ONNX Runtime session ready");
        Ok(FluxSession { dir: self.dir, manifest, plan, session_id, session: Mutex::new(session), active: ActiveSlots::new(base), provider: self.provider })
    }
}

/// An exported FLUX transformer on ONNX Runtime with hot-swappable LoRA slots.
///
/// Runs are serialized on the one session (ONNX Runtime parallelizes inside a run); swaps
/// never wait for runs and runs never see a half-installed adapter.
#[derive(Debug)]
pub struct FluxSession {
    dir: PathBuf,
    manifest: Manifest,
    plan: SlotPlan,
    session_id: u64,
    session: Mutex<Session>,
    active: ActiveSlots<OrtSlots>,
    provider: ExecutionProvider,
}

fn slot_value(name: &str, dtype: DType, m: Matrix, what: &Path) -> Result<DynValue, RuntimeError> {
    let shape = vec![m.rows, m.cols];
    let err = |e| RuntimeError::ort(format!("{}: slot tensor `{name}`", what.display()), e);
    Ok(match dtype {
        DType::F32 => Tensor::from_array((shape, m.data)).map_err(err)?.into_dyn(),
        DType::F16 => Tensor::from_array((shape, m.data.iter().map(|v| half::f16::from_f32(*v)).collect::<Vec<_>>())).map_err(err)?.into_dyn(),
        DType::BF16 => Tensor::from_array((shape, m.data.iter().map(|v| half::bf16::from_f32(*v)).collect::<Vec<_>>())).map_err(err)?.into_dyn(),
    })
}

/// Converts laid-out slot weights (f32) into ONNX Runtime tensors of the manifest's slot dtype.
fn make_slots(manifest: &Manifest, session_id: u64, w: SlotWeights) -> Result<OrtSlots, RuntimeError> {
    let what = PathBuf::from(&manifest.onnx.file);
    let mut values = Vec::with_capacity(2 * manifest.lora.slots.len());
    for ((s, a), b) in manifest.lora.slots.iter().zip(w.a).zip(w.b) {
        values.push((s.a.clone(), slot_value(&s.a, manifest.lora.dtype, a, &what)?));
        values.push((s.b.clone(), slot_value(&s.b, manifest.lora.dtype, b, &what)?));
    }
    if values.len() != 2 * manifest.lora.slots.len() {
        return Err(RuntimeError::Input { tensor: "lora slots".into(), message: format!("{} slot tensors for {} slots", values.len(), manifest.lora.slots.len()) });
    }
    Ok(OrtSlots { session_id, values })
}

impl FluxSession {
    pub fn builder(engine_dir: impl Into<PathBuf>) -> FluxSessionBuilder {
        FluxSessionBuilder { dir: engine_dir.into(), threads: None, provider: ExecutionProvider::Cpu, library: None, optimization: None, tf32: false }
    }

    pub fn engine_dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The slot plan adapters are laid into.
    pub fn plan(&self) -> &SlotPlan {
        &self.plan
    }
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// Process-unique id of the ONNX Runtime session, fixed for this value's life.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }
    /// Address of the underlying `OrtSession` (for tests proving the session is never recreated).
    pub fn session_ptr(&self) -> usize {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).ptr() as usize
    }

    /// The current slot set; runs with it stay on it whatever is swapped in meanwhile.
    pub fn lease(&self) -> OrtLease {
        self.active.lease()
    }
    /// Adapters in the current slot set (empty: the base model).
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        self.lease().adapters().to_vec()
    }
    /// Version of the current slot set (0 = base at creation, +1 per swap or clear).
    pub fn version(&self) -> u64 {
        self.active.version()
    }

    /// Runs the transformer with the current adapter.
    pub fn run(&self, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        let lease = self.lease();
        self.run_with(&lease, inputs)
    }

    /// Runs the transformer feeding the slot set held by `lease`.
    pub fn run_with(&self, lease: &OrtLease, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        if lease.tensors().session_id != self.session_id {
            return Err(RuntimeError::Input { tensor: "lora slots".into(), message: format!("lease belongs to session {}, not {}", lease.tensors().session_id, self.session_id) });
        }
        inputs.validate(&self.manifest.inputs)?;
        let what = |t: &str| format!("{}: input `{t}`", self.dir.display());
        let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(8 + lease.tensors().values.len());
        for (name, t) in inputs.named() {
            let v = TensorRef::from_array_view((t.shape().to_vec(), t.data())).map_err(|e| RuntimeError::ort(what(name), e))?;
            feeds.push((Cow::Borrowed(name), v.into()));
        }
        for (name, v) in &lease.tensors().values {
            feeds.push((Cow::Borrowed(name.as_str()), v.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(feeds).map_err(|e| RuntimeError::ort(format!("{}: run", self.dir.display()), e))?;
        let out_err = |message: String| RuntimeError::Output { engine: self.dir.clone(), tensor: SAMPLE.into(), message };
        let value = outputs.get(SAMPLE).ok_or_else(|| out_err("the model returned no such output".into()))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| out_err(e.message().to_string()))?;
        let shape: Vec<usize> = shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        let hs = inputs.hidden_states.shape();
        let want = [hs[0], hs[1], self.manifest.model.out_channels];
        if shape != want {
            return Err(out_err(format!("has shape {shape:?}, expected {want:?}")));
        }
        HostTensor::new(shape, data.to_vec()).ok_or_else(|| out_err("element count does not match its shape".into()))
    }

    /// Installs `adapters` (each with its strength; several are stacked along the rank axis).
    /// Everything is validated and converted before anything changes; on error the previous
    /// adapter stays active. Untargeted slots become zeros.
    pub fn swap(&self, adapters: &[(&Adapter, f32)]) -> Result<SwapReport, RuntimeError> {
        let t0 = Instant::now();
        let weights = self.plan.lay_out(adapters)?;
        let slots = make_slots(&self.manifest, self.session_id, weights)?;
        let labels = adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect();
        let version = self.active.install(labels, slots);
        let elapsed = t0.elapsed();
        tracing::info!(engine = %self.dir.display(), version, ?elapsed, adapters = ?adapters.iter().map(|(a, s)| format!("{}:{s}", a.name)).collect::<Vec<_>>(), "swapped LoRA slots");
        Ok(SwapReport { version, elapsed })
    }

    /// Back to the base model (all slots zero).
    pub fn clear(&self) -> Result<SwapReport, RuntimeError> {
        self.swap(&[])
    }
}

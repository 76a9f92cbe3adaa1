//! [`FluxSession`]: one ONNX Runtime session over an exported engine folder, whose LoRA slots
//! are fed on every run and hot-swapped without ever recreating the session.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::{IoBinding, Session, SessionInputValue};
use ::ort::value::{DynTensor, Tensor, TensorRef};
use ::ort::AsPointer;

use super::check;
use super::device::{self, Budget, Device, SlotValues, StagedAdapter};
use super::options::SessionOptions;
use super::placement::{CpuFallback, Placement};
use crate::lora::{Adapter, SlotPlan, SlotWeights};
use crate::manifest::{Manifest, ManifestError, Precision};
use crate::runtime::inputs::{FluxInputs, HostTensor, SAMPLE};
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::RuntimeError;
pub use crate::runtime::SwapReport;
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

/// The slot tensors of one installed set, in manifest slot order (A then B per slot): host
/// tensors fed per run, or device tensors bound with I/O binding.
#[derive(Debug)]
pub struct OrtSlots {
    session_id: u64,
    values: Arc<SlotValues>,
}

impl OrtSlots {
    /// True when the tensors live in the session's device memory (I/O binding path).
    pub fn on_device(&self) -> bool {
        self.values.on_device
    }
    /// Bytes of the slot tensors.
    pub fn bytes(&self) -> u64 {
        self.values.bytes
    }
}

/// A run's hold on the slot set it feeds.
pub type OrtLease = Lease<OrtSlots>;

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
    io_binding: Option<bool>,
    cpu_fallback: CpuFallback,
    slot_budget: Option<u64>,
    profile: Option<PathBuf>,
}

impl FluxSessionBuilder {
    /// Profile every node of every run into an ONNX Runtime JSON trace whose file name starts
    /// with `prefix` (written by [`FluxSession::end_profiling`]).
    pub fn with_profiling(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.profile = Some(prefix.into());
        self
    }
    /// Keep slot tensors in the session's device memory and bind inputs, slots and the output with
    /// I/O binding (default: on for CUDA, off for the CPU provider, where it is available to
    /// prove the two paths give identical outputs).
    pub fn with_io_binding(mut self, enable: bool) -> Self {
        self.io_binding = Some(enable);
        self
    }
    /// What a CUDA session may leave on the CPU provider (default [`CpuFallback::ShapeOnly`]).
    /// Ignored for the CPU provider.
    pub fn with_cpu_fallback(mut self, policy: CpuFallback) -> Self {
        self.cpu_fallback = policy;
        self
    }
    /// Most bytes of device memory slot sets (staged or installed, the base set included) may hold
    /// at once (I/O binding path; default: no limit).
    pub fn with_slot_budget(mut self, bytes: u64) -> Self {
        self.slot_budget = Some(bytes);
        self
    }
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
        let opts = SessionOptions {
            library: self.library.clone(),
            provider: self.provider,
            threads: self.threads,
            optimization: Some(level),
            tf32: self.tf32,
            cpu_fallback: self.cpu_fallback,
            profile: self.profile.clone(),
        };
        let (session, placement) = opts.create(&model_path, &self.dir, level)?;
        let cuda = matches!(self.provider, ExecutionProvider::Cuda { .. });
        let session_id = SESSIONS_CREATED.fetch_add(1, Ordering::SeqCst) + 1;
        check::check_session(&manifest, &session, &manifest_path)?;
        let plan = manifest.lora.plan();
        let budget = Budget::new(self.slot_budget);
        let device = if self.io_binding.unwrap_or(cuda) {
            let d = match self.provider {
                ExecutionProvider::Cuda { device } => Device::new(&session, Some(device)),
                ExecutionProvider::Cpu => Device::new(&session, None),
            };
            Some(d.map_err(|e| {
                RuntimeError::ort(what("creating the device allocator for slot tensors (I/O binding; `.with_io_binding(false)` feeds host slots instead)"), e)
            })?)
        } else {
            None
        };
        let mut s = FluxSession {
            dir: self.dir,
            manifest,
            plan,
            session_id,
            session: Mutex::new(Runner { session, bound: None }),
            active: ActiveSlots::new(OrtSlots { session_id, values: Arc::new(SlotValues { tensors: Vec::new(), on_device: false, bytes: 0, _charge: None }) }),
            provider: self.provider,
            device,
            budget,
            placement,
        };
        let base = s.build_values(s.plan.zeros())?;
        s.active = ActiveSlots::new(OrtSlots { session_id, values: Arc::new(base) });
        tracing::info!(engine = %s.dir.display(), slots = s.plan.slots.len(), max_rank = s.plan.max_rank, provider = %s.provider, io_binding = s.device.is_some(), "ONNX Runtime session ready");
        Ok(s)
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
    session: Mutex<Runner>,
    active: ActiveSlots<OrtSlots>,
    provider: ExecutionProvider,
    /// Set on the I/O binding path: where slot tensors are allocated.
    device: Option<Device>,
    budget: Arc<Budget>,
    placement: Placement,
}

/// The ONNX Runtime session and, on the I/O binding path, its binding (reused across runs; the
/// slot tensors are rebound only when the run's slot set changes).
#[derive(Debug)]
struct Runner {
    session: Session,
    bound: Option<(IoBinding, Option<u64>)>,
}

pub(crate) fn slot_value(name: &str, dtype: DType, m: Matrix, what: &Path) -> Result<DynTensor, RuntimeError> {
    let shape = vec![m.rows, m.cols];
    let err = |e| RuntimeError::ort(format!("{}: slot tensor `{name}`", what.display()), e);
    Ok(match dtype {
        DType::F32 => Tensor::from_array((shape, m.data)).map_err(err)?.upcast(),
        DType::F16 => Tensor::from_array((shape, m.data.iter().map(|v| half::f16::from_f32(*v)).collect::<Vec<_>>())).map_err(err)?.upcast(),
        DType::BF16 => Tensor::from_array((shape, m.data.iter().map(|v| half::bf16::from_f32(*v)).collect::<Vec<_>>())).map_err(err)?.upcast(),
    })
}

/// Converts laid-out slot weights (f32) into host tensors of the manifest's slot dtype.
fn host_slots(manifest: &Manifest, w: SlotWeights) -> Result<Vec<(String, DynTensor)>, RuntimeError> {
    let what = PathBuf::from(&manifest.onnx.file);
    let mut values = Vec::with_capacity(2 * manifest.lora.slots.len());
    for ((s, a), b) in manifest.lora.slots.iter().zip(w.a).zip(w.b) {
        values.push((s.a.clone(), slot_value(&s.a, manifest.lora.dtype, a, &what)?));
        values.push((s.b.clone(), slot_value(&s.b, manifest.lora.dtype, b, &what)?));
    }
    if values.len() != 2 * manifest.lora.slots.len() {
        return Err(RuntimeError::Input {
            tensor: "lora slots".into(),
            message: format!("{} slot tensors for {} slots", values.len(), manifest.lora.slots.len()),
        });
    }
    Ok(values)
}

impl FluxSession {
    pub fn builder(engine_dir: impl Into<PathBuf>) -> FluxSessionBuilder {
        FluxSessionBuilder {
            dir: engine_dir.into(),
            threads: None,
            provider: ExecutionProvider::Cpu,
            library: None,
            optimization: None,
            tf32: false,
            io_binding: None,
            cpu_fallback: CpuFallback::default(),
            slot_budget: None,
            profile: None,
        }
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
        self.session.lock().unwrap_or_else(|e| e.into_inner()).session.ptr() as usize
    }
    /// Where ONNX Runtime placed the graph's nodes (per provider; every CPU node listed).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }
    /// True when slots live in device memory and runs use I/O binding.
    pub fn io_binding(&self) -> bool {
        self.device.is_some()
    }
    /// Bytes of device memory held by slot sets now (staged or installed, the base set included).
    pub fn slot_bytes_in_use(&self) -> u64 {
        self.budget.used()
    }
    /// The slot budget given with [`FluxSessionBuilder::with_slot_budget`].
    pub fn slot_budget(&self) -> Option<u64> {
        self.budget.limit()
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

    /// Ends profiling (see [`FluxSessionBuilder::with_profiling`]) and returns the trace's path.
    pub fn end_profiling(&self) -> Result<PathBuf, RuntimeError> {
        let mut r = self.session.lock().unwrap_or_else(|e| e.into_inner());
        r.session.end_profiling().map(PathBuf::from).map_err(|e| RuntimeError::ort(format!("{}: ending profiling", self.dir.display()), e))
    }

    /// Runs the transformer with the current adapter.
    pub fn run(&self, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        let lease = self.lease();
        self.run_with(&lease, inputs)
    }

    /// Runs the transformer with the slot set held by `lease` (fed per run, or bound from device
    /// memory on the I/O binding path).
    pub fn run_with(&self, lease: &OrtLease, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        if lease.tensors().session_id != self.session_id {
            return Err(RuntimeError::ForeignSlots { engine: self.dir.clone(), what: "lease", owner: lease.tensors().session_id, session: self.session_id });
        }
        inputs.validate(&self.manifest.inputs)?;
        let what = |t: &str| format!("{}: input `{t}`", self.dir.display());
        let run_err = |e| RuntimeError::ort(format!("{}: run", self.dir.display()), e);
        let mut guard = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let runner = &mut *guard;
        let (shape, data) = if self.device.is_some() {
            let (binding, bound_version) = match &mut runner.bound {
                Some(b) => b,
                None => runner.bound.insert((runner.session.create_binding().map_err(run_err)?, None)),
            };
            if *bound_version != Some(lease.version()) {
                // Device tensors of the same device: ONNX Runtime binds them without a copy.
                for (name, v) in &lease.tensors().values.tensors {
                    binding.bind_input(name.as_str(), v).map_err(|e| RuntimeError::ort(format!("{}: binding slot `{name}`", self.dir.display()), e))?;
                }
                *bound_version = Some(lease.version());
            }
            for (name, t) in inputs.named() {
                // Owned host copies: ONNX Runtime copies them to the device when binding.
                let v = Tensor::from_array((t.shape().to_vec(), t.data().to_vec())).map_err(|e| RuntimeError::ort(what(name), e))?;
                binding.bind_input(name, &v).map_err(|e| RuntimeError::ort(what(name), e))?;
            }
            // Host-to-device input copies are issued at bind time; make sure they landed.
            binding.synchronize_inputs().map_err(run_err)?;
            let host = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default).map_err(run_err)?;
            binding.bind_output_to_device(SAMPLE, &host).map_err(run_err)?;
            let outputs = runner.session.run_binding(binding).map_err(run_err)?;
            self.extract(outputs.get(SAMPLE))?
        } else {
            let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(8 + lease.tensors().values.tensors.len());
            for (name, t) in inputs.named() {
                let v = TensorRef::from_array_view((t.shape().to_vec(), t.data())).map_err(|e| RuntimeError::ort(what(name), e))?;
                feeds.push((Cow::Borrowed(name), v.into()));
            }
            for (name, v) in &lease.tensors().values.tensors {
                feeds.push((Cow::Borrowed(name.as_str()), v.into()));
            }
            let outputs = runner.session.run(feeds).map_err(run_err)?;
            self.extract(outputs.get(SAMPLE))?
        };
        let hs = inputs.hidden_states.shape();
        let want = [hs[0], hs[1], self.manifest.model.out_channels];
        let out_err = |message: String| RuntimeError::Output { engine: self.dir.clone(), tensor: SAMPLE.into(), message };
        if shape != want {
            return Err(out_err(format!("has shape {shape:?}, expected {want:?}")));
        }
        HostTensor::new(shape, data).ok_or_else(|| out_err("element count does not match its shape".into()))
    }

    fn extract(&self, value: Option<&::ort::value::DynValue>) -> Result<(Vec<usize>, Vec<f32>), RuntimeError> {
        let out_err = |message: String| RuntimeError::Output { engine: self.dir.clone(), tensor: SAMPLE.into(), message };
        let value = value.ok_or_else(|| out_err("the model returned no such output".into()))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| out_err(e.message().to_string()))?;
        Ok((shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect(), data.to_vec()))
    }

    /// Slot tensors for `weights`: host tensors, or (I/O binding path) device tensors charged to
    /// the slot budget.
    fn build_values(&self, weights: SlotWeights) -> Result<SlotValues, RuntimeError> {
        let host = host_slots(&self.manifest, weights)?;
        let bytes = device::tensor_bytes(&host);
        let Some(dev) = &self.device else {
            return Ok(SlotValues { tensors: host, on_device: false, bytes, _charge: None });
        };
        let charge = self.budget.charge(bytes).map_err(|(used, limit)| RuntimeError::SlotBudget { engine: self.dir.clone(), needed: bytes, used, limit })?;
        let tensors = dev.upload(host, &self.dir.display().to_string())?;
        Ok(SlotValues { tensors, on_device: true, bytes, _charge: Some(charge) })
    }

    fn labels(adapters: &[(&Adapter, f32)]) -> Vec<AdapterLabel> {
        adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect()
    }

    /// Builds the slot set of `adapters` ahead of time (validated, laid out, converted and, on
    /// the I/O binding path, uploaded to device memory and charged to the slot budget), for
    /// [`FluxSession::swap_staged`]. Nothing active changes.
    pub fn stage(&self, adapters: &[(&Adapter, f32)]) -> Result<StagedAdapter, RuntimeError> {
        let t0 = Instant::now();
        let weights = self.plan.lay_out(adapters)?;
        let values = self.build_values(weights)?;
        tracing::debug!(engine = %self.dir.display(), bytes = values.bytes, on_device = values.on_device, elapsed = ?t0.elapsed(), "staged LoRA slots");
        Ok(StagedAdapter { session_id: self.session_id, adapters: Self::labels(adapters), values: Arc::new(values) })
    }

    /// Installs a staged slot set: no host work, no copy (the set's tensors are shared with the
    /// staged handle). Runs in flight finish with the set they leased.
    pub fn swap_staged(&self, staged: &StagedAdapter) -> Result<SwapReport, RuntimeError> {
        let t0 = Instant::now();
        if staged.session_id != self.session_id {
            return Err(RuntimeError::ForeignSlots { engine: self.dir.clone(), what: "staged adapter", owner: staged.session_id, session: self.session_id });
        }
        let version = self.active.install(staged.adapters.clone(), OrtSlots { session_id: self.session_id, values: Arc::clone(&staged.values) });
        let elapsed = t0.elapsed();
        tracing::debug!(engine = %self.dir.display(), version, ?elapsed, "installed staged LoRA slots");
        Ok(SwapReport { version, elapsed })
    }

    /// Installs `adapters` (each with its strength; several are stacked along the rank axis).
    /// Everything is validated, converted and (I/O binding path) uploaded before anything
    /// changes; on error the previous adapter stays active. Untargeted slots become zeros.
    pub fn swap(&self, adapters: &[(&Adapter, f32)]) -> Result<SwapReport, RuntimeError> {
        let t0 = Instant::now();
        let staged = self.stage(adapters)?;
        let version = self.active.install(staged.adapters, OrtSlots { session_id: self.session_id, values: staged.values });
        let elapsed = t0.elapsed();
        tracing::info!(engine = %self.dir.display(), version, ?elapsed, adapters = ?adapters.iter().map(|(a, s)| format!("{}:{s}", a.name)).collect::<Vec<_>>(), "swapped LoRA slots");
        Ok(SwapReport { version, elapsed })
    }

    /// Back to the base model (all slots zero).
    pub fn clear(&self) -> Result<SwapReport, RuntimeError> {
        self.swap(&[])
    }
}

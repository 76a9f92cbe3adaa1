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
use crate::lora::{Adapter, SlotFill, SlotLayout, SlotPlan, SlotTarget};
use crate::manifest::{integrity, Manifest, ManifestError, Precision, VerifyPolicy};
use crate::runtime::inputs::{
    FluxInputs, HostTensor, ENCODER_HIDDEN_STATES, GUIDANCE, HIDDEN_STATES, POOLED_PROJECTIONS, ROPE_COS, ROPE_SIN, SAMPLE, TIMESTEP,
};
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::{RequestInputs, RuntimeError, Slotted, SwapReport, Transformer};
use crate::tensor::DType;

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

/// Consuming builder for [`FluxSession`]: the session settings ([`SessionOptions`], shared with
/// the pipeline's component sessions) plus what only the transformer has (I/O binding, slot budget).
#[derive(Clone, Debug)]
pub struct FluxSessionBuilder {
    dir: PathBuf,
    options: SessionOptions,
    io_binding: Option<bool>,
    slot_budget: Option<u64>,
}

impl FluxSessionBuilder {
    /// Replaces every session setting with `options` (library, provider, threads, optimization,
    /// TF32, CPU fallback, profiling, verification).
    pub fn with_options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }
    /// When to hash the engine's files before loading them (sizes are always checked; default
    /// [`VerifyPolicy::First`], see [`crate::manifest::integrity`]).
    pub fn with_verify(mut self, policy: VerifyPolicy) -> Self {
        self.options.verify = policy;
        self
    }
    /// Profile every node of every run into an ONNX Runtime JSON trace whose file name starts
    /// with `prefix` (written by [`FluxSession::end_profiling`]).
    pub fn with_profiling(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.options.profile = Some(prefix.into());
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
        self.options.cpu_fallback = policy;
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
        self.options.tf32 = enable;
        self
    }
    /// Intra-op threads (default: ONNX Runtime's choice).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.options.threads = Some(n);
        self
    }
    pub fn with_execution_provider(mut self, provider: ExecutionProvider) -> Self {
        self.options.provider = provider;
        self
    }
    /// The `libonnxruntime` file to load (default: `ORT_DYLIB_PATH`).
    pub fn with_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.library = Some(path.into());
        self
    }
    /// Graph optimization level (default: all; FP8 engines use basic, since ORT's extended
    /// Q/DQ fusions reject float8).
    pub fn with_optimization_level(mut self, level: GraphOptimizationLevel) -> Self {
        self.options.optimization = Some(level);
        self
    }

    /// Loads the manifest and model, checks one against the other and creates the session.
    pub fn build(self) -> Result<FluxSession, RuntimeError> {
        let FluxSessionBuilder { dir, mut options, io_binding, slot_budget } = self;
        let manifest = Manifest::load(&dir)?;
        let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
        check::check_slot_names(&manifest, &manifest_path)?;
        let model_path = dir.join(&manifest.onnx.file);
        integrity::check_onnx(&dir, &manifest.files, &manifest.onnx.file, &manifest.onnx.blake3, options.verify).map_err(ManifestError::from)?;
        let level = *options.optimization.get_or_insert(match manifest.precision {
            Precision::Fp8 => GraphOptimizationLevel::Level1,
            _ => GraphOptimizationLevel::All,
        });
        let fp8_bf16 = manifest.precision == Precision::Fp8 && manifest.fp8.as_ref().is_none_or(|f| f.float_dtype == DType::BF16);
        if fp8_bf16 && options.provider == ExecutionProvider::Cpu {
            return Err(RuntimeError::Fp8Bf16OnCpu { engine: dir });
        }
        if manifest.precision == Precision::Fp8 && !matches!(level, GraphOptimizationLevel::Disable | GraphOptimizationLevel::Level1) {
            return Err(RuntimeError::Fp8Level { engine: dir, level: format!("{level:?}") });
        }
        let (session, placement) = options.create(&model_path, &dir)?;
        let provider = options.provider;
        let cuda = matches!(provider, ExecutionProvider::Cuda { .. });
        let session_id = SESSIONS_CREATED.fetch_add(1, Ordering::SeqCst) + 1;
        check::check_session(&manifest, &session, &manifest_path)?;
        let plan = manifest.lora.plan();
        let budget = Budget::new(slot_budget);
        let device = if io_binding.unwrap_or(cuda) {
            Some(match provider {
                ExecutionProvider::Cuda { device } => Device::new(&session, Some(device))?,
                ExecutionProvider::Cpu => Device::new(&session, None)?,
            })
        } else {
            None
        };
        let layout = SlotLayout::new(&plan, manifest.lora.dtype);
        let slot_names: Vec<String> = manifest.lora.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()]).collect();
        let base = build_values(&plan.fill(SlotTarget::Transformer, &[])?, &layout, &slot_names, device.as_ref(), &budget, &dir)?;
        let s = FluxSession {
            dir,
            manifest,
            plan,
            layout,
            slot_names,
            session_id,
            session: Mutex::new(session),
            active: ActiveSlots::new(OrtSlots { session_id, values: Arc::new(base) }),
            provider,
            device,
            budget,
            placement,
        };
        tracing::info!(engine = %s.dir.display(), slots = s.plan.slots.len(), max_rank = s.plan.max_rank, provider = %s.provider, io_binding = s.device.is_some(), "ONNX Runtime session ready");
        Ok(s)
    }
}

/// An exported FLUX transformer on ONNX Runtime with hot-swappable LoRA slots; implements the
/// runtime interface ([`Slotted`], [`Transformer`]).
///
/// Runs are serialized on the one session (ONNX Runtime parallelizes inside a run); swaps
/// never wait for runs and runs never see a half-installed adapter.
#[derive(Debug)]
pub struct FluxSession {
    dir: PathBuf,
    manifest: Manifest,
    /// Built once from the manifest; every swap lays adapters into it.
    plan: SlotPlan,
    /// Where each slot tensor lies in a slot set's one buffer (the manifest's slot dtype).
    layout: SlotLayout,
    /// Slot initializer names, A then B per slot.
    slot_names: Vec<String>,
    session_id: u64,
    session: Mutex<Session>,
    active: ActiveSlots<OrtSlots>,
    provider: ExecutionProvider,
    /// Set on the I/O binding path: where slot tensors are allocated.
    device: Option<Device>,
    budget: Arc<Budget>,
    placement: Placement,
}

/// One request's constants on a [`FluxSession`] ([`Transformer::bind`]): encoder states, pooled
/// projections, guidance and RoPE tables as owned ONNX Runtime tensors, checked once against the
/// engine's inputs. On the I/O binding path they are bound once to the request's own
/// [`IoBinding`] (copied to the device there, once); each step then binds only the latents, the
/// timestep and, when the lease's slot set differs from the last step's, the slot tensors.
#[derive(Debug)]
pub struct OrtBound {
    session_id: u64,
    batch: usize,
    image_seq_len: usize,
    /// Fed by reference on every run (plain path).
    constants: Vec<(&'static str, DynTensor)>,
    /// The request's binding and the slot-set version bound into it (I/O binding path).
    binding: Option<(IoBinding, Option<u64>)>,
}

fn out_err(dir: &Path, message: String) -> RuntimeError {
    RuntimeError::Output { engine: dir.to_path_buf(), tensor: SAMPLE.into(), message }
}

/// The slot set of `fill`: host tensors, or (I/O binding path) device tensors charged to the
/// slot budget.
fn build_values(
    fill: &SlotFill<'_>,
    layout: &SlotLayout,
    names: &[String],
    device: Option<&Device>,
    budget: &Arc<Budget>,
    dir: &Path,
) -> Result<SlotValues, RuntimeError> {
    let bytes = layout.bytes() as u64;
    let charge = match device {
        Some(_) => Some(budget.charge(bytes).map_err(|(used, limit)| RuntimeError::SlotBudget { engine: dir.to_path_buf(), needed: bytes, used, limit })?),
        None => None,
    };
    device::slot_values(fill, layout, names, device, charge, &dir.display().to_string())
}

impl FluxSession {
    pub fn builder(engine_dir: impl Into<PathBuf>) -> FluxSessionBuilder {
        FluxSessionBuilder { dir: engine_dir.into(), options: SessionOptions::default(), io_binding: None, slot_budget: None }
    }

    pub fn engine_dir(&self) -> &Path {
        &self.dir
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

    /// Adapters in the current slot set (empty: the base model).
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        self.active.lease().adapters().to_vec()
    }
    /// Version of the current slot set (0 = base at creation, +1 per swap or clear).
    pub fn version(&self) -> u64 {
        self.active.version()
    }

    /// Ends profiling (see [`FluxSessionBuilder::with_profiling`]) and returns the trace's path.
    pub fn end_profiling(&self) -> Result<PathBuf, RuntimeError> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        session.end_profiling().map(PathBuf::from).map_err(|e| RuntimeError::ort(format!("{}: ending profiling", self.dir.display()), e))
    }

    /// One transformer call on explicit tensors (RoPE tables included, e.g. from an inputs file)
    /// with the current adapter: [`FluxSession::run_with`] on a fresh lease.
    pub fn run(&self, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        self.run_with(&self.active.lease(), inputs)
    }

    /// One transformer call on explicit tensors with the slot set held by `lease`: the same
    /// bind-then-step path as the [`Transformer`] interface, for a single call.
    pub fn run_with(&self, lease: &OrtLease, inputs: &FluxInputs) -> Result<HostTensor, RuntimeError> {
        let hs = inputs.hidden_states.shape();
        let (b, s) = (hs.first().copied().unwrap_or(0), hs.get(1).copied().unwrap_or(0));
        inputs.validate(&self.manifest.inputs)?;
        let mut bound = self.bind_tensors(
            b,
            s,
            [
                (ENCODER_HIDDEN_STATES, Some(inputs.encoder_hidden_states.clone())),
                (POOLED_PROJECTIONS, Some(inputs.pooled_projections.clone())),
                (GUIDANCE, inputs.guidance.clone()),
                (ROPE_COS, Some(inputs.rope_cos.clone())),
                (ROPE_SIN, Some(inputs.rope_sin.clone())),
            ],
        )?;
        let mut out = vec![0f32; b * s * self.manifest.model.out_channels];
        self.step_inner(lease, &mut bound, inputs.hidden_states.data(), inputs.timestep.data(), &mut out)?;
        HostTensor::new(vec![b, s, self.manifest.model.out_channels], out).ok_or_else(|| out_err(&self.dir, "element count does not match its shape".into()))
    }

    /// Back to the base model (all slots zero).
    pub fn clear(&self) -> crate::Result<SwapReport> {
        self.swap(&[])
    }

    /// Request constants (already validated) → owned tensors, and on the I/O binding path a
    /// binding holding them (copied to the device once, here).
    fn bind_tensors(&self, batch: usize, image_seq_len: usize, named: [(&'static str, Option<HostTensor>); 5]) -> Result<OrtBound, RuntimeError> {
        let what = |t: &str| format!("{}: input `{t}`", self.dir.display());
        let mut constants = Vec::with_capacity(named.len());
        for (name, t) in named {
            if let Some(t) = t {
                let v = Tensor::from_array((t.shape().to_vec(), t.into_data())).map_err(|e| RuntimeError::ort(what(name), e))?;
                constants.push((name, v.upcast()));
            }
        }
        let binding = match &self.device {
            None => None,
            Some(_) => {
                let run_err = |e| RuntimeError::ort(format!("{}: binding the request's inputs", self.dir.display()), e);
                let mut binding = self.session.lock().unwrap_or_else(|e| e.into_inner()).create_binding().map_err(run_err)?;
                for (name, v) in &constants {
                    // Host tensors: ONNX Runtime copies them to the session's device at bind time.
                    binding.bind_input(*name, v).map_err(|e| RuntimeError::ort(what(name), e))?;
                }
                let host = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default).map_err(run_err)?;
                binding.bind_output_to_device(SAMPLE, &host).map_err(run_err)?;
                constants.clear();
                Some((binding, None))
            }
        };
        Ok(OrtBound { session_id: self.session_id, batch, image_seq_len, constants, binding })
    }

    /// One run: `latents` `[B, S_img, C_in]`, `timestep` `[B]`, the bound constants and the
    /// lease's slots; writes `sample` into `out`.
    fn step_inner(&self, lease: &OrtLease, bound: &mut OrtBound, latents: &[f32], timestep: &[f32], out: &mut [f32]) -> Result<(), RuntimeError> {
        for (what, owner) in [("lease", lease.tensors().session_id), ("bound request", bound.session_id)] {
            if owner != self.session_id {
                return Err(RuntimeError::ForeignSlots { engine: self.dir.clone(), what, owner, session: self.session_id });
            }
        }
        let (b, s) = (bound.batch, bound.image_seq_len);
        let hidden_shape = [b, s, self.manifest.model.in_channels];
        let want_out = b * s * self.manifest.model.out_channels;
        let len_err = |tensor: &str, expected: usize, found: usize| RuntimeError::Input {
            tensor: tensor.into(),
            message: format!("{found} values for the bound request's {expected} ({hidden_shape:?})"),
        };
        if latents.len() != hidden_shape.iter().product::<usize>() {
            return Err(len_err(HIDDEN_STATES, hidden_shape.iter().product(), latents.len()));
        }
        if timestep.len() != b {
            return Err(len_err(TIMESTEP, b, timestep.len()));
        }
        if out.len() != want_out {
            return Err(out_err(&self.dir, format!("output buffer holds {} values, the call produces {want_out}", out.len())));
        }
        let what = |t: &str| format!("{}: input `{t}`", self.dir.display());
        let run_err = |e| RuntimeError::ort(format!("{}: run", self.dir.display()), e);
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = match &mut bound.binding {
            Some((binding, bound_version)) => {
                if *bound_version != Some(lease.version()) {
                    // Device tensors of the same device: ONNX Runtime binds them without a copy.
                    for (name, v) in lease.tensors().values.iter() {
                        binding.bind_input(name, v).map_err(|e| RuntimeError::ort(format!("{}: binding slot `{name}`", self.dir.display()), e))?;
                    }
                    *bound_version = Some(lease.version());
                }
                let hidden = Tensor::from_array((hidden_shape.to_vec(), latents.to_vec())).map_err(|e| RuntimeError::ort(what(HIDDEN_STATES), e))?;
                binding.bind_input(HIDDEN_STATES, &hidden).map_err(|e| RuntimeError::ort(what(HIDDEN_STATES), e))?;
                let t = Tensor::from_array(([b], timestep.to_vec())).map_err(|e| RuntimeError::ort(what(TIMESTEP), e))?;
                binding.bind_input(TIMESTEP, &t).map_err(|e| RuntimeError::ort(what(TIMESTEP), e))?;
                // Host-to-device input copies are issued at bind time; make sure they landed.
                binding.synchronize_inputs().map_err(run_err)?;
                session.run_binding(binding).map_err(run_err)?
            }
            None => {
                let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(2 + bound.constants.len() + 2 * self.manifest.lora.slots.len());
                let hidden = TensorRef::from_array_view((hidden_shape, latents)).map_err(|e| RuntimeError::ort(what(HIDDEN_STATES), e))?;
                feeds.push((Cow::Borrowed(HIDDEN_STATES), hidden.into()));
                let t = TensorRef::from_array_view(([b], timestep)).map_err(|e| RuntimeError::ort(what(TIMESTEP), e))?;
                feeds.push((Cow::Borrowed(TIMESTEP), t.into()));
                for (name, v) in &bound.constants {
                    feeds.push((Cow::Borrowed(*name), v.into()));
                }
                for (name, v) in lease.tensors().values.iter() {
                    feeds.push((Cow::Borrowed(name), v.into()));
                }
                session.run(feeds).map_err(run_err)?
            }
        };
        let value = outputs.get(SAMPLE).ok_or_else(|| out_err(&self.dir, "the model returned no such output".into()))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| out_err(&self.dir, e.message().to_string()))?;
        let want = [b, s, self.manifest.model.out_channels];
        if shape.len() != 3 || shape.iter().zip(want).any(|(g, w)| usize::try_from(*g).ok() != Some(w)) {
            return Err(out_err(&self.dir, format!("has shape {:?}, expected {want:?}", &shape[..])));
        }
        out.copy_from_slice(data);
        Ok(())
    }
}

impl Slotted for FluxSession {
    type Slots = OrtSlots;
    type Staged = StagedAdapter;

    /// Validates, lays out and converts `adapters` and, on the I/O binding path, uploads them to
    /// device memory (charged to the slot budget). Nothing active changes.
    fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<StagedAdapter> {
        let t0 = Instant::now();
        let fill = self.plan.fill(SlotTarget::Transformer, adapters).map_err(RuntimeError::from)?;
        let values = build_values(&fill, &self.layout, &self.slot_names, self.device.as_ref(), &self.budget, &self.dir)?;
        tracing::debug!(engine = %self.dir.display(), bytes = values.bytes, on_device = values.on_device, elapsed = ?t0.elapsed(), "staged LoRA slots");
        Ok(StagedAdapter { session_id: self.session_id, adapters: labels(adapters), values: Arc::new(values) })
    }

    /// Installs a staged slot set: no host work, no copy (the set's tensors are shared with the
    /// staged handle). Runs in flight finish with the set they leased.
    fn install(&self, staged: &StagedAdapter) -> crate::Result<SwapReport> {
        let t0 = Instant::now();
        if staged.session_id != self.session_id {
            return Err(
                RuntimeError::ForeignSlots { engine: self.dir.clone(), what: "staged adapter", owner: staged.session_id, session: self.session_id }.into()
            );
        }
        let version = self.active.install(staged.adapters.clone(), OrtSlots { session_id: self.session_id, values: Arc::clone(&staged.values) });
        let elapsed = t0.elapsed();
        tracing::debug!(engine = %self.dir.display(), version, ?elapsed, adapters = ?staged.adapters, "installed LoRA slots");
        Ok(SwapReport { version, elapsed })
    }

    fn lease(&self) -> OrtLease {
        self.active.lease()
    }
}

impl Transformer for FluxSession {
    type Bound = OrtBound;

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the request against the engine's inputs, computes the RoPE tables, converts the
    /// constants to tensors and (I/O binding path) binds them to the device, once.
    fn bind(&self, r: &RequestInputs<'_>) -> crate::Result<OrtBound> {
        let inputs = FluxInputs::for_request(&self.manifest.model, r)?;
        inputs.validate(&self.manifest.inputs)?;
        Ok(self.bind_tensors(
            r.batch,
            r.image_seq_len,
            [
                (ENCODER_HIDDEN_STATES, Some(inputs.encoder_hidden_states)),
                (POOLED_PROJECTIONS, Some(inputs.pooled_projections)),
                (GUIDANCE, inputs.guidance),
                (ROPE_COS, Some(inputs.rope_cos)),
                (ROPE_SIN, Some(inputs.rope_sin)),
            ],
        )?)
    }

    fn step(&self, lease: &OrtLease, bound: &mut OrtBound, latents: &[f32], timestep: f32, out: &mut [f32]) -> crate::Result<()> {
        if bound.batch == 1 {
            return Ok(self.step_inner(lease, bound, latents, &[timestep], out)?);
        }
        let ts = vec![timestep; bound.batch];
        Ok(self.step_inner(lease, bound, latents, &ts, out)?)
    }
}

fn labels(adapters: &[(&Adapter, f32)]) -> Vec<AdapterLabel> {
    adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect()
}

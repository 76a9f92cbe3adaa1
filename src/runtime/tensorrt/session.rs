//! [`PlanRunner`]: a TensorRT plan with refittable LoRA slots (feature `tensorrt`), the core of
//! [`super::TrtSession`].

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use trtx::trtx_sys::{nvinfer1, Dims64};
use trtx::{CudaEngine, DataType, ExecutionContext, Refitter, Runtime, TensorLocation};

use super::cuda::{DeviceBuffer, Gpu};
#[cfg(not(feature = "tensorrt-enterprise"))]
use super::error::Incompatibility;
use super::refit::{self, RefitBackend, RefitState};
use super::{SessionOptions, TrtError};
use crate::engine::trt::{self, LogScope};
use crate::lora::{SlotImage, SlotLayout};
use crate::manifest::{LoraSlots, Manifest, MANIFEST_FILE};
use crate::runtime::inputs::{HIDDEN_STATES, TIMESTEP};
use crate::runtime::FluxInputs;
use crate::tensor::DType;

/// One device buffer per slot A and B.
#[derive(Debug)]
struct SlotBuffers {
    a: Vec<DeviceBuffer>,
    b: Vec<DeviceBuffer>,
}

impl SlotBuffers {
    fn zeros(gpu: &Gpu, lora: &LoraSlots) -> Result<Self, TrtError> {
        let e = lora.dtype.size();
        let mut s = SlotBuffers { a: Vec::new(), b: Vec::new() };
        for slot in &lora.slots {
            s.a.push(gpu.zeros(lora.max_rank * slot.in_features * e, &slot.a)?);
            s.b.push(gpu.zeros(slot.out_features * lora.max_rank * e, &slot.b)?);
        }
        Ok(s)
    }
}

fn tensorrt_err(scope: &LogScope, step: impl Into<String>, e: impl Into<crate::engine::TensorrtFailure>) -> TrtError {
    TrtError::Tensorrt { step: step.into(), failure: e.into(), log: scope.text() }
}

/// A deserialized plan, its execution context and stream, and two sets of device slot buffers:
/// the `&mut self` core that [`super::TrtSession`] keeps behind its mutex.
///
/// # Refit ordering
/// [`PlanRunner::refit_weights`] gets slot weights already validated and laid out (by
/// [`crate::runtime::Slotted::stage`]; values not finite in the slots' dtype are refused there and
/// again here, before anything changes), uploads the new A/B values for **every** slot (zeros
/// where the adapters do not reach, so A → B → A returns exactly to A) into the standby buffer
/// set, points the refitter at them (`setNamedWeights(.., kDEVICE)`) and enqueues
/// `refitCudaEngineAsync` on the session's stream, then waits for it. Runs are enqueued on the
/// same stream, so a run enqueued before the refit finishes with the previous weights and every
/// run after it uses the new ones; the runner owns the engine's only execution context, so no
/// work of this engine is pending on another stream (TensorRT leaves that case undefined). If the
/// refit itself fails, the stream is synchronized, the previous slot set (kept on the device) is
/// refit back and the error says whether that succeeded; failures before the refit leave the
/// engine untouched. If the rollback fails too, the runner is poisoned (the engine's slot-set
/// version is unknown): runs return [`TrtError::Poisoned`] until a refit of every slot from one
/// complete set succeeds, which [`super::TrtSession`] retries at every step (it refits the
/// lease's set, whichever it is; a swap to another set is allowed and is refit the same way).
/// The logic is [`RefitState`]'s, tested on CPU behind the [`RefitBackend`] seam.
///
/// # Refitter
/// One `IRefitter` per session. At open it checks the engine's refittable weights
/// (`getAllWeights`) against the manifest's slots in both directions and every slot's prototype
/// (count and type), once. A refit points it at the chosen buffer set (`setNamedWeights(..,
/// kDEVICE)`: a pointer per name, no copy) and refits; no refitter or name buffer is created
/// per refit.
///
/// # Kernels
/// TensorRT-RTX compiles shape-specialised kernels at run time; by default (`kLAZY`) early runs
/// use fallback kernels while specialised ones compile in the background, so two runs of the
/// same inputs could differ. The execution context is created through a runtime config with
/// `kEAGER`: the first run of a shape compiles its kernels and waits, so every run uses the
/// same kernels and bit-exact comparisons hold. TensorRT Enterprise has no run-time kernel
/// compilation.
///
/// # Drop
/// Dropping makes the session's CUDA context current on the dropping thread and waits for its
/// stream before the TensorRT objects and device buffers are freed (any thread, any device).
pub(crate) struct PlanRunner {
    // Field order is drop order (after `Drop::drop` bound the context and waited for the
    // stream): TensorRT objects (the refitter before the engine it refits) before the buffers
    // and the CUDA context.
    context: ExecutionContext<'static>,
    refitter: Refitter<'static, 'static>,
    /// Kept alive for the context and the refitter, which refer to it.
    _engine: CudaEngine<'static>,
    _runtime: Runtime<'static>,
    output: Option<DeviceBuffer>,
    active: SlotBuffers,
    standby: SlotBuffers,
    /// Which slot-set version the engine holds; poisoning.
    state: RefitState,
    pub(crate) manifest: Manifest,
    /// Where each slot tensor lies in a [`SlotImage`] (the manifest's slots and dtype).
    pub(crate) layout: SlotLayout,
    pub(crate) plan_path: PathBuf,
    pub(crate) gpu_name: String,
    pub(crate) gpu: Gpu,
}

// SAFETY: TensorRT engines and execution contexts may be used from any thread as long as calls
// on one context do not overlap; every method that touches them takes `&mut self` (the public
// session keeps the runner behind a mutex) and binds the CUDA context to the calling thread
// first. The trtx `ExecutionContext` holds the only `Rc` of its runtime config (the runner drops
// its own right after creating the context), so no reference count is shared across threads.
unsafe impl Send for PlanRunner {}

impl Drop for PlanRunner {
    fn drop(&mut self) {
        // TensorRT frees its objects through the current CUDA context, and device buffers must
        // not be freed while queued work still reads them.
        if let Err(e) = self.gpu.bind().and_then(|()| self.gpu.synchronize()) {
            tracing::warn!(plan = %self.plan_path.display(), error = %e, "TensorRT session drop: CUDA context bind / stream synchronize failed");
        }
    }
}

impl std::fmt::Debug for PlanRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanRunner").field("plan", &self.plan_path).field("gpu", &self.gpu_name).field("refit", &self.state).finish_non_exhaustive()
    }
}

/// One request's constants on the device ([`crate::runtime::Transformer::bind`] on
/// [`super::TrtSession`]): uploaded once, with buffers for the per-step latents and timestep.
#[derive(Debug)]
pub struct TrtBound {
    pub(crate) session_id: u64,
    pub(crate) batch: usize,
    pub(crate) image_seq_len: usize,
    /// Graph name, shape, device copy (encoder states, pooled, guidance, RoPE tables).
    constants: Vec<(&'static str, Vec<i64>, DeviceBuffer)>,
    hidden: DeviceBuffer,
    timestep: DeviceBuffer,
}

fn trt_dtype(d: DType) -> DataType {
    match d {
        DType::F32 => DataType::kFLOAT,
        DType::F16 => DataType::kHALF,
        DType::BF16 => DataType::kBF16,
    }
}

impl PlanRunner {
    /// Opens `dir`'s plan (from `manifest.engine`): BLAKE3 against the manifest, TensorRT's own
    /// validity check for this library and GPU, deserialization, I/O check against the
    /// manifest, then every slot refit to zeros (the base model; stripped plans need it).
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Self, TrtError> {
        let manifest = Manifest::load(dir)?;
        let art = manifest.engine.clone().ok_or_else(|| TrtError::NoEngine { path: dir.join(MANIFEST_FILE) })?;
        let plan_path = dir.join(&art.file);
        if art.tensorrt_variant != trt::VARIANT {
            return Err(TrtError::Variant { path: plan_path, expected: trt::VARIANT.into(), found: art.tensorrt_variant });
        }
        crate::manifest::integrity::check_plan(dir, &manifest.files, &art, opts.verify).map_err(crate::manifest::ManifestError::from)?;
        let read_err = |e| crate::util::FileError::new(crate::util::FileOp::Read, &plan_path, e);
        let file = std::fs::File::open(&plan_path).map_err(read_err)?;
        // SAFETY: the plan is read only; a concurrent writer would at worst fail the hash check.
        let plan = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?;
        let loaded = trt::load(&opts.library)?;
        tracing::debug!(built = %art.tensorrt_version, loaded = %loaded.version, "TensorRT versions");
        let gpu = Gpu::open(opts.device)?;
        gpu.bind()?;
        let gpu_name = gpu.describe();
        if manifest.precision == crate::manifest::Precision::Fp8 {
            let (major, minor) = gpu.compute_capability()?;
            if !crate::engine::fp8_capable(major, minor) {
                return Err(TrtError::Fp8Gpu { path: plan_path, gpu: gpu_name, major, minor });
            }
        }
        let logger = trt::logger()?;
        let scope = LogScope::begin();
        let mut runtime = Runtime::new(logger).map_err(|e| tensorrt_err(&scope, "runtime creation", e))?;
        // TensorRT's own header check: version, compute capability, driver.
        #[cfg(not(feature = "tensorrt-enterprise"))]
        {
            let incompatible = |diagnostics: String, scope: &LogScope| TrtError::Incompatible {
                path: plan_path.clone(),
                detail: Box::new(Incompatibility {
                    built_version: art.tensorrt_version.clone(),
                    loaded_version: loaded.version.clone(),
                    targets: art.targets.clone(),
                    gpu: gpu_name.clone(),
                    diagnostics,
                    log: scope.text(),
                }),
            };
            let (validity, diagnostics) = runtime.engine_validity(&plan).map_err(|e| incompatible(e.to_string(), &scope))?;
            if validity == trtx::EngineValidity::kINVALID {
                return Err(incompatible(format!("{diagnostics:?}"), &scope));
            }
        }
        let scope = LogScope::begin();
        let mut engine = runtime.deserialize_cuda_engine(&plan).map_err(|_| TrtError::Deserialize { path: plan_path.clone(), log: scope.text() })?;
        drop(plan);
        check_bindings(&engine, &manifest, &plan_path)?;
        let scope = LogScope::begin();
        // SAFETY: the refitter refers to the C++ engine, which lives on the heap behind
        // `engine`'s pointer and is not moved by moving `engine`; the session drops the refitter
        // before the engine (field order), and never hands either out.
        let engine_ref: &'static CudaEngine<'static> = unsafe { &*(&engine as *const CudaEngine<'static>) };
        let mut refitter = Refitter::new(engine_ref, logger).map_err(|e| tensorrt_err(&scope, "refitter creation", e))?;
        check_refitter(&refitter, &manifest.lora, &plan_path)?;
        // Every slot refit to zeros (the base model) before the execution context exists:
        // stripped plans carry no slot weights until then.
        let active = SlotBuffers::zeros(&gpu, &manifest.lora)?;
        let standby = SlotBuffers::zeros(&gpu, &manifest.lora)?;
        let mut state = RefitState::default();
        {
            let mut backend = Refit { refitter: &mut refitter, gpu: &gpu, lora: &manifest.lora };
            backend.point(&active)?;
            let scope = LogScope::begin();
            let missing = refitter_names(&manifest.lora, |n| backend.refitter.missing_weights(n)).map_err(|e| tensorrt_err(&scope, "getMissingWeights", e))?;
            if !missing.is_empty() {
                return Err(TrtError::MissingWeights { path: plan_path, names: missing });
            }
            state.install(&mut backend, &active, None, 0, &plan_path)?;
        }
        let context = create_context(&mut engine)?;
        let layout = SlotLayout::new(&manifest.lora.plan(), manifest.lora.dtype);
        let s = PlanRunner {
            context,
            refitter,
            _engine: engine,
            _runtime: runtime,
            output: None,
            active,
            standby,
            state,
            manifest,
            layout,
            plan_path,
            gpu_name,
            gpu,
        };
        tracing::info!(plan = %s.plan_path.display(), gpu = %s.gpu_name, slots = s.manifest.lora.slots.len(), "TensorRT session open");
        Ok(s)
    }

    /// Uploads the request's constants (already checked against the manifest) once, and
    /// allocates its latents and timestep buffers.
    pub(crate) fn bind(&self, session_id: u64, inputs: &FluxInputs) -> Result<TrtBound, TrtError> {
        self.gpu.bind()?;
        let mut constants = Vec::new();
        for (name, t) in inputs.named() {
            if name == HIDDEN_STATES || name == TIMESTEP {
                continue;
            }
            let bytes: &[u8] = bytemuck::cast_slice(t.data());
            let mut buf = self.gpu.zeros(bytes.len(), name)?;
            self.gpu.upload(bytes, &mut buf, name)?;
            constants.push((name, t.shape().iter().map(|d| *d as i64).collect(), buf));
        }
        let hs = inputs.hidden_states.shape();
        Ok(TrtBound {
            session_id,
            batch: hs[0],
            image_seq_len: hs[1],
            constants,
            hidden: self.gpu.zeros(inputs.hidden_states.data().len() * 4, HIDDEN_STATES)?,
            timestep: self.gpu.zeros(hs[0] * 4, TIMESTEP)?,
        })
    }

    /// True after a failed refit whose rollback failed too (see [`TrtError::Poisoned`]).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.state.is_poisoned()
    }

    /// Whether a run with slot-set `version` must refit first (another set, or poisoned).
    pub(crate) fn needs_refit(&self, version: u64) -> bool {
        self.state.needs_refit(version)
    }

    /// One run of `bound`'s request on `latents` and `timestep` (`[B]`) with the slots refit now;
    /// writes `sample` into `out`.
    pub(crate) fn run_bound(&mut self, bound: &mut TrtBound, latents: &[f32], timestep: &[f32], out: &mut [f32]) -> Result<(), TrtError> {
        self.state.check(&self.plan_path)?;
        self.gpu.bind()?;
        let hidden_dims = [bound.batch as i64, bound.image_seq_len as i64, self.manifest.model.in_channels as i64];
        self.gpu.upload(bytemuck::cast_slice(latents), &mut bound.hidden, HIDDEN_STATES)?;
        self.gpu.upload(bytemuck::cast_slice(timestep), &mut bound.timestep, TIMESTEP)?;
        let per_step = [(HIDDEN_STATES, &hidden_dims[..], &bound.hidden), (TIMESTEP, &[bound.batch as i64][..], &bound.timestep)];
        let constants = bound.constants.iter().map(|(n, d, b)| (*n, &d[..], b));
        for (name, dims, buf) in per_step.into_iter().chain(constants) {
            let scope = LogScope::begin();
            self.context.set_input_shape(name, &Dims64::from_slice(dims)).map_err(|e| tensorrt_err(&scope, format!("setInputShape(`{name}`, {dims:?})"), e))?;
            let addr = self.gpu.address(buf);
            // SAFETY: `buf` holds this input's bytes and lives in `bound` (borrowed for this whole
            // call) past the run's stream work (the download below synchronizes).
            unsafe { self.context.set_tensor_address(name, addr as *mut c_void) }
                .map_err(|e| tensorrt_err(&scope, format!("setTensorAddress(`{name}`)"), e))?;
        }
        let out_name = self.manifest.outputs[0].name.clone();
        let scope = LogScope::begin();
        let d = self.context.tensor_shape(&out_name).map_err(|e| tensorrt_err(&scope, format!("getTensorShape(`{out_name}`)"), e))?;
        let (shape, bytes) = refit::output_shape(&self.plan_path, &out_name, d.nbDims, &d.d)?;
        let want = [bound.batch, bound.image_seq_len, self.manifest.model.out_channels];
        if shape != want || out.len() != want.iter().product::<usize>() {
            return Err(TrtError::Bindings {
                path: self.plan_path.clone(),
                message: format!("output `{out_name}` has shape {shape:?}, expected {want:?} ({} values given for it)", out.len()),
            });
        }
        let buf = match self.output.take() {
            Some(b) if b.len() >= bytes => b,
            _ => self.gpu.zeros(bytes, &out_name)?,
        };
        let buf = self.output.insert(buf);
        let addr = self.gpu.address(buf);
        // SAFETY: `buf` holds the output's bytes and stays in `self.output` past the download.
        unsafe { self.context.set_tensor_address(&out_name, addr as *mut c_void) }
            .map_err(|e| tensorrt_err(&scope, format!("setTensorAddress(`{out_name}`)"), e))?;
        let scope = LogScope::begin();
        // SAFETY: every I/O tensor is bound to live device memory of the right size.
        unsafe { self.context.enqueue_v3(self.gpu.raw_stream()) }.map_err(|e| tensorrt_err(&scope, "enqueueV3", e))?;
        self.gpu.download(buf, bytemuck::cast_slice_mut(out), &out_name)
    }

    /// Uploads a laid-out slot set (every slot, in the slots' dtype) into the standby buffers and
    /// refits; `version` is the slot set's version, recorded on success. See the type docs for
    /// ordering, rollback and poisoning; on a poisoned runner a successful refit is the way back.
    pub(crate) fn refit_weights(&mut self, values: &SlotImage, version: u64) -> Result<(), TrtError> {
        check_finite(&self.manifest.lora, &self.layout, values)?;
        self.gpu.bind()?;
        let bytes = values.bytes();
        let mut ranges = self.layout.tensors().map(|(r, _)| r);
        for (i, slot) in self.manifest.lora.slots.iter().enumerate() {
            for (buf, name) in [(&mut self.standby.a[i], &slot.a), (&mut self.standby.b[i], &slot.b)] {
                let r = ranges.next().expect("checked: one range per slot tensor");
                self.gpu.upload(&bytes[r], buf, name)?;
            }
        }
        let mut backend = Refit { refitter: &mut self.refitter, gpu: &self.gpu, lora: &self.manifest.lora };
        // On failure the state says whether the engine holds `active` again or is poisoned
        // (then the next step refits its lease's set from scratch).
        self.state.install(&mut backend, &self.standby, Some(&self.active), version, &self.plan_path)?;
        std::mem::swap(&mut self.active, &mut self.standby);
        Ok(())
    }
}

/// Refuses a slot set laid out for other slots, or holding a value that is NaN or infinite in
/// the slots' dtype (nothing changes).
pub(crate) fn check_finite(lora: &LoraSlots, layout: &SlotLayout, values: &SlotImage) -> Result<(), TrtError> {
    let bytes = values.bytes();
    if layout.num_slots() != lora.slots.len() || layout.dtype() != lora.dtype || bytes.len() != layout.bytes() {
        let message = format!("{} bytes of slot values for {} {:?} slots of {} bytes", bytes.len(), lora.slots.len(), lora.dtype, layout.bytes());
        return Err(crate::runtime::RuntimeError::Input { tensor: "lora slots".into(), message }.into());
    }
    let names = lora.slots.iter().flat_map(|s| [&s.a, &s.b]);
    for ((range, _), name) in layout.tensors().zip(names) {
        if let Some((index, value)) = refit::first_non_finite(lora.dtype, &bytes[range]) {
            return Err(TrtError::NonFinite { slot: name.clone(), index, value, dtype: lora.dtype });
        }
    }
    Ok(())
}

/// Every name of a refitter list (`getAllWeights`, `getMissingWeights`): trtx returns at most
/// `capacity` names, so a full answer is asked again with twice the room.
fn refitter_names(lora: &LoraSlots, mut list: impl FnMut(i32) -> trtx::Result<Vec<String>>) -> trtx::Result<Vec<String>> {
    let mut capacity = 2 * lora.slots.len() + 64;
    loop {
        let room = i32::try_from(capacity).unwrap_or(i32::MAX);
        let names = list(room)?;
        if names.len() < capacity || room == i32::MAX {
            return Ok(names);
        }
        capacity *= 2;
    }
}

/// `(A count, B count)` of slot `s` in elements.
fn slot_counts(lora: &LoraSlots, s: &crate::manifest::SlotSpec) -> [usize; 2] {
    [lora.max_rank * s.in_features, s.out_features * lora.max_rank]
}

/// Once per session: the engine's refittable set is exactly the slots, and each slot's
/// prototype has the manifest's element count and dtype.
fn check_refitter(refitter: &Refitter<'static, 'static>, lora: &LoraSlots, path: &Path) -> Result<(), TrtError> {
    let scope = LogScope::begin();
    let all = refitter_names(lora, |n| refitter.all_weights(n)).map_err(|e| tensorrt_err(&scope, "getAllWeights", e))?;
    let names: Vec<String> = lora.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()]).collect();
    refit::check_refittable(path, &all, &names)?;
    let want = trt_dtype(lora.dtype);
    for s in &lora.slots {
        for (name, count) in [&s.a, &s.b].into_iter().zip(slot_counts(lora, s)) {
            let proto = refitter.weights_prototype(name);
            let ptype: DataType = proto.type_.clone().into();
            if proto.count != count as i64 || ptype != want {
                return Err(TrtError::SlotPrototype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    message: format!("engine expects {} × {ptype:?}, manifest slot is {count} × {want:?}", proto.count),
                });
            }
        }
    }
    Ok(())
}

/// The execution context; on TensorRT-RTX through a runtime config whose dynamic-shape kernel
/// specialisation is eager (see the type docs).
fn create_context(engine: &mut CudaEngine<'static>) -> Result<ExecutionContext<'static>, TrtError> {
    let scope = LogScope::begin();
    #[cfg(not(feature = "tensorrt-enterprise"))]
    {
        let mut config = engine.create_runtime_config().map_err(|e| tensorrt_err(&scope, "runtime config creation", e))?;
        config.set_dynamic_shapes_kernel_specialization_strategy(trtx::DynamicShapesKernelSpecializationStrategy::kEAGER);
        if config.dynamic_shapes_kernel_specialization_strategy() != trtx::DynamicShapesKernelSpecializationStrategy::kEAGER {
            return Err(tensorrt_err(&scope, "setDynamicShapesKernelSpecializationStrategy(kEAGER)", "not applied"));
        }
        engine.create_execution_context_with_config(std::rc::Rc::new(config)).map_err(|e| tensorrt_err(&scope, "execution context creation", e))
    }
    #[cfg(feature = "tensorrt-enterprise")]
    engine.create_execution_context().map_err(|e| tensorrt_err(&scope, "execution context creation", e))
}

/// [`RefitBackend`] over the session's refitter and stream.
struct Refit<'a> {
    refitter: &'a mut Refitter<'static, 'static>,
    gpu: &'a Gpu,
    lora: &'a LoraSlots,
}

impl RefitBackend for Refit<'_> {
    type Set = SlotBuffers;

    fn point(&mut self, set: &SlotBuffers) -> Result<(), TrtError> {
        let dtype = trt_dtype(self.lora.dtype);
        for (i, s) in self.lora.slots.iter().enumerate() {
            let [ca, cb] = slot_counts(self.lora, s);
            for (name, buf, count) in [(&s.a, &set.a[i], ca), (&s.b, &set.b[i], cb)] {
                let w = nvinfer1::Weights { type_: dtype.into(), values: self.gpu.address(buf) as *const c_void, count: count as i64 };
                let scope = LogScope::begin();
                // SAFETY: `buf` is device memory of `count` elements of the prototype's type
                // (checked at open); the session does not write it before the refit completed
                // (every refit is synchronized) and keeps it alive as long as the refitter.
                unsafe { self.refitter.set_named_weights_with_location(name, w, TensorLocation::kDEVICE.into()) }
                    .map_err(|e| tensorrt_err(&scope, format!("setNamedWeights(`{name}`, kDEVICE)"), e))?;
            }
        }
        Ok(())
    }

    fn refit(&mut self) -> Result<(), String> {
        let scope = LogScope::begin();
        // SAFETY: the stream is the session's live stream; the engine has no work pending on any
        // other stream (the session owns its only execution context).
        unsafe { self.refitter.refit_cuda_engine_async(self.gpu.raw_stream()) }.map_err(|e| format!("{e}; TensorRT said: {}", scope.text()))
    }

    fn synchronize(&mut self) -> Result<(), TrtError> {
        self.gpu.synchronize()
    }
}

/// The engine's I/O tensors are the manifest's inputs and outputs, all f32.
fn check_bindings(engine: &CudaEngine<'static>, manifest: &Manifest, path: &Path) -> Result<(), TrtError> {
    let scope = LogScope::begin();
    let n = engine.nb_io_tensors().map_err(|e| tensorrt_err(&scope, "getNbIOTensors", e))?;
    let mut names = Vec::new();
    for i in 0..n {
        let name = engine.io_tensor_name(i).map_err(|e| tensorrt_err(&scope, format!("getIOTensorName({i})"), e))?;
        let dt = engine.tensor_data_type(&name).map_err(|e| tensorrt_err(&scope, format!("getTensorDataType(`{name}`)"), e))?;
        if dt != DataType::kFLOAT {
            return Err(TrtError::Bindings { path: path.to_path_buf(), message: format!("tensor `{name}` is {dt:?}, flux-trt binds f32") });
        }
        names.push(name);
    }
    let mut want: Vec<String> = manifest.inputs.iter().chain(&manifest.outputs).map(|t| t.name.clone()).collect();
    names.sort();
    want.sort();
    if names != want {
        return Err(TrtError::Bindings { path: path.to_path_buf(), message: format!("engine I/O tensors {names:?}, manifest has {want:?}") });
    }
    if manifest.outputs.len() != 1 {
        return Err(TrtError::Bindings { path: path.to_path_buf(), message: format!("expected one output, manifest has {}", manifest.outputs.len()) });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::plan::tests::{adapter, module, tiny};
    use crate::lora::plan::PlanOptions;
    use crate::lora::{SlotPlan, SlotTarget};

    /// The stage's check runs on the values as stored: a strength that overflows f16 is refused
    /// naming the slot tensor; the same set is finite in bf16; a set of another layout is refused.
    #[test]
    fn finite_check_on_the_typed_slot_values() {
        let q = "transformer_blocks.0.attn.to_q";
        let a = adapter("a", vec![(q, module(2, 8, 8, 0.5, 1.0))]);
        let plan = SlotPlan::new(&tiny(), &[&a], &PlanOptions { max_rank: Some(4), targets: vec!["attn".into()] }).unwrap();
        let fill = |s: f32| plan.fill(SlotTarget::Transformer, &[(&a, s)]).unwrap();
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            let lora = LoraSlots::from_plan(&plan, dtype);
            let layout = SlotLayout::new(&plan, dtype);
            assert!(check_finite(&lora, &layout, &fill(1.0).image(&layout)).is_ok(), "{dtype:?}");
            let big = check_finite(&lora, &layout, &fill(1e6).image(&layout));
            match dtype {
                DType::F16 => {
                    let i = plan.slot_index(q).unwrap();
                    assert!(matches!(&big, Err(TrtError::NonFinite { slot, value, .. }) if *slot == lora.slots[i].b && value.is_infinite()), "{big:?}");
                }
                _ => assert!(big.is_ok(), "{dtype:?}: {big:?}"),
            }
        }
        let (lora, other) = (LoraSlots::from_plan(&plan, DType::BF16), SlotLayout::new(&plan, DType::F16));
        let e = check_finite(&lora, &other, &fill(1.0).image(&other)).unwrap_err();
        assert!(matches!(e, TrtError::Input(_)), "{e:?}");
    }
}

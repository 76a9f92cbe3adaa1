//! [`ComponentSession`]: an ONNX Runtime session over one exported pipeline component (CLIP-L or
//! T5 text encoder, VAE decoder): one data input, one output, and optionally LoRA slots (CLIP)
//! that are fed on every run and hot-swapped like the transformer's, through the same
//! [`Slotted`] interface (a component without slots has one empty set and accepts only
//! adapters without text-encoder modules).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::ort::session::{Session, SessionInputValue};
use ::ort::value::TensorRef;

use super::device::{slot_values, SlotValues};
use super::options::SessionOptions;
use crate::lora::{Adapter, SlotLayout, SlotPlan, SlotTarget};
use crate::manifest::{LoraSlots, ManifestError};
use crate::runtime::slots::{ActiveSlots, AdapterLabel, Lease};
use crate::runtime::{RuntimeError, Slotted, SwapReport};

/// What the runtime needs to know about a component folder (from its manifest).
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    /// The component's folder.
    pub dir: PathBuf,
    /// Model file name inside `dir`.
    pub model_file: String,
    /// BLAKE3 of the model file recorded at export (`onnx.blake3`; checked alone for format-1
    /// manifests, which have no `files`).
    pub blake3: String,
    /// Size and BLAKE3 of the folder's files (the manifest's `files`).
    pub files: Vec<crate::manifest::FileRecord>,
    /// The data input (`input_ids` int64 for text encoders, `latents` f32 for the VAE).
    pub input: String,
    pub output: String,
    pub lora: Option<LoraSlots>,
}

/// A component's slot tensors of one set, in slot order (A then B per slot), laid out once in the
/// slots' dtype; `None` for a component without slots. Shared between a staged set and its
/// installed leases.
#[derive(Clone, Debug)]
pub struct ComponentSlots(Option<Arc<SlotValues>>);

/// A validated, laid-out slot set for [`Slotted::install`] on a [`ComponentSession`].
#[derive(Clone, Debug)]
pub struct ComponentStaged {
    adapters: Vec<AdapterLabel>,
    slots: ComponentSlots,
}

impl ComponentStaged {
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
}

/// One component on ONNX Runtime.
#[derive(Debug)]
pub struct ComponentSession {
    spec: ComponentSpec,
    session: Mutex<Session>,
    /// The slots' plan, layout and initializer names, built once at open.
    slots: Option<ComponentLayout>,
    active: ActiveSlots<ComponentSlots>,
}

#[derive(Debug)]
struct ComponentLayout {
    plan: SlotPlan,
    layout: SlotLayout,
    names: Vec<String>,
}

impl ComponentLayout {
    fn new(lora: &LoraSlots) -> Self {
        let plan = lora.plan();
        let layout = SlotLayout::new(&plan, lora.dtype);
        let names = lora.slots.iter().flat_map(|s| [s.a.clone(), s.b.clone()]).collect();
        ComponentLayout { plan, layout, names }
    }

    /// `adapters`' text-encoder modules laid out in host memory in the slots' dtype.
    fn values(&self, adapters: &[(&Adapter, f32)], what: &str) -> Result<ComponentSlots, RuntimeError> {
        let fill = self.plan.fill(SlotTarget::ClipText, adapters)?;
        Ok(ComponentSlots(Some(Arc::new(slot_values(&fill, &self.layout, &self.names, None, None, what)?))))
    }
}

/// Data fed to the component's input.
pub enum ComponentInput<'a> {
    Ids(&'a [i64]),
    F32(&'a [f32]),
}

impl ComponentSession {
    /// Checks the folder's files against their records (policy `opts.verify`) and creates the session.
    pub fn open(spec: ComponentSpec, opts: &SessionOptions) -> Result<Self, RuntimeError> {
        let model_path = spec.dir.join(&spec.model_file);
        let manifest_path = spec.dir.join(crate::manifest::MANIFEST_FILE);
        crate::manifest::integrity::check_onnx(&spec.dir, &spec.files, &spec.model_file, &spec.blake3, opts.verify).map_err(ManifestError::from)?;
        let (session, _placement) = opts.create(&model_path, &spec.dir)?;
        let mismatch = |message: String| -> RuntimeError { ManifestError::Mismatch { path: manifest_path.clone(), message }.into() };
        if !session.inputs().iter().any(|i| i.name() == spec.input) {
            return Err(mismatch(format!("{} has no input `{}`", model_path.display(), spec.input)));
        }
        let overridable: Vec<String> = session.overridable_initializers().iter().map(|o| o.name().to_string()).collect();
        for s in spec.lora.iter().flat_map(|l| l.slots.iter()) {
            for name in [&s.a, &s.b] {
                if !overridable.contains(name) {
                    return Err(mismatch(format!("{}: slot `{name}` is not an overridable initializer of the model", model_path.display())));
                }
            }
        }
        if !session.outputs().iter().any(|o| o.name() == spec.output) {
            return Err(mismatch(format!("{} has no output `{}`", model_path.display(), spec.output)));
        }
        let slots = spec.lora.as_ref().map(ComponentLayout::new);
        let base = match &slots {
            Some(l) => l.values(&[], &model_path.display().to_string())?,
            None => ComponentSlots(None),
        };
        tracing::info!(component = %spec.dir.display(), slots = spec.lora.as_ref().map_or(0, |l| l.slots.len()), provider = %opts.provider, "ONNX Runtime component session ready");
        Ok(ComponentSession { spec, session: Mutex::new(session), slots, active: ActiveSlots::new(base) })
    }

    pub fn spec(&self) -> &ComponentSpec {
        &self.spec
    }
    /// Adapters in the current slot set (empty: none, or no slots).
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        self.active.lease().adapters().to_vec()
    }

    /// Runs on `input` of `shape` with the current slot set; returns the output's shape and values.
    pub fn run(&self, input: ComponentInput<'_>, shape: &[usize]) -> Result<(Vec<usize>, Vec<f32>), RuntimeError> {
        self.run_with(&self.active.lease(), input, shape)
    }

    /// A text encoder's output for token ids `[1, L]` with the slot set of `lease` (CLIP: the
    /// pooled embedding; T5: the last hidden state).
    pub fn encode(&self, lease: &Lease<ComponentSlots>, ids: &[i64]) -> Result<Vec<f32>, RuntimeError> {
        Ok(self.run_with(lease, ComponentInput::Ids(ids), &[1, ids.len()])?.1)
    }

    /// Runs on `input` of `shape` with the slot set of `lease`; returns the output's shape and
    /// values (f32, all finite).
    pub fn run_with(&self, lease: &Lease<ComponentSlots>, input: ComponentInput<'_>, shape: &[usize]) -> Result<(Vec<usize>, Vec<f32>), RuntimeError> {
        let what = || format!("{}: input `{}`", self.spec.dir.display(), self.spec.input);
        let slots = lease.tensors().0.as_deref();
        let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(1 + self.slots.as_ref().map_or(0, |l| l.names.len()));
        let v: SessionInputValue<'_> = match input {
            ComponentInput::Ids(d) => TensorRef::from_array_view((shape.to_vec(), d)).map_err(|e| RuntimeError::ort(what(), e))?.into(),
            ComponentInput::F32(d) => TensorRef::from_array_view((shape.to_vec(), d)).map_err(|e| RuntimeError::ort(what(), e))?.into(),
        };
        feeds.push((Cow::Borrowed(self.spec.input.as_str()), v));
        for (name, v) in slots.into_iter().flat_map(|s| s.iter()) {
            feeds.push((Cow::Borrowed(name), v.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(feeds).map_err(|e| RuntimeError::ort(format!("{}: run", self.spec.dir.display()), e))?;
        let out_err = |message: String| RuntimeError::Output { engine: self.spec.dir.clone(), tensor: self.spec.output.clone(), message };
        let value = outputs.get(&self.spec.output).ok_or_else(|| out_err("the model returned no such output".into()))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| out_err(e.message().to_string()))?;
        let shape = shape.iter().map(|d| usize::try_from(*d).unwrap_or(0)).collect();
        if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
            return Err(out_err(format!("holds a non-finite value ({bad})")));
        }
        Ok((shape, data.to_vec()))
    }
}

impl Slotted for ComponentSession {
    type Slots = ComponentSlots;
    type Staged = ComponentStaged;

    /// Lays the adapters' text-encoder modules into the component's slots; a component without
    /// slots accepts only adapters that have no text-encoder modules (an empty set).
    fn stage(&self, adapters: &[(&Adapter, f32)]) -> crate::Result<ComponentStaged> {
        let labels = adapters.iter().map(|(a, s)| AdapterLabel { name: a.name.clone(), strength: *s }).collect();
        let slots = match &self.slots {
            Some(l) => l.values(adapters, &self.spec.dir.join(&self.spec.model_file).display().to_string())?,
            None => {
                if let Some((a, _)) = adapters.iter().find(|(a, _)| !a.text_encoder.is_empty()) {
                    return Err(RuntimeError::Input {
                        tensor: "lora slots".into(),
                        message: format!("{} has no LoRA slots for the text-encoder modules of adapter `{}`", self.spec.dir.display(), a.name),
                    }
                    .into());
                }
                ComponentSlots(None)
            }
        };
        Ok(ComponentStaged { adapters: labels, slots })
    }

    /// Makes `staged` current (no copy); runs holding an older lease keep theirs.
    fn install(&self, staged: &ComponentStaged) -> crate::Result<SwapReport> {
        let t0 = Instant::now();
        let version = self.active.install(staged.adapters.clone(), staged.slots.clone());
        Ok(SwapReport { version, elapsed: t0.elapsed() })
    }

    fn lease(&self) -> Lease<ComponentSlots> {
        self.active.lease()
    }
}

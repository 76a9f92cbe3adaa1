//! [`ComponentSession`]: an ONNX Runtime session over one exported pipeline component (CLIP-L or
//! T5 text encoder, VAE decoder): one data input, one output, and optionally LoRA slots (CLIP)
//! that are fed on every run and hot-swapped like the transformer's.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::{Session, SessionInputValue};
use ::ort::value::{DynValue, TensorRef};

use super::options::SessionOptions;
use super::session::slot_value;
use crate::lora::SlotWeights;
use crate::manifest::{LoraSlots, ManifestError};
use crate::runtime::slots::{ActiveSlots, AdapterLabel};
use crate::runtime::RuntimeError;
use crate::runtime::SwapReport;

/// What the runtime needs to know about a component folder (from its manifest).
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    /// The component's folder.
    pub dir: PathBuf,
    /// Model file name inside `dir`.
    pub model_file: String,
    /// BLAKE3 of the model file recorded at export.
    pub blake3: String,
    /// The data input (`input_ids` int64 for text encoders, `latents` f32 for the VAE).
    pub input: String,
    pub output: String,
    pub lora: Option<LoraSlots>,
}

/// A component's slot tensors, in slot order (A then B per slot).
#[derive(Debug)]
pub struct ComponentSlots(Vec<(String, DynValue)>);

/// One component on ONNX Runtime.
#[derive(Debug)]
pub struct ComponentSession {
    spec: ComponentSpec,
    session: Mutex<Session>,
    active: Option<ActiveSlots<ComponentSlots>>,
}

/// Data fed to the component's input.
pub enum ComponentInput<'a> {
    Ids(&'a [i64]),
    F32(&'a [f32]),
}

/// Laid-out slot weights → ONNX Runtime tensors of the slots' dtype, named as in `lora`.
pub(crate) fn slot_values(lora: &LoraSlots, w: SlotWeights, what: &Path) -> Result<Vec<(String, DynValue)>, RuntimeError> {
    if w.a.len() != lora.slots.len() || w.b.len() != lora.slots.len() {
        return Err(RuntimeError::Input {
            tensor: "lora slots".into(),
            message: format!("{} / {} slot tensors for {} slots", w.a.len(), w.b.len(), lora.slots.len()),
        });
    }
    let mut values = Vec::with_capacity(2 * lora.slots.len());
    for ((s, a), b) in lora.slots.iter().zip(w.a).zip(w.b) {
        values.push((s.a.clone(), slot_value(&s.a, lora.dtype, a, what)?.into_dyn()));
        values.push((s.b.clone(), slot_value(&s.b, lora.dtype, b, what)?.into_dyn()));
    }
    Ok(values)
}

impl ComponentSession {
    /// Checks the model file against the recorded hash and creates the session.
    pub fn open(spec: ComponentSpec, opts: &SessionOptions) -> Result<Self, RuntimeError> {
        let model_path = spec.dir.join(&spec.model_file);
        let (hash, _) = crate::util::hash_file(&model_path).map_err(|source| RuntimeError::Io { path: model_path.clone(), source })?;
        if hash != spec.blake3 {
            return Err(ManifestError::Mismatch {
                path: spec.dir.join(crate::manifest::MANIFEST_FILE),
                message: format!("{} has blake3 {hash}, the manifest records {}", model_path.display(), spec.blake3),
            }
            .into());
        }
        let (session, _placement) = opts.create(&model_path, &spec.dir, opts.optimization.unwrap_or(GraphOptimizationLevel::All))?;
        let mismatch = |message: String| -> RuntimeError { ManifestError::Mismatch { path: spec.dir.join(crate::manifest::MANIFEST_FILE), message }.into() };
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
            return Err(ManifestError::Mismatch {
                path: spec.dir.join(crate::manifest::MANIFEST_FILE),
                message: format!("{} has no output `{}`", model_path.display(), spec.output),
            }
            .into());
        }
        let active = match &spec.lora {
            Some(l) => Some(ActiveSlots::new(ComponentSlots(slot_values(l, l.plan().zeros(), &model_path)?))),
            None => None,
        };
        tracing::info!(component = %spec.dir.display(), slots = spec.lora.as_ref().map_or(0, |l| l.slots.len()), provider = %opts.provider, "ONNX Runtime component session ready");
        Ok(ComponentSession { spec, session: Mutex::new(session), active })
    }

    pub fn spec(&self) -> &ComponentSpec {
        &self.spec
    }
    /// Adapters in the current slot set (empty: none, or no slots).
    pub fn adapters(&self) -> Vec<AdapterLabel> {
        self.active.as_ref().map(|a| a.lease().adapters().to_vec()).unwrap_or_default()
    }

    /// Runs on `input` of `shape`; returns the output's shape and values (f32).
    pub fn run(&self, input: ComponentInput<'_>, shape: &[usize]) -> Result<(Vec<usize>, Vec<f32>), RuntimeError> {
        let what = || format!("{}: input `{}`", self.spec.dir.display(), self.spec.input);
        let lease = self.active.as_ref().map(ActiveSlots::lease);
        let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        let v: SessionInputValue<'_> = match input {
            ComponentInput::Ids(d) => TensorRef::from_array_view((shape.to_vec(), d)).map_err(|e| RuntimeError::ort(what(), e))?.into(),
            ComponentInput::F32(d) => TensorRef::from_array_view((shape.to_vec(), d)).map_err(|e| RuntimeError::ort(what(), e))?.into(),
        };
        feeds.push((Cow::Borrowed(self.spec.input.as_str()), v));
        if let Some(l) = &lease {
            for (name, v) in &l.tensors().0 {
                feeds.push((Cow::Borrowed(name.as_str()), v.into()));
            }
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

    /// Installs laid-out slot weights (see the component's slot plan); on error nothing changes.
    pub fn swap_weights(&self, weights: SlotWeights, labels: Vec<AdapterLabel>) -> Result<SwapReport, RuntimeError> {
        let t0 = Instant::now();
        let (Some(active), Some(lora)) = (&self.active, &self.spec.lora) else {
            return Err(RuntimeError::Input { tensor: "lora slots".into(), message: format!("{} has no LoRA slots", self.spec.dir.display()) });
        };
        let values = slot_values(lora, weights, &self.spec.dir)?;
        let version = active.install(labels, ComponentSlots(values));
        Ok(SwapReport { version, elapsed: t0.elapsed() })
    }
}

impl crate::pipeline::generate::TextEncoder for ComponentSession {
    fn encode(&self, ids: &[i64]) -> Result<Vec<f32>, crate::pipeline::generate::StageError> {
        Ok(self.run(ComponentInput::Ids(ids), &[1, ids.len()])?.1)
    }
}

impl crate::pipeline::generate::LatentDecoder for ComponentSession {
    fn decode(&self, latents: &[f32], shape: [usize; 4]) -> Result<Vec<f32>, crate::pipeline::generate::StageError> {
        Ok(self.run(ComponentInput::F32(latents), &shape)?.1)
    }
}

//! Checks that a loaded ONNX model is the one its manifest describes: data inputs and outputs
//! (names, dtypes, fixed and named dynamic dimensions) and every LoRA slot as an overridable
//! initializer of the manifest's shape and dtype, nothing more.

use std::collections::BTreeSet;
use std::path::Path;

use ::ort::session::Session;
use ::ort::value::{TensorElementType, ValueType};

use crate::manifest::{Manifest, ManifestError, TensorSpec};
use crate::tensor::DType;

fn mismatch(path: &Path, message: String) -> ManifestError {
    ManifestError::Mismatch { path: path.to_path_buf(), message }
}

pub(crate) fn element_type(d: DType) -> TensorElementType {
    match d {
        DType::F32 => TensorElementType::Float32,
        DType::F16 => TensorElementType::Float16,
        DType::BF16 => TensorElementType::Bfloat16,
    }
}

/// The model file's BLAKE3 against the one its manifest (`manifest_path`) recorded at export.
pub(crate) fn model_hash(model_path: &Path, expected: &str, manifest_path: &Path) -> Result<(), crate::runtime::RuntimeError> {
    let (found, _) = crate::util::hash_file(model_path).map_err(|source| crate::runtime::RuntimeError::Io { path: model_path.to_path_buf(), source })?;
    if found != expected {
        return Err(mismatch(manifest_path, format!("{} has blake3 {found}, the manifest records {expected}", model_path.display())).into());
    }
    Ok(())
}

/// Checks the manifest's own slot naming (`lora.<module>.A` / `.B`).
pub(crate) fn check_slot_names(manifest: &Manifest, path: &Path) -> Result<(), ManifestError> {
    for s in &manifest.lora.slots {
        let (a, b) = (format!("lora.{}.A", s.module), format!("lora.{}.B", s.module));
        if s.a != a || s.b != b {
            return Err(mismatch(path, format!("slot `{}` names its tensors `{}`/`{}`, expected `{a}`/`{b}`", s.module, s.a, s.b)));
        }
    }
    if manifest.lora.max_rank == 0 {
        return Err(mismatch(path, "lora.max_rank is 0".into()));
    }
    Ok(())
}

fn describe(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, shape, .. } => format!("{ty:?} {:?}", &shape[..]),
        other => format!("{other:?}"),
    }
}

fn check_tensor(
    path: &Path,
    kind: &str,
    name: &str,
    ty: &ValueType,
    dtype: DType,
    shape: &[Option<usize>],
    dim_names: &[Option<String>],
) -> Result<(), ManifestError> {
    let ValueType::Tensor { ty: et, shape: got, dimension_symbols } = ty else {
        return Err(mismatch(path, format!("{kind} `{name}` is {} in the model, not a tensor", describe(ty))));
    };
    let want: Vec<i64> = shape.iter().map(|d| d.map_or(-1, |v| v as i64)).collect();
    if *et != element_type(dtype) || got[..] != want[..] {
        return Err(mismatch(path, format!("{kind} `{name}`: manifest says {dtype} {shape:?}, model has {}", describe(ty))));
    }
    for (i, want_name) in dim_names.iter().enumerate() {
        if let (Some(w), None) = (want_name, shape.get(i).copied().flatten()) {
            let sym = dimension_symbols.get(i).map(String::as_str).unwrap_or("");
            if sym != w {
                return Err(mismatch(path, format!("{kind} `{name}`: dimension {i} is `{w}` in the manifest, `{sym}` in the model")));
            }
        }
    }
    Ok(())
}

fn check_io(path: &Path, kind: &str, specs: &[TensorSpec], model: &[(String, ValueType)]) -> Result<(), ManifestError> {
    let want: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let got: BTreeSet<&str> = model.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(n) = want.difference(&got).next() {
        return Err(mismatch(path, format!("manifest {kind} `{n}` is not a {kind} of the model (model has {got:?})")));
    }
    if let Some(n) = got.difference(&want).next() {
        return Err(mismatch(path, format!("model {kind} `{n}` is not in the manifest (manifest has {want:?})")));
    }
    for spec in specs {
        if let Some((_, ty)) = model.iter().find(|(n, _)| *n == spec.name) {
            check_tensor(path, kind, &spec.name, ty, spec.dtype, &spec.shape, &spec.dim_names)?;
        }
    }
    Ok(())
}

/// Compares the session's inputs, outputs and overridable initializers with the manifest.
pub(crate) fn check_session(manifest: &Manifest, session: &Session, path: &Path) -> Result<(), ManifestError> {
    let inputs: Vec<(String, ValueType)> = session.inputs().iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect();
    let outputs: Vec<(String, ValueType)> = session.outputs().iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect();
    let overridable: Vec<(String, ValueType)> = session.overridable_initializers().iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect();
    // A slot listed only as a plain input (no initializer) would be a required input.
    for (n, _) in &inputs {
        if n.starts_with("lora.") {
            return Err(mismatch(path, format!("slot tensor `{n}` is a plain graph input without a default (it must be an initializer listed in the inputs)")));
        }
    }
    check_io(path, "input", &manifest.inputs, &inputs)?;
    check_io(path, "output", &manifest.outputs, &outputs)?;
    let lora = &manifest.lora;
    let mut expected = BTreeSet::new();
    for s in &lora.slots {
        for (name, shape) in [(&s.a, [lora.max_rank, s.in_features]), (&s.b, [s.out_features, lora.max_rank])] {
            expected.insert(name.as_str());
            let ty =
                overridable.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| {
                    mismatch(path, format!("slot initializer `{name}` (module `{}`) is not an overridable initializer of the model", s.module))
                })?;
            let shape = shape.map(Some);
            check_tensor(path, "slot initializer", name, ty, lora.dtype, &shape, &[])?;
        }
    }
    if let Some((n, _)) = overridable.iter().find(|(n, _)| !expected.contains(n.as_str())) {
        return Err(mismatch(path, format!("model has overridable initializer `{n}` that the manifest does not list as a slot")));
    }
    Ok(())
}

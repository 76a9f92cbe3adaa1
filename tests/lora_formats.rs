//! LoRA file loading against diffusers/PEFT goldens (tests/fixtures, made by
//! tools/reference/make_fixtures.py) and against hand-built files whose ΔW is computed here
//! from the factors written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flux_trt::lora::{self, LoraError, LoraFormat};
use flux_trt::tensor::{decode_into, DType, Matrix};
use safetensors::tensor::TensorView;
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Index {
    loras: Vec<LoraEntry>,
    bad: Vec<BadEntry>,
}

#[derive(Deserialize)]
struct LoraEntry {
    path: String,
    format: LoraFormat,
    adapter: String,
    scale: f64,
    modules: Vec<String>,
    golden_delta: String,
    text_encoder_golden: Option<String>,
}

#[derive(Deserialize)]
struct BadEntry {
    path: String,
    error: String,
    loader: String,
    key: Option<String>,
}

fn index() -> Index {
    let text = std::fs::read_to_string(fixtures().join("fixtures.json")).expect("tests/fixtures/fixtures.json");
    serde_json::from_str(&text).expect("fixtures.json parses")
}

fn read_matrix(view: &TensorView) -> Matrix {
    let dtype = DType::from_safetensors(view.dtype()).expect("float golden");
    let mut data = Vec::new();
    decode_into(dtype, view.data(), &mut data);
    let s = view.shape();
    assert_eq!(s.len(), 2);
    Matrix::from_vec(s[0], s[1], data).unwrap()
}

/// A golden file of factored ΔW (`<module>.down`, `<module>.up`, scale folded in) → ΔW per module.
fn golden_deltas(rel: &str) -> BTreeMap<String, Matrix> {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for name in st.names() {
        let Some(module) = name.strip_suffix(".down") else {
            assert!(name.ends_with(".up"), "unexpected golden key {name}");
            continue;
        };
        let down = read_matrix(&st.tensor(name).unwrap());
        let up = read_matrix(&st.tensor(&format!("{module}.up")).unwrap());
        out.insert(module.to_string(), up.matmul(&down).unwrap());
    }
    out
}

fn max_abs(m: &Matrix) -> f32 {
    m.data.iter().fold(0.0f32, |a, v| a.max(v.abs()))
}

/// Same module set; per module max|ours − golden| ≤ 1e-5 · max|golden| (the file's max for an
/// all-zero golden module, e.g. the proj_mlp part of a fused linear1 LoRA that targets q/k/v).
fn assert_deltas_match(what: &str, ours: &BTreeMap<String, Matrix>, golden: &BTreeMap<String, Matrix>) {
    let a: BTreeSet<_> = ours.keys().collect();
    let b: BTreeSet<_> = golden.keys().collect();
    assert_eq!(a, b, "{what}: module sets differ");
    let file_max = golden.values().map(max_abs).fold(0.0, f32::max);
    assert!(file_max > 0.0, "{what}: golden is all zero");
    for (name, g) in golden {
        let o = &ours[name];
        assert_eq!((o.rows, o.cols), (g.rows, g.cols), "{what}: {name} shape");
        let m = max_abs(g);
        let tol = 1e-5 * if m > 0.0 { m } else { file_max };
        let err = o.max_abs_diff(g);
        assert!(err <= tol, "{what}: {name}: max abs error {err} > {tol}");
    }
}

fn deltas(modules: &BTreeMap<String, lora::LoraModule>) -> BTreeMap<String, Matrix> {
    modules.iter().map(|(k, m)| (k.clone(), m.delta())).collect()
}

#[test]
fn every_fixture_lora_matches_its_diffusers_golden() {
    let idx = index();
    assert!(idx.loras.len() >= 12, "fixtures.json lists {} LoRA files", idx.loras.len());
    for e in &idx.loras {
        let path = fixtures().join(&e.path);
        assert_eq!(lora::detect_format(&path).unwrap(), e.format, "{}: detected format", e.path);
        let ad = lora::load(&path).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        assert_eq!(ad.format, e.format, "{}", e.path);
        assert_eq!(ad.modules.keys().cloned().collect::<Vec<_>>(), e.modules, "{}: module list", e.path);
        assert_deltas_match(&e.path, &deltas(&ad.modules), &golden_deltas(&e.golden_delta));
        // the file's own scaling: alpha/r (alpha/√r for rsLoRA); XLabs has none (folded into up)
        let want_scale = if e.format == LoraFormat::XLabs { 1.0 } else { e.scale };
        for (name, m) in &ad.modules {
            assert!((m.scale as f64 - want_scale).abs() <= 1e-6 * want_scale, "{}: {name}: scale {} vs {want_scale}", e.path, m.scale);
        }
        match &e.text_encoder_golden {
            Some(te) => assert_deltas_match(&format!("{} (text encoder)", e.path), &deltas(&ad.text_encoder), &golden_deltas(te)),
            None => assert!(ad.text_encoder.is_empty(), "{}: unexpected text-encoder modules", e.path),
        }
        let summary = ad.summary();
        assert_eq!(summary.modules.len(), ad.modules.len());
        assert_eq!(summary.text_encoder_modules, ad.text_encoder.len());
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["format"], serde_json::to_value(e.format).unwrap());
    }
}

#[test]
fn one_adapter_gives_one_delta_set_in_every_format() {
    let idx = index();
    let mut by_adapter: BTreeMap<&str, Vec<&LoraEntry>> = BTreeMap::new();
    idx.loras.iter().for_each(|e| by_adapter.entry(e.adapter.as_str()).or_default().push(e));
    let formats: BTreeSet<&str> = by_adapter["attn"].iter().map(|e| e.path.as_str()).collect();
    for f in ["attn.peft.", "attn.peft-alphakeys.", "attn.kohya.", "attn.comfy.", "attn.bfl.", "attn.xlabs."] {
        assert!(formats.iter().any(|p| p.contains(f)), "fixture {f}* missing");
    }
    assert!(by_adapter["full"].len() >= 2);
    let mut compared = 0;
    for files in by_adapter.values() {
        let loaded: Vec<_> = files.iter().map(|e| (e.path.as_str(), deltas(&lora::load(&fixtures().join(&e.path)).unwrap().modules))).collect();
        let (ref_path, reference) = &loaded[0];
        let ref_max = reference.values().map(max_abs).fold(0.0, f32::max);
        for (path, other) in &loaded[1..] {
            let names: BTreeSet<&String> = reference.keys().chain(other.keys()).collect();
            for name in names {
                let tol = 1e-5 * ref_max;
                match (reference.get(name), other.get(name)) {
                    (Some(a), Some(b)) => {
                        let err = a.max_abs_diff(b);
                        assert!(err <= tol, "{ref_path} vs {path}: {name}: {err}");
                    }
                    // a module only one form carries (proj_mlp of a fused linear1) must be zero
                    (Some(z), None) | (None, Some(z)) => assert!(max_abs(z) <= tol, "{ref_path} vs {path}: {name} only in one, nonzero"),
                    (None, None) => unreachable!(),
                }
            }
            compared += 1;
        }
    }
    assert!(compared >= 6);
}

#[test]
fn bad_fixtures_give_typed_errors_naming_file_and_key() {
    let idx = index();
    let mut seen = BTreeSet::new();
    for e in idx.bad.iter().filter(|e| e.loader == "lora" || e.loader == "any") {
        let path = fixtures().join(&e.path);
        let err = lora::load(&path).expect_err(&e.path);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{}: message does not name the file: {msg}", e.path);
        let key_named = |k: &str| match &err {
            LoraError::Unsupported { key, .. } | LoraError::UnknownKey { key, .. } => key == k,
            LoraError::NonFinite { tensor, .. } | LoraError::UnsupportedDtype { tensor, .. } => tensor == k,
            _ => false,
        };
        let ok = match e.error.as_str() {
            "dora" | "lokr" | "diff" => matches!(err, LoraError::Unsupported { .. }),
            "non_finite" => matches!(err, LoraError::NonFinite { .. }),
            "dtype" => matches!(err, LoraError::UnsupportedDtype { .. }),
            "unknown_key" => matches!(err, LoraError::UnknownKey { .. }),
            "truncated" | "offsets" => matches!(err, LoraError::Safetensors { .. }),
            "empty" => matches!(err, LoraError::Empty { .. }),
            other => panic!("{}: no expectation for bad-fixture kind `{other}`", e.path),
        };
        assert!(ok, "{}: expected {}, got {err:?}", e.path, e.error);
        if let (Some(k), false) = (&e.key, matches!(err, LoraError::Safetensors { .. })) {
            assert!(key_named(k), "{}: error does not name `{k}`: {msg}", e.path);
            assert!(msg.contains(k.as_str()), "{}: message does not name `{k}`: {msg}", e.path);
        }
        // detection reports the same refusal for adapter kinds that are not plain LoRA
        if matches!(err, LoraError::Unsupported { .. } | LoraError::Safetensors { .. } | LoraError::Empty { .. }) {
            assert_eq!(lora::detect_format(&path).unwrap_err().to_string(), msg, "{}", e.path);
        }
        seen.insert(e.error.clone());
    }
    for kind in ["dora", "lokr", "non_finite", "dtype", "unknown_key", "diff", "truncated", "empty"] {
        assert!(seen.contains(kind), "no bad fixture of kind {kind}");
    }
}

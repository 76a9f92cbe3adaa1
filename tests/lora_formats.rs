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
    models: BTreeMap<String, serde_json::Value>,
    loras: Vec<LoraEntry>,
    bad: Vec<BadEntry>,
}

#[derive(Deserialize)]
struct LoraEntry {
    path: String,
    format: LoraFormat,
    adapter: String,
    model: String,
    rank: usize,
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
            // fused kohya/BFL layers split to the adapter's own rank (block-diagonal files too)
            assert_eq!(m.rank(), e.rank, "{}: {name}: rank", e.path);
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

/// The fixture model's `FluxConfig` (fixtures.json `models.<m>.config` + `variant`).
fn model_config(idx: &Index, model: &str) -> flux_trt::FluxConfig {
    let m = &idx.models[model];
    let mut cfg = m["config"].clone();
    cfg["variant"] = m["variant"].clone();
    serde_json::from_value(cfg).expect("fixture model config")
}

#[test]
fn fixture_loras_fit_their_models_slots() {
    use flux_trt::lora::plan::PlanOptions;
    let idx = index();
    for e in &idx.loras {
        let cfg = model_config(&idx, &e.model);
        let ad = lora::load(&fixtures().join(&e.path)).unwrap();
        let plan = lora::SlotPlan::new(&cfg, &[&ad], &PlanOptions::default()).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        assert_eq!(plan.slots.len(), ad.modules.len(), "{}", e.path);
        let w = plan.lay_out(&[(&ad, 1.0)]).unwrap();
        for (i, slot) in plan.slots.iter().enumerate() {
            let want = ad.modules[&slot.module].delta();
            let got = w.b[i].matmul(&w.a[i]).unwrap();
            assert!(got.max_abs_diff(&want) <= 1e-5 * max_abs(&want).max(1e-6), "{}: slot {}", e.path, slot.module);
        }
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
        let err = lora_error(lora::load(&path).expect_err(&e.path));
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

// ---------------------------------------------------------------------------------------------
// Hand-built files: the expected ΔW is computed here from the factors written.

/// A deterministic pseudo-random matrix (values in [-1, 1)).
fn mat(rows: usize, cols: usize, seed: u32) -> Matrix {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let data = (0..rows * cols)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    Matrix::from_vec(rows, cols, data).unwrap()
}

enum T {
    M(Matrix),
    Scalar(f32),
    Raw(safetensors::Dtype, Vec<usize>, Vec<u8>),
}

fn write(dir: &Path, name: &str, tensors: Vec<(&str, T)>, metadata: Option<(&str, &str)>) -> PathBuf {
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, t)| match t {
            T::M(m) => (k.to_string(), safetensors::Dtype::F32, vec![m.rows, m.cols], m.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            T::Scalar(v) => (k.to_string(), safetensors::Dtype::F32, vec![], v.to_le_bytes().to_vec()),
            T::Raw(d, s, b) => (k.to_string(), d, s, b),
        })
        .collect();
    let views: Vec<(String, TensorView)> = owned.iter().map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let meta = metadata.map(|(k, v)| [(k.to_string(), v.to_string())].into_iter().collect());
    let bytes = safetensors::serialize(views, meta).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn scaled(mut m: Matrix, s: f32) -> Matrix {
    m.scale(s);
    m
}

fn assert_close(what: &str, got: &Matrix, want: &Matrix) {
    assert_eq!((got.rows, got.cols), (want.rows, want.cols), "{what}: shape");
    let tol = 1e-6 * max_abs(want).max(1e-3);
    assert!(got.max_abs_diff(want) <= tol, "{what}: error {}", got.max_abs_diff(want));
}

#[test]
fn kohya_fused_split_block_diagonal_final_layer_and_clip() {
    let dir = tempfile::tempdir().unwrap();
    let (h, mlp, r) = (8, 16, 2);
    // dense shared-A qkv, alpha 3 → scale 3/2
    let (qa, qb) = (mat(r, h, 1), mat(3 * h, r, 2));
    // block-diagonal linear1: down = cat(A_q, A_k, A_v, A_mlp), up = blockdiag(B_q, B_k, B_v, B_mlp)
    let parts_a: Vec<Matrix> = (0..4).map(|i| mat(r, h, 10 + i)).collect();
    let dims = [h, h, h, mlp];
    let parts_b: Vec<Matrix> = dims.iter().enumerate().map(|(i, d)| mat(*d, r, 20 + i as u32)).collect();
    let mut up = Matrix::zeros(3 * h + mlp, 4 * r);
    let mut row0 = 0;
    for (i, b) in parts_b.iter().enumerate() {
        for rr in 0..b.rows {
            for c in 0..r {
                up.data[(row0 + rr) * 4 * r + i * r + c] = b.get(rr, c);
            }
        }
        row0 += b.rows;
    }
    let down = Matrix::vstack(&parts_a).unwrap();
    // final layer: B rows in BFL (shift; scale) order, no alpha → scale 1
    let (fa, fb) = (mat(r, h, 30), mat(2 * h, r, 31));
    let (ta, tb) = (mat(r, 12, 40), mat(12, r, 41));
    let path = write(
        dir.path(),
        "k.safetensors",
        vec![
            ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", T::M(qa.clone())),
            ("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", T::M(qb.clone())),
            ("lora_unet_double_blocks_0_img_attn_qkv.alpha", T::Scalar(3.0)),
            ("lora_unet_single_blocks_1_linear1.lora_down.weight", T::M(down.clone())),
            ("lora_unet_single_blocks_1_linear1.lora_up.weight", T::M(up.clone())),
            ("lora_unet_single_blocks_1_linear1.alpha", T::Scalar(4.0)),
            ("lora_unet_final_layer_adaLN_modulation_1.lora_down.weight", T::M(fa.clone())),
            ("lora_unet_final_layer_adaLN_modulation_1.lora_up.weight", T::M(fb.clone())),
            ("lora_te1_text_model_encoder_layers_2_mlp_fc1.lora_down.weight", T::M(ta.clone())),
            ("lora_te1_text_model_encoder_layers_2_mlp_fc1.lora_up.weight", T::M(tb.clone())),
            ("lora_te1_text_model_encoder_layers_2_mlp_fc1.alpha", T::Scalar(1.0)),
        ],
        None,
    );
    assert_eq!(lora::detect_format(&path).unwrap(), LoraFormat::Kohya);
    let ad = lora::load(&path).unwrap();
    let qkv = qb.matmul(&qa).unwrap();
    for (i, n) in ["to_q", "to_k", "to_v"].iter().enumerate() {
        let m = &ad.modules[&format!("transformer_blocks.0.attn.{n}")];
        assert_eq!(m.rank(), r);
        assert_close(n, &m.delta(), &scaled(qkv.rows_slice(i * h, (i + 1) * h), 1.5));
    }
    // block-diagonal: each part keeps rank r, scale = alpha / down.rows = 4 / 8
    let full = up.matmul(&down).unwrap();
    let mut row0 = 0;
    for (i, n) in ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"].iter().enumerate() {
        let m = &ad.modules[&format!("single_transformer_blocks.1.{n}")];
        assert_eq!((m.rank(), m.scale), (r, 0.5), "{n}");
        assert_close(n, &m.delta(), &scaled(full.rows_slice(row0, row0 + dims[i]), 0.5));
        row0 += dims[i];
    }
    // norm_out.linear: diffusers (scale, shift) = BFL rows swapped
    let fd = fb.matmul(&fa).unwrap();
    let want = Matrix::vstack(&[fd.rows_slice(h, 2 * h), fd.rows_slice(0, h)]).unwrap();
    let m = &ad.modules["norm_out.linear"];
    assert_eq!(m.scale, 1.0);
    assert_close("norm_out", &m.delta(), &want);
    assert_eq!(ad.modules.len(), 3 + 4 + 1);
    let te = &ad.text_encoder["text_model.encoder.layers.2.mlp.fc1"];
    assert_close("clip", &te.delta(), &scaled(tb.matmul(&ta).unwrap(), 0.5));

    // a linear1 up with one nonzero off-diagonal element is dense: shared A, full rank 8
    let mut up2 = up.clone();
    up2.data[r] = 0.25; // row 0 (q's rows), column r (first column of k's block)
    let path = write(
        dir.path(),
        "k2.safetensors",
        vec![
            ("lora_unet_single_blocks_0_linear1.lora_down.weight", T::M(down.clone())),
            ("lora_unet_single_blocks_0_linear1.lora_up.weight", T::M(up2.clone())),
        ],
        None,
    );
    let ad = lora::load(&path).unwrap();
    let full = up2.matmul(&down).unwrap();
    let q = &ad.modules["single_transformer_blocks.0.attn.to_q"];
    assert_eq!((q.rank(), q.scale), (4 * r, 1.0));
    assert_close("dense q", &q.delta(), &full.rows_slice(0, h));
}

#[test]
fn comfy_linear1_qkv_clip_and_xlabs_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (h, r) = (8, 3);
    let (a, b) = (mat(r, h, 1), mat(3 * h, r, 2));
    let (ta, tb) = (mat(r, 12, 3), mat(12, r, 4));
    let path = write(
        dir.path(),
        "c.safetensors",
        vec![
            ("diffusion_model.single_blocks.4.linear1_qkv.lora_A.weight", T::M(a.clone())),
            ("diffusion_model.single_blocks.4.linear1_qkv.lora_B.weight", T::M(b.clone())),
            ("diffusion_model.single_blocks.4.linear1_qkv.alpha", T::Scalar(6.0)),
            ("text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.v_proj.lora_up.weight", T::M(tb.clone())),
            ("text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.v_proj.lora_down.weight", T::M(ta.clone())),
        ],
        None,
    );
    assert_eq!(lora::detect_format(&path).unwrap(), LoraFormat::BflComfy);
    let ad = lora::load(&path).unwrap();
    let d = b.matmul(&a).unwrap();
    assert_eq!(ad.modules.len(), 3, "linear1_qkv targets q, k, v only");
    for (i, n) in ["to_q", "to_k", "to_v"].iter().enumerate() {
        let m = &ad.modules[&format!("single_transformer_blocks.4.attn.{n}")];
        assert_close(n, &m.delta(), &scaled(d.rows_slice(i * h, (i + 1) * h), 2.0));
    }
    assert_close("clip", &ad.text_encoder["text_model.encoder.layers.0.self_attn.v_proj"].delta(), &tb.matmul(&ta).unwrap());

    // fal Kontext: BFL names under `base_model.model.`, no alpha
    let path = write(
        dir.path(),
        "fal.safetensors",
        vec![
            ("base_model.model.double_blocks.1.txt_mod.lin.lora_A.weight", T::M(mat(r, h, 7))),
            ("base_model.model.double_blocks.1.txt_mod.lin.lora_B.weight", T::M(mat(6 * h, r, 8))),
        ],
        None,
    );
    assert_eq!(lora::detect_format(&path).unwrap(), LoraFormat::BflComfy);
    let ad = lora::load(&path).unwrap();
    let m = &ad.modules["transformer_blocks.1.norm1_context.linear"];
    assert_close("fal", &m.delta(), &mat(6 * h, r, 8).matmul(&mat(r, h, 7)).unwrap());

    let (pa, pb) = (mat(r, 5 * h, 5), mat(h, r, 6));
    let path = write(
        dir.path(),
        "x.safetensors",
        vec![
            ("diffusion_model.single_blocks.0.processor.proj_lora.down.weight", T::M(pa.clone())),
            ("diffusion_model.single_blocks.0.processor.proj_lora.up.weight", T::M(pb.clone())),
        ],
        None,
    );
    let ad = lora::load(&path).unwrap();
    assert_eq!(ad.format, LoraFormat::XLabs);
    assert_close("xlabs proj", &ad.modules["single_transformer_blocks.0.proj_out"].delta(), &pb.matmul(&pa).unwrap());
}

#[test]
fn peft_metadata_patterns_rslora_and_bare_names() {
    let dir = tempfile::tempdir().unwrap();
    let h = 8;
    let (a4, b4) = (mat(4, h, 1), mat(h, 4, 2));
    let (a2, b2) = (mat(2, h, 3), mat(h, 2, 4));
    let (a1, b1) = (mat(1, h, 5), mat(h, 1, 6));
    // r 4 / alpha 8 by default; rank_pattern gives to_k rank 2 (whole-name `^` key) and every
    // `proj_out` leaf rank 1 (suffix match, PEFT `(.*\.)?(key)$`); alpha_pattern gives to_k 1.
    // Expected scales 2, 0.5, 8 (and 3 for rsLoRA below) are what peft 0.21.2
    // `inject_adapter_in_model` computes for the same LoraConfig on modules of these names.
    let meta = r#"{"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.use_rslora": false,
        "transformer.rank_pattern": {"^transformer_blocks.0.attn.to_k": 2, "proj_out": 1},
        "transformer.alpha_pattern": {"transformer_blocks.0.attn.to_k": 1},
        "transformer.target_modules": ["to_q", "to_k", "proj_out"], "transformer.peft_type": "LORA"}"#;
    let path = write(
        dir.path(),
        "p.safetensors",
        vec![
            ("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", T::M(a4.clone())),
            ("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", T::M(b4.clone())),
            ("transformer.transformer_blocks.0.attn.to_k.lora_A.weight", T::M(a2.clone())),
            ("transformer.transformer_blocks.0.attn.to_k.lora_B.weight", T::M(b2.clone())),
            ("transformer.single_transformer_blocks.0.proj_out.lora_A.weight", T::M(a1.clone())),
            ("transformer.single_transformer_blocks.0.proj_out.lora_B.weight", T::M(b1.clone())),
        ],
        Some(("lora_adapter_metadata", meta)),
    );
    let ad = lora::load(&path).unwrap();
    assert_eq!(ad.format, LoraFormat::Peft);
    assert_eq!(ad.modules["transformer_blocks.0.attn.to_q"].scale, 2.0);
    assert_eq!(ad.modules["transformer_blocks.0.attn.to_k"].scale, 0.5);
    assert_eq!(ad.modules["single_transformer_blocks.0.proj_out"].scale, 8.0);

    // rsLoRA, bare (model-level `save_lora_adapter`) names and unprefixed metadata
    let path = write(
        dir.path(),
        "bare.safetensors",
        vec![("proj_out.lora_A.weight", T::M(a4.clone())), ("proj_out.lora_B.weight", T::M(b4.clone()))],
        Some(("lora_adapter_metadata", r#"{"r": 4, "lora_alpha": 6, "use_rslora": true}"#)),
    );
    let ad = lora::load(&path).unwrap();
    assert_eq!(ad.modules["proj_out"].scale, 3.0);

    // metadata rank that disagrees with the tensors is refused (PEFT could not load it)
    let path = write(
        dir.path(),
        "wrong-r.safetensors",
        vec![("transformer.proj_out.lora_A.weight", T::M(a4.clone())), ("transformer.proj_out.lora_B.weight", T::M(b4.clone()))],
        Some(("lora_adapter_metadata", r#"{"transformer.r": 8, "transformer.lora_alpha": 8}"#)),
    );
    assert!(matches!(lora::load(&path).map_err(lora_error), Err(LoraError::Shape { .. })));

    // alpha keys for some modules but not others → Incomplete; alpha keys + metadata → Invalid
    let path = write(
        dir.path(),
        "partial.safetensors",
        vec![
            ("transformer.proj_out.lora_A.weight", T::M(a4.clone())),
            ("transformer.proj_out.lora_B.weight", T::M(b4.clone())),
            ("transformer.proj_out.alpha", T::Scalar(2.0)),
            ("transformer.x_embedder.lora_A.weight", T::M(a4.clone())),
            ("transformer.x_embedder.lora_B.weight", T::M(b4.clone())),
        ],
        None,
    );
    let err = lora_error(lora::load(&path).unwrap_err());
    assert!(matches!(&err, LoraError::Incomplete { module, .. } if module == "x_embedder"), "{err}");
    let path = write(
        dir.path(),
        "both.safetensors",
        vec![
            ("transformer.proj_out.lora_A.weight", T::M(a4.clone())),
            ("transformer.proj_out.lora_B.weight", T::M(b4.clone())),
            ("transformer.proj_out.alpha", T::Scalar(2.0)),
        ],
        Some(("lora_adapter_metadata", r#"{"transformer.r": 4, "transformer.lora_alpha": 8}"#)),
    );
    assert!(matches!(lora::load(&path).map_err(lora_error), Err(LoraError::Invalid { .. })));
    let path = write(
        dir.path(),
        "regex.safetensors",
        vec![("transformer.proj_out.lora_A.weight", T::M(a4.clone())), ("transformer.proj_out.lora_B.weight", T::M(b4.clone()))],
        Some(("lora_adapter_metadata", r#"{"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.alpha_pattern": {".*proj_out": 2}}"#)),
    );
    assert!(matches!(lora::load(&path).map_err(lora_error), Err(LoraError::Invalid { .. })));
}

#[test]
fn structural_errors_are_typed_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let h = 8;
    let (a, b) = (mat(2, h, 1), mat(h, 2, 2));
    let expect = |name: &str, tensors: Vec<(&str, T)>, check: &dyn Fn(&LoraError) -> bool, names: &str| {
        let path = write(dir.path(), name, tensors, None);
        let err = lora_error(lora::load(&path).unwrap_err());
        assert!(check(&err), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains(names), "{name}: `{msg}` should name `{names}`");
    };
    expect(
        "a-only.safetensors",
        vec![("transformer.proj_out.lora_A.weight", T::M(a.clone()))],
        &|e| matches!(e, LoraError::Incomplete { .. }),
        "transformer.proj_out.lora_A.weight",
    );
    expect(
        "rank.safetensors",
        vec![("transformer.proj_out.lora_A.weight", T::M(a.clone())), ("transformer.proj_out.lora_B.weight", T::M(mat(h, 3, 3)))],
        &|e| matches!(e, LoraError::Shape { .. }),
        "transformer.proj_out.lora_B.weight",
    );
    expect(
        "qkv-rows.safetensors",
        vec![
            ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", T::M(a.clone())),
            ("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", T::M(mat(3 * h + 1, 2, 4))),
        ],
        &|e| matches!(e, LoraError::Shape { .. }),
        "lora_unet_double_blocks_0_img_attn_qkv",
    );
    expect(
        "t5.safetensors",
        vec![
            ("lora_unet_img_in.lora_down.weight", T::M(a.clone())),
            ("lora_unet_img_in.lora_up.weight", T::M(b.clone())),
            ("lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight", T::M(a.clone())),
        ],
        &|e| matches!(e, LoraError::Unsupported { .. }),
        "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight",
    );
    expect(
        "bias.safetensors",
        vec![
            ("double_blocks.0.img_mlp.0.lora_A.weight", T::M(a.clone())),
            ("double_blocks.0.img_mlp.0.lora_B.weight", T::M(b.clone())),
            ("double_blocks.0.img_mlp.0.lora_B.bias", T::Raw(safetensors::Dtype::F32, vec![h], vec![0; 4 * h])),
        ],
        &|e| matches!(e, LoraError::Unsupported { .. }),
        "double_blocks.0.img_mlp.0.lora_B.bias",
    );
    expect(
        "control.safetensors",
        vec![
            ("img_in.lora_A.weight", T::M(a.clone())),
            ("img_in.lora_B.weight", T::M(b.clone())),
            ("double_blocks.0.img_attn.norm.key_norm.scale", T::Raw(safetensors::Dtype::F32, vec![4], vec![0; 16])),
        ],
        &|e| matches!(e, LoraError::Unsupported { .. }),
        "double_blocks.0.img_attn.norm.key_norm.scale",
    );
    expect(
        "kohya-unknown.safetensors",
        vec![
            ("lora_unet_double_blocks_0_img_attn_norm.lora_down.weight", T::M(a.clone())),
            ("lora_unet_double_blocks_0_img_attn_norm.lora_up.weight", T::M(b.clone())),
        ],
        &|e| matches!(e, LoraError::UnknownKey { .. }),
        "lora_unet_double_blocks_0_img_attn_norm.lora_down.weight",
    );
    expect(
        "twice.safetensors",
        vec![
            ("diffusion_model.single_blocks.0.linear1.lora_A.weight", T::M(a.clone())),
            ("diffusion_model.single_blocks.0.linear1.lora_B.weight", T::M(mat(5 * h, 2, 5))),
            ("diffusion_model.single_blocks.0.linear1_qkv.lora_A.weight", T::M(a.clone())),
            ("diffusion_model.single_blocks.0.linear1_qkv.lora_B.weight", T::M(mat(3 * h, 2, 6))),
        ],
        &|e| matches!(e, LoraError::Invalid { .. }),
        "linear1",
    );
    expect(
        "alpha-int.safetensors",
        vec![
            ("lora_unet_img_in.lora_down.weight", T::M(a.clone())),
            ("lora_unet_img_in.lora_up.weight", T::M(b.clone())),
            ("lora_unet_img_in.alpha", T::Raw(safetensors::Dtype::I64, vec![], 4i64.to_le_bytes().to_vec())),
        ],
        &|e| matches!(e, LoraError::UnsupportedDtype { .. }),
        "lora_unet_img_in.alpha",
    );
    expect(
        "inf-alpha.safetensors",
        vec![
            ("lora_unet_img_in.lora_down.weight", T::M(a.clone())),
            ("lora_unet_img_in.lora_up.weight", T::M(b.clone())),
            ("lora_unet_img_in.alpha", T::Scalar(f32::INFINITY)),
        ],
        &|e| matches!(e, LoraError::NonFinite { .. }),
        "lora_unet_img_in.alpha",
    );
    expect("what.safetensors", vec![("model.layers.0.weight", T::M(a.clone()))], &|e| matches!(e, LoraError::UnknownFormat { .. }), "model.layers.0.weight");
    // a valid header with no tensors
    let path = write(dir.path(), "none.safetensors", vec![], None);
    assert!(matches!(lora::load(&path).map_err(lora_error), Err(LoraError::Empty { .. })));
    let missing = dir.path().join("missing.safetensors");
    assert!(matches!(lora::load(&missing).map_err(lora_error), Err(LoraError::File(_))));
}

#[test]
fn half_precision_factors_decode_exactly() {
    use flux_trt::tensor::encode_into;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (mat(2, 8, 1), mat(8, 2, 2));
    let raw = |dt: DType, m: &Matrix| {
        let mut bytes = Vec::new();
        encode_into(dt, &m.data, &mut bytes);
        let mut back = Vec::new();
        decode_into(dt, &bytes, &mut back);
        (T::Raw(dt.to_safetensors(), vec![m.rows, m.cols], bytes), Matrix::from_vec(m.rows, m.cols, back).unwrap())
    };
    let ((ta, ra), (tb, rb)) = (raw(DType::BF16, &a), raw(DType::F16, &b));
    let path = write(
        dir.path(),
        "half.safetensors",
        vec![
            ("transformer.x_embedder.lora_A.weight", ta),
            ("transformer.x_embedder.lora_B.weight", tb),
            ("transformer.x_embedder.alpha", T::Raw(safetensors::Dtype::BF16, vec![], half::bf16::from_f32(1.0).to_le_bytes().to_vec())),
        ],
        None,
    );
    let ad = lora::load(&path).unwrap();
    let m = &ad.modules["x_embedder"];
    assert_eq!((&m.a, &m.b, m.scale), (&ra, &rb, 0.5));
}

/// The LoRA error inside a crate error.
fn lora_error(e: flux_trt::Error) -> LoraError {
    match e {
        flux_trt::Error::Lora(e) => e,
        other => panic!("not a LoRA file error: {other}"),
    }
}

//! Checkpoint loading against the reference fixtures (tests/fixtures, written by
//! tools/reference/make_fixtures.py with diffusers): BFL files vs diffusers folders of the same
//! tiny models, fused groups, and every kind of bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flux_trt::checkpoint::{CheckpointError, Layout};
use flux_trt::flux::Variant;
use flux_trt::tensor::DType;
use flux_trt::Checkpoint;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn index() -> Value {
    let text = std::fs::read_to_string(fixtures().join("fixtures.json")).expect("fixtures.json");
    serde_json::from_str(&text).expect("fixtures.json parses")
}

fn model_path(model: &str, layout: &str) -> PathBuf {
    let rel = index()["models"][model][layout]["path"].as_str().expect("model path").to_string();
    fixtures().join(rel)
}

fn open(p: &Path) -> Checkpoint {
    Checkpoint::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// Stored tensors of a file, read independently with the safetensors crate.
fn read_stored(p: &Path) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(p).expect("read fixture");
    let st = SafeTensors::deserialize(&bytes).expect("fixture deserializes");
    let mut v: Vec<_> = st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes `tensors` as a safetensors file `name` in `dir`.
fn write_st(dir: &Path, name: &str, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> PathBuf {
    let views: Vec<(String, TensorView<'_>)> = tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("valid view"))).collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p
}

fn check_matches_fixture_config(ck: &Checkpoint, model: &str) {
    let want = &index()["models"][model];
    let c = ck.config();
    let wc = &want["config"];
    let n = |k: &str| wc[k].as_u64().unwrap_or_else(|| panic!("{k}")) as usize;
    assert_eq!(c.variant.name(), want["variant"].as_str().unwrap());
    assert_eq!(c.hidden_size, n("hidden_size"));
    assert_eq!(c.num_heads, n("num_heads"));
    assert_eq!(c.head_dim, n("head_dim"));
    assert_eq!(c.num_double_blocks, n("num_double_blocks"));
    assert_eq!(c.num_single_blocks, n("num_single_blocks"));
    assert_eq!(c.in_channels, n("in_channels"));
    assert_eq!(c.out_channels, n("out_channels"));
    assert_eq!(c.context_dim, n("context_dim"));
    assert_eq!(c.pooled_dim, n("pooled_dim"));
    assert_eq!(c.mlp_hidden, n("mlp_hidden"));
    let axes: Vec<usize> = wc["axes_dim"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(c.axes_dim.to_vec(), axes);
    assert_eq!(c.rope_theta as u64, wc["rope_theta"].as_u64().unwrap());
    assert_eq!(c.variant.has_guidance(), wc["guidance_embeds"].as_bool().unwrap());
}

/// Every canonical tensor of `a` and `b`: same names, shapes, dtypes, bytes and values.
fn assert_same_tensors(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.names(), b.names());
    for name in a.names() {
        let (ta, tb) = (a.tensor(&name).unwrap(), b.tensor(&name).unwrap());
        assert_eq!(ta.shape, tb.shape, "{name}");
        assert_eq!(ta.dtype, tb.dtype, "{name}");
        assert_eq!(ta.nbytes(), tb.nbytes(), "{name}");
        assert_eq!(ta.nbytes(), ta.numel() * ta.dtype.size(), "{name}");
        assert_eq!(ta.to_f32(), tb.to_f32(), "{name}");
    }
}

fn bfl_vs_diffusers(model: &str) -> (Checkpoint, Checkpoint) {
    let bfl = open(&model_path(model, "bfl"));
    let dif = open(&model_path(model, "diffusers"));
    assert_eq!(bfl.layout(), Layout::Bfl);
    assert_eq!(dif.layout(), Layout::Diffusers);
    check_matches_fixture_config(&bfl, model);
    check_matches_fixture_config(&dif, model);
    assert_eq!(bfl.config(), dif.config());
    // The canonical names are exactly the architecture's parameters.
    let mut want: Vec<String> = bfl.config().parameter_shapes().into_iter().map(|(n, _)| n).collect();
    want.sort();
    assert_eq!(bfl.names(), want);
    let counts = &index()["models"][model]["num_tensors"];
    assert_eq!(bfl.stored_tensor_count() as u64, counts["bfl"].as_u64().unwrap());
    assert_eq!(dif.stored_tensor_count() as u64, counts["diffusers"].as_u64().unwrap());
    assert_same_tensors(&bfl, &dif);
    (bfl, dif)
}

#[test]
fn dev_bfl_equals_sharded_diffusers() {
    let (bfl, dif) = bfl_vs_diffusers("dev");
    assert_eq!(bfl.config().variant, Variant::Dev);
    assert_eq!((bfl.config().num_double_blocks, bfl.config().num_single_blocks), (2, 2));
    assert!(bfl.contains("time_text_embed.guidance_embedder.linear_1.weight"));
    assert_eq!(dif.files().len(), 2, "dev-diffusers is sharded");
    // The final layer's (shift, scale) → (scale, shift) swap is two borrowed parts.
    assert_eq!(bfl.tensor("norm_out.linear.weight").unwrap().parts.len(), 2);
    assert_eq!(dif.tensor("norm_out.linear.weight").unwrap().parts.len(), 1);
    // A qkv split member is one contiguous range.
    assert_eq!(bfl.tensor("transformer_blocks.1.attn.to_k.weight").unwrap().parts.len(), 1);
}

#[test]
fn schnell_bfl_equals_diffusers() {
    let (bfl, dif) = bfl_vs_diffusers("schnell");
    assert_eq!(dif.config().variant, Variant::Schnell);
    assert_eq!((bfl.config().num_double_blocks, bfl.config().num_single_blocks), (1, 1));
    assert!(!bfl.names().iter().any(|n| n.contains("guidance")));
}

#[test]
fn weight_bytes_are_borrowed_from_the_file() {
    // BFL to_v = rows [2h, 3h) of the stored qkv: compare with the file's bytes, independently read.
    let p = model_path("dev", "bfl");
    let ck = open(&p);
    let h = ck.config().hidden_size;
    let stored = read_stored(&p);
    let qkv = stored.iter().find(|t| t.0 == "double_blocks.0.txt_attn.qkv.weight").unwrap();
    let row = h * 4;
    let v = ck.tensor("transformer_blocks.0.attn.add_v_proj.weight").unwrap();
    assert_eq!(v.parts, vec![&qkv.3[2 * h * row..3 * h * row]]);
    let m = ck.tensor("single_transformer_blocks.1.proj_mlp.bias").unwrap();
    let lin1 = stored.iter().find(|t| t.0 == "single_blocks.1.linear1.bias").unwrap();
    assert_eq!(m.parts, vec![&lin1.3[3 * h * 4..]]);
    // Swap: canonical = [scale; shift] = stored rows [h, 2h) then [0, h).
    let ada = stored.iter().find(|t| t.0 == "final_layer.adaLN_modulation.1.bias").unwrap();
    let n = ck.tensor("norm_out.linear.bias").unwrap();
    assert_eq!(n.parts, vec![&ada.3[h * 4..], &ada.3[..h * 4]]);
}

#[test]
fn prefixed_bfl_file_is_identical() {
    let p = model_path("dev", "bfl");
    let tmp = tempfile::tempdir().unwrap();
    let prefixed: Vec<_> = read_stored(&p).into_iter().map(|(n, d, s, b)| (format!("model.diffusion_model.{n}"), d, s, b)).collect();
    let q = write_st(tmp.path(), "prefixed.safetensors", &prefixed);
    let (a, b) = (open(&p), open(&q));
    assert_eq!(b.key_prefix(), "model.diffusion_model.");
    assert_eq!(b.layout(), Layout::Bfl);
    assert_eq!(a.config(), b.config());
    assert_same_tensors(&a, &b);
}

#[test]
fn fused_groups() {
    let bfl = open(&model_path("dev", "bfl"));
    let dif = open(&model_path("dev", "diffusers"));
    let stored: BTreeMap<String, Vec<u8>> = read_stored(&model_path("dev", "bfl")).into_iter().map(|(n, _, _, b)| (n, b)).collect();
    let groups = bfl.config().fused_groups();
    assert_eq!(groups.len(), 2 * 2 + 2);
    for g in &groups {
        for suffix in ["weight", "bias"] {
            for ck in [&bfl, &dif] {
                let f = ck.fused(g, suffix).unwrap();
                let mut cat = Vec::new();
                let mut rows = 0;
                for m in &g.members {
                    let t = ck.tensor(&format!("{m}.{suffix}")).unwrap();
                    rows += t.shape[0];
                    cat.extend(t.to_f32());
                }
                assert_eq!(f.shape[0], rows, "{}", f.name);
                assert_eq!(f.to_f32(), cat, "{}", f.name);
            }
            // BFL: the stored fused tensor itself, one borrowed part.
            let key = if g.name.ends_with(".add_qkv") {
                g.name.replace("transformer_blocks.", "double_blocks.").replace(".attn.add_qkv", ".txt_attn.qkv")
            } else if g.name.ends_with(".qkv") {
                g.name.replace("transformer_blocks.", "double_blocks.").replace(".attn.qkv", ".img_attn.qkv")
            } else {
                g.name.replace("single_transformer_blocks.", "single_blocks.")
            };
            let f = bfl.fused(g, suffix).unwrap();
            assert_eq!(f.parts.len(), 1, "{}", f.name);
            assert_eq!(f.parts[0], stored[&format!("{key}.{suffix}")].as_slice(), "{key}");
        }
    }
    assert!(matches!(bfl.fused(&groups[0], "scale"), Err(CheckpointError::Missing { .. })));
}

#[test]
fn single_diffusers_file_and_pipeline_root() {
    let dir = model_path("schnell", "diffusers");
    let folder = open(&dir);
    let file = open(&dir.join("diffusion_pytorch_model.safetensors"));
    assert_eq!(file.layout(), Layout::Diffusers);
    assert_eq!(file.config(), folder.config());
    assert_same_tensors(&file, &folder);

    let tmp = tempfile::tempdir().unwrap();
    let tdir = tmp.path().join("transformer");
    std::fs::create_dir(&tdir).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(dir.join(f), tdir.join(f)).unwrap();
    }
    let root = open(tmp.path());
    assert_eq!(root.path(), tdir.as_path());
    assert_same_tensors(&root, &folder);
}

#[test]
fn axes_come_from_config_json() {
    let dir = model_path("schnell", "diffusers");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("diffusion_pytorch_model.safetensors"), tmp.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["axes_dims_rope"] = serde_json::json!([8, 12, 12]);
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    assert_eq!(open(tmp.path()).config().axes_dim, [8, 12, 12]);
    // A BFL file has no config: the documented default split of head_dim 32.
    assert_eq!(open(&model_path("schnell", "bfl")).config().axes_dim, [4, 14, 14]);
}

#[test]
fn half_precision_and_summary() {
    let p = model_path("schnell", "bfl");
    let tmp = tempfile::tempdir().unwrap();
    let half: Vec<_> = read_stored(&p)
        .into_iter()
        .map(|(n, _, s, b)| {
            let mut out = Vec::new();
            flux_trt::tensor::convert_into(DType::F32, DType::BF16, &b, &mut out);
            (n, Dtype::BF16, s, out)
        })
        .collect();
    let q = write_st(tmp.path(), "bf16.safetensors", &half);
    let (a, b) = (open(&p), open(&q));
    for name in a.names() {
        let (ta, tb) = (a.tensor(&name).unwrap(), b.tensor(&name).unwrap());
        assert_eq!(tb.dtype, DType::BF16);
        let rounded: Vec<f32> = ta.to_f32().iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect();
        assert_eq!(tb.to_f32(), rounded, "{name}");
    }
    let s = b.describe();
    let params: usize = b.config().parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(s.params, params as u64);
    assert_eq!(s.bytes, 2 * params as u64);
    assert_eq!(s.dtypes, BTreeMap::from([("bf16".to_string(), s.tensors)]));
    assert_eq!(s.stored_tensors, 48);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["variant"], "schnell");
    assert_eq!(json["layout"], "bfl");
    let text = s.to_string();
    assert!(text.contains("FLUX.1 schnell") && text.contains("1 double + 1 single"), "{text}");
}

// ---------- bad inputs ----------

fn err_of(p: &Path) -> CheckpointError {
    match Checkpoint::open(p) {
        Ok(_) => panic!("{} opened but should fail", p.display()),
        Err(flux_trt::Error::Checkpoint(e)) => e,
        Err(other) => panic!("{}: not a checkpoint error: {other}", p.display()),
    }
}

fn assert_names(e: &CheckpointError, file: &Path, key: Option<&str>) {
    let msg = e.to_string();
    let fname = file.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(fname), "`{msg}` does not name {fname}");
    if let Some(k) = key {
        assert!(msg.contains(k), "`{msg}` does not name `{k}`");
    }
}

/// schnell-bfl with `edit` applied to its stored tensors, written to a temp dir.
fn edited_schnell(tmp: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let mut t = read_stored(&model_path("schnell", "bfl"));
    edit(&mut t);
    write_st(tmp, "edited.safetensors", &t)
}

#[test]
fn bad_truncated() {
    let p = fixtures().join("bad/truncated.safetensors");
    let e = err_of(&p);
    assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e:?}");
    // Name a tensor whose data lies past the end: read the (intact) header independently.
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data_len = bytes.len() - 8 - n;
    let beyond: Vec<&String> =
        header.iter().filter(|(k, v)| *k != "__metadata__" && v["data_offsets"][1].as_u64().unwrap() as usize > data_len).map(|(k, _)| k).collect();
    assert!(!beyond.is_empty());
    assert_names(&e, &p, None);
    assert!(beyond.iter().any(|k| e.to_string().contains(k.as_str())), "{e}");
}

#[test]
fn bad_offsets() {
    let p = fixtures().join("bad/bad-offsets.safetensors");
    let e = err_of(&p);
    assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e:?}");
    assert_names(&e, &p, Some("transformer.transformer_blocks.0.attn.to_q.lora_A.weight"));
}

#[test]
fn bad_empty() {
    let p = fixtures().join("bad/empty.safetensors");
    let e = err_of(&p);
    assert!(matches!(e, CheckpointError::Safetensors { .. }), "{e:?}");
    assert_names(&e, &p, Some("empty"));
}

#[test]
fn bad_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let p = edited_schnell(tmp.path(), |t| {
        let x = t.iter_mut().find(|x| x.0 == "img_in.bias").unwrap();
        x.1 = Dtype::I32;
    });
    let e = err_of(&p);
    assert!(matches!(&e, CheckpointError::DType { tensor, .. } if tensor == "img_in.bias"), "{e:?}");
    assert_names(&e, &p, Some("img_in.bias"));
    // The fixture LoRA with an I32 tensor is rejected for its dtype as well.
    let q = fixtures().join("bad/int.peft.safetensors");
    let e = err_of(&q);
    assert!(matches!(e, CheckpointError::DType { .. }), "{e:?}");
    assert_names(&e, &q, Some("transformer.transformer_blocks.0.attn.to_q.lora_A.weight"));
}

#[test]
fn bad_folder_without_config() {
    let p = fixtures().join("bad/no-config");
    let e = err_of(&p);
    assert!(matches!(e, CheckpointError::NoConfig { .. }), "{e:?}");
    assert_names(&e, &p, Some("config.json"));
}

#[test]
fn bad_mixed_layout() {
    let p = fixtures().join("bad/mixed-layout.safetensors");
    let e = err_of(&p);
    let CheckpointError::MixedLayout { bfl_key, diffusers_key, .. } = &e else { panic!("{e:?}") };
    let keys: Vec<String> = read_stored(&p).into_iter().map(|t| t.0).collect();
    assert!(keys.contains(bfl_key) && keys.contains(diffusers_key));
    assert_names(&e, &p, Some(bfl_key));
    assert_names(&e, &p, Some(diffusers_key));
}

#[test]
fn bad_missing_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let p = edited_schnell(tmp.path(), |t| t.retain(|x| x.0 != "double_blocks.0.img_attn.proj.weight"));
    let e = err_of(&p);
    assert!(matches!(e, CheckpointError::MissingTensor { .. }), "{e:?}");
    assert_names(&e, &p, Some("double_blocks.0.img_attn.proj.weight"));
    assert!(e.to_string().contains("transformer_blocks.0.attn.to_out.0.weight"), "{e}");
}

#[test]
fn bad_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let p = edited_schnell(tmp.path(), |t| {
        let x = t.iter_mut().find(|x| x.0 == "single_blocks.0.linear2.weight").unwrap();
        let (r, c) = (x.2[0], x.2[1]);
        x.2 = vec![r, c - 1];
        x.3.truncate(r * (c - 1) * 4);
    });
    let e = err_of(&p);
    let CheckpointError::Shape { expected, found, .. } = &e else { panic!("{e:?}") };
    assert_eq!(expected[1], found[1] + 1);
    assert_names(&e, &p, Some("single_blocks.0.linear2.weight"));
}

#[test]
fn bad_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    for extra in ["double_blocks.0.img_attn.extra.weight", "vae.decoder.conv_in.weight"] {
        let p = edited_schnell(tmp.path(), |t| t.push((extra.into(), Dtype::F32, vec![2], vec![0; 8])));
        let e = err_of(&p);
        assert!(matches!(e, CheckpointError::UnknownKey { .. }), "{e:?}");
        assert_names(&e, &p, Some(extra));
    }
    // A LoRA file is not a checkpoint at all.
    let q = fixtures().join("bad/unknown-keys.safetensors");
    let e = err_of(&q);
    assert!(matches!(e, CheckpointError::NotFlux { .. }), "{e:?}");
    assert_names(&e, &q, None);
}

#[test]
fn bad_config_contradicts_tensors() {
    let dir = model_path("schnell", "diffusers");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("diffusion_pytorch_model.safetensors"), tmp.path().join("diffusion_pytorch_model.safetensors")).unwrap();
    let base: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    for (key, val) in [("num_layers", serde_json::json!(3)), ("guidance_embeds", serde_json::json!(true))] {
        let mut cfg = base.clone();
        cfg[key] = val;
        std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
        let e = err_of(tmp.path());
        assert!(matches!(e, CheckpointError::Config { .. }), "{e:?}");
        assert_names(&e, &tmp.path().join("config.json"), Some(key));
    }
}

#[test]
fn bad_shard_index() {
    // An index naming a tensor its shard does not hold.
    let dir = model_path("dev", "diffusers");
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    let ip = tmp.path().join("diffusion_pytorch_model.safetensors.index.json");
    let mut idx: Value = serde_json::from_str(&std::fs::read_to_string(&ip).unwrap()).unwrap();
    let shard = idx["weight_map"]["x_embedder.weight"].clone();
    idx["weight_map"]["x_embedder.extra"] = shard.clone();
    std::fs::write(&ip, idx.to_string()).unwrap();
    let e = err_of(tmp.path());
    assert!(matches!(e, CheckpointError::MissingTensor { .. }), "{e:?}");
    assert_names(&e, Path::new(shard.as_str().unwrap()), Some("x_embedder.extra"));
}

#[test]
fn failed_open_leaves_open_checkpoint_unchanged() {
    let good = open(&model_path("dev", "bfl"));
    let before = good.tensor("transformer_blocks.1.attn.to_q.weight").unwrap().to_f32();
    let names = good.names();
    for bad in ["bad/truncated.safetensors", "bad/mixed-layout.safetensors", "bad/empty.safetensors", "bad/no-config"] {
        assert!(Checkpoint::open(&fixtures().join(bad)).is_err());
    }
    assert_eq!(good.names(), names);
    assert_eq!(good.tensor("transformer_blocks.1.attn.to_q.weight").unwrap().to_f32(), before);
}

//! The VAE decoder export (`flux_trt::onnx::components::vae`) against diffusers
//! `AutoencoderKL.decode` goldens, run with ONNX Runtime (CPU), checked by `onnx.checker`, parsed
//! by TensorRT-RTX's ONNX parser (feature `tensorrt`), and fed bad folders/configs.
//!
//! Fixtures: `tests/fixtures/pipeline/` (the tiny FluxPipeline's VAE and its 3-step generation)
//! and `tests/fixtures/vae/` (`tools/reference/vae_golden.py`: non-square batch-2 goldens, a
//! perturbed VAE with post_quant_conv, FLUX.1's config and decoder parameter shapes).
#![cfg(all(feature = "export", feature = "ort"))]

#[path = "ort_support/mod.rs"]
mod ort_support;
#[cfg(feature = "tensorrt")]
#[path = "trt_support/mod.rs"]
mod trt_support;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flux_trt::checkpoint::{CheckpointError, ComponentWeights};
use flux_trt::onnx::components::vae::{build_decoder, build_decoder_model, VaeDecoderConfig, VaeError, INPUT, OUTPUT};
use flux_trt::onnx::graph::Graph;
use flux_trt::onnx::{write_model_files, OnnxError};
use flux_trt::tensor::DType;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;

/// fp32 graphs vs diffusers fp32: max|Δ| / max|golden|. Measured ≈ 2e-7 .. 1e-6 (op order only).
const TOL_F32: f32 = 1e-5;
/// fp16 graphs (GroupNorm and softmax in f32) vs the fp32 golden. Measured ≈ 2e-3.
const TOL_F16: f32 = 1e-2;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
fn tiny_dir() -> PathBuf {
    fixtures().join("pipeline/flux-tiny/vae")
}
fn perturbed_dir() -> PathBuf {
    fixtures().join("vae/perturbed")
}

/// A float32 tensor: shape and data.
#[derive(Clone, Debug)]
struct T {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn read_f32(path: &Path) -> BTreeMap<String, T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
        .map(|(n, v)| {
            let data = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (n, T { shape: v.shape().to_vec(), data })
        })
        .collect()
}

fn rel_err(got: &T, want: &T) -> f32 {
    assert_eq!(got.shape, want.shape, "output shape");
    let d = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let m = want.data.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(got.data.iter().all(|v| v.is_finite()), "non-finite output");
    d / m.max(f32::MIN_POSITIVE)
}

/// Exports the decoder of `dir` in `dtype` into a fresh temp folder; returns (folder, model path).
fn export(dir: &Path, dtype: DType) -> (tempfile::TempDir, PathBuf) {
    let w = ComponentWeights::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let cfg = VaeDecoderConfig::try_from(&w).unwrap_or_else(|e| panic!("{e}"));
    let built = build_decoder_model(&w, &cfg, dtype).unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().expect("tempdir");
    let model = write_model_files(&built, &w.files(), out.path()).unwrap_or_else(|e| panic!("{e}"));
    (out, model)
}

fn ort_env() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = ort_support::ort_library();
        ort::init_from(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display())).with_name("vae-test").build().expect("ORT environment")
    })
}

fn session(model: &Path) -> Session {
    let b = Session::builder(ort_env()).unwrap_or_else(|e| panic!("session builder: {e}"));
    let mut b = b.with_intra_threads(2).unwrap_or_else(|e| panic!("threads: {e}"));
    b.commit_from_file(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()))
}

fn decode(s: &mut Session, latents: &T) -> T {
    let v = TensorRef::from_array_view((latents.shape.clone(), latents.data.as_slice())).expect("input tensor");
    let feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![(Cow::Borrowed(INPUT), v.into())];
    let out = s.run(feeds).unwrap_or_else(|e| panic!("run: {e}"));
    let (shape, data) = out[OUTPUT].try_extract_tensor::<f32>().expect("f32 output");
    T { shape: shape.iter().map(|d| *d as usize).collect(), data: data.to_vec() }
}

/// `onnx.checker.check_model(path, full_check=True)` (external data resolved from the path).
fn onnx_check(model: &Path) {
    let out = Command::new("python3")
        .args(["-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)"])
        .arg(model)
        .output()
        .expect("python3 with onnx");
    assert!(out.status.success(), "onnx.checker: {}", String::from_utf8_lossy(&out.stderr));
}

/// The pipeline golden's final latents, unpacked to `[1, 16, 8, 8]` (not yet scaled/shifted).
fn pipeline_latents() -> (T, T, T) {
    let g = read_f32(&fixtures().join("pipeline/generation.safetensors"));
    let last = (0..).take_while(|i| g.contains_key(&format!("latents.{i}"))).last().expect("latents.N");
    let packed = &g[&format!("latents.{last}")];
    let data = flux_trt::pipeline::latents::unpack(&packed.data, 1, 16, 8, 8).unwrap_or_else(|e| panic!("{e}"));
    (T { shape: vec![1, 16, 8, 8], data }, g["vae_input"].clone(), g["decoded"].clone())
}

#[test]
fn tiny_pipeline_vae_decodes_like_diffusers() {
    let (dir, model) = export(&tiny_dir(), DType::F32);
    onnx_check(&model);
    let mut s = session(&model);

    // The graph takes the raw latents: the golden's `vae_input` is ours / 0.3611 + 0.1159.
    let (latents, vae_input, decoded) = pipeline_latents();
    let scaled: Vec<f32> = latents.data.iter().map(|v| v / 0.3611 + 0.1159).collect();
    let d = scaled.iter().zip(&vae_input.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(d <= 1e-6, "fixture: vae_input is not unpack(latents.last)/0.3611+0.1159 (max diff {d})");
    let e = rel_err(&decode(&mut s, &latents), &decoded);
    eprintln!("tiny 64x64 fp32 rel err {e:e}");
    assert!(e <= TOL_F32, "64x64: {e}");

    // Same session, other batch and a non-square grid (dynamic dims).
    let g = read_f32(&fixtures().join("vae/goldens.safetensors"));
    let e = rel_err(&decode(&mut s, &g["tiny.latents"]), &g["tiny.decoded"]);
    eprintln!("tiny 2x48x80 fp32 rel err {e:e}");
    assert!(e <= TOL_F32, "batch 2, 48x80: {e}");
    drop(dir);
}

#[test]
fn perturbed_vae_with_post_quant_conv_decodes_like_diffusers() {
    let (_dir, model) = export(&perturbed_dir(), DType::F32);
    onnx_check(&model);
    let g = read_f32(&fixtures().join("vae/goldens.safetensors"));
    let mut s = session(&model);
    let e = rel_err(&decode(&mut s, &g["perturbed.latents"]), &g["perturbed.decoded"]);
    eprintln!("perturbed 2x24x40 fp32 rel err {e:e}");
    assert!(e <= TOL_F32, "{e}");
}

#[test]
fn fp16_graph_is_close_to_the_fp32_golden() {
    let g = read_f32(&fixtures().join("vae/goldens.safetensors"));
    for (dir, key) in [(perturbed_dir(), "perturbed"), (tiny_dir(), "tiny")] {
        let (_out, model) = export(&dir, DType::F16);
        onnx_check(&model);
        let mut s = session(&model);
        let e = rel_err(&decode(&mut s, &g[&format!("{key}.latents")]), &g[&format!("{key}.decoded")]);
        eprintln!("{key} fp16 rel err {e:e}");
        assert!(e <= TOL_F16, "{key}: {e}");
    }
}

#[test]
fn bf16_graph_passes_the_checker() {
    let (_out, model) = export(&perturbed_dir(), DType::BF16);
    onnx_check(&model);
}

#[test]
fn graph_interface_and_initializers() {
    let w = ComponentWeights::open(&perturbed_dir()).expect("open");
    let cfg = VaeDecoderConfig::try_from(&w).expect("config");
    for dtype in [DType::F32, DType::F16] {
        let mut g = Graph::new(dtype);
        build_decoder(&mut g, &w, &cfg).expect("build");
        assert_eq!(g.inputs.len(), 1);
        assert_eq!(g.outputs.len(), 1);
        assert_eq!(g.inputs[0].name, INPUT);
        assert_eq!(g.outputs[0].name, OUTPUT);
        // Every decoder/post_quant_conv tensor of the folder is used, nothing else, once each.
        let mut used: Vec<&str> = g.external.iter().map(|e| e.name.as_str()).collect();
        used.sort();
        let stored: Vec<&str> = w.names().filter(|n| n.starts_with("decoder.") || n.starts_with("post_quant_conv.")).collect();
        assert_eq!(used, stored);
        // GroupNorm parameters stay f32; everything else is in the graph dtype.
        for e in &g.external {
            let norm = e.name.contains("norm");
            assert_eq!(e.dtype, if norm { DType::F32 } else { dtype }, "{}", e.name);
        }
        let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
        // resnets: mid 2 + 3 blocks × 3; each 2 norms; + mid attention norm + conv_norm_out
        assert_eq!(count("GroupNormalization"), (2 + 3 * 3) * 2 + 2);
        assert_eq!(count("Attention"), 1);
        assert_eq!(count("Resize"), 2);
    }
}

#[test]
fn configs_parse_and_validate() {
    let w = ComponentWeights::open(&tiny_dir()).expect("open");
    let cfg = VaeDecoderConfig::try_from(&w).expect("config");
    assert_eq!(
        cfg,
        VaeDecoderConfig {
            block_out_channels: vec![8, 16, 16, 16],
            layers_per_block: 1,
            latent_channels: 16,
            out_channels: 3,
            norm_num_groups: 4,
            mid_block_add_attention: true,
            use_post_quant_conv: false,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
            force_upcast: true,
        }
    );
    assert_eq!(cfg.upscale(), 8);
    let flux1 = VaeDecoderConfig::from_file(&fixtures().join("vae/flux1/config.json")).expect("FLUX.1 config");
    assert_eq!(flux1.block_out_channels, [128, 256, 512, 512]);
    assert_eq!((flux1.layers_per_block, flux1.latent_channels, flux1.norm_num_groups, flux1.upscale()), (2, 16, 32, 8));
    assert_eq!((flux1.scaling_factor, flux1.shift_factor, flux1.force_upcast, flux1.use_post_quant_conv), (0.3611, 0.1159, true, false));
}

/// A copy of the tiny VAE folder with `edit` applied to its config JSON.
fn with_config(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tiny_dir();
    std::fs::copy(src.join("diffusion_pytorch_model.safetensors"), tmp.path().join("diffusion_pytorch_model.safetensors")).expect("copy");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).expect("read")).expect("json");
    edit(&mut v);
    std::fs::write(tmp.path().join("config.json"), serde_json::to_vec_pretty(&v).expect("json")).expect("write");
    tmp
}

#[test]
fn unsupported_configs_are_typed_errors_naming_file_and_key() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("act_fn", Box::new(|v| v["act_fn"] = "gelu".into())),
        ("norm_num_groups", Box::new(|v| v["norm_num_groups"] = 3.into())),
        ("norm_num_groups", Box::new(|v| v["norm_num_groups"] = 0.into())),
        ("up_block_types", Box::new(|v| v["up_block_types"][1] = "AttnUpDecoderBlock2D".into())),
        ("shift_factor", Box::new(|v| v["shift_factor"] = serde_json::Value::Null)),
        ("scaling_factor", Box::new(|v| v["scaling_factor"] = 0.0.into())),
        ("latents_mean", Box::new(|v| v["latents_mean"] = serde_json::json!(vec![0.0; 16]))),
        ("block_out_channels", Box::new(|v| v["block_out_channels"] = serde_json::json!([]))),
        ("_class_name", Box::new(|v| v["_class_name"] = "AutoencoderTiny".into())),
    ];
    for (key, edit) in cases {
        let tmp = with_config(edit);
        let w = ComponentWeights::open(tmp.path()).expect("open");
        let err = VaeDecoderConfig::try_from(&w).expect_err(key);
        match &err {
            VaeError::Unsupported { path, key: k, .. } => {
                assert_eq!(path, &tmp.path().join("config.json"));
                assert_eq!(k, key);
            }
            other => panic!("{key}: expected Unsupported, got {other:?}"),
        }
        assert!(err.to_string().contains("config.json") && err.to_string().contains(key), "{err}");
    }
    // A key of the wrong type: a parse error naming the file.
    let tmp = with_config(|v| v["block_out_channels"] = "wide".into());
    let w = ComponentWeights::open(tmp.path()).expect("open");
    let err = VaeDecoderConfig::try_from(&w).expect_err("bad type");
    assert!(matches!(&err, VaeError::Config { path, .. } if path == &tmp.path().join("config.json")), "{err:?}");
    assert!(err.to_string().contains("block_out_channels"), "{err}");

    // A config built in code is re-checked by build_decoder.
    let w = ComponentWeights::open(&tiny_dir()).expect("open");
    let mut cfg = VaeDecoderConfig::try_from(&w).expect("config");
    cfg.norm_num_groups = 5;
    let err = build_decoder(&mut Graph::new(DType::F32), &w, &cfg).expect_err("groups");
    assert!(matches!(err, OnnxError::Vae(VaeError::Unsupported { .. })), "{err:?}");
    cfg.norm_num_groups = 4;
    cfg.block_out_channels.clear();
    let err = build_decoder(&mut Graph::new(DType::F32), &w, &cfg).expect_err("no blocks");
    assert!(err.to_string().contains("block_out_channels"), "{err}");
}

/// A copy of the tiny VAE whose weight file has `edit` applied to its tensors.
fn with_tensors(edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<u8>)>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tiny_dir();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).expect("copy");
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut m: BTreeMap<String, (Vec<usize>, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec()))).collect();
    edit(&mut m);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        m.iter().map(|(n, (s, d))| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).expect("view"))).collect();
    safetensors::serialize_to_file(views, None, &tmp.path().join("diffusion_pytorch_model.safetensors")).expect("write");
    tmp
}

#[test]
fn missing_or_misshaped_tensors_are_typed_errors_naming_file_and_tensor() {
    let gone = "decoder.mid_block.attentions.0.to_k.weight";
    let tmp = with_tensors(|m| {
        m.remove(gone);
    });
    let w = ComponentWeights::open(tmp.path()).expect("open");
    let cfg = VaeDecoderConfig::try_from(&w).expect("config");
    // The graph given to build_decoder is left as it was.
    let mut g = Graph::new(DType::F32);
    let err = build_decoder(&mut g, &w, &cfg).expect_err("missing tensor");
    assert!(g.nodes.is_empty() && g.inputs.is_empty() && g.external.is_empty() && g.inline.is_empty(), "{err}");
    let err = build_decoder_model(&w, &cfg, DType::F32).err().expect("missing tensor");
    match &err {
        OnnxError::Checkpoint(CheckpointError::MissingTensor { path, tensor, .. }) => {
            assert_eq!(tensor, gone);
            assert_eq!(path, tmp.path());
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    assert!(err.to_string().contains(gone), "{err}");

    // conv_out with a 1×1 kernel instead of 3×3 (same in/out channels).
    let bad = "decoder.conv_out.weight";
    let tmp = with_tensors(|m| {
        let e = m.get_mut(bad).expect("conv_out");
        *e = (vec![3, 8, 1, 1], e.1[..3 * 8 * 4].to_vec());
    });
    let w = ComponentWeights::open(tmp.path()).expect("open");
    let err = build_decoder_model(&w, &cfg, DType::F32).err().expect("bad shape");
    match &err {
        OnnxError::Checkpoint(CheckpointError::Shape { path, tensor, expected, found }) => {
            assert_eq!(tensor, bad);
            assert_eq!(path, &tmp.path().join("diffusion_pytorch_model.safetensors"));
            assert_eq!((expected.as_slice(), found.as_slice()), (&[3, 8, 3, 3][..], &[3, 8, 1, 1][..]));
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    assert!(err.to_string().contains(bad) && err.to_string().contains("diffusion_pytorch_model.safetensors"), "{err}");
}

/// Writes a safetensors file whose tensors (bf16, `shapes`) are all zeros without storing
/// them: the data region is a hole (sparse file), so FLUX.1-sized shapes cost no disk.
fn sparse_safetensors(path: &Path, shapes: &BTreeMap<String, Vec<usize>>) {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (n, s) in shapes {
        let len = s.iter().product::<usize>() * 2;
        header.insert(n.clone(), serde_json::json!({"dtype": "BF16", "shape": s, "data_offsets": [off, off + len]}));
        off += len;
    }
    let mut h = serde_json::to_vec(&header).expect("header");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    std::fs::write(path, &bytes).expect("write header");
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    f.set_len((bytes.len() + off) as u64).expect("set_len");
}

/// FLUX.1's VAE shape (no weights: a sparse all-zero file with diffusers' parameter shapes):
/// the graph builds, uses exactly diffusers' decoder parameters with their shapes.
#[test]
fn flux1_sized_decoder_graph_matches_diffusers_parameters() {
    let shapes: BTreeMap<String, Vec<usize>> =
        serde_json::from_slice(&std::fs::read(fixtures().join("vae/flux1/decoder_shapes.json")).expect("read")).expect("shapes json");
    assert!(shapes.len() > 100, "{}", shapes.len());
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixtures().join("vae/flux1/config.json"), tmp.path().join("config.json")).expect("copy");
    sparse_safetensors(&tmp.path().join("diffusion_pytorch_model.safetensors"), &shapes);
    let w = ComponentWeights::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let cfg = VaeDecoderConfig::try_from(&w).unwrap_or_else(|e| panic!("{e}"));
    let built = build_decoder_model(&w, &cfg, DType::BF16).unwrap_or_else(|e| panic!("{e}"));
    let got: BTreeMap<String, Vec<usize>> = built.weights.iter().map(|e| (e.name.clone(), e.shape.clone())).collect();
    assert_eq!(got.len(), built.weights.len(), "a weight used twice");
    assert_eq!(got, shapes);
    let params: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    assert!(built.data_len >= 2 * params as u64, "{} bytes for {params} parameters", built.data_len);
}

#[cfg(feature = "tensorrt")]
mod tensorrt {
    use super::*;
    use flux_trt::engine;
    use trt_support::trt_library;

    /// TensorRT-RTX's ONNX parser accepts the decoder in every precision: one IAttention,
    /// float32 I/O with dynamic batch and spatial dims, one normalization layer per GroupNorm.
    #[test]
    fn tensorrt_parser_accepts_the_decoder() {
        let lib = trt_library();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let (_out, model) = export(&perturbed_dir(), dtype);
            let r = engine::inspect_onnx(&model, &lib).unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
            eprintln!("{dtype:?}: {:?}", r.layer_counts);
            assert_eq!(r.inputs.len(), 1);
            assert_eq!((r.inputs[0].name.as_str(), r.inputs[0].dims.as_slice(), r.inputs[0].dtype.as_str()), (INPUT, &[-1, 4, -1, -1][..], "FLOAT"));
            assert_eq!(r.outputs.len(), 1);
            assert_eq!((r.outputs[0].name.as_str(), r.outputs[0].dims.as_slice(), r.outputs[0].dtype.as_str()), (OUTPUT, &[-1, 3, -1, -1][..], "FLOAT"));
            assert_eq!(r.attention_layers(), 1, "{:?}", r.layer_counts);
            assert_eq!(r.count("RESIZE"), 2, "{:?}", r.layer_counts);
            assert_eq!(r.count("NORMALIZATION"), (2 + 3 * 3) * 2 + 2, "{:?}", r.layer_counts);
            assert_eq!(r.quantize_layers() + r.dequantize_layers(), 0);
        }
        let (_out, model) = export(&tiny_dir(), DType::F32);
        let r = engine::inspect_onnx(&model, &lib).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.inputs[0].dims, [-1, 16, -1, -1]);
        // A model file that is not there: typed error naming it.
        let missing = model.with_file_name("nope.onnx");
        let err = engine::inspect_onnx(&missing, &lib).expect_err("missing file");
        assert!(err.to_string().contains("nope.onnx"), "{err}");
    }
}

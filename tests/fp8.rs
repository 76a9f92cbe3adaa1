//! FP8 (E4M3) export: the converter bit for bit against torch, the exported graph's structure,
//! calibration, accuracy bars against the diffusers fp32 goldens on ONNX Runtime (CPU, optimization
//! level BASIC), and typed errors for bad inputs. Needs python3 with onnxruntime (or
//! ORT_DYLIB_PATH) for the runtime parts.

mod fp8_support;

use std::collections::BTreeMap;
use std::path::Path;

use flux_trt::manifest::{Manifest, Precision};
use flux_trt::onnx::fp8::{calib, calib_data, e4m3, Calibration, Fp8Error, Fp8Options, WeightScale, SCALE_FLOOR};
use flux_trt::onnx::{export, ExportOptions, OnnxError, DATA_FILE, MODEL_FILE};
use flux_trt::runtime::ort::FluxSession;
use flux_trt::runtime::RuntimeError;
use flux_trt::tensor::DType;
use flux_trt::{Checkpoint, SlotPlan};
use fp8_support::*;
use onnx_protobuf::{tensor_proto::DataLocation, ModelProto};
use protobuf::Message;

fn golden_e4m3() -> Vec<u8> {
    std::fs::read(fixtures().join("golden/fp8/e4m3.safetensors")).expect("tests/fixtures/golden/fp8/e4m3.safetensors (tools/reference/fp8_golden.py)")
}

fn f32s(v: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    let dt = DType::from_safetensors(v.dtype()).expect("float tensor");
    let mut out = Vec::new();
    flux_trt::tensor::decode_into(dt, v.data(), &mut out);
    out
}

#[test]
fn e4m3_conversion_is_bit_exact_with_torch() {
    let bytes = golden_e4m3();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for src in ["bf16", "f16", "f32"] {
        let input = st.tensor(&format!("{src}.in")).unwrap();
        let want = st.tensor(&format!("{src}.e4m3")).unwrap();
        let dt = DType::from_safetensors(input.dtype()).unwrap();
        let mut got = Vec::new();
        e4m3::quantize_into(dt, input.data(), 0, 1, &[1.0], &mut got);
        assert_eq!(got.len(), want.data().len());
        let vals = f32s(&input);
        let bad: Vec<String> = got
            .iter()
            .zip(want.data())
            .zip(&vals)
            .filter(|((g, w), _)| g != w)
            .take(5)
            .map(|((g, w), v)| format!("{v:e}: {g:#04x} vs torch {w:#04x}"))
            .collect();
        assert!(bad.is_empty(), "{src}: {} mismatches, first: {bad:?}", got.iter().zip(want.data()).filter(|(g, w)| g != w).count());
    }
    // quantization with scales: per channel (zero row → floor) and per tensor
    let w = st.tensor("w").unwrap();
    let (rows, cols) = (w.shape()[0], w.shape()[1]);
    let t = flux_trt::checkpoint::TensorRef { name: "w".into(), dtype: DType::F32, shape: vec![rows, cols], parts: vec![w.data()] };
    for (mode, per_row) in [("channel", true), ("tensor", false)] {
        let amax = flux_trt::onnx::fp8::weight_amax(&t, cols, per_row, &|_| std::path::PathBuf::from("e4m3.safetensors"), &|_| {}).unwrap();
        let scales: Vec<f32> = amax.iter().map(|a| flux_trt::onnx::fp8::scale_from_amax(*a).unwrap()).collect();
        let want_s = f32s(&st.tensor(&format!("w.scale.{mode}")).unwrap());
        assert_eq!(scales.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{mode} scales");
        if per_row {
            assert_eq!(scales[3], SCALE_FLOOR, "all-zero row gets the floor");
        }
        // streamed in two parts split mid-row, like a fused group
        let mut got = Vec::new();
        let split = 4 * (cols + 5);
        e4m3::quantize_into(DType::F32, &w.data()[..split], 0, cols, &scales, &mut got);
        e4m3::quantize_into(DType::F32, &w.data()[split..], split / 4, cols, &scales, &mut got);
        assert_eq!(got.as_slice(), st.tensor(&format!("w.e4m3.{mode}")).unwrap().data(), "{mode} quantized weight");
    }
}

fn read_model(dir: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(dir.join(MODEL_FILE)).unwrap()).unwrap()
}

#[test]
fn fp8_graph_structure_and_stored_weights() {
    let ckpt = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let cfg = ckpt.config().clone();
    let cal = calibrate_fixture(&ckpt, 2, 0);
    let ad = adapter("attn.peft");
    for (mode, attention) in [(WeightScale::Channel, false), (WeightScale::Tensor, true)] {
        let dir = tempfile::tempdir().unwrap();
        let plan = export_fp8(&ckpt, &[&ad], &cal, mode, attention, dir.path());
        let m = read_model(dir.path());
        let g = &m.graph;
        let gemms = flux_trt::onnx::fp8::quantized_gemms(&cfg);
        let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
        let attn_q = if attention { 3 * (cfg.num_double_blocks + cfg.num_single_blocks) } else { 0 };
        assert_eq!(count("QuantizeLinear"), gemms.len() + attn_q, "one activation Q per quantized GEMM (+ attention Q/K/V)");
        assert_eq!(count("DequantizeLinear"), 2 * gemms.len() + attn_q);
        assert!(g.node.iter().filter(|n| n.op_type == "QuantizeLinear").all(|n| n.attribute.iter().any(|a| a.name == "output_dtype" && a.i == 17)));
        let data = std::fs::read(dir.path().join(DATA_FILE)).unwrap();
        let inits: BTreeMap<&str, &onnx_protobuf::TensorProto> = g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        for gemm in &gemms {
            let w = inits[format!("{gemm}.weight").as_str()];
            assert_eq!(w.data_type, 17, "{gemm} weight is FLOAT8E4M3FN");
            assert_eq!(w.data_location.enum_value(), Ok(DataLocation::EXTERNAL));
            let (out_f, in_f) = (w.dims[0] as usize, w.dims[1] as usize);
            let field = |k: &str| w.external_data.iter().find(|e| e.key == k).unwrap().value.parse::<usize>().unwrap();
            let (off, len) = (field("offset"), field("length"));
            assert_eq!(len, out_f * in_f, "1 byte per element");
            let s = inits[format!("{gemm}.weight_scale").as_str()];
            let scales: Vec<f32> = s.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            assert_eq!(scales.len(), if mode == WeightScale::Channel { out_f } else { 1 });
            assert_eq!(s.dims.len(), if mode == WeightScale::Channel { 1 } else { 0 });
            // dequantized stored weight vs the checkpoint: within E4M3's rounding
            let src = if gemm.ends_with("qkv") || gemm.ends_with("linear1") {
                let grp = cfg.fused_groups().into_iter().find(|x| &x.name == gemm).unwrap();
                ckpt.fused(&grp, "weight").unwrap()
            } else {
                ckpt.tensor(&format!("{gemm}.weight")).unwrap()
            };
            let orig = src.to_f32();
            for (i, (q, x)) in data[off..off + len].iter().zip(&orig).enumerate() {
                let sc = scales[if scales.len() == 1 { 0 } else { i / in_f }];
                let dq = e4m3::to_f32(*q) * sc;
                let tol = x.abs() / 16.0 + sc / 1024.0 + 1e-12;
                assert!((dq - x).abs() <= tol, "{gemm}[{i}]: {x} stored as {dq}");
            }
            // activation scale = amax / 448
            let a = inits[format!("{gemm}.input_scale").as_str()];
            let v = f32::from_le_bytes([a.raw_data[0], a.raw_data[1], a.raw_data[2], a.raw_data[3]]);
            assert_eq!(v, (cal.amax[gemm] / 448.0).max(SCALE_FLOOR), "{gemm}");
        }
        // not quantized: modulation, embedders, final layer, slots
        for n in [
            "x_embedder.weight",
            "transformer_blocks.0.norm1.linear.weight",
            "norm_out.linear.weight",
            "proj_out.weight",
            "time_text_embed.timestep_embedder.linear_1.weight",
        ] {
            assert_eq!(inits[n].data_type, 1, "{n} stays float");
        }
        for s in &plan.slots {
            assert_eq!(inits[s.a_name().as_str()].data_type, 1);
        }
        // the ONNX checker (full check, external data) accepts the FP8 graph
        let chk = std::process::Command::new("python3")
            .args(["-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)"])
            .arg(dir.path().join(MODEL_FILE))
            .output()
            .expect("python3 with onnx");
        assert!(chk.status.success(), "onnx.checker: {}", String::from_utf8_lossy(&chk.stderr));
        let man = Manifest::load(dir.path()).unwrap();
        assert_eq!(man.precision, Precision::Fp8);
        let f = man.fp8.as_ref().expect("fp8 manifest section");
        assert_eq!((f.weight_scale, f.float_dtype, f.attention), (mode, DType::F32, attention));
        assert_eq!(f.quantized, gemms);
        assert_eq!(f.calibration.as_ref().unwrap().samples, 2);
        let scales = man.fp8_activation_scales.as_ref().unwrap();
        assert_eq!(scales.len(), gemms.len() + attn_q);
        assert_eq!(man.lora.dtype, DType::F32);
    }
}

#[test]
fn accuracy_bars_against_fp32_goldens() {
    for case in &CASES {
        for mode in [WeightScale::Channel, WeightScale::Tensor] {
            let acc = measure(case, mode, false, 8);
            println!("{}", serde_json::to_string(&acc).unwrap());
            assert!(acc.base.cosine >= 0.99, "{} {mode}: cosine {} vs out.base (rel L2 {})", case.variant, acc.base.cosine, acc.base.rel_l2);
            for (name, m) in &acc.lora_delta {
                assert!(m.cosine >= 0.99, "{} {mode} LoRA {name}: delta cosine {} (rel L2 {})", case.variant, m.cosine, m.rel_l2);
            }
        }
    }
}

/// A copy of the dev BFL fixture with `edit(name, f32 values)` applied to every tensor (f32 file).
fn edited_checkpoint(dir: &Path, edit: impl Fn(&str, &mut [f32])) -> std::path::PathBuf {
    let src = std::fs::read(fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in st.tensors() {
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "fixture is f32");
        let mut vals = f32s(&v);
        edit(&name, &mut vals);
        bufs.push((name, v.shape().to_vec(), vals.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        bufs.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    let path = dir.join("edited-bfl.safetensors");
    safetensors::tensor::serialize_to_file(views, None, &path).unwrap();
    path
}

fn fp8_opts(amax: BTreeMap<String, f32>, mode: WeightScale) -> ExportOptions {
    let mut o = ExportOptions::new(Precision::Fp8);
    o.hash_sources = false;
    o.fp8 = Some(Fp8Options { weight_scale: mode, float_dtype: DType::F32, attention: false, activation_amax: amax, calibration: None });
    o
}

#[test]
fn nan_weight_is_named_and_zero_row_gets_the_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let base = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let cal = calibrate_fixture(&base, 1, 0);
    let plan = SlotPlan { max_rank: 1, slots: Vec::new() };

    // NaN in a quantized weight: typed error naming the file, the (canonical) tensor and element
    let nan_dir = tempfile::tempdir().unwrap();
    let p = edited_checkpoint(nan_dir.path(), |n, v| {
        if n == "double_blocks.0.img_mlp.0.weight" {
            v[2 * 64 + 5] = f32::NAN;
        }
    });
    let ck = Checkpoint::open(&p).unwrap();
    let out = tmp.path().join("nan");
    let err = export_error(export(&ck, &plan, &fp8_opts(cal.amax.clone(), WeightScale::Channel), &out, &mut |_, _| {}).unwrap_err());
    match &err {
        OnnxError::Fp8(Fp8Error::NonFiniteWeight { path, tensor, row, col, .. }) => {
            assert_eq!(path.canonicalize().unwrap(), p.canonicalize().unwrap());
            assert_eq!((tensor.as_str(), *row, *col), ("transformer_blocks.0.ff.net.0.proj.weight", 2, 5));
        }
        other => panic!("expected NonFiniteWeight, got {other:?}"),
    }
    assert!(err.to_string().contains("edited-bfl.safetensors"), "{err}");
    assert!(!out.join("manifest.json").exists() && !out.join(MODEL_FILE).exists(), "nothing written");

    // sharded diffusers folder: the error names the shard that holds the bad tensor
    let shard_dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("models/dev-diffusers");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("diffusion_pytorch_model.safetensors.index.json")).unwrap()).unwrap();
    let bad = "transformer_blocks.1.ff.net.2.weight";
    let shard = index["weight_map"][bad].as_str().unwrap().to_string();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), shard_dir.path().join(e.file_name())).unwrap();
    }
    let bytes = std::fs::read(src.join(&shard)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let mut vals = f32s(&v);
            if n == bad {
                vals[7] = f32::INFINITY;
            }
            (n, v.shape().to_vec(), vals.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        bufs.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::tensor::serialize_to_file(views, None, &shard_dir.path().join(&shard)).unwrap();
    let ck = Checkpoint::open(shard_dir.path()).unwrap();
    let err = export_error(export(&ck, &plan, &fp8_opts(cal.amax.clone(), WeightScale::Tensor), &tmp.path().join("shard"), &mut |_, _| {}).unwrap_err());
    match &err {
        OnnxError::Fp8(Fp8Error::NonFiniteWeight { path, tensor, row: 0, col: 7, .. }) => {
            assert_eq!(tensor, bad);
            assert_eq!(path.canonicalize().unwrap(), shard_dir.path().join(&shard).canonicalize().unwrap(), "{err}");
        }
        other => panic!("expected NonFiniteWeight, got {other:?}"),
    }

    // an all-zero output row: the floor scale, not 0, and the model still runs finite
    let zero_dir = tempfile::tempdir().unwrap();
    let p = edited_checkpoint(zero_dir.path(), |n, v| {
        if n == "double_blocks.0.img_mlp.2.weight" {
            v[..256].iter_mut().for_each(|x| *x = 0.0);
        }
    });
    let ck = Checkpoint::open(&p).unwrap();
    let out = tmp.path().join("zero");
    export(&ck, &plan, &fp8_opts(cal.amax.clone(), WeightScale::Channel), &out, &mut |_, _| {}).unwrap();
    let m = read_model(&out);
    let s = m.graph.initializer.iter().find(|t| t.name == "transformer_blocks.0.ff.net.2.weight_scale").unwrap();
    let first = f32::from_le_bytes([s.raw_data[0], s.raw_data[1], s.raw_data[2], s.raw_data[3]]);
    let second = f32::from_le_bytes([s.raw_data[4], s.raw_data[5], s.raw_data[6], s.raw_data[7]]);
    assert_eq!(first, SCALE_FLOOR);
    assert!(second > SCALE_FLOOR);
    let sess = session(&out);
    let (inputs, _) = goldens("dev", ck.config());
    let y = sess.run(&inputs).unwrap();
    assert!(y.data().iter().all(|v| v.is_finite()));
}

#[test]
fn bad_fp8_options_are_typed_errors_and_write_nothing() {
    let ck = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let plan = SlotPlan { max_rank: 1, slots: Vec::new() };
    let cfg = ck.config().clone();
    let good: BTreeMap<String, f32> = flux_trt::onnx::fp8::quantized_gemms(&cfg).into_iter().map(|p| (p, 1.0)).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e");
    let run = |o: ExportOptions| export_error(export(&ck, &plan, &o, &out, &mut |_, _| {}).unwrap_err());

    let mut missing = good.clone();
    missing.remove("single_transformer_blocks.1.proj_out");
    assert!(
        matches!(run(fp8_opts(missing, WeightScale::Channel)), OnnxError::Fp8(Fp8Error::MissingActivation { point }) if point == "single_transformer_blocks.1.proj_out")
    );
    for bad in [f32::NAN, f32::INFINITY, -1.0] {
        let mut m = good.clone();
        m.insert("transformer_blocks.0.attn.qkv".into(), bad);
        let e = run(fp8_opts(m, WeightScale::Tensor));
        assert!(matches!(&e, OnnxError::Fp8(Fp8Error::BadActivation { point, .. }) if point == "transformer_blocks.0.attn.qkv"), "{e}");
    }
    // attention on but no attention amax
    let mut o = fp8_opts(good.clone(), WeightScale::Channel);
    o.fp8.as_mut().unwrap().attention = true;
    assert!(matches!(run(o), OnnxError::Fp8(Fp8Error::MissingActivation { point }) if point == "transformer_blocks.0.attn.q"));
    let mut o = fp8_opts(good.clone(), WeightScale::Channel);
    o.fp8.as_mut().unwrap().float_dtype = DType::F16;
    assert!(matches!(run(o), OnnxError::Fp8(Fp8Error::FloatDtype(DType::F16))));
    // fp8 options with a non-fp8 precision, and fp8 without options
    let mut o = fp8_opts(good, WeightScale::Channel);
    o.precision = Precision::Bf16;
    assert!(matches!(run(o), OnnxError::Fp8Options(_)));
    assert!(matches!(run(ExportOptions::new(Precision::Fp8)), OnnxError::Fp8Options(_)));
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0, "nothing written");
}

#[test]
fn ort_refuses_extended_optimizations_for_fp8() {
    let ck = Checkpoint::open(&fixtures().join("models/schnell-bfl.safetensors")).unwrap();
    let cal = calibrate_fixture(&ck, 1, 0);
    let dir = tempfile::tempdir().unwrap();
    export_fp8(&ck, &[&adapter("schnell-attn.peft")], &cal, WeightScale::Channel, false, dir.path());
    let e = FluxSession::builder(dir.path())
        .with_library(ort_library())
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
        .build()
        .unwrap_err();
    assert!(matches!(&e, RuntimeError::Fp8Level { engine, .. } if engine == dir.path()), "{e}");
    // the default level for FP8 manifests (BASIC) runs
    session(dir.path());
    // the TensorRT form (bf16 elsewhere) is refused on the CPU provider with a clear error
    let bf = tempfile::tempdir().unwrap();
    let plan = SlotPlan::new(ck.config(), &[&adapter("schnell-attn.peft")], &Default::default()).unwrap();
    let mut o = ExportOptions::new(Precision::Fp8);
    o.hash_sources = false;
    o.fp8 = Some(Fp8Options::new(cal.amax.clone()));
    export(&ck, &plan, &o, bf.path(), &mut |_, _| {}).unwrap();
    let e = FluxSession::builder(bf.path()).with_library(ort_library()).build().unwrap_err();
    assert!(matches!(&e, RuntimeError::Fp8Bf16OnCpu { engine } if engine == bf.path()), "{e}");
    assert!(e.to_string().contains("--fp8-float fp32"), "{e}");
}

#[test]
fn calibration_is_reproducible_and_uses_the_schedule() {
    let ck = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let a = calibrate_fixture(&ck, 3, 42);
    let b = calibrate_fixture(&ck, 3, 42);
    let c = calibrate_fixture(&ck, 3, 43);
    assert_eq!(a, b, "same seed, same amax");
    assert_ne!(a.amax, c.amax, "another seed, other samples");
    let cfg = ck.config();
    let mut points = flux_trt::onnx::fp8::quantized_gemms(cfg);
    points.extend(flux_trt::onnx::fp8::attention_points(cfg));
    assert_eq!(a.amax.keys().cloned().collect::<Vec<_>>(), {
        points.sort();
        points
    });
    assert!(a.amax.values().all(|v| v.is_finite() && *v > 0.0));
    assert_eq!(a.info.sigmas, calib::sigmas(3, flux_trt::Variant::Dev, 16));
    assert_eq!((a.info.img_seq, a.info.txt_seq, a.info.seed), (16, 8, 42));

    // saved and reused (build-engine --calib-out / --calib-in)
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("calib.json");
    a.save(&f).unwrap();
    assert_eq!(Calibration::load(&f, cfg).unwrap(), a);
    let schnell = Checkpoint::open(&fixtures().join("models/schnell-bfl.safetensors")).unwrap();
    let e = Calibration::load(&f, schnell.config()).unwrap_err();
    assert!(matches!(&e, Fp8Error::CalibFile { path, message } if path == &f && message.contains("not a quantization point")), "{e}");
    let mut broken = a.clone();
    broken.amax.remove("transformer_blocks.1.ff.net.2");
    broken.save(&f).unwrap();
    let e = Calibration::load(&f, cfg).unwrap_err();
    assert!(e.to_string().contains("transformer_blocks.1.ff.net.2"), "{e}");
    std::fs::write(&f, "{\"amax\": {}}").unwrap();
    assert!(matches!(Calibration::load(&f, cfg), Err(Fp8Error::CalibFile { .. })));
}

/// Writes a `.npy` (v1.0) file.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(data);
    std::fs::write(path, b).unwrap();
}

fn st_file(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::tensor::serialize_to_file(views, None, path).unwrap();
}

fn f32_bytes(n: usize, v: f32) -> Vec<u8> {
    (0..n).flat_map(|i| (v + i as f32 * 1e-3).to_le_bytes()).collect()
}

#[test]
fn calibration_data_files_and_their_errors() {
    use safetensors::Dtype::{BF16, F32, I64};
    let ck = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let cfg = ck.config().clone(); // context 32, pooled 32
    let d = tempfile::tempdir().unwrap();
    let ehs = calib_data::ENCODER_HIDDEN_STATES;
    let pp = calib_data::POOLED_PROJECTIONS;

    // good safetensors (bf16 T5 states) → used by calibration, recorded in the info
    let good = d.path().join("calib.safetensors");
    let bf: Vec<u8> = (0..2 * 5 * 32).flat_map(|i| half::bf16::from_f32((i % 7) as f32 - 3.0).to_le_bytes()).collect();
    st_file(&good, &[(ehs, BF16, vec![2, 5, 32], bf), (pp, F32, vec![2, 32], f32_bytes(64, 0.5))]);
    let data = calib_data::load(&good, &cfg).unwrap();
    assert_eq!((data.n, data.txt_seq), (2, 5));
    assert_eq!(data.encoder_hidden_states[..3], [-3.0, -2.0, -1.0]);
    let mut o = calib_options(2, 0);
    o.data = Some(good.clone());
    let cal = calib::calibrate(&ck, &o).unwrap();
    assert_eq!(cal.info.txt_seq, 5);
    assert_eq!(cal.info.data.as_deref(), Some(good.display().to_string().as_str()));

    let expect = |path: &Path, tensor: &str, needle: &str| {
        let e = calib_data::load(path, &cfg).unwrap_err();
        match &e {
            Fp8Error::CalibTensor { path: p, tensor: t, message } => {
                assert_eq!((p.as_path(), t.as_str()), (path, tensor), "{e}");
                assert!(message.contains(needle), "{e}");
            }
            other => panic!("expected CalibTensor for {tensor}, got {other:?}"),
        }
        // and calibration refuses it the same way, before running anything
        let mut o = calib_options(1, 0);
        o.data = Some(path.to_path_buf());
        assert!(matches!(calib::calibrate(&ck, &o), Err(OnnxError::Fp8(Fp8Error::CalibTensor { .. }))));
    };
    let f = d.path().join("width.safetensors");
    st_file(&f, &[(ehs, F32, vec![1, 4, 4096], f32_bytes(4 * 4096, 0.0)), (pp, F32, vec![1, 32], f32_bytes(32, 0.0))]);
    expect(&f, ehs, "expected [N ≥ 1, S ≥ 1, 32]");
    let f = d.path().join("rank.safetensors");
    st_file(&f, &[(ehs, F32, vec![4, 32], f32_bytes(128, 0.0)), (pp, F32, vec![1, 32], f32_bytes(32, 0.0))]);
    expect(&f, ehs, "[4, 32]");
    let f = d.path().join("dtype.safetensors");
    st_file(&f, &[(ehs, F32, vec![1, 4, 32], f32_bytes(128, 0.0)), (pp, I64, vec![1, 32], vec![0u8; 256])]);
    expect(&f, pp, "dtype I64");
    let f = d.path().join("count.safetensors");
    st_file(&f, &[(ehs, F32, vec![2, 4, 32], f32_bytes(256, 0.0)), (pp, F32, vec![3, 32], f32_bytes(96, 0.0))]);
    expect(&f, pp, "3 samples");
    let f = d.path().join("missing.safetensors");
    st_file(&f, &[(ehs, F32, vec![1, 4, 32], f32_bytes(128, 0.0))]);
    expect(&f, pp, "missing");
    let f = d.path().join("nan.safetensors");
    let mut nan = f32_bytes(128, 0.0);
    nan[40..44].copy_from_slice(&f32::NAN.to_le_bytes());
    st_file(&f, &[(ehs, F32, vec![1, 4, 32], nan), (pp, F32, vec![1, 32], f32_bytes(32, 0.0))]);
    expect(&f, ehs, "element 10");

    // .npy: encoder_hidden_states.npy + pooled_projections.npy
    let npy = d.path().join("npy");
    std::fs::create_dir(&npy).unwrap();
    let e_path = npy.join("encoder_hidden_states.npy");
    write_npy(&e_path, "<f4", &[1, 3, 32], &f32_bytes(96, 1.0));
    write_npy(&npy.join("pooled_projections.npy"), "<f4", &[1, 32], &f32_bytes(32, 2.0));
    let data = calib_data::load(&e_path, &cfg).unwrap();
    assert_eq!((data.n, data.txt_seq, data.pooled_projections[0]), (1, 3, 2.0));
    write_npy(&npy.join("pooled_projections.npy"), "<i8", &[1, 32], &[0u8; 256]);
    let e = calib_data::load(&e_path, &cfg).unwrap_err();
    assert!(matches!(&e, Fp8Error::CalibTensor { tensor, path, .. } if tensor == "pooled_projections" && path.ends_with("pooled_projections.npy")), "{e}");
    assert!(e.to_string().contains("<i8"), "{e}");
    let other = npy.join("prompts.npy");
    std::fs::copy(&e_path, &other).unwrap();
    assert!(matches!(calib_data::load(&other, &cfg), Err(Fp8Error::CalibFile { .. })));
    let junk = d.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    assert!(matches!(calib_data::load(&junk, &cfg), Err(Fp8Error::CalibFile { path, .. }) if path == junk));
}

/// The export error inside a crate error.
fn export_error(e: flux_trt::Error) -> OnnxError {
    match e {
        flux_trt::Error::Export(e) => e,
        other => panic!("not an export error: {other}"),
    }
}

/// An exported FP8 engine recalibrated in place (`onnx::fp8::rescale::rescale`, what `flux-trt
/// calibrate` writes after measuring on the GPU) equals a fresh export with the new calibration:
/// the model file byte for byte and the whole manifest, and the folder verifies. Bad
/// calibrations are typed errors that change no file.
#[test]
fn rescale_in_place_equals_a_fresh_export() {
    use flux_trt::onnx::fp8::rescale::rescale;
    let ck = Checkpoint::open(&fixtures().join("models/dev-bfl.safetensors")).unwrap();
    let gemms = flux_trt::onnx::fp8::quantized_gemms(ck.config());
    let ad = adapter("attn.peft");
    let a = calibrate_fixture(&ck, 1, 0);
    let mut b = calibrate_fixture(&ck, 2, 5);
    for (i, v) in b.amax.values_mut().enumerate() {
        *v *= 1.0 + 0.1 * (i % 7) as f32;
    }
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    export_fp8(&ck, &[&ad], &a, WeightScale::Channel, false, da.path());
    export_fp8(&ck, &[&ad], &b, WeightScale::Channel, false, db.path());
    let files = |d: &Path| (std::fs::read(d.join(MODEL_FILE)).unwrap(), std::fs::read(d.join("manifest.json")).unwrap());
    let before = files(da.path());
    assert_ne!(before.0, files(db.path()).0, "the two calibrations give different graphs");

    // bad calibrations: typed errors, nothing changed
    let new: BTreeMap<String, f32> = gemms.iter().map(|g| (g.clone(), b.amax[g])).collect();
    let mut missing = new.clone();
    missing.remove("transformer_blocks.1.attn.to_out.0");
    let e = rescale(da.path(), &missing, b.info.clone()).unwrap_err();
    assert!(matches!(&e, OnnxError::Fp8(Fp8Error::MissingActivation { point }) if point == "transformer_blocks.1.attn.to_out.0"), "{e}");
    let mut nan = new.clone();
    nan.insert("single_transformer_blocks.0.linear1".into(), f32::NAN);
    assert!(matches!(rescale(da.path(), &nan, b.info.clone()).unwrap_err(), OnnxError::Fp8(Fp8Error::BadActivation { .. })));
    let mut extra = new.clone();
    extra.insert("transformer_blocks.0.attn.q".into(), 1.0);
    let e = rescale(da.path(), &extra, b.info.clone()).unwrap_err();
    assert!(matches!(&e, OnnxError::Fp8(Fp8Error::Engine { .. })) && e.to_string().contains("transformer_blocks.0.attn.q"), "{e}");
    assert!(files(da.path()) == before, "a refused recalibration changed the folder");

    rescale(da.path(), &new, b.info.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert!(files(da.path()).0 == files(db.path()).0, "recalibrated model file differs from a fresh export's");
    assert_eq!(Manifest::load(da.path()).unwrap(), Manifest::load(db.path()).unwrap());
    let report = flux_trt::manifest::integrity::verify_dir(da.path(), &mut |_, _| {}).unwrap();
    assert!(report.ok && report.mismatches().count() == 0, "the recalibrated folder verifies");

    // a non-FP8 engine has no scales to write
    let plain = tempfile::tempdir().unwrap();
    let plan = SlotPlan::new(ck.config(), &[&ad], &Default::default()).unwrap();
    let mut o = ExportOptions::new(Precision::Fp32);
    o.hash_sources = false;
    export(&ck, &plan, &o, plain.path(), &mut |_, _| {}).unwrap();
    let e = rescale(plain.path(), &new, b.info.clone()).unwrap_err();
    assert!(matches!(&e, OnnxError::Fp8(Fp8Error::Engine { .. })) && e.to_string().contains("only FP8 engines"), "{e}");
}

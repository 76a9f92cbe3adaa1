//! FP8 (E4M3) export: the converter bit for bit against torch, the exported graph's structure,
//! calibration, accuracy bars against the diffusers fp32 goldens on ONNX Runtime (CPU, optimization
//! level BASIC), and typed errors for bad inputs. Needs python3 with onnxruntime (or
//! ORT_DYLIB_PATH) for the runtime parts.

mod fp8_support;

use std::collections::BTreeMap;
use std::path::Path;

use flux_trt::manifest::{Manifest, Precision};
use flux_trt::onnx::fp8::{calib, calib_data, e4m3, Fp8Error, Fp8Options, WeightScale, SCALE_FLOOR};
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
        let bad: Vec<String> = got.iter().zip(want.data()).zip(&vals).filter(|((g, w), _)| g != w).take(5).map(|((g, w), v)| format!("{v:e}: {g:#04x} vs torch {w:#04x}")).collect();
        assert!(bad.is_empty(), "{src}: {} mismatches, first: {bad:?}", got.iter().zip(want.data()).filter(|(g, w)| g != w).count());
    }
    // quantization with scales: per channel (zero row → floor) and per tensor
    let w = st.tensor("w").unwrap();
    let (rows, cols) = (w.shape()[0], w.shape()[1]);
    let t = flux_trt::checkpoint::TensorRef { name: "w".into(), dtype: DType::F32, shape: vec![rows, cols], parts: vec![w.data()] };
    for (mode, per_row) in [("channel", true), ("tensor", false)] {
        let amax = flux_trt::onnx::fp8::weight_amax(&t, cols, per_row, Path::new("e4m3.safetensors"), &|_| {}).unwrap();
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
        for n in ["x_embedder.weight", "transformer_blocks.0.norm1.linear.weight", "norm_out.linear.weight", "proj_out.weight", "time_text_embed.timestep_embedder.linear_1.weight"] {
            assert_eq!(inits[n].data_type, 1, "{n} stays float");
        }
        for s in &plan.slots {
            assert_eq!(inits[s.a_name().as_str()].data_type, 1);
        }
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

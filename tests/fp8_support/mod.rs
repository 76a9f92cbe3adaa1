//! Shared by tests/fp8.rs and examples/fp8_report.rs: FP8 exports of the tiny fixtures,
//! calibrated on ONNX Runtime, run on ONNX Runtime (CPU, optimization level BASIC) and compared
//! with the diffusers fp32 goldens (tests/fixtures/golden/outputs).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use flux_trt::lora::plan::PlanOptions;
use flux_trt::manifest::Precision;
use flux_trt::onnx::fp8::calib::{calibrate, CalibOptions};
use flux_trt::onnx::fp8::Calibration;
use flux_trt::onnx::fp8::{Fp8Options, WeightScale};
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::runtime::ort::FluxSession;
use flux_trt::runtime::{FluxInputs, HostTensor, Slotted};
use flux_trt::tensor::DType;
use flux_trt::{Adapter, Checkpoint, SlotPlan};
use serde::Serialize;

#[path = "../ort_support/mod.rs"]
pub mod ort_support;
pub use ort_support::{fixtures, ort_library};

/// One fixture model with the adapters used for its LoRA checks.
pub struct Case {
    pub variant: &'static str,
    pub model: &'static str,
    /// (adapter file stem, golden output key)
    pub loras: &'static [(&'static str, &'static str)],
}

pub const CASES: [Case; 2] = [
    Case { variant: "dev", model: "models/dev-bfl.safetensors", loras: &[("full.peft", "out.full.peft"), ("attn.peft", "out.attn.peft")] },
    Case { variant: "schnell", model: "models/schnell-bfl.safetensors", loras: &[("schnell-attn.peft", "out.schnell-attn.peft")] },
];

pub fn adapter(stem: &str) -> Adapter {
    flux_trt::lora::load(&fixtures().join("loras").join(format!("{stem}.safetensors"))).unwrap_or_else(|e| panic!("{e}"))
}

/// The golden inputs' shape: 8 text tokens, a 4×4 packed image grid.
pub fn calib_options(samples: usize, seed: u64) -> CalibOptions {
    let mut c = CalibOptions::new(samples);
    c.seed = seed;
    c.img_hw = (4, 4);
    c.txt_seq = 8;
    c.library = Some(ort_library());
    c.threads = Some(1);
    c
}

pub fn calibrate_fixture(ckpt: &Checkpoint, samples: usize, seed: u64) -> Calibration {
    calibrate(ckpt, &calib_options(samples, seed)).unwrap_or_else(|e| panic!("calibrate: {e}"))
}

/// Exports `ckpt` as FP8 with f32 float dtype (ORT CPU) and slots fitting `adapters`.
pub fn export_fp8(ckpt: &Checkpoint, adapters: &[&Adapter], cal: &Calibration, mode: WeightScale, attention: bool, out: &Path) -> SlotPlan {
    let plan = SlotPlan::new(ckpt.config(), adapters, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = ExportOptions::new(Precision::Fp8);
    opts.hash_sources = false;
    opts.fp8 =
        Some(Fp8Options { weight_scale: mode, float_dtype: DType::F32, attention, activation_amax: cal.amax.clone(), calibration: Some(cal.info.clone()) });
    export(ckpt, &plan, &opts, out, &mut |_, _| {}).unwrap_or_else(|e| panic!("fp8 export: {e}"));
    plan
}

pub fn session(dir: &Path) -> FluxSession {
    FluxSession::builder(dir).with_library(ort_library()).with_threads(1).build().unwrap_or_else(|e| panic!("{e}"))
}

pub fn goldens(variant: &str, cfg: &flux_trt::FluxConfig) -> (FluxInputs, BTreeMap<String, HostTensor>) {
    let path = fixtures().join(format!("golden/outputs/{variant}.safetensors"));
    let inputs = FluxInputs::from_safetensors(&path, cfg).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).expect("read goldens");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("goldens");
    let mut outs = BTreeMap::new();
    for (name, view) in st.tensors() {
        if name.starts_with("out.") {
            let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            outs.insert(name.clone(), HostTensor::new(view.shape().to_vec(), data).expect("golden shape"));
        }
    }
    (inputs, outs)
}

/// Agreement of `got` with `want` (flattened).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Metrics {
    pub cosine: f64,
    pub rel_l2: f64,
    pub max_abs_err: f64,
}

pub fn metrics(got: &[f32], want: &[f32]) -> Metrics {
    assert_eq!(got.len(), want.len());
    let (mut dot, mut gg, mut ww, mut dd, mut mx) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (*g as f64, *w as f64);
        dot += g * w;
        gg += g * g;
        ww += w * w;
        dd += (g - w) * (g - w);
        mx = mx.max((g - w).abs());
    }
    Metrics { cosine: dot / (gg.sqrt() * ww.sqrt()).max(f64::MIN_POSITIVE), rel_l2: dd.sqrt() / ww.sqrt().max(f64::MIN_POSITIVE), max_abs_err: mx }
}

pub fn diff(a: &HostTensor, b: &HostTensor) -> Vec<f32> {
    a.data().iter().zip(b.data()).map(|(x, y)| x - y).collect()
}

/// Accuracy of one (variant, weight-scale mode, attention) export.
#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    pub variant: String,
    pub weight_scale: String,
    pub attention: bool,
    pub calib_samples: usize,
    /// FP8 output vs the fp32 golden `out.base`.
    pub base: Metrics,
    /// (out_fp8_lora − out_fp8_base) vs (golden_lora − golden_base), per adapter.
    pub lora_delta: BTreeMap<String, Metrics>,
}

/// Calibrates (`samples`, seed 0), exports and measures `case`.
pub fn measure(case: &Case, mode: WeightScale, attention: bool, samples: usize) -> Accuracy {
    let ckpt = Checkpoint::open(&fixtures().join(case.model)).unwrap_or_else(|e| panic!("{e}"));
    let cal = calibrate_fixture(&ckpt, samples, 0);
    let adapters: Vec<Adapter> = case.loras.iter().map(|(s, _)| adapter(s)).collect();
    let refs: Vec<&Adapter> = adapters.iter().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    export_fp8(&ckpt, &refs, &cal, mode, attention, dir.path());
    let s = session(dir.path());
    let (inputs, gold) = goldens(case.variant, ckpt.config());
    let base = s.run(&inputs).unwrap_or_else(|e| panic!("{e}"));
    let gbase = &gold["out.base"];
    let mut lora_delta = BTreeMap::new();
    for (a, (stem, key)) in adapters.iter().zip(case.loras) {
        s.swap(&[(a, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        let out = s.run(&inputs).unwrap_or_else(|e| panic!("{e}"));
        lora_delta.insert(stem.to_string(), metrics(&diff(&out, &base), &diff(&gold[*key], gbase)));
    }
    Accuracy {
        variant: case.variant.into(),
        weight_scale: mode.to_string(),
        attention,
        calib_samples: samples,
        base: metrics(base.data(), gbase.data()),
        lora_delta,
    }
}

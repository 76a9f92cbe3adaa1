//! Shared by the ONNX Runtime tests: where libonnxruntime is, the bundled fixtures, and engines
//! exported from them with the real exporter.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flux_trt::lora::plan::PlanOptions;
use flux_trt::lora::{Adapter, SlotPlan};
use flux_trt::manifest::Precision;
use flux_trt::onnx::{export, ExportOptions};
use flux_trt::runtime::ort::FluxSession;
use flux_trt::runtime::{FluxInputs, HostTensor, RuntimeError, Transformer};
use flux_trt::Checkpoint;

/// `ORT_DYLIB_PATH` if set (CI), else the library inside Python's `onnxruntime` package.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import onnxruntime,os,glob;d=os.path.join(os.path.dirname(onnxruntime.__file__),'capi');print(sorted(glob.glob(os.path.join(d,'libonnxruntime.so.*')))[-1])"])
        .output()
        .expect("ORT_DYLIB_PATH is unset and python3 could not be run to find onnxruntime");
    assert!(out.status.success(), "ORT_DYLIB_PATH is unset and python3 has no onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `fixtures.json`.
pub fn index() -> serde_json::Value {
    let p = fixtures().join("fixtures.json");
    serde_json::from_slice(&std::fs::read(&p).expect("read fixtures.json")).expect("parse fixtures.json")
}

/// One LoRA fixture entry: (file path, output key in the goldens, model name).
pub struct LoraFixture {
    pub path: PathBuf,
    pub stem: String,
    pub output_key: String,
    pub model: String,
}

pub fn lora_fixtures(model: &str) -> Vec<LoraFixture> {
    let idx = index();
    idx["loras"]
        .as_array()
        .expect("loras array")
        .iter()
        .filter(|l| l["model"] == model)
        .map(|l| {
            let rel = l["path"].as_str().expect("path");
            let path = fixtures().join(rel);
            let stem = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".safetensors")).expect("stem").to_string();
            LoraFixture { path, stem, output_key: l["output_key"].as_str().expect("output_key").to_string(), model: model.to_string() }
        })
        .collect()
}

pub fn load_lora(stem: &str) -> Adapter {
    let p = fixtures().join("loras").join(format!("{stem}.safetensors"));
    flux_trt::lora::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// The checkpoint of `model` (`dev` / `schnell`) in `layout` (`diffusers` / `bfl`).
pub fn checkpoint(model: &str, layout: &str) -> Checkpoint {
    let idx = index();
    let rel = idx["models"][model][layout]["path"].as_str().expect("model path");
    Checkpoint::open(&fixtures().join(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// Exports `model` with slots for `adapters` (and `max_rank`) into `out` (fp32).
pub fn export_engine(model: &str, layout: &str, adapters: &[&Adapter], max_rank: Option<usize>, out: &Path) {
    let ck = checkpoint(model, layout);
    let plan = SlotPlan::new(ck.config(), adapters, &PlanOptions { max_rank, targets: Vec::new() }).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = ExportOptions::new(Precision::Fp32);
    opts.hash_sources = false;
    export(&ck, &plan, &opts, out, &mut |_, _| {}).unwrap_or_else(|e| panic!("export {model}: {e}"));
}

/// The adapters of the shared hot-swap engine: attn (rank 4, 24 attention modules), mlp (rank 2,
/// rsLoRA, 10 MLP modules), rank16 (rank 16, 4 modules of block 0's attention).
pub const SWAPPED: [&str; 3] = ["attn.peft", "mlp.peft", "rank16.peft"];

/// The dev fixture exported once per test binary with slots for [`SWAPPED`] (max rank 16, fp32).
pub fn swap_engine() -> &'static Path {
    static E: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &E.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("dev-swap");
        let ads: Vec<Adapter> = SWAPPED.iter().map(|s| load_lora(s)).collect();
        let refs: Vec<&Adapter> = ads.iter().collect();
        export_engine("dev", "diffusers", &refs, None, &dir);
        (tmp, dir)
    })
    .1
}

/// The goldens' output key of the dev LoRA fixture `stem`.
pub fn output_key(stem: &str) -> String {
    lora_fixtures("dev").into_iter().find(|f| f.stem == stem).map(|f| f.output_key).unwrap_or_else(|| panic!("no fixture {stem}"))
}

/// The output of a run that must succeed.
pub fn must(r: Result<HostTensor, RuntimeError>) -> HostTensor {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub fn session(dir: &Path, threads: usize) -> FluxSession {
    FluxSession::builder(dir).with_library(ort_library()).with_threads(threads).build().unwrap_or_else(|e| panic!("{e}"))
}

/// Golden inputs and every `out.*` tensor of `golden/outputs/<model>.safetensors`.
pub fn goldens(model: &str, session: &FluxSession) -> (FluxInputs, BTreeMap<String, HostTensor>) {
    let path = fixtures().join(format!("golden/outputs/{model}.safetensors"));
    let inputs = FluxInputs::from_safetensors(&path, &session.manifest().model).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).expect("read goldens");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("goldens");
    let mut outs = BTreeMap::new();
    for (name, view) in st.tensors() {
        if name.starts_with("out.") {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            outs.insert(name.clone(), HostTensor::new(view.shape().to_vec(), data).expect("golden shape"));
        }
    }
    (inputs, outs)
}

/// Relative error max|Δ| / max|reference|.
pub fn rel_err(got: &HostTensor, want: &HostTensor) -> f32 {
    let d = got.max_abs_diff(want).unwrap_or_else(|| panic!("shape {:?} vs {:?}", got.shape(), want.shape()));
    d / want.max_abs().max(f32::MIN_POSITIVE)
}

/// `build-engine --pipeline` (the binary at `build_engine`, the caller's `env!("CARGO_BIN_EXE_build-engine")`)
/// on the tiny pipeline and dev model with slots for `loras` (fixture paths); `extra` arguments
/// after them. Panics with build-engine's stderr when it fails.
pub fn build_tiny_pipeline_engine(build_engine: &str, out: &Path, loras: &[&str], extra: &[&str]) {
    let mut cmd = Command::new(build_engine);
    cmd.arg("--pipeline").arg(fixtures().join("pipeline/flux-tiny")).arg("--model").arg(fixtures().join("models/dev-diffusers"));
    for l in loras {
        cmd.arg("--lora").arg(fixtures().join(l));
    }
    let st = cmd.arg("--out").arg(out).args(extra).env("ORT_DYLIB_PATH", ort_library()).output().expect("run build-engine");
    assert!(st.status.success(), "build-engine {loras:?} {extra:?} failed: {}", String::from_utf8_lossy(&st.stderr));
}

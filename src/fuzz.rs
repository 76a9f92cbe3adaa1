//! Fuzz target bodies: everything flux-trt reads from user bytes, each through the library's own
//! entry points, with the invariants their results must keep. The coverage-guided fuzzers of
//! `fuzz/` (cargo-afl, `tools/fuzz.sh`) call these on generated inputs, and `tests/fuzz_corpus.rs`
//! replays every committed corpus file through them in `cargo test`. A body never panics on any
//! input: a panic (or a broken invariant) is a bug in flux-trt.

use std::path::Path;

use crate::flux::{FluxConfig, Variant};
use crate::lora::plan::PlanOptions;
use crate::manifest::component::ComponentManifest;
use crate::manifest::Manifest;
use crate::pipeline::latents::Resolution;
use crate::pipeline::{Limits, Schedule, SchedulerConfig};
use crate::SlotPlan;

/// A fuzz target: its name (the `fuzz/` binary and corpus folder `fuzz/corpus/<name>/`) and body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `tools/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "lora", run: lora_file },
    Target { name: "manifest", run: manifest },
    Target { name: "batch", run: batch_file },
    #[cfg(feature = "serve")]
    Target { name: "image_request", run: image_request },
    #[cfg(feature = "serve")]
    Target { name: "adapter_request", run: adapter_request },
];

/// The transformer of the repository's tiny dev fixture (`tests/fixtures/models/dev-diffusers`),
/// whose adapters (`tests/fixtures/loras/`) seed the LoRA corpus.
fn tiny_dev() -> FluxConfig {
    FluxConfig {
        hidden_size: 64,
        num_heads: 2,
        head_dim: 32,
        num_double_blocks: 2,
        num_single_blocks: 2,
        context_dim: 32,
        pooled_dim: 32,
        mlp_hidden: 256,
        axes_dim: [4, 14, 14],
        ..FluxConfig::flux1(Variant::Dev)
    }
}

/// A safetensors LoRA file (header, metadata, key set of every format, factor data): loaded as
/// `lora::load` does, then planned into slots of the tiny dev transformer and laid out, as an
/// engine does on a swap.
pub fn lora_file(data: &[u8]) {
    let adapter = match crate::lora::load_bytes(Path::new("fuzz.safetensors"), data, "fuzz") {
        Ok(a) => a,
        Err(e) => return drop(e.to_string()),
    };
    assert!(!adapter.modules.is_empty() || !adapter.text_encoder.is_empty(), "an adapter without modules loaded");
    for (name, m) in adapter.modules.iter().chain(&adapter.text_encoder) {
        let (a, b) = (&m.a, &m.b);
        assert!(a.rows > 0 && a.cols > 0 && b.rows > 0, "{name}: empty factor");
        assert_eq!(b.cols, a.rows, "{name}: B's columns are not A's rank");
        assert_eq!((a.data.len(), b.data.len()), (a.rows * a.cols, b.rows * b.cols), "{name}: factor data length");
        assert!(m.scale.is_finite(), "{name}: scale {} is not finite", m.scale);
        assert!(a.data.iter().chain(&b.data).all(|v| v.is_finite()), "{name}: non-finite factor value");
    }
    let summary = adapter.summary();
    assert_eq!((summary.modules.len(), summary.text_encoder_modules), (adapter.modules.len(), adapter.text_encoder.len()), "summary module counts");
    if adapter.modules.is_empty() {
        return;
    }
    match SlotPlan::new(&tiny_dev(), &[&adapter], &PlanOptions::default()) {
        Ok(plan) => {
            plan.validate(&adapter).expect("an adapter validates against the plan made for it");
            plan.lay_out(&[(&adapter, 1.0)]).expect("an adapter lays out into the plan made for it");
        }
        Err(e) => drop(e.to_string()),
    }
}

/// An engine manifest (`manifest.json`, transformer or pipeline component): parsed and checked as
/// `Manifest::load` / `ComponentManifest::load` do. What loads must survive the save/load round
/// trip `build-engine` does when it adds the TensorRT plan to an exported folder.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("manifest.json");
    match Manifest::parse(file, text) {
        Ok(m) => {
            let json = serde_json::to_string_pretty(&m).expect("a loaded manifest serializes");
            let back = Manifest::parse(file, &json).unwrap_or_else(|e| panic!("a loaded manifest no longer loads once saved: {e}\n{json}"));
            assert_eq!(back, m, "the manifest changed in the save/load round trip");
            let plan = m.lora.plan();
            assert_eq!(plan.slots.len(), m.lora.slots.len());
        }
        Err(e) => drop(e.to_string()),
    }
    match ComponentManifest::parse(file, text) {
        Ok(m) => {
            let json = serde_json::to_string_pretty(&m).expect("a loaded component manifest serializes");
            let back = ComponentManifest::parse(file, &json).unwrap_or_else(|e| panic!("a loaded component manifest no longer loads once saved: {e}\n{json}"));
            assert_eq!(back, m, "the component manifest changed in the save/load round trip");
        }
        Err(e) => drop(e.to_string()),
    }
}

/// A `flux-trt generate --prompts` JSONL batch file: parsed, then every line checked the way
/// `generate` checks it before running it (adapter specs, resolution and size limits, the
/// schedule of its steps).
pub fn batch_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = match crate::pipeline::batch::parse_batch(Path::new("batch.jsonl"), text) {
        Ok(l) => l,
        Err(e) => return drop(e.to_string()),
    };
    assert!(!lines.is_empty());
    let limits = Limits::default();
    for line in &lines {
        for spec in line.lora.as_ref().map(|l| l.specs()).unwrap_or_default() {
            if let Err(e) = crate::lora::parse_spec(&spec) {
                drop(e.to_string());
            }
        }
        let (w, h) = (line.width.unwrap_or(1024), line.height.unwrap_or(1024));
        let res = match Resolution::new(w, h).and_then(|r| limits.check(w, h, 1).map(|()| r)) {
            Ok(r) => r,
            Err(e) => {
                drop(e.to_string());
                continue;
            }
        };
        if let Err(e) = Schedule::flux(&SchedulerConfig::flux_dev(), line.steps.unwrap_or(28), res.image_seq_len()) {
            drop(e.to_string());
        }
    }
}

/// A `POST /v1/images/generations` body, parsed and validated as the handler does (default
/// limits); an accepted request keeps every limit, and an error is the OpenAI error shape.
#[cfg(feature = "serve")]
pub fn image_request(data: &[u8]) {
    use crate::serve::api::parse_image_request;
    let limits = crate::serve::Limits::default();
    match parse_image_request(data, &limits) {
        Ok(r) => {
            assert!(!r.prompt.trim().is_empty() && r.prompt.len() <= limits.max_prompt_bytes, "prompt");
            assert!(r.prompt_2.as_ref().is_none_or(|p| p.len() <= limits.max_prompt_bytes), "prompt_2");
            assert!((1..=limits.max_n).contains(&r.n), "n {}", r.n);
            assert!((1..=limits.max_steps).contains(&r.steps), "steps {}", r.steps);
            for side in [r.width, r.height] {
                assert!(side > 0 && side % 16 == 0 && side <= limits.max_side, "size {}x{}", r.width, r.height);
            }
            assert!(r.guidance.is_finite() && (0.0..=100.0).contains(&r.guidance), "guidance {}", r.guidance);
            assert!(r.loras.len() <= limits.max_loras, "loras");
            for (i, l) in r.loras.iter().enumerate() {
                assert!(!l.name.is_empty() && l.strength.is_finite() && (-4.0..=4.0).contains(&l.strength), "loras[{i}]");
                assert!(r.loras[..i].iter().all(|o| o.name != l.name), "loras[{i}] listed twice");
            }
            let res = Resolution::new(r.width, r.height).expect("an accepted size is a valid resolution");
            Schedule::flux(&SchedulerConfig::flux_dev(), r.steps, res.image_seq_len()).expect("accepted steps schedule");
        }
        Err(e) => check_error(&e),
    }
}

/// A `POST /v1/adapters` body `{"name", "file"}`, parsed and checked as the handler does before
/// the file is read.
#[cfg(feature = "serve")]
pub fn adapter_request(data: &[u8]) {
    match crate::serve::api::parse_adapter_request(data) {
        Ok(r) => {
            assert!(!r.name.is_empty() && r.name.len() <= 128, "name {:?}", r.name);
            let p = Path::new(&r.file);
            assert!(p.parent() == Some(Path::new("")) && p.file_name().is_some() && !r.file.contains(['/', '\\']), "file {:?} is not a plain name", r.file);
            assert_eq!(p.extension().and_then(|e| e.to_str()), Some("safetensors"), "file {:?}", r.file);
        }
        Err(e) => check_error(&e),
    }
}

/// A request error is a 4xx in the OpenAI error shape naming its field.
#[cfg(feature = "serve")]
fn check_error(e: &crate::serve::api::ApiError) {
    assert!((400..500).contains(&e.status), "status {}", e.status);
    assert!(e.param.is_some(), "the error names no field: {}", e.message);
    let body: serde_json::Value = serde_json::from_str(&e.body()).expect("the error body is JSON");
    assert_eq!(body["error"]["message"], serde_json::Value::from(e.message.as_str()));
}

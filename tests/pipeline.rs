//! Text-to-image pipeline parity with diffusers 0.42.1 FluxPipeline; goldens in
//! tests/fixtures/pipeline (tools/reference/make_pipeline_fixtures.py).

use std::path::{Path, PathBuf};

use flux_trt::pipeline::{PipelineError, Schedule, SchedulerConfig};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline")
}

fn read_json<T: for<'de> Deserialize<'de>>(rel: &str) -> T {
    let p = fixtures().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// f32 tensors of a safetensors file, by name, with shapes.
fn load_tensors(rel: &str) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let p = fixtures().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

// ---------------------------------------------------------------- scheduler

#[derive(Deserialize)]
struct SchedCase {
    config: String,
    steps: usize,
    image_seq_len: usize,
    mu: f64,
    #[serde(default)]
    diffusers_nan: bool,
    #[serde(default)]
    sigmas: Vec<f32>,
    #[serde(default)]
    timesteps: Vec<f32>,
    #[serde(default)]
    transformer_timesteps: Vec<f32>,
}

#[derive(Deserialize)]
struct SchedGoldens {
    cases: Vec<SchedCase>,
}

fn sched_config(name: &str) -> SchedulerConfig {
    SchedulerConfig::from_file(&fixtures().join("schedulers").join(name).join("scheduler_config.json")).unwrap()
}

#[test]
fn scheduler_matches_diffusers() {
    let g: SchedGoldens = read_json("scheduler.json");
    assert!(g.cases.len() >= 30);
    let mut exact = 0usize;
    let mut total = 0usize;
    for c in &g.cases {
        let cfg = sched_config(&c.config);
        let what = format!("{} steps={} seq={}", c.config, c.steps, c.image_seq_len);
        assert!((cfg.mu(c.image_seq_len) - c.mu).abs() <= 1e-12, "{what}: mu");
        let s = Schedule::flux(&cfg, c.steps, c.image_seq_len);
        if c.diffusers_nan {
            assert!(matches!(s, Err(PipelineError::Schedule(_))), "{what}: expected an error, got {s:?}");
            continue;
        }
        let s = s.unwrap();
        assert_eq!(s.sigmas.len(), c.steps + 1, "{what}");
        assert_eq!(s.num_steps(), c.steps, "{what}");
        assert!(max_abs_diff(&s.sigmas, &c.sigmas) <= 1e-6, "{what}: sigmas {:?} vs {:?}", s.sigmas, c.sigmas);
        for (a, b) in s.timesteps.iter().zip(&c.timesteps) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{what}: timestep {a} vs {b}");
        }
        let tt: Vec<f32> = (0..s.num_steps()).map(|i| s.transformer_timestep(i)).collect();
        assert!(max_abs_diff(&tt, &c.transformer_timesteps) <= 1e-6, "{what}: transformer timesteps");
        total += s.sigmas.len() + s.timesteps.len() + tt.len();
        exact += s.sigmas.iter().zip(&c.sigmas).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        exact += s.timesteps.iter().zip(&c.timesteps).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        exact += tt.iter().zip(&c.transformer_timesteps).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    }
    // The float32 arithmetic mirrors numpy/torch op for op: every value is bit-equal.
    assert_eq!(exact, total, "{} of {total} values differ in the last bits", total - exact);
}

#[test]
fn scheduler_presets_equal_hub_configs() {
    for (preset, name) in [(SchedulerConfig::flux_dev(), "dev"), (SchedulerConfig::flux_schnell(), "schnell")] {
        let file = sched_config(name);
        for (steps, seq) in [(4, 256), (28, 4096), (50, 1024)] {
            assert_eq!(Schedule::flux(&preset, steps, seq).unwrap(), Schedule::flux(&file, steps, seq).unwrap(), "{name}");
        }
    }
}

#[test]
fn scheduler_step_matches_diffusers() {
    let t = load_tensors("scheduler_steps.safetensors");
    let s = Schedule::flux(&sched_config("dev"), 4, 16).unwrap();
    let mut x = t["x0"].1.clone();
    for i in 0..4 {
        s.step(i, &mut x, &t[&format!("v.{i}")].1).unwrap();
        let want = &t[&format!("x.{i}")].1;
        assert!(max_abs_diff(&x, want) <= 1e-6, "step {i}: {}", max_abs_diff(&x, want));
    }
    let mut short = vec![0.0f32; 3];
    assert!(matches!(s.step(0, &mut short, &[0.0; 4]), Err(PipelineError::Length { .. })));
    assert!(matches!(s.step(4, &mut x.clone(), &x), Err(PipelineError::Schedule(_))));
}

#[test]
fn scheduler_config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"_class_name": "EulerDiscreteScheduler"}"#, "_class_name"),
        (r#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
        (r#"{"shift": -1.0}"#, "shift"),
        (r#"{"use_dynamic_shifting": true, "base_image_seq_len": 64, "max_image_seq_len": 64}"#, "max_image_seq_len"),
        (r#"{"time_shift_type": "cubic"}"#, "cubic"),
        (r#"{"shift": "three"}"#, "\"three\""),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.json"));
        std::fs::write(&p, text).unwrap();
        let e = SchedulerConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains(needle), "{text}: {e}");
    }
    let e = Schedule::flux(&SchedulerConfig::flux_dev(), 0, 16).unwrap_err();
    assert!(matches!(e, PipelineError::Schedule(_)));
}

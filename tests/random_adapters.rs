//! `make-random-flux --lora attn|all`: the random PEFT adapters for benchmarks are read by the
//! LoRA loader as diffusers/PEFT files with exactly the requested modules, ranks, dtype and
//! value scale, and fit a slot plan of the matching random checkpoint.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use flux_trt::lora::plan::PlanOptions;
use flux_trt::{Checkpoint, SlotPlan};

const SHAPE: [&str; 12] = ["--double", "2", "--single", "2", "--hidden", "128", "--heads", "2", "--context", "64", "--pooled", "32"];

fn make(args: &[&str], out: &Path) {
    let r = Command::new(env!("CARGO_BIN_EXE_make-random-flux")).args(SHAPE).args(args).arg("--out").arg(out).output().expect("run make-random-flux");
    assert!(r.status.success(), "make-random-flux {args:?} failed: {}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn random_peft_adapters_load_with_the_requested_modules() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    make(&["--layout", "diffusers"], &model);
    let ckpt = Checkpoint::open(&model).unwrap_or_else(|e| panic!("{e}"));
    let linear: BTreeSet<String> = ckpt.config().linear_modules().into_iter().map(|m| m.name).collect();

    let attn = tmp.path().join("attn-r16.safetensors");
    make(&["--lora", "attn", "--rank", "16"], &attn);
    let all = tmp.path().join("all-r64.safetensors");
    make(&["--lora", "all", "--rank", "64", "--seed", "7"], &all);

    let a = flux_trt::lora::load(&attn).unwrap_or_else(|e| panic!("{e}"));
    let b = flux_trt::lora::load(&all).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.format.to_string(), b.format.to_string());
    println!("format {}", a.format);
    let mut want_attn = BTreeSet::new();
    for i in 0..2 {
        for n in ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"] {
            want_attn.insert(format!("transformer_blocks.{i}.attn.{n}"));
        }
        for n in ["to_q", "to_k", "to_v"] {
            want_attn.insert(format!("single_transformer_blocks.{i}.attn.{n}"));
        }
    }
    assert_eq!(a.modules.keys().cloned().collect::<BTreeSet<_>>(), want_attn);
    assert_eq!(b.modules.keys().cloned().collect::<BTreeSet<_>>(), linear, "`all` must target every Linear module");
    assert!(a.modules.values().all(|m| m.rank() == 16 && m.scale == 1.0));
    assert!(b.modules.values().all(|m| m.rank() == 64 && m.scale == 1.0));

    // bf16 on disk, values ~ N(0, 0.01).
    let bytes = std::fs::read(&all).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert!(st.tensors().iter().all(|(_, v)| v.dtype() == safetensors::Dtype::BF16));
    let vals: Vec<f32> = b.modules.values().flat_map(|m| m.a.data.iter().chain(&m.b.data).copied()).collect();
    let mean = vals.iter().sum::<f32>() / vals.len() as f32;
    let std = (vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / vals.len() as f32).sqrt();
    println!("{} values: mean {mean:.2e} std {std:.5}", vals.len());
    assert!(mean.abs() < 2e-4 && (std - 0.01).abs() < 3e-4, "mean {mean} std {std}");

    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((plan.max_rank, plan.slots.len()), (64, linear.len()));
}

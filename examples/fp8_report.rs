//! FP8 accuracy report on the tiny fixtures: per variant (dev, schnell), weight-scale mode
//! (channel, tensor) and attention Q/DQ (off, on): cosine, relative L2 and max abs error of the
//! FP8 output against the diffusers fp32 golden, and of each LoRA's contribution.
//!
//!     cargo run --example fp8_report -- [--samples N] [--out FILE] [--date D] [--machine M]
//!
//! (`tools/bench/fp8_report.sh` fills in the date and machine.) Needs onnxruntime
//! (ORT_DYLIB_PATH or python3's onnxruntime package).

#[path = "../tests/fp8_support/mod.rs"]
mod fp8_support;

use flux_trt::onnx::fp8::WeightScale;
use fp8_support::{measure, CASES};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut samples, mut out, mut date, mut machine) = (8usize, None, String::new(), String::new());
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--samples" => samples = val()?.parse()?,
            "--out" => out = Some(std::path::PathBuf::from(val()?)),
            "--date" => date = val()?,
            "--machine" => machine = val()?,
            o => anyhow::bail!("unknown argument {o}"),
        }
    }
    let mut results = Vec::new();
    for case in &CASES {
        for mode in [WeightScale::Channel, WeightScale::Tensor] {
            for attention in [false, true] {
                let acc = measure(case, mode, attention, samples);
                println!(
                    "{:8} {:7} attn={:5}  base: cos {:.6} relL2 {:.4e} maxabs {:.4e}  {}",
                    acc.variant,
                    acc.weight_scale,
                    attention,
                    acc.base.cosine,
                    acc.base.rel_l2,
                    acc.base.max_abs_err,
                    acc.lora_delta.iter().map(|(k, m)| format!("lora {k}: cos {:.6} relL2 {:.4e}", m.cosine, m.rel_l2)).collect::<Vec<_>>().join("  ")
                );
                results.push(acc);
            }
        }
    }
    let json = serde_json::json!({
        "tool": "examples/fp8_report.rs",
        "date": date,
        "machine": machine,
        "runtime": "ONNX Runtime CPU, graph optimization BASIC, FP8 Q/DQ simulated, float dtype fp32",
        "fixtures": "tests/fixtures (tiny random FLUX dev 2+2 blocks, schnell 1+1 blocks); goldens: diffusers fp32",
        "calibration": { "samples": samples, "seed": 0, "data": "standard normal stand-in embeddings" },
        "results": results,
    });
    let text = serde_json::to_string_pretty(&json)?;
    match out {
        Some(p) => flux_trt::util::write_atomic(&p, text.as_bytes())?,
        None => println!("{text}"),
    }
    Ok(())
}

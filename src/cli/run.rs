//! `flux-trt run`: one transformer call on an engine folder with ONNX Runtime.

use std::path::PathBuf;

use clap::Args;

use super::{LimitArgs, OrtArgs};

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Engine folder (manifest.json, model.onnx, model.onnx.data).
    #[arg(long, value_name = "DIR")]
    pub engine: PathBuf,
    /// Inputs: hidden_states, encoder_hidden_states, pooled_projections, timestep, [guidance],
    /// and rope_cos/rope_sin or txt_ids/img_ids (other tensors are ignored).
    #[arg(long, value_name = "FILE")]
    pub inputs: PathBuf,
    /// LoRA adapter with optional strength (FILE or FILE:STRENGTH, default 1); repeat to stack.
    #[arg(long = "lora", value_name = "FILE[:S]")]
    pub loras: Vec<String>,
    /// Output safetensors file (tensor `sample`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub ort: OrtArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Splits `FILE[:STRENGTH]`; a suffix that is not a number belongs to the file name.
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
pub fn parse_lora_arg(s: &str) -> Result<(PathBuf, f32), String> {
    if let Some((file, strength)) = s.rsplit_once(':') {
        if let Ok(v) = strength.parse::<f32>() {
            if !v.is_finite() {
                return Err(format!("--lora {s}: strength {strength} is not a finite number"));
            }
            if file.is_empty() {
                return Err(format!("--lora {s}: no file"));
            }
            return Ok((PathBuf::from(file), v));
        }
    }
    Ok((PathBuf::from(s), 1.0))
}

#[cfg(feature = "ort")]
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    use flux_trt::runtime::inputs::{save_safetensors, SAMPLE};
    use flux_trt::runtime::{FluxInputs, Slotted, Transformer};

    let loras = args.loras.iter().map(|s| parse_lora_arg(s)).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
    let adapters = loras.iter().map(|(p, s)| flux_trt::lora::load(p).map(|a| (a, *s))).collect::<Result<Vec<_>, _>>()?;
    // Inputs and limits first: nothing is loaded for a request that cannot run.
    let manifest = flux_trt::Manifest::load(&args.engine)?;
    let inputs = FluxInputs::from_safetensors(&args.inputs, &manifest.model)?;
    let hs = inputs.hidden_states.shape();
    args.limits.limits().check_tokens(hs[0], hs[1])?;
    let t = Instant::now();
    let session = args.ort.session(&args.engine)?;
    eprintln!("session: {} on {} in {:.2?}", args.engine.display(), session.execution_provider(), t.elapsed());
    if !adapters.is_empty() {
        let refs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
        let rep = session.swap(&refs)?;
        let names: Vec<_> = adapters.iter().map(|(a, s)| format!("{} ({}, rank {}) x{s}", a.name, a.format, a.max_rank())).collect();
        eprintln!("adapters: {} installed in {:.2?}", names.join(", "), rep.elapsed);
    }
    let t = Instant::now();
    let sample = session.run(&inputs)?;
    eprintln!("run: {:?} in {:.2?}", sample.shape(), t.elapsed());
    save_safetensors(&args.out, &[(SAMPLE, &sample)])?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(not(feature = "ort"))]
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("this flux-trt was built without the `ort` feature (ONNX Runtime backend)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_arg() {
        assert_eq!(parse_lora_arg("a.safetensors").unwrap(), (PathBuf::from("a.safetensors"), 1.0));
        assert_eq!(parse_lora_arg("a.safetensors:0.5").unwrap(), (PathBuf::from("a.safetensors"), 0.5));
        assert_eq!(parse_lora_arg("C:dir/a.safetensors").unwrap(), (PathBuf::from("C:dir/a.safetensors"), 1.0));
        assert_eq!(parse_lora_arg("x:-1").unwrap(), (PathBuf::from("x"), -1.0));
        assert!(parse_lora_arg("x:nan").is_err());
        assert!(parse_lora_arg(":0.5").is_err());
    }
}

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

#[cfg(feature = "ort")]
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    use flux_trt::runtime::inputs::{save_safetensors, SAMPLE};
    use flux_trt::runtime::{FluxInputs, Slotted};

    let loras = args.loras.iter().map(|s| flux_trt::lora::parse_spec(s)).collect::<Result<Vec<_>, _>>()?;
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

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
    /// Backend: `ort` (ONNX Runtime, CPU or --cuda) or `cuda` (the native CUDA backend, needs a
    /// build with the `cuda` feature; device from --cuda, default 0).
    #[arg(long, value_enum, default_value_t = super::TransformerBackend::Ort)]
    pub backend: super::TransformerBackend,
    #[command(flatten)]
    pub ort: OrtArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[cfg(feature = "ort")]
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    if args.backend == super::TransformerBackend::Cuda {
        return run_cuda(&args);
    }
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

/// `run --backend cuda`: the inputs file must hold `txt_ids` / `img_ids` (the request's position ids).
#[cfg(feature = "cuda")]
fn run_cuda(args: &RunArgs) -> anyhow::Result<()> {
    use std::time::Instant;

    use flux_trt::runtime::cuda::CudaSession;
    use flux_trt::runtime::inputs::{save_safetensors, SAMPLE};
    use flux_trt::runtime::{FluxInputs, HostTensor, RequestInputs, Slotted, Transformer};

    let loras = args.loras.iter().map(|s| flux_trt::lora::parse_spec(s)).collect::<Result<Vec<_>, _>>()?;
    let adapters = loras.iter().map(|(p, s)| flux_trt::lora::load(p).map(|a| (a, *s))).collect::<Result<Vec<_>, _>>()?;
    let t = Instant::now();
    let opts = super::cuda_options(&args.ort)?;
    let session = CudaSession::open(&args.engine, opts)?;
    eprintln!("session: {} on {} (native CUDA) in {:.2?}", args.engine.display(), session.gpu().name(), t.elapsed());
    let cfg = session.manifest().model.clone();
    let inputs = FluxInputs::from_safetensors(&args.inputs, &cfg)?;
    let bytes = std::fs::read(&args.inputs)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let ids = |name: &str| -> anyhow::Result<Vec<[f32; 3]>> {
        let v = st.tensor(name).map_err(|_| anyhow::anyhow!("{}: the cuda backend needs `{name}` (position ids) in the inputs file", args.inputs.display()))?;
        anyhow::ensure!(v.dtype() == safetensors::Dtype::F32, "{}: `{name}` must be f32", args.inputs.display());
        Ok(v.data().chunks_exact(12).map(|c| [0, 4, 8].map(|o| f32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]))).collect())
    };
    let (txt_ids, img_ids) = (ids("txt_ids")?, ids("img_ids")?);
    let batch = inputs.batch();
    let req = RequestInputs {
        batch,
        image_seq_len: img_ids.len(),
        text_len: txt_ids.len(),
        encoder_hidden_states: inputs.encoder_hidden_states.data(),
        pooled_projections: inputs.pooled_projections.data(),
        guidance: inputs.guidance.as_ref().and_then(|g| g.data().first().copied()),
        txt_ids: &txt_ids,
        img_ids: &img_ids,
    };
    if !adapters.is_empty() {
        let refs: Vec<_> = adapters.iter().map(|(a, s)| (a, *s)).collect();
        let rep = session.swap(&refs)?;
        eprintln!("adapters installed in {:.2?} (version {})", rep.elapsed, rep.version);
    }
    let mut bound = session.bind(&req)?;
    let lease = session.lease();
    let timestep = inputs.timestep.data().first().copied().unwrap_or(0.0);
    let mut out = vec![0f32; batch * img_ids.len() * cfg.out_channels];
    let t = Instant::now();
    session.step(&lease, &mut bound, inputs.hidden_states.data(), timestep, &mut out)?;
    eprintln!("run: in {:.2?}", t.elapsed());
    let sample = HostTensor::new(vec![batch, img_ids.len(), cfg.out_channels], out).ok_or_else(|| anyhow::anyhow!("output shape"))?;
    save_safetensors(&args.out, &[(SAMPLE, &sample)])?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(all(feature = "ort", not(feature = "cuda")))]
fn run_cuda(_args: &RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("this flux-trt was built without the `cuda` feature (native CUDA backend): cargo build --release --features cuda")
}

#[cfg(not(feature = "ort"))]
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("this flux-trt was built without the `ort` feature (ONNX Runtime backend)")
}

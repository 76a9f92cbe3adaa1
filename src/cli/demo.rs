//! `flux-trt demo`: exports the bundled tiny FLUX.1-dev fixture with slots for two adapters
//! (by default the same engine as `build-engine --recipe engines/tiny.toml`),
//! then on one ONNX Runtime session runs base → A → B → A, printing swap times, max|Δ| between
//! adapters and against the diffusers goldens. Fails if any output is off by more than 1e-4
//! (relative) or A → B → A is not bit-exact.

use std::path::PathBuf;

use clap::Args;

use super::OrtArgs;

#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Fixture folder (models/, loras/, golden/).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))]
    pub fixtures: PathBuf,
    /// Where to write the engine.
    #[arg(long, value_name = "DIR", default_value = "engines/tiny")]
    pub out: PathBuf,
    /// Adapter A (file stem under loras/).
    #[arg(long, default_value = "attn.peft")]
    pub a: String,
    /// Adapter B (file stem under loras/).
    #[arg(long, default_value = "mlp.peft")]
    pub b: String,
    #[command(flatten)]
    pub ort: OrtArgs,
}

#[cfg(all(feature = "ort", feature = "export"))]
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use anyhow::Context;
    use flux_trt::lora::plan::PlanOptions;
    use flux_trt::manifest::Precision;
    use flux_trt::onnx::{export, ExportOptions};
    use flux_trt::runtime::{FluxInputs, HostTensor, Slotted, Transformer};
    use flux_trt::{Checkpoint, SlotPlan};

    const TOL: f32 = 1e-4;
    let fx = &args.fixtures;
    let t0 = Instant::now();
    let ckpt_path = fx.join("models/dev-bfl.safetensors");
    let ckpt = Checkpoint::open(&ckpt_path)?;
    let lora_path = |stem: &str| fx.join("loras").join(format!("{stem}.safetensors"));
    let a = flux_trt::lora::load(&lora_path(&args.a))?;
    let b = flux_trt::lora::load(&lora_path(&args.b))?;
    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions::default())?;
    let mut opts = ExportOptions::new(Precision::Fp32);
    opts.lora_files = vec![lora_path(&args.a), lora_path(&args.b)];
    let rep = export(&ckpt, &plan, &opts, &args.out, &mut |_, _| {})?;
    println!(
        "export  {} -> {}: {} slots (max rank {}), {} nodes, {} weight bytes, {:.2?}",
        ckpt_path.display(),
        args.out.display(),
        plan.slots.len(),
        plan.max_rank,
        rep.nodes,
        rep.data_bytes,
        t0.elapsed()
    );

    let t = Instant::now();
    let session = args.ort.session(&args.out)?;
    println!("session {} on {}, {:.2?}", args.out.display(), session.execution_provider(), t.elapsed());

    let golden_path = fx.join("golden/outputs/dev.safetensors");
    let inputs = FluxInputs::from_safetensors(&golden_path, &session.manifest().model)?;
    let bytes = std::fs::read(&golden_path).with_context(|| golden_path.display().to_string())?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| golden_path.display().to_string())?;
    let golden = |key: &str| -> anyhow::Result<HostTensor> {
        let v = st.tensor(key).with_context(|| format!("{}: no tensor `{key}`", golden_path.display()))?;
        let data = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        HostTensor::new(v.shape().to_vec(), data).with_context(|| format!("{key}: bad shape"))
    };

    let mut outputs: BTreeMap<String, HostTensor> = BTreeMap::new();
    let mut failures = Vec::new();
    let check = |label: &str, out: &HostTensor, key: &str, failures: &mut Vec<String>| -> anyhow::Result<()> {
        let want = golden(key)?;
        let d = out.max_abs_diff(&want).context("output shape differs from the golden")?;
        let rel = d / want.max_abs().max(f32::MIN_POSITIVE);
        println!("        {label:<12} max|Δ| vs diffusers {key:<16} {d:.3e} (rel {rel:.2e})");
        if rel > TOL {
            failures.push(format!("{label}: rel err {rel:.2e} > {TOL:e}"));
        }
        Ok(())
    };

    let t = Instant::now();
    let base = session.run(&inputs)?;
    println!("run     base, {:.2?}", t.elapsed());
    check("base", &base, "out.base", &mut failures)?;
    for (step, ad) in [(1, &a), (2, &b), (3, &a)] {
        let rep = session.swap(&[(ad, 1.0)])?;
        let t = Instant::now();
        let out = session.run(&inputs)?;
        println!(
            "swap {step}  -> {} ({}, rank {}, {} modules): {:.2?}; run {:.2?} (version {})",
            ad.name,
            ad.format,
            ad.max_rank(),
            ad.modules.len(),
            rep.elapsed,
            t.elapsed(),
            rep.version
        );
        check(&ad.name, &out, &format!("out.{}", ad.name), &mut failures)?;
        if let Some(prev) = outputs.get(&ad.name) {
            let exact = prev.bit_eq(&out);
            println!("        {} again after {}: bit-exact {exact}", ad.name, b.name);
            if !exact {
                failures.push(format!("{} -> {} -> {} is not bit-exact", a.name, b.name, a.name));
            }
        }
        outputs.insert(ad.name.clone(), out);
    }
    let (oa, ob) = (&outputs[&a.name], &outputs[&b.name]);
    println!(
        "        max|Δ| {} vs {}: {:.3e}; vs base: {:.3e} / {:.3e}",
        a.name,
        b.name,
        oa.max_abs_diff(ob).unwrap_or(f32::NAN),
        oa.max_abs_diff(&base).unwrap_or(f32::NAN),
        ob.max_abs_diff(&base).unwrap_or(f32::NAN)
    );
    println!("session id {} (created once), total {:.2?}", session.session_id(), t0.elapsed());
    if !failures.is_empty() {
        anyhow::bail!("demo failed: {}", failures.join("; "));
    }
    Ok(())
}

#[cfg(not(all(feature = "ort", feature = "export")))]
pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("the demo needs the `ort` and `export` features")
}

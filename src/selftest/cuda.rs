//! `selftest --backend cuda`: the native CUDA backend on this GPU, with the same report as the
//! TensorRT self-test. The tiny model is exported at bf16 (cuDNN fused attention, bf16 GEMMs: the
//! deployment path) and fp32 with slots for both adapters; each engine runs both [`SHAPES`]
//! through base → A → B → A → base (one request bound per shape, a lease per step), checking a
//! repeated run (the second is a CUDA graph replay), A→B→A and back to base bit-exactly, that the
//! adapters change the output, and every set and shape against the reference backend opened on
//! the fp32 export (‖Δ‖/‖ref‖ ≤ 1e-2 for bf16, ≤ 1e-4 for fp32).

use std::path::PathBuf;

use super::{Reference, SelftestReport, TinyRequest, SHAPES};
use crate::lora::Adapter;
use crate::manifest::Precision;
use crate::runtime::cuda::{CudaOptions, CudaSession};
use crate::runtime::{HostTensor, Slotted, Transformer};

/// Options of [`selftest_cuda`].
#[derive(Clone, Debug)]
pub struct CudaSelftestOptions {
    /// Tiny FLUX checkpoint and two adapters for it.
    pub model: PathBuf,
    pub adapter_a: PathBuf,
    pub adapter_b: PathBuf,
    /// Where the exports go (one folder per precision).
    pub work_dir: PathBuf,
    pub device: usize,
}

/// ‖x − y‖₂ / ‖y‖₂ (f64 sums; ∞ when the shapes differ).
fn rel_l2(x: &HostTensor, y: &HostTensor) -> f32 {
    if x.shape() != y.shape() {
        return f32::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in x.data().iter().zip(y.data()) {
        num += ((*a - *b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt() as f32
}

fn max_diff(x: &HostTensor, y: &HostTensor) -> String {
    x.max_abs_diff(y).map_or_else(|| format!("shapes {:?} vs {:?}", x.shape(), y.shape()), |d| format!("max|Δ| = {d:.3e}"))
}

/// Runs the self-test (see the module docs). `Err` when it cannot start (no GPU, a missing
/// library, an export failure); failed checks are in the report.
pub fn selftest_cuda<R: Transformer>(opts: &CudaSelftestOptions, reference: Option<Reference<'_, R>>) -> crate::Result<SelftestReport> {
    use crate::lora::plan::PlanOptions;
    use crate::onnx::{export, ExportOptions};
    use crate::{Checkpoint, SlotPlan};

    let ckpt = Checkpoint::open(&opts.model)?;
    let (a, b) = (crate::lora::load(&opts.adapter_a)?, crate::lora::load(&opts.adapter_b)?);
    let plan = SlotPlan::new(ckpt.config(), &[&a, &b], &PlanOptions::default())?;
    let folder = |p: Precision| opts.work_dir.join(format!("{p:?}").to_lowercase());
    for p in [Precision::Fp32, Precision::Bf16] {
        let export_opts = ExportOptions { hash_sources: false, ..ExportOptions::new(p) };
        export(&ckpt, &plan, &export_opts, &folder(p), &mut |_, _| {})?;
    }
    let inputs: Vec<TinyRequest> = SHAPES.iter().map(|s| TinyRequest::at(ckpt.config(), *s)).collect();
    let sets: [(&str, Vec<(&Adapter, f32)>); 5] =
        [("base", vec![]), ("A", vec![(&a, 1.0)]), ("B", vec![(&b, 1.0)]), ("A again", vec![(&a, 1.0)]), ("base again", vec![])];
    let mut report = SelftestReport { backend: "cuda", tensorrt: "-".into(), ..Default::default() };

    // The reference's outputs per set (base, A, B) and shape, on the fp32 export.
    let want: Option<(String, crate::Result<Vec<Vec<HostTensor>>>)> = reference.map(|r| {
        let run = || -> crate::Result<Vec<Vec<HostTensor>>> {
            let backend = (r.open)(&folder(Precision::Fp32))?;
            let mut bound = inputs.iter().map(|x| backend.bind(&x.request())).collect::<crate::Result<Vec<_>>>()?;
            let mut outs = Vec::new();
            for (_, set) in sets.iter().take(3) {
                backend.swap(set)?;
                outs.push(inputs.iter().zip(&mut bound).map(|(x, bd)| x.step(&backend, bd)).collect::<crate::Result<Vec<_>>>()?);
            }
            Ok(outs)
        };
        (r.name.clone(), run())
    });

    for (p, tol) in [(Precision::Bf16, 1e-2f32), (Precision::Fp32, 1e-4)] {
        let label = format!("{p:?}").to_lowercase();
        let t0 = std::time::Instant::now();
        let s = CudaSession::open(&folder(p), CudaOptions { device: opts.device, ..Default::default() })?;
        report.gpu = s.gpu().name();
        report.notes.push(format!("{label}: opened {} in {:.2} s ({} slots)", folder(p).display(), t0.elapsed().as_secs_f64(), s.manifest().lora.slots.len()));
        let mut bound = inputs.iter().map(|x| s.bind(&x.request())).collect::<crate::Result<Vec<_>>>()?;
        let mut run_all = || -> crate::Result<Vec<HostTensor>> { inputs.iter().zip(&mut bound).map(|(x, bd)| x.step(&s, bd)).collect() };
        let first = run_all()?;
        let mut outs = Vec::new();
        for (i, (_, set)) in sets.iter().enumerate() {
            if i > 0 {
                s.swap(set)?;
            }
            outs.push(run_all()?);
        }
        for (i, shape) in SHAPES.iter().enumerate() {
            let o = |k: usize| &outs[k][i];
            let check_eq = |report: &mut SelftestReport, name: &str, compared: String, x: &HostTensor, y: &HostTensor| {
                report.check(&label, name, compared, "max|Δ| = 0", max_diff(x, y), x.bit_eq(y));
            };
            check_eq(&mut report, "repeated run is bit-exact (graph replay)", format!("two runs of the base model, {shape}"), o(0), &first[i]);
            check_eq(&mut report, "A→B→A restores A bit-exactly", format!("run(A) before and after B, {shape}"), o(3), o(1));
            check_eq(&mut report, "swap back to base is bit-exact", format!("run(base) at open vs after the swaps, {shape}"), o(4), o(0));
            let scale = o(0).max_abs().max(f32::MIN_POSITIVE);
            let d = |x: usize, y: usize| o(x).max_abs_diff(o(y)).unwrap_or(f32::INFINITY);
            let bound = format!("> 1e-3 × max|base| = {:.3e}", 1e-3 * scale);
            report.check(
                &label,
                "adapter A changes the output",
                format!("run(A) vs run(base), {shape}"),
                &bound,
                format!("max|Δ| = {:.3e}", d(1, 0)),
                d(1, 0) > 1e-3 * scale,
            );
            report.check(
                &label,
                "adapter B differs from A",
                format!("run(B) vs run(A), {shape}"),
                &bound,
                format!("max|Δ| = {:.3e}", d(2, 1)),
                d(2, 1) > 1e-3 * scale,
            );
            for (k, (set, _)) in sets.iter().enumerate().take(3) {
                let name = "native CUDA vs reference";
                let compared = format!("{set}, {shape}, ‖Δ‖/‖ref‖ against the fp32 export");
                match &want {
                    None => report.skip(&label, name, compared, "no reference backend given"),
                    Some((rname, Err(e))) => report.skip(&label, name, compared, format!("{rname} failed: {e}")),
                    Some((rname, Ok(w))) => {
                        let e = rel_l2(o(k), &w[k][i]);
                        report.check(&label, &format!("native CUDA vs {rname}"), compared, format!("≤ {tol:.0e}"), format!("{e:.3e}"), e <= tol);
                    }
                }
            }
        }
    }
    Ok(report)
}

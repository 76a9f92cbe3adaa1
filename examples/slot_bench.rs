//! Micro-benchmark of the adapter path: laying one loaded adapter into the LoRA slots (host
//! layout + conversion to the slots' dtype) and uploading it, against the H2D bandwidth.
//!
//! Host part (any machine): the previous path (f32 slot matrices, then one conversion pass per
//! tensor) against [`SlotFill::write`] straight into the slot dtype, on one thread and on all.
//! With `--cuda DEVICE`: the measured H2D bandwidth of a plain pinned copy of the same bytes,
//! [`CudaUpload::upload`] (layout into pinned memory overlapped with the copies, one context and
//! stream per session), and their ratio. With `--engine DIR` too: `FluxSession::swap` from the
//! loaded adapter on ONNX Runtime CUDA (the figure the service sees). Built with `--features cuda`
//! too: the native CUDA backend's stage (`SlotStager`, the slot set laid out on the device from one
//! packed upload, no model weights needed) against the same copy, and the previous stage of that
//! backend (host lay-out, pageable copy).
//!
//! ```text
//! make-random-flux --out a64.safetensors --lora attn --rank 64 --seed 2
//! cargo run --release --example slot_bench --features ort,cli -- --adapter a64.safetensors --cuda 0 --json out.json
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use flux_trt::lora::plan::PlanOptions;
use flux_trt::lora::{SlotLayout, SlotPlan, SlotTarget};
use flux_trt::manifest::Precision;
use flux_trt::runtime::Slotted as _;
use flux_trt::{FluxConfig, Variant};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "slot_bench", about = "LoRA slot layout + upload micro-benchmark")]
struct Args {
    /// Adapter file (e.g. `make-random-flux --lora attn --rank 64`).
    #[arg(long)]
    adapter: PathBuf,
    /// Slot targets (presets or globs) besides the adapter's modules.
    #[arg(long, default_value = "attn")]
    targets: Vec<String>,
    /// Slot rank.
    #[arg(long, default_value_t = 64)]
    rank: usize,
    /// Slot precision (the slots' dtype: fp32 → f32, fp16 → f16, bf16/fp8 → bf16).
    #[arg(long, value_enum, default_value_t = Precision::Bf16)]
    precision: Precision,
    /// Timed repetitions (median reported) after one warm-up.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Also upload to this CUDA device.
    #[arg(long)]
    cuda: Option<i32>,
    /// Also swap through an ONNX Runtime CUDA session of this engine folder (needs --cuda).
    #[arg(long)]
    engine: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed());
    }
    Ok(median(t))
}

/// The previous path: f32 slot matrices, then one conversion pass per tensor.
fn previous_path(plan: &SlotPlan, adapter: &flux_trt::Adapter, dtype: flux_trt::tensor::DType) -> Result<usize> {
    use flux_trt::tensor::DType;
    let w = plan.lay_out(&[(adapter, 1.0)])?;
    let mut n = 0;
    for m in w.a.into_iter().chain(w.b) {
        n += match dtype {
            DType::F32 => std::hint::black_box(m.data).len(),
            DType::F16 => std::hint::black_box(m.data.iter().map(|v| half::f16::from_f32(*v)).collect::<Vec<_>>()).len(),
            DType::BF16 => std::hint::black_box(m.data.iter().map(|v| half::bf16::from_f32(*v)).collect::<Vec<_>>()).len(),
        };
    }
    Ok(n)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let adapter = flux_trt::lora::load(&args.adapter)?;
    let config = FluxConfig::flux1(Variant::Dev);
    let plan = SlotPlan::new(&config, &[&adapter], &PlanOptions { max_rank: Some(args.rank), targets: args.targets.clone() })?;
    let dtype = args.precision.float_dtype();
    let layout = SlotLayout::new(&plan, dtype);
    let bytes = layout.bytes();
    let threads = rayon::current_num_threads();
    println!("{} slots at rank {}, {dtype:?}: {:.1} MB; {threads} threads", plan.slots.len(), plan.max_rank, bytes as f64 / 1e6);

    let fill = plan.fill(SlotTarget::Transformer, &[(&adapter, 1.0)])?;
    let mut words = vec![0u64; bytes.div_ceil(8)];
    let buf = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes];
    let before_ms = time(args.reps, || previous_path(&plan, &adapter, dtype).map(|_| ()))?;
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let after_1t_ms = time(args.reps, || {
        one_thread.install(|| fill.write(&layout, 0..layout.num_slots(), buf));
        Ok(())
    })?;
    let after_ms = time(args.reps, || {
        fill.write(&layout, 0..layout.num_slots(), buf);
        Ok(())
    })?;
    println!("host layout + conversion: previous {before_ms:.1} ms; now {after_1t_ms:.1} ms on 1 thread, {after_ms:.1} ms on {threads}");
    let mut report = json!({
        "adapter": args.adapter, "slots": plan.slots.len(), "rank": plan.max_rank, "dtype": dtype.name(), "bytes": bytes, "threads": threads,
        "host_layout_ms": { "previous": before_ms, "now_1_thread": after_1t_ms, "now": after_ms },
    });
    if let Some(device) = args.cuda {
        report["cuda"] = cuda(device, &args, &fill, &layout)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

fn cuda(device: i32, args: &Args, fill: &flux_trt::lora::SlotFill<'_>, layout: &SlotLayout) -> Result<serde_json::Value> {
    use cudarc::driver::result;
    use flux_trt::runtime::ort::CudaUpload;
    let bytes = layout.bytes();
    let up = CudaUpload::new(device).context("CUDA context")?;
    let ctx = up.context().clone();
    ctx.bind_to_thread()?;
    let name = ctx.name().unwrap_or_default();
    // SAFETY: plain device allocation, freed at the end; nothing else uses it.
    let dst = unsafe { result::malloc_sync(bytes) }?;
    // The slot tensors as the session allocates them: one allocation each (here carved from one).
    let dsts: Vec<u64> = layout.tensors().map(|(r, _)| dst + r.start as u64).collect();
    // The bandwidth yardstick: one synchronous copy of the same bytes from pinned memory.
    let mut pinned = unsafe { ctx.alloc_pinned::<u8>(bytes) }?;
    let host = unsafe { std::slice::from_raw_parts_mut(pinned.as_mut_ptr()?, bytes) };
    host.fill(1);
    let copy_ms = time(args.reps, || {
        // SAFETY: `dst` holds `bytes` bytes.
        unsafe { result::memcpy_htod_sync(dst, &*host) }?;
        Ok(())
    })?;
    let gbps = bytes as f64 / (copy_ms * 1e-3) / 1e9;
    let mut timings = Vec::new();
    let upload_ms = time(args.reps, || {
        timings.push(up.upload(fill, layout, &dsts)?);
        Ok(())
    })?;
    let last = timings.last().copied().unwrap_or_default();
    println!(
        "{name}: H2D {gbps:.1} GB/s ({copy_ms:.2} ms for {:.1} MB); layout + upload {upload_ms:.2} ms = {:.2} × bytes/bandwidth (target ≤ 1.3); last: layout {:.2} ms, wait {:.2} ms",
        bytes as f64 / 1e6,
        upload_ms / copy_ms,
        last.layout.as_secs_f64() * 1e3,
        last.wait.as_secs_f64() * 1e3
    );
    let mut out = json!({
        "gpu": name, "h2d_copy_ms": copy_ms, "h2d_gb_per_s": gbps, "upload_ms": upload_ms, "upload_over_copy": upload_ms / copy_ms,
        "last_layout_ms": last.layout.as_secs_f64() * 1e3, "last_wait_ms": last.wait.as_secs_f64() * 1e3,
    });
    #[cfg(feature = "cuda")]
    {
        out["device_stage"] = device_stage(device, args, copy_ms)?;
    }
    drop(pinned);
    // SAFETY: allocated above, no copy in flight (upload synchronizes).
    unsafe { result::free_sync(dst) }?;
    if let Some(engine) = &args.engine {
        use flux_trt::runtime::ort::{ExecutionProvider, FluxSession};
        let session = FluxSession::builder(engine).with_execution_provider(ExecutionProvider::Cuda { device }).build()?;
        let adapter = flux_trt::lora::load(&args.adapter)?;
        let swap_ms = time(args.reps, || {
            session.swap(&[(&adapter, 1.0)])?;
            Ok(())
        })?;
        let slot_bytes = session.lease().tensors().bytes();
        let ratio = swap_ms / (slot_bytes as f64 / (gbps * 1e9) * 1e3);
        println!("FluxSession::swap from the loaded adapter: {swap_ms:.2} ms for {:.1} MB = {ratio:.2} × bytes/bandwidth", slot_bytes as f64 / 1e6);
        out["session_swap_ms"] = json!(swap_ms);
        out["session_slot_bytes"] = json!(slot_bytes);
        out["session_swap_over_copy"] = json!(ratio);
    }
    Ok(out)
}

/// The native CUDA backend's stage from the loaded adapter: [`SlotStager`] (pack on the host,
/// one pinned upload, scatter kernel) against the pinned copy of the slot bytes (`copy_ms`), and
/// the backend's previous stage (host lay-out into pageable memory, one copy).
///
/// [`SlotStager`]: flux_trt::runtime::cuda::SlotStager
#[cfg(feature = "cuda")]
fn device_stage(device: i32, args: &Args, copy_ms: f64) -> Result<serde_json::Value> {
    use flux_trt::runtime::cuda::{device::Gpu, plan::SlotLayout as DeviceLayout, SlotStager};
    let adapter = flux_trt::lora::load(&args.adapter)?;
    let config = FluxConfig::flux1(Variant::Dev);
    let plan = SlotPlan::new(&config, &[&adapter], &PlanOptions { max_rank: Some(args.rank), targets: args.targets.clone() })?;
    let slots = flux_trt::manifest::LoraSlots::from_plan(&plan, args.precision.float_dtype());
    let gpu = Gpu::open(usize::try_from(device)?)?;
    let stager = SlotStager::new(&gpu, &slots)?;
    let set = [(&adapter, 0.8f32)];
    let mut timings = Vec::new();
    let stage_ms = time(args.reps, || {
        timings.push(stager.stage_timed(&set)?.1);
        Ok(())
    })?;
    let ms = |t: &[flux_trt::runtime::cuda::StageTiming], f: &dyn Fn(&flux_trt::runtime::cuda::StageTiming) -> Duration| median(t.iter().map(f).collect());
    let (pack_ms, device_ms) = (ms(&timings, &|t| t.pack), ms(&timings, &|t| t.device));
    let upload_bytes = timings.last().map_or(0, |t| t.upload_bytes);
    // the adapter packed once, then staged from its packed bytes
    let t0 = Instant::now();
    let packed = stager.pack(std::sync::Arc::new(adapter.clone()))?;
    let pack_once_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut ptimings = Vec::new();
    let packed_ms = time(args.reps, || {
        ptimings.push(stager.stage_packed(&[(&packed, 0.8)])?.1);
        Ok(())
    })?;
    let (ptable_ms, pdevice_ms) = (ms(&ptimings, &|t| t.pack), ms(&ptimings, &|t| t.device));
    // the previous stage of this backend: the host lay-out, a pageable copy, a sync
    let layout = DeviceLayout::new(&slots);
    let previous_ms = time(args.reps, || {
        let host = layout.image(&plan, &set)?;
        let buf = gpu.alloc(layout.bytes, "slots")?;
        gpu.htod(bytemuck::cast_slice(&host), buf.ptr(), "slots")?;
        gpu.sync("slots")?;
        Ok(())
    })?;
    println!(
        "native CUDA stage from the packed adapter (strength 0.8; packed once in {pack_once_ms:.1} ms): {packed_ms:.2} ms = {:.2} × the pinned copy of the slot bytes (table {ptable_ms:.3} ms, device part {pdevice_ms:.2} ms; {:.1} MB copied)",
        packed_ms / copy_ms,
        packed.bytes() as f64 / 1e6
    );
    println!(
        "native CUDA stage (strength 0.8): {stage_ms:.2} ms = {:.2} × the pinned copy of the slot bytes ({copy_ms:.2} ms); pack {pack_ms:.2} ms, device part (zero + copy of {:.1} MB + scatter) {device_ms:.2} ms = {:.2} ×; previous stage (host lay-out, pageable copy) {previous_ms:.2} ms",
        stage_ms / copy_ms,
        upload_bytes as f64 / 1e6,
        device_ms / copy_ms
    );
    Ok(json!({
        "strength": 0.8, "stage_ms": stage_ms, "stage_over_copy": stage_ms / copy_ms, "pack_ms": pack_ms, "device_ms": device_ms,
        "device_over_copy": device_ms / copy_ms, "upload_bytes": upload_bytes, "slot_bytes": layout.bytes, "previous_stage_ms": previous_ms,
        "previous_over_copy": previous_ms / copy_ms,
        "packed": { "pack_once_ms": pack_once_ms, "stage_ms": packed_ms, "stage_over_copy": packed_ms / copy_ms, "table_ms": ptable_ms,
                    "device_ms": pdevice_ms, "upload_bytes": packed.bytes() },
    }))
}

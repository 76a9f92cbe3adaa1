//! Full-size correctness of the native CUDA backend (issue 12 item 4), driven by
//! `tools/device/cuda-check.sh` on the GPU machine. On one engine folder with two adapters A, B
//! (rank-64 attention slots) and the inputs file of `tools/bench/diffusers_ref.py make-inputs`:
//!
//! 1. accuracy: base and A at the inputs' resolution vs the diffusers fp32 yardstick
//!    (`diffusers_ref.py run --fp32`: `sample.base.fp32`, `sample.lora.fp32` with A), relative L2;
//! 2. A→B→A (pre-staged sets, graph replays) bit-exact, and base again = the first, eager, base run;
//! 3. out of device memory while staging: the memory is filled, staging B fails with a typed
//!    `OutOfMemory` error, A stays installed and computes the same output;
//! 4. 4 threads at a small resolution, each with its own request and adapter set, swapping and
//!    stepping concurrently: every output equals the single-thread reference of (its request, its
//!    lease's set);
//! 5. `--swaps` swaps interleaved with runs at the small resolution (every `--stage-every`th swap
//!    stages from the loaded adapter, i.e. lays out, allocates and uploads; the others install
//!    pre-staged sets), each output bit-compared with the single-thread reference of its set;
//!    device memory before and after.
//!
//! `cuda_check --engine DIR --adapters a.safetensors,b.safetensors --inputs in.safetensors
//!  [--reference ref.safetensors] --json out.json [--swaps 1000] [--accuracy-only]`
//! Exit status 1 when a check fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use flux_trt::lora::Adapter;
use flux_trt::manifest::VerifyPolicy;
use flux_trt::runtime::cuda::{Bound, CudaOptions, CudaSession, StagedSlots};
use flux_trt::runtime::{RequestInputs, Slotted, Transformer};
use flux_trt::ErrorKind;
use serde_json::{json, Value};

mod support;
use support::{noise, rel_l2};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    engine: PathBuf,
    /// A and B.
    #[arg(long, value_delimiter = ',', required = true)]
    adapters: Vec<PathBuf>,
    /// `diffusers_ref.py make-inputs` file (hidden_states, encoder_hidden_states, pooled_projections,
    /// timestep, guidance, img_ids, txt_ids).
    #[arg(long)]
    inputs: PathBuf,
    /// `diffusers_ref.py run --fp32` output (`sample.base.fp32`, `sample.lora.fp32` = with A).
    #[arg(long)]
    reference: Option<PathBuf>,
    #[arg(long)]
    json: PathBuf,
    #[arg(long, default_value_t = 1000)]
    swaps: usize,
    /// Small shape of the swap and thread checks: `WxH` pixels and text tokens.
    #[arg(long, default_value = "256x256")]
    small: String,
    #[arg(long, default_value_t = 64)]
    small_txt: usize,
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Every Nth swap stages its set from the loaded adapter (host lay-out, allocation, upload);
    /// the others install a pre-staged set.
    #[arg(long, default_value_t = 10)]
    stage_every: usize,
    #[arg(long, default_value_t = 25)]
    thread_steps: usize,
    /// Accuracy and A→B→A only.
    #[arg(long)]
    accuracy_only: bool,
    /// Largest accepted relative L2 to the fp32 yardstick (2 × the ORT CUDA fp16 path's 2.8e-3).
    #[arg(long, default_value_t = 5.6e-3)]
    bound: f64,
    #[arg(long, value_enum, default_value_t = VerifyPolicy::First)]
    verify: VerifyPolicy,
}

/// f32 tensors of a safetensors file.
/// f32 tensors of a safetensors file by name: shape and values.
type F32Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_f32(path: &PathBuf) -> anyhow::Result<F32Tensors> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let mut out = BTreeMap::new();
    for (name, v) in st.tensors() {
        let data: Vec<f32> = match v.dtype() {
            safetensors::Dtype::F32 => v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            safetensors::Dtype::BF16 => v.data().chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => continue,
        };
        out.insert(name, (v.shape().to_vec(), data));
    }
    Ok(out)
}

fn max_abs_diff(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max)
}

fn bit_eq(x: &[f32], y: &[f32]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
}

/// A request's host data.
struct Request {
    enc: Vec<f32>,
    pooled: Vec<f32>,
    guidance: Option<f32>,
    txt_ids: Vec<[f32; 3]>,
    img_ids: Vec<[f32; 3]>,
    latents: Vec<f32>,
    timestep: f32,
}

impl Request {
    fn inputs(&self) -> RequestInputs<'_> {
        RequestInputs {
            batch: 1,
            image_seq_len: self.img_ids.len(),
            text_len: self.txt_ids.len(),
            encoder_hidden_states: &self.enc,
            pooled_projections: &self.pooled,
            guidance: self.guidance,
            txt_ids: &self.txt_ids,
            img_ids: &self.img_ids,
        }
    }

    fn synthetic(cfg: &flux_trt::FluxConfig, w: usize, h: usize, txt: usize, seed: u64) -> Self {
        let (gh, gw) = (h / 16, w / 16);
        Request {
            enc: noise(txt * cfg.context_dim, seed * 10 + 1),
            pooled: noise(cfg.pooled_dim, seed * 10 + 2),
            guidance: cfg.variant.has_guidance().then_some(3.5),
            txt_ids: vec![[0.0; 3]; txt],
            img_ids: flux_trt::flux::img_ids(gh, gw),
            latents: noise(gh * gw * cfg.in_channels, seed * 10 + 3),
            timestep: 0.6,
        }
    }
}

fn step(s: &CudaSession, bound: &mut Bound, r: &Request) -> flux_trt::Result<Vec<f32>> {
    let lease = s.lease();
    let mut out = vec![0f32; r.latents.len()];
    s.step(&lease, bound, &r.latents, r.timestep, &mut out)?;
    Ok(out)
}

fn used(s: &CudaSession) -> anyhow::Result<usize> {
    Ok(s.device_memory_used()?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let args = Args::parse();
    anyhow::ensure!(args.adapters.len() == 2, "--adapters A,B: two files");
    let mut report = serde_json::Map::new();
    let mut failures: Vec<String> = Vec::new();
    let save = |report: &serde_json::Map<String, Value>, failures: &[String]| -> anyhow::Result<()> {
        let mut r = report.clone();
        r.insert("failures".into(), json!(failures));
        r.insert("passed".into(), json!(failures.is_empty()));
        flux_trt::util::write_atomic(&args.json, serde_json::to_string_pretty(&Value::Object(r))?.as_bytes())?;
        Ok(())
    };

    let t0 = Instant::now();
    let s = CudaSession::open(&args.engine, CudaOptions { verify: args.verify, ..Default::default() })?;
    let cfg = s.manifest().model.clone();
    report.insert("engine".into(), json!(args.engine));
    report.insert("precision".into(), json!(format!("{:?}", s.manifest().precision)));
    report.insert("gpu".into(), json!(s.gpu().name()));
    report.insert("open_s".into(), json!(t0.elapsed().as_secs_f64()));
    report.insert("open_report".into(), json!(format!("{:?}", s.open_report)));
    report.insert("verify".into(), json!(args.verify.to_string()));
    report.insert("slots".into(), json!(s.manifest().lora.slots.len()));
    report.insert("max_rank".into(), json!(s.manifest().lora.max_rank));
    eprintln!("open {:.2} s on {}: {:?}", t0.elapsed().as_secs_f64(), s.gpu().name(), s.open_report);

    let a = flux_trt::lora::load(&args.adapters[0])?;
    let b = flux_trt::lora::load(&args.adapters[1])?;
    let sets: Vec<(&str, Vec<(&Adapter, f32)>)> = vec![("base", vec![]), ("A", vec![(&a, 1.0)]), ("B", vec![(&b, 1.0)]), ("A×0.5", vec![(&a, 0.5)])];
    let staged: Vec<StagedSlots> = sets.iter().map(|(_, set)| s.stage(set)).collect::<Result<_, _>>()?;

    // ---- 1 + 2: full size, the inputs file ----
    let inp = read_f32(&args.inputs)?;
    let get = |k: &str| -> anyhow::Result<Vec<f32>> { Ok(inp.get(k).ok_or_else(|| anyhow::anyhow!("{}: no `{k}`", args.inputs.display()))?.1.clone()) };
    let ids = |k: &str| -> anyhow::Result<Vec<[f32; 3]>> { Ok(get(k)?.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()) };
    let full = Request {
        enc: get("encoder_hidden_states")?,
        pooled: get("pooled_projections")?,
        guidance: cfg.variant.has_guidance().then(|| get("guidance").map(|g| g[0])).transpose()?,
        txt_ids: ids("txt_ids")?,
        img_ids: ids("img_ids")?,
        latents: get("hidden_states")?,
        timestep: get("timestep")?[0],
    };
    report.insert("full_shape".into(), json!({"image_tokens": full.img_ids.len(), "text_tokens": full.txt_ids.len()}));
    let mut bound = s.bind(&full.inputs())?;
    let run_set = |i: usize, bound: &mut Bound| -> anyhow::Result<Vec<f32>> {
        s.install(&staged[i])?;
        Ok(step(&s, bound, &full)?)
    };
    let t = Instant::now();
    let base = run_set(0, &mut bound)?; // eager (first run of the shape)
    let out_a = run_set(1, &mut bound)?; // graph capture + launch
    let out_b = run_set(2, &mut bound)?; // replay
    let out_a2 = run_set(1, &mut bound)?; // replay
    let base2 = run_set(0, &mut bound)?; // replay
    report.insert("full_five_runs_s".into(), json!(t.elapsed().as_secs_f64()));
    let finite = [&base, &out_a, &out_b].iter().all(|v| v.iter().all(|x| x.is_finite()));
    let aba = bit_eq(&out_a, &out_a2);
    let base_again = bit_eq(&base, &base2);
    report.insert(
        "a_b_a".into(),
        json!({
            "bit_exact": aba, "a_vs_a_again_max_abs": max_abs_diff(&out_a, &out_a2),
            "base_eager_vs_base_replay_bit_exact": base_again, "base_eager_vs_base_replay_max_abs": max_abs_diff(&base, &base2),
            "a_vs_base_rel_l2": rel_l2(&out_a, &base), "b_vs_a_rel_l2": rel_l2(&out_b, &out_a), "outputs_finite": finite,
        }),
    );
    if !aba {
        failures.push("A→B→A is not bit-exact".into());
    }
    if !base_again {
        failures.push("base (eager) → … → base (graph replay) is not bit-exact".into());
    }
    if !finite || rel_l2(&out_a, &out_b) == 0.0 {
        failures.push("non-finite outputs, or A and B give the same output".into());
    }
    if let Some(rp) = &args.reference {
        let r = read_f32(rp)?;
        let mut acc = serde_json::Map::new();
        for (ours, key, bf16_key) in [(&base, "sample.base.fp32", "sample.base"), (&out_a, "sample.lora.fp32", "sample.lora")] {
            let Some((_, want)) = r.get(key) else {
                failures.push(format!("{}: no `{key}`", rp.display()));
                continue;
            };
            if want.len() != ours.len() {
                failures.push(format!("{key}: {} values, ours {}", want.len(), ours.len()));
                continue;
            }
            let e = rel_l2(ours, want);
            let mut row = json!({"rel_l2": e, "max_abs": max_abs_diff(ours, want), "bound": args.bound, "within_bound": e <= args.bound});
            if let Some((_, d)) = r.get(bf16_key) {
                row["diffusers_bf16_vs_fp32_rel_l2"] = json!(rel_l2(d, want));
                row["ours_vs_diffusers_bf16_rel_l2"] = json!(rel_l2(ours, d));
            }
            eprintln!("accuracy {key}: rel L2 {e:.3e} (bound {:.1e})", args.bound);
            if e > args.bound {
                failures.push(format!("{key}: rel L2 {e:.3e} > {:.1e}", args.bound));
            }
            acc.insert(key.into(), row);
        }
        report.insert("accuracy_vs_diffusers_fp32".into(), Value::Object(acc));
    }
    eprintln!("full size done: A→B→A {aba}, base again {base_again}");
    save(&report, &failures)?;
    if args.accuracy_only {
        println!("{}", if failures.is_empty() { "PASS" } else { "FAIL" });
        std::process::exit(i32::from(!failures.is_empty()));
    }

    // ---- 3: out of device memory while staging B, with A installed ----
    s.install(&staged[1])?;
    let version_a = s.lease().version();
    let oom = {
        let gpu = s.gpu();
        let (free, _) = gpu.mem_info()?;
        // leave less than one slot set free
        let leave = (16usize << 20).min(free);
        let hog = gpu.alloc(free - leave, "memory hog (check)");
        let r = s.stage(&[(&b, 1.0)]);
        drop(hog);
        r
    };
    let (oom_kind, oom_msg) = match &oom {
        Ok(_) => (None, "staging succeeded (memory was not filled)".to_string()),
        Err(e) => (Some(e.kind()), e.to_string()),
    };
    let still_a = s.lease().version() == version_a && s.lease().adapters().first().map(|l| l.name.clone()) == Some(a.name.clone());
    let after = step(&s, &mut bound, &full)?;
    let same = bit_eq(&after, &out_a);
    report.insert(
        "oom_while_staging".into(),
        json!({"error_kind": format!("{oom_kind:?}"), "error": oom_msg, "a_still_installed": still_a, "output_equals_a": same}),
    );
    eprintln!("OOM staging: {oom_msg}; A still installed {still_a}, same output {same}");
    if oom_kind != Some(ErrorKind::OutOfMemory) || !still_a || !same {
        failures.push("out of memory while staging: not a typed OutOfMemory error, or A did not stay active".into());
    }
    drop(bound);
    save(&report, &failures)?;

    // ---- small shape: requests and their single-thread references ----
    let (w, h) = args.small.split_once('x').ok_or_else(|| anyhow::anyhow!("--small WxH"))?;
    let (w, h): (usize, usize) = (w.parse()?, h.parse()?);
    let requests: Vec<Request> = (0..args.threads.max(1)).map(|t| Request::synthetic(&cfg, w, h, args.small_txt, t as u64 + 1)).collect();
    // single-thread references: refs[request][set]
    let mut refs: Vec<Vec<Vec<f32>>> = Vec::new();
    for r in &requests {
        let mut bound = s.bind(&r.inputs())?;
        let mut row = Vec::new();
        for st in &staged {
            s.install(st)?;
            row.push(step(&s, &mut bound, r)?);
        }
        refs.push(row);
    }
    let distinct = (1..staged.len()).all(|i| !bit_eq(&refs[0][i], &refs[0][0]));
    if !distinct {
        failures.push("small shape: an adapter set gives the base output".into());
    }
    // ---- 4: threads, each its own request and adapter set ----
    let label_index = |l: &flux_trt::runtime::slots::Lease<_>| -> Option<usize> {
        let got: Vec<(String, f32)> = l.adapters().iter().map(|x| (x.name.clone(), x.strength)).collect();
        sets.iter().position(|(_, set)| set.iter().map(|(ad, st)| (ad.name.clone(), *st)).collect::<Vec<_>>() == got)
    };
    let t = Instant::now();
    let results: Vec<(usize, usize, usize, usize)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..requests.len())
            .map(|ti| {
                let (s, requests, refs, staged, label_index) = (&s, &requests, &refs, &staged, &label_index);
                let steps = args.thread_steps;
                sc.spawn(move || -> anyhow::Result<(usize, usize, usize, usize)> {
                    let r = &requests[ti];
                    let mine = ti % staged.len();
                    let mut bound = s.bind(&r.inputs())?;
                    let (mut ok, mut bad, mut own, mut unknown) = (0, 0, 0, 0);
                    for _ in 0..steps {
                        s.install(&staged[mine])?;
                        let lease = s.lease();
                        let mut out = vec![0f32; r.latents.len()];
                        s.step(&lease, &mut bound, &r.latents, r.timestep, &mut out)?;
                        match label_index(&lease) {
                            Some(k) => {
                                own += usize::from(k == mine);
                                if bit_eq(&out, &refs[ti][k]) {
                                    ok += 1
                                } else {
                                    bad += 1
                                }
                            }
                            None => unknown += 1,
                        }
                    }
                    Ok((ok, bad, own, unknown))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("thread panicked"))?).collect::<anyhow::Result<Vec<_>>>()
    })?;
    let bad: usize = results.iter().map(|r| r.1 + r.3).sum();
    report.insert(
        "threads".into(),
        json!({
            "threads": requests.len(), "steps_each": args.thread_steps, "seconds": t.elapsed().as_secs_f64(),
            "per_thread": results.iter().map(|(ok, bad, own, unknown)| json!({"equal_to_reference": ok, "mismatches": bad, "ran_with_own_set": own, "unknown_set": unknown})).collect::<Vec<_>>(),
        }),
    );
    eprintln!("threads: {results:?}");
    if bad > 0 {
        failures.push(format!("threads: {bad} outputs differ from their single-thread reference"));
    }
    save(&report, &failures)?;
    // ---- 5: swaps interleaved with runs ----
    let mut bound = s.bind(&requests[0].inputs())?;
    // warm-up: one stage-from-adapter swap and a run, then measure memory
    s.swap(&sets[2].1)?;
    step(&s, &mut bound, &requests[0])?;
    let mem0 = used(&s)?;
    let mut mem_max = mem0;
    let (mut mismatches, mut staged_swaps) = (0usize, 0usize);
    let (mut t_swap, mut t_install, mut t_step) = (Vec::new(), Vec::new(), Vec::new());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let t = Instant::now();
    for i in 0..args.swaps {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = (rng % staged.len() as u64) as usize;
        let t1 = Instant::now();
        if i % args.stage_every.max(1) == 0 {
            s.swap(&sets[k].1)?;
            t_swap.push(t1.elapsed().as_secs_f64() * 1e3);
            staged_swaps += 1;
        } else {
            s.install(&staged[k])?;
            t_install.push(t1.elapsed().as_secs_f64() * 1e6);
        }
        let t2 = Instant::now();
        let out = step(&s, &mut bound, &requests[0])?;
        t_step.push(t2.elapsed().as_secs_f64() * 1e3);
        if !bit_eq(&out, &refs[0][k]) {
            mismatches += 1;
            if mismatches <= 3 {
                eprintln!("swap {i}: set {} mismatch, max|Δ| {:.3e}", sets[k].0, max_abs_diff(&out, &refs[0][k]));
            }
        }
        if i % 100 == 99 {
            mem_max = mem_max.max(used(&s)?);
        }
    }
    let mem1 = used(&s)?;
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    report.insert(
        "swaps".into(),
        json!({
            "shape": format!("{w}x{h} px, {} text tokens", args.small_txt), "swaps": args.swaps, "staged_from_adapter": staged_swaps,
            "installed_prestaged": args.swaps - staged_swaps, "mismatches": mismatches, "seconds": t.elapsed().as_secs_f64(),
            "device_memory_used_before": mem0, "device_memory_used_after": mem1, "device_memory_used_max_sampled": mem_max,
            "growth_bytes": mem1 as i64 - mem0 as i64,
            "swap_stage_install_ms_median": med(&mut t_swap), "install_prestaged_us_median": med(&mut t_install), "step_ms_median": med(&mut t_step),
        }),
    );
    eprintln!("{} swaps: {mismatches} mismatches, memory {mem0} → {mem1} (max {mem_max}) in {:.1} s", args.swaps, t.elapsed().as_secs_f64());
    if mismatches > 0 {
        failures.push(format!("{mismatches} of {} swaps gave another output than the set's reference", args.swaps));
    }
    if mem1 > mem0 || mem_max > mem0 + (64 << 20) {
        failures.push(format!("device memory grew: {mem0} → {mem1} (max sampled {mem_max})"));
    }
    drop(bound);
    save(&report, &failures)?;

    report.insert("device_memory_used_end".into(), json!(used(&s)?));
    save(&report, &failures)?;
    println!("{}", if failures.is_empty() { "PASS" } else { "FAIL" });
    for f in &failures {
        println!("FAIL  {f}");
    }
    std::process::exit(i32::from(!failures.is_empty()));
}

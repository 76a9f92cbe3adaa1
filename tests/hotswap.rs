//! Hot-swap on one ONNX Runtime session: adapters of different ranks and target subsets, exact
//! A→B→A, failed swaps that change nothing, and concurrent runs that each see the adapter
//! version they leased.

#[path = "ort_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use flux_trt::lora::{Adapter, LoraModule, PlanError};
use flux_trt::runtime::{HostTensor, RuntimeError, Slotted, Transformer};
use flux_trt::tensor::Matrix;
use support::*;

const TOL: f32 = 1e-4;

/// `ad` with every module's rank padded by zero rows of A / columns of B to `rank`.
fn padded(ad: &Adapter, rank: usize) -> Adapter {
    let mut out = ad.clone();
    out.name = format!("{}-r{rank}", ad.name);
    for m in out.modules.values_mut() {
        let (r, i, o) = (m.rank(), m.in_features(), m.out_features());
        let mut a = m.a.data.clone();
        a.resize(rank * i, 0.0);
        let mut b = vec![0.0; o * rank];
        for row in 0..o {
            b[row * rank..row * rank + r].copy_from_slice(m.b.row(row));
        }
        *m = LoraModule { a: Matrix::from_vec(rank, i, a).expect("a"), b: Matrix::from_vec(o, rank, b).expect("b"), scale: m.scale };
    }
    out
}

#[test]
fn swaps_match_goldens_restore_exactly_and_never_recreate_the_session() {
    let s = session(swap_engine(), 2);
    assert_eq!(s.plan().max_rank, 16);
    let (id, ptr) = (s.session_id(), s.session_ptr());
    let (inputs, golden) = goldens("dev", &s);
    let ads: BTreeMap<&str, Adapter> = SWAPPED.iter().map(|n| (*n, load_lora(n))).collect();
    let ranks: Vec<usize> = SWAPPED.iter().map(|n| ads[n].max_rank()).collect();
    assert_eq!(ranks, [4, 2, 16]);

    let base = must(s.run(&inputs));
    assert!(rel_err(&base, &golden["out.base"]) <= TOL);
    let mut first: BTreeMap<&str, HostTensor> = BTreeMap::new();
    for name in SWAPPED {
        let rep = s.swap(&[(&ads[name], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        let out = must(s.run(&inputs));
        let e = rel_err(&out, &golden[&output_key(name)]);
        println!("{name}: version {} swap {:?} rel err {e:.2e}", rep.version, rep.elapsed);
        assert!(e <= TOL, "{name}: rel err {e:e}");
        first.insert(name, out);
    }
    // A → B → A, and every adapter again after the others: bit-exact.
    for name in ["attn.peft", "mlp.peft", "attn.peft", "rank16.peft", "mlp.peft"] {
        s.swap(&[(&ads[name], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(must(s.run(&inputs)).bit_eq(&first[name]), "{name} after other adapters is not bit-exact");
    }
    s.clear().unwrap_or_else(|e| panic!("{e}"));
    assert!(must(s.run(&inputs)).bit_eq(&base), "clear() is not bit-exact base");

    // Failed swaps leave the active adapter (mlp) bit-exact.
    s.swap(&[(&ads["mlp.peft"], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    let before = s.version();
    let bad = fixtures().join("bad/nan.peft.safetensors");
    let err = flux_trt::lora::load(&bad).expect_err("a NaN adapter must not load");
    println!("bad file: {err}");
    let truncated = fixtures().join("bad/truncated.safetensors");
    assert!(flux_trt::lora::load(&truncated).is_err());
    match s.swap(&[(&padded(&ads["rank16.peft"], 17), 1.0)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::Plan(PlanError::RankTooLarge { rank: 17, max_rank: 16, .. }))) => {}
        other => panic!("expected RankTooLarge, got {other:?}"),
    }
    match s.swap(&[(&ads["rank16.peft"], 1.0), (&ads["attn.peft"], 1.0)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::Plan(PlanError::CombinedRankTooLarge { max_rank: 16, .. }))) => {}
        other => panic!("expected CombinedRankTooLarge, got {other:?}"),
    }
    let full = load_lora("full.peft");
    match s.swap(&[(&full, 1.0)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::Plan(PlanError::OutsideSlots { module, .. }))) => println!("outside slots: {module}"),
        other => panic!("expected OutsideSlots, got {other:?}"),
    }
    match s.swap(&[(&ads["attn.peft"], f32::NAN)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::Plan(PlanError::BadStrength { .. }))) => {}
        other => panic!("expected BadStrength, got {other:?}"),
    }
    assert_eq!(s.version(), before, "a failed swap changed the version");
    assert!(must(s.run(&inputs)).bit_eq(&first["mlp.peft"]), "a failed swap changed the output");

    // One ONNX Runtime session throughout.
    assert_eq!((s.session_id(), s.session_ptr()), (id, ptr));
}

#[test]
fn concurrent_runs_see_the_version_they_leased() {
    let s = Arc::new(session(swap_engine(), 1));
    let (inputs, _) = goldens("dev", &s);
    let inputs = Arc::new(inputs);
    let ads: Vec<Adapter> = SWAPPED.iter().map(|n| load_lora(n)).collect();
    // Reference output of every adapter (and the base), computed alone.
    let mut expected: BTreeMap<String, HostTensor> = BTreeMap::new();
    expected.insert(String::new(), must(s.run(&inputs)));
    for ad in &ads {
        s.swap(&[(ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        expected.insert(ad.name.clone(), must(s.run(&inputs)));
    }
    let (id, ptr) = (s.session_id(), s.session_ptr());

    // A lease taken before a swap keeps feeding its own adapter after the swap.
    s.swap(&[(&ads[0], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    let held = s.lease();
    s.swap(&[(&ads[1], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.version() > held.version());
    assert!(must(s.run_with(&held, &inputs)).bit_eq(&expected[&ads[0].name]));
    assert!(must(s.run(&inputs)).bit_eq(&expected[&ads[1].name]));
    drop(held);
    let expected = Arc::new(expected);

    let runners: Vec<_> = (0..3)
        .map(|t| {
            let (s, inputs, expected) = (Arc::clone(&s), Arc::clone(&inputs), Arc::clone(&expected));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..12 {
                    let lease = s.lease();
                    let key = lease.adapters().first().map(|a| a.name.clone()).unwrap_or_default();
                    let out = must(s.run_with(&lease, &inputs));
                    assert!(out.bit_eq(&expected[&key]), "thread {t}: version {} ({key:?}) output differs from that adapter's", lease.version());
                    seen.push(lease.version());
                }
                seen
            })
        })
        .collect();
    // Swap through the adapters (and the base) while the runners run.
    let mut installed = Vec::new();
    for i in 0..24 {
        let rep = if i % 4 == 3 { s.clear() } else { s.swap(&[(&ads[i % 4 % 3], 1.0)]) }.unwrap_or_else(|e| panic!("{e}"));
        installed.push(rep.version);
        std::thread::yield_now();
    }
    let mut seen: Vec<u64> = runners.into_iter().flat_map(|h| h.join().expect("runner thread")).collect();
    seen.sort_unstable();
    seen.dedup();
    println!("versions installed {:?}..{:?}, versions run {seen:?}", installed.first(), installed.last());
    assert!(installed.windows(2).all(|w| w[1] == w[0] + 1), "versions must increase by one per swap");
    assert_eq!((s.session_id(), s.session_ptr()), (id, ptr));
}

/// Half-precision slots: adapters are converted to the manifest's slot dtype on swap. (bf16
/// graphs do not load on ONNX Runtime's CPU provider: it has no bf16 Gemm.)
#[test]
fn fp16_engine_swaps_exactly() {
    for precision in [flux_trt::manifest::Precision::Fp16] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("half");
        let ck = checkpoint("dev", "bfl");
        let ads: Vec<Adapter> = ["attn.peft", "mlp.peft"].iter().map(|n| load_lora(n)).collect();
        let refs: Vec<&Adapter> = ads.iter().collect();
        let plan = flux_trt::SlotPlan::new(ck.config(), &refs, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut opts = flux_trt::onnx::ExportOptions::new(precision);
        opts.hash_sources = false;
        flux_trt::onnx::export(&ck, &plan, &opts, &dir, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
        let s = session(&dir, 1);
        assert_eq!(s.manifest().lora.dtype, precision.float_dtype());
        let (inputs, golden) = goldens("dev", &s);
        let mut first = Vec::new();
        for ad in &ads {
            s.swap(&[(ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
            let out = must(s.run(&inputs));
            let e = rel_err(&out, &golden[&output_key(&ad.name)]);
            println!("{precision:?} {}: rel err vs fp32 diffusers {e:.2e}", ad.name);
            assert!(e <= 5e-3, "{precision:?} {}: rel err {e:e}", ad.name);
            first.push(out);
        }
        s.swap(&[(&ads[0], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(must(s.run(&inputs)).bit_eq(&first[0]), "{precision:?}: A -> B -> A not bit-exact");
    }
}

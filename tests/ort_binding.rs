//! The I/O binding path of `FluxSession` (device-resident slots, staged adapters), run on ONNX
//! Runtime's CPU provider: bit-identical to the plain feed path, A→B→A bit-exact through staged
//! swaps, the slot budget, foreign handles, concurrent leases, and the recorded node placement.

#[path = "ort_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use flux_trt::lora::Adapter;
use flux_trt::runtime::ort::{FluxSession, StagedAdapter};
use flux_trt::runtime::{HostTensor, RuntimeError, Slotted};
use support::*;

const TOL: f32 = 1e-4;

fn bound(threads: usize) -> FluxSession {
    FluxSession::builder(swap_engine()).with_library(ort_library()).with_threads(threads).with_io_binding(true).build().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn binding_path_is_bit_identical_to_feeds_and_matches_diffusers() {
    let plain = session(swap_engine(), 1);
    let dev = bound(1);
    assert!(!plain.io_binding() && dev.io_binding());
    assert!(dev.lease().tensors().on_device() && !plain.lease().tensors().on_device());
    let (inputs, golden) = goldens("dev", &dev);
    let base = must(dev.run(&inputs));
    assert!(base.bit_eq(&must(plain.run(&inputs))), "base: binding path differs from feeds");
    assert!(rel_err(&base, &golden["out.base"]) <= TOL);
    for name in SWAPPED {
        let ad = load_lora(name);
        plain.swap(&[(&ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        dev.swap(&[(&ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (must(dev.run(&inputs)), must(plain.run(&inputs)));
        let e = rel_err(&a, &golden[&output_key(name)]);
        println!("{name}: binding path rel err {e:.2e} vs diffusers; bit-equal to feeds: {}", a.bit_eq(&b));
        assert!(a.bit_eq(&b), "{name}: binding path differs from feeds");
        assert!(e <= TOL, "{name}: rel err {e:e}");
    }
    // Several runs on one binding with other inputs in between: the rebinding of inputs holds.
    let mut other = inputs.clone();
    other.timestep = HostTensor::new(vec![1], vec![0.25]).expect("shape");
    let x = must(dev.run(&other));
    assert!(x.bit_eq(&must(plain.run(&other))));
    assert!(!x.bit_eq(&must(dev.run(&inputs))), "timestep had no effect");
}

#[test]
fn staged_swaps_restore_exactly_and_account_memory() {
    let s = bound(1);
    let (inputs, _) = goldens("dev", &s);
    let base_bytes = s.slot_bytes_in_use();
    assert!(base_bytes > 0 && base_bytes == s.lease().tensors().bytes());
    let ads: Vec<Adapter> = SWAPPED.iter().map(|n| load_lora(n)).collect();
    let staged: Vec<StagedAdapter> = ads.iter().map(|a| s.stage(&[(a, 1.0)]).unwrap_or_else(|e| panic!("{e}"))).collect();
    assert_eq!(s.version(), 0, "staging must not install anything");
    assert_eq!(s.slot_bytes_in_use(), base_bytes * 4);
    let mut first = BTreeMap::new();
    for (st, ad) in staged.iter().zip(&ads) {
        let rep = s.install(st).unwrap_or_else(|e| panic!("{e}"));
        println!("{}: staged swap {:?} (version {})", ad.name, rep.elapsed, rep.version);
        assert_eq!(s.adapters()[0].name, ad.name);
        // Staged and swapped-from-host give the same bits.
        let out = must(s.run(&inputs));
        first.insert(ad.name.clone(), out);
    }
    let reference = session(swap_engine(), 1);
    for ad in &ads {
        reference.swap(&[(ad, 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(must(reference.run(&inputs)).bit_eq(&first[&ad.name]), "{}: staged set differs from the plain path", ad.name);
    }
    // A → B → A → C → B through staged sets: bit-exact.
    for i in [0usize, 1, 0, 2, 1] {
        s.install(&staged[i]).unwrap_or_else(|e| panic!("{e}"));
        assert!(must(s.run(&inputs)).bit_eq(&first[&ads[i].name]), "{} after other staged sets is not bit-exact", ads[i].name);
    }
    // A staged set of another session is refused; nothing changes.
    let other = bound(1);
    let foreign = other.stage(&[(&ads[0], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    let v = s.version();
    match s.install(&foreign) {
        Err(flux_trt::Error::Runtime(RuntimeError::ForeignSlots { what, .. })) => assert_eq!(what, "staged adapter"),
        other => panic!("expected ForeignSlots, got {other:?}"),
    }
    assert_eq!(s.version(), v);
    // Memory: the base set went when the first swap replaced it (no lease held it); the installed
    // set (staged[1]) stays charged while installed; the other staged sets go when dropped.
    drop(staged);
    assert_eq!(s.slot_bytes_in_use(), base_bytes, "only the installed set");
    let held = s.lease();
    s.clear().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.slot_bytes_in_use(), base_bytes * 2, "the leased set and the cleared (zero) set");
    drop(held);
    assert_eq!(s.slot_bytes_in_use(), base_bytes, "the cleared set");
}

#[test]
fn slot_budget_refuses_staging_and_changes_nothing() {
    let probe = bound(1);
    let set = probe.slot_bytes_in_use();
    drop(probe);
    let s = FluxSession::builder(swap_engine())
        .with_library(ort_library())
        .with_threads(1)
        .with_io_binding(true)
        .with_slot_budget(2 * set)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (inputs, _) = goldens("dev", &s);
    let ads: Vec<Adapter> = SWAPPED.iter().map(|n| load_lora(n)).collect();
    // base + a = the budget.
    let a = s.stage(&[(&ads[0], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    match s.stage(&[(&ads[1], 1.0)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::SlotBudget { needed, used, limit, .. })) => assert_eq!((needed, used, limit), (set, 2 * set, 2 * set)),
        other => panic!("expected SlotBudget, got {other:?}"),
    }
    // Installing a releases the base set: b fits now, c does not.
    s.install(&a).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.slot_bytes_in_use(), set);
    let before = must(s.run(&inputs));
    let b = s.stage(&[(&ads[1], 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    match s.swap(&[(&ads[2], 1.0)]) {
        Err(flux_trt::Error::Runtime(RuntimeError::SlotBudget { .. })) => {}
        other => panic!("expected SlotBudget, got {other:?}"),
    }
    assert_eq!(s.version(), 1);
    assert!(must(s.run(&inputs)).bit_eq(&before), "a refused swap changed the output");
    // Dropping the handle of the installed set keeps it; dropping b frees its share.
    drop(a);
    drop(b);
    assert_eq!(s.slot_bytes_in_use(), set);
}

#[test]
fn concurrent_runs_on_staged_sets_see_their_own_adapter() {
    let s = Arc::new(bound(1));
    let (inputs, _) = goldens("dev", &s);
    let inputs = Arc::new(inputs);
    let ads: Vec<Adapter> = SWAPPED.iter().map(|n| load_lora(n)).collect();
    let staged: Vec<StagedAdapter> = ads.iter().map(|a| s.stage(&[(a, 1.0)]).unwrap_or_else(|e| panic!("{e}"))).collect();
    let mut expected = Vec::new();
    for st in &staged {
        s.install(st).unwrap_or_else(|e| panic!("{e}"));
        expected.push(must(s.run(&inputs)));
    }
    let expected = Arc::new(expected);
    let staged = Arc::new(staged);
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (s, inputs, expected, staged) = (Arc::clone(&s), Arc::clone(&inputs), Arc::clone(&expected), Arc::clone(&staged));
            std::thread::spawn(move || {
                for i in 0..6 {
                    // Each thread installs its adapter and runs with the lease it took right after.
                    s.install(&staged[(t + i) % 3]).unwrap_or_else(|e| panic!("{e}"));
                    let lease = s.lease();
                    let k = staged.iter().position(|st| st.adapters()[0].name == lease.adapters()[0].name).expect("known adapter");
                    let out = must(s.run_with(&lease, &inputs));
                    assert!(out.bit_eq(&expected[k]), "thread {t}: version {} output is not its adapter's", lease.version());
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("runner thread");
    }
}

#[test]
fn placement_is_recorded() {
    let s = session(swap_engine(), 1);
    let p = s.placement();
    let manifest_nodes = p.total_nodes();
    println!("placement: {:?}, {} CPU nodes", p.nodes_per_provider, p.cpu_nodes.len());
    assert_eq!(p.nodes_per_provider.keys().map(String::as_str).collect::<Vec<_>>(), ["CPUExecutionProvider"]);
    assert_eq!(p.cpu_nodes.len(), manifest_nodes);
    assert!(p.cpu_nodes.iter().any(|n| n.op_type == "Attention"));
    assert!(p.cpu_nodes.iter().any(|n| n.op_type == "Gemm"));
}

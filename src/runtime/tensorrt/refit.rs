//! The session's refit logic, independent of TensorRT so it runs in CPU tests: installing a slot
//! set, rolling back on a failed refit, poisoning the session when the rollback fails too, and
//! the checks made once at open (the engine's refittable set against the manifest, each slot's
//! prototype) and per run (output dims).
//!
//! [`RefitBackend`] is the seam: the session implements it with TensorRT's one `IRefitter` and
//! the CUDA stream (`session.rs`); the tests drive [`RefitState`] with a scripted fake.

use std::collections::BTreeSet;
use std::path::Path;

use super::TrtError;

/// What [`RefitState::install`] needs from the engine side.
pub(crate) trait RefitBackend {
    /// One complete slot set (every slot's A and B) in device memory.
    type Set;
    /// Points the refitter at every slot of `set` (`setNamedWeights(.., kDEVICE)`). May fail
    /// part way; nothing is refit by this call.
    fn point(&mut self, set: &Self::Set) -> Result<(), TrtError>;
    /// `refitCudaEngineAsync` on the session stream; `Err` carries TensorRT's log.
    fn refit(&mut self) -> Result<(), String>;
    /// Waits for the session stream.
    fn synchronize(&mut self) -> Result<(), TrtError>;
}

/// Which complete slot set the engine holds, if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RefitState {
    /// The slot-set version the engine holds (`None`: not refit yet, or unknown after a failed
    /// refit that could not be rolled back).
    version: Option<u64>,
    /// Set when a refit failed and the rollback failed too: some slots may hold the new
    /// adapter, others the old one. Holds what went wrong.
    poisoned: Option<String>,
}

impl RefitState {
    /// `Err(TrtError::Poisoned)` while the engine's slot weights are unknown. Checked before
    /// every run.
    pub fn check(&self, path: &Path) -> Result<(), TrtError> {
        match &self.poisoned {
            Some(cause) => Err(TrtError::Poisoned { path: path.to_path_buf(), cause: cause.clone() }),
            None => Ok(()),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The slot-set version the engine holds (`None` while poisoned).
    #[cfg(test)]
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Whether a run with slot-set `version` must refit first: the engine holds another set, or
    /// an unknown mix (poisoned), so a poisoned session retries a full refit at every run.
    pub fn needs_refit(&self, version: u64) -> bool {
        self.version != Some(version)
    }

    /// Refits the engine from `next`, the complete slot set of `version`. `current` is the set
    /// the engine holds now (`None` at open: nothing to roll back to).
    ///
    /// - Pointing the refitter fails: nothing was refit; the state is unchanged.
    /// - The refit (or the wait for it) fails: the stream is synchronized first (the refit's
    ///   work may still be pending), then `current` is refit back. If that succeeds the engine
    ///   holds `current` again (`TrtError::Refit { restored: true }`); otherwise the state is
    ///   poisoned (`restored: false`): [`RefitState::check`] fails until a later install succeeds.
    /// - A refit that fails while already poisoned (no set to roll back to) returns
    ///   [`TrtError::Poisoned`] with both causes.
    /// - Success records `version` and clears a poisoned state: every slot was set from one
    ///   complete set.
    pub fn install<B: RefitBackend>(&mut self, backend: &mut B, next: &B::Set, current: Option<&B::Set>, version: u64, path: &Path) -> Result<(), TrtError> {
        backend.point(next)?;
        let failure = match backend.refit() {
            Ok(()) => match backend.synchronize() {
                Ok(()) => {
                    self.poisoned = None;
                    self.version = Some(version);
                    return Ok(());
                }
                Err(e) => e.to_string(),
            },
            Err(log) => {
                // The refit may have left work on the stream: wait before touching anything.
                if let Err(e) = backend.synchronize() {
                    tracing::warn!(error = %e, "stream synchronize after a failed refit");
                }
                log
            }
        };
        if let Some(before) = self.poisoned.take() {
            let cause = format!("refit failed again: {failure} (unusable since: {before})");
            self.poisoned = Some(cause.clone());
            return Err(TrtError::Poisoned { path: path.to_path_buf(), cause });
        }
        let restored = match current {
            Some(current) => {
                let back = backend
                    .point(current)
                    .map_err(|e| e.to_string())
                    .and_then(|()| backend.refit())
                    .and_then(|()| backend.synchronize().map_err(|e| e.to_string()));
                match back {
                    Ok(()) => true,
                    Err(e) => {
                        if let Err(s) = backend.synchronize() {
                            tracing::warn!(error = %s, "stream synchronize after a failed rollback");
                        }
                        self.poisoned = Some(format!("refit failed: {failure}; rollback failed: {e}"));
                        false
                    }
                }
            }
            None => {
                self.poisoned = Some(format!("refit failed: {failure}"));
                false
            }
        };
        if !restored {
            self.version = None;
        }
        Err(TrtError::Refit { path: path.to_path_buf(), restored, log: failure })
    }
}

/// The engine's refittable weights (`IRefitter::getAllWeights`) are exactly the manifest's slot
/// names: a slot TensorRT cannot refit would never change; a refittable base weight would be
/// missing at every refit (stripped plans) or left to chance.
pub(crate) fn check_refittable(path: &Path, engine: &[String], slots: &[String]) -> Result<(), TrtError> {
    let engine: BTreeSet<&str> = engine.iter().map(String::as_str).collect();
    let slots: BTreeSet<&str> = slots.iter().map(String::as_str).collect();
    let not_in_manifest: Vec<String> = engine.difference(&slots).map(|s| s.to_string()).collect();
    let not_refittable: Vec<String> = slots.difference(&engine).map(|s| s.to_string()).collect();
    if not_in_manifest.is_empty() && not_refittable.is_empty() {
        return Ok(());
    }
    Err(TrtError::RefitSet { path: path.to_path_buf(), not_in_manifest, not_refittable })
}

/// Shape and byte size of an f32 output from the execution context's dims: a negative or
/// unresolved dimension (or an overflowing size) is a typed error, not a short buffer.
pub(crate) fn output_shape(path: &Path, name: &str, nb_dims: i32, dims: &[i64]) -> Result<(Vec<usize>, usize), TrtError> {
    let err = || TrtError::OutputShape {
        path: path.to_path_buf(),
        name: name.to_string(),
        dims: dims.iter().take(nb_dims.max(0) as usize).copied().collect(),
        nb_dims,
    };
    let n = usize::try_from(nb_dims).map_err(|_| err())?;
    let dims = dims.get(..n).ok_or_else(err)?;
    let shape: Vec<usize> = dims.iter().map(|d| usize::try_from(*d)).collect::<Result<_, _>>().map_err(|_| err())?;
    let bytes = shape.iter().try_fold(4usize, |acc, d| acc.checked_mul(*d)).ok_or_else(err)?;
    Ok((shape, bytes))
}

/// The first value of `values` (elements of `dtype`, little-endian) that is not finite, as
/// `(index, value)`; f16 values above 65504 were stored as infinity.
pub(crate) fn first_non_finite(dtype: crate::tensor::DType, values: &[u8]) -> Option<(usize, f32)> {
    use crate::tensor::DType;
    use rayon::prelude::*;
    let value = |c: &[u8]| match dtype {
        DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
    };
    let i = values.par_chunks_exact(dtype.size()).position_first(|c| !value(c).is_finite())?;
    Some((i, value(&values[i * dtype.size()..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted engine: which calls fail, and what the engine's slots hold.
    #[derive(Default)]
    struct Fake {
        /// Set the refitter points at (`None` after a partial point).
        pointed: Option<u32>,
        /// What the engine's slots hold; `None`: a mix (a refit failed half way).
        engine: Option<u32>,
        fail_point: Vec<u32>,
        /// Refits of these sets fail (after writing half the slots).
        fail_refit: Vec<u32>,
        fail_sync_after_refit: bool,
        pending: bool,
        calls: Vec<String>,
    }

    impl RefitBackend for Fake {
        type Set = u32;
        fn point(&mut self, set: &u32) -> Result<(), TrtError> {
            self.calls.push(format!("point {set}"));
            if self.fail_point.contains(set) {
                self.pointed = None;
                return Err(TrtError::Tensorrt { step: "setNamedWeights".into(), failure: "rejected".into(), log: String::new() });
            }
            self.pointed = Some(*set);
            Ok(())
        }
        fn refit(&mut self) -> Result<(), String> {
            let set = self.pointed.expect("refit without a complete point");
            self.calls.push(format!("refit {set}"));
            self.pending = true;
            if self.fail_refit.contains(&set) {
                self.engine = None;
                return Err(format!("refit of {set} failed"));
            }
            self.engine = Some(set);
            Ok(())
        }
        fn synchronize(&mut self) -> Result<(), TrtError> {
            self.calls.push("sync".into());
            self.pending = false;
            if std::mem::take(&mut self.fail_sync_after_refit) {
                self.engine = None;
                return Err(TrtError::Cuda { what: "stream synchronize".into(), message: "an illegal memory access".into() });
            }
            Ok(())
        }
    }

    fn path() -> &'static Path {
        Path::new("engine.plan")
    }

    /// The engine at slot-set version 0 (the open refit done).
    fn opened(f: &mut Fake) -> RefitState {
        let mut s = RefitState::default();
        s.install(f, &0, None, 0, path()).unwrap();
        f.calls.clear();
        s
    }

    /// What a step of the session does with slot set `set` (version `set` here): refit it unless
    /// the engine holds it, then check before running (`PlanRunner::refit_weights` /
    /// `run_bound`, `TrtSession::step`).
    fn step(s: &mut RefitState, f: &mut Fake, set: u32) -> Result<(), TrtError> {
        if s.needs_refit(u64::from(set)) {
            let current = f.engine;
            s.install(f, &set, current.as_ref(), u64::from(set), path())?;
        }
        s.check(path())
    }

    #[test]
    fn success_installs_and_waits() {
        let mut f = Fake::default();
        let mut s = opened(&mut f);
        assert_eq!(s.version(), Some(0));
        s.install(&mut f, &1, Some(&0), 1, path()).unwrap();
        assert_eq!(f.engine, Some(1));
        assert_eq!(f.calls, ["point 1", "refit 1", "sync"]);
        assert!(!f.pending && s.check(path()).is_ok());
        assert_eq!(s.version(), Some(1));
        assert!(!s.needs_refit(1) && s.needs_refit(0));
    }

    #[test]
    fn failed_point_changes_nothing() {
        let mut f = Fake { fail_point: vec![1], ..Default::default() };
        let mut s = opened(&mut f);
        assert!(matches!(s.install(&mut f, &1, Some(&0), 1, path()), Err(TrtError::Tensorrt { .. })));
        assert_eq!(f.engine, Some(0));
        assert_eq!(f.calls, ["point 1"]);
        assert!(s.check(path()).is_ok());
        assert_eq!(s.version(), Some(0));
    }

    #[test]
    fn failed_refit_syncs_then_restores() {
        let mut f = Fake { fail_refit: vec![1], ..Default::default() };
        let mut s = opened(&mut f);
        match s.install(&mut f, &1, Some(&0), 1, path()) {
            Err(TrtError::Refit { restored: true, log, .. }) => assert_eq!(log, "refit of 1 failed"),
            other => panic!("{other:?}"),
        }
        // The stream is synchronized before the rollback touches the refitter.
        assert_eq!(f.calls, ["point 1", "refit 1", "sync", "point 0", "refit 0", "sync"]);
        assert_eq!(f.engine, Some(0));
        assert!(!f.pending && s.check(path()).is_ok());
        assert_eq!(s.version(), Some(0), "the engine holds the previous set again");
    }

    #[test]
    fn failed_wait_counts_as_a_failed_refit() {
        let mut f = Fake::default();
        let mut s = opened(&mut f);
        f.fail_sync_after_refit = true;
        assert!(matches!(s.install(&mut f, &1, Some(&0), 1, path()), Err(TrtError::Refit { restored: true, .. })));
        assert_eq!(f.engine, Some(0));
        assert_eq!(s.version(), Some(0));
    }

    #[test]
    fn failed_rollback_poisons_until_a_full_install() {
        let mut f = Fake { fail_refit: vec![1], ..Default::default() };
        let mut s = opened(&mut f);
        f.fail_refit.push(0);
        assert!(matches!(s.install(&mut f, &1, Some(&0), 1, path()), Err(TrtError::Refit { restored: false, .. })));
        assert_eq!(f.engine, None);
        assert!(!f.pending, "synchronized after the failed rollback");
        assert_eq!(s.version(), None);
        match s.check(path()) {
            Err(TrtError::Poisoned { cause, .. }) => assert!(cause.contains("refit of 1 failed") && cause.contains("refit of 0 failed"), "{cause}"),
            other => panic!("{other:?}"),
        }
        // Poisoned: no rollback target. Another failure keeps it poisoned, without a rollback,
        // and says so with the typed error.
        f.calls.clear();
        match s.install(&mut f, &1, Some(&0), 1, path()) {
            Err(TrtError::Poisoned { cause, .. }) => assert!(cause.contains("again") && cause.contains("rollback failed"), "{cause}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.calls, ["point 1", "refit 1", "sync"]);
        assert!(s.is_poisoned());
        // A successful install of a complete set clears it.
        s.install(&mut f, &2, Some(&0), 2, path()).unwrap();
        assert_eq!(f.engine, Some(2));
        assert!(s.check(path()).is_ok());
        assert_eq!(s.version(), Some(2));
    }

    /// The session's view: after a failed rollback every step (whatever set it holds, the one
    /// that failed included) retries a full refit and returns `Poisoned` until one succeeds; it
    /// never runs on the mixed slots.
    #[test]
    fn poisoned_steps_refuse_until_a_full_refit_succeeds() {
        let mut f = Fake { fail_refit: vec![1], ..Default::default() };
        let mut s = opened(&mut f);
        step(&mut s, &mut f, 0).unwrap();
        assert!(f.calls.is_empty(), "the engine holds set 0: no refit");
        f.fail_refit.push(0);
        assert!(matches!(step(&mut s, &mut f, 1), Err(TrtError::Refit { restored: false, .. })));
        // Set 0 (the old one) and set 1 (the failing one) both keep failing: typed, never a run.
        for set in [0, 1, 0] {
            f.calls.clear();
            assert!(matches!(step(&mut s, &mut f, set), Err(TrtError::Poisoned { .. })), "set {set}");
            assert_eq!(f.calls, [format!("point {set}"), format!("refit {set}"), "sync".into()], "a full refit was retried");
            assert_eq!(f.engine, None);
        }
        // Set 1 can be refit now (e.g. a transient failure): the session is usable again.
        f.fail_refit.clear();
        step(&mut s, &mut f, 1).unwrap();
        assert_eq!((f.engine, s.version()), (Some(1), Some(1)));
        f.calls.clear();
        step(&mut s, &mut f, 1).unwrap();
        assert!(f.calls.is_empty(), "no refit once the engine holds the set");
    }

    #[test]
    fn failure_at_open_has_nothing_to_restore() {
        let (mut s, mut f) = (RefitState::default(), Fake { fail_refit: vec![0], ..Default::default() });
        assert!(matches!(s.install(&mut f, &0, None, 0, path()), Err(TrtError::Refit { restored: false, .. })));
        assert!(s.is_poisoned());
        assert_eq!(s.version(), None);
    }

    #[test]
    fn refittable_set_is_checked_both_ways() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let slots = names(&["lora.a.A", "lora.a.B"]);
        assert!(check_refittable(path(), &names(&["lora.a.B", "lora.a.A"]), &slots).is_ok());
        match check_refittable(path(), &names(&["lora.a.A", "base.weight"]), &slots) {
            Err(TrtError::RefitSet { not_in_manifest, not_refittable, .. }) => {
                assert_eq!(not_in_manifest, ["base.weight"]);
                assert_eq!(not_refittable, ["lora.a.B"]);
            }
            other => panic!("{other:?}"),
        }
        let e = check_refittable(path(), &[], &slots).unwrap_err().to_string();
        assert!(e.contains("lora.a.A") && e.contains("lora.a.B"), "{e}");
    }

    #[test]
    fn output_dims_must_be_known_and_non_negative() {
        assert_eq!(output_shape(path(), "sample", 3, &[2, 16, 64, 99]).unwrap(), (vec![2, 16, 64], 2 * 16 * 64 * 4));
        for (nb, dims) in [(3, &[1i64, -1, 64][..]), (-1, &[][..]), (4, &[1, 2, 3][..]), (2, &[i64::MAX, i64::MAX][..])] {
            match output_shape(path(), "sample", nb, dims) {
                Err(e @ TrtError::OutputShape { .. }) => assert!(e.to_string().contains("sample"), "{e}"),
                other => panic!("{nb} {dims:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn non_finite_after_conversion() {
        use crate::tensor::DType;
        let stored = |dtype, v: &[f32]| {
            let mut b = Vec::new();
            crate::tensor::encode_into(dtype, v, &mut b);
            b
        };
        assert_eq!(first_non_finite(DType::F32, &stored(DType::F32, &[1.0, 7e4])), None);
        assert_eq!(first_non_finite(DType::F16, &stored(DType::F16, &[1.0, 7e4])), Some((1, f32::INFINITY)));
        assert_eq!(first_non_finite(DType::BF16, &stored(DType::BF16, &[1.0, 7e4, -0.5])), None);
        assert_eq!(first_non_finite(DType::BF16, &stored(DType::BF16, &[1.0, 7e4, f32::NAN])).map(|p| p.0), Some(2));
        assert_eq!(first_non_finite(DType::F32, &stored(DType::F32, &[1.0, f32::NEG_INFINITY])), Some((1, f32::NEG_INFINITY)));
    }
}

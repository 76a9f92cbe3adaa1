//! Which queued request runs next, and the LRU of staged adapter sets.
//!
//! Adapter-aware policy (after LoRAX's queue): the oldest request always runs once it has waited
//! `max_wait` (no starvation); otherwise the oldest request whose set is installed (no swap),
//! then the oldest whose set is already staged (a cheap install), then the oldest. FIFO: the
//! oldest, always.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::api::LoraRef;

/// A request's adapter set: names with strengths (bit patterns, so equal sets hash equal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetKey(Vec<(String, u32)>);

impl SetKey {
    pub fn new(loras: &[LoraRef]) -> Self {
        SetKey(loras.iter().map(|l| (l.name.clone(), l.strength.to_bits())).collect())
    }
    /// The base model (no adapters).
    pub fn base() -> Self {
        SetKey(Vec::new())
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
    pub fn entries(&self) -> impl Iterator<Item = (&str, f32)> {
        self.0.iter().map(|(n, s)| (n.as_str(), f32::from_bits(*s)))
    }
}

impl fmt::Display for SetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("base");
        }
        let parts: Vec<String> = self.entries().map(|(n, s)| format!("{n}:{s}")).collect();
        f.write_str(&parts.join("+"))
    }
}

/// The scheduling policy (`--schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Policy {
    /// Prefer the installed, then a staged adapter set; the oldest request waits at most `max_wait`.
    AdapterAware,
    /// Oldest first, always.
    Fifo,
}

impl Policy {
    /// The name `--schedule` takes.
    pub fn name(self) -> &'static str {
        match self {
            Policy::AdapterAware => "adapter-aware",
            Policy::Fifo => "fifo",
        }
    }
}

/// Index into `queue` (oldest first: `(key, enqueued)`) of the request to run next.
pub fn pick<'a>(
    queue: impl Iterator<Item = (&'a SetKey, Instant)> + Clone,
    policy: Policy,
    installed: Option<&SetKey>,
    staged: impl Fn(&SetKey) -> bool,
    now: Instant,
    max_wait: Duration,
) -> Option<usize> {
    let mut q = queue.clone();
    let (_, oldest) = q.next()?;
    if policy == Policy::Fifo || now.saturating_duration_since(oldest) >= max_wait {
        return Some(0);
    }
    if let Some(i) = installed.and_then(|installed| queue.clone().position(|(k, _)| k == installed)) {
        return Some(i);
    }
    Some(queue.clone().position(|(k, _)| staged(k)).unwrap_or(0))
}

/// Staged sets under a byte budget, least recently used evicted first.
pub(crate) struct StagedCache<T> {
    budget: u64,
    bytes: u64,
    tick: u64,
    sets: HashMap<SetKey, (T, u64, u64)>,
}

impl<T: Clone> StagedCache<T> {
    pub(crate) fn new(budget: u64) -> Self {
        StagedCache { budget, bytes: 0, tick: 0, sets: HashMap::new() }
    }
    pub(crate) fn get(&mut self, key: &SetKey) -> Option<T> {
        self.tick += 1;
        let tick = self.tick;
        self.sets.get_mut(key).map(|(v, _, t)| {
            *t = tick;
            v.clone()
        })
    }
    pub(crate) fn contains(&self, key: &SetKey) -> bool {
        self.sets.contains_key(key)
    }
    /// Inserts, then evicts least recently used sets until under budget (a set larger than the
    /// whole budget is not kept).
    pub(crate) fn insert(&mut self, key: SetKey, value: T, bytes: u64) {
        self.tick += 1;
        if let Some((_, b, _)) = self.sets.insert(key, (value, bytes, self.tick)) {
            self.bytes -= b;
        }
        self.bytes += bytes;
        while self.bytes > self.budget {
            let Some(lru) = self.sets.iter().min_by_key(|(_, (_, _, t))| *t).map(|(k, _)| k.clone()) else { break };
            self.remove(&lru);
        }
    }
    pub(crate) fn remove(&mut self, key: &SetKey) {
        if let Some((_, b, _)) = self.sets.remove(key) {
            self.bytes -= b;
        }
    }
    /// Drops every set that contains adapter `name`.
    pub(crate) fn remove_adapter(&mut self, name: &str) {
        let keys: Vec<SetKey> = self.sets.keys().filter(|k| k.names().any(|n| n == name)).cloned().collect();
        for k in keys {
            self.remove(&k);
        }
    }
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> SetKey {
        SetKey::new(&[LoraRef { name: n.into(), strength: 1.0 }])
    }

    #[test]
    fn adapter_aware_prefers_installed_then_staged_but_bounds_waiting() {
        let t0 = Instant::now();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let q = [(&b, t0), (&c, t0 + Duration::from_millis(1)), (&a, t0 + Duration::from_millis(2))];
        let now = t0 + Duration::from_millis(10);
        let wait = Duration::from_secs(1);
        let pick_with =
            |policy, installed: &SetKey, staged: &SetKey, now| pick(q.iter().map(|(k, t)| (*k, *t)), policy, Some(installed), |k| k == staged, now, wait);
        assert_eq!(pick_with(Policy::AdapterAware, &a, &c, now), Some(2), "installed set first");
        assert_eq!(pick_with(Policy::AdapterAware, &SetKey::base(), &c, now), Some(1), "then a staged set");
        assert_eq!(pick_with(Policy::AdapterAware, &SetKey::base(), &SetKey::base(), now), Some(0), "then the oldest");
        assert_eq!(pick_with(Policy::AdapterAware, &a, &c, t0 + wait), Some(0), "the oldest after max_wait");
        assert_eq!(pick_with(Policy::Fifo, &a, &c, now), Some(0));
        assert_eq!(pick(std::iter::empty::<(&SetKey, Instant)>(), Policy::Fifo, Some(&a), |_| false, now, wait), None);
        assert_eq!(pick(q.iter().map(|(k, t)| (*k, *t)), Policy::AdapterAware, None, |k| k == &c, now, wait), Some(1), "unknown installed set: staged first");
    }

    #[test]
    fn cache_evicts_least_recently_used_over_budget() {
        let mut c = StagedCache::new(10);
        c.insert(key("a"), 1, 4);
        c.insert(key("b"), 2, 4);
        assert_eq!(c.get(&key("a")), Some(1));
        c.insert(key("c"), 3, 4);
        assert!(c.contains(&key("a")) && c.contains(&key("c")) && !c.contains(&key("b")));
        assert_eq!(c.bytes(), 8);
        c.insert(key("huge"), 4, 11);
        assert_eq!((c.len(), c.bytes()), (0, 0));
        c.insert(key("a"), 1, 4);
        c.remove_adapter("a");
        assert_eq!(c.len(), 0);
    }
}

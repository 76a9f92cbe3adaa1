//! Versioned, atomically replaced slot sets (backend independent).
//!
//! A backend keeps its slot tensors in an [`ActiveSlots`]: each swap builds a complete new set
//! outside any lock, then installs it under a short write lock with the next version number.
//! A run first takes a [`Lease`] (a clone of the `Arc` of the current set) and feeds exactly
//! that set, so runs in flight finish with the adapter they started with while a swap installs
//! another one; the old set is freed when its last lease is dropped.

use std::sync::{Arc, Mutex, RwLock};

/// One adapter in an active set, with the user's strength.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterLabel {
    pub name: String,
    pub strength: f32,
}

/// An installed slot set: its version, what it holds, and the backend's tensors.
#[derive(Debug)]
pub struct SlotSet<T> {
    version: u64,
    adapters: Vec<AdapterLabel>,
    tensors: T,
}

impl<T> SlotSet<T> {
    /// 0 for the set installed at creation (all zeros: the base model); +1 per swap.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Adapters laid into this set (empty: the base model).
    pub fn adapters(&self) -> &[AdapterLabel] {
        &self.adapters
    }
    pub fn tensors(&self) -> &T {
        &self.tensors
    }
}

/// A shared handle on one installed slot set; stays valid after later swaps.
pub type Lease<T> = Arc<SlotSet<T>>;

/// The current slot set of one session.
#[derive(Debug)]
pub struct ActiveSlots<T> {
    current: RwLock<Lease<T>>,
    /// Serializes installs so versions increase in install order.
    install: Mutex<()>,
}

impl<T> ActiveSlots<T> {
    /// Starts at version 0 with `base` (all-zero slots).
    pub fn new(base: T) -> Self {
        ActiveSlots { current: RwLock::new(Arc::new(SlotSet { version: 0, adapters: Vec::new(), tensors: base })), install: Mutex::new(()) }
    }

    /// The current set. The lock only guards an `Arc` clone, so a poisoned lock still holds a
    /// complete set and is used as is.
    pub fn lease(&self) -> Lease<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn version(&self) -> u64 {
        self.lease().version
    }

    /// Installs a fully built set; returns its version.
    pub fn install(&self, adapters: Vec<AdapterLabel>, tensors: T) -> u64 {
        let _order = self.install.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.lease().version + 1;
        let next = Arc::new(SlotSet { version, adapters, tensors });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_survive_installs() {
        let a = ActiveSlots::new(vec![0u8]);
        let l0 = a.lease();
        let v1 = a.install(vec![AdapterLabel { name: "x".into(), strength: 1.0 }], vec![1u8]);
        let l1 = a.lease();
        let v2 = a.install(Vec::new(), vec![2u8]);
        assert_eq!((l0.version(), v1, v2), (0, 1, 2));
        assert_eq!((l0.tensors()[0], l1.tensors()[0], a.lease().tensors()[0]), (0, 1, 2));
        assert_eq!(l1.adapters()[0].name, "x");
    }
}

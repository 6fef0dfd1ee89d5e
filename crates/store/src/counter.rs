//! Counters that replicate without losing increments.
//!
//! A replicated `incr` cannot travel as its result (two nodes incrementing at once would each
//! overwrite the other's) nor as a bare "+d" (it would diverge against a concurrent `set`).
//! Instead a counter is a **base** write (the last plain store of the key: its version and
//! numeric value) plus, per node, the sums of the increments (`p`) and effective decrements
//! (`n`) it made since that base. Contributions only grow, so merging is a per-node max and
//! the order of arrival does not matter; a newer base (a later `set`) wins over everything
//! built on an older one. The value is `base + Σp − Σn`, 0 if that would go below zero.
//!
//! The state lives beside the item, in a per-shard side table, only for keys that were
//! incremented on a store that tracks counters (a replicating node). It is tied to the
//! item's version: any other write to the key leaves a state whose `item_version` no longer
//! matches, which is then ignored and replaced — so no write path needs to know about it
//! except removal, which drops it to keep memory bounded.

use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashMap;

/// Bytes charged per tracked counter besides its key (map slot, state, vector header).
pub const COUNTER_OVERHEAD: usize = 96;
/// Bytes charged per node contribution.
const CONTRIB_BYTES: usize = 24;

/// One counter's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CounterState {
    /// The item version this state describes; a different item version = stale state.
    pub item_version: u64,
    pub base_version: u64,
    pub base_value: u64,
    /// `(node, p, n)`.
    pub contrib: Vec<(u16, u64, u64)>,
}

impl CounterState {
    /// The counter's value: `base + Σp − Σn`, 0 if negative, modulo 2^64 (incr wraps).
    pub fn value(&self) -> u64 {
        let plus: u128 = u128::from(self.base_value)
            + self.contrib.iter().map(|c| u128::from(c.1)).sum::<u128>();
        let minus: u128 = self.contrib.iter().map(|c| u128::from(c.2)).sum();
        if plus >= minus {
            ((plus - minus) % (1u128 << 64)) as u64
        } else {
            0
        }
    }

    /// This node's contribution entry.
    pub fn entry(&mut self, node: u16) -> &mut (u16, u64, u64) {
        match self.contrib.iter().position(|c| c.0 == node) {
            Some(i) => &mut self.contrib[i],
            None => {
                self.contrib.push((node, 0, 0));
                self.contrib.last_mut().expect("just pushed")
            }
        }
    }

    /// Merge a node's contribution (both sums only grow): per-component max.
    pub fn merge(&mut self, node: u16, p: u64, n: u64) {
        let e = self.entry(node);
        e.1 = e.1.max(p);
        e.2 = e.2.max(n);
    }

    fn bytes(&self, key_len: usize) -> usize {
        key_len + COUNTER_OVERHEAD + self.contrib.len() * CONTRIB_BYTES
    }
}

/// A shard's counter states.
#[derive(Default)]
pub(crate) struct Counters {
    map: HashMap<Box<[u8]>, CounterState, foldhash::fast::RandomState>,
}

impl Counters {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The state for `key` if it describes the item at `item_version`.
    pub fn get(&self, key: &[u8], item_version: u64) -> Option<&CounterState> {
        self.map.get(key).filter(|s| s.item_version == item_version)
    }

    /// Store `state` for `key`, keeping the memory count right.
    pub fn put(&mut self, key: &[u8], state: CounterState, mem: &AtomicUsize) {
        let add = state.bytes(key.len());
        if let Some(old) = self.map.insert(key.into(), state) {
            mem.fetch_sub(old.bytes(key.len()), Ordering::Relaxed);
        }
        mem.fetch_add(add, Ordering::Relaxed);
    }

    pub fn remove(&mut self, key: &[u8], mem: &AtomicUsize) {
        if let Some(old) = self.map.remove(key) {
            mem.fetch_sub(old.bytes(key.len()), Ordering::Relaxed);
        }
    }

    /// Bytes charged for every state (for consistency checks).
    pub fn bytes(&self) -> usize {
        self.map.iter().map(|(k, s)| s.bytes(k.len())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_merge() {
        let mut s = CounterState {
            base_value: 10,
            ..CounterState::default()
        };
        s.merge(1, 5, 0);
        s.merge(2, 3, 2);
        assert_eq!(s.value(), 16);
        // Merging is idempotent and order-free.
        s.merge(1, 4, 0);
        s.merge(2, 3, 2);
        assert_eq!(s.value(), 16);
        s.merge(2, 3, 100);
        assert_eq!(s.value(), 0, "never below zero");
        let wrap = CounterState {
            base_value: u64::MAX,
            contrib: vec![(1, 1, 0)],
            ..CounterState::default()
        };
        assert_eq!(wrap.value(), 0, "incr wraps at 2^64");
    }
}

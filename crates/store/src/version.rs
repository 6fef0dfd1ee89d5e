//! Item versions: a hybrid logical clock (HLC).
//!
//! WHY: every stored or changed item needs a CAS unique. Instead of a plain
//! counter we hand out `ms_since_2020 << 22 | logical << 10 | node_id`, so a
//! version is (a) strictly increasing on this node, (b) unique across up to
//! 1024 nodes without coordination, and (c) tells *when* the item was written
//! (`version_time_ms`), which later replication / conflict resolution and the
//! `flush_all` implementation rely on: a flush is simply "every version below
//! X is dead", with X computed from a wall-clock time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2020-01-01T00:00:00Z in unix milliseconds: the epoch of the version clock.
pub const EPOCH_MS: u64 = 1_577_836_800_000;
/// Bits below the millisecond part (12 logical + 10 node id).
pub const TIME_SHIFT: u32 = 22;
/// Bits used by the node id.
pub const NODE_BITS: u32 = 10;
/// Largest valid node id.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

/// Unix time in milliseconds encoded in a version.
pub fn version_time_ms(v: u64) -> u64 {
    (v >> TIME_SHIFT) + EPOCH_MS
}

/// The smallest version that can be produced at unix time `unix_ms`
/// (logical part and node id zero). Every version written before that
/// millisecond is strictly smaller.
pub fn version_floor_at_ms(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(EPOCH_MS) << TIME_SHIFT
}

/// Node id carried in a version.
pub fn version_node_id(v: u64) -> u16 {
    (v & ((1 << NODE_BITS) - 1)) as u16
}

pub(crate) struct Hlc {
    last: AtomicU64,
    node: u64,
}

impl Hlc {
    pub(crate) fn new(node_id: u16) -> Hlc {
        assert!(node_id <= MAX_NODE_ID, "node_id must be < 1024");
        Hlc {
            last: AtomicU64::new(node_id as u64),
            node: node_id as u64,
        }
    }

    fn physical(&self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        version_floor_at_ms(ms) | self.node
    }

    /// A fresh version, strictly greater than any earlier one from this clock.
    pub(crate) fn next(&self) -> u64 {
        let phys = self.physical();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // `last` always carries our node id in its low bits, and adding
            // 1 << NODE_BITS keeps them; an overflowing logical counter just
            // carries into the millisecond part (the clock runs ahead a bit).
            let cand = (last + (1 << NODE_BITS)).max(phys);
            match self
                .last
                .compare_exchange_weak(last, cand, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return cand,
                Err(cur) => last = cur,
            }
        }
    }

    /// Take note of a version minted elsewhere (a replicated write): every
    /// later `next()` is strictly greater than `v`. `last` keeps our node id
    /// in its low bits (so our versions stay unique cluster-wide): it becomes
    /// at least `v`'s time and logical part with our node id, and `next()`
    /// adds one logical step to that, which is above `v` whatever `v`'s node
    /// id is.
    pub(crate) fn observe(&self, v: u64) {
        let ours = (v & !((1u64 << NODE_BITS) - 1)) | self.node;
        self.last.fetch_max(ours, Ordering::AcqRel);
    }

    /// This clock's node id.
    pub(crate) fn node_id(&self) -> u16 {
        self.node as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_tagged() {
        let c = Hlc::new(37);
        let mut prev = 0;
        for _ in 0..100_000 {
            let v = c.next();
            assert!(v > prev);
            assert_eq!(version_node_id(v), 37);
            prev = v;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let t = version_time_ms(prev);
        // The logical counter may run slightly ahead of the wall clock under a
        // burst, but not by much.
        assert!(
            t + 5_000 >= now_ms && t <= now_ms + 5_000,
            "t={t} now={now_ms}"
        );
    }

    #[test]
    fn observe_keeps_later_versions_above() {
        let c = Hlc::new(3);
        let mine = c.next();
        // A remote version far ahead (an hour), from a higher and a lower node id.
        for remote_node in [1000u64, 0, 3] {
            let remote = (mine + (3_600_000u64 << TIME_SHIFT)) & !1023 | remote_node;
            c.observe(remote);
            let n = c.next();
            assert!(n > remote, "{n} <= {remote}");
            assert_eq!(version_node_id(n), 3);
        }
        // Observing an old version changes nothing.
        let before = c.next();
        c.observe(1);
        assert!(c.next() > before);
        assert_eq!(c.node_id(), 3);
    }

    #[test]
    fn concurrent_unique() {
        let c = std::sync::Arc::new(Hlc::new(1));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..20_000).map(|_| c.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}

//! One shard: a hashbrown `HashTable<ItemPtr>` plus a CLOCK hand.
//!
//! WHY CLOCK over buckets: an LRU needs two list pointers per item (16 bytes,
//! more than our whole header's variable part) and list surgery on every hit,
//! under the lock. CLOCK needs one bit per item, set on access, and the hand
//! simply walks the table's bucket array (`get_bucket(i)` / `get_bucket_entry`):
//! a visited item gets its bit cleared and a second chance, an unvisited one is
//! evicted. Buckets never move on removal, so the hand stays meaningful; on a
//! resize it merely lands somewhere else, which CLOCK tolerates. Dead items
//! (expired or flushed) met by the hand are always taken, counted as
//! "reclaimed" rather than evictions.
//!
//! All counters here are plain integers guarded by the shard mutex; the
//! global memory figure (items + tables) is an atomic owned by the `Store`
//! and adjusted by every function that allocates or frees.

use crate::classes::{self, ClassCounters};
use crate::item::ItemPtr;
use crate::repl::Tombstones;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) type Hasher = foldhash::fast::FixedState;

const HASH_SEED: u64 = 0x6d65_6d68_615f_7374; // "memha_st"

/// The one key hasher (fixed seed: deterministic layout across runs).
pub(crate) const KEY_HASHER: Hasher = Hasher::with_seed(HASH_SEED);

/// Why an item found in the table is not visible any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dead {
    Expired,
    Flushed,
}

/// Snapshot of everything that decides whether an item is visible.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness {
    pub now: u32,
    /// Versions below this are flushed (immediate / already-due flushes).
    pub floor: u64,
    /// Pending delayed flush: versions below `pending_ver` die once
    /// `now >= pending_at`. `pending_at == 0` = none.
    pub pending_ver: u64,
    pub pending_at: u32,
    /// Bumped on every flush_all; invalidates `Shard::clean_scan`.
    pub flush_gen: u64,
}

impl Liveness {
    /// Whether an item of version `v` is hidden by a flush.
    #[inline]
    pub(crate) fn flushed(&self, v: u64) -> bool {
        v < self.floor
            || (self.pending_at != 0 && self.now >= self.pending_at && v < self.pending_ver)
    }

    #[inline]
    pub(crate) fn check(&self, it: &ItemPtr) -> Option<Dead> {
        if self.flushed(it.cas()) {
            return Some(Dead::Flushed);
        }
        let e = it.exptime();
        if e != 0 && e <= self.now {
            return Some(Dead::Expired);
        }
        None
    }
}

/// What the eviction hand did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Evicted {
    /// A dead item was freed.
    Reclaimed,
    /// A live item was evicted.
    Evicted,
}

pub(crate) struct Shard {
    pub table: HashTable<ItemPtr>,
    pub hand: usize,
    /// Bytes of the table allocation currently included in global memory.
    pub table_bytes: usize,
    /// Sum of logical sizes of items in the table (memcached "bytes").
    pub bytes: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    /// `(now, flush_gen)` at which a full reclaim-only scan found nothing
    /// dead; lets no-evict mode skip rescans until time or flushes move on.
    pub clean_scan: Option<(u32, u64)>,
    /// Eviction/reclaim counts per reporting size class (see `classes`).
    pub class_counters: Box<[ClassCounters]>,
    /// Delete markers (see `repl.rs`); never items, but counted in memory.
    pub tombs: Tombstones,
    /// Replicated counter states (see `counter.rs`), counted in memory.
    pub counters: crate::counter::Counters,
}

/// Table bytes as the spec counts them: one pointer slot + one control byte
/// per bucket (0 while the table has no allocation).
fn table_bytes_of(t: &HashTable<ItemPtr>) -> usize {
    if t.capacity() == 0 {
        0
    } else {
        t.num_buckets() * (std::mem::size_of::<ItemPtr>() + 1)
    }
}

impl Shard {
    pub(crate) fn new() -> Shard {
        Shard {
            table: HashTable::new(),
            hand: 0,
            table_bytes: 0,
            bytes: 0,
            total_items: 0,
            evictions: 0,
            reclaimed: 0,
            expired_unfetched: 0,
            evicted_unfetched: 0,
            get_expired: 0,
            get_flushed: 0,
            clean_scan: None,
            class_counters: vec![ClassCounters::default(); classes::count()].into_boxed_slice(),
            tombs: Tombstones::new(),
            counters: crate::counter::Counters::default(),
        }
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.table.find_bucket_index(hash, |p| p.key() == key)
    }

    #[inline]
    pub(crate) fn item(&self, idx: usize) -> &ItemPtr {
        self.table.get_bucket(idx).expect("occupied bucket")
    }

    #[inline]
    pub(crate) fn item_mut(&mut self, idx: usize) -> &mut ItemPtr {
        self.table.get_bucket_mut(idx).expect("occupied bucket")
    }

    /// Re-sync the table's share of global memory after it may have resized.
    pub(crate) fn sync_table_bytes(&mut self, mem: &AtomicUsize) {
        let now = table_bytes_of(&self.table);
        if now > self.table_bytes {
            mem.fetch_add(now - self.table_bytes, Ordering::Relaxed);
        } else if now < self.table_bytes {
            mem.fetch_sub(self.table_bytes - now, Ordering::Relaxed);
        }
        self.table_bytes = now;
    }

    /// Upper bound of the table bytes one more insert may add (a resize to
    /// twice the buckets when the table is full; 4 buckets from empty).
    pub(crate) fn insert_growth_bytes(&self) -> usize {
        if self.table.len() < self.table.capacity() {
            0
        } else if self.table.capacity() == 0 {
            4 * (std::mem::size_of::<ItemPtr>() + 1)
        } else {
            self.table.num_buckets() * (std::mem::size_of::<ItemPtr>() + 1)
        }
    }

    /// Make sure one insert will not resize the table (so bucket indices and
    /// the memory figure stay valid until the insert).
    pub(crate) fn reserve_one(&mut self, mem: &AtomicUsize) {
        self.table.reserve(1, |p| KEY_HASHER.hash_one(p.key()));
        self.sync_table_bytes(mem);
    }

    /// Insert a new item (key must be absent; `reserve_one` done before).
    pub(crate) fn insert_new(&mut self, hash: u64, it: ItemPtr, mem: &AtomicUsize) {
        self.bytes += it.logical_size() as u64;
        mem.fetch_add(it.alloc_size(), Ordering::Relaxed);
        if it.exptime() != 0 {
            // It might be dead on arrival; let a no-evict scan look again.
            self.clean_scan = None;
        }
        self.table
            .insert_unique(hash, it, |p| KEY_HASHER.hash_one(p.key()));
        self.sync_table_bytes(mem);
        self.total_items += 1;
    }

    /// Put `it` into bucket `idx` in place of the existing item (same key),
    /// freeing the old one. Keeps the item's identity (bucket) in the table.
    /// `count` = count it in total_items (a store, not an incr/decr).
    pub(crate) fn replace_at(&mut self, idx: usize, it: ItemPtr, mem: &AtomicUsize, count: bool) {
        let new_logical = it.logical_size() as u64;
        let new_alloc = it.alloc_size();
        if it.exptime() != 0 {
            self.clean_scan = None;
        }
        let slot = self.item_mut(idx);
        let old = std::mem::replace(slot, it);
        self.bytes = self.bytes - old.logical_size() as u64 + new_logical;
        mem.fetch_add(new_alloc, Ordering::Relaxed);
        mem.fetch_sub(old.alloc_size(), Ordering::Relaxed);
        old.free();
        if count {
            self.total_items += 1;
        }
    }

    /// Unlink and free the item in bucket `idx`.
    pub(crate) fn remove_at(&mut self, idx: usize, mem: &AtomicUsize) {
        let entry = match self.table.get_bucket_entry(idx) {
            Ok(e) => e,
            Err(_) => panic!("remove_at on empty bucket"),
        };
        let (it, _) = entry.remove();
        self.bytes -= it.logical_size() as u64;
        mem.fetch_sub(it.alloc_size(), Ordering::Relaxed);
        if !self.counters.is_empty() {
            self.counters.remove(it.key(), mem);
        }
        it.free();
    }

    /// Remove a dead item found by a lookup, keeping the stats straight.
    pub(crate) fn remove_dead(&mut self, idx: usize, why: Dead, on_get: bool, mem: &AtomicUsize) {
        let it = self.item(idx);
        if why == Dead::Expired && !it.fetched() {
            let class = it.class();
            self.expired_unfetched += 1;
            self.class_counters[class - 1].expired_unfetched += 1;
        }
        if on_get {
            match why {
                Dead::Expired => self.get_expired += 1,
                Dead::Flushed => self.get_flushed += 1,
            }
        }
        self.remove_at(idx, mem);
    }

    /// Advance the CLOCK hand and free one item (never the one in bucket
    /// `skip`). With `no_evict` only dead items are taken. Returns `None` if
    /// nothing could be freed.
    pub(crate) fn evict_one(
        &mut self,
        live: &Liveness,
        no_evict: bool,
        skip: Option<usize>,
        mem: &AtomicUsize,
    ) -> Option<Evicted> {
        let n = self.table.num_buckets();
        let others = self.table.len() - usize::from(skip.is_some());
        if self.table.is_empty() || others == 0 {
            return None;
        }
        if no_evict && self.clean_scan == Some((live.now, live.flush_gen)) {
            return None;
        }
        // Two sweeps are enough in CLOCK: the first clears every visited bit.
        let steps = if no_evict { n } else { 2 * n + 1 };
        let mut hand = self.hand % n;
        for _ in 0..steps {
            let i = hand;
            hand = if hand + 1 == n { 0 } else { hand + 1 };
            if Some(i) == skip {
                continue;
            }
            let Some(it) = self.table.get_bucket_mut(i) else {
                continue;
            };
            if let Some(why) = live.check(it) {
                let cc = &mut self.class_counters[it.class() - 1];
                cc.reclaimed += 1;
                if why == Dead::Expired && !it.fetched() {
                    self.expired_unfetched += 1;
                    cc.expired_unfetched += 1;
                }
                self.reclaimed += 1;
                self.remove_at(i, mem);
                self.hand = hand;
                return Some(Evicted::Reclaimed);
            }
            if no_evict {
                continue;
            }
            if it.visited() {
                let b = it.bits();
                it.set_bits(b & !crate::item::BIT_VISITED);
                continue;
            }
            let cc = &mut self.class_counters[it.class() - 1];
            cc.evicted += 1;
            if it.exptime() != 0 {
                cc.evicted_nonzero += 1;
            }
            if !it.fetched() {
                self.evicted_unfetched += 1;
                cc.evicted_unfetched += 1;
            }
            self.evictions += 1;
            self.remove_at(i, mem);
            self.hand = hand;
            return Some(Evicted::Evicted);
        }
        self.hand = hand;
        if no_evict {
            self.clean_scan = Some((live.now, live.flush_gen));
        }
        None
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        for it in self.table.drain() {
            it.free();
        }
    }
}

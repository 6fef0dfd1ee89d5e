//! What replication needs from the store: last-writer-wins application of
//! remote writes, delete tombstones, and reads for full sync.
//!
//! # Convergence rules (docs/design/REPLICATION.md)
//!
//! Versions are unique cluster-wide (node id in the low bits), so "the
//! higher version wins" is a total order and every node that has seen the
//! same writes ends with the same contents, whatever order they arrived in.
//! Wall clocks are never compared.
//!
//! * A remote **set** is stored with exactly its version iff that version is
//!   above the live item's and above the key's tombstone. Expired or flushed
//!   local items count as absent; a tombstone does not expire with them.
//! * A remote **delete** removes an older item and leaves a tombstone; a
//!   newer item or tombstone makes it stale. It is applied (tombstone
//!   recorded) even when there is no item: a set older than the delete may
//!   still be on its way.
//! * A remote **touch** changes the exptime only of the very write it refers
//!   to (same version).
//! * A remote **flush** raises the flush floor (or replaces the pending
//!   delayed flush, as a local `flush_all` does).
//! * Every remote version is fed to the clock (`Hlc::observe`), so a local
//!   write made after applying a remote one gets a higher version.
//!
//! # Tombstones
//!
//! A per-shard side table `key → (version, created)` plus a FIFO of
//! insertions for expiry. A tombstone lives `tombstone_ttl` seconds (after
//! that, full sync is the backstop) and each shard keeps at most
//! `max_tombstones / shards` of them, dropping the oldest first. Local
//! deletes record one too (with a fresh version), so a late older remote set
//! cannot resurrect a key deleted here. Any local store over the key drops
//! it (the local version is newer). Tombstones are never items (not in
//! `curr_items`, never returned), but their memory — key plus
//! [`TOMBSTONE_OVERHEAD`] — is part of `memory_used`. They do not make room
//! for themselves: their number is bounded, and the delete that creates one
//! usually frees a larger item.
//!
//! The FIFO is not updated when a tombstone is raised or dropped; its stale
//! entries are recognised (version / creation time differ) and skipped, and
//! it is compacted when it grows past twice the table.

use crate::counter::CounterState;
use crate::item::{ItemPtr, BIT_VISITED, MAX_KEY_LEN};
use crate::shard::{Shard, KEY_HASHER};
use crate::{format_decimal, parse_decimal, too_large, ItemView, Store};
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes charged per tombstone on top of its key: the table slot (32 + 1
/// control byte at up to 7/8 load), the FIFO entry (24) and the key's malloc
/// chunk header. An estimate, not a measurement.
pub const TOMBSTONE_OVERHEAD: usize = 64;

/// Outcome of applying a remote write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApplyResult {
    Applied,
    /// The local item or tombstone has an equal or higher version (or, for a
    /// set, a flush already covers the version; for a touch, the item it
    /// refers to is not there).
    Stale,
    /// The item exceeds `item_size_max` here (or the key exceeds 250 bytes).
    TooLarge,
    /// No room could be made for the item.
    NoMemory,
}

struct Tomb {
    key: Box<[u8]>,
    version: u64,
    created: u32,
}

#[derive(Clone, Copy)]
struct FifoEntry {
    hash: u64,
    version: u64,
    created: u32,
}

#[inline]
fn cost(key_len: usize) -> usize {
    key_len + TOMBSTONE_OVERHEAD
}

#[inline]
fn expired(created: u32, now: u32, ttl: u32) -> bool {
    now >= created.saturating_add(ttl)
}

/// One shard's tombstones (guarded by the shard mutex).
pub(crate) struct Tombstones {
    table: HashTable<Tomb>,
    fifo: VecDeque<FifoEntry>,
    /// Bytes charged to the global memory figure.
    bytes: usize,
}

impl Tombstones {
    pub(crate) fn new() -> Tombstones {
        Tombstones {
            table: HashTable::new(),
            fifo: VecDeque::new(),
            bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// `bytes` recomputed from the table (consistency check).
    pub(crate) fn recount(&self) -> usize {
        self.table.iter().map(|t| cost(t.key.len())).sum()
    }

    /// The version of `key`'s tombstone, unless there is none or it expired.
    pub(crate) fn get(&self, hash: u64, key: &[u8], now: u32, ttl: u32) -> Option<u64> {
        if self.table.is_empty() {
            return None;
        }
        self.table
            .find(hash, |t| &*t.key == key)
            .filter(|t| !expired(t.created, now, ttl))
            .map(|t| t.version)
    }

    fn release(&mut self, t: &Tomb, mem: &AtomicUsize) {
        let c = cost(t.key.len());
        self.bytes -= c;
        mem.fetch_sub(c, Ordering::Relaxed);
    }

    /// Drop `key`'s tombstone, if any.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8], mem: &AtomicUsize) {
        if self.table.is_empty() {
            return;
        }
        if let Ok(e) = self.table.find_entry(hash, |t| &*t.key == key) {
            let (t, _) = e.remove();
            self.release(&t, mem);
        }
    }

    /// Record `key`'s tombstone at `version` (raising an existing one; the
    /// caller has checked it is older), then enforce the count bound `max`
    /// (0 = keep none).
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        version: u64,
        now: u32,
        max: usize,
        mem: &AtomicUsize,
    ) {
        if max == 0 {
            self.remove(hash, key, mem);
            return;
        }
        match self.table.find_mut(hash, |t| &*t.key == key) {
            Some(t) => {
                t.version = version;
                t.created = now;
            }
            None => {
                let c = cost(key.len());
                self.table.insert_unique(
                    hash,
                    Tomb {
                        key: key.into(),
                        version,
                        created: now,
                    },
                    |t| KEY_HASHER.hash_one(&*t.key),
                );
                self.bytes += c;
                mem.fetch_add(c, Ordering::Relaxed);
            }
        }
        self.fifo.push_back(FifoEntry {
            hash,
            version,
            created: now,
        });
        while self.table.len() > max && self.pop_oldest(mem) {}
        if self.fifo.len() > 2 * self.table.len() + 64 {
            let table = &self.table;
            self.fifo
                .retain(|e| table.find(e.hash, |t| is_entry(t, e)).is_some());
        }
    }

    /// Remove the tombstone `e` was pushed for, if it is still that one.
    fn remove_exact(&mut self, e: FifoEntry, mem: &AtomicUsize) -> bool {
        match self.table.find_entry(e.hash, |t| is_entry(t, &e)) {
            Ok(ent) => {
                let (t, _) = ent.remove();
                self.release(&t, mem);
                true
            }
            Err(_) => false,
        }
    }

    /// Drop the oldest tombstone; `false` if there is none.
    fn pop_oldest(&mut self, mem: &AtomicUsize) -> bool {
        while let Some(e) = self.fifo.pop_front() {
            if self.remove_exact(e, mem) {
                return true;
            }
        }
        false
    }

    /// Drop every tombstone older than `ttl` seconds.
    pub(crate) fn expire(&mut self, now: u32, ttl: u32, mem: &AtomicUsize) {
        while let Some(&e) = self.fifo.front() {
            if !expired(e.created, now, ttl) {
                break;
            }
            self.fifo.pop_front();
            self.remove_exact(e, mem);
        }
    }

    fn iter_live(&self, now: u32, ttl: u32) -> impl Iterator<Item = (&[u8], u64)> {
        self.table
            .iter()
            .filter(move |t| !expired(t.created, now, ttl))
            .map(|t| (&*t.key, t.version))
    }
}

#[inline]
fn is_entry(t: &Tomb, e: &FifoEntry) -> bool {
    t.version == e.version && t.created == e.created
}

impl Store {
    /// This node's id, as carried in the low bits of every local version.
    pub fn node_id(&self) -> u16 {
        self.clock.node_id()
    }

    /// Expire old tombstones in `sh`, then return `key`'s live tombstone version.
    pub(crate) fn tomb_version(
        &self,
        sh: &mut Shard,
        hash: u64,
        key: &[u8],
        now: u32,
    ) -> Option<u64> {
        sh.tombs.expire(now, self.tomb_ttl, &self.mem);
        sh.tombs.get(hash, key, now, self.tomb_ttl)
    }

    /// Record (or raise) `key`'s tombstone in `sh`.
    pub(crate) fn record_tomb(
        &self,
        sh: &mut Shard,
        hash: u64,
        key: &[u8],
        version: u64,
        now: u32,
    ) {
        sh.tombs.expire(now, self.tomb_ttl, &self.mem);
        sh.tombs
            .insert(hash, key, version, now, self.tomb_max, &self.mem);
    }

    /// Remote set (last writer wins): store `(key, value, flags, exptime)`
    /// with exactly `version` iff `version` is above the live item's version
    /// and above the key's tombstone. Expired / flushed local items count as
    /// absent; a version a flush already covers is `Stale`. On `TooLarge` /
    /// `NoMemory` an older local item is removed (a miss beats stale data,
    /// as for a failed local set). The clock observes `version` in every case.
    pub fn apply_set(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        version: u64,
        now: u32,
    ) -> ApplyResult {
        self.clock.observe(version);
        let hash = self.hash(key);
        let si = self.shard_index(hash);
        if key.len() > MAX_KEY_LEN || too_large(key.len(), value.len(), self.item_size_max) {
            self.store_too_large.fetch_add(1, Ordering::Relaxed);
            self.drop_older(si, hash, key, version, now);
            return ApplyResult::TooLarge;
        }
        let r = self.with_room(si, now, |sh, live, _| {
            if self
                .tomb_version(sh, hash, key, now)
                .is_some_and(|t| t >= version)
                || live.flushed(version)
            {
                return Ok(ApplyResult::Stale);
            }
            let found = self.lookup(sh, hash, key, live, false).ok();
            if found.is_some_and(|i| effective_version(sh, i, key) >= version) {
                return Ok(ApplyResult::Stale);
            }
            let Some(mut it) = ItemPtr::alloc(key, value.len()) else {
                return Err(0);
            };
            it.value_mut().copy_from_slice(value);
            it.set_flags(flags);
            it.set_exptime(exptime);
            it.set_atime(now);
            it.set_bits(BIT_VISITED);
            // `commit` also drops the (older) tombstone.
            self.commit(sh, hash, found, it, live, Some(version))?;
            Ok(ApplyResult::Applied)
        });
        r.unwrap_or_else(|| {
            self.store_no_memory.fetch_add(1, Ordering::Relaxed);
            self.drop_older(si, hash, key, version, now);
            ApplyResult::NoMemory
        })
    }

    /// Remove `key`'s item if its version is below `version`.
    fn drop_older(&self, si: usize, hash: u64, key: &[u8], version: u64, now: u32) {
        let live = self.liveness(now);
        let mut sh = self.shard(si).lock();
        if let Ok(idx) = self.lookup(&mut sh, hash, key, &live, false) {
            if sh.item(idx).cas() < version {
                sh.remove_at(idx, &self.mem);
            }
        }
    }

    /// Remote delete: remove the item iff `version` is above its version and
    /// record a tombstone `(key, version)` — also when there is no item —
    /// unless the item or an existing tombstone is at least as new (`Stale`).
    pub fn apply_delete(&self, key: &[u8], version: u64, now: u32) -> ApplyResult {
        self.clock.observe(version);
        if key.len() > MAX_KEY_LEN {
            return ApplyResult::TooLarge;
        }
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        if self
            .tomb_version(&mut sh, hash, key, now)
            .is_some_and(|t| t >= version)
        {
            return ApplyResult::Stale;
        }
        if let Ok(idx) = self.lookup(&mut sh, hash, key, &live, false) {
            if effective_version(&sh, idx, key) >= version {
                return ApplyResult::Stale;
            }
            sh.remove_at(idx, &self.mem);
        }
        self.record_tomb(&mut sh, hash, key, version, now);
        ApplyResult::Applied
    }

    /// The counter contribution of this node for `key` after a local `incr`/`decr`, to
    /// replicate instead of the value (`None` when counters are not tracked).
    pub fn counter_op(&self, key: &[u8], now: u32) -> Option<CounterOp> {
        if !self.track_counters {
            return None;
        }
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        let idx = self.lookup(&mut sh, hash, key, &live, false).ok()?;
        let it = sh.item(idx);
        let (version, flags, exptime) = (it.cas(), it.flags(), it.exptime());
        let state = sh.counters.get(key, version)?;
        let node = self.clock.node_id();
        let (_, p, n) = state.contrib.iter().find(|c| c.0 == node).copied()?;
        Some(CounterOp {
            base_version: state.base_version,
            base_value: state.base_value,
            node,
            p,
            n,
            version,
            flags,
            exptime,
        })
    }

    /// Remote counter contribution: merge it (per-node max) into the counter built on the
    /// same base, adopt a newer base, ignore an older one (a later write replaced it).
    pub fn apply_counter(&self, key: &[u8], op: &CounterOp, now: u32) -> ApplyResult {
        self.clock.observe(op.version);
        if key.len() > MAX_KEY_LEN {
            return ApplyResult::TooLarge;
        }
        let hash = self.hash(key);
        let si = self.shard_index(hash);
        let r = self.with_room(si, now, |sh, live, _| {
            if self
                .tomb_version(sh, hash, key, now)
                .is_some_and(|t| t > op.base_version)
                || live.flushed(op.version)
            {
                return Ok(ApplyResult::Stale);
            }
            let fresh = || CounterState {
                item_version: 0,
                base_version: op.base_version,
                base_value: op.base_value,
                contrib: vec![(op.node, op.p, op.n)],
            };
            let Ok(idx) = self.lookup(sh, hash, key, live, false) else {
                // No item here (never had it, or evicted): rebuild it from the op.
                let mut state = fresh();
                let mut buf = [0u8; 20];
                let digits = format_decimal(state.value(), &mut buf);
                let Some(mut it) = ItemPtr::alloc(key, digits.len()) else {
                    return Err(0);
                };
                it.value_mut().copy_from_slice(digits);
                it.set_flags(op.flags);
                it.set_exptime(op.exptime);
                it.set_atime(now);
                it.set_bits(BIT_VISITED);
                self.commit(sh, hash, None, it, live, Some(op.version))?;
                state.item_version = op.version;
                sh.counters.put(key, state, &self.mem);
                return Ok(ApplyResult::Applied);
            };
            let item_version = sh.item(idx).cas();
            let current = sh.counters.get(key, item_version).cloned();
            let cur_base = current.as_ref().map_or(item_version, |s| s.base_version);
            let mut state = match op.base_version.cmp(&cur_base) {
                std::cmp::Ordering::Less => return Ok(ApplyResult::Stale),
                std::cmp::Ordering::Greater => fresh(),
                std::cmp::Ordering::Equal => {
                    let mut state = match current {
                        Some(s) => s,
                        // The item is the plain base write itself.
                        None => match parse_decimal(sh.item(idx).value()) {
                            Some(v) => CounterState {
                                item_version,
                                base_version: item_version,
                                base_value: v,
                                contrib: Vec::new(),
                            },
                            None => return Ok(ApplyResult::Stale),
                        },
                    };
                    state.merge(op.node, op.p, op.n);
                    state
                }
            };
            let version = item_version.max(op.version);
            if !self.set_number(sh, idx, key, state.value(), version, None, now, live) {
                return Err(0);
            }
            state.item_version = version;
            sh.counters.put(key, state, &self.mem);
            Ok(ApplyResult::Applied)
        });
        r.unwrap_or(ApplyResult::NoMemory)
    }

    /// Remote touch: set the live item's exptime iff its version is exactly
    /// `version` (the write the touch refers to); otherwise `Stale`. No new
    /// version, no LRU bump.
    pub fn apply_touch(&self, key: &[u8], exptime: u32, version: u64, now: u32) -> ApplyResult {
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        let Ok(idx) = self.lookup(&mut sh, hash, key, &live, false) else {
            return ApplyResult::Stale;
        };
        if sh.item(idx).cas() != version {
            return ApplyResult::Stale;
        }
        sh.clean_scan = None;
        sh.item_mut(idx).set_exptime(exptime);
        ApplyResult::Applied
    }

    /// Remote flush_all. `at == 0`: raise the flush floor to
    /// `max(current, floor)` (and, as a local immediate flush does, cancel a
    /// pending delayed flush); the clock observes `floor`. `at != 0`: replace
    /// the pending delayed flush by "at unix second `at`, versions below
    /// `floor` die" (a pending flush already due is made permanent first).
    /// `floor` is what the origin's [`Store::flush_all`] returned.
    pub fn apply_flush(&self, floor: u64, at: u32) {
        self.flush_impl(at, Some(floor));
    }

    /// The flush state to hand a peer in a full sync: the floor in force (every version below
    /// it is dead) and a pending delayed flush `(floor, at)` if there is one.
    pub fn flush_state(&self) -> (u64, Option<(u64, u32)>) {
        let floor = self.flush_floor.load(Ordering::Acquire);
        let at = self.pending_at.load(Ordering::Acquire);
        let pending = (at != 0).then(|| (self.pending_ver.load(Ordering::Acquire), at));
        (floor, pending)
    }

    /// Visit every live item of shard `shard` (0..[`Store::shard_count`])
    /// under that shard's lock, in unspecified order, without LRU bumps or
    /// stats. `f` must copy what it needs and not call back into the store.
    /// The view's `prev_exptime` equals `exptime`.
    pub fn snapshot_shard(&self, shard: usize, now: u32, mut f: impl FnMut(&ItemView<'_>)) {
        if shard >= self.shards.len() {
            return;
        }
        let live = self.liveness(now);
        let sh = self.shard(shard).lock();
        for it in sh.table.iter() {
            if live.check(it).is_some() {
                continue;
            }
            f(&ItemView {
                key: it.key(),
                value: it.value(),
                flags: it.flags(),
                exptime: it.exptime(),
                prev_exptime: it.exptime(),
                cas: it.cas(),
                atime: it.atime(),
                fetched: it.fetched(),
            });
        }
    }

    /// Visit the live items of shard `shard` in the bucket range starting at `from`, at most
    /// `budget` buckets, under the shard's lock — so a full sync can copy a shard in pieces
    /// and let clients in between. Returns the next bucket to visit (`None` = the shard is
    /// done) and the table's bucket count: if that count changes between two calls the
    /// table was resized and items may have moved, so the caller restarts the shard from 0
    /// (sending an item twice is harmless: the receiver keeps the higher version).
    pub fn snapshot_shard_part(
        &self,
        shard: usize,
        from: usize,
        budget: usize,
        now: u32,
        mut f: impl FnMut(&ItemView<'_>, Option<CounterView<'_>>),
    ) -> (Option<usize>, usize) {
        if shard >= self.shards.len() {
            return (None, 0);
        }
        let live = self.liveness(now);
        let sh = self.shard(shard).lock();
        if sh.table.capacity() == 0 {
            return (None, 0);
        }
        let buckets = sh.table.num_buckets();
        let end = from.saturating_add(budget.max(1)).min(buckets);
        for i in from..end {
            let Some(it) = sh.table.get_bucket(i) else {
                continue;
            };
            if live.check(it).is_some() {
                continue;
            }
            let counter = sh.counters.get(it.key(), it.cas()).map(|c| CounterView {
                base_version: c.base_version,
                base_value: c.base_value,
                contrib: &c.contrib,
            });
            f(
                &ItemView {
                    key: it.key(),
                    value: it.value(),
                    flags: it.flags(),
                    exptime: it.exptime(),
                    prev_exptime: it.exptime(),
                    cas: it.cas(),
                    atime: it.atime(),
                    fetched: it.fetched(),
                },
                counter,
            );
        }
        ((end < buckets).then_some(end), buckets)
    }

    /// Visit every live tombstone `(key, version)` of shard `shard` under its
    /// lock (for full sync: send them as deletes).
    pub fn snapshot_tombstones(&self, shard: usize, now: u32, mut f: impl FnMut(&[u8], u64)) {
        if shard >= self.shards.len() {
            return;
        }
        let sh = self.shard(shard).lock();
        for (k, v) in sh.tombs.iter_live(now, self.tomb_ttl) {
            f(k, v);
        }
    }

    /// The live tombstone version of `key`, if any.
    pub fn tombstone(&self, key: &[u8], now: u32) -> Option<u64> {
        let hash = self.hash(key);
        let sh = self.shard(self.shard_index(hash)).lock();
        sh.tombs.get(hash, key, now, self.tomb_ttl)
    }

    /// The state of `key` to replicate after a local write: `(value, flags,
    /// exptime, version)` of the live item, or `None`. No LRU bump, no stats,
    /// nothing removed.
    pub fn read_for_replication(&self, key: &[u8], now: u32) -> Option<(Vec<u8>, u32, u32, u64)> {
        let hash = self.hash(key);
        let live = self.liveness(now);
        let sh = self.shard(self.shard_index(hash)).lock();
        let it = sh.item(sh.find(hash, key)?);
        if live.check(it).is_some() {
            return None;
        }
        Some((it.value().to_vec(), it.flags(), it.exptime(), it.cas()))
    }

    /// Drop every tombstone older than `tombstone_ttl` now (otherwise they
    /// go lazily, when their shard records or consults one). For a periodic
    /// housekeeping task.
    pub fn expire_tombstones(&self, now: u32) {
        for p in self.shards.iter() {
            p.0.lock().tombs.expire(now, self.tomb_ttl, &self.mem);
        }
    }
}

#[cfg(test)]
#[path = "repl_tests.rs"]
mod tests;

/// A counter's replicated state as a full sync must send it: the item alone (its decimal
/// total) would arrive as a new base and wipe the per-node contributions built on the
/// current one, losing every increment the receiver had not seen yet. Sent instead as one
/// [`CounterOp`] per contributing node, which merge on the receiver.
#[derive(Clone, Copy, Debug)]
pub struct CounterView<'a> {
    pub base_version: u64,
    pub base_value: u64,
    /// `(node, p, n)`: what each node added and took since the base.
    pub contrib: &'a [(u16, u64, u64)],
}

/// A replicated counter contribution (see `counter.rs`): node `node` has added `p` and
/// taken `n` since the base write (`base_version`, `base_value`); the item it produced has
/// `version`, `flags`, `exptime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterOp {
    pub base_version: u64,
    pub base_value: u64,
    pub node: u16,
    pub p: u64,
    pub n: u64,
    pub version: u64,
    pub flags: u32,
    pub exptime: u32,
}

/// The version a remote write must beat: a counter's base, not its latest increment (a
/// `set` newer than the base replaces the counter even if increments came after it).
fn effective_version(sh: &Shard, idx: usize, key: &[u8]) -> u64 {
    let v = sh.item(idx).cas();
    sh.counters.get(key, v).map_or(v, |s| s.base_version)
}

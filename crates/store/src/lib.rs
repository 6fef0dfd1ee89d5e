//! memha-store: the cache itself — no I/O, no protocol knowledge.
//!
//! # Design (and why)
//!
//! * **Sharding.** The store is shared by every worker thread as
//!   `Arc<Store>`. Keys are hashed once with foldhash (fixed seed, so the
//!   layout is deterministic) and spread over `N` (power of two) shards, each
//!   a `parking_lot::Mutex<Shard>`. Critical sections are tiny (a table probe
//!   and a few header writes), so a plain mutex beats anything cleverer. The
//!   shard index comes from hash bits 40.. — hashbrown uses the low bits for
//!   the bucket position and the top 7 bits as the control tag, so taking the
//!   shard from either would leave every shard's table with poorly
//!   distributed hashes.
//! * **Item layout** (`item.rs`): one `malloc` per item holding a packed
//!   26-byte header, the key and the value; the table stores only an 8-byte
//!   pointer. That is the whole per-item overhead besides malloc's own
//!   rounding — far below memcached's ~70 bytes.
//! * **Eviction** (`shard.rs`): CLOCK over the hash table's buckets, so no
//!   LRU list pointers are needed. Dead (expired / flushed) items met by the
//!   hand are always taken first.
//! * **Global budget.** Memory is counted as it is really allocated
//!   (`malloc_usable_size + 8` per item, plus every table's buckets) in one
//!   global atomic, so the limit is global: a hot shard may use more than
//!   `limit / N`. A writer first evicts from its own shard (under the lock it
//!   already holds); if that shard is exhausted it drops the lock and evicts
//!   round-robin from the others, one lock at a time, so two shard locks are
//!   never held together and there is nothing to deadlock on.
//! * **Versions** (`version.rs`): a hybrid logical clock; the version doubles
//!   as the CAS unique and encodes the write time, which is what makes
//!   `flush_all` a single comparison ("version below X is dead").
//! * **Meta operations** (`meta.rs`): `read` / `write` / `remove` /
//!   `arith_ext` take every option memcached's meta and binary protocols
//!   need (vivify, recache tokens, stale items, explicit versions); the
//!   classic `store_versioned` / `delete` / `arith_versioned` are thin
//!   wrappers over them.
//! * **Replication** (`repl.rs`): remote writes are applied last-writer-wins
//!   by version (`apply_set` / `apply_delete` / `apply_touch` /
//!   `apply_flush`); deletes, local or remote, leave a bounded, expiring
//!   tombstone per key so a late older write cannot resurrect the key;
//!   `snapshot_shard` / `read_for_replication` read state to send.
//! * **Time** is passed in by the caller (`now`, unix seconds); the store only
//!   reads the wall clock to mint versions. Dead items are removed lazily when
//!   a lookup or the CLOCK hand finds them.

mod classes;
mod counter;
mod item;
mod meta;
mod repl;
mod shard;
mod version;

pub use classes::ClassStats;
pub use item::{HEADER_SIZE, MAX_KEY_LEN};
pub use meta::{
    ArithOptions, ArithOutcome, ArithStatus, ReadFlags, ReadOptions, RemoveOptions, RemoveResult,
    WriteOptions, WriteResult,
};
pub use repl::{ApplyResult, CounterOp, CounterView, TOMBSTONE_OVERHEAD};
pub use version::{version_floor_at_ms, version_node_id, version_time_ms, EPOCH_MS, MAX_NODE_ID};

use item::{BIT_FETCHED, BIT_VISITED};
use parking_lot::Mutex;
use shard::{Dead, Liveness, Shard, KEY_HASHER};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use version::Hlc;

/// memcached's per-item overhead used for the `item_size_max` rule, so the
/// same values fit as in memcached: `48 + key + value + 2 > item_size_max`
/// means too large.
pub const HEADER_OVERHEAD: usize = 48;
/// Cap on `dump` output when no limit is given.
pub const DUMP_MAX: usize = 10_000;

const SHARD_SHIFT: u32 = 40;
const MAX_SHARDS: usize = 1 << 16; // bits 40..56, clear of hashbrown's tag bits 57..63
/// Items evicted from one foreign shard before moving on to the next.
const FOREIGN_BATCH: usize = 8;
/// Attempts of a write that had to evict from other shards.
const STORE_ATTEMPTS: usize = 8;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Byte budget for items and hash tables together.
    pub memory_limit: usize,
    /// Largest item (memcached -I), see [`HEADER_OVERHEAD`].
    pub item_size_max: usize,
    /// memcached -M: fail writes with `NoMemory` instead of evicting live items.
    pub no_evict: bool,
    /// Number of shards; rounded up to a power of two, clamped to 1..=65536.
    pub shards: usize,
    /// 0..=1023, embedded in every version.
    pub node_id: u16,
    /// Seconds a delete tombstone is kept (see `repl.rs`); 0 = keep none.
    pub tombstone_ttl: u32,
    /// Bound on tombstones in total, split evenly over the shards (oldest
    /// dropped first); 0 = keep none.
    pub max_tombstones: usize,
    /// Keep per-node counter contributions (see `counter.rs`) so replicated `incr`/`decr`
    /// lose nothing; only a replicating node needs it.
    pub track_counters: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            memory_limit: 64 << 20,
            item_size_max: 1 << 20,
            no_evict: false,
            shards: 64,
            node_id: 0,
            tombstone_ttl: 600,
            max_tombstones: 100_000,
            track_counters: false,
        }
    }
}

/// A live item, borrowed while the shard lock is held.
#[derive(Debug)]
pub struct ItemView<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    /// Exptime after this access (i.e. the new one for touch/gat).
    pub exptime: u32,
    /// Exptime before this access (0 = never expires, also for an item just created).
    pub prev_exptime: u32,
    pub cas: u64,
    /// Last access time *before* this access.
    pub atime: u32,
    /// Whether the item had been fetched before this access.
    pub fetched: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<R> {
    Hit(R),
    Miss,
    /// The item was there but expired; it has been removed.
    Expired,
    /// The item was there but hidden by flush_all; it has been removed.
    Flushed,
}

impl<R> Lookup<R> {
    pub fn hit(self) -> Option<R> {
        match self {
            Lookup::Hit(r) => Some(r),
            _ => None,
        }
    }
    pub fn is_hit(&self) -> bool {
        matches!(self, Lookup::Hit(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreResult {
    Stored,
    NotStored,
    Exists,
    NotFound,
    TooLarge,
    NoMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeleteResult {
    Deleted,
    NotFound,
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithResult {
    Value(u64),
    NotFound,
    NonNumeric,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Items in the tables (including dead ones not yet reclaimed, as memcached).
    pub curr_items: u64,
    /// Header + key + value of those items (header = our 26 bytes).
    pub bytes: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    /// Really allocated: malloc chunks of items + hash tables.
    pub memory_used: u64,
    pub memory_limit: u64,
    pub store_too_large: u64,
    pub store_no_memory: u64,
    /// Gets that found an expired item (memcached get_expired).
    pub get_expired: u64,
    /// Gets that found a flushed item (memcached get_flushed).
    pub get_flushed: u64,
    /// Number of shards (locks).
    pub shards: u64,
    /// Bytes held by the hash tables (part of `memory_used`).
    pub table_bytes: u64,
    /// Buckets over all hash tables.
    pub table_buckets: u64,
    /// Delete tombstones held (not items; their memory is in `memory_used`).
    pub tombstones: u64,
}

#[repr(align(128))]
struct Padded<T>(T);

pub struct Store {
    shards: Box<[Padded<Mutex<Shard>>]>,
    shard_mask: usize,
    mem: AtomicUsize,
    limit: AtomicUsize,
    item_size_max: usize,
    no_evict: bool,
    clock: Hlc,
    flush_lock: Mutex<()>,
    flush_floor: AtomicU64,
    pending_ver: AtomicU64,
    pending_at: AtomicU32,
    flush_gen: AtomicU64,
    evict_cursor: AtomicUsize,
    store_too_large: AtomicU64,
    store_no_memory: AtomicU64,
    /// Tombstone lifetime in seconds.
    tomb_ttl: u32,
    track_counters: bool,
    /// Tombstones kept per shard (0 = none).
    tomb_max: usize,
}

// Compile-time proof of the threading contract.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

/// The reporting size class (1-based, as memcached's slab class ids) of an
/// item with this key and value length (e.g. for `me`'s `cls=`).
pub fn class_of_item(key_len: usize, value_len: usize) -> usize {
    classes::class_of(HEADER_OVERHEAD + key_len + value_len + 2)
}

#[inline]
fn too_large(key_len: usize, value_len: usize, max: usize) -> bool {
    HEADER_OVERHEAD + key_len + value_len + 2 > max
}

/// memcached incr/decr operand: 1..=20 ASCII digits that fit in a u64.
/// Like memcached's `safe_strtoull`: whitespace around the digits is allowed (memcached's
/// own `decr` used to leave space padding behind), anything else is not.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

fn format_decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        let n = cfg.shards.clamp(1, MAX_SHARDS).next_power_of_two();
        Store {
            shards: (0..n).map(|_| Padded(Mutex::new(Shard::new()))).collect(),
            shard_mask: n - 1,
            mem: AtomicUsize::new(0),
            limit: AtomicUsize::new(cfg.memory_limit),
            item_size_max: cfg.item_size_max,
            no_evict: cfg.no_evict,
            clock: Hlc::new(cfg.node_id),
            flush_lock: Mutex::new(()),
            flush_floor: AtomicU64::new(0),
            pending_ver: AtomicU64::new(0),
            pending_at: AtomicU32::new(0),
            flush_gen: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            store_too_large: AtomicU64::new(0),
            store_no_memory: AtomicU64::new(0),
            tomb_ttl: cfg.tombstone_ttl,
            track_counters: cfg.track_counters,
            // A zero lifetime keeps none either.
            tomb_max: if cfg.tombstone_ttl == 0 {
                0
            } else {
                cfg.max_tombstones.div_ceil(n)
            },
        }
    }

    /// A fresh, strictly increasing version (CAS unique).
    pub fn next_version(&self) -> u64 {
        self.clock.next()
    }

    pub fn item_size_max(&self) -> usize {
        self.item_size_max
    }

    pub fn no_evict(&self) -> bool {
        self.no_evict
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        KEY_HASHER.hash_one(key)
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        ((hash >> SHARD_SHIFT) as usize) & self.shard_mask
    }

    #[inline]
    fn shard(&self, i: usize) -> &Mutex<Shard> {
        &self.shards[i].0
    }

    fn liveness(&self, now: u32) -> Liveness {
        Liveness {
            now,
            floor: self.flush_floor.load(Ordering::Acquire),
            pending_ver: self.pending_ver.load(Ordering::Acquire),
            pending_at: self.pending_at.load(Ordering::Acquire),
            flush_gen: self.flush_gen.load(Ordering::Acquire),
        }
    }

    /// Find `key`; a dead item found on the way is removed. Returns the
    /// bucket of the live item, or why there is none.
    fn lookup(
        &self,
        sh: &mut Shard,
        hash: u64,
        key: &[u8],
        live: &Liveness,
        on_get: bool,
    ) -> Result<usize, Option<Dead>> {
        let idx = sh.find(hash, key).ok_or(None)?;
        match live.check(sh.item(idx)) {
            None => Ok(idx),
            Some(why) => {
                sh.remove_dead(idx, why, on_get, &self.mem);
                Err(Some(why))
            }
        }
    }

    #[inline]
    fn fits(&self, need: usize) -> bool {
        self.mem.load(Ordering::Relaxed).saturating_add(need) <= self.limit.load(Ordering::Relaxed)
    }

    /// Evict from the shard we hold until `need` more bytes fit. `false` if
    /// the shard ran out of candidates first.
    fn make_room_local(
        &self,
        sh: &mut Shard,
        need: usize,
        live: &Liveness,
        skip: Option<usize>,
    ) -> bool {
        while !self.fits(need) {
            if sh.evict_one(live, self.no_evict, skip, &self.mem).is_none() {
                return false;
            }
        }
        true
    }

    /// Evict round-robin from all shards except `except` (whose lock the
    /// caller must NOT hold), one lock at a time, until `need` more bytes fit.
    fn make_room_global(&self, except: usize, need: usize, now: u32) -> bool {
        let n = self.shards.len();
        let live = self.liveness(now);
        let mut i = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
        let mut idle = 0;
        while idle < n {
            if self.fits(need) {
                return true;
            }
            let si = i & self.shard_mask;
            i = i.wrapping_add(1);
            if si == except {
                idle += 1;
                continue;
            }
            let mut sh = self.shard(si).lock();
            let mut progress = false;
            for _ in 0..FOREIGN_BATCH {
                if self.fits(need)
                    || sh
                        .evict_one(&live, self.no_evict, None, &self.mem)
                        .is_none()
                {
                    break;
                }
                progress = true;
            }
            drop(sh);
            if progress {
                idle = 0;
            } else {
                idle += 1;
            }
        }
        self.evict_cursor.store(i, Ordering::Relaxed);
        self.fits(need)
    }

    /// Remove whatever is stored under `key` (live or not).
    fn remove_key(&self, si: usize, hash: u64, key: &[u8]) {
        let mut sh = self.shard(si).lock();
        if let Some(idx) = sh.find(hash, key) {
            sh.remove_at(idx, &self.mem);
        }
    }

    /// Look up a live item; `touch: Some(exptime)` also sets its exptime
    /// (gat/touch). Sets the visited and fetched bits and atime = now.
    /// `f` runs while the shard lock is held: copy what you need, don't call
    /// back into the store.
    pub fn get<R>(
        &self,
        key: &[u8],
        now: u32,
        touch: Option<u32>,
        f: impl FnOnce(&ItemView<'_>) -> R,
    ) -> Lookup<R> {
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        let idx = match self.lookup(&mut sh, hash, key, &live, true) {
            Ok(i) => i,
            Err(None) => return Lookup::Miss,
            Err(Some(Dead::Expired)) => return Lookup::Expired,
            Err(Some(Dead::Flushed)) => return Lookup::Flushed,
        };
        if touch.is_some() {
            sh.clean_scan = None;
        }
        let it = sh.item_mut(idx);
        let old_atime = it.atime();
        let old_fetched = it.fetched();
        let prev_exptime = it.exptime();
        if let Some(e) = touch {
            it.set_exptime(e);
        }
        it.set_bits(it.bits() | BIT_VISITED | BIT_FETCHED);
        it.set_atime(now);
        let it = &*it;
        let view = ItemView {
            key: it.key(),
            value: it.value(),
            flags: it.flags(),
            exptime: it.exptime(),
            prev_exptime,
            cas: it.cas(),
            atime: old_atime,
            fetched: old_fetched,
        };
        Lookup::Hit(f(&view))
    }

    /// set/add/replace/append/prepend, optionally with CAS; see
    /// [`Store::store_versioned`].
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        mode: SetMode,
        key: &[u8],
        flags: u32,
        exptime: u32,
        value: &[u8],
        cas: Option<u64>,
        now: u32,
    ) -> StoreResult {
        self.store_versioned(mode, key, flags, exptime, value, cas, now)
            .0
    }

    /// set/add/replace/append/prepend; `cas: Some(c)` = compare-and-swap.
    ///
    /// * Set: with cas, `NotFound` if missing, `Exists` on mismatch.
    /// * Add: `NotStored` if a live item exists (it is marked visited); cas ignored.
    /// * Replace/Append/Prepend: `NotStored` if missing; with cas, `Exists`
    ///   on mismatch. Append/Prepend keep the old flags and exptime.
    /// * `TooLarge` if `48 + key + value + 2 > item_size_max` (for
    ///   append/prepend: of the combined value); `NoMemory` if the budget
    ///   cannot be met. On either failure a plain Set (no cas) deletes the
    ///   existing item, as memcached does.
    ///
    /// Returns the new item's version when stored.
    #[allow(clippy::too_many_arguments)]
    pub fn store_versioned(
        &self,
        mode: SetMode,
        key: &[u8],
        flags: u32,
        exptime: u32,
        value: &[u8],
        cas: Option<u64>,
        now: u32,
    ) -> (StoreResult, Option<u64>) {
        let w = WriteOptions {
            compare_cas: cas,
            ..WriteOptions::new(mode, value, flags, exptime)
        };
        let r = self.write_impl(key, now, &w, meta::CasStyle::Classic);
        let v = (r.result == StoreResult::Stored).then_some(r.version);
        (r.result, v)
    }

    /// Delete; with `cas: Some(c)` only if the live item's version is `c`.
    pub fn delete(&self, key: &[u8], cas: Option<u64>, now: u32) -> DeleteResult {
        self.delete_versioned(key, cas, now).0
    }

    /// [`Store::delete`], also returning the version of the tombstone the
    /// delete recorded (a fresh version; 0 unless `Deleted`) — the version
    /// to replicate the delete with.
    pub fn delete_versioned(&self, key: &[u8], cas: Option<u64>, now: u32) -> (DeleteResult, u64) {
        let d = RemoveOptions {
            compare_cas: cas,
            ..RemoveOptions::default()
        };
        let (r, v) = self.remove_versioned(key, now, &d);
        let r = match r {
            RemoveResult::Removed => DeleteResult::Deleted,
            RemoveResult::NotFound => DeleteResult::NotFound,
            RemoveResult::Exists => DeleteResult::Exists,
        };
        (r, v)
    }

    /// memcached incr/decr. See [`Store::arith_versioned`].
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64, now: u32) -> ArithResult {
        self.arith_versioned(key, incr, delta, now).0
    }

    /// incr/decr: the value must be 1..=20 ASCII digits fitting a u64, else
    /// `NonNumeric`. incr wraps mod 2^64, decr stops at 0. The result replaces
    /// the value as decimal text; flags/exptime are kept; the item gets a new
    /// version (returned). The item stays in its bucket (shrinks in place,
    /// grows by reallocation). Growth is at most 19 bytes and is committed
    /// even if the budget is exhausted (best-effort eviction first).
    pub fn arith_versioned(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        now: u32,
    ) -> (ArithResult, Option<u64>) {
        let a = ArithOptions {
            incr,
            delta,
            ..ArithOptions::default()
        };
        let r = self.arith_ext(key, now, &a);
        match r.status {
            ArithStatus::Applied => (ArithResult::Value(r.value), Some(r.version)),
            ArithStatus::NonNumeric => (ArithResult::NonNumeric, None),
            _ => (ArithResult::NotFound, None),
        }
    }

    /// Set a live item's exptime (version unchanged). `false` if missing.
    pub fn touch(&self, key: &[u8], exptime: u32, now: u32) -> bool {
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        let Ok(idx) = self.lookup(&mut sh, hash, key, &live, false) else {
            return false;
        };
        sh.clean_scan = None;
        let it = sh.item_mut(idx);
        it.set_exptime(exptime);
        it.set_atime(now);
        it.set_bits(it.bits() | BIT_VISITED | BIT_FETCHED);
        true
    }

    /// `None` (or `Some(0)`): hide everything stored so far, now.
    /// `Some(t)`: at unix second `t`, hide everything stored before `t`.
    /// A new call replaces a pending delayed flush (one that is already due
    /// stays in effect).
    ///
    /// Returns the floor version it set (every version below it is, or at
    /// `t` will be, dead): what to replicate with `at` as
    /// [`Store::apply_flush`]`(floor, t or 0)`.
    pub fn flush_all(&self, at: Option<u32>) -> u64 {
        self.flush_impl(at.unwrap_or(0), None)
    }

    /// flush_all with `at` (0 = now) and the floor version `floor` (`None`:
    /// the current version for an immediate flush, the floor of second `at`
    /// for a delayed one). Returns the floor set.
    fn flush_impl(&self, at: u32, floor: Option<u64>) -> u64 {
        let _g = self.flush_lock.lock();
        if let (0, Some(f)) = (at, floor) {
            self.clock.observe(f);
        }
        let cur = self.clock.next();
        let now_ms = version_time_ms(cur);
        let pat = self.pending_at.load(Ordering::Acquire);
        if pat != 0 && (pat as u64) * 1000 <= now_ms {
            // The pending flush is due: make it permanent before replacing it.
            self.flush_floor
                .fetch_max(self.pending_ver.load(Ordering::Acquire), Ordering::AcqRel);
        }
        let set = if at == 0 {
            let v = floor.unwrap_or(cur);
            self.flush_floor.fetch_max(v, Ordering::AcqRel);
            self.pending_at.store(0, Ordering::Release);
            self.pending_ver.store(0, Ordering::Release);
            v
        } else {
            let v = floor.unwrap_or_else(|| version_floor_at_ms(at as u64 * 1000));
            self.pending_ver.store(v, Ordering::Release);
            self.pending_at.store(at, Ordering::Release);
            v
        };
        self.flush_gen.fetch_add(1, Ordering::AcqRel);
        set
    }

    /// Change the budget; if it shrank, evict down to it right away.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
        if !self.fits(0) {
            let now = (version_time_ms(self.clock.next()) / 1000) as u32;
            self.make_room_global(usize::MAX, 0, now);
        }
    }

    pub fn memory_limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes really allocated (items + tables).
    pub fn memory_used(&self) -> usize {
        self.mem.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats::default();
        for p in self.shards.iter() {
            let sh = p.0.lock();
            s.curr_items += sh.table.len() as u64;
            s.bytes += sh.bytes;
            s.total_items += sh.total_items;
            s.evictions += sh.evictions;
            s.reclaimed += sh.reclaimed;
            s.expired_unfetched += sh.expired_unfetched;
            s.evicted_unfetched += sh.evicted_unfetched;
            s.get_expired += sh.get_expired;
            s.get_flushed += sh.get_flushed;
            s.table_bytes += sh.table_bytes as u64;
            s.tombstones += sh.tombs.len() as u64;
            if sh.table.capacity() > 0 {
                s.table_buckets += sh.table.num_buckets() as u64;
            }
        }
        s.shards = self.shards.len() as u64;
        s.memory_used = self.mem.load(Ordering::Relaxed) as u64;
        s.memory_limit = self.limit.load(Ordering::Relaxed) as u64;
        s.store_too_large = self.store_too_large.load(Ordering::Relaxed);
        s.store_no_memory = self.store_no_memory.load(Ordering::Relaxed);
        s
    }

    /// Per size class figures for `stats items` / `stats slabs`: only classes that hold
    /// items or have counted an event. Walks every item (O(items)); meant for stats.
    pub fn class_stats(&self, now: u32) -> Vec<ClassStats> {
        let sizes = classes::chunk_sizes();
        let mut out: Vec<ClassStats> = sizes
            .iter()
            .enumerate()
            .map(|(i, &chunk_size)| ClassStats {
                class: i + 1,
                chunk_size,
                oldest_atime: u32::MAX,
                ..ClassStats::default()
            })
            .collect();
        let live = self.liveness(now);
        let mut counters = vec![classes::ClassCounters::default(); sizes.len()];
        for p in self.shards.iter() {
            let sh = p.0.lock();
            for it in sh.table.iter() {
                if live.check(it).is_some() {
                    continue;
                }
                let c = &mut out[it.class() - 1];
                c.number += 1;
                c.bytes += it.memcached_size() as u64;
                c.oldest_atime = c.oldest_atime.min(it.atime());
            }
            for (acc, c) in counters.iter_mut().zip(sh.class_counters.iter()) {
                acc.add(c);
            }
        }
        for (c, k) in out.iter_mut().zip(&counters) {
            c.evicted = k.evicted;
            c.evicted_nonzero = k.evicted_nonzero;
            c.reclaimed = k.reclaimed;
            c.expired_unfetched = k.expired_unfetched;
            c.evicted_unfetched = k.evicted_unfetched;
            c.outofmemory = k.outofmemory;
            if c.number == 0 {
                c.oldest_atime = now;
            }
        }
        out.retain(|c| c.number > 0 || c.evicted > 0 || c.reclaimed > 0 || c.outofmemory > 0);
        out
    }

    /// `stats reset`: zero the event counters (not the item counts or memory figures).
    pub fn reset_stats(&self) {
        for p in self.shards.iter() {
            let mut sh = p.0.lock();
            sh.total_items = 0;
            sh.evictions = 0;
            sh.reclaimed = 0;
            sh.expired_unfetched = 0;
            sh.evicted_unfetched = 0;
            sh.get_expired = 0;
            sh.get_flushed = 0;
            for c in sh.class_counters.iter_mut() {
                *c = classes::ClassCounters::default();
            }
        }
        self.store_too_large.store(0, Ordering::Relaxed);
        self.store_no_memory.store(0, Ordering::Relaxed);
    }

    /// For `stats cachedump`: up to `limit` live items (0 = up to
    /// [`DUMP_MAX`]), calling `f(key, value_len, exptime)` under each shard's
    /// lock (don't call back into the store). Order is unspecified.
    pub fn dump(&self, limit: usize, now: u32, mut f: impl FnMut(&[u8], usize, u32)) {
        let limit = if limit == 0 { DUMP_MAX } else { limit };
        let live = self.liveness(now);
        let mut n = 0;
        for p in self.shards.iter() {
            let sh = p.0.lock();
            for it in sh.table.iter() {
                if n >= limit {
                    return;
                }
                if live.check(it).is_none() {
                    f(it.key(), it.value_len(), it.exptime());
                    n += 1;
                }
            }
        }
    }

    /// Recount everything from scratch and compare with the running
    /// counters. Only meaningful while no other thread is writing. Returns
    /// the number of items found.
    #[doc(hidden)]
    pub fn check_consistency(&self) -> Result<u64, String> {
        let mut items = 0u64;
        let mut mem = 0usize;
        let mut curr = 0u64;
        let mut bytes = 0u64;
        for (i, p) in self.shards.iter().enumerate() {
            let sh = p.0.lock();
            let mut sb = 0u64;
            for it in sh.table.iter() {
                items += 1;
                sb += it.logical_size() as u64;
                mem += it.alloc_size();
                if self.shard_index(self.hash(it.key())) != i {
                    return Err(format!("item in wrong shard {i}"));
                }
            }
            if sb != sh.bytes {
                return Err(format!("shard {i}: bytes {} != recount {sb}", sh.bytes));
            }
            mem += sh.table_bytes;
            let tb = sh.tombs.recount();
            if tb != sh.tombs.bytes() {
                return Err(format!(
                    "shard {i}: tombstone bytes {} != recount {tb}",
                    sh.tombs.bytes()
                ));
            }
            mem += tb;
            mem += sh.counters.bytes();
            curr += sh.table.len() as u64;
            bytes += sh.bytes;
        }
        let _ = bytes;
        if curr != items {
            return Err(format!("curr_items {curr} != iterated {items}"));
        }
        let used = self.mem.load(Ordering::Relaxed);
        if used != mem {
            return Err(format!("memory_used {used} != recount {mem}"));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests;

//! The general primitives behind memcached's meta protocol (mg/ms/md/ma) and
//! the binary protocol: read, write, remove and arith with every option
//! those protocols can ask for. The store knows no protocol; these are plain
//! operations with options, and the classic operations (`store_versioned`,
//! `delete`, `arith_versioned`) are special cases of them.
//!
//! # Recache ("win") tokens and stale items
//!
//! Two item bits carry memcached's anti-dogpile state (see `item.rs`):
//! STALE (the item was invalidated by `md I`, or stored as stale by `ms I`
//! with an older CAS) and WIN_SENT (one reader has been told it won the
//! right to recache the item). A read reports `lost` when WIN_SENT is set;
//! otherwise a stale item, or a live one whose remaining TTL is below the
//! reader's `recache` threshold, makes that reader the winner and sets
//! WIN_SENT. A read that misses with `vivify` creates an empty stub and the
//! reader wins it. Any ordinary store produces an item with neither bit.

use crate::item::{ItemPtr, BIT_FETCHED, BIT_STALE, BIT_VISITED, BIT_WIN_SENT};
use crate::shard::{Dead, Liveness, Shard};
use crate::{
    format_decimal, parse_decimal, too_large, ItemView, Lookup, SetMode, Store, StoreResult,
    STORE_ATTEMPTS,
};
use std::sync::atomic::Ordering;

/// Options of [`Store::read`] (meta get).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// New absolute exptime for a hit (0 = never expires).
    pub touch: Option<u32>,
    /// `false` = meta `u`: no visited/fetched/atime update.
    pub bump: bool,
    /// Meta `N`: on a miss create an empty stub with this absolute exptime.
    pub vivify: Option<u32>,
    /// Meta `R`: win the recache if fewer than this many seconds of TTL are left.
    pub recache: Option<u32>,
    /// Meta `E`: version of a vivified stub (ignored on a hit).
    pub new_version: Option<u64>,
    /// Hand out the recache token (W) of a stale item. Classic gets pass `false`: their
    /// replies cannot carry W, so taking the token would leave no client to recache.
    pub tokens: bool,
}

impl Default for ReadOptions {
    /// A plain get: bump, nothing else.
    fn default() -> Self {
        ReadOptions {
            touch: None,
            bump: true,
            vivify: None,
            recache: None,
            new_version: None,
            tokens: true,
        }
    }
}

/// What a read found out about the item's recache state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadFlags {
    /// Meta `W`: this reader won the right to recache the item.
    pub won: bool,
    /// Meta `X`: the item is stale.
    pub stale: bool,
    /// Meta `Z`: another reader was already handed the win.
    pub lost: bool,
    /// This call created the (empty) stub on a miss.
    pub vivified: bool,
}

/// Options of [`Store::write`] (meta set, binary set/add/replace/append/prepend).
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions<'a> {
    pub mode: SetMode,
    pub value: &'a [u8],
    pub flags: u32,
    /// Absolute exptime, 0 = never (ignored by append/prepend on a hit).
    pub exptime: u32,
    pub compare_cas: Option<u64>,
    /// Version of the stored item instead of a fresh one.
    pub new_version: Option<u64>,
    /// Meta `I`: with `compare_cas` below the item's version, store anyway
    /// but as a stale item.
    pub invalidate: bool,
    /// Append/prepend on a miss: create the item from `value` with this exptime.
    pub vivify: Option<u32>,
}

impl<'a> WriteOptions<'a> {
    /// A plain store of `value` in `mode`; every other option off.
    pub fn new(mode: SetMode, value: &'a [u8], flags: u32, exptime: u32) -> Self {
        WriteOptions {
            mode,
            value,
            flags,
            exptime,
            compare_cas: None,
            new_version: None,
            invalidate: false,
            vivify: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteResult {
    pub result: StoreResult,
    /// Version of the stored item; 0 unless `Stored`.
    pub version: u64,
    /// Value length of the stored item; 0 unless `Stored`.
    pub size: usize,
}

/// Options of [`Store::remove`] (meta delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    pub compare_cas: Option<u64>,
    /// Version given to an invalidated / emptied item instead of a fresh one.
    pub new_version: Option<u64>,
    /// Meta `I`: keep the item but mark it stale (and reset its win token).
    pub invalidate: bool,
    /// New absolute exptime of an invalidated item, or of the empty item `x` leaves.
    pub ttl: Option<u32>,
    /// Meta `x`: replace the item by an empty one with `flags` and `ttl` (never expires
    /// without `ttl`), keeping its version unless `new_version` or `invalidate` give a new one.
    pub remove_value: bool,
    /// Client flags of the empty item `x` leaves.
    pub flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoveResult {
    /// Deleted, or invalidated / emptied.
    Removed,
    NotFound,
    Exists,
}

/// Options of [`Store::arith_ext`] (meta arithmetic, binary incr/decr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArithOptions {
    pub incr: bool,
    pub delta: u64,
    pub compare_cas: Option<u64>,
    pub new_version: Option<u64>,
    /// On a miss create the item holding `initial` (decimal), with this
    /// absolute exptime: `(initial, exptime)`.
    pub vivify: Option<(u64, u32)>,
    /// New absolute exptime when the delta is applied.
    pub touch: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithStatus {
    Applied,
    /// Created by `vivify` with the initial value; the delta was not applied.
    Created,
    /// Missing (or, with `vivify`, could not be created for lack of memory).
    NotFound,
    NonNumeric,
    Exists,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArithOutcome {
    pub status: ArithStatus,
    /// The value after the op (Applied / Created), else 0.
    pub value: u64,
    /// The item's version after the op (Applied / Created), else 0.
    pub version: u64,
    /// The item's exptime after the op (Applied / Created), else 0.
    pub exptime: u32,
    /// Its exptime before the op (0 = never expires, also for a created item).
    pub prev_exptime: u32,
}

impl ArithOutcome {
    fn status(status: ArithStatus) -> Self {
        ArithOutcome {
            status,
            value: 0,
            version: 0,
            exptime: 0,
            prev_exptime: 0,
        }
    }
}

impl WriteResult {
    fn fail(result: StoreResult) -> Self {
        WriteResult {
            result,
            version: 0,
            size: 0,
        }
    }
}

/// How [`Store::write_impl`] treats a compare-CAS on Replace: the classic
/// API answers `NotStored` for a missing item; meta/binary upgrade a
/// Set or Replace with CAS to memcached's CAS command (`NotFound`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CasStyle {
    Classic,
    Meta,
}

fn lookup_miss<R>(why: Option<Dead>) -> Lookup<R> {
    match why {
        None => Lookup::Miss,
        Some(Dead::Expired) => Lookup::Expired,
        Some(Dead::Flushed) => Lookup::Flushed,
    }
}

impl Store {
    /// Run `body` under the lock of shard `si`. `body` returns `Ok` when
    /// done, or `Err(need)` when the shard could not free `need` bytes for
    /// what it wanted to insert (it has released everything it allocated);
    /// then other shards are evicted from (without our lock held) and `body`
    /// runs again, up to `STORE_ATTEMPTS` times. `None` = no memory.
    pub(crate) fn with_room<T>(
        &self,
        si: usize,
        now: u32,
        mut body: impl FnMut(&mut Shard, &Liveness, usize) -> Result<T, usize>,
    ) -> Option<T> {
        for attempt in 0..STORE_ATTEMPTS {
            let live = self.liveness(now);
            let mut sh = self.shard(si).lock();
            match body(&mut sh, &live, attempt) {
                Ok(t) => return Some(t),
                Err(need) => {
                    drop(sh);
                    if attempt + 1 == STORE_ATTEMPTS || !self.make_room_global(si, need, now) {
                        break;
                    }
                }
            }
        }
        None
    }

    /// Put `it` into the table: in place of the item in bucket `found`, or
    /// as a new entry. Makes room in this shard first; on failure frees `it`
    /// and returns the bytes that were needed. Gives the item its version
    /// (`version` or a fresh one) once it is certain to go in, and returns it.
    /// `found` stays the only bucket index that is still valid afterwards.
    pub(crate) fn commit(
        &self,
        sh: &mut Shard,
        hash: u64,
        found: Option<usize>,
        mut it: ItemPtr,
        live: &Liveness,
        version: Option<u64>,
    ) -> Result<u64, usize> {
        // Net growth: the new chunk, minus the chunk it replaces, plus a
        // possible table resize for a new key.
        let need = match found {
            Some(i) => it.alloc_size().saturating_sub(sh.item(i).alloc_size()),
            None => it.alloc_size() + sh.insert_growth_bytes(),
        };
        if !self.make_room_local(sh, need, live, found) {
            it.free();
            return Err(need);
        }
        // A store over a deleted key: the tombstone is older (local versions
        // are always newer; `apply_set` checked).
        sh.tombs.remove(hash, it.key(), &self.mem);
        let v = version.unwrap_or_else(|| self.clock.next());
        it.set_cas(v);
        match found {
            Some(i) => sh.replace_at(i, it, &self.mem, true),
            None => {
                // Evictions are done: a resize now cannot invalidate any
                // bucket index we still hold.
                sh.reserve_one(&self.mem);
                sh.insert_new(hash, it, &self.mem);
            }
        }
        Ok(v)
    }

    /// Meta get. A live item: works out the recache flags (see the module
    /// doc), then applies `touch` and, with `bump`, the visited/fetched bits
    /// and atime, then calls `f` (the view's atime/fetched are from before
    /// this access, its exptime after the touch). A miss with `vivify`
    /// creates an empty stub (flags 0, version `new_version` or fresh) whose
    /// reader wins; without memory for it (or without `vivify`) the result
    /// is `Miss` / `Expired` / `Flushed` as for [`Store::get`].
    /// `f` runs under the shard lock: don't call back into the store.
    pub fn read<R>(
        &self,
        key: &[u8],
        now: u32,
        opts: &ReadOptions,
        f: impl FnOnce(&ItemView<'_>, ReadFlags) -> R,
    ) -> Lookup<R> {
        let hash = self.hash(key);
        let si = self.shard_index(hash);
        let mut f = Some(f);
        // Why the first attempt missed (later attempts only retry the stub).
        let mut missed: Option<Option<Dead>> = None;
        let r = self.with_room(si, now, |sh, live, attempt| {
            let why = match self.lookup(sh, hash, key, live, attempt == 0) {
                Ok(idx) => {
                    let f = f.take().expect("read callback used once");
                    return Ok(Some(self.read_hit(sh, idx, now, opts, f)));
                }
                Err(why) => why,
            };
            missed.get_or_insert(why);
            let Some(exptime) = opts.vivify else {
                return Ok(None);
            };
            let Some(mut it) = ItemPtr::alloc(key, 0) else {
                return Ok(None);
            };
            it.set_exptime(exptime);
            it.set_atime(now);
            it.set_bits(BIT_VISITED | BIT_WIN_SENT);
            self.commit(sh, hash, None, it, live, opts.new_version)?;
            let idx = sh.find(hash, key).expect("stub just inserted");
            let it = sh.item(idx);
            let view = ItemView {
                key: it.key(),
                value: it.value(),
                flags: it.flags(),
                exptime: it.exptime(),
                prev_exptime: 0,
                cas: it.cas(),
                atime: now,
                fetched: false,
            };
            let flags = ReadFlags {
                won: true,
                vivified: true,
                ..ReadFlags::default()
            };
            let f = f.take().expect("read callback used once");
            Ok(Some(Lookup::Hit(f(&view, flags))))
        });
        match r {
            Some(Some(hit)) => hit,
            Some(None) => lookup_miss(missed.flatten()),
            None => {
                self.store_no_memory.fetch_add(1, Ordering::Relaxed);
                lookup_miss(missed.flatten())
            }
        }
    }

    fn read_hit<R>(
        &self,
        sh: &mut Shard,
        idx: usize,
        now: u32,
        opts: &ReadOptions,
        f: impl FnOnce(&ItemView<'_>, ReadFlags) -> R,
    ) -> Lookup<R> {
        if opts.touch.is_some() {
            sh.clean_scan = None;
        }
        let it = sh.item_mut(idx);
        let old_bits = it.bits();
        let mut bits = old_bits;
        let mut flags = ReadFlags {
            stale: old_bits & BIT_STALE != 0,
            ..ReadFlags::default()
        };
        if old_bits & BIT_WIN_SENT != 0 {
            flags.lost = true;
        } else if flags.stale {
            flags.won = true;
        } else if let Some(r) = opts.recache {
            let e = it.exptime();
            if e != 0 && e.saturating_sub(now) < r {
                flags.won = true;
            }
        }
        if !opts.tokens {
            flags.won = false;
        }
        if flags.won {
            bits |= BIT_WIN_SENT;
        }
        let old_atime = it.atime();
        let old_fetched = old_bits & BIT_FETCHED != 0;
        let prev_exptime = it.exptime();
        if let Some(e) = opts.touch {
            it.set_exptime(e);
        }
        if opts.bump {
            bits |= BIT_VISITED | BIT_FETCHED;
            it.set_atime(now);
        }
        if bits != old_bits {
            it.set_bits(bits);
        }
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
        Lookup::Hit(f(&view, flags))
    }

    /// Meta set. As [`Store::store_versioned`], plus:
    /// * `compare_cas` with Set or Replace is memcached's CAS: `NotFound` if
    ///   missing, `Exists` on mismatch — except with `invalidate` and a
    ///   `compare_cas` below the item's version: then the value is stored
    ///   as a stale item that keeps the old exptime and win token.
    ///   Append/Prepend honour `compare_cas` (`Exists` on mismatch), Add
    ///   ignores it.
    /// * `new_version` replaces the generated version.
    /// * Append/Prepend on a miss with `vivify: Some(exp)` store `value`
    ///   (with `flags`) as a new item expiring at `exp`.
    pub fn write(&self, key: &[u8], now: u32, w: &WriteOptions<'_>) -> WriteResult {
        self.write_impl(key, now, w, CasStyle::Meta)
    }

    pub(crate) fn write_impl(
        &self,
        key: &[u8],
        now: u32,
        w: &WriteOptions<'_>,
        style: CasStyle,
    ) -> WriteResult {
        let hash = self.hash(key);
        let si = self.shard_index(hash);
        let mode = w.mode;
        let value = w.value;
        let cas = if mode == SetMode::Add {
            None
        } else {
            w.compare_cas
        };
        let delete_on_fail = mode == SetMode::Set && cas.is_none();
        let concat = matches!(mode, SetMode::Append | SetMode::Prepend);
        // Set (and for meta, Replace) with a CAS: missing = NotFound, stale allowed.
        let cas_cmd = cas.is_some()
            && (mode == SetMode::Set || (mode == SetMode::Replace && style == CasStyle::Meta));
        if !concat && too_large(key.len(), value.len(), self.item_size_max) {
            self.store_too_large.fetch_add(1, Ordering::Relaxed);
            if delete_on_fail {
                self.remove_key(si, hash, key);
            }
            return WriteResult::fail(StoreResult::TooLarge);
        }
        let r = self.with_room(si, now, |sh, live, _| {
            let found = self.lookup(sh, hash, key, live, false).ok();
            let mut stale_store = false;
            match (mode, found) {
                (SetMode::Add, Some(i)) => {
                    let it = sh.item_mut(i);
                    it.set_bits(it.bits() | BIT_VISITED);
                    it.set_atime(now);
                    return Ok(WriteResult::fail(StoreResult::NotStored));
                }
                (_, None) if cas_cmd => return Ok(WriteResult::fail(StoreResult::NotFound)),
                (SetMode::Add | SetMode::Set, None) => {}
                (SetMode::Append | SetMode::Prepend, None) if w.vivify.is_some() => {}
                (_, None) => return Ok(WriteResult::fail(StoreResult::NotStored)),
                (_, Some(i)) => {
                    if let Some(c) = cas {
                        let cur = sh.item(i).cas();
                        if cur != c {
                            if cas_cmd && w.invalidate && c < cur {
                                stale_store = true;
                            } else {
                                return Ok(WriteResult::fail(StoreResult::Exists));
                            }
                        }
                    }
                }
            }

            // Build the new item outside the table.
            let (new_flags, new_exptime, vlen, bits) = match found {
                Some(i) if concat => {
                    let old = sh.item(i);
                    (
                        old.flags(),
                        old.exptime(),
                        old.value_len() + value.len(),
                        BIT_VISITED,
                    )
                }
                Some(i) if stale_store => {
                    let old = sh.item(i);
                    let keep = old.bits() & BIT_WIN_SENT;
                    (
                        w.flags,
                        old.exptime(),
                        value.len(),
                        BIT_VISITED | BIT_STALE | keep,
                    )
                }
                None if concat => (
                    w.flags,
                    w.vivify.unwrap_or(w.exptime),
                    value.len(),
                    BIT_VISITED,
                ),
                _ => (w.flags, w.exptime, value.len(), BIT_VISITED),
            };
            if concat && too_large(key.len(), vlen, self.item_size_max) {
                self.store_too_large.fetch_add(1, Ordering::Relaxed);
                return Ok(WriteResult::fail(StoreResult::TooLarge));
            }
            let Some(mut it) = ItemPtr::alloc(key, vlen) else {
                return Err(0);
            };
            match (mode, found) {
                (SetMode::Append, Some(i)) => {
                    let old = sh.item(i).value();
                    let dst = it.value_mut();
                    dst[..old.len()].copy_from_slice(old);
                    dst[old.len()..].copy_from_slice(value);
                }
                (SetMode::Prepend, Some(i)) => {
                    let old = sh.item(i).value();
                    let dst = it.value_mut();
                    dst[..value.len()].copy_from_slice(value);
                    dst[value.len()..].copy_from_slice(old);
                }
                _ => it.value_mut().copy_from_slice(value),
            }
            it.set_flags(new_flags);
            it.set_exptime(new_exptime);
            it.set_atime(now);
            it.set_bits(bits);
            let v = self.commit(sh, hash, found, it, live, w.new_version)?;
            Ok(WriteResult {
                result: StoreResult::Stored,
                version: v,
                size: vlen,
            })
        });
        if let Some(r) = r {
            return r;
        }
        self.store_no_memory.fetch_add(1, Ordering::Relaxed);
        if delete_on_fail {
            self.remove_key(si, hash, key);
        }
        WriteResult::fail(StoreResult::NoMemory)
    }

    /// Meta delete. `NotFound` if missing, `Exists` if `compare_cas`
    /// mismatches. Otherwise `Removed`, after:
    /// * `invalidate`: the item stays, marked stale, its win token reset, a
    ///   new version (`new_version` or fresh), exptime = `ttl` if given;
    ///   with `remove_value` its value is also emptied (flags kept).
    /// * `remove_value` alone: the value is emptied (flags and exptime
    ///   kept), new version, not stale, win token reset.
    /// * neither: the item is deleted.
    pub fn remove(&self, key: &[u8], now: u32, d: &RemoveOptions) -> RemoveResult {
        self.remove_versioned(key, now, d).0
    }

    /// [`Store::remove`], also returning the version it used (0 unless
    /// `Removed`): for a deletion, the fresh version of the tombstone it
    /// recorded (replicate as a delete); with `invalidate` / `remove_value`,
    /// the version of the item that stays (replicate its new state, e.g.
    /// from [`Store::read_for_replication`]).
    pub fn remove_versioned(&self, key: &[u8], now: u32, d: &RemoveOptions) -> (RemoveResult, u64) {
        let hash = self.hash(key);
        let live = self.liveness(now);
        let mut sh = self.shard(self.shard_index(hash)).lock();
        let Ok(idx) = self.lookup(&mut sh, hash, key, &live, false) else {
            return (RemoveResult::NotFound, 0);
        };
        if let Some(c) = d.compare_cas {
            if sh.item(idx).cas() != c {
                return (RemoveResult::Exists, 0);
            }
        }
        if !d.invalidate && !d.remove_value {
            sh.remove_at(idx, &self.mem);
            let v = self.clock.next();
            self.record_tomb(&mut sh, hash, key, v, now);
            return (RemoveResult::Removed, v);
        }
        if d.remove_value {
            self.empty_value(&mut sh, idx);
        }
        // memcached's `x` swaps in a fresh empty item that keeps the old CAS; `I` bumps it.
        let v = match (d.new_version, d.invalidate) {
            (Some(v), _) => v,
            (None, true) => self.clock.next(),
            (None, false) => sh.item(idx).cas(),
        };
        let set_exp = if d.remove_value {
            Some(d.ttl.unwrap_or(0))
        } else {
            d.ttl
        };
        if set_exp.is_some() {
            sh.clean_scan = None;
        }
        let it = sh.item_mut(idx);
        if d.remove_value {
            it.set_flags(d.flags);
        }
        it.set_cas(v);
        let bits = it.bits() & !(BIT_WIN_SENT | BIT_STALE);
        it.set_bits(if d.invalidate { bits | BIT_STALE } else { bits });
        if let Some(e) = set_exp {
            it.set_exptime(e);
        }
        (RemoveResult::Removed, v)
    }

    /// Replace the value of the item in bucket `idx` by an empty one,
    /// keeping every header field (the caller sets version and bits).
    fn empty_value(&self, sh: &mut Shard, idx: usize) {
        let old = sh.item(idx);
        if old.value_len() == 0 {
            return;
        }
        match ItemPtr::alloc(old.key(), 0) {
            Some(mut it) => {
                it.set_flags(old.flags());
                it.set_exptime(old.exptime());
                it.set_atime(old.atime());
                it.set_cas(old.cas());
                it.set_bits(old.bits());
                // Smaller than the old chunk: no room to make.
                sh.replace_at(idx, it, &self.mem, true);
            }
            None => {
                // malloc failure: shrink in place (the chunk keeps its size).
                let len = old.value_len();
                sh.item_mut(idx).shrink_value_len(0);
                sh.bytes -= len as u64;
            }
        }
    }

    /// Meta arithmetic. Missing: with `vivify: Some((initial, exp))` the
    /// item is created holding `initial` (decimal, flags 0, exptime `exp`,
    /// version `new_version` or fresh) and the delta is NOT applied
    /// (`Created`), as memcached does; else `NotFound` (also when there is
    /// no memory for the new item). `Exists` if `compare_cas` mismatches,
    /// `NonNumeric` unless the value is 1..=20 digits fitting a u64. Else
    /// incr wraps mod 2^64, decr stops at 0, the item gets a new version
    /// (`new_version` or fresh) and `touch` as its exptime (`Applied`);
    /// flags and the stale/win bits are kept. Growth of the value (at most
    /// 19 bytes) is committed even over budget, after best-effort eviction.
    pub fn arith_ext(&self, key: &[u8], now: u32, a: &ArithOptions) -> ArithOutcome {
        let hash = self.hash(key);
        let si = self.shard_index(hash);
        let r = self.with_room(si, now, |sh, live, _| {
            let idx = match self.lookup(sh, hash, key, live, false) {
                Ok(idx) => idx,
                Err(_) => {
                    let Some((initial, exptime)) = a.vivify else {
                        return Ok(ArithOutcome::status(ArithStatus::NotFound));
                    };
                    let mut buf = [0u8; 20];
                    let digits = format_decimal(initial, &mut buf);
                    let Some(mut it) = ItemPtr::alloc(key, digits.len()) else {
                        return Err(0);
                    };
                    it.value_mut().copy_from_slice(digits);
                    // memcached applies T after creating the item too.
                    let exptime = a.touch.unwrap_or(exptime);
                    it.set_exptime(exptime);
                    it.set_atime(now);
                    it.set_bits(BIT_VISITED);
                    let v = self.commit(sh, hash, None, it, live, a.new_version)?;
                    return Ok(ArithOutcome {
                        status: ArithStatus::Created,
                        value: initial,
                        version: v,
                        exptime,
                        prev_exptime: 0,
                    });
                }
            };
            Ok(self.arith_hit(sh, idx, key, now, a, live))
        });
        r.unwrap_or_else(|| {
            self.store_no_memory.fetch_add(1, Ordering::Relaxed);
            ArithOutcome::status(ArithStatus::NotFound)
        })
    }

    fn arith_hit(
        &self,
        sh: &mut Shard,
        idx: usize,
        key: &[u8],
        now: u32,
        a: &ArithOptions,
        live: &Liveness,
    ) -> ArithOutcome {
        if let Some(c) = a.compare_cas {
            if sh.item(idx).cas() != c {
                return ArithOutcome::status(ArithStatus::Exists);
            }
        }
        let Some(cur) = parse_decimal(sh.item(idx).value()) else {
            return ArithOutcome::status(ArithStatus::NonNumeric);
        };
        let res = if a.incr {
            cur.wrapping_add(a.delta)
        } else {
            cur.saturating_sub(a.delta)
        };
        let v = a.new_version.unwrap_or_else(|| self.clock.next());
        let prev_exptime = sh.item(idx).exptime();
        let base_version = sh.item(idx).cas();
        if !self.set_number(sh, idx, key, res, v, a.touch, now, live) {
            // malloc failure: the old value is untouched.
            return ArithOutcome::status(ArithStatus::NotFound);
        }
        if self.track_counters {
            // Record this node's contribution (decrements only as far as they went).
            let mut state = match sh.counters.get(key, base_version) {
                Some(s) => s.clone(),
                None => crate::counter::CounterState {
                    base_version,
                    base_value: cur,
                    ..Default::default()
                },
            };
            let e = state.entry(self.clock.node_id());
            if a.incr {
                e.1 = e.1.wrapping_add(a.delta);
            } else {
                e.2 = e.2.wrapping_add(cur - res);
            }
            state.item_version = v;
            sh.counters.put(key, state, &self.mem);
        }
        ArithOutcome {
            status: ArithStatus::Applied,
            value: res,
            version: v,
            exptime: sh.item(idx).exptime(),
            prev_exptime,
        }
    }

    /// Replace the value of the item in bucket `idx` by the decimal `n`, with version `v`
    /// (and exptime `touch` if given), in place when it fits. False on malloc failure.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set_number(
        &self,
        sh: &mut Shard,
        idx: usize,
        key: &[u8],
        n: u64,
        v: u64,
        touch: Option<u32>,
        now: u32,
        live: &Liveness,
    ) -> bool {
        let mut buf = [0u8; 20];
        let digits = format_decimal(n, &mut buf);
        let old_len = sh.item(idx).value_len();
        if touch.is_some() {
            sh.clean_scan = None;
        }
        if digits.len() <= old_len {
            let it = sh.item_mut(idx);
            it.value_mut()[..digits.len()].copy_from_slice(digits);
            it.shrink_value_len(digits.len());
            it.set_cas(v);
            it.set_atime(now);
            it.set_bits(it.bits() | BIT_VISITED);
            if let Some(e) = touch {
                it.set_exptime(e);
            }
            sh.bytes -= (old_len - digits.len()) as u64;
        } else {
            let Some(mut it) = ItemPtr::alloc(key, digits.len()) else {
                return false;
            };
            it.value_mut().copy_from_slice(digits);
            let old = sh.item(idx);
            it.set_flags(old.flags());
            it.set_exptime(touch.unwrap_or(old.exptime()));
            it.set_bits(old.bits() | BIT_VISITED);
            it.set_atime(now);
            it.set_cas(v);
            let grow = it.alloc_size().saturating_sub(old.alloc_size());
            let _ = self.make_room_local(sh, grow, live, Some(idx));
            sh.replace_at(idx, it, &self.mem, false);
        }
        true
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;

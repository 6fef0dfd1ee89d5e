//! The one executor behind every protocol.
//!
//! Classic text commands, meta commands and binary opcodes all arrive here as a
//! [`MetaRequest`] — the meta form is the most general, so each of the others is a special
//! case of it (`gets k` is `mg k v f c` with a different reply shape). This module applies
//! memcached's semantics against the store once (TTL rules, CAS, stats counters), and hands
//! the result to a [`Reply`], which each protocol implements to write its own bytes.
//!
//! A hit's value is passed to the reply while the store's shard lock is held, so it is
//! copied exactly once, straight into the connection's output buffer.

use memha_protocol::meta;
use memha_protocol::request::{ArithMode, MetaCmd, SetMode as MetaSetMode};
use memha_protocol::{ItemInfo, MetaRequest, Outcome, Status};
use memha_store::{
    ArithOptions, ArithStatus, DeleteResult, Lookup, ReadOptions, RemoveOptions, RemoveResult,
    SetMode, StoreResult, WriteOptions,
};

use crate::shared::{DetailOp, Shared};
use crate::stats::Counters;

/// Thirty days: memcached's line between relative and absolute expiry times.
const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Writes a protocol's reply for one executed request.
pub trait Reply {
    /// `value` is the item's value when the request asked for it and there is one.
    fn reply(&mut self, req: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>);
}

/// How a read is counted and what its reply can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadKind {
    /// Counted in `cmd_get`/`get_hits`/`get_misses`.
    pub get: bool,
    /// Counted in `cmd_touch`/`touch_hits`/`touch_misses`.
    pub touch: bool,
    /// The reply can carry the recache flags (meta only): only then may the read take the
    /// win token of a stale item.
    pub tokens: bool,
}

impl ReadKind {
    pub const GET: ReadKind = ReadKind {
        get: true,
        touch: false,
        tokens: false,
    };
    pub const TOUCH: ReadKind = ReadKind {
        get: false,
        touch: true,
        tokens: false,
    };
    pub const GET_AND_TOUCH: ReadKind = ReadKind {
        get: true,
        touch: true,
        tokens: false,
    };

    /// A meta `mg`: a get, also a touch when it sets a TTL.
    pub fn meta(req: &MetaRequest<'_>) -> ReadKind {
        ReadKind {
            get: true,
            touch: req.ttl.is_some(),
            tokens: true,
        }
    }
}

/// Delete `key` because a write to it failed (too large, no memory): a client reading after
/// a failed write must not see the old value — on this node or, through replication, on any.
pub fn drop_after_failed_write(shared: &Shared, key: &[u8], now: u32) {
    let (result, version) = shared.store.delete_versioned(key, None, now);
    if let (DeleteResult::Deleted, Some(repl)) = (result, &shared.repl) {
        repl.capture_delete(key, version);
    }
}

/// `flush_all [delay]`: `at` is the absolute time it takes effect (None = now).
pub fn flush_all(shared: &Shared, at: Option<u32>) {
    let floor = shared.store.flush_all(at);
    if let Some(repl) = &shared.repl {
        repl.capture_flush(floor, at.unwrap_or(0));
    }
}

/// Execute one request and reply through `reply`.
pub fn execute(
    shared: &Shared,
    c: &mut Counters,
    req: &MetaRequest<'_>,
    kind: ReadKind,
    now: u32,
    reply: &mut impl Reply,
) {
    match req.cmd {
        MetaCmd::Get => read(shared, c, req, kind, now, reply),
        MetaCmd::Set => write(shared, c, req, now, reply),
        MetaCmd::Delete => remove(shared, c, req, now, reply),
        MetaCmd::Arith => arith(shared, c, req, now, reply),
    }
}

fn read(
    shared: &Shared,
    c: &mut Counters,
    req: &MetaRequest<'_>,
    kind: ReadKind,
    now: u32,
    reply: &mut impl Reply,
) {
    let key = req.key.as_bytes();
    let opts = ReadOptions {
        touch: req.ttl.map(|t| abs_exptime(t, now)),
        bump: !req.no_bump,
        vivify: req.vivify.map(|t| abs_exptime(t, now)),
        recache: req.recache.map(|r| r.clamp(0, u32::MAX as i64) as u32),
        new_version: req.new_cas,
        tokens: kind.tokens,
    };
    let cas_enabled = !shared.config.cas_disabled;
    // meta applies flags in request order: `t` before `T`/`N` shows the TTL before them.
    let ttl_before = meta::ttl_reported_before_update(req);
    let found = shared.store.read(key, now, &opts, |view, flags| {
        let cas = if cas_enabled { view.cas } else { 0 };
        let exptime = if ttl_before {
            view.prev_exptime
        } else {
            view.exptime
        };
        let info = ItemInfo {
            flags: view.flags,
            cas,
            ttl: ttl_left(exptime, now),
            last_access: u64::from(now.saturating_sub(view.atime)),
            hit_before: view.fetched,
            size: view.value.len(),
            number: 0,
        };
        // mg C<cas>: the client already has this version; skip the value.
        let send_value = req.ret_value && req.compare_cas.is_none_or(|c| c != view.cas);
        let outcome = Outcome {
            status: Status::Hit,
            item: Some(info),
            won: flags.won,
            stale: flags.stale,
            lost: flags.lost,
        };
        reply.reply(req, &outcome, send_value.then_some(view.value));
        flags.vivified
    });
    let hit = matches!(found, Lookup::Hit(false));
    if let Some(repl) = &shared.repl {
        match found {
            // A vivified stub is a new item.
            Lookup::Hit(true) => repl.capture_set(key),
            Lookup::Hit(false) if req.ttl.is_some() => repl.capture_touch(key),
            _ => {}
        }
    }
    if kind.touch {
        c.cmd_touch += 1;
        if hit {
            c.touch_hits += 1;
        } else {
            c.touch_misses += 1;
        }
    }
    if kind.get {
        c.cmd_get += 1;
        match found {
            Lookup::Hit(false) => c.get_hits += 1,
            // A vivified stub was a miss as far as the cache's hit rate goes.
            Lookup::Hit(true) | Lookup::Miss => c.get_misses += 1,
            Lookup::Expired => {
                c.get_misses += 1;
                c.get_expired += 1;
            }
            Lookup::Flushed => {
                c.get_misses += 1;
                c.get_flushed += 1;
            }
        }
    }
    shared.detail.record(key, DetailOp::Get { hit });
    if !matches!(found, Lookup::Hit(_)) {
        reply.reply(req, &Outcome::status(Status::Miss), None);
    }
}

fn write(
    shared: &Shared,
    c: &mut Counters,
    req: &MetaRequest<'_>,
    now: u32,
    reply: &mut impl Reply,
) {
    let key = req.key.as_bytes();
    c.cmd_set += 1;
    let exptime = abs_exptime(req.ttl.unwrap_or(0), now);
    let mode = match req.set_mode {
        MetaSetMode::Set => SetMode::Set,
        MetaSetMode::Add => SetMode::Add,
        MetaSetMode::Replace => SetMode::Replace,
        MetaSetMode::Append => SetMode::Append,
        MetaSetMode::Prepend => SetMode::Prepend,
    };
    let flags = req.client_flags.unwrap_or(0);
    let w = WriteOptions {
        mode,
        value: req.data,
        flags,
        exptime,
        compare_cas: req.compare_cas,
        new_version: req.new_cas,
        invalidate: req.invalidate,
        vivify: req.vivify.map(|t| abs_exptime(t, now)),
    };
    let r = shared.store.write(key, now, &w);
    if let Some(repl) = &shared.repl {
        match (r.result, mode) {
            // A plain set's new state is what the client sent: no need to read it back.
            (StoreResult::Stored, SetMode::Set | SetMode::Add | SetMode::Replace)
                if !req.invalidate =>
            {
                repl.capture_known(key, req.data, flags, exptime, r.version)
            }
            (StoreResult::Stored, _) => repl.capture_set(key),
            // The store dropped the old value of a failed plain set: so must the peers.
            (StoreResult::TooLarge | StoreResult::NoMemory, SetMode::Set) => {
                repl.capture_delete(key, shared.store.next_version())
            }
            _ => {}
        }
    }
    let status = match r.result {
        StoreResult::Stored => {
            if req.compare_cas.is_some() {
                c.cas_hits += 1;
            }
            Status::Stored
        }
        StoreResult::NotStored => Status::NotStored,
        StoreResult::Exists => {
            c.cas_badval += 1;
            Status::Exists
        }
        StoreResult::NotFound => {
            c.cas_misses += 1;
            Status::NotFound
        }
        StoreResult::TooLarge => {
            c.store_too_large += 1;
            Status::TooLarge
        }
        StoreResult::NoMemory => {
            c.store_no_memory += 1;
            Status::NoMemory
        }
    };
    shared.detail.record(key, DetailOp::Set);
    let item = (status == Status::Stored).then(|| ItemInfo {
        flags,
        cas: visible_cas(shared, r.version),
        ttl: ttl_left(exptime, now),
        size: r.size,
        ..ItemInfo::default()
    });
    reply_with(reply, req, status, item);
}

fn remove(
    shared: &Shared,
    c: &mut Counters,
    req: &MetaRequest<'_>,
    now: u32,
    reply: &mut impl Reply,
) {
    let key = req.key.as_bytes();
    let d = RemoveOptions {
        compare_cas: req.compare_cas,
        new_version: req.new_cas,
        invalidate: req.invalidate,
        ttl: if req.invalidate || req.remove_value {
            req.ttl.map(|t| abs_exptime(t, now))
        } else {
            None
        },
        remove_value: req.remove_value,
        flags: req.client_flags.unwrap_or(0),
    };
    let (result, version) = shared.store.remove_versioned(key, now, &d);
    if let (RemoveResult::Removed, Some(repl)) = (result, &shared.repl) {
        if d.invalidate || d.remove_value {
            // The item stays, changed: send its new state.
            repl.capture_set(key);
        } else {
            repl.capture_delete(key, version);
        }
    }
    let status = match result {
        RemoveResult::Removed => {
            c.delete_hits += 1;
            Status::Deleted
        }
        RemoveResult::NotFound => {
            c.delete_misses += 1;
            Status::NotFound
        }
        RemoveResult::Exists => Status::Exists,
    };
    shared.detail.record(key, DetailOp::Delete);
    reply.reply(req, &Outcome::status(status), None);
}

fn arith(
    shared: &Shared,
    c: &mut Counters,
    req: &MetaRequest<'_>,
    now: u32,
    reply: &mut impl Reply,
) {
    let key = req.key.as_bytes();
    let incr = req.arith_mode == ArithMode::Incr;
    let a = ArithOptions {
        incr,
        delta: req.delta,
        compare_cas: req.compare_cas,
        new_version: req.new_cas,
        vivify: req.vivify.map(|t| (req.initial, abs_exptime(t, now))),
        touch: req.ttl.map(|t| abs_exptime(t, now)),
    };
    let r = shared.store.arith_ext(key, now, &a);
    if let Some(repl) = &shared.repl {
        match r.status {
            // Increments travel as this node's contribution, so concurrent ones add up.
            ArithStatus::Applied => repl.capture_arith(key),
            // A counter created by `ma N` / binary incr with an initial value is a plain write.
            ArithStatus::Created => repl.capture_set(key),
            _ => {}
        }
    }
    let (hits, misses) = if incr {
        (&mut c.incr_hits, &mut c.incr_misses)
    } else {
        (&mut c.decr_hits, &mut c.decr_misses)
    };
    let status = match r.status {
        ArithStatus::Applied => {
            *hits += 1;
            Status::Hit
        }
        ArithStatus::Created => {
            *misses += 1;
            Status::Hit
        }
        ArithStatus::NotFound => {
            *misses += 1;
            Status::NotFound
        }
        ArithStatus::NonNumeric => Status::NonNumeric,
        ArithStatus::Exists => Status::Exists,
    };
    let item = (status == Status::Hit).then(|| ItemInfo {
        cas: visible_cas(shared, r.version),
        ttl: if meta::ttl_reported_before_update(req) {
            ttl_left(r.prev_exptime, now)
        } else {
            ttl_left(r.exptime, now)
        },
        number: r.value,
        ..ItemInfo::default()
    });
    reply_with(reply, req, status, item);
}

/// A status reply carrying the item's facts (stores, arithmetic).
fn reply_with(
    reply: &mut impl Reply,
    req: &MetaRequest<'_>,
    status: Status,
    item: Option<ItemInfo>,
) {
    let outcome = Outcome {
        item,
        ..Outcome::status(status)
    };
    reply.reply(req, &outcome, None);
}

/// The CAS unique a client sees: the version, or 0 with `-C`.
fn visible_cas(shared: &Shared, version: u64) -> u64 {
    if shared.config.cas_disabled {
        0
    } else {
        version
    }
}

/// Seconds of life left, -1 for an item that never expires.
pub fn ttl_left(exptime: u32, now: u32) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::from(exptime) - i64::from(now)
    }
}

/// memcached's expiry rules: 0 = never, negative = already expired, up to 30 days = relative
/// seconds, beyond = an absolute Unix time. Returns an absolute Unix time (0 = never).
pub fn abs_exptime(exptime: i64, now: u32) -> u32 {
    if exptime == 0 {
        0
    } else if exptime < 0 {
        // Any time in the past: the item is stored and misses at once.
        1
    } else if exptime <= REALTIME_MAXDELTA {
        now.saturating_add(exptime as u32)
    } else {
        // An absolute time. One at or before now expires at once but must not mean "never".
        (exptime as u64).min(u32::MAX as u64).max(1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let now = 1_700_000_000;
        assert_eq!(abs_exptime(0, now), 0);
        assert_eq!(abs_exptime(-1, now), 1);
        assert_eq!(abs_exptime(10, now), now + 10);
        assert_eq!(abs_exptime(REALTIME_MAXDELTA, now), now + 2_592_000);
        assert_eq!(abs_exptime(REALTIME_MAXDELTA + 1, now), 2_592_001);
        assert_eq!(ttl_left(0, now), -1);
        assert_eq!(ttl_left(now + 5, now), 5);
    }
}

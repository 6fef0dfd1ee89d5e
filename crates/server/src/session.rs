//! One client connection's protocol state, without the socket.
//!
//! The connection task hands [`Session::process`] whatever bytes it has read; the session
//! parses every complete request in them, runs each against the store and appends the replies
//! to one output buffer, which the task then writes with a single `write`. Keeping this free
//! of I/O makes the whole request path testable with plain byte slices, and is what lets a
//! pipelined batch cost one read and one write instead of one syscall per request.

use std::sync::Arc;

use memha_protocol::reply::push_u64;
use memha_protocol::text::{self, Limits, Parsed};
use memha_protocol::{request, Command, StoreMode};
use memha_store::{ArithResult, DeleteResult, Lookup, SetMode, StoreResult};

use crate::config::BindingProtocol;
use crate::shared::{DetailOp, Shared, Stop};
use crate::stats::Counters;
use crate::stats_cmd;

/// Flush the output to the socket once it holds this much, before parsing further, so a
/// client that pipelines many large gets (or never reads) cannot grow it without bound.
pub const OUT_HIGH_WATER: usize = 256 * 1024;

/// Thirty days: memcached's line between relative and absolute expiry times.
const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// What the connection task should do after a call to [`Session::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Everything complete was handled: write the output, then read more.
    NeedInput,
    /// Stopped early (output high water, or `-R` requests handled): write the output, let
    /// other connections run, then call `process` again with the unconsumed bytes.
    Yield,
    /// Write the output, then close.
    Close,
}

/// Per-connection protocol state.
pub struct Session {
    shared: Arc<Shared>,
    pub counters: Counters,
    limits: Limits,
    /// Bytes of a refused data block still to be discarded.
    swallow: usize,
    /// Offset into the key list of a multiget that was cut short by the output high water.
    get_resume: usize,
    authenticated: bool,
    /// Protocol of this connection, decided by its first byte (`-B auto`) or fixed by `-B`.
    proto: Proto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Undecided,
    Text,
    Binary,
}

/// First byte of every binary-protocol request.
const BINARY_REQUEST_MAGIC: u8 = 0x80;

impl Session {
    pub fn new(shared: Arc<Shared>) -> Session {
        let authenticated = shared.auth.is_none();
        let shared_protocol = shared.config.protocol;
        Session {
            limits: Limits {
                max_value: shared.max_value(),
            },
            shared,
            counters: Counters::default(),
            swallow: 0,
            get_resume: 0,
            authenticated,
            proto: match shared_protocol {
                BindingProtocol::Ascii => Proto::Text,
                BindingProtocol::Binary => Proto::Binary,
                BindingProtocol::Auto => Proto::Undecided,
            },
        }
    }

    /// Handle the requests at the front of `input`. Returns how many bytes were consumed
    /// (the caller drops them) and what to do next. Replies are appended to `out`.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>, now: u32) -> (usize, Control) {
        if self.proto != Proto::Text && !input.is_empty() {
            let binary = input[0] == BINARY_REQUEST_MAGIC;
            match (self.proto, binary) {
                (Proto::Undecided, false) => self.proto = Proto::Text,
                // The binary protocol is not served yet: close rather than answer binary
                // requests with text, which a binary client would misread.
                (_, true) => return (0, Control::Close),
                // `-B binary` and a request that is not binary: a broken client.
                (Proto::Binary, false) => return (0, Control::Close),
                (Proto::Text, _) => unreachable!(),
            }
        }
        let mut pos = 0;
        let mut handled = 0;
        loop {
            if self.swallow > 0 {
                let n = self.swallow.min(input.len() - pos);
                self.swallow -= n;
                pos += n;
                if self.swallow > 0 {
                    return (pos, Control::NeedInput);
                }
            }
            if pos == input.len() {
                return (pos, Control::NeedInput);
            }
            if handled >= self.shared.config.reqs_per_event || out.len() >= OUT_HIGH_WATER {
                self.counters.conn_yields +=
                    u64::from(handled >= self.shared.config.reqs_per_event);
                return (pos, Control::Yield);
            }
            let rest = &input[pos..];
            match text::parse(rest, &self.limits) {
                Parsed::Incomplete { .. } => return (pos, Control::NeedInput),
                Parsed::Close => return (pos, Control::Close),
                Parsed::Error {
                    reply,
                    consumed,
                    swallow,
                } => {
                    self.counters.malformed_requests += 1;
                    out.extend_from_slice(reply.as_bytes());
                    pos += consumed;
                    self.swallow = swallow;
                }
                Parsed::TooLarge {
                    key,
                    noreply,
                    consumed,
                    swallow,
                } => {
                    if !self.authenticated {
                        out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
                    } else {
                        // A failed store must not leave the old value behind: a client
                        // that reads after a failed write would see stale data.
                        self.shared.store.delete(key, None, now);
                        self.counters.cmd_set += 1;
                        self.counters.store_too_large += 1;
                        if !noreply {
                            out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                        }
                    }
                    pos += consumed;
                    self.swallow = swallow;
                }
                Parsed::Request { cmd, consumed } => {
                    handled += 1;
                    match self.execute(cmd, out, now) {
                        Step::Done => pos += consumed,
                        Step::Partial => return (pos, Control::Yield),
                        Step::Close => return (pos + consumed, Control::Close),
                    }
                }
            }
        }
    }

    fn execute(&mut self, cmd: Command<'_>, out: &mut Vec<u8>, now: u32) -> Step {
        if !self.authenticated {
            return self.login(cmd, out);
        }
        let shared = &*self.shared;
        let c = &mut self.counters;
        match cmd {
            Command::Get {
                keys,
                with_cas,
                touch,
            } => return self.get(keys, with_cas, touch, out, now),
            Command::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                cas,
                noreply,
            } => {
                c.cmd_set += 1;
                let exptime = abs_exptime(exptime, now);
                let (set_mode, cas) = match mode {
                    StoreMode::Set => (SetMode::Set, None),
                    StoreMode::Add => (SetMode::Add, None),
                    StoreMode::Replace => (SetMode::Replace, None),
                    StoreMode::Append => (SetMode::Append, None),
                    StoreMode::Prepend => (SetMode::Prepend, None),
                    // With -C every item's unique reads as 0, so a cas only needs the item.
                    StoreMode::Cas if shared.config.cas_disabled => (SetMode::Replace, None),
                    StoreMode::Cas => (SetMode::Set, Some(cas)),
                };
                let result = shared
                    .store
                    .store(set_mode, key, flags, exptime, data, cas, now);
                let reply: &[u8] = match (mode, result) {
                    (_, StoreResult::Stored) => {
                        if mode == StoreMode::Cas {
                            c.cas_hits += 1;
                        }
                        b"STORED\r\n"
                    }
                    (StoreMode::Cas, StoreResult::NotStored) => {
                        c.cas_misses += 1;
                        b"NOT_FOUND\r\n"
                    }
                    (_, StoreResult::NotStored) => b"NOT_STORED\r\n",
                    (_, StoreResult::Exists) => {
                        c.cas_badval += 1;
                        b"EXISTS\r\n"
                    }
                    (_, StoreResult::NotFound) => {
                        c.cas_misses += 1;
                        b"NOT_FOUND\r\n"
                    }
                    (_, StoreResult::TooLarge) => {
                        c.store_too_large += 1;
                        b"SERVER_ERROR object too large for cache\r\n"
                    }
                    (_, StoreResult::NoMemory) => {
                        c.store_no_memory += 1;
                        b"SERVER_ERROR out of memory storing object\r\n"
                    }
                };
                shared.detail.record(key, DetailOp::Set);
                if !noreply {
                    out.extend_from_slice(reply);
                }
            }
            Command::Delete { key, noreply } => {
                let reply: &[u8] = match shared.store.delete(key, None, now) {
                    DeleteResult::Deleted => {
                        c.delete_hits += 1;
                        b"DELETED\r\n"
                    }
                    DeleteResult::NotFound | DeleteResult::Exists => {
                        c.delete_misses += 1;
                        b"NOT_FOUND\r\n"
                    }
                };
                shared.detail.record(key, DetailOp::Delete);
                if !noreply {
                    out.extend_from_slice(reply);
                }
            }
            Command::Arith {
                key,
                incr,
                delta,
                noreply,
            } => {
                let result = shared.store.arith(key, incr, delta, now);
                let (hits, misses) = if incr {
                    (&mut c.incr_hits, &mut c.incr_misses)
                } else {
                    (&mut c.decr_hits, &mut c.decr_misses)
                };
                match result {
                    ArithResult::Value(v) => {
                        *hits += 1;
                        if !noreply {
                            push_u64(out, v);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    ArithResult::NotFound => {
                        *misses += 1;
                        if !noreply {
                            out.extend_from_slice(b"NOT_FOUND\r\n");
                        }
                    }
                    ArithResult::NonNumeric => {
                        if !noreply {
                            out.extend_from_slice(
                                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                            );
                        }
                    }
                }
            }
            Command::Touch {
                key,
                exptime,
                noreply,
            } => {
                c.cmd_touch += 1;
                let hit = shared.store.touch(key, abs_exptime(exptime, now), now);
                let reply: &[u8] = if hit {
                    c.touch_hits += 1;
                    b"TOUCHED\r\n"
                } else {
                    c.touch_misses += 1;
                    b"NOT_FOUND\r\n"
                };
                if !noreply {
                    out.extend_from_slice(reply);
                }
            }
            Command::FlushAll { delay, noreply } => {
                if shared.config.flush_disabled {
                    out.extend_from_slice(b"CLIENT_ERROR flush_all not allowed\r\n");
                    return Step::Done;
                }
                c.cmd_flush += 1;
                if delay > 0 {
                    shared.store.flush_all(Some(abs_exptime(delay, now)));
                } else {
                    shared.store.flush_all(None);
                }
                if !noreply {
                    out.extend_from_slice(b"OK\r\n");
                }
            }
            Command::Version => {
                out.extend_from_slice(b"VERSION ");
                out.extend_from_slice(crate::VERSION.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Command::Verbosity { noreply } => {
                if !noreply {
                    out.extend_from_slice(b"OK\r\n");
                }
            }
            Command::Quit => return Step::Close,
            Command::Shutdown { graceful } => {
                if !shared.config.shutdown_enabled {
                    out.extend_from_slice(b"SERVER_ERROR: shutdown not enabled\r\n");
                    return Step::Done;
                }
                tracing::info!(graceful, "shutdown requested by a client");
                shared.stop(if graceful { Stop::Graceful } else { Stop::Now });
                return Step::Close;
            }
            Command::CacheMemlimit { megabytes, noreply } => {
                if megabytes < 8 {
                    out.extend_from_slice(
                        b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
                    );
                    return Step::Done;
                }
                let bytes =
                    usize::try_from(megabytes.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
                shared.store.set_memory_limit(bytes);
                tracing::info!(megabytes, "memory limit changed by cache_memlimit");
                if !noreply {
                    out.extend_from_slice(b"OK\r\n");
                }
            }
            Command::Stats { args } => {
                stats_cmd::stats(shared, &mut self.counters, args, out, now);
            }
            Command::AdminNoop { noreply } => {
                if !noreply {
                    out.extend_from_slice(b"OK\r\n");
                }
            }
        }
        Step::Done
    }

    /// get/gets/gat/gats, resumable when the output grows past the high water.
    fn get(
        &mut self,
        keys: &[u8],
        with_cas: bool,
        touch: Option<i64>,
        out: &mut Vec<u8>,
        now: u32,
    ) -> Step {
        let shared = &*self.shared;
        let c = &mut self.counters;
        let touch = touch.map(|t| abs_exptime(t, now));
        let show_cas = with_cas && !shared.config.cas_disabled;
        let start = self.get_resume;
        for key in request::keys(&keys[start..]) {
            if out.len() >= OUT_HIGH_WATER {
                // SAFETY of the arithmetic: `key` is a subslice of `keys`.
                self.get_resume = key.as_ptr() as usize - keys.as_ptr() as usize;
                return Step::Partial;
            }
            let found = shared.store.get(key, now, touch, |item| {
                let cas = if show_cas {
                    Some(item.cas)
                } else if with_cas {
                    Some(0)
                } else {
                    None
                };
                text_value(out, item.key, item.flags, item.value, cas);
            });
            let hit = matches!(found, Lookup::Hit(()));
            if touch.is_some() {
                c.cmd_touch += 1;
                if hit {
                    c.touch_hits += 1;
                } else {
                    c.touch_misses += 1;
                }
            }
            c.cmd_get += 1;
            match found {
                Lookup::Hit(()) => c.get_hits += 1,
                Lookup::Miss => c.get_misses += 1,
                Lookup::Expired => {
                    c.get_misses += 1;
                    c.get_expired += 1;
                }
                Lookup::Flushed => {
                    c.get_misses += 1;
                    c.get_flushed += 1;
                }
            }
            shared.detail.record(key, DetailOp::Get { hit });
        }
        self.get_resume = 0;
        out.extend_from_slice(b"END\r\n");
        Step::Done
    }

    /// Before ASCII authentication only a login `set` is accepted.
    fn login(&mut self, cmd: Command<'_>, out: &mut Vec<u8>) -> Step {
        let Command::Store { data, .. } = cmd else {
            out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
            return Step::Done;
        };
        self.counters.auth_cmds += 1;
        let table = self
            .shared
            .auth
            .as_ref()
            .expect("login only runs with auth on");
        if table.check(data) {
            self.authenticated = true;
            out.extend_from_slice(b"STORED\r\n");
        } else {
            self.counters.auth_errors += 1;
            out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        }
        Step::Done
    }
}

/// How far one request got.
enum Step {
    Done,
    /// A multiget stopped at the output high water; run it again to continue.
    Partial,
    Close,
}

fn text_value(out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    memha_protocol::reply::push_value(out, key, flags, value, cas);
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
    }
}

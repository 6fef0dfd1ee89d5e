//! One client connection's protocol state, without the socket.
//!
//! The connection task hands [`Session::process`] whatever bytes it has read; the session
//! parses every complete request in them, runs each against the store and appends the replies
//! to one output buffer, which the task then writes with a single `write`. Keeping this free
//! of I/O makes the whole request path testable with plain byte slices, and is what lets a
//! pipelined batch cost one read and one write instead of one syscall per request.

mod binary;

use std::sync::Arc;

use memha_protocol::meta;
use memha_protocol::reply::{push_u64, push_value};
use memha_protocol::request::{self, ArithMode, Key, MetaCmd, SetMode};
use memha_protocol::text::{self, Limits, Parsed};
use memha_protocol::{Command, MetaRequest, Outcome, Status, StoreMode};

use memha_store::{class_of_item, ReadOptions};

use crate::config::BindingProtocol;
use crate::exec::{self, ReadKind, Reply};
use crate::shared::{Shared, Stop};
use crate::stats::Counters;
use crate::stats_cmd;

/// Flush the output to the socket once it holds this much, before parsing further, so a
/// client that pipelines many large gets (or never reads) cannot grow it without bound.
pub const OUT_HIGH_WATER: usize = 256 * 1024;

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
        if self.proto == Proto::Undecided && !input.is_empty() {
            self.proto = if input[0] == BINARY_REQUEST_MAGIC {
                Proto::Binary
            } else {
                Proto::Text
            };
        }
        if self.proto == Proto::Binary {
            return self.process_binary(input, out, now);
        }
        self.drive(input, out, now, Session::text_step)
    }

    /// The loop every protocol shares: discard a refused data block, stop at the end of the
    /// input, at `-R` requests or at the output high water, and otherwise let `step` handle
    /// the request at the front of what is left.
    fn drive(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        now: u32,
        step: fn(&mut Session, &[u8], &mut Vec<u8>, u32) -> Next,
    ) -> (usize, Control) {
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
            let limit = self.shared.config.reqs_per_event;
            if handled >= limit || out.len() >= OUT_HIGH_WATER {
                self.counters.conn_yields += u64::from(handled >= limit);
                return (pos, Control::Yield);
            }
            match step(self, &input[pos..], out, now) {
                Next::Handled(consumed) => {
                    handled += 1;
                    pos += consumed;
                }
                Next::Refused(consumed) => pos += consumed,
                Next::NeedInput => return (pos, Control::NeedInput),
                Next::Resume => return (pos, Control::Yield),
                Next::Close(consumed) => return (pos + consumed, Control::Close),
            }
        }
    }

    /// One text or meta request.
    fn text_step(&mut self, rest: &[u8], out: &mut Vec<u8>, now: u32) -> Next {
        match text::parse(rest, &self.limits) {
            Parsed::Incomplete { .. } => Next::NeedInput,
            Parsed::Close => Next::Close(0),
            Parsed::Error {
                reply,
                consumed,
                swallow,
            } => {
                self.counters.malformed_requests += 1;
                if self.authenticated {
                    out.extend_from_slice(reply.as_bytes());
                } else {
                    // Before login, say only that: no hints about the command set.
                    out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
                }
                self.swallow = swallow;
                Next::Refused(consumed)
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
                    // A failed store must not leave the old value behind: a client that
                    // reads after a failed write would see stale data.
                    exec::drop_after_failed_write(&self.shared, key, now);
                    self.counters.cmd_set += 1;
                    self.counters.store_too_large += 1;
                    if !noreply {
                        out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
                    }
                }
                self.swallow = swallow;
                Next::Refused(consumed)
            }
            Parsed::Request { cmd, consumed } => match self.execute(cmd, out, now) {
                Step::Done => Next::Handled(consumed),
                Step::Partial => Next::Resume,
                Step::Close => Next::Close(consumed),
            },
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
                let mut req = MetaRequest::new(MetaCmd::Set, Key::Raw(key));
                req.set_mode = match mode {
                    StoreMode::Set | StoreMode::Cas => SetMode::Set,
                    StoreMode::Add => SetMode::Add,
                    StoreMode::Replace => SetMode::Replace,
                    StoreMode::Append => SetMode::Append,
                    StoreMode::Prepend => SetMode::Prepend,
                };
                if mode == StoreMode::Cas {
                    // With -C every item's unique reads as 0, so a cas only needs the item.
                    if shared.config.cas_disabled {
                        req.set_mode = SetMode::Replace;
                    } else {
                        req.compare_cas = Some(cas);
                    }
                }
                req.client_flags = Some(flags);
                req.ttl = Some(exptime);
                req.data = data;
                let mut reply = TextReply {
                    out,
                    classic: Classic::Store(mode),
                    noreply,
                };
                exec::execute(shared, c, &req, ReadKind::GET, now, &mut reply);
            }
            Command::Delete { key, noreply } => {
                let req = MetaRequest::new(MetaCmd::Delete, Key::Raw(key));
                let mut reply = TextReply {
                    out,
                    classic: Classic::Delete,
                    noreply,
                };
                exec::execute(shared, c, &req, ReadKind::GET, now, &mut reply);
            }
            Command::Arith {
                key,
                incr,
                delta,
                noreply,
            } => {
                let mut req = MetaRequest::new(MetaCmd::Arith, Key::Raw(key));
                req.delta = delta;
                req.arith_mode = if incr {
                    ArithMode::Incr
                } else {
                    ArithMode::Decr
                };
                let mut reply = TextReply {
                    out,
                    classic: Classic::Arith,
                    noreply,
                };
                exec::execute(shared, c, &req, ReadKind::GET, now, &mut reply);
            }
            Command::Touch {
                key,
                exptime,
                noreply,
            } => {
                let mut req = MetaRequest::new(MetaCmd::Get, Key::Raw(key));
                req.ttl = Some(exptime);
                let mut reply = TextReply {
                    out,
                    classic: Classic::Touch,
                    noreply,
                };
                exec::execute(shared, c, &req, ReadKind::TOUCH, now, &mut reply);
            }
            Command::FlushAll { delay, noreply } => {
                c.cmd_flush += 1;
                if shared.config.flush_disabled {
                    if !noreply {
                        out.extend_from_slice(b"CLIENT_ERROR flush_all not allowed\r\n");
                    }
                    return Step::Done;
                }
                if delay > 0 {
                    exec::flush_all(shared, Some(exec::abs_exptime(delay, now)));
                } else {
                    exec::flush_all(shared, None);
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
                // A byte count typed by mistake would lift the cap entirely.
                if megabytes > 1_000_000_000 {
                    out.extend_from_slice(
                        b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
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
            Command::Meta(req) => {
                let kind = ReadKind::meta(&req);
                exec::execute(shared, c, &req, kind, now, &mut MetaReply { out });
            }
            Command::MetaNoop => meta::compose_noop(out),
            Command::MetaDebug { key, base64 } => {
                let opts = ReadOptions {
                    bump: false,
                    tokens: false,
                    ..ReadOptions::default()
                };
                let info = shared
                    .store
                    .read(key.as_bytes(), now, &opts, |view, _| {
                        (
                            exec::ttl_left(view.exptime, now),
                            u64::from(now.saturating_sub(view.atime)),
                            view.cas,
                            view.fetched,
                            class_of_item(view.key.len(), view.value.len()),
                            view.key.len() + view.value.len(),
                        )
                    })
                    .hit();
                meta::compose_debug(out, key.as_bytes(), base64, info);
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
        let start = self.get_resume;
        for key in request::keys(&keys[start..]) {
            if out.len() >= OUT_HIGH_WATER {
                // SAFETY of the arithmetic: `key` is a subslice of `keys`.
                self.get_resume = key.as_ptr() as usize - keys.as_ptr() as usize;
                return Step::Partial;
            }
            let mut req = MetaRequest::new(MetaCmd::Get, Key::Raw(key));
            req.ret_value = true;
            req.ttl = touch;
            let kind = if touch.is_some() {
                ReadKind::GET_AND_TOUCH
            } else {
                ReadKind::GET
            };
            let mut reply = TextReply {
                out,
                classic: Classic::Get { with_cas },
                noreply: false,
            };
            exec::execute(shared, c, &req, kind, now, &mut reply);
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
        if !data.contains(&b' ') {
            self.counters.auth_errors += 1;
            out.extend_from_slice(b"CLIENT_ERROR bad authentication token format\r\n");
        } else if table.check(data) {
            self.authenticated = true;
            out.extend_from_slice(b"STORED\r\n");
        } else {
            self.counters.auth_errors += 1;
            out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        }
        Step::Done
    }
}

/// What one protocol step did with the request at the front of the input.
enum Next {
    /// A request was handled; drop this many bytes.
    Handled(usize),
    /// A malformed or refused request was answered; drop this many bytes.
    Refused(usize),
    /// The request is not complete yet.
    NeedInput,
    /// A multiget stopped at the output high water: flush, then run it again.
    Resume,
    /// Close after dropping this many bytes.
    Close(usize),
}

/// How far one request got.
enum Step {
    Done,
    /// A multiget stopped at the output high water; run it again to continue.
    Partial,
    Close,
}

/// Composes meta replies (`HD`, `VA`, `EN` … with return flags).
struct MetaReply<'o> {
    out: &'o mut Vec<u8>,
}

impl Reply for MetaReply<'_> {
    fn reply(&mut self, req: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>) {
        meta::compose(self.out, req, outcome, value);
    }
}

/// The classic text command a request came from: it decides the reply's shape.
#[derive(Clone, Copy)]
enum Classic {
    Get { with_cas: bool },
    Touch,
    Store(StoreMode),
    Delete,
    Arith,
}

/// Composes classic text replies (`VALUE …`, `STORED`, `DELETED`, numbers …).
struct TextReply<'o> {
    out: &'o mut Vec<u8>,
    classic: Classic,
    noreply: bool,
}

impl Reply for TextReply<'_> {
    fn reply(&mut self, req: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>) {
        let out = &mut *self.out;
        if let Classic::Get { with_cas } = self.classic {
            if let (Status::Hit, Some(item), Some(value)) = (outcome.status, outcome.item, value) {
                let cas = with_cas.then_some(item.cas);
                push_value(out, req.key.as_bytes(), item.flags, value, cas);
            }
            return;
        }
        if self.noreply {
            return;
        }
        let line: &[u8] = match (self.classic, outcome.status) {
            (Classic::Touch, Status::Hit) => b"TOUCHED\r\n",
            (Classic::Touch, _) => b"NOT_FOUND\r\n",
            (Classic::Arith, Status::Hit) => {
                push_u64(out, outcome.item.map_or(0, |i| i.number));
                b"\r\n"
            }
            (Classic::Arith, Status::NonNumeric) => {
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
            }
            (Classic::Arith, _) => b"NOT_FOUND\r\n",
            (Classic::Delete, Status::Deleted) => b"DELETED\r\n",
            (Classic::Delete, _) => b"NOT_FOUND\r\n",
            (Classic::Store(_), Status::Stored) => b"STORED\r\n",
            // A cas without CAS support (-C) runs as a replace: "not stored" means missing.
            (Classic::Store(StoreMode::Cas), Status::NotStored) => b"NOT_FOUND\r\n",
            (Classic::Store(_), Status::NotStored) => b"NOT_STORED\r\n",
            (Classic::Store(_), Status::Exists) => b"EXISTS\r\n",
            (Classic::Store(_), Status::NotFound) => b"NOT_FOUND\r\n",
            (Classic::Store(_), Status::TooLarge) => b"SERVER_ERROR object too large for cache\r\n",
            (Classic::Store(_), Status::NoMemory) => {
                b"SERVER_ERROR out of memory storing object\r\n"
            }
            (Classic::Store(_), _) => b"SERVER_ERROR unexpected store result\r\n",
            (Classic::Get { .. }, _) => return,
        };
        out.extend_from_slice(line);
    }
}

//! The client load: a few threads in the client namespace, each with one persistent
//! connection to VIP:11211, each owning its keys so that the order of its writes is known.
//!
//! A thread loops over: `set` (unique value, random flags), `get`, `delete`, `incr` on its
//! counters, a CAS flow (`gets` then `cas` with that unique), and a deliberately stale CAS
//! flow (`gets`, `set`, then `cas` with the unique from before the set: must not be STORED).
//! Every attempt is recorded with its start and end.
//!
//! Connection handling is a pooled client's: before a request the idle connection is
//! checked (a server that closed it gracefully is noticed then, and costs nothing); a
//! request whose *reused* connection was reset or closed before any reply byte arrived is
//! retried once at once on a new connection — both attempts are recorded, the first as
//! "unknown". Any other failure (timeout, broken reply) drops the connection and the
//! request is not retried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::history::{
    counter_key, key_name, parse_value, plain_key, value_bytes, value_id, ErrClass, Op, OpKind,
    Res, COUNTER_KEYS, PLAIN_KEYS,
};
use crate::lab;
use crate::mc::{Conn, Expect, McError, Reply};
use crate::rng::Rng;
use crate::Result;

#[derive(Clone, Debug)]
pub struct Config {
    pub threads: u16,
    /// Total ops per second over all threads.
    pub rate: u32,
    /// Deadline of one request, connection included.
    pub timeout: Duration,
    pub target: SocketAddr,
    pub seed: u64,
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Op>>>,
}

impl Workload {
    /// Starts the threads; each first creates its counters (retrying until acknowledged).
    pub fn start(cfg: &Config, t0: Instant) -> Result<Workload> {
        let stop = Arc::new(AtomicBool::new(false));
        let rng = Rng::new(cfg.seed);
        let mut handles = Vec::new();
        for t in 0..cfg.threads {
            let cfg = cfg.clone();
            let stop = stop.clone();
            let rng = rng.fork(u64::from(t) + 1);
            let h = std::thread::Builder::new()
                .name(format!("client-{t}"))
                .spawn(move || {
                    if let Err(e) = lab::enter_ns(&lab::ns_of(lab::CLIENT)) {
                        eprintln!("memha-chaos: client thread {t}: {e}");
                        return Vec::new();
                    }
                    let mut c = Client {
                        thread: t,
                        cfg,
                        t0,
                        conn: None,
                        ops: Vec::new(),
                        rng,
                        next_value: 0,
                    };
                    c.run(&stop);
                    c.ops
                })
                .map_err(|e| format!("cannot start a client thread: {e}"))?;
            handles.push(h);
        }
        Ok(Workload { stop, handles })
    }

    /// Stops the threads and returns every op, thread by thread.
    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in self.handles {
            if let Ok(ops) = h.join() {
                all.extend(ops);
            }
        }
        all
    }
}

struct Client {
    thread: u16,
    cfg: Config,
    t0: Instant,
    conn: Option<Conn>,
    ops: Vec<Op>,
    rng: Rng,
    next_value: u64,
}

/// A request to make: what it is for the record, and its bytes.
struct Req {
    kind: OpKind,
    key: u32,
    arg: u64,
    flags: u32,
    unique: u64,
    flow: Option<u32>,
    bytes: Vec<u8>,
    expect: Expect,
}

impl Client {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn run(&mut self, stop: &AtomicBool) {
        // Counters exist before the load starts (a counter that is missing later is
        // re-created with `add`, recorded as such).
        for j in 0..COUNTER_KEYS {
            let key = counter_key(self.thread, j);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let r = self.exec(self.store_req(OpKind::Set, key, 0, b"0".to_vec(), 0, None));
                if r == Res::Stored {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let interval =
            Duration::from_secs_f64(f64::from(self.cfg.threads) / f64::from(self.cfg.rate.max(1)));
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            next += interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_secs(1) {
                next = now;
            }
            self.one_flow();
        }
    }

    fn new_value(&mut self) -> (u64, Vec<u8>) {
        self.next_value += 1;
        let id = value_id(self.thread, self.next_value);
        let pad = self.rng.range(0, 120) as usize;
        (id, value_bytes(id, pad))
    }

    fn store_req(
        &self,
        kind: OpKind,
        key: u32,
        arg: u64,
        data: Vec<u8>,
        unique: u64,
        flow: Option<u32>,
    ) -> Req {
        let flags = if kind == OpKind::Set || kind == OpKind::Cas || kind == OpKind::StaleCas {
            (arg % 65536) as u32
        } else {
            0
        };
        let verb = match kind {
            OpKind::Set => "set",
            OpKind::Add => "add",
            _ => "cas",
        };
        let mut bytes = format!("{verb} {} {flags} 0 {}", key_name(key), data.len());
        if verb == "cas" {
            bytes.push_str(&format!(" {unique}"));
        }
        bytes.push_str("\r\n");
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(b"\r\n");
        Req {
            kind,
            key,
            arg,
            flags,
            unique,
            flow,
            bytes,
            expect: Expect::Line,
        }
    }

    fn simple_req(&self, kind: OpKind, key: u32, arg: u64, flow: Option<u32>) -> Req {
        let (line, expect) = match kind {
            OpKind::Get => (format!("get {}\r\n", key_name(key)), Expect::Values),
            OpKind::Gets => (format!("gets {}\r\n", key_name(key)), Expect::Values),
            OpKind::Delete => (format!("delete {}\r\n", key_name(key)), Expect::Line),
            _ => (format!("incr {} {arg}\r\n", key_name(key)), Expect::Line),
        };
        Req {
            kind,
            key,
            arg,
            flags: 0,
            unique: 0,
            flow,
            bytes: line.into_bytes(),
            expect,
        }
    }

    fn one_flow(&mut self) {
        let plain = plain_key(
            self.thread,
            self.rng.range(0, u64::from(PLAIN_KEYS) - 1) as u32,
        );
        let pick = self.rng.range(0, 99);
        match pick {
            0..=29 => {
                let (id, data) = self.new_value();
                self.exec(self.store_req(OpKind::Set, plain, id, data, 0, None));
            }
            30..=49 => {
                self.exec(self.simple_req(OpKind::Get, plain, 0, None));
            }
            50..=57 => {
                self.exec(self.simple_req(OpKind::Delete, plain, 0, None));
            }
            58..=77 => {
                let c = counter_key(
                    self.thread,
                    self.rng.range(0, u64::from(COUNTER_KEYS) - 1) as u32,
                );
                let delta = self.rng.range(1, 5);
                if self.exec(self.simple_req(OpKind::Incr, c, delta, None)) == Res::NotFound {
                    self.exec(self.store_req(OpKind::Add, c, 0, b"0".to_vec(), 0, None));
                }
            }
            78..=89 => {
                let seq = self.ops.len() as u32;
                if let Res::Hit { cas, .. } =
                    self.exec(self.simple_req(OpKind::Gets, plain, 0, None))
                {
                    let (id, data) = self.new_value();
                    self.exec(self.store_req(OpKind::Cas, plain, id, data, cas, Some(seq)));
                }
            }
            _ => {
                let seq = self.ops.len() as u32;
                if let Res::Hit { cas, .. } =
                    self.exec(self.simple_req(OpKind::Gets, plain, 0, None))
                {
                    let (id, data) = self.new_value();
                    let set = self.store_req(OpKind::Set, plain, id, data, 0, Some(seq));
                    if self.exec(set) == Res::Stored {
                        let (id, data) = self.new_value();
                        self.exec(self.store_req(
                            OpKind::StaleCas,
                            plain,
                            id,
                            data,
                            cas,
                            Some(seq),
                        ));
                    }
                }
            }
        }
    }

    /// Runs one request (and its one retry, see the module docs), records every attempt,
    /// and returns the last attempt's result.
    fn exec(&mut self, req: Req) -> Res {
        let mut retry = false;
        loop {
            if self.conn.as_ref().is_some_and(|c| c.peer_closed()) {
                self.conn = None;
            }
            let start = self.now();
            let started = Instant::now();
            let deadline = started + self.cfg.timeout;
            if self.conn.is_none() {
                match Conn::connect(self.cfg.target, self.cfg.timeout) {
                    Ok(c) => self.conn = Some(c),
                    Err(_) => {
                        let end = self.now();
                        self.record(&req, retry, start, end, Res::NotSent(ErrClass::Connect));
                        // Not a busy loop while nobody holds the address.
                        std::thread::sleep(Duration::from_millis(5));
                        return Res::NotSent(ErrClass::Connect);
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            let reused = conn.used;
            let result = conn.request(&req.bytes, req.expect, deadline);
            let end = self.now();
            let res = match result {
                Ok(reply) => interpret(req.kind, reply),
                Err(McError::Timeout) => Res::Unknown(ErrClass::Timeout),
                Err(McError::Io {
                    reset_or_eof: true,
                    got_reply_bytes: false,
                    ..
                }) => Res::Unknown(ErrClass::Reset),
                Err(McError::Io { .. }) => Res::Unknown(ErrClass::Io),
                Err(McError::Protocol(_)) => Res::Unknown(ErrClass::Server),
            };
            if !res.ok() {
                self.conn = None;
            }
            self.record(&req, retry, start, end, res);
            if res == Res::Unknown(ErrClass::Reset) && reused && !retry {
                retry = true;
                continue;
            }
            return res;
        }
    }

    fn record(&mut self, req: &Req, retry: bool, start: u64, end: u64, res: Res) {
        self.ops.push(Op {
            thread: self.thread,
            seq: self.ops.len() as u32,
            kind: req.kind,
            key: req.key,
            arg: req.arg,
            flags: req.flags,
            unique: req.unique,
            flow: req.flow,
            retry,
            start,
            end,
            res,
        });
    }
}

/// What a reply means for this kind of request.
fn interpret(kind: OpKind, reply: Reply) -> Res {
    match reply {
        Reply::Values(v) => match v.first() {
            None => Res::Miss,
            Some(item) => Res::Hit {
                val: parse_value(&item.data).unwrap_or(u64::MAX),
                flags: item.flags,
                cas: item.cas.unwrap_or(0),
            },
        },
        Reply::Stats(_) => Res::Unknown(ErrClass::Server),
        Reply::Line(l) => match l.as_str() {
            "STORED" => Res::Stored,
            "NOT_STORED" => Res::NotStored,
            "EXISTS" => Res::Exists,
            "NOT_FOUND" => Res::NotFound,
            "DELETED" => Res::Deleted,
            n if kind == OpKind::Incr && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map_or(Res::Unknown(ErrClass::Server), Res::Num)
            }
            _ => Res::Unknown(ErrClass::Server),
        },
    }
}

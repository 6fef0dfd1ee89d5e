//! memha-loadgen: a small closed-loop load generator for the memcache text and meta
//! protocols, in the spirit of memtier_benchmark (which has no meta support).
//!
//! One thread drives every connection through a level-triggered epoll loop. Each
//! connection keeps `--pipeline` requests in flight: whenever a reply is parsed, the next
//! request is appended to the connection's write buffer, and after each read the buffer is
//! written with one `write` (like memtier/libevent: one read and one write per batch).
//! Buffers are reused; the steady state does not allocate.
//!
//! Latency is measured per request from the moment it was queued to the moment its
//! complete reply was read, so at depth N it includes the time spent behind the N-1
//! requests ahead of it on the connection (as memtier's does).

mod args;
mod hist;
mod proto;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;

use args::{ArgError, Args, Protocol};
use hist::Histogram;
use proto::{Encoder, Op, Reply};

const RBUF: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// (kind, queue time in ns since the phase epoch) of each request in flight, in order
    inflight: VecDeque<(Op, u64)>,
    rng: u64,
    cycle: u32,
    /// prefill: next key id this connection stores (ids step by the number of clients)
    next_id: u64,
    want_out: bool,
    dead: bool,
}

#[derive(Default)]
struct Stats {
    all: Histogram,
    get: Histogram,
    set: Histogram,
    hits: u64,
    misses: u64,
    stored: u64,
    not_stored: u64,
    errors: u64,
}

impl Stats {
    fn ops(&self) -> u64 {
        self.all.count()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prefill,
    Test,
}

struct Gen {
    args: Args,
    enc: Encoder,
    epfd: i32,
    conns: Vec<Conn>,
    epoch: Instant,
    phase: Phase,
    /// the test phase issues no new requests after this (ns since epoch)
    deadline_ns: u64,
    stats: Stats,
    conn_errors: u64,
}

fn fatal(msg: impl std::fmt::Display) -> ! {
    eprintln!("memha-loadgen: {msg}");
    std::process::exit(1);
}

#[inline]
fn xorshift(s: &mut u64) -> u64 {
    // xorshift64*
    let mut x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl Gen {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn epoll_ctl(&self, op: i32, i: usize, events: u32) {
        let mut ev = libc::epoll_event {
            events,
            u64: i as u64,
        };
        let fd = self.conns[i].stream.as_raw_fd();
        // SAFETY: valid epoll fd and socket fd; `ev` lives across the call.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            fatal(format!("epoll_ctl: {}", io::Error::last_os_error()));
        }
    }

    /// Queues the next request of connection `i` if the phase wants one. Returns false
    /// when it issued nothing.
    #[inline]
    fn issue(&mut self, i: usize, now: u64) -> bool {
        let a = &self.args;
        let c = &mut self.conns[i];
        let (op, id) = match self.phase {
            Phase::Prefill => {
                if c.next_id > a.key_max {
                    return false;
                }
                let id = c.next_id;
                c.next_id += a.clients as u64;
                (Op::Set, id)
            }
            Phase::Test => {
                if now >= self.deadline_ns {
                    return false;
                }
                let op = if c.cycle < a.ratio_sets {
                    Op::Set
                } else {
                    Op::Get
                };
                c.cycle += 1;
                if c.cycle == a.ratio_sets + a.ratio_gets {
                    c.cycle = 0;
                }
                let span = a.key_max - a.key_min + 1; // < 2^32 (validated)
                let r = xorshift(&mut c.rng) >> 32;
                (op, a.key_min + ((r * span) >> 32))
            }
        };
        self.enc.encode(&mut c.wbuf, op, id);
        c.inflight.push_back((op, now));
        true
    }

    fn kill(&mut self, i: usize, why: &str) {
        if self.conns[i].dead {
            return;
        }
        eprintln!("memha-loadgen: connection {i}: {why}");
        self.epoll_ctl(libc::EPOLL_CTL_DEL, i, 0);
        let c = &mut self.conns[i];
        c.dead = true;
        c.inflight.clear();
        self.conn_errors += 1;
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let msg = format!("write: {e}");
                    self.kill(i, &msg);
                    return;
                }
            }
        }
        let c = &mut self.conns[i];
        let pending = c.wpos < c.wbuf.len();
        if !pending {
            c.wbuf.clear();
            c.wpos = 0;
        }
        if pending != c.want_out {
            c.want_out = pending;
            let ev = libc::EPOLLIN as u32 | if pending { libc::EPOLLOUT as u32 } else { 0 };
            self.epoll_ctl(libc::EPOLL_CTL_MOD, i, ev);
        }
    }

    fn on_readable(&mut self, i: usize) {
        let c = &mut self.conns[i];
        // make room: compact, then grow if a single reply does not fit
        if c.rbuf.len() - c.rlen < RBUF / 4 && c.rpos > 0 {
            c.rbuf.copy_within(c.rpos..c.rlen, 0);
            c.rlen -= c.rpos;
            c.rpos = 0;
        }
        if c.rlen == c.rbuf.len() {
            let n = c.rbuf.len() * 2;
            c.rbuf.resize(n, 0);
        }
        let n = loop {
            match c.stream.read(&mut c.rbuf[c.rlen..]) {
                Ok(0) => return self.kill(i, "server closed the connection"),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.kill(i, &format!("read: {e}")),
            }
        };
        c.rlen += n;
        let now = self.now_ns();
        let proto = self.args.protocol;
        loop {
            let c = &mut self.conns[i];
            let Some(&(op, t0)) = c.inflight.front() else {
                if c.rpos < c.rlen {
                    let junk = String::from_utf8_lossy(&c.rbuf[c.rpos..c.rlen.min(c.rpos + 80)]);
                    fatal(format!(
                        "connection {i}: unsolicited data from server: {junk:?}"
                    ));
                }
                break;
            };
            match proto::parse(proto, op, &c.rbuf[c.rpos..c.rlen]) {
                Ok(Some((reply, used))) => {
                    c.rpos += used;
                    c.inflight.pop_front();
                    if self.phase == Phase::Test && now <= self.deadline_ns {
                        let lat = now.saturating_sub(t0);
                        let s = &mut self.stats;
                        s.all.record(lat);
                        match op {
                            Op::Get => s.get.record(lat),
                            Op::Set => s.set.record(lat),
                        }
                        match reply {
                            Reply::Hit => s.hits += 1,
                            Reply::Miss => s.misses += 1,
                            Reply::Stored => s.stored += 1,
                            Reply::NotStored => s.not_stored += 1,
                            Reply::Error => s.errors += 1,
                        }
                    } else if reply == Reply::Error || reply == Reply::NotStored {
                        self.stats.errors += 1;
                    }
                    self.issue(i, now);
                }
                Ok(None) => break,
                Err(proto::BadReply) => {
                    let c = &self.conns[i];
                    let bad = String::from_utf8_lossy(&c.rbuf[c.rpos..c.rlen.min(c.rpos + 80)]);
                    fatal(format!(
                        "connection {i}: cannot parse reply to {op:?}: {bad:?}"
                    ));
                }
            }
        }
        let c = &mut self.conns[i];
        if c.rpos == c.rlen {
            c.rpos = 0;
            c.rlen = 0;
        }
        self.flush(i);
    }

    /// Runs one phase to completion (prefill) or to the deadline (test).
    fn run(&mut self, phase: Phase, test_time: f64) -> f64 {
        self.phase = phase;
        let start = self.now_ns();
        self.deadline_ns = start + (test_time * 1e9) as u64;
        for i in 0..self.conns.len() {
            if self.conns[i].dead {
                continue;
            }
            if phase == Phase::Prefill {
                self.conns[i].next_id = self.args.key_min + i as u64;
            }
            for _ in 0..self.args.pipeline {
                if !self.issue(i, start) {
                    break;
                }
            }
            self.flush(i);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
        let mut last_progress = (start, 0usize);
        loop {
            let now = self.now_ns();
            let live = self.conns.iter().filter(|c| !c.dead).count();
            if live == 0 {
                fatal("every connection failed");
            }
            let timeout_ms = match phase {
                Phase::Test => {
                    if now >= self.deadline_ns {
                        break;
                    }
                    ((self.deadline_ns - now) / 1_000_000 + 1).min(100) as i32
                }
                Phase::Prefill => {
                    let inflight: usize = self.conns.iter().map(|c| c.inflight.len()).sum();
                    if inflight == 0 {
                        break;
                    }
                    let done: usize = self.conns.iter().map(|c| c.next_id as usize).sum();
                    if done != last_progress.1 {
                        last_progress = (now, done);
                    } else if now - last_progress.0 > 30_000_000_000 {
                        fatal("prefill stalled: no reply for 30 s");
                    }
                    100
                }
            };
            // SAFETY: `events` is a valid buffer of `events.len()` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd,
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout_ms,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                fatal(format!("epoll_wait: {e}"));
            }
            for ev in &events[..n as usize] {
                let (bits, i) = (ev.events, ev.u64 as usize);
                if self.conns[i].dead {
                    continue;
                }
                if bits & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                    self.on_readable(i);
                }
                if bits & libc::EPOLLOUT as u32 != 0 && !self.conns[i].dead {
                    self.flush(i);
                }
            }
        }
        match phase {
            Phase::Test => test_time,
            Phase::Prefill => (self.now_ns() - start) as f64 / 1e9,
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e @ ArgError::Help) => {
            print!("{e}");
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // SAFETY: plain syscall.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        fatal(format!("epoll_create1: {}", io::Error::last_os_error()));
    }
    let mut conns = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let stream = TcpStream::connect(&args.server)
            .unwrap_or_else(|e| fatal(format!("connect {}: {e}", args.server)));
        stream
            .set_nodelay(true)
            .unwrap_or_else(|e| fatal(format!("TCP_NODELAY: {e}")));
        stream
            .set_nonblocking(true)
            .unwrap_or_else(|e| fatal(format!("O_NONBLOCK: {e}")));
        let mut rng = args.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..4 {
            xorshift(&mut rng);
        }
        if rng == 0 {
            rng = 1;
        }
        let wcap = args.pipeline * (args.key_prefix.len() + args.data_size + 64);
        conns.push(Conn {
            stream,
            rbuf: vec![0; RBUF],
            rpos: 0,
            rlen: 0,
            wbuf: Vec::with_capacity(wcap),
            wpos: 0,
            inflight: VecDeque::with_capacity(args.pipeline),
            rng,
            // spread the set positions of the cycle over the connections
            cycle: (i as u32) % (args.ratio_sets + args.ratio_gets),
            next_id: 0,
            want_out: false,
            dead: false,
        });
    }
    let enc = Encoder::new(args.protocol, &args.key_prefix, args.data_size);
    let mut g = Gen {
        args,
        enc,
        epfd,
        conns,
        epoch: Instant::now(),
        phase: Phase::Prefill,
        deadline_ns: u64::MAX,
        stats: Stats::default(),
        conn_errors: 0,
    };
    for i in 0..g.conns.len() {
        g.epoll_ctl(libc::EPOLL_CTL_ADD, i, libc::EPOLLIN as u32);
    }

    let mut prefill_s = None;
    if g.args.prefill {
        let n = g.args.key_max - g.args.key_min + 1;
        let t = g.run(Phase::Prefill, 0.0);
        if g.stats.errors > 0 || g.conn_errors > 0 {
            fatal(format!(
                "prefill: {} error replies, {} failed connections",
                g.stats.errors, g.conn_errors
            ));
        }
        eprintln!(
            "prefill: {n} keys in {t:.2} s ({:.0} sets/s)",
            n as f64 / t.max(1e-9)
        );
        prefill_s = Some(t);
    }
    if g.args.test_time > 0.0 {
        let secs = g.run(Phase::Test, g.args.test_time);
        report(&g, secs, prefill_s);
    }
    // leave without draining in-flight replies; the kernel closes the sockets
    if g.conn_errors > 0 {
        std::process::exit(1);
    }
}

fn report(g: &Gen, secs: f64, prefill_s: Option<f64>) {
    let s = &g.stats;
    let a = &g.args;
    let ops = s.ops();
    let proto = match a.protocol {
        Protocol::Text => "text",
        Protocol::Meta => "meta",
    };
    let gets = s.get.count();
    let hit_ratio = if gets > 0 {
        s.hits as f64 / gets as f64
    } else {
        f64::NAN
    };
    let lat = |h: &Histogram| {
        [
            ms(h.percentile(50.0)),
            ms(h.percentile(99.0)),
            ms(h.percentile(99.9)),
            ms(h.max()),
        ]
    };
    let (la, lg, ls) = (lat(&s.all), lat(&s.get), lat(&s.set));
    if a.json {
        let l = |v: [f64; 4]| {
            format!(
                "{{\"p50\": {:.3}, \"p99\": {:.3}, \"p99.9\": {:.3}, \"max\": {:.3}}}",
                v[0], v[1], v[2], v[3]
            )
        };
        println!(
            "{{\"server\": \"{}\", \"protocol\": \"{proto}\", \"clients\": {}, \"pipeline\": {}, \
             \"data_size\": {}, \"duration_s\": {secs:.3}, \"ops\": {ops}, \"ops_per_sec\": {:.1}, \
             \"gets\": {gets}, \"sets\": {}, \"hits\": {}, \"misses\": {}, \"hit_ratio\": {}, \
             \"not_stored\": {}, \"errors\": {}, \"conn_errors\": {}, \"prefill_s\": {}, \
             \"latency_ms\": {}, \"get_latency_ms\": {}, \"set_latency_ms\": {}}}",
            a.server,
            a.clients,
            a.pipeline,
            a.data_size,
            ops as f64 / secs,
            s.set.count(),
            s.hits,
            s.misses,
            if hit_ratio.is_nan() {
                "null".to_string()
            } else {
                format!("{hit_ratio:.4}")
            },
            s.not_stored,
            s.errors,
            g.conn_errors,
            prefill_s.map_or("null".to_string(), |t| format!("{t:.3}")),
            l(la),
            l(lg),
            l(ls),
        );
    } else {
        println!(
            "{proto} {} clients x pipeline {} on {}, {} B values, {secs:.1} s",
            a.clients, a.pipeline, a.server, a.data_size
        );
        println!(
            "ops/s {:.0}  (gets/s {:.0}, sets/s {:.0})  hits {} misses {} hit ratio {:.4}  not stored {} errors {}",
            ops as f64 / secs,
            gets as f64 / secs,
            s.set.count() as f64 / secs,
            s.hits,
            s.misses,
            hit_ratio,
            s.not_stored,
            s.errors
        );
        println!("latency ms      p50      p99    p99.9      max");
        for (name, v) in [("all", la), ("get", lg), ("set", ls)] {
            println!(
                "  {name:<8} {:8.3} {:8.3} {:8.3} {:8.3}",
                v[0], v[1], v[2], v[3]
            );
        }
    }
}

//! A fault-injecting TCP proxy for the replication tests (std threads only).
//!
//! `Proxy::start(upstream)` listens on a free loopback port and forwards every connection to
//! `upstream`. Its [`Mode`] can be switched at any time and applies to connections already
//! open as well as new ones:
//!
//! - [`Mode::Pass`]: forward both ways.
//! - [`Mode::Refuse`]: every open connection is reset (both sides), and new ones are accepted
//!   and reset at once — a link that keeps failing.
//! - [`Mode::BlackHole`]: connections are accepted (and the upstream dialled) but nothing is
//!   forwarded in either direction; bytes stay queued, as TCP would retransmit them, and flow
//!   again once the mode changes — a network that silently stops delivering.
//! - [`Mode::Delay(ms)`]: every chunk is delivered `ms` milliseconds after it was read.
//!
//! [`Proxy::reset_all`] resets the open connections once without changing the mode (a blip).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    BlackHole,
    Delay(u64),
}

struct Conn {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    dead: Arc<AtomicBool>,
}

struct Inner {
    upstream: String,
    mode: Mutex<Mode>,
    mode_changed: Condvar,
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    accepted: AtomicU64,
}

/// A running proxy; stops (and resets its connections) when dropped.
pub struct Proxy {
    pub port: u16,
    inner: Arc<Inner>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// Close a socket with a reset (SO_LINGER 0) rather than a FIN, and wake its readers.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor we own, with a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Listen on `127.0.0.1:<free port>` and forward to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            upstream: upstream.to_string(),
            mode: Mutex::new(Mode::Pass),
            mode_changed: Condvar::new(),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let acceptor = {
            let inner = inner.clone();
            thread::spawn(move || accept_loop(listener, inner))
        };
        Proxy {
            port,
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn mode(&self) -> Mode {
        *self.inner.mode.lock().unwrap()
    }

    /// Switch the mode; `Refuse` also resets every open connection.
    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
        self.inner.mode_changed.notify_all();
        if mode == Mode::Refuse {
            self.reset_all();
        }
    }

    /// Reset every open connection (both sides) once; the mode stays as it is.
    pub fn reset_all(&self) {
        let conns = std::mem::take(&mut *self.inner.conns.lock().unwrap());
        for c in conns {
            c.dead.store(true, Ordering::SeqCst);
            reset(&c.client);
            reset(&c.upstream);
        }
        self.inner.mode_changed.notify_all();
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.inner.conns.lock().unwrap().len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.reset_all();
        // Wake the acceptor.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = stream else { continue };
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        if *inner.mode.lock().unwrap() == Mode::Refuse {
            reset(&client);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(&inner.upstream) else {
            reset(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
        let dead = Arc::new(AtomicBool::new(false));
        inner.conns.lock().unwrap().push(Conn {
            id,
            client: client.try_clone().unwrap(),
            upstream: upstream.try_clone().unwrap(),
            dead: dead.clone(),
        });
        for (from, to) in [
            (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
            (upstream.try_clone().unwrap(), client.try_clone().unwrap()),
        ] {
            pump(from, to, inner.clone(), dead.clone(), id);
        }
    }
}

/// Chunks read and when, plus "the reader has finished"; and its wake-up.
type Queue = (Mutex<(VecDeque<(Instant, Vec<u8>)>, bool)>, Condvar);

/// Forward `from` → `to` with a reader thread and a writer thread joined by a queue of
/// timestamped chunks (so a delay is a latency, not a bandwidth limit).
fn pump(from: TcpStream, to: TcpStream, inner: Arc<Inner>, dead: Arc<AtomicBool>, id: u64) {
    let queue: Arc<Queue> = Arc::new((Mutex::new((VecDeque::new(), false)), Condvar::new()));
    let finish = {
        let inner = inner.clone();
        let dead = dead.clone();
        move || {
            dead.store(true, Ordering::SeqCst);
            let mut conns = inner.conns.lock().unwrap();
            if let Some(i) = conns.iter().position(|c| c.id == id) {
                let c = conns.remove(i);
                reset(&c.client);
                reset(&c.upstream);
            }
        }
    };
    // Reader.
    {
        let inner = inner.clone();
        let dead = dead.clone();
        let queue = queue.clone();
        let mut from = from;
        thread::spawn(move || {
            let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if dead.load(Ordering::SeqCst) || inner.stop.load(Ordering::SeqCst) {
                    break;
                }
                // A black hole reads nothing: the bytes wait in the kernel.
                if *inner.mode.lock().unwrap() == Mode::BlackHole {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let (lock, cv) = &*queue;
                        lock.lock()
                            .unwrap()
                            .0
                            .push_back((Instant::now(), buf[..n].to_vec()));
                        cv.notify_all();
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let (lock, cv) = &*queue;
            lock.lock().unwrap().1 = true;
            cv.notify_all();
        });
    }
    // Writer.
    thread::spawn(move || {
        let mut to = to;
        let (lock, cv) = &*queue;
        loop {
            let next = {
                let mut q = lock.lock().unwrap();
                loop {
                    if dead.load(Ordering::SeqCst) {
                        break None;
                    }
                    if let Some(front) = q.0.pop_front() {
                        break Some(front);
                    }
                    if q.1 {
                        break None;
                    }
                    q = cv.wait_timeout(q, Duration::from_millis(20)).unwrap().0;
                }
            };
            let Some((read_at, chunk)) = next else { break };
            // Hold the chunk while black-holed; wait out a delay.
            loop {
                if dead.load(Ordering::SeqCst) {
                    return finish();
                }
                let mode = *inner.mode.lock().unwrap();
                match mode {
                    Mode::BlackHole => thread::sleep(Duration::from_millis(5)),
                    Mode::Delay(ms) => {
                        let due = read_at + Duration::from_millis(ms);
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        thread::sleep((due - now).min(Duration::from_millis(20)));
                    }
                    Mode::Pass | Mode::Refuse => break,
                }
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        finish();
    });
}

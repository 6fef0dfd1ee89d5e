//! Sockets: binding listeners, accepting with the connection limit, and the per-connection
//! read → process → write loop. This is the only module that touches client sockets.
//!
//! Binding is split from serving ([`bind`] then [`Bound::run`]) so that a port already in use
//! or a bad address is reported before the process daemonizes or drops privileges, and so
//! no thread exists yet when `-d` forks.
//!
//! Other services of the process (the admin HTTP endpoint today; replication and VRRP later)
//! live in crates that depend on this one, never the other way round. The binary binds their
//! sockets next to these and hands each one to [`Bound::add_service`] as a closure; `run`
//! starts it on the same runtime with the process's [`Shared`] once the listeners are up.

use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::session::{Control, Session};
use crate::shared::{unix_now, ConnGuard, Shared, Stop};
use crate::udp;

/// Read buffer size for a new connection; it grows for large values and shrinks back.
const READ_CHUNK: usize = 16 * 1024;

/// A service's task, as [`Bound::add_service`] stores it.
pub type ServiceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type Service = Box<dyn FnOnce(Arc<Shared>) -> ServiceFuture + Send + 'static>;

/// Listening sockets, bound but not yet served.
pub struct Bound {
    shared: Arc<Shared>,
    tcp: Vec<std::net::TcpListener>,
    udp: Vec<std::net::UdpSocket>,
    unix: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    services: Vec<Service>,
}

impl Bound {
    /// The TCP addresses actually bound (useful with `-p 0`).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Run another service on the server's runtime: `start` is called with the process's
    /// [`Shared`] inside the runtime once the cache's listeners are up, and its future is
    /// spawned. The service should return when [`Shared::stop_signal`] says stop; whatever
    /// is still running when the server stops is dropped with the runtime. Its sockets should
    /// be bound before this (before daemonizing), like the cache's.
    pub fn add_service<F, Fut>(&mut self, start: F)
    where
        F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.services
            .push(Box::new(move |shared| Box::pin(start(shared))));
    }

    /// Write memcached's port file (`MEMCACHED_PORT_FILENAME`): one `TCP INET: <port>` /
    /// `UDP INET: <port>` line per socket, so scripts and tests can use `-p 0`.
    pub fn write_port_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for a in self.tcp_addrs() {
            let fam = if a.is_ipv4() { "INET" } else { "INET6" };
            writeln!(f, "TCP {fam}: {}", a.port())?;
        }
        for a in self.udp_addrs() {
            let fam = if a.is_ipv4() { "INET" } else { "INET6" };
            writeln!(f, "UDP {fam}: {}", a.port())?;
        }
        drop(f);
        std::fs::rename(tmp, path)
    }

    /// Serve until a stop is requested (signal or `shutdown`). Builds the runtime with
    /// `-t` worker threads.
    pub fn run(self) -> Result<(), String> {
        let threads = self.shared.config.threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("memha-worker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the worker threads: {e}"))?;
        runtime.block_on(self.serve());
        runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }

    async fn serve(self) {
        let shared = self.shared;
        for l in self.tcp {
            let l = tokio::net::TcpListener::from_std(l).expect("listener registers with tokio");
            tokio::spawn(accept_tcp(l, shared.clone()));
        }
        for s in self.udp {
            let s = tokio::net::UdpSocket::from_std(s).expect("udp socket registers with tokio");
            tokio::spawn(udp::serve(s, shared.clone()));
        }
        let unix_path = if let Some((l, path)) = self.unix {
            let l = tokio::net::UnixListener::from_std(l).expect("listener registers with tokio");
            tokio::spawn(accept_unix(l, shared.clone()));
            Some(path)
        } else {
            None
        };
        // Handlers first: a service may tell the world we are up (systemd's READY=1), and a
        // SIGTERM sent right after must find its handler installed, not kill the process.
        let signals = install_signal_handlers();
        for start in self.services {
            tokio::spawn(start(shared.clone()));
        }
        if let Some(signals) = signals {
            tokio::spawn(watch_signals(shared.clone(), signals));
        }
        tokio::spawn(return_freed_memory(shared.clone()));
        let mut stop = shared.stop_signal();
        let how = wait_stop(&mut stop).await;
        if how == Stop::Graceful {
            // Listeners have stopped and idle connections close; give busy ones a moment to
            // finish the batch they are answering.
            for _ in 0..100 {
                if shared.conns.load(Relaxed) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(p) = unix_path {
            let _ = std::fs::remove_file(p);
        }
        tracing::info!("stopped");
    }
}

/// Bind every socket the configuration asks for.
pub fn bind(shared: Arc<Shared>) -> Result<Bound, String> {
    let cfg = &shared.config;
    let mut bound = Bound {
        shared: shared.clone(),
        tcp: Vec::new(),
        udp: Vec::new(),
        unix: None,
        services: Vec::new(),
    };
    if let Some(path) = &cfg.unix_socket {
        bound.unix = Some((bind_unix(path, cfg.unix_mask)?, path.clone()));
        return Ok(bound);
    }
    let explicit = !cfg.listen.is_empty();
    let addrs: Vec<IpAddr> = if explicit {
        cfg.listen.clone()
    } else {
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]
    };
    for ip in &addrs {
        match bind_tcp(SocketAddr::new(*ip, cfg.tcp_port), cfg.backlog) {
            Ok(l) => bound.tcp.push(l),
            // Hosts without IPv6 still serve IPv4 when no address was asked for.
            Err(_) if !explicit && ip.is_ipv6() => {}
            Err(e) => {
                return Err(format!(
                    "cannot listen on TCP {ip} port {}: {e}",
                    cfg.tcp_port
                ))
            }
        }
        if cfg.udp_port != 0 {
            match bind_udp(SocketAddr::new(*ip, cfg.udp_port)) {
                Ok(s) => bound.udp.push(s),
                Err(_) if !explicit && ip.is_ipv6() => {}
                Err(e) => {
                    return Err(format!(
                        "cannot listen on UDP {ip} port {}: {e}",
                        cfg.udp_port
                    ))
                }
            }
        }
    }
    Ok(bound)
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_unix(path: &PathBuf, mask: u32) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    // A socket file left by a previous run would make bind fail; remove it only if it is a
    // socket, never a regular file someone pointed -s at by mistake.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        } else {
            return Err(format!(
                "cannot listen on unix socket {}: the path exists and is not a socket",
                path.display()
            ));
        }
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on unix socket {}: {e}", path.display()))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("unix socket {}: {e}", path.display()))?;
    let mode = 0o777 & !mask;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    Ok(l)
}

async fn wait_stop(stop: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let now = *stop.borrow_and_update();
        if now != Stop::Running {
            return now;
        }
        if stop.changed().await.is_err() {
            return Stop::Now;
        }
    }
}

type StopSignals = (
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
);

/// SIGTERM, SIGINT and SIGUSR1, handled from now on (inside the runtime).
fn install_signal_handlers() -> Option<StopSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(term), Ok(int), Ok(usr1)) => Some((term, int, usr1)),
        _ => {
            tracing::warn!("cannot install signal handlers; stop memha with SIGKILL");
            None
        }
    }
}

async fn watch_signals(shared: Arc<Shared>, signals: StopSignals) {
    let (mut term, mut int, mut usr1) = signals;
    tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: stopping"); shared.stop(Stop::Now) }
        _ = int.recv() => { tracing::info!("SIGINT: stopping"); shared.stop(Stop::Now) }
        _ = usr1.recv() => { tracing::info!("SIGUSR1: graceful stop"); shared.stop(Stop::Graceful) }
    }
}

/// Items are allocated one by one, so after evictions and deletes the allocator holds freed
/// chunks that the cache's budget no longer counts. Handing whole free pages back to the
/// kernel now and then keeps the process's RSS close to `-m` instead of its high-water mark.
async fn return_freed_memory(shared: Arc<Shared>) {
    let mut last = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let s = shared.store.stats();
        let churn = (s.evictions + s.reclaimed, s.total_items);
        if churn != last {
            last = churn;
            // SAFETY: malloc_trim only walks the allocator's own free lists.
            tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) });
        }
    }
}

/// Count a new connection against `-c`; `None` if over the limit.
fn admit(shared: &Arc<Shared>) -> Option<ConnGuard> {
    let n = shared.conns.fetch_add(1, Relaxed) + 1;
    let guard = ConnGuard(shared.clone());
    if n > shared.config.max_connections {
        shared.stats.rejected_connections.fetch_add(1, Relaxed);
        return None;
    }
    shared.stats.total_connections.fetch_add(1, Relaxed);
    Some(guard)
}

async fn accept_tcp(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = wait_stop(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let Some(guard) = admit(&shared) else {
                    tokio::spawn(reject(stream));
                    continue;
                };
                // Peers learn of the connection, so whichever takes the VIP over can reset it
                // at once (memha_repl::clients).
                let told = match (&shared.repl, stream.local_addr()) {
                    (Some(repl), Ok(local)) => repl.client_opened(local, peer),
                    _ => None,
                };
                tokio::spawn(async move {
                    serve_conn(stream, guard).await;
                    drop(told);
                });
            }
            Err(e) => accept_error(e).await,
        }
    }
}

async fn accept_unix(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    let mut stop = shared.stop_signal();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = wait_stop(&mut stop) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let Some(guard) = admit(&shared) else {
                    tokio::spawn(reject(stream));
                    continue;
                };
                tokio::spawn(serve_conn(stream, guard));
            }
            Err(e) => accept_error(e).await,
        }
    }
}

/// Out of file descriptors (or similar): back off instead of spinning on accept.
async fn accept_error(e: std::io::Error) {
    tracing::warn!("accept failed: {e}; retrying in 10 ms");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn reject<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(b"ERROR Too many open connections\r\n"),
    )
    .await;
}

/// One client connection: read what is there, answer every complete request with one write.
async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, guard: ConnGuard) {
    let shared = guard.0.clone();
    let mut stop = shared.stop_signal();
    let mut session = Session::new(shared.clone());
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let idle = match shared.config.idle_timeout {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let read = async {
            match idle {
                Some(d) => tokio::time::timeout(d, stream.read_buf(&mut input)).await,
                None => Ok(stream.read_buf(&mut input).await),
            }
        };
        let n = tokio::select! {
            r = read => r,
            // Stopping (now or gracefully): a connection waiting for its next request has
            // nothing in flight, so it can close without cutting a reply short.
            _ = wait_stop(&mut stop) => return,
        };
        let n = match n {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_elapsed) => {
                shared.stats.idle_kicks.fetch_add(1, Relaxed);
                return;
            }
        };
        session.counters.bytes_read += n as u64;
        loop {
            let now = unix_now() as u32;
            let (consumed, control) = session.process(&input, &mut out, now);
            input.advance(consumed);
            // ack = "sync": the replies of a batch that wrote go out only once a peer has
            // applied those writes (or the wait timed out, counted).
            if let Some(repl) = shared.repl.as_ref().filter(|r| r.sync_ack()) {
                if session.counters.wrote() {
                    repl.wait_acked(repl.last_seq()).await;
                }
            }
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                session.counters.bytes_written += out.len() as u64;
                if out.capacity() > 4 * READ_CHUNK {
                    out = Vec::with_capacity(READ_CHUNK);
                } else {
                    out.clear();
                }
            }
            shared.stats.absorb(&mut session.counters);
            match control {
                Control::NeedInput => break,
                Control::Yield => tokio::task::yield_now().await,
                Control::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        // Give back the memory of a large value once it has been handled.
        if input.is_empty() && input.capacity() > 4 * READ_CHUNK {
            input = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

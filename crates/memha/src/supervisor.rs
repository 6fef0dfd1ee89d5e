//! The supervisor: with `[[vrrp_instance]]`s, memha's first process speaks VRRP and runs
//! the cache as its child.
//!
//! A virtual address must never outlive the cache behind it. keepalived polls a health
//! script, so a dead memcached keeps the address for seconds. Here the process that owns
//! the address is not the one that serves clients: the supervisor starts the data process
//! by re-executing its own binary (never a bare `fork` of a threaded process), and the two
//! share a unix socket (`supervised.rs` is the other end). When the data process dies the
//! socket closes at that instant, the supervisor's poll loop wakes, and the speaker resigns
//! (priority-0 adverts, so the backup takes over after its Skew_Time) before restarting
//! the cache. When the cache says it is not ready (its first sync after a restart), the
//! speaker stays in FAULT until it is.
//!
//! The supervisor is single-threaded: one `poll` over the VRRP sockets, the link-event
//! socket, the child's socket and a self-pipe for signals, with the speaker's timers as the
//! timeout. It keeps root (raw sockets and addresses need it); `-u` applies to the data
//! process only.
//!
//! Signals: SIGTERM/SIGINT/SIGUSR1 stop gracefully — masters resign, keep their addresses
//! (and the cache keeps serving) until the new master announces itself, then the cache is
//! stopped, so no request fails. SIGHUP is passed to the data process (its reloadable
//! settings); VRRP settings are read at start only.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use memha::cli::RunOptions;
use memha::vrrp_config;
use memha_failover::speaker::{Speaker, Status};
use memha_server::vrrp_view::{VrrpInstanceView, VrrpView};

use crate::sd_notify;
use crate::supervised::FD_VAR;

/// No message from the data process for this long (it sends one every 100 ms): it is
/// treated as unhealthy until it speaks again.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// The VRRP state is sent to the data process this often, and on every change.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Restart delays after a crash: doubling from the first to the last; reset once the data
/// process has run for [`STABLE_RUN`].
const RESTART_FIRST: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(10);
const STABLE_RUN: Duration = Duration::from_secs(30);

/// Most peer client connections kept for resetting at a takeover (as many as one peer may
/// send: `memha_repl::clients::MAX_CLIENTS`).
const MAX_CLIENTS: usize = memha_repl::clients::MAX_CLIENTS;

/// Longest wait for a successor after a graceful stop began.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// Time the cache keeps serving after the addresses moved, for requests already under way.
const STOP_DRAIN: Duration = Duration::from_millis(100);
/// Longest wait for the data process to exit after SIGTERM before SIGKILL.
const CHILD_EXIT_WAIT: Duration = Duration::from_secs(10);

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just loses a duplicate signal.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// The signals the supervisor handles, delivered through a non-blocking pipe.
struct Signals {
    read: RawFd,
}

impl Signals {
    fn install() -> Result<Signals, String> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(format!(
                "cannot create a pipe: {}",
                std::io::Error::last_os_error()
            ));
        }
        SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            // SAFETY: installs an async-signal-safe handler with a zeroed, valid sigaction.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        Ok(Signals { read: fds[0] })
    }

    fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            // SAFETY: reads into a local buffer from our own pipe.
            let n = unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend(buf[..n as usize].iter().map(|&b| i32::from(b)));
        }
    }
}

/// The running data process and what it last said.
struct DataProcess {
    child: Child,
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    started_at: Instant,
    last_heard: Instant,
    started: bool,
    ready: bool,
    /// A `ready` line has arrived since the start.
    heard_ready: bool,
    /// Replication holds writes a lagging peer lacks (`hold 1`).
    hold: bool,
    /// Marked unhealthy for silence; cleared by the next message.
    silent: bool,
    /// The peers' client connections being received (`clients begin` .. `clients end`),
    /// and the last complete list, until the speaker takes it.
    clients_in: Option<Vec<(SocketAddrV4, SocketAddrV4)>>,
    clients: Option<Vec<(SocketAddrV4, SocketAddrV4)>>,
}

impl DataProcess {
    fn spawn() -> Result<DataProcess, String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot create a socket pair: {e}"))?;
        let fd = theirs.as_raw_fd();
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        // The binary's path, so the data process is named `memha` in ps/pgrep; after an
        // upgrade replaced the file, /proc/self/exe still runs the version we are.
        let exe = std::env::current_exe()
            .ok()
            .filter(|p| p.exists())
            .unwrap_or_else(|| "/proc/self/exe".into());
        let mut cmd = Command::new(exe);
        cmd.arg0("memha")
            .args(args)
            .env(FD_VAR, fd.to_string())
            // The supervisor is the main process systemd listens to.
            .env_remove(sd_notify::NOTIFY_SOCKET);
        // SAFETY: only async-signal-safe calls between fork and exec: fcntl and prctl.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // If the supervisor dies, the cache stops too: it must not serve behind an
                // address nobody manages. (systemd restarts the unit.)
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                // The cache needs none of the supervisor's network capabilities (granted as
                // ambient ones by the systemd unit): it does not inherit them.
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the data process: {e}"))?;
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| format!("cannot configure the data process socket: {e}"))?;
        let now = Instant::now();
        Ok(DataProcess {
            child,
            sock: ours,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            started_at: now,
            last_heard: now,
            started: false,
            ready: false,
            heard_ready: false,
            hold: false,
            silent: false,
            clients_in: None,
            clients: None,
        })
    }

    /// Reads what is pending. `Err` = the process is gone (the socket closed).
    fn read(&mut self, now: Instant) -> Result<(), ()> {
        let mut chunk = [0u8; 1024];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    self.last_heard = now;
                    self.silent = false;
                    self.inbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(()),
            }
        }
        while let Some(nl) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=nl).collect();
            match &line[..line.len() - 1] {
                b"started" => self.started = true,
                b"ready 1" => (self.ready, self.heard_ready) = (true, true),
                b"ready 0" => (self.ready, self.heard_ready) = (false, true),
                b"hold 1" => self.hold = true,
                b"hold 0" => self.hold = false,
                b"clients begin" => self.clients_in = Some(Vec::new()),
                b"clients end" => self.clients = self.clients_in.take(),
                l if l.starts_with(b"client ") => {
                    if let (Some(list), Some(conn)) = (self.clients_in.as_mut(), parse_client(l)) {
                        if list.len() < MAX_CLIENTS {
                            list.push(conn);
                        }
                    }
                }
                _ => {}
            }
        }
        if self.inbuf.len() > 4096 {
            self.inbuf.clear();
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        self.started && self.ready && !self.silent
    }

    /// Queues a status block unless the previous one is still on its way.
    fn send_status(&mut self, block: &str) {
        if self.outbuf.is_empty() {
            self.outbuf.extend_from_slice(block.as_bytes());
        }
        self.flush();
    }

    fn flush(&mut self) {
        while !self.outbuf.is_empty() {
            match self.sock.write(&self.outbuf) {
                Ok(0) => break,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // full, or gone (the read side reports that)
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid (not reaped yet, so the pid is still ours).
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Reaps the process after its socket closed; kills it if it is somehow still alive.
    fn reap(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return match self.child.wait() {
                        Ok(s) => format!("{s} (killed: it had closed its supervisor socket)"),
                        Err(e) => format!("unknown ({e})"),
                    };
                }
                Err(e) => return format!("unknown ({e})"),
            }
        }
    }

    /// Stops it: SIGTERM, then SIGKILL after [`CHILD_EXIT_WAIT`].
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + CHILD_EXIT_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    tracing::warn!(
                        "the data process did not stop within {CHILD_EXIT_WAIT:?}; killing it"
                    );
                    let _ = self.child.kill();
                    return self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                }
            }
        }
    }
}

/// What must work before the process detaches: the VRRP sockets, interfaces and
/// addresses are checked here, so a mistake is reported on the terminal.
pub struct Prepared {
    speaker: Speaker,
}

/// Opens the speaker's sockets (needs root or CAP_NET_RAW/CAP_NET_ADMIN).
pub fn prepare(opts: &RunOptions) -> Result<Prepared, String> {
    let specs = vrrp_config::instance_specs(opts)?;
    Ok(Prepared {
        speaker: Speaker::open(specs)?,
    })
}

/// Runs the supervisor until it is stopped. `daemonize` and the pid file are the caller's
/// (`main.rs`), done between [`prepare`] and this.
pub fn run(prepared: Prepared) -> Result<(), String> {
    let mut speaker = prepared.speaker;
    let signals = Signals::install()?;

    // Start the cache and wait until it has bound its ports (or failed to), and briefly for
    // its first readiness report, so an instance does not pass through FAULT for nothing.
    let mut data = DataProcess::spawn()?;
    let mut started_at = None;
    while !data.started
        || (!data.heard_ready
            && started_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(500)))
    {
        if data.started && started_at.is_none() {
            started_at = Some(Instant::now());
        }
        wait_readable(
            &[data.sock.as_raw_fd(), signals.read],
            Some(Duration::from_secs(1)),
        );
        if data.read(Instant::now()).is_err() {
            let status = data.reap();
            return Err(format!(
                "the data process could not start ({status}); see its message above"
            ));
        }
        if signals.drain().iter().any(|s| *s != libc::SIGHUP) {
            data.stop();
            return Ok(());
        }
    }
    tracing::info!("data process {} started; starting VRRP", data.child.id());
    let mut now = Instant::now();
    speaker.start(data.healthy(), now);

    let mut data = Some(data);
    let mut restart_at: Option<Instant> = None;
    let mut restart_delay = RESTART_FIRST;
    let mut health_reported = data.as_ref().is_some_and(|d| d.healthy());
    let mut notified_ready = false;
    if health_reported {
        notified_ready = true;
        let _ = sd_notify::notify(&[("READY", "1"), ("STATUS", "serving; VRRP running")]);
    }
    let mut last_status: Option<(Status, Instant)> = None;
    let mut stopping: Option<Instant> = None;

    loop {
        // ----- wait -----
        let mut fds = speaker.poll_fds();
        fds.push(signals.read);
        if let Some(d) = &data {
            fds.push(d.sock.as_raw_fd());
        }
        let mut deadline = speaker.next_deadline();
        let mut consider = |t: Instant| deadline = Some(deadline.map_or(t, |d: Instant| d.min(t)));
        if let Some(d) = &data {
            consider(d.last_heard + HEARTBEAT_TIMEOUT);
        }
        if let Some(t) = restart_at {
            consider(t);
        }
        if let Some((_, t)) = &last_status {
            consider(*t + STATUS_EVERY);
        }
        if let Some(t) = stopping {
            consider(t + STOP_WAIT);
        }
        now = Instant::now();
        wait_readable(&fds, deadline.map(|d| d.saturating_duration_since(now)));
        now = Instant::now();

        // ----- the data process first: its death must be acted on before anything else -----
        if let Some(d) = &mut data {
            if d.read(now).is_err() {
                speaker.set_health(false, now);
                health_reported = false;
                let d = data.take().expect("checked above");
                let ran = now.duration_since(d.started_at);
                let pid = d.child.id();
                let status = d.reap();
                if stopping.is_none() {
                    if ran >= STABLE_RUN {
                        restart_delay = RESTART_FIRST;
                    }
                    tracing::error!(
                        "the data process {pid} exited ({status}) after {:.1} s; restarting it in {} ms",
                        ran.as_secs_f64(),
                        restart_delay.as_millis()
                    );
                    restart_at = Some(now + restart_delay);
                    restart_delay = (restart_delay * 2).min(RESTART_MAX);
                } else {
                    tracing::warn!("the data process {pid} exited ({status}) while stopping");
                }
            } else if now.duration_since(d.last_heard) >= HEARTBEAT_TIMEOUT && !d.silent {
                d.silent = true;
                tracing::error!(
                    "the data process {} has not answered for {} ms; resigning until it does",
                    d.child.id(),
                    HEARTBEAT_TIMEOUT.as_millis()
                );
            }
        }
        speaker.set_hold(data.as_ref().is_some_and(|d| d.hold), now);
        if let Some(clients) = data.as_mut().and_then(|d| d.clients.take()) {
            speaker.set_peer_clients(clients);
        }
        let healthy = data.as_ref().is_some_and(|d| d.healthy());
        if healthy != health_reported {
            speaker.set_health(healthy, now);
            health_reported = healthy;
            if healthy && !notified_ready {
                notified_ready = true;
                let _ = sd_notify::notify(&[("READY", "1"), ("STATUS", "serving; VRRP running")]);
            }
        }

        // ----- signals -----
        for sig in signals.drain() {
            match sig {
                libc::SIGHUP => {
                    if let Some(d) = &data {
                        d.signal(libc::SIGHUP);
                    }
                    reload(&mut speaker, now);
                }
                _ if stopping.is_none() => {
                    tracing::info!("stopping: resigning the virtual addresses first");
                    let _ = sd_notify::notify(&[("STOPPING", "1")]);
                    stopping = Some(now);
                    restart_at = None;
                    speaker.stop(now);
                }
                _ => {}
            }
        }

        // ----- VRRP -----
        speaker.service(now);

        // ----- restart -----
        if restart_at.is_some_and(|t| t <= now) && stopping.is_none() {
            restart_at = None;
            match DataProcess::spawn() {
                Ok(d) => {
                    tracing::info!("data process {} started", d.child.id());
                    data = Some(d);
                }
                Err(e) => {
                    tracing::error!("{e}; retrying in {} ms", restart_delay.as_millis());
                    restart_at = Some(now + restart_delay);
                    restart_delay = (restart_delay * 2).min(RESTART_MAX);
                }
            }
        }

        // ----- status to the data process -----
        let status = speaker.status();
        let due = match &last_status {
            None => true,
            Some((prev, at)) => changed(prev, &status) || now.duration_since(*at) >= STATUS_EVERY,
        };
        if due {
            if let Some(d) = &mut data {
                d.send_status(&view(&status).encode());
            }
            last_status = Some((status, now));
        } else if let Some(d) = &mut data {
            d.flush();
        }

        // ----- graceful stop -----
        if let Some(since) = stopping {
            if speaker.stopped() || now.duration_since(since) >= STOP_WAIT {
                speaker.finish();
                if let Some(d) = data.take() {
                    std::thread::sleep(STOP_DRAIN);
                    let pid = d.child.id();
                    let status = d.stop();
                    tracing::info!("data process {pid} stopped ({status})");
                }
                return Ok(());
            }
        }
    }
}

/// SIGHUP: the data process reloads its own settings; here the notify hooks and track
/// scripts are taken from the re-read configuration, and the rest is reported.
fn reload(speaker: &mut Speaker, now: Instant) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match memha::cli::parse_args(&args) {
        Ok(memha::cli::Cli::Run(opts)) => opts,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(
                "SIGHUP: the configuration no longer reads ({e}); VRRP keeps its settings"
            );
            return;
        }
    };
    match vrrp_config::instance_specs(&opts) {
        Ok(specs) => {
            for line in speaker.reload(specs, now) {
                tracing::info!("SIGHUP: {line}");
            }
        }
        Err(e) => tracing::error!("SIGHUP: {e}; VRRP keeps its settings"),
    }
}

/// `client <local addr:port> <client addr:port>` (see `supervised.rs`).
fn parse_client(line: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.strip_prefix("client ")?.split(' ');
    let local = words.next()?.parse().ok()?;
    let client = words.next()?.parse().ok()?;
    words.next().is_none().then_some((local, client))
}

/// True when something other than a counter moved (state, master, holding, health).
fn changed(a: &Status, b: &Status) -> bool {
    const WATCHED: [&str; 6] = [
        "state",
        "master",
        "holding_vips",
        "healthy",
        "link_up",
        "effective_priority",
    ];
    a.len() != b.len()
        || a.iter().zip(b).any(|((_, x), (_, y))| {
            WATCHED
                .iter()
                .any(|k| x.iter().find(|(kk, _)| kk == k) != y.iter().find(|(kk, _)| kk == k))
        })
}

fn view(status: &Status) -> VrrpView {
    VrrpView {
        instances: status
            .iter()
            .map(|(name, kv)| VrrpInstanceView {
                name: name.clone(),
                values: kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            })
            .collect(),
    }
}

/// `poll` for readability with an optional timeout (rounded up to the next millisecond).
fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = match timeout {
        None => -1,
        Some(t) => {
            let us = t.as_micros();
            us.div_ceil(1000).min(60_000) as i32
        }
    };
    // SAFETY: pfds is a valid array of pollfd for its length.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_lines_parse_and_garbage_is_ignored() {
        assert_eq!(
            parse_client(b"client 10.0.0.46:11211 10.0.0.9:40000"),
            Some((
                "10.0.0.46:11211".parse().unwrap(),
                "10.0.0.9:40000".parse().unwrap()
            ))
        );
        for bad in [
            &b"client 10.0.0.46:11211"[..],
            b"client 10.0.0.46:11211 10.0.0.9:40000 extra",
            b"client [::1]:1 10.0.0.9:4",
            b"client 10.0.0.46:99999 10.0.0.9:4",
            b"client \xff",
        ] {
            assert_eq!(
                parse_client(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

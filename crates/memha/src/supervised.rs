//! The data process's side of supervision.
//!
//! With `[[vrrp_instance]]`s, memha runs as two processes: a supervisor that speaks VRRP and
//! owns the virtual addresses, and this one, which serves clients (see `supervisor.rs`).
//! They share one unix socket, inherited as the file descriptor named in
//! `MEMHA_SUPERVISED_FD`. Over it this process says:
//!
//! * `started` once its listeners are bound (the supervisor's start-up waits for it, so a
//!   busy port is still an error on the terminal);
//! * `ready 0|1` whenever readiness changes (not ready while replication does its first
//!   sync, and from the moment it begins to stop): the VRRP speaker turns that into FAULT at
//!   once, without polling;
//! * `hold 0|1` whenever replication starts or stops holding writes a lagging peer lacks
//!   (`memha_repl::Replicator::holding`): a master then advertises a raised priority, so a
//!   healed partition leaves the address with the node that has the data;
//! * `clients begin`, `client <local addr:port> <client addr:port>` lines, `clients end`
//!   whenever the client connections the peers told about change
//!   (`memha_repl::clients`): if the speaker takes a VIP over from a silent master, it
//!   resets those connections at once (tickle ACKs) instead of leaving pooled clients to
//!   their TCP retransmission timer;
//! * `hb` every 100 ms from inside the runtime: if the runtime wedges, the heartbeats stop
//!   and the supervisor resigns.
//!
//! and hears back the speaker's state (`crate::vrrp_view` blocks) for `stats vrrp` and
//! `/metrics`; when a block says the speaker took over from a master that went silent,
//! replication stops waiting for that peer's acknowledgements at once
//! (`memha_repl::node::Replicator::peer_went_silent`). If this process dies, the supervisor
//! sees the socket close at that instant.

use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use memha_server::shared::Stop;
use memha_server::vrrp_view::VrrpView;
use memha_server::Shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The variable that carries the inherited socket's descriptor number.
pub const FD_VAR: &str = "MEMHA_SUPERVISED_FD";

/// Heartbeat period.
const BEAT: Duration = Duration::from_millis(100);

/// Longest line or block accepted from the supervisor, so a bug there cannot grow memory.
const MAX_BLOCK: usize = 256 * 1024;

/// The inherited socket, when this process was started by a supervisor. The variable is
/// removed so that nothing this process starts inherits the claim.
pub fn take() -> Option<std::os::unix::net::UnixStream> {
    let value = std::env::var(FD_VAR).ok()?;
    std::env::remove_var(FD_VAR);
    let fd: i32 = value.parse().ok().filter(|fd| *fd > 2)?;
    // SAFETY: the supervisor passed this descriptor to us for exactly this purpose, and the
    // variable is read once (removed above), so nothing else owns it.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // Not inherited by anything this process starts.
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(stream)
}

/// Runs as a service of the server's runtime for the life of the process.
pub async fn serve(stream: std::os::unix::net::UnixStream, shared: Arc<Shared>) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::UnixStream::from_std(stream) else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let reader_shared = shared.clone();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut silent_takeovers: Option<Vec<u64>> = None;
        let mut chunk = [0u8; 4096];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return, // the supervisor is gone; PR_SET_PDEATHSIG stops us
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = find_block_end(&buf) {
                let block = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + "end\n".len());
                let view = VrrpView::decode(block.lines());
                if let Some(repl) = &reader_shared.repl {
                    for ip in new_silent_masters(&view, &mut silent_takeovers) {
                        repl.peer_went_silent(ip);
                    }
                }
                *reader_shared.vrrp.lock() = Some(view);
            }
            if buf.len() > MAX_BLOCK {
                tracing::warn!("supervisor sent an oversized VRRP status block; ignored");
                buf.clear();
            }
        }
    });
    let mut stop = shared.stop_signal();
    let mut last_ready = None;
    let mut last_hold = None;
    let mut holding = shared.repl.as_ref().map(|r| r.watch_holding());
    let mut peer_clients = shared.repl.as_ref().map(|r| r.watch_peer_clients());
    let mut told_clients = 0;
    if wr.write_all(b"started\n").await.is_err() {
        reader.abort();
        return;
    }
    let mut tick = tokio::time::interval(BEAT);
    loop {
        let stopping = *stop.borrow() != Stop::Running;
        let ready = shared.ready.load(Relaxed) && !stopping;
        let mut msg = Vec::with_capacity(16);
        if last_ready != Some(ready) {
            msg.extend_from_slice(if ready { b"ready 1\n" } else { b"ready 0\n" });
            last_ready = Some(ready);
        }
        let hold = holding.as_mut().is_some_and(|h| *h.borrow_and_update());
        if last_hold != Some(hold) {
            msg.extend_from_slice(if hold { b"hold 1\n" } else { b"hold 0\n" });
            last_hold = Some(hold);
        }
        if let (Some(w), Some(repl)) = (peer_clients.as_mut(), shared.repl.as_ref()) {
            let generation = *w.borrow_and_update();
            if generation != told_clients {
                told_clients = generation;
                msg.extend_from_slice(&client_lines(&repl.peer_clients()));
            }
        }
        msg.extend_from_slice(b"hb\n");
        if wr.write_all(&msg).await.is_err() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = async { holding.as_mut().expect("guarded").changed().await }, if holding.is_some() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    tick.tick().await; // the stop sender is gone: keep to the beat
                }
            }
        }
    }
    reader.abort();
}

/// The masters that went silent since the previous view (instances whose
/// `silent_master_takeovers` grew); the first view only records the counts.
fn new_silent_masters(view: &VrrpView, seen: &mut Option<Vec<u64>>) -> Vec<std::net::IpAddr> {
    let get = |i: &memha_server::vrrp_view::VrrpInstanceView, key: &str| {
        i.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let counts: Vec<u64> = view
        .instances
        .iter()
        .map(|i| {
            get(i, "silent_master_takeovers")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let mut out = Vec::new();
    if let Some(before) = seen.as_ref() {
        for (i, inst) in view.instances.iter().enumerate() {
            if counts[i] > before.get(i).copied().unwrap_or(0) {
                if let Some(ip) = get(inst, "silent_master").and_then(|v| v.parse().ok()) {
                    out.push(ip);
                }
            }
        }
    }
    *seen = Some(counts);
    out
}

/// The `clients` block for the supervisor.
fn client_lines(conns: &[memha_repl::clients::ClientConn]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(32 + conns.len() * 48);
    out.extend_from_slice(b"clients begin\n");
    for c in conns {
        let _ = writeln!(out, "client {} {}", c.local, c.client);
    }
    out.extend_from_slice(b"clients end\n");
    out
}

/// Index of the `end\n` line that closes the first complete block in `buf`.
fn find_block_end(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"end\n") {
        return Some(0);
    }
    buf.windows(5).position(|w| w == b"\nend\n").map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_master_is_reported_once_and_not_at_the_first_view() {
        let view = |n: u64, ip: &str| {
            VrrpView::decode(
                format!("instance VI_1\nsilent_master_takeovers {n}\nsilent_master {ip}\n")
                    .lines()
                    .collect::<Vec<_>>(),
            )
        };
        let mut seen = None;
        assert!(new_silent_masters(&view(3, "10.0.0.1"), &mut seen).is_empty());
        assert!(new_silent_masters(&view(3, "10.0.0.1"), &mut seen).is_empty());
        assert_eq!(
            new_silent_masters(&view(4, "10.0.0.2"), &mut seen),
            vec!["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(new_silent_masters(&view(4, "10.0.0.2"), &mut seen).is_empty());
        assert!(new_silent_masters(&view(5, "none"), &mut seen).is_empty());
    }

    #[test]
    fn blocks_are_found_at_line_starts() {
        assert_eq!(find_block_end(b"end\n"), Some(0));
        assert_eq!(
            find_block_end(b"instance A\nstate MASTER\nend\nrest"),
            Some(24)
        );
        assert_eq!(find_block_end(b"instance A\nbackend x\n"), None);
        assert_eq!(find_block_end(b"instance A\nend"), None);
    }
}

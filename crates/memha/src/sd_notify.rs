//! systemd's readiness protocol (`sd_notify(3)`), for `Type=notify` units.
//!
//! When systemd starts a `Type=notify` service it sets `$NOTIFY_SOCKET` to a unix datagram
//! socket: a path, or `@name` for the abstract namespace. The service sends newline-separated
//! `KEY=VALUE` assignments there: `READY=1` once it serves (systemd holds back units ordered
//! after it, and `systemctl start` returns, until then), `STATUS=...` for `systemctl status`,
//! `STOPPING=1` when it begins to shut down. Without `$NOTIFY_SOCKET` nothing is sent.
//!
//! memha is ready once its listeners are bound (they are, before the runtime starts) and,
//! with replication, once [`Shared::ready`] says it has synced from its peers (or gave up
//! waiting for a dead one), the same moment the admin endpoint's `/ready` turns 200.
//! [`serve`] runs as a service of the server's runtime and watches for that.
//!
//! With `-d` the process that would notify is a forked child, which systemd ignores under its
//! default `NotifyAccess=main`: do not combine `-d` with `Type=notify`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use memha_server::shared::Stop;
use memha_server::Shared;

/// The environment variable systemd passes the socket in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// How often readiness is checked while waiting for the first sync.
const POLL: Duration = Duration::from_millis(50);

/// One notification: `KEY=VALUE` lines, each ending with a newline. Values may not contain
/// newlines (the protocol has no escaping); any are replaced with spaces.
pub fn message(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(key);
        out.push('=');
        out.extend(value.chars().map(|c| if c == '\n' { ' ' } else { c }));
        out.push('\n');
    }
    out
}

/// Where `$NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(std::path::PathBuf),
    /// `@name`: a socket in the abstract namespace (the name without the `@`).
    Abstract(Vec<u8>),
}

/// Parses `$NOTIFY_SOCKET`'s value; `None` when it is empty or not a unix socket address
/// (systemd also allows `vsock:`, which memha does not speak).
pub fn target(value: &std::ffi::OsStr) -> Option<Target> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'@' => Some(Target::Abstract(bytes[1..].to_vec())),
        b'/' => Some(Target::Path(value.into())),
        _ => None,
    }
}

/// Sends one message to `target`.
pub fn send_to(target: &Target, msg: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match target {
        Target::Path(p) => sock.send_to(msg.as_bytes(), p)?,
        Target::Abstract(name) => {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(msg.as_bytes(), &addr)?
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            {
                let _ = name;
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "abstract unix sockets exist on Linux only",
                ));
            }
        }
    };
    Ok(())
}

/// Sends `fields` to `$NOTIFY_SOCKET`. `Ok(false)` when it is not set (not under systemd).
pub fn notify(fields: &[(&str, &str)]) -> io::Result<bool> {
    let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let Some(target) = target(&value) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{NOTIFY_SOCKET}={value:?} is not a unix socket path or @name"),
        ));
    };
    send_to(&target, &message(fields))?;
    Ok(true)
}

fn notify_logged(fields: &[(&str, &str)]) {
    match notify(fields) {
        Ok(true) => tracing::debug!(
            "sd_notify: {}",
            message(fields).trim_end().replace('\n', " ")
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot notify systemd: {e}"),
    }
}

/// The text `STATUS=` carries once the node is ready.
pub fn ready_status(shared: &Shared) -> String {
    let peers = shared
        .repl
        .as_ref()
        .map(|_| " (synced with peers)")
        .unwrap_or("");
    format!(
        "serving{peers}; memory limit {} MiB",
        shared.store.memory_limit() / (1024 * 1024)
    )
}

/// A service for [`memha_server::Bound::add_service`]: `READY=1` once the node is ready,
/// `STOPPING=1` when it starts to stop. Returns at once when not started by systemd.
pub async fn serve(shared: Arc<Shared>) {
    if std::env::var_os(NOTIFY_SOCKET).is_none() {
        return;
    }
    let mut stop = shared.stop_signal();
    if !shared.ready.load(Relaxed) {
        notify_logged(&[(
            "STATUS",
            "waiting for the first sync from the replication peers",
        )]);
        while !shared.ready.load(Relaxed) {
            if *stop.borrow() != Stop::Running {
                notify_logged(&[("STOPPING", "1"), ("STATUS", "stopping")]);
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    notify_logged(&[("READY", "1"), ("STATUS", &ready_status(&shared))]);
    while *stop.borrow_and_update() == Stop::Running {
        if stop.changed().await.is_err() {
            return;
        }
    }
    notify_logged(&[("STOPPING", "1"), ("STATUS", "stopping")]);
}

/// `STOPPING=1`, sent from the main thread once the server has stopped: the service task
/// may not get to run again while the runtime shuts down, and systemd must hear it.
pub fn stopping() {
    if std::env::var_os(NOTIFY_SOCKET).is_some() {
        notify_logged(&[("STOPPING", "1"), ("STATUS", "stopped")]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn message_is_key_value_lines() {
        assert_eq!(message(&[("READY", "1")]), "READY=1\n");
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving")]),
            "READY=1\nSTATUS=serving\n"
        );
        assert_eq!(message(&[("STATUS", "a\nb")]), "STATUS=a b\n");
        assert_eq!(message(&[]), "");
    }

    #[test]
    fn targets() {
        assert_eq!(
            target(OsStr::new("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            target(OsStr::new("@memha/notify")),
            Some(Target::Abstract(b"memha/notify".to_vec()))
        );
        assert_eq!(target(OsStr::new("")), None);
        assert_eq!(target(OsStr::new("vsock:2:1234")), None);
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("memha-sdn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(&Target::Path(path.clone()), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("memha-sdn-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&Target::Abstract(name.into_bytes()), "STOPPING=1\n").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }
}

//! Running under a service manager: systemd's readiness notification (`$NOTIFY_SOCKET`) and
//! `SIGHUP` reloading the config file. Each test starts the real binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "memha-service-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running memha, killed when dropped. stderr goes to a file so it can be read any time.
struct Node {
    child: Child,
    stderr: PathBuf,
    port_file: PathBuf,
}

impl Node {
    fn start(dir: &Path, notify: Option<&str>, args: &[&str]) -> Node {
        let stderr = dir.join("stderr");
        let port_file = dir.join("ports");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memha"));
        cmd.args(["-p", "0", "-l", "127.0.0.1"]).args(args);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        cmd.env_remove("NOTIFY_SOCKET").env_remove("RUST_LOG");
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", n);
        }
        let child = cmd
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn memha");
        Node {
            child,
            stderr,
            port_file,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.port_file) {
                if let Some(line) = text.lines().find(|l| l.starts_with("TCP")) {
                    return line.rsplit(' ').next().unwrap().parse().unwrap();
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("memha exited with {st}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "no port file: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The datagrams a notify socket received within `timeout`, until `until` matches one.
fn receive_until(sock: &UnixDatagram, timeout: Duration, until: &str) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == until);
            got.push(msg);
            if done {
                break;
            }
        }
    }
    got
}

fn has_line(msgs: &[String], line: &str) -> bool {
    msgs.iter().any(|m| m.lines().any(|l| l == line))
}

fn stats_settings(port: u16) -> Vec<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"stats settings\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "END\r\n" {
            return out;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        parts.next();
        out.push((
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        ));
    }
}

fn setting(port: u16, name: &str) -> String {
    stats_settings(port)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[test]
fn notifies_ready_on_a_socket_path_and_stopping_on_sigterm() {
    let dir = Dir::new();
    let sock_path = dir.0.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut node = Node::start(&dir.0, Some(sock_path.to_str().unwrap()), &[]);
    let msgs = receive_until(&sock, Duration::from_secs(10), "READY=1");
    assert!(has_line(&msgs, "READY=1"), "{msgs:?}\n{}", node.log());
    assert!(
        msgs.iter()
            .any(|m| m.lines().any(|l| l.starts_with("STATUS=serving"))),
        "{msgs:?}"
    );
    // Ready means serving.
    let port = node.port();
    assert_eq!(setting(port, "maxbytes"), (64u64 << 20).to_string());
    node.signal(libc::SIGTERM);
    let msgs = receive_until(&sock, Duration::from_secs(10), "STOPPING=1");
    assert!(has_line(&msgs, "STOPPING=1"), "{msgs:?}\n{}", node.log());
}

#[test]
fn notifies_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let dir = Dir::new();
    let name = format!(
        "memha-test-notify-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let node = Node::start(&dir.0, Some(&format!("@{name}")), &[]);
    let msgs = receive_until(&sock, Duration::from_secs(10), "READY=1");
    assert!(has_line(&msgs, "READY=1"), "{msgs:?}\n{}", node.log());
}

#[test]
fn with_replication_ready_waits_for_the_peers() {
    let dir = Dir::new();
    let sock_path = dir.0.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // A replication port, and a peer port where nobody listens.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (repl, dead) = (free().to_string(), format!("127.0.0.1:{}", free()));
    let started = Instant::now();
    let node = Node::start(
        &dir.0,
        Some(sock_path.to_str().unwrap()),
        &["-X", &repl, "-x", &dead],
    );
    let msgs = receive_until(&sock, Duration::from_secs(30), "READY=1");
    assert!(has_line(&msgs, "READY=1"), "{msgs:?}\n{}", node.log());
    // Before READY=1: a status saying what it waits for. READY=1 comes only once the node
    // gave up on the dead peer (the replication's grace period).
    let ready_at = msgs.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(
        msgs[..ready_at]
            .iter()
            .any(|m| m.contains("STATUS=waiting for the first sync")),
        "{msgs:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1), "{msgs:?}");
}

#[test]
fn without_notify_socket_nothing_changes() {
    let dir = Dir::new();
    let mut node = Node::start(&dir.0, None, &[]);
    let port = node.port();
    assert_eq!(setting(port, "maxbytes"), (64u64 << 20).to_string());
    assert!(node.alive());
}

#[test]
fn sighup_reloads_the_memory_limit_and_log_level_and_names_the_rest() {
    let dir = Dir::new();
    let config = dir.0.join("memha.toml");
    std::fs::write(
        &config,
        "[server]\nmemory_limit_mb = 64\nthreads = 2\n[logging]\nlevel = \"info\"\n",
    )
    .unwrap();
    let sock_path = dir.0.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut node = Node::start(
        &dir.0,
        Some(sock_path.to_str().unwrap()),
        &["--config", config.to_str().unwrap()],
    );
    // READY=1 is sent only once SIGHUP is handled.
    let msgs = receive_until(&sock, Duration::from_secs(10), "READY=1");
    assert!(has_line(&msgs, "READY=1"), "{msgs:?}\n{}", node.log());
    let port = node.port();
    assert_eq!(setting(port, "maxbytes"), (64u64 << 20).to_string());

    std::fs::write(
        &config,
        "[server]\nmemory_limit_mb = 128\nthreads = 3\n[logging]\nlevel = \"debug\"\n",
    )
    .unwrap();
    node.signal(libc::SIGHUP);
    let want = (128u64 << 20).to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while setting(port, "maxbytes") != want {
        assert!(
            Instant::now() < deadline,
            "maxbytes did not change: {}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(node.alive());
    // Wait for the log lines (written right after the limit changed).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.log().contains("restart memha to apply") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = node.log();
    assert!(log.contains("log level info -> debug"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("not reloaded") && l.contains("server.threads")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("not reloaded") && l.contains("memory_limit_mb")),
        "{log}"
    );
    // `threads` still is what it was.
    assert_eq!(setting(port, "num_threads"), "2");

    // A file that no longer parses changes nothing, and the node keeps serving.
    std::fs::write(&config, "[server]\nmemory_limit_mb = \"lots\"\n").unwrap();
    node.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.log().contains("nothing changed") {
        assert!(Instant::now() < deadline, "{}", node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(node.alive());
    assert_eq!(setting(port, "maxbytes"), want);
}

#[test]
fn repeated_sighup_keeps_serving() {
    // SIGHUP's default action ends a process; memha only reloads.
    let dir = Dir::new();
    let sock_path = dir.0.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut node = Node::start(&dir.0, Some(sock_path.to_str().unwrap()), &[]);
    let msgs = receive_until(&sock, Duration::from_secs(10), "READY=1");
    assert!(has_line(&msgs, "READY=1"), "{msgs:?}");
    for _ in 0..3 {
        node.signal(libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(node.alive(), "{}", node.log());
    let port = node.port();
    assert_eq!(setting(port, "maxbytes"), (64u64 << 20).to_string());
}

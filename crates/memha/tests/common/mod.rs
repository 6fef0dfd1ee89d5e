//! Test harness: start the real `memha` binary on a free loopback port and talk raw bytes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running memha process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub udp_port: Option<u16>,
    dir: PathBuf,
}

impl Server {
    /// Start memha with these extra flags (`-p 0 -l 127.0.0.1` are added).
    pub fn start(args: &[&str]) -> Server {
        Self::try_start(args).expect("memha started")
    }

    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!(
            "memha-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port_file = dir.join("ports");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memha"));
        cmd.args(["-p", "0", "-l", "127.0.0.1"]).args(args);
        if is_root() && !args.contains(&"-u") {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut port = None;
                let mut udp_port = None;
                for line in text.lines() {
                    let p: u16 = line.rsplit(' ').next().unwrap().parse().unwrap();
                    if line.starts_with("TCP") {
                        port = Some(p);
                    } else if line.starts_with("UDP") {
                        udp_port = Some(p);
                    }
                }
                if let Some(port) = port {
                    return Ok(Server {
                        child,
                        port,
                        udp_port,
                        dir,
                    });
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                return Err(format!("memha exited with {status}: {err}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("memha did not start within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A raw protocol connection.
pub struct Client {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Read exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).expect("read");
        buf
    }

    /// Read one line including its `\r\n`.
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_line(&mut s).expect("read line");
        s
    }

    /// Send a request and expect exactly `reply` back. Fails as soon as the bytes received
    /// stop matching, showing what did arrive.
    pub fn expect(&mut self, request: &str, reply: &str) {
        self.expect_bytes(request.as_bytes(), reply.as_bytes());
    }

    /// `stats [group]` as (name, value) pairs.
    pub fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let cmd = if group.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {group}\r\n")
        };
        self.send(cmd.as_bytes());
        let mut out = Vec::new();
        loop {
            let line = self.line();
            if line == "END\r\n" || line.is_empty() {
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

    pub fn stat(&mut self, name: &str) -> String {
        self.stats("")
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// True when the server closed the connection (read returns 0).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for the integration suites (text.rs, limits.rs, robustness.rs).

/// The memha binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_memha")
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the server process in KiB (`VmRSS` from /proc).
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, sig);
        }
    }

    /// Start memha listening on a unix socket only (`-s path`); `port` is 0. Returns once the
    /// socket accepts connections.
    pub fn start_unix(path: &std::path::Path, args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "memha-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("-s").arg(path).args(args);
        if is_root() && !args.contains(&"-u") {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn memha");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Server {
                    child,
                    port: 0,
                    udp_port: None,
                    dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).ok();
                panic!("memha exited with {status}: {err}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("memha did not open {} within 10 s", path.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection that has not been tuned (no read timeout), for tests that only hold it.
    pub fn raw_stream(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).expect("connect")
    }
}

/// `VmRSS` of a process in KiB (0 if it cannot be read).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Run memha with `args` and expect it to exit on its own (bad flags); returns the exit
/// status and stderr. Panics if it is still running after 10 s.
pub fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memha");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("memha {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Client {
    /// Send raw bytes and expect exactly `reply` back (see [`Client::expect`]).
    pub fn expect_bytes(&mut self, request: &[u8], reply: &[u8]) {
        self.send(request);
        self.expect_reply(request, reply);
    }

    /// Read exactly `reply`; on a mismatch, a close or a timeout, panic with what arrived.
    pub fn expect_reply(&mut self, request: &[u8], reply: &[u8]) {
        let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
        let mut got = Vec::with_capacity(reply.len());
        let mut buf = vec![0u8; reply.len().clamp(1, 1 << 16)];
        while got.len() < reply.len() {
            let want = (reply.len() - got.len()).min(buf.len());
            let start = got.len();
            match self.reader.read(&mut buf[..want]) {
                Ok(0) => panic!(
                    "request {:?}: connection closed after {:?}; expected {:?}",
                    shown(request),
                    shown(&got),
                    shown(reply)
                ),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "request {:?}: {e} after receiving {:?}; expected {:?}",
                    shown(request),
                    shown(&got),
                    shown(reply)
                ),
            }
            if got[start..] != reply[start..got.len()] {
                // Collect a little more for the message.
                let _ = self
                    .stream
                    .set_read_timeout(Some(Duration::from_millis(200)));
                let mut more = [0u8; 512];
                if let Ok(n) = self.reader.read(&mut more) {
                    got.extend_from_slice(&more[..n]);
                }
                let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
                let at = got.iter().zip(reply).position(|(a, b)| a != b).unwrap_or(0);
                let from = at.saturating_sub(40);
                panic!(
                    "request {:?}: reply differs at byte {at}:\n  got:      {:?}\n  expected: {:?}",
                    shown(request),
                    shown(&got[from..]),
                    shown(&reply[from..])
                );
            }
        }
    }

    /// Read lines up to and including one equal to `END\r\n`; returns them all, joined.
    pub fn read_until_end(&mut self) -> String {
        let mut all = String::new();
        loop {
            let line = self.line();
            assert!(
                !line.is_empty(),
                "connection closed before END; got {all:?}"
            );
            all.push_str(&line);
            if line == "END\r\n" {
                return all;
            }
        }
    }

    /// `gets key` → the cas unique, or `None` on a miss.
    pub fn gets_cas(&mut self, key: &str) -> Option<u64> {
        self.send(format!("gets {key}\r\n").as_bytes());
        let head = self.line();
        if head == "END\r\n" {
            return None;
        }
        let parts: Vec<&str> = head.trim_end().split(' ').collect();
        assert_eq!(parts.len(), 5, "gets reply {head:?}");
        assert_eq!(parts[0], "VALUE");
        let len: usize = parts[3].parse().unwrap();
        self.read_exact(len + 2);
        assert_eq!(self.line(), "END\r\n");
        Some(parts[4].parse().unwrap())
    }

    /// Numeric value of one general stat.
    pub fn stat_u64(&mut self, name: &str) -> u64 {
        let v = self.stat(name);
        v.parse()
            .unwrap_or_else(|_| panic!("stat {name} = {v:?} is not a number"))
    }

    /// Check the server still answers on this connection.
    pub fn ping(&mut self) {
        self.send(b"version\r\n");
        let line = self.line();
        assert!(line.starts_with("VERSION "), "version reply {line:?}");
    }

    /// Bound the blocking reads of this connection.
    pub fn set_timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for meta.rs and binary.rs.

impl Client {
    /// Send `request` and return one reply line (with its `\r\n`).
    pub fn ask_line(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        self.line()
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for replication.rs.

pub mod proxy;
pub mod repl;

/// One HTTP/1.1 GET on 127.0.0.1:`port` (the admin endpoint closes after answering): the
/// whole response, head and body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin endpoint listens");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

impl Client {
    /// `stats <group>` as a map.
    pub fn stats_map(&mut self, group: &str) -> std::collections::HashMap<String, String> {
        self.stats(group).into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for failover.rs: network-namespace labs (root only).

pub mod lab;

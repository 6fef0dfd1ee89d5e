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
                    return Ok(Server { child, port, udp_port, dir });
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
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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

    /// Send a request and expect exactly `reply` back.
    pub fn expect(&mut self, request: &str, reply: &str) {
        self.send(request.as_bytes());
        let got = self.read_exact(reply.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            reply,
            "request {request:?}"
        );
    }

    /// `stats [group]` as (name, value) pairs.
    pub fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let cmd = if group.is_empty() { "stats\r\n".to_string() } else { format!("stats {group}\r\n") };
        self.send(cmd.as_bytes());
        let mut out = Vec::new();
        loop {
            let line = self.line();
            if line == "END\r\n" || line.is_empty() {
                return out;
            }
            let mut parts = line.trim_end().splitn(3, ' ');
            parts.next();
            out.push((parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string()));
        }
    }

    pub fn stat(&mut self, name: &str) -> String {
        self.stats("").into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
    }

    /// True when the server closed the connection (read returns 0).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

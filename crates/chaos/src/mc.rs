//! A small blocking memcached text-protocol client: one connection, one request at a
//! time, each with a deadline. Enough for the workload, the readiness checks and the final
//! dump; nothing here retries.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How a request failed.
#[derive(Debug, Clone)]
pub enum McError {
    /// No reply before the deadline: the request may or may not have been applied.
    Timeout,
    /// The connection broke; `got_reply_bytes` says whether any of the reply had arrived.
    Io {
        msg: String,
        reset_or_eof: bool,
        got_reply_bytes: bool,
    },
    /// The reply could not be parsed.
    Protocol(String),
}

impl std::fmt::Display for McError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McError::Timeout => write!(f, "timeout"),
            McError::Io { msg, .. } => write!(f, "io: {msg}"),
            McError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

/// One item of a retrieval reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub key: String,
    pub flags: u32,
    pub cas: Option<u64>,
    pub data: Vec<u8>,
}

/// What kind of reply a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// One line: STORED, DELETED, a number, an error...
    Line,
    /// `VALUE` blocks until `END` (or one error line).
    Values,
    /// `STAT` lines until `END`.
    Stats,
}

#[derive(Debug, Clone)]
pub enum Reply {
    Line(String),
    Values(Vec<Value>),
    Stats(Vec<(String, String)>),
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// At least one request completed on this connection.
    pub used: bool,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            used: false,
        })
    }

    /// The server closed (or reset) this idle connection: nothing is expected from it
    /// between requests, so anything readable means it is gone.
    pub fn peer_closed(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents != 0
    }

    /// Sends `req` and reads the reply, all before `deadline`.
    pub fn request(
        &mut self,
        req: &[u8],
        expect: Expect,
        deadline: Instant,
    ) -> Result<Reply, McError> {
        self.buf.clear();
        let left = remaining(deadline)?;
        self.stream
            .set_write_timeout(Some(left))
            .map_err(|e| io_err(e, false))?;
        self.stream.write_all(req).map_err(|e| io_err(e, false))?;
        let reply = match expect {
            Expect::Line => Reply::Line(self.line(deadline)?),
            Expect::Stats => {
                let mut out = Vec::new();
                loop {
                    let l = self.line(deadline)?;
                    if l == "END" {
                        break Reply::Stats(out);
                    }
                    match l.strip_prefix("STAT ") {
                        Some(rest) => {
                            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
                            out.push((k.to_string(), v.to_string()));
                        }
                        None if out.is_empty() => break Reply::Line(l),
                        None => return Err(McError::Protocol(format!("in stats: {l}"))),
                    }
                }
            }
            Expect::Values => {
                let mut out = Vec::new();
                loop {
                    let l = self.line(deadline)?;
                    if l == "END" {
                        break Reply::Values(out);
                    }
                    let Some(rest) = l.strip_prefix("VALUE ") else {
                        if out.is_empty() {
                            break Reply::Line(l);
                        }
                        return Err(McError::Protocol(format!("in values: {l}")));
                    };
                    let f: Vec<&str> = rest.split(' ').collect();
                    let bad = || McError::Protocol(format!("bad VALUE line: {l}"));
                    if f.len() < 3 {
                        return Err(bad());
                    }
                    let flags = f[1].parse().map_err(|_| bad())?;
                    let len: usize = f[2].parse().map_err(|_| bad())?;
                    let cas = match f.get(3) {
                        Some(c) => Some(c.parse().map_err(|_| bad())?),
                        None => None,
                    };
                    let mut data = self.exact(len + 2, deadline)?;
                    if !data.ends_with(b"\r\n") {
                        return Err(McError::Protocol("data block without CRLF".into()));
                    }
                    data.truncate(len);
                    out.push(Value {
                        key: f[0].to_string(),
                        flags,
                        cas,
                        data,
                    });
                }
            }
        };
        self.used = true;
        Ok(reply)
    }

    fn fill(&mut self, deadline: Instant, got_any: bool) -> Result<(), McError> {
        let left = remaining(deadline)?;
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|e| io_err(e, got_any))?;
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(McError::Io {
                msg: "connection closed".into(),
                reset_or_eof: true,
                got_reply_bytes: got_any,
            }),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(McError::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(io_err(e, got_any)),
        }
    }

    fn line(&mut self, deadline: Instant) -> Result<String, McError> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            let got = !self.buf.is_empty();
            self.fill(deadline, got)?;
        }
    }

    fn exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, McError> {
        while self.buf.len() < n {
            self.fill(deadline, true)?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}

fn remaining(deadline: Instant) -> Result<Duration, McError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(McError::Timeout)
    } else {
        Ok(left)
    }
}

fn io_err(e: io::Error, got_reply_bytes: bool) -> McError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return McError::Timeout;
    }
    let reset_or_eof = matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionAborted
    );
    McError::Io {
        msg: e.to_string(),
        reset_or_eof,
        got_reply_bytes,
    }
}

/// `stats <group>` on `conn`, as (key, value) pairs.
pub fn stats(
    conn: &mut Conn,
    group: &str,
    timeout: Duration,
) -> Result<Vec<(String, String)>, String> {
    let req = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    match conn.request(req.as_bytes(), Expect::Stats, Instant::now() + timeout) {
        Ok(Reply::Stats(s)) => Ok(s),
        Ok(other) => Err(format!("stats {group}: unexpected reply {other:?}")),
        Err(e) => Err(format!("stats {group}: {e}")),
    }
}

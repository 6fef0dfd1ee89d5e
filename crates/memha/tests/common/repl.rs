//! Replication helpers shared by the replication suites: memha nodes with `-X`/`-x`, pairs
//! (directly or through the fault-injecting proxy), waiting for links and for quiescence, and
//! bulk reads for comparing whole key spaces across nodes.
//!
//! Conditions are polled with deadlines, never slept for.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::{Client, Server};

/// A TCP port on loopback that was free a moment ago, for `-X`. Taken below the kernel's
/// ephemeral range and never handed out twice by this process (a different range from the
/// one `replication.rs` uses, so both suites can run at once).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(197);
    loop {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (10_000 + n % 9_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Poll `f` every `every` until it holds; `false` if `timeout` passed first.
pub fn poll_every(every: Duration, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Poll `f` until it holds; `false` if `timeout` passed first.
pub fn poll(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    poll_every(Duration::from_millis(10), timeout, f)
}

/// Poll `f` until it holds; panic naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        poll(timeout, f),
        "timed out after {timeout:?} waiting for: {what}"
    );
}

pub const DEADLINE: Duration = Duration::from_secs(10);

/// One memha process with replication, restartable with the same ports.
pub struct Node {
    pub server: Server,
    pub name: &'static str,
    pub id: u16,
    pub repl_port: u16,
    args: Vec<String>,
}

impl Node {
    /// Start a node with `--repl-node-id id`, `-X repl_port`, one `-x` per peer, and `extra`.
    pub fn start(
        name: &'static str,
        id: u16,
        repl_port: u16,
        peers: &[String],
        extra: &[&str],
    ) -> Node {
        let mut args: Vec<String> = vec![
            "-X".into(),
            repl_port.to_string(),
            "--repl-node-id".into(),
            id.to_string(),
        ];
        for p in peers {
            args.push("-x".into());
            args.push(p.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Node {
            server: Server::start(&refs),
            name,
            id,
            repl_port,
            args,
        }
    }

    pub fn client(&self) -> Client {
        self.server.connect()
    }

    /// `stats replication` as a map (on a fresh connection).
    pub fn repl(&self) -> HashMap<String, String> {
        self.client().stats_map("replication")
    }

    /// One numeric `stats replication` value (0 when absent).
    pub fn repl_u64(&self, key: &str) -> u64 {
        num(&self.repl(), key)
    }

    pub fn repl_str(&self, key: &str) -> String {
        self.repl().get(key).cloned().unwrap_or_default()
    }

    /// Ready, and every peer link streaming.
    pub fn linked(&self) -> bool {
        linked(&self.repl())
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.server.signal(libc::SIGKILL);
        assert!(
            self.server.wait_exit(DEADLINE).is_some(),
            "{} survived SIGKILL",
            self.name
        );
    }

    /// Start the same node again with the same client and replication ports.
    pub fn restart(&mut self) {
        let port = self.server.port.to_string();
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["-p", &port]);
        self.server = Server::start(&args);
        assert_eq!(self.server.port.to_string(), port, "same client port");
    }

    pub fn stats_dump(&self) -> String {
        let mut v: Vec<_> = self.repl().into_iter().collect();
        v.sort();
        v.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A numeric value of a stats map (0 when absent).
pub fn num(r: &HashMap<String, String>, key: &str) -> u64 {
    r.get(key)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{key} = {v:?}")))
        .unwrap_or(0)
}

/// Ready, and every peer link of this `stats replication` map streaming.
pub fn linked(r: &HashMap<String, String>) -> bool {
    r.get("ready").map(String::as_str) == Some("1")
        && (0..)
            .map(|i| r.get(&format!("peer{i}:state")))
            .take_while(Option::is_some)
            .all(|s| s.map(String::as_str) == Some("streaming"))
}

/// Wait until every node is ready with every link streaming.
pub fn wait_linked(nodes: &[&Node]) {
    for n in nodes {
        if !poll(DEADLINE, || n.linked()) {
            panic!("{} never linked: {}", n.name, n.stats_dump());
        }
    }
}

/// True when every link of every node is streaming and has applied everything its origin has
/// written so far (`peerN:applied_seq` ≥ the origin's `backlog_last_seq`).
pub fn quiet(nodes: &[&Node]) -> bool {
    let stats: Vec<_> = nodes.iter().map(|n| n.repl()).collect();
    let last: HashMap<u64, u64> = nodes
        .iter()
        .zip(&stats)
        .map(|(n, r)| (u64::from(n.id), num(r, "backlog_last_seq")))
        .collect();
    stats.iter().all(|r| {
        linked(r)
            && (0..)
                .take_while(|i| r.contains_key(&format!("peer{i}:state")))
                .all(|i| {
                    let origin = num(r, &format!("peer{i}:node_id"));
                    let applied = num(r, &format!("peer{i}:applied_seq"));
                    last.get(&origin).is_some_and(|&l| applied >= l)
                })
    })
}

/// Wait until [`quiet`] holds (twice in a row, so nothing was in flight between the reads).
pub fn quiesce(nodes: &[&Node]) {
    let mut streak = 0;
    let ok = poll(DEADLINE, || {
        streak = if quiet(nodes) { streak + 1 } else { 0 };
        streak >= 2
    });
    if !ok {
        let dump: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}: {}", n.name, n.stats_dump()))
            .collect();
        panic!("replication never quiesced:\n{}", dump.join("\n"));
    }
}

/// Two nodes subscribed to each other directly (ids 1 and 2), linked.
pub fn pair(extra_a: &[&str], extra_b: &[&str]) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start("A", 1, pa, &[format!("127.0.0.1:{pb}")], extra_a);
    let b = Node::start("B", 2, pb, &[format!("127.0.0.1:{pa}")], extra_b);
    wait_linked(&[&a, &b]);
    (a, b)
}

/// Two nodes where A subscribes to B *through a proxy* (so B → A data can be cut) and B
/// subscribes to A directly. Returns (A, B, proxy), linked.
pub fn pair_with_proxy(extra_a: &[&str], extra_b: &[&str]) -> (Node, Node, Proxy) {
    let (pa, pb) = (free_port(), free_port());
    let proxy = Proxy::start(&format!("127.0.0.1:{pb}"));
    let a = Node::start("A", 1, pa, &[proxy.addr()], extra_a);
    let b = Node::start("B", 2, pb, &[format!("127.0.0.1:{pa}")], extra_b);
    wait_linked(&[&a, &b]);
    (a, b, proxy)
}

/// Two nodes where *both* subscriptions go through a proxy of their own: (A, B, proxy that A
/// dials to reach B, proxy that B dials to reach A), linked.
pub fn pair_with_proxies(extra_a: &[&str], extra_b: &[&str]) -> (Node, Node, Proxy, Proxy) {
    let (pa, pb) = (free_port(), free_port());
    let to_b = Proxy::start(&format!("127.0.0.1:{pb}"));
    let to_a = Proxy::start(&format!("127.0.0.1:{pa}"));
    let a = Node::start("A", 1, pa, &[to_b.addr()], extra_a);
    let b = Node::start("B", 2, pb, &[to_a.addr()], extra_b);
    wait_linked(&[&a, &b]);
    (a, b, to_b, to_a)
}

/// `gets key` → (value, flags, cas).
pub fn gets(c: &mut Client, key: &str) -> Option<(Vec<u8>, u32, u64)> {
    c.send(format!("gets {key}\r\n").as_bytes());
    let head = c.line();
    if head == "END\r\n" {
        return None;
    }
    let parts: Vec<&str> = head.trim_end().split(' ').collect();
    assert_eq!(parts.len(), 5, "gets reply {head:?}");
    let len: usize = parts[3].parse().unwrap();
    let mut data = c.read_exact(len + 2);
    data.truncate(len);
    assert_eq!(c.line(), "END\r\n");
    Some((data, parts[2].parse().unwrap(), parts[4].parse().unwrap()))
}

/// What one key holds: (value, flags, cas).
pub type Held = (Vec<u8>, u32, u64);

/// `gets` of many keys (in multi-key requests of 100): every key present → (value, flags,
/// cas). Missing keys are absent from the map.
pub fn gets_many(c: &mut Client, keys: &[String]) -> HashMap<String, Held> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let mut req = b"gets".to_vec();
        for k in chunk {
            req.push(b' ');
            req.extend_from_slice(k.as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        loop {
            let head = c.line();
            if head == "END\r\n" {
                break;
            }
            let parts: Vec<&str> = head.trim_end().split(' ').collect();
            assert!(
                parts.len() == 5 && parts[0] == "VALUE",
                "gets reply {head:?}"
            );
            let len: usize = parts[3].parse().unwrap();
            let mut data = c.read_exact(len + 2);
            data.truncate(len);
            out.insert(
                parts[1].to_string(),
                (data, parts[2].parse().unwrap(), parts[4].parse().unwrap()),
            );
        }
    }
    out
}

/// Keys whose (value, flags, cas) differ between two snapshots, described.
pub fn differences(
    keys: &[String],
    (na, a): (&str, &HashMap<String, Held>),
    (nb, b): (&str, &HashMap<String, Held>),
) -> Vec<String> {
    let show = |h: Option<&Held>| {
        h.map(|(v, f, c)| format!("{:?} f{f} c{c}", String::from_utf8_lossy(v)))
            .unwrap_or_else(|| "missing".into())
    };
    keys.iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {na} {} / {nb} {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

/// Wait until `key` on `node` has `value` (or is missing, for `None`).
pub fn wait_value(node: &Node, key: &str, value: Option<&[u8]>) {
    let mut c = node.client();
    let mut last = None;
    let ok = poll(DEADLINE, || {
        last = gets(&mut c, key);
        last.as_ref().map(|i| i.0.as_slice()) == value
    });
    assert!(
        ok,
        "{}: {key:?} is {:?}, expected {:?}",
        node.name,
        last.map(|i| String::from_utf8_lossy(&i.0).into_owned()),
        value.map(String::from_utf8_lossy)
    );
}

pub fn set(c: &mut Client, key: &str, flags: u32, ttl: u32, value: &str) {
    c.expect(
        &format!("set {key} {flags} {ttl} {}\r\n{value}\r\n", value.len()),
        "STORED\r\n",
    );
}

/// Send `requests` (each a complete request) in one write, then read one reply line per
/// request. For replies that are a single line (storage commands, incr/decr, delete).
pub fn pipeline(c: &mut Client, requests: &[String]) -> Vec<String> {
    let mut buf = Vec::with_capacity(requests.iter().map(String::len).sum());
    for r in requests {
        buf.extend_from_slice(r.as_bytes());
    }
    c.send(&buf);
    requests.iter().map(|_| c.line()).collect()
}

/// A connection for a client that may see its server die: a writer half and a line reader
/// that never panic, for bursts that outlive the process they are sent to.
pub struct RawConn {
    pub writer: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        RawConn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// Write all of `buf`; false once the connection is gone.
    pub fn send(&mut self, buf: &[u8]) -> bool {
        self.writer.write_all(buf).is_ok()
    }

    /// One reply line, or `None` once the connection closed or failed.
    pub fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) if !s.ends_with("\r\n") => None,
            Ok(_) => Some(s),
        }
    }

    /// Drain until EOF (or the read timeout).
    pub fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while matches!(self.reader.read(&mut buf), Ok(n) if n > 0) {}
    }
}

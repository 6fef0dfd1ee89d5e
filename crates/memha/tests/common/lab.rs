//! Network-namespace labs for the failover tests (root only).
//!
//! A lab is a small L2 network of "hosts" made of network namespaces, private to one test:
//!
//! ```text
//!   <p>n1  10.96.<N>.11  --\
//!   <p>n2  10.96.<N>.12  ---+--  bridge <p>br in namespace <p>sw (one port <p>p-<node> each)
//!   <p>n3  10.96.<N>.13  --/|
//!   <p>c   10.96.<N>.100 ---/    the client
//! ```
//!
//! `<p>` is `mft<N>-`, N a number chosen by each test, so tests run in parallel without
//! meeting. Every host has one interface, `eth0`, and loopback; nothing in a lab can reach
//! anything outside it, and the host's own namespace is never touched. The default VIP is
//! 10.96.<N>.46.
//!
//! Faults happen at the node's switch port: `partition` drops every frame to and from the
//! node (the kernel here has no netem, matchall or gact, so a clsact qdisc with a catch-all
//! u32 filter redirects frames to a veth whose peer is down, where mirred drops them; the
//! node keeps its carrier), `linkdown` takes the switch port down (the node loses carrier).
//!
//! Processes run inside a namespace with `ip netns exec`, which execs (the PID we hold is the
//! program's). Client code runs on a thread that joined the namespace with `setns`
//! ([`Lab::in_ns`]); sockets it opens belong to that namespace.
//!
//! [`Lab`]'s `Drop` kills, by PID, every process the test started (and their descendants, and
//! anything left inside the lab's namespaces), then deletes the namespaces, also when the test
//! panics; on a panic it first prints the state of the lab and the tail of every log, and keeps
//! the lab's directory (configs, logs, notify calls) for a look, as it does always with
//! `MEMHA_LAB_KEEP=1` in the environment.
//!
//! Conditions are polled every 10 ms with a generous limit ([`WAIT`]); tests assert
//! behaviour (who holds the VIP, states, counters), never how long something took.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default limit for [`Lab::wait`]: far above anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(10);
/// The interface of every lab host.
pub const DEV: &str = "eth0";
/// memcached port of every memha node.
pub const MC_PORT: u16 = 11211;
/// Replication port of every memha node.
pub const REPL_PORT: u16 = 11212;

/// Why this machine cannot run a lab test (`tools`: commands it needs besides `ip`), or
/// `None` when it can.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for tool in std::iter::once(&"ip").chain(tools) {
        let probe = match *tool {
            "keepalived" => "--version",
            _ => "-V",
        };
        let ok = Command::new(tool)
            .arg(probe)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs a command; panics with its output when it fails.
pub fn run(prog: &str, args: &[&str]) -> String {
    try_run(prog, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command; its stdout, or what went wrong.
pub fn try_run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread into namespace `ns` (only this thread: network namespaces are
/// per thread). Sockets the thread opens afterwards live there.
pub fn enter_netns(ns: &str) {
    try_enter_netns(ns).unwrap_or_else(|e| panic!("{e}"));
}

/// [`enter_netns`], reporting failure instead of panicking.
pub fn try_enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{ns}");
    let f = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a descriptor we own; CLONE_NEWNET affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// One memcached text request on a fresh TCP connection: connect, write `req`, read one
/// whole reply (a line, or up to `END`), all within `timeout`.
pub fn mc_request(addr: SocketAddr, req: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(timeout))
        .and_then(|()| s.write_all(req.as_bytes()))
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{addr}: no whole reply within {timeout:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| format!("{addr}: {e}"))?;
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "{addr}: connection closed after {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "{addr}: read: {e} after {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
        if reply_complete(&buf) {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

/// A whole reply: `VALUE …`/`STAT …` blocks end with `END`, anything else is one line.
fn reply_complete(buf: &[u8]) -> bool {
    if !buf.ends_with(b"\r\n") {
        return false;
    }
    if buf.starts_with(b"VALUE ") || buf.starts_with(b"STAT ") {
        buf.ends_with(b"END\r\n")
    } else {
        true
    }
}

/// `STAT name value` lines as a map.
pub fn parse_stats(reply: &str) -> HashMap<String, String> {
    reply
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            (parts.next() == Some("STAT")).then(|| {
                (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// (parent pid, command name, state letter) of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, String, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat.get(close + 2..)?.split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, comm, state))
}

/// Live (not zombie) children of `pid` as (pid, command name).
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, comm, state)) = proc_stat(p) {
            if ppid == pid && state != 'Z' {
                out.push((p, comm));
            }
        }
    }
    out
}

fn descendants_of(pid: u32, out: &mut Vec<u32>) {
    for (c, _) in children_of(pid) {
        if !out.contains(&c) {
            out.push(c);
            descendants_of(c, out);
        }
    }
}

/// Reaps those of `pids` that ended as zombies of this process: orphans of the processes a
/// lab killed are reparented here (the test process makes itself their subreaper in
/// [`Lab::new`]), so none is left behind as `<defunct>`.
fn reap_orphans(pids: &[u32]) {
    let own = std::process::id();
    for &pid in pids {
        if proc_stat(pid).is_some_and(|(ppid, _, state)| ppid == own && state == 'Z') {
            let mut status = 0;
            // SAFETY: waitpid on one specific child of ours that has exited.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        }
    }
}

/// True while the process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(_, _, state)| state != 'Z')
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; callers pass PIDs this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a memha node runs: one `[[vrrp_instance]]` `VI_1` on `eth0`, optionally replication
/// with other lab nodes and a track script. Defaults: VRRPv3, advert_int 0.05, VRID 51, the
/// lab's VIP, preemption on.
#[derive(Clone, Debug)]
pub struct MemhaSpec {
    pub node: String,
    pub priority: u8,
    pub nopreempt: bool,
    pub version: u8,
    pub advert_int: f64,
    pub vrid: u8,
    /// `None`: the lab's VIP.
    pub vip: Option<Ipv4Addr>,
    pub auth_pass: Option<String>,
    /// Replication peers (lab node names); empty = no replication.
    pub peers: Vec<String>,
    /// A `[[vrrp_script]]` `test -e <file>` (interval 0.1, fall 1, rise 1) tracked by VI_1.
    pub track_file: Option<PathBuf>,
    /// `use_vmac = true`.
    pub use_vmac: bool,
    /// Adverts by unicast to these lab nodes (`unicast_peer`, `unicast_src_ip` = own address).
    pub unicast: Vec<String>,
    /// `[replication] ack = "sync"`.
    pub sync_ack: bool,
}

impl MemhaSpec {
    pub fn new(node: &str, priority: u8) -> MemhaSpec {
        MemhaSpec {
            node: node.into(),
            priority,
            nopreempt: false,
            version: 3,
            advert_int: 0.05,
            vrid: 51,
            vip: None,
            auth_pass: None,
            peers: Vec::new(),
            track_file: None,
            use_vmac: false,
            unicast: Vec::new(),
            sync_ack: false,
        }
    }

    /// Writes are acknowledged once a peer applied them (`ack = "sync"`).
    pub fn sync_ack(mut self) -> Self {
        self.sync_ack = true;
        self
    }

    pub fn nopreempt(mut self) -> Self {
        self.nopreempt = true;
        self
    }

    pub fn peers(mut self, peers: &[&str]) -> Self {
        self.peers = peers.iter().map(|p| p.to_string()).collect();
        self
    }

    /// VRRPv2 with this advert interval (whole seconds) and, if given, a PASS password.
    pub fn v2(mut self, advert_int: u8, pass: Option<&str>) -> Self {
        self.version = 2;
        self.advert_int = f64::from(advert_int);
        self.auth_pass = pass.map(str::to_string);
        self
    }

    /// VRRPv3 with this advert interval (seconds, hundredths).
    pub fn v3(mut self, advert_int: f64) -> Self {
        self.version = 3;
        self.advert_int = advert_int;
        self.auth_pass = None;
        self
    }

    pub fn vrid(mut self, vrid: u8) -> Self {
        self.vrid = vrid;
        self
    }

    pub fn vip(mut self, vip: Ipv4Addr) -> Self {
        self.vip = Some(vip);
        self
    }

    pub fn unicast_to(mut self, peers: &[&str]) -> Self {
        self.unicast = peers.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn use_vmac(mut self) -> Self {
        self.use_vmac = true;
        self
    }

    pub fn track_file(mut self, file: &Path) -> Self {
        self.track_file = Some(file.to_path_buf());
        self
    }
}

/// A memha supervisor started by [`Lab::start_memha`].
#[derive(Clone, Debug)]
pub struct Memha {
    pub node: String,
    /// The supervisor's PID (the data process is its child: [`Lab::data_pid`]).
    pub pid: u32,
    pub dir: PathBuf,
}

impl Memha {
    /// Every line the `notify` hook got (`INSTANCE VI_1 <STATE> <priority>`).
    pub fn notify_path(&self) -> PathBuf {
        self.dir.join("notify.log")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("memha.log")
    }

    /// The states the notify hook reported, in order.
    pub fn notify_states(&self) -> Vec<String> {
        fs::read_to_string(self.notify_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect()
    }
}

/// A keepalived started by [`Lab::start_keepalived`].
#[derive(Clone, Debug)]
pub struct Keepalived {
    pub node: String,
    /// The parent process (run with `-n`, so it is the PID we started).
    pub pid: u32,
    pub dir: PathBuf,
}

impl Keepalived {
    /// The VRRP child's PID, from its pid file.
    pub fn vrrp_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("vrrp.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// One test's network. See the module documentation.
pub struct Lab {
    /// The lab's number: prefix `mft<n>-`, subnet 10.96.<n>.0/24.
    pub n: u8,
    prefix: String,
    /// Host nodes (`n1`, `n2`, `n3`, `c`), not the switch.
    nodes: Vec<String>,
    /// Scratch directory: configs, logs, notify files, the secret.
    pub dir: PathBuf,
    /// Every process this lab started, with a label for messages.
    children: Mutex<Vec<(String, Child)>>,
    /// Logs to show when a test fails.
    logs: Mutex<Vec<(String, PathBuf)>>,
    /// Nodes running memha, for [`Lab::describe`].
    memha_nodes: Mutex<Vec<String>>,
    /// Processes killed on the way (data processes, keepalived), reaped at the end if they
    /// became this process's orphans.
    killed: Mutex<Vec<u32>>,
    started: Mutex<usize>,
}

impl Lab {
    /// Builds lab `n` with these host nodes (`n1`..`n9`, `c`), or prints `skipped: <reason>`
    /// and returns `None` when this machine cannot (not root, `ip` or one of `tools`
    /// missing).
    pub fn new(n: u8, nodes: &[&str], tools: &[&str]) -> Option<Lab> {
        if let Some(reason) = skip_reason(tools) {
            println!("skipped: {reason}");
            return None;
        }
        let prefix = format!("mft{n}-");
        let dir = std::env::temp_dir().join(format!("memha-mft{n}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the lab directory");
        let lab = Lab {
            n,
            prefix,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            dir,
            children: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            memha_nodes: Mutex::new(Vec::new()),
            killed: Mutex::new(Vec::new()),
            started: Mutex::new(0),
        };
        // Orphans of what the lab kills (a data process whose supervisor died first, say) come
        // to this process instead of init, which reaps them in teardown.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        lab.remove_leftovers();
        lab.build();
        Some(lab)
    }

    // ----- names and addresses -----

    fn octet(node: &str) -> u8 {
        match node {
            "c" => 100,
            _ => {
                let k: u8 = node
                    .strip_prefix('n')
                    .and_then(|k| k.parse().ok())
                    .filter(|k| (1..=9).contains(k))
                    .unwrap_or_else(|| panic!("unknown lab node {node:?} (n1..n9 or c)"));
                10 + k
            }
        }
    }

    /// The namespace of a node (`sw` for the switch).
    pub fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    pub fn addr(&self, node: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, self.n, Self::octet(node))
    }

    /// The default virtual address, 10.96.<n>.46.
    pub fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, self.n, 46)
    }

    /// A node's memcached address.
    pub fn mc(&self, node: &str) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.addr(node), MC_PORT))
    }

    /// The VIP's memcached address.
    pub fn vip_mc(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.vip(), MC_PORT))
    }

    fn port(&self, node: &str) -> String {
        format!("{}p-{node}", self.prefix)
    }

    fn sink(&self) -> String {
        format!("{}sink", self.prefix)
    }

    fn memha_hosts(&self) -> impl Iterator<Item = &String> {
        self.nodes.iter().filter(|n| n.as_str() != "c")
    }

    // ----- building and tearing down -----

    fn namespaces(&self) -> Vec<String> {
        try_run("ip", &["netns", "list"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&self.prefix))
            .map(str::to_string)
            .collect()
    }

    fn ns_pids(ns: &str) -> Vec<u32> {
        try_run("ip", &["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// A previous run of this test that died without cleaning up: whatever still runs in its
    /// namespaces can only be that run's (the names are this test's), so it is killed.
    fn remove_leftovers(&self) {
        for ns in self.namespaces() {
            eprintln!("lab {}: removing a leftover namespace {ns}", self.n);
            for pid in Self::ns_pids(&ns) {
                signal(pid, libc::SIGKILL);
            }
            let _ = try_run("ip", &["netns", "del", &ns]);
        }
    }

    fn build(&self) {
        let sw = self.ns("sw");
        let br = format!("{}br", self.prefix);
        let ip = |args: &[&str]| run("ip", args);
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "set", "lo", "up"]);
        // No STP, no forwarding delay, no multicast snooping: 224.0.0.18 floods to every port
        // as on a plain switch, and a port forwards as soon as it is up.
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            &br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &sw, "link", "set", &br, "up"]);
        // The frame sink for partitions: one end up, its peer down, so it has no carrier and
        // mirred drops what is redirected to it.
        let sink = self.sink();
        let sink_peer = format!("{sink}x");
        ip(&[
            "-n", &sw, "link", "add", &sink, "type", "veth", "peer", "name", &sink_peer,
        ]);
        ip(&["-n", &sw, "link", "set", &sink, "up"]);
        for node in &self.nodes {
            let ns = self.ns(node);
            let port = self.port(node);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", DEV, "netns", &ns,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", &br]);
            ip(&["-n", &sw, "link", "set", &port, "up"]);
            let mac = format!("02:00:0a:60:{:02x}:{:02x}", self.n, Self::octet(node));
            ip(&["-n", &ns, "link", "set", DEV, "address", &mac]);
            let cidr = format!("{}/24", self.addr(node));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", DEV]);
            ip(&["-n", &ns, "link", "set", DEV, "up"]);
        }
        // Ready when the first host reaches every other one: a TCP connection to a closed
        // port is refused, which takes ARP and an answer from the other host.
        let first = &self.nodes[0];
        for other in &self.nodes[1..] {
            let target = SocketAddr::V4(SocketAddrV4::new(self.addr(other), 9));
            self.wait(&format!("{first} reaches {other} ({target})"), || {
                self.in_ns(first, || {
                    match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                    }
                })
            });
        }
    }

    fn teardown(&mut self) {
        let own = std::process::id();
        let mut pids = Vec::new();
        {
            let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            for (_, c) in children.iter() {
                pids.push(c.id());
            }
        }
        for pid in pids.clone() {
            descendants_of(pid, &mut pids);
        }
        let namespaces = self.namespaces();
        for ns in &namespaces {
            for pid in Self::ns_pids(ns) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids.retain(|p| *p != own);
        for pid in &pids {
            signal(*pid, libc::SIGKILL);
        }
        {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            for (_, c) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        pids.extend(self.killed.lock().unwrap_or_else(|e| e.into_inner()).iter());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
            reap_orphans(&pids);
            std::thread::sleep(POLL);
        }
        reap_orphans(&pids);
        for ns in &namespaces {
            if let Err(e) = try_run("ip", &["netns", "del", ns]) {
                eprintln!("lab {}: {e}", self.n);
            }
        }
    }

    // ----- processes -----

    fn next_dir(&self, what: &str) -> PathBuf {
        let mut n = self.started.lock().unwrap();
        *n += 1;
        let dir = self.dir.join(format!("{what}-{}", *n));
        fs::create_dir_all(&dir).expect("create a process directory");
        dir
    }

    /// Starts any program inside `node`'s namespace (stopped with the lab); returns its PID
    /// and its scratch directory (the log is `out.log` there).
    pub fn spawn(&self, node: &str, label: &str, prog: &str, args: &[&str]) -> (u32, PathBuf) {
        let dir = self.next_dir(label);
        let pid = self.spawn_in(node, label, &dir.join("out.log"), prog, args);
        (pid, dir)
    }

    /// Starts `prog args` inside `node`'s namespace with stdout and stderr to `log`.
    fn spawn_in(&self, node: &str, label: &str, log: &Path, prog: &str, args: &[&str]) -> u32 {
        let out = File::create(log).expect("create a log file");
        let err = out.try_clone().expect("clone a log file");
        let ns = self.ns(node);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {prog} in {ns}: {e}"));
        let pid = child.id();
        self.children
            .lock()
            .unwrap()
            .push((format!("{label} in {node}"), child));
        self.logs
            .lock()
            .unwrap()
            .push((format!("{label} in {node}"), log.to_path_buf()));
        pid
    }

    /// The config file memha runs with for `spec`.
    pub fn memha_config(&self, spec: &MemhaSpec, dir: &Path) -> String {
        let mut s = String::new();
        s += "[server]\n";
        s += &format!("port = {MC_PORT}\n");
        s += "listen = [\"0.0.0.0\"]\n";
        s += "memory_limit_mb = 16\n";
        s += "threads = 2\n\n";
        s += "[logging]\nlevel = \"info\"\n\n";
        if !spec.peers.is_empty() {
            let peers: Vec<String> = spec
                .peers
                .iter()
                .map(|p| format!("\"{}\"", self.addr(p)))
                .collect();
            s += "[replication]\n";
            s += &format!("port = {REPL_PORT}\n");
            s += &format!("peers = [{}]\n", peers.join(", "));
            s += &format!("secret_file = \"{}\"\n", self.dir.join("secret").display());
            if spec.sync_ack {
                s += "ack = \"sync\"\n";
            }
            s += &format!("node_id = {}\n\n", Self::octet(&spec.node) - 10);
        }
        if let Some(f) = &spec.track_file {
            s += "[[vrrp_script]]\n";
            s += "name = \"chk_ok\"\n";
            s += &format!("script = \"test -e {}\"\n", f.display());
            // A generous timeout: on a busy machine starting `sh` can take a while, and one
            // late run must not count as a failure here.
            s += "interval = 0.1\ntimeout = 2\nfall = 1\nrise = 1\n\n";
        }
        s += "[[vrrp_instance]]\n";
        s += "name = \"VI_1\"\n";
        s += &format!("interface = \"{DEV}\"\n");
        s += &format!("virtual_router_id = {}\n", spec.vrid);
        s += &format!("priority = {}\n", spec.priority);
        s += &format!("advert_int = {}\n", spec.advert_int);
        s += &format!("version = {}\n", spec.version);
        s += &format!("nopreempt = {}\n", spec.nopreempt);
        s += &format!(
            "virtual_ipaddress = [\"{}\"]\n",
            spec.vip.unwrap_or_else(|| self.vip())
        );
        if let Some(pass) = &spec.auth_pass {
            s += &format!("authentication = {{ auth_type = \"PASS\", auth_pass = \"{pass}\" }}\n");
        }
        if spec.track_file.is_some() {
            s += "track_script = [\"chk_ok\"]\n";
        }
        if spec.use_vmac {
            s += "use_vmac = true\n";
        }
        if !spec.unicast.is_empty() {
            let peers: Vec<String> = spec
                .unicast
                .iter()
                .map(|p| format!("\"{}\"", self.addr(p)))
                .collect();
            s += &format!("unicast_src_ip = \"{}\"\n", self.addr(&spec.node));
            s += &format!("unicast_peer = [{}]\n", peers.join(", "));
        }
        s += &format!("notify = \"{}\"\n", dir.join("notify.sh").display());
        s
    }

    /// Starts memha for `spec` in its node and waits until its cache answers `stats vrrp`
    /// with a state (the supervisor is up, the data process serves).
    pub fn start_memha(&self, spec: &MemhaSpec) -> Memha {
        let dir = self.next_dir(&format!("memha-{}", spec.node));
        let secret = self.dir.join("secret");
        if !secret.exists() {
            fs::write(&secret, "memha-failover-lab-secret-0123456789\n").unwrap();
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let notify = dir.join("notify.sh");
        fs::write(
            &notify,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n",
                dir.join("notify.log").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&notify, fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.join("memha.toml");
        fs::write(&config, self.memha_config(spec, &dir)).unwrap();
        let m = Memha {
            node: spec.node.clone(),
            pid: 0,
            dir: dir.clone(),
        };
        let config = config.to_string_lossy().into_owned();
        let pid = self.spawn_in(
            &spec.node,
            "memha",
            &m.log_path(),
            env!("CARGO_BIN_EXE_memha"),
            &["--config", &config],
        );
        let m = Memha { pid, ..m };
        {
            let mut nodes = self.memha_nodes.lock().unwrap();
            if !nodes.contains(&spec.node) {
                nodes.push(spec.node.clone());
            }
        }
        self.wait(&format!("memha in {} serves stats vrrp", spec.node), || {
            if !self.alive(pid) {
                panic!(
                    "memha in {} exited while starting:\n{}",
                    spec.node,
                    tail(&m.log_path(), 30)
                );
            }
            self.vrrp(&spec.node).contains_key("VI_1:state")
        });
        m
    }

    /// The supervisor's data process (its child named `memha`; hooks and track scripts are
    /// `sh`).
    pub fn data_pid(&self, m: &Memha) -> Option<u32> {
        children_of(m.pid)
            .into_iter()
            .find(|(_, comm)| comm == "memha")
            .map(|(p, _)| p)
    }

    /// keepalived in `node` with this configuration, in the foreground (`-n`), VRRP only,
    /// logging to the console; returns once its VRRP child wrote its pid file.
    pub fn start_keepalived(&self, node: &str, conf: &str) -> Keepalived {
        let dir = self.next_dir(&format!("keepalived-{node}"));
        let conf_path = dir.join("keepalived.conf");
        fs::write(&conf_path, conf).unwrap();
        let conf_s = conf_path.to_string_lossy().into_owned();
        let pid_s = dir.join("keepalived.pid").to_string_lossy().into_owned();
        let vrrp_s = dir.join("vrrp.pid").to_string_lossy().into_owned();
        let log = dir.join("keepalived.log");
        let pid = self.spawn_in(
            node,
            "keepalived",
            &log,
            "keepalived",
            &[
                "-n", "-l", "-D", "-G", "-P", "-f", &conf_s, "-p", &pid_s, "-r", &vrrp_s,
            ],
        );
        let k = Keepalived {
            node: node.into(),
            pid,
            dir,
        };
        self.wait(
            &format!("keepalived in {node} started its VRRP process"),
            || {
                if !self.alive(pid) {
                    panic!(
                        "keepalived in {node} exited while starting:\n{}",
                        tail(&log, 30)
                    );
                }
                k.vrrp_pid().is_some_and(pid_alive)
            },
        );
        k
    }

    /// SIGKILL to keepalived: the parent, its VRRP child (from the pid file) and anything
    /// else it started; returns once they are gone.
    pub fn kill_keepalived(&self, k: &Keepalived) {
        let mut pids = vec![k.pid];
        pids.extend(k.vrrp_pid());
        for p in pids.clone() {
            descendants_of(p, &mut pids);
        }
        for p in &pids {
            signal(*p, libc::SIGKILL);
        }
        self.killed.lock().unwrap().extend(&pids);
        self.wait_exit(k.pid, WAIT);
        self.wait("keepalived's processes are gone", || {
            reap_orphans(&pids);
            !pids.iter().any(|p| pid_alive(*p))
        });
    }

    /// SIGKILL to one process.
    pub fn kill9(&self, pid: u32) {
        self.killed.lock().unwrap().push(pid);
        signal(pid, libc::SIGKILL);
    }

    pub fn signal(&self, pid: u32, sig: i32) {
        signal(pid, sig);
    }

    /// SIGKILL to a memha supervisor and its children; returns once they are gone.
    pub fn kill_memha(&self, m: &Memha) {
        let mut pids = vec![m.pid];
        descendants_of(m.pid, &mut pids);
        for p in &pids {
            signal(*p, libc::SIGKILL);
        }
        self.killed.lock().unwrap().extend(&pids);
        self.wait_exit(m.pid, WAIT);
        self.wait("memha's processes are gone", || {
            reap_orphans(&pids);
            !pids.iter().any(|p| pid_alive(*p))
        });
    }

    /// True while a process is running (for a process this lab started: not yet exited).
    pub fn alive(&self, pid: u32) -> bool {
        let mut children = self.children.lock().unwrap();
        match children.iter_mut().find(|(_, c)| c.id() == pid) {
            Some((_, c)) => matches!(c.try_wait(), Ok(None)),
            None => pid_alive(pid),
        }
    }

    /// Waits for a process this lab started to exit; its status.
    #[track_caller]
    pub fn wait_exit(&self, pid: u32, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut children = self.children.lock().unwrap();
                let (_, c) = children
                    .iter_mut()
                    .find(|(_, c)| c.id() == pid)
                    .unwrap_or_else(|| panic!("process {pid} was not started by this lab"));
                if let Ok(Some(status)) = c.try_wait() {
                    return status;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "process {pid} did not exit within {limit:?}\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    // ----- looking -----

    /// The IPv4 addresses (`a.b.c.d/len`) on a node's `eth0`.
    pub fn try_addrs(&self, node: &str) -> Result<Vec<String>, String> {
        let out = try_run("ip", &["-n", &self.ns(node), "-o", "-4", "addr", "show"])?;
        // Every interface but loopback: the VIP is on eth0, or on the macvlan `vrrp.<VRID>`
        // with use_vmac.
        Ok(out
            .lines()
            .filter(|l| l.split_whitespace().nth(1).is_none_or(|dev| dev != "lo"))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words.next().map(str::to_string)
            })
            .collect())
    }

    /// The nodes that have `vip` configured.
    pub fn holders_of(&self, vip: Ipv4Addr) -> Vec<String> {
        let want = format!("{vip}/");
        self.memha_hosts()
            .filter(|n| {
                self.try_addrs(n)
                    .unwrap_or_else(|e| panic!("{e}"))
                    .iter()
                    .any(|a| a.starts_with(&want))
            })
            .cloned()
            .collect()
    }

    /// The nodes that have the lab's VIP configured.
    pub fn holders(&self) -> Vec<String> {
        self.holders_of(self.vip())
    }

    /// `stats vrrp` of the memha in `node`, asked on 127.0.0.1 inside its namespace; empty
    /// when it does not answer (the data process is restarting, say).
    pub fn vrrp(&self, node: &str) -> HashMap<String, String> {
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, MC_PORT));
        let ns = self.ns(node);
        // Never panics: describe() uses it while a failed test unwinds.
        let reply = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    try_enter_netns(&ns)?;
                    mc_request(addr, "stats vrrp\r\n", Duration::from_secs(1))
                })
                .join()
                .unwrap_or_else(|_| Err("panicked".into()))
        });
        reply.map(|r| parse_stats(&r)).unwrap_or_default()
    }

    /// One `VI_1:<key>` of `stats vrrp` in `node` (`None` when it does not answer).
    pub fn vrrp_stat(&self, node: &str, key: &str) -> Option<String> {
        self.vrrp(node).remove(&format!("VI_1:{key}"))
    }

    /// A `VI_1:<key>` counter of `stats vrrp` in `node`; panics if it is missing.
    pub fn vrrp_counter(&self, node: &str, key: &str) -> u64 {
        let v = self.vrrp_stat(node, key);
        v.as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("stats vrrp in {node}: VI_1:{key} is {v:?}"))
    }

    /// `VI_1:state` in `node`, or `"?"` when it does not answer.
    pub fn state(&self, node: &str) -> String {
        self.vrrp_stat(node, "state").unwrap_or_else(|| "?".into())
    }

    /// The lab in a few lines: each node's addresses, and each memha's state and master.
    pub fn describe(&self) -> String {
        let mut s = String::from("lab state:\n");
        for node in &self.nodes {
            let addrs = self
                .try_addrs(node)
                .map(|a| a.join(" "))
                .unwrap_or_else(|e| e);
            s += &format!("  {node}: {addrs}");
            let is_memha = self
                .memha_nodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(node);
            if is_memha {
                let v = self.vrrp(node);
                let get = |k: &str| v.get(&format!("VI_1:{k}")).cloned().unwrap_or("?".into());
                s += &format!(
                    "  memha {} master {} holding_vips {}",
                    get("state"),
                    get("master"),
                    get("holding_vips")
                );
            }
            s += "\n";
        }
        s
    }

    // ----- doing -----

    /// Runs `f` on a thread inside `node`'s namespace.
    pub fn in_ns<T: Send>(&self, node: &str, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.ns(node);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter_netns(&ns);
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// One memcached request from `from`'s namespace to `to`.
    pub fn request(&self, from: &str, to: SocketAddr, req: &str) -> Result<String, String> {
        self.in_ns(from, || mc_request(to, req, Duration::from_secs(2)))
    }

    /// The primary address of the memha that answers the client (`c`) on the VIP, from its
    /// `stats vrrp`; `None` when nothing answers within half a second.
    pub fn vip_served_by(&self) -> Option<String> {
        let vip = self.vip_mc();
        let reply = self
            .in_ns("c", || {
                mc_request(vip, "stats vrrp\r\n", Duration::from_millis(500))
            })
            .ok()?;
        parse_stats(&reply).remove("VI_1:primary_ip")
    }

    /// `get key` from `from` to `to`: the value, `None` on a miss or an error.
    pub fn get(&self, from: &str, to: SocketAddr, key: &str) -> Option<String> {
        let reply = self.request(from, to, &format!("get {key}\r\n")).ok()?;
        let mut lines = reply.split("\r\n");
        lines.next()?.starts_with("VALUE ").then_some(())?;
        lines.next().map(str::to_string)
    }

    /// Sends raw IPv4 packets (headers included) from `from` to 224.0.0.18 on its `eth0`.
    pub fn send_raw(&self, from: &str, packets: &[Vec<u8>]) {
        self.in_ns(from, || {
            // SAFETY: plain socket calls on a descriptor owned here and closed at the end;
            // every pointer passed points at a live local of the size given.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
                assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
                let dev = std::ffi::CString::new(DEV).unwrap();
                let rc = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    dev.as_ptr().cast(),
                    DEV.len() as libc::socklen_t,
                );
                assert_eq!(
                    rc,
                    0,
                    "SO_BINDTODEVICE: {}",
                    std::io::Error::last_os_error()
                );
                let mreq = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: libc::if_nametoindex(dev.as_ptr()) as i32,
                };
                let rc = libc::setsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_MULTICAST_IF,
                    (&mreq as *const libc::ip_mreqn).cast(),
                    std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
                );
                assert_eq!(
                    rc,
                    0,
                    "IP_MULTICAST_IF: {}",
                    std::io::Error::last_os_error()
                );
                let dst = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes([224, 0, 0, 18]),
                    },
                    sin_zero: [0; 8],
                };
                for p in packets {
                    let n = libc::sendto(
                        fd,
                        p.as_ptr().cast(),
                        p.len(),
                        0,
                        (&dst as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    assert_eq!(
                        n,
                        p.len() as isize,
                        "sendto: {}",
                        std::io::Error::last_os_error()
                    );
                }
                libc::close(fd);
            }
        });
    }

    fn tc_port(&self, node: &str, dirs: &[&str]) {
        let sw = self.ns("sw");
        let port = self.port(node);
        let sink = self.sink();
        let _ = try_run("tc", &["-n", &sw, "qdisc", "del", "dev", &port, "clsact"]);
        run("tc", &["-n", &sw, "qdisc", "add", "dev", &port, "clsact"]);
        for dir in dirs {
            run(
                "tc",
                &[
                    "-n", &sw, "filter", "add", "dev", &port, dir, "pref", "1", "protocol", "all",
                    "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                    "dev", &sink,
                ],
            );
        }
    }

    /// Drops every frame to and from `node` at its switch port; it keeps its carrier.
    pub fn partition(&self, node: &str) {
        // Ingress on the switch port = what the node sends; egress = what it receives.
        self.tc_port(node, &["ingress", "egress"]);
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, node: &str) {
        run(
            "tc",
            &[
                "-n",
                &self.ns("sw"),
                "qdisc",
                "del",
                "dev",
                &self.port(node),
                "clsact",
            ],
        );
    }

    /// Pulls the cable: `node`'s `eth0` loses carrier.
    pub fn linkdown(&self, node: &str) {
        run(
            "ip",
            &[
                "-n",
                &self.ns("sw"),
                "link",
                "set",
                &self.port(node),
                "down",
            ],
        );
    }

    pub fn linkup(&self, node: &str) {
        run(
            "ip",
            &["-n", &self.ns("sw"), "link", "set", &self.port(node), "up"],
        );
    }

    /// Removes an address from `node`'s `eth0` (what a reboot does to a VIP a killed
    /// keepalived left behind).
    pub fn del_addr(&self, node: &str, cidr: &str) {
        run(
            "ip",
            &["-n", &self.ns(node), "addr", "del", cidr, "dev", DEV],
        );
    }

    // ----- waiting -----

    /// Polls `f` every 10 ms until it holds; fails the test naming `what` (and showing the
    /// lab) after [`WAIT`].
    #[track_caller]
    pub fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        self.wait_for(WAIT, what, f);
    }

    /// [`Lab::wait`] with another limit.
    #[track_caller]
    pub fn wait_for(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if f() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "lab {}: timed out after {limit:?} waiting for: {what}\n{}",
                    self.n,
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Checks `f` every 10 ms for `period`; fails the test naming `what` the first time it
    /// does not hold.
    #[track_caller]
    pub fn hold(&self, period: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < period {
            if !f() {
                panic!(
                    "lab {}: stopped holding after {:?}: {what}\n{}",
                    self.n,
                    start.elapsed(),
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            let mut s = format!("lab {} at the failure:\n{}", self.n, self.describe());
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (what, path) in logs {
                s += &format!("---- {what}: {} (last 40 lines)\n", path.display());
                s += &tail(&path, 40);
                s += "\n";
                let notify = path.with_file_name("notify.log");
                if notify.exists() {
                    s += &format!("---- notify hook calls:\n{}\n", tail(&notify, 20));
                }
            }
            eprintln!("{s}");
        }
        self.teardown();
        if panicking || std::env::var_os("MEMHA_LAB_KEEP").is_some() {
            eprintln!("lab {}: files kept in {}", self.n, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

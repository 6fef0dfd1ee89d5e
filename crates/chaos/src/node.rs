//! memha nodes in the lab: their configuration, processes and `stats`.
//!
//! Every node runs `memha --config nK/memha.toml --repl-ack <mode>` in its namespace: the
//! supervisor (VRRP, the VIP) and, as its only child, the data process. Replication links
//! every node to every other one with a shared secret and explicit node ids. The VRRP
//! instance is the seed's pattern made fast: version 3, adverts every 50 ms, every node
//! `state = "BACKUP"` with `nopreempt`, priorities 150/120/100.
//!
//! Processes are known by PID only: the supervisor is our child, its data process is found
//! as the supervisor's child in /proc.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::history::key_name;
use crate::lab::{self, addr_of, ns_of};
use crate::mc::{self, Conn, Expect, Reply};
use crate::Result;

pub const PORT: u16 = 11211;
pub const REPL_PORT: u16 = 11411;
pub const VRID: u8 = 95;
const PRIORITIES: [u8; 3] = [150, 120, 100];
/// libfaketime's preload library (Debian's `faketime` package).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One node's settings.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub addr: Ipv4Addr,
    pub priority: u8,
    pub node_id: u16,
    pub peers: Vec<Ipv4Addr>,
}

/// What `stats`, `stats replication` and `stats vrrp` say about a node.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub time: u64,
    pub ready: bool,
    pub backlog_last_seq: u64,
    /// Links this node dialled: (peer address, state, last seq of its stream applied here).
    pub peers: Vec<(String, String, u64)>,
    /// Subscribers of this node's stream: (address, acked seq).
    pub subscribers: Vec<(String, u64)>,
    pub vrrp_state: String,
    pub holding: bool,
    pub healthy: bool,
    pub raw: HashMap<String, String>,
}

/// The nodes of a run and their processes.
pub struct Nodes {
    pub specs: Vec<Spec>,
    dir: PathBuf,
    memha: PathBuf,
    ack: String,
    procs: Vec<Option<Child>>,
    /// The node runs under libfaketime now.
    pub skewed: Vec<Option<String>>,
    t0: Instant,
}

impl Nodes {
    /// Writes the secret and every node's configuration under `dir`.
    pub fn new(n: usize, dir: &Path, memha: &Path, ack: &str, t0: Instant) -> Result<Nodes> {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let secret = dir.join("secret");
        let mut bytes = [0u8; 24];
        File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_file(&secret, &format!("{hex}\n"))?;
        let mut specs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let spec = Spec {
                name: name.clone(),
                addr: addr_of(name),
                priority: PRIORITIES[i.min(PRIORITIES.len() - 1)],
                node_id: (i + 1) as u16,
                peers: names
                    .iter()
                    .filter(|o| *o != name)
                    .map(|o| addr_of(o))
                    .collect(),
            };
            let ndir = dir.join(name);
            std::fs::create_dir_all(&ndir).map_err(|e| format!("{}: {e}", ndir.display()))?;
            write_file(&ndir.join("memha.toml"), &config_text(&spec, &secret))?;
            specs.push(spec);
        }
        Ok(Nodes {
            procs: specs.iter().map(|_| None).collect(),
            skewed: specs.iter().map(|_| None).collect(),
            specs,
            dir: dir.to_path_buf(),
            memha: memha.to_path_buf(),
            ack: ack.to_string(),
            t0,
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.specs[i].name).join("memha.log")
    }

    /// Starts node `i`'s supervisor; with `skew` (`"+3s"`) under libfaketime.
    pub fn start(&mut self, i: usize, skew: Option<&str>) -> Result<()> {
        self.reap(i);
        if self.procs[i].is_some() {
            return Err(format!("{} is already running", self.specs[i].name));
        }
        let name = self.specs[i].name.clone();
        let log_path = self.log_path(i);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let _ = writeln!(
            log,
            "==== memha-chaos: starting {name} at t={:.3}s{}",
            self.t0.elapsed().as_secs_f64(),
            skew.map(|s| format!(" under libfaketime FAKETIME={s}"))
                .unwrap_or_default()
        );
        let config = self.dir.join(&name).join("memha.toml");
        let mut cmd = lab::command_in(&name, &self.memha.to_string_lossy());
        cmd.arg("--config")
            .arg(&config)
            .args(["--repl-ack", &self.ack])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal reaches only the runner, which
            // stops the nodes in order.
            .process_group(0);
        if let Some(s) = skew {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", s)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start memha for {name}: {e}"))?;
        self.procs[i] = Some(child);
        self.skewed[i] = skew.map(str::to_string);
        Ok(())
    }

    /// Forgets a supervisor that has exited.
    fn reap(&mut self, i: usize) {
        if let Some(c) = &mut self.procs[i] {
            if matches!(c.try_wait(), Ok(Some(_))) {
                self.procs[i] = None;
            }
        }
    }

    pub fn running(&mut self, i: usize) -> bool {
        self.reap(i);
        self.procs[i].is_some()
    }

    pub fn supervisor_pid(&mut self, i: usize) -> Option<i32> {
        self.reap(i);
        self.procs[i].as_ref().map(|c| c.id() as i32)
    }

    /// The data process: the supervisor's only child.
    pub fn data_pid(&mut self, i: usize) -> Option<i32> {
        let sup = self.supervisor_pid(i)?;
        lab::children_of(sup).into_iter().next()
    }

    /// kill -9 of the data process; its PID.
    pub fn kill9_data(&mut self, i: usize) -> Result<i32> {
        let pid = self
            .data_pid(i)
            .ok_or_else(|| format!("{} has no data process", self.specs[i].name))?;
        // SAFETY: kill(2) on our supervisor's child, found just now.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        Ok(pid)
    }

    /// SIGTERM to the supervisor (graceful stop).
    pub fn sigterm(&mut self, i: usize) -> Result<()> {
        let pid = self
            .supervisor_pid(i)
            .ok_or_else(|| format!("{} is not running", self.specs[i].name))?;
        // SAFETY: kill(2) on our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        Ok(())
    }

    /// Waits for the supervisor (and its data process) to exit; SIGKILL after `timeout`.
    /// Returns false if it had to be killed.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let kids = self
            .supervisor_pid(i)
            .map(lab::children_of)
            .unwrap_or_default();
        let mut clean = true;
        if let Some(c) = &mut self.procs[i] {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(None) => {
                        clean = false;
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.procs[i] = None;
        for k in kids {
            for _ in 0..200 {
                if !lab::alive(k) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if lab::alive(k) {
                clean = false;
                // SAFETY: kill(2) on the data process we saw under our supervisor.
                unsafe { libc::kill(k, libc::SIGKILL) };
            }
        }
        clean
    }

    /// SIGTERM to every supervisor at once, then waits for all.
    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            let _ = self.sigterm(i);
        }
        for i in 0..self.len() {
            self.wait_exit(i, Duration::from_secs(15));
        }
    }

    /// A connection to node `i`'s own address, made from inside its namespace (so it works
    /// while the node is cut off).
    pub fn connect(&self, i: usize, timeout: Duration) -> Result<Conn> {
        let addr = SocketAddr::from((self.specs[i].addr, PORT));
        lab::in_ns(&ns_of(&self.specs[i].name), move || {
            Conn::connect(addr, timeout).map_err(|e| format!("connect {addr}: {e}"))
        })?
    }

    /// `stats`, `stats replication` and `stats vrrp` of node `i`.
    pub fn status(&self, i: usize) -> Result<Status> {
        let t = Duration::from_millis(500);
        let mut c = self.connect(i, t)?;
        let mut raw: HashMap<String, String> = HashMap::new();
        for group in ["", "replication", "vrrp"] {
            raw.extend(mc::stats(&mut c, group, t)?);
        }
        let get = |k: &str| raw.get(k).cloned().unwrap_or_default();
        let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
        let mut peers = Vec::new();
        let mut subscribers = Vec::new();
        for p in 0.. {
            let Some(addr) = raw.get(&format!("peer{p}:addr")) else {
                break;
            };
            peers.push((
                addr.clone(),
                get(&format!("peer{p}:state")),
                num(&format!("peer{p}:applied_seq")),
            ));
        }
        for s in 0.. {
            let Some(addr) = raw.get(&format!("subscriber{s}:addr")) else {
                break;
            };
            subscribers.push((addr.clone(), num(&format!("subscriber{s}:acked_seq"))));
        }
        Ok(Status {
            time: num("time"),
            ready: get("ready") == "1",
            backlog_last_seq: num("backlog_last_seq"),
            peers,
            subscribers,
            vrrp_state: get("VI_1:state"),
            holding: get("VI_1:holding_vips") == "1",
            healthy: get("VI_1:healthy") == "1",
            raw,
        })
    }

    /// Every key in `keys` as node `i` holds it: value bytes, flags, CAS (`None` = absent).
    pub fn dump(&self, i: usize, keys: &[u32]) -> Result<HashMap<u32, Option<mc::Value>>> {
        let mut c = self.connect(i, Duration::from_secs(2))?;
        let mut out = HashMap::new();
        for chunk in keys.chunks(50) {
            let names: Vec<String> = chunk.iter().map(|&k| key_name(k)).collect();
            let req = format!("gets {}\r\n", names.join(" "));
            let reply = c
                .request(
                    req.as_bytes(),
                    Expect::Values,
                    Instant::now() + Duration::from_secs(5),
                )
                .map_err(|e| format!("dump of {}: {e}", self.specs[i].name))?;
            let Reply::Values(values) = reply else {
                return Err(format!(
                    "dump of {}: unexpected reply {reply:?}",
                    self.specs[i].name
                ));
            };
            for &k in chunk {
                out.insert(k, None);
            }
            for v in values {
                if let Some(k) = crate::history::parse_key_name(&v.key) {
                    out.insert(k, Some(v));
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.len() {
            if self.running(i) {
                let _ = self.sigterm(i);
            }
        }
        for i in 0..self.len() {
            if self.procs[i].is_some() {
                self.wait_exit(i, Duration::from_secs(8));
            }
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(())
}

/// The node's memha.toml. The acknowledgement mode is given on the command line.
pub fn config_text(spec: &Spec, secret: &Path) -> String {
    let peers: Vec<String> = spec
        .peers
        .iter()
        .map(|p| format!("\"{p}:{REPL_PORT}\""))
        .collect();
    format!(
        r#"# Written by memha-chaos for node {name}.
[server]
port = {PORT}
udp_port = 0
memory_limit_mb = 64
threads = 2

[logging]
level = "info"

[replication]
port = {REPL_PORT}
peers = [{peers}]
secret_file = "{secret}"
node_id = {node_id}

[[vrrp_instance]]
name = "VI_1"
interface = "{dev}"
state = "BACKUP"
virtual_router_id = {VRID}
priority = {priority}
advert_int = 0.05
version = 3
nopreempt = true
virtual_ipaddress = ["{vip}"]
"#,
        name = spec.name,
        peers = peers.join(", "),
        secret = secret.display(),
        node_id = spec.node_id,
        dev = lab::DEV,
        priority = spec.priority,
        vip = lab::VIP,
    )
}

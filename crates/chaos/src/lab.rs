//! The lab: a small L2 network of "hosts" made of network namespaces.
//!
//! ```text
//!   mhc-n1  10.95.0.11  --\
//!   mhc-n2  10.95.0.12  ---+--  bridge mhc-br in namespace mhc-sw (one port mhc-p-<host> each)
//!   mhc-n3  10.95.0.13  --/|    (three-node runs only)
//!   mhc-c   10.95.0.100 ---/    the client
//! ```
//!
//! Every host has one interface, `mhc-eth0`, and loopback, and no default route: nothing in
//! the lab reaches anything outside 10.95.0.0/24. The host's own namespace is not touched.
//!
//! Faults act on the switch-side port of a host, so the host itself sees only their effect:
//! - partition: every frame to and from the host is dropped, its carrier stays up;
//! - one-way loss: only the frames the host sends are dropped (it still hears everyone);
//! - link down: the switch port goes down, the host's interface loses carrier.
//!
//! This kernel has no netem, matchall or gact, so frames are dropped with what it has: a
//! `clsact` qdisc on the port with a catch-all `u32` filter whose action redirects every
//! frame to `mhc-sink`, a veth whose peer is down. `mirred` silently drops frames sent to a
//! device without carrier. Ingress on the port = frames from the host, egress = to it.
//! Healing deletes the qdisc.
//!
//! Code runs "inside" a namespace on a thread that joined it with `setns` (which changes
//! only that thread); sockets keep the namespace they were created in.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use crate::Result;

/// Every name this lab creates starts with this.
pub const PREFIX: &str = "mhc";
/// The hosts' interface.
pub const DEV: &str = "mhc-eth0";
const SWITCH: &str = "mhc-sw";
const BRIDGE: &str = "mhc-br";
const SINK: &str = "mhc-sink";
/// The virtual address the nodes share.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 95, 0, 46);
/// The client host.
pub const CLIENT: &str = "c";

/// The address of a host: `c` → .100, `nK` → .(10+K).
pub fn addr_of(host: &str) -> Ipv4Addr {
    let last = match host {
        CLIENT => 100,
        n => 10 + n.trim_start_matches('n').parse::<u8>().unwrap_or(0),
    };
    Ipv4Addr::new(10, 95, 0, last)
}

/// The namespace of a host.
pub fn ns_of(host: &str) -> String {
    format!("{PREFIX}-{host}")
}

fn port_of(host: &str) -> String {
    format!("{PREFIX}-p-{host}")
}

/// Runs a command; its stdout, or an error naming the command and its stderr.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run_cmd("ip", args)
}

/// The lab's namespaces that exist now (ours only: the `mhc-` prefix).
pub fn lab_namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_string)
        .collect()
}

/// Joins namespace `ns` on the calling thread.
pub fn enter_ns(ns: &str) -> Result<()> {
    let file =
        File::open(format!("/run/netns/{ns}")).map_err(|e| format!("opening netns {ns}: {e}"))?;
    // SAFETY: setns on a valid namespace fd; it changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns({ns}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a thread that joined namespace `ns`, and returns its result.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_ns(ns)?;
                Ok(f())
            })
            .join()
            .map_err(|_| format!("a thread in namespace {ns} panicked"))?
    })
}

/// A command that runs `program` inside host `host`'s namespace (`ip netns exec` execs, so
/// the child's PID is the program's).
pub fn command_in(host: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns_of(host), program]);
    cmd
}

/// The lab as built: its hosts. Dropping it takes everything down.
pub struct Lab {
    pub nodes: Vec<String>,
    up: bool,
}

impl Lab {
    /// Builds the lab with `n` memha hosts and the client, after removing any previous one.
    pub fn up(n: usize) -> Result<Lab> {
        teardown();
        let nodes: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let mut lab = Lab {
            nodes: nodes.clone(),
            up: true,
        };
        lab.build().inspect_err(|_| lab.down())?;
        Ok(lab)
    }

    fn build(&self) -> Result<()> {
        ip(&["netns", "add", SWITCH])?;
        ip(&["-n", SWITCH, "link", "set", "lo", "up"])?;
        // No STP, no forwarding delay, no multicast snooping: VRRP's 224.0.0.18 is flooded
        // to every port, and a port forwards as soon as it is up.
        ip(&[
            "-n",
            SWITCH,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", SWITCH, "link", "set", BRIDGE, "up"])?;
        let sink_peer = format!("{SINK}-x");
        ip(&[
            "-n", SWITCH, "link", "add", SINK, "type", "veth", "peer", "name", &sink_peer,
        ])?;
        ip(&["-n", SWITCH, "link", "set", SINK, "up"])?;
        let mut hosts = self.nodes.clone();
        hosts.push(CLIENT.to_string());
        for h in &hosts {
            let ns = ns_of(h);
            let port = port_of(h);
            let addr = format!("{}/24", addr_of(h));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", SWITCH, "link", "add", &port, "type", "veth", "peer", "name", DEV, "netns",
                &ns,
            ])?;
            ip(&["-n", SWITCH, "link", "set", &port, "master", BRIDGE])?;
            ip(&["-n", SWITCH, "link", "set", &port, "up"])?;
            let mac = format!("02:00:0a:5f:00:{:02x}", addr_of(h).octets()[3]);
            ip(&["-n", &ns, "link", "set", DEV, "address", &mac])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", DEV])?;
            ip(&["-n", &ns, "link", "set", DEV, "up"])?;
        }
        for ns in lab_namespaces() {
            let _ = run_cmd(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
        }
        // Ready when the client reaches every node.
        for _ in 0..50 {
            let all = self.nodes.iter().all(|n| {
                run_cmd(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns_of(CLIENT),
                        "ping",
                        "-q",
                        "-c",
                        "1",
                        "-W",
                        "1",
                        &addr_of(n).to_string(),
                    ],
                )
                .is_ok()
            });
            if all {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("lab built, but the client cannot reach the nodes".into())
    }

    /// Takes the lab down (idempotent).
    pub fn down(&mut self) {
        if self.up {
            teardown();
            self.up = false;
        }
    }

    fn drop_on(&self, host: &str, dirs: &[&str]) -> Result<()> {
        let port = port_of(host);
        let _ = ip(&["-n", SWITCH, "link", "show", &port])?;
        let _ = run_cmd(
            "tc",
            &["-n", SWITCH, "qdisc", "del", "dev", &port, "clsact"],
        );
        run_cmd(
            "tc",
            &["-n", SWITCH, "qdisc", "add", "dev", &port, "clsact"],
        )?;
        for dir in dirs {
            run_cmd(
                "tc",
                &[
                    "-n", SWITCH, "filter", "add", "dev", &port, dir, "pref", "1", "protocol",
                    "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
                    "redirect", "dev", SINK,
                ],
            )?;
        }
        Ok(())
    }

    /// Drops every frame to and from `host`; its carrier stays up.
    pub fn partition(&self, host: &str) -> Result<()> {
        self.drop_on(host, &["ingress", "egress"])
    }

    /// Drops only the frames `host` sends.
    pub fn oneway(&self, host: &str) -> Result<()> {
        self.drop_on(host, &["ingress"])
    }

    /// Undoes partition and one-way loss.
    pub fn heal(&self, host: &str) -> Result<()> {
        let port = port_of(host);
        let _ = run_cmd(
            "tc",
            &["-n", SWITCH, "qdisc", "del", "dev", &port, "clsact"],
        );
        Ok(())
    }

    /// Pulls `host`'s cable: its interface loses carrier.
    pub fn linkdown(&self, host: &str) -> Result<()> {
        ip(&["-n", SWITCH, "link", "set", &port_of(host), "down"]).map(drop)
    }

    pub fn linkup(&self, host: &str) -> Result<()> {
        ip(&["-n", SWITCH, "link", "set", &port_of(host), "up"]).map(drop)
    }

    /// Every link up and no frame dropped.
    pub fn heal_all(&self) -> Result<()> {
        for n in &self.nodes {
            self.heal(n)?;
            self.linkup(n)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Where the lock that makes one run per machine lives.
pub const LOCK_PATH: &str = "/run/lock/memha-chaos.lock";

/// Takes the machine-wide lab lock (held until the returned file is dropped, or the process
/// exits); fails at once, naming the holder, if another run has it.
pub fn lock() -> Result<File> {
    use std::io::Write;
    let _ = std::fs::create_dir_all("/run/lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .map_err(|e| format!("{LOCK_PATH}: {e}"))?;
    // SAFETY: flock on a file we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(LOCK_PATH).unwrap_or_default();
        return Err(format!(
            "another memha-chaos run is using the lab (lock {LOCK_PATH}, held by pid {}); wait for it to end",
            holder.trim()
        ));
    }
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// Ends what still runs in the lab's namespaces (only this tool's processes can be there),
/// by PID, politely first, then deletes the namespaces.
pub fn teardown() {
    let namespaces = lab_namespaces();
    if namespaces.is_empty() {
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let mut pids = Vec::new();
        for ns in &namespaces {
            for line in ip(&["netns", "pids", ns]).unwrap_or_default().lines() {
                if let Ok(pid) = line.trim().parse::<i32>() {
                    pids.push(pid);
                }
            }
        }
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            // SAFETY: kill(2) on a process found in one of our own namespaces.
            unsafe { libc::kill(pid, sig) };
        }
        for _ in 0..50 {
            if pids.iter().all(|&p| !alive(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for ns in &namespaces {
        let _ = ip(&["netns", "del", ns]);
    }
}

/// A live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The children of `pid` (from /proc), e.g. the memha supervisor's data process.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        if f.next().and_then(|p| p.parse::<i32>().ok()) == Some(pid) && state != "Z" {
            out.push(child);
        }
    }
    out
}

// ===== VIP holders over netlink =====

/// Asks each node's kernel which addresses it has: one rtnetlink socket per node
/// namespace, a dump per question. Cheap enough to ask every 10 ms.
pub struct AddrWatch {
    socks: Vec<OwnedFd>,
    seq: u32,
    buf: Vec<u8>,
}

const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

impl AddrWatch {
    pub fn open(nodes: &[String]) -> Result<AddrWatch> {
        let mut socks = Vec::new();
        for n in nodes {
            let fd = in_ns(&ns_of(n), || {
                // SAFETY: plain socket(2); the fd is owned right away.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_NETLINK,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        libc::NETLINK_ROUTE,
                    )
                };
                if fd < 0 {
                    return Err(format!(
                        "netlink socket: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                // SAFETY: fd is a new descriptor nobody else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })??;
            let tv = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            // SAFETY: setsockopt with a valid timeval of the right size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            socks.push(fd);
        }
        Ok(AddrWatch {
            socks,
            seq: 0,
            buf: vec![0; 65536],
        })
    }

    /// Which nodes (indexes) have `vip` configured.
    pub fn holders(&mut self, vip: Ipv4Addr) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for i in 0..self.socks.len() {
            if self.has(i, vip)? {
                out.push(i);
            }
        }
        Ok(out)
    }

    fn has(&mut self, i: usize, vip: Ipv4Addr) -> Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let fd = self.socks[i].as_raw_fd();
        let mut req = [0u8; 24];
        req[0..4].copy_from_slice(&24u32.to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        req[16] = libc::AF_INET as u8;
        // SAFETY: a zeroed sockaddr_nl with the family set addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sendto with a valid buffer and address of the right sizes.
        let n = unsafe {
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
        }
        let want = vip.octets();
        let mut found = false;
        loop {
            // SAFETY: recv into our own buffer.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                return Err(format!("netlink recv: {}", std::io::Error::last_os_error()));
            }
            let data = &self.buf[..n as usize];
            let mut off = 0;
            while off + 16 <= data.len() {
                let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap());
                let mseq = u32::from_ne_bytes(data[off + 8..off + 12].try_into().unwrap());
                if len < 16 || off + len > data.len() {
                    break;
                }
                if mseq == seq {
                    match ty {
                        NLMSG_DONE => return Ok(found),
                        NLMSG_ERROR => return Err("netlink dump failed".into()),
                        RTM_NEWADDR => {
                            // ifaddrmsg (8 bytes), then attributes
                            let mut a = off + 16 + 8;
                            while a + 4 <= off + len {
                                let alen =
                                    u16::from_ne_bytes(data[a..a + 2].try_into().unwrap()) as usize;
                                let aty =
                                    u16::from_ne_bytes(data[a + 2..a + 4].try_into().unwrap());
                                if alen < 4 || a + alen > off + len {
                                    break;
                                }
                                // IFA_ADDRESS = 1, IFA_LOCAL = 2
                                if (aty == 1 || aty == 2) && alen == 8 && data[a + 4..a + 8] == want
                                {
                                    found = true;
                                }
                                a += (alen + 3) & !3;
                            }
                        }
                        _ => {}
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(addr_of("n1"), Ipv4Addr::new(10, 95, 0, 11));
        assert_eq!(addr_of("n3"), Ipv4Addr::new(10, 95, 0, 13));
        assert_eq!(addr_of(CLIENT), Ipv4Addr::new(10, 95, 0, 100));
        assert_eq!(ns_of("n2"), "mhc-n2");
        assert_eq!(port_of("c"), "mhc-p-c");
        assert!(DEV.len() <= 15);
    }
}

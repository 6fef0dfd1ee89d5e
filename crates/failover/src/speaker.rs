//! The speaker: every configured virtual router, its sockets, timers and hooks, driven by
//! the caller's `poll` loop.
//!
//! The caller (memha's supervisor) owns the loop because it also watches the data process:
//! it polls [`Speaker::poll_fds`] with a timeout up to [`Speaker::next_deadline`], then calls
//! [`Speaker::service`]; it reports the cache's health with [`Speaker::set_health`] the
//! moment it changes. The speaker turns all of that into [`memha_vrrp::Event`]s and carries
//! out the [`memha_vrrp::Action`]s.
//!
//! # Handing the address over without a hole
//!
//! When a master resigns (the cache died or is not ready, or memha is stopping) the state
//! machine sends priority-0 adverts and asks for the VIPs to go. Removing them at once would
//! make the kernel drop, silently, every packet clients still send here until the backup's
//! gratuitous ARPs arrive — a client whose SYN is dropped retries only after a second. So
//! the removal is deferred until another router announces itself master (its advert
//! arrives just before its GARPs), or a Master_Down_Interval has passed. Meanwhile this node
//! still answers: on a graceful stop the cache is still serving (no request fails); after a
//! crash the port is closed and clients get a reset at once and retry. Even after the
//! successor's advert the addresses stay [`HANDOVER_GRACE`] longer: requests that reached
//! this node just before the clients' ARP caches switched are still being answered, and a
//! reply from an address already gone would be dropped, leaving the client to wait for a
//! TCP retransmission (~200 ms) that the new master can only answer with a reset.
//!
//! A master that yields to a better advert removes its VIPs at once: the winner already
//! holds them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memha_vrrp::packet::{self, DropReason, MCAST_ADDR_V4};
use memha_vrrp::{Action, Config, Event, Instance, State, TimerKind};

use crate::hooks::{HookRunner, Hooks};
use crate::netlink::{Link, LinkEvents, Netlink};
use crate::socket::{ArpSocket, VrrpSocket};
use crate::tickle::TickleSocket;

/// keepalived's `vrrp_script`, for operators who want their own check on top of the
/// cache's health. `weight` 0 (keepalived's default): a failing script puts the instance
/// in FAULT.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackScript {
    pub name: String,
    pub script: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the check counts as failed.
    pub fall: u32,
    /// Consecutive successes before a failed check counts as good again.
    pub rise: u32,
}

/// One `vrrp_instance` as the speaker runs it.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// The state machine's settings. An unspecified `primary_ip` (0.0.0.0) is filled in with
    /// `unicast_src_ip`, or else the interface's first IPv4 address.
    pub config: Config,
    pub interface: String,
    /// Prefix length for each of `config.vips` (32 for a host address).
    pub vip_prefixes: Vec<u8>,
    pub unicast_src_ip: Option<Ipv4Addr>,
    /// Non-empty: adverts go to these addresses instead of 224.0.0.18, and only adverts from
    /// them are accepted.
    pub unicast_peers: Vec<Ipv4Addr>,
    pub track_interfaces: Vec<String>,
    pub track_scripts: Vec<TrackScript>,
    pub hooks: Hooks,
    /// keepalived's `use_vmac`: the VIPs live on a macvlan interface `vrrp.<VRID>` carrying
    /// the RFC's virtual MAC 00:00:5e:00:01:<VRID>, so clients' ARP entries stay valid when
    /// the address moves (see [`Speaker::open`]).
    pub use_vmac: bool,
    /// Pass the cache's "holding unreplicated writes" on to the state machine
    /// ([`Speaker::set_hold`]); off, the instance keeps its configured priority.
    pub hold_unreplicated: bool,
}

/// How long a resigning master keeps its addresses after its successor announced itself
/// (module docs).
pub const HANDOVER_GRACE: Duration = Duration::from_millis(50);

/// Gratuitous ARPs are repeated this often while master, so a switch or client that missed
/// the takeover burst (or flushed its tables) finds the VIP again.
const GARP_REFRESH: Duration = Duration::from_secs(60);

/// A VRRP state that the rest of memha can show (`stats vrrp`, `/metrics`): one entry per
/// instance, `(key, value)` pairs in a fixed order.
pub type Status = Vec<(String, Vec<(&'static str, String)>)>;

struct ScriptCheck {
    spec: TrackScript,
    next_run: Instant,
    running: Option<(Child, Instant)>,
    ok: bool,
    streak: u32,
}

impl ScriptCheck {
    /// A check that starts as passing and runs at once.
    fn new(spec: &TrackScript, now: Instant) -> ScriptCheck {
        ScriptCheck {
            spec: spec.clone(),
            next_run: now,
            running: None,
            ok: true,
            streak: 0,
        }
    }
}

struct Router {
    spec: InstanceSpec,
    fsm: Instance,
    link: Link,
    /// (name, index, up) of each tracked interface.
    tracked: Vec<(String, u32, bool)>,
    socket: VrrpSocket,
    /// Where the VIPs are configured and gratuitous ARPs leave from: the interface, or the
    /// macvlan with the virtual MAC.
    vip_link: Link,
    /// The macvlan this speaker created, deleted again at a clean stop.
    vmac_created: bool,
    arp: ArpSocket,
    timers: [Option<Instant>; 4],
    /// The VIPs are configured by us.
    holding: bool,
    /// A resign is waiting for another master before the VIPs go (see the module docs).
    pending_removal: Option<Instant>,
    /// The successor of a pending removal has announced itself.
    successor_seen: bool,
    next_garp_refresh: Option<Instant>,
    ip_id: u16,
    link_up: bool,
    engine_healthy: bool,
    /// The cache holds writes a lagging peer lacks (as last reported).
    engine_hold: bool,
    scripts: Vec<ScriptCheck>,
    /// Who is master as far as we know.
    master: Option<IpAddr>,
    garps_sent: u64,
    /// Client connections reset at takeovers from a silent master (tickles sent).
    clients_reset: u64,
    /// The master that went silent at the last such takeover (the cache stops waiting for
    /// its acknowledgements at once, see `memha_repl`'s sync acknowledgement).
    silent_master: Option<IpAddr>,
    vip_adds: u64,
    vip_removes: u64,
    send_errors: u64,
    netlink_errors: u64,
    unknown_peer: u64,
}

fn timer_slot(kind: TimerKind) -> usize {
    match kind {
        TimerKind::Advert => 0,
        TimerKind::MasterDown => 1,
        TimerKind::PreemptDelay => 2,
        TimerKind::Garp => 3,
    }
}

const TIMERS: [TimerKind; 4] = [
    TimerKind::Advert,
    TimerKind::MasterDown,
    TimerKind::PreemptDelay,
    TimerKind::Garp,
];

/// Every configured virtual router.
pub struct Speaker {
    routers: Vec<Router>,
    netlink: Netlink,
    link_events: LinkEvents,
    hooks: HookRunner,
    buf: Vec<u8>,
    /// Resets the clients of a master that went silent (see [`crate::tickle`]).
    tickle: TickleSocket,
    /// The client connections the peers told about, as the cache last reported them.
    peer_clients: Vec<(SocketAddrV4, SocketAddrV4)>,
}

impl Speaker {
    /// Opens the sockets and netlink, resolves interfaces and primary addresses, and builds
    /// the state machines. Nothing is sent yet. Errors say which instance and what to fix.
    pub fn open(specs: Vec<InstanceSpec>) -> Result<Speaker, String> {
        let mut netlink = Netlink::open().map_err(|e| {
            format!("vrrp: cannot open rtnetlink: {e} (memha needs root or CAP_NET_ADMIN to manage virtual addresses)")
        })?;
        let link_events =
            LinkEvents::open().map_err(|e| format!("vrrp: cannot listen for link changes: {e}"))?;
        let mut routers = Vec::new();
        for mut spec in specs {
            let name = spec.config.name.clone();
            let link = netlink.link_by_name(&spec.interface).map_err(|e| {
                format!("vrrp_instance {name:?}: interface {}: {e}", spec.interface)
            })?;
            if spec.config.primary_ip.is_unspecified() {
                let primary = match spec.unicast_src_ip {
                    Some(ip) => ip,
                    None => netlink
                        .ipv4_addresses(link.index)
                        .map_err(|e| format!("vrrp_instance {name:?}: cannot read the addresses of {}: {e}", spec.interface))?
                        .into_iter()
                        .map(|(a, _)| a)
                        .find(|a| !spec.config.vips.contains(&IpAddr::V4(*a)))
                        .ok_or_else(|| {
                            format!(
                                "vrrp_instance {name:?}: {} has no IPv4 address of its own to send adverts from; \
                                 configure one or set unicast_src_ip",
                                spec.interface
                            )
                        })?,
                };
                spec.config.primary_ip = IpAddr::V4(primary);
            }
            if spec.config.vips.iter().any(|v| !v.is_ipv4()) {
                return Err(format!(
                    "vrrp_instance {name:?}: IPv6 virtual addresses are not supported yet; use IPv4"
                ));
            }
            let mut tracked = Vec::new();
            for t in &spec.track_interfaces {
                let l = netlink
                    .link_by_name(t)
                    .map_err(|e| format!("vrrp_instance {name:?}: track_interface {t}: {e}"))?;
                tracked.push((t.clone(), l.index, l.up));
            }
            let fsm = Instance::new(spec.config.clone())
                .map_err(|e| format!("vrrp_instance {name:?}: {}", e.0))?;
            let socket = VrrpSocket::open(&link, spec.unicast_peers.is_empty())
                .map_err(|e| format!("vrrp_instance {name:?}: {e}"))?;
            let (vip_link, vmac_created) = if spec.use_vmac {
                let (l, created) = open_vmac(&mut netlink, &link, spec.config.vrid)
                    .map_err(|e| format!("vrrp_instance {name:?}: use_vmac: {e}"))?;
                (l, created)
            } else {
                (link.clone(), false)
            };
            let arp =
                ArpSocket::open(&vip_link).map_err(|e| format!("vrrp_instance {name:?}: {e}"))?;
            let link_up = link.up && tracked.iter().all(|t| t.2);
            let now = Instant::now();
            let scripts = spec
                .track_scripts
                .iter()
                .map(|s| ScriptCheck::new(s, now))
                .collect();
            routers.push(Router {
                spec,
                fsm,
                link,
                tracked,
                socket,
                vip_link,
                vmac_created,
                arp,
                timers: [None; 4],
                holding: false,
                pending_removal: None,
                successor_seen: false,
                next_garp_refresh: None,
                ip_id: 0,
                link_up,
                engine_healthy: false,
                engine_hold: false,
                scripts,
                master: None,
                garps_sent: 0,
                clients_reset: 0,
                silent_master: None,
                vip_adds: 0,
                vip_removes: 0,
                send_errors: 0,
                netlink_errors: 0,
                unknown_peer: 0,
            });
        }
        Ok(Speaker {
            routers,
            netlink,
            link_events,
            hooks: HookRunner::new(),
            buf: vec![0; 2048],
            tickle: TickleSocket::open().map_err(|e| format!("vrrp: {e}"))?,
            peer_clients: Vec::new(),
        })
    }

    /// Starts every instance: stale VIPs (left by a crash) are removed, then each goes to
    /// BACKUP (or FAULT if the cache is not healthy or the interface is down).
    pub fn start(&mut self, healthy: bool, now: Instant) {
        for i in 0..self.routers.len() {
            let r = &mut self.routers[i];
            r.engine_healthy = healthy;
            tracing::info!(
                "vrrp_instance {}: VRRPv{} vrid {} on {} from {}, priority {}, advert every {} ms, {}",
                r.spec.config.name,
                r.spec.config.version.number(),
                r.spec.config.vrid,
                r.spec.interface,
                r.spec.config.primary_ip,
                r.spec.config.priority,
                u32::from(r.spec.config.advert_int_cs) * 10,
                if r.spec.unicast_peers.is_empty() {
                    "multicast".to_string()
                } else {
                    format!("unicast to {:?}", r.spec.unicast_peers)
                }
            );
            let ready = r.operational_health();
            if !ready {
                self.feed(i, Event::HealthChanged { ready: false }, now);
            }
            if !self.routers[i].link_up {
                self.feed(i, Event::InterfaceDown, now);
            }
            self.feed(i, Event::Startup, now);
        }
    }

    /// The descriptors to poll for reading.
    pub fn poll_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.routers.iter().map(|r| r.socket.as_raw_fd()).collect();
        fds.push(self.link_events.as_raw_fd());
        fds
    }

    /// When [`Speaker::service`] must run next even if no descriptor becomes readable.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for r in &self.routers {
            for t in r.timers {
                consider(t);
            }
            consider(r.pending_removal);
            consider(r.next_garp_refresh);
            for s in &r.scripts {
                consider(Some(match &s.running {
                    Some((_, started)) => {
                        (*started + s.spec.timeout).min(Instant::now() + Duration::from_millis(50))
                    }
                    None => s.next_run,
                }));
            }
        }
        if self.hooks.pending() {
            consider(Some(Instant::now() + Duration::from_millis(100)));
        }
        next
    }

    /// Reads everything pending on the sockets, fires the timers that are due, runs the
    /// track scripts and reaps finished hooks. Never blocks.
    pub fn service(&mut self, now: Instant) {
        self.read_link_events(now);
        for i in 0..self.routers.len() {
            self.read_adverts(i, now);
        }
        for i in 0..self.routers.len() {
            for kind in TIMERS {
                if self.routers[i].timers[timer_slot(kind)].is_some_and(|t| t <= now) {
                    self.routers[i].timers[timer_slot(kind)] = None;
                    self.feed(i, kind.event(), now);
                }
            }
            if self.routers[i].pending_removal.is_some_and(|t| t <= now) {
                if !self.routers[i].successor_seen {
                    tracing::info!(
                        "vrrp_instance {}: no new master announced itself; removing the virtual addresses",
                        self.routers[i].spec.config.name
                    );
                }
                self.remove_vips(i);
            }
            if self.routers[i].next_garp_refresh.is_some_and(|t| t <= now) {
                self.send_garps(i, 1);
                self.routers[i].next_garp_refresh = Some(now + GARP_REFRESH);
            }
            self.run_scripts(i, now);
        }
        self.hooks.reap();
    }

    /// The cache's health changed (ready after its first sync, or died / not serving).
    pub fn set_health(&mut self, healthy: bool, now: Instant) {
        for i in 0..self.routers.len() {
            let before = self.routers[i].operational_health();
            self.routers[i].engine_healthy = healthy;
            let after = self.routers[i].operational_health();
            if before != after {
                self.feed(i, Event::HealthChanged { ready: after }, now);
            }
        }
    }

    /// The cache holds writes a lagging peer lacks, or no longer does: a master advertises
    /// [`memha_vrrp::HOLD_PRIORITY`] meanwhile (instances with `hold_unreplicated` off
    /// ignore it).
    pub fn set_hold(&mut self, hold: bool, now: Instant) {
        for i in 0..self.routers.len() {
            let r = &mut self.routers[i];
            let hold = hold && r.spec.hold_unreplicated;
            if r.engine_hold != hold {
                r.engine_hold = hold;
                if hold && r.fsm.state() == State::Master {
                    tracing::info!(
                        "vrrp_instance {}: the cache holds writes a peer lacks; advertising \
                         priority {} until the peer has them",
                        r.spec.config.name,
                        memha_vrrp::HOLD_PRIORITY
                    );
                } else if !hold && r.fsm.holding() && r.fsm.state() == State::Master {
                    tracing::info!(
                        "vrrp_instance {}: every peer has the cache's writes; advertising \
                         priority {} again",
                        r.spec.config.name,
                        r.spec.config.priority
                    );
                }
                self.feed(i, Event::HoldChanged { hold }, now);
            }
        }
    }

    /// Graceful stop, step one: every master resigns (priority-0 adverts) but keeps its VIPs
    /// until the new master announces itself; poll until [`Speaker::stopped`], then
    /// [`Speaker::finish`].
    pub fn stop(&mut self, now: Instant) {
        for i in 0..self.routers.len() {
            self.feed(i, Event::Shutdown, now);
        }
    }

    /// True when no instance still holds addresses waiting for a successor.
    pub fn stopped(&self) -> bool {
        self.routers.iter().all(|r| r.pending_removal.is_none())
    }

    /// Graceful stop, step two: removes whatever addresses are left and gives the
    /// `notify_stop` hooks a moment to run.
    pub fn finish(&mut self) {
        for i in 0..self.routers.len() {
            if self.routers[i].holding || self.routers[i].pending_removal.is_some() {
                self.remove_vips(i);
            }
            for s in &mut self.routers[i].scripts {
                if let Some((mut child, _)) = s.running.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            let r = &self.routers[i];
            if r.vmac_created {
                if let Err(e) = self.netlink.delete_link(r.vip_link.index) {
                    tracing::warn!("vrrp_instance {}: {e}", r.spec.config.name);
                }
            }
        }
        self.hooks.wait_all(Duration::from_secs(2));
    }

    /// SIGHUP: takes the notify hooks and track scripts of the instances in `specs` (matched
    /// by name) and returns one line per instance saying what changed and what needs a
    /// restart (everything else: the protocol settings are not changed under a running
    /// election).
    pub fn reload(&mut self, specs: Vec<InstanceSpec>, now: Instant) -> Vec<String> {
        let mut report = Vec::new();
        for r in &mut self.routers {
            let name = r.spec.config.name.clone();
            let Some(new) = specs.iter().find(|s| s.config.name == name) else {
                report.push(format!(
                    "vrrp_instance {name:?} is no longer configured: restart memha to remove it"
                ));
                continue;
            };
            let mut done = Vec::new();
            if new.hooks != r.spec.hooks {
                r.spec.hooks = new.hooks.clone();
                done.push("notify hooks");
            }
            if new.track_scripts != r.spec.track_scripts {
                r.spec.track_scripts = new.track_scripts.clone();
                for s in &mut r.scripts {
                    if let Some((mut child, _)) = s.running.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
                r.scripts = new
                    .track_scripts
                    .iter()
                    .map(|s| ScriptCheck::new(s, now))
                    .collect();
                done.push("track scripts");
            }
            let mut wanted = new.config.clone();
            if wanted.primary_ip.is_unspecified() {
                wanted.primary_ip = r.spec.config.primary_ip;
            }
            let unchanged = wanted == r.spec.config
                && new.interface == r.spec.interface
                && new.vip_prefixes == r.spec.vip_prefixes
                && new.unicast_src_ip == r.spec.unicast_src_ip
                && new.unicast_peers == r.spec.unicast_peers
                && new.track_interfaces == r.spec.track_interfaces;
            let mut line = format!(
                "vrrp_instance {name:?}: {}",
                if done.is_empty() {
                    "hooks and track scripts unchanged".to_string()
                } else {
                    format!("reloaded {}", done.join(" and "))
                }
            );
            if !unchanged {
                line.push_str("; other settings changed and need a restart of memha");
            }
            report.push(line);
        }
        for s in &specs {
            if !self
                .routers
                .iter()
                .any(|r| r.spec.config.name == s.config.name)
            {
                report.push(format!(
                    "vrrp_instance {:?} is new: restart memha to start it",
                    s.config.name
                ));
            }
        }
        // Replaced scripts start as passing: an instance that was in FAULT only because of an
        // old script leaves it (a failing new script puts it back after `fall` runs).
        for i in 0..self.routers.len() {
            let r = &self.routers[i];
            if r.operational_health() && r.link_up && r.fsm.state() == State::Fault {
                self.feed(i, Event::HealthChanged { ready: true }, now);
            }
        }
        report
    }

    /// True if some instance is master or still holds its addresses.
    pub fn holds_vips(&self) -> bool {
        self.routers.iter().any(|r| r.holding)
    }

    /// The state of every instance, for `stats vrrp` and `/metrics`.
    pub fn status(&self) -> Status {
        self.routers
            .iter()
            .map(|r| {
                let c = r.fsm.counters();
                let cfg = &r.spec.config;
                let mut kv: Vec<(&'static str, String)> = vec![
                    ("state", r.fsm.state().name().to_string()),
                    ("interface", r.spec.interface.clone()),
                    ("vip_interface", r.vip_link.name.clone()),
                    ("vrid", cfg.vrid.to_string()),
                    ("version", cfg.version.number().to_string()),
                    ("priority", cfg.priority.to_string()),
                    ("effective_priority", r.fsm.effective_priority().to_string()),
                    (
                        "advert_int_ms",
                        (u32::from(cfg.advert_int_cs) * 10).to_string(),
                    ),
                    ("primary_ip", cfg.primary_ip.to_string()),
                    (
                        "master",
                        match (r.fsm.state(), r.master) {
                            (State::Master, _) => cfg.primary_ip.to_string(),
                            (_, Some(ip)) => ip.to_string(),
                            (_, None) => "none".to_string(),
                        },
                    ),
                    (
                        "vips",
                        cfg.vips
                            .iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    ("holding_vips", u8::from(r.holding).to_string()),
                    ("unreplicated_hold", u8::from(r.engine_hold).to_string()),
                    ("healthy", u8::from(r.operational_health()).to_string()),
                    ("link_up", u8::from(r.link_up).to_string()),
                    ("transitions", c.transitions.to_string()),
                    ("became_master", c.became_master.to_string()),
                    ("adverts_sent", c.adverts_sent.to_string()),
                    ("adverts_received", c.adverts_received.to_string()),
                    ("priority0_sent", c.priority0_sent.to_string()),
                    ("priority0_received", c.priority0_received.to_string()),
                    ("garps_sent", r.garps_sent.to_string()),
                    (
                        "silent_master_takeovers",
                        c.silent_master_takeovers.to_string(),
                    ),
                    ("clients_reset", r.clients_reset.to_string()),
                    (
                        "silent_master",
                        r.silent_master
                            .map_or_else(|| "none".to_string(), |ip| ip.to_string()),
                    ),
                    ("vip_adds", r.vip_adds.to_string()),
                    ("vip_removes", r.vip_removes.to_string()),
                    ("send_errors", r.send_errors.to_string()),
                    ("netlink_errors", r.netlink_errors.to_string()),
                    ("unknown_peer", r.unknown_peer.to_string()),
                    ("hooks_started", self.hooks.started().to_string()),
                    ("hooks_failed", self.hooks.failed().to_string()),
                    ("dropped_total", c.drops.total().to_string()),
                ];
                for reason in DropReason::ALL {
                    kv.push((drop_key(reason), c.drops.get(reason).to_string()));
                }
                (cfg.name.clone(), kv)
            })
            .collect()
    }

    // ----- input -----

    fn read_link_events(&mut self, now: Instant) {
        let changes = match self.link_events.drain() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("vrrp: link events: {e}; re-reading every interface");
                match self.netlink.links() {
                    Ok(links) => links.into_iter().map(|l| (l.index, l.up)).collect(),
                    Err(e) => {
                        tracing::error!("vrrp: cannot read the interfaces: {e}");
                        return;
                    }
                }
            }
        };
        if changes.is_empty() {
            return;
        }
        let mut latest: HashMap<u32, bool> = HashMap::new();
        for (index, up) in changes {
            latest.insert(index, up);
        }
        for i in 0..self.routers.len() {
            let r = &mut self.routers[i];
            if let Some(up) = latest.get(&r.link.index) {
                r.link.up = *up;
            }
            for t in &mut r.tracked {
                if let Some(up) = latest.get(&t.1) {
                    t.2 = *up;
                }
            }
            let now_up = r.link.up && r.tracked.iter().all(|t| t.2);
            if now_up != r.link_up {
                r.link_up = now_up;
                let down: Vec<&str> = std::iter::once((&r.spec.interface, r.link.up))
                    .chain(r.tracked.iter().map(|t| (&t.0, t.2)))
                    .filter(|(_, up)| !up)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if now_up {
                    tracing::info!("vrrp_instance {}: interfaces up again", r.spec.config.name);
                } else {
                    tracing::warn!(
                        "vrrp_instance {}: interface down: {}",
                        r.spec.config.name,
                        down.join(", ")
                    );
                }
                let ev = if now_up {
                    Event::InterfaceUp
                } else {
                    Event::InterfaceDown
                };
                self.feed(i, ev, now);
            }
        }
    }

    fn read_adverts(&mut self, i: usize, now: Instant) {
        loop {
            let n = match self.routers[i].socket.recv(&mut self.buf) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(
                        "vrrp_instance {}: receive: {e}",
                        self.routers[i].spec.config.name
                    );
                    return;
                }
            };
            let pkt = &self.buf[..n];
            // Another local instance's VRID on the same interface: its business, not a drop.
            if let Some(vrid) = peek_vrid(pkt) {
                let r = &self.routers[i];
                if vrid != r.spec.config.vrid
                    && self
                        .routers
                        .iter()
                        .any(|o| o.spec.config.vrid == vrid && o.link.index == r.link.index)
                {
                    continue;
                }
            }
            let r = &mut self.routers[i];
            let check = r.fsm.rx_check();
            match packet::decode_ipv4(pkt, &check) {
                Err(reason) => {
                    r.fsm.record_drop(reason);
                    tracing::debug!(
                        "vrrp_instance {}: dropped an advert: {reason}",
                        r.spec.config.name
                    );
                }
                Ok((meta, advert)) => {
                    if meta.src == r.spec.config.primary_ip {
                        continue; // our own, looped back
                    }
                    if !r.spec.unicast_peers.is_empty()
                        && !matches!(meta.src, IpAddr::V4(s) if r.spec.unicast_peers.contains(&s))
                    {
                        r.unknown_peer += 1;
                        continue;
                    }
                    if advert.priority > 0 {
                        r.master = Some(meta.src);
                        if let Some(at) = r.pending_removal.filter(|_| !r.successor_seen) {
                            tracing::info!(
                                "vrrp_instance {}: {} took over; removing the virtual addresses in {} ms",
                                r.spec.config.name,
                                meta.src,
                                HANDOVER_GRACE.as_millis()
                            );
                            r.successor_seen = true;
                            r.pending_removal = Some(at.min(now + HANDOVER_GRACE));
                        }
                    } else if self.routers[i].master == Some(meta.src) {
                        self.routers[i].master = None;
                    }
                    let ev = Event::AdvertReceived {
                        from_ip: meta.src,
                        priority: advert.priority,
                        max_advert_int: advert.interval_cs() as u16,
                    };
                    self.feed(i, ev, now);
                }
            }
        }
    }

    fn run_scripts(&mut self, i: usize, now: Instant) {
        let mut changed = false;
        let name = self.routers[i].spec.config.name.clone();
        for s in &mut self.routers[i].scripts {
            let result = match &mut s.running {
                Some((child, started)) => match child.try_wait() {
                    Ok(Some(status)) => Some(status.success()),
                    Ok(None) if now.duration_since(*started) >= s.spec.timeout => {
                        let _ = child.kill();
                        let _ = child.wait();
                        tracing::warn!(
                            "vrrp_instance {name}: track_script {} timed out after {:?}",
                            s.spec.name,
                            s.spec.timeout
                        );
                        Some(false)
                    }
                    Ok(None) => None,
                    Err(_) => Some(false),
                },
                None => {
                    if s.next_run <= now {
                        match Command::new("/bin/sh")
                            .arg("-c")
                            .arg(&s.spec.script)
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .spawn()
                        {
                            Ok(child) => s.running = Some((child, now)),
                            Err(e) => {
                                tracing::error!(
                                    "vrrp_instance {name}: cannot run track_script {}: {e}",
                                    s.spec.name
                                );
                                s.next_run = now + s.spec.interval;
                            }
                        }
                    }
                    None
                }
            };
            if let Some(ok) = result {
                s.running = None;
                s.next_run = now + s.spec.interval;
                if ok == s.ok {
                    s.streak = 0;
                } else {
                    s.streak += 1;
                    let needed = if s.ok { s.spec.fall } else { s.spec.rise };
                    if s.streak >= needed.max(1) {
                        s.ok = ok;
                        s.streak = 0;
                        changed = true;
                        if ok {
                            tracing::info!(
                                "vrrp_instance {name}: track_script {} succeeds again",
                                s.spec.name
                            );
                        } else {
                            tracing::warn!(
                                "vrrp_instance {name}: track_script {} failed",
                                s.spec.name
                            );
                        }
                    }
                }
            }
        }
        if changed {
            let ready = self.routers[i].operational_health();
            self.feed(i, Event::HealthChanged { ready }, now);
        }
    }

    // ----- output -----

    /// Feeds one event to instance `i` and carries out the actions.
    fn feed(&mut self, i: usize, event: Event, now: Instant) {
        let before = self.routers[i].fsm.state();
        let master_before = self.routers[i].master;
        let actions = self.routers[i].fsm.handle(event, now);
        let after = self.routers[i].fsm.state();
        if before != after {
            tracing::info!(
                "vrrp_instance {}: {} -> {} ({:?})",
                self.routers[i].spec.config.name,
                before.name(),
                after.name(),
                event
            );
        }
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send_advert(i, priority),
                Action::AddVip => self.add_vips(i, now),
                Action::RemoveVip => {
                    let r = &mut self.routers[i];
                    // Resigning (FAULT or stop) while holding: wait for the successor.
                    if r.holding && matches!(r.fsm.state(), State::Fault | State::Initialize) {
                        r.pending_removal = Some(now + r.fsm.master_down_interval());
                        r.successor_seen = false;
                        r.next_garp_refresh = None;
                    } else {
                        self.remove_vips(i);
                    }
                }
                Action::SendGarp { count } => self.send_garps(i, count),
                Action::SetTimer { kind, at } => {
                    self.routers[i].timers[timer_slot(kind)] = Some(at)
                }
                Action::CancelTimer { kind } => self.routers[i].timers[timer_slot(kind)] = None,
                Action::RunNotify { state, priority } => {
                    let r = &self.routers[i];
                    self.hooks
                        .run(&r.spec.config.name, &r.spec.hooks, state, priority);
                }
                Action::ResetClients => {
                    self.routers[i].silent_master = master_before;
                    self.reset_clients(i);
                }
            }
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        let r = &mut self.routers[i];
        let IpAddr::V4(src) = r.spec.config.primary_ip else {
            return;
        };
        let advert = r.fsm.advert(priority);
        let dsts: Vec<Ipv4Addr> = if r.spec.unicast_peers.is_empty() {
            vec![MCAST_ADDR_V4]
        } else {
            r.spec.unicast_peers.clone()
        };
        for dst in dsts {
            let payload = match advert.encode(IpAddr::V4(src), IpAddr::V4(dst)) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(
                        "vrrp_instance {}: cannot encode an advert: {e}",
                        r.spec.config.name
                    );
                    return;
                }
            };
            r.ip_id = r.ip_id.wrapping_add(1);
            let mut pkt = Vec::with_capacity(20 + payload.len());
            pkt.extend_from_slice(&packet::ipv4_header(src, dst, r.ip_id, payload.len()));
            pkt.extend_from_slice(&payload);
            if let Err(e) = r.socket.send_to(&pkt, dst) {
                r.send_errors += 1;
                if r.send_errors <= 10 || r.send_errors % 1000 == 0 {
                    tracing::warn!(
                        "vrrp_instance {}: cannot send an advert to {dst}: {e}",
                        r.spec.config.name
                    );
                }
            }
        }
    }

    fn add_vips(&mut self, i: usize, now: Instant) {
        let r = &mut self.routers[i];
        r.pending_removal = None;
        r.holding = true;
        r.master = None;
        r.next_garp_refresh = Some(now + GARP_REFRESH);
        for (vip, prefix) in r.spec.config.vips.iter().zip(&r.spec.vip_prefixes) {
            match self
                .netlink
                .add_address(r.vip_link.index, *vip, *prefix, Some(&r.vip_link.name))
            {
                Ok(_) => r.vip_adds += 1,
                Err(e) => {
                    r.netlink_errors += 1;
                    tracing::error!(
                        "vrrp_instance {}: cannot add {vip}/{prefix} to {}: {e}",
                        r.spec.config.name,
                        r.spec.interface
                    );
                }
            }
        }
    }

    fn remove_vips(&mut self, i: usize) {
        let r = &mut self.routers[i];
        r.pending_removal = None;
        r.holding = false;
        r.next_garp_refresh = None;
        for (vip, prefix) in r.spec.config.vips.iter().zip(&r.spec.vip_prefixes) {
            match self.netlink.del_address(r.vip_link.index, *vip, *prefix) {
                Ok(true) => {
                    r.vip_removes += 1;
                    tracing::debug!(
                        "vrrp_instance {}: removed {vip}/{prefix}",
                        r.spec.config.name
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    r.netlink_errors += 1;
                    tracing::error!(
                        "vrrp_instance {}: cannot remove {vip}/{prefix} from {}: {e}",
                        r.spec.config.name,
                        r.spec.interface
                    );
                }
            }
        }
    }

    /// Tickles every client connection a peer had to one of instance `i`'s addresses (see
    /// [`crate::tickle`]): they belong to the master that just went silent.
    fn reset_clients(&mut self, i: usize) {
        let r = &mut self.routers[i];
        let (mut sent, mut failed) = (0u64, 0u64);
        let mut last_error = None;
        for (server, client) in &self.peer_clients {
            if !r.spec.config.vips.contains(&IpAddr::V4(*server.ip())) {
                continue;
            }
            match self.tickle.send(*server, *client) {
                Ok(()) => sent += 1,
                Err(e) => {
                    failed += 1;
                    last_error = Some(e);
                }
            }
        }
        r.clients_reset += sent;
        r.send_errors += failed;
        if sent > 0 || failed > 0 {
            tracing::info!(
                "vrrp_instance {}: took over from a silent master; reset {sent} client connection(s) to it so the clients reconnect now{}",
                r.spec.config.name,
                match last_error {
                    Some(e) => format!(" ({failed} could not be sent: {e})"),
                    None => String::new(),
                }
            );
        }
    }

    /// The client connections the peers told about (from the cache, see
    /// `memha_repl::clients`): reset when this node takes over from a silent master.
    pub fn set_peer_clients(&mut self, clients: Vec<(SocketAddrV4, SocketAddrV4)>) {
        self.peer_clients = clients;
    }

    fn send_garps(&mut self, i: usize, count: u8) {
        let r = &mut self.routers[i];
        for _ in 0..count {
            for vip in &r.spec.config.vips {
                if let IpAddr::V4(v4) = vip {
                    let frame = packet::garp_frame(r.vip_link.mac, *v4);
                    match r.arp.send(&frame) {
                        Ok(()) => r.garps_sent += 1,
                        Err(e) => {
                            r.send_errors += 1;
                            tracing::warn!(
                                "vrrp_instance {}: cannot send a gratuitous ARP: {e}",
                                r.spec.config.name
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The macvlan `vrrp.<VRID>` with the virtual MAC on top of `parent`, made ready to carry
/// the VIPs (created if missing: a crash may have left it). Returns it and whether it was
/// created here.
///
/// Adverts still leave from the parent interface with its own MAC (keepalived's
/// `vmac_xmit_base`): every node of the group has a macvlan with the same virtual MAC, and
/// the kernel hands a multicast frame whose source is a local macvlan's MAC to that macvlan
/// only, so adverts sent from the virtual MAC would never reach the peers' parent
/// interfaces. Switches learn where the virtual MAC is from the gratuitous ARPs, which do
/// leave from the macvlan (at takeover and every minute after).
///
/// The ARP settings are what makes the virtual MAC the only one answering for the VIP:
/// `arp_ignore = 1` on both interfaces (answer only for addresses configured on the
/// interface the request came in on), so the parent never answers for the VIP and the
/// macvlan never answers for the parent's own addresses; `arp_announce = 2` on the parent
/// (its own requests name its own address, never the VIP). IPv6 is off on the macvlan so a
/// backup sends nothing at all from the shared MAC (no link-local address, no DAD), and
/// reverse-path filtering is off on it because replies to the VIP leave by the parent.
fn open_vmac(netlink: &mut Netlink, parent: &Link, vrid: u8) -> Result<(Link, bool), String> {
    let name = format!("vrrp.{vrid}");
    let mac = packet::virtual_mac(vrid);
    let (link, created) = match netlink.link_by_name(&name) {
        Ok(l) => {
            if l.mac != mac {
                return Err(format!(
                    "an interface named {name} exists with another MAC; remove it (`ip link del {name}`)"
                ));
            }
            (l, false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            netlink
                .create_macvlan(parent.index, &name, mac)
                .map_err(|e| e.to_string())?,
            true,
        ),
        Err(e) => return Err(e.to_string()),
    };
    let set = |path: String, value: &str| {
        std::fs::write(&path, value).map_err(|e| {
            format!(
                "cannot set {path}: {e} (use_vmac changes ARP settings; under systemd the unit's \
                 ProtectKernelTunables=yes forbids it: set ProtectKernelTunables=no with \
                 `systemctl edit memha`)"
            )
        })
    };
    set(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1").or_else(|e| {
        // A kernel without IPv6 has no such file: nothing to disable.
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            Err(e)
        } else {
            Ok(())
        }
    })?;
    set(format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore"), "1")?;
    set(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "0")?;
    set(
        format!("/proc/sys/net/ipv4/conf/{}/arp_ignore", parent.name),
        "1",
    )?;
    // Replies to clients leave by the parent; when it asks for a client's MAC it must not
    // name the VIP as its sender, or clients would learn the parent's MAC for the VIP.
    set(
        format!("/proc/sys/net/ipv4/conf/{}/arp_announce", parent.name),
        "2",
    )?;
    netlink.set_link_up(link.index).map_err(|e| e.to_string())?;
    let link = netlink.link(link.index).map_err(|e| e.to_string())?;
    Ok((link, created))
}

impl Router {
    fn operational_health(&self) -> bool {
        self.engine_healthy && self.scripts.iter().all(|s| s.ok)
    }
}

/// The VRID of a raw IPv4 packet, if it is long enough to have one.
fn peek_vrid(pkt: &[u8]) -> Option<u8> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    pkt.get(ihl + 1).copied()
}

fn drop_key(reason: DropReason) -> &'static str {
    match reason {
        DropReason::TooShort => "dropped_too_short",
        DropReason::IpHeader => "dropped_ip_header",
        DropReason::NotVrrp => "dropped_not_vrrp",
        DropReason::Ttl => "dropped_ttl",
        DropReason::Version => "dropped_version",
        DropReason::Type => "dropped_type",
        DropReason::NoAddresses => "dropped_no_addresses",
        DropReason::Length => "dropped_length",
        DropReason::Checksum => "dropped_checksum",
        DropReason::Vrid => "dropped_vrid",
        DropReason::AuthType => "dropped_auth_type",
        DropReason::AuthPassword => "dropped_auth_password",
        DropReason::Interval => "dropped_interval",
        DropReason::AddressList => "dropped_address_list",
    }
}

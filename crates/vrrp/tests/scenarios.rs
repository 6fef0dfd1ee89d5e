//! Golden scenario tests for the state machine, in the spirit of holo-vrrp's conformance
//! tests: no sockets, no root, fully deterministic.
//!
//! * Single-instance tables: `(time, event, expected actions)`, times in microseconds from
//!   the start, actions rendered as one line each (`SetTimer MasterDown 3.609375`, times in
//!   seconds from the start).
//! * Multi-node runs: several instances on a fake network. Every `SendAdvert` is encoded
//!   with the real packet code, carried with a per-link latency (or lost across a
//!   partition), decoded and validated by the receiver, and fed back as `AdvertReceived`;
//!   timers fire from `SetTimer`. The run produces a log of what an operator would see
//!   (state changes, VIP added/removed, GARPs, adverts outside the regular cycle), compared
//!   line by line with the expected log. A "client" follows the GARPs, as a Linux ARP cache
//!   does, so a black hole (the client's MAC is not the VIP holder's) is detectable.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use memha_vrrp::packet::{Advert, Auth, RxMeta, Version, MCAST_ADDR_V4};
use memha_vrrp::{Action, Config, Event, InitialState, Instance, State, TimerKind};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 68, 46));
const GROUP: IpAddr = IpAddr::V4(MCAST_ADDR_V4);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 68, last))
}

/// The seed's instance: v2, PASS "memcache", 1 s adverts, VRID 51.
fn seed(priority: u8, last: u8) -> Config {
    let mut c = Config::new("VI_1", 51, ip(last), vec![VIP]);
    c.priority = priority;
    c.auth = Auth::password(b"memcache");
    c
}

fn v3(priority: u8, last: u8, int_cs: u16) -> Config {
    let mut c = Config::new("VI_1", 51, ip(last), vec![VIP]);
    c.version = Version::V3;
    c.priority = priority;
    c.advert_int_cs = int_cs;
    c
}

fn secs(t0: Instant, t: Instant) -> String {
    let us = t.duration_since(t0).as_micros();
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn render(a: &Action, t0: Instant) -> String {
    match a {
        Action::SendAdvert { priority } => format!("SendAdvert {priority}"),
        Action::AddVip => "AddVip".into(),
        Action::RemoveVip => "RemoveVip".into(),
        Action::SendGarp { count } => format!("SendGarp {count}"),
        Action::SetTimer { kind, at } => format!("SetTimer {kind:?} {}", secs(t0, *at)),
        Action::CancelTimer { kind } => format!("CancelTimer {kind:?}"),
        Action::RunNotify { state, priority } => format!("Notify {} {priority}", state.name()),
        Action::ResetClients => "ResetClients".into(),
    }
}

fn advert(from: u8, priority: u8, int_cs: u16) -> Event {
    Event::AdvertReceived {
        from_ip: ip(from),
        priority,
        max_advert_int: int_cs,
    }
}

/// Replays `steps` into a fresh instance and compares every step's actions.
fn run_table(cfg: Config, steps: &[(u64, Event, &[&str])]) -> Instance {
    let t0 = Instant::now();
    let mut inst = Instance::new(cfg).unwrap();
    for (i, (us, event, expected)) in steps.iter().enumerate() {
        let now = t0 + Duration::from_micros(*us);
        let got: Vec<String> = inst
            .handle(*event, now)
            .iter()
            .map(|a| render(a, t0))
            .collect();
        assert_eq!(
            got,
            *expected,
            "step {i} ({event:?} at {}): state now {:?}",
            secs(t0, now),
            inst.state()
        );
    }
    inst
}

const NONE: &[&str] = &[];

// ===== single instance =====

#[test]
fn startup_as_backup_becomes_master_after_master_down() {
    let inst = run_table(
        seed(100, 11),
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                3_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 4.609375",
                    "SetTimer Garp 8.609375",
                    "Notify MASTER 100",
                ],
            ),
            (
                4_609_375,
                Event::AdvertTimerFired,
                &["SendAdvert 100", "SetTimer Advert 5.609375"],
            ),
            (8_609_375, Event::GarpTimerFired, &["SendGarp 5"]),
            // A better master shows up: one last advert at our priority, then yield.
            (
                9_000_000,
                advert(12, 110, 100),
                &[
                    "SendAdvert 100",
                    "CancelTimer Advert",
                    "RemoveVip",
                    "SetTimer MasterDown 12.609375",
                    "Notify BACKUP 100",
                ],
            ),
            // It keeps advertising: the down timer restarts each time.
            (
                10_000_000,
                advert(12, 110, 100),
                &["SetTimer MasterDown 13.609375"],
            ),
            // It resigns: take over after Skew_Time only.
            (
                11_000_000,
                advert(12, 0, 100),
                &["SetTimer MasterDown 11.609375"],
            ),
            (
                11_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 12.609375",
                    "SetTimer Garp 16.609375",
                    "Notify MASTER 100",
                ],
            ),
            // Stale expiries (the driver lost a race with a cancel) are ignored.
            (11_700_000, Event::MasterDownTimerFired, NONE),
            (11_700_000, Event::PreemptDelayFired, NONE),
        ],
    );
    let c = inst.counters();
    assert_eq!(c.became_master, 2);
    assert_eq!(c.adverts_sent, 4);
    assert_eq!(c.adverts_received, 3);
    assert_eq!(c.priority0_received, 1);
    assert_eq!(c.stale_timers, 2);
}

#[test]
fn master_equal_priority_tie_break_and_lower_priority_reannounce() {
    run_table(
        seed(100, 11),
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                3_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 4.609375",
                    "SetTimer Garp 8.609375",
                    "Notify MASTER 100",
                ],
            ),
            // Equal priority from a lower address: we win; re-announce and re-GARP.
            (
                4_000_000,
                advert(10, 100, 100),
                &["SendAdvert 100", "SetTimer Advert 5.000000", "SendGarp 5"],
            ),
            // Lower priority (a healed partition): same.
            (
                4_500_000,
                advert(12, 90, 100),
                &["SendAdvert 100", "SetTimer Advert 5.500000", "SendGarp 5"],
            ),
            // Another master resigns: advertise at once.
            (
                4_600_000,
                advert(12, 0, 100),
                &["SendAdvert 100", "SetTimer Advert 5.600000"],
            ),
            // Our own advert looped back: ignored.
            (4_700_000, advert(11, 100, 100), NONE),
            // Equal priority from a higher address: it wins.
            (
                5_000_000,
                advert(13, 100, 100),
                &[
                    "SendAdvert 100",
                    "CancelTimer Advert",
                    "CancelTimer Garp",
                    "RemoveVip",
                    "SetTimer MasterDown 8.609375",
                    "Notify BACKUP 100",
                ],
            ),
            // As backup, equal priority is a valid master whatever its address.
            (
                6_000_000,
                advert(10, 100, 100),
                &["SetTimer MasterDown 9.609375"],
            ),
        ],
    );
}

#[test]
fn backup_preemption_rules() {
    // Preemption on: a lower-priority master's adverts are discarded, so we take over when
    // the down timer (armed at startup) runs out.
    let inst = run_table(
        seed(100, 11),
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (1_000_000, advert(12, 90, 100), NONE),
            (2_000_000, advert(12, 90, 100), NONE),
            (
                3_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 4.609375",
                    "SetTimer Garp 8.609375",
                    "Notify MASTER 100",
                ],
            ),
        ],
    );
    assert_eq!(inst.counters().preempt_discards, 2);

    // nopreempt (with state MASTER, which keepalived would silently turn into preempt): the
    // lower master is followed.
    let mut c = seed(100, 11);
    c.nopreempt = true;
    c.initial_state = InitialState::Master;
    run_table(
        c,
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                1_000_000,
                advert(12, 90, 100),
                &["SetTimer MasterDown 4.609375"],
            ),
            (
                2_000_000,
                advert(12, 90, 100),
                &["SetTimer MasterDown 5.609375"],
            ),
        ],
    );

    // preempt_delay 5 s: follow the lower master for 5 s after first hearing it, then take
    // over at once.
    let mut c = seed(100, 11);
    c.preempt_delay = Duration::from_secs(5);
    run_table(
        c,
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                1_000_000,
                advert(12, 90, 100),
                &[
                    "SetTimer PreemptDelay 6.000000",
                    "SetTimer MasterDown 4.609375",
                ],
            ),
            (
                2_000_000,
                advert(12, 90, 100),
                &["SetTimer MasterDown 5.609375"],
            ),
            (
                6_000_000,
                Event::PreemptDelayFired,
                &[
                    "CancelTimer MasterDown",
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 7.000000",
                    "SetTimer Garp 11.000000",
                    "Notify MASTER 100",
                ],
            ),
        ],
    );

    // preempt_delay pending, then a better master appears: no preemption.
    let mut c = seed(100, 11);
    c.preempt_delay = Duration::from_secs(5);
    run_table(
        c,
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                1_000_000,
                advert(12, 90, 100),
                &[
                    "SetTimer PreemptDelay 6.000000",
                    "SetTimer MasterDown 4.609375",
                ],
            ),
            (
                2_000_000,
                advert(13, 110, 100),
                &["CancelTimer PreemptDelay", "SetTimer MasterDown 5.609375"],
            ),
            (6_000_000, Event::PreemptDelayFired, NONE),
        ],
    );
}

#[test]
fn address_owner_starts_as_master_and_always_preempts() {
    let mut c = seed(255, 11);
    c.nopreempt = true;
    run_table(
        c,
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SendAdvert 255",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 1.000000",
                    "SetTimer Garp 5.000000",
                    "Notify MASTER 255",
                ],
            ),
            (
                500_000,
                advert(12, 254, 100),
                &["SendAdvert 255", "SetTimer Advert 1.500000", "SendGarp 5"],
            ),
            // Back from FAULT it is master again at once, not after a down interval.
            (
                600_000,
                Event::InterfaceDown,
                &[
                    "SendAdvert 0",
                    "SendAdvert 0",
                    "RemoveVip",
                    "CancelTimer Advert",
                    "CancelTimer Garp",
                    "Notify FAULT 255",
                ],
            ),
            (
                700_000,
                Event::InterfaceUp,
                &[
                    "SendAdvert 255",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 1.700000",
                    "SetTimer Garp 5.700000",
                    "Notify MASTER 255",
                ],
            ),
        ],
    );
}

#[test]
fn health_down_is_fault_with_priority_zero_and_health_up_is_backup() {
    let inst = run_table(
        seed(100, 11),
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 3.609375",
                    "Notify BACKUP 100",
                ],
            ),
            (
                3_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 4.609375",
                    "SetTimer Garp 8.609375",
                    "Notify MASTER 100",
                ],
            ),
            // The cache stops being ready: resign at once.
            (
                4_000_000,
                Event::HealthChanged { ready: false },
                &[
                    "SendAdvert 0",
                    "SendAdvert 0",
                    "RemoveVip",
                    "CancelTimer Advert",
                    "CancelTimer Garp",
                    "Notify FAULT 100",
                ],
            ),
            // In FAULT, adverts and expiries change nothing; repeated health news neither.
            (4_100_000, advert(12, 90, 100), NONE),
            (4_609_375, Event::AdvertTimerFired, NONE),
            (4_700_000, Event::HealthChanged { ready: false }, NONE),
            // Ready again: BACKUP with a full down interval (no move unless we preempt).
            (
                5_000_000,
                Event::HealthChanged { ready: true },
                &["SetTimer MasterDown 8.609375", "Notify BACKUP 100"],
            ),
            // Link loss as backup: FAULT, nothing to resign.
            (
                6_000_000,
                Event::InterfaceDown,
                &["CancelTimer MasterDown", "Notify FAULT 100"],
            ),
            // Both must be good to leave FAULT.
            (6_100_000, Event::HealthChanged { ready: false }, NONE),
            (6_200_000, Event::InterfaceUp, NONE),
            (
                6_300_000,
                Event::HealthChanged { ready: true },
                &["SetTimer MasterDown 9.909375", "Notify BACKUP 100"],
            ),
            // Shutdown as backup.
            (
                7_000_000,
                Event::Shutdown,
                &["CancelTimer MasterDown", "Notify STOP 100"],
            ),
            (7_100_000, advert(12, 90, 100), NONE),
            (7_200_000, Event::Shutdown, NONE),
        ],
    );
    assert_eq!(inst.state(), State::Initialize);
    assert_eq!(inst.counters().priority0_sent, 2);
}

#[test]
fn not_ready_before_startup_starts_in_fault_and_shutdown_as_master_resigns() {
    run_table(
        seed(100, 11),
        &[
            (0, Event::HealthChanged { ready: false }, NONE),
            (0, Event::Startup, &["RemoveVip", "Notify FAULT 100"]),
            (
                1_000_000,
                Event::HealthChanged { ready: true },
                &["SetTimer MasterDown 4.609375", "Notify BACKUP 100"],
            ),
            (
                4_609_375,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 100",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 5.609375",
                    "SetTimer Garp 9.609375",
                    "Notify MASTER 100",
                ],
            ),
            (
                5_000_000,
                Event::Shutdown,
                &[
                    "SendAdvert 0",
                    "SendAdvert 0",
                    "RemoveVip",
                    "CancelTimer Advert",
                    "CancelTimer Garp",
                    "Notify STOP 100",
                ],
            ),
            // Restartable.
            (
                6_000_000,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 9.609375",
                    "Notify BACKUP 100",
                ],
            ),
        ],
    );
}

#[test]
fn v3_learns_the_master_interval() {
    // Ours: 0.1 s, priority 90: skew 64.843 ms, down interval 364.843 ms.
    let inst = run_table(
        v3(90, 11, 10),
        &[
            (
                0,
                Event::Startup,
                &[
                    "RemoveVip",
                    "SetTimer MasterDown 0.364843",
                    "Notify BACKUP 90",
                ],
            ),
            // The master advertises every 1 s: 3 s + (166 * 1 s / 256) = 3.648437 s.
            (
                200_000,
                advert(12, 100, 100),
                &["SetTimer MasterDown 3.848437"],
            ),
            // It resigns: Skew_Time with its interval.
            (
                1_000_000,
                advert(12, 0, 100),
                &["SetTimer MasterDown 1.648437"],
            ),
            (
                1_648_437,
                Event::MasterDownTimerFired,
                &[
                    "SendAdvert 90",
                    "AddVip",
                    "SendGarp 5",
                    "SetTimer Advert 1.748437",
                    "SetTimer Garp 6.648437",
                    "Notify MASTER 90",
                ],
            ),
            // As master we advertise our own interval (0.1 s).
            (
                1_748_437,
                Event::AdvertTimerFired,
                &["SendAdvert 90", "SetTimer Advert 1.848437"],
            ),
            // Yield to a master with 0.5 s adverts: its interval is learnt:
            // 3 * 0.5 s + 166 * 0.5 s / 256 = 1.824218 s.
            (
                1_800_000,
                advert(12, 100, 50),
                &[
                    "SendAdvert 90",
                    "CancelTimer Advert",
                    "CancelTimer Garp",
                    "RemoveVip",
                    "SetTimer MasterDown 3.624218",
                    "Notify BACKUP 90",
                ],
            ),
        ],
    );
    assert_eq!(inst.master_adver_int_cs(), 50);
}

// ===== several nodes on a fake network =====

#[derive(Debug)]
enum Ev {
    Timer {
        node: usize,
        kind: TimerKind,
        gen: u64,
    },
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    External {
        node: usize,
        event: Event,
    },
    Cut {
        a: usize,
        b: usize,
        cut: bool,
    },
}

struct Node {
    name: String,
    inst: Instance,
    timers: BTreeMap<String, (TimerKind, Instant, u64)>,
    has_vip: bool,
}

struct Net {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    latency: Vec<Vec<Duration>>,
    cut: Vec<Vec<bool>>,
    log: Vec<String>,
    /// The node whose MAC the client's ARP cache holds for the VIP (the last to GARP).
    client_arp: Option<usize>,
}

impl Net {
    fn new(cfgs: Vec<Config>) -> Net {
        let n = cfgs.len();
        let t0 = Instant::now();
        Net {
            t0,
            now: t0,
            nodes: cfgs
                .into_iter()
                .enumerate()
                .map(|(i, c)| Node {
                    name: format!("n{}", i + 1),
                    inst: Instance::new(c).unwrap(),
                    timers: BTreeMap::new(),
                    has_vip: false,
                })
                .collect(),
            queue: BTreeMap::new(),
            seq: 0,
            latency: vec![vec![Duration::from_millis(1); n]; n],
            cut: vec![vec![false; n]; n],
            log: Vec::new(),
            client_arp: None,
        }
    }

    fn at(&mut self, ms: u64, ev: Ev) {
        let t = self.t0 + Duration::from_millis(ms);
        self.push(t, ev);
    }

    fn event(&mut self, ms: u64, node: usize, event: Event) {
        self.at(ms, Ev::External { node, event });
    }

    fn partition(&mut self, ms: u64, a: usize, b: usize, cut: bool) {
        self.at(ms, Ev::Cut { a, b, cut });
    }

    fn push(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn run_until(&mut self, ms: u64) {
        let end = self.t0 + Duration::from_millis(ms);
        while let Some((&(t, seq), _)) = self.queue.iter().next() {
            if t > end {
                break;
            }
            let ev = self.queue.remove(&(t, seq)).unwrap();
            self.now = t;
            match ev {
                Ev::Timer { node, kind, gen } => {
                    let key = format!("{kind:?}");
                    if self.nodes[node].timers.get(&key).map(|x| x.2) == Some(gen) {
                        self.nodes[node].timers.remove(&key);
                        self.feed(node, kind.event());
                    }
                }
                Ev::Deliver { to, from, bytes } => {
                    let meta = RxMeta {
                        src: self.nodes[from].inst.config().primary_ip,
                        dst: GROUP,
                        ttl: 255,
                    };
                    let check = self.nodes[to].inst.rx_check();
                    match Advert::decode(&bytes, &meta, &check) {
                        Ok(a) => self.feed(
                            to,
                            Event::AdvertReceived {
                                from_ip: meta.src,
                                priority: a.priority,
                                max_advert_int: a.interval_cs() as u16,
                            },
                        ),
                        Err(reason) => {
                            self.nodes[to].inst.record_drop(reason);
                            self.log(to, &format!("drop {reason}"));
                        }
                    }
                }
                Ev::External { node, event } => self.feed(node, event),
                Ev::Cut { a, b, cut } => {
                    self.cut[a][b] = cut;
                    self.cut[b][a] = cut;
                }
            }
        }
        self.now = end;
    }

    fn log(&mut self, node: usize, what: &str) {
        let line = format!(
            "{} {} {what}",
            secs(self.t0, self.now),
            self.nodes[node].name
        );
        self.log.push(line);
    }

    fn feed(&mut self, node: usize, event: Event) {
        let actions = self.nodes[node].inst.handle(event, self.now);
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    if event != Event::AdvertTimerFired {
                        self.log(node, &format!("advert {priority}"));
                    }
                    let n = &self.nodes[node];
                    let bytes = n
                        .inst
                        .advert(priority)
                        .encode(n.inst.config().primary_ip, GROUP)
                        .unwrap();
                    for to in 0..self.nodes.len() {
                        if to != node && !self.cut[node][to] {
                            let t = self.now + self.latency[node][to];
                            self.push(
                                t,
                                Ev::Deliver {
                                    to,
                                    from: node,
                                    bytes: bytes.clone(),
                                },
                            );
                        }
                    }
                }
                Action::AddVip => {
                    self.nodes[node].has_vip = true;
                    self.log(node, "+vip");
                }
                Action::RemoveVip => {
                    if std::mem::take(&mut self.nodes[node].has_vip) {
                        self.log(node, "-vip");
                    }
                }
                Action::SendGarp { count } => {
                    self.client_arp = Some(node);
                    self.log(node, &format!("garp x{count}"));
                }
                Action::SetTimer { kind, at } => {
                    self.seq += 1;
                    let gen = self.seq;
                    self.nodes[node]
                        .timers
                        .insert(format!("{kind:?}"), (kind, at, gen));
                    self.push(at, Ev::Timer { node, kind, gen });
                }
                Action::CancelTimer { kind } => {
                    self.nodes[node].timers.remove(&format!("{kind:?}"));
                }
                Action::RunNotify { state, .. } => self.log(node, state.name()),
                Action::ResetClients => self.log(node, "reset clients"),
            }
        }
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].has_vip)
            .collect()
    }

    fn state(&self, node: usize) -> State {
        self.nodes[node].inst.state()
    }

    /// Exactly one node holds the VIP and the client's ARP entry points at it.
    fn assert_clean(&self) {
        let h = self.holders();
        assert_eq!(h.len(), 1, "VIP holders {h:?}\n{}", self.log.join("\n"));
        assert_eq!(
            self.client_arp,
            Some(h[0]),
            "black hole: client ARP points at a node without the VIP\n{}",
            self.log.join("\n")
        );
    }

    fn assert_log(&self, expected: &[&str]) {
        let got: Vec<&str> = self.log.iter().map(String::as_str).collect();
        assert_eq!(got, expected, "\n{}", self.log.join("\n"));
    }
}

#[test]
fn two_nodes_higher_priority_wins() {
    let mut net = Net::new(vec![seed(100, 11), seed(90, 12)]);
    net.event(0, 0, Event::Startup);
    net.event(0, 1, Event::Startup);
    net.run_until(20_000);
    net.assert_log(&[
        "0.000000 n1 BACKUP",
        "0.000000 n2 BACKUP",
        "3.609375 n1 advert 100",
        "3.609375 n1 +vip",
        "3.609375 n1 garp x5",
        "3.609375 n1 MASTER",
        "8.609375 n1 garp x5",
    ]);
    assert_eq!(net.state(0), State::Master);
    assert_eq!(net.state(1), State::Backup);
    assert!(net.nodes[1].inst.counters().adverts_received >= 16);
    net.assert_clean();
}

#[test]
fn two_nodes_equal_priority_higher_address_wins() {
    let mut net = Net::new(vec![seed(100, 11), seed(100, 12)]);
    net.event(0, 0, Event::Startup);
    net.event(0, 1, Event::Startup);
    net.run_until(10_000);
    // Both time out together and become master; n1 hears n2 (same priority, higher
    // address) and yields with a last advert, which makes n2 re-announce.
    net.assert_log(&[
        "0.000000 n1 BACKUP",
        "0.000000 n2 BACKUP",
        "3.609375 n1 advert 100",
        "3.609375 n1 +vip",
        "3.609375 n1 garp x5",
        "3.609375 n1 MASTER",
        "3.609375 n2 advert 100",
        "3.609375 n2 +vip",
        "3.609375 n2 garp x5",
        "3.609375 n2 MASTER",
        "3.610375 n2 advert 100",
        "3.610375 n2 garp x5",
        "3.610375 n1 advert 100",
        "3.610375 n1 -vip",
        "3.610375 n1 BACKUP",
        "3.611375 n2 advert 100",
        "3.611375 n2 garp x5",
        "8.609375 n2 garp x5",
    ]);
    assert_eq!(net.state(1), State::Master);
    net.assert_clean();
}

/// n1 (100) master, n2 (90) backup, started 0.5 s apart.
fn pair(n1: Config, n2: Config) -> Net {
    let mut net = Net::new(vec![n1, n2]);
    net.event(0, 0, Event::Startup);
    net.event(500, 1, Event::Startup);
    net.run_until(9_000);
    assert_eq!(net.state(0), State::Master);
    assert_eq!(net.state(1), State::Backup);
    net.log.clear();
    net
}

#[test]
fn master_resigns_with_priority_zero_backup_takes_over_after_skew() {
    let mut net = pair(seed(100, 11), seed(90, 12));
    net.event(10_000, 0, Event::HealthChanged { ready: false });
    net.run_until(19_000);
    // 1 ms on the wire + Skew_Time(90) = 0.648437 s: not Master_Down_Interval (3.6 s).
    net.assert_log(&[
        "10.000000 n1 advert 0",
        "10.000000 n1 advert 0",
        "10.000000 n1 -vip",
        "10.000000 n1 FAULT",
        "10.649437 n2 advert 90",
        "10.649437 n2 +vip",
        "10.649437 n2 garp x5",
        "10.649437 n2 MASTER",
        "15.649437 n2 garp x5",
    ]);
    net.assert_clean();

    // n1 comes back; preemption is on (the default): it takes the VIP back after a full
    // Master_Down_Interval, n2 yields with a last advert, n1 re-announces.
    net.log.clear();
    net.event(20_000, 0, Event::HealthChanged { ready: true });
    net.run_until(30_000);
    net.assert_log(&[
        "20.000000 n1 BACKUP",
        "23.609375 n1 advert 100",
        "23.609375 n1 +vip",
        "23.609375 n1 garp x5",
        "23.609375 n1 MASTER",
        "23.610375 n2 advert 90",
        "23.610375 n2 -vip",
        "23.610375 n2 BACKUP",
        "23.611375 n1 advert 100",
        "23.611375 n1 garp x5",
        "28.609375 n1 garp x5",
    ]);
    net.assert_clean();
}

#[test]
fn no_second_move_on_recovery_with_nopreempt() {
    let mut n1 = seed(100, 11);
    n1.nopreempt = true;
    n1.initial_state = InitialState::Master; // the seed: keepalived would drop nopreempt
    let mut net = pair(n1, seed(90, 12));
    net.event(10_000, 0, Event::HealthChanged { ready: false });
    net.event(20_000, 0, Event::HealthChanged { ready: true });
    net.run_until(60_000);
    assert_eq!(net.state(0), State::Backup);
    assert_eq!(net.state(1), State::Master);
    assert_eq!(net.nodes[1].inst.counters().became_master, 1);
    assert_eq!(net.nodes[0].inst.counters().became_master, 1);
    net.assert_clean();
}

#[test]
fn nopreempt_with_state_master_does_not_preempt_a_running_master() {
    let mut n1 = seed(100, 11);
    n1.nopreempt = true;
    n1.initial_state = InitialState::Master;
    let mut net = Net::new(vec![n1.clone(), seed(90, 12)]);
    net.event(0, 1, Event::Startup);
    net.event(10_000, 0, Event::Startup);
    net.run_until(60_000);
    net.assert_log(&[
        "0.000000 n2 BACKUP",
        "3.648437 n2 advert 90",
        "3.648437 n2 +vip",
        "3.648437 n2 garp x5",
        "3.648437 n2 MASTER",
        "8.648437 n2 garp x5",
        "10.000000 n1 BACKUP",
    ]);
    net.assert_clean();

    // The same with preemption: n1 takes over one Master_Down_Interval after starting.
    n1.nopreempt = false;
    let mut net = Net::new(vec![n1, seed(90, 12)]);
    net.event(0, 1, Event::Startup);
    net.event(10_000, 0, Event::Startup);
    net.run_until(60_000);
    assert_eq!(net.state(0), State::Master);
    assert!(
        net.log.contains(&"13.609375 n1 MASTER".to_string()),
        "{:#?}",
        net.log
    );
    net.assert_clean();
}

#[test]
fn preempt_delay_postpones_the_takeover() {
    let mut n1 = seed(100, 11);
    n1.preempt_delay = Duration::from_secs(5);
    let mut net = Net::new(vec![n1, seed(90, 12)]);
    net.event(0, 1, Event::Startup);
    net.event(10_000, 0, Event::Startup);
    net.run_until(30_000);
    // n2's adverts go out at x.648437; the first one n1 hears arrives at 10.649437, and
    // n1 preempts 5 s later (instead of at 13.609375). At that very instant n2's advert
    // of 15.648437 arrives: as the new master n1 answers it (advert + GARPs), and again
    // when n2's yield advert arrives.
    net.assert_log(&[
        "0.000000 n2 BACKUP",
        "3.648437 n2 advert 90",
        "3.648437 n2 +vip",
        "3.648437 n2 garp x5",
        "3.648437 n2 MASTER",
        "8.648437 n2 garp x5",
        "10.000000 n1 BACKUP",
        "15.649437 n1 advert 100",
        "15.649437 n1 +vip",
        "15.649437 n1 garp x5",
        "15.649437 n1 MASTER",
        "15.649437 n1 advert 100",
        "15.649437 n1 garp x5",
        "15.650437 n2 advert 90",
        "15.650437 n2 -vip",
        "15.650437 n2 BACKUP",
        "15.651437 n1 advert 100",
        "15.651437 n1 garp x5",
        "20.649437 n1 garp x5",
    ]);
    net.assert_clean();
}

#[test]
fn partition_heal_winner_reannounces_no_black_hole() {
    // n1's advert reaches n2 first after the heal (the case that black-holes keepalived for
    // 28-40 s): n2 yields with a last advert, n1 hears it and re-sends GARPs.
    let mut net = pair(seed(100, 11), seed(90, 12));
    net.partition(10_000, 0, 1, true);
    net.run_until(19_000);
    // Split brain: both masters, the client followed n2's GARP.
    assert_eq!(net.holders(), vec![0, 1]);
    assert_eq!(net.client_arp, Some(1));
    net.log.clear();
    // n2 advertises at x.258812, n1 at x.609375: heal between the two.
    net.partition(20_300, 0, 1, false);
    net.run_until(30_000);
    net.assert_log(&[
        "20.610375 n2 advert 90",
        "20.610375 n2 -vip",
        "20.610375 n2 BACKUP",
        "20.611375 n1 advert 100",
        "20.611375 n1 garp x5",
    ]);
    net.assert_clean();
}

#[test]
fn partition_heal_loser_heard_first() {
    // n2's advert reaches n1 first: n1 re-announces and re-GARPs at once, n2 yields.
    let mut net = pair(seed(100, 11), seed(90, 12));
    net.partition(10_000, 0, 1, true);
    net.run_until(19_000);
    net.log.clear();
    net.partition(20_000, 0, 1, false);
    net.run_until(30_000);
    net.assert_log(&[
        "20.259812 n1 advert 100",
        "20.259812 n1 garp x5",
        "20.260812 n2 advert 90",
        "20.260812 n2 -vip",
        "20.260812 n2 BACKUP",
        "20.261812 n1 advert 100",
        "20.261812 n1 garp x5",
    ]);
    net.assert_clean();
}

#[test]
fn partition_heal_the_master_holding_unreplicated_writes_keeps_the_address() {
    // n1 (100) is cut off; n2 (90) takes over and takes writes n1 does not have, so its
    // cache says "hold": it advertises 254. After the heal n1 yields to it, whichever advert
    // arrives first, and the client stays with n2.
    for heal_ms in [20_000, 20_300] {
        let mut net = pair(seed(100, 11), seed(90, 12));
        net.partition(10_000, 0, 1, true);
        net.run_until(15_000);
        assert_eq!(net.holders(), vec![0, 1]);
        net.event(15_000, 1, Event::HoldChanged { hold: true });
        net.run_until(19_000);
        assert!(
            net.log.iter().any(|l| l == "15.000000 n2 advert 254"),
            "{:#?}",
            net.log
        );
        net.log.clear();
        net.partition(heal_ms, 0, 1, false);
        net.run_until(30_000);
        assert_eq!(net.holders(), vec![1], "heal at {heal_ms}: {:#?}", net.log);
        assert_eq!(net.client_arp, Some(1));
        assert_eq!(net.state(0), State::Backup);
        // Every peer has the writes again: n2 advertises its own priority, and n1 (which
        // preempts) takes the address back after its down timer.
        net.log.clear();
        net.event(31_000, 1, Event::HoldChanged { hold: false });
        net.run_until(40_000);
        assert!(
            net.log.iter().any(|l| l == "31.000000 n2 advert 90"),
            "{:#?}",
            net.log
        );
        assert_eq!(net.holders(), vec![0], "{:#?}", net.log);
        assert_eq!(net.client_arp, Some(0));
        net.assert_clean();
    }
}

#[test]
fn hold_only_raises_a_master_and_never_a_resigning_one() {
    // A backup that holds does not preempt the master with it.
    let mut net = pair(seed(100, 11), seed(90, 12));
    net.event(10_000, 1, Event::HoldChanged { hold: true });
    net.run_until(20_000);
    assert_eq!(net.holders(), vec![0]);
    assert_eq!(net.nodes[1].inst.effective_priority(), 90);
    // A holding master that becomes unhealthy still resigns with priority 0.
    net.event(20_000, 0, Event::HoldChanged { hold: true });
    net.run_until(21_000);
    assert_eq!(net.nodes[0].inst.effective_priority(), 254);
    net.log.clear();
    net.event(22_000, 0, Event::HealthChanged { ready: false });
    net.run_until(30_000);
    assert!(
        net.log.iter().any(|l| l == "22.000000 n1 advert 0"),
        "{:#?}",
        net.log
    );
    assert_eq!(net.holders(), vec![1]);
    // n2 is master and holding now: it advertises 254 from its first advert.
    assert!(
        net.log.iter().any(|l| l.ends_with("n2 advert 254")),
        "{:#?}",
        net.log
    );
    net.assert_clean();
}

#[test]
fn partition_heal_without_the_yield_advert_black_holes() {
    // Control experiment: with keepalived's default (no advert when yielding) the same heal
    // leaves the client pointing at n2, which no longer holds the VIP.
    let mut n2 = seed(90, 12);
    n2.advert_on_yield = false;
    let mut net = pair(seed(100, 11), n2);
    net.partition(10_000, 0, 1, true);
    net.partition(20_300, 0, 1, false);
    net.run_until(30_000);
    assert_eq!(net.holders(), vec![0]);
    assert_eq!(net.client_arp, Some(1), "{:#?}", net.log);
}

#[test]
fn v3_fast_adverts_and_crash_without_resign() {
    // v3, 0.1 s adverts; n1 crashes (no priority 0, stops talking): n2 takes over after its
    // Master_Down_Interval (0.364843 s at priority 90) from n1's last advert, and resets the
    // clients' connections to n1 (they would otherwise wait for their TCP retransmission).
    // A takeover from a master that resigned, or at start-up with no master, resets none
    // (the other scenarios' logs have no "reset clients").
    let mut net = Net::new(vec![v3(100, 11, 10), v3(90, 12, 10)]);
    net.event(0, 0, Event::Startup);
    net.event(50, 1, Event::Startup);
    net.run_until(2_000);
    assert_eq!(net.state(0), State::Master);
    net.log.clear();
    // n1's adverts at 0.360937 + k * 0.1; cut it off right after the one at 2.060937.
    net.partition(2_070, 0, 1, true);
    net.run_until(3_000);
    net.assert_log(&[
        "2.426780 n2 advert 90",
        "2.426780 n2 +vip",
        "2.426780 n2 garp x5",
        "2.426780 n2 MASTER",
        "2.426780 n2 reset clients",
    ]);
    assert_eq!(net.nodes[1].inst.counters().silent_master_takeovers, 1);
}

#[test]
fn mismatched_peers_are_dropped_and_counted() {
    // A wrong password and a different v2 interval: the adverts are dropped by reason and
    // both nodes become master (as with keepalived).
    let mut n2 = seed(90, 12);
    n2.auth = Auth::password(b"other");
    let mut n3 = seed(80, 13);
    n3.advert_int_cs = 200;
    let mut net = Net::new(vec![seed(100, 11), n2, n3]);
    for n in 0..3 {
        net.event(0, n, Event::Startup);
    }
    net.run_until(15_000);
    assert_eq!(net.holders(), vec![0, 1, 2]);
    use memha_vrrp::DropReason;
    let d1 = &net.nodes[0].inst.counters().drops;
    assert!(d1.get(DropReason::AuthPassword) > 0);
    assert!(d1.get(DropReason::Interval) > 0);
    assert_eq!(
        d1.total(),
        d1.get(DropReason::AuthPassword) + d1.get(DropReason::Interval)
    );
}

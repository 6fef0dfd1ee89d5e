//! The VRRP state machine of one virtual router, sans-I/O.
//!
//! The caller owns the sockets, the clock and the timers. It feeds [`Event`]s with the
//! current time to [`Instance::handle`] and carries out the [`Action`]s returned, in order:
//! send an advert (it builds the packet with [`Instance::advert`]), add or remove the
//! virtual addresses, send gratuitous ARPs, arm or cancel a timer (one per [`TimerKind`];
//! arming replaces), run the notify hooks. A timer event for a timer that is not armed
//! (a race between cancel and expiry in the driver) is ignored and counted.
//!
//! # States
//!
//! `Initialize` (not started, or stopped) → `Backup` / `Master` (RFC 3768 §6.4, RFC 5798
//! §6.4) and `Fault` (keepalived's): the cache is not ready or the interface is down. In
//! FAULT the effective priority is 0; a master entering it sends priority-0 adverts and
//! drops the VIPs, so a backup takes over after its Skew_Time. Leaving FAULT goes through
//! Initialize again: BACKUP (or MASTER for the address owner).
//!
//! # Timers (RFC 3768 §6.1, RFC 5798 §6.1)
//!
//! * Skew_Time: v2 `(256 - priority) / 256` s; v3 `(256 - priority) * Master_Adver_Interval
//!   / 256`, computed in microseconds as keepalived does (truncated).
//! * Master_Down_Interval: `3 * interval + Skew_Time`, the interval being ours (v2) or the
//!   master's, learnt from its adverts (v3, Master_Adver_Interval).
//!
//! # Choices beyond the RFCs (see the crate docs for why)
//!
//! * The initial state MASTER does not skip the Backup wait (keepalived 2.2.7 does the same
//!   in practice: it listens one Master_Down_Interval before taking over) and never turns
//!   `nopreempt` off.
//! * `preempt_delay`: a backup with preemption on that hears a lower-priority master keeps
//!   treating it as the master for `preempt_delay`, then takes over at once. With no delay
//!   it discards that master's adverts (RFC) and takes over when its down timer fires.
//! * A master yielding to a better advert first sends one advert at its own priority, so
//!   the winner (memha or keepalived) sees a lower-priority advert and re-announces.
//! * A master hearing a lower-priority advert (two masters after a partition heals)
//!   re-advertises at once and re-sends its GARPs; the RFC just discards it.
//! * Priority 255 (address owner): becomes master at startup, always preempts, ignores
//!   `nopreempt` and `preempt_delay`.
//! * Hold ([`Event::HoldChanged`]): a master whose cache holds acknowledged writes that a
//!   peer has not received (it served clients while cut off from that peer) advertises
//!   [`HOLD_PRIORITY`] instead of its own priority until the peer has them. Two masters
//!   meeting after a partition then settle on the one with the data, whatever their
//!   configured priorities: the other yields instead of taking the address back with stale
//!   contents. To any other router (keepalived too) this is an ordinary priority change.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::{Advert, Auth, DropCounters, DropReason, RxCheck, Version};

/// The priority a holding master advertises (see the module docs): above every configured
/// priority except the address owner's 255.
pub const HOLD_PRIORITY: u8 = 254;

// ===== configuration =====

/// keepalived's `state`: the state an instance is configured to start in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialState {
    Master,
    Backup,
}

/// The settings of one virtual router.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Instance name (`VI_1`), passed to the notify hooks.
    pub name: String,
    /// 1..=255.
    pub vrid: u8,
    pub version: Version,
    /// 1..=254, or 255 for the address owner.
    pub priority: u8,
    /// Advertisement_Interval in centiseconds. v2: a whole number of seconds (100..=25500);
    /// v3: 1..=4095.
    pub advert_int_cs: u16,
    pub initial_state: InitialState,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    /// This node's primary address on the interface: the adverts' source, and the equal
    /// priority tie-break (the higher address wins).
    pub primary_ip: IpAddr,
    /// The virtual addresses (one family).
    pub vips: Vec<IpAddr>,
    /// v2 authentication to send and require ([`Auth::None`] or [`Auth::Password`]).
    pub auth: Auth,
    /// GARPs sent on becoming master (keepalived: 5).
    pub garp_count: u8,
    /// When set, a second burst of `garp_count` GARPs this long after becoming master
    /// (keepalived's `vrrp_garp_master_delay`, 5 s).
    pub garp_master_delay: Option<Duration>,
    /// GARPs re-sent by a master that hears a lower-priority advert (keepalived: 5).
    pub garp_lower_prio_count: u8,
    /// Priority-0 adverts sent when resigning (keepalived sends 2 on FAULT; one lost packet
    /// then does not cost a whole Master_Down_Interval).
    pub resign_adverts: u8,
    /// Send one advert at our priority before yielding to a better master (keepalived's
    /// `vrrp_higher_prio_send_advert`): the winner then re-announces and re-sends GARPs.
    pub advert_on_yield: bool,
}

impl Config {
    /// A config with keepalived's defaults: v2, priority 100, 1 s adverts, state BACKUP,
    /// preemption on, no auth, 5 GARPs then 5 more after 5 s.
    pub fn new(name: &str, vrid: u8, primary_ip: IpAddr, vips: Vec<IpAddr>) -> Config {
        Config {
            name: name.to_string(),
            vrid,
            version: Version::V2,
            priority: 100,
            advert_int_cs: 100,
            initial_state: InitialState::Backup,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            primary_ip,
            vips,
            auth: Auth::None,
            garp_count: 5,
            garp_master_delay: Some(Duration::from_secs(5)),
            garp_lower_prio_count: 5,
            resign_adverts: 2,
            advert_on_yield: true,
        }
    }

    /// The advert interval field as on the wire (v2 seconds, v3 centiseconds).
    pub fn wire_interval(&self) -> u16 {
        match self.version {
            Version::V2 => self.advert_int_cs / 100,
            Version::V3 => self.advert_int_cs,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_string()));
        if self.vrid == 0 {
            return err("virtual_router_id must be 1..=255");
        }
        if self.priority == 0 {
            return err("priority 0 is reserved for a resigning master");
        }
        match self.version {
            Version::V2 => {
                if self.advert_int_cs / 100 * 100 != self.advert_int_cs
                    || !(100..=25500).contains(&self.advert_int_cs)
                {
                    return err("VRRPv2 advert_int must be whole seconds, 1..=255");
                }
                if !matches!(self.auth, Auth::None | Auth::Password(_)) {
                    return err("only PASS authentication is supported");
                }
            }
            Version::V3 => {
                if !(1..=0x0fff).contains(&self.advert_int_cs) {
                    return err("VRRPv3 advert_int must be 0.01..=40.95 s");
                }
                if self.auth != Auth::None {
                    return err("VRRPv3 has no authentication");
                }
            }
        }
        if self.vips.is_empty() || self.vips.len() > 255 {
            return err("virtual_ipaddress needs 1 to 255 addresses");
        }
        let v6 = self.primary_ip.is_ipv6();
        if self.vips.iter().any(|a| a.is_ipv6() != v6) {
            return err("the virtual addresses and the primary address must be one family");
        }
        if v6 && self.version == Version::V2 {
            return err("IPv6 needs VRRP version 3");
        }
        Ok(())
    }
}

/// A config the state machine cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

// ===== events, actions, states =====

/// The protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// The timers of a virtual router. The driver keeps at most one of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Adver_Timer (master).
    Advert,
    /// Master_Down_Timer (backup).
    MasterDown,
    /// The `preempt_delay` wait (backup).
    PreemptDelay,
    /// The second GARP burst after becoming master.
    Garp,
}

impl TimerKind {
    const ALL: [TimerKind; 4] = [
        TimerKind::Advert,
        TimerKind::MasterDown,
        TimerKind::PreemptDelay,
        TimerKind::Garp,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The event the driver delivers when this timer expires.
    pub fn event(self) -> Event {
        match self {
            TimerKind::Advert => Event::AdvertTimerFired,
            TimerKind::MasterDown => Event::MasterDownTimerFired,
            TimerKind::PreemptDelay => Event::PreemptDelayFired,
            TimerKind::Garp => Event::GarpTimerFired,
        }
    }
}

/// What happens to a virtual router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Startup,
    Shutdown,
    /// A valid advert (it passed [`Advert::decode`]) for this VRID.
    AdvertReceived {
        /// Source address of the IP packet: the sender's primary address.
        from_ip: IpAddr,
        priority: u8,
        /// The advertised interval in centiseconds ([`Advert::interval_cs`]).
        max_advert_int: u16,
    },
    MasterDownTimerFired,
    AdvertTimerFired,
    PreemptDelayFired,
    GarpTimerFired,
    /// The cache's own health: not ready → FAULT (priority 0); ready again → BACKUP.
    HealthChanged {
        ready: bool,
    },
    /// The cache holds acknowledged writes a peer lacks (true) or every peer has them again
    /// (false). A master advertises [`HOLD_PRIORITY`] while it holds.
    HoldChanged {
        hold: bool,
    },
    /// The interface (and every tracked interface) is up again.
    InterfaceUp,
    /// The interface or a tracked interface went down.
    InterfaceDown,
}

/// State names as the notify hooks get them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl NotifyState {
    /// keepalived's spelling (`$3` of the generic `notify` script).
    pub fn name(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
        }
    }
}

/// keepalived's arguments to the generic `notify` script: `INSTANCE <name> <STATE>
/// <priority>`.
pub fn notify_args(name: &str, state: NotifyState, priority: u8) -> [String; 4] {
    [
        "INSTANCE".to_string(),
        name.to_string(),
        state.name().to_string(),
        priority.to_string(),
    ]
}

/// What the driver must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority ([`Instance::advert`] builds it).
    SendAdvert { priority: u8 },
    /// Configure the virtual addresses on the interface.
    AddVip,
    /// Remove the virtual addresses from the interface.
    RemoveVip,
    /// Send `count` gratuitous ARPs (IPv6: unsolicited NAs) for every virtual address.
    SendGarp { count: u8 },
    /// Arm (or re-arm) the timer of this kind to fire at `at`.
    SetTimer { kind: TimerKind, at: Instant },
    /// Disarm the timer of this kind.
    CancelTimer { kind: TimerKind },
    /// Run `notify_<state>` and the generic `notify` with [`notify_args`].
    RunNotify { state: NotifyState, priority: u8 },
    /// We took the addresses over from a master that went silent (it did not resign): the
    /// clients' connections to it are dead but the clients do not know. Reset the ones we
    /// know of (after [`Action::AddVip`] and [`Action::SendGarp`], which precede this).
    ResetClients,
}

/// Per-instance counters (after the VRRP MIB), for `stats` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority0_sent: u64,
    pub priority0_received: u64,
    pub became_master: u64,
    /// Takeovers from a master that went silent (no priority-0 advert first).
    pub silent_master_takeovers: u64,
    /// State changes, Initialize excluded.
    pub transitions: u64,
    /// Lower-priority adverts heard as master (answered with an advert and GARPs).
    pub lower_priority_received: u64,
    /// Lower-priority adverts discarded by a preempting backup.
    pub preempt_discards: u64,
    /// Adverts with our own address as source (a looped-back copy), ignored.
    pub own_adverts: u64,
    /// Timer events for timers that were not armed, ignored.
    pub stale_timers: u64,
    /// Received packets dropped by [`Advert::decode`], by reason ([`Instance::record_drop`]).
    pub drops: DropCounters,
}

// ===== Instance =====

/// One virtual router.
#[derive(Clone, Debug)]
pub struct Instance {
    cfg: Config,
    state: State,
    healthy: bool,
    link_up: bool,
    hold: bool,
    /// We follow a master that advertised (accepted as master) and has not resigned: if our
    /// down timer runs out now, that master went silent.
    following: bool,
    /// Master_Adver_Interval, centiseconds (v3: learnt from the master; v2: ours).
    master_adver_int_cs: u16,
    timers: [Option<Instant>; 4],
    counters: Counters,
}

impl Instance {
    /// A stopped instance; [`Event::Startup`] starts it. Health and link are assumed good
    /// until told otherwise (events before Startup only record them).
    pub fn new(cfg: Config) -> Result<Instance, ConfigError> {
        cfg.validate()?;
        Ok(Instance {
            master_adver_int_cs: cfg.advert_int_cs,
            cfg,
            state: State::Initialize,
            healthy: true,
            link_up: true,
            hold: false,
            following: false,
            timers: [None; 4],
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The priority we currently advertise (or would, as master): 0 unless healthy with the
    /// link up; [`HOLD_PRIORITY`] for a holding master.
    pub fn effective_priority(&self) -> u8 {
        if self.operational() {
            self.master_priority()
        } else {
            0
        }
    }

    /// Whether the cache said it holds writes a peer lacks ([`Event::HoldChanged`]).
    pub fn holding(&self) -> bool {
        self.hold
    }

    /// The priority a master advertises and compares with: raised while holding.
    fn master_priority(&self) -> u8 {
        if self.hold && self.state == State::Master {
            self.cfg.priority.max(HOLD_PRIORITY)
        } else {
            self.cfg.priority
        }
    }

    /// Master_Adver_Interval in centiseconds.
    pub fn master_adver_int_cs(&self) -> u16 {
        self.master_adver_int_cs
    }

    /// When the timer of this kind fires, if armed.
    pub fn timer(&self, kind: TimerKind) -> Option<Instant> {
        self.timers[kind.index()]
    }

    /// Skew_Time for our priority.
    pub fn skew_time(&self) -> Duration {
        let p = 256 - u64::from(self.cfg.priority);
        Duration::from_micros(match self.cfg.version {
            Version::V2 => p * 1_000_000 / 256,
            Version::V3 => p * u64::from(self.master_adver_int_cs) * 10_000 / 256,
        })
    }

    /// Master_Down_Interval.
    pub fn master_down_interval(&self) -> Duration {
        let int = match self.cfg.version {
            Version::V2 => self.cfg.advert_int_cs,
            Version::V3 => self.master_adver_int_cs,
        };
        Duration::from_millis(u64::from(int) * 10 * 3) + self.skew_time()
    }

    /// The advert to send for [`Action::SendAdvert`].
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            adver_int: self.cfg.wire_interval(),
            auth: self.cfg.auth,
            addrs: self.cfg.vips.clone(),
        }
    }

    /// What received adverts must satisfy ([`Advert::decode`]); the address list is checked.
    pub fn rx_check(&self) -> RxCheck {
        RxCheck {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            auth: self.cfg.auth,
            adver_int: self.cfg.wire_interval(),
            vips: Some(self.cfg.vips.clone()),
        }
    }

    /// Counts a packet the driver dropped.
    pub fn record_drop(&mut self, reason: DropReason) {
        self.counters.drops.record(reason);
    }

    fn operational(&self) -> bool {
        self.healthy && self.link_up
    }

    fn preempts(&self) -> bool {
        !self.cfg.nopreempt || self.cfg.priority == 255
    }

    /// Feeds one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => {
                if self.state == State::Initialize {
                    out.push(Action::RemoveVip); // a crash may have left them configured
                    self.initialize(now, &mut out);
                }
            }
            Event::Shutdown => self.shutdown(&mut out),
            Event::HealthChanged { ready } => {
                self.healthy = ready;
                self.reassess(now, &mut out);
            }
            Event::HoldChanged { hold } => {
                let was = self.master_priority();
                self.hold = hold;
                if self.state == State::Master && self.master_priority() != was {
                    // Say it at once: a master that is about to meet us after a heal must
                    // hear the new priority, not the one of the last interval.
                    self.send_advert(self.master_priority(), &mut out);
                    self.arm_advert(now, &mut out);
                }
            }
            Event::InterfaceUp => {
                self.link_up = true;
                self.reassess(now, &mut out);
            }
            Event::InterfaceDown => {
                self.link_up = false;
                self.reassess(now, &mut out);
            }
            Event::AdvertReceived {
                from_ip,
                priority,
                max_advert_int,
            } => self.advert_received(from_ip, priority, max_advert_int, now, &mut out),
            Event::MasterDownTimerFired => {
                if self.fired(TimerKind::MasterDown) && self.state == State::Backup {
                    self.become_master(now, &mut out);
                    if std::mem::take(&mut self.following) {
                        self.counters.silent_master_takeovers += 1;
                        out.push(Action::ResetClients);
                    }
                }
            }
            Event::PreemptDelayFired => {
                if self.fired(TimerKind::PreemptDelay) && self.state == State::Backup {
                    self.become_master(now, &mut out);
                }
            }
            Event::AdvertTimerFired => {
                if self.fired(TimerKind::Advert) && self.state == State::Master {
                    self.send_advert(self.master_priority(), &mut out);
                    self.arm_advert(now, &mut out);
                }
            }
            Event::GarpTimerFired => {
                if self.fired(TimerKind::Garp) && self.state == State::Master {
                    out.push(Action::SendGarp {
                        count: self.cfg.garp_count,
                    });
                }
            }
        }
        out
    }

    // ----- transitions -----

    /// RFC "Initialize": the owner becomes master, everyone else backup; FAULT if not
    /// operational.
    fn initialize(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.master_adver_int_cs = self.cfg.advert_int_cs;
        if !self.operational() {
            self.enter_fault(out);
        } else if self.cfg.priority == 255 {
            self.become_master(now, out);
        } else {
            self.become_backup(now, out);
        }
    }

    /// After a health or link change.
    fn reassess(&mut self, now: Instant, out: &mut Vec<Action>) {
        match (self.state, self.operational()) {
            (State::Backup | State::Master, false) => self.enter_fault(out),
            (State::Fault, true) => self.initialize(now, out),
            _ => {}
        }
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.cancel(TimerKind::MasterDown, out);
        self.cancel(TimerKind::PreemptDelay, out);
        self.state = State::Master; // master_priority() is the master's from here on
        self.send_advert(self.master_priority(), out);
        out.push(Action::AddVip);
        out.push(Action::SendGarp {
            count: self.cfg.garp_count,
        });
        self.arm_advert(now, out);
        if let Some(d) = self.cfg.garp_master_delay {
            self.arm(TimerKind::Garp, now + d, out);
        }
        self.counters.became_master += 1;
        self.set_state(State::Master, NotifyState::Master, out);
    }

    fn become_backup(&mut self, now: Instant, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.following = false;
        self.cancel(TimerKind::Advert, out);
        self.cancel(TimerKind::Garp, out);
        if was_master {
            out.push(Action::RemoveVip);
        }
        self.arm(
            TimerKind::MasterDown,
            now + self.master_down_interval(),
            out,
        );
        self.set_state(State::Backup, NotifyState::Backup, out);
    }

    fn enter_fault(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            self.resign(out);
        }
        self.cancel_all(out);
        self.set_state(State::Fault, NotifyState::Fault, out);
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Initialize {
            return;
        }
        if self.state == State::Master {
            self.resign(out);
        }
        self.cancel_all(out);
        self.state = State::Initialize;
        out.push(Action::RunNotify {
            state: NotifyState::Stop,
            priority: self.cfg.priority,
        });
    }

    /// Priority-0 adverts, then the VIPs go: backups take over after their Skew_Time.
    fn resign(&mut self, out: &mut Vec<Action>) {
        for _ in 0..self.cfg.resign_adverts {
            self.send_advert(0, out);
        }
        out.push(Action::RemoveVip);
    }

    fn set_state(&mut self, state: State, notify: NotifyState, out: &mut Vec<Action>) {
        self.state = state;
        self.counters.transitions += 1;
        out.push(Action::RunNotify {
            state: notify,
            priority: self.cfg.priority,
        });
    }

    // ----- adverts -----

    fn advert_received(
        &mut self,
        from_ip: IpAddr,
        priority: u8,
        max_advert_int: u16,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Backup | State::Master) {
            return;
        }
        self.counters.adverts_received += 1;
        if from_ip == self.cfg.primary_ip {
            self.counters.own_adverts += 1;
            return;
        }
        if priority == 0 {
            self.counters.priority0_received += 1;
        }
        let ours = self.master_priority();
        match self.state {
            State::Backup => {
                if priority == 0 {
                    // The master resigns: the best backup (shortest skew) takes over first.
                    self.following = false;
                    self.arm(TimerKind::MasterDown, now + self.skew_time(), out);
                } else if !self.preempts() || priority >= ours {
                    if priority >= ours {
                        self.cancel(TimerKind::PreemptDelay, out);
                    }
                    self.accept_master(max_advert_int, now, out);
                } else if self.cfg.priority == 255 {
                    self.become_master(now, out);
                } else if !self.cfg.preempt_delay.is_zero() {
                    // Keep following the lower master until the delay is over.
                    if self.timer(TimerKind::PreemptDelay).is_none() {
                        self.arm(TimerKind::PreemptDelay, now + self.cfg.preempt_delay, out);
                    }
                    self.accept_master(max_advert_int, now, out);
                } else {
                    // RFC: discard; our down timer runs out and we take over (from a master
                    // that is alive: its clients need no reset).
                    self.following = false;
                    self.counters.preempt_discards += 1;
                }
            }
            State::Master => {
                if priority == 0 {
                    // Another master resigned: make sure the backups hear us at once.
                    self.send_advert(ours, out);
                    self.arm_advert(now, out);
                } else if priority > ours || (priority == ours && from_ip > self.cfg.primary_ip) {
                    if self.cfg.advert_on_yield {
                        // Tell the winner someone else held the VIP: it re-announces.
                        self.send_advert(ours, out);
                    }
                    self.learn_interval(max_advert_int);
                    self.become_backup(now, out);
                } else {
                    // Two masters (a healed partition): re-announce so the other yields and
                    // clients' ARP caches point here again.
                    self.counters.lower_priority_received += 1;
                    self.send_advert(ours, out);
                    self.arm_advert(now, out);
                    out.push(Action::SendGarp {
                        count: self.cfg.garp_lower_prio_count,
                    });
                }
            }
            State::Initialize | State::Fault => unreachable!("filtered above"),
        }
    }

    /// A (v3: learn its interval and) restart Master_Down_Timer.
    fn accept_master(&mut self, max_advert_int: u16, now: Instant, out: &mut Vec<Action>) {
        self.following = true;
        self.learn_interval(max_advert_int);
        self.arm(
            TimerKind::MasterDown,
            now + self.master_down_interval(),
            out,
        );
    }

    fn learn_interval(&mut self, max_advert_int: u16) {
        if self.cfg.version == Version::V3 && max_advert_int != 0 {
            self.master_adver_int_cs = max_advert_int;
        }
    }

    fn send_advert(&mut self, priority: u8, out: &mut Vec<Action>) {
        self.counters.adverts_sent += 1;
        if priority == 0 {
            self.counters.priority0_sent += 1;
        }
        out.push(Action::SendAdvert { priority });
    }

    // ----- timers -----

    fn arm_advert(&mut self, now: Instant, out: &mut Vec<Action>) {
        let d = Duration::from_millis(u64::from(self.cfg.advert_int_cs) * 10);
        self.arm(TimerKind::Advert, now + d, out);
    }

    fn arm(&mut self, kind: TimerKind, at: Instant, out: &mut Vec<Action>) {
        self.timers[kind.index()] = Some(at);
        out.push(Action::SetTimer { kind, at });
    }

    fn cancel(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timers[kind.index()].take().is_some() {
            out.push(Action::CancelTimer { kind });
        }
    }

    fn cancel_all(&mut self, out: &mut Vec<Action>) {
        for kind in TimerKind::ALL {
            self.cancel(kind, out);
        }
    }

    /// Consumes an expiry: false (and counted) when the timer was not armed.
    fn fired(&mut self, kind: TimerKind) -> bool {
        if self.timers[kind.index()].take().is_some() {
            true
        } else {
            self.counters.stale_timers += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn cfg(version: Version, priority: u8, int_cs: u16) -> Config {
        let mut c = Config::new(
            "VI_1",
            51,
            IpAddr::V4(Ipv4Addr::new(10, 99, 0, 11)),
            vec![IpAddr::V4(Ipv4Addr::new(10, 99, 0, 46))],
        );
        c.version = version;
        c.priority = priority;
        c.advert_int_cs = int_cs;
        c
    }

    #[test]
    fn timers_match_the_rfc_and_keepalived() {
        let i = Instance::new(cfg(Version::V2, 90, 100)).unwrap();
        assert_eq!(i.skew_time(), Duration::from_micros(648_437));
        assert_eq!(i.master_down_interval(), Duration::from_micros(3_648_437));
        let i = Instance::new(cfg(Version::V2, 100, 100)).unwrap();
        assert_eq!(i.master_down_interval(), Duration::from_micros(3_609_375));
        // v2 skew does not depend on the interval.
        let i = Instance::new(cfg(Version::V2, 90, 300)).unwrap();
        assert_eq!(i.skew_time(), Duration::from_micros(648_437));
        let i = Instance::new(cfg(Version::V3, 90, 10)).unwrap();
        assert_eq!(i.skew_time(), Duration::from_micros(64_843));
        assert_eq!(i.master_down_interval(), Duration::from_micros(364_843));
        let i = Instance::new(cfg(Version::V3, 254, 10)).unwrap();
        assert_eq!(i.skew_time(), Duration::from_micros(781));
        assert_eq!(i.master_down_interval(), Duration::from_micros(300_781));
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = cfg(Version::V2, 100, 150);
        assert!(Instance::new(c.clone()).is_err());
        c.advert_int_cs = 100;
        c.vrid = 0;
        assert!(Instance::new(c.clone()).is_err());
        c.vrid = 1;
        c.priority = 0;
        assert!(Instance::new(c.clone()).is_err());
        let mut c = cfg(Version::V3, 100, 10);
        c.auth = Auth::password(b"x");
        assert!(Instance::new(c.clone()).is_err());
        c.auth = Auth::None;
        c.vips.clear();
        assert!(Instance::new(c.clone()).is_err());
        c.vips = vec!["2001:db8::1".parse().unwrap()];
        assert!(Instance::new(c.clone()).is_err(), "mixed families");
        c.primary_ip = "fe80::1".parse().unwrap();
        assert!(Instance::new(c.clone()).is_ok());
        c.version = Version::V2;
        c.advert_int_cs = 100;
        assert!(Instance::new(c).is_err(), "IPv6 needs v3");
        let mut c = cfg(Version::V3, 100, 4096);
        assert!(Instance::new(c.clone()).is_err());
        c.advert_int_cs = 4095;
        assert!(Instance::new(c).is_ok());
    }

    #[test]
    fn notify_arguments_are_keepalived_s() {
        assert_eq!(
            notify_args("VI_1", NotifyState::Master, 100),
            ["INSTANCE", "VI_1", "MASTER", "100"]
        );
    }
}

//! `/metrics`: Prometheus text exposition format 0.0.4.
//!
//! Names follow Prometheus conventions: a `memha_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. The counters are memcached's and reset on
//! `stats reset` like theirs; Prometheus's `rate()` treats that as a counter reset.
//!
//! Order of the exposition:
//! 1. `memha_build_info{version}`.
//! 2. The single-valued figures, [`SCALARS`].
//! 3. Per size class (`memha_class_*{class,chunk_size}`), as `stats items`/`stats slabs`.
//! 4. Replication, `memha_replication_*` ([`REPLICATION`] and the per-peer and
//!    per-subscriber families below). A node that does not replicate exports only
//!    `memha_replication_enabled 0`. Per peer (`{peer="host:port"}`, the address configured
//!    for it): whether its stream to us is up, its link state as
//!    `memha_replication_peer_state{state}` 1/0 for every state, its writes applied, stale
//!    and rejected here, syncs and connects; per subscriber of our stream (`{node_id}`):
//!    acknowledged sequence and lag in writes.
//! 5. VRRP, `memha_vrrp_*`, from the supervisor's last report
//!    ([`Snapshot::vrrp`]). `memha_vrrp_enabled` is always there (0 without VRRP, and then
//!    nothing else is). Per instance (`{instance="VI_1"}`, the `vrrp_instance` name): its
//!    state as `memha_vrrp_state{state}` 1/0 for each of [`VRRP_STATES`], the current master
//!    as `memha_vrrp_master_info{master}` 1 (`master="none"` while none is known), then
//!    [`PER_VRRP_INSTANCE`] (priorities, VIPs held, health, link, counters), then
//!    `memha_vrrp_dropped_total{reason}` per reason a received packet was dropped for
//!    (`too_short`, `ip_header`, `not_vrrp`, `ttl`, `version`, `type`, `no_addresses`,
//!    `length`, `checksum`, `vrid`, `auth_type`, `auth_password`, `interval`,
//!    `address_list`: every `dropped_<reason>` the report has). A figure missing from the
//!    report or not a number is left out rather than shown as 0.

use std::collections::HashMap;
use std::fmt::Write as _;

use memha_repl::node::{PeerStats, ReplStats};
use memha_server::vrrp_view::{VrrpInstanceView, VrrpView};

use crate::snapshot::{self, Kind, Num, Snapshot, SCALARS};

/// Link states of a peer, as [`PeerStats::state`] reports them; each is exported 1/0.
pub const PEER_STATES: [&str; 3] = ["connecting", "syncing", "streaming"];

/// A single-valued replication figure: metric name, type, help, value.
pub type ReplScalar = (&'static str, Kind, &'static str, fn(&ReplStats) -> Num);

/// The single-valued replication figures after `memha_replication_enabled`, in
/// exposition order.
pub const REPLICATION: &[ReplScalar] = &[
    (
        "memha_replication_ready",
        Kind::Gauge,
        "1 once every peer finished a first sync with this node (or none answered within the grace period).",
        |r| Num::from(r.ready),
    ),
    (
        "memha_replication_node_id",
        Kind::Gauge,
        "This node's replication id (embedded in every item version).",
        |r| Num::Int(r.node_id.into()),
    ),
    (
        "memha_replication_backlog_bytes",
        Kind::Gauge,
        "Bytes of local writes held for peers to resume from.",
        |r| Num::Int(r.backlog_bytes),
    ),
    (
        "memha_replication_backlog_limit_bytes",
        Kind::Gauge,
        "Backlog budget; older writes are dropped beyond it.",
        |r| Num::Int(r.backlog_max_bytes),
    ),
    (
        "memha_replication_backlog_dropped_total",
        Kind::Counter,
        "Writes dropped from the backlog to stay within its budget.",
        |r| Num::Int(r.backlog_dropped),
    ),
    (
        "memha_replication_needs_resync_total",
        Kind::Counter,
        "Subscribers that fell behind the backlog and must resync in full.",
        |r| Num::Int(r.needs_resync),
    ),
    (
        "memha_replication_auth_failures_total",
        Kind::Counter,
        "Replication links refused because authentication failed (either direction).",
        |r| Num::Int(r.auth_failures),
    ),
    (
        "memha_replication_protocol_errors_total",
        Kind::Counter,
        "Replication links dropped because the other side broke the protocol.",
        |r| Num::Int(r.protocol_errors),
    ),
    (
        "memha_replication_full_syncs_served_total",
        Kind::Counter,
        "Full syncs (every live item) this node sent to subscribers.",
        |r| Num::Int(r.full_syncs_served),
    ),
    (
        "memha_replication_partial_syncs_served_total",
        Kind::Counter,
        "Subscriptions this node resumed from its backlog.",
        |r| Num::Int(r.partial_syncs_served),
    ),
    (
        "memha_replication_holding",
        Kind::Gauge,
        "1 while this node holds writes a lagging peer lacks (it took writes while a peer was not acknowledging); a VRRP master advertises priority 254 meanwhile.",
        |r| Num::from(r.holding),
    ),
    (
        "memha_replication_holds_total",
        Kind::Counter,
        "Times this node started holding writes a lagging peer lacked.",
        |r| Num::Int(r.holds),
    ),
    (
        "memha_replication_sync_acked_total",
        Kind::Counter,
        "Writes answered after a peer applied them (--repl-ack sync).",
        |r| Num::Int(r.sync_acked),
    ),
    (
        "memha_replication_sync_timeouts_total",
        Kind::Counter,
        "Writes answered after waiting the whole sync timeout for a peer (--repl-ack sync).",
        |r| Num::Int(r.sync_timeouts),
    ),
    (
        "memha_replication_sync_no_peer_total",
        Kind::Counter,
        "Writes answered at once because no peer was connected (--repl-ack sync).",
        |r| Num::Int(r.sync_no_peer),
    ),
    (
        "memha_replication_sync_degraded",
        Kind::Gauge,
        "1 while sync acknowledgement is suspended because every peer went silent (a write waited the whole timeout with no acknowledgement arriving); it resumes when a peer acknowledges again.",
        |r| Num::from(r.sync_degraded),
    ),
    (
        "memha_replication_sync_degraded_writes_total",
        Kind::Counter,
        "Writes answered at once while sync acknowledgement was suspended (every peer silent).",
        |r| Num::Int(r.sync_degraded_writes),
    ),
    (
        "memha_replication_client_connections_shared",
        Kind::Gauge,
        "Client connections of this node open a second or more, told to its peers so that a node taking the VIP over can reset them at once.",
        |r| Num::Int(r.client_conns_shared),
    ),
    (
        "memha_replication_peer_client_connections",
        Kind::Gauge,
        "Client connections the peers told this node about (reset with tickle ACKs if this node takes their VIP over).",
        |r| Num::Int(r.peer_client_conns),
    ),
];

/// A per-peer replication figure.
type PeerFig = (
    &'static str,
    Kind,
    &'static str,
    fn(&PeerStats) -> Option<Num>,
);

/// Per-peer figures after `memha_replication_peer_up` and `memha_replication_peer_state`.
const PER_PEER: [PeerFig; 9] = [
    (
        "memha_replication_peer_applied_writes_total",
        Kind::Counter,
        "Writes from the peer applied here (including its full syncs).",
        |p| Some(Num::Int(p.applied)),
    ),
    (
        "memha_replication_peer_stale_writes_total",
        Kind::Counter,
        "Writes from the peer not applied because this node held an equal or newer version \
         (conflicts resolved by version: the remote write was older).",
        |p| Some(Num::Int(p.stale)),
    ),
    (
        "memha_replication_peer_rejected_writes_total",
        Kind::Counter,
        "Writes from the peer refused here (too large or no memory).",
        |p| Some(Num::Int(p.rejected)),
    ),
    (
        "memha_replication_peer_full_syncs_total",
        Kind::Counter,
        "Full syncs received from the peer.",
        |p| Some(Num::Int(p.full_syncs)),
    ),
    (
        "memha_replication_peer_partial_syncs_total",
        Kind::Counter,
        "Subscriptions to the peer resumed from its backlog.",
        |p| Some(Num::Int(p.partial_syncs)),
    ),
    (
        "memha_replication_peer_connects_total",
        Kind::Counter,
        "Links to the peer established (handshake passed).",
        |p| Some(Num::Int(p.connects)),
    ),
    (
        "memha_replication_peer_last_full_sync_seconds",
        Kind::Gauge,
        "How long the last full sync from the peer took (0 before the first).",
        |p| Some(Num::Float(p.last_full_sync_ms as f64 / 1000.0)),
    ),
    (
        "memha_replication_peer_clock_skew_seconds",
        Kind::Gauge,
        "The peer's wall clock minus this node's, measured at the last handshake.",
        |p| Some(Num::Float(p.clock_skew_ms as f64 / 1000.0)),
    ),
    (
        "memha_replication_peer_last_seen_seconds",
        Kind::Gauge,
        "Seconds since the last frame from the peer (absent until it was first connected).",
        |p| snapshot::peer_last_seen_seconds(p).map(Num::Float),
    ),
];

/// VRRP states (`State::name` in lowercase); each is exported 1/0 per instance.
pub const VRRP_STATES: [&str; 4] = ["init", "backup", "master", "fault"];

/// A per-instance VRRP figure: metric name, type, help, key in the supervisor's report.
pub type VrrpFig = (&'static str, Kind, &'static str, &'static str);

/// Per-instance figures after `memha_vrrp_state` and `memha_vrrp_master_info`, in
/// exposition order.
pub const PER_VRRP_INSTANCE: [VrrpFig; 17] = [
    (
        "memha_vrrp_priority",
        Kind::Gauge,
        "Configured VRRP priority of the instance (255: this node owns the addresses).",
        "priority",
    ),
    (
        "memha_vrrp_effective_priority",
        Kind::Gauge,
        "Priority the instance advertises now: the configured one, 0 while it is not \
         operational (link down or a failed health check).",
        "effective_priority",
    ),
    (
        "memha_vrrp_holding_vips",
        Kind::Gauge,
        "1 while the virtual addresses are installed on this node.",
        "holding_vips",
    ),
    (
        "memha_vrrp_healthy",
        Kind::Gauge,
        "1 while the cache engine and every tracked script of the instance are healthy.",
        "healthy",
    ),
    (
        "memha_vrrp_link_up",
        Kind::Gauge,
        "1 while the instance's interface is up.",
        "link_up",
    ),
    (
        "memha_vrrp_transitions_total",
        Kind::Counter,
        "State changes of the instance.",
        "transitions",
    ),
    (
        "memha_vrrp_became_master_total",
        Kind::Counter,
        "Times the instance became master.",
        "became_master",
    ),
    (
        "memha_vrrp_adverts_sent_total",
        Kind::Counter,
        "VRRP advertisements sent.",
        "adverts_sent",
    ),
    (
        "memha_vrrp_adverts_received_total",
        Kind::Counter,
        "VRRP advertisements received and accepted.",
        "adverts_received",
    ),
    (
        "memha_vrrp_priority0_sent_total",
        Kind::Counter,
        "Advertisements with priority 0 sent (this node resigned as master).",
        "priority0_sent",
    ),
    (
        "memha_vrrp_priority0_received_total",
        Kind::Counter,
        "Advertisements with priority 0 received (the master resigned).",
        "priority0_received",
    ),
    (
        "memha_vrrp_garps_sent_total",
        Kind::Counter,
        "Gratuitous ARPs sent for the virtual addresses.",
        "garps_sent",
    ),
    (
        "memha_vrrp_silent_master_takeovers_total",
        Kind::Counter,
        "Takeovers from a master that went silent (no priority-0 advert): its clients' connections are reset at once.",
        "silent_master_takeovers",
    ),
    (
        "memha_vrrp_clients_reset_total",
        Kind::Counter,
        "Client connections to a silent master reset at a takeover (tickle ACKs sent), so pooled clients reconnect without waiting for a TCP retransmission.",
        "clients_reset",
    ),
    (
        "memha_vrrp_send_errors_total",
        Kind::Counter,
        "Advertisements or gratuitous ARPs that could not be sent.",
        "send_errors",
    ),
    (
        "memha_vrrp_netlink_errors_total",
        Kind::Counter,
        "Virtual address additions or removals the kernel refused.",
        "netlink_errors",
    ),
    (
        "memha_vrrp_hooks_failed_total",
        Kind::Counter,
        "Notify hooks that could not be started or exited unsuccessfully (the supervisor's \
         total, the same for every instance).",
        "hooks_failed",
    ),
];

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render a snapshot as a text exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "memha_build_info",
        Kind::Gauge,
        "Always 1; the labels carry the server's version.",
    );
    out.sample("memha_build_info", &[("version", s.version)], Num::Int(1));

    let mut current = "";
    for sc in SCALARS {
        if sc.metric != current {
            out.family(sc.metric, sc.kind, sc.help);
            current = sc.metric;
        }
        let labels: &[(&str, &str)] = if sc.label.0.is_empty() {
            &[]
        } else {
            &[sc.label]
        };
        out.sample(sc.metric, labels, (sc.value)(s));
    }

    // Per size class. Classes appear once they hold an item or counted an event.
    type ClassFig = fn(&Snapshot, &memha_store::ClassStats) -> u64;
    let per_class: [(&str, Kind, &str, ClassFig); 9] = [
        (
            "memha_class_items",
            Kind::Gauge,
            "Live items in the size class (the slab class memcached would use).",
            |_, c| c.number,
        ),
        (
            "memha_class_item_bytes",
            Kind::Gauge,
            "Size of the class's live items as memcached counts it.",
            |_, c| c.bytes,
        ),
        (
            "memha_class_oldest_item_age_seconds",
            Kind::Gauge,
            "Seconds since the class's least recently used item was used.",
            |s, c| s.class_age(c),
        ),
        (
            "memha_class_evictions_total",
            Kind::Counter,
            "Items of the class evicted.",
            |_, c| c.evicted,
        ),
        (
            "memha_class_evicted_nonzero_total",
            Kind::Counter,
            "Items of the class evicted that had an expiry time.",
            |_, c| c.evicted_nonzero,
        ),
        (
            "memha_class_evicted_unfetched_total",
            Kind::Counter,
            "Items of the class evicted without being read.",
            |_, c| c.evicted_unfetched,
        ),
        (
            "memha_class_expired_unfetched_total",
            Kind::Counter,
            "Items of the class that expired without being read.",
            |_, c| c.expired_unfetched,
        ),
        (
            "memha_class_reclaimed_total",
            Kind::Counter,
            "Expired items of the class whose memory was reused.",
            |_, c| c.reclaimed,
        ),
        (
            "memha_class_out_of_memory_total",
            Kind::Counter,
            "Writes to the class refused for lack of memory.",
            |_, c| c.outofmemory,
        ),
    ];
    for (name, kind, help, fig) in per_class {
        out.family(name, kind, help);
        for c in &s.classes {
            let class = c.class.to_string();
            let chunk = c.chunk_size.to_string();
            out.sample(
                name,
                &[("class", &class), ("chunk_size", &chunk)],
                Num::Int(fig(s, c)),
            );
        }
    }

    replication(&mut out, s.replication.as_ref());
    vrrp(&mut out, s.vrrp.as_ref());
    out.text
}

/// Item 4 of the module documentation.
fn replication(out: &mut Exposition, r: Option<&ReplStats>) {
    out.family(
        "memha_replication_enabled",
        Kind::Gauge,
        "1 when this node replicates with peers; without replication no other memha_replication_* metric is exported.",
    );
    out.sample("memha_replication_enabled", &[], Num::from(r.is_some()));
    let Some(r) = r else { return };
    for (name, kind, help, value) in REPLICATION {
        out.family(name, *kind, help);
        out.sample(name, &[], value(r));
    }

    // One series per configured address (a peer listed twice is exported once).
    let mut seen = std::collections::HashSet::new();
    let peers: Vec<&PeerStats> = r.peers.iter().filter(|p| seen.insert(&p.addr)).collect();
    out.family(
        "memha_replication_peer_up",
        Kind::Gauge,
        "1 while the peer's stream to this node is up and live (state streaming).",
    );
    for p in &peers {
        let up = p.state == "streaming";
        out.sample(
            "memha_replication_peer_up",
            &[("peer", &p.addr)],
            Num::from(up),
        );
    }
    out.family(
        "memha_replication_peer_state",
        Kind::Gauge,
        "The link to the peer: 1 for its current state (connecting, syncing: a full sync is \
         under way, streaming), 0 for the others.",
    );
    for p in &peers {
        let mut states: Vec<&str> = PEER_STATES.to_vec();
        if !states.contains(&p.state) {
            states.push(p.state);
        }
        for st in states {
            out.sample(
                "memha_replication_peer_state",
                &[("peer", &p.addr), ("state", st)],
                Num::from(st == p.state),
            );
        }
    }
    for (name, kind, help, value) in PER_PEER {
        out.family(name, kind, help);
        for p in &peers {
            if let Some(v) = value(p) {
                out.sample(name, &[("peer", &p.addr)], v);
            }
        }
    }

    let subs = snapshot::subscribers(r);
    out.family(
        "memha_replication_subscriber_lag_writes",
        Kind::Gauge,
        "Writes of this node's stream the subscribing peer has not acknowledged yet \
         (backlog last sequence minus its acknowledged sequence).",
    );
    for sub in &subs {
        let id = sub.node_id.to_string();
        out.sample(
            "memha_replication_subscriber_lag_writes",
            &[("node_id", &id)],
            Num::Int(sub.lag_writes),
        );
    }
    out.family(
        "memha_replication_subscriber_acked_seq",
        Kind::Gauge,
        "Highest sequence of this node's stream the subscribing peer acknowledged.",
    );
    for sub in &subs {
        let id = sub.node_id.to_string();
        out.sample(
            "memha_replication_subscriber_acked_seq",
            &[("node_id", &id)],
            Num::Int(sub.acked_seq),
        );
    }
}

/// Item 5 of the module documentation.
fn vrrp(out: &mut Exposition, view: Option<&VrrpView>) {
    out.family(
        "memha_vrrp_enabled",
        Kind::Gauge,
        "1 when VRRP instances are configured; without VRRP no other memha_vrrp_* metric is exported.",
    );
    out.sample("memha_vrrp_enabled", &[], Num::from(view.is_some()));
    let Some(view) = view else { return };
    // One series per instance name (names are unique in a valid configuration).
    let mut seen = std::collections::HashSet::new();
    let instances: Vec<&VrrpInstanceView> = view
        .instances
        .iter()
        .filter(|i| seen.insert(&i.name))
        .collect();

    out.family(
        "memha_vrrp_state",
        Kind::Gauge,
        "The instance's VRRP state: 1 for the current one (init, backup, master, fault), 0 for \
         the others.",
    );
    for inst in &instances {
        let Some(current) = snapshot::vrrp_state(inst) else {
            continue;
        };
        let mut states: Vec<&str> = VRRP_STATES.to_vec();
        if !states.contains(&current.as_str()) {
            states.push(&current);
        }
        for st in states {
            out.sample(
                "memha_vrrp_state",
                &[("instance", &inst.name), ("state", st)],
                Num::from(st == current),
            );
        }
    }
    out.family(
        "memha_vrrp_master_info",
        Kind::Gauge,
        "Always 1; the master label is the address of the instance's current master (this \
         node's primary address while it is master, \"none\" while no master is known).",
    );
    for inst in &instances {
        if let Some(master) = inst.get("master") {
            out.sample(
                "memha_vrrp_master_info",
                &[("instance", &inst.name), ("master", master)],
                Num::Int(1),
            );
        }
    }
    for (name, kind, help, key) in PER_VRRP_INSTANCE {
        out.family(name, kind, help);
        for inst in &instances {
            if let Some(v) = snapshot::vrrp_num(inst, key) {
                out.sample(name, &[("instance", &inst.name)], Num::Int(v));
            }
        }
    }
    out.family(
        "memha_vrrp_dropped_total",
        Kind::Counter,
        "Received VRRP packets dropped, by reason (malformed, wrong TTL, version, VRID, \
         authentication, advertisement interval or address list).",
    );
    for inst in &instances {
        let mut reasons = std::collections::HashSet::new();
        for (key, value) in &inst.values {
            let Some(reason) = key.strip_prefix("dropped_") else {
                continue;
            };
            if reason == "total" || !reasons.insert(reason) {
                continue;
            }
            if let Ok(v) = value.parse::<u64>() {
                out.sample(
                    "memha_vrrp_dropped_total",
                    &[("instance", &inst.name), ("reason", reason)],
                    Num::Int(v),
                );
            }
        }
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Num) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Check a text exposition: every line is a `# HELP`, `# TYPE` or a sample
/// `name{label="value",…} value`; every sample's family has exactly one HELP and one TYPE,
/// given before its samples; no series (name and labels) repeats. Returns the number of
/// samples. Used by the tests; public so other crates' tests can check the endpoint too.
pub fn validate(text: &str) -> Result<usize, String> {
    #[derive(Default)]
    struct Family {
        help: usize,
        kind: Option<String>,
        samples: usize,
    }
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut series = std::collections::HashSet::new();
    let mut samples = 0;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            check_name(name).map_err(|e| format!("line {n}: {e}"))?;
            let f = families.entry(name.to_string()).or_default();
            f.help += 1;
            if f.help > 1 {
                return Err(format!("line {n}: second HELP for {name}"));
            }
            if f.samples > 0 {
                return Err(format!("line {n}: HELP for {name} after its samples"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            check_name(name).map_err(|e| format!("line {n}: {e}"))?;
            if words.next().is_some()
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(format!("line {n}: bad TYPE line"));
            }
            let f = families.entry(name.to_string()).or_default();
            if f.kind.is_some() {
                return Err(format!("line {n}: second TYPE for {name}"));
            }
            if f.samples > 0 {
                return Err(format!("line {n}: TYPE for {name} after its samples"));
            }
            f.kind = Some(kind.to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (name, labels, value) = parse_sample(line).map_err(|e| format!("line {n}: {e}"))?;
            value
                .parse::<f64>()
                .map_err(|_| format!("line {n}: bad value {value:?}"))?;
            let f = families
                .get_mut(name)
                .ok_or_else(|| format!("line {n}: {name} has no HELP/TYPE"))?;
            if f.help != 1 || f.kind.is_none() {
                return Err(format!("line {n}: {name} lacks HELP or TYPE"));
            }
            if f.kind.as_deref() == Some("counter") && !name.ends_with("_total") {
                return Err(format!("line {n}: counter {name} does not end in _total"));
            }
            f.samples += 1;
            if !series.insert((name.to_string(), labels)) {
                return Err(format!("line {n}: repeated series"));
            }
            samples += 1;
        }
    }
    Ok(samples)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// Label pairs of a sample, sorted.
type Labels = Vec<(String, String)>;

/// `name{k="v",…} value` → (name, sorted labels, value).
fn parse_sample(line: &str) -> Result<(&str, Labels, &str), String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("not a sample: {line:?}"))?;
    let name = &line[..end];
    check_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let key = &rest[..eq];
            if !key
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()))
                || key.is_empty()
            {
                return Err(format!("bad label name {key:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape in label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &rest[close + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.is_empty() || value.contains(' ') {
        // A timestamp would follow a second space; this exporter never writes one.
        return Err(format!("bad value field {value:?}"));
    }
    labels.sort();
    let names: std::collections::HashSet<_> = labels.iter().map(|(k, _)| k).collect();
    if names.len() != labels.len() {
        return Err("repeated label name".into());
    }
    Ok((name, labels, value))
}

/// The value of one series in an exposition (`labels` as `k="v"` pairs, any order), for
/// tests.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| parse_sample(l).ok())
        .find(|(n, l, _)| *n == name && *l == want)
        .and_then(|(_, _, v)| v.parse().ok())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use memha_server::stats::Counters;
    use memha_store::{ClassStats, StoreStats};

    /// A single node's snapshot (for the other modules' tests too).
    pub(crate) fn snapshot() -> Snapshot {
        let counters = Counters {
            cmd_get: 7,
            get_hits: 5,
            get_misses: 2,
            ..Counters::default()
        };
        let store = StoreStats {
            curr_items: 3,
            memory_limit: 1 << 26,
            memory_used: 12345,
            ..StoreStats::default()
        };
        let class = |class, chunk_size, number| ClassStats {
            class,
            chunk_size,
            number,
            bytes: number * 80,
            oldest_atime: 999,
            ..ClassStats::default()
        };
        Snapshot {
            version: "1.6.45-memha-\"test\"\\",
            pid: 1,
            now: 1000,
            started: 900,
            uptime: 100,
            role: "single node".to_string(),
            ready: true,
            stopping: false,
            cpu_user: 0.25,
            cpu_system: 1e-7,
            threads: 4,
            max_connections: 1024,
            connections: 2,
            counters,
            store,
            classes: vec![class(1, 96, 2), class(3, 152, 1)],
            replication: None,
            vrrp: None,
        }
    }

    /// The drop reasons the speaker reports (`DropReason::as_str`), in its order.
    pub(crate) const DROP_REASONS: [&str; 14] = [
        "too_short",
        "ip_header",
        "not_vrrp",
        "ttl",
        "version",
        "type",
        "no_addresses",
        "length",
        "checksum",
        "vrid",
        "auth_type",
        "auth_password",
        "interval",
        "address_list",
    ];

    /// A supervisor's report: VI_1 is master and holds its address; VI_2 has just started
    /// (INIT), its link is down and its report is short of a few figures (`priority`
    /// unparsable, no `garps_sent`, no `dropped_vrid`).
    pub(crate) fn vrrp_view() -> VrrpView {
        let values = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut vi_1 = values(&[
            ("state", "MASTER"),
            ("interface", "eth0"),
            ("vrid", "51"),
            ("version", "3"),
            ("priority", "150"),
            ("effective_priority", "150"),
            ("advert_int_ms", "1000"),
            ("primary_ip", "10.0.0.1"),
            ("master", "10.0.0.1"),
            ("vips", "10.0.0.100,10.0.0.101"),
            ("holding_vips", "1"),
            ("healthy", "1"),
            ("link_up", "1"),
            ("transitions", "2"),
            ("became_master", "1"),
            ("adverts_sent", "1200"),
            ("adverts_received", "7"),
            ("priority0_sent", "0"),
            ("priority0_received", "1"),
            ("garps_sent", "10"),
            ("silent_master_takeovers", "1"),
            ("clients_reset", "12"),
            ("vip_adds", "2"),
            ("vip_removes", "0"),
            ("send_errors", "3"),
            ("netlink_errors", "0"),
            ("unknown_peer", "0"),
            ("hooks_started", "4"),
            ("hooks_failed", "1"),
            ("dropped_total", "14"),
        ]);
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            // checksum 5, the others alternately 0 and 1 (6 in all, plus 5: 11). The report's
            // dropped_total (14) is the speaker's figure and is not checked against them.
            let n = if *reason == "checksum" { 5 } else { i % 2 };
            vi_1.push((format!("dropped_{reason}"), n.to_string()));
        }
        let mut vi_2 = values(&[
            ("state", "INIT"),
            ("interface", "eth1"),
            ("vrid", "52"),
            ("version", "2"),
            ("priority", "x"),
            ("effective_priority", "0"),
            ("master", "none"),
            ("vips", "192.168.1.10"),
            ("holding_vips", "0"),
            ("healthy", "1"),
            ("link_up", "0"),
            ("transitions", "0"),
            ("became_master", "0"),
            ("adverts_sent", "0"),
            ("adverts_received", "0"),
            ("dropped_total", "0"),
        ]);
        for reason in DROP_REASONS.iter().filter(|r| **r != "vrid") {
            vi_2.push((format!("dropped_{reason}"), "0".to_string()));
        }
        VrrpView {
            instances: vec![
                VrrpInstanceView {
                    name: "VI_1".into(),
                    values: vi_1,
                },
                VrrpInstanceView {
                    name: "VI_2".into(),
                    values: vi_2,
                },
            ],
        }
    }

    /// Replication figures: a streaming peer (node 2) and one never reached.
    pub(crate) fn repl_stats() -> ReplStats {
        use memha_repl::node::SubscriberStats;
        let sub = |addr: &str, node_id, acked_seq| SubscriberStats {
            addr: addr.to_string(),
            node_id,
            acked_seq,
            sent_seq: acked_seq,
        };
        // PeerStats has private fields: no struct literal outside its crate.
        let mut streaming = PeerStats::default();
        streaming.addr = "10.0.0.2:11311".into();
        streaming.state = "streaming";
        streaming.node_id = Some(2);
        streaming.connects = 2;
        streaming.full_syncs = 1;
        streaming.last_full_sync_ms = 1500;
        streaming.partial_syncs = 1;
        streaming.applied_seq = 42;
        streaming.applied = 40;
        streaming.stale = 3;
        streaming.rejected = 1;
        streaming.clock_skew_ms = -250;
        streaming.last_seen_ms = 300;
        let mut connecting = PeerStats::default();
        connecting.addr = "peer-\"3\":11311".into();
        connecting.state = "connecting";
        connecting.last_error = "connect: refused".into();
        ReplStats {
            node_id: 1,
            epoch: 0xdead_beef_0000_0001,
            ready: true,
            backlog_bytes: 4096,
            backlog_max_bytes: 1 << 20,
            backlog_first_seq: 3,
            backlog_last_seq: 10,
            backlog_dropped: 2,
            needs_resync: 1,
            auth_failures: 4,
            protocol_errors: 5,
            full_syncs_served: 6,
            partial_syncs_served: 7,
            peers: vec![streaming, connecting],
            // Node 2 reconnected: its old link (acked 4) is still registered.
            subscribers: vec![
                sub("10.0.0.2:5000", 2, 4),
                sub("10.0.0.2:5001", 2, 9),
                sub("10.0.0.3:5000", 3, 10),
            ],
            ..ReplStats::default()
        }
    }

    #[test]
    fn single_node_exports_only_replication_enabled() {
        let text = render(&snapshot());
        assert_eq!(
            sample_value(&text, "memha_replication_enabled", &[]),
            Some(0.0)
        );
        let repl: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("memha_replication_"))
            .collect();
        assert_eq!(repl.len(), 3, "{repl:?}"); // HELP, TYPE, sample
    }

    #[test]
    fn single_node_exports_only_vrrp_enabled() {
        let text = render(&snapshot());
        assert!(text.contains("\nmemha_vrrp_enabled 0\n"), "{text}");
        let vrrp: Vec<&str> = text.lines().filter(|l| l.contains("memha_vrrp_")).collect();
        assert_eq!(vrrp.len(), 3, "{vrrp:?}"); // HELP, TYPE, sample
    }

    #[test]
    fn vrrp_metrics() {
        let mut s = snapshot();
        s.vrrp = Some(vrrp_view());
        let text = render(&s);
        let n = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Scalars, build info, classes, replication and VRRP enabled, then VI_1: 4 states,
        // master, 17 figures, 14 reasons; VI_2: 4 states, master, 8 of the figures (priority
        // unparsable; no priority0_*, garps, send/netlink/hook errors), 13 reasons.
        let vi_1 = VRRP_STATES.len() + 1 + PER_VRRP_INSTANCE.len() + DROP_REASONS.len();
        let vi_2 = VRRP_STATES.len() + 1 + 8 + DROP_REASONS.len() - 1;
        assert_eq!(n, SCALARS.len() + 1 + 9 * 2 + 1 + 1 + vi_1 + vi_2);
        for line in [
            "memha_vrrp_enabled 1",
            "memha_vrrp_state{instance=\"VI_1\",state=\"init\"} 0",
            "memha_vrrp_state{instance=\"VI_1\",state=\"backup\"} 0",
            "memha_vrrp_state{instance=\"VI_1\",state=\"master\"} 1",
            "memha_vrrp_state{instance=\"VI_1\",state=\"fault\"} 0",
            "memha_vrrp_state{instance=\"VI_2\",state=\"init\"} 1",
            "memha_vrrp_state{instance=\"VI_2\",state=\"master\"} 0",
            "memha_vrrp_master_info{instance=\"VI_1\",master=\"10.0.0.1\"} 1",
            "memha_vrrp_master_info{instance=\"VI_2\",master=\"none\"} 1",
            "memha_vrrp_priority{instance=\"VI_1\"} 150",
            "memha_vrrp_clients_reset_total{instance=\"VI_1\"} 12",
            "memha_vrrp_dropped_total{instance=\"VI_1\",reason=\"checksum\"} 5",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}\n{text}");
        }
        let v = |name: &str, inst: &str| sample_value(&text, name, &[("instance", inst)]);
        for (name, vi_1, vi_2) in [
            ("memha_vrrp_priority", Some(150.0), None),
            ("memha_vrrp_effective_priority", Some(150.0), Some(0.0)),
            ("memha_vrrp_holding_vips", Some(1.0), Some(0.0)),
            ("memha_vrrp_healthy", Some(1.0), Some(1.0)),
            ("memha_vrrp_link_up", Some(1.0), Some(0.0)),
            ("memha_vrrp_transitions_total", Some(2.0), Some(0.0)),
            ("memha_vrrp_became_master_total", Some(1.0), Some(0.0)),
            ("memha_vrrp_adverts_sent_total", Some(1200.0), Some(0.0)),
            ("memha_vrrp_adverts_received_total", Some(7.0), Some(0.0)),
            ("memha_vrrp_priority0_sent_total", Some(0.0), None),
            ("memha_vrrp_priority0_received_total", Some(1.0), None),
            ("memha_vrrp_garps_sent_total", Some(10.0), None),
            ("memha_vrrp_send_errors_total", Some(3.0), None),
            ("memha_vrrp_netlink_errors_total", Some(0.0), None),
            ("memha_vrrp_hooks_failed_total", Some(1.0), None),
        ] {
            assert_eq!((v(name, "VI_1"), v(name, "VI_2")), (vi_1, vi_2), "{name}");
        }
        let dropped = |inst: &str, reason: &str| {
            sample_value(
                &text,
                "memha_vrrp_dropped_total",
                &[("instance", inst), ("reason", reason)],
            )
        };
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            let want = if *reason == "checksum" { 5 } else { i % 2 };
            assert_eq!(dropped("VI_1", reason), Some(want as f64), "{reason}");
        }
        assert_eq!(dropped("VI_2", "ttl"), Some(0.0));
        assert_eq!(dropped("VI_2", "vrid"), None);
        // The report's own total is not a reason.
        assert_eq!(dropped("VI_1", "total"), None);
        for (name, kind) in [
            ("memha_vrrp_state", "gauge"),
            ("memha_vrrp_master_info", "gauge"),
            ("memha_vrrp_priority", "gauge"),
            ("memha_vrrp_adverts_sent_total", "counter"),
            ("memha_vrrp_dropped_total", "counter"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        // Without the speaker's first report: enabled, families declared, no series.
        s.vrrp = Some(VrrpView::default());
        let text = render(&s);
        assert_eq!(validate(&text), Ok(SCALARS.len() + 1 + 9 * 2 + 1 + 1));
        assert_eq!(sample_value(&text, "memha_vrrp_enabled", &[]), Some(1.0));
    }

    #[test]
    fn vrrp_odd_reports_stay_valid() {
        let mut view = vrrp_view();
        // An unknown state, a name needing escapes, an instance reported twice, a figure
        // and a reason given twice, no state at all.
        view.instances[0].values[0].1 = "STOP".into();
        view.instances[0]
            .values
            .push(("priority".into(), "1".into()));
        view.instances[0]
            .values
            .push(("dropped_ttl".into(), "9".into()));
        view.instances[1].name = "a \"b\"\\".into();
        view.instances[1].values.retain(|(k, _)| k != "state");
        view.instances.push(view.instances[0].clone());
        let mut s = snapshot();
        s.vrrp = Some(view);
        let text = render(&s);
        validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let state = |inst: &str, st: &str| {
            sample_value(
                &text,
                "memha_vrrp_state",
                &[("instance", inst), ("state", st)],
            )
        };
        assert_eq!(state("VI_1", "stop"), Some(1.0));
        assert_eq!(state("VI_1", "master"), Some(0.0));
        assert_eq!(state("a \"b\"\\", "init"), None);
        assert_eq!(
            sample_value(&text, "memha_vrrp_priority", &[("instance", "VI_1")]),
            Some(150.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "memha_vrrp_dropped_total",
                &[("instance", "VI_1"), ("reason", "ttl")]
            ),
            Some(1.0)
        );
        assert!(
            text.contains("memha_vrrp_link_up{instance=\"a \\\"b\\\"\\\\\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn replication_metrics() {
        let mut s = snapshot();
        s.replication = Some(repl_stats());
        let text = render(&s);
        let n = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Scalars, build info, classes, enabled + REPLICATION; per peer: up, 3 states, 9
        // figures (last seen only for the peer ever connected); 2 subscribers × 2;
        // memha_vrrp_enabled.
        let per_peer = 2 * (1 + PEER_STATES.len() + PER_PEER.len()) - 1;
        assert_eq!(
            n,
            SCALARS.len() + 1 + 9 * 2 + 1 + REPLICATION.len() + per_peer + 2 * 2 + 1
        );
        let v = |name: &str, labels: &[(&str, &str)]| sample_value(&text, name, labels);
        assert_eq!(v("memha_replication_enabled", &[]), Some(1.0));
        assert_eq!(v("memha_replication_ready", &[]), Some(1.0));
        assert_eq!(v("memha_replication_node_id", &[]), Some(1.0));
        assert_eq!(v("memha_replication_backlog_bytes", &[]), Some(4096.0));
        assert_eq!(
            v("memha_replication_backlog_limit_bytes", &[]),
            Some(1048576.0)
        );
        assert_eq!(v("memha_replication_backlog_dropped_total", &[]), Some(2.0));
        assert_eq!(v("memha_replication_needs_resync_total", &[]), Some(1.0));
        assert_eq!(v("memha_replication_auth_failures_total", &[]), Some(4.0));
        assert_eq!(v("memha_replication_protocol_errors_total", &[]), Some(5.0));
        assert_eq!(
            v("memha_replication_full_syncs_served_total", &[]),
            Some(6.0)
        );
        assert_eq!(
            v("memha_replication_partial_syncs_served_total", &[]),
            Some(7.0)
        );
        let a = [("peer", "10.0.0.2:11311")];
        let b = [("peer", "peer-\"3\":11311")];
        assert_eq!(v("memha_replication_peer_up", &a), Some(1.0));
        assert_eq!(v("memha_replication_peer_up", &b), Some(0.0));
        let state = |peer: &str, st: &str| {
            v(
                "memha_replication_peer_state",
                &[("peer", peer), ("state", st)],
            )
        };
        assert_eq!(state("10.0.0.2:11311", "streaming"), Some(1.0));
        assert_eq!(state("10.0.0.2:11311", "syncing"), Some(0.0));
        assert_eq!(state("10.0.0.2:11311", "connecting"), Some(0.0));
        assert_eq!(state("peer-\"3\":11311", "connecting"), Some(1.0));
        assert!(text.contains(
            "memha_replication_peer_state{peer=\"peer-\\\"3\\\":11311\",state=\"connecting\"} 1\n"
        ));
        assert_eq!(
            v("memha_replication_peer_applied_writes_total", &a),
            Some(40.0)
        );
        assert_eq!(
            v("memha_replication_peer_stale_writes_total", &a),
            Some(3.0)
        );
        assert_eq!(
            v("memha_replication_peer_rejected_writes_total", &a),
            Some(1.0)
        );
        assert_eq!(v("memha_replication_peer_full_syncs_total", &a), Some(1.0));
        assert_eq!(
            v("memha_replication_peer_partial_syncs_total", &a),
            Some(1.0)
        );
        assert_eq!(v("memha_replication_peer_connects_total", &a), Some(2.0));
        assert_eq!(v("memha_replication_peer_connects_total", &b), Some(0.0));
        assert_eq!(
            v("memha_replication_peer_last_full_sync_seconds", &a),
            Some(1.5)
        );
        assert_eq!(
            v("memha_replication_peer_clock_skew_seconds", &a),
            Some(-0.25)
        );
        assert_eq!(v("memha_replication_peer_last_seen_seconds", &a), Some(0.3));
        assert_eq!(v("memha_replication_peer_last_seen_seconds", &b), None);
        // Node 2's newer link stands for it.
        let lag = |id| {
            v(
                "memha_replication_subscriber_lag_writes",
                &[("node_id", id)],
            )
        };
        let acked = |id| v("memha_replication_subscriber_acked_seq", &[("node_id", id)]);
        assert_eq!((lag("2"), acked("2")), (Some(1.0), Some(9.0)));
        assert_eq!((lag("3"), acked("3")), (Some(0.0), Some(10.0)));
        for name in [
            "memha_replication_backlog_dropped_total",
            "memha_replication_peer_applied_writes_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} counter\n")), "{name}");
        }
        assert!(text.contains("# TYPE memha_replication_peer_up gauge\n"));
    }

    #[test]
    fn replication_with_a_peer_listed_twice_stays_valid() {
        let mut r = repl_stats();
        r.peers.push(r.peers[0].clone());
        r.peers[0].state = "an unknown state";
        let mut s = snapshot();
        s.replication = Some(r);
        let text = render(&s);
        validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            sample_value(
                &text,
                "memha_replication_peer_state",
                &[("peer", "10.0.0.2:11311"), ("state", "an unknown state")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn exposition_is_well_formed() {
        let text = render(&snapshot());
        let n = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // Every scalar, the build info, 9 per-class families × 2 classes,
        // memha_replication_enabled and memha_vrrp_enabled.
        assert_eq!(n, SCALARS.len() + 1 + 9 * 2 + 1 + 1);
        for sc in SCALARS {
            assert!(text.contains(&format!("# TYPE {} ", sc.metric)));
        }
        assert_eq!(
            sample_value(&text, "memha_commands_total", &[("command", "get")]),
            Some(7.0)
        );
        assert_eq!(sample_value(&text, "memha_get_hits_total", &[]), Some(5.0));
        assert_eq!(sample_value(&text, "memha_items", &[]), Some(3.0));
        assert_eq!(
            sample_value(&text, "memha_memory_limit_bytes", &[]),
            Some(67108864.0)
        );
        assert_eq!(
            sample_value(&text, "memha_cpu_system_seconds_total", &[]),
            Some(1e-7)
        );
        assert_eq!(
            sample_value(
                &text,
                "memha_class_items",
                &[("chunk_size", "152"), ("class", "3")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "memha_build_info",
                &[("version", "1.6.45-memha-\"test\"\\")]
            ),
            Some(1.0)
        );
        assert_eq!(sample_value(&text, "memha_up", &[]), Some(1.0));
        assert_eq!(sample_value(&text, "memha_ready", &[]), Some(1.0));
    }

    #[test]
    fn no_classes_still_declares_the_families() {
        let mut s = snapshot();
        s.classes.clear();
        let text = render(&s);
        assert_eq!(validate(&text), Ok(SCALARS.len() + 1 + 1 + 1));
        assert!(text.contains("# TYPE memha_class_items gauge"));
    }

    #[test]
    fn validator_rejects_bad_expositions() {
        let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\n";
        assert_eq!(validate(ok), Ok(1));
        for bad in [
            "a 1\n",                                              // no HELP/TYPE
            "# HELP a x\n# HELP a x\n# TYPE a gauge\na 1\n",      // two HELPs
            "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",  // two TYPEs
            "# HELP a x\n# TYPE a gauge\na\n",                    // no value
            "# HELP a x\n# TYPE a gauge\na one\n",                // bad value
            "# HELP a x\n# TYPE a gauge\na{k=v} 1\n",             // unquoted
            "# HELP a x\n# TYPE a gauge\na{k=\"v} 1\n",           // unterminated
            "# HELP a x\n# TYPE a gauge\na 1\na 2\n",             // repeated series
            "# HELP a x\n# TYPE a counter\na 1\n",                // counter sans _total
            "# HELP a x\n# TYPE a gauge\na 1\n# HELP a y\n",      // HELP after samples
            "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",               // bad name
            "# HELP a x\n# TYPE a gauge\na 1",                    // no final newline
            "# HELP a x\n# TYPE a gauge\na{k=\"1\",k=\"2\"} 1\n", // repeated label
        ] {
            assert!(validate(bad).is_err(), "accepted {bad:?}");
        }
    }
}

//! One consistent-enough copy of everything the admin endpoint reports, taken once per
//! request and rendered as metrics, JSON or HTML.
//!
//! [`SCALARS`] is the one list of single-valued figures: each has its `stats` name (the key
//! in `status.json`) and its Prometheus name, type and help. A figure added to `stats`
//! should be added here too; the tests check every scalar renders in both forms.

use std::sync::atomic::Ordering::Relaxed;

use memha_repl::node::{PeerStats, ReplStats};
use memha_server::shared::{unix_now, Stop};
use memha_server::stats::Counters;
use memha_server::vrrp_view::{VrrpInstanceView, VrrpView};
use memha_server::Shared;
use memha_store::{ClassStats, StoreStats};

/// What the figures were when the request came in.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: &'static str,
    pub pid: u32,
    /// Unix seconds now and at start.
    pub now: u64,
    pub started: u64,
    pub uptime: u64,
    /// What this node is in its cluster: "single node", "replicating with N peers", with
    /// VRRP e.g. "master of VI_1 (VRRP), replicating with 1 peer" ([`Snapshot::role_for`]).
    pub role: String,
    pub ready: bool,
    pub stopping: bool,
    pub cpu_user: f64,
    pub cpu_system: f64,
    pub threads: u64,
    pub max_connections: u64,
    pub connections: u64,
    pub counters: Counters,
    pub store: StoreStats,
    /// Size classes holding items or having counted an event (as `stats items`).
    pub classes: Vec<ClassStats>,
    /// The replication figures ([`Replicator::stats`](memha_repl::node::Replicator::stats)),
    /// `None` when the node does not replicate.
    pub replication: Option<ReplStats>,
    /// The VRRP instances as the supervisor last reported them
    /// ([`Shared::vrrp`](memha_server::Shared::vrrp)), `None` when VRRP is not configured.
    pub vrrp: Option<VrrpView>,
}

impl Snapshot {
    /// Gather the figures. Walks every item for the per-class table (as `stats items`
    /// does), so call it off the async workers (`spawn_blocking`).
    pub fn take(shared: &Shared) -> Snapshot {
        let now = unix_now();
        let (cpu_user, cpu_system) = memha_server::stats_cmd::rusage();
        let stopping = *shared.stop_signal().borrow() != Stop::Running;
        let replication = shared.repl.as_ref().map(|r| r.stats());
        let vrrp = shared.vrrp.lock().clone();
        Snapshot {
            version: memha_server::VERSION,
            pid: std::process::id(),
            now,
            started: shared.started_unix,
            uptime: shared.started.elapsed().as_secs(),
            role: Snapshot::role_for(replication.as_ref(), vrrp.as_ref()),
            ready: shared.ready.load(Relaxed),
            stopping,
            cpu_user,
            cpu_system,
            threads: shared.config.threads as u64,
            max_connections: shared.config.max_connections as u64,
            connections: shared.conns.load(Relaxed) as u64,
            counters: shared.stats.snapshot(),
            store: shared.store.stats(),
            classes: shared.store.class_stats(now as u32),
            replication,
            vrrp,
        }
    }

    /// The role line. Without VRRP: "single node" without replication, "replicating with N
    /// peers" with. With VRRP, each instance's state (lowercase, as `State::name` says it)
    /// comes first: "master of VI_1 (VRRP)", "backup of VI_1, master of VI_2 (VRRP),
    /// replicating with 1 peer", "fault of VI_1 (VRRP)", "init of VI_1 (VRRP)"; before the
    /// supervisor's first report, "VRRP starting".
    pub fn role_for(replication: Option<&ReplStats>, vrrp: Option<&VrrpView>) -> String {
        let repl = replication.map(|r| match r.peers.len() {
            1 => "replicating with 1 peer".to_string(),
            n => format!("replicating with {n} peers"),
        });
        let Some(view) = vrrp else {
            return repl.unwrap_or_else(|| "single node".to_string());
        };
        let mut role = if view.instances.is_empty() {
            "VRRP starting".to_string()
        } else {
            let states: Vec<String> = view
                .instances
                .iter()
                .map(|i| {
                    let state = vrrp_state(i).unwrap_or_else(|| "unknown".to_string());
                    format!("{state} of {}", i.name)
                })
                .collect();
            format!("{} (VRRP)", states.join(", "))
        };
        if let Some(repl) = repl {
            role.push_str(", ");
            role.push_str(&repl);
        }
        role
    }

    /// The node's state for people: "stopping", "ready", "syncing" (replicating and not
    /// ready yet: the first sync from the peers is under way) or "not ready".
    pub fn state(&self) -> &'static str {
        if self.stopping {
            "stopping"
        } else if self.ready {
            "ready"
        } else if self.replication.is_some() {
            "syncing"
        } else {
            "not ready"
        }
    }

    /// Share of gets that hit, `None` before the first get.
    pub fn hit_ratio(&self) -> Option<f64> {
        let c = &self.counters;
        let all = c.get_hits + c.get_misses;
        (all > 0).then(|| c.get_hits as f64 / all as f64)
    }

    /// Age of the oldest item of a class, seconds (`stats items` `age`).
    pub fn class_age(&self, c: &ClassStats) -> u64 {
        (self.now as u32).saturating_sub(c.oldest_atime) as u64
    }
}

/// An instance's VRRP state in lowercase, as the metrics label it: "init", "backup",
/// "master", "fault" ([`VRRP_STATES`](crate::metrics::VRRP_STATES)); `None` when the report
/// has none.
pub fn vrrp_state(inst: &VrrpInstanceView) -> Option<String> {
    inst.get("state").map(str::to_ascii_lowercase)
}

/// An instance's state for people: the lowercase state, then a link or health problem if
/// the report shows one: "master", "backup", "fault (link down, unhealthy)".
pub fn vrrp_state_line(inst: &VrrpInstanceView) -> String {
    let mut line = vrrp_state(inst).unwrap_or_else(|| "unknown".to_string());
    let mut why = Vec::new();
    if vrrp_num(inst, "link_up") == Some(0) {
        why.push("link down");
    }
    if vrrp_num(inst, "healthy") == Some(0) {
        why.push("unhealthy");
    }
    if !why.is_empty() {
        line.push_str(&format!(" ({})", why.join(", ")));
    }
    line
}

/// A numeric figure of a VRRP instance's report, `None` when missing or not a number.
pub fn vrrp_num(inst: &VrrpInstanceView, key: &str) -> Option<u64> {
    inst.get(key)?.parse().ok()
}

/// A subscriber of this node's stream, as reported: one per peer node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub node_id: u16,
    /// Its address as this node sees it (the peer's outgoing socket).
    pub addr: String,
    /// Highest sequence of this node's stream the subscriber acknowledged.
    pub acked_seq: u64,
    /// Writes of this node's stream not acknowledged yet: backlog last seq − acked seq.
    pub lag_writes: u64,
}

/// The subscribers of `r`, one per node id, by node id. A peer that reconnects can show
/// twice for a moment (the new link registers before the old one is gone); the link that
/// acknowledged the most stands for it, so a series never repeats.
pub fn subscribers(r: &ReplStats) -> Vec<Subscriber> {
    let mut out: Vec<Subscriber> = Vec::with_capacity(r.subscribers.len());
    for s in &r.subscribers {
        let sub = Subscriber {
            node_id: s.node_id,
            addr: s.addr.clone(),
            acked_seq: s.acked_seq,
            lag_writes: r.backlog_last_seq.saturating_sub(s.acked_seq),
        };
        match out.iter_mut().find(|o| o.node_id == s.node_id) {
            Some(o) if o.acked_seq >= s.acked_seq => {}
            Some(o) => *o = sub,
            None => out.push(sub),
        }
    }
    out.sort_by_key(|s| s.node_id);
    out
}

/// How far `peer` is behind this node's stream (writes it has not acknowledged), when it
/// is subscribed to it; links are one-way, so this comes from its subscription here.
pub fn peer_lag(r: &ReplStats, peer: &PeerStats) -> Option<u64> {
    let id = peer.node_id?;
    subscribers(r)
        .into_iter()
        .find(|s| s.node_id == id)
        .map(|s| s.lag_writes)
}

/// Seconds since the last frame from `peer`, `None` when it was never connected.
pub fn peer_last_seen_seconds(peer: &PeerStats) -> Option<f64> {
    (peer.connects > 0).then_some(peer.last_seen_ms as f64 / 1000.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A figure's value: counts stay integers in JSON, CPU time is fractional.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(v) => write!(f, "{v}"),
            Num::Float(v) => write!(f, "{v}"),
        }
    }
}

/// One single-valued figure.
pub struct Scalar {
    /// Its name in memcached's `stats` (the key in `status.json`).
    pub stat: &'static str,
    /// Prometheus metric name. Consecutive entries may share one with different labels.
    pub metric: &'static str,
    /// One fixed label, e.g. `("command", "get")`, or `("", "")` for none.
    pub label: (&'static str, &'static str),
    pub kind: Kind,
    /// Prometheus help text (the first entry's, where several share a metric).
    pub help: &'static str,
    pub value: fn(&Snapshot) -> Num,
}

macro_rules! scalars {
    ($($stat:literal => $metric:literal $({$lk:literal = $lv:literal})? , $kind:ident, $help:literal, |$s:ident| $e:expr;)*) => {
        /// Every single-valued figure, in exposition order.
        pub const SCALARS: &[Scalar] = &[$(Scalar {
            stat: $stat,
            metric: $metric,
            label: scalars!(@label $($lk, $lv)?),
            kind: Kind::$kind,
            help: $help,
            value: |$s: &Snapshot| Num::from($e),
        },)*];
    };
    (@label) => { ("", "") };
    (@label $k:literal, $v:literal) => { ($k, $v) };
}

impl From<u64> for Num {
    fn from(v: u64) -> Num {
        Num::Int(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Num {
        Num::Float(v)
    }
}

impl From<bool> for Num {
    fn from(v: bool) -> Num {
        Num::Int(v as u64)
    }
}

scalars! {
    "up" => "memha_up", Gauge, "1 while the server answers.", |_s| 1u64;
    "ready" => "memha_ready", Gauge,
        "1 while the node is ready for traffic (0 while stopping, and while replication syncs).",
        |s| s.ready && !s.stopping;
    "uptime" => "memha_uptime_seconds", Gauge, "Seconds since the server started.", |s| s.uptime;
    "started" => "memha_start_time_seconds", Gauge, "Unix time the server started.", |s| s.started;
    "rusage_user" => "memha_cpu_user_seconds_total", Counter, "User CPU time used by the process.",
        |s| s.cpu_user;
    "rusage_system" => "memha_cpu_system_seconds_total", Counter,
        "System CPU time used by the process.", |s| s.cpu_system;
    "threads" => "memha_threads", Gauge, "Worker threads (-t).", |s| s.threads;
    "max_connections" => "memha_connections_max", Gauge, "Connection limit (-c).",
        |s| s.max_connections;
    "curr_connections" => "memha_connections", Gauge, "Open client connections.",
        |s| s.connections;
    "total_connections" => "memha_connections_total", Counter, "Client connections accepted.",
        |s| s.counters.total_connections;
    "rejected_connections" => "memha_connections_rejected_total", Counter,
        "Client connections refused because of the connection limit.",
        |s| s.counters.rejected_connections;
    "cmd_get" => "memha_commands_total"{"command" = "get"}, Counter,
        "Commands processed, by kind (stats cmd_*). Meta commands count under the kind they \
         act as (mg = get, ms = set, …), so command=\"meta\" stays 0, as stats cmd_meta.",
        |s| s.counters.cmd_get;
    "cmd_set" => "memha_commands_total"{"command" = "set"}, Counter, "", |s| s.counters.cmd_set;
    "cmd_flush" => "memha_commands_total"{"command" = "flush"}, Counter, "",
        |s| s.counters.cmd_flush;
    "cmd_touch" => "memha_commands_total"{"command" = "touch"}, Counter, "",
        |s| s.counters.cmd_touch;
    "cmd_meta" => "memha_commands_total"{"command" = "meta"}, Counter, "", |_s| 0u64;
    "get_hits" => "memha_get_hits_total", Counter, "Gets that found the key.",
        |s| s.counters.get_hits;
    "get_misses" => "memha_get_misses_total", Counter,
        "Gets that did not find a live item (includes expired and flushed).",
        |s| s.counters.get_misses;
    "get_expired" => "memha_get_expired_total", Counter, "Gets that found an expired item.",
        |s| s.counters.get_expired;
    "get_flushed" => "memha_get_flushed_total", Counter,
        "Gets that found an item hidden by flush_all.", |s| s.counters.get_flushed;
    "delete_hits" => "memha_delete_hits_total", Counter, "Deletes that removed an item.",
        |s| s.counters.delete_hits;
    "delete_misses" => "memha_delete_misses_total", Counter, "Deletes of a missing key.",
        |s| s.counters.delete_misses;
    "incr_hits" => "memha_incr_hits_total", Counter, "Increments of an existing item.",
        |s| s.counters.incr_hits;
    "incr_misses" => "memha_incr_misses_total", Counter, "Increments of a missing key.",
        |s| s.counters.incr_misses;
    "decr_hits" => "memha_decr_hits_total", Counter, "Decrements of an existing item.",
        |s| s.counters.decr_hits;
    "decr_misses" => "memha_decr_misses_total", Counter, "Decrements of a missing key.",
        |s| s.counters.decr_misses;
    "cas_hits" => "memha_cas_hits_total", Counter, "CAS writes that matched and stored.",
        |s| s.counters.cas_hits;
    "cas_misses" => "memha_cas_misses_total", Counter, "CAS writes to a missing key.",
        |s| s.counters.cas_misses;
    "cas_badval" => "memha_cas_badval_total", Counter,
        "CAS writes refused because the item had changed.", |s| s.counters.cas_badval;
    "touch_hits" => "memha_touch_hits_total", Counter, "Touches of an existing item.",
        |s| s.counters.touch_hits;
    "touch_misses" => "memha_touch_misses_total", Counter, "Touches of a missing key.",
        |s| s.counters.touch_misses;
    "store_too_large" => "memha_store_too_large_total", Counter,
        "Writes refused because the item was larger than -I.", |s| s.counters.store_too_large;
    "store_no_memory" => "memha_store_no_memory_total", Counter,
        "Writes refused for lack of memory (-M, or nothing evictable).",
        |s| s.counters.store_no_memory;
    "auth_cmds" => "memha_auth_commands_total", Counter, "Authentication attempts (-Y).",
        |s| s.counters.auth_cmds;
    "auth_errors" => "memha_auth_errors_total", Counter, "Failed authentication attempts.",
        |s| s.counters.auth_errors;
    "idle_kicks" => "memha_idle_kicks_total", Counter,
        "Connections closed for idleness (-o idle_timeout).", |s| s.counters.idle_kicks;
    "malformed_requests" => "memha_malformed_requests_total", Counter,
        "Requests that could not be parsed.", |s| s.counters.malformed_requests;
    "conn_yields" => "memha_conn_yields_total", Counter,
        "Times a connection yielded to others after -R requests.", |s| s.counters.conn_yields;
    "bytes_read" => "memha_bytes_read_total", Counter, "Bytes read from clients.",
        |s| s.counters.bytes_read;
    "bytes_written" => "memha_bytes_written_total", Counter, "Bytes written to clients.",
        |s| s.counters.bytes_written;
    "limit_maxbytes" => "memha_memory_limit_bytes", Gauge, "Memory budget for the cache (-m).",
        |s| s.store.memory_limit;
    "memory_used" => "memha_memory_used_bytes", Gauge,
        "Memory the cache really holds: item allocations plus hash tables.",
        |s| s.store.memory_used;
    "hash_bytes" => "memha_hash_table_bytes", Gauge,
        "Memory held by the hash tables (part of memha_memory_used_bytes).",
        |s| s.store.table_bytes;
    "store_shards" => "memha_store_shards", Gauge, "Lock shards of the store.", |s| s.store.shards;
    "curr_items" => "memha_items", Gauge, "Items stored (including expired ones not yet reclaimed).",
        |s| s.store.curr_items;
    "bytes" => "memha_item_bytes", Gauge, "Size of the stored items (header, key and value).",
        |s| s.store.bytes;
    "total_items" => "memha_items_stored_total", Counter, "Items ever stored.",
        |s| s.store.total_items;
    "evictions" => "memha_evictions_total", Counter, "Live items evicted to make room.",
        |s| s.store.evictions;
    "reclaimed" => "memha_reclaimed_total", Counter,
        "Expired or flushed items whose memory was reused.", |s| s.store.reclaimed;
    "expired_unfetched" => "memha_expired_unfetched_total", Counter,
        "Items that expired without ever being read.", |s| s.store.expired_unfetched;
    "evicted_unfetched" => "memha_evicted_unfetched_total", Counter,
        "Items evicted without ever being read.", |s| s.store.evicted_unfetched;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_line() {
        use crate::metrics::tests::{repl_stats, vrrp_view};
        let mut r = repl_stats();
        // Without VRRP, the strings of before.
        assert_eq!(Snapshot::role_for(None, None), "single node");
        assert_eq!(
            Snapshot::role_for(Some(&r), None),
            "replicating with 2 peers"
        );
        let mut view = vrrp_view();
        assert_eq!(
            Snapshot::role_for(None, Some(&view)),
            "master of VI_1, init of VI_2 (VRRP)"
        );
        view.instances.truncate(1);
        r.peers.truncate(1);
        assert_eq!(
            Snapshot::role_for(Some(&r), Some(&view)),
            "master of VI_1 (VRRP), replicating with 1 peer"
        );
        for (state, role) in [
            ("BACKUP", "backup of VI_1 (VRRP)"),
            ("FAULT", "fault of VI_1 (VRRP)"),
            ("INIT", "init of VI_1 (VRRP)"),
        ] {
            view.instances[0].values[0].1 = state.into();
            assert_eq!(Snapshot::role_for(None, Some(&view)), role);
        }
        view.instances[0].values.remove(0);
        assert_eq!(
            Snapshot::role_for(None, Some(&view)),
            "unknown of VI_1 (VRRP)"
        );
        assert_eq!(
            Snapshot::role_for(Some(&r), Some(&VrrpView::default())),
            "VRRP starting, replicating with 1 peer"
        );
    }

    #[test]
    fn vrrp_state_line_says_why() {
        let view = crate::metrics::tests::vrrp_view();
        assert_eq!(vrrp_state_line(&view.instances[0]), "master");
        assert_eq!(vrrp_state_line(&view.instances[1]), "init (link down)");
        let mut sick = view.instances[1].clone();
        sick.values.retain(|(k, _)| k != "state" && k != "healthy");
        sick.values.push(("healthy".into(), "0".into()));
        assert_eq!(vrrp_state_line(&sick), "unknown (link down, unhealthy)");
    }

    #[test]
    fn stat_names_are_unique_and_shared_metrics_are_adjacent() {
        let mut stats = std::collections::HashSet::new();
        for s in SCALARS {
            assert!(stats.insert(s.stat), "duplicate stat {}", s.stat);
        }
        let mut closed = std::collections::HashSet::new();
        let mut prev = "";
        for s in SCALARS {
            if s.metric != prev {
                assert!(closed.insert(s.metric), "{} is split", s.metric);
                assert!(!s.help.is_empty(), "{} has no help", s.metric);
                prev = s.metric;
            }
        }
    }
}

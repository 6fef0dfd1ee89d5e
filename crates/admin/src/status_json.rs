//! `/status.json`: the status page's figures for programs (`memha status`).
//!
//! ```json
//! { "version": "…", "pid": 1, "time": 1700000000, "role": "single node", "ready": true,
//!   "state": "ready",                       // or "syncing", "stopping", "not ready"
//!   "hit_ratio": 0.93,                      // null before the first get
//!   "stats": { "uptime": 5, "curr_items": 3, "get_hits": 10, … },  // stats names
//!   "classes": [ { "class": 1, "chunk_size": 96, "items": 2, "bytes": 160, … } ],
//!   "replication": null,                    // null when the node does not replicate
//!   "vrrp": null }                          // filled in when VRRP exists
//! ```
//!
//! With replication, `replication` holds the figures `/metrics` exports under
//! `memha_replication_*`, under the same names less prefix and unit suffixes:
//!
//! ```json
//! { "node_id": 1, "ready": true, "epoch": "9f…",          // epoch: hex, it is 64-bit
//!   "backlog": { "bytes": 120, "limit_bytes": 67108864, "first_seq": 1, "last_seq": 2,
//!                "dropped": 0, "unsendable": 0 },
//!   "needs_resync": 0, "auth_failures": 0, "protocol_errors": 0,
//!   "full_syncs_served": 1, "partial_syncs_served": 0,
//!   "peers": [ { "addr": "10.0.0.2:11311", "node_id": 2,  // null before the handshake
//!                "state": "streaming", "up": true, "applied_seq": 7,
//!                "lag_writes": 0,                        // null while it does not subscribe
//!                "applied_writes": 7, "stale_writes": 0, "rejected_writes": 0,
//!                "full_syncs": 1, "partial_syncs": 0, "connects": 1,
//!                "last_full_sync_seconds": 0.002, "clock_skew_seconds": 0.0,
//!                "last_seen_seconds": 0.4,               // null before the first link
//!                "last_error": null } ],                 // or the last link failure
//!   "subscribers": [ { "node_id": 2, "addr": "10.0.0.2:40312", "acked_seq": 2,
//!                      "lag_writes": 0 } ] }
//! ```
//!
//! Keys are only ever added; `stats` holds every figure of [`SCALARS`] under its memcached
//! `stats` name.

use serde_json::{json, Map, Value};

use memha_repl::node::ReplStats;

use crate::snapshot::{self, Num, Snapshot, SCALARS};

pub const CONTENT_TYPE: &str = "application/json";

pub fn render(s: &Snapshot) -> String {
    let mut stats = Map::new();
    for sc in SCALARS {
        let v = match (sc.value)(s) {
            Num::Int(v) => json!(v),
            Num::Float(v) => json!(v),
        };
        stats.insert(sc.stat.to_string(), v);
    }
    let classes: Vec<Value> = s
        .classes
        .iter()
        .map(|c| {
            json!({
                "class": c.class,
                "chunk_size": c.chunk_size,
                "items": c.number,
                "bytes": c.bytes,
                "age_seconds": s.class_age(c),
                "evicted": c.evicted,
                "evicted_nonzero": c.evicted_nonzero,
                "evicted_unfetched": c.evicted_unfetched,
                "expired_unfetched": c.expired_unfetched,
                "reclaimed": c.reclaimed,
                "outofmemory": c.outofmemory,
            })
        })
        .collect();
    let doc = json!({
        "version": s.version,
        "pid": s.pid,
        "time": s.now,
        "role": s.role,
        "ready": s.ready && !s.stopping,
        "state": s.state(),
        "stopping": s.stopping,
        "hit_ratio": s.hit_ratio(),
        "stats": Value::Object(stats),
        "classes": classes,
        "replication": s.replication.as_ref().map_or(Value::Null, replication),
        "vrrp": Value::Null,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// The `replication` object.
pub fn replication(r: &ReplStats) -> Value {
    let peers: Vec<Value> = r
        .peers
        .iter()
        .map(|p| {
            json!({
                "addr": p.addr,
                "node_id": p.node_id,
                "state": p.state,
                "up": p.state == "streaming",
                "applied_seq": p.applied_seq,
                "lag_writes": snapshot::peer_lag(r, p),
                "applied_writes": p.applied,
                "stale_writes": p.stale,
                "rejected_writes": p.rejected,
                "full_syncs": p.full_syncs,
                "partial_syncs": p.partial_syncs,
                "connects": p.connects,
                "last_full_sync_seconds": p.last_full_sync_ms as f64 / 1000.0,
                "clock_skew_seconds": p.clock_skew_ms as f64 / 1000.0,
                "last_seen_seconds": snapshot::peer_last_seen_seconds(p),
                "last_error": (!p.last_error.is_empty()).then_some(&p.last_error),
            })
        })
        .collect();
    let subscribers: Vec<Value> = snapshot::subscribers(r)
        .into_iter()
        .map(|s| {
            json!({
                "node_id": s.node_id,
                "addr": s.addr,
                "acked_seq": s.acked_seq,
                "lag_writes": s.lag_writes,
            })
        })
        .collect();
    json!({
        "node_id": r.node_id,
        "ready": r.ready,
        "epoch": format!("{:016x}", r.epoch),
        "backlog": {
            "bytes": r.backlog_bytes,
            "limit_bytes": r.backlog_max_bytes,
            "first_seq": r.backlog_first_seq,
            "last_seq": r.backlog_last_seq,
            "dropped": r.backlog_dropped,
            "unsendable": r.unsendable,
        },
        "needs_resync": r.needs_resync,
        "auth_failures": r.auth_failures,
        "protocol_errors": r.protocol_errors,
        "full_syncs_served": r.full_syncs_served,
        "partial_syncs_served": r.partial_syncs_served,
        "peers": peers,
        "subscribers": subscribers,
    })
}

//! `/status.json`: the status page's figures for programs (`memha status`).
//!
//! ```json
//! { "version": "…", "pid": 1, "time": 1700000000, "role": "single node", "ready": true,
//!   "state": "ready",                       // or "syncing", "stopping", "not ready"
//!   "hit_ratio": 0.93,                      // null before the first get
//!   "stats": { "uptime": 5, "curr_items": 3, "get_hits": 10, … },  // stats names
//!   "classes": [ { "class": 1, "chunk_size": 96, "items": 2, "bytes": 160, … } ],
//!   "replication": null,                    // null when the node does not replicate
//!   "vrrp": null }                          // null when VRRP is not configured
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
//! With VRRP, `vrrp` is an array with one object per instance: its `name`, then every
//! figure of the supervisor's report (as `stats vrrp` prints it) under the report's key,
//! numbers as JSON numbers; `state` as `State::name` says it, `master` an address or
//! `"none"`, `vips` comma-separated. `[]` until the supervisor's first report.
//!
//! ```json
//! [ { "name": "VI_1", "state": "MASTER", "interface": "eth0", "vrid": 51, "version": 3,
//!     "priority": 150, "effective_priority": 150, "advert_int_ms": 1000,
//!     "primary_ip": "10.0.0.1", "master": "10.0.0.1", "vips": "10.0.0.100,10.0.0.101",
//!     "holding_vips": 1, "healthy": 1, "link_up": 1, "transitions": 2, "became_master": 1,
//!     "adverts_sent": 1200, "adverts_received": 7, …, "dropped_total": 0,
//!     "dropped_checksum": 0, … } ]
//! ```
//!
//! Keys are only ever added; `stats` holds every figure of [`SCALARS`] under its memcached
//! `stats` name.

use serde_json::{json, Map, Value};

use memha_repl::node::ReplStats;
use memha_server::vrrp_view::VrrpView;

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
        "vrrp": s.vrrp.as_ref().map_or(Value::Null, vrrp),
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
        "sync_acked": r.sync_acked,
        "sync_timeouts": r.sync_timeouts,
        "sync_no_peer": r.sync_no_peer,
        "sync_degraded": r.sync_degraded,
        "sync_degraded_writes": r.sync_degraded_writes,
        "holding": r.holding,
        "holds": r.holds,
        "client_conns": r.client_conns,
        "client_conns_shared": r.client_conns_shared,
        "peer_client_conns": r.peer_client_conns,
        "peers": peers,
        "subscribers": subscribers,
    })
}

/// Report keys whose values are text even when they look like a number (an interface may be
/// called `1`).
const VRRP_TEXT_KEYS: [&str; 5] = ["state", "interface", "primary_ip", "master", "vips"];

/// The `vrrp` array.
pub fn vrrp(view: &VrrpView) -> Value {
    let instances = view
        .instances
        .iter()
        .map(|inst| {
            let mut o = Map::new();
            o.insert("name".to_string(), json!(inst.name));
            for (k, v) in &inst.values {
                if o.contains_key(k) {
                    continue; // the first wins, as in `VrrpInstanceView::get`
                }
                let value = match v.parse::<u64>() {
                    Ok(n) if !VRRP_TEXT_KEYS.contains(&k.as_str()) => json!(n),
                    _ => json!(v),
                };
                o.insert(k.clone(), value);
            }
            Value::Object(o)
        })
        .collect();
    Value::Array(instances)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{snapshot, vrrp_view, DROP_REASONS};

    #[test]
    fn vrrp_array() {
        let single: Value = serde_json::from_str(&render(&snapshot())).unwrap();
        assert!(single["vrrp"].is_null());
        assert!(single.get("vrrp").is_some());

        let mut s = snapshot();
        s.vrrp = Some(vrrp_view());
        s.role = Snapshot::role_for(None, s.vrrp.as_ref());
        let doc: Value = serde_json::from_str(&render(&s)).unwrap();
        assert_eq!(doc["role"], "master of VI_1, init of VI_2 (VRRP)");
        let a = doc["vrrp"].as_array().unwrap();
        assert_eq!(a.len(), 2);
        let vi_1 = &a[0];
        // name + every key of the report, in the report's order.
        assert_eq!(vi_1.as_object().unwrap().len(), 1 + 30 + DROP_REASONS.len());
        assert_eq!(
            vi_1,
            &serde_json::from_str::<Value>(
                r#"{
                "name": "VI_1", "state": "MASTER", "interface": "eth0", "vrid": 51,
                "version": 3, "priority": 150, "effective_priority": 150,
                "advert_int_ms": 1000, "primary_ip": "10.0.0.1", "master": "10.0.0.1",
                "vips": "10.0.0.100,10.0.0.101", "holding_vips": 1, "healthy": 1,
                "link_up": 1, "transitions": 2, "became_master": 1, "adverts_sent": 1200,
                "adverts_received": 7, "priority0_sent": 0, "priority0_received": 1,
                "garps_sent": 10, "silent_master_takeovers": 1, "clients_reset": 12,
                "vip_adds": 2, "vip_removes": 0, "send_errors": 3,
                "netlink_errors": 0, "unknown_peer": 0, "hooks_started": 4,
                "hooks_failed": 1, "dropped_total": 14,
                "dropped_too_short": 0, "dropped_ip_header": 1, "dropped_not_vrrp": 0,
                "dropped_ttl": 1, "dropped_version": 0, "dropped_type": 1,
                "dropped_no_addresses": 0, "dropped_length": 1, "dropped_checksum": 5,
                "dropped_vrid": 1, "dropped_auth_type": 0, "dropped_auth_password": 1,
                "dropped_interval": 0, "dropped_address_list": 1
                }"#
            )
            .unwrap()
        );
        let vi_2 = &a[1];
        assert_eq!(vi_2["state"], "INIT");
        assert_eq!(vi_2["master"], "none");
        assert_eq!(vi_2["priority"], "x"); // not a number: kept as sent
        assert!(vi_2.get("garps_sent").is_none());

        // Text keys stay text even when they look like numbers; the first of a repeated
        // key wins.
        let mut view = vrrp_view();
        view.instances[0].values[1].1 = "7".into();
        view.instances[0].values.push(("vrid".into(), "9".into()));
        assert_eq!(vrrp(&view)[0]["interface"], "7");
        assert_eq!(vrrp(&view)[0]["vrid"], 51);
        assert_eq!(vrrp(&VrrpView::default()), json!([]));
    }
}

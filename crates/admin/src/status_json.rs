//! `/status.json`: the status page's figures for programs (`memha status`).
//!
//! ```json
//! { "version": "…", "pid": 1, "time": 1700000000, "role": "single node", "ready": true,
//!   "hit_ratio": 0.93,                      // null before the first get
//!   "stats": { "uptime": 5, "curr_items": 3, "get_hits": 10, … },  // stats names
//!   "classes": [ { "class": 1, "chunk_size": 96, "items": 2, "bytes": 160, … } ],
//!   "replication": null,                    // filled in when replication exists
//!   "vrrp": null }                          // filled in when VRRP exists
//! ```
//!
//! Keys are only ever added; `stats` holds every figure of [`SCALARS`] under its memcached
//! `stats` name.

use serde_json::{json, Map, Value};

use crate::snapshot::{Num, Snapshot, SCALARS};

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
        "stopping": s.stopping,
        "hit_ratio": s.hit_ratio(),
        "stats": Value::Object(stats),
        "classes": classes,
        "replication": Value::Null,
        "vrrp": Value::Null,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

//! The client side of `memha status`: fetch `/status.json` with a plain blocking HTTP GET
//! and render it as a table for a terminal.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::page::{bytes, duration};

/// Where `memha status` looks when no `--addr` is given (the config file's default).
pub const DEFAULT_ADDR: &str = "127.0.0.1:11312";

const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (the document is a few KiB).
const MAX_ANSWER: u64 = 16 << 20;

/// Fetch `http://ADDR/status.json` and render it for a terminal. `addr` is `HOST:PORT`
/// (an `http://` prefix and a trailing `/` are allowed). The error says what failed, ready
/// to print after `memha status: `.
pub fn status_table(addr: &str) -> Result<String, String> {
    let addr = addr.trim();
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    let addr = addr.strip_suffix('/').unwrap_or(addr);
    let body = fetch(addr, "/status.json")?;
    let doc: Value = serde_json::from_str(&body)
        .map_err(|e| format!("{addr} did not answer a status document: {e}"))?;
    Ok(render_table(addr, &doc))
}

fn fetch(addr: &str, path: &str) -> Result<String, String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr:?} (want HOST:PORT): {e}"))?
        .collect();
    let mut last = format!("{addr} resolves to no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to the admin endpoint at {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: std::io::Error| format!("admin endpoint at {addr}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         User-Agent: memha-status\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    if status != 200 {
        return Err(format!(
            "{addr}{path} answered HTTP {status}: {}",
            body.lines().next().unwrap_or("").trim()
        ));
    }
    Ok(body.to_string())
}

/// Render a `/status.json` document (see the `status_json` module) as a terminal table.
/// Missing fields show as `?`, so a newer server's document still renders.
pub fn render_table(addr: &str, doc: &Value) -> String {
    let stat = |k: &str| doc["stats"][k].as_u64();
    let num = |k: &str| stat(k).map_or("?".to_string(), |v| v.to_string());
    let size = |k: &str| stat(k).map_or("?".to_string(), bytes);
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push(("address", addr.to_string()));
    rows.push(("version", text(&doc["version"])));
    rows.push(("role", text(&doc["role"])));
    // `state` ("syncing" while a replicating node waits for its first sync); older servers
    // only send `ready` and `stopping`.
    let state = match (
        doc["state"].as_str(),
        doc["stopping"].as_bool(),
        doc["ready"].as_bool(),
    ) {
        (Some(s), _, _) => s,
        (_, Some(true), _) => "stopping",
        (_, _, Some(true)) => "ready",
        (_, _, Some(false)) => "not ready",
        _ => "?",
    };
    rows.push(("state", state.to_string()));
    rows.push(("uptime", stat("uptime").map_or("?".into(), duration)));
    let mem = match (stat("memory_used"), stat("limit_maxbytes")) {
        (Some(u), Some(l)) if l > 0 => format!(
            "{} / {} ({:.1}%)",
            bytes(u),
            bytes(l),
            u as f64 * 100.0 / l as f64
        ),
        _ => format!("{} / {}", size("memory_used"), size("limit_maxbytes")),
    };
    rows.push(("memory", mem));
    rows.push((
        "items",
        format!("{} ({})", num("curr_items"), size("bytes")),
    ));
    let ratio = doc["hit_ratio"]
        .as_f64()
        .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    rows.push((
        "hit ratio",
        format!(
            "{ratio} ({} hits, {} misses)",
            num("get_hits"),
            num("get_misses")
        ),
    ));
    rows.push((
        "connections",
        format!(
            "{} (max {}, {} accepted, {} rejected)",
            num("curr_connections"),
            num("max_connections"),
            num("total_connections"),
            num("rejected_connections")
        ),
    ));
    rows.push(("evictions", num("evictions")));
    rows.push(("reclaimed", num("reclaimed")));
    rows.push((
        "commands",
        format!(
            "get {}, set {}, touch {}, flush {}",
            num("cmd_get"),
            num("cmd_set"),
            num("cmd_touch"),
            num("cmd_flush")
        ),
    ));
    rows.push((
        "traffic",
        format!(
            "{} read, {} written",
            size("bytes_read"),
            size("bytes_written")
        ),
    ));
    let repl = &doc["replication"];
    match repl {
        Value::Null if doc.get("replication").is_some() => {
            rows.push(("replication", "off".to_string()))
        }
        Value::Object(_) => rows.push(("replication", replication_row(repl))),
        _ => {}
    }
    match &doc["vrrp"] {
        Value::Null if doc.get("vrrp").is_some() => rows.push(("vrrp", "off".to_string())),
        Value::Array(a) if a.is_empty() => rows.push(("vrrp", "no report yet".to_string())),
        Value::Array(a) => rows.push((
            "vrrp",
            match a.len() {
                1 => "1 instance".to_string(),
                n => format!("{n} instances"),
            },
        )),
        _ => {}
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in &rows {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    if let Some(peers) = repl["peers"].as_array().filter(|p| !p.is_empty()) {
        let header = [
            "peer",
            "node",
            "state",
            "applied",
            "lag",
            "last seen",
            "last error",
        ];
        let cells: Vec<Vec<String>> = peers
            .iter()
            .map(|p| {
                let n = |k: &str| p[k].as_u64().map_or("-".into(), |v| v.to_string());
                vec![
                    text(&p["addr"]),
                    n("node_id"),
                    text(&p["state"]),
                    n("applied_seq"),
                    n("lag_writes"),
                    p["last_seen_seconds"]
                        .as_f64()
                        .map_or("-".into(), |s| format!("{s:.1}s")),
                    p["last_error"]
                        .as_str()
                        .map_or("-".into(), |e| e.replace(['\r', '\n'], " ")),
                ]
            })
            .collect();
        out.push('\n');
        grid(
            &mut out,
            &header,
            &cells,
            &[true, false, true, false, false, false, true],
        );
    }
    if let Some(instances) = doc["vrrp"].as_array().filter(|a| !a.is_empty()) {
        let header = [
            "instance",
            "state",
            "priority",
            "master",
            "vips",
            "held",
            "transitions",
            "adverts sent/recv",
            "dropped",
        ];
        let cells: Vec<Vec<String>> = instances.iter().map(vrrp_cells).collect();
        out.push('\n');
        grid(
            &mut out,
            &header,
            &cells,
            &[true, true, false, true, true, true, false, false, false],
        );
    }
    if let Some(classes) = doc["classes"].as_array().filter(|c| !c.is_empty()) {
        let header = [
            "class",
            "chunk",
            "items",
            "bytes",
            "oldest",
            "evicted",
            "reclaimed",
        ];
        let cells: Vec<Vec<String>> = classes
            .iter()
            .map(|c| {
                let n = |k: &str| c[k].as_u64().map_or("?".into(), |v| v.to_string());
                vec![
                    n("class"),
                    n("chunk_size"),
                    n("items"),
                    c["bytes"].as_u64().map_or("?".into(), bytes),
                    c["age_seconds"].as_u64().map_or("?".into(), duration),
                    n("evicted"),
                    n("reclaimed"),
                ]
            })
            .collect();
        out.push('\n');
        grid(&mut out, &header, &cells, &[false; 7]);
    }
    out
}

/// The `replication` row: this node's side of replication in one line.
fn replication_row(r: &Value) -> String {
    let n = |v: &Value| v.as_u64().map_or("?".into(), |v| v.to_string());
    let b = &r["backlog"];
    format!(
        "node {}, backlog {} / {} (seq {}..{}, {} dropped), syncs served {} full / {} partial",
        n(&r["node_id"]),
        b["bytes"].as_u64().map_or("?".into(), bytes),
        b["limit_bytes"].as_u64().map_or("?".into(), bytes),
        n(&b["first_seq"]),
        n(&b["last_seq"]),
        n(&b["dropped"]),
        n(&r["full_syncs_served"]),
        n(&r["partial_syncs_served"]),
    )
}

/// One row of the VRRP table from a `vrrp` entry: state (with what keeps it from
/// serving), priority/effective, master, virtual addresses and whether this node holds
/// them, transitions, advertisements sent/received, packets dropped.
fn vrrp_cells(i: &Value) -> Vec<String> {
    let n = |k: &str| i[k].as_u64().map_or("?".into(), |v| v.to_string());
    let text = |k: &str| i[k].as_str().map_or("?".into(), str::to_string);
    let mut state = i["state"]
        .as_str()
        .map_or("?".into(), str::to_ascii_lowercase);
    let why: Vec<&str> = [("link_up", "link down"), ("healthy", "unhealthy")]
        .into_iter()
        .filter(|(k, _)| i[*k].as_u64() == Some(0))
        .map(|(_, why)| why)
        .collect();
    if !why.is_empty() {
        state = format!("{state} ({})", why.join(", "));
    }
    vec![
        text("name"),
        state,
        format!("{}/{}", n("priority"), n("effective_priority")),
        text("master"),
        text("vips"),
        match i["holding_vips"].as_u64() {
            Some(0) => "no".into(),
            Some(_) => "yes".into(),
            None => "?".into(),
        },
        n("transitions"),
        format!("{}/{}", n("adverts_sent"), n("adverts_received")),
        n("dropped_total"),
    ]
}

/// Write a table: a header and rows, columns two spaces apart, each aligned left (`true`)
/// or right.
fn grid(out: &mut String, header: &[&str], rows: &[Vec<String>], left: &[bool]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, row: &[&str]| {
        let cols: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(left)
            .map(|((c, &w), &l)| {
                if l {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cols.join("  ").trim_end());
    };
    line(out, header);
    for row in rows {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_document() {
        let doc: Value = serde_json::from_str(
            r#"{"version":"1.6.45-memha-0.1.0","role":"single node","ready":true,
                "stopping":false,"hit_ratio":0.75,
                "stats":{"uptime":3661,"memory_used":1048576,"limit_maxbytes":67108864,
                         "curr_items":3,"bytes":300,"get_hits":3,"get_misses":1},
                "classes":[{"class":1,"chunk_size":96,"items":3,"bytes":300,
                            "age_seconds":5,"evicted":0,"reclaimed":0}]}"#,
        )
        .unwrap();
        let t = render_table("127.0.0.1:11312", &doc);
        assert!(t.contains("role         single node\n"), "{t}");
        assert!(t.contains("uptime       1h 1m 1s\n"), "{t}");
        assert!(
            t.contains("memory       1.0 MiB / 64.0 MiB (1.6%)\n"),
            "{t}"
        );
        assert!(t.contains("hit ratio    75.0% (3 hits, 1 misses)\n"), "{t}");
        assert!(t.contains("evictions    ?\n"), "{t}");
        assert!(
            t.contains("class  chunk  items  bytes  oldest  evicted  reclaimed\n"),
            "{t}"
        );
        assert!(
            t.contains("    1     96      3  300 B      5s        0          0\n"),
            "{t}"
        );
    }

    #[test]
    fn renders_replication() {
        let mut s = crate::metrics::tests::snapshot();
        s.replication = Some(crate::metrics::tests::repl_stats());
        s.role = crate::snapshot::Snapshot::role_for(s.replication.as_ref(), None);
        s.ready = false;
        let doc: Value = serde_json::from_str(&crate::status_json::render(&s)).unwrap();
        assert_eq!(doc["state"], "syncing");
        assert_eq!(doc["replication"]["peers"][0]["lag_writes"], 1);
        assert!(doc["replication"]["peers"][1]["lag_writes"].is_null());
        assert!(doc["replication"]["peers"][1]["last_seen_seconds"].is_null());
        assert_eq!(doc["replication"]["peers"][0]["clock_skew_seconds"], -0.25);
        assert_eq!(
            doc["replication"]["subscribers"].as_array().unwrap().len(),
            2
        );
        let t = render_table("h:1", &doc);
        assert!(t.contains("role         replicating with 2 peers\n"), "{t}");
        assert!(t.contains("state        syncing\n"), "{t}");
        assert!(
            t.contains(
                "replication  node 1, backlog 4.0 KiB / 1.0 MiB (seq 3..10, 2 dropped), \
                 syncs served 6 full / 7 partial\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "\npeer            node  state       applied  lag  last seen  last error\n\
                 10.0.0.2:11311     2  streaming        42    1       0.3s  -\n\
                 peer-\"3\":11311     -  connecting        0    -          -  connect: refused\n"
            ),
            "{t}"
        );

        let single: Value = serde_json::from_str(&crate::status_json::render(
            &crate::metrics::tests::snapshot(),
        ))
        .unwrap();
        assert!(single["replication"].is_null());
        let t = render_table("h:1", &single);
        assert!(t.contains("replication  off\n"), "{t}");
        assert!(!t.contains("\npeer "), "{t}");
    }

    #[test]
    fn renders_vrrp() {
        use crate::metrics::tests::{repl_stats, snapshot, vrrp_view};
        let mut s = snapshot();
        s.replication = Some(repl_stats());
        s.replication.as_mut().unwrap().peers.truncate(1);
        s.vrrp = Some(vrrp_view());
        s.role = crate::snapshot::Snapshot::role_for(s.replication.as_ref(), s.vrrp.as_ref());
        let doc: Value = serde_json::from_str(&crate::status_json::render(&s)).unwrap();
        let t = render_table("h:1", &doc);
        assert!(
            t.contains(
                "role         master of VI_1, init of VI_2 (VRRP), replicating with 1 peer\n"
            ),
            "{t}"
        );
        assert!(t.contains("vrrp         2 instances\n"), "{t}");
        assert!(
            t.contains(
                "\ninstance  state             priority  master    vips                   held  transitions  adverts sent/recv  dropped\n\
                 VI_1      master             150/150  10.0.0.1  10.0.0.100,10.0.0.101  yes             2             1200/7       14\n\
                 VI_2      init (link down)       ?/0  none      192.168.1.10           no              0                0/0        0\n"
            ),
            "{t}"
        );

        s.vrrp.as_mut().unwrap().instances.clear();
        let doc: Value = serde_json::from_str(&crate::status_json::render(&s)).unwrap();
        let t = render_table("h:1", &doc);
        assert!(t.contains("vrrp         no report yet\n"), "{t}");
        assert!(!t.contains("\ninstance "), "{t}");

        let single: Value = serde_json::from_str(&crate::status_json::render(&snapshot())).unwrap();
        let t = render_table("h:1", &single);
        assert!(t.contains("vrrp         off\n"), "{t}");
        assert!(!t.contains("\ninstance "), "{t}");
        // An older server's document has no `vrrp`: no row.
        let mut old = single.clone();
        old.as_object_mut().unwrap().remove("vrrp");
        assert!(!render_table("h:1", &old).contains("vrrp"));
    }

    #[test]
    fn unreachable_endpoint_is_an_error() {
        // Bind and drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = status_table(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
        assert!(status_table("no port").is_err());
    }
}

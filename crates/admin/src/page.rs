//! `/`: a status page for people. Plain HTML with an inline style sheet: no script, no
//! external asset, so it works from a locked-down jump host. Refreshes itself every 10 s.

use std::fmt::Write as _;

use memha_repl::node::ReplStats;
use memha_server::vrrp_view::VrrpView;

use crate::snapshot::{self, Snapshot};

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

pub fn render(s: &Snapshot) -> String {
    let c = &s.counters;
    let st = &s.store;
    let used_pct = if st.memory_limit > 0 {
        (st.memory_used as f64 * 100.0 / st.memory_limit as f64).min(100.0)
    } else {
        0.0
    };
    let hit = match s.hit_ratio() {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "–".to_string(),
    };
    // "syncing" while a replicating node waits for its first sync.
    let ready = s.state();
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>memha {version}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}}
h1{{font-size:1.4em}} h2{{font-size:1.1em;margin-top:1.5em}}
table{{border-collapse:collapse}} td,th{{padding:.2em .8em;text-align:right}}
td:first-child,th:first-child{{text-align:left}} th{{border-bottom:1px solid #999}}
.bar{{width:20em;height:1em;background:#ddd;display:inline-block;vertical-align:middle}}
.fill{{height:100%;background:#4a8}} .small{{color:#666;font-size:.9em}}
</style></head><body>
<h1>memha {version}</h1>
<table>
<tr><td>role</td><td>{role}</td></tr>
<tr><td>state</td><td>{ready}</td></tr>
<tr><td>uptime</td><td>{uptime}</td></tr>
<tr><td>memory</td><td><span class="bar"><span class="fill" style="display:block;width:{pct:.1}%"></span></span>
 {used} / {limit} ({pct:.1}%)</td></tr>
<tr><td>items</td><td>{items} ({item_bytes})</td></tr>
<tr><td>hit ratio</td><td>{hit} <span class="small">({hits} hits, {misses} misses)</span></td></tr>
<tr><td>connections</td><td>{conns} <span class="small">(max {max_conns}, {total_conns} accepted, {rejected} rejected)</span></td></tr>
<tr><td>evictions</td><td>{evictions}</td></tr>
<tr><td>reclaimed</td><td>{reclaimed}</td></tr>
<tr><td>commands</td><td class="small">get {cmd_get}, set {cmd_set}, touch {cmd_touch}, flush {cmd_flush}</td></tr>
<tr><td>traffic</td><td class="small">{read} read, {written} written</td></tr>
</table>
"#,
        version = esc(s.version),
        role = esc(&s.role),
        uptime = duration(s.uptime),
        pct = used_pct,
        used = bytes(st.memory_used),
        limit = bytes(st.memory_limit),
        items = st.curr_items,
        item_bytes = bytes(st.bytes),
        hits = c.get_hits,
        misses = c.get_misses,
        conns = s.connections,
        max_conns = s.max_connections,
        total_conns = c.total_connections,
        rejected = c.rejected_connections,
        evictions = st.evictions,
        reclaimed = st.reclaimed,
        cmd_get = c.cmd_get,
        cmd_set = c.cmd_set,
        cmd_touch = c.cmd_touch,
        cmd_flush = c.cmd_flush,
        read = bytes(c.bytes_read),
        written = bytes(c.bytes_written),
    );
    if let Some(r) = &s.replication {
        replication(&mut h, r);
    }
    if let Some(v) = &s.vrrp {
        vrrp(&mut h, v);
    }
    h.push_str("<h2>Size classes</h2>\n");
    if s.classes.is_empty() {
        h.push_str("<p class=\"small\">No items.</p>\n");
    } else {
        h.push_str(
            "<table>\n<tr><th>class</th><th>chunk size</th><th>items</th><th>bytes</th>\
             <th>oldest (s)</th><th>evicted</th><th>reclaimed</th><th>out of memory</th></tr>\n",
        );
        for k in &s.classes {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                k.class,
                k.chunk_size,
                k.number,
                bytes(k.bytes),
                s.class_age(k),
                k.evicted,
                k.reclaimed,
                k.outofmemory
            );
        }
        h.push_str("</table>\n");
    }
    let _ = write!(
        h,
        "<p class=\"small\">pid {} · <a href=\"/metrics\">metrics</a> · \
         <a href=\"/status.json\">status.json</a></p>\n</body></html>\n",
        s.pid
    );
    h
}

/// The "Replication" section: the node's stream (backlog) and a table of its peers.
fn replication(h: &mut String, r: &ReplStats) {
    let pct = if r.backlog_max_bytes > 0 {
        (r.backlog_bytes as f64 * 100.0 / r.backlog_max_bytes as f64).min(100.0)
    } else {
        0.0
    };
    let _ = write!(
        h,
        r#"<h2>Replication</h2>
<table>
<tr><td>node id</td><td>{node_id}</td></tr>
<tr><td>sync</td><td>{sync}</td></tr>
<tr><td>backlog</td><td><span class="bar"><span class="fill" style="display:block;width:{pct:.1}%"></span></span>
 {bytes} / {limit} ({pct:.1}%)</td></tr>
<tr><td>backlog writes</td><td class="small">seq {first} to {last}, {dropped} dropped</td></tr>
<tr><td>syncs served</td><td class="small">{full} full, {partial} partial, {resync} fell behind</td></tr>
<tr><td>link errors</td><td class="small">{auth} authentication, {proto} protocol</td></tr>
</table>
"#,
        node_id = r.node_id,
        sync = if r.ready { "done" } else { "syncing" },
        bytes = bytes(r.backlog_bytes),
        limit = bytes(r.backlog_max_bytes),
        first = r.backlog_first_seq,
        last = r.backlog_last_seq,
        dropped = r.backlog_dropped,
        full = r.full_syncs_served,
        partial = r.partial_syncs_served,
        resync = r.needs_resync,
        auth = r.auth_failures,
        proto = r.protocol_errors,
    );
    if r.peers.is_empty() {
        h.push_str("<p class=\"small\">No peers configured.</p>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>peer</th><th>node id</th><th>state</th><th>applied seq</th>\
         <th>lag (writes)</th><th>last seen</th><th>last error</th></tr>\n",
    );
    for p in &r.peers {
        let dash = || "–".to_string();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td style=\"text-align:left\">{}</td></tr>",
            esc(&p.addr),
            p.node_id.map_or_else(dash, |id| id.to_string()),
            esc(p.state),
            p.applied_seq,
            snapshot::peer_lag(r, p).map_or_else(dash, |l| l.to_string()),
            snapshot::peer_last_seen_seconds(p).map_or_else(dash, |s| format!("{s:.1}s ago")),
            if p.last_error.is_empty() {
                dash()
            } else {
                esc(&p.last_error)
            },
        );
    }
    h.push_str(
        "</table>\n<p class=\"small\">applied seq: the last write of the peer's stream \
         applied here; lag: writes of this node's stream the peer has not acknowledged.</p>\n",
    );
}

/// The "VRRP" section: one row per instance, as the supervisor last reported it.
fn vrrp(h: &mut String, view: &VrrpView) {
    h.push_str("<h2>VRRP</h2>\n");
    if view.instances.is_empty() {
        h.push_str("<p class=\"small\">No report from the VRRP speaker yet.</p>\n");
        return;
    }
    h.push_str(
        "<table>\n<tr><th>instance</th><th>interface</th><th>vrid</th><th>state</th>\
         <th>priority</th><th>effective</th><th>master</th><th>virtual addresses</th>\
         <th>held</th><th>transitions</th><th>adverts sent</th><th>adverts received</th>\
         <th>dropped</th></tr>\n",
    );
    for inst in &view.instances {
        let text = |k: &str| inst.get(k).map_or_else(|| "–".to_string(), esc);
        let num = |k: &str| {
            snapshot::vrrp_num(inst, k).map_or_else(|| "–".to_string(), |n| n.to_string())
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&inst.name),
            text("interface"),
            num("vrid"),
            esc(&snapshot::vrrp_state_line(inst)),
            num("priority"),
            num("effective_priority"),
            text("master"),
            inst.get("vips")
                .map_or_else(|| "–".to_string(), |v| esc(&v.replace(',', ", "))),
            match snapshot::vrrp_num(inst, "holding_vips") {
                Some(0) => "no",
                Some(_) => "yes",
                None => "–",
            },
            num("transitions"),
            num("adverts_sent"),
            num("adverts_received"),
            num("dropped_total"),
        );
    }
    h.push_str(
        "</table>\n<p class=\"small\">effective: the priority advertised now (0 while the \
         link is down or a health check fails); held: the virtual addresses are on this node; \
         dropped: received VRRP packets refused (by reason in /metrics).</p>\n",
    );
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `93784` → `1d 2h 3m 4s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(duration(4), "4s");
        assert_eq!(duration(93784), "1d 2h 3m 4s");
        assert_eq!(duration(3600), "1h 0m 0s");
    }

    #[test]
    fn replication_section() {
        use crate::metrics::tests::{repl_stats, snapshot};
        let single = render(&snapshot());
        assert!(!single.contains("Replication"));
        let mut s = snapshot();
        s.replication = Some(repl_stats());
        s.role = Snapshot::role_for(s.replication.as_ref(), None);
        s.ready = false;
        let h = render(&s);
        assert!(
            h.contains("<td>role</td><td>replicating with 2 peers</td>"),
            "{h}"
        );
        assert!(h.contains("<td>state</td><td>syncing</td>"), "{h}");
        assert!(h.contains("<h2>Replication</h2>"), "{h}");
        assert!(h.contains("4.0 KiB / 1.0 MiB"), "{h}");
        assert!(h.contains("seq 3 to 10, 2 dropped"), "{h}");
        // address, node id, state, applied seq, lag (node 2 acked 9 of 10), last seen, error
        assert!(
            h.contains(
                "<tr><td>10.0.0.2:11311</td><td>2</td><td>streaming</td><td>42</td><td>1</td><td>0.3s ago</td>"
            ),
            "{h}"
        );
        assert!(h.contains("<td>peer-&quot;3&quot;:11311</td><td>–</td><td>connecting</td>"));
        assert!(h.contains("connect: refused"));
        s.replication.as_mut().unwrap().peers.clear();
        assert!(render(&s).contains("No peers configured."));
    }

    #[test]
    fn vrrp_section() {
        use crate::metrics::tests::{repl_stats, snapshot, vrrp_view};
        assert!(!render(&snapshot()).contains("VRRP"));
        let mut s = snapshot();
        s.replication = Some(repl_stats());
        s.vrrp = Some(vrrp_view());
        s.vrrp.as_mut().unwrap().instances[1].name = "<VI_2>".into();
        s.role = Snapshot::role_for(s.replication.as_ref(), s.vrrp.as_ref());
        let h = render(&s);
        assert!(
            h.contains(
                "<td>role</td><td>master of VI_1, init of &lt;VI_2&gt; (VRRP), \
                 replicating with 2 peers</td>"
            ),
            "{h}"
        );
        assert!(h.contains("<h2>VRRP</h2>"), "{h}");
        // instance, interface, vrid, state, priority, effective, master, VIPs, held,
        // transitions, adverts sent, received, dropped
        assert!(
            h.contains(
                "<tr><td>VI_1</td><td>eth0</td><td>51</td><td>master</td><td>150</td>\
                 <td>150</td><td>10.0.0.1</td><td>10.0.0.100, 10.0.0.101</td><td>yes</td>\
                 <td>2</td><td>1200</td><td>7</td><td>14</td></tr>"
            ),
            "{h}"
        );
        assert!(
            h.contains(
                "<tr><td>&lt;VI_2&gt;</td><td>eth1</td><td>52</td><td>init (link down)</td>\
                 <td>–</td><td>0</td><td>none</td><td>192.168.1.10</td><td>no</td>\
                 <td>0</td><td>0</td><td>0</td><td>0</td></tr>"
            ),
            "{h}"
        );
        // VRRP comes after replication, before the size classes.
        let (repl, vrrp, classes) = (
            h.find("<h2>Replication</h2>").unwrap(),
            h.find("<h2>VRRP</h2>").unwrap(),
            h.find("<h2>Size classes</h2>").unwrap(),
        );
        assert!(repl < vrrp && vrrp < classes);
        s.vrrp = Some(Default::default());
        assert!(render(&s).contains("No report from the VRRP speaker yet."));
    }
}

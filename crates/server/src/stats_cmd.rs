//! The `stats` command and its groups, in memcached's names.
//!
//! Every group ends with `END`, including empty ones: clients and memcached's test helpers
//! read until `END`, so a group that answered `ERROR` would hang them. memha has no slab
//! allocator; where memcached reports per-slab-class figures (`stats items`, `stats slabs`)
//! memha reports its items grouped by the size class memcached would have used (same 1.25
//! growth factor from 96 bytes), so dashboards keyed on class ids keep working and every
//! number is a real count of memha's items, not a simulated slab page.

use std::sync::atomic::Ordering::Relaxed;

use memha_protocol::reply::push_stat;

use crate::shared::Shared;
use crate::stats::Counters;

pub fn stats(shared: &Shared, conn: &mut Counters, args: &[u8], out: &mut Vec<u8>, now: u32) {
    // Make this connection's own counts visible in what it is about to read.
    shared.stats.absorb(conn);
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => general(shared, out, now),
        (Some(b"settings"), None, _) => settings(shared, out),
        (Some(b"items"), None, _) => items(shared, out, now),
        (Some(b"slabs"), None, _) => slabs(shared, out, now),
        (Some(b"sizes"), None, _) => {
            push_stat(out, "sizes_status", "disabled");
            out.extend_from_slice(b"END\r\n");
        }
        (Some(b"conns"), None, _) => conns(shared, out),
        (Some(b"replication"), None, _) => replication(shared, out),
        (Some(b"vrrp"), None, _) => vrrp(shared, out),
        (Some(b"reset"), None, _) => {
            shared.stats.reset();
            shared.store.reset_stats();
            shared.detail.reset();
            out.extend_from_slice(b"RESET\r\n");
        }
        (Some(b"detail"), Some(b"on"), None) => {
            shared.detail.on.store(true, Relaxed);
            out.extend_from_slice(b"OK\r\n");
        }
        (Some(b"detail"), Some(b"off"), None) => {
            shared.detail.on.store(false, Relaxed);
            out.extend_from_slice(b"OK\r\n");
        }
        (Some(b"detail"), Some(b"dump"), None) => shared.detail.dump(out),
        (Some(b"detail"), _, _) => {
            out.extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")
        }
        (Some(b"cachedump"), Some(class), limit) => {
            let (Some(_class), Some(limit)) = (
                memha_protocol::text::parse_u64(class),
                limit.map_or(Some(0), memha_protocol::text::parse_u64),
            ) else {
                out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
                return;
            };
            // memha has no slab classes: the dump walks all items, whatever class was asked.
            shared.store.dump(limit as usize, now, |key, len, exptime| {
                out.extend_from_slice(b"ITEM ");
                out.extend_from_slice(key);
                let line = format!(" [{len} b; {exptime} s]\r\n");
                out.extend_from_slice(line.as_bytes());
            });
            out.extend_from_slice(b"END\r\n");
        }
        _ => out.extend_from_slice(b"ERROR\r\n"),
    }
}

fn general(shared: &Shared, out: &mut Vec<u8>, now: u32) {
    let s = shared.stats.snapshot();
    let store = shared.store.stats();
    let cfg = &shared.config;
    let (user, system) = rusage();
    let uptime = shared.started.elapsed().as_secs();
    let st = |out: &mut Vec<u8>, name: &str, v: u64| push_stat(out, name, v);
    st(out, "pid", std::process::id() as u64);
    st(out, "uptime", uptime);
    st(out, "time", now as u64);
    push_stat(out, "version", crate::VERSION);
    push_stat(out, "libevent", "none");
    st(out, "pointer_size", usize::BITS as u64);
    push_stat(out, "rusage_user", format_args!("{user:.6}"));
    push_stat(out, "rusage_system", format_args!("{system:.6}"));
    st(out, "max_connections", cfg.max_connections as u64);
    st(out, "curr_connections", shared.conns.load(Relaxed) as u64);
    st(out, "total_connections", s.total_connections);
    st(out, "rejected_connections", s.rejected_connections);
    st(
        out,
        "connection_structures",
        shared.conns.load(Relaxed) as u64,
    );
    st(out, "response_obj_oom", 0);
    st(out, "read_buf_oom", 0);
    st(out, "reserved_fds", 0);
    st(out, "cmd_get", s.cmd_get);
    st(out, "cmd_set", s.cmd_set);
    st(out, "cmd_flush", s.cmd_flush);
    st(out, "cmd_touch", s.cmd_touch);
    st(out, "cmd_meta", 0);
    st(out, "get_hits", s.get_hits);
    st(out, "get_misses", s.get_misses);
    st(out, "get_expired", s.get_expired);
    st(out, "get_flushed", s.get_flushed);
    st(out, "delete_misses", s.delete_misses);
    st(out, "delete_hits", s.delete_hits);
    st(out, "incr_misses", s.incr_misses);
    st(out, "incr_hits", s.incr_hits);
    st(out, "decr_misses", s.decr_misses);
    st(out, "decr_hits", s.decr_hits);
    st(out, "cas_misses", s.cas_misses);
    st(out, "cas_hits", s.cas_hits);
    st(out, "cas_badval", s.cas_badval);
    st(out, "touch_hits", s.touch_hits);
    st(out, "touch_misses", s.touch_misses);
    st(out, "store_too_large", s.store_too_large);
    st(out, "store_no_memory", s.store_no_memory);
    st(out, "auth_cmds", s.auth_cmds);
    st(out, "auth_errors", s.auth_errors);
    st(out, "idle_kicks", s.idle_kicks);
    st(out, "malformed_requests", s.malformed_requests);
    st(out, "bytes_read", s.bytes_read);
    st(out, "bytes_written", s.bytes_written);
    st(out, "limit_maxbytes", store.memory_limit);
    st(out, "memory_used", store.memory_used);
    st(out, "accepting_conns", 1);
    st(out, "listen_disabled_num", 0);
    st(out, "time_in_listen_disabled_us", 0);
    st(out, "threads", cfg.threads as u64);
    st(out, "conn_yields", s.conn_yields);
    st(out, "store_shards", store.shards);
    st(out, "hash_bytes", store.table_bytes);
    st(out, "hash_is_expanding", 0);
    st(out, "malloc_fails", 0);
    st(out, "bytes", store.bytes);
    st(out, "curr_items", store.curr_items);
    st(out, "total_items", store.total_items);
    st(out, "expired_unfetched", store.expired_unfetched);
    st(out, "evicted_unfetched", store.evicted_unfetched);
    st(out, "evictions", store.evictions);
    st(out, "reclaimed", store.reclaimed);
    st(out, "lrutail_reflocked", 0);
    st(
        out,
        "hash_power_level",
        store.table_buckets.max(1).ilog2() as u64,
    );
    // memcached's slab mover, LRU maintainer and crawler counters: memha has none of that
    // machinery, so they are truly zero; they are listed so tools that read them keep working.
    for name in ABSENT_MACHINERY {
        st(out, name, 0);
    }
    out.extend_from_slice(b"END\r\n");
}

const ABSENT_MACHINERY: [&str; 20] = [
    "response_obj_count",
    "response_obj_bytes",
    "evicted_active",
    "slab_reassign_rescues",
    "slab_reassign_chunk_rescues",
    "slab_reassign_evictions_nomem",
    "slab_reassign_inline_reclaim",
    "slab_reassign_busy_items",
    "slab_reassign_busy_deletes",
    "slab_reassign_running",
    "slabs_moved",
    "lru_crawler_running",
    "lru_crawler_starts",
    "lru_maintainer_juggles",
    "slab_global_page_pool",
    "crawler_reclaimed",
    "crawler_items_checked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
];

fn settings(shared: &Shared, out: &mut Vec<u8>) {
    let cfg = &shared.config;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    push_stat(out, "maxbytes", shared.store.memory_limit());
    push_stat(out, "maxconns", cfg.max_connections);
    push_stat(out, "tcpport", cfg.tcp_port);
    push_stat(out, "udpport", cfg.udp_port);
    let inter = if cfg.listen.is_empty() {
        "NULL".to_string()
    } else {
        cfg.listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    push_stat(out, "inter", inter);
    push_stat(out, "verbosity", shared.verbosity.load(Relaxed));
    push_stat(out, "oldest", 0);
    push_stat(out, "evictions", if cfg.no_evict { "off" } else { "on" });
    match &cfg.unix_socket {
        Some(p) => push_stat(out, "domain_socket", p.display()),
        None => push_stat(out, "domain_socket", "NULL"),
    }
    push_stat(out, "umask", format_args!("{:o}", cfg.unix_mask));
    push_stat(out, "shutdown_command", yes_no(cfg.shutdown_enabled));
    push_stat(out, "num_threads", cfg.threads);
    push_stat(out, "stat_key_prefix", ":");
    push_stat(
        out,
        "detail_enabled",
        yes_no(shared.detail.on.load(Relaxed)),
    );
    push_stat(out, "reqs_per_event", cfg.reqs_per_event);
    push_stat(out, "cas_enabled", yes_no(!cfg.cas_disabled));
    push_stat(out, "tcp_backlog", cfg.backlog);
    push_stat(out, "binding_protocol", cfg.protocol.name());
    push_stat(out, "auth_enabled_sasl", "no");
    push_stat(out, "auth_enabled_ascii", yes_no(cfg.auth_file.is_some()));
    push_stat(out, "item_size_max", cfg.item_size_max);
    push_stat(out, "flush_enabled", yes_no(!cfg.flush_disabled));
    push_stat(out, "idle_timeout", cfg.idle_timeout);
    push_stat(out, "client_flags_size", 4);
    push_stat(out, "lru_crawler", "no");
    push_stat(out, "eviction_policy", "clock");
    push_stat(out, "store_shards", shared.store.stats().shards);
    if !cfg.ignored_options.is_empty() {
        push_stat(out, "ignored_options", cfg.ignored_options.join(","));
    }
    out.extend_from_slice(b"END\r\n");
}

fn items(shared: &Shared, out: &mut Vec<u8>, now: u32) {
    for c in shared.store.class_stats(now) {
        let id = c.class;
        let mut st = |name: &str, v: u64| push_stat(out, &format!("items:{id}:{name}"), v);
        st("number", c.number);
        st("number_hot", 0);
        st("number_warm", 0);
        st("number_cold", c.number);
        st("age", now.saturating_sub(c.oldest_atime) as u64);
        st("mem_requested", c.bytes);
        st("evicted", c.evicted);
        st("evicted_nonzero", c.evicted_nonzero);
        st("outofmemory", c.outofmemory);
        st("reclaimed", c.reclaimed);
        st("expired_unfetched", c.expired_unfetched);
        st("evicted_unfetched", c.evicted_unfetched);
    }
    out.extend_from_slice(b"END\r\n");
}

fn slabs(shared: &Shared, out: &mut Vec<u8>, now: u32) {
    let classes = shared.store.class_stats(now);
    let active = classes.iter().filter(|c| c.number > 0).count();
    for c in &classes {
        let id = c.class;
        push_stat(out, &format!("{id}:chunk_size"), c.chunk_size);
        push_stat(out, &format!("{id}:used_chunks"), c.number);
        push_stat(out, &format!("{id}:mem_requested"), c.bytes);
    }
    let store = shared.store.stats();
    push_stat(out, "active_slabs", active);
    push_stat(out, "total_malloced", store.memory_used);
    out.extend_from_slice(b"END\r\n");
}

fn conns(shared: &Shared, out: &mut Vec<u8>) {
    // Per-connection listing is not kept (it would cost a shared registry on every accept);
    // report the count so scripts reading until END see a well-formed answer.
    push_stat(out, "curr_connections", shared.conns.load(Relaxed));
    out.extend_from_slice(b"END\r\n");
}

/// `stats vrrp`: every VRRP instance as the supervisor reported it, `INSTANCE:key value`.
fn vrrp(shared: &Shared, out: &mut Vec<u8>) {
    match &*shared.vrrp.lock() {
        None => push_stat(out, "vrrp", "disabled"),
        Some(view) => {
            push_stat(out, "vrrp", "enabled");
            for inst in &view.instances {
                for (k, v) in &inst.values {
                    push_stat(out, &format!("{}:{k}", inst.name), v);
                }
            }
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats replication`: this node's stream and every peer link.
fn replication(shared: &Shared, out: &mut Vec<u8>) {
    let Some(repl) = &shared.repl else {
        push_stat(out, "replication", "disabled");
        out.extend_from_slice(b"END\r\n");
        return;
    };
    let r = repl.stats();
    push_stat(out, "replication", "enabled");
    push_stat(out, "node_id", r.node_id);
    push_stat(out, "ready", u8::from(r.ready));
    push_stat(out, "backlog_bytes", r.backlog_bytes);
    push_stat(out, "backlog_max_bytes", r.backlog_max_bytes);
    push_stat(out, "backlog_first_seq", r.backlog_first_seq);
    push_stat(out, "backlog_last_seq", r.backlog_last_seq);
    push_stat(out, "backlog_dropped", r.backlog_dropped);
    push_stat(out, "writes_unsendable", r.unsendable);
    push_stat(out, "needs_resync", r.needs_resync);
    push_stat(out, "auth_failures", r.auth_failures);
    push_stat(out, "protocol_errors", r.protocol_errors);
    push_stat(out, "full_syncs_served", r.full_syncs_served);
    push_stat(out, "partial_syncs_served", r.partial_syncs_served);
    push_stat(out, "ack", if repl.sync_ack() { "sync" } else { "async" });
    push_stat(out, "sync_acked", r.sync_acked);
    push_stat(out, "sync_timeouts", r.sync_timeouts);
    push_stat(out, "sync_no_peer", r.sync_no_peer);
    push_stat(out, "sync_degraded", u8::from(r.sync_degraded));
    push_stat(out, "sync_degraded_writes", r.sync_degraded_writes);
    push_stat(out, "holding", u8::from(r.holding));
    push_stat(out, "holds", r.holds);
    push_stat(out, "client_conns", r.client_conns);
    push_stat(out, "client_conns_shared", r.client_conns_shared);
    push_stat(out, "peer_client_conns", r.peer_client_conns);
    for (i, p) in r.peers.iter().enumerate() {
        let st = |out: &mut Vec<u8>, name: &str, v: &dyn std::fmt::Display| {
            push_stat(out, &format!("peer{i}:{name}"), v)
        };
        st(out, "addr", &p.addr);
        st(out, "state", &p.state);
        st(out, "node_id", &p.node_id.map_or(-1, i64::from));
        st(out, "applied_seq", &p.applied_seq);
        st(out, "writes_applied", &p.applied);
        st(out, "writes_stale", &p.stale);
        st(out, "writes_rejected", &p.rejected);
        st(out, "connects", &p.connects);
        st(out, "full_syncs", &p.full_syncs);
        st(out, "last_full_sync_ms", &p.last_full_sync_ms);
        st(out, "partial_syncs", &p.partial_syncs);
        st(out, "clock_skew_ms", &p.clock_skew_ms);
        st(out, "last_seen_ms", &p.last_seen_ms);
        st(
            out,
            "last_error",
            &if p.last_error.is_empty() {
                "-".to_string()
            } else {
                p.last_error.replace(['\r', '\n'], " ")
            },
        );
    }
    for (i, s) in r.subscribers.iter().enumerate() {
        push_stat(out, &format!("subscriber{i}:addr"), &s.addr);
        push_stat(out, &format!("subscriber{i}:node_id"), s.node_id);
        push_stat(out, &format!("subscriber{i}:sent_seq"), s.sent_seq);
        push_stat(out, &format!("subscriber{i}:acked_seq"), s.acked_seq);
        push_stat(
            out,
            &format!("subscriber{i}:lag_writes"),
            r.backlog_last_seq.saturating_sub(s.acked_seq),
        );
    }
    out.extend_from_slice(b"END\r\n");
}

/// CPU time used by the process, user and system, in seconds.
pub fn rusage() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass and has no other effects.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

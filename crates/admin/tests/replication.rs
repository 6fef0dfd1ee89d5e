//! The admin endpoint's replication figures against real nodes: two memha servers in this
//! process, each with its replication listener on loopback and the other as its peer, each
//! run in its own thread as the binary runs it, and the admin endpoint on the first.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memha_admin::metrics::{sample_value, validate};
use memha_repl::node::ReplConfig;
use memha_server::shared::{unix_now, Stop};
use memha_server::{Config, Shared};
use memha_store::{SetMode, StoreResult};
use serde_json::Value;

struct Node {
    mc: SocketAddr,
    admin: Option<SocketAddr>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.stop(Stop::Now);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A replication listener on loopback, as the binary binds it (nonblocking).
fn repl_listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// A node's shared state, not yet serving (so a test can seed its store first).
fn shared(node_id: u16, peers: Vec<String>, ready_grace: Duration) -> Arc<Shared> {
    let cfg = Config {
        tcp_port: 0,
        listen: vec!["127.0.0.1".parse().unwrap()],
        threads: 2,
        ..Config::default()
    };
    Shared::with_replication(
        cfg,
        None,
        Some(ReplConfig {
            node_id,
            cluster: b"memha-admin-test".to_vec(),
            secret: Some(b"admin test secret".to_vec()),
            peers,
            backlog_bytes: 1 << 20,
            ready_grace,
            sync_ack: None,
        }),
    )
}

/// Serve `shared`'s cache, its replication on `repl`, and the admin endpoint if asked,
/// from a thread of its own.
fn start(shared: Arc<Shared>, repl: std::net::TcpListener, admin: bool) -> Node {
    let mut bound = memha_server::bind(shared.clone()).expect("bind the cache");
    let mc = bound.tcp_addrs()[0];
    bound.add_service(move |s| memha_server::replication::serve(repl, s));
    let admin = admin.then(|| {
        let listener = memha_admin::bind("127.0.0.1:0").expect("bind the admin endpoint");
        let addr = listener.local_addr().unwrap();
        bound.add_service(move |s| memha_admin::serve_std(listener, s));
        addr
    });
    let thread = std::thread::spawn(move || bound.run().expect("server runs"));
    Node {
        mc,
        admin,
        shared,
        thread: Some(thread),
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    (head[9..12].parse().unwrap(), body.to_string())
}

/// Send memcached text requests and read until a line starting with `last` has come.
fn memcached(addr: SocketAddr, requests: &str, last: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(requests.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got);
        if text.ends_with("\r\n")
            && (text.starts_with(last) || text.contains(&format!("\r\n{last}")))
        {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "memcached port closed: {text}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Poll until `done` holds (10 s at most); returns its last input.
fn until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = probe();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(admin: SocketAddr) -> Value {
    let (code, body) = get(admin, "/status.json");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn two_replicating_nodes() {
    let (repl_a, repl_b) = (repl_listener(), repl_listener());
    let (addr_a, addr_b) = (
        repl_a.local_addr().unwrap().to_string(),
        repl_b.local_addr().unwrap().to_string(),
    );
    let grace = Duration::from_secs(30);
    let (shared_a, shared_b) = (
        shared(1, vec![addr_b.clone()], grace),
        shared(2, vec![addr_a.clone()], grace),
    );
    // A conflict both nodes hold before they meet: B's version is older, so B's full sync
    // brings A a stale write (and A's brings B a newer one, applied).
    let now = unix_now() as u32;
    let seed = |s: &Shared, v: &[u8]| {
        let r = s.store.store(SetMode::Set, b"clash", 0, 0, v, None, now);
        assert_eq!(r, StoreResult::Stored);
    };
    seed(&shared_b, b"from-b");
    std::thread::sleep(Duration::from_millis(20));
    seed(&shared_a, b"from-a");

    let a = start(shared_a, repl_a, true);
    let b = start(shared_b, repl_b, false);
    let admin = a.admin.unwrap();
    until("A ready", || get(admin, "/ready"), |(code, _)| *code == 200);

    // Writes over the memcached ports: two on A, one on B.
    let out = memcached(
        a.mc,
        "set k1 0 0 2\r\nv1\r\nset k2 0 0 2\r\nv2\r\n",
        "STORED\r\nSTORED",
    );
    assert_eq!(out, "STORED\r\nSTORED\r\n");
    assert_eq!(
        memcached(b.mc, "set k3 0 0 2\r\nv3\r\n", "STORED"),
        "STORED\r\n"
    );
    // They cross over; the conflict went A's way on both.
    until(
        "k2 on B",
        || memcached(b.mc, "get k2 clash\r\n", "END"),
        |t| t.contains("VALUE k2 0 2\r\nv2\r\n") && t.contains("from-a"),
    );
    until(
        "k3 on A",
        || memcached(a.mc, "get k3 clash\r\n", "END"),
        |t| t.contains("VALUE k3 0 2\r\nv3\r\n") && t.contains("from-a"),
    );

    // B acknowledges A's two writes (acks follow the writes at once or on B's next read).
    let peer = [("peer", addr_b.as_str())];
    let text = until(
        "B's ack of A's writes",
        || get(admin, "/metrics").1,
        |t| {
            sample_value(
                t,
                "memha_replication_subscriber_acked_seq",
                &[("node_id", "2")],
            ) == Some(2.0)
                && sample_value(t, "memha_replication_peer_applied_writes_total", &peer)
                    == Some(1.0)
        },
    );
    validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name: &str| sample_value(&text, name, &[]);
    let p = |name: &str| sample_value(&text, name, &peer);
    assert_eq!(v("memha_replication_enabled"), Some(1.0));
    assert_eq!(v("memha_replication_ready"), Some(1.0));
    assert_eq!(v("memha_ready"), Some(1.0));
    assert_eq!(v("memha_replication_node_id"), Some(1.0));
    assert!(
        v("memha_replication_backlog_bytes").unwrap() > 0.0,
        "{text}"
    );
    assert_eq!(v("memha_replication_backlog_limit_bytes"), Some(1048576.0));
    assert_eq!(v("memha_replication_backlog_dropped_total"), Some(0.0));
    assert_eq!(v("memha_replication_needs_resync_total"), Some(0.0));
    assert_eq!(v("memha_replication_auth_failures_total"), Some(0.0));
    assert_eq!(v("memha_replication_protocol_errors_total"), Some(0.0));
    assert_eq!(v("memha_replication_full_syncs_served_total"), Some(1.0));
    assert_eq!(v("memha_replication_partial_syncs_served_total"), Some(0.0));

    assert_eq!(p("memha_replication_peer_up"), Some(1.0));
    let state = |st: &str| {
        sample_value(
            &text,
            "memha_replication_peer_state",
            &[("peer", &addr_b), ("state", st)],
        )
    };
    assert_eq!(state("streaming"), Some(1.0));
    assert_eq!(state("syncing"), Some(0.0));
    assert_eq!(state("connecting"), Some(0.0));
    assert_eq!(p("memha_replication_peer_applied_writes_total"), Some(1.0));
    assert_eq!(p("memha_replication_peer_stale_writes_total"), Some(1.0));
    assert_eq!(p("memha_replication_peer_rejected_writes_total"), Some(0.0));
    assert_eq!(p("memha_replication_peer_full_syncs_total"), Some(1.0));
    assert_eq!(p("memha_replication_peer_partial_syncs_total"), Some(0.0));
    assert_eq!(p("memha_replication_peer_connects_total"), Some(1.0));
    let sync = p("memha_replication_peer_last_full_sync_seconds").unwrap();
    assert!((0.0..5.0).contains(&sync), "{sync}");
    let skew = p("memha_replication_peer_clock_skew_seconds").unwrap();
    assert!(skew.abs() < 1.0, "{skew}");
    let seen = p("memha_replication_peer_last_seen_seconds").unwrap();
    assert!((0.0..5.0).contains(&seen), "{seen}");
    let sub = [("node_id", "2")];
    assert_eq!(
        sample_value(&text, "memha_replication_subscriber_lag_writes", &sub),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, "memha_replication_subscriber_acked_seq", &sub),
        Some(2.0)
    );
    for counter in [
        "memha_replication_backlog_dropped_total",
        "memha_replication_peer_stale_writes_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter\n")),
            "{counter}"
        );
    }

    // status.json: the same figures.
    let doc = status(admin);
    assert_eq!(doc["role"], "replicating with 1 peer");
    assert_eq!(doc["state"], "ready");
    assert_eq!(doc["ready"], true);
    let r = &doc["replication"];
    assert_eq!(r["node_id"], 1);
    assert_eq!(r["ready"], true);
    assert_eq!(r["backlog"]["last_seq"], 2);
    assert_eq!(r["backlog"]["limit_bytes"], 1 << 20);
    assert_eq!(r["full_syncs_served"], 1);
    let peer = &r["peers"][0];
    assert_eq!(peer["addr"], addr_b.as_str());
    assert_eq!(peer["node_id"], 2);
    assert_eq!(peer["state"], "streaming");
    assert_eq!(peer["up"], true);
    assert_eq!(peer["applied_seq"], 1, "{peer}");
    assert_eq!(peer["applied_writes"], 1);
    assert_eq!(peer["stale_writes"], 1);
    assert_eq!(peer["lag_writes"], 0);
    assert_eq!(peer["connects"], 1);
    assert!(peer["last_error"].is_null());
    assert!(peer["last_seen_seconds"].as_f64().is_some());
    assert_eq!(r["subscribers"][0]["node_id"], 2);
    assert_eq!(r["subscribers"][0]["acked_seq"], 2);
    assert_eq!(r["subscribers"][0]["lag_writes"], 0);

    // `memha status`.
    let table = memha_admin::status_table(&admin.to_string()).unwrap();
    assert!(
        table.contains("role         replicating with 1 peer\n"),
        "{table}"
    );
    assert!(table.contains("state        ready\n"), "{table}");
    assert!(table.contains("replication  node 1, backlog "), "{table}");
    assert!(table.contains("(seq 1..2, 0 dropped)"), "{table}");
    assert!(
        table.contains("\npeer ") && table.contains("  state      applied  lag  last seen"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&addr_b))
        .unwrap_or_else(|| panic!("no row for {addr_b}:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..5], ["2", "streaming", "1", "0"], "{row}");
    assert_eq!(cols.last(), Some(&"-"), "{row}");

    // The page.
    let (code, page) = get(admin, "/");
    assert_eq!(code, 200);
    assert!(
        page.contains("<td>role</td><td>replicating with 1 peer</td>"),
        "{page}"
    );
    assert!(page.contains("<td>state</td><td>ready</td>"), "{page}");
    assert!(page.contains("<h2>Replication</h2>"), "{page}");
    assert!(
        page.contains(&format!(
            "<tr><td>{addr_b}</td><td>2</td><td>streaming</td><td>1</td><td>0</td>"
        )),
        "{page}"
    );
}

#[test]
fn a_node_waiting_for_its_peer_shows_syncing() {
    // A peer address nobody listens on: bind, note, drop.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let node = start(
        shared(7, vec![gone.clone()], Duration::from_secs(60)),
        repl_listener(),
        true,
    );
    let admin = node.admin.unwrap();
    let (code, body) = get(admin, "/ready");
    assert_eq!((code, body.trim()), (503, "not ready"));

    // Wait for a failed attempt to be recorded.
    let doc = until(
        "a failed connect",
        || status(admin),
        |d| d["replication"]["peers"][0]["last_error"].is_string(),
    );
    assert_eq!(doc["role"], "replicating with 1 peer");
    assert_eq!(doc["state"], "syncing");
    assert_eq!(doc["ready"], false);
    let peer = &doc["replication"]["peers"][0];
    assert_eq!(doc["replication"]["ready"], false);
    assert_eq!(peer["addr"], gone.as_str());
    assert_eq!(peer["state"], "connecting");
    assert_eq!(peer["up"], false);
    assert!(peer["node_id"].is_null());
    assert!(peer["last_seen_seconds"].is_null());
    assert!(peer["lag_writes"].is_null());
    assert_eq!(doc["replication"]["subscribers"], serde_json::json!([]));

    let (_, text) = get(admin, "/metrics");
    validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let labels = [("peer", gone.as_str())];
    assert_eq!(sample_value(&text, "memha_ready", &[]), Some(0.0));
    assert_eq!(
        sample_value(&text, "memha_replication_ready", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, "memha_replication_node_id", &[]),
        Some(7.0)
    );
    assert_eq!(
        sample_value(&text, "memha_replication_peer_up", &labels),
        Some(0.0)
    );
    assert_eq!(
        sample_value(
            &text,
            "memha_replication_peer_state",
            &[("peer", &gone), ("state", "connecting")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample_value(&text, "memha_replication_peer_connects_total", &labels),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, "memha_replication_peer_last_seen_seconds", &labels),
        None
    );
    assert!(!text.contains("memha_replication_subscriber_lag_writes{"));

    let (_, page) = get(admin, "/");
    assert!(page.contains("<td>state</td><td>syncing</td>"), "{page}");
    assert!(page.contains("<td>sync</td><td>syncing</td>"), "{page}");
    assert!(
        page.contains(&format!("<tr><td>{gone}</td><td>–</td><td>connecting</td>")),
        "{page}"
    );
    assert!(page.contains("connect: "), "{page}");

    let table = memha_admin::status_table(&admin.to_string()).unwrap();
    assert!(table.contains("state        syncing\n"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&gone))
        .expect("a peer row");
    assert!(
        row.contains(" connecting ") && row.contains("connect: "),
        "{row}"
    );
}

#[test]
fn a_single_node_exports_only_replication_enabled() {
    let cfg = Config {
        tcp_port: 0,
        listen: vec!["127.0.0.1".parse().unwrap()],
        threads: 1,
        ..Config::default()
    };
    let shared = Shared::new(cfg, None);
    let node = start(shared, repl_listener(), true);
    let admin = node.admin.unwrap();
    let (_, text) = get(admin, "/metrics");
    validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let repl: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("memha_replication_"))
        .collect();
    assert_eq!(repl.len(), 3, "{repl:#?}");
    assert!(repl.contains(&"memha_replication_enabled 0"));
    let doc = status(admin);
    assert!(doc["replication"].is_null());
    assert_eq!(doc["role"], "single node");
    assert_eq!(doc["state"], "ready");
    let table = memha_admin::status_table(&admin.to_string()).unwrap();
    assert!(table.contains("replication  off\n"), "{table}");
    let (_, page) = get(admin, "/");
    assert!(!page.contains("Replication"));
}

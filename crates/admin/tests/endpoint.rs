//! The admin endpoint against a real server: memha-server bound on loopback and run in a
//! background thread, the admin service added to its runtime the way the binary does it, and
//! requests sent over raw sockets.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memha_admin::metrics::{sample_value, validate};
use memha_admin::Options;
use memha_server::shared::Stop;
use memha_server::{Config, Shared};

struct Node {
    mc: SocketAddr,
    admin: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A server on 127.0.0.1 with the admin endpoint; `opts: None` wires it exactly as the
/// binary does (`serve_std`, default options).
fn start(opts: Option<Options>) -> Node {
    let cfg = Config {
        tcp_port: 0,
        listen: vec!["127.0.0.1".parse().unwrap()],
        threads: 2,
        ..Config::default()
    };
    let shared = Shared::new(cfg, None);
    let mut bound = memha_server::bind(shared.clone()).expect("bind the cache");
    let mc = bound.tcp_addrs()[0];
    let listener = memha_admin::bind("127.0.0.1:0").expect("bind the admin endpoint");
    let admin = listener.local_addr().unwrap();
    match opts {
        None => bound.add_service(move |shared| memha_admin::serve_std(listener, shared)),
        Some(opts) => bound.add_service(move |shared| async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            memha_admin::serve_with(l, shared, opts).await
        }),
    }
    let thread = std::thread::spawn(move || bound.run().expect("server runs"));
    Node {
        mc,
        admin,
        shared,
        thread: Some(thread),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.stop(Stop::Now);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Send raw bytes, half-close, read the whole answer.
fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read the answer");
    let text = String::from_utf8(buf).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head[9..12].parse().expect("a status code");
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\n\r\n").as_bytes(),
    )
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
        if text.ends_with("\r\n") && text.contains(&format!("\r\n{last}")) {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "memcached port closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Connections add their counts after answering, so poll briefly.
fn metric_eventually(node: &Node, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = get(node.admin, "/metrics");
        assert_eq!(a.status, 200);
        if sample_value(&a.body, name, labels) == Some(want) || Instant::now() > deadline {
            assert_eq!(
                sample_value(&a.body, name, labels),
                Some(want),
                "{name}{labels:?}\n{}",
                a.body
            );
            return a.body;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_follow_memcached_traffic() {
    let node = start(None);
    let out = memcached(
        node.mc,
        "set a 0 0 5\r\nhello\r\nset b 0 0 3\r\nbye\r\nget a\r\nget nope\r\ndelete b\r\n\
         delete b\r\nincr nope 1\r\nbogus command\r\nversion\r\n",
        "VERSION",
    );
    assert!(out.contains("VALUE a 0 5\r\nhello\r\nEND\r\n"), "{out}");
    let text = metric_eventually(&node, "memha_commands_total", &[("command", "set")], 2.0);
    let text = if sample_value(&text, "memha_delete_misses_total", &[]) == Some(1.0) {
        text
    } else {
        metric_eventually(&node, "memha_delete_misses_total", &[], 1.0)
    };
    validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = |name: &str| sample_value(&text, name, &[]);
    assert_eq!(
        sample_value(&text, "memha_commands_total", &[("command", "get")]),
        Some(2.0)
    );
    assert_eq!(v("memha_up"), Some(1.0));
    assert_eq!(v("memha_ready"), Some(1.0));
    assert_eq!(v("memha_get_hits_total"), Some(1.0));
    assert_eq!(v("memha_get_misses_total"), Some(1.0));
    assert_eq!(v("memha_delete_hits_total"), Some(1.0));
    assert_eq!(v("memha_incr_misses_total"), Some(1.0));
    assert_eq!(v("memha_items"), Some(1.0));
    assert_eq!(v("memha_items_stored_total"), Some(2.0));
    assert_eq!(v("memha_memory_limit_bytes"), Some(64.0 * 1024.0 * 1024.0));
    assert!(v("memha_memory_used_bytes").unwrap() > 0.0);
    assert!(v("memha_item_bytes").unwrap() > 0.0);
    assert!(v("memha_connections_total").unwrap() >= 1.0);
    assert!(v("memha_bytes_read_total").unwrap() > 0.0);
    assert!(v("memha_bytes_written_total").unwrap() > 0.0);
    assert!(v("memha_malformed_requests_total").is_some());
    assert!(v("memha_uptime_seconds").is_some());
    assert_eq!(v("memha_evictions_total"), Some(0.0));
    // "a" (1-byte key, 5-byte value) lands in the first size class.
    assert_eq!(
        sample_value(
            &text,
            "memha_class_items",
            &[("class", "1"), ("chunk_size", "96")]
        ),
        Some(1.0)
    );
    assert!(text.contains(&format!(
        "memha_build_info{{version=\"{}\"}} 1\n",
        memha_server::VERSION
    )));
    // No VRRP configured: only memha_vrrp_enabled.
    let vrrp: Vec<&str> = text.lines().filter(|l| l.contains("memha_vrrp_")).collect();
    assert_eq!(vrrp.len(), 3, "{vrrp:#?}");
    assert!(vrrp.contains(&"memha_vrrp_enabled 0"));

    // The same figures as JSON.
    let a = get(node.admin, "/status.json");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["role"], "single node");
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["version"], memha_server::VERSION);
    assert_eq!(doc["stats"]["curr_items"], 1);
    assert_eq!(doc["stats"]["get_hits"], 1);
    assert_eq!(doc["hit_ratio"], 0.5);
    assert_eq!(doc["classes"][0]["class"], 1);
    assert_eq!(doc["classes"][0]["items"], 1);
    assert!(doc["replication"].is_null());
    assert!(doc["vrrp"].is_null());

    // `memha status`'s table.
    let table = memha_admin::status_table(&node.admin.to_string()).unwrap();
    assert!(table.contains("role         single node"), "{table}");
    assert!(
        table.contains("hit ratio    50.0% (1 hits, 1 misses)"),
        "{table}"
    );
    assert!(table.contains("class  chunk  items"), "{table}");
    assert!(table.contains("vrrp         off\n"), "{table}");
    let table2 = memha_admin::status_table(&format!("http://{}/", node.admin)).unwrap();
    assert!(table2.contains("single node"));
}

/// The supervisor's report for one instance, in the pipe's line format.
const VRRP_REPORT: &str = "instance VI_1
state BACKUP
interface eth0
vrid 51
version 3
priority 100
effective_priority 100
advert_int_ms 1000
primary_ip 10.0.0.2
master 10.0.0.1
vips 10.0.0.100
holding_vips 0
healthy 1
link_up 1
transitions 1
became_master 0
adverts_sent 0
adverts_received 42
priority0_sent 0
priority0_received 0
garps_sent 0
vip_adds 0
vip_removes 0
send_errors 0
netlink_errors 0
unknown_peer 0
hooks_started 1
hooks_failed 0
dropped_total 3
dropped_too_short 0
dropped_ip_header 0
dropped_not_vrrp 0
dropped_ttl 0
dropped_version 0
dropped_type 0
dropped_no_addresses 0
dropped_length 0
dropped_checksum 0
dropped_vrid 0
dropped_auth_type 0
dropped_auth_password 3
dropped_interval 0
dropped_address_list 0";

#[test]
fn vrrp_state_from_the_supervisor() {
    let node = start(None);
    let view = memha_server::vrrp_view::VrrpView::decode(VRRP_REPORT.lines());
    *node.shared.vrrp.lock() = Some(view);

    let a = get(node.admin, "/metrics");
    assert_eq!(a.status, 200);
    let text = a.body;
    validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for line in [
        "memha_vrrp_enabled 1",
        "memha_vrrp_state{instance=\"VI_1\",state=\"init\"} 0",
        "memha_vrrp_state{instance=\"VI_1\",state=\"backup\"} 1",
        "memha_vrrp_state{instance=\"VI_1\",state=\"master\"} 0",
        "memha_vrrp_state{instance=\"VI_1\",state=\"fault\"} 0",
        "memha_vrrp_master_info{instance=\"VI_1\",master=\"10.0.0.1\"} 1",
        "memha_vrrp_priority{instance=\"VI_1\"} 100",
        "memha_vrrp_holding_vips{instance=\"VI_1\"} 0",
        "memha_vrrp_adverts_received_total{instance=\"VI_1\"} 42",
        "memha_vrrp_dropped_total{instance=\"VI_1\",reason=\"auth_password\"} 3",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}\n{text}");
    }
    let drops = text
        .lines()
        .filter(|l| l.starts_with("memha_vrrp_dropped_total{"))
        .count();
    assert_eq!(drops, 14);
    assert_eq!(
        sample_value(
            &text,
            "memha_vrrp_transitions_total",
            &[("instance", "VI_1")]
        ),
        Some(1.0)
    );

    let doc: serde_json::Value =
        serde_json::from_str(&get(node.admin, "/status.json").body).unwrap();
    assert_eq!(doc["role"], "backup of VI_1 (VRRP)");
    assert_eq!(doc["vrrp"][0]["name"], "VI_1");
    assert_eq!(doc["vrrp"][0]["state"], "BACKUP");
    assert_eq!(doc["vrrp"][0]["vrid"], 51);
    assert_eq!(doc["vrrp"][0]["vips"], "10.0.0.100");
    assert_eq!(doc["vrrp"][0]["dropped_auth_password"], 3);

    let table = memha_admin::status_table(&node.admin.to_string()).unwrap();
    assert!(
        table.contains("role         backup of VI_1 (VRRP)\n"),
        "{table}"
    );
    assert!(table.contains("vrrp         1 instance\n"), "{table}");
    assert!(
        table.contains(
            "instance  state   priority  master    vips        held  transitions  adverts sent/recv  dropped\n\
             VI_1      backup   100/100  10.0.0.1  10.0.0.100  no              1               0/42        3\n"
        ),
        "{table}"
    );

    let page = get(node.admin, "/").body;
    assert!(
        page.contains("<td>role</td><td>backup of VI_1 (VRRP)</td>"),
        "{page}"
    );
    assert!(page.contains("<h2>VRRP</h2>"), "{page}");

    // `stats vrrp` shows the same report.
    let stats = memcached(node.mc, "stats vrrp\r\n", "END");
    assert!(stats.contains("STAT VI_1:state BACKUP\r\n"), "{stats}");

    // VRRP no longer configured: back to memha_vrrp_enabled 0 alone.
    *node.shared.vrrp.lock() = None;
    let text = get(node.admin, "/metrics").body;
    assert_eq!(sample_value(&text, "memha_vrrp_enabled", &[]), Some(0.0));
    assert!(!text.contains("memha_vrrp_state"), "{text}");
}

#[test]
fn routes_and_content_types() {
    let node = start(None);
    let a = get(node.admin, "/metrics");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(
        a.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(a.body.len())
    );

    let a = get(node.admin, "/health");
    assert_eq!((a.status, a.body.trim()), (200, "ok"));
    let a = get(node.admin, "/ready");
    assert_eq!((a.status, a.body.trim()), (200, "ready"));
    node.shared.ready.store(false, Relaxed);
    let a = get(node.admin, "/ready");
    assert_eq!((a.status, a.body.trim()), (503, "not ready"));
    let a = get(node.admin, "/metrics");
    assert_eq!(sample_value(&a.body, "memha_ready", &[]), Some(0.0));
    node.shared.ready.store(true, Relaxed);
    assert_eq!(get(node.admin, "/ready").status, 200);

    let a = get(node.admin, "/");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(a.body.starts_with("<!DOCTYPE html>"));
    assert!(a.body.contains("single node"));
    assert!(a.body.contains(memha_server::VERSION));
    assert!(a.body.contains("64.0 MiB"));
    assert!(!a.body.contains("<script"));
    assert!(!a.body.contains("src="));
    assert_eq!(get(node.admin, "/?refresh=1").status, 200);
    assert_eq!(get(node.admin, "/metrics?x=y").status, 200);

    let a = get(node.admin, "/nope");
    assert_eq!((a.status, a.body.trim()), (404, "not found"));
    assert_eq!(get(node.admin, "/metrics/").status, 404);
    assert_eq!(get(node.admin, "/../etc/passwd").status, 404);

    for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
        let a = raw(
            node.admin,
            format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
                .as_bytes(),
        );
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.header("allow"), Some("GET, HEAD"));
    }

    // HEAD: the GET's headers, no body.
    let a = raw(node.admin, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("3"));
    assert_eq!(a.body, "");

    // HTTP/1.0 and bare-LF heads are served too.
    assert_eq!(raw(node.admin, b"GET /health HTTP/1.0\r\n\r\n").status, 200);
    assert_eq!(raw(node.admin, b"GET /health HTTP/1.0\n\n").status, 200);
}

#[test]
fn garbage_and_oversized_heads() {
    let node = start(None);
    for (request, want) in [
        (
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            400,
        ), // TLS hello
        (b"\x00\x01\x02\x03\r\n\r\n", 400),
        (b"hello\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400), // HTTP/0.9
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET / HTTP/1.1", 400), // closed mid-head
        (b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"\r\n\r\n\r\n\r\n", 400),
    ] {
        let a = raw(node.admin, request);
        assert_eq!(a.status, want, "{:?}", String::from_utf8_lossy(request));
    }

    // Over 8 KiB of head: 431, while the client is still sending.
    let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while big.len() < 20_000 {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let a = raw(node.admin, &big);
    assert_eq!(a.status, 431);
    // A head of just under 8 KiB is fine.
    let mut fits = b"GET /health HTTP/1.1\r\nX-Pad: ".to_vec();
    fits.resize(8 * 1024 - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(node.admin, &fits).status, 200);

    // Random bytes never take the endpoint down.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..50 {
        let len = 1 + (round * 37) % 300;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut s = TcpStream::connect(node.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let a = get(node.admin, "/health");
    assert_eq!((a.status, a.body.trim()), (200, "ok"));
}

#[test]
fn slow_clients_time_out_without_blocking_others() {
    let node = start(Some(Options {
        head_timeout: Duration::from_secs(2),
        max_connections: 8,
        ..Options::default()
    }));
    // Two clients that send nothing and one that stops mid-head.
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(node.admin).unwrap())
        .collect();
    let mut partial = TcpStream::connect(node.admin).unwrap();
    partial.write_all(b"GET /metr").unwrap();
    std::thread::sleep(Duration::from_millis(50));

    // Others are served meanwhile, at once.
    let t = Instant::now();
    assert_eq!(get(node.admin, "/health").status, 200);
    assert_eq!(get(node.admin, "/metrics").status, 200);
    // Well under the head timeout: they did not wait for the slow ones.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // The slow ones get 408 and are closed after the timeout.
    let t = Instant::now();
    for mut s in silent.into_iter().chain([partial]) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let a = read_answer(&mut s);
        assert_eq!(a.status, 408);
    }
    let waited = t.elapsed();
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[test]
fn busy_endpoint_answers_503_then_recovers() {
    let node = start(Some(Options {
        head_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..Options::default()
    }));
    let hogs: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(node.admin).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut s = TcpStream::connect(node.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let a = read_answer(&mut s);
    assert_eq!((a.status, a.body.trim()), (503, "busy"));
    // Once the hogs time out, requests are served again.
    for mut h in hogs {
        h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_answer(&mut h).status, 408);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(node.admin, "/health").status != 200 {
        assert!(Instant::now() < deadline, "endpoint stays busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stopping_closes_the_endpoint() {
    let mut node = start(None);
    assert_eq!(get(node.admin, "/health").status, 200);
    node.shared.stop(Stop::Now);
    node.thread.take().unwrap().join().unwrap();
    assert!(TcpStream::connect(node.admin).is_err());
    let e = memha_admin::status_table(&node.admin.to_string()).unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn bind_reports_bad_and_busy_addresses() {
    let l = memha_admin::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let e = memha_admin::bind(addr).unwrap_err();
    assert!(e.contains("cannot listen on admin address"), "{e}");
    assert!(memha_admin::bind("not an address").is_err());
}

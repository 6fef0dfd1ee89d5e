//! Startup flags and server limits: -I, -M, -m, -c, -Y, -U, -s, -B, -o idle_timeout, signals.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::{free_udp_port, Client, Server};

fn setting(c: &mut Client, name: &str) -> String {
    c.stats("settings")
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no setting {name}"))
        .1
}

#[test]
fn item_size_limit_default_1m() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    // Just below the limit (1 MiB less some room for the item header).
    let below = 1024 * 1024 - 1024;
    let mut req = format!("set big 0 0 {below}\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'a', below));
    req.extend_from_slice(b"\r\n");
    c.expect_bytes(&req, b"STORED\r\n");
    c.send(b"get big\r\n");
    assert_eq!(c.line(), format!("VALUE big 0 {below}\r\n"));
    let data = c.read_exact(below + 2);
    assert!(data[..below].iter().all(|&b| b == b'a'));
    assert_eq!(c.line(), "END\r\n");

    // Just above: refused, the old value is deleted, and the data block (which here looks
    // like commands) is swallowed so the next command in the same write is answered.
    for above in [1024 * 1024 + 1, 1024 * 1024] {
        c.expect("set big 0 0 3\r\nold\r\n", "STORED\r\n");
        let mut req = format!("set big 0 0 {above}\r\n").into_bytes();
        let filler = b"set evil 0 0 1\r\nx\r\n";
        while req.len() + filler.len() < above + 16 {
            req.extend_from_slice(filler);
        }
        let header_len = format!("set big 0 0 {above}\r\n").len();
        req.resize(header_len + above, b'z');
        req.extend_from_slice(b"\r\nget big evil\r\n");
        c.expect_bytes(&req, b"SERVER_ERROR object too large for cache\r\nEND\r\n");
    }
    // noreply: silent, still swallowed, old value still deleted.
    c.expect("set big 0 0 3\r\nold\r\n", "STORED\r\n");
    let n = 2 * 1024 * 1024;
    let mut req = format!("set big 0 0 {n} noreply\r\n").into_bytes();
    req.resize(req.len() + n, b'q');
    req.extend_from_slice(b"\r\nget big\r\n");
    c.expect_bytes(&req, b"END\r\n");
    assert_eq!(c.stat("store_too_large"), "3");
    assert_eq!(setting(&mut c, "item_size_max"), "1048576");
}

#[test]
fn item_size_limit_small_dash_i() {
    let s = Server::start(&["-I", "4k"]);
    let mut c = s.connect();
    assert_eq!(setting(&mut c, "item_size_max"), "4096");
    let ok = format!("set k 0 0 3900\r\n{}\r\n", "v".repeat(3900));
    c.expect(&ok, "STORED\r\n");
    c.send(b"get k\r\n");
    assert_eq!(c.line(), "VALUE k 0 3900\r\n");
    c.read_exact(3902);
    assert_eq!(c.line(), "END\r\n");
    let too_big = format!("set k 0 0 4097\r\n{}\r\nget k\r\n", "v".repeat(4097));
    c.expect(
        &too_big,
        "SERVER_ERROR object too large for cache\r\nEND\r\n",
    );
    // append past the limit is refused too and leaves the value as it was.
    c.expect(&ok, "STORED\r\n");
    let app = format!("append k 0 0 500\r\n{}\r\n", "w".repeat(500));
    c.expect(&app, "SERVER_ERROR object too large for cache\r\n");
    c.send(b"get k\r\n");
    assert_eq!(c.line(), "VALUE k 0 3900\r\n");
    c.read_exact(3902);
    assert_eq!(c.line(), "END\r\n");
}

#[test]
fn out_of_memory_with_dash_capital_m() {
    let s = Server::start(&["-m", "2", "-M"]);
    let mut c = s.connect();
    assert_eq!(setting(&mut c, "evictions"), "off");
    let value = "x".repeat(100 * 1024);
    let mut refused = None;
    for i in 0..60 {
        c.send(format!("set k{i} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
        let line = c.line();
        if line == "STORED\r\n" {
            continue;
        }
        assert_eq!(line, "SERVER_ERROR out of memory storing object\r\n");
        refused = Some(i);
        break;
    }
    let refused = refused.expect("6 MB into a 2 MB cache with -M must fail");
    assert!(refused > 0);
    assert!(c.stat_u64("store_no_memory") >= 1);
    assert_eq!(c.stat("evictions"), "0");
    // Nothing was evicted: the first key is still there.
    c.send(b"get k0\r\n");
    assert_eq!(c.line(), format!("VALUE k0 0 {}\r\n", value.len()));
    c.read_exact(value.len() + 2);
    assert_eq!(c.line(), "END\r\n");
    // Small things still fit after a delete.
    c.expect("delete k0\r\n", "DELETED\r\n");
    c.expect("set small 0 0 1\r\nx\r\n", "STORED\r\n");
}

#[test]
fn eviction_under_dash_m() {
    let s = Server::start(&["-m", "4"]);
    let mut c = s.connect();
    let value = "e".repeat(10 * 1024);
    let total = 3000; // ~30 MB through a 4 MB cache
    let mut batch = Vec::new();
    for i in 0..total {
        batch
            .extend_from_slice(format!("set key{i} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
        if i % 100 == 99 {
            // Write a batch, then read its 100 replies.
            let mut reader = c.stream.try_clone().unwrap();
            let data = std::mem::take(&mut batch);
            let t = std::thread::spawn(move || {
                reader.write_all(&data).unwrap();
            });
            for _ in 0..100 {
                assert_eq!(c.line(), "STORED\r\n");
            }
            t.join().unwrap();
        }
    }
    let evictions = c.stat_u64("evictions");
    let items = c.stat_u64("curr_items");
    let bytes = c.stat_u64("bytes");
    let limit = c.stat_u64("limit_maxbytes");
    println!("evictions={evictions} curr_items={items} bytes={bytes} limit={limit}");
    assert!(evictions > 0);
    assert!(items < total);
    assert!(bytes <= limit, "bytes {bytes} over the limit {limit}");
    // The most recent keys are readable.
    for i in total - 20..total {
        c.send(format!("get key{i}\r\n").as_bytes());
        assert_eq!(
            c.line(),
            format!("VALUE key{i} 0 {}\r\n", value.len()),
            "key{i}"
        );
        c.read_exact(value.len() + 2);
        assert_eq!(c.line(), "END\r\n");
    }
}

#[test]
fn connection_limit_dash_c() {
    let s = Server::start(&["-c", "3"]);
    let mut held: Vec<Client> = (0..3).map(|_| s.connect()).collect();
    for c in &mut held {
        c.ping();
    }
    let mut over = s.connect();
    let mut got = Vec::new();
    over.reader.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "ERROR Too many open connections\r\n"
    );
    assert!(held[0].stat_u64("rejected_connections") >= 1);
    assert_eq!(held[0].stat("curr_connections"), "3");
    // Free one slot; a new connection is served again (the server notices the close
    // asynchronously, so retry for a while).
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = s.connect();
        c.send(b"version\r\n");
        let line = c.line();
        if line.starts_with("VERSION ") {
            break;
        }
        assert_eq!(line, "ERROR Too many open connections\r\n");
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(setting(&mut held[0], "maxconns"), "3");
}

#[test]
fn ascii_auth_dash_y() {
    let dir = std::env::temp_dir().join(format!("memha-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, "user:secret\nother:pw2\n").unwrap();
    let s = Server::start(&["-Y", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let unauth = "CLIENT_ERROR unauthenticated\r\n";

    let mut c = s.connect();
    c.expect("get foo\r\n", unauth);
    c.expect("version\r\n", unauth);
    c.expect("stats\r\n", unauth);
    c.expect("delete foo\r\n", unauth);
    // A wrong password, an unknown user.
    c.expect(
        "set x 0 0 10\r\nuser secre\r\n",
        "CLIENT_ERROR authentication failure\r\n",
    );
    c.expect(
        "set x 0 0 8\r\nnone pw2\r\n",
        "CLIENT_ERROR authentication failure\r\n",
    );
    c.expect("get foo\r\n", unauth);
    // Log in; then the connection works normally.
    c.expect("set x 0 0 11\r\nuser secret\r\n", "STORED\r\n");
    c.expect("get x\r\n", "END\r\n");
    c.expect("set foo 0 0 3\r\nbar\r\n", "STORED\r\n");
    c.expect("get foo\r\n", "VALUE foo 0 3\r\nbar\r\nEND\r\n");
    assert_eq!(c.stat("auth_errors"), "2");
    assert_eq!(c.stat("auth_cmds"), "3");
    assert_eq!(setting(&mut c, "auth_enabled_ascii"), "yes");

    // Each connection logs in on its own.
    let mut d = s.connect();
    d.expect("get foo\r\n", unauth);
    d.expect("set x 0 0 9\r\nother pw2\r\n", "STORED\r\n");
    d.expect("get foo\r\n", "VALUE foo 0 3\r\nbar\r\nEND\r\n");
    // An oversized store before login is refused without touching the cache.
    let mut e = s.connect();
    let big = 2 * 1024 * 1024;
    let mut req = format!("set foo 0 0 {big}\r\n").into_bytes();
    req.resize(req.len() + big, b'x');
    req.extend_from_slice(b"\r\n");
    e.expect_bytes(&req, unauth.as_bytes());
    d.expect("get foo\r\n", "VALUE foo 0 3\r\nbar\r\nEND\r\n");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// memcached answers every line other than a login `set` with `CLIENT_ERROR unauthenticated`
/// before login, unknown commands included (proto_text.c, try_read_command_asciiauth).
#[test]
fn ascii_auth_refuses_unknown_commands_before_login() {
    let dir = std::env::temp_dir().join(format!("memha-auth2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, "user:secret\n").unwrap();
    let s = Server::start(&["-Y", file.to_str().unwrap()]);
    // The file is read at startup; remove it now so a failure below leaves nothing behind.
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = s.connect();
    c.send(b"bogus\r\n");
    assert_eq!(c.line(), "CLIENT_ERROR unauthenticated\r\n", "bogus");
    c.send(b"get\r\n");
    assert_eq!(c.line(), "CLIENT_ERROR unauthenticated\r\n", "get");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One UDP request/response exchange; returns the reassembled reply body.
fn udp_request(sock: &std::net::UdpSocket, port: u16, id: u16, body: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&id.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    d.extend_from_slice(body);
    sock.send_to(&d, ("127.0.0.1", port)).unwrap();
    let mut parts: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut total = None;
    let mut buf = [0u8; 65536];
    loop {
        let n = sock.recv(&mut buf).expect("UDP reply");
        assert!(n >= 8, "datagram shorter than its header");
        let h = &buf[..8];
        assert_eq!(u16::from_be_bytes([h[0], h[1]]), id, "request id echoed");
        assert_eq!(&h[6..8], &[0, 0], "reserved bytes are zero");
        let seq = u16::from_be_bytes([h[2], h[3]]);
        let count = u16::from_be_bytes([h[4], h[5]]);
        assert!(count >= 1 && seq < count, "seq {seq} of {count}");
        assert!(n <= 1400, "datagram of {n} bytes");
        assert_eq!(*total.get_or_insert(count), count);
        parts.push((seq, buf[8..n].to_vec()));
        if parts.len() == count as usize {
            break;
        }
    }
    parts.sort_by_key(|p| p.0);
    parts.into_iter().flat_map(|p| p.1).collect()
}

#[test]
fn udp_framing() {
    let port = free_udp_port();
    let s = Server::start(&["-U", &port.to_string()]);
    assert_eq!(s.udp_port, Some(port));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // The exact bytes of a single-datagram exchange.
    let mut req = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0];
    req.extend_from_slice(b"get nokey\r\n");
    sock.send_to(&req, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x12\x34\x00\x00\x00\x01\x00\x00END\r\n");

    assert_eq!(
        udp_request(&sock, port, 7, b"set u 3 0 2\r\nhi\r\n"),
        b"STORED\r\n"
    );
    assert_eq!(
        udp_request(&sock, port, 8, b"get u\r\n"),
        b"VALUE u 3 2\r\nhi\r\nEND\r\n"
    );
    // Visible over TCP too.
    s.connect()
        .expect("get u\r\n", "VALUE u 3 2\r\nhi\r\nEND\r\n");

    // A reply larger than one datagram comes in numbered pieces.
    let value = "0123456789".repeat(500);
    s.connect()
        .expect(&format!("set big 0 0 5000\r\n{value}\r\n"), "STORED\r\n");
    let reply = udp_request(&sock, port, 0xffff, b"get big\r\n");
    assert_eq!(
        String::from_utf8(reply).unwrap(),
        format!("VALUE big 0 5000\r\n{value}\r\nEND\r\n")
    );
    // A runt datagram gets no answer and does no harm.
    sock.send_to(&[1, 2, 3], ("127.0.0.1", port)).unwrap();
    assert_eq!(
        udp_request(&sock, port, 9, b"version\r\n")[..8],
        *b"VERSION "
    );
    assert_eq!(setting(&mut s.connect(), "udpport"), port.to_string());
}

#[test]
fn unix_socket_dash_s() {
    let dir = std::env::temp_dir().join(format!("memha-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memha.sock");
    let s = Server::start_unix(&path, &[]);
    let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut roundtrip = |req: &str, want: &str| {
        w.write_all(req.as_bytes()).unwrap();
        let mut got = vec![0; want.len()];
        r.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "{req:?}");
    };
    roundtrip("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    roundtrip("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    w.write_all(b"stats settings\r\n").unwrap();
    let mut found = false;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == format!("STAT domain_socket {}\r\n", path.display()) {
            found = true;
        }
        if line == "END\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(found, "stats settings shows the socket path");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binding_protocol_dash_b() {
    let s = Server::start(&["-B", "ascii"]);
    let mut c = s.connect();
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    assert_eq!(setting(&mut c, "binding_protocol"), "ascii");

    // -B binary: a text request is not answered as text; the connection closes.
    let s = Server::start(&["-B", "binary"]);
    let mut c = s.connect();
    c.send(b"get k\r\n");
    let mut got = Vec::new();
    let _ = c.reader.read_to_end(&mut got);
    assert!(got.is_empty(), "text reply on a binary port: {got:?}");
}

#[test]
fn sigterm_exits_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut s = Server::start(&[]);
        let mut idle = s.connect();
        idle.ping();
        s.signal(sig);
        let status = s
            .wait_exit(Duration::from_secs(10))
            .expect("memha exits on signal");
        assert_eq!(status.code(), Some(0), "signal {sig}: {status}");
        assert!(idle.closed());
    }
}

#[test]
fn idle_timeout_closes_and_counts() {
    let s = Server::start(&["-o", "idle_timeout=1"]);
    let mut idle = s.connect();
    idle.ping();
    let mut busy = s.connect();
    let start = Instant::now();
    // The busy connection sends a request every 300 ms and is never kicked.
    while start.elapsed() < Duration::from_millis(2500) {
        busy.ping();
        std::thread::sleep(Duration::from_millis(300));
    }
    idle.set_timeout(Duration::from_secs(5));
    assert!(idle.closed(), "the idle connection was closed");
    busy.ping();
    assert!(busy.stat_u64("idle_kicks") >= 1);
    assert_eq!(setting(&mut busy, "idle_timeout"), "1");
}

#[test]
fn requests_per_event_dash_r() {
    let s = Server::start(&["-R", "2"]);
    let mut c = s.connect();
    let mut req = String::new();
    let mut want = String::new();
    for i in 0..100 {
        req.push_str(&format!("set k{i} 0 0 1\r\nx\r\nget k{i}\r\n"));
        want.push_str(&format!("STORED\r\nVALUE k{i} 0 1\r\nx\r\nEND\r\n"));
    }
    c.expect(&req, &want);
    assert!(c.stat_u64("conn_yields") > 0);
    assert_eq!(setting(&mut c, "reqs_per_event"), "2");
}

#[test]
fn cache_memlimit_shrink_evicts() {
    let s = Server::start(&["-m", "64"]);
    let mut c = s.connect();
    let value = "s".repeat(10 * 1024);
    let mut req = String::new();
    for i in 0..2000 {
        req.push_str(&format!(
            "set s{i} 0 0 {} noreply\r\n{value}\r\n",
            value.len()
        ));
    }
    let writer = {
        let mut w = c.stream.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(req.as_bytes()).unwrap())
    };
    writer.join().unwrap();
    c.ping();
    assert!(c.stat_u64("bytes") > 16 * 1024 * 1024);
    c.expect("cache_memlimit 8\r\n", "OK\r\n");
    let bytes = c.stat_u64("bytes");
    assert!(
        bytes <= 8 * 1024 * 1024,
        "bytes {bytes} after cache_memlimit 8"
    );
    assert!(c.stat_u64("evictions") > 0);
    c.expect("set after 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("get after\r\n", "VALUE after 0 1\r\nx\r\nEND\r\n");
}

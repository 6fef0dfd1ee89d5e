//! Hostile and careless clients: the server must stay up and keep serving everyone else.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use common::{run_to_exit, Client, Server};

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";

/// The process is alive and a fresh connection can store and read.
fn assert_healthy(s: &mut Server) {
    assert!(s.alive(), "memha died");
    let mut c = s.connect();
    c.expect("set health 0 0 2\r\nok\r\n", "STORED\r\n");
    c.expect("get health\r\n", "VALUE health 0 2\r\nok\r\nEND\r\n");
}

/// Everything the server sends until it closes the connection (or 5 s pass).
fn drain(c: &mut Client) -> Vec<u8> {
    c.set_timeout(Duration::from_secs(5));
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match c.reader.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!(
                    "connection still open after 5 s; got {:?}",
                    String::from_utf8_lossy(&got[..got.len().min(200)])
                )
            }
            Err(_) => return got, // reset
        }
    }
}

/// Deterministic pseudo-random bytes.
fn garbage(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn binary_garbage() {
    let mut s = Server::start(&[]);
    let mut bystander = s.connect();
    bystander.expect("set keep 0 0 4\r\nkeep\r\n", "STORED\r\n");
    for seed in 1..=8u64 {
        let mut c = s.connect();
        let mut junk = garbage(64 * 1024, seed);
        if junk[0] == 0x80 {
            junk[0] = 0;
        }
        // Writing may fail once the server gives up on the connection.
        let _ = c.stream.write_all(&junk);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        // Whatever it answered, the connection ends (closed, or EOF after our shutdown).
        c.set_timeout(Duration::from_secs(5));
        let mut sink = Vec::new();
        let _ = c.reader.read_to_end(&mut sink);
        bystander.ping();
    }
    // Garbage that starts like a binary-protocol request: whatever the server makes of it,
    // the connection ends once we stop sending.
    for seed in [99u64, 100, 101] {
        let mut c = s.connect();
        let mut junk = garbage(4096, seed);
        junk[0] = 0x80;
        let _ = c.stream.write_all(&junk);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let _ = drain(&mut c);
        bystander.ping();
    }
    bystander.expect("get keep\r\n", "VALUE keep 0 4\r\nkeep\r\nEND\r\n");
    assert_healthy(&mut s);
}

#[test]
fn http_request_closes() {
    let mut s = Server::start(&[]);
    let mut bystander = s.connect();
    for req in [
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "HEAD / HTTP/1.1\r\n\r\n",
    ] {
        let mut c = s.connect();
        c.send(req.as_bytes());
        assert_eq!(drain(&mut c), b"", "{req:?}");
        bystander.ping();
    }
    assert_healthy(&mut s);
}

#[test]
fn long_line_without_newline_closes() {
    let mut s = Server::start(&[]);
    let mut bystander = s.connect();
    let mut c = s.connect();
    c.send(&[b'x'; 3000]);
    assert_eq!(drain(&mut c), b"");
    // The same for a long storage command line.
    let mut c = s.connect();
    let mut line = b"set ".to_vec();
    line.resize(3000, b'k');
    c.send(&line);
    assert_eq!(drain(&mut c), b"");
    // A long line that does end, but is not a retrieval: closed too (memcached's rule).
    let mut c = s.connect();
    let mut line = vec![b'y'; 3000];
    line.extend_from_slice(b"\r\n");
    let _ = c.stream.write_all(&line);
    let _ = drain(&mut c);
    bystander.ping();
    assert_healthy(&mut s);
}

#[test]
fn one_mib_multiget_line() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    // 104857 keys of 9 bytes: "get " + keys + one pad space + "\r\n" = exactly 1 MiB.
    let n = 104_857;
    let mut line = b"get".to_vec();
    for i in 0..n {
        line.extend_from_slice(format!(" key{i:06}").as_bytes());
    }
    line.extend_from_slice(b" \r\n");
    assert_eq!(line.len(), 1024 * 1024);
    for k in ["key000000", "key052000", "key104856"] {
        c.expect(&format!("set {k} 0 0 2\r\nhi\r\n"), "STORED\r\n");
    }
    let mut bystander = s.connect();
    c.expect_bytes(
        &line,
        b"VALUE key000000 0 2\r\nhi\r\nVALUE key052000 0 2\r\nhi\r\n\
          VALUE key104856 0 2\r\nhi\r\nEND\r\n",
    );
    bystander.ping();
    c.ping();
    assert_eq!(c.stat_u64("get_misses"), n as u64 - 3);
    assert_healthy(&mut s);
}

#[test]
fn oversized_lengths() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    for len in [
        "4294967295",
        "-1",
        "2147483647",
        "18446744073709551616",
        "abc",
    ] {
        c.expect(&format!("set k 0 0 {len}\r\n"), BAD_FORMAT);
        c.ping();
    }
    c.expect("get k\r\n", "END\r\n");
    assert_healthy(&mut s);
}

#[test]
fn bad_data_chunk() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    c.expect("set k 0 0 1\r\nold\r\n", "CLIENT_ERROR bad data chunk\r\n");
    // What follows the block (here "\r\n", an empty line) is read as the next command;
    // memcached 1.6.45 refuses a line that short as malformed.
    c.expect("get k\r\n", &format!("{BAD_FORMAT}END\r\n"));
    c.expect(
        "set k 0 0 3\r\nabcde\r\n",
        &format!("CLIENT_ERROR bad data chunk\r\n{BAD_FORMAT}"),
    );
    c.expect("set k 0 0 3\r\nabcXY", "CLIENT_ERROR bad data chunk\r\n");
    c.expect("get k\r\n", "END\r\n");
    c.ping();
    assert_healthy(&mut s);
}

#[test]
fn one_byte_at_a_time() {
    let mut s = Server::start(&[]);
    let port = s.port;
    let half = Arc::new(Barrier::new(2));
    let resume = Arc::new(Barrier::new(2));
    let (h, r) = (half.clone(), resume.clone());
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let req = b"set slow 0 0 11\r\nhello world\r\nget slow\r\n";
        let mid = 20; // inside the data block
        for (i, b) in req.iter().enumerate() {
            if i == mid {
                h.wait();
                r.wait();
            }
            stream.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let want = b"STORED\r\nVALUE slow 0 11\r\nhello world\r\nEND\r\n";
        let mut got = vec![0; want.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    });
    half.wait();
    // The slow client is halfway through its request; others are served meanwhile.
    let mut other = s.connect();
    for _ in 0..5 {
        other.ping();
    }
    other.expect("get slow\r\n", "END\r\n");
    resume.wait();
    slow.join().unwrap();
    other.expect("get slow\r\n", "VALUE slow 0 11\r\nhello world\r\nEND\r\n");
    assert_healthy(&mut s);
}

#[test]
fn pipelined_gets_never_read() {
    let mut s = Server::start(&[]);
    let value = vec![b'v'; 512 * 1024];
    let mut c = s.connect();
    let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    c.expect_bytes(&req, b"STORED\r\n");
    let rss_before = s.rss_kb();

    // The hog writes `get big` until the socket stays blocked, and never reads.
    let hog = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    hog.set_nonblocking(true).unwrap();
    let chunk = b"get big\r\n".repeat(1000);
    let mut sent_gets = 0usize;
    let mut blocked_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut off = 0;
    while Instant::now() < deadline && sent_gets < 500_000 {
        match (&hog).write(&chunk[off..]) {
            Ok(n) => {
                off += n;
                if off == chunk.len() {
                    off = 0;
                    sent_gets += 1000;
                }
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("hog write: {e}"),
        }
    }
    // The hog's replies would be sent_gets * 512 KiB; the server must not buffer them.
    let rss_after = s.rss_kb();
    println!(
        "hog sent {sent_gets} gets (replies would be {} MiB); RSS {} -> {} MiB",
        sent_gets / 2,
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(sent_gets >= 1000, "the hog got at least a thousand gets in");
    assert!(rss_after < 200 * 1024, "RSS {} KiB", rss_after);
    // Everyone else is served.
    let mut other = s.connect();
    other.ping();
    other.expect("set other 0 0 1\r\nx\r\n", "STORED\r\n");
    other.expect("get other\r\n", "VALUE other 0 1\r\nx\r\nEND\r\n");
    c.ping();
    assert_healthy(&mut s);
    drop(hog);
    std::thread::sleep(Duration::from_millis(200));
    assert_healthy(&mut s);
    assert!(s.rss_kb() < 200 * 1024);
}

/// Raise RLIMIT_NOFILE to at least `want`; returns the new soft limit or an error.
fn raise_nofile(want: u64) -> Result<u64, String> {
    // SAFETY: getrlimit/setrlimit write to/read from the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err("getrlimit failed".into());
        }
        if lim.rlim_cur >= want {
            return Ok(lim.rlim_cur);
        }
        let mut new = lim;
        new.rlim_cur = (want as libc::rlim_t).max(lim.rlim_cur);
        if lim.rlim_max < want {
            new.rlim_max = want as libc::rlim_t;
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
            // Could not raise the hard limit: take what the hard limit allows.
            let mut soft = lim;
            soft.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            return Err(format!(
                "cannot raise RLIMIT_NOFILE to {want} (hard limit {})",
                lim.rlim_max
            ));
        }
        Ok(new.rlim_cur)
    }
}

#[test]
fn ten_thousand_idle_connections() {
    const N: usize = 10_000;
    // This process holds N client sockets and the server N accepted ones; the server inherits
    // the limit when it is spawned below.
    if let Err(why) = raise_nofile(N as u64 + 1000) {
        println!("SKIPPED ten_thousand_idle_connections: {why}");
        return;
    }
    let mut s = Server::start(&["-c", "11000"]);
    let rss_start = s.rss_kb();
    let started = Instant::now();
    let mut idle = Vec::with_capacity(N);
    for i in 0..N {
        match TcpStream::connect(("127.0.0.1", s.port)) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    let connect_time = started.elapsed();
    let mut c = s.connect();
    // Wait for the server to have accepted them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut curr = 0;
    while Instant::now() < deadline {
        curr = c.stat_u64("curr_connections");
        if curr as usize > N {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(curr as usize > N, "curr_connections {curr}");
    c.expect("set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    let mut fresh = s.connect();
    fresh.expect("get k\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n");
    assert_eq!(c.stat("rejected_connections"), "0");
    let rss = s.rss_kb();
    println!(
        "{N} idle connections in {:?}: curr_connections={curr}, RSS {} -> {} MiB ({} B/conn)",
        connect_time,
        rss_start / 1024,
        rss / 1024,
        (rss.saturating_sub(rss_start) * 1024) / N as u64
    );
    assert!(rss < 200 * 1024, "RSS {rss} KiB with {N} idle connections");
    // A few of the idle ones still work.
    for stream in idle.iter().step_by(2500) {
        let mut st = stream;
        st.write_all(b"get k\r\n").unwrap();
        st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let want = b"VALUE k 0 5\r\nhello\r\nEND\r\n";
        let mut got = vec![0; want.len()];
        st.read_exact(&mut got).unwrap();
        assert_eq!(&got, want);
    }
    drop(idle);
    assert_healthy(&mut s);
}

#[test]
fn bad_command_line_flags_exit_nonzero() {
    let cases: &[(&[&str], &str)] = &[
        (&["-t", "0"], "-t 0"),
        (&["-c", "0"], "-c 0"),
        (&["-B", "http"], "-B http"),
        (&["-I", "1000"], "-I 1000"),
        (&["-l", "fooble"], "fooble"),
        (&["-Z"], "-Z"),
    ];
    let (tx, rx) = mpsc::channel();
    for (args, needle) in cases {
        let mut full: Vec<&str> = vec!["-p", "0"];
        if common::is_root() {
            full.extend(["-u", "root"]);
        }
        full.extend_from_slice(args);
        let (status, stderr) = run_to_exit(&full);
        tx.send(format!("{args:?}: {status}: {}", stderr.trim()))
            .unwrap();
        assert!(!status.success(), "{args:?} exited with {status}");
        assert!(
            stderr.contains(needle) && stderr.starts_with("memha:"),
            "{args:?}: message {stderr:?}"
        );
    }
    drop(tx);
    for line in rx {
        println!("{line}");
    }
}

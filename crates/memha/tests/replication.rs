//! Replication between real memha processes on loopback: every write type in both directions,
//! convergence under concurrent writes, CAS safety across nodes, links healing after resets
//! and black holes (partial and full resync), restarts, tombstones, local eviction, hostile
//! peers, a three-node mesh. Each test is one of repcached's failures, as measured by the team
//! before memha existed, turned around: memha must not repeat it.
//!
//! Faults are injected with the TCP proxy of `common/proxy.rs`, placed on one subscription
//! (a node dials its peer through the proxy), so one direction of data can be cut while the
//! other still flows. Conditions are polled with deadlines, never slept for.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::repl::*;
use common::{run_to_exit, Client, Server};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// What `mg <key> v f c t` says about an item.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    cas: u64,
    /// Remaining TTL in seconds, -1 = never expires.
    ttl: i64,
}

impl Item {
    /// Equal value, flags and CAS, and TTLs within a second of each other.
    fn same(&self, other: &Item) -> bool {
        self.value == other.value
            && self.flags == other.flags
            && self.cas == other.cas
            && if self.ttl < 0 || other.ttl < 0 {
                self.ttl == other.ttl
            } else {
                (self.ttl - other.ttl).abs() <= 1
            }
    }
}

fn item(c: &mut Client, key: &str) -> Option<Item> {
    c.send(format!("mg {key} v f c t\r\n").as_bytes());
    let head = c.line();
    if head == "EN\r\n" {
        return None;
    }
    let parts: Vec<&str> = head.trim_end().split(' ').collect();
    assert_eq!(parts[0], "VA", "mg reply {head:?}");
    let len: usize = parts[1].parse().unwrap();
    let mut it = Item {
        value: Vec::new(),
        flags: 0,
        cas: 0,
        ttl: 0,
    };
    for p in &parts[2..] {
        let (k, v) = p.split_at(1);
        match k {
            "f" => it.flags = v.parse().unwrap(),
            "c" => it.cas = v.parse().unwrap(),
            "t" => it.ttl = v.parse().unwrap(),
            _ => {}
        }
    }
    let mut data = c.read_exact(len + 2);
    data.truncate(len);
    it.value = data;
    Some(it)
}

/// Wait until `key` on `to` matches `key` on `from` (value, flags, CAS, TTL ±1 s, or both
/// missing), and return it.
fn wait_same(from: &Node, to: &Node, key: &str) -> Option<Item> {
    let (mut cf, mut ct) = (from.client(), to.client());
    let mut last = (None, None);
    let ok = poll(DEADLINE, || {
        let (x, y) = (item(&mut cf, key), item(&mut ct, key));
        let same = match (&x, &y) {
            (Some(x), Some(y)) => x.same(y),
            (None, None) => true,
            _ => false,
        };
        last = (x, y);
        same
    });
    assert!(
        ok,
        "key {key:?} differs: {} has {:?}, {} has {:?}",
        from.name, last.0, to.name, last.1
    );
    // gets agrees too.
    assert_eq!(gets(&mut cf, key), gets(&mut ct, key), "gets {key}");
    last.0
}

/// A replication secret file with `content`, removed on drop.
struct SecretFile(PathBuf);

impl SecretFile {
    fn new(content: &str) -> SecretFile {
        let path = std::env::temp_dir().join(format!(
            "memha-repl-secret-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&path, content).unwrap();
        SecretFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// Binary protocol packets.

/// A binary request packet.
fn bin_req(op: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let mut v = vec![0x80, op];
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.push(extras.len() as u8);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&cas.to_be_bytes());
    v.extend_from_slice(extras);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

/// Send a binary request, return (status, cas, value) of the response.
fn bin(c: &mut Client, packet: &[u8]) -> (u16, u64, Vec<u8>) {
    c.send(packet);
    let h = c.read_exact(24);
    assert_eq!(h[0], 0x81, "binary response magic in {h:?}");
    let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
    let extlen = h[4] as usize;
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let b = c.read_exact(body);
    (
        u16::from_be_bytes([h[6], h[7]]),
        u64::from_be_bytes(h[16..24].try_into().unwrap()),
        b[extlen + keylen..].to_vec(),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Every write type replicates both ways, with value, flags, TTL and CAS.

#[test]
fn every_write_type_replicates_both_ways() {
    let (a, b) = pair(&[], &[]);
    let (mut ca, mut cb) = (a.client(), b.client());

    // Text protocol, alternating the writing node.
    set(&mut ca, "k1", 5, 100, "v1");
    let k1 = wait_same(&a, &b, "k1").expect("k1 on B");
    assert_eq!((k1.value.as_slice(), k1.flags), (&b"v1"[..], 5));
    assert!((99..=100).contains(&k1.ttl), "ttl {}", k1.ttl);

    cb.expect("add k2 6 0 2\r\nv2\r\n", "STORED\r\n");
    wait_same(&b, &a, "k2").expect("k2 on A");
    ca.expect("add k2 6 0 2\r\nxx\r\n", "NOT_STORED\r\n");

    ca.expect("replace k1 7 200 4\r\nnew1\r\n", "STORED\r\n");
    let k1 = wait_same(&a, &b, "k1").unwrap();
    assert_eq!((k1.value.as_slice(), k1.flags), (&b"new1"[..], 7));

    cb.expect("append k1 0 0 4\r\n-app\r\n", "STORED\r\n");
    let k1 = wait_same(&b, &a, "k1").unwrap();
    assert_eq!(k1.value, b"new1-app");
    assert_eq!(k1.flags, 7, "append keeps the flags");

    ca.expect("prepend k1 0 0 4\r\npre-\r\n", "STORED\r\n");
    let k1 = wait_same(&a, &b, "k1").unwrap();
    assert_eq!(k1.value, b"pre-new1-app");

    let (_, _, unique) = gets(&mut cb, "k1").unwrap();
    cb.expect(&format!("cas k1 9 300 3 {unique}\r\ncas\r\n"), "STORED\r\n");
    let k1 = wait_same(&b, &a, "k1").unwrap();
    assert_eq!((k1.value.as_slice(), k1.flags), (&b"cas"[..], 9));
    assert!((299..=300).contains(&k1.ttl), "ttl {}", k1.ttl);
    assert_ne!(k1.cas, unique);

    // Counters (replicated as their value for now).
    set(&mut ca, "n", 3, 0, "10");
    wait_same(&a, &b, "n").unwrap();
    ca.expect("incr n 5\r\n", "15\r\n");
    assert_eq!(wait_same(&a, &b, "n").unwrap().value, b"15");
    cb.expect("decr n 3\r\n", "12\r\n");
    let n = wait_same(&b, &a, "n").unwrap();
    assert_eq!((n.value.as_slice(), n.flags), (&b"12"[..], 3));

    // Touch and gat change the TTL on both, not the CAS.
    let before = item(&mut ca, "k1").unwrap();
    ca.expect("touch k1 1000\r\n", "TOUCHED\r\n");
    let k1 = wait_same(&a, &b, "k1").unwrap();
    let mut cb2 = b.client();
    assert!(
        poll(DEADLINE, || item(&mut cb2, "k1").unwrap().ttl > 900),
        "touch did not reach B"
    );
    let k1 = wait_same(&a, &b, "k1").unwrap_or(k1);
    assert!((999..=1000).contains(&k1.ttl), "ttl after touch {}", k1.ttl);
    assert_eq!(k1.cas, before.cas, "touch keeps the CAS");

    cb.send(b"gat 500 k2\r\n");
    assert!(cb.line().starts_with("VALUE k2 6 2"));
    assert_eq!(cb.line(), "v2\r\n");
    assert_eq!(cb.line(), "END\r\n");
    let mut ca2 = a.client();
    assert!(
        poll(DEADLINE, || item(&mut ca2, "k2").unwrap().ttl > 400),
        "gat did not reach A"
    );
    let k2 = wait_same(&b, &a, "k2").unwrap();
    assert!((499..=500).contains(&k2.ttl), "ttl after gat {}", k2.ttl);

    ca.expect("delete k2\r\n", "DELETED\r\n");
    assert_eq!(wait_same(&a, &b, "k2"), None);
    cb.expect("delete k2\r\n", "NOT_FOUND\r\n");

    // Meta commands.
    cb.expect("ms m1 5 T60 F11\r\nmeta1\r\n", "HD\r\n");
    let m1 = wait_same(&b, &a, "m1").unwrap();
    assert_eq!((m1.value.as_slice(), m1.flags), (&b"meta1"[..], 11));
    assert!((59..=60).contains(&m1.ttl));

    ca.expect("ms m2 1 MA\r\nx\r\n", "NS\r\n");
    ca.expect("ms m1 2 MA\r\n-a\r\n", "HD\r\n");
    assert_eq!(wait_same(&a, &b, "m1").unwrap().value, b"meta1-a");

    cb.expect("ma mc N0 J7\r\n", "HD\r\n");
    assert_eq!(wait_same(&b, &a, "mc").unwrap().value, b"7");
    ca.expect("ma mc D3 v\r\n", "VA 2\r\n10\r\n");
    assert_eq!(wait_same(&a, &b, "mc").unwrap().value, b"10");
    cb.expect("ma mc MD D4 v\r\n", "VA 1\r\n6\r\n");
    assert_eq!(wait_same(&b, &a, "mc").unwrap().value, b"6");

    ca.expect("mg m1 T3000\r\n", "HD\r\n");
    assert!(
        poll(DEADLINE, || item(&mut cb2, "m1").unwrap().ttl > 2900),
        "mg T did not reach B"
    );
    let m1 = wait_same(&a, &b, "m1").unwrap();
    assert!((2999..=3000).contains(&m1.ttl));

    cb.expect("md m1\r\n", "HD\r\n");
    assert_eq!(wait_same(&b, &a, "m1"), None);

    // Binary protocol: Set, Incr, Delete (on connections of their own: the protocol is
    // chosen per connection).
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut extras = 0xabu32.to_be_bytes().to_vec();
    extras.extend_from_slice(&700u32.to_be_bytes());
    let (status, cas, _) = bin(&mut ca, &bin_req(0x01, &extras, b"bk", b"binval", 0));
    assert_eq!(status, 0);
    let bk = wait_same(&a, &b, "bk").unwrap();
    assert_eq!(
        (bk.value.as_slice(), bk.flags, bk.cas),
        (&b"binval"[..], 0xab, cas)
    );
    assert!((699..=700).contains(&bk.ttl));

    let mut incr = 5u64.to_be_bytes().to_vec();
    incr.extend_from_slice(&100u64.to_be_bytes());
    incr.extend_from_slice(&0u32.to_be_bytes());
    let (status, _, v) = bin(&mut cb, &bin_req(0x05, &incr, b"bn", b"", 0));
    assert_eq!(
        (status, v),
        (0, 100u64.to_be_bytes().to_vec()),
        "incr creates"
    );
    assert_eq!(wait_same(&b, &a, "bn").unwrap().value, b"100");
    let (status, _, v) = bin(&mut cb, &bin_req(0x05, &incr, b"bn", b"", 0));
    assert_eq!((status, v), (0, 105u64.to_be_bytes().to_vec()));
    assert_eq!(wait_same(&b, &a, "bn").unwrap().value, b"105");

    let (status, _, _) = bin(&mut ca, &bin_req(0x04, &[], b"bk", b"", 0));
    assert_eq!(status, 0);
    assert_eq!(wait_same(&a, &b, "bk"), None);

    // flush_all on B empties A too; writes after it still replicate.
    let (mut ca, mut cb) = (a.client(), b.client());
    for k in ["k1", "n", "mc", "bn"] {
        assert!(item(&mut ca, k).is_some(), "{k} on A before the flush");
    }
    cb.expect("flush_all\r\n", "OK\r\n");
    for k in ["k1", "n", "mc", "bn"] {
        wait_value(&a, k, None);
        wait_value(&b, k, None);
    }
    set(&mut ca, "after", 1, 0, "flush");
    assert_eq!(wait_same(&a, &b, "after").unwrap().value, b"flush");
    set(&mut cb, "after2", 1, 0, "flush");
    assert_eq!(wait_same(&b, &a, "after2").unwrap().value, b"flush");
}

// ---------------------------------------------------------------------------------------------
// 2. Two nodes started at the same moment pair (repcached: both listen, never pair).

#[test]
fn simultaneous_start_pairs() {
    let (pa, pb) = (free_port(), free_port());
    let ta = std::thread::spawn(move || Node::start("A", 1, pa, &[format!("127.0.0.1:{pb}")], &[]));
    let tb = std::thread::spawn(move || Node::start("B", 2, pb, &[format!("127.0.0.1:{pa}")], &[]));
    let (a, b) = (ta.join().unwrap(), tb.join().unwrap());
    wait_linked(&[&a, &b]);
    set(&mut a.client(), "from-a", 0, 0, "1");
    set(&mut b.client(), "from-b", 0, 0, "2");
    wait_value(&b, "from-a", Some(b"1"));
    wait_value(&a, "from-b", Some(b"2"));
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrent writes to the same keys converge (repcached: 33 % swapped values for good).

#[test]
fn concurrent_writes_converge() {
    let (a, b) = pair(&[], &[]);
    const KEYS: usize = 40;
    let run = Duration::from_millis(800);
    let writer = |node: &Node, tag: &'static str| {
        let mut c = node.client();
        move || {
            let end = Instant::now() + run;
            let mut n = 0usize;
            while Instant::now() < end {
                let key = format!("hot{}", n % KEYS);
                match n % 11 {
                    // Some deletes, so tombstones race with sets too.
                    7 => {
                        c.send(format!("delete {key}\r\n").as_bytes());
                        let l = c.line();
                        assert!(l == "DELETED\r\n" || l == "NOT_FOUND\r\n", "{l:?}");
                    }
                    // A shared counter.
                    3 => {
                        c.send(b"incr ctr 1\r\n");
                        let l = c.line();
                        if l == "NOT_FOUND\r\n" {
                            c.send(b"add ctr 0 0 1\r\n0\r\n");
                            let l = c.line();
                            assert!(l == "STORED\r\n" || l == "NOT_STORED\r\n", "{l:?}");
                        }
                    }
                    _ => set(&mut c, &key, n as u32, 0, &format!("{tag}-{n}")),
                }
                n += 1;
            }
            n
        }
    };
    let ta = std::thread::spawn(writer(&a, "A"));
    let tb = std::thread::spawn(writer(&b, "B"));
    let (na, nb) = (ta.join().unwrap(), tb.join().unwrap());
    assert!(na > 50 && nb > 50, "writers made {na} and {nb} writes");

    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("hot{i}"))
        .chain(["ctr".to_string()])
        .collect();
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut diff = Vec::new();
    let ok = poll(DEADLINE, || {
        diff = keys
            .iter()
            .filter_map(|k| {
                let (x, y) = (gets(&mut ca, k), gets(&mut cb, k));
                (x != y).then(|| format!("{k}: A {x:?} B {y:?}"))
            })
            .collect();
        diff.is_empty()
    });
    assert!(ok, "nodes diverged on {} keys: {:#?}", diff.len(), diff);
    // Both wrote: some keys should hold A's value and some B's, all with distinct versions.
    let present = keys.iter().filter(|k| gets(&mut ca, k).is_some()).count();
    assert!(present > 0, "every key ended deleted");
}

// ---------------------------------------------------------------------------------------------
// 4. A stale CAS never succeeds on the other node (repcached: reissued CAS ids, lost update).

#[test]
fn stale_cas_fails_on_the_other_node() {
    let (a, b) = pair(&[], &[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    set(&mut ca, "lock", 0, 0, "v0");
    let (_, _, old) = gets(&mut ca, "lock").unwrap();
    wait_value(&b, "lock", Some(b"v0"));
    assert_eq!(gets(&mut cb, "lock").unwrap().2, old, "same CAS on B");

    set(&mut ca, "lock", 0, 0, "v1");
    let (_, _, new) = gets(&mut ca, "lock").unwrap();
    assert_ne!(new, old);
    wait_value(&b, "lock", Some(b"v1"));
    assert_eq!(gets(&mut cb, "lock").unwrap().2, new);
    cb.expect(&format!("cas lock 0 0 5 {old}\r\nstale\r\n"), "EXISTS\r\n");
    ca.expect(&format!("cas lock 0 0 5 {old}\r\nstale\r\n"), "EXISTS\r\n");

    // The current unique works on B, and then the one A knew is stale on A.
    cb.expect(&format!("cas lock 0 0 2 {new}\r\nv2\r\n"), "STORED\r\n");
    let (_, _, newest) = gets(&mut cb, "lock").unwrap();
    assert!(newest != new && newest != old, "B issued a fresh unique");
    wait_value(&a, "lock", Some(b"v2"));
    assert_eq!(gets(&mut ca, "lock").unwrap().2, newest);
    ca.expect(&format!("cas lock 0 0 5 {new}\r\nstale\r\n"), "EXISTS\r\n");

    // Meta CAS too.
    ca.expect(&format!("ms lock 5 C{new}\r\nstale\r\n"), "EX\r\n");
    assert_eq!(gets(&mut ca, "lock").unwrap().0, b"v2");
    assert_eq!(gets(&mut cb, "lock").unwrap().0, b"v2");
}

// ---------------------------------------------------------------------------------------------
// 5. A link heals after a blip (repcached never re-paired), resuming from the backlog, or with
//    a full sync when the backlog overflowed during the cut.

#[test]
fn link_heals_after_reset_with_partial_resync() {
    let (a, b, proxy) = pair_with_proxy(&[], &[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    set(&mut cb, "before", 0, 0, "1");
    set(&mut cb, "doomed", 0, 0, "1");
    wait_value(&a, "before", Some(b"1"));
    wait_value(&a, "doomed", Some(b"1"));
    assert_eq!(a.repl_u64("peer0:full_syncs"), 1);

    // Cut: reset the link, and keep it silent while B writes.
    proxy.set_mode(Mode::BlackHole);
    proxy.reset_all();
    for i in 0..200 {
        set(&mut cb, &format!("cut{i}"), i, 0, &format!("v{i}"));
    }
    cb.expect("delete doomed\r\n", "DELETED\r\n");
    cb.expect("touch before 600\r\n", "TOUCHED\r\n");
    assert!(item(&mut ca, "cut0").is_none(), "nothing passes the cut");
    // A still accepts writes, and they still reach B (the other direction is intact).
    set(&mut ca, "from-a", 0, 0, "1");
    wait_value(&b, "from-a", Some(b"1"));

    proxy.set_mode(Mode::Pass);
    wait_until("A resubscribed", DEADLINE, || {
        a.repl_u64("peer0:connects") >= 2 && a.linked()
    });
    for i in 0..200 {
        wait_same(&b, &a, &format!("cut{i}"));
    }
    assert_eq!(wait_same(&b, &a, "doomed"), None);
    let before = wait_same(&b, &a, "before").unwrap();
    assert!(before.ttl > 500, "touch replicated after the heal");

    let r = a.repl();
    assert!(
        r["peer0:partial_syncs"].parse::<u64>().unwrap() >= 1,
        "no partial resync: {}",
        a.stats_dump()
    );
    assert_eq!(r["peer0:full_syncs"], "1", "the backlog kept everything");
    assert!(b.repl_u64("partial_syncs_served") >= 1);
    // Writes after the heal flow live.
    set(&mut cb, "after", 0, 0, "1");
    wait_value(&a, "after", Some(b"1"));
}

#[test]
fn sync_ack_stops_waiting_for_a_silent_peer_and_resumes_when_it_acknowledges() {
    // B acknowledges writes only once A applied them. When the link goes silent, the first
    // write waits the whole timeout with no acknowledgement arriving; from then on B answers
    // at once (counted) instead of making every write wait, until A acknowledges again.
    let (a, b, proxy) = pair_with_proxy(&[], &["--repl-ack", "sync"]);
    let mut cb = b.client();
    set(&mut cb, "before", 0, 0, "1");
    wait_value(&a, "before", Some(b"1"));
    assert!(b.repl_u64("sync_acked") >= 1);
    assert_eq!(b.repl_u64("sync_degraded"), 0);

    proxy.set_mode(Mode::BlackHole);
    for i in 0..20 {
        set(&mut cb, &format!("cut{i}"), 0, 0, "v");
    }
    let r = b.repl();
    let timeouts: u64 = r["sync_timeouts"].parse().unwrap();
    let degraded: u64 = r["sync_degraded_writes"].parse().unwrap();
    assert_eq!(r["sync_degraded"], "1", "{}", b.stats_dump());
    assert!(
        timeouts >= 1 && degraded >= 1 && timeouts + degraded >= 20,
        "20 writes to a silent peer: {timeouts} timed out, {degraded} answered at once\n{}",
        b.stats_dump()
    );
    assert!(
        degraded > timeouts,
        "most writes should not wait for a silent peer: {timeouts} waited the timeout"
    );

    proxy.set_mode(Mode::Pass);
    proxy.reset_all();
    wait_value(&a, "cut19", Some(b"v"));
    wait_until("B waits for A again", DEADLINE, || {
        b.repl_u64("sync_degraded") == 0
    });
    let acked = b.repl_u64("sync_acked");
    set(&mut cb, "after", 0, 0, "1");
    assert_eq!(b.repl_u64("sync_acked"), acked + 1, "{}", b.stats_dump());
}

#[test]
fn link_heals_with_full_sync_when_backlog_overflowed() {
    let (a, b, proxy) = pair_with_proxy(&[], &["--repl-backlog-mb", "1"]);
    let (mut ca, mut cb) = (a.client(), b.client());
    set(&mut cb, "before", 0, 0, "1");
    set(&mut cb, "doomed", 0, 0, "1");
    wait_value(&a, "before", Some(b"1"));
    wait_value(&a, "doomed", Some(b"1"));

    proxy.set_mode(Mode::BlackHole);
    proxy.reset_all();
    // More than the 1 MiB backlog while cut.
    let big = "x".repeat(8 * 1024);
    const N: usize = 300; // 2.4 MiB
    for i in 0..N {
        set(&mut cb, &format!("big{i}"), 0, 0, &format!("{i}-{big}"));
    }
    cb.expect("delete doomed\r\n", "DELETED\r\n");
    set(&mut cb, "last", 4, 0, "last");
    assert!(item(&mut ca, "big0").is_none(), "nothing passes the cut");
    assert!(
        b.repl_u64("backlog_dropped") > 0,
        "the backlog overflowed: {}",
        b.stats_dump()
    );

    proxy.set_mode(Mode::Pass);
    wait_until("A resubscribed", DEADLINE, || {
        a.repl_u64("peer0:connects") >= 2 && a.linked()
    });
    for i in 0..N {
        wait_same(&b, &a, &format!("big{i}"));
    }
    wait_same(&b, &a, "last").unwrap();
    wait_same(&b, &a, "before").unwrap();
    let (full, resync) = (a.repl_u64("peer0:full_syncs"), b.repl_u64("needs_resync"));
    assert!(
        full >= 2 || resync >= 1,
        "no full sync or resync counted: A {} / B {}",
        a.stats_dump(),
        b.stats_dump()
    );
    assert!(b.repl_u64("full_syncs_served") >= 2);
    set(&mut cb, "after", 0, 0, "1");
    wait_value(&a, "after", Some(b"1"));
    // The delete made during the cut must not be lost by the full sync.
    assert_eq!(
        wait_same(&b, &a, "doomed"),
        None,
        "a delete made while the link was cut survived the full sync"
    );
}

#[test]
fn flush_during_cut_survives_full_sync() {
    let (a, b, proxy) = pair_with_proxy(&[], &["--repl-backlog-mb", "1"]);
    let (mut ca, mut cb) = (a.client(), b.client());
    set(&mut cb, "before", 0, 0, "1");
    set(&mut ca, "before-a", 0, 0, "1");
    wait_value(&a, "before", Some(b"1"));
    wait_value(&b, "before-a", Some(b"1"));

    proxy.set_mode(Mode::BlackHole);
    proxy.reset_all();
    // B flushes while A cannot hear it, then writes past its 1 MiB backlog.
    cb.expect("flush_all\r\n", "OK\r\n");
    let big = "y".repeat(8 * 1024);
    for i in 0..300 {
        set(&mut cb, &format!("big{i}"), 0, 0, &big);
    }
    assert!(b.repl_u64("backlog_dropped") > 0, "{}", b.stats_dump());
    assert!(item(&mut cb, "before").is_none() && item(&mut cb, "before-a").is_none());

    proxy.set_mode(Mode::Pass);
    wait_until("A resubscribed", DEADLINE, || {
        a.repl_u64("peer0:connects") >= 2 && a.linked()
    });
    wait_same(&b, &a, "big299").unwrap();
    assert!(a.repl_u64("peer0:full_syncs") >= 2, "{}", a.stats_dump());
    // B's flush covered everything written before it, on every node.
    assert_eq!(
        wait_same(&b, &a, "before"),
        None,
        "an item flushed on B during the cut survived on A after the full sync"
    );
    assert_eq!(wait_same(&b, &a, "before-a"), None);
}

#[test]
fn link_survives_delay() {
    let (a, b, proxy) = pair_with_proxy(&[], &[]);
    proxy.set_mode(Mode::Delay(300));
    let mut cb = b.client();
    for i in 0..20 {
        set(&mut cb, &format!("slow{i}"), 0, 0, "v");
    }
    for i in 0..20 {
        wait_same(&b, &a, &format!("slow{i}"));
    }
    proxy.set_mode(Mode::Pass);
    assert_eq!(
        a.repl_u64("peer0:connects"),
        1,
        "a slow link is not dropped"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Restart: kill -9 a node; it is not ready until synced, then has everything.

#[test]
fn restarted_node_resyncs_before_ready() {
    let (pa, pb) = (free_port(), free_port());
    // B dials A through a proxy, so its sync can be held back after the restart.
    let proxy = Proxy::start(&format!("127.0.0.1:{pa}"));
    let a = Node::start("A", 1, pa, &[format!("127.0.0.1:{pb}")], &[]);
    let mut b = Node::start("B", 2, pb, &[proxy.addr()], &[]);
    wait_linked(&[&a, &b]);
    let mut ca = a.client();
    set(&mut ca, "a-before", 1, 0, "1");
    set(&mut b.client(), "b-before", 2, 0, "2");
    wait_value(&b, "a-before", Some(b"1"));
    wait_value(&a, "b-before", Some(b"2"));

    b.kill9();
    for i in 0..100 {
        set(&mut ca, &format!("down{i}"), i, 0, &format!("d{i}"));
    }
    ca.expect("delete b-before\r\n", "DELETED\r\n");

    proxy.set_mode(Mode::Refuse);
    b.restart();
    let r = b.repl();
    assert_eq!(r["ready"], "0", "B is not ready before its sync: {r:?}");
    assert_ne!(r["peer0:state"], "streaming");
    proxy.set_mode(Mode::Pass);
    let mut cb = b.client();
    wait_until("B ready", DEADLINE, || b.repl_str("ready") == "1");
    // Ready means synced: everything is there the moment B says so.
    for i in 0..100 {
        let (v, f, _) = gets(&mut cb, &format!("down{i}")).expect("down key on B when ready");
        assert_eq!((v, f), (format!("d{i}").into_bytes(), i));
    }
    assert!(gets(&mut cb, "a-before").is_some());
    assert!(gets(&mut cb, "b-before").is_none());
    assert!(b.repl_u64("peer0:full_syncs") >= 1);

    // A resubscribes to the new B and gets its writes.
    set(&mut cb, "b-after", 0, 0, "3");
    wait_value(&a, "b-after", Some(b"3"));
    for k in ["a-before", "b-before", "b-after", "down0", "down99"] {
        wait_same(&a, &b, k);
    }
}

/// A counter survives a node's restart: the full sync that refills the restarted node, and
/// the one it then serves back, carry the counter as its base and per-node contributions,
/// so increments made on either node while the other was away are all kept (as a plain
/// value, the total would become a new base and wipe the contributions it did not include).
#[test]
fn counters_survive_a_restart_and_both_full_syncs() {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start("A", 1, pa, &[format!("127.0.0.1:{pb}")], &[]);
    let mut b = Node::start("B", 2, pb, &[format!("127.0.0.1:{pa}")], &[]);
    wait_linked(&[&a, &b]);
    let mut ca = a.client();
    let mut cb = b.client();
    set(&mut ca, "hits", 0, 0, "0");
    wait_value(&b, "hits", Some(b"0"));
    let mut acked = 0u64;
    for _ in 0..50 {
        ca.send(b"incr hits 1\r\n");
        ca.line();
        cb.send(b"incr hits 1\r\n");
        cb.line();
        acked += 2;
    }
    quiesce(&[&a, &b]);

    b.kill9();
    for _ in 0..30 {
        ca.send(b"incr hits 1\r\n");
        ca.line();
        acked += 1;
    }
    b.restart();
    wait_until("B ready", DEADLINE, || b.repl_str("ready") == "1");
    let mut cb = b.client();
    // Both nodes keep counting while A resubscribes to the new B (a full sync from B).
    for _ in 0..40 {
        ca.send(b"incr hits 1\r\n");
        ca.line();
        cb.send(b"incr hits 1\r\n");
        cb.line();
        acked += 2;
    }
    wait_linked(&[&a, &b]);
    quiesce(&[&a, &b]);
    let want = acked.to_string();
    wait_value(&a, "hits", Some(want.as_bytes()));
    wait_value(&b, "hits", Some(want.as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// 7. A delete is not undone by an older write arriving late; a newer write beats an older
//    delete.

#[test]
fn tombstone_beats_late_older_write() {
    let (a, b, proxy) = pair_with_proxy(&[], &[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    set(&mut ca, "k", 0, 0, "v0");
    set(&mut ca, "j", 0, 0, "j0");
    wait_value(&b, "k", Some(b"v0"));
    wait_value(&b, "j", Some(b"j0"));

    // Hold B's writes on their way to A (the connection stays up).
    proxy.set_mode(Mode::BlackHole);
    set(&mut cb, "k", 0, 0, "old-from-b");
    cb.expect("delete j\r\n", "DELETED\r\n");
    std::thread::sleep(Duration::from_millis(5)); // a later millisecond for A's versions
    let seq_b = b.repl_u64("backlog_last_seq");
    // A deletes k and sets j after B's writes, so A's versions are newer.
    ca.expect("delete k\r\n", "DELETED\r\n");
    set(&mut ca, "j", 0, 0, "j-from-a");
    // A → B is intact: B drops its k and takes A's j.
    wait_value(&b, "k", None);
    wait_value(&b, "j", Some(b"j-from-a"));
    assert!(item(&mut ca, "j").is_some_and(|i| i.value == b"j-from-a"));

    // Release B's older writes: A has applied them (they were stale) and keeps its state.
    proxy.set_mode(Mode::Pass);
    wait_until("A applied B's held writes", DEADLINE, || {
        a.repl_u64("peer0:applied_seq") >= seq_b
    });
    assert!(a.repl_u64("peer0:writes_stale") >= 2, "{}", a.stats_dump());
    assert_eq!(
        a.repl_u64("peer0:connects"),
        1,
        "the link was held, not cut"
    );
    assert_eq!(wait_same(&a, &b, "k"), None, "the delete won on both");
    assert_eq!(wait_same(&a, &b, "j").unwrap().value, b"j-from-a");
}

// ---------------------------------------------------------------------------------------------
// 8. Eviction stays local (repcached 1.4: evictions deleted the key on the peer).

#[test]
fn eviction_is_not_replicated() {
    let (a, b) = pair(&["-m", "2"], &["-m", "64"]);
    let mut ca = a.client();
    let value = "e".repeat(4000);
    let mut n = 0;
    while ca.stat_u64("evictions") == 0 {
        assert!(n < 5000, "no eviction on A after {n} writes of 4 KB");
        for _ in 0..50 {
            set(&mut ca, &format!("ev{n}"), 0, 0, &value);
            n += 1;
        }
    }
    // The last write has reached B; then B must hold every key.
    wait_value(&b, &format!("ev{}", n - 1), Some(value.as_bytes()));
    let mut cb = b.client();
    let evicted: Vec<usize> = (0..n)
        .filter(|i| gets(&mut ca, &format!("ev{i}")).is_none())
        .collect();
    assert!(!evicted.is_empty(), "A evicted something");
    for i in 0..n {
        assert!(
            gets(&mut cb, &format!("ev{i}")).is_some(),
            "B lost ev{i} (evicted on A: {})",
            evicted.contains(&i)
        );
    }
    assert_eq!(cb.stat_u64("evictions"), 0);
}

// ---------------------------------------------------------------------------------------------
// 9. Hostile peers get nothing (repcached: anyone connecting got a full dump).

/// Read whatever a connection sends until it closes or `timeout` passes.
fn drain(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

#[test]
fn garbage_on_the_replication_port_is_dropped() {
    let (a, _b) = pair(&[], &[]);
    set(&mut a.client(), "secret0", 0, 0, "password0");
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"rep secret0 0 0 3 1\r\nbad\r\n",
        b"\x00\x00\x00\x05\x63hello",
        b"\xff\xff\xff\xff\x01",
    ] {
        let before = a.repl_u64("protocol_errors") + a.repl_u64("auth_failures");
        let mut s = TcpStream::connect(("127.0.0.1", a.repl_port)).unwrap();
        s.write_all(garbage).unwrap();
        let (got, closed) = drain(&mut s, Duration::from_secs(8));
        assert!(closed, "{garbage:?}: still connected");
        assert!(
            !got.windows(9).any(|w| w == b"password0") && !got.windows(7).any(|w| w == b"secret0"),
            "{garbage:?}: cache data leaked: {got:?}"
        );
        wait_until("the garbage is counted", DEADLINE, || {
            a.repl_u64("protocol_errors") + a.repl_u64("auth_failures") > before
        });
    }
    assert!(gets(&mut a.client(), "secret0").is_some_and(|v| v.0 == b"password0"));
    assert!(a.linked(), "the real peer link is unaffected");
}

#[test]
fn a_client_without_the_secret_gets_nothing() {
    use memha_repl::frame::{decode, encode, Decoded, Frame, Op};
    use memha_repl::handshake::{Dialer, Identity};

    let secret = SecretFile::new("correct horse battery staple 42");
    let (a, _b) = pair(
        &["--repl-secret-file", secret.path()],
        &["--repl-secret-file", secret.path()],
    );
    set(&mut a.client(), "secret0", 0, 0, "password0");
    // A rogue that speaks the protocol but does not know the secret.
    let rogue = Dialer::start(
        Identity {
            cluster: b"memha".to_vec(),
            node_id: 77,
            secret: Some(b"not the secret, but long enough".to_vec()),
        },
        [7; 16],
        0,
    );
    let mut s = TcpStream::connect(("127.0.0.1", a.repl_port)).unwrap();
    let mut out = Vec::new();
    encode(&rogue.hello(), &mut out).unwrap();
    s.write_all(&out).unwrap();
    // The only thing it receives is a challenge, which it cannot answer.
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut inbuf = Vec::new();
    let mut buf = [0u8; 4096];
    let challenge_len = loop {
        if let Decoded::Frame { frame, consumed } = decode(&inbuf) {
            assert!(matches!(frame, Frame::Challenge { .. }), "{frame:?}");
            assert!(
                rogue.on_challenge(&frame, |_| None).is_err(),
                "MAC accepted"
            );
            break consumed;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the challenge");
        inbuf.extend_from_slice(&buf[..n]);
    };
    inbuf.drain(..challenge_len);
    // Answer with a made-up proof, then try to inject a write.
    let before = a.repl_u64("auth_failures");
    out.clear();
    encode(
        &Frame::Auth {
            mac: [0x5a; 32],
            epoch: 0,
            seq: 0,
        },
        &mut out,
    )
    .unwrap();
    encode(
        &Frame::Write {
            origin: 77,
            seq: 1,
            op: Op::Set {
                key: b"injected",
                flags: 0,
                exptime: 0,
                version: u64::MAX / 2,
                value: b"evil",
            },
        },
        &mut out,
    )
    .unwrap();
    s.write_all(&out).unwrap();
    let (got, closed) = drain(&mut s, Duration::from_secs(8));
    inbuf.extend_from_slice(&got);
    assert!(closed, "the rogue is still connected");
    assert!(
        inbuf.is_empty(),
        "the rogue received {} more bytes",
        inbuf.len()
    );
    wait_until("auth failure counted", DEADLINE, || {
        a.repl_u64("auth_failures") > before
    });
    assert!(
        gets(&mut a.client(), "injected").is_none(),
        "a write was injected"
    );
}

#[test]
fn wrong_secret_never_pairs() {
    let (sa, sb) = (
        SecretFile::new("the secret of node A, 32 bytes.."),
        SecretFile::new("a different secret held by node B"),
    );
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start(
        "A",
        1,
        pa,
        &[format!("127.0.0.1:{pb}")],
        &["--repl-secret-file", sa.path()],
    );
    let b = Node::start(
        "B",
        2,
        pb,
        &[format!("127.0.0.1:{pa}")],
        &["--repl-secret-file", sb.path()],
    );
    set(&mut a.client(), "from-a", 0, 0, "1");
    set(&mut b.client(), "from-b", 0, 0, "1");
    // Several attempts each way are refused, and no link ever streams.
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut attempts = 0;
    wait_until("repeated auth failures on both", DEADLINE, || {
        for n in [&a, &b] {
            let r = n.repl();
            assert_ne!(r["peer0:state"], "streaming", "{}: {r:?}", n.name);
            assert_ne!(r["peer0:state"], "syncing", "{}: {r:?}", n.name);
            assert_eq!(r["peer0:connects"], "0");
        }
        assert!(gets(&mut ca, "from-b").is_none(), "B's write reached A");
        assert!(gets(&mut cb, "from-a").is_none(), "A's write reached B");
        attempts += 1;
        attempts > 20 && a.repl_u64("auth_failures") >= 2 && b.repl_u64("auth_failures") >= 2
    });
    assert!(
        a.repl_str("peer0:last_error").contains("secret"),
        "the error names the cause: {}",
        a.stats_dump()
    );
}

#[test]
fn non_loopback_peer_without_secret_is_refused() {
    let port = free_port().to_string();
    let (status, err) = run_to_exit(&["-p", "0", "-l", "127.0.0.1", "-X", &port, "-x", "10.9.9.9"]);
    assert!(!status.success(), "started: {err}");
    assert!(
        err.contains("10.9.9.9") && err.contains("secret"),
        "message: {err:?}"
    );
    // A secret shorter than 16 bytes is refused too.
    let short = SecretFile::new("short");
    let (status, err) = run_to_exit(&[
        "-p",
        "0",
        "-l",
        "127.0.0.1",
        "-X",
        &port,
        "-x",
        "10.9.9.9",
        "--repl-secret-file",
        short.path(),
    ]);
    assert!(!status.success(), "started with a 5-byte secret: {err}");
    assert!(err.contains("16"), "message: {err:?}");
}

#[test]
fn same_node_id_is_reported_not_paired() {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start("A", 5, pa, &[format!("127.0.0.1:{pb}")], &[]);
    let b = Node::start("B", 5, pb, &[format!("127.0.0.1:{pa}")], &[]);
    // Each side refuses the other's subscription (counted as an authentication failure) and
    // the links never carry data.
    wait_until("the id clash is refused on both sides", DEADLINE, || {
        a.repl_u64("auth_failures") >= 2 && b.repl_u64("auth_failures") >= 2
    });
    set(&mut a.client(), "from-a", 0, 0, "1");
    for n in [&a, &b] {
        let r = n.repl();
        assert_eq!(r["peer0:connects"], "0", "{}: {r:?}", n.name);
        assert_ne!(r["peer0:state"], "streaming", "{}: {r:?}", n.name);
    }
    assert!(gets(&mut b.client(), "from-a").is_none());
}

// ---------------------------------------------------------------------------------------------
// 10. Three nodes, full mesh (repcached: one peer only).

#[test]
fn three_node_mesh() {
    let ports = [free_port(), free_port(), free_port()];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    // One node lists its peers comma-separated, the others repeat -x.
    let a = Node::start("A", 1, ports[0], &[format!("{},{}", addr(1), addr(2))], &[]);
    let b = Node::start("B", 2, ports[1], &[addr(0), addr(2)], &[]);
    let c = Node::start("C", 3, ports[2], &[addr(0), addr(1)], &[]);
    let nodes = [&a, &b, &c];
    wait_linked(&nodes);
    for n in nodes {
        assert_eq!(n.repl_str("peer1:state"), "streaming", "{}", n.name);
    }
    for (i, from) in nodes.iter().enumerate() {
        set(&mut from.client(), &format!("k{i}"), i as u32, 0, from.name);
    }
    for (i, from) in nodes.iter().enumerate() {
        for to in nodes {
            wait_value(to, &format!("k{i}"), Some(from.name.as_bytes()));
            wait_same(from, to, &format!("k{i}"));
        }
    }
    c.client().expect("delete k0\r\n", "DELETED\r\n");
    for n in nodes {
        wait_value(n, "k0", None);
    }
}

/// A node whose peers are partly down still becomes ready once the reachable ones synced
/// (design: "until each reachable peer finished a resync, or ready_grace passed").
#[test]
fn ready_with_one_peer_down() {
    let ports = [free_port(), free_port(), free_port()];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    // C (ports[2]) never starts.
    let a = Node::start("A", 1, ports[0], &[addr(1), addr(2)], &[]);
    let b = Node::start("B", 2, ports[1], &[addr(0), addr(2)], &[]);
    wait_until("A and B linked to each other", DEADLINE, || {
        a.repl_str("peer0:state") == "streaming" && b.repl_str("peer0:state") == "streaming"
    });
    set(&mut a.client(), "k", 0, 0, "v");
    wait_value(&b, "k", Some(b"v"));
    for n in [&a, &b] {
        assert!(
            poll(DEADLINE, || n.repl_str("ready") == "1"),
            "{} never became ready with one peer of two down: {}",
            n.name,
            n.stats_dump()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 11. Without replication, `stats replication` says so.

#[test]
fn stats_replication_disabled() {
    let s = Server::start(&[]);
    s.connect().expect(
        "stats replication\r\n",
        "STAT replication disabled\r\nEND\r\n",
    );
}

//! Acceptance tests for replication: repcached's failures, as the team measured them before
//! memha existed, at their measured scale, each turned into a
//! pass/fail criterion for memha, with the figure behind it printed (`--nocapture`).
//!
//! | repcached | here |
//! |---|---|
//! | 66 of 200 same-instant writes diverged for good | `same_key_same_instant_200_trials`: 0 |
//! | 5,000 + 5,000 concurrent `incr` ended at 5,823 | `concurrent_incr_loses_nothing`: 10,000 |
//! | a link reset never re-paired | `link_reset_repairs_within_1s_with_partial_resync` |
//! | a 5 s black hole with 20k writes: 14,245 arrived | `black_hole_5s_20000_writes`: 20,000 |
//! | kill -9 lost up to 16,378 acknowledged writes | `kill9_sync_ack_loses_no_acknowledged_write` |
//! | one peer only | `three_node_mesh_mixed_concurrent_writes` |
//!
//! Nodes run on loopback; faults go through the proxy of `common/proxy.rs`. Conditions are
//! polled with deadlines; nothing asserts a duration except the 1 s re-pair criterion.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::proxy::Mode;
use common::repl::{
    differences, free_port, gets, gets_many, num, pair, pair_with_proxies, pair_with_proxy,
    pipeline, poll, poll_every, quiesce, set, wait_linked, wait_until, wait_value, Node, RawConn,
    DEADLINE,
};

/// `prefix0` … `prefix{n-1}`.
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A small deterministic generator (xorshift64*), so each run's op mix is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// repcached: 66 of 200 trials (33 %) diverged for good (values swapped).

#[test]
fn same_key_same_instant_200_trials() {
    const TRIALS: usize = 200;
    let (a, b) = pair(&[], &[]);
    let barrier = Arc::new(Barrier::new(2));
    let racer = |node: &Node, tag: &'static str| {
        let mut c = node.client();
        let barrier = barrier.clone();
        move || {
            for t in 0..TRIALS {
                let value = format!("{tag}-{t}");
                let req = format!("set race{t} 0 0 {}\r\n{value}\r\n", value.len());
                barrier.wait();
                c.expect(&req, "STORED\r\n");
            }
        }
    };
    let ta = thread::spawn(racer(&a, "A"));
    let tb = thread::spawn(racer(&b, "B"));
    ta.join().unwrap();
    tb.join().unwrap();

    quiesce(&[&a, &b]);
    let keys = keys("race", TRIALS);
    let (sa, sb) = (
        gets_many(&mut a.client(), &keys),
        gets_many(&mut b.client(), &keys),
    );
    let diverged = differences(&keys, ("A", &sa), ("B", &sb));
    let mut won = HashMap::new();
    for (t, k) in keys.iter().enumerate() {
        let (v, _, _) = sa.get(k).unwrap_or_else(|| panic!("{k} missing on A"));
        let v = String::from_utf8_lossy(v).into_owned();
        assert!(
            v == format!("A-{t}") || v == format!("B-{t}"),
            "{k} = {v:?}"
        );
        *won.entry(v[..1].to_string()).or_insert(0) += 1;
    }
    println!(
        "same key, same instant: {TRIALS} trials, diverged = {} (A's write won {}, B's won {})",
        diverged.len(),
        won.get("A").unwrap_or(&0),
        won.get("B").unwrap_or(&0)
    );
    assert!(
        diverged.is_empty(),
        "{} of {TRIALS} trials diverged: {:#?}",
        diverged.len(),
        diverged
    );
}

// ---------------------------------------------------------------------------------------------
// repcached: 5,000 incr on each node ended at 5,823 on both (42 % of the increments lost).

#[test]
fn concurrent_incr_loses_nothing() {
    const PER_NODE: usize = 5_000;
    const BATCH: usize = 50;
    let (a, b) = pair(&[], &[]);
    set(&mut a.client(), "ctr", 0, 0, "0");
    wait_value(&b, "ctr", Some(b"0"));

    let barrier = Arc::new(Barrier::new(2));
    let incrementer = |node: &Node| {
        let mut c = node.client();
        let barrier = barrier.clone();
        move || {
            let batch = vec!["incr ctr 1\r\n".to_string(); BATCH];
            barrier.wait();
            for _ in 0..PER_NODE / BATCH {
                for reply in pipeline(&mut c, &batch) {
                    assert!(
                        reply.trim_end().parse::<u64>().is_ok(),
                        "incr reply {reply:?}"
                    );
                }
            }
        }
    };
    let ta = thread::spawn(incrementer(&a));
    let tb = thread::spawn(incrementer(&b));
    ta.join().unwrap();
    tb.join().unwrap();

    quiesce(&[&a, &b]);
    let value = |n: &Node| {
        let (v, _, cas) = gets(&mut n.client(), "ctr").expect("ctr present");
        (String::from_utf8(v).unwrap(), cas)
    };
    let (va, vb) = (value(&a), value(&b));
    let want = (2 * PER_NODE).to_string();
    println!(
        "concurrent incr: A = {} (cas {}), B = {} (cas {}), expected {want}; lost {}",
        va.0,
        va.1,
        vb.0,
        vb.1,
        2 * PER_NODE as i64 - va.0.parse::<i64>().unwrap_or(0)
    );
    assert_eq!(va, vb, "the nodes diverged");
    assert_eq!(va.0, want, "increments were lost");
}

// ---------------------------------------------------------------------------------------------
// repcached: after a link reset both nodes listen and never re-pair (split brain).

#[test]
fn link_reset_repairs_within_1s_with_partial_resync() {
    let (a, b, to_b, to_a) = pair_with_proxies(&[], &[]);
    for n in [&a, &b] {
        assert_eq!(n.repl_u64("peer0:full_syncs"), 1, "{}", n.stats_dump());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = |node: &Node, prefix: &'static str| {
        let mut c = node.client();
        let stop = stop.clone();
        let done = Arc::new(AtomicUsize::new(0));
        let progress = done.clone();
        let t = thread::spawn(move || {
            let mut i = 0;
            while !stop.load(SeqCst) {
                set(
                    &mut c,
                    &format!("{prefix}{i}"),
                    i as u32,
                    0,
                    &format!("v{i}"),
                );
                i += 1;
                done.store(i, SeqCst);
            }
            i
        });
        (t, progress)
    };
    let (ta, pa) = writer(&a, "ra");
    let (tb, pb) = writer(&b, "rb");
    wait_until("both writers under way", DEADLINE, || {
        pa.load(SeqCst) >= 200 && pb.load(SeqCst) >= 200
    });

    // Reset both directions at once, mid-stream.
    to_b.reset_all();
    to_a.reset_all();
    let cut = Instant::now();
    let repaired = poll_every(Duration::from_millis(2), DEADLINE, || {
        [&a, &b].iter().all(|n| {
            let r = n.repl();
            num(&r, "peer0:connects") >= 2
                && r.get("peer0:state").map(String::as_str) == Some("streaming")
        })
    });
    let took = cut.elapsed();
    assert!(
        repaired,
        "never re-paired: A {} / B {}",
        a.stats_dump(),
        b.stats_dump()
    );
    // Keep writing a little after the re-pair, then stop.
    let (ma, mb) = (pa.load(SeqCst), pb.load(SeqCst));
    wait_until("writes after the re-pair", DEADLINE, || {
        pa.load(SeqCst) >= ma + 200 && pb.load(SeqCst) >= mb + 200
    });
    stop.store(true, SeqCst);
    let (na, nb) = (ta.join().unwrap(), tb.join().unwrap());

    quiesce(&[&a, &b]);
    let all: Vec<String> = keys("ra", na).into_iter().chain(keys("rb", nb)).collect();
    let (sa, sb) = (
        gets_many(&mut a.client(), &all),
        gets_many(&mut b.client(), &all),
    );
    let (ra, rb) = (a.repl(), b.repl());
    println!(
        "link reset: re-paired in {} ms; writes A {na} B {nb}; present A {} B {}; \
         partial_syncs A {} B {}; full_syncs A {} B {}",
        took.as_millis(),
        sa.len(),
        sb.len(),
        num(&ra, "peer0:partial_syncs"),
        num(&rb, "peer0:partial_syncs"),
        num(&ra, "peer0:full_syncs"),
        num(&rb, "peer0:full_syncs"),
    );
    assert!(
        took <= Duration::from_secs(1),
        "re-paired only after {took:?}"
    );
    for (name, s) in [("A", &sa), ("B", &sb)] {
        let missing: Vec<_> = all.iter().filter(|k| !s.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "{name} lacks {} writes, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    let diff = differences(&all, ("A", &sa), ("B", &sb));
    assert!(
        diff.is_empty(),
        "{} keys differ: {:?}",
        diff.len(),
        &diff[..diff.len().min(5)]
    );
    for (name, r) in [("A", &ra), ("B", &rb)] {
        assert!(
            num(r, "peer0:partial_syncs") >= 1,
            "{name}: no partial resync counted: {r:?}"
        );
        assert_eq!(
            num(r, "peer0:full_syncs"),
            1,
            "{name}: a full sync was needed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// repcached: a 5 s black hole with 20,000 writes overflowed the queue; 14,245 arrived and the
// link stayed down.

#[test]
fn black_hole_5s_20000_writes() {
    const N: usize = 20_000;
    const BATCH: usize = 200;
    let hole = Duration::from_secs(5);
    // B's writes reach A through the proxy.
    let (a, b, proxy) = pair_with_proxy(&[], &[]);
    let before = a.repl();
    let value = "v".repeat(100);

    proxy.set_mode(Mode::BlackHole);
    let start = Instant::now();
    let mut cb = b.client();
    // 20,000 pipelined sets spread over the 5 s.
    let batches = N / BATCH;
    for batch in 0..batches {
        let reqs: Vec<String> = (batch * BATCH..(batch + 1) * BATCH)
            .map(|i| format!("set bh{i} 0 0 {}\r\n{value}\r\n", value.len()))
            .collect();
        for r in pipeline(&mut cb, &reqs) {
            assert_eq!(r, "STORED\r\n");
        }
        let due = start + hole * (batch as u32 + 1) / (batches as u32 + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    if let Some(wait) = (start + hole).checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    assert!(
        gets(&mut a.client(), &format!("bh{}", N - 1)).is_none(),
        "the last write crossed the black hole"
    );
    let wrote = start.elapsed();

    proxy.set_mode(Mode::Pass);
    let healed = Instant::now();
    let all = keys("bh", N);
    let mut ca = a.client();
    let mut present = 0;
    let arrived = poll(Duration::from_secs(20), || {
        present = gets_many(&mut ca, &all).len();
        present == N
    });
    let took = healed.elapsed();
    assert!(
        arrived,
        "only {present} of {N} writes reached A: {}",
        a.stats_dump()
    );
    quiesce(&[&a, &b]);
    let (sa, sb) = (gets_many(&mut ca, &all), gets_many(&mut b.client(), &all));
    let diff = differences(&all, ("A", &sa), ("B", &sb));
    assert!(
        diff.is_empty(),
        "{} keys differ: {:?}",
        diff.len(),
        &diff[..diff.len().min(5)]
    );

    let after = a.repl();
    let delta = |k: &str| num(&after, k) - num(&before, k);
    let (partial, full, connects) = (
        delta("peer0:partial_syncs"),
        delta("peer0:full_syncs"),
        delta("peer0:connects"),
    );
    let kind = match (partial, full) {
        (0, 0) => "none",
        (_, 0) => "partial",
        (0, _) => "full",
        _ => "partial and full",
    };
    println!(
        "black hole {:.1} s, {N} writes on B: A holds {} and B {}; all on A {} ms after the \
         heal; resync: {kind} (partial +{partial}, full +{full}, reconnects +{connects}, \
         B backlog_dropped {}, needs_resync {})",
        wrote.as_secs_f64(),
        sa.len(),
        sb.len(),
        took.as_millis(),
        b.repl_u64("backlog_dropped"),
        b.repl_u64("needs_resync"),
    );
    assert!(
        partial + full >= 1,
        "no resync visible in stats replication: {}",
        a.stats_dump()
    );
}

// ---------------------------------------------------------------------------------------------
// repcached: kill -9 during a pipelined burst lost 0 / 7,536 / 16,378 acknowledged writes.

/// What happened to one burst interrupted by `kill -9`.
struct Burst {
    acked: usize,
    missing: Vec<usize>,
    sync_timeouts: u64,
    sync_no_peer: u64,
}

/// Pair two nodes with `--repl-ack ack`, pipeline sets of 100 B to A, `kill -9` A once
/// `kill_after` have been acknowledged, and count the acknowledged keys B lacks.
fn kill9_mid_burst(ack: &str, kill_after: usize) -> Burst {
    const BATCH: usize = 100;
    const MAX: usize = 1_000_000;
    let (mut a, b) = pair(&["--repl-ack", ack], &["--repl-ack", ack]);
    assert_eq!(a.repl_str("ack"), ack);
    let mut conn = RawConn::connect(a.server.port);
    let mut out = conn.writer.try_clone().unwrap();
    let value = "k".repeat(100);
    let writer = thread::spawn(move || {
        let mut sent = 0;
        while sent < MAX {
            let mut buf = Vec::with_capacity(BATCH * 130);
            for i in sent..sent + BATCH {
                buf.extend_from_slice(format!("set kb{i} 0 0 100\r\n{value}\r\n").as_bytes());
            }
            if out.write_all(&buf).is_err() {
                break;
            }
            sent += BATCH;
        }
        sent
    });
    let acked = Arc::new(AtomicUsize::new(0));
    let reader = {
        let acked = acked.clone();
        thread::spawn(move || {
            // Replies come in request order: the n-th STORED acknowledges kb{n}.
            while let Some(line) = conn.line() {
                assert_eq!(line, "STORED\r\n", "reply {}", acked.load(SeqCst));
                acked.fetch_add(1, SeqCst);
            }
        })
    };
    wait_until("the burst under way", DEADLINE, || {
        acked.load(SeqCst) >= kill_after
    });
    let last = a.repl();
    a.kill9();
    reader.join().unwrap();
    let sent = writer.join().unwrap();
    let acked = acked.load(SeqCst);
    assert!(
        acked < sent,
        "the burst ended before the kill ({acked} of {sent})"
    );

    // B has applied whatever reached it once it noticed A is gone.
    wait_until("B noticed A's death", DEADLINE, || {
        b.repl_str("peer0:state") != "streaming"
    });
    let held = gets_many(&mut b.client(), &keys("kb", acked));
    let missing: Vec<usize> = (0..acked)
        .filter(|i| !held.contains_key(&format!("kb{i}")))
        .collect();
    Burst {
        acked,
        missing,
        sync_timeouts: num(&last, "sync_timeouts"),
        sync_no_peer: num(&last, "sync_no_peer"),
    }
}

#[test]
fn kill9_sync_ack_loses_no_acknowledged_write() {
    let sync = kill9_mid_burst("sync", 20_000);
    println!(
        "kill -9, --repl-ack sync: {} acknowledged, {} missing on B (A's sync_timeouts {}, \
         sync_no_peer {} shortly before the kill)",
        sync.acked,
        sync.missing.len(),
        sync.sync_timeouts,
        sync.sync_no_peer
    );
    let asynch = kill9_mid_burst("async", 20_000);
    println!(
        "kill -9, --repl-ack async: {} acknowledged, {} missing on B{}",
        asynch.acked,
        asynch.missing.len(),
        asynch
            .missing
            .first()
            .map(|i| format!(" (first kb{i})"))
            .unwrap_or_default()
    );
    assert!(
        sync.missing.is_empty(),
        "sync ack: {} of {} acknowledged writes missing on B, e.g. {:?} (A had {} sync \
         timeouts, {} with no peer)",
        sync.missing.len(),
        sync.acked,
        &sync.missing[..sync.missing.len().min(5)],
        sync.sync_timeouts,
        sync.sync_no_peer
    );
}

// ---------------------------------------------------------------------------------------------
// repcached: one peer only. Three nodes, every node written at once with every write type.

#[test]
fn three_node_mesh_mixed_concurrent_writes() {
    const KEYS: u64 = 50;
    let ports = [free_port(), free_port(), free_port()];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let a = Node::start("A", 1, ports[0], &[addr(1), addr(2)], &[]);
    let b = Node::start("B", 2, ports[1], &[addr(0), addr(2)], &[]);
    let c = Node::start("C", 3, ports[2], &[addr(0), addr(1)], &[]);
    let nodes = [&a, &b, &c];
    wait_linked(&nodes);

    let run = Duration::from_secs(1);
    let barrier = Arc::new(Barrier::new(3));
    let worker = |node: &Node, seed: u64| {
        let mut cl = node.client();
        let tag = node.name;
        let barrier = barrier.clone();
        move || {
            let mut rng = Rng(seed);
            let mut ops = [0usize; 4];
            barrier.wait();
            let end = Instant::now() + run;
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let key = format!("mix{}", rng.below(KEYS));
                let kind = match rng.below(10) {
                    0..=3 => 0,
                    4 | 5 => 1,
                    6 | 7 => 2,
                    _ => 3,
                };
                ops[kind] += 1;
                match kind {
                    0 => {
                        // Numeric half the time, so incr has something to work on.
                        let v = if rng.below(2) == 0 {
                            rng.below(1000).to_string()
                        } else {
                            format!("{tag}{n}")
                        };
                        set(&mut cl, &key, rng.below(100) as u32, 0, &v);
                    }
                    1 => {
                        cl.send(format!("delete {key}\r\n").as_bytes());
                        let l = cl.line();
                        assert!(l == "DELETED\r\n" || l == "NOT_FOUND\r\n", "delete: {l:?}");
                    }
                    2 => {
                        let v = format!("+{tag}");
                        cl.send(format!("append {key} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
                        let l = cl.line();
                        assert!(l == "STORED\r\n" || l == "NOT_STORED\r\n", "append: {l:?}");
                    }
                    _ => {
                        cl.send(format!("incr {key} {}\r\n", rng.below(10) + 1).as_bytes());
                        let l = cl.line();
                        assert!(
                            l.trim_end().parse::<u64>().is_ok()
                                || l == "NOT_FOUND\r\n"
                                || l.starts_with("CLIENT_ERROR cannot increment"),
                            "incr: {l:?}"
                        );
                    }
                }
            }
            ops
        }
    };
    let threads: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| thread::spawn(worker(n, 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1))))
        .collect();
    let ops: Vec<[usize; 4]> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    quiesce(&nodes);
    let all = keys("mix", KEYS as usize);
    let snaps: Vec<_> = nodes
        .iter()
        .map(|n| gets_many(&mut n.client(), &all))
        .collect();
    let mut diff = differences(&all, ("A", &snaps[0]), ("B", &snaps[1]));
    diff.extend(differences(&all, ("A", &snaps[0]), ("C", &snaps[2])));
    let total: usize = ops.iter().flatten().sum();
    println!(
        "three-node mesh: {total} ops (set/delete/append/incr per node: {ops:?}); \
         {} of {KEYS} keys present; {} differences",
        snaps[0].len(),
        diff.len()
    );
    assert!(
        ops.iter().all(|o| o.iter().all(|&n| n > 20)),
        "too few ops: {ops:?}"
    );
    assert!(diff.is_empty(), "the nodes diverged: {diff:#?}");
}

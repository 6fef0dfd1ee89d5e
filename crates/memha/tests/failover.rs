//! Failover end to end: memha nodes (the supervisor that speaks VRRP and owns the VIP, the
//! cache as its child) on hosts made of network namespaces, a client host, and faults
//! injected at the switch (see `common/lab.rs`).
//!
//! Root only: every test prints `skipped: <reason>` and passes without root, without `ip`
//! (or `tc`, or keepalived for the interop test). Each test builds its own lab
//! (`mft<N>-*` namespaces, 10.96.<N>.0/24), so they run in parallel.
//!
//! The tests check behaviour — who holds the VIP, VRRP states and counters, notify hook
//! calls, failed client requests — waiting for it with generous limits; nothing asserts how
//! fast it happened.
//!
//! Node n1 is the preferred master (priority 150), n2 the backup (100). With `nopreempt`
//! the first node to become master keeps the VIP, so the tests that need n1 as master and
//! nopreempt start n1 alone first: its cache waits (replication's 5 s grace) for the peer
//! that is not there yet before it says it is ready, then n1 takes the VIP, then n2 starts.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab::{self, Lab, Memha, MemhaSpec};
use memha_vrrp::packet::{self, MCAST_ADDR_V4};
use memha_vrrp::{checksum, Advert, Auth, Version};

/// The wait for a node that starts alone to take the VIP: replication's grace for an
/// unreachable peer (5 s) plus Master_Down_Interval, with room to spare.
const ALONE: Duration = Duration::from_secs(20);
/// How long a settled outcome must stay as it is.
const SETTLED: Duration = Duration::from_secs(2);

/// n1 (150) then n2 (100), replicating with each other, both `nopreempt`: n1 is started
/// alone and holds the VIP before n2 starts, n2 ends up BACKUP.
fn n1_master_then_n2(lab: &Lab, n1_spec: MemhaSpec) -> (Memha, Memha) {
    let n1 = lab.start_memha(&n1_spec.nopreempt().peers(&["n2"]));
    lab.wait_for(ALONE, "n1 (started alone) holds the VIP", || {
        lab.holders() == ["n1"]
    });
    let n2 = lab.start_memha(&MemhaSpec::new("n2", 100).nopreempt().peers(&["n1"]));
    lab.wait("n2 is BACKUP", || lab.state("n2") == "BACKUP");
    assert_eq!(lab.holders(), ["n1"], "n2's start moved the VIP");
    (n1, n2)
}

/// n1 (150) and n2 (100) started together, preemption on: n1 ends up master.
fn n1_and_n2_preempting(lab: &Lab) -> (Memha, Memha) {
    let n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]));
    let n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]));
    lab.wait("n1 holds the VIP", || lab.holders() == ["n1"]);
    lab.wait("n1 MASTER, n2 BACKUP", || {
        lab.state("n1") == "MASTER" && lab.state("n2") == "BACKUP"
    });
    (n1, n2)
}

/// `set whoami 0 0 <len>` = `value` through `via`, then waits until every node in `nodes`
/// returns it.
fn store_whoami(lab: &Lab, via: std::net::SocketAddr, value: &str, nodes: &[&str]) {
    let reply = lab.request(
        "c",
        via,
        &format!("set whoami 0 0 {}\r\n{value}\r\n", value.len()),
    );
    assert_eq!(reply.as_deref(), Ok("STORED\r\n"), "set whoami via {via}");
    for node in nodes {
        lab.wait(&format!("whoami={value} readable on {node}"), || {
            lab.get("c", lab.mc(node), "whoami").as_deref() == Some(value)
        });
    }
}

/// Cuts n1 off and waits until n2 holds the VIP and the client, through the VIP, reaches n2
/// (its ARP cache now points there).
fn partition_n1_until_the_client_reaches_n2(lab: &Lab) {
    lab.partition("n1");
    lab.wait("n2 takes the VIP while n1 is cut off", || {
        lab.holders().contains(&"n2".to_string())
    });
    let n2_addr = lab.addr("n2").to_string();
    lab.wait("the client reaches n2 through the VIP", || {
        lab.vip_served_by().as_deref() == Some(n2_addr.as_str())
    });
}

/// After the last MASTER the notify hook reported, FAULT and then BACKUP.
fn fault_then_backup_after_master(states: &[String]) -> bool {
    let Some(m) = states.iter().rposition(|s| s == "MASTER") else {
        return false;
    };
    let after = &states[m + 1..];
    after
        .iter()
        .position(|s| s == "FAULT")
        .is_some_and(|f| after[f + 1..].iter().any(|s| s == "BACKUP"))
}

#[test]
fn kill9_of_the_cache_moves_the_vip_and_restarts_it() {
    let Some(lab) = Lab::new(1, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let (n1, _n2) = n1_master_then_n2(&lab, MemhaSpec::new("n1", 150));
    store_whoami(&lab, lab.mc("n1"), "n1", &["n2"]);

    let old = lab
        .data_pid(&n1)
        .expect("n1's supervisor has a data process");
    lab.kill9(old);
    lab.wait("n2 holds the VIP and n1 does not", || {
        lab.holders() == ["n2"]
    });
    let n2_addr = lab.addr("n2").to_string();
    lab.wait("the client reaches n2 through the VIP", || {
        lab.vip_served_by().as_deref() == Some(n2_addr.as_str())
    });
    assert!(
        lab.alive(n1.pid),
        "n1's supervisor exited with its data process"
    );
    lab.wait("n1's supervisor runs a new data process", || {
        lab.data_pid(&n1).is_some_and(|p| p != old)
    });
    lab.wait("n1 is BACKUP again", || lab.state("n1") == "BACKUP");
    // The restarted cache synced from n2 before it said it was ready.
    assert_eq!(
        lab.get("c", lab.mc("n1"), "whoami").as_deref(),
        Some("n1"),
        "the restarted cache on n1 lost whoami"
    );
    lab.hold(SETTLED, "nopreempt: the VIP stays on n2", || {
        lab.holders() == ["n2"] && lab.state("n1") == "BACKUP"
    });
    lab.wait("n1's notify hook reported FAULT then BACKUP", || {
        fault_then_backup_after_master(&n1.notify_states())
    });
    assert!(
        lab.vrrp_counter("n2", "became_master") >= 1,
        "n2's became_master: {:?}",
        lab.vrrp_stat("n2", "became_master")
    );
}

/// What the client of `graceful_stop_hands_over_without_failed_requests` saw.
#[derive(Default)]
struct ClientLog {
    ok: u64,
    failed: u64,
    /// (ms since the client started, what went wrong) of the first failures.
    failures: Vec<(u128, String)>,
}

/// Sets `stop` when dropped, so a failing test does not leave its client thread running.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn graceful_stop_hands_over_without_failed_requests() {
    let Some(lab) = Lab::new(2, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let (n1, _n2) = n1_and_n2_preempting(&lab);
    store_whoami(&lab, lab.vip_mc(), "n1", &["n1", "n2"]);

    // One request every 10 ms, each on a fresh connection with 200 ms for all of it.
    let log = Arc::new(Mutex::new(ClientLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let client = {
        let (log, stop, ns, vip) = (log.clone(), stop.clone(), lab.ns("c"), lab.vip_mc());
        std::thread::spawn(move || {
            lab::enter_netns(&ns);
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                let r = lab::mc_request(vip, "get whoami\r\n", Duration::from_millis(200));
                let mut l = log.lock().unwrap();
                match r {
                    Ok(reply) if reply == "VALUE whoami 0 2\r\nn1\r\nEND\r\n" => l.ok += 1,
                    other => {
                        l.failed += 1;
                        if l.failures.len() < 10 {
                            l.failures
                                .push((start.elapsed().as_millis(), format!("{other:?}")));
                        }
                    }
                }
                drop(l);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let ok = || log.lock().unwrap().ok;
    lab.wait("the client's first 20 requests", || ok() >= 20);

    lab.signal(n1.pid, libc::SIGTERM);
    let status = lab.wait_exit(n1.pid, Duration::from_secs(15));
    assert!(status.success(), "n1's supervisor exited with {status}");
    lab.wait("n2 holds the VIP, n1 has none", || lab.holders() == ["n2"]);
    let after = ok();
    lab.wait("20 more requests after the handover", || ok() >= after + 20);
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client thread");

    let l = log.lock().unwrap();
    println!(
        "client: {} requests through the handover, {} failed",
        l.ok + l.failed,
        l.failed
    );
    assert_eq!(
        l.failed,
        0,
        "the client saw {} failed requests (of {}) during the handover; first ones \
         (ms since the client started, result): {:?}",
        l.failed,
        l.ok + l.failed,
        l.failures
    );
    lab.wait("n1's notify hook reported STOP", || {
        n1.notify_states().iter().any(|s| s == "STOP")
    });
}

#[test]
fn partition_heals_to_one_holder() {
    let Some(lab) = Lab::new(3, &["n1", "n2", "c"], &["tc"]) else {
        return;
    };
    let (_n1, _n2) = n1_and_n2_preempting(&lab);
    // Wait until n1 has sent gratuitous ARPs beyond its takeover burst: the delayed repeat
    // (keepalived's garp_master_delay) or those a master sends when it hears a lower-priority
    // advert. A product without the latter gets past this only after the former, and then
    // nothing else brings the client back to n1 after the heal (checked at the end).
    let garps = lab.vrrp_counter("n1", "garps_sent");
    lab.wait("n1 sends gratuitous ARPs beyond its takeover burst", || {
        lab.vrrp_counter("n1", "garps_sent") > garps
    });

    partition_n1_until_the_client_reaches_n2(&lab);
    lab.heal("n1");
    lab.wait("exactly one node holds the VIP after the heal", || {
        lab.holders().len() == 1
    });
    let holder = lab.holders();
    lab.hold(SETTLED, "exactly one holder, always the same", || {
        lab.holders() == holder
    });
    let holder_addr = lab.addr(&holder[0]).to_string();
    lab.wait(
        &format!("both nodes name {} ({holder_addr}) as master", holder[0]),
        || {
            lab.vrrp_stat("n1", "master").as_deref() == Some(holder_addr.as_str())
                && lab.vrrp_stat("n2", "master").as_deref() == Some(holder_addr.as_str())
        },
    );
    assert_eq!(lab.state(&holder[0]), "MASTER", "the holder is not MASTER");
    // The client's ARP cache, pointed at n2 during the partition, follows the holder: the
    // winner re-sends gratuitous ARPs (without them the stale entry would only be probed
    // again after its reachable time, 15 s or more, beyond the wait limit).
    lab.wait(
        &format!("the client reaches {} through the VIP", holder[0]),
        || lab.vip_served_by().as_deref() == Some(holder_addr.as_str()),
    );
}

#[test]
fn a_healed_partition_leaves_the_vip_with_the_node_that_took_writes() {
    // Problem 2 of docs/HA.md: n1 (150, preempting) is cut off, n2 takes the VIP and writes
    // n1 never saw. When the partition heals, n1 must not take the address back until it
    // has those writes, or clients read (and CAS) its stale copy.
    let Some(lab) = Lab::new(14, &["n1", "n2", "c"], &["tc"]) else {
        return;
    };
    let (_n1, _n2) = n1_and_n2_preempting(&lab);
    store_whoami(&lab, lab.vip_mc(), "before", &["n1", "n2"]);

    partition_n1_until_the_client_reaches_n2(&lab);
    // Writes through the VIP, a while apart: n2 finds n1 not acknowledging and holds.
    let repl = |node: &str| {
        lab.request("c", lab.mc(node), "stats replication\r\n")
            .map(|r| lab::parse_stats(&r))
            .unwrap_or_default()
    };
    let mut i = 0;
    lab.wait(
        "n2 holds writes n1 lacks and advertises priority 254",
        || {
            i += 1;
            let value = format!("during{i}");
            let reply = lab.request(
                "c",
                lab.vip_mc(),
                &format!("set whoami 0 0 {}\r\n{value}\r\n", value.len()),
            );
            assert_eq!(
                reply.as_deref(),
                Ok("STORED\r\n"),
                "set through the VIP on n2"
            );
            std::thread::sleep(Duration::from_millis(50));
            repl("n2").get("holding").map(String::as_str) == Some("1")
                && lab.vrrp_stat("n2", "effective_priority").as_deref() == Some("254")
        },
    );
    let last = format!("during{i}");

    lab.heal("n1");
    // n1, master all along on its side of the cut, hears n2's 254 and yields at once
    // (without the hold, n2 would yield to n1's 150).
    lab.wait_for(
        Duration::from_secs(2),
        "n1 gives the VIP up to n2 after the heal",
        || lab.holders() == ["n2"],
    );
    // From then on, n1 must not hold the VIP before it serves the last write; once it does,
    // n2 stops holding and n1 (preempting) takes the address back.
    let mut n1_caught_up = false;
    lab.wait_for(
        Duration::from_secs(15),
        "n1 has n2's writes and holds the VIP again",
        || {
            let on_n1 = lab.get("c", lab.mc("n1"), "whoami");
            n1_caught_up |= on_n1.as_deref() == Some(last.as_str());
            let holders = lab.holders();
            assert!(
                n1_caught_up || !holders.contains(&"n1".to_string()),
                "n1 holds the VIP but serves whoami={on_n1:?}, not {last}\n{}",
                lab.describe()
            );
            n1_caught_up && holders == ["n1"]
        },
    );
    assert_eq!(
        lab.get("c", lab.vip_mc(), "whoami").as_deref(),
        Some(last.as_str())
    );
    assert!(repl("n2").get("holds").and_then(|h| h.parse::<u64>().ok()) >= Some(1));
    assert_eq!(repl("n2").get("holding").map(String::as_str), Some("0"));
}

#[test]
fn a_pooled_connection_to_a_silent_master_is_reset_at_the_takeover() {
    // Problem 4 of docs/HA.md: a pooled client's request in flight when the master is cut off
    // waits for its TCP retransmission timer. The node that takes the VIP over knows the
    // connection (its peer told it) and resets it at once (tickle ACK). The client's route to
    // the VIP gets `rto_min 5s` here, so the outcome tells the two apart without timing
    // anything: reset well within the 4 s read timeout with the tickle; without it the read
    // times out before the first retransmission could reach n2.
    // With `ack = "sync"`, n2 also stops waiting for n1's acknowledgements at the takeover
    // (n1 went silent and is its only peer), before any write waited the 100 ms timeout.
    let Some(lab) = Lab::new(15, &["n1", "n2", "c"], &["tc"]) else {
        return;
    };
    let _n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]).sync_ack());
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]).sync_ack());
    lab.wait("n1 MASTER, n2 BACKUP", || {
        lab.holders() == ["n1"] && lab.state("n1") == "MASTER" && lab.state("n2") == "BACKUP"
    });
    let vip_route = format!("{}/32", lab.vip());
    lab::run(
        "ip",
        &[
            "-n",
            &lab.ns("c"),
            "route",
            "replace",
            &vip_route,
            "dev",
            lab::DEV,
            "rto_min",
            "5s",
        ],
    );
    let vip = lab.vip_mc();
    let mut conn = lab.in_ns("c", || {
        std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(2))
            .expect("connect to the VIP")
    });
    conn.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let ask = |conn: &mut std::net::TcpStream, req: &[u8]| -> std::io::Result<String> {
        use std::io::{Read, Write};
        conn.write_all(req)?;
        let mut buf = [0u8; 512];
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    assert_eq!(
        ask(&mut conn, b"set k 0 0 1\r\nv\r\n").unwrap(),
        "STORED\r\n"
    );
    let peer_conns = |node: &str| {
        lab.request("c", lab.mc(node), "stats replication\r\n")
            .map(|r| lab::parse_stats(&r))
            .unwrap_or_default()
            .get("peer_client_conns")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    lab.wait("n1 told n2 about the pooled connection", || {
        peer_conns("n2") >= 1
    });

    lab.partition("n1");
    let answer = ask(&mut conn, b"get k\r\n");
    let err = answer.expect_err("n1 is cut off: the request cannot be answered");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionReset,
        "the pooled connection should be reset by n2's takeover, got {err}\n{}",
        lab.describe()
    );
    assert!(lab.holders().contains(&"n2".to_string()));
    assert!(lab.vrrp_counter("n2", "silent_master_takeovers") >= 1);
    assert!(lab.vrrp_counter("n2", "clients_reset") >= 1);
    // The client reconnects and n2 answers, with the value n1 replicated.
    let reply = lab.request("c", vip, "get k\r\n");
    assert_eq!(reply.as_deref(), Ok("VALUE k 0 1\r\nv\r\nEND\r\n"));
    let repl = |key: &str| {
        lab.request("c", lab.mc("n2"), "stats replication\r\n")
            .map(|r| lab::parse_stats(&r))
            .unwrap_or_default()
            .get(key)
            .cloned()
    };
    lab.wait("n2 stops waiting for its silent peer", || {
        repl("sync_degraded").as_deref() == Some("1")
    });
    let reply = lab.request("c", vip, "set k2 0 0 1\r\nw\r\n");
    assert_eq!(reply.as_deref(), Ok("STORED\r\n"));
    assert_eq!(
        repl("sync_timeouts").as_deref(),
        Some("0"),
        "a write on n2 waited for the silent n1"
    );
    assert!(repl("sync_degraded_writes").and_then(|v| v.parse::<u64>().ok()) >= Some(1));
}

#[test]
fn link_down_is_a_fault() {
    let Some(lab) = Lab::new(4, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let (_n1, _n2) = n1_master_then_n2(&lab, MemhaSpec::new("n1", 150));

    lab.linkdown("n1");
    lab.wait("n2 holds the VIP, n1 does not", || lab.holders() == ["n2"]);
    lab.wait("n1 is in FAULT", || lab.state("n1") == "FAULT");
    assert_eq!(lab.holders(), ["n2"]);
    assert_eq!(lab.vrrp_stat("n1", "link_up").as_deref(), Some("0"));

    lab.linkup("n1");
    lab.wait("n1 is BACKUP after the link came back", || {
        lab.state("n1") == "BACKUP"
    });
    lab.hold(SETTLED, "nopreempt: the VIP stays on n2", || {
        lab.holders() == ["n2"]
    });
}

#[test]
fn track_script_failure_resigns() {
    let Some(lab) = Lab::new(5, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let ok = lab.dir.join("ok");
    std::fs::write(&ok, "").unwrap();
    let (n1, _n2) = n1_master_then_n2(&lab, MemhaSpec::new("n1", 150).track_file(&ok));

    std::fs::remove_file(&ok).unwrap();
    lab.wait("n2 holds the VIP, n1 does not", || lab.holders() == ["n2"]);
    lab.wait("n1 is in FAULT", || lab.state("n1") == "FAULT");
    assert_eq!(lab.vrrp_stat("n1", "healthy").as_deref(), Some("0"));
    // The cache itself is fine: only the script failed.
    assert!(lab.data_pid(&n1).is_some());

    std::fs::write(&ok, "").unwrap();
    lab.wait("n1 is BACKUP once the script succeeds", || {
        lab.state("n1") == "BACKUP"
    });
    lab.hold(SETTLED, "nopreempt: the VIP stays on n2", || {
        lab.holders() == ["n2"]
    });
    lab.wait("n1's notify hook reported FAULT then BACKUP", || {
        fault_then_backup_after_master(&n1.notify_states())
    });
}

// ----- crafted adverts -----

/// An IPv4 packet from `src` to 224.0.0.18 around `payload`.
fn ip_packet(src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = packet::ipv4_header(src, MCAST_ADDR_V4, 0x4d48, payload.len()).to_vec();
    p.extend_from_slice(payload);
    p
}

/// A priority-254 advert: a node that accepted it would yield to it.
fn advert(version: Version, vrid: u8, adver_int: u16, auth: Auth, addrs: &[Ipv4Addr]) -> Advert {
    Advert {
        version,
        vrid,
        priority: 254,
        adver_int,
        auth,
        addrs: addrs.iter().map(|a| IpAddr::V4(*a)).collect(),
    }
}

fn encode(a: &Advert, src: Ipv4Addr) -> Vec<u8> {
    a.encode(IpAddr::V4(src), IpAddr::V4(MCAST_ADDR_V4))
        .expect("encodable advert")
}

/// Recomputes a VRRPv3 checksum (IPv4 pseudo-header) after the message was edited.
fn fix_v3_checksum(msg: &mut [u8], src: Ipv4Addr) {
    msg[6] = 0;
    msg[7] = 0;
    let mut ph = [0u8; 12];
    ph[0..4].copy_from_slice(&src.octets());
    ph[4..8].copy_from_slice(&MCAST_ADDR_V4.octets());
    ph[9] = packet::IPPROTO_VRRP;
    ph[10..12].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    let c = checksum::finish(checksum::sum(msg, checksum::sum(&ph, 0)));
    msg[6..8].copy_from_slice(&c.to_be_bytes());
}

/// Sends `count` copies of each (counter, packet) from the client, then checks that each
/// `dropped_<counter>` of `node` went up by exactly the number sent, that nothing else was
/// counted, and that `node` stayed MASTER with `vip` throughout.
fn expect_drops(lab: &Lab, node: &str, vip: Ipv4Addr, cases: &[(&str, Vec<u8>)]) {
    const COUNT: u64 = 3;
    let before = lab.vrrp(node);
    let counter = |m: &std::collections::HashMap<String, String>, k: &str| -> u64 {
        m.get(&format!("VI_1:{k}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("stats vrrp in {node} has no VI_1:{k}"))
    };
    let mut packets = Vec::new();
    for _ in 0..COUNT {
        packets.extend(cases.iter().map(|(_, p)| p.clone()));
    }
    lab.send_raw("c", &packets);

    let mut expected: Vec<(String, u64)> = Vec::new();
    for (reason, _) in cases {
        let key = format!("dropped_{reason}");
        match expected.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += COUNT,
            None => expected.push((key, COUNT)),
        }
    }
    expected.push(("dropped_total".into(), COUNT * cases.len() as u64));
    lab.wait(
        &format!("{node} counts every crafted packet as dropped"),
        || {
            let now = lab.vrrp(node);
            !now.is_empty()
                && expected
                    .iter()
                    .all(|(k, n)| counter(&now, k) >= counter(&before, k) + n)
        },
    );
    // Exactly that many, and it stays so: the counters the cache shows are refreshed every
    // second, so a stray count would show within this.
    let start = Instant::now();
    let mut after = lab.vrrp(node);
    while start.elapsed() < SETTLED {
        after = lab.vrrp(node);
        for (k, n) in &expected {
            assert_eq!(
                counter(&after, k) - counter(&before, k),
                *n,
                "{node}: {k} went from {} to {}; sent {n} such packets",
                counter(&before, k),
                counter(&after, k)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for k in ["state", "transitions", "became_master", "holding_vips"] {
        assert_eq!(
            after.get(&format!("VI_1:{k}")),
            before.get(&format!("VI_1:{k}")),
            "{node}: {k} changed while it received the crafted packets"
        );
    }
    assert_eq!(lab.state(node), "MASTER");
    assert_eq!(lab.holders_of(vip), [node], "{node} lost the VIP {vip}");
}

#[test]
fn malformed_adverts_are_dropped_and_counted() {
    let Some(lab) = Lab::new(6, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let src = lab.addr("c");

    // VRRPv3, VRID 51: one node, master of its own VIP.
    let vip = lab.vip();
    let n1 = lab.start_memha(&MemhaSpec::new("n1", 150).v3(0.05).vrid(51).vip(vip));
    lab.wait("n1 is MASTER with the VIP", || {
        lab.state("n1") == "MASTER" && lab.holders_of(vip) == ["n1"]
    });
    let good = advert(Version::V3, 51, 5, Auth::None, &[vip]);
    let bad_checksum = {
        let mut m = encode(&good, src);
        m[6] ^= 0x5a;
        ip_packet(src, &m)
    };
    let ttl_254 = {
        let mut p = ip_packet(src, &encode(&good, src));
        p[8] = 254; // the kernel recomputes the header checksum
        p
    };
    let version_2 = ip_packet(
        src,
        &encode(&advert(Version::V2, 51, 1, Auth::None, &[vip]), src),
    );
    let wrong_vrid = ip_packet(
        src,
        &encode(&advert(Version::V3, 99, 5, Auth::None, &[vip]), src),
    );
    let interval_0 = {
        let mut m = encode(&good, src);
        m[4] = 0;
        m[5] = 0;
        fix_v3_checksum(&mut m, src);
        ip_packet(src, &m)
    };
    let other_addresses = ip_packet(
        src,
        &encode(
            &advert(
                Version::V3,
                51,
                5,
                Auth::None,
                &[Ipv4Addr::new(10, 96, lab.n, 99)],
            ),
            src,
        ),
    );
    expect_drops(
        &lab,
        "n1",
        vip,
        &[
            ("checksum", bad_checksum),
            ("ttl", ttl_254),
            ("version", version_2),
            ("vrid", wrong_vrid),
            ("interval", interval_0),
            ("address_list", other_addresses),
        ],
    );
    // Its adverts must not reach the next node.
    lab.kill_memha(&n1);

    // VRRPv2 with a password, VRID 52: the checks only v2 has.
    let vip2 = Ipv4Addr::new(10, 96, lab.n, 47);
    let _n2 = lab.start_memha(
        &MemhaSpec::new("n2", 150)
            .v2(1, Some("memcache"))
            .vrid(52)
            .vip(vip2),
    );
    lab.wait("n2 is MASTER with its VIP", || {
        lab.state("n2") == "MASTER" && lab.holders_of(vip2) == ["n2"]
    });
    let wrong_password = ip_packet(
        src,
        &encode(
            &advert(Version::V2, 52, 1, Auth::password(b"memcachx"), &[vip2]),
            src,
        ),
    );
    let other_interval = ip_packet(
        src,
        &encode(
            &advert(Version::V2, 52, 2, Auth::password(b"memcache"), &[vip2]),
            src,
        ),
    );
    expect_drops(
        &lab,
        "n2",
        vip2,
        &[
            ("auth_password", wrong_password),
            ("interval", other_interval),
        ],
    );
}

// ----- keepalived -----

/// keepalived.conf for one instance VI_1 on eth0, VRID 51, the lab's VIP.
fn keepalived_conf(lab: &Lab, priority: u8, version: u8, advert_int: &str) -> String {
    let auth = if version == 2 {
        "    authentication {\n        auth_type PASS\n        auth_pass memcache\n    }\n"
    } else {
        ""
    };
    format!(
        "global_defs {{\n    router_id mft{n}_n2\n    vrrp_version {version}\n    \
         script_user root\n    enable_script_security\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface {dev}\n    \
         virtual_router_id 51\n    priority {priority}\n    advert_int {advert_int}\n\
         {auth}    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n",
        n = lab.n,
        dev = lab::DEV,
        vip = lab.vip(),
    )
}

/// memha (n1, 150) master, keepalived (n2, 100) backup: a crashed cache hands the VIP to
/// keepalived, and memha takes it back (preemption) once its cache is back.
fn memha_master_keepalived_backup(version: u8) {
    let Some(lab) = Lab::new(7, &["n1", "n2", "c"], &["keepalived"]) else {
        return;
    };
    let spec = match version {
        2 => MemhaSpec::new("n1", 150).v2(1, Some("memcache")),
        _ => MemhaSpec::new("n1", 150).v3(0.1),
    };
    let int = if version == 2 { "1" } else { "0.1" };
    let n1 = lab.start_memha(&spec);
    let _k = lab.start_keepalived("n2", &keepalived_conf(&lab, 100, version, int));
    lab.wait("memha (n1) holds the VIP, keepalived does not", || {
        lab.holders() == ["n1"] && lab.state("n1") == "MASTER"
    });
    lab.hold(Duration::from_secs(1), "memha keeps the VIP", || {
        lab.holders() == ["n1"]
    });

    let old = lab.data_pid(&n1).expect("memha has a data process");
    lab.kill9(old);
    lab.wait(
        "keepalived (n2) takes the VIP from the crashed memha",
        || lab.holders() == ["n2"],
    );
    lab.wait(
        "memha, its cache restarted, takes the VIP back (preemption)",
        || lab.holders() == ["n1"] && lab.state("n1") == "MASTER",
    );
    lab.hold(SETTLED, "exactly one holder: memha", || {
        lab.holders() == ["n1"]
    });
}

/// keepalived (n2, 150) master, memha (n1, 100) backup: memha takes over from a SIGKILLed
/// keepalived.
fn keepalived_master_memha_backup() {
    let Some(lab) = Lab::new(7, &["n1", "n2", "c"], &["keepalived"]) else {
        return;
    };
    let k = lab.start_keepalived("n2", &keepalived_conf(&lab, 150, 2, "1"));
    lab.wait("keepalived (n2) holds the VIP", || lab.holders() == ["n2"]);
    let _n1 = lab.start_memha(&MemhaSpec::new("n1", 100).v2(1, Some("memcache")));
    lab.wait("memha (n1) is BACKUP", || lab.state("n1") == "BACKUP");
    lab.hold(Duration::from_secs(1), "keepalived keeps the VIP", || {
        lab.holders() == ["n2"]
    });

    lab.kill_keepalived(&k);
    lab.wait(
        "memha (n1) takes the VIP from the killed keepalived",
        || lab.holders().contains(&"n1".to_string()) && lab.state("n1") == "MASTER",
    );
    // A SIGKILLed keepalived cannot remove its address; the host's reboot would.
    let stale = format!("{}/32", lab.vip());
    if lab.holders().contains(&"n2".to_string()) {
        println!("keepalived (SIGKILL) left {stale} on n2; removing it");
        lab.del_addr("n2", &stale);
    }
    lab.hold(SETTLED, "exactly one holder: memha", || {
        lab.holders() == ["n1"] && lab.state("n1") == "MASTER"
    });
}

#[test]
fn interop_with_keepalived() {
    if let Some(reason) = lab::skip_reason(&["keepalived"]) {
        println!("skipped: {reason}");
        return;
    }
    // (a) VRRPv2 + PASS, memha master; (b) keepalived master; (c) as (a) with VRRPv3.
    // One lab at a time (the same namespaces, rebuilt for each case).
    memha_master_keepalived_backup(2);
    keepalived_master_memha_backup();
    memha_master_keepalived_backup(3);
}

#[test]
fn three_nodes_elect_the_highest() {
    let Some(lab) = Lab::new(8, &["n1", "n2", "n3", "c"], &[]) else {
        return;
    };
    let n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2", "n3"]));
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 120).peers(&["n1", "n3"]));
    let n3 = lab.start_memha(&MemhaSpec::new("n3", 100).peers(&["n1", "n2"]));
    lab.wait("n1 holds the VIP, n2 and n3 are BACKUP", || {
        lab.holders() == ["n1"] && lab.state("n2") == "BACKUP" && lab.state("n3") == "BACKUP"
    });
    // Counted from here: one of them may have been master for a moment at startup.
    let n3_became_master = lab.vrrp_counter("n3", "became_master");
    let n3_hook_calls = n3.notify_states().len();

    let old = lab.data_pid(&n1).expect("n1 has a data process");
    lab.kill9(old);
    let mut seen: Vec<Vec<String>> = Vec::new();
    lab.wait("n2 holds the VIP", || {
        let h = lab.holders();
        if seen.last() != Some(&h) {
            seen.push(h.clone());
        }
        h == ["n2"]
    });
    assert!(
        !seen.iter().flatten().any(|n| n == "n3"),
        "n3 held the VIP on the way; holders seen, in order: {seen:?}"
    );
    // A moment as master would be too short to see in the addresses: n3's own counter and
    // its notify hook tell.
    let n2_addr = lab.addr("n2").to_string();
    lab.wait("the client reaches n2 through the VIP", || {
        lab.vip_served_by().as_deref() == Some(n2_addr.as_str())
    });
    assert_eq!(lab.state("n3"), "BACKUP");
    assert_eq!(
        lab.vrrp_counter("n3", "became_master"),
        n3_became_master,
        "n3 became master during the failover"
    );
    let n3_states = n3.notify_states();
    assert!(
        !n3_states[n3_hook_calls..].iter().any(|s| s == "MASTER"),
        "n3's notify hook reported MASTER during the failover: {n3_states:?}"
    );
    // n1 preempts once its cache is back; one holder at the end.
    lab.wait_for(ALONE, "n1 takes the VIP back", || {
        lab.holders() == ["n1"] && lab.state("n1") == "MASTER"
    });
    lab.hold(SETTLED, "exactly one holder: n1", || {
        lab.holders() == ["n1"]
    });
}

/// Scale-out with failover: twemproxy (nutcracker) in the client's host spreads keys with
/// ketama over two memha groups, each a replicating pair behind its own VIP. Killing the
/// master of one group moves its VIP to the other node, which already has the group's keys:
/// the proxy keeps answering every key with the value it had (a plain memcached behind an
/// ejecting proxy would lose that group's share of the keys).
#[test]
fn twemproxy_over_two_groups_keeps_every_key_when_a_node_dies() {
    let Some(lab) = Lab::new(9, &["n1", "n2", "n3", "n4", "c"], &["nutcracker"]) else {
        return;
    };
    let vip_a = lab.vip();
    let vip_b = Ipv4Addr::new(10, 96, lab.n, 47);
    let n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]));
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]));
    let spec_b = |node: &str, prio: u8, peer: &str| {
        MemhaSpec::new(node, prio)
            .peers(&[peer])
            .vrid(52)
            .vip(vip_b)
    };
    let _n3 = lab.start_memha(&spec_b("n3", 150, "n4"));
    let _n4 = lab.start_memha(&spec_b("n4", 100, "n3"));
    lab.wait("n1 holds group A's VIP and n3 group B's", || {
        lab.holders_of(vip_a) == ["n1"] && lab.holders_of(vip_b) == ["n3"]
    });

    let conf = lab.dir.join("nutcracker.yml");
    std::fs::write(
        &conf,
        format!(
            "groups:\n  listen: 127.0.0.1:22121\n  distribution: ketama\n  hash: fnv1a_64\n  \
             timeout: 400\n  auto_eject_hosts: false\n  server_retry_timeout: 100\n  \
             servers:\n    - {vip_a}:11211:1 group_a\n    - {vip_b}:11211:1 group_b\n"
        ),
    )
    .unwrap();
    lab.spawn(
        "c",
        "nutcracker",
        "nutcracker",
        &["-c", conf.to_str().unwrap()],
    );
    let proxy: std::net::SocketAddr = "127.0.0.1:22121".parse().unwrap();
    lab.wait("nutcracker answers", || {
        lab.request("c", proxy, "get probe\r\n").as_deref() == Ok("END\r\n")
    });

    const N: usize = 200;
    let key = |i: usize| format!("user:{i:04}");
    let val = |i: usize| format!("value-{i}-{}", "x".repeat(i % 13));
    for i in 0..N {
        let v = val(i);
        let reply = lab.request(
            "c",
            proxy,
            &format!("set {} {} 0 {}\r\n{v}\r\n", key(i), i % 5, v.len()),
        );
        assert_eq!(
            reply.as_deref(),
            Ok("STORED\r\n"),
            "set {} through the proxy",
            key(i)
        );
    }
    let items = |node: &str| -> u64 {
        let reply = lab
            .request("c", lab.mc(node), "stats\r\n")
            .unwrap_or_default();
        lab::parse_stats(&reply)
            .get("curr_items")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (a, b) = (items("n1"), items("n3"));
    println!("keys per group: A {a}, B {b}");
    assert_eq!(a + b, N as u64, "every key on exactly one group");
    assert!(
        a >= 20 && b >= 20,
        "ketama spreads the keys over both groups: A {a}, B {b}"
    );
    lab.wait("group A's keys replicated to n2", || items("n2") == a);

    let old = lab.data_pid(&n1).expect("n1 has a data process");
    lab.kill9(old);
    lab.wait("n2 holds group A's VIP", || lab.holders_of(vip_a) == ["n2"]);

    // Every key reads back through the proxy with its value and flags: none lost, none stale.
    let mut missing = Vec::new();
    for i in 0..N {
        let v = val(i);
        let want = format!("VALUE {} {} {}\r\n{v}\r\nEND\r\n", key(i), i % 5, v.len());
        let mut last = String::new();
        let ok = (0..100).any(|_| {
            last = lab
                .request("c", proxy, &format!("get {}\r\n", key(i)))
                .unwrap_or_else(|e| e);
            if last == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        });
        if !ok {
            missing.push(format!("{}: {last:?}", key(i)));
        }
    }
    assert!(
        missing.is_empty(),
        "keys not served as written after the failover: {missing:?}"
    );
    // And the group takes writes again. n1 preempts once its cache is back, so the VIP may
    // move once more while this runs: a request cut by that move is retried, as a client
    // of the proxy would.
    for i in 0..N {
        let mut last = String::new();
        let stored = (0..100).any(|_| {
            last = lab
                .request("c", proxy, &format!("set {} 0 0 3\r\nnew\r\n", key(i)))
                .unwrap_or_else(|e| e);
            last == "STORED\r\n" || {
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        });
        assert!(stored, "set {} after the failover: {last:?}", key(i));
    }
    lab.wait(
        "every key reads back its new value through the proxy",
        || (0..N).all(|i| lab.get("c", proxy, &key(i)).as_deref() == Some("new")),
    );
}

/// A VIP left configured by a crash (a supervisor killed with SIGKILL cannot remove it) is
/// removed when memha starts again on that node, so a backup never answers for it.
#[test]
fn a_stale_vip_is_removed_at_start() {
    let Some(lab) = Lab::new(10, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let vip = format!("{}/32", lab.vip());
    lab::run(
        "ip",
        &["-n", &lab.ns("n2"), "addr", "add", &vip, "dev", "eth0"],
    );
    assert_eq!(lab.holders(), ["n2"], "the stale address is in place");
    let _n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]));
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]));
    lab.wait("n1 MASTER, n2 BACKUP", || {
        lab.state("n1") == "MASTER" && lab.state("n2") == "BACKUP"
    });
    lab.hold(SETTLED, "exactly one holder: n1", || {
        lab.holders() == ["n1"]
    });
}

/// A cache that hangs (here: stopped with SIGSTOP) sends no heartbeats: after the
/// supervisor's heartbeat timeout it resigns, the VIP moves, and when the cache runs again
/// the node comes back as BACKUP (nopreempt) without a restart of the cache.
#[test]
fn a_hung_cache_resigns_and_comes_back() {
    let Some(lab) = Lab::new(11, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let (n1, _n2) = n1_master_then_n2(&lab, MemhaSpec::new("n1", 150));
    let data = lab.data_pid(&n1).expect("n1 has a data process");
    lab.signal(data, libc::SIGSTOP);
    lab.wait("n2 holds the VIP", || lab.holders() == ["n2"]);
    assert!(
        lab.alive(data),
        "the hung cache is not killed, only resigned from"
    );
    lab.signal(data, libc::SIGCONT);
    // n1's stats answer again once the cache runs.
    lab.wait("n1 is BACKUP again", || lab.state("n1") == "BACKUP");
    assert_eq!(
        lab.data_pid(&n1),
        Some(data),
        "the same cache process serves again"
    );
    lab.hold(SETTLED, "nopreempt: the VIP stays on n2", || {
        lab.holders() == ["n2"]
    });
    let states = n1.notify_states();
    assert!(
        fault_then_backup_after_master(&states),
        "n1's hook: {states:?}"
    );
}

/// `use_vmac`: the VIP lives on the macvlan `vrrp.51` with the virtual MAC
/// 00:00:5e:00:01:33, so the client's ARP entry for the VIP is the same whichever node holds
/// it, and a failover needs no ARP update at all.
#[test]
fn virtual_mac_moves_with_the_vip() {
    let Some(lab) = Lab::new(12, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let _n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]).use_vmac());
    let n1 = _n1.clone();
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]).use_vmac());
    lab.wait("n1 MASTER, n2 BACKUP", || {
        lab.state("n1") == "MASTER" && lab.state("n2") == "BACKUP"
    });
    lab.wait("n1 holds the VIP", || lab.holders() == ["n1"]);
    let vmac = "00:00:5e:00:01:33";
    for node in ["n1", "n2"] {
        let link = lab::run(
            "ip",
            &["-n", &lab.ns(node), "-o", "link", "show", "vrrp.51"],
        );
        assert!(link.contains(vmac), "{node}'s vrrp.51: {link}");
    }
    let on_vmac = |node: &str| {
        lab::run(
            "ip",
            &[
                "-n",
                &lab.ns(node),
                "-o",
                "-4",
                "addr",
                "show",
                "dev",
                "vrrp.51",
            ],
        )
        .contains(&format!("{}/", lab.vip()))
    };
    assert!(on_vmac("n1"), "the VIP is on n1's macvlan");
    assert!(!on_vmac("n2"), "the backup's macvlan carries no address");

    let n1_addr = lab.addr("n1").to_string();
    lab.wait("the client reaches n1 through the VIP", || {
        lab.vip_served_by().as_deref() == Some(n1_addr.as_str())
    });
    let neigh = || {
        lab::run(
            "ip",
            &["-n", &lab.ns("c"), "neigh", "show", &lab.vip().to_string()],
        )
    };
    assert!(
        neigh().contains(vmac),
        "client's ARP entry for the VIP: {}",
        neigh()
    );

    lab.kill9(lab.data_pid(&n1).expect("n1 has a data process"));
    lab.wait("n2 holds the VIP on its macvlan", || {
        lab.holders() == ["n2"] && on_vmac("n2")
    });
    let n2_addr = lab.addr("n2").to_string();
    lab.wait("the client reaches n2 through the VIP", || {
        lab.vip_served_by().as_deref() == Some(n2_addr.as_str())
    });
    assert!(
        neigh().contains(vmac),
        "client's ARP entry after the failover: {}",
        neigh()
    );
    assert_eq!(
        lab.vrrp_stat("n2", "vip_interface").as_deref(),
        Some("vrrp.51")
    );
}

/// Unicast adverts (`unicast_peer`, for networks that filter multicast): the pair elects,
/// and a killed cache still moves the VIP.
#[test]
fn unicast_peers_fail_over() {
    let Some(lab) = Lab::new(13, &["n1", "n2", "c"], &[]) else {
        return;
    };
    let n1 = lab.start_memha(&MemhaSpec::new("n1", 150).peers(&["n2"]).unicast_to(&["n2"]));
    let _n2 = lab.start_memha(&MemhaSpec::new("n2", 100).peers(&["n1"]).unicast_to(&["n1"]));
    lab.wait("n1 MASTER, n2 BACKUP", || {
        lab.state("n1") == "MASTER" && lab.state("n2") == "BACKUP"
    });
    lab.hold(SETTLED, "exactly one holder: n1", || {
        lab.holders() == ["n1"]
    });
    assert!(lab.vrrp_counter("n2", "adverts_received") > 0);
    lab.kill9(lab.data_pid(&n1).expect("n1 has a data process"));
    lab.wait("n2 holds the VIP", || lab.holders() == ["n2"]);
}

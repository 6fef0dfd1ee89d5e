//! `memha-chaos`: runs one HA scenario and prints the checker's report.
//!
//! Exit codes: 0 the invariants hold, 1 they do not (the schedule is in --out to replay),
//! 2 it cannot run here (not root, bad flags, memha missing), 3 the run itself broke off,
//! 4 another run holds the lab (the namespaces have fixed names: one run per machine).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memha_chaos::faults::{FaultKind, ScheduleFile, ALL_KINDS};
use memha_chaos::run::{self, Options};
use memha_chaos::{lab, report};

const USAGE: &str = "\
usage: memha-chaos [options]
       memha-chaos check DIR      re-run the checker on what a run left in DIR (rewrites
                                  its report.txt and report.json)

Builds memha nodes sharing a VIP in network namespaces (mhc-*, 10.95.0.0/24), drives a
recorded client load through the VIP, injects randomized faults one at a time, then checks
the history against every node's final contents. Needs root.

  --nodes 2|3            memha nodes (default 2)
  --duration D           how long to inject faults: 90s, 10m, 1h (default 90s); the run
                         also goes on until every fault type has happened once
  --ack sync|async       --repl-ack of the nodes (default sync)
  --seed N               seed of the schedule and the client's choices (default: the time)
  --schedule FILE        replay a schedule.json left by an earlier run (its seed, nodes, ack
                         and faults; flags given explicitly win)
  --out DIR              where the report, history and node logs go
                         (default /tmp/memha-chaos-<seed>)
  --memha PATH           the memha binary (default: memha next to this binary)
  --threads N            client threads (default 4)
  --rate N               client ops/s over all threads (default 1200)
  --skew OFFSET          libfaketime offset for the clock-skew fault (default +3s)
  --recover-timeout D    how long a fault may take to recover (default 30s)
  --faults LIST          only these fault types, comma-separated (default: all of kill9,
                         sigterm, partition, linkdown, oneway, restart_all, clock_skew)
";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0).then(|| Duration::from_secs_f64(v * mult))
}

fn usage_error(msg: &str) -> ! {
    eprintln!("memha-chaos: {msg}\n\n{USAGE}");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("check") {
        let Some(dir) = args.get(1) else {
            usage_error("check needs the directory of a run");
        };
        match run::recheck(std::path::Path::new(dir)) {
            Ok(rep) => {
                print!("{}", report::text(&rep));
                std::process::exit(if rep.pass { 0 } else { 1 });
            }
            Err(e) => {
                eprintln!("memha-chaos: {e}");
                std::process::exit(2);
            }
        }
    }
    let mut nodes: Option<usize> = None;
    let mut duration = Duration::from_secs(90);
    let mut ack: Option<String> = None;
    let mut seed: Option<u64> = None;
    let mut schedule: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut memha: Option<PathBuf> = None;
    let mut threads: u16 = 4;
    let mut rate: u32 = 1200;
    let mut skew = "+3s".to_string();
    let mut recover_timeout = Duration::from_secs(30);
    let mut faults: Option<Vec<FaultKind>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            print!("{USAGE}");
            return;
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || -> String {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_else(|| usage_error(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--nodes" => {
                nodes = Some(match value().as_str() {
                    "2" => 2,
                    "3" => 3,
                    v => usage_error(&format!("--nodes {v}: 2 or 3")),
                })
            }
            "--duration" => {
                let v = value();
                duration = parse_duration(&v)
                    .unwrap_or_else(|| usage_error(&format!("--duration {v}: e.g. 90s, 10m, 1h")))
            }
            "--ack" => {
                let v = value();
                if v != "sync" && v != "async" {
                    usage_error(&format!("--ack {v}: sync or async"));
                }
                ack = Some(v);
            }
            "--seed" => {
                let v = value();
                seed = Some(
                    v.parse()
                        .unwrap_or_else(|_| usage_error(&format!("--seed {v}: a number"))),
                )
            }
            "--schedule" => schedule = Some(PathBuf::from(value())),
            "--out" => out = Some(PathBuf::from(value())),
            "--memha" => memha = Some(PathBuf::from(value())),
            "--threads" => {
                let v = value();
                threads = v
                    .parse()
                    .ok()
                    .filter(|&t| (1..=64).contains(&t))
                    .unwrap_or_else(|| usage_error(&format!("--threads {v}: 1 to 64")))
            }
            "--rate" => {
                let v = value();
                rate = v
                    .parse()
                    .ok()
                    .filter(|&r| r >= 1)
                    .unwrap_or_else(|| usage_error(&format!("--rate {v}: ops per second")))
            }
            "--skew" => skew = value(),
            "--faults" => {
                let v = value();
                let mut kinds = Vec::new();
                for name in v.split(',').filter(|n| !n.is_empty()) {
                    match ALL_KINDS.iter().find(|k| k.name() == name) {
                        Some(k) => kinds.push(*k),
                        None => usage_error(&format!(
                            "--faults {v}: unknown fault {name:?} (kill9, sigterm, partition, \
                             linkdown, oneway, restart_all, clock_skew)"
                        )),
                    }
                }
                if kinds.is_empty() {
                    usage_error("--faults: name at least one fault type");
                }
                faults = Some(kinds);
            }
            "--recover-timeout" => {
                let v = value();
                recover_timeout = parse_duration(&v)
                    .unwrap_or_else(|| usage_error(&format!("--recover-timeout {v}")))
            }
            other => usage_error(&format!("unknown option {other}")),
        }
    }

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "memha-chaos: needs root (it builds network namespaces, and memha's VRRP speaker needs raw sockets); run it as root, e.g. with sudo"
        );
        std::process::exit(2);
    }
    for tool in ["ip", "tc"] {
        if std::process::Command::new(tool)
            .arg("-V")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("memha-chaos: `{tool}` (iproute2) is missing: apt-get install iproute2");
            std::process::exit(2);
        }
    }

    let replay = schedule.map(|p| {
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| usage_error(&format!("--schedule {}: {e}", p.display())));
        serde_json::from_str::<ScheduleFile>(&text)
            .unwrap_or_else(|e| usage_error(&format!("--schedule {}: {e}", p.display())))
    });
    let seed = seed.or(replay.as_ref().map(|s| s.seed)).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let nodes = nodes.or(replay.as_ref().map(|s| s.nodes)).unwrap_or(2);
    let ack = ack
        .or(replay.as_ref().map(|s| s.ack.clone()))
        .unwrap_or_else(|| "sync".into());
    let memha = memha.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("memha")))
            .unwrap_or_else(|| PathBuf::from("target/release/memha"))
    });
    if !memha.is_file() {
        eprintln!(
            "memha-chaos: no memha binary at {} (build it: cargo build --release -p memha, or pass --memha PATH)",
            memha.display()
        );
        std::process::exit(2);
    }
    let memha = std::fs::canonicalize(&memha).unwrap_or(memha);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("/tmp/memha-chaos-{seed}")));
    let out = if out.is_absolute() {
        out
    } else {
        std::env::current_dir().map(|d| d.join(&out)).unwrap_or(out)
    };

    // One lab at a time on a machine: the namespaces have fixed names.
    let _lock = match lab::lock() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("memha-chaos: {e}");
            std::process::exit(4);
        }
    };

    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }

    let opts = Options {
        nodes,
        duration,
        ack,
        seed,
        schedule: replay,
        out: out.clone(),
        memha,
        threads,
        rate,
        skew,
        recover_timeout,
        faults,
    };
    let result = run::run(&opts, &INTERRUPTED);
    // Whatever happened, nothing of the lab stays behind.
    lab::teardown();
    match result {
        Ok(rep) => {
            print!("{}", report::text(&rep));
            println!("(report, history, node logs: {})", out.display());
            std::process::exit(if rep.pass { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("memha-chaos: {e} (logs: {})", out.display());
            std::process::exit(3);
        }
    }
}

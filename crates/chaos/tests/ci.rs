//! The short HA scenario CI runs: two nodes, `--repl-ack sync`, about two minutes, every
//! fault type at least once. It prints the checker's report and asserts the invariants;
//! outages are printed, not asserted (timings on a shared CI machine prove nothing).
//!
//! Root only (network namespaces, VRRP's raw sockets): otherwise it prints
//! `skipped: <reason>` and returns. It builds nothing: the runner is this package's binary
//! and memha is the debug binary `cargo test --workspace` builds next to it
//! (`MEMHA_CHAOS_MEMHA=/path/to/memha` runs another one, e.g. a release build).
//! `MEMHA_CHAOS_SEED` picks the seed (default: fixed, so a failure replays).
//!
//! The kept regression cases (`regressions/*.json`) are replayed by `regression_cases`.

use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_SEED: u64 = 20261125;

/// One lab per machine: the tests of this file take turns (cargo runs tests in parallel,
/// and a second run would find the lab in use and skip).
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Why this machine cannot run a scenario, if it cannot.
fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, raw sockets for VRRP)");
    }
    if Command::new("tc").arg("-V").output().is_err() {
        return Some("`tc` (iproute2) is not installed");
    }
    None
}

/// The memha binary to run: `MEMHA_CHAOS_MEMHA`, or the one built next to the runner.
fn memha(chaos: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("MEMHA_CHAOS_MEMHA") {
        return PathBuf::from(p);
    }
    let memha = chaos
        .parent()
        .expect("the binary has a directory")
        .join("memha");
    assert!(
        memha.is_file(),
        "{} is missing: this test runs the memha binary that `cargo test --workspace` builds; \
         build it with `cargo build -p memha` (same profile) and run the test again",
        memha.display()
    );
    memha
}

/// Runs memha-chaos with `args` into `out` and returns its report (None: the lab is in use
/// by another run, the test is skipped). The runner's own output (progress on stderr, the
/// report on stdout) goes straight to the terminal, so the figures show in CI's log even
/// when the test passes.
fn run_chaos(args: &[&str], out: &Path) -> Option<serde_json::Value> {
    let _turn = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_memha-chaos"));
    let status = Command::new(&chaos)
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--memha")
        .arg(memha(&chaos))
        .status()
        .expect("running memha-chaos");
    if status.code() == Some(4) {
        eprintln!("skipped: another memha-chaos run is using the lab on this machine");
        return None;
    }
    let report = std::fs::read_to_string(out.join("report.json")).unwrap_or_else(|e| {
        panic!(
            "memha-chaos ({status}) left no report in {}: {e}",
            out.display()
        )
    });
    Some(serde_json::from_str(&report).expect("report.json parses"))
}

/// The invariants that failed, by name (empty: all hold).
fn broken(r: &serde_json::Value) -> Vec<String> {
    r["invariants"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["ok"].as_bool() != Some(true))
                .map(|i| {
                    format!(
                        "{}: {}",
                        i["name"].as_str().unwrap_or("?"),
                        i["value"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_else(|| vec!["report has no invariants".into()])
}

/// The fault types CI injects: all of them.
const CI_FAULTS: &str = "kill9,sigterm,partition,linkdown,oneway,restart_all,clock_skew";

#[test]
fn two_nodes_sync_every_fault_type() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let seed: u64 = std::env::var("MEMHA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_memha-chaos"));
    let out = dir
        .parent()
        .expect("the binary has a directory")
        .join(format!("chaos-ci-{}", std::process::id()));
    let seed = seed.to_string();
    let args = [
        "--nodes",
        "2",
        "--duration",
        "90s",
        "--ack",
        "sync",
        "--seed",
        &seed,
        "--faults",
        CI_FAULTS,
    ];
    let Some(r) = run_chaos(&args, &out) else {
        return;
    };
    let kinds: Vec<&str> = r["by_kind"]
        .as_array()
        .map(|a| a.iter().filter_map(|k| k["kind"].as_str()).collect())
        .unwrap_or_default();
    for kind in [
        "kill9",
        "sigterm",
        "partition",
        "linkdown",
        "oneway",
        "restart_all",
    ] {
        assert!(kinds.contains(&kind), "no {kind} fault was injected");
    }
    if !kinds.contains(&"clock_skew") {
        println!("note: no clock_skew fault (libfaketime unavailable?)");
    }
    let failed = broken(&r);
    assert!(
        failed.is_empty(),
        "invariants broken: {failed:?}; replay: memha-chaos --schedule {}/schedule.json (history and node logs in {})",
        out.display(),
        out.display()
    );
}

/// Every kept case (docs/HA.md, "Problems found"; all fixed) must hold its invariants
/// again: counters rejoining (problem 1), stale CAS after a partition heals (problem 2),
/// three nodes' counters.
#[test]
fn regression_cases() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases)
        .expect("regressions/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let base = PathBuf::from(env!("CARGO_BIN_EXE_memha-chaos"))
        .parent()
        .expect("the binary has a directory")
        .join(format!("chaos-regressions-{}", std::process::id()));
    let mut failures = Vec::new();
    for f in &files {
        let name = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        println!("== {name}");
        let schedule = f.to_string_lossy().into_owned();
        let Some(r) = run_chaos(&["--schedule", &schedule], &base.join(&name)) else {
            return;
        };
        let failed = broken(&r);
        if !failed.is_empty() {
            failures.push(format!("{name}: {failed:?}"));
        }
    }
    assert!(failures.is_empty(), "regression cases fail: {failures:#?}");
}

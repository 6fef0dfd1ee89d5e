//! One scenario from start to report: build the lab, start the nodes, start the load and
//! the VIP monitor, inject the faults one at a time (each followed by its heal and a wait
//! until every node is ready and replication has caught up), quiesce, read every node,
//! check, report.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checker::{self, Input};
use crate::faults::{Executed, FaultKind, Generator, Planned, ScheduleFile, Target, ALL_KINDS};
use crate::history::{all_keys, key_name, Op};
use crate::lab::{self, AddrWatch, Lab};
use crate::mc;
use crate::node::{self, Nodes};
use crate::report::{self, Report};
use crate::rng::Rng;
use crate::workload::{self, Workload};
use crate::Result;

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    pub duration: Duration,
    pub ack: String,
    pub seed: u64,
    pub schedule: Option<ScheduleFile>,
    pub out: PathBuf,
    pub memha: PathBuf,
    pub threads: u16,
    pub rate: u32,
    /// libfaketime's offset for the clock-skew fault.
    pub skew: String,
    /// How long a fault may take to recover before it is reported as not recovered.
    pub recover_timeout: Duration,
    /// Only these fault types (`None`: all).
    pub faults: Option<Vec<FaultKind>>,
}

/// A change in who holds the VIP: (ns since start, bitmask of holders).
pub type VipSample = (u64, u32);

struct VipMonitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<VipSample>, u64)>,
}

impl VipMonitor {
    /// Samples the holders every 10 ms; keeps the changes.
    fn start(mut watch: AddrWatch, t0: Instant) -> VipMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut changes: Vec<VipSample> = Vec::new();
            let mut samples = 0u64;
            let mut last: Option<u32> = None;
            while !s.load(Ordering::Relaxed) {
                let t = t0.elapsed().as_nanos() as u64;
                if let Ok(h) = watch.holders(lab::VIP) {
                    samples += 1;
                    let mask = h.iter().fold(0u32, |m, &i| m | (1 << i));
                    if last != Some(mask) {
                        changes.push((t, mask));
                        last = Some(mask);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (changes, samples)
        });
        VipMonitor { stop, handle }
    }

    fn stop(self) -> (Vec<VipSample>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

struct Runner<'a> {
    opts: &'a Options,
    t0: Instant,
    lab: Lab,
    nodes: Nodes,
    watch: AddrWatch,
    log: BufWriter<File>,
    interrupted: &'a AtomicBool,
    rng: Rng,
    skew_ok: Option<bool>,
    skew_note: String,
}

impl Runner<'_> {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn say(&mut self, msg: &str) {
        let line = format!("[{:8.3}s] {msg}", self.t0.elapsed().as_secs_f64());
        eprintln!("{line}");
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
    }

    fn check_interrupt(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            Err("interrupted".into())
        } else {
            Ok(())
        }
    }

    /// Sleeps, but wakes up for an interrupt.
    fn sleep(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check_interrupt()?;
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }

    fn holders(&mut self) -> Vec<usize> {
        self.watch.holders(lab::VIP).unwrap_or_default()
    }

    /// Waits until every node is ready and healthy, exactly one is MASTER and holds the
    /// VIP, every link streams, and every subscriber has acknowledged each node's stream
    /// up to where it was when the rest was true.
    fn wait_quiesced(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let n = self.nodes.len();
        let mut why = String::from("nothing checked yet");
        let mut snapshot: Option<Vec<u64>> = None;
        loop {
            self.check_interrupt()?;
            if Instant::now() >= deadline {
                return Err(why);
            }
            std::thread::sleep(Duration::from_millis(50));
            let mut statuses = Vec::new();
            let mut bad = None;
            for i in 0..n {
                if !self.nodes.running(i) {
                    bad = Some(format!("{} is not running", self.nodes.specs[i].name));
                    break;
                }
                match self.nodes.status(i) {
                    Ok(s) => statuses.push(s),
                    Err(e) => {
                        bad = Some(format!("{}: {e}", self.nodes.specs[i].name));
                        break;
                    }
                }
            }
            if let Some(b) = bad {
                why = b;
                snapshot = None;
                continue;
            }
            let names: Vec<String> = self.nodes.specs.iter().map(|s| s.name.clone()).collect();
            let name = |i: usize| names[i].clone();
            if let Some(i) = (0..n).find(|&i| !statuses[i].ready || !statuses[i].healthy) {
                why = format!(
                    "{} not ready/healthy (ready {}, healthy {}, vrrp {})",
                    name(i),
                    statuses[i].ready,
                    statuses[i].healthy,
                    statuses[i].vrrp_state
                );
                snapshot = None;
                continue;
            }
            let masters: Vec<usize> = (0..n)
                .filter(|&i| statuses[i].vrrp_state == "MASTER")
                .collect();
            let holders = self.holders();
            if masters.len() != 1 || holders != masters {
                why = format!(
                    "masters {:?}, VIP holders {:?}",
                    masters.iter().map(|&i| name(i)).collect::<Vec<_>>(),
                    holders.iter().map(|&i| name(i)).collect::<Vec<_>>()
                );
                snapshot = None;
                continue;
            }
            if let Some(i) = (0..n).find(|&i| {
                statuses[i].peers.len() != n - 1
                    || statuses[i].peers.iter().any(|(_, st, _)| st != "streaming")
            }) {
                why = format!("{} links: {:?}", name(i), statuses[i].peers);
                snapshot = None;
                continue;
            }
            let Some(snap) = &snapshot else {
                snapshot = Some(statuses.iter().map(|s| s.backlog_last_seq).collect());
                why = "replication catching up".into();
                continue;
            };
            let mut caught_up = true;
            for i in 0..n {
                for j in 0..n {
                    if i == j {
                        continue;
                    }
                    // j has i's stream up to: what i saw j acknowledge, or what j says
                    // it applied (a resumed subscription acknowledges nothing until the
                    // next write, so i's view alone can stay at 0).
                    let prefix_j = format!("{}:", self.nodes.specs[j].addr);
                    let prefix_i = format!("{}:", self.nodes.specs[i].addr);
                    let acked = statuses[i]
                        .subscribers
                        .iter()
                        .filter(|(a, _)| a.starts_with(&prefix_j))
                        .map(|(_, s)| *s)
                        .chain(
                            statuses[j]
                                .peers
                                .iter()
                                .filter(|(a, _, _)| a.starts_with(&prefix_i))
                                .map(|(_, _, s)| *s),
                        )
                        .max();
                    if acked.is_none_or(|a| a < snap[i]) {
                        caught_up = false;
                        why = format!(
                            "{} has applied {:?} of {}'s stream, which was at {}",
                            name(j),
                            acked,
                            name(i),
                            snap[i]
                        );
                    }
                }
            }
            if caught_up {
                return Ok(start.elapsed());
            }
        }
    }

    /// After a fault: wait for recovery; if it does not come, repair what can be repaired
    /// (heal every link, start every stopped node) and wait once more.
    fn recover(&mut self, fault: &mut Executed) -> Result<()> {
        match self.wait_quiesced(self.opts.recover_timeout) {
            Ok(_) => {
                fault.recovered = true;
            }
            Err(why) => {
                self.check_interrupt()?;
                fault.recovered = false;
                fault.note.push_str(&format!(
                    "not recovered within {:?}: {why}; ",
                    self.opts.recover_timeout
                ));
                self.say(&format!(
                    "fault {} ({}) did not recover: {why}",
                    fault.id,
                    fault.kind.name()
                ));
                self.lab.heal_all()?;
                for i in 0..self.nodes.len() {
                    if !self.nodes.running(i) {
                        self.nodes.start(i, None)?;
                    }
                }
                if let Err(e) = self.wait_quiesced(Duration::from_secs(60)) {
                    self.check_interrupt()?;
                    fault.note.push_str(&format!(
                        "not even after repair (healing, restarting): {e}; "
                    ));
                    self.say(&format!(
                        "fault {}: still not recovered after repair: {e}",
                        fault.id
                    ));
                }
            }
        }
        fault.end_ns = self.now_ns();
        Ok(())
    }

    fn pick_target(&mut self, target: &Target) -> (usize, bool) {
        let holders = self.holders();
        let holder = holders.first().copied();
        match target {
            Target::Node(name) => {
                let i = self
                    .nodes
                    .specs
                    .iter()
                    .position(|s| &s.name == name)
                    .unwrap_or(0);
                (i, holders.contains(&i))
            }
            Target::Holder | Target::All => match holder {
                Some(h) => (h, true),
                None => (0, false),
            },
            Target::NonHolder => {
                let others: Vec<usize> = (0..self.nodes.len())
                    .filter(|i| !holders.contains(i))
                    .collect();
                if others.is_empty() {
                    (0, holders.contains(&0))
                } else {
                    let k = self.rng.range(0, others.len() as u64 - 1) as usize;
                    (others[k], false)
                }
            }
        }
    }

    fn inject(&mut self, id: usize, p: &Planned) -> Result<Executed> {
        self.sleep(Duration::from_millis(p.pre_ms))?;
        let (i, was_holder) = self.pick_target(&p.target);
        let node = if p.kind == FaultKind::RestartAll {
            "all".to_string()
        } else {
            self.nodes.specs[i].name.clone()
        };
        let hold = Duration::from_millis(p.hold_ms);
        let mut f = Executed {
            id,
            kind: p.kind,
            node: node.clone(),
            was_holder,
            pre_ms: p.pre_ms,
            hold_ms: p.hold_ms,
            start_ns: self.now_ns(),
            heal_ns: 0,
            end_ns: 0,
            recovered: false,
            wipe_ns: None,
            note: String::new(),
        };
        self.say(&format!(
            "fault {id}: {} {node}{} (hold {} ms)",
            p.kind.name(),
            if was_holder { " (VIP holder)" } else { "" },
            p.hold_ms
        ));
        match p.kind {
            FaultKind::Kill9 => {
                let pid = self.nodes.kill9_data(i)?;
                f.note.push_str(&format!("killed data process {pid}; "));
                f.heal_ns = f.start_ns;
            }
            FaultKind::Sigterm => {
                self.nodes.sigterm(i)?;
                if !self.nodes.wait_exit(i, Duration::from_secs(15)) {
                    f.note
                        .push_str("the supervisor did not exit within 15 s of SIGTERM; ");
                }
                self.sleep(hold.saturating_sub(Duration::from_nanos(self.now_ns() - f.start_ns)))?;
                f.heal_ns = self.now_ns();
                self.nodes.start(i, None)?;
            }
            FaultKind::Partition | FaultKind::Linkdown | FaultKind::Oneway => {
                match p.kind {
                    FaultKind::Partition => self.lab.partition(&node)?,
                    FaultKind::Linkdown => self.lab.linkdown(&node)?,
                    _ => self.lab.oneway(&node)?,
                }
                self.sleep(hold)?;
                f.heal_ns = self.now_ns();
                match p.kind {
                    FaultKind::Linkdown => self.lab.linkup(&node)?,
                    _ => self.lab.heal(&node)?,
                }
            }
            FaultKind::RestartAll => {
                for j in 0..self.nodes.len() {
                    self.nodes.sigterm(j)?;
                }
                for j in 0..self.nodes.len() {
                    if !self.nodes.wait_exit(j, Duration::from_secs(15)) {
                        f.note.push_str(&format!(
                            "{} did not exit within 15 s of SIGTERM; ",
                            self.nodes.specs[j].name
                        ));
                    }
                }
                f.wipe_ns = Some(self.now_ns());
                self.sleep(hold)?;
                f.heal_ns = self.now_ns();
                for j in 0..self.nodes.len() {
                    self.nodes.start(j, None)?;
                }
            }
            FaultKind::ClockSkew => {
                self.nodes.sigterm(i)?;
                self.nodes.wait_exit(i, Duration::from_secs(15));
                self.nodes.start(i, Some(&self.opts.skew.clone()))?;
                // Is the clock really ahead? The node's `stats` time against ours.
                let mut seen = None;
                for _ in 0..100 {
                    if let Ok(s) = self.nodes.status(i) {
                        let ours = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        seen = Some(s.time as i64 - ours as i64);
                        break;
                    }
                    self.sleep(Duration::from_millis(100))?;
                }
                let want = parse_skew_secs(&self.opts.skew).unwrap_or(0);
                match seen {
                    Some(d) if (d - want).abs() <= 1 && want != 0 => {
                        f.note
                            .push_str(&format!("{node}'s clock measured {d:+} s from ours; "));
                        self.skew_ok = Some(true);
                    }
                    other => {
                        let msg = format!(
                            "libfaketime did not skew {node}'s clock (measured {other:?} s, wanted {want:+} s)"
                        );
                        f.note.push_str(&msg);
                        f.note.push_str("; ");
                        self.skew_ok = Some(false);
                        self.skew_note = msg;
                    }
                }
                // Let the skewed node take part (in sync with the others) for the hold.
                if self.wait_quiesced(self.opts.recover_timeout).is_err() {
                    f.note.push_str("the skewed node did not join in time; ");
                }
                self.sleep(hold)?;
                f.heal_ns = self.now_ns();
                self.nodes.sigterm(i)?;
                self.nodes.wait_exit(i, Duration::from_secs(15));
                self.nodes.start(i, None)?;
            }
        }
        self.recover(&mut f)?;
        self.say(&format!(
            "fault {id}: {} {node}: back to normal {:.2} s after the heal{}",
            p.kind.name(),
            (f.end_ns - f.heal_ns) as f64 / 1e9,
            if f.recovered { "" } else { " (after repair)" }
        ));
        Ok(f)
    }
}

fn parse_skew_secs(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix('s').unwrap_or(s);
    s.parse::<i64>().ok()
}

/// Runs the scenario; the report is also written to `opts.out`.
pub fn run(opts: &Options, interrupted: &AtomicBool) -> Result<Report> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let t0 = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let log = BufWriter::new(
        File::create(opts.out.join("run.log")).map_err(|e| format!("run.log: {e}"))?,
    );
    // A private copy of the binary: a rebuild of target/ during a long run must not change
    // what the nodes run (the supervisor re-executes its own file to restart the cache).
    let memha = opts.out.join("memha");
    let _ = std::fs::remove_file(&memha);
    std::fs::copy(&opts.memha, &memha).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            opts.memha.display(),
            memha.display()
        )
    })?;
    let lab = Lab::up(opts.nodes)?;
    let nodes = Nodes::new(opts.nodes, &opts.out, &memha, &opts.ack, t0)?;
    let watch = AddrWatch::open(&lab.nodes)?;
    let mut r = Runner {
        opts,
        t0,
        lab,
        nodes,
        watch,
        log,
        interrupted,
        rng: Rng::new(opts.seed).fork(0x7a),
        skew_ok: None,
        skew_note: String::new(),
    };
    r.say(&format!(
        "lab up: {} nodes, ack {}, seed {}, memha {}",
        opts.nodes,
        opts.ack,
        opts.seed,
        opts.memha.display()
    ));

    // n1 first, so it is the one that takes the address; then the others.
    r.nodes.start(0, None)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.holders() != vec![0] {
        r.check_interrupt()?;
        if Instant::now() > deadline || !r.nodes.running(0) {
            return Err(format!(
                "n1 did not take the VIP within 30 s (log: {})",
                r.nodes.log_path(0).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..r.nodes.len() {
        r.nodes.start(i, None)?;
    }
    r.wait_quiesced(Duration::from_secs(60))
        .map_err(|e| format!("the nodes did not settle after starting: {e}"))?;
    r.say("all nodes ready");

    let mut faketime_here = Path::new(node::FAKETIME_LIB).exists();
    if !faketime_here && Path::new("/usr/bin/apt-get").exists() {
        r.say("libfaketime is missing: apt-get install -y faketime (for the clock-skew fault)");
        let apt = |args: &[&str]| {
            std::process::Command::new("apt-get")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // A fresh machine may have no package lists yet.
        let _ = apt(&["install", "-y", "-q", "faketime"])
            || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "faketime"]));
        faketime_here = Path::new(node::FAKETIME_LIB).exists();
    }
    let mut kinds: Vec<FaultKind> = ALL_KINDS.to_vec();
    if let Some(only) = &opts.faults {
        kinds.retain(|k| only.contains(k));
    }
    if !faketime_here {
        kinds.retain(|k| *k != FaultKind::ClockSkew);
        r.skew_ok = Some(false);
        r.skew_note = format!(
            "clock_skew skipped: {} is missing (apt-get install faketime)",
            node::FAKETIME_LIB
        );
        let note = r.skew_note.clone();
        r.say(&note);
    }

    let monitor = VipMonitor::start(AddrWatch::open(&r.lab.nodes)?, t0);
    let wl = Workload::start(
        &workload::Config {
            threads: opts.threads,
            rate: opts.rate,
            timeout: Duration::from_millis(500),
            target: SocketAddr::from((lab::VIP, node::PORT)),
            seed: opts.seed,
        },
        t0,
    )?;
    let load_start_ns = r.now_ns();
    let mut executed: Vec<Executed> = Vec::new();
    let mut planned: Vec<Planned> = Vec::new();
    let mut error: Option<String> = None;
    let body = (|| -> Result<()> {
        r.sleep(Duration::from_secs(2))?;
        let mut gen = Generator::new(opts.seed, &kinds);
        let replay = opts.schedule.as_ref().map(|s| s.faults.clone());
        let hard_end = opts.duration + Duration::from_secs(600);
        let mut seen: Vec<FaultKind> = Vec::new();
        let mut k = 0;
        loop {
            r.check_interrupt()?;
            let p = match &replay {
                Some(list) => match list.get(k) {
                    Some(p) => p.clone(),
                    None => break,
                },
                None => {
                    let elapsed = t0.elapsed();
                    let all_seen = kinds.iter().all(|x| seen.contains(x));
                    if (elapsed >= opts.duration && all_seen) || elapsed >= hard_end {
                        break;
                    }
                    gen.next_fault()
                }
            };
            k += 1;
            if p.kind == FaultKind::ClockSkew && r.skew_ok == Some(false) {
                continue;
            }
            let f = r.inject(executed.len() + 1, &p)?;
            planned.push(Planned {
                target: if f.kind == FaultKind::RestartAll {
                    Target::All
                } else {
                    Target::Node(f.node.clone())
                },
                ..p.clone()
            });
            if !seen.contains(&f.kind) {
                seen.push(f.kind);
            }
            executed.push(f);
        }
        r.sleep(Duration::from_secs(2))
    })();
    if let Err(e) = body {
        error = Some(e);
    }
    let ops = wl.stop();
    let load_end_ns = r.now_ns();
    r.say(&format!("load stopped: {} ops", ops.len()));
    if let Some(e) = error {
        let _ = write_history(&opts.out, &ops);
        let _ = write_schedule(opts, &planned, "aborted run");
        return Err(e);
    }

    // Quiesce: everything healed, every node ready, replication caught up.
    r.lab.heal_all()?;
    let quiesce = r.wait_quiesced(Duration::from_secs(90));
    let (vip_changes, vip_samples) = monitor.stop();
    let quiesce_err = quiesce.err();
    // Caught up by sequence numbers; give in-flight applies a moment more anyway.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(e) = &quiesce_err {
        r.say(&format!("did not quiesce: {e}"));
    }
    let keys = all_keys(opts.threads);
    let mut finals = Vec::new();
    for i in 0..r.nodes.len() {
        let name = r.nodes.specs[i].name.clone();
        match r.nodes.dump(i, &keys) {
            Ok(d) => finals.push((name, Some(d))),
            Err(e) => {
                r.say(&format!("cannot read {name}: {e}"));
                finals.push((name, None));
            }
        }
        if let Ok(s) = r.nodes.status(i) {
            let mut lines: Vec<String> = s.raw.iter().map(|(k, v)| format!("{k} {v}")).collect();
            lines.sort();
            let _ = std::fs::write(
                opts.out
                    .join(format!("final-stats-{}.txt", r.nodes.specs[i].name)),
                lines.join("\n") + "\n",
            );
        }
    }
    r.say("final state read from every node; stopping the nodes");
    r.nodes.stop_all();

    write_history(&opts.out, &ops)?;
    write_finals(&opts.out, &finals)?;
    write_json(&opts.out.join("faults.json"), &executed)?;
    {
        let mut w = BufWriter::new(
            File::create(opts.out.join("vip.tsv")).map_err(|e| format!("vip.tsv: {e}"))?,
        );
        for (t, mask) in &vip_changes {
            let who: Vec<String> = (0..opts.nodes)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| format!("n{}", i + 1))
                .collect();
            let _ = writeln!(
                w,
                "{t}\t{}",
                if who.is_empty() {
                    "none".into()
                } else {
                    who.join(",")
                }
            );
        }
    }

    let input = Input {
        ops: &ops,
        faults: &executed,
        finals: &finals,
        vip_changes: &vip_changes,
        load_start_ns,
        load_end_ns,
        keys: &keys,
    };
    let findings = checker::check(&input);
    let mut notes = Vec::new();
    if let Some(e) = quiesce_err {
        notes.push(format!("the nodes did not quiesce after the run: {e}"));
    }
    if !r.skew_note.is_empty() {
        notes.push(r.skew_note.clone());
    }
    notes.push(format!("VIP samples: {vip_samples} (every 10 ms)"));
    let rep = report::build(
        opts,
        report::utc(started_at),
        t0.elapsed(),
        &findings,
        &executed,
        notes,
    );
    report::write(&opts.out, &rep)?;
    if !rep.pass {
        write_schedule(opts, &planned, "failing run")?;
    } else {
        write_schedule(opts, &planned, "")?;
    }
    r.say(&format!(
        "report: {} ({})",
        opts.out.join("report.txt").display(),
        if rep.pass { "PASS" } else { "FAIL" }
    ));
    Ok(rep)
}

fn write_history(out: &Path, ops: &[Op]) -> Result<()> {
    let mut w = BufWriter::new(
        File::create(out.join("history.tsv")).map_err(|e| format!("history.tsv: {e}"))?,
    );
    let _ = writeln!(
        w,
        "# thread\tseq\top\tkey\targ\tflags\tunique\tflow\tretry\tstart_ns\tend_ns\tresult"
    );
    for op in ops {
        writeln!(w, "{}", op.to_tsv()).map_err(|e| format!("history.tsv: {e}"))?;
    }
    w.flush().map_err(|e| format!("history.tsv: {e}"))
}

type Finals = Vec<(String, Option<HashMap<u32, Option<mc::Value>>>)>;

fn write_finals(out: &Path, finals: &Finals) -> Result<()> {
    for (name, dump) in finals {
        let Some(dump) = dump else { continue };
        let mut keys: Vec<&u32> = dump.keys().collect();
        keys.sort();
        let mut w = BufWriter::new(
            File::create(out.join(format!("final-{name}.tsv")))
                .map_err(|e| format!("final-{name}.tsv: {e}"))?,
        );
        for k in keys {
            match &dump[k] {
                None => {
                    let _ = writeln!(w, "{}\t-", key_name(*k));
                }
                Some(v) => {
                    let _ = writeln!(
                        w,
                        "{}\t{}\t{}\t{}",
                        key_name(*k),
                        v.flags,
                        v.cas.unwrap_or(0),
                        String::from_utf8_lossy(&v.data)
                    );
                }
            }
        }
    }
    Ok(())
}

fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn write_schedule(opts: &Options, planned: &[Planned], comment: &str) -> Result<()> {
    let file = ScheduleFile {
        seed: opts.seed,
        nodes: opts.nodes,
        ack: opts.ack.clone(),
        comment: comment.to_string(),
        faults: planned.to_vec(),
    };
    write_json(&opts.out.join("schedule.json"), &file)
}

/// Runs the checker again on what a run left in `dir` (history, faults, VIP changes, final
/// contents) and rewrites its report; the run's settings come from its `schedule.json` and
/// earlier `report.json`.
pub fn recheck(dir: &Path) -> Result<Report> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let sched: ScheduleFile =
        serde_json::from_str(&read("schedule.json")?).map_err(|e| format!("schedule.json: {e}"))?;
    let faults: Vec<Executed> =
        serde_json::from_str(&read("faults.json")?).map_err(|e| format!("faults.json: {e}"))?;
    let old: Option<serde_json::Value> = read("report.json")
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut ops = Vec::new();
    for (n, line) in read("history.tsv")?.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        ops.push(Op::from_tsv(line).ok_or_else(|| format!("history.tsv:{}: cannot read", n + 1))?);
    }
    let threads = ops.iter().map(|o| o.thread + 1).max().unwrap_or(0);
    let mut vip_changes = Vec::new();
    for line in read("vip.tsv")?.lines() {
        let Some((t, who)) = line.split_once('\t') else {
            continue;
        };
        let t: u64 = t.parse().map_err(|_| format!("vip.tsv: {line}"))?;
        let mask = who
            .split(',')
            .filter_map(|n| n.strip_prefix('n')?.parse::<u32>().ok())
            .filter(|&i| i >= 1)
            .fold(0u32, |m, i| m | (1 << (i - 1)));
        vip_changes.push((t, mask));
    }
    let mut finals: Finals = Vec::new();
    for i in 1..=sched.nodes {
        let name = format!("n{i}");
        let Ok(text) = read(&format!("final-{name}.tsv")) else {
            finals.push((name, None));
            continue;
        };
        let mut dump = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(4, '\t').collect();
            let Some(key) = f.first().and_then(|k| crate::history::parse_key_name(k)) else {
                continue;
            };
            let v = (f.len() == 4).then(|| mc::Value {
                key: f[0].to_string(),
                flags: f[1].parse().unwrap_or(0),
                cas: f[2].parse().ok(),
                data: f[3].as_bytes().to_vec(),
            });
            dump.insert(key, v);
        }
        finals.push((name, Some(dump)));
    }
    let keys = all_keys(threads);
    let load_start_ns = ops.iter().map(|o| o.start).min().unwrap_or(0);
    let load_end_ns = ops.iter().map(|o| o.end).max().unwrap_or(0);
    let findings = checker::check(&Input {
        ops: &ops,
        faults: &faults,
        finals: &finals,
        vip_changes: &vip_changes,
        load_start_ns,
        load_end_ns,
        keys: &keys,
    });
    let field = |k: &str| old.as_ref().and_then(|o| o.get(k)).cloned();
    let opts = Options {
        nodes: sched.nodes,
        duration: Duration::ZERO,
        ack: sched.ack.clone(),
        seed: sched.seed,
        schedule: None,
        out: dir.to_path_buf(),
        memha: PathBuf::new(),
        threads,
        rate: field("target_rate").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
        skew: String::new(),
        recover_timeout: Duration::ZERO,
        faults: None,
    };
    let started = field("started_utc")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let took = Duration::from_secs_f64(field("duration_s").and_then(|v| v.as_f64()).unwrap_or(0.0));
    let mut notes: Vec<String> = field("notes")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .filter(|n| !n.starts_with("report rewritten"))
        .collect();
    notes.push("report rewritten from the run's files by `memha-chaos check`".into());
    let rep = report::build(&opts, started, took, &findings, &faults, notes);
    report::write(dir, &rep)?;
    Ok(rep)
}

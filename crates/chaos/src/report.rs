//! The report: a text table (`report.txt`, also printed) and the same as JSON
//! (`report.json`). A run passes when the invariants hold; the failover targets are
//! reported next to the measured outages but do not decide the exit code (timings on a
//! shared machine are not a proof).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::checker::Findings;
use crate::faults::{Executed, FaultKind, ALL_KINDS};
use crate::run::Options;
use crate::Result;

#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    pub kind: FaultKind,
    pub count: usize,
    pub outage_median_ms: f64,
    /// Faults of this kind that hit the VIP holder, and their median outage.
    pub holder_count: usize,
    pub holder_outage_median_ms: f64,
    pub outage_max_ms: f64,
    pub failed_requests: usize,
    pub failed_attempts: usize,
    pub no_holder_ms: f64,
    pub multi_holder_ms: f64,
    pub not_recovered: usize,
    /// The failover target for this kind, if there is one: median outage, ms.
    pub target_ms: Option<f64>,
    /// Whether the holder median met it; `None` without a target or without a fault that hit
    /// the holder.
    pub target_met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    pub name: String,
    pub value: String,
    pub required: String,
    pub ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub started_utc: String,
    pub duration_s: f64,
    pub nodes: usize,
    pub ack: String,
    pub seed: u64,
    pub client_threads: u16,
    pub target_rate: u32,
    pub faults: usize,
    pub by_kind: Vec<KindSummary>,
    pub invariants: Vec<Invariant>,
    pub pass: bool,
    pub notes: Vec<String>,
    pub findings: Findings,
    pub executed: Vec<Executed>,
}

/// The failover targets: median outage per kind (ms).
fn target(kind: FaultKind) -> Option<f64> {
    match kind {
        FaultKind::Kill9 => Some(100.0),
        FaultKind::Partition | FaultKind::Linkdown => Some(200.0),
        FaultKind::Sigterm => Some(50.0),
        _ => None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn build(
    opts: &Options,
    started_utc: String,
    took: Duration,
    findings: &Findings,
    faults: &[Executed],
    notes: Vec<String>,
) -> Report {
    let executed = faults.to_vec();
    let mut by_kind = Vec::new();
    for kind in ALL_KINDS {
        let of: Vec<_> = findings.faults.iter().filter(|x| x.kind == kind).collect();
        if of.is_empty() {
            continue;
        }
        let mut outages: Vec<f64> = of.iter().map(|x| x.outage_ms).collect();
        let med = median(&mut outages);
        // The failover targets are about the node clients use: judged on the faults that
        // hit the VIP holder.
        let mut held: Vec<f64> = of
            .iter()
            .filter(|x| x.was_holder)
            .map(|x| x.outage_ms)
            .collect();
        let holder_count = held.len();
        let holder_med = median(&mut held);
        let failed_requests = of.iter().map(|x| x.failed_requests).sum();
        let t = target(kind);
        // Not judged when no fault of this type hit the holder.
        let met = t
            .filter(|_| holder_count > 0)
            .map(|t| holder_med <= t && (kind != FaultKind::Sigterm || failed_requests == 0));
        by_kind.push(KindSummary {
            kind,
            count: of.len(),
            outage_median_ms: med,
            holder_count,
            holder_outage_median_ms: holder_med,
            outage_max_ms: outages.iter().copied().fold(0.0, f64::max),
            failed_requests,
            failed_attempts: of.iter().map(|x| x.failed_attempts).sum(),
            no_holder_ms: of.iter().map(|x| x.no_holder_ms).sum(),
            multi_holder_ms: of.iter().map(|x| x.multi_holder_ms).sum(),
            not_recovered: of.iter().filter(|x| !x.recovered).count(),
            target_ms: t,
            target_met: met,
        });
    }
    let sync = opts.ack == "sync";
    let inv = |name: &str, value: String, required: &str, ok: bool| Invariant {
        name: name.into(),
        value,
        required: required.into(),
        ok,
    };
    let not_recovered = faults.iter().filter(|x| !x.recovered).count();
    let invariants = vec![
        inv(
            "acknowledged writes lost",
            format!(
                "{} of {}",
                findings.lost_acked_writes, findings.acked_writes
            ),
            if sync { "0" } else { "counted (async)" },
            !sync || findings.lost_acked_writes == 0,
        ),
        inv(
            "divergent keys between nodes",
            findings.divergent_keys.to_string(),
            "0",
            findings.divergent_keys == 0,
        ),
        inv(
            "increments lost",
            format!(
                "{} of {}",
                findings.lost_increments, findings.acked_increments
            ),
            "0",
            findings.lost_increments == 0,
        ),
        inv(
            "stale CAS accepted",
            format!(
                "{} ({} deliberately stale CAS tried)",
                findings.stale_cas_accepted, findings.stale_cas_tried
            ),
            "0",
            findings.stale_cas_accepted == 0,
        ),
        inv(
            "nodes unreadable at the end",
            findings.unreadable_nodes.len().to_string(),
            "0",
            findings.unreadable_nodes.is_empty(),
        ),
        inv(
            "faults not recovered in time",
            not_recovered.to_string(),
            "0",
            not_recovered == 0,
        ),
    ];
    let pass = invariants.iter().all(|i| i.ok);
    Report {
        started_utc,
        duration_s: took.as_secs_f64(),
        nodes: opts.nodes,
        ack: opts.ack.clone(),
        seed: opts.seed,
        client_threads: opts.threads,
        target_rate: opts.rate,
        faults: faults.len(),
        by_kind,
        invariants,
        pass,
        notes,
        findings: findings.clone(),
        executed,
    }
}

/// `YYYY-MM-DD HH:MM UTC` from unix seconds (civil-from-days).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let f = &r.findings;
    let faults = &r.executed;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "memha-chaos: {} nodes, --repl-ack {}, seed {}, started {}, ran {:.0} s, {} faults",
        r.nodes, r.ack, r.seed, r.started_utc, r.duration_s, r.faults
    );
    let _ = writeln!(
        s,
        "client: {} threads, ~{} ops/s target; {} ops, {} replied, {} failed attempts, {} failed requests ({} outside fault windows)",
        r.client_threads,
        r.target_rate,
        f.ops,
        f.ops_replied,
        f.failed_attempts,
        f.failed_requests,
        f.failed_requests_outside_faults
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "invariants");
    for i in &r.invariants {
        let _ = writeln!(
            s,
            "  {:<34} {:<40} required {:<16} {}",
            i.name,
            i.value,
            i.required,
            if i.ok { "ok" } else { "FAIL" }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "per fault type (outage = longest time without any reply, from the fault to 1 s after recovery)"
    );
    let header = [
        ("fault", "", 12),
        ("count", "", 5),
        ("median", "ms", 8),
        ("holder", "count", 6),
        ("holder med", "ms", 10),
        ("max", "ms", 8),
        ("failed", "reqs", 6),
        ("attempts", "", 8),
        ("no VIP", "ms", 7),
        ("2 VIPs", "ms", 7),
        ("unrec.", "", 6),
    ];
    for row in 0..2 {
        let mut line = String::from(" ");
        for (i, (a, b, w)) in header.iter().enumerate() {
            let t = if row == 0 { *a } else { *b };
            if i == 0 {
                let _ = write!(line, " {t:<w$}");
            } else {
                let _ = write!(line, " {t:>w$}");
            }
        }
        if row == 0 {
            line.push_str("  target (judged on the holder median)");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    for k in &r.by_kind {
        let tgt = match (k.target_ms, k.target_met) {
            (Some(t), Some(m)) => format!(
                "<= {t:.0} ms{}: {}",
                if k.kind == FaultKind::Sigterm {
                    ", 0 failed"
                } else {
                    ""
                },
                if m { "met" } else { "missed" }
            ),
            (Some(t), None) => format!("<= {t:.0} ms: not judged, no fault hit the holder"),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "  {:<12} {:>5} {:>8.1} {:>6} {:>10.1} {:>8.1} {:>6} {:>8} {:>7.0} {:>7.0} {:>6}  {}",
            k.kind.name(),
            k.count,
            k.outage_median_ms,
            k.holder_count,
            k.holder_outage_median_ms,
            k.outage_max_ms,
            k.failed_requests,
            k.failed_attempts,
            k.no_holder_ms,
            k.multi_holder_ms,
            k.not_recovered,
            tgt
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "VIP: no holder {:.0} ms in all ({:.0} ms outside fault windows); two or more holders {:.0} ms ({:.0} ms outside fault windows)",
        f.no_holder_ms, f.no_holder_outside_faults_ms, f.multi_holder_ms, f.multi_holder_outside_faults_ms
    );
    let _ = writeln!(
        s,
        "also seen: {} stale reads, {} counter replies lower than an earlier one, {} duplicated increments, {} keys whose acknowledged writes were wiped by restart_all",
        f.stale_reads, f.counter_regressions_seen, f.duplicated_increments, f.acked_writes_wiped_by_restart_all
    );
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "faults, one by one (times in s since the start)");
    for (x, e) in f.faults.iter().zip(faults) {
        let _ = writeln!(
            s,
            "  {:>4} {:>8.3} {:<12} {:<4}{} outage {:>8.1} ms, failed {}/{} attempts, recovered {:.2} s after the heal{}{}",
            x.id,
            e.start_ns as f64 / 1e9,
            x.kind.name(),
            x.node,
            if x.was_holder { " (holder)" } else { "         " },
            x.outage_ms,
            x.failed_requests,
            x.failed_attempts,
            x.recovery_ms / 1e3,
            if x.recovered { "" } else { ", NOT RECOVERED in time" },
            if e.note.is_empty() {
                String::new()
            } else {
                format!("; {}", e.note.trim_end_matches("; "))
            }
        );
    }
    let lists: [(&str, &Vec<String>); 5] = [
        ("lost acknowledged writes", &f.lost_examples),
        ("divergent keys", &f.divergent_examples),
        ("lost increments", &f.lost_increment_examples),
        ("stale CAS accepted", &f.stale_cas_examples),
        ("stale reads", &f.stale_read_examples),
    ];
    for (title, list) in lists {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "{title} (first {}):", list.len());
        for e in list {
            let _ = writeln!(s, "  {e}");
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "result: {}", if r.pass { "PASS" } else { "FAIL" });
    s
}

pub fn write(out: &Path, r: &Report) -> Result<()> {
    std::fs::write(out.join("report.txt"), text(r)).map_err(|e| format!("report.txt: {e}"))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.json"), json + "\n").map_err(|e| format!("report.json: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(1_795_572_530), "2026-11-25 02:08 UTC");
    }
}

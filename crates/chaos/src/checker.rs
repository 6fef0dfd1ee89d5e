//! The checker: what the client was promised, against what it saw and what the nodes hold
//! once the run has quiesced.
//!
//! Each key is owned by one client thread, so its writes form one sequence. For a key, a
//! write is *acknowledged* (STORED, DELETED), *maybe* (sent, no usable reply: it may or may
//! not have happened) or absent from the record (never sent, or refused: EXISTS,
//! NOT_FOUND). An all-node restart (`restart_all`) is an acknowledged "everything deleted"
//! at the moment the last node exited: a cache keeps nothing over a restart of every node.
//!
//! - **Lost acknowledged writes**: a node's final state for a key must be the last
//!   acknowledged write's, or that of a later *maybe* write. Anything else (an older value,
//!   a value that was deleted, nothing where a value was acknowledged) is a lost write.
//! - **Divergent keys**: value, flags and CAS differ between nodes (counters: value).
//! - **Lost increments**: a counter's final value is below the sum of the increments
//!   acknowledged since it was last created (the run's start, or the last all-node
//!   restart). Above acknowledged + maybe is counted too (duplicated increments).
//! - **Stale CAS accepted**: a deliberately stale `cas` (its unique taken before an
//!   acknowledged `set`) that was STORED; or a normal `cas` that was STORED although the
//!   `gets` it came from had returned a value older than the last acknowledged write.
//! - **Stale reads** (reported, not an invariant): a `get`/`gets` that returned an older
//!   state than the last acknowledged write.
//! - **Outage** per fault: the longest time without any reply, between two consecutive
//!   replies (any thread), from the fault's start to 1 s after every node was back (or to
//!   the next fault, if that comes sooner).
//! - **VIP**: time with no holder and with two or more, from the 10 ms samples.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::faults::{Executed, FaultKind};
use crate::history::{is_counter, key_name, parse_value, Op, OpKind, Res};
use crate::mc::Value;
use crate::run::VipSample;

/// After a fault recovered, its window goes on this long (stragglers, ARP, reconnects).
pub const SETTLE_NS: u64 = 1_000_000_000;
const EXAMPLES: usize = 8;

/// What one node holds at the end: every key, `None` = absent.
pub type NodeDump = HashMap<u32, Option<Value>>;

pub struct Input<'a> {
    pub ops: &'a [Op],
    pub faults: &'a [Executed],
    pub finals: &'a [(String, Option<NodeDump>)],
    pub vip_changes: &'a [VipSample],
    pub load_start_ns: u64,
    pub load_end_ns: u64,
    pub keys: &'a [u32],
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultOutcome {
    pub id: usize,
    pub kind: FaultKind,
    pub node: String,
    pub was_holder: bool,
    pub recovered: bool,
    /// Longest time without a reply, ms.
    pub outage_ms: f64,
    pub failed_attempts: usize,
    /// Requests whose last attempt failed (a request retried successfully is not one).
    pub failed_requests: usize,
    pub no_holder_ms: f64,
    pub multi_holder_ms: f64,
    pub recovery_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    pub ops: usize,
    pub ops_replied: usize,
    pub failed_attempts: usize,
    pub failed_requests: usize,
    pub failed_requests_outside_faults: usize,
    pub acked_writes: usize,
    pub lost_acked_writes: usize,
    pub lost_examples: Vec<String>,
    pub acked_writes_wiped_by_restart_all: usize,
    pub divergent_keys: usize,
    pub divergent_nodes: Vec<String>,
    pub divergent_examples: Vec<String>,
    pub acked_increments: u64,
    pub lost_increments: u64,
    pub lost_increment_examples: Vec<String>,
    pub duplicated_increments: u64,
    pub counter_regressions_seen: usize,
    pub stale_cas_tried: usize,
    pub stale_cas_accepted: usize,
    pub stale_cas_examples: Vec<String>,
    pub stale_reads: usize,
    pub stale_read_examples: Vec<String>,
    pub unreadable_nodes: Vec<String>,
    pub no_holder_ms: f64,
    pub multi_holder_ms: f64,
    pub no_holder_outside_faults_ms: f64,
    pub multi_holder_outside_faults_ms: f64,
    pub faults: Vec<FaultOutcome>,
}

/// A key's state as the checker models it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Absent,
    Value(u64),
    /// Something that is not one of our values.
    Foreign,
}

/// One change to a key: when (the op's start, or the wipe), what, acknowledged or maybe.
#[derive(Clone, Copy, Debug)]
struct Event {
    t: u64,
    state: State,
    acked: bool,
}

/// The states a read at `t` (or the final state, `t = u64::MAX`) may show. `events` are
/// sorted by time.
fn allowed(events: &[Event], t: u64) -> (Vec<State>, Option<Event>) {
    let before = &events[..events.partition_point(|e| e.t < t)];
    let last_acked = before.iter().rposition(|e| e.acked);
    let mut out = Vec::new();
    let base = match last_acked {
        Some(i) => {
            out.push(before[i].state);
            Some(before[i])
        }
        None => {
            out.push(State::Absent);
            None
        }
    };
    let from = last_acked.map_or(0, |i| i + 1);
    for e in &before[from..] {
        out.push(e.state);
    }
    (out, base)
}

fn describe(s: State) -> String {
    match s {
        State::Absent => "absent".into(),
        State::Value(v) => format!("v{v}"),
        State::Foreign => "not a value of ours".into(),
    }
}

fn final_state(v: &Option<Value>) -> State {
    match v {
        None => State::Absent,
        Some(v) => parse_value(&v.data).map_or(State::Foreign, State::Value),
    }
}

pub fn check(input: &Input) -> Findings {
    let mut f = Findings {
        ops: input.ops.len(),
        ..Findings::default()
    };
    let wipes: Vec<u64> = input.faults.iter().filter_map(|x| x.wipe_ns).collect();

    // Ops by key, in their thread's order (a thread's ops never overlap).
    let mut by_key: BTreeMap<u32, Vec<&Op>> = BTreeMap::new();
    for op in input.ops {
        by_key.entry(op.key).or_default().push(op);
    }
    for v in by_key.values_mut() {
        v.sort_by_key(|o| (o.thread, o.seq));
    }
    // Ops by thread, for flows and retries.
    let mut by_thread: HashMap<u16, Vec<&Op>> = HashMap::new();
    for op in input.ops {
        by_thread.entry(op.thread).or_default().push(op);
    }
    for v in by_thread.values_mut() {
        v.sort_by_key(|o| o.seq);
    }

    let readable: Vec<(&String, &HashMap<u32, Option<Value>>)> = input
        .finals
        .iter()
        .filter_map(|(n, d)| d.as_ref().map(|d| (n, d)))
        .collect();
    f.unreadable_nodes = input
        .finals
        .iter()
        .filter(|(_, d)| d.is_none())
        .map(|(n, _)| n.clone())
        .collect();

    // ----- writes, reads and CAS on plain keys -----
    for (&key, ops) in &by_key {
        if is_counter(key) {
            continue;
        }
        let mut events: Vec<Event> = Vec::new();
        for op in ops {
            let state = match op.kind {
                OpKind::Set | OpKind::Cas | OpKind::StaleCas => State::Value(op.arg),
                OpKind::Delete => State::Absent,
                _ => continue,
            };
            let acked = match (op.kind, op.res) {
                (OpKind::Delete, Res::Deleted) => true,
                (OpKind::Delete, _) => false,
                (_, Res::Stored) => true,
                _ => false,
            };
            let maybe = matches!(op.res, Res::Unknown(_));
            if !acked && !maybe {
                continue;
            }
            if acked {
                f.acked_writes += 1;
            }
            // An op across an all-node restart may have happened before it (and been
            // wiped) or not at all: a maybe, after the wipe.
            let across = wipes.iter().find(|&&w| op.start < w && w < op.end);
            match across {
                Some(&w) => events.push(Event {
                    t: w + 1,
                    state,
                    acked: false,
                }),
                None => events.push(Event {
                    t: op.start,
                    state,
                    acked,
                }),
            }
        }
        for &w in &wipes {
            let wiped = events
                .iter()
                .filter(|e| e.t < w && e.acked && e.state != State::Absent)
                .count();
            if wiped > 0 {
                f.acked_writes_wiped_by_restart_all += 1;
            }
            events.push(Event {
                t: w,
                state: State::Absent,
                acked: true,
            });
        }
        events.sort_by_key(|e| e.t);

        // A key's writes around an op (the last ones when there is none to look around).
        let history_of = |around: Option<u32>| -> String {
            let relevant: Vec<&&Op> = ops
                .iter()
                .filter(|o| o.kind.is_write() || around.is_some_and(|s| o.seq == s))
                .collect();
            let at = around.map_or(relevant.len(), |s| relevant.partition_point(|o| o.seq < s));
            let from = at.saturating_sub(4);
            let to = (at + 3).min(relevant.len());
            let from = if around.is_none() {
                relevant.len().saturating_sub(6)
            } else {
                from
            };
            let lines: Vec<String> = relevant[from..to.max(from)]
                .iter()
                .map(|o| {
                    format!(
                        "      t{} #{} {} {} start {:.3}s end {:.3}s -> {:?}",
                        o.thread,
                        o.seq,
                        o.kind.name(),
                        if o.kind == OpKind::Delete {
                            String::new()
                        } else {
                            format!("v{}", o.arg)
                        },
                        o.start as f64 / 1e9,
                        o.end as f64 / 1e9,
                        o.res
                    )
                })
                .collect();
            lines.join("\n")
        };

        // Final state on every node.
        let (ok_final, base) = allowed(&events, u64::MAX);
        for (name, dump) in &readable {
            let got = final_state(dump.get(&key).unwrap_or(&None));
            if !ok_final.contains(&got) {
                f.lost_acked_writes += 1;
                if f.lost_examples.len() < EXAMPLES {
                    f.lost_examples.push(format!(
                        "{} on {name}: holds {}, expected {} (last acknowledged: {})\n{}",
                        key_name(key),
                        describe(got),
                        ok_final
                            .iter()
                            .map(|s| describe(*s))
                            .collect::<Vec<_>>()
                            .join(" or "),
                        base.map_or("none".into(), |b| format!(
                            "{} at {:.3}s",
                            describe(b.state),
                            b.t as f64 / 1e9
                        )),
                        history_of(None)
                    ));
                }
                break;
            }
        }

        // Reads and CAS.
        for op in ops {
            let read = match (op.kind, op.res) {
                (OpKind::Get | OpKind::Gets, Res::Hit { val, .. }) => {
                    if val == u64::MAX {
                        State::Foreign
                    } else {
                        State::Value(val)
                    }
                }
                (OpKind::Get | OpKind::Gets, Res::Miss) => State::Absent,
                _ => continue,
            };
            let (ok, _) = allowed(&events, op.start);
            if !ok.contains(&read) {
                f.stale_reads += 1;
                if f.stale_read_examples.len() < EXAMPLES {
                    f.stale_read_examples.push(format!(
                        "{} t{} #{} {} at {:.3}s read {}, expected {}",
                        key_name(key),
                        op.thread,
                        op.seq,
                        op.kind.name(),
                        op.start as f64 / 1e9,
                        describe(read),
                        ok.iter()
                            .map(|s| describe(*s))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                }
            }
        }
        for op in ops {
            match op.kind {
                OpKind::StaleCas => {
                    if op.res.ok() {
                        f.stale_cas_tried += 1;
                    }
                    if op.res == Res::Stored {
                        f.stale_cas_accepted += 1;
                        if f.stale_cas_examples.len() < EXAMPLES {
                            f.stale_cas_examples.push(format!(
                                "{}: deliberately stale cas t{} #{} (unique {}) was STORED\n{}",
                                key_name(key),
                                op.thread,
                                op.seq,
                                op.unique,
                                history_of(op.flow)
                            ));
                        }
                    }
                }
                OpKind::Cas if op.res == Res::Stored => {
                    // The flow's gets: the last gets of this thread between the flow start
                    // and this cas.
                    let Some(flow) = op.flow else { continue };
                    // A thread's seq is its op's index in the thread's list.
                    let thread_ops = &by_thread[&op.thread];
                    let gets = (flow..op.seq)
                        .rev()
                        .filter_map(|s| thread_ops.get(s as usize).filter(|o| o.seq == s))
                        .find(|o| o.kind == OpKind::Gets);
                    let Some(gets) = gets else { continue };
                    let Res::Hit { val, .. } = gets.res else {
                        continue;
                    };
                    let (ok, _) = allowed(&events, gets.start);
                    if !ok.contains(&State::Value(val)) {
                        f.stale_cas_accepted += 1;
                        if f.stale_cas_examples.len() < EXAMPLES {
                            f.stale_cas_examples.push(format!(
                                "{}: cas t{} #{} STORED with the unique of v{val}, read by gets #{} although {} had been acknowledged\n{}",
                                key_name(key),
                                op.thread,
                                op.seq,
                                gets.seq,
                                ok.first().map_or("?".into(), |s| describe(*s)),
                                history_of(Some(gets.seq))
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // ----- counters -----
    let last_wipe = wipes.iter().copied().max().unwrap_or(0);
    for &key in input.keys.iter().filter(|k| is_counter(**k)) {
        let ops = by_key.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let mut acked = 0u64;
        let mut maybe = 0u64;
        let mut last_reply: Option<u64> = None;
        for op in ops {
            if op.start <= last_wipe {
                continue;
            }
            match (op.kind, op.res) {
                (OpKind::Incr, Res::Num(n)) => {
                    acked += op.arg;
                    if let Some(prev) = last_reply {
                        if n < prev + op.arg {
                            f.counter_regressions_seen += 1;
                        }
                    }
                    last_reply = Some(n);
                }
                (OpKind::Incr, Res::Unknown(_)) => maybe += op.arg,
                _ => {}
            }
        }
        f.acked_increments += acked;
        let mut worst: Option<(u64, &String)> = None;
        for (name, dump) in &readable {
            let v = match dump.get(&key).unwrap_or(&None) {
                None => 0,
                Some(v) => std::str::from_utf8(&v.data)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0),
            };
            if worst.is_none_or(|(w, _)| v < w) {
                worst = Some((v, name));
            }
            if v > acked + maybe {
                f.duplicated_increments += v - acked - maybe;
            }
        }
        if let Some((v, name)) = worst {
            if v < acked {
                f.lost_increments += acked - v;
                if f.lost_increment_examples.len() < EXAMPLES {
                    f.lost_increment_examples.push(format!(
                        "{} on {name}: {v}, but {acked} acknowledged (+{maybe} unknown) since it was created",
                        key_name(key)
                    ));
                }
            }
        }
    }

    // ----- divergence -----
    if readable.len() > 1 {
        let (first_name, first) = readable[0];
        let mut differ: Vec<String> = Vec::new();
        for &key in input.keys {
            let view = |d: &HashMap<u32, Option<Value>>| -> Option<(Vec<u8>, u32, u64)> {
                d.get(&key).cloned().flatten().map(|v| {
                    if is_counter(key) {
                        (v.data, 0, 0)
                    } else {
                        (v.data, v.flags, v.cas.unwrap_or(0))
                    }
                })
            };
            let a = view(first);
            let mut diverged = false;
            for (name, d) in &readable[1..] {
                let b = view(d);
                if a != b {
                    diverged = true;
                    if !differ.contains(name) {
                        differ.push((*name).clone());
                    }
                }
            }
            if diverged {
                f.divergent_keys += 1;
                if f.divergent_examples.len() < EXAMPLES {
                    let each: Vec<String> = readable
                        .iter()
                        .map(|(n, d)| {
                            format!(
                                "{n}: {}",
                                match view(d) {
                                    None => "absent".into(),
                                    Some((data, fl, cas)) => format!(
                                        "{} flags {fl} cas {cas}",
                                        String::from_utf8_lossy(&data[..data.len().min(24)])
                                    ),
                                }
                            )
                        })
                        .collect();
                    f.divergent_examples
                        .push(format!("{}: {}", key_name(key), each.join("; ")));
                }
            }
        }
        if !differ.is_empty() {
            f.divergent_nodes = differ
                .into_iter()
                .map(|n| format!("{n} (vs {first_name})"))
                .collect();
        }
    }

    // ----- requests, outages, VIP -----
    let mut replies: Vec<u64> = input
        .ops
        .iter()
        .filter(|o| o.res.ok())
        .map(|o| o.end)
        .collect();
    replies.sort_unstable();
    f.ops_replied = replies.len();
    // Failed attempts, and whether each was the last attempt of its request.
    // (start, end, last attempt of its request)
    let mut failed: Vec<(u64, u64, bool)> = Vec::new();
    for ops in by_thread.values() {
        for (k, op) in ops.iter().enumerate() {
            if op.res.ok() {
                continue;
            }
            let retried = ops.get(k + 1).is_some_and(|n| n.retry);
            failed.push((op.start, op.end, !retried));
        }
    }
    f.failed_attempts = failed.len();
    f.failed_requests = failed.iter().filter(|(_, _, last)| *last).count();
    // A fault's window: from its start to 1 s after it recovered, cut at the next fault.
    let windows: Vec<(u64, u64)> = input
        .faults
        .iter()
        .enumerate()
        .map(|(k, x)| {
            let next = input.faults.get(k + 1).map_or(u64::MAX, |n| n.start_ns);
            (x.start_ns, (x.end_ns + SETTLE_NS).min(next))
        })
        .collect();
    f.failed_requests_outside_faults = failed
        .iter()
        .filter(|(s, e, last)| *last && !windows.iter().any(|(a, b)| s <= b && e >= a))
        .count();

    // VIP intervals: (from, to, holders).
    let mut intervals: Vec<(u64, u64, u32)> = Vec::new();
    for (k, &(t, mask)) in input.vip_changes.iter().enumerate() {
        let to = input
            .vip_changes
            .get(k + 1)
            .map_or(input.load_end_ns, |n| n.0);
        let from = t.max(input.load_start_ns);
        let to = to.min(input.load_end_ns);
        if to > from {
            intervals.push((from, to, mask.count_ones()));
        }
    }
    let overlap = |a: u64, b: u64, pred: &dyn Fn(u32) -> bool| -> u64 {
        intervals
            .iter()
            .filter(|(_, _, n)| pred(*n))
            .map(|&(x, y, _)| y.min(b).saturating_sub(x.max(a)))
            .sum()
    };
    let none = |n: u32| n == 0;
    let multi = |n: u32| n >= 2;
    f.no_holder_ms = overlap(0, u64::MAX, &none) as f64 / 1e6;
    f.multi_holder_ms = overlap(0, u64::MAX, &multi) as f64 / 1e6;
    let in_faults_none: u64 = windows.iter().map(|&(a, b)| overlap(a, b, &none)).sum();
    let in_faults_multi: u64 = windows.iter().map(|&(a, b)| overlap(a, b, &multi)).sum();
    f.no_holder_outside_faults_ms = (f.no_holder_ms - in_faults_none as f64 / 1e6).max(0.0);
    f.multi_holder_outside_faults_ms = (f.multi_holder_ms - in_faults_multi as f64 / 1e6).max(0.0);

    for (x, &(a, b)) in input.faults.iter().zip(&windows) {
        let first = replies.partition_point(|&t| t <= a);
        let mut prev = if first > 0 { replies[first - 1] } else { a };
        let mut gap = 0u64;
        let mut k = first;
        while k < replies.len() && replies[k] <= b {
            gap = gap.max(replies[k] - prev);
            prev = replies[k];
            k += 1;
        }
        // Still nothing at the window's end: open until the next reply (or the end).
        let next = replies.get(k).copied().unwrap_or(b);
        if prev < b {
            gap = gap.max(next.min(b.max(next)) - prev);
        }
        // A request belongs to the fault if it was under way at any time in its window
        // (also one sent a moment before the fault, still waiting when it struck).
        let in_win: Vec<&(u64, u64, bool)> = failed
            .iter()
            .filter(|(s, e, _)| *s <= b && *e >= a)
            .collect();
        f.faults.push(FaultOutcome {
            id: x.id,
            kind: x.kind,
            node: x.node.clone(),
            was_holder: x.was_holder,
            recovered: x.recovered,
            outage_ms: gap as f64 / 1e6,
            failed_attempts: in_win.len(),
            failed_requests: in_win.iter().filter(|(_, _, last)| *last).count(),
            no_holder_ms: overlap(a, b, &none) as f64 / 1e6,
            multi_holder_ms: overlap(a, b, &multi) as f64 / 1e6,
            recovery_ms: x.end_ns.saturating_sub(x.heal_ns) as f64 / 1e6,
        });
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{counter_key, plain_key, value_bytes, ErrClass};

    fn op(seq: u32, kind: OpKind, key: u32, arg: u64, start: u64, res: Res) -> Op {
        Op {
            thread: 0,
            seq,
            kind,
            key,
            arg,
            flags: 0,
            unique: 0,
            flow: None,
            retry: false,
            start,
            end: start + 10,
            res,
        }
    }

    fn value(key: u32, id: u64) -> Option<Value> {
        Some(Value {
            key: key_name(key),
            flags: 0,
            cas: Some(1),
            data: value_bytes(id, 3),
        })
    }

    fn run(ops: &[Op], faults: &[Executed], finals: Vec<HashMap<u32, Option<Value>>>) -> Findings {
        let keys = vec![plain_key(0, 0), counter_key(0, 0)];
        let finals: Vec<(String, Option<NodeDump>)> = finals
            .into_iter()
            .enumerate()
            .map(|(i, d)| (format!("n{}", i + 1), Some(d)))
            .collect();
        check(&Input {
            ops,
            faults,
            finals: &finals,
            vip_changes: &[],
            load_start_ns: 0,
            load_end_ns: 10_000,
            keys: &keys,
        })
    }

    #[test]
    fn last_acked_write_or_later_maybe() {
        let k = plain_key(0, 0);
        let ops = vec![
            op(0, OpKind::Set, k, 1, 100, Res::Stored),
            op(1, OpKind::Set, k, 2, 200, Res::Stored),
            op(2, OpKind::Set, k, 3, 300, Res::Unknown(ErrClass::Timeout)),
        ];
        let ok2 = HashMap::from([(k, value(k, 2))]);
        let ok3 = HashMap::from([(k, value(k, 3))]);
        let lost = HashMap::from([(k, value(k, 1))]);
        let gone = HashMap::from([(k, None)]);
        assert_eq!(run(&ops, &[], vec![ok2.clone()]).lost_acked_writes, 0);
        assert_eq!(run(&ops, &[], vec![ok3]).lost_acked_writes, 0);
        assert_eq!(run(&ops, &[], vec![lost.clone()]).lost_acked_writes, 1);
        assert_eq!(run(&ops, &[], vec![gone]).lost_acked_writes, 1);
        let two = run(&ops, &[], vec![ok2, lost]);
        assert_eq!(two.divergent_keys, 1);
        assert_eq!(two.lost_acked_writes, 1);
    }

    #[test]
    fn deletes_and_wipes() {
        let k = plain_key(0, 0);
        let ops = vec![
            op(0, OpKind::Set, k, 1, 100, Res::Stored),
            op(1, OpKind::Delete, k, 0, 200, Res::Deleted),
        ];
        assert_eq!(
            run(&ops, &[], vec![HashMap::from([(k, value(k, 1))])]).lost_acked_writes,
            1
        );
        assert_eq!(
            run(&ops, &[], vec![HashMap::from([(k, None)])]).lost_acked_writes,
            0
        );
        // A set, then every node restarted: absent is right.
        let ops = vec![op(0, OpKind::Set, k, 1, 100, Res::Stored)];
        let wipe = Executed {
            id: 1,
            kind: FaultKind::RestartAll,
            node: "all".into(),
            was_holder: false,
            pre_ms: 0,
            hold_ms: 0,
            start_ns: 150,
            heal_ns: 500,
            end_ns: 600,
            recovered: true,
            wipe_ns: Some(400),
            note: String::new(),
        };
        let f = run(&ops, &[wipe], vec![HashMap::from([(k, None)])]);
        assert_eq!(f.lost_acked_writes, 0);
        assert_eq!(f.acked_writes_wiped_by_restart_all, 1);
    }

    #[test]
    fn counters_and_stale_cas() {
        let c = counter_key(0, 0);
        let k = plain_key(0, 0);
        let mut stale = op(4, OpKind::StaleCas, k, 9, 500, Res::Stored);
        stale.flow = Some(2);
        let ops = vec![
            op(0, OpKind::Incr, c, 3, 100, Res::Num(3)),
            op(1, OpKind::Incr, c, 2, 200, Res::Num(5)),
            op(2, OpKind::Gets, k, 0, 300, Res::Miss),
            op(3, OpKind::Set, k, 8, 400, Res::Stored),
            stale,
        ];
        let counter = |n: &str| {
            Some(Value {
                key: key_name(c),
                flags: 0,
                cas: Some(1),
                data: n.as_bytes().to_vec(),
            })
        };
        let f = run(
            &ops,
            &[],
            vec![HashMap::from([(c, counter("4")), (k, value(k, 9))])],
        );
        assert_eq!(f.lost_increments, 1);
        assert_eq!(f.stale_cas_accepted, 1);
        assert_eq!(f.lost_acked_writes, 0);
    }
}

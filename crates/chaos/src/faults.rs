//! Fault kinds, the seeded schedule, and the schedule file that replays a run.
//!
//! Faults come one at a time. The generator deals them in rounds: each round is every kind
//! once, in a shuffled order, so a short run still meets each kind. A fault's target is
//! chosen by role (usually the VIP holder) and resolved to a node when it is injected; the
//! schedule written after a run names the nodes, so a replay hits the same ones.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// kill -9 of a node's data process; its supervisor restarts it.
    Kill9,
    /// SIGTERM to a node's supervisor (graceful stop), restarted after the hold.
    Sigterm,
    /// Every frame to and from a node dropped, then healed.
    Partition,
    /// A node's link loses carrier, then comes back.
    Linkdown,
    /// Only the frames a node sends are dropped, then healed.
    Oneway,
    /// Every node stopped at once (SIGTERM), then all started at once.
    RestartAll,
    /// A non-holder restarted under libfaketime with its wall clock ahead, then restarted
    /// normally.
    ClockSkew,
}

pub const ALL_KINDS: [FaultKind; 7] = [
    FaultKind::Kill9,
    FaultKind::Sigterm,
    FaultKind::Partition,
    FaultKind::Linkdown,
    FaultKind::Oneway,
    FaultKind::RestartAll,
    FaultKind::ClockSkew,
];

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill9 => "kill9",
            FaultKind::Sigterm => "sigterm",
            FaultKind::Partition => "partition",
            FaultKind::Linkdown => "linkdown",
            FaultKind::Oneway => "oneway",
            FaultKind::RestartAll => "restart_all",
            FaultKind::ClockSkew => "clock_skew",
        }
    }
}

/// Which node a fault hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The node holding the VIP when the fault starts.
    Holder,
    /// A node not holding it (the lowest-numbered one in a replay).
    NonHolder,
    /// This node.
    Node(String),
    /// Every node.
    All,
}

/// A fault to inject.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Planned {
    pub kind: FaultKind,
    pub target: Target,
    /// Load alone before the fault, ms.
    pub pre_ms: u64,
    /// How long the fault lasts before it is healed (or the node restarted), ms.
    pub hold_ms: u64,
}

/// Deals faults from a seed.
pub struct Generator {
    rng: Rng,
    round: Vec<FaultKind>,
    kinds: Vec<FaultKind>,
}

impl Generator {
    /// `kinds`: the kinds to use (some may be unavailable here, e.g. clock skew).
    pub fn new(seed: u64, kinds: &[FaultKind]) -> Generator {
        Generator {
            rng: Rng::new(seed).fork(0xfa),
            round: Vec::new(),
            kinds: kinds.to_vec(),
        }
    }

    pub fn next_fault(&mut self) -> Planned {
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            self.rng.shuffle(&mut self.round);
        }
        let kind = self.round.pop().expect("a round is never empty");
        let r = &mut self.rng;
        let holder_or = |r: &mut Rng, p: f64| {
            if r.chance(p) {
                Target::Holder
            } else {
                Target::NonHolder
            }
        };
        let (target, hold_ms) = match kind {
            FaultKind::Kill9 => (holder_or(r, 0.8), 0),
            FaultKind::Sigterm => (holder_or(r, 0.75), r.range(300, 2000)),
            FaultKind::Partition | FaultKind::Linkdown | FaultKind::Oneway => {
                (holder_or(r, 0.7), r.range(800, 4000))
            }
            FaultKind::RestartAll => (Target::All, r.range(300, 1500)),
            FaultKind::ClockSkew => (Target::NonHolder, r.range(3000, 8000)),
        };
        Planned {
            kind,
            target,
            pre_ms: r.range(500, 2500),
            hold_ms,
        }
    }
}

/// A fault as it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Executed {
    pub id: usize,
    pub kind: FaultKind,
    /// The node it hit (`all` for every node).
    pub node: String,
    /// The node held the VIP when the fault started.
    pub was_holder: bool,
    pub pre_ms: u64,
    pub hold_ms: u64,
    /// ns since the run started: injected, healed (or restarted), everything ready again.
    pub start_ns: u64,
    pub heal_ns: u64,
    pub end_ns: u64,
    /// Every node ready and replication caught up within the limit.
    pub recovered: bool,
    /// For restart_all: when the last node had exited (every item is gone from then on).
    pub wipe_ns: Option<u64>,
    /// What happened worth knowing (skew measured, what did not recover...).
    pub note: String,
}

/// What `--schedule` replays and what a failing run leaves behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduleFile {
    pub seed: u64,
    pub nodes: usize,
    pub ack: String,
    /// Why this schedule was kept (for regression cases).
    #[serde(default)]
    pub comment: String,
    pub faults: Vec<Planned>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_in_every_round_and_reproducible() {
        let mut a = Generator::new(7, &ALL_KINDS);
        let mut b = Generator::new(7, &ALL_KINDS);
        let round: Vec<FaultKind> = (0..ALL_KINDS.len()).map(|_| a.next_fault().kind).collect();
        let mut sorted = round.clone();
        sorted.sort();
        let mut all = ALL_KINDS.to_vec();
        all.sort();
        assert_eq!(sorted, all);
        let again: Vec<FaultKind> = (0..ALL_KINDS.len()).map(|_| b.next_fault().kind).collect();
        assert_eq!(round, again);
    }
}

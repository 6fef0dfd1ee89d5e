//! memha-chaos: the seed's deployment under load and faults, and a checker that proves
//! nothing the client was promised got lost.
//!
//! A run builds a small L2 network of network namespaces (two or three memha nodes sharing
//! a virtual IP, and a client), drives a recorded client load through the VIP, injects a
//! randomized schedule of faults one at a time, then reads every key from every node and
//! checks the recorded history against what the nodes hold.
//!
//! Layout:
//! - [`lab`]: namespaces, the bridge, frame dropping (partition, one-way loss), link down,
//!   who holds the VIP (netlink), running code and processes inside a namespace.
//! - [`node`]: memha nodes: generated configuration, start, stop, kill, their `stats`.
//! - [`mc`]: a small blocking memcached text-protocol client with per-request deadlines.
//! - [`history`]: what the client did and saw, op by op, and its on-disk form.
//! - [`workload`]: the client threads.
//! - [`faults`]: fault kinds, the seeded schedule, and its file form for replays.
//! - [`run`]: one scenario from start to report.
//! - [`checker`]: the invariants, computed from the history and the final state.
//! - [`report`]: the text table and the JSON report.
//!
//! Time everywhere is nanoseconds on the monotonic clock since the run started.

pub mod checker;
pub mod faults;
pub mod history;
pub mod lab;
pub mod mc;
pub mod node;
pub mod report;
pub mod rng;
pub mod run;
pub mod workload;

/// Errors at the application edge are plain messages: every one ends the run and is shown
/// to the person who started it.
pub type Result<T> = std::result::Result<T, String>;

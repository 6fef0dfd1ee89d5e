//! The memha server: sockets, connections, dispatch of requests into the store, and the
//! `stats` surface. No protocol parsing lives here (that is `memha-protocol`) and no cache
//! logic (that is `memha-store`); this crate wires them to the network.
//!
//! Layout:
//! - [`config`]: the settings the command line produces.
//! - [`net`]: binding listeners, accepting, the per-connection read/process/write loop.
//! - [`session`]: one connection's protocol state and request execution, free of I/O.
//! - [`udp`]: memcached's UDP framing.
//! - [`stats`], [`stats_cmd`]: counters and the `stats` command groups.
//! - [`auth`]: ASCII authentication (`-Y`).
//! - [`shared`]: process-wide state shared by every connection.

pub mod auth;
pub mod config;
pub mod exec;
pub mod net;
pub mod replication;
pub mod session;
pub mod shared;
pub mod stats;
pub mod stats_cmd;
pub mod udp;
pub mod vrrp_view;

pub use config::Config;
pub use net::{bind, Bound};
pub use shared::Shared;

/// The version memha reports to `version` and `stats`. It starts with the memcached
/// release whose protocol memha matches, because some clients pick features from it.
pub const VERSION: &str = concat!("1.6.45-memha-", env!("CARGO_PKG_VERSION"));

//! memha's admin HTTP endpoint: Prometheus metrics, health and readiness probes, a small
//! status page, and the client side of `memha status`.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | Prometheus text exposition (format 0.0.4) of everything `stats` reports |
//! | `/health` | `200 ok` while the process serves and its store answers, else 503 |
//! | `/ready` | `200 ready` while [`Shared::ready`](memha_server::Shared::ready) is set, else `503 not ready` |
//! | `/` | a human status page (plain HTML, no script, no external asset) |
//! | `/status.json` | the same figures as JSON, read by `memha status` ([`status_table`]) |
//!
//! Anything else is 404; a method other than GET (or HEAD) is 405.
//!
//! # Wiring (one-way dependencies)
//!
//! This crate depends on `memha-server`, never the reverse. The binary binds the admin
//! socket next to the cache's (before daemonizing, so a busy port is reported on the
//! terminal) and hands the admin task to the server's runtime:
//!
//! ```no_run
//! # fn wire(admin_addr: &str, shared: std::sync::Arc<memha_server::Shared>) -> Result<(), String> {
//! let admin = memha_admin::bind(admin_addr)?; // std listener, nonblocking
//! let mut bound = memha_server::bind(shared)?;
//! bound.add_service(move |shared| memha_admin::serve_std(admin, shared));
//! bound.run()
//! # }
//! ```
//!
//! [`serve`] takes a tokio listener for callers that already are inside a runtime. The task
//! stops accepting when the server stops ([`memha_server::shared::Stop`]).
//!
//! # The HTTP server
//!
//! Hand-written over tokio, deliberately minimal: HTTP/1.0 and 1.1, one request per
//! connection (`Connection: close`), GET and HEAD only, no request bodies. A request head
//! larger than 8 KiB is answered 431; a client that has not sent a complete head within
//! [`Options::head_timeout`] gets 408 and is closed; anything unparsable gets 400. At most
//! [`Options::max_connections`] requests are handled at once; connections beyond that are
//! answered 503 without being read, so a pile of idle sockets delays a scraper by at most
//! the head timeout and never grows memory. Figures are gathered on tokio's blocking pool:
//! the per-class table walks every item (as `stats items` does), shard by shard.
//!
//! # Replication
//!
//! When the node replicates ([`Shared::repl`](memha_server::Shared::repl)), every answer
//! carries [`Replicator::stats`](memha_repl::node::Replicator::stats), taken with the rest
//! of the [`snapshot::Snapshot`]: `memha_replication_*` in [`metrics`] (node totals, per peer
//! `{peer="host:port"}`, per subscriber `{node_id}`; only `memha_replication_enabled 0`
//! without replication), a `replication` object in `status.json` (`null` without), a
//! "Replication" section on the page and a peers table in `memha status`. The role reads
//! "replicating with N peers"; until the first sync from the peers is done
//! [`Shared::ready`](memha_server::Shared::ready) is clear, `/ready` answers 503 and the page
//! and `memha status` show the state "syncing".
//!
//! # VRRP
//!
//! With `[[vrrp_instance]]`s configured the VRRP speaker runs in the supervisor process,
//! which sends its state to this one; [`Shared::vrrp`](memha_server::Shared::vrrp) holds
//! the latest report and every answer carries a copy ([`snapshot::Snapshot::vrrp`]):
//! `memha_vrrp_*` in [`metrics`] (per instance `{instance="VI_1"}`: state as
//! `memha_vrrp_state{state}` 1/0 for init/backup/master/fault, the current master,
//! priorities, VIPs held, health, link, transitions, advertisements, drops by reason; only
//! `memha_vrrp_enabled 0` without VRRP), a `vrrp` array in `status.json` (`null` without),
//! a "VRRP" section on the page and an instances table in `memha status`. The role starts
//! with each instance's state: "master of VI_1 (VRRP), replicating with 1 peer".

use std::fmt::Display;
use std::net::ToSocketAddrs;

use socket2::{Domain, Protocol, Socket, Type};

mod client;
mod http;
pub mod metrics;
mod page;
pub mod snapshot;
mod status_json;

pub use client::{render_table, status_table, DEFAULT_ADDR};
pub use http::{serve, serve_std, serve_with, Options};

/// Bind the admin listener (nonblocking, `SO_REUSEADDR`, for [`serve_std`]). Call before
/// daemonizing or dropping privileges. `addr` is `HOST:PORT`, e.g. `127.0.0.1:11312`; a
/// name that resolves to several addresses binds the first that works.
pub fn bind<A: ToSocketAddrs + Display>(addr: A) -> Result<std::net::TcpListener, String> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("admin address {addr}: {e}"))?;
    let mut last = format!("admin address {addr}: resolves to no address");
    for a in addrs {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = format!("cannot listen on admin address {a}: {e}"),
        }
    }
    Err(last)
}

fn bind_one(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

//! memha-failover: the I/O around [`memha_vrrp`]'s state machine.
//!
//! `memha-vrrp` decides; this crate does. It owns everything that needs privileges or the
//! kernel, so the protocol logic stays testable without root:
//!
//! * [`netlink`]: rtnetlink requests (add/remove the virtual addresses, read an interface's
//!   addresses, MAC and link state) and a subscription to link up/down events.
//! * [`socket`]: the raw IPv4 socket for protocol 112 (adverts in and out, multicast or
//!   unicast) and the `AF_PACKET` socket gratuitous ARPs go out on.
//! * [`tickle`]: resets the clients' connections to a master that went silent, at once,
//!   when this node takes its addresses over.
//! * [`hooks`]: keepalived-compatible notify scripts, run without ever blocking the loop.
//! * [`speaker`]: one `poll` loop that feeds sockets, timers, link events and the cache's
//!   health to every configured instance and carries out what they decide.
//!
//! All of it is synchronous and single-threaded on purpose: the speaker runs in memha's
//! supervisor process, which must stay small and keep working when the data process has
//! died; a `poll` loop with microsecond timers needs no async runtime.

pub mod hooks;
pub mod netlink;
pub mod socket;
pub mod speaker;
pub mod tickle;

//! memha-vrrp: the VRRP speaker that lets memha own a virtual IP between its nodes and
//! interoperate with keepalived on the wire.
//!
//! # Layout
//!
//! * [`checksum`]: the RFC 1071 Internet checksum (written out, no dependency).
//! * [`packet`]: the wire formats. VRRPv2 (RFC 3768, with keepalived's simple-password
//!   authentication) and VRRPv3 (RFC 5798, IPv4 and IPv6 pseudo-header checksums), every
//!   receive-side check mapped to a named [`packet::DropReason`], the IPv4 header keepalived
//!   sends, and the gratuitous-ARP frame a new master broadcasts.
//! * [`fsm`]: the per-virtual-router state machine, sans-I/O. The caller feeds
//!   [`fsm::Event`]s with the current time and carries out the [`fsm::Action`]s it gets back
//!   (send an advert, add/remove the VIPs, send GARPs, arm/cancel timers, run notify hooks).
//!
//! Nothing here opens a socket, talks netlink or needs root: the network driver (raw IP
//! socket, AF_PACKET, rtnetlink) sits on top and is the only I/O, so the protocol logic is
//! tested deterministically (see `tests/`).
//!
//! # Where memha deliberately differs from keepalived
//!
//! * `nopreempt` is honoured whatever the initial `state` (keepalived clears it with
//!   `state MASTER`, which makes the address move twice on recovery).
//! * The cache's own health is an event: not ready → FAULT at once, with priority-0
//!   adverts so a backup takes over after its Skew_Time instead of Master_Down_Interval.
//! * A master that yields to a better master sends one last advert first (keepalived's
//!   `vrrp_higher_prio_send_advert`, off by default there), and a master that hears a
//!   lower-priority advert re-advertises and re-sends GARPs (keepalived does that too), so a
//!   healed partition never leaves clients' ARP caches pointing at the loser.

pub mod checksum;
pub mod fsm;
pub mod packet;

pub use fsm::{
    notify_args, Action, Config, ConfigError, Counters, Event, InitialState, Instance, NotifyState,
    State, TimerKind, HOLD_PRIORITY,
};
pub use packet::{Advert, Auth, DropCounters, DropReason, EncodeError, RxCheck, RxMeta, Version};

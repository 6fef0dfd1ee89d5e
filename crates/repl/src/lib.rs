//! memha-repl: replication between memha peers — the wire format and the link protocol,
//! without sockets (see `docs/design/REPLICATION.md` for the whole design).
//!
//! Why sans-I/O: everything a hostile or broken peer can send arrives here first, so it
//! must be testable and fuzzable on plain byte slices, and the link rules (authentication
//! before data, bounded frames, resume points) must hold whatever the transport does.
//!
//! Layout:
//! - [`frame`]: frames and their binary encoding (length-prefixed, bounded).
//! - [`handshake`]: challenge–response authentication of a link with a shared secret.
//! - [`clients`]: client connections told to peers, so a new VIP holder can reset them.

pub mod backlog;
pub mod clients;
pub mod frame;
pub mod handshake;
pub mod node;

pub use frame::{decode, encode, Decoded, Frame, Op, MAX_FRAME};

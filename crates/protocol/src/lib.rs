//! memcached wire protocols as pure functions over byte slices.
//!
//! Why a separate crate: parsing is where hostile input arrives, so it must be testable and
//! fuzzable without sockets, threads or a store. Every parser here takes `&[u8]` and returns
//! one of three outcomes — a complete request (borrowing from the input, no allocation), "need
//! more bytes", or an error that already names the exact reply memcached would send.
//!
//! Layout:
//! - [`request`]: the protocol-independent request model that the server executes.
//! - [`text`]: memcached's classic text protocol (`get`, `set`, `incr`, `stats`, …).
//! - [`reply`]: helpers that compose text replies into an output buffer.

pub mod binary;
pub mod meta;
pub mod reply;
pub mod request;
pub mod text;

pub use request::{Command, ItemInfo, MetaRequest, Outcome, Status, StoreMode};
pub use text::{parse, Limits, Parsed};

/// Longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

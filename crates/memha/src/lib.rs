//! The memha binary's library part: the command line, shared with the integration tests.

pub mod cli;

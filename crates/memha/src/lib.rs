//! The memha binary's library part: the command line and the config file, shared with the
//! integration tests.

pub mod cli;
pub mod config_file;
pub mod import_keepalived;
pub mod vrrp_config;

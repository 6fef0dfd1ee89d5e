//! Server settings: everything the memcached-style command line (or, later, the config file)
//! decides. The binary crate fills this in; the server only reads it.

use std::net::IpAddr;
use std::path::PathBuf;

/// Which protocols a TCP connection may speak (`-B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingProtocol {
    /// Detect from the first byte (0x80 = binary), memcached's default.
    Auto,
    Ascii,
    Binary,
}

impl BindingProtocol {
    /// The name `stats settings` prints (`binding_protocol`).
    pub fn name(self) -> &'static str {
        match self {
            BindingProtocol::Auto => "auto-negotiate",
            BindingProtocol::Ascii => "ascii",
            BindingProtocol::Binary => "binary",
        }
    }
}

/// The effective settings of one memha process.
#[derive(Clone, Debug)]
pub struct Config {
    /// TCP port (`-p`), 0 = no TCP listener unless a unix socket is also absent.
    pub tcp_port: u16,
    /// UDP port (`-U`), 0 = UDP off (memcached's default since 1.5.6).
    pub udp_port: u16,
    /// Addresses to listen on (`-l`, may be given several times or comma-separated).
    /// Empty = all interfaces (0.0.0.0 and, where available, ::).
    pub listen: Vec<IpAddr>,
    /// Unix socket path (`-s`); when set, TCP and UDP are off as in memcached.
    pub unix_socket: Option<PathBuf>,
    /// Unix socket permissions (`-a`, octal), default 0o700.
    pub unix_mask: u32,
    /// Memory budget for items, bytes (`-m` is in MiB).
    pub memory_limit: usize,
    /// Return an error instead of evicting when memory is full (`-M`).
    pub no_evict: bool,
    /// Largest item, bytes (`-I`, suffixes k/m).
    pub item_size_max: usize,
    /// Maximum simultaneous connections (`-c`).
    pub max_connections: usize,
    /// Worker threads (`-t`).
    pub threads: usize,
    /// Requests handled per connection before yielding to others (`-R`).
    pub reqs_per_event: usize,
    /// CAS uniques off (`-C`).
    pub cas_disabled: bool,
    /// `flush_all` refused (`-F`).
    pub flush_disabled: bool,
    /// `shutdown` command allowed (`-A`).
    pub shutdown_enabled: bool,
    /// ASCII authentication user file (`-Y`).
    pub auth_file: Option<PathBuf>,
    /// `-B`.
    pub protocol: BindingProtocol,
    /// Listen backlog (`-b`).
    pub backlog: u32,
    /// Verbosity (`-v` = 1, `-vv` = 2, `-vvv` = 3).
    pub verbosity: u32,
    /// Close connections idle for this many seconds (`-o idle_timeout=N`), 0 = never.
    pub idle_timeout: u64,
    /// `-o` sub-options that were accepted but have no effect in memha (for `stats settings`
    /// and the startup log).
    pub ignored_options: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp_port: 11211,
            udp_port: 0,
            listen: Vec::new(),
            unix_socket: None,
            unix_mask: 0o700,
            memory_limit: 64 * 1024 * 1024,
            no_evict: false,
            item_size_max: 1024 * 1024,
            max_connections: 1024,
            threads: 4,
            reqs_per_event: 20,
            cas_disabled: false,
            flush_disabled: false,
            shutdown_enabled: false,
            auth_file: None,
            protocol: BindingProtocol::Auto,
            backlog: 1024,
            verbosity: 0,
            idle_timeout: 0,
            ignored_options: Vec::new(),
        }
    }
}

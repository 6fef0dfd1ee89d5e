//! The TOML configuration file: `memha --config FILE`, `memha check-config FILE`,
//! `memha print-config`.
//!
//! The schema (documented key by key in `docs/CONFIG.md`, with an example in
//! `deploy/memha.toml`):
//!
//! * `[server]`: one key per memcached flag memha has (`port` = `-p`, `memory_limit_mb` = `-m`,
//!   …), plus `user`, `pid_file`, `daemonize` and `extended` (`-o`);
//! * `[logging]`: `level`;
//! * `[replication]`: repcached's `-X` (`port`) and `-x` (`peers`), and what memha adds;
//! * `[[vrrp_instance]]`: keepalived's `vrrp_instance` with keepalived's key names, so a
//!   `keepalived.conf` translates line by line;
//! * `[admin]`: the HTTP admin endpoint, off when the section is absent.
//!
//! **How a file is read.** serde reads the text into "raw" structs whose every field is a
//! [`Spanned`] value (`deny_unknown_fields` everywhere, so a misspelt key is an error naming
//! it); then each value goes through the same check as the matching flag (the `pub(crate)`
//! checks in [`crate::cli`]; an integer is checked as its decimal text), and the result is the
//! [`RunOptions`] the flags then apply to. Keeping the spans to the end means every error —
//! syntax, type, unknown key, or a rule such as "priority 0" — points at a line and column:
//! `FILE:LINE:COL: <key>: <reason>`.
//!
//! **print-config** ([`to_toml`]) writes every key, with defaults filled in; keys that have no
//! value (an unset path, say) are written as comments, since TOML has no null. The VRRP
//! password is written as `"<redacted>"`; reading that back is an error that says so, rather
//! than a password of `<redacted>`.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use memha_server::config::BindingProtocol;

use crate::cli::{self, Base, Extended, RunOptions, MIB};

/// `[replication] backlog_mb` when not set.
pub const DEFAULT_BACKLOG_MB: u64 = 64;
/// `[replication] port` when not set: repcached's default.
pub const DEFAULT_REPL_PORT: u16 = 11212;
/// The largest node id an item version can carry (10 bits, see `memha_store::version`).
pub const MAX_NODE_ID: u16 = 1023;
/// What print-config writes instead of a password.
pub const REDACTED: &str = "<redacted>";

/// `[replication] ack`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckMode {
    /// `STORED` as soon as the local write is done; peers catch up (repcached's behaviour).
    #[default]
    Async,
    /// `STORED` only once at least one peer has applied the write.
    Sync,
}

impl AckMode {
    pub fn name(self) -> &'static str {
        match self {
            AckMode::Async => "async",
            AckMode::Sync => "sync",
        }
    }
}

/// `[logging] level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// memcached's `-v` count as a level: none = warn, `-v` = info, `-vv` = debug, more = trace.
    pub fn from_verbosity(verbosity: u32) -> LogLevel {
        match verbosity {
            0 => LogLevel::Warn,
            1 => LogLevel::Info,
            2 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn parse(s: &str) -> Option<LogLevel> {
        [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]
        .into_iter()
        .find(|l| l.name() == s)
    }
}

/// keepalived's `state`: the state an instance starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpState {
    Master,
    Backup,
}

impl VrrpState {
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Master => "MASTER",
            VrrpState::Backup => "BACKUP",
        }
    }
}

/// One `virtual_ipaddress` entry: an address, with a prefix length when written as CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualIp {
    pub addr: IpAddr,
    /// `None` = a host address (/32 or /128), as keepalived assumes.
    pub prefix: Option<u8>,
}

impl fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// One `[[vrrp_instance]]`, checked. Key names and meanings are keepalived's.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    pub name: String,
    pub interface: String,
    pub state: VrrpState,
    /// 1..=255.
    pub virtual_router_id: u8,
    /// 1..=254 (255 is the address owner's, 0 means "resigning").
    pub priority: u8,
    /// Seconds between adverts: whole seconds 1..=255 for version 2, hundredths of a second
    /// 0.01..=40.95 for version 3.
    pub advert_int: f64,
    /// 2 or 3.
    pub version: u8,
    pub nopreempt: bool,
    /// memha's own: while master, advertise priority 254 as long as the cache holds writes a
    /// lagging peer lacks, so a healed partition keeps the address on the node with the data
    /// (docs/FAILOVER.md). Default on.
    pub hold_unreplicated: bool,
    /// Seconds, 0..=1000.
    pub preempt_delay: f64,
    /// `authentication = { auth_type = "PASS", auth_pass = "…" }`, VRRPv2 only; the password.
    pub auth_pass: Option<String>,
    pub virtual_ipaddress: Vec<VirtualIp>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
    pub track_interface: Vec<String>,
    /// keepalived's `track_script`: the `[[vrrp_script]]`s named, resolved.
    pub track_script: Vec<VrrpScript>,
    /// keepalived's `use_vmac`: carry the VIPs on a macvlan `vrrp.<VRID>` with the virtual MAC.
    pub use_vmac: bool,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify_stop: Option<String>,
    pub notify: Option<String>,
}

/// One `[[vrrp_script]]`: keepalived's `vrrp_script`, a check the operator adds to the
/// cache's own health. Failing `fall` times in a row puts the instances that track it in
/// FAULT; succeeding `rise` times brings them back.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub script: String,
    /// Seconds between runs (keepalived's default 1).
    pub interval: f64,
    /// Seconds before a run counts as failed (default: the interval).
    pub timeout: f64,
    pub fall: u32,
    pub rise: u32,
}

/// A config file error. `Display` is `FILE:LINE:COL: message` (`FILE: message` when the file
/// could not be read at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error is not about a place in the file.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks a config file into the options it sets (flags not applied).
pub fn load(path: &Path) -> Result<RunOptions, ConfigError> {
    load_base(path).map(Base::into_options)
}

/// Checks config text; `name` is what error messages call the file.
pub fn parse_str(name: &str, text: &str) -> Result<RunOptions, ConfigError> {
    parse_base(name, text, None).map(Base::into_options)
}

/// [`load`], keeping what the command-line parser needs for its messages.
pub(crate) fn load_base(path: &Path) -> Result<Base, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse_base(&name, &text, Some(path))
}

fn parse_base(name: &str, text: &str, path: Option<&Path>) -> Result<Base, ConfigError> {
    let file = Reader { name, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
    let mut base = file.build(raw)?;
    base.run.config_file = path.map(Path::to_path_buf);
    Ok(base)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

// ---------------------------------------------------------------------------------------------
// The raw schema, as serde reads it.

type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    logging: RawLogging,
    replication: Option<RawReplication>,
    #[serde(default)]
    vrrp_script: Vec<S<RawScript>>,
    #[serde(default)]
    vrrp_instance: Vec<S<RawVrrp>>,
    admin: Option<S<RawAdmin>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    port: Option<S<i64>>,
    udp_port: Option<S<i64>>,
    listen: Option<Vec<S<String>>>,
    unix_socket: Option<S<String>>,
    unix_mask: Option<S<IntOrStr>>,
    memory_limit_mb: Option<S<IntOrStr>>,
    no_evict: Option<bool>,
    item_size_max: Option<S<IntOrStr>>,
    max_connections: Option<S<i64>>,
    threads: Option<S<i64>>,
    reqs_per_event: Option<S<i64>>,
    cas_disabled: Option<bool>,
    flush_disabled: Option<bool>,
    shutdown_enabled: Option<bool>,
    auth_file: Option<S<String>>,
    protocol: Option<S<String>>,
    backlog: Option<S<i64>>,
    verbosity: Option<S<i64>>,
    idle_timeout: Option<S<i64>>,
    user: Option<S<String>>,
    pid_file: Option<S<String>>,
    daemonize: Option<bool>,
    enable_coredumps: Option<bool>,
    extended: Option<Vec<S<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    level: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    port: Option<S<i64>>,
    peers: Option<Vec<S<String>>>,
    secret_file: Option<S<String>>,
    ack: Option<S<String>>,
    backlog_mb: Option<S<i64>>,
    node_id: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVrrp {
    name: Option<S<String>>,
    interface: Option<S<String>>,
    state: Option<S<String>>,
    virtual_router_id: Option<S<i64>>,
    priority: Option<S<i64>>,
    advert_int: Option<S<f64>>,
    version: Option<S<i64>>,
    nopreempt: Option<bool>,
    hold_unreplicated: Option<bool>,
    preempt_delay: Option<S<f64>>,
    authentication: Option<S<RawAuth>>,
    virtual_ipaddress: Option<S<Vec<S<String>>>>,
    unicast_src_ip: Option<S<String>>,
    unicast_peer: Option<Vec<S<String>>>,
    track_interface: Option<Vec<S<String>>>,
    track_script: Option<Vec<S<String>>>,
    use_vmac: Option<bool>,
    notify_master: Option<S<String>>,
    notify_backup: Option<S<String>>,
    notify_fault: Option<S<String>>,
    notify_stop: Option<S<String>>,
    notify: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    name: Option<S<String>>,
    script: Option<S<String>>,
    interval: Option<S<f64>>,
    timeout: Option<S<f64>>,
    fall: Option<S<i64>>,
    rise: Option<S<i64>>,
    weight: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    auth_type: Option<S<String>>,
    auth_pass: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<S<String>>,
}

/// A value written as an integer or as a string (`item_size_max = 1048576` or `"1m"`).
enum IntOrStr {
    Int(i64),
    Str(String),
}

impl IntOrStr {
    fn text(&self) -> String {
        match self {
            IntOrStr::Int(n) => n.to_string(),
            IntOrStr::Str(s) => s.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IntOrStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string such as \"1m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrStr, E> {
                Ok(IntOrStr::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrStr, E> {
                i64::try_from(v)
                    .map(IntOrStr::Int)
                    .map_err(|_| E::custom("the number is too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrStr, E> {
                Ok(IntOrStr::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// From the raw schema to options, checking every value.

struct Reader<'a> {
    name: &'a str,
    text: &'a str,
}

impl Reader<'_> {
    fn error_at(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError {
            file: self.name.to_string(),
            line,
            column,
            message,
        }
    }

    /// An error about `key` at `span`: `FILE:LINE:COL: key: reason`.
    fn at(&self, span: Range<usize>, key: &str, reason: impl fmt::Display) -> ConfigError {
        self.error_at(span, format!("{key}: {reason}"))
    }

    /// Where a key's value is, for messages: `server.memory_limit_mb (memha.toml:3:19)`.
    fn origin(&self, key: &str, span: Range<usize>) -> String {
        let (line, column) = line_col(self.text, span.start);
        format!("{key} ({}:{line}:{column})", self.name)
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        // toml's messages may span lines ("invalid string\nexpected `\"`"); keep one line.
        let mut message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
            .replace("expected i64", "expected an integer")
            .replace("expected f64", "expected a number")
            .replace("expected a sequence", "expected a list");
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_col(self.text, span.start);
        let line_text = self.text.lines().nth(line - 1).unwrap_or("");
        if line_text.trim_start().starts_with("[vrrp_instance]") {
            message = "vrrp_instance: write [[vrrp_instance]], with double brackets \
                       (a file may have several)"
                .to_string();
        } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
            // serde's type errors do not say which key; the value's line does.
            if let Some(key) = self.key_before(line, column) {
                message = format!("{key}: {message}");
            }
        }
        self.error_at(span, message)
    }

    /// The key whose value starts at `line:column` when it is written `key = value` on that
    /// line, with its table's name: `server.port`.
    fn key_before(&self, line: usize, column: usize) -> Option<String> {
        let lines: Vec<&str> = self.text.lines().collect();
        let text = lines.get(line - 1)?;
        let before: String = text.chars().take(column - 1).collect();
        let before = before.trim_end().strip_suffix('=')?.trim_end();
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let key = &before[start..];
        if key.is_empty() {
            return None;
        }
        if before.contains('{') {
            return Some(key.to_string());
        }
        let table = lines[..line - 1]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        Some(match table {
            Some(t) if !t.is_empty() => format!("{t}.{key}"),
            _ => key.to_string(),
        })
    }

    /// Runs a check on a value's text, locating its failure at the value.
    fn check<T, V>(
        &self,
        v: &S<V>,
        key: &str,
        text: impl FnOnce(&V) -> String,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        check(&text(v.get_ref())).map_err(|r| self.at(v.span(), key, r))
    }

    fn int<T>(
        &self,
        v: &S<i64>,
        key: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.check(v, key, i64::to_string, check)
    }

    /// A string that must not be empty (paths, names).
    fn nonempty(&self, v: &S<String>, key: &str) -> Result<String, ConfigError> {
        if v.get_ref().trim().is_empty() {
            return Err(self.at(v.span(), key, "must not be empty"));
        }
        Ok(v.get_ref().clone())
    }

    fn build(&self, raw: RawFile) -> Result<Base, ConfigError> {
        let mut base = Base::default();
        self.server(raw.server, &mut base)?;
        if let Some(level) = &raw.logging.level {
            base.run.log_level = Some(LogLevel::parse(level.get_ref()).ok_or_else(|| {
                self.at(
                    level.span(),
                    "logging.level",
                    "use one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
                )
            })?);
        }
        if let Some(repl) = raw.replication {
            self.replication(repl, &mut base.run)?;
        }
        for (i, script) in raw.vrrp_script.iter().enumerate() {
            let checked = self.vrrp_script(script, &base.run.vrrp_scripts, i)?;
            base.run.vrrp_scripts.push(checked);
        }
        for (i, inst) in raw.vrrp_instance.iter().enumerate() {
            let checked = self.vrrp(inst, &base.run.vrrp_instances, &base.run.vrrp_scripts, i)?;
            base.run.vrrp_instances.push(checked);
        }
        if let Some(admin) = raw.admin {
            base.run.admin_listen = Some(self.admin(&admin)?);
        }
        Ok(base)
    }

    fn server(&self, s: RawServer, base: &mut Base) -> Result<(), ConfigError> {
        let run = &mut base.run;
        let cfg = &mut run.server;
        if let Some(v) = &s.port {
            cfg.tcp_port = self.int(v, "server.port", |t| cli::port(t, "the TCP port"))?;
        }
        if let Some(v) = &s.udp_port {
            cfg.udp_port = self.int(v, "server.udp_port", |t| cli::port(t, "the UDP port"))?;
        }
        if let Some(items) = &s.listen {
            let mut ports = Vec::new();
            for item in items {
                let (ip, port) =
                    self.check(item, "server.listen", String::clone, cli::listen_item)?;
                if !cfg.listen.contains(&ip) {
                    cfg.listen.push(ip);
                }
                if let Some(port) = port {
                    ports.push((port, format!("{:?}", item.get_ref())));
                    cli::one_listen_port(&ports)
                        .map_err(|r| self.at(item.span(), "server.listen", r))?;
                }
            }
            if let Some((port, _)) = ports.first() {
                cfg.tcp_port = *port;
            }
        }
        if let Some(v) = &s.unix_socket {
            cfg.unix_socket = Some(self.nonempty(v, "server.unix_socket")?.into());
        }
        if let Some(v) = &s.unix_mask {
            cfg.unix_mask = match v.get_ref() {
                // TOML integers are decimal unless written 0o700; check the octal digits.
                IntOrStr::Int(n) if *n >= 0 => cli::unix_mask(&format!("{n:o}")),
                IntOrStr::Int(_) => cli::unix_mask("-"),
                IntOrStr::Str(s) => cli::unix_mask(s),
            }
            .map_err(|r| {
                self.at(
                    v.span(),
                    "server.unix_mask",
                    format!("{r}; in TOML write it as 0o700 or \"700\""),
                )
            })?;
        }
        if let Some(v) = &s.memory_limit_mb {
            cfg.memory_limit = self.check(
                v,
                "server.memory_limit_mb",
                IntOrStr::text,
                cli::memory_limit,
            )? as usize;
            base.memory_origin = Some(self.origin("server.memory_limit_mb", v.span()));
        }
        if let Some(v) = s.no_evict {
            cfg.no_evict = v;
        }
        if let Some(v) = &s.item_size_max {
            cfg.item_size_max =
                self.check(v, "server.item_size_max", IntOrStr::text, cli::item_size)? as usize;
            base.item_size_origin = Some(self.origin("server.item_size_max", v.span()));
        }
        if let Some(v) = &s.max_connections {
            cfg.max_connections = self.int(v, "server.max_connections", |t| {
                cli::count(t, "the connection limit")
            })?;
        }
        if let Some(v) = &s.threads {
            cfg.threads = self.int(v, "server.threads", cli::threads)?;
        }
        if let Some(v) = &s.reqs_per_event {
            cfg.reqs_per_event = self.int(v, "server.reqs_per_event", |t| {
                cli::count(t, "the number of requests per event")
            })?;
        }
        if let Some(v) = s.cas_disabled {
            cfg.cas_disabled = v;
        }
        if let Some(v) = s.flush_disabled {
            cfg.flush_disabled = v;
        }
        if let Some(v) = s.shutdown_enabled {
            cfg.shutdown_enabled = v;
        }
        if let Some(v) = &s.auth_file {
            self.nonempty(v, "server.auth_file")?;
            cfg.auth_file =
                Some(self.check(v, "server.auth_file", String::clone, cli::auth_file)?);
        }
        if let Some(v) = &s.protocol {
            cfg.protocol = self.check(v, "server.protocol", String::clone, cli::protocol)?;
        }
        if let Some(v) = &s.backlog {
            cfg.backlog = self.int(v, "server.backlog", |t| cli::count(t, "the listen backlog"))?;
        }
        if let Some(v) = &s.verbosity {
            cfg.verbosity = self.int(v, "server.verbosity", |t| {
                cli::number(t, "the verbosity level")
            })?;
        }
        if let Some(v) = &s.idle_timeout {
            cfg.idle_timeout = self.int(v, "server.idle_timeout", cli::idle_timeout)?;
        }
        for item in s.extended.iter().flatten() {
            match self.check(item, "server.extended", String::clone, cli::extended_item)? {
                Extended::IdleTimeout(secs) => {
                    if s.idle_timeout.is_some() {
                        return Err(self.at(
                            item.span(),
                            "server.extended",
                            "idle_timeout is also set as server.idle_timeout; keep one",
                        ));
                    }
                    cfg.idle_timeout = secs;
                }
                Extended::Ignored(item) => {
                    if !item.is_empty() && !cfg.ignored_options.contains(&item) {
                        cfg.ignored_options.push(item);
                    }
                }
            }
        }
        if let Some(v) = &s.user {
            run.user = Some(self.nonempty(v, "server.user")?);
        }
        if let Some(v) = &s.pid_file {
            run.pid_file = Some(self.nonempty(v, "server.pid_file")?.into());
        }
        if let Some(v) = s.daemonize {
            run.daemonize = v;
        }
        if let Some(v) = s.enable_coredumps {
            run.max_core = v;
        }

        // The item size against the memory limit, wherever each came from.
        let memory = cfg.memory_limit as u64;
        let memory_text = base
            .memory_origin
            .clone()
            .unwrap_or_else(|| "the default memory_limit_mb = 64".to_string());
        if let Err(reason) = cli::item_size_fits(cfg.item_size_max as u64, memory, &memory_text) {
            return Err(match (&s.item_size_max, &s.memory_limit_mb) {
                (Some(v), _) => self.at(v.span(), "server.item_size_max", reason),
                (None, Some(v)) => self.at(
                    v.span(),
                    "server.memory_limit_mb",
                    format!("the default item size limit (1m) does not fit: {reason}"),
                ),
                (None, None) => unreachable!("the defaults fit"),
            });
        }
        Ok(())
    }

    fn replication(&self, r: RawReplication, run: &mut RunOptions) -> Result<(), ConfigError> {
        if let Some(v) = &r.port {
            run.repl_port = Some(self.int(v, "replication.port", cli::repl_port)?);
        }
        for peer in r.peers.iter().flatten() {
            let p = self.check(peer, "replication.peers", String::clone, cli::repl_peer)?;
            if run.repl_peers.contains(&p) {
                return Err(self.at(peer.span(), "replication.peers", "listed twice"));
            }
            run.repl_peers.push(p);
        }
        if let Some(v) = &r.secret_file {
            run.repl_secret_file = Some(self.nonempty(v, "replication.secret_file")?.into());
        }
        if let Some(v) = &r.ack {
            run.repl_ack = match v.get_ref().as_str() {
                "async" => AckMode::Async,
                "sync" => AckMode::Sync,
                _ => return Err(self.at(v.span(), "replication.ack", "use \"async\" or \"sync\"")),
            };
        }
        if let Some(v) = &r.backlog_mb {
            run.repl_backlog_mb = self.int(v, "replication.backlog_mb", |t| {
                let mb: u64 = cli::count(t, "the replication backlog")?;
                match mb.checked_mul(MIB) {
                    Some(b) if b <= usize::MAX as u64 => Ok(mb),
                    _ => Err("the replication backlog is too large".to_string()),
                }
            })?;
        }
        if let Some(v) = &r.node_id {
            run.repl_node_id = Some(self.int(v, "replication.node_id", |t| {
                t.parse::<u16>()
                    .ok()
                    .filter(|n| *n <= MAX_NODE_ID)
                    .ok_or_else(|| format!("the node id must be a number from 0 to {MAX_NODE_ID}"))
            })?);
        }
        Ok(())
    }

    fn admin(&self, admin: &S<RawAdmin>) -> Result<SocketAddr, ConfigError> {
        let Some(v) = &admin.get_ref().listen else {
            return Err(self.at(
                admin.span(),
                "admin",
                "listen is required (e.g. listen = \"127.0.0.1:11312\"); \
                 remove [admin] to turn the admin endpoint off",
            ));
        };
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(a),
            _ => Err(self.at(
                v.span(),
                "admin.listen",
                format!(
                    "{:?} is not an IP address with a port from 1 to 65535, \
                     e.g. 127.0.0.1:11312 or [::1]:11312",
                    v.get_ref()
                ),
            )),
        }
    }

    fn vrrp_script(
        &self,
        raw: &S<RawScript>,
        earlier: &[VrrpScript],
        index: usize,
    ) -> Result<VrrpScript, ConfigError> {
        let r = raw.get_ref();
        let prefix = format!("vrrp_script[{index}]");
        let required = |key: &str| {
            self.at(
                raw.span(),
                &prefix,
                format!("the {key} key is required (as in keepalived)"),
            )
        };
        let name_v = r.name.as_ref().ok_or_else(|| required("name"))?;
        let name = self.nonempty(name_v, &format!("{prefix}.name"))?;
        if earlier.iter().any(|e| e.name == name) {
            return Err(self.at(
                name_v.span(),
                &format!("{prefix}.name"),
                format!("another vrrp_script is already named {name:?}"),
            ));
        }
        let prefix = format!("vrrp_script {name:?}");
        let key = |k: &str| format!("{prefix}.{k}");
        let script_v = r.script.as_ref().ok_or_else(|| required("script"))?;
        let script = self.nonempty(script_v, &key("script"))?;
        let seconds = |v: &Option<S<f64>>, k: &str, default: f64| -> Result<f64, ConfigError> {
            match v {
                None => Ok(default),
                Some(v) => {
                    let x = *v.get_ref();
                    if x.is_finite() && (0.01..=3600.0).contains(&x) {
                        Ok(x)
                    } else {
                        Err(self.at(v.span(), &key(k), "seconds, from 0.01 to 3600"))
                    }
                }
            }
        };
        let interval = seconds(&r.interval, "interval", 1.0)?;
        let timeout = seconds(&r.timeout, "timeout", interval)?;
        let count = |v: &Option<S<i64>>, k: &str| -> Result<u32, ConfigError> {
            match v {
                None => Ok(1),
                Some(v) => self.int(v, &key(k), |t| {
                    t.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| "a count from 1 to 1000".to_string())
                }),
            }
        };
        let fall = count(&r.fall, "fall")?;
        let rise = count(&r.rise, "rise")?;
        if let Some(w) = &r.weight {
            if *w.get_ref() != 0 {
                return Err(self.at(
                    w.span(),
                    &key("weight"),
                    "only weight = 0 is supported: a failing script puts the instance in FAULT \
                     (priority 0), which moves the address at once; remove the key",
                ));
            }
        }
        Ok(VrrpScript {
            name,
            script,
            interval,
            timeout,
            fall,
            rise,
        })
    }

    fn vrrp(
        &self,
        inst: &S<RawVrrp>,
        earlier: &[VrrpInstance],
        scripts: &[VrrpScript],
        index: usize,
    ) -> Result<VrrpInstance, ConfigError> {
        let r = inst.get_ref();
        // Keys are named as the operator writes them; the instance is named once known.
        let mut prefix = format!("vrrp_instance[{index}]");
        let required = |key: &str, prefix: &str| {
            self.at(
                inst.span(),
                prefix,
                format!("the {key} key is required (as in keepalived)"),
            )
        };

        let name_v = r.name.as_ref().ok_or_else(|| required("name", &prefix))?;
        let name = self.nonempty(name_v, &format!("{prefix}.name"))?;
        if earlier.iter().any(|e| e.name == name) {
            return Err(self.at(
                name_v.span(),
                &format!("{prefix}.name"),
                format!("another vrrp_instance is already named {name:?}"),
            ));
        }
        prefix = format!("vrrp_instance {name:?}");
        let key = |k: &str| format!("{prefix}.{k}");

        let iface_v = r
            .interface
            .as_ref()
            .ok_or_else(|| required("interface", &prefix))?;
        let interface = self.check(iface_v, &key("interface"), String::clone, interface_name)?;

        let state = match &r.state {
            None => VrrpState::Backup,
            Some(v) => match v.get_ref().as_str() {
                "MASTER" => VrrpState::Master,
                "BACKUP" => VrrpState::Backup,
                _ => return Err(self.at(v.span(), &key("state"), "use \"MASTER\" or \"BACKUP\"")),
            },
        };

        let Some(vrid_v) = &r.virtual_router_id else {
            return Err(required("virtual_router_id", &prefix));
        };
        let virtual_router_id = self.int(vrid_v, &key("virtual_router_id"), |t| {
            t.parse::<u8>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| "the virtual router id must be from 1 to 255".to_string())
        })?;

        let priority = match &r.priority {
            None => 100,
            Some(v) => self.int(v, &key("priority"), |t| {
                t.parse::<u8>()
                    .ok()
                    .filter(|n| (1..=254).contains(n))
                    .ok_or_else(|| {
                        "the priority must be from 1 to 254 (0 is reserved for a master \
                         that resigns, 255 for the address owner)"
                            .to_string()
                    })
            })?,
        };

        let version = match &r.version {
            None => 2,
            Some(v) => self.int(v, &key("version"), |t| match t {
                "2" => Ok(2),
                "3" => Ok(3),
                _ => Err("the VRRP version must be 2 or 3".to_string()),
            })?,
        };

        let advert_int = match &r.advert_int {
            None => 1.0,
            Some(v) => {
                let a = *v.get_ref();
                let reason = if !(a.is_finite() && a > 0.0) {
                    Some("the advert interval must be a number of seconds greater than 0")
                } else if version == 2 && (a.fract() != 0.0 || a > 255.0) {
                    Some(
                        "VRRPv2 advertises whole seconds from 1 to 255; \
                         fractions of a second need version = 3",
                    )
                } else if version == 3
                    && (!(0.01..=40.95).contains(&a)
                        || ((a * 100.0).round() - a * 100.0).abs() > 1e-6)
                {
                    Some("VRRPv3 advertises in hundredths of a second, from 0.01 to 40.95")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(self.at(v.span(), &key("advert_int"), reason));
                }
                a
            }
        };

        let preempt_delay = match &r.preempt_delay {
            None => 0.0,
            Some(v) => {
                let d = *v.get_ref();
                if !(d.is_finite() && (0.0..=1000.0).contains(&d)) {
                    return Err(self.at(
                        v.span(),
                        &key("preempt_delay"),
                        "the preempt delay must be from 0 to 1000 seconds",
                    ));
                }
                d
            }
        };

        let auth_pass = match &r.authentication {
            None => None,
            Some(auth) => Some(self.vrrp_auth(auth, version, &key("authentication"))?),
        };

        let Some(vips) = &r.virtual_ipaddress else {
            return Err(self.at(
                inst.span(),
                &prefix,
                "the virtual_ipaddress key is required: the addresses this instance carries",
            ));
        };
        if vips.get_ref().is_empty() {
            return Err(self.at(
                vips.span(),
                &key("virtual_ipaddress"),
                "list at least one address",
            ));
        }
        let mut virtual_ipaddress: Vec<VirtualIp> = Vec::new();
        for v in vips.get_ref() {
            let vip = self.check(v, &key("virtual_ipaddress"), String::clone, virtual_ip)?;
            let first_family = virtual_ipaddress.first().map(|f| f.addr.is_ipv4());
            let reason = if version == 2 && vip.addr.is_ipv6() {
                Some("VRRPv2 carries IPv4 addresses only; use version = 3 for IPv6")
            } else if first_family.is_some_and(|v4| v4 != vip.addr.is_ipv4()) {
                Some("an instance carries one address family; put IPv4 and IPv6 in two instances")
            } else if virtual_ipaddress.iter().any(|e| e.addr == vip.addr) {
                Some("listed twice")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(self.at(v.span(), &key("virtual_ipaddress"), reason));
            }
            virtual_ipaddress.push(vip);
        }
        let v4 = virtual_ipaddress[0].addr.is_ipv4();
        let same_family = |key_name: &str, v: &S<String>| -> Result<IpAddr, ConfigError> {
            let ip = self.check(v, key_name, String::clone, ip_address)?;
            if ip.is_ipv4() != v4 {
                return Err(self.at(
                    v.span(),
                    key_name,
                    "not the address family of virtual_ipaddress",
                ));
            }
            Ok(ip)
        };

        let mut unicast_peer = Vec::new();
        for v in r.unicast_peer.iter().flatten() {
            let ip = same_family(&key("unicast_peer"), v)?;
            if unicast_peer.contains(&ip) {
                return Err(self.at(v.span(), &key("unicast_peer"), "listed twice"));
            }
            unicast_peer.push(ip);
        }
        let unicast_src_ip = match &r.unicast_src_ip {
            None => None,
            Some(v) => {
                let ip = same_family(&key("unicast_src_ip"), v)?;
                if unicast_peer.is_empty() {
                    return Err(self.at(
                        v.span(),
                        &key("unicast_src_ip"),
                        "only used with unicast_peer; list the peers or remove it",
                    ));
                }
                Some(ip)
            }
        };

        let mut track_interface = Vec::new();
        for v in r.track_interface.iter().flatten() {
            track_interface.push(self.check(
                v,
                &key("track_interface"),
                String::clone,
                interface_name,
            )?);
        }

        let mut track_script: Vec<VrrpScript> = Vec::new();
        for v in r.track_script.iter().flatten() {
            let found = scripts
                .iter()
                .find(|s| &s.name == v.get_ref())
                .ok_or_else(|| {
                    self.at(
                        v.span(),
                        &key("track_script"),
                        format!("no [[vrrp_script]] is named {:?}", v.get_ref()),
                    )
                })?;
            if track_script.iter().any(|s| s.name == found.name) {
                return Err(self.at(v.span(), &key("track_script"), "listed twice"));
            }
            track_script.push(found.clone());
        }

        let script = |v: &Option<S<String>>, k: &str| -> Result<Option<String>, ConfigError> {
            v.as_ref().map(|v| self.nonempty(v, &key(k))).transpose()
        };

        if let Some(other) = earlier.iter().find(|e| {
            e.interface == interface
                && e.virtual_router_id == virtual_router_id
                && e.virtual_ipaddress[0].addr.is_ipv4() == v4
        }) {
            return Err(self.at(
                vrid_v.span(),
                &key("virtual_router_id"),
                format!(
                    "vrrp_instance {:?} already uses virtual router {virtual_router_id} on {interface}",
                    other.name
                ),
            ));
        }

        Ok(VrrpInstance {
            name,
            interface,
            state,
            virtual_router_id,
            priority,
            advert_int,
            version,
            nopreempt: r.nopreempt.unwrap_or(false),
            hold_unreplicated: r.hold_unreplicated.unwrap_or(true),
            preempt_delay,
            auth_pass,
            virtual_ipaddress,
            unicast_src_ip,
            unicast_peer,
            track_interface,
            track_script,
            use_vmac: r.use_vmac.unwrap_or(false),
            notify_master: script(&r.notify_master, "notify_master")?,
            notify_backup: script(&r.notify_backup, "notify_backup")?,
            notify_fault: script(&r.notify_fault, "notify_fault")?,
            notify_stop: script(&r.notify_stop, "notify_stop")?,
            notify: script(&r.notify, "notify")?,
        })
    }

    /// `authentication = { auth_type = "PASS", auth_pass = "…" }`: the password.
    fn vrrp_auth(&self, auth: &S<RawAuth>, version: u8, key: &str) -> Result<String, ConfigError> {
        if version != 2 {
            return Err(self.at(
                auth.span(),
                key,
                "authentication is VRRPv2 only (VRRPv3 has none); remove it or use version = 2",
            ));
        }
        let a = auth.get_ref();
        match &a.auth_type {
            None => {
                return Err(self.at(
                    auth.span(),
                    key,
                    "auth_type is required: auth_type = \"PASS\"",
                ))
            }
            Some(t) if t.get_ref() == "PASS" => {}
            Some(t) if t.get_ref() == "AH" => {
                return Err(self.at(
                    t.span(),
                    &format!("{key}.auth_type"),
                    "AH authentication is not supported; use \"PASS\"",
                ))
            }
            Some(t) => return Err(self.at(t.span(), &format!("{key}.auth_type"), "use \"PASS\"")),
        }
        let Some(pass) = &a.auth_pass else {
            return Err(self.at(
                auth.span(),
                key,
                "auth_pass is required with auth_type = \"PASS\"",
            ));
        };
        let p = pass.get_ref();
        let reason = if p == REDACTED {
            Some(
                "the password is \"<redacted>\", as print-config writes it; \
                 put the real password back"
                    .to_string(),
            )
        } else if p.is_empty() {
            Some("the password must not be empty".to_string())
        } else if p.len() > 8 {
            Some(format!(
                "the password is {} bytes; VRRPv2 carries at most 8 \
                 (keepalived would silently cut it to {:?})",
                p.len(),
                truncate8(p)
            ))
        } else {
            None
        };
        match reason {
            Some(r) => Err(self.at(pass.span(), &format!("{key}.auth_pass"), r)),
            None => Ok(p.clone()),
        }
    }
}

fn truncate8(s: &str) -> &str {
    let mut end = 8.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A network interface name as Linux allows it.
fn interface_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 15 || v == "." || v == ".." {
        return Err(format!(
            "{v:?} is not an interface name (1 to 15 characters)"
        ));
    }
    if v.chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{v:?} is not an interface name (no '/', spaces or control characters)"
        ));
    }
    Ok(v.to_string())
}

fn ip_address(v: &str) -> Result<IpAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{v:?} is not an IP address"))
}

/// `address` or `address/prefix`.
fn virtual_ip(v: &str) -> Result<VirtualIp, String> {
    let bad = || format!("{v:?} is not an IP address or CIDR (e.g. 192.168.68.46 or 10.0.0.5/24)");
    let (addr, prefix) = match v.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (v.trim(), None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => Some(n),
            _ => return Err(format!("{v:?}: the prefix length must be from 0 to {max}")),
        },
    };
    Ok(VirtualIp { addr, prefix })
}

// ---------------------------------------------------------------------------------------------
// print-config.

/// Whether [`to_toml`] writes passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// `auth_pass = "<redacted>"` (what `memha print-config` prints).
    Redact,
    /// The real password (for tests, and for code that writes a file to be read back).
    Show,
}

/// TOML text for a string, quoted and escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

/// `n` is a multiple of `unit`, a power of two.
fn multiple_of(n: u64, unit: u64) -> bool {
    n & (unit - 1) == 0
}

/// A size in bytes the way `-I`/`-m` read it back: `"64m"`, `"1536k"`, or bytes.
fn size_text(bytes: u64) -> String {
    if multiple_of(bytes, cli::GIB) {
        quote(&format!("{}g", bytes / cli::GIB))
    } else if multiple_of(bytes, MIB) {
        quote(&format!("{}m", bytes / MIB))
    } else if multiple_of(bytes, cli::KIB) {
        quote(&format!("{}k", bytes / cli::KIB))
    } else {
        bytes.to_string()
    }
}

/// Writes `key = value` lines with the matching flag as a comment, aligned.
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn kv(&mut self, key: &str, value: String, note: &str) {
        let text = format!("{key} = {value}");
        if note.is_empty() {
            self.line(&text);
        } else {
            let _ = writeln!(self.out, "{text:<39} # {note}");
        }
    }

    /// A key with no value: written as a comment.
    fn unset(&mut self, key: &str, note: &str) {
        let text = format!("# {key} is not set");
        if note.is_empty() {
            self.line(&text);
        } else {
            let _ = writeln!(self.out, "{text:<39} # {note}");
        }
    }

    fn opt<T>(&mut self, key: &str, v: Option<&T>, f: impl Fn(&T) -> String, note: &str) {
        match v {
            Some(v) => self.kv(key, f(v), note),
            None => self.unset(key, note),
        }
    }
}

fn path_text(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The options as a config file: every key, defaults filled in (keys without a value as
/// comments), passwords as `secrets` says. Reading the output back gives the same options
/// (except a redacted password, which reading rejects).
pub fn to_toml(opts: &RunOptions, secrets: Secrets) -> String {
    let c = &opts.server;
    let mut w = Writer { out: String::new() };
    w.line("# memha's effective configuration (memha print-config): every key, defaults");
    w.line("# filled in; a key shown as \"is not set\" has no value. See docs/CONFIG.md.");
    if let Some(f) = &opts.config_file {
        let _ = writeln!(w.out, "# Read from {} and the command line.", f.display());
    }
    w.line("");
    w.line("[server]");
    w.kv("port", c.tcp_port.to_string(), "-p");
    w.kv("udp_port", c.udp_port.to_string(), "-U, 0 = off");
    w.kv(
        "listen",
        list(&c.listen, |ip| quote(&ip.to_string())),
        "-l, [] = all interfaces",
    );
    w.opt(
        "unix_socket",
        c.unix_socket.as_ref(),
        |p| path_text(p),
        "-s",
    );
    w.kv("unix_mask", format!("0o{:o}", c.unix_mask), "-a");
    w.kv(
        "memory_limit_mb",
        if multiple_of(c.memory_limit as u64, MIB) {
            (c.memory_limit as u64 / MIB).to_string()
        } else {
            size_text(c.memory_limit as u64)
        },
        "-m",
    );
    w.kv("no_evict", c.no_evict.to_string(), "-M");
    w.kv("item_size_max", size_text(c.item_size_max as u64), "-I");
    w.kv("max_connections", c.max_connections.to_string(), "-c");
    w.kv("threads", c.threads.to_string(), "-t");
    w.kv("reqs_per_event", c.reqs_per_event.to_string(), "-R");
    w.kv("cas_disabled", c.cas_disabled.to_string(), "-C");
    w.kv("flush_disabled", c.flush_disabled.to_string(), "-F");
    w.kv("shutdown_enabled", c.shutdown_enabled.to_string(), "-A");
    w.opt("auth_file", c.auth_file.as_ref(), |p| path_text(p), "-Y");
    w.kv(
        "protocol",
        quote(match c.protocol {
            BindingProtocol::Auto => "auto",
            BindingProtocol::Ascii => "ascii",
            BindingProtocol::Binary => "binary",
        }),
        "-B",
    );
    w.kv("backlog", c.backlog.to_string(), "-b");
    w.kv("verbosity", c.verbosity.to_string(), "-v");
    w.kv(
        "idle_timeout",
        c.idle_timeout.to_string(),
        "-o idle_timeout, 0 = never",
    );
    w.opt("user", opts.user.as_ref(), |u| quote(u), "-u");
    w.opt("pid_file", opts.pid_file.as_ref(), |p| path_text(p), "-P");
    w.kv("daemonize", opts.daemonize.to_string(), "-d");
    w.kv("enable_coredumps", opts.max_core.to_string(), "-r");
    w.kv(
        "extended",
        list(&c.ignored_options, |s| quote(s)),
        "-o, accepted, no effect",
    );

    w.line("");
    w.line("[logging]");
    w.kv("level", quote(opts.log_level().name()), "");

    w.line("");
    w.line("[replication]");
    match opts.repl_port {
        Some(p) => w.kv("port", p.to_string(), "-X"),
        None => w.unset(
            "port",
            &format!("-X, {DEFAULT_REPL_PORT} when replication is on"),
        ),
    }
    w.kv("peers", list(&opts.repl_peers, |p| quote(p)), "-x");
    w.opt(
        "secret_file",
        opts.repl_secret_file.as_ref(),
        |p| path_text(p),
        "",
    );
    w.kv("ack", quote(opts.repl_ack.name()), "");
    w.kv("backlog_mb", opts.repl_backlog_mb.to_string(), "");
    w.opt(
        "node_id",
        opts.repl_node_id.as_ref(),
        |n| n.to_string(),
        "chosen at startup when not set",
    );

    for sc in &opts.vrrp_scripts {
        w.line("");
        w.line("[[vrrp_script]]");
        w.kv("name", quote(&sc.name), "");
        w.kv("script", quote(&sc.script), "");
        w.kv("interval", sc.interval.to_string(), "");
        w.kv("timeout", sc.timeout.to_string(), "");
        w.kv("fall", sc.fall.to_string(), "");
        w.kv("rise", sc.rise.to_string(), "");
    }
    for v in &opts.vrrp_instances {
        w.line("");
        w.line("[[vrrp_instance]]");
        w.kv("name", quote(&v.name), "");
        w.kv("interface", quote(&v.interface), "");
        w.kv("state", quote(v.state.name()), "");
        w.kv("virtual_router_id", v.virtual_router_id.to_string(), "");
        w.kv("priority", v.priority.to_string(), "");
        w.kv("advert_int", v.advert_int.to_string(), "");
        w.kv("version", v.version.to_string(), "");
        w.kv("nopreempt", v.nopreempt.to_string(), "");
        w.kv("hold_unreplicated", v.hold_unreplicated.to_string(), "");
        w.kv("preempt_delay", v.preempt_delay.to_string(), "");
        match &v.auth_pass {
            Some(p) => w.kv(
                "authentication",
                format!(
                    "{{ auth_type = \"PASS\", auth_pass = {} }}",
                    quote(match secrets {
                        Secrets::Redact => REDACTED,
                        Secrets::Show => p,
                    })
                ),
                "",
            ),
            None => w.unset("authentication", ""),
        }
        w.kv(
            "virtual_ipaddress",
            list(&v.virtual_ipaddress, |a| quote(&a.to_string())),
            "",
        );
        w.opt(
            "unicast_src_ip",
            v.unicast_src_ip.as_ref(),
            |a| quote(&a.to_string()),
            "",
        );
        w.kv(
            "unicast_peer",
            list(&v.unicast_peer, |a| quote(&a.to_string())),
            "",
        );
        w.kv(
            "track_interface",
            list(&v.track_interface, |s| quote(s)),
            "",
        );
        w.kv(
            "track_script",
            list(&v.track_script, |s| quote(&s.name)),
            "",
        );
        w.kv("use_vmac", v.use_vmac.to_string(), "");
        for (key, script) in [
            ("notify_master", &v.notify_master),
            ("notify_backup", &v.notify_backup),
            ("notify_fault", &v.notify_fault),
            ("notify_stop", &v.notify_stop),
            ("notify", &v.notify),
        ] {
            w.opt(key, script.as_ref(), |s| quote(s), "");
        }
    }
    if opts.vrrp_instances.is_empty() {
        w.line("");
        w.line("# No [[vrrp_instance]].");
    }

    w.line("");
    match &opts.admin_listen {
        Some(a) => {
            w.line(
                "[admin]                                 # /metrics, /health, /ready, status page",
            );
            w.kv("listen", quote(&a.to_string()), "");
        }
        None => w.line("# No [admin]: the admin endpoint is off."),
    }
    w.out
}

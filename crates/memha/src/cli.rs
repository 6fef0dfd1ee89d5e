//! The memcached-compatible command line, with the `--config` file under it.
//!
//! memcached parses its arguments with `getopt_long`, so memha does the same by hand:
//!
//! * short flags may be bundled (`-dv`, `-vvv`); a flag that takes a value ends the bundle and
//!   takes the rest of it (`-p11211`, `-vvp11211`) or, if nothing is left, the next argument
//!   (`-p 11211`, `-vvp 11211`), even when that argument starts with `-`;
//! * long flags take their value as `--port=11211` or `--port 11211`;
//! * `--` ends the options; any positional argument is an error.
//!
//! Per-flag values are checked as they are read (so `-t 0 -h` fails like memcached does);
//! checks that involve several flags (`-I` against `-m`) run once everything is read.
//!
//! **The config file.** `--config FILE` may stand anywhere among the flags: the arguments are
//! first read into a list of flags, the file is loaded ([`crate::config_file`]) into the
//! starting [`RunOptions`], and the flags are then applied on top of it, so a flag always wins
//! over the file. Flags that may repeat replace the file's list at their first use rather
//! than adding to it (`-l` replaces `listen`, `-x` replaces `peers`), `-v` counts from zero and
//! replaces both `verbosity` and `[logging] level`, and `-o` items are merged into `extended`.
//!
//! Every value is checked by one function whichever way it arrives (the `pub(crate)` checks
//! below, which return the reason alone); only the prefix differs: `-t 0: the number of
//! threads must be at least 1` for a flag, `memha.toml:4:11: server.threads: the number of
//! threads must be at least 1` for a file key.
//!
//! Two subcommands come before any flag: `memha check-config FILE…` and
//! `memha print-config [--config FILE] [flags…]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use memha_server::config::{BindingProtocol, Config};

use crate::config_file::{self, AckMode, LogLevel, VrrpInstance, VrrpScript};

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Cli {
    /// Run the server with these options.
    Run(Box<RunOptions>),
    /// `print-config [--config FILE] [flags…]`: print these options as TOML
    /// ([`config_file::to_toml`]) and exit 0.
    PrintConfig(Box<RunOptions>),
    /// `status [--addr HOST:PORT]`: a running node's status from its admin endpoint.
    Status(String),
    /// `check-config FILE…`: check each file, print `FILE: ok` or `FILE:LINE:COL: reason`.
    CheckConfig(Vec<PathBuf>),
    /// `import-keepalived FILE`: print a keepalived.conf's `vrrp_instance`s as memha TOML
    /// ([`crate::import_keepalived`]).
    ImportKeepalived(PathBuf),
    /// `-h` / `--help`: print [`help_text`] and exit 0.
    Help,
    /// `-V` / `--version`: print [`version_line`] and exit 0.
    Version,
}

/// Everything needed to start the server process.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The settings the server itself uses.
    pub server: Config,
    /// `-d`: detach and run in the background.
    pub daemonize: bool,
    /// `-P <file>`: write the process id here.
    pub pid_file: Option<PathBuf>,
    /// `-u <user>`: the user to switch to when started as root.
    pub user: Option<String>,
    /// `-k`: accepted for compatibility, no effect.
    pub lock_memory: bool,
    /// `-r`: raise the core file size limit to its maximum.
    pub max_core: bool,
    /// `-x <peer>` (repcached, may repeat): replication peers.
    pub repl_peers: Vec<String>,
    /// `-X <port>` (repcached): replication port.
    pub repl_port: Option<u16>,
    /// `[replication] secret_file`: the shared secret that authenticates peer links.
    pub repl_secret_file: Option<PathBuf>,
    /// `[replication] ack`: when a write is acknowledged to the client.
    pub repl_ack: AckMode,
    /// `[replication] backlog_mb`: the replication backlog, MiB.
    pub repl_backlog_mb: u64,
    /// `[replication] node_id`: this node's id in item versions; `None` = chosen at startup.
    pub repl_node_id: Option<u16>,
    /// `[logging] level`; `None` = from the verbosity (see [`RunOptions::log_level`]).
    pub log_level: Option<LogLevel>,
    /// `[[vrrp_instance]]` sections, validated: with any, memha runs its supervisor and the
    /// VRRP speaker (`supervisor.rs`).
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `[[vrrp_script]]` sections (each instance holds copies of those it tracks).
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `[admin] listen`: the HTTP admin endpoint (`/metrics`, `/health`, `/ready`, status
    /// page); `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// `--config <file>`: the file these options started from, if any.
    pub config_file: Option<PathBuf>,
    /// Flags that were accepted but have no effect in memha, as written on the command line
    /// with their value (`"-L"`, `"-f 1.25"`, `"-n 48"`, `"-D :"`), for the startup log.
    pub ignored_flags: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            server: Config::default(),
            daemonize: false,
            pid_file: None,
            user: None,
            lock_memory: false,
            max_core: false,
            repl_peers: Vec::new(),
            repl_port: None,
            repl_secret_file: None,
            repl_ack: AckMode::Async,
            repl_backlog_mb: config_file::DEFAULT_BACKLOG_MB,
            repl_node_id: None,
            log_level: None,
            vrrp_instances: Vec::new(),
            vrrp_scripts: Vec::new(),
            admin_listen: None,
            config_file: None,
            ignored_flags: Vec::new(),
        }
    }
}

impl RunOptions {
    /// The effective log level: `[logging] level` when set, else from the verbosity
    /// (`-v` = info, `-vv` = debug, `-vvv` = trace, warnings only by default, like memcached).
    pub fn log_level(&self) -> LogLevel {
        self.log_level
            .unwrap_or_else(|| LogLevel::from_verbosity(self.server.verbosity))
    }
}

/// A command-line error. `Display` is the message alone; the binary prints `memha: <msg>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// The line `-V` prints.
pub fn version_line() -> String {
    format!(
        "memha {} (memcached 1.6 compatible)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Whether a flag takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    /// Only as `--long=value` (getopt's `optional_argument`); used by `--verbose`.
    Optional,
}

/// The `short` of flags that only have a long form (`--config`).
const LONG_ONLY: char = '\0';

struct Flag {
    short: char,
    /// Long names; the first is the one the help shows.
    long: &'static [&'static str],
    arg: Arg,
    /// What the help shows for the value, e.g. `<num>`.
    value_name: &'static str,
    /// One line of help; empty = not listed (unsupported flags that get a specific error).
    help: &'static str,
}

const fn flag(
    short: char,
    long: &'static [&'static str],
    arg: Arg,
    value_name: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        short,
        long,
        arg,
        value_name,
        help,
    }
}

/// Every flag memha knows, in the order the help lists them.
const FLAGS: &[Flag] = &[
    flag(LONG_ONLY, &["config"], Arg::Required, "<file>", "read settings from this TOML file first; flags override it (see CONFIG below)"),
    flag('p', &["port"], Arg::Required, "<num>", "TCP port to listen on (default: 11211, 0 = off)"),
    flag('s', &["unix-socket"], Arg::Required, "<file>", "UNIX socket to listen on (disables TCP and UDP)"),
    flag('a', &["unix-mask"], Arg::Required, "<mask>", "access mask for the UNIX socket, in octal (default: 700)"),
    flag('A', &["enable-shutdown"], Arg::No, "", "enable the ascii \"shutdown\" command"),
    flag('l', &["listen"], Arg::Required, "<addr>", "interface(s) to listen on: IP literals, comma-separated or repeated, optionally addr:port or [v6]:port (default: all)"),
    flag('d', &["daemon"], Arg::No, "", "run as a daemon"),
    flag('r', &["enable-coredumps"], Arg::No, "", "maximize the core file limit"),
    flag('u', &["user"], Arg::Required, "<user>", "assume the identity of <user> (only when run as root)"),
    flag('m', &["memory-limit"], Arg::Required, "<num>", "item memory in megabytes, or with a k/m/g suffix (default: 64)"),
    flag('M', &["disable-evictions"], Arg::No, "", "return an error when memory is exhausted instead of evicting items"),
    flag('c', &["conn-limit", "max-conns"], Arg::Required, "<num>", "max simultaneous connections (default: 1024)"),
    flag('k', &["lock-memory"], Arg::No, "", "lock down all paged memory (accepted, no effect)"),
    flag('v', &["verbose"], Arg::Optional, "", "log more: -v startup and connection events, -vv debug, -vvv trace (warnings are always logged)"),
    flag('h', &["help"], Arg::No, "", "print this help and exit"),
    flag('V', &["version"], Arg::No, "", "print version and exit"),
    flag('L', &["enable-largepages"], Arg::No, "", "try to use large memory pages (accepted, no effect)"),
    flag('f', &["slab-growth-factor"], Arg::Required, "<factor>", "chunk size growth factor, > 1 (accepted, no effect)"),
    flag('n', &["slab-min-size"], Arg::Required, "<bytes>", "minimum space allocated for key+value+flags (accepted, no effect)"),
    flag('C', &["disable-cas"], Arg::No, "", "disable use of CAS"),
    flag('D', &["delimiter"], Arg::Required, "<char>", "delimiter between key prefixes and IDs in stats (accepted, no effect)"),
    flag('P', &["pidfile"], Arg::Required, "<file>", "save the process id in <file>"),
    flag('t', &["threads"], Arg::Required, "<num>", "number of worker threads (default: 4, at most 256)"),
    flag('R', &["max-reqs-per-event", "conn-requests"], Arg::Required, "<num>", "requests handled per connection before serving others (default: 20)"),
    flag('U', &["udp-port"], Arg::Required, "<num>", "UDP port to listen on (default: 0, off)"),
    flag('B', &["protocol"], Arg::Required, "<name>", "protocol: auto (default), ascii or binary"),
    flag('I', &["max-item-size"], Arg::Required, "<size>", "max item size, k/m suffix allowed (default: 1m, min: 1k, max: 1g and half of -m)"),
    flag('F', &["disable-flush-all"], Arg::No, "", "disable the flush_all command"),
    flag('Y', &["auth-file"], Arg::Required, "<file>", "ascii protocol authentication, <file> holds user:password lines"),
    flag('b', &["listen-backlog"], Arg::Required, "<num>", "the listen backlog queue limit (default: 1024)"),
    flag('x', &[], Arg::Required, "<addr>", "replicate with this peer, host[:port]; repeat or comma-separate for more peers"),
    flag('X', &[], Arg::Required, "<num>", "replication port (default: 11212)"),
    flag(LONG_ONLY, &["repl-secret-file"], Arg::Required, "<file>", "shared secret authenticating replication links (needed beyond loopback)"),
    flag(LONG_ONLY, &["repl-ack"], Arg::Required, "<mode>", "async (default): STORED after the local write; sync: after a peer applied it (waits at most 100 ms)"),
    flag(LONG_ONLY, &["repl-backlog-mb"], Arg::Required, "<num>", "writes kept for a peer that reconnects, MiB (default: 64)"),
    flag(LONG_ONLY, &["repl-node-id"], Arg::Required, "<num>", "this node's id in item versions, 0-1023 (default: from host name and port)"),
    flag('o', &["extended"], Arg::Required, "<opts>", "comma-separated extended options, see below"),
    // Not supported; listed so they get a specific error rather than "unknown option".
    flag('S', &["enable-sasl"], Arg::No, "", ""),
    flag('e', &["memory-file"], Arg::Required, "", ""),
];

/// The text `-h` prints.
pub fn help_text() -> String {
    let mut out = version_line();
    out.push_str(
        "\nusage: memha [--config <file>] [options]\n\
         \x20      memha check-config <file>...\n\
         \x20      memha print-config [--config <file>] [options]\n\
         \x20      memha import-keepalived <keepalived.conf>\n\n",
    );
    let column = |f: &Flag| -> String {
        let mut s = if f.short == LONG_ONLY {
            "    --".to_string()
        } else {
            format!("-{}", f.short)
        };
        match f.long.first() {
            Some(long) => {
                if f.short != LONG_ONLY {
                    s.push_str(", --");
                }
                s.push_str(long);
                if f.arg == Arg::Required {
                    s.push('=');
                    s.push_str(f.value_name);
                }
            }
            None if f.arg == Arg::Required => {
                s.push(' ');
                s.push_str(f.value_name);
            }
            None => {}
        }
        s
    };
    let width = FLAGS
        .iter()
        .filter(|f| !f.help.is_empty())
        .map(|f| column(f).len())
        .max()
        .unwrap_or(0);
    for f in FLAGS.iter().filter(|f| !f.help.is_empty()) {
        out.push_str(&format!("{:<width$}  {}\n", column(f), f.help));
    }
    out.push_str(
        "\n\
         -o, --extended options:\n\
         \x20 idle_timeout=<secs>   close connections idle for this long (default: 0, never)\n\
         \x20 anything else (modern, no_modern, slab_chunk_max=<n>, lru_crawler, no_lru_crawler,\n\
         \x20 lru_maintainer, no_lru_maintainer, hashpower=<n>, temporary_ttl=<n>,\n\
         \x20 maxconns_fast, track_sizes, ...) is accepted and has no effect.\n\
         \n\
         CONFIG (a TOML file; see docs/CONFIG.md and deploy/memha.toml):\n\
         \x20 --config <file>              start from the file's settings; command-line flags\n\
         \x20                              override it (-l and -x replace its lists)\n\
         \x20 check-config <file>...       check files: prints \"<file>: ok\", or\n\
         \x20                              \"<file>:<line>:<col>: <reason>\" and exits 1\n\
         \x20 print-config [options]       print the effective configuration (defaults filled\n\
         \x20                              in, passwords redacted) as TOML and exit\n",
    );
    out
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// Turns a check's reason into a flag error: `-t 0: the number of threads must be at least 1`.
fn at<T>(shown: &str, value: &str, r: Result<T, String>) -> Result<T, CliError> {
    r.map_err(|reason| CliError(format!("{shown} {value}: {reason}")))
}

/// Where the flags start from: the defaults, or what a config file set.
#[derive(Clone, Debug, Default)]
pub struct Base {
    pub(crate) run: RunOptions,
    /// Where a non-default item size limit came from, for messages
    /// (`server.item_size_max (memha.toml:4:17)`).
    pub(crate) item_size_origin: Option<String>,
    /// Where a non-default memory limit came from, for messages.
    pub(crate) memory_origin: Option<String>,
}

impl Base {
    /// The options themselves.
    pub fn options(&self) -> &RunOptions {
        &self.run
    }

    pub fn into_options(self) -> RunOptions {
        self.run
    }
}

/// State while applying the flags.
struct Parser {
    run: RunOptions,
    /// `-I` as given (the flag as written, its value) and its size in bytes.
    item_size: Option<(String, u64)>,
    /// `-m` as given, for messages.
    memory: Option<String>,
    /// Where the starting item size / memory limit came from (a config file), for messages.
    base_item_origin: Option<String>,
    base_memory_origin: Option<String>,
    /// Ports given inside `-l addr:port`, with the `-l` text, for the final check.
    listen_ports: Vec<(u16, String)>,
    /// Whether a command-line `-l`, `-x`, `-v` has already replaced the file's value.
    listen_replaced: bool,
    peers_replaced: bool,
    verbosity_replaced: bool,
}

/// One flag as read from the command line, not yet applied.
struct Step {
    flag: &'static Flag,
    /// The flag as written (`-p`, `--port`), for messages.
    shown: String,
    value: Option<String>,
}

/// Parses the arguments after argv[0].
pub fn parse_args(args: &[String]) -> Result<Cli, CliError> {
    match args.first().map(String::as_str) {
        Some("check-config") => {
            let files = &args[1..];
            if files.is_empty() {
                return err("check-config needs a file: memha check-config <file>...");
            }
            if let Some(opt) = files.iter().find(|f| f.starts_with('-')) {
                return err(format!(
                    "check-config takes only file names, not {opt:?}; \
                     to see the effect of flags use memha print-config"
                ));
            }
            Ok(Cli::CheckConfig(files.iter().map(PathBuf::from).collect()))
        }
        Some("status") => match &args[1..] {
            [] => Ok(Cli::Status(memha_admin::DEFAULT_ADDR.to_string())),
            [flag, addr] if flag == "--addr" => Ok(Cli::Status(addr.clone())),
            [one] if one.starts_with("--addr=") => {
                Ok(Cli::Status(one["--addr=".len()..].to_string()))
            }
            _ => err(format!(
                "usage: memha status [--addr HOST:PORT] (default {}, the [admin] listen address)",
                memha_admin::DEFAULT_ADDR
            )),
        },
        Some("import-keepalived") => match &args[1..] {
            [file] if !file.starts_with('-') => Ok(Cli::ImportKeepalived(PathBuf::from(file))),
            _ => err("usage: memha import-keepalived <keepalived.conf> (prints memha TOML)"),
        },
        Some("print-config") => Ok(match parse_run(&args[1..])? {
            Cli::Run(opts) => Cli::PrintConfig(opts),
            other => other,
        }),
        _ => parse_run(args),
    }
}

/// The flags of a run (or of `print-config`): load `--config` if given, then apply the flags
/// over it in command-line order.
fn parse_run(args: &[String]) -> Result<Cli, CliError> {
    let steps = read_flags(args);
    let mut config: Option<&Step> = None;
    for step in steps.iter().map_while(|s| s.as_ref().ok()) {
        if step.flag.short == LONG_ONLY && step.flag.long[0] == "config" {
            if let Some(first) = config {
                return err(format!(
                    "{} {}: only one config file may be given (already {} {})",
                    step.shown,
                    step.value.as_deref().unwrap_or(""),
                    first.shown,
                    first.value.as_deref().unwrap_or("")
                ));
            }
            config = Some(step);
        }
    }
    let base = match config {
        None => Base::default(),
        Some(step) => {
            let path = step.value.as_deref().unwrap_or("");
            if path.is_empty() {
                return err(format!(
                    "option {} requires a non-empty value (a file)",
                    step.shown
                ));
            }
            config_file::load_base(path.as_ref()).map_err(|e| CliError(e.to_string()))?
        }
    };
    let mut p = Parser {
        run: base.run,
        item_size: None,
        memory: None,
        base_item_origin: base.item_size_origin,
        base_memory_origin: base.memory_origin,
        listen_ports: Vec::new(),
        listen_replaced: false,
        peers_replaced: false,
        verbosity_replaced: false,
    };
    for step in steps {
        let step = step?;
        if let Some(done) = p.apply(step.flag, &step.shown, step.value)? {
            return Ok(done);
        }
    }
    p.finish()
}

/// Reads the arguments into flags without applying them. Reading stops after `-h`/`-V` (like
/// getopt, what follows is not looked at) and at the first malformed argument, whose error is
/// then the last item, so errors still come out in command-line order.
fn read_flags(args: &[String]) -> Vec<Result<Step, CliError>> {
    let mut out = Vec::new();
    let stops = |f: &Flag| f.short == 'h' || f.short == 'V';
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            if let Some(extra) = rest.next() {
                out.push(unexpected_positional(extra));
            }
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(f) = FLAGS.iter().find(|f| f.long.contains(&name)) else {
                out.push(err(format!("unknown option --{name}; see memha -h")));
                break;
            };
            let shown = format!("--{name}");
            let value = match f.arg {
                Arg::No if inline.is_some() => {
                    out.push(err(format!("option {shown} does not take a value")));
                    break;
                }
                Arg::No | Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => match required_value(&shown, f, rest.next()) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            out.push(Err(e));
                            break;
                        }
                    },
                },
            };
            out.push(Ok(Step {
                flag: f,
                shown,
                value,
            }));
            if stops(f) {
                break;
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let cluster = &arg[1..];
            for (pos, c) in cluster.char_indices() {
                let Some(f) = FLAGS.iter().find(|f| f.short == c && c != LONG_ONLY) else {
                    out.push(err(format!("unknown option -{c}; see memha -h")));
                    return out;
                };
                let shown = format!("-{c}");
                if f.arg == Arg::Required {
                    let attached = &cluster[pos + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        match required_value(&shown, f, rest.next()) {
                            Ok(v) => v,
                            Err(e) => {
                                out.push(Err(e));
                                return out;
                            }
                        }
                    } else {
                        attached.to_string()
                    };
                    out.push(Ok(Step {
                        flag: f,
                        shown,
                        value: Some(value),
                    }));
                    break;
                }
                out.push(Ok(Step {
                    flag: f,
                    shown,
                    value: None,
                }));
                if stops(f) {
                    return out;
                }
            }
        } else {
            out.push(unexpected_positional(arg));
            break;
        }
    }
    out
}

fn unexpected_positional<T>(arg: &str) -> Result<T, CliError> {
    err(format!(
        "unexpected argument {arg:?}; memha takes only options, see memha -h"
    ))
}

fn required_value(shown: &str, f: &Flag, next: Option<&String>) -> Result<String, CliError> {
    match next {
        Some(v) => Ok(v.clone()),
        None => err(format!(
            "option {shown} requires a value ({}); see memha -h",
            if f.value_name.is_empty() {
                "<value>"
            } else {
                f.value_name
            }
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The checks, shared by the flags and the config file. Each takes the value as text (a file's
// integer is passed as its decimal text) and returns the reason alone on failure.

/// A decimal integer of type `T`, with `what` saying what the value means.
pub(crate) fn number<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| format!("{what} must be a whole number"))
}

/// A positive count (`-c`, `-t`, `-R`, `-b`): at least 1.
pub(crate) fn count<T>(value: &str, what: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    // Parse as i128 first so "0" and "-3" get the "at least 1" message, not "not a number".
    let wide: i128 = number(value, what)?;
    if wide < 1 {
        return Err(format!("{what} must be at least 1"));
    }
    value
        .trim()
        .parse::<T>()
        .map_err(|_| format!("{what} is too large"))
}

/// `-t`: at least 1; more than 256 is capped at 256.
pub(crate) fn threads(value: &str) -> Result<usize, String> {
    Ok(count::<usize>(value, "the number of threads")?.min(256))
}

pub(crate) fn port(value: &str, what: &str) -> Result<u16, String> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{what} must be a number from 0 to 65535"))
}

/// `-X`: a port from 1 to 65535.
pub(crate) fn repl_port(value: &str) -> Result<u16, String> {
    match port(value, "the replication port")? {
        0 => Err("the replication port must be from 1 to 65535".into()),
        p => Ok(p),
    }
}

/// `-x`: a replication peer, `host`, `host:port`, an IP literal or `[v6]:port`.
pub(crate) fn repl_peer(value: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "{value:?} is not a peer address ({why}); use host, host:port, an IP address or \
             [v6]:port, e.g. 10.0.0.12 or memha-2.example:11212"
        ))
    };
    let v = value.trim();
    if v.is_empty() {
        return bad("it is empty");
    }
    if v.parse::<IpAddr>().is_ok() {
        return Ok(v.to_string());
    }
    let (host, port_text) = if let Some(inner) = v.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return bad("missing ]");
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return bad("not an IPv6 address inside [ ]");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad("expected :port after ]"),
            },
        }
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(v), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
            return bad("not a host name");
        }
    }
    if let Some(p) = port_text {
        if !matches!(p.parse::<u16>(), Ok(1..)) {
            return bad("the port must be from 1 to 65535");
        }
    }
    Ok(v.to_string())
}

/// `-a`: an octal mask from 0 to 777.
pub(crate) fn unix_mask(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            "the unix socket mask must be an octal number from 0 to 777 (e.g. 700)".to_string()
        })
}

/// `-B`.
pub(crate) fn protocol(value: &str) -> Result<BindingProtocol, String> {
    match value.to_ascii_lowercase().as_str() {
        "auto" => Ok(BindingProtocol::Auto),
        "ascii" => Ok(BindingProtocol::Ascii),
        "binary" => Ok(BindingProtocol::Binary),
        _ => Err("unknown protocol; use auto, ascii or binary".into()),
    }
}

/// `-Y`: a readable regular file.
pub(crate) fn auth_file(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    match std::fs::File::open(&path).and_then(|file| file.metadata()) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("the auth file {value} is not a regular file")),
        Err(e) => Err(format!("cannot read the auth file {value}: {e}")),
    }
}

/// One `-o` item.
pub(crate) enum Extended {
    IdleTimeout(u64),
    /// Accepted, no effect.
    Ignored(String),
}

/// One `-o` item: `idle_timeout=N`, or anything else (accepted, no effect).
pub(crate) fn extended_item(item: &str) -> Result<Extended, String> {
    let (key, val) = match item.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (item.trim(), None),
    };
    if key == "idle_timeout" {
        return val
            .and_then(|s| idle_timeout(s).ok())
            .map(Extended::IdleTimeout)
            .ok_or_else(|| {
                "idle_timeout must be a whole number of seconds (0 = never), \
                 e.g. idle_timeout=600"
                    .to_string()
            });
    }
    Ok(Extended::Ignored(item.trim().to_string()))
}

/// `-o idle_timeout=N`: seconds, 0 = never.
pub(crate) fn idle_timeout(value: &str) -> Result<u64, String> {
    value.trim().parse::<u64>().map_err(|_| {
        "idle_timeout must be a whole number of seconds (0 = never), e.g. idle_timeout=600"
            .to_string()
    })
}

/// Splits `<digits><suffix>` into the number and the lower-cased suffix letter, if any.
fn split_suffix(value: &str) -> Option<(u64, Option<char>)> {
    let v = value.trim();
    let (digits, suffix) = match v.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (&v[..v.len() - 1], Some(c.to_ascii_lowercase())),
        _ => (v, None),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, suffix))
}

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
pub(crate) const GIB: u64 = 1024 * MIB;

/// `-m`: megabytes, or bytes times a k/m/g suffix.
pub(crate) fn memory_limit(value: &str) -> Result<u64, String> {
    let bad = || {
        Err("the memory limit must be a whole number of megabytes, \
             optionally with a k, m or g suffix (e.g. 64, 512m, 2g)"
            .to_string())
    };
    let Some((n, suffix)) = split_suffix(value) else {
        return bad();
    };
    let unit = match suffix {
        None | Some('m') => MIB,
        Some('k') => KIB,
        Some('g') => GIB,
        Some(_) => return bad(),
    };
    let Some(bytes) = n.checked_mul(unit).filter(|b| *b <= usize::MAX as u64) else {
        return Err("the memory limit is too large".into());
    };
    if bytes < MIB {
        return Err("the memory limit must be at least 1 megabyte".into());
    }
    Ok(bytes)
}

/// `-I`: bytes, or with a k/m/g suffix. The limits are checked by [`item_size_fits`].
pub(crate) fn item_size(value: &str) -> Result<u64, String> {
    let bad = || {
        Err("the item size must be a number of bytes, \
             optionally with a k, m or g suffix (e.g. 1048576, 512k, 2m)"
            .to_string())
    };
    let Some((n, suffix)) = split_suffix(value) else {
        return bad();
    };
    let unit = match suffix {
        None => 1,
        Some('k') => KIB,
        Some('m') => MIB,
        Some('g') => GIB,
        Some(_) => return bad(),
    };
    // Saturate: anything that overflows is over the 1 GiB limit checked later anyway.
    Ok(n.saturating_mul(unit))
}

/// The item size limit against its bounds and the memory limit (`-I` ≤ 1g and ≤ half of `-m`).
/// `memory_text` says where the memory limit came from (`-m 1`, `the default -m 64`, a file key).
pub(crate) fn item_size_fits(item: u64, memory: u64, memory_text: &str) -> Result<(), String> {
    if item < KIB {
        return Err("the item size limit must be at least 1024 bytes".into());
    }
    if item > GIB {
        return Err("the item size limit must be at most 1 gigabyte (1g)".into());
    }
    if item > memory / 2 {
        return Err(format!(
            "the item size limit ({item} bytes) must be at most half the memory limit \
             ({memory_text} = {memory} bytes, so at most {} bytes); raise the memory limit \
             (-m, memory_limit_mb) or lower the item size limit (-I, item_size_max)",
            memory / 2
        ));
    }
    Ok(())
}

/// One `-l` item: an IP literal, `localhost`, `a.b.c.d:port`, `[v6]` or `[v6]:port`.
pub(crate) fn listen_item(item: &str) -> Result<(IpAddr, Option<u16>), String> {
    parse_listen_item(item).ok_or_else(|| {
        format!(
            "{item:?} is not an IP address; use IPv4 or IPv6 literals such as 127.0.0.1, ::1, \
             10.0.0.1:11211 or [::1]:11211"
        )
    })
}

fn parse_listen_item(item: &str) -> Option<(IpAddr, Option<u16>)> {
    let host = |h: &str| -> Option<IpAddr> {
        if h.eq_ignore_ascii_case("localhost") {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            h.parse().ok()
        }
    };
    if let Some(ip) = host(item) {
        return Some((ip, None));
    }
    if let Some(inner) = item.strip_prefix('[') {
        let (addr, after) = inner.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((IpAddr::V6(ip), port));
    }
    let (h, p) = item.split_once(':')?;
    let ip = host(h).filter(|ip| ip.is_ipv4())?;
    Some((ip, Some(p.parse().ok()?)))
}

/// Ports given inside listen addresses (with the text that gave each) must all agree: memha
/// listens on one TCP port. Returns that port, if any was given.
pub(crate) fn one_listen_port(ports: &[(u16, String)]) -> Result<Option<u16>, String> {
    let Some((first, first_text)) = ports.first() else {
        return Ok(None);
    };
    if let Some((other, other_text)) = ports.iter().find(|(p, _)| p != first) {
        return Err(format!(
            "memha listens on one TCP port, but {first_text} asks for {first} and \
             {other_text} for {other}"
        ));
    }
    Ok(Some(*first))
}

impl Parser {
    /// Applies one flag. `Some(cli)` = stop here and return it (`-h`, `-V`).
    fn apply(
        &mut self,
        f: &Flag,
        shown: &str,
        value: Option<String>,
    ) -> Result<Option<Cli>, CliError> {
        let v = value.as_deref().unwrap_or("");
        let run = &mut self.run;
        let cfg = &mut run.server;
        let nonempty = |what: &str| -> Result<(), CliError> {
            if v.is_empty() {
                err(format!(
                    "option {shown} requires a non-empty value ({what})"
                ))
            } else {
                Ok(())
            }
        };
        match f.short {
            'h' => return Ok(Some(Cli::Help)),
            'V' => return Ok(Some(Cli::Version)),
            LONG_ONLY => match f.long[0] {
                // Loaded before any flag was applied (see `parse_run`).
                "config" => {}
                "repl-secret-file" => {
                    nonempty("a file holding the replication secret")?;
                    run.repl_secret_file = Some(PathBuf::from(v));
                }
                "repl-ack" => {
                    run.repl_ack = match v {
                        "async" => AckMode::Async,
                        "sync" => AckMode::Sync,
                        _ => return err(format!("{shown} {v}: must be async or sync")),
                    }
                }
                "repl-backlog-mb" => {
                    let mb: u64 = v
                        .parse()
                        .map_err(|_| CliError(format!("{shown} {v}: a number of MiB (e.g. 64)")))?;
                    if mb == 0 {
                        return err(format!("{shown} {v}: the backlog needs at least 1 MiB"));
                    }
                    run.repl_backlog_mb = mb;
                }
                "repl-node-id" => {
                    run.repl_node_id = match v.parse::<u16>() {
                        Ok(id) if id <= 1023 => Some(id),
                        _ => return err(format!("{shown} {v}: a node id is 0 to 1023")),
                    }
                }
                other => unreachable!("long option --{other} has no handler"),
            },
            'p' => cfg.tcp_port = at(shown, v, port(v, "the TCP port"))?,
            'U' => cfg.udp_port = at(shown, v, port(v, "the UDP port"))?,
            's' => {
                nonempty("a socket path")?;
                cfg.unix_socket = Some(PathBuf::from(v));
            }
            'a' => cfg.unix_mask = at(shown, v, unix_mask(v))?,
            'l' => {
                if !self.listen_replaced {
                    // The command line's -l replaces the file's `listen`, not adds to it.
                    self.listen_replaced = true;
                    cfg.listen.clear();
                }
                for item in v.split(',').map(str::trim) {
                    let (ip, item_port) = listen_item(item).map_err(|reason| {
                        CliError(format!("{shown} {v}: {reason}, separated by commas"))
                    })?;
                    if !cfg.listen.contains(&ip) {
                        cfg.listen.push(ip);
                    }
                    if let Some(port) = item_port {
                        self.listen_ports.push((port, format!("{shown} {v}")));
                    }
                }
            }
            'm' => {
                cfg.memory_limit = at(shown, v, memory_limit(v))? as usize;
                self.memory = Some(format!("{shown} {v}"));
            }
            'M' => cfg.no_evict = true,
            'C' => cfg.cas_disabled = true,
            'F' => cfg.flush_disabled = true,
            'A' => cfg.shutdown_enabled = true,
            'd' => run.daemonize = true,
            'k' => run.lock_memory = true,
            'r' => run.max_core = true,
            'L' => run.ignored_flags.push(shown.to_string()),
            'I' => self.item_size = Some((format!("{shown} {v}"), at(shown, v, item_size(v))?)),
            'c' => cfg.max_connections = at(shown, v, count(v, "the connection limit"))?,
            't' => cfg.threads = at(shown, v, threads(v))?,
            'R' => cfg.reqs_per_event = at(shown, v, count(v, "the number of requests per event"))?,
            'b' => cfg.backlog = at(shown, v, count(v, "the listen backlog"))?,
            'B' => cfg.protocol = at(shown, v, protocol(v))?,
            'Y' => {
                nonempty("an auth file")?;
                cfg.auth_file = Some(at(shown, v, auth_file(v))?);
            }
            'P' => {
                nonempty("a pid file path")?;
                run.pid_file = Some(PathBuf::from(v));
            }
            'u' => {
                nonempty("a user name")?;
                run.user = Some(v.to_string());
            }
            'v' => {
                if !self.verbosity_replaced {
                    // The command line's -v counts from zero and replaces the file's
                    // `verbosity` and `[logging] level`.
                    self.verbosity_replaced = true;
                    cfg.verbosity = 0;
                    run.log_level = None;
                }
                match &value {
                    None => cfg.verbosity += 1,
                    Some(level) => {
                        cfg.verbosity = at(shown, level, number(level, "the verbosity level"))?
                    }
                }
            }
            'o' => {
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    match at(shown, item, extended_item(item))? {
                        Extended::IdleTimeout(secs) => cfg.idle_timeout = secs,
                        Extended::Ignored(item) => {
                            if !cfg.ignored_options.contains(&item) {
                                cfg.ignored_options.push(item)
                            }
                        }
                    }
                }
            }
            'x' => {
                nonempty("a replication peer address")?;
                if !self.peers_replaced {
                    // The command line's -x replaces the file's `peers`, not adds to them.
                    self.peers_replaced = true;
                    run.repl_peers.clear();
                }
                for one in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let peer = at(shown, v, repl_peer(one))?;
                    if !run.repl_peers.contains(&peer) {
                        run.repl_peers.push(peer);
                    }
                }
            }
            'X' => run.repl_port = Some(at(shown, v, repl_port(v))?),
            'f' => {
                let factor: f64 = v.trim().parse().unwrap_or(f64::NAN);
                if !(factor > 1.0 && factor.is_finite()) {
                    return err(format!(
                        "{shown} {v}: the growth factor must be a number greater than 1 (e.g. 1.25)"
                    ));
                }
                run.ignored_flags.push(format!("{shown} {v}"));
            }
            'n' => {
                at(shown, v, count::<u32>(v, "the minimum slab chunk size"))?;
                run.ignored_flags.push(format!("{shown} {v}"));
            }
            'D' => {
                nonempty("a delimiter character")?;
                run.ignored_flags.push(format!("{shown} {v}"));
            }
            'S' => return err("SASL is not supported by memha; use -Y for ASCII auth"),
            'e' => {
                return err(format!(
                    "{shown}: restartable caches (memory files) are not supported by memha"
                ))
            }
            other => unreachable!("flag -{other} in FLAGS has no handler"),
        }
        Ok(None)
    }

    /// Checks that need every flag, and builds the result.
    fn finish(mut self) -> Result<Cli, CliError> {
        let cfg = &mut self.run.server;

        if let Some(port) = one_listen_port(&self.listen_ports).map_err(CliError)? {
            cfg.tcp_port = port;
        }

        let memory = cfg.memory_limit as u64;
        let (item_text, item) = match &self.item_size {
            Some((text, bytes)) => (text.clone(), *bytes),
            None => (
                self.base_item_origin
                    .clone()
                    .unwrap_or_else(|| "the default item size limit (-I 1m)".to_string()),
                cfg.item_size_max as u64,
            ),
        };
        let memory_text = self
            .memory
            .clone()
            .or_else(|| self.base_memory_origin.clone())
            .unwrap_or_else(|| "the default -m 64".to_string());
        item_size_fits(item, memory, &memory_text)
            .map_err(|reason| CliError(format!("{item_text}: {reason}")))?;
        cfg.item_size_max = item as usize;

        Ok(Cli::Run(Box::new(self.run)))
    }
}

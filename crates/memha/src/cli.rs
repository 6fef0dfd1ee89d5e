//! The memcached-compatible command line.
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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use memha_server::config::{BindingProtocol, Config};

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Cli {
    /// Run the server with these options.
    Run(Box<RunOptions>),
    /// `-h` / `--help`: print [`help_text`] and exit 0.
    Help,
    /// `-V` / `--version`: print [`version_line`] and exit 0.
    Version,
}

/// Everything needed to start the server process.
#[derive(Clone, Debug, Default)]
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
    /// `-x <peer>` (repcached, may repeat): replication peers. Replication is not implemented yet.
    pub repl_peers: Vec<String>,
    /// `-X <port>` (repcached): replication port. Replication is not implemented yet.
    pub repl_port: Option<u16>,
    /// Flags that were accepted but have no effect in memha, as written on the command line
    /// with their value (`"-L"`, `"-f 1.25"`, `"-n 48"`, `"-D :"`), for the startup log.
    pub ignored_flags: Vec<String>,
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
    flag('x', &[], Arg::Required, "<addr>", "replication peer (not yet implemented)"),
    flag('X', &[], Arg::Required, "<num>", "replication port (not yet implemented)"),
    flag('o', &["extended"], Arg::Required, "<opts>", "comma-separated extended options, see below"),
    // Not supported; listed so they get a specific error rather than "unknown option".
    flag('S', &["enable-sasl"], Arg::No, "", ""),
    flag('e', &["memory-file"], Arg::Required, "", ""),
];

/// The text `-h` prints.
pub fn help_text() -> String {
    let mut out = version_line();
    out.push_str("\nusage: memha [options]\n\n");
    let column = |f: &Flag| -> String {
        let mut s = format!("-{}", f.short);
        match f.long.first() {
            Some(long) => {
                s.push_str(", --");
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
         \x20 maxconns_fast, track_sizes, ...) is accepted and has no effect.\n",
    );
    out
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// State while reading the arguments.
struct Parser {
    run: RunOptions,
    /// `-I` as given (the flag as written, its value) and its size in bytes.
    item_size: Option<(String, u64)>,
    /// `-m` as given, for messages.
    memory: Option<String>,
    /// Ports given inside `-l addr:port`, with the `-l` text, for the final check.
    listen_ports: Vec<(u16, String)>,
}

/// Parses the arguments after argv[0].
pub fn parse_args(args: &[String]) -> Result<Cli, CliError> {
    let mut p = Parser {
        run: RunOptions::default(),
        item_size: None,
        memory: None,
        listen_ports: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            if let Some(extra) = rest.next() {
                return unexpected_positional(extra);
            }
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(f) = FLAGS.iter().find(|f| f.long.contains(&name)) else {
                return err(format!("unknown option --{name}; see memha -h"));
            };
            let shown = format!("--{name}");
            let value = match f.arg {
                Arg::No if inline.is_some() => {
                    return err(format!("option {shown} does not take a value"))
                }
                Arg::No | Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => Some(required_value(&shown, f, rest.next())?),
                },
            };
            if let Some(done) = p.apply(f, &shown, value)? {
                return Ok(done);
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let cluster = &arg[1..];
            for (pos, c) in cluster.char_indices() {
                let Some(f) = FLAGS.iter().find(|f| f.short == c) else {
                    return err(format!("unknown option -{c}; see memha -h"));
                };
                let shown = format!("-{c}");
                if f.arg == Arg::Required {
                    let attached = &cluster[pos + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        required_value(&shown, f, rest.next())?
                    } else {
                        attached.to_string()
                    };
                    if let Some(done) = p.apply(f, &shown, Some(value))? {
                        return Ok(done);
                    }
                    break;
                }
                if let Some(done) = p.apply(f, &shown, None)? {
                    return Ok(done);
                }
            }
        } else {
            return unexpected_positional(arg);
        }
    }
    p.finish()
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

/// Parses a decimal integer of type `T`, with `what` saying what the flag means.
fn number<T: std::str::FromStr>(shown: &str, value: &str, what: &str) -> Result<T, CliError> {
    value
        .trim()
        .parse::<T>()
        .or_else(|_| err(format!("{shown} {value}: {what} must be a whole number")))
}

/// A positive count (`-c`, `-t`, `-R`, `-b`): at least 1.
fn count<T>(shown: &str, value: &str, what: &str) -> Result<T, CliError>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    // Parse as i128 first so "0" and "-3" get the "at least 1" message, not "not a number".
    let wide: i128 = number(shown, value, what)?;
    if wide < 1 {
        return err(format!("{shown} {value}: {what} must be at least 1"));
    }
    value
        .trim()
        .parse::<T>()
        .or_else(|_| err(format!("{shown} {value}: {what} is too large")))
}

fn port(shown: &str, value: &str, what: &str) -> Result<u16, CliError> {
    value.trim().parse::<u16>().or_else(|_| {
        err(format!(
            "{shown} {value}: {what} must be a number from 0 to 65535"
        ))
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

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// `-m`: megabytes, or bytes times a k/m/g suffix.
fn memory_limit(shown: &str, value: &str) -> Result<u64, CliError> {
    let bad = || {
        err(format!(
            "{shown} {value}: the memory limit must be a whole number of megabytes, \
             optionally with a k, m or g suffix (e.g. 64, 512m, 2g)"
        ))
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
        return err(format!("{shown} {value}: the memory limit is too large"));
    };
    if bytes < MIB {
        return err(format!(
            "{shown} {value}: the memory limit must be at least 1 megabyte"
        ));
    }
    Ok(bytes)
}

/// `-I`: bytes, or with a k/m/g suffix.
fn item_size(shown: &str, value: &str) -> Result<u64, CliError> {
    let bad = || {
        err(format!(
            "{shown} {value}: the item size must be a number of bytes, \
             optionally with a k, m or g suffix (e.g. 1048576, 512k, 2m)"
        ))
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

/// One `-l` item: an IP literal, `localhost`, `a.b.c.d:port`, `[v6]` or `[v6]:port`.
fn listen_item(item: &str) -> Option<(IpAddr, Option<u16>)> {
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
            'p' => cfg.tcp_port = port(shown, v, "the TCP port")?,
            'U' => cfg.udp_port = port(shown, v, "the UDP port")?,
            's' => {
                nonempty("a socket path")?;
                cfg.unix_socket = Some(PathBuf::from(v));
            }
            'a' => {
                cfg.unix_mask = u32::from_str_radix(v.trim(), 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .map_or_else(
                        || {
                            err(format!(
                                "{shown} {v}: the unix socket mask must be an octal number \
                                 from 0 to 777 (e.g. 700)"
                            ))
                        },
                        Ok,
                    )?;
            }
            'l' => {
                for item in v.split(',').map(str::trim) {
                    let Some((ip, item_port)) = listen_item(item) else {
                        return err(format!(
                            "{shown} {v}: {item:?} is not an IP address; use IPv4 or IPv6 \
                             literals such as 127.0.0.1, ::1, 10.0.0.1:11211 or [::1]:11211, \
                             separated by commas"
                        ));
                    };
                    if !cfg.listen.contains(&ip) {
                        cfg.listen.push(ip);
                    }
                    if let Some(port) = item_port {
                        self.listen_ports.push((port, format!("{shown} {v}")));
                    }
                }
            }
            'm' => {
                cfg.memory_limit = memory_limit(shown, v)? as usize;
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
            'I' => self.item_size = Some((format!("{shown} {v}"), item_size(shown, v)?)),
            'c' => cfg.max_connections = count(shown, v, "the connection limit")?,
            't' => cfg.threads = count::<usize>(shown, v, "the number of threads")?.min(256),
            'R' => cfg.reqs_per_event = count(shown, v, "the number of requests per event")?,
            'b' => cfg.backlog = count(shown, v, "the listen backlog")?,
            'B' => {
                cfg.protocol = match v.to_ascii_lowercase().as_str() {
                    "auto" => BindingProtocol::Auto,
                    "ascii" => BindingProtocol::Ascii,
                    "binary" => BindingProtocol::Binary,
                    _ => {
                        return err(format!(
                            "{shown} {v}: unknown protocol; use auto, ascii or binary"
                        ))
                    }
                }
            }
            'Y' => {
                nonempty("an auth file")?;
                let path = PathBuf::from(v);
                match std::fs::File::open(&path).and_then(|file| file.metadata()) {
                    Ok(meta) if meta.is_file() => {}
                    Ok(_) => {
                        return err(format!(
                            "{shown} {v}: the auth file {v} is not a regular file"
                        ))
                    }
                    Err(e) => {
                        return err(format!("{shown} {v}: cannot read the auth file {v}: {e}"))
                    }
                }
                cfg.auth_file = Some(path);
            }
            'P' => {
                nonempty("a pid file path")?;
                run.pid_file = Some(PathBuf::from(v));
            }
            'u' => {
                nonempty("a user name")?;
                run.user = Some(v.to_string());
            }
            'v' => match &value {
                None => cfg.verbosity += 1,
                Some(level) => cfg.verbosity = number(shown, level, "the verbosity level")?,
            },
            'o' => {
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let (key, val) = match item.split_once('=') {
                        Some((k, v)) => (k.trim(), Some(v.trim())),
                        None => (item, None),
                    };
                    if key == "idle_timeout" {
                        cfg.idle_timeout = val.and_then(|s| s.parse::<u64>().ok()).map_or_else(
                            || {
                                err(format!(
                                    "{shown} {item}: idle_timeout must be a whole number \
                                         of seconds (0 = never), e.g. idle_timeout=600"
                                ))
                            },
                            Ok,
                        )?;
                    } else {
                        cfg.ignored_options.push(item.to_string());
                    }
                }
            }
            'x' => {
                nonempty("a replication peer address")?;
                run.repl_peers.push(v.to_string());
            }
            'X' => {
                let p = port(shown, v, "the replication port")?;
                if p == 0 {
                    return err(format!(
                        "{shown} {v}: the replication port must be from 1 to 65535"
                    ));
                }
                run.repl_port = Some(p);
            }
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
                count::<u32>(shown, v, "the minimum slab chunk size")?;
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

        if let Some((first, first_text)) = self.listen_ports.first() {
            if let Some((other, other_text)) = self.listen_ports.iter().find(|(p, _)| p != first) {
                return err(format!(
                    "memha listens on one TCP port, but {first_text} asks for {first} and \
                     {other_text} for {other}"
                ));
            }
            cfg.tcp_port = *first;
        }

        let memory = cfg.memory_limit as u64;
        let (item_text, item) = match &self.item_size {
            Some((text, bytes)) => (text.clone(), *bytes),
            None => (
                "the default item size limit (-I 1m)".to_string(),
                cfg.item_size_max as u64,
            ),
        };
        if item < KIB {
            return err(format!(
                "{item_text}: the item size limit must be at least 1024 bytes"
            ));
        }
        if item > GIB {
            return err(format!(
                "{item_text}: the item size limit must be at most 1 gigabyte (1g)"
            ));
        }
        if item > memory / 2 {
            let mem_text = self
                .memory
                .clone()
                .unwrap_or_else(|| "the default -m 64".to_string());
            return err(format!(
                "{item_text}: the item size limit ({item} bytes) must be at most half the memory \
                 limit ({mem_text} = {memory} bytes, so at most {} bytes); raise -m or lower -I",
                memory / 2
            ));
        }
        cfg.item_size_max = item as usize;

        Ok(Cli::Run(Box::new(self.run)))
    }
}

//! `memha`: start the server from memcached-style flags and/or a config file; also
//! `memha check-config FILE…` and `memha print-config [flags…]`.
//!
//! Order matters here: parse and validate everything, bind the sockets (so a busy port is an
//! error on the terminal, not in a log after daemonizing), then daemonize while the process
//! still has a single thread, write the pid file, drop privileges, and only then start the
//! worker threads.

mod reload;
mod sd_notify;
mod supervised;
mod supervisor;

use std::process::ExitCode;

use memha::cli::{self, Cli, RunOptions};
use memha::config_file::{self, AckMode, LogLevel, Secrets};
use memha_repl::node::ReplConfig;
use memha_server::auth::AuthTable;
use memha_server::Shared;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse_args(&args) {
        Ok(Cli::Help) => {
            print!("{}", cli::help_text());
            ExitCode::SUCCESS
        }
        Ok(Cli::Version) => {
            println!("{}", cli::version_line());
            ExitCode::SUCCESS
        }
        Ok(Cli::CheckConfig(files)) => {
            let mut ok = true;
            for file in &files {
                match config_file::load(file) {
                    Ok(_) => println!("{}: ok", file.display()),
                    Err(e) => {
                        eprintln!("{e}");
                        ok = false;
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Cli::Status(addr)) => match memha_admin::status_table(&addr) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("memha status: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Cli::ImportKeepalived(file)) => memha::import_keepalived::run(&file),
        Ok(Cli::PrintConfig(opts)) => {
            print!("{}", config_file::to_toml(&opts, Secrets::Redact));
            ExitCode::SUCCESS
        }
        Ok(Cli::Run(opts)) => match run(*opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("memha: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("memha: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut opts: RunOptions) -> Result<(), String> {
    reload::init_logging(opts.log_level());
    // With VRRP, this process becomes the supervisor and the cache runs in a child started
    // from this same binary (see supervisor.rs); the child finds its socket in the
    // environment and serves without VRRP, daemonizing or a pid file of its own.
    let supervised = supervised::take();
    if supervised.is_some() {
        opts.daemonize = false;
        opts.pid_file = None;
    } else if !opts.vrrp_instances.is_empty() {
        return run_supervisor(&opts);
    }
    let from_file = opts
        .config_file
        .as_ref()
        .map(|f| format!(" (from {})", f.display()))
        .unwrap_or_default();
    if let Some(f) = opts.config_file.as_ref().filter(|_| supervised.is_none()) {
        tracing::info!("configuration read from {}", f.display());
    }
    if opts.max_core {
        raise_core_limit();
    }
    for flag in &opts.ignored_flags {
        tracing::info!("{flag}: accepted for compatibility, no effect in memha");
    }
    for opt in &opts.server.ignored_options {
        tracing::info!("-o {opt}: accepted for compatibility, no effect in memha");
    }
    let auth = match &opts.server.auth_file {
        Some(path) => Some(AuthTable::load(path)?),
        None => None,
    };
    let replication = replication_config(&opts)?;
    let (repl_cfg, repl_listener) = match replication {
        Some((cfg, listener)) => (Some(cfg), Some(listener)),
        None => (None, None),
    };
    let shared = Shared::with_replication(opts.server.clone(), auth, repl_cfg);
    // Bind everything before daemonizing, so a busy port is reported on the terminal.
    let admin = opts
        .admin_listen
        .map(|addr| memha_admin::bind(addr).map_err(|e| format!("[admin] listen{from_file}: {e}")))
        .transpose()?;
    let mut bound = memha_server::bind(shared)?;
    if let Some(listener) = repl_listener {
        if let Ok(a) = listener.local_addr() {
            tracing::info!("replication listening on {a}");
        }
        bound.add_service(move |shared| memha_server::replication::serve(listener, shared));
    }
    if let Some(listener) = admin {
        if let Ok(a) = listener.local_addr() {
            tracing::info!("admin endpoint on http://{a}/ (/metrics, /health, /ready)");
        }
        bound.add_service(move |shared| memha_admin::serve_std(listener, shared));
    }
    for a in bound.tcp_addrs() {
        tracing::info!("listening on TCP {a}");
    }
    for a in bound.udp_addrs() {
        tracing::info!("listening on UDP {a}");
    }
    if let Some(path) = std::env::var_os("MEMCACHED_PORT_FILENAME") {
        bound
            .write_port_file(path.as_ref())
            .map_err(|e| format!("cannot write the port file {path:?}: {e}"))?;
    }
    if opts.daemonize {
        daemonize(opts.server.verbosity > 0 || opts.log_level() > LogLevel::Warn)?;
    }
    if let Some(path) = &opts.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
    }
    // Last: SIGHUP is handled before READY=1 goes to systemd (see reload::sighup_service).
    bound.add_service(reload::sighup_service(
        std::env::args().skip(1).collect(),
        opts.clone(),
    ));
    match supervised {
        Some(stream) => bound.add_service(move |shared| supervised::serve(stream, shared)),
        None => bound.add_service(sd_notify::serve),
    }
    drop_privileges(opts.user.as_deref())?;
    let result = bound.run();
    sd_notify::stopping();
    if let Some(path) = &opts.pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The supervisor's life: detach and write the pid file as the single-process server would,
/// then speak VRRP around the data process until stopped.
fn run_supervisor(opts: &RunOptions) -> Result<(), String> {
    if let Some(f) = &opts.config_file {
        tracing::info!("configuration read from {}", f.display());
    }
    let prepared = supervisor::prepare(opts)?;
    if opts.daemonize {
        daemonize(opts.server.verbosity > 0 || opts.log_level() > LogLevel::Warn)?;
    }
    if let Some(path) = &opts.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
    }
    let result = supervisor::run(prepared);
    if let Some(path) = &opts.pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// With `ack = "sync"`, how long a write waits for a peer before it is answered anyway.
const SYNC_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// Default replication port, repcached's.
const DEFAULT_REPL_PORT: u16 = 11212;

/// The replication settings and its bound listener, when `-x`/`-X` or `[replication]` ask for
/// replication. Peers and the listener must be on loopback unless a secret authenticates the
/// links: repcached handed its whole cache to whoever connected; memha does not.
fn replication_config(
    opts: &RunOptions,
) -> Result<Option<(ReplConfig, std::net::TcpListener)>, String> {
    if opts.repl_peers.is_empty() && opts.repl_port.is_none() {
        return Ok(None);
    }
    let port = opts.repl_port.unwrap_or(DEFAULT_REPL_PORT);
    let secret = match &opts.repl_secret_file {
        Some(path) => {
            let raw = std::fs::read(path).map_err(|e| {
                format!("cannot read the replication secret {}: {e}", path.display())
            })?;
            let secret = raw.trim_ascii().to_vec();
            if secret.len() < 16 {
                return Err(format!(
                    "the replication secret in {} is {} bytes; use at least 16 (e.g. `head -c 32 \
                     /dev/urandom | base64 > {}`)",
                    path.display(),
                    secret.len(),
                    path.display()
                ));
            }
            Some(secret)
        }
        None => None,
    };
    let mut peers = Vec::new();
    for p in &opts.repl_peers {
        let with_port = if p
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
            && !p.ends_with(']')
        {
            p.clone()
        } else {
            format!("{p}:{port}")
        };
        if secret.is_none() {
            let loopback = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
                .map_err(|e| format!("replication peer {p}: {e}"))?
                .all(|a| a.ip().is_loopback());
            if !loopback {
                return Err(format!(
                    "replication peer {p} is not on loopback and there is no secret: set \
                     [replication] secret_file (or --repl-secret-file) on every node"
                ));
            }
        }
        peers.push(with_port);
    }
    let bind_ip = match (opts.server.listen.first(), secret.is_some()) {
        (Some(ip), _) => *ip,
        (None, true) => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, false) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    if secret.is_none() {
        if !bind_ip.is_loopback() {
            return Err(format!(
                "replication on {bind_ip} needs a secret: set [replication] secret_file \
                 (or --repl-secret-file), or listen on loopback only"
            ));
        }
        tracing::warn!("replication has no secret: peers are accepted from loopback only");
    }
    let addr = std::net::SocketAddr::new(bind_ip, port);
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen for replication on {addr}: {e}"))?;
    let node_id = opts
        .repl_node_id
        .unwrap_or_else(|| derived_node_id(port, &peers));
    Ok(Some((
        ReplConfig {
            node_id,
            cluster: b"memha".to_vec(),
            secret,
            peers,
            backlog_bytes: (opts.repl_backlog_mb as usize).saturating_mul(1024 * 1024),
            ready_grace: std::time::Duration::from_secs(5),
            sync_ack: (opts.repl_ack == AckMode::Sync).then_some(SYNC_ACK_TIMEOUT),
        },
        listener,
    )))
}

/// A node id from the host name, the replication port and the peer list: distinct for the
/// nodes of one cluster in practice (two nodes on one host differ by port; nodes that share
/// a host name, as containers or namespaces may, differ by their peers: each lists the
/// others, not itself), stable across restarts. A collision is detected when the peers meet
/// and reported; `[replication] node_id` fixes it.
fn derived_node_id(port: u16, peers: &[String]) -> u16 {
    let mut peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    peers.sort_unstable();
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most name.len() bytes into the buffer.
    unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // FNV-1a: small, stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    let peer_bytes = peers.iter().flat_map(|p| p.bytes().chain([0]));
    for b in name[..len]
        .iter()
        .copied()
        .chain(port.to_be_bytes())
        .chain(peer_bytes)
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h % 1024) as u16
}

/// `-r` / `enable_coredumps`: raise the core file size limit to its maximum, as memcached does.
fn raise_core_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_CORE, &lim) != 0 {
                tracing::warn!(
                    "-r: cannot raise the core file limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Detach from the terminal (`-d`). Runs before any thread exists, so `fork` is safe.
fn daemonize(keep_stderr: bool) -> Result<(), String> {
    // SAFETY: the process is single-threaded here (no runtime started yet), so the child
    // inherits a consistent state; the parent exits at once without running destructors.
    unsafe {
        match libc::fork() {
            -1 => {
                return Err(format!(
                    "cannot daemonize: fork failed: {}",
                    std::io::Error::last_os_error()
                ))
            }
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(format!(
                "cannot daemonize: setsid failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if devnull >= 0 {
            libc::dup2(devnull, 0);
            libc::dup2(devnull, 1);
            if !keep_stderr {
                libc::dup2(devnull, 2);
            }
            if devnull > 2 {
                libc::close(devnull);
            }
        }
    }
    Ok(())
}

/// `-u user`: switch to that user when started as root. As root without `-u`, memha keeps
/// running as root but says so (memcached refuses; a cache rarely needs root, but memha's
/// VRRP speaker will, so the choice is left to the operator).
fn drop_privileges(user: Option<&str>) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let Some(user) = user else {
        if euid == 0 {
            tracing::warn!("running as root; pass -u <user> to drop privileges");
        }
        return Ok(());
    };
    if euid != 0 {
        return Ok(());
    }
    let name = std::ffi::CString::new(user).map_err(|_| format!("-u {user:?}: bad user name"))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids out
    // before any other call that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(format!("-u {user}: no such user"));
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: plain syscalls on ids read above.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 && uid != 0 {
            return Err(format!(
                "-u {user}: setgroups failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(format!(
                "-u {user}: cannot switch to this user: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

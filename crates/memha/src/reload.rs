//! Logging with a reloadable level, and `SIGHUP`: re-read the configuration and apply what can
//! change while running.
//!
//! On `SIGHUP` (systemd's `ExecReload`) memha parses its command line again exactly as at
//! startup, so `--config FILE` is read anew and the flags still override it, and then applies:
//!
//! * `[logging] level` / `server.verbosity`: the log level (unless `RUST_LOG` fixes it) and
//!   the verbosity `stats settings` shows;
//! * `server.memory_limit_mb`: the store's budget, as `cache_memlimit` would (a smaller one
//!   evicts at once).
//!
//! Every other key that changed is logged by name as needing a restart (listeners, threads,
//! replication, ...); files the configuration names (`auth_file`, `secret_file`) are not
//! re-read. A file that no longer parses is reported and nothing changes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use memha::cli::{self, Cli, RunOptions};
use memha::config_file::{self, LogLevel, Secrets};
use memha_server::shared::Stop;
use memha_server::Shared;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The keys a reload applies, as named in the config file.
pub const RELOADED: &[&str] = &[
    "logging.level",
    "server.verbosity",
    "server.memory_limit_mb",
];

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether `RUST_LOG` chose the filter (then reloads leave it alone).
static FROM_ENV: OnceLock<bool> = OnceLock::new();

/// `[logging] level`, else `-v` = info, `-vv` = debug, `-vvv` = trace; quiet (warnings only)
/// by default, like memcached. `RUST_LOG` overrides. The level can be changed later by
/// [`set_log_level`].
pub fn init_logging(level: LogLevel) {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (EnvFilter::new(level.name()), false),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // No colour codes in files and the journal.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init()
        .is_ok();
    if installed {
        let _ = FILTER.set(handle);
        let _ = FROM_ENV.set(from_env);
    }
}

/// Changes the log level. `Err` says why it could not (RUST_LOG is set, no reloadable logger).
pub fn set_log_level(level: LogLevel) -> Result<(), String> {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return Err("RUST_LOG is set and fixes the log filter".into());
    }
    let handle = FILTER.get().ok_or("logging was not set up by memha")?;
    handle
        .modify(|f| *f = EnvFilter::new(level.name()))
        .map_err(|e| e.to_string())
}

/// The configuration as `section.key` → value text, from [`config_file::to_toml`] (so the
/// names are the file's). Keys that are not set are absent; a `[[table]]` array is one entry.
pub fn flatten(opts: &RunOptions) -> BTreeMap<String, String> {
    let text = config_file::to_toml(opts, Secrets::Show);
    let mut out = BTreeMap::new();
    let Ok(table) = text.parse::<toml::Table>() else {
        return out;
    };
    for (section, value) in table {
        match value {
            toml::Value::Table(t) => {
                for (key, v) in t {
                    out.insert(format!("{section}.{key}"), v.to_string());
                }
            }
            other => {
                out.insert(section, other.to_string());
            }
        }
    }
    out
}

/// The keys whose values differ between two configurations, by name. VRRP sections are left
/// out: the supervisor process reloads and reports those (`supervisor.rs`).
pub fn changed_keys(old: &RunOptions, new: &RunOptions) -> Vec<String> {
    let vrrp = |k: &String| !k.starts_with("vrrp_instance") && !k.starts_with("vrrp_script");
    let (mut a, mut b) = (flatten(old), flatten(new));
    a.retain(|k, _| vrrp(k));
    b.retain(|k, _| vrrp(k));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What one reload did, for the log and for tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Lines describing what was applied.
    pub applied: Vec<String>,
    /// Keys that changed but need a restart.
    pub not_reloaded: Vec<String>,
}

/// Applies `new` over the running `current` (the options last applied): the reloadable keys
/// take effect and `current` follows them; the other keys stay as they were in `current`, so
/// they are reported again on the next reload until the process restarts.
pub fn apply(shared: &Shared, current: &mut RunOptions, new: &RunOptions) -> Outcome {
    let mut out = Outcome::default();
    let old_level = current.log_level();
    current.log_level = new.log_level;
    current.server.verbosity = new.server.verbosity;
    let level = current.log_level();
    if shared.verbosity.swap(new.server.verbosity, Relaxed) != new.server.verbosity {
        out.applied
            .push(format!("server.verbosity = {}", new.server.verbosity));
    }
    if level != old_level {
        match set_log_level(level) {
            Ok(()) => out.applied.push(format!(
                "log level {} -> {}",
                old_level.name(),
                level.name()
            )),
            Err(e) => out
                .applied
                .push(format!("log level stays (wanted {}): {e}", level.name())),
        }
    }
    let limit = new.server.memory_limit;
    let running = shared.store.memory_limit();
    current.server.memory_limit = limit;
    if running != limit {
        shared.store.set_memory_limit(limit);
        out.applied.push(format!(
            "memory limit {} -> {} bytes ({} MiB)",
            running,
            limit,
            limit / (1024 * 1024)
        ));
    }
    out.not_reloaded = changed_keys(current, new);
    out
}

/// Re-reads the command line (and its `--config` file) and applies it, logging the outcome.
pub fn reload(shared: &Shared, args: &[String], current: &mut RunOptions) {
    let from = current
        .config_file
        .as_ref()
        .map(|f| format!(" from {}", f.display()))
        .unwrap_or_else(|| " (no --config file: only the command line)".into());
    tracing::info!("SIGHUP: reloading the configuration{from}");
    let new = match cli::parse_args(args) {
        Ok(Cli::Run(new)) => new,
        Ok(_) => {
            tracing::warn!("SIGHUP: the command line no longer starts a server; nothing changed");
            return;
        }
        Err(e) => {
            tracing::error!("SIGHUP: {e}; nothing changed");
            return;
        }
    };
    let outcome = apply(shared, current, &new);
    if outcome.applied.is_empty() {
        tracing::info!(
            "SIGHUP: nothing to apply ({} unchanged)",
            RELOADED.join(", ")
        );
    }
    for line in &outcome.applied {
        tracing::info!("SIGHUP: {line}");
    }
    if !outcome.not_reloaded.is_empty() {
        tracing::warn!(
            "SIGHUP: not reloaded, restart memha to apply: {}",
            outcome.not_reloaded.join(", ")
        );
    }
    tracing::info!(
        "SIGHUP: only {} are reloaded; files named by the configuration (auth_file, \
         secret_file) are not re-read",
        RELOADED.join(", ")
    );
}

/// A service for [`memha_server::Bound::add_service`] that reloads on `SIGHUP`. `args` are the
/// arguments after argv\[0] and `started` the options the process started with.
///
/// Calling this ignores `SIGHUP` until the runtime starts (its default action would end the
/// process); the handler itself is installed when the service is started, before the next
/// service is, so a service added after this one (the `READY=1` notification) runs only once
/// `SIGHUP` is handled.
pub fn sighup_service(
    args: Vec<String>,
    started: RunOptions,
) -> impl FnOnce(Arc<Shared>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
       + Send
       + 'static {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    move |shared| {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        Box::pin(async move {
            let mut hup = match hup {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot handle SIGHUP ({e}); it is ignored");
                    return;
                }
            };
            let mut current = started;
            let mut stop = shared.stop_signal();
            loop {
                tokio::select! {
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        reload(&shared, &args, &mut current);
                    }
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() != Stop::Running {
                            return;
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> RunOptions {
        config_file::parse_str("test.toml", toml).unwrap()
    }

    #[test]
    fn changed_keys_are_named_as_in_the_file() {
        let a = parse("[server]\nport = 11211\nmemory_limit_mb = 64\n");
        let b = parse(
            "[server]\nport = 11300\nmemory_limit_mb = 128\nthreads = 8\n[logging]\nlevel = \"debug\"\n",
        );
        let keys = changed_keys(&a, &b);
        for k in [
            "server.port",
            "server.threads",
            "server.memory_limit_mb",
            "logging.level",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
        assert!(changed_keys(&a, &a).is_empty());
    }

    #[test]
    fn apply_sets_the_memory_limit_and_reports_the_rest() {
        let a = parse("[server]\nport = 11211\nmemory_limit_mb = 64\n");
        let b = parse("[server]\nport = 11300\nmemory_limit_mb = 128\n");
        let shared = Shared::new(a.server.clone(), None);
        let mut current = a.clone();
        let out = apply(&shared, &mut current, &b);
        assert_eq!(shared.store.memory_limit(), 128 << 20);
        assert_eq!(out.not_reloaded, vec!["server.port".to_string()]);
        assert_eq!(out.applied.len(), 1, "{:?}", out.applied);
        // Reported again: the port still is not what the file says.
        let again = apply(&shared, &mut current, &b);
        assert!(again.applied.is_empty());
        assert_eq!(again.not_reloaded, vec!["server.port".to_string()]);
    }
}

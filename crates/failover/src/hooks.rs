//! Notify hooks: the scripts keepalived runs on every state change, with its arguments.
//!
//! Operators already have `notify_master` / `notify_backup` / `notify_fault` / `notify_stop`
//! scripts and generic `notify` scripts written for keepalived; they must work unchanged.
//! keepalived runs `notify_<state>` as written (the string may carry its own arguments) and
//! the generic `notify` with `INSTANCE <name> <STATE> <priority>` appended.
//!
//! A hook must never hold up the state machine: a master that waits for a slow script does
//! not send adverts, and its backup takes over. So hooks are spawned and left running; the
//! speaker's loop reaps them ([`HookRunner::reap`]) and logs a non-zero exit, a signal or a
//! script that could not be started. The command string goes through `/bin/sh -c` so that
//! quoting and arguments behave as the operator expects from a keepalived config line.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memha_vrrp::{notify_args, NotifyState};

/// The scripts of one instance (keepalived's key names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify_stop: Option<String>,
    /// Generic: gets `INSTANCE <name> <STATE> <priority>` appended.
    pub notify: Option<String>,
}

impl Hooks {
    fn for_state(&self, state: NotifyState) -> Option<&str> {
        match state {
            NotifyState::Master => self.notify_master.as_deref(),
            NotifyState::Backup => self.notify_backup.as_deref(),
            NotifyState::Fault => self.notify_fault.as_deref(),
            NotifyState::Stop => self.notify_stop.as_deref(),
        }
    }
}

/// A hook that has been running this long gets one warning in the log (it is not killed:
/// keepalived does not kill notify scripts either, and a script may legitimately be slow).
const SLOW_HOOK: Duration = Duration::from_secs(30);

struct Running {
    what: String,
    child: Child,
    started: Instant,
    warned: bool,
}

/// Starts hooks and keeps track of them until they exit.
#[derive(Default)]
pub struct HookRunner {
    running: Vec<Running>,
    started: u64,
    failed: u64,
}

impl HookRunner {
    pub fn new() -> HookRunner {
        HookRunner::default()
    }

    /// Starts `notify_<state>` and then the generic `notify` of an instance, without waiting.
    pub fn run(&mut self, instance: &str, hooks: &Hooks, state: NotifyState, priority: u8) {
        if let Some(cmd) = hooks.for_state(state) {
            let what = format!("{instance}: notify_{} {cmd:?}", state.name().to_lowercase());
            self.spawn(what, cmd, &[]);
        }
        if let Some(cmd) = &hooks.notify {
            let args = notify_args(instance, state, priority);
            let what = format!("{instance}: notify {cmd:?} {}", args.join(" "));
            self.spawn(what, cmd, &args);
        }
    }

    fn spawn(&mut self, what: String, cmd: &str, args: &[String]) {
        self.started += 1;
        // `sh -c 'CMD "$@"' memha-notify ARGS…`: the operator's line is parsed by the shell
        // as keepalived's users expect, and the arguments are appended without re-quoting.
        let script = if args.is_empty() {
            cmd.to_string()
        } else {
            format!("{cmd} \"$@\"")
        };
        match Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("memha-notify")
            .args(args)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                tracing::debug!("started {what} (pid {})", child.id());
                self.running.push(Running {
                    what,
                    child,
                    started: Instant::now(),
                    warned: false,
                });
            }
            Err(e) => {
                self.failed += 1;
                tracing::error!("cannot start {what}: {e}");
            }
        }
    }

    /// Collects the hooks that have exited and logs the ones that failed. Never blocks.
    pub fn reap(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        self.failed += 1;
                        tracing::warn!("{} failed: {status}", r.what);
                    }
                    self.running.swap_remove(i);
                    continue;
                }
                Ok(None) => {
                    if !r.warned && now.duration_since(r.started) >= SLOW_HOOK {
                        r.warned = true;
                        tracing::warn!(
                            "{} is still running after {} s (pid {}); it does not hold up \
                             failover, but check the script",
                            r.what,
                            SLOW_HOOK.as_secs(),
                            r.child.id()
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!("{}: cannot wait for it: {e}", r.what);
                    self.running.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// True while some hook has not exited yet.
    pub fn pending(&self) -> bool {
        !self.running.is_empty()
    }

    /// At shutdown: waits up to `max` for the hooks still running (the `notify_stop` script
    /// should get its chance to run), then leaves the rest alone.
    pub fn wait_all(&mut self, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            self.reap();
            if self.running.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for r in &self.running {
            tracing::warn!("{} still running at exit (pid {})", r.what, r.child.id());
        }
    }

    /// Hooks started so far.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Hooks that could not be started or exited unsuccessfully.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(r: &mut HookRunner) {
        r.wait_all(Duration::from_secs(10));
        assert!(!r.pending());
    }

    #[test]
    fn hooks_get_keepalived_s_arguments() {
        let dir = std::env::temp_dir().join(format!("memha-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let hooks = Hooks {
            notify_master: Some(format!("echo master-script >> {}", out.display())),
            notify: Some(format!("printf '%s|' >> {}", out.display())),
            ..Hooks::default()
        };
        let mut r = HookRunner::new();
        r.run("VI_1", &hooks, NotifyState::Master, 100);
        wait(&mut r);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("master-script\n"), "{text:?}");
        assert!(text.contains("INSTANCE|VI_1|MASTER|100|"), "{text:?}");
        assert_eq!(r.started(), 2);
        assert_eq!(r.failed(), 0);
        // No backup script configured: only the generic one runs.
        r.run("VI_1", &hooks, NotifyState::Backup, 100);
        wait(&mut r);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("INSTANCE|VI_1|BACKUP|100|"), "{text:?}");
        assert_eq!(r.started(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_are_counted_and_never_block() {
        let hooks = Hooks {
            notify_fault: Some("exit 3".to_string()),
            notify_stop: Some("sleep 5".to_string()),
            ..Hooks::default()
        };
        let mut r = HookRunner::new();
        let t = Instant::now();
        r.run("VI_1", &hooks, NotifyState::Stop, 100);
        r.run("VI_1", &hooks, NotifyState::Fault, 100);
        assert!(t.elapsed() < Duration::from_secs(2), "run must not wait");
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.failed() == 0 && Instant::now() < deadline {
            r.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(r.failed(), 1);
        assert!(r.pending(), "the sleeping hook is still running");
        for h in &mut r.running {
            let _ = h.child.kill();
        }
        wait(&mut r);
    }
}

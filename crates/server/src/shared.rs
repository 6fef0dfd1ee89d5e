//! State shared by every connection and worker of one process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use memha_repl::node::{ReplConfig, Replicator};
use memha_store::{Store, StoreConfig};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::auth::AuthTable;
use crate::config::Config;
use crate::stats::GlobalStats;

/// Why the process is stopping, sent to every listener and connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// Close everything now (SIGTERM, SIGINT, `shutdown`).
    Now,
    /// Stop accepting, let open connections finish (`shutdown graceful`, SIGUSR1).
    Graceful,
}

/// Everything a connection needs, behind one `Arc`.
pub struct Shared {
    pub config: Config,
    pub store: Arc<Store>,
    /// Replication to peers, when configured (`-x`/`-X`, `[replication]`).
    pub repl: Option<Arc<Replicator>>,
    pub stats: GlobalStats,
    pub started: Instant,
    pub started_unix: u64,
    /// Open client connections (for `-c` and `curr_connections`).
    pub conns: AtomicUsize,
    pub verbosity: AtomicU32,
    pub auth: Option<AuthTable>,
    pub detail: DetailStats,
    /// Whether this node should receive traffic (the admin endpoint's `/ready`). Always true
    /// for a single node; with replication, false until the first sync from its peers.
    pub ready: AtomicBool,
    /// The VRRP speaker's state, as the supervisor last sent it (`None`: no VRRP, or not
    /// supervised).
    pub vrrp: Mutex<Option<crate::vrrp_view::VrrpView>>,
    stop_tx: watch::Sender<Stop>,
}

impl Shared {
    /// A single node.
    pub fn new(config: Config, auth: Option<AuthTable>) -> Arc<Shared> {
        Self::with_replication(config, auth, None)
    }

    /// A node that replicates with peers when `repl` is given: its item versions carry the
    /// replication node id, and it is not ready until it has synced from its peers.
    pub fn with_replication(
        config: Config,
        auth: Option<AuthTable>,
        repl: Option<ReplConfig>,
    ) -> Arc<Shared> {
        let store = Arc::new(Store::new(StoreConfig {
            memory_limit: config.memory_limit,
            item_size_max: config.item_size_max,
            no_evict: config.no_evict,
            shards: (config.threads * 16).next_power_of_two().clamp(16, 1024),
            node_id: repl.as_ref().map_or(0, |r| r.node_id),
            // A single node needs no tombstones: nothing can resurrect what it deleted.
            max_tombstones: if repl.is_some() { 100_000 } else { 0 },
            track_counters: repl.is_some(),
            ..StoreConfig::default()
        }));
        let repl = repl.map(|cfg| Replicator::new(cfg, store.clone()));
        let ready = repl.as_ref().is_none_or(|r| r.is_ready());
        let (stop_tx, _) = watch::channel(Stop::Running);
        Arc::new(Shared {
            verbosity: AtomicU32::new(config.verbosity),
            config,
            store,
            stats: GlobalStats::default(),
            started: Instant::now(),
            started_unix: unix_now(),
            conns: AtomicUsize::new(0),
            auth,
            detail: DetailStats::default(),
            ready: AtomicBool::new(ready),
            vrrp: Mutex::new(None),
            repl,
            stop_tx,
        })
    }

    pub fn stop(&self, how: Stop) {
        self.stop_tx.send_replace(how);
    }

    pub fn stop_signal(&self) -> watch::Receiver<Stop> {
        self.stop_tx.subscribe()
    }

    /// Largest value a client may store: `-I` less the per-item overhead memcached counts
    /// (so memcached's own size tests land on the same side of the limit).
    pub fn max_value(&self) -> usize {
        self.config.item_size_max
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `stats detail`: per key-prefix counters (prefix = the key up to the first `:`), collected
/// only while switched on because they cost a map lookup per request.
#[derive(Default)]
pub struct DetailStats {
    pub on: AtomicBool,
    pub prefixes: Mutex<HashMap<Vec<u8>, PrefixCounts>>,
}

#[derive(Default, Clone, Copy)]
pub struct PrefixCounts {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

/// What a request did, for `stats detail`.
#[derive(Clone, Copy)]
pub enum DetailOp {
    Get { hit: bool },
    Set,
    Delete,
}

impl DetailStats {
    /// Most prefixes a dump can grow to, so a client cycling prefixes cannot grow memory
    /// without bound.
    const MAX_PREFIXES: usize = 10_000;

    pub fn record(&self, key: &[u8], op: DetailOp) {
        if !self.on.load(Relaxed) {
            return;
        }
        let Some(colon) = key.iter().position(|&b| b == b':') else {
            return;
        };
        let prefix = &key[..colon];
        let mut map = self.prefixes.lock();
        if !map.contains_key(prefix) && map.len() >= Self::MAX_PREFIXES {
            return;
        }
        let c = map.entry(prefix.to_vec()).or_default();
        match op {
            DetailOp::Get { hit } => {
                c.get += 1;
                c.hit += u64::from(hit);
            }
            DetailOp::Set => c.set += 1,
            DetailOp::Delete => c.del += 1,
        }
    }

    pub fn dump(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let map = self.prefixes.lock();
        let mut keys: Vec<_> = map.keys().collect();
        keys.sort();
        for k in keys {
            let c = map[k];
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(k);
            let _ = write!(
                out,
                " get {} hit {} set {} del {}\r\n",
                c.get, c.hit, c.set, c.del
            );
        }
        out.extend_from_slice(b"END\r\n");
    }

    pub fn reset(&self) {
        self.prefixes.lock().clear();
    }
}

/// Keeps `conns` right whatever way a connection ends.
pub struct ConnGuard(pub Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Relaxed);
    }
}

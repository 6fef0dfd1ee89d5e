//! The replication runtime of one node: links to peers over TCP, driven by tokio.
//!
//! Every link carries one direction of data. A node *subscribes* to each peer by dialing it;
//! the peer authenticates the subscriber, then streams its own writes (resuming from the
//! backlog when it can, with a full sync first when it cannot). With every node subscribed
//! to every other, each write travels once from its origin to each peer, there are no
//! forwarding loops, and "both nodes start at the same moment" needs no tie-break.
//!
//! Convergence does not depend on the order things arrive in: the receiver applies a write
//! only if its version is higher than what it holds (last writer wins, `memha-store`), and
//! deletes leave versioned tombstones. A full sync and the live stream may therefore overlap.
//!
//! # Holding
//!
//! Last writer wins makes the copies converge, but it cannot stop a client from reading a
//! node that has not caught up yet. The dangerous moment is a healed partition: the node
//! that served clients while cut off has writes its peer lacks. This node watches for that
//! ([`Replicator::holding`]): a peer that has not acknowledged a write [`HOLD_LAG`] after it
//! was made is *lagging*, and once this node takes further writes while a peer lags, it
//! *holds* — until every peer has acknowledged everything older than [`HOLD_LAG`]. Writes
//! already in flight when a link broke do not count, so the node that was merely cut off
//! does not hold for the few writes that reached it at that instant. The VRRP speaker turns
//! holding into a raised priority, so the holder keeps the virtual address when the
//! partition heals.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memha_store::{ApplyResult, CounterOp, Store};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::backlog::{Backlog, Read};
use crate::clients::{
    decode_entries, encode_entries, ClientConn, ClientGuard, LocalClients, PeerClients,
};
use crate::frame::{decode, encode, Decoded, Frame, Op};
use crate::handshake::{Dialer, Identity, Listener};

/// How long a handshake step may take before the link is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take (SYNs to a partitioned peer are not answered;
/// a fresh attempt after the heal beats waiting for the kernel's SYN retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A subscriber acknowledges at least this often (writes), and whenever its input drains.
const ACK_EVERY: u64 = 64;
/// Heartbeat interval; a link silent for four of them is considered dead.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// A write a peer has not acknowledged this long after it was made means the peer lags
/// (see "Holding" above).
pub const HOLD_LAG: Duration = Duration::from_millis(100);
/// How often holding is re-evaluated, and how long every peer must be caught up before a
/// hold ends (so a loaded link does not flap it).
const HOLD_TICK: Duration = Duration::from_millis(20);
const HOLD_RELEASE: Duration = Duration::from_millis(200);
/// Hash-table buckets copied per lock hold during a full sync.
const SYNC_PIECE: usize = 1024;
/// Most replication links (subscribers and handshakes in progress) served at once.
const MAX_LINKS: usize = 64;
/// Bytes written to a link per send.
const CHUNK: usize = 256 * 1024;

/// Replication settings of a node.
#[derive(Clone, Debug)]
pub struct ReplConfig {
    pub node_id: u16,
    pub cluster: Vec<u8>,
    pub secret: Option<Vec<u8>>,
    /// Peers to subscribe to, `host:port`.
    pub peers: Vec<String>,
    /// Backlog budget in bytes.
    pub backlog_bytes: usize,
    /// With peers but none reachable, become ready after this long anyway.
    pub ready_grace: Duration,
    /// Sync acknowledgement: a client's write is answered only once a peer has applied it,
    /// or after this long (then it is answered anyway and the timeout counted). `None` =
    /// async: answered after the local write.
    pub sync_ack: Option<Duration>,
}

/// How a wait for a peer's acknowledgement ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckWait {
    /// A peer applied every write up to the sequence asked for.
    Acked,
    /// No peer acknowledged in time: the write was answered anyway (counted).
    TimedOut,
    /// No peer is connected: nothing to wait for (counted).
    NoPeer,
    /// Every peer went silent: an earlier write waited the whole timeout without a single
    /// acknowledgement arriving, and none has arrived since. Answered at once (counted)
    /// until a peer acknowledges again, instead of making every write wait the timeout.
    Degraded,
}

/// Per-peer link state, for `stats replication` and metrics.
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    pub addr: String,
    pub state: &'static str,
    pub node_id: Option<u16>,
    pub last_error: String,
    pub connects: u64,
    pub full_syncs: u64,
    pub last_full_sync_ms: u64,
    pub partial_syncs: u64,
    /// Writes of this peer applied here (seq in its stream) and how many were stale.
    pub applied_seq: u64,
    pub applied: u64,
    pub stale: u64,
    pub rejected: u64,
    pub clock_skew_ms: i64,
    /// Milliseconds since the last frame from the peer.
    pub last_seen_ms: u64,
    epoch: u64,
    synced: bool,
    seen: Option<Instant>,
}

/// A subscriber of this node's stream.
#[derive(Clone, Debug, Default)]
pub struct SubscriberStats {
    pub addr: String,
    pub node_id: u16,
    pub acked_seq: u64,
    pub sent_seq: u64,
}

/// Totals for this node.
#[derive(Clone, Debug, Default)]
pub struct ReplStats {
    pub node_id: u16,
    pub epoch: u64,
    pub ready: bool,
    pub backlog_bytes: u64,
    pub backlog_max_bytes: u64,
    pub backlog_first_seq: u64,
    pub backlog_last_seq: u64,
    pub backlog_dropped: u64,
    pub unsendable: u64,
    pub needs_resync: u64,
    pub auth_failures: u64,
    pub protocol_errors: u64,
    pub full_syncs_served: u64,
    pub partial_syncs_served: u64,
    /// Sync-ack writes answered after a peer's ack / after the timeout / with no peer.
    pub sync_acked: u64,
    pub sync_timeouts: u64,
    pub sync_no_peer: u64,
    /// Sync acknowledgement is suspended because every peer went silent, and the writes
    /// answered at once meanwhile.
    pub sync_degraded: bool,
    pub sync_degraded_writes: u64,
    /// This node holds writes a lagging peer lacks (see the module docs), and how many
    /// times it started holding.
    pub holding: bool,
    pub holds: u64,
    /// Client connections of this node (open at least a second: told to subscribers), and
    /// those the peers told us about.
    pub client_conns: u64,
    pub client_conns_shared: u64,
    pub peer_client_conns: u64,
    pub peers: Vec<PeerStats>,
    pub subscribers: Vec<SubscriberStats>,
}

/// One node's replication: capture of local writes, and the links to its peers.
pub struct Replicator {
    cfg: ReplConfig,
    store: Arc<Store>,
    epoch: u64,
    backlog: Mutex<Backlog>,
    new_writes: Notify,
    peers: Mutex<Vec<PeerStats>>,
    subscribers: Mutex<HashMap<u64, SubscriberStats>>,
    next_sub: AtomicU64,
    ready: AtomicBool,
    ready_notify: Notify,
    needs_resync: AtomicU64,
    auth_failures: AtomicU64,
    protocol_errors: AtomicU64,
    full_syncs_served: AtomicU64,
    partial_syncs_served: AtomicU64,
    /// Highest sequence number any subscriber has acknowledged (applied).
    acked_max: AtomicU64,
    ack_notify: Notify,
    sync_acked: AtomicU64,
    sync_timeouts: AtomicU64,
    sync_no_peer: AtomicU64,
    /// Ack frames received from subscribers (to tell a silent peer from a slow one).
    acks_received: AtomicU64,
    sync_degraded: AtomicBool,
    sync_degraded_writes: AtomicU64,
    /// Latest sequence each peer (by node id) acknowledged, across its connections.
    acked_by_node: Mutex<HashMap<u16, u64>>,
    holding: watch::Sender<bool>,
    holds: AtomicU64,
    /// This node's client connections, told to subscribers (`crate::clients`).
    clients: Arc<LocalClients>,
    /// The client connections peers told us about.
    peer_clients: PeerClients,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_secs() -> u32 {
    (wall_ms() / 1000) as u32
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

impl Replicator {
    pub fn new(cfg: ReplConfig, store: Arc<Store>) -> Arc<Replicator> {
        let peers = cfg
            .peers
            .iter()
            .map(|p| PeerStats {
                addr: p.clone(),
                state: "connecting",
                ..PeerStats::default()
            })
            .collect();
        let ready = cfg.peers.is_empty();
        Arc::new(Replicator {
            epoch: u64::from_be_bytes(random()) | 1,
            backlog: Mutex::new(Backlog::new(cfg.node_id, cfg.backlog_bytes)),
            cfg,
            store,
            new_writes: Notify::new(),
            peers: Mutex::new(peers),
            subscribers: Mutex::new(HashMap::new()),
            next_sub: AtomicU64::new(0),
            ready: AtomicBool::new(ready),
            ready_notify: Notify::new(),
            needs_resync: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            full_syncs_served: AtomicU64::new(0),
            partial_syncs_served: AtomicU64::new(0),
            acked_max: AtomicU64::new(0),
            ack_notify: Notify::new(),
            sync_acked: AtomicU64::new(0),
            sync_timeouts: AtomicU64::new(0),
            sync_no_peer: AtomicU64::new(0),
            acks_received: AtomicU64::new(0),
            sync_degraded: AtomicBool::new(false),
            sync_degraded_writes: AtomicU64::new(0),
            acked_by_node: Mutex::new(HashMap::new()),
            holding: watch::channel(false).0,
            holds: AtomicU64::new(0),
            clients: Arc::new(LocalClients::default()),
            peer_clients: PeerClients::default(),
        })
    }

    fn identity(&self) -> Identity {
        Identity {
            cluster: self.cfg.cluster.clone(),
            node_id: self.cfg.node_id,
            secret: self.cfg.secret.clone(),
        }
    }

    fn push(&self, op: Op<'_>) {
        self.backlog.lock().push(op);
        self.new_writes.notify_waiters();
    }

    /// The sequence number of this node's latest write.
    pub fn last_seq(&self) -> u64 {
        self.backlog.lock().last_seq()
    }

    /// Whether writes wait for a peer's acknowledgement (`ack = "sync"`).
    pub fn sync_ack(&self) -> bool {
        self.cfg.sync_ack.is_some()
    }

    /// Wait until a peer has applied this node's writes up to `seq`, for at most the
    /// configured sync-ack timeout. Never blocks forever: a timeout or the absence of any
    /// connected peer answers the write anyway, and is counted (`stats replication`).
    ///
    /// When a wait times out without a single acknowledgement arriving meanwhile, every
    /// peer has gone silent (cut off, not merely slow): sync acknowledgement is then
    /// suspended — writes are answered at once, counted — until a peer acknowledges again.
    /// Otherwise every write would wait the whole timeout until the dead link is noticed.
    pub async fn wait_acked(&self, seq: u64) -> AckWait {
        let timeout = self.cfg.sync_ack.unwrap_or_default();
        let deadline = tokio::time::Instant::now() + timeout;
        let acks_before = self.acks_received.load(Relaxed);
        loop {
            let notified = self.ack_notify.notified();
            if self.acked_max.load(Relaxed) >= seq {
                self.sync_acked.fetch_add(1, Relaxed);
                return AckWait::Acked;
            }
            if self.subscribers.lock().is_empty() {
                self.sync_no_peer.fetch_add(1, Relaxed);
                return AckWait::NoPeer;
            }
            if self.sync_degraded.load(Relaxed) {
                self.sync_degraded_writes.fetch_add(1, Relaxed);
                return AckWait::Degraded;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.sync_timeouts.fetch_add(1, Relaxed);
                tracing::debug!("replication: no peer acknowledged write {seq} in {timeout:?}");
                if self.acks_received.load(Relaxed) == acks_before
                    && !self.sync_degraded.swap(true, Relaxed)
                {
                    tracing::warn!(
                        "replication: no peer acknowledged anything for {timeout:?}; answering \
                         writes without waiting for a peer until one acknowledges again"
                    );
                }
                return AckWait::TimedOut;
            }
        }
    }

    /// The VRRP speaker took the address over from the master at `ip` because it went
    /// silent. If that node is this node's only subscriber, nobody can acknowledge writes
    /// now: sync acknowledgement is suspended at once (as after a timeout with no
    /// acknowledgement, see [`Replicator::wait_acked`]) instead of making the first writes
    /// after the takeover wait the whole timeout. Writes already waiting are answered too.
    /// A peer's next acknowledgement resumes it.
    pub fn peer_went_silent(&self, ip: IpAddr) {
        if self.cfg.sync_ack.is_none() {
            return;
        }
        let only_that_peer = {
            let subs = self.subscribers.lock();
            !subs.is_empty()
                && subs.values().all(|s| {
                    s.addr
                        .parse::<SocketAddr>()
                        .is_ok_and(|a| a.ip().to_canonical() == ip.to_canonical())
                })
        };
        if only_that_peer && !self.sync_degraded.swap(true, Relaxed) {
            tracing::warn!(
                "replication: the VIP moved here from {ip}, which went silent and is the only \
                 peer acknowledging writes; answering writes without waiting until a peer \
                 acknowledges again"
            );
            self.ack_notify.notify_waiters();
        }
    }

    /// A local write changed `key`: replicate its current state (the whole item, so
    /// append/incr results arrive as they are here).
    pub fn capture_set(&self, key: &[u8]) {
        let now = now_secs();
        if let Some((value, flags, exptime, version)) = self.store.read_for_replication(key, now) {
            self.push(Op::Set {
                key,
                flags,
                exptime,
                version,
                value: &value,
            });
        }
    }

    /// A local `incr`/`decr`: replicate this node's contribution (so concurrent increments
    /// on other nodes add up), or the value when counters are not tracked.
    pub fn capture_arith(&self, key: &[u8]) {
        match self.store.counter_op(key, now_secs()) {
            Some(c) => self.push(Op::Counter {
                key,
                base_version: c.base_version,
                base_value: c.base_value,
                node: c.node,
                p: c.p,
                n: c.n,
                version: c.version,
                flags: c.flags,
                exptime: c.exptime,
            }),
            None => self.capture_set(key),
        }
    }

    /// A local write stored exactly this item (a plain set): replicate it without reading
    /// it back from the store.
    pub fn capture_known(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32, version: u64) {
        self.push(Op::Set {
            key,
            flags,
            exptime,
            version,
            value,
        });
    }

    /// A local delete left a tombstone with `version`.
    pub fn capture_delete(&self, key: &[u8], version: u64) {
        if version != 0 {
            self.push(Op::Delete { key, version });
        }
    }

    /// A local touch/gat changed `key`'s expiry.
    pub fn capture_touch(&self, key: &[u8]) {
        let now = now_secs();
        if let Some((_, _, exptime, version)) = self.store.read_for_replication(key, now) {
            self.push(Op::Touch {
                key,
                exptime,
                version,
            });
        }
    }

    /// A local flush_all set the flush floor `floor` from time `at` (0 = now).
    pub fn capture_flush(&self, floor: u64, at: u32) {
        self.push(Op::Flush { floor, at });
    }

    /// Whether this node holds writes a lagging peer lacks (module docs, "Holding").
    pub fn holding(&self) -> bool {
        *self.holding.borrow()
    }

    /// Records a client connection this node accepted, for its peers, until the guard is
    /// dropped (see `crate::clients`).
    pub fn client_opened(&self, local: SocketAddr, client: SocketAddr) -> Option<ClientGuard> {
        self.clients.opened(local, client)
    }

    /// The client connections peers told us about (a new VIP holder resets them).
    pub fn peer_clients(&self) -> Vec<ClientConn> {
        self.peer_clients.all()
    }

    /// Changes whenever a peer's client list changes.
    pub fn watch_peer_clients(&self) -> watch::Receiver<u64> {
        self.peer_clients.watch()
    }

    /// Follows [`Replicator::holding`].
    pub fn watch_holding(&self) -> watch::Receiver<bool> {
        self.holding.subscribe()
    }

    /// Re-evaluates holding every [`HOLD_TICK`] until `stop` changes.
    async fn watch_lag(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tracker = LagTracker::new(self.cfg.peers.len());
        let mut tick = tokio::time::interval(HOLD_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let last = self.last_seq();
            let acked: Vec<u64> = {
                let ids: Vec<Option<u16>> = self.peers.lock().iter().map(|p| p.node_id).collect();
                let by_node = self.acked_by_node.lock();
                ids.iter()
                    .map(|id| id.and_then(|id| by_node.get(&id).copied()).unwrap_or(0))
                    .collect()
            };
            let hold = tracker.update(Instant::now(), last, &acked);
            if hold != self.holding() {
                if hold {
                    self.holds.fetch_add(1, Relaxed);
                    tracing::info!(
                        "replication: holding: writes made here since a peer stopped \
                         acknowledging; until every peer has them"
                    );
                } else {
                    tracing::info!("replication: every peer has this node's writes; not holding");
                }
                self.holding.send_replace(hold);
            }
        }
    }

    /// True once every peer finished a first sync (or the grace period passed).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Wait until [`Replicator::is_ready`].
    pub async fn wait_ready(&self) {
        loop {
            let notified = self.ready_notify.notified();
            if self.is_ready() {
                return;
            }
            notified.await;
        }
    }

    fn set_ready(&self) {
        if !self.ready.swap(true, Relaxed) {
            tracing::info!("replication: ready");
        }
        self.ready_notify.notify_waiters();
    }

    fn check_ready(&self) {
        if self.peers.lock().iter().all(|p| p.synced) {
            self.set_ready();
        }
    }

    pub fn stats(&self) -> ReplStats {
        let b = self.backlog.lock();
        let now = Instant::now();
        let peers = self
            .peers
            .lock()
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.last_seen_ms = p
                    .seen
                    .map_or(0, |s| now.duration_since(s).as_millis() as u64);
                p
            })
            .collect();
        let mut subscribers: Vec<SubscriberStats> =
            self.subscribers.lock().values().cloned().collect();
        subscribers.sort_by(|a, b| a.addr.cmp(&b.addr));
        ReplStats {
            node_id: self.cfg.node_id,
            epoch: self.epoch,
            ready: self.is_ready(),
            backlog_bytes: b.bytes() as u64,
            backlog_max_bytes: self.cfg.backlog_bytes as u64,
            backlog_first_seq: b.first_seq(),
            backlog_last_seq: b.last_seq(),
            backlog_dropped: b.dropped,
            unsendable: b.unsendable,
            needs_resync: self.needs_resync.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            full_syncs_served: self.full_syncs_served.load(Relaxed),
            partial_syncs_served: self.partial_syncs_served.load(Relaxed),
            sync_acked: self.sync_acked.load(Relaxed),
            sync_timeouts: self.sync_timeouts.load(Relaxed),
            sync_no_peer: self.sync_no_peer.load(Relaxed),
            sync_degraded: self.sync_degraded.load(Relaxed),
            sync_degraded_writes: self.sync_degraded_writes.load(Relaxed),
            holding: self.holding(),
            holds: self.holds.load(Relaxed),
            client_conns: self.clients.len() as u64,
            client_conns_shared: self.clients.shareable(Instant::now()).len() as u64,
            peer_client_conns: self.peer_clients.count() as u64,
            peers,
            subscribers,
        }
    }

    /// Serve subscribers on `listener` and subscribe to every peer, until `stop` changes.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        for i in 0..self.cfg.peers.len() {
            tokio::spawn(self.clone().subscribe(i, stop.clone()));
        }
        if !self.cfg.peers.is_empty() {
            tokio::spawn(self.clone().watch_lag(stop.clone()));
        }
        if !self.cfg.peers.is_empty() {
            // Ready once every peer synced; after the grace period, once every peer that
            // could be reached synced (a dead peer must not keep a node out forever).
            let me = self.clone();
            let grace = self.cfg.ready_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                while !me.is_ready() {
                    let (reached, synced, down) = {
                        let peers = me.peers.lock();
                        let reached = peers.iter().filter(|p| p.connects > 0).count();
                        let synced = peers.iter().filter(|p| p.synced).count();
                        (reached, synced, peers.len() - reached)
                    };
                    if synced == reached {
                        tracing::warn!(
                            "replication: {down} peer(s) unreachable after {grace:?}; ready with \
                             {synced} synced"
                        );
                        me.set_ready();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        // Bound the links a flood of connections can open (each waits up to the handshake
        // timeout before it is dropped).
        let links = Arc::new(tokio::sync::Semaphore::new(MAX_LINKS));
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Ok(permit) = links.clone().try_acquire_owned() else {
                            self.protocol_errors.fetch_add(1, Relaxed);
                            tracing::warn!("replication: refused {addr}: {MAX_LINKS} links open");
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let me = self.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            me.serve_subscriber(stream, addr, stop).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("replication accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Serving this node's stream to a subscriber.

    async fn serve_subscriber(
        self: Arc<Self>,
        mut stream: TcpStream,
        addr: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut inbuf = Vec::new();
        let id = self.identity();
        let hello = match read_frame_owned(&mut stream, &mut inbuf).await {
            Ok(f) => f,
            Err(e) => {
                self.protocol_errors.fetch_add(1, Relaxed);
                tracing::debug!("replication: {addr}: no hello: {e}");
                return;
            }
        };
        let (state, challenge) =
            match Listener::on_hello(id, &hello.frame(), random(), wall_ms(), self.epoch) {
                Ok(x) => x,
                Err(e) => {
                    self.auth_failures.fetch_add(1, Relaxed);
                    tracing::warn!("replication: refused {addr}: {e}");
                    return;
                }
            };
        if send(&mut stream, &challenge).await.is_err() {
            return;
        }
        let auth = match read_frame_owned(&mut stream, &mut inbuf).await {
            Ok(f) => f,
            Err(_) => return,
        };
        let (peer, (epoch, seq)) = match state.on_auth(&auth.frame()) {
            Ok(x) => x,
            Err(e) => {
                self.auth_failures.fetch_add(1, Relaxed);
                tracing::warn!("replication: refused {addr}: {e}");
                // Don't let a guesser retry at full speed.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
        };
        tracing::info!("replication: node {} ({addr}) subscribed", peer.node_id);
        let sub = self.next_sub.fetch_add(1, Relaxed);
        self.subscribers.lock().insert(
            sub,
            SubscriberStats {
                addr: addr.to_string(),
                node_id: peer.node_id,
                ..SubscriberStats::default()
            },
        );
        let r = self
            .stream_to(&mut stream, &mut inbuf, sub, epoch, seq, &mut stop)
            .await;
        self.subscribers.lock().remove(&sub);
        if let Err(e) = r {
            tracing::info!("replication: node {} ({addr}) left: {e}", peer.node_id);
        }
    }

    async fn stream_to(
        &self,
        stream: &mut TcpStream,
        inbuf: &mut Vec<u8>,
        sub: u64,
        epoch: u64,
        seq: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let resumable = epoch == self.epoch && self.backlog.lock().can_resume(seq);
        let mut cursor = if resumable {
            self.partial_syncs_served.fetch_add(1, Relaxed);
            seq + 1
        } else {
            self.full_sync_to(stream).await? + 1
        };
        let (mut rd, mut wr) = stream.split();
        let mut out = Vec::with_capacity(CHUNK);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut read_buf = [0u8; 4096];
        let mut told_clients: Vec<ClientConn> = Vec::new();
        let mut entries = Vec::new();
        loop {
            let notified = self.new_writes.notified();
            out.clear();
            match self.backlog.lock().read_from(cursor, CHUNK, &mut out) {
                Read::Copied { next } => cursor = next,
                Read::UpToDate => {}
                Read::Gone => {
                    self.needs_resync.fetch_add(1, Relaxed);
                    return Err("fell behind the backlog; it will resync".into());
                }
            }
            let sent = !out.is_empty();
            if sent {
                write_within(&mut wr, &out).await?;
                if let Some(s) = self.subscribers.lock().get_mut(&sub) {
                    s.sent_seq = cursor - 1;
                }
            }
            // After a send, look at acks (sync-ack writers wait on them) before sending more.
            tokio::select! {
                _ = notified => {
                    // Let the other connections' ready batches land first: tokio runs a task
                    // woken by the running one next, so without this the stream would go out
                    // one client batch (and one send, one wake-up of the peer) at a time.
                    tokio::task::yield_now().await;
                }
                _ = std::future::ready(()), if sent => {}
                _ = heartbeat.tick() => {
                    out.clear();
                    let _ = encode(&Frame::Heartbeat { wall_ms: wall_ms() }, &mut out);
                    let clients = self.clients.shareable(Instant::now());
                    if clients != told_clients {
                        entries.clear();
                        encode_entries(&clients, &mut entries);
                        let _ = encode(&Frame::Clients { entries: &entries }, &mut out);
                        told_clients = clients;
                    }
                    write_within(&mut wr, &out).await?;
                }
                n = rd.read(&mut read_buf) => {
                    let n = n.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("closed by the subscriber".into());
                    }
                    inbuf.extend_from_slice(&read_buf[..n]);
                    while let Decoded::Frame { frame, consumed } = decode(inbuf) {
                        if let Frame::Ack { seq, .. } = frame {
                            self.acks_received.fetch_add(1, Relaxed);
                            if self.sync_degraded.swap(false, Relaxed) {
                                tracing::info!(
                                    "replication: a peer acknowledges again; writes wait for \
                                     it again (--repl-ack sync)"
                                );
                            }
                            if let Some(s) = self.subscribers.lock().get_mut(&sub) {
                                s.acked_seq = s.acked_seq.max(seq);
                                self.acked_max.fetch_max(seq, Relaxed);
                                self.ack_notify.notify_waiters();
                                let mut by_node = self.acked_by_node.lock();
                                let a = by_node.entry(s.node_id).or_default();
                                *a = (*a).max(seq);
                            }
                        }
                        inbuf.drain(..consumed);
                    }
                    if let Decoded::Invalid(why) = decode(inbuf) {
                        self.protocol_errors.fetch_add(1, Relaxed);
                        return Err(why.into());
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// Send every live item, shard by shard, between `SyncBegin` and `SyncEnd`. Returns the
    /// backlog position the live stream continues from.
    async fn full_sync_to(&self, stream: &mut TcpStream) -> Result<u64, String> {
        let started = Instant::now();
        let seq = self.backlog.lock().last_seq();
        let mut out = Vec::with_capacity(CHUNK);
        encode(
            &Frame::SyncBegin {
                epoch: self.epoch,
                seq,
            },
            &mut out,
        )
        .expect("fixed-size frame");
        let now = now_secs();
        let origin = self.cfg.node_id;
        // The flush state first: a flush_all the peer missed must hide its old items too.
        let (floor, pending) = self.store.flush_state();
        if floor != 0 {
            let op = Op::Flush { floor, at: 0 };
            let _ = encode(&Frame::Write { origin, seq: 0, op }, &mut out);
        }
        if let Some((floor, at)) = pending {
            let op = Op::Flush { floor, at };
            let _ = encode(&Frame::Write { origin, seq: 0, op }, &mut out);
        }
        for shard in 0..self.store.shard_count() {
            // A piece of the shard at a time, yielding in between, so the clients this
            // worker also serves are not held up for a whole shard.
            let mut from = 0;
            let mut size = None;
            loop {
                let (next, buckets) =
                    self.store
                        .snapshot_shard_part(shard, from, SYNC_PIECE, now, |it, counter| {
                            // A counter goes as its base and per-node contributions, which
                            // merge with what the peer has; its total as a plain value
                            // would replace them and lose increments.
                            if let Some(c) = counter.filter(|c| !c.contrib.is_empty()) {
                                for &(node, p, n) in c.contrib {
                                    let op = Op::Counter {
                                        key: it.key,
                                        base_version: c.base_version,
                                        base_value: c.base_value,
                                        node,
                                        p,
                                        n,
                                        version: it.cas,
                                        flags: it.flags,
                                        exptime: it.exptime,
                                    };
                                    let _ = encode(&Frame::Write { origin, seq: 0, op }, &mut out);
                                }
                                return;
                            }
                            let op = Op::Set {
                                key: it.key,
                                flags: it.flags,
                                exptime: it.exptime,
                                version: it.cas,
                                value: it.value,
                            };
                            let _ = encode(&Frame::Write { origin, seq: 0, op }, &mut out);
                        });
                if size.is_some_and(|s| s != buckets) {
                    // Resized under us: items may have moved; go over the shard again.
                    from = 0;
                    size = Some(buckets);
                    continue;
                }
                size = Some(buckets);
                if out.len() >= CHUNK {
                    write_within(stream, &out).await?;
                    out.clear();
                }
                match next {
                    Some(n) => from = n,
                    None => break,
                }
                tokio::task::yield_now().await;
            }
            // Deletes the peer may have missed must win over the old copies it still holds.
            self.store.snapshot_tombstones(shard, now, |key, version| {
                let op = Op::Delete { key, version };
                let _ = encode(&Frame::Write { origin, seq: 0, op }, &mut out);
            });
            if out.len() >= CHUNK {
                write_within(stream, &out).await?;
                out.clear();
            }
        }
        encode(&Frame::SyncEnd, &mut out).expect("fixed-size frame");
        write_within(stream, &out).await?;
        self.full_syncs_served.fetch_add(1, Relaxed);
        tracing::info!(
            "replication: full sync sent in {} ms",
            started.elapsed().as_millis()
        );
        Ok(seq)
    }

    // ------------------------------------------------------------------------------------
    // Subscribing to a peer's stream.

    async fn subscribe(self: Arc<Self>, peer: usize, mut stop: watch::Receiver<bool>) {
        let addr = self.cfg.peers[peer].clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = tokio::select! {
                r = self.subscribe_once(peer, &addr) => r,
                _ = stop.changed() => return,
            };
            let error = match result {
                Ok(()) => "closed".to_string(),
                Err(e) => e,
            };
            {
                let mut peers = self.peers.lock();
                let p = &mut peers[peer];
                if p.state == "streaming" || p.state == "syncing" {
                    backoff = BACKOFF_MIN;
                }
                p.state = "connecting";
                p.last_error = error.clone();
            }
            tracing::debug!("replication: link to {addr}: {error}; retrying in {backoff:?}");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn subscribe_once(&self, peer: usize, addr: &str) -> Result<(), String> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let dialer = Dialer::start(self.identity(), random(), wall_ms());
        send(&mut stream, &dialer.hello()).await?;
        let mut inbuf = Vec::new();
        let challenge = read_frame_owned(&mut stream, &mut inbuf).await?;
        let (known_epoch, known_seq, synced) = {
            let p = &self.peers.lock()[peer];
            (p.epoch, p.applied_seq, p.synced)
        };
        let (info, auth) = dialer
            .on_challenge(&challenge.frame(), |epoch| {
                (synced && epoch == known_epoch && epoch != 0).then_some(known_seq)
            })
            .map_err(|e| {
                self.auth_failures.fetch_add(1, Relaxed);
                tracing::warn!("replication: {addr}: {e}");
                e.to_string()
            })?;
        send(&mut stream, &auth).await?;
        {
            let mut peers = self.peers.lock();
            let p = &mut peers[peer];
            p.node_id = Some(info.node_id);
            p.clock_skew_ms = info.clock_skew_ms;
            p.connects += 1;
            p.state = "streaming";
            p.last_error.clear();
            p.seen = Some(Instant::now());
            if info.epoch != p.epoch {
                p.epoch = info.epoch;
                p.applied_seq = 0;
            }
        }
        tracing::info!(
            "replication: subscribed to node {} at {addr} (clock skew {} ms)",
            info.node_id,
            info.clock_skew_ms
        );
        self.receive(peer, &mut stream, inbuf).await
    }

    /// Apply a peer's stream until the link fails.
    async fn receive(
        &self,
        peer: usize,
        stream: &mut TcpStream,
        mut inbuf: Vec<u8>,
    ) -> Result<(), String> {
        let mut read_buf = vec![0u8; 64 * 1024];
        let mut unacked = 0u64;
        let mut sync_seq: Option<(u64, Instant)> = None;
        let mut acked_seq = 0;
        let mut first = true;
        loop {
            // Apply every complete frame buffered.
            let mut pos = 0;
            loop {
                match decode(&inbuf[pos..]) {
                    Decoded::Frame { frame, consumed } => {
                        pos += consumed;
                        if std::mem::take(&mut first) && !matches!(frame, Frame::SyncBegin { .. }) {
                            // The peer resumed our subscription from its backlog.
                            {
                                let mut peers = self.peers.lock();
                                let p = &mut peers[peer];
                                p.partial_syncs += 1;
                                p.synced = true;
                            }
                            self.check_ready();
                        }
                        match frame {
                            Frame::Write { seq, op, .. } => {
                                let result = self.apply(op);
                                let mut peers = self.peers.lock();
                                let p = &mut peers[peer];
                                match result {
                                    ApplyResult::Applied => p.applied += 1,
                                    ApplyResult::Stale => p.stale += 1,
                                    _ => p.rejected += 1,
                                }
                                if seq != 0 {
                                    p.applied_seq = seq;
                                    unacked += 1;
                                }
                            }
                            Frame::SyncBegin { epoch, seq } => {
                                let mut peers = self.peers.lock();
                                let p = &mut peers[peer];
                                p.state = "syncing";
                                p.epoch = epoch;
                                sync_seq = Some((seq, Instant::now()));
                            }
                            Frame::SyncEnd => {
                                let Some((seq, started)) = sync_seq.take() else {
                                    return Err("SyncEnd without SyncBegin".into());
                                };
                                {
                                    let mut peers = self.peers.lock();
                                    let p = &mut peers[peer];
                                    p.state = "streaming";
                                    p.applied_seq = seq;
                                    p.full_syncs += 1;
                                    p.last_full_sync_ms = started.elapsed().as_millis() as u64;
                                    p.synced = true;
                                }
                                self.check_ready();
                                unacked += 1;
                            }
                            Frame::Heartbeat { .. } => {}
                            Frame::Clients { entries } => {
                                let node = self.peers.lock()[peer].node_id;
                                if let Some(node) = node {
                                    self.peer_clients
                                        .replace(node, decode_entries(entries).collect());
                                }
                            }
                            _ => {
                                self.protocol_errors.fetch_add(1, Relaxed);
                                return Err("unexpected frame in a stream".into());
                            }
                        }
                    }
                    Decoded::Incomplete { .. } => break,
                    Decoded::Invalid(why) => {
                        self.protocol_errors.fetch_add(1, Relaxed);
                        return Err(format!("peer sent a bad frame: {why}"));
                    }
                }
            }
            inbuf.drain(..pos);
            self.peers.lock()[peer].seen = Some(Instant::now());
            let applied = self.peers.lock()[peer].applied_seq;
            if unacked > 0 && (unacked >= ACK_EVERY || inbuf.is_empty()) && applied != acked_seq {
                send(
                    stream,
                    &Frame::Ack {
                        origin: self.cfg.node_id,
                        seq: applied,
                    },
                )
                .await?;
                acked_seq = applied;
                unacked = 0;
            }
            let n = tokio::time::timeout(HEARTBEAT * 4, stream.read(&mut read_buf))
                .await
                .map_err(|_| format!("peer silent for {:?}", HEARTBEAT * 4))?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed by the peer".into());
            }
            inbuf.extend_from_slice(&read_buf[..n]);
        }
    }

    fn apply(&self, op: Op<'_>) -> ApplyResult {
        let now = now_secs();
        match op {
            Op::Set {
                key,
                flags,
                exptime,
                version,
                value,
            } => self
                .store
                .apply_set(key, value, flags, exptime, version, now),
            Op::Delete { key, version } => self.store.apply_delete(key, version, now),
            Op::Touch {
                key,
                exptime,
                version,
            } => self.store.apply_touch(key, exptime, version, now),
            Op::Flush { floor, at } => {
                self.store.apply_flush(floor, at);
                ApplyResult::Applied
            }
            Op::Counter {
                key,
                base_version,
                base_value,
                node,
                p,
                n,
                version,
                flags,
                exptime,
            } => {
                let op = CounterOp {
                    base_version,
                    base_value,
                    node,
                    p,
                    n,
                    version,
                    flags,
                    exptime,
                };
                self.store.apply_counter(key, &op, now)
            }
        }
    }
}

/// A frame read into its own buffer (so the caller's buffer can keep receiving).
struct OwnedFrame {
    bytes: Vec<u8>,
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        match decode(&self.bytes) {
            Decoded::Frame { frame, .. } => frame,
            _ => unreachable!("checked when read"),
        }
    }
}

/// Read one frame (with the handshake timeout); bytes after it stay in `buf`.
async fn read_frame_owned(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<OwnedFrame, String> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        match decode(buf) {
            Decoded::Frame { consumed, .. } => {
                let bytes = buf[..consumed].to_vec();
                buf.drain(..consumed);
                return Ok(OwnedFrame { bytes });
            }
            Decoded::Invalid(why) => return Err(format!("bad frame: {why}")),
            Decoded::Incomplete { need } if need > 64 * 1024 => {
                return Err("handshake frame too large".into())
            }
            Decoded::Incomplete { .. } => {}
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn send(stream: &mut TcpStream, frame: &Frame<'_>) -> Result<(), String> {
    let mut out = Vec::new();
    encode(frame, &mut out)?;
    write_within(stream, &out).await
}

/// A peer that stops reading (a black-holed link keeps no RST coming) must not pin a task
/// and its buffers forever: a write that makes no progress for this long ends the link.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn write_within<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    buf: &[u8],
) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(buf)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("peer stopped reading for {WRITE_TIMEOUT:?}")),
    }
}

/// Decides holding from samples of this node's write sequence and its peers' acknowledged
/// positions (module docs, "Holding"). Pure, so the rule is tested without a network.
struct LagTracker {
    /// (when, last sequence then), oldest first; only the newest one older than
    /// [`HOLD_LAG`] is kept beyond the window.
    samples: std::collections::VecDeque<(Instant, u64)>,
    /// Per peer: the sequence this node had reached when the peer was found lagging.
    lagging_since: Vec<Option<u64>>,
    /// Holding, and since when every peer has been caught up (release is debounced).
    hold: bool,
    caught_up_since: Option<Instant>,
}

impl LagTracker {
    fn new(peers: usize) -> LagTracker {
        LagTracker {
            samples: std::collections::VecDeque::new(),
            lagging_since: vec![None; peers],
            hold: false,
            caught_up_since: None,
        }
    }

    /// `last`: this node's latest write; `acked[i]`: what peer `i` acknowledged.
    fn update(&mut self, now: Instant, last: u64, acked: &[u64]) -> bool {
        self.samples.push_back((now, last));
        while self.samples.len() >= 2 && now.duration_since(self.samples[1].0) >= HOLD_LAG {
            self.samples.pop_front();
        }
        let (t0, s0) = self.samples[0];
        // Every write up to `due` is at least HOLD_LAG old.
        let due = if now.duration_since(t0) >= HOLD_LAG {
            s0
        } else {
            0
        };
        let mut wrote_while_lagging = false;
        let mut any_lagging = false;
        for (since, &a) in self.lagging_since.iter_mut().zip(acked) {
            if a < due {
                any_lagging = true;
                let from = *since.get_or_insert(last);
                wrote_while_lagging |= last > from;
            } else {
                *since = None;
            }
        }
        if wrote_while_lagging {
            self.hold = true;
            self.caught_up_since = None;
        } else if self.hold && !any_lagging {
            let since = *self.caught_up_since.get_or_insert(now);
            if now.duration_since(since) >= HOLD_RELEASE {
                self.hold = false;
                self.caught_up_since = None;
            }
        } else {
            self.caught_up_since = None;
        }
        self.hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_node_writing_while_a_peer_lags_holds_until_the_peer_caught_up() {
        let t0 = Instant::now();
        let mut t = LagTracker::new(1);
        let mut seq = 0;
        let at = |ms: u64, seq: u64, acked: u64, t: &mut LagTracker| {
            t.update(t0 + MS * ms as u32, seq, &[acked])
        };
        // Healthy: the peer acknowledges within a few ms.
        for ms in (0..500).step_by(20) {
            seq += 10;
            assert!(!at(ms, seq, seq - 5, &mut t));
        }
        // The link breaks at 500 ms: the peer's acks stop at `seq`.
        let cut = seq;
        let mut held_at = None;
        for ms in (500..1500).step_by(20) {
            seq += 10;
            if at(ms, seq, cut, &mut t) && held_at.is_none() {
                held_at = Some(ms);
            }
        }
        let held_at = held_at.expect("holds while writing with a lagging peer");
        assert!((600..=660).contains(&held_at), "held at {held_at} ms");
        // The peer is back and catches up; the hold ends HOLD_RELEASE later.
        let mut released = None;
        for ms in (1500..2500).step_by(20) {
            seq += 10;
            if !at(ms, seq, seq - 3, &mut t) && released.is_none() {
                released = Some(ms);
            }
        }
        let released = released.expect("released");
        assert!(
            (1700..=1760).contains(&released),
            "released at {released} ms"
        );
    }

    #[test]
    fn a_node_cut_off_without_new_writes_does_not_hold() {
        let t0 = Instant::now();
        let mut t = LagTracker::new(2);
        // Three writes reached this node just before its links broke; nothing after.
        for ms in (0..3000).step_by(20) {
            assert!(
                !t.update(t0 + MS * ms as u32, 103, &[100, 100]),
                "at {ms} ms"
            );
        }
        // A peer that never connected (acked 0) and no writes: no hold either.
        let mut t = LagTracker::new(1);
        for ms in (0..1000).step_by(20) {
            assert!(!t.update(t0 + MS * ms as u32, 0, &[0]));
        }
        // ...but writes with it never there do hold (this node has data it lacks).
        let mut held = false;
        for (i, ms) in (1000..1500).step_by(20).enumerate() {
            held |= t.update(t0 + MS * ms as u32, i as u64 + 1, &[0]);
        }
        assert!(held);
    }

    #[test]
    fn no_peers_never_hold() {
        let t0 = Instant::now();
        let mut t = LagTracker::new(0);
        for ms in (0..1000).step_by(20) {
            assert!(!t.update(t0 + MS * ms as u32, ms as u64, &[]));
        }
    }
}

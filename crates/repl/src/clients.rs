//! Client connections, told to peers so that whoever takes the virtual address over can
//! reset them at once.
//!
//! Why: a client with a connection pool keeps its TCP connections to the virtual address
//! open. When the node holding the address is cut off (partition, link down, power loss),
//! the request in flight on such a connection gets no answer, and the client's TCP resends
//! it no sooner than its minimum retransmission timeout (200 ms on Linux, often more), then
//! learns from the new holder's RST that the connection is gone. The address itself moved
//! well before that. If the new holder knows the connections, it can make every client find
//! out at once: it sends each one a TCP ACK that is out of the connection's window (a
//! *tickle*), the client's kernel answers it with an ACK carrying its real sequence numbers,
//! and the new holder's kernel, which has no such connection, answers that with an RST the
//! client accepts. The pooled client sees the connection reset and reconnects — to the new
//! holder — without waiting for its retransmission timer.
//!
//! So each node keeps the list of its client connections ([`LocalClients`]), sends it to
//! its subscribers (the replication `Clients` frame, at most once per heartbeat and only
//! when it changed), and keeps the lists its peers sent ([`PeerClients`]) for the VRRP
//! speaker. Only connections open for [`SHARE_AFTER`] are told: a connection per request
//! comes and goes faster than any list, and needs no reset anyway. IPv4 only, like the
//! virtual addresses.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

/// Most connections of one node told to peers (the rest wait for their retransmission).
pub const MAX_CLIENTS: usize = 16_384;

/// How long a connection must have been open before peers are told about it.
pub const SHARE_AFTER: Duration = Duration::from_secs(1);

/// Bytes per connection in a `Clients` frame: local address, local port, client address,
/// client port.
pub const ENTRY_LEN: usize = 12;

/// One client connection: the local (server) end and the client's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientConn {
    pub local: SocketAddrV4,
    pub client: SocketAddrV4,
}

impl ClientConn {
    /// The connection as seen by an accepting socket; `None` for what a tickle cannot reach
    /// or need not: IPv6, and loopback clients.
    pub fn from_accepted(local: SocketAddr, client: SocketAddr) -> Option<ClientConn> {
        let local = v4(local)?;
        let client = v4(client)?;
        if client.ip().is_loopback() {
            return None;
        }
        Some(ClientConn { local, client })
    }
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

/// Appends the `Clients` frame payload for `conns` (at most [`MAX_CLIENTS`] are encoded).
pub fn encode_entries(conns: &[ClientConn], out: &mut Vec<u8>) {
    for c in conns.iter().take(MAX_CLIENTS) {
        out.extend_from_slice(&c.local.ip().octets());
        out.extend_from_slice(&c.local.port().to_be_bytes());
        out.extend_from_slice(&c.client.ip().octets());
        out.extend_from_slice(&c.client.port().to_be_bytes());
    }
}

/// The connections of a `Clients` frame payload (its length is checked by the decoder:
/// a multiple of [`ENTRY_LEN`], at most [`MAX_CLIENTS`] entries).
pub fn decode_entries(entries: &[u8]) -> impl Iterator<Item = ClientConn> + '_ {
    entries.chunks_exact(ENTRY_LEN).map(|e| {
        let addr = |b: &[u8]| {
            SocketAddrV4::new(
                Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                u16::from_be_bytes([b[4], b[5]]),
            )
        };
        ClientConn {
            local: addr(&e[..6]),
            client: addr(&e[6..]),
        }
    })
}

/// This node's open client connections.
#[derive(Default)]
pub struct LocalClients {
    inner: Mutex<LocalInner>,
}

#[derive(Default)]
struct LocalInner {
    next_id: u64,
    open: HashMap<u64, (ClientConn, Instant)>,
}

/// Removes its connection from the list when dropped (the connection closed).
pub struct ClientGuard {
    clients: Arc<LocalClients>,
    id: u64,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.inner.lock().open.remove(&self.id);
    }
}

impl LocalClients {
    /// Records an accepted connection until the guard is dropped; `None` if it is not one a
    /// peer could reset ([`ClientConn::from_accepted`]) or the list is full.
    pub fn opened(self: &Arc<Self>, local: SocketAddr, client: SocketAddr) -> Option<ClientGuard> {
        let conn = ClientConn::from_accepted(local, client)?;
        let mut inner = self.inner.lock();
        if inner.open.len() >= MAX_CLIENTS {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.open.insert(id, (conn, Instant::now()));
        Some(ClientGuard {
            clients: self.clone(),
            id,
        })
    }

    /// The connections open for at least [`SHARE_AFTER`] at `now`, sorted.
    pub fn shareable(&self, now: Instant) -> Vec<ClientConn> {
        let mut conns: Vec<ClientConn> = self
            .inner
            .lock()
            .open
            .values()
            .filter(|(_, since)| now.saturating_duration_since(*since) >= SHARE_AFTER)
            .map(|(c, _)| *c)
            .collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    pub fn len(&self) -> usize {
        self.inner.lock().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The client connections each peer last told us about, by node id. A peer's list is kept
/// when its link fails: that is exactly when it is needed.
pub struct PeerClients {
    by_node: Mutex<HashMap<u16, Vec<ClientConn>>>,
    /// Bumped whenever a list changes.
    generation: watch::Sender<u64>,
}

impl Default for PeerClients {
    fn default() -> Self {
        PeerClients {
            by_node: Mutex::new(HashMap::new()),
            generation: watch::channel(0).0,
        }
    }
}

impl PeerClients {
    /// Replaces `node`'s list.
    pub fn replace(&self, node: u16, conns: Vec<ClientConn>) {
        let mut by_node = self.by_node.lock();
        if by_node.get(&node) == Some(&conns) {
            return;
        }
        by_node.insert(node, conns);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Every peer's connections, sorted, without repeats.
    pub fn all(&self) -> Vec<ClientConn> {
        let mut all: Vec<ClientConn> = self.by_node.lock().values().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn count(&self) -> usize {
        self.by_node.lock().values().map(Vec::len).sum()
    }

    /// Changes whenever a peer's list changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_round_trip() {
        let conns = vec![
            ClientConn {
                local: "10.0.0.1:11211".parse().unwrap(),
                client: "10.0.0.9:40000".parse().unwrap(),
            },
            ClientConn {
                local: "10.0.0.1:11211".parse().unwrap(),
                client: "10.0.0.10:65535".parse().unwrap(),
            },
        ];
        let mut out = Vec::new();
        encode_entries(&conns, &mut out);
        assert_eq!(out.len(), 2 * ENTRY_LEN);
        assert_eq!(decode_entries(&out).collect::<Vec<_>>(), conns);
    }

    #[test]
    fn loopback_and_ipv6_clients_are_not_recorded_but_mapped_ipv4_is() {
        let clients = Arc::new(LocalClients::default());
        assert!(clients
            .opened(sa("127.0.0.1:1"), sa("127.0.0.1:2"))
            .is_none());
        assert!(clients
            .opened(sa("[fd00::1]:1"), sa("[fd00::2]:2"))
            .is_none());
        let g = clients
            .opened(sa("[::ffff:10.0.0.1]:11211"), sa("[::ffff:10.0.0.9]:5000"))
            .unwrap();
        assert_eq!(clients.len(), 1);
        drop(g);
        assert!(clients.is_empty());
    }

    #[test]
    fn only_connections_older_than_share_after_are_shared() {
        let clients = Arc::new(LocalClients::default());
        let _g = clients.opened(sa("10.0.0.1:11211"), sa("10.0.0.9:5000"));
        let now = Instant::now();
        assert!(clients.shareable(now).is_empty());
        let later = clients.shareable(now + SHARE_AFTER + Duration::from_millis(1));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].client, "10.0.0.9:5000".parse().unwrap());
    }

    #[test]
    fn a_peer_list_is_replaced_and_changes_are_signalled_once() {
        let peers = PeerClients::default();
        let w = peers.watch();
        let c = ClientConn {
            local: "10.0.0.1:11211".parse().unwrap(),
            client: "10.0.0.9:5000".parse().unwrap(),
        };
        peers.replace(2, vec![c]);
        peers.replace(2, vec![c]);
        assert_eq!(*w.borrow(), 1);
        peers.replace(3, vec![c]);
        assert_eq!(peers.all(), vec![c]);
        assert_eq!(peers.count(), 2);
        peers.replace(2, vec![]);
        assert_eq!(peers.all(), vec![c]);
        assert_eq!(*w.borrow(), 3);
    }
}

//! Authenticating a replication link: mutual challenge–response over a shared secret.
//!
//! repcached let anyone who connected to its port receive the whole cache. Here neither side
//! sends or accepts data before both have proved they know the cluster's secret:
//!
//! ```text
//! dialer   → Hello     { version, cluster, node_id, nonce_d, wall_ms }
//! listener → Challenge { version, node_id, nonce_l, wall_ms, epoch, mac_l = HMAC(secret, "L"|transcript) }
//! dialer   → Auth      { mac_d = HMAC(secret, "D"|transcript), epoch, seq }
//! ```
//!
//! The transcript binds both nonces, both node ids, the cluster name and the version, so a
//! MAC cannot be replayed on another link or reflected back to its sender. Both sides pick
//! fresh random nonces; MACs are compared in constant time. The state machines here do no
//! I/O: the caller feeds decoded frames and sends the frames they return.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::Frame;

/// Version of the replication protocol spoken by this build. 2 added the `Clients` frame.
pub const PROTOCOL_VERSION: u16 = 2;

type HmacSha256 = Hmac<Sha256>;

/// Who this node is, for every link it makes.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cluster: Vec<u8>,
    pub node_id: u16,
    /// The shared secret; `None` means "loopback only" (the caller enforces that) and the
    /// MACs are keyed with an empty key, which still keeps clusters apart by name.
    pub secret: Option<Vec<u8>>,
}

/// What a finished handshake learned about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node_id: u16,
    /// Peer wall clock minus ours, in ms, from the handshake timestamps (not corrected for
    /// the round trip; the link refines it with heartbeats).
    pub clock_skew_ms: i64,
    /// The listener's stream epoch (0 when seen from the listener).
    pub epoch: u64,
}

/// Why a handshake failed. Every variant closes the link and is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The peer speaks another protocol version.
    Version { ours: u16, theirs: u16 },
    /// The peer belongs to another cluster (its name is in the message).
    Cluster(String),
    /// Both ends have the same node id: versions would collide.
    SameNodeId(u16),
    /// The peer does not know the secret.
    BadMac,
    /// A frame that has no place at this step.
    Unexpected(&'static str),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Version { ours, theirs } => write!(
                f,
                "peer speaks replication protocol {theirs}, this node {ours}: upgrade one side"
            ),
            HandshakeError::Cluster(c) => write!(
                f,
                "peer belongs to cluster {c:?}: check the cluster name on both nodes"
            ),
            HandshakeError::SameNodeId(id) => write!(
                f,
                "peer has the same node id {id}: give every node a distinct node_id"
            ),
            HandshakeError::BadMac => write!(
                f,
                "peer failed authentication: the replication secrets differ"
            ),
            HandshakeError::Unexpected(what) => write!(f, "unexpected {what} during handshake"),
        }
    }
}

impl std::error::Error for HandshakeError {}

fn mac(
    id: &Identity,
    role: u8,
    dialer: (u16, &[u8; 16]),
    listener: (u16, &[u8; 16]),
) -> HmacSha256 {
    let key = id.secret.as_deref().unwrap_or(&[]);
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(&[role]);
    m.update(&PROTOCOL_VERSION.to_be_bytes());
    m.update(&(id.cluster.len() as u32).to_be_bytes());
    m.update(&id.cluster);
    m.update(&dialer.0.to_be_bytes());
    m.update(dialer.1);
    m.update(&listener.0.to_be_bytes());
    m.update(listener.1);
    m
}

/// The dialing side of a handshake.
#[derive(Debug)]
pub struct Dialer {
    id: Identity,
    nonce: [u8; 16],
    wall_ms: u64,
}

impl Dialer {
    /// Start a handshake: returns the state and the `Hello` to send.
    pub fn start(id: Identity, nonce: [u8; 16], wall_ms: u64) -> Dialer {
        Dialer { id, nonce, wall_ms }
    }

    /// The first frame to send.
    pub fn hello(&self) -> Frame<'_> {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            cluster: &self.id.cluster,
            node_id: self.id.node_id,
            nonce: self.nonce,
            wall_ms: self.wall_ms,
        }
    }

    /// Check the listener's `Challenge`; on success returns the peer and the `Auth` frame to
    /// send. `resume(epoch)` says how far this node has applied the listener's stream of
    /// that epoch (`None` = it holds nothing of it).
    pub fn on_challenge(
        &self,
        frame: &Frame<'_>,
        resume: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(Peer, Frame<'static>), HandshakeError> {
        let Frame::Challenge {
            version,
            node_id,
            nonce,
            wall_ms,
            epoch,
            mac: their_mac,
        } = frame
        else {
            return Err(HandshakeError::Unexpected("frame instead of Challenge"));
        };
        if *version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: *version,
            });
        }
        if *node_id == self.id.node_id {
            return Err(HandshakeError::SameNodeId(*node_id));
        }
        let dialer = (self.id.node_id, &self.nonce);
        let listener = (*node_id, nonce);
        mac(&self.id, b'L', dialer, listener)
            .verify_slice(their_mac)
            .map_err(|_| HandshakeError::BadMac)?;
        let ours: [u8; 32] = mac(&self.id, b'D', dialer, listener)
            .finalize()
            .into_bytes()
            .into();
        let peer = Peer {
            node_id: *node_id,
            clock_skew_ms: *wall_ms as i64 - self.wall_ms as i64,
            epoch: *epoch,
        };
        // `None`: nothing of that stream is held here; `Some(seq)`, even 0: a complete copy
        // up to `seq` (a full sync that ended at seq 0 still needs no second one).
        let (epoch, seq) = match resume(*epoch) {
            Some(seq) => (*epoch, seq),
            None => (0, 0),
        };
        Ok((
            peer,
            Frame::Auth {
                mac: ours,
                epoch,
                seq,
            },
        ))
    }
}

/// The listening side of a handshake, after it received a valid-looking `Hello`.
#[derive(Debug)]
pub struct Listener {
    id: Identity,
    nonce: [u8; 16],
    dialer_id: u16,
    dialer_nonce: [u8; 16],
    skew_ms: i64,
}

impl Listener {
    /// Check a `Hello`; on success returns the state and the `Challenge` to send.
    pub fn on_hello(
        id: Identity,
        frame: &Frame<'_>,
        nonce: [u8; 16],
        wall_ms: u64,
        epoch: u64,
    ) -> Result<(Listener, Frame<'static>), HandshakeError> {
        let Frame::Hello {
            version,
            cluster,
            node_id,
            nonce: dialer_nonce,
            wall_ms: their_ms,
        } = frame
        else {
            return Err(HandshakeError::Unexpected("frame instead of Hello"));
        };
        if *version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: *version,
            });
        }
        if *cluster != id.cluster.as_slice() {
            return Err(HandshakeError::Cluster(
                String::from_utf8_lossy(cluster).into_owned(),
            ));
        }
        if *node_id == id.node_id {
            return Err(HandshakeError::SameNodeId(*node_id));
        }
        let ours: [u8; 32] = mac(&id, b'L', (*node_id, dialer_nonce), (id.node_id, &nonce))
            .finalize()
            .into_bytes()
            .into();
        let challenge = Frame::Challenge {
            version: PROTOCOL_VERSION,
            node_id: id.node_id,
            nonce,
            wall_ms,
            epoch,
            mac: ours,
        };
        let state = Listener {
            id,
            nonce,
            dialer_id: *node_id,
            dialer_nonce: *dialer_nonce,
            skew_ms: *their_ms as i64 - wall_ms as i64,
        };
        Ok((state, challenge))
    }

    /// Check the dialer's `Auth`: on success the link is authenticated; returns the peer and
    /// how far it has applied this node's stream: `(epoch, seq)`, `(0, 0)` = nothing.
    pub fn on_auth(&self, frame: &Frame<'_>) -> Result<(Peer, (u64, u64)), HandshakeError> {
        let Frame::Auth {
            mac: their_mac,
            epoch,
            seq,
        } = frame
        else {
            return Err(HandshakeError::Unexpected("frame instead of Auth"));
        };
        mac(
            &self.id,
            b'D',
            (self.dialer_id, &self.dialer_nonce),
            (self.id.node_id, &self.nonce),
        )
        .verify_slice(their_mac)
        .map_err(|_| HandshakeError::BadMac)?;
        let peer = Peer {
            node_id: self.dialer_id,
            clock_skew_ms: self.skew_ms,
            epoch: 0,
        };
        Ok((peer, (*epoch, *seq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode, Decoded};

    fn id(node: u16, secret: &[u8]) -> Identity {
        Identity {
            cluster: b"memha".to_vec(),
            node_id: node,
            secret: Some(secret.to_vec()),
        }
    }

    /// Send a frame through the codec, as the link would.
    fn wire(f: &Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, &mut out).unwrap();
        out
    }

    fn back(bytes: &[u8]) -> Frame<'_> {
        match decode(bytes) {
            Decoded::Frame { frame, .. } => frame,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn both_sides_authenticate() {
        let d = Dialer::start(id(1, b"s3cret"), [1; 16], 1000);
        let hello = wire(&d.hello());
        let (l, challenge) = Listener::on_hello(id(2, b"s3cret"), &back(&hello), [2; 16], 1250, 99)
            .expect("hello accepted");
        let challenge = wire(&challenge);
        let (peer, auth) = d
            .on_challenge(&back(&challenge), |epoch| (epoch == 99).then_some(41))
            .expect("challenge verified");
        assert_eq!(
            peer,
            Peer {
                node_id: 2,
                clock_skew_ms: 250,
                epoch: 99
            }
        );
        let auth = wire(&auth);
        let (peer, resume) = l.on_auth(&back(&auth)).expect("auth verified");
        assert_eq!(
            peer,
            Peer {
                node_id: 1,
                clock_skew_ms: -250,
                epoch: 0
            }
        );
        assert_eq!(resume, (99, 41));
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides() {
        // The listener has the wrong secret: the dialer refuses its challenge.
        let d = Dialer::start(id(1, b"right"), [1; 16], 0);
        let (_, challenge) =
            Listener::on_hello(id(2, b"wrong"), &d.hello(), [2; 16], 0, 1).unwrap();
        assert_eq!(
            d.on_challenge(&challenge, |_| None).unwrap_err(),
            HandshakeError::BadMac
        );
        // The dialer has the wrong secret: the listener refuses its auth.
        let d = Dialer::start(id(1, b"wrong"), [1; 16], 0);
        let (l, _) = Listener::on_hello(id(2, b"right"), &d.hello(), [2; 16], 0, 1).unwrap();
        let forged = Frame::Auth {
            mac: [0; 32],
            epoch: 0,
            seq: 0,
        };
        assert_eq!(l.on_auth(&forged).unwrap_err(), HandshakeError::BadMac);
    }

    #[test]
    fn a_mac_cannot_be_reflected_or_replayed() {
        let d = Dialer::start(id(1, b"k"), [1; 16], 0);
        let (l, challenge) = Listener::on_hello(id(2, b"k"), &d.hello(), [2; 16], 0, 1).unwrap();
        // Reflect the listener's own MAC back as the dialer's proof.
        let Frame::Challenge { mac, .. } = challenge else {
            unreachable!()
        };
        let reflected = Frame::Auth {
            mac,
            epoch: 0,
            seq: 0,
        };
        assert_eq!(l.on_auth(&reflected).unwrap_err(), HandshakeError::BadMac);
        // A valid auth from one link does not open another (different listener nonce).
        let (_, auth) = d
            .on_challenge(
                &Listener::on_hello(id(2, b"k"), &d.hello(), [2; 16], 0, 1)
                    .unwrap()
                    .1,
                |_| None,
            )
            .unwrap();
        let (other, _) = Listener::on_hello(id(2, b"k"), &d.hello(), [7; 16], 0, 1).unwrap();
        assert_eq!(other.on_auth(&auth).unwrap_err(), HandshakeError::BadMac);
    }

    #[test]
    fn mismatches_are_named() {
        let d = Dialer::start(id(1, b"k"), [1; 16], 0);
        let mut other = id(2, b"k");
        other.cluster = b"prod".to_vec();
        assert_eq!(
            Listener::on_hello(other, &d.hello(), [2; 16], 0, 1).unwrap_err(),
            HandshakeError::Cluster("memha".into())
        );
        assert_eq!(
            Listener::on_hello(id(1, b"k"), &d.hello(), [2; 16], 0, 1).unwrap_err(),
            HandshakeError::SameNodeId(1)
        );
        let hello_v9 = Frame::Hello {
            version: 9,
            cluster: b"memha",
            node_id: 1,
            nonce: [0; 16],
            wall_ms: 0,
        };
        assert!(matches!(
            Listener::on_hello(id(2, b"k"), &hello_v9, [2; 16], 0, 1),
            Err(HandshakeError::Version { theirs: 9, .. })
        ));
        assert!(matches!(
            Listener::on_hello(id(2, b"k"), &Frame::SyncEnd, [2; 16], 0, 1),
            Err(HandshakeError::Unexpected(_))
        ));
        assert!(HandshakeError::BadMac
            .to_string()
            .contains("secrets differ"));
    }
}

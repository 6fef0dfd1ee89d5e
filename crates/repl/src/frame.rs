//! Replication frames: `u32 length | u8 type | payload`, big-endian, every variable-length
//! field prefixed by its length.
//!
//! Decoding never trusts a length: the frame length is checked against [`MAX_FRAME`] before
//! anything is buffered, and every field length against what is left of the frame, so a
//! hostile peer can make the link close but cannot make it allocate or read out of bounds.
//! Decoded frames borrow from the input (no copy of keys or values).

/// Largest frame accepted: room for a 1 GiB item would be wrong for a cache link, so this
/// bounds what a peer can make us buffer. Items larger than this are not replicated (the
/// sender counts them) — memcached's own default item limit is 1 MiB.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Longest key (memcached's limit).
pub const MAX_KEY: usize = 250;

/// Longest cluster name in a `Hello`.
pub const MAX_CLUSTER: usize = 64;

const HEADER: usize = 5;

use crate::clients::{ENTRY_LEN, MAX_CLIENTS};

/// One cache change, as replicated. Expiry times are absolute Unix seconds (0 = never), so
/// they mean the same on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Set {
        key: &'a [u8],
        flags: u32,
        exptime: u32,
        version: u64,
        value: &'a [u8],
    },
    /// A delete leaves a tombstone with this version.
    Delete { key: &'a [u8], version: u64 },
    /// New expiry for the item written with `version`.
    Touch {
        key: &'a [u8],
        exptime: u32,
        version: u64,
    },
    /// Hide every version below `floor` from time `at` (0 = now).
    Flush { floor: u64, at: u32 },
    /// A counter's contributions from `node` since the base write (`base_version`,
    /// `base_value`); the item it produced has `version`, `flags` and `exptime`.
    Counter {
        key: &'a [u8],
        base_version: u64,
        base_value: u64,
        node: u16,
        p: u64,
        n: u64,
        version: u64,
        flags: u32,
        exptime: u32,
    },
}

/// Everything that travels on a replication link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Dialer → listener, first frame.
    Hello {
        version: u16,
        cluster: &'a [u8],
        node_id: u16,
        nonce: [u8; 16],
        wall_ms: u64,
    },
    /// Listener → dialer: proves the listener knows the secret and challenges the dialer.
    /// `epoch` names the listener's current write stream (it changes when the node restarts,
    /// so sequence numbers from an older run are never mistaken for this one's).
    Challenge {
        version: u16,
        node_id: u16,
        nonce: [u8; 16],
        wall_ms: u64,
        epoch: u64,
        mac: [u8; 32],
    },
    /// Dialer → listener: the dialer's proof, and how far it has applied the listener's stream
    /// (`epoch`, `seq`); `(0, 0)` = nothing yet.
    Auth {
        mac: [u8; 32],
        epoch: u64,
        seq: u64,
    },
    /// A write by node `origin`, its `seq`-th.
    Write {
        origin: u16,
        seq: u64,
        op: Op<'a>,
    },
    /// The receiver has applied `origin`'s writes up to `seq`.
    Ack {
        origin: u16,
        seq: u64,
    },
    Heartbeat {
        wall_ms: u64,
    },
    /// Full sync follows (items as `Write`s with `seq` 0); the live stream of `epoch`
    /// continues after it from `seq + 1`.
    SyncBegin {
        epoch: u64,
        seq: u64,
    },
    SyncEnd,
    /// The sender's client connections (`crate::clients`): `entries` holds
    /// [`crate::clients::ENTRY_LEN`] bytes per connection, at most
    /// [`crate::clients::MAX_CLIENTS`] of them. Replaces the previous list.
    Clients {
        entries: &'a [u8],
    },
}

/// Frame type bytes.
mod kind {
    pub const HELLO: u8 = 1;
    pub const CHALLENGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const HEARTBEAT: u8 = 6;
    pub const SYNC_BEGIN: u8 = 7;
    pub const SYNC_END: u8 = 8;
    pub const CLIENTS: u8 = 9;
}

/// Op type bytes.
mod op_kind {
    pub const SET: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const TOUCH: u8 = 3;
    pub const FLUSH: u8 = 4;
    pub const COUNTER: u8 = 5;
}

/// The result of looking at the front of a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Frame {
        frame: Frame<'a>,
        consumed: usize,
    },
    /// `need` bytes in all are required (never more than `MAX_FRAME` + header).
    Incomplete {
        need: usize,
    },
    /// The peer is broken or hostile: close the link and count it.
    Invalid(&'static str),
}

/// Append the encoding of `frame` to `out`. Returns an error for frames that cannot be
/// sent (a key over 250 bytes, a frame over [`MAX_FRAME`]); nothing is appended then.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let kind = match frame {
        Frame::Hello {
            version,
            cluster,
            node_id,
            nonce,
            wall_ms,
        } => {
            if cluster.len() > MAX_CLUSTER {
                out.truncate(start);
                return Err("cluster name longer than 64 bytes");
            }
            out.extend_from_slice(&version.to_be_bytes());
            put_bytes8(out, cluster);
            out.extend_from_slice(&node_id.to_be_bytes());
            out.extend_from_slice(nonce);
            out.extend_from_slice(&wall_ms.to_be_bytes());
            kind::HELLO
        }
        Frame::Challenge {
            version,
            node_id,
            nonce,
            wall_ms,
            epoch,
            mac,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&node_id.to_be_bytes());
            out.extend_from_slice(nonce);
            out.extend_from_slice(&wall_ms.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(mac);
            kind::CHALLENGE
        }
        Frame::Auth { mac, epoch, seq } => {
            out.extend_from_slice(mac);
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            kind::AUTH
        }
        Frame::Write { origin, seq, op } => {
            out.extend_from_slice(&origin.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            if let Err(e) = put_op(out, op) {
                out.truncate(start);
                return Err(e);
            }
            kind::WRITE
        }
        Frame::Ack { origin, seq } => {
            out.extend_from_slice(&origin.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            kind::ACK
        }
        Frame::Heartbeat { wall_ms } => {
            out.extend_from_slice(&wall_ms.to_be_bytes());
            kind::HEARTBEAT
        }
        Frame::SyncBegin { epoch, seq } => {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            kind::SYNC_BEGIN
        }
        Frame::SyncEnd => kind::SYNC_END,
        Frame::Clients { entries } => {
            let n = entries.len() / ENTRY_LEN;
            if entries.len() % ENTRY_LEN != 0 || n > MAX_CLIENTS {
                out.truncate(start);
                return Err("client list of the wrong length");
            }
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.extend_from_slice(entries);
            kind::CLIENTS
        }
    };
    let len = out.len() - start - HEADER;
    if len + 1 > MAX_FRAME {
        out.truncate(start);
        return Err("frame larger than the replication limit");
    }
    out[start..start + 4].copy_from_slice(&((len + 1) as u32).to_be_bytes());
    out[start + 4] = kind;
    Ok(())
}

fn put_bytes8(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err("key length must be 1 to 250 bytes");
    }
    put_bytes8(out, key);
    Ok(())
}

fn put_op(out: &mut Vec<u8>, op: &Op<'_>) -> Result<(), &'static str> {
    match op {
        Op::Set {
            key,
            flags,
            exptime,
            version,
            value,
        } => {
            out.push(op_kind::SET);
            put_key(out, key)?;
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&exptime.to_be_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            put_bytes32(out, value);
        }
        Op::Delete { key, version } => {
            out.push(op_kind::DELETE);
            put_key(out, key)?;
            out.extend_from_slice(&version.to_be_bytes());
        }
        Op::Touch {
            key,
            exptime,
            version,
        } => {
            out.push(op_kind::TOUCH);
            put_key(out, key)?;
            out.extend_from_slice(&exptime.to_be_bytes());
            out.extend_from_slice(&version.to_be_bytes());
        }
        Op::Flush { floor, at } => {
            out.push(op_kind::FLUSH);
            out.extend_from_slice(&floor.to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
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
            out.push(op_kind::COUNTER);
            put_key(out, key)?;
            out.extend_from_slice(&base_version.to_be_bytes());
            out.extend_from_slice(&base_value.to_be_bytes());
            out.extend_from_slice(&node.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&exptime.to_be_bytes());
        }
    }
    Ok(())
}

/// Decode the frame at the front of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < 4 {
        return Decoded::Incomplete { need: 4 };
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Decoded::Invalid("empty frame");
    }
    if len > MAX_FRAME {
        return Decoded::Invalid("frame longer than the replication limit");
    }
    let total = 4 + len;
    if buf.len() < total {
        return Decoded::Incomplete { need: total };
    }
    let kind = buf[4];
    let mut r = Reader {
        buf: &buf[HEADER..total],
    };
    let frame = match parse_frame(kind, &mut r) {
        Some(f) => f,
        None => return Decoded::Invalid("malformed frame"),
    };
    if !r.buf.is_empty() {
        return Decoded::Invalid("trailing bytes in frame");
    }
    Decoded::Frame {
        frame,
        consumed: total,
    }
}

fn parse_frame<'a>(kind: u8, r: &mut Reader<'a>) -> Option<Frame<'a>> {
    Some(match kind {
        kind::HELLO => {
            let version = r.u16()?;
            let cluster = r.bytes8()?;
            if cluster.len() > MAX_CLUSTER {
                return None;
            }
            Frame::Hello {
                version,
                cluster,
                node_id: r.u16()?,
                nonce: r.array()?,
                wall_ms: r.u64()?,
            }
        }
        kind::CHALLENGE => Frame::Challenge {
            version: r.u16()?,
            node_id: r.u16()?,
            nonce: r.array()?,
            wall_ms: r.u64()?,
            epoch: r.u64()?,
            mac: r.array()?,
        },
        kind::AUTH => Frame::Auth {
            mac: r.array()?,
            epoch: r.u64()?,
            seq: r.u64()?,
        },
        kind::WRITE => Frame::Write {
            origin: r.u16()?,
            seq: r.u64()?,
            op: parse_op(r)?,
        },
        kind::ACK => Frame::Ack {
            origin: r.u16()?,
            seq: r.u64()?,
        },
        kind::HEARTBEAT => Frame::Heartbeat { wall_ms: r.u64()? },
        kind::SYNC_BEGIN => Frame::SyncBegin {
            epoch: r.u64()?,
            seq: r.u64()?,
        },
        kind::SYNC_END => Frame::SyncEnd,
        kind::CLIENTS => {
            let n = r.u32()? as usize;
            if n > MAX_CLIENTS {
                return None;
            }
            Frame::Clients {
                entries: r.take(n * ENTRY_LEN)?,
            }
        }
        _ => return None,
    })
}

fn parse_op<'a>(r: &mut Reader<'a>) -> Option<Op<'a>> {
    Some(match r.u8()? {
        op_kind::SET => Op::Set {
            key: r.key()?,
            flags: r.u32()?,
            exptime: r.u32()?,
            version: r.u64()?,
            value: r.bytes32()?,
        },
        op_kind::DELETE => Op::Delete {
            key: r.key()?,
            version: r.u64()?,
        },
        op_kind::TOUCH => Op::Touch {
            key: r.key()?,
            exptime: r.u32()?,
            version: r.u64()?,
        },
        op_kind::FLUSH => Op::Flush {
            floor: r.u64()?,
            at: r.u32()?,
        },
        op_kind::COUNTER => Op::Counter {
            key: r.key()?,
            base_version: r.u64()?,
            base_value: r.u64()?,
            node: r.u16()?,
            p: r.u64()?,
            n: r.u64()?,
            version: r.u64()?,
            flags: r.u32()?,
            exptime: r.u32()?,
        },
        _ => return None,
    })
}

/// A bounds-checked cursor over one frame's payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    fn bytes8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    fn bytes32(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn key(&mut self) -> Option<&'a [u8]> {
        let k = self.bytes8()?;
        (1..=MAX_KEY).contains(&k.len()).then_some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame<'static>> {
        vec![
            Frame::Hello {
                version: 1,
                cluster: b"memha",
                node_id: 7,
                nonce: [3; 16],
                wall_ms: 1_700_000_000_000,
            },
            Frame::Challenge {
                version: 1,
                node_id: 9,
                nonce: [5; 16],
                wall_ms: 42,
                epoch: 77,
                mac: [9; 32],
            },
            Frame::Auth {
                mac: [1; 32],
                epoch: 77,
                seq: 10,
            },
            Frame::Write {
                origin: 1,
                seq: 99,
                op: Op::Set {
                    key: b"k",
                    flags: 5,
                    exptime: 0,
                    version: 1 << 40,
                    value: b"va\r\nlue",
                },
            },
            Frame::Write {
                origin: 2,
                seq: 1,
                op: Op::Delete {
                    key: b"gone",
                    version: 77,
                },
            },
            Frame::Write {
                origin: 2,
                seq: 2,
                op: Op::Touch {
                    key: b"t",
                    exptime: 1_800_000_000,
                    version: 78,
                },
            },
            Frame::Write {
                origin: 2,
                seq: 3,
                op: Op::Flush { floor: 80, at: 0 },
            },
            Frame::Write {
                origin: 3,
                seq: 4,
                op: Op::Counter {
                    key: b"c",
                    base_version: 5,
                    base_value: 40,
                    node: 3,
                    p: 10,
                    n: 2,
                    version: 9,
                    flags: 1,
                    exptime: 0,
                },
            },
            Frame::Ack { origin: 1, seq: 99 },
            Frame::Heartbeat { wall_ms: 5 },
            Frame::SyncBegin { epoch: 4, seq: 4 },
            Frame::SyncEnd,
            Frame::Clients {
                entries: &[10, 0, 0, 1, 0x2b, 0xcb, 10, 0, 0, 9, 0x9c, 0x40],
            },
            Frame::Clients { entries: &[] },
        ]
    }

    #[test]
    fn round_trip_every_frame() {
        for f in samples() {
            let mut out = Vec::new();
            encode(&f, &mut out).unwrap();
            assert_eq!(
                decode(&out),
                Decoded::Frame {
                    frame: f.clone(),
                    consumed: out.len()
                }
            );
            // Every strict prefix is incomplete, never invalid or a different frame.
            for cut in 0..out.len() {
                assert!(
                    matches!(decode(&out[..cut]), Decoded::Incomplete { need } if need > cut),
                    "{f:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn exact_bytes_of_an_ack() {
        let mut out = Vec::new();
        encode(&Frame::Ack { origin: 1, seq: 2 }, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 11, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn hostile_lengths_are_refused_without_buffering() {
        let mut big = vec![0xff, 0xff, 0xff, 0xff];
        big.push(kind::WRITE);
        assert_eq!(
            decode(&big),
            Decoded::Invalid("frame longer than the replication limit")
        );
        assert_eq!(decode(&[0, 0, 0, 0, 1]), Decoded::Invalid("empty frame"));
        // A value length pointing past the frame.
        let mut out = Vec::new();
        encode(&samples()[3], &mut out).unwrap();
        let vlen_at = out.len() - 7 - 4;
        out[vlen_at..vlen_at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(decode(&out), Decoded::Invalid("malformed frame"));
        // A frame shorter than its fields.
        assert_eq!(
            decode(&[0, 0, 0, 3, kind::SYNC_BEGIN, 0, 0]),
            Decoded::Invalid("malformed frame")
        );
        // A key of 251 bytes (the length byte allows 255).
        let mut out = Vec::new();
        encode(&samples()[4], &mut out).unwrap();
        // header (5) + origin (2) + seq (8) + op kind (1), then the key length byte.
        let mut long = out[..16].to_vec();
        long.push(251);
        long.extend_from_slice(&[b'k'; 251]);
        long.extend_from_slice(&77u64.to_be_bytes());
        let len = (long.len() - 4) as u32;
        long[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(decode(&long), Decoded::Invalid("malformed frame"));
        long[16] = 250;
        long.remove(17);
        let len = (long.len() - 4) as u32;
        long[..4].copy_from_slice(&len.to_be_bytes());
        assert!(
            matches!(decode(&long), Decoded::Frame { .. }),
            "250 bytes is fine"
        );
        // Unknown frame type, trailing bytes, empty key.
        assert_eq!(
            decode(&[0, 0, 0, 1, 99]),
            Decoded::Invalid("malformed frame")
        );
        assert_eq!(
            decode(&[0, 0, 0, 2, kind::SYNC_END, 0]),
            Decoded::Invalid("trailing bytes in frame")
        );
    }

    #[test]
    fn client_lists_of_the_wrong_length_are_refused() {
        // Claims 2 entries, carries 1.
        let mut f = vec![0, 0, 0, 17, kind::CLIENTS, 0, 0, 0, 2];
        f.extend_from_slice(&[1; ENTRY_LEN]);
        assert_eq!(decode(&f), Decoded::Invalid("malformed frame"));
        // Claims more entries than anyone may send.
        let n = (MAX_CLIENTS + 1) as u32;
        let mut f = vec![0, 0, 0, 5, kind::CLIENTS];
        f.extend_from_slice(&n.to_be_bytes());
        assert_eq!(decode(&f), Decoded::Invalid("malformed frame"));
        let mut out = Vec::new();
        assert!(encode(&Frame::Clients { entries: &[0; 13] }, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn unsendable_frames_are_refused() {
        let mut out = vec![1, 2, 3];
        let long = [b'k'; 251];
        let f = Frame::Write {
            origin: 1,
            seq: 1,
            op: Op::Delete {
                key: &long,
                version: 1,
            },
        };
        assert!(encode(&f, &mut out).is_err());
        assert_eq!(out, [1, 2, 3], "nothing appended on error");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data: Vec<u8>) {
            let _ = decode(&data);
        }

        #[test]
        fn set_round_trips(key in proptest::collection::vec(proptest::num::u8::ANY, 1..=250),
                           value in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
                           flags: u32, exptime: u32, version: u64, seq: u64, origin: u16) {
            let f = Frame::Write { origin, seq, op: Op::Set { key: &key, flags, exptime, version, value: &value } };
            let mut out = Vec::new();
            encode(&f, &mut out).unwrap();
            proptest::prop_assert_eq!(decode(&out), Decoded::Frame { frame: f, consumed: out.len() });
        }
    }
}

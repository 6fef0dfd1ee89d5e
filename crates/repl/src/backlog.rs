//! The backlog: this node's own writes, numbered and kept encoded in a bounded ring so a
//! peer that reconnects can resume where it stopped (partial resync) instead of copying the
//! whole cache again.
//!
//! Bounded in bytes, not in count: a burst of large values must not grow it past its budget.
//! When a peer's resume point has already been dropped, [`Backlog::read_from`] says so and
//! the link falls back to a full sync — the overflow is counted, never silent.

use std::collections::VecDeque;

use crate::frame::{encode, Frame, Op};

/// What [`Backlog::read_from`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Frames were appended to the output; continue from `next`.
    Copied { next: u64 },
    /// Nothing newer than the cursor yet.
    UpToDate,
    /// The cursor points before the oldest frame kept: the peer needs a full sync.
    Gone,
}

/// This node's numbered writes, encoded as `Write` frames.
#[derive(Debug)]
pub struct Backlog {
    origin: u16,
    frames: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
    max_bytes: usize,
    /// Sequence number of the last write pushed (0 = none yet).
    last: u64,
    /// Writes dropped from the front because the backlog was full.
    pub dropped: u64,
    /// Writes that could not be encoded (key or value over the frame limit).
    pub unsendable: u64,
}

impl Backlog {
    pub fn new(origin: u16, max_bytes: usize) -> Backlog {
        Backlog {
            origin,
            frames: VecDeque::new(),
            bytes: 0,
            max_bytes,
            last: 0,
            dropped: 0,
            unsendable: 0,
        }
    }

    /// Number and keep one write; returns its sequence number, or `None` if it cannot be
    /// replicated (counted in `unsendable`).
    pub fn push(&mut self, op: Op<'_>) -> Option<u64> {
        let seq = self.last + 1;
        // One allocation of the right size (growing from empty would reallocate ~5 times).
        let mut buf = Vec::with_capacity(frame_size_hint(&op));
        let frame = Frame::Write {
            origin: self.origin,
            seq,
            op,
        };
        if encode(&frame, &mut buf).is_err() {
            self.unsendable += 1;
            return None;
        }
        self.last = seq;
        self.bytes += buf.len();
        self.frames.push_back((seq, buf));
        while self.bytes > self.max_bytes && self.frames.len() > 1 {
            let (_, f) = self.frames.pop_front().expect("not empty");
            self.bytes -= f.len();
            self.dropped += 1;
        }
        Some(seq)
    }

    /// The last sequence number handed out (0 = none).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The oldest sequence number still kept.
    pub fn first_seq(&self) -> u64 {
        self.frames.front().map_or(self.last + 1, |(s, _)| *s)
    }

    /// Bytes in use.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Can a peer that applied up to `seq` resume from the backlog?
    pub fn can_resume(&self, seq: u64) -> bool {
        seq <= self.last && seq + 1 >= self.first_seq()
    }

    /// Append the frames from `from` on to `out`, up to about `max_bytes`.
    pub fn read_from(&self, from: u64, max_bytes: usize, out: &mut Vec<u8>) -> Read {
        if from > self.last {
            return Read::UpToDate;
        }
        let first = self.first_seq();
        if from < first {
            return Read::Gone;
        }
        let start = (from - first) as usize;
        let mut next = from;
        for (seq, f) in self.frames.range(start..) {
            if next != from && out.len() + f.len() > max_bytes {
                break;
            }
            out.extend_from_slice(f);
            next = seq + 1;
        }
        Read::Copied { next }
    }
}

/// Bytes the `Write` frame of `op` takes, about (header, origin, seq and fixed fields).
fn frame_size_hint(op: &Op<'_>) -> usize {
    const FIXED: usize = 5 + 2 + 8 + 1 + 1 + 48;
    FIXED
        + match op {
            Op::Set { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } | Op::Touch { key, .. } | Op::Counter { key, .. } => key.len(),
            Op::Flush { .. } => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, Decoded};

    fn set(key: &[u8]) -> Op<'_> {
        Op::Set {
            key,
            flags: 0,
            exptime: 0,
            version: 1,
            value: b"v",
        }
    }

    #[test]
    fn numbers_and_replays() {
        let mut b = Backlog::new(3, 1 << 20);
        assert_eq!(b.push(set(b"a")), Some(1));
        assert_eq!(b.push(set(b"b")), Some(2));
        let mut out = Vec::new();
        assert_eq!(b.read_from(1, 1 << 20, &mut out), Read::Copied { next: 3 });
        let Decoded::Frame { frame, consumed } = decode(&out) else {
            panic!()
        };
        assert_eq!(
            frame,
            Frame::Write {
                origin: 3,
                seq: 1,
                op: set(b"a")
            }
        );
        assert!(matches!(decode(&out[consumed..]), Decoded::Frame { .. }));
        assert_eq!(b.read_from(3, 1 << 20, &mut out), Read::UpToDate);
        assert!(b.can_resume(0) && b.can_resume(2) && !b.can_resume(3));
    }

    #[test]
    fn bounded_and_overflow_is_reported() {
        let mut b = Backlog::new(1, 200);
        for i in 0..100u32 {
            let k = i.to_be_bytes();
            b.push(set(&k)).unwrap();
        }
        assert!(b.bytes() <= 200, "{}", b.bytes());
        assert!(b.dropped > 0);
        assert_eq!(b.read_from(1, 1 << 20, &mut Vec::new()), Read::Gone);
        assert!(!b.can_resume(0));
        let first = b.first_seq();
        assert!(b.can_resume(first - 1));
        let mut out = Vec::new();
        assert_eq!(
            b.read_from(first, 1 << 20, &mut out),
            Read::Copied { next: 101 }
        );
    }

    #[test]
    fn reads_in_chunks() {
        let mut b = Backlog::new(1, 1 << 20);
        for _ in 0..10 {
            b.push(set(b"k")).unwrap();
        }
        let mut out = Vec::new();
        let Read::Copied { next } = b.read_from(1, 1, &mut out) else {
            panic!()
        };
        assert_eq!(next, 2, "at least one frame even over the chunk size");
        let too_long = [b'k'; 300];
        assert_eq!(b.push(set(&too_long)), None);
        assert_eq!(b.unsendable, 1);
        assert_eq!(b.last_seq(), 10);
    }
}

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
///
/// The frames sit back to back in one byte ring, oldest first, so a write costs a copy into
/// memory that was used a moment ago, and dropping the oldest frames is moving an index:
/// no allocation and no free per write (with one allocation per frame, freeing frames
/// written a backlog's length ago cost a cache miss each, ~6 % of a writer's CPU).
#[derive(Debug)]
pub struct Backlog {
    origin: u16,
    /// The encoded frames.
    ring: VecDeque<u8>,
    /// Where each kept frame starts, as an absolute byte position (bytes pushed since the
    /// backlog was created); the first is that of sequence number `first_seq()`.
    starts: VecDeque<u64>,
    /// Absolute position of `ring[0]`.
    front_pos: u64,
    max_bytes: usize,
    /// Sequence number of the last write pushed (0 = none yet).
    last: u64,
    /// Encoding scratch space, reused.
    scratch: Vec<u8>,
    /// Writes dropped from the front because the backlog was full.
    pub dropped: u64,
    /// Writes that could not be encoded (key or value over the frame limit).
    pub unsendable: u64,
}

impl Backlog {
    pub fn new(origin: u16, max_bytes: usize) -> Backlog {
        Backlog {
            origin,
            ring: VecDeque::new(),
            starts: VecDeque::new(),
            front_pos: 0,
            max_bytes,
            last: 0,
            scratch: Vec::new(),
            dropped: 0,
            unsendable: 0,
        }
    }

    /// Number and keep one write; returns its sequence number, or `None` if it cannot be
    /// replicated (counted in `unsendable`).
    pub fn push(&mut self, op: Op<'_>) -> Option<u64> {
        let seq = self.last + 1;
        self.scratch.clear();
        let frame = Frame::Write {
            origin: self.origin,
            seq,
            op,
        };
        if encode(&frame, &mut self.scratch).is_err() {
            self.unsendable += 1;
            return None;
        }
        self.last = seq;
        self.starts
            .push_back(self.front_pos + self.ring.len() as u64);
        self.ring.extend(self.scratch.iter()); // slice::Iter<&u8>: copied in at most two memcpys
        while self.ring.len() > self.max_bytes && self.starts.len() > 1 {
            self.starts.pop_front();
            let next = *self.starts.front().expect("more than one frame");
            let len = (next - self.front_pos) as usize;
            self.ring.drain(..len);
            self.front_pos = next;
            self.dropped += 1;
        }
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::new(); // a large value passed: do not keep its buffer
        }
        Some(seq)
    }

    /// The last sequence number handed out (0 = none).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The oldest sequence number still kept.
    pub fn first_seq(&self) -> u64 {
        self.last + 1 - self.starts.len() as u64
    }

    /// Bytes in use.
    pub fn bytes(&self) -> usize {
        self.ring.len()
    }

    /// Can a peer that applied up to `seq` resume from the backlog?
    pub fn can_resume(&self, seq: u64) -> bool {
        seq <= self.last && seq + 1 >= self.first_seq()
    }

    /// Append the frames from `from` on to `out`, up to about `max_bytes` (at least one).
    pub fn read_from(&self, from: u64, max_bytes: usize, out: &mut Vec<u8>) -> Read {
        if from > self.last {
            return Read::UpToDate;
        }
        let first = self.first_seq();
        if from < first {
            return Read::Gone;
        }
        let idx = (from - first) as usize;
        let begin = (self.starts[idx] - self.front_pos) as usize;
        let room = max_bytes.saturating_sub(out.len());
        // Whole frames, at least one, while they fit in the room left.
        let ends = self
            .starts
            .range(idx + 1..)
            .map(|&s| (s - self.front_pos) as usize)
            .chain(std::iter::once(self.ring.len()));
        let (mut end, mut next) = (begin, from);
        for e in ends {
            if next != from && e - begin > room {
                break;
            }
            end = e;
            next += 1;
        }
        let (a, b) = self.ring.as_slices();
        copy_range(a, b, begin, end, out);
        Read::Copied { next }
    }
}

/// Appends bytes `begin..end` of the ring whose two halves are `a` then `b`.
fn copy_range(a: &[u8], b: &[u8], begin: usize, end: usize, out: &mut Vec<u8>) {
    if begin < a.len() {
        out.extend_from_slice(&a[begin..end.min(a.len())]);
    }
    if end > a.len() {
        out.extend_from_slice(&b[begin.saturating_sub(a.len())..end - a.len()]);
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

    #[test]
    fn ring_wraps_and_reads_back_every_kept_frame() {
        let mut b = Backlog::new(7, 2_000);
        for i in 0..3_000u32 {
            let key = format!("key-{i}-{}", "x".repeat((i % 37) as usize));
            assert_eq!(b.push(set(key.as_bytes())), Some(u64::from(i) + 1));
            assert!(b.bytes() <= 2_000 || b.first_seq() == b.last_seq());
            if i % 97 != 0 {
                continue;
            }
            // Read everything kept, in chunks of various sizes, and decode it.
            for chunk in [1, 64, 500, 1 << 20] {
                let mut cursor = b.first_seq();
                let mut seen = Vec::new();
                while let Read::Copied { next } = b.read_from(cursor, chunk, &mut Vec::new()) {
                    let mut out = Vec::new();
                    assert_eq!(b.read_from(cursor, chunk, &mut out), Read::Copied { next });
                    let mut at = 0;
                    while at < out.len() {
                        let Decoded::Frame { frame, consumed } = decode(&out[at..]) else {
                            panic!("undecodable frame at {at} of {}", out.len());
                        };
                        let Frame::Write {
                            seq,
                            op: Op::Set { key, .. },
                            ..
                        } = frame
                        else {
                            panic!("not a set");
                        };
                        let want =
                            format!("key-{}-{}", seq - 1, "x".repeat(((seq - 1) % 37) as usize));
                        assert_eq!(key, want.as_bytes());
                        seen.push(seq);
                        at += consumed;
                    }
                    cursor = next;
                }
                let want: Vec<u64> = (b.first_seq()..=b.last_seq()).collect();
                assert_eq!(seen, want, "chunk {chunk}");
            }
        }
        assert!(b.dropped > 2_000);
    }
}

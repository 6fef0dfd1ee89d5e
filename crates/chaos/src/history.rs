//! What the client did and saw: one [`Op`] per request attempt, and its on-disk form
//! (`history.tsv`, one op per line).
//!
//! Keys are owned by one client thread each, so a key's writes are totally ordered by that
//! thread's sequence numbers, and every value written is unique (`v<id>:` then padding), so
//! a value read back names the write that produced it.

use std::fmt::Write as _;

/// Keys per thread that hold values (`t<thread>k<j>`).
pub const PLAIN_KEYS: u32 = 40;
/// Counter keys per thread (`t<thread>c<j>`).
pub const COUNTER_KEYS: u32 = 4;
/// Key ids: `thread * KEY_SPACE + j`, counters from `COUNTER_BASE` on.
const KEY_SPACE: u32 = 1000;
const COUNTER_BASE: u32 = 500;

pub fn plain_key(thread: u16, j: u32) -> u32 {
    u32::from(thread) * KEY_SPACE + j
}

pub fn counter_key(thread: u16, j: u32) -> u32 {
    u32::from(thread) * KEY_SPACE + COUNTER_BASE + j
}

pub fn is_counter(key: u32) -> bool {
    key % KEY_SPACE >= COUNTER_BASE
}

pub fn key_owner(key: u32) -> u16 {
    (key / KEY_SPACE) as u16
}

pub fn key_name(key: u32) -> String {
    let (t, j) = (key / KEY_SPACE, key % KEY_SPACE);
    if j >= COUNTER_BASE {
        format!("t{t}c{}", j - COUNTER_BASE)
    } else {
        format!("t{t}k{j}")
    }
}

/// Every key a run with `threads` client threads can touch.
pub fn all_keys(threads: u16) -> Vec<u32> {
    let mut v = Vec::new();
    for t in 0..threads {
        v.extend((0..PLAIN_KEYS).map(|j| plain_key(t, j)));
        v.extend((0..COUNTER_KEYS).map(|j| counter_key(t, j)));
    }
    v
}

/// A value id names one write: the thread in the high bits, its own count below.
pub fn value_id(thread: u16, n: u64) -> u64 {
    (u64::from(thread) << 40) | n
}

/// The bytes written for value `id`, padded to `pad` more bytes.
pub fn value_bytes(id: u64, pad: usize) -> Vec<u8> {
    let mut v = format!("v{id}:").into_bytes();
    v.resize(v.len() + pad, b'x');
    v
}

/// The value id in bytes read back, if they are one of ours.
pub fn parse_value(data: &[u8]) -> Option<u64> {
    let s = data.strip_prefix(b"v")?;
    let end = s.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&s[..end]).ok()?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Set,
    Get,
    Gets,
    /// The second half of a normal CAS flow (`gets` then `cas` with its unique).
    Cas,
    /// The last step of a deliberately stale flow: `gets`, `set`, then `cas` with the
    /// unique from before the set. Must never be STORED.
    StaleCas,
    Delete,
    Incr,
    /// Creating a counter (`add k 0`), after it was found missing.
    Add,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Set => "set",
            OpKind::Get => "get",
            OpKind::Gets => "gets",
            OpKind::Cas => "cas",
            OpKind::StaleCas => "stalecas",
            OpKind::Delete => "delete",
            OpKind::Incr => "incr",
            OpKind::Add => "add",
        }
    }

    fn parse(s: &str) -> Option<OpKind> {
        Some(match s {
            "set" => OpKind::Set,
            "get" => OpKind::Get,
            "gets" => OpKind::Gets,
            "cas" => OpKind::Cas,
            "stalecas" => OpKind::StaleCas,
            "delete" => OpKind::Delete,
            "incr" => OpKind::Incr,
            "add" => OpKind::Add,
            _ => return None,
        })
    }

    /// Can change the key.
    pub fn is_write(self) -> bool {
        !matches!(self, OpKind::Get | OpKind::Gets)
    }
}

/// Why a request has no usable reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrClass {
    /// Could not connect: nothing was sent.
    Connect,
    /// No reply before the deadline.
    Timeout,
    /// Connection reset or closed before any reply byte.
    Reset,
    /// Another I/O error, or the reply broke off.
    Io,
    /// `SERVER_ERROR`, `ERROR`, `CLIENT_ERROR`, or a reply that does not parse.
    Server,
}

impl ErrClass {
    fn name(self) -> &'static str {
        match self {
            ErrClass::Connect => "connect",
            ErrClass::Timeout => "timeout",
            ErrClass::Reset => "reset",
            ErrClass::Io => "io",
            ErrClass::Server => "server",
        }
    }

    fn parse(s: &str) -> Option<ErrClass> {
        Some(match s {
            "connect" => ErrClass::Connect,
            "timeout" => ErrClass::Timeout,
            "reset" => ErrClass::Reset,
            "io" => ErrClass::Io,
            "server" => ErrClass::Server,
            _ => return None,
        })
    }
}

/// The result of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Res {
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    /// A retrieval hit: the value id read (`u64::MAX` if it was not one of ours), flags, CAS.
    Hit {
        val: u64,
        flags: u32,
        cas: u64,
    },
    Miss,
    /// `incr`'s new value.
    Num(u64),
    /// Never reached a server: certainly not applied.
    NotSent(ErrClass),
    /// Sent, no usable reply: may or may not have been applied.
    Unknown(ErrClass),
}

impl Res {
    /// A reply came back (whatever it said).
    pub fn ok(self) -> bool {
        !matches!(self, Res::NotSent(_) | Res::Unknown(_))
    }
}

/// One request attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub thread: u16,
    /// The thread's own count of attempts; a thread's ops never overlap in time.
    pub seq: u32,
    pub kind: OpKind,
    pub key: u32,
    /// set/cas/add: the value id written; incr: the delta.
    pub arg: u64,
    pub flags: u32,
    /// cas: the unique sent.
    pub unique: u64,
    /// The `seq` of the `gets` that started this op's CAS flow, if any.
    pub flow: Option<u32>,
    /// A second attempt after the first one's reused connection was found dead.
    pub retry: bool,
    pub start: u64,
    pub end: u64,
    pub res: Res,
}

impl Op {
    /// One line of `history.tsv` (no newline).
    pub fn to_tsv(&self) -> String {
        let mut s = String::with_capacity(96);
        let flow = self.flow.map_or(-1, i64::from);
        let _ = write!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
            self.thread,
            self.seq,
            self.kind.name(),
            key_name(self.key),
            self.arg,
            self.flags,
            self.unique,
            flow,
            u8::from(self.retry),
            self.start,
            self.end
        );
        match self.res {
            Res::Stored => s.push_str("STORED"),
            Res::NotStored => s.push_str("NOT_STORED"),
            Res::Exists => s.push_str("EXISTS"),
            Res::NotFound => s.push_str("NOT_FOUND"),
            Res::Deleted => s.push_str("DELETED"),
            Res::Hit { val, flags, cas } => {
                let _ = write!(s, "HIT:{val}:{flags}:{cas}");
            }
            Res::Miss => s.push_str("MISS"),
            Res::Num(n) => {
                let _ = write!(s, "NUM:{n}");
            }
            Res::NotSent(c) => {
                let _ = write!(s, "NOTSENT:{}", c.name());
            }
            Res::Unknown(c) => {
                let _ = write!(s, "UNKNOWN:{}", c.name());
            }
        }
        s
    }

    /// Reads a line written by [`Op::to_tsv`].
    pub fn from_tsv(line: &str) -> Option<Op> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 12 {
            return None;
        }
        let key = parse_key_name(f[3])?;
        let flow: i64 = f[7].parse().ok()?;
        let res = match f[11].split_once(':') {
            None => match f[11] {
                "STORED" => Res::Stored,
                "NOT_STORED" => Res::NotStored,
                "EXISTS" => Res::Exists,
                "NOT_FOUND" => Res::NotFound,
                "DELETED" => Res::Deleted,
                "MISS" => Res::Miss,
                _ => return None,
            },
            Some(("HIT", rest)) => {
                let mut p = rest.split(':');
                Res::Hit {
                    val: p.next()?.parse().ok()?,
                    flags: p.next()?.parse().ok()?,
                    cas: p.next()?.parse().ok()?,
                }
            }
            Some(("NUM", n)) => Res::Num(n.parse().ok()?),
            Some(("NOTSENT", c)) => Res::NotSent(ErrClass::parse(c)?),
            Some(("UNKNOWN", c)) => Res::Unknown(ErrClass::parse(c)?),
            _ => return None,
        };
        Some(Op {
            thread: f[0].parse().ok()?,
            seq: f[1].parse().ok()?,
            kind: OpKind::parse(f[2])?,
            key,
            arg: f[4].parse().ok()?,
            flags: f[5].parse().ok()?,
            unique: f[6].parse().ok()?,
            flow: u32::try_from(flow).ok(),
            retry: f[8] == "1",
            start: f[9].parse().ok()?,
            end: f[10].parse().ok()?,
            res,
        })
    }
}

/// The key id of a key name (`t3k12`, `t0c1`).
pub fn parse_key_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('t')?;
    let (t, kind, j) = if let Some((t, j)) = rest.split_once('k') {
        (t, 'k', j)
    } else {
        let (t, j) = rest.split_once('c')?;
        (t, 'c', j)
    };
    let t: u16 = t.parse().ok()?;
    let j: u32 = j.parse().ok()?;
    Some(if kind == 'k' {
        plain_key(t, j)
    } else {
        counter_key(t, j)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_round_trip() {
        let op = Op {
            thread: 2,
            seq: 77,
            kind: OpKind::Cas,
            key: plain_key(2, 13),
            arg: value_id(2, 99),
            flags: 7,
            unique: 123456789,
            flow: Some(75),
            retry: true,
            start: 10,
            end: 20,
            res: Res::Hit {
                val: 5,
                flags: 1,
                cas: 9,
            },
        };
        assert_eq!(Op::from_tsv(&op.to_tsv()), Some(op.clone()));
        let op2 = Op {
            kind: OpKind::Incr,
            key: counter_key(1, 3),
            flow: None,
            res: Res::Unknown(ErrClass::Timeout),
            ..op
        };
        assert_eq!(Op::from_tsv(&op2.to_tsv()), Some(op2));
    }

    #[test]
    fn values_name_their_write() {
        let id = value_id(3, 4242);
        assert_eq!(parse_value(&value_bytes(id, 50)), Some(id));
        assert_eq!(parse_value(b"17"), None);
        assert!(is_counter(counter_key(0, 1)));
        assert!(!is_counter(plain_key(9, 39)));
        assert_eq!(key_owner(counter_key(9, 1)), 9);
    }
}

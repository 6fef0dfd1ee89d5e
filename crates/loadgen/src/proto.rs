//! Request encoding and reply parsing for the text and meta protocols.
//!
//! Requests are appended to a connection's reusable write buffer; replies are parsed in
//! place from its read buffer. Nothing here allocates once the buffers have grown.

use crate::args::Protocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Hit,
    Miss,
    Stored,
    /// NOT_STORED / EXISTS / NOT_FOUND (text), NS / EX / NF (meta)
    NotStored,
    /// ERROR, CLIENT_ERROR ..., SERVER_ERROR ...
    Error,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadReply;

/// Pre-built pieces of requests, so encoding is a few `extend_from_slice`s.
pub struct Encoder {
    protocol: Protocol,
    prefix: Vec<u8>,
    /// text: " 0 0 <len>\r\n"; meta: " <len> T0\r\n"
    set_tail: Vec<u8>,
    /// the value followed by "\r\n"
    value: Vec<u8>,
}

impl Encoder {
    pub fn new(protocol: Protocol, prefix: &str, data_size: usize) -> Self {
        let mut len = itoa::Buffer::new();
        let len = len.format(data_size);
        let set_tail = match protocol {
            Protocol::Text => format!(" 0 0 {len}\r\n"),
            Protocol::Meta => format!(" {len} T0\r\n"),
        };
        let mut value: Vec<u8> = (0..data_size).map(|i| b'a' + (i % 26) as u8).collect();
        value.extend_from_slice(b"\r\n");
        Encoder {
            protocol,
            prefix: prefix.as_bytes().to_vec(),
            set_tail: set_tail.into_bytes(),
            value,
        }
    }

    #[inline]
    fn key(&self, out: &mut Vec<u8>, id: u64) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }

    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>, op: Op, id: u64) {
        match (self.protocol, op) {
            (Protocol::Text, Op::Get) => {
                out.extend_from_slice(b"get ");
                self.key(out, id);
                out.extend_from_slice(b"\r\n");
            }
            (Protocol::Meta, Op::Get) => {
                out.extend_from_slice(b"mg ");
                self.key(out, id);
                out.extend_from_slice(b" v\r\n");
            }
            (proto, Op::Set) => {
                out.extend_from_slice(if proto == Protocol::Text {
                    b"set "
                } else {
                    b"ms "
                });
                self.key(out, id);
                out.extend_from_slice(&self.set_tail);
                out.extend_from_slice(&self.value);
            }
        }
    }
}

/// Position just past the first "\r\n" in `buf`, or None if there is no full line yet.
#[inline]
fn line_end(buf: &[u8]) -> Option<usize> {
    let nl = memchr::memchr(b'\n', buf)?;
    Some(nl + 1)
}

/// The line without its terminator ("\r\n", or a bare "\n").
#[inline]
fn trim(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn parse_len(tok: &[u8]) -> Result<usize, BadReply> {
    if tok.is_empty() || tok.len() > 10 {
        return Err(BadReply);
    }
    let mut n = 0usize;
    for &b in tok {
        if !b.is_ascii_digit() {
            return Err(BadReply);
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Ok(n)
}

fn is_error(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

/// Parses the reply to a request of kind `op` at the start of `buf`.
/// `Ok(None)`: incomplete, read more. `Ok(Some((reply, consumed)))`: one complete reply.
pub fn parse(protocol: Protocol, op: Op, buf: &[u8]) -> Result<Option<(Reply, usize)>, BadReply> {
    let Some(end) = line_end(buf) else {
        return Ok(None);
    };
    let line = trim(&buf[..end]);
    if is_error(line) {
        return Ok(Some((Reply::Error, end)));
    }
    match (protocol, op) {
        (Protocol::Text, Op::Get) => {
            if line == b"END" {
                return Ok(Some((Reply::Miss, end)));
            }
            if !line.starts_with(b"VALUE ") {
                return Err(BadReply);
            }
            // VALUE <key> <flags> <bytes> [<cas>]
            let len_tok = line.split(|&b| b == b' ').nth(3).ok_or(BadReply)?;
            let len = parse_len(len_tok)?;
            let data_end = end + len + 2;
            let total = data_end + 5;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[data_end - 2..data_end] != b"\r\n" || &buf[data_end..total] != b"END\r\n" {
                return Err(BadReply);
            }
            Ok(Some((Reply::Hit, total)))
        }
        (Protocol::Text, Op::Set) => match line {
            b"STORED" => Ok(Some((Reply::Stored, end))),
            b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Ok(Some((Reply::NotStored, end))),
            _ => Err(BadReply),
        },
        (Protocol::Meta, Op::Get) => {
            if line == b"EN" {
                return Ok(Some((Reply::Miss, end)));
            }
            if line == b"HD" || line.starts_with(b"HD ") {
                return Ok(Some((Reply::Hit, end)));
            }
            if !line.starts_with(b"VA ") {
                return Err(BadReply);
            }
            // VA <len> <flags>*
            let len_tok = line[3..].split(|&b| b == b' ').next().ok_or(BadReply)?;
            let len = parse_len(len_tok)?;
            let total = end + len + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err(BadReply);
            }
            Ok(Some((Reply::Hit, total)))
        }
        (Protocol::Meta, Op::Set) => {
            let code = line.get(..2).ok_or(BadReply)?;
            if line.len() > 2 && line[2] != b' ' {
                return Err(BadReply);
            }
            match code {
                b"HD" => Ok(Some((Reply::Stored, end))),
                b"NS" | b"EX" | b"NF" => Ok(Some((Reply::NotStored, end))),
                _ => Err(BadReply),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::{Meta, Text};

    #[test]
    fn encodes_requests() {
        let e = Encoder::new(Text, "k:", 3);
        let mut b = Vec::new();
        e.encode(&mut b, Op::Get, 1000001);
        e.encode(&mut b, Op::Set, 7);
        assert_eq!(b, b"get k:1000001\r\nset k:7 0 0 3\r\nabc\r\n");
        let e = Encoder::new(Meta, "k:", 2);
        b.clear();
        e.encode(&mut b, Op::Get, 12);
        e.encode(&mut b, Op::Set, 12);
        assert_eq!(b, b"mg k:12 v\r\nms k:12 2 T0\r\nab\r\n");
    }

    #[test]
    fn text_replies() {
        let hit = b"VALUE k:1 0 3\r\nabc\r\nEND\r\n";
        assert_eq!(parse(Text, Op::Get, hit), Ok(Some((Reply::Hit, hit.len()))));
        // every strict prefix is incomplete, never an error
        for i in 0..hit.len() {
            assert_eq!(parse(Text, Op::Get, &hit[..i]), Ok(None), "prefix {i}");
        }
        let with_cas = b"VALUE k:1 5 3 99\r\nabc\r\nEND\r\nSTORED\r\n";
        assert_eq!(parse(Text, Op::Get, with_cas), Ok(Some((Reply::Hit, 28))));
        assert_eq!(
            parse(Text, Op::Get, b"END\r\nEND\r\n"),
            Ok(Some((Reply::Miss, 5)))
        );
        assert_eq!(
            parse(Text, Op::Set, b"STORED\r\n"),
            Ok(Some((Reply::Stored, 8)))
        );
        assert_eq!(
            parse(Text, Op::Set, b"NOT_STORED\r\n"),
            Ok(Some((Reply::NotStored, 12)))
        );
        assert_eq!(
            parse(Text, Op::Set, b"SERVER_ERROR out of memory\r\n"),
            Ok(Some((Reply::Error, 28)))
        );
        assert_eq!(
            parse(Text, Op::Get, b"ERROR\r\n"),
            Ok(Some((Reply::Error, 7)))
        );
        assert_eq!(parse(Text, Op::Get, b"STORED\r\n"), Err(BadReply));
        assert_eq!(parse(Text, Op::Get, b"VALUE k 0 x\r\n"), Err(BadReply));
        assert_eq!(
            parse(Text, Op::Get, b"VALUE k:1 0 3\r\nabcd\r\nEND\r\n"),
            Err(BadReply)
        );
    }

    #[test]
    fn meta_replies() {
        let hit = b"VA 3\r\nabc\r\n";
        assert_eq!(parse(Meta, Op::Get, hit), Ok(Some((Reply::Hit, hit.len()))));
        for i in 0..hit.len() {
            assert_eq!(parse(Meta, Op::Get, &hit[..i]), Ok(None), "prefix {i}");
        }
        assert_eq!(
            parse(Meta, Op::Get, b"VA 2 f0 t-1\r\nab\r\n"),
            Ok(Some((Reply::Hit, 17)))
        );
        assert_eq!(parse(Meta, Op::Get, b"EN\r\n"), Ok(Some((Reply::Miss, 4))));
        assert_eq!(
            parse(Meta, Op::Set, b"HD\r\n"),
            Ok(Some((Reply::Stored, 4)))
        );
        assert_eq!(
            parse(Meta, Op::Set, b"HD c5\r\n"),
            Ok(Some((Reply::Stored, 7)))
        );
        assert_eq!(
            parse(Meta, Op::Set, b"NS\r\n"),
            Ok(Some((Reply::NotStored, 4)))
        );
        assert_eq!(
            parse(Meta, Op::Set, b"CLIENT_ERROR bad data chunk\r\n"),
            Ok(Some((Reply::Error, 29)))
        );
        assert_eq!(parse(Meta, Op::Set, b"HDX\r\n"), Err(BadReply));
        assert_eq!(parse(Meta, Op::Get, b"VALUE k 0 1\r\n"), Err(BadReply));
        assert_eq!(parse(Meta, Op::Get, b"VA 1\r\nab\r\n"), Err(BadReply));
    }
}

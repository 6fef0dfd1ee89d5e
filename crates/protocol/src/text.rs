//! memcached's text protocol: one command per line, storage commands followed by a data block.
//!
//! The parser looks at the front of the read buffer and returns a [`Parsed`] outcome. It never
//! allocates and never consumes bytes itself: the caller drops `consumed` bytes once it has
//! executed the request, so a request stays borrowable from the buffer while it runs.
//!
//! Error replies are memcached 1.6.45's exact strings, because clients and memcached's own
//! test suite compare them byte for byte. Where 1.6.45 and older releases differ, the
//! behaviour chosen is noted beside the code.

use crate::request::{Command, StoreMode};
use crate::MAX_KEY_LEN;

/// A command line with no `\n` in this many bytes is refused (memcached's rule), except for
/// retrieval commands, whose key lists may be long.
pub const MAX_LINE: usize = 2048;

/// Longest retrieval line (`get k1 k2 …`) accepted. memcached streams such lines; memha
/// buffers them, so they need a bound: 1 MiB is ~4,000 full-length keys per request.
pub const MAX_GET_LINE: usize = 1024 * 1024;

/// Data blocks longer than this are refused outright as malformed (memcached's INT_MAX - 2).
const MAX_DATA_LEN: u64 = i32::MAX as u64 - 2;

/// The limits a parse needs from the server's settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A data block larger than this is answered `SERVER_ERROR object too large for cache`
    /// and swallowed without being buffered.
    pub max_value: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value: 1024 * 1024,
        }
    }
}

/// The outcome of looking at the front of a read buffer.
///
/// `Request` is large (a meta request carries its decoded base64 key inline); it lives on the
/// stack for one request, which is cheaper than boxing (an allocation per request).
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'a> {
    /// A whole request: execute it, then drop `consumed` bytes.
    Request { cmd: Command<'a>, consumed: usize },
    /// Not enough bytes yet. `need` is the total buffer length that would complete the
    /// request, when known (a storage command waiting for its data block).
    Incomplete { need: Option<usize> },
    /// Send `reply` (unless empty), drop `consumed` bytes, then swallow `swallow` more bytes
    /// as they arrive (the data block of a refused storage command), and go on.
    Error {
        reply: &'static str,
        consumed: usize,
        swallow: usize,
    },
    /// The value is larger than the server accepts: reply `SERVER_ERROR object too large for
    /// cache` (unless `noreply`), delete `key` (memcached does), drop `consumed` bytes (the
    /// command line) and then swallow `swallow` more bytes (the data block) as they arrive.
    TooLarge {
        key: &'a [u8],
        noreply: bool,
        consumed: usize,
        swallow: usize,
    },
    /// Close the connection without a reply (an HTTP request, an endless line).
    Close,
}

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";

fn error(reply: &'static str, consumed: usize) -> Parsed<'static> {
    Parsed::Error {
        reply,
        consumed,
        swallow: 0,
    }
}

/// Parse the request at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return incomplete_line(buf);
    };
    let consumed = nl + 1;
    let mut line = &buf[..nl];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    // memcached 1.6.45 refuses any line shorter than 4 bytes, newline included (`" \n"`,
    // `"\r\n"`), as malformed before looking at it (metaget.t's first check).
    if consumed < 4 {
        return error(BAD_FORMAT, consumed);
    }
    if nl > MAX_LINE && !is_retrieval(line) {
        return Parsed::Close;
    }
    let mut tokens = Tokens::new(line);
    let Some(cmd) = tokens.next() else {
        // A longer blank line: memcached 1.6.45 finds no command word and answers ERROR.
        return error("ERROR\r\n", consumed);
    };
    match cmd {
        b"get" => parse_get(tokens.rest(), false, None, consumed),
        b"gets" => parse_get(tokens.rest(), true, None, consumed),
        b"gat" | b"gats" => {
            let Some(exp) = tokens.next() else {
                return error(BAD_FORMAT, consumed);
            };
            let Some(exptime) = parse_i32(exp) else {
                return error("CLIENT_ERROR invalid exptime argument\r\n", consumed);
            };
            parse_get(tokens.rest(), cmd == b"gats", Some(exptime), consumed)
        }
        b"set" => parse_store(StoreMode::Set, tokens, buf, consumed, limits),
        b"add" => parse_store(StoreMode::Add, tokens, buf, consumed, limits),
        b"replace" => parse_store(StoreMode::Replace, tokens, buf, consumed, limits),
        b"append" => parse_store(StoreMode::Append, tokens, buf, consumed, limits),
        b"prepend" => parse_store(StoreMode::Prepend, tokens, buf, consumed, limits),
        b"cas" => parse_store(StoreMode::Cas, tokens, buf, consumed, limits),
        b"delete" => parse_delete(tokens, consumed),
        b"incr" | b"decr" => parse_arith(cmd == b"incr", tokens, consumed),
        b"touch" => parse_touch(tokens, consumed),
        b"flush_all" => parse_flush(tokens, consumed),
        b"version" => request(Command::Version, consumed),
        b"quit" => request(Command::Quit, consumed),
        b"verbosity" => parse_verbosity(tokens, consumed),
        b"shutdown" => match (tokens.next(), tokens.next()) {
            (None, _) => request(Command::Shutdown { graceful: false }, consumed),
            (Some(b"graceful"), None) => request(Command::Shutdown { graceful: true }, consumed),
            _ => error("CLIENT_ERROR invalid shutdown mode\r\n", consumed),
        },
        b"cache_memlimit" => parse_memlimit(tokens, consumed),
        b"stats" => request(
            Command::Stats {
                args: trim(tokens.rest()),
            },
            consumed,
        ),
        b"slabs" => parse_slabs(tokens, consumed),
        b"lru" | b"lru_crawler" => {
            // Tuning knobs of memcached's segmented LRU; memha's CLOCK has none. Accept them
            // so operators' scripts keep working.
            let noreply = tokens.last() == Some(b"noreply");
            if tokens.next().is_none() {
                return error(BAD_FORMAT, consumed);
            }
            request(Command::AdminNoop { noreply }, consumed)
        }
        b"mg" | b"ms" | b"md" | b"ma" | b"mn" | b"me" => {
            crate::meta::parse(cmd, buf, line.len(), consumed, limits)
        }
        _ if is_http(cmd) => Parsed::Close,
        _ => error("ERROR\r\n", consumed),
    }
}

fn request(cmd: Command<'_>, consumed: usize) -> Parsed<'_> {
    Parsed::Request { cmd, consumed }
}

/// No complete line yet: wait, unless the line is already longer than allowed.
fn incomplete_line(buf: &[u8]) -> Parsed<'static> {
    let limit = if is_retrieval(buf) {
        MAX_GET_LINE
    } else {
        MAX_LINE
    };
    if buf.len() > limit {
        Parsed::Close
    } else {
        Parsed::Incomplete { need: None }
    }
}

fn is_retrieval(line: &[u8]) -> bool {
    line.starts_with(b"get ")
        || line.starts_with(b"gets ")
        || line.starts_with(b"gat ")
        || line.starts_with(b"gats ")
}

/// Browsers and HTTP health checkers pointed at the cache port get the connection closed, as
/// memcached does, rather than a stream of `ERROR` lines.
fn is_http(cmd: &[u8]) -> bool {
    matches!(
        cmd,
        b"GET" | b"PUT" | b"POST" | b"DELETE" | b"HEAD" | b"OPTIONS" | b"PATCH" | b"CONNECT"
    )
}

fn parse_get(keys: &[u8], with_cas: bool, touch: Option<i64>, consumed: usize) -> Parsed<'_> {
    let keys = trim(keys);
    let mut any = false;
    for key in crate::request::keys(keys) {
        if key.len() > MAX_KEY_LEN {
            return error(BAD_FORMAT, consumed);
        }
        any = true;
    }
    if !any {
        // memcached 1.6.45; 1.6.18 sent ERROR.
        return error(BAD_FORMAT, consumed);
    }
    request(
        Command::Get {
            keys,
            with_cas,
            touch,
        },
        consumed,
    )
}

fn parse_store<'a>(
    mode: StoreMode,
    mut tokens: Tokens<'a>,
    buf: &'a [u8],
    line_len: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let noreply = tokens.last() == Some(b"noreply");
    let want = if mode == StoreMode::Cas { 5 } else { 4 };
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    let (Some(key), Some(flags), Some(exptime), Some(len)) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return error(BAD_FORMAT, line_len);
    };
    // A refused command line whose length is readable still has its data block coming:
    // swallow it, or the client's data would be read as commands (memcached does the same).
    let refuse = |reply| match parse_u64(len) {
        Some(n) if n <= MAX_DATA_LEN => Parsed::Error {
            reply,
            consumed: line_len,
            swallow: n as usize + 2,
        },
        _ => error(reply, line_len),
    };
    let cas_token = if mode == StoreMode::Cas {
        tokens.next()
    } else {
        None
    };
    if count != want || key.len() > MAX_KEY_LEN {
        return refuse(BAD_FORMAT);
    }
    let (Some(flags), Some(exptime), Some(len)) =
        (parse_u32(flags), parse_i32(exptime), parse_u64(len))
    else {
        return refuse(BAD_FORMAT);
    };
    if len > MAX_DATA_LEN {
        return error(BAD_FORMAT, line_len);
    }
    let cas = match cas_token {
        Some(t) => match parse_u64(t) {
            Some(c) => c,
            None => return refuse(BAD_FORMAT),
        },
        None => 0,
    };
    let len = len as usize;
    if len > limits.max_value {
        return Parsed::TooLarge {
            key,
            noreply,
            consumed: line_len,
            swallow: len + 2,
        };
    }
    let total = line_len + len + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: Some(total) };
    }
    if &buf[line_len + len..total] != b"\r\n" {
        let reply = if noreply {
            ""
        } else {
            "CLIENT_ERROR bad data chunk\r\n"
        };
        return error(reply, total);
    }
    request(
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            data: &buf[line_len..line_len + len],
            cas,
            noreply,
        },
        total,
    )
}

fn parse_delete(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let Some(key) = tokens.next() else {
        return error(BAD_FORMAT, consumed);
    };
    // Only a token after the key can be `noreply` (a key may be named "noreply").
    let noreply = tokens.last() == Some(b"noreply");
    if key.len() > MAX_KEY_LEN {
        return error(BAD_FORMAT, consumed);
    }
    // `delete <key> [0] [noreply]`: the old hold time is accepted only as 0 (as memcached
    // 1.6.18 and memcapable expect); anything else is refused, silently under noreply.
    let extra = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    let ok = match extra {
        0 => true,
        1 => tokens.next() == Some(b"0"),
        _ => false,
    };
    if !ok {
        let reply = if noreply {
            ""
        } else {
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
        };
        return error(reply, consumed);
    }
    request(Command::Delete { key, noreply }, consumed)
}

fn parse_arith(incr: bool, mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    let (Some(key), Some(delta)) = (tokens.next(), tokens.next()) else {
        return error(BAD_FORMAT, consumed);
    };
    if count != 2 || key.len() > MAX_KEY_LEN {
        return error(BAD_FORMAT, consumed);
    }
    let Some(delta) = parse_u64(delta) else {
        return error("CLIENT_ERROR invalid numeric delta argument\r\n", consumed);
    };
    request(
        Command::Arith {
            key,
            incr,
            delta,
            noreply,
        },
        consumed,
    )
}

fn parse_touch(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    let (Some(key), Some(exptime)) = (tokens.next(), tokens.next()) else {
        return error(BAD_FORMAT, consumed);
    };
    if count != 2 || key.len() > MAX_KEY_LEN {
        return error(BAD_FORMAT, consumed);
    }
    let Some(exptime) = parse_i32(exptime) else {
        return error("CLIENT_ERROR invalid exptime argument\r\n", consumed);
    };
    request(
        Command::Touch {
            key,
            exptime,
            noreply,
        },
        consumed,
    )
}

fn parse_flush(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    let delay = match count {
        0 => 0,
        1 => match tokens.next().and_then(parse_i32) {
            Some(d) => d,
            None => return error("CLIENT_ERROR invalid exptime argument\r\n", consumed),
        },
        _ => return error(BAD_FORMAT, consumed),
    };
    request(Command::FlushAll { delay, noreply }, consumed)
}

fn parse_verbosity(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    if count != 1 || tokens.next().and_then(parse_u32).is_none() {
        // memcached marks the command noreply before it checks the level, so even the
        // error is swallowed (memcapable relies on it).
        return error(if noreply { "" } else { BAD_FORMAT }, consumed);
    }
    request(Command::Verbosity { noreply }, consumed)
}

fn parse_memlimit(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    let count = tokens
        .count_remaining()
        .saturating_sub(usize::from(noreply));
    match (count, tokens.next().and_then(parse_u64)) {
        (1, Some(megabytes)) => request(Command::CacheMemlimit { megabytes, noreply }, consumed),
        _ => error(BAD_FORMAT, consumed),
    }
}

fn parse_slabs(mut tokens: Tokens<'_>, consumed: usize) -> Parsed<'_> {
    let noreply = tokens.last() == Some(b"noreply");
    match tokens.next() {
        Some(b"automove") => match tokens.next() {
            Some(b"0" | b"1" | b"2") => request(Command::AdminNoop { noreply }, consumed),
            _ => error(BAD_FORMAT, consumed),
        },
        Some(b"reassign") => match (
            tokens.next().and_then(parse_i32),
            tokens.next().and_then(parse_i32),
        ) {
            // There are no slab classes to move pages between.
            (Some(_), Some(_)) => error("BADCLASS invalid src or dst class id\r\n", consumed),
            _ => error(BAD_FORMAT, consumed),
        },
        _ => error("ERROR\r\n", consumed),
    }
}

/// Space-separated tokens of one command line (memcached splits on spaces only).
#[derive(Clone, Copy)]
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        Tokens { rest: line }
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn last(&self) -> Option<&'a [u8]> {
        let t = trim(self.rest);
        if t.is_empty() {
            return None;
        }
        let start = memchr::memrchr(b' ', t).map_or(0, |i| i + 1);
        Some(&t[start..])
    }

    fn count_remaining(&self) -> usize {
        let mut copy = *self;
        let mut n = 0;
        while copy.next().is_some() {
            n += 1;
        }
        n
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end]
}

/// Unsigned decimal that fits u64; digits only (no sign, no spaces), as strtoull with
/// memcached's extra checks.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// Signed decimal in the 32-bit range (memcached stores exptime as a C int).
pub fn parse_i32(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let n = parse_u64(digits)? as i64;
    let n = if neg { -n } else { n };
    (i32::MIN as i64..=i32::MAX as i64)
        .contains(&n)
        .then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Parsed<'_> {
        parse(s, &Limits::default())
    }

    #[test]
    fn get_variants() {
        assert_eq!(
            p(b"get a b\r\n"),
            Parsed::Request {
                cmd: Command::Get {
                    keys: b"a b",
                    with_cas: false,
                    touch: None
                },
                consumed: 9
            }
        );
        assert_eq!(
            p(b"gats 10 k\n"),
            Parsed::Request {
                cmd: Command::Get {
                    keys: b"k",
                    with_cas: true,
                    touch: Some(10)
                },
                consumed: 10
            }
        );
        assert_eq!(p(b"get\r\n"), error(BAD_FORMAT, 5));
        let long = format!("get a {}\r\n", "k".repeat(251));
        assert_eq!(p(long.as_bytes()), error(BAD_FORMAT, long.len()));
        assert_eq!(p(b"get a"), Parsed::Incomplete { need: None });
    }

    #[test]
    fn store_commands() {
        assert_eq!(
            p(b"set k 5 10 3 noreply\r\nabc\r\nget"),
            Parsed::Request {
                cmd: Command::Store {
                    mode: StoreMode::Set,
                    key: b"k",
                    flags: 5,
                    exptime: 10,
                    data: b"abc",
                    cas: 0,
                    noreply: true
                },
                consumed: 27
            }
        );
        assert_eq!(
            p(b"set k 0 0 3\r\nab"),
            Parsed::Incomplete { need: Some(18) }
        );
        assert_eq!(
            p(b"set k 0 0 3\r\nabcde"),
            error("CLIENT_ERROR bad data chunk\r\n", 18)
        );
        assert_eq!(p(b"set k 0 0 -1\r\n"), error(BAD_FORMAT, 14));
        assert_eq!(p(b"set k 0 0 4294967295\r\n"), error(BAD_FORMAT, 22));
        assert_eq!(p(b"set k 0 0 2147483647\r\n"), error(BAD_FORMAT, 22));
        assert_eq!(
            p(b"set k 0 0 2000000\r\n"),
            Parsed::TooLarge {
                key: b"k",
                noreply: false,
                consumed: 19,
                swallow: 2_000_002
            }
        );
        let swallowing = |consumed, swallow| Parsed::Error {
            reply: BAD_FORMAT,
            consumed,
            swallow,
        };
        assert_eq!(p(b"cas k 0 0 6 \r\nbarva2\r\n"), swallowing(14, 8));
        assert_eq!(p(b"cas bad blah 0 0 0\r\n\r\n"), swallowing(20, 2));
        assert_eq!(p(b"cas bad 0 0 0 blah\r\n\r\n"), swallowing(20, 2));
        assert_eq!(p(b"set k -1 0 0\r\n\r\n"), swallowing(14, 2));
        assert_eq!(p(b"set k 4294967296 0 0\r\n\r\n"), swallowing(22, 2));
        let long_key = format!("set {} 0 0 1\r\nx\r\n", "k".repeat(251));
        assert_eq!(p(long_key.as_bytes()), swallowing(long_key.len() - 3, 3));
        assert!(matches!(
            p(b"cas k 1 2 1 99 noreply\r\nx\r\n"),
            Parsed::Request {
                cmd: Command::Store {
                    mode: StoreMode::Cas,
                    cas: 99,
                    noreply: true,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn delete_forms() {
        assert!(matches!(p(b"delete k\r\n"), Parsed::Request { .. }));
        assert!(matches!(p(b"delete k 0\r\n"), Parsed::Request { .. }));
        assert!(matches!(
            p(b"delete k 0 noreply\r\n"),
            Parsed::Request {
                cmd: Command::Delete { noreply: true, .. },
                ..
            }
        ));
        assert_eq!(p(b"delete k 10 noreply\r\n"), error("", 21));
        // Found by fuzzing: a key named "noreply" underflowed the token count.
        assert!(matches!(
            p(b"delete noreply\r\n"),
            Parsed::Request {
                cmd: Command::Delete {
                    key: b"noreply",
                    noreply: false
                },
                ..
            }
        ));
        assert!(matches!(p(b"delete  noreply\n"), Parsed::Request { .. }));
        assert!(matches!(p(b"delete k 10\r\n"), Parsed::Error { .. }));
    }

    #[test]
    fn arith_and_misc() {
        assert_eq!(
            p(b"incr k abc\r\n"),
            error("CLIENT_ERROR invalid numeric delta argument\r\n", 12)
        );
        assert!(matches!(
            p(b"decr k 18446744073709551615\r\n"),
            Parsed::Request {
                cmd: Command::Arith {
                    incr: false,
                    delta: u64::MAX,
                    ..
                },
                ..
            }
        ));
        assert_eq!(p(b"verbosity invalid\r\n"), error(BAD_FORMAT, 19));
        assert_eq!(p(b"verbosity\r\n"), error(BAD_FORMAT, 11));
        assert_eq!(p(b"verbosity noreply\r\n"), error("", 19));
        assert_eq!(p(b"slabs automove invalid\r\n"), error(BAD_FORMAT, 24));
        assert_eq!(
            p(b"flush_all invalid\r\n"),
            error("CLIENT_ERROR invalid exptime argument\r\n", 19)
        );
        assert_eq!(p(b"boguscommand x\r\n"), error("ERROR\r\n", 16));
        assert_eq!(p(b"SET k 0 0 1\r\n"), error("ERROR\r\n", 13));
        assert_eq!(p(b"GET / HTTP/1.0\r\n"), Parsed::Close);
        assert_eq!(p(&[b'x'; 3000]), Parsed::Close);
        assert_eq!(
            p(b"shutdown bogus\r\n"),
            error("CLIENT_ERROR invalid shutdown mode\r\n", 16)
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b"-"), None);
    }
}

//! memcached's meta protocol: `mg`, `ms`, `md`, `ma`, `mn` and `me`.
//!
//! [`parse`] turns a meta command line (and an `ms` data block) into a [`MetaRequest`];
//! [`compose`] writes the reply for an executed request. Both follow memcached 1.6.45's
//! `proto_parser.c` / `proto_text.c` (not only `protocol.txt`), because that is what
//! clients and memcached's `t/metaget.t` see:
//!
//! - Flags are validated by one shared pass for every command: a flag another meta command
//!   knows (`mg k x`, `md k v`) is accepted and ignored; only letters no meta command knows
//!   are `CLIENT_ERROR invalid flag`. A flag given twice is `CLIENT_ERROR duplicate flag`.
//! - A flag token must start with a letter or digit, or the whole line is
//!   `CLIENT_ERROR bad command line format`. More than 20 tokens (command and key included)
//!   is `CLIENT_ERROR options flags are too long`.
//! - Every `ma` flag error reads `CLIENT_ERROR invalid or duplicate flag`.
//! - The opaque limit counts the `O`: `O` plus at most 31 bytes.
//! - Errors are always sent, `q` or not.
//!
//! The parser borrows from the read buffer, never allocates, and never panics on any input.

use crate::reply::push_u64;
use crate::request::{
    ArithMode, Command, ItemInfo, Key, MetaCmd, MetaRequest, Outcome, SetMode, Status,
    DECODED_KEY_MAX,
};
use crate::text::{Limits, Parsed};
use crate::MAX_KEY_LEN;

pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";
pub const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag\r\n";
pub const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag\r\n";
pub const TOO_MANY_TOKENS: &str = "CLIENT_ERROR options flags are too long\r\n";
pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format\r\n";
pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value\r\n";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value\r\n";
pub const BAD_KEY_ENCODING: &str = "CLIENT_ERROR error decoding key\r\n";
/// `ma` replaces every flag error with this one.
pub const MA_BAD_FLAG: &str = "CLIENT_ERROR invalid or duplicate flag\r\n";
pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long\r\n";
pub const MS_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ms M token\r\n";
pub const MA_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ma M token\r\n";
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk\r\n";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache\r\n";
pub const MS_NO_MEMORY: &str = "SERVER_ERROR out of memory storing object\r\n";
/// `md x` / `ma` allocation failures.
pub const NO_MEMORY: &str = "SERVER_ERROR out of memory\r\n";
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// memcached's tokenizer keeps at most this many tokens of a line and ignores the rest.
const MAX_TOKENS: usize = 23;
/// More tokens than this (command and key included) is refused.
const MAX_META_TOKENS: usize = 20;
/// Longest `O` token, the `O` included.
const MAX_OPAQUE_TOKEN: usize = 32;
/// `ms` lengths above this are malformed (memcached's `INT_MAX - 2`).
const MAX_DATA_LEN: i32 = i32::MAX - 2;

fn error(reply: &'static str, consumed: usize) -> Parsed<'static> {
    Parsed::Error {
        reply,
        consumed,
        swallow: 0,
    }
}

fn request(cmd: Command<'_>, consumed: usize) -> Parsed<'_> {
    Parsed::Request { cmd, consumed }
}

/// Parse a meta command. `cmd` is the command word (`mg`, `ms`, `md`, `ma`, `mn`, `me`),
/// `buf` the read buffer starting at this request, `buf[..line_end]` the command line without
/// its `\r\n`/`\n`, and `consumed_line` the line's length including the newline.
pub fn parse<'a>(
    cmd: &[u8],
    buf: &'a [u8],
    line_end: usize,
    consumed_line: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let Some(line) = buf.get(..line_end) else {
        return error(BAD_FORMAT, consumed_line);
    };
    if consumed_line < line_end || consumed_line > buf.len() {
        return error(BAD_FORMAT, consumed_line);
    }
    // memcached refuses any request line shorter than 4 bytes, newline included ("mn\n").
    if consumed_line < 4 {
        return error(BAD_FORMAT, consumed_line);
    }
    match cmd {
        // Anything after `mn` is ignored.
        b"mn" => request(Command::MetaNoop, consumed_line),
        b"me" => parse_debug(line, consumed_line),
        b"mg" => parse_keyed(MetaCmd::Get, line, consumed_line),
        b"md" => parse_keyed(MetaCmd::Delete, line, consumed_line),
        b"ma" => parse_keyed(MetaCmd::Arith, line, consumed_line),
        b"ms" => parse_set(buf, line, consumed_line, limits),
        _ => error("ERROR\r\n", consumed_line),
    }
}

/// `mg`, `md`, `ma`: `<cm> <key> <flags>*`.
fn parse_keyed(cmd: MetaCmd, line: &[u8], consumed: usize) -> Parsed<'_> {
    let toks = Tokens::new(line, 2);
    if toks.bad_start || toks.n < 2 {
        return error(BAD_FORMAT, consumed);
    }
    let (mut req, mode) = match preparse(line, &toks, 2, cmd) {
        Ok(r) => r,
        Err(_) if cmd == MetaCmd::Arith => return error(MA_BAD_FLAG, consumed),
        Err(e) => return error(e, consumed),
    };
    if cmd == MetaCmd::Arith {
        req.arith_mode = match mode {
            0 | b'I' | b'+' => ArithMode::Incr,
            b'D' | b'-' => ArithMode::Decr,
            _ => return error(MA_BAD_MODE, consumed),
        };
    }
    if opaque_too_long(&req) {
        return error(OPAQUE_TOO_LONG, consumed);
    }
    request(Command::Meta(req), consumed)
}

/// `ms <key> <datalen> <flags>*\r\n<data>\r\n`.
fn parse_set<'a>(buf: &'a [u8], line: &'a [u8], consumed: usize, limits: &Limits) -> Parsed<'a> {
    let toks = Tokens::new(line, 3);
    if toks.n < 3 {
        return error(BAD_FORMAT, consumed);
    }
    let len = match tok_i32(toks.get(line, 2)) {
        Some(n) if (0..=MAX_DATA_LEN).contains(&n) => n as usize,
        _ => return error(BAD_FORMAT, consumed),
    };
    // From here on the data block is coming whatever we think of the line: swallow it.
    let swallow = len + 2;
    let refuse = |reply| Parsed::Error {
        reply,
        consumed,
        swallow,
    };
    if toks.bad_start {
        // memcached 1.6.45 does not swallow here (its tokenizer gives up before reading the
        // length) and then reads the data block as a command; we keep the stream in sync.
        return refuse(BAD_FORMAT);
    }
    let (mut req, mode) = match preparse(line, &toks, 3, MetaCmd::Set) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    req.set_mode = match mode {
        0 | b'S' => SetMode::Set,
        b'E' => SetMode::Add,
        b'A' => SetMode::Append,
        b'P' => SetMode::Prepend,
        b'R' => SetMode::Replace,
        _ => return refuse(MS_BAD_MODE),
    };
    if len > limits.max_value {
        return match req.key {
            Key::Raw(key) => Parsed::TooLarge {
                key,
                // memcached sends the error even under `q`.
                noreply: false,
                consumed,
                swallow,
            },
            // A decoded key cannot be borrowed from the buffer; the reply is the same, only
            // memcached's "delete the old value" side effect is lost.
            Key::Decoded { .. } => refuse(TOO_LARGE),
        };
    }
    if opaque_too_long(&req) {
        return refuse(OPAQUE_TOO_LONG);
    }
    let total = consumed + len + 2;
    if buf.len() < total {
        return Parsed::Incomplete { need: Some(total) };
    }
    if &buf[consumed + len..total] != b"\r\n" {
        return error(BAD_DATA_CHUNK, total);
    }
    req.data = &buf[consumed..consumed + len];
    request(Command::Meta(req), total)
}

/// `me <key> [b]`.
fn parse_debug(line: &[u8], consumed: usize) -> Parsed<'_> {
    let toks = Tokens::new(line, 2);
    if toks.bad_start || toks.n < 2 {
        return error(BAD_FORMAT, consumed);
    }
    let raw = toks.get(line, 1);
    if raw.len() > MAX_KEY_LEN {
        return error(BAD_FORMAT, consumed);
    }
    // Other tokens are ignored. (1.6.45 itself only decodes when a fourth token follows the
    // `b`, an off-by-one from its tokenizer rewrite; we decode whenever `b` is given.)
    let base64 = toks.n >= 3 && toks.get(line, 2) == b"b";
    let key = if base64 {
        match decode_key(raw) {
            Some(k) => k,
            None => return error(BAD_FORMAT, consumed),
        }
    } else {
        Key::Raw(raw)
    };
    request(Command::MetaDebug { key, base64 }, consumed)
}

fn opaque_too_long(req: &MetaRequest<'_>) -> bool {
    req.opaque.is_some_and(|o| o.len() + 1 > MAX_OPAQUE_TOKEN)
}

/// memcached's shared flag pass (`_meta_flag_preparse`). Returns the request and the raw `M`
/// mode byte (0 when none).
fn preparse<'a>(
    line: &'a [u8],
    toks: &Tokens,
    first_flag: usize,
    cmd: MetaCmd,
) -> Result<(MetaRequest<'a>, u8), &'static str> {
    let key = toks.get(line, 1);
    if key.len() > MAX_KEY_LEN {
        return Err(BAD_FORMAT);
    }
    if toks.n > MAX_META_TOKENS {
        return Err(TOO_MANY_TOKENS);
    }
    let mut req = MetaRequest::new(cmd, Key::Raw(key));
    // Where `t` may print the TTL before or after `T`/`N` change it (memcached applies them
    // in request order), record `T`/`N` among the returns as position markers.
    let ttl_markers = matches!(cmd, MetaCmd::Get | MetaCmd::Arith);
    let mut seen = [false; 128];
    let mut has_error = false;
    let mut errstr = BAD_FORMAT;
    let mut mode = 0u8;
    for i in first_flag..toks.n {
        let tok = toks.get(line, i);
        let Some(&flag) = tok.first() else { continue };
        if flag >= 127 || seen[flag as usize] {
            return Err(DUPLICATE_FLAG);
        }
        seen[flag as usize] = true;
        let arg = tok.get(1..).filter(|a| !a.is_empty());
        match flag {
            b'b' => {
                req.base64 = true;
                match decode_key(key) {
                    Some(k) => req.key = k,
                    None => {
                        errstr = BAD_KEY_ENCODING;
                        has_error = true;
                    }
                }
            }
            b'N' | b'T' | b'R' => match arg.and_then(tok_i32) {
                Some(v) => {
                    let v = Some(i64::from(v));
                    match flag {
                        b'N' => req.vivify = v,
                        b'T' => req.ttl = v,
                        _ => req.recache = v,
                    }
                    if ttl_markers && flag != b'R' {
                        req.push_return(flag);
                    }
                }
                None => {
                    errstr = BAD_TOKEN;
                    has_error = true;
                }
            },
            b'c' | b'f' | b'h' | b'k' | b'l' | b's' | b't' => req.push_return(flag),
            b'O' => {
                req.opaque = Some(&tok[1..]);
                req.push_return(b'O');
            }
            b'P' | b'L' => {}
            b'v' => req.ret_value = true,
            b'u' => req.no_bump = true,
            b'q' => req.quiet = true,
            b'x' => req.remove_value = true,
            b'I' => req.invalidate = true,
            // A bad F keeps whatever error text came before (memcached's quirk).
            b'F' => match arg.and_then(tok_u32) {
                Some(f) => req.client_flags = Some(f),
                None => has_error = true,
            },
            b'C' | b'E' => match arg.and_then(tok_u64) {
                Some(c) if flag == b'C' => req.compare_cas = Some(c),
                Some(c) => req.new_cas = Some(c),
                None => {
                    errstr = BAD_TOKEN;
                    has_error = true;
                }
            },
            b'J' => match arg.and_then(tok_u64) {
                Some(n) => req.initial = n,
                None => {
                    errstr = BAD_INITIAL;
                    has_error = true;
                }
            },
            b'D' => match arg.and_then(tok_u64) {
                Some(n) => req.delta = n,
                None => {
                    errstr = BAD_DELTA;
                    has_error = true;
                }
            },
            // The byte after `M`; a bare `M` sees the following space or line end.
            b'M' => mode = tok.get(1).copied().unwrap_or(b' '),
            _ => return Err(INVALID_FLAG),
        }
    }
    if has_error {
        Err(errstr)
    } else {
        Ok((req, mode))
    }
}

/// The first tokens of a line, split on spaces as memcached's tokenizer does.
struct Tokens {
    span: [(usize, usize); MAX_TOKENS],
    n: usize,
    /// A token from index `mstart` on starts with something other than a letter (`A`..`z`)
    /// or digit: memcached refuses the line.
    bad_start: bool,
}

impl Tokens {
    fn new(line: &[u8], mstart: usize) -> Tokens {
        let mut t = Tokens {
            span: [(0, 0); MAX_TOKENS],
            n: 0,
            bad_start: false,
        };
        let mut i = 0;
        while t.n < MAX_TOKENS {
            while i < line.len() && line[i] == b' ' {
                i += 1;
            }
            if i >= line.len() {
                break;
            }
            let start = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            if t.n >= mstart {
                let c = line[start];
                if !((b'A'..=b'z').contains(&c) || c.is_ascii_digit()) {
                    t.bad_start = true;
                }
            }
            t.span[t.n] = (start, i);
            t.n += 1;
        }
        t
    }

    fn get<'a>(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        match self.span.get(i) {
            Some(&(s, e)) if i < self.n => line.get(s..e).unwrap_or(&[]),
            _ => &[],
        }
    }
}

// Numbers as memcached's mcmc parses them: a length cap, then digits with overflow checks.

/// Signed 32-bit: at most 11 characters, an optional leading `-` (alone it reads as 0).
fn tok_i32(s: &[u8]) -> Option<i32> {
    if s.len() > 11 {
        return None;
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let mut sum: i32 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i32::from(b - b'0');
        sum = sum.checked_mul(10)?;
        sum = if neg {
            sum.checked_sub(d)?
        } else {
            sum.checked_add(d)?
        };
    }
    Some(sum)
}

fn tok_u32(s: &[u8]) -> Option<u32> {
    if s.len() > 11 {
        return None;
    }
    tok_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// Unsigned 64-bit: at most 22 characters (leading zeros allowed), digits only.
fn tok_u64(s: &[u8]) -> Option<u64> {
    if s.len() > 22 {
        return None;
    }
    let mut sum: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        sum = sum.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(sum)
}

// Base64 exactly as memcached's base64.c: characters outside the alphabet are skipped, the
// alphabet characters must come in whole blocks of four, and the first block holding `=`
// ends the input.

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decode `src` into `out`; `None` where memcached's decoder returns 0 (failure).
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let count = src.iter().filter(|&&c| b64_value(c).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return None;
    }
    let mut pos = 0;
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = b64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            n = 0;
            if pad > 0 {
                match pad {
                    1 => pos -= 1,
                    2 => pos -= 2,
                    _ => return None,
                }
                break;
            }
        }
    }
    (pos > 0).then_some(pos)
}

fn decode_key(src: &[u8]) -> Option<Key<'static>> {
    let mut buf = [0u8; DECODED_KEY_MAX];
    let len = base64_decode(src, &mut buf)?;
    Some(Key::Decoded {
        buf,
        len: u8::try_from(len).ok()?,
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Append `src` base64-encoded (standard alphabet, `=` padding).
pub fn base64_encode(out: &mut Vec<u8>, src: &[u8]) {
    out.reserve(src.len().div_ceil(3) * 4);
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        out.push(B64[usize::from(c[0] >> 2)]);
        out.push(B64[usize::from(((c[0] & 0x03) << 4) | (c[1] >> 4))]);
        out.push(B64[usize::from(((c[1] & 0x0f) << 2) | (c[2] >> 6))]);
        out.push(B64[usize::from(c[2] & 0x3f)]);
    }
    match *chunks.remainder() {
        [a] => {
            out.push(B64[usize::from(a >> 2)]);
            out.push(B64[usize::from((a & 0x03) << 4)]);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            out.push(B64[usize::from(a >> 2)]);
            out.push(B64[usize::from(((a & 0x03) << 4) | (b >> 4))]);
            out.push(B64[usize::from((b & 0x0f) << 2)]);
            out.push(b'=');
        }
        _ => {}
    }
}

/// Does `t` come before the `T` flag (or, without `T`, the `N` flag) in an `mg`/`ma`?
/// memcached applies `T`/`N` and prints `t` in request order, so `mg k t T30` shows the TTL
/// from before the touch (and `mg k t N30` that vivifies shows `-1`), while `mg k T30 t`
/// shows the new one. When this is true the executor should put the TTL as it was before
/// the update in [`ItemInfo::ttl`].
pub fn ttl_reported_before_update(req: &MetaRequest<'_>) -> bool {
    let r = req.returns();
    let pos = |flag: u8| r.iter().position(|&f| f == flag);
    match (pos(b't'), pos(b'T').or_else(|| pos(b'N'))) {
        (Some(t), Some(update)) => t < update,
        _ => false,
    }
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

fn push_flag_u64(out: &mut Vec<u8>, flag: u8, n: u64) {
    out.push(b' ');
    out.push(flag);
    push_u64(out, n);
}

fn push_opaque(out: &mut Vec<u8>, req: &MetaRequest<'_>) {
    out.extend_from_slice(b" O");
    out.extend_from_slice(req.opaque.unwrap_or_default());
}

/// ` k<key>`, or ` k<base64 key> b` for a base64 request.
fn push_key(out: &mut Vec<u8>, req: &MetaRequest<'_>) {
    out.extend_from_slice(b" k");
    if req.base64 {
        base64_encode(out, req.key.as_bytes());
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(req.key.as_bytes());
    }
}

/// Echo only the `O` and `k` return flags (status lines without an item).
fn push_opaque_and_key(out: &mut Vec<u8>, req: &MetaRequest<'_>) {
    for &f in req.returns() {
        match f {
            b'O' => push_opaque(out, req),
            b'k' => push_key(out, req),
            _ => {}
        }
    }
}

fn push_ttl(out: &mut Vec<u8>, ttl: i64) {
    out.extend_from_slice(b" t");
    push_i64(out, ttl);
}

/// Append memcached's reply to a meta request (`mg`/`ms`/`md`/`ma`) given what executing it
/// came to. `value` is the item's value for an `mg` hit (it is sent when the request has `v`
/// and `C` does not match the item's CAS); it is ignored otherwise.
pub fn compose(out: &mut Vec<u8>, req: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>) {
    // Errors are never hidden by `q`.
    match outcome.status {
        Status::TooLarge => return out.extend_from_slice(TOO_LARGE.as_bytes()),
        Status::NonNumeric => return out.extend_from_slice(NON_NUMERIC.as_bytes()),
        Status::NoMemory => match req.cmd {
            // A failed vivify is just a miss to mg.
            MetaCmd::Get => {}
            MetaCmd::Set => return out.extend_from_slice(MS_NO_MEMORY.as_bytes()),
            MetaCmd::Delete | MetaCmd::Arith => return out.extend_from_slice(NO_MEMORY.as_bytes()),
        },
        _ => {}
    }
    match req.cmd {
        MetaCmd::Get => compose_get(out, req, outcome, value),
        MetaCmd::Set => compose_set(out, req, outcome),
        MetaCmd::Delete => compose_delete(out, req, outcome),
        MetaCmd::Arith => compose_arith(out, req, outcome),
    }
}

fn compose_get(out: &mut Vec<u8>, req: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>) {
    if !matches!(
        outcome.status,
        Status::Hit | Status::Stored | Status::Deleted
    ) {
        // Miss: `EN`, with O and k echoed; `q` hides it.
        if !req.quiet {
            out.extend_from_slice(b"EN");
            push_opaque_and_key(out, req);
            out.extend_from_slice(b"\r\n");
        }
        return;
    }
    let info = outcome.item.unwrap_or_default();
    // A hit is always sent, `q` or not. `C` matching the item's CAS drops the value.
    let data = value.filter(|_| req.ret_value && req.compare_cas != Some(info.cas));
    match data {
        Some(d) => {
            out.reserve(d.len() + 64);
            out.extend_from_slice(b"VA ");
            push_u64(out, d.len() as u64);
        }
        None => out.extend_from_slice(b"HD"),
    }
    for &f in req.returns() {
        match f {
            b's' => push_flag_u64(out, b's', info.size as u64),
            b't' => push_ttl(out, info.ttl),
            b'c' => push_flag_u64(out, b'c', info.cas),
            b'f' => push_flag_u64(out, b'f', u64::from(info.flags)),
            b'l' => push_flag_u64(out, b'l', info.last_access),
            b'h' => push_flag_u64(out, b'h', u64::from(info.hit_before)),
            b'O' => push_opaque(out, req),
            b'k' => push_key(out, req),
            _ => {}
        }
    }
    // memcached's order; W and Z never come together.
    if outcome.lost {
        out.extend_from_slice(b" Z");
    }
    if outcome.stale {
        out.extend_from_slice(b" X");
    }
    if outcome.won {
        out.extend_from_slice(b" W");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(d) = data {
        out.extend_from_slice(d);
        out.extend_from_slice(b"\r\n");
    }
}

fn compose_set(out: &mut Vec<u8>, req: &MetaRequest<'_>, outcome: &Outcome) {
    let stored = matches!(
        outcome.status,
        Status::Stored | Status::Hit | Status::Deleted
    );
    let code: &[u8] = match outcome.status {
        _ if stored => {
            if req.quiet {
                return;
            }
            b"HD"
        }
        Status::NotStored => b"NS",
        Status::Exists => b"EX",
        _ => b"NF",
    };
    out.extend_from_slice(code);
    let item = outcome.item.filter(|_| stored);
    for &f in req.returns() {
        match f {
            b'O' => push_opaque(out, req),
            b'k' => push_key(out, req),
            // The new CAS, 0 when nothing was stored.
            b'c' => push_flag_u64(out, b'c', item.map_or(0, |i| i.cas)),
            // The stored size (the whole value after append/prepend), else the data sent.
            b's' => push_flag_u64(out, b's', item.map_or(req.data.len(), |i| i.size) as u64),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn compose_delete(out: &mut Vec<u8>, req: &MetaRequest<'_>, outcome: &Outcome) {
    let code: &[u8] = match outcome.status {
        Status::Deleted | Status::Hit | Status::Stored => {
            if req.quiet {
                return;
            }
            b"HD"
        }
        Status::Exists => b"EX",
        Status::NotStored => b"NS",
        _ => b"NF",
    };
    out.extend_from_slice(code);
    push_opaque_and_key(out, req);
    out.extend_from_slice(b"\r\n");
}

fn compose_arith(out: &mut Vec<u8>, req: &MetaRequest<'_>, outcome: &Outcome) {
    let code: &[u8] = match outcome.status {
        Status::Hit | Status::Stored | Status::Deleted => {
            // `q` hides a success, `VA` included.
            if !req.quiet {
                compose_arith_hit(out, req, &outcome.item.unwrap_or_default());
            }
            return;
        }
        Status::Exists => b"EX",
        Status::NotStored => b"NS",
        _ => b"NF",
    };
    out.extend_from_slice(code);
    push_opaque_and_key(out, req);
    out.extend_from_slice(b"\r\n");
}

fn compose_arith_hit(out: &mut Vec<u8>, req: &MetaRequest<'_>, info: &ItemInfo) {
    let mut num = itoa::Buffer::new();
    let num = num.format(info.number).as_bytes();
    if req.ret_value {
        out.extend_from_slice(b"VA ");
        push_u64(out, num.len() as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    for &f in req.returns() {
        match f {
            b'c' => push_flag_u64(out, b'c', info.cas),
            b't' => push_ttl(out, info.ttl),
            b'O' => push_opaque(out, req),
            b'k' => push_key(out, req),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    if req.ret_value {
        out.extend_from_slice(num);
        out.extend_from_slice(b"\r\n");
    }
}

/// `mn` → `MN\r\n`.
pub fn compose_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"MN\r\n");
}

/// `me` reply: `ME <key> exp=<n> la=<n> cas=<n> fetch=<yes|no> cls=<n> size=<n>\r\n`, or `EN\r\n`
/// when `info` is `None`. `key` is the item's key, base64-encoded in the reply when `base64`.
/// `info` = (seconds of life left or -1 for never, seconds since last access, CAS, fetched
/// before, size class id, total item size in bytes).
pub fn compose_debug(
    out: &mut Vec<u8>,
    key: &[u8],
    base64: bool,
    info: Option<(i64, u64, u64, bool, usize, usize)>,
) {
    let Some((exp, la, cas, fetched, class, size)) = info else {
        out.extend_from_slice(b"EN\r\n");
        return;
    };
    out.extend_from_slice(b"ME ");
    if base64 {
        base64_encode(out, key);
    } else {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b" exp=");
    push_i64(out, exp);
    out.extend_from_slice(b" la=");
    push_u64(out, la);
    out.extend_from_slice(b" cas=");
    push_u64(out, cas);
    out.extend_from_slice(if fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_u64(out, class as u64);
    out.extend_from_slice(b" size=");
    push_u64(out, size as u64);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Parsed<'_> {
        crate::text::parse(s, &Limits::default())
    }

    fn req(s: &[u8]) -> MetaRequest<'_> {
        match p(s) {
            Parsed::Request {
                cmd: Command::Meta(r),
                consumed,
            } => {
                assert_eq!(
                    consumed,
                    s.len(),
                    "consumed for {:?}",
                    String::from_utf8_lossy(s)
                );
                r
            }
            other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(s)),
        }
    }

    fn err(reply: &'static str, consumed: usize) -> Parsed<'static> {
        error(reply, consumed)
    }

    fn swallowing(reply: &'static str, consumed: usize, swallow: usize) -> Parsed<'static> {
        Parsed::Error {
            reply,
            consumed,
            swallow,
        }
    }

    /// Parse `s` (one whole meta request) and compose its reply for `outcome`.
    fn reply(s: &[u8], outcome: Outcome, value: Option<&[u8]>) -> String {
        let r = req(s);
        let mut out = Vec::new();
        compose(&mut out, &r, &outcome, value);
        String::from_utf8(out).unwrap()
    }

    fn hit(item: ItemInfo) -> Outcome {
        Outcome {
            item: Some(item),
            ..Outcome::status(Status::Hit)
        }
    }

    fn with(status: Status, item: ItemInfo) -> Outcome {
        Outcome {
            item: Some(item),
            ..Outcome::status(status)
        }
    }

    const TESUTO: &[u8] = "テスト".as_bytes();

    // ---------------------------------------------------------------- parse: mg

    #[test]
    fn mg_basic() {
        let r = req(b"mg foo s v\r\n");
        assert_eq!(r.cmd, MetaCmd::Get);
        assert_eq!(r.key, Key::Raw(b"foo"));
        assert_eq!(r.returns(), b"s");
        assert!(r.ret_value && !r.quiet && !r.base64);
        // Bare \n lines, extra spaces, pipelined bytes after the line.
        assert_eq!(
            p(b"mg  foo   v  \nmg bar v\r\n"),
            Parsed::Request {
                cmd: Command::Meta(MetaRequest {
                    ret_value: true,
                    ..MetaRequest::new(MetaCmd::Get, Key::Raw(b"foo"))
                }),
                consumed: 14
            }
        );
        let r = req(b"mg foo\r\n");
        assert_eq!(r, MetaRequest::new(MetaCmd::Get, Key::Raw(b"foo")));
    }

    #[test]
    fn mg_every_flag() {
        let r = req(b"mg Zm9v b c C5 E6 f h k l N30 O123 q R10 s t T-1 u v\r\n");
        assert_eq!(r.key.as_bytes(), b"foo");
        assert!(matches!(r.key, Key::Decoded { len: 3, .. }));
        assert!(r.base64);
        assert_eq!(r.compare_cas, Some(5));
        assert_eq!(r.new_cas, Some(6));
        assert_eq!(r.vivify, Some(30));
        assert_eq!(r.opaque, Some(&b"123"[..]));
        assert_eq!(r.recache, Some(10));
        assert_eq!(r.ttl, Some(-1));
        assert!(r.quiet && r.no_bump && r.ret_value);
        // Return flags in request order; T and N recorded as position markers.
        assert_eq!(r.returns(), b"cfhklNOstT");
        assert!(ttl_reported_before_update(&r));
        // 20 tokens (command and key included) is the limit.
        assert!(req(b"mg Zm9v b c C5 E6 f h k l N30 O123 q R10 s t T-1 u v x\r\n").remove_value);
        let s = b"mg Zm9v b c C5 E6 f h k l N30 O123 q R10 s t T-1 u v x I\r\n";
        assert_eq!(p(s), err(TOO_MANY_TOKENS, s.len()));
    }

    #[test]
    fn return_order_follows_request() {
        assert_eq!(req(b"mg k v t s Oq c k f\r\n").returns(), b"tsOckf");
        assert_eq!(req(b"mg k k O1 h l\r\n").returns(), b"kOhl");
        let r = req(b"mg k T30 t\r\n");
        assert_eq!(r.returns(), b"Tt");
        assert!(!ttl_reported_before_update(&r));
        assert!(ttl_reported_before_update(&req(b"mg k t N30\r\n")));
        assert!(!ttl_reported_before_update(&req(b"mg k t\r\n")));
    }

    #[test]
    fn proxy_hints_ignored() {
        let r = req(b"mg foo Pxyz L/path/ v\r\n");
        assert!(r.ret_value);
        assert_eq!(r.returns(), b"");
        assert_eq!(req(b"md foo P L\r\n").returns(), b"");
        // …but they are flags like others: not twice.
        assert_eq!(p(b"mg foo P1 P2\r\n"), err(DUPLICATE_FLAG, 14));
    }

    #[test]
    fn flags_of_other_commands_are_accepted() {
        // memcached validates flags with one shared table: `x` on mg is ignored, not refused.
        let r = req(b"mg foo x I F5 D2 J3 MZ\r\n");
        assert_eq!(r.returns(), b"");
        let r = req(b"md foo v s t c f\r\n");
        assert_eq!(r.returns(), b"stcf");
    }

    // ---------------------------------------------------------------- parse: ms

    #[test]
    fn ms_every_flag() {
        let s = b"ms Zm9v 2 b c C1 E2 F3 I k Oab q s T60 MA N30\r\nhi\r\nmn\r\n";
        let r = match p(s) {
            Parsed::Request {
                cmd: Command::Meta(r),
                consumed,
            } => {
                assert_eq!(consumed, s.len() - 4);
                r
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(r.cmd, MetaCmd::Set);
        assert_eq!(r.key.as_bytes(), b"foo");
        assert!(r.base64 && r.invalidate && r.quiet);
        assert_eq!(r.data, b"hi");
        assert_eq!(r.compare_cas, Some(1));
        assert_eq!(r.new_cas, Some(2));
        assert_eq!(r.client_flags, Some(3));
        assert_eq!(r.opaque, Some(&b"ab"[..]));
        assert_eq!(r.ttl, Some(60));
        assert_eq!(r.vivify, Some(30));
        assert_eq!(r.set_mode, SetMode::Append);
        assert_eq!(r.returns(), b"ckOs");
    }

    #[test]
    fn ms_plain_and_data() {
        let r = req(b"ms a 1\r\n1\r\n");
        assert_eq!(r.data, b"1");
        assert_eq!(r.set_mode, SetMode::Set);
        assert_eq!(r.client_flags, None);
        assert_eq!(req(b"ms a 0\r\n\r\n").data, b"");
        // The data block may hold anything.
        assert_eq!(req(b"ms a 4\r\n\r\n\0 \r\n").data, b"\r\n\0 ");
        assert_eq!(
            req(b"ms a 1 F4294967295\r\n1\r\n").client_flags,
            Some(u32::MAX)
        );
        assert_eq!(p(b"ms a 2\r\nh"), Parsed::Incomplete { need: Some(12) });
        assert_eq!(p(b"ms a 2\r\nhi"), Parsed::Incomplete { need: Some(12) });
        assert_eq!(p(b"ms a 2\r\nhi\r"), Parsed::Incomplete { need: Some(12) });
        assert_eq!(p(b"ms a 2\r\nhiX\r\n"), err(BAD_DATA_CHUNK, 12));
        assert_eq!(p(b"ms a 2\r\nhi\n\n"), err(BAD_DATA_CHUNK, 12));
    }

    #[test]
    fn ms_modes() {
        for (m, mode) in [
            (&b"ME"[..], SetMode::Add),
            (b"MA", SetMode::Append),
            (b"MP", SetMode::Prepend),
            (b"MR", SetMode::Replace),
            (b"MS", SetMode::Set),
            (b"MSet", SetMode::Set),
        ] {
            let mut s = b"ms k 2 T120 ".to_vec();
            s.extend_from_slice(m);
            s.extend_from_slice(b"\r\nhi\r\n");
            let Parsed::Request {
                cmd: Command::Meta(r),
                ..
            } = p(&s)
            else {
                panic!("{s:?}")
            };
            assert_eq!(r.set_mode, mode);
        }
        // metaget.t: invalid mode; the data block is swallowed.
        assert_eq!(
            p(b"ms modetest 2 T120 MZ\r\ntt\r\n"),
            swallowing(MS_BAD_MODE, 23, 4)
        );
        assert_eq!(p(b"ms k 2 M\r\ntt\r\n"), swallowing(MS_BAD_MODE, 10, 4));
        assert_eq!(p(b"ms k 2 Mi\r\ntt\r\n"), swallowing(MS_BAD_MODE, 11, 4));
    }

    #[test]
    fn ms_refusals() {
        // No readable length: nothing to swallow.
        assert_eq!(p(b"ms quiet\r\n"), err(BAD_FORMAT, 10));
        assert_eq!(p(b"ms k x\r\n"), err(BAD_FORMAT, 8));
        assert_eq!(p(b"ms k -1\r\n"), err(BAD_FORMAT, 9));
        assert_eq!(p(b"ms k 2147483646\r\n"), err(BAD_FORMAT, 17));
        assert_eq!(p(b"ms k 000000000002\r\n"), err(BAD_FORMAT, 19));
        // Readable length: the data block is swallowed.
        assert_eq!(p(b"ms k 2 m\r\nhi\r\n"), swallowing(INVALID_FLAG, 10, 4));
        assert_eq!(
            p(b"ms k 2 q q\r\nhi\r\n"),
            swallowing(DUPLICATE_FLAG, 12, 4)
        );
        assert_eq!(p(b"ms k 2 +q\r\nhi\r\n"), swallowing(BAD_FORMAT, 11, 4));
        assert_eq!(p(b"ms k 2 Tx\r\nhi\r\n"), swallowing(BAD_TOKEN, 11, 4));
        assert_eq!(p(b"ms k 2 F-1\r\nhi\r\n"), swallowing(BAD_FORMAT, 12, 4));
        assert_eq!(
            p(b"ms k 2 F4294967296\r\nhi\r\n"),
            swallowing(BAD_FORMAT, 20, 4)
        );
        assert_eq!(p(b"ms k 2 C\r\nhi\r\n"), swallowing(BAD_TOKEN, 10, 4));
        assert_eq!(
            p(b"ms k= 2 b\r\nhi\r\n"),
            swallowing(BAD_KEY_ENCODING, 11, 4)
        );
        let long = format!("ms {} 1\r\nx\r\n", "k".repeat(251));
        assert_eq!(
            p(long.as_bytes()),
            swallowing(BAD_FORMAT, long.len() - 3, 3)
        );
        let ok = format!("ms {} 1\r\nx\r\n", "k".repeat(250));
        assert_eq!(req(ok.as_bytes()).data, b"x");
        let opaque = format!("ms k 1 O{}\r\nx\r\n", "o".repeat(32));
        assert_eq!(
            p(opaque.as_bytes()),
            swallowing(OPAQUE_TOO_LONG, opaque.len() - 3, 3)
        );
        let mut many = b"ms k 1".to_vec();
        for f in b"cCEFIkOqsTMNPLvuxh" {
            many.push(b' ');
            many.push(*f);
            many.push(b'1');
        }
        many.extend_from_slice(b"\r\nx\r\n");
        assert_eq!(p(&many), swallowing(TOO_MANY_TOKENS, many.len() - 3, 3));
    }

    #[test]
    fn ms_too_large() {
        assert_eq!(
            p(b"ms foo 2000000 q T0\r\n"),
            Parsed::TooLarge {
                key: b"foo",
                noreply: false,
                consumed: 21,
                swallow: 2_000_002
            }
        );
        assert_eq!(
            p(b"ms Zm9v 2000000 b\r\n"),
            swallowing(TOO_LARGE, 19, 2_000_002)
        );
        // Flag errors come first; opaque length after the size check (memcached's order).
        assert_eq!(
            p(b"ms foo 2000000 MZ\r\n"),
            swallowing(MS_BAD_MODE, 19, 2_000_002)
        );
        let s = format!("ms foo 2000000 O{}\r\n", "o".repeat(40));
        assert!(matches!(p(s.as_bytes()), Parsed::TooLarge { .. }));
        let small = Limits { max_value: 2 };
        let s = b"ms k 3\r\nabc\r\n";
        assert!(matches!(
            crate::text::parse(s, &small),
            Parsed::TooLarge { swallow: 5, .. }
        ));
        assert!(matches!(
            crate::text::parse(b"ms k 2\r\nab\r\n", &small),
            Parsed::Request { .. }
        ));
    }

    // ---------------------------------------------------------------- parse: md, ma

    #[test]
    fn md_every_flag() {
        let r = req(b"md Zm9v b C1 E2 I k Ox q T30 x\r\n");
        assert_eq!(r.cmd, MetaCmd::Delete);
        assert_eq!(r.key.as_bytes(), b"foo");
        assert!(r.base64 && r.invalidate && r.quiet && r.remove_value);
        assert_eq!(r.compare_cas, Some(1));
        assert_eq!(r.new_cas, Some(2));
        assert_eq!(r.ttl, Some(30));
        assert_eq!(r.opaque, Some(&b"x"[..]));
        assert_eq!(r.returns(), b"kO");
        assert_eq!(p(b"md foo Dx\r\n"), err(BAD_DELTA, 11));
        assert_eq!(p(b"md foo Jx\r\n"), err(BAD_INITIAL, 11));
        assert_eq!(p(b"md\r\n"), err(BAD_FORMAT, 4));
    }

    #[test]
    fn ma_every_flag() {
        let r = req(b"ma foo C1 E2 N0 J10 D5 T30 MD Oo q t c v k\r\n");
        assert_eq!(r.cmd, MetaCmd::Arith);
        assert_eq!(r.compare_cas, Some(1));
        assert_eq!(r.new_cas, Some(2));
        assert_eq!(r.vivify, Some(0));
        assert_eq!(r.initial, 10);
        assert_eq!(r.delta, 5);
        assert_eq!(r.ttl, Some(30));
        assert_eq!(r.arith_mode, ArithMode::Decr);
        assert!(r.quiet && r.ret_value);
        assert_eq!(r.returns(), b"NTOtck");
        let r = req(b"ma foo\r\n");
        assert_eq!((r.delta, r.initial, r.arith_mode), (1, 0, ArithMode::Incr));
        assert_eq!(req(b"ma k D18446744073709551615\r\n").delta, u64::MAX);
        let r = req(b"ma Zm9v b k\r\n");
        assert_eq!(r.key.as_bytes(), b"foo");
        assert_eq!(r.returns(), b"k");
    }

    #[test]
    fn ma_modes_and_errors() {
        for (m, mode) in [
            (&b"MI"[..], ArithMode::Incr),
            (b"M+", ArithMode::Incr),
            (b"MD", ArithMode::Decr),
            (b"M-", ArithMode::Decr),
            (b"Mdecr", ArithMode::Incr),
        ] {
            let mut s = b"ma k ".to_vec();
            s.extend_from_slice(m);
            s.extend_from_slice(b"\r\n");
            match p(&s) {
                Parsed::Request {
                    cmd: Command::Meta(r),
                    ..
                } => assert_eq!(r.arith_mode, mode, "{m:?}"),
                // `Mdecr`: the mode byte is `d`, which is not a mode.
                other => {
                    assert_eq!(m, b"Mdecr");
                    assert_eq!(other, err(MA_BAD_MODE, 12));
                }
            }
        }
        assert_eq!(p(b"ma k MX\r\n"), err(MA_BAD_MODE, 9));
        assert_eq!(p(b"ma k M\r\n"), err(MA_BAD_MODE, 8));
        // Every flag error of ma reads the same.
        assert_eq!(p(b"ma k Dx\r\n"), err(MA_BAD_FLAG, 9));
        assert_eq!(p(b"ma k J\r\n"), err(MA_BAD_FLAG, 8));
        assert_eq!(p(b"ma k m\r\n"), err(MA_BAD_FLAG, 8));
        assert_eq!(p(b"ma k v v\r\n"), err(MA_BAD_FLAG, 10));
        assert_eq!(p(b"ma k= b\r\n"), err(MA_BAD_FLAG, 9));
        let long = format!("ma {}\r\n", "k".repeat(251));
        assert_eq!(p(long.as_bytes()), err(MA_BAD_FLAG, long.len()));
        // …but the tokenizer's and the opaque's are their own.
        assert_eq!(p(b"ma k -\r\n"), err(BAD_FORMAT, 8));
        let opaque = format!("ma k O{}\r\n", "o".repeat(32));
        assert_eq!(p(opaque.as_bytes()), err(OPAQUE_TOO_LONG, opaque.len()));
    }

    // ---------------------------------------------------------------- parse: errors

    #[test]
    fn errors() {
        assert_eq!(p(b" \n"), err(BAD_FORMAT, 2));
        assert_eq!(p(b"\r\n"), err(BAD_FORMAT, 2));
        assert_eq!(p(b"mg\r\n"), err(BAD_FORMAT, 4));
        assert_eq!(p(b"mg    \r\n"), err(BAD_FORMAT, 8));
        assert_eq!(p(b"mg foo m o o o o o o o o o\r\n"), err(INVALID_FLAG, 28));
        assert_eq!(p(b"mg foo v v\r\n"), err(DUPLICATE_FLAG, 12));
        assert_eq!(p(b"mg foo 5\r\n"), err(INVALID_FLAG, 10));
        assert_eq!(p(b"mg foo [\r\n"), err(INVALID_FLAG, 10));
        assert_eq!(p(b"mg foo +x\r\n"), err(BAD_FORMAT, 11));
        assert_eq!(p(b"mg foo v \xffx\r\n"), err(BAD_FORMAT, 13));
        // An invalid flag stops the pass at once, even after a soft error.
        assert_eq!(p(b"mg foo Tx m\r\n"), err(INVALID_FLAG, 13));
        assert_eq!(p(b"mg foo T\r\n"), err(BAD_TOKEN, 10));
        assert_eq!(p(b"mg foo N\r\n"), err(BAD_TOKEN, 10));
        assert_eq!(p(b"mg foo Rx\r\n"), err(BAD_TOKEN, 11));
        assert_eq!(p(b"mg foo T2147483648\r\n"), err(BAD_TOKEN, 20));
        assert_eq!(p(b"mg foo C18446744073709551616\r\n"), err(BAD_TOKEN, 30));
        assert_eq!(p(b"mg foo E-1\r\n"), err(BAD_TOKEN, 12));
        // A bad F keeps the error text before it.
        assert_eq!(p(b"mg foo F\r\n"), err(BAD_FORMAT, 10));
        assert_eq!(p(b"mg foo Cx F\r\n"), err(BAD_TOKEN, 13));
        assert_eq!(p(b"mg Zm9 b\r\n"), err(BAD_KEY_ENCODING, 10));
        assert_eq!(p(b"mg ==== b\r\n"), err(BAD_KEY_ENCODING, 11));
        let long = format!("mg {} v\r\n", "k".repeat(251));
        assert_eq!(p(long.as_bytes()), err(BAD_FORMAT, long.len()));
        let ok = format!("mg {} v\r\n", "k".repeat(250));
        assert_eq!(req(ok.as_bytes()).key.as_bytes().len(), 250);
        // Opaque: `O` plus at most 31 bytes.
        let ok = format!("mg k O{}\r\n", "o".repeat(31));
        assert_eq!(req(ok.as_bytes()).opaque.unwrap().len(), 31);
        let long = format!("mg k O{}\r\n", "o".repeat(32));
        assert_eq!(p(long.as_bytes()), err(OPAQUE_TOO_LONG, long.len()));
        assert_eq!(req(b"mg k O\r\n").opaque, Some(&b""[..]));
        // Numbers: sign, length caps.
        assert_eq!(req(b"mg k T-\r\n").ttl, Some(0));
        assert_eq!(req(b"mg k T-2147483648\r\n").ttl, Some(-2147483648));
        assert_eq!(
            req(b"mg k C0000000000000000000001\r\n").compare_cas,
            Some(1)
        );
        let s = b"mg k C00000000000000000000001\r\n";
        assert_eq!(p(s), err(BAD_TOKEN, s.len()));
        // Beyond memcached's 23 tokens nothing is looked at: too many tokens wins.
        let mut s = b"mg k".to_vec();
        for f in b"abcdefghijklmnopqrstuvwxyz" {
            s.push(b' ');
            s.push(*f);
        }
        s.extend_from_slice(b" +\r\n");
        assert_eq!(p(&s), err(TOO_MANY_TOKENS, s.len()));
        assert_eq!(p(b"mx foo\r\n"), err("ERROR\r\n", 8));
    }

    #[test]
    fn noop_and_debug() {
        assert_eq!(
            p(b"mn\r\n"),
            Parsed::Request {
                cmd: Command::MetaNoop,
                consumed: 4
            }
        );
        assert_eq!(
            p(b"mn ignored +\r\n"),
            Parsed::Request {
                cmd: Command::MetaNoop,
                consumed: 14
            }
        );
        // memcached: any line under 4 bytes is malformed, so a bare-\n `mn` is too.
        assert_eq!(p(b"mn\n"), err(BAD_FORMAT, 3));
        assert_eq!(
            p(b"me foo\r\n"),
            Parsed::Request {
                cmd: Command::MetaDebug {
                    key: Key::Raw(b"foo"),
                    base64: false
                },
                consumed: 8
            }
        );
        let Parsed::Request {
            cmd: Command::MetaDebug { key, base64: true },
            consumed: 15,
        } = p(b"me Zm9vYg== b\r\n")
        else {
            panic!()
        };
        assert_eq!(key.as_bytes(), b"foob");
        assert_eq!(p(b"me Zm9 b\r\n"), err(BAD_FORMAT, 10));
        assert_eq!(p(b"me\r\n"), err(BAD_FORMAT, 4));
        assert_eq!(p(b"me foo +\r\n"), err(BAD_FORMAT, 10));
        let long = format!("me {}\r\n", "k".repeat(251));
        assert_eq!(p(long.as_bytes()), err(BAD_FORMAT, long.len()));
        assert!(matches!(
            p(b"me foo x y\r\n"),
            Parsed::Request {
                cmd: Command::MetaDebug { base64: false, .. },
                ..
            }
        ));
    }

    #[test]
    fn base64() {
        let mut out = [0u8; DECODED_KEY_MAX];
        let n = base64_decode(b"44OG44K544OI", &mut out).unwrap();
        assert_eq!(&out[..n], TESUTO);
        let dec = |s: &[u8]| {
            let mut o = [0u8; 16];
            base64_decode(s, &mut o).map(|n| o[..n].to_vec())
        };
        assert_eq!(dec(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(dec(b"Zm8="), Some(b"fo".to_vec()));
        assert_eq!(dec(b"Zm9v"), Some(b"foo".to_vec()));
        // memcached's decoder skips characters outside the alphabet…
        assert_eq!(dec(b"Zm*9v"), Some(b"foo".to_vec()));
        // …stops after the first padded block…
        assert_eq!(dec(b"Zg==Zm9v"), Some(b"f".to_vec()));
        // …and refuses what does not come in fours or pads thrice.
        assert_eq!(dec(b"Zm9"), None);
        assert_eq!(dec(b"Z==="), None);
        assert_eq!(dec(b""), None);
        assert_eq!(dec(b"****"), None);
        assert_eq!(dec(b"Zm9vZm9vZm9vZm9vZm9vZm9v"), None); // longer than `out`
        for src in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            TESUTO,
        ] {
            let mut enc = Vec::new();
            base64_encode(&mut enc, src);
            if src.is_empty() {
                assert!(enc.is_empty());
                continue;
            }
            assert_eq!(dec(&enc).as_deref(), Some(src), "{enc:?}");
        }
        let mut enc = Vec::new();
        base64_encode(&mut enc, TESUTO);
        assert_eq!(enc, b"44OG44K544OI");
        // The longest key decodes into a Key::Decoded.
        let k = "A".repeat(246) + "==";
        let s = format!("mg {k} b k\r\n");
        assert_eq!(req(s.as_bytes()).key.as_bytes().len(), 184);
        let k = "A".repeat(248);
        let s = format!("mg {k} b k\r\n");
        assert_eq!(req(s.as_bytes()).key.as_bytes().len(), 186);
    }

    // ---------------------------------------------------------------- compose: mg

    const ITEM: ItemInfo = ItemInfo {
        flags: 7,
        cas: 5,
        ttl: -1,
        last_access: 3,
        hit_before: true,
        size: 2,
        number: 0,
    };

    #[test]
    fn mg_replies() {
        // metaget.t: `VA 2 s2`.
        assert_eq!(
            reply(b"mg foo2 s v\r\n", hit(ITEM), Some(b"ho")),
            "VA 2 s2\r\nho\r\n"
        );
        assert_eq!(
            reply(b"mg foo s t c f l h Oop k\r\n", hit(ITEM), None),
            "HD s2 t-1 c5 f7 l3 h1 Oop kfoo\r\n"
        );
        assert_eq!(
            reply(
                b"mg foo k Oop h l f c t s v\r\n",
                hit(ItemInfo {
                    ttl: 30,
                    hit_before: false,
                    ..ITEM
                }),
                Some(b"ho")
            ),
            "VA 2 kfoo Oop h0 l3 f7 c5 t30 s2\r\nho\r\n"
        );
        assert_eq!(reply(b"mg foo\r\n", hit(ITEM), None), "HD\r\n");
        // A hit is sent under q.
        assert_eq!(
            reply(b"mg quiet v q\r\n", hit(ITEM), Some(b"bo")),
            "VA 2\r\nbo\r\n"
        );
        assert_eq!(
            reply(
                b"mg quietautov s N30 t q\r\n",
                Outcome {
                    won: true,
                    ..hit(ItemInfo {
                        size: 0,
                        ttl: 30,
                        ..ITEM
                    })
                },
                Some(b"")
            ),
            "HD s0 t30 W\r\n"
        );
        // C matching the CAS drops the value; a mismatch keeps it.
        assert_eq!(
            reply(b"mg va_set C5 v c\r\n", hit(ITEM), Some(b"va")),
            "HD c5\r\n"
        );
        assert_eq!(
            reply(b"mg va_set C99999 v c\r\n", hit(ITEM), Some(b"va")),
            "VA 2 c5\r\nva\r\n"
        );
        // Vivified stub: VA 0.
        assert_eq!(
            reply(
                b"mg needwin s c v N30 t\r\n",
                Outcome {
                    won: true,
                    ..hit(ItemInfo {
                        size: 0,
                        ttl: 30,
                        cas: 9,
                        ..ITEM
                    })
                },
                Some(b"")
            ),
            "VA 0 s0 c9 t30 W\r\n\r\n"
        );
        // Base64 key returned encoded, with b.
        assert_eq!(
            reply(b"mg 44OG44K544OI b v k\r\n", hit(ITEM), Some(b"po")),
            "VA 2 k44OG44K544OI b\r\npo\r\n"
        );
    }

    #[test]
    fn mg_win_stale_lost() {
        let o = |won, stale, lost| Outcome {
            won,
            stale,
            lost,
            ..hit(ITEM)
        };
        assert_eq!(
            reply(b"mg k c\r\n", o(true, false, false), None),
            "HD c5 W\r\n"
        );
        assert_eq!(
            reply(b"mg k c\r\n", o(false, false, true), None),
            "HD c5 Z\r\n"
        );
        assert_eq!(
            reply(b"mg k c\r\n", o(true, true, false), None),
            "HD c5 X W\r\n"
        );
        assert_eq!(
            reply(b"mg k c\r\n", o(false, true, true), None),
            "HD c5 Z X\r\n"
        );
        assert_eq!(
            reply(b"mg k s v\r\n", o(false, true, true), Some(b"ab")),
            "VA 2 s2 Z X\r\nab\r\n"
        );
    }

    #[test]
    fn mg_miss() {
        let miss = Outcome::status(Status::Miss);
        assert_eq!(reply(b"mg none s v\r\n", miss, None), "EN\r\n");
        assert_eq!(reply(b"mg none s v q\r\n", miss, None), "");
        // Only O and k are echoed on a miss.
        assert_eq!(
            reply(b"mg none s Oop t k v c\r\n", miss, None),
            "EN Oop knone\r\n"
        );
        assert_eq!(reply(b"mg Zm9v b k\r\n", miss, None), "EN kZm9v b\r\n");
        assert_eq!(
            reply(b"mg k N30 v\r\n", Outcome::status(Status::NoMemory), None),
            "EN\r\n"
        );
        assert_eq!(
            reply(b"mg k v q\r\n", Outcome::status(Status::NonNumeric), None),
            NON_NUMERIC
        );
    }

    // ---------------------------------------------------------------- compose: ms

    #[test]
    fn ms_replies() {
        let stored = |cas, size| {
            with(
                Status::Stored,
                ItemInfo {
                    cas,
                    size,
                    ..ItemInfo::default()
                },
            )
        };
        assert_eq!(reply(b"ms a 1\r\n1\r\n", stored(1, 1), None), "HD\r\n");
        assert_eq!(
            reply(b"ms a 1 c\r\n1\r\n", stored(123, 1), None),
            "HD c123\r\n"
        );
        assert_eq!(
            reply(b"ms a 1 Otest\r\n1\r\n", stored(1, 1), None),
            "HD Otest\r\n"
        );
        assert_eq!(reply(b"ms a 1 s\r\n1\r\n", stored(1, 1), None), "HD s1\r\n");
        assert_eq!(reply(b"ms a 1 k\r\n1\r\n", stored(1, 1), None), "HD ka\r\n");
        assert_eq!(reply(b"ms a 1 q c\r\n1\r\n", stored(1, 1), None), "");
        // Appended: the new total size.
        assert_eq!(
            reply(b"ms appendviv 2 MA N30 s\r\nko\r\n", stored(1, 4), None),
            "HD s4\r\n"
        );
        assert_eq!(
            reply(b"ms a 1 k s c O1\r\n1\r\n", stored(8, 1), None),
            "HD ka s1 c8 O1\r\n"
        );
        assert_eq!(
            reply(b"ms Zm9v 1 b k c\r\n1\r\n", stored(8, 1), None),
            "HD kZm9v b c8\r\n"
        );
        // Failures: the CAS reads 0, the size is the data sent; q does not hide them.
        let st = Outcome::status;
        assert_eq!(
            reply(b"ms msetcas 2 c C99\r\nio\r\n", st(Status::Exists), None),
            "EX c0\r\n"
        );
        assert_eq!(
            reply(b"ms k 2 q s c Ox k\r\nio\r\n", st(Status::NotStored), None),
            "NS s2 c0 Ox kk\r\n"
        );
        assert_eq!(
            reply(b"ms k 2 q C1\r\nio\r\n", st(Status::NotFound), None),
            "NF\r\n"
        );
        assert_eq!(
            reply(b"ms k 2 q k\r\nio\r\n", st(Status::TooLarge), None),
            TOO_LARGE
        );
        assert_eq!(
            reply(b"ms k 2 q k\r\nio\r\n", st(Status::NoMemory), None),
            MS_NO_MEMORY
        );
    }

    // ---------------------------------------------------------------- compose: md, ma

    #[test]
    fn md_replies() {
        let st = Outcome::status;
        assert_eq!(reply(b"md foo\r\n", st(Status::Deleted), None), "HD\r\n");
        assert_eq!(reply(b"md foo I T30\r\n", st(Status::Hit), None), "HD\r\n");
        assert_eq!(reply(b"md foo q\r\n", st(Status::Deleted), None), "");
        assert_eq!(
            reply(b"md deltest\r\n", st(Status::NotFound), None),
            "NF\r\n"
        );
        assert_eq!(reply(b"md k C1 q\r\n", st(Status::Exists), None), "EX\r\n");
        assert_eq!(
            reply(b"md foo Oa k q\r\n", st(Status::NotFound), None),
            "NF Oa kfoo\r\n"
        );
        assert_eq!(
            reply(b"md Zm9v b k Oa\r\n", st(Status::Deleted), None),
            "HD kZm9v b Oa\r\n"
        );
        assert_eq!(reply(b"md k x\r\n", st(Status::NoMemory), None), NO_MEMORY);
    }

    #[test]
    fn ma_replies() {
        let n = |number, cas, ttl| {
            hit(ItemInfo {
                number,
                cas,
                ttl,
                ..ItemInfo::default()
            })
        };
        let st = Outcome::status;
        assert_eq!(
            reply(b"ma cnt N0 J10 v\r\n", n(10, 1, -1), None),
            "VA 2\r\n10\r\n"
        );
        assert_eq!(reply(b"ma mo\r\n", n(2, 1, -1), None), "HD\r\n");
        assert_eq!(reply(b"ma mo\r\n", st(Status::NotFound), None), "NF\r\n");
        assert_eq!(
            reply(b"ma mo D1 q\r\n", st(Status::NotFound), None),
            "NF\r\n"
        );
        assert_eq!(reply(b"ma mi q D1\r\n", n(5, 1, -1), None), "");
        assert_eq!(reply(b"ma mi q v\r\n", n(5, 1, -1), None), "");
        assert_eq!(
            reply(b"ma mc N0 C99999 v\r\n", st(Status::Exists), None),
            "EX\r\n"
        );
        assert_eq!(
            reply(b"ma k t c v Ox k s f\r\n", n(5, 9, -1), None),
            "VA 1 t-1 c9 Ox kk\r\n5\r\n"
        );
        assert_eq!(
            reply(b"ma mu T300 v t\r\n", n(1, 9, 300), None),
            "VA 1 t300\r\n1\r\n"
        );
        assert_eq!(
            reply(b"ma k c\r\n", n(u64::MAX, 4000, -1), None),
            "HD c4000\r\n"
        );
        assert_eq!(
            reply(b"ma k v\r\n", n(u64::MAX, 1, -1), None),
            "VA 20\r\n18446744073709551615\r\n"
        );
        assert_eq!(
            reply(b"ma Zm9v b k Oz v c\r\n", st(Status::NotFound), None),
            "NF kZm9v b Oz\r\n"
        );
        assert_eq!(
            reply(b"ma k q\r\n", st(Status::NonNumeric), None),
            NON_NUMERIC
        );
        assert_eq!(reply(b"ma k q\r\n", st(Status::NoMemory), None), NO_MEMORY);
        assert_eq!(
            reply(b"ma k O1\r\n", st(Status::NotStored), None),
            "NS O1\r\n"
        );
    }

    #[test]
    fn noop_and_debug_replies() {
        let mut out = Vec::new();
        compose_noop(&mut out);
        assert_eq!(out, b"MN\r\n");
        out.clear();
        compose_debug(&mut out, b"foo", false, None);
        assert_eq!(out, b"EN\r\n");
        out.clear();
        compose_debug(&mut out, b"foo", false, Some((-1, 4, 12, false, 1, 66)));
        assert_eq!(out, b"ME foo exp=-1 la=4 cas=12 fetch=no cls=1 size=66\r\n");
        out.clear();
        compose_debug(&mut out, TESUTO, true, Some((30, 0, 2, true, 3, 80)));
        assert_eq!(
            out,
            b"ME 44OG44K544OI exp=30 la=0 cas=2 fetch=yes cls=3 size=80\r\n"
        );
    }

    // ---------------------------------------------------------------- robustness

    #[test]
    fn never_panics_on_garbled_requests() {
        let samples: &[&[u8]] = &[
            b"mg foo s v t c f l h k Oabc q u\r\n",
            b"mg Zm9v b k v N30 R10 T-1 E5 C6\r\n",
            b"mg 44OG44K544OI b v k\r\n",
            b"ms foo 2 T30 F5 c k s Ox MA N10\r\nhi\r\n",
            b"ms Zm9v 3 b I C12 E13 q\r\nabc\r\n",
            b"ms foo 0\r\n\r\n",
            b"ms foo 2000000 q\r\n",
            b"md foo C1 E2 I T30 x k Oq q\r\n",
            b"md Zm9v b k\r\n",
            b"ma foo N0 J10 D5 T30 MD v t c k Oo q\r\n",
            b"ma foo M+ D18446744073709551615\r\n",
            b"mn\r\n",
            b"me foo\r\n",
            b"me Zm9vYg== b\r\n",
            b"mg foo P1 L2 v\n",
            b"mg foo m o o o o o o o o o\r\n",
            b"mg a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
            b"ms k 2 MZ\r\ntt\r\n",
            b"ma k MD Dabc\r\n",
            b"mg Z=== b\r\n",
            b"me ==== b\r\n",
        ];
        let replacements = [
            0u8, b' ', b'\r', b'\n', b'-', b'+', b'b', b'O', b'M', b'T', b'9', b'=', b'q', 0x7f,
            0xff,
        ];
        let limits = [Limits::default(), Limits { max_value: 1 }];
        let outcomes = [
            hit(ITEM),
            Outcome::status(Status::Miss),
            Outcome::status(Status::Stored),
            Outcome::status(Status::NotStored),
            Outcome::status(Status::Exists),
            Outcome::status(Status::NotFound),
            Outcome::status(Status::Deleted),
            Outcome::status(Status::TooLarge),
            Outcome::status(Status::NoMemory),
            Outcome::status(Status::NonNumeric),
        ];
        let mut out = Vec::new();
        let mut check = |input: &[u8]| {
            for l in &limits {
                let parsed = crate::text::parse(input, l);
                match &parsed {
                    Parsed::Request { consumed, cmd } => {
                        assert!(*consumed <= input.len() && *consumed > 0);
                        if let Command::Meta(r) = cmd {
                            for o in &outcomes {
                                out.clear();
                                compose(&mut out, r, o, Some(b"value"));
                                compose(&mut out, r, o, None);
                            }
                        }
                        if let Command::MetaDebug { key, base64 } = cmd {
                            compose_debug(
                                &mut out,
                                key.as_bytes(),
                                *base64,
                                Some((1, 2, 3, true, 4, 5)),
                            );
                        }
                    }
                    Parsed::Error { consumed, .. } | Parsed::TooLarge { consumed, .. } => {
                        assert!(*consumed <= input.len() && *consumed > 0);
                    }
                    Parsed::Incomplete { need } => {
                        if let Some(n) = need {
                            assert!(*n > input.len());
                        }
                    }
                    Parsed::Close => {}
                }
                // Direct calls with inconsistent positions must not panic either.
                let n = input.len();
                for (le, cl) in [(n, n), (n + 1, n + 2), (0, n + 5), (n / 2, n / 3)] {
                    let _ = parse(b"mg", input, le, cl, l);
                    let _ = parse(b"ms", input, le, cl, l);
                    let _ = parse(b"me", input, le, cl, l);
                }
            }
        };
        for s in samples {
            for end in 0..=s.len() {
                check(&s[..end]);
            }
            let mut v = s.to_vec();
            for i in 0..v.len() {
                let orig = v[i];
                for &r in &replacements {
                    v[i] = r;
                    check(&v);
                }
                v[i] = orig;
            }
            // Two adjacent bytes swapped, and a byte dropped.
            for i in 1..v.len() {
                v.swap(i - 1, i);
                check(&v);
                v.swap(i - 1, i);
                let mut d = v.clone();
                d.remove(i);
                check(&d);
            }
        }
    }
}

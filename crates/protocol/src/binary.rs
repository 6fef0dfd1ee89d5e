//! memcached's binary protocol (deprecated upstream since 1.6, still spoken by memcapable,
//! libmemcached's binary mode, bmemcached, memtier's `memcache_binary` and repcached-style
//! SetQ/DeleteQ replication streams).
//!
//! Every packet is a 24-byte big-endian header followed by `extras`, `key` and `value`:
//!
//! ```text
//! magic(1) opcode(1) keylen(2) extlen(1) datatype(1) vbucket|status(2) bodylen(4) opaque(4) cas(8)
//! ```
//!
//! [`parse`] looks at the front of the read buffer, like the text parser: it never allocates
//! and never consumes bytes itself. Key opcodes are expressed as a [`MetaRequest`] (the same
//! form the meta and text protocols map onto), so the executor has one implementation of each
//! operation; [`compose`] turns the executor's [`Outcome`] back into the reply memcached
//! 1.6.45 sends, including its quiet-mode rules (`proto_bin.c`):
//!
//! - quiet gets (GetQ/GetKQ/GATQ/GATKQ) send hits and stay silent on a miss;
//! - quiet mutations (SetQ … PrependQ, DeleteQ, IncrementQ/DecrementQ, FlushQ, QuitQ) send
//!   only errors;
//! - errors are always sent, with memcached's short message as the value.
//!
//! Framing decisions follow `try_read_command_binary`/`dispatch_bin_command`: a bad magic
//! byte closes the connection; `keylen + extlen > bodylen` is impossible and closes it too
//! (memcached sends `0x81` first; memha just closes); a key longer than 250 bytes or extras
//! of the wrong size for the opcode is a protocol error (`0x04 Invalid arguments`, then
//! memcached closes the connection).

use crate::request::{ArithMode, Key, MetaCmd, MetaRequest, Outcome, SetMode, Status};
use crate::MAX_KEY_LEN;

/// First byte of every request.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every response.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 24;

/// A non-storage packet may carry at most this many bytes beyond its extras and key (a stat
/// group, a SASL payload, junk after a GAT): anything larger cannot be a real client and the
/// connection is closed rather than buffered.
pub const MAX_NON_STORAGE_EXTRA: u64 = 64 * 1024;

/// Opcodes (`protocol_binary.h`).
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes (`protocol_binary.h`).
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const KEY_ENOENT: u16 = 0x01;
    pub const KEY_EEXISTS: u16 = 0x02;
    pub const E2BIG: u16 = 0x03;
    pub const EINVAL: u16 = 0x04;
    pub const NOT_STORED: u16 = 0x05;
    pub const DELTA_BADVAL: u16 = 0x06;
    pub const AUTH_ERROR: u16 = 0x20;
    pub const AUTH_CONTINUE: u16 = 0x21;
    pub const UNKNOWN_COMMAND: u16 = 0x81;
    pub const ENOMEM: u16 = 0x82;
}

/// One parsed request. Slices borrow from the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinRequest<'a> {
    /// The opcode as sent (quiet variants kept): replies echo it.
    pub opcode: u8,
    /// Copied back unchanged in every reply.
    pub opaque: u32,
    /// The header CAS (already folded into `compare_cas` for key operations).
    pub cas: u64,
    /// A quiet variant (GetQ, SetQ, …, FlushQ, QuitQ).
    pub quiet: bool,
    pub op: BinOp<'a>,
}

/// What a binary request asks for.
// MetaRequest is large (it can hold a decoded key), but boxing would allocate per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinOp<'a> {
    /// Get/GetQ/GetK/GetKQ/Set*/Add*/Replace*/Append*/Prepend*/Delete*/Increment*/
    /// Decrement*/Touch/GAT*/GATK*, expressed as the meta request that does the same.
    Key(MetaRequest<'a>),
    /// Flush/FlushQ; `delay` 0 = now (otherwise memcached's exptime rules: relative up to 30
    /// days, absolute beyond).
    Flush {
        delay: u32,
    },
    Noop,
    Version,
    /// Quit replies (QuitQ does not), then the connection closes.
    Quit,
    /// `group` is the key: empty = general stats, else `settings`, `items`, `detail dump` …
    Stat {
        group: &'a [u8],
    },
    /// 0x1b with its 4-byte extras. memcached 1.6.45 has no handler for it: it neither
    /// changes verbosity nor (observed) replies, so [`compose`] sends nothing.
    Verbosity,
    /// Answer `0x81 Unknown command` ([`compose`] does). SASL opcodes (no `-S`), range ops,
    /// 0x1b without extras and every unassigned opcode.
    Unknown,
    /// Well framed but wrong extras/key/body lengths for the opcode, or a key longer than
    /// 250 bytes: answer `0x04 Invalid arguments` and close the connection after the reply
    /// (memcached's `handle_binary_protocol_error`).
    Invalid,
}

/// The outcome of looking at the front of a read buffer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinParsed<'a> {
    /// A whole request: execute it, then drop `consumed` bytes.
    Request {
        req: BinRequest<'a>,
        consumed: usize,
    },
    /// Not enough bytes: `need` is the buffer length that would let parsing progress (the
    /// header, the header + extras + key, or the whole packet). Never more than
    /// `max_value + extras + key + 24`, nor `64 KiB + extras + key + 24` for non-storage ops.
    Incomplete { need: usize },
    /// A storage command whose value exceeds `max_value`: reply `0x03 Too large.` (always,
    /// even for quiet opcodes), drop `consumed` bytes (header + extras + key) and swallow
    /// `swallow` more bytes (the value) as they arrive. For Set/SetQ memcached also deletes
    /// any old item under `key` ([`too_large_deletes`]).
    TooLarge {
        opcode: u8,
        opaque: u32,
        quiet: bool,
        key: &'a [u8],
        consumed: usize,
        swallow: usize,
    },
    /// Bad magic or an impossible header (`keylen + extlen > bodylen`), or a non-storage
    /// packet with a huge body: close the connection without a reply.
    Close,
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Is `op` one of the quiet variants memcached implements?
pub fn is_quiet(op: u8) -> bool {
    use opcode::*;
    matches!(
        op,
        GETQ | GETKQ
            | SETQ
            | ADDQ
            | REPLACEQ
            | DELETEQ
            | INCREMENTQ
            | DECREMENTQ
            | QUITQ
            | FLUSHQ
            | APPENDQ
            | PREPENDQ
            | GATQ
            | GATKQ
    )
}

/// The non-quiet opcode a quiet one behaves as (identity for everything else).
pub fn base_opcode(op: u8) -> u8 {
    use opcode::*;
    match op {
        GETQ => GET,
        GETKQ => GETK,
        SETQ => SET,
        ADDQ => ADD,
        REPLACEQ => REPLACE,
        DELETEQ => DELETE,
        INCREMENTQ => INCREMENT,
        DECREMENTQ => DECREMENT,
        QUITQ => QUIT,
        FLUSHQ => FLUSH,
        APPENDQ => APPEND,
        PREPENDQ => PREPEND,
        GATQ => GAT,
        GATKQ => GATK,
        other => other,
    }
}

/// Does a too-large value for this opcode delete the old item (memcached does so for Set
/// and SetQ only, CAS or not)?
pub fn too_large_deletes(op: u8) -> bool {
    base_opcode(op) == opcode::SET
}

/// Opcodes whose body carries a value to store (and so may be large).
fn is_storage(base: u8) -> bool {
    use opcode::*;
    matches!(base, SET | ADD | REPLACE | APPEND | PREPEND)
}

/// Is the `extlen/keylen/bodylen` shape valid for `base`? `None` = not an opcode memcached
/// implements (answered Unknown whatever its shape), except Verbosity, handled by the caller.
fn shape_ok(base: u8, ext: usize, key: usize, body: u64) -> Option<bool> {
    use opcode::*;
    let kb = key as u64;
    let eb = ext as u64;
    Some(match base {
        VERSION | NOOP | QUIT | SASL_LIST_MECHS => ext == 0 && key == 0 && body == 0,
        FLUSH => key == 0 && body == eb && (ext == 0 || ext == 4),
        SET | ADD | REPLACE => ext == 8 && key != 0 && body >= kb + 8,
        GET | GETK => ext == 0 && key > 0 && body == kb,
        DELETE => ext == 0 && key > 0 && body == kb,
        INCREMENT | DECREMENT => ext == 20 && key > 0 && body == kb + 20,
        APPEND | PREPEND => ext == 0 && key > 0,
        STAT => ext == 0,
        SASL_AUTH | SASL_STEP => ext == 0 && key != 0,
        TOUCH | GAT | GATK => ext == 4 && key != 0,
        _ => return None,
    })
}

/// Parse the request at the front of `buf`. `max_value` is the largest value a storage
/// command may carry; larger ones come back as [`BinParsed::TooLarge`] without being
/// buffered.
pub fn parse(buf: &[u8], max_value: usize) -> BinParsed<'_> {
    let Some(&magic) = buf.first() else {
        return BinParsed::Incomplete { need: HEADER_LEN };
    };
    if magic != REQUEST_MAGIC {
        return BinParsed::Close;
    }
    if buf.len() < HEADER_LEN {
        return BinParsed::Incomplete { need: HEADER_LEN };
    }
    let op = buf[1];
    let keylen = be16(&buf[2..4]) as usize;
    let extlen = buf[4] as usize;
    let bodylen = be32(&buf[8..12]) as u64;
    let opaque = be32(&buf[12..16]);
    let cas = be64(&buf[16..24]);
    let quiet = is_quiet(op);
    let base = base_opcode(op);

    if (keylen + extlen) as u64 > bodylen {
        return BinParsed::Close;
    }
    // Header + extras + key: at most 24 + 255 + 65535 bytes.
    let head = HEADER_LEN + extlen + keylen;
    let vlen = bodylen - (extlen + keylen) as u64;
    let mk = |op_: BinOp<'static>| BinRequest {
        opcode: op,
        opaque,
        cas,
        quiet,
        op: op_,
    };

    // Protocol errors: memcached reads header + extras + key, replies and closes.
    let verbosity = op == opcode::VERBOSITY && extlen == 4 && keylen == 0 && bodylen == 4;
    let invalid = keylen > MAX_KEY_LEN || shape_ok(base, extlen, keylen, bodylen) == Some(false);
    if invalid {
        if buf.len() < head {
            return BinParsed::Incomplete { need: head };
        }
        return BinParsed::Request {
            req: mk(BinOp::Invalid),
            consumed: head,
        };
    }

    if is_storage(base) {
        if vlen > max_value as u64 {
            if buf.len() < head {
                return BinParsed::Incomplete { need: head };
            }
            return BinParsed::TooLarge {
                opcode: op,
                opaque,
                quiet,
                key: &buf[head - keylen..head],
                consumed: head,
                swallow: vlen as usize,
            };
        }
    } else if vlen > MAX_NON_STORAGE_EXTRA {
        return BinParsed::Close;
    }

    // Both bounds above keep this small: ≤ max_value + 65,814 bytes.
    let total = head + vlen as usize;
    if buf.len() < total {
        return BinParsed::Incomplete { need: total };
    }
    let extras = &buf[HEADER_LEN..HEADER_LEN + extlen];
    let key = &buf[HEADER_LEN + extlen..head];
    let value = &buf[head..total];

    let bop = if verbosity {
        BinOp::Verbosity
    } else {
        key_op(base, quiet, cas, extras, key, value)
    };
    BinParsed::Request {
        req: BinRequest {
            opcode: op,
            opaque,
            cas,
            quiet,
            op: bop,
        },
        consumed: total,
    }
}

/// Build the operation of a well-shaped packet.
fn key_op<'a>(
    base: u8,
    quiet: bool,
    cas: u64,
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
) -> BinOp<'a> {
    use opcode::*;
    let new = |cmd| {
        let mut m = MetaRequest::new(cmd, Key::Raw(key));
        m.quiet = quiet;
        m
    };
    let cas_opt = if cas != 0 { Some(cas) } else { None };
    match base {
        GET | GETK | TOUCH | GAT | GATK => {
            let mut m = new(MetaCmd::Get);
            m.ret_value = base != TOUCH;
            m.push_return(b'f');
            m.push_return(b'c');
            if base == GETK || base == GATK {
                m.push_return(b'k');
            }
            if matches!(base, TOUCH | GAT | GATK) {
                m.ttl = Some(be32(extras) as i64);
            }
            BinOp::Key(m)
        }
        SET | ADD | REPLACE => {
            let mut m = new(MetaCmd::Set);
            m.data = value;
            m.client_flags = Some(be32(&extras[0..4]));
            m.ttl = Some(be32(&extras[4..8]) as i64);
            m.compare_cas = cas_opt;
            // memcached turns any store with a header CAS into NREAD_CAS, whatever the
            // opcode: add/replace with a CAS behave exactly like a CAS set.
            m.set_mode = match base {
                ADD if cas_opt.is_none() => SetMode::Add,
                REPLACE if cas_opt.is_none() => SetMode::Replace,
                _ => SetMode::Set,
            };
            m.push_return(b'c');
            BinOp::Key(m)
        }
        APPEND | PREPEND => {
            let mut m = new(MetaCmd::Set);
            m.data = value;
            m.compare_cas = cas_opt;
            m.set_mode = if base == APPEND {
                SetMode::Append
            } else {
                SetMode::Prepend
            };
            m.push_return(b'c');
            BinOp::Key(m)
        }
        DELETE => {
            let mut m = new(MetaCmd::Delete);
            m.compare_cas = cas_opt;
            BinOp::Key(m)
        }
        INCREMENT | DECREMENT => {
            let mut m = new(MetaCmd::Arith);
            m.arith_mode = if base == INCREMENT {
                ArithMode::Incr
            } else {
                ArithMode::Decr
            };
            m.delta = be64(&extras[0..8]);
            m.initial = be64(&extras[8..16]);
            let exptime = be32(&extras[16..20]);
            m.vivify = if exptime == u32::MAX {
                None
            } else {
                Some(exptime as i64)
            };
            m.compare_cas = cas_opt;
            m.ret_value = true;
            m.push_return(b'c');
            BinOp::Key(m)
        }
        FLUSH => BinOp::Flush {
            delay: if extras.len() == 4 { be32(extras) } else { 0 },
        },
        NOOP => BinOp::Noop,
        VERSION => BinOp::Version,
        QUIT => BinOp::Quit,
        STAT => BinOp::Stat { group: key },
        _ => BinOp::Unknown,
    }
}

// ---------------------------------------------------------------------------------------
// Composing replies
// ---------------------------------------------------------------------------------------

/// Append one response packet.
#[allow(clippy::too_many_arguments)]
pub fn compose_packet(
    out: &mut Vec<u8>,
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let body = extras.len() + key.len() + value.len();
    out.reserve(HEADER_LEN + body);
    out.push(RESPONSE_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0); // datatype: raw bytes
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// A successful (status 0) response.
pub fn compose_simple(
    out: &mut Vec<u8>,
    opcode: u8,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    compose_packet(
        out,
        opcode,
        status::SUCCESS,
        opaque,
        cas,
        extras,
        key,
        value,
    );
}

/// memcached's message for an error status (`write_bin_error`).
pub fn error_message(status: u16) -> &'static str {
    match status {
        status::ENOMEM => "Out of memory",
        status::UNKNOWN_COMMAND => "Unknown command",
        status::KEY_ENOENT => "Not found",
        status::EINVAL => "Invalid arguments",
        status::KEY_EEXISTS => "Data exists for key.",
        status::E2BIG => "Too large.",
        status::DELTA_BADVAL => "Non-numeric server-side value for incr or decr",
        status::NOT_STORED => "Not stored.",
        status::AUTH_ERROR => "Auth failure.",
        _ => "",
    }
}

/// An error response: no extras, no key, CAS 0, memcached's message as the value.
pub fn compose_error(out: &mut Vec<u8>, opcode: u8, opaque: u32, status: u16) {
    compose_packet(
        out,
        opcode,
        status,
        opaque,
        0,
        &[],
        &[],
        error_message(status).as_bytes(),
    );
}

/// One Stat packet (`name` as the key, `value` as the value). An empty name and value is the
/// terminator that ends a stats reply.
pub fn compose_stat(out: &mut Vec<u8>, opaque: u32, name: &[u8], value: &[u8]) {
    compose_simple(out, opcode::STAT, opaque, 0, &[], name, value);
}

/// The binary status for an executor status, given the request's opcode (memcached maps a
/// failed store by command: add → exists, replace → not found, others → not stored).
pub fn status_code(op: u8, st: Status) -> u16 {
    match st {
        Status::Hit | Status::Stored | Status::Deleted => status::SUCCESS,
        Status::Miss | Status::NotFound => status::KEY_ENOENT,
        Status::Exists => status::KEY_EEXISTS,
        Status::NotStored => match base_opcode(op) {
            opcode::ADD => status::KEY_EEXISTS,
            opcode::REPLACE => status::KEY_ENOENT,
            _ => status::NOT_STORED,
        },
        Status::TooLarge => status::E2BIG,
        Status::NoMemory => status::ENOMEM,
        Status::NonNumeric => status::DELTA_BADVAL,
    }
}

fn is_success(st: Status) -> bool {
    matches!(st, Status::Hit | Status::Stored | Status::Deleted)
}

/// Compose the reply to `req` from the executor's `outcome`, applying memcached's quiet
/// rules; appends nothing when the reply is suppressed.
///
/// - Key operations: `key` is the request key (GetK/GATK echo it, also on a miss); `value`
///   is the item's data for a get/GAT hit. Flags and CAS come from `outcome.item`; Set*,
///   Add*, Replace*, Append*, Prepend*, Incr*/Decr* replies carry the item's new CAS
///   (`item.cas`), Delete replies CAS 0; Incr/Decr reply `item.number` as 8 bytes (falling
///   back to `value` parsed as decimal when `item` is `None`).
/// - Flush/Noop/Quit/Version/Stat: a success status gives an empty OK packet (Version: with
///   `value` as the version string), none for FlushQ/QuitQ; an error status gives the error.
///   Stat replies are normally built with [`compose_stat`] instead.
/// - Unknown → `0x81 Unknown command`, Invalid → `0x04 Invalid arguments` (the outcome is
///   ignored); Verbosity → nothing.
pub fn compose(
    out: &mut Vec<u8>,
    req: &BinRequest,
    key: &[u8],
    outcome: &Outcome,
    value: Option<&[u8]>,
) {
    let op = req.opcode;
    match &req.op {
        BinOp::Key(_) => compose_key(out, req, key, outcome, value),
        BinOp::Unknown => compose_error(out, op, req.opaque, status::UNKNOWN_COMMAND),
        BinOp::Invalid => compose_error(out, op, req.opaque, status::EINVAL),
        BinOp::Verbosity => {}
        BinOp::Flush { .. } | BinOp::Noop | BinOp::Quit | BinOp::Version | BinOp::Stat { .. } => {
            if is_success(outcome.status) {
                if !req.quiet {
                    compose_simple(out, op, req.opaque, 0, &[], &[], value.unwrap_or(&[]));
                }
            } else {
                compose_error(out, op, req.opaque, status_code(op, outcome.status));
            }
        }
    }
}

fn compose_key(
    out: &mut Vec<u8>,
    req: &BinRequest,
    key: &[u8],
    outcome: &Outcome,
    value: Option<&[u8]>,
) {
    use opcode::*;
    let op = req.opcode;
    let base = base_opcode(op);
    let get_like = matches!(base, GET | GETK | TOUCH | GAT | GATK);
    let with_key = matches!(base, GETK | GATK);
    let st = outcome.status;
    let item = outcome.item.unwrap_or_default();

    if is_success(st) {
        if get_like {
            // Quiet gets still send hits.
            let flags = item.flags.to_be_bytes();
            let k: &[u8] = if with_key { key } else { &[] };
            let v: &[u8] = if base == TOUCH {
                &[]
            } else {
                value.unwrap_or(&[])
            };
            compose_simple(out, op, req.opaque, item.cas, &flags, k, v);
            return;
        }
        if req.quiet {
            return;
        }
        match base {
            INCREMENT | DECREMENT => {
                let n = match outcome.item {
                    Some(i) => i.number,
                    None => value.map(parse_decimal).unwrap_or(0),
                };
                compose_simple(out, op, req.opaque, item.cas, &[], &[], &n.to_be_bytes());
            }
            DELETE => compose_simple(out, op, req.opaque, 0, &[], &[], &[]),
            _ => compose_simple(out, op, req.opaque, item.cas, &[], &[], &[]),
        }
        return;
    }

    if get_like && matches!(st, Status::Miss | Status::NotFound) {
        if req.quiet {
            return;
        }
        if with_key {
            // write_bin_miss_response: the key is the whole body, no message.
            compose_packet(out, op, status::KEY_ENOENT, req.opaque, 0, &[], key, &[]);
        } else {
            compose_error(out, op, req.opaque, status::KEY_ENOENT);
        }
        return;
    }
    compose_error(out, op, req.opaque, status_code(op, st));
}

/// Leading decimal digits of `s` (wrapping like strtoull would not; saturates).
fn parse_decimal(s: &[u8]) -> u64 {
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.saturating_mul(10).saturating_add((b - b'0') as u64);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::opcode::*;
    use super::*;
    use crate::request::ItemInfo;

    const MAX: usize = 1024 * 1024;

    /// Build a request packet.
    fn pkt(op: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
        let mut v = vec![REQUEST_MAGIC, op];
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.push(extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        v.extend_from_slice(&opaque.to_be_bytes());
        v.extend_from_slice(&cas.to_be_bytes());
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    fn set_extras(flags: u32, exp: u32) -> Vec<u8> {
        let mut e = flags.to_be_bytes().to_vec();
        e.extend_from_slice(&exp.to_be_bytes());
        e
    }

    fn arith_extras(delta: u64, initial: u64, exp: u32) -> Vec<u8> {
        let mut e = delta.to_be_bytes().to_vec();
        e.extend_from_slice(&initial.to_be_bytes());
        e.extend_from_slice(&exp.to_be_bytes());
        e
    }

    fn req(buf: &[u8]) -> (BinRequest<'_>, usize) {
        match parse(buf, MAX) {
            BinParsed::Request { req, consumed } => (req, consumed),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Parse an owned packet (leaked: test-only, keeps call sites short).
    fn reqv(buf: Vec<u8>) -> (BinRequest<'static>, usize) {
        req(Box::leak(buf.into_boxed_slice()))
    }

    fn meta<'a>(r: &'a BinRequest<'a>) -> &'a MetaRequest<'a> {
        match &r.op {
            BinOp::Key(m) => m,
            other => panic!("expected a key op, got {other:?}"),
        }
    }

    fn out_of(st: Status, item: Option<ItemInfo>) -> Outcome {
        let mut o = Outcome::status(st);
        o.item = item;
        o
    }

    fn item(flags: u32, cas: u64, number: u64) -> Option<ItemInfo> {
        Some(ItemInfo {
            flags,
            cas,
            number,
            ..Default::default()
        })
    }

    fn reply(r: &BinRequest, key: &[u8], o: Outcome, value: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        compose(&mut out, r, key, &o, value);
        out
    }

    /// Build an expected response packet byte by byte (independent of compose_packet).
    #[allow(clippy::too_many_arguments)]
    fn resp(
        op: u8,
        status: u16,
        opaque: u32,
        cas: u64,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let mut v = vec![0x81, op];
        v.extend_from_slice(&(key.len() as u16).to_be_bytes());
        v.push(extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        v.extend_from_slice(&opaque.to_be_bytes());
        v.extend_from_slice(&cas.to_be_bytes());
        v.extend_from_slice(extras);
        v.extend_from_slice(key);
        v.extend_from_slice(value);
        v
    }

    // --- Examples from memcached's protocol_binary documentation, byte for byte ---------

    #[test]
    fn doc_example_get_request() {
        let buf: &[u8] = &[
            0x80, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x48, 0x65, 0x6c, 0x6c,
            0x6f,
        ];
        let (r, consumed) = req(buf);
        assert_eq!(consumed, 29);
        assert_eq!((r.opcode, r.opaque, r.cas, r.quiet), (GET, 0, 0, false));
        let m = meta(&r);
        assert_eq!(m.cmd, MetaCmd::Get);
        assert_eq!(m.key.as_bytes(), b"Hello");
        assert!(m.ret_value);
        assert_eq!(m.returns(), b"fc");
        assert_eq!(m.ttl, None);
        assert!(!m.quiet);
    }

    #[test]
    fn doc_example_get_response() {
        let (r, _) = reqv(pkt(GET, &[], b"Hello", &[], 0, 0));
        let out = reply(
            &r,
            b"Hello",
            out_of(Status::Hit, item(0xdeadbeef, 1, 0)),
            Some(b"World"),
        );
        let expect: &[u8] = &[
            0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
            0x57, 0x6f, 0x72, 0x6c, 0x64,
        ];
        assert_eq!(out, expect);
    }

    #[test]
    fn doc_example_set_request() {
        let buf: &[u8] = &[
            0x80, 0x01, 0x00, 0x05, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
            0x00, 0x00, 0x0e, 0x10, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x57, 0x6f, 0x72, 0x6c, 0x64,
        ];
        let (r, consumed) = req(buf);
        assert_eq!(consumed, buf.len());
        let m = meta(&r);
        assert_eq!(m.cmd, MetaCmd::Set);
        assert_eq!(m.set_mode, SetMode::Set);
        assert_eq!(m.key.as_bytes(), b"Hello");
        assert_eq!(m.data, b"World");
        assert_eq!(m.client_flags, Some(0xdeadbeef));
        assert_eq!(m.ttl, Some(3600));
        assert_eq!(m.compare_cas, None);
        // Set reply: no extras/key/body, the new CAS.
        let out = reply(&r, b"Hello", out_of(Status::Stored, item(0, 1, 0)), None);
        let expect: &[u8] = &[
            0x81, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        ];
        assert_eq!(out, expect);
    }

    #[test]
    fn doc_example_incr() {
        let buf: &[u8] = &[
            0x80, 0x05, 0x00, 0x07, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x0e, 0x10, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x65, 0x72,
        ];
        let (r, consumed) = req(buf);
        assert_eq!(consumed, buf.len());
        let m = meta(&r);
        assert_eq!(m.cmd, MetaCmd::Arith);
        assert_eq!(m.arith_mode, ArithMode::Incr);
        assert_eq!(m.key.as_bytes(), b"counter");
        assert_eq!((m.delta, m.initial, m.vivify), (1, 0, Some(3600)));
        assert!(m.ret_value);
        let out = reply(&r, b"counter", out_of(Status::Hit, item(0, 5, 0)), None);
        let expect: &[u8] = &[
            0x81, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(out, expect);
    }

    // --- Parsing, opcode by opcode -------------------------------------------------------

    #[test]
    fn parse_gets() {
        for (op, quiet, with_key) in [
            (GET, false, false),
            (GETQ, true, false),
            (GETK, false, true),
            (GETKQ, true, true),
        ] {
            let buf = pkt(op, &[], b"key", &[], 0x01020304, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, 27);
            assert_eq!((r.opcode, r.opaque, r.quiet), (op, 0x01020304, quiet));
            let m = meta(&r);
            assert_eq!(m.cmd, MetaCmd::Get);
            assert_eq!(m.quiet, quiet);
            assert!(m.ret_value);
            assert_eq!(m.wants(b'k'), with_key);
            assert!(m.wants(b'f') && m.wants(b'c'));
            assert_eq!(m.ttl, None);
        }
    }

    #[test]
    fn parse_touch_and_gat() {
        for (op, quiet, with_key, value) in [
            (TOUCH, false, false, false),
            (GAT, false, false, true),
            (GATQ, true, false, true),
            (GATK, false, true, true),
            (GATKQ, true, true, true),
        ] {
            let buf = pkt(op, &10u32.to_be_bytes(), b"tk", &[], 7, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, 30);
            assert_eq!(r.quiet, quiet, "{op:#x}");
            let m = meta(&r);
            assert_eq!(m.cmd, MetaCmd::Get);
            assert_eq!(m.ttl, Some(10));
            assert_eq!(m.ret_value, value);
            assert_eq!(m.wants(b'k'), with_key);
            assert_eq!(m.key.as_bytes(), b"tk");
        }
        // exptime is raw and unsigned: 0xfffffffe stays a huge positive number.
        let buf = pkt(TOUCH, &0xfffffffeu32.to_be_bytes(), b"tk", &[], 7, 0);
        let (r, _) = req(&buf);
        assert_eq!(meta(&r).ttl, Some(0xfffffffe));
    }

    #[test]
    fn parse_stores() {
        for (op, quiet, mode) in [
            (SET, false, SetMode::Set),
            (SETQ, true, SetMode::Set),
            (ADD, false, SetMode::Add),
            (ADDQ, true, SetMode::Add),
            (REPLACE, false, SetMode::Replace),
            (REPLACEQ, true, SetMode::Replace),
        ] {
            let buf = pkt(op, &set_extras(82, 5), b"k", b"val\r\nue", 9, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, buf.len());
            assert_eq!(r.quiet, quiet);
            let m = meta(&r);
            assert_eq!(m.cmd, MetaCmd::Set);
            assert_eq!(m.set_mode, mode);
            assert_eq!(m.client_flags, Some(82));
            assert_eq!(m.ttl, Some(5));
            assert_eq!(m.data, b"val\r\nue");
            assert_eq!(m.compare_cas, None);
            assert_eq!(m.quiet, quiet);
        }
        // Empty value is fine.
        let buf = pkt(SET, &set_extras(0, 0), b"k", b"", 9, 0);
        assert_eq!(meta(&req(&buf).0).data, b"");
    }

    #[test]
    fn parse_store_with_cas_is_a_cas_set() {
        for op in [SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ] {
            let buf = pkt(op, &set_extras(1, 2), b"k", b"v", 9, 0x1122334455667788);
            let (r, _) = req(&buf);
            assert_eq!(r.cas, 0x1122334455667788);
            let m = meta(&r);
            assert_eq!(m.set_mode, SetMode::Set, "{op:#x}");
            assert_eq!(m.compare_cas, Some(0x1122334455667788));
        }
    }

    #[test]
    fn parse_append_prepend() {
        for (op, quiet, mode) in [
            (APPEND, false, SetMode::Append),
            (APPENDQ, true, SetMode::Append),
            (PREPEND, false, SetMode::Prepend),
            (PREPENDQ, true, SetMode::Prepend),
        ] {
            let buf = pkt(op, &[], b"ak", b" more", 1, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, buf.len());
            assert_eq!(r.quiet, quiet);
            let m = meta(&r);
            assert_eq!((m.cmd, m.set_mode), (MetaCmd::Set, mode));
            assert_eq!(m.data, b" more");
            assert_eq!(m.client_flags, None);
            assert_eq!(m.ttl, None);
            assert_eq!(m.compare_cas, None);
            let buf = pkt(op, &[], b"ak", b" more", 1, 42);
            assert_eq!(meta(&req(&buf).0).compare_cas, Some(42));
        }
    }

    #[test]
    fn parse_delete() {
        for (op, quiet) in [(DELETE, false), (DELETEQ, true)] {
            let buf = pkt(op, &[], b"dk", &[], 772, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, 26);
            assert_eq!((r.quiet, r.opaque), (quiet, 772));
            let m = meta(&r);
            assert_eq!(m.cmd, MetaCmd::Delete);
            assert_eq!(m.compare_cas, None);
            assert_eq!(m.quiet, quiet);
            let buf = pkt(op, &[], b"dk", &[], 772, 99);
            assert_eq!(meta(&req(&buf).0).compare_cas, Some(99));
        }
    }

    #[test]
    fn parse_arith() {
        for (op, quiet, mode) in [
            (INCREMENT, false, ArithMode::Incr),
            (INCREMENTQ, true, ArithMode::Incr),
            (DECREMENT, false, ArithMode::Decr),
            (DECREMENTQ, true, ArithMode::Decr),
        ] {
            let buf = pkt(op, &arith_extras(1 << 33, 185, 0), b"ck", &[], 8275753, 0);
            let (r, c) = req(&buf);
            assert_eq!(c, buf.len());
            assert_eq!(r.quiet, quiet);
            let m = meta(&r);
            assert_eq!((m.cmd, m.arith_mode), (MetaCmd::Arith, mode));
            assert_eq!((m.delta, m.initial), (1 << 33, 185));
            assert_eq!(m.vivify, Some(0));
            assert_eq!(m.compare_cas, None);
            assert!(m.ret_value);
            // 0xffffffff = don't create on a miss.
            let buf = pkt(op, &arith_extras(1, 0, u32::MAX), b"ck", &[], 1, 0);
            assert_eq!(meta(&req(&buf).0).vivify, None);
            let buf = pkt(op, &arith_extras(1, 0, 0xfffffffe), b"ck", &[], 1, 5);
            let (r, _) = req(&buf);
            assert_eq!(meta(&r).vivify, Some(0xfffffffe));
            assert_eq!(meta(&r).compare_cas, Some(5));
        }
    }

    #[test]
    fn parse_flush_noop_version_quit() {
        let (r, c) = reqv(pkt(FLUSH, &[], &[], &[], 3, 0));
        assert_eq!((r.op, c, r.quiet), (BinOp::Flush { delay: 0 }, 24, false));
        let (r, c) = reqv(pkt(FLUSHQ, &2u32.to_be_bytes(), &[], &[], 3, 0));
        assert_eq!((r.op, c, r.quiet), (BinOp::Flush { delay: 2 }, 28, true));
        let (r, c) = reqv(pkt(NOOP, &[], &[], &[], 3, 0));
        assert_eq!((r.op, c), (BinOp::Noop, 24));
        let (r, _) = reqv(pkt(VERSION, &[], &[], &[], 3, 0));
        assert_eq!(r.op, BinOp::Version);
        let (r, _) = reqv(pkt(QUIT, &[], &[], &[], 3, 0));
        assert_eq!((r.op, r.quiet), (BinOp::Quit, false));
        let (r, _) = reqv(pkt(QUITQ, &[], &[], &[], 3, 0));
        assert_eq!((r.op, r.quiet), (BinOp::Quit, true));
    }

    #[test]
    fn parse_stat() {
        let (r, c) = reqv(pkt(STAT, &[], &[], &[], 3, 0));
        assert_eq!((r.op, c), (BinOp::Stat { group: b"" }, 24));
        let (r, c) = reqv(pkt(STAT, &[], b"detail dump", &[], 3, 0));
        assert_eq!(
            (r.op, c),
            (
                BinOp::Stat {
                    group: b"detail dump"
                },
                35
            )
        );
        // A stray value after the group is consumed with the packet.
        let buf = pkt(STAT, &[], b"settings", b"junk", 3, 0);
        let (r, c) = req(&buf);
        assert_eq!((r.op, c), (BinOp::Stat { group: b"settings" }, buf.len()));
    }

    #[test]
    fn parse_unknown_and_verbosity() {
        // Verbosity with its extras.
        let (r, c) = reqv(pkt(VERBOSITY, &1u32.to_be_bytes(), &[], &[], 3, 0));
        assert_eq!((r.op, c), (BinOp::Verbosity, 28));
        // Without extras: unknown.
        let (r, _) = reqv(pkt(VERBOSITY, &[], &[], &[], 3, 0));
        assert_eq!(r.op, BinOp::Unknown);
        // SASL without -S: unknown (well-shaped).
        let (r, _) = reqv(pkt(SASL_LIST_MECHS, &[], &[], &[], 3, 0));
        assert_eq!(r.op, BinOp::Unknown);
        let buf = pkt(SASL_AUTH, &[], b"PLAIN", b"\0user\0pass", 3, 0);
        let (r, c) = req(&buf);
        assert_eq!((r.op, c), (BinOp::Unknown, buf.len()));
        let (r, _) = reqv(pkt(SASL_STEP, &[], b"PLAIN", b"x", 3, 0));
        assert_eq!(r.op, BinOp::Unknown);
        // Range ops and unassigned opcodes, with whatever body: unknown, whole packet.
        for op in [0x30u8, 0x31, 0x3c, 0x25, 0x7f, 0xff] {
            let buf = pkt(op, &[1, 2, 3], b"kk", b"vvvv", 3, 0);
            let (r, c) = req(&buf);
            assert_eq!((r.op, c, r.opcode), (BinOp::Unknown, buf.len(), op));
        }
    }

    #[test]
    fn parse_invalid_shapes() {
        let inv = |buf: Vec<u8>| {
            let head = HEADER_LEN + buf[4] as usize + be16(&buf[2..4]) as usize;
            match parse(&buf, MAX) {
                BinParsed::Request { req, consumed } => {
                    assert_eq!(req.op, BinOp::Invalid, "{buf:02x?}");
                    assert_eq!(consumed, head);
                }
                other => panic!("{other:?} for {buf:02x?}"),
            }
        };
        // Key too long (binary.t: "Key too large", 365 bytes).
        inv(pkt(GET, &[], &[b'x'; 365], &[], 1, 0));
        inv(pkt(SET, &set_extras(0, 0), &[b'x'; 251], b"v", 1, 0));
        // Even for an opcode memcached doesn't know.
        inv(pkt(0x30, &[], &[b'x'; 251], b"", 1, 0));
        inv(pkt(GET, &[0, 0, 0, 0], b"k", &[], 1, 0)); // extras on get
        inv(pkt(GET, &[], b"", &[], 1, 0)); // no key
        inv(pkt(GETK, &[], b"k", b"v", 1, 0)); // value on get
        inv(pkt(SET, &[], b"k", b"v", 1, 0)); // no extras
        inv(pkt(SET, &set_extras(0, 0), b"", b"v", 1, 0)); // no key
        inv(pkt(ADDQ, &[0; 4], b"k", b"v", 1, 0)); // short extras
        inv(pkt(APPEND, &[0; 8], b"k", b"v", 1, 0)); // extras on append
        inv(pkt(PREPENDQ, &[], b"", b"v", 1, 0)); // no key
        inv(pkt(DELETE, &[], b"k", b"v", 1, 0)); // value on delete
        inv(pkt(DELETEQ, &[0; 4], b"k", b"", 1, 0));
        inv(pkt(INCREMENT, &[0; 8], b"k", &[], 1, 0)); // short extras
        inv(pkt(DECREMENTQ, &[0; 20], b"", &[], 1, 0)); // no key
        inv(pkt(INCREMENT, &[0; 20], b"k", b"1", 1, 0)); // value on incr
        inv(pkt(TOUCH, &[], b"k", &[], 1, 0)); // no extras
        inv(pkt(GAT, &[0; 4], b"", &[], 1, 0)); // no key
        inv(pkt(GATKQ, &[0; 8], b"k", &[], 1, 0));
        inv(pkt(FLUSH, &[0; 8], &[], &[], 1, 0)); // wrong extras
        inv(pkt(FLUSHQ, &[], b"k", &[], 1, 0)); // key on flush
        inv(pkt(FLUSH, &[], &[], b"v", 1, 0));
        inv(pkt(NOOP, &[], b"k", &[], 1, 0));
        inv(pkt(NOOP, &[], &[], b"v", 1, 0));
        inv(pkt(VERSION, &[1], &[], &[], 1, 0));
        inv(pkt(QUIT, &[], b"k", &[], 1, 0));
        inv(pkt(QUITQ, &[], &[], b"v", 1, 0));
        inv(pkt(STAT, &[0; 4], &[], &[], 1, 0));
        inv(pkt(SASL_LIST_MECHS, &[], b"k", &[], 1, 0));
        inv(pkt(SASL_AUTH, &[], b"", b"data", 1, 0));
    }

    #[test]
    fn invalid_waits_for_extras_and_key_only() {
        // A 365-byte key with a large bogus value: answered once the key is in.
        let mut buf = pkt(GET, &[], &[b'x'; 365], &[b'v'; 100_000], 1, 0);
        buf.truncate(24 + 100);
        assert_eq!(parse(&buf, MAX), BinParsed::Incomplete { need: 24 + 365 });
        let buf = pkt(GET, &[], &[b'x'; 365], &[b'v'; 100_000], 1, 0);
        match parse(&buf[..24 + 365], MAX) {
            BinParsed::Request { req, consumed } => {
                assert_eq!((req.op, consumed), (BinOp::Invalid, 389))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn close_on_bad_magic_and_impossible_header() {
        assert_eq!(parse(b"G", MAX), BinParsed::Close);
        assert_eq!(parse(b"get foo\r\n", MAX), BinParsed::Close);
        assert_eq!(parse(&[0x81; 30], MAX), BinParsed::Close); // a response magic
        assert_eq!(
            parse(
                b"Here's a bunch of garbage that doesn't look like the bin prot.",
                MAX
            ),
            BinParsed::Close
        );
        // keylen > bodylen
        let mut buf = pkt(GET, &[], b"key", &[], 1, 0);
        buf[11] = 2;
        assert_eq!(parse(&buf, MAX), BinParsed::Close);
        // keylen + extlen > bodylen
        let mut buf = pkt(SET, &set_extras(0, 0), b"key", &[], 1, 0);
        buf[11] = 10;
        assert_eq!(parse(&buf[..24], MAX), BinParsed::Close);
    }

    #[test]
    fn close_on_huge_non_storage_body() {
        for op in [STAT, 0x30, SASL_AUTH, GAT, TOUCH] {
            let mut h = pkt(op, &[0; 4], b"k", &[], 1, 0);
            if op == STAT || op == SASL_AUTH || op == 0x30 {
                h = pkt(op, &[], b"k", &[], 1, 0);
            }
            let ext = h[4] as u32;
            h[8..12].copy_from_slice(&(ext + 1 + 64 * 1024 + 1).to_be_bytes());
            assert_eq!(parse(&h[..24], MAX), BinParsed::Close, "{op:#x}");
            // Exactly 64 KiB beyond extras + key is still buffered.
            h[8..12].copy_from_slice(&(ext + 1 + 64 * 1024).to_be_bytes());
            assert_eq!(
                parse(&h[..24], MAX),
                BinParsed::Incomplete {
                    need: 24 + ext as usize + 1 + 64 * 1024
                }
            );
        }
        // Four GiB on a get is a shape error, not a reason to buffer.
        let mut h = pkt(GET, &[], b"k", &[], 1, 0);
        h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse(&h, MAX),
            BinParsed::Request {
                req: BinRequest {
                    opcode: GET,
                    opaque: 1,
                    cas: 0,
                    quiet: false,
                    op: BinOp::Invalid
                },
                consumed: 25
            }
        );
    }

    #[test]
    fn too_large() {
        let big = vec![b'x'; 1025];
        for op in [SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ, APPEND, PREPENDQ] {
            let extras: &[u8] = if matches!(base_opcode(op), APPEND | PREPEND) {
                &[]
            } else {
                &[0; 8]
            };
            let buf = pkt(op, extras, b"toobig", &big, 77, 0);
            let head = 24 + extras.len() + 6;
            // Only the header + extras + key are needed.
            assert_eq!(
                parse(&buf[..head - 1], 1024),
                BinParsed::Incomplete { need: head }
            );
            assert_eq!(
                parse(&buf[..head], 1024),
                BinParsed::TooLarge {
                    opcode: op,
                    opaque: 77,
                    quiet: is_quiet(op),
                    key: b"toobig",
                    consumed: head,
                    swallow: 1025,
                }
            );
            // At the limit it is a request (waiting for the whole packet).
            let buf = pkt(op, extras, b"toobig", &big[..1024], 77, 0);
            assert_eq!(
                parse(&buf[..head], 1024),
                BinParsed::Incomplete { need: buf.len() }
            );
            assert!(matches!(parse(&buf, 1024), BinParsed::Request { .. }));
        }
        assert!(too_large_deletes(SET) && too_large_deletes(SETQ));
        assert!(!too_large_deletes(ADD) && !too_large_deletes(APPEND));
    }

    #[test]
    fn issue_192_packet() {
        // AddQ, keylen 1, extlen 8, bodylen 0xffffffe8.
        let buf: &[u8] = b"\x80\x12\x00\x01\x08\x00\x00\x00\xff\xff\xff\xe8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x01\x00\x00\x00\x00\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(
            parse(buf, MAX),
            BinParsed::TooLarge {
                opcode: ADDQ,
                opaque: 0,
                quiet: true,
                key: b"\x00",
                consumed: 33,
                swallow: 0xffffffe8 - 9,
            }
        );
    }

    #[test]
    fn incomplete() {
        assert_eq!(parse(&[], MAX), BinParsed::Incomplete { need: 24 });
        let buf = pkt(SET, &set_extras(1, 2), b"key", b"value", 1, 0);
        for n in 1..24 {
            assert_eq!(parse(&buf[..n], MAX), BinParsed::Incomplete { need: 24 });
        }
        for n in 24..buf.len() {
            assert_eq!(
                parse(&buf[..n], MAX),
                BinParsed::Incomplete { need: buf.len() }
            );
        }
        assert!(matches!(parse(&buf, MAX), BinParsed::Request { .. }));
    }

    #[test]
    fn pipelined_packets() {
        // binary.t's boundary test: two SetQ then a Noop in one buffer.
        let mut buf = pkt(
            SETQ,
            &set_extras(82, 0),
            b"test_key_1900",
            &[b'x'; 1900],
            0,
            0,
        );
        let first = buf.len();
        buf.extend(pkt(SETQ, &set_extras(82, 0), b"alt_k", b"blah", 0, 0));
        let second = buf.len();
        buf.extend(pkt(NOOP, &[], &[], &[], 1, 0));
        let mut at = 0;
        let mut seen = Vec::new();
        while at < buf.len() {
            let (r, c) = req(&buf[at..]);
            seen.push(r.opcode);
            at += c;
            assert!(at == first || at == second || at == buf.len());
        }
        assert_eq!(seen, [SETQ, SETQ, NOOP]);
    }

    // --- Composing ------------------------------------------------------------------------

    #[test]
    fn compose_get_family() {
        let hit = out_of(Status::Hit, item(19, 0x77, 0));
        let miss = Outcome::status(Status::Miss);
        let v = Some(&b"somevalue"[..]);
        let fl = 19u32.to_be_bytes();

        let (r, _) = reqv(pkt(GET, &[], b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GET, 0, 5, 0x77, &fl, b"", b"somevalue")
        );
        assert_eq!(
            reply(&r, b"x", miss, None),
            resp(GET, 1, 5, 0, b"", b"", b"Not found")
        );

        let (r, _) = reqv(pkt(GETQ, &[], b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GETQ, 0, 5, 0x77, &fl, b"", b"somevalue")
        );
        assert_eq!(reply(&r, b"x", miss, None), b"");
        assert_eq!(
            reply(&r, b"x", Outcome::status(Status::NotFound), None),
            b""
        );

        let (r, _) = reqv(pkt(GETK, &[], b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GETK, 0, 5, 0x77, &fl, b"x", b"somevalue")
        );
        // GetK miss: the key is the body, no message.
        assert_eq!(
            reply(&r, b"x", miss, None),
            resp(GETK, 1, 5, 0, b"", b"x", b"")
        );

        let (r, _) = reqv(pkt(GETKQ, &[], b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GETKQ, 0, 5, 0x77, &fl, b"x", b"somevalue")
        );
        assert_eq!(reply(&r, b"x", miss, None), b"");

        // Touch: flags and CAS, no value.
        let (r, _) = reqv(pkt(TOUCH, &10u32.to_be_bytes(), b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(TOUCH, 0, 5, 0x77, &fl, b"", b"")
        );
        assert_eq!(
            reply(&r, b"x", miss, None),
            resp(TOUCH, 1, 5, 0, b"", b"", b"Not found")
        );

        let (r, _) = reqv(pkt(GAT, &10u32.to_be_bytes(), b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GAT, 0, 5, 0x77, &fl, b"", b"somevalue")
        );
        assert_eq!(
            reply(&r, b"x", miss, None),
            resp(GAT, 1, 5, 0, b"", b"", b"Not found")
        );
        let (r, _) = reqv(pkt(GATQ, &10u32.to_be_bytes(), b"x", &[], 5, 0));
        assert_eq!(reply(&r, b"x", miss, None), b"");
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GATQ, 0, 5, 0x77, &fl, b"", b"somevalue")
        );
        let (r, _) = reqv(pkt(GATK, &10u32.to_be_bytes(), b"x", &[], 5, 0));
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GATK, 0, 5, 0x77, &fl, b"x", b"somevalue")
        );
        assert_eq!(
            reply(&r, b"x", miss, None),
            resp(GATK, 1, 5, 0, b"", b"x", b"")
        );
        let (r, _) = reqv(pkt(GATKQ, &10u32.to_be_bytes(), b"x", &[], 5, 0));
        assert_eq!(reply(&r, b"x", miss, None), b"");
        assert_eq!(
            reply(&r, b"x", hit, v),
            resp(GATKQ, 0, 5, 0x77, &fl, b"x", b"somevalue")
        );
        // Errors on a quiet get are still sent.
        assert_eq!(
            reply(&r, b"x", Outcome::status(Status::NoMemory), None),
            resp(GATKQ, 0x82, 5, 0, b"", b"", b"Out of memory")
        );
    }

    #[test]
    fn compose_stores() {
        let stored = out_of(Status::Stored, item(0, 0xabc, 0));
        let e = set_extras(0, 0);
        for (op, quiet) in [
            (SET, false),
            (SETQ, true),
            (ADD, false),
            (ADDQ, true),
            (REPLACE, false),
            (REPLACEQ, true),
        ] {
            let (r, _) = reqv(pkt(op, &e, b"k", b"v", 9, 0));
            let ok = reply(&r, b"k", stored, None);
            if quiet {
                assert_eq!(ok, b"");
            } else {
                assert_eq!(ok, resp(op, 0, 9, 0xabc, b"", b"", b""));
            }
            // CAS mismatch.
            assert_eq!(
                reply(&r, b"k", Outcome::status(Status::Exists), None),
                resp(op, 2, 9, 0, b"", b"", b"Data exists for key.")
            );
            // CAS on a missing key.
            assert_eq!(
                reply(&r, b"k", Outcome::status(Status::NotFound), None),
                resp(op, 1, 9, 0, b"", b"", b"Not found")
            );
            assert_eq!(
                reply(&r, b"k", Outcome::status(Status::TooLarge), None),
                resp(op, 3, 9, 0, b"", b"", b"Too large.")
            );
            assert_eq!(
                reply(&r, b"k", Outcome::status(Status::NoMemory), None),
                resp(op, 0x82, 9, 0, b"", b"", b"Out of memory")
            );
        }
        // NotStored depends on the command.
        let ns = Outcome::status(Status::NotStored);
        for (op, ext, st, msg) in [
            (ADD, &e[..], 2u16, &b"Data exists for key."[..]),
            (ADDQ, &e[..], 2, b"Data exists for key."),
            (REPLACE, &e[..], 1, b"Not found"),
            (REPLACEQ, &e[..], 1, b"Not found"),
            (APPEND, &[][..], 5, b"Not stored."),
            (APPENDQ, &[][..], 5, b"Not stored."),
            (PREPEND, &[][..], 5, b"Not stored."),
            (PREPENDQ, &[][..], 5, b"Not stored."),
            (SET, &e[..], 5, b"Not stored."),
        ] {
            let (r, _) = reqv(pkt(op, ext, b"k", b"v", 9, 0));
            assert_eq!(reply(&r, b"k", ns, None), resp(op, st, 9, 0, b"", b"", msg));
        }
        // Append success carries the CAS.
        let (r, _) = reqv(pkt(APPEND, &[], b"k", b"v", 9, 0));
        assert_eq!(
            reply(&r, b"k", stored, None),
            resp(APPEND, 0, 9, 0xabc, b"", b"", b"")
        );
        let (r, _) = reqv(pkt(PREPENDQ, &[], b"k", b"v", 9, 0));
        assert_eq!(reply(&r, b"k", stored, None), b"");
    }

    #[test]
    fn compose_delete() {
        let (r, _) = reqv(pkt(DELETE, &[], b"k", &[], 9, 0));
        // Delete replies CAS 0 even when the item had one (memcapable checks).
        assert_eq!(
            reply(&r, b"k", out_of(Status::Deleted, item(0, 55, 0)), None),
            resp(DELETE, 0, 9, 0, b"", b"", b"")
        );
        assert_eq!(
            reply(&r, b"k", Outcome::status(Status::Hit), None),
            resp(DELETE, 0, 9, 0, b"", b"", b"")
        );
        assert_eq!(
            reply(&r, b"k", Outcome::status(Status::NotFound), None),
            resp(DELETE, 1, 9, 0, b"", b"", b"Not found")
        );
        assert_eq!(
            reply(&r, b"k", Outcome::status(Status::Exists), None),
            resp(DELETE, 2, 9, 0, b"", b"", b"Data exists for key.")
        );
        let (r, _) = reqv(pkt(DELETEQ, &[], b"k", &[], 9, 0));
        assert_eq!(reply(&r, b"k", Outcome::status(Status::Deleted), None), b"");
        assert_eq!(
            reply(&r, b"k", Outcome::status(Status::NotFound), None),
            resp(DELETEQ, 1, 9, 0, b"", b"", b"Not found")
        );
    }

    #[test]
    fn compose_arith() {
        for (op, quiet) in [
            (INCREMENT, false),
            (INCREMENTQ, true),
            (DECREMENT, false),
            (DECREMENTQ, true),
        ] {
            let (r, _) = reqv(pkt(op, &arith_extras(1, 0, 0), b"c", &[], 4, 0));
            let hit = out_of(Status::Hit, item(0, 0x99, 8589934804));
            let ok = reply(&r, b"c", hit, None);
            if quiet {
                assert_eq!(ok, b"");
            } else {
                assert_eq!(
                    ok,
                    resp(op, 0, 4, 0x99, b"", b"", &8589934804u64.to_be_bytes())
                );
            }
            assert_eq!(
                reply(&r, b"c", Outcome::status(Status::NonNumeric), None),
                resp(
                    op,
                    6,
                    4,
                    0,
                    b"",
                    b"",
                    b"Non-numeric server-side value for incr or decr"
                )
            );
            assert_eq!(
                reply(&r, b"c", Outcome::status(Status::NotFound), None),
                resp(op, 1, 4, 0, b"", b"", b"Not found")
            );
            assert_eq!(
                reply(&r, b"c", Outcome::status(Status::Exists), None),
                resp(op, 2, 4, 0, b"", b"", b"Data exists for key.")
            );
            assert_eq!(
                reply(&r, b"c", Outcome::status(Status::NotStored), None),
                resp(op, 5, 4, 0, b"", b"", b"Not stored.")
            );
        }
        // Without item info the number comes from the value text.
        let (r, _) = reqv(pkt(INCREMENT, &arith_extras(1, 0, 0), b"c", &[], 4, 0));
        assert_eq!(
            reply(&r, b"c", Outcome::status(Status::Hit), Some(b"1099")),
            resp(INCREMENT, 0, 4, 0, b"", b"", &1099u64.to_be_bytes())
        );
    }

    #[test]
    fn compose_non_key_ops() {
        let ok = Outcome::status(Status::Hit);
        let (r, _) = reqv(pkt(NOOP, &[], &[], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, None),
            resp(NOOP, 0, 11, 0, b"", b"", b"")
        );
        let (r, _) = reqv(pkt(VERSION, &[], &[], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, Some(b"1.6.45")),
            resp(VERSION, 0, 11, 0, b"", b"", b"1.6.45")
        );
        let (r, _) = reqv(pkt(FLUSH, &[], &[], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, None),
            resp(FLUSH, 0, 11, 0, b"", b"", b"")
        );
        let (r, _) = reqv(pkt(FLUSHQ, &[], &[], &[], 11, 0));
        assert_eq!(reply(&r, b"", ok, None), b"");
        let (r, _) = reqv(pkt(QUIT, &[], &[], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, None),
            resp(QUIT, 0, 11, 0, b"", b"", b"")
        );
        let (r, _) = reqv(pkt(QUITQ, &[], &[], &[], 11, 0));
        assert_eq!(reply(&r, b"", ok, None), b"");
        let (r, _) = reqv(pkt(STAT, &[], b"bogus", &[], 11, 0));
        assert_eq!(
            reply(&r, b"", Outcome::status(Status::NotFound), None),
            resp(STAT, 1, 11, 0, b"", b"", b"Not found")
        );
        let (r, _) = reqv(pkt(0x30, &[], &[], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, None),
            resp(0x30, 0x81, 11, 0, b"", b"", b"Unknown command")
        );
        let (r, _) = reqv(pkt(GET, &[], &[b'x'; 300], &[], 11, 0));
        assert_eq!(
            reply(&r, b"", ok, None),
            resp(GET, 4, 11, 0, b"", b"", b"Invalid arguments")
        );
        let (r, _) = reqv(pkt(VERBOSITY, &[0; 4], &[], &[], 11, 0));
        assert_eq!(reply(&r, b"", ok, None), b"");
    }

    #[test]
    fn compose_helpers() {
        let mut out = Vec::new();
        compose_stat(&mut out, 0xa0b0c0d0, b"pid", b"1234");
        compose_stat(&mut out, 0xa0b0c0d0, b"", b"");
        let mut expect = resp(STAT, 0, 0xa0b0c0d0, 0, b"", b"pid", b"1234");
        expect.extend(resp(STAT, 0, 0xa0b0c0d0, 0, b"", b"", b""));
        assert_eq!(out, expect);
        assert_eq!(
            &out[..24],
            &[
                0x81, 0x10, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xa0, 0xb0,
                0xc0, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );

        let mut out = Vec::new();
        compose_simple(&mut out, GETK, 1, 2, &[0, 0, 0, 9], b"k", b"v");
        assert_eq!(out, resp(GETK, 0, 1, 2, &[0, 0, 0, 9], b"k", b"v"));

        for (st, msg) in [
            (status::KEY_ENOENT, "Not found"),
            (status::KEY_EEXISTS, "Data exists for key."),
            (status::E2BIG, "Too large."),
            (status::EINVAL, "Invalid arguments"),
            (status::NOT_STORED, "Not stored."),
            (
                status::DELTA_BADVAL,
                "Non-numeric server-side value for incr or decr",
            ),
            (status::AUTH_ERROR, "Auth failure."),
            (status::UNKNOWN_COMMAND, "Unknown command"),
            (status::ENOMEM, "Out of memory"),
        ] {
            let mut out = Vec::new();
            compose_error(&mut out, SETQ, 3, st);
            assert_eq!(out, resp(SETQ, st, 3, 0, b"", b"", msg.as_bytes()));
        }
    }

    // --- Robustness ------------------------------------------------------------------------

    fn corpus() -> Vec<Vec<u8>> {
        vec![
            pkt(GET, &[], b"Hello", &[], 1, 0),
            pkt(GETKQ, &[], b"k", &[], 2, 0),
            pkt(SET, &set_extras(0xdeadbeef, 3600), b"Hello", b"World", 3, 0),
            pkt(SETQ, &set_extras(1, 0), b"k", &[b'v'; 300], 4, 7),
            pkt(ADD, &set_extras(1, 0), b"k", b"v", 5, 0),
            pkt(REPLACEQ, &set_extras(1, 0), b"k", b"v", 6, 0),
            pkt(APPEND, &[], b"k", b" more", 7, 0),
            pkt(PREPENDQ, &[], b"k", b"pre ", 8, 9),
            pkt(DELETE, &[], b"k", &[], 9, 0),
            pkt(INCREMENT, &arith_extras(1, 0, 0), b"counter", &[], 10, 0),
            pkt(DECREMENTQ, &arith_extras(5, 9, u32::MAX), b"c", &[], 11, 3),
            pkt(TOUCH, &10u32.to_be_bytes(), b"t", &[], 12, 0),
            pkt(GATKQ, &10u32.to_be_bytes(), b"t", &[], 13, 0),
            pkt(FLUSH, &2u32.to_be_bytes(), &[], &[], 14, 0),
            pkt(NOOP, &[], &[], &[], 15, 0),
            pkt(VERSION, &[], &[], &[], 16, 0),
            pkt(QUITQ, &[], &[], &[], 17, 0),
            pkt(STAT, &[], b"settings", &[], 18, 0),
            pkt(VERBOSITY, &1u32.to_be_bytes(), &[], &[], 19, 0),
            pkt(SASL_AUTH, &[], b"PLAIN", b"\0u\0p", 20, 0),
            pkt(0x3c, &[1, 2], b"r", b"x", 21, 0),
        ]
    }

    /// Check the parse invariants and exercise compose on whatever comes out.
    fn check(buf: &[u8], max: usize) {
        match parse(buf, max) {
            BinParsed::Request { req, consumed } => {
                assert!(consumed >= HEADER_LEN && consumed <= buf.len());
                let o = [
                    Status::Hit,
                    Status::Miss,
                    Status::Stored,
                    Status::NotStored,
                    Status::Exists,
                    Status::NotFound,
                    Status::Deleted,
                    Status::TooLarge,
                    Status::NoMemory,
                    Status::NonNumeric,
                ];
                for st in o {
                    let mut out = Vec::new();
                    let key = match &req.op {
                        BinOp::Key(m) => m.key.as_bytes().to_vec(),
                        _ => Vec::new(),
                    };
                    compose(&mut out, &req, &key, &out_of(st, item(1, 2, 3)), Some(b"v"));
                    compose(&mut out, &req, &key, &Outcome::status(st), None);
                    let mut at = 0;
                    while at < out.len() {
                        assert_eq!(out[at], RESPONSE_MAGIC);
                        let body = be32(&out[at + 8..at + 12]) as usize;
                        assert_eq!(be32(&out[at + 12..at + 16]), req.opaque);
                        at += HEADER_LEN + body;
                    }
                    assert_eq!(at, out.len());
                }
                if let BinOp::Key(m) = &req.op {
                    assert!(!m.key.as_bytes().is_empty());
                    assert!(m.key.as_bytes().len() <= MAX_KEY_LEN);
                }
            }
            BinParsed::Incomplete { need } => {
                assert!(need > buf.len());
                assert!(need <= max + 24 + 255 + 65535 + 64 * 1024);
            }
            BinParsed::TooLarge {
                key,
                consumed,
                swallow,
                ..
            } => {
                assert!(consumed <= buf.len());
                assert!(swallow > max);
                assert!(key.len() <= MAX_KEY_LEN);
            }
            BinParsed::Close => {}
        }
    }

    #[test]
    fn no_panic_on_truncations_and_flips() {
        let corpus = corpus();
        for p in &corpus {
            for n in 0..=p.len() {
                check(&p[..n], MAX);
                check(&p[..n], 4);
            }
            for i in 0..p.len() {
                for x in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff, 0x7f] {
                    let mut q = p.clone();
                    q[i] ^= x;
                    check(&q, MAX);
                    check(&q, 16);
                    for n in [q.len() / 2, q.len().saturating_sub(1)] {
                        check(&q[..n], MAX);
                    }
                }
            }
        }
        // Pseudo-random mutations of concatenated packets.
        let mut all: Vec<u8> = corpus.concat();
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let i = (rnd() as usize) % all.len();
            all[i] = rnd() as u8;
            let start = (rnd() as usize) % all.len();
            let mut at = start;
            // Walk the stream as a server would.
            for _ in 0..8 {
                if at >= all.len() {
                    break;
                }
                check(&all[at..], 512);
                match parse(&all[at..], 512) {
                    BinParsed::Request { consumed, .. } => at += consumed,
                    BinParsed::TooLarge {
                        consumed, swallow, ..
                    } => at += consumed + swallow,
                    _ => break,
                }
            }
        }
    }
}

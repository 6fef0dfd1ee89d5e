//! The binary protocol side of a [`Session`]: frames in, the shared executor, binary replies
//! out. Key operations go through the same [`exec`] as text and meta requests.

use memha_protocol::binary::{self, BinOp, BinParsed, BinRequest};
use memha_protocol::request::MetaCmd;
use memha_protocol::{MetaRequest, Outcome, Status};

use super::{Control, Next, Session};
use crate::exec::{self, ReadKind, Reply};
use crate::stats_cmd;

impl Session {
    /// Like [`Session::process`], for a connection speaking the binary protocol.
    pub(super) fn process_binary(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        now: u32,
    ) -> (usize, Control) {
        self.drive(input, out, now, Session::binary_step)
    }

    /// One binary request.
    fn binary_step(&mut self, rest: &[u8], out: &mut Vec<u8>, now: u32) -> Next {
        match binary::parse(rest, self.limits.max_value) {
            BinParsed::Incomplete { .. } => Next::NeedInput,
            BinParsed::Close => Next::Close(0),
            BinParsed::TooLarge {
                opcode,
                opaque,
                key,
                consumed,
                swallow,
                ..
            } => {
                if binary::too_large_deletes(opcode) {
                    // Don't leave the old value behind after a failed set.
                    exec::drop_after_failed_write(&self.shared, key, now);
                }
                self.counters.cmd_set += 1;
                self.counters.store_too_large += 1;
                binary::compose_error(out, opcode, opaque, binary::status::E2BIG);
                self.swallow = swallow;
                Next::Refused(consumed)
            }
            BinParsed::Request { req, consumed } => {
                if self.execute_binary(&req, out, now) == Control::Close {
                    Next::Close(consumed)
                } else {
                    Next::Handled(consumed)
                }
            }
        }
    }

    fn execute_binary(&mut self, req: &BinRequest<'_>, out: &mut Vec<u8>, now: u32) -> Control {
        let shared = &*self.shared;
        let c = &mut self.counters;
        if !self.authenticated {
            // ASCII auth (-Y) has no binary form: binary clients cannot log in.
            binary::compose_error(out, req.opcode, req.opaque, binary::status::AUTH_ERROR);
            return Control::NeedInput;
        }
        let ok = Outcome::status(Status::Hit);
        match &req.op {
            BinOp::Key(meta) => {
                let kind = match (meta.cmd, meta.ttl, meta.ret_value) {
                    (MetaCmd::Get, Some(_), false) => ReadKind::TOUCH,
                    (MetaCmd::Get, Some(_), true) => ReadKind::GET_AND_TOUCH,
                    _ => ReadKind::GET,
                };
                let mut reply = BinReply { out, req };
                exec::execute(shared, c, meta, kind, now, &mut reply);
            }
            BinOp::Flush { delay } => {
                if shared.config.flush_disabled {
                    binary::compose_error(out, req.opcode, req.opaque, binary::status::AUTH_ERROR);
                    return Control::NeedInput;
                }
                c.cmd_flush += 1;
                if *delay > 0 {
                    let at = exec::abs_exptime(i64::from(*delay), now);
                    exec::flush_all(shared, Some(at));
                } else {
                    exec::flush_all(shared, None);
                }
                binary::compose(out, req, b"", &ok, None);
            }
            BinOp::Noop => binary::compose(out, req, b"", &ok, None),
            BinOp::Version => {
                binary::compose(out, req, b"", &ok, Some(crate::VERSION.as_bytes()));
            }
            BinOp::Quit => {
                binary::compose(out, req, b"", &ok, None);
                return Control::Close;
            }
            BinOp::Stat { group } => binary_stats(shared, c, req, group, out, now),
            BinOp::Verbosity | BinOp::Unknown => binary::compose(out, req, b"", &ok, None),
            BinOp::Invalid => {
                binary::compose(out, req, b"", &ok, None);
                return Control::Close;
            }
        }
        Control::NeedInput
    }
}

/// Binary replies for key operations.
struct BinReply<'o, 'r> {
    out: &'o mut Vec<u8>,
    req: &'r BinRequest<'r>,
}

impl Reply for BinReply<'_, '_> {
    fn reply(&mut self, meta: &MetaRequest<'_>, outcome: &Outcome, value: Option<&[u8]>) {
        binary::compose(self.out, self.req, meta.key.as_bytes(), outcome, value);
    }
}

/// `Stat`: the text `stats` output turned into one binary packet per `STAT` line.
fn binary_stats(
    shared: &crate::Shared,
    c: &mut crate::stats::Counters,
    req: &BinRequest<'_>,
    group: &[u8],
    out: &mut Vec<u8>,
    now: u32,
) {
    let mut text = Vec::new();
    let group = std::str::from_utf8(group).unwrap_or("\u{fffd}").trim();
    let detail_dump = group == "detail dump";
    stats_cmd::stats(shared, c, group.as_bytes(), &mut text, now);
    if detail_dump {
        // memcached sends the whole dump as one stat named "detailed".
        let body = text.strip_suffix(b"END\r\n").unwrap_or(&text);
        binary::compose_stat(out, req.opaque, b"detailed", body);
        binary::compose_stat(out, req.opaque, b"", b"");
        return;
    }
    let mut ok = false;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line
            .strip_prefix(b"STAT ")
            .or_else(|| line.strip_prefix(b"ITEM "))
        {
            let (name, value) = match rest.iter().position(|&b| b == b' ') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            binary::compose_stat(out, req.opaque, name, value);
            ok = true;
        } else if matches!(line, b"END" | b"RESET" | b"OK") {
            ok = true;
        }
    }
    if ok {
        binary::compose_stat(out, req.opaque, b"", b"");
    } else {
        binary::compose_error(out, req.opcode, req.opaque, binary::status::KEY_ENOENT);
    }
}

//! memcached's binary protocol against the real binary: every opcode memcached implements,
//! with request packets built by hand and exact response bytes (status, extras, key, value,
//! opaque). Where a CAS is not predictable it is checked to be non-zero and reused.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server};

// Opcodes.
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCR: u8 = 0x05;
const DECR: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const REPLACEQ: u8 = 0x13;
const DELETEQ: u8 = 0x14;
const INCRQ: u8 = 0x15;
const DECRQ: u8 = 0x16;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const PREPENDQ: u8 = 0x1a;
const VERBOSITY: u8 = 0x1b;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const SASL_LIST_MECHS: u8 = 0x20;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;

// Statuses.
const NOT_FOUND: u16 = 0x01;
const EXISTS: u16 = 0x02;
const TOO_LARGE: u16 = 0x03;
const INVALID: u16 = 0x04;
const NOT_STORED: u16 = 0x05;
const BAD_DELTA: u16 = 0x06;
const UNKNOWN: u16 = 0x81;

/// An absolute Unix time long past (beyond 30 days, so not relative): expires at once.
const PAST: u32 = 2_592_001;

/// A request packet: 24-byte big-endian header, extras, key, value.
fn req(op: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let mut v = vec![0x80, op];
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

/// Set/Add/Replace extras: flags, exptime.
fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    let mut e = flags.to_be_bytes().to_vec();
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

/// Incr/Decr extras: delta, initial, exptime.
fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

fn set(key: &str, value: &str, flags: u32, exptime: u32, opaque: u32, cas: u64) -> Vec<u8> {
    req(
        SET,
        &store_extras(flags, exptime),
        key.as_bytes(),
        value.as_bytes(),
        opaque,
        cas,
    )
}

fn get(op: u8, key: &str, opaque: u32) -> Vec<u8> {
    req(op, &[], key.as_bytes(), &[], opaque, 0)
}

fn noop(opaque: u32) -> Vec<u8> {
    req(NOOP, &[], &[], &[], opaque, 0)
}

/// A response packet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resp {
    op: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Resp {
    fn ok(op: u8, opaque: u32, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Resp {
        Resp {
            op,
            status: 0,
            opaque,
            cas,
            extras: extras.to_vec(),
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    /// memcached's error packet: no extras, no key, CAS 0, its message as the value.
    fn err(op: u8, opaque: u32, status: u16) -> Resp {
        let msg: &[u8] = match status {
            NOT_FOUND => b"Not found",
            EXISTS => b"Data exists for key.",
            TOO_LARGE => b"Too large.",
            INVALID => b"Invalid arguments",
            NOT_STORED => b"Not stored.",
            BAD_DELTA => b"Non-numeric server-side value for incr or decr",
            UNKNOWN => b"Unknown command",
            _ => panic!("no message for {status:#x}"),
        };
        Resp {
            status,
            ..Resp::ok(op, opaque, 0, &[], &[], msg)
        }
    }

    /// A Get/GetK/GAT hit.
    fn hit(op: u8, opaque: u32, cas: u64, flags: u32, key: &[u8], value: &[u8]) -> Resp {
        Resp::ok(op, opaque, cas, &flags.to_be_bytes(), key, value)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0x81, self.op];
        v.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        v.push(self.extras.len() as u8);
        v.push(0);
        v.extend_from_slice(&self.status.to_be_bytes());
        let body = self.extras.len() + self.key.len() + self.value.len();
        v.extend_from_slice(&(body as u32).to_be_bytes());
        v.extend_from_slice(&self.opaque.to_be_bytes());
        v.extend_from_slice(&self.cas.to_be_bytes());
        v.extend_from_slice(&self.extras);
        v.extend_from_slice(&self.key);
        v.extend_from_slice(&self.value);
        v
    }
}

trait Binary {
    /// Read one response packet.
    fn recv(&mut self) -> Resp;
    /// Send `request` and expect exactly these response packets.
    fn expect_packets(&mut self, request: &[u8], replies: &[Resp]);
    /// Read one packet equal to `want` except for its CAS, which must be non-zero; returns
    /// the CAS.
    fn expect_any_cas(&mut self, want: Resp) -> u64;
    /// Send `request`, then [`Binary::expect_any_cas`].
    fn ask_cas(&mut self, request: &[u8], want: Resp) -> u64;
}

impl Binary for Client {
    fn recv(&mut self) -> Resp {
        let h = self.read_exact(24);
        assert_eq!(h[0], 0x81, "response magic in {h:?}");
        assert_eq!(h[5], 0, "datatype in {h:?}");
        let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
        let extlen = h[4] as usize;
        let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        assert!(keylen + extlen <= body, "header {h:?}");
        let b = self.read_exact(body);
        Resp {
            op: h[1],
            status: u16::from_be_bytes([h[6], h[7]]),
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes(h[16..24].try_into().unwrap()),
            extras: b[..extlen].to_vec(),
            key: b[extlen..extlen + keylen].to_vec(),
            value: b[extlen + keylen..].to_vec(),
        }
    }

    fn expect_packets(&mut self, request: &[u8], replies: &[Resp]) {
        let want: Vec<u8> = replies.iter().flat_map(|r| r.bytes()).collect();
        self.expect_bytes(request, &want);
    }

    fn expect_any_cas(&mut self, want: Resp) -> u64 {
        let got = self.recv();
        assert_ne!(got.cas, 0, "CAS of {got:?}");
        assert_eq!(
            got,
            Resp {
                cas: got.cas,
                ..want
            }
        );
        got.cas
    }

    fn ask_cas(&mut self, request: &[u8], want: Resp) -> u64 {
        self.send(request);
        self.expect_any_cas(want)
    }
}

fn server() -> (Server, Client) {
    let s = Server::start(&[]);
    let c = s.connect();
    (s, c)
}

/// Store `value` under `key` and return its CAS.
fn store(c: &mut Client, key: &str, value: &str, flags: u32) -> u64 {
    c.ask_cas(
        &set(key, value, flags, 0, 0, 0),
        Resp::ok(SET, 0, 0, &[], &[], &[]),
    )
}

/// A text connection to the same server, to look at items from the side.
fn text(s: &Server) -> Client {
    s.connect()
}

// ------------------------------------------------------------------------ get and set

#[test]
fn get_getk_set() {
    let (s, mut c) = server();
    c.expect_packets(&get(GET, "foo", 1), &[Resp::err(GET, 1, NOT_FOUND)]);
    // GetK miss: the key is the whole body, no message.
    c.expect_packets(
        &get(GETK, "foo", 2),
        &[Resp {
            status: NOT_FOUND,
            ..Resp::ok(GETK, 2, 0, &[], b"foo", &[])
        }],
    );
    let cas = c.ask_cas(
        &set("foo", "somevalue", 19, 0, 0xdeadbeef, 0),
        Resp::ok(SET, 0xdeadbeef, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &get(GET, "foo", 3),
        &[Resp::hit(GET, 3, cas, 19, &[], b"somevalue")],
    );
    c.expect_packets(
        &get(GETK, "foo", 4),
        &[Resp::hit(GETK, 4, cas, 19, b"foo", b"somevalue")],
    );
    // Overwrite: new CAS, flags and value.
    let cas2 = store(&mut c, "foo", "x", 0xffff_ffff);
    assert_ne!(cas, cas2);
    c.expect_packets(
        &get(GET, "foo", 5),
        &[Resp::hit(GET, 5, cas2, 0xffff_ffff, &[], b"x")],
    );
    // Binary-safe, empty value.
    c.ask_cas(
        &req(SET, &store_extras(0, 0), b"bin", b"\0\r\n\x80", 0, 0),
        Resp::ok(SET, 0, 0, &[], &[], &[]),
    );
    let cas3 = store(&mut c, "empty", "", 0);
    c.expect_packets(
        &get(GET, "empty", 6),
        &[Resp::hit(GET, 6, cas3, 0, &[], b"")],
    );
    // The text protocol sees the same items.
    let mut t = text(&s);
    t.expect(
        "gets foo\r\n",
        &format!("VALUE foo 4294967295 1 {cas2}\r\nx\r\nEND\r\n"),
    );
    t.expect_bytes(b"get bin\r\n", b"VALUE bin 0 4\r\n\0\r\n\x80\r\nEND\r\n");
    // Expiry: an absolute time in the past stores an already expired item.
    c.ask_cas(
        &set("gone", "v", 0, 0, 0, 0),
        Resp::ok(SET, 0, 0, &[], &[], &[]),
    );
    c.ask_cas(
        &req(SET, &store_extras(0, PAST), b"gone", b"v", 0, 0),
        Resp::ok(SET, 0, 0, &[], &[], &[]),
    );
    c.expect_packets(&get(GET, "gone", 7), &[Resp::err(GET, 7, NOT_FOUND)]);
    // Relative exptime.
    c.ask_cas(
        &req(SET, &store_extras(0, 100), b"ttl", b"v", 0, 0),
        Resp::ok(SET, 0, 0, &[], &[], &[]),
    );
    let line = t.ask_line("mg ttl t\r\n");
    assert!(line == "HD t100\r\n" || line == "HD t99\r\n", "{line:?}");
}

#[test]
fn getq_getkq_pipeline_ended_by_noop() {
    let (_s, mut c) = server();
    let a = store(&mut c, "a", "A", 1);
    let b = store(&mut c, "b", "BB", 2);
    let mut r = Vec::new();
    r.extend(get(GETQ, "a", 10));
    r.extend(get(GETQ, "missing", 11));
    r.extend(get(GETKQ, "b", 12));
    r.extend(get(GETKQ, "missing2", 13));
    r.extend(get(GETQ, "b", 14));
    r.extend(noop(15));
    c.expect_packets(
        &r,
        &[
            Resp::hit(GETQ, 10, a, 1, &[], b"A"),
            Resp::hit(GETKQ, 12, b, 2, b"b", b"BB"),
            Resp::hit(GETQ, 14, b, 2, &[], b"BB"),
            Resp::ok(NOOP, 15, 0, &[], &[], &[]),
        ],
    );
    // All misses: only the Noop answers.
    let mut r = Vec::new();
    for i in 0..50 {
        r.extend(get(GETKQ, &format!("none{i}"), i));
    }
    r.extend(noop(99));
    c.expect_packets(&r, &[Resp::ok(NOOP, 99, 0, &[], &[], &[])]);
}

#[test]
fn add_replace_and_quiet_variants() {
    let (_s, mut c) = server();
    let cas = c.ask_cas(
        &req(ADD, &store_extras(5, 0), b"i", b"ex", 1, 0),
        Resp::ok(ADD, 1, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &req(ADD, &store_extras(10, 0), b"i", b"ex2", 2, 0),
        &[Resp::err(ADD, 2, EXISTS)],
    );
    c.expect_packets(&get(GET, "i", 3), &[Resp::hit(GET, 3, cas, 5, &[], b"ex")]);
    c.expect_packets(
        &req(REPLACE, &store_extras(19, 0), b"j", b"ex", 4, 0),
        &[Resp::err(REPLACE, 4, NOT_FOUND)],
    );
    c.expect_packets(&get(GET, "j", 5), &[Resp::err(GET, 5, NOT_FOUND)]);
    let cas = c.ask_cas(
        &req(REPLACE, &store_extras(24, 0), b"i", b"ex3", 6, 0),
        Resp::ok(REPLACE, 6, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &get(GET, "i", 7),
        &[Resp::hit(GET, 7, cas, 24, &[], b"ex3")],
    );

    // Quiet stores: nothing on success, errors are sent; Noop ends the pipeline.
    let mut r = Vec::new();
    r.extend(req(SETQ, &store_extras(1, 0), b"q1", b"v1", 20, 0));
    r.extend(req(ADDQ, &store_extras(2, 0), b"q2", b"v2", 21, 0));
    r.extend(req(ADDQ, &store_extras(2, 0), b"q1", b"no", 22, 0));
    r.extend(req(REPLACEQ, &store_extras(3, 0), b"q2", b"v3", 23, 0));
    r.extend(req(REPLACEQ, &store_extras(3, 0), b"q3", b"no", 24, 0));
    r.extend(req(SETQ, &store_extras(0, 0), b"q4", b"v4", 25, 1));
    r.extend(noop(26));
    c.expect_packets(
        &r,
        &[
            Resp::err(ADDQ, 22, EXISTS),
            Resp::err(REPLACEQ, 24, NOT_FOUND),
            Resp::err(SETQ, 25, NOT_FOUND),
            Resp::ok(NOOP, 26, 0, &[], &[], &[]),
        ],
    );
    let mut r = Vec::new();
    r.extend(get(GETKQ, "q1", 1));
    r.extend(get(GETKQ, "q2", 2));
    r.extend(get(GETKQ, "q3", 3));
    r.extend(noop(4));
    c.send(&r);
    let q1 = c.recv();
    assert_eq!(
        (q1.status, &q1.key[..], &q1.value[..]),
        (0, &b"q1"[..], &b"v1"[..])
    );
    assert_eq!(q1.extras, 1u32.to_be_bytes());
    let q2 = c.recv();
    assert_eq!(
        (q2.status, &q2.key[..], &q2.value[..]),
        (0, &b"q2"[..], &b"v3"[..])
    );
    assert_eq!(q2.extras, 3u32.to_be_bytes());
    assert_eq!(c.recv(), Resp::ok(NOOP, 4, 0, &[], &[], &[]));
}

#[test]
fn cas_mismatch_and_match() {
    let (_s, mut c) = server();
    // CAS on a missing item: not found.
    c.expect_packets(
        &set("x", "bad value", 19, 5, 1, 0x7ff_ffff),
        &[Resp::err(SET, 1, NOT_FOUND)],
    );
    let cas = c.ask_cas(
        &req(ADD, &store_extras(5, 19), b"x", b"original value", 2, 0),
        Resp::ok(ADD, 2, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &get(GET, "x", 3),
        &[Resp::hit(GET, 3, cas, 5, &[], b"original value")],
    );
    c.expect_packets(
        &set("x", "broken value", 19, 5, 4, cas + 1),
        &[Resp::err(SET, 4, EXISTS)],
    );
    let cas2 = c.ask_cas(
        &set("x", "new value", 19, 5, 5, cas),
        Resp::ok(SET, 5, 0, &[], &[], &[]),
    );
    assert_ne!(cas, cas2);
    c.expect_packets(
        &get(GET, "x", 6),
        &[Resp::hit(GET, 6, cas2, 19, &[], b"new value")],
    );
    // Replaying the old CAS fails.
    c.expect_packets(
        &set("x", "replay value", 19, 5, 7, cas),
        &[Resp::err(SET, 7, EXISTS)],
    );
    // Add and Replace with a CAS behave as a CAS store; Append too.
    c.expect_packets(
        &req(REPLACE, &store_extras(0, 0), b"x", b"r", 8, cas),
        &[Resp::err(REPLACE, 8, EXISTS)],
    );
    let cas3 = c.ask_cas(
        &req(REPLACE, &store_extras(0, 0), b"x", b"r", 9, cas2),
        Resp::ok(REPLACE, 9, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &req(APPEND, &[], b"x", b"s", 10, cas2),
        &[Resp::err(APPEND, 10, EXISTS)],
    );
    c.ask_cas(
        &req(APPEND, &[], b"x", b"s", 11, cas3),
        Resp::ok(APPEND, 11, 0, &[], &[], &[]),
    );
    // Quiet CAS mismatch is sent.
    c.expect_packets(
        &req(SETQ, &store_extras(0, 0), b"x", b"q", 12, cas),
        &[Resp::err(SETQ, 12, EXISTS)],
    );
    c.send(&get(GETK, "x", 13));
    let r = c.recv();
    assert_eq!(r.value, b"rs");
}

#[test]
fn delete_and_deleteq() {
    let (_s, mut c) = server();
    c.expect_packets(&get(DELETE, "d", 1), &[Resp::err(DELETE, 1, NOT_FOUND)]);
    let cas = store(&mut c, "d", "v", 0);
    c.expect_packets(
        &req(DELETE, &[], b"d", &[], 2, cas + 1),
        &[Resp::err(DELETE, 2, EXISTS)],
    );
    // Success: CAS 0, empty body.
    c.expect_packets(
        &req(DELETE, &[], b"d", &[], 3, cas),
        &[Resp::ok(DELETE, 3, 0, &[], &[], &[])],
    );
    c.expect_packets(&get(GET, "d", 4), &[Resp::err(GET, 4, NOT_FOUND)]);
    store(&mut c, "d", "v", 0);
    let mut r = Vec::new();
    r.extend(get(DELETEQ, "d", 5));
    r.extend(get(DELETEQ, "d", 6));
    r.extend(noop(7));
    c.expect_packets(
        &r,
        &[
            Resp::err(DELETEQ, 6, NOT_FOUND),
            Resp::ok(NOOP, 7, 0, &[], &[], &[]),
        ],
    );
    c.expect_packets(&get(GET, "d", 8), &[Resp::err(GET, 8, NOT_FOUND)]);
}

// ----------------------------------------------------------------------- incr / decr

fn num(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

#[test]
fn incr_decr() {
    let (s, mut c) = server();
    // Missing with exptime 0xffffffff: no create.
    c.expect_packets(
        &req(INCR, &arith_extras(1, 5, 0xffff_ffff), b"x", &[], 1, 0),
        &[Resp::err(INCR, 1, NOT_FOUND)],
    );
    c.expect_packets(
        &req(DECR, &arith_extras(1, 5, 0xffff_ffff), b"x", &[], 2, 0),
        &[Resp::err(DECR, 2, NOT_FOUND)],
    );
    // Missing otherwise: created with the initial value (the delta is not applied).
    let c1 = c.ask_cas(
        &req(INCR, &arith_extras(1, 0, 0), b"x", &[], 3, 0),
        Resp::ok(INCR, 3, 0, &[], &[], &num(0)),
    );
    let c2 = c.ask_cas(
        &req(INCR, &arith_extras(1, 0, 0), b"x", &[], 4, 0),
        Resp::ok(INCR, 4, 0, &[], &[], &num(1)),
    );
    assert_ne!(c1, c2);
    c.ask_cas(
        &req(INCR, &arith_extras(211, 0, 0), b"x", &[], 5, 0),
        Resp::ok(INCR, 5, 0, &[], &[], &num(212)),
    );
    c.ask_cas(
        &req(INCR, &arith_extras(1 << 33, 0, 0), b"x", &[], 6, 0),
        Resp::ok(INCR, 6, 0, &[], &[], &num(8589934804)),
    );
    let mut t = text(&s);
    t.expect("get x\r\n", "VALUE x 0 10\r\n8589934804\r\nEND\r\n");
    // Initial value written as decimal of the right length (issue 320).
    c.ask_cas(
        &req(INCR, &arith_extras(1, 1, 0), b"i320", &[], 7, 0),
        Resp::ok(INCR, 7, 0, &[], &[], &num(1)),
    );
    t.expect("get i320\r\n", "VALUE i320 0 1\r\n1\r\nEND\r\n");
    // Decrement: initial, then floor at 0.
    c.ask_cas(
        &req(DECR, &arith_extras(1, 5, 0), b"d", &[], 8, 0),
        Resp::ok(DECR, 8, 0, &[], &[], &num(5)),
    );
    c.ask_cas(
        &req(DECR, &arith_extras(1, 0, 0), b"d", &[], 9, 0),
        Resp::ok(DECR, 9, 0, &[], &[], &num(4)),
    );
    c.ask_cas(
        &req(DECR, &arith_extras(211, 0, 0), b"d", &[], 10, 0),
        Resp::ok(DECR, 10, 0, &[], &[], &num(0)),
    );
    // Increment wraps at 2^64.
    store(&mut c, "w", "18446744073709551615", 0);
    c.ask_cas(
        &req(INCR, &arith_extras(2, 0, 0), b"w", &[], 11, 0),
        Resp::ok(INCR, 11, 0, &[], &[], &num(1)),
    );
    // bug21: across 2^63.
    store(&mut c, "b21", "9223372036854775807", 0);
    c.ask_cas(
        &req(INCR, &arith_extras(1, 0, 0), b"b21", &[], 12, 0),
        Resp::ok(INCR, 12, 0, &[], &[], &num(9223372036854775808)),
    );
    c.ask_cas(
        &req(DECR, &arith_extras(1, 0, 0), b"b21", &[], 13, 0),
        Resp::ok(DECR, 13, 0, &[], &[], &num(9223372036854775807)),
    );
    // Non-numeric value.
    store(&mut c, "text", "text", 0);
    c.expect_packets(
        &req(INCR, &arith_extras(1, 0, 0), b"text", &[], 14, 0),
        &[Resp::err(INCR, 14, BAD_DELTA)],
    );
    c.expect_packets(
        &req(DECR, &arith_extras(1, 0, 0), b"text", &[], 15, 0),
        &[Resp::err(DECR, 15, BAD_DELTA)],
    );
    // CAS after incr matches a get (bug220), and a CAS mismatch fails.
    let cas = store(&mut c, "bug220", "100", 0);
    let icas = c.ask_cas(
        &req(INCR, &arith_extras(999, 0, 0), b"bug220", &[], 16, 0),
        Resp::ok(INCR, 16, 0, &[], &[], &num(1099)),
    );
    assert_ne!(cas, icas);
    c.expect_packets(
        &get(GET, "bug220", 17),
        &[Resp::hit(GET, 17, icas, 0, &[], b"1099")],
    );
    c.expect_packets(
        &req(INCR, &arith_extras(1, 0, 0), b"bug220", &[], 18, cas),
        &[Resp::err(INCR, 18, EXISTS)],
    );
    c.ask_cas(
        &req(INCR, &arith_extras(1, 0, 0), b"bug220", &[], 19, icas),
        Resp::ok(INCR, 19, 0, &[], &[], &num(1100)),
    );
    // Exptime of a created counter.
    c.ask_cas(
        &req(INCR, &arith_extras(1, 7, 100), b"ttl", &[], 20, 0),
        Resp::ok(INCR, 20, 0, &[], &[], &num(7)),
    );
    let line = t.ask_line("mg ttl t v\r\n");
    assert!(
        line == "VA 1 t100\r\n" || line == "VA 1 t99\r\n",
        "{line:?}"
    );
    t.expect("", "7\r\n");
}

#[test]
fn incrq_decrq() {
    let (_s, mut c) = server();
    let mut r = Vec::new();
    r.extend(req(INCRQ, &arith_extras(0, 0, 0), b"si", &[], 1, 0));
    r.extend(req(INCRQ, &arith_extras(8, 0, 0), b"si", &[], 2, 0));
    r.extend(req(DECRQ, &arith_extras(0, 185, 0), b"sd", &[], 3, 0));
    r.extend(req(DECRQ, &arith_extras(8, 0, 0), b"sd", &[], 4, 0));
    // Errors are sent.
    r.extend(req(
        INCRQ,
        &arith_extras(1, 0, 0xffff_ffff),
        b"nope",
        &[],
        5,
        0,
    ));
    r.extend(req(SETQ, &store_extras(0, 0), b"t", b"abc", 6, 0));
    r.extend(req(DECRQ, &arith_extras(1, 0, 0), b"t", &[], 7, 0));
    r.extend(noop(8));
    c.expect_packets(
        &r,
        &[
            Resp::err(INCRQ, 5, NOT_FOUND),
            Resp::err(DECRQ, 7, BAD_DELTA),
            Resp::ok(NOOP, 8, 0, &[], &[], &[]),
        ],
    );
    c.ask_cas(
        &req(INCR, &arith_extras(0, 0, 0), b"si", &[], 9, 0),
        Resp::ok(INCR, 9, 0, &[], &[], &num(8)),
    );
    c.ask_cas(
        &req(INCR, &arith_extras(0, 0, 0), b"sd", &[], 10, 0),
        Resp::ok(INCR, 10, 0, &[], &[], &num(177)),
    );
}

// ------------------------------------------------------------------ quit, flush, noop

#[test]
fn quit_and_quitq() {
    let (s, mut c) = server();
    c.expect_packets(
        &req(QUIT, &[], &[], &[], 7, 0),
        &[Resp::ok(QUIT, 7, 0, &[], &[], &[])],
    );
    assert!(c.closed());
    // QuitQ: no reply, just the close; what follows is not executed.
    let mut c = s.connect();
    let mut r = req(QUITQ, &[], &[], &[], 8, 0);
    r.extend(noop(9));
    c.send(&r);
    assert!(c.closed());
    // The server is fine.
    let mut c = s.connect();
    c.expect_packets(&noop(10), &[Resp::ok(NOOP, 10, 0, &[], &[], &[])]);
}

#[test]
fn flush_flushq_and_delay() {
    let (s, mut c) = server();
    let mut t = text(&s);
    let before: u64 = t.stat_u64("cmd_flush");
    store(&mut c, "x", "somevaluex", 5);
    store(&mut c, "y", "somevaluey", 17);
    c.expect_packets(
        &req(FLUSH, &[], &[], &[], 1, 0),
        &[Resp::ok(FLUSH, 1, 0, &[], &[], &[])],
    );
    c.expect_packets(&get(GET, "x", 2), &[Resp::err(GET, 2, NOT_FOUND)]);
    c.expect_packets(&get(GET, "y", 3), &[Resp::err(GET, 3, NOT_FOUND)]);
    // FlushQ: silent.
    store(&mut c, "x", "v", 0);
    let mut r = req(FLUSHQ, &[], &[], &[], 4, 0);
    r.extend(noop(5));
    c.expect_packets(&r, &[Resp::ok(NOOP, 5, 0, &[], &[], &[])]);
    c.expect_packets(&get(GET, "x", 6), &[Resp::err(GET, 6, NOT_FOUND)]);
    // Extras of 0: now.
    store(&mut c, "x", "v", 0);
    c.expect_packets(
        &req(FLUSH, &0u32.to_be_bytes(), &[], &[], 7, 0),
        &[Resp::ok(FLUSH, 7, 0, &[], &[], &[])],
    );
    c.expect_packets(&get(GET, "x", 8), &[Resp::err(GET, 8, NOT_FOUND)]);
    assert_eq!(t.stat_u64("cmd_flush"), before + 3);
    // A delay: items stay until it passes.
    let cas = store(&mut c, "later", "v", 0);
    c.expect_packets(
        &req(FLUSH, &2u32.to_be_bytes(), &[], &[], 9, 0),
        &[Resp::ok(FLUSH, 9, 0, &[], &[], &[])],
    );
    c.expect_packets(
        &get(GET, "later", 10),
        &[Resp::hit(GET, 10, cas, 0, &[], b"v")],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        c.send(&get(GET, "later", 11));
        let r = c.recv();
        if r.status == NOT_FOUND {
            assert_eq!(r, Resp::err(GET, 11, NOT_FOUND));
            break;
        }
        assert!(Instant::now() < deadline, "delayed flush never happened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn noop_and_version() {
    let (s, mut c) = server();
    c.expect_packets(
        &noop(0x01020304),
        &[Resp::ok(NOOP, 0x01020304, 0, &[], &[], &[])],
    );
    let mut t = text(&s);
    let line = t.ask_line("version\r\n");
    let v = line
        .strip_prefix("VERSION ")
        .and_then(|v| v.strip_suffix("\r\n"))
        .unwrap();
    c.expect_packets(
        &req(VERSION, &[], &[], &[], 42, 0),
        &[Resp::ok(VERSION, 42, 0, &[], &[], v.as_bytes())],
    );
}

#[test]
fn append_prepend_and_quiet_variants() {
    let (_s, mut c) = server();
    store(&mut c, "k", "some value", 19);
    c.ask_cas(
        &req(APPEND, &[], b"k", b" more", 1, 0),
        Resp::ok(APPEND, 1, 0, &[], &[], &[]),
    );
    let cas = c.ask_cas(
        &req(PREPEND, &[], b"k", b"prefixed ", 2, 0),
        Resp::ok(PREPEND, 2, 0, &[], &[], &[]),
    );
    c.expect_packets(
        &get(GET, "k", 3),
        &[Resp::hit(GET, 3, cas, 19, &[], b"prefixed some value more")],
    );
    c.expect_packets(
        &req(APPEND, &[], b"none", b"x", 4, 0),
        &[Resp::err(APPEND, 4, NOT_STORED)],
    );
    c.expect_packets(
        &req(PREPEND, &[], b"none", b"x", 5, 0),
        &[Resp::err(PREPEND, 5, NOT_STORED)],
    );
    let mut r = Vec::new();
    r.extend(req(APPENDQ, &[], b"k", b"!", 6, 0));
    r.extend(req(PREPENDQ, &[], b"k", b"<", 7, 0));
    r.extend(req(APPENDQ, &[], b"none", b"x", 8, 0));
    r.extend(req(PREPENDQ, &[], b"none", b"x", 9, 0));
    r.extend(get(GETQ, "none", 10));
    r.extend(noop(11));
    c.expect_packets(
        &r,
        &[
            Resp::err(APPENDQ, 8, NOT_STORED),
            Resp::err(PREPENDQ, 9, NOT_STORED),
            Resp::ok(NOOP, 11, 0, &[], &[], &[]),
        ],
    );
    c.send(&get(GET, "k", 12));
    let r = c.recv();
    assert_eq!(r.value, b"<prefixed some value more!");
    assert_eq!(r.extras, 19u32.to_be_bytes());
}

// -------------------------------------------------------------------------------- stat

/// Send a Stat request and collect (name, value) until the empty terminator.
fn stats(c: &mut Client, group: &str, opaque: u32) -> Vec<(String, String)> {
    c.send(&req(STAT, &[], group.as_bytes(), &[], opaque, 0));
    let mut out = Vec::new();
    loop {
        let r = c.recv();
        assert_eq!(
            (r.op, r.status, r.opaque, r.cas),
            (STAT, 0, opaque, 0),
            "{r:?}"
        );
        assert!(r.extras.is_empty());
        if r.key.is_empty() {
            assert!(r.value.is_empty(), "{r:?}");
            return out;
        }
        out.push((
            String::from_utf8(r.key).unwrap(),
            String::from_utf8(r.value).unwrap(),
        ));
    }
}

#[test]
fn stat_groups() {
    let (_s, mut c) = server();
    store(&mut c, "pfx:a", "v", 0);
    let general = stats(&mut c, "", 1);
    let get = |v: &[(String, String)], n: &str| {
        v.iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("no stat {n} in {v:?}"))
            .1
            .clone()
    };
    assert!(get(&general, "pid").parse::<u32>().unwrap() > 0);
    assert!(get(&general, "version").starts_with("1.6"));
    assert_eq!(get(&general, "curr_items"), "1");
    assert_eq!(get(&general, "cmd_set"), "1");
    let settings = stats(&mut c, "settings", 2);
    assert!(get(&settings, "maxbytes").parse::<u64>().unwrap() > 0);
    assert_eq!(get(&settings, "item_size_max"), "1048576");
    let items = stats(&mut c, "items", 3);
    assert_eq!(get(&items, "items:1:number"), "1");
    // detail: on, dump (one "detailed" stat holding the text dump), off.
    assert!(stats(&mut c, "detail on", 4).is_empty());
    c.send(&get_req("pfx:a"));
    assert_eq!(c.recv().status, 0);
    c.send(&req(STAT, &[], b"detail dump", &[], 5, 0));
    let d = c.recv();
    assert_eq!(
        (d.op, d.status, d.opaque, &d.key[..]),
        (STAT, 0, 5, &b"detailed"[..])
    );
    let dump = String::from_utf8(d.value).unwrap();
    assert!(
        dump.starts_with("PREFIX pfx get 1 hit 1 set 0 del 0\r\n") || dump.contains("PREFIX pfx "),
        "{dump:?}"
    );
    assert_eq!(c.recv(), Resp::ok(STAT, 5, 0, &[], &[], &[]));
    assert!(stats(&mut c, "detail off", 6).is_empty());
    // reset: just the terminator, and the counters start again.
    assert!(stats(&mut c, "reset", 7).is_empty());
    let general = stats(&mut c, "", 8);
    assert_eq!(get(&general, "cmd_set"), "0");
    assert_eq!(get(&general, "curr_items"), "1");
    // An unknown group: not found.
    c.expect_packets(
        &req(STAT, &[], b"bogus", &[], 9, 0),
        &[Resp::err(STAT, 9, NOT_FOUND)],
    );
    c.expect_packets(&noop(10), &[Resp::ok(NOOP, 10, 0, &[], &[], &[])]);
}

fn get_req(key: &str) -> Vec<u8> {
    get(GET, key, 0)
}

// ---------------------------------------------------------------- touch, gat, gatk

fn exptime(t: u32) -> Vec<u8> {
    t.to_be_bytes().to_vec()
}

#[test]
fn touch_gat_gatk() {
    let (s, mut c) = server();
    let mut t = text(&s);
    // Misses.
    c.expect_packets(
        &req(TOUCH, &exptime(10), b"none", &[], 1, 0),
        &[Resp::err(TOUCH, 1, NOT_FOUND)],
    );
    c.expect_packets(
        &req(GAT, &exptime(10), b"none", &[], 2, 0),
        &[Resp::err(GAT, 2, NOT_FOUND)],
    );
    c.expect_packets(
        &req(GATK, &exptime(10), b"none", &[], 3, 0),
        &[Resp {
            status: NOT_FOUND,
            ..Resp::ok(GATK, 3, 0, &[], b"none", &[])
        }],
    );
    let cas = store(&mut c, "k", "toast", 7);
    // Touch: flags as extras, no value.
    c.expect_packets(
        &req(TOUCH, &exptime(100), b"k", &[], 4, 0),
        &[Resp::hit(TOUCH, 4, cas, 7, &[], &[])],
    );
    let line = t.ask_line("mg k t\r\n");
    assert!(line == "HD t100\r\n" || line == "HD t99\r\n", "{line:?}");
    c.expect_packets(
        &req(GAT, &exptime(200), b"k", &[], 5, 0),
        &[Resp::hit(GAT, 5, cas, 7, &[], b"toast")],
    );
    let line = t.ask_line("mg k t\r\n");
    assert!(line == "HD t200\r\n" || line == "HD t199\r\n", "{line:?}");
    c.expect_packets(
        &req(GATK, &exptime(0), b"k", &[], 6, 0),
        &[Resp::hit(GATK, 6, cas, 7, b"k", b"toast")],
    );
    t.expect("mg k t\r\n", "HD t-1\r\n");
    // Quiet: hits answer, misses do not.
    let mut r = Vec::new();
    r.extend(req(GATQ, &exptime(300), b"k", &[], 7, 0));
    r.extend(req(GATQ, &exptime(300), b"none", &[], 8, 0));
    r.extend(req(GATKQ, &exptime(300), b"k", &[], 9, 0));
    r.extend(req(GATKQ, &exptime(300), b"none", &[], 10, 0));
    r.extend(noop(11));
    c.expect_packets(
        &r,
        &[
            Resp::hit(GATQ, 7, cas, 7, &[], b"toast"),
            Resp::hit(GATKQ, 9, cas, 7, b"k", b"toast"),
            Resp::ok(NOOP, 11, 0, &[], &[], &[]),
        ],
    );
    let line = t.ask_line("mg k t\r\n");
    assert!(line == "HD t300\r\n" || line == "HD t299\r\n", "{line:?}");
    // A touch into the past expires the item.
    c.expect_packets(
        &req(TOUCH, &exptime(PAST), b"k", &[], 12, 0),
        &[Resp::hit(TOUCH, 12, cas, 7, &[], &[])],
    );
    c.expect_packets(&get(GET, "k", 13), &[Resp::err(GET, 13, NOT_FOUND)]);
    let st = t.stats("");
    let v = |n: &str| st.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(v("cmd_touch"), "11");
    assert_eq!(v("touch_hits"), "6");
    assert_eq!(v("touch_misses"), "5");
}

// ------------------------------------------------------ verbosity, sasl, unknown opcodes

#[test]
fn verbosity_sasl_and_unknown_opcodes() {
    let (_s, mut c) = server();
    // Verbosity (with its 4-byte extras) is not answered by memcached 1.6.45.
    let mut r = req(VERBOSITY, &1u32.to_be_bytes(), &[], &[], 1, 0);
    r.extend(noop(2));
    c.expect_packets(&r, &[Resp::ok(NOOP, 2, 0, &[], &[], &[])]);
    // SASL list mechs without SASL support: unknown command.
    c.expect_packets(
        &req(SASL_LIST_MECHS, &[], &[], &[], 3, 0),
        &[Resp::err(SASL_LIST_MECHS, 3, UNKNOWN)],
    );
    // Unassigned opcodes, with or without a body; the connection keeps working.
    c.expect_packets(
        &req(0x50, &[], &[], &[], 4, 0),
        &[Resp::err(0x50, 4, UNKNOWN)],
    );
    c.expect_packets(
        &req(0xfe, &[1, 2], b"key", b"value", 5, 0),
        &[Resp::err(0xfe, 5, UNKNOWN)],
    );
    c.expect_packets(&noop(6), &[Resp::ok(NOOP, 6, 0, &[], &[], &[])]);
}

// ---------------------------------------------------------------- limits and framing

#[test]
fn value_too_large_keeps_connection() {
    let (_s, mut c) = server();
    store(&mut c, "toobig", "not too big", 10);
    let big = vec![b'x'; 1024 * 1024 + 1];
    let mut r = req(SET, &store_extras(10, 10), b"toobig", &big, 1, 0);
    r.extend(noop(2));
    c.expect_packets(
        &r,
        &[
            Resp::err(SET, 1, TOO_LARGE),
            Resp::ok(NOOP, 2, 0, &[], &[], &[]),
        ],
    );
    // The old value is gone.
    c.expect_packets(&get(GET, "toobig", 3), &[Resp::err(GET, 3, NOT_FOUND)]);
    // Quiet variants get the error too; append does not delete.
    store(&mut c, "keep", "v", 0);
    let mut r = req(SETQ, &store_extras(0, 0), b"q", &big, 4, 0);
    r.extend(req(APPENDQ, &[], b"keep", &big, 5, 0));
    r.extend(noop(6));
    c.expect_packets(
        &r,
        &[
            Resp::err(SETQ, 4, TOO_LARGE),
            Resp::err(APPENDQ, 5, TOO_LARGE),
            Resp::ok(NOOP, 6, 0, &[], &[], &[]),
        ],
    );
    c.send(&get(GET, "keep", 7));
    assert_eq!(c.recv().value, b"v");
}

#[test]
fn key_too_long_is_invalid_then_closed() {
    let (s, mut c) = server();
    let key = "k".repeat(251);
    c.expect_packets(&get(GET, &key, 1), &[Resp::err(GET, 1, INVALID)]);
    assert!(c.closed());
    // 250 is fine.
    let mut c = s.connect();
    let key = "k".repeat(250);
    c.expect_packets(&get(GET, &key, 2), &[Resp::err(GET, 2, NOT_FOUND)]);
    // Wrong extras for the opcode: invalid too (Get with extras, Set without).
    c.expect_packets(
        &req(GET, &[0, 0, 0, 0], b"k", &[], 3, 0),
        &[Resp::err(GET, 3, INVALID)],
    );
    assert!(c.closed());
    let mut c = s.connect();
    c.expect_packets(
        &req(SET, &[], b"k", b"v", 4, 0),
        &[Resp::err(SET, 4, INVALID)],
    );
    assert!(c.closed());
}

#[test]
fn bad_magic_closes_connection_only() {
    let (s, mut c) = server();
    c.expect_packets(&noop(1), &[Resp::ok(NOOP, 1, 0, &[], &[], &[])]);
    let mut bad = noop(2);
    bad[0] = 0x81;
    c.send(&bad);
    assert!(c.closed());
    // A connection that starts binary and then sends text is closed too.
    let mut c = s.connect();
    let mut r = noop(3);
    r.extend_from_slice(b"version\r\n");
    c.send(&r);
    assert_eq!(c.recv(), Resp::ok(NOOP, 3, 0, &[], &[], &[]));
    assert!(c.closed());
    // The server is still up for both protocols.
    let mut c = s.connect();
    c.expect_packets(&noop(4), &[Resp::ok(NOOP, 4, 0, &[], &[], &[])]);
    let mut t = s.connect();
    t.ping();
}

#[test]
fn pipeline_of_binary_requests() {
    let (_s, mut c) = server();
    let mut r = Vec::new();
    for i in 0..100u32 {
        r.extend(set(&format!("key{i}"), &format!("value{i}"), i, 0, i, 0));
    }
    for i in 0..100u32 {
        r.extend(get(GETK, &format!("key{i}"), 1000 + i));
    }
    c.send(&r);
    let mut cas = Vec::new();
    for i in 0..100u32 {
        cas.push(c.expect_any_cas(Resp::ok(SET, i, 0, &[], &[], &[])));
    }
    for i in 0..100u32 {
        let key = format!("key{i}");
        let value = format!("value{i}");
        assert_eq!(
            c.recv(),
            Resp::hit(
                GETK,
                1000 + i,
                cas[i as usize],
                i,
                key.as_bytes(),
                value.as_bytes()
            )
        );
    }
    // A mixed pipeline of 100 quiet requests and one Noop.
    let mut r = Vec::new();
    for i in 0..100u32 {
        match i % 4 {
            0 => r.extend(req(SETQ, &store_extras(0, 0), b"q", b"1", i, 0)),
            1 => r.extend(req(INCRQ, &arith_extras(1, 0, 0), b"q", &[], i, 0)),
            2 => r.extend(get(GETQ, "missing", i)),
            _ => r.extend(req(DELETEQ, &[], b"nothere", &[], i, 0)),
        }
    }
    r.extend(noop(500));
    c.send(&r);
    for i in (3..100u32).step_by(4) {
        assert_eq!(c.recv(), Resp::err(DELETEQ, i, NOT_FOUND));
    }
    assert_eq!(c.recv(), Resp::ok(NOOP, 500, 0, &[], &[], &[]));
    c.send(&get(GET, "q", 501));
    assert_eq!(c.recv().value, b"2");
}

// ------------------------------------------------------------------------ -B protocol

#[test]
fn protocol_binary_only_refuses_text() {
    let s = Server::start(&["-B", "binary"]);
    let mut t = s.connect();
    t.send(b"version\r\n");
    assert!(t.closed());
    let mut c = s.connect();
    store(&mut c, "k", "v", 3);
    c.send(&get(GET, "k", 1));
    assert_eq!(c.recv().value, b"v");
}

#[test]
fn protocol_ascii_only_refuses_binary() {
    let s = Server::start(&["-B", "ascii"]);
    let mut c = s.connect();
    c.set_timeout(Duration::from_secs(2));
    c.send(&noop(1));
    // Not a binary response: the bytes are read as a (bad) text line, or the
    // connection is closed.
    let mut first = [0u8; 1];
    use std::io::Read;
    match c.reader.read(&mut first) {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_ne!(first[0], 0x81, "binary reply under -B ascii"),
    }
    let mut t = s.connect();
    t.ping();
    t.expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
}

#[test]
fn protocol_auto_per_connection() {
    let s = Server::start(&[]);
    let mut t = s.connect();
    let mut c = s.connect();
    t.expect("set k 5 0 2\r\nhi\r\n", "STORED\r\n");
    let cas = t.gets_cas("k").unwrap();
    c.expect_packets(&get(GET, "k", 1), &[Resp::hit(GET, 1, cas, 5, &[], b"hi")]);
    t.ping();
}

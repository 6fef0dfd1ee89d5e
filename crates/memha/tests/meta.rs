//! memcached's meta protocol (mg ms md ma mn me) against the real binary: every flag each
//! command accepts, the reply flags W X Z, and the error strings, with exact reply bytes.
//!
//! CAS values are not predictable (memha's versions are large), so tests read them first
//! (`mg <key> c`) and build the expected bytes from them. TTLs are asserted exactly, except
//! that a second boundary passing between the store and the read may take one off
//! ([`Client::expect_ttl`]).

mod common;

use std::time::Duration;

use common::{Client, Server};

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";
const INVALID_FLAG: &str = "CLIENT_ERROR invalid flag\r\n";
const DUPLICATE_FLAG: &str = "CLIENT_ERROR duplicate flag\r\n";
const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format\r\n";
const BAD_CHUNK: &str = "CLIENT_ERROR bad data chunk\r\n";
const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long\r\n";
const MS_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ms M token\r\n";
const MA_BAD_MODE: &str = "CLIENT_ERROR invalid mode for ma M token\r\n";
const MA_BAD_FLAG: &str = "CLIENT_ERROR invalid or duplicate flag\r\n";
const BAD_KEY: &str = "CLIENT_ERROR error decoding key\r\n";
const TOO_MANY: &str = "CLIENT_ERROR options flags are too long\r\n";
const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

fn server() -> (Server, Client) {
    let s = Server::start(&[]);
    let c = s.connect();
    (s, c)
}

/// Meta-protocol conveniences.
trait Meta {
    /// Send `req` and return the one reply line (with its `\r\n`).
    fn ask(&mut self, req: &str) -> String;
    /// The item's CAS (`mg <key> c`); panics on a miss.
    fn cas(&mut self, key: &str) -> u64;
    /// Send `req`; the reply line must equal `template` with `{t}` replaced by `ttl` (or by
    /// `ttl - 1`, should a second boundary have passed since the TTL was set), followed by
    /// exactly `rest`.
    fn expect_ttl(&mut self, req: &str, template: &str, ttl: i64, rest: &str);
}

impl Meta for Client {
    fn ask(&mut self, req: &str) -> String {
        self.send(req.as_bytes());
        self.line()
    }

    fn cas(&mut self, key: &str) -> u64 {
        let line = self.ask(&format!("mg {key} c\r\n"));
        num_flag(&line, 'c').unwrap_or_else(|| panic!("mg {key} c: {line:?}")) as u64
    }

    fn expect_ttl(&mut self, req: &str, template: &str, ttl: i64, rest: &str) {
        let line = self.ask(req);
        let a = template.replace("{t}", &ttl.to_string());
        let b = template.replace("{t}", &(ttl - 1).to_string());
        assert!(
            line == a || line == b,
            "request {req:?}: got {line:?}, expected {a:?} (or {b:?})"
        );
        self.expect_reply(req.as_bytes(), rest.as_bytes());
    }
}

/// The number after return flag `flag` in a reply line (`HD c123 t5` → `c` → 123).
fn num_flag(line: &str, flag: char) -> Option<i64> {
    line.trim_end()
        .split(' ')
        .skip(1)
        .find(|t| t.starts_with(flag) && t.len() > 1)
        .and_then(|t| t[1..].parse().ok())
}

// ------------------------------------------------------------------------------------ mg

#[test]
fn mg_miss_hit_and_v() {
    let (_s, mut c) = server();
    c.expect("mg foo\r\n", "EN\r\n");
    c.expect("mg foo v\r\n", "EN\r\n");
    c.expect("ms foo 2\r\nhi\r\n", "HD\r\n");
    // Without v: HD, no data block.
    c.expect("mg foo\r\n", "HD\r\n");
    c.expect("mg foo v\r\n", "VA 2\r\nhi\r\n");
    // Binary-safe value, empty value.
    c.expect_bytes(b"ms bin 4\r\n\r\n\0x\r\n", b"HD\r\n");
    c.expect_bytes(b"mg bin v\r\n", b"VA 4\r\n\r\n\0x\r\n");
    c.expect("ms empty 0\r\n\r\n", "HD\r\n");
    c.expect("mg empty v s\r\n", "VA 0 s0\r\n\r\n");
    // Bare \n line ends and extra spaces are accepted.
    c.expect("mg  foo   v  \n", "VA 2\r\nhi\r\n");
    // Meta and classic commands see the same items.
    c.expect("get foo\r\n", "VALUE foo 0 2\r\nhi\r\nEND\r\n");
    c.expect("set classic 3 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("mg classic f v\r\n", "VA 1 f3\r\nx\r\n");
    // P and L (proxy hints) are ignored.
    c.expect("mg foo Pxyz L/path/ v\r\n", "VA 2\r\nhi\r\n");
}

#[test]
fn mg_flag_b_base64_key() {
    let (_s, mut c) = server();
    // "foo" = Zm9v.
    c.expect("ms Zm9v 2 b\r\nhi\r\n", "HD\r\n");
    c.expect("get foo\r\n", "VALUE foo 0 2\r\nhi\r\nEND\r\n");
    c.expect("mg Zm9v v\r\n", "EN\r\n");
    c.expect("mg Zm9v b v\r\n", "VA 2\r\nhi\r\n");
    // k returns the key base64-encoded, followed by a `b` token.
    c.expect("mg Zm9v b k v\r\n", "VA 2 kZm9v b\r\nhi\r\n");
    c.expect("mg YmFy b k v\r\n", "EN kYmFy b\r\n");
    // A binary key (space, CR, LF, NUL) that no text command could name.
    c.expect("ms YSBiDQoA 3 b k\r\nbin\r\n", "HD kYSBiDQoA b\r\n");
    c.expect("mg YSBiDQoA b s v\r\n", "VA 3 s3\r\nbin\r\n");
    // UTF-8 key: テスト = 44OG44K544OI.
    c.expect("ms 44OG44K544OI 2 b\r\npo\r\n", "HD\r\n");
    c.expect(
        "mg 44OG44K544OI b k v\r\n",
        "VA 2 k44OG44K544OI b\r\npo\r\n",
    );
    c.expect("get テスト\r\n", "VALUE テスト 0 2\r\npo\r\nEND\r\n");
    // Keys that are not valid base64.
    c.expect("mg Z=== b v\r\n", BAD_KEY);
    c.expect("mg abc b v\r\n", BAD_KEY);
    c.expect("ms abc 2 b\r\nhi\r\nmn\r\n", &format!("{BAD_KEY}MN\r\n"));
    c.expect("md abc b\r\n", BAD_KEY);
    c.expect("mg foo v\r\n", "VA 2\r\nhi\r\n");
}

#[test]
fn mg_flag_c_and_c_upper_compare() {
    let (_s, mut c) = server();
    let set = c.ask("ms k 2 c\r\nva\r\n");
    let cas = num_flag(&set, 'c').expect("ms c returns the CAS") as u64;
    assert_ne!(cas, 0);
    assert_eq!(set, format!("HD c{cas}\r\n"));
    c.expect("mg k c\r\n", &format!("HD c{cas}\r\n"));
    c.expect("mg k c v\r\n", &format!("VA 2 c{cas}\r\nva\r\n"));
    // C matching the CAS: the value is not sent (HD); a mismatch sends it.
    c.expect(&format!("mg k C{cas} v c\r\n"), &format!("HD c{cas}\r\n"));
    c.expect(
        &format!("mg k C{} v c\r\n", cas + 1),
        &format!("VA 2 c{cas}\r\nva\r\n"),
    );
    // A miss is EN whatever C says.
    c.expect(&format!("mg nokey C{cas} v c\r\n"), "EN\r\n");
    // C needs a number.
    c.expect("mg k Cxyz v\r\n", BAD_TOKEN);
    // A new store changes the CAS.
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    let cas2 = c.cas("k");
    assert_ne!(cas, cas2);
    c.expect("gets k\r\n", &format!("VALUE k 0 1 {cas2}\r\nx\r\nEND\r\n"));
}

#[test]
fn mg_flag_e_on_vivify_and_hit() {
    let (_s, mut c) = server();
    // E sets the CAS of a vivified stub...
    c.expect("mg viv s c v N30 E1234\r\n", "VA 0 s0 c1234 W\r\n\r\n");
    c.expect("mg viv c\r\n", "HD c1234 Z\r\n");
    // ...and is ignored when the item is not modified.
    c.expect("ms k 2 E777\r\nhi\r\n", "HD\r\n");
    c.expect("mg k c E5\r\n", "HD c777\r\n");
    c.expect("mg k c\r\n", "HD c777\r\n");
    c.expect("mg k Exyz\r\n", BAD_TOKEN);
}

#[test]
fn mg_flag_f() {
    let (_s, mut c) = server();
    c.expect("ms k 2 F5\r\nhi\r\n", "HD\r\n");
    c.expect("mg k f\r\n", "HD f5\r\n");
    c.expect("ms k 2 F4294967295\r\nhi\r\n", "HD\r\n");
    c.expect("mg k f v\r\n", "VA 2 f4294967295\r\nhi\r\n");
    c.expect("ms k 2\r\nhi\r\n", "HD\r\n");
    c.expect("mg k f\r\n", "HD f0\r\n");
    c.expect("mg nokey f\r\n", "EN\r\n");
}

#[test]
fn mg_flag_h_and_u() {
    let (_s, mut c) = server();
    c.expect("ms hit 3 T100\r\nhit\r\n", "HD\r\n");
    // h reports "hit before" as it was before this request.
    c.expect("mg hit h\r\n", "HD h0\r\n");
    c.expect("mg hit h\r\n", "HD h1\r\n");
    // u: no bump, so the item stays "not hit" (memcached's t/metaget.t).
    c.expect("ms noup 3 T100\r\nhit\r\n", "HD\r\n");
    c.expect("mg noup s u h\r\n", "HD s3 h0\r\n");
    c.expect("mg noup u h\r\n", "HD h0\r\n");
    c.expect("mg noup h\r\n", "HD h0\r\n");
    c.expect("mg noup u h\r\n", "HD h1\r\n");
}

#[test]
fn mg_flag_k_and_o() {
    let (_s, mut c) = server();
    c.expect("ms foo 2\r\nhi\r\n", "HD\r\n");
    c.expect("mg foo k\r\n", "HD kfoo\r\n");
    c.expect("mg foo Oopaque k v\r\n", "VA 2 Oopaque kfoo\r\nhi\r\n");
    c.expect("mg foo k Oopaque\r\n", "HD kfoo Oopaque\r\n");
    // A miss echoes only O and k.
    c.expect("mg none s Oop t k v c\r\n", "EN Oop knone\r\n");
    // An empty O token echoes an empty opaque.
    c.expect("mg foo O\r\n", "HD O\r\n");
    // O plus up to 31 bytes is accepted; 32 is too long, even on a miss.
    let ok = "a".repeat(31);
    c.expect(&format!("mg foo O{ok}\r\n"), &format!("HD O{ok}\r\n"));
    let long = "a".repeat(32);
    c.expect(&format!("mg foo O{long}\r\n"), OPAQUE_TOO_LONG);
    c.expect(&format!("mg none O{long} q\r\n"), OPAQUE_TOO_LONG);
}

#[test]
fn mg_flag_l_last_access() {
    let (_s, mut c) = server();
    c.expect("ms la 2 T100\r\nla\r\n", "HD\r\n");
    c.expect("mg la l u\r\n", "HD l0\r\n");
    std::thread::sleep(Duration::from_millis(2100));
    // u leaves the access time alone, and l reports it as it was before this request.
    let l = num_flag(&c.ask("mg la l u\r\n"), 'l').unwrap();
    assert!((1..=3).contains(&l), "l{l} after 2.1 s");
    let l2 = num_flag(&c.ask("mg la l\r\n"), 'l').unwrap();
    assert!(l2 >= l, "l{l2} after l{l}");
    c.expect("mg la l\r\n", "HD l0\r\n");
}

#[test]
fn mg_flag_n_vivify_win_then_lost() {
    let (_s, mut c) = server();
    // The first reader of a missing key gets an empty stub and the win (W)...
    let line = c.ask("mg needwin s c v N30 t\r\n");
    let cas = num_flag(&line, 'c').expect("c on a vivified item") as u64;
    let t = num_flag(&line, 't').unwrap();
    assert!(t == 30 || t == 29, "{line:?}");
    assert_eq!(line, format!("VA 0 s0 c{cas} t{t} W\r\n"));
    c.expect_reply(b"mg needwin", b"\r\n");
    // ...later readers see that a win was already handed out (Z), and no W.
    c.expect_ttl(
        "mg needwin s c v N30 t\r\n",
        &format!("VA 0 s0 c{cas} t{{t}} Z\r\n"),
        30,
        "\r\n",
    );
    c.expect("mg needwin k q\r\n", "HD kneedwin Z\r\n");
    // The stub is an ordinary (empty) item to classic commands.
    c.expect("get needwin\r\n", "VALUE needwin 0 0\r\n\r\nEND\r\n");
    // The winner stores with the stub's CAS; a wrong CAS fails.
    c.expect("ms needwin 2 C5000 T120\r\nnu\r\n", "EX\r\n");
    c.expect(&format!("ms needwin 2 C{cas} T120\r\nmu\r\n"), "HD\r\n");
    // Now a plain item: no W, no Z.
    c.expect_ttl(
        "mg needwin s k t v N30\r\n",
        "VA 2 s2 kneedwin t{t}\r\n",
        120,
        "mu\r\n",
    );
    // Under q, a vivify still answers (memcached's t/metaget.t).
    c.expect_ttl("mg quietviv s N30 t q\r\n", "HD s0 t{t} W\r\n", 30, "");
    // Bad N tokens.
    c.expect("mg k Nabc\r\n", BAD_TOKEN);
    c.expect("mg k N\r\n", BAD_TOKEN);
}

#[test]
fn mg_flag_q_pipeline_ended_by_mn() {
    let (_s, mut c) = server();
    c.expect("ms quiet 2 q\r\nbo\r\n", "");
    // Misses are silent, hits are sent, mn ends the pipeline.
    c.expect(
        "mg quiet v q\r\nmg quiet v q\r\nmg quietmiss v q\r\nmg quiet k q\r\nmn\r\n",
        "VA 2\r\nbo\r\nVA 2\r\nbo\r\nHD kquiet\r\nMN\r\n",
    );
    // Errors are never hidden.
    c.expect("mg quiet q y\r\nmn\r\n", &format!("{INVALID_FLAG}MN\r\n"));
    // A long pipeline of quiet misses with a few hits.
    let mut req = String::new();
    let mut reply = String::new();
    for i in 0..200 {
        if i % 50 == 0 {
            req.push_str(&format!("ms k{i} 1 q\r\n{}\r\n", i % 10));
        }
        req.push_str(&format!("mg k{i} v q O{i}\r\n"));
        if i % 50 == 0 {
            reply.push_str(&format!("VA 1 O{i}\r\n{}\r\n", i % 10));
        }
    }
    req.push_str("mn\r\n");
    reply.push_str("MN\r\n");
    c.expect(&req, &reply);
}

#[test]
fn mg_flag_r_recache() {
    let (_s, mut c) = server();
    c.expect("ms rc 2 T100\r\nmu\r\n", "HD\r\n");
    let cas = c.cas("rc");
    // More TTL left than R asks for: no win.
    c.expect("mg rc c R30\r\n", &format!("HD c{cas}\r\n"));
    // Less TTL left than R: this reader wins, the next one sees Z.
    c.expect("mg rc s v R130\r\n", "VA 2 s2 W\r\nmu\r\n");
    c.expect("mg rc s v R130\r\n", "VA 2 s2 Z\r\nmu\r\n");
    c.expect("mg rc v\r\n", "VA 2 Z\r\nmu\r\n");
    // The winner re-stores: the token state is gone.
    c.expect(&format!("ms rc 4 C{cas} T300\r\nzuuu\r\n"), "HD\r\n");
    c.expect_ttl("mg rc s t v R30\r\n", "VA 4 s4 t{t}\r\n", 300, "zuuu\r\n");
    // An item that never expires never wins a recache.
    c.expect("ms forever 1\r\nx\r\n", "HD\r\n");
    c.expect("mg forever R99999 v\r\n", "VA 1\r\nx\r\n");
    c.expect("mg k Rabc\r\n", BAD_TOKEN);
}

#[test]
fn mg_flag_s_t_and_t_upper_touch() {
    let (_s, mut c) = server();
    c.expect("ms k 5\r\nhello\r\n", "HD\r\n");
    c.expect("mg k s\r\n", "HD s5\r\n");
    // t: -1 for an item that never expires.
    c.expect("mg k t\r\n", "HD t-1\r\n");
    c.expect("ms gat 4 T100\r\nooom\r\n", "HD\r\n");
    c.expect_ttl("mg gat t\r\n", "HD t{t}\r\n", 100, "");
    // T updates the TTL (get-and-touch); T before t shows the new TTL.
    c.expect_ttl("mg gat s v T300 t\r\n", "VA 4 s4 t{t}\r\n", 300, "ooom\r\n");
    c.expect_ttl("mg gat t\r\n", "HD t{t}\r\n", 300, "");
    // T0: never expires.
    c.expect("mg gat T0 t\r\n", "HD t-1\r\n");
    // T-1: expired at once.
    c.expect("mg gat T-1\r\n", "HD\r\n");
    c.expect("mg gat v\r\n", "EN\r\n");
    // Touching a miss is a miss.
    c.expect("mg nokey T30 t\r\n", "EN\r\n");
    c.expect("mg k Tabc\r\n", BAD_TOKEN);
    // mg T counts as a touch.
    let touch = c.stat_u64("cmd_touch");
    assert!(touch >= 4, "cmd_touch {touch}");
}

/// memcached applies flags in request order: `t` before `T` reports the TTL from before
/// the touch (t/metaget.t: "'t' before 'T' gives TTL before adjustment").
#[test]
fn mg_t_before_t_upper_reports_old_ttl() {
    let (_s, mut c) = server();
    c.expect("ms k 2 T100\r\nhi\r\n", "HD\r\n");
    c.expect_ttl("mg k t T500\r\n", "HD t{t}\r\n", 100, "");
    c.expect_ttl("mg k t\r\n", "HD t{t}\r\n", 500, "");
    // Vivify: the stub gets its TTL when N is applied, so `t N30` shows -1.
    c.expect("mg viv t N30 s\r\n", "HD t-1 s0 W\r\n");
    c.expect_ttl("mg viv t\r\n", "HD t{t} Z\r\n", 30, "");
}

#[test]
fn mg_all_flags_in_request_order() {
    let (_s, mut c) = server();
    c.expect("ms foo 2 F7 T100\r\nho\r\n", "HD\r\n");
    let cas = c.cas("foo");
    c.expect_ttl(
        "mg foo s t c f l h Oop k v\r\n",
        &format!("VA 2 s2 t{{t}} c{cas} f7 l0 h1 Oop kfoo\r\n"),
        100,
        "ho\r\n",
    );
    c.expect_ttl(
        "mg foo k Oop h l f c t s\r\n",
        &format!("HD kfoo Oop h1 l0 f7 c{cas} t{{t}} s2\r\n"),
        100,
        "",
    );
    // Every mg flag at once (20 tokens is the limit).
    c.expect_ttl(
        &format!("mg Zm9v b c C{cas} E6 f h k l N30 O123 q R10 s T200 t u v\r\n"),
        &format!("HD c{cas} f7 h1 kZm9v b l0 O123 s2 t{{t}}\r\n"),
        200,
        "",
    );
}

// ------------------------------------------------------------------------------------ ms

#[test]
fn ms_flags_c_k_o_s_q() {
    let (_s, mut c) = server();
    c.expect("ms a 1\r\n1\r\n", "HD\r\n");
    let line = c.ask("ms a 1 c\r\n1\r\n");
    let cas = num_flag(&line, 'c').unwrap() as u64;
    assert_eq!(line, format!("HD c{cas}\r\n"));
    assert_eq!(c.cas("a"), cas);
    c.expect("ms a 1 Otest\r\n1\r\n", "HD Otest\r\n");
    c.expect("ms a 1 s\r\n1\r\n", "HD s1\r\n");
    c.expect("ms a 1 k\r\n1\r\n", "HD ka\r\n");
    let line = c.ask("ms a 3 k s c O1\r\nabc\r\n");
    let cas = num_flag(&line, 'c').unwrap() as u64;
    assert_eq!(line, format!("HD ka s3 c{cas} O1\r\n"));
    // q hides HD only.
    c.expect("ms a 1 q c k\r\n2\r\nmn\r\n", "MN\r\n");
    c.expect("mg a v\r\n", "VA 1\r\n2\r\n");
    // Failures: CAS 0, size of the data sent, sent under q.
    c.expect(
        "ms a 2 q s c Ox k ME\r\nio\r\nmn\r\n",
        "NS s2 c0 Ox ka\r\nMN\r\n",
    );
    c.expect("ms a 2 O\r\nio\r\n", "HD O\r\n");
    let long = "o".repeat(32);
    c.expect(
        &format!("ms a 2 O{long}\r\nio\r\nmn\r\n"),
        &format!("{OPAQUE_TOO_LONG}MN\r\n"),
    );
}

#[test]
fn ms_flag_b() {
    let (_s, mut c) = server();
    c.expect("ms Zm9v 1 b k s\r\nx\r\n", "HD kZm9v b s1\r\n");
    c.expect("mg foo v\r\n", "VA 1\r\nx\r\n");
    c.expect("ms Zm9v 2 b MA k\r\nyz\r\n", "HD kZm9v b\r\n");
    c.expect("get foo\r\n", "VALUE foo 0 3\r\nxyz\r\nEND\r\n");
    c.expect("ms Zm9v= 1 b\r\nx\r\n", BAD_KEY);
}

#[test]
fn ms_flag_c_upper_compare_cas() {
    let (_s, mut c) = server();
    // C on a missing item: NF.
    c.expect("ms k 2 C123\r\nbo\r\n", "NF\r\n");
    c.expect("ms k 2\r\nbo\r\n", "HD\r\n");
    let cas = c.cas("k");
    c.expect(&format!("ms k 2 c C{}\r\nio\r\n", cas + 10), "EX c0\r\n");
    c.expect("mg k v\r\n", "VA 2\r\nbo\r\n");
    let line = c.ask(&format!("ms k 2 c C{cas}\r\nio\r\n"));
    let cas2 = num_flag(&line, 'c').unwrap() as u64;
    assert_eq!(line, format!("HD c{cas2}\r\n"));
    assert_ne!(cas, cas2);
    c.expect("mg k v\r\n", "VA 2\r\nio\r\n");
    // The old CAS no longer matches.
    c.expect(&format!("ms k 2 C{cas}\r\nxx\r\n"), "EX\r\n");
    // Replace mode with C behaves as a CAS store.
    c.expect(&format!("ms k 2 MR C{cas2}\r\nrr\r\n"), "HD\r\n");
    c.expect("ms k 2 Cabc\r\nrr\r\n", BAD_TOKEN);
    c.expect("mg k v\r\n", "VA 2\r\nrr\r\n");
    let stats = c.stats("");
    let get = |n: &str| stats.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("cas_misses"), "1");
    assert_eq!(get("cas_badval"), "2");
    assert_eq!(get("cas_hits"), "2");
}

#[test]
fn ms_flag_e_new_cas() {
    let (_s, mut c) = server();
    c.expect("ms k 2 E1234\r\nji\r\n", "HD\r\n");
    c.expect("mg k c\r\n", "HD c1234\r\n");
    c.expect("ms k 2 c C1234 E5678\r\nlo\r\n", "HD c5678\r\n");
    c.expect("gets k\r\n", "VALUE k 0 2 5678\r\nlo\r\nEND\r\n");
    c.expect("ms k 2 E-1\r\nlo\r\n", BAD_TOKEN);
}

#[test]
fn ms_flag_f_client_flags() {
    let (_s, mut c) = server();
    for f in ["0", "1", "123", "4294967295"] {
        c.expect(&format!("ms k 1 F{f}\r\n1\r\n"), "HD\r\n");
        c.expect("mg k f v\r\n", &format!("VA 1 f{f}\r\n1\r\n"));
        c.expect("get k\r\n", &format!("VALUE k {f} 1\r\n1\r\nEND\r\n"));
    }
    // Out of range: refused, the data block swallowed, nothing stored.
    c.expect(
        "ms k2 1 F4294967296\r\n1\r\nmn\r\n",
        &format!("{BAD_FORMAT}MN\r\n"),
    );
    c.expect("ms k2 1 Fx\r\n1\r\nmn\r\n", &format!("{BAD_FORMAT}MN\r\n"));
    c.expect("mg k2 v\r\n", "EN\r\n");
}

#[test]
fn ms_flag_t_ttl() {
    let (_s, mut c) = server();
    c.expect("ms k 2 T100\r\nhi\r\n", "HD\r\n");
    c.expect_ttl("mg k t v\r\n", "VA 2 t{t}\r\n", 100, "hi\r\n");
    c.expect("ms k 2\r\nhi\r\n", "HD\r\n");
    c.expect("mg k t\r\n", "HD t-1\r\n");
    c.expect("ms k 2 T0\r\nhi\r\n", "HD\r\n");
    c.expect("mg k t\r\n", "HD t-1\r\n");
    // A negative TTL stores an item that is already expired.
    c.expect("ms k 2 T-1\r\nhi\r\n", "HD\r\n");
    c.expect("mg k v\r\n", "EN\r\n");
    c.expect("ms k 2 Tabc\r\nhi\r\nmn\r\n", &format!("{BAD_TOKEN}MN\r\n"));
}

#[test]
fn ms_modes() {
    let (_s, mut c) = server();
    // S (and the default) set.
    c.expect("ms m 2 T120\r\naa\r\n", "HD\r\n");
    c.expect("ms m 2 MS\r\nbb\r\n", "HD\r\n");
    c.expect("mg m v\r\n", "VA 2\r\nbb\r\n");
    // E = add.
    c.expect("ms m 2 ME\r\ncc\r\n", "NS\r\n");
    c.expect("ms madd 2 ME\r\ncc\r\n", "HD\r\n");
    c.expect("mg madd v\r\n", "VA 2\r\ncc\r\n");
    // A = append, P = prepend (need the item).
    c.expect("ms m 2 MA\r\nzz\r\n", "HD\r\n");
    c.expect("ms m 2 MP s\r\naa\r\n", "HD s6\r\n");
    c.expect("mg m v\r\n", "VA 6\r\naabbzz\r\n");
    c.expect("ms nope 2 MA\r\nzz\r\n", "NS\r\n");
    c.expect("ms nope 2 MP\r\nzz\r\n", "NS\r\n");
    c.expect("mg nope v\r\n", "EN\r\n");
    // R = replace.
    c.expect("ms nope 2 MR\r\nzz\r\n", "NS\r\n");
    c.expect("ms m 2 MR\r\nxx\r\n", "HD\r\n");
    c.expect("mg m v\r\n", "VA 2\r\nxx\r\n");
    // Append keeps the flags of the item.
    c.expect("ms fl 1 F9\r\na\r\n", "HD\r\n");
    c.expect("ms fl 1 MA F1\r\nb\r\n", "HD\r\n");
    c.expect("mg fl f v\r\n", "VA 2 f9\r\nab\r\n");
    // Append with CAS.
    c.expect("ms ac 2 MA C5000 T30\r\nhi\r\n", "NS\r\n");
    let line = c.ask("ms ac 2 T30 c\r\nho\r\n");
    let cas = num_flag(&line, 'c').unwrap();
    c.expect(&format!("ms ac 2 MA C{}\r\nhi\r\n", cas + 1), "EX\r\n");
    c.expect(&format!("ms ac 2 MA C{cas}\r\nhi\r\n"), "HD\r\n");
    c.expect("mg ac v\r\n", "VA 4\r\nhohi\r\n");
    // Bad modes: refused, data swallowed. Modes are case-sensitive.
    c.expect("ms m 2 MZ\r\ntt\r\n", MS_BAD_MODE);
    c.expect("ms m 2 Ms\r\ntt\r\n", MS_BAD_MODE);
    c.expect("ms m 2 M\r\ntt\r\nmn\r\n", &format!("{MS_BAD_MODE}MN\r\n"));
    c.expect("mg m v\r\n", "VA 2\r\nxx\r\n");
}

#[test]
fn ms_flag_n_autovivify_append() {
    let (_s, mut c) = server();
    c.expect("ms appendviv 2 MA N30\r\nmo\r\n", "HD\r\n");
    c.expect_ttl("mg appendviv s t v\r\n", "VA 2 s2 t{t}\r\n", 30, "mo\r\n");
    c.expect("ms appendviv 2 MA N30 s\r\nko\r\n", "HD s4\r\n");
    c.expect("mg appendviv v\r\n", "VA 4\r\nmoko\r\n");
    c.expect("ms prependviv 2 MP N30 s\r\nmo\r\n", "HD s2\r\n");
    c.expect("ms prependviv 2 MP N30\r\nko\r\n", "HD\r\n");
    c.expect("mg prependviv v\r\n", "VA 4\r\nkomo\r\n");
    // N without append/prepend mode does nothing special for ms.
    c.expect("ms plain 2 N30\r\nab\r\n", "HD\r\n");
    c.expect("mg plain v t\r\n", "VA 2 t-1\r\nab\r\n");
}

#[test]
fn ms_bad_lines_and_data_chunks() {
    let (_s, mut c) = server();
    c.expect("ms\r\n", BAD_FORMAT);
    c.expect("ms foo\r\n", BAD_FORMAT);
    c.expect("ms foo bar\r\n", BAD_FORMAT);
    c.expect("ms foo -1\r\n", BAD_FORMAT);
    // Wrong terminator after the data block.
    c.expect("ms foo 2\r\nhiXYmn\r\n", &format!("{BAD_CHUNK}MN\r\n"));
    c.expect("ms foo 2 q\r\nhiXYmn\r\n", &format!("{BAD_CHUNK}MN\r\n"));
    c.expect("mg foo v\r\n", "EN\r\n");
    // Unknown flags after the length: refused, data swallowed.
    c.expect(
        "ms foo 2 y\r\nhi\r\nmn\r\n",
        &format!("{INVALID_FLAG}MN\r\n"),
    );
    c.expect(
        "ms foo 2 c c\r\nhi\r\nmn\r\n",
        &format!("{DUPLICATE_FLAG}MN\r\n"),
    );
    c.expect("ms foo 2 !\r\nhi\r\nmn\r\n", &format!("{BAD_FORMAT}MN\r\n"));
    // A key over 250 bytes.
    let long = "k".repeat(251);
    c.expect(
        &format!("ms {long} 2\r\nhi\r\nmn\r\n"),
        &format!("{BAD_FORMAT}MN\r\n"),
    );
    c.expect("mg foo v\r\n", "EN\r\n");
    // Too large for the cache (default 1 MiB items).
    let big = 2 * 1024 * 1024;
    let mut req = format!("ms foo {big} T0\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'x', big));
    req.extend_from_slice(b"\r\nmn\r\n");
    c.expect_bytes(&req, b"SERVER_ERROR object too large for cache\r\nMN\r\n");
}

// ------------------------------------------------------------------------------------ md

#[test]
fn md_basic_q_k_o_b() {
    let (_s, mut c) = server();
    c.expect("md deltest\r\n", "NF\r\n");
    c.expect("md deltest q\r\n", "NF\r\n");
    c.expect("md deltest Oa k q\r\n", "NF Oa kdeltest\r\n");
    c.expect("ms foo 2\r\nhi\r\n", "HD\r\n");
    c.expect("md foo k Oa\r\n", "HD kfoo Oa\r\n");
    c.expect("mg foo v\r\n", "EN\r\n");
    c.expect("ms foo 2\r\nhi\r\n", "HD\r\n");
    c.expect("md foo q\r\nmn\r\n", "MN\r\n");
    c.expect("mg foo v\r\n", "EN\r\n");
    c.expect("ms foo 2\r\nhi\r\n", "HD\r\n");
    c.expect("md Zm9v b k\r\n", "HD kZm9v b\r\n");
    c.expect("mg foo v\r\n", "EN\r\n");
    let long = "o".repeat(32);
    c.expect(&format!("md foo O{long}\r\n"), OPAQUE_TOO_LONG);
    c.expect("md foo y\r\n", INVALID_FLAG);
    c.expect("md\r\n", BAD_FORMAT);
}

#[test]
fn md_flag_c_upper() {
    let (_s, mut c) = server();
    c.expect("ms k 2\r\nzo\r\n", "HD\r\n");
    let cas = c.cas("k");
    c.expect(&format!("md k C{}\r\n", cas + 10), "EX\r\n");
    c.expect(&format!("md k C{} q\r\n", cas + 10), "EX\r\n");
    c.expect("mg k v\r\n", "VA 2\r\nzo\r\n");
    c.expect(&format!("md k C{cas}\r\n"), "HD\r\n");
    c.expect("mg k v\r\n", "EN\r\n");
    c.expect(&format!("md k C{cas}\r\n"), "NF\r\n");
}

#[test]
fn md_flags_i_t_e_stale() {
    let (_s, mut c) = server();
    c.expect("ms k 2 E1234\r\nmE\r\n", "HD\r\n");
    c.expect("mg k c\r\n", "HD c1234\r\n");
    // Invalidate with a chosen new CAS.
    c.expect("md k C1234 E5678 I\r\n", "HD\r\n");
    c.expect("mg k c v\r\n", "VA 2 c5678 X W\r\nmE\r\n");
    c.expect("mg k c\r\n", "HD c5678 Z X\r\n");
    // I bumps the CAS when no E is given, and T (only with I) sets the TTL.
    c.expect("ms t 3\r\nmoo\r\n", "HD\r\n");
    let cas = c.cas("t");
    c.expect("md t I T30\r\n", "HD\r\n");
    let line = c.ask("mg t s t c v\r\n");
    let cas2 = num_flag(&line, 'c').unwrap() as u64;
    assert_ne!(cas, cas2);
    let t = num_flag(&line, 't').unwrap();
    assert!(t == 30 || t == 29, "{line:?}");
    assert_eq!(line, format!("VA 3 s3 t{t} c{cas2} X W\r\n"));
    c.expect_reply(b"mg t", b"moo\r\n");
    // T without I does not touch (the item is deleted anyway).
    c.expect("ms u 1\r\nx\r\n", "HD\r\n");
    c.expect("md u T30 q\r\nmn\r\n", "MN\r\n");
    c.expect("mg u v\r\n", "EN\r\n");
    // md I under q is quiet.
    c.expect("ms v 1\r\nx\r\n", "HD\r\n");
    c.expect("md v I q\r\nmn\r\n", "MN\r\n");
    c.expect("mg v v\r\n", "VA 1 X W\r\nx\r\n");
}

#[test]
fn md_flag_x_removes_value() {
    let (_s, mut c) = server();
    c.expect("ms mdx 2 T50\r\nmx\r\n", "HD\r\n");
    c.expect("md mdx x\r\n", "HD\r\n");
    c.expect("mg mdx s v\r\n", "VA 0 s0\r\n\r\n");
    c.expect("ms mdx 2 T50\r\nmz\r\n", "HD\r\n");
    c.expect("md mdx x I\r\n", "HD\r\n");
    c.expect("mg mdx v\r\n", "VA 0 X W\r\n\r\n");
    c.expect("md nokey x\r\n", "NF\r\n");
}

/// memcached's `md x` replaces the item with a new empty one whose client flags and TTL
/// come from the md request (F/T, default 0 = none) and which keeps the old CAS (unless E).
#[test]
fn md_flag_x_resets_flags_and_ttl_like_memcached() {
    let (_s, mut c) = server();
    c.expect("ms mdx 2 T50 F7\r\nmx\r\n", "HD\r\n");
    let cas = c.cas("mdx");
    c.expect("md mdx x\r\n", "HD\r\n");
    c.expect("mg mdx s f t v\r\n", "VA 0 s0 f0 t-1\r\n\r\n");
    c.expect("mg mdx c\r\n", &format!("HD c{cas}\r\n"));
}

// ------------------------------------------------------------------------------------ ma

#[test]
fn ma_basic_v_d_modes() {
    let (_s, mut c) = server();
    c.expect("ma mo\r\n", "NF\r\n");
    c.expect("ma mo D1\r\n", "NF\r\n");
    c.expect("ma mo q\r\n", "NF\r\n");
    c.expect("ma mo Oa k v\r\n", "NF Oa kmo\r\n");
    c.expect("set mo 0 0 1\r\n1\r\n", "STORED\r\n");
    c.expect("ma mo\r\n", "HD\r\n");
    c.expect("ma mo v\r\n", "VA 1\r\n3\r\n");
    c.expect("ma mo D10 v\r\n", "VA 2\r\n13\r\n");
    c.expect("ma mo MI v\r\n", "VA 2\r\n14\r\n");
    c.expect("ma mo M+ D2 v\r\n", "VA 2\r\n16\r\n");
    c.expect("ma mo MD D3 v\r\n", "VA 2\r\n13\r\n");
    c.expect("ma mo M- v\r\n", "VA 2\r\n12\r\n");
    // Decrement floors at 0, increment wraps at 2^64.
    c.expect("ma mo MD D100 v\r\n", "VA 1\r\n0\r\n");
    c.expect(
        "ma mo D18446744073709551615 v\r\n",
        "VA 20\r\n18446744073709551615\r\n",
    );
    c.expect("ma mo v\r\n", "VA 1\r\n0\r\n");
    c.expect("get mo\r\n", "VALUE mo 0 1\r\n0\r\nEND\r\n");
    // Non-numeric values.
    c.expect("set mo 0 0 1\r\nq\r\n", "STORED\r\n");
    c.expect("ma mo\r\n", NON_NUMERIC);
    c.expect("ma mo q\r\n", NON_NUMERIC);
    // Mode and flag errors.
    c.expect("ma mo MZ\r\n", MA_BAD_MODE);
    c.expect("ma mo Mi\r\n", MA_BAD_MODE);
    c.expect("ma mo y\r\n", MA_BAD_FLAG);
    c.expect("ma mo v v\r\n", MA_BAD_FLAG);
    c.expect("ma mo Dabc\r\n", MA_BAD_FLAG);
    c.expect("ma mo Jabc N0\r\n", MA_BAD_FLAG);
    c.expect("ma\r\n", BAD_FORMAT);
}

#[test]
fn ma_flags_n_j_create() {
    let (_s, mut c) = server();
    // N creates the item with J (default 0); the delta is not applied on creation.
    c.expect("ma cnt N0 J10 v\r\n", "VA 2\r\n10\r\n");
    c.expect("ma cnt N0 J10 v\r\n", "VA 2\r\n11\r\n");
    c.expect("ma zero N0 v\r\n", "VA 1\r\n0\r\n");
    c.expect("ma dec N0 J5 MD v\r\n", "VA 1\r\n5\r\n");
    c.expect("ma dec N0 J5 MD v\r\n", "VA 1\r\n4\r\n");
    c.expect("ma mu N90\r\n", "HD\r\n");
    c.expect("get mu\r\n", "VALUE mu 0 1\r\n0\r\nEND\r\n");
    // J without N: no creation.
    c.expect("ma nope J5 v\r\n", "NF\r\n");
    // N sets the TTL of the created item.
    c.expect_ttl("ma ttl N100 J7 t v\r\n", "VA 1 t{t}\r\n", 100, "7\r\n");
    c.expect_ttl("mg ttl t v\r\n", "VA 1 t{t}\r\n", 100, "7\r\n");
    c.expect(
        "ma big N0 J18446744073709551615 v\r\n",
        "VA 20\r\n18446744073709551615\r\n",
    );
}

#[test]
fn ma_flags_t_t_upper() {
    let (_s, mut c) = server();
    c.expect("set mo 0 0 1\r\n1\r\n", "STORED\r\n");
    c.expect("ma mo t v\r\n", "VA 1 t-1\r\n2\r\n");
    c.expect_ttl("ma mo T300 t v\r\n", "VA 1 t{t}\r\n", 300, "3\r\n");
    c.expect_ttl("mg mo t\r\n", "HD t{t}\r\n", 300, "");
    // T on a miss does nothing.
    c.expect("ma nope T300 t\r\n", "NF\r\n");
    c.expect("ma mo Tabc\r\n", MA_BAD_FLAG);
}

/// memcached applies `T` to an item `ma` creates (N), in request order with `t`.
#[test]
fn ma_t_upper_applies_in_request_order() {
    let (_s, mut c) = server();
    c.expect("ma n N0 J5 t T300 v\r\n", "VA 1 t-1\r\n5\r\n");
    c.expect_ttl("ma n t\r\n", "HD t{t}\r\n", 300, "");
    c.expect_ttl("ma n t T700\r\n", "HD t{t}\r\n", 300, "");
    c.expect_ttl("ma n t\r\n", "HD t{t}\r\n", 700, "");
}

#[test]
fn ma_flags_c_upper_c_e() {
    let (_s, mut c) = server();
    c.expect("ma mc N0 C99999 v\r\n", "VA 1\r\n0\r\n");
    let cas = c.cas("mc");
    c.expect(&format!("ma mc C{} v\r\n", cas + 1), "EX\r\n");
    c.expect(&format!("ma mc C{} Oz k\r\n", cas + 1), "EX Oz kmc\r\n");
    c.expect(&format!("ma mc C{} q\r\n", cas + 1), "EX\r\n");
    let line = c.ask(&format!("ma mc C{cas} c v\r\n"));
    let cas2 = num_flag(&line, 'c').unwrap() as u64;
    assert_ne!(cas, cas2);
    assert_eq!(line, format!("VA 1 c{cas2}\r\n"));
    c.expect_reply(b"ma", b"1\r\n");
    assert_eq!(c.cas("mc"), cas2);
    // E sets the new CAS, on create and on update.
    c.expect("ma maE v N0 c E4321 J5\r\n", "VA 1 c4321\r\n5\r\n");
    c.expect("ma maE C4321 c v E8765\r\n", "VA 1 c8765\r\n6\r\n");
    c.expect("mg maE c\r\n", "HD c8765\r\n");
    c.expect("ma maE Cx\r\n", MA_BAD_FLAG);
}

#[test]
fn ma_flags_q_k_o_b() {
    let (_s, mut c) = server();
    c.expect("ma mi N0 J1 q\r\nmn\r\n", "MN\r\n");
    c.expect("ma mi q D1\r\nma mi q v\r\nmn\r\n", "MN\r\n");
    c.expect("mg mi v\r\n", "VA 1\r\n3\r\n");
    c.expect("ma mi k Oz v t\r\n", "VA 1 kmi Oz t-1\r\n4\r\n");
    c.expect("ma mi Oz k\r\n", "HD Oz kmi\r\n");
    // mi = bWk=
    c.expect("ma bWk= b k v\r\n", "VA 1 kbWk= b\r\n6\r\n");
    c.expect("ma bWk b\r\n", MA_BAD_FLAG);
    let long = "o".repeat(32);
    c.expect(&format!("ma mi O{long}\r\n"), OPAQUE_TOO_LONG);
}

// ------------------------------------------------------------------------------ mn, me

#[test]
fn mn_noop() {
    let (_s, mut c) = server();
    c.expect("mn\r\n", "MN\r\n");
    // memcached refuses any request line under 4 bytes, newline included.
    c.expect("mn\n", BAD_FORMAT);
    c.expect("mn \n", "MN\r\n");
    // Anything after mn is ignored.
    c.expect("mn foo bar\r\n", "MN\r\n");
    c.expect("mn\r\nmn\r\nmn\r\n", "MN\r\nMN\r\nMN\r\n");
}

#[test]
fn me_debug_shape() {
    let (_s, mut c) = server();
    c.expect("me none\r\n", "EN\r\n");
    c.expect("ms foo 2 T100\r\nhi\r\n", "HD\r\n");
    let cas = c.cas("foo");
    let parse = |line: &str| -> Vec<(String, String)> {
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.trim_end()
            .split(' ')
            .skip(2)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let line = c.ask("me foo\r\n");
    assert!(line.starts_with("ME foo "), "{line:?}");
    let kv = parse(&line);
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["exp", "la", "cas", "fetch", "cls", "size"],
        "{line:?}"
    );
    let exp: i64 = kv[0].1.parse().unwrap();
    assert!(exp == 100 || exp == 99, "{line:?}");
    let la: u64 = kv[1].1.parse().unwrap();
    assert!(la <= 1, "{line:?}");
    assert_eq!(kv[2].1, cas.to_string());
    // (`mg foo c` above bumped the item, which may or may not count as a fetch.)
    assert!(kv[3].1 == "yes" || kv[3].1 == "no", "{line:?}");
    let cls: u64 = kv[4].1.parse().unwrap();
    assert!(cls >= 1, "{line:?}");
    let size: u64 = kv[5].1.parse().unwrap();
    assert!(size >= 5, "{line:?}");
    // me does not bump: fetch stays as it was.
    c.expect("ms fresh 1\r\nx\r\n", "HD\r\n");
    let line = c.ask("me fresh\r\n");
    assert!(
        line.contains(" exp=-1 ") && line.contains(" fetch=no "),
        "{line:?}"
    );
    let line = c.ask("me fresh\r\n");
    assert!(line.contains(" fetch=no "), "{line:?}");
    c.expect("mg fresh v\r\n", "VA 1\r\nx\r\n");
    let line = c.ask("me fresh\r\n");
    assert!(line.contains(" fetch=yes "), "{line:?}");
    // b: base64 key in and out.
    let line = c.ask("me Zm9v b\r\n");
    assert!(line.starts_with("ME Zm9v exp="), "{line:?}");
    c.expect("me YmFy b\r\n", "EN\r\n");
    c.expect("me\r\n", BAD_FORMAT);
}

// ---------------------------------------------------------------------------- errors

#[test]
fn error_strings() {
    let (_s, mut c) = server();
    c.expect("mg\r\n", BAD_FORMAT);
    c.expect("md\r\n", BAD_FORMAT);
    c.expect("mg foo !\r\n", BAD_FORMAT);
    let long = "k".repeat(251);
    c.expect(&format!("mg {long} v\r\n"), BAD_FORMAT);
    c.expect(&format!("mg {} v\r\n", "k".repeat(250)), "EN\r\n");
    c.expect("mg foo y\r\n", INVALID_FLAG);
    c.expect("mg foo m o o o o o o o o o\r\n", INVALID_FLAG);
    c.expect("mg foo v v\r\n", DUPLICATE_FLAG);
    c.expect("mg foo Tabc\r\n", BAD_TOKEN);
    c.expect(
        "mg a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n",
        TOO_MANY,
    );
    // Errors are sent under q.
    c.expect("mg foo q y\r\n", INVALID_FLAG);
    c.expect("ms foo 2 q MZ\r\nhi\r\n", MS_BAD_MODE);
    c.expect("ma foo q MZ\r\n", MA_BAD_MODE);
    c.expect("mg Z=== b q\r\n", BAD_KEY);
    // The connection is still in sync.
    c.expect("mn\r\n", "MN\r\n");
}

// -------------------------------------------------------------- stale-while-revalidate

#[test]
fn stale_while_revalidate() {
    let (_s, mut c) = server();
    c.expect("set toinv 0 0 3\r\nmoo\r\n", "STORED\r\n");
    c.expect("mg toinv s v\r\n", "VA 3 s3\r\nmoo\r\n");
    // Invalidate: mark stale and drop the TTL to 30 s.
    c.expect("md toinv I T30\r\n", "HD\r\n");
    // First reader: stale (X) and wins the recache (W).
    let line = c.ask("mg toinv s t c v\r\n");
    let cas = num_flag(&line, 'c').unwrap() as u64;
    let t = num_flag(&line, 't').unwrap();
    assert!(t == 30 || t == 29, "{line:?}");
    assert_eq!(line, format!("VA 3 s3 t{t} c{cas} X W\r\n"));
    c.expect_reply(b"mg toinv", b"moo\r\n");
    // Next reader: X and Z (the win was handed out), no W.
    c.expect_ttl(
        "mg toinv s t c v\r\n",
        &format!("VA 3 s3 t{{t}} c{cas} Z X\r\n"),
        30,
        "moo\r\n",
    );
    // A lower CAS without I fails...
    c.expect(&format!("ms toinv 1 T90 C{}\r\nf\r\n", cas - 1), "EX\r\n");
    c.expect("ms toinv 1 T90 C0\r\nf\r\n", "EX\r\n");
    // ...with I it is stored, but as a stale item that keeps its TTL and token state.
    c.expect(&format!("ms toinv 1 I T90 C{}\r\nf\r\n", cas - 1), "HD\r\n");
    let line = c.ask("mg toinv s t c v\r\n");
    let cas2 = num_flag(&line, 'c').unwrap() as u64;
    let t = num_flag(&line, 't').unwrap();
    assert!(t == 30 || t == 29, "TTL was not raised: {line:?}");
    assert_eq!(line, format!("VA 1 s1 t{t} c{cas2} Z X\r\n"));
    c.expect_reply(b"mg toinv", b"f\r\n");
    // A store with the matching CAS clears the stale state.
    c.expect(&format!("ms toinv 1 T90 C{cas2}\r\ng\r\n"), "HD\r\n");
    let line = c.ask("mg toinv s t c v\r\n");
    let cas3 = num_flag(&line, 'c').unwrap() as u64;
    assert_ne!(cas3, cas2);
    let t = num_flag(&line, 't').unwrap();
    assert!(t == 90 || t == 89, "{line:?}");
    assert_eq!(line, format!("VA 1 s1 t{t} c{cas3}\r\n"));
    c.expect_reply(b"mg toinv", b"g\r\n");
    // A second invalidation hands out a fresh win.
    c.expect("md toinv I\r\n", "HD\r\n");
    c.expect("mg toinv v\r\n", "VA 1 X W\r\ng\r\n");
    c.expect("mg toinv v\r\n", "VA 1 Z X\r\ng\r\n");
    // Plain set clears it too.
    c.expect("ms toinv 1\r\nh\r\n", "HD\r\n");
    c.expect("mg toinv v\r\n", "VA 1\r\nh\r\n");
}

//! The memcached text protocol against the real binary: exact reply bytes for every command.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{unix_now, Client, Server};

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";

fn server() -> (Server, Client) {
    let s = Server::start(&[]);
    let c = s.connect();
    (s, c)
}

#[test]
fn set_get_basic() {
    let (_s, mut c) = server();
    c.expect("set foo 5 0 3\r\nbar\r\n", "STORED\r\n");
    c.expect("get foo\r\n", "VALUE foo 5 3\r\nbar\r\nEND\r\n");
    // Replacing keeps the latest value and flags.
    c.expect("set foo 4294967295 0 4\r\nbar2\r\n", "STORED\r\n");
    c.expect("get foo\r\n", "VALUE foo 4294967295 4\r\nbar2\r\nEND\r\n");
    // Binary-safe data: \r, \n and \0 inside the block.
    c.expect_bytes(b"set bin 0 0 5\r\na\r\n\0b\r\n", b"STORED\r\n");
    c.expect_bytes(b"get bin\r\n", b"VALUE bin 0 5\r\na\r\n\0b\r\nEND\r\n");
    // Empty value.
    c.expect("set empty 0 0 0\r\n\r\n", "STORED\r\n");
    c.expect("get empty\r\n", "VALUE empty 0 0\r\n\r\nEND\r\n");
    // Flags beyond 32 bits are refused, and the data block is swallowed.
    c.expect("set f 4294967296 0 1\r\nx\r\n", BAD_FORMAT);
    c.expect("set f -1 0 1\r\nx\r\n", BAD_FORMAT);
    c.expect("get f\r\n", "END\r\n");
    // Missing arguments.
    c.expect("set foo 0 0\r\n", BAD_FORMAT);
    c.expect("set\r\n", BAD_FORMAT);
    c.expect("get foo\r\n", "VALUE foo 4294967295 4\r\nbar2\r\nEND\r\n");
}

#[test]
fn add_replace_append_prepend() {
    let (_s, mut c) = server();
    c.expect("add k 1 0 1\r\na\r\n", "STORED\r\n");
    c.expect("add k 2 0 1\r\nb\r\n", "NOT_STORED\r\n");
    c.expect("get k\r\n", "VALUE k 1 1\r\na\r\nEND\r\n");
    c.expect("replace k 3 0 2\r\ncc\r\n", "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 3 2\r\ncc\r\nEND\r\n");
    c.expect("replace nokey 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.expect("get nokey\r\n", "END\r\n");
    // append/prepend ignore the flags and exptime they are given.
    c.expect("append k 9 -1 3\r\nEND\r\n", "STORED\r\n");
    c.expect("prepend k 9 -1 3\r\nBEG\r\n", "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 3 8\r\nBEGccEND\r\nEND\r\n");
    c.expect("append nokey 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.expect("prepend nokey 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    c.expect("get nokey\r\n", "END\r\n");
}

#[test]
fn cas_command() {
    let (_s, mut c) = server();
    c.expect("cas k 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
    c.expect("set k 0 0 1\r\na\r\n", "STORED\r\n");
    let cas = c.gets_cas("k").unwrap();
    c.expect(&format!("cas k 7 0 1 {}\r\nb\r\n", cas + 1), "EXISTS\r\n");
    c.expect(&format!("cas k 7 0 1 {cas}\r\nb\r\n"), "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 7 1\r\nb\r\nEND\r\n");
    // The unique changed, so the same cas now fails.
    c.expect(&format!("cas k 7 0 1 {cas}\r\nc\r\n"), "EXISTS\r\n");
    let cas2 = c.gets_cas("k").unwrap();
    assert_ne!(cas, cas2);
    // Missing or bad unique: refused, data block swallowed.
    c.expect("cas k 0 0 1\r\nx\r\n", BAD_FORMAT);
    c.expect("cas k 0 0 1 abc\r\nx\r\n", BAD_FORMAT);
    c.expect("cas k 0 0 1 -1\r\nx\r\n", BAD_FORMAT);
    c.expect("get k\r\n", "VALUE k 7 1\r\nb\r\nEND\r\n");
    // cas on a deleted key.
    c.expect("delete k\r\n", "DELETED\r\n");
    c.expect(&format!("cas k 0 0 1 {cas2}\r\nx\r\n"), "NOT_FOUND\r\n");
    let stats = c.stats("");
    let get = |n: &str| stats.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("cas_hits"), "1");
    assert_eq!(get("cas_badval"), "2");
    assert_eq!(get("cas_misses"), "2");
}

#[test]
fn multiget_leaves_out_misses() {
    let (_s, mut c) = server();
    c.expect("set a 1 0 1\r\nA\r\n", "STORED\r\n");
    c.expect("set c 3 0 3\r\nCCC\r\n", "STORED\r\n");
    c.expect(
        "get a b c d\r\n",
        "VALUE a 1 1\r\nA\r\nVALUE c 3 3\r\nCCC\r\nEND\r\n",
    );
    // Repeated keys are answered each time; extra spaces are tolerated.
    c.expect(
        "get  a   a c \r\n",
        "VALUE a 1 1\r\nA\r\nVALUE a 1 1\r\nA\r\nVALUE c 3 3\r\nCCC\r\nEND\r\n",
    );
    c.expect("get nothere\r\n", "END\r\n");
    c.expect("get\r\n", BAD_FORMAT);
    c.expect("gets\r\n", BAD_FORMAT);
    // Bare \n line endings are accepted too.
    c.expect("get a\n", "VALUE a 1 1\r\nA\r\nEND\r\n");
}

/// Parse a `gets`/`gats` reply into (key, flags, data, cas).
fn read_values(c: &mut Client) -> Vec<(String, u32, String, u64)> {
    let mut out = Vec::new();
    loop {
        let line = c.line();
        if line == "END\r\n" {
            return out;
        }
        let p: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(p.len(), 5, "{line:?}");
        assert_eq!(p[0], "VALUE");
        let len: usize = p[3].parse().unwrap();
        let data = c.read_exact(len + 2);
        assert_eq!(&data[len..], b"\r\n");
        out.push((
            p[1].to_string(),
            p[2].parse().unwrap(),
            String::from_utf8_lossy(&data[..len]).into_owned(),
            p[4].parse().unwrap(),
        ));
    }
}

#[test]
fn gets_cas_unique_and_changing() {
    let (_s, mut c) = server();
    for k in ["a", "b", "c"] {
        c.expect(&format!("set {k} 0 0 1\r\n{k}\r\n"), "STORED\r\n");
    }
    c.send(b"gets a b missing c\r\n");
    let v = read_values(&mut c);
    assert_eq!(v.len(), 3);
    assert_eq!(
        v.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let uniques: HashSet<u64> = v.iter().map(|x| x.3).collect();
    assert_eq!(uniques.len(), 3, "cas values differ between items: {v:?}");
    assert!(!uniques.contains(&0));

    let mut seen = uniques.clone();
    let mut last = c.gets_cas("a").unwrap();
    // Every kind of write gives a new unique.
    let writes = [
        ("set a 0 0 1\r\n1\r\n", "STORED\r\n"),
        ("replace a 0 0 1\r\n2\r\n", "STORED\r\n"),
        ("append a 0 0 1\r\n3\r\n", "STORED\r\n"),
        ("prepend a 0 0 1\r\n4\r\n", "STORED\r\n"),
        ("incr a 1\r\n", "424\r\n"),
        ("decr a 1\r\n", "423\r\n"),
    ];
    for (req, reply) in writes {
        c.expect(req, reply);
        let now = c.gets_cas("a").unwrap();
        assert_ne!(now, last, "{req:?} did not change the cas");
        assert!(seen.insert(now), "{req:?} reused a cas value");
        last = now;
    }
    c.expect(&format!("cas a 0 0 1 {last}\r\n5\r\n"), "STORED\r\n");
    let after_cas = c.gets_cas("a").unwrap();
    assert!(seen.insert(after_cas));
    // touch and gat/gats do not change it.
    c.expect("touch a 100\r\n", "TOUCHED\r\n");
    assert_eq!(c.gets_cas("a"), Some(after_cas));
    c.expect("gat 200 a\r\n", "VALUE a 0 1\r\n5\r\nEND\r\n");
    assert_eq!(c.gets_cas("a"), Some(after_cas));
    c.expect(
        "gats 300 a\r\n",
        &format!("VALUE a 0 1 {after_cas}\r\n5\r\nEND\r\n"),
    );
    assert_eq!(c.gets_cas("a"), Some(after_cas));
}

#[test]
fn gat_and_gats() {
    let (_s, mut c) = server();
    c.expect("set a 1 0 1\r\nA\r\n", "STORED\r\n");
    c.expect("set b 2 0 1\r\nB\r\n", "STORED\r\n");
    c.expect(
        "gat 100 a x b\r\n",
        "VALUE a 1 1\r\nA\r\nVALUE b 2 1\r\nB\r\nEND\r\n",
    );
    c.send(b"gats 100 b a x\r\n");
    let v = read_values(&mut c);
    assert_eq!(v.len(), 2);
    assert_eq!((v[0].0.as_str(), v[0].1, v[0].2.as_str()), ("b", 2, "B"));
    assert_eq!((v[1].0.as_str(), v[1].1, v[1].2.as_str()), ("a", 1, "A"));
    // A negative TTL through gat: the hit is returned, then the item is gone.
    c.expect("gat -1 a\r\n", "VALUE a 1 1\r\nA\r\nEND\r\n");
    c.expect("get a\r\n", "END\r\n");
    c.expect("gat 10\r\n", BAD_FORMAT);
    c.expect("gat\r\n", BAD_FORMAT);
    c.expect("gat abc b\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
    c.expect("get b\r\n", "VALUE b 2 1\r\nB\r\nEND\r\n");
    let stats = c.stats("");
    let get = |n: &str| stats.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get("touch_hits"), "5");
    assert_eq!(get("touch_misses"), "2");
}

#[test]
fn delete_forms() {
    let (_s, mut c) = server();
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("delete k\r\n", "DELETED\r\n");
    c.expect("delete k\r\n", "NOT_FOUND\r\n");
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("delete k 0\r\n", "DELETED\r\n");
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("delete k 0 noreply\r\nget k\r\n", "END\r\n");
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("delete k noreply\r\nget k\r\n", "END\r\n");
    // Bad forms.
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("delete\r\n", BAD_FORMAT);
    let usage = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
    c.expect("delete k 10\r\n", usage);
    c.expect("delete k 0 0\r\n", usage);
    c.expect("delete k x y z\r\n", usage);
    // A refused noreply delete stays silent, and does not delete.
    c.expect(
        "delete k 10 noreply\r\nget k\r\n",
        "VALUE k 0 1\r\nx\r\nEND\r\n",
    );
    c.expect(&format!("delete {}\r\n", "k".repeat(251)), BAD_FORMAT);
}

#[test]
fn incr_decr() {
    let (_s, mut c) = server();
    c.expect("incr n 1\r\n", "NOT_FOUND\r\n");
    c.expect("decr n 1\r\n", "NOT_FOUND\r\n");
    c.expect("set n 5 0 1\r\n1\r\n", "STORED\r\n");
    c.expect("incr n 1\r\n", "2\r\n");
    c.expect("incr n 8\r\n", "10\r\n");
    c.expect("get n\r\n", "VALUE n 5 2\r\n10\r\nEND\r\n");
    c.expect("decr n 3\r\n", "7\r\n");
    // The value shrinks to its digits.
    c.expect("get n\r\n", "VALUE n 5 1\r\n7\r\nEND\r\n");
    // decr stops at 0.
    c.expect("decr n 100\r\n", "0\r\n");
    c.expect("decr n 1\r\n", "0\r\n");
    // incr wraps at 2^64.
    c.expect("set n 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n");
    c.expect("incr n 1\r\n", "0\r\n");
    c.expect("set n 0 0 20\r\n18446744073709551610\r\n", "STORED\r\n");
    c.expect("incr n 10\r\n", "4\r\n");
    c.expect("set n 0 0 1\r\n0\r\n", "STORED\r\n");
    c.expect(
        "incr n 18446744073709551615\r\n",
        "18446744073709551615\r\n",
    );
    c.expect(
        "get n\r\n",
        "VALUE n 0 20\r\n18446744073709551615\r\nEND\r\n",
    );
    c.expect("decr n 18446744073709551615\r\n", "0\r\n");
    // Not a number.
    c.expect("set s 0 0 3\r\nabc\r\n", "STORED\r\n");
    let nonnum = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    c.expect("incr s 1\r\n", nonnum);
    c.expect("decr s 1\r\n", nonnum);
    c.expect("set s 0 0 2\r\n-1\r\n", "STORED\r\n");
    c.expect("incr s 1\r\n", nonnum);
    c.expect("set s 0 0 21\r\n100000000000000000000\r\n", "STORED\r\n");
    c.expect("incr s 1\r\n", nonnum);
    // A bad delta.
    let bad_delta = "CLIENT_ERROR invalid numeric delta argument\r\n";
    c.expect("incr n abc\r\n", bad_delta);
    c.expect("incr n -1\r\n", bad_delta);
    c.expect("decr n 18446744073709551616\r\n", bad_delta);
    c.expect("incr n\r\n", BAD_FORMAT);
    c.expect("incr\r\n", BAD_FORMAT);
    // noreply.
    c.expect("set n 0 0 1\r\n5\r\n", "STORED\r\n");
    c.expect(
        "incr n 5 noreply\r\ndecr n 2 noreply\r\nget n\r\n",
        "VALUE n 0 1\r\n8\r\nEND\r\n",
    );
}

#[test]
fn touch_command() {
    let (_s, mut c) = server();
    c.expect("touch k 10\r\n", "NOT_FOUND\r\n");
    c.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("touch k 10\r\n", "TOUCHED\r\n");
    c.expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    c.expect(
        "touch k abc\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    c.expect("touch k\r\n", BAD_FORMAT);
    c.expect(
        "touch k 10 noreply\r\nget k\r\n",
        "VALUE k 0 1\r\nx\r\nEND\r\n",
    );
    // A negative TTL expires it at once.
    c.expect("touch k -1\r\n", "TOUCHED\r\n");
    c.expect("get k\r\n", "END\r\n");
    c.expect("touch k 10\r\n", "NOT_FOUND\r\n");
}

#[test]
fn flush_all_now_and_noreply() {
    let (_s, mut c) = server();
    c.expect("set a 0 0 1\r\na\r\n", "STORED\r\n");
    c.expect("set b 0 0 1\r\nb\r\n", "STORED\r\n");
    c.expect("flush_all\r\n", "OK\r\n");
    c.expect("get a b\r\n", "END\r\n");
    // Items stored after the flush stay, even in the same second.
    c.expect("set a 0 0 1\r\nA\r\n", "STORED\r\n");
    c.expect("get a\r\n", "VALUE a 0 1\r\nA\r\nEND\r\n");
    c.expect("flush_all noreply\r\nget a\r\n", "END\r\n");
    c.expect("set a 0 0 1\r\nA\r\n", "STORED\r\n");
    c.expect("flush_all 0\r\n", "OK\r\n");
    c.expect("get a\r\n", "END\r\n");
    c.expect(
        "flush_all invalid\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    );
    assert_eq!(c.stat("cmd_flush"), "3");
    let stats = c.stats("");
    assert!(stats.iter().any(|(k, v)| k == "get_flushed" && v != "0"));
}

#[test]
fn flush_all_with_delay() {
    let (_s, mut c) = server();
    c.expect("set a 0 0 1\r\na\r\n", "STORED\r\n");
    c.expect("flush_all 2\r\n", "OK\r\n");
    // Still there until the flush time; items stored before that time go too.
    c.expect("get a\r\n", "VALUE a 0 1\r\na\r\nEND\r\n");
    c.expect("set b 0 0 1\r\nb\r\n", "STORED\r\n");
    std::thread::sleep(Duration::from_millis(3100));
    c.expect("get a b\r\n", "END\r\n");
    c.expect("set a 0 0 1\r\nb\r\n", "STORED\r\n");
    c.expect("get a\r\n", "VALUE a 0 1\r\nb\r\nEND\r\n");
}

#[test]
fn flush_all_refused_with_dash_f() {
    let s = Server::start(&["-F"]);
    let mut c = s.connect();
    c.expect("set a 0 0 1\r\na\r\n", "STORED\r\n");
    c.expect("flush_all\r\n", "CLIENT_ERROR flush_all not allowed\r\n");
    c.expect("get a\r\n", "VALUE a 0 1\r\na\r\nEND\r\n");
    assert!(c
        .stats("settings")
        .contains(&("flush_enabled".into(), "no".into())));
}

/// memcached sets noreply before it checks `-F`, so a refused `flush_all noreply` is silent
/// (`out_string` skips the reply when noreply is set).
#[test]
fn flush_all_noreply_refused_silently_with_dash_f() {
    let s = Server::start(&["-F"]);
    let mut c = s.connect();
    c.expect("set a 0 0 1\r\na\r\n", "STORED\r\n");
    c.expect(
        "flush_all noreply\r\nget a\r\n",
        "VALUE a 0 1\r\na\r\nEND\r\n",
    );
}

#[test]
fn ttl_rules_without_waiting() {
    let (_s, mut c) = server();
    // Negative: stored, then a miss.
    c.expect("set neg 0 -1 1\r\nx\r\n", "STORED\r\n");
    c.expect("get neg\r\n", "END\r\n");
    c.expect("add neg 0 0 1\r\ny\r\n", "STORED\r\n");
    c.expect("get neg\r\n", "VALUE neg 0 1\r\ny\r\nEND\r\n");
    // More than 30 days: an absolute Unix time, here an hour from now.
    let future = unix_now() + 3600;
    c.expect(&format!("set abs 0 {future} 1\r\nx\r\n"), "STORED\r\n");
    c.expect("get abs\r\n", "VALUE abs 0 1\r\nx\r\nEND\r\n");
    // 30 days exactly is still relative.
    c.expect("set rel 0 2592000 1\r\nx\r\n", "STORED\r\n");
    c.expect("get rel\r\n", "VALUE rel 0 1\r\nx\r\nEND\r\n");
    // An absolute time in the past (31 days after the epoch; and an hour ago).
    c.expect("set past 0 2592001 1\r\nx\r\n", "STORED\r\n");
    c.expect("get past\r\n", "END\r\n");
    let ago = unix_now() - 3600;
    c.expect(&format!("set past2 0 {ago} 1\r\nx\r\n"), "STORED\r\n");
    c.expect("get past2\r\n", "END\r\n");
    assert_eq!(c.stat("get_expired"), "3");
    // A bad exptime.
    c.expect("set bad 0 abc 1\r\nx\r\n", BAD_FORMAT);
    c.expect("get bad\r\n", "END\r\n");
}

#[test]
fn ttl_expires_after_time() {
    let (_s, mut c) = server();
    c.expect("set a 0 1 1\r\na\r\n", "STORED\r\n");
    c.expect("set b 0 100 1\r\nb\r\n", "STORED\r\n");
    c.expect("set c 0 100 1\r\nc\r\n", "STORED\r\n");
    c.expect("set d 0 1 1\r\nd\r\n", "STORED\r\n");
    c.expect("set e 0 0 1\r\ne\r\n", "STORED\r\n");
    c.expect("touch b 1\r\n", "TOUCHED\r\n");
    c.expect("gat 1 c\r\n", "VALUE c 0 1\r\nc\r\nEND\r\n");
    // Extend d before it expires.
    c.expect("touch d 100\r\n", "TOUCHED\r\n");
    std::thread::sleep(Duration::from_millis(2500));
    c.expect(
        "get a b c d e\r\n",
        "VALUE d 0 1\r\nd\r\nVALUE e 0 1\r\ne\r\nEND\r\n",
    );
}

#[test]
fn noreply_everywhere() {
    let (_s, mut c) = server();
    // One write with every noreply form; only the final get answers.
    c.send(
        b"set a 1 0 1 noreply\r\nA\r\n\
          add b 2 0 1 noreply\r\nB\r\n\
          add b 3 0 1 noreply\r\nX\r\n\
          replace a 4 0 2 noreply\r\nAA\r\n\
          replace zz 0 0 1 noreply\r\nZ\r\n\
          append a 0 0 1 noreply\r\n+\r\n\
          prepend a 0 0 1 noreply\r\n-\r\n\
          append zz 0 0 1 noreply\r\nZ\r\n\
          set n 0 0 1 noreply\r\n5\r\n\
          incr n 10 noreply\r\n\
          decr n 3 noreply\r\n\
          incr zz 1 noreply\r\n\
          touch a 100 noreply\r\n\
          touch zz 100 noreply\r\n\
          delete b noreply\r\n\
          delete zz noreply\r\n\
          verbosity 1 noreply\r\n\
          cache_memlimit 100 noreply\r\n\
          get a b n zz\r\n",
    );
    let want = "VALUE a 4 4\r\n-AA+\r\nVALUE n 0 2\r\n12\r\nEND\r\n";
    assert_eq!(String::from_utf8_lossy(&c.read_exact(want.len())), want);
    // cas noreply: a success and a mismatch, both silent.
    let cas = c.gets_cas("a").unwrap();
    c.send(
        format!(
            "cas a 0 0 1 {} noreply\r\nx\r\ncas a 0 0 1 {cas} noreply\r\ny\r\n",
            cas + 1
        )
        .as_bytes(),
    );
    c.send(b"cas zz 0 0 1 1 noreply\r\nz\r\n");
    c.expect("get a zz\r\n", "VALUE a 0 1\r\ny\r\nEND\r\n");
    // flush_all noreply.
    c.expect("flush_all noreply\r\nget a n\r\n", "END\r\n");
    assert_eq!(
        c.stats("settings")
            .iter()
            .find(|(k, _)| k == "maxbytes")
            .unwrap()
            .1,
        "104857600"
    );
    // A refused (malformed) noreply storage command still reports its error.
    c.expect("set a 0 0 noreply\r\n", BAD_FORMAT);
}

#[test]
fn version_verbosity_and_unknown() {
    let (_s, mut c) = server();
    c.send(b"version\r\n");
    let v = c.line();
    assert!(
        v.starts_with("VERSION 1.6") && v.ends_with("\r\n") && v.len() > 12,
        "{v:?}"
    );
    assert!(!v[8..].trim_end().contains(' '), "{v:?}");
    c.expect("verbosity 1\r\n", "OK\r\n");
    c.expect("verbosity 0\r\n", "OK\r\n");
    c.expect("verbosity 1 noreply\r\nversion\r\n", &v);
    c.expect("verbosity\r\n", BAD_FORMAT);
    c.expect("verbosity abc\r\n", BAD_FORMAT);
    c.expect("bogus\r\n", "ERROR\r\n");
    c.expect("bogus with args\r\n", "ERROR\r\n");
    c.expect("SET k 0 0 1\r\n", "ERROR\r\n");
    c.expect("GETS k\r\n", "ERROR\r\n");
    // memcached 1.6.45 refuses a line shorter than 4 bytes as malformed; a longer blank
    // line has no command word: ERROR.
    c.expect("\r\n", BAD_FORMAT);
    c.expect("    \r\n", "ERROR\r\n");
    c.expect("version\r\n", &v);
}

#[test]
fn quit_closes() {
    let (s, mut c) = server();
    c.send(b"quit\r\n");
    assert!(c.closed());
    // quit in a pipeline: earlier commands answered, later ones not.
    let mut c = s.connect();
    c.send(b"set k 0 0 1\r\nx\r\nquit\r\nget k\r\n");
    let mut all = Vec::new();
    use std::io::Read;
    c.reader.read_to_end(&mut all).unwrap();
    assert_eq!(String::from_utf8_lossy(&all), "STORED\r\n");
    s.connect()
        .expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn shutdown_refused_without_dash_a() {
    let (mut s, mut c) = server();
    c.expect("shutdown\r\n", "SERVER_ERROR: shutdown not enabled\r\n");
    c.expect(
        "shutdown graceful\r\n",
        "SERVER_ERROR: shutdown not enabled\r\n",
    );
    c.expect(
        "shutdown bogus\r\n",
        "CLIENT_ERROR invalid shutdown mode\r\n",
    );
    c.ping();
    assert!(s.alive());
    assert!(c
        .stats("settings")
        .contains(&("shutdown_command".into(), "no".into())));
}

#[test]
fn shutdown_with_dash_a_exits() {
    let mut s = Server::start(&["-A"]);
    let mut c = s.connect();
    c.expect(
        "shutdown bogus\r\n",
        "CLIENT_ERROR invalid shutdown mode\r\n",
    );
    c.send(b"shutdown\r\n");
    assert!(c.closed());
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("memha exits after shutdown");
    assert!(status.success(), "{status}");

    let mut s = Server::start(&["-A"]);
    let mut c = s.connect();
    c.send(b"shutdown graceful\r\n");
    assert!(c.closed());
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("memha exits after shutdown graceful");
    assert!(status.success(), "{status}");
}

#[test]
fn cache_memlimit() {
    let (_s, mut c) = server();
    let maxbytes = |c: &mut Client| {
        c.stats("settings")
            .into_iter()
            .find(|(k, _)| k == "maxbytes")
            .unwrap()
            .1
    };
    assert_eq!(maxbytes(&mut c), "67108864");
    c.expect("cache_memlimit 100\r\n", "OK\r\n");
    assert_eq!(maxbytes(&mut c), "104857600");
    assert_eq!(c.stat("limit_maxbytes"), "104857600");
    c.expect("cache_memlimit 32 noreply\r\nversion\r\n", "VERSION ");
    c.line();
    assert_eq!(maxbytes(&mut c), "33554432");
    c.expect(
        "cache_memlimit 1\r\n",
        "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
    );
    // A malformed argument: memcached 1.6.45 says ERROR, memha the usual format error.
    for bad in ["cache_memlimit\r\n", "cache_memlimit abc\r\n"] {
        c.send(bad.as_bytes());
        let line = c.line();
        assert!(
            line == "ERROR\r\n" || line == BAD_FORMAT,
            "{bad:?} -> {line:?}"
        );
    }
    assert_eq!(maxbytes(&mut c), "33554432");
}

/// memcached refuses a limit above 10^9 MB, which is a byte count given by mistake
/// (proto_text.c process_memlimit_command); taking it would lift the limit altogether.
#[test]
fn cache_memlimit_refuses_a_byte_count() {
    let (_s, mut c) = server();
    c.expect(
        "cache_memlimit 2000000000\r\n",
        "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
    );
    let maxbytes = c
        .stats("settings")
        .into_iter()
        .find(|(k, _)| k == "maxbytes")
        .unwrap()
        .1;
    assert_eq!(maxbytes, "67108864");
}

/// memcached parses the stored number with strtoull, so trailing whitespace is allowed (its
/// own decr leaves values padded with spaces, e.g. "9 ").
#[test]
fn incr_accepts_a_value_with_trailing_space() {
    let (_s, mut c) = server();
    c.expect("set n 0 0 3\r\n12 \r\n", "STORED\r\n");
    c.expect("incr n 1\r\n", "13\r\n");
}

/// memcached's out_string drops any reply while noreply is set, including a bad data chunk.
#[test]
fn noreply_bad_data_chunk_is_silent() {
    let (_s, mut c) = server();
    c.expect("set k 0 0 2 noreply\r\nabcd", "");
    c.expect("get k\r\n", "END\r\n");
}

#[test]
fn concurrent_incr_is_atomic() {
    let s = Server::start(&["-t", "4"]);
    let mut c = s.connect();
    c.expect("set n 0 0 1\r\n0\r\n", "STORED\r\n");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut c = s.connect();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    c.send("incr n 1\r\n".repeat(50).as_bytes());
                    for _ in 0..50 {
                        let line = c.line();
                        assert!(line.trim_end().parse::<u64>().is_ok(), "{line:?}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    c.expect("get n\r\n", "VALUE n 0 4\r\n8000\r\nEND\r\n");
}

#[test]
fn multiget_reply_much_larger_than_one_write() {
    let (_s, mut c) = server();
    // 200 values of 20 KiB; asking for each 5 times gives a 20 MB reply, which the server
    // must produce in pieces and in order.
    for i in 0..200 {
        let v = format!("{i:05}").repeat(4096);
        c.expect(
            &format!("set big{i} {i} 0 {}\r\n{v}\r\n", v.len()),
            "STORED\r\n",
        );
    }
    let mut line = String::from("get");
    for _ in 0..5 {
        for i in 0..200 {
            line.push_str(&format!(" big{i} miss{i}"));
        }
    }
    line.push_str("\r\n");
    c.send(line.as_bytes());
    for _ in 0..5 {
        for i in 0..200 {
            assert_eq!(c.line(), format!("VALUE big{i} {i} 20480\r\n"));
            let data = c.read_exact(20482);
            assert!(
                data[..20480] == *format!("{i:05}").repeat(4096).as_bytes(),
                "big{i}"
            );
            assert_eq!(&data[20480..], b"\r\n");
        }
    }
    assert_eq!(c.line(), "END\r\n");
    c.send(b"gets big7 big8\r\n");
    let v = read_values(&mut c);
    assert_eq!(v.len(), 2);
    c.ping();
}

/// Read a stats group reply up to END, checking each line is `STAT <name> <value>`.
fn stat_group(c: &mut Client, group: &str) -> Vec<String> {
    if group.is_empty() {
        c.send(b"stats\r\n");
    } else {
        c.send(format!("stats {group}\r\n").as_bytes());
    }
    let all = c.read_until_end();
    let lines: Vec<String> = all.split_inclusive("\r\n").map(str::to_string).collect();
    for l in &lines[..lines.len() - 1] {
        assert!(
            l.starts_with("STAT ") && l.trim_end().split(' ').count() >= 3,
            "stats {group}: bad line {l:?}"
        );
    }
    lines
}

#[test]
fn stats_groups_end_with_end() {
    let (_s, mut c) = server();
    c.expect("set a:1 0 0 3\r\nabc\r\n", "STORED\r\n");
    c.expect("get a:1 b:2\r\n", "VALUE a:1 0 3\r\nabc\r\nEND\r\n");

    let general = stat_group(&mut c, "");
    let names: Vec<&str> = general
        .iter()
        .filter_map(|l| l.strip_prefix("STAT ")?.split(' ').next())
        .collect();
    for want in [
        "pid",
        "uptime",
        "time",
        "version",
        "pointer_size",
        "rusage_user",
        "rusage_system",
        "curr_connections",
        "total_connections",
        "rejected_connections",
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "get_hits",
        "get_misses",
        "get_expired",
        "get_flushed",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
        "cas_hits",
        "cas_misses",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
        "store_no_memory",
        "auth_cmds",
        "auth_errors",
        "idle_kicks",
        "evictions",
        "reclaimed",
        "bytes_read",
        "bytes_written",
        "limit_maxbytes",
        "accepting_conns",
        "threads",
        "conn_yields",
        "curr_items",
        "total_items",
        "bytes",
    ] {
        assert!(names.contains(&want), "stats lacks {want}");
    }
    let uniq: HashSet<&&str> = names.iter().collect();
    assert_eq!(uniq.len(), names.len(), "duplicate stat names");
    assert_eq!(c.stat("curr_items"), "1");
    assert_eq!(c.stat("get_hits"), "1");
    assert_eq!(c.stat("get_misses"), "1");

    let settings = stat_group(&mut c, "settings");
    for want in [
        "maxbytes",
        "maxconns",
        "tcpport",
        "item_size_max",
        "cas_enabled",
        "evictions",
    ] {
        assert!(
            settings
                .iter()
                .any(|l| l.starts_with(&format!("STAT {want} "))),
            "settings lacks {want}"
        );
    }
    let items = stat_group(&mut c, "items");
    assert!(
        items.iter().any(|l| l.contains(":number 1\r\n")),
        "{items:?}"
    );
    let slabs = stat_group(&mut c, "slabs");
    assert!(
        slabs.iter().any(|l| l.starts_with("STAT active_slabs ")),
        "{slabs:?}"
    );
    assert!(
        slabs.iter().any(|l| l.starts_with("STAT total_malloced ")),
        "{slabs:?}"
    );
    stat_group(&mut c, "sizes");
    stat_group(&mut c, "conns");

    // detail on|off|dump.
    c.expect("stats detail on\r\n", "OK\r\n");
    c.expect("set p:1 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("get p:1 p:2\r\n", "VALUE p:1 0 1\r\nx\r\nEND\r\n");
    c.expect("delete p:1\r\n", "DELETED\r\n");
    c.expect(
        "stats detail dump\r\n",
        "PREFIX p get 2 hit 1 set 1 del 1\r\nEND\r\n",
    );
    c.expect("stats detail off\r\n", "OK\r\n");
    c.expect("get p:1\r\n", "END\r\n");
    c.expect(
        "stats detail dump\r\n",
        "PREFIX p get 2 hit 1 set 1 del 1\r\nEND\r\n",
    );
    c.expect(
        "stats detail\r\n",
        "CLIENT_ERROR usage: stats detail on|off|dump\r\n",
    );
    c.expect(
        "stats detail bogus\r\n",
        "CLIENT_ERROR usage: stats detail on|off|dump\r\n",
    );

    // cachedump.
    c.send(b"stats cachedump 1 10\r\n");
    let dump = c.read_until_end();
    for l in dump.split_inclusive("\r\n").filter(|l| *l != "END\r\n") {
        assert!(l.starts_with("ITEM ") && l.ends_with(" s]\r\n"), "{l:?}");
    }
    assert!(dump.contains("ITEM a:1 [3 b; 0 s]\r\n"), "{dump:?}");

    // reset.
    c.expect("stats reset\r\n", "RESET\r\n");
    assert_eq!(c.stat("get_hits"), "0");
    assert_eq!(c.stat("cmd_get"), "0");
    assert_eq!(c.stat("curr_items"), "1", "reset keeps the items");
    c.expect("stats detail dump\r\n", "END\r\n");

    c.expect("stats bogus\r\n", "ERROR\r\n");
    c.ping();
}

#[test]
fn key_length_limit() {
    let (_s, mut c) = server();
    let k250 = "k".repeat(250);
    let k251 = "k".repeat(251);
    c.expect(&format!("set {k250} 0 0 1\r\nx\r\n"), "STORED\r\n");
    c.expect(
        &format!("get {k250}\r\n"),
        &format!("VALUE {k250} 0 1\r\nx\r\nEND\r\n"),
    );
    // Too long: refused, its data block swallowed so the next command works.
    c.expect(&format!("set {k251} 0 0 1\r\nx\r\n"), BAD_FORMAT);
    c.expect(&format!("get {k251}\r\n"), BAD_FORMAT);
    c.expect(&format!("get a {k251}\r\n"), BAD_FORMAT);
    c.expect(&format!("add {k251} 0 0 1\r\nx\r\n"), BAD_FORMAT);
    c.expect(&format!("incr {k251} 1\r\n"), BAD_FORMAT);
    c.expect(&format!("touch {k251} 1\r\n"), BAD_FORMAT);
    c.expect(&format!("delete {k250}\r\n"), "DELETED\r\n");
    c.ping();
}

#[test]
fn pipelining_keeps_order() {
    let (_s, mut c) = server();
    let mut req = String::new();
    let mut want = String::new();
    for i in 0..500 {
        req.push_str(&format!(
            "set k{i} {i} 0 {}\r\nv{i}\r\n",
            format!("v{i}").len()
        ));
        want.push_str("STORED\r\n");
        req.push_str(&format!("get k{i} nokey\r\n"));
        want.push_str(&format!(
            "VALUE k{i} {i} {}\r\nv{i}\r\nEND\r\n",
            format!("v{i}").len()
        ));
        req.push_str(&format!("incr k{i} 1\r\ndelete k{i}\r\nbogus\r\n"));
        want.push_str(
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\nDELETED\r\nERROR\r\n",
        );
    }
    req.push_str("version\r\n");
    // A reader thread avoids a deadlock when both sides' buffers fill.
    let mut reader = c.stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let want_len = want.len();
    let t = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0; want_len];
        reader.read_exact(&mut buf).unwrap();
        buf
    });
    c.send(req.as_bytes());
    let got = t.join().unwrap();
    assert!(got == want.as_bytes(), "pipelined replies differ");
    assert!(c.line().starts_with("VERSION "));
}

#[test]
fn cas_disabled_with_dash_c() {
    let s = Server::start(&["-C"]);
    let mut c = s.connect();
    c.expect("set a 0 0 1\r\nx\r\n", "STORED\r\n");
    c.expect("gets a\r\n", "VALUE a 0 1 0\r\nx\r\nEND\r\n");
    c.expect("gats 100 a\r\n", "VALUE a 0 1 0\r\nx\r\nEND\r\n");
    c.expect("set a 0 0 1\r\ny\r\n", "STORED\r\n");
    c.expect("gets a\r\n", "VALUE a 0 1 0\r\ny\r\nEND\r\n");
    assert!(c
        .stats("settings")
        .contains(&("cas_enabled".into(), "no".into())));
}

//! Unit tests for every operation and its edges.

use super::*;

const NOW: u32 = 1_700_000_000;

fn store_with(limit: usize, no_evict: bool) -> Store {
    Store::new(StoreConfig {
        memory_limit: limit,
        item_size_max: 1 << 20,
        no_evict,
        shards: 64,
        node_id: 5,
        ..StoreConfig::default()
    })
}

fn big() -> Store {
    store_with(1 << 30, false)
}

fn get(s: &Store, k: &[u8], now: u32) -> Lookup<(Vec<u8>, u32, u32, u64)> {
    s.get(k, now, None, |v| {
        (v.value.to_vec(), v.flags, v.exptime, v.cas)
    })
}

fn val(s: &Store, k: &[u8], now: u32) -> Option<Vec<u8>> {
    get(s, k, now).hit().map(|x| x.0)
}

fn cas_of(s: &Store, k: &[u8], now: u32) -> u64 {
    get(s, k, now).hit().unwrap().3
}

fn wall_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

#[test]
fn set_get_basic() {
    let s = big();
    assert_eq!(get(&s, b"k", NOW), Lookup::Miss);
    let (r, v) = s.store_versioned(SetMode::Set, b"k", 42, 0, b"hello", None, NOW);
    assert_eq!(r, StoreResult::Stored);
    assert_eq!(
        get(&s, b"k", NOW),
        Lookup::Hit((b"hello".to_vec(), 42, 0, v.unwrap()))
    );
    assert_eq!(version_node_id(v.unwrap()), 5);
    // Overwrite: new value, new version.
    let (_, v2) = s.store_versioned(SetMode::Set, b"k", 7, 0, b"", None, NOW);
    assert!(v2.unwrap() > v.unwrap());
    assert_eq!(get(&s, b"k", NOW), Lookup::Hit((vec![], 7, 0, v2.unwrap())));
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.total_items, 2);
    assert_eq!(st.bytes, (HEADER_SIZE + 1) as u64);
    assert!(st.memory_used > 0);
    s.check_consistency().unwrap();
}

#[test]
fn view_reports_previous_access() {
    let s = big();
    s.store(SetMode::Set, b"k", 0, 0, b"v", None, NOW);
    let first = s
        .get(b"k", NOW + 5, None, |v| (v.fetched, v.atime))
        .hit()
        .unwrap();
    assert_eq!(first, (false, NOW));
    let second = s
        .get(b"k", NOW + 9, None, |v| (v.fetched, v.atime))
        .hit()
        .unwrap();
    assert_eq!(second, (true, NOW + 5));
}

#[test]
fn ttl_expiry() {
    let s = big();
    s.store(SetMode::Set, b"a", 0, NOW + 10, b"x", None, NOW);
    assert!(get(&s, b"a", NOW + 9).is_hit());
    assert_eq!(get(&s, b"a", NOW + 10), Lookup::Expired);
    assert_eq!(get(&s, b"a", NOW + 10), Lookup::Miss);
    // exptime in the past: stored, but immediately invisible.
    assert_eq!(
        s.store(SetMode::Set, b"p", 0, NOW - 1, b"x", None, NOW),
        StoreResult::Stored
    );
    assert_eq!(get(&s, b"p", NOW), Lookup::Expired);
    let st = s.stats();
    assert_eq!(st.get_expired, 2);
    assert_eq!(st.expired_unfetched, 1); // "a" had been fetched once
    assert_eq!(st.curr_items, 0);
    s.check_consistency().unwrap();
    // Expired items are invisible to every op.
    s.store(SetMode::Set, b"e", 0, NOW + 1, b"5", None, NOW);
    assert_eq!(s.arith(b"e", true, 1, NOW + 1), ArithResult::NotFound);
    s.store(SetMode::Set, b"e", 0, NOW + 1, b"5", None, NOW);
    assert_eq!(s.delete(b"e", None, NOW + 1), DeleteResult::NotFound);
    s.store(SetMode::Set, b"e", 0, NOW + 1, b"5", None, NOW);
    assert!(!s.touch(b"e", 0, NOW + 1));
    s.store(SetMode::Set, b"e", 0, NOW + 1, b"5", None, NOW);
    assert_eq!(
        s.store(SetMode::Replace, b"e", 0, 0, b"1", None, NOW + 1),
        StoreResult::NotStored
    );
    s.store(SetMode::Set, b"e", 0, NOW + 1, b"5", None, NOW);
    assert_eq!(
        s.store(SetMode::Add, b"e", 0, 0, b"1", None, NOW + 1),
        StoreResult::Stored
    );
    s.check_consistency().unwrap();
}

#[test]
fn add_replace() {
    let s = big();
    assert_eq!(
        s.store(SetMode::Replace, b"k", 0, 0, b"1", None, NOW),
        StoreResult::NotStored
    );
    assert_eq!(
        s.store(SetMode::Add, b"k", 1, 0, b"1", None, NOW),
        StoreResult::Stored
    );
    assert_eq!(
        s.store(SetMode::Add, b"k", 2, 0, b"2", None, NOW),
        StoreResult::NotStored
    );
    assert_eq!(get(&s, b"k", NOW).hit().unwrap().0, b"1");
    assert_eq!(
        s.store(SetMode::Replace, b"k", 3, 0, b"3", None, NOW),
        StoreResult::Stored
    );
    assert_eq!(get(&s, b"k", NOW).hit().unwrap().0, b"3");
    assert_eq!(get(&s, b"k", NOW).hit().unwrap().1, 3);
}

#[test]
fn append_prepend() {
    let s = big();
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, b"x", None, NOW),
        StoreResult::NotStored
    );
    assert_eq!(
        s.store(SetMode::Prepend, b"k", 0, 0, b"x", None, NOW),
        StoreResult::NotStored
    );
    s.store(SetMode::Set, b"k", 9, NOW + 100, b"mid", None, NOW);
    let c0 = cas_of(&s, b"k", NOW);
    assert_eq!(
        s.store(SetMode::Append, b"k", 1, 5, b"_end", None, NOW),
        StoreResult::Stored
    );
    assert_eq!(
        s.store(SetMode::Prepend, b"k", 1, 5, b"start_", None, NOW),
        StoreResult::Stored
    );
    let (v, f, e, c) = get(&s, b"k", NOW).hit().unwrap();
    assert_eq!(v, b"start_mid_end");
    assert_eq!((f, e), (9, NOW + 100)); // old flags and exptime kept
    assert!(c > c0);
    // cas on append
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, b"!", Some(c + 1), NOW),
        StoreResult::Exists
    );
    assert_eq!(
        s.store(SetMode::Append, b"k", 0, 0, b"!", Some(c), NOW),
        StoreResult::Stored
    );
    assert_eq!(val(&s, b"k", NOW).unwrap(), b"start_mid_end!");
    assert_eq!(s.stats().bytes, (HEADER_SIZE + 1 + 14) as u64);
    s.check_consistency().unwrap();
}

#[test]
fn cas_semantics() {
    let s = big();
    assert_eq!(
        s.store(SetMode::Set, b"k", 0, 0, b"a", Some(1), NOW),
        StoreResult::NotFound
    );
    let (_, v) = s.store_versioned(SetMode::Set, b"k", 0, 0, b"a", None, NOW);
    let v = v.unwrap();
    assert_eq!(
        s.store(SetMode::Set, b"k", 0, 0, b"b", Some(v + 1), NOW),
        StoreResult::Exists
    );
    let (r, v2) = s.store_versioned(SetMode::Set, b"k", 0, 0, b"b", Some(v), NOW);
    assert_eq!(r, StoreResult::Stored);
    assert!(v2.unwrap() > v);
    assert_eq!(
        s.store(SetMode::Set, b"k", 0, 0, b"c", Some(v), NOW),
        StoreResult::Exists
    );
    assert_eq!(val(&s, b"k", NOW).unwrap(), b"b");
    // cas on replace of missing key
    assert_eq!(
        s.store(SetMode::Replace, b"zz", 0, 0, b"c", Some(v), NOW),
        StoreResult::NotStored
    );
    // cas against an expired item = not found
    s.store(SetMode::Set, b"t", 0, NOW + 1, b"a", None, NOW);
    let c = cas_of(&s, b"t", NOW);
    assert_eq!(
        s.store(SetMode::Set, b"t", 0, 0, b"a", Some(c), NOW + 1),
        StoreResult::NotFound
    );
}

#[test]
fn delete_semantics() {
    let s = big();
    assert_eq!(s.delete(b"k", None, NOW), DeleteResult::NotFound);
    s.store(SetMode::Set, b"k", 0, 0, b"a", None, NOW);
    let c = cas_of(&s, b"k", NOW);
    assert_eq!(s.delete(b"k", Some(c + 1), NOW), DeleteResult::Exists);
    assert_eq!(s.delete(b"k", Some(c), NOW), DeleteResult::Deleted);
    assert_eq!(s.delete(b"k", None, NOW), DeleteResult::NotFound);
    let st = s.stats();
    assert_eq!((st.curr_items, st.bytes), (0, 0));
    s.check_consistency().unwrap();
}

#[test]
fn incr_decr() {
    let s = big();
    assert_eq!(s.arith(b"n", true, 1, NOW), ArithResult::NotFound);
    s.store(SetMode::Set, b"n", 77, NOW + 50, b"99", None, NOW);
    let c0 = cas_of(&s, b"n", NOW);
    let (r, v) = s.arith_versioned(b"n", true, 1, NOW);
    assert_eq!(r, ArithResult::Value(100));
    assert!(v.unwrap() > c0);
    let (val_, f, e, c) = get(&s, b"n", NOW).hit().unwrap();
    assert_eq!(
        (val_.as_slice(), f, e, c),
        (&b"100"[..], 77, NOW + 50, v.unwrap())
    );
    assert_eq!(s.arith(b"n", false, 1, NOW), ArithResult::Value(99));
    assert_eq!(val(&s, b"n", NOW).unwrap(), b"99");
    assert_eq!(s.arith(b"n", false, 1000, NOW), ArithResult::Value(0));
    assert_eq!(val(&s, b"n", NOW).unwrap(), b"0");
    assert_eq!(s.arith(b"n", false, 1, NOW), ArithResult::Value(0));
    s.check_consistency().unwrap();
    assert_eq!(s.stats().bytes, (HEADER_SIZE + 1 + 1) as u64);

    s.store(SetMode::Set, b"m", 0, 0, b"18446744073709551615", None, NOW);
    assert_eq!(s.arith(b"m", true, 1, NOW), ArithResult::Value(0));
    assert_eq!(val(&s, b"m", NOW).unwrap(), b"0");
    assert_eq!(
        s.arith(b"m", true, u64::MAX, NOW),
        ArithResult::Value(u64::MAX)
    );
    assert_eq!(s.arith(b"m", true, 2, NOW), ArithResult::Value(1));
    // leading zeros are digits
    s.store(SetMode::Set, b"z", 0, 0, b"007", None, NOW);
    assert_eq!(s.arith(b"z", true, 1, NOW), ArithResult::Value(8));

    // memcached's strtoull rules: surrounding whitespace and leading zeros are fine.
    for (ok, n) in [
        (&b"12 "[..], 13u64),
        (b" 12", 13),
        (b"000000000000000000001", 2),
    ] {
        s.store(SetMode::Set, b"b", 0, 0, ok, None, NOW);
        assert_eq!(s.arith(b"b", true, 1, NOW), ArithResult::Value(n), "{ok:?}");
    }
    for bad in [
        &b"abc"[..],
        b"",
        b"  ",
        b"1 2",
        b"-1",
        b"1.5",
        b"18446744073709551616",
    ] {
        s.store(SetMode::Set, b"b", 0, 0, bad, None, NOW);
        assert_eq!(
            s.arith(b"b", true, 1, NOW),
            ArithResult::NonNumeric,
            "{:?}",
            bad
        );
        assert_eq!(s.arith(b"b", false, 1, NOW), ArithResult::NonNumeric);
        assert_eq!(val(&s, b"b", NOW).unwrap(), bad);
    }
    s.check_consistency().unwrap();
    // grows 1 digit -> 20 digits repeatedly
    s.store(SetMode::Set, b"g", 0, 0, b"1", None, NOW);
    assert_eq!(
        s.arith(b"g", true, u64::MAX - 10, NOW),
        ArithResult::Value(u64::MAX - 9)
    );
    assert_eq!(
        val(&s, b"g", NOW).unwrap(),
        (u64::MAX - 9).to_string().as_bytes()
    );
    s.check_consistency().unwrap();
}

#[test]
fn touch_keeps_version() {
    let s = big();
    assert!(!s.touch(b"k", NOW + 5, NOW));
    s.store(SetMode::Set, b"k", 0, NOW + 5, b"v", None, NOW);
    let c = cas_of(&s, b"k", NOW);
    assert!(s.touch(b"k", NOW + 100, NOW));
    assert!(get(&s, b"k", NOW + 50).is_hit());
    assert_eq!(cas_of(&s, b"k", NOW), c);
    // gat
    let r = s
        .get(b"k", NOW, Some(0), |v| (v.exptime, v.cas))
        .hit()
        .unwrap();
    assert_eq!(r, (0, c));
    assert!(get(&s, b"k", NOW + 1_000_000).is_hit());
    // touch into the past makes it expire
    assert!(s.touch(b"k", NOW - 1, NOW));
    assert_eq!(get(&s, b"k", NOW), Lookup::Expired);
}

#[test]
fn versions_strictly_increase() {
    let s = big();
    let mut last = 0;
    for i in 0..10_000u32 {
        let k = (i % 17).to_string();
        let (_, v) = s.store_versioned(SetMode::Set, k.as_bytes(), 0, 0, b"1", None, NOW);
        let v = v.unwrap();
        assert!(v > last);
        last = v;
        let (_, v) = s.arith_versioned(k.as_bytes(), true, 1, NOW);
        assert!(v.unwrap() > last);
        last = v.unwrap();
    }
    let t = version_time_ms(last);
    let wall = wall_secs() as u64 * 1000;
    assert!(t + 10_000 > wall && t < wall + 10_000);
}

#[test]
fn too_large() {
    let s = big();
    let key = b"hello_world"; // 11 bytes
    let ok = vec![b'a'; 1_047_552];
    let bad = vec![b'a'; 1_049_600];
    assert_eq!(
        s.store(SetMode::Set, key, 0, 0, &ok, None, NOW),
        StoreResult::Stored
    );
    assert_eq!(val(&s, key, NOW).unwrap().len(), ok.len());
    // exact boundary: 48 + 11 + v + 2 == 1 MiB fits, one more byte doesn't
    let edge = (1 << 20) - 48 - 11 - 2;
    assert_eq!(
        s.store(SetMode::Set, key, 0, 0, &vec![b'e'; edge], None, NOW),
        StoreResult::Stored
    );
    assert_eq!(
        s.store(
            SetMode::Add,
            b"other",
            0,
            0,
            &vec![b'e'; edge + 20],
            None,
            NOW
        ),
        StoreResult::TooLarge
    );
    // append that would overflow fails and keeps the item
    assert_eq!(
        s.store(SetMode::Append, key, 0, 0, b"x", None, NOW),
        StoreResult::TooLarge
    );
    assert!(get(&s, key, NOW).is_hit());
    // a too-large set deletes the old value
    assert_eq!(
        s.store(SetMode::Set, key, 0, 0, &bad, None, NOW),
        StoreResult::TooLarge
    );
    assert_eq!(get(&s, key, NOW), Lookup::Miss);
    let st = s.stats();
    assert_eq!(st.store_too_large, 3);
    assert_eq!(st.curr_items, 0);
    s.check_consistency().unwrap();
}

#[test]
fn eviction_respects_budget() {
    let limit = 1 << 20;
    let s = store_with(limit, false);
    let v = vec![b'v'; 1024];
    let n = 3 * limit / 1024;
    for i in 0..n {
        let k = format!("key:{i}");
        assert_eq!(
            s.store(SetMode::Set, k.as_bytes(), 0, 0, &v, None, NOW),
            StoreResult::Stored
        );
        assert!(s.memory_used() <= limit, "i={i} used={}", s.memory_used());
    }
    let st = s.stats();
    assert!(st.evictions > 0);
    assert_eq!(st.evicted_unfetched, st.evictions);
    assert!(st.memory_used <= limit as u64);
    assert!(st.curr_items > 500, "{st:?}");
    let recent = (n - 100..n)
        .filter(|i| get(&s, format!("key:{i}").as_bytes(), NOW).is_hit())
        .count();
    assert!(recent >= 90, "only {recent} of the last 100 keys present");
    s.check_consistency().unwrap();
}

#[test]
fn eviction_prefers_unvisited_and_dead() {
    // one shard, so CLOCK order is easy to reason about
    let limit = 64 << 10;
    let s = Store::new(StoreConfig {
        memory_limit: limit,
        item_size_max: 1 << 20,
        no_evict: false,
        shards: 1,
        node_id: 0,
        ..StoreConfig::default()
    });
    let v = vec![b'v'; 1000];
    let mut hot = Vec::new();
    let mut i = 0;
    while s.stats().evictions == 0 {
        let k = format!("k{i}");
        s.store(SetMode::Set, k.as_bytes(), 0, 0, &v, None, NOW);
        if i % 4 == 0 {
            hot.push(k);
        }
        i += 1;
    }
    // keep touching the hot set while writing more
    for j in 0..2000 {
        for k in &hot {
            if let Lookup::Hit(()) = s.get(k.as_bytes(), NOW, None, |_| ()) {}
        }
        s.store(
            SetMode::Set,
            format!("cold{j}").as_bytes(),
            0,
            0,
            &v,
            None,
            NOW,
        );
    }
    let alive = hot
        .iter()
        .filter(|k| get(&s, k.as_bytes(), NOW).is_hit())
        .count();
    assert!(alive * 10 >= hot.len() * 9, "{alive}/{}", hot.len());
    // expired items are reclaimed, not evicted
    let before = s.stats();
    for j in 0..100 {
        s.store(
            SetMode::Set,
            format!("x{j}").as_bytes(),
            0,
            NOW + 1,
            &v,
            None,
            NOW,
        );
    }
    for j in 0..100 {
        s.store(
            SetMode::Set,
            format!("y{j}").as_bytes(),
            0,
            0,
            &v,
            None,
            NOW + 2,
        );
    }
    let after = s.stats();
    assert!(after.reclaimed > before.reclaimed);
    s.check_consistency().unwrap();
}

#[test]
fn no_evict_returns_no_memory() {
    let limit = 256 << 10;
    let s = store_with(limit, true);
    let v = vec![b'v'; 1024];
    let mut stored = 0;
    let mut failed = 0;
    for i in 0..1000 {
        let exp = if i < 50 { NOW + 10 } else { 0 };
        match s.store(
            SetMode::Set,
            format!("k{i}").as_bytes(),
            0,
            exp,
            &v,
            None,
            NOW,
        ) {
            StoreResult::Stored => stored += 1,
            StoreResult::NoMemory => failed += 1,
            r => panic!("{r:?}"),
        }
        assert!(s.memory_used() <= limit);
    }
    assert!(
        stored > 100 && failed > 0,
        "stored={stored} failed={failed}"
    );
    let st = s.stats();
    assert_eq!(st.evictions, 0);
    assert_eq!(st.store_no_memory, failed);
    // all stored live items are still there
    for i in 50..stored {
        assert!(get(&s, format!("k{i}").as_bytes(), NOW).is_hit(), "k{i}");
    }
    // a failing set deletes the old value of its key
    let big = vec![b'b'; 200 << 10];
    assert_eq!(
        s.store(SetMode::Set, b"k60", 0, 0, &big, None, NOW),
        StoreResult::NoMemory
    );
    assert_eq!(get(&s, b"k60", NOW), Lookup::Miss);
    // once the first 50 expire, their memory can be reclaimed
    let mut ok = 0;
    for i in 0..40 {
        if s.store(
            SetMode::Set,
            format!("n{i}").as_bytes(),
            0,
            0,
            &v,
            None,
            NOW + 20,
        ) == StoreResult::Stored
        {
            ok += 1;
        }
    }
    assert!(ok >= 30, "ok={ok}");
    let st = s.stats();
    assert!(st.reclaimed > 0);
    assert_eq!(st.evictions, 0);
    s.check_consistency().unwrap();
}

#[test]
fn flush_now() {
    let s = big();
    let now = wall_secs();
    s.store(SetMode::Set, b"a", 0, 0, b"1", None, now);
    s.store(SetMode::Set, b"b", 0, 0, b"1", None, now);
    s.flush_all(None);
    assert_eq!(get(&s, b"a", now), Lookup::Flushed);
    assert_eq!(get(&s, b"a", now), Lookup::Miss);
    assert_eq!(
        s.store(SetMode::Replace, b"b", 0, 0, b"2", None, now),
        StoreResult::NotStored
    );
    s.store(SetMode::Set, b"c", 0, 0, b"1", None, now);
    assert!(get(&s, b"c", now).is_hit());
    assert_eq!(s.stats().get_flushed, 1);
    // a later delayed flush must not resurrect what the immediate one hid
    s.store(SetMode::Set, b"d", 0, 0, b"1", None, now);
    s.flush_all(None);
    s.flush_all(Some(now + 1000));
    assert_eq!(get(&s, b"d", now), Lookup::Flushed);
    s.check_consistency().unwrap();
}

#[test]
fn flush_delayed() {
    let s = big();
    let now = wall_secs();
    s.store(SetMode::Set, b"a", 0, 0, b"1", None, now);
    // a flush time in the past only hides items stored before it
    s.flush_all(Some(now - 10));
    assert!(get(&s, b"a", now).is_hit());
    s.flush_all(Some(now + 5));
    assert!(get(&s, b"a", now + 4).is_hit());
    s.store(SetMode::Set, b"b", 0, 0, b"1", None, now);
    // a new call replaces the pending one
    s.flush_all(Some(now + 100));
    assert!(get(&s, b"a", now + 5).is_hit());
    assert!(get(&s, b"b", now + 99).is_hit());
    assert_eq!(get(&s, b"a", now + 100), Lookup::Flushed);
    assert_eq!(get(&s, b"b", now + 100), Lookup::Flushed);
    // flushed items are reclaimed by dump / eviction too
    s.store(SetMode::Set, b"c", 0, 0, b"1", None, now);
    let mut n = 0;
    s.dump(0, now + 100, |_, _, _| n += 1);
    assert_eq!(n, 0);
    s.flush_all(Some(0)); // 0 = now
    assert_eq!(get(&s, b"c", now), Lookup::Flushed);
}

#[test]
fn dump_lists_live_items() {
    let s = big();
    for i in 0..5 {
        s.store(
            SetMode::Set,
            format!("k{i}").as_bytes(),
            0,
            NOW + 100,
            b"abc",
            None,
            NOW,
        );
    }
    s.store(SetMode::Set, b"dead", 0, NOW - 1, b"abc", None, NOW);
    let mut seen = Vec::new();
    s.dump(0, NOW, |k, len, exp| seen.push((k.to_vec(), len, exp)));
    seen.sort();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], (b"k0".to_vec(), 3, NOW + 100));
    let mut n = 0;
    s.dump(2, NOW, |_, _, _| n += 1);
    assert_eq!(n, 2);
}

#[test]
fn shrink_memory_limit() {
    let s = big();
    let v = vec![b'v'; 1000];
    for i in 0..2000 {
        s.store(
            SetMode::Set,
            format!("k{i}").as_bytes(),
            0,
            0,
            &v,
            None,
            NOW,
        );
    }
    assert!(s.memory_used() > 1 << 20);
    s.set_memory_limit(1 << 20);
    assert_eq!(s.memory_limit(), 1 << 20);
    assert!(s.memory_used() <= 1 << 20);
    assert_eq!(s.stats().memory_limit, 1 << 20);
    assert!(s.stats().evictions > 0);
    s.check_consistency().unwrap();
}

#[test]
fn single_shard_and_odd_shard_counts() {
    for shards in [0, 1, 3, 100] {
        let s = Store::new(StoreConfig {
            shards,
            ..StoreConfig::default()
        });
        assert!(s.shard_count().is_power_of_two());
        for i in 0..100 {
            s.store(
                SetMode::Set,
                format!("k{i}").as_bytes(),
                0,
                0,
                b"v",
                None,
                NOW,
            );
        }
        assert_eq!(s.check_consistency().unwrap(), 100);
    }
}

#[test]
fn tiny_budget_never_panics() {
    let s = store_with(60, false);
    assert_eq!(
        s.store(SetMode::Set, b"k", 0, 0, b"v", None, NOW),
        StoreResult::NoMemory
    );
    assert_eq!(s.stats().store_no_memory, 1);
    s.check_consistency().unwrap();
}

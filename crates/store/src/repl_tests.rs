//! Tests of the replication rules (last writer wins, tombstones, flush floor,
//! clock observation) and a convergence property test.

use crate::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const NOW: u32 = 1_700_000_000;

fn store_cfg(f: impl FnOnce(&mut StoreConfig)) -> Store {
    let mut c = StoreConfig {
        memory_limit: 1 << 30,
        shards: 16,
        node_id: 7,
        ..StoreConfig::default()
    };
    f(&mut c);
    Store::new(c)
}

fn big() -> Store {
    store_cfg(|_| {})
}

/// A version minted "by node `node`" at the current time plus `step` logical ticks.
fn remote(s: &Store, step: u64, node: u64) -> u64 {
    (s.next_version() & !1023) + (step << 10) + node
}

fn item(s: &Store, k: &[u8], now: u32) -> Option<(Vec<u8>, u32, u32, u64)> {
    s.read_for_replication(k, now)
}

type Snapshot = BTreeMap<Vec<u8>, (Vec<u8>, u32, u32, u64)>;

fn snapshot(s: &Store, now: u32) -> Snapshot {
    let mut m = BTreeMap::new();
    for i in 0..s.shard_count() {
        s.snapshot_shard(i, now, |v| {
            m.insert(
                v.key.to_vec(),
                (v.value.to_vec(), v.flags, v.exptime, v.cas),
            );
        });
    }
    m
}

#[test]
fn higher_version_wins_both_ways() {
    let s = big();
    let (_, local) = s.store_versioned(SetMode::Set, b"k", 1, 0, b"local", None, NOW);
    let local = local.unwrap();
    // A remote write older than the local one loses.
    let older = local - 1024 + 1; // earlier tick, node 1 (node 7 is us)
    assert!(older < local);
    assert_eq!(
        s.apply_set(b"k", b"old", 2, 0, older, NOW),
        ApplyResult::Stale
    );
    assert_eq!(item(&s, b"k", NOW), Some((b"local".to_vec(), 1, 0, local)));
    // A newer one wins and keeps exactly its version.
    let newer = remote(&s, 5, 3);
    assert_eq!(
        s.apply_set(b"k", b"new", 3, NOW + 99, newer, NOW),
        ApplyResult::Applied
    );
    assert_eq!(
        item(&s, b"k", NOW),
        Some((b"new".to_vec(), 3, NOW + 99, newer))
    );
    // The version is the CAS clients see.
    assert_eq!(s.get(b"k", NOW, None, |v| v.cas).hit(), Some(newer));
    // And then a local write beats the remote one again.
    let (_, again) = s.store_versioned(SetMode::Set, b"k", 0, 0, b"mine", None, NOW);
    assert!(again.unwrap() > newer);
    assert_eq!(
        s.apply_set(b"k", b"new", 3, 0, newer, NOW),
        ApplyResult::Stale
    );
    assert_eq!(item(&s, b"k", NOW).unwrap().0, b"mine");
    // Missing key: applied.
    let v = remote(&s, 1, 2);
    assert_eq!(
        s.apply_set(b"fresh", b"x", 0, 0, v, NOW),
        ApplyResult::Applied
    );
    assert_eq!(s.stats().curr_items, 2);
    s.check_consistency().unwrap();
}

#[test]
fn equal_version_is_stale() {
    let s = big();
    let v = remote(&s, 1, 2);
    assert_eq!(s.apply_set(b"k", b"a", 0, 0, v, NOW), ApplyResult::Applied);
    assert_eq!(s.apply_set(b"k", b"b", 0, 0, v, NOW), ApplyResult::Stale);
    assert_eq!(item(&s, b"k", NOW).unwrap().0, b"a");
    assert_eq!(s.apply_delete(b"k", v, NOW), ApplyResult::Stale);
    assert!(item(&s, b"k", NOW).is_some());
    // Equal to a tombstone: stale too.
    let d = remote(&s, 2, 2);
    assert_eq!(s.apply_delete(b"k", d, NOW), ApplyResult::Applied);
    assert_eq!(s.apply_set(b"k", b"c", 0, 0, d, NOW), ApplyResult::Stale);
    assert_eq!(s.apply_delete(b"k", d, NOW), ApplyResult::Stale);
    assert_eq!(item(&s, b"k", NOW), None);
}

#[test]
fn dead_local_items_count_as_absent() {
    let s = big();
    let v_new = remote(&s, 10, 1);
    let v_old = remote(&s, 1, 1);
    // Expired local item with a newer version: the older remote set applies.
    assert_eq!(
        s.apply_set(b"k", b"a", 0, NOW + 5, v_new, NOW),
        ApplyResult::Applied
    );
    assert_eq!(
        s.apply_set(b"k", b"b", 0, 0, v_old, NOW + 5),
        ApplyResult::Applied
    );
    assert_eq!(item(&s, b"k", NOW + 5).unwrap().0, b"b");
    s.check_consistency().unwrap();
}

#[test]
fn delete_tombstone_blocks_older_set_not_newer() {
    let s = big();
    let v1 = remote(&s, 1, 1);
    let v2 = remote(&s, 2, 2);
    let v3 = remote(&s, 3, 3);
    assert_eq!(s.apply_set(b"k", b"a", 0, 0, v1, NOW), ApplyResult::Applied);
    assert_eq!(s.apply_delete(b"k", v2, NOW), ApplyResult::Applied);
    assert_eq!(item(&s, b"k", NOW), None);
    assert_eq!(s.tombstone(b"k", NOW), Some(v2));
    assert_eq!(s.stats().tombstones, 1);
    assert_eq!(s.stats().curr_items, 0);
    // The late, older set cannot resurrect it.
    assert_eq!(
        s.apply_set(b"k", b"late", 0, 0, v1, NOW),
        ApplyResult::Stale
    );
    assert_eq!(item(&s, b"k", NOW), None);
    // A newer one can, and takes the tombstone's place.
    assert_eq!(
        s.apply_set(b"k", b"new", 0, 0, v3, NOW),
        ApplyResult::Applied
    );
    assert_eq!(item(&s, b"k", NOW).unwrap().0, b"new");
    assert_eq!(s.tombstone(b"k", NOW), None);
    assert_eq!(s.stats().tombstones, 0);
    // A delete older than the live item is stale and leaves no tombstone.
    assert_eq!(s.apply_delete(b"k", v2, NOW), ApplyResult::Stale);
    assert!(item(&s, b"k", NOW).is_some());
    assert_eq!(s.stats().tombstones, 0);
    s.check_consistency().unwrap();
}

#[test]
fn delete_of_absent_key_still_records_tombstone() {
    let s = big();
    let v1 = remote(&s, 1, 1);
    let v2 = remote(&s, 2, 2);
    let v3 = remote(&s, 3, 3);
    // The delete arrives before the set it overrides.
    assert_eq!(s.apply_delete(b"k", v2, NOW), ApplyResult::Applied);
    assert_eq!(s.apply_set(b"k", b"a", 0, 0, v1, NOW), ApplyResult::Stale);
    assert_eq!(item(&s, b"k", NOW), None);
    // A newer delete raises the tombstone, an older one does not lower it.
    assert_eq!(s.apply_delete(b"k", v3, NOW), ApplyResult::Applied);
    assert_eq!(s.apply_delete(b"k", v2, NOW), ApplyResult::Stale);
    assert_eq!(s.tombstone(b"k", NOW), Some(v3));
    assert_eq!(s.stats().tombstones, 1);
    s.check_consistency().unwrap();
}

#[test]
fn local_delete_records_tombstone() {
    let s = big();
    let old = remote(&s, 0, 1);
    s.store(SetMode::Set, b"k", 0, 0, b"v", None, NOW);
    let (r, v) = s.delete_versioned(b"k", None, NOW);
    assert_eq!(r, DeleteResult::Deleted);
    assert!(v > old);
    assert_eq!(version_node_id(v), 7);
    assert_eq!(s.tombstone(b"k", NOW), Some(v));
    // An older remote set (written before our delete) cannot resurrect it.
    assert_eq!(
        s.apply_set(b"k", b"late", 0, 0, old, NOW),
        ApplyResult::Stale
    );
    assert_eq!(
        s.delete_versioned(b"k", None, NOW),
        (DeleteResult::NotFound, 0)
    );
    // A local set simply writes and drops the tombstone.
    let (_, nv) = s.store_versioned(SetMode::Set, b"k", 0, 0, b"again", None, NOW);
    assert!(nv.unwrap() > v);
    assert_eq!(s.tombstone(b"k", NOW), None);
    // CAS mismatch: nothing deleted, version 0.
    assert_eq!(
        s.delete_versioned(b"k", Some(1), NOW),
        (DeleteResult::Exists, 0)
    );
    // The classic API still works and records a tombstone too.
    assert_eq!(s.delete(b"k", None, NOW), DeleteResult::Deleted);
    assert!(s.tombstone(b"k", NOW).is_some());
    // md: deletion reports the tombstone's version; invalidation the item's.
    s.store(SetMode::Set, b"m", 0, 0, b"v", None, NOW);
    let (r, v) = s.remove_versioned(b"m", NOW, &RemoveOptions::default());
    assert_eq!(r, RemoveResult::Removed);
    assert_eq!(s.tombstone(b"m", NOW), Some(v));
    s.store(SetMode::Set, b"i", 0, 0, b"v", None, NOW);
    let inv = RemoveOptions {
        invalidate: true,
        ..RemoveOptions::default()
    };
    let (r, v) = s.remove_versioned(b"i", NOW, &inv);
    assert_eq!(r, RemoveResult::Removed);
    assert_eq!(item(&s, b"i", NOW).unwrap().3, v);
    assert_eq!(s.tombstone(b"i", NOW), None);
    assert_eq!(
        s.remove_versioned(b"none", NOW, &RemoveOptions::default()),
        (RemoveResult::NotFound, 0)
    );
    // Vivify / arith create also drop a tombstone.
    s.delete(b"i", None, NOW);
    assert!(s.tombstone(b"i", NOW).is_some());
    let a = ArithOptions {
        incr: true,
        delta: 1,
        vivify: Some((5, 0)),
        ..ArithOptions::default()
    };
    assert_eq!(s.arith_ext(b"i", NOW, &a).status, ArithStatus::Created);
    assert_eq!(s.tombstone(b"i", NOW), None);
    s.check_consistency().unwrap();
}

#[test]
fn tombstone_expires_after_ttl() {
    let s = store_cfg(|c| c.tombstone_ttl = 10);
    let base = s.memory_used();
    let v1 = remote(&s, 1, 1);
    let v2 = remote(&s, 2, 2);
    assert_eq!(s.apply_delete(b"key", v2, NOW), ApplyResult::Applied);
    let with = s.memory_used();
    assert_eq!(with - base, 3 + TOMBSTONE_OVERHEAD);
    s.check_consistency().unwrap();
    // Still there at NOW + 9, gone at NOW + 10.
    assert_eq!(
        s.apply_set(b"key", b"a", 0, 0, v1, NOW + 9),
        ApplyResult::Stale
    );
    assert_eq!(s.tombstone(b"key", NOW + 10), None);
    assert_eq!(
        s.apply_set(b"key", b"a", 0, 0, v1, NOW + 10),
        ApplyResult::Applied
    );
    assert_eq!(s.stats().tombstones, 0);
    s.check_consistency().unwrap();
    // The housekeeping sweep drops expired ones and gives their memory back.
    for i in 0..100u32 {
        let k = format!("gone{i}");
        assert_eq!(
            s.apply_delete(k.as_bytes(), remote(&s, 3, 1), NOW),
            ApplyResult::Applied
        );
    }
    assert_eq!(s.stats().tombstones, 100);
    s.check_consistency().unwrap();
    s.expire_tombstones(NOW + 9);
    assert_eq!(s.stats().tombstones, 100);
    s.expire_tombstones(NOW + 10);
    assert_eq!(s.stats().tombstones, 0);
    s.delete(b"key", None, NOW + 10);
    s.expire_tombstones(NOW + 20);
    assert_eq!(s.stats().curr_items, 0);
    // Only the hash tables' buckets are left.
    assert_eq!(s.memory_used() as u64, s.stats().table_bytes);
    s.check_consistency().unwrap();
}

#[test]
fn tombstone_raised_later_lives_from_its_raise() {
    let s = store_cfg(|c| c.tombstone_ttl = 10);
    assert_eq!(
        s.apply_delete(b"k", remote(&s, 1, 1), NOW),
        ApplyResult::Applied
    );
    let v = remote(&s, 2, 1);
    assert_eq!(s.apply_delete(b"k", v, NOW + 8), ApplyResult::Applied);
    // The first insertion's FIFO entry is due at NOW + 10 but no longer
    // describes the tombstone.
    s.expire_tombstones(NOW + 10);
    assert_eq!(s.tombstone(b"k", NOW + 10), Some(v));
    s.expire_tombstones(NOW + 18);
    assert_eq!(s.tombstone(b"k", NOW + 18), None);
    s.check_consistency().unwrap();
}

#[test]
fn tombstone_count_bound_drops_oldest() {
    let s = store_cfg(|c| {
        c.shards = 1;
        c.max_tombstones = 3;
    });
    let old = remote(&s, 0, 1);
    let mut vs = Vec::new();
    for i in 0..5u8 {
        let v = remote(&s, 1 + i as u64, 2);
        vs.push(v);
        assert_eq!(s.apply_delete(&[b'k', i], v, NOW), ApplyResult::Applied);
        assert!(s.stats().tombstones <= 3);
    }
    assert_eq!(s.stats().tombstones, 3);
    assert_eq!(s.tombstone(b"k\x00", NOW), None);
    assert_eq!(s.tombstone(b"k\x01", NOW), None);
    for i in 2..5u8 {
        assert_eq!(s.tombstone(&[b'k', i], NOW), Some(vs[i as usize]));
    }
    // The dropped ones no longer block an older set, the kept ones do.
    assert_eq!(
        s.apply_set(b"k\x00", b"x", 0, 0, old, NOW),
        ApplyResult::Applied
    );
    assert_eq!(
        s.apply_set(b"k\x04", b"x", 0, 0, old, NOW),
        ApplyResult::Stale
    );
    s.check_consistency().unwrap();
    // Many raises of one key do not let the FIFO grow without bound.
    for i in 0..10_000u64 {
        s.apply_delete(b"hot", remote(&s, 100 + i, 3), NOW);
    }
    assert_eq!(s.stats().tombstones, 3);
    s.check_consistency().unwrap();
}

#[test]
fn no_tombstones_when_disabled() {
    let s = store_cfg(|c| c.max_tombstones = 0);
    let v = remote(&s, 2, 1);
    assert_eq!(s.apply_delete(b"k", v, NOW), ApplyResult::Applied);
    assert_eq!(s.stats().tombstones, 0);
    s.store(SetMode::Set, b"k", 0, 0, b"v", None, NOW);
    let (r, v) = s.delete_versioned(b"k", None, NOW);
    assert_eq!(r, DeleteResult::Deleted);
    assert!(v != 0);
    assert_eq!(s.stats().tombstones, 0);
    s.check_consistency().unwrap();
}

#[test]
fn touch_only_on_matching_version() {
    let s = big();
    let v = remote(&s, 1, 1);
    assert_eq!(s.apply_touch(b"k", NOW + 5, v, NOW), ApplyResult::Stale);
    assert_eq!(
        s.apply_set(b"k", b"a", 0, NOW + 5, v, NOW),
        ApplyResult::Applied
    );
    assert_eq!(
        s.apply_touch(b"k", NOW + 50, v + 1024, NOW),
        ApplyResult::Stale
    );
    assert_eq!(item(&s, b"k", NOW).unwrap().2, NOW + 5);
    assert_eq!(s.apply_touch(b"k", NOW + 50, v, NOW), ApplyResult::Applied);
    assert_eq!(
        item(&s, b"k", NOW).unwrap(),
        (b"a".to_vec(), 0, NOW + 50, v)
    );
    assert!(item(&s, b"k", NOW + 20).is_some());
    // A touch of an older write does nothing to the newer one.
    let (_, nv) = s.store_versioned(SetMode::Set, b"k", 0, NOW + 5, b"b", None, NOW);
    assert_eq!(s.apply_touch(b"k", 0, v, NOW), ApplyResult::Stale);
    assert_eq!(
        item(&s, b"k", NOW).unwrap(),
        (b"b".to_vec(), 0, NOW + 5, nv.unwrap())
    );
}

#[test]
fn flush_floor_raise() {
    let s = big();
    let now = NOW;
    let base = remote(&s, 0, 0);
    let (v1, floor, v3) = (base + 1024 + 1, base + 2 * 1024 + 2, base + 3 * 1024 + 1);
    s.apply_set(b"a", b"1", 0, 0, v1, now);
    s.apply_set(b"c", b"3", 0, 0, v3, now);
    s.apply_flush(floor, 0);
    assert_eq!(item(&s, b"a", now), None);
    assert!(item(&s, b"c", now).is_some());
    // A set the flush covers is stale; a lower floor lowers nothing.
    assert_eq!(s.apply_set(b"a", b"1", 0, 0, v1, now), ApplyResult::Stale);
    s.apply_flush(v1 - 1024, 0);
    assert_eq!(item(&s, b"a", now), None);
    assert!(item(&s, b"c", now).is_some());
    // Local versions after it are above the floor, so local writes survive it.
    s.store(SetMode::Set, b"l", 0, 0, b"x", None, now);
    assert!(item(&s, b"l", now).unwrap().3 > floor);
    // A local flush returns its floor; replaying it on a peer hides the same.
    let peer = big();
    let pv = s.next_version() - 1024 * 100; // written on the peer earlier
    peer.apply_set(b"p", b"x", 0, 0, pv, now);
    let (_, q) = s.store_versioned(SetMode::Set, b"q", 0, 0, b"x", None, now);
    let f = s.flush_all(None);
    assert!(f > q.unwrap());
    peer.apply_flush(f, 0);
    assert_eq!(item(&peer, b"p", now), None);
    assert!(snapshot(&s, now).is_empty());
    peer.check_consistency().unwrap();
}

#[test]
fn delayed_flush_replicates() {
    let a = big();
    let b = big();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let (_, v) = a.store_versioned(SetMode::Set, b"k", 0, 0, b"x", None, now);
    b.apply_set(b"k", b"x", 0, 0, v.unwrap(), now);
    let at = now + 100;
    let floor = a.flush_all(Some(at));
    assert_eq!(floor, version_floor_at_ms(at as u64 * 1000));
    b.apply_flush(floor, at);
    for s in [&a, &b] {
        assert!(item(s, b"k", now + 99).is_some());
        assert_eq!(item(s, b"k", now + 100), None);
    }
}

#[test]
fn observe_keeps_local_versions_above_remote() {
    let s = big();
    assert_eq!(s.node_id(), 7);
    // A peer whose clock runs an hour ahead, with a higher node id.
    let ahead = remote(&s, 0, 1000) + (3_600_000u64 << 22);
    assert_eq!(
        s.apply_set(b"k", b"r", 0, 0, ahead, NOW),
        ApplyResult::Applied
    );
    let (_, v) = s.store_versioned(SetMode::Set, b"k", 0, 0, b"l", None, NOW);
    let v = v.unwrap();
    assert!(v > ahead);
    assert_eq!(version_node_id(v), 7);
    assert_eq!(item(&s, b"k", NOW).unwrap().0, b"l");
    // Also for a delete: the tombstone version is observed.
    let ahead2 = v + (1000u64 << 22) + 1;
    assert_eq!(s.apply_delete(b"x", ahead2, NOW), ApplyResult::Applied);
    assert!(s.next_version() > ahead2);
    // Even a stale remote version is observed.
    let ahead3 = ahead2 + (1000u64 << 22);
    s.apply_set(b"y", b"", 0, 0, ahead3, NOW);
    assert_eq!(
        s.apply_set(b"y", b"", 0, 0, ahead3, NOW),
        ApplyResult::Stale
    );
    assert!(s.next_version() > ahead3);
    // The node id from the config is honoured.
    let other = store_cfg(|c| c.node_id = 1023);
    assert_eq!(other.node_id(), 1023);
    assert_eq!(version_node_id(other.next_version()), 1023);
}

#[test]
fn too_large_and_no_memory_drop_the_older_item() {
    let s = store_cfg(|c| c.item_size_max = 1024);
    let v1 = remote(&s, 1, 1);
    let v2 = remote(&s, 2, 1);
    s.apply_set(b"k", b"small", 0, 0, v1, NOW);
    let huge = vec![b'x'; 2000];
    assert_eq!(
        s.apply_set(b"k", &huge, 0, 0, v2, NOW),
        ApplyResult::TooLarge
    );
    assert_eq!(item(&s, b"k", NOW), None);
    assert_eq!(s.stats().store_too_large, 1);
    // ...but not a newer one.
    let (_, v3) = s.store_versioned(SetMode::Set, b"n", 0, 0, b"s", None, NOW);
    assert_eq!(
        s.apply_set(b"n", &huge, 0, 0, v2, NOW),
        ApplyResult::TooLarge
    );
    assert_eq!(item(&s, b"n", NOW).unwrap().3, v3.unwrap());
    assert_eq!(
        s.apply_set(&[b'k'; 251], b"", 0, 0, v2, NOW),
        ApplyResult::TooLarge
    );

    let tiny = store_cfg(|c| {
        c.memory_limit = 4096;
        c.no_evict = true;
        c.shards = 1;
    });
    let mut n = 0u64;
    let val = vec![b'v'; 500];
    let last = loop {
        n += 1;
        let v = remote(&tiny, n, 1);
        match tiny.apply_set(format!("k{n}").as_bytes(), &val, 0, 0, v, NOW) {
            ApplyResult::Applied => {}
            r => {
                assert_eq!(r, ApplyResult::NoMemory);
                break v;
            }
        }
    };
    // A bigger newer version of an existing key that does not fit either.
    let bigger = vec![b'w'; 3000];
    assert_eq!(
        tiny.apply_set(b"k1", &bigger, 0, 0, last + 1024, NOW),
        ApplyResult::NoMemory
    );
    assert_eq!(item(&tiny, b"k1", NOW), None);
    assert!(tiny.stats().store_no_memory >= 2);
    tiny.check_consistency().unwrap();
}

#[test]
fn snapshot_and_read_for_replication() {
    let s = big();
    for i in 0..200u32 {
        let k = format!("key{i}");
        let exp = if i % 10 == 0 { NOW + 1 } else { 0 };
        s.store(SetMode::Set, k.as_bytes(), i, exp, k.as_bytes(), None, NOW);
    }
    let snap = snapshot(&s, NOW);
    assert_eq!(snap.len(), 200);
    for (k, (v, f, _, cas)) in &snap {
        assert_eq!(k, v);
        assert_eq!(item(&s, k, NOW).unwrap().3, *cas);
        let _ = f;
    }
    // Expired items are skipped (and not removed by the snapshot).
    assert_eq!(snapshot(&s, NOW + 1).len(), 180);
    assert_eq!(s.stats().curr_items, 200);
    assert_eq!(item(&s, b"key0", NOW + 1), None);
    // read_for_replication does not bump: the first real get sees fetched = false.
    s.store(SetMode::Append, b"key5", 0, 0, b"+", None, NOW);
    assert_eq!(item(&s, b"key5", NOW).unwrap().0, b"key5+");
    assert_eq!(s.get(b"key5", NOW, None, |v| v.fetched).hit(), Some(false));
    assert_eq!(s.stats().get_expired, 0);
    // Out-of-range shard: nothing.
    let mut n = 0;
    s.snapshot_shard(s.shard_count(), NOW, |_| n += 1);
    assert_eq!(n, 0);
    // Tombstones are visible for full sync.
    s.delete(b"key7", None, NOW);
    let mut tombs = Vec::new();
    for i in 0..s.shard_count() {
        s.snapshot_tombstones(i, NOW, |k, v| tombs.push((k.to_vec(), v)));
    }
    assert_eq!(
        tombs,
        vec![(b"key7".to_vec(), s.tombstone(b"key7", NOW).unwrap())]
    );
}

#[test]
fn memory_accounting_with_tombstones() {
    let s = store_cfg(|c| c.shards = 4);
    for i in 0..2000u32 {
        let k = format!("k{i}");
        s.store(SetMode::Set, k.as_bytes(), 0, 0, b"value", None, NOW);
    }
    s.check_consistency().unwrap();
    for i in (0..2000u32).step_by(2) {
        s.delete(format!("k{i}").as_bytes(), None, NOW);
    }
    for i in 0..500u32 {
        let k = format!("r{i}");
        s.apply_delete(k.as_bytes(), remote(&s, 1 + i as u64, 1), NOW);
    }
    for i in (0..2000u32).step_by(4) {
        s.store(
            SetMode::Set,
            format!("k{i}").as_bytes(),
            0,
            0,
            b"back",
            None,
            NOW,
        );
    }
    let st = s.stats();
    assert_eq!(st.curr_items, 1500);
    assert_eq!(st.tombstones, 500 + 500);
    assert_eq!(s.check_consistency().unwrap(), 1500);
}

// ---- convergence ----

#[derive(Clone, Debug)]
enum Op {
    Set { key: u8, value: u16, flags: u32 },
    Delete { key: u8 },
}

/// Deterministic shuffle (xorshift) so a failing case is reproducible from its seed.
fn shuffled<T: Clone>(v: &[T], mut seed: u64) -> Vec<T> {
    let mut v = v.to_vec();
    seed |= 1;
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    v
}

fn apply(s: &Store, (op, version): &(Op, u64)) {
    match *op {
        Op::Set { key, value, flags } => {
            let r = s.apply_set(
                &[b'k', key],
                value.to_string().as_bytes(),
                flags,
                0,
                *version,
                NOW,
            );
            assert!(matches!(r, ApplyResult::Applied | ApplyResult::Stale));
        }
        Op::Delete { key } => {
            let r = s.apply_delete(&[b'k', key], *version, NOW);
            assert!(matches!(r, ApplyResult::Applied | ApplyResult::Stale));
        }
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, any::<u16>(), 0u32..3).prop_map(|(key, value, flags)| Op::Set { key, value, flags }),
        1 => (0u8..4).prop_map(|key| Op::Delete { key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_ops_in_any_order_converge(
        ops in prop::collection::vec(op_strategy(), 1..40),
        // Distinct versions: the i-th op gets tick perm[i], from node i % 5.
        seed_versions in any::<u64>(),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
        shards in prop_oneof![Just(1usize), Just(8)],
    ) {
        let base = Store::new(StoreConfig::default()).next_version() & !1023;
        let ticks: Vec<u64> = shuffled(&(1..=ops.len() as u64).collect::<Vec<_>>(), seed_versions);
        let versioned: Vec<(Op, u64)> = ops
            .iter()
            .cloned()
            .zip(ticks.iter().enumerate().map(|(i, t)| base + (t << 10) + (i as u64 % 5)))
            .collect();
        let mk = |node| Store::new(StoreConfig { shards, node_id: node, ..StoreConfig::default() });
        let a = mk(11);
        let b = mk(12);
        for op in shuffled(&versioned, seed_a) {
            apply(&a, &op);
        }
        for op in shuffled(&versioned, seed_b) {
            apply(&b, &op);
        }
        let sa = snapshot(&a, NOW);
        let sb = snapshot(&b, NOW);
        prop_assert_eq!(&sa, &sb);
        // And both equal the model: per key, the op with the highest version.
        // key -> (highest version, Some((value, flags)) for a set / None for a delete)
        type Model = BTreeMap<Vec<u8>, (u64, Option<(Vec<u8>, u32)>)>;
        let mut model = Model::new();
        for (op, v) in &versioned {
            let (key, state) = match *op {
                Op::Set { key, value, flags } => (key, Some((value.to_string().into_bytes(), flags))),
                Op::Delete { key } => (key, None),
            };
            let e = model.entry(vec![b'k', key]).or_insert((0, None));
            if *v > e.0 {
                *e = (*v, state);
            }
        }
        let expect: Snapshot = model
            .into_iter()
            .filter_map(|(k, (v, st))| st.map(|(val, f)| (k, (val, f, 0, v))))
            .collect();
        prop_assert_eq!(&sa, &expect);
        a.check_consistency().unwrap();
        b.check_consistency().unwrap();
    }
}

fn counter_node(node: u16) -> Store {
    store_cfg(|c| {
        c.node_id = node;
        c.track_counters = true;
    })
}

fn incr(s: &Store, k: &[u8], incr: bool, delta: u64) -> CounterOp {
    let a = ArithOptions {
        incr,
        delta,
        ..ArithOptions::default()
    };
    assert_eq!(s.arith_ext(k, NOW, &a).status, ArithStatus::Applied);
    s.counter_op(k, NOW).expect("tracked")
}

fn value(s: &Store, k: &[u8]) -> (Vec<u8>, u64) {
    let (v, _, _, version) = item(s, k, NOW).expect("present");
    (v, version)
}

#[test]
fn concurrent_increments_add_up_in_any_order() {
    let (a, b) = (counter_node(1), counter_node(2));
    // The same base on both (as a replicated set would leave it).
    let base = a
        .store_versioned(SetMode::Set, b"k", 0, 0, b"10", None, NOW)
        .1
        .unwrap();
    assert_eq!(
        b.apply_set(b"k", b"10", 0, 0, base, NOW),
        ApplyResult::Applied
    );
    let mut from_a = Vec::new();
    let mut from_b = Vec::new();
    for _ in 0..5 {
        from_a.push(incr(&a, b"k", true, 1));
        from_b.push(incr(&b, b"k", true, 2));
    }
    from_b.push(incr(&b, b"k", false, 3));
    // Deliver each node's ops to the other, B's in reverse (contributions are states).
    for op in &from_a {
        assert_ne!(b.apply_counter(b"k", op, NOW), ApplyResult::TooLarge);
    }
    for op in from_b.iter().rev() {
        a.apply_counter(b"k", op, NOW);
    }
    let (va, ca) = value(&a, b"k");
    let (vb, cb) = value(&b, b"k");
    assert_eq!(va, b"22", "10 + 5×1 + 5×2 − 3");
    assert_eq!((va, ca), (vb, cb), "same value and CAS on both");
    a.check_consistency().unwrap();
    b.check_consistency().unwrap();
}

#[test]
fn a_set_newer_than_the_base_wins_over_concurrent_increments() {
    let (a, b) = (counter_node(1), counter_node(2));
    let base = a
        .store_versioned(SetMode::Set, b"k", 0, 0, b"0", None, NOW)
        .1
        .unwrap();
    b.apply_set(b"k", b"0", 0, 0, base, NOW);
    // B sets 100 while A increments (A's increment gets the higher version).
    let set_v = b
        .store_versioned(SetMode::Set, b"k", 0, 0, b"100", None, NOW)
        .1
        .unwrap();
    let op = incr(&a, b"k", true, 1);
    assert_ne!(op.version, set_v);
    a.apply_set(b"k", b"100", 0, 0, set_v, NOW);
    b.apply_counter(b"k", &op, NOW);
    assert_eq!(value(&a, b"k"), value(&b, b"k"), "converged");
    assert_eq!(value(&a, b"k").0, b"100");
}

#[test]
fn a_counter_op_rebuilds_a_missing_item_and_respects_tombstones() {
    let (a, b) = (counter_node(1), counter_node(2));
    let base = a
        .store_versioned(SetMode::Set, b"k", 3, 0, b"7", None, NOW)
        .1
        .unwrap();
    let op = incr(&a, b"k", true, 1);
    // B never saw the base (evicted, say): the op carries it.
    assert_eq!(b.apply_counter(b"k", &op, NOW), ApplyResult::Applied);
    assert_eq!(value(&b, b"k"), value(&a, b"k"));
    assert_eq!(item(&b, b"k", NOW).unwrap().1, 3, "flags travel too");
    // A delete after the base wins over increments built on it.
    let c = counter_node(3);
    let del = base + 5;
    c.apply_delete(b"k", del, NOW);
    assert_eq!(c.apply_counter(b"k", &op, NOW), ApplyResult::Stale);
    assert!(item(&c, b"k", NOW).is_none());
    b.check_consistency().unwrap();
}

//! Unit tests of the meta primitives (read / write / remove / arith_ext),
//! following memcached's t/metaget.t scenarios.

use crate::*;

const NOW: u32 = 1_700_000_000;

fn store_with(limit: usize, no_evict: bool) -> Store {
    Store::new(StoreConfig {
        memory_limit: limit,
        item_size_max: 1 << 20,
        no_evict,
        shards: 16,
        node_id: 3,
        ..StoreConfig::default()
    })
}

fn big() -> Store {
    store_with(1 << 30, false)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    value: Vec<u8>,
    flags: u32,
    exptime: u32,
    cas: u64,
    atime: u32,
    fetched: bool,
    rf: ReadFlags,
}

fn mg(s: &Store, k: &[u8], now: u32, o: ReadOptions) -> Lookup<Seen> {
    s.read(k, now, &o, |v, rf| Seen {
        value: v.value.to_vec(),
        flags: v.flags,
        exptime: v.exptime,
        cas: v.cas,
        atime: v.atime,
        fetched: v.fetched,
        rf,
    })
}

fn plain() -> ReadOptions {
    ReadOptions::default()
}

fn vivify(exp: u32) -> ReadOptions {
    ReadOptions {
        vivify: Some(exp),
        ..plain()
    }
}

fn wr(s: &Store, k: &[u8], v: &[u8], f: impl FnOnce(&mut WriteOptions<'_>)) -> WriteResult {
    let mut w = WriteOptions::new(SetMode::Set, v, 0, 0);
    f(&mut w);
    s.write(k, NOW, &w)
}

fn rf(won: bool, stale: bool, lost: bool) -> (bool, bool, bool) {
    (won, stale, lost)
}

fn wsl(x: &Seen) -> (bool, bool, bool) {
    (x.rf.won, x.rf.stale, x.rf.lost)
}

#[test]
fn plain_read_is_get() {
    let s = big();
    assert_eq!(mg(&s, b"k", NOW, plain()), Lookup::Miss);
    let w = wr(&s, b"k", b"val", |w| {
        w.flags = 9;
        w.exptime = NOW + 100
    });
    assert_eq!(w.result, StoreResult::Stored);
    assert_eq!(w.size, 3);
    let x = mg(&s, b"k", NOW + 1, plain()).hit().unwrap();
    assert_eq!(x.value, b"val");
    assert_eq!((x.flags, x.exptime, x.cas), (9, NOW + 100, w.version));
    assert_eq!((x.atime, x.fetched), (NOW, false));
    assert_eq!(x.rf, ReadFlags::default());
    let x = mg(&s, b"k", NOW + 2, plain()).hit().unwrap();
    assert_eq!((x.atime, x.fetched), (NOW + 1, true));
    // expired
    assert_eq!(mg(&s, b"k", NOW + 100, plain()), Lookup::Expired);
    assert_eq!(s.stats().get_expired, 1);
    s.check_consistency().unwrap();
}

#[test]
fn vivify_wins_then_loses() {
    let s = big();
    let before = s.stats();
    let x = mg(&s, b"needwin", NOW, vivify(NOW + 30)).hit().unwrap();
    assert!(x.rf.won && x.rf.vivified && !x.rf.lost && !x.rf.stale);
    assert_eq!(x.value, b"");
    assert_eq!((x.flags, x.exptime), (0, NOW + 30));
    assert!(x.cas > 0);
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.total_items, before.total_items + 1);
    assert_eq!(st.bytes, (HEADER_SIZE + 7) as u64);
    s.check_consistency().unwrap();

    // Second reader: Z, not W, not vivified.
    let y = mg(&s, b"needwin", NOW + 1, vivify(NOW + 31)).hit().unwrap();
    assert_eq!(wsl(&y), rf(false, false, true));
    assert!(!y.rf.vivified);
    assert_eq!(y.cas, x.cas);
    assert_eq!(y.exptime, NOW + 30);

    // Wrong CAS fails, right CAS stores and clears the token.
    let r = wr(&s, b"needwin", b"nu", |w| {
        w.compare_cas = Some(5000);
        w.exptime = NOW + 120
    });
    assert_eq!(r.result, StoreResult::Exists);
    assert_eq!((r.version, r.size), (0, 0));
    let r = wr(&s, b"needwin", b"mu", |w| {
        w.compare_cas = Some(x.cas);
        w.exptime = NOW + 120
    });
    assert_eq!(r.result, StoreResult::Stored);
    let z = mg(&s, b"needwin", NOW + 2, vivify(NOW + 30)).hit().unwrap();
    assert_eq!(wsl(&z), rf(false, false, false));
    assert_eq!((z.value.as_slice(), z.exptime), (&b"mu"[..], NOW + 120));
    s.check_consistency().unwrap();
}

#[test]
fn vivify_replaces_dead_item() {
    let s = big();
    wr(&s, b"k", b"old", |w| w.exptime = NOW + 5);
    let x = mg(&s, b"k", NOW + 5, vivify(NOW + 35)).hit().unwrap();
    assert!(x.rf.vivified && x.rf.won);
    assert_eq!(x.value, b"");
    let st = s.stats();
    assert_eq!(st.get_expired, 1);
    assert_eq!(st.curr_items, 1);
    s.check_consistency().unwrap();
}

#[test]
fn vivify_without_memory_is_a_miss() {
    let s = store_with(4096, true);
    // Fill the budget with never-expiring items (no eviction allowed).
    let v = vec![b'v'; 500];
    let mut i = 0;
    while s.store(
        SetMode::Set,
        format!("f{i}").as_bytes(),
        0,
        0,
        &v,
        None,
        NOW,
    ) == StoreResult::Stored
    {
        i += 1;
    }
    let items = s.stats().curr_items;
    let mut called = false;
    // Keep asking until the stub doesn't fit (a few may squeeze in).
    let mut last = Lookup::Hit(());
    for j in 0..50 {
        last = s.read(
            format!("viv{j}-{}", "x".repeat(200)).as_bytes(),
            NOW,
            &vivify(0),
            |_, _| {
                called = true;
            },
        );
        if !last.is_hit() {
            break;
        }
    }
    assert_eq!(last, Lookup::Miss);
    assert!(s.stats().store_no_memory >= 1);
    assert!(s.stats().curr_items >= items);
    assert!(s.memory_used() <= 4096);
    let _ = called;
    s.check_consistency().unwrap();
}

#[test]
fn vivify_with_version_override() {
    let s = big();
    let o = ReadOptions {
        new_version: Some(9876),
        ..vivify(NOW + 30)
    };
    let x = mg(&s, b"mgetE", NOW, o).hit().unwrap();
    assert_eq!(x.cas, 9876);
    assert!(x.rf.won);
    // E is ignored on a hit.
    let o = ReadOptions {
        new_version: Some(5),
        ..plain()
    };
    let y = mg(&s, b"mgetE", NOW, o).hit().unwrap();
    assert_eq!(y.cas, 9876);
    assert!(y.rf.lost);
}

#[test]
fn recache_on_low_ttl() {
    let s = big();
    wr(&s, b"k", b"mu", |w| w.exptime = NOW + 120);
    let r130 = ReadOptions {
        recache: Some(130),
        ..plain()
    };
    // No R: nothing.
    let x = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&x), rf(false, false, false));
    // R below the remaining TTL: nothing.
    let r60 = ReadOptions {
        recache: Some(60),
        ..plain()
    };
    assert_eq!(
        wsl(&mg(&s, b"k", NOW, r60).hit().unwrap()),
        rf(false, false, false)
    );
    // TTL left 120 < 130: win, then lose.
    let x = mg(&s, b"k", NOW, r130).hit().unwrap();
    assert_eq!(wsl(&x), rf(true, false, false));
    assert_eq!(x.value, b"mu");
    let y = mg(&s, b"k", NOW, r130).hit().unwrap();
    assert_eq!(wsl(&y), rf(false, false, true));
    // A plain read also sees Z.
    assert!(mg(&s, b"k", NOW, plain()).hit().unwrap().rf.lost);
    // CAS-matching set clears it.
    let r = wr(&s, b"k", b"zuuu", |w| {
        w.compare_cas = Some(x.cas);
        w.exptime = NOW + 300
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 4));
    let z = mg(&s, b"k", NOW, r130).hit().unwrap();
    assert_eq!(wsl(&z), rf(false, false, false));
    assert_eq!(z.exptime, NOW + 300);

    // An item without exptime never wins by R.
    wr(&s, b"forever", b"x", |_| {});
    let o = ReadOptions {
        recache: Some(u32::MAX),
        ..plain()
    };
    assert!(!mg(&s, b"forever", NOW, o).hit().unwrap().rf.won);
}

#[test]
fn touch_applies_after_flags() {
    let s = big();
    wr(&s, b"k", b"v", |w| w.exptime = NOW + 10);
    // The recache check uses the TTL before the touch.
    let o = ReadOptions {
        touch: Some(NOW + 300),
        recache: Some(20),
        ..plain()
    };
    let x = mg(&s, b"k", NOW, o).hit().unwrap();
    assert!(x.rf.won);
    assert_eq!(x.exptime, NOW + 300);
    assert!(mg(&s, b"k", NOW + 200, plain()).is_hit());
    // touch to 0 = never expires
    let o = ReadOptions {
        touch: Some(0),
        ..plain()
    };
    assert_eq!(mg(&s, b"k", NOW, o).hit().unwrap().exptime, 0);
    assert!(mg(&s, b"k", NOW + 10_000, plain()).is_hit());
}

#[test]
fn no_bump_leaves_atime_and_fetched() {
    let s = big();
    wr(&s, b"k", b"hit", |w| w.exptime = NOW + 100);
    let u = ReadOptions {
        bump: false,
        ..plain()
    };
    let x = mg(&s, b"k", NOW + 3, u).hit().unwrap();
    assert_eq!((x.atime, x.fetched), (NOW, false));
    let x = mg(&s, b"k", NOW + 4, u).hit().unwrap();
    assert_eq!((x.atime, x.fetched), (NOW, false));
    // A bumping read still sees the old state, then updates it.
    let x = mg(&s, b"k", NOW + 5, plain()).hit().unwrap();
    assert_eq!((x.atime, x.fetched), (NOW, false));
    let x = mg(&s, b"k", NOW + 6, u).hit().unwrap();
    assert_eq!((x.atime, x.fetched), (NOW + 5, true));
    // The item was not marked visited by the u reads: check via get() path.
    let x = mg(&s, b"k", NOW + 7, u).hit().unwrap();
    assert_eq!(x.atime, NOW + 5);
}

#[test]
fn serve_stale_cycle() {
    let s = big();
    let (r, _) = s.store_versioned(SetMode::Set, b"toinv", 0, 0, b"moo", None, NOW);
    assert_eq!(r, StoreResult::Stored);
    let x = mg(&s, b"toinv", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&x), rf(false, false, false));

    // md I T30
    let d = RemoveOptions {
        invalidate: true,
        ttl: Some(NOW + 30),
        ..RemoveOptions::default()
    };
    assert_eq!(s.remove(b"toinv", NOW, &d), RemoveResult::Removed);
    let x = mg(&s, b"toinv", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&x), rf(true, true, false));
    assert_eq!((x.value.as_slice(), x.exptime), (&b"moo"[..], NOW + 30));
    s.check_consistency().unwrap();

    // ms C0 (no I): EX.
    let r = wr(&s, b"toinv", b"f", |w| {
        w.exptime = NOW + 90;
        w.compare_cas = Some(0)
    });
    assert_eq!(r.result, StoreResult::Exists);
    // ms I C1: lower CAS, stored stale; TTL kept, token kept.
    let r = wr(&s, b"toinv", b"f", |w| {
        w.exptime = NOW + 90;
        w.compare_cas = Some(1);
        w.invalidate = true;
        w.flags = 4
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 1));
    let y = mg(&s, b"toinv", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&y), rf(false, true, true));
    assert_eq!(
        (y.value.as_slice(), y.exptime, y.flags),
        (&b"f"[..], NOW + 30, 4)
    );
    assert_eq!(y.cas, r.version);
    assert!(y.cas > x.cas);

    // ms I with a CAS above the item's: EX.
    let r = wr(&s, b"toinv", b"h", |w| {
        w.compare_cas = Some(y.cas + 1);
        w.invalidate = true
    });
    assert_eq!(r.result, StoreResult::Exists);

    // Matching CAS: a normal store, all flags gone.
    let r = wr(&s, b"toinv", b"g", |w| {
        w.exptime = NOW + 90;
        w.compare_cas = Some(y.cas)
    });
    assert_eq!(r.result, StoreResult::Stored);
    let z = mg(&s, b"toinv", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&z), rf(false, false, false));
    assert_eq!((z.value.as_slice(), z.exptime), (&b"g"[..], NOW + 90));
    assert_ne!(z.cas, y.cas);
    s.check_consistency().unwrap();
}

#[test]
fn invalidate_resets_win_token() {
    let s = big();
    mg(&s, b"k", NOW, vivify(NOW + 30)).hit().unwrap();
    assert!(mg(&s, b"k", NOW, plain()).hit().unwrap().rf.lost);
    let d = RemoveOptions {
        invalidate: true,
        ..RemoveOptions::default()
    };
    assert_eq!(s.remove(b"k", NOW, &d), RemoveResult::Removed);
    let x = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&x), rf(true, true, false));
    assert_eq!(x.exptime, NOW + 30); // no ttl given: kept
    let y = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&y), rf(false, true, true));
}

#[test]
fn stale_store_only_for_set_and_replace() {
    let s = big();
    let v = wr(&s, b"k", b"ab", |_| {}).version;
    for mode in [SetMode::Append, SetMode::Prepend] {
        let r = wr(&s, b"k", b"x", |w| {
            w.mode = mode;
            w.compare_cas = Some(1);
            w.invalidate = true
        });
        assert_eq!(r.result, StoreResult::Exists, "{mode:?}");
    }
    let r = wr(&s, b"k", b"x", |w| {
        w.mode = SetMode::Replace;
        w.compare_cas = Some(1);
        w.invalidate = true
    });
    assert_eq!(r.result, StoreResult::Stored);
    assert!(mg(&s, b"k", NOW, plain()).hit().unwrap().rf.stale);
    assert!(r.version > v);
}

#[test]
fn write_modes_and_cas() {
    let s = big();
    // Replace / Set with CAS on a miss: NotFound (memcached upgrades to cas).
    for mode in [SetMode::Set, SetMode::Replace] {
        let r = wr(&s, b"k", b"x", |w| {
            w.mode = mode;
            w.compare_cas = Some(1)
        });
        assert_eq!(r.result, StoreResult::NotFound, "{mode:?}");
    }
    // Classic API keeps NotStored for replace-with-cas on a miss.
    assert_eq!(
        s.store(SetMode::Replace, b"k", 0, 0, b"x", Some(1), NOW),
        StoreResult::NotStored
    );
    for mode in [SetMode::Replace, SetMode::Append, SetMode::Prepend] {
        let r = wr(&s, b"k", b"x", |w| w.mode = mode);
        assert_eq!(r.result, StoreResult::NotStored, "{mode:?}");
    }
    // Add ignores CAS.
    let r = wr(&s, b"k", b"ab", |w| {
        w.mode = SetMode::Add;
        w.compare_cas = Some(77);
        w.flags = 5;
        w.exptime = NOW + 50
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 2));
    let r2 = wr(&s, b"k", b"zz", |w| w.mode = SetMode::Add);
    assert_eq!(r2.result, StoreResult::NotStored);
    // Append/prepend keep flags/exptime and honour CAS.
    let bad = wr(&s, b"k", b"c", |w| {
        w.mode = SetMode::Append;
        w.compare_cas = Some(r.version + 1)
    });
    assert_eq!(bad.result, StoreResult::Exists);
    let a = wr(&s, b"k", b"c", |w| {
        w.mode = SetMode::Append;
        w.compare_cas = Some(r.version);
        w.flags = 1;
        w.exptime = NOW + 999
    });
    assert_eq!((a.result, a.size), (StoreResult::Stored, 3));
    let p = wr(&s, b"k", b"_", |w| w.mode = SetMode::Prepend);
    assert_eq!(p.size, 4);
    let x = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(
        (x.value.as_slice(), x.flags, x.exptime),
        (&b"_abc"[..], 5, NOW + 50)
    );
    assert_eq!(x.cas, p.version);
    s.check_consistency().unwrap();
}

#[test]
fn write_version_override() {
    let s = big();
    let r = wr(&s, b"k", b"ji", |w| w.new_version = Some(973));
    assert_eq!((r.result, r.version), (StoreResult::Stored, 973));
    assert_eq!(mg(&s, b"k", NOW, plain()).hit().unwrap().cas, 973);
    let r = wr(&s, b"k", b"lo", |w| {
        w.compare_cas = Some(973);
        w.new_version = Some(4000)
    });
    assert_eq!((r.result, r.version), (StoreResult::Stored, 4000));
    assert_eq!(mg(&s, b"k", NOW, plain()).hit().unwrap().cas, 4000);
}

#[test]
fn append_vivify() {
    let s = big();
    let r = wr(&s, b"appendviv", b"mo", |w| {
        w.mode = SetMode::Append;
        w.vivify = Some(NOW + 30);
        w.exptime = NOW + 999;
        w.flags = 3
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 2));
    let r = wr(&s, b"appendviv", b"ko", |w| {
        w.mode = SetMode::Append;
        w.vivify = Some(NOW + 30)
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 4));
    let x = mg(&s, b"appendviv", NOW, plain()).hit().unwrap();
    assert_eq!(
        (x.value.as_slice(), x.exptime, x.flags),
        (&b"moko"[..], NOW + 30, 3)
    );
    let r = wr(&s, b"pre", b"ko", |w| {
        w.mode = SetMode::Prepend;
        w.vivify = Some(0)
    });
    assert_eq!((r.result, r.size), (StoreResult::Stored, 2));
    assert_eq!(s.stats().curr_items, 2);
    s.check_consistency().unwrap();
}

#[test]
fn write_too_large_deletes_on_plain_set() {
    let s = Store::new(StoreConfig {
        item_size_max: 1024,
        ..StoreConfig::default()
    });
    wr(&s, b"k", b"small", |_| {});
    let huge = vec![b'x'; 2000];
    let r = wr(&s, b"k", &huge, |w| w.compare_cas = Some(1));
    assert_eq!(r.result, StoreResult::TooLarge);
    assert!(mg(&s, b"k", NOW, plain()).is_hit());
    let r = wr(&s, b"k", &huge, |_| {});
    assert_eq!(r.result, StoreResult::TooLarge);
    assert_eq!(mg(&s, b"k", NOW, plain()), Lookup::Miss);
    // append over the limit
    wr(&s, b"a", &[b'y'; 900], |_| {});
    let r = wr(&s, b"a", &[b'y'; 200], |w| w.mode = SetMode::Append);
    assert_eq!(r.result, StoreResult::TooLarge);
    assert_eq!(s.stats().store_too_large, 3);
    s.check_consistency().unwrap();
}

#[test]
fn remove_variants() {
    let s = big();
    let d = RemoveOptions::default();
    assert_eq!(s.remove(b"k", NOW, &d), RemoveResult::NotFound);
    let v = wr(&s, b"k", b"mx", |w| {
        w.flags = 8;
        w.exptime = NOW + 50
    })
    .version;
    let bad = RemoveOptions {
        compare_cas: Some(v + 1),
        ..d
    };
    assert_eq!(s.remove(b"k", NOW, &bad), RemoveResult::Exists);

    // md x: memcached swaps in an empty item with the request's flags and TTL (none given:
    // 0 and never), keeping the CAS.
    let x = RemoveOptions {
        remove_value: true,
        compare_cas: Some(v),
        ..d
    };
    let items = s.stats().total_items;
    assert_eq!(s.remove(b"k", NOW, &x), RemoveResult::Removed);
    let y = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(
        (y.value.as_slice(), y.flags, y.exptime, y.cas),
        (&b""[..], 0, 0, v)
    );
    assert_eq!(wsl(&y), rf(false, false, false));
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.bytes, (HEADER_SIZE + 1) as u64);
    assert_eq!(st.total_items, items + 1);
    s.check_consistency().unwrap();

    // md x on a stale item with a token clears both.
    assert_eq!(
        s.remove(
            b"k",
            NOW,
            &RemoveOptions {
                invalidate: true,
                ..d
            }
        ),
        RemoveResult::Removed
    );
    assert!(mg(&s, b"k", NOW, plain()).hit().unwrap().rf.won);
    assert_eq!(
        s.remove(b"k", NOW, &x.clone_with_cas(None)),
        RemoveResult::Removed
    );
    assert_eq!(
        wsl(&mg(&s, b"k", NOW, plain()).hit().unwrap()),
        rf(false, false, false)
    );

    // md x I: emptied, stale, W then Z; ttl applied; E honoured.
    wr(&s, b"k", b"mz", |w| {
        w.flags = 2;
        w.exptime = NOW + 50
    });
    let xi = RemoveOptions {
        remove_value: true,
        invalidate: true,
        ttl: Some(NOW + 20),
        new_version: Some(1234),
        flags: 2,
        ..d
    };
    assert_eq!(s.remove(b"k", NOW, &xi), RemoveResult::Removed);
    let y = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(
        (y.value.as_slice(), y.flags, y.exptime, y.cas),
        (&b""[..], 2, NOW + 20, 1234)
    );
    assert_eq!(wsl(&y), rf(true, true, false));
    s.check_consistency().unwrap();

    // x takes the request's TTL for the empty item; plain delete removes.
    let t = RemoveOptions {
        ttl: Some(NOW + 10),
        remove_value: true,
        ..d
    };
    assert_eq!(s.remove(b"k", NOW, &t), RemoveResult::Removed);
    assert_eq!(
        mg(&s, b"k", NOW + 5, plain()).hit().unwrap().exptime,
        NOW + 10
    );
    assert_eq!(s.remove(b"k", NOW, &d), RemoveResult::Removed);
    assert_eq!(mg(&s, b"k", NOW, plain()), Lookup::Miss);
    // expired counts as missing
    wr(&s, b"e", b"1", |w| w.exptime = NOW + 1);
    assert_eq!(s.remove(b"e", NOW + 1, &d), RemoveResult::NotFound);
    let st = s.stats();
    assert_eq!(st.curr_items, 0);
    assert_eq!(st.bytes, 0);
    s.check_consistency().unwrap();
}

trait WithCas {
    fn clone_with_cas(&self, c: Option<u64>) -> Self;
}
impl WithCas for RemoveOptions {
    fn clone_with_cas(&self, c: Option<u64>) -> Self {
        RemoveOptions {
            compare_cas: c,
            ..*self
        }
    }
}

#[test]
fn invalidate_with_version_override() {
    let s = big();
    wr(&s, b"mdelE", b"mE", |w| w.new_version = Some(1234));
    let d = RemoveOptions {
        compare_cas: Some(1234),
        new_version: Some(5678),
        invalidate: true,
        ..RemoveOptions::default()
    };
    assert_eq!(s.remove(b"mdelE", NOW, &d), RemoveResult::Removed);
    let x = mg(&s, b"mdelE", NOW, plain()).hit().unwrap();
    assert_eq!(x.cas, 5678);
    assert!(x.rf.stale && x.rf.won);
}

#[test]
fn arith_vivify_then_apply() {
    let s = big();
    let mut a = ArithOptions {
        incr: true,
        delta: 1,
        ..ArithOptions::default()
    };
    assert_eq!(s.arith_ext(b"n", NOW, &a).status, ArithStatus::NotFound);
    a.vivify = Some((5, NOW + 60));
    a.new_version = Some(7777);
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!(
        r,
        ArithOutcome {
            status: ArithStatus::Created,
            value: 5,
            version: 7777,
            exptime: NOW + 60,
            prev_exptime: 0,
        }
    );
    let x = mg(&s, b"n", NOW, plain()).hit().unwrap();
    assert_eq!((x.value.as_slice(), x.flags, x.cas), (&b"5"[..], 0, 7777));
    s.check_consistency().unwrap();

    // Now it exists: the delta applies, E sets the version.
    a.delta = 10;
    a.new_version = Some(8888);
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!(
        (r.status, r.value, r.version, r.exptime),
        (ArithStatus::Applied, 15, 8888, NOW + 60)
    );
    // Fresh version without E; touch sets exptime.
    a.new_version = None;
    a.touch = Some(NOW + 500);
    a.incr = false;
    a.delta = 100;
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!(
        (r.status, r.value, r.exptime),
        (ArithStatus::Applied, 0, NOW + 500)
    );
    assert!(r.version > 8888);
    let x = mg(&s, b"n", NOW, plain()).hit().unwrap();
    assert_eq!(
        (x.value.as_slice(), x.exptime, x.cas),
        (&b"0"[..], NOW + 500, r.version)
    );
    // Growth path with touch.
    a.incr = true;
    a.delta = u64::MAX;
    a.touch = Some(0);
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!((r.value, r.exptime), (u64::MAX, 0));
    let x = mg(&s, b"n", NOW, plain()).hit().unwrap();
    assert_eq!(x.value, u64::MAX.to_string().as_bytes());
    assert_eq!(x.exptime, 0);
    s.check_consistency().unwrap();
}

#[test]
fn arith_cas_and_nonnumeric() {
    let s = big();
    let v = wr(&s, b"n", b"41", |w| w.flags = 6).version;
    let mut a = ArithOptions {
        incr: true,
        delta: 1,
        compare_cas: Some(v + 1),
        ..ArithOptions::default()
    };
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!(
        r,
        ArithOutcome {
            status: ArithStatus::Exists,
            value: 0,
            version: 0,
            exptime: 0,
            prev_exptime: 0,
        }
    );
    a.compare_cas = Some(v);
    let r = s.arith_ext(b"n", NOW, &a);
    assert_eq!((r.status, r.value), (ArithStatus::Applied, 42));
    // The old CAS no longer matches.
    assert_eq!(s.arith_ext(b"n", NOW, &a).status, ArithStatus::Exists);
    assert_eq!(mg(&s, b"n", NOW, plain()).hit().unwrap().flags, 6);
    wr(&s, b"t", b"abc", |_| {});
    let a = ArithOptions {
        incr: true,
        delta: 1,
        vivify: Some((0, 0)),
        ..ArithOptions::default()
    };
    assert_eq!(s.arith_ext(b"t", NOW, &a).status, ArithStatus::NonNumeric);
    // vivify on an expired item creates it afresh
    wr(&s, b"e", b"9", |w| w.exptime = NOW + 1);
    let r = s.arith_ext(b"e", NOW + 1, &a);
    assert_eq!((r.status, r.value), (ArithStatus::Created, 0));
    s.check_consistency().unwrap();
}

#[test]
fn classic_ops_clear_meta_bits() {
    let s = big();
    wr(&s, b"k", b"v", |_| {});
    let d = RemoveOptions {
        invalidate: true,
        ..RemoveOptions::default()
    };
    s.remove(b"k", NOW, &d);
    // Classic get doesn't take the token.
    assert!(s.get(b"k", NOW, None, |_| ()).is_hit());
    assert!(mg(&s, b"k", NOW, plain()).hit().unwrap().rf.won);
    // A plain set produces a clean item.
    s.store(SetMode::Set, b"k", 0, 0, b"w", None, NOW);
    assert_eq!(
        wsl(&mg(&s, b"k", NOW, plain()).hit().unwrap()),
        rf(false, false, false)
    );
}

#[test]
fn class_of_item_matches_stats() {
    assert_eq!(class_of_item(1, 1), 1);
    assert_eq!(class_of_item(5, 66560), 31);
    let s = big();
    wr(&s, b"key", &[b'x'; 300], |_| {});
    let cs = s.class_stats(NOW);
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].class, class_of_item(3, 300));
}

#[test]
fn vivify_evicts_when_full() {
    let s = store_with(64 << 10, false);
    let v = vec![b'v'; 1000];
    for i in 0..200 {
        s.store(
            SetMode::Set,
            format!("f{i}").as_bytes(),
            0,
            0,
            &v,
            None,
            NOW,
        );
    }
    for i in 0..200 {
        let x = mg(&s, format!("viv{i}").as_bytes(), NOW, vivify(0))
            .hit()
            .unwrap();
        assert!(x.rf.vivified);
        assert!(s.memory_used() <= 64 << 10);
    }
    assert!(s.stats().evictions > 0);
    s.check_consistency().unwrap();
}

#[test]
fn classic_reads_leave_the_recache_token_alone() {
    let s = big();
    wr(&s, b"k", b"v", |_| {});
    let d = RemoveOptions {
        invalidate: true,
        ..RemoveOptions::default()
    };
    assert_eq!(s.remove(b"k", NOW, &d), RemoveResult::Removed);
    let classic = ReadOptions {
        tokens: false,
        ..plain()
    };
    // A classic get sees the value but cannot carry W, so it must not take the token...
    let seen = mg(&s, b"k", NOW, classic).hit().unwrap();
    assert_eq!(wsl(&seen), rf(false, true, false));
    // ...which the next meta read still wins.
    let seen = mg(&s, b"k", NOW, plain()).hit().unwrap();
    assert_eq!(wsl(&seen), rf(true, true, false));
}

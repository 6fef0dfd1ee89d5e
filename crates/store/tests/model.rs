//! Model test: random op sequences against a plain `HashMap` model, with a
//! huge memory limit so nothing is evicted and results must match exactly.

use memha_store::*;
use proptest::prelude::*;
use std::collections::HashMap;

const T0: u32 = 1_700_000_000;

#[derive(Clone, Debug)]
enum Op {
    Store {
        mode: SetMode,
        k: u8,
        v: Vec<u8>,
        flags: u32,
        exp: i8,
    },
    Cas {
        k: u8,
        v: Vec<u8>,
        good: bool,
    },
    Delete {
        k: u8,
        cas: Option<bool>,
    },
    Arith {
        k: u8,
        incr: bool,
        delta: u64,
    },
    Touch {
        k: u8,
        exp: i8,
    },
    Get {
        k: u8,
        touch: Option<i8>,
    },
    Advance(u8),
    // Meta primitives.
    MWrite {
        mode: SetMode,
        k: u8,
        v: Vec<u8>,
        flags: u32,
        exp: i8,
        cas: Option<CasSel>,
        invalidate: bool,
        vivify: Option<i8>,
        nv: Option<u64>,
    },
    MRemove {
        k: u8,
        cas: Option<CasSel>,
        invalidate: bool,
        ttl: Option<i8>,
        remove_value: bool,
        nv: Option<u64>,
    },
    MArith {
        k: u8,
        incr: bool,
        delta: u64,
        cas: Option<CasSel>,
        vivify: Option<(u64, i8)>,
        touch: Option<i8>,
        nv: Option<u64>,
    },
    MRead {
        k: u8,
        touch: Option<i8>,
        bump: bool,
        vivify: Option<i8>,
        recache: Option<u8>,
        nv: Option<u64>,
    },
}

/// Which CAS a meta op compares against.
#[derive(Clone, Copy, Debug)]
enum CasSel {
    /// The item's current version.
    Good,
    /// Above it.
    High,
    /// Below it (1: below every version the model hands out).
    Low,
}

impl CasSel {
    fn pick(self, cur: Option<u64>) -> u64 {
        let cur = cur.unwrap_or(12345);
        match self {
            CasSel::Good => cur,
            CasSel::High => cur + 1,
            CasSel::Low => 1,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    flags: u32,
    exptime: u32,
    cas: u64,
    stale: bool,
    win: bool,
}

impl Entry {
    fn new(value: Vec<u8>, flags: u32, exptime: u32, cas: u64) -> Entry {
        Entry {
            value,
            flags,
            exptime,
            cas,
            stale: false,
            win: false,
        }
    }
}

struct Model {
    map: HashMap<Vec<u8>, Entry>,
    now: u32,
}

enum Found {
    Live,
    Dead,
    Missing,
}

impl Model {
    /// Like the store: a dead entry found by a lookup is removed.
    fn lookup(&mut self, k: &[u8]) -> Found {
        match self.map.get(k) {
            None => Found::Missing,
            Some(e) if e.exptime == 0 || e.exptime > self.now => Found::Live,
            Some(_) => {
                self.map.remove(k);
                Found::Dead
            }
        }
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k}").into_bytes()
}

/// relative exptime -> absolute: 0 = never, negative = already past
fn abs_exp(now: u32, e: i8) -> u32 {
    if e == 0 {
        0
    } else {
        (now as i64 + e as i64) as u32
    }
}

/// memcached's rule: decimal digits, whitespace around them allowed.
fn parse(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u64..200).prop_map(|n| n.to_string().into_bytes()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        Just(b"18446744073709551615".to_vec()),
        prop::collection::vec(prop::sample::select(b"ab1 9\r\n".to_vec()), 0..12),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0u8..6;
    let exp = prop_oneof![3 => Just(0i8), 2 => 1i8..6, 1 => Just(-1i8)];
    let mode = prop::sample::select(vec![
        SetMode::Set,
        SetMode::Add,
        SetMode::Replace,
        SetMode::Append,
        SetMode::Prepend,
    ]);
    prop_oneof![
        4 => (mode, k.clone(), value_strategy(), 0u32..4, exp.clone())
            .prop_map(|(mode, k, v, flags, exp)| Op::Store { mode, k, v, flags, exp }),
        2 => (k.clone(), value_strategy(), any::<bool>()).prop_map(|(k, v, good)| Op::Cas { k, v, good }),
        1 => (k.clone(), prop::option::of(any::<bool>())).prop_map(|(k, cas)| Op::Delete { k, cas }),
        2 => (k.clone(), any::<bool>(), prop_oneof![0u64..10, any::<u64>()])
            .prop_map(|(k, incr, delta)| Op::Arith { k, incr, delta }),
        1 => (k.clone(), exp.clone()).prop_map(|(k, exp)| Op::Touch { k, exp }),
        4 => (k, prop::option::of(exp)).prop_map(|(k, touch)| Op::Get { k, touch }),
        1 => (0u8..4).prop_map(Op::Advance),
        4 => meta_op_strategy(),
    ]
}

fn meta_op_strategy() -> impl Strategy<Value = Op> {
    let k = 0u8..6;
    let exp = prop_oneof![3 => Just(0i8), 2 => 1i8..6, 1 => Just(-1i8)];
    let mode = prop::sample::select(vec![
        SetMode::Set,
        SetMode::Add,
        SetMode::Replace,
        SetMode::Append,
        SetMode::Prepend,
    ]);
    let cas = prop::option::of(prop::sample::select(vec![
        CasSel::Good,
        CasSel::High,
        CasSel::Low,
    ]));
    let nv = prop::option::weighted(0.2, 100u64..200);
    prop_oneof![
        3 => (
            mode,
            k.clone(),
            value_strategy(),
            0u32..4,
            exp.clone(),
            cas.clone(),
            any::<bool>(),
            prop::option::of(exp.clone()),
            nv.clone(),
        )
            .prop_map(|(mode, k, v, flags, exp, cas, invalidate, vivify, nv)| Op::MWrite {
                mode,
                k,
                v,
                flags,
                exp,
                cas,
                invalidate,
                vivify,
                nv,
            }),
        2 => (
            k.clone(),
            cas.clone(),
            any::<bool>(),
            prop::option::of(exp.clone()),
            any::<bool>(),
            nv.clone(),
        )
            .prop_map(|(k, cas, invalidate, ttl, remove_value, nv)| Op::MRemove {
                k,
                cas,
                invalidate,
                ttl,
                remove_value,
                nv,
            }),
        2 => (
            k.clone(),
            any::<bool>(),
            prop_oneof![0u64..10, any::<u64>()],
            cas,
            prop::option::of((0u64..30, exp.clone())),
            prop::option::of(exp.clone()),
            nv.clone(),
        )
            .prop_map(|(k, incr, delta, cas, vivify, touch, nv)| Op::MArith {
                k,
                incr,
                delta,
                cas,
                vivify,
                touch,
                nv,
            }),
        4 => (
            k,
            prop::option::of(exp.clone()),
            any::<bool>(),
            prop::option::of(exp),
            prop::option::of(0u8..8),
            nv,
        )
            .prop_map(|(k, touch, bump, vivify, recache, nv)| Op::MRead {
                k,
                touch,
                bump,
                vivify,
                recache,
                nv,
            }),
    ]
}

/// A generated version must exceed every earlier generated one; an explicit
/// one (meta E) must be used as given.
fn check_version(last: &mut u64, v: u64, explicit: Option<u64>) -> Result<u64, TestCaseError> {
    match explicit {
        Some(e) => prop_assert_eq!(v, e),
        None => {
            prop_assert!(v > *last);
            *last = v;
        }
    }
    Ok(v)
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let s = Store::new(StoreConfig {
        memory_limit: 1 << 30,
        shards: 4,
        ..StoreConfig::default()
    });
    let mut m = Model {
        map: HashMap::new(),
        now: T0,
    };
    let mut last_version = 0u64;

    for op in ops {
        let now = m.now;
        match op {
            Op::Store {
                mode,
                k,
                v,
                flags,
                exp,
            } => {
                let kk = key(k);
                let exptime = abs_exp(now, exp);
                let (r, ver) = s.store_versioned(mode, &kk, flags, exptime, &v, None, now);
                let found = m.lookup(&kk);
                let expect = match (mode, found) {
                    (SetMode::Add, Found::Live) => StoreResult::NotStored,
                    (
                        SetMode::Replace | SetMode::Append | SetMode::Prepend,
                        Found::Dead | Found::Missing,
                    ) => StoreResult::NotStored,
                    _ => StoreResult::Stored,
                };
                prop_assert_eq!(r, expect);
                if r == StoreResult::Stored {
                    let cas =
                        check_version(&mut last_version, ver.expect("version on success"), None)?;
                    let e = match mode {
                        SetMode::Append | SetMode::Prepend => {
                            let old = m.map.get(&kk).unwrap();
                            let value = if mode == SetMode::Append {
                                [old.value.as_slice(), &v].concat()
                            } else {
                                [v.as_slice(), &old.value].concat()
                            };
                            Entry::new(value, old.flags, old.exptime, cas)
                        }
                        _ => Entry::new(v, flags, exptime, cas),
                    };
                    m.map.insert(kk, e);
                }
            }
            Op::Cas { k, v, good } => {
                let kk = key(k);
                let cur = m.map.get(&kk).map(|e| e.cas).unwrap_or(12345);
                let c = if good { cur } else { cur ^ 1 };
                let (r, ver) = s.store_versioned(SetMode::Set, &kk, 1, 0, &v, Some(c), now);
                let expect = match m.lookup(&kk) {
                    Found::Live if m.map[&kk].cas == c => StoreResult::Stored,
                    Found::Live => StoreResult::Exists,
                    _ => StoreResult::NotFound,
                };
                prop_assert_eq!(r, expect);
                if r == StoreResult::Stored {
                    let cas =
                        check_version(&mut last_version, ver.expect("version on success"), None)?;
                    m.map.insert(kk, Entry::new(v, 1, 0, cas));
                }
            }
            Op::Delete { k, cas } => {
                let kk = key(k);
                let cur = m.map.get(&kk).map(|e| e.cas).unwrap_or(999);
                let c = cas.map(|good| if good { cur } else { cur + 1 });
                let r = s.delete(&kk, c, now);
                let expect = match m.lookup(&kk) {
                    Found::Live if c.is_none_or(|c| c == m.map[&kk].cas) => DeleteResult::Deleted,
                    Found::Live => DeleteResult::Exists,
                    _ => DeleteResult::NotFound,
                };
                prop_assert_eq!(r, expect);
                if r == DeleteResult::Deleted {
                    m.map.remove(&kk);
                }
            }
            Op::Arith { k, incr, delta } => {
                let kk = key(k);
                let (r, ver) = s.arith_versioned(&kk, incr, delta, now);
                let expect = match m.lookup(&kk) {
                    Found::Live => match parse(&m.map[&kk].value) {
                        None => ArithResult::NonNumeric,
                        Some(n) => ArithResult::Value(if incr {
                            n.wrapping_add(delta)
                        } else {
                            n.saturating_sub(delta)
                        }),
                    },
                    _ => ArithResult::NotFound,
                };
                prop_assert_eq!(r, expect);
                if let ArithResult::Value(n) = r {
                    let cas =
                        check_version(&mut last_version, ver.expect("version on success"), None)?;
                    let e = m.map.get_mut(&kk).unwrap();
                    e.value = n.to_string().into_bytes();
                    e.cas = cas;
                }
            }
            Op::Touch { k, exp } => {
                let kk = key(k);
                let exptime = abs_exp(now, exp);
                let r = s.touch(&kk, exptime, now);
                let live = matches!(m.lookup(&kk), Found::Live);
                prop_assert_eq!(r, live);
                if live {
                    m.map.get_mut(&kk).unwrap().exptime = exptime;
                }
            }
            Op::Get { k, touch } => {
                let kk = key(k);
                let t = touch.map(|e| abs_exp(now, e));
                let r = s.get(&kk, now, t, |v| {
                    (v.value.to_vec(), v.flags, v.exptime, v.cas)
                });
                match m.lookup(&kk) {
                    Found::Live => {
                        let e = m.map.get_mut(&kk).unwrap();
                        if let Some(t) = t {
                            e.exptime = t;
                        }
                        prop_assert_eq!(
                            r,
                            Lookup::Hit((e.value.clone(), e.flags, e.exptime, e.cas))
                        );
                    }
                    Found::Dead => prop_assert_eq!(r, Lookup::Expired),
                    Found::Missing => prop_assert_eq!(r, Lookup::Miss),
                }
            }
            Op::Advance(d) => m.now += d as u32,
            Op::MWrite {
                mode,
                k,
                v,
                flags,
                exp,
                cas,
                invalidate,
                vivify,
                nv,
            } => {
                let kk = key(k);
                let exptime = abs_exp(now, exp);
                let viv = vivify.map(|e| abs_exp(now, e));
                let c = cas.map(|sel| sel.pick(m.map.get(&kk).map(|e| e.cas)));
                let w = WriteOptions {
                    mode,
                    value: &v,
                    flags,
                    exptime,
                    compare_cas: c,
                    new_version: nv,
                    invalidate,
                    vivify: viv,
                };
                let r = s.write(&kk, now, &w);
                let live = matches!(m.lookup(&kk), Found::Live);
                let c = if mode == SetMode::Add { None } else { c };
                let cas_cmd = c.is_some() && matches!(mode, SetMode::Set | SetMode::Replace);
                let concat = matches!(mode, SetMode::Append | SetMode::Prepend);
                // (expected result, new entry without its version)
                let (expect, entry) = if !live {
                    if cas_cmd {
                        (StoreResult::NotFound, None)
                    } else if matches!(mode, SetMode::Set | SetMode::Add) {
                        (
                            StoreResult::Stored,
                            Some(Entry::new(v.clone(), flags, exptime, 0)),
                        )
                    } else if let (true, Some(ve)) = (concat, viv) {
                        let e = Entry::new(v.clone(), flags, ve, 0);
                        (StoreResult::Stored, Some(e))
                    } else {
                        (StoreResult::NotStored, None)
                    }
                } else {
                    let old = &m.map[&kk];
                    if mode == SetMode::Add {
                        (StoreResult::NotStored, None)
                    } else if c.is_some_and(|c| c != old.cas) {
                        if cas_cmd && invalidate && c.unwrap() < old.cas {
                            let mut e = Entry::new(v.clone(), flags, old.exptime, 0);
                            e.stale = true;
                            e.win = old.win;
                            (StoreResult::Stored, Some(e))
                        } else {
                            (StoreResult::Exists, None)
                        }
                    } else if concat {
                        let value = if mode == SetMode::Append {
                            [old.value.as_slice(), &v].concat()
                        } else {
                            [v.as_slice(), &old.value].concat()
                        };
                        (
                            StoreResult::Stored,
                            Some(Entry::new(value, old.flags, old.exptime, 0)),
                        )
                    } else {
                        (
                            StoreResult::Stored,
                            Some(Entry::new(v.clone(), flags, exptime, 0)),
                        )
                    }
                };
                prop_assert_eq!(r.result, expect);
                match entry {
                    Some(mut e) => {
                        e.cas = check_version(&mut last_version, r.version, nv)?;
                        prop_assert_eq!(r.size, e.value.len());
                        m.map.insert(kk, e);
                    }
                    None => prop_assert_eq!((r.version, r.size), (0, 0)),
                }
            }
            Op::MRemove {
                k,
                cas,
                invalidate,
                ttl,
                remove_value,
                nv,
            } => {
                let kk = key(k);
                let c = cas.map(|sel| sel.pick(m.map.get(&kk).map(|e| e.cas)));
                let d = RemoveOptions {
                    compare_cas: c,
                    new_version: nv,
                    invalidate,
                    ttl: ttl.map(|e| abs_exp(now, e)),
                    remove_value,
                    flags: 0,
                };
                let r = s.remove(&kk, now, &d);
                let expect = match m.lookup(&kk) {
                    Found::Live if c.is_none_or(|c| c == m.map[&kk].cas) => RemoveResult::Removed,
                    Found::Live => RemoveResult::Exists,
                    _ => RemoveResult::NotFound,
                };
                prop_assert_eq!(r, expect);
                if r == RemoveResult::Removed {
                    if !invalidate && !remove_value {
                        m.map.remove(&kk);
                    } else {
                        // The new version is checked by the next read.
                        let e = m.map.get_mut(&kk).unwrap();
                        // x: an empty item with the request's flags and TTL (never without
                        // one) that keeps the old CAS unless E or I give it a new one.
                        let keeps_cas = remove_value && !invalidate && nv.is_none();
                        if remove_value {
                            e.value.clear();
                            e.flags = d.flags;
                            e.exptime = d.ttl.unwrap_or(0);
                        }
                        e.stale = invalidate;
                        e.win = false;
                        if invalidate {
                            if let Some(t) = d.ttl {
                                e.exptime = t;
                            }
                        }
                        let got = s
                            .read(
                                &kk,
                                now,
                                &ReadOptions {
                                    bump: false,
                                    ..ReadOptions::default()
                                },
                                |v, _| v.cas,
                            )
                            .hit();
                        // (That read took the win token of a stale item.)
                        e.win = e.stale;
                        match (got, e.exptime == 0 || e.exptime > now) {
                            (Some(v), true) if keeps_cas => prop_assert_eq!(v, e.cas),
                            (Some(v), true) => {
                                e.cas = check_version(&mut last_version, v, nv)?;
                            }
                            (None, false) => {
                                m.map.remove(&kk);
                            }
                            (got, live) => prop_assert!(false, "{got:?} live={live}"),
                        }
                    }
                }
            }
            Op::MArith {
                k,
                incr,
                delta,
                cas,
                vivify,
                touch,
                nv,
            } => {
                let kk = key(k);
                let c = cas.map(|sel| sel.pick(m.map.get(&kk).map(|e| e.cas)));
                let a = ArithOptions {
                    incr,
                    delta,
                    compare_cas: c,
                    new_version: nv,
                    vivify: vivify.map(|(i, e)| (i, abs_exp(now, e))),
                    touch: touch.map(|e| abs_exp(now, e)),
                };
                let r = s.arith_ext(&kk, now, &a);
                match m.lookup(&kk) {
                    Found::Live => {
                        let e = m.map.get_mut(&kk).unwrap();
                        if c.is_some_and(|c| c != e.cas) {
                            prop_assert_eq!(r.status, ArithStatus::Exists);
                        } else if let Some(n) = parse(&e.value) {
                            let n = if incr {
                                n.wrapping_add(delta)
                            } else {
                                n.saturating_sub(delta)
                            };
                            prop_assert_eq!(r.status, ArithStatus::Applied);
                            prop_assert_eq!(r.value, n);
                            e.value = n.to_string().into_bytes();
                            e.cas = check_version(&mut last_version, r.version, nv)?;
                            if let Some(t) = a.touch {
                                e.exptime = t;
                            }
                            prop_assert_eq!(r.exptime, e.exptime);
                        } else {
                            prop_assert_eq!(r.status, ArithStatus::NonNumeric);
                        }
                    }
                    _ => match a.vivify {
                        Some((init, exptime)) => {
                            // T applies to the created item too (memcached does).
                            let exptime = a.touch.unwrap_or(exptime);
                            prop_assert_eq!(r.status, ArithStatus::Created);
                            prop_assert_eq!((r.value, r.exptime), (init, exptime));
                            let cas = check_version(&mut last_version, r.version, nv)?;
                            let e = Entry::new(init.to_string().into_bytes(), 0, exptime, cas);
                            m.map.insert(kk, e);
                        }
                        None => prop_assert_eq!(r.status, ArithStatus::NotFound),
                    },
                }
            }
            Op::MRead {
                k,
                touch,
                bump,
                vivify,
                recache,
                nv,
            } => {
                let kk = key(k);
                let o = ReadOptions {
                    touch: touch.map(|e| abs_exp(now, e)),
                    bump,
                    vivify: vivify.map(|e| abs_exp(now, e)),
                    recache: recache.map(u32::from),
                    new_version: nv,
                    tokens: true,
                };
                let r = s.read(&kk, now, &o, |v, f| {
                    (v.value.to_vec(), v.flags, v.exptime, v.cas, f)
                });
                match (m.lookup(&kk), o.vivify) {
                    (Found::Live, _) => {
                        let e = m.map.get_mut(&kk).unwrap();
                        let mut f = ReadFlags {
                            stale: e.stale,
                            ..ReadFlags::default()
                        };
                        if e.win {
                            f.lost = true;
                        } else if e.stale
                            || o.recache
                                .is_some_and(|r| e.exptime != 0 && e.exptime - now < r)
                        {
                            f.won = true;
                            e.win = true;
                        }
                        if let Some(t) = o.touch {
                            e.exptime = t;
                        }
                        prop_assert_eq!(
                            r,
                            Lookup::Hit((e.value.clone(), e.flags, e.exptime, e.cas, f))
                        );
                    }
                    (found, Some(exptime)) => {
                        let _ = found;
                        let Lookup::Hit((value, flags, exp, cas, f)) = r else {
                            return Err(TestCaseError::fail(format!("vivify: {r:?}")));
                        };
                        prop_assert_eq!((value.len(), flags, exp), (0, 0, exptime));
                        prop_assert_eq!(
                            f,
                            ReadFlags {
                                won: true,
                                vivified: true,
                                ..ReadFlags::default()
                            }
                        );
                        let cas = check_version(&mut last_version, cas, nv)?;
                        let mut e = Entry::new(vec![], 0, exptime, cas);
                        e.win = true;
                        m.map.insert(kk, e);
                    }
                    (Found::Dead, None) => prop_assert_eq!(r, Lookup::Expired),
                    (Found::Missing, None) => prop_assert_eq!(r, Lookup::Miss),
                }
            }
        }
    }
    // Final sweep: every key agrees, counters are consistent.
    for k in 0..6 {
        let kk = key(k);
        let r = s.get(&kk, m.now, None, |v| v.value.to_vec());
        match m.lookup(&kk) {
            Found::Live => prop_assert_eq!(r, Lookup::Hit(m.map[&kk].value.clone())),
            Found::Dead => prop_assert_eq!(r, Lookup::Expired),
            Found::Missing => prop_assert_eq!(r, Lookup::Miss),
        }
    }
    let items = s.check_consistency().map_err(TestCaseError::fail)?;
    prop_assert_eq!(items as usize, m.map.len());
    let st = s.stats();
    prop_assert_eq!(st.curr_items as usize, m.map.len());
    let bytes: usize = m
        .map
        .iter()
        .map(|(k, e)| HEADER_SIZE + k.len() + e.value.len())
        .sum();
    prop_assert_eq!(st.bytes as usize, bytes);
    prop_assert_eq!(st.evictions, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in prop::collection::vec(op_strategy(), 1..120)) {
        run(ops)?;
    }
}

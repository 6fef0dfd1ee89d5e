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
}

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    flags: u32,
    exptime: u32,
    cas: u64,
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

fn parse(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
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
    ]
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
    let mut fresh = |v: Option<u64>| -> Result<u64, TestCaseError> {
        let v = v.expect("version on success");
        prop_assert!(v > last_version);
        last_version = v;
        Ok(v)
    };
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
                    let cas = fresh(ver)?;
                    let e = match mode {
                        SetMode::Append | SetMode::Prepend => {
                            let old = m.map.get(&kk).unwrap();
                            let value = if mode == SetMode::Append {
                                [old.value.as_slice(), &v].concat()
                            } else {
                                [v.as_slice(), &old.value].concat()
                            };
                            Entry {
                                value,
                                flags: old.flags,
                                exptime: old.exptime,
                                cas,
                            }
                        }
                        _ => Entry {
                            value: v,
                            flags,
                            exptime,
                            cas,
                        },
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
                    let cas = fresh(ver)?;
                    m.map.insert(
                        kk,
                        Entry {
                            value: v,
                            flags: 1,
                            exptime: 0,
                            cas,
                        },
                    );
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
                    let cas = fresh(ver)?;
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

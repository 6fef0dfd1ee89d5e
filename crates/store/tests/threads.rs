//! Multi-thread smoke test: shared keys, a small budget, every op kind.

use memha_store::*;
use std::sync::Arc;

const T0: u32 = 1_700_000_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn four_threads_mixed_ops() {
    let limit = 512 << 10;
    let s = Arc::new(Store::new(StoreConfig {
        memory_limit: limit,
        shards: 16,
        ..StoreConfig::default()
    }));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let buf = vec![b'7'; 4096];
                let mut hits = 0u64;
                for i in 0..100_000u32 {
                    let now = T0 + i / 1000;
                    let r = rng.next();
                    let key = format!("key:{}", (r >> 8) % 3000);
                    let k = key.as_bytes();
                    let len = ((r >> 32) % 3000) as usize;
                    let exp = if r & 0x100 != 0 {
                        now + ((r >> 20) % 10) as u32
                    } else {
                        0
                    };
                    match r % 16 {
                        0..=4 => {
                            s.store(SetMode::Set, k, 0, exp, &buf[..len], None, now);
                        }
                        5 => {
                            s.store(SetMode::Add, k, 0, exp, &buf[..len % 20], None, now);
                        }
                        6 => {
                            s.store(SetMode::Append, k, 0, 0, &buf[..len % 64], None, now);
                        }
                        7 => {
                            s.store(SetMode::Prepend, k, 0, 0, &buf[..len % 64], None, now);
                        }
                        8 => {
                            s.arith(k, r & 0x200 != 0, r >> 40, now);
                        }
                        9 => {
                            s.delete(k, None, now);
                        }
                        10 => {
                            s.touch(k, exp, now);
                        }
                        11 => {
                            if let Lookup::Hit(c) = s.get(k, now, None, |v| v.cas) {
                                s.store(SetMode::Set, k, 1, 0, b"12", Some(c), now);
                            }
                        }
                        12 if i % 20_000 == 0 && t == 0 => {
                            s.flush_all(None);
                        }
                        _ => {
                            if let Lookup::Hit(n) =
                                s.get(k, now, Some(exp).filter(|_| r & 1 == 0), |v| v.value.len())
                            {
                                assert!(n <= 4096 + 64 * 100_000);
                                hits += 1;
                            }
                        }
                    }
                }
                hits
            })
        })
        .collect();
    let hits: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    let st = s.stats();
    let items = s.check_consistency().unwrap();
    eprintln!("hits={hits} {st:?}");
    assert_eq!(st.curr_items, items);
    assert!(st.memory_used > 0);
    // concurrent writers may overshoot by a few items at most
    assert!(st.memory_used <= (limit + 64 * 1024) as u64, "{st:?}");
    assert!(st.evictions > 0, "{st:?}");
    assert!(hits > 0);
    let mut dumped = 0;
    s.dump(0, T0 + 100, |_, _, _| dumped += 1);
    assert!(dumped as u64 <= items);
}

#[test]
fn four_threads_meta_ops() {
    let limit = 256 << 10;
    let s = Arc::new(Store::new(StoreConfig {
        memory_limit: limit,
        shards: 8,
        ..StoreConfig::default()
    }));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x51_7CC1_B727_220A ^ (t + 7));
                let buf = vec![b'3'; 2048];
                let mut wins = 0u64;
                for i in 0..60_000u32 {
                    let now = T0 + i / 1000;
                    let r = rng.next();
                    let key = format!("m:{}", (r >> 8) % 2000);
                    let k = key.as_bytes();
                    let len = ((r >> 32) % 2048) as usize;
                    let exp = if r & 0x100 != 0 {
                        now + ((r >> 20) % 10) as u32
                    } else {
                        0
                    };
                    let cas = (r & 0x400 != 0).then_some(r >> 44);
                    match r % 8 {
                        0 | 1 => {
                            let modes = [
                                SetMode::Set,
                                SetMode::Add,
                                SetMode::Replace,
                                SetMode::Append,
                                SetMode::Prepend,
                            ];
                            let w = WriteOptions {
                                compare_cas: cas,
                                invalidate: r & 0x800 != 0,
                                vivify: (r & 0x1000 != 0).then_some(exp),
                                ..WriteOptions::new(
                                    modes[(r >> 13) as usize % 5],
                                    &buf[..len],
                                    0,
                                    exp,
                                )
                            };
                            s.write(k, now, &w);
                        }
                        2 => {
                            let d = RemoveOptions {
                                compare_cas: cas,
                                invalidate: r & 0x800 != 0,
                                remove_value: r & 0x1000 != 0,
                                flags: 0,
                                ttl: Some(exp),
                                new_version: None,
                            };
                            s.remove(k, now, &d);
                        }
                        3 => {
                            let a = ArithOptions {
                                incr: r & 0x200 != 0,
                                delta: r >> 50,
                                compare_cas: cas,
                                vivify: (r & 0x800 != 0).then_some((r >> 40, exp)),
                                touch: (r & 0x1000 != 0).then_some(exp),
                                new_version: None,
                            };
                            s.arith_ext(k, now, &a);
                        }
                        _ => {
                            let o = ReadOptions {
                                touch: (r & 0x200 != 0).then_some(exp),
                                bump: r & 0x400 != 0,
                                vivify: (r & 0x800 != 0).then_some(exp),
                                recache: (r & 0x1000 != 0).then_some(5),
                                new_version: None,
                                tokens: true,
                            };
                            if let Lookup::Hit(true) = s.read(k, now, &o, |_, f| f.won) {
                                wins += 1;
                            }
                        }
                    }
                }
                wins
            })
        })
        .collect();
    let wins: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    let st = s.stats();
    let items = s.check_consistency().unwrap();
    assert_eq!(st.curr_items, items);
    assert!(st.memory_used <= (limit + 64 * 1024) as u64, "{st:?}");
    assert!(st.evictions > 0, "{st:?}");
    assert!(wins > 0);
}

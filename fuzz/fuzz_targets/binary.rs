//! Binary protocol: frame parsing over any bytes, plus composing replies for what parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memha_protocol::binary::{compose, parse, BinOp, BinParsed};
use memha_protocol::{ItemInfo, Outcome, Status};

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let step = match parse(&data[pos..], 4096) {
            BinParsed::Request { req, consumed } => {
                let key: &[u8] = match &req.op {
                    BinOp::Key(m) => m.key.as_bytes(),
                    _ => b"",
                };
                for status in [Status::Hit, Status::Miss, Status::Stored, Status::NotStored, Status::Exists, Status::NotFound, Status::TooLarge, Status::NonNumeric, Status::NoMemory] {
                    let outcome = Outcome {
                        status,
                        item: Some(ItemInfo { cas: 1, number: 5, size: 2, ..ItemInfo::default() }),
                        won: false,
                        stale: false,
                        lost: false,
                    };
                    out.clear();
                    compose(&mut out, &req, key, &outcome, Some(b"xy"));
                }
                consumed
            }
            BinParsed::TooLarge { consumed, swallow, .. } => consumed + swallow,
            BinParsed::Incomplete { need } => {
                assert!(need > data.len() - pos, "incomplete but {need} bytes are there");
                break;
            }
            BinParsed::Close => break,
        };
        assert!(step > 0, "no progress");
        pos += step;
    }
});

//! Text protocol parser: any bytes, walked the way a connection walks its buffer. Every
//! outcome must consume within bounds and make progress.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memha_protocol::text::{parse, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_value: 4096 };
    let mut pos = 0;
    while pos < data.len() {
        let step = match parse(&data[pos..], &limits) {
            Parsed::Request { consumed, .. } => consumed,
            Parsed::Error { consumed, swallow, .. } => consumed + swallow,
            Parsed::TooLarge { consumed, swallow, .. } => consumed + swallow,
            Parsed::Incomplete { need } => {
                if let Some(n) = need {
                    assert!(n > data.len() - pos, "incomplete but {n} bytes are there");
                }
                break;
            }
            Parsed::Close => break,
        };
        assert!(step > 0, "no progress");
        pos += step;
    }
});

//! Replication frames from a hostile peer: decode must stay in bounds, and whatever decodes
//! must re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memha_repl::{decode, encode, Decoded};

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..]) {
            Decoded::Frame { frame, consumed } => {
                let mut out = Vec::new();
                encode(&frame, &mut out).expect("a decoded frame can be sent");
                assert_eq!(&out[..], &data[pos..pos + consumed], "re-encoding differs");
                pos += consumed;
            }
            Decoded::Incomplete { need } => {
                assert!(need > data.len() - pos);
                break;
            }
            Decoded::Invalid(_) => break,
        }
    }
});

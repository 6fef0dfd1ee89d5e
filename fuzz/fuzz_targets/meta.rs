//! Meta protocol: parse (through the text entry point, which dispatches `m?` lines), then
//! compose a reply for every status so the composer sees whatever the parser accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memha_protocol::meta;
use memha_protocol::text::{parse, Limits, Parsed};
use memha_protocol::{Command, ItemInfo, Outcome, Status};

const STATUSES: [Status; 10] = [
    Status::Hit,
    Status::Miss,
    Status::Stored,
    Status::NotStored,
    Status::Exists,
    Status::NotFound,
    Status::Deleted,
    Status::TooLarge,
    Status::NoMemory,
    Status::NonNumeric,
];

fuzz_target!(|data: &[u8]| {
    // Steer most inputs to the meta commands.
    let mut buf = Vec::with_capacity(data.len() + 3);
    if !data.starts_with(b"m") {
        buf.extend_from_slice(b"mg ");
    }
    buf.extend_from_slice(data);
    let limits = Limits { max_value: 4096 };
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let step = match parse(&buf[pos..], &limits) {
            Parsed::Request { cmd, consumed } => {
                if let Command::Meta(req) = cmd {
                    for (i, status) in STATUSES.into_iter().enumerate() {
                        let outcome = Outcome {
                            status,
                            item: (i % 2 == 0).then(|| ItemInfo {
                                flags: i as u32,
                                cas: 7,
                                ttl: -1,
                                size: 3,
                                number: 42,
                                ..ItemInfo::default()
                            }),
                            won: i % 3 == 0,
                            stale: i % 4 == 0,
                            lost: i % 5 == 0,
                        };
                        out.clear();
                        meta::compose(&mut out, &req, &outcome, Some(b"abc"));
                        assert!(out.ends_with(b"\r\n") || out.is_empty());
                    }
                }
                consumed
            }
            Parsed::Error { consumed, swallow, .. } => consumed + swallow,
            Parsed::TooLarge { consumed, swallow, .. } => consumed + swallow,
            Parsed::Incomplete { .. } | Parsed::Close => break,
        };
        assert!(step > 0, "no progress");
        pos += step;
    }
});

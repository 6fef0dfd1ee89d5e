//! The whole request path without sockets: bytes into a server session backed by a real
//! store (text, meta and binary, chosen by the first byte), fed in arbitrary chunks.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use memha_server::session::{Control, Session};
use memha_server::{Config, Shared};

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let config = Config {
            memory_limit: 4 << 20,
            item_size_max: 64 * 1024,
            ..Config::default()
        };
        Shared::new(config, None)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk.max(1));
    let mut session = Session::new(shared().clone());
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let (consumed, control) = session.process(&buf, &mut out, 1_800_000_000);
            assert!(consumed <= buf.len());
            buf.drain(..consumed);
            out.clear();
            match control {
                Control::NeedInput => break,
                Control::Yield => continue,
                Control::Close => return,
            }
        }
    }
});

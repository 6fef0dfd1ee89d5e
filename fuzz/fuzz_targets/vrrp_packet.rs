//! VRRP packets from the network (raw IPv4 with its header, as the raw socket delivers them):
//! decoding must never panic, whatever the checks it is asked to make; whatever decodes must
//! re-encode.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use memha_vrrp::packet::{decode_ipv4, Auth, RxCheck, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else { return };
    let check = RxCheck {
        version: if selector & 1 == 0 { Version::V2 } else { Version::V3 },
        vrid: 51,
        auth: if selector & 2 == 0 { Auth::None } else { Auth::password(b"memcache") },
        adver_int: if selector & 1 == 0 { 1 } else { 100 },
        vips: (selector & 4 != 0).then(|| vec![IpAddr::V4(Ipv4Addr::new(192, 168, 68, 46))]),
    };
    if let Ok((meta, advert)) = decode_ipv4(packet, &check) {
        let _ = advert.encode(meta.src, meta.dst);
    }
});

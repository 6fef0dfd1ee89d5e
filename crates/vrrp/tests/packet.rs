//! Wire-format tests: exact bytes (checked against captures of keepalived 2.2.7 and against
//! checksums computed independently), one test per drop reason, and a no-panic sweep over
//! truncated and corrupted packets.

use std::net::{IpAddr, Ipv4Addr};

use memha_vrrp::packet::{
    decode_ipv4, garp_frame, ipv4_header, virtual_mac, virtual_mac_v6, Advert, Auth, DropReason,
    EncodeError, RxCheck, RxMeta, Version, MCAST_ADDR_V4, MCAST_ADDR_V6,
};
use memha_vrrp::DropCounters;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const GROUP: IpAddr = IpAddr::V4(MCAST_ADDR_V4);

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn v2_advert(vip: IpAddr) -> Advert {
    Advert {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        adver_int: 1,
        auth: Auth::password(b"memcached"), // cut to "memcache", as keepalived does
        addrs: vec![vip],
    }
}

fn v2_check(vip: IpAddr) -> RxCheck {
    RxCheck {
        version: Version::V2,
        vrid: 51,
        auth: Auth::password(b"memcache"),
        adver_int: 1,
        vips: Some(vec![vip]),
    }
}

fn v3_advert(vip: IpAddr, int_cs: u16) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority: 100,
        adver_int: int_cs,
        auth: Auth::None,
        addrs: vec![vip],
    }
}

fn v3_check(vip: IpAddr) -> RxCheck {
    RxCheck {
        version: Version::V3,
        vrid: 51,
        auth: Auth::None,
        adver_int: 10,
        vips: Some(vec![vip]),
    }
}

fn meta(src: IpAddr, dst: IpAddr) -> RxMeta {
    RxMeta { src, dst, ttl: 255 }
}

// ===== exact bytes =====

#[test]
fn v2_pass_advert_for_the_seed_vip() {
    // VRID 51, priority 100, 1 address, auth type 1, 1 s, checksum 0xd061 (computed
    // independently with a separate RFC 1071 implementation), 192.168.68.46, "memcache".
    let vip = v4(192, 168, 68, 46);
    let bytes = v2_advert(vip).encode(v4(192, 168, 68, 11), GROUP).unwrap();
    assert_eq!(
        bytes,
        hex("21 33 64 01 01 01 d0 61  c0 a8 44 2e  6d 65 6d 63 61 63 68 65")
    );
    let m = meta(v4(192, 168, 68, 11), GROUP);
    assert_eq!(
        Advert::decode(&bytes, &m, &v2_check(vip)).unwrap(),
        v2_advert(vip)
    );
}

#[test]
fn v2_advert_matches_a_keepalived_capture_byte_for_byte() {
    // The IPv4 packet of a keepalived 2.2.7 advert captured in the lab (VIP 10.99.0.46 from
    // 10.99.0.11, IP id 1): header checksum 0xd024, VRRP checksum 0xcaa7.
    let captured = hex("45 c0 00 28 00 01 00 00 ff 70 d0 24 0a 63 00 0b e0 00 00 12
         21 33 64 01 01 01 ca a7 0a 63 00 2e 6d 65 6d 63 61 63 68 65");
    let vip = v4(10, 99, 0, 46);
    let vrrp = v2_advert(vip).encode(v4(10, 99, 0, 11), GROUP).unwrap();
    let mut packet =
        ipv4_header(Ipv4Addr::new(10, 99, 0, 11), MCAST_ADDR_V4, 1, vrrp.len()).to_vec();
    packet.extend_from_slice(&vrrp);
    assert_eq!(packet, captured);

    let (m, advert) = decode_ipv4(&captured, &v2_check(vip)).unwrap();
    assert_eq!(m, meta(v4(10, 99, 0, 11), GROUP));
    assert_eq!(advert, v2_advert(vip));
    assert_eq!(advert.interval_cs(), 100);
}

#[test]
fn v3_advert_matches_a_keepalived_capture() {
    // keepalived with vrrp_version 3, advert_int 0.1: checksum 0x7533 with the IPv4
    // pseudo-header (src 10.99.0.11, dst 224.0.0.18).
    let vip = v4(10, 99, 0, 46);
    let bytes = v3_advert(vip, 10).encode(v4(10, 99, 0, 11), GROUP).unwrap();
    assert_eq!(bytes, hex("31 33 64 01 00 0a 75 33 0a 63 00 2e"));
    let m = meta(v4(10, 99, 0, 11), GROUP);
    let a = Advert::decode(&bytes, &m, &v3_check(vip)).unwrap();
    assert_eq!(a, v3_advert(vip, 10));
    assert_eq!(a.interval_cs(), 10);
    // Without the right pseudo-header (another destination) it does not verify.
    let unicast = meta(v4(10, 99, 0, 11), v4(10, 99, 0, 12));
    assert_eq!(
        Advert::decode(&bytes, &unicast, &v3_check(vip)),
        Err(DropReason::Checksum)
    );
}

#[test]
fn v3_seed_vip_and_ipv6() {
    let vip = v4(192, 168, 68, 46);
    let bytes = v3_advert(vip, 100)
        .encode(v4(192, 168, 68, 11), GROUP)
        .unwrap();
    assert_eq!(bytes, hex("31 33 64 01 00 64 80 4d c0 a8 44 2e"));

    // IPv6: 40-byte pseudo-header (src fe80::1, dst ff02::12); checksum computed
    // independently.
    let vip6: IpAddr = "2001:db8::46".parse().unwrap();
    let src6: IpAddr = "fe80::1".parse().unwrap();
    let dst6 = IpAddr::V6(MCAST_ADDR_V6);
    let bytes = v3_advert(vip6, 100).encode(src6, dst6).unwrap();
    assert_eq!(
        bytes,
        hex("31 33 64 01 00 64 3e 49 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 46")
    );
    let mut check = v3_check(vip6);
    check.adver_int = 100;
    let a = Advert::decode(&bytes, &meta(src6, dst6), &check).unwrap();
    assert_eq!(a.addrs, vec![vip6]);
}

#[test]
fn ipv4_options_and_trailing_padding_are_handled() {
    let vip = v4(10, 99, 0, 46);
    let vrrp = v2_advert(vip).encode(v4(10, 99, 0, 11), GROUP).unwrap();
    // IHL 6 (one 4-byte option: NOPs), then 6 bytes of Ethernet padding after the packet.
    let mut h = ipv4_header(
        Ipv4Addr::new(10, 99, 0, 11),
        MCAST_ADDR_V4,
        7,
        vrrp.len() + 4,
    )
    .to_vec();
    h[0] = 0x46;
    h.extend_from_slice(&[1, 1, 1, 1]);
    h.extend_from_slice(&vrrp);
    h.extend_from_slice(&[0; 6]);
    let (_, a) = decode_ipv4(&h, &v2_check(vip)).unwrap();
    assert_eq!(a, v2_advert(vip));
    // Padding directly after a bare VRRP message is ignored too.
    let mut padded = vrrp.clone();
    padded.extend_from_slice(&[0xee; 5]);
    let m = meta(v4(10, 99, 0, 11), GROUP);
    assert_eq!(
        Advert::decode(&padded, &m, &v2_check(vip)).unwrap(),
        v2_advert(vip)
    );
}

#[test]
fn several_addresses_and_no_auth() {
    let addrs = vec![v4(10, 0, 0, 1), v4(10, 0, 0, 2), v4(10, 0, 0, 3)];
    let a = Advert {
        version: Version::V2,
        vrid: 7,
        priority: 255,
        adver_int: 3,
        auth: Auth::None,
        addrs: addrs.clone(),
    };
    let bytes = a.encode(v4(10, 0, 0, 9), GROUP).unwrap();
    assert_eq!(bytes.len(), 8 + 12 + 8);
    assert_eq!(&bytes[..6], &[0x21, 7, 255, 3, 0, 3]);
    assert_eq!(&bytes[20..], &[0; 8]);
    let check = RxCheck {
        version: Version::V2,
        vrid: 7,
        auth: Auth::None,
        adver_int: 3,
        vips: Some(vec![addrs[2], addrs[0], addrs[1]]), // order does not matter
    };
    assert_eq!(
        Advert::decode(&bytes, &meta(v4(10, 0, 0, 9), GROUP), &check).unwrap(),
        a
    );
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let src = v4(10, 0, 0, 1);
    let mut a = v2_advert(v4(10, 0, 0, 46));
    a.addrs.clear();
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::AddressCount));
    a.addrs = vec![v4(10, 0, 0, 46); 256];
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::AddressCount));
    a.addrs = vec!["2001:db8::1".parse().unwrap()];
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::AddressFamily));
    a.addrs = vec![v4(10, 0, 0, 46)];
    a.adver_int = 0;
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::Interval));
    a.adver_int = 256;
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::Interval));
    a.adver_int = 1;
    a.vrid = 0;
    assert_eq!(a.encode(src, GROUP), Err(EncodeError::Vrid));
    let mut b = v3_advert(v4(10, 0, 0, 46), 4096);
    assert_eq!(b.encode(src, GROUP), Err(EncodeError::Interval));
    b.adver_int = 4095;
    b.auth = Auth::password(b"x");
    assert_eq!(b.encode(src, GROUP), Err(EncodeError::Auth));
    b.auth = Auth::None;
    assert!(b.encode(src, GROUP).is_ok());
    // Appending: nothing is written on error.
    let mut out = vec![9];
    assert!(a.encode_into(src, GROUP, &mut out).is_err());
    assert_eq!(out, vec![9]);
}

// ===== drop reasons =====

/// Re-computes the v2 checksum after a field was changed on purpose.
fn fix_v2_checksum(b: &mut [u8]) {
    b[6] = 0;
    b[7] = 0;
    let c = memha_vrrp::checksum::checksum(b);
    b[6..8].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn every_drop_reason() {
    let vip = v4(192, 168, 68, 46);
    let src = v4(192, 168, 68, 11);
    let good = v2_advert(vip).encode(src, GROUP).unwrap();
    let check = v2_check(vip);
    let m = meta(src, GROUP);
    let mut seen = DropCounters::default();
    let mut expect = |reason: DropReason, result: Result<Advert, DropReason>| {
        assert_eq!(result, Err(reason), "{reason}");
        seen.record(reason);
    };

    expect(DropReason::TooShort, Advert::decode(&good[..7], &m, &check));

    let mut bad = good.clone();
    bad[0] = 0x31; // v3 header at a v2 router
    fix_v2_checksum(&mut bad);
    expect(DropReason::Version, Advert::decode(&bad, &m, &check));
    // A v2 router also drops v2 over IPv6.
    let m6 = meta("fe80::1".parse().unwrap(), IpAddr::V6(MCAST_ADDR_V6));
    expect(DropReason::Version, Advert::decode(&good, &m6, &check));

    let mut bad = good.clone();
    bad[0] = 0x22;
    fix_v2_checksum(&mut bad);
    expect(DropReason::Type, Advert::decode(&bad, &m, &check));

    let mut bad = good.clone();
    bad[3] = 0;
    fix_v2_checksum(&mut bad);
    expect(DropReason::NoAddresses, Advert::decode(&bad, &m, &check));

    let mut bad = good.clone();
    bad[3] = 2; // claims 2 addresses, carries 1
    expect(DropReason::Length, Advert::decode(&bad, &m, &check));
    expect(
        DropReason::Length,
        Advert::decode(&good[..good.len() - 1], &m, &check),
    );

    let mut bad = good.clone();
    bad[19] ^= 1;
    expect(DropReason::Checksum, Advert::decode(&bad, &m, &check));

    let mut ttl = m;
    ttl.ttl = 254;
    expect(DropReason::Ttl, Advert::decode(&good, &ttl, &check));

    let mut other = check.clone();
    other.vrid = 52;
    expect(DropReason::Vrid, Advert::decode(&good, &m, &other));

    let mut other = check.clone();
    other.auth = Auth::None;
    expect(DropReason::AuthType, Advert::decode(&good, &m, &other));
    let mut bad = good.clone();
    bad[4] = 2; // AH
    fix_v2_checksum(&mut bad);
    expect(DropReason::AuthType, Advert::decode(&bad, &m, &check));

    let mut other = check.clone();
    other.auth = Auth::password(b"memcachX");
    expect(DropReason::AuthPassword, Advert::decode(&good, &m, &other));

    let mut other = check.clone();
    other.adver_int = 2; // keepalived: "advertisement interval mismatch"
    expect(DropReason::Interval, Advert::decode(&good, &m, &other));
    let v3bytes = hex("31 33 64 01 00 00 00 00 0a 63 00 2e");
    let mut v3bytes = v3bytes;
    let v3m = meta(v4(10, 99, 0, 11), GROUP);
    // v3 interval 0: fill in a valid checksum first.
    let mut ph = vec![10, 99, 0, 11, 224, 0, 0, 18, 0, 112, 0, 12];
    ph.extend_from_slice(&v3bytes);
    let c = memha_vrrp::checksum::checksum(&ph);
    v3bytes[6..8].copy_from_slice(&c.to_be_bytes());
    expect(
        DropReason::Interval,
        Advert::decode(&v3bytes, &v3m, &v3_check(v4(10, 99, 0, 46))),
    );

    let mut other = check.clone();
    other.vips = Some(vec![v4(192, 168, 68, 47)]);
    expect(DropReason::AddressList, Advert::decode(&good, &m, &other));
    // ... unless the sender is the address owner.
    let mut owner = v2_advert(vip);
    owner.priority = 255;
    let owner_bytes = owner.encode(src, GROUP).unwrap();
    assert!(Advert::decode(&owner_bytes, &m, &other).is_ok());

    // IP-level reasons.
    let mut packet = ipv4_header(
        Ipv4Addr::new(192, 168, 68, 11),
        MCAST_ADDR_V4,
        1,
        good.len(),
    )
    .to_vec();
    packet.extend_from_slice(&good);
    assert!(decode_ipv4(&packet, &check).is_ok());
    let mut bad = packet.clone();
    bad[9] = 17;
    seen.record(DropReason::NotVrrp);
    assert_eq!(decode_ipv4(&bad, &check).unwrap_err(), DropReason::NotVrrp);
    let mut bad = packet.clone();
    bad[3] += 1; // total length beyond the buffer
    seen.record(DropReason::IpHeader);
    assert_eq!(decode_ipv4(&bad, &check).unwrap_err(), DropReason::IpHeader);
    let mut bad = packet.clone();
    bad[0] = 0x44; // IHL 4
    assert_eq!(decode_ipv4(&bad, &check).unwrap_err(), DropReason::IpHeader);
    let mut bad = packet.clone();
    bad[8] = 64; // routed
    assert_eq!(decode_ipv4(&bad, &check).unwrap_err(), DropReason::Ttl);

    // Every reason was exercised; labels are unique.
    for (reason, n) in seen.iter() {
        assert!(n > 0, "no test for {reason}");
    }
    let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), DropReason::ALL.len());
    assert_eq!(seen.total(), seen.iter().map(|(_, n)| n).sum::<u64>());
}

// ===== GARP =====

#[test]
fn garp_frames() {
    let mac = [0x02, 0x00, 0x0a, 0x63, 0x00, 0x0b];
    let f = garp_frame(mac, Ipv4Addr::new(10, 99, 0, 46));
    assert_eq!(
        f.to_vec(),
        hex("ff ff ff ff ff ff  02 00 0a 63 00 0b  08 06
             00 01 08 00 06 04 00 01  02 00 0a 63 00 0b  0a 63 00 2e
             ff ff ff ff ff ff  0a 63 00 2e")
    );
    assert_eq!(virtual_mac(51), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
    assert_eq!(virtual_mac_v6(51), [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33]);
    let f = garp_frame(virtual_mac(51), Ipv4Addr::new(192, 168, 68, 46));
    assert_eq!(&f[6..12], &virtual_mac(51));
    assert_eq!(&f[22..28], &virtual_mac(51));
    assert_eq!(&f[28..32], &[192, 168, 68, 46]);
}

// ===== robustness =====

/// A small deterministic PRNG (xorshift64*), so the sweep needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn no_panic_on_truncated_or_corrupted_packets() {
    let vip4 = v4(10, 99, 0, 46);
    let src4 = v4(10, 99, 0, 11);
    let vip6: IpAddr = "2001:db8::46".parse().unwrap();
    let src6: IpAddr = "fe80::1".parse().unwrap();
    let dst6 = IpAddr::V6(MCAST_ADDR_V6);
    let mut v3_6 = v3_check(vip6);
    v3_6.adver_int = 100;
    let mut multi = v2_advert(vip4);
    multi.addrs = (1..=20).map(|i| v4(10, 0, 0, i)).collect();
    let cases: Vec<(Vec<u8>, RxMeta, Vec<RxCheck>)> = vec![
        (
            v2_advert(vip4).encode(src4, GROUP).unwrap(),
            meta(src4, GROUP),
            vec![v2_check(vip4), v3_check(vip4)],
        ),
        (
            multi.encode(src4, GROUP).unwrap(),
            meta(src4, GROUP),
            vec![v2_check(vip4)],
        ),
        (
            v3_advert(vip4, 10).encode(src4, GROUP).unwrap(),
            meta(src4, GROUP),
            vec![v3_check(vip4), v2_check(vip4)],
        ),
        (
            v3_advert(vip6, 100).encode(src6, dst6).unwrap(),
            meta(src6, dst6),
            vec![v3_6.clone(), v2_check(vip4)],
        ),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0u64;
    for (good, m, checks) in &cases {
        // Mixed-family metadata must not panic either.
        let odd = RxMeta {
            src: m.src,
            dst: if m.src.is_ipv4() { dst6 } else { GROUP },
            ttl: 255,
        };
        let mut ip =
            ipv4_header(Ipv4Addr::new(10, 99, 0, 11), MCAST_ADDR_V4, 1, good.len()).to_vec();
        ip.extend_from_slice(good);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for len in 0..=good.len() {
            inputs.push(good[..len].to_vec());
        }
        for len in 0..=ip.len() {
            inputs.push(ip[..len].to_vec());
        }
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff, 0x0f, 0xf0] {
                let mut b = good.clone();
                b[i] ^= mask;
                inputs.push(b);
            }
        }
        for i in 0..ip.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = ip.clone();
                b[i] ^= mask;
                inputs.push(b);
            }
        }
        for _ in 0..5000 {
            let src = if rng.next() & 1 == 0 { good } else { &ip };
            let mut b = src.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            let cut = (rng.next() as usize) % (b.len() + 8);
            if cut < b.len() {
                b.truncate(cut);
            } else {
                b.extend((0..cut - b.len()).map(|_| rng.next() as u8));
            }
            inputs.push(b);
        }
        for b in &inputs {
            for check in checks {
                for mm in [m, &odd] {
                    if Advert::decode(b, mm, check).is_ok() {
                        decoded += 1;
                    }
                }
                let _ = decode_ipv4(b, check);
            }
        }
    }
    assert!(decoded > 0);
}

#[test]
fn decoded_adverts_reencode_to_the_same_bytes() {
    // Every value of every header byte, with the checksum made valid again: whatever
    // decodes re-encodes to the same bytes (the v3 reserved nibble is not kept).
    let vip = v4(10, 99, 0, 46);
    let src = v4(10, 99, 0, 11);
    let good = v3_advert(vip, 10).encode(src, GROUP).unwrap();
    let mut check = v3_check(vip);
    check.vips = None;
    let pseudo = [10, 99, 0, 11, 224, 0, 0, 18, 0, 112, 0, 12];
    let (mut ok, mut dropped) = (0, 0);
    for i in (0..good.len()).filter(|i| !(6..8).contains(i)) {
        for v in 0..=255u8 {
            let mut b = good.clone();
            b[i] = v;
            b[6] = 0;
            b[7] = 0;
            let mut whole = pseudo.to_vec();
            whole.extend_from_slice(&b);
            let c = memha_vrrp::checksum::checksum(&whole);
            b[6..8].copy_from_slice(&c.to_be_bytes());
            match Advert::decode(&b, &meta(src, GROUP), &check) {
                Ok(a) => {
                    let again = a.encode(src, GROUP).unwrap();
                    if b[4] & 0xf0 == 0 {
                        assert_eq!(again, b, "byte {i} = {v:#x}");
                    } else {
                        assert_eq!(&again[8..], &b[8..]);
                        assert_eq!(again[4], b[4] & 0x0f);
                    }
                    ok += 1;
                }
                Err(_) => dropped += 1,
            }
        }
    }
    // priority (256) + addresses (4 * 256) + interval bytes (most values) decode.
    assert!(ok > 1500, "{ok} decoded, {dropped} dropped");
    assert!(dropped > 0);
}

//! Root-only tests of the kernel-facing parts (netlink, raw VRRP socket, gratuitous ARP)
//! against real interfaces: each test builds its own pair of network namespaces joined by
//! a veth pair, so it touches nothing on the host and runs beside the others.
//!
//! Without root or without `ip` (iproute2) each test prints `skipped: <reason>` and
//! returns; with them, a failure to build the namespaces is a test failure.
//!
//! Code runs "inside" a namespace on a thread that first joins it with `setns` (which
//! changes only that thread). Sockets keep the namespace they were created in, so they are
//! opened there and then used from the test's own thread.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use memha_failover::netlink::{Link, LinkEvents, Netlink};
use memha_failover::socket::{ArpSocket, VrrpSocket};
use memha_vrrp::packet::{
    decode_ipv4, garp_frame, ipv4_header, Advert, Auth, RxCheck, Version, ETH_P_ARP, MCAST_ADDR_V4,
};

// ===== Environment =====

/// Why the tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, raw sockets)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        Ok(_) => Some("`ip -V` failed; install iproute2".into()),
        Err(e) => Some(format!("`ip` (iproute2) not found: {e}")),
    }
}

/// Returns early from a test that cannot run, saying so.
macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// Runs `ip` with these arguments; panics with its stderr if it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has joined namespace `ns` and returns its result.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let file = File::open(format!("/run/netns/{ns}"))
                .unwrap_or_else(|e| panic!("opening /run/netns/{ns}: {e}"));
            // SAFETY: setns on a valid namespace fd; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({ns}): {}", io::Error::last_os_error());
            f()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Linux capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Removes `caps` from the calling thread's effective capabilities (credentials are
/// per-thread on Linux, so the rest of the test process keeps them).
fn drop_effective_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and two data structs, as the version 3 ABI wants.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
    for cap in caps {
        data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
    }
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
}

/// Two namespaces, `a` and `b`, with a veth pair `va` (in a, 10.211.N.1/24) – `vb` (in b,
/// 10.211.N.2/24), both up. Dropping it deletes the namespaces, and the veth with them.
struct Pair {
    a: String,
    b: String,
    subnet: u8,
}

impl Pair {
    fn new(test: &str, subnet: u8) -> Pair {
        let pid = std::process::id();
        let pair = Pair {
            a: format!("mhf-{pid}-{test}-a"),
            b: format!("mhf-{pid}-{test}-b"),
            subnet,
        };
        // Leftovers of an earlier run killed before its cleanup.
        pair.delete();
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &pair.b,
        ]);
        let (addr_a, addr_b) = (
            format!("{}/24", pair.addr_a()),
            format!("{}/24", pair.addr_b()),
        );
        ip(&["-n", &pair.a, "addr", "add", &addr_a, "dev", "va"]);
        ip(&["-n", &pair.b, "addr", "add", &addr_b, "dev", "vb"]);
        for (ns, dev) in [(&pair.a, "va"), (&pair.b, "vb")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    fn addr_a(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, 1)
    }

    fn addr_b(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, 2)
    }

    /// An address of the subnet that neither side holds.
    fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 211, self.subnet, 46)
    }

    fn delete(&self) {
        for ns in [&self.a, &self.b] {
            if std::path::Path::new(&format!("/run/netns/{ns}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `(index, mac)` of `dev` in `ns` as `ip -o link` shows them.
fn ip_link(ns: &str, dev: &str) -> (u32, [u8; 6]) {
    let line = ip(&["-n", ns, "-o", "link", "show", "dev", dev]);
    let index = line
        .split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index in {line:?}"));
    let mac_text = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no link/ether in {line:?}"));
    let mut mac = [0u8; 6];
    let parts: Vec<u8> = mac_text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex MAC byte"))
        .collect();
    mac.copy_from_slice(&parts);
    (index, mac)
}

/// The link `dev` in `ns`, looked up with our own netlink code.
fn link_in(ns: &str, dev: &str) -> Link {
    in_ns(ns, || Netlink::open()?.link_by_name(dev)).expect("link_by_name")
}

/// Waits until `fd` is readable, at most until `deadline`; false on timeout.
fn wait_readable(fd: &impl AsRawFd, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
    rc > 0
}

// ===== 1. Netlink =====

#[test]
fn netlink_reads_links_and_manages_addresses() {
    require_root!();
    let pair = Pair::new("nl", 1);
    let mut nl = in_ns(&pair.a, Netlink::open).expect("Netlink::open");

    let (index, mac) = ip_link(&pair.a, "va");
    let link = nl.link_by_name("va").expect("link_by_name(va)");
    assert_eq!(
        link,
        Link {
            index,
            name: "va".into(),
            mac,
            up: true
        }
    );
    assert_eq!(nl.link(index).expect("link(index)"), link);
    let all = nl.links().expect("links()");
    assert!(all.contains(&link), "{all:?}");
    assert!(all.iter().any(|l| l.name == "lo"), "{all:?}");

    let missing = nl.link_by_name("mhf-nosuch0").unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    assert!(missing.to_string().contains("mhf-nosuch0"), "{missing}");
    assert_eq!(
        nl.link(999_999).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );

    // IPv4: add (with a keepalived-style label), again, remove, again.
    ip(&[
        "-n",
        &pair.a,
        "addr",
        "add",
        &format!("10.211.{}.5/24", pair.subnet),
        "dev",
        "va",
    ]);
    let vip = IpAddr::V4(pair.vip());
    assert!(!nl.has_address(index, vip).unwrap());
    assert!(nl.add_address(index, vip, 32, Some("va:vip")).expect("add"));
    let shown = ip(&["-n", &pair.a, "-4", "-o", "addr", "show", "dev", "va"]);
    let vip_line = shown
        .lines()
        .find(|l| l.contains(&format!("{vip}/32")))
        .unwrap_or_else(|| panic!("{vip}/32 missing from:\n{shown}"));
    assert!(vip_line.contains("va:vip"), "label missing: {vip_line}");
    assert!(nl.has_address(index, vip).unwrap());
    assert!(!nl
        .add_address(index, vip, 32, Some("va:vip"))
        .expect("second add"));

    // The first primary is the interface's own address, secondaries come last.
    let v4 = nl.ipv4_addresses(index).expect("ipv4_addresses");
    assert_eq!(
        v4,
        vec![
            (pair.addr_a(), 24),
            (pair.vip(), 32),
            (Ipv4Addr::new(10, 211, pair.subnet, 5), 24),
        ]
    );

    assert!(nl.del_address(index, vip, 32).expect("del"));
    let shown = ip(&["-n", &pair.a, "-4", "-o", "addr", "show", "dev", "va"]);
    assert!(
        !shown.contains(&format!("{vip}/32")),
        "still there:\n{shown}"
    );
    assert!(!nl.has_address(index, vip).unwrap());
    assert!(!nl.del_address(index, vip, 32).expect("second del"));

    // IPv6, added without DAD so it is usable at once.
    let vip6 = IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        211,
        u16::from(pair.subnet),
        0,
        0,
        0,
        0x46,
    ));
    assert!(nl
        .add_address(index, vip6, 128, Some("va"))
        .expect("add v6"));
    assert!(!nl
        .add_address(index, vip6, 128, None)
        .expect("second add v6"));
    let shown = ip(&["-n", &pair.a, "-6", "-o", "addr", "show", "dev", "va"]);
    let line = shown
        .lines()
        .find(|l| l.contains(&format!("{vip6}/128")))
        .unwrap_or_else(|| panic!("{vip6}/128 missing from:\n{shown}"));
    assert!(!line.contains("tentative"), "DAD was not skipped: {line}");
    assert!(nl.has_address(index, vip6).unwrap());
    assert!(nl.del_address(index, vip6, 128).expect("del v6"));
    assert!(!nl.del_address(index, vip6, 128).expect("second del v6"));
    assert!(!nl.has_address(index, vip6).unwrap());

    // Bad input is refused before it reaches the kernel, and says why.
    let long = nl
        .add_address(index, vip, 32, Some("a-label-far-too-long"))
        .unwrap_err();
    assert_eq!(long.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        nl.add_address(index, vip, 33, None).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

// ===== 2. Link events =====

/// Drains `events` until one matches `want`, for at most 3 s; returns everything seen.
fn wait_for_event(events: &mut LinkEvents, want: (u32, bool)) -> Vec<(u32, bool)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    loop {
        seen.extend(events.drain().expect("drain"));
        if seen.contains(&want) {
            return seen;
        }
        assert!(
            wait_readable(events, deadline),
            "no {want:?} within 3 s; saw {seen:?}"
        );
    }
}

#[test]
fn link_events_follow_admin_state_carrier_and_removal() {
    require_root!();
    let pair = Pair::new("ev", 2);
    let mut events = in_ns(&pair.a, LinkEvents::open).expect("LinkEvents::open");
    let (index, _) = ip_link(&pair.a, "va");
    assert_eq!(events.drain().expect("first drain"), vec![]);

    ip(&["-n", &pair.a, "link", "set", "va", "down"]);
    wait_for_event(&mut events, (index, false));
    ip(&["-n", &pair.a, "link", "set", "va", "up"]);
    wait_for_event(&mut events, (index, true));

    // The peer going down takes the carrier away while va stays administratively up.
    ip(&["-n", &pair.b, "link", "set", "vb", "down"]);
    wait_for_event(&mut events, (index, false));
    ip(&["-n", &pair.b, "link", "set", "vb", "up"]);
    wait_for_event(&mut events, (index, true));

    // Removal reports the interface down.
    ip(&[
        "-n", &pair.a, "link", "add", "xa", "type", "veth", "peer", "name", "xb",
    ]);
    let (extra, _) = ip_link(&pair.a, "xa");
    ip(&["-n", &pair.a, "link", "del", "xa"]);
    wait_for_event(&mut events, (extra, false));

    // Nothing is left pending, and draining an idle socket is not an error.
    let rest = events.drain().expect("idle drain");
    assert!(rest.iter().all(|(i, _)| *i != index), "{rest:?}");
}

// ===== 3. VRRP socket =====

fn rx_check(vip: Ipv4Addr) -> RxCheck {
    RxCheck {
        version: Version::V3,
        vrid: 51,
        auth: Auth::None,
        adver_int: 100,
        vips: Some(vec![IpAddr::V4(vip)]),
    }
}

/// A whole VRRPv3 advert packet from `src` to `dst`, as the speaker sends it.
fn advert_packet(src: Ipv4Addr, dst: Ipv4Addr, vip: Ipv4Addr) -> Vec<u8> {
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 150,
        adver_int: 100,
        auth: Auth::None,
        addrs: vec![IpAddr::V4(vip)],
    };
    let payload = advert
        .encode(IpAddr::V4(src), IpAddr::V4(dst))
        .expect("encode advert");
    let mut packet = ipv4_header(src, dst, 7, payload.len()).to_vec();
    packet.extend_from_slice(&payload);
    packet
}

/// The first packet `socket` receives within 2 s.
fn recv_within_2s(socket: &VrrpSocket) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    loop {
        if let Some(n) = socket.recv(&mut buf).expect("recv") {
            return buf[..n].to_vec();
        }
        assert!(
            wait_readable(socket, deadline),
            "nothing received within 2 s"
        );
    }
}

#[test]
fn vrrp_socket_carries_multicast_and_unicast_adverts() {
    require_root!();
    let pair = Pair::new("vrrp", 3);
    let link_a = link_in(&pair.a, "va");
    let link_b = link_in(&pair.b, "vb");
    let sock_a = in_ns(&pair.a, || VrrpSocket::open(&link_a, true)).expect("open A");
    let sock_b = in_ns(&pair.b, || VrrpSocket::open(&link_b, true)).expect("open B");
    let check = rx_check(pair.vip());

    sock_a
        .send_to(
            &advert_packet(pair.addr_a(), MCAST_ADDR_V4, pair.vip()),
            MCAST_ADDR_V4,
        )
        .expect("send multicast");
    let got = recv_within_2s(&sock_b);
    let (meta, advert) = decode_ipv4(&got, &check).expect("decode multicast advert");
    assert_eq!(meta.ttl, 255);
    assert_eq!(meta.src, IpAddr::V4(pair.addr_a()));
    assert_eq!(meta.dst, IpAddr::V4(MCAST_ADDR_V4));
    assert_eq!(advert.priority, 150);
    assert_eq!(got[1], 0xc0, "TOS");

    sock_a
        .send_to(
            &advert_packet(pair.addr_a(), pair.addr_b(), pair.vip()),
            pair.addr_b(),
        )
        .expect("send unicast");
    let got = recv_within_2s(&sock_b);
    let (meta, _) = decode_ipv4(&got, &check).expect("decode unicast advert");
    assert_eq!(meta.src, IpAddr::V4(pair.addr_a()));
    assert_eq!(meta.dst, IpAddr::V4(pair.addr_b()));

    // Multicast loop is off: A never sees its own advert.
    let mut buf = [0u8; 2048];
    assert_eq!(sock_a.recv(&mut buf).expect("recv on A"), None);

    // A socket that did not join the group only gets unicast.
    let unicast_b = in_ns(&pair.b, || VrrpSocket::open(&link_b, false)).expect("open B unicast");
    sock_a
        .send_to(
            &advert_packet(pair.addr_a(), MCAST_ADDR_V4, pair.vip()),
            MCAST_ADDR_V4,
        )
        .expect("send multicast again");
    recv_within_2s(&sock_b);
    assert_eq!(unicast_b.recv(&mut buf).expect("recv unicast-only"), None);
}

// ===== 4. Gratuitous ARP =====

/// An `AF_PACKET` socket receiving the ARP frames of interface `index` (opened in the
/// namespace of the caller's thread).
fn arp_listener(index: u32) -> OwnedFd {
    let proto = ETH_P_ARP.to_be() as libc::c_int;
    // SAFETY: plain socket(2) call; checked before wrapping.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto) };
    assert!(fd >= 0, "packet socket: {}", io::Error::last_os_error());
    // SAFETY: fresh descriptor, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = index as libc::c_int;
    // SAFETY: valid sockaddr_ll with its length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind packet socket: {}", io::Error::last_os_error());
    fd
}

#[test]
fn arp_socket_sends_gratuitous_arp() {
    require_root!();
    let pair = Pair::new("arp", 4);
    let link_a = link_in(&pair.a, "va");
    let link_b = link_in(&pair.b, "vb");
    let listener = in_ns(&pair.b, || arp_listener(link_b.index));
    let arp = in_ns(&pair.a, || ArpSocket::open(&link_a)).expect("ArpSocket::open");

    arp.send(&garp_frame(link_a.mac, pair.vip()))
        .expect("send GARP");

    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1514];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(listener.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "recv: {e}");
            assert!(
                wait_readable(&listener, deadline),
                "no gratuitous ARP within 2 s"
            );
            continue;
        }
        let frame = &buf[..n as usize];
        // The kernel's own ARP traffic (none expected, but possible) is not ours.
        if frame.len() < 42 || frame[28..32] != pair.vip().octets() {
            continue;
        }
        assert_eq!(frame[0..6], [0xff; 6], "Ethernet destination");
        assert_eq!(frame[6..12], link_a.mac, "Ethernet source");
        assert_eq!(frame[12..14], ETH_P_ARP.to_be_bytes(), "EtherType");
        assert_eq!(frame[22..28], link_a.mac, "ARP sender MAC");
        assert_eq!(frame[38..42], pair.vip().octets(), "ARP target IP");
        break;
    }
}

// ===== 5. Errors =====

#[test]
fn errors_name_the_missing_interface() {
    require_root!();
    let pair = Pair::new("err", 5);
    let ghost = Link {
        index: 999_999,
        name: "mhf-nosuch0".into(),
        mac: [2, 0, 0, 0, 0, 1],
        up: true,
    };
    let (vrrp, arp, add, del) = in_ns(&pair.a, || {
        let mut nl = Netlink::open().expect("Netlink::open");
        let vip = IpAddr::V4(Ipv4Addr::new(10, 211, 5, 46));
        (
            VrrpSocket::open(&ghost, true).map(|_| ()),
            ArpSocket::open(&ghost).map(|_| ()),
            nl.add_address(ghost.index, vip, 32, None),
            nl.del_address(ghost.index, vip, 32),
        )
    });
    let vrrp = vrrp.expect_err("VrrpSocket on a missing interface");
    assert_eq!(vrrp.kind(), io::ErrorKind::NotFound, "{vrrp}");
    assert!(vrrp.to_string().contains("mhf-nosuch0"), "{vrrp}");
    let arp = arp.expect_err("ArpSocket on a missing interface");
    assert_eq!(arp.kind(), io::ErrorKind::NotFound, "{arp}");
    assert!(arp.to_string().contains("mhf-nosuch0"), "{arp}");
    let add = add.expect_err("adding to a missing interface");
    assert!(add.to_string().contains("10.211.5.46/32"), "{add}");
    assert!(add.to_string().contains("999999"), "{add}");
    assert!(!del.expect("removing from a missing interface"));
}

#[test]
fn permission_errors_name_the_missing_capability() {
    require_root!();
    let pair = Pair::new("perm", 6);
    let link_a = link_in(&pair.a, "va");
    let vip = IpAddr::V4(pair.vip());
    let (vrrp, arp, add, events) = in_ns(&pair.a, || {
        // Opened while privileged, used without: the kernel checks the sender.
        let mut nl = Netlink::open().expect("Netlink::open");
        drop_effective_caps(&[CAP_NET_RAW, CAP_NET_ADMIN]);
        (
            VrrpSocket::open(&link_a, true).map(|_| ()),
            ArpSocket::open(&link_a).map(|_| ()),
            nl.add_address(link_a.index, vip, 32, None),
            LinkEvents::open().map(|_| ()),
        )
    });
    for (what, e) in [("VrrpSocket", vrrp), ("ArpSocket", arp)] {
        let e = e.expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{what}: {e}");
        let text = e.to_string();
        assert!(
            text.contains("CAP_NET_RAW") && text.contains("\"va\""),
            "{what}: {text}"
        );
    }
    let add = add.expect_err("add_address without CAP_NET_ADMIN");
    assert_eq!(add.kind(), io::ErrorKind::PermissionDenied, "{add}");
    assert!(add.to_string().contains("CAP_NET_ADMIN"), "{add}");
    assert!(add.to_string().contains(&format!("{vip}/32")), "{add}");
    // Watching links needs no privilege at all.
    events.expect("LinkEvents::open without capabilities");
}

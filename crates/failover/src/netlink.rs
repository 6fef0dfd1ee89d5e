//! rtnetlink, hand-written: the handful of requests the speaker needs, over a plain
//! synchronous `NETLINK_ROUTE` socket.
//!
//! # Why not the rtnetlink crates
//!
//! The speaker is one synchronous `poll` loop inside memha's supervisor (see the crate docs):
//! it must keep running when the data process has died, and it has no async runtime. The
//! usual Rust stack (`rtnetlink` over `netlink-proto`) is built on tokio and would bring a
//! runtime, futures and a dozen crates into the supervisor for what amounts to six message
//! types. So this module speaks the wire format itself, with `libc` only:
//!
//! * `RTM_GETLINK` (one interface by name or index, or a dump of all of them) to learn an
//!   interface's index, MAC and up/carrier state;
//! * `RTM_GETADDR` dumps, `RTM_NEWADDR` and `RTM_DELADDR` to read, add and remove addresses;
//! * a second socket subscribed to `RTMGRP_LINK`, which the kernel multicasts an
//!   `RTM_NEWLINK` / `RTM_DELLINK` to whenever an interface changes ([`LinkEvents`]).
//!
//! # Requests
//!
//! [`Netlink`] is blocking with a 1 s receive timeout: the kernel answers rtnetlink requests
//! synchronously, so an answer that takes longer means something is badly wrong, and the
//! loop must not hang on it. Every request carries its own sequence number and asks for an
//! acknowledgement (`NLM_F_ACK`), so a failure is never silent: the kernel's error code
//! (and, on kernels that have it, its extended-ack text) ends up in the returned error.
//! Replies whose sequence number is not the current one (a late answer to a request that
//! timed out) are skipped, and so is anything not sent by the kernel itself.
//!
//! # Parsing
//!
//! Everything the kernel sends is parsed defensively: every length is checked against the
//! bytes actually received, and a malformed reply becomes an error, never a panic. The
//! parse and build helpers are plain functions over byte slices, unit-tested without root.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// ===== Wire constants =====
//
// From the kernel's uapi headers (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
// linux/if_addr.h, linux/if.h). They are ABI and never change; they are spelled out here
// with the integer types the wire uses rather than taken from `libc`, where their Rust
// types vary between targets.

/// Length of `struct nlmsghdr`: length, type, flags, sequence number, port id.
const NLMSG_HDRLEN: usize = 16;
/// Length of `struct ifinfomsg`, the fixed part of link messages.
const IFINFOMSG_LEN: usize = 16;
/// Length of `struct ifaddrmsg`, the fixed part of address messages.
const IFADDRMSG_LEN: usize = 8;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
/// Set on dump messages when the data changed while it was being dumped.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// In an `NLMSG_ERROR`: the original request was not echoed back (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// In an `NLMSG_ERROR`: extended-ack attributes follow (`NETLINK_EXT_ACK`).
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended-ack attribute carrying the kernel's error text.
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_MACVLAN_MODE: u16 = 1;
/// `MACVLAN_MODE_PRIVATE`: the macvlan does not talk to its siblings (keepalived's choice
/// for a VRRP virtual MAC).
const MACVLAN_MODE_PRIVATE: u32 = 1;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
/// 32-bit address flags; supersedes the 8-bit `ifa_flags` field when present.
const IFA_FLAGS: u16 = 8;

const IFA_F_SECONDARY: u32 = 0x01;
const IFA_F_NODAD: u8 = 0x02;

const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// Multicast group of link changes.
const RTMGRP_LINK: u32 = 1;

/// The two top bits of an attribute type are flags (nested, byte order), not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Interface names are at most 15 bytes plus the terminating NUL.
const IFNAMSIZ: usize = 16;

/// Receive buffer. The kernel sizes dump datagrams after the reader's buffer, up to 32 KiB;
/// twice that leaves room for one oversized link message (many VFs) without truncation.
const RECV_BUF_LEN: usize = 64 * 1024;

/// How long a request waits for each datagram of its answer.
const REPLY_TIMEOUT_SECS: libc::time_t = 1;

/// How many times a dump the kernel flagged as interrupted (the data changed underneath it)
/// is restarted before its possibly inconsistent result is used anyway.
const DUMP_ATTEMPTS: usize = 3;

/// Socket receive buffer asked for the link-event socket, so that a burst of changes (a
/// bond or a bridge with many ports flapping) does not overrun it; the kernel caps it at
/// `net.core.rmem_max`.
const EVENTS_RCVBUF: libc::c_int = 1 << 20;

/// At most this many datagrams are read by one [`LinkEvents::drain`], so a flood of events
/// cannot starve the rest of the loop; what is left is still pending on the next poll.
const EVENTS_PER_DRAIN: usize = 1024;

// ===== Link =====

/// What the speaker needs to know about one network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The hardware address; all zeros for interfaces without a 6-byte one (loopback, tun).
    pub mac: [u8; 6],
    /// `IFF_UP` and carrier (`IFF_LOWER_UP`, or `IFF_RUNNING` for drivers that only report
    /// that): the interface can carry adverts right now.
    pub up: bool,
}

/// Whether the interface flags of a link message mean "administratively up with carrier".
fn link_is_up(flags: u32) -> bool {
    flags & IFF_UP != 0 && flags & (IFF_LOWER_UP | IFF_RUNNING) != 0
}

/// Parses the payload of an `RTM_NEWLINK` (an `ifinfomsg` then attributes).
fn parse_link(payload: &[u8]) -> Option<Link> {
    if payload.len() < IFINFOMSG_LEN {
        return None;
    }
    let index = read_u32(payload, 4)?;
    let flags = read_u32(payload, 8)?;
    let mut link = Link {
        index,
        name: String::new(),
        mac: [0; 6],
        up: link_is_up(flags),
    };
    for (kind, value) in attrs(&payload[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => link.name = c_string(value),
            IFLA_ADDRESS if value.len() == 6 => link.mac.copy_from_slice(value),
            _ => {}
        }
    }
    Some(link)
}

// ===== Addresses =====

/// One address as an `RTM_NEWADDR` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddrEntry {
    index: u32,
    addr: IpAddr,
    prefix: u8,
    secondary: bool,
}

/// Parses the payload of an `RTM_NEWADDR` (an `ifaddrmsg` then attributes).
///
/// The interface's own address is `IFA_LOCAL` when present: on a point-to-point link
/// `IFA_ADDRESS` is the peer. IPv6 sends only `IFA_ADDRESS` unless a peer is configured.
fn parse_addr(payload: &[u8]) -> Option<AddrEntry> {
    if payload.len() < IFADDRMSG_LEN {
        return None;
    }
    let prefix = payload[1];
    let mut flags = u32::from(payload[2]);
    let index = read_u32(payload, 4)?;
    let (mut local, mut address) = (None, None);
    for (kind, value) in attrs(&payload[IFADDRMSG_LEN..]) {
        match kind {
            IFA_LOCAL => local = ip_from_bytes(value),
            IFA_ADDRESS => address = ip_from_bytes(value),
            IFA_FLAGS => flags = read_u32(value, 0).unwrap_or(flags),
            _ => {}
        }
    }
    Some(AddrEntry {
        index,
        addr: local.or(address)?,
        prefix,
        secondary: flags & IFA_F_SECONDARY != 0,
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

fn ip_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn family_of(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// The IPv4 addresses of one interface, primary ones first, each group in the kernel's
/// order (the first primary is the one the kernel picks as source address, which is what a
/// VRRP advert must be sent from).
fn primary_first_v4(entries: &[AddrEntry], index: u32) -> Vec<(Ipv4Addr, u8)> {
    let mine = entries.iter().filter(|e| e.index == index);
    let v4 = |e: &AddrEntry| match e.addr {
        IpAddr::V4(a) => Some((a, e.prefix, e.secondary)),
        IpAddr::V6(_) => None,
    };
    let (primary, secondary): (Vec<_>, Vec<_>) = mine
        .filter_map(v4)
        .partition(|(_, _, secondary)| !secondary);
    primary
        .into_iter()
        .chain(secondary)
        .map(|(a, p, _)| (a, p))
        .collect()
}

// ===== Byte helpers =====

/// Netlink messages and attributes are padded to 4 bytes.
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A NUL-terminated string attribute (anything after the first NUL is ignored, a missing
/// NUL tolerated, invalid UTF-8 replaced).
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

// ===== Messages and attributes =====

/// One netlink message inside a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Message<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// A datagram whose message lengths do not add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Malformed;

/// The messages of one datagram; yields one `Err(Malformed)` and stops at the first length
/// that does not fit.
struct Messages<'a> {
    rest: &'a [u8],
}

fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        let len = read_u32(rest, 0).map_or(0, |l| l as usize);
        if rest.len() < NLMSG_HDRLEN || len < NLMSG_HDRLEN || len > rest.len() {
            self.rest = &[];
            return Some(Err(Malformed));
        }
        let message = Message {
            kind: read_u16(rest, 4)?,
            flags: read_u16(rest, 6)?,
            seq: read_u32(rest, 8)?,
            payload: &rest[NLMSG_HDRLEN..len],
        };
        self.rest = &rest[align4(len).min(rest.len())..];
        Some(Ok(message))
    }
}

/// The attributes (`struct rtattr` / `struct nlattr`: length, type, value, padding) in a
/// byte slice, as `(type, value)`. Stops quietly at the first length that does not fit:
/// attributes before it are still good, and the fixed header told us what we need most.
struct Attrs<'a> {
    rest: &'a [u8],
}

fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let len = usize::from(read_u16(rest, 0)?);
        let kind = read_u16(rest, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            self.rest = &[];
            return None;
        }
        self.rest = &rest[align4(len).min(rest.len())..];
        Some((kind, &rest[4..len]))
    }
}

/// A request being built: the netlink header, the fixed family header, then attributes.
/// The length and sequence number are filled in by [`Request::finish`].
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(kind: u16, flags: u16) -> Request {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence number, set by finish
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: 0 = let the kernel fill it
        Request { buf }
    }

    /// Appends the fixed header of the message family (`ifinfomsg`, `ifaddrmsg`).
    fn fixed(mut self, bytes: &[u8]) -> Request {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Request {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// A string attribute, NUL-terminated as the kernel expects.
    fn attr_str(self, kind: u16, value: &str) -> Request {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.attr(kind, &v)
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` for a request about interface `index` (0 = chosen by name or dump).
fn ifinfomsg(index: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// `struct ifaddrmsg`; scope 0 is `RT_SCOPE_UNIVERSE`, what `ip addr add` uses by default.
fn ifaddrmsg(family: u8, prefix: u8, flags: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut m = [0u8; IFADDRMSG_LEN];
    m[0] = family;
    m[1] = prefix;
    m[2] = flags;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

// ===== Replies =====

/// Why a request failed, before it is turned into an `io::Error` that names the request.
#[derive(Debug)]
enum Failure {
    /// The kernel refused: a positive errno and, with extended acks, its explanation.
    Kernel { errno: i32, detail: Option<String> },
    /// The socket failed, timed out or delivered garbage.
    Io(io::Error),
}

impl Failure {
    fn errno(&self) -> Option<i32> {
        match self {
            Failure::Kernel { errno, .. } => Some(*errno),
            Failure::Io(_) => None,
        }
    }

    /// The error the caller sees: what was being done, what went wrong, what to do.
    fn into_io(self, what: &str) -> io::Error {
        match self {
            Failure::Kernel { errno, detail } => {
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                if errno == libc::EPERM || errno == libc::EACCES {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{what}: the kernel refused{detail}; changing addresses needs \
                             root or CAP_NET_ADMIN"
                        ),
                    )
                } else {
                    let os = io::Error::from_raw_os_error(errno);
                    io::Error::new(os.kind(), format!("{what}: {os}{detail}"))
                }
            }
            Failure::Io(e) => io::Error::new(e.kind(), format!("{what}: {e}")),
        }
    }
}

/// Where a request stands after one datagram of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// More datagrams are to come.
    More,
    /// The acknowledgement (or, for a dump, `NLMSG_DONE`) arrived.
    Finished,
}

/// Walks one datagram of the answer to request `seq`: data messages go to `on_message`,
/// the acknowledgement / `NLMSG_DONE` / error ends the request. Messages with another
/// sequence number are skipped.
fn process_reply(
    datagram: &[u8],
    seq: u32,
    on_message: &mut dyn FnMut(&Message<'_>),
) -> Result<Progress, Failure> {
    for message in messages(datagram) {
        let message = message.map_err(|Malformed| {
            Failure::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink message from the kernel (lengths do not add up)",
            ))
        })?;
        if message.seq != seq {
            continue;
        }
        match message.kind {
            NLMSG_NOOP => {}
            NLMSG_ERROR => {
                let (errno, detail) = parse_error(&message)?;
                return match errno {
                    0 => Ok(Progress::Finished),
                    errno => Err(Failure::Kernel { errno, detail }),
                };
            }
            NLMSG_DONE => {
                // A dump that failed half-way says so in NLMSG_DONE's payload.
                return match read_i32(message.payload, 0) {
                    Some(err) if err < 0 => Err(Failure::Kernel {
                        errno: err.saturating_neg(),
                        detail: None,
                    }),
                    _ => Ok(Progress::Finished),
                };
            }
            NLMSG_OVERRUN => {
                return Err(Failure::Io(io::Error::other(
                    "netlink reported an overrun; the answer was lost, try again",
                )))
            }
            _ => on_message(&message),
        }
    }
    Ok(Progress::More)
}

/// Parses an `NLMSG_ERROR` payload: a negative errno (0 = acknowledgement), the request's
/// header (or the whole request unless capped), then extended-ack attributes if flagged.
/// Returns the positive errno and the kernel's text, if any.
fn parse_error(message: &Message<'_>) -> Result<(i32, Option<String>), Failure> {
    let p = message.payload;
    let Some(err) = read_i32(p, 0) else {
        return Err(Failure::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated netlink error message from the kernel",
        )));
    };
    let mut detail = None;
    if message.flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if message.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            read_u32(p, 4).map_or(usize::MAX, |l| l as usize)
        };
        let start = 4usize.saturating_add(align4(echoed.min(usize::MAX - 3)));
        if let Some(tlvs) = p.get(start..) {
            detail = attrs(tlvs)
                .find(|(kind, _)| *kind == NLMSGERR_ATTR_MSG)
                .map(|(_, v)| c_string(v))
                .filter(|s| !s.is_empty());
        }
    }
    Ok((err.saturating_neg(), detail))
}

// ===== Socket plumbing =====

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// A `NETLINK_ROUTE` socket bound to `groups` (0 for a request socket).
fn open_route_socket(groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    let mut kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
    if nonblocking {
        kind |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, kind, libc::NETLINK_ROUTE) };
    if fd < 0 {
        let e = last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("opening a NETLINK_ROUTE socket: {e} (is this a Linux kernel with rtnetlink?)"),
        ));
    }
    // SAFETY: fd is a freshly created descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: addr is a valid sockaddr_nl and the length matches it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("binding a NETLINK_ROUTE socket: {e}"),
        ));
    }
    Ok(fd)
}

fn set_int_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: value lives across the call and the length is that of a c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Receives one datagram; `Ok(None)` if it did not come from the kernel (port id 0), so a
/// local process cannot feed us forged answers. The returned length is the datagram's real
/// length (`MSG_TRUNC`), which may exceed `buf`.
fn recv_from_kernel(fd: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: buf and from are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags | libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if from.nl_pid != 0 {
            return Ok(None);
        }
        return Ok(Some(n as usize));
    }
}

fn send_to_kernel(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain data; all-zero (port 0, no groups) is the kernel.
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: msg and to are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(());
    }
}

// ===== Netlink =====

/// A blocking rtnetlink request socket (1 s timeout per answer). Not shared: one per loop.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens the socket. Needs no privileges; changing addresses later does.
    pub fn open() -> io::Result<Netlink> {
        let fd = open_route_socket(0, false)?;
        let timeout = libc::timeval {
            tv_sec: REPLY_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: timeout lives across the call and the length is that of a timeval.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("setting the netlink receive timeout: {e}"),
            ));
        }
        // Error texts from the kernel, and no echo of our request inside errors. Kernels
        // older than 4.12 lack them; errors then carry only the errno.
        set_int_option(&fd, libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        set_int_option(&fd, libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        Ok(Netlink {
            fd,
            // Any start works: the socket has its own port id, so only our requests'
            // answers reach it.
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Sends `request` and reads its answer until the acknowledgement or `NLMSG_DONE`,
    /// handing every data message to `on_message`.
    fn transact(
        &mut self,
        request: Request,
        on_message: &mut dyn FnMut(&Message<'_>),
    ) -> Result<(), Failure> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        send_to_kernel(&self.fd, &request.finish(seq)).map_err(Failure::Io)?;
        loop {
            let n = match recv_from_kernel(&self.fd, &mut self.buf, 0) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Failure::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from the kernel within {REPLY_TIMEOUT_SECS} s"),
                    )))
                }
                Err(e) => return Err(Failure::Io(e)),
            };
            if n > self.buf.len() {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "netlink answer of {n} bytes does not fit the {} byte buffer",
                        self.buf.len()
                    ),
                )));
            }
            if process_reply(&self.buf[..n], seq, on_message)? == Progress::Finished {
                return Ok(());
            }
        }
    }

    /// Runs a dump and collects what `parse` makes of each message, restarting the dump
    /// if the kernel flags it as interrupted (the data changed while it was being read).
    fn dump<T>(
        &mut self,
        request: &dyn Fn() -> Request,
        what: &str,
        parse: &dyn Fn(&Message<'_>) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        let mut items = Vec::new();
        for attempt in 1..=DUMP_ATTEMPTS {
            items.clear();
            let mut interrupted = false;
            self.transact(request(), &mut |m| {
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                items.extend(parse(m));
            })
            .map_err(|f| f.into_io(what))?;
            if !interrupted {
                break;
            }
            if attempt == DUMP_ATTEMPTS {
                tracing::warn!(
                    "{what}: the kernel kept changing the data during the dump; \
                     using the last, possibly inconsistent, answer"
                );
            }
        }
        Ok(items)
    }

    fn get_link(&mut self, request: Request) -> Result<Option<Link>, Failure> {
        let mut found = None;
        self.transact(request, &mut |m| {
            if m.kind == RTM_NEWLINK && found.is_none() {
                found = parse_link(m.payload);
            }
        })?;
        Ok(found)
    }

    /// The interface called `name`.
    ///
    /// # Errors
    ///
    /// `NotFound` (naming the interface) if there is none.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Link> {
        let not_found = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no network interface named {name:?}; check the interface in the \
                     configuration (`ip link` lists them)"
                ),
            )
        };
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(not_found());
        }
        let request = Request::new(RTM_GETLINK, 0)
            .fixed(&ifinfomsg(0))
            .attr_str(IFLA_IFNAME, name);
        match self.get_link(request) {
            Ok(Some(link)) => Ok(link),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "looking up interface {name:?}: the kernel acknowledged without describing it"
                ),
            )),
            Err(f) if f.errno() == Some(libc::ENODEV) => Err(not_found()),
            Err(f) => Err(f.into_io(&format!("looking up interface {name:?}"))),
        }
    }

    /// The interface with this index.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is none (it was removed).
    pub fn link(&mut self, index: u32) -> io::Result<Link> {
        let request = Request::new(RTM_GETLINK, 0).fixed(&ifinfomsg(index));
        match self.get_link(request) {
            Ok(Some(link)) => Ok(link),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "looking up interface #{index}: the kernel acknowledged without describing it"
                ),
            )),
            Err(f) if f.errno() == Some(libc::ENODEV) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface with index {index} (it was probably removed)"),
            )),
            Err(f) => Err(f.into_io(&format!("looking up interface #{index}"))),
        }
    }

    /// Every interface.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.dump(
            &|| Request::new(RTM_GETLINK, NLM_F_DUMP).fixed(&ifinfomsg(0)),
            "listing network interfaces",
            &|m| match m.kind {
                RTM_NEWLINK => parse_link(m.payload),
                _ => None,
            },
        )
    }

    /// Every address of one family (`AF_INET` / `AF_INET6`) on the system; the kernel only
    /// filters dumps by interface in strict mode, so filtering is left to the callers.
    fn addresses(&mut self, family: u8, what: &str) -> io::Result<Vec<AddrEntry>> {
        self.dump(
            &|| Request::new(RTM_GETADDR, NLM_F_DUMP).fixed(&ifaddrmsg(family, 0, 0, 0)),
            what,
            &|m| match m.kind {
                RTM_NEWADDR => parse_addr(m.payload),
                _ => None,
            },
        )
    }

    /// The interface's IPv4 addresses with prefix length, primary (non-secondary) ones
    /// first, in the kernel's order.
    pub fn ipv4_addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let what = format!("listing the IPv4 addresses of interface #{index}");
        let entries = self.addresses(libc::AF_INET as u8, &what)?;
        Ok(primary_first_v4(&entries, index))
    }

    /// Adds `addr/prefix` (IPv4 or IPv6) to the interface; `Ok(false)` if it was already
    /// there (`EEXIST`).
    ///
    /// `label` becomes the IPv4 address label (`IFA_LABEL`, what `ip addr` shows at the end
    /// of the line and old `ifconfig` tools see as an alias, keepalived-style `eth0` or
    /// `eth0:vip`); it must be at most 15 bytes. IPv6 has no labels: it is ignored there.
    /// IPv6 addresses are added without duplicate address detection (`IFA_F_NODAD`): a
    /// tentative address cannot be used for about a second, and VRRP has already made sure
    /// only one router holds it.
    pub fn add_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        label: Option<&str>,
    ) -> io::Result<bool> {
        check_prefix(addr, prefix)?;
        let what = format!("adding {addr}/{prefix} to interface #{index}");
        let flags = if addr.is_ipv6() { IFA_F_NODAD } else { 0 };
        let bytes = ip_bytes(&addr);
        let mut request = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
            .fixed(&ifaddrmsg(family_of(&addr), prefix, flags, index))
            .attr(IFA_LOCAL, &bytes)
            .attr(IFA_ADDRESS, &bytes);
        if let (Some(label), IpAddr::V4(_)) = (label, addr) {
            if label.is_empty() || label.len() >= IFNAMSIZ || label.contains('\0') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{what}: the address label {label:?} must be 1 to {} bytes; \
                         use a shorter label",
                        IFNAMSIZ - 1
                    ),
                ));
            }
            request = request.attr_str(IFA_LABEL, label);
        }
        match self.transact(request, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(f) if f.errno() == Some(libc::EEXIST) => Ok(false),
            Err(f) => Err(f.into_io(&what)),
        }
    }

    /// Removes `addr/prefix` from the interface; `Ok(false)` if it was not there
    /// (`EADDRNOTAVAIL`), or the interface itself is gone (`ENODEV`, `ESRCH`).
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<bool> {
        check_prefix(addr, prefix)?;
        let bytes = ip_bytes(&addr);
        let request = Request::new(RTM_DELADDR, 0)
            .fixed(&ifaddrmsg(family_of(&addr), prefix, 0, index))
            .attr(IFA_LOCAL, &bytes)
            .attr(IFA_ADDRESS, &bytes);
        match self.transact(request, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(f)
                if matches!(
                    f.errno(),
                    Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ESRCH)
                ) =>
            {
                Ok(false)
            }
            Err(f) => Err(f.into_io(&format!("removing {addr}/{prefix} from interface #{index}"))),
        }
    }

    /// Creates a macvlan interface `name` on top of interface `parent` with this MAC (the
    /// VRRP virtual MAC), in private mode, down. `AlreadyExists` if the name is taken.
    pub fn create_macvlan(&mut self, parent: u32, name: &str, mac: [u8; 6]) -> io::Result<Link> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a valid interface name (1 to 15 bytes)"),
            ));
        }
        let mut data = Vec::new();
        push_attr(
            &mut data,
            IFLA_MACVLAN_MODE,
            &MACVLAN_MODE_PRIVATE.to_ne_bytes(),
        );
        let mut info = Vec::new();
        push_attr(&mut info, IFLA_INFO_KIND, b"macvlan\0");
        push_attr(&mut info, IFLA_INFO_DATA | NLA_F_NESTED, &data);
        let request = Request::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
            .fixed(&ifinfomsg(0))
            .attr_str(IFLA_IFNAME, name)
            .attr(IFLA_LINK, &parent.to_ne_bytes())
            .attr(IFLA_ADDRESS, &mac)
            .attr(IFLA_LINKINFO | NLA_F_NESTED, &info);
        self.transact(request, &mut |_| {}).map_err(|f| {
            f.into_io(&format!(
                "creating the macvlan interface {name} on interface #{parent}"
            ))
        })?;
        self.link_by_name(name)
    }

    /// Sets an interface administratively up.
    pub fn set_link_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = ifinfomsg(index);
        msg[8..12].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
        msg[12..16].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
        let request = Request::new(RTM_NEWLINK, 0).fixed(&msg);
        self.transact(request, &mut |_| {})
            .map_err(|f| f.into_io(&format!("setting interface #{index} up")))
    }

    /// Deletes an interface; `Ok(false)` if it was already gone.
    pub fn delete_link(&mut self, index: u32) -> io::Result<bool> {
        let request = Request::new(RTM_DELLINK, 0).fixed(&ifinfomsg(index));
        match self.transact(request, &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(f) if matches!(f.errno(), Some(libc::ENODEV)) => Ok(false),
            Err(f) => Err(f.into_io(&format!("deleting interface #{index}"))),
        }
    }

    /// Whether the interface holds `addr` (any prefix length).
    pub fn has_address(&mut self, index: u32, addr: IpAddr) -> io::Result<bool> {
        let what = format!("checking whether interface #{index} holds {addr}");
        let entries = self.addresses(family_of(&addr), &what)?;
        Ok(entries.iter().any(|e| e.index == index && e.addr == addr))
    }
}

/// Appends one attribute (header, value, padding) to `buf`: for nested attributes.
fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align4(buf.len()), 0);
}

fn check_prefix(addr: IpAddr, prefix: u8) -> io::Result<()> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}/{prefix}: the prefix length must be 0 to {max}"),
        ));
    }
    Ok(())
}

// ===== LinkEvents =====

/// A non-blocking socket subscribed to the kernel's link notifications, for the poll loop:
/// poll its fd for reading, then [`LinkEvents::drain`].
pub struct LinkEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

/// The error [`LinkEvents::drain`] returns when notifications were lost.
fn overrun(detail: &str) -> io::Error {
    io::Error::other(format!(
        "link event socket overrun: {detail}; re-read the state of every interface"
    ))
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let fd = open_route_socket(RTMGRP_LINK, true)?;
        // Best effort: a smaller buffer only makes overruns (handled) more likely.
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, EVENTS_RCVBUF);
        Ok(LinkEvents {
            fd,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Reads every pending notification: one `(index, up)` per `RTM_NEWLINK` /
    /// `RTM_DELLINK` (a removed interface is down), `up` as in [`Link::up`], oldest first.
    ///
    /// # Errors
    ///
    /// When the kernel had to drop notifications (`ENOBUFS`) or one did not fit the
    /// buffer, `ErrorKind::Other` with a message containing "overrun": the caller must
    /// re-read every link it cares about, since some change may be missing. The socket
    /// stays usable.
    pub fn drain(&mut self) -> io::Result<Vec<(u32, bool)>> {
        let mut out = Vec::new();
        for _ in 0..EVENTS_PER_DRAIN {
            let n = match recv_from_kernel(&self.fd, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(overrun("the kernel dropped link notifications"))
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading link notifications: {e}"),
                    ))
                }
            };
            if n > self.buf.len() {
                return Err(overrun("a link notification did not fit the buffer"));
            }
            for message in messages(&self.buf[..n]) {
                let Ok(message) = message else {
                    tracing::warn!("malformed link notification from the kernel; ignored");
                    break;
                };
                match message.kind {
                    RTM_NEWLINK => {
                        if let Some(link) = parse_link(message.payload) {
                            out.push((link.index, link.up));
                        }
                    }
                    RTM_DELLINK => {
                        if let Some(index) = read_u32(message.payload, 4) {
                            out.push((index, false));
                        }
                    }
                    NLMSG_OVERRUN => return Err(overrun("netlink reported an overrun")),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for LinkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// ===== Tests =====

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel would send it.
    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn link_payload(index: u32, flags: u32, name: &str, mac: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&index.to_ne_bytes());
        p[8..12].copy_from_slice(&flags.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        p.extend(attr(IFLA_IFNAME, &n));
        p.extend(attr(IFLA_ADDRESS, mac));
        p
    }

    fn addr_payload(index: u32, prefix: u8, flags: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = ifaddrmsg(libc::AF_INET as u8, prefix, flags, index).to_vec();
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    fn error_payload(errno: i32) -> Vec<u8> {
        let mut p = (-errno).to_ne_bytes().to_vec();
        p.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        p
    }

    #[test]
    fn request_fills_length_sequence_and_padding() {
        let bytes = Request::new(RTM_GETLINK, 0)
            .fixed(&ifinfomsg(7))
            .attr_str(IFLA_IFNAME, "eth0")
            .finish(42);
        // header 16 + ifinfomsg 16 + attribute 4 + "eth0\0" 5 padded to 8
        assert_eq!(bytes.len(), 16 + 16 + 12);
        assert_eq!(read_u32(&bytes, 0), Some(bytes.len() as u32));
        assert_eq!(read_u16(&bytes, 4), Some(RTM_GETLINK));
        assert_eq!(read_u16(&bytes, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(read_u32(&bytes, 8), Some(42));
        assert_eq!(read_u32(&bytes, 16 + 4), Some(7));
        let a: Vec<_> = attrs(&bytes[32..]).collect();
        assert_eq!(a, vec![(IFLA_IFNAME, &b"eth0\0"[..])]);
        assert_eq!(&bytes[41..], &[0, 0, 0]);
    }

    #[test]
    fn add_address_request_layout() {
        let bytes = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
            .fixed(&ifaddrmsg(libc::AF_INET as u8, 32, 0, 3))
            .attr(IFA_LOCAL, &[10, 0, 0, 1])
            .attr(IFA_ADDRESS, &[10, 0, 0, 1])
            .attr_str(IFA_LABEL, "eth0:vip")
            .finish(1);
        assert_eq!(
            read_u16(&bytes, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        );
        assert_eq!(bytes[16], libc::AF_INET as u8);
        assert_eq!(bytes[17], 32);
        assert_eq!(read_u32(&bytes, 20), Some(3));
        let a: Vec<_> = attrs(&bytes[24..]).collect();
        assert_eq!(
            a,
            vec![
                (IFA_LOCAL, &[10, 0, 0, 1][..]),
                (IFA_ADDRESS, &[10, 0, 0, 1][..]),
                (IFA_LABEL, &b"eth0:vip\0"[..]),
            ]
        );
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(read_u32(&bytes, 0), Some(bytes.len() as u32));
    }

    #[test]
    fn attributes_stop_at_bad_lengths() {
        let mut buf = attr(1, &[1, 2, 3, 4, 5]);
        buf.extend(attr(2, &[]));
        let good: Vec<_> = attrs(&buf).collect();
        assert_eq!(good, vec![(1, &[1, 2, 3, 4, 5][..]), (2, &[][..])]);

        // A length beyond the buffer: the attributes before it survive.
        let mut bad = attr(1, &[9]);
        bad.extend_from_slice(&100u16.to_ne_bytes());
        bad.extend_from_slice(&2u16.to_ne_bytes());
        assert_eq!(attrs(&bad).collect::<Vec<_>>(), vec![(1, &[9][..])]);

        // A length below the attribute header, and a dangling partial header.
        let mut tiny = 2u16.to_ne_bytes().to_vec();
        tiny.extend_from_slice(&1u16.to_ne_bytes());
        assert_eq!(attrs(&tiny).count(), 0);
        assert_eq!(attrs(&[8, 0]).count(), 0);

        // The nested / byte-order flags are not part of the type.
        let flagged = attr(0x8000 | 3, &[1]);
        assert_eq!(attrs(&flagged).next(), Some((3, &[1][..])));

        // The last attribute may come without its padding.
        let unpadded = [5u8, 0, 4, 0, 7];
        assert_eq!(attrs(&unpadded).next(), Some((4, &[7][..])));
    }

    #[test]
    fn messages_split_and_reject_bad_lengths() {
        let mut buf = message(RTM_NEWLINK, 0, 5, &[1, 2, 3]);
        buf.extend(message(NLMSG_DONE, 0, 5, &0i32.to_ne_bytes()));
        let all: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].payload, &[1, 2, 3]);
        assert_eq!(all[1].kind, NLMSG_DONE);

        let mut short = message(RTM_NEWLINK, 0, 5, &[]);
        short[0..4].copy_from_slice(&8u32.to_ne_bytes()); // below the header length
        assert_eq!(messages(&short).next(), Some(Err(Malformed)));

        let mut long = message(RTM_NEWLINK, 0, 5, &[]);
        long[0..4].copy_from_slice(&999u32.to_ne_bytes());
        let mut it = messages(&long);
        assert_eq!(it.next(), Some(Err(Malformed)));
        assert_eq!(it.next(), None);

        assert_eq!(messages(&[1, 2, 3]).next(), Some(Err(Malformed)));
        assert_eq!(messages(&[]).next(), None);
    }

    #[test]
    fn link_up_needs_admin_up_and_carrier() {
        let mac = [2, 0, 0, 0, 0, 9];
        let up = parse_link(&link_payload(4, IFF_UP | IFF_LOWER_UP, "eth0", &mac)).unwrap();
        assert_eq!(
            up,
            Link {
                index: 4,
                name: "eth0".into(),
                mac,
                up: true
            }
        );
        let running = parse_link(&link_payload(4, IFF_UP | IFF_RUNNING, "eth0", &mac)).unwrap();
        assert!(running.up);
        let no_carrier = parse_link(&link_payload(4, IFF_UP, "eth0", &mac)).unwrap();
        assert!(!no_carrier.up);
        let admin_down = parse_link(&link_payload(4, IFF_LOWER_UP, "eth0", &mac)).unwrap();
        assert!(!admin_down.up);

        // No 6-byte address (a tunnel): zeros. Too short for ifinfomsg: nothing.
        let tun = parse_link(&link_payload(5, IFF_UP, "tun0", &[10, 0, 0, 1])).unwrap();
        assert_eq!(tun.mac, [0; 6]);
        assert_eq!(parse_link(&[0; 8]), None);
    }

    #[test]
    fn addresses_prefer_local_and_honour_ifa_flags() {
        let ptp = addr_payload(
            3,
            32,
            0,
            &[
                attr(IFA_ADDRESS, &[10, 0, 0, 2]),
                attr(IFA_LOCAL, &[10, 0, 0, 1]),
            ],
        );
        let e = parse_addr(&ptp).unwrap();
        assert_eq!(e.addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((e.index, e.prefix, e.secondary), (3, 32, false));

        let v6 = {
            let mut p = ifaddrmsg(libc::AF_INET6 as u8, 64, 0, 3).to_vec();
            p.extend(attr(IFA_ADDRESS, &Ipv6Addr::LOCALHOST.octets()));
            p
        };
        assert_eq!(
            parse_addr(&v6).unwrap().addr,
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );

        // IFA_FLAGS wins over the 8-bit field.
        let secondary = addr_payload(
            3,
            24,
            0,
            &[
                attr(IFA_LOCAL, &[10, 0, 0, 5]),
                attr(IFA_FLAGS, &IFA_F_SECONDARY.to_ne_bytes()),
            ],
        );
        assert!(parse_addr(&secondary).unwrap().secondary);
        let by_field = addr_payload(
            3,
            24,
            IFA_F_SECONDARY as u8,
            &[attr(IFA_LOCAL, &[1, 2, 3, 4])],
        );
        assert!(parse_addr(&by_field).unwrap().secondary);

        // No address at all, a malformed one, or a truncated header: skipped.
        assert_eq!(parse_addr(&addr_payload(3, 24, 0, &[])), None);
        assert_eq!(
            parse_addr(&addr_payload(3, 24, 0, &[attr(IFA_LOCAL, &[1, 2, 3])])),
            None
        );
        assert_eq!(parse_addr(&[0; 4]), None);
    }

    #[test]
    fn primaries_come_first_in_kernel_order() {
        let e = |last: u8, prefix: u8, index: u32, secondary: bool| AddrEntry {
            index,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            prefix,
            secondary,
        };
        let v6 = AddrEntry {
            index: 1,
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
            secondary: false,
        };
        let entries = [
            e(5, 24, 1, true),
            e(1, 24, 1, false),
            e(9, 24, 2, false),
            v6,
            e(6, 24, 1, true),
            e(46, 32, 1, false),
        ];
        let a = |last: u8| Ipv4Addr::new(10, 0, 0, last);
        assert_eq!(
            primary_first_v4(&entries, 1),
            vec![(a(1), 24), (a(46), 32), (a(5), 24), (a(6), 24)]
        );
        assert_eq!(primary_first_v4(&entries, 3), vec![]);
    }

    #[test]
    fn replies_end_on_ack_done_or_error() {
        let mut seen = Vec::new();
        let mut on = |m: &Message<'_>| seen.push((m.kind, m.seq));

        // Data then the acknowledgement, with a stale answer to an older request skipped.
        let mut d = message(RTM_NEWLINK, 0, 6, &[0; 4]);
        d.extend(message(RTM_NEWLINK, 0, 7, &[0; 4]));
        d.extend(message(NLMSG_ERROR, 0, 7, &error_payload(0)));
        assert_eq!(process_reply(&d, 7, &mut on).unwrap(), Progress::Finished);

        // A dump part without the end, then NLMSG_DONE alone.
        let part = message(RTM_NEWADDR, 0x2, 8, &[0; 8]);
        assert_eq!(process_reply(&part, 8, &mut on).unwrap(), Progress::More);
        let done = message(NLMSG_DONE, 0, 8, &0i32.to_ne_bytes());
        assert_eq!(
            process_reply(&done, 8, &mut on).unwrap(),
            Progress::Finished
        );
        assert_eq!(seen, vec![(RTM_NEWLINK, 7), (RTM_NEWADDR, 8)]);

        let mut ignore = |_: &Message<'_>| {};
        let exists = message(NLMSG_ERROR, 0, 9, &error_payload(libc::EEXIST));
        match process_reply(&exists, 9, &mut ignore) {
            Err(Failure::Kernel { errno, detail }) => {
                assert_eq!((errno, detail), (libc::EEXIST, None));
            }
            other => panic!("expected EEXIST, got {other:?}"),
        }

        // A dump that failed half-way.
        let failed = message(NLMSG_DONE, 0, 10, &(-libc::EINTR).to_ne_bytes());
        assert!(matches!(
            process_reply(&failed, 10, &mut ignore),
            Err(Failure::Kernel {
                errno: libc::EINTR,
                ..
            })
        ));

        // Garbage is an error, not a panic.
        assert!(matches!(
            process_reply(&[1, 2, 3, 4, 5], 10, &mut ignore),
            Err(Failure::Io(_))
        ));
        let truncated_error = message(NLMSG_ERROR, 0, 11, &[1, 2]);
        assert!(matches!(
            process_reply(&truncated_error, 11, &mut ignore),
            Err(Failure::Io(_))
        ));
    }

    #[test]
    fn extended_ack_text_is_reported() {
        let mut p = error_payload(libc::EINVAL);
        p.extend(attr(NLMSGERR_ATTR_MSG, b"Invalid prefix length\0"));
        let capped = message(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 3, &p);
        let f = process_reply(&capped, 3, &mut |_| {}).unwrap_err();
        let e = f.into_io("adding 10.0.0.1/33 to interface #2");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.starts_with("adding 10.0.0.1/33 to interface #2: "),
            "{text}"
        );
        assert!(text.contains("(Invalid prefix length)"), "{text}");

        // Not capped: the whole request is echoed before the attributes.
        let mut echoed = (-libc::EINVAL).to_ne_bytes().to_vec();
        let request = Request::new(RTM_NEWADDR, 0).fixed(&[0; 8]).finish(4);
        echoed.extend_from_slice(&request);
        echoed.extend(attr(NLMSGERR_ATTR_MSG, b"nope\0"));
        let full = message(NLMSG_ERROR, NLM_F_ACK_TLVS, 4, &echoed);
        match process_reply(&full, 4, &mut |_| {}) {
            Err(Failure::Kernel { detail, .. }) => assert_eq!(detail.as_deref(), Some("nope")),
            other => panic!("expected a kernel error, got {other:?}"),
        }

        // An echoed length pointing past the end: no text, no panic.
        let mut lying = (-libc::EINVAL).to_ne_bytes().to_vec();
        lying.extend_from_slice(&u32::MAX.to_ne_bytes());
        let lie = message(NLMSG_ERROR, NLM_F_ACK_TLVS, 5, &lying);
        assert!(matches!(
            process_reply(&lie, 5, &mut |_| {}),
            Err(Failure::Kernel { detail: None, .. })
        ));
    }

    #[test]
    fn permission_errors_say_what_to_do() {
        let e = Failure::Kernel {
            errno: libc::EPERM,
            detail: None,
        }
        .into_io("adding 10.0.0.1/32 to interface #2");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
    }

    #[test]
    fn prefix_lengths_are_checked() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert!(check_prefix(v4, 32).is_ok());
        assert_eq!(
            check_prefix(v4, 33).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(check_prefix(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).is_ok());
    }
}

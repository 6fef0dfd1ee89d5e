//! VRRP wire formats: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) adverts, the IPv4 header
//! keepalived puts around them, and the gratuitous ARP frame.
//!
//! # The two formats
//!
//! Both start with the same 8-byte header: version (high nibble) and type (low nibble, 1 =
//! advertisement, the only type), VRID, priority, the number of addresses, then:
//!
//! * **v2**: auth type (1 byte; 0 none, 1 simple password, 2 IP AH), the advert interval in
//!   whole seconds (1 byte), the checksum; then `n` IPv4 addresses and 8 bytes of
//!   authentication data (the password, NUL-padded). The checksum covers the VRRP message
//!   only; there is no pseudo-header.
//! * **v3**: 4 reserved bits and a 12-bit *max* advert interval in centiseconds, the
//!   checksum; then `n` IPv4 or IPv6 addresses, no authentication. The checksum covers an
//!   IPv4 (12 bytes) or IPv6 (40 bytes) pseudo-header followed by the message, so it depends
//!   on the source and destination addresses of the IP packet (the multicast group, or the
//!   unicast peer).
//!
//! # Receiving
//!
//! [`Advert::decode`] runs every check the RFCs ask of a receiver, in the RFCs' order, and
//! reports the first failure as a [`DropReason`] (one counter per reason, see
//! [`DropCounters`]): IP TTL / hop limit 255, version, type, length vs address count,
//! checksum, VRID, (v2) auth type and password, (v2) advert interval equal to ours,
//! optionally the address list. A v3 interval that differs from ours is *not* a drop: the
//! state machine learns it (Master_Adver_Interval).
//!
//! Trailing bytes after the message (Ethernet padding seen by a link-layer reader) are
//! ignored; checksums cover the message as its address count defines it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum;

/// IP protocol number / IPv6 next header of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The only TTL / hop limit a VRRP advert may carry (it proves the advert was not routed).
pub const VRRP_TTL: u8 = 255;
/// IPv4 multicast group of VRRP.
pub const MCAST_ADDR_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP.
pub const MCAST_ADDR_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Ethernet address of 224.0.0.18.
pub const MCAST_MAC_V4: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// Ethernet address of ff02::12.
pub const MCAST_MAC_V6: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x12];
/// The TOS byte keepalived sends (DSCP CS6); the RFCs leave it open.
pub const VRRP_TOS: u8 = 0xc0;
/// Length of the header common to v2 and v3.
pub const HEADER_LEN: usize = 8;
/// Length of the v2 authentication data.
pub const AUTH_LEN: usize = 8;
/// Largest v3 advert interval, in centiseconds (12 bits).
pub const MAX_V3_INTERVAL_CS: u16 = 0x0fff;
/// v2 auth type: none.
pub const AUTH_TYPE_NONE: u8 = 0;
/// v2 auth type: simple text password (RFC 2338; still spoken by keepalived).
pub const AUTH_TYPE_PASS: u8 = 1;
/// v2 auth type: IP Authentication Header (RFC 2338; not supported by memha).
pub const AUTH_TYPE_AH: u8 = 2;
/// The advertisement type, the only one defined.
pub const TYPE_ADVERT: u8 = 1;

// ===== Version =====

/// VRRP version of a virtual router; the two do not interoperate on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in seconds, optional simple password.
    V2,
    /// RFC 5798: IPv4 or IPv6, interval in centiseconds, no authentication.
    V3,
}

impl Version {
    /// The number in the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

// ===== Auth =====

/// The v2 authentication fields (v3 has none: always [`Auth::None`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0, 8 zero bytes.
    None,
    /// Auth type 1: the password, NUL-padded to 8 bytes.
    Password([u8; AUTH_LEN]),
    /// Any other type (2 = AH), kept as received so it can be reported; never sent.
    Other { auth_type: u8, data: [u8; AUTH_LEN] },
}

impl Auth {
    /// A simple password as keepalived puts it on the wire: cut to 8 bytes, NUL-padded.
    pub fn password(pass: &[u8]) -> Auth {
        let mut data = [0u8; AUTH_LEN];
        let n = pass.len().min(AUTH_LEN);
        data[..n].copy_from_slice(&pass[..n]);
        Auth::Password(data)
    }

    /// The auth type byte.
    pub fn auth_type(&self) -> u8 {
        match self {
            Auth::None => AUTH_TYPE_NONE,
            Auth::Password(_) => AUTH_TYPE_PASS,
            Auth::Other { auth_type, .. } => *auth_type,
        }
    }

    /// The 8 authentication-data bytes.
    pub fn data(&self) -> [u8; AUTH_LEN] {
        match self {
            Auth::None => [0; AUTH_LEN],
            Auth::Password(d) | Auth::Other { data: d, .. } => *d,
        }
    }
}

// ===== Advert =====

/// One VRRP advertisement, either version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    /// 1..=255.
    pub vrid: u8,
    /// 0 = the master resigns, 1..=254 normal, 255 = address owner.
    pub priority: u8,
    /// The interval field as on the wire: whole seconds for v2 (1 byte), centiseconds for v3
    /// (12 bits). [`Advert::interval_cs`] gives centiseconds for both.
    pub adver_int: u16,
    /// v2 only; [`Auth::None`] for v3.
    pub auth: Auth,
    /// The virtual addresses: IPv4 for v2; one family (the IP packet's) for v3.
    pub addrs: Vec<IpAddr>,
}

/// Why an advert could not be encoded (a configuration the wire cannot express).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// No address, or more than 255.
    AddressCount,
    /// An address (or the source/destination) is not of the packet's family, or v2 with
    /// IPv6.
    AddressFamily,
    /// v2: 1..=255 seconds; v3: 1..=4095 centiseconds.
    Interval,
    /// VRID 0.
    Vrid,
    /// Authentication on a v3 advert, or an auth type memha does not send.
    Auth,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::AddressCount => "a VRRP advert carries 1 to 255 addresses",
            EncodeError::AddressFamily => "addresses of a VRRP advert must match the IP family",
            EncodeError::Interval => "advert interval out of range for this VRRP version",
            EncodeError::Vrid => "VRID 0 is not valid",
            EncodeError::Auth => "authentication is VRRPv2 only, and only PASS is sent",
        })
    }
}

impl std::error::Error for EncodeError {}

/// What the IP layer says about a received advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Source address of the IP packet (the sender's primary address).
    pub src: IpAddr,
    /// Destination address of the IP packet (the group, or us in unicast mode); part of the
    /// v3 pseudo-header.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit (`IP_RECVTTL` / `IPV6_RECVHOPLIMIT`).
    pub ttl: u8,
}

/// What a virtual router expects of the adverts it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxCheck {
    pub version: Version,
    pub vrid: u8,
    /// v2: the auth type and password adverts must carry (ignored for v3).
    pub auth: Auth,
    /// v2: the interval in seconds adverts must carry (a v3 interval is learnt instead).
    pub adver_int: u16,
    /// When set, adverts (other than the owner's, priority 255) must list exactly these
    /// addresses, in any order (RFC MAY; keepalived checks by default).
    pub vips: Option<Vec<IpAddr>>,
}

/// Why a received packet was dropped. One counter per reason ([`DropCounters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 8-byte VRRP header.
    TooShort,
    /// A malformed IPv4 header around the advert (IHL, total length, version).
    IpHeader,
    /// The IP protocol is not 112.
    NotVrrp,
    /// TTL / hop limit other than 255: the packet was routed.
    Ttl,
    /// Not the version this router speaks (also v2 over IPv6).
    Version,
    /// Type other than 1 (advertisement).
    Type,
    /// Address count 0.
    NoAddresses,
    /// The packet is shorter than its address count (and v2 auth data) require.
    Length,
    /// Checksum mismatch.
    Checksum,
    /// A VRID not configured here.
    Vrid,
    /// v2: auth type differs from ours.
    AuthType,
    /// v2: password differs from ours.
    AuthPassword,
    /// v2: advert interval differs from ours (keepalived drops it too); v3: interval 0.
    Interval,
    /// The advertised address list differs from ours (sender not the owner).
    AddressList,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::TooShort,
        DropReason::IpHeader,
        DropReason::NotVrrp,
        DropReason::Ttl,
        DropReason::Version,
        DropReason::Type,
        DropReason::NoAddresses,
        DropReason::Length,
        DropReason::Checksum,
        DropReason::Vrid,
        DropReason::AuthType,
        DropReason::AuthPassword,
        DropReason::Interval,
        DropReason::AddressList,
    ];

    /// A stable label for metrics (`memha_vrrp_dropped_total{reason="checksum"}`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::IpHeader => "ip_header",
            DropReason::NotVrrp => "not_vrrp",
            DropReason::Ttl => "ttl",
            DropReason::Version => "version",
            DropReason::Type => "type",
            DropReason::NoAddresses => "no_addresses",
            DropReason::Length => "length",
            DropReason::Checksum => "checksum",
            DropReason::Vrid => "vrid",
            DropReason::AuthType => "auth_type",
            DropReason::AuthPassword => "auth_password",
            DropReason::Interval => "interval",
            DropReason::AddressList => "address_list",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL")
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The "packets dropped by reason" counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    pub fn record(&mut self, reason: DropReason) {
        self.counts[reason.index()] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

fn addr_len(v6: bool) -> usize {
    if v6 {
        16
    } else {
        4
    }
}

/// Sum of the v3 pseudo-header (RFC 5798 §5.2.8: the IPv4 / IPv6 upper-layer pseudo-header).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> Option<u32> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ph = [0u8; 12];
            ph[0..4].copy_from_slice(&s.octets());
            ph[4..8].copy_from_slice(&d.octets());
            ph[9] = IPPROTO_VRRP;
            ph[10..12].copy_from_slice(&(len as u16).to_be_bytes());
            Some(checksum::sum(&ph, 0))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ph = [0u8; 40];
            ph[0..16].copy_from_slice(&s.octets());
            ph[16..32].copy_from_slice(&d.octets());
            ph[32..36].copy_from_slice(&(len as u32).to_be_bytes());
            ph[39] = IPPROTO_VRRP;
            Some(checksum::sum(&ph, 0))
        }
        _ => None,
    }
}

impl Advert {
    /// The advert interval in centiseconds, whatever the version.
    pub fn interval_cs(&self) -> u32 {
        match self.version {
            Version::V2 => u32::from(self.adver_int) * 100,
            Version::V3 => u32::from(self.adver_int),
        }
    }

    /// Length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let v6 = self.addrs.first().is_some_and(IpAddr::is_ipv6);
        let auth = if self.version == Version::V2 {
            AUTH_LEN
        } else {
            0
        };
        HEADER_LEN + self.addrs.len() * addr_len(v6) + auth
    }

    /// Encodes the advert; `src` and `dst` are the IP packet's addresses (used by the v3
    /// pseudo-header checksum; for v2 only their family is checked).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(src, dst, &mut out)?;
        Ok(out)
    }

    /// [`Advert::encode`], appending to `out` (nothing is appended on error).
    pub fn encode_into(
        &self,
        src: IpAddr,
        dst: IpAddr,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if self.vrid == 0 {
            return Err(EncodeError::Vrid);
        }
        if self.addrs.is_empty() || self.addrs.len() > 255 {
            return Err(EncodeError::AddressCount);
        }
        let v6 = src.is_ipv6();
        if dst.is_ipv6() != v6 || self.addrs.iter().any(|a| a.is_ipv6() != v6) {
            return Err(EncodeError::AddressFamily);
        }
        let (interval_ok, auth_ok) = match self.version {
            Version::V2 => (
                (1..=255).contains(&self.adver_int),
                matches!(self.auth, Auth::None | Auth::Password(_)),
            ),
            Version::V3 => (
                (1..=MAX_V3_INTERVAL_CS).contains(&self.adver_int),
                self.auth == Auth::None,
            ),
        };
        if self.version == Version::V2 && v6 {
            return Err(EncodeError::AddressFamily);
        }
        if !interval_ok {
            return Err(EncodeError::Interval);
        }
        if !auth_ok {
            return Err(EncodeError::Auth);
        }

        let start = out.len();
        out.push((self.version.number() << 4) | TYPE_ADVERT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(self.addrs.len() as u8);
        match self.version {
            Version::V2 => {
                out.push(self.auth.auth_type());
                out.push(self.adver_int as u8);
            }
            Version::V3 => out.extend_from_slice(&self.adver_int.to_be_bytes()),
        }
        out.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.auth.data());
        }
        let msg = &out[start..];
        let initial = match self.version {
            Version::V2 => 0,
            Version::V3 => pseudo_header_sum(src, dst, msg.len()).expect("families checked"),
        };
        let c = checksum::finish(checksum::sum(msg, initial));
        out[start + 6..start + 8].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }

    /// Decodes and validates a received VRRP message (the IP payload), as a router with the
    /// expectations `check` would. The first failed check, in the RFCs' order, is returned.
    pub fn decode(buf: &[u8], meta: &RxMeta, check: &RxCheck) -> Result<Advert, DropReason> {
        if buf.len() < HEADER_LEN {
            return Err(DropReason::TooShort);
        }
        if meta.ttl != VRRP_TTL {
            return Err(DropReason::Ttl);
        }
        let version = match buf[0] >> 4 {
            2 if check.version == Version::V2 && meta.src.is_ipv4() => Version::V2,
            3 if check.version == Version::V3 => Version::V3,
            _ => return Err(DropReason::Version),
        };
        if buf[0] & 0x0f != TYPE_ADVERT {
            return Err(DropReason::Type);
        }
        let count = usize::from(buf[3]);
        if count == 0 {
            return Err(DropReason::NoAddresses);
        }
        let v6 = meta.src.is_ipv6();
        let auth_len = if version == Version::V2 { AUTH_LEN } else { 0 };
        let msg_len = HEADER_LEN + count * addr_len(v6) + auth_len;
        if buf.len() < msg_len {
            return Err(DropReason::Length);
        }
        let msg = &buf[..msg_len];
        let initial = match version {
            Version::V2 => 0,
            // src and dst of one received IP packet are of one family; a caller that mixes
            // them gets a checksum failure rather than a panic.
            Version::V3 => {
                pseudo_header_sum(meta.src, meta.dst, msg_len).ok_or(DropReason::Checksum)?
            }
        };
        if checksum::finish(checksum::sum(msg, initial)) != 0 {
            return Err(DropReason::Checksum);
        }
        let vrid = msg[1];
        if vrid != check.vrid {
            return Err(DropReason::Vrid);
        }
        let priority = msg[2];
        let addr_end = HEADER_LEN + count * addr_len(v6);
        let (auth, adver_int) = match version {
            Version::V2 => {
                let mut data = [0u8; AUTH_LEN];
                data.copy_from_slice(&msg[addr_end..]);
                let auth = match msg[4] {
                    AUTH_TYPE_NONE => Auth::None,
                    AUTH_TYPE_PASS => Auth::Password(data),
                    t => Auth::Other { auth_type: t, data },
                };
                if auth.auth_type() != check.auth.auth_type() {
                    return Err(DropReason::AuthType);
                }
                // Type 0: RFC 3768 says ignore the data. Type 1: the 8 bytes must match.
                if let (Auth::Password(got), Auth::Password(want)) = (auth, check.auth) {
                    if got != want {
                        return Err(DropReason::AuthPassword);
                    }
                }
                let int = u16::from(msg[5]);
                if int != check.adver_int {
                    return Err(DropReason::Interval);
                }
                (auth, int)
            }
            Version::V3 => {
                let int = u16::from_be_bytes([msg[4], msg[5]]) & MAX_V3_INTERVAL_CS;
                if int == 0 {
                    return Err(DropReason::Interval);
                }
                (Auth::None, int)
            }
        };
        let addrs: Vec<IpAddr> = msg[HEADER_LEN..addr_end]
            .chunks_exact(addr_len(v6))
            .map(|c| match c.len() {
                4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                _ => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
            })
            .collect();
        if let Some(vips) = &check.vips {
            if priority != 255 && !same_set(&addrs, vips) {
                return Err(DropReason::AddressList);
            }
        }
        Ok(Advert {
            version,
            vrid,
            priority,
            adver_int,
            auth,
            addrs,
        })
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

// ===== IPv4 header =====

/// The IPv4 header keepalived sends in front of an advert (for an `IP_HDRINCL` socket):
/// IHL 5, TOS 0xc0, the given identification, no DF, TTL 255, protocol 112, checksum filled.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, id: u16, payload_len: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = VRRP_TOS;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[8] = VRRP_TTL;
    h[9] = IPPROTO_VRRP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// Decodes an advert received on a raw IPv4 socket (which hands over the IP header too):
/// takes TTL, source and destination from the header, honours IHL > 5 (options) and the
/// total length (bytes beyond it are ignored), then [`Advert::decode`].
pub fn decode_ipv4(packet: &[u8], check: &RxCheck) -> Result<(RxMeta, Advert), DropReason> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return Err(DropReason::IpHeader);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < 20 || total < ihl || total > packet.len() {
        return Err(DropReason::IpHeader);
    }
    if packet[9] != IPPROTO_VRRP {
        return Err(DropReason::NotVrrp);
    }
    let meta = RxMeta {
        src: IpAddr::V4(Ipv4Addr::new(
            packet[12], packet[13], packet[14], packet[15],
        )),
        dst: IpAddr::V4(Ipv4Addr::new(
            packet[16], packet[17], packet[18], packet[19],
        )),
        ttl: packet[8],
    };
    let advert = Advert::decode(&packet[ihl..total], &meta, check)?;
    Ok((meta, advert))
}

// ===== Ethernet / ARP =====

/// Length of a gratuitous ARP frame (14 Ethernet + 28 ARP; a NIC pads it to 60).
pub const GARP_FRAME_LEN: usize = 42;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;

/// The VRRP virtual MAC of an IPv4 virtual router: 00:00:5e:00:01:{VRID}.
pub fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// The VRRP virtual MAC of an IPv6 virtual router: 00:00:5e:00:02:{VRID}.
pub fn virtual_mac_v6(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x02, vrid]
}

/// A gratuitous ARP for `vip`, as keepalived sends it: Ethernet broadcast from `mac`, ARP
/// request (opcode 1) with sender = (`mac`, `vip`), target = (ff:ff:ff:ff:ff:ff, `vip`).
///
/// `mac` is the interface's own MAC (keepalived's default) or [`virtual_mac`] (RFC, with a
/// macvlan carrying it). Linux hosts update an existing neighbour entry from it at once.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes()); // protocol type: IPv4
    f[18] = 6; // hardware address length
    f[19] = 4; // protocol address length
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // opcode: request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

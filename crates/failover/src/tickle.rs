//! Resetting the clients of a master that went silent: *tickle ACKs*.
//!
//! When this node takes a virtual address over from a master that stopped answering
//! (partition, link down, power loss), the clients' TCP connections to that master are dead
//! but the clients do not know: a pooled client's request waits for its TCP retransmission
//! timer (200 ms at the least on Linux) before the resent segment reaches this node, which
//! answers it with an RST. The peers tell each other their client connections
//! (`memha_repl::clients`), so at the takeover this node sends each of the silent master's
//! clients a bare TCP ACK from the virtual address, with sequence and acknowledgement
//! numbers 0. They are outside the connection's window, so the client's kernel answers with
//! an ACK that carries its real numbers (RFC 793 / RFC 5961 §4: an unacceptable segment is
//! answered with an ACK). That ACK reaches this node, where no such connection exists, and
//! the kernel answers it with an RST whose sequence number is the one the client expects;
//! the client accepts it, its connection is reset, and it reconnects — to this node. It all
//! takes one round trip instead of a retransmission timeout.
//!
//! The packets are built here (pure, tested) and sent on an `IPPROTO_RAW` socket, which only
//! sends, so nothing is ever queued on it.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use memha_vrrp::checksum;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Length of a tickle: an IPv4 header and a TCP header, no options, no data.
pub const TICKLE_LEN: usize = 40;

const IPPROTO_TCP: u8 = 6;
const TTL: u8 = 64;
/// TCP flags: ACK only.
const ACK: u8 = 0x10;

/// The tickle from `server` (the virtual address and the service port) to `client`.
pub fn tickle_packet(server: SocketAddrV4, client: SocketAddrV4) -> [u8; TICKLE_LEN] {
    let mut p = [0u8; TICKLE_LEN];
    // IPv4 header: version 4, IHL 5, total length 40, DF, TTL 64, protocol TCP.
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(TICKLE_LEN as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = TTL;
    p[9] = IPPROTO_TCP;
    p[12..16].copy_from_slice(&server.ip().octets());
    p[16..20].copy_from_slice(&client.ip().octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    // TCP header: ports, seq 0, ack 0, data offset 5, ACK, a window, checksum.
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&server.port().to_be_bytes());
    t[2..4].copy_from_slice(&client.port().to_be_bytes());
    t[12] = 5 << 4;
    t[13] = ACK;
    t[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let c = tcp_checksum(*server.ip(), *client.ip(), t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    p
}

/// The TCP checksum over the IPv4 pseudo-header and `segment` (checksum field zero).
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..12].copy_from_slice(&(segment.len() as u16).to_be_bytes());
    checksum::finish(checksum::sum(segment, checksum::sum(&pseudo, 0)))
}

/// A send-only raw socket for whole IPv4 packets (`IPPROTO_RAW` implies `IP_HDRINCL`).
pub struct TickleSocket {
    socket: Socket,
}

impl TickleSocket {
    /// # Errors
    ///
    /// Without root or `CAP_NET_RAW`, a `PermissionDenied` that says so.
    pub fn open() -> io::Result<TickleSocket> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking(),
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "opening a raw socket to reset clients' connections at a takeover: \
                     permission denied; memha's VRRP speaker needs root or CAP_NET_RAW",
                )
            } else {
                io::Error::new(
                    e.kind(),
                    format!("opening a raw socket to reset clients' connections: {e}"),
                )
            }
        })?;
        Ok(TickleSocket { socket })
    }

    /// Sends the tickle for one connection; routed like any packet to the client.
    pub fn send(&self, server: SocketAddrV4, client: SocketAddrV4) -> io::Result<()> {
        let pkt = tickle_packet(server, client);
        let dst = SockAddr::from(SocketAddrV4::new(*client.ip(), 0));
        loop {
            match self.socket.send_to(&pkt, &dst) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickle_is_a_bare_ack_with_valid_checksums() {
        let server: SocketAddrV4 = "10.99.0.46:11211".parse().unwrap();
        let client: SocketAddrV4 = "10.99.0.9:40312".parse().unwrap();
        let p = tickle_packet(server, client);
        // IPv4 header checksum verifies to zero.
        assert_eq!(checksum::checksum(&p[..20]), 0);
        assert_eq!(&p[12..16], &[10, 99, 0, 46]);
        assert_eq!(&p[16..20], &[10, 99, 0, 9]);
        assert_eq!(p[9], 6);
        // TCP: ports, seq 0, ack 0, ACK only, and a checksum that verifies.
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 11211);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 40312);
        assert_eq!(&p[24..32], &[0; 8]);
        assert_eq!(p[33], 0x10);
        assert_eq!(
            tcp_checksum(*server.ip(), *client.ip(), &p[20..]),
            0,
            "the checksum over the filled-in segment verifies"
        );
    }

    #[test]
    fn the_tcp_checksum_matches_a_known_segment() {
        // A SYN 192.168.0.1:1234 -> 192.168.0.2:80, seq 1, window 512, summed by hand:
        // pseudo-header c0a8+0001+c0a8+0002+0006+0014 = 0x1816d,
        // segment 04d2+0050+0000+0001+5002+0200 = 0x5725; total 0x1d892,
        // folded 0xd893, complemented 0x276c.
        let mut seg = [0u8; 20];
        seg[0..2].copy_from_slice(&1234u16.to_be_bytes());
        seg[2..4].copy_from_slice(&80u16.to_be_bytes());
        seg[4..8].copy_from_slice(&1u32.to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = 0x02;
        seg[14..16].copy_from_slice(&512u16.to_be_bytes());
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 0, 2);
        let c = tcp_checksum(src, dst, &seg);
        assert_eq!(c, 0x276c);
    }
}

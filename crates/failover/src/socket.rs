//! The two sockets VRRP needs on an interface: a raw IPv4 socket for protocol 112
//! ([`VrrpSocket`], adverts in and out) and an `AF_PACKET` socket for gratuitous ARPs
//! ([`ArpSocket`]).
//!
//! Both are non-blocking, for the speaker's `poll` loop, and both are tied to one interface,
//! so an advert is sent and accepted only where its virtual router lives, whatever the
//! routing table says. Both need root or `CAP_NET_RAW`; errors say so, and name the
//! interface.
//!
//! # Adverts
//!
//! The socket is opened with `IP_HDRINCL`: the caller builds the IPv4 header itself
//! ([`memha_vrrp::packet::ipv4_header`]) so that the TTL is 255 and the TOS 0xc0 whatever
//! the socket defaults are, and the source is the address the advert's v3 checksum was
//! computed over. On receive, a raw socket hands over the whole IP packet, header
//! included, which [`memha_vrrp::packet::decode_ipv4`] expects.
//!
//! Multicast: the socket joins 224.0.0.18 on its interface only when asked (unicast
//! peers need no group), sends to the group through its interface, never sees its own
//! adverts looped back, and — `IP_MULTICAST_ALL` off — only sees groups it joined itself,
//! not those another socket of this host joined.
//!
//! # Gratuitous ARP
//!
//! The ARP socket only sends: it is opened with protocol 0, so the kernel never queues
//! received frames on it, and each frame goes out with an explicit link-layer destination
//! (broadcast, EtherType ARP) on the interface it is bound to.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use memha_vrrp::packet::{ETH_P_ARP, IPPROTO_VRRP, MCAST_ADDR_V4};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::netlink::Link;

/// Turns a failed setup step into an error that says what to do about it.
fn setup_error(e: io::Error, what: &str, link: &Link) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} on interface {:?}: permission denied; memha's VRRP speaker needs \
                 root or CAP_NET_RAW",
                link.name
            ),
        ),
        Some(libc::ENODEV | libc::ENXIO) => io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{what}: there is no interface {:?} (index {}); check the interface in the \
                 configuration (`ip link` lists them)",
                link.name, link.index
            ),
        ),
        _ => io::Error::new(
            e.kind(),
            format!("{what} on interface {:?}: {e}", link.name),
        ),
    }
}

/// Errors a raw socket reports for an ICMP error about an *earlier* packet (the peer or
/// its network unreachable). They say nothing about the current call, so it is retried.
fn is_deferred_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

// ===== VrrpSocket =====

/// Raw IPv4 socket for protocol 112 on one interface, see the module docs.
pub struct VrrpSocket {
    socket: Socket,
    interface: String,
}

impl VrrpSocket {
    /// Opens the socket on `link`; with `join_multicast`, joins 224.0.0.18 there.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` without root or `CAP_NET_RAW`; `NotFound` (naming the interface)
    /// if the interface does not exist.
    pub fn open(link: &Link, join_multicast: bool) -> io::Result<VrrpSocket> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking(),
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(|e| setup_error(e, "opening a raw socket for VRRP (IP protocol 112)", link))?;
        socket
            .bind_device(Some(link.name.as_bytes()))
            .map_err(|e| setup_error(e, "binding the VRRP socket (SO_BINDTODEVICE)", link))?;
        socket
            .set_header_included_v4(true)
            .map_err(|e| setup_error(e, "setting IP_HDRINCL on the VRRP socket", link))?;
        socket
            .set_multicast_loop_v4(false)
            .map_err(|e| setup_error(e, "turning multicast loop off on the VRRP socket", link))?;
        socket
            .set_multicast_all_v4(false)
            .map_err(|e| setup_error(e, "turning IP_MULTICAST_ALL off on the VRRP socket", link))?;
        set_multicast_if_index(&socket, link.index).map_err(|e| {
            setup_error(
                e,
                "choosing the multicast interface of the VRRP socket",
                link,
            )
        })?;
        if join_multicast {
            socket
                .join_multicast_v4_n(&MCAST_ADDR_V4, &InterfaceIndexOrAddress::Index(link.index))
                .map_err(|e| setup_error(e, "joining the VRRP group 224.0.0.18", link))?;
        }
        Ok(VrrpSocket {
            socket,
            interface: link.name.clone(),
        })
    }

    /// Sends one whole IPv4 packet (header included) to `dst`: 224.0.0.18 or a unicast peer.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if the interface's queue is full (the advert is lost; the next one
    /// follows an interval later), or whatever the kernel reports (no route to a unicast
    /// peer, a firewall rule), with the interface and destination named.
    pub fn send_to(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
        let mut deferred_retried = false;
        loop {
            match self.socket.send_to(packet, &addr) {
                Ok(n) if n == packet.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!(
                            "sending a VRRP advert to {dst} on {:?}: only {n} of {} bytes went out",
                            self.interface,
                            packet.len()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_deferred_icmp_error(&e) && !deferred_retried => {
                    tracing::debug!(interface = %self.interface, "earlier VRRP packet failed: {e}");
                    deferred_retried = true;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "sending a VRRP advert to {dst} on {:?}: {e}",
                            self.interface
                        ),
                    ))
                }
            }
        }
    }

    /// Receives one whole IPv4 packet, header included (as raw sockets deliver it), into
    /// `buf`, which should hold an MTU (a longer packet is cut, and its decoding then fails
    /// on the total length); `Ok(None)` when nothing is pending.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.socket).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_deferred_icmp_error(&e) => {
                    tracing::debug!(interface = %self.interface, "earlier VRRP packet failed: {e}");
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("receiving VRRP packets on {:?}: {e}", self.interface),
                    ))
                }
            }
        }
    }
}

/// `IP_MULTICAST_IF` by interface index (`struct ip_mreqn`): unlike the address form it
/// works on an interface that has no IPv4 address yet, and cannot pick the wrong interface
/// when two share an address.
fn set_multicast_if_index(socket: &Socket, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: mreqn lives across the call and the length is that of an ip_mreqn.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsRawFd for VrrpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

// ===== ArpSocket =====

/// Send-only `AF_PACKET` socket for gratuitous ARPs on one interface, see the module docs.
pub struct ArpSocket {
    fd: OwnedFd,
    index: u32,
    interface: String,
}

/// A `sockaddr_ll` on interface `index` for EtherType `protocol` (host order).
fn link_layer_addr(index: u32, protocol: u16, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = index as libc::c_int;
    if let Some(mac) = dst {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}

impl ArpSocket {
    /// Opens the socket and binds it to `link`.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` without root or `CAP_NET_RAW`; `NotFound` (naming the interface)
    /// if the interface does not exist.
    pub fn open(link: &Link) -> io::Result<ArpSocket> {
        // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(setup_error(
                io::Error::last_os_error(),
                "opening a packet socket for gratuitous ARP",
                link,
            ));
        }
        // SAFETY: fd is a freshly created descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Protocol 0 in the bind as in the socket: bound to the interface, receiving nothing.
        let addr = link_layer_addr(link.index, 0, None);
        // SAFETY: addr is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(setup_error(
                io::Error::last_os_error(),
                "binding the gratuitous ARP socket",
                link,
            ));
        }
        Ok(ArpSocket {
            fd,
            index: link.index,
            interface: link.name.clone(),
        })
    }

    /// Sends one whole Ethernet frame ([`memha_vrrp::packet::garp_frame`]) to
    /// ff:ff:ff:ff:ff:ff.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if the interface's queue is full (this ARP is lost; the caller's
    /// repeats cover it), or what the kernel reports, with the interface named.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let to = link_layer_addr(self.index, ETH_P_ARP, Some([0xff; 6]));
        loop {
            // SAFETY: frame and to are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("sending a gratuitous ARP on {:?}: {e}", self.interface),
                ));
            }
            if n as usize != frame.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "sending a gratuitous ARP on {:?}: only {n} of {} bytes went out",
                        self.interface,
                        frame.len()
                    ),
                ));
            }
            return Ok(());
        }
    }
}

impl AsRawFd for ArpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for ArpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            index: 7,
            name: "eth7".into(),
            mac: [0; 6],
            up: true,
        }
    }

    #[test]
    fn setup_errors_say_what_to_do() {
        let e = setup_error(
            io::Error::from_raw_os_error(libc::EPERM),
            "opening",
            &link(),
        );
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        assert!(e.to_string().contains("\"eth7\""), "{e}");

        let e = setup_error(
            io::Error::from_raw_os_error(libc::ENODEV),
            "binding",
            &link(),
        );
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("\"eth7\""), "{e}");
    }

    #[test]
    fn link_layer_address_is_in_network_order() {
        let a = link_layer_addr(7, ETH_P_ARP, Some([0xff; 6]));
        assert_eq!(a.sll_protocol.to_ne_bytes(), [0x08, 0x06]);
        assert_eq!(a.sll_ifindex, 7);
        assert_eq!(a.sll_halen, 6);
        assert_eq!(a.sll_addr[..6], [0xff; 6]);
    }
}

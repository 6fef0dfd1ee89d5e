//! memcached over UDP (`-U`): each datagram starts with an 8-byte frame header (request id,
//! sequence number, datagram count, reserved); the request must fit in one datagram and the
//! reply is cut into as many datagrams as needed, each with its own header.
//!
//! UDP is off by default, as in memcached since 1.5.6: it has no flow control and can be
//! used to amplify traffic towards a spoofed source. Turn it on only on a trusted network.

use std::sync::Arc;

use crate::session::{Control, Session};
use crate::shared::{unix_now, Shared, Stop};

/// Largest datagram memha sends, header included (memcached's UDP_MAX_PAYLOAD_SIZE).
pub const MAX_DATAGRAM: usize = 1400;
const HEADER: usize = 8;
/// A reply needing more datagrams than the 16-bit count allows is dropped.
const MAX_REPLY: usize = (MAX_DATAGRAM - HEADER) * u16::MAX as usize;

/// Handle one UDP request datagram (header included); returns the reply datagrams.
pub fn handle_datagram(shared: &Arc<Shared>, datagram: &[u8], now: u32) -> Vec<Vec<u8>> {
    if datagram.len() < HEADER {
        return Vec::new();
    }
    let (header, body) = datagram.split_at(HEADER);
    let request_id = [header[0], header[1]];
    // Multi-datagram requests are not supported (memcached refuses them too).
    if u16::from_be_bytes([header[4], header[5]]) > 1 {
        return Vec::new();
    }
    let mut session = Session::new(shared.clone());
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (consumed, control) = session.process(&body[pos..], &mut out, now);
        pos += consumed;
        if control != Control::Yield || out.len() > MAX_REPLY {
            break;
        }
    }
    session.counters.bytes_read += datagram.len() as u64;
    if out.is_empty() || out.len() > MAX_REPLY {
        shared.stats.absorb(&mut session.counters);
        return Vec::new();
    }
    let chunks: Vec<&[u8]> = out.chunks(MAX_DATAGRAM - HEADER).collect();
    let total = chunks.len() as u16;
    let datagrams: Vec<Vec<u8>> = chunks
        .into_iter()
        .enumerate()
        .map(|(seq, chunk)| {
            let mut d = Vec::with_capacity(HEADER + chunk.len());
            d.extend_from_slice(&request_id);
            d.extend_from_slice(&(seq as u16).to_be_bytes());
            d.extend_from_slice(&total.to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(chunk);
            d
        })
        .collect();
    session.counters.bytes_written += datagrams.iter().map(|d| d.len() as u64).sum::<u64>();
    shared.stats.absorb(&mut session.counters);
    datagrams
}

/// Serve one UDP socket until the process stops.
pub async fn serve(socket: tokio::net::UdpSocket, shared: Arc<Shared>) {
    let mut stop = shared.stop_signal();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stop.changed() => {
                if *stop.borrow() != Stop::Running { return; }
                continue;
            }
        };
        let Ok((n, peer)) = received else { continue };
        let now = unix_now() as u32;
        for d in handle_datagram(&shared, &buf[..n], now) {
            if socket.send_to(&d, peer).await.is_err() {
                break;
            }
        }
    }
}

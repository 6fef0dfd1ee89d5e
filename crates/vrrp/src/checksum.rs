//! The Internet checksum of RFC 1071: the 16-bit one's complement of the one's-complement
//! sum of the data taken as big-endian 16-bit words (an odd last byte is padded with zero).
//!
//! Used by VRRPv2 (over the VRRP message alone), VRRPv3 (over a pseudo-header followed by
//! the message) and the IPv4 header.

/// Adds `data` to a running one's-complement sum (not yet folded or complemented).
///
/// Sums may be chained (`sum(b, sum(a, 0))`) as long as every part but the last has an even
/// length, which is the case for the pseudo-headers used here.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// Folds carries back into the low 16 bits.
fn fold(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Finishes a running sum: the value to put in a checksum field.
pub fn finish(sum: u32) -> u16 {
    !(fold(u64::from(sum)) as u16)
}

/// The checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 (after folding).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_and_verification() {
        let mut data = vec![0x12, 0x34, 0x00, 0x00, 0x56, 0x78, 0x9a];
        let c = checksum(&data);
        data[2..4].copy_from_slice(&c.to_be_bytes());
        // A message with its checksum in place sums to 0xffff, i.e. checksums to 0.
        assert_eq!(checksum(&data), 0);
        assert_eq!(checksum(&[0xab]), !0xab00);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn chained_sums_equal_one_sum() {
        let a = [0xffu8; 12];
        let b = [0x80u8, 0x01, 0x7f, 0xfe, 0x01];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(finish(sum(&b, sum(&a, 0))), checksum(&whole));
    }
}

//! Size classes for reporting only.
//!
//! memha allocates each item exactly (no slabs), but operators' dashboards and memcached's
//! tools read per-class figures (`stats items`, `stats slabs`). memha therefore groups its
//! items by the class memcached would have put them in — chunk sizes growing by 1.25 from 96
//! bytes, 8-byte aligned, up to 512 KiB — and every figure reported per class is a real count
//! of memha's items in that size range.

use std::sync::OnceLock;

/// Smallest memcached chunk (48-byte item header + 48 bytes of data).
const FIRST_CHUNK: usize = 96;
const GROWTH: f64 = 1.25;
/// memcached's slab_chunk_max default: larger items are chained chunks of the last class.
const LAST_CHUNK: usize = 512 * 1024;

/// Chunk size of each class; class id = index + 1.
pub fn chunk_sizes() -> &'static [usize] {
    static SIZES: OnceLock<Vec<usize>> = OnceLock::new();
    SIZES.get_or_init(|| {
        let mut v = Vec::new();
        let mut size = FIRST_CHUNK;
        while (size as f64) < LAST_CHUNK as f64 / GROWTH {
            v.push(size);
            let next = (size as f64 * GROWTH) as usize;
            size = next.div_ceil(8) * 8;
        }
        v.push(LAST_CHUNK);
        v
    })
}

/// Number of classes.
pub fn count() -> usize {
    chunk_sizes().len()
}

/// The class (1-based) of an item of `total` bytes as memcached counts them.
pub fn class_of(total: usize) -> usize {
    let sizes = chunk_sizes();
    sizes.partition_point(|&s| s < total).min(sizes.len() - 1) + 1
}

/// Per-class event counters kept by each shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassCounters {
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub outofmemory: u64,
}

impl ClassCounters {
    pub fn add(&mut self, o: &ClassCounters) {
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.evicted_unfetched += o.evicted_unfetched;
        self.outofmemory += o.outofmemory;
    }
}

/// One class as `stats items` / `stats slabs` report it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassStats {
    pub class: usize,
    pub chunk_size: usize,
    /// Live items in the class.
    pub number: u64,
    /// Their size as memcached counts it (header + key + value).
    pub bytes: u64,
    /// Oldest last-access time among them (unix seconds).
    pub oldest_atime: u32,
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub outofmemory: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_classes() {
        let s = chunk_sizes();
        assert_eq!(&s[..5], &[96, 120, 152, 192, 240]);
        assert_eq!(*s.last().unwrap(), LAST_CHUNK);
        assert_eq!(class_of(1), 1);
        assert_eq!(class_of(96), 1);
        assert_eq!(class_of(97), 2);
        // memcached's evictions test stores 66560-byte values in class 31.
        assert_eq!(class_of(48 + 5 + 66560 + 2), 31);
        assert_eq!(class_of(10 << 20), s.len());
    }
}

//! Item memory layout.
//!
//! WHY one `malloc` per item with a packed header: per-item overhead is a
//! product goal. memcached spends ~48 bytes of header plus slab rounding and
//! LRU pointers (~70 bytes/item). Here an item is a single allocation:
//!
//! ```text
//! offset  size  field
//!      0     8  version (= CAS unique)
//!      8     4  exptime (absolute unix seconds, 0 = never)
//!     12     4  client flags
//!     16     4  atime (unix seconds of last access)
//!     20     4  value_len
//!     24     1  key_len
//!     25     1  bits (bit0 = CLOCK visited, bit1 = fetched since stored,
//!                     bit2 = stale (meta invalidation), bit3 = recache win sent)
//!     26     .  key bytes, then value bytes
//! ```
//!
//! The header is 26 bytes, read and written with unaligned little-endian
//! accessors (a `#[repr(C)]` struct would be padded to 32). There are no list
//! pointers: eviction is CLOCK over the hash table's buckets (see `shard.rs`),
//! so the only other per-item cost is the 8-byte table slot plus 1 control
//! byte. Memory accounting uses `malloc_usable_size + 8` (glibc chunk header),
//! i.e. what the allocator really hands out, not what we asked for.

use std::ptr::NonNull;

/// Size of the packed header in front of the key.
pub const HEADER_SIZE: usize = 26;
/// Largest key length the layout can hold (protocol limit is 250).
pub const MAX_KEY_LEN: usize = 250;
/// Per-chunk bookkeeping of glibc malloc that `malloc_usable_size` omits.
pub(crate) const MALLOC_CHUNK_OVERHEAD: usize = 8;

const OFF_CAS: usize = 0;
const OFF_EXPTIME: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_ATIME: usize = 16;
const OFF_VLEN: usize = 20;
const OFF_KLEN: usize = 24;
const OFF_BITS: usize = 25;

pub(crate) const BIT_VISITED: u8 = 1;
pub(crate) const BIT_FETCHED: u8 = 2;
/// The item was invalidated (`md I`) or stored as stale (`ms I` with an old
/// CAS): readers see it flagged stale (meta `X`).
pub(crate) const BIT_STALE: u8 = 4;
/// A reader has been handed the "win" token to recache this item (meta `W`);
/// later readers are told so (meta `Z`).
pub(crate) const BIT_WIN_SENT: u8 = 8;

/// Owning pointer to one item allocation. Deliberately neither `Copy` nor
/// `Clone`: the hash table owns it, removing it from the table hands the
/// ownership back, and `free` consumes it. Accessors borrow `self`, so slices
/// they return cannot outlive the table borrow they came from.
pub(crate) struct ItemPtr(NonNull<u8>);

// SAFETY: an ItemPtr uniquely owns its malloc'd block (no aliasing copies
// exist, see above), and the block contains only plain bytes. Moving it to
// another thread is fine; all access happens under the owning shard's mutex.
unsafe impl Send for ItemPtr {}

impl ItemPtr {
    /// Allocate an item for `key` with room for `value_len` value bytes.
    /// The header is initialised (version/exptime/flags/atime/bits = 0) and
    /// the key copied; the value bytes are uninitialised garbage until the
    /// caller fills them through `value_mut`. `None` if malloc fails.
    pub(crate) fn alloc(key: &[u8], value_len: usize) -> Option<ItemPtr> {
        debug_assert!(key.len() <= MAX_KEY_LEN, "key longer than 250 bytes");
        // Hard checks: these protect memory safety, not just policy.
        assert!(key.len() <= u8::MAX as usize, "key too long");
        assert!(value_len <= u32::MAX as usize, "value too long");
        let total = HEADER_SIZE + key.len() + value_len;
        // SAFETY: plain malloc of a non-zero size; null is handled below.
        let raw = unsafe { libc::malloc(total) } as *mut u8;
        let p = NonNull::new(raw)?;
        // SAFETY: `raw` points to at least `total` writable bytes; we zero
        // the header, then copy the key right behind it. `key` cannot overlap
        // a block we just allocated.
        unsafe {
            std::ptr::write_bytes(raw, 0, HEADER_SIZE);
            std::ptr::copy_nonoverlapping(key.as_ptr(), raw.add(HEADER_SIZE), key.len());
        }
        let mut it = ItemPtr(p);
        it.write_u32(OFF_VLEN, value_len as u32);
        it.write_u8(OFF_KLEN, key.len() as u8);
        Some(it)
    }

    /// Release the allocation.
    pub(crate) fn free(self) {
        // SAFETY: the pointer came from libc::malloc in `alloc` and, since
        // ItemPtr is unique and consumed here, is freed exactly once.
        unsafe { libc::free(self.0.as_ptr() as *mut libc::c_void) }
    }

    #[inline]
    fn read<const N: usize>(&self, off: usize) -> [u8; N] {
        debug_assert!(off + N <= HEADER_SIZE);
        // SAFETY: every allocation is at least HEADER_SIZE bytes and
        // off + N <= HEADER_SIZE; read_unaligned has no alignment demand.
        unsafe { std::ptr::read_unaligned(self.0.as_ptr().add(off) as *const [u8; N]) }
    }

    #[inline]
    fn write<const N: usize>(&mut self, off: usize, b: [u8; N]) {
        debug_assert!(off + N <= HEADER_SIZE);
        // SAFETY: as in `read`; `&mut self` guarantees no outstanding
        // borrows of the item's bytes.
        unsafe { std::ptr::write_unaligned(self.0.as_ptr().add(off) as *mut [u8; N], b) }
    }

    #[inline]
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.read(off))
    }
    #[inline]
    fn write_u32(&mut self, off: usize, v: u32) {
        self.write(off, v.to_le_bytes())
    }
    #[inline]
    fn write_u8(&mut self, off: usize, v: u8) {
        self.write(off, [v])
    }

    #[inline]
    pub(crate) fn cas(&self) -> u64 {
        u64::from_le_bytes(self.read(OFF_CAS))
    }
    #[inline]
    pub(crate) fn set_cas(&mut self, v: u64) {
        self.write(OFF_CAS, v.to_le_bytes())
    }
    #[inline]
    pub(crate) fn exptime(&self) -> u32 {
        self.read_u32(OFF_EXPTIME)
    }
    #[inline]
    pub(crate) fn set_exptime(&mut self, v: u32) {
        self.write_u32(OFF_EXPTIME, v)
    }
    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        self.read_u32(OFF_FLAGS)
    }
    #[inline]
    pub(crate) fn set_flags(&mut self, v: u32) {
        self.write_u32(OFF_FLAGS, v)
    }
    #[inline]
    pub(crate) fn atime(&self) -> u32 {
        self.read_u32(OFF_ATIME)
    }
    #[inline]
    pub(crate) fn set_atime(&mut self, v: u32) {
        self.write_u32(OFF_ATIME, v)
    }
    #[inline]
    pub(crate) fn value_len(&self) -> usize {
        self.read_u32(OFF_VLEN) as usize
    }
    /// Shrink the value in place (the allocation keeps its size).
    #[inline]
    pub(crate) fn shrink_value_len(&mut self, v: usize) {
        assert!(v <= self.value_len());
        self.write_u32(OFF_VLEN, v as u32)
    }
    #[inline]
    pub(crate) fn key_len(&self) -> usize {
        self.read::<1>(OFF_KLEN)[0] as usize
    }
    #[inline]
    pub(crate) fn bits(&self) -> u8 {
        self.read::<1>(OFF_BITS)[0]
    }
    #[inline]
    pub(crate) fn set_bits(&mut self, v: u8) {
        self.write_u8(OFF_BITS, v)
    }
    #[inline]
    pub(crate) fn visited(&self) -> bool {
        self.bits() & BIT_VISITED != 0
    }
    #[inline]
    pub(crate) fn fetched(&self) -> bool {
        self.bits() & BIT_FETCHED != 0
    }

    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        // SAFETY: the key_len bytes after the header were initialised by
        // `alloc` and live as long as the item (borrowed via &self).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(HEADER_SIZE), self.key_len()) }
    }

    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        let off = HEADER_SIZE + self.key_len();
        // SAFETY: value bytes follow the key inside the allocation; callers
        // fill them (value_mut) before the item is published in a table.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(off), self.value_len()) }
    }

    #[inline]
    pub(crate) fn value_mut(&mut self) -> &mut [u8] {
        let off = HEADER_SIZE + self.key_len();
        // SAFETY: as in `value`; `&mut self` guarantees exclusivity. The
        // bytes may be uninitialised right after `alloc`, but u8 has no
        // invalid bit patterns and callers only write through this slice
        // before reading.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr().add(off), self.value_len()) }
    }

    /// Logical size: header + key + value (memcached's "bytes" stat).
    #[inline]
    pub(crate) fn logical_size(&self) -> usize {
        HEADER_SIZE + self.key_len() + self.value_len()
    }

    /// Size as memcached would count it (its 48-byte header, key, value, `\r\n`).
    #[inline]
    pub(crate) fn memcached_size(&self) -> usize {
        crate::HEADER_OVERHEAD + self.key_len() + self.value_len() + 2
    }

    /// Reporting size class (see `classes`).
    #[inline]
    pub(crate) fn class(&self) -> usize {
        crate::classes::class_of(self.memcached_size())
    }

    /// Bytes really taken from the allocator for this item.
    #[inline]
    pub(crate) fn alloc_size(&self) -> usize {
        // SAFETY: the pointer is a live block returned by libc::malloc.
        let usable = unsafe { libc::malloc_usable_size(self.0.as_ptr() as *mut libc::c_void) };
        usable + MALLOC_CHUNK_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_roundtrip() {
        let mut it = ItemPtr::alloc(b"hello", 3).unwrap();
        it.value_mut().copy_from_slice(b"abc");
        it.set_cas(0x0102_0304_0506_0708);
        it.set_exptime(7);
        it.set_flags(0xdead_beef);
        it.set_atime(9);
        it.set_bits(BIT_FETCHED);
        assert_eq!(it.key(), b"hello");
        assert_eq!(it.value(), b"abc");
        assert_eq!(it.cas(), 0x0102_0304_0506_0708);
        assert_eq!(it.exptime(), 7);
        assert_eq!(it.flags(), 0xdead_beef);
        assert_eq!(it.atime(), 9);
        assert!(it.fetched() && !it.visited());
        assert_eq!(it.logical_size(), 26 + 5 + 3);
        assert!(it.alloc_size() >= it.logical_size() + 8);
        it.shrink_value_len(1);
        assert_eq!(it.value(), b"a");
        it.free();
    }

    #[test]
    fn max_key_and_empty_value() {
        let k = vec![b'k'; 250];
        let it = ItemPtr::alloc(&k, 0).unwrap();
        assert_eq!(it.key(), &k[..]);
        assert!(it.value().is_empty());
        it.free();
    }
}

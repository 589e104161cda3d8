//! Bounds-checked little-endian reads from a byte buffer.
//!
//! Kernel images come from disk and may be truncated or not kernels at all, so every
//! field read returns `None` past the end instead of panicking on an index.

/// The `u16` at `off`, if the buffer holds all of it.
pub(super) fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(array_at(bytes, off)?))
}

/// The `u32` at `off`, if the buffer holds all of it.
pub(super) fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(array_at(bytes, off)?))
}

/// The `u64` at `off`, if the buffer holds all of it.
pub(super) fn u64_at(bytes: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(array_at(bytes, off)?))
}

/// `bytes[off..off + len]`, if the buffer holds all of it (no overflow on huge values).
pub(super) fn slice_at(bytes: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    bytes.get(off..off.checked_add(len)?)
}

fn array_at<const N: usize>(bytes: &[u8], off: usize) -> Option<[u8; N]> {
    slice_at(bytes, off, N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 4), Some(0x0807_0605));
        assert_eq!(u64_at(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u32_at(&b, 5), None);
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(slice_at(&b, usize::MAX, 2), None);
    }
}

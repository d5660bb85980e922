//! Which chunks a peer holds, in the layout it has on the wire so a bitfield
//! message is sent and checked without conversion. Chunk 0 is the high bit of
//! byte 0 (as BitTorrent); the spare bits of the last byte are always zero, so
//! bytewise comparisons never see phantom chunks.

/// Which chunks a peer holds. On the wire: ceil(len/8) bytes, chunk 0 is the
/// high bit of byte 0 (as BitTorrent), spare bits zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    /// Bits set, kept so `count` and `is_full` are O(1).
    count: u32,
}

/// Bytes needed for `len` chunks.
fn byte_len(len: u32) -> usize {
    len.div_ceil(8) as usize
}

/// The mask of the bit for `index` within its byte.
fn mask(index: u32) -> u8 {
    0x80 >> (index % 8)
}

/// The spare (must be zero) bits of the last byte for `len` chunks.
fn spare_mask(len: u32) -> u8 {
    match len % 8 {
        0 => 0,
        used => 0xFF >> used,
    }
}

impl Bitfield {
    /// No chunk held.
    pub fn new(len: u32) -> Bitfield {
        Bitfield { bytes: vec![0; byte_len(len)], len, count: 0 }
    }

    /// Every chunk held (a seeder), spare bits zero.
    pub fn full(len: u32) -> Bitfield {
        let mut bytes = vec![0xFF; byte_len(len)];
        if let Some(last) = bytes.last_mut() {
            *last &= !spare_mask(len);
        }
        Bitfield { bytes, len, count: len }
    }

    /// None unless `bytes` is exactly ceil(len/8) long with zero spare bits:
    /// a peer that sends anything else is confused or lying.
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != byte_len(len) {
            return None;
        }
        if bytes.last().is_some_and(|&b| b & spare_mask(len) != 0) {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield { bytes: bytes.to_vec(), len, count })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Chunks in the file, held or not.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Chunks held.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// No chunk held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `index` is held; false when out of range.
    pub fn get(&self, index: u32) -> bool {
        index < self.len && self.bytes.get((index / 8) as usize).is_some_and(|&b| b & mask(index) != 0)
    }

    /// Marks `index` held; true if it was not held before. Out of range:
    /// false, no change (indices come from the network).
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        match self.bytes.get_mut((index / 8) as usize) {
            Some(b) if *b & mask(index) == 0 => {
                *b |= mask(index);
                self.count += 1;
                true
            }
            _ => false,
        }
    }

    /// Marks `index` not held; true if it was held before.
    pub fn clear(&mut self, index: u32) -> bool {
        if !self.get(index) {
            return false;
        }
        if let Some(b) = self.bytes.get_mut((index / 8) as usize) {
            *b &= !mask(index);
            self.count -= 1;
        }
        true
    }

    /// Held indices in ascending order: those it holds in common with
    /// itself, so a sparse bitfield costs about len/64 word tests.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.common(self)
    }

    /// Indices held by both `self` and `other`, in ascending order, found a
    /// 64-bit word at a time: the picker's walk over a peer's chunks that we
    /// still want costs len/64 word tests plus one step per common chunk.
    pub fn common<'a>(&'a self, other: &'a Bitfield) -> impl Iterator<Item = u32> + 'a {
        // Big-endian words keep the wire's order: chunk 0 is the high bit.
        let word = |w: &[u8]| {
            let mut b = [0u8; 8];
            b.get_mut(..w.len()).unwrap_or_default().copy_from_slice(w);
            u64::from_be_bytes(b)
        };
        self.bytes.chunks(8).zip(other.bytes.chunks(8)).zip(0u32..).flat_map(move |((a, b), i)| {
            let mut rest = word(a) & word(b);
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.leading_zeros();
                rest &= !(1u64 << 63 >> bit);
                Some(i * 64 + bit)
            })
        })
    }

    /// True if `self` holds some chunk that `other` lacks (same len assumed).
    /// Asked for every peer at every slot decision, so the counts answer
    /// first: holding more than `other` settles it, and so does `other` full
    /// or `self` empty; only the rest is compared, `a & !b`, a word at a time.
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        if self.count > other.count {
            return true;
        }
        if self.count == 0 || other.count == other.len {
            return false;
        }
        let (ours, theirs) = (self.bytes.chunks_exact(8), other.bytes.chunks_exact(8));
        let tail = ours.remainder().iter().zip(theirs.remainder()).any(|(&a, &b)| a & !b != 0);
        let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or_default());
        tail || ours.zip(theirs).any(|(a, b)| word(a) & !word(b) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let mut b = Bitfield::new(10);
        assert_eq!(b.as_bytes(), &[0, 0]);
        for i in [0, 7, 9] {
            assert!(b.set(i));
        }
        assert_eq!(b.as_bytes(), &[0x81, 0x40]);
        assert_eq!(b.count(), 3);
        assert_eq!(Bitfield::from_wire(&[0x81, 0x40], 10), Some(b));
    }

    #[test]
    fn common_is_the_intersection_in_order() {
        for len in [1, 7, 8, 63, 64, 65, 130, 1000] {
            let (mut a, mut b) = (Bitfield::new(len), Bitfield::new(len));
            for i in 0..len {
                if i % 3 == 0 || i == len - 1 {
                    a.set(i);
                }
                if i % 2 == 0 || i == len - 1 {
                    b.set(i);
                }
            }
            let want: Vec<u32> = (0..len).filter(|&i| a.get(i) && b.get(i)).collect();
            assert_eq!(a.common(&b).collect::<Vec<_>>(), want, "len {len}");
            assert_eq!(a.ones().collect::<Vec<_>>(), (0..len).filter(|&i| a.get(i)).collect::<Vec<_>>());
            assert_eq!(a.common(&Bitfield::new(len)).count(), 0);
        }
    }

    #[test]
    fn from_wire_rejects_wrong_length_and_spare_bits() {
        assert_eq!(Bitfield::from_wire(&[0x81], 10), None);
        assert_eq!(Bitfield::from_wire(&[0x81, 0, 0], 10), None);
        assert_eq!(Bitfield::from_wire(&[0x81, 0x20], 10), None);
        assert_eq!(Bitfield::from_wire(&[0x81, 0x01], 10), None);
        assert_eq!(Bitfield::from_wire(&[0x00], 0), None);
        assert_eq!(Bitfield::from_wire(&[], 0).map(|b| b.len()), Some(0));
        // A multiple of 8 has no spare bits.
        assert_eq!(Bitfield::from_wire(&[0xFF, 0xFF], 16).map(|b| b.count()), Some(16));
    }

    #[test]
    fn set_get_count() {
        let mut b = Bitfield::new(20);
        assert!(b.is_empty() && !b.is_full());
        assert!(b.set(3));
        assert!(!b.set(3), "second set reports no change");
        assert!(b.set(19));
        assert!(!b.set(20) && !b.set(u32::MAX), "out of range");
        assert!(b.get(3) && b.get(19) && !b.get(4) && !b.get(20) && !b.get(u32::MAX));
        assert_eq!(b.count(), 2);
        assert!(!b.is_empty());
        for i in 0..20 {
            b.set(i);
        }
        assert!(b.is_full());
        assert_eq!(b, Bitfield::full(20));
    }

    #[test]
    fn full_has_zero_spare_bits() {
        for len in 0..=17 {
            let f = Bitfield::full(len);
            assert_eq!(f.count(), len);
            assert!(f.is_full());
            assert_eq!(Bitfield::from_wire(f.as_bytes(), len).as_ref(), Some(&f), "len {len}");
            assert_eq!(f.ones().collect::<Vec<_>>(), (0..len).collect::<Vec<_>>());
        }
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xFF, 0xC0]);
        assert!(Bitfield::full(0).is_empty() && Bitfield::full(0).is_full());
    }

    #[test]
    fn ones_ascending_and_sparse() {
        let mut b = Bitfield::new(100_000);
        let want = [0, 1, 8, 15, 16, 4097, 99_999];
        for &i in want.iter().rev() {
            b.set(i);
        }
        assert_eq!(b.ones().collect::<Vec<_>>(), want);
        assert_eq!(Bitfield::new(9).ones().count(), 0);
    }

    #[test]
    fn missing_from() {
        let mut a = Bitfield::new(10);
        let mut b = Bitfield::new(10);
        assert!(!a.has_any_missing_from(&b));
        a.set(9);
        assert!(a.has_any_missing_from(&b));
        assert!(!b.has_any_missing_from(&a));
        b.set(9);
        b.set(2);
        assert!(!a.has_any_missing_from(&b));
        assert!(b.has_any_missing_from(&a));
        assert!(!Bitfield::full(10).has_any_missing_from(&Bitfield::full(10)));
        assert!(Bitfield::full(10).has_any_missing_from(&b));
    }

    #[test]
    fn missing_from_agrees_with_a_bit_by_bit_comparison_whatever_the_counts() {
        // Lengths with and without a partial word; pairs with fewer, equal and more chunks.
        for len in [1, 7, 64, 65, 200] {
            let mut rng = crate::common::rng::Rng::new(len as u64);
            for _ in 0..200 {
                let (mut a, mut b) = (Bitfield::new(len), Bitfield::new(len));
                let (pa, pb) = (rng.below(4), rng.below(4));
                for i in 0..len {
                    if rng.below(4) < pa {
                        a.set(i);
                    }
                    if rng.below(4) < pb {
                        b.set(i);
                    }
                }
                let want = (0..len).any(|i| a.get(i) && !b.get(i));
                assert_eq!(a.has_any_missing_from(&b), want, "len {len}");
            }
        }
    }
}

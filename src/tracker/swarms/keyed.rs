//! The hasher of the swarm map's info hashes. std's SipHash-1-3 cost about
//! 220 instructions per announce (`announce_cost` under callgrind); an info
//! hash needs no more than a keyed mix of its words, as foldhash and ahash's
//! fallback make it: one folded 128-bit multiply per 8 bytes. The key is
//! drawn at start, so a client choosing info hashes cannot aim them at one
//! bucket.

use std::hash::{BuildHasher, Hasher};

/// Builds the hashers of one map, all with the same key.
#[derive(Debug, Clone)]
pub struct Keyed([u64; 2]);

impl Keyed {
    /// The multiplier is odd: never zero, whatever the seed.
    pub fn new(seed: u64) -> Keyed {
        Keyed([super::usage::mix(seed ^ 0xA409_3822_299F_31D0), super::usage::mix(seed ^ 0x082E_FA98_EC4E_6C89) | 1])
    }
}

impl BuildHasher for Keyed {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher { state: self.0[0], key: self.0[1] }
    }
}

pub struct KeyedHasher {
    state: u64,
    key: u64,
}

impl KeyedHasher {
    fn eat(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.key);
        self.state = (product as u64) ^ (product >> 64) as u64;
    }
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        for word in words {
            self.eat(u64::from_le_bytes(*word));
        }
        if !rest.is_empty() {
            let mut last = [0; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.eat(u64::from_le_bytes(last));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.eat(n as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::hash::Hash20;

    #[test]
    fn keys_and_bytes_move_the_hash() {
        let (a, b) = (Keyed::new(1), Keyed::new(2));
        let x = Hash20::of(b"x");
        assert_eq!(a.hash_one(x), a.hash_one(x));
        assert_ne!(a.hash_one(x), b.hash_one(x), "another key, another hash");
        for i in 0..20 {
            let mut y = x;
            y.0[i] ^= 1;
            assert_ne!(a.hash_one(x), a.hash_one(y), "byte {i}");
        }
    }
}

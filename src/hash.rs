//! SHA-1 digests: chunk hashes, content ids and BEP 15 info hashes.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// A 20-byte SHA-1 digest. Content ids, info hashes and chunk hashes are all this.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash20(pub [u8; 20]);

/// Content id of a file: the SHA-1 of its encoded metadata (see `meta::FileMeta`).
/// As a BEP 15 info hash it names the file's swarm on the tracker.
pub type ContentId = Hash20;

impl Hash20 {
    /// SHA-1 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Hash20(Sha1::digest(data).into())
    }

    /// SHA-1 of several slices, as if concatenated.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = Sha1::new();
        for p in parts {
            h.update(p);
        }
        Hash20(h.finalize().into())
    }

    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The first `n` hex digits, for tables and log lines.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for Hash20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash20({self})")
    }
}

/// SHA-1 fed piece by piece, for data read in blocks smaller than a chunk.
#[derive(Default, Clone)]
pub struct Hasher(Sha1);

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Hash20 {
        Hash20(self.0.finalize().into())
    }
}

/// A string that is not 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHex;

impl fmt::Display for BadHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected 40 hex digits")
    }
}

impl std::error::Error for BadHex {}

impl FromStr for Hash20 {
    type Err = BadHex;

    fn from_str(s: &str) -> Result<Self, BadHex> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return Err(BadHex);
        }
        let mut out = [0u8; 20];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(BadHex);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Hash20(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vector() {
        assert_eq!(Hash20::of(b"abc").to_hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(Hash20::of_parts(&[b"a", b"bc"]), Hash20::of(b"abc"));
        let mut h = Hasher::default();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), Hash20::of(b"abc"));
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash20::of(b"x");
        assert_eq!(h.to_hex().parse::<Hash20>(), Ok(h));
        assert_eq!(h.to_hex().to_uppercase().parse::<Hash20>(), Ok(h));
        assert_eq!("zz".parse::<Hash20>(), Err(BadHex));
        assert_eq!("g".repeat(40).parse::<Hash20>(), Err(BadHex));
        assert_eq!(h.short().len(), 12);
    }
}

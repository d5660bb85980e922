//! The simulated file: chunk bytes generated from the chunk index and a
//! content seed, each distinct chunk hashed once. A host's storage moves a
//! 12-byte token (content seed, index) in place of a chunk's bytes and the
//! peer core verifies every token against the chunk hashes of the metadata,
//! so a host that sends another content's chunk is caught as in the daemons.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use crate::common::rng::Rng;
use crate::hash::Hash20;
use crate::meta::FileMeta;
use crate::peer::storage::{ReadError, Storage};

const TOKEN: usize = 12;

pub struct Content {
    pub meta: FileMeta,
    seed: u64,
    /// Hashes of other contents' chunks (what liars send), computed once each.
    others: RefCell<BTreeMap<(u64, u32), Hash20>>,
    /// Tokens that passed and failed verification, over all hosts.
    pub verified: Cell<u64>,
    pub rejected: Cell<u64>,
}

impl Content {
    /// A file of `size` bytes whose chunk `i` is generated from `(seed, i)`.
    pub fn new(name: &str, size: u64, chunk_size: u32, seed: u64) -> Result<Rc<Content>, crate::meta::MetaError> {
        let count = crate::meta::chunk_count(size, chunk_size);
        let hashes = (0..count)
            .map(|i| {
                let len = (size - i * u64::from(chunk_size)).min(u64::from(chunk_size)) as usize;
                hash_of(seed, i as u32, len)
            })
            .collect();
        let meta = FileMeta::new(name.to_string(), size, chunk_size, hashes)?;
        Ok(Rc::new(Content {
            meta,
            seed,
            others: RefCell::new(BTreeMap::new()),
            verified: Cell::new(0),
            rejected: Cell::new(0),
        }))
    }

    /// Bytes a Chunk frame of chunk `index` takes on the wire (its data, not the token).
    pub fn chunk_len(&self, index: u32) -> u64 {
        self.meta.chunk_len(index).map_or(0, u64::from)
    }

    /// A host's storage of this file, sending chunks of content `seed`
    /// (`None`: this file's own, honest bytes).
    pub fn store(self: &Rc<Content>, lie: Option<u64>) -> Store {
        Store { content: Rc::clone(self), seed: lie.unwrap_or(self.seed) }
    }

    fn hash(&self, seed: u64, index: u32) -> Option<Hash20> {
        let len = self.meta.chunk_len(index)? as usize;
        if seed == self.seed {
            return self.meta.hashes().get(index as usize).copied();
        }
        Some(*self.others.borrow_mut().entry((seed, index)).or_insert_with(|| hash_of(seed, index, len)))
    }
}

/// The SHA-1 of chunk `index` of content `seed`, `len` bytes long.
fn hash_of(seed: u64, index: u32, len: usize) -> Hash20 {
    let mut bytes = vec![0; len];
    Rng::new(seed ^ (u64::from(index) << 32) ^ 0x5eed).fill(&mut bytes);
    Hash20::of(&bytes)
}

pub struct Store {
    content: Rc<Content>,
    seed: u64,
}

impl Storage for Store {
    fn read(&mut self, offset: u64, _len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let index = (offset / u64::from(self.content.meta.chunk_size())) as u32;
        out.extend_from_slice(&self.seed.to_be_bytes());
        out.extend_from_slice(&index.to_be_bytes());
        Ok(())
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn verify(&self, data: &[u8], _len: usize, hash: &Hash20) -> bool {
        let ok = token(data).and_then(|(seed, index)| self.content.hash(seed, index)).is_some_and(|h| h == *hash);
        let counter = if ok { &self.content.verified } else { &self.content.rejected };
        counter.set(counter.get() + 1);
        ok
    }
}

fn token(data: &[u8]) -> Option<(u64, u32)> {
    if data.len() != TOKEN {
        return None;
    }
    let seed = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(data.get(8..)?.try_into().ok()?);
    Some((seed, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_passes_for_its_own_chunk_only() {
        let c = Content::new("f", 3 * 16384 + 5, 16384, 7).unwrap();
        let (mut honest, mut liar) = (c.store(None), c.store(Some(8)));
        let hashes = c.meta.hashes().to_vec();
        let mut out = Vec::new();
        honest.read(2 * 16384, 16384, &mut out).unwrap();
        assert!(honest.verify(&out, 16384, &hashes[2]));
        assert!(!honest.verify(&out, 16384, &hashes[1]), "chunk 2 for chunk 1");
        out.clear();
        liar.read(3 * 16384, 5, &mut out).unwrap();
        assert!(!honest.verify(&out, 5, &hashes[3]), "another content's bytes");
        assert!(!honest.verify(b"short", 5, &hashes[3]));
        assert_eq!((c.verified.get(), c.rejected.get()), (1, 3));
    }
}

//! The simulated file and the one in-memory storage of the simulator, the
//! harness and the fuzz targets. Chunk `i` of a content is generated from
//! the content seed and `i`, and each distinct chunk is hashed once. A chunk
//! travels as its bytes ([`Content::with_bytes`], small files: the core's byte
//! counters and SHA-1 check run as in the daemons) or, in the simulator, as a
//! 12-byte token (content seed, index) that the core verifies against the
//! same hashes, so a thousand hosts cost no bytes and no hashing. Either way
//! a host that sends another content's chunk is caught as in the daemons.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use crate::common::rng::Rng;
use crate::hash::{Hash20, Hasher};
use crate::meta::FileMeta;
use crate::peer::bitfield::Bitfield;
use crate::peer::storage::{Check, ReadError, Storage};

const TOKEN: usize = 12;

pub struct Content {
    pub meta: FileMeta,
    seed: u64,
    /// Chunks travel as their bytes, not as tokens.
    bytes: bool,
    /// Hashes of other contents' chunks (what liars send), computed once each.
    others: RefCell<BTreeMap<(u64, u32), Hash20>>,
    /// Chunks that passed and failed verification, over all hosts.
    pub verified: Cell<u64>,
    pub rejected: Cell<u64>,
}

impl Content {
    /// A file of `size` bytes whose chunk `i` is generated from `(seed, i)`
    /// and travels as a token.
    pub fn new(name: &str, size: u64, chunk_size: u32, seed: u64) -> Result<Rc<Content>, crate::meta::MetaError> {
        Content::make(name, size, chunk_size, seed, false)
    }

    /// The same file, its chunks travelling as their bytes.
    pub fn with_bytes(
        name: &str,
        size: u64,
        chunk_size: u32,
        seed: u64,
    ) -> Result<Rc<Content>, crate::meta::MetaError> {
        Content::make(name, size, chunk_size, seed, true)
    }

    fn make(
        name: &str,
        size: u64,
        chunk_size: u32,
        seed: u64,
        bytes: bool,
    ) -> Result<Rc<Content>, crate::meta::MetaError> {
        let count = crate::meta::chunk_count(size, chunk_size);
        let hashes = (0..count)
            .map(|i| {
                let len = (size - i * u64::from(chunk_size)).min(u64::from(chunk_size)) as usize;
                Hash20::of(&generate(seed, i as u32, len))
            })
            .collect();
        let meta = FileMeta::new(name.to_string(), size, chunk_size, hashes)?;
        Ok(Rc::new(Content {
            meta,
            seed,
            bytes,
            others: RefCell::new(BTreeMap::new()),
            verified: Cell::new(0),
            rejected: Cell::new(0),
        }))
    }

    /// Bytes a Chunk frame of chunk `index` takes on the wire (its data, not the token).
    pub fn chunk_len(&self, index: u32) -> u64 {
        self.meta.chunk_len(index).map_or(0, u64::from)
    }

    /// Chunk `index` as it travels in a Chunk frame (empty past the end).
    pub fn chunk(&self, index: u32) -> Vec<u8> {
        self.chunk_of(self.seed, index)
    }

    fn chunk_of(&self, seed: u64, index: u32) -> Vec<u8> {
        match self.meta.chunk_len(index) {
            None => Vec::new(),
            Some(len) if self.bytes => generate(seed, index, len as usize),
            Some(_) => token(seed, index).to_vec(),
        }
    }

    /// A host's storage of this file holding the chunks of `held`, sending
    /// chunks of content `lie` (`None`: this file's own, honest ones).
    pub fn store(self: &Rc<Content>, lie: Option<u64>, held: Bitfield) -> Store {
        let state = Rc::new(RefCell::new(Stored { held, partial: BTreeMap::new(), finished: false }));
        Store { content: Rc::clone(self), seed: lie.unwrap_or(self.seed), state }
    }

    fn hash(&self, seed: u64, index: u32) -> Option<Hash20> {
        let len = self.meta.chunk_len(index)? as usize;
        if seed == self.seed {
            return self.meta.hashes().get(index as usize).copied();
        }
        Some(*self.others.borrow_mut().entry((seed, index)).or_insert_with(|| Hash20::of(&generate(seed, index, len))))
    }

    fn count(&self, ok: bool) {
        let counter = if ok { &self.verified } else { &self.rejected };
        counter.set(counter.get() + 1);
    }
}

/// The bytes of chunk `index` of content `seed`, `len` long.
fn generate(seed: u64, index: u32, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    Rng::new(seed ^ (u64::from(index) << 32) ^ 0x5eed).fill(&mut bytes);
    bytes
}

/// `spans` (sorted, apart) after bytes `(from, to)` are written, right or not.
fn overwrite(spans: &mut Vec<(usize, usize)>, (from, to): (usize, usize), right: bool) {
    let mut kept = Vec::with_capacity(spans.len() + 2);
    for &(a, b) in spans.iter() {
        kept.extend([(a, b.min(from)), (a.max(to), b)].into_iter().filter(|(x, y)| x < y));
    }
    if right && from < to {
        kept.push((from, to));
        kept.sort_unstable();
    }
    spans.clear();
    for (a, b) in kept {
        match spans.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => spans.push((a, b)),
        }
    }
}

fn token(seed: u64, index: u32) -> [u8; TOKEN] {
    let mut t = [0; TOKEN];
    t[..8].copy_from_slice(&seed.to_be_bytes());
    t[8..].copy_from_slice(&index.to_be_bytes());
    t
}

/// What a store holds: shared with its clones, so a test can look at the
/// storage it handed to a core.
struct Stored {
    /// Chunks held from the start or written right since.
    held: Bitfield,
    /// Chunks being written in pieces: the spans written right so far, in
    /// order (two connections may write one chunk at once).
    partial: BTreeMap<u32, Vec<(usize, usize)>>,
    finished: bool,
}

/// A host's file. It serves the chunks of its seed; a chunk it neither
/// held at the start nor had written right is served as 0xff bytes (a token
/// of no chunk), so a core that sends what it does not hold is caught by the
/// receiver's check.
#[derive(Clone)]
pub struct Store {
    content: Rc<Content>,
    seed: u64,
    state: Rc<RefCell<Stored>>,
}

impl Store {
    /// Every chunk held right and the file finished: a download is complete and true.
    pub fn holds_file(&self) -> bool {
        let state = self.state.borrow();
        state.held.is_full() && state.finished
    }

    /// Whether chunk `index` is held right (from the start, or written right since).
    pub fn holds(&self, index: u32) -> bool {
        self.state.borrow().held.get(index)
    }

    /// The chunk holding `offset`, and where in it `offset` is.
    fn position(&self, offset: u64) -> Option<(u32, usize)> {
        let size = u64::from(self.content.meta.chunk_size());
        Some((u32::try_from(offset / size).ok()?, usize::try_from(offset % size).ok()?))
    }
}

impl Storage for Store {
    /// A piece of a chunk's bytes, or (tokens) the whole token from the chunk's start.
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let (index, within) = self.position(offset).ok_or(ReadError::Changed)?;
        let body = self.content.meta.chunk_len(index).map(|l| self.body_len(l as usize)).ok_or(ReadError::Changed)?;
        let bytes = self.content.chunk_of(self.seed, index);
        let piece = bytes.get(within..within.checked_add(len).filter(|end| *end <= body).ok_or(ReadError::Changed)?);
        match piece.filter(|_| self.state.borrow().held.get(index)) {
            Some(piece) => out.extend_from_slice(piece),
            None => out.resize(out.len() + len, 0xff),
        }
        Ok(())
    }

    fn body_len(&self, len: usize) -> usize {
        if self.content.bytes {
            len
        } else {
            TOKEN
        }
    }

    /// A chunk is held once every byte of its body was last written right,
    /// whole or in pieces, in any order; a wrong piece clears what it covers.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (index, within) = self.position(offset).ok_or(io::ErrorKind::InvalidInput)?;
        let body = self.content.chunk(index);
        let end = within.saturating_add(data.len());
        let right = body.get(within..end) == Some(data);
        let mut state = self.state.borrow_mut();
        let mut spans = match state.held.get(index) {
            true => vec![(0, body.len())],
            false => state.partial.remove(&index).unwrap_or_default(),
        };
        overwrite(&mut spans, (within, end), right);
        if spans == [(0, body.len())] {
            state.held.set(index);
        } else {
            state.held.clear(index);
            state.partial.insert(index, spans);
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.state.borrow_mut().finished = true;
        Ok(())
    }

    fn check(&self) -> Box<dyn Check> {
        Box::new(Checking { content: Rc::clone(&self.content), hasher: Hasher::default(), len: 0, token: Vec::new() })
    }
}

/// A chunk arriving at a host: hashed as in the daemons when chunks travel
/// as their bytes, else its token (at most `TOKEN` bytes kept) checked
/// against the hash of the chunk it names. Counted in `verified` or `rejected`.
struct Checking {
    content: Rc<Content>,
    hasher: Hasher,
    len: usize,
    token: Vec<u8>,
}

impl Check for Checking {
    fn update(&mut self, data: &[u8]) {
        self.len = self.len.saturating_add(data.len());
        match self.content.bytes {
            true => self.hasher.update(data),
            false => self.token.extend(data.iter().take((TOKEN + 1).saturating_sub(self.token.len()))),
        }
    }

    fn passes(self: Box<Self>, len: usize, hash: &Hash20) -> bool {
        let ok = match self.content.bytes {
            true => self.len == len && self.hasher.finish() == *hash,
            false => {
                parse(&self.token).and_then(|(seed, index)| self.content.hash(seed, index)).is_some_and(|h| h == *hash)
            }
        };
        self.content.count(ok);
        ok
    }
}

fn parse(data: &[u8]) -> Option<(u64, u32)> {
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

    fn verify(store: &Store, data: &[u8], len: usize, hash: &Hash20) -> bool {
        let mut check = store.check();
        check.update(data);
        check.passes(len, hash)
    }

    fn check(c: &Rc<Content>) {
        let count = c.meta.chunk_count();
        let (mut honest, mut liar) = (c.store(None, Bitfield::full(count)), c.store(Some(8), Bitfield::full(count)));
        let hashes = c.meta.hashes().to_vec();
        let mut out = Vec::new();
        honest.read(2 * 16384, honest.body_len(16384), &mut out).unwrap();
        assert_eq!(out, c.chunk(2));
        assert!(verify(&honest, &out, 16384, &hashes[2]));
        assert!(!verify(&honest, &out, 16384, &hashes[1]), "chunk 2 for chunk 1");
        out.clear();
        liar.read(3 * 16384, liar.body_len(5), &mut out).unwrap();
        assert!(!verify(&honest, &out, 5, &hashes[3]), "another content's bytes");
        assert!(!verify(&honest, b"short", 5, &hashes[3]));
        assert_eq!((c.verified.get(), c.rejected.get()), (1, 3));
    }

    #[test]
    fn a_chunk_passes_for_its_own_index_and_content_only() {
        check(&Content::new("f", 3 * 16384 + 5, 16384, 7).unwrap());
        check(&Content::with_bytes("f", 3 * 16384 + 5, 16384, 7).unwrap());
    }

    #[test]
    fn a_store_holds_the_file_once_every_chunk_is_written_right_and_finished() {
        let c = Content::with_bytes("f", 2 * 16384, 16384, 7).unwrap();
        let mut s = c.store(None, Bitfield::new(2));
        let mut out = Vec::new();
        s.read(0, 16384, &mut out).unwrap();
        assert_eq!(out, [0xff; 16384], "a chunk not held is served as no chunk");
        out.clear();
        s.write(0, &c.chunk(0)).unwrap();
        s.write(16384, &[0; 16384]).unwrap();
        s.finish().unwrap();
        assert!(!s.holds_file(), "chunk 1 is wrong");
        s.write(16384, &c.chunk(1)[..100]).unwrap();
        s.write(16384 + 100, &c.chunk(1)[100..]).unwrap();
        assert!(s.holds_file(), "written right in two pieces");
        s.write(16384 + 100, &[0; 50]).unwrap();
        assert!(!s.holds_file(), "a wrong piece over a chunk held");
        s.write(16384 + 100, &c.chunk(1)[100..150]).unwrap();
        assert!(s.holds_file(), "that piece written right again");
        s.write(16384, &[0; 16384]).unwrap();
        s.write(16384 + 8192, &c.chunk(1)[8192..]).unwrap();
        assert!(!s.holds_file(), "half of it right");
        s.write(16384, &c.chunk(1)[..8192]).unwrap();
        assert!(s.holds_file(), "pieces in any order, the last write of each byte right");
        assert!(s.read(1, 16384, &mut out).is_err(), "past the chunk's end");
        s.read(16384 + 100, 50, &mut out).unwrap();
        assert_eq!(out, c.chunk(1)[100..150], "a piece of a chunk");
    }
}

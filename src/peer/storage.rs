//! Where a file's chunk bytes live. One trait for a shared file (read only,
//! withdrawn if it changes under us) and a download (the leecher's
//! `part_file.rs`: written in place, read back to serve verified chunks,
//! synced and renamed when complete). The in-memory one of the cores' tests
//! is the simulator's (`sim::content::Store`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use crate::hash::{Hash20, Hasher};

/// Why a chunk could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file changed on disk since it was hashed.
    Changed,
    Io(io::Error),
}

/// One file's bytes, by position.
pub trait Storage {
    /// Appends `len` bytes from `offset` to `out`; on error `out` is unchanged.
    /// A chunk is read in pieces (`machine::PIECE`) as its frame goes out, so
    /// `offset` may be anywhere in a chunk.
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError>;
    /// The bytes a chunk of `len` takes in a Chunk frame's body: `len`
    /// itself (the simulator's storage sends a short token for it).
    fn body_len(&self, len: usize) -> usize {
        len
    }
    /// Writes `data` at `offset`: a whole chunk, or a piece of one as it arrives.
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// The check of a chunk arriving, fed its body piece by piece. (The
    /// simulator's storage moves a token for a chunk's bytes and checks it
    /// against the same hash.)
    fn check(&self) -> Box<dyn Check> {
        Box::new(Sha1Check::default())
    }
    /// Every chunk is verified: make the file durable under its final name.
    fn finish(&mut self) -> io::Result<()>;
}

/// A chunk's body checked as it arrives, so that no connection holds a
/// whole chunk to check it.
pub trait Check {
    fn update(&mut self, data: &[u8]);
    /// Whether what came is a chunk of `len` bytes whose SHA-1 is `hash`.
    fn passes(self: Box<Self>, len: usize, hash: &Hash20) -> bool;
}

/// SHA-1 over the bytes, as they come.
#[derive(Default)]
pub struct Sha1Check {
    hasher: Hasher,
    len: usize,
}

impl Check for Sha1Check {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len = self.len.saturating_add(data.len());
    }

    fn passes(self: Box<Self>, len: usize, hash: &Hash20) -> bool {
        self.len == len && self.hasher.finish() == *hash
    }
}

/// Appends `len` bytes of `file` at `offset` to `out`.
pub fn read_into(file: &File, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
    let start = out.len();
    out.resize(start + len, 0);
    if let Err(e) = file.read_exact_at(out.get_mut(start..).unwrap_or(&mut []), offset) {
        out.truncate(start);
        return Err(ReadError::Io(e));
    }
    Ok(())
}

/// What a shared file looked like when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    pub fn of(file: &File) -> io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp { len: m.len(), modified: m.modified().ok() })
    }

    pub fn size(&self) -> u64 {
        self.len
    }
}

/// A file the user shares: read in place, never written. A size or
/// modification time that differs from hashing time means the bytes may no
/// longer match their hashes, so nothing more is served from it.
pub struct SharedFile {
    file: File,
    stamp: Stamp,
}

impl SharedFile {
    pub fn new(file: File, stamp: Stamp) -> SharedFile {
        SharedFile { file, stamp }
    }
}

impl Storage for SharedFile {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        // One fstat per chunk: cheap next to the read, and it catches an edit.
        if Stamp::of(&self.file).map_err(ReadError::Io)? != self.stamp {
            return Err(ReadError::Changed);
        }
        read_into(&self.file, offset, len, out)
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::other("a shared file is never written"))
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;
    use std::io::Write;

    #[test]
    fn a_chunk_checked_in_pieces_passes_as_a_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let hash = Hash20::of(&data);
        let mut check: Box<dyn Check> = Box::new(Sha1Check::default());
        data.chunks(300).for_each(|piece| check.update(piece));
        assert!(check.passes(1000, &hash));
        let mut short: Box<dyn Check> = Box::new(Sha1Check::default());
        short.update(&data[..999]);
        assert!(!short.passes(1000, &hash), "a byte short");
        let mut long: Box<dyn Check> = Box::new(Sha1Check::default());
        long.update(&data);
        assert!(!long.passes(999, &Hash20::of(&data[..999])), "a byte long");
    }

    #[test]
    fn a_changed_shared_file_is_not_served() {
        let dir = fresh("storage-changed");
        let path = dir.join("s");
        std::fs::write(&path, [1u8; 1000]).unwrap();
        let file = File::open(&path).unwrap();
        let stamp = Stamp::of(&file).unwrap();
        let mut shared = SharedFile::new(file, stamp);
        let mut out = Vec::new();
        shared.read(10, 5, &mut out).unwrap();
        assert_eq!(out, [1u8; 5]);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
        out.clear();
        assert!(matches!(shared.read(0, 10, &mut out), Err(ReadError::Changed)));
        assert!(out.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Where a file's chunk bytes live. One trait for a shared file (read only,
//! withdrawn if it changes under us) and a download (the leecher's
//! `part_file.rs`: written in place, read back to serve verified chunks,
//! synced and renamed when complete). The in-memory one of the cores' tests
//! is the simulator's (`sim::content::Store`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use crate::hash::Hash20;

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
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError>;
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Whether `data` is a chunk of `len` bytes whose SHA-1 is `hash`. (The
    /// simulator's storage moves a token for a chunk's bytes and checks it
    /// against the same hash.)
    fn verify(&self, data: &[u8], len: usize, hash: &Hash20) -> bool {
        data.len() == len && Hash20::of(data) == *hash
    }
    /// Every chunk is verified: make the file durable under its final name.
    fn finish(&mut self) -> io::Result<()>;
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

//! Where the seeder's chunk bytes come from: positioned reads of the shared
//! files, never the whole file in memory. A file whose size or modification
//! time changed since it was hashed is reported, so stale bytes that no
//! longer match their hash are never served.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::hash::Hasher;
use crate::meta::FileMeta;

/// Why a chunk could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file changed on disk since it was hashed.
    Changed,
    Io(io::Error),
}

/// Chunk bytes by file number and position.
pub trait ChunkStore {
    /// Appends `len` bytes of file `file` from `offset` to `out`.
    fn read(&mut self, file: usize, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError>;
}

/// What a file looked like when it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(file: &File) -> io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp { len: m.len(), modified: m.modified().ok() })
    }
}

struct Shared {
    file: File,
    stamp: Stamp,
}

/// The shared files, open for reading.
#[derive(Default)]
pub struct FileStore {
    files: Vec<Shared>,
}

impl FileStore {
    /// Adds an open file hashed while it had `stamp`; returns its number.
    fn push(&mut self, file: File, stamp: Stamp) -> usize {
        self.files.push(Shared { file, stamp });
        self.files.len() - 1
    }
}

impl ChunkStore for FileStore {
    fn read(&mut self, file: usize, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let shared = self.files.get(file).ok_or(ReadError::Changed)?;
        // One fstat per chunk: cheap next to the read, and it catches an edit.
        if Stamp::of(&shared.file).map_err(ReadError::Io)? != shared.stamp {
            return Err(ReadError::Changed);
        }
        let start = out.len();
        out.resize(start + len, 0);
        let result = shared.file.read_exact_at(out.get_mut(start..).unwrap_or(&mut []), offset);
        if let Err(e) = result {
            out.truncate(start);
            return Err(ReadError::Io(e));
        }
        Ok(())
    }
}

/// Bytes read and hashed at a time while a file is hashed.
const HASH_BLOCK: usize = 128 * 1024;

/// Hashes `path` into chunks of `chunk_size`, calling `progress` with the
/// bytes done so far, and keeps the file open in `store`.
/// Returns the metadata and the file's number in the store.
pub fn hash_file(
    store: &mut FileStore,
    path: &Path,
    name: String,
    chunk_size: u32,
    mut progress: impl FnMut(u64, u64),
) -> Result<(FileMeta, usize), HashError> {
    let file = File::open(path).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
    let stamp = Stamp::of(&file).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
    // Blocks small enough to stay in the CPU cache between the copy out of
    // the page cache and the hash: a whole-chunk buffer is read from memory twice.
    let mut buf = vec![0u8; HASH_BLOCK.min(chunk_size as usize)];
    let mut hashes = Vec::new();
    let mut offset = 0u64;
    while offset < stamp.len {
        let chunk_end = (offset + u64::from(chunk_size)).min(stamp.len);
        let mut hasher = Hasher::default();
        while offset < chunk_end {
            let block = &mut buf[..(chunk_end - offset).min(HASH_BLOCK as u64) as usize];
            file.read_exact_at(block, offset).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
            hasher.update(block);
            offset += block.len() as u64;
        }
        hashes.push(hasher.finish());
        progress(offset, stamp.len);
    }
    if Stamp::of(&file).map_err(|e| HashError::Io(path.to_path_buf(), e))? != stamp {
        return Err(HashError::ChangedWhileHashing(path.to_path_buf()));
    }
    let meta =
        FileMeta::new(name, stamp.len, chunk_size, hashes).map_err(|e| HashError::Meta(path.to_path_buf(), e))?;
    Ok((meta, store.push(file, stamp)))
}

/// Why a file could not be shared.
#[derive(Debug)]
pub enum HashError {
    Io(PathBuf, io::Error),
    ChangedWhileHashing(PathBuf),
    Meta(PathBuf, crate::meta::MetaError),
}

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            HashError::ChangedWhileHashing(p) => write!(f, "{}: changed while it was being hashed", p.display()),
            HashError::Meta(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for HashError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;
    use crate::meta::MIN_CHUNK;
    use std::io::Write;

    fn temp_file(tag: &str, data: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("lmk-store-{tag}-{}", std::process::id()));
        File::create(&path).unwrap().write_all(data).unwrap();
        path
    }

    #[test]
    fn hashes_and_reads_chunks() {
        let data: Vec<u8> = (0..(MIN_CHUNK as usize * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let path = temp_file("read", &data);
        let mut store = FileStore::default();
        let mut calls = 0;
        let (meta, n) = hash_file(&mut store, &path, "x".into(), MIN_CHUNK, |_, _| calls += 1).unwrap();
        assert_eq!((meta.chunk_count(), calls), (3, 3));
        assert_eq!(meta.hashes()[2], Hash20::of(&data[MIN_CHUNK as usize * 2..]));
        let mut out = b"hdr".to_vec();
        store.read(n, meta.chunk_offset(2), 100, &mut out).unwrap();
        assert_eq!(&out[3..], &data[MIN_CHUNK as usize * 2..]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_changed_file_is_not_served() {
        let path = temp_file("changed", &[1u8; 1000]);
        let mut store = FileStore::default();
        let (_, n) = hash_file(&mut store, &path, "x".into(), MIN_CHUNK, |_, _| {}).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
        let mut out = Vec::new();
        assert!(matches!(store.read(n, 0, 1000, &mut out), Err(ReadError::Changed)));
        assert!(out.is_empty());
        std::fs::remove_file(path).unwrap();
    }
}

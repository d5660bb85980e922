//! Hashing a shared file into its metadata, in cache-sized blocks, and
//! keeping it open (with what it looked like) to serve its chunks from.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::hash::Hasher;
use crate::meta::FileMeta;
use crate::peer::storage::{SharedFile, Stamp};

/// Bytes read and hashed at a time while a file is hashed.
const HASH_BLOCK: usize = 128 * 1024;

/// Hashes `path` into chunks of `chunk_size` (None: `meta::auto_chunk`), calling `progress` with the
/// bytes done so far. Returns the metadata and the open file to serve.
pub fn hash_file(
    path: &Path,
    name: String,
    chunk_size: Option<u32>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(FileMeta, SharedFile), HashError> {
    let file = File::open(path).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
    let stamp = Stamp::of(&file).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
    let chunk_size = chunk_size.unwrap_or_else(|| crate::meta::auto_chunk(stamp.size()));
    // Blocks small enough to stay in the CPU cache between the copy out of
    // the page cache and the hash: a whole-chunk buffer is read from memory twice.
    let mut buf = vec![0u8; HASH_BLOCK.min(chunk_size as usize)];
    let mut hashes = Vec::new();
    let mut offset = 0u64;
    while offset < stamp.size() {
        let chunk_end = (offset + u64::from(chunk_size)).min(stamp.size());
        let mut hasher = Hasher::default();
        while offset < chunk_end {
            let block = &mut buf[..(chunk_end - offset).min(HASH_BLOCK as u64) as usize];
            file.read_exact_at(block, offset).map_err(|e| HashError::Io(path.to_path_buf(), e))?;
            hasher.update(block);
            offset += block.len() as u64;
        }
        hashes.push(hasher.finish());
        progress(offset, stamp.size());
    }
    if Stamp::of(&file).map_err(|e| HashError::Io(path.to_path_buf(), e))? != stamp {
        return Err(HashError::ChangedWhileHashing(path.to_path_buf()));
    }
    let meta =
        FileMeta::new(name, stamp.size(), chunk_size, hashes).map_err(|e| HashError::Meta(path.to_path_buf(), e))?;
    Ok((meta, SharedFile::new(file, stamp)))
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
    use crate::peer::storage::Storage;
    use std::io::Write;

    #[test]
    fn hashes_and_reads_chunks() {
        let data: Vec<u8> = (0..(MIN_CHUNK as usize * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("lmk-store-read-{}", std::process::id()));
        File::create(&path).unwrap().write_all(&data).unwrap();
        let mut calls = 0;
        let (meta, mut file) = hash_file(&path, "x".into(), Some(MIN_CHUNK), |_, _| calls += 1).unwrap();
        assert_eq!((meta.chunk_count(), calls), (3, 3));
        assert_eq!(meta.hashes()[2], Hash20::of(&data[MIN_CHUNK as usize * 2..]));
        let mut out = b"hdr".to_vec();
        file.read(meta.chunk_offset(2), 100, &mut out).unwrap();
        assert_eq!(&out[3..], &data[MIN_CHUNK as usize * 2..]);
        std::fs::remove_file(path).unwrap();
    }
}

//! File metadata: what the catalog says about a shared file, and the rules
//! that make it trustworthy. The content id is the SHA-1 of the canonical
//! encoding, so chunk hashes fetched from an untrusted tracker are checked
//! against the id the user asked for before a single chunk is requested.

use std::fmt;

use crate::common::text;
use crate::hash::{ContentId, Hash20};
use crate::wire;

/// Smallest chunk size a seeder may use.
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Largest chunk size: bounds every peer frame and every buffer.
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;
/// The smallest chunk size a seeder picks by itself.
const AUTO_CHUNK: u32 = 64 * 1024;
/// A file has up to this many chunks of `AUTO_CHUNK` before its chunks grow.
const AUTO_CHUNKS: u64 = 8192;
/// Most chunks one file may have: its hashes must fit one catalog frame.
pub const MAX_CHUNKS: u32 = (wire::catalog::MAX_CATALOG_FRAME - 1024) / 20;

/// The chunk size a seeder hashes a file of `size` bytes in unless told
/// otherwise: 64 KiB up to 512 MiB, then doubling so a file has at most
/// 8192 chunks (16 MiB above 64 GiB). A chunk is passed on only once whole,
/// so the last chunks reach the last peers one chunk time per hop later:
/// 1000 peers of 64 MiB finish at 1.31 x the P2P bound with 64 KiB chunks,
/// 1.40 x with 128 KiB, and 100 of 256 MiB at 1.25 x with 1 MiB (simulator).
pub fn auto_chunk(size: u64) -> u32 {
    let want = size.div_ceil(AUTO_CHUNKS).next_power_of_two();
    want.clamp(u64::from(AUTO_CHUNK), u64::from(MAX_CHUNK)) as u32
}

/// Name, size, chunk size and the SHA-1 of every chunk of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    name: String,
    size: u64,
    chunk_size: u32,
    hashes: Vec<Hash20>,
}

/// Metadata that breaks a structural rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaError {
    NameLength(usize),
    EmptyFile,
    ChunkSize(u32),
    ChunkCount { expected: u64, got: usize },
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::NameLength(n) => write!(f, "name length {n} not in 1..={}", wire::MAX_NAME),
            MetaError::EmptyFile => write!(f, "empty files are not shared"),
            MetaError::ChunkSize(c) => write!(f, "chunk size {c} not in {MIN_CHUNK}..={MAX_CHUNK}"),
            MetaError::ChunkCount { expected, got } => {
                write!(f, "{got} chunk hashes for a file of {expected} chunks (at most {MAX_CHUNKS})")
            }
        }
    }
}

impl std::error::Error for MetaError {}

impl FileMeta {
    /// Checks the structure: name length, non-empty file, chunk size in range,
    /// exactly one hash per chunk. Path safety of the name is a separate check
    /// ([`check_name`]) so a reader can report an unsafe name precisely.
    pub fn new(name: String, size: u64, chunk_size: u32, hashes: Vec<Hash20>) -> Result<Self, MetaError> {
        if name.is_empty() || name.len() > wire::MAX_NAME {
            return Err(MetaError::NameLength(name.len()));
        }
        if size == 0 {
            return Err(MetaError::EmptyFile);
        }
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(MetaError::ChunkSize(chunk_size));
        }
        let expected = chunk_count(size, chunk_size);
        if expected > u64::from(MAX_CHUNKS) || hashes.len() as u64 != expected {
            return Err(MetaError::ChunkCount { expected, got: hashes.len() });
        }
        Ok(FileMeta { name, size, chunk_size, hashes })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn hashes(&self) -> &[Hash20] {
        &self.hashes
    }

    /// Number of chunks; fits u32 because of [`MAX_CHUNKS`].
    pub fn chunk_count(&self) -> u32 {
        self.hashes.len() as u32
    }

    /// Byte offset of chunk `index` in the file.
    pub fn chunk_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Length of chunk `index` (the last one may be short), `None` past the end.
    pub fn chunk_len(&self, index: u32) -> Option<u32> {
        if index >= self.chunk_count() {
            return None;
        }
        let rest = self.size - self.chunk_offset(index);
        Some(rest.min(u64::from(self.chunk_size)) as u32)
    }

    /// SHA-1 of the canonical encoding: the file's identity everywhere.
    pub fn content_id(&self) -> ContentId {
        let mut buf = Vec::with_capacity(64 + self.hashes.len() * 20);
        wire::catalog::encode_meta(self, &mut buf);
        Hash20::of(&buf)
    }
}

/// Number of chunks of `chunk_size` needed for `size` bytes.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1)))
}

/// A name that would escape or confuse the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeName {
    pub name: String,
    pub why: &'static str,
}

impl fmt::Display for UnsafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsafe file name \"{}\": {}", text::escape(&self.name), self.why)
    }
}

impl std::error::Error for UnsafeName {}

/// Accepts only a plain file name: no path separators, no `.` or `..`, no
/// control, format or separator character (Cc, Cf, Zl, Zp: NUL, ESC, U+202E,
/// U+200B, U+2028 ...), so a name can neither drive a terminal nor pass for
/// another. Everything that publishes a name or touches the disk checks this.
pub fn check_name(name: &str) -> Result<(), UnsafeName> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > wire::MAX_NAME {
        Some("longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("names a directory")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator")
    } else if name.chars().any(text::is_hidden) {
        Some("contains a control or invisible format character")
    } else {
        None
    };
    match why {
        Some(why) => Err(UnsafeName { name: name.to_string(), why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> Result<FileMeta, MetaError> {
        let n = chunk_count(size, MIN_CHUNK) as usize;
        FileMeta::new("f.bin".into(), size, MIN_CHUNK, vec![Hash20::default(); n])
    }

    #[test]
    fn chunk_geometry() {
        let m = meta(u64::from(MIN_CHUNK) * 2 + 5).unwrap();
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.chunk_len(0), Some(MIN_CHUNK));
        assert_eq!(m.chunk_len(2), Some(5));
        assert_eq!(m.chunk_len(3), None);
        assert_eq!(m.chunk_offset(2), u64::from(MIN_CHUNK) * 2);
    }

    #[test]
    fn auto_chunks_are_small_until_a_file_has_8192() {
        const K: u64 = 1024;
        let half_gib = K * K * K / 2;
        for (size, chunk) in [
            (0, 64 * K),
            (1, 64 * K),
            (half_gib, 64 * K),
            (half_gib + 1, 128 * K),
            (K * K * K, 128 * K),
            (K * K * K + 1, 256 * K),
        ] {
            assert_eq!(u64::from(auto_chunk(size)), chunk, "{size}");
        }
        assert_eq!(auto_chunk(64 * K * K * K), MAX_CHUNK / 2);
        assert_eq!(auto_chunk(64 * K * K * K + 1), MAX_CHUNK);
        assert_eq!(auto_chunk(u64::MAX), MAX_CHUNK);
        assert!(chunk_count(1 << 40, auto_chunk(1 << 40)) <= u64::from(MAX_CHUNKS));
    }

    #[test]
    fn structural_rules() {
        assert_eq!(meta(0), Err(MetaError::EmptyFile));
        assert!(matches!(FileMeta::new("x".into(), 10, 1, vec![]), Err(MetaError::ChunkSize(1))));
        assert!(matches!(
            FileMeta::new("x".into(), 10, MIN_CHUNK, vec![]),
            Err(MetaError::ChunkCount { expected: 1, got: 0 })
        ));
        assert!(matches!(
            FileMeta::new(String::new(), 10, MIN_CHUNK, vec![Hash20::default()]),
            Err(MetaError::NameLength(0))
        ));
    }

    #[test]
    fn content_id_depends_on_every_field() {
        let a = meta(100).unwrap();
        let b = FileMeta::new("g.bin".into(), 100, MIN_CHUNK, vec![Hash20::default()]).unwrap();
        let c = FileMeta::new("f.bin".into(), 100, MIN_CHUNK, vec![Hash20::of(b"x")]).unwrap();
        assert_ne!(a.content_id(), b.content_id());
        assert_ne!(a.content_id(), c.content_id());
        assert_eq!(a.content_id(), meta(100).unwrap().content_id());
    }

    #[test]
    fn unsafe_names_refused() {
        for bad in
            ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "a\0b", "a\nb", "a\u{202e}b", "a\u{200b}", "\u{2028}"]
        {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["file.bin", "ümlaut ok.txt", "..hidden-but-flat", "a..b"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }
}

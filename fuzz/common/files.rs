//! The file the core targets share: a small file of the simulator's
//! content, its chunks travelling as their bytes.

use std::rc::Rc;

use lmk::meta::MIN_CHUNK;
use lmk::sim::content::Content;

const CHUNK: u64 = MIN_CHUNK as u64;

/// A file of 1..=4 chunks (the last one short).
pub fn test_file(chunks: u8, name: &str) -> Rc<Content> {
    let chunks = u64::from(chunks % 4) + 1;
    Content::with_bytes(name, (chunks - 1) * CHUNK + CHUNK / 3, MIN_CHUNK, chunks).expect("valid test file")
}

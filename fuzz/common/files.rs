//! The file the core targets share, kept in memory: its bytes, metadata and
//! storage, and where its tracker is.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;

use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::peer::storage::{ReadError, Storage};

pub const TRACKER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 6969);
const CHUNK: usize = MIN_CHUNK as usize;

/// A file of 1..=4 chunks (the last one short) with its metadata.
pub struct TestFile {
    pub meta: FileMeta,
    pub data: Vec<u8>,
}

impl TestFile {
    pub fn new(chunks: u8, name: &str) -> TestFile {
        let chunks = usize::from(chunks % 4) + 1;
        let data: Vec<u8> = (0..(chunks - 1) * CHUNK + CHUNK / 3).map(|i| (i * 7 + i / 251) as u8).collect();
        let hashes = data.chunks(CHUNK).map(Hash20::of).collect();
        let meta = FileMeta::new(name.into(), data.len() as u64, MIN_CHUNK, hashes).expect("valid test file");
        TestFile { meta, data }
    }

    pub fn chunk(&self, index: u32) -> Option<&[u8]> {
        self.data.chunks(CHUNK).nth(index as usize)
    }
}

/// A file in memory, bounds-checked like a real file; clones share the bytes,
/// so a target can check what a finished download holds.
#[derive(Clone, Default)]
pub struct MemStore(pub Rc<RefCell<Vec<u8>>>);

impl MemStore {
    pub fn new(data: Vec<u8>) -> MemStore {
        MemStore(Rc::new(RefCell::new(data)))
    }
}

impl Storage for MemStore {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let data = self.0.borrow();
        let start = usize::try_from(offset).map_err(|_| ReadError::Changed)?;
        let bytes = start.checked_add(len).and_then(|end| data.get(start..end)).ok_or(ReadError::Changed)?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut data = self.0.borrow_mut();
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let slot = start
            .checked_add(bytes.len())
            .and_then(|end| data.get_mut(start..end))
            .ok_or(io::ErrorKind::InvalidInput)?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

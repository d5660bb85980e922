//! Where a file's chunk bytes live. One trait for a shared file (read only,
//! withdrawn if it changes under us) and a download (written in place into
//! `DIR/NAME.part`, read back to serve verified chunks, synced and renamed
//! to `DIR/NAME` when complete); an in-memory one for the cores' tests.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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
fn read_into(file: &File, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
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

/// A download: a scratch file (the leecher keeps it locked and names it by
/// content id), renamed to `DIR/NAME` once complete. The open descriptor
/// survives the rename, so the file is served on from it.
pub struct PartFile {
    file: File,
    scratch: PathBuf,
    target: PathBuf,
    /// Replace an existing `target` (`--overwrite`); otherwise finishing fails if one appeared.
    replace: bool,
    finished: bool,
}

impl PartFile {
    /// Wraps an open, sized scratch file that becomes `target` when complete.
    pub fn new(file: File, scratch: PathBuf, target: PathBuf, replace: bool) -> PartFile {
        PartFile { file, scratch, target, replace, finished: false }
    }
}

impl Storage for PartFile {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        read_into(&self.file, offset, len, out)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.file.sync_all()?;
        rename(&self.scratch, &self.target, self.replace)?;
        // Make the rename itself durable.
        let dir = self.target.parent().unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all())?;
        self.finished = true;
        // Our own leftovers: the writer's PID file, and the scratch directory if now empty.
        let _ = std::fs::remove_file(self.scratch.with_extension("pid"));
        if let Some(scratch_dir) = self.scratch.parent() {
            let _ = std::fs::remove_dir(scratch_dir);
        }
        Ok(())
    }
}

/// `rename`, refusing to replace an existing `to` unless `replace`: a file
/// the user put there during the download is never clobbered.
fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, from_c.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), libc::RENAME_NOREPLACE)
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} appeared meanwhile; the download stays in {}", to.display(), from.display()),
        )),
        // A file system without RENAME_NOREPLACE: look, then rename.
        Some(libc::EINVAL) if !to.exists() => std::fs::rename(from, to),
        _ => Err(e),
    }
}

/// A file in memory, for the cores' tests.
#[cfg(test)]
#[derive(Default, Clone)]
pub struct MemStorage {
    pub data: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    pub finished: std::rc::Rc<std::cell::Cell<bool>>,
    pub fail_writes: bool,
}

#[cfg(test)]
impl MemStorage {
    pub fn with(data: Vec<u8>) -> MemStorage {
        MemStorage { data: std::rc::Rc::new(std::cell::RefCell::new(data)), ..MemStorage::default() }
    }
}

#[cfg(test)]
impl Storage for MemStorage {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let data = self.data.borrow();
        let bytes = data.get(offset as usize..offset as usize + len).ok_or(ReadError::Changed)?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.fail_writes {
            return Err(io::Error::other("disk full"));
        }
        let mut data = self.data.borrow_mut();
        let slot = data.get_mut(offset as usize..offset as usize + bytes.len()).ok_or(io::ErrorKind::InvalidInput)?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished.set(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn part(dir: &Path, name: &str, len: u64, replace: bool) -> PartFile {
        std::fs::create_dir_all(dir.join(".lmk")).unwrap();
        let scratch = dir.join(".lmk/x.part");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&scratch).unwrap();
        file.set_len(len).unwrap();
        PartFile::new(file, scratch, dir.join(name), replace)
    }

    #[test]
    fn part_file_becomes_final_only_on_finish_and_still_serves() {
        let dir = fresh("storage-finish");
        let mut d = part(&dir, "f.bin", 6, false);
        d.write(3, b"def").unwrap();
        d.write(0, b"abc").unwrap();
        assert!(!dir.join("f.bin").exists());
        assert_eq!(std::fs::read(dir.join(".lmk/x.part")).unwrap(), b"abcdef");
        d.finish().unwrap();
        assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), b"abcdef");
        assert!(!dir.join(".lmk").exists(), "the emptied scratch directory is removed");
        let mut out = b"hdr".to_vec();
        d.read(2, 3, &mut out).unwrap();
        assert_eq!(out, b"hdrcde", "served from the renamed file");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn finishing_never_replaces_a_file_that_appeared_unless_asked() {
        let dir = fresh("storage-noreplace");
        let mut d = part(&dir, "f.bin", 3, false);
        d.write(0, b"new").unwrap();
        std::fs::write(dir.join("f.bin"), b"user's").unwrap();
        let e = d.finish().unwrap_err();
        assert!(e.to_string().contains("appeared meanwhile"), "{e}");
        assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), b"user's");
        assert_eq!(std::fs::read(dir.join(".lmk/x.part")).unwrap(), b"new", "the download is kept");
        let mut d = part(&dir, "f.bin", 3, true);
        d.write(0, b"new").unwrap();
        d.finish().unwrap();
        assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), b"new", "--overwrite replaces it");
        std::fs::remove_dir_all(dir).unwrap();
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

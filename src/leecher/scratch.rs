//! Where a download lives until it is complete: `DIR/.lmk/<content id>.part`,
//! named by content, not by name, so any name up to 255 bytes works and a
//! user's own `NAME.part` is never touched. The scratch file is locked
//! (`flock`) for as long as a process writes it, and its writer's PID sits
//! beside it in `<content id>.pid` for the message a second writer gets.
//!
//! Opening a download: a `DIR/NAME` that already holds the content ends it;
//! one that differs is refused unless replacing was asked for; the space is
//! reserved (`fallocate`) before any byte is fetched; the chunks already in
//! the scratch file are verified by SHA-1 (nothing else is trusted), and
//! those become the chunks the download starts with.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::common::fmt::bytes;
use crate::hash::{ContentId, Hash20};
use crate::meta::{check_name, FileMeta};
use crate::peer::bitfield::Bitfield;
use crate::peer::storage::{PartFile, Storage};

use super::machine::{Disk, Opened};

/// The scratch directory inside the output directory.
pub const SCRATCH_DIR: &str = ".lmk";
/// Open attempts when the scratch file is renamed away under us.
const OPEN_TRIES: usize = 5;

/// Downloads into one directory.
pub struct Dir {
    pub path: PathBuf,
    /// Replace a `DIR/NAME` with other content (`--overwrite`).
    pub overwrite: bool,
}

impl Disk for Dir {
    /// Creates the directory first: only now, when a file is to be written
    /// (a `get` of a name the catalog does not have leaves no empty directory).
    fn open(&mut self, meta: &FileMeta) -> Result<Opened, String> {
        std::fs::create_dir_all(&self.path).map_err(|e| format!("cannot create {}: {e}", self.path.display()))?;
        open(&self.path, meta, self.overwrite).map_err(|e| e.to_string())
    }
}

/// Why a download cannot start.
#[derive(Debug)]
pub enum Error {
    /// `DIR/NAME` exists with other content, and replacing was not asked for.
    Exists(PathBuf),
    /// `DIR/NAME` is a directory (or something else rename cannot replace).
    NotAFile(PathBuf),
    /// Not enough free space: `need` more bytes, `free` available.
    NoSpace {
        size: u64,
        need: u64,
        free: u64,
    },
    Io(String, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Exists(p) => {
                write!(f, "{} exists with other content; not overwritten (--overwrite replaces it)", p.display())
            }
            Error::NotAFile(p) => write!(f, "{} exists and is not a regular file", p.display()),
            Error::NoSpace { size, need, free } => write!(
                f,
                "not enough disk space: the file needs {} ({} more than reserved already), {} free",
                bytes(*size),
                bytes(*need),
                bytes(*free)
            ),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::Io(format!("{what} {}", path.display()), e)
}

/// `DIR/.lmk/<content id>.part`.
pub fn scratch_path(dir: &Path, id: ContentId) -> PathBuf {
    dir.join(SCRATCH_DIR).join(format!("{}.part", id.to_hex()))
}

/// Opens the download of `meta` into `dir`; see the module doc.
pub fn open(dir: &Path, meta: &FileMeta, overwrite: bool) -> Result<Opened, Error> {
    check_name(meta.name()).map_err(|e| Error::Io("refusing the name".into(), io::Error::other(e)))?;
    let target = dir.join(meta.name());
    if meta.name() == SCRATCH_DIR {
        return Err(Error::NotAFile(target));
    }
    if existing_is_complete(&target, meta, overwrite)? {
        return Ok(Opened::Complete);
    }
    let scratch = scratch_path(dir, meta.content_id());
    let Some((file, created)) = lock(&scratch)? else {
        return Ok(Opened::Busy { holder: holder(&scratch) });
    };
    // Only a writer holding the lock writes the PID file.
    let _ = std::fs::write(scratch.with_extension("pid"), format!("{}\n", std::process::id()));
    if let Err(e) = reserve(&file, meta.size()) {
        if created {
            // Ours and empty: nothing of value is lost.
            let _ = std::fs::remove_file(&scratch);
            let _ = std::fs::remove_file(scratch.with_extension("pid"));
            if let Some(scratch_dir) = scratch.parent() {
                let _ = std::fs::remove_dir(scratch_dir);
            }
        }
        return Err(e);
    }
    let have = verify(&file, meta).map_err(io_err("cannot read", &scratch))?;
    let mut part = PartFile::new(file, scratch.clone(), target.clone(), overwrite);
    if have.is_full() {
        part.finish().map_err(io_err("cannot finish", &target))?;
        return Ok(Opened::Complete);
    }
    Ok(Opened::Part { storage: Box::new(part), have })
}

/// True if `target` is a regular file holding exactly `meta`'s content; an
/// error if it exists otherwise (unless `overwrite` and it is a file).
fn existing_is_complete(target: &Path, meta: &FileMeta, overwrite: bool) -> Result<bool, Error> {
    let info = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::Io(format!("cannot inspect {}", target.display()), e)),
        Ok(info) => info,
    };
    if info.is_dir() {
        return Err(Error::NotAFile(target.to_path_buf()));
    }
    if info.is_file() && info.len() == meta.size() {
        let file = File::open(target).map_err(io_err("cannot read", target))?;
        if verify(&file, meta).map_err(io_err("cannot read", target))?.is_full() {
            return Ok(true);
        }
    }
    match overwrite {
        true => Ok(false),
        false => Err(Error::Exists(target.to_path_buf())),
    }
}

/// Opens and locks the scratch file: `None` if another process holds it.
/// `created`: the file did not exist before.
fn lock(scratch: &Path) -> Result<Option<(File, bool)>, Error> {
    let dir = scratch.parent().unwrap_or(Path::new("."));
    for _ in 0..OPEN_TRIES {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(io_err("cannot create", dir)(e)),
            _ => {}
        }
        // A symlink is never followed: the scratch file is ours or nothing.
        let mut options = OpenOptions::new();
        options.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
        let (file, created) = match options.clone().create_new(true).open(scratch) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match options.open(scratch) {
                Ok(f) => (f, false),
                // Finished and renamed away just now: look again.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("cannot open", scratch)(e)),
            },
            // The directory was removed by a writer that finished: create it again.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot create", scratch)(e)),
        };
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(io_err("cannot lock", scratch)(e));
        }
        // The holder before us may have finished and renamed the file to
        // `DIR/NAME` while we waited: then the lock is on the wrong file.
        let ours = file.metadata().map_err(io_err("cannot inspect", scratch))?;
        match std::fs::symlink_metadata(scratch) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => return Ok(Some((file, created))),
            _ => continue,
        }
    }
    Err(Error::Io(format!("cannot lock {}", scratch.display()), io::Error::other("it keeps being replaced")))
}

/// Who holds the scratch file, from the PID file its holder wrote.
fn holder(scratch: &Path) -> String {
    let pid = std::fs::read_to_string(scratch.with_extension("pid")).ok();
    let pid = pid.as_deref().map(str::trim).filter(|p| p.parse::<u32>().is_ok());
    match pid {
        Some(pid) => format!("process {pid} is downloading it into {}", scratch.display()),
        None => format!("another process is downloading it into {}", scratch.display()),
    }
}

/// Reserves `size` bytes for the file, or says how much is missing.
fn reserve(file: &File, size: u64) -> Result<(), Error> {
    let info = file.metadata().map_err(|e| Error::Io("cannot inspect the scratch file".into(), e))?;
    let allocated = info.blocks().saturating_mul(512);
    let need = size.saturating_sub(allocated);
    let free = free_space(file).unwrap_or(u64::MAX);
    if need > free {
        return Err(Error::NoSpace { size, need, free });
    }
    let len = libc::off_t::try_from(size).map_err(|_| Error::NoSpace { size, need, free })?;
    // SAFETY: fallocate on a descriptor we own; no memory is involved.
    if len > 0 && unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EFBIG) => {
                let free = free_space(file).unwrap_or(0);
                let _ = file.set_len(info.len());
                return Err(Error::NoSpace { size, need, free });
            }
            // A file system without fallocate: a sparse file it is.
            Some(libc::EOPNOTSUPP) => {}
            _ => return Err(Error::Io("cannot reserve space".into(), e)),
        }
    }
    file.set_len(size).map_err(|e| Error::Io("cannot size the scratch file".into(), e))
}

/// Bytes an unprivileged writer may still use on `file`'s file system.
fn free_space(file: &File) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills `st` and we read it only on success.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    st.f_bavail.checked_mul(st.f_frsize)
}

/// The chunks of `file` that match their hashes. A chunk that lies wholly
/// in a hole reads as zeros; it is compared with the hash of zeros without
/// reading it (zeros can be genuine content, so the hash still decides).
pub fn verify(file: &File, meta: &FileMeta) -> io::Result<Bitfield> {
    let mut have = Bitfield::new(meta.chunk_count());
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; meta.chunk_size() as usize];
    let mut zeros: Option<(u32, Hash20)> = None;
    let mut next_data = 0u64;
    for (index, want) in (0u32..).zip(meta.hashes()) {
        let offset = meta.chunk_offset(index);
        let Some(n) = meta.chunk_len(index) else { break };
        let end = offset + u64::from(n);
        if end > len {
            break;
        }
        if next_data < end {
            next_data = seek_data(file, offset).unwrap_or(offset);
        }
        let got = if next_data >= end {
            match zeros {
                Some((zn, h)) if zn == n => h,
                _ => {
                    let h = Hash20::of(&vec![0u8; n as usize]);
                    zeros = Some((n, h));
                    h
                }
            }
        } else {
            let slot = buf.get_mut(..n as usize).unwrap_or(&mut []);
            file.read_exact_at(slot, offset)?;
            Hash20::of(slot)
        };
        if got == *want {
            have.set(index);
        }
    }
    Ok(have)
}

/// The first offset at or after `from` that holds data (`u64::MAX`: none).
fn seek_data(file: &File, from: u64) -> Option<u64> {
    let from = libc::off_t::try_from(from).ok()?;
    // SAFETY: lseek on a descriptor we own; reads use positioned I/O, so moving the offset is harmless.
    let at = unsafe { libc::lseek(file.as_raw_fd(), from, libc::SEEK_DATA) };
    if at >= 0 {
        return u64::try_from(at).ok();
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => Some(u64::MAX),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;

    /// `name` of 3 chunks of 16 KiB: random, zeros, a short tail.
    fn sample(name: &str) -> (Vec<u8>, FileMeta) {
        let mut data: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 3) as u8).collect();
        data.extend(vec![0u8; 16384]);
        data.extend(b"tail");
        let hashes = data.chunks(16384).map(Hash20::of).collect();
        let meta = FileMeta::new(name.into(), data.len() as u64, 16384, hashes).unwrap();
        (data, meta)
    }

    fn part(opened: Result<Opened, Error>) -> (Box<dyn Storage>, Bitfield) {
        match opened {
            Ok(Opened::Part { storage, have }) => (storage, have),
            Ok(Opened::Complete) => panic!("complete"),
            Ok(Opened::Busy { holder }) => panic!("busy: {holder}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn resumes_with_the_chunks_that_verify_and_a_zero_chunk_from_a_hole() {
        let dir = fresh("scratch-resume");
        let (data, meta) = sample("f");
        let (mut storage, have) = part(open(&dir, &meta, false));
        assert_eq!(have.count(), 1, "the zero chunk of a fresh sparse file is genuinely valid");
        storage.write(0, &data[..100]).unwrap();
        drop(storage);
        let (mut storage, have) = part(open(&dir, &meta, false));
        assert_eq!((have.get(0), have.get(1), have.get(2)), (false, true, false), "a torn chunk is fetched again");
        storage.write(0, &data[..16384]).unwrap();
        storage.write(32768, b"tail").unwrap();
        drop(storage);
        // Complete in the scratch file (a crash before the rename): finished at open.
        assert!(matches!(open(&dir, &meta, false), Ok(Opened::Complete)));
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), data);
        assert!(!dir.join(SCRATCH_DIR).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_writer_per_scratch_file_and_the_second_is_told_who() {
        let dir = fresh("scratch-lock");
        let (_, meta) = sample("f");
        let first = part(open(&dir, &meta, false));
        match open(&dir, &meta, false) {
            Ok(Opened::Busy { holder }) => {
                assert!(holder.contains(&format!("process {}", std::process::id())), "{holder}")
            }
            _ => panic!("a second writer was let in"),
        }
        drop(first);
        part(open(&dir, &meta, false));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_users_files_are_kept() {
        let dir = fresh("scratch-user");
        let (data, meta) = sample("f");
        std::fs::write(dir.join("f"), b"mine").unwrap();
        assert!(matches!(open(&dir, &meta, false), Err(Error::Exists(_))));
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"mine");
        part(open(&dir, &meta, true));
        std::fs::write(dir.join("f"), &data).unwrap();
        assert!(matches!(open(&dir, &meta, false), Ok(Opened::Complete)));
        std::fs::create_dir(dir.join("d")).unwrap();
        assert!(matches!(open(&dir, &sample("d").1, true), Err(Error::NotAFile(_))));
        assert!(open(&dir, &sample("..").1, false).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_symlink_planted_as_the_scratch_file_is_not_followed() {
        let dir = fresh("scratch-symlink");
        let (_, meta) = sample("f");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::fs::create_dir(dir.join(SCRATCH_DIR)).unwrap();
        std::os::unix::fs::symlink(&victim, scratch_path(&dir, meta.content_id())).unwrap();
        assert!(open(&dir, &meta, false).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Where a download lives until it is complete: `DIR/.lmk/<content id>.part`,
//! named by content, not by name, so any name up to 255 bytes works and a
//! user's own `NAME.part` is never touched. The scratch file is locked
//! (`flock`) for as long as a process writes it, and its writer's PID sits
//! beside it in `<content id>.pid` for the message a second writer gets.
//!
//! `DIR/.lmk` must be ours and writable by no one else, and everything in it
//! and in `DIR` is reached through directory descriptors (`out_dir.rs`), so a
//! shared download directory cannot be turned against its user.
//!
//! Opening a download: a `DIR/NAME` that already holds the content ends it;
//! one that differs is refused unless replacing was asked for; too little
//! free space is refused before any byte is fetched (the space itself is
//! reserved as the first chunks are written: `part_file.rs`); the chunks
//! already in the scratch file are verified by SHA-1 (nothing else is
//! trusted), and those become the chunks the download starts with.

use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::common::fmt::bytes;
use crate::hash::Hash20;
use crate::meta::{check_name, FileMeta};
use crate::peer::bitfield::Bitfield;
use crate::peer::storage::Storage;

use super::machine::{Disk, Opened};
use super::out_dir::{Identity, OutDir, ScratchDir, SCRATCH_DIR};
use super::part_file::PartFile;

/// Open attempts when the scratch file is renamed away under us.
const OPEN_TRIES: usize = 5;
/// Longest PID file read: a PID and a newline.
const MAX_PID_FILE: usize = 32;

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
    /// `DIR/.lmk`, or a file in it, is not ours alone: someone else could swap what we write.
    Unsafe(PathBuf, io::Error),
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
            Error::Unsafe(p, e) => write!(f, "refusing {}: {e}; remove it or download elsewhere", p.display()),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::Io(format!("{what} {}", path.display()), e)
}

/// Opens the download of `meta` into `dir`; see the module doc.
pub fn open(dir: &Path, meta: &FileMeta, overwrite: bool) -> Result<Opened, Error> {
    check_name(meta.name()).map_err(|e| Error::Io("refusing the name".into(), io::Error::other(e)))?;
    let target = dir.join(meta.name());
    if meta.name() == SCRATCH_DIR {
        return Err(Error::NotAFile(target));
    }
    let out = OutDir::open(dir).map_err(io_err("cannot open", dir))?;
    if existing_is_complete(&out, meta, overwrite)? {
        return Ok(Opened::Complete);
    }
    let id = meta.content_id().to_hex();
    let (part, pid) = (format!("{id}.part"), format!("{id}.pid"));
    let Some((scratch, file, created)) = lock(&out, &part)? else {
        return Ok(Opened::Busy { holder: holder(&out, &part, &pid) });
    };
    // Only a writer holding the lock writes the PID file.
    let _ = scratch.replace_with(&pid, format!("{}\n", std::process::id()).as_bytes());
    let scratch_path = scratch.path().join(&part);
    if let Err(e) = make_room(&file, meta.size()) {
        if created {
            // Ours and empty: nothing of value is lost.
            scratch.remove(&part);
            scratch.remove(&pid);
            out.remove_scratch_dir();
        }
        return Err(e);
    }
    let have = verify(&file, meta).map_err(io_err("cannot read", &scratch_path))?;
    let mut part = PartFile::new(file, meta.size(), out, scratch, part, meta.name().to_string(), overwrite);
    if have.is_full() {
        part.finish().map_err(io_err("cannot finish", &target))?;
        return Ok(Opened::Complete);
    }
    Ok(Opened::Part { storage: Box::new(part), have })
}

/// True if `DIR/NAME` is a regular file holding exactly `meta`'s content; an
/// error if it exists otherwise (unless `overwrite` and it is a file).
fn existing_is_complete(out: &OutDir, meta: &FileMeta, overwrite: bool) -> Result<bool, Error> {
    let target = out.path().join(meta.name());
    let Some(info) = out.stat(meta.name()).map_err(io_err("cannot inspect", &target))? else {
        return Ok(false);
    };
    let kind = FileType::from_raw_mode(info.st_mode);
    if kind == FileType::Directory {
        return Err(Error::NotAFile(target));
    }
    if kind == FileType::RegularFile && u64::try_from(info.st_size) == Ok(meta.size()) {
        let file = out.open_regular(meta.name()).map_err(io_err("cannot read", &target))?;
        if file.metadata().map(|m| m.len()).ok() == Some(meta.size())
            && verify(&file, meta).map_err(io_err("cannot read", &target))?.is_full()
        {
            return Ok(true);
        }
    }
    match overwrite {
        true => Ok(false),
        false => Err(Error::Exists(target)),
    }
}

/// Opens and locks the scratch file `part`: `None` if another process holds
/// it. `created`: the file did not exist before.
fn lock(out: &OutDir, part: &str) -> Result<Option<(ScratchDir, File, bool)>, Error> {
    let scratch_dir = out.path().join(SCRATCH_DIR);
    for _ in 0..OPEN_TRIES {
        let scratch = out.scratch().map_err(|e| Error::Unsafe(scratch_dir.clone(), e))?;
        let path = scratch.path().join(part);
        let (file, created) = match scratch.open_own(part) {
            Ok(opened) => opened,
            // Finished and renamed away, or the directory removed by a
            // writer that finished, just now: look again.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) if e.kind() == ErrorKind::PermissionDenied || e.kind() == ErrorKind::InvalidInput => {
                return Err(Error::Unsafe(path, e))
            }
            Err(e) => return Err(io_err("cannot open", &path)(e)),
        };
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(io_err("cannot lock", &path)(e));
        }
        // The holder before us may have finished and renamed the file to
        // `DIR/NAME` while we waited: then the lock is on the wrong file.
        let ours = Identity::of(&file).map_err(io_err("cannot inspect", &path))?;
        if scratch.identity(part).ok() == Some(ours) {
            return Ok(Some((scratch, file, created)));
        }
    }
    let e = io::Error::other("it keeps being replaced");
    Err(Error::Io(format!("cannot lock {}", scratch_dir.join(part).display()), e))
}

/// Who holds the scratch file, from the PID file its holder wrote.
fn holder(out: &OutDir, part: &str, pid: &str) -> String {
    let path = out.path().join(SCRATCH_DIR).join(part);
    let text = out.scratch().and_then(|s| s.read_small(pid, MAX_PID_FILE)).ok();
    let pid = text.as_deref().and_then(|t| std::str::from_utf8(t).ok()).map(str::trim);
    match pid.filter(|p| p.parse::<u32>().is_ok()) {
        Some(pid) => format!("process {pid} is downloading it into {}", path.display()),
        None => format!("another process is downloading it into {}", path.display()),
    }
}

/// Sizes the file to `size` if its file system has room for the bytes not
/// allocated yet, or says how much is missing.
fn make_room(file: &File, size: u64) -> Result<(), Error> {
    let info = file.metadata().map_err(|e| Error::Io("cannot inspect the scratch file".into(), e))?;
    let allocated = info.blocks().saturating_mul(512);
    let need = size.saturating_sub(allocated);
    let free = free_space(file).unwrap_or(u64::MAX);
    if need > free {
        return Err(Error::NoSpace { size, need, free });
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

    /// The space is checked at open and reserved by the writes
    /// (`part_file.rs`), so that reserving does not hold up the first request.
    #[test]
    fn opening_a_download_reserves_nothing_yet() {
        let dir = fresh("scratch-room");
        let (_, meta) = sample("f");
        let _download = part(open(&dir, &meta, false));
        let info =
            std::fs::metadata(dir.join(SCRATCH_DIR).join(format!("{}.part", meta.content_id().to_hex()))).unwrap();
        assert_eq!((info.len(), info.blocks()), (meta.size(), 0), "sized, not allocated");
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
        std::os::unix::fs::symlink(&victim, dir.join(SCRATCH_DIR).join(format!("{}.part", meta.content_id().to_hex())))
            .unwrap();
        assert!(open(&dir, &meta, false).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_scratch_directory_not_ours_alone_is_refused_and_left_alone() {
        let dir = fresh("scratch-owner");
        let (_, meta) = sample("f");
        let lmk = dir.join(SCRATCH_DIR);
        std::fs::create_dir(&lmk).unwrap();
        std::fs::set_permissions(&lmk, std::os::unix::fs::PermissionsExt::from_mode(0o757)).unwrap();
        let e = open(&dir, &meta, false).err().unwrap();
        assert!(e.to_string().contains("writable by others"), "{e}");
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&lmk, Some(65534), None).unwrap();
            std::fs::set_permissions(&lmk, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            let e = open(&dir, &meta, false).err().unwrap();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
        assert_eq!(std::fs::read_dir(&lmk).unwrap().count(), 0, "nothing was written into it");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_fifo_or_a_device_as_the_pid_file_is_replaced_or_not_read() {
        let dir = fresh("scratch-pid");
        let (_, meta) = sample("f");
        std::fs::create_dir(dir.join(SCRATCH_DIR)).unwrap();
        let pid = dir.join(SCRATCH_DIR).join(format!("{}.pid", meta.content_id().to_hex()));
        crate::common::test_dir::mkfifo(&pid);
        let first = part(open(&dir, &meta, false));
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), format!("{}\n", std::process::id()));
        for planted in ["/dev/zero", "/dev/null"] {
            std::fs::remove_file(&pid).unwrap();
            std::os::unix::fs::symlink(planted, &pid).unwrap();
            match open(&dir, &meta, false) {
                Ok(Opened::Busy { holder }) => assert!(holder.starts_with("another process"), "{holder}"),
                _ => panic!("a second writer was let in"),
            }
        }
        drop(first);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

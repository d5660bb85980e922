//! The download directory and its scratch directory `.lmk`, held open as
//! descriptors. Every name in them is looked at, opened and renamed relative
//! to a descriptor (`openat`, `renameat2`), never by a path walked again, so
//! a directory or link swapped in between a check and its use changes
//! nothing. `.lmk` must be ours and writable by no one else, because what
//! sits in it is trusted as ours: the scratch file and the PID file. Files in
//! it are opened without following links and without blocking (a FIFO), and
//! only regular files are used.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};

use crate::common::small_file::read_regular;

/// The scratch directory inside the output directory.
pub const SCRATCH_DIR: &str = ".lmk";
/// Mode bits of a file we create (the umask may take more away): the user's, readable by others.
const FILE_MODE: u32 = 0o644;

/// A file's identity: what a name must still point at to be ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub fn of(file: &File) -> io::Result<Identity> {
        Ok(Identity::from(&fs::fstat(file)?))
    }
}

impl From<&Stat> for Identity {
    fn from(st: &Stat) -> Identity {
        Identity { dev: st.st_dev, ino: st.st_ino }
    }
}

fn is_regular(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Flags for every file opened in these directories.
fn no_surprises() -> OFlags {
    OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

/// The output directory `DIR`.
pub struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutDir {
    /// Opens `path` (the user named it, so a link to a directory is fine).
    pub fn open(path: &Path) -> io::Result<OutDir> {
        let fd = fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(OutDir { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `name` is, links not followed; `None` if nothing.
    pub fn stat(&self, name: &str) -> io::Result<Option<Stat>> {
        match fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the regular file `name` for reading.
    pub fn open_regular(&self, name: &str) -> io::Result<File> {
        let file = File::from(fs::openat(&self.fd, name, OFlags::RDONLY | no_surprises(), Mode::empty())?);
        match is_regular(&fs::fstat(&file)?) {
            true => Ok(file),
            false => Err(io::Error::new(ErrorKind::InvalidInput, "not a regular file")),
        }
    }

    /// Opens `DIR/.lmk`, created 0700 if missing; refused unless it is a
    /// directory of ours that no one else may write to.
    pub fn scratch(&self) -> io::Result<ScratchDir> {
        let path = self.path.join(SCRATCH_DIR);
        match fs::mkdirat(&self.fd, SCRATCH_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match fs::openat(&self.fd, SCRATCH_DIR, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(io::Error::new(ErrorKind::PermissionDenied, "not a directory (a link, or a file)"))
            }
            Err(e) => return Err(e.into()),
        };
        let st = fs::fstat(&fd)?;
        if st.st_uid != euid() {
            let why = format!("owned by uid {}, not by this user (uid {})", st.st_uid, euid());
            return Err(io::Error::new(ErrorKind::PermissionDenied, why));
        }
        if st.st_mode & 0o022 != 0 {
            let why = format!("writable by others (mode {:o})", st.st_mode & 0o7777);
            return Err(io::Error::new(ErrorKind::PermissionDenied, why));
        }
        Ok(ScratchDir { fd, path })
    }

    /// Renames `from` in `scratch` to `to` here; an existing `to` is replaced only if `replace`.
    pub fn rename_in(&self, scratch: &ScratchDir, from: &str, to: &str, replace: bool) -> io::Result<()> {
        let flags = if replace { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
        match fs::renameat_with(&scratch.fd, from, &self.fd, to, flags) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(ErrorKind::AlreadyExists.into()),
            // A file system without RENAME_NOREPLACE: look, then rename.
            Err(rustix::io::Errno::INVAL) if self.stat(to)?.is_none() => {
                Ok(fs::renameat_with(&scratch.fd, from, &self.fd, to, RenameFlags::empty())?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes renames in the directory durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(fs::fsync(&self.fd)?)
    }

    /// Removes `.lmk` if it is empty.
    pub fn remove_scratch_dir(&self) {
        let _ = fs::unlinkat(&self.fd, SCRATCH_DIR, AtFlags::REMOVEDIR);
    }
}

/// `DIR/.lmk`, checked to be ours.
pub struct ScratchDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the regular file `name` of ours for reading and writing,
    /// creating it if missing; `true` when created.
    pub fn open_own(&self, name: &str) -> io::Result<(File, bool)> {
        let rw = OFlags::RDWR | no_surprises();
        let (fd, created) =
            match fs::openat(&self.fd, name, rw | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(FILE_MODE)) {
                Ok(fd) => (fd, true),
                Err(rustix::io::Errno::EXIST) => (fs::openat(&self.fd, name, rw, Mode::empty())?, false),
                Err(e) => return Err(e.into()),
            };
        let file = File::from(fd);
        let st = fs::fstat(&file)?;
        if !is_regular(&st) {
            return Err(io::Error::new(ErrorKind::InvalidInput, "not a regular file"));
        }
        if st.st_uid != euid() {
            let why = format!("owned by uid {}, not by this user (uid {})", st.st_uid, euid());
            return Err(io::Error::new(ErrorKind::PermissionDenied, why));
        }
        Ok((file, created))
    }

    /// What `name` is now, links not followed.
    pub fn identity(&self, name: &str) -> io::Result<Identity> {
        Ok(Identity::from(&fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?))
    }

    /// At most `max` bytes of the regular file `name`.
    pub fn read_small(&self, name: &str, max: usize) -> io::Result<Vec<u8>> {
        let fd = fs::openat(&self.fd, name, OFlags::RDONLY | no_surprises(), Mode::empty())?;
        read_regular(File::from(fd), max)
    }

    /// Writes `bytes` to a new file `name`, removing whatever was there
    /// (a link or a FIFO is removed, never followed or opened).
    pub fn replace_with(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.remove(name);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | no_surprises();
        let file = File::from(fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))?);
        io::Write::write_all(&mut &file, bytes)
    }

    pub fn remove(&self, name: &str) {
        let _ = fs::unlinkat(&self.fd, name, AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_scratch_directory_is_made_private_and_a_shared_one_is_refused() {
        let dir = fresh("out-dir-mode");
        let out = OutDir::open(&dir).unwrap();
        let scratch = out.scratch().unwrap();
        assert_eq!(std::fs::metadata(scratch.path()).unwrap().permissions().mode() & 0o077, 0);
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = out.scratch().err().unwrap();
        assert_eq!(e.to_string(), "writable by others (mode 775)");
        std::fs::remove_dir(scratch.path()).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join(SCRATCH_DIR)).unwrap();
        assert_eq!(out.scratch().err().unwrap().to_string(), "not a directory (a link, or a file)");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn files_in_it_are_never_followed_and_only_regular_ones_are_used() {
        let dir = fresh("out-dir-files");
        let out = OutDir::open(&dir).unwrap();
        let scratch = out.scratch().unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, scratch.path().join("a")).unwrap();
        assert!(scratch.open_own("a").is_err());
        assert!(scratch.read_small("a", 100).is_err());
        scratch.replace_with("a", b"123\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(scratch.read_small("a", 100).unwrap(), b"123\n");
        std::os::unix::fs::symlink("/dev/zero", scratch.path().join("z")).unwrap();
        assert!(scratch.read_small("z", 100).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

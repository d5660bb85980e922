//! A download's storage: the scratch file `DIR/.lmk/<content id>.part`,
//! written in place through the descriptor the leecher keeps locked, and
//! renamed to `DIR/NAME` once every chunk is verified. The rename goes
//! through the two directory descriptors, and what it moves is checked to be
//! this very file (device and inode) before and after, so the final file is
//! the one whose chunks were verified, whatever was swapped in meanwhile.
//! The open descriptor survives the rename, so the file is served on from it.
//!
//! The file's space is reserved (`fallocate`) `RESERVE_STEP` bytes per write,
//! not all at open: on tmpfs reserving means zeroing every page, 0.1-0.3 s
//! for 128 MiB while 16 downloads start at once, and the first request
//! would wait for it. The free space was checked at open (`scratch.rs`).

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::out_dir::{Identity, OutDir, ScratchDir};
use crate::peer::storage::{read_into, ReadError, Storage};

/// Bytes reserved ahead with each write until the whole file is: a 128 MiB
/// file is reserved by its 32nd write, a 4 GiB one by its 1024th.
const RESERVE_STEP: u64 = 4 << 20;

pub struct PartFile {
    file: File,
    /// The file's length, and how much of it from the start is reserved.
    len: u64,
    reserved: u64,
    /// The directories, until the file is finished.
    dirs: Option<(OutDir, ScratchDir)>,
    part: String,
    pid: String,
    name: String,
    /// Replace an existing `DIR/NAME` (`--overwrite`); otherwise finishing fails if one appeared.
    replace: bool,
}

impl PartFile {
    /// Wraps the open scratch file `scratch/part`, sized to `len`, that becomes `out/name` when complete.
    pub fn new(
        file: File,
        len: u64,
        out: OutDir,
        scratch: ScratchDir,
        part: String,
        name: String,
        replace: bool,
    ) -> PartFile {
        let pid = part.replace(".part", ".pid");
        PartFile { file, len, reserved: 0, dirs: Some((out, scratch)), part, pid, name, replace }
    }

    /// Reserves the next `RESERVE_STEP` bytes of the file, if any are left.
    /// A file system without `fallocate` gets a sparse file.
    fn reserve_more(&mut self) -> io::Result<()> {
        let len = RESERVE_STEP.min(self.len.saturating_sub(self.reserved));
        if len == 0 {
            return Ok(());
        }
        let (Ok(offset), Ok(len_off)) = (libc::off_t::try_from(self.reserved), libc::off_t::try_from(len)) else {
            self.reserved = self.len;
            return Ok(());
        };
        // SAFETY: fallocate on a descriptor we own; no memory is involved.
        if unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len_off) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(e);
            }
            self.reserved = self.len;
            return Ok(());
        }
        self.reserved += len;
        Ok(())
    }
}

impl Storage for PartFile {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        read_into(&self.file, offset, len, out)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.reserve_more()?;
        self.file.write_all_at(data, offset)
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some((out, scratch)) = &self.dirs else { return Ok(()) };
        self.file.sync_all()?;
        let ours = Identity::of(&self.file)?;
        let replaced = |at: &str| {
            let why = format!("{at} was replaced during the download; the verified download is not renamed");
            io::Error::new(ErrorKind::InvalidData, why)
        };
        let part_path = scratch.path().join(&self.part);
        if scratch.identity(&self.part).ok() != Some(ours) {
            return Err(replaced(&part_path.display().to_string()));
        }
        let target = out.path().join(&self.name);
        out.rename_in(scratch, &self.part, &self.name, self.replace).map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} appeared meanwhile; the download stays in {}", target.display(), part_path.display()),
            ),
            _ => e,
        })?;
        if out.stat(&self.name)?.map(|st| Identity::from(&st)) != Some(ours) {
            return Err(replaced(&part_path.display().to_string()));
        }
        out.sync()?;
        // Our own leftovers: the writer's PID file, and the scratch directory if now empty.
        scratch.remove(&self.pid);
        out.remove_scratch_dir();
        self.dirs = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;
    use std::path::Path;

    fn part(dir: &Path, name: &str, len: u64, replace: bool) -> PartFile {
        let out = OutDir::open(dir).unwrap();
        let scratch = out.scratch().unwrap();
        let (file, _) = scratch.open_own("x.part").unwrap();
        file.set_len(len).unwrap();
        PartFile::new(file, len, out, scratch, "x.part".into(), name.into(), replace)
    }

    #[test]
    fn part_file_becomes_final_only_on_finish_and_still_serves() {
        let dir = fresh("part-finish");
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
        d.finish().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn finishing_never_replaces_a_file_that_appeared_unless_asked() {
        let dir = fresh("part-noreplace");
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
    fn a_scratch_file_swapped_under_the_download_is_never_renamed() {
        let dir = fresh("part-swap");
        let mut d = part(&dir, "f.bin", 3, false);
        d.write(0, b"new").unwrap();
        std::fs::rename(dir.join(".lmk/x.part"), dir.join("stolen")).unwrap();
        std::fs::write(dir.join(".lmk/x.part"), b"bad").unwrap();
        let e = d.finish().unwrap_err();
        assert!(e.to_string().contains("was replaced during the download"), "{e}");
        assert!(!dir.join("f.bin").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_space_is_reserved_a_step_per_write_not_at_open() {
        use std::os::unix::fs::MetadataExt;
        let dir = fresh("part-reserve");
        let len = 2 * RESERVE_STEP + 1000;
        let mut d = part(&dir, "f.bin", len, false);
        let allocated = |d: &PartFile| d.file.metadata().unwrap().blocks() * 512;
        assert!(allocated(&d) < RESERVE_STEP, "nothing reserved at open: {}", allocated(&d));
        d.write(len - 3, b"end").unwrap();
        if d.reserved == len && allocated(&d) < RESERVE_STEP {
            println!("SKIP the_space_is_reserved_a_step_per_write_not_at_open: no fallocate in {}", dir.display());
            return;
        }
        let first = allocated(&d);
        assert!((RESERVE_STEP..len).contains(&first), "a step with the first write: {first}");
        d.write(0, b"abc").unwrap();
        d.write(3, b"def").unwrap();
        assert!(allocated(&d) >= len, "the whole file by the third: {}", allocated(&d));
        d.write(6, b"ghi").unwrap();
        assert_eq!(d.file.metadata().unwrap().len(), len, "the length stays");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Where downloaded bytes go: `DIR/NAME.part`, written in place with
//! positioned writes, synced and renamed to `DIR/NAME` only when every chunk
//! has been verified. A finished name is never a partial or corrupt file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::meta::check_name;

/// One file being written at a time.
pub trait Disk {
    /// Starts `name` (already checked by [`check_name`]) of `size` bytes.
    fn create(&mut self, name: &str, size: u64) -> io::Result<()>;
    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the file durable and gives it its final name.
    fn finish(&mut self) -> io::Result<()>;
}

/// The real disk: files under one output directory.
pub struct PartFiles {
    dir: PathBuf,
    current: Option<(File, String)>,
}

impl PartFiles {
    pub fn new(dir: PathBuf) -> PartFiles {
        PartFiles { dir, current: None }
    }

    fn part_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.part"))
    }
}

impl Disk for PartFiles {
    fn create(&mut self, name: &str, size: u64) -> io::Result<()> {
        // Defence in depth: the core checked already; a path must never escape `dir`.
        check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = self.part_path(name);
        // Remove whatever is there (a symlink is removed, not followed), then
        // create exclusively so nothing planted in between is written through.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        file.set_len(size)?;
        self.current = Some((file, name.to_string()));
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match &self.current {
            Some((file, _)) => file.write_all_at(data, offset),
            None => Err(io::Error::other("no file open")),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some((file, name)) = self.current.take() else {
            return Err(io::Error::other("no file open"));
        };
        file.sync_all()?;
        drop(file);
        std::fs::rename(self.part_path(&name), self.dir.join(&name))?;
        // Make the rename itself durable.
        File::open(&self.dir).and_then(|d| d.sync_all())
    }
}

/// The leecher's disk in memory, for the cores' tests: `finish` moves the
/// part file into `files`.
#[cfg(test)]
#[derive(Default)]
pub struct MemDisk {
    pub files: std::collections::HashMap<String, Vec<u8>>,
    pub part: Option<(String, Vec<u8>)>,
    pub fail_writes: bool,
}

#[cfg(test)]
impl Disk for MemDisk {
    fn create(&mut self, name: &str, size: u64) -> io::Result<()> {
        self.part = Some((name.to_string(), vec![0; size as usize]));
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.fail_writes {
            return Err(io::Error::other("disk full"));
        }
        let Some((_, buf)) = &mut self.part else { return Err(io::Error::other("no file open")) };
        let start = offset as usize;
        let end = start + data.len();
        if end > buf.len() {
            return Err(io::Error::other("write past the end"));
        }
        buf[start..end].copy_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let (name, data) = self.part.take().ok_or_else(|| io::Error::other("no file open"))?;
        self.files.insert(name, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lmk-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn part_file_becomes_final_only_on_finish() {
        let dir = temp_dir("finish");
        let mut d = PartFiles::new(dir.clone());
        d.create("f.bin", 6).unwrap();
        d.write(3, b"def").unwrap();
        d.write(0, b"abc").unwrap();
        assert!(!dir.join("f.bin").exists());
        assert_eq!(std::fs::read(dir.join("f.bin.part")).unwrap(), b"abcdef");
        d.finish().unwrap();
        assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), b"abcdef");
        assert!(!dir.join("f.bin.part").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_unsafe_names_and_planted_symlinks() {
        let dir = temp_dir("unsafe");
        let mut d = PartFiles::new(dir.join("out"));
        std::fs::create_dir_all(dir.join("out")).unwrap();
        assert!(d.create("../escape", 1).is_err());
        assert!(!dir.join("escape.part").exists());
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("out/x.part")).unwrap();
        d.create("x", 4).unwrap();
        d.write(0, b"evil").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "the symlink was not followed");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

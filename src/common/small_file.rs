//! Reading a small file that someone else may have put there: a FIFO must not
//! block the single-threaded loop, and a device (a link to `/dev/zero`) or a
//! huge file must not be read without end. Only a regular file is read, and
//! at most a given number of bytes of it.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading; a FIFO opens at once instead of waiting for a writer.
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// All of `file`, if it is a regular file of at most `max` bytes.
pub fn read_regular(file: File, max: usize) -> io::Result<Vec<u8>> {
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(io::Error::new(ErrorKind::InvalidData, format!("longer than {max} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_dir::fresh;

    #[test]
    fn only_a_small_regular_file_is_read() {
        let dir = fresh("small-file");
        let path = dir.join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_regular(open_nonblocking(&path).unwrap(), 5).unwrap(), b"12345");
        let e = read_regular(open_nonblocking(&path).unwrap(), 4).unwrap_err();
        assert_eq!(e.to_string(), "longer than 4 bytes");
        let zero = read_regular(open_nonblocking(Path::new("/dev/zero")).unwrap(), 4).unwrap_err();
        assert_eq!(zero.to_string(), "not a regular file");
        let fifo = dir.join("fifo");
        crate::common::test_dir::mkfifo(&fifo);
        let e = read_regular(open_nonblocking(&fifo).unwrap(), 4).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file", "opened and refused without a writer");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! A fresh directory for a unit test that needs real files, and what a test plants in one.

use std::path::PathBuf;

/// `lmk-TAG-PID` under the system temp dir, emptied first; the test removes it.
pub fn fresh(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a FIFO at `path`, as someone planting one would.
pub fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

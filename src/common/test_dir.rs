//! A fresh directory for a unit test that needs real files.

use std::path::PathBuf;

/// `lmk-TAG-PID` under the system temp dir, emptied first; the test removes it.
pub fn fresh(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

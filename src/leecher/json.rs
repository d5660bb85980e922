//! `--json`: what `list` and `get` report, one JSON object per line on
//! stdout, for scripts. Every object has an `event`; sizes are exact byte
//! counts; `done` carries the SHA-256 of the final file, so a fleet can
//! check a copy against a digest it knows.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::hash::ContentId;
use crate::peer::machine::Snapshot;
use crate::peer::torrent::Counters;
use crate::wire::catalog::ListEntry;

/// One JSON object, written field by field (a few flat objects do not need
/// serde; names from the network are escaped as JSON requires).
pub struct Object(String);

impl Object {
    fn new(event: &str) -> Object {
        Object(String::from("{")).str("event", event)
    }

    fn key(mut self, key: &str) -> Object {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        crate::common::json::string(&mut self.0, key);
        self.0.push(':');
        self
    }

    fn str(self, key: &str, value: &str) -> Object {
        let mut o = self.key(key);
        crate::common::json::string(&mut o.0, value);
        o
    }

    fn num(self, key: &str, value: impl Into<u64>) -> Object {
        let mut o = self.key(key);
        o.0.push_str(&value.into().to_string());
        o
    }

    /// A finite number, or null.
    fn float(self, key: &str, value: f64) -> Object {
        let mut o = self.key(key);
        o.0.push_str(&if value.is_finite() { format!("{value}") } else { "null".into() });
        o
    }

    fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => {
                let mut o = self.key(key);
                o.0.push_str("null");
                o
            }
        }
    }
}

/// Prints one object as one line.
pub fn print(object: Object) {
    crate::say!("{}}}", object.0);
}

fn size(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A catalog entry of `list --json`.
pub fn entry(e: &ListEntry) -> Object {
    Object::new("file")
        .str("name", &e.name)
        .num("size", e.size)
        .num("chunk_size", e.chunk_size)
        .num("seeders", e.seeders)
        .str("content_id", &e.id.to_hex())
}

pub fn started(id: ContentId, name: &str, size: u64, resumed: u32, chunks: u32) -> Object {
    Object::new("started")
        .str("name", name)
        .str("content_id", &id.to_hex())
        .num("size", size)
        .num("chunks", chunks)
        .num("resumed_chunks", resumed)
}

/// `done` is verified bytes plus those arriving; rates in bytes per second.
pub fn progress(id: ContentId, p: &Snapshot, done: u64, (down, up): (f64, f64)) -> Object {
    Object::new("progress")
        .str("name", &p.name)
        .str("content_id", &id.to_hex())
        .num("done", done)
        .num("size", p.size)
        .float("down_bytes_per_sec", down.round())
        .float("up_bytes_per_sec", up.round())
        .num("peers", size(p.peers))
}

pub fn done(id: ContentId, name: &str, size_: u64, elapsed: Duration, c: &Counters, path: &Path) -> Object {
    Object::new("done")
        .str("name", name)
        .str("content_id", &id.to_hex())
        .num("size", size_)
        .float("seconds", elapsed.as_secs_f64())
        .num("from_seeders", c.from_seeders)
        .num("from_leechers", c.from_leechers)
        .num("peers", size(c.sources))
        .num("bad_chunks", c.bad_chunks)
        .str("path", &path.to_string_lossy())
        .opt_str("sha256", sha256(path).as_deref())
}

/// A file already complete under its final name (nothing fetched).
pub fn complete(name: &str, path: &Path) -> Object {
    Object::new("already_complete")
        .str("name", name)
        .str("path", &path.to_string_lossy())
        .opt_str("sha256", sha256(path).as_deref())
}

pub fn waiting(name: &str, why: &str) -> Object {
    Object::new("waiting").str("name", name).str("reason", why)
}

pub fn seeded(id: ContentId, name: &str, c: &Counters) -> Object {
    Object::new("seeded").str("name", name).str("content_id", &id.to_hex()).num("uploaded", c.uploaded)
}

pub fn failed(name: &str, reason: &str) -> Object {
    Object::new("failed").str("name", name).str("reason", reason)
}

/// The SHA-256 of the file at `path` in hex, or null if it cannot be read.
/// It reads the whole file once, when it is done, in the loop's thread: a
/// pause of about a second per GiB, only with `--json`.
fn sha256(path: &Path) -> Option<String> {
    let digest = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            match file.read(&mut buf)? {
                0 => break,
                n => hasher.update(&buf[..n]),
            }
        }
        Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    };
    digest().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_escape_what_json_requires() {
        let o = Object::new("x").str("name", "a\"b\\c\nd\u{1b}e\u{7f}東").num("n", 5u32).float("f", f64::NAN);
        assert_eq!(format!("{}}}", o.0), r#"{"event":"x","name":"a\"b\\c\nd\u001be\u007f東","n":5,"f":null}"#);
    }

    #[test]
    fn sha256_of_a_file_and_of_none() {
        let dir = crate::common::test_dir::fresh("json-sha");
        let path = dir.join("abc");
        std::fs::write(&path, b"abc").unwrap();
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256(&path).as_deref(), Some(want));
        assert_eq!(sha256(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

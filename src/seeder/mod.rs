//! lmk-seeder: hashes the files it is given, publishes their metadata to the
//! tracker's catalog, and serves them as a peer that holds every chunk.

pub mod publish;
mod reactor;
pub mod store;
mod watch;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::{info, warn};

use crate::common::fmt as human;
use crate::common::publish_key::PublishKey;
use crate::common::text::escape;
use crate::meta::{check_name, FileMeta};
use crate::peer::storage::SharedFile;
use crate::peer::PeerOptions;
use store::{hash_file, HashError};

/// Everything `lmk-seeder` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: SocketAddr,
    pub listen: SocketAddr,
    pub peer: PeerOptions,
    /// None: `meta::auto_chunk` of each file's size.
    pub chunk_size: Option<u32>,
    pub paths: Vec<PathBuf>,
    /// How often the status line is printed; zero: never.
    pub status_every: Duration,
    /// Signs publishes, for a tracker that takes only signed ones.
    pub publish_key: Option<PublishKey>,
}

/// What the operator must fix.
#[derive(Debug)]
pub enum Error {
    Path(PathBuf, io::Error),
    Hash(HashError),
    NothingToShare,
    Bind(SocketAddr, io::Error),
    Poll(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Path(p, e) => write!(f, "{}: {e}", p.display()),
            Error::Hash(e) => write!(f, "{e}"),
            Error::NothingToShare => write!(f, "no regular, non-empty file to share"),
            Error::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            Error::Poll(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Binds (so a port in use is reported at once, not after hashing for
/// minutes), hashes the files, then serves until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), Error> {
    let bound = reactor::bind(&config)?;
    let files = hash_all(&config)?;
    reactor::run(config, bound, files)
}

/// The regular files named by `paths` (a directory contributes its own
/// regular files, not those of subdirectories), as (path, name) pairs.
fn list_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| Error::Path(path.clone(), e))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::Path(path.clone(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            let (files, other): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_file());
            let subdirs = other.iter().filter(|p| p.is_dir()).count();
            if subdirs > 0 {
                let shown = escape(&path.display().to_string()).to_string();
                warn!(
                    "{shown}: {} skipped: only the files directly in it are shared",
                    human::plural(subdirs as u64, "subdirectory")
                );
            }
            let entries = files;
            found.extend(entries.into_iter().filter_map(named));
        } else if let Some(pair) = named(path.clone()) {
            found.push(pair);
        }
    }
    Ok(found)
}

/// A file's shareable name, or `None` (with a warning) when it has none:
/// not UTF-8, or with a character the tracker refuses (a control or format
/// character such as ESC or U+202E).
fn named(path: PathBuf) -> Option<(PathBuf, String)> {
    let shown = path.display().to_string();
    let Some(name) = path.file_name()?.to_str().map(str::to_string) else {
        warn!("{}: skipped, its name is not UTF-8", escape(&shown));
        return None;
    };
    match check_name(&name) {
        Ok(()) => Some((path, name)),
        Err(e) => {
            warn!("{}: skipped, not published: {e}", escape(&shown));
            None
        }
    }
}

fn hash_all(config: &Config) -> Result<Vec<(FileMeta, SharedFile)>, Error> {
    let mut files = Vec::new();
    for (path, name) in list_files(&config.paths)? {
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == 0 {
            warn!("{}: skipped, empty files are not shared", path.display());
            continue;
        }
        let started = std::time::Instant::now();
        let (meta, file) = hash_file(&path, name, config.chunk_size, progress(&path, started)).map_err(Error::Hash)?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        info!(
            "{}: {} in {} chunks, hashed in {:.2}s ({}), content id {}",
            meta.name(),
            human::bytes(meta.size()),
            meta.chunk_count(),
            secs,
            human::rate(meta.size() as f64 / secs),
            meta.content_id()
        );
        files.push((meta, file));
    }
    if files.is_empty() {
        return Err(Error::NothingToShare);
    }
    Ok(files)
}

/// A progress line on stderr every second while a large file is hashed.
fn progress(path: &Path, started: std::time::Instant) -> impl FnMut(u64, u64) + '_ {
    let mut next = started + Duration::from_secs(1);
    move |done, total| {
        let now = std::time::Instant::now();
        if now >= next && done < total {
            next = now + Duration::from_secs(1);
            info!("hashing {}: {:.0}% of {}", path.display(), done as f64 * 100.0 / total as f64, human::bytes(total));
        }
    }
}

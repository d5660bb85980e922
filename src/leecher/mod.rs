//! lmk-leecher: lists the tracker's catalog, or downloads files from several
//! seeders at once, verifying every chunk, into `DIR/NAME.part` then `DIR/NAME`.

mod download;
pub mod machine;
pub mod output;
mod picker;
mod progress;
mod reactor;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use machine::Command;

/// Everything `lmk-leecher` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: std::net::SocketAddr,
    pub command: Command,
    pub out_dir: PathBuf,
    pub max_seeders: usize,
    pub timeout: Duration,
    /// Draw a progress bar (a terminal) or print plain lines.
    pub tty: bool,
}

/// Why the leecher could not do what it was asked.
#[derive(Debug)]
pub enum Error {
    OutDir(PathBuf, io::Error),
    Poll(io::Error),
    /// Some files could not be downloaded (each was reported already).
    Incomplete {
        failed: usize,
        asked: usize,
    },
    /// The catalog could not be listed (the reason was reported already).
    ListFailed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutDir(p, e) => write!(f, "output directory {}: {e}", p.display()),
            Error::Poll(e) => write!(f, "event loop failed: {e}"),
            Error::Incomplete { failed, asked } => write!(f, "{failed} of {asked} file(s) not downloaded"),
            Error::ListFailed => write!(f, "could not list the catalog"),
        }
    }
}

impl std::error::Error for Error {}

pub fn run(config: Config) -> Result<(), Error> {
    reactor::run(config)
}

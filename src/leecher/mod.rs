//! lmk-leecher: lists the tracker's catalog, or downloads files from many
//! peers at once, verifying every chunk, into `DIR/.lmk/<content id>.part`
//! then `DIR/NAME`, serving what it holds to the other peers meanwhile and
//! after. An interrupted download resumes from its scratch file.

mod json;
mod listing;
pub mod machine;
mod out_dir;
mod part_file;
mod progress;
mod reactor;
mod scratch;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use machine::Command;
pub use progress::Mode;

/// Everything `lmk-leecher` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: std::net::SocketAddr,
    pub command: Command,
    pub out_dir: PathBuf,
    /// Where other peers connect to us.
    pub listen: std::net::SocketAddr,
    pub peer: crate::peer::PeerOptions,
    /// Give up a file when no chunk has been verified for this long.
    pub timeout: Duration,
    /// How long a complete file is served.
    pub goal: crate::peer::torrent::Goal,
    /// Bars (a terminal), plain lines, or errors only.
    pub mode: Mode,
    /// Replace a `DIR/NAME` that holds other content.
    pub overwrite: bool,
    /// Wait for another process downloading the same file into `DIR`.
    pub wait: bool,
}

/// Why the leecher could not do what it was asked.
#[derive(Debug)]
pub enum Error {
    OutDir(PathBuf, io::Error),
    Bind(std::net::SocketAddr, io::Error),
    Poll(io::Error),
    /// Ctrl-C or SIGTERM (`signal`); `kept` says what stays for a resume.
    Interrupted {
        signal: i32,
        kept: Option<String>,
    },
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
            Error::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            Error::Poll(e) => write!(f, "event loop failed: {e}"),
            Error::Interrupted { signal, kept } => {
                let name = if *signal == signal_hook::consts::SIGINT { "SIGINT" } else { "SIGTERM" };
                match kept {
                    Some(kept) => write!(f, "stopped by {name}; {kept}; the same get resumes it"),
                    None => write!(f, "stopped by {name}"),
                }
            }
            Error::Incomplete { failed, asked } => {
                let not = if *failed == 1 { "was" } else { "were" };
                write!(f, "{failed} of {} {not} not downloaded", crate::common::fmt::plural(*asked as u64, "file"))
            }
            Error::ListFailed => write!(f, "could not list the catalog"),
        }
    }
}

impl std::error::Error for Error {}

impl crate::common::cli::Failure for Error {
    fn status(&self) -> u8 {
        match self {
            Error::Interrupted { signal, .. } => crate::common::signal::exit_status(*signal),
            _ => 1,
        }
    }
}

pub fn run(config: Config) -> Result<(), Error> {
    reactor::run(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::cli::Failure;

    #[test]
    fn a_stop_by_signal_says_how_to_resume_and_exits_128_plus_the_signal() {
        let kept = Some("f: 1.0 MiB of 4.0 MiB kept in out/.lmk".to_string());
        let int = Error::Interrupted { signal: signal_hook::consts::SIGINT, kept };
        assert_eq!(
            int.to_string(),
            "stopped by SIGINT; f: 1.0 MiB of 4.0 MiB kept in out/.lmk; the same get resumes it"
        );
        assert_eq!(int.status(), 130);
        assert_eq!(Error::Interrupted { signal: signal_hook::consts::SIGTERM, kept: None }.status(), 143);
        assert_eq!(Error::ListFailed.status(), 1);
    }
}

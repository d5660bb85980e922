//! lmk-tracker: a BEP 15 UDP tracker and, on the same port number over TCP,
//! the catalog of shared files. One thread, one mio loop.

mod answers;
mod catalog;
pub mod conns;
pub mod machine;
mod reactor;
mod swarms;
mod web;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use catalog::{Policy as CatalogPolicy, DEFAULT_FILES_PER_IP};
pub use machine::{Config as CoreConfig, Limits};

/// Everything `lmk-tracker` is told on its command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub core: CoreConfig,
    /// Publish quota and key.
    pub catalog: CatalogPolicy,
    /// How often the status table is printed (also printed on change); zero: never.
    pub status_every: Duration,
}

/// What the operator must fix.
#[derive(Debug)]
pub enum Error {
    Bind(SocketAddr, io::Error),
    Poll(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot bind {addr}: {e}"),
            Error::Poll(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Binds UDP and TCP on one port and serves until killed.
pub fn run(config: Config) -> Result<(), Error> {
    reactor::run(config)
}

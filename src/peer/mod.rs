//! One peer core for both roles: a seeder is a peer that starts with every
//! chunk, a leecher one that starts with none.

pub mod answers;
pub mod bitfield;
pub mod choker;
pub mod machine;
pub mod penalty;
pub mod picker;
pub mod rate;
pub mod reactor;
pub mod session;
pub mod storage;
pub mod torrent;
pub mod unsent;

/// What both command lines say about trading with peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOptions {
    /// Peers uploaded to at once.
    pub slots: usize,
    /// Connections per file.
    pub max_peers: usize,
    /// Bytes per second; `None`: unlimited.
    pub up_limit: Option<u64>,
    pub down_limit: Option<u64>,
}

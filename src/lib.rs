//! LMKtorrent: peer-to-peer file distribution. A BEP 15 tracker, seeders and
//! leechers, each a sans-IO protocol core driven by a single-threaded mio reactor.

pub mod announce;
pub mod common;
pub mod hash;
pub mod http;
pub mod leecher;
pub mod meta;
pub mod peer;
pub mod seeder;
pub mod sim;
pub mod tracker;
pub mod wire;

//! The peer core (one file, seeding or downloading) fed arbitrary event
//! sequences by the peers and tracker around it (common/peer_ops.rs, on the
//! simulator's harness): connections opened and closed, frames good and
//! bad, queues drained, tracker replies and a fake clock. It must never
//! panic; see common/peer_ops.rs for what every output must satisfy.
#![no_main]

#[path = "../common/files.rs"]
mod files;
#[path = "../common/peer_ops.rs"]
mod peer_ops;

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::peer::machine::{Config, Event};
use lmk::peer::torrent::Goal;
use lmk::sim::harness::TRACKER;
use peer_ops::{PeerOp, Peers};

#[derive(Arbitrary, Debug)]
struct Input {
    seeder: bool,
    chunks: u8,
    slots: u8,
    max_peers: u8,
    up_limit: Option<u16>,
    down_limit: Option<u16>,
    /// A seeding goal (leecher style) instead of forever.
    goal: Option<u8>,
    ops: Vec<PeerOp>,
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let config = Config {
        tracker: TRACKER,
        port: 7000,
        slots: usize::from(input.slots % 4) + 1,
        max_peers: usize::from(input.max_peers % 8) + 1,
        max_inbound: usize::from(input.max_peers / 8 % 8) + 1,
        up_limit: input.up_limit.map(|r| u64::from(r) * 64 + 1),
        down_limit: input.down_limit.map(|r| u64::from(r) * 64 + 1),
        timeout: Duration::from_secs(12),
        interval: Duration::from_secs(10),
        seed: 9,
    };
    let goal = match input.goal {
        None => Goal::Forever,
        Some(g) => Goal::Until {
            idle: Duration::from_secs(u64::from(g % 7)),
            ratio: (g % 5 > 0).then(|| f64::from(g % 4)),
            time: Some(Duration::from_secs(u64::from(g % 30))),
        },
    };
    let file = files::test_file(input.chunks, "f.bin");
    let held: Vec<u32> = if input.seeder { (0..file.meta.chunk_count()).collect() } else { Vec::new() };
    let mut peers = Peers::new(t0, file.clone(), config);
    peers.sw.add_file(0, t0, &file, &held, goal);
    let mut complete = false;
    for op in input.ops {
        peers.step(op);
        for event in peers.sw.hosts[0].events.drain(..) {
            if let Event::Complete { .. } = event {
                assert!(!input.seeder && !complete, "only a download completes, once");
                complete = true;
            }
        }
        if complete {
            let store = peers.sw.hosts[0].store.as_ref();
            assert!(store.is_some_and(|s| s.holds_file()), "a complete download holds the file's bytes");
        }
    }
});

//! The peer core (one file, seeding or downloading) fed arbitrary event
//! sequences through a model of its shell: connections opened and closed,
//! frames good and bad, queues drained, tracker replies and a fake clock.
//! It must never panic; see common/peer_shell.rs for what every output must satisfy.
#![no_main]

#[path = "../common/files.rs"]
mod files;
#[path = "../common/peer_shell.rs"]
mod peer_shell;

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use files::{MemStore, TestFile, TRACKER};
use libfuzzer_sys::fuzz_target;
use lmk::peer::bitfield::Bitfield;
use lmk::peer::machine::{Config, Event, Machine};
use lmk::peer::torrent::Goal;
use peer_shell::{PeerOp, Shell};

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
        up_limit: input.up_limit.map(|r| u64::from(r) * 64 + 1),
        down_limit: input.down_limit.map(|r| u64::from(r) * 64 + 1),
        timeout: Duration::from_secs(12),
        interval: Duration::from_secs(10),
        seed: 9,
    };
    let file = TestFile::new(input.chunks, "f.bin");
    let count = file.meta.chunk_count();
    let (have, data) = if input.seeder {
        (Bitfield::full(count), file.data.clone())
    } else {
        (Bitfield::new(count), vec![0; file.data.len()])
    };
    let goal = match input.goal {
        None => Goal::Forever,
        Some(g) => Goal::Until {
            idle: Duration::from_secs(u64::from(g % 7)),
            ratio: (g % 5 > 0).then(|| f64::from(g % 4)),
            time: Some(Duration::from_secs(u64::from(g % 30))),
        },
    };
    let mut m = Machine::new(config, t0);
    let mut shell = Shell::new(t0, file);
    let store = MemStore::new(data);
    m.add(t0, shell.file.meta.clone(), Box::new(store.clone()), have, goal);
    shell.settle(&mut m);
    let mut complete = false;
    for op in input.ops {
        shell.step(&mut m, op);
        shell.settle(&mut m);
        while let Some(event) = m.poll_event() {
            if let Event::Complete { .. } = event {
                assert!(!input.seeder && !complete, "only a download completes, once");
                assert!(*store.0.borrow() == shell.file.data, "a complete download holds the file's bytes");
                complete = true;
            }
        }
    }
});

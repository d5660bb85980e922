//! Liveness: a seeder core and a leecher core, wired through a real tracker
//! core in the simulator's hand-driven harness, run in any order the fuzzer
//! picks (which frames arrive, when queues drain, when dials complete,
//! datagrams lost, time jumps). Then the network turns fair: every byte
//! arrives, every queue drains, time moves a second at a time. The leecher
//! must then finish with the file's bytes within two minutes: no
//! interleaving may wedge a download.
#![no_main]

#[path = "../common/files.rs"]
mod files;

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::common::net::ConnId;
use lmk::peer::machine::Event;
use lmk::peer::torrent::Goal;
use lmk::sim::harness::Harness;
use lmk::tracker::machine::{Config as TrackerConfig, Tracker};
use lmk::wire::peer::Message;

const SEEDER: usize = 0;
const LEECHER: usize = 1;
/// Bytes queued on a connection below which its core is asked for more (the shell's low-water mark).
const LOW_WATER: usize = 256 * 1024;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Node `node` gets its oldest datagram answered by the tracker (or lost).
    Datagram {
        node: bool,
        lost: bool,
    },
    /// The oldest frame in flight to a connection of `node` arrives.
    Deliver {
        node: bool,
        conn: u8,
    },
    /// A connection of `node` has room: the core is asked for more, if it wants.
    Drain {
        node: bool,
        conn: u8,
    },
    /// A pending dial completes.
    Connected {
        node: bool,
        conn: u8,
    },
    Advance {
        millis: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    chunks: u8,
    slots: u8,
    up_limit: Option<u16>,
    ops: Vec<Op>,
}

/// Connection number `n` of `node` among its open (or, `dialling`, pending) ones.
fn pick(sw: &Harness, node: bool, n: u8, dialling: bool) -> Option<(usize, ConnId)> {
    let node = usize::from(node);
    let conns = sw.conns(node, dialling);
    (!conns.is_empty()).then(|| (node, conns[usize::from(n) % conns.len()]))
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let file = files::test_file(input.chunks, "f.bin");
    let mut sw = Harness::default();
    sw.hold_dials = true;
    sw.hold_datagrams = true;
    let config = TrackerConfig {
        interval: Duration::from_secs(10),
        expiry: Duration::from_secs(30),
        seed: 1,
        ..TrackerConfig::default()
    };
    sw.tracker = Some(Tracker::new(config, t0));
    for node in [SEEDER, LEECHER] {
        let i = sw.add_host(t0, |c| {
            c.slots = usize::from(input.slots % 3) + 1;
            c.max_peers = 4;
            c.up_limit = input.up_limit.map(|r| u64::from(r) * 1024 + 64 * 1024);
            // Longer than any run: giving up is not what is tested here.
            c.timeout = Duration::from_secs(10_000_000);
            c.interval = Duration::from_secs(10);
        });
        sw.hosts[i].hold = true;
        let held: Vec<u32> = if node == SEEDER { (0..file.meta.chunk_count()).collect() } else { Vec::new() };
        sw.add_file(i, t0, &file, &held, Goal::Forever);
    }
    let mut now = t0;
    sw.settle(now);
    for op in input.ops {
        match op {
            Op::Datagram { node, lost } => sw.answer(now, usize::from(node), lost),
            Op::Deliver { node, conn } => {
                if let Some((i, c)) = pick(&sw, node, conn, false) {
                    sw.deliver_one(now, i, c);
                }
            }
            Op::Drain { node, conn } => {
                if let Some((i, c)) = pick(&sw, node, conn, false) {
                    if sw.queued(i, c) < LOW_WATER {
                        sw.feed(now, i, c);
                    }
                }
            }
            Op::Connected { node, conn } => {
                if let Some((i, c)) = pick(&sw, node, conn, true) {
                    sw.connected(now, i, c);
                }
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                sw.tick(now);
            }
        }
        sw.settle(now);
    }
    // Fair from here on: everything moves, a second at a time.
    sw.hold_dials = false;
    sw.hold_datagrams = false;
    for i in [SEEDER, LEECHER] {
        sw.hosts[i].hold = false;
        for c in sw.conns(i, true) {
            sw.connected(now, i, c);
        }
    }
    for _ in 0..120 {
        if sw.hosts[LEECHER].events.iter().any(|e| matches!(e, Event::Complete { .. })) {
            break;
        }
        sw.run(now);
        now += Duration::from_secs(1);
        sw.tick(now);
    }
    assert!(!sw.hosts[SEEDER].events.iter().any(|e| matches!(e, Event::Complete { .. })), "only a download completes");
    for sent in &sw.log {
        if let Some(Message::Chunk { index, data }) = sent.message() {
            assert_eq!(data, file.chunk(index), "chunk {index} served as it is in the file");
        }
    }
    assert_eq!((sw.garbled, sw.stale), (0, 0), "every frame taken, no output for a closed connection");
    assert!(sw.hosts[LEECHER].store.as_ref().is_some_and(|s| s.holds_file()), "the leecher finished within 120 s");
});

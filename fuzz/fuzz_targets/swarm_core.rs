//! Liveness: a seeder core and a leecher core, wired through a real tracker
//! core and in-memory connections, run in any order the fuzzer picks (which
//! side moves, which frames arrive, when queues drain, datagrams lost, time
//! jumps). Then the network turns fair: every byte arrives, every queue
//! drains, time moves a second at a time. The leecher must then finish with
//! the file's bytes within two minutes: no interleaving may wedge a download.
#![no_main]

#[path = "../common/files.rs"]
mod files;

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use files::{MemStore, TestFile, TRACKER};
use libfuzzer_sys::fuzz_target;
use lmk::common::net::ConnId;
use lmk::peer::bitfield::Bitfield;
use lmk::peer::machine::{Config, Event, Machine, Output};
use lmk::peer::torrent::Goal;
use lmk::tracker::machine::{Config as TrackerConfig, Tracker};
use lmk::wire::peer::{Message, MAX_PEER_FRAME};
use lmk::wire::split_frame;

/// Where each node sends datagrams from and listens.
const UDP: [SocketAddr; 2] = [addr(1, 5000), addr(2, 5000)];
const LISTEN: [u16; 2] = [7000, 7001];
const SEEDER: usize = 0;
const LEECHER: usize = 1;
/// Bytes queued on a connection below which its core is asked for more (the shell's low-water mark).
const LOW_WATER: usize = 256 * 1024;

const fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port)
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Node `node` gets the next datagram it sent answered by the tracker (or lost).
    Datagram {
        node: bool,
        lost: bool,
    },
    /// The oldest frame in flight on a connection of `node` arrives.
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

/// One end of a connection: its peer end, and frames on their way to it.
struct End {
    node: usize,
    peer: (usize, usize),
    inbox: VecDeque<Vec<u8>>,
    fed: bool,
    connected: bool,
}

struct Net {
    now: Instant,
    file: TestFile,
    nodes: [Machine; 2],
    tracker: Tracker,
    datagrams: [VecDeque<Vec<u8>>; 2],
    /// Ends by (node, conn id).
    ends: BTreeMap<(usize, usize), End>,
    next_conn: usize,
    complete: bool,
}

impl Net {
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for node in [SEEDER, LEECHER] {
                while let Some(output) = self.nodes[node].poll_output() {
                    moved = true;
                    self.output(node, output);
                }
                while let Some(event) = self.nodes[node].poll_event() {
                    if let Event::Complete { .. } = event {
                        assert_eq!(node, LEECHER);
                        self.complete = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("outputs never stop");
    }

    fn output(&mut self, node: usize, output: Output) {
        let now = self.now;
        match output {
            Output::Datagram(d) => self.datagrams[node].push_back(d),
            Output::Connect(to, id) => {
                let Some(target) = LISTEN.iter().position(|p| *p == to.port()) else {
                    return self.nodes[node].handle_dial_failed(now, to, id);
                };
                let (a, b) = (self.next_conn, self.next_conn + 1);
                self.next_conn += 2;
                self.ends.insert(
                    (node, a),
                    End { node, peer: (target, b), inbox: VecDeque::new(), fed: false, connected: false },
                );
                self.ends.insert(
                    (target, b),
                    End { node: target, peer: (node, a), inbox: VecDeque::new(), fed: false, connected: true },
                );
                self.nodes[node].handle_dialling(now, to, id, ConnId(a));
                self.nodes[target].handle_accept(now, ConnId(b), addr(node as u8 + 1, 40000));
            }
            Output::Send(c, msg) => self.send(node, c.0, |out| msg.encode(out)),
            Output::Bitfield(c, bits) => self.send(node, c.0, |out| Message::Bitfield(&bits).encode(out)),
            Output::Feed(c) => {
                if let Some(end) = self.ends.get_mut(&(node, c.0)) {
                    end.fed = true;
                }
            }
            Output::Close(c) | Output::CloseAfterFlush(c) => self.close(node, c.0),
            // Frames here are the cores' own, never over a limit.
            Output::Limit(..) => {}
        }
    }

    fn send(&mut self, node: usize, conn: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        let Some(peer) = self.ends.get(&(node, conn)).map(|e| e.peer) else { return };
        let mut frame = Vec::new();
        encode(&mut frame);
        if let Some(end) = self.ends.get_mut(&peer) {
            end.inbox.push_back(frame);
        }
    }

    /// Both ends go; each core hears of it (closing is not instant in the real shell, but is told).
    fn close(&mut self, node: usize, conn: usize) {
        let Some(end) = self.ends.remove(&(node, conn)) else { return };
        self.nodes[node].handle_closed(self.now, ConnId(conn));
        if self.ends.remove(&end.peer).is_some() {
            self.nodes[end.peer.0].handle_closed(self.now, ConnId(end.peer.1));
        }
    }

    fn datagram(&mut self, node: usize, lost: bool) {
        let Some(d) = self.datagrams[node].pop_front() else { return };
        let mut reply = Vec::new();
        if !lost && self.tracker.handle_datagram(self.now, UDP[node], &d, &mut reply) {
            self.nodes[node].handle_datagram(self.now, &reply);
        }
    }

    /// The oldest frame to (node, conn) arrives.
    fn deliver(&mut self, key: (usize, usize)) {
        let Some(end) = self.ends.get_mut(&key) else { return };
        if !end.connected {
            return;
        }
        let Some(bytes) = end.inbox.pop_front() else { return };
        let (frame, _) = split_frame(&bytes, MAX_PEER_FRAME).expect("valid").expect("whole");
        let msg = Message::decode(frame).expect("decodes");
        if let Message::Chunk { index, data } = msg {
            assert_eq!(Some(data), self.file.chunk(index), "chunk {index} served as it is in the file");
        }
        let node = end.node;
        if let Err(fatal) = self.nodes[node].handle_message(self.now, ConnId(key.1), msg) {
            self.nodes[node].handle_fatal(self.now, fatal);
        }
    }

    /// The connection's queue has room: what the peer has not yet received counts as queued.
    fn drain(&mut self, key: (usize, usize)) {
        let Some(end) = self.ends.get(&key) else { return };
        let queued: usize = self.ends.get(&end.peer).map_or(0, |p| p.inbox.iter().map(Vec::len).sum());
        if !end.fed || !end.connected || queued >= LOW_WATER {
            return;
        }
        let peer = end.peer;
        let mut out = Vec::new();
        self.nodes[key.0].handle_drained(self.now, ConnId(key.1), &mut out);
        let mut rest = &out[..];
        while let Ok(Some((_, used))) = split_frame(rest, MAX_PEER_FRAME) {
            if let Some(p) = self.ends.get_mut(&peer) {
                p.inbox.push_back(rest[..used].to_vec());
            }
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "whole frames only");
    }

    fn connected(&mut self, conn: usize) {
        let key = self.ends.iter().find(|(_, e)| !e.connected).map(|(k, _)| *k);
        let key = self.ends.keys().copied().find(|k| k.1 == conn && !self.ends[k].connected).or(key);
        if let Some(key) = key {
            if let Some(end) = self.ends.get_mut(&key) {
                end.connected = true;
            }
            self.nodes[key.0].handle_connected(self.now, ConnId(key.1));
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        for node in &mut self.nodes {
            node.handle_timeout(self.now);
        }
        self.tracker.handle_timeout(self.now);
    }
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let file = TestFile::new(input.chunks, "f.bin");
    let count = file.meta.chunk_count();
    let config = |node: usize| Config {
        tracker: TRACKER,
        port: LISTEN[node],
        slots: usize::from(input.slots % 3) + 1,
        max_peers: 4,
        up_limit: input.up_limit.map(|r| u64::from(r) * 1024 + 64 * 1024),
        down_limit: None,
        // Longer than any run: giving up is not what is tested here.
        timeout: Duration::from_secs(10_000_000),
        interval: Duration::from_secs(10),
        // Rng::new forces the low bit: seeds 0 and 1 would give both cores one nonce.
        seed: 2 * node as u64 + 2,
    };
    let tracker = Tracker::new(
        TrackerConfig {
            interval: Duration::from_secs(10),
            expiry: Duration::from_secs(30),
            seed: 1,
            ..TrackerConfig::default()
        },
        t0,
    );
    let data = file.data.clone();
    let meta = file.meta.clone();
    let mut net = Net {
        now: t0,
        file,
        nodes: [Machine::new(config(SEEDER), t0), Machine::new(config(LEECHER), t0)],
        tracker,
        datagrams: [VecDeque::new(), VecDeque::new()],
        ends: BTreeMap::new(),
        next_conn: 0,
        complete: false,
    };
    let leeched = MemStore::new(vec![0; data.len()]);
    let seeded = Box::new(MemStore::new(data.clone()));
    net.nodes[SEEDER].add(t0, meta.clone(), seeded, Bitfield::full(count), Goal::Forever);
    net.nodes[LEECHER].add(t0, meta, Box::new(leeched.clone()), Bitfield::new(count), Goal::Forever);
    net.settle();
    let pick = |net: &Net, node: usize, conn: u8| {
        let keys: Vec<_> = net.ends.keys().filter(|k| k.0 == node).copied().collect();
        (!keys.is_empty()).then(|| keys[usize::from(conn) % keys.len()])
    };
    for op in input.ops {
        match op {
            Op::Datagram { node, lost } => net.datagram(usize::from(node), lost),
            Op::Deliver { node, conn } => {
                if let Some(key) = pick(&net, usize::from(node), conn) {
                    net.deliver(key);
                }
            }
            Op::Drain { node, conn } => {
                if let Some(key) = pick(&net, usize::from(node), conn) {
                    net.drain(key);
                }
            }
            Op::Connected { conn } => net.connected(usize::from(conn)),
            Op::Advance { millis } => net.tick(Duration::from_millis(u64::from(millis))),
        }
        net.settle();
    }
    // Fair from here on: everything moves, a second at a time.
    for _ in 0..120 {
        if net.complete {
            break;
        }
        for _ in 0..64 {
            for node in [SEEDER, LEECHER] {
                while !net.datagrams[node].is_empty() {
                    net.datagram(node, false);
                    net.settle();
                }
            }
            let keys: Vec<_> = net.ends.keys().copied().collect();
            if keys.iter().any(|k| !net.ends.get(k).is_some_and(|e| e.connected)) {
                net.connected(usize::MAX);
                net.settle();
            }
            for key in keys {
                net.drain(key);
                net.settle();
                while net.ends.get(&key).is_some_and(|e| e.connected && !e.inbox.is_empty()) {
                    net.deliver(key);
                    net.settle();
                }
            }
        }
        net.tick(Duration::from_secs(1));
        net.settle();
    }
    assert!(net.complete, "the leecher did not finish within 120 s of a fair network");
    assert!(*leeched.0.borrow() == data, "the download holds the file's bytes");
});

//! What the remote side of one peer core can do, for the core targets,
//! carried out on the simulator's hand-driven harness (host 0 is the core):
//! peers dial in, dials complete or fail, peers send frames (well-formed,
//! with good or bad chunk data, whole or handed over in pieces as the
//! daemons' shell does, or raw bytes through the decoder), queues
//! drain, connections close, the tracker answers, the clock moves. After
//! each op it checks what every output must satisfy: frames decode, served
//! chunks hold the file's bytes, no output names a connection the core was
//! told is gone, and a passed deadline does not stay passed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use lmk::common::net::ConnId;
use lmk::hash::Hash20;
use lmk::peer::machine::Config;
use lmk::sim::content::Content;
use lmk::sim::harness::Harness;
use lmk::wire::peer::{Message, RejectReason, State, MAX_PEER_FRAME};
use lmk::wire::udp::{Request, Response};

/// Wake-ups at a deadline already passed before the shell is said to spin.
const SPIN_ROUNDS: usize = 64;
const CORE: usize = 0;

/// A frame a remote peer sends.
#[derive(Arbitrary, Debug)]
pub enum PeerFrame {
    /// For our file, or another. Our own nonce is unguessable: never a connection to ourselves.
    Hello {
        ours: bool,
        port: u16,
        nonce: u64,
    },
    Bitfield(Vec<u8>),
    /// All ones, of the right length.
    FullBitfield,
    Have(u32),
    State(u8),
    Request {
        index: u32,
        sole: bool,
        more: bool,
    },
    /// The chunk's true bytes, or bytes that fail its hash.
    Chunk {
        index: u32,
        good: bool,
    },
    Reject {
        index: u32,
        reason: u8,
    },
    Cancel(u32),
    /// Any frame, through the decoder: a decode error closes the connection.
    Raw {
        kind: u8,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
pub enum PeerOp {
    Accept {
        ip: u8,
    },
    /// From now on a connect fails at once (no descriptors), or starts.
    RefuseDials(bool),
    Connected {
        conn: u8,
    },
    Frame {
        conn: u8,
        frame: PeerFrame,
    },
    /// The connection's queue has room.
    Drained {
        conn: u8,
    },
    /// The kernel took the connection's queue (a reader reads).
    Written {
        conn: u8,
    },
    /// Bytes of a frame not yet whole arrived (a chunk under way, or a trickle).
    Receiving {
        conn: u8,
        bytes: u32,
    },
    /// A Chunk frame's head arrived (the shell hands its data over as it comes): `len`
    /// the chunk's own length, or off by one.
    ChunkBegin {
        conn: u8,
        index: u32,
        off: bool,
    },
    /// The next bytes of that chunk's data, true or not.
    ChunkData {
        conn: u8,
        bytes: u16,
        good: bool,
    },
    /// The frame ended.
    ChunkEnd {
        conn: u8,
    },
    /// Closed by the far end, failed or idle.
    Closed {
        conn: u8,
    },
    /// The tracker answers the last datagram sent with these peers (by index).
    TrackerReply {
        peers: Vec<u8>,
        unknown_id: bool,
    },
    Datagram(Vec<u8>),
    Advance {
        millis: u16,
    },
    Shutdown,
}

fn peer_addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 1, i % 16), 7000 + u16::from(i % 3)))
}

/// Host 0 of a harness, every other peer played by the fuzzer.
pub struct Peers {
    pub sw: Harness,
    pub now: Instant,
    pub file: Rc<Content>,
    /// Log entries already checked.
    checked: usize,
    /// Per connection, the chunk a streamed frame carries and the bytes of it sent.
    streaming: BTreeMap<ConnId, (u32, usize)>,
}

impl Peers {
    /// The core, configured as `config`, on a harness where nothing moves unless an op says so.
    pub fn new(now: Instant, file: Rc<Content>, config: Config) -> Peers {
        let mut sw = Harness::default();
        sw.hold_dials = true;
        sw.hold_datagrams = true;
        sw.reuse_ids = true;
        sw.listeners = (0..48).map(peer_addr).collect();
        sw.add_host(now, |c| *c = config);
        sw.hosts[CORE].hold = true;
        Peers { sw, now, file, checked: 0, streaming: BTreeMap::new() }
    }

    /// The core's connection number `n` among its open (or, `dialling`, pending) ones.
    fn pick(&self, n: u8, dialling: bool) -> Option<ConnId> {
        let conns = self.sw.conns(CORE, dialling);
        (!conns.is_empty()).then(|| conns[usize::from(n) % conns.len()])
    }

    /// Applies one op, then runs the harness until quiet and checks the outputs.
    pub fn step(&mut self, op: PeerOp) {
        let now = self.now;
        match op {
            PeerOp::Accept { ip } => _ = self.sw.accept(now, CORE, peer_addr(ip)),
            PeerOp::RefuseDials(refuse) => {
                self.sw.listeners = if refuse { Vec::new() } else { (0..48).map(peer_addr).collect() }
            }
            PeerOp::Connected { conn } => {
                if let Some(c) = self.pick(conn, true) {
                    self.sw.connected(now, CORE, c);
                }
            }
            PeerOp::Frame { conn, frame } => {
                if let Some(c) = self.pick(conn, false) {
                    self.frame(c, frame);
                }
            }
            PeerOp::Drained { conn } => {
                if let Some(c) = self.pick(conn, false) {
                    self.sw.feed(now, CORE, c);
                }
            }
            PeerOp::Written { conn } => {
                if let Some(c) = self.pick(conn, false) {
                    let written = self.sw.queued_through(CORE, c);
                    self.sw.hosts[CORE].m.handle_written(now, c, written);
                }
            }
            PeerOp::Receiving { conn, bytes } => {
                if let Some(c) = self.pick(conn, false) {
                    self.sw.hosts[CORE].m.handle_receiving(now, c, u64::from(bytes));
                }
            }
            PeerOp::ChunkBegin { conn, index, off } => {
                if let Some(c) = self.pick(conn, false) {
                    let index = index % (self.file.meta.chunk_count() + 1);
                    let len = self.file.chunk(index).len().max(1) + usize::from(off);
                    self.streaming.insert(c, (index, 0));
                    self.sw.hosts[CORE].m.handle_chunk_begin(now, c, index, len);
                }
            }
            PeerOp::ChunkData { conn, bytes, good } => {
                if let Some(c) = self.pick(conn, false) {
                    let (index, sent) = self.streaming.get(&c).copied().unwrap_or((0, 0));
                    let chunk = self.file.chunk(index);
                    let mut data = chunk.get(sent..).unwrap_or_default().to_vec();
                    data.truncate(usize::from(bytes));
                    if !good || data.is_empty() {
                        data = vec![0x5a; usize::from(bytes % 512) + 1];
                    }
                    self.streaming.insert(c, (index, sent + data.len()));
                    if let Err(fatal) = self.sw.hosts[CORE].m.handle_chunk_data(now, c, &data) {
                        self.sw.hosts[CORE].m.handle_fatal(now, fatal);
                    }
                }
            }
            PeerOp::ChunkEnd { conn } => {
                if let Some(c) = self.pick(conn, false) {
                    self.streaming.remove(&c);
                    if let Err(fatal) = self.sw.hosts[CORE].m.handle_chunk_end(now, c) {
                        self.sw.hosts[CORE].m.handle_fatal(now, fatal);
                    }
                }
            }
            PeerOp::Closed { conn } => {
                if let Some(c) = self.pick(conn, false).or_else(|| self.pick(conn, true)) {
                    self.sw.close(now, CORE, c);
                }
            }
            PeerOp::TrackerReply { peers, unknown_id } => self.reply(peers, unknown_id),
            PeerOp::Datagram(bytes) => self.sw.hosts[CORE].m.handle_datagram(now, &bytes),
            PeerOp::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(millis));
                self.sw.tick(self.now);
            }
            PeerOp::Shutdown => self.sw.hosts[CORE].m.shutdown(now),
        }
        self.settle();
    }

    fn frame(&mut self, c: ConnId, frame: PeerFrame) {
        let now = self.now;
        let id = self.file.meta.content_id();
        let count = self.file.meta.chunk_count();
        let bytes: Vec<u8>;
        let msg = match frame {
            PeerFrame::Hello { ours, port, nonce } => {
                Message::Hello { id: if ours { id } else { Hash20([1; 20]) }, port, nonce }
            }
            PeerFrame::Bitfield(ref bits) if !bits.is_empty() => Message::Bitfield(bits),
            PeerFrame::Bitfield(_) => return,
            PeerFrame::FullBitfield => {
                let mut bits = vec![0xff; count.div_ceil(8) as usize];
                if let Some(last) = bits.last_mut() {
                    *last <<= (8 - count % 8) % 8;
                }
                bytes = bits;
                Message::Bitfield(&bytes)
            }
            PeerFrame::Have(i) => Message::Have(i % (count + 2)),
            PeerFrame::State(s) => {
                Message::State([State::Available, State::Unavailable, State::Connected][usize::from(s % 3)])
            }
            PeerFrame::Request { index, sole, more } => Message::Request { index: index % (count + 2), sole, more },
            PeerFrame::Chunk { index, good } => {
                let index = index % (count + 1);
                bytes = match self.file.chunk(index) {
                    data if data.is_empty() => b"x".to_vec(),
                    data if good => data,
                    mut data => {
                        data[0] ^= 1;
                        data
                    }
                };
                Message::Chunk { index, data: &bytes }
            }
            PeerFrame::Reject { index, reason } => {
                use RejectReason::*;
                let reason = [NotHeld, BadIndex, Withdrawn, ReadError, NoSlot, Spread][usize::from(reason % 6)];
                Message::Reject { index: index % (count + 2), reason }
            }
            PeerFrame::Cancel(i) => Message::Cancel(i % (count + 2)),
            PeerFrame::Raw { kind, body } => {
                let mut raw = u32::try_from(body.len() + 1).unwrap_or(u32::MAX).to_be_bytes().to_vec();
                raw.push(kind);
                raw.extend_from_slice(&body);
                return self.sw.inject_bytes(now, CORE, c, &raw);
            }
        };
        self.sw.inject(now, CORE, c, msg);
    }

    /// The tracker answers the core's last datagram; every datagram it sent decodes.
    fn reply(&mut self, peers: Vec<u8>, unknown_id: bool) {
        let sent = self.sw.take_datagrams(CORE);
        for d in &sent {
            Request::decode(d).expect("every datagram decodes");
        }
        let Some(req) = sent.last() else { return };
        let resp = match Request::decode(req).expect("checked above") {
            Request::Connect { transaction_id } => Response::Connect { transaction_id, connection_id: 77 },
            req if unknown_id => Response::Error {
                transaction_id: req.transaction_id(),
                message: lmk::tracker::machine::UNKNOWN_CONNECTION_ID.into(),
            },
            req => Response::Announce {
                transaction_id: req.transaction_id(),
                interval: 10,
                leechers: 1,
                seeders: 1,
                peers: peers.into_iter().map(peer_addr).collect(),
            },
        };
        let mut bytes = Vec::new();
        resp.encode(&mut bytes, false);
        self.sw.hosts[CORE].m.handle_datagram(self.now, &bytes);
    }

    /// Runs until quiet (after a change the core's owner made). A deadline that has passed wakes the shell at once
    /// (a zero poll timeout); some timers take a few rounds (a dial batch per
    /// round), one that never moves on would spin the loop. A round here is
    /// the shell waking a millisecond later. A stopped core is left instead.
    pub fn settle(&mut self) {
        self.sw.run(self.now);
        for _ in 0..SPIN_ROUNDS {
            let m = &self.sw.hosts[CORE].m;
            match m.next_deadline() {
                Some(at) if at <= self.now && !m.stopped(self.now) => {
                    self.now += Duration::from_millis(1);
                    self.sw.run(self.now);
                }
                _ => return self.check(),
            }
        }
        panic!("the deadline stays in the past after {SPIN_ROUNDS} timeouts: the shell would spin");
    }

    fn check(&mut self) {
        assert_eq!(self.sw.garbled, 0, "every frame the core sent decodes");
        assert_eq!(self.sw.stale, 0, "no output for a connection the core was told is gone");
        let count = self.file.meta.chunk_count();
        for sent in &self.sw.log[self.checked..] {
            match sent.message() {
                Some(Message::Chunk { index, data }) if sent.from == CORE => {
                    assert_eq!(data, self.file.chunk(index), "served chunk {index} holds the file's bytes")
                }
                Some(Message::Bitfield(bits)) if sent.from == CORE => {
                    assert_eq!(bits.len(), count.div_ceil(8) as usize)
                }
                _ => {}
            }
        }
        self.checked = self.sw.log.len();
        for c in self.sw.conns(CORE, false) {
            assert!(self.sw.limit(CORE, c).is_some_and(|max| max <= MAX_PEER_FRAME));
        }
    }
}

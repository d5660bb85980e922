//! A model of the mio shell around the peer core, for the core targets: it
//! opens and closes connections, hands frames over (well-formed, with good or
//! bad chunk data, or raw bytes through the decoder), feeds drained queues,
//! answers the tracker and moves a fake clock. It checks what every output
//! must satisfy: frames decode, served chunks hold the file's bytes, and no
//! output names a connection the core was told is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use lmk::common::net::ConnId;
use lmk::hash::{ContentId, Hash20};
use lmk::peer::machine::{Machine, Output};
use lmk::wire::peer::{Message, RejectReason, State, MAX_PEER_FRAME};
use lmk::wire::udp::{Request, Response};
use lmk::wire::{split_frame, Frame};

use crate::files::TestFile;

/// Wake-ups at a deadline already passed before the shell is said to spin.
const SPIN_ROUNDS: usize = 64;

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
    Request(u32),
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
    /// Through the decoder: a decode error closes the connection.
    Raw {
        kind: u8,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
pub enum PeerOp {
    Accept {
        conn: u8,
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
    /// The connection's queue has room (only once the core asked to be fed).
    Drained {
        conn: u8,
    },
    /// The kernel took bytes of the connection's queue (a reader reads).
    Written {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Dialling,
    Open,
    /// The core asked for it to be closed; `handle_closed` is due at the end of the batch.
    Closing,
}

/// The shell: connections by id, what each has asked for, the clock.
pub struct Shell {
    pub now: Instant,
    pub file: TestFile,
    conns: BTreeMap<usize, Conn>,
    /// Connections the core asked to be fed; they stay so while they live.
    fed: BTreeSet<usize>,
    refuse_dials: bool,
    last_datagram: Option<Vec<u8>>,
    /// The id the next dialled connection gets: 8..16, after the accepted ones.
    next_id: usize,
    /// Timers fired in this step: the next deadline must then lie ahead.
    fired: bool,
}

fn conn_id(i: u8) -> ConnId {
    ConnId(usize::from(i % 8))
}

fn peer_addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 1, i % 16), 7000 + u16::from(i % 3)))
}

impl Shell {
    pub fn new(now: Instant, file: TestFile) -> Shell {
        Shell {
            now,
            file,
            conns: BTreeMap::new(),
            fed: BTreeSet::new(),
            refuse_dials: false,
            last_datagram: None,
            next_id: 8,
            fired: false,
        }
    }

    /// Applies one op; then call [`Shell::settle`].
    pub fn step(&mut self, m: &mut Machine, op: PeerOp) {
        let now = self.now;
        match op {
            PeerOp::Accept { conn, ip } => {
                let c = conn_id(conn);
                if self.conns.contains_key(&c.0) {
                    return;
                }
                self.conns.insert(c.0, Conn::Open);
                m.handle_accept(now, c, peer_addr(ip));
            }
            PeerOp::RefuseDials(refuse) => self.refuse_dials = refuse,
            PeerOp::Connected { conn } => {
                let c = ConnId(8 + usize::from(conn % 8));
                if self.conns.get(&c.0) == Some(&Conn::Dialling) {
                    self.conns.insert(c.0, Conn::Open);
                    m.handle_connected(now, c);
                }
            }
            PeerOp::Frame { conn, frame } => {
                let c = ConnId(usize::from(conn % 16));
                if self.conns.get(&c.0) != Some(&Conn::Open) {
                    return;
                }
                self.frame(m, c, frame);
            }
            PeerOp::Drained { conn } => {
                let c = ConnId(usize::from(conn % 16));
                if self.conns.get(&c.0) != Some(&Conn::Open) || !self.fed.contains(&c.0) {
                    return;
                }
                let mut out = Vec::new();
                m.handle_drained(now, c, &mut out);
                self.check_sent(&out);
            }
            PeerOp::Written { conn } => {
                let c = ConnId(usize::from(conn % 16));
                if self.conns.get(&c.0) == Some(&Conn::Open) {
                    m.handle_written(now, c);
                }
            }
            PeerOp::Closed { conn } => {
                let c = ConnId(usize::from(conn % 16));
                if self.conns.remove(&c.0).is_some() {
                    self.fed.remove(&c.0);
                    m.handle_closed(now, c);
                }
            }
            PeerOp::TrackerReply { peers, unknown_id } => {
                let Some(req) = self.last_datagram.take() else { return };
                let resp = match Request::decode(&req).expect("checked when sent") {
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
                m.handle_datagram(now, &bytes);
            }
            PeerOp::Datagram(bytes) => m.handle_datagram(now, &bytes),
            PeerOp::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(millis));
                m.handle_timeout(self.now);
                self.fired = true;
            }
            PeerOp::Shutdown => m.shutdown(now),
        }
    }

    fn frame(&mut self, m: &mut Machine, c: ConnId, frame: PeerFrame) {
        let now = self.now;
        let id = self.file.meta.content_id();
        let count = self.file.meta.chunk_count();
        let bad: Vec<u8>;
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
                bad = bits;
                Message::Bitfield(&bad)
            }
            PeerFrame::Have(i) => Message::Have(i % (count + 2)),
            PeerFrame::State(s) => {
                Message::State([State::Available, State::Unavailable, State::Connected][usize::from(s % 3)])
            }
            PeerFrame::Request(i) => Message::Request(i % (count + 2)),
            PeerFrame::Chunk { index, good } => {
                let index = index % (count + 1);
                match self.file.chunk(index) {
                    Some(data) if good => Message::Chunk { index, data },
                    Some(data) => {
                        let mut wrong = data.to_vec();
                        wrong[0] ^= 1;
                        bad = wrong;
                        Message::Chunk { index, data: &bad }
                    }
                    None => Message::Chunk { index, data: b"x" },
                }
            }
            PeerFrame::Reject { index, reason } => {
                use RejectReason::*;
                let reason = [NotHeld, BadIndex, Withdrawn, ReadError, NoSlot, Spread][usize::from(reason % 6)];
                Message::Reject { index: index % (count + 2), reason }
            }
            PeerFrame::Cancel(i) => Message::Cancel(i % (count + 2)),
            PeerFrame::Raw { kind, ref body } => match Message::decode(Frame { kind, body }) {
                Ok(msg) => msg,
                Err(_) => {
                    // A malformed frame closes the connection, as the shell does.
                    self.conns.remove(&c.0);
                    self.fed.remove(&c.0);
                    m.handle_closed(now, c);
                    return;
                }
            },
        };
        if let Err(fatal) = m.handle_message(now, c, msg) {
            m.handle_fatal(now, fatal);
        }
    }

    /// Carries out the core's outputs, then reports the connections it closed,
    /// until nothing is left; checks every output on the way.
    pub fn settle(&mut self, m: &mut Machine) {
        self.carry_out(m);
        // A deadline that has passed wakes the shell at once (a zero poll timeout). Some
        // timers take a few rounds (a dial batch per round); one that never moves on would
        // spin the loop. A round here is the shell waking a millisecond later. A stopped
        // core is left by the shell instead.
        if !std::mem::take(&mut self.fired) {
            return;
        }
        for _ in 0..SPIN_ROUNDS {
            match m.next_deadline() {
                Some(at) if at <= self.now && !m.stopped(self.now) => {
                    self.now += Duration::from_millis(1);
                    m.handle_timeout(self.now);
                    self.carry_out(m);
                }
                _ => return,
            }
        }
        panic!("the deadline stays in the past after {SPIN_ROUNDS} timeouts: the shell would spin");
    }

    fn carry_out(&mut self, m: &mut Machine) {
        loop {
            while let Some(output) = m.poll_output() {
                match output {
                    Output::Datagram(d) => {
                        Request::decode(&d).expect("every datagram decodes");
                        self.last_datagram = Some(d);
                    }
                    Output::Connect(addr, id) => self.dial(m, addr, id),
                    Output::Send(c, msg) => {
                        self.known(c, "Send");
                        let mut out = Vec::new();
                        msg.encode(&mut out);
                        self.check_sent(&out);
                    }
                    Output::Bitfield(c, bits) => {
                        self.known(c, "Bitfield");
                        assert_eq!(bits.len(), self.file.meta.chunk_count().div_ceil(8) as usize);
                    }
                    Output::Feed(c) => {
                        self.known(c, "Feed");
                        self.fed.insert(c.0);
                    }
                    Output::Limit(c, max) => {
                        self.known(c, "Limit");
                        assert!(max <= lmk::wire::peer::MAX_PEER_FRAME);
                    }
                    Output::Close(c) | Output::CloseAfterFlush(c) => {
                        self.known(c, "Close");
                        self.conns.insert(c.0, Conn::Closing);
                    }
                }
            }
            let Some((&c, _)) = self.conns.iter().find(|(_, s)| **s == Conn::Closing) else { break };
            self.conns.remove(&c);
            self.fed.remove(&c);
            m.handle_closed(self.now, ConnId(c));
        }
    }

    /// Starts a connect as the shell does, at once: `handle_dialling` with a
    /// free id, or `handle_dial_failed`. It completes with `Connected` or fails with `Closed`.
    fn dial(&mut self, m: &mut Machine, addr: SocketAddr, id: ContentId) {
        let free = (0..8).map(|i| 8 + (self.next_id - 8 + i) % 8).find(|c| !self.conns.contains_key(c));
        match free.filter(|_| !self.refuse_dials) {
            Some(c) => {
                self.next_id = 8 + (c - 7) % 8;
                self.conns.insert(c, Conn::Dialling);
                m.handle_dialling(self.now, addr, id, ConnId(c));
            }
            None => m.handle_dial_failed(self.now, addr, id),
        }
    }

    fn known(&self, c: ConnId, what: &str) {
        assert!(self.conns.contains_key(&c.0), "{what} for {c:?}, which the core was told is closed");
    }

    /// Frames queued on a connection decode, and chunk frames carry the file's bytes.
    fn check_sent(&self, mut out: &[u8]) {
        while !out.is_empty() {
            let (frame, used) = split_frame(out, MAX_PEER_FRAME).expect("valid frame").expect("whole frames only");
            if let Message::Chunk { index, data } = Message::decode(frame).expect("every frame decodes") {
                assert_eq!(Some(data), self.file.chunk(index), "served chunk {index} holds the file's bytes");
            }
            out = &out[used..];
        }
    }
}

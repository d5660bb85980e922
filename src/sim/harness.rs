//! The simulator driven by hand, for the peer core's tests and the fuzz
//! targets: real `Machine`s (and the real tracker core) over in-memory
//! connections, with no latency and no link model. Every frame goes through
//! the codec and arrives in order, in the order it was sent over all
//! connections; a closed connection loses what was in flight. The test
//! plays any remote peer by hand ([`HAND`]): it accepts or listens, injects
//! frames or raw bytes, and reads what each host said on each connection.
//! Time is whatever the caller passes; containers are ordered, so a run
//! replays exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::content::{Content, Store};
use super::shell;
use crate::common::net::ConnId;
use crate::hash::ContentId;
use crate::peer::bitfield::Bitfield;
use crate::peer::machine::{Config, Event, Machine, Output};
use crate::peer::torrent::Goal;
use crate::tracker::machine::Tracker;
use crate::wire::peer::{chunk_frame_index, Message, MAX_PEER_FRAME};
use crate::wire::split_frame;
use crate::wire::udp::AnnounceRequest;
use crate::wire::Frame;

mod inspect;
#[cfg(test)]
mod tests;
mod tracker;

/// The far end of a connection played by the test: frames to it are only recorded.
pub const HAND: usize = usize::MAX;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Where every host's tracker is.
pub const TRACKER: SocketAddr = SocketAddr::new(LOOPBACK, 6969);

/// Where host `i` listens and what it announces.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(LOOPBACK, 7000 + i as u16)
}

/// Where a peer played by the test listens or dials from: an address of its
/// own, since what a peer does wrong is held against its address (and
/// below the hosts', so a host dials it first).
pub fn hand_addr(n: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8)), 6000 + n)
}

pub struct Host {
    pub m: Machine,
    /// Its file, once added.
    pub store: Option<Store>,
    pub events: Vec<Event>,
    /// Its shell calls `handle_drained` only when the test does (a full socket).
    pub hold: bool,
    /// Its events stay in the core, for an owner that reads them (the leecher's core).
    pub keep_events: bool,
}

/// One frame that arrived and decoded: `from` sent it on its connection `conn` to `to`.
pub struct Sent {
    pub from: usize,
    pub conn: ConnId,
    pub to: usize,
    kind: u8,
    body: Vec<u8>,
}

impl Sent {
    pub fn message(&self) -> Option<Message<'_>> {
        Message::decode(Frame { kind: self.kind, body: &self.body }).ok()
    }
}

/// A dial: who, where, when, and its connection unless it failed at once.
pub struct Dial {
    pub host: usize,
    pub to: SocketAddr,
    pub at: Instant,
    pub conn: Option<ConnId>,
}

/// One end of an open connection.
struct End {
    far: (usize, ConnId),
    /// The largest frame it takes, as its core said.
    limit: u32,
    /// A dial not yet completed: nothing arrives at it.
    dialling: bool,
    /// Bytes that arrived short of a whole frame.
    partial: Vec<u8>,
    /// The stream offset just past the bytes it wrote.
    queued: u64,
}

/// Bytes (or, `None`, a close once they are sent) a connection's end wrote.
struct Write {
    from: (usize, ConnId),
    /// The stream offset just past these bytes.
    end: u64,
    bytes: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct Harness {
    pub hosts: Vec<Host>,
    /// Made at the first datagram unless set before.
    pub tracker: Option<Tracker>,
    /// Announces by these hosts are answered with these peers, not the tracker's.
    pub tracker_says: BTreeMap<usize, Vec<SocketAddr>>,
    /// Where peers played by hand listen: dials there succeed.
    pub listeners: Vec<SocketAddr>,
    /// Dials there never connect (a host that drops SYNs).
    pub blackholes: Vec<SocketAddr>,
    /// Dials complete only at [`Harness::connected`], not at once.
    pub hold_dials: bool,
    /// (host, conn) whose far end reads nothing: what the host sends there
    /// stays queued (no byte leaves, so no `handle_written`).
    pub unread: BTreeSet<(usize, ConnId)>,
    /// Datagrams wait for [`Harness::answer`] instead of being answered at once.
    pub hold_datagrams: bool,
    /// A host's new connection takes its smallest free id, as a slab key
    /// does in the daemons, instead of one never used before.
    pub reuse_ids: bool,
    ends: BTreeMap<(usize, ConnId), End>,
    next_conn: usize,
    wire: VecDeque<Write>,
    datagrams: VecDeque<(usize, Vec<u8>)>,
    /// Connections touched since the last feed (a shell feeds those).
    dirty: BTreeSet<(usize, ConnId)>,
    pub log: Vec<Sent>,
    /// (host, conn) that host closed.
    pub closed: Vec<(usize, ConnId)>,
    pub announces: Vec<(usize, AnnounceRequest)>,
    pub dials: Vec<Dial>,
    /// Frames a core sent that its peer could not take (over the limit or
    /// not decoding): a bug in the core.
    pub garbled: usize,
    /// Outputs naming a connection the core was told is gone, or never had: a bug in the core.
    pub stale: usize,
    /// Connections closed, by the carrying-out pass that closed them.
    gone: BTreeMap<(usize, ConnId), u64>,
    pass: u64,
}

impl Harness {
    /// A host listening at [`addr`], its config the tests' defaults changed by `tweak`.
    pub fn add_host(&mut self, t0: Instant, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.hosts.len();
        let mut config = Config {
            tracker: TRACKER,
            port: addr(i).port(),
            slots: 4,
            max_peers: 8,
            max_inbound: 128,
            up_limit: None,
            down_limit: None,
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(60),
            seed: i as u64 + 1,
        };
        tweak(&mut config);
        let m = Machine::new(config, t0);
        self.hosts.push(Host { m, store: None, events: Vec::new(), hold: false, keep_events: false });
        i
    }

    /// Host `i` gets the file holding `held`.
    pub fn add_file(&mut self, i: usize, now: Instant, file: &Rc<Content>, held: &[u32], goal: Goal) {
        let mut bits = Bitfield::new(file.meta.chunk_count());
        for &c in held {
            bits.set(c);
        }
        let store = file.store(None, bits.clone());
        self.hosts[i].store = Some(store.clone());
        self.hosts[i].m.add(now, file.meta.clone(), Box::new(store), bits, goal);
    }

    fn link(&mut self, a: usize, b: usize, dialling: bool) -> (ConnId, ConnId) {
        let (ca, cb) = if self.reuse_ids {
            let ca = self.free_id(a, None);
            (ca, self.free_id(b, Some((a, ca))))
        } else {
            self.next_conn += 2;
            (ConnId(self.next_conn - 1), ConnId(self.next_conn))
        };
        for key in [(a, ca), (b, cb)] {
            self.gone.remove(&key);
        }
        let end = |far, dialling| End { far, limit: MAX_PEER_FRAME, dialling, partial: Vec::new(), queued: 0 };
        self.ends.insert((a, ca), end((b, cb), dialling));
        self.ends.insert((b, cb), end((a, ca), false));
        (ca, cb)
    }

    /// Host `i`'s smallest connection id not in use (nor `taken`).
    fn free_id(&self, i: usize, taken: Option<(usize, ConnId)>) -> ConnId {
        (0..).map(ConnId).find(|&c| !self.ends.contains_key(&(i, c)) && taken != Some((i, c))).unwrap_or(ConnId(0))
    }

    /// Delivers everything and fires due timers (each core's once, at `now`) until quiet.
    pub fn run(&mut self, now: Instant) {
        let mut fired = BTreeSet::new();
        for _ in 0..100_000 {
            self.carry_out(now);
            if self.pump(now) {
                continue;
            }
            let arrives =
                |w: &Write| !self.unread.contains(&w.from) && self.ends.get(&w.from).is_some_and(|e| self.arrives(e));
            if let Some(at) = self.wire.iter().position(arrives) {
                self.send(now, at);
                continue;
            }
            if !self.hold_datagrams && !self.datagrams.is_empty() {
                while let Some((i, d)) = self.datagrams.pop_front() {
                    self.datagram(now, i, &d, false);
                }
                continue;
            }
            let due: Vec<usize> = (0..self.hosts.len())
                .filter(|i| !fired.contains(i) && self.hosts[*i].m.next_deadline().is_some_and(|d| d <= now))
                .collect();
            if due.is_empty() {
                return;
            }
            for i in due {
                fired.insert(i);
                self.hosts[i].m.handle_timeout(now);
            }
        }
        panic!("the swarm never went quiet");
    }

    /// Whether what is sent towards `e`'s far end can arrive there.
    fn arrives(&self, e: &End) -> bool {
        self.ends.get(&e.far).is_some_and(|far| !far.dialling)
    }

    /// Every core's timers, due or not (a reactor woken early), and the tracker's.
    pub fn tick(&mut self, now: Instant) {
        for host in &mut self.hosts {
            host.m.handle_timeout(now);
        }
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.handle_timeout(now);
        }
    }

    /// Carries out what the cores ask for until they ask nothing more,
    /// without delivering anything.
    pub fn settle(&mut self, now: Instant) {
        for _ in 0..1000 {
            if !self.carry_out(now) {
                return;
            }
        }
        panic!("the cores' outputs never stop");
    }

    /// One pass over every core's outputs; false if there were none.
    fn carry_out(&mut self, now: Instant) -> bool {
        self.pass += 1;
        let mut moved = false;
        for i in 0..self.hosts.len() {
            while let Some(output) = self.hosts[i].m.poll_output() {
                moved = true;
                self.check(i, &output);
                match output {
                    Output::Datagram(d) if self.hold_datagrams => self.datagrams.push_back((i, d)),
                    Output::Datagram(d) => self.datagram(now, i, &d, false),
                    Output::Connect(to, id) => self.connect(now, i, to, id),
                    Output::Send(conn, msg) => {
                        let mut bytes = Vec::new();
                        msg.encode(&mut bytes);
                        self.write(i, conn, Some(bytes));
                    }
                    Output::Bitfield(conn, bits) => {
                        let mut bytes = Vec::new();
                        Message::Bitfield(&bits).encode(&mut bytes);
                        self.write(i, conn, Some(bytes));
                    }
                    Output::Feed(conn) => _ = self.dirty.insert((i, conn)),
                    Output::Close(conn) => self.close(now, i, conn),
                    Output::CloseAfterFlush(conn) => self.write(i, conn, None),
                    Output::Limit(conn, max) => {
                        if let Some(end) = self.ends.get_mut(&(i, conn)) {
                            end.limit = max;
                        }
                    }
                }
            }
            while let Some(event) = (!self.hosts[i].keep_events).then(|| self.hosts[i].m.poll_event()).flatten() {
                self.hosts[i].events.push(event);
            }
        }
        moved
    }

    /// Counts an output that names a connection host `i` was told of in an
    /// earlier pass, or never had (a later one may still be in its queue).
    fn check(&mut self, i: usize, output: &Output) {
        let conn = match output {
            Output::Datagram(_) | Output::Connect(..) => return,
            Output::Send(c, _)
            | Output::Bitfield(c, _)
            | Output::Feed(c)
            | Output::Close(c)
            | Output::CloseAfterFlush(c)
            | Output::Limit(c, _) => *c,
        };
        let told = self.gone.get(&(i, conn)).is_some_and(|&pass| pass < self.pass);
        if told || (!self.ends.contains_key(&(i, conn)) && !self.gone.contains_key(&(i, conn))) {
            self.stale += 1;
        }
    }

    fn write(&mut self, i: usize, conn: ConnId, bytes: Option<Vec<u8>>) {
        if bytes.is_some() {
            self.dirty.insert((i, conn));
        }
        let end = self.advance(i, conn, bytes.as_ref().map_or(0, Vec::len));
        self.wire.push_back(Write { from: (i, conn), end, bytes });
    }

    /// The stream offset of host `i`'s `conn` just past `len` more bytes it writes.
    fn advance(&mut self, i: usize, conn: ConnId, len: usize) -> u64 {
        self.ends.get_mut(&(i, conn)).map_or(0, |e| {
            e.queued += len as u64;
            e.queued
        })
    }

    /// The chunks host `i` wrote that have not left its queues yet, and where.
    pub fn unsent_chunks(&self, i: usize) -> Vec<(ConnId, u32)> {
        let chunk = |w: &Write| Some((w.from.1, chunk_frame_index(w.bytes.as_deref()?)?));
        self.wire.iter().filter(|w| w.from.0 == i).filter_map(chunk).collect()
    }

    /// The stream offset just past what host `i` wrote on `conn`.
    pub fn queued_through(&self, i: usize, conn: ConnId) -> u64 {
        self.ends.get(&(i, conn)).map_or(0, |e| e.queued)
    }

    /// What a shell does after a batch: feeds every touched connection until
    /// the core has nothing more for it (a call with nothing owed is a no-op).
    fn pump(&mut self, now: Instant) -> bool {
        let mut moved = false;
        for (i, conn) in std::mem::take(&mut self.dirty) {
            if self.hosts[i].hold {
                self.dirty.insert((i, conn));
            } else {
                while self.feed(now, i, conn) {
                    moved = true;
                }
            }
        }
        moved
    }

    /// One `handle_drained` on host `i`'s `conn`; what it gave goes on the
    /// wire, frame by frame (a piece of a chunk frame as it is), ahead of a
    /// close after the flush asked before (the rest of a chunk frame goes
    /// out before it).
    pub fn feed(&mut self, now: Instant, i: usize, conn: ConnId) -> bool {
        let mut frames = Vec::new();
        let mut carry = Vec::new();
        let queued = self.queued_through(i, conn);
        let fed = shell::feed(&mut self.hosts[i].m, now, conn, queued, &mut carry, |f| frames.push(f.to_vec()));
        frames.extend((!carry.is_empty()).then_some(carry));
        for frame in frames {
            let end = self.advance(i, conn, frame.len());
            let close = self.wire.iter().position(|w| w.from == (i, conn) && w.bytes.is_none());
            let write = Write { from: (i, conn), end, bytes: Some(frame) };
            match close {
                Some(at) => self.wire.insert(at, write),
                None => self.wire.push_back(write),
            }
        }
        fed
    }

    /// The oldest write towards host `i`'s `conn` arrives, if it can.
    pub fn deliver_one(&mut self, now: Instant, i: usize, conn: ConnId) {
        let Some(end) = self.ends.get(&(i, conn)) else { return };
        if end.dialling {
            return;
        }
        let far = end.far;
        if let Some(at) = self.wire.iter().position(|w| w.from == far) {
            self.send(now, at);
        }
    }

    fn send(&mut self, now: Instant, at: usize) {
        let Some(Write { from, end, bytes }) = self.wire.remove(at) else { return };
        if let (Some(host), Some(_)) = (self.hosts.get_mut(from.0), &bytes) {
            host.m.handle_written(now, from.1, end); // its bytes left the queue, as the kernel takes them
        }
        match bytes {
            Some(bytes) => self.arrive(now, from, &bytes),
            None => self.close(now, from.0, from.1),
        }
    }

    /// Bytes from `from` reach the far end: each whole frame is recorded and
    /// handed to its core; one over the limit or that does not decode closes.
    fn arrive(&mut self, now: Instant, from: (usize, ConnId), bytes: &[u8]) {
        let Some(&End { far: (to, at), .. }) = self.ends.get(&from) else { return };
        let Some(end) = self.ends.get_mut(&(to, at)) else { return };
        end.partial.extend_from_slice(bytes);
        let (limit, mut buf) = (end.limit, std::mem::take(&mut end.partial));
        let mut used = 0;
        loop {
            let frame = match split_frame(&buf[used..], limit) {
                Ok(Some((f, n))) => (f.kind, f.body.to_vec(), n),
                Ok(None) => break,
                Err(e) => {
                    if from.0 != HAND {
                        self.garbled += 1;
                    }
                    if to != HAND {
                        self.hosts[to].m.handle_malformed(at, &e);
                    }
                    return self.close(now, to, at);
                }
            };
            let (kind, body, n) = frame;
            let whole = &buf[used..used + n];
            used += n;
            let sent = Sent { from: from.0, conn: from.1, to, kind, body };
            if sent.message().is_some() {
                self.log.push(sent);
            } else if from.0 != HAND {
                self.garbled += 1;
            }
            if to != HAND && shell::hand_over(&mut self.hosts[to].m, now, at, whole, limit).is_none() {
                return self.close(now, to, at);
            }
            if !self.ends.contains_key(&(to, at)) {
                return;
            }
        }
        buf.drain(..used);
        if let Some(end) = self.ends.get_mut(&(to, at)) {
            end.partial = buf;
        }
    }

    /// Host `i` (or [`HAND`]) closes `conn`: both cores hear of it, and what
    /// was in flight is lost.
    pub fn close(&mut self, now: Instant, i: usize, conn: ConnId) {
        let Some(end) = self.ends.remove(&(i, conn)) else { return };
        self.ends.remove(&end.far);
        self.closed.push((i, conn));
        self.gone.insert((i, conn), self.pass);
        self.gone.insert(end.far, self.pass);
        self.wire.retain(|w| w.from != (i, conn) && w.from != end.far);
        for (n, c) in [(i, conn), end.far] {
            if n != HAND {
                self.hosts[n].m.handle_closed(now, c);
            }
        }
    }

    fn connect(&mut self, now: Instant, i: usize, to: SocketAddr, id: ContentId) {
        let j = (0..self.hosts.len()).find(|&j| addr(j) == to);
        if self.blackholes.contains(&to) {
            let (ci, _) = self.link(i, HAND, true);
            self.dials.push(Dial { host: i, to, at: now, conn: Some(ci) });
            return self.hosts[i].m.handle_dialling(now, to, id, ci);
        }
        if j.is_none() && !self.listeners.contains(&to) {
            self.dials.push(Dial { host: i, to, at: now, conn: None });
            return self.hosts[i].m.handle_dial_failed(now, to, id);
        }
        let (ci, cj) = self.link(i, j.unwrap_or(HAND), self.hold_dials);
        self.dials.push(Dial { host: i, to, at: now, conn: Some(ci) });
        self.hosts[i].m.handle_dialling(now, to, id, ci);
        if !self.hold_dials {
            self.hosts[i].m.handle_connected(now, ci);
        }
        if let Some(j) = j {
            self.hosts[j].m.handle_accept(now, cj, SocketAddr::new(LOOPBACK, 27000 + i as u16));
        }
    }

    /// Host `i`'s pending dial on `conn` completes.
    pub fn connected(&mut self, now: Instant, i: usize, conn: ConnId) {
        let Some(end) = self.ends.get_mut(&(i, conn)).filter(|e| e.dialling) else { return };
        end.dialling = false;
        self.hosts[i].m.handle_connected(now, conn);
    }

    /// A peer played by the test dials host `i`; returns the host's end.
    pub fn accept(&mut self, now: Instant, i: usize, from: SocketAddr) -> ConnId {
        let (ci, _) = self.link(i, HAND, false);
        self.hosts[i].m.handle_accept(now, ci, from);
        self.run(now);
        ci
    }

    /// The peer at the far end of host `i`'s `conn` sends `msg`.
    pub fn inject(&mut self, now: Instant, i: usize, conn: ConnId, msg: Message<'_>) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        self.inject_bytes(now, i, conn, &bytes);
    }

    /// The peer at the far end of host `i`'s `conn` writes `bytes` (any, whole frames or not).
    pub fn inject_bytes(&mut self, now: Instant, i: usize, conn: ConnId, bytes: &[u8]) {
        let far = self.ends[&(i, conn)].far;
        self.arrive(now, far, bytes);
        self.run(now);
    }
}

//! The simulated world: one real peer core per host and the real tracker
//! core, on a virtual clock, with connections carried over [`Links`]. It is
//! the daemons' mio shell done in memory: it carries out what the cores ask
//! (send, dial, close, feed) and adds nothing of its own but the network.
//!
//! Events run in time order, ties in the order they were made, so the same
//! scenario and seed replay to the event. A connection is two flows; frames
//! on a flow arrive in order after the path's latency. Only Chunk frames take
//! link capacity: the control frames (Have, Request, ...) pass at once but
//! never overtake a chunk queued before them. While a chunk is on the link
//! its sender's core hears its bytes leave (`handle_written`) and its
//! receiver's core how many arrived (`handle_receiving`), as the daemons'
//! cores hear whenever the kernel takes bytes or a read adds to a frame.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::content::Content;
use super::hops::Hops;
use super::link::{Completion, FlowId, HostId, Links, Nanos};
use super::queue::Queue;
use super::shell;
use crate::common::net::ConnId;
use crate::peer::bitfield::Bitfield;
use crate::peer::machine::{Config, Event as PeerEvent, Machine, Output};
use crate::peer::torrent::Goal;
use crate::tracker::machine::{Config as TrackerConfig, Tracker};
use crate::wire::peer::{chunk_frame_index, Message, RejectReason, MAX_PEER_FRAME};
use crate::wire::split_frame;

/// How often a core hears `handle_written` for each connection whose chunk
/// is on the link (and its receiver `handle_receiving`). The daemons hear
/// them whenever the kernel takes bytes or a read adds to a frame, every few
/// milliseconds on a moving stream; one event per sending host per period
/// keeps the events few, and it is well under the shortest rule that reads
/// it (a queue that takes nothing for `ASK_IDLE`, 500 ms, is passed over;
/// for `SLOT_IDLE`, 5 s, closed; a peer 15 s behind 8 KiB/s is stalled).
const PROGRESS: Nanos = 100_000_000;

/// The tracker's address; hosts are 10.x.y.z:6881.
pub const TRACKER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 255, 255, 254)), 6969);
const PORT: u16 = 6881;

/// How a hostile host misbehaves (a poisoner is a host that `lie`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Claims every chunk, takes requests and never sends a chunk.
    Staller,
    /// Claims every chunk and answers every request with Reject NotHeld.
    Rejecter,
    /// Asks for chunks and never reads what it is sent.
    NonReader,
}

impl Hostile {
    pub fn name(self) -> &'static str {
        match self {
            Hostile::Staller => "staller",
            Hostile::Rejecter => "rejecter",
            Hostile::NonReader => "non-reader",
        }
    }
}

/// What one host is and did.
pub struct Host {
    pub addr: SocketAddr,
    pub link: HostId,
    pub class: usize,
    pub seed: bool,
    pub latency: Nanos,
    core: Option<Machine>,
    config: Config,
    goal: Goal,
    lie: Option<u64>,
    pub hostile: Option<Hostile>,
    pub arrive: Nanos,
    pub first_chunk: Option<Nanos>,
    pub done: Option<Nanos>,
    pub failed: Option<String>,
    pub gone: Option<Nanos>,
    pub crashed: bool,
    pub from_seeders: u64,
    pub from_peers: u64,
    pub uploaded: u64,
    /// Chunk bytes sent, in whole seconds of simulated time.
    pub sent_per_sec: Vec<u64>,
    timer: Option<Nanos>,
    /// A `Progress` event is pending for its uplink.
    ticking: bool,
}

impl Host {
    /// Still to finish, or finished and serving until its seeding goal is
    /// met: not a seed or hostile, not failed, crashed or gone.
    pub fn pending(&self) -> bool {
        !self.seed && self.hostile.is_none() && self.failed.is_none() && self.gone.is_none()
    }

    pub fn poisoner(&self) -> bool {
        self.lie.is_some()
    }
}

/// One TCP connection: side 0 dialled, side 1 accepted. Side `s`'s `ConnId`
/// on its host is `2 * index + s`, never reused.
struct Conn {
    hosts: [usize; 2],
    flows: [FlowId; 2],
    /// Frames not yet sent on each side's flow: bytes, their wire cost and
    /// the stream offset just past them.
    queues: [VecDeque<(Vec<u8>, u64, u64)>; 2],
    /// Bytes queued per side, the head frame whole.
    queued: [u64; 2],
    /// The stream offset just past what each side's core wrote.
    through: [u64; 2],
    open: [bool; 2],
    /// The core wants `handle_drained` calls on that side.
    feed: [bool; 2],
    /// Close that side once its queue is sent.
    flush_close: [bool; 2],
    /// The start of a frame each side's core has not finished giving (a
    /// chunk frame comes in pieces; a token fits in one).
    carry: [Vec<u8>; 2],
    /// The largest frame each side takes, as its core said.
    limit: [u32; 2],
}

enum Ev {
    Arrive(usize),
    Timer(usize),
    TrackerTimer,
    Sent(Completion),
    /// Host `h`'s uplink is sending: its core hears of the bytes leaving.
    Progress(usize),
    Deliver {
        conn: usize,
        to: usize,
        frame: Vec<u8>,
    },
    /// The dial reaches the other host.
    Syn(usize),
    /// The dialler hears the connection is up, or refused.
    Established(usize),
    Refused(usize),
    /// Side `to` hears the other side closed.
    Fin {
        conn: usize,
        to: usize,
    },
    ToTracker {
        host: usize,
        data: Vec<u8>,
    },
    FromTracker {
        host: usize,
        data: Vec<u8>,
    },
    Crash(usize),
}

pub struct World {
    t0: Instant,
    pub now: Nanos,
    queue: Queue<Ev>,
    pub links: Links,
    pub hosts: Vec<Host>,
    by_addr: BTreeMap<SocketAddr, usize>,
    conns: Vec<Conn>,
    tracker: Tracker,
    tracker_latency: Nanos,
    tracker_timer: Option<Nanos>,
    pub content: Rc<Content>,
    sndbuf: u64,
    completions: Vec<Completion>,
    /// Events run, for the figures.
    pub steps: u64,
    /// Hosts before this index are no longer pending.
    settled: usize,
    /// The host whose frames, connections and timers are printed (`--trace`).
    pub trace: Option<usize>,
    /// How chunks travel, if asked (`--hops`).
    pub hops: Option<Hops>,
}

/// How a host is set up.
pub struct HostSpec {
    pub up: f64,
    pub down: f64,
    pub latency: Duration,
    pub class: usize,
    pub seed: bool,
    pub arrive: Duration,
    pub config: Config,
    pub goal: Goal,
    /// Sends chunks of this other content (a poisoner).
    pub lie: Option<u64>,
    pub hostile: Option<Hostile>,
    pub crash_at: Option<Duration>,
}

impl World {
    pub fn new(content: Rc<Content>, tracker: TrackerConfig, tracker_latency: Duration, sndbuf: u64) -> World {
        let t0 = Instant::now();
        let mut w = World {
            t0,
            now: 0,
            queue: Queue::default(),
            links: Links::default(),
            hosts: Vec::new(),
            by_addr: BTreeMap::new(),
            conns: Vec::new(),
            tracker: Tracker::new(tracker, t0),
            tracker_latency: nanos(tracker_latency),
            tracker_timer: None,
            content,
            sndbuf,
            completions: Vec::new(),
            steps: 0,
            settled: 0,
            trace: None,
            hops: None,
        };
        w.arm_tracker();
        w
    }

    pub fn add_host(&mut self, spec: HostSpec) -> usize {
        let i = self.hosts.len();
        let ip = Ipv4Addr::from(0x0a00_0000 + i as u32 + 1);
        let addr = SocketAddr::new(IpAddr::V4(ip), PORT);
        let link = self.links.add_host(spec.up, spec.down);
        let config = Config { tracker: TRACKER, port: PORT, ..spec.config };
        self.hosts.push(Host {
            addr,
            link,
            class: spec.class,
            seed: spec.seed,
            latency: nanos(spec.latency),
            core: None,
            config,
            goal: spec.goal,
            lie: spec.lie,
            hostile: spec.hostile,
            arrive: nanos(spec.arrive),
            first_chunk: None,
            done: None,
            failed: None,
            gone: None,
            crashed: false,
            from_seeders: 0,
            from_peers: 0,
            uploaded: 0,
            sent_per_sec: Vec::new(),
            timer: None,
            ticking: false,
        });
        self.by_addr.insert(addr, i);
        self.push(nanos(spec.arrive), Ev::Arrive(i));
        if let Some(at) = spec.crash_at {
            self.push(nanos(spec.arrive + at), Ev::Crash(i));
        }
        i
    }

    /// Runs until every downloader has failed or gone (a finished one goes
    /// when its seeding goal is met: how long it stayed is a figure), or `limit`.
    pub fn run(&mut self, limit: Duration) {
        let limit = nanos(limit);
        while self.pending() {
            let Some((at, ev)) = self.queue.pop() else { break };
            if at > limit {
                break;
            }
            self.now = at;
            self.steps += 1;
            self.step(ev);
        }
    }

    /// Whether a downloader is still pending; one that is not stays so, so
    /// the hosts before the first pending one are passed over for good.
    fn pending(&mut self) -> bool {
        while self.hosts.get(self.settled).is_some_and(|h| !h.pending()) {
            self.settled += 1;
        }
        self.settled < self.hosts.len()
    }

    fn push(&mut self, at: Nanos, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// An event a network delay from now (a frame, a dial, a datagram).
    fn push_after(&mut self, delay: Nanos, ev: Ev) {
        self.queue.push_after(self.now, delay, ev);
    }

    /// Prints what happens at host `h` if it is the traced one.
    fn trace(&self, h: usize, what: impl FnOnce() -> String) {
        if self.trace == Some(h) {
            eprintln!("{:10.4} {}", self.now as f64 / 1e9, what());
        }
    }

    /// Host `h` as `--trace` and the peers file name it.
    fn name(h: usize) -> String {
        match h {
            0 => "seed".into(),
            _ => format!("peer {}", h - 1),
        }
    }

    /// A frame for the trace: its message, or what was wrong with it.
    fn show(frame: &[u8]) -> String {
        match split_frame(frame, MAX_PEER_FRAME) {
            Ok(Some((f, _))) => Message::decode(f).map_or_else(|e| format!("malformed: {e}"), |m| m.to_string()),
            _ => "malformed frame".into(),
        }
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_nanos(self.now)
    }

    fn step(&mut self, ev: Ev) {
        let now = self.instant();
        match ev {
            Ev::Arrive(h) => self.arrive(h),
            Ev::Timer(h) => {
                if self.hosts[h].timer.is_some_and(|t| t <= self.now) {
                    self.trace(h, || "timer".into());
                    self.hosts[h].timer = None;
                    if let Some(core) = self.hosts[h].core.as_mut() {
                        core.handle_timeout(now);
                    }
                    self.after(h);
                }
            }
            Ev::TrackerTimer => {
                if self.tracker_timer.is_some_and(|t| t <= self.now) {
                    self.tracker_timer = None;
                    self.tracker.handle_timeout(now);
                    self.arm_tracker();
                }
            }
            Ev::Sent(c) => self.sent(c),
            Ev::Progress(h) => self.progress(h),
            Ev::Deliver { conn, to, frame } => self.deliver(conn, to, &frame),
            Ev::Syn(c) => self.syn(c),
            Ev::Established(c) => {
                let h = self.conns[c].hosts[0];
                if self.conns[c].open[0] {
                    self.trace(h, || format!("connected to {}", World::name(self.conns[c].hosts[1])));
                    if let Some(core) = self.hosts[h].core.as_mut() {
                        core.handle_connected(now, ConnId(2 * c));
                    }
                    self.after(h);
                }
            }
            Ev::Refused(c) => self.hear_close(c, 0),
            Ev::Fin { conn, to } => self.hear_close(conn, to),
            Ev::ToTracker { host, data } => {
                let mut answer = Vec::new();
                let from = self.hosts[host].addr;
                self.tracker.handle_datagram(now, from, &data, &mut answer);
                self.arm_tracker();
                if !answer.is_empty() {
                    let delay = self.tracker_latency + self.hosts[host].latency;
                    self.push_after(delay, Ev::FromTracker { host, data: answer });
                }
            }
            Ev::FromTracker { host, data } => {
                if let Some(core) = self.hosts[host].core.as_mut() {
                    core.handle_datagram(now, &data);
                    self.after(host);
                }
            }
            Ev::Crash(h) => self.crash(h),
        }
    }

    fn arrive(&mut self, h: usize) {
        let now = self.instant();
        let host = &mut self.hosts[h];
        let mut core = Machine::new(host.config.clone(), now);
        let chunks = self.content.meta.chunk_count();
        // Stallers and rejecters claim every chunk.
        let claims = host.seed || matches!(host.hostile, Some(Hostile::Staller | Hostile::Rejecter));
        let have = if claims { Bitfield::full(chunks) } else { Bitfield::new(chunks) };
        let store = self.content.store(host.lie, have.clone());
        core.add(now, self.content.meta.clone(), Box::new(store), have, host.goal);
        host.core = Some(core);
        self.after(h);
    }

    /// Carries out what host `h`'s core asked for, then re-arms its timer.
    fn after(&mut self, h: usize) {
        let now = self.instant();
        loop {
            let Some(core) = self.hosts[h].core.as_mut() else { return };
            let Some(out) = core.poll_output() else { break };
            match out {
                Output::Datagram(data) => {
                    let delay = self.hosts[h].latency + self.tracker_latency;
                    self.push_after(delay, Ev::ToTracker { host: h, data });
                }
                Output::Connect(addr, id) => {
                    let c = self.dial(h, addr);
                    if let Some(core) = self.hosts[h].core.as_mut() {
                        core.handle_dialling(now, addr, id, ConnId(2 * c));
                    }
                }
                Output::Send(conn, msg) => {
                    let mut frame = Vec::new();
                    msg.encode(&mut frame);
                    self.enqueue(conn, frame);
                }
                Output::Bitfield(conn, bits) => {
                    let mut frame = Vec::new();
                    Message::Bitfield(&bits).encode(&mut frame);
                    self.enqueue(conn, frame);
                }
                Output::Feed(conn) => {
                    let (c, s) = split(conn);
                    if self.conns[c].open[s] {
                        self.conns[c].feed[s] = true;
                        self.pump(c, s);
                    }
                }
                Output::Close(conn) => self.close(conn.0 / 2, conn.0 % 2),
                Output::Limit(conn, max) => {
                    let (c, s) = split(conn);
                    self.conns[c].limit[s] = max;
                }
                Output::CloseAfterFlush(conn) => {
                    let (c, s) = split(conn);
                    self.conns[c].flush_close[s] = true;
                    if self.conns[c].queued[s] == 0 {
                        self.close(c, s);
                    }
                }
            }
        }
        while let Some(ev) = self.hosts[h].core.as_mut().and_then(Machine::poll_event) {
            self.event(h, ev);
        }
        let Some(core) = self.hosts[h].core.as_ref() else { return };
        let next = core.next_deadline().map(|d| nanos(d.saturating_duration_since(self.t0)).max(self.now));
        if next != self.hosts[h].timer {
            self.hosts[h].timer = next;
            if let Some(at) = next {
                self.push(at, Ev::Timer(h));
            }
        }
    }

    fn event(&mut self, h: usize, ev: PeerEvent) {
        let now = self.instant();
        let host = &mut self.hosts[h];
        match ev {
            PeerEvent::Complete { counters, .. } => {
                host.done = Some(self.now);
                host.from_seeders = counters.from_seeders;
                host.from_peers = counters.from_leechers;
            }
            PeerEvent::Failed { reason, .. } => host.failed = Some(reason),
            PeerEvent::Finished { .. } => {
                // Its one file is over: the process exits, saying goodbye.
                if let Some(core) = host.core.as_mut() {
                    host.uploaded = core.uploaded();
                    core.shutdown(now);
                }
                host.gone = Some(self.now);
                self.after_exit(h);
            }
            PeerEvent::Reconnected => {}
        }
    }

    /// A host whose process ended: its last outputs go out, then nobody listens there.
    fn after_exit(&mut self, h: usize) {
        let Some(mut core) = self.hosts[h].core.take() else { return };
        while let Some(out) = core.poll_output() {
            match out {
                Output::Datagram(data) => {
                    let delay = self.hosts[h].latency + self.tracker_latency;
                    self.push_after(delay, Ev::ToTracker { host: h, data });
                }
                Output::Close(conn) | Output::CloseAfterFlush(conn) => self.close(conn.0 / 2, conn.0 % 2),
                _ => {}
            }
        }
        self.reset(h);
    }

    fn crash(&mut self, h: usize) {
        if self.hosts[h].core.is_none() || self.hosts[h].gone.is_some() {
            return;
        }
        if let Some(core) = self.hosts[h].core.as_ref() {
            self.hosts[h].uploaded = core.uploaded();
        }
        self.hosts[h].crashed = true;
        self.hosts[h].gone = Some(self.now);
        let _ = self.hosts[h].core.take(); // no goodbye: the tracker expires it
        self.reset(h);
    }

    /// Resets whatever host `h`, whose process is gone, still had open.
    fn reset(&mut self, h: usize) {
        for c in 0..self.conns.len() {
            for s in 0..2 {
                if self.conns[c].hosts[s] == h && self.conns[c].open[s] {
                    self.close(c, s);
                }
            }
        }
    }

    fn dial(&mut self, h: usize, addr: SocketAddr) -> usize {
        let target = self.by_addr.get(&addr).copied();
        let far = target.unwrap_or(h);
        let c = self.conns.len();
        let (near_link, far_link) = (self.hosts[h].link, self.hosts[far].link);
        let flows = [self.links.add_flow(near_link, far_link), self.links.add_flow(far_link, near_link)];
        debug_assert_eq!(flows[0].0, 2 * c, "flow 2c + s is side s of connection c");
        self.conns.push(Conn {
            hosts: [h, far],
            flows,
            queues: [VecDeque::new(), VecDeque::new()],
            queued: [0, 0],
            through: [0, 0],
            open: [true, target.is_some()],
            feed: [false, false],
            flush_close: [false, false],
            carry: [Vec::new(), Vec::new()],
            limit: [MAX_PEER_FRAME; 2],
        });
        let delay = self.delay(h, far);
        match target {
            Some(_) => self.push_after(delay, Ev::Syn(c)),
            None => self.push_after(2 * delay, Ev::Refused(c)),
        }
        c
    }

    /// The dial reaches its host: accepted if its process runs, refused if
    /// it exited, lost if it crashed (the dialler's core times it out).
    fn syn(&mut self, c: usize) {
        let far = self.conns[c].hosts[1];
        let near = self.conns[c].hosts[0];
        if self.hosts[far].crashed || self.now < self.hosts[far].arrive {
            self.conns[c].open[1] = false;
            if !self.hosts[far].crashed {
                self.push_after(self.delay(near, far), Ev::Refused(c));
            }
            return;
        }
        let (now, from) = (self.instant(), self.hosts[near].addr);
        let Some(core) = self.hosts[far].core.as_mut() else {
            self.conns[c].open[1] = false;
            self.push_after(self.delay(near, far), Ev::Refused(c));
            return;
        };
        core.handle_accept(now, ConnId(2 * c + 1), from);
        self.trace(far, || format!("accepted {}", World::name(near)));
        self.after(far);
        self.push_after(self.delay(near, far), Ev::Established(c));
    }

    fn delay(&self, a: usize, b: usize) -> Nanos {
        self.hosts[a].latency + self.hosts[b].latency
    }

    /// Puts an encoded frame on its side's flow.
    fn enqueue(&mut self, conn: ConnId, frame: Vec<u8>) {
        let (c, s) = split(conn);
        if !self.conns[c].open[s] {
            return;
        }
        self.conns[c].through[s] += frame.len() as u64;
        let end = self.conns[c].through[s];
        // A staller's chunks never leave (its core is told they did); a rejecter says it does not hold them.
        let mut frame = frame;
        match (chunk_frame_index(&frame), self.hosts[self.conns[c].hosts[s]].hostile) {
            (Some(_), Some(Hostile::Staller)) => {
                let now = self.instant();
                if let Some(core) = self.hosts[self.conns[c].hosts[s]].core.as_mut() {
                    core.handle_written(now, conn, end);
                }
                return;
            }
            (Some(index), Some(Hostile::Rejecter)) => {
                frame.clear();
                Message::Reject { index, reason: RejectReason::NotHeld }.encode(&mut frame);
            }
            _ => {}
        }
        // A chunk's frame header and bytes (its token stands for them).
        let cost = chunk_frame_index(&frame).map_or(0, |index| 9 + self.content.chunk_len(index));
        let (from, to) = (self.conns[c].hosts[s], self.conns[c].hosts[1 - s]);
        self.trace(from, || format!("-> {}: {}", World::name(to), World::show(&frame)));
        if let Some(hops) = self.hops.as_mut() {
            match (chunk_frame_index(&frame), split_frame(&frame, MAX_PEER_FRAME)) {
                (Some(index), _) => hops.on_send(self.now, from, to, index),
                (None, Ok(Some((f, _)))) => match Message::decode(f) {
                    Ok(Message::Request { index, .. }) => hops.on_request(self.now, from, to, index),
                    Ok(Message::Cancel(index)) => hops.forget(from, to, index),
                    Ok(Message::Reject { index, .. }) => hops.forget(to, from, index),
                    _ => {}
                },
                _ => {}
            }
        }
        let conn = &mut self.conns[c];
        conn.queued[s] += cost;
        conn.queues[s].push_back((frame, cost, end));
        if !self.links.is_busy(conn.flows[s]) {
            self.transmit(c, s);
        }
    }

    /// Sends the frames at the head of a side's queue: control frames at
    /// once, then starts the first chunk on the link.
    fn transmit(&mut self, c: usize, s: usize) {
        let delay = self.delay(self.conns[c].hosts[0], self.conns[c].hosts[1]);
        let to = 1 - s;
        let reads = self.hosts[self.conns[c].hosts[to]].hostile != Some(Hostile::NonReader);
        while let Some((_, cost, _)) = self.conns[c].queues[s].front() {
            if *cost > 0 && !reads {
                return; // a non-reader's chunks, and what follows them, wait for good
            }
            if *cost > 0 {
                let (flow, cost) = (self.conns[c].flows[s], *cost);
                let mut out = std::mem::take(&mut self.completions);
                self.links.start(self.now, flow, cost, &mut out);
                self.schedule(&mut out);
                self.completions = out;
                // Its first bytes leave at once (the kernel takes them), then more every `PROGRESS`.
                let h = self.conns[c].hosts[s];
                let now = self.instant();
                let written = self.written_before(c, s);
                if let Some(core) = self.hosts[h].core.as_mut() {
                    core.handle_written(now, ConnId(2 * c + s), written);
                }
                if !std::mem::replace(&mut self.hosts[h].ticking, true) {
                    self.push(self.now + PROGRESS, Ev::Progress(h));
                }
                return;
            }
            let Some((frame, ..)) = self.conns[c].queues[s].pop_front() else { break };
            self.push_after(delay, Ev::Deliver { conn: c, to, frame });
        }
        if self.conns[c].flush_close[s] {
            self.close(c, s);
        }
    }

    fn schedule(&mut self, out: &mut Vec<Completion>) {
        for c in out.drain(..) {
            self.push(c.at, Ev::Sent(c));
        }
    }

    /// A chunk is on its way: it arrives after the latency; the flow goes on
    /// with the next frame, and the core may queue more.
    fn sent(&mut self, done: Completion) {
        if !self.links.is_current(&done) {
            return;
        }
        // Each connection made its two flows in turn: flow 2c + s is side s of c.
        let (conn, s) = (done.flow.0 / 2, done.flow.0 % 2);
        self.links.take_arrived(self.now, done.flow); // the rest: the whole frame's arrival says it
        let mut out = std::mem::take(&mut self.completions);
        self.links.finish(self.now, done.flow, &mut out);
        self.schedule(&mut out);
        self.completions = out;
        let Some((frame, cost, end)) = self.conns[conn].queues[s].pop_front() else { return };
        self.conns[conn].queued[s] -= cost;
        let from = self.conns[conn].hosts[s];
        let sec = (self.now / 1_000_000_000) as usize;
        let per_sec = &mut self.hosts[from].sent_per_sec;
        if per_sec.len() <= sec {
            per_sec.resize(sec + 1, 0);
        }
        per_sec[sec] += cost;
        let now = self.instant();
        if let Some(core) = self.hosts[from].core.as_mut() {
            core.handle_written(now, ConnId(2 * conn + s), end);
        }
        let delay = self.delay(self.conns[conn].hosts[0], self.conns[conn].hosts[1]);
        self.push_after(delay, Ev::Deliver { conn, to: 1 - s, frame });
        self.transmit(conn, s);
        self.pump(conn, s);
        self.after(from);
    }

    /// Bytes of side `s` of connection `c` written in full: all before the
    /// frame at the head of its queue (a chunk on the link counts once whole).
    fn written_before(&self, c: usize, s: usize) -> u64 {
        let conn = &self.conns[c];
        conn.queues[s].front().map_or(conn.through[s], |(frame, _, end)| end - frame.len() as u64)
    }

    /// Host `h`'s core hears that bytes left on each connection whose chunk
    /// is on its uplink, and the receiver's core how many arrived of it (a
    /// latency early); again after `PROGRESS` while any is.
    fn progress(&mut self, h: usize) {
        let now = self.instant();
        let link = self.hosts[h].link;
        for i in 0..self.links.sending(link).len() {
            let flow = self.links.sending(link)[i];
            if self.links.rate(flow) <= 0.0 {
                continue;
            }
            // Flow 2c + s is side s of c: its ConnId; the receiver's is 2c + 1 - s.
            // The sender hears the bytes before the chunk (the simulator's
            // stream counts a chunk's frame as its token: it is written once whole).
            let (c, s) = (flow.0 / 2, flow.0 % 2);
            let arrived = self.links.take_arrived(self.now, flow);
            let written = self.written_before(c, s);
            if let Some(core) = self.hosts[h].core.as_mut() {
                core.handle_written(now, ConnId(flow.0), written);
            }
            let open = self.conns[c].open[1 - s] && arrived > 0;
            if let Some(core) = self.hosts[self.conns[c].hosts[1 - s]].core.as_mut().filter(|_| open) {
                core.handle_receiving(now, ConnId(2 * c + 1 - s), arrived);
            }
        }
        let sending = !self.links.sending(link).is_empty();
        self.hosts[h].ticking = sending;
        if sending {
            self.push(self.now + PROGRESS, Ev::Progress(h));
        }
    }

    /// Asks the core for more while the side's queue is below the send buffer.
    fn pump(&mut self, c: usize, s: usize) {
        let h = self.conns[c].hosts[s];
        let now = self.instant();
        while self.conns[c].open[s] && self.conns[c].feed[s] && self.conns[c].queued[s] < self.sndbuf {
            let Some(core) = self.hosts[h].core.as_mut() else { return };
            let mut frames = Vec::new();
            let mut carry = std::mem::take(&mut self.conns[c].carry[s]);
            let queued = self.conns[c].through[s] + carry.len() as u64;
            let fed = shell::feed(core, now, ConnId(2 * c + s), queued, &mut carry, |f| frames.push(f.to_vec()));
            self.conns[c].carry[s] = carry;
            if !fed {
                self.conns[c].feed[s] = false;
                break;
            }
            for frame in frames {
                self.enqueue(ConnId(2 * c + s), frame);
            }
        }
    }

    fn deliver(&mut self, c: usize, to: usize, frame: &[u8]) {
        if !self.conns[c].open[to] {
            return;
        }
        let h = self.conns[c].hosts[to];
        let from = self.conns[c].hosts[1 - to];
        self.trace(h, || format!("<- {}: {}", World::name(from), World::show(frame)));
        if let (Some(hops), Some(index)) = (self.hops.as_mut(), chunk_frame_index(frame)) {
            hops.on_receive(self.now, h, from, index);
        }
        let now = self.instant();
        let Some(core) = self.hosts[h].core.as_mut() else { return };
        let Some(chunk) = shell::hand_over(core, now, ConnId(2 * c + to), frame, self.conns[c].limit[to]) else {
            return self.close(c, to);
        };
        if chunk && self.hosts[h].first_chunk.is_none() {
            let got = self.hosts[h].core.as_ref().and_then(|m| {
                let id = m.files().next()?;
                m.snapshot(id, now).map(|s| s.done > 0)
            });
            if got == Some(true) {
                self.hosts[h].first_chunk = Some(self.now);
            }
        }
        self.after(h);
    }

    /// Side `s` closes: what it had not sent is dropped, the other side
    /// hears of it after the latency; both cores are told.
    fn close(&mut self, c: usize, s: usize) {
        if !self.conns[c].open[s] {
            return;
        }
        self.conns[c].open[s] = false;
        let (near, far) = (self.conns[c].hosts[s], self.conns[c].hosts[1 - s]);
        self.trace(near, || format!("closed {}", World::name(far)));
        self.conns[c].queues[s].clear();
        self.conns[c].queued[s] = 0;
        let mut out = std::mem::take(&mut self.completions);
        self.links.finish(self.now, self.conns[c].flows[s], &mut out);
        self.schedule(&mut out);
        self.completions = out;
        let h = self.conns[c].hosts[s];
        let now = self.instant();
        if let Some(core) = self.hosts[h].core.as_mut() {
            core.handle_closed(now, ConnId(2 * c + s));
        }
        if self.conns[c].open[1 - s] {
            let delay = self.delay(self.conns[c].hosts[0], self.conns[c].hosts[1]);
            self.push_after(delay, Ev::Fin { conn: c, to: 1 - s });
        }
        self.after(h);
    }

    /// Side `s` learns the other side is gone.
    fn hear_close(&mut self, c: usize, s: usize) {
        if self.conns[c].open[s] {
            self.close(c, s);
        }
    }

    fn arm_tracker(&mut self) {
        let next = self.tracker.next_deadline().map(|d| nanos(d.saturating_duration_since(self.t0)).max(self.now));
        if next != self.tracker_timer {
            self.tracker_timer = next;
            if let Some(at) = next {
                self.push(at, Ev::TrackerTimer);
            }
        }
    }

    /// Uploaded bytes of host `h` (its core's count, kept when it leaves).
    pub fn uploaded(&self, h: usize) -> u64 {
        self.hosts[h].core.as_ref().map_or(self.hosts[h].uploaded, Machine::uploaded)
    }
}

fn split(conn: ConnId) -> (usize, usize) {
    (conn.0 / 2, conn.0 % 2)
}

pub fn nanos(d: Duration) -> Nanos {
    d.as_nanos().min(u128::from(u64::MAX)) as Nanos
}

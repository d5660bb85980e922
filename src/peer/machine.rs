//! The peer core, sans-IO: files by content id, connections by `ConnId`, the
//! upload slots, the rate buckets and the tracker announces. A peer both
//! serves and fetches; a seeder's files start complete, a leecher's empty.
//!
//! Inputs are `handle_*` calls with the current time; outputs are drained
//! with [`Machine::poll_output`] (bytes to send, connections to open or
//! close) and [`Machine::poll_event`] (what the user is told), and
//! [`Machine::next_deadline`] says when to call [`Machine::handle_timeout`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::answers::AnswerTimes;
use super::bitfield::Bitfield;
use super::choker::{self, Candidate};
use super::penalty::{Offence, Penalties};
use super::rate::Bucket;
use super::session::{Answer, Asked, Phase, Rate, Sending, Session};
use super::storage::{ReadError, Storage};
use super::torrent::{Counters, Goal, Stage, Torrent};
use super::unsent::Unsent;
use crate::announce::{Announce, Announcer, Reply};
use crate::common::net::ConnId;
use crate::common::rng::Rng;
use crate::hash::ContentId;
use crate::meta::FileMeta;
use crate::wire::peer::{
    max_control_frame, max_frame, put_chunk_header, Message, RejectReason, State, HELLO_FRAME, PEER_VERSION,
};
use crate::wire::udp::Event as AnnounceEvent;
use crate::wire::DecodeError;

/// Requests a peer may have outstanding with us; more closes the connection.
pub const MAX_PIPELINE: usize = 64;
/// Most bytes we keep requested from one peer, however fast it is.
const PIPELINE_BYTES: u64 = 8 * 1024 * 1024;
/// Seconds of a peer's measured rate kept requested from it, plus one chunk:
/// enough to keep its pipe full, short enough that a request queued behind
/// others is not stale (a slow queue at the seed means duplicates). In the
/// simulator 0.25 s against 1 s: 1.099 against 1.150 x T_p2p at N=16.
const PIPELINE_SECS: f64 = 0.25;
/// Our chunks a request waits behind on a connection we upload on (the one
/// on the wire and the send buffer's): their time at our rate to that peer
/// is added to its pipeline, or a slow uplink starves its own downloads
/// (half the peers at 5 MiB/s: 1.276 x T_p2p without, 1.173 with).
const AHEAD_CHUNKS: f64 = 3.0;
/// The longest such wait counted, in seconds.
const AHEAD_MAX_SECS: f64 = 6.0;
/// Requests kept outstanding per peer at least, whatever the chunk size.
const MIN_PIPELINE: usize = 2;
/// A peer owing chunks whose deliveries fall this far behind `STALL_RATE`
/// is dropped: one that sends nothing, for this long.
const STALL: Duration = Duration::from_secs(15);
/// The rate a peer owing chunks must keep up, counting the bytes of a chunk
/// still arriving (`handle_receiving`): each byte moves its stall clock on
/// by 1/`STALL_RATE` s, never past now. Counted only whole, a chunk slower
/// than `STALL` dropped its honest sender (2 MiB from a 1 MiB/s seed split
/// 8 ways takes 16 s) and a swarm of big chunks on slow links starved. An
/// honest slow link, 64 KiB/s per slot, keeps up 8 times over (and a burst
/// after a pause of up to `STALL` catches up); a trickler at 1 byte/s
/// falls behind as fast as one that sends nothing, and one just under this
/// rate within a few times `STALL`. Bytes of a frame that is not a chunk
/// count too, but a frame is at most a chunk's size and then decoded: at
/// this rate it ends within the largest chunk's time, and a peer sending
/// garbage is dropped for it then.
const STALL_RATE: f64 = 8.0 * 1024.0;
/// A peer owing chunks that sends none for this many times what one chunk
/// takes at the rate it has shown (at least `MIN_OVERDUE`) is behind: what it
/// owes may be asked of other holders (it may still answer), and it is asked
/// for nothing more until a chunk comes. A staller costs the swarm this, not
/// `STALL`; an honest slow peer is not dropped for it. The bytes of a chunk
/// still arriving count at 1/`OVERDUE_CHUNKS` of that rate (`overdue_at`):
/// a big chunk on a slow link that keeps its pace is not overdue.
const OVERDUE_CHUNKS: f64 = 4.0;
const MIN_OVERDUE: Duration = Duration::from_secs(2);
/// A peer that has delivered nothing (nor any peer at its address) is
/// overdue sooner once the file has answer times to judge by: after
/// `UNPROVEN_ANSWERS` times the median time its recent requests took to be
/// answered (`AnswerTimes`), at least `MIN_UNPROVEN`, if that is shorter than
/// the rule above; and then it is closed, its address backed off as after a
/// failed dial, so its connection room goes to a peer that may serve. A
/// staller (it claims every chunk, takes requests, sends none) costs what
/// the swarm takes, not 2 s, and not a connection for 15 s (300 peers of 64
/// MiB, 10% stallers, median answer about 65 ms: the last honest peer 4.49
/// -> 4.13 s at seed 1, the same run without stallers 4.08 s). An honest
/// newcomer whose first chunk is that late, sending no byte of it, is
/// closed and dialled again after the backoff; one whose bytes arrive at a
/// quarter of `FLOOR_RATE` is not overdue, and its first chunk proves it.
const UNPROVEN_ANSWERS: u32 = 4;
const MIN_UNPROVEN: Duration = Duration::from_millis(250);
/// The rate assumed of a peer that has sent us nothing yet on a connection.
const FLOOR_RATE: f64 = 256.0 * 1024.0;
/// How long a connection may take to exchange Hellos.
const GREETING: Duration = Duration::from_secs(10);
/// How long a dial may take to connect.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection on which no frame arrives for this long is closed.
const IDLE: Duration = Duration::from_secs(120);
/// Callers not yet greeted, per address and in all: more are closed at once,
/// so callers that never say Hello hold little.
const GREETING_PER_IP: usize = 8;
const GREETING_TOTAL: usize = 128;
/// A slot holder gives its slot to a waiting peer after this long whatever it
/// was sent (its turn may be slow under an upload limit), and a waiting peer
/// goes before those with fewer chunks after this long.
const ROTATION: Duration = Duration::from_secs(10);
/// A slot holder yields to a waiting peer once it has been sent this many
/// chunks: short turns share an uplink by bytes among all who want
/// something, so nobody falls far behind (at 100 peers in the simulator,
/// 1 MiB chunks: 1.31 x T_p2p with turns of 4 chunks, 1.71 x with 10 s turns).
const TURN_CHUNKS: u64 = 4;

/// Upload rate per slot: while our uplink sends less than `slots` x this,
/// fewer peers hold a slot at once. Each connection we send on keeps a few
/// segments queued at our uplink whatever its rate, and the acknowledgements
/// of our own downloads wait behind them: at a fixed delay that queue allows
/// a fixed rate per connection. With half the peers at 5 MiB/s and 8 slots
/// each (`make bench-swarm`), the slow ones received 6-10 MiB/s for the
/// first 14 s and the last finished at 1.12-1.18 x T_p2p, median 1.15; with
/// 4 slots on them, 14 on average, every uplink full from the second second
/// to the last, and 1.12-1.16 x over 16 runs, median 1.126. At 1.25 MiB/s a
/// 5 MiB/s uplink sat on the edge, its slots going 4, 5, 4 every few seconds.
const SLOT_RATE: f64 = 1.5 * 1024.0 * 1024.0;
/// Slots held whatever the rate, unless `--slots` says fewer: the rate
/// follows the slots too (2 on the slow half fed it the most and left the
/// fast half last at 1.15 x).
const MIN_SLOTS: usize = 4;

/// Upload slots for an uplink measured at `rate` bytes a second (0: not yet
/// measured), `most` at most.
fn slots_for(rate: f64, most: usize) -> usize {
    if rate <= 0.0 {
        return most;
    }
    ((rate / SLOT_RATE).ceil() as usize).clamp(MIN_SLOTS.min(most), most)
}

/// The bytes of one slot turn for a file of chunks of `chunk_size`.
fn turn_bytes(chunk_size: u32) -> u64 {
    TURN_CHUNKS * u64::from(chunk_size)
}
/// A chunk a seed refused with `Spread` is asked of it again after this long:
/// in a large swarm the peer it went to is often not connected to us, and
/// the last chunks wait on this (1000 peers of 64 MiB: last at 1.59 x T_p2p
/// with 500 ms, 3.14 x with 3 s).
const RESPREAD: Duration = Duration::from_millis(500);
/// Times a seed refuses one peer one chunk with `Spread` before sending it.
const SPREAD_REFUSALS: usize = 2;
/// A seed's chunk queued whole for a peer counts as on its way there until
/// its Have comes, or this long: a second copy asked meanwhile is refused.
const IN_FLIGHT: Duration = Duration::from_millis(300);
/// A slot holder that asks for nothing this long while others wait loses it:
/// a peer that got what it wanted elsewhere gives its turn back within a
/// round trip or two (500 ms against 5 s: 1.07 x T_p2p against 1.42 x at 100
/// peers, 128 KiB chunks). With nobody waiting it has `SLOT_IDLE`, so a
/// downloader held back by its own `--down-limit` is not choked for it.
const ASK_IDLE: Duration = Duration::from_millis(500);
/// A slot holder whose queue drains nothing this long loses it (a non-reader,
/// or a link too slow for one chunk in this time); a connection with a chunk
/// in its queue whose queue moves nothing this long is closed (it reads nothing).
const SLOT_IDLE: Duration = Duration::from_secs(5);
/// Bytes of a chunk read from storage and queued at once, at most: a Chunk
/// frame goes out in pieces, each read only when the connection's queue has
/// room, so what a process holds does not grow with the chunk size (at 4 MiB
/// chunks a queue held a whole chunk each, and the budget below was 42.5 MiB).
pub const PIECE: usize = 256 * 1024;
/// Shares of the unsent-chunk budget beyond one per upload slot (see `budget`).
const SPARE_SHARES: u64 = 2;
/// While answers wait for the budget, a piece may stay in a connection's
/// queue this long; then the connection is closed. A reader of a trickle (a
/// byte a second keeps the 5 s rule quiet) would hold its share for good,
/// and ten of them every upload of the process; an honest peer slower than
/// that while others wait costs them more than it gains. A connection left
/// to flush (its file left) has this long, or its chunk's time at
/// `MIN_DRAIN_RATE` if longer, to take the rest of it.
const SHARE_HOLD: Duration = Duration::from_secs(30);
const MIN_DRAIN_RATE: u64 = 32 * 1024;

/// How long a connection left to flush may take to send the rest of a chunk of `chunk_size`.
fn flush_hold(chunk_size: u32) -> Duration {
    SHARE_HOLD.max(Duration::from_secs(u64::from(chunk_size) / MIN_DRAIN_RATE))
}

/// The largest piece of a chunk of `chunk_size` queued at once.
fn piece(chunk_size: u32) -> u64 {
    u64::from(chunk_size).min(PIECE as u64)
}

/// The chunk bytes queued and not yet taken by the kernel that all
/// connections together may hold, for a chunk of `chunk_size`: a piece is
/// queued only within it, else its answer waits (the request stays owed, or
/// the frame under way waits for its next piece) until bytes leave or a
/// connection closes. A share is what one slot holder at full speed holds:
/// the shell asks for more while its queue is under the low-water mark, so
/// at most that mark plus one piece. One share per slot and `SPARE_SHARES`
/// more, for peers whose turn ended and still get what they asked before, so
/// honest slot holders do not wait for it, while what callers that never
/// read make us hold is this budget, not one chunk each: 3.75 MiB at 128 KiB
/// chunks, 5 MiB from 256 KiB up, whatever the chunk size (128 callers x 4
/// MiB chunks held 524 MiB when each queue took a chunk; 42.5 MiB when the
/// budget counted whole chunks).
fn budget(slots: usize, chunk_size: u32) -> u64 {
    (slots as u64 + SPARE_SHARES) * (piece(chunk_size) + crate::common::net::LOW_WATER as u64)
}
/// Peers asked of the tracker per announce while downloading.
const NUM_WANT: i32 = 50;
/// Ask the tracker again this soon while no peer is known at all.
const EAGER_ANNOUNCE: Duration = Duration::from_secs(1);
/// How long leaving waits for the tracker to acknowledge our goodbyes.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: SocketAddr,
    /// Where we accept peers, as announced to the tracker and in Hello.
    pub port: u16,
    /// Peers uploaded to at once, over all files.
    pub slots: usize,
    /// Connections per file.
    pub max_peers: usize,
    /// Greeted callers over all files (at least `max_peers`, what a
    /// complete file may take): what callers make us hold stays bounded whatever the
    /// number of files (see `room`).
    pub max_inbound: usize,
    pub up_limit: Option<u64>,
    pub down_limit: Option<u64>,
    /// Give up a download when no chunk has been verified for this long.
    pub timeout: Duration,
    /// Announce interval until the tracker tells us its own.
    pub interval: Duration,
    pub seed: u64,
}

/// Peers uploaded to at once, by default.
pub const DEFAULT_SLOTS: usize = 8;
/// Connections per file, by default.
pub const DEFAULT_MAX_PEERS: usize = 50;
/// Greeted callers over all files, by default: each may make us hold its
/// queue (under the 256 KiB low-water mark plus one answer) and a read
/// buffer of a few KiB, about 33 MiB for 128 of them, and the chunk bytes
/// of all queues are within `budget`: 3.75 MiB at 128 KiB chunks, 5 MiB
/// from 256 KiB up whatever the chunk size (README, Seeder and leecher limits).
pub const DEFAULT_MAX_INBOUND: usize = 128;

impl Default for Config {
    /// The defaults of both daemons and of the simulator's peers.
    fn default() -> Config {
        Config {
            tracker: SocketAddr::from(([127, 0, 0, 1], 6969)),
            port: 0,
            slots: DEFAULT_SLOTS,
            max_peers: DEFAULT_MAX_PEERS,
            max_inbound: DEFAULT_MAX_INBOUND,
            up_limit: None,
            down_limit: None,
            timeout: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            seed: 1,
        }
    }
}

/// A connection the core let go whose queue still holds chunk bytes, or
/// whose file left in the middle of a chunk frame.
struct Parked {
    unsent: Unsent,
    /// When it is closed outright if still flushing (`flush_hold` after).
    until: Option<Instant>,
    tail: Option<Tail>,
}

/// The rest of a chunk frame on a connection whose file left: it is sent
/// (frames never end halfway) before the connection closes after its flush.
struct Tail {
    storage: Rc<RefCell<Box<dyn Storage>>>,
    offset: u64,
    left: usize,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Datagram(Vec<u8>),
    /// Dial a peer for a file; answer with `handle_dialling` or `handle_dial_failed`.
    Connect(SocketAddr, ContentId),
    Send(ConnId, Message<'static>),
    Bitfield(ConnId, Vec<u8>),
    /// Answers are owed: call `handle_drained` while the connection's queue has room.
    Feed(ConnId),
    Close(ConnId),
    /// Close once what is queued has been sent.
    CloseAfterFlush(ConnId),
    /// The largest frame the connection may bring from now on (a larger
    /// header closes it as malformed before its body is read).
    Limit(ConnId, u32),
}

/// What the user is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Every chunk verified and the file under its final name.
    Complete { id: ContentId, name: String, size: u64, elapsed: Duration, counters: Counters },
    /// The download cannot go on.
    Failed { id: ContentId, name: String, reason: String },
    /// Seeding is over (goal met, or the shared file changed); the file is gone from the core.
    Finished { id: ContentId, name: String, size: u64, counters: Counters },
    /// The tracker forgot us (it restarted): the catalog needs our files again.
    Reconnected,
}

/// A snapshot of one file, for progress and status lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub name: String,
    pub size: u64,
    pub done: u64,
    pub peers: usize,
    pub elapsed: Duration,
    /// How long nobody has asked for any of it, once complete.
    pub idle: Duration,
    pub counters: Counters,
}

pub struct Machine {
    config: Config,
    nonce: u64,
    rng: Rng,
    torrents: BTreeMap<ContentId, Torrent>,
    sessions: BTreeMap<ConnId, Session>,
    /// Each session's next timer (`session_deadline`), so the next wake-up
    /// is a lookup, not a scan: kept for the sessions touched in a call.
    timers: BTreeSet<(Instant, ConnId)>,
    touched: Vec<ConnId>,
    /// Every session may have changed (a rechoke, a Have to all, a timeout).
    all_touched: bool,
    announcer: Announcer,
    interval: Duration,
    up: Bucket,
    down: Bucket,
    next_rotation: Instant,
    /// A slot holder's turn ended while answering: rechoke once the answer is out.
    turn_over: bool,
    /// At the last rechoke some interested peer waited for a slot.
    contended: bool,
    /// Connections waiting for upload tokens, served in turn so that a
    /// limit is shared fairly (only used under `--up-limit`).
    turns: VecDeque<ConnId>,
    /// Chunk bytes queued on all connections and not yet taken by the kernel.
    unsent: u64,
    /// Of those, the bytes of connections we let go, until the shell says
    /// each is gone (its queue freed, or flushed after `CloseAfterFlush`),
    /// with the rest of a chunk frame one was sending.
    closing: BTreeMap<ConnId, Parked>,
    /// At the end of the last call some answer waited for the budget
    /// (`SHARE_HOLD` applies).
    budget_short: bool,
    /// Sessions whose `waits_budget` is set: `budget_short` scans the
    /// sessions only while there is one (a scan per call was a tenth of
    /// lmk-sim's time at 32 peers).
    budget_waiters: usize,
    /// Chunk bytes the kernel took, over all connections: what our uplink
    /// sends, which sets how many slots we give (`slots`).
    up_rate: Rate,
    /// The slots the last rechoke gave: a new rate that changes the number
    /// rechokes at once (`handle_written`), and the change is logged.
    slots_given: usize,
    /// Creation time: earlier than any instant the buckets have seen.
    born: Instant,
    stopping: Option<Instant>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    /// Peers that broke the protocol.
    pub violations: u64,
    /// Frames that failed to decode, over all connections.
    pub malformed: u64,
    /// Bytes uploaded for files no longer in the core.
    uploaded_before: u64,
    /// Address blocks that misbehaved, and until when they are refused.
    penalties: Penalties,
}

impl Machine {
    pub fn new(config: Config, now: Instant) -> Machine {
        let mut rng = Rng::new(config.seed);
        Machine {
            nonce: rng.next_u64(),
            announcer: Announcer::new(config.tracker, rng.next_u64()),
            interval: config.interval,
            up: Bucket::new(config.up_limit, now),
            down: Bucket::new(config.down_limit, now),
            next_rotation: now + ROTATION,
            turn_over: false,
            contended: false,
            born: now,
            up_rate: Rate::new(now),
            slots_given: config.slots,
            turns: VecDeque::new(),
            unsent: 0,
            closing: BTreeMap::new(),
            budget_short: false,
            budget_waiters: 0,
            rng,
            config,
            torrents: BTreeMap::new(),
            sessions: BTreeMap::new(),
            timers: BTreeSet::new(),
            touched: Vec::new(),
            all_touched: false,
            stopping: None,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            violations: 0,
            malformed: 0,
            uploaded_before: 0,
            penalties: Penalties::default(),
        }
    }

    /// Starts serving (and, unless `have` is full, fetching) a file; one
    /// already traded is left as it is (its connections hold its state).
    pub fn add(&mut self, now: Instant, meta: FileMeta, storage: Box<dyn Storage>, have: Bitfield, goal: Goal) {
        if self.torrents.contains_key(&meta.content_id()) {
            return debug!("{}: already traded; not added again", meta.name());
        }
        let seed = self.rng.next_u64();
        let torrent = Torrent::new(meta, storage, have, goal, seed, now);
        info!("{}: {} ({} chunks)", torrent.meta.name(), stage_word(&torrent), torrent.meta.chunk_count());
        self.torrents.insert(torrent.id, torrent);
        self.handle_timeout(now);
    }

    pub fn handle_accept(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) {
        if self.stopping.is_some() {
            self.outputs.push_back(Output::Close(conn));
            return;
        }
        if self.penalties.banned_until(addr.ip(), now).is_some() {
            debug!("{conn} {addr}: an address that misbehaved, refused for now; closed");
            self.outputs.push_back(Output::Close(conn));
            return;
        }
        let greeting = self.sessions.values().filter(|s| !s.outbound && matches!(s.phase, Phase::Greeting { .. }));
        let (mut total, mut same) = (0, 0);
        for s in greeting {
            total += 1;
            same += usize::from(crate::common::ip_block(s.addr.ip()) == crate::common::ip_block(addr.ip()));
        }
        if total >= GREETING_TOTAL || same >= GREETING_PER_IP {
            debug!("{conn} {addr}: too many callers not yet greeted ({same} from there, {total} in all); closed");
            self.outputs.push_back(Output::Close(conn));
            return;
        }
        let mut s = Session::new(addr, false, None, now);
        s.suspect = self.penalties.remembers(addr.ip());
        self.sessions.insert(conn, s);
        self.outputs.push_back(Output::Limit(conn, HELLO_FRAME));
        self.touched.push(conn);
        self.settle(now);
    }

    /// The shell is dialling `addr` for `id` as `conn` (after `Output::Connect`).
    pub fn handle_dialling(&mut self, now: Instant, addr: SocketAddr, id: ContentId, conn: ConnId) {
        let mut s = Session::new(addr, true, Some(id), now);
        s.suspect = self.penalties.remembers(addr.ip());
        self.sessions.insert(conn, s);
        self.outputs.push_back(Output::Limit(conn, HELLO_FRAME));
        if let Some(t) = self.torrents.get_mut(&id) {
            t.conns += 1;
        }
        self.touched.push(conn);
        self.settle(now);
    }

    pub fn handle_dial_failed(&mut self, now: Instant, addr: SocketAddr, id: ContentId) {
        if let Some(t) = self.torrents.get_mut(&id) {
            t.backoff(addr, true, now);
        }
    }

    /// A dialled connection is up: introduce ourselves.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        self.touched.push(conn);
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        s.phase = Phase::Greeting { since: now };
        if let Some(id) = s.torrent {
            self.outputs.push_back(Output::Send(conn, self.hello(id)));
        }
        self.settle(now);
    }

    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: Message<'_>) -> Result<(), Fatal> {
        self.touched.push(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.last_heard = now;
        }
        let result = self.on_message(now, conn, msg);
        self.settle(now);
        result
    }

    fn on_message(&mut self, now: Instant, conn: ConnId, msg: Message<'_>) -> Result<(), Fatal> {
        let Some(s) = self.sessions.get(&conn) else { return Ok(()) };
        match (s.phase, msg) {
            (Phase::Greeting { .. }, Message::Hello { id, port, nonce }) => self.on_hello(now, conn, id, port, nonce),
            (Phase::Open, Message::Bitfield(bytes)) if s.theirs.is_none() => self.on_bitfield(now, conn, bytes),
            (Phase::Open, Message::State(State::Unavailable)) if s.theirs.is_none() => {
                // Its Hello then Unavailable: no room for another connection. Not a fault.
                debug!("{conn} {}: no room there; closed", s.addr);
                self.disconnect(now, conn);
            }
            (Phase::Open, _) if s.theirs.is_none() => {
                self.violation(now, conn, "first frame after Hello is not a Bitfield")
            }
            (Phase::Open, Message::Bitfield(bytes)) => self.on_refresh(now, conn, bytes),
            (Phase::Open, Message::Have(index)) => self.on_have(now, conn, index),
            (Phase::Open, Message::State(state)) => self.on_state(now, conn, state),
            (Phase::Open, Message::Request { index, sole, more }) => self.on_request(now, conn, index, sole, more),
            (Phase::Open, Message::Cancel(index)) => {
                // A chunk whose frame has begun is finished: it is mid-frame.
                if let Some((s, t)) = self.pair(conn) {
                    if s.drop_owed(index) {
                        t.unpromise(index);
                    }
                }
            }
            (Phase::Open, Message::Chunk { index, data }) => return self.on_chunk(now, conn, index, data),
            (Phase::Open, Message::Reject { index, reason }) => self.on_reject(now, conn, index, reason),
            (_, other) => self.violation(now, conn, &format!("unexpected {other}")),
        }
        Ok(())
    }

    /// The connection's queue has room: append the next answer we owe, or
    /// the next piece (at most `PIECE` bytes) of the chunk frame under way.
    /// `queued` is the stream offset just past the bytes queued on it so far
    /// (those in `out` included), written or not: with it `handle_written`
    /// tells when a piece has left. Returns the chunk bytes appended.
    pub fn handle_drained(&mut self, now: Instant, conn: ConnId, queued: u64, out: &mut Vec<u8>) -> u64 {
        self.touched.push(conn);
        let (changed, bytes) = match self.sessions.contains_key(&conn) {
            true => self.answer(now, conn, queued, out),
            false => (false, self.feed_tail(now, conn, queued, out)),
        };
        if changed {
            self.sweep(now); // the upload that meets a seeding goal ends it now
        }
        if std::mem::take(&mut self.turn_over) {
            self.rechoke(now);
        }
        self.settle(now);
        bytes
    }

    /// The kernel took bytes of the connection's queue, `written` in all
    /// since it opened: it reads what we send. A slot holder owed answers
    /// whose queue takes nothing for `SLOT_IDLE` is closed (a reader that
    /// never reads), and so is any connection with a chunk in its queue
    /// that moves nothing that long. The chunks that left free their budget.
    /// A Request of ours queued behind our chunks to it has not been seen:
    /// the bytes ahead of it count for its stall clock as its own bytes do
    /// (a 2 MiB chunk of ours at 64 KiB/s holds a Request for 32 s), not for
    /// the overdue one (what it owes is asked of others meanwhile). Our
    /// bytes to a peer that has our requests do not count: one that
    /// downloads from us and stalls is dropped as any other.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, written: u64) {
        // Only later: its timer fires early once at worst, a no-op.
        let Some(s) = self.sessions.get_mut(&conn) else {
            // One we let go: what left of its queue is freed now.
            if let Some(p) = self.closing.get_mut(&conn) {
                let gone = p.unsent.written(written);
                self.unsent -= gone;
                if gone > 0 {
                    self.budget_freed();
                }
            }
            return;
        };
        s.last_sent = now;
        s.unwritten = false;
        let ahead = written.saturating_sub(s.written).min(s.ahead_of_request);
        s.written = s.written.max(written);
        s.ahead_of_request -= ahead;
        if s.phase == Phase::Open && s.outstanding() > 0 {
            s.last_data = catch_up(s.last_data, now, ahead, STALL_RATE);
        }
        let gone = s.unsent.written(written);
        self.unsent -= gone;
        self.up_rate.add(now, gone);
        // A reader owed another chunk takes what its own chunk freed when its
        // queue asks for more: answers waiting elsewhere (non-readers' among
        // them) would otherwise take a reader's share each time it frees it.
        if gone > 0 && !matches!(s.owed.front(), Some(Answer::Chunk(_))) {
            self.budget_freed();
        }
        if self.slots() != self.slots_given {
            self.rechoke(now);
            self.settle(now); // the slots given and taken move their sessions' timers
        }
    }

    /// `bytes` more of a frame not yet whole arrived on `conn` (the shell
    /// tells it whenever a read leaves a frame unfinished): a peer sending a
    /// chunk slower than `STALL` keeps its requests while it keeps up
    /// `STALL_RATE`, and is not overdue while it keeps a quarter of its
    /// pace; a first chunk slower than `--timeout` does not end the download.
    pub fn handle_receiving(&mut self, now: Instant, conn: ConnId, bytes: u64) {
        self.receiving(now, conn, bytes);
    }

    /// A Chunk frame's header came on `conn` (the shell hands a chunk's
    /// data over as it arrives, so no connection holds a whole chunk): `len`
    /// bytes of chunk `index` follow, through `handle_chunk_data`, then
    /// `handle_chunk_end`. A whole frame may come as a message instead.
    pub fn handle_chunk_begin(&mut self, now: Instant, conn: ConnId, index: u32, len: usize) {
        if self.heard(now, conn) {
            self.chunk_begin(now, conn, index, len);
        }
        self.settle(now);
    }

    /// More of the data of the Chunk frame under way on `conn`. Its bytes
    /// move the sender's clocks as those of any frame still arriving do
    /// (`handle_receiving`).
    pub fn handle_chunk_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) -> Result<(), Fatal> {
        self.touched.push(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.last_heard = now;
        }
        self.receiving(now, conn, data.len() as u64);
        let result = self.chunk_data(conn, data);
        self.settle(now);
        result
    }

    /// The Chunk frame under way on `conn` is whole.
    pub fn handle_chunk_end(&mut self, now: Instant, conn: ConnId) -> Result<(), Fatal> {
        self.touched.push(conn);
        let result = self.chunk_end(now, conn);
        self.settle(now);
        result
    }

    /// A frame began on `conn`: whether a Chunk may (its Hellos and the
    /// Bitfield exchanged, as `on_message` requires of a whole one); if not,
    /// the connection is closed for it.
    fn heard(&mut self, now: Instant, conn: ConnId) -> bool {
        self.touched.push(conn);
        let Some(s) = self.sessions.get_mut(&conn) else { return false };
        s.last_heard = now;
        match (s.phase, s.theirs.is_some()) {
            (Phase::Open, true) => true,
            (Phase::Open, false) => {
                self.violation(now, conn, "first frame after Hello is not a Bitfield");
                false
            }
            _ => {
                self.violation(now, conn, "unexpected Chunk");
                false
            }
        }
    }

    /// `bytes` more of a frame arrived on `conn`: the sender's clocks move (see `handle_receiving`).
    fn receiving(&mut self, now: Instant, conn: ConnId, bytes: u64) {
        // Timers only move later: each fires early once at worst, a no-op.
        let Some(s) = self.sessions.get_mut(&conn).filter(|s| s.phase == Phase::Open && s.outstanding() > 0) else {
            return;
        };
        s.last_data = catch_up(s.last_data, now, bytes, STALL_RATE);
        s.due_from = catch_up(s.due_from, now, bytes, shown_rate(s) / OVERDUE_CHUNKS);
        // The download is not given up (`--timeout`) while chunks arrive at that rate.
        if let Some(t) = s.torrent.and_then(|id| self.torrents.get_mut(&id)) {
            t.last_progress = catch_up(t.last_progress, now, bytes, STALL_RATE);
        }
    }

    /// Chunk bytes left the queues: the answers waiting for the budget are
    /// asked for again (the first to fit goes).
    fn budget_freed(&mut self) {
        let waiting = self.sessions.iter().filter(|(_, s)| s.waits_for_budget());
        self.outputs.extend(waiting.map(|(conn, _)| Output::Feed(*conn)));
    }

    /// The connection is gone (closed by either side, failed, idle).
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(p) = self.closing.remove(&conn) {
            self.unsent -= p.unsent.bytes();
            self.budget_freed();
        }
        self.on_closed(now, conn);
        self.settle(now);
    }

    /// A frame on `conn` failed to decode; the shell closes it (`handle_closed` follows).
    pub fn handle_malformed(&mut self, conn: ConnId, e: &DecodeError) {
        match e {
            DecodeError::Version { got, want } => {
                info!("{conn}: refused a peer speaking protocol version {got} (we speak {want})");
            }
            DecodeError::UnknownType(2) => {
                info!("{conn}: refused a version 1 leecher (protocol version {PEER_VERSION} starts with Hello)");
            }
            e => {
                self.malformed += 1;
                debug!("{conn}: malformed frame from peer: {e}");
            }
        }
    }

    /// Reports a fatal local error for one file (from `handle_message`) and drops it.
    pub fn handle_fatal(&mut self, now: Instant, fatal: Fatal) {
        self.fail(now, fatal.id, fatal.reason);
        self.settle(now);
    }

    fn on_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(s) = self.forget(conn) else { return };
        let Some(t) = s.torrent.and_then(|id| self.torrents.get_mut(&id)) else { return };
        if let Some(theirs) = &s.theirs {
            t.picker.remove_holder(theirs);
        }
        for a in s.asked.iter().filter(|a| a.counted()) {
            t.picker.release(a.index);
        }
        for a in &s.owed {
            if let Answer::Chunk(i) = *a {
                t.unpromise(i);
            }
        }
        if let Some(listen) = s.listen {
            let twin = self.sessions.values().any(|o| o.torrent == s.torrent && o.listen == Some(listen));
            if !twin {
                t.backoff(listen, s.downloaded == 0 || s.stalled, now);
            }
        }
        debug!("{conn} {}: gone from {}", s.addr, t.meta.name());
        let id = t.id;
        // The chunks we sent others to fetch there may be gone with it.
        self.offer_spread(id);
        self.refill(now, id);
        self.rechoke(now);
    }

    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.announcer.handle_datagram(now, data);
        self.settle(now);
    }

    /// Announces, retries, stalls, rotation, rate buckets, goals. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A session's timer is never later than its deadline, so only those
        // whose timers are due can have anything due; they are re-read at
        // the end (the others change only through calls that mark them).
        let due: Vec<ConnId> = self.timers.iter().take_while(|(at, _)| *at <= now).map(|(_, c)| *c).collect();
        self.touched.extend(&due);
        self.announcer.handle_timeout(now);
        if self.stopping.is_none() {
            self.announce_due(now);
            self.drop_stuck(now, &due);
            self.dial(now);
            let rotate = now >= self.next_rotation;
            if rotate {
                self.next_rotation = now + ROTATION;
            }
            if rotate
                || self.sessions.values().any(|s| s.slot_since.is_some() && !s.active(now, self.ask_idle(), SLOT_IDLE))
            {
                self.rechoke(now);
            }
            // Owed chunks held back by the upload bucket, requests by the download one.
            let sessions = &self.sessions;
            self.turns.retain(|c| sessions.get(c).is_some_and(|s| matches!(s.owed.front(), Some(Answer::Chunk(_)))));
            if let Some(next) = self.next_turn(None).filter(|_| self.up.ready(now)) {
                self.outputs.push_back(Output::Feed(next));
            }
            if self.down.ready(now) {
                let ids: Vec<ContentId> = self.torrents.keys().copied().collect();
                for id in ids {
                    self.refill(now, id);
                }
            }
            self.respread(now, &due);
            self.give_up(now);
            self.sweep(now);
            // A connection left to flush that reads nothing would keep its share for good.
            for (conn, p) in self.closing.iter_mut().filter(|(_, p)| p.until.is_some_and(|at| now >= at)) {
                p.until = None;
                self.outputs.push_back(Output::Close(*conn));
            }
        }
        self.settle(now);
    }

    /// Leaves every swarm (announce stopped) and closes every connection.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now);
        let ids: Vec<ContentId> = self.torrents.keys().copied().collect();
        for id in ids {
            self.leave(now, id);
        }
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        self.outputs.extend(conns.into_iter().map(Output::Close));
        self.settle(now);
    }

    /// True once shut down and the goodbyes are acknowledged or have had their time.
    pub fn stopped(&self, now: Instant) -> bool {
        self.stopping.is_some_and(|at| !self.announcer.busy() || now >= at + GOODBYE_TIMEOUT)
    }

    /// True while an announce waits for the tracker (a last goodbye, say).
    pub fn announcing(&self) -> bool {
        self.announcer.busy()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let announcer = self.announcer.next_deadline();
        if let Some(at) = self.stopping {
            return [announcer, Some(at + GOODBYE_TIMEOUT)].into_iter().flatten().min();
        }
        let sessions = self.timers.first().map(|(at, _)| *at);
        #[cfg(debug_assertions)]
        {
            let ask = self.ask_idle();
            let scan = self.sessions.values().map(|s| session_deadline(s, ask, self.budget_short).0).min();
            debug_assert!(sessions.is_some() == scan.is_some() && sessions <= scan, "a session's timer is late");
        }
        let torrents = self.torrents.values().flat_map(|t| {
            let downloading = t.stage == Stage::Downloading;
            [Some(t.next_announce), t.goal_deadline(), downloading.then_some(t.last_progress + self.config.timeout)]
        });
        let up = self.turns.front().and_then(|_| self.up.ready_at(self.born));
        let down = self.down.ready_at(self.born).filter(|_| self.wants_anything());
        let flushing = self.closing.values().filter_map(|p| p.until).min();
        let mut next =
            torrents.chain([sessions, Some(self.next_rotation), announcer, up, down, flushing]).flatten().min();
        // A redial counts only with room to dial, which takes a count: asked last.
        for t in self.torrents.values() {
            if let Some(retry) = t.next_retry().filter(|r| next.is_none_or(|n| *r < n)) {
                if self.dial_room(t.id) > 0 {
                    next = Some(retry);
                }
            }
        }
        next
    }

    /// The next output. A frame for a connection in the middle of a chunk
    /// frame waits in its session until that frame is whole (frames never
    /// interleave); one for a connection let go in the middle of one is dropped.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let output = self.outputs.pop_front()?;
            if let Output::Send(conn, msg) = &output {
                if let Some(s) = self.sessions.get_mut(conn).filter(|s| s.sending.is_some()) {
                    msg.encode(&mut s.deferred);
                    continue;
                }
                if self.closing.get(conn).is_some_and(|p| p.tail.is_some()) {
                    continue;
                }
            }
            return Some(output);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn snapshot(&self, id: ContentId, now: Instant) -> Option<Snapshot> {
        let t = self.torrents.get(&id)?;
        Some(Snapshot {
            name: t.meta.name().to_string(),
            size: t.meta.size(),
            done: t.meta.size() - t.left(),
            peers: self.open_peers(id),
            elapsed: now.saturating_duration_since(t.started),
            idle: t.idle(now),
            counters: t.counters.clone(),
        })
    }

    pub fn files(&self) -> impl Iterator<Item = ContentId> + '_ {
        self.torrents.keys().copied()
    }

    /// Connections trading, over all files.
    pub fn peers(&self) -> usize {
        self.sessions.values().filter(|s| s.phase == Phase::Open).count()
    }

    /// Upload slots given at once: `--slots`, or one per `SLOT_RATE` of
    /// what our uplink has been sending, at least `MIN_SLOTS` (all of them
    /// until a first rate is measured).
    pub fn slots(&self) -> usize {
        slots_for(self.up_rate.smoothed(), self.config.slots)
    }

    /// Upload slots held now.
    pub fn slots_used(&self) -> usize {
        self.sessions.values().filter(|s| s.slot_since.is_some()).count()
    }

    /// Bytes uploaded over all files, since the start.
    pub fn uploaded(&self) -> u64 {
        self.uploaded_before + self.torrents.values().map(|t| t.counters.uploaded).sum::<u64>()
    }

    fn open_peers(&self, id: ContentId) -> usize {
        self.sessions.values().filter(|s| s.phase == Phase::Open && s.torrent == Some(id)).count()
    }

    fn hello(&self, id: ContentId) -> Message<'static> {
        Message::Hello { id, port: self.config.port, nonce: self.nonce }
    }

    fn on_hello(&mut self, now: Instant, conn: ConnId, id: ContentId, port: u16, nonce: u64) {
        let Some(s) = self.sessions.get(&conn) else { return };
        let (outbound, addr) = (s.outbound, s.addr);
        if outbound && s.torrent != Some(id) {
            return self.violation(now, conn, "Hello for another file");
        }
        if nonce == self.nonce {
            debug!("{conn} {addr}: a connection to ourselves; closed");
            if let Some(t) = self.torrents.get_mut(&id).filter(|_| outbound) {
                t.ban(addr); // never dialled again
            }
            return self.close(conn);
        }
        let Some(t) = self.torrents.get(&id) else {
            debug!("{conn} {addr}: asks for {} which we do not share; closed", id.short());
            return self.close(conn);
        };
        if t.stage == Stage::Done {
            return self.close(conn);
        }
        let listen = if outbound { Some(addr) } else { (port != 0).then(|| SocketAddr::new(addr.ip(), port)) };
        if listen.is_some_and(|l| t.is_banned(l)) {
            debug!("{conn} {addr}: banned for {}; closed", t.meta.name());
            return self.close(conn);
        }
        // Two connections between the same peers for one file (both dialled
        // at once): keep the one dialled by the smaller nonce, on both sides.
        // The same nonce from another address is not that peer: a nonce is
        // sent to every peer, and a third one replaying it must not make us
        // drop the real connection.
        let twin = self
            .sessions
            .iter()
            .find(|(c, o)| {
                **c != conn
                    && o.torrent == Some(id)
                    && o.nonce == nonce
                    && o.phase == Phase::Open
                    && crate::common::ip_block(o.addr.ip()) == crate::common::ip_block(addr.ip())
            })
            .map(|(c, o)| (*c, o.outbound));
        if let Some((other, other_outbound)) = twin {
            let dialler = |out: bool| if out { self.nonce } else { nonce };
            if dialler(outbound) > dialler(other_outbound) {
                debug!("{conn} {addr}: second connection to the same peer; closed");
                return self.close(conn);
            }
            self.disconnect(now, other);
        }
        let room = outbound || (self.inbound_room(id, addr.ip()) && self.room_in_all(now, conn, id, addr.ip()));
        if !room {
            // No room at all: say so, and the shell closes after the flush.
            debug!("{conn} {addr}: no room for another peer of {}", id.short());
            self.outputs.push_back(Output::Send(conn, self.hello(id)));
            self.outputs.push_back(Output::Send(conn, Message::State(State::Unavailable)));
            self.outputs.push_back(Output::CloseAfterFlush(conn));
            self.forget(conn);
            return;
        }
        let Some(t) = self.torrents.get_mut(&id) else { return };
        if let Some(listen) = listen {
            t.mark_active(listen);
        }
        let (bits, told) = (t.held().as_bytes().to_vec(), t.held().clone());
        // Holding the whole file we ask for no chunk: it may send control frames only.
        let limit = match t.is_complete() {
            true => max_control_frame(t.meta.chunk_count()),
            false => max_frame(t.meta.chunk_size(), t.meta.chunk_count()),
        };
        self.touched.push(conn);
        if !outbound {
            t.conns += 1;
        }
        t.lonely = 0;
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.torrent = Some(id);
            s.listen = listen;
            s.nonce = nonce;
            s.chunk_size = t.meta.chunk_size();
            s.phase = Phase::Open;
            s.waiting_since = now;
            s.told = told;
        }
        if !outbound {
            self.outputs.push_back(Output::Send(conn, self.hello(id)));
        }
        self.outputs.push_back(Output::Limit(conn, limit));
        self.outputs.push_back(Output::Bitfield(conn, bits));
    }

    fn on_bitfield(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some((s, t)) = self.pair(conn) else { return };
        let Some(theirs) = Bitfield::from_wire(bytes, t.meta.chunk_count()) else {
            return self.violation(now, conn, "bitfield of the wrong length");
        };
        t.picker.add_holder(&theirs);
        let both_complete = theirs.is_full() && t.is_complete();
        s.seed = theirs.is_full();
        s.theirs = Some(theirs);
        if both_complete {
            debug!("{conn} {}: both hold the whole file; closed", s.addr);
            return self.close(conn);
        }
        self.rechoke(now);
        // Not chosen: say so, so it fetches elsewhere at once.
        if let Some(s) = self.sessions.get_mut(&conn) {
            if !s.told_state {
                s.told_state = true;
                self.outputs.push_back(Output::Send(conn, Message::State(State::Unavailable)));
            }
        }
    }

    fn on_have(&mut self, now: Instant, conn: ConnId, index: u32) {
        let Some((s, t)) = self.pair(conn) else { return };
        let Some(theirs) = s.theirs.as_ref() else { return };
        if index >= t.meta.chunk_count() {
            return self.violation(now, conn, "Have past the last chunk");
        }
        s.arriving.retain(|(i, _)| *i != index);
        if theirs.get(index) {
            // A seed offering again a chunk we asked of it: its refusal may be on the way.
            s.asked.iter_mut().filter(|a| a.index == index).for_each(|a| a.offered = true);
            return;
        }
        if self.learn(now, conn, std::iter::once(index)) == Some(true) {
            self.rechoke(now);
        }
    }

    /// A later Bitfield: the peer's chunks now, sent when we gave it a slot it
    /// had no use for, or when it completed. We heard of no chunk it got that
    /// we held, so we took it to want those. Every chunk we knew it to hold
    /// must be in it.
    fn on_refresh(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some((s, t)) = self.pair(conn) else { return };
        let Some(now_held) = Bitfield::from_wire(bytes, t.meta.chunk_count()) else {
            return self.violation(now, conn, "bitfield of the wrong length");
        };
        let Some(theirs) = s.theirs.as_ref() else { return };
        if theirs.has_any_missing_from(&now_held) {
            return self.violation(now, conn, "a later bitfield without chunks it said it held");
        }
        s.arriving.retain(|(i, _)| !now_held.get(*i));
        // One frame per useless slot or completion, not per chunk: the slots
        // are decided again whatever it changed, as a waiting peer that now
        // wants nothing no longer puts idle holders on `ASK_IDLE`. (Only for
        // a sated holder, as after a Have: three classes of 1000 peers in
        // lmk-sim 1.045 -> 1.053 x T_p2p.)
        if self.learn(now, conn, now_held.ones()).is_some() {
            self.rechoke(now);
        }
    }

    /// Chunks the peer on `conn` holds, from a Have or a later Bitfield: those
    /// we did not know of go into its view, the picker's counts and a seed's
    /// tally of relayed chunks. Then we close if both are complete, or ask it
    /// for those we lack. Says whether it holds a slot of ours and now wants
    /// nothing of ours (the slot should go at once to a peer that does, not
    /// after `ASK_IDLE`); `None` when the connection is gone or closed.
    fn learn(&mut self, now: Instant, conn: ConnId, chunks: impl Iterator<Item = u32>) -> Option<bool> {
        let (s, t) = self.pair(conn)?;
        let theirs = s.theirs.as_mut()?;
        let mut wanted = false;
        for index in chunks {
            if theirs.set(index) {
                t.relayed();
                t.picker.add_have(index);
                wanted |= !t.held().get(index);
            }
        }
        if theirs.is_full() && t.is_complete() {
            self.close(conn);
            return None;
        }
        let sated = s.slot_since.is_some() && !t.held().has_any_missing_from(theirs);
        let id = t.id;
        if wanted {
            self.fill(now, conn, id);
        }
        Some(sated)
    }

    fn on_state(&mut self, now: Instant, conn: ConnId, state: State) {
        self.touched.push(conn);
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        s.their_state = state;
        // The stall window runs on: a peer that owes us chunks cannot
        // restart it by saying it serves (a staller rotating its slots did).
        if state.serves() {
            s.asked.iter_mut().for_each(|a| a.granted = true);
            let Some(id) = s.torrent else { return };
            self.fill(now, conn, id);
            // A slot we have no use for: it took us to want chunks we got elsewhere.
            let Some((s, t)) = self.pair(conn) else { return };
            if s.theirs.as_ref().is_some_and(|b| !b.has_any_missing_from(t.held())) {
                self.tell(conn, false);
            }
        }
    }

    fn fail(&mut self, now: Instant, id: ContentId, reason: String) {
        if let Some(t) = self.torrents.get(&id) {
            self.events.push_back(Event::Failed { id, name: t.meta.name().to_string(), reason });
        }
        self.leave(now, id);
    }

    /// Says goodbye to the tracker and the peers of one file and forgets it.
    fn leave(&mut self, now: Instant, id: ContentId) {
        let Some(t) = self.torrents.remove(&id) else { return };
        self.uploaded_before += t.counters.uploaded;
        let left = t.left();
        let stopped =
            Announce { info_hash: id, left, event: AnnounceEvent::Stopped, port: self.config.port, num_want: 0 };
        self.announcer.announce(now, stopped);
        let conns: Vec<(ConnId, Option<Sending>)> =
            self.sessions.iter().filter(|(_, s)| s.torrent == Some(id)).map(|(c, s)| (*c, s.sending)).collect();
        // The storage stays while chunk frames under way are finished.
        let storage = conns.iter().any(|(_, sending)| sending.is_some()).then(|| Rc::new(RefCell::new(t.storage)));
        // After what is queued (the chunk that met a seeding goal, a last Reject).
        for (conn, sending) in conns {
            let tail = sending.zip(storage.as_ref()).map(|(sending, storage)| Tail {
                storage: Rc::clone(storage),
                offset: sending.offset,
                left: sending.left,
            });
            if tail.is_some() {
                self.outputs.push_back(Output::Feed(conn)); // the rest of its frame first
            }
            self.park_unsent(now, conn, tail);
            self.forget(conn);
            self.outputs.push_back(Output::CloseAfterFlush(conn));
        }
        if !matches!(t.stage, Stage::Downloading) || self.stopping.is_some() {
            self.events.push_back(Event::Finished {
                id,
                name: t.meta.name().to_string(),
                size: t.meta.size(),
                counters: t.counters,
            });
        }
    }

    /// Files whose seeding goal is met, or that were withdrawn, leave.
    fn sweep(&mut self, now: Instant) {
        let over: Vec<ContentId> =
            self.torrents.values().filter(|t| t.goal_met(now) || t.stage == Stage::Done).map(|t| t.id).collect();
        for id in over {
            if let Some(t) = self.torrents.get(&id) {
                info!("{}: seeding over, {} uploaded", t.meta.name(), crate::common::fmt::bytes(t.counters.uploaded));
            }
            self.leave(now, id);
        }
    }

    fn give_up(&mut self, now: Instant) {
        let stuck: Vec<ContentId> = self
            .torrents
            .values()
            .filter(|t| t.stage == Stage::Downloading && now >= t.last_progress + self.config.timeout)
            .map(|t| t.id)
            .collect();
        for id in stuck {
            let reason = format!("no chunk verified within {}s", self.config.timeout.as_secs());
            self.fail(now, id, reason);
        }
    }

    /// Closes the connections whose dial, greeting, data or idle time ran out.
    /// Closes or punishes the `due` sessions whose deadline has come.
    fn drop_stuck(&mut self, now: Instant, due: &[ConnId]) {
        let ask = self.ask_idle();
        let stuck: Vec<(ConnId, Why)> = due
            .iter()
            .filter_map(|&c| {
                let s = self.sessions.get(&c)?;
                let (at, why) = session_deadline(s, ask, self.budget_short);
                // An earlier reason due at the same time must not hide the idle or unread one.
                let why = match () {
                    _ if now >= s.last_heard + IDLE => Why::Idle,
                    _ if unread(s, now) => Why::Unread,
                    _ if self.budget_short && held_too_long(s, now) => Why::HeldShare,
                    _ => why,
                };
                (now >= at).then_some((c, why))
            })
            .collect();
        for (conn, why) in stuck {
            match why {
                Why::Stalled => {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        let ban = self.penalties.punish(s.addr.ip(), Offence::Stall, now);
                        info!("{conn} {}: stalled; its chunks go to the others; refused for {ban:?}", s.addr);
                        s.stalled = true;
                    }
                    self.disconnect(now, conn);
                }
                // A slot holder owed answers that its queue did not take
                // (nor waiting for the upload bucket) reads nothing: closed, as
                // what is queued for it cannot be taken back. One that asks
                // for nothing only loses its slot (the rechoke below).
                Why::SlotIdle => {
                    let Some(s) = self.sessions.get(&conn) else { continue };
                    if !s.owed.is_empty() && !self.turns.contains(&conn) {
                        self.close_non_reader(now, conn, "holds a slot and reads nothing");
                    }
                }
                // Its chunk holds a share of the budget for as long as it stays.
                Why::Unread => self.close_non_reader(now, conn, "reads nothing of the chunk queued for it"),
                Why::HeldShare => {
                    self.close_non_reader(now, conn, "reads too slowly of the chunk queued for it while others wait")
                }
                Why::Overdue => self.overdue(now, conn),
                // A chunk refused with Spread is asked again (respread).
                Why::Respread => {}
                Why::Dial | Why::Greeting | Why::Idle => {
                    if let Some(s) = self.sessions.get(&conn) {
                        debug!("{conn} {}: {why:?} timed out; closed", s.addr);
                    }
                    self.disconnect(now, conn);
                }
            }
        }
    }

    fn announce_due(&mut self, now: Instant) {
        let port = self.config.port;
        for t in self.torrents.values_mut().filter(|t| now >= t.next_announce) {
            let first = t.next_announce == t.started;
            t.next_announce = now + self.interval;
            let downloading = t.stage == Stage::Downloading;
            let event = if first { AnnounceEvent::Started } else { AnnounceEvent::None };
            let num_want = if downloading { NUM_WANT } else { 0 };
            self.announcer.announce(now, Announce { info_hash: t.id, left: t.left(), event, port, num_want });
        }
    }

    /// Connections we may still dial for `id`: within `--max-peers-per-file`
    /// and within our dials' share of it (`dial_share`).
    fn dial_room(&self, id: ContentId) -> usize {
        let used = self.torrents.get(&id).map_or(0, |t| t.conns);
        debug_assert_eq!(used, self.sessions.values().filter(|s| s.torrent == Some(id)).count());
        let dialled = self.sessions.values().filter(|s| s.torrent == Some(id) && s.outbound).count();
        let max = self.config.max_peers;
        max.saturating_sub(used).min(room::dial_share(max).saturating_sub(dialled))
    }

    fn dial(&mut self, now: Instant) {
        let ids: Vec<ContentId> = self.torrents.keys().copied().collect();
        for id in ids {
            let room = self.dial_room(id);
            let Some(t) = self.torrents.get_mut(&id) else { continue };
            let penalties = &self.penalties;
            let addrs = t.to_dial(now, room, &mut self.rng, |a| penalties.banned_until(a.ip(), now));
            if addrs.is_empty() && t.conns == 0 && t.stage == Stage::Downloading {
                // Nobody to trade with and nobody to try now: ask the tracker
                // for more soon (1 s, doubling to the interval), not at the interval.
                let at = now + crate::common::backoff(EAGER_ANNOUNCE, t.lonely.min(6), self.interval);
                if at < t.next_announce {
                    t.next_announce = at;
                    t.lonely += 1;
                }
            }
            for addr in addrs {
                self.outputs.push_back(Output::Connect(addr, id));
            }
        }
    }

    /// Closes `conn`, which reads nothing of its queue, and refuses its
    /// address for a while. The address's other connections wait behind
    /// every other peer for a slot from now on: a crowd of non-readers from
    /// one address does not go before a newcomer, each holding a share of the
    /// budget of unsent chunks in turn.
    fn close_non_reader(&mut self, now: Instant, conn: ConnId, what: &str) {
        let Some(addr) = self.sessions.get(&conn).map(|s| s.addr) else { return };
        let ban = self.penalties.punish(addr.ip(), Offence::Stall, now);
        info!("{conn} {addr}: {what}; closed, refused for {ban:?}");
        let block = crate::common::ip_block(addr.ip());
        for s in self.sessions.values_mut().filter(|s| crate::common::ip_block(s.addr.ip()) == block) {
            s.suspect = true;
        }
        self.all_touched = true;
        self.disconnect(now, conn);
    }

    fn violation(&mut self, now: Instant, conn: ConnId, what: &str) {
        self.violations += 1;
        if let Some(s) = self.sessions.get(&conn) {
            let ban = self.penalties.punish(s.addr.ip(), Offence::Violation, now);
            debug!("{conn} {}: protocol violation: {what}; closed, refused for {ban:?}", s.addr);
            if let (Some(t), Some(l)) = (s.torrent.and_then(|id| self.torrents.get_mut(&id)), s.listen) {
                t.ban(l);
            }
        }
        self.disconnect(now, conn);
    }

    fn close(&mut self, conn: ConnId) {
        self.outputs.push_back(Output::Close(conn));
    }

    /// Closes `conn` and forgets it now, rather than when the shell reports it gone.
    fn disconnect(&mut self, now: Instant, conn: ConnId) {
        self.park_unsent(now, conn, None);
        self.close(conn);
        self.on_closed(now, conn);
    }

    fn pair(&mut self, conn: ConnId) -> Option<(&mut Session, &mut Torrent)> {
        self.touched.push(conn);
        let s = self.sessions.get_mut(&conn)?;
        let t = self.torrents.get_mut(&s.torrent?)?;
        Some((s, t))
    }

    /// The chunk bytes queued on `conn`, which we let go, stay in the budget
    /// until the shell reports them gone: they are freed with its queue, or
    /// as they are sent (`CloseAfterFlush`, closed outright if that takes
    /// longer than `flush_hold`), not when we forget it. `tail`: the rest of
    /// the chunk frame it is in the middle of, still to send.
    fn park_unsent(&mut self, now: Instant, conn: ConnId, tail: Option<Tail>) {
        let Some(s) = self.sessions.get_mut(&conn).filter(|s| !s.unsent.is_empty() || tail.is_some()) else { return };
        let until = Some(now + flush_hold(s.chunk_size));
        let unsent = std::mem::take(&mut s.unsent);
        self.closing.insert(conn, Parked { unsent, until, tail });
    }

    /// The next piece of the chunk frame a connection we let go was in the
    /// middle of: the frame is finished whatever the budget (it is at most
    /// one piece beyond the low-water mark at a time, and the connection is
    /// closed outright after `flush_hold`). A read that fails closes it.
    fn feed_tail(&mut self, now: Instant, conn: ConnId, queued: u64, out: &mut Vec<u8>) -> u64 {
        let Some(p) = self.closing.get_mut(&conn) else { return 0 };
        let Some(tail) = p.tail.as_mut() else { return 0 };
        let len = tail.left.min(PIECE);
        let start = out.len();
        let read = tail.storage.borrow_mut().read(tail.offset, len, out);
        if read.is_err() || out.len() - start != len {
            out.truncate(start);
            p.tail = None;
            debug!("{conn}: the rest of a chunk could not be read; closed");
            self.outputs.push_back(Output::Close(conn));
            return 0;
        }
        tail.offset += len as u64;
        tail.left -= len;
        if tail.left == 0 {
            p.tail = None;
        }
        p.unsent.push(queued + len as u64, len as u64, Some(now));
        self.unsent += len as u64;
        len as u64
    }

    /// Removes a session and its timer.
    fn forget(&mut self, conn: ConnId) -> Option<Session> {
        let s = self.sessions.remove(&conn)?;
        if s.waits_budget {
            self.budget_waiters -= 1;
        }
        if !s.unsent.is_empty() {
            self.unsent -= s.unsent.bytes(); // the shell dropped its queue
            self.budget_freed();
        }
        if let Some(t) = s.torrent.and_then(|id| self.torrents.get_mut(&id)) {
            t.conns = t.conns.saturating_sub(1);
        }
        if let Some(at) = s.timer {
            self.timers.remove(&(at, conn));
        }
        Some(s)
    }

    /// Re-reads the timers of the sessions touched since the last call.
    /// A timer that only moved later keeps its entry while that is still
    /// ahead: it fires early once (a no-op) instead of being moved on every
    /// frame (the idle time moves with each one).
    fn retime(&mut self, now: Instant) {
        let ask = self.ask_idle();
        // Kept for its capacity. A session is often marked more than once in
        // a call (its message, its pair, its fill): it is read once.
        let mut conns = std::mem::take(&mut self.touched);
        if std::mem::take(&mut self.all_touched) {
            conns.clear();
            conns.extend(self.sessions.keys());
        } else {
            conns.sort_unstable();
            conns.dedup();
        }
        for &conn in &conns {
            let Some(s) = self.sessions.get_mut(&conn) else { continue };
            let at = session_deadline(s, ask, self.budget_short).0;
            let early = s.timer.is_some_and(|old| now < old && old <= at);
            if s.timer != Some(at) && !early {
                if let Some(old) = s.timer.replace(at) {
                    self.timers.remove(&(old, conn));
                }
                self.timers.insert((at, conn));
            }
        }
        conns.clear();
        self.touched = conns;
    }

    fn wants_anything(&self) -> bool {
        self.torrents.values().any(|t| t.stage == Stage::Downloading)
    }

    /// The end of every call: what the announcer replied is carried out and
    /// the touched sessions' timers are re-read.
    fn settle(&mut self, now: Instant) {
        while let Some(reply) = self.announcer.poll_reply() {
            match reply {
                Reply::Peers { info_hash, peers, interval, .. } => {
                    if interval != self.interval {
                        debug!("tracker interval {interval:?}");
                        self.interval = interval;
                        for t in self.torrents.values_mut() {
                            t.next_announce = t.next_announce.min(now + interval);
                        }
                    }
                    let max_peers = self.config.max_peers;
                    if let Some(t) = self.torrents.get_mut(&info_hash) {
                        t.refused = 0;
                        if t.stage == Stage::Downloading {
                            debug!("tracker: {} peer(s) for {}", peers.len(), t.meta.name());
                            t.learn(&peers, now);
                            // A short list while we know fewer addresses than
                            // we may connect to: a swarm still forming (or one
                            // we joined early). Ask again soon, doubling.
                            if peers.len() < NUM_WANT as usize && t.known() < max_peers {
                                let wait = crate::common::backoff(EAGER_ANNOUNCE, t.lonely.min(6), self.interval);
                                t.next_announce = t.next_announce.min(now + wait);
                                t.lonely += 1;
                            }
                        }
                    }
                    if self.stopping.is_none() {
                        self.dial(now);
                    }
                }
                Reply::Reconnected => {
                    info!("tracker {} answered with a new connection id: joining again", self.config.tracker);
                    for t in self.torrents.values_mut() {
                        t.next_announce = now;
                    }
                    self.events.push_back(Event::Reconnected);
                    if self.stopping.is_none() {
                        self.announce_due(now);
                    }
                }
                Reply::Refused { info_hash, message } => {
                    warn!("tracker refused {}: {message}", info_hash.short());
                    if let Some(t) = self.torrents.get_mut(&info_hash) {
                        // At most 6 doublings: a refused announce is tried again within 64 s.
                        let wait = crate::common::backoff(EAGER_ANNOUNCE, t.refused.min(6), self.interval);
                        t.refused += 1;
                        t.next_announce = t.next_announce.min(now + wait);
                    }
                }
                Reply::Timeout => debug!("tracker {} did not answer; retrying", self.config.tracker),
            }
        }
        while let Some(datagram) = self.announcer.poll_transmit() {
            self.outputs.push_back(Output::Datagram(datagram));
        }
        let short = self.unsent > 0 && self.budget_waiters > 0 && self.sessions.values().any(Session::waits_for_budget);
        if short != self.budget_short {
            self.budget_short = short;
            self.all_touched = true; // every queue's hold time starts or stops counting
        }
        self.retime(now);
    }
}

/// Why a connection's timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Dial,
    Greeting,
    Stalled,
    /// Its requests are far overdue (`overdue_at`).
    Overdue,
    SlotIdle,
    /// A chunk is in its queue and nothing left the queue for `SLOT_IDLE`.
    Unread,
    /// Answers wait for the budget and its oldest queued piece has been
    /// there longer than `SHARE_HOLD`.
    HeldShare,
    Idle,
    /// A chunk refused with `Spread` is asked of it again.
    Respread,
}

/// A connection's next timer: the earliest of its phase's deadline and its idle time.
impl Machine {
    /// How long a slot holder may ask for nothing: short only while others wait.
    fn ask_idle(&self) -> Duration {
        if self.contended {
            ASK_IDLE
        } else {
            SLOT_IDLE
        }
    }
}

/// `short`: answers wait for the budget.
fn session_deadline(s: &Session, ask: Duration, short: bool) -> (Instant, Why) {
    let idle = (s.last_heard + IDLE, Why::Idle);
    let respread = s.spread_to_us.iter().map(|(_, at)| (*at, Why::Respread)).min_by_key(|(at, _)| *at);
    let phase = match s.phase {
        Phase::Dialling { since } => Some((since + DIAL_TIMEOUT, Why::Dial)),
        Phase::Greeting { since } => Some((since + GREETING, Why::Greeting)),
        // Requests outstanding stall whatever its State: a peer that takes
        // our slot away answers what it will not send with Reject NoSlot.
        Phase::Open if s.outstanding() > 0 => Some((s.last_data + STALL, Why::Stalled)),
        Phase::Open => s.slot_idle_at(ask, SLOT_IDLE).map(|at| (at, Why::SlotIdle)),
    };
    let overdue = overdue_at(s).map(|at| (at, Why::Overdue));
    let unread = (!s.unsent.is_empty()).then(|| (s.last_sent + SLOT_IDLE, Why::Unread));
    let held = s.unsent.oldest().filter(|_| short).map(|at| (at + SHARE_HOLD, Why::HeldShare));
    // A loop, not a fold: the fold over the options cost a tenth of the
    // simulator's time at 32 peers.
    let mut first = idle;
    for (at, why) in [phase, overdue, respread, unread, held].into_iter().flatten() {
        if at < first.0 {
            first = (at, why);
        }
    }
    first
}

/// Whether a chunk is in its queue and nothing left the queue for `SLOT_IDLE`
/// (since that chunk or a later answer went in).
fn unread(s: &Session, now: Instant) -> bool {
    !s.unsent.is_empty() && now >= s.last_sent + SLOT_IDLE
}

/// Whether its oldest queued piece has been there longer than `SHARE_HOLD`.
fn held_too_long(s: &Session, now: Instant) -> bool {
    s.unsent.oldest().is_some_and(|at| now >= at + SHARE_HOLD)
}

/// When the requests a peer owes us count as far overdue: `OVERDUE_CHUNKS`
/// chunk times at the rate it has shown on this connection (`FLOOR_RATE`
/// before it has shown one) after its last chunk, at least `MIN_OVERDUE`,
/// at most `STALL`, or its `patience` if shorter while it has delivered
/// nothing; the bytes of a chunk still arriving move that start on
/// (`due_from`). None while the picker counts none of them.
fn overdue_at(s: &Session) -> Option<Instant> {
    if s.phase != Phase::Open || !s.asked.iter().any(Asked::counted) {
        return None;
    }
    let secs = OVERDUE_CHUNKS * f64::from(s.chunk_size) / shown_rate(s);
    let wait = Duration::from_secs_f64(secs.clamp(MIN_OVERDUE.as_secs_f64(), STALL.as_secs_f64()));
    Some(s.due_from + unproven_patience(s).map_or(wait, |p| p.min(wait)))
}

/// How long a peer that has delivered nothing may owe chunks without
/// sending one, judged by the file's answer times (`UNPROVEN_ANSWERS`); none
/// before enough chunks came to judge by.
fn patience(answers: &AnswerTimes) -> Option<Duration> {
    answers.median().map(|m| (m * UNPROVEN_ANSWERS).max(MIN_UNPROVEN))
}

/// Its `patience`, while it has delivered nothing.
fn unproven_patience(s: &Session) -> Option<Duration> {
    s.patience.filter(|_| s.downloaded == 0)
}

/// The rate a peer has shown us on this connection, bytes per second
/// (`FLOOR_RATE` before it has shown one).
fn shown_rate(s: &Session) -> f64 {
    if s.rate.smoothed() > 0.0 {
        s.rate.smoothed()
    } else {
        FLOOR_RATE
    }
}

/// A delivery clock at `clock` moved on by `bytes` at `rate` bytes per
/// second, never past `now`: it falls behind only while the peer sends
/// slower than `rate`, and a burst makes up for a pause.
fn catch_up(clock: Instant, now: Instant, bytes: u64, rate: f64) -> Instant {
    let behind = now.saturating_duration_since(clock).as_secs_f64();
    let gained = (bytes as f64 / rate).min(behind);
    clock + Duration::from_secs_f64(gained.max(0.0))
}

/// A local failure that ends one download (the disk refused a write).
#[derive(Debug)]
pub struct Fatal {
    pub id: ContentId,
    pub reason: String,
}

fn stage_word(t: &Torrent) -> &'static str {
    match t.stage {
        Stage::Downloading => "downloading",
        Stage::Seeding { .. } => "seeding",
        Stage::Done => "done",
    }
}

mod download;
mod room;
mod upload;

#[cfg(test)]
mod tests;

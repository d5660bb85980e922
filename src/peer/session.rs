//! One connection to another peer: its phase, what it holds, what we asked of
//! it (in the order it answers) and what it asked of us (in the order we answer).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::bitfield::Bitfield;
use super::storage::Check;
use super::unsent::Unsent;
use crate::hash::ContentId;
use crate::wire::peer::{RejectReason, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// We are dialling it.
    Dialling { since: Instant },
    /// Connected; Hellos not yet exchanged.
    Greeting { since: Instant },
    /// Hellos exchanged; trading.
    Open,
}

/// One answer we owe, in request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Chunk(u32),
    Reject(u32, RejectReason),
}

/// A Chunk frame begun on a connection and not yet whole: its answer stays
/// at the head of `owed`, and nothing else is written on the connection
/// until the frame's last piece is queued (frames never interleave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sending {
    /// Where in the file its next piece starts.
    pub offset: u64,
    /// Bytes of its body still to queue.
    pub left: usize,
}

/// A Chunk frame arriving from a peer, its body handed over in pieces: it
/// is checked as it comes, and written as it comes if it is the chunk's
/// writer (of the right length, for a chunk not held when it began; two
/// connections may write one chunk in the end game, see `chunk_begin`).
pub struct Incoming {
    pub index: u32,
    /// Bytes of its body the frame said, and those arrived so far.
    pub len: usize,
    pub got: usize,
    pub check: Box<dyn Check>,
    pub writer: bool,
}

/// One of our requests, in the order it will be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub index: u32,
    /// Cancelled in the end game: the answer may still come, or not at all.
    pub cancelled: bool,
    /// Far overdue, or an end-game duplicate asked of a peer that has
    /// delivered nothing: still awaited, but not counted by the picker, so
    /// another holder may be asked for it.
    pub overdue: bool,
    /// When we sent it: its answer's time feeds the file's `AnswerTimes`.
    pub at: Instant,
    /// The peer said Have for it since: a `Spread` refusal of it was decided
    /// before the seed offered it again (answers keep their order, so the
    /// Reject can arrive after that Have) and does not clear its bit.
    pub offered: bool,
    /// The peer gave us a slot since (a State that serves): a `NoSlot`
    /// refusal of it was decided before, its Reject queued behind answers
    /// while the State went out at once, and takes no slot away.
    pub granted: bool,
}

impl Asked {
    pub fn new(index: u32, at: Instant) -> Asked {
        Asked { index, cancelled: false, overdue: false, at, offered: false, granted: false }
    }

    /// Whether the picker counts it as a request outstanding.
    pub fn counted(&self) -> bool {
        !self.cancelled && !self.overdue
    }
}

pub struct Session {
    /// The remote end of the connection.
    pub addr: SocketAddr,
    /// Where the peer accepts connections: `addr` when we dialled, its IP and
    /// Hello port when it dialled (unknown for port 0). Bans and redials use it.
    pub listen: Option<SocketAddr>,
    pub outbound: bool,
    pub phase: Phase,
    /// The file, from the start when we dial, from its Hello when it dials.
    pub torrent: Option<ContentId>,
    /// Its process nonce, from its Hello.
    pub nonce: u64,
    /// What it holds; `None` until its Bitfield arrives.
    pub theirs: Option<Bitfield>,
    /// Its Bitfield said it holds every chunk.
    pub seed: bool,
    /// Its last State to us: may we request.
    pub their_state: State,
    pub asked: VecDeque<Asked>,
    /// Its stall clock: its last chunk, or when it was last given work while
    /// idle, moved on by the bytes of a chunk still arriving at `STALL_RATE`
    /// (never past now).
    pub last_data: Instant,
    /// The same for the overdue rule, the bytes counted at a quarter of its
    /// shown rate (`overdue_at`).
    pub due_from: Instant,
    /// Its requests went overdue and no chunk came since: it is asked for
    /// nothing more until one does.
    pub behind: bool,
    /// While it has delivered nothing (nor any peer at its address): how
    /// long it may owe chunks without sending one before it is behind, from
    /// the file's answer times when it was last asked (`UNPROVEN_ANSWERS`).
    pub patience: Option<Duration>,
    /// The file's chunk size (from the Hello): how long a chunk should take.
    pub chunk_size: u32,
    /// Last frame of any kind from it (or the connection's start).
    pub last_heard: Instant,
    /// What we owe it.
    pub owed: VecDeque<Answer>,
    /// The chunk frame at the head of `owed`, once begun.
    pub sending: Option<Sending>,
    /// Control frames (encoded) that came while a chunk frame was under
    /// way: written once it is whole.
    pub deferred: Vec<u8>,
    /// Since when it holds one of our upload slots.
    pub slot_since: Option<Instant>,
    /// Since when it has waited for a slot.
    pub waiting_since: Instant,
    /// Its address misbehaved (before it connected, or read nothing on
    /// another connection since): it waits for a slot behind every other peer.
    pub suspect: bool,
    /// It lost its slot for asking nothing (and has asked nothing since):
    /// what it seems to lack may be chunks it got elsewhere and did not tell
    /// us of (a peer tells only those who lack a chunk, or serve it). It waits
    /// behind every other peer until it asks, or we get a chunk it lacks.
    pub idle_turn: bool,
    /// Chunk bytes sent to it since it gained its slot: a slot is a turn of `TURN_CHUNKS`.
    pub turn_sent: u64,
    pub last_request: Instant,
    /// Last time an answer went into its queue or the queue's bytes left us
    /// (`handle_written`): a holder owed answers whose queue does not move reads nothing.
    pub last_sent: Instant,
    /// A chunk went into its queue and no byte has left since (`handle_written`).
    pub unwritten: bool,
    /// The chunk bytes in its queue, counted against the core's budget.
    pub unsent: Unsent,
    /// The chunk it is owed next waits for the budget: not its idleness, so
    /// a slot holder keeps its slot meanwhile.
    pub waits_budget: bool,
    /// Bytes of its queue the kernel has taken in all, as last told.
    pub written: u64,
    /// Of our chunk bytes queued to it, those ahead of our last Request:
    /// until they leave, it has not seen that Request.
    pub ahead_of_request: u64,
    /// We told it our State (after its Bitfield).
    pub told_state: bool,
    /// The chunks we told it we hold (Bitfield, Haves): none is told twice.
    pub told: Bitfield,
    /// Chunks we refused it with `Spread`: a Have for each once the spread is over.
    pub spread: Vec<u32>,
    /// Chunks we refused it with `Spread`, once per refusal, until each is
    /// sent (a chunk refused `SPREAD_REFUSALS` times is sent when asked again).
    pub spread_refusals: Vec<u32>,
    /// Chunks of a file we hold whole whose frame to it is queued whole, and
    /// when, until its Have comes or `IN_FLIGHT` passes (a seed's copies on their way).
    pub arriving: Vec<(u32, Instant)>,
    /// Chunks it refused us with `Spread`, and when we ask it again anyway
    /// (should its Have be lost, or the peer it sent us to be of no use).
    pub spread_to_us: Vec<(u32, Instant)>,
    pub downloaded: u64,
    /// Dropped for stalling: its address backs off as after a failure,
    /// whatever it delivered before.
    pub stalled: bool,
    /// The Chunk frame it is sending us, once its header is in.
    pub incoming: Option<Incoming>,
    /// Its recent sending rate to us, bytes per second, for the pipeline depth.
    pub rate: Rate,
    /// Our recent sending rate to it: our requests wait behind those chunks.
    pub sent_rate: Rate,
    /// Its entry in the core's timer table.
    pub timer: Option<Instant>,
}

/// A rate over windows of at least [`Rate::WINDOW`], smoothed across windows.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    per_sec: f64,
    since: Instant,
    bytes: u64,
}

impl Rate {
    const WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

    pub fn new(now: Instant) -> Rate {
        Rate { per_sec: 0.0, since: now, bytes: 0 }
    }

    pub fn add(&mut self, now: Instant, n: u64) {
        self.bytes += n;
        let dt = now.saturating_duration_since(self.since);
        if dt >= Self::WINDOW {
            let sample = self.bytes as f64 / dt.as_secs_f64();
            self.per_sec = if self.per_sec == 0.0 { sample } else { 0.5 * self.per_sec + 0.5 * sample };
            self.since = now;
            self.bytes = 0;
        }
    }

    /// The smoothed rate, bytes per second (0 before a first window closes).
    pub fn smoothed(&self) -> f64 {
        self.per_sec
    }

    /// Bytes per second: the smoothed rate, or the current window's if higher
    /// (a fast start is seen before its first window closes).
    pub fn per_sec(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.since).as_secs_f64().max(1e-3);
        self.per_sec.max(self.bytes as f64 / dt.max(Self::WINDOW.as_secs_f64()))
    }
}

impl Session {
    pub fn new(addr: SocketAddr, outbound: bool, torrent: Option<ContentId>, now: Instant) -> Session {
        Session {
            addr,
            listen: outbound.then_some(addr),
            outbound,
            phase: if outbound { Phase::Dialling { since: now } } else { Phase::Greeting { since: now } },
            torrent,
            nonce: 0,
            theirs: None,
            seed: false,
            their_state: State::Unavailable,
            asked: VecDeque::new(),
            last_data: now,
            due_from: now,
            behind: false,
            patience: None,
            chunk_size: 0,
            last_heard: now,
            owed: VecDeque::new(),
            sending: None,
            deferred: Vec::new(),
            slot_since: None,
            waiting_since: now,
            suspect: false,
            idle_turn: false,
            turn_sent: 0,
            last_request: now,
            last_sent: now,
            unwritten: false,
            unsent: Unsent::default(),
            waits_budget: false,
            written: 0,
            ahead_of_request: 0,
            told_state: false,
            told: Bitfield::new(0),
            spread: Vec::new(),
            spread_refusals: Vec::new(),
            arriving: Vec::new(),
            spread_to_us: Vec::new(),
            downloaded: 0,
            stalled: false,
            incoming: None,
            rate: Rate::new(now),
            sent_rate: Rate::new(now),
            timer: None,
        }
    }

    /// The answers owed that may still be dropped or changed: all but a
    /// chunk whose frame has begun (it is finished whatever comes).
    pub fn owed_pending(&mut self) -> impl Iterator<Item = &mut Answer> {
        let begun = usize::from(self.sending.is_some());
        self.owed.iter_mut().skip(begun)
    }

    /// Drops the answer owed for chunk `index` (a Cancel) unless its frame
    /// has begun; true if one was dropped.
    pub fn drop_owed(&mut self, index: u32) -> bool {
        let begun = usize::from(self.sending.is_some());
        let before = self.owed.len();
        let mut at = 0;
        self.owed.retain(|a| {
            at += 1;
            at <= begun || *a != Answer::Chunk(index)
        });
        self.owed.len() < before
    }

    /// Whether the chunk it is owed next waits for the core's budget.
    pub fn waits_for_budget(&self) -> bool {
        self.waits_budget && matches!(self.owed.front(), Some(Answer::Chunk(_)))
    }

    /// Whether it holds every chunk (or did when it said so: a seed that
    /// refuses a chunk with `Spread` has its bit cleared here for a while).
    pub fn is_seed(&self) -> bool {
        self.seed || self.theirs.as_ref().is_some_and(Bitfield::is_full)
    }

    /// A chunk came, or work for an idle peer: its stall and overdue windows start now.
    pub fn restart_clocks(&mut self, now: Instant) {
        self.last_data = now;
        self.due_from = now;
    }

    /// Requests that will still be answered.
    pub fn outstanding(&self) -> usize {
        self.asked.iter().filter(|a| !a.cancelled).count()
    }

    /// Matches an answer for `index` to our requests: skips cancelled ones
    /// it passed (they will never be answered) and takes the one it answers.
    /// `None`: an answer to nothing we asked, a protocol violation.
    pub fn take_answer(&mut self, index: u32) -> Option<Asked> {
        self.expects(index).then(|| self.asked.pop_front()).flatten()
    }

    /// Whether an answer for `index` may come now: the oldest request not
    /// cancelled asks for it. The cancelled ones before it are dropped (they
    /// will never be answered); the request stays until `take_answer`.
    pub fn expects(&mut self, index: u32) -> bool {
        while let Some(front) = self.asked.front().copied() {
            if front.index == index {
                return true;
            }
            if !front.cancelled {
                return false;
            }
            self.asked.pop_front();
        }
        false
    }

    /// Marks our request for `index` cancelled; true if one was outstanding.
    pub fn cancel(&mut self, index: u32) -> bool {
        match self.asked.iter_mut().find(|a| a.index == index && !a.cancelled) {
            Some(a) => {
                a.cancelled = true;
                true
            }
            None => false,
        }
    }

    /// A slot holder that has asked for nothing for `ask`, or whose queue has
    /// not drained for `drain`, is idle (not while its answer waits for the budget).
    pub fn active(&self, now: Instant, ask: Duration, drain: Duration) -> bool {
        (self.slot_since.is_some() && self.waits_for_budget())
            || self.slot_idle_at(ask, drain).is_some_and(|at| now < at)
    }

    /// Whether chunks wait in its queue and nothing has left it for `patience`:
    /// it reads nothing (or hardly anything) of what we send.
    pub fn stuck(&self, now: Instant, patience: Duration) -> bool {
        self.unwritten && now >= self.last_sent + patience
    }

    /// When a slot holder becomes idle unless it asks or drains something
    /// (none while its answer waits for the budget).
    pub fn slot_idle_at(&self, ask: Duration, drain: Duration) -> Option<Instant> {
        let since = self.slot_since.filter(|_| !self.waits_for_budget())?;
        Some(match self.owed.is_empty() {
            true => self.last_request.max(since) + ask,
            false => self.last_sent.max(since) + drain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new("127.0.0.1:1".parse().unwrap(), true, None, Instant::now())
    }

    #[test]
    fn answers_match_in_order_skipping_cancelled() {
        let mut s = session();
        let t0 = Instant::now();
        for index in [1, 2, 3] {
            s.asked.push_back(Asked::new(index, t0));
        }
        assert_eq!(s.take_answer(2), None, "out of order");
        assert!(s.cancel(1));
        assert!(!s.cancel(1), "cancelled once");
        assert_eq!(s.outstanding(), 2);
        assert_eq!(s.take_answer(2), Some(Asked::new(2, t0)), "the cancelled request was dropped by the other side");
        assert!(s.cancel(3));
        let late = s.take_answer(3).unwrap();
        assert!(late.cancelled && !late.counted(), "a cancelled request answered anyway");
        assert_eq!(s.take_answer(3), None);
    }

    #[test]
    fn activity_of_a_slot_holder() {
        let t0 = Instant::now();
        let (ask, drain) = (Duration::from_secs(1), Duration::from_secs(10));
        let mut s = session();
        assert!(!s.active(t0, ask, drain), "no slot");
        s.slot_since = Some(t0);
        s.last_request = t0;
        s.last_sent = t0;
        assert!(s.active(t0 + ask / 2, ask, drain));
        assert!(!s.active(t0 + ask, ask, drain), "asked for nothing");
        s.owed.push_back(Answer::Chunk(0));
        s.last_request = t0 + ask;
        assert!(s.active(t0 + drain / 2, ask, drain), "asked: its queue has `drain` to move");
        assert!(!s.active(t0 + drain, ask, drain), "asks but drains nothing");
        s.last_sent = t0 + drain;
        assert!(s.active(t0 + drain, ask, drain));
    }
}

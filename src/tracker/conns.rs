//! The rules for the tracker's catalog connections, sans IO: how many a
//! client may hold, how long a frame may take, when reading pauses and
//! whom to evict. The shell reports what happens, closes what this says and
//! pauses or resumes reading as told.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use crate::common::admission::Admit;
use crate::common::admission::{Held, Room, Table};
use crate::common::net::ConnId;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Catalog connections at once; a new one evicts the idlest.
    pub max_conns: usize,
    /// Catalog connections at once from one IP address; more are refused.
    pub per_ip: usize,
    /// A connection with no request, no answer taken and no frame under way
    /// for this long is closed.
    pub idle: Duration,
    /// A frame must arrive whole within this time of its first byte, however
    /// the bytes trickle in (slowloris).
    pub frame_deadline: Duration,
    /// While more answer bytes than this wait, further requests are not read.
    pub max_queued: usize,
    /// An unfinished frame holding more than this is large (a Publish)...
    pub large_frame: usize,
    /// ... and at most this many connections read large frames at once;
    /// the others wait unread for a turn, first come first served.
    pub large_turns: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_conns: 512,
            per_ip: 32,
            idle: Duration::from_secs(30),
            frame_deadline: Duration::from_secs(10),
            max_queued: 64 * 1024,
            large_frame: 64 * 1024,
            large_turns: 8,
        }
    }
}

/// Counts of what the rules closed, for the status line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub refused: u64,
    pub evicted: u64,
    pub slow_frames: u64,
    pub idle: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests; `large` while it holds a turn for a large frame.
    Reading { large: bool },
    /// Not reading: more than `max_queued` answer bytes wait.
    Answering,
    /// Not reading: a large frame waits for a turn.
    Waiting,
}

struct Entry {
    ip: IpAddr,
    /// Last request read, answer taken, or the accept.
    last_progress: Instant,
    /// First byte of the frame under way, while one is and we read.
    frame_start: Option<Instant>,
    phase: Phase,
    /// Answer bytes waiting when last told; fewer later is progress.
    queued: usize,
}

impl Held for Entry {
    type Key = (bool, Instant);

    fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Eviction order: the connection that has made no progress for the
    /// longest goes first (a trickled byte is no progress, so a slowloris
    /// connection ages from its accept); one waiting on its answer, last.
    fn eviction_key(&self) -> (bool, Instant) {
        (self.phase == Phase::Answering, self.last_progress)
    }
}

impl Entry {
    fn deadline(&self, limits: &Limits) -> Instant {
        match self.frame_start {
            Some(start) => start + limits.frame_deadline,
            None => self.last_progress + limits.idle,
        }
    }
}

pub struct Conns {
    limits: Limits,
    table: Table<Entry>,
    /// Connections reading a large frame now, and those waiting for a turn.
    large: usize,
    waiting: VecDeque<ConnId>,
    /// Connections given a turn, for the shell to read again.
    resumed: Vec<ConnId>,
    stats: Stats,
}

impl Conns {
    pub fn new(limits: Limits) -> Conns {
        let table = Table::new(limits.max_conns, limits.per_ip);
        Conns { limits, table, large: 0, waiting: VecDeque::new(), resumed: Vec::new(), stats: Stats::default() }
    }

    /// A connection from `ip` was accepted.
    pub fn handle_accept(&mut self, now: Instant, conn: ConnId, ip: IpAddr) -> Admit {
        let admit = match self.table.room_for(ip) {
            Room::Free => Admit::Accept,
            Room::Full => self.evict_one().map_or(Admit::Refuse, Admit::Evict),
            Room::AddressFull => {
                self.stats.refused += 1;
                Admit::Refuse
            }
        };
        if admit != Admit::Refuse {
            let entry =
                Entry { ip, last_progress: now, frame_start: None, phase: Phase::Reading { large: false }, queued: 0 };
            self.table.insert(conn, entry);
        }
        admit
    }

    /// Picks the connection to close to make room (the table is full, or
    /// the process is out of descriptors) and forgets it.
    pub fn evict_one(&mut self) -> Option<ConnId> {
        let victim = self.table.victim()?;
        self.stats.evicted += 1;
        self.remove(victim);
        Some(victim)
    }

    /// A read left `buffered` bytes of an unfinished frame. Its first byte
    /// starts the frame's deadline; more bytes do not move it. Returns
    /// whether to read on: a large frame without a turn waits unread.
    pub fn handle_read(&mut self, now: Instant, conn: ConnId, buffered: usize) -> bool {
        let Some(e) = self.table.get_mut(conn) else { return false };
        let Phase::Reading { large } = e.phase else {
            e.frame_start = None; // bytes we leave unread are not the client's delay
            return false;
        };
        if buffered == 0 {
            e.frame_start = None;
            return true;
        }
        e.frame_start.get_or_insert(now);
        if buffered > self.limits.large_frame && !large {
            if self.large >= self.limits.large_turns {
                e.phase = Phase::Waiting;
                e.frame_start = None;
                self.waiting.push_back(conn);
                return false;
            }
            self.large += 1;
            e.phase = Phase::Reading { large: true };
        }
        true
    }

    /// A whole request was read and answered; `queued` answer bytes wait.
    /// Returns whether to read the next one.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, queued: usize) -> bool {
        let Some(e) = self.table.get_mut(conn) else { return false };
        let had_turn = e.phase == Phase::Reading { large: true };
        e.last_progress = now;
        e.frame_start = None;
        e.queued = queued;
        let reading = queued <= self.limits.max_queued;
        e.phase = if reading { Phase::Reading { large: false } } else { Phase::Answering };
        if had_turn {
            self.end_turn();
        }
        reading
    }

    /// The answer queue is short; `queued` bytes still wait. Fewer than
    /// before is progress (the same number is not: a client that never
    /// reads stays idle). Returns true when reading should resume.
    pub fn handle_drained(&mut self, now: Instant, conn: ConnId, queued: usize) -> bool {
        let Some(e) = self.table.get_mut(conn) else { return false };
        if queued < e.queued {
            e.last_progress = now;
        }
        e.queued = queued;
        let resume = e.phase == Phase::Answering && queued <= self.limits.max_queued;
        if resume {
            e.phase = Phase::Reading { large: false };
        }
        resume
    }

    /// A connection given a turn for its large frame since last asked: the
    /// shell resumes reading it.
    pub fn poll_resumed(&mut self) -> Option<ConnId> {
        self.resumed.pop()
    }

    pub fn handle_closed(&mut self, conn: ConnId) {
        self.remove(conn);
    }

    /// Forgets and returns the connections whose frame is late or that
    /// have been idle too long; the shell closes them. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ConnId> {
        let limits = &self.limits;
        let expired: Vec<(ConnId, bool)> = self
            .table
            .iter()
            .filter(|(_, e)| now >= e.deadline(limits))
            .map(|(id, e)| (id, e.frame_start.is_some()))
            .collect();
        for &(id, slow) in &expired {
            match slow {
                true => self.stats.slow_frames += 1,
                false => self.stats.idle += 1,
            }
            self.remove(id);
        }
        expired.into_iter().map(|(id, _)| id).collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.iter().map(|(_, e)| e.deadline(&self.limits)).min()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A large frame ended (read whole, or its connection gone): the first
    /// connection still waiting takes the turn.
    fn end_turn(&mut self) {
        self.large -= 1;
        while let Some(next) = self.waiting.pop_front() {
            if let Some(e) = self.table.get_mut(next).filter(|e| e.phase == Phase::Waiting) {
                e.phase = Phase::Reading { large: true };
                self.large += 1;
                self.resumed.push(next);
                return;
            }
        }
    }

    fn remove(&mut self, conn: ConnId) {
        let Some(e) = self.table.remove(conn) else { return };
        // Given a turn and gone before the shell asked: its key may be reused.
        self.resumed.retain(|&c| c != conn);
        match e.phase {
            Phase::Reading { large: true } => self.end_turn(),
            Phase::Waiting => self.waiting.retain(|&c| c != conn),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn conns(max_conns: usize, per_ip: usize) -> Conns {
        Conns::new(Limits { max_conns, per_ip, ..Limits::default() })
    }

    #[test]
    fn per_ip_cap_refuses_and_frees_on_close() {
        let t0 = Instant::now();
        let mut c = conns(100, 2);
        assert_eq!(c.handle_accept(t0, ConnId(0), ip(1)), Admit::Accept);
        assert_eq!(c.handle_accept(t0, ConnId(1), ip(1)), Admit::Accept);
        assert_eq!(c.handle_accept(t0, ConnId(2), ip(1)), Admit::Refuse);
        assert_eq!(c.handle_accept(t0, ConnId(3), ip(2)), Admit::Accept, "another address is not limited");
        c.handle_closed(ConnId(0));
        assert_eq!(c.handle_accept(t0, ConnId(4), ip(1)), Admit::Accept);
        assert_eq!((c.len(), c.stats().refused), (3, 1));
    }

    #[test]
    fn a_byte_does_not_reset_the_frame_deadline() {
        let t0 = Instant::now();
        let mut c = conns(10, 10);
        c.handle_accept(t0, ConnId(0), ip(1));
        for s in 0..10 {
            c.handle_read(t0 + SEC * s, ConnId(0), 1 + s as usize); // one byte a second
        }
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 10));
        assert!(c.handle_timeout(t0 + SEC * 10 - Duration::from_millis(1)).is_empty(), "one tick before");
        assert_eq!(c.handle_timeout(t0 + SEC * 10), vec![ConnId(0)]);
        assert_eq!(c.stats().slow_frames, 1);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_finished_frame_starts_the_next_deadline_afresh() {
        let t0 = Instant::now();
        let mut c = conns(10, 10);
        c.handle_accept(t0, ConnId(0), ip(1));
        c.handle_read(t0, ConnId(0), 3);
        assert!(c.handle_request(t0 + SEC * 9, ConnId(0), 10));
        c.handle_read(t0 + SEC * 9, ConnId(0), 2); // the next frame's first bytes
        assert!(c.handle_timeout(t0 + SEC * 18).is_empty());
        assert_eq!(c.handle_timeout(t0 + SEC * 19), vec![ConnId(0)]);
    }

    #[test]
    fn idle_after_the_last_request() {
        let t0 = Instant::now();
        let mut c = conns(10, 10);
        c.handle_accept(t0, ConnId(0), ip(1));
        c.handle_request(t0 + SEC * 5, ConnId(0), 0);
        c.handle_read(t0 + SEC * 5, ConnId(0), 0);
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 35));
        assert!(c.handle_timeout(t0 + SEC * 34).is_empty());
        assert_eq!(c.handle_timeout(t0 + SEC * 35), vec![ConnId(0)]);
        assert_eq!(c.stats().idle, 1);
    }

    #[test]
    fn reading_pauses_above_the_queue_bound_and_resumes_below() {
        let t0 = Instant::now();
        let mut c = conns(10, 10);
        let max = Limits::default().max_queued;
        c.handle_accept(t0, ConnId(0), ip(1));
        assert!(c.handle_request(t0, ConnId(0), max), "at the bound: read on");
        assert!(!c.handle_request(t0, ConnId(0), max + 1), "above it: pause");
        // Unread frames held while paused are not a slow frame.
        c.handle_read(t0, ConnId(0), 500);
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 30));
        assert!(!c.handle_drained(t0 + SEC, ConnId(0), max + 1));
        assert!(c.handle_drained(t0 + SEC * 2, ConnId(0), max));
        assert!(!c.handle_drained(t0 + SEC * 3, ConnId(0), 0), "already reading");
        // A client that never takes its answer is idle once the bound holds,
        // however often the loop looks at its queue.
        assert!(!c.handle_request(t0 + SEC * 4, ConnId(0), max * 4));
        for s in 5..34 {
            assert!(!c.handle_drained(t0 + SEC * s, ConnId(0), max * 4));
        }
        assert_eq!(c.handle_timeout(t0 + SEC * 34), vec![ConnId(0)]);
    }

    #[test]
    fn full_table_evicts_the_longest_without_progress() {
        let t0 = Instant::now();
        let mut c = conns(3, 10);
        c.handle_accept(t0, ConnId(0), ip(1));
        c.handle_read(t0 + SEC * 2, ConnId(0), 1); // trickling: bytes are no progress
        c.handle_accept(t0, ConnId(1), ip(2));
        c.handle_request(t0, ConnId(1), 1 << 20); // waiting on its answer since t0
        c.handle_accept(t0 + SEC, ConnId(2), ip(3)); // idle since 1 s
        assert_eq!(c.handle_accept(t0 + SEC * 3, ConnId(3), ip(4)), Admit::Evict(ConnId(0)));
        assert_eq!(c.handle_accept(t0 + SEC * 4, ConnId(4), ip(5)), Admit::Evict(ConnId(2)));
        c.handle_request(t0 + SEC * 5, ConnId(3), 0);
        assert_eq!(
            c.handle_accept(t0 + SEC * 6, ConnId(5), ip(6)),
            Admit::Evict(ConnId(4)),
            "an accept at 4 s before a request at 5 s"
        );
        // Left: 1 (answer waiting since t0), 3 (request at 5 s), 5 (fresh at 6 s).
        assert_eq!(c.handle_accept(t0 + SEC * 7, ConnId(6), ip(7)), Admit::Evict(ConnId(3)));
        assert_eq!(c.handle_accept(t0 + SEC * 8, ConnId(7), ip(8)), Admit::Evict(ConnId(5)));
        assert_eq!(c.handle_accept(t0 + SEC * 9, ConnId(8), ip(9)), Admit::Evict(ConnId(6)));
        c.handle_drained(t0 + SEC * 9 + SEC / 2, ConnId(1), 0); // it took its answer and reads again
        assert_eq!(c.handle_accept(t0 + SEC * 10, ConnId(9), ip(9)), Admit::Evict(ConnId(7)));
        assert_eq!(c.handle_accept(t0 + SEC * 11, ConnId(10), ip(9)), Admit::Evict(ConnId(8)));
        assert_eq!(c.handle_accept(t0 + SEC * 12, ConnId(11), ip(9)), Admit::Evict(ConnId(1)));
        assert_eq!(c.stats().evicted, 9);
        assert_eq!(c.len(), 3);
        c.handle_closed(ConnId(2)); // evicted before: closing it again is a no-op
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn large_frames_take_turns() {
        let t0 = Instant::now();
        let mut c = Conns::new(Limits { large_turns: 2, ..Limits::default() });
        let large = Limits::default().large_frame + 1;
        for n in 0..4 {
            c.handle_accept(t0, ConnId(n), ip(n as u8));
            assert!(c.handle_read(t0, ConnId(n), 100), "small frames need no turn");
        }
        assert!(c.handle_read(t0, ConnId(0), large));
        assert!(c.handle_read(t0, ConnId(1), large));
        assert!(!c.handle_read(t0, ConnId(2), large), "no turn left: wait unread");
        assert!(!c.handle_read(t0, ConnId(3), large));
        assert!(!c.handle_read(t0 + SEC, ConnId(2), large), "still waiting");
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 10), "the readers' frames; the waiting are idle-timed");
        // The first finishes: the first waiting takes its turn, with a fresh deadline.
        assert!(c.handle_request(t0 + SEC * 2, ConnId(0), 10));
        assert_eq!(c.poll_resumed(), Some(ConnId(2)));
        assert_eq!(c.poll_resumed(), None);
        assert!(c.handle_read(t0 + SEC * 3, ConnId(2), large * 2));
        // One reading a large frame is cut at its deadline: the next waiting goes.
        assert_eq!(c.handle_timeout(t0 + SEC * 10), vec![ConnId(1)]);
        assert_eq!(c.poll_resumed(), Some(ConnId(3)));
        // A waiting connection that closes leaves the queue.
        c.handle_accept(t0 + SEC * 10, ConnId(4), ip(4));
        assert!(!c.handle_read(t0 + SEC * 10, ConnId(4), large));
        c.handle_closed(ConnId(4));
        assert!(c.waiting.is_empty());
        c.handle_closed(ConnId(2));
        c.handle_closed(ConnId(3));
        assert_eq!(c.large, 0);
    }

    #[test]
    fn per_ip_counts_follow_evictions_and_expiry() {
        let t0 = Instant::now();
        let mut c = conns(2, 1);
        c.handle_accept(t0, ConnId(0), ip(1));
        c.handle_accept(t0 + SEC, ConnId(1), ip(2));
        assert_eq!(c.handle_accept(t0 + SEC * 2, ConnId(2), ip(3)), Admit::Evict(ConnId(0)));
        assert_eq!(c.handle_accept(t0 + SEC * 3, ConnId(0), ip(1)), Admit::Evict(ConnId(1)), "ip 1 was freed");
        c.handle_timeout(t0 + SEC * 60);
        assert_eq!((c.len(), c.table.addresses()), (0, 0));
    }

    /// Found by the conns_core fuzz target: a connection handed a turn by
    /// another's expiry, and expired in the same sweep, was still resumed.
    #[test]
    fn a_turn_given_to_a_connection_closed_since_is_not_resumed() {
        let t0 = Instant::now();
        let mut c = Conns::new(Limits { large_turns: 1, ..Limits::default() });
        c.handle_accept(t0, ConnId(0), ip(1));
        c.handle_accept(t0, ConnId(1), ip(2));
        assert!(c.handle_read(t0, ConnId(0), 100_000), "the first large frame has the turn");
        assert!(!c.handle_read(t0, ConnId(1), 100_000), "the second waits");
        let closed = c.handle_timeout(t0 + 40 * SEC);
        assert_eq!(closed.len(), 2);
        assert_eq!(c.poll_resumed(), None);
    }
}

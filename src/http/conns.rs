//! The rules for HTTP connections, sans IO: how many a client may hold,
//! how long a request head may take, how long a connection may sit idle,
//! how many requests one connection may make, and when to read, wait or
//! feed more of a streamed answer. The shell reports bytes and queue
//! lengths, and does what this says.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::request::{self, Head, HeadError};
use crate::common::admission::{Admit, Held, Room, Table};
use crate::common::net::ConnId;

#[derive(Debug, Clone)]
pub struct Limits {
    /// HTTP connections at once; a new one evicts the one idle longest.
    pub max_conns: usize,
    /// HTTP connections at once from one IP address; more are refused.
    pub per_ip: usize,
    /// A request head must arrive whole within this time of its first byte,
    /// however it trickles in (slowloris).
    pub request_deadline: Duration,
    /// A connection with no request and no answer byte taken for this long is closed.
    pub idle: Duration,
    /// Requests one connection may make (keep-alive); the last answer says
    /// `Connection: close`.
    pub max_requests: u32,
    /// Answer bytes queued per connection: above this, pipelined requests
    /// stay unread and a streamed answer waits for the client to read.
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_conns: 256,
            per_ip: 16,
            request_deadline: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            max_requests: 1000,
            max_queued: 64 * 1024,
        }
    }
}

/// What the rules closed or refused, for /metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    /// Refused at accept: the address holds `per_ip` connections.
    pub refused: u64,
    pub evicted: u64,
    pub slow_requests: u64,
    pub idle: u64,
    /// Heads refused, by `HeadError` (too large, malformed, method, body).
    pub bad_heads: [u64; 4],
}

/// The next thing a connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read (and parse) the next request.
    Read,
    /// Queue the next piece of the streamed answer now.
    Feed,
    /// Read nothing and feed nothing until the queue drains.
    Wait,
    /// Close once the queue is flushed: the last answer is out.
    Close,
}

/// What the bytes buffered on a connection hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// Not a whole request head yet (or not reading now).
    More,
    Request(Head<'a>),
    /// Answer with this error's status, then close.
    Refuse(HeadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head; `since` its first byte, while one is under way.
    Reading { since: Option<Instant> },
    /// An answer is queued; `streaming` while more of its body is to come.
    Answering { streaming: bool },
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    phase: Phase,
    /// Last request read, answer byte taken, or the accept.
    last_progress: Instant,
    served: u32,
    /// Answer bytes waiting when last told; fewer later is progress.
    queued: usize,
    /// The answer under way is the last: close after it.
    last: bool,
}

impl Held for Entry {
    type Key = (bool, Instant);

    fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The one without progress for the longest goes first; one reading
    /// before one whose answer is under way.
    fn eviction_key(&self) -> (bool, Instant) {
        (matches!(self.phase, Phase::Answering { .. }), self.last_progress)
    }
}

pub struct Conns {
    limits: Limits,
    table: Table<Entry>,
    stats: Stats,
}

impl Conns {
    pub fn new(limits: Limits) -> Conns {
        Conns { table: Table::new(limits.max_conns, limits.per_ip), limits, stats: Stats::default() }
    }

    /// A connection from `ip` turned out to speak HTTP.
    pub fn handle_open(&mut self, now: Instant, conn: ConnId, ip: IpAddr) -> Admit {
        let admit = match self.table.room_for(ip) {
            Room::Free => Admit::Accept,
            Room::Full => self.evict_one().map_or(Admit::Refuse, Admit::Evict),
            Room::AddressFull => Admit::Refuse,
        };
        if admit == Admit::Refuse {
            self.stats.refused += 1;
        } else {
            let phase = Phase::Reading { since: None };
            self.table.insert(conn, Entry { ip, phase, last_progress: now, served: 0, queued: 0, last: false });
        }
        admit
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.table.get(conn).is_some()
    }

    /// `buf` holds the bytes read and not yet consumed. Returns the next
    /// whole request (its head's `keep_alive` already false when it is the
    /// last this connection may make), a refusal, or `More`. A head's
    /// first byte starts its deadline; more bytes do not move it.
    pub fn handle_bytes<'a>(&mut self, now: Instant, conn: ConnId, buf: &'a [u8]) -> Step<'a> {
        let Some(e) = self.table.get_mut(conn) else { return Step::More };
        let Phase::Reading { since } = &mut e.phase else { return Step::More };
        if buf.is_empty() {
            *since = None;
            return Step::More;
        }
        match request::parse(buf) {
            Ok(None) => {
                since.get_or_insert(now);
                Step::More
            }
            Err(error) => {
                self.stats.bad_heads[error as usize] += 1;
                e.phase = Phase::Answering { streaming: false };
                e.last = true;
                Step::Refuse(error)
            }
            Ok(Some(mut head)) => {
                self.stats.requests += 1;
                e.served += 1;
                e.last_progress = now;
                head.keep_alive &= e.served < self.limits.max_requests;
                e.last = !head.keep_alive;
                e.phase = Phase::Answering { streaming: false };
                Step::Request(head)
            }
        }
    }

    /// An answer, or a piece of a streamed one, was queued: `queued` bytes
    /// wait, and `streaming` while more of its body is to come.
    pub fn handle_answered(&mut self, conn: ConnId, queued: usize, streaming: bool) -> Next {
        let Some(e) = self.table.get_mut(conn) else { return Next::Close };
        e.queued = queued;
        e.phase = Phase::Answering { streaming };
        self.next(conn)
    }

    /// The queue shrank to `queued` bytes. Fewer than before is progress
    /// (the same number is not: a client that never reads stays idle).
    pub fn handle_drained(&mut self, now: Instant, conn: ConnId, queued: usize) -> Next {
        let Some(e) = self.table.get_mut(conn) else { return Next::Close };
        if queued < e.queued {
            e.last_progress = now;
        }
        e.queued = queued;
        self.next(conn)
    }

    fn next(&mut self, conn: ConnId) -> Next {
        let Some(e) = self.table.get_mut(conn) else { return Next::Close };
        let room = e.queued < self.limits.max_queued;
        match e.phase {
            Phase::Answering { streaming: true } if room => Next::Feed,
            Phase::Answering { .. } if e.last => Next::Close,
            Phase::Answering { .. } if room => {
                e.phase = Phase::Reading { since: None };
                Next::Read
            }
            Phase::Answering { .. } => Next::Wait,
            Phase::Reading { .. } => Next::Read,
        }
    }

    pub fn handle_closed(&mut self, conn: ConnId) {
        self.table.remove(conn);
    }

    /// Picks the connection to close to make room and forgets it.
    pub fn evict_one(&mut self) -> Option<ConnId> {
        let victim = self.table.victim()?;
        self.stats.evicted += 1;
        self.handle_closed(victim);
        Some(victim)
    }

    /// Forgets and returns the connections whose head is late or that have
    /// been idle too long; the shell closes them. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ConnId> {
        let limits = &self.limits;
        let expired: Vec<(ConnId, bool)> = self
            .table
            .iter()
            .filter(|(_, e)| now >= deadline(e, limits))
            .map(|(id, e)| (id, matches!(e.phase, Phase::Reading { since: Some(_) })))
            .collect();
        for &(id, slow) in &expired {
            match slow {
                true => self.stats.slow_requests += 1,
                false => self.stats.idle += 1,
            }
            self.handle_closed(id);
        }
        expired.into_iter().map(|(id, _)| id).collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.iter().map(|(_, e)| deadline(e, &self.limits)).min()
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
}

fn deadline(e: &Entry, limits: &Limits) -> Instant {
    match e.phase {
        Phase::Reading { since: Some(start) } => start + limits.request_deadline,
        _ => e.last_progress + limits.idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const GET: &[u8] = b"GET /metrics HTTP/1.1\r\n\r\n";

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn conns(limits: Limits) -> (Conns, Instant) {
        let t0 = Instant::now();
        let mut c = Conns::new(limits);
        assert_eq!(c.handle_open(t0, ConnId(0), ip(1)), Admit::Accept);
        (c, t0)
    }

    fn request(c: &mut Conns, now: Instant, conn: ConnId) -> Head<'static> {
        match c.handle_bytes(now, conn, GET) {
            Step::Request(head) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn per_ip_cap_and_eviction() {
        let t0 = Instant::now();
        let mut c = Conns::new(Limits { max_conns: 3, per_ip: 2, ..Limits::default() });
        assert_eq!(c.handle_open(t0, ConnId(0), ip(1)), Admit::Accept);
        assert_eq!(c.handle_open(t0 + SEC, ConnId(1), ip(1)), Admit::Accept);
        assert_eq!(c.handle_open(t0, ConnId(2), ip(1)), Admit::Refuse);
        assert_eq!(c.handle_open(t0, ConnId(3), ip(2)), Admit::Accept);
        // Full: the newcomer evicts the connection without progress the longest.
        request(&mut c, t0 + SEC * 2, ConnId(3));
        assert_eq!(c.handle_open(t0 + SEC * 3, ConnId(4), ip(3)), Admit::Evict(ConnId(0)));
        assert_eq!(c.handle_open(t0, ConnId(5), ip(1)), Admit::Evict(ConnId(1)), "its slot freed");
        c.handle_closed(ConnId(5));
        c.handle_closed(ConnId(5));
        assert_eq!((c.len(), c.stats().refused, c.stats().evicted), (2, 1, 2));
    }

    #[test]
    fn a_trickled_head_meets_its_deadline() {
        let (mut c, t0) = conns(Limits::default());
        for s in 0..10 {
            assert_eq!(c.handle_bytes(t0 + SEC * s, ConnId(0), &GET[..1 + s as usize]), Step::More);
        }
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 10));
        assert!(c.handle_timeout(t0 + SEC * 10 - Duration::from_millis(1)).is_empty(), "one tick before");
        assert_eq!(c.handle_timeout(t0 + SEC * 10), vec![ConnId(0)]);
        assert_eq!((c.stats().slow_requests, c.len()), (1, 0));
    }

    #[test]
    fn idle_keep_alive_connection_closes() {
        let (mut c, t0) = conns(Limits::default());
        request(&mut c, t0 + SEC * 5, ConnId(0));
        assert_eq!(c.handle_answered(ConnId(0), 100, false), Next::Read);
        assert_eq!(c.handle_bytes(t0 + SEC * 5, ConnId(0), b""), Step::More);
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 35));
        assert!(c.handle_timeout(t0 + SEC * 34).is_empty());
        assert_eq!(c.handle_timeout(t0 + SEC * 35), vec![ConnId(0)]);
        assert_eq!(c.stats().idle, 1);
    }

    #[test]
    fn keep_alive_is_capped() {
        let (mut c, t0) = conns(Limits { max_requests: 3, ..Limits::default() });
        for _ in 0..2 {
            assert!(request(&mut c, t0, ConnId(0)).keep_alive);
            assert_eq!(c.handle_answered(ConnId(0), 0, false), Next::Read);
        }
        assert!(!request(&mut c, t0, ConnId(0)).keep_alive, "the third is the last");
        assert_eq!(c.handle_answered(ConnId(0), 0, false), Next::Close);
    }

    #[test]
    fn a_client_asking_to_close_is_closed_after_its_answer() {
        let (mut c, t0) = conns(Limits::default());
        let step = c.handle_bytes(t0, ConnId(0), b"GET / HTTP/1.0\r\n\r\n");
        assert!(matches!(step, Step::Request(Head { keep_alive: false, .. })));
        assert_eq!(c.handle_answered(ConnId(0), 10, false), Next::Close);
    }

    #[test]
    fn a_bad_head_is_refused_counted_and_closed() {
        let (mut c, t0) = conns(Limits::default());
        assert_eq!(c.handle_bytes(t0, ConnId(0), b"BREW / HTCPCP/1.0\r\n\r\n"), Step::Refuse(HeadError::Malformed));
        assert_eq!(c.handle_bytes(t0, ConnId(0), GET), Step::More, "nothing more is read");
        assert_eq!(c.handle_answered(ConnId(0), 10, false), Next::Close);
        assert_eq!(c.stats().bad_heads, [0, 1, 0, 0]);
    }

    #[test]
    fn pipelined_requests_wait_while_answers_pile_up() {
        let (mut c, t0) = conns(Limits::default());
        let max = Limits::default().max_queued;
        request(&mut c, t0, ConnId(0));
        assert_eq!(c.handle_answered(ConnId(0), max - 1, false), Next::Read);
        request(&mut c, t0, ConnId(0));
        assert_eq!(c.handle_answered(ConnId(0), max, false), Next::Wait);
        assert_eq!(c.handle_bytes(t0, ConnId(0), GET), Step::More, "not read while waiting");
        assert_eq!(c.handle_drained(t0 + SEC, ConnId(0), max), Next::Wait);
        assert_eq!(c.handle_drained(t0 + SEC, ConnId(0), max - 1), Next::Read);
    }

    #[test]
    fn a_streamed_answer_is_fed_only_while_the_queue_has_room() {
        let (mut c, t0) = conns(Limits::default());
        let max = Limits::default().max_queued;
        request(&mut c, t0, ConnId(0));
        assert_eq!(c.handle_answered(ConnId(0), 1000, true), Next::Feed);
        assert_eq!(c.handle_answered(ConnId(0), max, true), Next::Wait);
        assert_eq!(c.handle_drained(t0 + SEC, ConnId(0), max - 1), Next::Feed);
        assert_eq!(c.handle_answered(ConnId(0), max - 1, false), Next::Read, "the last piece");
    }

    #[test]
    fn a_client_that_never_reads_is_closed_when_idle() {
        let (mut c, t0) = conns(Limits::default());
        let max = Limits::default().max_queued;
        request(&mut c, t0, ConnId(0));
        assert_eq!(c.handle_answered(ConnId(0), max, true), Next::Wait);
        // The loop looking at the same queue again is no progress.
        for s in 1..30 {
            assert_eq!(c.handle_drained(t0 + SEC * s, ConnId(0), max), Next::Wait);
        }
        assert_eq!(c.handle_timeout(t0 + SEC * 30), vec![ConnId(0)]);
        // One that reads a little is progress, and keeps it open.
        let (mut c, t0) = conns(Limits::default());
        request(&mut c, t0, ConnId(0));
        c.handle_answered(ConnId(0), max, true);
        assert_eq!(c.handle_drained(t0 + SEC * 20, ConnId(0), max - 10), Next::Feed);
        assert!(c.handle_timeout(t0 + SEC * 30).is_empty());
        assert_eq!(c.next_deadline(), Some(t0 + SEC * 50));
    }

    #[test]
    fn unknown_connections_are_ignored() {
        let (mut c, t0) = conns(Limits::default());
        assert_eq!(c.handle_bytes(t0, ConnId(9), GET), Step::More);
        assert_eq!(c.handle_answered(ConnId(9), 0, false), Next::Close);
        assert_eq!(c.handle_drained(t0, ConnId(9), 0), Next::Close);
        assert!(!c.contains(ConnId(9)) && c.contains(ConnId(0)));
    }
}

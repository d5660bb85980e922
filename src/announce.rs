//! A sans-IO BEP 15 client: the seeder's join and heartbeat, the leecher's
//! "which seeders have this file". Announces wait for a connection id, are
//! retried with backoff when unanswered, and a connection id rejected by the
//! tracker (it restarted) is replaced before the announce is sent again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use crate::common::rng::Rng;
use crate::hash::Hash20;
use crate::tracker::machine::UNKNOWN_CONNECTION_ID;
use crate::wire::udp::{AnnounceRequest, Event, Request, Response};

/// First retry after this long, doubling per attempt up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(4);
/// BEP 15: a client may use a connection id for one minute.
const CONNECTION_ID_LIFE: Duration = Duration::from_secs(60);

/// What to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: Hash20,
    /// Bytes still missing: zero for a seeder.
    pub left: u64,
    pub event: Event,
    /// Port peers can reach us on; zero for a leecher that serves nothing.
    pub port: u16,
    pub num_want: i32,
}

/// What the client learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An announce was answered.
    Peers { info_hash: Hash20, peers: Vec<SocketAddr>, interval: Duration, seeders: u32, leechers: u32 },
    /// A new connection id after a rejected or unanswered request: the
    /// tracker may have restarted and lost its soft state.
    Reconnected,
    /// The tracker refused an announce for another reason.
    Refused { info_hash: Hash20, message: String },
    /// A request went unanswered; it is being retried.
    Timeout,
}

enum ConnState {
    None,
    Connecting { transaction_id: u32, deadline: Instant, attempt: u32 },
    Connected { id: u64, since: Instant },
}

struct InFlight {
    transaction_id: u32,
    announce: Announce,
    deadline: Instant,
}

pub struct Announcer {
    tracker: SocketAddr,
    peer_id: [u8; 20],
    key: u32,
    rng: Rng,
    conn: ConnState,
    /// Set after a failure so the next connection id is reported as `Reconnected`.
    recovering: bool,
    waiting: VecDeque<Announce>,
    in_flight: Vec<InFlight>,
    transmit: VecDeque<Vec<u8>>,
    replies: VecDeque<Reply>,
}

impl Announcer {
    pub fn new(tracker: SocketAddr, seed: u64) -> Announcer {
        let mut rng = Rng::new(seed);
        let mut peer_id = *b"-LMK010-000000000000";
        rng.fill(&mut peer_id[8..]);
        for b in &mut peer_id[8..] {
            *b = b'0' + *b % 10;
        }
        let key = rng.next_u32();
        Announcer {
            tracker,
            peer_id,
            key,
            rng,
            conn: ConnState::None,
            recovering: false,
            waiting: VecDeque::new(),
            in_flight: Vec::new(),
            transmit: VecDeque::new(),
            replies: VecDeque::new(),
        }
    }

    pub fn tracker(&self) -> SocketAddr {
        self.tracker
    }

    /// Queues an announce; it is sent once a connection id is at hand.
    /// A newer announce for the same hash replaces one not yet answered.
    pub fn announce(&mut self, now: Instant, announce: Announce) {
        self.waiting.retain(|a| a.info_hash != announce.info_hash);
        self.in_flight.retain(|f| f.announce.info_hash != announce.info_hash);
        self.waiting.push_back(announce);
        self.pump(now);
    }

    /// True while announces wait for an answer.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || !self.in_flight.is_empty()
    }

    /// A datagram from the tracker's address.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        let response = match Response::decode(data, self.tracker.is_ipv6()) {
            Ok(r) => r,
            Err(e) => {
                debug!("tracker {}: bad reply: {e}", self.tracker);
                return;
            }
        };
        let tx = response.transaction_id();
        match (&self.conn, response) {
            (ConnState::Connecting { transaction_id, .. }, Response::Connect { connection_id, .. })
                if *transaction_id == tx =>
            {
                self.conn = ConnState::Connected { id: connection_id, since: now };
                if std::mem::take(&mut self.recovering) {
                    self.replies.push_back(Reply::Reconnected);
                }
                self.pump(now);
            }
            (_, Response::Announce { peers, interval, seeders, leechers, .. }) => {
                let Some(done) = self.take_in_flight(tx) else { return };
                self.replies.push_back(Reply::Peers {
                    info_hash: done.announce.info_hash,
                    peers,
                    interval: Duration::from_secs(interval.clamp(1, 3600).into()),
                    seeders,
                    leechers,
                });
            }
            (_, Response::Error { message, .. }) => {
                let Some(failed) = self.take_in_flight(tx) else { return };
                if message == UNKNOWN_CONNECTION_ID {
                    debug!("tracker {}: connection id rejected; reconnecting", self.tracker);
                    // Several announces fail together after a restart: one reconnect serves all.
                    if matches!(self.conn, ConnState::Connected { .. }) {
                        self.conn = ConnState::None;
                    }
                    self.recovering = true;
                    self.waiting.push_front(failed.announce);
                    self.pump(now);
                } else {
                    self.replies.push_back(Reply::Refused { info_hash: failed.announce.info_hash, message });
                }
            }
            _ => debug!("tracker {}: unexpected reply to transaction {tx}", self.tracker),
        }
    }

    /// Retries whatever went unanswered. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let ConnState::Connecting { deadline, attempt, .. } = self.conn {
            if now >= deadline {
                self.replies.push_back(Reply::Timeout);
                self.recovering = true;
                self.send_connect(now, attempt + 1);
            }
        }
        let (expired, waiting): (Vec<InFlight>, Vec<InFlight>) =
            std::mem::take(&mut self.in_flight).into_iter().partition(|f| now >= f.deadline);
        self.in_flight = waiting;
        if !expired.is_empty() {
            self.replies.push_back(Reply::Timeout);
            // An unanswered announce may mean a lost connection id: start over.
            if matches!(self.conn, ConnState::Connected { .. }) {
                self.conn = ConnState::None;
            }
            self.recovering = true;
            for f in expired.into_iter().rev() {
                self.waiting.push_front(f.announce);
            }
        }
        self.pump(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let connecting = match self.conn {
            ConnState::Connecting { deadline, .. } => Some(deadline),
            _ => None,
        };
        self.in_flight.iter().map(|f| f.deadline).chain(connecting).min()
    }

    /// The next datagram to send to [`Announcer::tracker`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_reply(&mut self) -> Option<Reply> {
        self.replies.pop_front()
    }

    fn take_in_flight(&mut self, tx: u32) -> Option<InFlight> {
        let pos = self.in_flight.iter().position(|f| f.transaction_id == tx)?;
        Some(self.in_flight.swap_remove(pos))
    }

    /// Sends what can be sent: a connect if needed, else every waiting announce.
    fn pump(&mut self, now: Instant) {
        if self.waiting.is_empty() {
            return;
        }
        match self.conn {
            ConnState::Connected { since, .. } if now.saturating_duration_since(since) >= CONNECTION_ID_LIFE => {
                self.send_connect(now, 0)
            }
            ConnState::None => self.send_connect(now, 0),
            _ => {}
        }
        let ConnState::Connected { id, .. } = self.conn else { return };
        while let Some(announce) = self.waiting.pop_front() {
            let transaction_id = self.rng.next_u32();
            let request = Request::Announce(AnnounceRequest {
                connection_id: id,
                transaction_id,
                info_hash: announce.info_hash,
                peer_id: self.peer_id,
                downloaded: 0,
                left: announce.left,
                uploaded: 0,
                event: announce.event,
                ip: std::net::Ipv4Addr::UNSPECIFIED,
                key: self.key,
                num_want: announce.num_want,
                port: announce.port,
            });
            let mut bytes = Vec::with_capacity(100);
            request.encode(&mut bytes);
            self.transmit.push_back(bytes);
            self.in_flight.push(InFlight { transaction_id, announce, deadline: now + backoff(0) });
        }
    }

    fn send_connect(&mut self, now: Instant, attempt: u32) {
        let transaction_id = self.rng.next_u32();
        let mut bytes = Vec::with_capacity(16);
        Request::Connect { transaction_id }.encode(&mut bytes);
        self.transmit.push_back(bytes);
        self.conn = ConnState::Connecting { transaction_id, deadline: now + backoff(attempt), attempt };
    }
}

fn backoff(attempt: u32) -> Duration {
    crate::common::backoff(FIRST_RETRY, attempt, MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::machine::{Config, Tracker};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn seeder_announce(hash: Hash20) -> Announce {
        Announce { info_hash: hash, left: 0, event: Event::Started, port: 7000, num_want: 0 }
    }

    /// Delivers every pending datagram to the tracker and its answer back.
    fn exchange(client: &mut Announcer, tracker: &mut Tracker, now: Instant) {
        let mut out = Vec::new();
        while let Some(dgram) = client.poll_transmit() {
            if tracker.handle_datagram(now, addr(5000), &dgram, &mut out) {
                client.handle_datagram(now, &out);
            }
        }
    }

    fn new_tracker(t0: Instant, seed: u64) -> Tracker {
        Tracker::new(Config { seed, ..Config::default() }, t0)
    }

    #[test]
    fn connect_then_announce() {
        let t0 = Instant::now();
        let mut tracker = new_tracker(t0, 1);
        let mut c = Announcer::new(addr(6969), 1);
        let h = Hash20::of(b"f");
        c.announce(t0, seeder_announce(h));
        exchange(&mut c, &mut tracker, t0);
        exchange(&mut c, &mut tracker, t0);
        match c.poll_reply() {
            Some(Reply::Peers { info_hash, interval, seeders: 1, .. }) => {
                assert_eq!(info_hash, h);
                assert_eq!(interval, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert!(!c.busy());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn tracker_restart_reconnects_and_reports() {
        let t0 = Instant::now();
        let mut tracker = new_tracker(t0, 1);
        let mut c = Announcer::new(addr(6969), 1);
        let h = Hash20::of(b"f");
        c.announce(t0, seeder_announce(h));
        exchange(&mut c, &mut tracker, t0);
        exchange(&mut c, &mut tracker, t0);
        assert!(matches!(c.poll_reply(), Some(Reply::Peers { .. })));
        // The tracker restarts: a new secret, our id is now unknown.
        let mut restarted = new_tracker(t0, 2);
        let t1 = t0 + Duration::from_secs(10);
        c.announce(t1, Announce { event: Event::None, ..seeder_announce(h) });
        for _ in 0..3 {
            exchange(&mut c, &mut restarted, t1);
        }
        assert_eq!(c.poll_reply(), Some(Reply::Reconnected));
        assert!(matches!(c.poll_reply(), Some(Reply::Peers { seeders: 1, .. })));
    }

    #[test]
    fn many_rejected_announces_share_one_reconnect() {
        let t0 = Instant::now();
        let mut tracker = new_tracker(t0, 1);
        let mut c = Announcer::new(addr(6969), 1);
        let hashes = [Hash20::of(b"a"), Hash20::of(b"b"), Hash20::of(b"c")];
        for h in hashes {
            c.announce(t0, seeder_announce(h));
        }
        exchange(&mut c, &mut tracker, t0);
        exchange(&mut c, &mut tracker, t0);
        let mut restarted = new_tracker(t0, 2);
        for h in hashes {
            c.announce(t0, seeder_announce(h));
        }
        // All three reach the restarted tracker and are rejected.
        let batch: Vec<Vec<u8>> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert_eq!(batch.len(), 3);
        let mut out = Vec::new();
        for d in batch {
            assert!(restarted.handle_datagram(t0, addr(5000), &d, &mut out));
            c.handle_datagram(t0, &out);
        }
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| c.poll_transmit()).collect();
        let connects = sent.iter().filter(|d| matches!(Request::decode(d), Ok(Request::Connect { .. }))).count();
        assert_eq!(connects, 1, "one reconnect for three rejected announces");
    }

    #[test]
    fn unanswered_requests_retry_with_backoff() {
        let t0 = Instant::now();
        let mut c = Announcer::new(addr(6969), 1);
        c.announce(t0, seeder_announce(Hash20::of(b"f")));
        assert!(c.poll_transmit().is_some(), "connect sent");
        let first = c.next_deadline().unwrap();
        assert_eq!(first, t0 + FIRST_RETRY);
        c.handle_timeout(first - Duration::from_millis(1));
        assert!(c.poll_transmit().is_none(), "early tick is a no-op");
        c.handle_timeout(first);
        assert!(c.poll_transmit().is_some(), "connect resent");
        assert_eq!(c.poll_reply(), Some(Reply::Timeout));
        assert_eq!(c.next_deadline(), Some(first + FIRST_RETRY * 2));
        // Once the tracker answers, the announce goes out and recovery is reported.
        let mut tracker = new_tracker(t0, 1);
        let t1 = first + Duration::from_millis(10);
        exchange(&mut c, &mut tracker, t1); // nothing pending: the resent connect was taken above
        c.handle_timeout(first + FIRST_RETRY * 2);
        exchange(&mut c, &mut tracker, t1);
        exchange(&mut c, &mut tracker, t1);
        assert_eq!(c.poll_reply(), Some(Reply::Timeout));
        assert_eq!(c.poll_reply(), Some(Reply::Reconnected));
        assert!(matches!(c.poll_reply(), Some(Reply::Peers { .. })));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(0), FIRST_RETRY);
        assert_eq!(backoff(1), FIRST_RETRY * 2);
        assert_eq!(backoff(30), MAX_RETRY);
    }
}

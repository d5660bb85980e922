//! The tracker's sans-IO core: datagrams and catalog requests in, replies
//! out, expiry driven by the time passed in. No sockets, no clock.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info};

use super::catalog::Catalog;
use super::swarms::{Change, Millis, Swarms};
use crate::common::fmt;
use crate::common::rng::Rng;
use crate::hash::Hash20;
use crate::wire::catalog as cat;
use crate::wire::udp::{self, Event, Request, RequestError, Response, ScrapeStats};

/// Connection ids are valid for the epoch they were made in and the next.
const EPOCH: Duration = Duration::from_secs(120);
/// Peers returned when a client asks for a default amount (num_want <= 0).
const DEFAULT_NUM_WANT: usize = 50;
/// The error a client gets for a connection id we did not issue (or no longer
/// accept): the cue for an LMK seeder to reconnect and re-publish.
pub const UNKNOWN_CONNECTION_ID: &str = "unknown connection id";

#[derive(Debug, Clone)]
pub struct Config {
    /// Announce interval told to clients.
    pub interval: Duration,
    /// A peer not heard from for this long is dropped.
    pub expiry: Duration,
    /// Seeds the connection-id secret and the peer shuffles.
    pub seed: u64,
}

/// Counters, printed in the status line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub datagrams: u64,
    /// Datagrams dropped without an answer (malformed before their ids).
    pub dropped: u64,
    pub errors_sent: u64,
    pub connects: u64,
    pub announces: u64,
    pub scrapes: u64,
    pub catalog_requests: u64,
    pub catalog_refused: u64,
    pub joins: u64,
    pub leaves: u64,
    pub expiries: u64,
}

pub struct Tracker {
    config: Config,
    start: Instant,
    secret: [u8; 16],
    rng: Rng,
    swarms: Swarms,
    catalog: Catalog,
    stats: Stats,
    /// Reused for every announce answer: no allocation per datagram.
    picked: Vec<SocketAddr>,
    next_sweep: Instant,
    changed: bool,
}

impl Tracker {
    pub fn new(config: Config, now: Instant) -> Tracker {
        let mut rng = Rng::new(config.seed);
        let mut secret = [0u8; 16];
        rng.fill(&mut secret);
        let next_sweep = now + sweep_period(&config);
        Tracker {
            config,
            start: now,
            secret,
            rng,
            swarms: Swarms::default(),
            catalog: Catalog::default(),
            stats: Stats::default(),
            picked: Vec::with_capacity(udp::MAX_PEERS),
            next_sweep,
            changed: true,
        }
    }

    /// Receive-execute-send: decodes one datagram, acts on it and writes the
    /// reply into `out`. Returns false when the datagram earns silence.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        self.stats.datagrams += 1;
        // A v4-mapped source (dual-stack socket) is an IPv4 client.
        let ipv6 = matches!(from.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none());
        let response = match Request::decode(data) {
            Err(RequestError::Unsendable(e)) => {
                self.stats.dropped += 1;
                debug!("udp {from}: dropped: {e}");
                return false;
            }
            Err(RequestError::Sendable { transaction_id, error, .. }) => {
                debug!("udp {from}: bad request: {error}");
                self.error(transaction_id, &error.to_string(), data.len())
            }
            Ok(Request::Connect { transaction_id }) => {
                self.stats.connects += 1;
                Response::Connect { transaction_id, connection_id: self.connection_id(from, self.epoch(now)) }
            }
            Ok(req) if !self.valid_connection_id(from, now, connection_id(&req)) => {
                debug!("udp {from}: refused: {UNKNOWN_CONNECTION_ID}");
                self.error(req.transaction_id(), UNKNOWN_CONNECTION_ID, data.len())
            }
            Ok(Request::Announce(a)) => self.announce(now, from, &a),
            Ok(Request::Scrape(s)) => {
                self.stats.scrapes += 1;
                let stats = s
                    .info_hashes
                    .iter()
                    .map(|h| {
                        self.swarms.get(h).map_or(ScrapeStats::default(), |sw| ScrapeStats {
                            seeders: sw.seeders(),
                            completed: sw.completed,
                            leechers: sw.leechers(),
                        })
                    })
                    .collect();
                Response::Scrape { transaction_id: s.transaction_id, stats }
            }
        };
        response.encode(out, ipv6);
        if let Response::Announce { peers, .. } = response {
            self.picked = peers; // keep the buffer for the next announce
        }
        true
    }

    /// An error reply no longer than the request it answers, so a spoofed
    /// source cannot use us to amplify traffic.
    fn error(&mut self, transaction_id: u32, message: &str, request_len: usize) -> Response {
        self.stats.errors_sent += 1;
        let mut end = message.len().min(request_len.saturating_sub(8));
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Response::Error { transaction_id, message: message.get(..end).unwrap_or("").to_string() }
    }

    fn announce(&mut self, now: Instant, from: SocketAddr, a: &udp::AnnounceRequest) -> Response {
        self.stats.announces += 1;
        let seeder = a.left == 0;
        let peer = SocketAddr::new(from.ip(), a.port);
        let want = match usize::try_from(a.num_want) {
            Ok(0) | Err(_) => DEFAULT_NUM_WANT,
            Ok(n) => n.min(udp::MAX_PEERS),
        };
        let millis = self.millis(now);
        let mut picked = std::mem::take(&mut self.picked);
        let rng = &mut self.rng;
        let (change, seeders, leechers) = self.swarms.with(a.info_hash, |swarm| {
            if a.event == Event::Completed {
                swarm.completed = swarm.completed.saturating_add(1);
            }
            let change = match a.event {
                Event::Stopped => swarm.remove(peer),
                _ if a.port == 0 => Change::Unchanged,
                _ => swarm.upsert(peer, seeder, millis),
            };
            swarm.pick(peer, seeder, want, rng, &mut picked);
            (change, swarm.seeders(), swarm.leechers())
        });
        match change {
            Change::Joined => {
                self.stats.joins += 1;
                self.changed = true;
                info!("{} {peer} joined {}", role(seeder), self.describe(&a.info_hash));
            }
            Change::Left => {
                self.stats.leaves += 1;
                self.changed = true;
                info!("{peer} left {}", self.describe(&a.info_hash));
            }
            Change::Refreshed | Change::Unchanged => {}
        }
        Response::Announce {
            transaction_id: a.transaction_id,
            interval: self.config.interval.as_secs().try_into().unwrap_or(u32::MAX),
            leechers,
            seeders,
            peers: picked,
        }
    }

    /// Answers one catalog request.
    pub fn handle_catalog(&mut self, now: Instant, request: cat::Request) -> cat::Response {
        self.stats.catalog_requests += 1;
        let response = match request {
            cat::Request::Publish(meta) => {
                let name = meta.name().to_string();
                match self.catalog.publish(now, meta) {
                    Ok(id) => {
                        if self.swarms.seeders(&id) == 0 {
                            self.changed = true;
                        }
                        debug!("published {name} as {}", id.short());
                        cat::Response::Published(id)
                    }
                    Err(refusal) => refusal,
                }
            }
            cat::Request::List => cat::Response::List(self.catalog.list(|id| self.swarms.seeders(id))),
            cat::Request::GetMeta(selector) => self.catalog.get(&selector),
        };
        if let cat::Response::Error { message, .. } = &response {
            self.stats.catalog_refused += 1;
            debug!("catalog request refused: {message}");
        }
        response
    }

    /// Drops peers not heard from within the expiry time, then catalog
    /// entries that have had no seeder for as long. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + sweep_period(&self.config);
        let expiry_ms = self.config.expiry.as_millis().try_into().unwrap_or(u32::MAX >> 1);
        let mut expired = Vec::new();
        self.swarms.expire(self.millis(now), expiry_ms, |hash, n| expired.push((*hash, n)));
        for (hash, n) in expired {
            self.stats.expiries += n as u64;
            self.changed = true;
            info!("{n} peer(s) of {} expired", self.describe(&hash));
        }
        let Some(cutoff) = now.checked_sub(self.config.expiry) else { return };
        let swarms = &self.swarms;
        for name in self.catalog.expire(now, cutoff, |id| swarms.seeders(id) > 0) {
            self.changed = true;
            info!("{name} left the catalog: no seeder for {}", fmt::duration(self.config.expiry));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_sweep)
    }

    /// True when something the status table shows has changed since it was last taken.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// True once after anything the status table shows has changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::replace(&mut self.changed, false)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The status table: counters, then one row per catalog file.
    pub fn status(&self) -> String {
        let s = &self.stats;
        let mut out = format!(
            "tracker: {} files, {} swarms, {} peers | joins {} leaves {} expired {} | udp {} (dropped {}, errors {}) catalog {} (refused {})\n",
            self.catalog.len(),
            self.swarms.len(),
            self.swarms.peer_count(),
            s.joins,
            s.leaves,
            s.expiries,
            s.datagrams,
            s.dropped,
            s.errors_sent,
            s.catalog_requests,
            s.catalog_refused,
        );
        let list = self.catalog.list(|id| self.swarms.seeders(id));
        if !list.is_empty() {
            let _ = writeln!(out, "  {:<32} {:>10} {:>7}  CONTENT ID", "NAME", "SIZE", "SEEDERS");
        }
        for e in list.iter().take(20) {
            let _ = writeln!(out, "  {:<32} {:>10} {:>7}  {}", e.name, fmt::bytes(e.size), e.seeders, e.id.short());
        }
        if list.len() > 20 {
            let _ = writeln!(out, "  ... and {} more", list.len() - 20);
        }
        out
    }

    fn describe(&self, hash: &Hash20) -> String {
        match self.catalog.meta(hash) {
            Some(meta) => format!("{} ({})", meta.name(), hash.short()),
            None => hash.short(),
        }
    }

    /// The swarm tables' clock: milliseconds since start, wrapping.
    fn millis(&self, now: Instant) -> Millis {
        now.saturating_duration_since(self.start).as_millis() as Millis
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / EPOCH.as_secs()
    }

    /// Keyed hash of the client address and a coarse time: stateless, and
    /// a spoofed source cannot learn an id it could use.
    fn connection_id(&self, from: SocketAddr, epoch: u64) -> u64 {
        let ip = match from.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let h = Hash20::of_parts(&[&self.secret, &ip, &from.port().to_be_bytes(), &epoch.to_be_bytes()]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.0[..8]);
        u64::from_be_bytes(id)
    }

    fn valid_connection_id(&self, from: SocketAddr, now: Instant, id: u64) -> bool {
        let epoch = self.epoch(now);
        id == self.connection_id(from, epoch) || (epoch > 0 && id == self.connection_id(from, epoch - 1))
    }
}

fn connection_id(req: &Request) -> u64 {
    match req {
        Request::Connect { .. } => udp::PROTOCOL_ID,
        Request::Announce(a) => a.connection_id,
        Request::Scrape(s) => s.connection_id,
    }
}

/// Expiry is checked this often: a quarter of the expiry time, at most a second.
fn sweep_period(config: &Config) -> Duration {
    (config.expiry / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn role(seeder: bool) -> &'static str {
    if seeder {
        "seeder"
    } else {
        "leecher"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{FileMeta, MIN_CHUNK};
    use crate::wire::udp::AnnounceRequest;
    use std::net::Ipv4Addr;

    const SEEDER: u64 = 0;

    fn tracker(t0: Instant) -> Tracker {
        Tracker::new(Config { interval: Duration::from_secs(10), expiry: Duration::from_secs(30), seed: 1 }, t0)
    }

    fn from(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ask(t: &mut Tracker, now: Instant, src: SocketAddr, req: Request) -> Option<Response> {
        let mut bytes = Vec::new();
        req.encode(&mut bytes);
        let mut out = Vec::new();
        t.handle_datagram(now, src, &bytes, &mut out).then(|| Response::decode(&out, false).unwrap())
    }

    fn connect(t: &mut Tracker, now: Instant, src: SocketAddr) -> u64 {
        match ask(t, now, src, Request::Connect { transaction_id: 9 }) {
            Some(Response::Connect { transaction_id: 9, connection_id }) => connection_id,
            other => panic!("{other:?}"),
        }
    }

    fn announce(conn: u64, hash: Hash20, left: u64, port: u16, event: Event) -> Request {
        Request::Announce(AnnounceRequest {
            connection_id: conn,
            transaction_id: 5,
            info_hash: hash,
            peer_id: [1; 20],
            downloaded: 0,
            left,
            uploaded: 0,
            event,
            ip: Ipv4Addr::UNSPECIFIED,
            key: 0,
            num_want: -1,
            port,
        })
    }

    fn peers(resp: Option<Response>) -> Vec<SocketAddr> {
        match resp {
            Some(Response::Announce { peers, .. }) => peers,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seeder_joins_and_leecher_sees_it() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        assert!(peers(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))).is_empty());
        let c2 = connect(&mut t, t0, from(2000));
        let got = peers(ask(&mut t, t0, from(2000), announce(c2, h, 100, 0, Event::Started)));
        assert_eq!(got, vec![from(7000)]);
        assert_eq!(t.stats().joins, 1, "a port-0 leecher is answered but not stored");
    }

    #[test]
    fn expiry_one_tick_before_and_at() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started));
        t.handle_timeout(t0 + Duration::from_secs(30) - Duration::from_millis(1));
        assert_eq!(t.swarms.seeders(&h), 1, "still alive just before expiry");
        t.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(t.swarms.seeders(&h), 0);
        assert_eq!(t.stats().expiries, 1);
    }

    #[test]
    fn heartbeat_keeps_peer_alive() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        for s in [0, 10, 20, 30, 40] {
            ask(&mut t, t0 + Duration::from_secs(s), from(1000), announce(c, h, SEEDER, 7000, Event::None));
            t.handle_timeout(t0 + Duration::from_secs(s + 5));
        }
        assert_eq!(t.swarms.seeders(&h), 1);
        assert_eq!(t.stats().expiries, 0);
    }

    #[test]
    fn stopped_removes() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Stopped));
        assert_eq!(t.swarms.seeders(&h), 0);
        assert_eq!(t.stats().leaves, 1);
    }

    #[test]
    fn connection_ids_bound_to_address_and_time() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        let wrong_src = ask(&mut t, t0, from(1001), announce(c, h, SEEDER, 1, Event::None));
        assert!(matches!(wrong_src, Some(Response::Error { ref message, .. }) if message == UNKNOWN_CONNECTION_ID));
        // Valid in the next epoch, not in the one after.
        let later = t0 + EPOCH + Duration::from_secs(1);
        assert!(matches!(
            ask(&mut t, later, from(1000), announce(c, h, SEEDER, 1, Event::None)),
            Some(Response::Announce { .. })
        ));
        let too_late = t0 + EPOCH * 2 + Duration::from_secs(1);
        assert!(matches!(
            ask(&mut t, too_late, from(1000), announce(c, h, SEEDER, 1, Event::None)),
            Some(Response::Error { .. })
        ));
        // Another tracker (a restart) does not accept our ids.
        let mut other = Tracker::new(Config { seed: 2, ..t.config.clone() }, t0);
        assert!(matches!(
            ask(&mut other, t0, from(1000), announce(c, h, SEEDER, 1, Event::None)),
            Some(Response::Error { .. })
        ));
    }

    #[test]
    fn garbage_is_silent_or_answered_small() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let mut out = Vec::new();
        assert!(!t.handle_datagram(t0, from(1), b"short", &mut out));
        assert!(!t.handle_datagram(t0, from(1), &[0u8; 3000], &mut out));
        assert_eq!(t.stats().dropped, 2);
        let mut bad = Vec::new();
        Request::Connect { transaction_id: 1 }.encode(&mut bad);
        bad[11] = 77; // unknown action after a valid header
        assert!(t.handle_datagram(t0, from(1), &bad, &mut out));
        assert!(out.len() <= bad.len(), "error reply {} bytes for a {}-byte request", out.len(), bad.len());
        let mut wrong_id = Vec::new();
        announce(12345, Hash20::of(b"x"), 0, 1, Event::None).encode(&mut wrong_id);
        assert!(t.handle_datagram(t0, from(1), &wrong_id, &mut out));
        assert!(out.len() <= wrong_id.len());
        let mut rng = Rng::new(5);
        let mut buf = [0u8; 200];
        for _ in 0..5000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            t.handle_datagram(t0, from(2), &buf[..n], &mut out);
        }
    }

    #[test]
    fn scrape_counts() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
        ask(&mut t, t0, from(1000), announce(c, h, 5, 7001, Event::Started));
        let req = Request::Scrape(udp::ScrapeRequest {
            connection_id: c,
            transaction_id: 3,
            info_hashes: vec![h, Hash20::of(b"none")],
        });
        match ask(&mut t, t0, from(1000), req) {
            Some(Response::Scrape { stats, .. }) => {
                assert_eq!(stats[0], ScrapeStats { seeders: 1, completed: 1, leechers: 1 });
                assert_eq!(stats[1], ScrapeStats::default());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn catalog_publish_list_expire() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
        let id = match t.handle_catalog(t0, cat::Request::Publish(meta.clone())) {
            cat::Response::Published(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(id, meta.content_id());
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, id, SEEDER, 7000, Event::Started));
        match t.handle_catalog(t0, cat::Request::List) {
            cat::Response::List(l) => assert_eq!((l.len(), l[0].seeders), (1, 1)),
            other => panic!("{other:?}"),
        }
        assert!(t.status().contains("f "));
        // The seeder stops; the file stays one expiry time, then goes.
        ask(&mut t, t0, from(1000), announce(c, id, SEEDER, 7000, Event::Stopped));
        t.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(t.catalog.len(), 1);
        t.handle_timeout(t0 + Duration::from_secs(31));
        assert_eq!(t.catalog.len(), 0);
    }
}

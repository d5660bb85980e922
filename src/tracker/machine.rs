//! The tracker's sans-IO core: datagrams and catalog requests in, replies
//! out, expiry driven by the time passed in. No sockets, no clock.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info};

use super::catalog::{Catalog, Gate, Policy, Source};
use super::swarms::{Change, Millis, Swarms};
pub use super::swarms::{Full, Limits};
use crate::common::fmt;
use crate::common::rng::Rng;
use crate::common::text::escape;
use crate::hash::Hash20;
use crate::meta::FileMeta;
use crate::wire::catalog as cat;
use crate::wire::udp::{self, Event, Request, RequestError, Response, ScrapeStats};

/// Connection ids are valid for the epoch they were made in and the next:
/// at least 2 minutes, as BEP 15 asks.
const EPOCH: Duration = Duration::from_secs(120);
/// Peer ids of LMK peers start so (src/announce.rs: `-LMK010-`); these keep
/// our interval, so they expire after `Config::expiry`.
const LMK_PEER_ID: &[u8] = b"-LMK";
/// Peers returned when a client asks for a default amount (num_want <= 0).
const DEFAULT_NUM_WANT: usize = 50;
/// The error a client gets for a connection id we did not issue (or no longer
/// accept): the cue for an LMK seeder to reconnect and re-publish.
pub const UNKNOWN_CONNECTION_ID: &str = "unknown connection id";
/// The error for an info hash the catalog does not list, under `catalog_only`.
pub const NOT_IN_CATALOG: &str = "info hash not in the catalog";

#[derive(Debug, Clone)]
pub struct Config {
    /// Announce interval told to clients.
    pub interval: Duration,
    /// An LMK peer not heard from for this long is dropped (and a catalog
    /// file without seeders): a dead seeder leaves the list quickly.
    pub expiry: Duration,
    /// Any other client not heard from for this long is dropped: real
    /// clients re-announce every 5-30 minutes whatever interval we tell them.
    pub foreign_expiry: Duration,
    /// Seeds the connection-id secret and the peer shuffles.
    pub seed: u64,
    pub limits: Limits,
    /// Refuse announces for info hashes the catalog does not list.
    pub catalog_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(10),
            expiry: Duration::from_secs(30),
            foreign_expiry: Duration::from_secs(45 * 60),
            seed: 0,
            limits: Limits::default(),
            catalog_only: false,
        }
    }
}

/// Counters, printed in the status line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub datagrams: u64,
    /// Datagrams dropped without an answer (malformed before their ids).
    pub dropped: u64,
    pub errors_sent: u64,
    /// Announces refused by a cap or by `catalog_only` (also in `errors_sent`).
    pub refused: u64,
    pub connects: u64,
    pub announces: u64,
    pub scrapes: u64,
    pub catalog_requests: u64,
    pub catalog_refused: u64,
    /// Publishes refused for a missing or wrong MAC, or a stale challenge.
    pub unauthorized: u64,
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
    gate: Gate,
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
        let swarms = Swarms::new(config.limits);
        Tracker {
            config,
            start: now,
            secret,
            rng,
            swarms,
            catalog: Catalog::default(),
            gate: Gate::new(Policy::default(), secret, now),
            stats: Stats::default(),
            picked: Vec::with_capacity(udp::MAX_PEERS),
            next_sweep,
            changed: true,
        }
    }

    /// Who may publish what (by default: 1000 files per address, no key).
    pub fn with_catalog(mut self, policy: Policy) -> Tracker {
        self.gate = Gate::new(policy, self.secret, self.start);
        self
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
                Response::Connect { transaction_id, connection_id: self.connection_id(from.ip(), self.epoch(now)) }
            }
            Ok(req) if !self.valid_connection_id(from.ip(), now, connection_id(&req)) => {
                debug!("udp {from}: refused: {UNKNOWN_CONNECTION_ID}");
                self.error(req.transaction_id(), UNKNOWN_CONNECTION_ID, data.len())
            }
            Ok(Request::Announce(a)) => self.announce(now, from, &a, data.len()),
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

    fn announce(&mut self, now: Instant, from: SocketAddr, a: &udp::AnnounceRequest, len: usize) -> Response {
        self.stats.announces += 1;
        let seeder = a.left == 0;
        let peer = SocketAddr::new(from.ip(), a.port);
        let hash = a.info_hash;
        let change = match a.event {
            Event::Stopped => Ok(self.swarms.remove(&hash, peer)),
            _ if self.config.catalog_only && self.catalog.meta(&hash).is_none() => Err(NOT_IN_CATALOG),
            // A peer without a port is answered but not stored.
            _ if a.port == 0 => Ok(Change::Unchanged),
            event => {
                let until = self.millis(now).wrapping_add(self.expiry_ms(&a.peer_id));
                let completed = event == Event::Completed;
                self.swarms.upsert(hash, peer, seeder, completed, until).map_err(Full::message)
            }
        };
        match change {
            Err(message) => {
                self.stats.refused += 1;
                debug!("udp {from}: announce for {} refused: {message}", hash.short());
                return self.error(a.transaction_id, message, len);
            }
            Ok(Change::Joined) => {
                self.stats.joins += 1;
                self.changed = true;
                info!("{} {peer} joined {}", role(seeder), self.describe(&hash));
            }
            Ok(Change::Left) => {
                self.stats.leaves += 1;
                self.changed = true;
                info!("{peer} left {}", self.describe(&hash));
            }
            Ok(Change::Refreshed | Change::Unchanged) => {}
        }
        let want = match usize::try_from(a.num_want) {
            Ok(0) | Err(_) => DEFAULT_NUM_WANT,
            Ok(n) => n.min(udp::MAX_PEERS),
        };
        let mut peers = std::mem::take(&mut self.picked);
        let (seeders, leechers) = match self.swarms.get(&hash) {
            Some(swarm) => {
                swarm.pick(peer, seeder, want, &mut self.rng, &mut peers);
                (swarm.seeders(), swarm.leechers())
            }
            None => {
                peers.clear();
                (0, 0)
            }
        };
        Response::Announce {
            transaction_id: a.transaction_id,
            interval: self.config.interval.as_secs().try_into().unwrap_or(u32::MAX),
            leechers,
            seeders,
            peers,
        }
    }

    /// How long a peer stays listed after an announce: short for LMK peers,
    /// which announce at our interval, long for everyone else.
    fn expiry_ms(&self, peer_id: &[u8; 20]) -> Millis {
        let expiry = if peer_id.starts_with(LMK_PEER_ID) { self.config.expiry } else { self.config.foreign_expiry };
        expiry.as_millis().try_into().unwrap_or(MAX_EXPIRY_MS)
    }

    /// Answers one catalog request from a client at `from`.
    pub fn handle_catalog(&mut self, now: Instant, from: IpAddr, request: cat::Request) -> cat::Response {
        self.stats.catalog_requests += 1;
        let response = match request {
            cat::Request::Publish(meta) => self.publish(now, from, None, meta),
            cat::Request::SignedPublish { nonce, mac, meta } => self.publish(now, from, Some((nonce, mac)), meta),
            cat::Request::Challenge => cat::Response::Challenge(self.gate.challenge(now, from)),
            cat::Request::List => cat::Response::List(self.catalog.list(|id| self.swarms.seeders(id))),
            cat::Request::GetMeta(selector) => self.catalog.get(&selector),
        };
        if let cat::Response::Error { message, .. } = &response {
            self.stats.catalog_refused += 1;
            debug!("catalog request from {from} refused: {message}");
        }
        response
    }

    fn publish(
        &mut self,
        now: Instant,
        from: IpAddr,
        signature: Option<(cat::Nonce, cat::Mac)>,
        meta: FileMeta,
    ) -> cat::Response {
        if let Err(why) = self.gate.admit(now, from, signature.as_ref(), &meta) {
            self.stats.unauthorized += 1;
            return cat::Response::Error { code: cat::ErrorCode::Unauthorized, message: why.into() };
        }
        let name = meta.name().to_string();
        match self.catalog.publish(now, Source::of(from), self.gate.files_per_ip(), meta) {
            Ok(id) => {
                if self.swarms.seeders(&id) == 0 {
                    self.changed = true;
                }
                debug!("{from} published {} as {}", escape(&name), id.short());
                cat::Response::Published(id)
            }
            Err(refusal) => refusal,
        }
    }

    /// Drops peers not heard from within the expiry time, then catalog
    /// entries that have had no seeder for as long. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + sweep_period(&self.config);
        let mut expired = Vec::new();
        self.swarms.expire(self.millis(now), |hash, n| expired.push((*hash, n)));
        for (hash, n) in expired {
            self.stats.expiries += n as u64;
            self.changed = true;
            info!("{n} peer(s) of {} expired", self.describe(&hash));
        }
        let Some(cutoff) = now.checked_sub(self.config.expiry) else { return };
        let swarms = &self.swarms;
        for name in self.catalog.expire(now, cutoff, |id| swarms.seeders(id) > 0) {
            self.changed = true;
            info!("{} left the catalog: no seeder for {}", escape(&name), fmt::duration(self.config.expiry));
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
            "tracker: {} files, {} swarms, {} peers from {} addresses | joins {} leaves {} expired {} | udp {} (dropped {}, errors {}, refused {}) catalog {} (refused {}, unauthorized {})\n",
            self.catalog.len(),
            self.swarms.len(),
            self.swarms.peer_count(),
            self.swarms.addresses(),
            s.joins,
            s.leaves,
            s.expiries,
            s.datagrams,
            s.dropped,
            s.errors_sent,
            s.refused,
            s.catalog_requests,
            s.catalog_refused,
            s.unauthorized,
        );
        let list = self.catalog.list(|id| self.swarms.seeders(id));
        if !list.is_empty() {
            let _ = writeln!(out, "  {:<32} {:>10} {:>7}  CONTENT ID", "NAME", "SIZE", "SEEDERS");
        }
        for e in list.iter().take(20) {
            let name = escape(&e.name).to_string();
            let _ = writeln!(out, "  {name:<32} {:>10} {:>7}  {}", fmt::bytes(e.size), e.seeders, e.id.short());
        }
        if list.len() > 20 {
            let _ = writeln!(out, "  ... and {} more", list.len() - 20);
        }
        out
    }

    fn describe(&self, hash: &Hash20) -> String {
        match self.catalog.meta(hash) {
            Some(meta) => format!("{} ({})", escape(meta.name()), hash.short()),
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

    /// Keyed hash of the client's IP address and a coarse time: stateless,
    /// and a spoofed source cannot learn an id it could use. Not the port:
    /// BEP 15 ties nothing to it, and libtorrent uses one id from all its sockets.
    fn connection_id(&self, ip: IpAddr, epoch: u64) -> u64 {
        let ip = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let h = Hash20::of_parts(&[&self.secret, &ip, &epoch.to_be_bytes()]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.0[..8]);
        u64::from_be_bytes(id)
    }

    fn valid_connection_id(&self, ip: IpAddr, now: Instant, id: u64) -> bool {
        let epoch = self.epoch(now);
        id == self.connection_id(ip, epoch) || (epoch > 0 && id == self.connection_id(ip, epoch - 1))
    }
}

fn connection_id(req: &Request) -> u64 {
    match req {
        Request::Connect { .. } => udp::PROTOCOL_ID,
        Request::Announce(a) => a.connection_id,
        Request::Scrape(s) => s.connection_id,
    }
}

/// Longest expiry the swarm clock can carry (its deadlines wrap at 2^32 ms).
pub const MAX_EXPIRY_MS: u32 = u32::MAX >> 2;

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
    use crate::common::publish_key::PublishKey;
    use crate::meta::MIN_CHUNK;
    use crate::wire::udp::AnnounceRequest;
    use std::net::Ipv4Addr;

    const SEEDER: u64 = 0;
    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn tracker(t0: Instant) -> Tracker {
        Tracker::new(Config { seed: 1, ..Config::default() }, t0)
    }

    fn from_ip(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
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
            peer_id: *b"-LMK010-abcdefghijkl",
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

    /// The same announce from a client that is not LMK.
    fn foreign(req: Request) -> Request {
        match req {
            Request::Announce(a) => Request::Announce(AnnounceRequest { peer_id: *b"-lt2090-abcdefghijkl", ..a }),
            other => other,
        }
    }

    fn refused(resp: Option<Response>) -> String {
        match resp {
            Some(Response::Error { message, .. }) => message,
            other => panic!("expected an error reply, got {other:?}"),
        }
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
    fn connection_ids_bound_to_ip_and_time() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        let other_port = ask(&mut t, t0, from(1001), announce(c, h, SEEDER, 1, Event::None));
        assert!(matches!(other_port, Some(Response::Announce { .. })), "the port is not part of the id");
        let mapped = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), 5);
        assert!(matches!(
            ask(&mut t, t0, mapped, announce(c, h, SEEDER, 1, Event::None)),
            Some(Response::Announce { .. })
        ));
        let other_ip = ask(&mut t, t0, from_ip([127, 0, 0, 2], 1000), announce(c, h, SEEDER, 1, Event::None));
        assert_eq!(refused(other_ip), UNKNOWN_CONNECTION_ID);
        // BEP 15: accepted for 2 minutes at least; one tick before the end of the next epoch, not at it.
        let last = t0 + EPOCH * 2 - Duration::from_millis(1);
        assert!(matches!(
            ask(&mut t, last, from(1000), announce(c, h, SEEDER, 1, Event::None)),
            Some(Response::Announce { .. })
        ));
        assert_eq!(
            refused(ask(&mut t, t0 + EPOCH * 2, from(1000), announce(c, h, SEEDER, 1, Event::None))),
            UNKNOWN_CONNECTION_ID
        );
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
        let id = match t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta.clone())) {
            cat::Response::Published(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(id, meta.content_id());
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, id, SEEDER, 7000, Event::Started));
        match t.handle_catalog(t0, LOCAL, cat::Request::List) {
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

    fn keyed(t0: Instant, key: &[u8]) -> Tracker {
        let policy = Policy { files_per_ip: 2, publish_key: Some(PublishKey::from_bytes(key).unwrap()) };
        tracker(t0).with_catalog(policy)
    }

    fn challenge(t: &mut Tracker, now: Instant, ip: IpAddr) -> cat::Nonce {
        match t.handle_catalog(now, ip, cat::Request::Challenge) {
            cat::Response::Challenge(nonce) => nonce,
            other => panic!("{other:?}"),
        }
    }

    fn code(response: cat::Response) -> Option<cat::ErrorCode> {
        match response {
            cat::Response::Error { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn with_a_key_only_signed_publishes_are_taken_and_refusals_counted() {
        let t0 = Instant::now();
        let key = PublishKey::from_bytes(b"sixteen byte key").unwrap();
        let mut t = keyed(t0, b"sixteen byte key");
        let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
        let nonce = challenge(&mut t, t0, LOCAL);
        let signed = cat::Request::SignedPublish { nonce, mac: key.sign(&nonce, &meta), meta: meta.clone() };
        assert_eq!(t.handle_catalog(t0, LOCAL, signed), cat::Response::Published(meta.content_id()));
        let unauthorized = Some(cat::ErrorCode::Unauthorized);
        assert_eq!(code(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta.clone()))), unauthorized);
        let forged = cat::Request::SignedPublish { nonce, mac: [0; 20], meta };
        assert_eq!(code(t.handle_catalog(t0, LOCAL, forged)), unauthorized);
        assert_eq!((t.stats().unauthorized, t.stats().catalog_refused), (2, 2));
        assert!(t.status().contains("unauthorized 2"), "{}", t.status());
    }

    #[test]
    fn without_a_key_signed_and_plain_publishes_both_count_against_the_quota() {
        let t0 = Instant::now();
        let mut t = tracker(t0).with_catalog(Policy { files_per_ip: 2, publish_key: None });
        let meta = |n: u8| FileMeta::new(format!("f{n}"), 5, MIN_CHUNK, vec![Hash20::of(&[n])]).unwrap();
        let signed = cat::Request::SignedPublish { nonce: [0; 16], mac: [0; 20], meta: meta(1) };
        assert_eq!(code(t.handle_catalog(t0, LOCAL, signed)), None, "no key: the MAC is not looked at");
        assert_eq!(code(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta(2)))), None);
        let over = t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta(3)));
        assert!(
            matches!(&over, cat::Response::Error { code: cat::ErrorCode::Full, message } if message.contains("quota"))
        );
        let other = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(code(t.handle_catalog(t0, other, cat::Request::Publish(meta(3)))), None);
        match t.handle_catalog(t0, LOCAL, cat::Request::List) {
            cat::Response::List(l) => assert_eq!(l.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    /// Seeders of `h` listed after a sweep at `at`, on a fresh tracker fed `script`.
    fn listed_after(t0: Instant, at: Instant, script: impl Fn(&mut Tracker)) -> usize {
        let mut t = tracker(t0);
        script(&mut t);
        t.handle_timeout(at);
        t.swarms.seeders(&Hash20::of(b"file"))
    }

    #[test]
    fn lmk_peers_expire_after_expiry_one_tick_before_and_at() {
        let t0 = Instant::now();
        let script = |t: &mut Tracker| {
            let c = connect(t, t0, from(1000));
            ask(t, t0, from(1000), announce(c, Hash20::of(b"file"), SEEDER, 7000, Event::Started));
        };
        let deadline = t0 + Duration::from_secs(30);
        assert_eq!(listed_after(t0, deadline, script), 1, "alive at exactly the expiry");
        assert_eq!(listed_after(t0, deadline + Duration::from_millis(1), script), 0);
    }

    #[test]
    fn foreign_clients_expire_after_foreign_expiry_one_tick_before_and_at() {
        let t0 = Instant::now();
        // A libtorrent seeder re-announcing after 300 s, then qBittorrent's 600 s, swept in between.
        let script = |t: &mut Tracker| {
            for s in [0, 300, 900] {
                let now = t0 + Duration::from_secs(s);
                t.handle_timeout(now);
                assert_eq!(t.swarms.seeders(&Hash20::of(b"file")), usize::from(s > 0), "listed at {s} s");
                let c = connect(t, now, from(1000));
                ask(t, now, from(1000), foreign(announce(c, Hash20::of(b"file"), SEEDER, 7000, Event::None)));
            }
        };
        let deadline = t0 + Duration::from_secs(900) + Config::default().foreign_expiry;
        assert_eq!(listed_after(t0, deadline, script), 1, "alive at exactly the foreign expiry");
        assert_eq!(listed_after(t0, deadline + Duration::from_millis(1), script), 0);
    }

    #[test]
    fn caps_refuse_with_an_error_and_count() {
        let t0 = Instant::now();
        let limits = Limits { max_peers_per_ip_in_swarm: 2, max_swarms_per_ip: 3, ..Limits::default() };
        let mut t = Tracker::new(Config { seed: 1, limits, ..Config::default() }, t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        for port in [7000, 7001] {
            ask(&mut t, t0, from(1000), announce(c, h, SEEDER, port, Event::Started));
        }
        let full = refused(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7002, Event::Started)));
        assert_eq!(full, Full::PeersOfIpInSwarm.message());
        for n in 0..10u8 {
            ask(&mut t, t0, from(1000), announce(c, Hash20([n; 20]), SEEDER, 7000, Event::Started));
        }
        assert_eq!((t.swarms.len(), t.stats().refused), (3, 9), "two more swarms, then refusals");
        let c2 = connect(&mut t, t0, from_ip([127, 0, 0, 2], 1));
        assert_eq!(
            peers(ask(&mut t, t0, from_ip([127, 0, 0, 2], 1), announce(c2, h, 100, 7000, Event::Started))).len(),
            2,
            "another address still joins"
        );
        assert_eq!(t.stats().errors_sent, 9);
    }

    #[test]
    fn completed_once_per_peer_and_never_for_port_zero() {
        let t0 = Instant::now();
        let mut t = tracker(t0);
        let h = Hash20::of(b"file");
        let c = connect(&mut t, t0, from(1000));
        ask(&mut t, t0, from(1000), announce(c, h, 100, 7000, Event::Started));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 0, Event::Completed));
        assert_eq!(t.swarms.get(&h).map(|s| s.completed), Some(1));
        // Port-0 completions of made-up hashes leave nothing behind.
        for n in 0..100u8 {
            ask(&mut t, t0, from(1000), announce(c, Hash20([n; 20]), SEEDER, 0, Event::Completed));
        }
        assert_eq!(t.swarms.len(), 1);
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Stopped));
        assert_eq!(t.swarms.len(), 0, "an empty swarm goes whatever its completed count");
    }

    #[test]
    fn catalog_only_refuses_unlisted_hashes() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Config { seed: 1, catalog_only: true, ..Config::default() }, t0);
        let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
        let c = connect(&mut t, t0, from(1000));
        let h = meta.content_id();
        assert_eq!(refused(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))), NOT_IN_CATALOG);
        assert!(matches!(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta)), cat::Response::Published(_)));
        assert!(peers(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))).is_empty());
        assert_eq!((t.swarms.seeders(&h), t.swarms.len(), t.stats().refused), (1, 1, 1));
        let mut open = tracker(t0);
        let c = connect(&mut open, t0, from(1000));
        assert!(peers(ask(&mut open, t0, from(1000), announce(c, Hash20([7; 20]), SEEDER, 7000, Event::Started)))
            .is_empty());
        assert_eq!(open.swarms.len(), 1, "without the option any hash is tracked");
    }
}

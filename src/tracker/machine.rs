//! The tracker's sans-IO core: datagrams and catalog requests in, replies
//! out, expiry driven by the time passed in. No sockets, no clock.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::answers::Answers;
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
use ids::ConnectionIds;

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
    /// Announces refused, by cap (`Refusal::NAMES`), over both protocols.
    pub refused_by: [u64; 6],
    /// HTTP announces and scrapes; of the announces, those refused (also
    /// in `refused`) and those malformed, and the malformed scrapes.
    pub http_announces: u64,
    pub http_refused: u64,
    pub http_bad_announces: u64,
    pub http_scrapes: u64,
    pub http_bad_scrapes: u64,
}

/// One announce as both protocols give it.
#[derive(Debug, Clone, Copy)]
struct Joining {
    /// The source address with the announced port.
    peer: SocketAddr,
    hash: Hash20,
    event: Event,
    left: u64,
}

/// Why an announce was refused: a cap, or the catalog-only rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Full(Full),
    NotInCatalog,
}

impl Refusal {
    /// The refusals' names in /metrics, in the order of `Stats::refused_by`.
    const NAMES: [&'static str; 6] =
        ["swarms", "swarms_per_ip", "peers", "peers_per_ip", "peers_per_ip_in_swarm", "not_in_catalog"];

    fn index(self) -> usize {
        match self {
            Refusal::Full(Full::Swarms) => 0,
            Refusal::Full(Full::SwarmsOfIp) => 1,
            Refusal::Full(Full::Peers) => 2,
            Refusal::Full(Full::PeersOfIp) => 3,
            Refusal::Full(Full::PeersOfIpInSwarm) => 4,
            Refusal::NotInCatalog => 5,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Full(full) => full.message(),
            Refusal::NotInCatalog => NOT_IN_CATALOG,
        }
    }
}

pub struct Tracker {
    config: Config,
    start: Instant,
    /// The last `now` seen and its time since `start` (`since_start`).
    elapsed: Cell<(Instant, Duration)>,
    secret: [u8; 16],
    ids: ConnectionIds,
    rng: Rng,
    swarms: Swarms,
    catalog: Catalog,
    /// Encoded metadata and file lists, one copy per answer however many connections send it.
    answers: Answers,
    gate: Gate,
    stats: Stats,
    /// An HTTP answer's peer entries, reused: no allocation per announce.
    /// (A UDP answer's entries go straight into its datagram.)
    picked: Vec<u8>,
    next_sweep: Instant,
    changed: bool,
}

impl Tracker {
    pub fn new(config: Config, now: Instant) -> Tracker {
        let mut rng = Rng::new(config.seed);
        let mut secret = [0u8; 16];
        rng.fill(&mut secret);
        let next_sweep = now + sweep_period(&config);
        let swarms = Swarms::new(config.limits, rng.next_u64());
        Tracker {
            config,
            start: now,
            elapsed: Cell::new((now, Duration::ZERO)),
            secret,
            ids: ConnectionIds::new(secret),
            rng,
            swarms,
            catalog: Catalog::default(),
            answers: Answers::default(),
            gate: Gate::new(Policy::default(), secret, now),
            stats: Stats::default(),
            picked: Vec::new(),
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
                Response::Connect { transaction_id, connection_id: self.ids.issue(from.ip(), self.epoch(now)) }
            }
            Ok(req) if !self.ids.check(from.ip(), self.epoch(now), connection_id(&req)) => {
                debug!("udp {from}: refused: {UNKNOWN_CONNECTION_ID}");
                self.error(req.transaction_id(), UNKNOWN_CONNECTION_ID, data.len())
            }
            Ok(Request::Announce(a)) => match self.announce(now, from, &a, data.len(), out) {
                Some(error) => error,
                None => return true,
            },
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

    /// Writes the answer into `out` straight from the swarm's tables, or
    /// returns the error to send instead.
    fn announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        a: &udp::AnnounceRequest,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Option<Response> {
        self.stats.announces += 1;
        let num_want = usize::try_from(a.num_want).ok().filter(|&n| n > 0);
        let joined =
            Joining { peer: SocketAddr::new(from.ip(), a.port), hash: a.info_hash, event: a.event, left: a.left };
        let (transaction_id, interval) = (a.transaction_id, self.interval_secs());
        let head = |out: &mut Vec<u8>, seeders, leechers| {
            udp::AnnounceHead { transaction_id, interval, leechers, seeders }.encode(out);
        };
        let refusal = self.join(now, &joined, &a.peer_id, num_want, udp::MAX_PEERS, out, head).err()?;
        debug!("udp {from}: announce for {} refused: {}", a.info_hash.short(), refusal.message());
        Some(self.error(a.transaction_id, refusal.message(), len))
    }

    fn interval_secs(&self) -> u32 {
        self.config.interval.as_secs().try_into().unwrap_or(u32::MAX)
    }

    /// An announce over either protocol: records, refreshes or removes the
    /// peer under the caps and access rules; then `head` writes the answer's
    /// fixed part into `out` from the swarm's seeders and leechers, and up to
    /// `want` peers (at most `max`) follow it as compact entries of the
    /// requester's family (`Swarm::answer`).
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        now: Instant,
        a: &Joining,
        peer_id: &[u8; 20],
        want: Option<usize>,
        max: usize,
        out: &mut Vec<u8>,
        head: impl FnOnce(&mut Vec<u8>, u32, u32),
    ) -> Result<(), Refusal> {
        let Joining { peer, hash, event, left } = *a;
        let seeder = left == 0;
        let change = match event {
            Event::Stopped => Ok(self.swarms.remove(&hash, peer)),
            _ if self.config.catalog_only && self.catalog.meta(&hash).is_none() => Err(Refusal::NotInCatalog),
            // A peer without a port is answered but not stored.
            _ if peer.port() == 0 => Ok(Change::Unchanged),
            event => {
                let ttl = self.expiry_ms(peer_id);
                let completed = event == Event::Completed;
                self.swarms.upsert(hash, peer, seeder, completed, self.millis(now), ttl).map_err(Refusal::Full)
            }
        };
        match change {
            Err(refusal) => {
                self.stats.refused += 1;
                self.stats.refused_by[refusal.index()] += 1;
                return Err(refusal);
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
        let want = want.unwrap_or(DEFAULT_NUM_WANT).min(max);
        match self.swarms.get(&hash) {
            Some(swarm) => {
                head(out, swarm.seeders(), swarm.leechers());
                swarm.answer(peer, seeder, want, &mut self.rng, out);
            }
            None => head(out, 0, 0),
        }
        Ok(())
    }

    /// How long a peer stays listed after an announce: short for LMK peers,
    /// which announce at our interval, long for everyone else.
    fn expiry_ms(&self, peer_id: &[u8; 20]) -> Millis {
        let expiry = if peer_id.starts_with(LMK_PEER_ID) { self.config.expiry } else { self.config.foreign_expiry };
        expiry.as_millis().try_into().unwrap_or(Millis::MAX)
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

    /// Answers one catalog request as its encoded frame. Metadata and file
    /// lists come from `Answers`: one copy, however many connections are
    /// sending it (the shell writes it from there, `Net::send_shared`).
    pub fn handle_catalog_shared(&mut self, now: Instant, from: IpAddr, request: cat::Request) -> Rc<[u8]> {
        let found = match &request {
            cat::Request::GetMeta(selector) => Some(self.catalog.find(selector)),
            _ => None,
        };
        match (request, found) {
            (_, Some(Ok(id))) => {
                self.stats.catalog_requests += 1;
                let Some(meta) = self.catalog.meta(&id) else { return Rc::from(&[][..]) };
                self.answers.meta(id, |out| cat::encode_meta_response(meta, out))
            }
            (cat::Request::List, _) => {
                self.stats.catalog_requests += 1;
                let (catalog, swarms) = (&self.catalog, &self.swarms);
                self.answers.list(now, |out| cat::Response::List(catalog.list(|id| swarms.seeders(id))).encode(out))
            }
            (request, _) => {
                let mut out = Vec::new();
                self.handle_catalog(now, from, request).encode(&mut out);
                out.into()
            }
        }
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
    /// At most `EXPIRE_BUDGET` peers go per call; with more due, the next
    /// deadline is a millisecond away, so datagrams are served in between.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        let mut expired = Vec::new();
        let more = self.swarms.expire(self.millis(now), EXPIRE_BUDGET, |hash, n| expired.push((*hash, n)));
        self.next_sweep = now + if more { Duration::from_millis(1) } else { sweep_period(&self.config) };
        for (hash, n) in expired {
            self.stats.expiries += n as u64;
            self.changed = true;
            info!("{} of {} expired", crate::common::fmt::plural(n as u64, "peer"), self.describe(&hash));
        }
        self.answers.prune();
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
        let answers = self.answers.bytes();
        if answers > 0 {
            let _ = writeln!(out, "  (catalog answers being sent: {})", fmt::bytes(answers as u64));
        }
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
        self.since_start(now).as_millis() as Millis
    }

    fn epoch(&self, now: Instant) -> u64 {
        self.since_start(now).as_secs() / EPOCH.as_secs()
    }

    /// The reactor hands one `now` to every datagram of a wake-up, and an
    /// announce asks twice (connection id, swarm clock): the last figure is
    /// kept, as subtracting two `Instant`s cost about 50 instructions.
    fn since_start(&self, now: Instant) -> Duration {
        let (last, since) = self.elapsed.get();
        if now == last {
            return since;
        }
        let since = now.saturating_duration_since(self.start);
        self.elapsed.set((now, since));
        since
    }
}

fn connection_id(req: &Request) -> u64 {
    match req {
        Request::Connect { .. } => udp::PROTOCOL_ID,
        Request::Announce(a) => a.connection_id,
        Request::Scrape(s) => s.connection_id,
    }
}

/// Peers expired per `handle_timeout` call: about 0.1 ms of work.
const EXPIRE_BUDGET: usize = 1000;

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

mod http;
mod ids;
#[cfg(test)]
mod tests;

//! One file in the peer core: what we hold (the picker), where its bytes
//! live, which addresses the tracker gave us and how each fared, what we
//! uploaded and downloaded, and when seeding is over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::answers::AnswerTimes;
use super::bitfield::Bitfield;
use super::picker::Picker;
use super::storage::Storage;
use crate::common::rng::Rng;
use crate::hash::ContentId;
use crate::meta::FileMeta;

/// Redial delay after a connection that delivered nothing, doubling per failure in a row.
const FAIL_RETRY: Duration = Duration::from_secs(1);
const MAX_FAIL_RETRY: Duration = Duration::from_secs(16);
/// Addresses remembered per file, so that neither a tracker naming new ones
/// every announce nor a stream of inbound peers grows the list without bound.
const MAX_KNOWN: usize = 1000;
/// How many of the first picks ignore rarity, so a new peer soon has something to trade.
const RANDOM_FIRST: u32 = 4;
/// Requests for one chunk (from any peers) a seed refuses with `Spread`
/// since it last went out; the next is served. Its holders pass it to nobody:
/// poisoners, which hold it truly and send garbage, are banned by every peer
/// they sent a bad chunk to (lmk-sim, 300 x 64 MiB, 10% poisoners, seed 2:
/// last 4.85 s -> 4.60 s; in the run without them no chunk was refused more
/// than 4 times between two sends, a few 3 or 4 times).
pub const CHUNK_REFUSALS: usize = 4;

/// How long a seed serves before it judges what bounds the swarm. At first
/// its peers hold only what it sent them, so every swarm looks bound by the
/// peers: judged after 500 ms, 200 peers with churn finished at 1.244 x
/// T_p2p against 1.170 as built (simulator, seed 1); after 2 s, at 1.170.
const JUDGE_AFTER: Duration = Duration::from_secs(2);
/// The peers bound the swarm while each upload slot's peer got from the
/// others less than this share of what the seed sent (`Torrent::peers_bound`).
const RELAY_SHARE: f64 = 0.9;

/// How long a complete file is served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Until the process stops (lmk-seeder).
    Forever,
    /// Until nobody has asked for any of it for `idle` (the swarm no longer
    /// needs us, whatever its size), or `ratio` x the file size is uploaded,
    /// or `time` has passed since completion: whichever comes first.
    Until { idle: Duration, ratio: Option<f64>, time: Option<Duration> },
}

impl Goal {
    /// Leave a file as soon as it is complete (`--seed-ratio 0`).
    pub const AT_ONCE: Goal = Goal::Until { idle: Duration::ZERO, ratio: Some(0.0), time: None };

    /// Whether a complete file leaves at once, without serving anybody.
    pub fn at_once(&self) -> bool {
        match *self {
            Goal::Forever => false,
            Goal::Until { idle, ratio, time } => {
                idle.is_zero() || ratio.is_some_and(|r| r <= 0.0) || time.is_some_and(|t| t.is_zero())
            }
        }
    }
}

/// `--seed-idle`'s default: the longest a finished peer serves a swarm that
/// asks it for nothing. A peer still asked is kept, so the fast peers of a
/// mixed swarm stay while slow ones fetch from them. The smallest value that
/// cost nothing on any lmk-sim row (sparse arrivals needed 20 s, dense rows 5 s):
/// docs/BENCHMARKS.md, "How long a finished peer serves".
pub const SEED_IDLE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Downloading,
    Seeding {
        since: Instant,
    },
    /// Changed on disk (shared) or the goal is met: leaving.
    Done,
}

/// What we know of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Idle {
        retry_at: Instant,
        failures: u32,
    },
    /// Connected or being dialled; `failures` in a row so far, for the next backoff.
    Active {
        failures: u32,
    },
    /// Sent bad data or cannot serve this file: never dialled again.
    Banned,
}

/// Counters for progress, status lines and the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub uploaded: u64,
    pub from_seeders: u64,
    pub from_leechers: u64,
    pub bad_chunks: u64,
    /// Distinct peers that sent us data.
    pub sources: usize,
}

pub struct Torrent {
    pub meta: FileMeta,
    pub id: ContentId,
    pub storage: Box<dyn Storage>,
    pub picker: Picker,
    pub goal: Goal,
    pub stage: Stage,
    pub started: Instant,
    /// Last verified chunk (or the start), moved on by the bytes of chunks
    /// still arriving at `STALL_RATE` (never past now): `--timeout` counts from here.
    pub last_progress: Instant,
    /// Last request of any peer for this file (or the start): `Goal::Until`'s idle counts from here.
    pub last_asked: Instant,
    pub next_announce: Instant,
    /// Announces refused in a row: the next is tried after 1 s, doubling up
    /// to the interval (a seeder may announce before its publish lands).
    pub refused: u32,
    /// Announces brought forward in a row: the tracker's list was short, or
    /// no peer was connected or left to dial (every known address failed).
    pub lonely: u32,
    pub counters: Counters,
    /// Connections of this file, dialled or greeted (`--max-peers` counts them).
    pub conns: usize,
    known: BTreeMap<SocketAddr, Known>,
    /// The earliest retry among `known`, read once after each change.
    next_retry: std::cell::Cell<Option<Option<Instant>>>,
    sources: BTreeSet<SocketAddr>,
    /// While complete: answers owed or sent per chunk (a chunk sent once stays
    /// counted), so each chunk goes out once before any goes out twice.
    promised: Vec<u16>,
    /// The fewest times any chunk was promised, and how many chunks are at it.
    level: u16,
    at_level: u32,
    /// It held every chunk from the start: a seed, which spreads distinct
    /// chunks first. (A leecher that completed answers whatever it is asked.)
    origin: bool,
    /// A seed's `Spread` refusals of each chunk since it last went out.
    refusals: Vec<u8>,
    /// A seed's first Request, the chunks the peers it serves got from
    /// others since (their Haves of chunks it did not send them), and the
    /// most peers it served at once, whose Haves those are.
    serving_since: Option<Instant>,
    relayed: u64,
    served_most: usize,
    /// Chunks two connections wrote at once (an end-game duplicate): the
    /// first to pass its check is read back and checked again before it is
    /// held, since the other's bytes may have landed over its own.
    pub contested: BTreeSet<u32>,
    /// How long our requests take to be answered (`UNPROVEN_ANSWERS`).
    pub answers: AnswerTimes,
}

impl Torrent {
    pub fn new(meta: FileMeta, storage: Box<dyn Storage>, have: Bitfield, goal: Goal, seed: u64, now: Instant) -> Self {
        let stage = if have.is_full() { Stage::Seeding { since: now } } else { Stage::Downloading };
        let (origin, chunks) = (have.is_full(), meta.chunk_count());
        Torrent {
            id: meta.content_id(),
            picker: Picker::new(&have, RANDOM_FIRST, seed),
            meta,
            storage,
            goal,
            stage,
            started: now,
            last_progress: now,
            last_asked: now,
            next_announce: now,
            refused: 0,
            lonely: 0,
            counters: Counters::default(),
            conns: 0,
            known: BTreeMap::new(),
            next_retry: std::cell::Cell::new(None),
            sources: BTreeSet::new(),
            promised: if origin { vec![0; chunks as usize] } else { Vec::new() },
            level: 0,
            at_level: if origin { chunks } else { 0 },
            origin,
            refusals: if origin { vec![0; chunks as usize] } else { Vec::new() },
            serving_since: None,
            relayed: 0,
            served_most: 0,
            contested: BTreeSet::new(),
            answers: AnswerTimes::default(),
        }
    }

    /// Whether a seed should refuse `index` for now: it owes or sent that
    /// chunk more often than some other chunk (`level` times), so that each
    /// goes out once before any twice (after that the asker's *sole* flag
    /// decides: `Machine::spread_rule`); but not once refused
    /// `CHUNK_REFUSALS` times since it last went out.
    pub fn spreading(&self, index: u32) -> bool {
        let refused = self.refusals.get(index as usize).is_some_and(|&n| usize::from(n) >= CHUNK_REFUSALS);
        self.origin && !refused && self.promised.get(index as usize).is_some_and(|&n| n > self.level)
    }

    /// Whether a seed has sent chunk `index` or owes it.
    pub fn promised_once(&self, index: u32) -> bool {
        self.promised.get(index as usize).is_some_and(|&n| n > 0)
    }

    /// A seed was asked for a chunk while serving `served` peers: what
    /// bounds the swarm is judged from here.
    pub fn asked(&mut self, now: Instant, served: usize) {
        if self.origin {
            self.serving_since.get_or_insert(now);
            self.served_most = self.served_most.max(served);
        }
    }

    /// A peer of a seed said it got a chunk the seed did not send it.
    pub fn relayed(&mut self) {
        if self.origin {
            self.relayed += 1;
        }
    }

    /// Whether the peers' uplinks, not ours, bound a seed's swarm: each of the
    /// most peers served at once (those on our upload slots, the only ones
    /// that send Haves to a seed) got less from the others than
    /// `RELAY_SHARE` x what we sent. Then a second copy from us is worth more
    /// than a refusal; otherwise our uplink is the bound and distinct chunks
    /// come first. The most, not the peers served now: finished peers that
    /// leave take no relayed chunk with them (with half the peers at 5 MiB/s
    /// the seed judged itself the bound once the fast ones left, and sent the
    /// slow ones 0.25 copies more that the finished peers were serving).
    pub fn peers_bound(&self, now: Instant) -> bool {
        if self.serving_since.is_none_or(|since| now < since + JUDGE_AFTER) {
            return false;
        }
        let each = self.relayed as f64 * f64::from(self.meta.chunk_size()) / self.served_most.max(1) as f64;
        each < RELAY_SHARE * self.counters.uploaded as f64
    }

    /// Whether a seed has sent (or owes) every chunk at least once.
    pub fn every_chunk_out(&self) -> bool {
        self.origin && self.level > 0
    }

    /// Whether it held every chunk from the start (a seed).
    pub fn is_origin(&self) -> bool {
        self.origin
    }

    /// A seed refused `index` with `Spread`.
    pub fn refused_spread(&mut self, index: u32) {
        if let Some(n) = self.refusals.get_mut(index as usize) {
            *n = n.saturating_add(1);
        }
    }

    /// A chunk answer is owed (a seed's files only). True if that raised the
    /// level: the chunks refused so far may be offered again.
    pub fn promise(&mut self, index: u32) -> bool {
        if let Some(r) = self.refusals.get_mut(index as usize) {
            *r = 0;
        }
        let Some(n) = self.promised.get_mut(index as usize) else { return false };
        *n = n.saturating_add(1);
        if *n - 1 != self.level {
            return false;
        }
        self.at_level -= 1;
        if self.at_level > 0 {
            return false;
        }
        self.level += 1;
        self.at_level = self.count_at(self.level);
        true
    }

    /// An owed chunk answer will not be sent after all.
    pub fn unpromise(&mut self, index: u32) {
        let Some(n) = self.promised.get_mut(index as usize).filter(|n| **n > 0) else { return };
        *n -= 1;
        match (*n).cmp(&self.level) {
            std::cmp::Ordering::Less => {
                self.level = *n;
                self.at_level = self.count_at(self.level);
            }
            std::cmp::Ordering::Equal => self.at_level += 1,
            std::cmp::Ordering::Greater => {}
        }
    }

    fn count_at(&self, level: u16) -> u32 {
        self.promised.iter().filter(|&&n| n == level).count() as u32
    }

    pub fn held(&self) -> &Bitfield {
        self.picker.held()
    }

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// Bytes still missing, as announced to the tracker.
    pub fn left(&self) -> u64 {
        let missing = self.meta.chunk_count() - self.held().count();
        if missing == 0 {
            return 0;
        }
        // Every missing chunk is full-size except possibly the last.
        let last = self.meta.chunk_count() - 1;
        let last_len = self.meta.chunk_len(last).map_or(0, u64::from);
        let full = u64::from(self.meta.chunk_size());
        if self.held().get(last) {
            u64::from(missing) * full
        } else {
            u64::from(missing - 1) * full + last_len
        }
    }

    /// A verified chunk from `addr`, who holds every chunk if `seed`.
    pub fn count_download(&mut self, addr: SocketAddr, seed: bool, len: u64, now: Instant) {
        if seed {
            self.counters.from_seeders += len;
        } else {
            self.counters.from_leechers += len;
        }
        self.sources.insert(addr);
        self.counters.sources = self.sources.len();
        self.last_progress = now;
    }

    /// Whether a peer at `ip` has sent us a verified chunk of this file.
    pub fn delivered_from(&self, ip: std::net::IpAddr) -> bool {
        // Ordered by address first: its lowest entry is a lookup, not a scan.
        self.sources.range(SocketAddr::new(ip, 0)..).next().is_some_and(|a| a.ip() == ip)
    }

    /// True once a seeding goal is met.
    pub fn goal_met(&self, now: Instant) -> bool {
        let Goal::Until { ratio, .. } = self.goal else { return false };
        let uploaded = ratio.is_some_and(|r| self.counters.uploaded as f64 >= r * self.meta.size() as f64);
        matches!(self.stage, Stage::Seeding { .. }) && (uploaded || self.goal_deadline().is_some_and(|at| now >= at))
    }

    /// When seeding ends unless somebody asks for something first.
    pub fn goal_deadline(&self) -> Option<Instant> {
        let (Stage::Seeding { since }, Goal::Until { idle, time, .. }) = (self.stage, self.goal) else { return None };
        let idle_at = self.last_asked.max(since) + idle;
        Some(time.map_or(idle_at, |t| idle_at.min(since + t)))
    }

    /// How long nobody has asked for any of the file since it was complete.
    pub fn idle(&self, now: Instant) -> Duration {
        match self.stage {
            Stage::Seeding { since } => now.saturating_duration_since(self.last_asked.max(since)),
            _ => Duration::ZERO,
        }
    }

    /// Addresses from the tracker.
    pub fn learn(&mut self, addrs: &[SocketAddr], now: Instant) {
        for addr in addrs {
            if !self.known.contains_key(addr) {
                self.remember(*addr, Known::Idle { retry_at: now, failures: 0 });
            }
        }
    }

    /// Addresses worth dialling now, at most `room`, chosen at random (peers
    /// that all dialled the lowest addresses they know would crowd the same
    /// few); each is marked active. One whose address is refused for now
    /// (`banned_until`) waits until then.
    pub fn to_dial(
        &mut self,
        now: Instant,
        room: usize,
        rng: &mut Rng,
        banned_until: impl Fn(SocketAddr) -> Option<Instant>,
    ) -> Vec<SocketAddr> {
        if self.stage != Stage::Downloading || room == 0 {
            return Vec::new();
        }
        let mut ready: Vec<SocketAddr> = Vec::new();
        let mut deferred: Vec<(SocketAddr, Instant, u32)> = Vec::new();
        for (a, k) in &self.known {
            if let Known::Idle { retry_at, failures } = *k {
                match banned_until(*a) {
                    _ if retry_at > now => {}
                    Some(until) => deferred.push((*a, until, failures)),
                    None => ready.push(*a),
                }
            }
        }
        for (a, retry_at, failures) in deferred {
            self.remember(a, Known::Idle { retry_at, failures });
        }
        rng.shuffle(&mut ready);
        ready.truncate(room);
        for addr in &ready {
            self.mark_active(*addr);
        }
        ready
    }

    /// An address now connected (dialled by us, or it dialled us from its listening port).
    pub fn mark_active(&mut self, addr: SocketAddr) {
        let failures = match self.known.get(&addr) {
            Some(Known::Banned) => return,
            Some(Known::Idle { failures, .. } | Known::Active { failures }) => *failures,
            None => 0,
        };
        self.remember(addr, Known::Active { failures });
    }

    /// The connection to `addr` ended: retry later, the delay doubling with each failure in a row.
    pub fn backoff(&mut self, addr: SocketAddr, failed: bool, now: Instant) {
        let failures = match self.known.get(&addr) {
            Some(Known::Banned) => return,
            Some(Known::Idle { failures, .. } | Known::Active { failures }) => *failures,
            None => 0,
        };
        let failures = if failed { failures.saturating_add(1) } else { 0 };
        let delay = crate::common::backoff(FAIL_RETRY, failures, MAX_FAIL_RETRY);
        self.remember(addr, Known::Idle { retry_at: now + delay, failures });
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        self.remember(addr, Known::Banned);
    }

    /// Records what we know of `addr`. A new address on a full list first
    /// displaces the least promising one: an idle address that failed most
    /// often, else a banned one; connected ones are never forgotten.
    fn remember(&mut self, addr: SocketAddr, known: Known) {
        if !self.known.contains_key(&addr) && self.known.len() >= MAX_KNOWN {
            let worst = self
                .known
                .iter()
                .filter_map(|(a, k)| match k {
                    Known::Idle { failures, .. } => Some(((1, *failures), *a)),
                    Known::Banned => Some(((0, 0), *a)),
                    Known::Active { .. } => None,
                })
                .max_by_key(|(rank, _)| *rank);
            match worst {
                Some((_, a)) => self.known.remove(&a),
                None => return,
            };
        }
        self.known.insert(addr, known);
        self.next_retry.set(None);
    }

    /// Addresses we know of, however they fared.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.known.get(&addr) == Some(&Known::Banned)
    }

    /// The next retry of an idle address, while downloading.
    pub fn next_retry(&self) -> Option<Instant> {
        if self.stage != Stage::Downloading {
            return None;
        }
        if let Some(cached) = self.next_retry.get() {
            return cached;
        }
        let next = self
            .known
            .values()
            .filter_map(|k| match k {
                Known::Idle { retry_at, .. } => Some(*retry_at),
                _ => None,
            })
            .min();
        self.next_retry.set(Some(next));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;
    use crate::sim::content::Content;
    use std::net::{IpAddr, Ipv4Addr};

    fn torrent(now: Instant) -> Torrent {
        let meta = FileMeta::new("f".into(), 1, crate::meta::MIN_CHUNK, vec![Hash20([0; 20])]).unwrap();
        let store = Content::with_bytes("f", 1, crate::meta::MIN_CHUNK, 1).unwrap().store(None, Bitfield::new(1));
        Torrent::new(meta, Box::new(store), Bitfield::new(1), Goal::Forever, 1, now)
    }

    fn addr(n: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 6881)
    }

    /// A seed judges after `JUDGE_AFTER`: the peers bound the swarm while
    /// each served peer got less from the others than 0.9 x what it sent.
    #[test]
    fn a_seed_judges_what_bounds_the_swarm_from_what_its_peers_relayed() {
        let now = Instant::now();
        let meta = FileMeta::new("f".into(), 1 << 20, crate::meta::MIN_CHUNK, vec![Hash20([0; 20]); 64]).unwrap();
        let all = Bitfield::full(64);
        let store = Content::with_bytes("f", 1 << 20, crate::meta::MIN_CHUNK, 1).unwrap().store(None, all.clone());
        let mut t = Torrent::new(meta, Box::new(store), all, Goal::Forever, 1, now);
        let chunk = u64::from(crate::meta::MIN_CHUNK);
        assert!(!t.peers_bound(now + JUDGE_AFTER), "not asked yet");
        t.asked(now, 2);
        t.counters.uploaded = 10 * chunk;
        assert!(!t.peers_bound(now + JUDGE_AFTER / 2), "too early to judge");
        assert!(t.peers_bound(now + JUDGE_AFTER), "sent 10 chunks, its peers got none from each other");
        (0..17).for_each(|_| t.relayed());
        assert!(t.peers_bound(now + JUDGE_AFTER), "8.5 chunks each against 10 sent");
        (0..2).for_each(|_| t.relayed());
        assert!(!t.peers_bound(now + JUDGE_AFTER), "9.5 chunks each: our uplink is the bound");
        t.asked(now, 3);
        assert!(t.peers_bound(now + JUDGE_AFTER), "6.3 each among three");
        t.asked(now, 1);
        assert!(t.peers_bound(now + JUDGE_AFTER), "two of the three left: still 6.3 each");
    }

    #[test]
    fn dials_go_to_known_addresses_at_random_not_the_lowest() {
        let now = Instant::now();
        let mut rng = Rng::new(7);
        let known: Vec<SocketAddr> = (0..50).map(addr).collect();
        let mut dialled = BTreeSet::new();
        for _ in 0..4 {
            let mut t = torrent(now);
            t.learn(&known, now);
            let picked = t.to_dial(now, 5, &mut rng, |_| None);
            assert_eq!(picked.len(), 5);
            dialled.extend(picked);
        }
        assert!(dialled.len() > 10, "four peers that know the same 50 spread their 20 dials: {}", dialled.len());
    }

    #[test]
    fn known_addresses_are_capped_and_connected_ones_kept() {
        let now = Instant::now();
        let mut t = torrent(now);
        t.learn(&[addr(0), addr(1)], now);
        t.mark_active(addr(0));
        t.backoff(addr(1), true, now);
        let flood: Vec<SocketAddr> = (2..5000).map(addr).collect();
        for batch in flood.chunks(200) {
            t.learn(batch, now);
        }
        assert_eq!(t.known.len(), MAX_KNOWN);
        assert_eq!(t.known.get(&addr(0)), Some(&Known::Active { failures: 0 }), "a connected peer stays");
        assert!(!t.known.contains_key(&addr(1)), "the address that failed went first");
    }
}

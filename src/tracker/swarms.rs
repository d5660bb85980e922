//! The tracker's peer tables: one swarm per info hash. A swarm keeps its
//! peers as compact records in address-sorted lists, one pair per expiry
//! bucket (`pools.rs`); the swarms wait in one queue ordered by their oldest
//! bucket, so expiry visits only what expires, a bounded number of peers at a
//! time. Everything an announce can make us hold is capped (`Limits`), in
//! total and per source address (counted in a fixed sketch, `usage.rs`), so
//! no flood grows it without bound; README "Tracker limits" gives the worst
//! case in bytes.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use slab::Slab;

use crate::common::rng::Rng;
use crate::hash::Hash20;
use keyed::Keyed;
use pools::{Record, Table, V4, V6};
use usage::{Cells, Host, Usage};

mod keyed;
mod pools;
mod usage;

/// Milliseconds since the tracker started.
pub type Millis = u64;

/// Buckets per expiry time: a peer is dropped between its expiry and
/// 1/32 of it later, and a swarm holds at most 33 buckets per expiry time
/// in use (LMK peers and other clients have one each).
const BUCKETS: u64 = 32;

/// When the bucket of a peer heard at `now` with `ttl` to live expires: its
/// deadline rounded up to a multiple of `ttl / BUCKETS`, so the peers of
/// one swarm heard within that grain expire together.
fn bucket_end(now: Millis, ttl: Millis) -> Millis {
    let grain = (ttl / BUCKETS).max(1);
    now.saturating_add(ttl).div_ceil(grain).saturating_mul(grain)
}
/// What announces may make the tracker hold. A new peer or swarm beyond a
/// cap is refused; peers already held are always refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_swarms: usize,
    pub max_peers: usize,
    /// Swarms one source address may open (swarms it was first in).
    pub max_swarms_per_ip: u32,
    pub max_peers_per_ip: u32,
    /// Peers of one source address in one swarm: what stops one host from
    /// drowning a swarm's real peers in fake ones.
    pub max_peers_per_ip_in_swarm: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_swarms: 100_000,
            max_peers: 1_000_000,
            max_swarms_per_ip: 5_000,
            max_peers_per_ip: 50_000,
            max_peers_per_ip_in_swarm: 32,
        }
    }
}

/// The cap an announce met; its text is the BEP 15 error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Swarms,
    SwarmsOfIp,
    Peers,
    PeersOfIp,
    PeersOfIpInSwarm,
}

impl Full {
    pub fn message(self) -> &'static str {
        match self {
            Full::Swarms => "tracker full: too many swarms",
            Full::SwarmsOfIp => "too many swarms from your address",
            Full::Peers => "tracker full: too many peers",
            Full::PeersOfIp => "too many peers from your address",
            Full::PeersOfIpInSwarm => "too many peers from your address in this swarm",
        }
    }
}

/// A peer's record in its family's table.
enum Key {
    V4(V4),
    V6(V6),
}

impl Key {
    fn of(addr: SocketAddr) -> Key {
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => Key::V4(pools::v4(ip, addr.port())),
            IpAddr::V6(ip) => Key::V6(pools::v6(ip, addr.port())),
        }
    }

    fn host(&self) -> Host {
        match self {
            Key::V4(r) => r.host(),
            Key::V6(r) => r.host(),
        }
    }
}

/// Peers of one info hash, IPv4 and IPv6 apart: a requester is answered
/// from its own family, the only one its reply format can carry. The IPv6
/// table is boxed and made on first use: most swarms never need one, and a
/// smaller swarm is what bounds a flood of made-up info hashes.
#[derive(Debug)]
pub struct Swarm {
    hash: Hash20,
    v4: Table<V4>,
    v6: Option<Box<Table<V6>>>,
    /// Peers that became seeders here with event=completed, for scrape.
    pub completed: u32,
    /// The cells of the address that opened the swarm, charged for it while it lives.
    owner: Cells,
    /// Its place in the expiry queue: the end of its oldest bucket when
    /// queued (that bucket may have emptied since; the visit finds out), so
    /// never later than the end of any bucket it holds.
    due: Millis,
}

/// What an announce changed, for the status table and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Joined,
    Refreshed,
    Left,
    Unchanged,
}

impl Swarm {
    fn new(hash: Hash20, owner: Cells) -> Swarm {
        Swarm { hash, v4: Table::default(), v6: None, completed: 0, owner, due: Millis::MAX }
    }

    pub fn seeders(&self) -> u32 {
        self.role_len(true)
    }

    pub fn leechers(&self) -> u32 {
        self.role_len(false)
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.as_ref().map_or(0, |t| t.len())
    }

    fn role_len(&self, seeders: bool) -> u32 {
        let n = self.v4.role_len(seeders) + self.v6.as_ref().map_or(0, |t| t.role_len(seeders));
        n.try_into().unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn first_end(&self) -> Option<Millis> {
        let v6 = self.v6.as_ref().and_then(|t| t.first_end());
        [self.v4.first_end(), v6].into_iter().flatten().min()
    }

    /// Refreshes a known peer; None if it is new.
    fn refresh(&mut self, key: &Key, seeder: bool, end: Millis) -> Option<bool> {
        match key {
            Key::V4(r) => self.v4.refresh(*r, seeder, end),
            Key::V6(r) => self.v6.as_mut()?.refresh(*r, seeder, end),
        }
    }

    /// Peers of the key's host (IPv6: its /64) here.
    fn of_host(&self, key: &Key) -> u32 {
        match key {
            Key::V4(r) => self.v4.of_host(r.host()),
            Key::V6(r) => self.v6.as_ref().map_or(0, |t| t.of_host(r.host())),
        }
    }

    fn insert(&mut self, key: &Key, seeder: bool, end: Millis) {
        match key {
            Key::V4(r) => self.v4.insert(*r, seeder, end),
            Key::V6(r) => self.v6.get_or_insert_with(Box::default).insert(*r, seeder, end),
        }
    }

    fn remove(&mut self, key: &Key) -> bool {
        match key {
            Key::V4(r) => self.v4.remove(r),
            Key::V6(r) => {
                let removed = self.v6.as_mut().is_some_and(|t| t.remove(r));
                self.drop_empty_v6();
                removed
            }
        }
    }

    fn drop_empty_v6(&mut self) {
        if self.v6.as_ref().is_some_and(|t| t.len() == 0) {
            self.v6 = None;
        }
    }

    /// Drops up to `budget` peers of buckets ended before `now`, telling
    /// `gone` each one's host; returns how many went.
    fn expire(&mut self, now: Millis, budget: &mut usize, gone: &mut impl FnMut(Host)) -> usize {
        let mut n = self.v4.expire(now, budget, &mut |r| gone(r.host()));
        if let Some(t) = &mut self.v6 {
            n += t.expire(now, budget, &mut |r| gone(r.host()));
            self.drop_empty_v6();
        }
        n
    }

    /// Appends to `out` up to `want` peers of the requester's address family
    /// as an answer's entries (`wire::udp::PeerV4`, `PeerV6`: the records
    /// themselves): seeders then leechers for a leecher, leechers only for a
    /// seeder, never the requester itself, spread over address blocks, each
    /// role's part shuffled. While other leechers exist, seeders fill at most
    /// half of a leecher's answer: peers claiming to be seeders (a hundred
    /// fakes, say) cannot keep leechers from learning of each other. At
    /// most `pools::MAX_WANT` (both protocols cap `want` lower).
    pub fn answer(
        &self,
        requester: SocketAddr,
        requester_is_seeder: bool,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) {
        let want = want.min(pools::MAX_WANT);
        let seeder_room = (!requester_is_seeder).then(|| {
            let leechers = (self.leechers() as usize).saturating_sub(1); // the requester may be one
            want - leechers.min(want / 2)
        });
        match Key::of(requester) {
            Key::V4(me) => self.v4.answer(me, seeder_room, want, rng, out),
            Key::V6(me) => {
                if let Some(t) = &self.v6 {
                    t.answer(me, seeder_room, want, rng, out);
                }
            }
        }
    }
}

/// All swarms, by info hash, with the counts the limits are checked against.
/// A swarm lives exactly while it has a peer.
#[derive(Debug)]
pub struct Swarms {
    swarms: Slab<Swarm>,
    by_hash: HashMap<Hash20, usize, Keyed>,
    /// The swarm an announce last changed: its answer is read next, and
    /// this saves hashing the info hash again.
    last: Option<usize>,
    /// Every swarm once, by when its oldest bucket expires.
    queue: BTreeSet<(Millis, usize)>,
    usage: Usage,
    peers: usize,
    limits: Limits,
}

impl Swarms {
    /// `seed` keys the per-address counts and the map of info hashes.
    pub fn new(limits: Limits, seed: u64) -> Swarms {
        Swarms {
            swarms: Slab::new(),
            by_hash: HashMap::with_hasher(Keyed::new(seed)),
            last: None,
            queue: BTreeSet::new(),
            usage: Usage::new(limits.max_peers, seed),
            peers: 0,
            limits,
        }
    }

    pub fn get(&self, hash: &Hash20) -> Option<&Swarm> {
        if let Some(swarm) = self.last.and_then(|i| self.swarms.get(i)).filter(|s| s.hash == *hash) {
            return Some(swarm);
        }
        self.swarms.get(*self.by_hash.get(hash)?)
    }

    /// Records `peer` in the swarm of `hash`, heard at `now`, for `ttl`
    /// (kept until the end of the bucket its deadline falls in), opening the
    /// swarm if needed, unless a cap forbids a new peer or swarm. A peer
    /// turning seeder with event=completed (`completed`) counts once for scrape.
    pub fn upsert(
        &mut self,
        hash: Hash20,
        peer: SocketAddr,
        seeder: bool,
        completed: bool,
        now: Millis,
        ttl: Millis,
    ) -> Result<Change, Full> {
        let end = bucket_end(now, ttl);
        let key = Key::of(peer);
        let index = self.by_hash.get(&hash).copied();
        self.last = index;
        // A refresh, most announces, touches only its swarm.
        let in_swarm = match index.and_then(|i| self.swarms.get_mut(i).map(|s| (i, s))) {
            Some((i, swarm)) => {
                if let Some(was_seeder) = swarm.refresh(&key, seeder, end) {
                    if completed && seeder && !was_seeder {
                        swarm.completed = swarm.completed.saturating_add(1);
                    }
                    self.requeue(i, end);
                    return Ok(Change::Refreshed);
                }
                Some(swarm.of_host(&key))
            }
            None => None,
        };
        let limits = &self.limits;
        let cells = self.usage.cells(key.host());
        let usage = self.usage.get(cells);
        match in_swarm {
            Some(n) if n >= limits.max_peers_per_ip_in_swarm => return Err(Full::PeersOfIpInSwarm),
            None if self.by_hash.len() >= limits.max_swarms => return Err(Full::Swarms),
            None if usage.swarms >= limits.max_swarms_per_ip => return Err(Full::SwarmsOfIp),
            _ => {}
        }
        if self.peers >= limits.max_peers {
            return Err(Full::Peers);
        }
        if usage.peers >= limits.max_peers_per_ip {
            return Err(Full::PeersOfIp);
        }
        let i = match index {
            Some(i) => i,
            None => {
                let i = self.swarms.insert(Swarm::new(hash, cells));
                self.by_hash.insert(hash, i);
                self.last = Some(i);
                i
            }
        };
        if let Some(swarm) = self.swarms.get_mut(i) {
            swarm.insert(&key, seeder, end);
            if completed && seeder {
                swarm.completed = swarm.completed.saturating_add(1);
            }
        }
        self.peers += 1;
        self.usage.add(cells, 1, u32::from(index.is_none()));
        self.requeue(i, end);
        Ok(Change::Joined)
    }

    /// Queues swarm `i` by `end`, the bucket a peer just went to, if that is
    /// earlier than its place. No other bucket can be: a place is never later
    /// than the buckets held (a bucket that empties leaves the place as it
    /// is: the visit is early, not missed).
    fn requeue(&mut self, i: usize, end: Millis) {
        let Some(swarm) = self.swarms.get_mut(i) else { return };
        if end < swarm.due {
            self.queue.remove(&(swarm.due, i));
            self.queue.insert((end, i));
            swarm.due = end;
        }
    }

    /// Forgets `peer` in the swarm of `hash`, and the swarm if it empties.
    pub fn remove(&mut self, hash: &Hash20, peer: SocketAddr) -> Change {
        let Some(&i) = self.by_hash.get(hash) else { return Change::Unchanged };
        let key = Key::of(peer);
        let Some(swarm) = self.swarms.get_mut(i) else { return Change::Unchanged };
        if !swarm.remove(&key) {
            return Change::Unchanged;
        }
        let empty = swarm.is_empty();
        self.peers -= 1;
        let cells = self.usage.cells(key.host());
        self.usage.sub(cells, 1, 0);
        if empty {
            self.close(i);
        }
        Change::Left
    }

    /// Drops an emptied swarm and its owner's charge.
    fn close(&mut self, i: usize) {
        if let Some(swarm) = self.swarms.try_remove(i) {
            self.by_hash.remove(&swarm.hash);
            self.queue.remove(&(swarm.due, i));
            self.usage.sub(swarm.owner, 0, 1);
        }
    }

    /// Drops up to `budget` peers whose bucket ended before `now`, oldest
    /// first, and swarms left empty whatever their completed count; reports
    /// peers dropped per hash. Returns true if more are due: the caller comes
    /// back soon, so expiring a million peers never holds the loop for long.
    pub fn expire(&mut self, now: Millis, mut budget: usize, mut dropped: impl FnMut(&Hash20, usize)) -> bool {
        while budget > 0 {
            let Some(&(due, i)) = self.queue.first().filter(|(due, _)| *due < now) else { break };
            let Some(swarm) = self.swarms.get_mut(i) else {
                self.queue.remove(&(due, i));
                continue;
            };
            let usage = &mut self.usage;
            let n = swarm.expire(now, &mut budget, &mut |host| {
                let cells = usage.cells(host);
                usage.sub(cells, 1, 0);
            });
            self.peers -= n;
            if n > 0 {
                dropped(&swarm.hash, n);
            }
            match swarm.first_end() {
                None => self.close(i),
                Some(first) => {
                    self.queue.remove(&(due, i));
                    self.queue.insert((first, i));
                    swarm.due = first;
                }
            }
        }
        self.queue.first().is_some_and(|(due, _)| *due < now)
    }

    pub fn seeders(&self, hash: &Hash20) -> usize {
        self.get(hash).map_or(0, |s| s.seeders() as usize)
    }

    pub fn peer_count(&self) -> usize {
        self.peers
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Source addresses (IPv6: /64s) holding a peer or a swarm.
    pub fn addresses(&self) -> usize {
        self.usage.addresses()
    }
}

#[cfg(test)]
mod tests;

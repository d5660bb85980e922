//! The tracker's peer tables: one swarm per info hash. Each swarm keeps its
//! peers in dense lists (one per role) so an answer is a random window copied
//! out, and an index from address to list position so an announce, a stop or
//! an expiry is O(1). Everything an announce can make us hold is capped
//! (`Limits`), in total and per source address, so no flood grows it without
//! bound; README "Limits" gives the worst case in bytes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::common::rng::Rng;
use crate::hash::Hash20;

/// Milliseconds since the tracker started, modulo 2^32: deadlines are
/// compared with wrapping arithmetic, valid while no expiry nears 2^31 ms.
pub type Millis = u32;

/// Bit of an index entry that says the peer is a seeder; the rest is its position.
const SEEDER_BIT: u32 = 1 << 31;

/// True once `now` is past `until` (wrapping).
fn past(now: Millis, until: Millis) -> bool {
    (now.wrapping_sub(until) as i32) > 0
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

/// A peer address in the form its table keys it by.
trait PeerKey: Copy + Eq + Hash {
    /// The address part, for the per-address counts.
    type Ip: Copy + Eq + Hash;
    fn addr(self) -> SocketAddr;
    fn ip(self) -> Self::Ip;
}

/// An IPv4 peer as `ip << 16 | port`.
impl PeerKey for u64 {
    type Ip = u32;
    fn addr(self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(self.ip()), self as u16))
    }
    fn ip(self) -> u32 {
        (self >> 16) as u32
    }
}

impl PeerKey for (u128, u16) {
    type Ip = u128;
    fn addr(self) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::from(self.0), self.1))
    }
    fn ip(self) -> u128 {
        self.0
    }
}

/// Peers of one address family.
#[derive(Debug)]
struct Table<K: PeerKey> {
    /// `[leechers, seeders]`: each peer's key and the time it expires at.
    lists: [Vec<(K, Millis)>; 2],
    /// Role (`SEEDER_BIT`) and position of every peer in `lists`.
    index: HashMap<K, u32>,
    /// Peers per source address.
    per_ip: HashMap<K::Ip, u32>,
}

impl<K: PeerKey> Default for Table<K> {
    fn default() -> Self {
        Table { lists: [Vec::new(), Vec::new()], index: HashMap::new(), per_ip: HashMap::new() }
    }
}

impl<K: PeerKey> Table<K> {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn of_ip(&self, key: K) -> u32 {
        self.per_ip.get(&key.ip()).copied().unwrap_or(0)
    }

    /// Moves a known peer's deadline (and role); returns its previous role,
    /// or None if the peer is new.
    fn refresh(&mut self, key: K, seeder: bool, until: Millis) -> Option<bool> {
        let slot = *self.index.get(&key)?;
        let was_seeder = slot & SEEDER_BIT != 0;
        if was_seeder == seeder {
            if let Some(entry) = self.lists[usize::from(seeder)].get_mut((slot & !SEEDER_BIT) as usize) {
                entry.1 = until;
            }
        } else {
            self.take(slot);
            self.push(key, seeder, until);
        }
        Some(was_seeder)
    }

    /// Adds a peer not yet in the table.
    fn insert(&mut self, key: K, seeder: bool, until: Millis) {
        self.push(key, seeder, until);
        *self.per_ip.entry(key.ip()).or_insert(0) += 1;
    }

    fn push(&mut self, key: K, seeder: bool, until: Millis) {
        let list = &mut self.lists[usize::from(seeder)];
        let slot = list.len() as u32 | if seeder { SEEDER_BIT } else { 0 };
        list.push((key, until));
        self.index.insert(key, slot);
    }

    /// Forgets the peer; returns true if it was known.
    fn remove(&mut self, key: K) -> bool {
        let Some(slot) = self.index.remove(&key) else { return false };
        self.take(slot);
        self.uncount(key);
        true
    }

    fn uncount(&mut self, key: K) {
        if let Entry::Occupied(mut n) = self.per_ip.entry(key.ip()) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }

    /// Swap-removes the list entry at `slot`, re-indexing the entry moved into it.
    fn take(&mut self, slot: u32) {
        let list = &mut self.lists[usize::from(slot & SEEDER_BIT != 0)];
        let pos = (slot & !SEEDER_BIT) as usize;
        if pos < list.len() {
            list.swap_remove(pos);
            if let Some((moved, _)) = list.get(pos) {
                self.index.insert(*moved, slot);
            }
        }
    }

    /// Drops peers whose deadline is past, telling `gone` each address.
    fn expire(&mut self, now: Millis, gone: &mut impl FnMut(SocketAddr)) {
        for role in [0, 1] {
            // Backwards, so the entry swapped into a hole was already checked.
            for pos in (0..self.lists[role].len()).rev() {
                let (key, until) = self.lists[role][pos];
                if past(now, until) {
                    self.index.remove(&key);
                    self.take(pos as u32 | if role == 1 { SEEDER_BIT } else { 0 });
                    self.uncount(key);
                    gone(key.addr());
                }
            }
        }
    }

    /// Appends up to `want` peers of one role other than `skip`: a window of
    /// the list at a random start, so every peer is equally likely to be picked.
    fn sample(&self, seeders: bool, skip: SocketAddr, want: usize, rng: &mut Rng, out: &mut Vec<SocketAddr>) {
        let list = &self.lists[usize::from(seeders)];
        if want == 0 || list.is_empty() {
            return;
        }
        let start = if list.len() > want { rng.below(list.len()) } else { 0 };
        let (tail, head) = (list.get(start..).unwrap_or(&[]), list.get(..start).unwrap_or(&[]));
        let addrs = tail.iter().chain(head).map(|(key, _)| key.addr()).filter(|a| *a != skip);
        out.extend(addrs.take(want));
    }
}

/// An IPv4 address as its table key, or the IPv6 one.
enum Key {
    V4(u64),
    V6((u128, u16)),
}

fn key(addr: SocketAddr) -> Key {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => Key::V4(u64::from(u32::from(ip)) << 16 | u64::from(addr.port())),
        IpAddr::V6(ip) => Key::V6((u128::from(ip), addr.port())),
    }
}

/// A source address as the per-address counts key it: IPv4 as v4-mapped IPv6.
fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Peers of one info hash, IPv4 and IPv6 apart: a requester is answered
/// from its own family, the only one its reply format can carry. The IPv6
/// table is boxed and made on first use: most swarms never need one, and a
/// smaller swarm is what bounds a flood of made-up info hashes.
#[derive(Debug)]
pub struct Swarm {
    v4: Table<u64>,
    v6: Option<Box<Table<(u128, u16)>>>,
    /// Peers that became seeders here with event=completed, for scrape.
    pub completed: u32,
    /// The address that opened the swarm, charged for it while it lives.
    owner: u128,
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
    fn new(owner: u128) -> Swarm {
        Swarm { v4: Table::default(), v6: None, completed: 0, owner }
    }

    pub fn seeders(&self) -> u32 {
        self.role_len(1)
    }

    pub fn leechers(&self) -> u32 {
        self.role_len(0)
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.as_ref().map_or(0, |t| t.len())
    }

    fn role_len(&self, role: usize) -> u32 {
        (self.v4.lists[role].len() + self.v6.as_ref().map_or(0, |t| t.lists[role].len())) as u32
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refreshes a known peer; None if it is new.
    fn refresh(&mut self, addr: SocketAddr, seeder: bool, until: Millis) -> Option<bool> {
        match key(addr) {
            Key::V4(k) => self.v4.refresh(k, seeder, until),
            Key::V6(k) => self.v6.as_mut()?.refresh(k, seeder, until),
        }
    }

    /// Peers of `addr`'s source address here.
    fn of_ip(&self, addr: SocketAddr) -> u32 {
        match key(addr) {
            Key::V4(k) => self.v4.of_ip(k),
            Key::V6(k) => self.v6.as_ref().map_or(0, |t| t.of_ip(k)),
        }
    }

    fn insert(&mut self, addr: SocketAddr, seeder: bool, until: Millis) {
        match key(addr) {
            Key::V4(k) => self.v4.insert(k, seeder, until),
            Key::V6(k) => self.v6.get_or_insert_with(Box::default).insert(k, seeder, until),
        }
    }

    fn remove(&mut self, addr: SocketAddr) -> bool {
        match key(addr) {
            Key::V4(k) => self.v4.remove(k),
            Key::V6(k) => {
                let removed = self.v6.as_mut().is_some_and(|t| t.remove(k));
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

    fn expire(&mut self, now: Millis, gone: &mut impl FnMut(SocketAddr)) {
        self.v4.expire(now, gone);
        if let Some(t) = &mut self.v6 {
            t.expire(now, gone);
            self.drop_empty_v6();
        }
    }

    /// Up to `want` peers of the requester's address family: seeders then
    /// leechers for a leecher, leechers only for a seeder, never the
    /// requester itself, each role's part shuffled.
    pub fn pick(
        &self,
        requester: SocketAddr,
        requester_is_seeder: bool,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<SocketAddr>,
    ) {
        out.clear();
        let v4 = matches!(key(requester), Key::V4(_));
        let mut sample = |seeders: bool, out: &mut Vec<SocketAddr>| {
            let room = want - out.len();
            if v4 {
                self.v4.sample(seeders, requester, room, rng, out);
            } else {
                if let Some(t) = &self.v6 {
                    t.sample(seeders, requester, room, rng, out);
                }
            }
        };
        if !requester_is_seeder {
            sample(true, out);
        }
        let seeders = out.len();
        sample(false, out);
        let (s, l) = out.split_at_mut(seeders);
        rng.shuffle(s);
        rng.shuffle(l);
    }
}

/// What one source address holds.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    peers: u32,
    swarms: u32,
}

/// All swarms, by info hash, with the counts the limits are checked against.
/// A swarm lives exactly while it has a peer.
#[derive(Debug, Default)]
pub struct Swarms {
    map: HashMap<Hash20, Swarm>,
    by_ip: HashMap<u128, Usage>,
    peers: usize,
    limits: Limits,
}

impl Swarms {
    pub fn new(limits: Limits) -> Swarms {
        Swarms { limits, ..Swarms::default() }
    }

    pub fn get(&self, hash: &Hash20) -> Option<&Swarm> {
        self.map.get(hash)
    }

    /// Records `peer` in the swarm of `hash` until `until`, opening the swarm
    /// if needed, unless a cap forbids a new peer or swarm. A peer turning
    /// seeder with event=completed (`completed`) counts once for scrape.
    pub fn upsert(
        &mut self,
        hash: Hash20,
        peer: SocketAddr,
        seeder: bool,
        completed: bool,
        until: Millis,
    ) -> Result<Change, Full> {
        let Swarms { map, by_ip, peers, limits } = self;
        let swarms = map.len();
        // A refresh, most announces, touches only its swarm.
        let in_swarm = match map.get_mut(&hash) {
            Some(swarm) => {
                if let Some(was_seeder) = swarm.refresh(peer, seeder, until) {
                    if completed && seeder && !was_seeder {
                        swarm.completed = swarm.completed.saturating_add(1);
                    }
                    return Ok(Change::Refreshed);
                }
                Some(swarm.of_ip(peer))
            }
            None => None,
        };
        let ip = ip_key(peer.ip().to_canonical());
        let usage = by_ip.get(&ip).copied().unwrap_or_default();
        match in_swarm {
            Some(n) if n >= limits.max_peers_per_ip_in_swarm => return Err(Full::PeersOfIpInSwarm),
            None if swarms >= limits.max_swarms => return Err(Full::Swarms),
            None if usage.swarms >= limits.max_swarms_per_ip => return Err(Full::SwarmsOfIp),
            _ => {}
        }
        if *peers >= limits.max_peers {
            return Err(Full::Peers);
        }
        if usage.peers >= limits.max_peers_per_ip {
            return Err(Full::PeersOfIp);
        }
        let new_swarm = in_swarm.is_none();
        let swarm = map.entry(hash).or_insert_with(|| Swarm::new(ip));
        swarm.insert(peer, seeder, until);
        if completed && seeder {
            swarm.completed = swarm.completed.saturating_add(1);
        }
        *peers += 1;
        let usage = by_ip.entry(ip).or_default();
        usage.peers += 1;
        usage.swarms += u32::from(new_swarm);
        Ok(Change::Joined)
    }

    /// Forgets `peer` in the swarm of `hash`, and the swarm if it empties.
    pub fn remove(&mut self, hash: &Hash20, peer: SocketAddr) -> Change {
        let Some(swarm) = self.map.get_mut(hash) else { return Change::Unchanged };
        if !swarm.remove(peer) {
            return Change::Unchanged;
        }
        self.peers -= 1;
        release(&mut self.by_ip, ip_key(peer.ip().to_canonical()), 1, 0);
        if swarm.is_empty() {
            let owner = swarm.owner;
            self.map.remove(hash);
            release(&mut self.by_ip, owner, 0, 1);
        }
        Change::Left
    }

    /// Drops peers whose deadline is past, and swarms left empty whatever
    /// their completed count; reports peers dropped per hash.
    pub fn expire(&mut self, now: Millis, mut dropped: impl FnMut(&Hash20, usize)) {
        let Swarms { map, by_ip, peers, .. } = self;
        map.retain(|hash, swarm| {
            let mut n = 0;
            swarm.expire(now, &mut |addr| {
                n += 1;
                release(by_ip, ip_key(addr.ip()), 1, 0);
            });
            if n > 0 {
                *peers -= n;
                dropped(hash, n);
            }
            if swarm.is_empty() {
                release(by_ip, swarm.owner, 0, 1);
            }
            !swarm.is_empty()
        });
    }

    pub fn seeders(&self, hash: &Hash20) -> usize {
        self.map.get(hash).map_or(0, |s| s.seeders() as usize)
    }

    pub fn peer_count(&self) -> usize {
        self.peers
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Source addresses holding a peer or a swarm.
    pub fn addresses(&self) -> usize {
        self.by_ip.len()
    }
}

/// Takes `peers` and `swarms` off an address's usage, forgetting it at zero.
fn release(by_ip: &mut HashMap<u128, Usage>, ip: u128, peers: u32, swarms: u32) {
    if let Entry::Occupied(mut e) = by_ip.entry(ip) {
        let u = e.get_mut();
        u.peers = u.peers.saturating_sub(peers);
        u.swarms = u.swarms.saturating_sub(swarms);
        if u.peers == 0 && u.swarms == 0 {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests;

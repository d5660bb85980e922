//! The tracker's peer tables: one swarm per info hash. Each swarm keeps its
//! peers in dense lists (one per role) so an answer is a random window copied
//! out, and an index from address to list position so an announce, a stop or
//! an expiry is O(1). A peer costs about 40 bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::common::rng::Rng;
use crate::hash::Hash20;

/// Milliseconds since the tracker started, modulo 2^32: ages are computed
/// with wrapping arithmetic and never approach the wrap (peers expire first).
pub type Millis = u32;

/// Bit of an index entry that says the peer is a seeder; the rest is its position.
const SEEDER_BIT: u32 = 1 << 31;

/// A peer address in the form its table keys it by.
trait PeerKey: Copy + Eq + Hash {
    fn addr(self) -> SocketAddr;
}

/// An IPv4 peer as `ip << 16 | port`.
impl PeerKey for u64 {
    fn addr(self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from((self >> 16) as u32), self as u16))
    }
}

impl PeerKey for (u128, u16) {
    fn addr(self) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::from(self.0), self.1))
    }
}

/// Peers of one address family.
#[derive(Debug)]
struct Table<K> {
    /// `[leechers, seeders]`: each peer's key and last-heard time.
    lists: [Vec<(K, Millis)>; 2],
    /// Role (`SEEDER_BIT`) and position of every peer in `lists`.
    index: HashMap<K, u32>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table { lists: [Vec::new(), Vec::new()], index: HashMap::new() }
    }
}

impl<K: PeerKey> Table<K> {
    fn len(&self) -> usize {
        self.index.len()
    }

    /// Records the peer; returns its previous role if it was known.
    fn upsert(&mut self, key: K, seeder: bool, now: Millis) -> Option<bool> {
        let old = self.index.get(&key).copied();
        if let Some(slot) = old {
            let was_seeder = slot & SEEDER_BIT != 0;
            if was_seeder == seeder {
                if let Some(entry) = self.lists[usize::from(seeder)].get_mut((slot & !SEEDER_BIT) as usize) {
                    entry.1 = now;
                }
                return Some(was_seeder);
            }
            self.take(slot);
        }
        let list = &mut self.lists[usize::from(seeder)];
        let slot = list.len() as u32 | if seeder { SEEDER_BIT } else { 0 };
        list.push((key, now));
        self.index.insert(key, slot);
        old.map(|slot| slot & SEEDER_BIT != 0)
    }

    /// Forgets the peer; returns its role if it was known.
    fn remove(&mut self, key: K) -> Option<bool> {
        let slot = self.index.remove(&key)?;
        self.take(slot);
        Some(slot & SEEDER_BIT != 0)
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

    /// Drops peers not heard from for more than `expiry` ms; returns how many
    /// seeders and leechers went.
    fn expire(&mut self, now: Millis, expiry: u32) -> [u32; 2] {
        let mut gone = [0; 2];
        for role in [0, 1] {
            // Backwards, so the entry swapped into a hole was already checked.
            for pos in (0..self.lists[role].len()).rev() {
                let (key, seen) = self.lists[role][pos];
                if now.wrapping_sub(seen) > expiry {
                    self.index.remove(&key);
                    self.take(pos as u32 | if role == 1 { SEEDER_BIT } else { 0 });
                    gone[role] += 1;
                }
            }
        }
        gone
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

/// Peers of one info hash, IPv4 and IPv6 apart: a requester is answered
/// from its own family, the only one its reply format can carry.
#[derive(Debug, Default)]
pub struct Swarm {
    v4: Table<u64>,
    v6: Table<(u128, u16)>,
    /// Announces with event=completed, for scrape.
    pub completed: u32,
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
    pub fn seeders(&self) -> u32 {
        (self.v4.lists[1].len() + self.v6.lists[1].len()) as u32
    }

    pub fn leechers(&self) -> u32 {
        (self.v4.lists[0].len() + self.v6.lists[0].len()) as u32
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Records a peer as seeder or leecher (switching its role if needed).
    pub fn upsert(&mut self, addr: SocketAddr, seeder: bool, now: Millis) -> Change {
        let old = match key(addr) {
            Key::V4(k) => self.v4.upsert(k, seeder, now),
            Key::V6(k) => self.v6.upsert(k, seeder, now),
        };
        if old.is_some() {
            Change::Refreshed
        } else {
            Change::Joined
        }
    }

    pub fn remove(&mut self, addr: SocketAddr) -> Change {
        let old = match key(addr) {
            Key::V4(k) => self.v4.remove(k),
            Key::V6(k) => self.v6.remove(k),
        };
        if old.is_some() {
            Change::Left
        } else {
            Change::Unchanged
        }
    }

    /// Drops peers not heard from for more than `expiry` ms; returns how many went.
    pub fn expire(&mut self, now: Millis, expiry: u32) -> usize {
        let [a, b] = self.v4.expire(now, expiry);
        let [c, d] = self.v6.expire(now, expiry);
        (a + b + c + d) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
                self.v6.sample(seeders, requester, room, rng, out);
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

/// All swarms, by info hash.
#[derive(Debug, Default)]
pub struct Swarms {
    map: HashMap<Hash20, Swarm>,
    peers: usize,
}

impl Swarms {
    pub fn get(&self, hash: &Hash20) -> Option<&Swarm> {
        self.map.get(hash)
    }

    /// Applies `f` to the swarm of `hash` (created if new), keeping the peer count.
    pub fn with<T>(&mut self, hash: Hash20, f: impl FnOnce(&mut Swarm) -> T) -> T {
        let swarm = self.map.entry(hash).or_default();
        let before = swarm.len();
        let result = f(swarm);
        self.peers = self.peers + swarm.len() - before;
        result
    }

    /// Expires every swarm and forgets empty ones; reports peers dropped per hash.
    pub fn expire(&mut self, now: Millis, expiry: u32, mut dropped: impl FnMut(&Hash20, usize)) {
        let mut total = 0;
        self.map.retain(|hash, swarm| {
            let n = swarm.expire(now, expiry);
            if n > 0 {
                total += n;
                dropped(hash, n);
            }
            !swarm.is_empty() || swarm.completed > 0
        });
        self.peers -= total;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn upsert_moves_between_roles_and_counts() {
        let mut s = Swarm::default();
        assert_eq!(s.upsert(addr(1), false, 0), Change::Joined);
        assert_eq!(s.upsert(addr(1), false, 0), Change::Refreshed);
        assert_eq!(s.upsert(addr(1), true, 0), Change::Refreshed);
        assert_eq!((s.seeders(), s.leechers()), (1, 0));
        assert_eq!(s.remove(addr(1)), Change::Left);
        assert_eq!(s.remove(addr(1)), Change::Unchanged);
        assert_eq!((s.seeders(), s.leechers()), (0, 0));
    }

    #[test]
    fn v4_mapped_and_v6_addresses() {
        let mut s = Swarm::default();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        s.upsert(addr(1), true, 0);
        assert_eq!(s.upsert(mapped, true, 0), Change::Refreshed, "same peer as 127.0.0.1:1");
        let v6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
        s.upsert(v6, true, 0);
        let mut out = Vec::new();
        s.pick(addr(9), false, 10, &mut Rng::new(1), &mut out);
        assert_eq!(out, vec![addr(1)], "an IPv4 requester gets IPv4 peers");
        s.pick("[2001:db8::2]:9".parse().unwrap(), false, 10, &mut Rng::new(1), &mut out);
        assert_eq!(out, vec![v6]);
        assert_eq!((s.seeders(), s.len()), (2, 2));
    }

    #[test]
    fn expire_keeps_peers_heard_within_expiry() {
        let mut s = Swarm::default();
        s.upsert(addr(1), true, 0);
        s.upsert(addr(2), false, 1000);
        assert_eq!(s.expire(1000, 1000), 0, "age equal to expiry is alive");
        assert_eq!(s.expire(1001, 1000), 1);
        assert_eq!((s.seeders(), s.leechers()), (0, 1));
    }

    #[test]
    fn ages_survive_the_clock_wrap() {
        let mut s = Swarm::default();
        let near_wrap = u32::MAX - 10;
        s.upsert(addr(1), true, near_wrap);
        let later = near_wrap.wrapping_add(500);
        assert_eq!(s.expire(later, 1000), 0);
        assert_eq!(s.expire(near_wrap.wrapping_add(1500), 1000), 1);
    }

    #[test]
    fn pick_orders_and_bounds() {
        let mut s = Swarm::default();
        for p in 1..=10 {
            s.upsert(addr(p), true, 0);
        }
        for p in 11..=20 {
            s.upsert(addr(p), false, 0);
        }
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        s.pick(addr(11), false, 15, &mut rng, &mut out);
        assert_eq!(out.len(), 15);
        assert!(out[..10].iter().all(|a| a.port() <= 10), "seeders first");
        assert!(!out.contains(&addr(11)));
        let mut dedup = out.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 15);
        s.pick(addr(1), true, 50, &mut rng, &mut out);
        assert_eq!(out.len(), 10, "a seeder gets leechers only");
        assert!(out.iter().all(|a| a.port() > 10));
    }

    #[test]
    fn pick_samples_every_seeder_eventually() {
        let mut s = Swarm::default();
        for p in 1..=20 {
            s.upsert(addr(p), true, 0);
        }
        let mut rng = Rng::new(9);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for _ in 0..50 {
            s.pick(addr(99), false, 3, &mut rng, &mut out);
            seen.extend(out.iter().copied());
        }
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn swarms_track_the_peer_count() {
        let mut all = Swarms::default();
        let h = Hash20::of(b"a");
        all.with(h, |s| s.upsert(addr(1), true, 0));
        all.with(h, |s| s.upsert(addr(2), false, 0));
        all.with(h, |s| s.upsert(addr(2), false, 0));
        assert_eq!(all.peer_count(), 2);
        all.with(h, |s| s.remove(addr(1)));
        assert_eq!(all.peer_count(), 1);
        all.expire(5000, 1000, |_, _| {});
        assert_eq!((all.peer_count(), all.len()), (0, 0));
    }
}

//! The tracker's peer tables: one swarm per info hash. A peer costs a packed
//! address key and a 4-byte stamp (role and last-heard time), so a million
//! peers fit in tens of megabytes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::common::rng::Rng;
use crate::hash::Hash20;

/// Milliseconds since the tracker started, modulo 2^31: ages are computed
/// with wrapping arithmetic and never approach the wrap (peers expire first).
pub type Millis = u32;

const SEEDER_BIT: u32 = 1 << 31;
const TIME_MASK: u32 = SEEDER_BIT - 1;

/// Role and last-heard time of one peer, in 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u32);

impl Stamp {
    fn new(seeder: bool, now: Millis) -> Stamp {
        Stamp(if seeder { SEEDER_BIT } else { 0 } | (now & TIME_MASK))
    }

    fn seeder(self) -> bool {
        self.0 & SEEDER_BIT != 0
    }

    fn age(self, now: Millis) -> u32 {
        now.wrapping_sub(self.0) & TIME_MASK
    }
}

/// An IPv4 peer as `ip << 16 | port`.
fn pack_v4(ip: Ipv4Addr, port: u16) -> u64 {
    u64::from(u32::from(ip)) << 16 | u64::from(port)
}

fn unpack_v4(key: u64) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from((key >> 16) as u32), key as u16))
}

/// Peers of one info hash. IPv4 and IPv6 peers live in separate maps so the
/// common case pays 8 bytes of key.
#[derive(Debug, Default)]
pub struct Swarm {
    v4: HashMap<u64, Stamp>,
    v6: HashMap<(u128, u16), Stamp>,
    seeders: u32,
    leechers: u32,
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
        self.seeders
    }

    pub fn leechers(&self) -> u32 {
        self.leechers
    }

    /// Records a peer as seeder or leecher (switching its role if needed).
    pub fn upsert(&mut self, addr: SocketAddr, seeder: bool, now: Millis) -> Change {
        let stamp = Stamp::new(seeder, now);
        let old = match to_canonical(addr) {
            (IpAddr::V4(ip), port) => self.v4.insert(pack_v4(ip, port), stamp),
            (IpAddr::V6(ip), port) => self.v6.insert((u128::from(ip), port), stamp),
        };
        if let Some(old) = old {
            self.count(old.seeder(), false);
        }
        self.count(seeder, true);
        if old.is_some() {
            Change::Refreshed
        } else {
            Change::Joined
        }
    }

    pub fn remove(&mut self, addr: SocketAddr) -> Change {
        let old = match to_canonical(addr) {
            (IpAddr::V4(ip), port) => self.v4.remove(&pack_v4(ip, port)),
            (IpAddr::V6(ip), port) => self.v6.remove(&(u128::from(ip), port)),
        };
        match old {
            Some(old) => {
                self.count(old.seeder(), false);
                Change::Left
            }
            None => Change::Unchanged,
        }
    }

    /// Drops peers not heard from for more than `expiry` ms; returns how many went.
    pub fn expire(&mut self, now: Millis, expiry: u32) -> usize {
        let (mut seeders, mut leechers) = (0, 0);
        let mut keep = |stamp: &mut Stamp| {
            let alive = stamp.age(now) <= expiry;
            if !alive {
                if stamp.seeder() {
                    seeders += 1;
                } else {
                    leechers += 1;
                }
            }
            alive
        };
        self.v4.retain(|_, s| keep(s));
        self.v6.retain(|_, s| keep(s));
        self.seeders -= seeders;
        self.leechers -= leechers;
        (seeders + leechers) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Up to `want` peers for a requester: seeders then leechers for a
    /// leecher, leechers only for a seeder, never the requester, each a
    /// uniform random pick (reservoir sampling, so no copy of the table).
    pub fn pick(
        &self,
        requester: SocketAddr,
        requester_is_seeder: bool,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<SocketAddr>,
    ) {
        out.clear();
        if !requester_is_seeder {
            self.sample(true, requester, want, rng, out);
        }
        let seeders = out.len();
        self.sample(false, requester, want - seeders, rng, out);
        let (s, l) = out.split_at_mut(seeders);
        rng.shuffle(s);
        rng.shuffle(l);
    }

    /// Appends a uniform sample of at most `want` peers of one role other than `skip`.
    fn sample(&self, seeders: bool, skip: SocketAddr, want: usize, rng: &mut Rng, out: &mut Vec<SocketAddr>) {
        if want == 0 {
            return;
        }
        let v4 = self.v4.iter().filter(|(_, s)| s.seeder() == seeders).map(|(k, _)| unpack_v4(*k));
        let v6 = self
            .v6
            .iter()
            .filter(|(_, s)| s.seeder() == seeders)
            .map(|((ip, port), _)| SocketAddr::from((Ipv6Addr::from(*ip), *port)));
        let start = out.len();
        for (seen, addr) in v4.chain(v6).filter(|a| *a != skip).enumerate() {
            if seen < want {
                out.push(addr);
            } else {
                let j = rng.below(seen + 1);
                if let Some(slot) = out.get_mut(start + j).filter(|_| j < want) {
                    *slot = addr;
                }
            }
        }
    }

    fn count(&mut self, seeder: bool, add: bool) {
        let n = if seeder { &mut self.seeders } else { &mut self.leechers };
        *n = if add { n.saturating_add(1) } else { n.saturating_sub(1) };
    }
}

/// The address as the tables key it: a v4-mapped IPv6 address is IPv4.
fn to_canonical(addr: SocketAddr) -> (IpAddr, u16) {
    (addr.ip().to_canonical(), addr.port())
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
        let before = swarm.v4.len() + swarm.v6.len();
        let result = f(swarm);
        self.peers = self.peers + (swarm.v4.len() + swarm.v6.len()) - before;
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
        self.map.get(hash).map_or(0, |s| s.seeders as usize)
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
        out.sort();
        assert_eq!(out, vec![addr(1), v6]);
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
        let near_wrap = TIME_MASK - 10;
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

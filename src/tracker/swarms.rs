//! The tracker's peer tables: one swarm per info hash, each peer with the
//! instant it was last heard from. Seeders and leechers are kept apart so a
//! leecher's answer can list seeders first without sorting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::common::rng::Rng;
use crate::hash::Hash20;

/// Peers of one info hash.
#[derive(Debug, Default)]
pub struct Swarm {
    pub seeders: HashMap<SocketAddr, Instant>,
    pub leechers: HashMap<SocketAddr, Instant>,
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
    /// Records a peer as seeder or leecher (moving it between the two if needed).
    pub fn upsert(&mut self, addr: SocketAddr, seeder: bool, now: Instant) -> Change {
        let (mine, other) =
            if seeder { (&mut self.seeders, &mut self.leechers) } else { (&mut self.leechers, &mut self.seeders) };
        let moved = other.remove(&addr).is_some();
        match mine.insert(addr, now) {
            Some(_) => Change::Refreshed,
            None if moved => Change::Refreshed,
            None => Change::Joined,
        }
    }

    pub fn remove(&mut self, addr: SocketAddr) -> Change {
        let gone = self.seeders.remove(&addr).is_some() | self.leechers.remove(&addr).is_some();
        if gone {
            Change::Left
        } else {
            Change::Unchanged
        }
    }

    /// Drops peers last heard from before `cutoff`; returns how many went.
    pub fn expire(&mut self, cutoff: Instant) -> usize {
        let before = self.seeders.len() + self.leechers.len();
        self.seeders.retain(|_, seen| *seen >= cutoff);
        self.leechers.retain(|_, seen| *seen >= cutoff);
        before - self.seeders.len() - self.leechers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seeders.is_empty() && self.leechers.is_empty()
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
            sample(self.seeders.keys(), requester, want, rng, out);
        }
        let seeders = out.len();
        sample(self.leechers.keys(), requester, want - seeders, rng, out);
        let (s, l) = out.split_at_mut(seeders);
        rng.shuffle(s);
        rng.shuffle(l);
    }
}

/// Appends a uniform sample of at most `want` addresses other than `skip`.
fn sample<'a>(
    addrs: impl Iterator<Item = &'a SocketAddr>,
    skip: SocketAddr,
    want: usize,
    rng: &mut Rng,
    out: &mut Vec<SocketAddr>,
) {
    let start = out.len();
    for (seen, addr) in addrs.filter(|a| **a != skip).enumerate() {
        if seen < want {
            out.push(*addr);
        } else {
            let j = rng.below(seen + 1);
            if let Some(slot) = out.get_mut(start + j).filter(|_| j < want) {
                *slot = *addr;
            }
        }
    }
}

/// All swarms, by info hash.
#[derive(Debug, Default)]
pub struct Swarms {
    map: HashMap<Hash20, Swarm>,
}

impl Swarms {
    pub fn get(&self, hash: &Hash20) -> Option<&Swarm> {
        self.map.get(hash)
    }

    pub fn entry(&mut self, hash: Hash20) -> &mut Swarm {
        self.map.entry(hash).or_default()
    }

    /// Expires every swarm and forgets empty ones; returns peers dropped per hash.
    pub fn expire(&mut self, cutoff: Instant, mut dropped: impl FnMut(&Hash20, usize)) {
        self.map.retain(|hash, swarm| {
            let n = swarm.expire(cutoff);
            if n > 0 {
                dropped(hash, n);
            }
            !swarm.is_empty() || swarm.completed > 0
        });
    }

    pub fn seeders(&self, hash: &Hash20) -> usize {
        self.map.get(hash).map_or(0, |s| s.seeders.len())
    }

    pub fn peer_count(&self) -> usize {
        self.map.values().map(|s| s.seeders.len() + s.leechers.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn upsert_moves_between_roles() {
        let t0 = Instant::now();
        let mut s = Swarm::default();
        assert_eq!(s.upsert(addr(1), false, t0), Change::Joined);
        assert_eq!(s.upsert(addr(1), false, t0), Change::Refreshed);
        assert_eq!(s.upsert(addr(1), true, t0), Change::Refreshed);
        assert_eq!((s.seeders.len(), s.leechers.len()), (1, 0));
        assert_eq!(s.remove(addr(1)), Change::Left);
        assert_eq!(s.remove(addr(1)), Change::Unchanged);
    }

    #[test]
    fn expire_keeps_peers_heard_at_cutoff() {
        let t0 = Instant::now();
        let mut s = Swarm::default();
        s.upsert(addr(1), true, t0);
        s.upsert(addr(2), true, t0 + Duration::from_secs(1));
        assert_eq!(s.expire(t0 + Duration::from_secs(1)), 1);
        assert!(s.seeders.contains_key(&addr(2)));
    }

    #[test]
    fn pick_orders_and_bounds() {
        let t0 = Instant::now();
        let mut s = Swarm::default();
        for p in 1..=10 {
            s.upsert(addr(p), true, t0);
        }
        for p in 11..=20 {
            s.upsert(addr(p), false, t0);
        }
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        s.pick(addr(11), false, 15, &mut rng, &mut out);
        assert_eq!(out.len(), 15);
        assert!(out[..10].iter().all(|a| s.seeders.contains_key(a)));
        assert!(!out.contains(&addr(11)));
        let mut dedup = out.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 15);
        s.pick(addr(1), true, 50, &mut rng, &mut out);
        assert_eq!(out.len(), 10, "a seeder gets leechers only");
        assert!(out.iter().all(|a| s.leechers.contains_key(a)));
    }

    #[test]
    fn pick_samples_every_seeder_eventually() {
        let t0 = Instant::now();
        let mut s = Swarm::default();
        for p in 1..=20 {
            s.upsert(addr(p), true, t0);
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
}

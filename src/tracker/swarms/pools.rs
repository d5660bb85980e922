//! One swarm's peers of one address family, as opentracker keeps them:
//! compact records (address and port, nothing else) in lists sorted by
//! address, one pair of lists (leechers, seeders) per expiry bucket. A
//! peer's role and expiry are where it sits, not fields it carries, so an
//! IPv4 peer costs 6 bytes (an IPv6 one 18) plus the vectors' slack (and in
//! a list of over 4096 peers, cut into runs so that a peer moving costs the
//! same in any swarm (`list.rs`), a run's 24-byte handle per thousand peers
//! or more); one host's peers sit together, so the per-host count in a swarm
//! is a binary search, not a table; and expiring a bucket empties its lists
//! from their ends.

use super::usage::Host;
use super::Millis;

mod answer;
mod list;
pub(super) use answer::MAX_WANT;
use list::List;

/// A peer as its table stores it: address then port, big-endian, so byte
/// order is address order.
pub(super) trait Record: Copy + Ord {
    /// The record as numbers in the same order as its bytes: searches
    /// compare these in registers instead of calling `memcmp` per step.
    type Key: Ord + Copy;
    fn key(&self) -> Self::Key;
    /// What the per-address caps count: an IPv4 address, an IPv6 /64.
    fn host(&self) -> Host;
    /// The block an answer spreads over: an IPv4 /24, an IPv6 /48.
    fn block(&self) -> u64;
    /// The whole entries of an answer's bytes, as records.
    fn entries_mut(bytes: &mut [u8]) -> &mut [Self];
}

pub(super) use crate::wire::udp::{peer_v4 as v4, peer_v6 as v6, PeerV4 as V4, PeerV6 as V6};

impl Record for V4 {
    type Key = u64;
    fn key(&self) -> u64 {
        let [a, b, c, d, p, q] = *self;
        u64::from_be_bytes([0, 0, a, b, c, d, p, q])
    }
    fn host(&self) -> Host {
        let [a, b, c, d, ..] = *self;
        Host::V4(u32::from_be_bytes([a, b, c, d]))
    }
    fn block(&self) -> u64 {
        let [a, b, c, ..] = *self;
        u64::from(u32::from_be_bytes([0, a, b, c]))
    }
    fn entries_mut(bytes: &mut [u8]) -> &mut [V4] {
        bytes.as_chunks_mut().0
    }
}

impl Record for V6 {
    type Key = (u128, u16);
    fn key(&self) -> (u128, u16) {
        let mut ip = [0; 16];
        ip.copy_from_slice(&self[..16]);
        (u128::from_be_bytes(ip), u16::from_be_bytes([self[16], self[17]]))
    }
    fn host(&self) -> Host {
        Host::V6(u64::from_be_bytes(prefix(self)))
    }
    fn block(&self) -> u64 {
        u64::from_be_bytes(prefix(self)) >> 16
    }
    fn entries_mut(bytes: &mut [u8]) -> &mut [V6] {
        bytes.as_chunks_mut().0
    }
}

/// The first 8 bytes of an IPv6 record: its /64.
fn prefix(r: &V6) -> [u8; 8] {
    let mut p = [0; 8];
    p.copy_from_slice(&r[..8]);
    p
}

/// The peers that expire together: any peer whose deadline falls in the
/// bucket ending at `end` (and was not heard from since).
#[derive(Debug)]
struct Pool<R> {
    end: Millis,
    /// `[leechers, seeders]`, each sorted by address.
    lists: [List<R>; 2],
}

/// Where `Table::find` met a peer: its pool, role and place there, and
/// where it would go in the same pool's list of the role searched first if
/// it was met in the other (`List::insert_at` takes it: a role change
/// searches no list twice).
struct Found {
    pool: usize,
    role: usize,
    at: list::At,
    place: Option<list::At>,
}

/// Peers of one family in one swarm: pools sorted by `end`, none empty.
#[derive(Debug)]
pub(super) struct Table<R> {
    pools: Vec<Pool<R>>,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table { pools: Vec::new() }
    }
}

impl<R: Record> Table<R> {
    pub fn len(&self) -> usize {
        self.pools.iter().map(|p| p.lists[0].len() + p.lists[1].len()).sum()
    }

    pub fn role_len(&self, seeders: bool) -> usize {
        self.pools.iter().map(|p| p.lists[usize::from(seeders)].len()).sum()
    }

    /// When the oldest pool expires.
    pub fn first_end(&self) -> Option<Millis> {
        self.pools.first().map(|p| p.end)
    }

    /// Peers of `host` here: a range of each sorted list.
    pub fn of_host(&self, host: Host) -> u32 {
        let n: usize = self.pools.iter().flat_map(|p| &p.lists).map(|l| l.of_host(host)).sum();
        n.try_into().unwrap_or(u32::MAX)
    }

    /// Where a peer is, searched pool by pool, newest first (a peer that
    /// announces on time sits near the end), each pool's list of role
    /// `first` before the other.
    fn find(&self, key: R::Key, first: usize) -> Option<Found> {
        self.pools.iter().enumerate().rev().find_map(|(pool, p)| {
            let place = match p.lists[first].find(key) {
                Ok(at) => return Some(Found { pool, role: first, at, place: None }),
                Err(place) => place,
            };
            let other = 1 - first;
            p.lists[other].find(key).ok().map(|at| Found { pool, role: other, at, place: Some(place) })
        })
    }

    /// Moves a known peer to the pool of `end` (and its role); returns its
    /// previous role, or None if the peer is new.
    pub fn refresh(&mut self, r: R, seeder: bool, end: Millis) -> Option<bool> {
        let role = usize::from(seeder);
        let found = self.find(r.key(), role)?;
        let was_seeder = found.role == 1;
        if let Some(pool) = self.pools.get_mut(found.pool).filter(|p| p.end == end) {
            // Its bucket already: at most a role change, whose place the search gave.
            if let Some(place) = found.place {
                pool.lists[role].insert_at(place, r); // first, so the pool never empties
                pool.lists[found.role].remove(found.at);
            }
            return Some(was_seeder);
        }
        self.take(found.pool, found.role, found.at);
        self.insert(r, seeder, end);
        Some(was_seeder)
    }

    /// Adds a peer not in the table.
    pub fn insert(&mut self, r: R, seeder: bool, end: Millis) {
        let i = match self.pools.binary_search_by_key(&end, |p| p.end) {
            Ok(i) => i,
            Err(i) => {
                // Exact fit: a 56-byte pool is rare per swarm (one per bucket in use),
                // and doubling from four held 224 bytes in each swarm of one bucket.
                self.pools.reserve_exact(1);
                self.pools.insert(i, Pool { end, lists: Default::default() });
                i
            }
        };
        if let Some(pool) = self.pools.get_mut(i) {
            pool.lists[usize::from(seeder)].insert(r);
        }
    }

    /// Forgets the peer; returns true if it was known.
    pub fn remove(&mut self, r: &R) -> bool {
        let Some(found) = self.find(r.key(), 0) else { return false };
        self.take(found.pool, found.role, found.at);
        true
    }

    fn take(&mut self, i: usize, role: usize, at: list::At) {
        let Some(pool) = self.pools.get_mut(i) else { return };
        pool.lists[role].remove(at);
        if pool.lists.iter().all(List::is_empty) {
            self.remove_pool(i);
        }
    }

    /// Drops an emptied pool, and the vector's room once it is half empty.
    fn remove_pool(&mut self, i: usize) {
        self.pools.remove(i);
        if self.pools.len() * 2 < self.pools.capacity() {
            self.pools.shrink_to_fit();
        }
    }

    /// Drops up to `budget` peers of pools that ended before `now`, telling
    /// `gone` each one; returns how many went. Pools go from the oldest, each
    /// emptied from its end, so an unfinished one is resumed where it was left.
    pub fn expire(&mut self, now: Millis, budget: &mut usize, gone: &mut impl FnMut(&R)) -> usize {
        let mut n = 0;
        while let Some(pool) = self.pools.first_mut().filter(|p| p.end < now) {
            for list in &mut pool.lists {
                while *budget > 0 {
                    let Some(r) = list.pop() else { break };
                    gone(&r);
                    *budget -= 1;
                    n += 1;
                }
            }
            if pool.lists.iter().any(|l| !l.is_empty()) {
                break; // out of budget
            }
            self.remove_pool(0);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn peer(n: u16) -> V4 {
        v4(Ipv4Addr::new(10, 0, 0, 1), n)
    }

    #[test]
    fn keys_sort_as_the_records_bytes() {
        let v4s = [peer(1), peer(256), v4(Ipv4Addr::new(9, 255, 255, 255), 65535), v4(Ipv4Addr::new(10, 0, 0, 2), 0)];
        for a in &v4s {
            for b in &v4s {
                assert_eq!(a.key().cmp(&b.key()), a.cmp(b), "{a:?} {b:?}");
            }
        }
        let v6s = [v6(Ipv6Addr::LOCALHOST, 2), v6(Ipv6Addr::LOCALHOST, 1), v6(Ipv6Addr::UNSPECIFIED, 9)];
        for a in &v6s {
            for b in &v6s {
                assert_eq!(a.key().cmp(&b.key()), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn pools_fit_exactly_and_give_room_back() {
        let mut t = Table::<V4>::default();
        for end in 1..=5 {
            t.insert(peer(end as u16), false, end);
            assert_eq!(t.pools.capacity(), t.pools.len(), "one pool more, one room more");
        }
        assert_eq!(t.pools.len(), 5);
        let mut budget = usize::MAX;
        t.expire(4, &mut budget, &mut |_| {}); // the pools ending at 1, 2 and 3
        assert_eq!(t.pools.len(), 2);
        assert!(t.pools.capacity() <= 2 * t.pools.len(), "room given back: {}", t.pools.capacity());
        assert!(t.remove(&peer(5)));
        assert!(t.pools.capacity() <= 2 * t.pools.len().max(1));
    }

    /// Random refreshes, role changes and removals in lists long enough for
    /// runs, over three pools, against a map of each peer's pool and role.
    #[test]
    fn refresh_moves_peers_as_a_reference_says() {
        use std::collections::BTreeMap;
        let mut rng = crate::common::rng::Rng::new(3);
        let mut t = Table::<V4>::default();
        let mut reference = BTreeMap::new();
        for step in 0..60_000 {
            let r = v4(Ipv4Addr::new(10, 0, rng.below(4) as u8, 1), rng.below(6000) as u16);
            let (seeder, end) = (rng.below(4) == 0, 1 + (step / 20_000) as u64 + rng.below(2) as u64);
            if rng.below(8) == 0 {
                assert_eq!(t.remove(&r), reference.remove(&r).is_some());
                continue;
            }
            let was = reference.insert(r, (end, seeder)).map(|(_, s)| s);
            let refreshed = t.refresh(r, seeder, end);
            assert_eq!(refreshed, was, "step {step}");
            if refreshed.is_none() {
                t.insert(r, seeder, end);
            }
        }
        let mut held = BTreeMap::new();
        for pool in &t.pools {
            for (role, list) in pool.lists.iter().enumerate() {
                let records = list.segments().concat();
                assert!(records.windows(2).all(|w| w[0] < w[1]), "sorted");
                held.extend(records.into_iter().map(|r| (r, (pool.end, role == 1))));
            }
        }
        assert_eq!(held, reference);
        let runs = t.pools.iter().flat_map(|p| &p.lists).filter(|l| l.segments().len() > 1).count();
        assert!(runs > 0, "no list in runs");
    }

    #[test]
    fn a_list_grows_by_a_quarter() {
        let mut t = Table::<V4>::default();
        let mut caps = Vec::new();
        for n in 0..200 {
            t.insert(peer(n), false, 1);
            let cap = t.pools[0].lists[0].segments()[0].capacity();
            if caps.last() != Some(&cap) {
                caps.push(cap);
            }
        }
        assert_eq!(&caps[..4], &[4, 8, 12, 16]);
        for w in caps.windows(2) {
            assert!(w[1] <= w[0] + (w[0] / 4).max(4), "grew from {} to {}", w[0], w[1]);
        }
        assert!(*caps.last().unwrap() < 200 + 200 / 4 + 1);
    }
}

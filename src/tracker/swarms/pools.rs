//! One swarm's peers of one address family, as opentracker keeps them:
//! compact records (address and port, nothing else) in vectors sorted by
//! address, one pair of vectors (leechers, seeders) per expiry bucket. A
//! peer's role and expiry are where it sits, not fields it carries, so an
//! IPv4 peer costs 6 bytes (an IPv6 one 18) plus the vectors' slack; one
//! host's peers sit together, so the per-host count in a swarm is a binary
//! search, not a table; and expiring a bucket drops its vectors whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::usage::Host;
use super::Millis;
use crate::common::rng::Rng;

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
    fn addr(&self) -> SocketAddr;
    /// The record of `addr`, if it is of this family.
    fn of(addr: SocketAddr) -> Option<Self>;
}

pub(super) type V4 = [u8; 6];
pub(super) type V6 = [u8; 18];

pub(super) fn v4(ip: Ipv4Addr, port: u16) -> V4 {
    let [a, b, c, d] = ip.octets();
    let [p, q] = port.to_be_bytes();
    [a, b, c, d, p, q]
}

pub(super) fn v6(ip: Ipv6Addr, port: u16) -> V6 {
    let mut r = [0; 18];
    r[..16].copy_from_slice(&ip.octets());
    r[16..].copy_from_slice(&port.to_be_bytes());
    r
}

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
    fn addr(&self) -> SocketAddr {
        let [a, b, c, d, p, q] = *self;
        SocketAddr::from((Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p, q])))
    }
    fn of(addr: SocketAddr) -> Option<V4> {
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => Some(v4(ip, addr.port())),
            IpAddr::V6(_) => None,
        }
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
    fn addr(&self) -> SocketAddr {
        let mut ip = [0; 16];
        ip.copy_from_slice(&self[..16]);
        SocketAddr::from((Ipv6Addr::from(ip), u16::from_be_bytes([self[16], self[17]])))
    }
    fn of(addr: SocketAddr) -> Option<V6> {
        match addr.ip().to_canonical() {
            IpAddr::V6(ip) => Some(v6(ip, addr.port())),
            IpAddr::V4(_) => None,
        }
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
    lists: [Vec<R>; 2],
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
        let n: usize = self
            .pools
            .iter()
            .flat_map(|p| &p.lists)
            .map(|l| l.partition_point(|r| r.host() <= host) - l.partition_point(|r| r.host() < host))
            .sum();
        n.try_into().unwrap_or(u32::MAX)
    }

    /// Pool, role and position of a peer.
    fn find(&self, r: &R) -> Option<(usize, usize, usize)> {
        // Newest first: a peer that announces on time sits near the end.
        let key = r.key();
        self.pools.iter().enumerate().rev().find_map(|(i, p)| {
            (0..2).find_map(|role| p.lists[role].binary_search_by_key(&key, R::key).ok().map(|pos| (i, role, pos)))
        })
    }

    /// Moves a known peer to the pool of `end` (and its role); returns its
    /// previous role, or None if the peer is new.
    pub fn refresh(&mut self, r: R, seeder: bool, end: Millis) -> Option<bool> {
        let (i, role, pos) = self.find(&r)?;
        let was_seeder = role == 1;
        if self.pools.get(i).is_some_and(|p| p.end == end) && was_seeder == seeder {
            return Some(was_seeder);
        }
        self.take(i, role, pos);
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
                self.pools.insert(i, Pool { end, lists: [Vec::new(), Vec::new()] });
                i
            }
        };
        if let Some(pool) = self.pools.get_mut(i) {
            let list = &mut pool.lists[usize::from(seeder)];
            if let Err(pos) = list.binary_search_by_key(&r.key(), R::key) {
                if list.len() == list.capacity() {
                    // Grow by a quarter, not double: slack is most of a record's cost.
                    list.reserve_exact((list.len() / 4).max(4));
                }
                list.insert(pos, r);
            }
        }
    }

    /// Forgets the peer; returns true if it was known.
    pub fn remove(&mut self, r: &R) -> bool {
        let Some((i, role, pos)) = self.find(r) else { return false };
        self.take(i, role, pos);
        true
    }

    fn take(&mut self, i: usize, role: usize, pos: usize) {
        let Some(pool) = self.pools.get_mut(i) else { return };
        let list = &mut pool.lists[role];
        list.remove(pos);
        if list.capacity() > 16 && list.len() * 2 < list.capacity() {
            list.shrink_to(list.len() + list.len() / 4);
        }
        if pool.lists.iter().all(Vec::is_empty) {
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

    /// The peer at position `p` of the role's pools, taken in order.
    fn at(&self, role: usize, mut p: usize) -> Option<(usize, usize)> {
        for (i, pool) in self.pools.iter().enumerate() {
            let len = pool.lists[role].len();
            if p < len {
                return Some((i, p));
            }
            p -= len;
        }
        None
    }

    fn get(&self, (i, pos): (usize, usize), role: usize) -> Option<&R> {
        self.pools.get(i)?.lists[role].get(pos)
    }

    /// Appends up to `want` peers of one role other than `skip`, spread over
    /// the address space: evenly spaced positions from a random start, and
    /// a position whose /24 (IPv6: /48) the answer already holds moves on to
    /// the next block. Only if that leaves the answer short are more peers
    /// of blocks already in it added. `blocks` holds the answer's blocks.
    pub fn sample(
        &self,
        seeders: bool,
        skip: SocketAddr,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<SocketAddr>,
        blocks: &mut Blocks,
    ) {
        let role = usize::from(seeders);
        let n = self.role_len(seeders);
        if want == 0 || n == 0 {
            return;
        }
        if n <= want {
            let all = self.pools.iter().flat_map(|p| &p.lists[role]).map(Record::addr);
            out.extend(all.filter(|a| *a != skip).take(want));
            return;
        }
        let skip = R::of(skip);
        let start = rng.below(n);
        let stride = n / want;
        // Positions (in the role's pools, taken in order) of the peers picked.
        let mut taken = Vec::with_capacity(want);
        // Positions run from `start` on, around the list at most twice
        // (`q % n`): hops can carry the walk past later targets, and the
        // second round finds the blocks a target skipped. A block is hopped
        // only if taken, and each round passes it once, so the walk is O(want).
        let mut cursor = start;
        for j in 0..want {
            let mut q = cursor.max(start + j * stride);
            while q < start + 2 * n {
                let Some((at, r)) = self.at(role, q % n).and_then(|at| Some((at, *self.get(at, role)?))) else {
                    break;
                };
                if Some(r) == skip {
                    q += 1;
                } else if blocks.contains(r.block()) {
                    q += self.block_left(at, role, r.block());
                } else {
                    blocks.insert(r.block());
                    out.push(r.addr());
                    taken.push(q % n);
                    q += 1;
                    break;
                }
            }
            cursor = q;
        }
        // Short: fill from the evenly spaced positions (distinct, so only
        // those the first pass took are skipped), then from every one in
        // turn (at most `want` + 1 are skipped).
        let spread = taken.len();
        let mut q = start; // start + j * stride, around the list: no division per peer
        for _ in 0..want {
            if taken.len() >= want {
                return;
            }
            if !taken[..spread].contains(&q) {
                self.answer_with(role, q, skip, out, &mut taken);
            }
            q += stride;
            if q >= n {
                q -= n;
            }
        }
        for q in (start..n).chain(0..start) {
            if taken.len() >= want {
                return;
            }
            if !taken.contains(&q) {
                self.answer_with(role, q, skip, out, &mut taken);
            }
        }
    }

    /// Adds the peer at position `q` of the role to the answer, unless it is `skip`.
    fn answer_with(&self, role: usize, q: usize, skip: Option<R>, out: &mut Vec<SocketAddr>, taken: &mut Vec<usize>) {
        if let Some(r) = self.at(role, q).and_then(|at| self.get(at, role)).filter(|r| Some(**r) != skip) {
            out.push(r.addr());
            taken.push(q);
        }
    }

    /// Peers from `at` to the end of its run of `block` in its list (sorted
    /// lists keep a block together): how far to move to pass the block.
    fn block_left(&self, (i, pos): (usize, usize), role: usize, block: u64) -> usize {
        let Some(list) = self.pools.get(i).map(|p| &p.lists[role]) else { return 1 };
        (list.partition_point(|r| r.block() <= block) - pos).max(1)
    }
}

/// The blocks an answer already holds: a small bit set, so a check is one
/// load (two blocks that share a bit count as one; the answer is merely a
/// little less spread).
pub(super) struct Blocks([u64; 16]);

impl Blocks {
    pub fn new() -> Blocks {
        Blocks([0; 16])
    }

    fn bit(block: u64) -> (usize, u64) {
        let h = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 10 bits
        ((h >> 6) as usize, 1 << (h & 63))
    }

    fn contains(&self, block: u64) -> bool {
        let (word, bit) = Blocks::bit(block);
        self.0.get(word).is_some_and(|w| w & bit != 0)
    }

    fn insert(&mut self, block: u64) {
        let (word, bit) = Blocks::bit(block);
        if let Some(w) = self.0.get_mut(word) {
            *w |= bit;
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_list_grows_by_a_quarter() {
        let mut t = Table::<V4>::default();
        let mut caps = Vec::new();
        for n in 0..200 {
            t.insert(peer(n), false, 1);
            let cap = t.pools[0].lists[0].capacity();
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

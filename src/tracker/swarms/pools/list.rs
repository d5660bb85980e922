//! One role's peers in one pool, sorted by address. A short list (most
//! swarms') is one vector; past `RUN` records it becomes sorted runs of at
//! most `RUN` records each, so adding or dropping a peer (or moving it
//! between roles, which a client flipping `left` does on every announce)
//! shifts one run, not half of a list that may hold a million peers. The
//! runs read in order are the one sorted vector, position for position, so
//! answers do not depend on which form a list has.

use super::Record;

/// Records a run holds at most: a shift copies 12 KiB on average
/// (IPv4; an IPv6 run stays under malloc's 128 KiB mmap threshold), and a
/// list of a million peers is a walk over a few hundred runs. Smaller runs
/// cost more than they save, in the walk's steps and cache misses: at 1024,
/// `announce_cost --skewed` took 893 ns per announce against 772 (main: 953),
/// and tracker_load's 10M fill then answered 298-304k announces/s against
/// 321k (main: 328-340k); at 512 its 1M fill held 9.1-9.4 bytes per peer,
/// malloc's holes between the runs (main: 7.6).
const RUN: usize = 4096;

#[derive(Debug)]
pub(super) enum List<R> {
    /// Up to `RUN` records.
    Flat(Vec<R>),
    /// More than `RUN / 2` records (the gap stops a list hovering at one
    /// length from switching back and forth).
    Runs(Box<Runs<R>>),
}

#[derive(Debug)]
pub(super) struct Runs<R> {
    len: usize,
    /// Each non-empty and at most `RUN` long; two neighbours hold more than
    /// `RUN / 2` together (a split leaves halves, a removal that breaks this
    /// merges), so a run holds over `RUN / 4` on average.
    runs: Vec<Vec<R>>,
}

/// Where a record sits: its run (0 in a flat list) and its place there.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    run: usize,
    pos: usize,
}

impl<R> Default for List<R> {
    fn default() -> Self {
        List::Flat(Vec::new())
    }
}

impl<R: Record> List<R> {
    pub fn len(&self) -> usize {
        match self {
            List::Flat(v) => v.len(),
            List::Runs(runs) => runs.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sorted pieces whose concatenation is the list: the vector, or the runs.
    pub fn segments(&self) -> &[Vec<R>] {
        match self {
            List::Flat(v) => std::slice::from_ref(v),
            List::Runs(runs) => &runs.runs,
        }
    }

    /// Where `key` is, or would go: the first run whose last record is not
    /// below it (the last run for a key above all), and the place in that run.
    fn search(runs: &[Vec<R>], key: R::Key) -> (usize, Result<usize, usize>) {
        let run = runs.partition_point(|s| s.last().is_some_and(|r| r.key() < key)).min(runs.len().saturating_sub(1));
        (run, runs.get(run).map_or(Err(0), |s| s.binary_search_by_key(&key, R::key)))
    }

    /// Where the record of `key` is, or else where it would go: a place
    /// `insert_at` takes while the list is unchanged.
    pub fn find(&self, key: R::Key) -> Result<At, At> {
        match self {
            List::Flat(v) => match v.binary_search_by_key(&key, R::key) {
                Ok(pos) => Ok(At { run: 0, pos }),
                Err(pos) => Err(At { run: 0, pos }),
            },
            List::Runs(runs) => match List::search(&runs.runs, key) {
                (run, Ok(pos)) => Ok(At { run, pos }),
                (run, Err(pos)) => Err(At { run, pos }),
            },
        }
    }

    /// Records whose `host()` is `host`: a range of the sorted list.
    pub fn of_host(&self, host: super::Host) -> usize {
        let segments = self.segments();
        let first = segments.partition_point(|s| s.last().is_some_and(|r| r.host() < host));
        segments
            .get(first..)
            .unwrap_or_default()
            .iter()
            .take_while(|s| s.first().is_some_and(|r| r.host() <= host))
            .map(|s| s.partition_point(|r| r.host() <= host) - s.partition_point(|r| r.host() < host))
            .sum()
    }

    /// Adds `r` unless a record of its key is there.
    pub fn insert(&mut self, r: R) {
        if let Err(place) = self.find(r.key()) {
            self.insert_at(place, r);
        }
    }

    /// Adds `r` at `place`, where `find` said its key would go.
    pub fn insert_at(&mut self, place: At, r: R) {
        let segment = match self {
            List::Flat(v) => Some(v),
            List::Runs(runs) => runs.runs.get_mut(place.run),
        };
        let Some(segment) = segment.filter(|s| place.pos <= s.len()) else { return };
        if segment.len() == segment.capacity() {
            // Grow by a quarter, not double: slack is most of a record's cost.
            segment.reserve_exact((segment.len() / 4).max(4));
        }
        segment.insert(place.pos, r);
        match self {
            List::Flat(v) if v.len() > RUN => {
                let right = split(v);
                *self = List::Runs(Box::new(Runs { len: RUN + 1, runs: vec![std::mem::take(v), right] }));
            }
            List::Flat(_) => {}
            List::Runs(runs) => {
                runs.len += 1;
                if let Some(right) = runs.runs.get_mut(place.run).filter(|s| s.len() > RUN).map(split) {
                    runs.runs.insert(place.run + 1, right);
                }
            }
        }
    }

    /// Drops the record at `at` (from `find`).
    pub fn remove(&mut self, at: At) {
        match self {
            List::Flat(v) => {
                if at.pos < v.len() {
                    v.remove(at.pos);
                    give_back(v);
                }
            }
            List::Runs(runs) => {
                let Some(segment) = runs.runs.get_mut(at.run).filter(|s| at.pos < s.len()) else { return };
                segment.remove(at.pos);
                give_back(segment);
                runs.len -= 1;
                runs.mend(at.run);
                self.flatten_if_short();
            }
        }
    }

    /// Takes the last record (expiry empties a list from its end).
    pub fn pop(&mut self) -> Option<R> {
        let r = match self {
            List::Flat(v) => return v.pop(),
            List::Runs(runs) => {
                let r = runs.runs.last_mut()?.pop();
                runs.len -= 1;
                runs.mend(runs.runs.len() - 1);
                r
            }
        };
        self.flatten_if_short();
        r
    }

    /// Runs of `RUN / 2` records or fewer in all become one vector.
    fn flatten_if_short(&mut self) {
        if let List::Runs(runs) = self {
            if runs.len <= RUN / 2 {
                let mut v = Vec::with_capacity(runs.len + runs.len / 4);
                runs.runs.iter().for_each(|s| v.extend_from_slice(s));
                *self = List::Flat(v);
            }
        }
    }
}

impl<R: Copy> Runs<R> {
    /// After a removal from run `i`: drops it if empty, else merges it with a
    /// neighbour if the two hold `RUN / 2` or fewer together. Before the
    /// removal each pair held more, so one merge restores that for all.
    fn mend(&mut self, i: usize) {
        let len = |j: usize| self.runs.get(j).map_or(usize::MAX, Vec::len);
        if len(i) == 0 {
            self.runs.remove(i);
        } else if len(i).saturating_add(len(i + 1)) <= RUN / 2 {
            self.merge(i);
        } else if i > 0 && len(i - 1).saturating_add(len(i)) <= RUN / 2 {
            self.merge(i - 1);
        }
        if self.runs.len() * 2 < self.runs.capacity() {
            self.runs.shrink_to_fit();
        }
    }

    /// Appends run `i + 1` to run `i`.
    fn merge(&mut self, i: usize) {
        let right = self.runs.remove(i + 1);
        if let Some(left) = self.runs.get_mut(i) {
            left.reserve_exact(right.len());
            left.extend_from_slice(&right);
        }
    }
}

/// Cuts a full vector in two: keeps the first half, returns the second.
/// Both get new room a quarter over their length, and the old block goes
/// back whole: shrunk in place, it left a tail no run could reuse.
fn split<R: Copy>(v: &mut Vec<R>) -> Vec<R> {
    let (left, right) = v.split_at(v.len() / 2);
    let room = |s: &[R]| {
        let mut half = Vec::with_capacity(s.len() + s.len() / 4);
        half.extend_from_slice(s);
        half
    };
    let right = room(right);
    *v = room(left);
    right
}

/// The room of a vector half empty, given back but for a quarter of its length.
fn give_back<R>(v: &mut Vec<R>) {
    if v.capacity() > 16 && v.len() * 2 < v.capacity() {
        v.shrink_to(v.len() + v.len() / 4);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::{v4, v6, Pool, Table, MAX_WANT, V4, V6};
    use super::*;
    use crate::common::rng::Rng;

    /// Peer `n` of /24 number `block`.
    fn peer(block: u8, n: u16) -> V4 {
        v4(Ipv4Addr::new(10, 0, block, (n % 200) as u8), n)
    }

    fn records(list: &List<V4>) -> Vec<V4> {
        list.segments().concat()
    }

    /// The invariants the doc comments state, and `len` agreeing with the runs.
    fn check(list: &List<V4>) {
        let all = records(list);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no record twice");
        assert_eq!(list.len(), all.len());
        match list {
            List::Flat(v) => assert!(v.len() <= RUN),
            List::Runs(runs) => {
                assert!(runs.len > RUN / 2, "{} records in runs", runs.len);
                assert!(runs.runs.iter().all(|s| !s.is_empty() && s.len() <= RUN));
                assert!(runs.runs.windows(2).all(|w| w[0].len() + w[1].len() > RUN / 2), "neighbours merged");
            }
        }
    }

    #[test]
    fn a_long_list_splits_into_runs_and_joins_again() {
        let mut list = List::default();
        for n in 0..=RUN as u16 {
            list.insert(peer(0, n));
            assert_eq!(matches!(list, List::Runs(_)), usize::from(n) == RUN, "runs past {RUN} records only");
        }
        check(&list);
        assert_eq!(list.segments().len(), 2);
        for n in 0..=(RUN / 2) as u16 {
            let at = list.find(peer(0, n).key()).unwrap();
            list.remove(at);
            check(&list);
        }
        assert!(matches!(list, List::Flat(_)), "{} records: one vector again", list.len());
        let mut rest: Vec<V4> = (RUN as u16 / 2 + 1..=RUN as u16).map(|n| peer(0, n)).collect();
        rest.sort();
        assert_eq!(records(&list), rest);
    }

    #[test]
    fn insert_remove_and_flip_at_a_run_boundary() {
        // Even ports only, so each boundary has a gap to insert into.
        let port = |p: u16| v4(Ipv4Addr::new(10, 0, 0, 1), p);
        let (mut leechers, mut seeders) = (List::default(), List::default());
        for n in 0..3 * RUN as u16 {
            leechers.insert(port(2 * n));
        }
        check(&leechers);
        assert!(leechers.segments().len() > 2);
        let last_of_first = *leechers.segments()[0].last().unwrap();
        let first_of_second = leechers.segments()[1][0];
        let between = port(u16::from_be_bytes([last_of_first[4], last_of_first[5]]) + 1);
        assert!(last_of_first < between && between < first_of_second);
        for r in [last_of_first, first_of_second] {
            // A flip: out of one role's list, into the other's, and back.
            let at = leechers.find(r.key()).unwrap();
            leechers.remove(at);
            assert!(leechers.find(r.key()).is_err());
            seeders.insert(r);
            let at = seeders.find(r.key()).unwrap();
            seeders.remove(at);
            leechers.insert(r);
            check(&leechers);
            assert!(leechers.find(r.key()).is_ok());
        }
        let before = leechers.len();
        leechers.insert(between);
        leechers.insert(between);
        assert_eq!(leechers.len(), before + 1, "a record is held once");
        check(&leechers);
        assert!(seeders.is_empty());
    }

    #[test]
    fn of_host_counts_across_runs() {
        let mut list = List::default();
        // Host 10.0.0.7 holds three runs' worth of ports, between two other hosts.
        let host = |a: u8, port: usize| v4(Ipv4Addr::new(10, 0, 0, a), port as u16);
        for port in 0..3 * RUN {
            list.insert(host(7, port));
        }
        for port in 0..RUN / 2 {
            list.insert(host(6, port));
            list.insert(host(8, port));
        }
        check(&list);
        assert!(list.segments().len() > 3);
        assert_eq!(list.of_host(host(7, 0).host()), 3 * RUN);
        assert_eq!(list.of_host(host(6, 0).host()), RUN / 2);
        assert_eq!(list.of_host(host(8, 0).host()), RUN / 2);
        assert_eq!(list.of_host(host(9, 0).host()), 0);
        assert_eq!(list.of_host(host(1, 0).host()), 0);
    }

    /// Random inserts, removals and pops against a sorted vector.
    #[test]
    fn runs_read_as_the_sorted_vector() {
        let mut rng = Rng::new(5);
        for case in 0..20 {
            let mut list = List::default();
            let mut reference: Vec<V4> = Vec::new();
            let span = [300, 3000, 12_000][case % 3];
            for _ in 0..20_000 {
                let r = peer(rng.below(4) as u8, rng.below(span) as u16);
                match rng.below(10) {
                    0..=5 => {
                        list.insert(r);
                        if let Err(i) = reference.binary_search(&r) {
                            reference.insert(i, r);
                        }
                    }
                    6..=8 => {
                        let found = list.find(r.key());
                        assert_eq!(found.is_ok(), reference.binary_search(&r).is_ok());
                        if let Ok(at) = found {
                            list.remove(at);
                            reference.retain(|x| *x != r);
                        }
                    }
                    _ => assert_eq!(list.pop(), reference.pop()),
                }
            }
            check(&list);
            assert_eq!(records(&list), reference, "case {case}");
            while list.pop().is_some() {
                check(&list);
            }
        }
    }

    /// The same with IPv6 records, whose hosts are /64s: runs stay sorted,
    /// and a /64's count spans the runs it fills.
    #[test]
    fn ipv6_runs_read_as_the_sorted_vector() {
        use std::net::Ipv6Addr;
        let peer6 = |net: u16, n: usize| v6(Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 0, n as u16), 6881);
        let mut rng = Rng::new(11);
        let mut list: List<V6> = List::default();
        let mut reference: Vec<V6> = Vec::new();
        for _ in 0..4 * RUN {
            let r = peer6(rng.below(3) as u16, rng.below(3 * RUN));
            list.insert(r);
            if let Err(i) = reference.binary_search(&r) {
                reference.insert(i, r);
            }
            if rng.below(4) == 0 {
                let gone = reference[rng.below(reference.len())];
                list.remove(list.find(gone.key()).unwrap());
                reference.retain(|x| *x != gone);
            }
        }
        assert!(list.segments().len() > 1, "{} records in one vector", list.len());
        assert!(list.segments().iter().all(|s| !s.is_empty() && s.len() <= RUN));
        assert_eq!(list.segments().concat(), reference);
        for net in 0..4 {
            let host = peer6(net, 0).host();
            assert_eq!(list.of_host(host), reference.iter().filter(|r| r.host() == host).count(), "/64 {net}");
        }
    }

    /// Answers from lists in runs equal those from the same lists as one
    /// vector each (how every list was kept before runs): same peers, same order.
    #[test]
    fn answers_from_runs_equal_answers_from_one_vector() {
        let mut rng = Rng::new(9);
        let mut in_runs = 0;
        for case in 0..60 {
            let mut t = Table::<V4>::default();
            let blocks = [1, 3, 40][case % 3];
            let span = [600, 12_000, 40_000][case / 3 % 3];
            let mut peers = Vec::new();
            for _ in 0..span {
                let r = peer(rng.below(blocks) as u8, rng.below(span) as u16);
                let end = 1 + rng.below(1 + case / 9 % 3) as u64; // one pool in a third of the cases
                if t.refresh(r, rng.below(4) == 0, end).is_none() {
                    t.insert(r, rng.below(4) == 0, end);
                }
                peers.push(r);
            }
            in_runs += usize::from(t.pools.iter().flat_map(|p| &p.lists).any(|l| matches!(l, List::Runs(_))));
            let flat = Table {
                pools: t
                    .pools
                    .iter()
                    .map(|p| Pool { end: p.end, lists: [0, 1].map(|role| List::Flat(records(&p.lists[role]))) })
                    .collect(),
            };
            for _ in 0..20 {
                let me = if rng.below(2) == 0 { peers[rng.below(peers.len().max(1))] } else { peer(0, 7) };
                let room = [None, Some(rng.below(60))][rng.below(2)];
                let want = rng.below(MAX_WANT) + 1;
                let seed = rng.next_u64();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                t.answer(me, room, want.max(room.unwrap_or(0)), &mut Rng::new(seed), &mut a);
                flat.answer(me, room, want.max(room.unwrap_or(0)), &mut Rng::new(seed), &mut b);
                assert_eq!(a, b, "case {case}: {} peers", t.len());
            }
        }
        assert!(in_runs > 20, "{in_runs} tables with runs");
    }
}

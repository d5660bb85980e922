//! Which chunk to request next: rarest first among the chunks a peer holds,
//! random among equals, a few random first picks, and an end game.
//!
//! As libtorrent's piece_picker, every chunk sits in one vector ordered by
//! bucket, with the start of each bucket and each chunk's position, so
//! moving a chunk to the next bucket is one swap with the bucket boundary:
//! an availability change is O(1) and a pick for a peer that holds the
//! rarest chunks looks at the front of the pickable part only. Buckets:
//!
//! - 0: held, never picked again;
//! - 1: requested but not received (the end game looks only here);
//! - 2 + a: wanted and unrequested, held by `a` other peers (`a` capped at
//!   `RANK_CAP`, so a peer repeating `have` cannot make us grow the bucket table).
//!
//! The order starts shuffled, which with a random start inside a bucket
//! gives random choice among equally rare chunks. Indices from the network
//! are range-checked at the public methods; private ones index directly.

use super::bitfield::Bitfield;
use crate::common::rng::Rng;

/// At most this many requests are outstanding for one chunk in the end game:
/// enough to route around one slow peer without wasting much bandwidth.
pub const ENDGAME_MAX: u32 = 2;

/// Availabilities above this share one bucket; rarity beyond it is moot.
const RANK_CAP: u32 = 1024;

/// How many random draws a random-first pick tries before scanning.
const RANDOM_TRIES: u32 = 32;

pub struct Picker {
    held: Bitfield,
    /// The chunks in buckets 2 and up (wanted, unrequested), so a walk over
    /// a peer's chunks skips what it could not be asked for a word at a time.
    pickable: Bitfield,
    /// Other connected peers holding each chunk.
    avail: Vec<u32>,
    /// Outstanding requests per chunk; 0 unless in bucket 1.
    requests: Vec<u32>,
    /// Every chunk, grouped by bucket.
    order: Vec<u32>,
    /// Index in `order` of each chunk.
    pos: Vec<u32>,
    /// Start in `order` of each bucket; a bucket ends where the next starts,
    /// the last at `order.len()`.
    start: Vec<u32>,
    random_first: u32,
    rng: Rng,
}

impl Picker {
    /// `have`: chunks already held (a resumed or seeding torrent), never
    /// wanted. `random_first`: how many of the first picks are uniformly
    /// random among the chunks the peer holds, ignoring rarity (so a new
    /// peer quickly has something to trade). `seed` for the internal Rng.
    pub fn new(have: &Bitfield, random_first: u32, seed: u64) -> Picker {
        let mut rng = Rng::new(seed);
        let n = have.len();
        let held = have.count();
        let mut order: Vec<u32> = have.ones().collect();
        order.extend((0..n).filter(|&i| !have.get(i)));
        rng.shuffle(&mut order[held as usize..]);
        let mut pos = vec![0; n as usize];
        for (p, &c) in (0u32..).zip(&order) {
            pos[c as usize] = p;
        }
        let mut pickable = Bitfield::new(n);
        order[held as usize..].iter().for_each(|&c| _ = pickable.set(c));
        Picker {
            held: have.clone(),
            pickable,
            avail: vec![0; n as usize],
            requests: vec![0; n as usize],
            order,
            pos,
            start: vec![0, held, held],
            random_first,
            rng,
        }
    }

    /// A connected peer's bitfield arrived: +1 availability for each chunk it holds.
    pub fn add_holder(&mut self, bits: &Bitfield) {
        for i in bits.ones() {
            self.add_have(i);
        }
    }

    /// That peer is gone: -1 for each chunk it held (pass its latest bitfield).
    pub fn remove_holder(&mut self, bits: &Bitfield) {
        for i in bits.ones() {
            self.remove_have(i);
        }
    }

    /// A connected peer no longer offers one chunk (a seed said `Spread`): -1.
    pub fn remove_have(&mut self, index: u32) {
        if index < self.held.len() {
            // Saturating: if the caller's books disagree with ours, stay at 0.
            self.rebucket(index, |p| p.avail[index as usize] = p.avail[index as usize].saturating_sub(1));
        }
    }

    /// A connected peer announced a newly held chunk: +1. Call it once per
    /// peer and chunk (when `Bitfield::set` on its bitfield returns true).
    pub fn add_have(&mut self, index: u32) {
        if index < self.held.len() {
            self.rebucket(index, |p| p.avail[index as usize] = p.avail[index as usize].saturating_add(1));
        }
    }

    /// The next chunk to request from a peer that holds `theirs`: one we
    /// lack, that `theirs` holds, and that is not requested from anybody yet,
    /// rarest first, random among equals; it counts one outstanding request.
    /// When no connected peer holds such a chunk, the end game: a chunk it holds that
    /// is requested but not received, has fewer than `ENDGAME_MAX` requests
    /// (the fewest wins), and for which `asked` (does this same peer already
    /// have a request for it) is false; it counts one more request. None if
    /// there is nothing to ask this peer.
    pub fn pick(&mut self, theirs: &Bitfield, asked: impl Fn(u32) -> bool) -> Option<u32> {
        if let Some(c) = self.pick_unrequested(theirs) {
            self.rebucket(c, |p| p.requests[c as usize] = 1);
            return Some(c);
        }
        let c = self.pick_endgame(theirs, asked)?;
        self.requests[c as usize] += 1;
        Some(c)
    }

    /// One outstanding request for `index` will not be answered (peer gone,
    /// rejected, cancelled): -1 outstanding; at 0 the chunk is unrequested
    /// again and can be picked normally. Ignored for held chunks.
    pub fn release(&mut self, index: u32) {
        if self.requests.get(index as usize).is_some_and(|&r| r > 0) {
            self.rebucket(index, |p| p.requests[index as usize] -= 1);
        }
    }

    /// A verified chunk: held from now on, never picked again. True if it was
    /// not held before (a duplicate arrival in end game returns false).
    pub fn complete(&mut self, index: u32) -> bool {
        if index >= self.held.len() || self.held.get(index) {
            return false;
        }
        self.rebucket(index, |p| {
            p.held.set(index);
            p.requests[index as usize] = 0;
        });
        true
    }

    /// Every chunk held.
    pub fn is_complete(&self) -> bool {
        self.held.is_full()
    }

    /// What we hold.
    pub fn held(&self) -> &Bitfield {
        &self.held
    }

    /// Other connected peers holding `index` (0 when out of range).
    pub fn availability(&self, index: u32) -> u32 {
        self.avail.get(index as usize).copied().unwrap_or(0)
    }

    /// True once every chunk we lack is requested: only the end game is left.
    pub fn all_requested(&self) -> bool {
        self.bucket_start(2) >= self.order.len()
    }

    /// True if `theirs` holds a chunk we lack and have asked nobody for.
    pub fn unasked_in(&self, theirs: &Bitfield) -> bool {
        theirs.len() == self.held.len() && theirs.common(&self.pickable).next().is_some()
    }

    /// True if `theirs` holds any chunk we lack (the peer is worth asking).
    pub fn wants_from(&self, theirs: &Bitfield) -> bool {
        if theirs.len() == self.held.len() {
            theirs.has_any_missing_from(&self.held)
        } else {
            theirs.ones().any(|i| i < self.held.len() && !self.held.get(i))
        }
    }

    /// Random-first or rarest-first among the unrequested chunks `theirs` holds.
    fn pick_unrequested(&mut self, theirs: &Bitfield) -> Option<u32> {
        let (first, end) = (self.bucket_start(2), self.order.len());
        if first >= end {
            return None;
        }
        if self.random_first > 0 {
            for _ in 0..RANDOM_TRIES {
                let c = self.order[first + self.rng.below(end - first)];
                if theirs.get(c) {
                    self.random_first -= 1;
                    return Some(c);
                }
            }
            // Few of the candidates are theirs: a uniform choice among those.
            let c = self.sample_theirs(theirs, |_| 0)?;
            self.random_first -= 1;
            return Some(c);
        }
        // Bucket by bucket from the rarest, each from a random start; a
        // sparse peer would make this slow, so past a budget walk its
        // bitfield instead.
        let mut budget = end / 64 + 64;
        for b in 2..self.start.len() {
            let (s, e) = (self.bucket_start(b), self.bucket_start(b + 1));
            if s >= e {
                continue;
            }
            let offset = self.rng.below(e - s);
            for p in (s + offset..e).chain(s..s + offset) {
                let c = self.order[p];
                if theirs.get(c) {
                    return Some(c);
                }
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return self.sample_theirs(theirs, |b| b);
                }
            }
        }
        None
    }

    /// A uniform choice among the unrequested chunks held by `theirs` with
    /// the lowest `key(bucket)` (reservoir sampling over its bitfield).
    fn sample_theirs(&mut self, theirs: &Bitfield, key: impl Fn(usize) -> usize) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        let mut ties = 0;
        for c in theirs.common(&self.pickable) {
            let k = key(self.bucket(c));
            match best {
                Some((bk, _)) if k > bk => continue,
                Some((bk, _)) if k == bk => ties += 1,
                _ => ties = 1,
            }
            if ties == 1 || self.rng.below(ties) == 0 {
                best = Some((k, c));
            }
        }
        best.map(|(_, c)| c)
    }

    /// The requested chunk `theirs` holds with the fewest requests below
    /// `ENDGAME_MAX` that this peer has not been asked for; none while any
    /// connected peer holds an unrequested chunk (a duplicate then takes
    /// upload another peer could use: a third of all chunk transfers at 100
    /// peers in the simulator).
    fn pick_endgame(&mut self, theirs: &Bitfield, asked: impl Fn(u32) -> bool) -> Option<u32> {
        let (s, e) = (self.bucket_start(1), self.bucket_start(2));
        if s >= e || self.bucket_start(3) < self.order.len() {
            return None;
        }
        let offset = self.rng.below(e - s);
        let mut best: Option<(u32, u32)> = None;
        for p in (s + offset..e).chain(s..s + offset) {
            let c = self.order[p];
            let r = self.requests[c as usize];
            if r < ENDGAME_MAX && best.is_none_or(|(br, _)| r < br) && theirs.get(c) && !asked(c) {
                best = Some((r, c));
                if r <= 1 {
                    break; // no requested chunk has fewer
                }
            }
        }
        best.map(|(_, c)| c)
    }

    /// The bucket `c` (in range) belongs in from its state.
    fn bucket(&self, c: u32) -> usize {
        if self.held.get(c) {
            0
        } else if self.requests[c as usize] > 0 {
            1
        } else {
            2 + self.avail[c as usize].min(RANK_CAP) as usize
        }
    }

    /// Applies `change` to the state of `c` (in range) and moves it to the
    /// bucket it now belongs in, one boundary swap per bucket crossed.
    fn rebucket(&mut self, c: u32, change: impl FnOnce(&mut Picker)) {
        let mut from = self.bucket(c);
        change(self);
        let to = self.bucket(c);
        match (from >= 2, to >= 2) {
            (true, false) => _ = self.pickable.clear(c),
            (false, true) => _ = self.pickable.set(c),
            _ => {}
        }
        while from < to {
            if self.start.len() < from + 2 {
                self.start.push(self.order.len() as u32);
            }
            self.start[from + 1] -= 1;
            self.swap_to(c, self.start[from + 1] as usize);
            from += 1;
        }
        while from > to {
            self.swap_to(c, self.start[from] as usize);
            self.start[from] += 1;
            from -= 1;
        }
    }

    /// Swaps `c` with the chunk at position `p`.
    fn swap_to(&mut self, c: u32, p: usize) {
        let q = self.pos[c as usize] as usize;
        let other = self.order[p];
        self.order.swap(p, q);
        self.pos[other as usize] = q as u32;
        self.pos[c as usize] = p as u32;
    }

    fn bucket_start(&self, b: usize) -> usize {
        self.start.get(b).map_or(self.order.len(), |&s| s as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn bits(len: u32, held: impl IntoIterator<Item = u32>) -> Bitfield {
        let mut b = Bitfield::new(len);
        held.into_iter().for_each(|i| _ = b.set(i));
        b
    }

    fn never(_: u32) -> bool {
        false
    }

    /// A picker for `len` chunks, none held, with these peers connected.
    fn with(len: u32, random_first: u32, seed: u64, peers: &[&Bitfield]) -> Picker {
        let mut p = Picker::new(&Bitfield::new(len), random_first, seed);
        peers.iter().for_each(|b| p.add_holder(b));
        p
    }

    fn picks(p: &mut Picker, theirs: &Bitfield, n: usize) -> BTreeSet<u32> {
        (0..n).filter_map(|_| p.pick(theirs, never)).collect()
    }

    /// The tables agree: positions invert the order, every chunk sits in
    /// the bucket its state says.
    fn check(p: &Picker) {
        for (i, &c) in p.order.iter().enumerate() {
            assert_eq!(p.pos[c as usize] as usize, i);
            let b = p.bucket(c);
            assert!(p.bucket_start(b) <= i && i < p.bucket_start(b + 1), "chunk {c} at {i} not in bucket {b}");
        }
    }

    #[test]
    fn rarest_first_among_what_the_peer_holds_and_remove_holder() {
        let (a, b, c) = (Bitfield::full(10), bits(10, 0..5), bits(10, (0..5).chain([7])));
        let mut p = with(10, 0, 1, &[&a, &b, &c]);
        assert_eq!((p.availability(0), p.availability(5), p.availability(7)), (3, 1, 2));
        assert!(p.pick(&b, never).is_some_and(|i| i < 5), "B only holds the common ones");
        assert_eq!(p.pick(&bits(10, [0, 1, 7]), never), Some(7));
        assert_eq!(picks(&mut p, &a, 4), BTreeSet::from([5, 6, 8, 9]), "held by A alone");
        check(&p);
        // Once B and C leave, the chunks only they held with A are the rarest.
        let (a, b, c) = (Bitfield::full(4), bits(4, [0, 1]), bits(4, [2, 3]));
        let mut p = with(4, 0, 5, &[&a, &b, &c]);
        p.remove_holder(&b);
        p.remove_holder(&b); // one too many: stays at zero
        assert_eq!((p.availability(0), p.availability(1), p.availability(2)), (0, 0, 2));
        assert_eq!(picks(&mut p, &a, 2), BTreeSet::from([0, 1]));
        check(&p);
    }

    #[test]
    fn unasked_in_sees_only_chunks_asked_of_nobody() {
        let b = bits(10, [3, 4]);
        let mut p = with(10, 0, 1, &[&b]);
        assert!(p.unasked_in(&b));
        assert!(!p.unasked_in(&bits(10, [])), "holds nothing");
        let first = p.pick(&b, never);
        assert!(p.unasked_in(&b), "one of its two is still unasked");
        p.pick(&b, never);
        assert!(!p.unasked_in(&b), "both asked");
        p.release(first.unwrap());
        assert!(p.unasked_in(&b), "a refused one is unasked again");
        assert!(!p.unasked_in(&bits(11, [3])), "a bitfield of another length");
    }

    #[test]
    fn random_among_equals_and_every_chunk_covered() {
        let full = Bitfield::full(100);
        let firsts: BTreeSet<_> = (0..50).map(|seed| with(100, 0, seed, &[&full]).pick(&full, never)).collect();
        assert!(firsts.len() > 20, "{firsts:?}");
        let mut p = with(100, 0, 7, &[&full]);
        assert_eq!(picks(&mut p, &full, 100), (0..100).collect());
        assert_eq!(p.pick(&full, |_| true), None);
        check(&p);
    }

    #[test]
    fn random_first_ignores_rarity() {
        // Chunks 0..10 are held by one peer, the rest by two.
        let (a, b) = (Bitfield::full(100), bits(100, 10..100));
        let mut common = 0;
        for seed in 0..20 {
            let mut p = with(100, 3, seed, &[&a, &b]);
            common += picks(&mut p, &a, 3).iter().filter(|&&i| i >= 10).count();
            assert!(p.pick(&a, never).is_some_and(|i| i < 10), "random picks used up: rarest again");
            assert!(picks(&mut with(100, 0, seed, &[&a, &b]), &a, 10).iter().all(|&i| i < 10));
        }
        assert!(common > 40, "{common} of 60 random picks were common chunks");
        // A peer with one wanted chunk among many still gets it.
        assert_eq!(with(1000, 2, 3, &[]).pick(&bits(1000, [500]), never), Some(500));
    }

    #[test]
    fn release_and_complete() {
        let mut p = Picker::new(&bits(8, [0]), 0, 1);
        let peer = bits(8, [0, 3]);
        assert_eq!(p.pick(&peer, never), Some(3));
        assert_eq!(p.pick(&peer, |_| true), None);
        p.release(5); // not requested: no effect
        p.release(3);
        assert_eq!(p.pick(&peer, |_| true), Some(3), "a normal pick again, no end game");
        assert!(!p.complete(0) && !p.complete(8));
        assert!(p.complete(3));
        assert!(!p.complete(3), "a duplicate in end game");
        p.release(3);
        assert_eq!(p.pick(&peer, never), None);
        assert!(p.complete(5), "unrequested chunks may complete too");
        check(&p);
        let full = Bitfield::full(8);
        picks(&mut p, &full, 8).iter().for_each(|&i| assert!(p.complete(i)));
        assert!(p.is_complete() && p.held().is_full());
        assert_eq!(p.pick(&full, never), None);
    }

    #[test]
    fn end_game() {
        let mut p = with(5, 0, 1, &[]);
        let (a, b) = (bits(5, 0..4), bits(5, [0, 1, 2, 4]));
        assert_eq!(p.pick(&bits(5, [4]), never), Some(4));
        let asked_a = picks(&mut p, &a, 4);
        assert_eq!(p.pick(&a, |i| asked_a.contains(&i)), None, "A was asked for all");
        let mut asked_b = Vec::new();
        while let Some(i) = p.pick(&b, |i| asked_b.contains(&i)) {
            assert!(!asked_b.contains(&i), "asked twice for {i}");
            asked_b.push(i);
        }
        assert_eq!(asked_b.len(), 4);
        assert!(p.requests.iter().all(|&r| r <= ENDGAME_MAX));
        assert_eq!(p.pick(&b, never), None, "C: all of B's chunks have two requests");
        assert_eq!(p.pick(&Bitfield::full(5), never), Some(3), "the fewest outstanding");
        p.release(asked_b[0]);
        assert_eq!(p.pick(&b, never), Some(asked_b[0]));
        assert!(p.complete(asked_b[0]));
        assert_eq!(p.pick(&bits(5, [asked_b[0]]), never), None);
        check(&p);
    }

    #[test]
    fn no_end_game_while_a_peer_holds_an_unrequested_chunk() {
        let (a, b) = (bits(4, [0, 1]), bits(4, 0..4));
        let mut p = with(4, 0, 1, &[&a, &b]);
        let asked_a = picks(&mut p, &a, 2);
        assert_eq!(p.pick(&a, |i| asked_a.contains(&i)), None, "A holds nothing unrequested");
        let asked_b = picks(&mut p, &b, 2);
        assert_eq!(asked_b, BTreeSet::from([2, 3]), "B is asked for what nobody was asked for, not a duplicate");
        assert!(matches!(p.pick(&b, |i| asked_b.contains(&i)), Some(0 | 1)), "then every chunk is requested: end game");
        check(&p);
    }

    #[test]
    fn wants_from() {
        let mut p = Picker::new(&bits(10, [0]), 0, 1);
        assert!(!p.wants_from(&bits(10, [0])) && !p.wants_from(&Bitfield::new(10)));
        assert!(p.wants_from(&bits(10, [0, 9])));
        assert!(p.complete(9));
        assert!(!p.wants_from(&bits(10, [0, 9])));
        assert!(!p.wants_from(&bits(16, [0, 9, 12])), "a longer bitfield: only our chunks count");
        assert!(p.wants_from(&bits(3, [2])));
    }

    #[test]
    fn out_of_range_is_ignored() {
        let long = bits(20, [3, 10, 15, 19]);
        let mut p = with(10, 0, 1, &[&long]);
        p.add_have(10);
        p.add_have(u32::MAX);
        p.remove_holder(&bits(20, [12]));
        p.release(10);
        assert!(!p.complete(10));
        assert_eq!((p.availability(3), p.availability(10)), (1, 0));
        assert_eq!(p.pick(&long, never), Some(3));
        assert_eq!(p.pick(&long, |_| true), None);
        assert_eq!(p.pick(&bits(1000, 10..1000), never), None);
        // Repeated haves are counted but the bucket table stays bounded.
        (0..5000).for_each(|_| p.add_have(4));
        assert_eq!(p.availability(4), 5000);
        assert!(p.start.len() <= RANK_CAP as usize + 3);
        check(&p);
    }

    #[test]
    fn random_operations_keep_the_tables_consistent() {
        let mut rng = Rng::new(99);
        let mut p = Picker::new(&bits(64, [1, 2, 40]), 2, 4);
        let peers: Vec<_> =
            (0..6).map(|_| bits(64, (0..64).filter(|_| rng.below(3) > 0).collect::<Vec<_>>())).collect();
        peers.iter().for_each(|b| p.add_holder(b));
        for _ in 0..3000 {
            let peer = &peers[rng.below(peers.len())];
            match rng.below(6) {
                0 => p.add_holder(peer),
                1 => p.remove_holder(peer),
                2 => p.release(rng.below(70) as u32),
                3 => _ = p.complete(rng.below(70) as u32),
                _ => {
                    let rarest = peer.ones().map(|i| p.bucket(i)).filter(|&b| b >= 2).min();
                    let random = p.random_first > 0;
                    if let (Some(i), Some(r), false) = (p.pick(peer, never), rarest, random) {
                        assert_eq!((p.requests[i as usize], 2 + p.availability(i) as usize), (1, r), "rarest");
                    }
                }
            }
            check(&p);
        }
    }

    #[test]
    fn large_files_are_not_quadratic() {
        let m = 1_000_000;
        let full = Bitfield::full(m);
        let mut p = with(m, 4, 1, &[&full, &bits(m, (0..m).step_by(3))]);
        assert_eq!(picks(&mut p, &full, 1000).len(), 1000);
        assert_eq!(p.pick(&bits(m, [m - 1]), never), Some(m - 1), "a sparse peer");
        // The rarest bucket is full of chunks this peer lacks: past the scan
        // budget its own bitfield is searched, and rarity still wins.
        let (x, y) = (bits(100_000, (0..90_000).filter(|&i| i != 5)), bits(100_000, (90_000..100_000).chain([5])));
        assert_eq!(with(100_000, 0, 3, &[&x, &y, &bits(100_000, 90_000..100_000)]).pick(&y, never), Some(5));

        let n = 200_000;
        let full = Bitfield::full(n);
        let mut p = Picker::new(&bits(n, (0..n).step_by(2)), 0, 2);
        p.add_holder(&full);
        let mut got = 0;
        while let Some(i) = p.pick(&full, never) {
            assert!(p.complete(i), "{i} picked twice");
            got += 1;
        }
        assert_eq!((got, p.is_complete()), (n / 2, true));
    }
}

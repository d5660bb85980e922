//! An answer's peers, chosen from a table: as many as asked, spread over
//! address blocks, written straight into the answer as the records' own
//! bytes, each role's part shuffled as it is written. Nothing is allocated
//! per answer.

use super::{Pool, Record, Table};
use crate::common::rng::Rng;

/// Peers one answer holds at most (both protocols ask for 200 at most).
pub const MAX_WANT: usize = 256;

impl<R: Record> Table<R> {
    /// Appends an answer's entries to `out`: up to `seeder_room` seeders
    /// (none if None), then leechers up to `want` in all, never `me`, spread
    /// over address blocks, each role's part shuffled.
    /// `want` is at most `MAX_WANT`.
    pub fn answer(&self, me: R, seeder_room: Option<usize>, want: usize, rng: &mut Rng, out: &mut Vec<u8>) {
        let mut blocks = Bits::new();
        let seeders = seeder_room.map_or(0, |room| self.sample(true, me, room, rng, out, &mut blocks));
        self.sample(false, me, want - seeders, rng, out, &mut blocks);
    }

    /// Appends to `out` up to `want` entries of the role's peers other than
    /// `skip`, in random order (`Part`), spread over the address space:
    /// evenly spaced positions from a random start, and a position whose /24
    /// (IPv6: /48) the answer already holds moves on to the next block. Only
    /// if that leaves the answer short are more peers of blocks already in it
    /// added. `blocks` holds the answer's blocks. Returns how many were appended.
    fn sample(
        &self,
        seeders: bool,
        skip: R,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<u8>,
        blocks: &mut Bits,
    ) -> usize {
        let role = usize::from(seeders);
        let n = self.role_len(seeders);
        if want == 0 || n == 0 {
            return 0;
        }
        // The answer's room, written in place and cut to what was taken.
        let begin = out.len();
        out.resize(begin + want.min(n) * size_of::<R>(), 0);
        let mut part = Part::new(R::entries_mut(&mut out[begin..]));
        if n <= want {
            // All of them but the asker.
            let records = self.pools.iter().flat_map(|p| p.lists[role].segments()).flatten();
            records.filter(|r| **r != skip).for_each(|r| part.push(*r, rng));
        } else {
            let start = rng.below(n);
            // Most swarms hold a role's peers in one bucket and one run: read
            // it by index, without a walk's state between the sampling loop's turns.
            let one = match &self.pools[..] {
                [pool] => match pool.lists[role].segments() {
                    [run] => Some(run.as_slice()),
                    _ => None,
                },
                _ => None,
            };
            let whole = one_block(self.pools.iter().map(|p| p.lists[role].segments()));
            match one {
                Some(run) => spread(|| run, || std::iter::once(run), whole, n, start, skip, &mut part, rng, blocks),
                None => {
                    let runs = || self.pools.iter().flat_map(move |p| p.lists[role].segments()).map(Vec::as_slice);
                    spread(|| Walk::new(&self.pools, role), runs, whole, n, start, skip, &mut part, rng, blocks);
                }
            }
        }
        let taken = part.len;
        out.truncate(begin + taken * size_of::<R>());
        taken
    }
}

/// `sample`'s spread of as many peers as `part` has room for (`want`) over
/// `n` positions (more than `want`) read through `new_walk()` (or in order,
/// the list's `runs()`), from position `start`; `whole` is the block of all
/// of them if they share one.
#[allow(clippy::too_many_arguments)]
fn spread<'a, R: Record + 'a, W: Positions<'a, R>, I: Iterator<Item = &'a [R]>>(
    new_walk: impl Fn() -> W,
    runs: impl Fn() -> I,
    whole: Option<u64>,
    n: usize,
    start: usize,
    skip: R,
    part: &mut Part<R>,
    rng: &mut Rng,
    blocks: &mut Bits,
) {
    let want = part.slots.len();
    let stride = n / want;
    // Positions run from `start` on, around the list at most twice: hops
    // can carry the walk past later targets, and the second round finds
    // the blocks a target skipped. A block is hopped only if taken, and
    // each round passes it once, so the walk is O(want).
    let mut walk = new_walk();
    let mut cursor = start;
    // Which targets (`start + j * stride`) this pass took, for the next.
    let mut on_target = Marks::default();
    // Once the answer holds the block all the peers share (`whole`), every
    // position hops, around the list and back: the pass can stop there.
    for j in 0..want {
        if whole.is_some_and(|b| blocks.contains(b)) {
            break;
        }
        let mut q = cursor.max(start + j * stride);
        while q < start + 2 * n {
            let Some((list, pos)) = walk.seek(wrap(q, n)) else { break };
            let Some(&r) = list.get(pos) else { break };
            if r == skip {
                q += 1;
            } else if blocks.contains(r.block()) {
                q += walk.block_left(pos, r.block());
            } else {
                // At most one take per target: room is left.
                blocks.insert(r.block());
                part.push(r, rng);
                let d = wrap(q - start, n); // how far past `start`, around the list
                if d == j * stride {
                    on_target.insert(j); // most takes: no hop
                } else if d.is_multiple_of(stride) && d / stride < want {
                    on_target.insert(d / stride);
                }
                q += 1;
                break;
            }
        }
        cursor = q;
        if cursor >= start + 2 * n {
            break; // walked around twice: later targets would find nothing
        }
    }
    // Short: fill from the targets this pass did not take, then from
    // every position in turn, skipping the peers already taken.
    let mut cursor = Cursor::new(runs());
    let mut q = start;
    for j in 0..want {
        if part.is_full() {
            break;
        }
        if !on_target.contains(j) {
            if let Some(r) = cursor.get(q).filter(|r| *r != skip) {
                part.push(r, rng);
            }
        }
        q += stride;
        if q >= n {
            q -= n;
            cursor = Cursor::new(runs());
        }
    }
    if !part.is_full() {
        // Short: the fill-up took every target but `skip`'s, and a take
        // off target would have made up for that one. So the answer is
        // one short and no peer off target is taken: the first position
        // off target is the one to add.
        let first_off = if stride > 1 { 1 } else { want };
        if let Some(r) = new_walk().get(wrap(start + first_off, n)) {
            part.push(r, rng);
        }
    }
}

/// The block of all the peers of `lists` (each given as its runs), if
/// they share one (a swarm behind one /24, or aquatic's load): a list is
/// sorted, so its two ends tell.
fn one_block<'a, R: Record + 'a>(lists: impl Iterator<Item = &'a [Vec<R>]>) -> Option<u64> {
    let ends =
        |runs: &'a [Vec<R>]| runs.first().and_then(|s| s.first()).into_iter().chain(runs.last().and_then(|s| s.last()));
    let mut blocks = lists.flat_map(ends).map(R::block);
    let first = blocks.next()?;
    blocks.all(|b| b == first).then_some(first)
}

/// A role's runs read at rising positions, as the fill-up reads its
/// targets: the run of the last position and where it begins stay in
/// registers (a `Walk` keeps its place in memory for its out-of-line moves),
/// and moving on is taking the next run.
struct Cursor<'a, R, I> {
    run: &'a [R],
    base: usize,
    rest: I,
}

impl<'a, R: Copy, I: Iterator<Item = &'a [R]>> Cursor<'a, R, I> {
    fn new(mut runs: I) -> Self {
        Cursor { run: runs.next().unwrap_or_default(), base: 0, rest: runs }
    }

    /// The peer at position `p`, not below the last one asked for.
    fn get(&mut self, p: usize) -> Option<R> {
        loop {
            if let Some(r) = self.run.get(p.wrapping_sub(self.base)) {
                return Some(*r);
            }
            self.base += self.run.len();
            self.run = self.rest.next()?;
        }
    }
}

/// A role's part of an answer as it fills, in random order: each peer goes
/// to a random place among the filled ones and the peer there moves to the
/// end (inside-out Fisher-Yates), so the part is shuffled as it is written,
/// with no pass of its own. Two draws per random word: each half is a 32-bit
/// number scaled to `0..n` by multiply-high, whose bias (at most `n / 2^32`,
/// `n` at most `MAX_WANT`) no answer can show.
struct Part<'a, R> {
    slots: &'a mut [R],
    len: usize,
    /// The random word whose high half the next odd-numbered peer draws.
    word: u64,
}

impl<'a, R: Copy> Part<'a, R> {
    fn new(slots: &'a mut [R]) -> Self {
        Part { slots, len: 0, word: 0 }
    }

    fn is_full(&self) -> bool {
        self.len >= self.slots.len()
    }

    /// Adds `r` if there is room. Plain copies, not `mem::replace` of the
    /// place: that measured 12% slower per announce (`announce_cost`).
    fn push(&mut self, r: R, rng: &mut Rng) {
        let n = self.len + 1; // places for `r`: a filled one, or the next
        if n > self.slots.len() {
            return;
        }
        self.word = if self.len.is_multiple_of(2) { rng.next_u64() } else { self.word >> 32 };
        let k = (((self.word & 0xFFFF_FFFF) * n as u64) >> 32) as usize;
        if let Some(&moved) = self.slots.get(k) {
            if let Some(next) = self.slots.get_mut(self.len) {
                *next = moved;
            }
            if let Some(place) = self.slots.get_mut(k) {
                *place = r;
            }
        }
        self.len = n;
    }
}

/// A set of target indices below `MAX_WANT`, exact.
#[derive(Default)]
struct Marks([u64; MAX_WANT / 64]);

impl Marks {
    fn insert(&mut self, j: usize) {
        if let Some(w) = self.0.get_mut(j / 64) {
            *w |= 1 << (j % 64);
        }
    }

    fn contains(&self, j: usize) -> bool {
        self.0.get(j / 64).is_some_and(|w| w & (1 << (j % 64)) != 0)
    }
}

/// `q` (below `3 * n`) modulo `n`, without a division.
fn wrap(q: usize, n: usize) -> usize {
    if q >= 2 * n {
        q - 2 * n
    } else if q >= n {
        q - n
    } else {
        q
    }
}

/// One role's peers read by position, as `spread` reads them.
trait Positions<'a, R: Record + 'a> {
    /// The run holding position `p` and `p`'s place in it.
    fn seek(&mut self, p: usize) -> Option<(&'a [R], usize)>;

    /// Peers from place `pos` of the last run sought to the end of its block
    /// in its list (a sorted list keeps a block together): how far to move
    /// to pass the block.
    fn block_left(&self, pos: usize, block: u64) -> usize;

    fn get(&mut self, p: usize) -> Option<R> {
        let (run, at) = self.seek(p)?;
        run.get(at).copied()
    }
}

/// A role's peers in one vector.
impl<'a, R: Record> Positions<'a, R> for &'a [R] {
    fn seek(&mut self, p: usize) -> Option<(&'a [R], usize)> {
        (p < self.len()).then_some((*self, p))
    }

    fn block_left(&self, pos: usize, block: u64) -> usize {
        block_left(self, pos, block)
    }
}

/// Peers from `pos` to the end of its block's run in `list` (sorted lists
/// keep a block together). A block that runs to the list's end (a swarm
/// behind one /24, say) costs one compare.
fn block_left<R: Record>(list: &[R], pos: usize, block: u64) -> usize {
    let rest = list.get(pos..).unwrap_or_default();
    if rest.last().is_some_and(|r| r.block() == block) {
        return rest.len();
    }
    rest.partition_point(|r| r.block() <= block).max(1)
}

/// One role's peers read by position, the pools' lists taken in order (and
/// a list's runs in order). Each pass of a sample asks for positions in
/// rising order (wrapping around once or twice), so the walk keeps the run
/// of the last position and moves on from there: a position costs O(1), not
/// a walk over every pool and run before it, and a pool it jumps over costs
/// one step, not one per run.
struct Walk<'a, R> {
    /// The run of the last position (empty after a failed seek) and the
    /// position of its first peer: all that most seeks read, kept apart from
    /// `place` so the loops around them hold both in registers.
    run: &'a [R],
    base: usize,
    place: Place<'a, R>,
}

/// Where a walk is in the pools.
struct Place<'a, R> {
    pools: &'a [Pool<R>],
    role: usize,
    /// The pool of the walk's run and the runs of its list (kept, so moving
    /// on to the next run reads no pool), the run's place in them and its
    /// first peer's position, and the position where the list ends.
    pool: usize,
    runs: &'a [Vec<R>],
    run: usize,
    base: usize,
    pool_end: usize,
}

impl<'a, R: Record> Walk<'a, R> {
    fn new(pools: &'a [Pool<R>], role: usize) -> Self {
        let mut place = Place { pools, role, pool: 0, runs: &[], run: 0, base: 0, pool_end: 0 };
        place.enter(0, 0);
        let run = place.runs.first().map_or(&[][..], Vec::as_slice);
        Walk { run, base: 0, place }
    }
}

impl<'a, R: Record> Positions<'a, R> for Walk<'a, R> {
    fn seek(&mut self, p: usize) -> Option<(&'a [R], usize)> {
        let at = p.wrapping_sub(self.base);
        if at < self.run.len() {
            return Some((self.run, at)); // most positions: the run of the last one
        }
        self.run = &[];
        let (run, base) = self.place.move_to(p)?;
        (self.run, self.base) = (run, base);
        Some((run, p - base))
    }

    fn block_left(&self, pos: usize, block: u64) -> usize {
        let left = block_left(self.run, pos, block);
        if pos + left < self.run.len() || self.base + self.run.len() == self.place.pool_end {
            return left; // the block ends in this run, or this run ends its list
        }
        left + self.place.block_in_next_runs(block)
    }
}

impl<'a, R: Record> Place<'a, R> {
    /// The run holding position `p`, and the position of its first peer.
    /// Out of line: inlined, it cost the loops around `seek` registers.
    #[inline(never)]
    fn move_to(&mut self, p: usize) -> Option<(&'a [R], usize)> {
        if p < self.base {
            self.enter(0, 0)?; // wrapped around
        }
        while p >= self.pool_end {
            self.enter(self.pool + 1, self.pool_end)?;
        }
        // The runs before `p`'s, their lengths summed in registers.
        let (mut i, mut base) = (self.run, self.base);
        let run = loop {
            let run = self.runs.get(i)?;
            if p - base < run.len() {
                break run;
            }
            base += run.len();
            i += 1;
        };
        (self.run, self.base) = (i, base);
        Some((run, base))
    }

    /// Moves to the first run of pool `pool`, whose list begins at position `base`.
    fn enter(&mut self, pool: usize, base: usize) -> Option<()> {
        let list = &self.pools.get(pool)?.lists[self.role];
        (self.pool, self.runs, self.run, self.base) = (pool, list.segments(), 0, base);
        self.pool_end = base + list.len();
        Some(())
    }

    /// The peers of `block` in the runs after this one.
    #[inline(never)]
    fn block_in_next_runs(&self, block: u64) -> usize {
        let next = self.runs.get(self.run + 1..).unwrap_or_default();
        if next.last().and_then(|s| s.last()).is_some_and(|r| r.block() == block) {
            return self.pool_end - self.base - self.runs.get(self.run).map_or(0, Vec::len);
        }
        // The runs wholly in the block, then the run it ends in.
        let whole = next.partition_point(|s| s.last().is_some_and(|r| r.block() <= block));
        let within = next.get(whole).map_or(0, |s| s.partition_point(|r| r.block() <= block));
        next.iter().take(whole).map(Vec::len).sum::<usize>() + within
    }
}

/// The blocks an answer holds as 1024 bits, so a check is one load (two
/// blocks that share a bit count as one; the answer is merely a little less
/// spread).
struct Bits([u64; 16]);

impl Bits {
    fn new() -> Bits {
        Bits([0; 16])
    }

    fn bit(n: u64) -> (usize, u64) {
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 10 bits
        ((h >> 6) as usize, 1 << (h & 63))
    }

    fn contains(&self, n: u64) -> bool {
        let (word, bit) = Bits::bit(n);
        self.0.get(word).is_some_and(|w| w & bit != 0)
    }

    fn insert(&mut self, n: u64) {
        let (word, bit) = Bits::bit(n);
        if let Some(w) = self.0.get_mut(word) {
            *w |= bit;
        }
    }
}

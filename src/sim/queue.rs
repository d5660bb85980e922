//! The simulator's event queue: earliest first, ties in the order made.
//!
//! Most events are frames that arrive a fixed delay (two hosts' latencies)
//! after they leave, and the clock only moves forward, so the events of one
//! delay fall due in the order they are made: a FIFO per delay (a lane)
//! keeps them in order at O(1). The heap takes the rest (timers, link
//! completions) and stays small. An event's place is (at, seq) wherever it
//! waits, so the order is the one a single heap would give.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use super::link::Nanos;

/// Distinct delays given lanes; events of further delays go to the heap.
const LANES: usize = 16;

pub struct Queue<T> {
    seq: u64,
    heap: BinaryHeap<Entry<T>>,
    lanes: Vec<(Nanos, VecDeque<Entry<T>>)>,
}

struct Entry<T> {
    at: Nanos,
    seq: u64,
    ev: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (Nanos, u64) {
        (self.at, self.seq)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<T> Eq for Entry<T> {}

impl<T> Ord for Entry<T> {
    /// Reversed: the earliest first out of the max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { seq: 0, heap: BinaryHeap::new(), lanes: Vec::new() }
    }
}

impl<T> Queue<T> {
    /// An event due at `at`.
    pub fn push(&mut self, at: Nanos, ev: T) {
        let e = self.entry(at, ev);
        self.heap.push(e);
    }

    /// An event due `delay` after `now`; `now` never goes back between calls.
    pub fn push_after(&mut self, now: Nanos, delay: Nanos, ev: T) {
        let e = self.entry(now + delay, ev);
        let lane = match self.lanes.iter().position(|(d, _)| *d == delay) {
            Some(i) => i,
            None if self.lanes.len() < LANES => {
                self.lanes.push((delay, VecDeque::new()));
                self.lanes.len() - 1
            }
            None => return self.heap.push(e),
        };
        self.lanes[lane].1.push_back(e);
    }

    /// The earliest event, and when it is due.
    pub fn pop(&mut self) -> Option<(Nanos, T)> {
        let mut best = self.heap.peek().map(Entry::key);
        let mut from = None;
        for (i, (_, lane)) in self.lanes.iter().enumerate() {
            if let Some(key) = lane.front().map(Entry::key) {
                if best.is_none_or(|b| key < b) {
                    (best, from) = (Some(key), Some(i));
                }
            }
        }
        let e = match from {
            Some(i) => self.lanes[i].1.pop_front(),
            None => self.heap.pop(),
        }?;
        Some((e.at, e.ev))
    }

    fn entry(&mut self, at: Nanos, ev: T) -> Entry<T> {
        self.seq += 1;
        Entry { at, seq: self.seq, ev }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_and_heap_give_one_order_ties_as_made() {
        let mut q = Queue::default();
        q.push(5, "timer at 5");
        q.push_after(0, 5, "frame at 5, made after the timer");
        q.push_after(0, 3, "frame at 3");
        q.push(3, "timer at 3, made after the frame");
        q.push_after(1, 5, "frame at 6");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![
                (3, "frame at 3"),
                (3, "timer at 3, made after the frame"),
                (5, "timer at 5"),
                (5, "frame at 5, made after the timer"),
                (6, "frame at 6"),
            ]
        );
    }

    /// Random pushes and pops, with more delays than lanes, come out as a
    /// sort by (at, order made) gives them.
    #[test]
    fn matches_a_sort_by_time_then_order_made() {
        let mut q = Queue::default();
        let mut made = Vec::new();
        let mut popped = Vec::new();
        let (mut now, mut x) = (0u64, 7u64);
        for n in 0..5000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = x >> 33;
            match r % 4 {
                0 => {
                    let at = now + r % 50;
                    q.push(at, n);
                    made.push((at, n));
                }
                1 | 2 => {
                    let delay = r % (2 * LANES as u64);
                    q.push_after(now, delay, n);
                    made.push((now + delay, n));
                }
                _ => {
                    if let Some((at, ev)) = q.pop() {
                        now = at;
                        popped.push((at, ev));
                    }
                }
            }
        }
        popped.extend(std::iter::from_fn(|| q.pop()));
        // Nothing is made due before the clock, so the whole run is one sort.
        made.sort();
        assert_eq!(popped, made);
    }
}

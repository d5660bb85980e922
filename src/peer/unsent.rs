//! Chunk bytes queued on one connection and not yet taken by the kernel,
//! each chunk by the stream offset just past its frame: the shell reports
//! writes as the connection's total of bytes written, and a chunk is gone
//! once that total reaches its end. The core budgets these bytes over all
//! connections; the seeder's status line counts the ones gone as sent.

use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Default, Clone)]
pub struct Unsent {
    /// (the offset just past the chunk's frame, its chunk bytes, when it
    /// was queued), in order.
    chunks: VecDeque<(u64, u64, Option<Instant>)>,
    bytes: u64,
}

impl Unsent {
    /// A chunk of `bytes` whose frame ends at stream offset `end` was queued
    /// (at `now`, if the caller keeps time).
    pub fn push(&mut self, end: u64, bytes: u64, now: Option<Instant>) {
        self.chunks.push_back((end, bytes, now));
        self.bytes += bytes;
    }

    /// When the oldest chunk still queued was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.chunks.front().and_then(|c| c.2)
    }

    /// The kernel has taken `written` bytes of the stream in all: the chunk
    /// bytes that left with them.
    pub fn written(&mut self, written: u64) -> u64 {
        let mut gone = 0;
        while let Some(&(_, bytes, _)) = self.chunks.front().filter(|(end, ..)| *end <= written) {
            gone += bytes;
            self.chunks.pop_front();
        }
        self.bytes -= gone;
        gone
    }

    /// Chunk bytes still queued.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_leaves_once_the_kernel_took_its_last_byte() {
        let mut u = Unsent::default();
        let t0 = Instant::now();
        u.push(1009, 1000, Some(t0));
        u.push(2018, 1000, None);
        assert_eq!(u.oldest(), Some(t0));
        assert_eq!(u.written(1008), 0, "one byte of the chunk is still queued");
        assert_eq!(u.bytes(), 2000);
        assert_eq!(u.written(1500), 1000);
        assert_eq!(u.written(2018), 1000);
        assert!(u.is_empty() && u.bytes() == 0);
        assert_eq!(u.written(3000), 0);
    }
}

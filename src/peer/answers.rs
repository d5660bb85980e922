//! How long a file's requests take to be answered with a whole Chunk frame,
//! over its most recent ones: the yardstick for a peer that has delivered
//! nothing yet. A staller claims every chunk, takes requests and sends none;
//! it is told from an honest newcomer by how long it keeps us waiting next
//! to what the rest of the swarm takes, not by a fixed time.

use std::time::Duration;

/// Answer times kept: the median is over the most recent ones.
const KEPT: usize = 32;
/// Answer times needed before there is a median: the first few chunks of a
/// download say little of the swarm.
const ENOUGH: usize = 8;

/// The request-to-chunk times of a file's most recent answered requests
/// (not cancelled ones), timed when the frame is whole, before its check.
#[derive(Debug, Default)]
pub struct AnswerTimes {
    /// A ring of the last `KEPT` times; `next` is where the next one goes.
    recent: Vec<Duration>,
    next: usize,
    /// Their median, kept up to date on each `add` (read far more often).
    median: Option<Duration>,
}

impl AnswerTimes {
    /// A request answered with a whole Chunk frame `took` after it was sent.
    pub fn add(&mut self, took: Duration) {
        if self.recent.len() < KEPT {
            self.recent.push(took);
        } else if let Some(slot) = self.recent.get_mut(self.next) {
            *slot = took;
        }
        self.next = (self.next + 1) % KEPT;
        if self.recent.len() >= ENOUGH {
            // On the stack: this runs once per chunk.
            let mut copy = [Duration::ZERO; KEPT];
            let times = copy.get_mut(..self.recent.len()).unwrap_or_default();
            times.copy_from_slice(&self.recent);
            let mid = times.len() / 2;
            self.median = (!times.is_empty()).then(|| *times.select_nth_unstable(mid).1);
        }
    }

    /// The median of the recent answer times, once `ENOUGH` are known.
    pub fn median(&self) -> Option<Duration> {
        self.median
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_median_needs_enough_times_and_follows_the_recent_ones() {
        let mut a = AnswerTimes::default();
        for _ in 0..ENOUGH - 1 {
            a.add(ms(50));
        }
        assert_eq!(a.median(), None, "too few to judge by");
        a.add(ms(50));
        assert_eq!(a.median(), Some(ms(50)));
        // A few slow answers do not move it: a median, not a mean.
        for _ in 0..3 {
            a.add(ms(5000));
        }
        assert_eq!(a.median(), Some(ms(50)));
        // Only the last KEPT count: the swarm slowed down.
        for _ in 0..KEPT {
            a.add(ms(400));
        }
        assert_eq!(a.median(), Some(ms(400)));
        assert_eq!(a.recent.len(), KEPT, "bounded");
    }
}

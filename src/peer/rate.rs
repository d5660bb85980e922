//! Upload and download limits as token buckets on a passed-in clock, so a
//! limit is tested without sleeping.

use std::time::{Duration, Instant};

const NANOS: i128 = 1_000_000_000;

/// A token bucket for an upload or download limit in bytes per second.
/// Unlimited when rate is None. Sending may overdraw the bucket (a chunk is
/// sent whole), then the next send waits until the debt is repaid: the
/// average rate is exact and bursts stay at most `burst` above it.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Option<u64>,
    /// Whole bytes of credit; negative while a send is being repaid.
    tokens: i64,
    /// Credit earned since `last` below one byte, in byte-nanoseconds, so
    /// rounding never drifts the average rate.
    carry: i128,
    burst: i64,
    last: Instant,
}

impl Bucket {
    /// The bucket starts empty (a first send is still allowed at once) and
    /// holds at most burst = max(rate/10, 64 KiB) tokens after idling. A rate
    /// of zero counts as one byte per second, never as "stuck forever".
    pub fn new(rate: Option<u64>, now: Instant) -> Bucket {
        let rate = rate.map(|r| r.max(1));
        let burst = rate.map_or(0, |r| (r / 10).max(64 * 1024));
        Bucket { rate, tokens: 0, carry: 0, burst: i64::try_from(burst).unwrap_or(i64::MAX), last: now }
    }

    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// True if a send may start now (unlimited, or tokens >= 0 after
    /// refilling to `now`).
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.rate.is_none() || self.tokens >= 0
    }

    /// Records `n` bytes sent (or received) at `now`.
    pub fn take(&mut self, now: Instant, n: u64) {
        if self.rate.is_some() {
            self.refill(now);
            self.tokens = self.tokens.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// When `ready` will next be true; None when unlimited or ready now.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        let rate = i128::from(self.rate?);
        let credit = i128::from(self.tokens) * NANOS + self.carry;
        if credit >= 0 {
            return None;
        }
        // Ready once credit + elapsed * rate >= 0 (elapsed in ns since `last`).
        let wait = (-credit + rate - 1) / rate;
        let wait = Duration::new(u64::try_from(wait / NANOS).unwrap_or(u64::MAX), (wait % NANOS) as u32);
        let at = self.last.checked_add(wait).unwrap_or_else(|| far_future(now));
        (at > now).then_some(at)
    }

    /// Adds the credit earned between `last` and `now`, capped at `burst`.
    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        if now <= self.last {
            return;
        }
        let elapsed = i128::try_from(now.duration_since(self.last).as_nanos()).unwrap_or(i128::MAX);
        self.last = now;
        let earned = elapsed.saturating_mul(i128::from(rate)).saturating_add(self.carry);
        let tokens = i128::from(self.tokens).saturating_add(earned / NANOS);
        if tokens >= i128::from(self.burst) {
            self.tokens = self.burst;
            self.carry = 0;
        } else {
            // Below burst, which is an i64.
            self.tokens = tokens as i64;
            self.carry = earned % NANOS;
        }
    }
}

/// A year ahead, for a debt too large to represent (only absurd inputs).
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(365 * 24 * 3600)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn unlimited_is_always_ready() {
        let t0 = Instant::now();
        let mut b = Bucket::new(None, t0);
        assert_eq!(b.rate(), None);
        for _ in 0..10 {
            b.take(t0, u64::MAX);
            assert!(b.ready(t0));
            assert_eq!(b.ready_at(t0), None);
        }
    }

    #[test]
    fn debt_of_one_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Some(MIB), t0);
        assert!(b.ready(t0), "a fresh bucket may send at once");
        b.take(t0, MIB);
        assert!(!b.ready(t0));
        assert_eq!(b.ready_at(t0), Some(t0 + Duration::from_secs(1)));
        let t = t0 + Duration::from_millis(400);
        assert!(!b.ready(t));
        assert_eq!(b.ready_at(t), Some(t0 + Duration::from_secs(1)), "refilling does not move the deadline");
        let almost = t0 + Duration::from_secs(1) - Duration::from_nanos(1);
        assert!(!b.ready(almost));
        assert!(b.ready(t0 + Duration::from_secs(1)));
        assert_eq!(b.ready_at(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn average_matches_rate() {
        // 3 bytes/s does not divide a second evenly: the carry keeps it exact.
        for (rate, chunk) in [(3u64, 1u64), (1_000_000, 16_384), (7 * MIB + 13, 65_536)] {
            let t0 = Instant::now();
            let mut b = Bucket::new(Some(rate), t0);
            let mut t = t0;
            let mut sent = 0u64;
            for _ in 0..10_000 {
                if !b.ready(t) {
                    t = b.ready_at(t).expect("not ready means a deadline");
                    assert!(b.ready(t));
                }
                b.take(t, chunk);
                sent += chunk;
            }
            // The last send started once all but the last chunk was paid for.
            let exact = Duration::from_nanos(((sent - chunk) as u128 * 1_000_000_000).div_ceil(rate as u128) as u64);
            assert_eq!(t - t0, exact, "rate {rate}");
        }
    }

    #[test]
    fn idle_credit_is_capped_at_burst() {
        let t0 = Instant::now();
        let rate = 10 * MIB;
        let mut b = Bucket::new(Some(rate), t0);
        let t = t0 + Duration::from_secs(100);
        assert!(b.ready(t));
        b.take(t, MIB); // burst is rate / 10
        assert!(b.ready(t), "a burst's worth goes out at once");
        b.take(t, 1);
        assert!(!b.ready(t), "but not a byte more");
        assert_eq!(b.ready_at(t), Some(t + Duration::from_nanos(1_000_000_000u64.div_ceil(rate))));

        // Slow links still get a 64 KiB burst.
        let mut slow = Bucket::new(Some(1000), t0);
        slow.take(t, 64 * 1024);
        assert!(slow.ready(t));
        slow.take(t, 1);
        assert!(!slow.ready(t));
    }

    #[test]
    fn clock_going_backwards_and_zero_rate_are_harmless() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut b = Bucket::new(Some(100), t1);
        b.take(t1, 200);
        assert!(!b.ready(t0));
        assert_eq!(b.ready_at(t0), Some(t1 + Duration::from_secs(2)));
        let mut z = Bucket::new(Some(0), t0);
        z.take(t0, 1);
        assert_eq!(z.ready_at(t0), Some(t0 + Duration::from_secs(1)));
    }
}

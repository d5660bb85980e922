//! Upload and download limits as token buckets on a passed-in clock, so a
//! limit is tested without sleeping, plus the parser for `--max-up 20M`.

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

/// Parses a command-line rate in bytes per second: plain digits, or a number
/// (fractions allowed, "1.5M") with a binary suffix K, M or G, optionally
/// followed by "iB" or "B", case-insensitive: "20M", "20MiB" and "20mb" all
/// mean 20 * 2^20.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("bad rate {s:?}: expected e.g. 500K, 20M or 1.5G");
    if s.is_empty() {
        return Err("empty rate".to_string());
    }
    if s.starts_with('-') {
        return Err(format!("bad rate {s:?}: must be positive"));
    }
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || number.ends_with('.') || frac.contains('.') || frac.len() > 9 {
        return Err(bad());
    }
    let too_big = || format!("rate {s:?} is too large");
    let digits = |d: &str| d.bytes().try_fold(0u128, |v, b| v.checked_mul(10)?.checked_add(u128::from(b - b'0')));
    let scale = 10u128.pow(frac.len() as u32);
    let value = digits(whole)
        .and_then(|w| w.checked_mul(scale))
        .and_then(|w| w.checked_add(digits(frac)?))
        .and_then(|v| v.checked_mul(1 << shift))
        .ok_or_else(too_big)?
        / scale;
    match u64::try_from(value) {
        Ok(0) => Err(format!("bad rate {s:?}: must be positive")),
        Ok(v) => Ok(v),
        Err(_) => Err(too_big()),
    }
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

    #[test]
    fn parse_rate_cases() {
        for (s, want) in [
            ("20M", 20 * MIB),
            ("20m", 20 * MIB),
            ("20MiB", 20 * MIB),
            ("20MB", 20 * MIB),
            ("20mib", 20 * MIB),
            ("512K", 512 * 1024),
            ("512kb", 512 * 1024),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("1500", 1500),
            ("1500B", 1500),
            ("1.5M", 3 * MIB / 2),
            ("0.5K", 512),
            (" 2K ", 2048),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_rate(s), Ok(want), "{s}");
        }
        let bad = ", ,0,0K,0.0001K,-5M,abc,5X,5MM,5Mi,M,.5M,5.M,1.2.3,5 M,1.0000000001M,18446744073709551616,\
                   99999999999999999999999G,17179869184G";
        for s in bad.split(',') {
            assert!(parse_rate(s).is_err(), "{s:?} should be rejected");
        }
        assert!(parse_rate("-5M").unwrap_err().contains("positive"));
    }
}

//! Whether the tracker answers a seeder at all, on a passed-in clock: a
//! seeder whose tracker is down, or unreachable from this host, would
//! otherwise serve on with healthy-looking status lines while nobody can
//! find it. Silence counts from the first announce since the last answer
//! that is still unanswered: a tracker that is not asked is not silent
//! (counted from its last answer, every announce interval as long as
//! `SILENT` warned, and the answer came a millisecond later). Anything from
//! the tracker counts as an answer: an announce reply, a catalog answer.

use std::time::{Duration, Instant};

/// Silence for this long is worth a warning.
pub const SILENT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct TrackerWatch {
    /// When the silence started: the start, or the first ask since the last answer.
    since: Instant,
    /// Asked (or starting) and not answered since.
    waiting: bool,
    heard: bool,
    warned: bool,
}

/// What the shell should tell the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Silent for `SILENT` (since the start if `never`).
    Silent { never: bool },
    /// Answering again after a warning.
    Back,
}

impl TrackerWatch {
    /// Waiting from the start: the seeder announces at once.
    pub fn new(now: Instant) -> TrackerWatch {
        TrackerWatch { since: now, waiting: true, heard: false, warned: false }
    }

    /// We sent the tracker something; silence counts from the first such
    /// since its last answer.
    pub fn asked(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.waiting, true) {
            self.since = now;
        }
    }

    /// The tracker answered.
    pub fn heard(&mut self) -> Option<Change> {
        self.waiting = false;
        self.heard = true;
        std::mem::take(&mut self.warned).then_some(Change::Back)
    }

    /// A warning once the tracker has been silent for `SILENT`; once per silence.
    pub fn check(&mut self, now: Instant) -> Option<Change> {
        if self.warned || self.silent_for(now).is_none() {
            return None;
        }
        self.warned = true;
        Some(Change::Silent { never: !self.heard })
    }

    /// How long the tracker has been silent, once that is at least `SILENT`.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        let silent = now.saturating_duration_since(self.since);
        (self.waiting && silent >= SILENT).then_some(silent)
    }

    /// When `check` next has something to say.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.waiting && !self.warned).then_some(self.since + SILENT)
    }

    /// Whether the tracker ever answered.
    pub fn ever_heard(&self) -> bool {
        self.heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_after_ten_silent_seconds_and_when_it_is_back() {
        let t0 = Instant::now();
        let mut w = TrackerWatch::new(t0);
        assert_eq!(w.next_deadline(), Some(t0 + SILENT));
        assert_eq!(w.check(t0 + SILENT - Duration::from_millis(1)), None, "not a tick early");
        assert_eq!(w.silent_for(t0 + Duration::from_secs(9)), None);
        assert_eq!(w.check(t0 + SILENT), Some(Change::Silent { never: true }));
        assert_eq!(w.check(t0 + SILENT * 2), None, "once");
        assert_eq!(w.next_deadline(), None);
        assert_eq!(w.silent_for(t0 + Duration::from_secs(12)), Some(Duration::from_secs(12)));
        let t1 = t0 + Duration::from_secs(15);
        assert_eq!(w.heard(), Some(Change::Back));
        assert!(w.ever_heard());
        assert_eq!(w.silent_for(t1), None);
        assert_eq!(w.heard(), None, "no news while it answers");
        w.asked(t1 + Duration::from_secs(1));
        w.asked(t1 + Duration::from_secs(5)); // a retry: the silence began at the first ask
        assert_eq!(w.check(t1 + Duration::from_secs(11)), Some(Change::Silent { never: false }));
    }

    /// With the tracker's default interval of 10 s, the silence was counted
    /// from each answer, and warned at every announce before its answer.
    #[test]
    fn a_tracker_that_answers_each_announce_is_never_silent() {
        let t0 = Instant::now();
        let mut w = TrackerWatch::new(t0);
        w.heard();
        for k in 1..10 {
            let at = t0 + SILENT * k;
            assert_eq!(w.next_deadline(), None, "nothing asked, nothing to wait for");
            assert_eq!(w.check(at), None);
            w.asked(at);
            assert_eq!(w.check(at + Duration::from_millis(1)), None);
            assert_eq!(w.silent_for(at + Duration::from_millis(1)), None);
            assert_eq!(w.heard(), None);
        }
    }
}

//! The progress display: a bar redrawn in place on a terminal (log lines
//! step around it, see `common::bar`), one plain line every few seconds
//! otherwise (logs, CI, pipes).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::{bar, fmt};
use crate::peer::machine::Snapshot;

const TTY_EVERY: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(2);
const BAR: usize = 24;

pub struct View {
    tty: bool,
    next_draw: Option<Instant>,
    /// Bytes down, bytes up and instant of the previous sample, for the rates.
    sample: Option<(u64, u64, Instant)>,
    rate: (f64, f64),
    /// Chunks verified on disk at start, and all chunks, if any were.
    resumed: Option<(u32, u32)>,
}

impl View {
    pub fn new(tty: bool) -> View {
        View { tty, next_draw: None, sample: None, rate: (0.0, 0.0), resumed: None }
    }

    /// When the display next wants to be drawn.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_draw
    }

    /// A new file starts, with `resumed` chunks of all found on disk:
    /// forget the previous one's rate.
    pub fn reset(&mut self, now: Instant, resumed: Option<(u32, u32)>) {
        self.resumed = resumed;
        self.sample = None;
        self.rate = (0.0, 0.0);
        self.next_draw = Some(now);
    }

    /// Draws if due. `progress` is asked only then: this runs on every
    /// wake-up of the loop, and a snapshot allocates.
    pub fn tick(&mut self, now: Instant, progress: impl FnOnce() -> Option<Snapshot>) {
        if self.next_draw.is_some_and(|at| now < at) {
            return;
        }
        let Some(p) = progress() else {
            self.next_draw = None;
            return;
        };
        self.next_draw = Some(now + if self.tty { TTY_EVERY } else { PLAIN_EVERY });
        let up = p.counters.uploaded;
        if let Some((down_then, up_then, at)) = self.sample {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let instant = (p.done.saturating_sub(down_then) as f64 / dt, up.saturating_sub(up_then) as f64 / dt);
                // Smooth on a terminal, where redraws are frequent.
                let smooth = |old: f64, new: f64| if self.tty && old > 0.0 { 0.7 * old + 0.3 * new } else { new };
                self.rate = (smooth(self.rate.0, instant.0), smooth(self.rate.1, instant.1));
            }
        }
        self.sample = Some((p.done, up, now));
        let mut line = render(&p, self.rate);
        if let Some((have, all)) = self.resumed {
            line.push_str(&format!("  resumed: {have} of {all} chunks"));
        }
        if self.tty {
            bar::draw(&line);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Clears the bar so a line can be printed where it was.
    pub fn clear(&mut self) {
        if self.tty {
            bar::clear();
        }
    }
}

/// `name [#####-----]  42%  27.0 MiB / 64.0 MiB  down 120.3 MiB/s  up 3.0 MiB/s  ETA 0.3s  3 peer(s)`
pub fn render(p: &Snapshot, (rate, up): (f64, f64)) -> String {
    let fraction = if p.size == 0 { 1.0 } else { p.done as f64 / p.size as f64 };
    let filled = ((fraction * BAR as f64) as usize).min(BAR);
    let eta = eta(p.size.saturating_sub(p.done), rate).map_or_else(|| "?".to_string(), fmt::duration);
    format!(
        "{} [{}{}] {:>3.0}%  {} / {}  down {}  up {}  ETA {}  {} peer(s)",
        p.name,
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        fraction * 100.0,
        fmt::bytes(p.done),
        fmt::bytes(p.size),
        fmt::rate(rate),
        fmt::rate(up),
        eta,
        p.peers
    )
}

/// Slowest rate an ETA is computed from: below it (a stalled download, whose
/// smoothed rate decays towards zero but never reaches it) the time left is unknown.
const MIN_ETA_RATE: f64 = 1.0;

/// Time left for `remaining` bytes at `rate` bytes/s; `None` when no usable
/// rate is known or the estimate is not a representable duration.
fn eta(remaining: u64, rate: f64) -> Option<Duration> {
    if rate.is_nan() || rate < MIN_ETA_RATE {
        return None;
    }
    Duration::try_from_secs_f64(remaining as f64 / rate).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bar_percent_rate_eta() {
        let p = Snapshot {
            name: "f".into(),
            size: 100 << 20,
            done: 50 << 20,
            peers: 3,
            elapsed: Duration::ZERO,
            counters: Default::default(),
        };
        let line = render(&p, ((10 << 20) as f64, 1024.0));
        assert!(line.starts_with("f [############------------]  50%"), "{line}");
        assert!(line.contains("50.0 MiB / 100.0 MiB"), "{line}");
        assert!(line.contains("down 10.0 MiB/s  up 1.0 KiB/s"), "{line}");
        assert!(line.contains("ETA 5.0s"), "{line}");
        assert!(line.ends_with("3 peer(s)"), "{line}");
        assert!(render(&p, (0.0, 0.0)).contains("ETA ?"));
    }

    /// A stalled download's smoothed rate decays to tiny, subnormal or
    /// non-finite values: the ETA is `?`, never a panic or `2765926910087661h13m`.
    #[test]
    fn eta_is_unknown_without_a_usable_rate() {
        for rate in [0.0, -1.0, 1e-300, f64::MIN_POSITIVE / 4.0, 0.5, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(eta(u64::MAX, rate), None, "rate {rate}");
        }
        assert_eq!(eta(u64::MAX, 1.0), None, "u64::MAX seconds and more is no duration");
        assert_eq!(eta(0, f64::INFINITY), Some(Duration::ZERO));
        assert_eq!(eta(3 << 20, (1 << 20) as f64), Some(Duration::from_secs(3)));
        let p = Snapshot {
            name: "f".into(),
            size: u64::MAX,
            done: 0,
            peers: 0,
            elapsed: Duration::ZERO,
            counters: Default::default(),
        };
        assert!(render(&p, (1e-300, 0.0)).contains("ETA ?"));
        assert!(render(&p, (f64::NAN, f64::NAN)).contains("ETA ?"));
    }
}

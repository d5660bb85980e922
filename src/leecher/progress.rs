//! The progress display: a bar redrawn in place on a terminal, one plain
//! line every few seconds otherwise (logs, CI, pipes).

use std::io::Write;
use std::time::{Duration, Instant};

use super::machine::Progress;
use crate::common::fmt;

const TTY_EVERY: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(2);
const BAR: usize = 24;

pub struct View {
    tty: bool,
    next_draw: Option<Instant>,
    /// Bytes and instant of the previous sample, for the rate.
    sample: Option<(u64, Instant)>,
    rate: f64,
    drawn: bool,
}

impl View {
    pub fn new(tty: bool) -> View {
        View { tty, next_draw: None, sample: None, rate: 0.0, drawn: false }
    }

    /// When the display next wants to be drawn.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_draw
    }

    /// A new file starts: forget the previous one's rate.
    pub fn reset(&mut self, now: Instant) {
        self.sample = None;
        self.rate = 0.0;
        self.next_draw = Some(now);
    }

    /// Draws if due. `progress` is asked only then: this runs on every
    /// wake-up of the loop, and a snapshot allocates.
    pub fn tick(&mut self, now: Instant, progress: impl FnOnce() -> Option<Progress>) {
        if self.next_draw.is_some_and(|at| now < at) {
            return;
        }
        let Some(p) = progress() else {
            self.next_draw = None;
            return;
        };
        self.next_draw = Some(now + if self.tty { TTY_EVERY } else { PLAIN_EVERY });
        if let Some((bytes, at)) = self.sample {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let instant = (p.done - bytes) as f64 / dt;
                // Smooth on a terminal, where redraws are frequent.
                self.rate = if self.tty && self.rate > 0.0 { 0.7 * self.rate + 0.3 * instant } else { instant };
            }
        }
        self.sample = Some((p.done, now));
        let line = render(&p, self.rate);
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// Clears the bar so a line can be printed under it.
    pub fn clear(&mut self) {
        if self.tty && self.drawn {
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
            self.drawn = false;
        }
    }
}

/// `name [#####-----]  42%  27.0 MiB / 64.0 MiB  120.3 MiB/s  ETA 0.3s  3 seeders`
pub fn render(p: &Progress, rate: f64) -> String {
    let fraction = if p.size == 0 { 1.0 } else { p.done as f64 / p.size as f64 };
    let filled = ((fraction * BAR as f64) as usize).min(BAR);
    let eta = if rate > 0.0 {
        fmt::duration(Duration::from_secs_f64((p.size - p.done) as f64 / rate))
    } else {
        "?".to_string()
    };
    format!(
        "{} [{}{}] {:>3.0}%  {} / {}  {}  ETA {}  {} seeder(s)",
        p.name,
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        fraction * 100.0,
        fmt::bytes(p.done),
        fmt::bytes(p.size),
        fmt::rate(rate),
        eta,
        p.seeders
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bar_percent_rate_eta() {
        let p = Progress { name: "f".into(), size: 100 << 20, done: 50 << 20, seeders: 3, elapsed: Duration::ZERO };
        let line = render(&p, (10 << 20) as f64);
        assert!(line.starts_with("f [############------------]  50%"), "{line}");
        assert!(line.contains("50.0 MiB / 100.0 MiB"), "{line}");
        assert!(line.contains("10.0 MiB/s"), "{line}");
        assert!(line.contains("ETA 5.0s"), "{line}");
        assert!(line.ends_with("3 seeder(s)"), "{line}");
        assert!(render(&p, 0.0).contains("ETA ?"));
    }
}

//! What the user sees of a `get`: on a terminal, indicatif bars (one for the
//! file downloading, one line per file seeding) that fit the terminal's
//! width and move with the bytes as they arrive; otherwise one plain line
//! every few seconds (logs, CI, pipes); with `-q`, nothing but errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::json;
use super::machine::Note;
use crate::common::{bar, fmt, text};
use crate::hash::ContentId;
use crate::peer::machine::Snapshot;
use crate::peer::torrent::{Counters, Goal};

const TTY_EVERY: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(2);
const JSON_EVERY: Duration = Duration::from_secs(1);
const PLAIN_BAR: usize = 24;

/// How the progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place (stdout is a terminal).
    Bars,
    /// A line every few seconds.
    Plain,
    /// Nothing but errors (`-q`).
    Quiet,
    /// One JSON object per line (`--json`): started, progress every second,
    /// done (with the final file's SHA-256), failed.
    Json,
}

/// The file downloading now.
struct Current {
    id: ContentId,
    name: String,
    bar: Option<ProgressBar>,
    down: Rate,
    up: Rate,
    /// Chunks verified on disk at start, and all chunks, if any were.
    resumed: Option<(u32, u32)>,
}

/// A complete file being served until its goal.
struct Seeding {
    size: u64,
    since: Instant,
    bar: Option<ProgressBar>,
}

pub struct View {
    mode: Mode,
    goal: Goal,
    /// Where complete files are (for `--json`'s SHA-256).
    out_dir: PathBuf,
    next_draw: Option<Instant>,
    current: Option<Current>,
    seeding: BTreeMap<ContentId, Seeding>,
    /// Files done in this run: their sizes, the bytes fetched for them, and when the last was done.
    total: Total,
}

/// What the closing summary adds up.
#[derive(Debug, Default, Clone, PartialEq)]
struct Total {
    files: usize,
    size: u64,
    fetched: u64,
    last_done: Option<Instant>,
}

impl View {
    pub fn new(mode: Mode, goal: Goal, out_dir: PathBuf) -> View {
        View { mode, goal, out_dir, next_draw: None, current: None, seeding: BTreeMap::new(), total: Total::default() }
    }

    /// When the display next wants to be drawn.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_draw
    }

    /// Prints a line of output for people (not with `-q` or `--json`), around the bars.
    pub fn say(&self, line: &str) {
        if matches!(self.mode, Mode::Bars | Mode::Plain) {
            bar::around(|| crate::say!("{line}"));
        }
    }

    /// Shows what the core reported.
    pub fn note(&mut self, now: Instant, note: Note) {
        if self.mode == Mode::Json {
            self.json_note(now, &note);
        }
        match note {
            Note::Listing(_) => {}
            Note::Started { id, name, size, resumed, chunks } => {
                let resumed = (resumed > 0).then_some((resumed, chunks));
                let line = match resumed {
                    Some((have, all)) => format!(
                        "{name}: downloading {} (content id {id}), resumed: {have} of {} verified on disk",
                        fmt::bytes(size),
                        fmt::plural(u64::from(all), "chunk")
                    ),
                    None => format!("{name}: downloading {} (content id {id})", fmt::bytes(size)),
                };
                self.say(&line);
                let bar =
                    (self.mode == Mode::Bars).then(|| bar::add(ProgressBar::new(size).with_style(download_style())));
                if let Some(bar) = &bar {
                    bar.set_prefix(bar::fit_name(&name, bar::width() / 5));
                }
                let (down, up) = (Rate::new(now), Rate::new(now));
                self.current = Some(Current { id, name, bar, down, up, resumed });
                self.next_draw = Some(now);
            }
            Note::AlreadyComplete { name } => self.say(&format!("{name}: already complete")),
            Note::Waiting { name, holder } => self.say(&format!("{name}: waiting: {holder}")),
            Note::Done { id, name, size, elapsed, counters } => {
                if let Some(bar) = self.current.take().and_then(|c| c.bar) {
                    bar.finish_and_clear();
                }
                self.say(&done_line(&name, size, elapsed, &counters));
                self.total.files += 1;
                self.total.size += size;
                self.total.fetched += counters.from_seeders + counters.from_leechers;
                self.total.last_done = Some(now);
                if let Some(until) = seeding_until(self.goal) {
                    self.say(&format!("{name}: seeding {until}; Ctrl-C to stop now (the file is complete)"));
                    let bar =
                        (self.mode == Mode::Bars).then(|| bar::add(ProgressBar::new(0).with_style(seeding_style())));
                    if let Some(bar) = &bar {
                        bar.set_prefix(bar::fit_name(&name, bar::width() / 5));
                    }
                    self.seeding.insert(id, Seeding { size, since: now, bar });
                }
            }
            // Reported only for a file that was seeding (not one left at once, by `--seed-ratio 0`).
            Note::Seeded { id, name, size, counters } => {
                let Some(seeding) = self.seeding.remove(&id) else { return };
                if let Some(bar) = seeding.bar {
                    bar.finish_and_clear();
                }
                let ratio = counters.uploaded as f64 / size.max(1) as f64;
                self.say(&format!("{name}: seeded, {} uploaded (ratio {ratio:.2})", fmt::bytes(counters.uploaded)));
            }
            Note::Failed { name, reason } => {
                if self.current.as_ref().is_some_and(|c| c.name == name) {
                    if let Some(bar) = self.current.take().and_then(|c| c.bar) {
                        bar.finish_and_clear();
                    }
                }
                let line = format!("lmk-leecher: {}: {}", text::escape(&name), text::escape(&reason));
                bar::around(|| eprintln!("{line}"));
            }
        }
    }

    /// Draws if due. `snapshot` is asked only then (a snapshot allocates);
    /// `arriving` is the bytes of chunks under way, not yet verified.
    pub fn tick(&mut self, now: Instant, snapshot: impl Fn(ContentId) -> Option<Snapshot>, arriving: u64) {
        if self.next_draw.is_some_and(|at| now < at) || self.mode == Mode::Quiet {
            return;
        }
        let every = match self.mode {
            Mode::Bars => TTY_EVERY,
            Mode::Json => JSON_EVERY,
            Mode::Plain | Mode::Quiet => PLAIN_EVERY,
        };
        self.next_draw = (self.current.is_some() || !self.seeding.is_empty()).then_some(now + every);
        if let Some(c) = &mut self.current {
            if let Some(p) = snapshot(c.id) {
                let position = p.done.saturating_add(arriving).min(p.size);
                c.down.sample(now, position);
                c.up.sample(now, p.counters.uploaded);
                let rates = (c.down.per_sec(now), c.up.per_sec(now));
                match &c.bar {
                    _ if self.mode == Mode::Json => json::print(json::progress(c.id, &p, position, rates)),
                    Some(bar) => {
                        bar.set_message(bar_message(&p, position, rates));
                        bar.set_position(position);
                    }
                    None => {
                        let mut line = render(&p, rates);
                        if let Some((have, all)) = c.resumed {
                            line.push_str(&format!("  resumed: {have} of {all} chunks"));
                        }
                        self.say(&line);
                    }
                }
            }
        }
        for (id, s) in &self.seeding {
            if let (Some(bar), Some(p)) = (&s.bar, snapshot(*id)) {
                bar.set_message(seeding_message(&p, s, self.goal, now));
            }
        }
    }

    /// The JSON line of a note (`Listing` is printed by the shell).
    fn json_note(&mut self, now: Instant, note: &Note) {
        let line = match note {
            Note::Listing(_) => return,
            Note::Started { id, name, size, resumed, chunks } => json::started(*id, name, *size, *resumed, *chunks),
            Note::AlreadyComplete { name } => json::complete(name, &self.out_dir.join(name)),
            Note::Waiting { name, holder } => json::waiting(name, holder),
            Note::Done { id, name, size, elapsed, counters } => {
                json::done(*id, name, *size, *elapsed, counters, &self.out_dir.join(name))
            }
            Note::Seeded { id, .. } if !self.seeding.contains_key(id) => return,
            Note::Seeded { id, name, counters, .. } => json::seeded(*id, name, counters),
            Note::Failed { name, reason } => json::failed(name, reason),
        };
        json::print(line);
        if let Note::Started { .. } = note {
            self.next_draw = Some(now + JSON_EVERY);
        }
    }

    /// Removes the bars, then prints the closing summary: the time until the
    /// last file was done (seeding after it is not counted) and the rate of
    /// what was fetched in it.
    pub fn finish(&mut self, started: Instant) {
        if let Some(bar) = self.current.take().and_then(|c| c.bar) {
            bar.finish_and_clear();
        }
        for bar in std::mem::take(&mut self.seeding).into_values().filter_map(|s| s.bar) {
            bar.finish_and_clear();
        }
        let t = &self.total;
        if let Some(last) = t.last_done {
            let secs = last.saturating_duration_since(started).as_secs_f64().max(1e-9);
            self.say(&format!(
                "total: {}, {} in {secs:.2}s, {} fetched ({})",
                fmt::plural(t.files as u64, "file"),
                fmt::bytes(t.size),
                fmt::bytes(t.fetched),
                fmt::rate(t.fetched as f64 / secs)
            ));
        }
    }
}

/// `NAME: done, 32.0 MiB in 9.12s (3.5 MiB/s) from 5 peers; 12.0 MiB from seeders, 20.0 MiB from leechers`.
/// The rate is of what this run fetched (a resumed file had part of it on disk).
fn done_line(name: &str, size: u64, elapsed: Duration, counters: &Counters) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let bad = match counters.bad_chunks {
        0 => String::new(),
        n => format!(", {} re-fetched", fmt::plural(n, "bad chunk")),
    };
    format!(
        "{name}: done, {} in {secs:.2}s ({}) from {}; {} from seeders, {} from leechers{bad}",
        fmt::bytes(size),
        fmt::rate((counters.from_seeders + counters.from_leechers) as f64 / secs),
        fmt::plural(counters.sources as u64, "peer"),
        fmt::bytes(counters.from_seeders),
        fmt::bytes(counters.from_leechers),
    )
}

/// How seeding a complete file ends, or `None` if it ends at once:
/// `until nobody asks for 20s, ratio 2.00 or 10m`.
fn seeding_until(goal: Goal) -> Option<String> {
    let Goal::Until { idle, ratio, time } = goal else { return Some("until stopped".into()) };
    if goal.at_once() {
        return None;
    }
    let mut ends = vec![format!("nobody asks for {}", fmt::duration(idle))];
    ends.extend(ratio.map(|r| format!("ratio {r:.2}")));
    ends.extend(time.map(fmt::duration));
    let last = ends.pop().unwrap_or_default();
    Some(match ends.is_empty() {
        true => format!("until {last}"),
        false => format!("until {} or {last}", ends.join(", ")),
    })
}

/// The download bar's text after the bar: `27.0/64.0 MiB 1.2 MiB/s ETA 5.0s 3 peers`.
fn bar_message(p: &Snapshot, position: u64, (down, _up): (f64, f64)) -> String {
    let eta = eta(p.size.saturating_sub(position), down).map_or_else(|| "?".to_string(), fmt::duration);
    format!(
        "{}/{} {} ETA {eta} {}",
        fmt::bytes_number(position, p.size),
        fmt::bytes(p.size),
        fmt::rate(down),
        fmt::plural(p.peers as u64, "peer")
    )
}

/// A seeding line's text: `seeding (Ctrl-C stops): ratio 0.02 of 1.00, 9m59s left, 1.2 MiB up, 3 peers`.
fn seeding_message(p: &Snapshot, s: &Seeding, goal: Goal, now: Instant) -> String {
    let ratio = p.counters.uploaded as f64 / s.size.max(1) as f64;
    let mut ends = vec![format!("ratio {ratio:.2}")];
    if let Goal::Until { idle, ratio: goal, time } = goal {
        if let Some(goal) = goal {
            ends[0] = format!("ratio {ratio:.2} of {goal:.2}");
        }
        ends.extend(
            time.map(|t| format!("{} left", fmt::duration(t.saturating_sub(now.saturating_duration_since(s.since))))),
        );
        ends.push(format!("idle {} of {}", fmt::duration(p.idle), fmt::duration(idle)));
    }
    let ends = ends.join(", ");
    format!(
        "seeding (Ctrl-C stops): {ends}, {} up, {}",
        fmt::bytes(p.counters.uploaded),
        fmt::plural(p.peers as u64, "peer")
    )
}

fn download_style() -> ProgressStyle {
    let bar = (bar::width() / 6).clamp(5, 30);
    let template = format!("{{prefix}} [{{bar:{bar}}}] {{percent:>3}}% {{wide_msg}}");
    ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("#>-")
}

fn seeding_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The plain line: `name [#####-----]  42%  27.0 MiB / 64.0 MiB  down 120.3 MiB/s  up 3.0 MiB/s  ETA 0.3s  3 peers`
pub fn render(p: &Snapshot, (rate, up): (f64, f64)) -> String {
    let fraction = if p.size == 0 { 1.0 } else { p.done as f64 / p.size as f64 };
    let filled = ((fraction * PLAIN_BAR as f64) as usize).min(PLAIN_BAR);
    let eta = eta(p.size.saturating_sub(p.done), rate).map_or_else(|| "?".to_string(), fmt::duration);
    format!(
        "{} [{}{}] {:>3.0}%  {} / {}  down {}  up {}  ETA {}  {}",
        p.name,
        "#".repeat(filled),
        "-".repeat(PLAIN_BAR - filled),
        fraction * 100.0,
        fmt::bytes(p.done),
        fmt::bytes(p.size),
        fmt::rate(rate),
        fmt::rate(up),
        eta,
        fmt::plural(p.peers as u64, "peer")
    )
}

/// Slowest rate an ETA is computed from: below it the time left is unknown.
const MIN_ETA_RATE: f64 = 1.0;

/// Time left for `remaining` bytes at `rate` bytes/s; `None` when no usable
/// rate is known or the estimate is not a representable duration.
fn eta(remaining: u64, rate: f64) -> Option<Duration> {
    if rate.is_nan() || rate < MIN_ETA_RATE {
        return None;
    }
    Duration::try_from_secs_f64(remaining as f64 / rate).ok()
}

/// How fast a byte count grows, smoothed over a few seconds (an
/// exponentially weighted mean), on a passed-in clock. A count that has not
/// moved for `STALL` has no rate at all, so a stalled download shows `ETA ?`.
#[derive(Debug, Clone)]
pub struct Rate {
    per_sec: f64,
    /// The first sample: until `SMOOTHING` has passed the rate is the plain
    /// mean since then (a first burst does not set it alone).
    origin: Option<(u64, Instant)>,
    last: (u64, Instant),
    moved_at: Option<Instant>,
}

/// The smoothing time constant: a rate change shows about two thirds after this long.
const SMOOTHING: Duration = Duration::from_secs(5);
/// Samples closer than this are not used (the count is read at every wake-up).
const MIN_SAMPLE: Duration = Duration::from_millis(100);
/// No growth for this long: no rate.
const STALL: Duration = Duration::from_secs(5);

impl Rate {
    pub fn new(now: Instant) -> Rate {
        Rate { per_sec: 0.0, origin: None, last: (0, now), moved_at: None }
    }

    /// The count is `total` at `now`.
    pub fn sample(&mut self, now: Instant, total: u64) {
        let Some((start, since)) = self.origin else {
            self.origin = Some((total, now));
            self.last = (total, now);
            return;
        };
        let (then, at) = self.last;
        let dt = now.saturating_duration_since(at);
        if dt < MIN_SAMPLE {
            return;
        }
        let moved = total.saturating_sub(then);
        let age = now.saturating_duration_since(since);
        self.per_sec = if age < SMOOTHING {
            total.saturating_sub(start) as f64 / age.as_secs_f64()
        } else {
            let weight = 1.0 - (-dt.as_secs_f64() / SMOOTHING.as_secs_f64()).exp();
            self.per_sec + weight * (moved as f64 / dt.as_secs_f64() - self.per_sec)
        };
        if moved > 0 {
            self.moved_at = Some(now);
        }
        self.last = (total, now);
    }

    /// Bytes per second now: 0 when the count has not grown for `STALL`.
    pub fn per_sec(&self, now: Instant) -> f64 {
        match self.moved_at {
            Some(at) if now.saturating_duration_since(at) < STALL && self.per_sec.is_finite() => self.per_sec,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(size: u64, done: u64) -> Snapshot {
        Snapshot {
            name: "f".into(),
            size,
            done,
            peers: 3,
            elapsed: Duration::ZERO,
            idle: Duration::ZERO,
            counters: Default::default(),
        }
    }

    #[test]
    fn renders_bar_percent_rate_eta() {
        let p = snapshot(100 << 20, 50 << 20);
        let line = render(&p, ((10 << 20) as f64, 1024.0));
        assert!(line.starts_with("f [############------------]  50%"), "{line}");
        assert!(line.contains("50.0 MiB / 100.0 MiB"), "{line}");
        assert!(line.contains("down 10.0 MiB/s  up 1.0 KiB/s"), "{line}");
        assert!(line.contains("ETA 5.0s"), "{line}");
        assert!(line.ends_with("3 peers"), "{line}");
        assert!(render(&p, (0.0, 0.0)).contains("ETA ?"));
        assert_eq!(bar_message(&p, 60 << 20, ((10 << 20) as f64, 0.0)), "60.0/100.0 MiB 10.0 MiB/s ETA 4.0s 3 peers");
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
        let p = snapshot(u64::MAX, 0);
        assert!(render(&p, (1e-300, 0.0)).contains("ETA ?"));
        assert!(render(&p, (f64::NAN, f64::NAN)).contains("ETA ?"));
        assert!(bar_message(&p, 0, (f64::NAN, 0.0)).contains("ETA ?"));
    }

    /// Bytes arriving in uneven bursts (a chunk at a time) give a steady
    /// rate, and a count that stops moving has none after `STALL`.
    #[test]
    fn rate_is_smoothed_and_stops_when_stalled() {
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.sample(t0, 0);
        assert_eq!(r.per_sec(t0), 0.0, "no rate before anything moved");
        // 512 KiB/s arriving as one 1 MiB chunk every 2 s, sampled every 200 ms.
        let mut total = 0;
        let mut seen = Vec::new();
        for tick in 1..=100u64 {
            let now = t0 + Duration::from_millis(200 * tick);
            if tick % 10 == 0 {
                total += 1 << 20;
            }
            r.sample(now, total);
            if tick > 40 {
                seen.push(r.per_sec(now));
            }
        }
        let (lo, hi) = seen.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(lo > 256.0 * 1024.0 && hi < 1024.0 * 1024.0, "between half and twice the mean rate: {lo}..{hi}");
        let end = t0 + Duration::from_millis(200 * 100);
        let later = end + STALL + Duration::from_secs(1);
        r.sample(later, total);
        assert_eq!(r.per_sec(later), 0.0, "stalled: no rate");
        let far = end + Duration::from_secs(1 << 40);
        r.sample(far, total);
        assert_eq!(r.per_sec(far), 0.0);
        assert_eq!(eta(1, r.per_sec(far)), None);
    }

    #[test]
    fn seeding_says_how_it_ends() {
        let idle = Duration::from_secs(20);
        assert_eq!(seeding_until(Goal::AT_ONCE), None);
        assert_eq!(seeding_until(Goal::Until { idle, ratio: Some(0.0), time: None }), None);
        assert_eq!(seeding_until(Goal::Until { idle: Duration::ZERO, ratio: None, time: None }), None);
        let plain = Goal::Until { idle, ratio: None, time: None };
        assert_eq!(seeding_until(plain).unwrap(), "until nobody asks for 20.0s");
        let all = Goal::Until { idle, ratio: Some(1.0), time: Some(Duration::from_secs(600)) };
        assert_eq!(seeding_until(all).unwrap(), "until nobody asks for 20.0s, ratio 1.00 or 10m00s");
        let t0 = Instant::now();
        let s = Seeding { size: 100, since: t0, bar: None };
        let mut p = snapshot(100, 100);
        p.counters.uploaded = 50;
        p.idle = Duration::from_secs(1);
        let msg = seeding_message(&p, &s, all, t0 + Duration::from_secs(1));
        assert_eq!(msg, "seeding (Ctrl-C stops): ratio 0.50 of 1.00, 9m59s left, idle 1.0s of 20.0s, 50 B up, 3 peers");
        let msg = seeding_message(&p, &s, plain, t0 + Duration::from_secs(1));
        assert_eq!(msg, "seeding (Ctrl-C stops): ratio 0.50, idle 1.0s of 20.0s, 50 B up, 3 peers");
    }

    #[test]
    fn the_done_line_counts_peers_in_words() {
        let c = Counters { sources: 1, from_seeders: 1 << 20, ..Default::default() };
        let line = done_line("f", 1 << 20, Duration::from_secs(2), &c);
        assert_eq!(
            line,
            "f: done, 1.0 MiB in 2.00s (512.0 KiB/s) from 1 peer; 1.0 MiB from seeders, 0 B from leechers"
        );
    }
}

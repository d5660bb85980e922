//! The bars a terminal shows in place (the leecher's progress, the seeder's
//! and tracker's status lines), drawn by indicatif, and a logger that steps
//! around them: every log line and every line a role prints goes through
//! `around`, which clears the bars, prints, and draws them again, so nothing
//! tears a bar. No steady tick: bars are redrawn when their owner updates
//! them, from the one thread of the event loop.

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use log::{Log, Metadata, Record};
use unicode_width::UnicodeWidthChar;

use super::text;

/// The bars on stdout, once the first is added.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Redraws per second at most.
const REFRESH_HZ: u8 = 10;

/// Adds `bar` below the others on stdout (hidden when stdout is not a terminal).
pub fn add(bar: ProgressBar) -> ProgressBar {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(REFRESH_HZ))).add(bar)
}

/// Runs `print` with the bars cleared, then draws them again.
pub fn around<R>(print: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(bars) => bars.suspend(print),
        None => print(),
    }
}

/// The terminal's width in columns (80 when it cannot be told).
pub fn width() -> usize {
    console::Term::stdout().size_checked().map_or(80, |(_, cols)| usize::from(cols).max(20))
}

/// `name` cut to at most `columns` terminal columns (wide East Asian
/// characters count two), ending in `~` when cut; network text escaped.
pub fn fit_name(name: &str, columns: usize) -> String {
    let name = text::escape(name).to_string();
    let width = |s: &str| s.chars().map(|c| c.width().unwrap_or(0)).sum::<usize>();
    if width(&name) <= columns {
        return name;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in name.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > columns {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('~');
    out
}

/// Wraps a logger: each record is printed around the bars. A record that
/// would print a control or format character (a network string some caller
/// forgot to escape) is printed escaped.
pub struct AroundBar<L>(pub L);

impl<L: Log> Log for AroundBar<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        around(|| {
            if message.chars().any(text::is_hidden) {
                let escaped = format_args!("{}", text::escape(&message));
                self.0.log(
                    &Record::builder()
                        .args(escaped)
                        .metadata(record.metadata().clone())
                        .module_path(record.module_path())
                        .file(record.file())
                        .line(record.line())
                        .build(),
                );
            } else {
                self.0.log(record);
            }
            self.0.flush();
        });
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps the messages it is given.
    struct Capture(Mutex<Vec<String>>);

    impl Log for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &Record<'_>) {
            self.0.lock().unwrap().push(record.args().to_string());
        }

        fn flush(&self) {}
    }

    #[test]
    fn a_record_with_a_control_character_is_escaped() {
        let logger = AroundBar(Capture(Mutex::new(Vec::new())));
        let name = "evil\x1b]52;c;eA==\x07\u{202e}.bin";
        logger.log(&Record::builder().args(format_args!("tracker refused: {name}")).build());
        logger.log(&Record::builder().args(format_args!("plain \\ line")).build());
        let got = logger.0 .0.lock().unwrap().clone();
        assert_eq!(got, ["tracker refused: evil\\x1b]52;c;eA==\\x07\\u{202e}.bin", "plain \\ line"]);
    }

    #[test]
    fn names_fit_their_columns() {
        assert_eq!(fit_name("short.txt", 20), "short.txt");
        assert_eq!(fit_name("a-rather-long-file-name.iso", 10), "a-rather-~");
        // Each of these takes two columns.
        assert_eq!(fit_name("東京の地図データ.zip", 9), "東京の地~");
        assert_eq!(fit_name("東京", 4), "東京");
        assert_eq!(fit_name("x\u{1b}y", 20), "x\\x1by");
    }
}

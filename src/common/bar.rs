//! The one status line a terminal shows in place (the leecher's progress
//! bar), and a logger that steps around it: a log line clears the bar,
//! prints, and redraws it below, so log lines never tear the bar. The same
//! thing indicatif's `suspend` does, in a few lines for one bar and one thread.

use std::io::Write;
use std::sync::Mutex;

use log::{Log, Metadata, Record};

use super::text;

/// The line drawn now, if any.
static DRAWN: Mutex<Option<String>> = Mutex::new(None);

/// Draws `line` in place of the current bar.
pub fn draw(line: &str) {
    let mut drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
    wipe();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{line}");
    let _ = out.flush();
    *drawn = Some(line.to_string());
}

/// Removes the bar, so that a line can be printed where it was.
pub fn clear() {
    let mut drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
    if drawn.take().is_some() {
        wipe();
    }
}

/// Returns to the start of the line and erases it.
fn wipe() {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\r\x1b[2K");
    let _ = out.flush();
}

/// Wraps a logger: while a bar is drawn, each record is printed on a clean
/// line and the bar is drawn again after it. A record that would print a
/// control or format character (a network string some caller forgot to
/// escape) is printed escaped.
pub struct AroundBar<L>(pub L);

impl<L: Log> Log for AroundBar<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
        if drawn.is_some() {
            wipe();
        }
        let message = record.args().to_string();
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
        if let Some(line) = drawn.as_deref() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

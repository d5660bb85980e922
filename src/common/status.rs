//! A role's status (the seeder's line, the tracker's table): on a terminal
//! redrawn in place (an indicatif line that log lines step around);
//! otherwise printed only when it changed, each line behind a UTC timestamp,
//! so a log of a quiet day is not thousands of identical lines.

use std::time::SystemTime;

use indicatif::{ProgressBar, ProgressStyle};

use super::{bar, fmt};

pub struct Status {
    tty: bool,
    shown: Option<ProgressBar>,
    /// What the last printed status said, rates left out.
    last_key: Option<String>,
}

impl Status {
    pub fn new(tty: bool) -> Status {
        Status { tty, shown: None, last_key: None }
    }

    /// Shows `text` (one or more lines). `key` is what counts as a change:
    /// the text without its rates and timers, which move on their own.
    pub fn show(&mut self, text: &str, key: &str, now: SystemTime) {
        if self.tty {
            let style = || ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
            let line = self.shown.get_or_insert_with(|| bar::add(ProgressBar::new(0).with_style(style())));
            line.set_message(text.trim_end().to_string());
            return;
        }
        if self.last_key.as_deref() == Some(key) {
            return;
        }
        self.last_key = Some(key.to_string());
        print_stamped(text, now);
    }

    /// The last status, printed to stay (the redrawn line is removed).
    pub fn last(&mut self, text: &str, now: SystemTime) {
        if let Some(line) = self.shown.take() {
            line.finish_and_clear();
        }
        print_stamped(text, now);
    }
}

/// Each line of `text` behind the time.
fn print_stamped(text: &str, now: SystemTime) {
    let stamp = fmt::timestamp(now);
    bar::around(|| {
        for line in text.lines() {
            crate::say!("{stamp} {line}");
        }
    });
}

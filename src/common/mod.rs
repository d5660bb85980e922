//! Pieces shared by the three roles.

/// `println!` that ignores a stdout nobody reads any more (a closed pipe)
/// instead of panicking: status output must never end a process.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::time::Duration;

/// The one retry backoff: `first`, doubled for each of `failures`, at most `max`.
pub fn backoff(first: Duration, failures: u32, max: Duration) -> Duration {
    first.saturating_mul(1 << failures.min(16)).min(max)
}

pub mod bar;
pub mod cli;
mod conn;
pub mod fmt;
pub mod net;
pub mod publish_key;
pub mod quantity;
pub mod rng;
pub mod signal;
pub mod status;
#[cfg(test)]
pub mod test_dir;
pub mod text;

//! SIGINT and SIGTERM as an event of the loop: signal-hook's handler writes
//! to a pipe (async-signal-safe) that the loop's `Poll` watches, so a signal
//! wakes the loop like any socket and is read on its thread. A second one
//! ends the process at once (signal-hook's double Ctrl-C idiom), for when
//! the loop is stuck or busy, e.g. checking a large download at start.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use signal_hook_mio::v1_0::Signals;

/// The stop signals, registered with a `Poll`.
pub struct Stop {
    signals: Signals,
    /// The first stop signal received.
    got: Option<i32>,
}

impl Stop {
    /// Routes SIGINT and SIGTERM to `token` of `registry`.
    pub fn register(registry: &Registry, token: Token) -> io::Result<Stop> {
        let seen = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the exit checks the flag before the flag is set,
            // so the first signal only arms it.
            flag::register_conditional_shutdown(sig, i32::from(exit_status(sig)), Arc::clone(&seen))?;
            flag::register(sig, Arc::clone(&seen))?;
        }
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(Stop { signals, got: None })
    }

    /// The pipe is readable: take what arrived.
    pub fn on_event(&mut self) {
        for sig in self.signals.pending() {
            self.got.get_or_insert(sig);
        }
    }

    /// The first stop signal received, if any.
    pub fn received(&self) -> Option<i32> {
        self.got
    }
}

/// The shell's convention for a process ended by `sig`: 128 + its number
/// (130 for SIGINT, 143 for SIGTERM).
pub fn exit_status(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(1)
}

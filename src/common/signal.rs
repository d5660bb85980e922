//! SIGINT and SIGTERM as a flag the event loop polls. The handler only
//! stores to an atomic (async-signal-safe); `epoll_wait` returns EINTR when a
//! signal arrives, so the loop sees the flag at once.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`stop_requested`].
pub fn install() {
    // SAFETY: `signal` is the C library's; the handler only touches an atomic.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

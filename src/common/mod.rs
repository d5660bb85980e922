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

/// The block one host holds: an IPv4 address (or a v4-mapped one), or the
/// /64 of an IPv6 address (one host commonly has a whole /64). Caps per
/// address count blocks, so a host cannot multiply itself.
pub fn ip_block(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        },
    }
}

pub mod admission;
pub mod alloc;
pub mod bar;
pub mod cli;
mod conn;
pub mod fmt;
pub mod json;
pub mod net;
pub mod publish_key;
pub mod quantity;
pub mod rng;
pub mod signal;
pub mod siphash;
pub mod small_file;
pub mod status;
#[cfg(test)]
pub mod test_dir;
pub mod text;

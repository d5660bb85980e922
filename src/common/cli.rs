//! What the three binaries share: logging set-up, option parsing helpers
//! and the one-line error exit.

use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

/// A bad command line: printed as one line, exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl From<pico_args::Error> for Usage {
    fn from(e: pico_args::Error) -> Self {
        Usage(e.to_string())
    }
}

/// Logs to stderr (stdout carries status and progress), level info moved by
/// each `-v` (up) and `-q` (down).
fn init_logging(args: &mut pico_args::Arguments) {
    let mut level: i32 = 3;
    for (flag, step) in [("-vvv", 3), ("-vv", 2), ("-qq", -2)] {
        while args.contains(flag) {
            level += step;
        }
    }
    while args.contains(["-v", "--verbose"]) {
        level += 1;
    }
    while args.contains(["-q", "--quiet"]) {
        level -= 1;
    }
    let filter = match level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let config = ConfigBuilder::new().set_time_format_rfc3339().set_target_level(LevelFilter::Off).build();
    let logger = TermLogger::new(filter, config, TerminalMode::Stderr, ColorChoice::Never);
    if log::set_boxed_logger(Box::new(super::bar::AroundBar(logger))).is_ok() {
        log::set_max_level(filter);
    }
}

/// An option's value parsed with `FromStr`, naming the option on failure.
pub fn opt<T: FromStr>(args: &mut pico_args::Arguments, name: &'static str) -> Result<Option<T>, Usage>
where
    T::Err: Display,
{
    match args.opt_value_from_str::<_, String>(name)? {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|e| Usage(format!("{name} {raw:?}: {e}"))),
    }
}

/// An address option (`host:port`).
pub fn addr(args: &mut pico_args::Arguments, name: &'static str, default: &str) -> Result<SocketAddr, Usage> {
    let raw = args.opt_value_from_str::<_, String>(name)?.unwrap_or_else(|| default.to_string());
    parse_addr(&raw).map_err(|e| Usage(format!("{name} {raw:?}: {e}")))
}

/// `host:port`, resolving names such as `localhost`.
pub fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    raw.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "resolves to no address".to_string())
}

/// A duration in seconds (fractions allowed), at least `min`.
pub fn secs(args: &mut pico_args::Arguments, name: &'static str, min: f64) -> Result<Option<Duration>, Usage> {
    match opt::<f64>(args, name)? {
        None => Ok(None),
        Some(s) if s >= min => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| Usage(format!("{name} {s}: must be a finite number of seconds"))),
        Some(s) => Err(Usage(format!("{name} {s}: must be at least {min} seconds"))),
    }
}

/// A count option, at least 1.
pub fn count<T: FromStr + PartialOrd + From<u8>>(
    args: &mut pico_args::Arguments,
    name: &'static str,
    default: T,
) -> Result<T, Usage>
where
    T::Err: Display,
{
    match opt::<T>(args, name)? {
        Some(n) if n < T::from(1) => Err(Usage(format!("{name} must be at least 1"))),
        n => Ok(n.unwrap_or(default)),
    }
}

/// The tracker's `--max-*` caps on swarms and peers, each defaulting to `d`'s.
pub fn tracker_limits(
    args: &mut pico_args::Arguments,
    d: crate::tracker::Limits,
) -> Result<crate::tracker::Limits, Usage> {
    Ok(crate::tracker::Limits {
        max_swarms: count(args, "--max-swarms", d.max_swarms)?,
        max_peers: count(args, "--max-peers", d.max_peers)?,
        max_swarms_per_ip: count(args, "--max-swarms-per-ip", d.max_swarms_per_ip)?,
        max_peers_per_ip: count(args, "--max-peers-per-ip", d.max_peers_per_ip)?,
        max_peers_per_ip_in_swarm: count(args, "--max-peers-per-ip-in-swarm", d.max_peers_per_ip_in_swarm)?,
    })
}

/// Rejects anything pico-args did not consume.
pub fn no_leftovers(args: pico_args::Arguments) -> Result<(), Usage> {
    let rest = args.finish();
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(Usage(format!("unexpected argument {:?}", arg.to_string_lossy()))),
    }
}

/// A role's runtime error: one line on stderr, and the exit status.
pub trait Failure: Display {
    /// 1 unless the error says otherwise (the leecher stopped by a signal: 128 + its number).
    fn status(&self) -> u8 {
        1
    }
}

impl Failure for crate::tracker::Error {}
impl Failure for crate::seeder::Error {}

/// Every binary's `main`: `--help`, logging, then `parse` and `run`. An
/// error becomes one line on stderr and the exit code (2 usage, 1 runtime,
/// or what the error says).
pub fn main<C, E: Failure>(
    prog: &str,
    help: &str,
    parse: impl FnOnce(pico_args::Arguments) -> Result<C, Usage>,
    run: impl FnOnce(C) -> Result<(), E>,
) -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{help}");
        return ExitCode::SUCCESS;
    }
    init_logging(&mut args);
    match parse(args) {
        Ok(config) => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let status = e.status();
                fail(prog, e, false);
                ExitCode::from(status)
            }
        },
        Err(Usage(msg)) => fail(prog, msg, true),
    }
}

/// Prints `prog: error: ...` and returns the exit code (2 usage, 1 runtime).
pub fn fail(prog: &str, message: impl Display, usage: bool) -> ExitCode {
    eprintln!("{prog}: error: {message}");
    if usage {
        eprintln!("{prog}: try --help");
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// `--slots`, `--max-peers`, `--up-limit` and `--down-limit`, shared by the seeder and the leecher.
pub fn peer_options(args: &mut pico_args::Arguments) -> Result<crate::peer::PeerOptions, Usage> {
    let slots: usize = opt(args, "--slots")?.unwrap_or(DEFAULT_SLOTS);
    let max_peers: usize = opt(args, "--max-peers")?.unwrap_or(DEFAULT_MAX_PEERS);
    if slots == 0 {
        return Err(Usage("--slots must be at least 1".into()));
    }
    if max_peers == 0 {
        return Err(Usage("--max-peers must be at least 1".into()));
    }
    let mut rate = |name: &'static str| -> Result<Option<u64>, Usage> {
        match args.opt_value_from_str::<_, String>(name)? {
            None => Ok(None),
            Some(raw) => {
                crate::peer::rate::parse_rate(&raw).map(Some).map_err(|e| Usage(format!("{name} {raw:?}: {e}")))
            }
        }
    };
    let up_limit = rate("--up-limit")?;
    let down_limit = rate("--down-limit")?;
    Ok(crate::peer::PeerOptions { slots, max_peers, up_limit, down_limit })
}

/// `--publish-key FILE`, read and checked now: a key file that cannot be
/// used is a usage error, before any socket is opened.
pub fn publish_key(args: &mut pico_args::Arguments) -> Result<Option<super::publish_key::PublishKey>, Usage> {
    match args.opt_value_from_str::<_, std::path::PathBuf>("--publish-key")? {
        None => Ok(None),
        Some(path) => super::publish_key::PublishKey::load(&path).map(Some).map_err(|e| Usage(e.to_string())),
    }
}

/// Peers uploaded to at once, by default.
pub const DEFAULT_SLOTS: usize = 8;
/// Connections per file, by default.
pub const DEFAULT_MAX_PEERS: usize = 50;

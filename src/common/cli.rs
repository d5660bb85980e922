//! What the three binaries share: the command line (`Args`: options in any
//! order, `--opt value` or `--opt=value`, operands after `--`, every value
//! read through `common::quantity`), logging set-up and the one-line error exit.

use std::ffi::OsString;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use log::LevelFilter;

use super::publish_key::{self, PublishKey};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

use super::quantity::{Kind, OutOfRange, Range};

/// A bad command line: printed as one line, exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl From<pico_args::Error> for Usage {
    fn from(e: pico_args::Error) -> Self {
        Usage(e.to_string())
    }
}

/// A command line being read: the options (pico-args) and the operands
/// that followed a `--`, which are never taken for options.
pub struct Args {
    opts: pico_args::Arguments,
    after_dashes: Vec<OsString>,
    /// `-q` given: only errors are printed (no progress, no summary).
    pub quiet: bool,
}

impl Args {
    /// Splits `raw` (without the program name) at the first `--`, and each
    /// `--opt=value` before it into `--opt` and `value`.
    pub fn new(raw: Vec<OsString>) -> Args {
        let mut opts = Vec::with_capacity(raw.len());
        let mut rest = raw.into_iter();
        for arg in rest.by_ref() {
            if arg == "--" {
                break;
            }
            match arg.to_str().and_then(|s| s.strip_prefix("--")).and_then(|s| s.split_once('=')) {
                Some((name, value)) => {
                    opts.push(OsString::from(format!("--{name}")));
                    opts.push(OsString::from(value));
                }
                None => opts.push(arg),
            }
        }
        Args { opts: pico_args::Arguments::from_vec(opts), after_dashes: rest.collect(), quiet: false }
    }

    /// Whether `flag` was given (anywhere before `--`).
    pub fn flag(&mut self, flag: impl Into<pico_args::Keys>) -> bool {
        self.opts.contains(flag)
    }

    /// The text of option `name`; given more than once, the last one counts
    /// (so a wrapper's defaults can be overridden by options after them).
    pub fn text(&mut self, name: &'static str) -> Result<Option<String>, Usage> {
        let mut value = None;
        while let Some(v) = self.opts.opt_value_from_str::<_, String>(name).map_err(|e| value_error(name, e))? {
            value = Some(v);
        }
        Ok(value)
    }

    /// Option `name` read by `parse`, whose error states the range.
    fn read<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, OutOfRange>,
    ) -> Result<Option<T>, Usage> {
        match self.text(name)? {
            None => Ok(None),
            Some(raw) => parse(&raw).map(Some).map_err(|e| Usage(format!("{name} {raw:?}: {e}"))),
        }
    }

    /// A duration (`30`, `1.5`, `2m`) within `range`.
    pub fn duration(&mut self, name: &'static str, range: Range) -> Result<Option<Duration>, Usage> {
        self.read(name, |raw| range.duration(raw))
    }

    /// A whole number (a count, whole seconds, a size or rate such as `512K`) within `range`.
    pub fn whole<T: TryFrom<u64>>(&mut self, name: &'static str, range: Range) -> Result<Option<T>, Usage> {
        self.read(name, |raw| range.whole(raw))
    }

    /// A plain number (a ratio) within `range`.
    pub fn number(&mut self, name: &'static str, range: Range) -> Result<Option<f64>, Usage> {
        self.read(name, |raw| range.parse(raw))
    }

    /// An address option (`host:port`, or a name such as `localhost:6969`).
    pub fn addr(&mut self, name: &'static str, default: &str) -> Result<SocketAddr, Usage> {
        let raw = self.text(name)?.unwrap_or_else(|| default.to_string());
        parse_addr(&raw).map_err(|e| Usage(format!("{name} {raw:?}: {e}")))
    }

    /// A path option (the last, if given more than once).
    pub fn path(&mut self, name: &'static str) -> Result<Option<PathBuf>, Usage> {
        let mut value = None;
        loop {
            let next = self.opts.opt_value_from_os_str(name, |s| Ok::<_, String>(PathBuf::from(s)));
            match next.map_err(|e| value_error(name, e))? {
                Some(v) => value = Some(v),
                None => return Ok(value),
            }
        }
    }

    /// The operands: what no option took, then everything after `--`. An
    /// unread argument that looks like an option is an unknown option.
    pub fn operands(self) -> Result<Vec<OsString>, Usage> {
        let mut operands = self.opts.finish();
        if let Some(flag) = operands.iter().find(|a| a.to_string_lossy().starts_with('-') && *a != "-") {
            return Err(Usage(format!("unknown option {:?}", flag.to_string_lossy())));
        }
        operands.extend(self.after_dashes);
        Ok(operands)
    }

    /// Rejects any operand: for a program that takes none.
    pub fn no_operands(self) -> Result<(), Usage> {
        match self.operands()?.first() {
            None => Ok(()),
            Some(arg) => Err(Usage(format!("unexpected argument {:?}", arg.to_string_lossy()))),
        }
    }
}

/// pico-args' error for option `name`, in our words.
fn value_error(name: &'static str, e: pico_args::Error) -> Usage {
    match e {
        pico_args::Error::OptionWithoutAValue(_) => Usage(format!("{name} needs a value")),
        pico_args::Error::NonUtf8Argument => Usage(format!("{name}: the value is not UTF-8")),
        e => Usage(format!("{name}: {e}")),
    }
}

/// Logs to stderr (stdout carries status and progress) at level info, moved
/// by each `-v` (up: debug, trace) and `-q` (down: errors only, then
/// nothing). Returns whether any `-q` was given.
fn init_logging(args: &mut Args) -> bool {
    let mut level: i32 = 3;
    for (flag, step) in [("-vvv", 3), ("-vv", 2), ("-qq", -2)] {
        while args.flag(flag) {
            level += step;
        }
    }
    while args.flag(["-v", "--verbose"]) {
        level += 1;
    }
    while args.flag(["-q", "--quiet"]) {
        level -= 2;
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
    level < 3
}

/// `host:port`, resolving names such as `localhost`.
pub fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    raw.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or_else(|| "resolves to no address".to_string())
}

/// The range of a count option: `1..=max`.
pub const fn count(max: f64) -> Range {
    Range::new(Kind::Count, 1.0, max)
}

/// Most swarms, peers or files a tracker cap may be set to: about 16 GB of
/// peers at the README's 160 bytes each.
const MAX_TRACKER_CAP: f64 = 1e8;

/// The tracker's `--max-*` caps on swarms and peers, each defaulting to `d`'s.
pub fn tracker_limits(args: &mut Args, d: crate::tracker::Limits) -> Result<crate::tracker::Limits, Usage> {
    let cap = count(MAX_TRACKER_CAP);
    Ok(crate::tracker::Limits {
        max_swarms: args.whole("--max-swarms", cap)?.unwrap_or(d.max_swarms),
        max_peers: args.whole("--max-peers", cap)?.unwrap_or(d.max_peers),
        max_swarms_per_ip: args.whole("--max-swarms-per-ip", cap)?.unwrap_or(d.max_swarms_per_ip),
        max_peers_per_ip: args.whole("--max-peers-per-ip", cap)?.unwrap_or(d.max_peers_per_ip),
        max_peers_per_ip_in_swarm: args
            .whole("--max-peers-per-ip-in-swarm", cap)?
            .unwrap_or(d.max_peers_per_ip_in_swarm),
    })
}

/// `--max-files-per-ip`, the tracker's catalog quota.
pub fn files_per_ip(args: &mut Args, default: usize) -> Result<usize, Usage> {
    Ok(args.whole("--max-files-per-ip", count(MAX_TRACKER_CAP))?.unwrap_or(default))
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

/// Every binary's `main`: `--help`, `--version`, logging, then `parse` and
/// `run`. An error becomes one line on stderr and the exit code (2 usage, 1
/// runtime, or what the error says).
pub fn main<C, E: Failure>(
    prog: &str,
    help: &str,
    parse: impl FnOnce(Args) -> Result<C, Usage>,
    run: impl FnOnce(C) -> Result<(), E>,
) -> ExitCode {
    let mut args = Args::new(std::env::args_os().skip(1).collect());
    if args.flag(["-h", "--help"]) {
        crate::say!("{}", help.trim_end());
        return ExitCode::SUCCESS;
    }
    if args.flag(["-V", "--version"]) {
        crate::say!("{prog} {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    args.quiet = init_logging(&mut args);
    super::alloc::map_large_buffers();
    match parse(args) {
        Ok(config) => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{prog}: error: {e}");
                ExitCode::from(e.status())
            }
        },
        Err(Usage(msg)) => {
            eprintln!("{prog}: error: {msg} (try --help)");
            ExitCode::from(2)
        }
    }
}

/// Peers uploaded to at once: more than this many slots only split the upload thinner.
const SLOTS: Range = count(1024.0);
/// Connections per file.
const PEERS_PER_FILE: Range = count(65535.0);
/// An upload or download limit in bytes per second, 1 B/s to 1 TiB/s.
const RATE: Range = Range::new(Kind::Bytes, 1.0, (1u64 << 40) as f64);

/// `--slots`, `--max-peers-per-file`, `--up-limit` and `--down-limit`, shared by the seeder and the leecher.
pub fn peer_options(args: &mut Args) -> Result<crate::peer::PeerOptions, Usage> {
    Ok(crate::peer::PeerOptions {
        slots: args.whole("--slots", SLOTS)?.unwrap_or(DEFAULT_SLOTS),
        max_peers: args.whole("--max-peers-per-file", PEERS_PER_FILE)?.unwrap_or(DEFAULT_MAX_PEERS),
        up_limit: args.whole("--up-limit", RATE)?,
        down_limit: args.whole("--down-limit", RATE)?,
    })
}

/// `--publish-key FILE`, read and checked now: a key file that cannot be
/// used is a usage error, before any socket is opened.
fn publish_key_option(args: &mut Args) -> Result<Option<PublishKey>, Usage> {
    match args.path("--publish-key")? {
        None => Ok(None),
        Some(path) => PublishKey::load(&path).map(Some).map_err(|e| Usage(e.to_string())),
    }
}

/// The tracker's publishing rule as the command line gives it: the key of
/// `--publish-key FILE`; none with `--open` (anyone may publish); by
/// default the key in [`publish_key::default_file`], made on first start,
/// so that seeders on this host sign with it and no other host can publish
/// without a copy. [`TrackerKey::resolve`] it once every option is checked.
pub enum TrackerKey {
    Given(PublishKey),
    Open,
    Default,
}

pub fn tracker_key(args: &mut Args) -> Result<TrackerKey, Usage> {
    let open = args.flag("--open");
    match (publish_key_option(args)?, open) {
        (Some(_), true) => Err(Usage("--open and --publish-key exclude each other".into())),
        (Some(key), false) => Ok(TrackerKey::Given(key)),
        (None, true) => Ok(TrackerKey::Open),
        (None, false) => Ok(TrackerKey::Default),
    }
}

impl TrackerKey {
    /// The key publishes must be signed with; the default one is made now if missing.
    pub fn resolve(self) -> Result<Option<PublishKey>, Usage> {
        match self {
            TrackerKey::Given(key) => Ok(Some(key)),
            TrackerKey::Open => {
                log::info!("--open: anyone who reaches the catalog may publish");
                Ok(None)
            }
            TrackerKey::Default => {
                let fix = |e: publish_key::KeyError| Usage(format!("{e} (--publish-key FILE or --open instead)"));
                let path = publish_key::default_file().map_err(fix)?;
                let (key, made) = PublishKey::load_or_create(&path).map_err(fix)?;
                let how = if made { "made" } else { "kept" };
                log::info!(
                    "publishing only with the key in {} ({how}); seeders on this host find it, others need a \
                     copy of it with --publish-key",
                    path.display()
                );
                Ok(Some(key))
            }
        }
    }
}

/// The seeder's key: `--publish-key FILE`, else the key a tracker on this
/// host made ([`publish_key::default_file`]) if there is one, else none.
pub fn seeder_publish_key(args: &mut Args) -> Result<Option<PublishKey>, Usage> {
    if let Some(key) = publish_key_option(args)? {
        return Ok(Some(key));
    }
    let Ok(path) = publish_key::default_file() else { return Ok(None) };
    match PublishKey::load(&path) {
        Ok(key) => {
            log::debug!("signing publishes with the key in {}", path.display());
            Ok(Some(key))
        }
        Err(publish_key::KeyError::Read(_, e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Usage(e.to_string())),
    }
}

pub use crate::peer::machine::{DEFAULT_MAX_PEERS, DEFAULT_SLOTS};

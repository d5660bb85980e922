//! lmk-leecher: command line to `lmk::leecher::Config`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Args, Usage};
use lmk::common::quantity::{Kind, Range};
use lmk::hash::Hash20;
use lmk::leecher::{self, Command, Config, Mode};
use lmk::peer::torrent::{self, Goal};
use lmk::wire::catalog::Selector;
use lmk::wire::MAX_NAME;

const HELP: &str = "\
lmk-leecher: list and download files shared through an LMK tracker

USAGE:
  lmk-leecher [OPTIONS] list
  lmk-leecher [OPTIONS] get [--] NAME... [--out DIR]

  NAME                a file name from the catalog, its 40-hex-digit content id,
                      or the first 8 or more digits of it
                      (after --, a NAME may start with -)

OPTIONS:
  --tracker ADDR      tracker address (UDP and TCP)
                      [default: 127.0.0.1:6969]
  --out DIR           where files are written                [default: .]
  --listen ADDR       address other peers connect to
                      [default: 0.0.0.0:0]
  --slots N           peers uploaded to at once, 1..1024     [default: 8]
                      (at most: one per 1.5 MiB/s the upload reaches,
                      at least 4)
  --max-peers-per-file N
                      connections per file, 1..65535         [default: 50]
  --up-limit RATE     upload limit in bytes/s, 1..1T         [default: none]
  --down-limit RATE   download limit in bytes/s, 1..1T       [default: none]
  --seed-idle SECS    after a file is complete, serve it until nobody has
                      asked for any of it this long, 0..1d   [default: 20s]
  --seed-ratio R      ... or until R x its size is uploaded, 0..1000;
                      0: leave at once                       [default: none]
  --seed-time SECS    ... or until this long after completion, 0..365d
                                                             [default: none]
  --timeout SECS      give up a file when no chunk arrives this long; also
                      how long the catalog may take, and how long a name
                      not in it yet is asked for again, 1s..1d [default: 30]
  --overwrite         replace a DIR/NAME that holds other content
                      [default: refuse]
  --wait              wait for another process downloading the same file
                      into DIR                               [default: refuse]
  --json              print one JSON object per line: list: each file;
                      get: started, progress each second, done (with the
                      file's SHA-256), failed
  -q, --quiet         no bar, no summary: errors only (-q -q: nothing)
  -v, --verbose       more log output (-v debug, -vv trace)
  -V, --version       print the version
  -h, --help          this text

RATE: 300000, 512K, 1.5M, 1G (K, M, G, T = 2^10, 2^20, 2^30, 2^40).
SECS: 30, 1.5, 250ms, 2m, 1h, 1d. Any option also as --option=VALUE.

A download is written to DIR/.lmk/<content id>.part and renamed to DIR/NAME
once every chunk has passed its SHA-1 check; files of one get download one
after the other, each served to other peers while the next downloads. The
same get after any interruption resumes: the chunks on disk are checked by
SHA-1 and only the missing ones fetched. A DIR/NAME with the same content is
\"already complete\"; one with other content is never replaced without
--overwrite. Ctrl-C or SIGTERM leaves the swarms and keeps the scratch file;
once every file is complete and only served to others, it just stops.

EXIT STATUS: 0 every file complete (also when stopped while only seeding),
1 some file not, 2 usage error, 130 stopped by SIGINT (Ctrl-C) during a
download, 143 stopped by SIGTERM during a download.
";

/// `--timeout`: 1 s to a day.
const TIMEOUT: Range = Range::secs(1.0, 86400.0);
/// `--seed-idle`: 0 (leave at once) to a day.
const SEED_IDLE: Range = Range::secs(0.0, 86400.0);
/// `--seed-ratio`: 0 (leave at once) to 1000 copies.
const SEED_RATIO: Range = Range::new(Kind::Number, 0.0, 1000.0);
/// `--seed-time`: 0 to a year.
const SEED_TIME: Range = Range::secs(0.0, 365.0 * 86400.0);

fn parse(mut args: Args) -> Result<Config, Usage> {
    let quiet = args.quiet;
    let tracker = args.addr("--tracker", "127.0.0.1:6969")?;
    let out_dir = args.path("--out")?.unwrap_or_else(|| PathBuf::from("."));
    let listen = args.addr("--listen", "0.0.0.0:0")?;
    let peer = cli::peer_options(&mut args)?;
    let timeout = args.duration("--timeout", TIMEOUT)?.unwrap_or(Duration::from_secs(30));
    let idle = args.duration("--seed-idle", SEED_IDLE)?.unwrap_or(torrent::SEED_IDLE);
    let ratio = args.number("--seed-ratio", SEED_RATIO)?;
    let time = args.duration("--seed-time", SEED_TIME)?;
    let goal = Goal::Until { idle, ratio, time };
    let overwrite = args.flag("--overwrite");
    let wait = args.flag("--wait");
    let json = args.flag("--json");
    let operands: Vec<String> = args.operands()?.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let (sub, rest) = match operands.split_first() {
        Some((sub, rest)) => (Some(sub.as_str()), rest),
        None => (None, &[][..]),
    };
    let command = match sub {
        Some("list") if rest.is_empty() => Command::List,
        Some("list") => return Err(Usage("list takes no arguments".into())),
        Some("get") if rest.is_empty() => return Err(Usage("get needs at least one NAME".into())),
        Some("get") => Command::Get(rest.iter().map(|n| selector(n)).collect::<Result<_, _>>()?),
        Some(other) => return Err(Usage(format!("unknown command {other:?} (list or get)"))),
        None => return Err(Usage("missing command: list or get".into())),
    };
    let mode = match (json, quiet, std::io::stdout().is_terminal()) {
        (true, _, _) => Mode::Json,
        (false, true, _) => Mode::Quiet,
        (false, false, true) => Mode::Bars,
        (false, false, false) => Mode::Plain,
    };
    Ok(Config { tracker, command, out_dir, listen, peer, timeout, goal, mode, overwrite, wait })
}

/// A content id if it is 40 hex digits, else a name (which may also be the
/// start of a content id: 8 or more hex digits, resolved against the list).
fn selector(arg: &str) -> Result<Selector, Usage> {
    if let Ok(id) = arg.parse::<Hash20>() {
        return Ok(Selector::Id(id));
    }
    if arg.is_empty() || arg.len() > MAX_NAME {
        return Err(Usage(format!("NAME {arg:?}: must be 1 to {MAX_NAME} bytes")));
    }
    Ok(Selector::Name(arg.to_string()))
}

fn main() -> ExitCode {
    cli::main("lmk-leecher", HELP, parse, leecher::run)
}

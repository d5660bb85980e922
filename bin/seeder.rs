//! lmk-seeder: command line to `lmk::seeder::Config`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Args, Usage};
use lmk::common::quantity::{Kind, Range};
use lmk::meta::{MAX_CHUNK, MIN_CHUNK};
use lmk::seeder::{self, Config};

const HELP: &str = "\
lmk-seeder: share files through an LMK tracker

USAGE: lmk-seeder [OPTIONS] [--] PATH...

  PATH                a file, or a directory whose regular files are shared
                      (not its subdirectories)
                      (after --, a PATH may start with -)

OPTIONS:
  --tracker ADDR      tracker address (UDP and TCP)
                      [default: 127.0.0.1:6969]
  --listen ADDR       address peers connect to
                      [default: 0.0.0.0:0]
  --slots N           peers uploaded to at once, 1..1024     [default: 8]
                      (at most: one per 1.5 MiB/s the upload reaches,
                      at least 4)
  --max-peers-per-file N
                      connections per file, 1..65535         [default: 50]
  --up-limit RATE     upload limit in bytes/s, 1..1T         [default: none]
  --down-limit RATE   download limit in bytes/s, 1..1T       [default: none]
  --chunk-size BYTES  chunk size, 16K..16M   [default: 64K, doubling for
                      files over 512M so that none has over 8192 chunks]
  --status SECS       show the status line this often, 0..1d
                      [default: 5; 0: never]
                      (redrawn on a terminal; else printed when it changed,
                      with a timestamp)
  --publish-key FILE  sign publishes with this shared secret: a copy of the
                      tracker's key file     [default: the key a tracker on
                      this host made, if any (see lmk-tracker --help)]
  -v, --verbose       more log output (-v debug, -vv trace)
  -q, --quiet         errors only, no status (-q -q: nothing)
  -V, --version       print the version
  -h, --help          this text

RATE and BYTES: 300000, 512K, 1.5M, 1G (K, M, G, T = 2^10, 2^20, 2^30, 2^40).
SECS: 30, 1.5, 250ms, 2m, 1h, 1d. Any option also as --option=VALUE.
Stops on Ctrl-C or SIGTERM after telling the tracker it left.
";

/// `--chunk-size`: what a chunk's SHA-1 and the peer frames allow.
const CHUNK: Range = Range::new(Kind::Bytes, MIN_CHUNK as f64, MAX_CHUNK as f64);
/// The status period: 0 (never) to a day.
const STATUS: Range = Range::secs(0.0, 86400.0);

fn parse(mut args: Args) -> Result<Config, Usage> {
    let tracker = args.addr("--tracker", "127.0.0.1:6969")?;
    let listen = args.addr("--listen", "0.0.0.0:0")?;
    let peer = cli::peer_options(&mut args)?;
    let chunk_size: Option<u32> = args.whole("--chunk-size", CHUNK)?;
    let status_every = args.duration("--status", STATUS)?.unwrap_or(Duration::from_secs(5));
    // -q: errors only, so no status either.
    let status_every = if args.quiet { Duration::ZERO } else { status_every };
    let publish_key = cli::seeder_publish_key(&mut args)?;
    let paths: Vec<PathBuf> = args.operands()?.into_iter().map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err(Usage("no PATH to share".into()));
    }
    Ok(Config { tracker, listen, peer, chunk_size, paths, status_every, publish_key })
}

fn main() -> ExitCode {
    cli::main("lmk-seeder", HELP, parse, seeder::run)
}

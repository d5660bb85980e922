//! lmk-seeder: command line to `lmk::seeder::Config`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Usage};
use lmk::meta::{DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK};
use lmk::seeder::{self, Config};

const HELP: &str = "\
lmk-seeder: share files through an LMK tracker

USAGE: lmk-seeder [OPTIONS] PATH...

  PATH                a file, or a directory whose regular files are shared

OPTIONS:
  --tracker ADDR      tracker address (UDP and TCP)          [default: 127.0.0.1:6969]
  --listen ADDR       address peers connect to               [default: 0.0.0.0:0]
  --slots N           peers uploaded to at once              [default: 8]
  --max-peers N       connections per file                   [default: 50]
  --up-limit RATE     upload limit in bytes/s (20M, 512K)    [default: none]
  --down-limit RATE   download limit in bytes/s              [default: none]
  --chunk-size BYTES  chunk size, 16384..=16777216           [default: 1048576]
  --status SECS       print the status line this often       [default: 5; 0: never]
  --publish-key FILE  sign publishes with this shared secret: a copy of the
                      tracker's key file     [default: the key a tracker on
                      this host made, if any (see lmk-tracker --help)]
  -v, --verbose       more log output (repeat for more)
  -q, --quiet         less log output
  -h, --help          this text

Stops on Ctrl-C or SIGTERM after telling the tracker it left.
";

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let tracker = cli::addr(&mut args, "--tracker", "127.0.0.1:6969")?;
    let listen = cli::addr(&mut args, "--listen", "0.0.0.0:0")?;
    let peer = cli::peer_options(&mut args)?;
    let chunk_size: u32 = cli::opt(&mut args, "--chunk-size")?.unwrap_or(DEFAULT_CHUNK);
    let status_every = cli::secs(&mut args, "--status", 0.0)?.unwrap_or(Duration::from_secs(5));
    let publish_key = cli::seeder_publish_key(&mut args)?;
    let paths: Vec<PathBuf> = args.finish().into_iter().map(PathBuf::from).collect();
    if let Some(flag) = paths.iter().find(|p| p.to_string_lossy().starts_with('-')) {
        return Err(Usage(format!("unknown option {:?}", flag.display().to_string())));
    }
    if paths.is_empty() {
        return Err(Usage("no PATH to share".into()));
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err(Usage(format!("--chunk-size {chunk_size}: must be in {MIN_CHUNK}..={MAX_CHUNK}")));
    }
    Ok(Config { tracker, listen, peer, chunk_size, paths, status_every, publish_key })
}

fn main() -> ExitCode {
    cli::main("lmk-seeder", HELP, parse, seeder::run)
}

//! lmk-leecher: command line to `lmk::leecher::Config`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Usage};
use lmk::hash::Hash20;
use lmk::leecher::{self, Command, Config};
use lmk::peer::torrent::Goal;
use lmk::wire::catalog::Selector;
use lmk::wire::MAX_NAME;

const HELP: &str = "\
lmk-leecher: list and download files shared through an LMK tracker

USAGE:
  lmk-leecher [OPTIONS] list
  lmk-leecher [OPTIONS] get NAME... [--out DIR]

  NAME                a file name from the catalog, or its 40-hex-digit content id

OPTIONS:
  --tracker ADDR      tracker address (UDP and TCP)          [default: 127.0.0.1:6969]
  --out DIR           where files are written                [default: .]
  --listen ADDR       address other peers connect to         [default: 0.0.0.0:0]
  --slots N           peers uploaded to at once              [default: 8]
  --max-peers N       connections per file                   [default: 50]
  --up-limit RATE     upload limit in bytes/s (20M, 512K)    [default: none]
  --down-limit RATE   download limit in bytes/s             [default: none]
  --seed-ratio R      after a file is complete, serve it until R x its size
                      is uploaded; 0: leave at once          [default: 1.0]
  --seed-time SECS    ... or until this long has passed      [default: none]
  --timeout SECS      give up a file when no chunk arrives this long [default: 30]
  --overwrite         replace a DIR/NAME that holds other content [default: refuse]
  --wait              wait for another process downloading the same file
                      into DIR                               [default: refuse]
  -v, --verbose       more log output (repeat for more)
  -q, --quiet         less log output
  -h, --help          this text

A download is written to DIR/.lmk/<content id>.part and renamed to DIR/NAME
once every chunk has passed its SHA-1 check; files of one get download one
after the other, each served to other peers while the next downloads. The
same get after any interruption resumes: the chunks on disk are checked by
SHA-1 and only the missing ones fetched. A DIR/NAME with the same content is
\"already complete\"; one with other content is never replaced without
--overwrite. Ctrl-C or SIGTERM leaves the swarms and keeps the scratch file.

EXIT STATUS: 0 every file complete, 1 some file not, 2 usage error,
130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM.
";

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let tracker = cli::addr(&mut args, "--tracker", "127.0.0.1:6969")?;
    let out_dir: PathBuf = args.opt_value_from_str("--out")?.unwrap_or_else(|| PathBuf::from("."));
    let listen = cli::addr(&mut args, "--listen", "0.0.0.0:0")?;
    let peer = cli::peer_options(&mut args)?;
    let timeout = cli::secs(&mut args, "--timeout", 1.0)?.unwrap_or(Duration::from_secs(30));
    let ratio: f64 = cli::opt(&mut args, "--seed-ratio")?.unwrap_or(1.0);
    if !(ratio.is_finite() && ratio >= 0.0) {
        return Err(Usage(format!("--seed-ratio {ratio}: must be a number >= 0")));
    }
    let time = cli::secs(&mut args, "--seed-time", 0.0)?;
    let goal = Goal::Until { ratio, time };
    let overwrite = args.contains("--overwrite");
    let wait = args.contains("--wait");
    let sub: Option<String> = args.subcommand()?;
    let rest: Vec<String> = args.finish().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(flag) = rest.iter().find(|a| a.starts_with('-')) {
        return Err(Usage(format!("unknown option {flag:?}")));
    }
    let command = match sub.as_deref() {
        Some("list") if rest.is_empty() => Command::List,
        Some("list") => return Err(Usage("list takes no arguments".into())),
        Some("get") if rest.is_empty() => return Err(Usage("get needs at least one NAME".into())),
        Some("get") => Command::Get(rest.iter().map(|n| selector(n)).collect::<Result<_, _>>()?),
        Some(other) => return Err(Usage(format!("unknown command {other:?} (list or get)"))),
        None => return Err(Usage("missing command: list or get".into())),
    };
    let tty = std::io::stdout().is_terminal();
    Ok(Config { tracker, command, out_dir, listen, peer, timeout, goal, tty, overwrite, wait })
}

/// A content id if it is 40 hex digits, else a name.
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

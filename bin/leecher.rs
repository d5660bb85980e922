//! lmk-leecher: command line to `lmk::leecher::Config`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Usage};
use lmk::hash::Hash20;
use lmk::leecher::{self, Command, Config};
use lmk::wire::catalog::Selector;
use lmk::wire::MAX_NAME;

const HELP: &str = "\
lmk-leecher: list and download files shared through an LMK tracker

USAGE:
  lmk-leecher [OPTIONS] list
  lmk-leecher [OPTIONS] get NAME... [--out DIR] [--max-seeders N]

  NAME                a file name from the catalog, or its 40-hex-digit content id

OPTIONS:
  --tracker ADDR      tracker address (UDP and TCP)          [default: 127.0.0.1:6969]
  --out DIR           where files are written                [default: .]
  --max-seeders N     seeders used at once per file          [default: 8]
  --timeout SECS      give up when no seeder answers this long [default: 30]
  -v, --verbose       more log output (repeat for more)
  -q, --quiet         less log output
  -h, --help          this text

A download is written to DIR/NAME.part and renamed to DIR/NAME once every
chunk has passed its SHA-1 check. Exit status 0 only if every file is complete.
";

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let tracker = cli::addr(&mut args, "--tracker", "127.0.0.1:6969")?;
    let out_dir: PathBuf = args.opt_value_from_str("--out")?.unwrap_or_else(|| PathBuf::from("."));
    let max_seeders: usize = cli::opt(&mut args, "--max-seeders")?.unwrap_or(8);
    let timeout = cli::secs(&mut args, "--timeout", 1.0)?.unwrap_or(Duration::from_secs(30));
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
    if max_seeders == 0 {
        return Err(Usage("--max-seeders must be at least 1".into()));
    }
    let tty = std::io::stdout().is_terminal();
    Ok(Config { tracker, command, out_dir, max_seeders, timeout, tty })
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

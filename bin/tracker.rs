//! lmk-tracker: command line to `lmk::tracker::Config`.

use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Usage};
use lmk::tracker::{self, CatalogPolicy, Config, CoreConfig, DEFAULT_FILES_PER_IP};

const HELP: &str = "\
lmk-tracker: BEP 15 UDP tracker and LMK file catalog (TCP, same port)

USAGE: lmk-tracker [OPTIONS]

OPTIONS:
  --listen ADDR       UDP and TCP address to serve           [default: 127.0.0.1:6969]
  --interval SECS     announce interval, whole seconds       [default: 10]
  --expiry SECS       drop peers silent for this long        [default: 3 x interval]
  --status SECS       print the status table this often      [default: 5; 0: never]
  --max-files-per-ip N  catalog files one address (IPv6: /64) may publish
                      and hold at once                       [default: 1000]
  --publish-key FILE  take only publishes signed with this shared secret
                      (16 to 1024 bytes; trailing newlines ignored);
                      seeders need the same --publish-key    [default: none]
  -v, --verbose       more log output (repeat for more)
  -q, --quiet         less log output
  -h, --help          this text
";

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let listen = cli::addr(&mut args, "--listen", "127.0.0.1:6969")?;
    // BEP 15 carries the interval in whole seconds.
    let interval = Duration::from_secs(cli::opt::<u32>(&mut args, "--interval")?.unwrap_or(10).into());
    if interval.is_zero() {
        return Err(Usage("--interval must be at least 1 second".into()));
    }
    let expiry = cli::secs(&mut args, "--expiry", 0.1)?.unwrap_or(interval * 3);
    let status_every = cli::secs(&mut args, "--status", 0.0)?.unwrap_or(Duration::from_secs(5));
    let files_per_ip = cli::opt(&mut args, "--max-files-per-ip")?.unwrap_or(DEFAULT_FILES_PER_IP);
    if files_per_ip == 0 {
        return Err(Usage("--max-files-per-ip must be at least 1".into()));
    }
    let publish_key = cli::publish_key(&mut args)?;
    cli::no_leftovers(args)?;
    if expiry < interval {
        return Err(Usage(format!("--expiry {expiry:?} is shorter than --interval {interval:?}")));
    }
    let catalog = CatalogPolicy { files_per_ip, publish_key };
    Ok(Config { listen, core: CoreConfig { interval, expiry, seed: 0 }, catalog, status_every })
}

fn main() -> ExitCode {
    cli::main("lmk-tracker", HELP, parse, tracker::run)
}

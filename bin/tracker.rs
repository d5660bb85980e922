//! lmk-tracker: command line to `lmk::tracker::Config`.

use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Usage};
use lmk::tracker::{self, CatalogPolicy, Config, CoreConfig, DEFAULT_FILES_PER_IP};

const HELP: &str = "\
lmk-tracker: BEP 15 UDP tracker and LMK file catalog (TCP, same port)

USAGE: lmk-tracker [OPTIONS]

OPTIONS:
  --listen ADDR         UDP and TCP address to serve             [default: 127.0.0.1:6969]
  --interval SECS       announce interval, whole seconds         [default: 10]
  --expiry SECS         drop LMK peers silent for this long      [default: 3 x interval]
  --foreign-expiry SECS drop other clients silent for this long  [default: 2700]
  --catalog-only        track only info hashes the catalog lists
  --max-swarms N        swarms held at once                      [default: 100000]
  --max-peers N         peers held at once                       [default: 1000000]
  --max-swarms-per-ip N swarms one address may open              [default: 5000]
  --max-peers-per-ip N  peers of one address                     [default: 50000]
  --max-peers-per-ip-in-swarm N
                        peers of one address in one swarm        [default: 32]
  --max-files-per-ip N  catalog files one address (IPv6: /64) may publish
                        and hold at once                         [default: 1000]
  --publish-key FILE    take only publishes signed with this shared secret
                        (16 to 1024 bytes; trailing newlines ignored);
                        seeders need the same --publish-key      [default: none]
  --status SECS         print the status table this often        [default: 5; 0: never]
  -v, --verbose         more log output (repeat for more)
  -q, --quiet           less log output
  -h, --help            this text
";

/// Longest expiry accepted: a week (nothing longer is of use to a client).
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let listen = cli::addr(&mut args, "--listen", "127.0.0.1:6969")?;
    // BEP 15 carries the interval in whole seconds.
    let interval = Duration::from_secs(cli::opt::<u32>(&mut args, "--interval")?.unwrap_or(10).into());
    if interval.is_zero() {
        return Err(Usage("--interval must be at least 1 second".into()));
    }
    let defaults = CoreConfig::default();
    let expiry = cli::secs(&mut args, "--expiry", 0.1)?.unwrap_or(interval * 3);
    let foreign_expiry = cli::secs(&mut args, "--foreign-expiry", 0.1)?.unwrap_or(defaults.foreign_expiry);
    let catalog_only = args.contains("--catalog-only");
    let limits = cli::tracker_limits(&mut args, defaults.limits)?;
    let status_every = cli::secs(&mut args, "--status", 0.0)?.unwrap_or(Duration::from_secs(5));
    let files_per_ip = cli::count(&mut args, "--max-files-per-ip", DEFAULT_FILES_PER_IP)?;
    let publish_key = cli::publish_key(&mut args)?;
    cli::no_leftovers(args)?;
    for (name, e) in [("--expiry", expiry), ("--foreign-expiry", foreign_expiry)] {
        if e < interval {
            return Err(Usage(format!("{name} {e:?} is shorter than --interval {interval:?}")));
        }
        if e > MAX_EXPIRY {
            return Err(Usage(format!("{name} {e:?} is longer than {MAX_EXPIRY:?}")));
        }
    }
    let core = CoreConfig { interval, expiry, foreign_expiry, seed: 0, limits, catalog_only };
    let catalog = CatalogPolicy { files_per_ip, publish_key };
    Ok(Config { listen, core, catalog, status_every })
}

fn main() -> ExitCode {
    cli::main("lmk-tracker", HELP, parse, tracker::run)
}

//! lmk-tracker: command line to `lmk::tracker::Config`.

use std::process::ExitCode;
use std::time::Duration;

use lmk::common::cli::{self, Args, Usage};
use lmk::common::quantity::{Kind, Range};
use lmk::tracker::{self, CatalogPolicy, Config, CoreConfig, DEFAULT_FILES_PER_IP};

const HELP: &str = "\
lmk-tracker: BEP 15 UDP tracker and LMK file catalog (TCP, same port); the TCP
port also serves HTTP: status page /, /stats.json, /metrics, /announce, /scrape

USAGE: lmk-tracker [OPTIONS]

OPTIONS:
  --listen ADDR         UDP and TCP (catalog, HTTP) address to serve
                        [default: 127.0.0.1:6969]
  --interval SECS       announce interval, whole seconds, 1s..1d [default: 10]
  --expiry SECS         drop LMK peers silent for this long,
                        interval..7d               [default: 3 x interval]
  --foreign-expiry SECS drop other clients silent for this long,
                        interval..7d                             [default: 2700]
  --catalog-only        track only info hashes the catalog lists
  --max-swarms N        swarms held at once
                        [default: 100000]
  --max-peers N         peers held at once, all swarms
                        [default: 1000000]
  --max-swarms-per-ip N swarms one address may open              [default: 5000]
  --max-peers-per-ip N  peers of one address
                        [default: 50000]
  --max-peers-per-ip-in-swarm N
                        peers of one address in one swarm        [default: 32]
  --max-files-per-ip N  catalog files one address (IPv6: /64) may publish
                        and hold at once                         [default: 1000]
                        (each N above: 1..100000000)
  --publish-key FILE    take only publishes signed with this shared secret
                        (16 to 1024 bytes; trailing newlines ignored);
                        seeders need the same --publish-key
                        [default: the key in $XDG_STATE_HOME/lmktorrent/
                        publish.key or ~/.local/state/lmktorrent/publish.key,
                        made on first start; seeders on this host find it]
  --open                take publishes from anyone, unsigned
  --status SECS         show the status table this often, 0..1d
                        [default: 5; 0: never]
                        (redrawn on a terminal; else printed when it
                        changed, with a timestamp and rates)
  -v, --verbose         more log output (-v debug, -vv trace)
  -q, --quiet           errors only, no status (-q -q: nothing)
  -V, --version         print the version
  -h, --help            this text

SECS is a duration: 30, 1.5, 250ms, 2m, 1h, 1d. An option's value may also
be given as --option=VALUE.
";

/// BEP 15 carries the interval in whole seconds; at most a day.
const INTERVAL: Range = Range::new(Kind::WholeSeconds, 1.0, 86400.0);
/// Expiries: at least a second, at most 7 days (nothing longer is of use to a client).
const EXPIRY: Range = Range::secs(1.0, 7.0 * 86400.0);
/// The status period: 0 (never) to a day.
const STATUS: Range = Range::secs(0.0, 86400.0);

fn parse(mut args: Args) -> Result<Config, Usage> {
    let listen = args.addr("--listen", "127.0.0.1:6969")?;
    let interval = Duration::from_secs(args.whole("--interval", INTERVAL)?.unwrap_or(10));
    let defaults = CoreConfig::default();
    let expiry = args.duration("--expiry", EXPIRY)?.unwrap_or(interval * 3);
    let foreign_expiry = args.duration("--foreign-expiry", EXPIRY)?.unwrap_or(defaults.foreign_expiry);
    let catalog_only = args.flag("--catalog-only");
    let limits = cli::tracker_limits(&mut args, defaults.limits)?;
    let status_every = args.duration("--status", STATUS)?.unwrap_or(Duration::from_secs(5));
    // -q: errors only, so no status either.
    let status_every = if args.quiet { Duration::ZERO } else { status_every };
    let files_per_ip = cli::files_per_ip(&mut args, DEFAULT_FILES_PER_IP)?;
    let publish_key = cli::tracker_key(&mut args)?;
    args.no_operands()?;
    for (name, e) in [("--expiry", expiry), ("--foreign-expiry", foreign_expiry)] {
        if e < interval {
            return Err(Usage(format!(
                "{name} {}s is shorter than --interval {}s",
                e.as_secs_f64(),
                interval.as_secs()
            )));
        }
    }
    let core = CoreConfig { interval, expiry, foreign_expiry, seed: 0, limits, catalog_only };
    let catalog = CatalogPolicy { files_per_ip, publish_key: publish_key.resolve()? };
    Ok(Config { listen, core, catalog, status_every })
}

fn main() -> ExitCode {
    cli::main("lmk-tracker", HELP, parse, tracker::run)
}

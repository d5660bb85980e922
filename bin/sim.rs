//! lmk-sim: command line to scenarios; runs them and prints their tables.

use std::path::PathBuf;
use std::process::ExitCode;

use lmk::common::cli::{self, Args, Failure, Usage};
use lmk::common::quantity::{Kind, Range};
use lmk::sim::options::{self, Rows};
use lmk::sim::{report, run};

const HELP: &str = "\
lmk-sim: a swarm of real LMK peer cores and the real tracker core on a
simulated network and clock (see README, Simulator)

USAGE: lmk-sim [OPTIONS]
       lmk-sim --standard [--seed S] [--out DIR]
       lmk-sim --scenario FILE [--seed S] [--out DIR]

SCENARIO:
  --peers N               downloaders, besides one seed          [default: 50]
  --size BYTES            file size (64M, 1G)                    [default: 64M]
  --chunk-size BYTES      chunk size, 16K..=16M    [default: as lmk-seeder:
                          64K, doubling for files over 512M]
  --seed-up RATE          the seed's uplink, bytes/s (20M)       [default: 20M]
  --up RATE               every downloader's uplink              [default: 20M]
  --classes LIST          uplinks by share instead of --up:
                          10%:100M,60%:20M,30%:5M
  --down RATE             every downloader's downlink; 0: none   [default: 0]
  --latency TIME          one-way delay of each host's link      [default: 1ms]
  --arrivals all|poisson:SPAN
                          downloaders start together, or as a Poisson
                          process over SPAN (poisson:30s)        [default: all]
  --leave-after-done P    share of downloaders that leave once
                          complete (20%)                         [default: 0%]
  --crash P               share that crash mid-download: their
                          connections reset, no goodbye          [default: 0%]
  --poisoners P           share that send wrong bytes            [default: 0%]
  --stallers P            share that claim every chunk and never
                          send one                               [default: 0%]
  --rejecters P           share that claim every chunk and reject
                          each request                           [default: 0%]
  --non-readers P         share that ask for chunks and never
                          read them                              [default: 0%]
  --seed S                seed of every random choice: the same
                          scenario and seed give the same run    [default: 1]
PEERS (as lmk-leecher's options):
  --slots N               upload slots, at most (one per 1.5M/s
                          of upload, at least 4)                 [default: 8]
  --max-peers-per-file N  connections per file                   [default: 50]
  --seed-idle TIME        a complete peer leaves once nobody has
                          asked it for anything this long        [default: 20s]
  --seed-ratio R          ... or after uploading R x the file    [default: none]
  --seed-time TIME        ... or this long after completion      [default: none]
  --interval TIME         the tracker's announce interval        [default: 10s]
MODEL:
  --sndbuf BYTES          bytes a connection holds queued before
                          its core is asked for more             [default: 512K]
  --limit TIME            simulated time after which who is not
                          done counts as unfinished            [default: 3600s]
ROWS:
  --scenario FILE         a TOML file: top-level keys are the options above
                          without their dashes (peers = 1000, up = \"20M\"),
                          for every [[run]] table, one row each, with its
                          own options and a name (name = \"slow\")
OUTPUT:
  --standard              run the standard set instead: N=100 and N=1000 at
                          20M/s, N=1000 in three classes, N=1000 with Poisson
                          arrivals over 30 s, N=1000 with 20% leaving and 5%
                          crashing (256 MiB each)
  --out DIR               also write DIR/NAME.peers.jsonl (one line per
                          downloader) and DIR/NAME.svg (completion and
                          upload use)
  --no-wall               leave the wall time out of the JSON line, so that two
                          runs compare byte for byte
  --trace PEER            print what downloader PEER (as numbered in
                          the peers file, from 0), or the seed with
                          `--trace seed`, sends and receives, its
                          connections and timers, to stderr
  --hops                  follow every chunk: print how many hops from the
                          seed it came, how long after the seed's first
                          send, and where each hop's time went
  -v, --verbose           the cores' logs, at debug level (-vv: trace)
  -h, --help              this text

Prints a table per scenario (per class: first, median and last finish over
T_p2p, the worst wait for a first chunk, unfinished peers, use of the upload
capacity; then how long finished peers stayed after done: the run goes on
until each has left by its seeding goal) and, last, one JSON object per
scenario.
";

struct Config {
    runs: Rows,
    /// The host traced: 0 the seed, n + 1 downloader n.
    trace: Option<usize>,
    out: Option<PathBuf>,
    wall: bool,
    hops: bool,
}

fn parse(mut args: Args) -> Result<Config, Usage> {
    let standard = args.flag("--standard");
    let wall = !args.flag("--no-wall");
    let hops = args.flag("--hops");
    let out = args.path("--out")?;
    let trace = match args.text("--trace")?.as_deref() {
        Some("seed") => Some(0),
        Some(peer) => Some(
            1 + Range::new(Kind::Count, 0.0, 100_000.0)
                .whole::<usize>(peer)
                .map_err(|e| Usage(format!("--trace {peer:?}: {e} (or seed)")))?,
        ),
        None => None,
    };
    let file = args.path("--scenario")?;
    let runs = match file {
        Some(_) if standard => return Err(Usage("--scenario and --standard: give one of them".into())),
        Some(path) => {
            let seed: Option<u64> = args.whole("--seed", Range::new(Kind::Count, 0.0, 9.0e15))?;
            let mut rows = options::file(&path)?;
            for (_, s) in rows.iter_mut() {
                s.seed = seed.unwrap_or(s.seed);
            }
            rows
        }
        None => {
            let scenario = options::scenario(&mut args)?;
            if standard {
                options::standard(&scenario)
            } else {
                vec![("sim".to_string(), scenario)]
            }
        }
    };
    args.no_operands()?;
    Ok(Config { runs, trace, out, wall, hops })
}

struct SimError(String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Failure for SimError {}

fn simulate(config: Config) -> Result<(), SimError> {
    // A thousand cores' info lines would bury the table: their logs only with -v.
    if log::max_level() < log::LevelFilter::Debug {
        log::set_max_level(log::LevelFilter::Off);
    }
    if let Some(dir) = &config.out {
        std::fs::create_dir_all(dir).map_err(|e| SimError(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut lines = Vec::new();
    for (name, scenario) in &config.runs {
        let outcome = run::run(scenario, config.trace, config.hops).map_err(|e| SimError(e.0))?;
        // A reader that went away (`| head`) ends nothing but the output.
        lmk::say!("{name}: {}", report::table(&outcome).trim_end());
        if config.wall {
            lmk::say!("{name}: wall time {:.2}s", outcome.wall.as_secs_f64());
        }
        lmk::say!("");
        if let Some(dir) = &config.out {
            let write = |file: String, text: String| {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(|e| SimError(format!("cannot write {}: {e}", path.display())))
            };
            write(format!("{name}.peers.jsonl"), report::peer_lines(&outcome))?;
            write(format!("{name}.svg"), report::svg(&outcome))?;
        }
        lines.push(report::json(&outcome, config.wall));
    }
    for line in lines {
        lmk::say!("{line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    cli::main("lmk-sim", HELP, parse, simulate)
}

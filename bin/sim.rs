//! lmk-sim: command line to scenarios; runs them and prints their tables.

use std::path::PathBuf;
use std::process::ExitCode;

use lmk::common::cli::{self, Failure, Usage};
use lmk::sim::scenario::{self as sc, Scenario};
use lmk::sim::{report, run};

const HELP: &str = "\
lmk-sim: a swarm of real LMK peer cores and the real tracker core on a
simulated network and clock (see README, Simulator)

USAGE: lmk-sim [OPTIONS]
       lmk-sim --standard [--seed S] [--out DIR]

SCENARIO:
  --peers N               downloaders, besides one seed          [default: 50]
  --size BYTES            file size (64M, 1G)                    [default: 64M]
  --chunk-size BYTES      chunk size, 16K..=16M                  [default: 1M]
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
  --seed S                seed of every random choice: the same
                          scenario and seed give the same run    [default: 1]
PEERS (as lmk-leecher's options):
  --slots N               upload slots                           [default: 8]
  --max-peers N           connections per file                   [default: 50]
  --seed-ratio R          leave after uploading R x the file     [default: 1.0]
  --seed-time TIME        ... or this long after completion      [default: none]
  --interval TIME         the tracker's announce interval        [default: 10s]
MODEL:
  --sndbuf BYTES          bytes a connection holds queued before
                          its core is asked for more             [default: 512K]
  --limit TIME            simulated time after which who is not
                          done counts as unfinished              [default: 3600s]
OUTPUT:
  --standard              run the standard set instead: N=100 and N=1000 at
                          20M/s, N=1000 in three classes, N=1000 with Poisson
                          arrivals over 30 s, N=1000 with 20% leaving and 5%
                          crashing (256 MiB each)
  --out DIR               also write DIR/NAME.peers.jsonl (one line per
                          downloader) and DIR/NAME.svg (completion and upload use)
  --no-wall               leave the wall time out of the JSON line, so that two
                          runs compare byte for byte
  -v, --verbose           the cores' logs, at debug level (-vv: trace)
  -h, --help              this text

Prints a table per scenario (per class: first, median and last finish over
T_p2p, the worst wait for a first chunk, unfinished peers, use of the upload
capacity) and, last, one JSON object per scenario.
";

struct Config {
    runs: Vec<(String, Scenario)>,
    out: Option<PathBuf>,
    wall: bool,
}

fn usage(e: sc::BadValue) -> Usage {
    Usage(e.0)
}

fn value<T>(
    args: &mut pico_args::Arguments,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, sc::BadValue>,
) -> Result<Option<T>, Usage> {
    let raw: Option<String> = args.opt_value_from_str(name)?;
    raw.map(|r| parse(&r).map_err(usage)).transpose()
}

fn parse(mut args: pico_args::Arguments) -> Result<Config, Usage> {
    let standard = args.contains("--standard");
    let wall = !args.contains("--no-wall");
    let out: Option<PathBuf> = args.opt_value_from_str("--out")?;
    let d = Scenario::default();
    let peers: usize = cli::count(&mut args, "--peers", d.peers)?;
    let size = value(&mut args, "--size", |r| sc::bytes("--size", r, false))?.map_or(d.size, |v| v as u64);
    let chunk_size =
        value(&mut args, "--chunk-size", |r| sc::bytes("--chunk-size", r, false))?.map_or(d.chunk_size as f64, |v| v);
    if !(f64::from(lmk::meta::MIN_CHUNK)..=f64::from(lmk::meta::MAX_CHUNK)).contains(&chunk_size) {
        return Err(Usage(format!("--chunk-size {chunk_size}: must be in 16K..=16M")));
    }
    let seed_up = value(&mut args, "--seed-up", |r| sc::bytes("--seed-up", r, true))?.unwrap_or(d.seed_up);
    let up = value(&mut args, "--up", |r| sc::bytes("--up", r, true))?;
    let classes = value(&mut args, "--classes", sc::classes)?;
    if up.is_some() && classes.is_some() {
        return Err(Usage("--up and --classes: give one of them".into()));
    }
    let classes = classes.or_else(|| up.map(|up| vec![sc::Class { share: 1.0, up }])).unwrap_or(d.classes.clone());
    let scenario = Scenario {
        peers,
        size,
        chunk_size: chunk_size as u32,
        seed_up,
        classes,
        down: value(&mut args, "--down", |r| sc::bytes("--down", r, true))?.unwrap_or(d.down),
        latency: value(&mut args, "--latency", |r| sc::duration("--latency", r))?.unwrap_or(d.latency),
        arrivals: value(&mut args, "--arrivals", sc::arrivals)?.unwrap_or(d.arrivals),
        leave_after_done: value(&mut args, "--leave-after-done", |r| sc::fraction("--leave-after-done", r))?
            .unwrap_or(d.leave_after_done),
        crash: value(&mut args, "--crash", |r| sc::fraction("--crash", r))?.unwrap_or(d.crash),
        poisoners: value(&mut args, "--poisoners", |r| sc::fraction("--poisoners", r))?.unwrap_or(d.poisoners),
        sndbuf: value(&mut args, "--sndbuf", |r| sc::bytes("--sndbuf", r, false))?.map_or(d.sndbuf, |v| v as u64),
        slots: cli::count(&mut args, "--slots", d.slots)?,
        max_peers: cli::count(&mut args, "--max-peers", d.max_peers)?,
        seed_ratio: value(&mut args, "--seed-ratio", |r| {
            r.parse::<f64>()
                .ok()
                .filter(|v| (0.0..=1e6).contains(v))
                .ok_or_else(|| sc::BadValue(format!("--seed-ratio {r:?}: must be a number from 0 to 1000000")))
        })?
        .unwrap_or(d.seed_ratio),
        seed_time: value(&mut args, "--seed-time", |r| sc::duration("--seed-time", r))?,
        interval: value(&mut args, "--interval", |r| sc::duration("--interval", r))?.unwrap_or(d.interval),
        limit: value(&mut args, "--limit", |r| sc::duration("--limit", r))?.unwrap_or(d.limit),
        seed: cli::count(&mut args, "--seed", d.seed)?,
    };
    if scenario.crash + scenario.leave_after_done + scenario.poisoners > 1.0 {
        return Err(Usage("--leave-after-done, --crash and --poisoners add up to more than 100%".into()));
    }
    if scenario.interval.is_zero() {
        return Err(Usage("--interval must be more than 0".into()));
    }
    cli::no_leftovers(args)?;
    let runs = if standard { standard_set(&scenario) } else { vec![("sim".to_string(), scenario)] };
    Ok(Config { runs, out, wall })
}

/// The rows of `make sim`; `--seed` and the model options carry over.
fn standard_set(base: &Scenario) -> Vec<(String, Scenario)> {
    let s = Scenario { size: 256 << 20, ..base.clone() };
    let mib20 = vec![sc::Class { share: 1.0, up: 20.0 * sc::MIB }];
    let mixed = sc::classes("10%:100M,60%:20M,30%:5M").unwrap_or_default();
    vec![
        ("n100".into(), Scenario { peers: 100, classes: mib20.clone(), ..s.clone() }),
        ("n1000".into(), Scenario { peers: 1000, classes: mib20.clone(), ..s.clone() }),
        ("classes".into(), Scenario { peers: 1000, classes: mixed, ..s.clone() }),
        (
            "poisson".into(),
            Scenario {
                peers: 1000,
                classes: mib20.clone(),
                arrivals: sc::Arrivals::Poisson(std::time::Duration::from_secs(30)),
                ..s.clone()
            },
        ),
        ("churn".into(), Scenario { peers: 1000, classes: mib20, leave_after_done: 0.2, crash: 0.05, ..s }),
    ]
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
        let outcome = run::run(scenario).map_err(|e| SimError(e.0))?;
        print!("{name}: {}", report::table(&outcome));
        if config.wall {
            println!("{name}: wall time {:.2}s", outcome.wall.as_secs_f64());
        }
        println!();
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
        println!("{line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    cli::main("lmk-sim", HELP, parse, simulate)
}

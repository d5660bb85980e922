//! lmk-sim's scenario options: from the command line, from a TOML file of
//! rows (whose keys are the options' names), or the standard set.

use std::path::Path;
use std::time::Duration;

use super::scenario::{self as sc, Scenario};
use crate::common::cli::{Args, Usage};
use crate::common::quantity::{Kind, Range};

/// A scenario file larger than this is refused unread.
const MAX_FILE: u64 = 1 << 20;

/// Named scenarios, run in order.
pub type Rows = Vec<(String, Scenario)>;

/// 1 TiB: the largest size, rate or buffer taken.
const TIB: f64 = 1099511627776.0;
const PEERS: Range = Range::new(Kind::Count, 1.0, 100_000.0);
const SIZE: Range = Range::new(Kind::Bytes, 1.0, TIB);
const CHUNK: Range = Range::new(Kind::Bytes, crate::meta::MIN_CHUNK as f64, crate::meta::MAX_CHUNK as f64);
/// A link: 0 for unlimited.
const LINK: Range = Range::new(Kind::Bytes, 0.0, TIB);
const SNDBUF: Range = Range::new(Kind::Bytes, 1.0, 1024.0 * 1024.0 * 1024.0);
const SLOTS: Range = Range::new(Kind::Count, 1.0, 1024.0);
const PEERS_PER_FILE: Range = Range::new(Kind::Count, 1.0, 65535.0);
const RATIO: Range = Range::new(Kind::Number, 0.0, 1e6);
const LATENCY: Range = Range::secs(0.0, 10.0);
const TIME: Range = Range::secs(0.001, 1e6);
/// `--seed-idle`: 0 leaves at completion, as lmk-leecher's.
const IDLE: Range = Range::secs(0.0, 1e6);
const SEED: Range = Range::new(Kind::Count, 0.0, 9.0e15);

fn usage(e: sc::BadValue) -> Usage {
    Usage(e.0)
}

/// A link option: bytes per second, 0 for unlimited.
fn link(args: &mut Args, name: &'static str) -> Result<Option<f64>, Usage> {
    Ok(args.whole::<u64>(name, LINK)?.map(|v| if v == 0 { f64::INFINITY } else { v as f64 }))
}

/// A text option parsed by `parse`.
fn text<T>(
    args: &mut Args,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, sc::BadValue>,
) -> Result<Option<T>, Usage> {
    args.text(name)?.map(|r| parse(&r).map_err(usage)).transpose()
}

/// The scenario options of `args`, over the defaults.
pub fn scenario(args: &mut Args) -> Result<Scenario, Usage> {
    let d = Scenario::default();
    let up = link(args, "--up")?;
    let classes = text(args, "--classes", sc::classes)?;
    if up.is_some() && classes.is_some() {
        return Err(Usage("--up and --classes: give one of them".into()));
    }
    let classes = classes.or_else(|| up.map(|up| vec![sc::Class { share: 1.0, up }])).unwrap_or(d.classes.clone());
    let share = |name: &'static str| move |r: &str| sc::fraction(name, r);
    let s = Scenario {
        peers: args.whole("--peers", PEERS)?.unwrap_or(d.peers),
        size: args.whole("--size", SIZE)?.unwrap_or(d.size),
        chunk_size: args.whole("--chunk-size", CHUNK)?.or(d.chunk_size),
        seed_up: link(args, "--seed-up")?.unwrap_or(d.seed_up),
        classes,
        down: link(args, "--down")?.unwrap_or(d.down),
        latency: args.duration("--latency", LATENCY)?.unwrap_or(d.latency),
        arrivals: text(args, "--arrivals", sc::arrivals)?.unwrap_or(d.arrivals),
        leave_after_done: text(args, "--leave-after-done", share("--leave-after-done"))?.unwrap_or(d.leave_after_done),
        crash: text(args, "--crash", share("--crash"))?.unwrap_or(d.crash),
        poisoners: text(args, "--poisoners", share("--poisoners"))?.unwrap_or(d.poisoners),
        stallers: text(args, "--stallers", share("--stallers"))?.unwrap_or(d.stallers),
        rejecters: text(args, "--rejecters", share("--rejecters"))?.unwrap_or(d.rejecters),
        non_readers: text(args, "--non-readers", share("--non-readers"))?.unwrap_or(d.non_readers),
        sndbuf: args.whole("--sndbuf", SNDBUF)?.unwrap_or(d.sndbuf),
        slots: args.whole("--slots", SLOTS)?.unwrap_or(d.slots),
        max_peers: args.whole("--max-peers-per-file", PEERS_PER_FILE)?.unwrap_or(d.max_peers),
        seed_idle: args.duration("--seed-idle", IDLE)?.unwrap_or(d.seed_idle),
        seed_ratio: args.number("--seed-ratio", RATIO)?,
        seed_time: args.duration("--seed-time", TIME)?,
        interval: args.duration("--interval", TIME)?.unwrap_or(d.interval),
        limit: args.duration("--limit", TIME)?.unwrap_or(d.limit),
        seed: args.whole("--seed", SEED)?.unwrap_or(d.seed),
    };
    if s.crash + s.leave_after_done + s.poisoners + s.stallers + s.rejecters + s.non_readers > 1.0 {
        return Err(Usage(
            "--leave-after-done, --crash, --poisoners, --stallers, --rejecters and --non-readers add up to more than 100%"
                .into(),
        ));
    }
    Ok(s)
}

/// The rows of `make sim`; `--seed` and the model options carry over from `base`.
pub fn standard(base: &Scenario) -> Rows {
    let s = Scenario { size: 256 << 20, ..base.clone() };
    let mib20 = vec![sc::Class { share: 1.0, up: 20.0 * sc::MIB }];
    let mixed = vec![
        sc::Class { share: 0.1, up: 100.0 * sc::MIB },
        sc::Class { share: 0.6, up: 20.0 * sc::MIB },
        sc::Class { share: 0.3, up: 5.0 * sc::MIB },
    ];
    let poisson = sc::Arrivals::Poisson(Duration::from_secs(30));
    vec![
        ("n100".into(), Scenario { peers: 100, classes: mib20.clone(), ..s.clone() }),
        ("n1000".into(), Scenario { peers: 1000, classes: mib20.clone(), ..s.clone() }),
        ("classes".into(), Scenario { peers: 1000, classes: mixed, ..s.clone() }),
        ("poisson".into(), Scenario { peers: 1000, classes: mib20.clone(), arrivals: poisson, ..s.clone() }),
        ("churn".into(), Scenario { peers: 1000, classes: mib20, leave_after_done: 0.2, crash: 0.05, ..s }),
    ]
}

/// The rows of a TOML file: its top-level keys are options for every row
/// (`peers = 1000`, `classes = "10%:100M,90%:20M"`), and each `[[run]]`
/// table is one row, named by its `name` key, with options of its own.
/// Without `[[run]]` the file is one row named after the file.
pub fn file(path: &Path) -> Result<Rows, Usage> {
    let text = read_small(path).map_err(|e| Usage(format!("--scenario {}: {e}", path.display())))?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| Usage(format!("--scenario {}: {}", path.display(), e.message())))?;
    let mut base = Vec::new();
    let mut runs = Vec::new();
    for (key, v) in &table {
        match (key.as_str(), v) {
            ("run", toml::Value::Array(rows)) => runs = rows.clone(),
            _ => base.push((key.clone(), arg(key, v)?)),
        }
    }
    let stem = path.file_stem().map_or("sim".into(), |s| s.to_string_lossy().into_owned());
    if runs.is_empty() {
        return Ok(vec![(stem, row(&base, &[])?)]);
    }
    let mut rows = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let toml::Value::Table(t) = run else { return Err(Usage(format!("[[run]] {}: not a table", i + 1))) };
        let mut name = format!("{stem}{}", i + 1);
        let mut own = Vec::new();
        for (key, v) in t {
            match (key.as_str(), v) {
                ("name", toml::Value::String(n)) => name = n.clone(),
                _ => own.push((key.clone(), arg(key, v)?)),
            }
        }
        rows.push((name, row(&base, &own)?));
    }
    Ok(rows)
}

/// One row's scenario: the file's options, the row's own over them.
fn row(base: &[(String, String)], own: &[(String, String)]) -> Result<Scenario, Usage> {
    let mut args = Vec::new();
    for (key, v) in base.iter().filter(|(k, _)| !own.iter().any(|(o, _)| o == k)).chain(own) {
        args.push(format!("--{key}").into());
        args.push(v.into());
    }
    let mut args = Args::new(args);
    let s = scenario(&mut args)?;
    args.no_operands().map_err(|Usage(e)| Usage(format!("in the scenario file: {e}")))?;
    Ok(s)
}

/// A TOML value as an option's text.
fn arg(key: &str, v: &toml::Value) -> Result<String, Usage> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        _ => Err(Usage(format!("{key}: a string or a number, as on the command line"))),
    }
}

fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_rows_over_common_options() {
        let dir = crate::common::test_dir::fresh("sim-options");
        let path = dir.join("mixed.toml");
        std::fs::write(
            &path,
            "size = \"32M\"\npeers = 20\n[[run]]\nname = \"small\"\n[[run]]\npeers = 40\nclasses = \"50%:20M,50%:5M\"\n",
        )
        .unwrap();
        let rows = file(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.as_str(), rows[0].1.peers, rows[0].1.size), ("small", 20, 32 << 20));
        assert_eq!((rows[1].0.as_str(), rows[1].1.peers, rows[1].1.classes.len()), ("mixed2", 40, 2));
        std::fs::write(&path, "peers = \"many\"\n").unwrap();
        assert!(file(&path).is_err());
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(file(&path).unwrap_err().0.contains("bogus"));
    }
}

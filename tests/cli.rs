//! The command lines: usage errors exit 2 with one `error:` line, `--help`
//! exits 0, and a leecher that cannot do its job says why and exits non-zero.

mod common;

use std::time::Duration;

use common::fake::dead_addr;
use common::*;

/// Hang guard for runs that should end in a few seconds (not a timing assertion).
const QUICK: Duration = Duration::from_secs(10);

/// Asserts a usage error: exit code 2, nothing on stdout and exactly one
/// line on stderr, `PROG: error: ...`; returns that line.
fn assert_usage_error(program: &str, args: &[&str]) -> String {
    let prog = std::path::Path::new(program).file_name().unwrap().to_string_lossy().into_owned();
    let out = run_bin(program, args, QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{prog} {args:?}: exit code\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{prog} {args:?}: exactly one line on stderr:\n{stderr}");
    assert!(lines[0].starts_with(&format!("{prog}: error: ")), "{prog} {args:?}: {:?}", lines[0]);
    assert!(text(&out.stdout).is_empty(), "{prog} {args:?}: nothing on stdout");
    lines[0].to_string()
}

/// Values no option takes: empty, blank, negative, not a number, infinite,
/// huge, an unknown unit, garbage.
const MALFORMED: &[&str] = &[
    "",
    " ",
    "-1",
    "-0.5",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "99999999999999999999",
    "1e19",
    "1e400",
    "1x",
    "x1",
    "K",
    "1.2.3",
    "0x10",
    "1 K",
    "5Q",
    "\u{661}",
];

/// An option and the values just outside its range.
type OptionValues = (&'static str, &'static [&'static str]);

/// Every option that takes a value, by program, with the values just
/// outside its range (and fractions or units where the option takes none).
const TRACKER_OPTIONS: &[OptionValues] = &[
    ("--listen", &["127.0.0.1", "127.0.0.1:99999", "nowhere"]),
    ("--interval", &["0", "1.5", "250ms", "86401", "2d"]),
    ("--expiry", &["0", "0.5", "604801", "8d"]),
    ("--foreign-expiry", &["0", "0.5", "604801", "8d"]),
    ("--max-swarms", &["0", "1.5", "100000001", "1K"]),
    ("--max-peers", &["0", "1.5", "100000001", "1K"]),
    ("--max-swarms-per-ip", &["0", "1.5", "100000001"]),
    ("--max-peers-per-ip", &["0", "1.5", "100000001"]),
    ("--max-peers-per-ip-in-swarm", &["0", "1.5", "100000001"]),
    ("--max-files-per-ip", &["0", "1.5", "100000001"]),
    ("--status", &["-0.1", "86401", "2d"]),
];
/// The options the seeder and the leecher share.
const PEER_OPTIONS: &[OptionValues] = &[
    ("--tracker", &["127.0.0.1", "127.0.0.1:99999", "nowhere"]),
    ("--listen", &["127.0.0.1", "127.0.0.1:99999", "nowhere"]),
    ("--slots", &["0", "1.5", "1025", "18446744073709551616"]),
    ("--max-peers-per-file", &["0", "1.5", "65536"]),
    ("--up-limit", &["0", "1.5", "0.1K", "1025G", "2T", "5X"]),
    ("--down-limit", &["0", "1.5", "0.1K", "1025G", "2T", "5X"]),
];
const SEEDER_OPTIONS: &[OptionValues] = &[
    ("--chunk-size", &["0", "100", "16383", "16777217", "0.5K", "32M", "1.5K"]),
    ("--status", &["-0.1", "86401", "2d"]),
];
const LEECHER_OPTIONS: &[OptionValues] = &[
    ("--timeout", &["0", "0.5", "86401", "2d"]),
    ("--seed-ratio", &["-0.001", "1000.5", "1e4", "1K"]),
    ("--seed-time", &["-1", "366d", "31536001"]),
];

/// Every option with every malformed value and every value just out of its
/// range, as `--opt value` and as `--opt=value`: exit 2 and one line that names the option.
#[test]
fn every_option_value_out_of_range_is_one_line_and_exit_2() {
    let tmp = TempDir::new("values");
    let file = random_file(tmp.path(), "f.bin", 1000, 9);
    let file = file.to_str().unwrap();
    let programs: [(&str, Vec<&OptionValues>, &[&str]); 3] = [
        (TRACKER, TRACKER_OPTIONS.iter().collect(), &[]),
        (SEEDER, PEER_OPTIONS.iter().chain(SEEDER_OPTIONS).collect(), &[file]),
        (LEECHER, PEER_OPTIONS.iter().chain(LEECHER_OPTIONS).collect(), &["list"]),
    ];
    for (program, options, operands) in programs {
        for (option, extremes) in options {
            for value in MALFORMED.iter().chain(extremes.iter()) {
                let spaced: Vec<&str> = [*option, value].into_iter().chain(operands.iter().copied()).collect();
                let line = assert_usage_error(program, &spaced);
                assert!(line.contains(option), "the error names {option}: {line:?}");
                let joined = format!("{option}={value}");
                let eq: Vec<&str> = [joined.as_str()].into_iter().chain(operands.iter().copied()).collect();
                assert_usage_error(program, &eq);
            }
            let missing: Vec<&str> = operands.iter().copied().chain([*option]).collect();
            let line = assert_usage_error(program, &missing);
            assert!(line.contains(option), "the error names {option}: {line:?}");
        }
    }
}

/// `--version`, `--opt=value` and `--` (operands that look like options).
#[test]
fn version_equals_and_double_dash() {
    for program in [TRACKER, SEEDER, LEECHER] {
        let out = run_bin(program, &["--version"], QUICK);
        assert!(out.status.success(), "{program} --version: exit {}", out.status);
        let name = std::path::Path::new(program).file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(text(&out.stdout), format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
    }
    // Given twice, the last counts (a wrapper's default, then the user's).
    let line = assert_usage_error(LEECHER, &["--timeout", "5", "--timeout=2d", "list"]);
    assert!(line.contains("--timeout \"2d\""), "{line}");
    // The value of an option given with `=` is read as with a space.
    let line = assert_usage_error(LEECHER, &["--timeout=2d", "list"]);
    assert!(line.contains("--timeout \"2d\": must be a duration from 1s to 1d"), "{line}");
    // After `--`, an option-like word is an operand: a seeder path, here a missing one (exit 1, not 2).
    let tmp = TempDir::new("dashes");
    let out = run_bin(
        SEEDER,
        &["--status=0", "--listen=127.0.0.1:0", "--", &tmp.path().join("-dash.txt").to_string_lossy()],
        QUICK,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("-dash.txt"), "{}", text(&out.stderr));
    let line = assert_usage_error(LEECHER, &["--", "-dash.txt"]);
    assert!(line.contains("unknown command \"-dash.txt\""), "{line}");
    let line = assert_usage_error(SEEDER, &["-dash.txt"]);
    assert!(line.contains("unknown option \"-dash.txt\""), "{line}");
}

#[test]
fn cli_errors() {
    let tmp = TempDir::new("cli");
    let file = random_file(tmp.path(), "f.bin", 1000, 9);
    let file = file.to_str().unwrap();

    for args in [
        &["--bogus"][..],
        &["--listen", "not-an-address"],
        &["--listen", "127.0.0.1"],
        &["--listen", "127.0.0.1:99999"],
        &["--interval", "0"],
        &["--interval", "soon"],
        &["--interval", "2", "--expiry", "1"],
        &["extra"],
    ] {
        assert_usage_error(TRACKER, args);
    }

    for args in [
        &["--bogus", file][..],
        &["--tracker", "127.0.0.1", file],
        &["--listen", "nowhere", file],
        &["--slots", "0", file],
        &["--slots", "-1", file],
        &["--chunk-size", "100", file],
        &["--chunk-size", "16777217", file],
        &[],
        &["--slots", "2"],
        &["--up-limit", "fast", file],
        &["--down-limit", "0", file],
        &["--max-peers", "0", file],
    ] {
        assert_usage_error(SEEDER, args);
    }

    for args in [
        &["--bogus", "list"][..],
        &["--tracker", "127.0.0.1", "list"],
        &["--tracker", "127.0.0.1:99999", "list"],
        &[],
        &["fetch"],
        &["list", "extra"],
        &["get"],
        &["get", "--out", "x"],
        &["get", "f.bin", "--max-peers", "0"],
        &["get", "f.bin", "--timeout", "nope"],
        &["get", "f.bin", "--seed-ratio", "-1"],
        &["get", "f.bin", "--seed-ratio", "nan"],
        &["get", "f.bin", "--seed-time", "-5"],
        &["get", "f.bin", "--up-limit", "1X"],
        &["get", "f.bin", "--listen", "nowhere"],
    ] {
        assert_usage_error(LEECHER, args);
    }

    for program in [TRACKER, SEEDER, LEECHER] {
        for flag in ["--help", "-h"] {
            let out = run_bin(program, &[flag], QUICK);
            assert!(out.status.success(), "{program} {flag}: exit {}", out.status);
            let stdout = text(&out.stdout);
            assert!(stdout.contains("USAGE"), "{program} {flag} prints its usage:\n{stdout}");
        }
    }
}

/// A key file that is a device or a FIFO: refused at once, before reading a byte.
#[test]
fn publish_keys_that_are_not_regular_files_are_refused() {
    let tmp = TempDir::new("key-fifo");
    let file = random_file(tmp.path(), "f.bin", 1000, 9);
    let fifo = tmp.path().join("key.fifo");
    mkfifo(&fifo);
    for key in ["/dev/zero", fifo.to_str().unwrap()] {
        for (program, path) in [(TRACKER, None), (SEEDER, Some(file.to_str().unwrap()))] {
            let args: Vec<&str> = ["--publish-key", key].into_iter().chain(path).collect();
            assert_usage_error(program, &args);
            let err = text(&run_bin(program, &args, QUICK).stderr);
            assert!(err.contains(&format!("publish key {key}: not a regular file")), "{err}");
        }
    }
    let peak = children_peak_rss_kib();
    assert!(peak < 64 * 1024, "a child reached {peak} KiB: a key file was read without bound");
}

#[test]
fn leecher_fails_cleanly() {
    let tmp = TempDir::new("fails");
    let src = random_file(&tmp.sub("src"), "real.bin", 100_000, 10);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let _seeder = start_seeder(addr, &[], &[&src]);
    wait_listed(addr, "real.bin", 1);
    let out_dir = tmp.sub("out");
    let out_arg = out_dir.to_str().unwrap();

    // A name the catalog does not have; the other file in the same get still comes.
    let out = run_leecher(addr, &["get", "nosuch", "real.bin", "--out", out_arg, "--timeout", "10"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "get of a missing file must fail:\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("lmk-leecher: nosuch: "));
    let line = line.unwrap_or_else(|| panic!("stderr has a `lmk-leecher: nosuch: reason` line:\n{stderr}"));
    assert!(line.len() > "lmk-leecher: nosuch: ".len(), "the line gives a reason: {line:?}");
    assert_same_file(&src, &out_dir.join("real.bin"));
    assert_eq!(dir_names(&out_dir), ["real.bin"], "nothing is created for the missing file");

    // Nobody listens at the tracker address: gives up after its timeout.
    let dead = dead_addr();
    let proc = spawn_leecher(dead.addr(), &["get", "anything", "--out", out_arg, "--timeout", "2"]);
    let out = proc.finish(QUICK);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "get from a dead tracker must fail:\n{stderr}");
    assert!(stderr.contains("lmk-leecher: anything: "), "stderr names the file and the reason:\n{stderr}");

    let out = spawn_leecher(dead.addr(), &["list", "--timeout", "2"]).finish(QUICK);
    assert!(!out.status.success(), "list from a dead tracker must fail:\n{}", text(&out.stderr));
}

/// Every option of each program's `--help` is in its README table, and
/// every option of the table is in `--help` (README "Options").
#[test]
fn help_and_readme_list_the_same_options() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let common = ["--verbose", "--quiet", "--version", "--help"];
    let options = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| {
                w.starts_with("--") && w.as_bytes().get(2).is_some_and(u8::is_ascii_lowercase) && !common.contains(w)
            })
            .map(String::from)
            .collect()
    };
    for (program, header) in [(TRACKER, "| lmk-tracker |"), (SEEDER, "| lmk-seeder "), (LEECHER, "| lmk-leecher ")] {
        let help = text(&run_bin(program, &["--help"], QUICK).stdout);
        let wide: Vec<&str> = help.lines().filter(|l| l.chars().count() > 80).collect();
        assert!(wide.is_empty(), "{program} --help fits 80 columns: {wide:#?}");
        let listed: String = help
            .lines()
            .filter(|l| l.trim_start().starts_with("--"))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let start = readme.find(header).unwrap_or_else(|| panic!("README has a table starting {header}"));
        let table: String = readme[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.split('|').nth(1).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(options(&listed), options(&table), "{program}: --help (left) and README (right)");
    }
}

/// `--seed-idle`'s default is set once, in the peer core (`SEED_IDLE`):
/// lmk-leecher's and lmk-sim's `--help` and the README say that value.
#[test]
fn the_seed_idle_default_is_said_where_it_is_set() {
    let secs = lmk::peer::torrent::SEED_IDLE.as_secs();
    for program in [LEECHER, env!("CARGO_BIN_EXE_lmk-sim")] {
        let help = text(&run_bin(program, &["--help"], QUICK).stdout);
        let option: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--seed-idle"))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('-'))
            .map(|(_, l)| l)
            .collect();
        let said = format!("[default: {secs}s]");
        assert!(option.concat().contains(&said), "{program} --help says {said} for --seed-idle: {option:#?}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for said in [format!("| `--seed-idle SECS` | `{secs}s` |"), format!("`--seed-idle` ({secs} s)")] {
        assert!(readme.contains(&said), "README says {said}");
    }
}

//! The command lines: usage errors exit 2 with one `error:` line, `--help`
//! exits 0, and a leecher that cannot do its job says why and exits non-zero.

mod common;

use std::time::Duration;

use common::fake::dead_addr;
use common::*;

/// Hang guard for runs that should end in a few seconds (not a timing assertion).
const QUICK: Duration = Duration::from_secs(10);

/// Asserts a usage error: exit code 2 and exactly one `PROG: error: ...` line.
fn assert_usage_error(program: &str, args: &[&str]) {
    let prog = std::path::Path::new(program).file_name().unwrap().to_string_lossy().into_owned();
    let out = run_bin(program, args, QUICK);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{prog} {args:?}: exit code\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{prog} {args:?}: one error line on stderr:\n{stderr}");
    assert!(errors[0].starts_with(&format!("{prog}: error: ")), "{prog} {args:?}: {:?}", errors[0]);
    assert!(text(&out.stdout).is_empty(), "{prog} {args:?}: nothing on stdout");
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
    let proc = spawn_leecher(dead, &["get", "anything", "--out", out_arg, "--timeout", "2"]);
    let out = proc.finish(QUICK);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "get from a dead tracker must fail:\n{stderr}");
    assert!(stderr.contains("lmk-leecher: anything: "), "stderr names the file and the reason:\n{stderr}");

    let out = spawn_leecher(dead, &["list", "--timeout", "2"]).finish(QUICK);
    assert!(!out.status.success(), "list from a dead tracker must fail:\n{}", text(&out.stderr));
}

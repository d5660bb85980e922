//! The Makefile's run targets pass NAME, OUT, FILE and DIR as one argument
//! each, whatever they hold (spaces, quotes, unicode, a leading dash): run
//! with CARGO=true (no build) and BIN pointing at a stand-in that prints
//! its arguments one per line. SKIP without make.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

/// `make -s TARGET VARS...` with the stand-in binaries; the arguments they got.
fn make_args(bin: &Path, target: &str, vars: &[(&str, &str)]) -> Option<Vec<String>> {
    let mut command = Command::new("make");
    command.args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), target, "CARGO=true"]);
    command.arg(format!("BIN={}", bin.display()));
    for (k, v) in vars {
        command.arg(format!("{k}={v}"));
    }
    let out = command.output().ok()?;
    assert!(out.status.success(), "make {target}: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect())
}

#[test]
fn run_targets_quote_names_with_spaces_quotes_and_unicode() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("SKIP: no make");
        return;
    }
    let tmp = TempDir::new("make");
    let bin = tmp.sub("bin");
    for program in ["lmk-leecher", "lmk-seeder"] {
        let path = bin.join(program);
        std::fs::write(&path, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
        Command::new("chmod").args(["755", path.to_str().unwrap()]).status().unwrap();
    }
    let name = "-my file ü's \"q\" 東京.txt";
    let got = make_args(&bin, "run-leecher", &[("NAME", name), ("OUT", "out dir")]).unwrap();
    assert_eq!(got, ["--tracker", "127.0.0.1:6969", "get", "--out", "out dir", "--", name]);
    let got = make_args(&bin, "run-leecher", &[("NAME", "a.txt")]).unwrap();
    assert_eq!(got, ["--tracker", "127.0.0.1:6969", "get", "--out", "downloads", "--", "a.txt"]);
    let got = make_args(&bin, "run-leecher", &[]).unwrap();
    assert_eq!(got, ["--tracker", "127.0.0.1:6969", "list"]);
    let got = make_args(&bin, "run-seeder", &[("FILE", "my file's.txt")]).unwrap();
    assert_eq!(got, ["--tracker", "127.0.0.1:6969", "--", "my file's.txt"]);
}

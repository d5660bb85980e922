//! lmk-leecher for scripts: `--json` lines parsed as JSON (`list` with
//! exact sizes; `get` by a content-id prefix: started, progress, done with
//! the SHA-256 of the file), `-q` printing nothing but errors, `--` for a
//! name that starts with `-`, and errors that name their cause at once.

mod common;

use std::time::Duration;

use common::fake::dead_addr;
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Each stdout line as a JSON object.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

fn sha256_hex(path: &std::path::Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn json_list_and_get_by_id_prefix() {
    let tmp = TempDir::new("json");
    let src = random_file(&tmp.sub("src"), "data \"q\".bin", 300_001, 7);
    let shared = share(&src, &["--chunk-size", "65536"]);
    let out = tmp.sub("out");

    let listed = run_leecher(shared.addr, &["list", "--json"]);
    assert_success(&listed, "list --json");
    let files = json_lines(&listed.stdout);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["event"], "file");
    assert_eq!(files[0]["name"], "data \"q\".bin");
    assert_eq!(files[0]["size"], 300_001, "the exact size");
    let id = files[0]["content_id"].as_str().unwrap().to_string();

    let prefix = &id[..8];
    let got = run_leecher(shared.addr, &["get", prefix, "--out", out.to_str().unwrap(), "--json"]);
    assert_success(&got, "get PREFIX --json");
    let events = json_lines(&got.stdout);
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?} (--seed-ratio 0: no seeding, no seeded)");
    assert!(kinds.iter().all(|k| ["started", "progress", "done"].contains(k)), "{kinds:?}");
    let done = events.last().unwrap();
    assert_eq!(done["name"], "data \"q\".bin");
    assert_eq!(done["content_id"], id.as_str());
    assert_eq!(done["size"], 300_001);
    assert_eq!(done["from_seeders"].as_u64().unwrap() + done["from_leechers"].as_u64().unwrap(), 300_001);
    assert!(done["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(done["sha256"], sha256_hex(&src).as_str(), "the SHA-256 of the final file");
    assert_same_file(&src, &out.join("data \"q\".bin"));

    // Again: already complete, with its digest; -q with --json still prints JSON.
    let again = run_leecher(shared.addr, &["get", &id, "--out", out.to_str().unwrap(), "--json", "-q"]);
    assert_success(&again, "get again");
    let events = json_lines(&again.stdout);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "already_complete");
    assert_eq!(events[0]["sha256"], sha256_hex(&src).as_str());

    // A prefix shorter than 8 digits is a name, and there is no such name.
    let short = run_leecher(shared.addr, &["get", &id[..7], "--out", out.to_str().unwrap(), "--timeout", "1"]);
    assert!(!short.status.success());
}

/// `-q`: nothing on stdout for a successful get, nothing on stderr either;
/// `--`: a file whose name starts with `-`.
#[test]
fn quiet_and_double_dash() {
    let tmp = TempDir::new("quiet");
    let src = random_file(&tmp.sub("src"), "-dash.txt", 100_000, 8);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let mut args = vec!["--tracker".to_string(), addr.to_string(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(["--status", "0", "--"].map(String::from));
    args.push(src.display().to_string());
    let mut seeder = Proc::spawn("seeder-dash", SEEDER, &args);
    seeder.wait_listening();
    wait_listed(addr, "-dash.txt", 1);
    let out = tmp.sub("out");
    let got = run_leecher(addr, &["-q", "get", "--out", out.to_str().unwrap(), "--", "-dash.txt"]);
    assert_success(&got, "get -q -- -dash.txt");
    assert_eq!(text(&got.stdout), "", "-q prints nothing on stdout");
    assert_eq!(text(&got.stderr), "", "nor on stderr when all goes well");
    assert_same_file(&src, &out.join("-dash.txt"));
}

/// Nothing listens at the tracker's address: `list` and `get` say
/// `connection refused` at once, not after the 30 s timeout.
#[test]
fn a_refused_tracker_is_named_at_once() {
    let dead = dead_addr();
    let tmp = TempDir::new("refused");
    for args in [&["list"][..], &["get", "x", "--out", tmp.path().to_str().unwrap()]] {
        // Well below the default --timeout of 30 s: the refusal is reported, not waited out.
        let out = spawn_leecher(dead.addr(), args).finish(Duration::from_secs(20));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the tracker's catalog at {}: connection refused", dead.addr())),
            "{stderr}"
        );
    }
}

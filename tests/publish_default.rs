//! Secure by default (issue 16): a tracker started with its defaults makes a
//! publish key in its state directory and takes publishes only signed with
//! it. Seeders on the same host find the key there; a host without it is
//! refused until given a copy; `--open` takes anyone, explicitly.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use lmk::wire::catalog::{ErrorCode, Request, Response};

/// A host's binaries: everything they run keeps its state in `state`.
fn on_host(state: &Path, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.env("XDG_STATE_HOME", state).args(args);
    command
}

fn tracker_on(state: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--interval", "1", "--expiry", "60", "--status", "0"];
    args.extend_from_slice(extra);
    let mut tracker = Proc::spawn_command("tracker", on_host(state, TRACKER, &args));
    let addr = tracker.wait_listening();
    (tracker, addr)
}

fn seeder_on(state: &Path, tracker: SocketAddr, extra: &[&str], file: &Path) -> Proc {
    let tracker = tracker.to_string();
    let mut args = vec!["--tracker", &tracker, "--listen", "127.0.0.1:0", "--status", "0"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let mut seeder = Proc::spawn_command("seeder", on_host(state, SEEDER, &args));
    seeder.wait_listening();
    seeder
}

fn key_file(state: &Path) -> PathBuf {
    state.join("lmktorrent/publish.key")
}

#[test]
fn a_default_tracker_takes_publishes_only_from_key_holders() {
    let tmp = TempDir::new("secure-default");
    let (here, elsewhere) = (tmp.sub("state-here"), tmp.sub("state-elsewhere"));
    let (tracker, addr) = tracker_on(&here, &[]);
    let key = key_file(&here);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "the key is the user's alone");
    assert_eq!(mode(key.parent().unwrap()), 0o700);

    // An unsigned publish (the 54-byte squat of the issue) is refused.
    let squat = file_meta(&random_file(&tmp.sub("attacker"), "movie.bin", 1000, 1), CHUNK);
    match catalog_request(addr, &Request::Publish(squat)) {
        Response::Error { code: ErrorCode::Unauthorized, .. } => {}
        other => panic!("an unsigned publish was not refused: {other:?}"),
    }

    // A seeder on this host finds the key; no option needed.
    let local = random_file(&tmp.sub("local"), "local.bin", 100_000, 2);
    let _local = seeder_on(&here, addr, &[], &local);
    wait_listed(addr, "local.bin", 1);

    // A seeder on another host is refused and told what to do; with a copy of the key it publishes.
    let remote = random_file(&tmp.sub("remote"), "remote.bin", 100_000, 3);
    let refused = seeder_on(&elsewhere, addr, &[], &remote);
    refused.wait_stderr(DOWNLOAD, "give this seeder a copy of its key file with --publish-key");
    let copy = tmp.path().join("copy-of-the-key");
    std::fs::copy(&key, &copy).unwrap();
    let _remote = seeder_on(&elsewhere, addr, &["--publish-key", copy.to_str().unwrap()], &remote);
    wait_listed(addr, "remote.bin", 1);
    let names: Vec<String> = list(addr).into_iter().map(|e| e.name).collect();
    assert!(!names.contains(&"movie.bin".to_string()), "{names:?}");

    // Restarted, the tracker keeps its key: the seeders need nothing new.
    let before = std::fs::read(&key).unwrap();
    drop(tracker);
    let _again = tracker_on(&here, &[]);
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn open_takes_unsigned_publishes_and_says_so() {
    let tmp = TempDir::new("open");
    let state = tmp.sub("state");
    let (tracker, addr) = tracker_on(&state, &["--open"]);
    let meta = file_meta(&random_file(&tmp.sub("src"), "f.bin", 1000, 4), CHUNK);
    assert_eq!(catalog_request(addr, &Request::Publish(meta.clone())), Response::Published(meta.content_id()));
    assert!(!key_file(&state).exists(), "an open tracker makes no key");
    tracker.wait_stderr(STARTUP, "--open: anyone who reaches the catalog may publish");
    let out = run_bin(TRACKER, &["--open", "--publish-key", "/nonexistent"], STARTUP);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

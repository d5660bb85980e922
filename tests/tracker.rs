//! The tracker's soft state: seeders that die silently expire, seeders that
//! stop leave at once, a restarted tracker is refilled by the seeders, and
//! the catalog refuses names that are not plain file names.

mod common;

use std::time::Duration;

use common::*;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::wire::catalog::{ErrorCode, Request, Response};

/// Far beyond expiry (3 s) plus one sweep, so a pass never depends on speed.
const EXPIRY_WAIT: Duration = Duration::from_secs(EXPIRY as u64 + 7);

#[test]
fn killed_seeder_expires() {
    let tmp = TempDir::new("expiry");
    let src = random_file(&tmp.sub("src"), "short-lived.bin", 300_000, 6);
    let id = file_meta(&src, CHUNK).content_id();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (mut seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_until(Duration::from_secs(10), "the seeder to join", || tracker_seeders(addr, id) == 1);

    // Alive, it keeps its place past an expiry period by its heartbeats.
    std::thread::sleep(Duration::from_secs(EXPIRY as u64 + 1));
    assert_eq!(tracker_seeders(addr, id), 1, "a live seeder heartbeating every interval stays listed");

    seeder.kill(); // SIGKILL: no goodbye
    wait_until(EXPIRY_WAIT, "the killed seeder to expire from the tracker", || tracker_seeders(addr, id) == 0);
}

#[test]
fn stopped_seeder_leaves_at_once() {
    let tmp = TempDir::new("stopped");
    let src = random_file(&tmp.sub("src"), "polite.bin", 300_000, 7);
    let id = file_meta(&src, CHUNK).content_id();
    // A long expiry: a departure seen within 10 s can only be the goodbye.
    let (_tracker, addr) = start_tracker(INTERVAL, 60);
    let (mut seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_until(Duration::from_secs(10), "the seeder to join", || tracker_seeders(addr, id) == 1);

    seeder.signal("TERM");
    let status = seeder.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "a seeder stopped by SIGTERM exits 0, got {status}");
    wait_until(Duration::from_secs(10), "the stopped seeder to leave (announce stopped)", || {
        tracker_seeders(addr, id) == 0
    });
}

#[test]
fn tracker_restart() {
    let tmp = TempDir::new("restart");
    let src = random_file(&tmp.sub("src"), "survivor.bin", 2 * 1024 * 1024 + 1, 8);
    let (mut tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let _seeders: Vec<_> = (0..2).map(|_| start_seeder(addr, &[], &[&src])).collect();
    wait_listed(addr, "survivor.bin", 2);

    tracker.kill();
    drop(tracker);
    // The same port again; it may be briefly busy, so bind is retried.
    let mut restarted = None;
    let mut last_error = String::new();
    wait_until(Duration::from_secs(10), &format!("a new tracker to bind {addr}"), || {
        match start_tracker_on(&addr.to_string(), INTERVAL, EXPIRY) {
            Ok((p, bound)) => {
                assert_eq!(bound, addr);
                restarted = Some(p);
                true
            }
            Err(e) => {
                last_error = e;
                std::thread::sleep(Duration::from_millis(200));
                false
            }
        }
    });
    let _tracker = restarted.expect("restarted");
    if !last_error.is_empty() {
        eprintln!("the port was busy for a moment after the kill: {last_error}");
    }

    // The seeders are not restarted: they notice and publish and join again.
    let entry = wait_listed(addr, "survivor.bin", 1);
    assert_eq!(entry.id, file_meta(&src, CHUNK).content_id());
    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "survivor.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    assert_success(&out, "leecher after the tracker restart");
    assert_same_file(&src, &out_dir.join("survivor.bin"));
}

#[test]
fn unsafe_names_refused_by_tracker() {
    let (_tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--open"]);
    for bad in ["../evil", "a/b", "x\0y", "..", ".", "a\\b", "tab\there"] {
        let meta = FileMeta::new(bad.into(), 10, MIN_CHUNK, vec![Hash20::of(bad.as_bytes())]).expect("meta");
        match catalog_request(addr, &Request::Publish(meta)) {
            Response::Error { code: ErrorCode::Refused, .. } => {}
            other => panic!("publishing {bad:?}: expected Error(Refused), got {other:?}"),
        }
    }
    // A good name on the same tracker is accepted, and only it is listed.
    let good = FileMeta::new("fine.txt".into(), 10, MIN_CHUNK, vec![Hash20::of(b"fine")]).expect("meta");
    assert_eq!(catalog_request(addr, &Request::Publish(good.clone())), Response::Published(good.content_id()));
    let names: Vec<String> = list(addr).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["fine.txt"]);
}

//! The catalog against a hostile client and a hostile tracker (issue 9,
//! findings 5 to 7): a publish flood, name squatting, unauthorised publishes,
//! and names that would drive a terminal. Each attack is followed by a normal
//! download that must still be byte-exact, and the tracker's peak RSS is
//! held to a stated bound.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::fake::{CatalogClient, FakeTracker};
use common::*;
use lmk::common::text::is_hidden;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::wire::catalog::{ErrorCode, ListEntry, Request, Response, Selector};

/// Peak resident memory allowed to the tracker through any of these attacks.
const TRACKER_RSS_KIB: u64 = 16 * 1024;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A small file's metadata that no seeder serves.
fn fake(name: &str, salt: u64) -> FileMeta {
    FileMeta::new(name.into(), 10, MIN_CHUNK, vec![Hash20::of(&salt.to_be_bytes())]).expect("valid metadata")
}

fn assert_rss(tracker: &Proc) {
    let kib = tracker.peak_rss_kib();
    eprintln!("tracker peak RSS: {kib} KiB");
    assert!(kib < TRACKER_RSS_KIB, "tracker peak RSS {kib} KiB, bound {TRACKER_RSS_KIB} KiB");
}

/// Publishes of files `first..end`, all distinct, from `source`, 1000 in
/// flight at a time: (accepted, refused by the quota).
fn flood(tracker: std::net::SocketAddr, source: Ipv4Addr, first: u64, end: u64) -> (u64, u64) {
    let mut client = CatalogClient::connect_from(source, tracker);
    let (mut accepted, mut refused) = (0, 0);
    for batch in (first..end).step_by(1000) {
        let requests: Vec<Request> =
            (batch..end.min(batch + 1000)).map(|i| Request::Publish(fake(&format!("fake-{i:06}.bin"), i))).collect();
        client.send(&requests);
        for _ in 0..requests.len() {
            match client.recv() {
                Response::Published(_) => accepted += 1,
                Response::Error { code: ErrorCode::Full, message } if message.contains("quota") => refused += 1,
                other => panic!("publish answered with {other:?}"),
            }
        }
    }
    (accepted, refused)
}

fn no_hidden(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Some(c) = text.chars().find(|&c| c != '\n' && is_hidden(c)) {
        panic!("{what} carries a raw U+{:04X}:\n{text}", u32::from(c));
    }
}

/// Finding 5: 100,000 fake publishes from one address hold at most its
/// quota (1000) of the catalog, and another address has its own; a real seeder on that address is refused,
/// says so, retries, and is published once the fakes expire.
#[test]
fn publish_flood_is_held_to_the_quota() {
    let tmp = TempDir::new("flood");
    let src = random_file(&tmp.sub("src"), "real.bin", 700_000, 51);
    let (tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--open"]);

    let started = std::time::Instant::now();
    let (accepted, refused) = flood(addr, ATTACKER, 0, 100_000);
    eprintln!("100000 publishes answered in {:?}", started.elapsed());
    assert_eq!((accepted, refused), (1000, 99_000));
    // Another address has a quota of its own.
    assert_eq!(flood(addr, Ipv4Addr::new(127, 0, 0, 2), 100_000, 105_000), (1000, 4000));
    let listing = run_leecher(addr, &["list"]);
    assert_success(&listing, "list after the flood");
    let lines = text(&listing.stdout).lines().count();
    assert_eq!(lines, 2001, "a header and the 1000 files of each address's quota");

    // The real seeder shares the attacker's address (127.0.0.1): refused until the fakes expire.
    let seeder_started = std::time::Instant::now();
    let (seeder, _) = start_seeder(addr, &["-v"], &[&src]);
    seeder.wait_stderr(Duration::from_secs(20), "refused to publish real.bin");
    let early = seeder.stderr();
    assert!(!early.contains("catalog published"), "a refused publish was logged as published:\n{early}");
    assert!(early.contains("trying again in"), "{early}");
    seeder.wait_stderr(Duration::from_secs(40), "catalog published: 1 file");
    eprintln!("the refused seeder was published {:?} after it started", seeder_started.elapsed());

    let out = tmp.sub("out");
    let got = run_leecher(addr, &["get", "real.bin", "--out", out.to_str().unwrap()]);
    assert_success(&got, "get after the flood");
    assert_same_file(&src, &out.join("real.bin"));
    assert!(list(addr).len() <= 2001);
    assert_rss(&tracker);
}

/// Finding 6: a second publisher of a name blocks `get NAME`, which then
/// names both content ids; `get CONTENT-ID` still fetches the real file.
#[test]
fn a_squatted_name_is_refused_naming_both_ids() {
    let tmp = TempDir::new("squat");
    let src = random_file(&tmp.sub("src"), "shared.bin", 600_000, 52);
    let real = file_meta(&src, CHUNK).content_id();
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let (_seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_listed(addr, "shared.bin", 1);

    let squat = fake("shared.bin", 1);
    let mut publish = Vec::new();
    Request::Publish(squat.clone()).encode(&mut publish);
    assert_eq!(publish.len(), 54, "the attack is one 54-byte frame");
    let mut attacker = CatalogClient::connect_from(ATTACKER, addr);
    assert_eq!(attacker.ask(Request::Publish(squat.clone())), Response::Published(squat.content_id()));

    let out = tmp.sub("out");
    let by_name = run_leecher(addr, &["get", "shared.bin", "--out", out.to_str().unwrap()]);
    assert!(!by_name.status.success(), "get of a name two files claim must fail");
    let err = text(&by_name.stderr);
    assert!(err.contains(&real.to_hex()) && err.contains(&squat.content_id().to_hex()), "{err}");
    assert!(!out.join("shared.bin").exists());

    let listing = text(&run_leecher(addr, &["list"]).stdout);
    assert!(listing.contains(&real.to_hex()) && listing.contains(&squat.content_id().to_hex()), "{listing}");

    let by_id = run_leecher(addr, &["get", &real.to_hex(), "--out", out.to_str().unwrap()]);
    assert_success(&by_id, "get by content id");
    assert_same_file(&src, &out.join("shared.bin"));
    assert_rss(&tracker);
}

/// Finding 6 with `--publish-key`: only holders of the key publish; a
/// publish without it, with a wrong key, or from a seeder with the wrong
/// key is refused, and `get NAME` gets the real file.
#[test]
fn with_a_publish_key_only_key_holders_publish() {
    let tmp = TempDir::new("keyed");
    let src = random_file(&tmp.sub("src"), "signed.bin", 500_000, 53);
    let key = tmp.path().join("key");
    std::fs::write(&key, "correct horse battery staple\n").unwrap();
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "incorrect horse battery staple").unwrap();
    let (key_arg, wrong_arg) = (key.to_str().unwrap(), wrong.to_str().unwrap());
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--publish-key", key_arg]);

    let (impostor, _) = start_seeder(addr, &["--publish-key", wrong_arg], &[&src]);
    impostor.wait_stderr(Duration::from_secs(20), "refused to publish signed.bin: Unauthorized: wrong publish key");
    let (unkeyed, _) = start_seeder(addr, &[], &[&src]);
    unkeyed.wait_stderr(Duration::from_secs(20), "refused to publish signed.bin: Unauthorized");
    for s in [&impostor, &unkeyed] {
        assert!(!s.stderr().contains("catalog published"), "{}", s.stderr());
    }
    assert!(list(addr).is_empty(), "nothing published without the key");

    let mut attacker = CatalogClient::connect_from(ATTACKER, addr);
    let squat = fake("signed.bin", 2);
    let refused = attacker.ask(Request::Publish(squat.clone()));
    assert!(matches!(refused, Response::Error { code: ErrorCode::Unauthorized, .. }), "{refused:?}");
    let Response::Challenge(nonce) = attacker.ask(Request::Challenge) else { panic!("no challenge") };
    let forged = Request::SignedPublish { nonce, mac: [0; 20], meta: squat };
    assert!(matches!(attacker.ask(forged), Response::Error { code: ErrorCode::Unauthorized, .. }));

    let (seeder, _) = start_seeder(addr, &["--publish-key", key_arg], &[&src]);
    seeder.wait_stderr(Duration::from_secs(20), "catalog published: 1 file");
    let out = tmp.sub("out");
    assert_success(&run_leecher(addr, &["get", "signed.bin", "--out", out.to_str().unwrap()]), "get signed.bin");
    assert_same_file(&src, &out.join("signed.bin"));
    assert_eq!(list(addr).len(), 1);
    assert_rss(&tracker);
}

/// A key file too short (or unreadable) is a usage error: one line, exit 2.
#[test]
fn a_bad_key_file_is_a_usage_error() {
    let tmp = TempDir::new("badkey");
    let short = tmp.path().join("short");
    std::fs::write(&short, "tooshort\n").unwrap();
    for (bin, path) in [(TRACKER, short.clone()), (SEEDER, short), (TRACKER, tmp.path().join("missing"))] {
        let out = run_bin(bin, &["--publish-key", path.to_str().unwrap(), "--status", "0"], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let first = text(&out.stderr).lines().next().unwrap_or_default().to_string();
        assert!(first.contains("publish key") && first.contains(path.to_str().unwrap()), "{first}");
    }
}

/// Names that would drive a terminal or pass for another name.
const HOSTILE: [&str; 6] = [
    "esc\x1b[2J\x1b[Hcleared.bin",
    "csi\x1b[31mred\x1b[0m.bin",
    "osc52\x1b]52;c;cm0gLXJmIH4=\x07.bin",
    "cr-fake\rreal.bin",
    "rlo-\u{202e}nib.exe",
    "zw\u{200b}sp\u{2028}ls.bin",
];

/// Finding 7: a malicious tracker's names and error texts reach the
/// leecher's stdout and stderr escaped; the real tracker refuses them at
/// publish; a seeder does not publish them; a download is still byte-exact.
#[test]
fn hostile_names_never_reach_a_terminal_raw() {
    let evil = FakeTracker::answering(|request| match request {
        Request::List => Response::List(
            HOSTILE
                .iter()
                .enumerate()
                .map(|(i, name)| ListEntry {
                    id: Hash20::of(name.as_bytes()),
                    name: name.to_string(),
                    size: 1000 + i as u64,
                    chunk_size: MIN_CHUNK,
                    seeders: 1,
                })
                .collect(),
        ),
        Request::GetMeta(Selector::Id(_)) => Response::Meta(fake(HOSTILE[4], 4)),
        _ => Response::Error { code: ErrorCode::NotFound, message: HOSTILE.join(" | ") },
    });
    let listing = run_leecher(evil.addr, &["list"]);
    assert_success(&listing, "list from a hostile tracker");
    no_hidden("list stdout", &listing.stdout);
    no_hidden("list stderr", &listing.stderr);
    let shown = text(&listing.stdout);
    assert!(shown.contains("esc\\x1b[2J") && shown.contains("cr-fake\\x0dreal.bin"), "{shown}");
    assert!(shown.contains("rlo-\\u{202e}nib.exe") && shown.contains("zw\\u{200b}sp\\u{2028}ls.bin"), "{shown}");

    let tmp = TempDir::new("hostile");
    let out = tmp.sub("out");
    let by_id = fake(HOSTILE[4], 4).content_id().to_hex();
    // (--timeout 2: "x" is not found, and a name not found is asked for again until the timeout.)
    let got = run_leecher(evil.addr, &["get", "x", &by_id, "--out", out.to_str().unwrap(), "-v", "--timeout", "2"]);
    assert!(!got.status.success());
    no_hidden("get stdout", &got.stdout);
    no_hidden("get stderr", &got.stderr);
    let err = text(&got.stderr);
    assert!(err.contains("osc52\\x1b]52;c;cm0gLXJmIH4=\\x07.bin"), "{err}");
    assert!(err.contains("unsafe file name"), "{err}");
    assert!(dir_names(&out).is_empty(), "nothing written: {:?}", dir_names(&out));

    // The real tracker refuses every such name, and keeps working.
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let mut attacker = CatalogClient::connect_from(ATTACKER, addr);
    for (i, name) in HOSTILE.iter().enumerate() {
        let answer = attacker.ask(Request::Publish(fake(name, i as u64)));
        assert!(matches!(answer, Response::Error { code: ErrorCode::Refused, .. }), "{name:?}: {answer:?}");
    }
    let src_dir = tmp.sub("src");
    let src = random_file(&src_dir, "plain.bin", 400_000, 54);
    random_file(&src_dir, HOSTILE[4], 1000, 55);
    let (seeder, _) = start_seeder(addr, &[], &[&src_dir]);
    seeder.wait_stderr(Duration::from_secs(20), "catalog published: 1 file");
    let log = seeder.stderr();
    assert!(log.contains("skipped, not published: unsafe file name"), "{log}");
    no_hidden("seeder stderr", log.as_bytes());
    let names: Vec<String> = list(addr).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["plain.bin"]);
    assert_success(&run_leecher(addr, &["get", "plain.bin", "--out", out.to_str().unwrap()]), "get plain.bin");
    assert_same_file(&src, &out.join("plain.bin"));
    assert_rss(&tracker);
}

//! Finding 8 of issue 9, replayed against the real tracker: a UDP flood of
//! made-up info hashes, completed and port-0 announces, and fake seeders
//! from a few addresses on a real file's hash. The caps hold, nothing empty
//! stays, a real download is still byte-exact and the tracker's peak RSS
//! stays under `RSS_BOUND`.

mod common;

use std::time::Duration;

use common::*;
use lmk::hash::Hash20;
use lmk::wire::udp::{Event, Response};

/// Made-up hashes announced: 25,000 from each of 4 addresses.
const FLOOD: u32 = 100_000;
const FLOODERS: [[u8; 4]; 4] = [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4], [127, 0, 0, 5]];
/// Fake seeders on the real hash: 1,700 from each of 4 addresses (finding 8 had 6,800).
const FAKERS: [[u8; 4]; 4] = [[127, 0, 0, 6], [127, 0, 0, 7], [127, 0, 0, 8], [127, 0, 0, 9]];
const FAKES_EACH: u16 = 1_700;
/// The tracker's defaults (README "Limits").
const MAX_SWARMS_PER_IP: usize = 5_000;
const MAX_PEERS_PER_IP_IN_SWARM: usize = 32;
/// Peak RSS allowed: 20,000 one-peer swarms cost about 12 MiB (README
/// "Limits": about 550 B each) on top of a tracker's few MiB; without the
/// caps this flood held 100,000 swarms, about 60 MiB.
const RSS_BOUND_KIB: u64 = 40 * 1024;

/// Swarms and peers from the tracker's newest status line.
fn held(tracker: &Proc) -> (usize, usize) {
    let lines = tracker.stdout_lines();
    // Printed when it changed, behind a timestamp: `2026-12-05T09:26:02Z tracker: ...`.
    let line = lines.iter().rev().find(|l| l.contains("Z tracker: ")).expect("a status line");
    let number_before = |word: &str| -> usize {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| w.trim_end_matches(',') == word).expect("word in status line");
        words[i - 1].parse().expect("a number")
    };
    (number_before("swarms"), number_before("peers"))
}

/// Announces and counts the answers: (accepted, refused).
fn announce_all(client: &mut UdpClient, announces: impl Iterator<Item = (Hash20, u64, Event, u16)>) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for (hash, left, event, port) in announces {
        match client.announce(hash, left, event, port) {
            Response::Announce { .. } => ok += 1,
            Response::Error { .. } => refused += 1,
            other => panic!("announce answered with {other:?}"),
        }
    }
    (ok, refused)
}

fn made_up(n: u32) -> Hash20 {
    Hash20::of(&n.to_be_bytes())
}

#[test]
fn udp_flood_and_fake_seeders_are_capped_and_a_download_still_works() {
    let tmp = TempDir::new("hostile-udp");
    let src = random_file(&tmp.sub("src"), "real.bin", 3 * 1024 * 1024 + 17, 81);
    let id = file_meta(&src, CHUNK).content_id();
    let args = ["--listen", "127.0.0.1:0", "--interval", "1", "--expiry", "3", "--status", "1"];
    let mut tracker = Proc::spawn("tracker", TRACKER, &args.map(String::from));
    let addr = tracker.wait_listening();

    // 1. Made-up hashes: each address opens its quota of swarms, then is refused.
    let per_ip = FLOOD / FLOODERS.len() as u32;
    for (i, ip) in FLOODERS.iter().enumerate() {
        let mut client = UdpClient::connect_from(addr, *ip);
        let hashes = (0..per_ip).map(|n| (made_up(i as u32 * per_ip + n), 0, Event::Started, 6881));
        let (ok, refused) = announce_all(&mut client, hashes);
        assert_eq!((ok, refused), (MAX_SWARMS_PER_IP, per_ip as usize - MAX_SWARMS_PER_IP), "flood from {ip:?}");
    }
    let flood_swarms = FLOODERS.len() * MAX_SWARMS_PER_IP;

    // 2. Completed and port-0 announces leave nothing behind.
    let mut client = UdpClient::connect_from(addr, [127, 0, 0, 10]);
    let port_zero = (0..2_000).map(|n| (made_up(FLOOD + n), 0, Event::Completed, 0));
    assert_eq!(announce_all(&mut client, port_zero), (2_000, 0), "port-0 announces are answered");
    let stopped = (0..2_000).map(|n| (made_up(FLOOD + n), 0, Event::Stopped, 6881));
    assert_eq!(announce_all(&mut client, stopped), (2_000, 0));

    // 3. A real seeder, and fake ones on its hash from four addresses.
    let (_seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_until(Duration::from_secs(10), "the real seeder to join", || tracker_seeders(addr, id) == 1);
    for ip in FAKERS {
        let mut client = UdpClient::connect_from(addr, ip);
        let fakes = (0..FAKES_EACH).map(|n| (id, 0, Event::Completed, 20_000 + n));
        let (ok, refused) = announce_all(&mut client, fakes);
        assert_eq!(ok, MAX_PEERS_PER_IP_IN_SWARM, "fake seeders from {ip:?} held");
        assert_eq!(refused, usize::from(FAKES_EACH) - MAX_PEERS_PER_IP_IN_SWARM);
    }
    assert_eq!(tracker_seeders(addr, id), 1 + FAKERS.len() * MAX_PEERS_PER_IP_IN_SWARM);

    // The status table agrees: the flood's swarms, the real one, nothing else.
    let want = (flood_swarms + 1, flood_swarms + 1 + FAKERS.len() * MAX_PEERS_PER_IP_IN_SWARM);
    wait_until(Duration::from_secs(10), "the status line to show the capped tables", || held(&tracker) == want);

    // 4. A real leecher still gets the file, byte for byte.
    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "real.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "50"]);
    assert_success(&out, "leecher among fake seeders");
    assert_same_file(&src, &out_dir.join("real.bin"));

    let hwm = tracker.peak_rss_kib();
    println!("tracker VmHWM {hwm} KiB");
    assert!(hwm < RSS_BOUND_KIB, "tracker peak RSS {hwm} KiB, bound {RSS_BOUND_KIB} KiB");
}

/// The row: 640 fake seeders announced from 20 addresses, 32 each
/// (within the tracker's caps), nothing listening behind them, and one real
/// seeder. The tracker's answers favour peers of blocks not yet in them, and
/// a leecher whose every known address failed announces again at once (with
/// backoff), so it finds the real seeder in the first seconds (the real one
/// was in 8% of the answers and the get failed).
#[test]
fn a_leecher_finds_the_real_seeder_among_640_fakes_from_20_addresses() {
    let tmp = TempDir::new("fakes-20");
    let src = random_file(&tmp.sub("src"), "real.bin", 1024 * 1024 + 3, 83);
    let id = file_meta(&src, CHUNK).content_id();
    // A 10 s interval, as by default: re-announcing at the interval alone is slow.
    let (_tracker, addr) = start_tracker_with(10, 120, &[]);
    let (_seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_until(Duration::from_secs(10), "the real seeder to join", || tracker_seeders(addr, id) == 1);
    for n in 1..=20u8 {
        let mut client = UdpClient::connect_from(addr, [127, 0, 3, n]);
        let fakes = (0..MAX_PEERS_PER_IP_IN_SWARM as u16).map(|p| (id, 0, Event::Completed, 20_000 + p));
        assert_eq!(announce_all(&mut client, fakes), (MAX_PEERS_PER_IP_IN_SWARM, 0), "fakes from 127.0.3.{n}");
    }
    assert_eq!(tracker_seeders(addr, id), 1 + 20 * MAX_PEERS_PER_IP_IN_SWARM);
    let out_dir = tmp.sub("out");
    let started = std::time::Instant::now();
    let out = run_leecher(addr, &["get", "real.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    eprintln!("among 640 fake seeders from 20 addresses: got 1 MiB in {:.1?}", started.elapsed());
    assert_success(&out, "leecher among 640 fake seeders from 20 addresses");
    assert_same_file(&src, &out_dir.join("real.bin"));
}

#[test]
fn catalog_only_tracks_published_files_only() {
    let tmp = TempDir::new("catalog-only");
    let src = random_file(&tmp.sub("src"), "listed.bin", 1024 * 1024 + 5, 82);
    // The seeder's first announce may race its publish and be refused; it tries again 10 s later, so
    // the published file must outlive that without a seeder: the default expiry (30 s) does.
    let (_tracker, addr) = start_tracker_with(1, 30, &["--catalog-only"]);

    let mut client = UdpClient::connect(addr);
    match client.announce(made_up(1), 0, Event::Started, 6881) {
        Response::Error { message, .. } => assert_eq!(message, "info hash not in the catalog"),
        other => panic!("an unlisted hash was answered {other:?}"),
    }
    let (_seeder, _) = start_seeder(addr, &[], &[&src]);
    wait_listed(addr, "listed.bin", 1);
    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "listed.bin", "--out", out_dir.to_str().unwrap()]);
    assert_success(&out, "leecher of a listed file under --catalog-only");
    assert_same_file(&src, &out_dir.join("listed.bin"));
}

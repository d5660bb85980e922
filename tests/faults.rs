//! Faults injected from the test: a seeder killed mid-download, a seeder that
//! lies about chunk contents, garbage on every port, and a tracker handing
//! out a hostile file name.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake::{FakeTracker, HostileSeeder, Hostility};
use common::*;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::peer::bitfield::Bitfield;
use lmk::wire::catalog::{Request, Response};
use lmk::wire::peer::Message;
use lmk::wire::udp::PROTOCOL_ID;

const MIB: usize = 1024 * 1024;

/// How the fault is placed mid-download without timing guesses: the victim
/// is the file's only seeder at first, and prints its status line every
/// 10 ms. Once a status line shows it has served chunks, the leecher holds a
/// partial file and has requests in flight to it; the victim is SIGKILLed
/// there (no goodbye announce). With the only seeder dead the download cannot
/// finish, which is checked, and only then are two other seeders started:
/// the leecher must requeue the lost chunks, find the new seeders through the
/// tracker and finish byte-exact.
///
/// The file (64 MiB) is large next to the reporting period, so the victim
/// cannot normally serve all of it before it dies; on a starved machine it
/// might, which would make the run prove nothing, so that run is discarded
/// and the scenario set up again (at most 3 times).
fn download_with_seeder_killed(leecher_timeout: &str) -> (Output, TempDir) {
    for _attempt in 0..3 {
        let tmp = TempDir::new("killed");
        let src = random_file(&tmp.sub("src"), "big.bin", 64 * MIB, 3);
        let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
        let (mut victim, _) = start_seeder(addr, &["--status", "0.01"], &[&src]);
        wait_listed(addr, "big.bin", 1);

        let out_dir = tmp.sub("out");
        let args = ["get", "big.bin", "--out", out_dir.to_str().unwrap(), "--timeout", leecher_timeout];
        let mut leecher = spawn_leecher(addr, &args);
        let served = victim.wait_stdout(Duration::from_secs(20), "the victim's status to show chunks served", served);
        victim.kill();
        eprintln!("victim killed after its status said: {served}");
        if leecher.try_exit().is_some() || out_dir.join("big.bin").exists() {
            eprintln!("the download finished before its only seeder was killed; setting up again");
            continue;
        }
        let _others: Vec<_> = (0..2).map(|_| start_seeder(addr, &[], &[&src])).collect();
        let out = leecher.finish(DOWNLOAD);
        if out.status.success() {
            assert_same_file(&src, &out_dir.join("big.bin"));
            assert_eq!(dir_names(&out_dir), ["big.bin"]);
        }
        return (out, tmp);
    }
    panic!("in 3 attempts the download always finished before its seeder could be killed");
}

#[test]
fn seeder_killed_mid_download() {
    let (out, _tmp) = download_with_seeder_killed("20");
    assert_success(&out, "leecher whose seeder was killed");
}

/// The same fault, with a leecher `--timeout` (6 s) far above the tracker's
/// interval (1 s): the leecher asks the tracker for seeders every interval
/// while chunks remain, so it learns of the two new seeders about a second
/// after the first one died and never comes near its timeout.
#[test]
fn leecher_reasks_tracker_every_interval() {
    let (out, _tmp) = download_with_seeder_killed("6");
    assert_success(&out, "leecher with --timeout 6 and a tracker interval of 1 s");
}

/// The `sent ...` part of a seeder status line once it is not zero
/// (`seeder: ... | sent 1.0 MiB (0.02 copies) | ...`).
fn served(line: &str) -> Option<String> {
    let sent = line.split('|').map(str::trim).find(|part| part.starts_with("sent "))?;
    (!sent.starts_with("sent 0 B")).then(|| sent.to_string())
}

#[test]
fn lying_seeder() {
    let tmp = TempDir::new("liar");
    let src = random_file(&tmp.sub("src"), "honest.bin", 4 * MIB + 99, 4);
    let meta = file_meta(&src, CHUNK);
    let id = meta.content_id();
    let (_tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--open"]);

    // The liar publishes the real metadata and joins the swarm as a seeder,
    // alone at first so that the leecher is sure to ask it.
    assert_eq!(catalog_request(addr, &Request::Publish(meta.clone())), Response::Published(id));
    let liar = HostileSeeder::start(meta, addr, Hostility::Lie);
    wait_until(Duration::from_secs(10), "the liar to be listed as a seeder", || tracker_seeders(addr, id) == 1);

    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "honest.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    wait_until(Duration::from_secs(20), "the leecher to receive a bad chunk from the liar", || {
        liar.answered.load(Ordering::SeqCst) >= 1
    });
    let (_honest, _) = start_seeder(addr, &[], &[&src]);

    let out = leecher.finish(DOWNLOAD);
    assert_success(&out, "leecher fed bad chunks");
    assert_same_file(&src, &out_dir.join("honest.bin"));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("SHA-1"), "stderr reports the failed SHA-1 check:\n{stderr}");
    // The liar stays in the tracker's answers the whole time (it heartbeats),
    // yet the leecher never dials it again for this file.
    assert_eq!(liar.connections.load(Ordering::SeqCst), 1, "connections the leecher made to the liar");
}

#[test]
fn garbage_on_every_port() {
    let tmp = TempDir::new("garbage");
    let src = random_file(&tmp.sub("src"), "target.bin", 2 * MIB + 3, 5);
    let meta = file_meta(&src, CHUNK);
    let (mut tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (mut seeder, seeder_addr) = start_seeder(addr, &["--slots", "4"], &[&src]);
    wait_listed(addr, "target.bin", 1);
    let mut rng = Rng::new(0xBAD5EED);

    // UDP: random datagrams, some with a valid connect header or a plausible
    // announce/scrape header followed by random bytes.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    for i in 0..600 {
        let len = rng.below(2000);
        let mut d = random_bytes(&mut rng, len);
        if len >= 16 {
            match i % 4 {
                1 => d[..12].copy_from_slice(&[&PROTOCOL_ID.to_be_bytes()[..], &[0, 0, 0, 0]].concat()),
                2 => d[8..12].copy_from_slice(&(1 + rng.below(2) as u32).to_be_bytes()),
                _ => {}
            }
        }
        sock.send_to(&d, addr).expect("send datagram");
    }

    // TCP, tracker and seeder alike: random bytes, huge length prefixes, a
    // zero-length frame, an unknown kind, a frame cut short, silent
    // connects, half-closes and abrupt drops.
    let mut held = Vec::new();
    for target in [addr, seeder_addr] {
        for i in 0..24 {
            let mut payload = match i % 8 {
                0 => vec![0xff, 0xff, 0xff, 0xff],
                1 => vec![0, 0, 0, 0],
                2 => vec![0, 0, 0, 1, 0x77],
                3 => vec![0x00, 0xff, 0xff, 0xf0, 0x01], // a near-16 MiB catalog frame, then nothing
                4 => Vec::new(),
                _ => Vec::new(),
            };
            let n = rng.below(5000);
            payload.extend(random_bytes(&mut rng, n));
            let Ok(mut s) = TcpStream::connect(target) else { continue };
            let _ = s.write_all(&payload);
            match i % 3 {
                0 => {
                    let _ = s.shutdown(Shutdown::Write);
                    drain(&mut s);
                }
                1 => drop(s),
                _ if target == addr && held.len() < 4 => held.push(s), // left open during the checks below
                _ => drop(s),
            }
        }
    }
    // A leecher that asks for many real chunks and vanishes without reading.
    for requests in [8u32, 200] {
        let mut s = TcpStream::connect(seeder_addr).expect("connect seeder");
        let mut out = Vec::new();
        Message::Hello { id: meta.content_id(), port: 0, nonce: 1 }.encode(&mut out);
        Message::Bitfield(Bitfield::new(meta.chunk_count()).as_bytes()).encode(&mut out);
        for index in 0..requests {
            Message::Request { index: index % meta.chunk_count(), sole: false, more: false }.encode(&mut out);
        }
        let _ = s.write_all(&out);
    }

    assert!(tracker.try_exit().is_none(), "the tracker survived the garbage");
    assert!(seeder.try_exit().is_none(), "the seeder survived the garbage");
    // Still a working tracker: BEP 15 connect (inside tracker_seeders), catalog, download.
    assert_eq!(tracker_seeders(addr, meta.content_id()), 1);
    let entry = list(addr).into_iter().find(|e| e.name == "target.bin").expect("target.bin still listed");
    assert_eq!(entry.id, meta.content_id());
    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "target.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    assert_success(&out, "leecher after the garbage");
    assert_same_file(&src, &out_dir.join("target.bin"));
    drop(held);
}

/// Reads until EOF or a short timeout.
fn drain(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    while let Ok(1..) = s.read(&mut buf) {}
}

/// A tracker that answers every request for metadata with a file whose name
/// would escape the output directory. The leecher must refuse it, whether it
/// asked by name or by content id, and create nothing anywhere.
#[test]
fn unsafe_names_refused_by_leecher() {
    for bad in ["../evil", "..", "sub/evil"] {
        let evil = FileMeta::new(bad.into(), 100, MIN_CHUNK, vec![Hash20::of(&[7u8; 100])]).expect("meta");
        let fake = FakeTracker::start(evil.clone());
        let tmp = TempDir::new("unsafe-leech");
        let out_dir = tmp.sub("out");
        for selector in [bad.to_string(), evil.content_id().to_hex()] {
            let out = run_leecher(fake.addr, &["get", &selector, "--out", out_dir.to_str().unwrap(), "--timeout", "5"]);
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "get {selector:?} from a tracker naming it {bad:?} must fail:\n{stderr}");
            assert!(stderr.contains(&format!("lmk-leecher: {selector}: ")), "stderr names {selector:?}:\n{stderr}");
            let lower = stderr.to_lowercase();
            assert!(lower.contains("unsafe") || lower.contains("refus"), "stderr says why:\n{stderr}");
            assert_eq!(dir_names(tmp.path()), ["out"], "nothing created next to the output dir ({bad:?})");
            assert!(dir_names(&out_dir).is_empty(), "nothing created in the output dir ({bad:?})");
        }
        assert!(fake.requests.load(Ordering::SeqCst) >= 2, "the leecher asked the fake tracker");
    }
}

//! Hostile catalog clients against the real tracker (issue 9, findings 1-4)
//! and bursty readers against a seeder with 16 MiB chunks (finding 9). Each
//! test makes the attack, then checks that a normal download is still byte
//! for byte right and that the attacked process's peak memory (VmHWM) stays
//! within a stated bound.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::wire::catalog::{Request, Response, Selector};
use lmk::wire::put_frame_header;

const MIB: u64 = 1024 * 1024;

/// Shares a fresh file through `tracker` and downloads it: the tracker still
/// serves real clients after an attack.
fn download_still_works(tracker: SocketAddr, tmp: &TempDir, name: &str) {
    let src = random_file(&tmp.sub("src"), name, 1_500_000, name.len() as u64);
    let (_seeder, _) = start_seeder(tracker, &[], &[&src]);
    wait_listed(tracker, name, 1);
    let out_dir = tmp.sub("out");
    let out = run_leecher(tracker, &["get", name, "--out", &out_dir.display().to_string()]);
    assert_success(&out, &format!("get {name} after the attack"));
    assert_same_file(&src, &out_dir.join(name));
}

fn assert_hwm_below(proc: &Proc, bound: u64, what: &str) -> u64 {
    let hwm = proc.peak_rss_kib() * 1024;
    assert!(hwm < bound, "{what}: peak RSS {} MiB, bound {} MiB", hwm / MIB, bound / MIB);
    eprintln!("{what}: peak RSS {:.1} MiB (bound {} MiB)", hwm as f64 / MIB as f64, bound / MIB);
    hwm
}

/// `n` connections from 127.0.0.2, 127.0.0.3, ... `per_ip` from each.
fn connections(tracker: SocketAddr, n: usize, per_ip: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i / per_ip) as u8);
            connect_from(src, tracker).unwrap_or_else(|e| panic!("connection {i} from {src}: {e}"))
        })
        .collect()
}

/// Finding 1: 200 GetMeta of a 400k-chunk file (8 MB answers) pipelined on
/// one connection that never reads. Before: 1.3-1.5 GiB. Now one answer is
/// held and the rest of the requests wait unread in the kernel.
#[test]
fn client_that_never_reads() {
    let tmp = TempDir::new("never-reads");
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let chunks = 400_000u32;
    let hashes = (0..chunks).map(|i| Hash20::of(&i.to_be_bytes())).collect();
    let meta = FileMeta::new("huge.bin".into(), u64::from(chunks) * u64::from(MIN_CHUNK), MIN_CHUNK, hashes).unwrap();
    assert!(matches!(catalog_request(addr, &Request::Publish(meta)), Response::Published(_)));

    let mut attacker = TcpStream::connect(addr).unwrap();
    let mut burst = Vec::new();
    for _ in 0..200 {
        Request::GetMeta(Selector::Name("huge.bin".into())).encode(&mut burst);
    }
    attacker.write_all(&burst).unwrap();
    // Answered while the attacker holds its connection: the loop is not stuck.
    for _ in 0..3 {
        assert!(list(addr).iter().any(|e| e.name == "huge.bin"));
    }
    // The 8 MB Publish read whole, the metadata kept, one 8 MB answer queued.
    assert_hwm_below(&tracker, 64 * MIB, "tracker after 200 unread 8 MB answers");
    download_still_works(addr, &tmp, "after-unread.bin");
    assert!(!closed_by_peer(&mut attacker), "the attacker is slowed, not closed, within its idle time");
}

/// Finding 2: List and GetMeta headers announcing 16 MiB are refused on
/// their 5 bytes; of Publish frames announced at 16 MiB and left unfinished,
/// 8 are read at once (the others wait unread for a turn) and each is cut
/// 10 s after its turn began. Before: 16.3 MiB held per connection, 512
/// connections allowed.
#[test]
fn oversized_and_unfinished_frames() {
    let tmp = TempDir::new("frames");
    let (tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let mut small_kinds = connections(addr, 64, 32);
    for (i, c) in small_kinds.iter_mut().enumerate() {
        let mut header = Vec::new();
        put_frame_header(&mut header, [0x02, 0x03][i % 2], 16 * MIB as usize - 1);
        c.write_all(&header).unwrap();
        c.write_all(&[0; 1000]).unwrap();
    }
    wait_until(Duration::from_secs(10), "every oversized List/GetMeta to be refused", || {
        small_kinds.iter_mut().all(closed_by_peer)
    });

    // 16 Publishes announced at 16 MiB, 1 MiB of each sent, then silence.
    let mut publishes = connections(addr, 16, 32);
    let start = Instant::now();
    for c in &mut publishes {
        let mut frame = Vec::new();
        put_frame_header(&mut frame, 0x01, 16 * MIB as usize - 1);
        frame.resize(MIB as usize, 1);
        c.write_all(&frame).unwrap();
    }
    download_still_works(addr, &tmp, "beside-unfinished.bin");
    wait_until(Duration::from_secs(40), "the unfinished Publishes to be cut (two turns of 10 s)", || {
        publishes.iter_mut().all(closed_by_peer)
    });
    eprintln!("unfinished Publishes cut after {:.1} s", start.elapsed().as_secs_f64());
    // 8 turns of 1 MiB read, the others at most 64 KiB and a read each.
    assert_hwm_below(&tracker, 48 * MIB, "tracker holding 16 unfinished 16 MiB Publishes");
}

/// Finding 3: 512 connections (16 addresses, 32 each) that trickle a
/// GetMeta frame at a byte a second. Before: they held the catalog (`list`
/// failed) as each byte restarted the idle timer. Now a newcomer evicts the
/// one whose frame has taken longest, a 33rd connection from one address is
/// refused, and every frame must be whole within 10 s of its first byte.
#[test]
fn slowloris() {
    let tmp = TempDir::new("slowloris");
    let (tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let mut held = connections(addr, 512, 32);
    let start = Instant::now();
    let mut frame = Vec::new();
    put_frame_header(&mut frame, 0x03, 258);
    frame.resize(frame.len() + 258, b'a');
    let mut writers: Vec<TcpStream> = held.iter().map(|c| c.try_clone().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_trickle = Arc::clone(&stop);
    let trickler = std::thread::spawn(move || {
        for byte in frame.iter().take(60) {
            for w in &mut writers {
                let _ = w.write(std::slice::from_ref(byte));
            }
            std::thread::sleep(Duration::from_secs(1));
            if stop_trickle.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    let mut over_cap = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).unwrap();
    wait_until(Duration::from_secs(10), "the 33rd connection of one address to be refused", || {
        closed_by_peer(&mut over_cap)
    });
    let list_out = run_leecher(addr, &["list"]);
    assert_success(&list_out, "lmk-leecher list while 512 connections trickle");
    download_still_works(addr, &tmp, "through-slowloris.bin");
    wait_until(Duration::from_secs(40), "every trickling connection to be cut", || {
        std::thread::sleep(Duration::from_millis(200));
        held.iter_mut().all(closed_by_peer)
    });
    eprintln!(
        "512 connections trickling a byte a second cut {:.1} s after they started",
        start.elapsed().as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    assert_hwm_below(&tracker, 48 * MIB, "tracker under 512 trickling connections");
}

/// Finding 4: with 64 descriptors, a flood of 300 connections fills the
/// backlog and accept fails with EMFILE. Before: the catalog never answered
/// again. Now the connection longest without progress is evicted to make
/// room and the listener tried again at once, so the catalog answers during
/// the flood and after it.
#[test]
fn descriptor_exhaustion() {
    let tmp = TempDir::new("emfile");
    let (tracker, addr) = start_tracker_nofile(64);
    let flood = connections(addr, 300, 30);
    let start = Instant::now();
    let out = run_leecher(addr, &["list"]);
    assert_success(&out, "lmk-leecher list during the flood");
    eprintln!("lmk-leecher list took {:.2} s during the flood", start.elapsed().as_secs_f64());
    assert!(tracker.stderr().contains("os error 24"), "the flood did not exhaust the descriptors (EMFILE)");
    drop(flood);
    let start = Instant::now();
    wait_until(Duration::from_secs(20), "lmk-leecher list to work after the flood", || {
        run_leecher(addr, &["list"]).status.success()
    });
    eprintln!("catalog answered {:.2} s after the flood closed", start.elapsed().as_secs_f64());
    download_still_works(addr, &tmp, "after-emfile.bin");
    assert_hwm_below(&tracker, 48 * MIB, "tracker after a descriptor flood");
}

/// Finding 9: leechers that read in bursts (a download limit) from a seeder
/// with 16 MiB chunks. Before: 2-3 of 12 never got their last chunk (a lost
/// wake-up in the write path). Every leecher finishes byte-exact.
#[test]
fn bursty_readers_of_huge_chunks() {
    let tmp = TempDir::new("bursty");
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let src = random_file(&tmp.sub("src"), "big-chunks.bin", 40 * MIB as usize + 12345, 99);
    let (seeder, _) = start_seeder(addr, &["--chunk-size", &(16 * MIB).to_string()], &[&src]);
    wait_listed(addr, "big-chunks.bin", 1);
    let leechers: Vec<(Proc, std::path::PathBuf)> = (0..4)
        .map(|i| {
            let out = tmp.sub(&format!("out{i}"));
            let p = spawn_leecher(
                addr,
                &["get", "big-chunks.bin", "--down-limit", "40M", "--out", &out.display().to_string()],
            );
            (p, out)
        })
        .collect();
    for (p, out) in leechers {
        let output = p.finish(DOWNLOAD);
        assert_success(&output, "a bursty leecher");
        assert_same_file(&src, &out.join("big-chunks.bin"));
    }
    // Four connections with one 16 MiB chunk queued each, and the file's reads.
    assert_hwm_below(&seeder, 192 * MIB, "seeder of 16 MiB chunks to 4 bursty readers");
}

/// Issue 19: 500 clients (32 per address) ask for the same 16 MiB metadata
/// and never read. Before: each connection held its own encoded copy, 500 x
/// 16 MiB. Now the answer exists once and each connection sends it from
/// there; the tracker stays within README's bound for the catalog.
#[test]
fn many_clients_never_read_one_huge_metadata() {
    let tmp = TempDir::new("huge-meta");
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let chunks = lmk::meta::MAX_CHUNKS;
    let hashes = (0..chunks).map(|i| Hash20::of(&i.to_be_bytes())).collect();
    let meta = FileMeta::new("huge16.bin".into(), u64::from(chunks) * u64::from(MIN_CHUNK), MIN_CHUNK, hashes).unwrap();
    assert!(matches!(catalog_request(addr, &Request::Publish(meta)), Response::Published(_)));

    let mut request = Vec::new();
    Request::GetMeta(Selector::Name("huge16.bin".into())).encode(&mut request);
    let mut clients = connections(addr, 500, 32);
    assert_eq!(clients.len(), 500);
    for c in &mut clients {
        c.write_all(&request).unwrap();
    }
    // One more client that does read: the whole answer, while the 500 hold theirs.
    let answer = catalog_request(addr, &Request::GetMeta(Selector::Name("huge16.bin".into())));
    assert!(matches!(answer, Response::Meta(m) if m.chunk_count() == chunks));
    assert_hwm_below(&tracker, 64 * MIB, "tracker sending one 16 MiB metadata to 500 clients that never read");
    download_still_works(addr, &tmp, "after-huge-meta.bin");
    drop(clients);
}

//! Peers that never send a verified chunk: one that only answers Unavailable,
//! one that trickles a chunk a byte at a time, one that announces a 4 GiB
//! frame. `--timeout` counts only verified chunks, so a leecher facing them
//! alone gives up on time; with an honest seeder beside them it finishes.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake::{HostileSeeder, Hostility};
use common::*;
use lmk::wire::catalog::{Request, Response};

const MIB: usize = 1024 * 1024;
/// The leecher's peak RSS must stay below this whatever the peers announce.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// Waits for the leecher to exit, sampling its peak RSS (VmHWM) until then.
fn finish_sampling_rss(mut leecher: Proc) -> (std::process::Output, u64) {
    let mut peak = 0;
    wait_until(DOWNLOAD, "the leecher to exit", || {
        peak = peak.max(peak_rss_kib(leecher.pid()).unwrap_or(0));
        leecher.try_exit().is_some()
    });
    (leecher.finish(DOWNLOAD), peak)
}

#[test]
fn stalling_peers_do_not_hold_a_leecher() {
    let tmp = TempDir::new("stall");
    let src = random_file(&tmp.sub("src"), "wanted.bin", 3 * MIB + 7, 10);
    let meta = file_meta(&src, CHUNK);
    let id = meta.content_id();
    let (_tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--open"]);
    assert_eq!(catalog_request(addr, &Request::Publish(meta.clone())), Response::Published(id));

    let hostile: Vec<HostileSeeder> = [Hostility::Unavailable, Hostility::Trickle, Hostility::HugeHeader]
        .into_iter()
        .map(|h| HostileSeeder::start(meta.clone(), addr, h))
        .collect();
    wait_until(Duration::from_secs(10), "the three hostile seeders to be listed", || tracker_seeders(addr, id) == 3);

    // Alone with them: no chunk is ever verified, so `--timeout 3` ends it.
    let out_dir = tmp.sub("out");
    let out = out_dir.to_str().unwrap();
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out, "--timeout", "3"]);
    let started = std::time::Instant::now();
    let (result, peak) = finish_sampling_rss(leecher);
    eprintln!("alone with stalling peers: gave up after {:.1?}, peak RSS {peak} KiB", started.elapsed());
    assert!(!result.status.success(), "the leecher gave up:\n{}", text(&result.stderr));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("no chunk verified within 3s"), "stderr names the timeout:\n{stderr}");
    assert!(peak < RSS_BOUND_KIB, "leecher peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
    for (seeder, what) in hostile.iter().zip(["unavailable", "trickling", "huge-header"]) {
        assert!(seeder.connections.load(Ordering::SeqCst) >= 1, "the leecher dialled the {what} seeder");
    }
    assert!(hostile[1].answered.load(Ordering::SeqCst) >= 1, "the trickling seeder was asked for a chunk");
    assert!(hostile[2].answered.load(Ordering::SeqCst) >= 1, "the huge-header seeder was asked for a chunk");

    // With an honest seeder beside them the same download finishes byte-exact.
    let (_honest, _) = start_seeder(addr, &[], &[&src]);
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out, "--timeout", "10"]);
    let (result, peak) = finish_sampling_rss(leecher);
    assert_success(&result, "leecher beside stalling peers and one honest seeder");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    assert!(peak < RSS_BOUND_KIB, "leecher peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
}

/// 128 callers from one address each announce a 16 MiB Chunk frame and send
/// its bytes, never a Hello. Before a Hello only a Hello-sized frame is
/// taken and callers not yet greeted are capped, so the seeder holds little
/// (it took 2 GiB) and still serves an honest leecher.
#[test]
fn callers_that_never_greet_cannot_fill_a_seeder() {
    use std::io::Write;
    let tmp = TempDir::new("nohello");
    let src = random_file(&tmp.sub("src"), "wanted.bin", 2 * MIB + 3, 11);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (seeder, seeder_addr) = start_seeder(addr, &[], &[&src]);
    let mut header = vec![0x01, 0x00, 0x00, 0x05, 0x14]; // a Chunk frame of 16 MiB + 5
    header.extend_from_slice(&[0, 0, 0, 0]);
    let junk = vec![0xAA; 256 * 1024];
    let mut socks: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..128 {
        if let Ok(mut s) = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 9), seeder_addr) {
            s.set_nonblocking(true).unwrap();
            let _ = s.write_all(&header);
            socks.push(s);
        }
    }
    let mut peak = 0;
    for _ in 0..64 {
        for s in &mut socks {
            let _ = s.write(&junk);
        }
        peak = peak.max(seeder.peak_rss_kib());
    }
    eprintln!("{} callers that never greet: seeder peak RSS {peak} KiB", socks.len());
    assert!(peak < RSS_BOUND_KIB, "seeder peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    let (result, _) = finish_sampling_rss(leecher);
    assert_success(&result, "an honest leecher beside the callers");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    drop(socks);
}

/// 90 connections from one address say Hello, ask for every chunk they may
/// and never read. A slot holder whose queue takes nothing for 5 s is closed
/// and its address refused; one address holds at most its share of the slots
/// and half of a file's connections. An honest get beside them finishes (it
/// failed after 60 s: the non-readers held all 8 slots) and the seeder, with
/// 1 MiB chunks (each non-reader may hold one in its queue), stays under the bound.
#[test]
fn connections_that_never_read_cannot_hold_the_upload_slots() {
    use lmk::peer::bitfield::Bitfield;
    use lmk::wire::peer::Message;
    use std::io::Write;
    let tmp = TempDir::new("noread");
    let src = random_file(&tmp.sub("src"), "wanted.bin", 32 * MIB, 12);
    let meta = file_meta(&src, 1 << 20);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (seeder, seeder_addr) = start_seeder(addr, &["--chunk-size", "1048576"], &[&src]);
    wait_listed(addr, "wanted.bin", 1);
    let mut hello = Vec::new();
    let chunks = meta.chunk_count();
    Message::Bitfield(Bitfield::new(chunks).as_bytes()).encode(&mut hello);
    for index in 0..chunks {
        Message::Request(index).encode(&mut hello);
    }
    let mut socks: Vec<std::net::TcpStream> = Vec::new();
    for n in 0..90u64 {
        if let Ok(mut s) = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 9), seeder_addr) {
            let mut out = Vec::new();
            Message::Hello { id: meta.content_id(), port: 0, nonce: 0xbad0 + n }.encode(&mut out);
            out.extend_from_slice(&hello);
            let _ = s.write_all(&out);
            socks.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500)); // the seeder takes them in and serves them first
    let out_dir = tmp.sub("out");
    let started = std::time::Instant::now();
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "30"]);
    let (result, _) = finish_sampling_rss(leecher);
    let peak = seeder.peak_rss_kib();
    eprintln!(
        "beside {} non-readers: got 32 MiB in {:.1?}; seeder peak RSS {peak} KiB",
        socks.len(),
        started.elapsed()
    );
    assert_success(&result, "an honest get beside connections that never read");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    assert!(peak < RSS_BOUND_KIB, "seeder peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
    drop(socks);
}

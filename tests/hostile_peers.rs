//! Hostile peers against the real binaries: peers that never send a verified
//! chunk (only Unavailable, a chunk a byte at a time, a 4 GiB frame header,
//! twenty that claim every chunk and stall), callers that never greet or
//! never read, callers of every file of a seeder, and a third peer replaying a nonce. `--timeout` counts
//! verified chunks (and chunk bytes arriving at 8 KiB/s or more, which none of them send), so a leecher
//! facing them alone gives up on time; with an honest seeder beside them it finishes. Against them, an
//! honest seeder too slow for one chunk in the stall time is kept.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fake::{HostileSeeder, Hostility, NonceThief};
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
        Message::Request { index, sole: false, more: false }.encode(&mut hello);
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

/// The only seeder sends each 1 MiB chunk at 48 KiB/s: 21 s, longer than
/// the stall time (15 s) and `--timeout 18`. The leecher's shell tells its
/// core of the bytes as they arrive, so the seeder is kept and the get ends
/// byte-exact (told only of whole chunks, the core dropped it at 15 s, and
/// the get failed).
#[test]
fn a_seeder_slower_than_the_stall_time_is_kept() {
    let tmp = TempDir::new("slow-seeder");
    let src = random_file(&tmp.sub("src"), "wanted.bin", MIB, 16);
    let meta = file_meta(&src, MIB as u32);
    let id = meta.content_id();
    let (_tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--open"]);
    assert_eq!(catalog_request(addr, &Request::Publish(meta.clone())), Response::Published(id));
    let slow = HostileSeeder::slow(meta, addr, &src);
    wait_until(Duration::from_secs(10), "the slow seeder to be listed", || tracker_seeders(addr, id) == 1);
    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "18"]);
    let started = std::time::Instant::now();
    let (result, _) = finish_sampling_rss(leecher);
    eprintln!("from a 48 KiB/s seeder: 1 MiB in {:.1?}", started.elapsed());
    assert_success(&result, "a get from a seeder slower than the stall time");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    assert_eq!(slow.connections.load(Ordering::SeqCst), 1, "never dropped and dialled again");
}

/// Twenty peers from addresses of their own announce themselves as seeders,
/// claim every chunk and say Available, then never answer (`Hostility::Stall`)
/// or answer a byte a second (`Hostility::Trickle`); one honest seeder is
/// there too. End-game duplicates asked of claimers (which never delivered)
/// leave room for the seeder to be asked too, and what a claimer owes is
/// asked of other holders once it is far overdue (2 s for a peer that never
/// sent a chunk), so the get finishes byte-exact at the seeder's pace (it
/// failed after 30 s, or sat at 53-94%; without both rules, claimers that
/// took end-game duplicates of each other's chunks held the last ones for
/// the stall time, 15 s, and `--timeout 10` ended it; either rule alone
/// passes).
/// Returns the requests the claimers answered.
fn twenty_claimers_beside_a_seeder(hostility: Hostility, tag: &str, seed: u64) -> usize {
    let tmp = TempDir::new(tag);
    let src = random_file(&tmp.sub("src"), "wanted.bin", 8 * MIB + 9, seed);
    let meta = file_meta(&src, CHUNK);
    let id = meta.content_id();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    // Limited: the end game starts while the seeder is asked for few chunks at a time.
    let (_seeder, _) = start_seeder(addr, &["--up-limit", "1M"], &[&src]);
    wait_listed(addr, "wanted.bin", 1);
    let hostile: Vec<HostileSeeder> = (0..20).map(|_| HostileSeeder::start(meta.clone(), addr, hostility)).collect();
    wait_until(Duration::from_secs(10), "the 20 claimers and the seeder to be listed", || {
        tracker_seeders(addr, id) == 21
    });
    let out_dir = tmp.sub("out");
    // A chunk stuck at a claimer for the stall time (15 s) ends the get.
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "10"]);
    let started = std::time::Instant::now();
    let (result, peak) = finish_sampling_rss(leecher);
    let asked = hostile.iter().filter(|h| h.connections.load(Ordering::SeqCst) >= 1).count();
    let requests: usize = hostile.iter().map(|h| h.answered.load(Ordering::SeqCst)).sum();
    eprintln!(
        "beside 20 claimers ({hostility:?}): got 8 MiB in {:.1?}; {asked} of them dialled, {requests} requests to them; leecher peak RSS {peak} KiB",
        started.elapsed()
    );
    assert_success(&result, "an honest get beside 20 peers that claim every chunk");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    assert!(asked >= 10, "the leecher dialled the claimers ({asked} of 20)");
    assert!(peak < RSS_BOUND_KIB, "leecher peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
    requests
}

#[test]
fn twenty_peers_that_claim_every_chunk_and_stall_do_not_hold_a_get() {
    twenty_claimers_beside_a_seeder(Hostility::Stall, "claim-stall", 14);
}

#[test]
fn twenty_peers_that_claim_every_chunk_and_trickle_do_not_hold_a_get() {
    twenty_claimers_beside_a_seeder(Hostility::Trickle, "claim-trickle", 15);
}

/// Claimers that answer every request Reject NoSlot, without a State: the
/// leecher takes NoSlot as "not now" and asks such a peer again only once it
/// offers a slot, so it asks each a pipeline's worth per connection (it sent
/// them 1-2 million requests in 30 s and failed, with 13-16 s of CPU).
#[test]
fn twenty_peers_that_claim_every_chunk_and_answer_no_slot_do_not_hold_a_get() {
    let requests = twenty_claimers_beside_a_seeder(Hostility::NoSlot, "claim-noslot", 16);
    assert!(requests < 2000, "{requests} requests to 20 peers that answer NoSlot");
}

/// The leecher dials a peer that, from an address of its own, replays the
/// leecher's Hello nonce at the seeder every 100 ms. A duplicate connection
/// needs the same nonce from the same address block, so the seeder keeps the
/// leecher's one connection (a nonce alone made it drop that connection at
/// each replay: a 32 MiB get took 24-34 s instead of 3.9 s).
#[test]
fn a_replayed_nonce_does_not_drop_the_real_connection() {
    let tmp = TempDir::new("nonce");
    let src = random_file(&tmp.sub("src"), "wanted.bin", 16 * MIB + 5, 16);
    let meta = file_meta(&src, CHUNK);
    let id = meta.content_id();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    // Limited, so the get lasts some seconds of replays; -v logs each accepted connection.
    let (seeder, seeder_addr) = start_seeder(addr, &["-v", "--up-limit", "4M"], &[&src]);
    wait_listed(addr, "wanted.bin", 1);
    let thief = NonceThief::start(meta, addr, seeder_addr);
    wait_until(Duration::from_secs(10), "the thief to be listed", || tracker_seeders(addr, id) == 2);
    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "wanted.bin", "--out", out_dir.to_str().unwrap()]);
    let result = leecher.finish(DOWNLOAD);
    let replays = thief.replays.load(Ordering::SeqCst);
    assert_success(&result, "an honest get while its nonce is replayed");
    assert_same_file(&src, &out_dir.join("wanted.bin"));
    assert!(replays >= 3, "the seeder took in replayed Hellos while the get ran ({replays})");
    // The leecher is the only peer on 127.0.0.1 (the thief has 127.0.1.x).
    let log = seeder.stderr();
    let accepted = log.lines().filter(|l| l.contains(" 127.0.0.1:") && l.ends_with(": accepted")).count();
    eprintln!("{replays} replayed Hellos; the seeder accepted the leecher {accepted} time(s)");
    assert_eq!(accepted, 1, "the leecher's connection was never dropped, so it dialled once");
}

/// A seeder of 20 files (128 KiB chunks, the default size) and a crowd from
/// two addresses that opens `--max-peers-per-file` (50) connections to each
/// file, 25 from each address. All say Hello and an empty Bitfield, ask for
/// every chunk and never read; those of the first address also start a
/// chunk-sized frame they never finish. A greeted caller of a seed takes no
/// frame larger than a Bitfield, so those are closed on the header (each held
/// a read buffer of about 256 KiB), and at most 128 callers are held over all
/// files, so the others cannot hold 256 KiB of queue each in every file. The
/// seeder stays under the bound, and an honest get of one file beside them
/// finishes (a newcomer from another address takes the place of one of theirs).
#[test]
fn callers_of_many_files_cannot_fill_a_seeder() {
    use lmk::peer::bitfield::Bitfield;
    use lmk::wire::peer::{max_frame, Message};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    const FILES: usize = 20;
    const PER_FILE: usize = 50;
    const CHUNK_SIZE: u32 = 128 * 1024;
    raise_nofile(4096);
    let tmp = TempDir::new("manyfiles");
    let dir = tmp.sub("src");
    let srcs: Vec<_> = (0..FILES)
        .map(|n| random_file(&dir, &format!("f{n:02}.bin"), 3 * CHUNK_SIZE as usize - 7 * n - 1, 40 + n as u64))
        .collect();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (seeder, seeder_addr) = start_seeder(addr, &["--chunk-size", &CHUNK_SIZE.to_string()], &[&dir]);
    wait_listed(addr, "f19.bin", 1);
    wait_listed(addr, "f07.bin", 1);

    let (mut greeted, mut refused) = (0, 0);
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut framing: Vec<TcpStream> = Vec::new();
    for src in &srcs {
        let meta = file_meta(src, CHUNK_SIZE);
        let chunks = meta.chunk_count();
        for n in 0..PER_FILE {
            let framer = n < PER_FILE / 2;
            let from = if framer { Ipv4Addr::new(127, 0, 0, 9) } else { Ipv4Addr::new(127, 0, 0, 10) };
            let Ok(mut s) = connect_from(from, seeder_addr) else { continue };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut out = Vec::new();
            Message::Hello { id: meta.content_id(), port: 0, nonce: 0xc0de_0000 + greeted + refused }.encode(&mut out);
            // Its Hello (35 + 4 bytes), then its Bitfield, or State Unavailable: no room.
            let mut answer = [0u8; 39 + 6];
            if s.write_all(&out).is_err() || s.read_exact(&mut answer).is_err() || answer[43] != 0x10 {
                refused += 1;
                continue;
            }
            greeted += 1;
            out.clear();
            Message::Bitfield(Bitfield::new(chunks).as_bytes()).encode(&mut out);
            (0..chunks).for_each(|index| Message::Request { index, sole: false, more: false }.encode(&mut out));
            if framer {
                // A Chunk frame's header and all of its body but the last byte.
                let len = max_frame(CHUNK_SIZE, chunks);
                out.extend_from_slice(&len.to_be_bytes());
                out.push(0x14);
                out.resize(out.len() + len as usize - 2, 0xAA);
            }
            // The seeder may close it on the header: whatever it took is what counts.
            let _ = s.write_all(&out);
            if framer {
                framing.push(s)
            } else {
                idle.push(s)
            }
        }
    }
    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "f07.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "10"]);
    let (result, _) = finish_sampling_rss(leecher);
    let peak = seeder.peak_rss_kib();
    let held = idle.iter_mut().map(closed_by_peer).filter(|closed| !closed).count();
    eprintln!(
        "{greeted} callers greeted, {refused} refused over {FILES} files; {held} of the {} that only ask still held; seeder peak RSS {peak} KiB",
        idle.len()
    );
    assert_success(&result, "an honest get beside callers of every file");
    assert_same_file(&srcs[7], &out_dir.join("f07.bin"));
    assert!(peak < RSS_BOUND_KIB, "seeder peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
    assert!(held <= 128, "{held} callers held over all files (at most 128)");
    drop((idle, framing));
}

/// A seeder of 4 files of 4 MiB chunks and 128 callers (the most it holds)
/// from four addresses, each asking for one chunk until the chunk starts to
/// arrive (it peeks, it never reads; a small receive window keeps what is
/// sent in the seeder's memory, not the kernel's). Each one given a slot has
/// its chunk queued, asks for nothing more, and gives the slot back within
/// 500 ms while others wait, keeping the chunk queued: that took the seeder
/// to 524 MiB, and 48 MiB once whole chunks were queued only within a budget
/// of (8 slots + 2) x (4 MiB + 256 KiB). A chunk now goes out in pieces of
/// 256 KiB as its queue takes them, within a budget of (8 + 2) x (256 KiB +
/// 256 KiB), and a connection whose queue with a piece in it moves nothing
/// for 5 s is closed, freeing its share: the seeder peaks at 9 MiB (at 16 MiB
/// chunks too; 180 MiB before pieces), and the honest get beside them takes
/// 5 s (10 s before the budget).
#[test]
fn callers_that_never_read_big_chunks_cannot_fill_a_seeder() {
    use lmk::peer::bitfield::Bitfield;
    use lmk::wire::peer::Message;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    const FILES: usize = 4;
    const PER_FILE: usize = 32;
    const CHUNK_SIZE: u32 = 4 << 20;
    /// How long the attack goes on: long enough for every caller to be given
    /// a slot in turn (16 rounds of 8 slots, 500 ms each) before.
    const ATTACK: Duration = Duration::from_secs(15);
    raise_nofile(1024);
    let tmp = TempDir::new("bigchunks");
    let dir = tmp.sub("src");
    let srcs: Vec<_> = (0..FILES)
        .map(|n| random_file(&dir, &format!("b{n}.bin"), 2 * CHUNK_SIZE as usize - 11 * n - 1, 70 + n as u64))
        .collect();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (seeder, seeder_addr) = start_seeder(addr, &["--chunk-size", &CHUNK_SIZE.to_string()], &[&dir]);
    for n in 0..FILES {
        wait_listed(addr, &format!("b{n}.bin"), 1);
    }
    // Each caller with the request it repeats.
    let mut callers: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    for src in &srcs {
        let meta = file_meta(src, CHUNK_SIZE);
        for n in 0..PER_FILE {
            let from = Ipv4Addr::new(127, 0, 0, 9 + (n % 4) as u8);
            let Ok(mut s) = connect_with_window(from, seeder_addr, Some(4096)) else { continue };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut out = Vec::new();
            Message::Hello { id: meta.content_id(), port: 0, nonce: 0xb16_0000 + callers.len() as u64 }
                .encode(&mut out);
            // Its Hello (35 + 4 bytes), then its Bitfield, or State Unavailable: no room.
            let mut answer = [0u8; 39 + 6];
            if s.write_all(&out).is_err() || s.read_exact(&mut answer).is_err() || answer[43] != 0x10 {
                continue;
            }
            out.clear();
            Message::Bitfield(Bitfield::new(meta.chunk_count()).as_bytes()).encode(&mut out);
            let _ = s.write_all(&out);
            s.set_nonblocking(true).unwrap();
            let mut request = Vec::new();
            Message::Request { index: n as u32 % meta.chunk_count(), sole: false, more: false }.encode(&mut request);
            callers.push((s, request));
        }
    }
    let started = std::time::Instant::now();
    let out_dir = tmp.sub("out");
    let mut leecher = spawn_leecher(addr, &["get", "b1.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "30"]);
    let (mut peak, mut got, mut served) = (0, None, 0);
    let mut pending = vec![0u8; 65536];
    while started.elapsed() < ATTACK {
        // Ask again until the chunk starts to arrive (State and Rejects are a few bytes each).
        served = 0;
        for (s, request) in &mut callers {
            if s.peek(&mut pending).unwrap_or(0) >= 2048 {
                served += 1;
            } else {
                let _ = s.write_all(request);
            }
        }
        peak = peak.max(seeder.peak_rss_kib());
        if got.is_none() && leecher.try_exit().is_some() {
            got = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let result = leecher.finish(DOWNLOAD);
    let peak = peak.max(seeder.peak_rss_kib());
    let held = callers.iter_mut().map(|(s, _)| closed_by_peer(s)).filter(|closed| !closed).count();
    eprintln!(
        "{} callers of 4 MiB chunks that never read: {served} sent a chunk, {held} still held after {:.1?}; honest get done after {got:.1?}; seeder peak RSS {peak} KiB",
        callers.len(),
        started.elapsed()
    );
    assert_success(&result, "an honest get beside callers that never read");
    assert_same_file(&srcs[1], &out_dir.join("b1.bin"));
    assert!(peak < RSS_BOUND_KIB, "seeder peak RSS {peak} KiB, bound {RSS_BOUND_KIB} KiB");
}

/// 16 seeders send a leecher 4 MiB chunks at once. A chunk frame's data is
/// handed to the core as it arrives (checked, and written by one connection
/// per chunk), so a connection holds about one read (256 KiB), not a whole
/// frame: the leecher stays under 32 MiB whatever the chunk size (it took 61
/// MiB here when each connection held whole frames, 16 x 4.25 MiB at worst;
/// 97 MiB with 50 seeders, 409 MiB with 50 at 16 MiB chunks; about 8 MiB now).
#[test]
fn a_leecher_fed_big_chunks_by_many_seeders_holds_no_whole_chunk() {
    const SEEDERS: usize = 16;
    const BOUND_KIB: u64 = 32 * 1024;
    let tmp = TempDir::new("bigfed");
    let src = random_file(&tmp.sub("src"), "fed.bin", 64 * MIB - 5, 91);
    let cap = (SEEDERS + 4).to_string();
    let (_tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--max-peers-per-ip-in-swarm", &cap]);
    let _seeders: Vec<_> =
        (0..SEEDERS).map(|_| start_seeder(addr, &["--chunk-size", &(4 * MIB).to_string()], &[&src]).0).collect();
    let id = file_meta(&src, 4 * MIB as u32).content_id();
    wait_until(Duration::from_secs(60), "every seeder to be listed", || tracker_seeders(addr, id) == SEEDERS);
    let out_dir = tmp.sub("out");
    let leecher = spawn_leecher(addr, &["get", "fed.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "30"]);
    let (result, peak) = finish_sampling_rss(leecher);
    eprintln!("{SEEDERS} seeders of 4 MiB chunks: leecher peak RSS {peak} KiB");
    assert_success(&result, "a leecher fed 4 MiB chunks by 16 seeders");
    assert_same_file(&src, &out_dir.join("fed.bin"));
    assert!(peak < BOUND_KIB, "leecher peak RSS {peak} KiB, bound {BOUND_KIB} KiB");
}

//! Resume after kill -9 (issue 10): a download killed at random moments
//! finishes byte-exact with little re-fetched, and a restarted leecher
//! serves the chunks it verified at start before it finishes.

mod common;

use std::time::Duration;

use common::*;

const MIB: usize = 1024 * 1024;

/// 20 kill -9 at random moments of one download, then a get to the end: the
/// file is byte-exact and the seeder sent less than 1.3 copies in all.
#[test]
fn a_download_killed_20_times_finishes_with_little_refetched() {
    let tmp = TempDir::new("crash-loop");
    let size = 32 * MIB + 99;
    let src = random_file(&tmp.sub("src"), "movie.bin", size, 20);
    let Shared { addr, seeder, tracker: _tracker } = share(&src, &["--up-limit", "3M", "--status", "0.2"]);
    let out = tmp.sub("out");
    let union = ChunkUnion::new(&src, CHUNK);
    let mut rng = Rng::new(0x1010);
    for run in 0..20 {
        let mut leecher = get_into(addr, "movie.bin", &out, &[]);
        let ms = 50 + rng.next_u64() % 450;
        std::thread::sleep(Duration::from_millis(ms));
        assert!(leecher.done_line("movie.bin").is_none(), "run {run} finished: the download is too short");
        leecher.kill();
    }
    let held = union.held_in(&out, "movie.bin");
    let chunks = union.chunks();
    assert!(held < chunks, "the killed runs left chunks to fetch");
    let mut last = get_into(addr, "movie.bin", &out, &[]);
    let line = last.wait_stdout_contains(DOWNLOAD, "movie.bin: downloading");
    assert!(line.contains(&format!("resumed: {held} of {chunks} chunks")), "{line}");
    last.wait_done(DOWNLOAD, "movie.bin");
    assert_eq!(last.finish(DOWNLOAD).status.code(), Some(0));
    assert_same_file(&src, &out.join("movie.bin"));
    assert_eq!(dir_names(&out), ["movie.bin"]);

    // The seeder's status after the last run: what it sent in all.
    let before = seeder.stdout_lines().len();
    wait_until(DOWNLOAD, "a seeder status line after the last get", || seeder.stdout_lines().len() > before);
    let sent = last_seeder_status(&seeder.stdout_lines()).expect("a status line").sent;
    let copies = sent as f64 / size as f64;
    let refetched = sent.saturating_sub(size as u64);
    println!("crash loop: {held} of {chunks} chunks kept by 20 killed runs; seeder sent {sent} bytes = {copies:.3} copies; re-fetched {refetched} bytes");
    assert!(copies < 1.3, "the seeder sent {copies:.2} copies over 21 runs");
}

/// A leecher killed at about half, restarted: it offers the chunks it
/// verified at start at once, and another leecher fetches some of them while
/// the restarted one is still far from finishing (held back by --down-limit).
#[test]
fn a_restarted_leecher_serves_its_verified_chunks_before_it_finishes() {
    let tmp = TempDir::new("swarm-resume");
    let src = random_file(&tmp.sub("src"), "movie.bin", 8 * MIB + 5, 21);
    let swarm = share(&src, &["--up-limit", "2M"]);
    let addr = swarm.addr;
    let (dir_a, dir_b) = (tmp.sub("a"), tmp.sub("b"));
    let union = ChunkUnion::new(&src, CHUNK);
    let half = union.chunks() / 2;

    let mut a = get_into(addr, "movie.bin", &dir_a, &[]);
    wait_until(DOWNLOAD, "leecher a at half", || union.held_in(&dir_a, "movie.bin") >= half);
    a.kill();
    let held = union.held_in(&dir_a, "movie.bin");
    assert!(held < union.chunks(), "killed before it finished");

    let mut a2 = get_into(addr, "movie.bin", &dir_a, &["--down-limit", "4K", "--seed-ratio", "5"]);
    a2.wait_stdout_contains(DOWNLOAD, &format!("resumed: {held} of"));
    let mut b = get_into(addr, "movie.bin", &dir_b, &[]);
    let done = b.wait_done(DOWNLOAD, "movie.bin");
    assert!(done.from_leechers > 0, "b fetched from the restarted leecher: {done:?}");
    assert!(a2.done_line("movie.bin").is_none(), "the restarted leecher has not finished");
    assert!(union.held_in(&dir_a, "movie.bin") < union.chunks(), "and holds less than the whole file");
    assert_eq!(b.finish(DOWNLOAD).status.code(), Some(0));
    assert_same_file(&src, &dir_b.join("movie.bin"));
}

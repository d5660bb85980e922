//! Downloads that never lose or clobber data (issue 10): one writer per file,
//! nothing of the user's touched, any name up to 255 bytes, resume after
//! Ctrl-C, SIGTERM or kill -9, space reserved before any byte is fetched.

mod common;

use std::path::Path;
use std::process::Output;

use common::fake::FakeTracker;
use common::*;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MAX_CHUNK};

const MIB: usize = 1024 * 1024;

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn a_second_get_of_the_same_file_refuses_or_waits_and_never_writes() {
    let tmp = TempDir::new("two-gets");
    let src = random_file(&tmp.sub("src"), "movie.bin", 4 * MIB + 7, 10);
    let swarm = share(&src, &["--up-limit", "1M"]);
    let addr = swarm.addr;
    let out = tmp.sub("out");
    let mut first = get_into(addr, "movie.bin", &out, &[]);
    first.wait_stdout_contains(DOWNLOAD, "movie.bin: downloading");

    let second = get_into(addr, "movie.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(code(&second), Some(1), "the second get fails:\n{}", text(&second.stderr));
    let err = text(&second.stderr);
    assert!(err.contains(&format!("process {}", first.pid())), "names the writer: {err}");
    assert!(err.contains("--wait"), "{err}");

    // Asked to wait, it waits for the first, then finds the file complete.
    let mut waiter = get_into(addr, "movie.bin", &out, &["--wait"]);
    waiter.wait_stdout_contains(DOWNLOAD, "movie.bin: waiting");
    first.wait_done(DOWNLOAD, "movie.bin");
    let waited = waiter.finish(DOWNLOAD);
    assert_success(&waited, "the waiting get");
    assert!(text(&waited.stdout).contains("movie.bin: already complete"), "{}", text(&waited.stdout));
    assert_eq!(first.finish(DOWNLOAD).status.code(), Some(0));
    assert_same_file(&src, &out.join("movie.bin"));
    assert_eq!(dir_names(&out), ["movie.bin"], "no scratch file is left behind");
}

/// A get waiting for another takes over its scratch file when that one is
/// stopped, and resumes from it: the two never write at once.
#[test]
fn a_waiting_get_takes_over_when_the_writer_stops() {
    let tmp = TempDir::new("take-over");
    let src = random_file(&tmp.sub("src"), "movie.bin", 4 * MIB + 9, 15);
    let swarm = share(&src, &["--up-limit", "1M"]);
    let addr = swarm.addr;
    let out = tmp.sub("out");
    let union = ChunkUnion::new(&src, CHUNK);
    let first = get_into(addr, "movie.bin", &out, &[]);
    wait_until(DOWNLOAD, "a few chunks on disk", || union.held_in(&out, "movie.bin") >= 4);
    let mut waiter = get_into(addr, "movie.bin", &out, &["--wait"]);
    waiter.wait_stdout_contains(DOWNLOAD, &format!("waiting: process {}", first.pid()));
    first.signal("INT");
    assert_eq!(first.finish(DOWNLOAD).status.code(), Some(130));
    let line = waiter.wait_stdout_contains(DOWNLOAD, "movie.bin: downloading");
    assert!(line.contains("resumed: "), "the waiter resumed the stopped download: {line}");
    assert_success(&waiter.finish(DOWNLOAD), "the waiting get");
    assert_same_file(&src, &out.join("movie.bin"));
}

#[test]
fn the_users_files_are_never_overwritten_or_deleted() {
    let tmp = TempDir::new("user-files");
    let src = random_file(&tmp.sub("src"), "movie", 2 * MIB + 3, 11);
    let swarm = share(&src, &[]);
    let addr = swarm.addr;
    let out = tmp.sub("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("movie.part"), b"the user's own notes").unwrap();

    let done = get_into(addr, "movie", &out, &[]).finish(DOWNLOAD);
    assert_success(&done, "first get");
    assert_same_file(&src, &out.join("movie"));
    assert_eq!(std::fs::read(out.join("movie.part")).unwrap(), b"the user's own notes");

    // The same content again: nothing to do.
    let again = get_into(addr, "movie", &out, &[]).finish(DOWNLOAD);
    assert_success(&again, "get of a complete file");
    assert!(text(&again.stdout).contains("movie: already complete"), "{}", text(&again.stdout));

    // Other content under the name: refused, untouched, unless --overwrite.
    std::fs::write(out.join("movie"), b"something else").unwrap();
    let refused = get_into(addr, "movie", &out, &[]).finish(DOWNLOAD);
    assert_eq!(code(&refused), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("--overwrite"), "{}", text(&refused.stderr));
    assert_eq!(std::fs::read(out.join("movie")).unwrap(), b"something else");
    let replaced = get_into(addr, "movie", &out, &["--overwrite"]).finish(DOWNLOAD);
    assert_success(&replaced, "get --overwrite");
    assert_same_file(&src, &out.join("movie"));
    assert_eq!(dir_names(&out), ["movie", "movie.part"]);
}

#[test]
fn a_name_of_255_bytes_downloads() {
    let tmp = TempDir::new("long-name");
    let name = format!("{}.bin", "n".repeat(251));
    assert_eq!(name.len(), 255);
    let src = random_file(&tmp.sub("src"), &name, MIB + 5, 12);
    let swarm = share(&src, &[]);
    let addr = swarm.addr;
    let out = tmp.sub("out");
    let done = get_into(addr, &name, &out, &[]).finish(DOWNLOAD);
    assert_success(&done, "get of a 255-byte name");
    assert_same_file(&src, &out.join(&name));
}

/// Ctrl-C, then SIGTERM: each says "stopped" to the tracker, keeps the
/// scratch file, says how to resume and exits 130 / 143; the next get
/// verifies what is there and fetches only the rest.
#[test]
fn interrupted_downloads_resume_where_they_stopped() {
    let tmp = TempDir::new("resume");
    let size = 6 * MIB + 11;
    let src = random_file(&tmp.sub("src"), "movie.bin", size, 13);
    let id = file_meta(&src, CHUNK).content_id();
    let swarm = share(&src, &["--up-limit", "2M"]);
    let addr = swarm.addr;
    let out = tmp.sub("out");
    let union = ChunkUnion::new(&src, CHUNK);

    for (sig, status) in [("INT", 130), ("TERM", 143)] {
        let held_before = union.held_in(&out, "movie.bin");
        let leecher = get_into(addr, "movie.bin", &out, &[]);
        wait_until(DOWNLOAD, "a few more chunks on disk", || union.held_in(&out, "movie.bin") >= held_before + 8);
        wait_until(DOWNLOAD, "the leecher in the swarm", || leechers(addr, id) == 1);
        leecher.signal(sig);
        let stopped = leecher.finish(DOWNLOAD);
        assert_eq!(code(&stopped), Some(status), "SIG{sig}:\n{}", text(&stopped.stderr));
        let err = text(&stopped.stderr);
        assert!(err.contains(&format!("stopped by SIG{sig}")) && err.contains("the same get resumes it"), "{err}");
        assert_eq!(leechers(addr, id), 0, "the leecher told the tracker it stopped");
        assert!(scratch_file(&out, &src, CHUNK).exists(), "the scratch file is kept");
    }

    let kept = union.held_in(&out, "movie.bin");
    let mut last = get_into(addr, "movie.bin", &out, &[]);
    let line = last.wait_stdout_contains(DOWNLOAD, "movie.bin: downloading");
    let chunks = size.div_ceil(CHUNK as usize);
    assert!(line.contains(&format!("resumed: {kept} of {chunks} chunks")), "{line}");
    let done = last.wait_done(DOWNLOAD, "movie.bin");
    let fetched = done.from_seeders + done.from_leechers;
    let missing = ((chunks - kept) * CHUNK as usize) as u64;
    assert!(fetched <= missing + CHUNK as u64, "fetched {fetched} for {} missing chunks", chunks - kept);
    assert_eq!(last.finish(DOWNLOAD).status.code(), Some(0));
    assert_same_file(&src, &out.join("movie.bin"));
    assert_eq!(dir_names(&out), ["movie.bin"]);
}

/// Leechers of `id` the tracker knows, asked without joining.
fn leechers(tracker: std::net::SocketAddr, id: Hash20) -> u32 {
    let mut c = UdpClient::connect(tracker);
    match c.announce(id, 1, lmk::wire::udp::Event::None, 0) {
        lmk::wire::udp::Response::Announce { leechers, .. } => leechers,
        other => panic!("tracker answered an announce with {other:?}"),
    }
}

#[test]
fn metadata_larger_than_the_free_space_is_refused_before_any_byte() {
    let tmp = TempDir::new("huge");
    // 838,809 chunks of 16 MiB: 12.8 TiB.
    let chunks = 838_809u64;
    let hashes = vec![Hash20::of(b"x"); chunks as usize];
    let meta = FileMeta::new("huge.bin".into(), chunks * u64::from(MAX_CHUNK), MAX_CHUNK, hashes).unwrap();
    let fake = FakeTracker::start(meta);
    let out = tmp.sub("out");
    let refused = get_into(fake.addr, "huge.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(code(&refused), Some(1), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(err.contains("not enough disk space") && err.contains("12.8 TiB"), "{err}");
    assert_eq!(dir_names(&out), Vec::<String>::new(), "nothing left behind");
}

/// A small tmpfs (root only): the space is reserved at start, so a file
/// larger than it fails at once with the size needed, before any byte.
#[test]
fn a_full_disk_is_found_at_start() {
    let tmp = TempDir::new("tmpfs");
    let Some(small) = Tmpfs::mount(&tmp.sub("small"), "4m") else {
        println!("SKIP a_full_disk_is_found_at_start: mounting a tmpfs needs root");
        return;
    };
    let src = random_file(&tmp.sub("src"), "big.bin", 6 * MIB, 14);
    let Shared { addr, seeder, tracker: _tracker } = share(&src, &["--status", "0.2"]);
    let refused = get_into(addr, "big.bin", &small.0, &[]).finish(DOWNLOAD);
    assert_eq!(code(&refused), Some(1), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(err.contains("not enough disk space") && err.contains("6.0 MiB"), "{err}");
    assert_eq!(dir_names(&small.0), Vec::<String>::new(), "nothing left behind");
    let sent = last_seeder_status(&seeder.stdout_lines()).map_or(0, |s| s.sent);
    assert_eq!(sent, 0, "no byte was fetched");
}

/// A tmpfs mounted for one test, unmounted by its guard.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str()?])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

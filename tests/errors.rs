//! Errors that name their cause (issue 17, point 5): a seeder whose tracker
//! does not answer says so within 10 s and in its status line, and
//! publishes as soon as the tracker comes up; a loopback-only listener with
//! a tracker elsewhere is warned about; a `get` of a name not yet in the
//! catalog waits for it, saying so; a download that gives up names the
//! peers it could not reach, and why.

mod common;

use std::time::Duration;

use common::fake::dead_addr;
use common::*;

/// The warning comes after 10 s of silence; this bounds the wait for it.
const WARNING: Duration = Duration::from_secs(20);

#[test]
fn a_seeder_warns_of_a_silent_tracker_and_publishes_as_soon_as_it_answers() {
    let tmp = TempDir::new("silent");
    let src = random_file(&tmp.sub("src"), "early.bin", 50_000, 1);
    let dead = dead_addr();
    let addr = dead.addr();
    let (mut seeder, _) = start_seeder(addr, &["--status", "1"], &[&src]);
    seeder.wait_stderr(WARNING, &format!("the tracker {addr} has not answered for 10.0s since the start"));
    seeder.wait_stdout_contains(WARNING, "| tracker SILENT ");
    // The tracker comes up on that address: the seeder publishes within a few
    // seconds (its announce retries are at most 4 s apart), not after its
    // catalog backoff (30 s by now).
    let (_tracker, _) =
        start_tracker_on(&dead.release().to_string(), INTERVAL, EXPIRY).expect("the released port is free");
    wait_until(Duration::from_secs(15), "early.bin listed", || list(addr).iter().any(|e| e.name == "early.bin"));
    seeder.wait_stderr(WARNING, &format!("the tracker {addr} answers again"));
    seeder.wait_stdout_contains(WARNING, "| tracker ok");
}

#[test]
fn loopback_listener_with_a_tracker_elsewhere_is_warned_about() {
    let tmp = TempDir::new("loopback");
    let src = random_file(&tmp.sub("src"), "f.bin", 1000, 2);
    // 0.0.0.0 is not a loopback address (Linux delivers it locally, so nothing leaves the host).
    let dead = dead_addr();
    let tracker = format!("0.0.0.0:{}", dead.addr().port());
    let args: Vec<String> = ["--tracker", &tracker, "--listen", "127.0.0.1:0", "--status", "0", src.to_str().unwrap()]
        .map(String::from)
        .into();
    let mut seeder = Proc::spawn("seeder-loopback", SEEDER, &args);
    seeder.wait_listening();
    seeder.wait_stderr(Duration::from_secs(10), "LISTENING ON LOOPBACK ONLY (127.0.0.1:");
}

#[test]
fn get_waits_for_a_name_not_yet_published() {
    let tmp = TempDir::new("late");
    let src = random_file(&tmp.sub("src"), "late.bin", 70_000, 3);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    // A name never published: no output directory is created for it.
    let newdir = tmp.path().join("newdir");
    let none = run_leecher(addr, &["get", "nosuch", "--out", newdir.to_str().unwrap(), "--timeout", "1"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none.stderr));
    assert!(
        text(&none.stderr).contains("nosuch: tracker: no such file in the catalog (waited 1.0s)"),
        "{}",
        text(&none.stderr)
    );
    assert!(!newdir.exists(), "get nosuch --out newdir created newdir");
    let out = tmp.sub("out");
    let mut leecher = get_into(addr, "late.bin", &out, &[]);
    let line = leecher.wait_stdout_contains(DOWNLOAD, "late.bin: waiting: not in the catalog yet");
    assert!(line.contains("--timeout"), "{line}");
    let _seeder = start_seeder(addr, &[], &[&src]);
    leecher.wait_done(DOWNLOAD, "late.bin");
    assert_eq!(leecher.finish(DOWNLOAD).status.code(), Some(0));
    assert_same_file(&src, &out.join("late.bin"));
}

#[test]
fn a_download_that_gives_up_names_the_peers_it_could_not_reach() {
    let tmp = TempDir::new("unreached");
    let src = random_file(&tmp.sub("src"), "gone.bin", 70_000, 4);
    let (_tracker, addr) = start_tracker(INTERVAL, 30);
    let (mut seeder, seeder_addr) = start_seeder(addr, &[], &[&src]);
    wait_listed(addr, "gone.bin", 1);
    seeder.kill(); // no goodbye: the tracker still lists it for its expiry (30 s)
    let out = tmp.sub("out");
    let got = run_leecher(addr, &["get", "gone.bin", "--out", out.to_str().unwrap(), "--timeout", "3"]);
    let stderr = text(&got.stderr);
    assert_eq!(got.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("lmk-leecher: gone.bin: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("no chunk verified within 3s"), "{line}");
    assert!(line.contains(&format!("could not reach 127.0.0.1:{} (connection refused)", seeder_addr.port())), "{line}");
}

/// A port in use is reported before any file is hashed (it used to come
/// minutes late on big files); skipped subdirectories are mentioned.
#[test]
fn a_seeder_binds_before_hashing_and_mentions_skipped_subdirectories() {
    let tmp = TempDir::new("bindfirst");
    let share = tmp.sub("share");
    random_file(&share, "f.bin", 100_000, 5);
    std::fs::create_dir(share.join("sub")).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let dead = dead_addr();
    let tracker = dead.addr().to_string();
    let args = ["--tracker", &tracker, "--listen", &listen, "--status", "0", share.to_str().unwrap()];
    let out = run_bin(SEEDER, &args, Duration::from_secs(10));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot bind {listen}")), "{stderr}");
    assert!(!stderr.contains("hashed in"), "nothing hashed before the bind failed:\n{stderr}");

    let (seeder, _) = start_seeder(dead.addr(), &[], &[&share]);
    seeder.wait_stderr(Duration::from_secs(10), "1 subdirectory skipped: only the files directly in it are shared");
}

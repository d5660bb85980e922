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
    let addr = dead_addr();
    let (mut seeder, _) = start_seeder(addr, &["--status", "1"], &[&src]);
    seeder.wait_stderr(WARNING, &format!("the tracker {addr} has not answered for 10.0s since the start"));
    seeder.wait_stdout_contains(WARNING, "| tracker SILENT ");
    // The tracker comes up on that address: the seeder publishes within a few
    // seconds (its announce retries are at most 4 s apart), not after its
    // catalog backoff (30 s by now).
    let (_tracker, _) = start_tracker_on(&addr.to_string(), INTERVAL, EXPIRY).expect("the released port is free");
    wait_until(Duration::from_secs(15), "early.bin listed", || list(addr).iter().any(|e| e.name == "early.bin"));
    seeder.wait_stderr(WARNING, &format!("the tracker {addr} answers again"));
    seeder.wait_stdout_contains(WARNING, "| tracker ok");
}

#[test]
fn loopback_listener_with_a_tracker_elsewhere_is_warned_about() {
    let tmp = TempDir::new("loopback");
    let src = random_file(&tmp.sub("src"), "f.bin", 1000, 2);
    // 0.0.0.0 is not a loopback address (Linux delivers it locally, so nothing leaves the host).
    let tracker = format!("0.0.0.0:{}", dead_addr().port());
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

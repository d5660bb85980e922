//! A download directory others can write to (issue 16): nothing planted in
//! `DIR/.lmk` makes a get write outside DIR, hang, read without bound, or
//! rename anything but the file whose chunks it checked.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;

const MIB: usize = 1024 * 1024;
/// The uid of `nobody`: a user the test (root) can hand a directory to.
const OTHER_UID: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `DIR/.lmk/<content id>.pid` for `src` shared in test chunks.
fn pid_file(out: &Path, src: &Path) -> std::path::PathBuf {
    scratch_file(out, src, CHUNK).with_extension("pid")
}

/// `out/.lmk` as a get would make it: ours, 0700.
fn scratch_dir(out: &Path) {
    let dir = out.join(".lmk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A get whose address space is capped at 1 GiB, so one that reads without
/// bound fails at once instead of eating the machine.
fn get_capped(tracker: std::net::SocketAddr, name: &str, out: &Path) -> Proc {
    let mut command = Command::new(LEECHER);
    command.args(["--tracker", &tracker.to_string(), "--listen", "127.0.0.1:0", "--seed-ratio", "0"]);
    command.args(["get", name, "--out", out.to_str().unwrap(), "--timeout", "5"]);
    let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_AS, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    Proc::spawn_command("leecher (1 GiB)", command)
}

#[test]
fn a_planted_pid_symlink_is_not_followed() {
    let tmp = TempDir::new("pid-symlink");
    let src = random_file(&tmp.sub("src"), "f.bin", MIB + 5, 1);
    let swarm = share(&src, &[]);
    let out = tmp.sub("out");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    scratch_dir(&out);
    std::os::unix::fs::symlink(&victim, pid_file(&out, &src)).unwrap();
    let got = get_into(swarm.addr, "f.bin", &out, &[]).finish(DOWNLOAD);
    assert_success(&got, "the get");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "a file outside DIR was written through the PID link");
    assert_same_file(&src, &out.join("f.bin"));
    let info = std::fs::metadata(out.join("f.bin")).unwrap();
    // SAFETY: geteuid has no preconditions.
    assert_eq!(info.uid(), unsafe { libc::geteuid() }, "the final file is the user's");
    assert_eq!(info.mode() & 0o022, 0, "the final file is writable by others: {:o}", info.mode());
}

#[test]
fn a_scratch_directory_that_is_a_symlink_is_refused() {
    let tmp = TempDir::new("lmk-symlink");
    let src = random_file(&tmp.sub("src"), "f.bin", MIB + 5, 2);
    let swarm = share(&src, &[]);
    let out = tmp.sub("out");
    let elsewhere = tmp.sub("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, out.join(".lmk")).unwrap();
    let got = get_into(swarm.addr, "f.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(got.status.code(), Some(1), "refused:\n{}", text(&got.stderr));
    assert!(text(&got.stderr).contains(".lmk"), "names the directory: {}", text(&got.stderr));
    assert!(dir_names(&elsewhere).is_empty(), "written outside DIR: {:?}", dir_names(&elsewhere));
    assert!(!out.join("f.bin").exists());
}

#[test]
fn a_scratch_directory_of_another_user_is_refused() {
    if !is_root() {
        println!("SKIP: chown to another user needs root");
        return;
    }
    let tmp = TempDir::new("lmk-owner");
    let src = random_file(&tmp.sub("src"), "f.bin", MIB + 5, 3);
    let swarm = share(&src, &[]);
    let out = tmp.sub("out");
    let lmk = out.join(".lmk");
    std::fs::create_dir_all(&lmk).unwrap();
    std::os::unix::fs::chown(&lmk, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let got = get_into(swarm.addr, "f.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(got.status.code(), Some(1), "refused:\n{}", text(&got.stderr));
    assert!(text(&got.stderr).contains(&format!("owned by uid {OTHER_UID}")), "{}", text(&got.stderr));
    assert!(dir_names(&lmk).is_empty(), "wrote into it: {:?}", dir_names(&lmk));

    // Ours but writable by others: refused as well.
    std::os::unix::fs::chown(&lmk, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&lmk, std::fs::Permissions::from_mode(0o777)).unwrap();
    let got = get_into(swarm.addr, "f.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(got.status.code(), Some(1), "refused:\n{}", text(&got.stderr));
    assert!(text(&got.stderr).contains("writable by others"), "{}", text(&got.stderr));
}

/// The scratch file is swapped for one of the same size mid-download: the
/// get must not rename the impostor to `DIR/NAME` and call it done.
#[test]
fn a_swapped_scratch_file_is_never_renamed_to_the_name() {
    let tmp = TempDir::new("swap");
    let src = random_file(&tmp.sub("src"), "f.bin", 2 * MIB + 5, 4);
    let swarm = share(&src, &["--up-limit", "1M"]);
    let out = tmp.sub("out");
    let scratch = scratch_file(&out, &src, CHUNK);
    let mut get = get_into(swarm.addr, "f.bin", &out, &[]);
    get.wait_stdout_contains(DOWNLOAD, "f.bin: downloading");
    wait_until(DOWNLOAD, "the scratch file", || scratch.exists());
    std::fs::rename(&scratch, out.join("stolen")).unwrap();
    let forged = vec![0x66u8; 2 * MIB + 5];
    std::fs::write(&scratch, &forged).unwrap();
    let got = get.finish(DOWNLOAD);
    assert_eq!(got.status.code(), Some(1), "the swap is found:\n{}\n{}", text(&got.stdout), text(&got.stderr));
    assert!(!text(&got.stdout).contains("f.bin: done"), "{}", text(&got.stdout));
    assert!(text(&got.stderr).contains("replaced"), "says why: {}", text(&got.stderr));
    if let Ok(data) = std::fs::read(out.join("f.bin")) {
        assert_ne!(data, forged, "the impostor became the final file");
    }
}

#[test]
fn a_fifo_as_the_pid_file_neither_hangs_the_writer_nor_the_second_get() {
    let tmp = TempDir::new("pid-fifo");
    let src = random_file(&tmp.sub("src"), "f.bin", 2 * MIB + 5, 5);
    let swarm = share(&src, &["--up-limit", "1M"]);
    let out = tmp.sub("out");
    scratch_dir(&out);
    let pid = pid_file(&out, &src);
    mkfifo(&pid);
    let mut first = get_into(swarm.addr, "f.bin", &out, &[]);
    first.wait_stdout_contains(DOWNLOAD, "f.bin: downloading");

    // The writer replaced it with its own PID file; plant the FIFO again for the second get.
    std::fs::remove_file(&pid).unwrap();
    mkfifo(&pid);
    let second = get_into(swarm.addr, "f.bin", &out, &[]).finish(DOWNLOAD);
    assert_eq!(second.status.code(), Some(1), "the second get is refused:\n{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("another process"), "{}", text(&second.stderr));
    first.wait_done(DOWNLOAD, "f.bin");
    assert_success(&first.finish(DOWNLOAD), "the first get");
    assert_same_file(&src, &out.join("f.bin"));
}

#[test]
fn dev_zero_as_the_pid_file_is_not_read() {
    let tmp = TempDir::new("pid-zero");
    let src = random_file(&tmp.sub("src"), "f.bin", 2 * MIB + 5, 6);
    let swarm = share(&src, &["--up-limit", "1M"]);
    let out = tmp.sub("out");
    let pid = pid_file(&out, &src);
    let mut first = get_into(swarm.addr, "f.bin", &out, &[]);
    first.wait_stdout_contains(DOWNLOAD, "f.bin: downloading");
    std::fs::remove_file(&pid).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &pid).unwrap();
    let second = get_capped(swarm.addr, "f.bin", &out).finish(DOWNLOAD);
    assert_eq!(second.status.code(), Some(1), "the second get is refused:\n{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("another process"), "{}", text(&second.stderr));
    let peak = children_peak_rss_kib();
    assert!(peak < 64 * 1024, "a child of this test reached {peak} KiB: the PID file was read without bound");
}

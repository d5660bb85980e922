//! What a person at a terminal sees of `lmk-leecher get`: the leecher runs
//! in an 80-column pseudo-terminal (util-linux `script`, present on every
//! Debian as part of bsdutils; SKIP without it), and its screen output is
//! checked line by line: no line wider than 80 columns, no log line printed
//! into a bar, no panic when the download stalls for more than 30 s. And
//! what Ctrl-C does once every file is complete.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use unicode_width::UnicodeWidthStr;

const COLUMNS: usize = 80;

/// `script` runs a command in a pseudo-terminal; None (and SKIP) without it.
fn have_script() -> bool {
    let ok = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: no `script` (util-linux) for a pseudo-terminal");
    }
    ok
}

/// Starts `lmk-leecher ARGS` in an 80x24 pseudo-terminal; its screen output
/// (stdout and stderr, as a terminal shows them) is the Proc's stdout.
fn leecher_in_pty(tracker: std::net::SocketAddr, args: &[&str]) -> Proc {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = format!("stty cols {COLUMNS} rows 24; exec {} --tracker {tracker}", quote(LEECHER));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut command = Command::new("script");
    command.args(["-qfec", &line, "/dev/null"]);
    Proc::spawn_command("leecher-pty", command)
}

/// What a terminal shows as separate lines: the output cut at every `\r` and
/// `\n` (each redraw starts at column 0), with escape sequences removed.
fn screen_lines(output: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for raw in output {
        for part in raw.split(['\r', '\n']) {
            lines.push(strip_escapes(part));
        }
    }
    lines
}

/// `s` without its CSI (`ESC [ ... letter`) and other two-byte escape sequences.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// A log line's start: `2026-12-05T08:45:36.229606605Z [INFO] `.
fn is_log_line(line: &str) -> bool {
    line.len() > 31 && line.as_bytes()[4] == b'-' && line.contains("Z [")
}

/// A bar line (download or seeding), redrawn in place.
fn is_bar(line: &str) -> bool {
    (line.contains("] ") && line.contains("% ")) || line.contains(" seeding (Ctrl-C stops)")
}

/// Every bar fits in 80 columns (a line printed once may wrap; a bar that
/// wraps leaves a new line at every redraw); a log line always starts a
/// line of its own and never shares it with a bar. Returns the bar lines.
fn check_screen(lines: &[String]) -> Vec<String> {
    for l in lines {
        assert!(!l.contains("panicked"), "a panic on screen:\n{l}");
        if let Some(at) = l.find("Z [") {
            assert!(is_log_line(l) && at < 31, "a log line torn into another line:\n{l:?}");
            assert!(!is_bar(l), "a log line and a bar on one line:\n{l:?}");
        } else if is_bar(l) {
            assert!(l.width() <= COLUMNS, "a bar of {} columns:\n{l}", l.width());
        }
    }
    lines.iter().filter(|l| is_bar(l) && !is_log_line(l)).cloned().collect()
}

/// A long East Asian name, two files one after the other (the first seeds
/// while the second downloads: two bars), debug logs while the bars are
/// drawn, and a stall of 32 s (the seeder stopped with SIGSTOP) in the middle.
#[test]
fn bars_fit_80_columns_survive_a_stall_and_logs_do_not_tear_them() {
    if !have_script() {
        return;
    }
    let tmp = TempDir::new("pty");
    let src = tmp.sub("src");
    let long = "東京の地図データ-a-rather-long-file-name-that-would-not-fit.bin";
    let a = random_file(&src, long, 3 << 20, 1);
    let b = random_file(&src, "second.bin", 1 << 20, 2);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let chunk = "65536";
    let (seeder, _) = start_seeder(addr, &["--chunk-size", chunk], &[&a, &b]);
    wait_listed(addr, long, 1);
    wait_listed(addr, "second.bin", 1);
    let out = tmp.sub("out");
    let out_arg = out.to_str().unwrap();
    let args = [
        "get",
        long,
        "second.bin",
        "--out",
        out_arg,
        "--listen",
        "127.0.0.1:0",
        "--down-limit",
        "512K",
        "--timeout",
        "60",
        "--seed-ratio",
        "0",
        "-v",
    ];
    let mut leecher = leecher_in_pty(addr, &args);
    // Once the bar shows some progress, stop the seeder for more than 30 s.
    leecher.wait_stdout(DOWNLOAD, "a bar past 10%", |l| {
        screen_lines(&[l.to_string()]).iter().any(|s| s.contains("% ") && !s.contains("   0% ")).then_some(())
    });
    seeder.signal("STOP");
    std::thread::sleep(Duration::from_secs(32)); // the stall itself, not a wait for a condition
    let stalled = screen_lines(&leecher.stdout_lines());
    seeder.signal("CONT");
    let status = leecher.wait_exit(DOWNLOAD);
    let lines = screen_lines(&leecher.stdout_lines());
    let bars = check_screen(&lines);
    assert!(status.success(), "leecher exit {status}:\n{}", lines.join("\n"));
    assert_same_file(&a, &out.join(long));
    assert_same_file(&b, &out.join("second.bin"));
    assert!(!bars.is_empty(), "bars were drawn:\n{}", lines.join("\n"));
    assert!(
        stalled.iter().rev().take(20).any(|l| l.contains("ETA ?")),
        "a stalled download shows ETA ?:\n{}",
        stalled.join("\n")
    );
    assert!(lines.iter().any(|l| is_log_line(l) && l.contains("[DEBUG]")), "debug logs were printed");
    assert!(lines.iter().any(|l| l.starts_with("second.bin: done, ")), "{}", lines.join("\n"));
}

/// Ctrl-C while every file is complete and only seeding: exit 0, and the
/// leecher says the files are complete; the summary counts no seeding time.
#[test]
fn ctrl_c_while_only_seeding_exits_0() {
    let tmp = TempDir::new("seedstop");
    let src = random_file(&tmp.sub("src"), "f.bin", 300_000, 3);
    let shared = share(&src, &["--chunk-size", "65536"]);
    let out = tmp.sub("out");
    let mut leecher =
        get_into(shared.addr, "f.bin", &out, &["--seed-ratio", "5", "--seed-time", "1h", "--seed-idle", "1h"]);
    leecher.wait_done(DOWNLOAD, "f.bin");
    let seeding = leecher.wait_stdout_contains(DOWNLOAD, "f.bin: seeding");
    assert!(seeding.contains("Ctrl-C"), "the seeding line says how to stop: {seeding}");
    leecher.signal("INT");
    let out_text = leecher.finish(DOWNLOAD);
    let stdout = text(&out_text.stdout);
    assert_eq!(out_text.status.code(), Some(0), "{stdout}\n{}", text(&out_text.stderr));
    assert!(stdout.contains("stopped seeding: 1 file complete"), "{stdout}");
    assert!(!text(&out_text.stderr).contains("error"), "{}", text(&out_text.stderr));
    assert_same_file(&src, &out.join("f.bin"));
}

/// On a terminal the seeder's status line is redrawn in place: many draws,
/// one line of the screen (no new line per status).
#[test]
fn the_seeder_status_is_redrawn_in_place() {
    if !have_script() {
        return;
    }
    let tmp = TempDir::new("pty-seeder");
    let src = random_file(&tmp.sub("src"), "s.bin", 1000, 6);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    // Stopped by SIGINT after 2 s (20 status periods); it then prints its last status to stay.
    let line = format!(
        "stty cols {COLUMNS} rows 24; exec timeout -s INT 2 {} --tracker {addr} --listen 127.0.0.1:0 --status 0.1 {}",
        quote(SEEDER),
        quote(src.to_str().unwrap())
    );
    let mut command = Command::new("script");
    command.args(["-qfec", &line, "/dev/null"]);
    let out = Proc::spawn_command("seeder-pty", command).finish(Duration::from_secs(20));
    let raw = text(&out.stdout);
    let draws = raw.matches("seeder: 1 file |").count();
    let lines = screen_lines(&raw.lines().map(String::from).collect::<Vec<_>>());
    let kept = raw.lines().filter(|l| l.contains("seeder: 1 file |")).count();
    assert!(draws >= 5, "drawn again and again: {draws}\n{raw}");
    assert!(kept <= 3, "redrawn in place, not a new line each time: {kept} lines\n{lines:#?}");
}

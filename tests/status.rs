//! Status output away from a terminal (issue 17, point 7): the seeder's
//! line and the tracker's table are printed only when they changed, each
//! line behind a UTC timestamp, with rates per second beside the counters.

mod common;

use std::time::Duration;

use common::*;

/// `2026-12-05T09:26:02Z `.
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 21 && b[4] == b'-' && b[10] == b'T' && &line[19..21] == "Z "
}

#[test]
fn status_is_printed_on_change_with_timestamps_and_rates() {
    let tmp = TempDir::new("status");
    let src = random_file(&tmp.sub("src"), "s.bin", 200_000, 5);
    let (tracker, addr) = start_tracker_with(INTERVAL, EXPIRY, &["--status", "0.1"]);
    let (seeder, _) = start_seeder(addr, &["--status", "0.1"], &[&src]);
    wait_listed(addr, "s.bin", 1);
    // Ten status periods and more with nothing happening (a span, not a wait for a condition).
    std::thread::sleep(Duration::from_millis(1500));
    let quiet = seeder.stdout_lines();
    let statuses: Vec<&String> = quiet.iter().filter(|l| l.contains("seeder: ")).collect();
    assert!(!statuses.is_empty() && statuses.len() <= 2, "an idle seeder prints no repeats:\n{quiet:#?}");
    assert!(statuses.iter().all(|l| stamped(l) && l.contains("| up ")), "{statuses:#?}");

    let out = tmp.sub("out");
    let got = run_leecher(addr, &["get", "s.bin", "--out", out.to_str().unwrap()]);
    assert_success(&got, "get");
    wait_until(DOWNLOAD, "a seeder status line with the bytes sent", || {
        last_seeder_status(&seeder.stdout_lines()).is_some_and(|s| s.sent >= 190_000)
        // 195.3 KiB as printed
    });

    let lines = tracker.stdout_lines();
    let tables: Vec<&String> = lines.iter().filter(|l| l.contains("Z tracker: ")).collect();
    let rates: Vec<&String> = lines.iter().filter(|l| l.contains("per second: udp ")).collect();
    assert!(!tables.is_empty() && tables.len() == rates.len(), "each table has its rates:\n{lines:#?}");
    assert!(lines.iter().skip(1).all(|l| stamped(l)), "every line behind a timestamp:\n{lines:#?}");
    // At most one table per status period that saw a change; far fewer than one per period overall.
    assert!(tables.len() < 40, "{} tables", tables.len());
}

//! Happy paths with real binaries: one tracker, several seeders, leechers
//! downloading byte-exact copies.

mod common;

use common::*;

const MIB: usize = 1024 * 1024;

#[test]
fn three_seeders_one_leecher() {
    let tmp = TempDir::new("three");
    let src = random_file(&tmp.sub("src"), "movie.bin", 8 * MIB + 12345, 1);
    let want_id = file_meta(&src, CHUNK).content_id();
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let _seeders: Vec<_> = (0..3).map(|_| start_seeder(addr, &[], &[&src])).collect();
    let entry = wait_listed(addr, "movie.bin", 3);
    assert_eq!(entry.id, want_id, "the tracker's content id is the one computed from the file");
    assert_eq!(entry.size, (8 * MIB + 12345) as u64);
    assert_eq!(entry.chunk_size, CHUNK);

    // The leecher's own `list` shows the file, its seeders and the full id.
    let listing = run_leecher(addr, &["list"]);
    assert_success(&listing, "leecher list");
    let row = text(&listing.stdout).lines().find(|l| l.starts_with("movie.bin")).map(str::to_string);
    let row = row.unwrap_or_else(|| panic!("list has no movie.bin row:\n{}", text(&listing.stdout)));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.last(), Some(&want_id.to_hex().as_str()), "row {row:?} ends with the 40-hex content id");
    assert!(cols.contains(&"3"), "row {row:?} shows 3 seeders");

    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "movie.bin", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    assert_success(&out, "leecher get");
    assert_same_file(&src, &out_dir.join("movie.bin"));
    assert_eq!(dir_names(&out_dir), ["movie.bin"], "no .part file is left behind");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("movie.bin: done"), "stdout mentions the finished file:\n{stdout}");
}

#[test]
fn one_slot_seeders_two_leechers_at_once() {
    let tmp = TempDir::new("slots");
    let src = random_file(&tmp.sub("src"), "shared.bin", 6 * MIB + 1, 2);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let _seeders: Vec<_> = (0..3).map(|_| start_seeder(addr, &["--slots", "1"], &[&src])).collect();
    wait_listed(addr, "shared.bin", 3);

    // Both leechers run at the same time and compete for the 3 slots: some of
    // their connections are answered Unavailable and must be retried.
    let dirs = [tmp.sub("out-a"), tmp.sub("out-b")];
    let leechers: Vec<Proc> = dirs
        .iter()
        .map(|d| spawn_leecher(addr, &["get", "shared.bin", "--out", d.to_str().unwrap(), "--timeout", "20"]))
        .collect();
    for (leecher, dir) in leechers.into_iter().zip(&dirs) {
        let name = leecher.name.clone();
        let out = leecher.finish(DOWNLOAD);
        assert_success(&out, &name);
        assert_same_file(&src, &dir.join("shared.bin"));
    }
}

#[test]
fn multiple_files_in_one_get() {
    let tmp = TempDir::new("multi");
    let share = tmp.sub("share");
    let sizes = [("a", 3 * MIB + 7), ("b", 1), ("c", MIB)];
    for (i, (name, size)) in sizes.iter().enumerate() {
        random_file(&share, name, *size, 10 + i as u64);
    }
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let _seeder = start_seeder(addr, &["--slots", "2"], &[&share]);
    for (name, _) in sizes {
        wait_listed(addr, name, 1);
    }

    let out_dir = tmp.sub("out");
    let out = run_leecher(addr, &["get", "a", "b", "c", "--out", out_dir.to_str().unwrap(), "--timeout", "20"]);
    assert_success(&out, "leecher get a b c");
    for (name, _) in sizes {
        assert_same_file(&share.join(name), &out_dir.join(name));
    }
    assert_eq!(dir_names(&out_dir), ["a", "b", "c"]);
}

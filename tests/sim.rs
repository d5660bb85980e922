//! lmk-sim, the real cores on a simulated network: a small swarm finishes,
//! every chunk is checked, a run replays byte for byte, no run beats the
//! fluid bound, and liars are caught.

use std::process::Command;

/// Runs lmk-sim with `args` and `--no-wall`; its stdout.
fn sim(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lmk-sim")).args(args).arg("--no-wall").output().expect("lmk-sim runs");
    assert!(out.status.success(), "lmk-sim {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A number field of the JSON line.
fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = json.find(&key).unwrap_or_else(|| panic!("{name} in {json}")) + key.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().unwrap_or_else(|_| panic!("{name} is a number in {json}"))
}

fn last_line(out: &str) -> &str {
    out.lines().last().expect("a JSON line")
}

#[test]
fn fifty_peers_finish_every_chunk_checked_and_a_run_replays() {
    let args = ["--peers", "50", "--size", "64M", "--seed", "7"];
    let first = sim(&args);
    let json = last_line(&first);
    assert_eq!(field(json, "unfinished"), 0.0, "{first}");
    assert!(field(json, "verified") >= 50.0 * 64.0, "every peer checked every chunk: {json}");
    assert_eq!(field(json, "rejected"), 0.0);
    assert!(field(json, "ratio") >= 1.0, "no run beats the fluid bound: {json}");
    assert!(field(json, "seed_copies") >= 1.0, "the seed sent at least one copy: {json}");
    assert_eq!(field(json, "staying"), 0.0, "with the defaults every finished peer leaves by itself: {json}");
    let idle = lmk::peer::torrent::SEED_IDLE.as_secs_f64();
    assert!(field(json, "stay_max") >= idle - 0.01, "the last to finish, asked by nobody, stays the idle time: {json}");
    assert_eq!(sim(&args), first, "the same scenario and seed replay byte for byte");
    let other = sim(&["--peers", "50", "--size", "64M", "--seed", "8"]);
    assert_ne!(other, first, "another seed is another run");
}

#[test]
fn mixed_uplinks_churn_and_liars() {
    let out = sim(&[
        "--peers",
        "40",
        "--size",
        "32M",
        "--classes",
        "25%:40M,50%:20M,25%:5M",
        "--leave-after-done",
        "20%",
        "--crash",
        "10%",
    ]);
    let json = last_line(&out);
    assert_eq!(field(json, "unfinished"), 0.0, "every surviving peer finishes: {out}");
    assert!(field(json, "ratio") >= 1.0, "{json}");
    let out = sim(&["--peers", "30", "--size", "16M", "--poisoners", "10%"]);
    assert!(field(last_line(&out), "rejected") > 0.0, "the liars' chunks fail their check: {out}");
    assert_eq!(field(last_line(&out), "unfinished"), 0.0, "every honest peer finishes beside liars: {out}");
    let out = sim(&["--peers", "30", "--size", "16M", "--rejecters", "10%", "--non-readers", "10%"]);
    assert!(out.contains("3 rejecters, 3 non-readers"), "{out}");
    assert_eq!(field(last_line(&out), "unfinished"), 0.0, "every honest peer finishes beside them: {out}");
}

/// A chunk that takes longer on the link than the core's `SLOT_IDLE` (5 s)
/// is an honest transfer: its sender's core hears the bytes leave while it
/// is sent, as in the daemons. Told only once a whole chunk had left, the
/// seed took every slot back after 5 s (here one 2 MiB chunk takes 8 s on
/// a 2 MiB/s uplink split 8 ways) and no peer ever got a chunk.
#[test]
fn chunks_slower_than_the_slot_idle_time_still_arrive() {
    let out =
        sim(&["--peers", "8", "--size", "64M", "--chunk-size", "2M", "--classes", "50%:2M,50%:1M", "--seed-up", "2M"]);
    let json = last_line(&out);
    assert_eq!(field(json, "unfinished"), 0.0, "every peer finishes: {out}");
    assert!(field(json, "first_chunk_max") > 5.0, "a first chunk took longer than SLOT_IDLE: {json}");
    assert!(field(json, "ratio") >= 1.0, "{json}");
}

/// A chunk that takes longer than the core's `STALL` (15 s) to arrive is an
/// honest transfer: its receiver's core hears its bytes arrive, as in the
/// daemons. Told only of whole chunks, every downloader dropped its senders
/// as stalled (2 MiB over a 1 MiB/s uplink split 8 ways takes 16 s) and
/// gave up after 30 s with nothing.
#[test]
fn chunks_slower_than_the_stall_time_still_arrive() {
    let out = sim(&["--peers", "16", "--size", "64M", "--chunk-size", "2M", "--up", "1M", "--seed-up", "1M"]);
    let json = last_line(&out);
    assert_eq!(field(json, "unfinished"), 0.0, "every peer finishes: {out}");
    assert!(field(json, "first_chunk_max") > 15.0, "a first chunk took longer than STALL: {json}");
}

#[test]
fn bad_values_are_refused_with_one_line() {
    for args in [
        &["--peers", "-1"][..],
        &["--classes", "50%:5M"],
        &["--latency", "NaN"],
        &["--size", "0"],
        &["--bogus"],
        &["--trace", "x"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lmk-sim")).args(args).output().expect("lmk-sim runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("lmk-sim: error: "), "{args:?}: {err}");
    }
}

/// `--trace seed` follows the seed, `--trace N` downloader N, on stderr.
#[test]
fn the_seed_or_one_downloader_is_traced() {
    let trace = |who: &str| {
        let args = ["--peers", "3", "--size", "1M", "--trace", who];
        let out = Command::new(env!("CARGO_BIN_EXE_lmk-sim")).args(args).output().expect("lmk-sim runs");
        assert!(out.status.success(), "--trace {who}");
        String::from_utf8(out.stderr).expect("UTF-8")
    };
    let seed = trace("seed");
    assert!(seed.lines().any(|l| l.contains("-> peer ") && l.contains(": Chunk ")), "the seed sends chunks:\n{seed}");
    assert!(!seed.contains("<- seed"), "nothing to itself");
    let peer = trace("0");
    assert!(peer.lines().any(|l| l.contains("<- seed: Chunk ")), "downloader 0 gets chunks from the seed:\n{peer}");
}

/// `--hops` follows every chunk: each downloader's first copy of each chunk
/// is counted once, and among 3 downloaders a chunk comes from the seed in
/// 1 to 3 hops.
#[test]
fn hops_follow_every_chunk_from_the_seed() {
    let out = sim(&["--peers", "3", "--size", "1M", "--chunk-size", "64K", "--hops"]);
    let line = out.lines().find(|l| l.starts_with("hops: ") && l.contains("chunks got")).expect("a hops line");
    assert!(line.contains("hops: 48 chunks got;"), "3 downloaders x 16 chunks, first copies only: {line}");
    let most: u32 = line
        .split(" hops (median), ")
        .nth(1)
        .and_then(|r| r.split(" (p90), ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the most hops");
    assert!((1..=3).contains(&most), "at most 3 hops among 3 downloaders: {line}");
    assert!(out.contains("hops: each hop, median / p90: held and not asked "), "{out}");
    assert!(!sim(&["--peers", "3", "--size", "1M"]).contains("hops:"), "only when asked");
}

/// Nobody starves: in a mixed swarm of 300 every peer gets its first chunk
/// within 10 s and finishes (with slots given to the peers furthest behind
/// and no bound on waiting, 25 of them went 30 s without a chunk and gave
/// up), and the seed sends a bounded number of copies.
#[test]
fn in_a_mixed_swarm_nobody_starves_and_the_seed_is_bounded() {
    let out = sim(&["--peers", "300", "--size", "64M", "--classes", "10%:100M,60%:20M,30%:5M"]);
    let json = last_line(&out);
    assert_eq!(field(json, "unfinished"), 0.0, "a peer starved: {out}");
    assert!(field(json, "first_chunk_max") < 10.0, "a peer waited too long for its first chunk: {json}");
    assert!(field(json, "seed_copies") < 3.0, "the seed sent too many copies: {json}");
}

/// A reader that leaves early (`lmk-sim | head -1`) ends the output, not the
/// program with a panic on the broken pipe.
#[test]
fn a_closed_output_is_not_a_crash() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmk-sim"))
        .args(["--peers", "4", "--size", "1M"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lmk-sim runs");
    drop(child.stdout.take()); // nobody reads
    let out = child.wait_with_output().expect("lmk-sim ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}

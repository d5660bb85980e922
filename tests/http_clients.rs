//! The tracker's HTTP face against the programs operators point at it: a
//! real browser (headless Chromium through selenium), `promtool check
//! metrics`, and a real Prometheus scraping the tracker. Each prints SKIP
//! when its Debian package is missing (`.ci/run` installs them).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::{announce_path, get, publish};
use common::*;

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A result line shown in `make test` output: written to stderr directly,
/// past the test harness's capture of `println!`.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn have(path: &str) -> bool {
    Path::new(path).exists()
}

/// This test's output directory, kept after the run (target/tmp/NAME).
fn output_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

#[test]
fn browser_shows_the_catalog_and_runs_no_name() {
    let selenium = Command::new("/usr/bin/python3").args(["-c", "import selenium"]).output();
    if !have("/usr/bin/chromium") || !have("/usr/bin/chromedriver") || !selenium.is_ok_and(|o| o.status.success()) {
        say("browser: SKIP: needs Debian's chromium, chromium-driver and python3-selenium");
        return;
    }
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let id = publish(addr, "big.iso", 5 * 1024 * 1024);
    publish(addr, "notes.txt", 12_345);
    publish(addr, HOSTILE, 1000);
    let out = output_dir("http-browser");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser-check.py");
    let mut child = Command::new("/usr/bin/python3");
    child.arg(&script).arg(format!("http://{addr}")).arg(&out).arg("big");
    child.stdout(Stdio::piped()).stderr(Stdio::piped());
    let proc = Proc::spawn_command("browser", child);
    let result = proc.finish(Duration::from_secs(120));
    let stdout = text(&result.stdout);
    assert!(result.status.success(), "browser-check.py failed:\n{stdout}\n{}", text(&result.stderr));
    eprintln!("browser: {stdout}");
    let names = between(&stdout, "\"names\": [", "]");
    for name in ["big.iso", "notes.txt", HOSTILE] {
        assert!(names.contains(&format!("\"{name}\"")), "{name} not listed as text in {names}");
    }
    assert!(stdout.contains("\"images\": 0,") && stdout.contains("\"alerted\": false,"), "a name ran: {stdout}");
    assert!(stdout.contains("\"refreshed\": true,"), "the script did not refresh the peer count: {stdout}");
    assert!(stdout.contains("\"console_errors\": [],"), "console errors: {stdout}");
    assert_eq!(between(&stdout, "\"filtered\": [", "]"), "\"big.iso\"", "the filter: {stdout}");
    let shot = out.join("status-page.png");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "no screenshot");
    say(&format!(
        "browser: PASS: {} listed as text, no script ran, figures refreshed, filter followed; screenshot {}",
        id.short(),
        shot.display()
    ));
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s.find(start).map(|i| i + start.len()).unwrap_or_else(|| panic!("no {start} in {s}"));
    let to = s[from..].find(end).map(|i| i + from).unwrap_or_else(|| panic!("no {end} after {start} in {s}"));
    &s[from..to]
}

#[test]
fn promtool_accepts_the_metrics() {
    if !have("/usr/bin/promtool") {
        say("promtool: SKIP: needs Debian's prometheus");
        return;
    }
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    publish(addr, "a.bin", 100_000);
    get(addr, &announce_path(&lmk::hash::Hash20([1; 20]), "-TR4000-abcdefghijkl", 6881, 0));
    let metrics = get(addr, "/metrics").body;
    let dir = output_dir("http-promtool");
    let file = dir.join("metrics.txt");
    std::fs::write(&file, &metrics).expect("write metrics");
    let out = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("run promtool");
    assert!(out.status.success(), "promtool check metrics:\n{}{}", text(&out.stdout), text(&out.stderr));
    say(&format!("promtool: PASS: check metrics accepts /metrics ({} bytes)", metrics.len()));
}

#[test]
fn prometheus_scrapes_the_tracker() {
    if !have("/usr/bin/prometheus") {
        say("prometheus: SKIP: needs Debian's prometheus");
        return;
    }
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    for (i, port) in [(1u8, 6881u16), (2, 6882)] {
        get(addr, &announce_path(&lmk::hash::Hash20([i; 20]), &format!("-TR4000-abcdefghijk{i}"), port, 0));
    }
    let dir = output_dir("http-prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lmk-tracker\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .expect("config");
    let web = free_port();
    let mut cmd = Command::new("/usr/bin/prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let prometheus = Proc::spawn_command("prometheus", cmd);
    let query = "/api/v1/query?query=lmk_tracker_peers";
    let mut answer = String::new();
    wait_until(Duration::from_secs(90), "Prometheus to answer lmk_tracker_peers after a scrape", || {
        let Ok(mut s) = std::net::TcpStream::connect(web) else { return false };
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(s, "GET {query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        answer = raw;
        answer.contains("\"__name__\":\"lmk_tracker_peers\"")
    });
    assert!(answer.contains(",\"2\"]"), "lmk_tracker_peers is not 2: {answer}\n{}", prometheus.stderr());
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    say(&format!("prometheus: PASS: {query} -> {body}"));
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

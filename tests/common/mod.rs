//! Harness for the integration tests: the real binaries started on
//! ephemeral ports, each owned by a guard that kills and reaps it, waits that
//! always have a deadline, temp dirs, seeded test files, and small clients
//! speaking the tracker's UDP (BEP 15) and catalog (TCP) protocols.
//!
//! Nothing here sleeps for a fixed time to let something happen: every wait
//! polls a condition until a deadline and fails naming what it waited for.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod fake;
pub mod http;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use lmk::common::rng::Rng;
use lmk::hash::Hash20;
use lmk::meta::FileMeta;
use lmk::wire::catalog::{self, ListEntry, MAX_CATALOG_FRAME};
use lmk::wire::split_frame;
use lmk::wire::udp::{self, AnnounceRequest, Event};

pub const TRACKER: &str = env!("CARGO_BIN_EXE_lmk-tracker");
pub const SEEDER: &str = env!("CARGO_BIN_EXE_lmk-seeder");
pub const LEECHER: &str = env!("CARGO_BIN_EXE_lmk-leecher");

/// Chunk size the tests share files with: small, so a few MiB make many chunks.
pub const CHUNK: u32 = 65536;
/// The state directory of every binary the tests start: one host, one
/// tracker key, shared by all tests (made once, whoever starts first).
pub const STATE_HOME: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/state");
/// How long a binary may take to print `listening on` (a seeder hashes first).
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long a download of a few MiB may take before the test gives up.
pub const DOWNLOAD: Duration = Duration::from_secs(60);
/// Tracker settings of every test: interval 1 s, expiry 3 s.
pub const INTERVAL: u32 = 1;
pub const EXPIRY: u32 = 3;

// ---------------------------------------------------------------------------
// Temp dirs

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("lmk-it-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Lines a child printed on stdout, filled by a reader thread.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>, // (lines, eof)
    changed: Condvar,
}

/// One running binary. Stdout is read line by line into memory; stderr goes
/// to a log file. Dropping the guard kills and reaps the child; if the test is
/// failing, the tail of both outputs is printed so the failure explains itself.
pub struct Proc {
    pub name: String,
    child: Child,
    stdout: Arc<Lines>,
    reader: Option<JoinHandle<()>>,
    stderr_path: PathBuf,
    _logs: TempDir,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program` with `args`; `name` labels it in failure messages.
    pub fn spawn(name: &str, program: &str, args: &[String]) -> Proc {
        let mut command = Command::new(program);
        command.args(args);
        Proc::spawn_command(name, command)
    }

    /// Starts a command the caller set up (e.g. with a resource limit).
    /// Unless the caller chose another, every binary keeps its state (the
    /// tracker's default publish key, which seeders on the same host use) in
    /// [`STATE_HOME`], never in the user's home.
    pub fn spawn_command(name: &str, mut command: Command) -> Proc {
        if !command.get_envs().any(|(key, _)| key == "XDG_STATE_HOME") {
            command.env("XDG_STATE_HOME", STATE_HOME);
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let logs = TempDir::new(&format!("log-{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
        let stderr_path = logs.path().join("stderr.log");
        let stderr = File::create(&stderr_path).unwrap_or_else(|e| panic!("create {}: {e}", stderr_path.display()));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({program}): {e}"));
        let stdout = Arc::new(Lines::default());
        let pipe = child.stdout.take().expect("stdout is piped");
        let sink = Arc::clone(&stdout);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut guard = sink.lines.lock().unwrap();
                guard.0.push(line);
                sink.changed.notify_all();
            }
            sink.lines.lock().unwrap().1 = true;
            sink.changed.notify_all();
        });
        Proc { name: name.to_string(), child, stdout, reader: Some(reader), stderr_path, _logs: logs, exited: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most resident memory the process has had (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid()).unwrap_or_else(|| panic!("{}: no VmHWM in /proc/{}/status", self.name, self.pid()))
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines.lock().unwrap().0.clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for a stdout line for which `pick` returns something. Fails if
    /// the child closes stdout (exits) first or `limit` passes.
    pub fn wait_stdout<T>(&mut self, limit: Duration, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        match self.try_wait_stdout(limit, &mut pick) {
            Ok(v) => v,
            Err(why) => panic!("{}: {why} while waiting for {what}", self.name),
        }
    }

    fn try_wait_stdout<T>(&mut self, limit: Duration, pick: &mut impl FnMut(&str) -> Option<T>) -> Result<T, String> {
        let deadline = Instant::now() + limit;
        let stdout = Arc::clone(&self.stdout);
        let mut guard = stdout.lines.lock().unwrap();
        let mut seen = 0;
        loop {
            while seen < guard.0.len() {
                if let Some(v) = pick(&guard.0[seen]) {
                    return Ok(v);
                }
                seen += 1;
            }
            if guard.1 {
                drop(guard);
                let status = self.wait_exit_quietly(Duration::from_secs(5));
                return Err(format!("stdout closed (exit {status:?})"));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timed out after {limit:?}"));
            }
            guard = stdout.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// The address of the `listening on ADDR` line.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let name = self.name.clone();
        self.wait_stdout(STARTUP, &format!("`listening on` from {name}"), parse_listening)
    }

    /// Like `wait_listening`, but an early exit is returned, not a failure.
    pub fn try_wait_listening(&mut self) -> Result<SocketAddr, String> {
        self.try_wait_stdout(STARTUP, &mut parse_listening)
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, limit: Duration, needle: &str) {
        let what = format!("{:?} on the stderr of {}", needle, self.name);
        wait_until(limit, &what, || self.stderr().contains(needle));
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_stdout_contains(&mut self, limit: Duration, needle: &str) -> String {
        let what = format!("a line containing {needle:?} on the stdout of {}", self.name);
        self.wait_stdout(limit, &what, |l| l.contains(needle).then(|| l.to_string()))
    }

    /// The exit status if the child has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("{}: try_wait: {e}", self.name));
        }
        self.exited
    }

    fn wait_exit_quietly(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_exit_quietly(limit) {
            Some(s) => s,
            None => panic!("timed out after {limit:?} waiting for {} to exit", self.name),
        }
    }

    /// SIGKILL now, and reap: no goodbye of any kind.
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -s {sig} {}: {e}", self.name));
        assert!(status.success(), "kill -s {sig} {} failed: {status}", self.name);
    }

    /// Waits for exit (killing the child after `limit`) and returns
    /// everything it printed.
    pub fn finish(mut self, limit: Duration) -> Output {
        if self.wait_exit_quietly(limit).is_none() {
            self.kill();
            panic!("timed out after {limit:?} waiting for {} to exit; killed it", self.name);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Output {
            status: self.exited.expect("exited"),
            stdout: self.stdout_lines().iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes(),
            stderr: self.stderr().into_bytes(),
        }
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn tails(&self) -> String {
        let tail = |lines: Vec<String>| {
            let skip = lines.len().saturating_sub(25);
            lines[skip..].iter().map(|l| format!("    {l}\n")).collect::<String>()
        };
        let err: Vec<String> = self.stderr().lines().map(str::to_string).collect();
        format!(
            "--- {} (pid {}) stdout tail:\n{}--- {} stderr tail:\n{}",
            self.name,
            self.pid(),
            tail(self.stdout_lines()),
            self.name,
            tail(err)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tails());
        }
        self.kill();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on ")?.trim().parse().ok()
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Starting the binaries

/// A tracker on an ephemeral port with `--interval`, `--expiry`, `--status 0`.
pub fn start_tracker(interval: u32, expiry: u32) -> (Proc, SocketAddr) {
    start_tracker_on("127.0.0.1:0", interval, expiry).unwrap_or_else(|e| panic!("tracker did not start: {e}"))
}

/// A tracker on an ephemeral port, as [`start_tracker`], with `extra` options.
pub fn start_tracker_with(interval: u32, expiry: u32, extra: &[&str]) -> (Proc, SocketAddr) {
    start_tracker_args("127.0.0.1:0", interval, expiry, extra).unwrap_or_else(|e| panic!("tracker did not start: {e}"))
}

/// A tracker on `listen`; an exit before `listening on` (a busy port) is an `Err`.
pub fn start_tracker_on(listen: &str, interval: u32, expiry: u32) -> Result<(Proc, SocketAddr), String> {
    start_tracker_args(listen, interval, expiry, &[])
}

fn start_tracker_args(listen: &str, interval: u32, expiry: u32, extra: &[&str]) -> Result<(Proc, SocketAddr), String> {
    let mut args = strings(&[
        "--listen",
        listen,
        "--interval",
        &interval.to_string(),
        "--expiry",
        &expiry.to_string(),
        "--status",
        "0",
    ]);
    args.extend(strings(extra));
    let mut p = Proc::spawn("tracker", TRACKER, &args);
    match p.try_wait_listening() {
        Ok(addr) => Ok((p, addr)),
        Err(why) => Err(format!("{why}: {}", p.stderr().trim())),
    }
}

/// A seeder of `paths` on an ephemeral port. `args` are extra options; unless
/// they say otherwise the seeder gets `--chunk-size 65536 --status 0`.
pub fn start_seeder(tracker: SocketAddr, args: &[&str], paths: &[&Path]) -> (Proc, SocketAddr) {
    let mut all = strings(&["--tracker", &tracker.to_string(), "--listen", "127.0.0.1:0"]);
    all.extend(strings(args));
    if !args.contains(&"--chunk-size") {
        all.extend(strings(&["--chunk-size", &CHUNK.to_string()]));
    }
    if !args.contains(&"--status") {
        all.extend(strings(&["--status", "0"]));
    }
    all.extend(paths.iter().map(|p| p.display().to_string()));
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let mut p = Proc::spawn(&format!("seeder#{n}"), SEEDER, &all);
    let addr = p.wait_listening();
    (p, addr)
}

/// Starts `lmk-leecher --tracker ADDR ARGS...` without waiting for it. A
/// `get` listens on 127.0.0.1 and, unless the test says otherwise, leaves as
/// soon as its files are complete (`--seed-ratio 0`).
pub fn spawn_leecher(tracker: SocketAddr, args: &[&str]) -> Proc {
    let mut all = strings(&["--tracker", &tracker.to_string()]);
    if args.contains(&"get") {
        all.extend(strings(&["--listen", "127.0.0.1:0"]));
        if !args.iter().any(|a| ["--seed-ratio", "--seed-idle", "--seed-time"].contains(a)) {
            all.extend(strings(&["--seed-ratio", "0"]));
        }
    }
    all.extend(strings(args));
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    Proc::spawn(&format!("leecher#{n}"), LEECHER, &all)
}

/// A tracker and one seeder (with `seeder_args`) sharing `src`, listed.
pub struct Shared {
    pub tracker: Proc,
    pub addr: SocketAddr,
    pub seeder: Proc,
}

/// Shares `src` from one seeder through a fresh tracker; returns once it is listed.
pub fn share(src: &Path, seeder_args: &[&str]) -> Shared {
    let (tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (seeder, _) = start_seeder(addr, seeder_args, &[src]);
    wait_listed(addr, &src.file_name().expect("a file name").to_string_lossy(), 1);
    Shared { tracker, addr, seeder }
}

/// Starts `lmk-leecher get NAME --out DIR --timeout 20 EXTRA...`.
pub fn get_into(tracker: SocketAddr, name: &str, dir: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["get", name, "--out", dir.to_str().expect("a UTF-8 path"), "--timeout", "20"];
    args.extend_from_slice(extra);
    spawn_leecher(tracker, &args)
}

/// Runs `lmk-leecher --tracker ADDR ARGS...` to its end (killed and failed
/// after [`DOWNLOAD`]).
pub fn run_leecher(tracker: SocketAddr, args: &[&str]) -> Output {
    spawn_leecher(tracker, args).finish(DOWNLOAD)
}

/// A live process's peak resident set (VmHWM) in KiB; None once it is gone.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The largest peak RSS (KiB) of any child this test binary has reaped so far:
/// with every child a tracker, seeder or leecher that should stay small, one
/// that read or held without bound shows here even after it exited.
pub fn children_peak_rss_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills `usage`, read only on success.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialised by the successful call above.
    u64::try_from(unsafe { usage.assume_init() }.ru_maxrss).unwrap_or(0)
}

/// Makes a FIFO at `path`, as someone planting one would.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("a UTF-8 path")).expect("no NUL");
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

pub fn run_bin(program: &str, args: &[&str], limit: Duration) -> Output {
    let name = Path::new(program).file_name().map_or("bin".into(), |n| n.to_string_lossy().into_owned());
    Proc::spawn(&name, program, &strings(args)).finish(limit)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a leecher run succeeded, showing its output if not.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Files

/// `n` seeded random bytes (the library's own PRNG: same seed, same bytes).
pub fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    rng.fill(&mut v);
    v
}

/// Writes `size` seeded random bytes to `dir/name`; returns the path.
pub fn random_file(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let data = random_bytes(&mut Rng::new(seed), size);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// The metadata a seeder computes for `path` shared with `chunk_size`.
pub fn file_meta(path: &Path, chunk_size: u32) -> FileMeta {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let hashes = data.chunks(chunk_size as usize).map(Hash20::of).collect();
    let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
    FileMeta::new(name, data.len() as u64, chunk_size, hashes).expect("valid metadata")
}

/// Asserts `got` holds exactly the bytes of `want`, naming the first difference.
pub fn assert_same_file(want: &Path, got: &Path) {
    let a = std::fs::read(want).unwrap_or_else(|e| panic!("read {}: {e}", want.display()));
    let b = std::fs::read(got).unwrap_or_else(|e| panic!("read downloaded {}: {e}", got.display()));
    assert_eq!(a.len(), b.len(), "{} has {} bytes, source {} has {}", got.display(), b.len(), want.display(), a.len());
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!("{} differs from {} first at byte {i} (chunk {})", got.display(), want.display(), i / CHUNK as usize);
    }
}

/// Names of the entries of `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Talking to the tracker from the test

/// A BEP 15 client over one UDP socket: connect, then announces.
pub struct UdpClient {
    sock: UdpSocket,
    tracker: SocketAddr,
    connection_id: u64,
    tx: u32,
}

impl UdpClient {
    /// Connects (BEP 15 action 0), retrying lost datagrams for up to 10 s.
    pub fn connect(tracker: SocketAddr) -> UdpClient {
        UdpClient::connect_from(tracker, [127, 0, 0, 1])
    }

    /// Connects from another loopback source address (127.0.0.0/8 is all ours).
    pub fn connect_from(tracker: SocketAddr, ip: [u8; 4]) -> UdpClient {
        let sock = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind udp");
        sock.set_read_timeout(Some(Duration::from_millis(300))).expect("set timeout");
        let mut c = UdpClient { sock, tracker, connection_id: 0, tx: 0x1000 };
        c.connection_id = c.connect_id();
        c
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    fn connect_id(&mut self) -> u64 {
        match self.exchange(|tx| udp::Request::Connect { transaction_id: tx }) {
            udp::Response::Connect { connection_id, .. } => connection_id,
            other => panic!("tracker {} answered connect with {other:?}", self.tracker),
        }
    }

    /// Sends the request built for a fresh transaction id until its answer comes.
    fn exchange(&mut self, build: impl Fn(u32) -> udp::Request) -> udp::Response {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        loop {
            self.tx = self.tx.wrapping_add(1);
            let tx = self.tx;
            let mut out = Vec::new();
            build(tx).encode(&mut out);
            self.sock.send_to(&out, self.tracker).expect("send datagram");
            let resend = Instant::now() + Duration::from_millis(300);
            while Instant::now() < resend {
                let Ok((n, from)) = self.sock.recv_from(&mut buf) else { break };
                if from != self.tracker {
                    continue;
                }
                match udp::Response::decode(&buf[..n], false) {
                    Ok(r) if r.transaction_id() == tx => return r,
                    _ => continue,
                }
            }
            if Instant::now() >= deadline {
                panic!("tracker {} did not answer a UDP request within 10s", self.tracker);
            }
        }
    }

    /// One announce; returns the tracker's answer (Announce or Error).
    pub fn announce(&mut self, info_hash: Hash20, left: u64, event: Event, port: u16) -> udp::Response {
        let cid = self.connection_id;
        let peer_id = *b"-TEST00-000000000000";
        self.exchange(|tx| {
            udp::Request::Announce(AnnounceRequest {
                connection_id: cid,
                transaction_id: tx,
                info_hash,
                peer_id,
                downloaded: 0,
                left,
                uploaded: 0,
                event,
                ip: std::net::Ipv4Addr::UNSPECIFIED,
                key: 7,
                num_want: 50,
                port,
            })
        })
    }
}

/// How many seeders the tracker lists for `id`, asked as a leecher that
/// serves nothing (left > 0, port 0), so the question changes nothing.
pub fn tracker_seeders(tracker: SocketAddr, id: Hash20) -> usize {
    let mut c = UdpClient::connect(tracker);
    match c.announce(id, 1, Event::None, 0) {
        udp::Response::Announce { seeders, .. } => seeders as usize,
        other => panic!("tracker {tracker} answered an announce with {other:?}"),
    }
}

/// One catalog request over a fresh TCP connection; its response.
pub fn catalog_request(tracker: SocketAddr, request: &catalog::Request) -> catalog::Response {
    let mut stream = TcpStream::connect(tracker).unwrap_or_else(|e| panic!("catalog connect {tracker}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set timeout");
    let mut out = Vec::new();
    request.encode(&mut out);
    stream.write_all(&out).unwrap_or_else(|e| panic!("catalog send to {tracker}: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match split_frame(&buf, MAX_CATALOG_FRAME) {
            Ok(Some((frame, _))) => {
                return catalog::Response::decode(frame)
                    .unwrap_or_else(|e| panic!("tracker {tracker} sent a bad catalog frame: {e}"))
            }
            Ok(None) => {}
            Err(e) => panic!("tracker {tracker} sent a bad catalog frame: {e}"),
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("tracker {tracker} closed the catalog connection without an answer to {request:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("catalog read from {tracker}: {e}"),
        }
    }
}

/// The tracker's catalog.
pub fn list(tracker: SocketAddr) -> Vec<ListEntry> {
    match catalog_request(tracker, &catalog::Request::List) {
        catalog::Response::List(entries) => entries,
        other => panic!("tracker {tracker} answered List with {other:?}"),
    }
}

/// Waits until the catalog lists `name` with at least `seeders` seeders.
pub fn wait_listed(tracker: SocketAddr, name: &str, seeders: u32) -> ListEntry {
    let what = format!("the catalog of {tracker} to list {name:?} with {seeders} seeder(s)");
    let mut found = None;
    wait_until(Duration::from_secs(20), &what, || {
        found = list(tracker).into_iter().find(|e| e.name == name && e.seeders >= seeders);
        found.is_some()
    });
    found.expect("found")
}

// ---------------------------------------------------------------------------
// Reading the binaries' status output

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `1.0 GiB` (what `fmt::bytes` prints) in
/// bytes; the one-decimal forms are rounded, so this is within 0.05 of a unit.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = s.trim().split_once(' ')?;
    let shift = match unit {
        "B" => return num.parse().ok(),
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    Some((v * (1u64 << shift) as f64).round() as u64)
}

/// One seeder status line:
/// `seeder: 1 file(s) | peers 3 | slots 3 | up 8.2 MiB/s | sent 105.0 MiB (1.64 copies) | bad frames 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeederStatus {
    pub peers: usize,
    pub slots: usize,
    /// Bytes sent since the start (rounded as printed).
    pub sent: u64,
    /// `sent` over the total size of the shared files.
    pub copies: f64,
    pub bad_frames: u64,
}

/// The parsed status line, or `None` if `line` is not one.
/// (`2026-12-05T09:26:02Z seeder: ...`: printed when it changed, behind the time, when not on a terminal).
pub fn parse_seeder_status(line: &str) -> Option<SeederStatus> {
    let (stamp, rest) = line.split_once("seeder: ")?;
    if !(stamp.is_empty() || stamp.ends_with("Z ")) {
        return None;
    }
    let field = |key: &str| rest.split(" | ").find_map(|part| part.strip_prefix(key)).map(str::trim);
    let (sent, copies) = field("sent ")?.split_once(" (")?;
    Some(SeederStatus {
        peers: field("peers ")?.parse().ok()?,
        slots: field("slots ")?.parse().ok()?,
        sent: parse_size(sent)?,
        copies: copies.strip_suffix(" copies)")?.parse().ok()?,
        bad_frames: field("bad frames ")?.parse().ok()?,
    })
}

/// The last status line among `lines`, parsed.
pub fn last_seeder_status(lines: &[String]) -> Option<SeederStatus> {
    lines.iter().rev().find_map(|l| parse_seeder_status(l))
}

/// A leecher's line for a complete file:
/// `NAME: done, 32.0 MiB in 9.12s (3.5 MiB/s) from 5 peers; 12.0 MiB from seeders, 20.0 MiB from leechers`
/// (`from 1 peer`; possibly followed by `, N bad chunks re-fetched`).
#[derive(Debug, Clone, PartialEq)]
pub struct DoneLine {
    pub size: u64,
    pub peers: usize,
    pub from_seeders: u64,
    pub from_leechers: u64,
}

/// The parsed done line for `name`, or `None` if `line` is not one.
pub fn parse_done(line: &str, name: &str) -> Option<DoneLine> {
    let rest = line.strip_prefix(name)?.strip_prefix(": done, ")?;
    let (head, sources) = rest.split_once("; ")?;
    let (size, head) = head.split_once(" in ")?;
    let peers = head.split_once(" from ")?.1;
    let peers = peers.strip_suffix(" peers").or_else(|| peers.strip_suffix(" peer"))?;
    let mut parts = sources.split(", ");
    let from_seeders = parts.next()?.strip_suffix(" from seeders")?;
    let from_leechers = parts.next()?.strip_suffix(" from leechers")?;
    Some(DoneLine {
        size: parse_size(size)?,
        peers: peers.parse().ok()?,
        from_seeders: parse_size(from_seeders)?,
        from_leechers: parse_size(from_leechers)?,
    })
}

/// Bytes done and total of a plain progress line for `name`:
/// `NAME [#####-----]  42%  27.0 MiB / 64.0 MiB  down ...`.
pub fn parse_progress(line: &str, name: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(name)?.strip_prefix(" [")?;
    let (_bar, rest) = rest.split_once(']')?;
    let amounts = rest.split("  ").map(str::trim).find(|part| part.contains(" / "))?;
    let (done, size) = amounts.split_once(" / ")?;
    Some((parse_size(done)?, parse_size(size)?))
}

impl Proc {
    /// Waits for the done line of `name` (the leecher may go on seeding).
    pub fn wait_done(&mut self, limit: Duration, name: &str) -> DoneLine {
        let what = format!("`{name}: done` on the stdout of {}", self.name);
        self.wait_stdout(limit, &what, |l| parse_done(l, name))
    }

    /// The done line of `name` printed so far, if any.
    pub fn done_line(&self, name: &str) -> Option<DoneLine> {
        self.stdout_lines().iter().find_map(|l| parse_done(l, name))
    }
}

// ---------------------------------------------------------------------------
// What downloads hold, read from their files

/// Which chunks of a source file are held by at least one of several
/// downloads, judged from their files: a leecher writes a chunk into its
/// scratch file `DIR/.lmk/<content id>.part` only after its SHA-1 check (and marks it held in the same
/// step), so a chunk of the scratch file (or of the final `DIR/NAME`) equal to the
/// source's is one the leecher holds and can serve. Random source data never
/// matches the zeros of a chunk not written yet. Chunks found held stay
/// counted (a running leecher never drops one), so each poll reads only the
/// chunks still missing.
pub struct ChunkUnion {
    want: Vec<u8>,
    chunk: usize,
    held: Vec<bool>,
    /// `.lmk/<content id>.part`
    scratch: String,
}

/// A download's scratch file in `dir`, for the source file `src` shared in `chunk`-byte chunks.
pub fn scratch_file(dir: &Path, src: &Path, chunk: u32) -> PathBuf {
    dir.join(".lmk").join(format!("{}.part", file_meta(src, chunk).content_id().to_hex()))
}

impl ChunkUnion {
    pub fn new(src: &Path, chunk: u32) -> ChunkUnion {
        let want = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let n = want.len().div_ceil(chunk as usize);
        let scratch = format!(".lmk/{}.part", file_meta(src, chunk).content_id().to_hex());
        ChunkUnion { want, chunk: chunk as usize, held: vec![false; n], scratch }
    }

    /// Looks at the scratch file or `DIR/NAME` in each of `dirs`; returns how
    /// many chunks no download holds yet.
    pub fn missing(&mut self, dirs: &[PathBuf], name: &str) -> usize {
        use std::os::unix::fs::FileExt;
        for dir in dirs {
            // The scratch file is renamed when complete: try it, then the final name.
            let Some(file) = [&self.scratch, name].iter().find_map(|n| File::open(dir.join(n)).ok()) else {
                continue;
            };
            let mut buf = vec![0u8; self.chunk];
            for (i, held) in self.held.iter_mut().enumerate().filter(|(_, h)| !**h) {
                let start = i * self.chunk;
                let want = &self.want[start..(start + self.chunk).min(self.want.len())];
                let got = &mut buf[..want.len()];
                if file.read_exact_at(got, start as u64).is_ok() && got == want {
                    *held = true;
                }
            }
        }
        self.held.iter().filter(|h| !**h).count()
    }

    /// How many chunks the one download in `dir` holds (for messages).
    pub fn held_in(&self, dir: &Path, name: &str) -> usize {
        let data = std::fs::read(dir.join(&self.scratch)).or_else(|_| std::fs::read(dir.join(name)));
        let data = data.unwrap_or_default();
        self.want.chunks(self.chunk).zip(data.chunks(self.chunk)).filter(|(want, got)| want == got).count()
    }

    /// Chunks in the source file.
    pub fn chunks(&self) -> usize {
        self.held.len()
    }
}

// ---------------------------------------------------------------------------
// Hostile clients

/// A tracker on an ephemeral port that may open at most `nofile` descriptors
/// (`RLIMIT_NOFILE`, set in the child before exec).
pub fn start_tracker_nofile(nofile: u64) -> (Proc, SocketAddr) {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(TRACKER);
    command.args(["--listen", "127.0.0.1:0", "--interval", "1", "--expiry", "3", "--status", "0"]);
    let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    let mut p = Proc::spawn_command(&format!("tracker (nofile {nofile})"), command);
    let addr = p.wait_listening();
    (p, addr)
}

/// Lets this test process hold `n` descriptors (the soft limit up to the hard one).
pub fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(n.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A TCP connection to `to` from the loopback address `src` (any of
/// 127.0.0.0/8), so a test can be many clients for a per-IP cap.
pub fn connect_from(src: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    connect_with_window(src, to, None)
}

/// `connect_from` with a receive buffer of `rcvbuf` bytes set before the
/// handshake: a caller that never reads then leaves what is sent to it in
/// the sender's memory, not in the kernel's buffers (up to 32 MiB here).
pub fn connect_with_window(src: std::net::Ipv4Addr, to: SocketAddr, rcvbuf: Option<i32>) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else { panic!("connect_from speaks IPv4") };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by the TcpStream built
    // from it (or closed here on failure), with sockaddr_in of the given size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(size) = rcvbuf {
            let size_len = std::mem::size_of::<i32>() as libc::socklen_t;
            if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const i32).cast(), size_len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let local = sockaddr(src, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// True once the tracker has closed `stream` (EOF or reset); what it sent
/// before is read and dropped.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

//! A small swarm on network namespaces with the real binaries: a tracker
//! host, one seeder and four downloaders, each host in its own namespace with
//! a veth to a bridge and its upload capped by tc tbf at 4 MiB/s, so that
//! downloaders can only finish quickly by uploading to each other. Checks that
//! every copy is byte-exact and that leechers served each other (the sum over
//! downloaders of the "from leechers" figure of their done lines is > 0).
//!
//! Needs root, `ip` and `tc`; otherwise (or when `ip netns add` fails) it
//! prints `SKIP: ...` and passes. Everything it creates (namespaces, veths,
//! the bridge, processes) belongs to a guard whose Drop kills every child by
//! PID and deletes every link and namespace, also when the test panics.
//! No timing assertions: every wait has a deadline and names what it waited for.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{assert_same_file, random_file, wait_until, TempDir, CHUNK, LEECHER, SEEDER, TRACKER};

const MIB: usize = 1024 * 1024;
/// The shared file.
const SIZE: usize = 32 * MIB;
const NAME: &str = "swarm.bin";
/// Every host's uplink, bytes per second (tc's `bps` unit is bytes per second).
const UPLINK: u64 = 4 * MIB as u64;
const DOWNLOADERS: usize = 4;
/// Start-up of a binary, the catalog listing the file.
const STARTUP: Duration = Duration::from_secs(30);
/// All downloads. The fluid bound is 8 s (F / u_seed); a seeder serving every
/// downloader alone (leechers that do not upload) needs about 4 x that.
const DOWNLOADS: Duration = Duration::from_secs(90);

const TRACKER_IP: &str = "10.79.0.1";
const SEEDER_IP: &str = "10.79.0.2";
fn downloader_ip(i: usize) -> String {
    format!("10.79.0.{}", 11 + i)
}

// ---------------------------------------------------------------------------
// The guard: namespaces, links and processes, all removed on drop

static NETS: AtomicUsize = AtomicUsize::new(0);

struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Owns what the test created. Drop (also while panicking): kill and reap
/// every child by PID, print its output if the test is failing, then delete
/// every veth, the bridge and every namespace, newest first.
struct Net {
    prefix: String,
    logs: PathBuf,
    namespaces: Vec<String>,
    /// (namespace, device) created by the test.
    links: Vec<(String, String)>,
    procs: Vec<Proc>,
}

/// Runs a command to its end (it never takes long); Err with its output if it
/// fails or cannot be started.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

impl Net {
    /// The first namespace, or why the test cannot run here.
    fn new(logs: &Path) -> Result<Net, String> {
        match run("id", &["-u"]) {
            Ok(uid) if uid.trim() == "0" => {}
            Ok(uid) => return Err(format!("not root (uid {}): network namespaces need root", uid.trim())),
            Err(e) => return Err(e),
        }
        run("ip", &["-V"]).map_err(|e| format!("`ip` unavailable: {e}"))?;
        run("tc", &["-V"]).map_err(|e| format!("`tc` unavailable: {e}"))?;
        let n = NETS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("lmkt-{}-{n}", std::process::id());
        let mut net =
            Net { prefix, logs: logs.to_path_buf(), namespaces: Vec::new(), links: Vec::new(), procs: Vec::new() };
        let br = net.ns("br");
        run("ip", &["netns", "add", &br]).map_err(|e| format!("ip netns add: {e}"))?;
        net.namespaces.push(br);
        Ok(net)
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The bridge, in its own namespace.
    fn bridge(&mut self) {
        let br = self.ns("br");
        must("ip", &["-n", &br, "link", "set", "dev", "lo", "up"]);
        must("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"]);
        self.links.push((br.clone(), "br0".into()));
        must("ip", &["-n", &br, "link", "set", "dev", "br0", "up"]);
    }

    /// Namespace PREFIX-HOST with eth0 at IP/24, its peer v-HOST on the
    /// bridge, and tbf on eth0's egress: the host's upload.
    fn host(&mut self, host: &str, ip: &str, uplink: u64) {
        let ns = self.ns(host);
        let br = self.ns("br");
        let peer = format!("v-{host}");
        must("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must("ip", &["-n", &ns, "link", "set", "dev", "lo", "up"]);
        must("ip", &["link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns", &br]);
        self.links.push((ns.clone(), "eth0".into()));
        must("ip", &["-n", &br, "link", "set", "dev", &peer, "master", "br0", "up"]);
        must("ip", &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        must("ip", &["-n", &ns, "link", "set", "dev", "eth0", "up"]);
        let rate = format!("{uplink}bps");
        let tbf = ["rate", &rate, "burst", "64kb", "latency", "50ms"];
        must("tc", &[&["-n", &ns, "qdisc", "add", "dev", "eth0", "root", "tbf"][..], &tbf].concat());
    }

    /// The state directory of every program of the lab (the tracker's publish
    /// key, which the seeders find there): the hosts share one file system.
    fn state_home(&self) -> PathBuf {
        self.logs.join("state")
    }

    /// Starts `program args...` in the namespace of `host`, stdout and stderr
    /// to files in the log dir; returns its index.
    fn spawn(&mut self, name: &str, host: &str, program: &str, args: &[String]) -> usize {
        let stdout = self.logs.join(format!("{name}.out"));
        let stderr = self.logs.join(format!("{name}.err"));
        let create = |p: &Path| File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        // `ip netns exec` execs the program: the child's PID is the program's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            .env("XDG_STATE_HOME", self.state_home())
            .stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({program}) in {host}: {e}"));
        self.procs.push(Proc { name: name.to_string(), child, stdout, stderr });
        self.procs.len() - 1
    }

    fn stdout(&self, i: usize) -> String {
        std::fs::read_to_string(&self.procs[i].stdout).unwrap_or_default()
    }

    /// Waits for a stdout line of process `i` for which `pick` returns
    /// something; fails if the process exits first or `limit` passes.
    fn wait_line<T>(&mut self, i: usize, limit: Duration, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.stdout(i).lines().find_map(&pick) {
                return v;
            }
            let name = self.procs[i].name.clone();
            if let Some(status) = self.procs[i].child.try_wait().unwrap_or_else(|e| panic!("try_wait {name}: {e}")) {
                // One more look: the line may have come with the exit.
                if let Some(v) = self.stdout(i).lines().find_map(&pick) {
                    return v;
                }
                panic!("{name} exited ({status}) before {what}");
            }
            if Instant::now() >= deadline {
                panic!("timed out after {limit:?} waiting for {what} from {name}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `program args...` in `host` to its end, killed after `limit`.
    fn run_in(&self, host: &str, program: &str, args: &[&str], limit: Duration) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            .env("XDG_STATE_HOME", self.state_home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} in {host}: {e}"));
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} {} in {host} did not end within {limit:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills and reaps every child (by PID, via its handle).
    fn stop_all(&mut self) {
        for p in self.procs.iter_mut().rev() {
            if p.child.try_wait().ok().flatten().is_none() {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
    }

    fn print_outputs(&self) {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(40);
            lines[skip..].iter().map(|l| format!("    {l}\n")).collect::<String>()
        };
        for p in &self.procs {
            eprintln!("--- {} (pid {}) stdout:\n{}", p.name, p.child.id(), tail(&p.stdout));
            eprintln!("--- {} stderr:\n{}", p.name, tail(&p.stderr));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_all();
        if std::thread::panicking() {
            self.print_outputs();
        }
        for (ns, dev) in self.links.iter().rev() {
            let _ = run("ip", &["-n", ns, "link", "del", "dev", dev]);
        }
        for ns in self.namespaces.iter().rev() {
            // Only this test starts processes in its namespaces: anything
            // still there (a grandchild) is its own; kill it by PID.
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The done line

/// A human size as the binaries print it: `123 B`, `1.5 KiB`, `20.0 MiB`, `2.00 GiB`.
fn parse_size(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let n: f64 = it.next()?.parse().ok()?;
    let unit = match it.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    it.next().is_none().then_some(n * unit)
}

/// The bytes a done line says came from leechers, e.g. from
/// `NAME: done, 32.0 MiB in 9.12s (3.5 MiB/s) from 5 peer(s); 12.0 MiB from seeders, 20.0 MiB from leechers`.
fn from_leechers(line: &str) -> Option<f64> {
    let head = &line[..line.find(" from leechers")?];
    let size = head.rsplit([',', ';']).next()?;
    parse_size(size.trim())
}

#[test]
fn done_line_sizes() {
    assert_eq!(parse_size("123 B"), Some(123.0));
    assert_eq!(parse_size("1.5 KiB"), Some(1536.0));
    assert_eq!(parse_size("20.0 MiB"), Some(20.0 * 1048576.0));
    assert_eq!(parse_size("2 GiB"), Some(2.0 * 1073741824.0));
    assert_eq!(parse_size("2 TB"), None);
    assert_eq!(parse_size("MiB"), None);
    let line =
        "swarm.bin: done, 32.0 MiB in 9.12s (3.5 MiB/s) from 5 peer(s); 12.0 MiB from seeders, 20.0 MiB from leechers";
    assert_eq!(from_leechers(line), Some(20.0 * 1048576.0));
    assert_eq!(from_leechers("swarm.bin: done, 0 B from seeders, 0 B from leechers"), Some(0.0));
    assert_eq!(from_leechers("swarm.bin: done, 32.0 MiB in 9.12s (3.5 MiB/s) from 1 seeder(s)"), None);
}

// ---------------------------------------------------------------------------
// The swarm

#[test]
fn swarm_on_namespaces_leechers_serve_each_other() {
    let tmp = TempDir::new("netns"); // dropped last: the logs outlive the guard
    let logs = tmp.sub("logs");
    let mut net = match Net::new(&logs) {
        Ok(net) => net,
        Err(why) => {
            // Straight to stderr: shown even though the test harness captures print!.
            let _ = writeln!(std::io::stderr(), "SKIP: {why}");
            return;
        }
    };
    net.bridge();
    net.host("t", TRACKER_IP, UPLINK);
    net.host("s", SEEDER_IP, UPLINK);
    for i in 0..DOWNLOADERS {
        net.host(&format!("d{i}"), &downloader_ip(i), UPLINK);
    }

    let src = random_file(&tmp.sub("src"), NAME, SIZE, 77);
    let tracker_addr = format!("{TRACKER_IP}:6969");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();

    let tracker = net.spawn(
        "tracker",
        "t",
        TRACKER,
        &s(&["--listen", &tracker_addr, "--interval", "1", "--expiry", "3", "--status", "0"]),
    );
    net.wait_line(tracker, STARTUP, "`listening on`", |l| l.starts_with("listening on ").then_some(()));
    let chunk = CHUNK.to_string();
    let seeder_listen = format!("{SEEDER_IP}:7000");
    let src_arg = src.display().to_string();
    let mut seeder_args = s(&["--tracker", &tracker_addr, "--listen", &seeder_listen]);
    seeder_args.extend(s(&["--chunk-size", &chunk, "--status", "0", &src_arg]));
    let seeder = net.spawn("seeder", "s", SEEDER, &seeder_args);
    net.wait_line(seeder, STARTUP, "`listening on`", |l| l.starts_with("listening on ").then_some(()));
    // Published: the catalog, asked from a downloader's namespace, lists it.
    let what = format!("the catalog of {tracker_addr} to list {NAME}, asked from d0");
    wait_until(STARTUP, &what, || {
        let args = ["--tracker", &tracker_addr, "--timeout", "2", "-q", "list"];
        net.run_in("d0", LEECHER, &args, Duration::from_secs(20)).lines().any(|l| l.starts_with(&format!("{NAME} ")))
    });

    // The leecher takes --listen (the address other leechers reach it at)
    // once it uploads; an older one does not know the option.
    let help = net.run_in("d0", LEECHER, &["--help"], Duration::from_secs(10));
    let listen = help.contains("--listen");

    let dirs: Vec<PathBuf> = (0..DOWNLOADERS).map(|i| tmp.sub(&format!("out-d{i}"))).collect();
    let leechers: Vec<usize> = (0..DOWNLOADERS)
        .map(|i| {
            let mut args = s(&["--tracker", &tracker_addr]);
            if listen {
                args.extend(s(&["--listen", &format!("{}:7000", downloader_ip(i))]));
            }
            args.extend(s(&["get", NAME, "--out", &dirs[i].display().to_string()]));
            net.spawn(&format!("leecher-d{i}"), &format!("d{i}"), LEECHER, &args)
        })
        .collect();

    // Every downloader done. One deadline for all of them; a leecher keeps
    // seeding after its done line, so none is stopped before all are done.
    let deadline = Instant::now() + DOWNLOADS;
    let prefix = format!("{NAME}: done,");
    let mut done_lines = Vec::new();
    for &l in &leechers {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = net.wait_line(l, left, &format!("its `{prefix}` line"), |line| {
            line.starts_with(&prefix).then(|| line.to_string())
        });
        done_lines.push(line);
    }
    net.stop_all();
    for line in &done_lines {
        println!("{line}"); // shown with --nocapture
    }

    for dir in &dirs {
        assert_same_file(&src, &dir.join(NAME));
    }

    let from: Vec<f64> = done_lines.iter().filter_map(|l| from_leechers(l)).collect();
    let total: f64 = from.iter().sum();
    assert!(
        total > 0.0,
        "leechers did not upload to each other: {} of {DOWNLOADERS} done lines give a `from leechers` size, \
         summing to {total:.0} bytes (leecher --listen: {}):\n{}",
        from.len(),
        if listen { "given" } else { "unknown to this leecher" },
        done_lines.iter().map(|l| format!("    {l}\n")).collect::<String>()
    );
}

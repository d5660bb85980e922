//! HTTP announce load generator for `make bench` (scripts/bench.sh): how many
//! BEP 3 announces per second a tracker answers over HTTP.
//!
//! ```text
//! cargo bench --bench http_load -- --tracker 127.0.0.1:PORT [--seconds 5] [--conns 16]
//!     [--hashes 1000] [--peers 16000] [--pid PID]
//! ```
//!
//! Single-threaded (mio). Connection `c` comes from its own loopback source
//! address (127.0.0.2 + c) and keeps one announce in flight: it sends, reads
//! the whole answer, sends the next. A tracker that keeps the connection open
//! (keep-alive, as lmk-tracker) gets the next request on it; one that closes
//! it after each answer (opentracker) gets a new connection, opened without
//! blocking. Peer `k` of a connection announces hash `k % hashes` (the hashes
//! of tracker_load, so its whitelist serves) on port `1024 + k / hashes`.
//! An answer counts when its status is 200 and its body a bencoded dictionary
//! without `failure reason`. Prints one JSON line.
//!
//! ```text
//! cargo bench --bench http_load -- --tracker 127.0.0.1:PORT --publish 100000 [--page-runs 5] [--pid PID]
//! ```
//!
//! The status page instead: publishes that many made-up files to the
//! tracker's catalog (start it with `--max-files-per-ip` at least as large),
//! then times `GET /` (its first page, whole, on a fresh connection) and a
//! filtered `GET /?q=...`, each `--page-runs` times, and prints the medians.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{cpu_secs, info_hash};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Args {
    tracker: SocketAddrV4,
    seconds: f64,
    conns: usize,
    hashes: usize,
    peers: usize,
    pid: Option<u32>,
    publish: usize,
    page_runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tracker: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6969),
        seconds: 5.0,
        conns: 16,
        hashes: 1000,
        peers: 16_000,
        pid: None,
        publish: 0,
        page_runs: 5,
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: String| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--tracker" => a.tracker = value.parse().map_err(|e: std::net::AddrParseError| bad(e.to_string()))?,
            "--seconds" => a.seconds = value.parse().map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
            "--conns" => a.conns = value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            "--hashes" => a.hashes = value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            "--peers" => a.peers = value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            "--publish" => a.publish = value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            "--page-runs" => a.page_runs = value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
            "--pid" => a.pid = Some(value.parse().map_err(|e: std::num::ParseIntError| bad(e.to_string()))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.conns == 0 || a.conns > 250 || a.hashes == 0 || a.peers < a.conns {
        return Err("need 1..=250 conns, hashes > 0, peers >= conns".into());
    }
    Ok(a)
}

/// A non-blocking connect from `src` (bound before connecting, port chosen at connect).
fn connect_from(src: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by the TcpStream made
    // from it at once, with a sockaddr_in and a c_int of the given sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            size,
        );
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const libc::c_int).cast(), size);
        let local = sockaddr(src, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

struct Conn {
    src: Ipv4Addr,
    stream: Option<TcpStream>,
    /// Connected and the request under way written.
    sent: bool,
    buf: Vec<u8>,
    next_peer: usize,
}

/// The first whole answer in `buf` (parsed by httparse): (bytes it took,
/// counted, server closes).
fn answer(buf: &[u8]) -> Option<(usize, bool, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(end) = response.parse(buf).ok()? else { return None };
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let len: usize = std::str::from_utf8(header("content-length")?).ok()?.trim().parse().ok()?;
    let keep_alive = match header("connection") {
        Some(v) => v.eq_ignore_ascii_case(b"keep-alive"),
        None => response.version == Some(1),
    };
    let body = buf.get(end..end + len)?;
    let counted =
        response.code == Some(200) && body.first() == Some(&b'd') && !body.windows(14).any(|w| w == b"failure reason");
    Some((end + len, counted, !keep_alive))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("http_load: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.publish > 0 { status_page(&args) } else { run(&args) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    let hashes: Vec<String> =
        (0..args.hashes).map(|i| info_hash(i).0.iter().map(|b| format!("%{b:02X}")).collect()).collect();
    let per_conn = args.peers / args.conns;
    // Every request made beforehand: the generator's time goes to the wire.
    let requests: Vec<Vec<u8>> = (0..args.conns * per_conn)
        .map(|n| {
            let (i, k) = (n / per_conn, n % per_conn);
            format!(
                "GET /announce?info_hash={}&peer_id=-BENCH0-{i:06}{:06}&port={}&uploaded=0&downloaded=0&left=100&compact=1&numwant=50 HTTP/1.1\r\nHost: t\r\n\r\n",
                hashes[k % args.hashes],
                k % 1_000_000,
                1024 + k / args.hashes
            )
            .into_bytes()
        })
        .collect();
    let mut poll = Poll::new()?;
    let mut conns: Vec<Conn> = (0..args.conns)
        .map(|c| Conn {
            src: Ipv4Addr::new(127, 0, 0, 2 + c as u8),
            stream: None,
            sent: false,
            buf: Vec::new(),
            next_peer: 0,
        })
        .collect();
    let (mut answered, mut failed, mut connects) = (0u64, 0u64, 0u64);
    let open = |c: &mut Conn, i: usize, poll: &mut Poll, connects: &mut u64| -> io::Result<()> {
        let mut s = connect_from(c.src, args.tracker)?;
        poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        c.stream = Some(s);
        c.sent = false;
        c.buf.clear();
        *connects += 1;
        Ok(())
    };
    for (i, c) in conns.iter_mut().enumerate() {
        open(c, i, &mut poll, &mut connects)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut read_buf = vec![0u8; 65536];
    let cpu_before = args.pid.and_then(cpu_secs);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(c) = conns.get_mut(i) else { continue };
            let Some(s) = c.stream.as_mut() else { continue };
            let mut reopen = false;
            if !c.sent && event.is_writable() {
                if s.peer_addr().is_err() {
                    failed += 1;
                    reopen = true;
                } else {
                    let request = &requests[i * per_conn + c.next_peer % per_conn];
                    match s.write(request) {
                        Ok(n) if n == request.len() => c.sent = true,
                        _ => {
                            failed += 1;
                            reopen = true;
                        }
                    }
                }
            }
            if c.sent && !reopen && (event.is_readable() || event.is_read_closed()) {
                loop {
                    match s.read(&mut read_buf) {
                        Ok(0) => {
                            reopen = true;
                            break;
                        }
                        Ok(n) => c.buf.extend_from_slice(&read_buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => {
                            reopen = true;
                            break;
                        }
                    }
                }
                if let Some((used, counted, close)) = answer(&c.buf) {
                    if counted {
                        answered += 1
                    } else {
                        failed += 1
                    }
                    c.buf.drain(..used);
                    c.next_peer += 1;
                    c.sent = false;
                    if close {
                        reopen = true;
                    } else {
                        // The same connection: writable now, send at once.
                        poll.registry().reregister(s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
                    }
                } else if reopen {
                    failed += 1;
                }
            }
            if reopen {
                if let Some(mut old) = c.stream.take() {
                    let _ = poll.registry().deregister(&mut old);
                }
                open(c, i, &mut poll, &mut connects)?;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.pid.and_then(cpu_secs)) {
        (Some(a), Some(b)) => format!("{:.0}", (b - a) / secs * 100.0),
        _ => "null".into(),
    };
    let rate = answered as f64 / secs;
    let mut out = io::stdout();
    writeln!(
        out,
        "{{\"announces_per_sec\":{rate:.0},\"answered\":{answered},\"failed\":{failed},\"connects\":{connects},\"seconds\":{secs:.2},\"conns\":{},\"tracker\":\"{}\",\"tracker_cpu_pct\":{cpu}}}",
        args.conns,
        SocketAddr::V4(args.tracker)
    )?;
    Ok(())
}

/// Publishes `args.publish` files over one catalog connection, in batches
/// of pipelined requests, then times the status page.
fn status_page(args: &Args) -> io::Result<()> {
    use lmk::hash::Hash20;
    use lmk::meta::FileMeta;
    use lmk::wire::catalog::{Request, Response, MAX_CATALOG_FRAME};
    use lmk::wire::split_frame;
    let mut s = std::net::TcpStream::connect(args.tracker)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let t0 = Instant::now();
    let mut published = 0;
    let mut read_buf = vec![0u8; 65536];
    for batch in (0..args.publish).collect::<Vec<_>>().chunks(500) {
        let mut out = Vec::new();
        for &n in batch {
            let name = format!("file-{:06}-{}.bin", n, ["alpha", "beta", "gamma", "delta"][n % 4]);
            let meta = FileMeta::new(name, 1 << 20, 1 << 20, vec![Hash20::of(&(n as u64).to_be_bytes())])
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            Request::Publish(meta).encode(&mut out);
        }
        s.write_all(&out)?;
        let (mut buf, mut answers) = (Vec::new(), 0);
        while answers < batch.len() {
            let n = s.read(&mut read_buf)?;
            if n == 0 {
                return Err(io::Error::other("the tracker closed the catalog connection"));
            }
            buf.extend_from_slice(&read_buf[..n]);
            let mut used = 0;
            while let Ok(Some((frame, len))) = split_frame(&buf[used..], MAX_CATALOG_FRAME) {
                match Response::decode(frame) {
                    Ok(Response::Published(_)) => published += 1,
                    other => return Err(io::Error::other(format!("publish refused: {other:?}"))),
                }
                used += len;
                answers += 1;
            }
            buf.drain(..used);
        }
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let time_get = |path: &str| -> io::Result<(f64, usize)> {
        let start = Instant::now();
        let mut s = std::net::TcpStream::connect(args.tracker)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        if !body.ends_with(b"0\r\n\r\n") {
            return Err(io::Error::other(format!("GET {path}: no whole chunked answer")));
        }
        Ok((start.elapsed().as_secs_f64() * 1000.0, body.len()))
    };
    let median = |path: &str| -> io::Result<(f64, usize)> {
        let mut runs = Vec::new();
        let mut size = 0;
        for _ in 0..args.page_runs.max(1) {
            let (ms, n) = time_get(path)?;
            runs.push(ms);
            size = n;
        }
        runs.sort_by(f64::total_cmp);
        Ok((runs[runs.len() / 2], size))
    };
    let (first_ms, first_bytes) = median("/")?;
    let (filter_ms, filter_bytes) = median("/?q=gamma&page=3")?;
    let (last_ms, _) = median(&format!("/?page={}", args.publish.div_ceil(100)))?;
    let rss = args.pid.and_then(common::rss_kb).map_or("null".into(), |kb| kb.to_string());
    writeln!(
        io::stdout(),
        "{{\"files\":{published},\"publish_seconds\":{publish_secs:.1},\"first_page_ms\":{first_ms:.2},\"first_page_bytes\":{first_bytes},\"filtered_page_ms\":{filter_ms:.2},\"filtered_page_bytes\":{filter_bytes},\"last_page_ms\":{last_ms:.2},\"tracker_rss_kb\":{rss}}}"
    )?;
    Ok(())
}

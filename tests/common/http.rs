//! A small HTTP/1.1 client for the tests of the tracker's HTTP face, and
//! publishing made-up files so its pages have something to list.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::wire::catalog::{Request, Response};

/// One answer: status code, head (lower-cased), body (de-chunked).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on a fresh connection (`Connection: close`).
pub fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (answer, used) = parse(&raw).unwrap_or_else(|| panic!("GET {path}: no whole answer in {raw:?}"));
    assert_eq!(used, raw.len(), "GET {path}: bytes after the answer");
    answer
}

/// Reads answers from `s` until `n` whole ones are in (deadline 10 s).
pub fn read_answers(s: &mut TcpStream, n: usize) -> Vec<Answer> {
    let deadline = Instant::now() + Duration::from_secs(10);
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let (mut raw, mut answers, mut buf) = (Vec::new(), Vec::new(), [0u8; 65536]);
    while answers.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} answers within 10 s", answers.len());
        if let Some((a, used)) = parse(&raw) {
            answers.push(a);
            raw.drain(..used);
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("closed after {} of {n} answers", answers.len()),
            Ok(k) => raw.extend_from_slice(&buf[..k]),
            Err(_) => {}
        }
    }
    answers
}

/// Whether the tracker closes `s` (EOF or reset) within `limit`, reading
/// and dropping whatever it sends before.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The first whole answer in `raw` and the bytes it took.
fn parse(raw: &[u8]) -> Option<(Answer, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
    if let Some(len) = header("content-length:") {
        let len: usize = len.parse().ok()?;
        let body = raw.get(end..end + len)?.to_vec();
        return Some((Answer { status, head, body }, end + len));
    }
    let (mut at, mut body) = (end, Vec::new());
    loop {
        let line_end = raw.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[at..line_end]).ok()?, 16).ok()?;
        let data = line_end + 2;
        raw.get(data..data + size + 2)?;
        body.extend_from_slice(&raw[data..data + size]);
        at = data + size + 2;
        if size == 0 {
            return Some((Answer { status, head, body }, at));
        }
    }
}

/// Publishes a made-up file of `size` bytes named `name` (one chunk hash
/// per chunk, none real) from 127.0.0.1; returns its content id.
pub fn publish(tracker: SocketAddr, name: &str, size: u64) -> Hash20 {
    let chunks = size.div_ceil(MIN_CHUNK as u64);
    let hashes = (0..chunks).map(|i| Hash20::of(format!("{name}{i}").as_bytes())).collect();
    let meta = FileMeta::new(name.to_string(), size, MIN_CHUNK, hashes).expect("meta");
    match super::catalog_request(tracker, &Request::Publish(meta)) {
        Response::Published(id) => id,
        other => panic!("publish {name}: {other:?}"),
    }
}

/// Percent-encodes bytes for a query (every byte, as some clients do).
pub fn escape_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// `GET /announce` for `hash` as a BitTorrent client sends it.
pub fn announce_path(hash: &Hash20, peer_id: &str, port: u16, left: u64) -> String {
    format!(
        "/announce?info_hash={}&peer_id={peer_id}&port={port}&uploaded=0&downloaded=0&left={left}&compact=1&event=started",
        escape_bytes(&hash.0)
    )
}

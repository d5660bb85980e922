//! Fakes run inside the test process, built on the crate's wire codecs, to
//! inject faults the shipped binaries never produce: seeders that lie about
//! chunk contents or stall, a tracker that hands out a hostile file name.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lmk::meta::FileMeta;
use lmk::peer::bitfield::Bitfield;
use lmk::wire::catalog::{self, ErrorCode, ListEntry, MAX_CATALOG_FRAME};
use lmk::wire::peer::{Message, RejectReason, State, MAX_PEER_FRAME};
use lmk::wire::split_frame;
use lmk::wire::udp::{self, Event};

use super::UdpClient;

/// Threads that stop when the owner is dropped.
struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    fn new() -> Workers {
        Workers { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new() }
    }

    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || f(stop)));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Accepts on `listener` (non-blocking) until `stop`, handing each stream
/// (blocking, 100 ms read timeout) to `serve` on its own thread.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    serve: impl Fn(TcpStream, Arc<AtomicBool>) + Send + Sync + Clone + 'static,
) {
    listener.set_nonblocking(true).expect("nonblocking listener");
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                stream.set_nonblocking(false).expect("blocking stream");
                stream.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
                let (serve, stop) = (serve.clone(), Arc::clone(&stop));
                conns.push(std::thread::spawn(move || serve(stream, stop)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Reads frames from `stream` and answers each with `answer` until the peer
/// closes, a write fails, a frame is malformed, or `stop`.
fn frame_loop(
    mut stream: TcpStream,
    stop: &AtomicBool,
    max: u32,
    mut answer: impl FnMut(lmk::wire::Frame<'_>, &mut Vec<u8>) -> bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        loop {
            let (used, out) = match split_frame(&buf, max) {
                Ok(Some((frame, used))) => {
                    let mut out = Vec::new();
                    if !answer(frame, &mut out) {
                        return;
                    }
                    (used, out)
                }
                Ok(None) => break,
                Err(_) => return,
            };
            buf.drain(..used);
            if stream.write_all(&out).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// How a [`HostileSeeder`] misbehaves once it has said Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// Full bitfield and Available; every request answered with a chunk of
    /// the right length and the wrong bytes.
    Lie,
    /// Full bitfield, then State Unavailable, and nothing more, ever.
    Unavailable,
    /// Full bitfield and Available; a request gets the head of a Chunk frame,
    /// then one byte a second.
    Trickle,
    /// Full bitfield and Available; requests are read and never answered.
    Stall,
    /// Full bitfield and Available; every request answered Reject NoSlot
    /// (and no State Unavailable: the asker is to take it as "not now").
    NoSlot,
    /// Full bitfield and Available; a request gets a frame header announcing
    /// 4 GiB, then silence.
    HugeHeader,
    /// Not hostile, slow: full bitfield and Available; a request gets the
    /// true chunk (read from the file given to [`HostileSeeder::slow`]) at
    /// 48 KiB/s, 4 KiB at a time.
    Slow,
}

/// A seeder that announces itself to the tracker as a seeder of `meta` every
/// second, like a real one, and then serves as its [`Hostility`] says.
pub struct HostileSeeder {
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests answered (badly).
    pub answered: Arc<AtomicUsize>,
    _workers: Workers,
}

/// Hostile seeders listen and announce each from a loopback address of its
/// own: peers remember misbehaviour by address, and an honest seeder on
/// 127.0.0.1 must not share the liar's record.
static NEXT_HOSTILE: AtomicUsize = AtomicUsize::new(0);

impl HostileSeeder {
    pub fn start(meta: FileMeta, tracker: SocketAddr, hostility: Hostility) -> HostileSeeder {
        HostileSeeder::serving(meta, tracker, hostility, None)
    }

    /// An honest seeder of `src` whose uplink is 48 KiB/s (`Hostility::Slow`).
    pub fn slow(meta: FileMeta, tracker: SocketAddr, src: &std::path::Path) -> HostileSeeder {
        HostileSeeder::serving(meta, tracker, Hostility::Slow, Some(src.to_path_buf()))
    }

    fn serving(
        meta: FileMeta,
        tracker: SocketAddr,
        hostility: Hostility,
        src: Option<std::path::PathBuf>,
    ) -> HostileSeeder {
        let (ip, listener) = hostile_listener();
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::new();

        let (count, meta2) = (Arc::clone(&answered), meta.clone());
        let full = Bitfield::full(meta.chunk_count()).as_bytes().to_vec();
        let serve = move |stream: TcpStream, stop: Arc<AtomicBool>| {
            let Ok(mut writer) = stream.try_clone() else { return };
            frame_loop(stream, &stop, MAX_PEER_FRAME, |frame, out| match Message::decode(frame) {
                Ok(Message::Hello { id, .. }) => {
                    Message::Hello { id, port: addr.port(), nonce: 0x5eed }.encode(out);
                    Message::Bitfield(&full).encode(out);
                    let state = if hostility == Hostility::Unavailable { State::Unavailable } else { State::Available };
                    Message::State(state).encode(out);
                    true
                }
                Ok(Message::Bitfield(_) | Message::State(_) | Message::Have(_) | Message::Cancel(_)) => true,
                Ok(Message::Request { index, .. }) => {
                    let Some(len) = meta2.chunk_len(index) else { return false };
                    count.fetch_add(1, Ordering::SeqCst);
                    let wrong: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect();
                    match hostility {
                        Hostility::Lie => Message::Chunk { index, data: &wrong }.encode(out),
                        Hostility::NoSlot => Message::Reject { index, reason: RejectReason::NoSlot }.encode(out),
                        Hostility::Unavailable | Hostility::Stall => {}
                        Hostility::Trickle => {
                            let mut frame = Vec::new();
                            Message::Chunk { index, data: &wrong }.encode(&mut frame);
                            for b in frame {
                                if stop.load(Ordering::SeqCst) || writer.write_all(&[b]).is_err() {
                                    return false;
                                }
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                        Hostility::HugeHeader => out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x14]),
                        Hostility::Slow => {
                            let data = src.as_deref().and_then(|p| read_at(p, meta2.chunk_offset(index), len));
                            let mut frame = Vec::new();
                            Message::Chunk { index, data: data.as_deref().unwrap_or(&wrong) }.encode(&mut frame);
                            for piece in frame.chunks(4096) {
                                if stop.load(Ordering::SeqCst) || writer.write_all(piece).is_err() {
                                    return false;
                                }
                                std::thread::sleep(Duration::from_millis(83));
                            }
                        }
                    }
                    true
                }
                _ => false,
            });
        };
        let accepted = Arc::clone(&connections);
        workers.spawn(move |stop| accept_loop(listener, stop, accepted, serve));

        let id = meta.content_id();
        workers.spawn(move |stop| announce_as_seeder(tracker, ip, id, addr.port(), &stop));
        HostileSeeder { addr, connections, answered, _workers: workers }
    }
}

/// `len` bytes of the file at `path` from `offset`.
fn read_at(path: &std::path::Path, offset: u64, len: u32) -> Option<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut data = vec![0; len as usize];
    file.read_exact(&mut data).ok()?;
    Some(data)
}

/// A listener on the next hostile loopback address (127.0.1.x).
fn hostile_listener() -> ([u8; 4], TcpListener) {
    let n = NEXT_HOSTILE.fetch_add(1, Ordering::SeqCst);
    let ip = [127, 0, 1, 1 + (n % 250) as u8];
    (ip, TcpListener::bind(SocketAddr::from((ip, 0))).expect("bind fake seeder"))
}

/// Announces `port` on `ip` as a seeder of `id` every second until `stop`,
/// then says goodbye.
fn announce_as_seeder(tracker: SocketAddr, ip: [u8; 4], id: lmk::hash::ContentId, port: u16, stop: &AtomicBool) {
    let mut client = UdpClient::connect_from(tracker, ip);
    let mut event = Event::Started;
    while !stop.load(Ordering::SeqCst) {
        client.announce(id, 0, event, port);
        event = Event::None;
        for _ in 0..20 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    client.announce(id, 0, Event::Stopped, port);
}

/// A peer that announces itself as a seeder of `meta` and, once a peer that
/// dialled it has said Hello, replays that Hello's nonce at `target` from
/// its own address every 100 ms: it dials, says Hello with the stolen
/// nonce, waits for the answer and hangs up. A core that took a nonce alone
/// as a peer's identity drops the real peer's connection each time.
pub struct NonceThief {
    /// Hellos with the stolen nonce that `target` answered.
    pub replays: Arc<AtomicUsize>,
    _workers: Workers,
}

impl NonceThief {
    pub fn start(meta: FileMeta, tracker: SocketAddr, target: SocketAddr) -> NonceThief {
        let (ip, listener) = hostile_listener();
        let addr = listener.local_addr().expect("local addr");
        let stolen: Arc<std::sync::Mutex<Option<u64>>> = Arc::default();
        let replays = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::new();
        let id = meta.content_id();

        let heard = Arc::clone(&stolen);
        let serve = move |stream: TcpStream, stop: Arc<AtomicBool>| {
            frame_loop(stream, &stop, MAX_PEER_FRAME, |frame, out| match Message::decode(frame) {
                Ok(Message::Hello { id, nonce, .. }) => {
                    *heard.lock().expect("nonce lock") = Some(nonce);
                    Message::Hello { id, port: addr.port(), nonce: 0x7e1f }.encode(out);
                    Message::Bitfield(Bitfield::new(meta.chunk_count()).as_bytes()).encode(out);
                    true
                }
                Ok(_) => true,
                Err(_) => false,
            });
        };
        workers.spawn(move |stop| accept_loop(listener, stop, Arc::new(AtomicUsize::new(0)), serve));
        workers.spawn(move |stop| announce_as_seeder(tracker, ip, id, addr.port(), &stop));

        let count = Arc::clone(&replays);
        workers.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let Some(nonce) = *stolen.lock().expect("nonce lock") else { continue };
                let Ok(mut s) = super::connect_from(Ipv4Addr::from(ip), target) else { continue };
                let mut hello = Vec::new();
                Message::Hello { id, port: 0, nonce }.encode(&mut hello);
                if s.write_all(&hello).is_err() || s.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
                    continue;
                }
                // Its Hello back: the replayed one was taken in.
                let mut head = [0u8; 5];
                if s.read_exact(&mut head).is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        NonceThief { replays, _workers: workers }
    }
}

/// A catalog client that says what the test tells it to, from a chosen
/// loopback address, with any number of requests in flight.
pub struct CatalogClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl CatalogClient {
    /// Connects to `tracker` from `source` (any 127.0.0.0/8 address).
    pub fn connect_from(source: Ipv4Addr, tracker: SocketAddr) -> CatalogClient {
        let stream =
            super::connect_from(source, tracker).unwrap_or_else(|e| panic!("connect {tracker} from {source}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        CatalogClient { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, requests: &[catalog::Request]) {
        let mut out = Vec::new();
        for r in requests {
            r.encode(&mut out);
        }
        self.stream.write_all(&out).expect("catalog send");
    }

    /// The next response; panics if the tracker closes or stays silent 20 s.
    pub fn recv(&mut self) -> catalog::Response {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some((frame, used)) = split_frame(&self.buf, MAX_CATALOG_FRAME).expect("a well-formed frame") {
                let response = catalog::Response::decode(frame).expect("a catalog response");
                self.buf.drain(..used);
                return response;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("tracker closed the catalog connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("catalog read: {e}"),
            }
        }
    }

    pub fn ask(&mut self, request: catalog::Request) -> catalog::Response {
        self.send(&[request]);
        self.recv()
    }
}

/// A tracker (catalog on TCP, BEP 15 on UDP, same port) whose catalog holds
/// exactly one file, `meta`, whatever it is asked for, and whose swarms are
/// empty.
pub struct FakeTracker {
    pub addr: SocketAddr,
    /// Catalog requests answered.
    pub requests: Arc<AtomicUsize>,
    _workers: Workers,
}

impl FakeTracker {
    pub fn start(meta: FileMeta) -> FakeTracker {
        FakeTracker::answering(move |request| match request {
            catalog::Request::GetMeta(_) => catalog::Response::Meta(meta.clone()),
            catalog::Request::List => catalog::Response::List(vec![ListEntry {
                id: meta.content_id(),
                name: meta.name().to_string(),
                size: meta.size(),
                chunk_size: meta.chunk_size(),
                seeders: 0,
            }]),
            _ => catalog::Response::Error { code: ErrorCode::Refused, message: "fake".into() },
        })
    }

    /// A tracker whose catalog answers every request with `answer`.
    pub fn answering(
        answer: impl Fn(catalog::Request) -> catalog::Response + Send + Sync + Clone + 'static,
    ) -> FakeTracker {
        let (udp, listener) = bind_pair();
        let addr = udp.local_addr().expect("local addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::new();

        let count = Arc::clone(&requests);
        let serve = move |stream: TcpStream, stop: Arc<AtomicBool>| {
            frame_loop(stream, &stop, MAX_CATALOG_FRAME, |frame, out| {
                let Ok(request) = catalog::Request::decode(frame) else { return false };
                count.fetch_add(1, Ordering::SeqCst);
                answer(request).encode(out);
                true
            });
        };
        workers.spawn(move |stop| accept_loop(listener, stop, Arc::new(AtomicUsize::new(0)), serve));

        workers.spawn(move |stop| {
            udp.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else { continue };
                let response = match udp::Request::decode(&buf[..n]) {
                    Ok(udp::Request::Connect { transaction_id }) => {
                        udp::Response::Connect { transaction_id, connection_id: 42 }
                    }
                    Ok(udp::Request::Announce(a)) => udp::Response::Announce {
                        transaction_id: a.transaction_id,
                        interval: 1,
                        leechers: 0,
                        seeders: 0,
                        peers: Vec::new(),
                    },
                    _ => continue,
                };
                let mut out = Vec::new();
                response.encode(&mut out, false);
                let _ = udp.send_to(&out, from);
            }
        });
        FakeTracker { addr, requests, _workers: workers }
    }
}

/// A UDP socket and a TCP listener on the same ephemeral port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().expect("local addr")) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP after 50 tries");
}

/// A loopback address where nothing answers, held while this lives: a UDP
/// socket that never reads (datagrams go unanswered) and a TCP socket bound
/// but not listening (connections are refused). Holding the port keeps every
/// other process, the tests running beside this one included, from taking it
/// meanwhile, which would answer for the dead tracker or keep a tracker
/// started there later from binding.
pub struct Dead {
    addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: OwnedFd,
}

impl Dead {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frees the port, for a tracker to start there at once.
    pub fn release(self) -> SocketAddr {
        self.addr
    }
}

pub fn dead_addr() -> Dead {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = udp.local_addr().expect("local addr");
        if let Some(tcp) = bound_tcp(addr) {
            return Dead { addr, _udp: udp, _tcp: tcp };
        }
    }
    panic!("no port free for both UDP and TCP after 50 tries");
}

/// A TCP socket bound to `addr` and not listening, or None when the port is taken.
fn bound_tcp(addr: SocketAddr) -> Option<OwnedFd> {
    let SocketAddr::V4(v4) = addr else { return None };
    // SAFETY: socket(2) returns a new descriptor or -1; a new descriptor is ours to own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a valid descriptor and a sockaddr_in of the length given.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len) };
    (rc == 0).then_some(fd)
}

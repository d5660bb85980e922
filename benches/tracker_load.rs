//! BEP 15 load generator for `make bench` (scripts/bench.sh): how many announces
//! per second a UDP tracker answers, and (with `--pid`) its memory per peer.
//!
//! ```text
//! cargo bench --bench tracker_load -- --tracker 127.0.0.1:PORT [--seconds 5] [--sockets 4]
//!     [--window 64] [--hashes 1000] [--peers 100000] [--pid PID] [--fill-timeout 60]
//!     [--probe N] [--rate R]
//! cargo bench --bench tracker_load -- --hashes 1000 --whitelist-out FILE
//! ```
//!
//! Single-threaded, std only plus the crate's own BEP 15 codec. Each socket is
//! bound to its own loopback source address (127.0.0.2, 127.0.0.3, ...) and
//! connected to the tracker, gets a connection id, then keeps `window` announces
//! in flight: it sends, reads replies until `WouldBlock`, and sends the next
//! announce in the slot a reply freed. A slot unanswered for 100 ms is sent
//! again (counted as lost), which re-primes the window after datagram loss.
//! Connection ids are refreshed every 60 s, and at once when the tracker says it
//! does not know the one we used.
//!
//! Info hash `i` is the SHA-1 of `i` as 8 big-endian bytes, so a whitelist can
//! be written beforehand (`--whitelist-out`: the hex hashes, one per line).
//! Peer `k` of a socket announces hash `k % hashes` on port `1024 + k / hashes`,
//! so sockets x ports x hashes give `--peers` distinct (source IP, port, hash)
//! peers. With `--peers` a fill phase first announces (event=started) each of
//! them once and waits for every answer; then the timed phase re-announces the
//! same peers (event=none) round-robin for `--seconds` and counts the replies
//! that match the action and transaction id of an announce in flight.
//!
//! That timed phase is a closed loop: a new announce goes out only when an
//! answer frees its slot, so the server is kept saturated and a round trip is
//! mostly the time spent queued behind the others in flight (in flight / rate,
//! Little's law): it measures the queue, not the server. With `--rate R` the
//! timed phase is an open loop instead: announces leave at R per second in
//! total, round-robin over the sockets, whatever comes back (a socket with
//! all `--window` slots waiting skips its turn, counted as `skipped`; a send
//! more than 1 ms behind its schedule is counted as `late`: the generator's
//! own lag), and between sends the generator sleeps in `epoll_wait` rather than
//! spinning, leaving the cores to the server. Below saturation that round
//! trip is the server's own latency.
//!
//! Prints one JSON line and exits: 0 on success, 1 if the fill phase did not
//! finish in time or the tracker never answered a connect.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod common;

use common::{cpu_secs, info_hash, rss_kb};
use lmk::common::net::set_socket_option;
use lmk::common::rng::Rng;
use lmk::hash::Hash20;
use lmk::wire::udp::{AnnounceRequest, Event, Request, Response, ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_ERROR};

/// A slot unanswered this long is sent again.
const LOST_AFTER: Duration = Duration::from_millis(100);
/// Connection ids are refreshed this often (BEP 15: valid for at least a minute).
const REFRESH_CONNECTION: Duration = Duration::from_secs(60);
/// A connect unanswered this long is sent again.
const CONNECT_RETRY: Duration = Duration::from_millis(500);
/// Give up when no socket has a connection id after this long.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// Slot index bits in an announce transaction id; the rest is a sequence number.
const SLOT_BITS: u32 = 12;
const MAX_WINDOW: usize = 1 << SLOT_BITS;
/// Connect transaction ids have the top bit set; announce ids never do.
const CONNECT_TAG: u32 = 1 << 31;
/// Open loop: a send this far behind its schedule is counted as late.
const LATE: Duration = Duration::from_millis(1);

struct Args {
    tracker: SocketAddr,
    seconds: f64,
    sockets: usize,
    window: usize,
    hashes: usize,
    peers: usize,
    fill_timeout: f64,
    pid: Option<u32>,
    whitelist_out: Option<String>,
    probe: Option<usize>,
    rate: Option<f64>,
}

const USAGE: &str = "usage: tracker_load --tracker ADDR [--seconds S] [--sockets N] [--window N] [--hashes N] \
[--peers N] [--pid PID] [--fill-timeout S] [--probe N] [--rate R] | --hashes N --whitelist-out FILE";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tracker: SocketAddr::from(([127, 0, 0, 1], 6969)),
        seconds: 5.0,
        sockets: 4,
        window: 64,
        hashes: 1000,
        peers: 0,
        fill_timeout: 60.0,
        pid: None,
        whitelist_out: None,
        probe: None,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue; // cargo bench passes it to harness = false targets
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--tracker" => a.tracker = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => a.seconds = value.parse().map_err(|e| bad(&e))?,
            "--sockets" => a.sockets = value.parse().map_err(|e| bad(&e))?,
            "--window" => a.window = value.parse().map_err(|e| bad(&e))?,
            "--hashes" => a.hashes = value.parse().map_err(|e| bad(&e))?,
            "--peers" => a.peers = value.parse().map_err(|e| bad(&e))?,
            "--fill-timeout" => a.fill_timeout = value.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(value.parse().map_err(|e| bad(&e))?),
            "--whitelist-out" => a.whitelist_out = Some(value),
            "--probe" => a.probe = Some(value.parse().map_err(|e| bad(&e))?),
            "--rate" => a.rate = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if !(1..=4096).contains(&a.sockets) {
        return Err("--sockets must be 1..=4096 (one source address 127.0.0.2.. each)".into());
    }
    if !(1..=MAX_WINDOW).contains(&a.window) {
        return Err(format!("--window must be 1..={MAX_WINDOW}"));
    }
    if a.rate.is_some_and(|r| !(1.0..=10_000_000.0).contains(&r)) {
        return Err("--rate must be in [1, 10000000] announces per second".into());
    }
    if a.hashes == 0 {
        return Err("--hashes must be at least 1".into());
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0 && a.fill_timeout > 0.0 && a.fill_timeout <= 600.0) {
        return Err("--seconds and --fill-timeout must be in (0, 600]".into());
    }
    if a.peers.div_ceil(a.sockets).div_ceil(a.hashes) > usize::from(u16::MAX - 1024) {
        return Err("--peers too large: ports per (socket, hash) would pass 65535".into());
    }
    Ok(a)
}

#[derive(Clone, Copy)]
struct Slot {
    busy: bool,
    /// Busy, but to be sent again (same peer) once we have a connection id.
    resend: bool,
    seq: u32,
    peer: usize,
    sent: Instant,
}

struct Sock {
    sock: UdpSocket,
    /// Datagrams to send with the next `sendmmsg`.
    tx: Batch,
    /// Slots whose announce is queued in `tx`: their send time is taken
    /// right before the `sendmmsg`, not when the loop queued them.
    stamp_on_send: Vec<usize>,
    ip: Ipv4Addr,
    rng: Rng,
    connection_id: Option<u64>,
    connected_at: Instant,
    /// A connect in flight: its transaction id and when it was sent.
    connecting: Option<(u32, Instant)>,
    slots: Vec<Slot>,
    /// Next peer (local index) to announce; peers of this socket are 0..per_socket.
    next_peer: usize,
    /// Fill phase: peers whose announce has been answered.
    filled: usize,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    sent: u64,
    received: u64,
    errors: u64,
    lost: u64,
    /// Open loop: sends more than `LATE` behind schedule, and turns skipped for want of a free slot.
    late: u64,
    skipped: u64,
}

struct Load {
    hashes: Vec<Hash20>,
    per_socket: usize,
    event: Event,
    /// Fill phase: announce each peer once and no more.
    fill: bool,
    counts: Counts,
    /// Received datagrams, one `recvmmsg` at a time.
    rx: Batch,
    out: Vec<u8>,
    /// Timed phase: each answered announce's round trip, in microseconds.
    latencies: Vec<u32>,
    /// Timed phase: only the first `probe` peers of each socket announce.
    probe: Option<usize>,
    /// Timed phase: announces per second, sent whatever comes back (open loop).
    rate: Option<f64>,
}

impl Load {
    fn open_loop(&self) -> bool {
        self.rate.is_some() && !self.fill
    }

    /// An answer freed slot `i`: closed loop, its next announce goes out; open loop, it waits for its turn.
    fn freed(&mut self, s: &mut Sock, i: usize, now: Instant) {
        if self.open_loop() {
            s.slots[i].busy = false;
        } else {
            self.next_in_slot(s, i, now);
        }
    }

    fn send_connect(&mut self, s: &mut Sock, now: Instant) {
        let txid = CONNECT_TAG | (s.rng.next_u32() >> 1);
        self.out.clear();
        Request::Connect { transaction_id: txid }.encode(&mut self.out);
        s.queue(&self.out);
        s.connecting = Some((txid, now));
    }

    /// Sends the announce of slot `i` (its peer, a new sequence number).
    fn send_announce(&mut self, s: &mut Sock, i: usize, now: Instant) {
        let slot = &mut s.slots[i];
        slot.busy = true;
        let Some(connection_id) = s.connection_id else {
            slot.resend = true; // sent once we have an id
            return;
        };
        slot.seq = slot.seq.wrapping_add(1) & ((CONNECT_TAG - 1) >> SLOT_BITS);
        let transaction_id = (slot.seq << SLOT_BITS) | i as u32;
        let k = slot.peer;
        let mut peer_id = [0u8; 20];
        peer_id[..8].copy_from_slice(b"-LB0001-");
        peer_id[8..12].copy_from_slice(&s.ip.octets());
        peer_id[12..20].copy_from_slice(&(k as u64).to_be_bytes());
        let req = Request::Announce(AnnounceRequest {
            connection_id,
            transaction_id,
            info_hash: self.hashes[k % self.hashes.len()],
            peer_id,
            downloaded: 0,
            // One peer in four is a seeder, the same one every time.
            left: if k.is_multiple_of(4) { 0 } else { 1 << 30 },
            uploaded: 0,
            event: self.event,
            ip: Ipv4Addr::UNSPECIFIED,
            key: k as u32,
            num_want: -1,
            port: 1024 + (k / self.hashes.len()) as u16,
        });
        self.out.clear();
        req.encode(&mut self.out);
        slot.sent = now;
        slot.resend = false;
        // Dropped by a full send buffer: the slot times out and is sent again.
        s.queue(&self.out);
        s.stamp_on_send.push(i);
        self.counts.sent += 1;
    }

    /// Puts the next peer into slot `i` and sends it; false when the fill
    /// phase has no peer left for it.
    fn next_in_slot(&mut self, s: &mut Sock, i: usize, now: Instant) -> bool {
        if s.next_peer >= self.probe.unwrap_or(self.per_socket) {
            if self.fill {
                s.slots[i].busy = false;
                return false;
            }
            s.next_peer = 0;
        }
        s.slots[i].peer = s.next_peer;
        s.next_peer += 1;
        self.send_announce(s, i, now);
        true
    }

    /// Reads every datagram waiting on the socket; true if any arrived. Each
    /// batch is timed when it arrives, not at the start of the loop's turn.
    fn receive(&mut self, s: &mut Sock) -> bool {
        let mut any = false;
        loop {
            let n = match self.rx.receive(&s.sock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // e.g. ECONNREFUSED from an ICMP error: the tracker is gone or not there yet.
                    self.counts.errors += 1;
                    break;
                }
            };
            any = true;
            let now = Instant::now();
            let rx = std::mem::take(&mut self.rx);
            for i in 0..n {
                // When the kernel queued it: the time this loop took to come round is not the server's.
                let arrived = now.checked_sub(rx.waited(i)).unwrap_or(now);
                self.answer(s, now, arrived, rx.get(i));
            }
            self.rx = rx;
            s.flush();
        }
        s.flush();
        any
    }

    /// One datagram from the tracker, queued on our socket at `arrived`.
    fn answer(&mut self, s: &mut Sock, now: Instant, arrived: Instant, data: &[u8]) {
        let n = data.len();
        if n < 8 {
            self.counts.errors += 1;
            return;
        }
        let action = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let txid = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if txid & CONNECT_TAG != 0 {
            match (s.connecting, Response::decode(data, false)) {
                (Some((want, _)), Ok(Response::Connect { transaction_id, connection_id }))
                    if action == ACTION_CONNECT && transaction_id == want =>
                {
                    s.connection_id = Some(connection_id);
                    s.connected_at = now;
                    s.connecting = None;
                }
                _ => self.counts.errors += 1,
            }
            return;
        }
        let i = (txid & (MAX_WINDOW as u32 - 1)) as usize;
        let seq = txid >> SLOT_BITS;
        if !s.slots.get(i).is_some_and(|slot| slot.busy && !slot.resend && slot.seq == seq) {
            return; // a late answer to an announce we already sent again
        }
        // Action and transaction id are enough to count an answer; the
        // rest is decoded only when it is not an announce answer.
        if action == ACTION_ANNOUNCE && n >= 20 {
            self.counts.received += 1;
            if self.fill {
                s.filled += 1;
            } else {
                let rtt = arrived.saturating_duration_since(s.slots[i].sent);
                self.latencies.push(rtt.as_micros().min(u128::from(u32::MAX)) as u32);
            }
            self.freed(s, i, now);
            return;
        }
        match Response::decode(data, false) {
            Ok(Response::Error { message, .. }) if action == ACTION_ERROR && message.contains("connection id") => {
                // Our id expired: get a new one; the slot is sent again once we have it.
                self.counts.errors += 1;
                s.connection_id = None;
                s.slots[i].resend = true;
                if s.connecting.is_none() {
                    self.send_connect(s, now);
                }
            }
            _ => {
                // An error answer, or one our codec refuses (opentracker answers a hash
                // outside its whitelist with a bare 8-byte announce header).
                self.counts.errors += 1;
                if self.fill {
                    s.filled += 1; // answered, if not stored: do not wait for it
                }
                self.freed(s, i, now);
            }
        }
    }

    /// Connects, refreshes the id, resends lost slots, fills idle slots.
    fn tend(&mut self, s: &mut Sock, now: Instant) {
        match s.connecting {
            Some((_, sent)) if now - sent >= CONNECT_RETRY => self.send_connect(s, now),
            None if s.connection_id.is_none() || now - s.connected_at >= REFRESH_CONNECTION => {
                self.send_connect(s, now)
            }
            _ => {}
        }
        if s.connection_id.is_none() {
            return;
        }
        for i in 0..s.slots.len() {
            if s.slots[i].resend {
                self.send_announce(s, i, now);
            } else if s.slots[i].busy {
                if now - s.slots[i].sent >= LOST_AFTER {
                    self.counts.lost += 1;
                    if self.open_loop() {
                        s.slots[i].busy = false; // its turn comes again on schedule
                    } else {
                        self.send_announce(s, i, now);
                    }
                }
            } else if self.open_loop() {
                // Open loop: idle slots wait for the schedule.
            } else if !self.fill || s.next_peer < self.per_socket {
                self.next_in_slot(s, i, now);
            }
        }
        s.flush();
    }

    /// Drives every socket until `until`, or (fill phase) until every peer
    /// is answered. Only the sockets `ready` reports readable are read: with
    /// 64 sockets a `recvmmsg` on each per turn, most finding nothing, made
    /// the generator the bottleneck of its own open loop (late, then bursts).
    fn run(&mut self, socks: &mut [Sock], ready: &mut Ready, until: Instant) -> bool {
        let mut next_tend = Instant::now();
        let mut next_send = next_tend;
        let mut turn = 0;
        loop {
            let now = Instant::now();
            if now >= until {
                return !self.fill;
            }
            if self.fill && socks.iter().all(|s| s.filled >= self.per_socket) {
                return true;
            }
            let mut any = false;
            for i in ready.wait(Duration::ZERO) {
                if let Some(s) = socks.get_mut(i) {
                    any |= self.receive(s);
                }
            }
            if let Some(gap) = self.rate.filter(|_| !self.fill).map(|r| Duration::from_secs_f64(1.0 / r)) {
                let now = Instant::now();
                let count = socks.len();
                while next_send <= now {
                    if now - next_send > LATE {
                        self.counts.late += 1;
                    }
                    let s = &mut socks[turn];
                    turn = (turn + 1) % count;
                    match s.slots.iter().position(|slot| !slot.busy) {
                        Some(i) if s.connection_id.is_some() => {
                            self.next_in_slot(s, i, now);
                        }
                        _ => self.counts.skipped += 1,
                    }
                    next_send += gap;
                }
                socks.iter_mut().for_each(Sock::flush);
                if !any {
                    // Nothing came back: sleep until an answer or the next send, so the
                    // generator does not hold a core the server may need.
                    for i in ready.wait(next_send.min(next_tend).saturating_duration_since(Instant::now())) {
                        if let Some(s) = socks.get_mut(i) {
                            self.receive(s);
                        }
                    }
                }
                any = true;
            }
            if now >= next_tend {
                for s in socks.iter_mut() {
                    self.tend(s, now);
                }
                next_tend = now + Duration::from_millis(5);
            }
            if !any {
                std::thread::yield_now();
            }
        }
    }
}

/// The sockets that have datagrams waiting, from one epoll instance
/// (level-triggered: a socket left unread is reported again).
struct Ready {
    fd: libc::c_int,
    events: Vec<libc::epoll_event>,
}

impl Ready {
    fn new(socks: &[Sock]) -> io::Result<Ready> {
        // SAFETY: no pointers; a failure is -1 with errno.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let ready = Ready { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; socks.len()] };
        for (i, s) in socks.iter().enumerate() {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
            // SAFETY: valid descriptors and a live event struct.
            if unsafe { libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, s.sock.as_raw_fd(), &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ready)
    }

    /// Waits up to `timeout` (zero: not at all) for readable sockets; their indices.
    fn wait(&mut self, timeout: Duration) -> impl Iterator<Item = usize> + '_ {
        let ms = timeout.as_micros().div_ceil(1000).min(1000) as libc::c_int;
        // SAFETY: `events` is a live array of the length given.
        let n = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), self.events.len() as libc::c_int, ms) };
        let found = usize::try_from(n).unwrap_or(0).min(self.events.len());
        self.events[..found].iter().map(|e| e.u64 as usize)
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Datagrams per system call, each way: the generator batches its system
/// calls (`recvmmsg`, `sendmmsg` on its connected sockets) so that it costs
/// less per datagram than the trackers it measures.
const BATCH: usize = 64;
/// Room per datagram: an announce is 98 bytes, an answer with 50 IPv4 peers 320.
const SLOT: usize = 2048;

/// Room for one `SCM_TIMESTAMPNS` control message (CMSG_SPACE of a timespec is 32 on Linux).
const CONTROL: usize = 64;

/// `BATCH` datagram buffers and their lengths; received ones also how long
/// each waited in the socket (from the kernel's `SO_TIMESTAMPNS` stamp).
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    lens: Vec<usize>,
    control: Vec<[u8; CONTROL]>,
    waits: Vec<Duration>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            data: vec![0; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
            control: vec![[0; CONTROL]; BATCH],
            waits: Vec::with_capacity(BATCH),
        }
    }

    /// How long datagram `i` waited in the socket before the `recvmmsg` that took it (zero without a stamp).
    fn waited(&self, i: usize) -> Duration {
        self.waits.get(i).copied().unwrap_or_default()
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.data[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// One `recvmmsg`: how many datagrams arrived.
    fn receive(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        // SAFETY: plain C structs, all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((iov, msg), control)) in iovs.iter_mut().zip(msgs.iter_mut()).zip(&mut self.control).enumerate() {
            iov.iov_base = self.data[i * SLOT..].as_mut_ptr().cast();
            iov.iov_len = SLOT;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.as_mut_ptr().cast();
            msg.msg_hdr.msg_controllen = CONTROL as _;
        }
        // SAFETY: the headers point at live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let wall = std::time::SystemTime::now();
        self.lens.clear();
        self.lens.extend(msgs.iter().take(n as usize).map(|m| (m.msg_len as usize).min(SLOT)));
        self.waits.clear();
        self.waits.extend(msgs.iter().take(n as usize).map(|m| {
            let stamp = kernel_stamp(&m.msg_hdr).unwrap_or(wall);
            wall.duration_since(stamp).unwrap_or_default()
        }));
        Ok(n as usize)
    }

    /// Sends everything queued with one `sendmmsg` (what the socket has no
    /// room for is dropped: those slots time out and are sent again).
    fn send(&mut self, sock: &UdpSocket) {
        if self.lens.is_empty() {
            return;
        }
        // SAFETY: plain C structs, all-zero is valid.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (iov, msg)) in iovs.iter_mut().zip(msgs.iter_mut()).enumerate().take(self.lens.len()) {
            iov.iov_base = self.data[i * SLOT..].as_mut_ptr().cast();
            iov.iov_len = self.lens[i];
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < self.lens.len() {
            // SAFETY: the headers point at live buffers of the sizes given.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (self.lens.len() - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
        self.lens.clear();
    }
}

/// The `SCM_TIMESTAMPNS` stamp of a received message: when the kernel queued it.
fn kernel_stamp(hdr: &libc::msghdr) -> Option<std::time::SystemTime> {
    // SAFETY: the kernel filled msg_control (within msg_controllen) with
    // well-formed control messages; the CMSG macros walk only within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let since = Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?);
                return Some(std::time::UNIX_EPOCH + since);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Asks the kernel to stamp each datagram it queues on `sock` (`SO_TIMESTAMPNS`).
fn stamp_arrivals(sock: &UdpSocket) -> io::Result<()> {
    set_socket_option(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

impl Sock {
    /// Queues a datagram for the next `flush`.
    fn queue(&mut self, datagram: &[u8]) {
        if self.tx.lens.len() == BATCH {
            self.flush();
        }
        let i = self.tx.lens.len();
        self.tx.data[i * SLOT..i * SLOT + datagram.len()].copy_from_slice(datagram);
        self.tx.lens.push(datagram.len());
    }

    fn flush(&mut self) {
        let now = Instant::now();
        for i in self.stamp_on_send.drain(..) {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.sent = now;
            }
        }
        self.tx.send(&self.sock);
    }
}

/// Round-trip percentiles of the timed phase, as JSON fields.
fn latency_json(us: &mut [u32]) -> String {
    if us.is_empty() {
        return String::new();
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    format!(
        ", \"latency_us_p50\": {}, \"latency_us_p99\": {}, \"latency_us_p999\": {}, \"latency_us_max\": {}",
        at(0.5),
        at(0.99),
        at(0.999),
        us[us.len() - 1]
    )
}

fn json_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tracker_load: {e}");
            return ExitCode::from(2);
        }
    };
    let hashes: Vec<Hash20> = (0..args.hashes).map(info_hash).collect();
    if let Some(path) = &args.whitelist_out {
        let text: String = hashes.iter().map(|h| format!("{}\n", h.to_hex())).collect();
        return match fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracker_load: cannot write {path}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let fill = args.peers > 0;
    // Without --peers each socket is one peer in every swarm.
    let per_socket = if fill { args.peers.div_ceil(args.sockets) } else { args.hashes };
    let start = Instant::now();
    let mut socks = Vec::new();
    for n in 0..args.sockets {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + n as u32);
        // Connected: no route lookup per datagram, and only the tracker's answers arrive.
        let bound = UdpSocket::bind((ip, 0))
            .and_then(|s| s.connect(args.tracker).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| stamp_arrivals(&s).map(|()| s));
        let sock = match bound {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tracker_load: cannot bind {ip}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let now = Instant::now();
        let idle = Slot { busy: false, resend: false, seq: 0, peer: 0, sent: now };
        socks.push(Sock {
            sock,
            tx: Batch::new(),
            stamp_on_send: Vec::with_capacity(BATCH),
            ip,
            rng: Rng::new(0x7ac4 ^ n as u64),
            connection_id: None,
            connected_at: now,
            connecting: None,
            slots: vec![idle; args.window],
            next_peer: 0,
            filled: 0,
        });
    }
    let mut ready = match Ready::new(&socks) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tracker_load: epoll: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut load = Load {
        hashes,
        per_socket,
        event: Event::Started,
        fill,
        counts: Counts::default(),
        rx: Batch::new(),
        out: Vec::with_capacity(128),
        latencies: Vec::new(),
        probe: None,
        rate: None,
    };
    let rss_before = args.pid.and_then(rss_kb);

    // Connect every socket first (bounded), so neither phase times handshakes.
    let connect_until = Instant::now() + CONNECT_DEADLINE;
    while socks.iter().any(|s| s.connection_id.is_none()) && Instant::now() < connect_until {
        let now = Instant::now();
        for s in socks.iter_mut() {
            load.receive(s);
            if s.connection_id.is_none() && s.connecting.is_none_or(|(_, t)| now - t >= CONNECT_RETRY) {
                load.send_connect(s, now);
                s.flush();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if socks.iter().any(|s| s.connection_id.is_none()) {
        println!("{{\"error\": \"no connect answer from {} within {:?}\"}}", args.tracker, CONNECT_DEADLINE);
        return ExitCode::FAILURE;
    }

    let mut fill_seconds = None;
    let mut fill_counts = Counts::default();
    if fill {
        let t = Instant::now();
        let done = load.run(&mut socks, &mut ready, t + Duration::from_secs_f64(args.fill_timeout));
        fill_seconds = Some(t.elapsed().as_secs_f64());
        fill_counts = load.counts;
        if !done {
            let filled: usize = socks.iter().map(|s| s.filled).sum();
            println!(
                "{{\"error\": \"fill phase incomplete: {filled} of {} peers answered in {:.1} s\"}}",
                per_socket * args.sockets,
                args.fill_timeout
            );
            return ExitCode::FAILURE;
        }
    }
    let rss_after_fill = args.pid.and_then(rss_kb);

    // The timed phase: the same peers again, round-robin, every slot busy.
    load.fill = false;
    load.probe = args.probe.map(|p| p.clamp(1, per_socket));
    load.rate = args.rate;
    load.event = Event::None;
    load.counts = Counts::default();
    for s in socks.iter_mut() {
        s.next_peer = 0;
        for slot in s.slots.iter_mut() {
            slot.busy = false; // answers to fill announces still in flight are ignored
            slot.resend = false;
            slot.seq = slot.seq.wrapping_add(1);
        }
    }
    let cpu_before = args.pid.and_then(cpu_secs);
    let t = Instant::now();
    load.run(&mut socks, &mut ready, t + Duration::from_secs_f64(args.seconds));
    let seconds = t.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.pid.and_then(cpu_secs)) {
        (Some(a), Some(b)) => Some(format!("{:.1}", (b - a) / seconds * 100.0)),
        _ => None,
    };
    let rss_after = args.pid.and_then(rss_kb);
    let c = load.counts;
    let peers = if fill { per_socket * args.sockets } else { 0 };
    let extra = format!(
        ", \"peers\": {peers}, \"fill_seconds\": {}, \"fill_errors\": {}, \"rss_before_kb\": {}, \"rss_after_fill_kb\": {}, \"rss_after_kb\": {}, \"tracker_cpu_pct\": {}",
        json_opt(fill_seconds.map(|s| format!("{s:.3}"))),
        fill_counts.errors,
        json_opt(rss_before),
        json_opt(rss_after_fill),
        json_opt(rss_after),
        json_opt(cpu),
    );
    let line = format!(
        "{{\"announces_per_sec\": {:.0}{}, \"offered_per_sec\": {}, \"late\": {}, \"skipped\": {}, \"sent\": {}, \"received\": {}, \"errors\": {}, \"lost\": {}, \"seconds\": {:.3}, \"sockets\": {}, \"window\": {}, \"hashes\": {}{extra}, \"total_seconds\": {:.3}}}",
        c.received as f64 / seconds,
        latency_json(&mut load.latencies),
        json_opt(args.rate.map(|r| format!("{r:.0}"))),
        c.late,
        c.skipped,
        c.sent,
        c.received,
        c.errors,
        c.lost,
        seconds,
        args.sockets,
        args.window,
        args.hashes,
        start.elapsed().as_secs_f64(),
    );
    println!("{line}");
    let _ = io::stdout().flush();
    ExitCode::SUCCESS
}

//! The per-datagram ceiling for `make bench` (scripts/bench.sh): a UDP
//! server that does one `recv_from` and one `send_to` per datagram and no
//! tracker work, answering in BEP 15's shape so the load generator counts
//! its answers: a connect gets a connection id, anything else an announce
//! answer. A tracker that also makes two system calls per datagram cannot
//! answer faster than this; only batching goes past it.
//!
//! ```text
//! cargo bench --bench udp_echo -- --listen 127.0.0.1:0 [--peers N] [--batch] [--record-hashes FILE]
//! ```
//!
//! `--peers N`: a leecher's announce (left > 0) is answered with N peers (6
//! bytes each), a seeder's with none: the bytes lmk-tracker sends under
//! `tracker_load`, whose seeders and leechers sit in separate swarms (a
//! leecher gets 50, a seeder no one), so the echo's datagrams, and what the
//! generator pays to take them, are the tracker's. Without it every answer is
//! 20 bytes, no peers.
//!
//! `--batch`: instead of the two calls per datagram, lmk-tracker's own loop
//! (`lmk::common::net`: epoll, `recvmmsg` and `sendmmsg` of up to 32) with
//! the echo's answer in place of the tracker's core: what batching alone does
//! on this kernel, the floor of a batching server.
//!
//! Prints `listening on ADDR` and serves until killed. With `--record-hashes`
//! it appends each info hash it has not seen yet to FILE (hex, one per
//! line): how `make bench` learns which hashes aquatic's load tester uses, to
//! give them to opentracker as its whitelist.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Instant;

use lmk::common::net::{set_socket_option, ConnId, Handler, Net};
use lmk::wire::{DecodeError, Frame};

/// The receive buffer lmk-tracker asks for (src/tracker/reactor.rs), so the
/// two lose datagrams alike when the process is not running.
const RECEIVE_BUFFER: usize = 4 << 20;
/// The most peers an answer may carry here (BEP 15 answers stay under 1500 bytes).
const MAX_PEERS: usize = 200;

/// How an answer is made: its peer count, and the hashes seen so far.
struct Answer {
    peers: usize,
    record: Option<File>,
    seen: HashSet<[u8; 20]>,
}

impl Answer {
    /// The answer to `request` in `reply`; false for a datagram too short to answer.
    fn make(&mut self, request: &[u8], reply: &mut Vec<u8>) -> bool {
        reply.clear();
        // Request: connection id (8), action (4), transaction id (4), ...
        let (Some(action), Some(transaction)) = (request.get(8..12), request.get(12..16)) else { return false };
        let action = u32::from_be_bytes([action[0], action[1], action[2], action[3]]);
        reply.extend_from_slice(&action.min(1).to_be_bytes());
        reply.extend_from_slice(transaction);
        if action == 0 {
            reply.extend_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
            return true;
        }
        // An announce: ..., info hash at 16..36, ..., left at 64..72 (of 98 bytes).
        let hash = request.get(16..36).filter(|_| request.len() >= 98);
        if let (Some(f), 1, Some(hash)) = (&mut self.record, action, hash) {
            let mut key = [0u8; 20];
            key.copy_from_slice(hash);
            if self.seen.insert(key) {
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(f, "{hex}");
            }
        }
        let leecher = request.get(64..72).is_some_and(|left| left.iter().any(|&b| b != 0));
        reply.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
        if leecher {
            for i in 0..self.peers {
                reply.extend_from_slice(&[127, 0, 0, 1]);
                reply.extend_from_slice(&(1024 + i as u16).to_be_bytes());
            }
        }
        true
    }
}

/// `--batch`: lmk-tracker's loop with the echo in place of the core.
struct Batched {
    answer: Answer,
    reply: Vec<u8>,
}

impl Handler for Batched {
    fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
    fn on_datagram(&mut self, net: &mut Net, _now: Instant, from: SocketAddr, data: &[u8]) {
        if self.answer.make(data, &mut self.reply) {
            net.send_to(from, &self.reply);
        }
    }
    fn on_tick(&mut self, _: &mut Net, _: Instant) {}
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut answer = Answer { peers: 0, record: None, seen: HashSet::new() };
    let mut batch = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--bench" => {} // cargo bench passes it to harness = false targets
            "--batch" => batch = true,
            "--listen" | "--peers" | "--record-hashes" => {
                let Some(v) = args.next() else {
                    eprintln!("udp_echo: {flag} needs a value");
                    return ExitCode::from(2);
                };
                match flag.as_str() {
                    "--listen" => match v.parse() {
                        Ok(a) => listen = a,
                        Err(e) => {
                            eprintln!("udp_echo: --listen {v}: {e}");
                            return ExitCode::from(2);
                        }
                    },
                    "--peers" => match v.parse() {
                        Ok(n) if n <= MAX_PEERS => answer.peers = n,
                        _ => {
                            eprintln!("udp_echo: --peers {v}: a count up to {MAX_PEERS}");
                            return ExitCode::from(2);
                        }
                    },
                    _ => match File::create(&v) {
                        Ok(f) => answer.record = Some(f),
                        Err(e) => {
                            eprintln!("udp_echo: cannot write {v}: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                }
            }
            _ => {
                eprintln!("usage: udp_echo [--listen ADDR] [--peers N] [--batch] [--record-hashes FILE]");
                return ExitCode::from(2);
            }
        }
    }
    if batch {
        return serve_batched(listen, answer);
    }
    let sock = match UdpSocket::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_echo: cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = set_socket_option(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER as i32) {
        eprintln!("udp_echo: SO_RCVBUF: {e}");
    }
    match sock.local_addr() {
        Ok(a) => println!("listening on {a}"),
        Err(e) => {
            eprintln!("udp_echo: {e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 2048];
    let mut reply = Vec::with_capacity(2048);
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        if answer.make(&buf[..n], &mut reply) {
            let _ = sock.send_to(&reply, from);
        }
    }
}

fn serve_batched(listen: SocketAddr, answer: Answer) -> ExitCode {
    let mut net = match Net::new() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("udp_echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match net.bind_udp(listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp_echo: cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = net.set_udp_receive_buffer(RECEIVE_BUFFER) {
        eprintln!("udp_echo: SO_RCVBUF: {e}");
    }
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    let mut handler = Batched { answer, reply: Vec::with_capacity(2048) };
    match net.run(&mut handler, 0) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

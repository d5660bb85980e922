//! The per-datagram ceiling for `make bench` (scripts/bench.sh): a UDP
//! server that does one `recv_from` and one `send_to` per datagram and no
//! tracker work, answering in BEP 15's shape so the load generator counts
//! its answers: a connect gets a connection id, anything else a 20-byte
//! announce answer with no peers. A tracker that also makes two system calls
//! per datagram cannot answer faster than this; only batching goes past it.
//!
//! ```text
//! cargo bench --bench udp_echo -- --listen 127.0.0.1:0 [--record-hashes FILE]
//! ```
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

use lmk::common::net::set_socket_option;

fn main() -> ExitCode {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut record: Option<File> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--bench", value) => {
                // cargo bench passes it to harness = false targets
                if let Some(v) = value {
                    eprintln!("udp_echo: unexpected {v}");
                    return ExitCode::from(2);
                }
            }
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen = a,
                Err(e) => {
                    eprintln!("udp_echo: --listen {v}: {e}");
                    return ExitCode::from(2);
                }
            },
            ("--record-hashes", Some(path)) => match File::create(&path) {
                Ok(f) => record = Some(f),
                Err(e) => {
                    eprintln!("udp_echo: cannot write {path}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ => {
                eprintln!("usage: udp_echo [--listen ADDR] [--record-hashes FILE]");
                return ExitCode::from(2);
            }
        }
    }
    let sock = match UdpSocket::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp_echo: cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The receive buffer lmk-tracker asks for (src/tracker/reactor.rs), so
    // the two lose datagrams alike when the process is not running.
    if let Err(e) = set_socket_option(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20) {
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
    let mut reply = [0u8; 20];
    let mut seen = HashSet::new();
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        if n < 16 {
            continue;
        }
        // Request: connection id (8), action (4), transaction id (4), ...
        let action = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        reply[0..4].copy_from_slice(&action.min(1).to_be_bytes());
        reply[4..8].copy_from_slice(&buf[12..16]);
        // An announce: ..., info hash at 16..36.
        if let (Some(f), 1, Some(hash)) = (&mut record, action, buf.get(16..36).filter(|_| n >= 98)) {
            if seen.insert(hash.to_vec()) {
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(f, "{hex}");
            }
        }
        let len = if action == 0 {
            reply[8..16].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_be_bytes());
            16
        } else {
            reply[8..20].copy_from_slice(&[0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
            20
        };
        let _ = sock.send_to(&reply[..len], from);
    }
}

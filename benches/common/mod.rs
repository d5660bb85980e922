//! What the load generators of `make bench` share: the info hashes a
//! whitelist can be written for, and a tracker process's memory and CPU.

#![allow(dead_code)] // each generator uses a part

use std::fs;

use lmk::hash::Hash20;

/// Info hash `i`: the SHA-1 of `i` as 8 big-endian bytes.
pub fn info_hash(index: usize) -> Hash20 {
    Hash20::of(&(index as u64).to_be_bytes())
}

/// VmRSS of a process in kB, from /proc.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds of a process, from /proc (USER_HZ = 100 on Linux).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Source address `s` of the core-alone benches: 127.0.0.2 + s, port `port`.
pub fn source(s: usize, port: u16) -> std::net::SocketAddr {
    let base = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2));
    std::net::SocketAddr::from((std::net::Ipv4Addr::from(base + s as u32), port))
}

/// Core-alone benches: a connection id from the core for each of `sources`.
pub fn connection_ids(
    tracker: &mut lmk::tracker::machine::Tracker,
    now: std::time::Instant,
    sources: impl Iterator<Item = std::net::SocketAddr>,
) -> Vec<u64> {
    use lmk::wire::udp::{Request, Response};
    let (mut req, mut out) = (Vec::new(), Vec::new());
    sources
        .map(|from| {
            req.clear();
            Request::Connect { transaction_id: 1 }.encode(&mut req);
            tracker.handle_datagram(now, from, &req, &mut out);
            match Response::decode(&out, false) {
                Ok(Response::Connect { connection_id, .. }) => connection_id,
                other => panic!("no connection id: {other:?}"),
            }
        })
        .collect()
}

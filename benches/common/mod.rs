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

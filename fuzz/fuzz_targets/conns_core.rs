//! The tracker's catalog-connection rules fed arbitrary event sequences, as
//! the shell would report them: accepts from a few addresses, reads, requests,
//! drained queues, closes, evictions for want of descriptors, and time
//! moving forward. It must never panic; it never names a connection the shell
//! does not hold; the table never passes its caps; a passed deadline moves on.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::common::net::ConnId;
use lmk::tracker::conns::{Admit, Conns, Limits};

#[derive(Arbitrary, Debug)]
enum Op {
    Accept { ip: u8 },
    Read { conn: u8, buffered: u16 },
    Request { conn: u8, queued: u16 },
    Drained { conn: u8, queued: u16 },
    Close { conn: u8 },
    OutOfDescriptors,
    Advance { millis: u16 },
}

/// Small caps, so that a few dozen events reach every rule.
const LIMITS: Limits = Limits {
    max_conns: 5,
    per_ip: 2,
    idle: Duration::from_secs(30),
    frame_deadline: Duration::from_secs(10),
    max_queued: 100,
    large_frame: 100,
    large_turns: 1,
};

/// The shell's side: the connections it holds and their addresses.
struct Shell {
    conns: Conns,
    open: BTreeSet<usize>,
    ips: HashMap<usize, IpAddr>,
    now: Instant,
}

impl Shell {
    /// Like a slab: the lowest free key.
    fn next_key(&self) -> usize {
        (0..).find(|k| !self.open.contains(k)).unwrap_or(0)
    }

    /// One of the open connections, or a key the shell does not hold.
    fn pick(&self, i: u8) -> ConnId {
        let open: Vec<usize> = self.open.iter().copied().collect();
        ConnId(open.get(usize::from(i)).copied().unwrap_or(usize::from(i) + 100))
    }

    fn close(&mut self, conn: ConnId) {
        assert!(self.open.remove(&conn.0), "the rules named {conn:?}, which the shell does not hold");
        self.ips.remove(&conn.0);
    }

    fn check(&mut self) {
        while let Some(conn) = self.conns.poll_resumed() {
            assert!(self.open.contains(&conn.0), "resumed {conn:?}, which the shell does not hold");
        }
        assert_eq!(self.conns.len(), self.open.len(), "the rules and the shell agree on what is open");
        assert_eq!(self.conns.is_empty(), self.open.is_empty());
        assert!(self.open.len() <= LIMITS.max_conns);
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        for ip in self.ips.values() {
            *per_ip.entry(*ip).or_default() += 1;
        }
        assert!(per_ip.values().all(|&n| n <= LIMITS.per_ip), "per-IP cap: {per_ip:?}");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let now = Instant::now();
    let mut s = Shell { conns: Conns::new(LIMITS), open: BTreeSet::new(), ips: HashMap::new(), now };
    for op in ops {
        match op {
            Op::Accept { ip } => {
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip % 4));
                let key = s.next_key();
                match s.conns.handle_accept(s.now, ConnId(key), ip) {
                    Admit::Accept => {}
                    Admit::Evict(victim) => s.close(victim),
                    Admit::Refuse => continue,
                }
                s.open.insert(key);
                s.ips.insert(key, ip);
            }
            Op::Read { conn, buffered } => {
                s.conns.handle_read(s.now, s.pick(conn), usize::from(buffered));
            }
            Op::Request { conn, queued } => {
                s.conns.handle_request(s.now, s.pick(conn), usize::from(queued));
            }
            Op::Drained { conn, queued } => {
                s.conns.handle_drained(s.now, s.pick(conn), usize::from(queued));
            }
            Op::Close { conn } => {
                let conn = s.pick(conn);
                s.conns.handle_closed(conn);
                if s.open.contains(&conn.0) {
                    s.close(conn);
                }
            }
            Op::OutOfDescriptors => {
                if let Some(victim) = s.conns.evict_one() {
                    s.close(victim);
                }
            }
            Op::Advance { millis } => {
                s.now += Duration::from_millis(u64::from(millis) * 4);
                for conn in s.conns.handle_timeout(s.now) {
                    s.close(conn);
                }
                if let Some(deadline) = s.conns.next_deadline() {
                    assert!(deadline > s.now, "a passed deadline moves on");
                }
            }
        }
        s.check();
    }
});

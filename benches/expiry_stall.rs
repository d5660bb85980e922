//! How long expiry holds the tracker's loop, measured on the core alone (no
//! sockets, no other process in between): 1,000,000 peers from 64 addresses
//! in 1000 swarms are announced, then time moves on in 1 ms steps past their
//! expiry while 64 live peers keep announcing, one datagram between every two
//! `handle_timeout` calls, as the loop interleaves them. Prints the longest
//! p99.9 and the five longest `handle_timeout` calls and datagrams, in
//! microseconds, as one JSON line (on a busy machine the longest include
//! the times the process was not running). The wall clock times the calls; the core's clock is fake.
//!
//! ```text
//! cargo bench --bench expiry_stall [-- --peers 1000000]
//! ```

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

mod common;

use lmk::hash::Hash20;
use lmk::tracker::machine::{Config, Limits, Tracker};
use lmk::wire::udp::{AnnounceRequest, Event, Request};

const SOCKETS: usize = 64;
const HASHES: usize = 1000;

fn main() {
    let mut peers = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--peers" {
            peers = args.next().and_then(|v| v.parse().ok()).unwrap_or(peers);
        }
    }
    let t0 = Instant::now();
    let ttl = Duration::from_secs(20);
    let config = Config {
        interval: Duration::from_secs(5),
        expiry: ttl,
        foreign_expiry: ttl,
        seed: 1,
        limits: Limits {
            max_swarms: 100_000,
            max_peers: peers + 1000,
            max_swarms_per_ip: 100_000,
            max_peers_per_ip: u32::MAX,
            max_peers_per_ip_in_swarm: u32::MAX,
        },
        catalog_only: false,
    };
    let mut tracker = Tracker::new(config, t0);
    let hashes: Vec<Hash20> = (0..HASHES).map(|i| Hash20::of(&(i as u64).to_be_bytes())).collect();
    let from = |s: usize| common::source(s, 6881);
    let mut out = Vec::new();
    let mut req = Vec::new();
    let ids = common::connection_ids(&mut tracker, t0, (0..SOCKETS).map(from));
    let mut announce = |tracker: &mut Tracker, now: Instant, s: usize, k: usize, out: &mut Vec<u8>| {
        req.clear();
        Request::Announce(AnnounceRequest {
            connection_id: ids[s],
            transaction_id: k as u32,
            info_hash: hashes[k % HASHES],
            peer_id: [7; 20],
            downloaded: 0,
            left: if k.is_multiple_of(4) { 0 } else { 1 },
            uploaded: 0,
            event: Event::Started,
            ip: Ipv4Addr::UNSPECIFIED,
            key: 0,
            num_want: -1,
            port: 1024 + (k / HASHES) as u16,
        })
        .encode(&mut req);
        tracker.handle_datagram(now, from(s), &req, out);
    };
    // The fill: spread over 5 s of fake time, as a generator would.
    let per_socket = peers.div_ceil(SOCKETS);
    for k in 0..per_socket {
        let now = t0 + Duration::from_millis((k * 5000 / per_socket) as u64);
        for s in 0..SOCKETS {
            announce(&mut tracker, now, s, k, &mut out);
        }
    }
    // Past the expiry: 1 ms steps, a timeout call and a live announce in each.
    let mut timeouts = Vec::new();
    let mut datagrams = Vec::new();
    let mut now = t0 + Duration::from_secs(5);
    let end = t0 + ttl * 2;
    let mut k = 0;
    while now < end {
        let t = Instant::now();
        tracker.handle_timeout(now);
        timeouts.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        announce(&mut tracker, now, k % SOCKETS, k % HASHES, &mut out);
        datagrams.push(t.elapsed().as_micros() as u64);
        k += 1;
        now += Duration::from_millis(1);
    }
    let expired = tracker.stats().expiries;
    let pct = |v: &mut Vec<u64>, q: f64| {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let top = |v: &[u64]| format!("{:?}", v.iter().rev().take(5).collect::<Vec<_>>());
    println!(
        "{{\"peers\": {peers}, \"expired\": {expired}, \"timeout_calls\": {}, \"timeout_us_p999\": {}, \"timeout_us_top5\": {}, \"datagram_us_p999\": {}, \"datagram_us_top5\": {}}}",
        timeouts.len(),
        pct(&mut timeouts, 0.999),
        top(&timeouts),
        pct(&mut datagrams, 0.999),
        top(&datagrams),
    );
}

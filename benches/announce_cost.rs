//! What one announce costs the tracker's core alone (no sockets, no other
//! process): the user-space share of a datagram's cost, which batching
//! cannot remove. 100,000 peers in 1000 swarms from 4 addresses, as
//! `tracker_load` makes them (one in four a seeder, 50 peers wanted), are
//! announced once; then every peer announces again, round-robin, for
//! `--rounds` rounds, each timed on the wall clock. Prints the median and the
//! fastest round in nanoseconds per announce (decode, connection id check,
//! swarm update, answer picked and encoded) as one JSON line.
//!
//! With `--skewed`, the shape of aquatic's load generator instead: each
//! peer's swarm drawn with aquatic's weights (1000 swarms, a few of tens of
//! thousands of peers, most of one or two), a random port from 4 addresses,
//! and a role drawn per announce (a seeder with `completed` one time in
//! four, else a leecher with `started`), so over a third of the announces
//! move a peer between its swarm's leechers and seeders.
//!
//! With `--digest`, also prints an FNV-1a digest of every answer's bytes
//! (untimed figures then): two builds that print the same digest gave the
//! same answers, peer for peer and in the same order.
//!
//! ```text
//! cargo bench --bench announce_cost [-- --peers 100000 --rounds 5 --skewed --digest]
//! ```

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

mod common;

use lmk::common::rng::Rng;
use lmk::hash::Hash20;
use lmk::tracker::machine::{Config, Tracker};
use lmk::wire::udp::{AnnounceRequest, Event, Request};

const SOCKETS: usize = 4;
const HASHES: usize = 1000;

fn main() {
    let (mut peers, mut rounds, mut digest, mut skewed) = (100_000usize, 5usize, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--peers" => peers = args.next().and_then(|v| v.parse().ok()).unwrap_or(peers),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds).max(1),
            "--digest" => digest = Some(0xcbf2_9ce4_8422_2325u64),
            "--skewed" => skewed = true,
            _ => {}
        }
    }
    let t0 = Instant::now();
    let mut config = Config { seed: 1, ..Config::default() };
    config.limits.max_peers_per_ip = u32::MAX;
    config.limits.max_peers_per_ip_in_swarm = u32::MAX;
    let mut tracker = Tracker::new(config, t0);
    let hashes: Vec<Hash20> = (0..HASHES).map(|i| Hash20::of(&(i as u64).to_be_bytes())).collect();
    let from = |s: usize| common::source(s, 40000);
    let mut out = Vec::new();
    let ids = common::connection_ids(&mut tracker, t0, (0..SOCKETS).map(from));
    // Every request encoded beforehand: only the tracker's work is timed.
    // A peer is (k, source, swarm, port); its requests differ only in role and event.
    let shape: Vec<(usize, usize, usize, u16)> = if skewed {
        let mut rng = Rng::new(2);
        let weights = aquatic_weights(HASHES, peers);
        let total: f64 = weights.iter().sum();
        (0..peers)
            .map(|k| {
                let mut x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let hash = weights.iter().position(|&w| (x -= w, x < 0.0).1).unwrap_or(HASHES - 1);
                (k, rng.below(SOCKETS), hash, rng.next_u32() as u16)
            })
            .collect()
    } else {
        let per_socket = peers.div_ceil(SOCKETS);
        (0..per_socket)
            .flat_map(|k| (0..SOCKETS).map(move |s| (k, s, k % HASHES, 1024 + (k / HASHES) as u16)))
            .collect()
    };
    let encode = |&(k, s, hash, port): &(usize, usize, usize, u16), seeder: bool, event: Event| -> Vec<u8> {
        let mut peer_id = [0u8; 20];
        peer_id[..8].copy_from_slice(b"-LB0001-");
        peer_id[12..20].copy_from_slice(&(k as u64).to_be_bytes());
        let mut buf = Vec::new();
        Request::Announce(AnnounceRequest {
            connection_id: ids[s],
            transaction_id: k as u32,
            info_hash: hashes[hash],
            peer_id,
            downloaded: 0,
            left: if seeder { 0 } else { 1 << 30 },
            uploaded: 0,
            event,
            ip: Ipv4Addr::UNSPECIFIED,
            key: k as u32,
            num_want: -1,
            port,
        })
        .encode(&mut buf);
        buf
    };
    // The skewed shape's role per announce, as aquatic draws it.
    let mut roles = Rng::new(3);
    let mut seeder = |k: usize| if skewed { roles.below(4) == 0 } else { k.is_multiple_of(4) };
    let aquatic_event = |seeder: bool| if seeder { Event::Completed } else { Event::Started };
    for peer in &shape {
        let role = seeder(peer.0);
        let event = if skewed { aquatic_event(role) } else { Event::Started };
        tracker.handle_datagram(t0, from(peer.1), &encode(peer, role, event), &mut out);
    }
    // Each peer's request as a leecher and as a seeder (the default shape: its one role twice).
    let again: Vec<(usize, [Vec<u8>; 2])> = shape
        .iter()
        .map(|peer| {
            let twins = if skewed {
                [false, true].map(|role| encode(peer, role, aquatic_event(role)))
            } else {
                let r = encode(peer, seeder(peer.0), Event::None);
                [r.clone(), r]
            };
            (peer.1, twins)
        })
        .collect();
    let mut ns = Vec::new();
    let mut bytes = 0;
    for round in 0..rounds {
        let now = t0 + Duration::from_secs(1 + round as u64);
        let t = Instant::now();
        for (s, twins) in &again {
            let r = &twins[usize::from(skewed && seeder(0))];
            tracker.handle_datagram(now, from(*s), r, &mut out);
            bytes += out.len();
            if let Some(d) = &mut digest {
                *d = out.iter().fold(*d, |d, &b| (d ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            }
        }
        ns.push(t.elapsed().as_nanos() as f64 / again.len() as f64);
    }
    ns.sort_by(f64::total_cmp);
    let digest = digest.map_or(String::new(), |d| format!(", \"answers_digest\": \"{d:016x}\""));
    println!(
        "{{\"peers\": {}, \"announces_per_round\": {}, \"rounds\": {rounds}, \"ns_per_announce_median\": {:.0}, \"ns_per_announce_min\": {:.0}, \"answer_bytes_mean\": {:.0}{digest}}}",
        tracker.stats().joins,
        again.len(),
        ns[ns.len() / 2],
        ns[0],
        bytes as f64 / (again.len() * rounds) as f64,
    );
}

/// aquatic_udp_load_test's weight of each of `swarms` swarms (lib.rs,
/// `InfoHashDist`): swarm `i` draws a peer in proportion to
/// `floor + e^(6.5 - 500 i / swarms)`, `floor = swarms / peers`.
fn aquatic_weights(swarms: usize, peers: usize) -> Vec<f64> {
    let floor = swarms as f64 / peers as f64;
    (0..swarms).map(|i| floor + (6.5 - 500.0 * i as f64 / swarms as f64).exp()).collect()
}

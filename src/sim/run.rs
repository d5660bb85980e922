//! One simulation from a scenario: who is who, when they come, leave,
//! crash or lie, and what each did.

use std::time::{Duration, Instant};

use super::content::Content;
use super::hops::{self, Hops};
use super::scenario::{Arrivals, BadValue, Scenario};
use super::world::{HostSpec, Hostile, World};
use crate::common::rng::Rng;
use crate::peer::machine::Config;
use crate::peer::torrent::Goal;
use crate::tracker::machine::Config as TrackerConfig;

/// When the downloaders are released: the seed has announced by then, as in
/// `make bench-swarm`, where the seed runs before the downloaders start.
pub const RELEASE: Duration = Duration::from_secs(1);

/// What one downloader did; times in seconds from the release.
#[derive(Debug, Clone)]
pub struct Peer {
    pub class: usize,
    pub up: f64,
    pub arrive: f64,
    pub first_chunk: Option<f64>,
    pub done: Option<f64>,
    pub failed: Option<String>,
    pub crashed: bool,
    pub left: Option<f64>,
    pub poisoner: bool,
    pub hostile: Option<Hostile>,
    pub uploaded: u64,
    pub from_seeders: u64,
    pub from_peers: u64,
    /// Chunk bytes sent per second of the run, from the release.
    pub sent_per_sec: Vec<u64>,
}

pub struct Outcome {
    pub scenario: Scenario,
    pub t_p2p: f64,
    pub peers: Vec<Peer>,
    pub seed_uploaded: u64,
    pub seed_sent_per_sec: Vec<u64>,
    /// Chunks that passed and failed their check, over all downloaders.
    pub verified: u64,
    pub rejected: u64,
    pub events: u64,
    pub wall: Duration,
    /// How chunks travelled, if asked.
    pub hops: Option<hops::Summary>,
}

/// Runs the scenario; with `trace`, that host's traffic is printed to stderr
/// (host 0 is the seed, host n + 1 downloader n); with `hops`, how chunks
/// travelled is followed.
pub fn run(s: &Scenario, trace: Option<usize>, hops: bool) -> Result<Outcome, BadValue> {
    let started = Instant::now();
    let content = Content::new("sim.bin", s.size, s.chunk(), s.seed)
        .map_err(|e| BadValue(format!("--size {} with --chunk-size {}: {e}", s.size, s.chunk())))?;
    let tracker =
        TrackerConfig { interval: s.interval, expiry: 3 * s.interval, seed: s.seed, ..TrackerConfig::default() };
    let mut world = World::new(content, tracker, s.latency, s.sndbuf);
    world.trace = trace;
    world.hops = hops.then(Hops::default);
    let mut rng = Rng::new(s.seed);
    let config = |rng: &mut Rng| Config {
        slots: s.slots,
        max_peers: s.max_peers,
        seed: rng.next_u64(),
        interval: s.interval,
        ..Config::default()
    };
    let ups: Vec<f64> = (0..s.peers).map(|i| s.up_of(i)).collect();
    let t_p2p = s.t_p2p(&ups);
    world.add_host(HostSpec {
        up: s.seed_up,
        down: f64::INFINITY,
        latency: s.latency,
        class: usize::MAX,
        seed: true,
        arrive: Duration::ZERO,
        config: Config { timeout: Duration::MAX / 4, ..config(&mut rng) },
        goal: Goal::Forever,
        lie: None,
        hostile: None,
        crash_at: None,
    });
    // Who leaves at completion, crashes, lies, stalls, rejects or never
    // reads: disjoint shares of a shuffled order (role 1, 2, ...; 0 for the rest).
    let mut order: Vec<usize> = (0..s.peers).collect();
    rng.shuffle(&mut order);
    let take = |share: f64| (share * s.peers as f64).round() as usize;
    let shares = [s.leave_after_done, s.crash, s.poisoners, s.stallers, s.rejecters, s.non_readers];
    let mut role = vec![0u8; s.peers];
    let mut k = 0;
    for (r, share) in (1u8..).zip(shares) {
        for &i in order.iter().skip(k).take(take(share)) {
            role[i] = r;
        }
        k += take(share);
    }
    let hostile = |r: u8| match r {
        4 => Some(Hostile::Staller),
        5 => Some(Hostile::Rejecter),
        6 => Some(Hostile::NonReader),
        _ => None,
    };
    let mut at = RELEASE;
    for (i, &up) in ups.iter().enumerate() {
        if let Arrivals::Poisson(span) = s.arrivals {
            let mean = span.as_secs_f64() / s.peers as f64;
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            at += Duration::from_secs_f64(-mean * (1.0 - u).ln());
        }
        let goal = match role[i] {
            1 => Goal::AT_ONCE,
            4..=6 => Goal::Forever,
            _ => Goal::Until { idle: s.seed_idle, ratio: s.seed_ratio, time: s.seed_time },
        };
        // A hostile host never gives up.
        let timeout = if hostile(role[i]).is_some() { Duration::MAX / 4 } else { Config::default().timeout };
        let crash_at = (role[i] == 2).then(|| Duration::from_secs_f64(t_p2p * (rng.next_u64() % 1000) as f64 / 1000.0));
        world.add_host(HostSpec {
            up,
            down: s.down,
            latency: s.latency,
            class: s.class_of(i),
            seed: false,
            arrive: at,
            config: Config { timeout, ..config(&mut rng) },
            goal,
            lie: (role[i] == 3).then_some(s.seed ^ 0xbad ^ i as u64),
            hostile: hostile(role[i]),
            crash_at,
        });
    }
    world.run(RELEASE + s.limit);
    let release = RELEASE.as_secs_f64();
    let secs = |n: u64| n as f64 / 1e9 - release;
    let from_release = |v: &[u64]| v.get(RELEASE.as_secs() as usize..).unwrap_or(&[]).to_vec();
    let peers = (1..world.hosts.len())
        .map(|h| {
            let host = &world.hosts[h];
            Peer {
                class: host.class,
                up: ups[h - 1],
                arrive: secs(host.arrive),
                first_chunk: host.first_chunk.map(secs),
                done: host.done.map(secs),
                failed: host.failed.clone(),
                crashed: host.crashed,
                left: host.gone.map(secs),
                poisoner: host.poisoner(),
                hostile: host.hostile,
                uploaded: world.uploaded(h),
                from_seeders: host.from_seeders,
                from_peers: host.from_peers,
                sent_per_sec: from_release(&host.sent_per_sec),
            }
        })
        .collect();
    Ok(Outcome {
        scenario: s.clone(),
        t_p2p,
        peers,
        seed_uploaded: world.uploaded(0),
        seed_sent_per_sec: from_release(&world.hosts[0].sent_per_sec),
        verified: world.content.verified.get(),
        rejected: world.content.rejected.get(),
        events: world.steps,
        wall: started.elapsed(),
        hops: world.hops.take().map(Hops::summary),
    })
}

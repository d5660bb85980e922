//! What a simulation runs: the file, the hosts and their links, when they
//! come and go, and the peer options they all run with.

use std::fmt;
use std::time::Duration;

use crate::common::quantity::{Kind, Range};

/// A class's uplink, bytes per second.
const RATE: Range = Range::new(Kind::Bytes, 1.0, 1099511627776.0);
/// How long Poisson arrivals take in all.
const SPAN: Range = Range::secs(0.0, 1e6);

/// A share of the downloaders with its own uplink.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// Fraction of the downloaders, 0..=1.
    pub share: f64,
    /// Uplink, bytes per second.
    pub up: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// Every downloader starts at time 0, right after the seed.
    All,
    /// A Poisson process with this mean span for all of them.
    Poisson(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Downloaders (the seed is extra).
    pub peers: usize,
    pub size: u64,
    /// None: the seeder's default for `size` (`meta::auto_chunk`).
    pub chunk_size: Option<u32>,
    pub seed_up: f64,
    /// Downlink of every downloader; infinite for none.
    pub down: f64,
    pub classes: Vec<Class>,
    /// One-way delay of each host's access link.
    pub latency: Duration,
    pub arrivals: Arrivals,
    /// Share of downloaders that leave as soon as they are complete.
    pub leave_after_done: f64,
    /// Share of downloaders that crash (connections reset, no goodbye)
    /// at a random moment of their download.
    pub crash: f64,
    /// Share of downloaders that send wrong bytes for every chunk.
    pub poisoners: f64,
    /// Shares of downloaders that instead claim every chunk and never send
    /// one, claim every chunk and reject each request, or ask for chunks and
    /// never read them.
    pub stallers: f64,
    pub rejecters: f64,
    pub non_readers: f64,
    /// Bytes a connection may have queued before its core is asked for more
    /// (the daemon's 256 KiB low-water mark plus the kernel's send buffer).
    pub sndbuf: u64,
    pub slots: usize,
    pub max_peers: usize,
    pub seed_idle: Duration,
    pub seed_ratio: Option<f64>,
    pub seed_time: Option<Duration>,
    /// The tracker's announce interval.
    pub interval: Duration,
    /// Simulated time after which whoever is not done counts as unfinished.
    pub limit: Duration,
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Scenario {
        let core = crate::peer::machine::Config::default();
        Scenario {
            peers: 50,
            size: 64 << 20,
            chunk_size: None,
            seed_up: 20.0 * MIB,
            down: f64::INFINITY,
            classes: vec![Class { share: 1.0, up: 20.0 * MIB }],
            latency: Duration::from_millis(1),
            arrivals: Arrivals::All,
            leave_after_done: 0.0,
            crash: 0.0,
            poisoners: 0.0,
            stallers: 0.0,
            rejecters: 0.0,
            non_readers: 0.0,
            sndbuf: 512 << 10,
            slots: core.slots,
            max_peers: core.max_peers,
            seed_idle: crate::peer::torrent::SEED_IDLE,
            seed_ratio: None,
            seed_time: None,
            interval: Duration::from_secs(10),
            limit: Duration::from_secs(3600),
            seed: 1,
        }
    }
}

pub const MIB: f64 = 1048576.0;

impl Scenario {
    pub fn chunk(&self) -> u32 {
        self.chunk_size.unwrap_or_else(|| crate::meta::auto_chunk(self.size))
    }

    /// The fluid bound: the seed must send one copy, the slowest downlink
    /// take one, and all uplinks together carry N copies:
    /// max(F/u_s, F/d_min, N F / (u_s + sum u_i)).
    pub fn t_p2p(&self, ups: &[f64]) -> f64 {
        let f = self.size as f64;
        let n = ups.len() as f64;
        let total: f64 = self.seed_up + ups.iter().sum::<f64>();
        (f / self.seed_up).max(f / self.down).max(n * f / total)
    }

    /// The uplink of downloader `i` of `n`: classes take consecutive shares.
    pub fn up_of(&self, i: usize) -> f64 {
        let at = (i as f64 + 0.5) / self.peers as f64;
        let mut edge = 0.0;
        for c in &self.classes {
            edge += c.share;
            if at < edge {
                return c.up;
            }
        }
        self.classes.last().map_or(self.seed_up, |c| c.up)
    }

    /// The class of downloader `i`.
    pub fn class_of(&self, i: usize) -> usize {
        let up = self.up_of(i);
        self.classes.iter().position(|c| c.up == up).unwrap_or(0)
    }
}

/// A value the simulator cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue(pub String);

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `20%` or `0.2`: a fraction in 0..=1.
pub fn fraction(name: &str, raw: &str) -> Result<f64, BadValue> {
    let v: f64 = match raw.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map(|p| p / 100.0),
        None => raw.parse(),
    }
    .map_err(|_| BadValue(format!("{name} {raw:?}: not a share (20% or 0.2)")))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(BadValue(format!("{name} {raw:?}: must be between 0% and 100%")));
    }
    Ok(v)
}

/// `10%:100M,60%:20M,30%:5M`: shares of the downloaders and their uplinks, summing to 100%.
pub fn classes(raw: &str) -> Result<Vec<Class>, BadValue> {
    let mut out = Vec::new();
    for part in raw.split(',') {
        let (share, up) = part
            .split_once(':')
            .ok_or_else(|| BadValue(format!("--classes {part:?}: want SHARE:UPLINK, as 30%:5M")))?;
        let up = RATE.parse(up).map_err(|e| BadValue(format!("--classes {part:?}: {e}")))?;
        out.push(Class { share: fraction("--classes", share)?, up });
    }
    let total: f64 = out.iter().map(|c| c.share).sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(BadValue(format!("--classes {raw:?}: shares add up to {:.0}%, not 100%", total * 100.0)));
    }
    Ok(out)
}

/// `all` or `poisson:30s`.
pub fn arrivals(raw: &str) -> Result<Arrivals, BadValue> {
    match raw.split_once(':') {
        None if raw == "all" => Ok(Arrivals::All),
        Some(("poisson", span)) => {
            let span = SPAN.duration(span).map_err(|e| BadValue(format!("--arrivals {raw:?}: {e}")))?;
            Ok(Arrivals::Poisson(span))
        }
        _ => Err(BadValue(format!("--arrivals {raw:?}: want all or poisson:SPAN"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(fraction("x", "20%").unwrap(), 0.2);
        assert!(fraction("x", "120%").is_err());
        let c = classes("10%:100M,60%:20M,30%:5M").unwrap();
        assert_eq!(c[2], Class { share: 0.3, up: 5.0 * MIB });
        assert!(classes("10%:100M").is_err(), "not 100%");
        assert_eq!(arrivals("poisson:30s").unwrap(), Arrivals::Poisson(Duration::from_secs(30)));
        assert!(arrivals("poisson:NaN").is_err() && classes("50%:-1,50%:5M").is_err());
    }

    #[test]
    fn the_fluid_bound() {
        let s = Scenario { peers: 2, size: 100, seed_up: 10.0, ..Scenario::default() };
        assert_eq!(s.t_p2p(&[10.0, 10.0]), 10.0, "the seed's one copy");
        assert_eq!(s.t_p2p(&[1.0, 1.0]), 200.0 / 12.0, "two copies over all uplinks");
        let capped = Scenario { down: 5.0, ..s };
        assert_eq!(capped.t_p2p(&[10.0, 10.0]), 20.0, "the slowest downlink");
    }

    #[test]
    fn classes_take_consecutive_shares() {
        let s = Scenario { peers: 10, classes: classes("10%:100M,60%:20M,30%:5M").unwrap(), ..Scenario::default() };
        let ups: Vec<usize> = (0..10).map(|i| s.class_of(i)).collect();
        assert_eq!(ups, [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]);
    }
}

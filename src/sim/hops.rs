//! How chunks travelled (`lmk-sim --hops`): for each chunk a downloader got,
//! how many hops from the seed it came, how long after the seed first sent
//! it, and where the last hop's time went: the holder had it and was not yet
//! asked, the request waited at the holder, the chunk was on the way (queued
//! behind others and sharing the uplink). In a swarm the seed's uplink
//! bounds, the last peer finishes about this delay after the seed's last
//! new chunk, whatever the links' use.

use std::collections::HashMap;
use std::fmt;

use super::link::Nanos;

/// Hosts as the world numbers them (0 is the seed), and a chunk's index.
type Leg = (usize, usize, u32);

#[derive(Default)]
pub struct Hops {
    /// (asker, holder, chunk) -> when the request left.
    asked: HashMap<Leg, Nanos>,
    /// (holder, asker, chunk) -> when the chunk was put on the connection.
    sent: HashMap<Leg, Nanos>,
    /// (host, chunk) -> when it first came and its hops from the seed.
    got: HashMap<(usize, u32), (Nanos, u32)>,
    /// Chunk -> when the seed first sent it.
    seeded: HashMap<u32, Nanos>,
    waited: Vec<Nanos>,
    queued: Vec<Nanos>,
    carried: Vec<Nanos>,
    from_seed: Vec<Nanos>,
    depths: Vec<u32>,
}

impl Hops {
    pub fn on_request(&mut self, now: Nanos, asker: usize, holder: usize, index: u32) {
        self.asked.insert((asker, holder, index), now);
    }

    pub fn on_send(&mut self, now: Nanos, holder: usize, asker: usize, index: u32) {
        self.sent.insert((holder, asker, index), now);
        if holder == 0 {
            self.seeded.entry(index).or_insert(now);
        }
    }

    /// A request that no chunk will answer (cancelled or rejected): not kept.
    pub fn forget(&mut self, asker: usize, holder: usize, index: u32) {
        self.asked.remove(&(asker, holder, index));
    }

    /// A chunk frame reached `host` from `from`; only its first copy counts.
    pub fn on_receive(&mut self, now: Nanos, host: usize, from: usize, index: u32) {
        let asked = self.asked.remove(&(host, from, index));
        let sent = self.sent.remove(&(from, host, index));
        if self.got.contains_key(&(host, index)) {
            return;
        }
        // The seed never gets a chunk: what came from it is one hop away.
        let had = self.got.get(&(from, index)).copied();
        let depth = had.map_or(1, |(_, d)| d + 1);
        self.got.insert((host, index), (now, depth));
        self.depths.push(depth);
        if let Some(seeded) = self.seeded.get(&index) {
            self.from_seed.push(now.saturating_sub(*seeded));
        }
        if let (Some(asked), Some(sent)) = (asked, sent) {
            if let Some((had, _)) = had {
                self.waited.push(asked.saturating_sub(had));
            }
            self.queued.push(sent.saturating_sub(asked));
            self.carried.push(now.saturating_sub(sent));
        }
    }

    pub fn summary(mut self) -> Summary {
        let q = |v: &mut Vec<Nanos>| {
            v.sort_unstable();
            Spread { median: pick(v, 0.5) as f64 / 1e9, p90: pick(v, 0.9) as f64 / 1e9 }
        };
        let (waited, queued, carried, from_seed) =
            (q(&mut self.waited), q(&mut self.queued), q(&mut self.carried), q(&mut self.from_seed));
        self.depths.sort_unstable();
        Summary {
            chunks: self.depths.len(),
            depth: (pick(&self.depths, 0.5), pick(&self.depths, 0.9), self.depths.last().copied().unwrap_or(0)),
            waited,
            queued,
            carried,
            from_seed,
        }
    }
}

fn pick<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
}

/// Median and 90th percentile, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub p90: f64,
}

/// What `--hops` prints under the table.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Chunks got, first copies only.
    pub chunks: usize,
    /// Hops from the seed: median, 90th percentile, most.
    pub depth: (u32, u32, u32),
    /// The holder had it until it was asked.
    pub waited: Spread,
    /// The request until the holder sent the chunk.
    pub queued: Spread,
    /// The chunk on its way.
    pub carried: Spread,
    /// The seed's first send of the chunk until it came.
    pub from_seed: Spread,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |s: Spread| format!("{:.0} / {:.0} ms", s.median * 1e3, s.p90 * 1e3);
        writeln!(
            f,
            "hops: {} chunks got; from the seed in {} hops (median), {} (p90), {} (most), {:.3} / {:.3} s after its first send (median / p90)",
            self.chunks, self.depth.0, self.depth.1, self.depth.2, self.from_seed.median, self.from_seed.p90
        )?;
        writeln!(
            f,
            "hops: each hop, median / p90: held and not asked {}, asked and not sent {}, on the way {}",
            ms(self.waited),
            ms(self.queued),
            ms(self.carried)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn a_chunk_two_hops_from_the_seed() {
        let mut h = Hops::default();
        h.on_request(0, 1, 0, 7);
        h.on_send(MS, 0, 1, 7);
        h.on_receive(11 * MS, 1, 0, 7);
        h.on_request(15 * MS, 2, 1, 7);
        h.on_send(17 * MS, 1, 2, 7);
        h.on_receive(27 * MS, 2, 1, 7);
        h.on_request(30 * MS, 3, 0, 7); // an end-game duplicate: its first copy came from 1
        h.on_send(31 * MS, 0, 3, 7);
        h.on_receive(33 * MS, 3, 2, 7);
        h.on_receive(40 * MS, 3, 0, 7);
        let s = h.summary();
        assert_eq!(s.chunks, 3, "first copies only");
        assert_eq!(s.depth, (2, 3, 3));
        assert_eq!((s.waited.median * 1e3).round(), 4.0, "host 1 held it from 11 ms; asked at 15 ms");
        assert_eq!((s.queued.p90 * 1e3).round(), 2.0);
        assert_eq!((s.carried.median * 1e3).round(), 10.0);
        assert_eq!((s.from_seed.p90 * 1e3).round(), 32.0, "host 3's copy came 32 ms after the seed's first send");
    }
}

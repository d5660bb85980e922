//! The tracker core's HTTP side: BEP 3 announces and scrapes over the same
//! swarms, caps and access rules as BEP 15, and the figures and file view
//! the status page, /stats.json and /metrics are made of.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::debug;

use super::{Joining, Refusal, Tracker};
use crate::hash::Hash20;
use crate::http::{matches, Figures, FileRow, Files};
use crate::tracker::catalog::Catalog;
use crate::tracker::swarms::Swarms;
use crate::wire::http::{decode_scrape, encode_failure, encode_scrape, Announce, AnnounceAnswer, ScrapeFile};

/// Peers one HTTP announce is given at most (as opentracker).
const MAX_HTTP_PEERS: usize = 200;

impl Tracker {
    /// `GET /announce?query` from `ip`: appends the bencoded answer, a
    /// `failure reason` when it is malformed or refused.
    pub fn handle_http_announce(&mut self, now: Instant, ip: IpAddr, query: &str, out: &mut Vec<u8>) {
        self.stats.http_announces += 1;
        let a = match Announce::decode(query) {
            Ok(a) => a,
            Err(e) => {
                self.stats.http_bad_announces += 1;
                debug!("http {ip}: bad announce: {e}");
                return encode_failure(&format!("bad announce: {e}"), out);
            }
        };
        let peer = SocketAddr::new(ip.to_canonical(), a.port);
        let joining = Joining { peer, hash: a.info_hash, event: a.event, left: a.left };
        let mut peers = std::mem::take(&mut self.picked);
        peers.clear();
        let mut counts = (0, 0);
        let head = |_: &mut Vec<u8>, seeders, leechers| counts = (seeders, leechers);
        match self.join(now, &joining, &a.peer_id, a.num_want, MAX_HTTP_PEERS, &mut peers, head) {
            Err(refusal) => {
                self.stats.http_refused += 1;
                debug!("http {ip}: announce for {} refused: {}", a.info_hash.short(), refusal.message());
                encode_failure(refusal.message(), out);
            }
            Ok(()) => {
                let (interval, (seeders, leechers)) = (self.interval_secs(), counts);
                AnnounceAnswer { interval, seeders, leechers, peers: &peers, ipv6: peer.is_ipv6() }.encode(out);
            }
        }
        self.picked = peers;
    }

    /// `GET /scrape?query`: appends the bencoded counts of each info hash asked.
    pub fn handle_http_scrape(&mut self, query: &str, out: &mut Vec<u8>) {
        self.stats.http_scrapes += 1;
        match decode_scrape(query) {
            Ok(hashes) => {
                let files: Vec<(Hash20, ScrapeFile)> = hashes.into_iter().map(|h| (h, self.scrape_file(&h))).collect();
                encode_scrape(&files, out);
            }
            Err(e) => {
                self.stats.http_bad_scrapes += 1;
                encode_failure(&format!("bad scrape: {e}"), out);
            }
        }
    }

    fn scrape_file(&self, hash: &Hash20) -> ScrapeFile {
        self.swarms.get(hash).map_or(ScrapeFile::default(), |sw| ScrapeFile {
            seeders: sw.seeders(),
            completed: sw.completed,
            leechers: sw.leechers(),
        })
    }

    /// The core's part of the figures; the shell adds connections, bytes,
    /// memory and rates.
    pub fn figures(&self, now: Instant) -> Figures {
        let s = &self.stats;
        let udp_refused = s.refused.saturating_sub(s.http_refused);
        let http_ok = s.http_announces.saturating_sub(s.http_refused + s.http_bad_announces);
        Figures {
            uptime: now.saturating_duration_since(self.start),
            files: self.catalog.len(),
            file_bytes: self.catalog.bytes(),
            swarms: self.swarms.len(),
            peers: self.swarms.peer_count(),
            peer_addresses: self.swarms.addresses(),
            announces: vec![
                (["udp", "ok"], s.announces.saturating_sub(udp_refused)),
                (["udp", "refused"], udp_refused),
                (["http", "ok"], http_ok),
                (["http", "refused"], s.http_refused),
                (["http", "malformed"], s.http_bad_announces),
            ],
            scrapes: vec![(["udp"], s.scrapes), (["http"], s.http_scrapes)],
            refusals: Refusal::NAMES.iter().zip(s.refused_by).map(|(name, n)| ([*name], n)).collect(),
            errors: vec![
                (["udp_malformed"], s.dropped),
                (["udp_error_sent"], s.errors_sent),
                (["http_announce_malformed"], s.http_bad_announces),
                (["http_scrape_malformed"], s.http_bad_scrapes),
                (["catalog_refused"], s.catalog_refused),
                (["publish_unauthorized"], s.unauthorized),
            ],
            joins: s.joins,
            leaves: s.leaves,
            expired: s.expiries,
            ..Figures::default()
        }
    }

    /// Announces and scrapes so far, over both protocols (for the rates).
    pub fn requests(&self) -> (u64, u64) {
        let s = &self.stats;
        (s.announces + s.http_announces, s.scrapes + s.http_scrapes)
    }

    /// The catalog with each file's swarm, as the status page lists it.
    pub fn files(&self) -> View<'_> {
        View { catalog: &self.catalog, swarms: &self.swarms }
    }
}

/// The catalog and swarms, read together.
pub struct View<'a> {
    catalog: &'a Catalog,
    swarms: &'a Swarms,
}

impl Files for View<'_> {
    fn files(&self, q: &str, after: Option<(&str, &Hash20)>, skip: usize, max: usize, out: &mut Vec<FileRow>) {
        let rows = self.catalog.sorted(after).filter(|(name, _)| matches(name, q)).skip(skip).take(max);
        out.extend(rows.filter_map(|(_, id)| Some((id, self.catalog.meta(id)?))).map(|(id, meta)| {
            let swarm = self.swarms.get(id);
            FileRow {
                name: meta.name().to_string(),
                id: *id,
                size: meta.size(),
                chunks: meta.chunk_count(),
                seeders: swarm.map_or(0, |s| s.seeders()),
                leechers: swarm.map_or(0, |s| s.leechers()),
                completed: swarm.map_or(0, |s| s.completed),
            }
        }));
    }

    fn count(&self, q: &str) -> usize {
        match q.is_empty() {
            true => self.catalog.len(),
            false => self.catalog.sorted(None).filter(|(name, _)| matches(name, q)).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::machine::Config;
    use crate::tracker::swarms::Limits;
    use crate::wire::udp::{AnnounceRequest, Event, Request, Response};
    use std::net::Ipv4Addr;

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaa";

    fn query(peer_id: &str, port: u16, left: u64, event: &str) -> String {
        format!("info_hash={HASH}&peer_id={peer_id}&port={port}&left={left}&event={event}&compact=1")
    }

    fn http(t: &mut Tracker, now: Instant, ip: [u8; 4], q: &str) -> Vec<u8> {
        let mut out = Vec::new();
        t.handle_http_announce(now, IpAddr::from(ip), q, &mut out);
        out
    }

    #[test]
    fn http_and_udp_peers_meet_in_one_swarm() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Config { seed: 1, ..Config::default() }, t0);
        let answer = http(&mut t, t0, [10, 0, 0, 1], &query("-TR4000-abcdefghijkl", 51413, 0, "started"));
        assert_eq!(answer, b"d8:completei1e10:incompletei0e8:intervali10e12:min intervali10e5:peers0:e");
        // A UDP leecher is given the HTTP seeder...
        let src = SocketAddr::from(([10, 0, 0, 2], 7000));
        let mut out = Vec::new();
        t.handle_datagram(
            t0,
            src,
            &{
                let mut b = Vec::new();
                Request::Connect { transaction_id: 1 }.encode(&mut b);
                b
            },
            &mut out,
        );
        let Ok(Response::Connect { connection_id, .. }) = Response::decode(&out, false) else { panic!() };
        let a = AnnounceRequest {
            connection_id,
            transaction_id: 2,
            info_hash: Hash20(*b"aaaaaaaaaaaaaaaaaaaa"),
            peer_id: *b"-LMK010-abcdefghijkl",
            downloaded: 0,
            left: 10,
            uploaded: 0,
            event: Event::Started,
            ip: Ipv4Addr::UNSPECIFIED,
            key: 0,
            num_want: -1,
            port: 7000,
        };
        let mut bytes = Vec::new();
        Request::Announce(a).encode(&mut bytes);
        assert!(t.handle_datagram(t0, src, &bytes, &mut out));
        let Ok(Response::Announce { peers, seeders: 1, leechers: 1, .. }) = Response::decode(&out, false) else {
            panic!("{out:?}")
        };
        assert_eq!(peers, vec![SocketAddr::from(([10, 0, 0, 1], 51413))]);
        // ... and an HTTP leecher is given both, compact, 6 bytes each.
        let answer = http(&mut t, t0, [10, 0, 0, 3], &query("-TR4000-abcdefghijk3", 6881, 5, ""));
        let tail = b"5:peers12:";
        let at = answer.windows(tail.len()).position(|w| w == tail).unwrap() + tail.len();
        let mut got: Vec<&[u8]> = answer[at..at + 12].chunks(6).collect();
        got.sort();
        assert_eq!(got, vec![&[10, 0, 0, 1, 0xc8, 0xd5][..], &[10, 0, 0, 2, 0x1b, 0x58][..]]);
        // event=stopped removes it.
        http(&mut t, t0, [10, 0, 0, 1], &query("-TR4000-abcdefghijkl", 51413, 0, "stopped"));
        let mut out = Vec::new();
        t.handle_http_scrape(&format!("info_hash={HASH}"), &mut out);
        assert_eq!(out, b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei0e10:downloadedi0e10:incompletei2eeee");
    }

    #[test]
    fn ipv6_peers_in_peers6() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Config { seed: 1, ..Config::default() }, t0);
        let seeder: IpAddr = "2001:db8::1".parse().unwrap();
        let mut out = Vec::new();
        t.handle_http_announce(t0, seeder, &query("-TR4000-abcdefghijkl", 6881, 0, ""), &mut out);
        out.clear();
        let leecher: IpAddr = "2001:db8::2".parse().unwrap();
        t.handle_http_announce(t0, leecher, &query("-TR4000-abcdefghijk2", 6882, 9, ""), &mut out);
        let mut want = b"d8:completei1e10:incompletei1e8:intervali10e12:min intervali10e5:peers0:6:peers618:".to_vec();
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1, b'e']);
        assert_eq!(out, want);
        // A v4-mapped source (a dual-stack socket) is an IPv4 peer.
        out.clear();
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        t.handle_http_announce(t0, mapped, &query("-TR4000-abcdefghijk3", 6883, 9, ""), &mut out);
        assert!(out.ends_with(b"5:peers0:e"), "no IPv6 peer for an IPv4 client: {out:?}");
        let mut out = Vec::new();
        t.handle_http_announce(t0, IpAddr::from([10, 0, 0, 8]), &query("-TR4000-abcdefghijk4", 1, 9, ""), &mut out);
        assert!(out.ends_with(&[b'6', b':', 10, 0, 0, 9, 0x1a, 0xe3, b'e']), "{out:?}");
    }

    #[test]
    fn caps_and_malformed_queries_earn_a_failure_reason() {
        let t0 = Instant::now();
        let limits = Limits { max_peers_per_ip_in_swarm: 1, ..Limits::default() };
        let mut t = Tracker::new(Config { seed: 1, limits, ..Config::default() }, t0);
        http(&mut t, t0, [10, 0, 0, 1], &query("-TR4000-abcdefghijkl", 1, 0, ""));
        let answer = http(&mut t, t0, [10, 0, 0, 1], &query("-TR4000-abcdefghijkl", 2, 0, ""));
        assert_eq!(answer, b"d14:failure reason46:too many peers from your address in this swarme");
        let answer = http(&mut t, t0, [10, 0, 0, 1], "info_hash=short");
        assert_eq!(answer, b"d14:failure reason44:bad announce: bad value in field `info_hash`e");
        let f = t.figures(t0);
        assert!(f.announces.contains(&(["http", "ok"], 1)) && f.announces.contains(&(["http", "refused"], 1)));
        assert!(f.announces.contains(&(["http", "malformed"], 1)));
        assert!(f.refusals.contains(&(["peers_per_ip_in_swarm"], 1)));
        let mut t = Tracker::new(Config { seed: 1, catalog_only: true, ..Config::default() }, t0);
        let answer = http(&mut t, t0, [10, 0, 0, 1], &query("-TR4000-abcdefghijkl", 1, 0, ""));
        assert_eq!(answer, b"d14:failure reason28:info hash not in the cataloge");
    }
}

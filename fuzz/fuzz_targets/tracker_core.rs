//! The tracker core fed arbitrary event sequences: datagrams from many
//! sources (garbage, or well-formed with a connection id it issued), catalog
//! requests (decoded from bytes, or publishes of small files under a few
//! names), and time moving forward with timeouts. It must never panic; every
//! reply decodes, names the request's transaction and is never longer than the
//! request unless the request carried a valid connection id (no amplification).
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::tracker::machine::{Config, Limits, Tracker};
use lmk::wire::catalog::{Request as CatRequest, Selector};
use lmk::wire::udp::{AnnounceRequest, Event, Request, Response, ScrapeRequest};
use lmk::wire::Frame;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes; with `cid`, the first 8 are the id last issued to that source.
    Datagram {
        src: u8,
        cid: bool,
        bytes: Vec<u8>,
    },
    Connect {
        src: u8,
        tx: u32,
    },
    Announce {
        src: u8,
        hash: u8,
        left: u64,
        event: u8,
        port: u16,
        num_want: i32,
    },
    Scrape {
        src: u8,
        hashes: Vec<u8>,
    },
    /// A catalog frame as a connection from `source(src)` would hand it over.
    Catalog {
        src: u8,
        kind: u8,
        body: Vec<u8>,
    },
    Publish {
        src: u8,
        name: u8,
        size: u32,
        chunk_size: u8,
        salt: u8,
    },
    GetName {
        name: u8,
    },
    List,
    Advance {
        millis: u32,
    },
    Status,
}

/// The tracker's times, and what it is fed.
#[derive(Arbitrary, Debug)]
struct Input {
    interval_secs: u8,
    /// Zero included: expiry at once.
    expiry_secs: u8,
    catalog_only: bool,
    ops: Vec<Op>,
}

/// A few sources: IPv4, IPv6 and v4-mapped, some sharing an IP, port 0 included.
fn source(i: u8) -> SocketAddr {
    let port = [0, 1000, 1001, u16::MAX][usize::from(i % 4)];
    match i % 12 / 4 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i / 12 % 3)), port),
        1 => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i / 12 % 3))), port),
        _ => SocketAddr::new(IpAddr::V6(Ipv4Addr::new(10, 0, 0, i / 12 % 3).to_ipv6_mapped()), port),
    }
}

fn hash(i: u8) -> Hash20 {
    Hash20([i % 8; 20])
}

const NAMES: [&str; 4] = ["a.bin", "b.bin", "a.bin\u{7}", "."];

fn name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_string()
}

fn is_ipv6(src: SocketAddr) -> bool {
    matches!(src.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none())
}

struct Harness {
    tracker: Tracker,
    now: Instant,
    ids: HashMap<SocketAddr, u64>,
    out: Vec<u8>,
}

impl Harness {
    fn datagram(&mut self, src: SocketAddr, bytes: &[u8]) {
        if !self.tracker.handle_datagram(self.now, src, bytes, &mut self.out) {
            assert!(self.out.is_empty(), "silence writes nothing");
            return;
        }
        let resp = Response::decode(&self.out, is_ipv6(src)).expect("every reply decodes");
        assert_eq!(bytes.get(12..16), Some(&resp.transaction_id().to_be_bytes()[..]), "reply names the transaction");
        match resp {
            Response::Connect { connection_id, .. } => {
                assert_eq!(self.out.len(), bytes.len());
                self.ids.insert(src, connection_id);
            }
            Response::Error { .. } => assert!(self.out.len() <= bytes.len(), "an error never amplifies"),
            Response::Announce { peers, .. } => assert!(peers.len() <= lmk::wire::udp::MAX_PEERS),
            Response::Scrape { .. } => assert!(self.out.len() <= bytes.len()),
        }
    }

    fn cid(&self, src: SocketAddr) -> u64 {
        self.ids.get(&src).copied().unwrap_or(0)
    }

    fn catalog(&mut self, src: u8, req: CatRequest) {
        let resp = self.tracker.handle_catalog(self.now, source(src).ip(), req);
        let mut out = Vec::new();
        resp.encode(&mut out);
        let frame = lmk::wire::split_frame(&out, lmk::wire::catalog::MAX_CATALOG_FRAME).unwrap().unwrap().0;
        assert_eq!(lmk::wire::catalog::Response::decode(frame), Ok(resp), "every answer decodes");
    }
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let config = Config {
        interval: Duration::from_secs(u64::from(input.interval_secs)),
        expiry: Duration::from_secs(u64::from(input.expiry_secs)),
        foreign_expiry: Duration::from_secs(u64::from(input.expiry_secs) * 90),
        seed: 7,
        catalog_only: input.catalog_only,
        // Small caps, so that sequences of a few dozen announces reach them.
        limits: Limits {
            max_swarms: 6,
            max_peers: 12,
            max_swarms_per_ip: 3,
            max_peers_per_ip: 5,
            max_peers_per_ip_in_swarm: 2,
        },
        ..Config::default()
    };
    let mut h = Harness { tracker: Tracker::new(config, t0), now: t0, ids: HashMap::new(), out: Vec::new() };
    for op in input.ops {
        match op {
            Op::Datagram { src, cid, mut bytes } => {
                let src = source(src);
                if cid && bytes.len() >= 8 {
                    bytes[..8].copy_from_slice(&h.cid(src).to_be_bytes());
                }
                h.datagram(src, &bytes);
            }
            Op::Connect { src, tx } => {
                let mut bytes = Vec::new();
                Request::Connect { transaction_id: tx }.encode(&mut bytes);
                h.datagram(source(src), &bytes);
            }
            Op::Announce { src, hash: i, left, event, port, num_want } => {
                let src = source(src);
                let event = [Event::None, Event::Completed, Event::Started, Event::Stopped][usize::from(event % 4)];
                let req = Request::Announce(AnnounceRequest {
                    connection_id: h.cid(src),
                    transaction_id: u32::from(i),
                    info_hash: hash(i),
                    peer_id: [i; 20],
                    downloaded: 0,
                    left,
                    uploaded: 0,
                    event,
                    ip: Ipv4Addr::UNSPECIFIED,
                    key: 0,
                    num_want,
                    port,
                });
                let mut bytes = Vec::new();
                req.encode(&mut bytes);
                h.datagram(src, &bytes);
            }
            Op::Scrape { src, hashes } => {
                let src = source(src);
                let info_hashes = hashes.iter().map(|&i| hash(i)).collect();
                let mut bytes = Vec::new();
                Request::Scrape(ScrapeRequest { connection_id: h.cid(src), transaction_id: 1, info_hashes })
                    .encode(&mut bytes);
                h.datagram(src, &bytes);
            }
            Op::Catalog { src, kind, body } => {
                if let Ok(req) = CatRequest::decode(Frame { kind, body: &body }) {
                    h.catalog(src, req);
                }
            }
            Op::Publish { src, name: n, size, chunk_size, salt } => {
                let chunk_size = MIN_CHUNK << (chunk_size % 3);
                let size = u64::from(size % (8 * MIN_CHUNK)) + 1;
                let count = lmk::meta::chunk_count(size, chunk_size);
                let hashes = (0..count).map(|i| Hash20([salt ^ i as u8; 20])).collect();
                if let Ok(meta) = FileMeta::new(name(n), size, chunk_size, hashes) {
                    h.catalog(src, CatRequest::Publish(meta));
                }
            }
            Op::GetName { name: n } => h.catalog(n, CatRequest::GetMeta(Selector::Name(name(n)))),
            Op::List => h.catalog(0, CatRequest::List),
            Op::Advance { millis } => {
                h.now += Duration::from_millis(u64::from(millis % 200_000));
                let before = h.tracker.next_deadline();
                h.tracker.handle_timeout(h.now);
                if let (Some(before), Some(after)) = (before, h.tracker.next_deadline()) {
                    assert!(before > h.now || after > h.now, "a fired timer moves on");
                }
            }
            Op::Status => {
                let _ = h.tracker.status();
            }
        }
    }
});

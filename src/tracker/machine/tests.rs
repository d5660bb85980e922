//! The tracker core on a fake clock: datagrams and catalog requests in, answers checked.

use super::*;
use crate::common::publish_key::PublishKey;
use crate::meta::MIN_CHUNK;
use crate::wire::udp::AnnounceRequest;
use std::net::Ipv4Addr;

const SEEDER: u64 = 0;
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn tracker(t0: Instant) -> Tracker {
    Tracker::new(Config { seed: 1, ..Config::default() }, t0)
}

fn from_ip(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn from(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ask(t: &mut Tracker, now: Instant, src: SocketAddr, req: Request) -> Option<Response> {
    let mut bytes = Vec::new();
    req.encode(&mut bytes);
    let mut out = Vec::new();
    t.handle_datagram(now, src, &bytes, &mut out).then(|| Response::decode(&out, false).unwrap())
}

fn connect(t: &mut Tracker, now: Instant, src: SocketAddr) -> u64 {
    match ask(t, now, src, Request::Connect { transaction_id: 9 }) {
        Some(Response::Connect { transaction_id: 9, connection_id }) => connection_id,
        other => panic!("{other:?}"),
    }
}

fn announce(conn: u64, hash: Hash20, left: u64, port: u16, event: Event) -> Request {
    Request::Announce(AnnounceRequest {
        connection_id: conn,
        transaction_id: 5,
        info_hash: hash,
        peer_id: *b"-LMK010-abcdefghijkl",
        downloaded: 0,
        left,
        uploaded: 0,
        event,
        ip: Ipv4Addr::UNSPECIFIED,
        key: 0,
        num_want: -1,
        port,
    })
}

/// The same announce from a client that is not LMK.
fn foreign(req: Request) -> Request {
    match req {
        Request::Announce(a) => Request::Announce(AnnounceRequest { peer_id: *b"-lt2090-abcdefghijkl", ..a }),
        other => other,
    }
}

fn refused(resp: Option<Response>) -> String {
    match resp {
        Some(Response::Error { message, .. }) => message,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn peers(resp: Option<Response>) -> Vec<SocketAddr> {
    match resp {
        Some(Response::Announce { peers, .. }) => peers,
        other => panic!("{other:?}"),
    }
}

#[test]
fn seeder_joins_and_leecher_sees_it() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    assert!(peers(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))).is_empty());
    let c2 = connect(&mut t, t0, from(2000));
    let got = peers(ask(&mut t, t0, from(2000), announce(c2, h, 100, 0, Event::Started)));
    assert_eq!(got, vec![from(7000)]);
    assert_eq!(t.stats().joins, 1, "a port-0 leecher is answered but not stored");
}

#[test]
fn heartbeat_keeps_peer_alive() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    for s in [0, 10, 20, 30, 40] {
        ask(&mut t, t0 + Duration::from_secs(s), from(1000), announce(c, h, SEEDER, 7000, Event::None));
        t.handle_timeout(t0 + Duration::from_secs(s + 5));
    }
    assert_eq!(t.swarms.seeders(&h), 1);
    assert_eq!(t.stats().expiries, 0);
}

#[test]
fn stopped_removes() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Stopped));
    assert_eq!(t.swarms.seeders(&h), 0);
    assert_eq!(t.stats().leaves, 1);
}

#[test]
fn connection_ids_bound_to_ip_and_time() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    let other_port = ask(&mut t, t0, from(1001), announce(c, h, SEEDER, 1, Event::None));
    assert!(matches!(other_port, Some(Response::Announce { .. })), "the port is not part of the id");
    let mapped = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), 5);
    assert!(matches!(ask(&mut t, t0, mapped, announce(c, h, SEEDER, 1, Event::None)), Some(Response::Announce { .. })));
    let other_ip = ask(&mut t, t0, from_ip([127, 0, 0, 2], 1000), announce(c, h, SEEDER, 1, Event::None));
    assert_eq!(refused(other_ip), UNKNOWN_CONNECTION_ID);
    // BEP 15: accepted for 2 minutes at least; one tick before the end of the next epoch, not at it.
    let last = t0 + EPOCH * 2 - Duration::from_millis(1);
    assert!(matches!(
        ask(&mut t, last, from(1000), announce(c, h, SEEDER, 1, Event::None)),
        Some(Response::Announce { .. })
    ));
    assert_eq!(
        refused(ask(&mut t, t0 + EPOCH * 2, from(1000), announce(c, h, SEEDER, 1, Event::None))),
        UNKNOWN_CONNECTION_ID
    );
    // Valid in the next epoch, not in the one after.
    let later = t0 + EPOCH + Duration::from_secs(1);
    assert!(matches!(
        ask(&mut t, later, from(1000), announce(c, h, SEEDER, 1, Event::None)),
        Some(Response::Announce { .. })
    ));
    let too_late = t0 + EPOCH * 2 + Duration::from_secs(1);
    assert!(matches!(
        ask(&mut t, too_late, from(1000), announce(c, h, SEEDER, 1, Event::None)),
        Some(Response::Error { .. })
    ));
    // Another tracker (a restart) does not accept our ids.
    let mut other = Tracker::new(Config { seed: 2, ..t.config.clone() }, t0);
    assert!(matches!(
        ask(&mut other, t0, from(1000), announce(c, h, SEEDER, 1, Event::None)),
        Some(Response::Error { .. })
    ));
}

#[test]
fn garbage_is_silent_or_answered_small() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let mut out = Vec::new();
    assert!(!t.handle_datagram(t0, from(1), b"short", &mut out));
    assert!(!t.handle_datagram(t0, from(1), &[0u8; 3000], &mut out));
    assert_eq!(t.stats().dropped, 2);
    let mut bad = Vec::new();
    Request::Connect { transaction_id: 1 }.encode(&mut bad);
    bad[11] = 77; // unknown action after a valid header
    assert!(t.handle_datagram(t0, from(1), &bad, &mut out));
    assert!(out.len() <= bad.len(), "error reply {} bytes for a {}-byte request", out.len(), bad.len());
    let mut wrong_id = Vec::new();
    announce(12345, Hash20::of(b"x"), 0, 1, Event::None).encode(&mut wrong_id);
    assert!(t.handle_datagram(t0, from(1), &wrong_id, &mut out));
    assert!(out.len() <= wrong_id.len());
    let mut rng = Rng::new(5);
    let mut buf = [0u8; 200];
    for _ in 0..5000 {
        let n = rng.below(buf.len());
        rng.fill(&mut buf[..n]);
        t.handle_datagram(t0, from(2), &buf[..n], &mut out);
    }
}

#[test]
fn scrape_counts() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
    ask(&mut t, t0, from(1000), announce(c, h, 5, 7001, Event::Started));
    let req = Request::Scrape(udp::ScrapeRequest {
        connection_id: c,
        transaction_id: 3,
        info_hashes: vec![h, Hash20::of(b"none")],
    });
    match ask(&mut t, t0, from(1000), req) {
        Some(Response::Scrape { stats, .. }) => {
            assert_eq!(stats[0], ScrapeStats { seeders: 1, completed: 1, leechers: 1 });
            assert_eq!(stats[1], ScrapeStats::default());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn catalog_publish_list_expire() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
    let id = match t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta.clone())) {
        cat::Response::Published(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(id, meta.content_id());
    let c = connect(&mut t, t0, from(1000));
    ask(&mut t, t0, from(1000), announce(c, id, SEEDER, 7000, Event::Started));
    match t.handle_catalog(t0, LOCAL, cat::Request::List) {
        cat::Response::List(l) => assert_eq!((l.len(), l[0].seeders), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert!(t.status().contains("f "));
    // The seeder stops; the file stays one expiry time, then goes.
    ask(&mut t, t0, from(1000), announce(c, id, SEEDER, 7000, Event::Stopped));
    t.handle_timeout(t0 + Duration::from_secs(29));
    assert_eq!(t.catalog.len(), 1);
    t.handle_timeout(t0 + Duration::from_secs(31));
    assert_eq!(t.catalog.len(), 0);
}

fn keyed(t0: Instant, key: &[u8]) -> Tracker {
    let policy = Policy { files_per_ip: 2, publish_key: Some(PublishKey::from_bytes(key).unwrap()) };
    tracker(t0).with_catalog(policy)
}

fn challenge(t: &mut Tracker, now: Instant, ip: IpAddr) -> cat::Nonce {
    match t.handle_catalog(now, ip, cat::Request::Challenge) {
        cat::Response::Challenge(nonce) => nonce,
        other => panic!("{other:?}"),
    }
}

fn code(response: cat::Response) -> Option<cat::ErrorCode> {
    match response {
        cat::Response::Error { code, .. } => Some(code),
        _ => None,
    }
}

#[test]
fn with_a_key_only_signed_publishes_are_taken_and_refusals_counted() {
    let t0 = Instant::now();
    let key = PublishKey::from_bytes(b"sixteen byte key").unwrap();
    let mut t = keyed(t0, b"sixteen byte key");
    let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
    let nonce = challenge(&mut t, t0, LOCAL);
    let signed = cat::Request::SignedPublish { nonce, mac: key.sign(&nonce, &meta), meta: meta.clone() };
    assert_eq!(t.handle_catalog(t0, LOCAL, signed), cat::Response::Published(meta.content_id()));
    let unauthorized = Some(cat::ErrorCode::Unauthorized);
    assert_eq!(code(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta.clone()))), unauthorized);
    let forged = cat::Request::SignedPublish { nonce, mac: [0; 20], meta };
    assert_eq!(code(t.handle_catalog(t0, LOCAL, forged)), unauthorized);
    assert_eq!((t.stats().unauthorized, t.stats().catalog_refused), (2, 2));
    assert!(t.status().contains("unauthorized 2"), "{}", t.status());
}

#[test]
fn without_a_key_signed_and_plain_publishes_both_count_against_the_quota() {
    let t0 = Instant::now();
    let mut t = tracker(t0).with_catalog(Policy { files_per_ip: 2, publish_key: None });
    let meta = |n: u8| FileMeta::new(format!("f{n}"), 5, MIN_CHUNK, vec![Hash20::of(&[n])]).unwrap();
    let signed = cat::Request::SignedPublish { nonce: [0; 16], mac: [0; 20], meta: meta(1) };
    assert_eq!(code(t.handle_catalog(t0, LOCAL, signed)), None, "no key: the MAC is not looked at");
    assert_eq!(code(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta(2)))), None);
    let over = t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta(3)));
    assert!(matches!(&over, cat::Response::Error { code: cat::ErrorCode::Full, message } if message.contains("quota")));
    let other = IpAddr::from([10, 0, 0, 2]);
    assert_eq!(code(t.handle_catalog(t0, other, cat::Request::Publish(meta(3)))), None);
    match t.handle_catalog(t0, LOCAL, cat::Request::List) {
        cat::Response::List(l) => assert_eq!(l.len(), 3),
        other => panic!("{other:?}"),
    }
}

/// Seeders of `h` listed after a sweep at `at`, on a fresh tracker fed `script`.
fn listed_after(t0: Instant, at: Instant, script: impl Fn(&mut Tracker)) -> usize {
    let mut t = tracker(t0);
    script(&mut t);
    t.handle_timeout(at);
    t.swarms.seeders(&Hash20::of(b"file"))
}

#[test]
fn lmk_peers_expire_after_expiry_within_a_bucket() {
    let t0 = Instant::now();
    let script = |t: &mut Tracker| {
        let c = connect(t, t0, from(1000));
        ask(t, t0, from(1000), announce(c, Hash20::of(b"file"), SEEDER, 7000, Event::Started));
    };
    let deadline = t0 + Duration::from_secs(30);
    assert_eq!(listed_after(t0, deadline, script), 1, "alive at exactly the expiry");
    // Peers expire by buckets of 1/32 of the expiry time.
    let grain = Duration::from_secs(30) / 32;
    assert_eq!(listed_after(t0, deadline + grain + Duration::from_millis(1), script), 0);
}

#[test]
fn foreign_clients_expire_after_foreign_expiry_within_a_bucket() {
    let t0 = Instant::now();
    // A libtorrent seeder re-announcing after 300 s, then qBittorrent's 600 s, swept in between.
    let script = |t: &mut Tracker| {
        for s in [0, 300, 900] {
            let now = t0 + Duration::from_secs(s);
            t.handle_timeout(now);
            assert_eq!(t.swarms.seeders(&Hash20::of(b"file")), usize::from(s > 0), "listed at {s} s");
            let c = connect(t, now, from(1000));
            ask(t, now, from(1000), foreign(announce(c, Hash20::of(b"file"), SEEDER, 7000, Event::None)));
        }
    };
    let deadline = t0 + Duration::from_secs(900) + Config::default().foreign_expiry;
    assert_eq!(listed_after(t0, deadline, script), 1, "alive at exactly the foreign expiry");
    let grain = Config::default().foreign_expiry / 32;
    assert_eq!(listed_after(t0, deadline + grain + Duration::from_millis(1), script), 0);
}

#[test]
fn caps_refuse_with_an_error_and_count() {
    let t0 = Instant::now();
    let limits = Limits { max_peers_per_ip_in_swarm: 2, max_swarms_per_ip: 3, ..Limits::default() };
    let mut t = Tracker::new(Config { seed: 1, limits, ..Config::default() }, t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    for port in [7000, 7001] {
        ask(&mut t, t0, from(1000), announce(c, h, SEEDER, port, Event::Started));
    }
    let full = refused(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7002, Event::Started)));
    assert_eq!(full, Full::PeersOfIpInSwarm.message());
    for n in 0..10u8 {
        ask(&mut t, t0, from(1000), announce(c, Hash20([n; 20]), SEEDER, 7000, Event::Started));
    }
    assert_eq!((t.swarms.len(), t.stats().refused), (3, 9), "two more swarms, then refusals");
    let c2 = connect(&mut t, t0, from_ip([127, 0, 0, 2], 1));
    assert_eq!(
        peers(ask(&mut t, t0, from_ip([127, 0, 0, 2], 1), announce(c2, h, 100, 7000, Event::Started))).len(),
        2,
        "another address still joins"
    );
    assert_eq!(t.stats().errors_sent, 9);
}

#[test]
fn completed_once_per_peer_and_never_for_port_zero() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    let h = Hash20::of(b"file");
    let c = connect(&mut t, t0, from(1000));
    ask(&mut t, t0, from(1000), announce(c, h, 100, 7000, Event::Started));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Completed));
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 0, Event::Completed));
    assert_eq!(t.swarms.get(&h).map(|s| s.completed), Some(1));
    // Port-0 completions of made-up hashes leave nothing behind.
    for n in 0..100u8 {
        ask(&mut t, t0, from(1000), announce(c, Hash20([n; 20]), SEEDER, 0, Event::Completed));
    }
    assert_eq!(t.swarms.len(), 1);
    ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Stopped));
    assert_eq!(t.swarms.len(), 0, "an empty swarm goes whatever its completed count");
}

#[test]
fn catalog_only_refuses_unlisted_hashes() {
    let t0 = Instant::now();
    let mut t = Tracker::new(Config { seed: 1, catalog_only: true, ..Config::default() }, t0);
    let meta = FileMeta::new("f".into(), 5, MIN_CHUNK, vec![Hash20::of(b"c")]).unwrap();
    let c = connect(&mut t, t0, from(1000));
    let h = meta.content_id();
    assert_eq!(refused(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))), NOT_IN_CATALOG);
    assert!(matches!(t.handle_catalog(t0, LOCAL, cat::Request::Publish(meta)), cat::Response::Published(_)));
    assert!(peers(ask(&mut t, t0, from(1000), announce(c, h, SEEDER, 7000, Event::Started))).is_empty());
    assert_eq!((t.swarms.seeders(&h), t.swarms.len(), t.stats().refused), (1, 1, 1));
    let mut open = tracker(t0);
    let c = connect(&mut open, t0, from(1000));
    assert!(
        peers(ask(&mut open, t0, from(1000), announce(c, Hash20([7; 20]), SEEDER, 7000, Event::Started))).is_empty()
    );
    assert_eq!(open.swarms.len(), 1, "without the option any hash is tracked");
}

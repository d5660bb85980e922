//! The swarm tables' rules: roles, expiry deadlines, sampling, completed, caps.

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn at(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, ip], port))
}

/// Limits no test below reaches unless it sets them.
fn roomy() -> Swarms {
    Swarms::new(Limits {
        max_swarms: 1000,
        max_peers: 1000,
        max_swarms_per_ip: 1000,
        max_peers_per_ip: 1000,
        max_peers_per_ip_in_swarm: 1000,
    })
}

fn h(n: u8) -> Hash20 {
    Hash20([n; 20])
}

#[test]
fn upsert_moves_between_roles_and_counts() {
    let mut all = roomy();
    assert_eq!(all.upsert(h(1), addr(1), false, false, 0), Ok(Change::Joined));
    assert_eq!(all.upsert(h(1), addr(1), false, false, 0), Ok(Change::Refreshed));
    assert_eq!(all.upsert(h(1), addr(1), true, false, 0), Ok(Change::Refreshed));
    let s = all.get(&h(1)).unwrap();
    assert_eq!((s.seeders(), s.leechers()), (1, 0));
    assert_eq!(all.remove(&h(1), addr(1)), Change::Left);
    assert_eq!(all.remove(&h(1), addr(1)), Change::Unchanged);
    assert!(all.get(&h(1)).is_none(), "an emptied swarm goes at once");
    assert_eq!((all.len(), all.peer_count(), all.addresses()), (0, 0, 0));
}

#[test]
fn v4_mapped_and_v6_addresses() {
    let mut all = roomy();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
    all.upsert(h(1), addr(1), true, false, 0).unwrap();
    assert_eq!(all.upsert(h(1), mapped, true, false, 0), Ok(Change::Refreshed), "same peer as 127.0.0.1:1");
    let v6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
    all.upsert(h(1), v6, true, false, 0).unwrap();
    let s = all.get(&h(1)).unwrap();
    let mut out = Vec::new();
    s.pick(addr(9), false, 10, &mut Rng::new(1), &mut out);
    assert_eq!(out, vec![addr(1)], "an IPv4 requester gets IPv4 peers");
    s.pick("[2001:db8::2]:9".parse().unwrap(), false, 10, &mut Rng::new(1), &mut out);
    assert_eq!(out, vec![v6]);
    assert_eq!((s.seeders(), all.peer_count(), all.addresses()), (2, 2, 2));
    assert_eq!(all.remove(&h(1), v6), Change::Left);
    assert!(all.get(&h(1)).unwrap().v6.is_none(), "an emptied IPv6 table is freed");
    assert_eq!((all.peer_count(), all.addresses()), (1, 1));
}

#[test]
fn expire_one_tick_before_and_at_the_deadline() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), true, false, 1000).unwrap();
    all.upsert(h(1), addr(2), false, false, 2000).unwrap();
    all.expire(1000, |_, _| panic!("a deadline equal to now is alive"));
    let mut gone = 0;
    all.expire(1001, |_, n| gone += n);
    assert_eq!(gone, 1);
    let s = all.get(&h(1)).unwrap();
    assert_eq!((s.seeders(), s.leechers()), (0, 1));
}

#[test]
fn deadlines_survive_the_clock_wrap() {
    let mut all = roomy();
    let near_wrap = u32::MAX - 10;
    all.upsert(h(1), addr(1), true, false, near_wrap.wrapping_add(1000)).unwrap();
    all.expire(near_wrap.wrapping_add(500), |_, _| panic!("not yet"));
    all.expire(near_wrap.wrapping_add(1001), |_, _| {});
    assert_eq!((all.len(), all.peer_count()), (0, 0));
}

#[test]
fn pick_orders_and_bounds() {
    let mut all = roomy();
    for p in 1..=10 {
        all.upsert(h(1), addr(p), true, false, 0).unwrap();
    }
    for p in 11..=20 {
        all.upsert(h(1), addr(p), false, false, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let mut rng = Rng::new(3);
    let mut out = Vec::new();
    s.pick(addr(11), false, 15, &mut rng, &mut out);
    assert_eq!(out.len(), 15);
    assert!(out[..10].iter().all(|a| a.port() <= 10), "seeders first");
    assert!(!out.contains(&addr(11)));
    let mut dedup = out.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 15);
    s.pick(addr(1), true, 50, &mut rng, &mut out);
    assert_eq!(out.len(), 10, "a seeder gets leechers only");
    assert!(out.iter().all(|a| a.port() > 10));
}

#[test]
fn pick_samples_every_seeder_eventually() {
    let mut all = roomy();
    for p in 1..=20 {
        all.upsert(h(1), addr(p), true, false, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let mut rng = Rng::new(9);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for _ in 0..50 {
        s.pick(addr(99), false, 3, &mut rng, &mut out);
        seen.extend(out.iter().copied());
    }
    assert_eq!(seen.len(), 20);
}

#[test]
fn completed_counts_once_per_peer_turning_seeder() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), false, false, 0).unwrap();
    all.upsert(h(1), addr(1), true, true, 0).unwrap();
    all.upsert(h(1), addr(1), true, true, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 1, "completed twice counts once");
    all.upsert(h(1), addr(2), true, true, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 2, "a new seeder with completed counts");
    all.upsert(h(1), addr(3), false, true, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 2, "completed with bytes left is no completion");
}

#[test]
fn empty_swarms_go_whatever_their_completed_count() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), true, true, 100).unwrap();
    all.upsert(h(2), addr(1), true, true, 100).unwrap();
    all.remove(&h(1), addr(1));
    all.expire(101, |_, _| {});
    assert_eq!((all.len(), all.peer_count(), all.addresses()), (0, 0, 0));
}

#[test]
fn each_cap_refuses_new_peers_and_swarms_only() {
    let limits =
        Limits { max_swarms: 3, max_peers: 6, max_swarms_per_ip: 2, max_peers_per_ip: 4, max_peers_per_ip_in_swarm: 2 };
    let mut all = Swarms::new(limits);
    all.upsert(h(1), at(1, 1), true, false, 0).unwrap();
    all.upsert(h(1), at(1, 2), true, false, 0).unwrap();
    assert_eq!(all.upsert(h(1), at(1, 3), true, false, 0), Err(Full::PeersOfIpInSwarm));
    assert_eq!(all.upsert(h(1), at(1, 2), false, false, 0), Ok(Change::Refreshed), "a held peer is refreshed");
    all.upsert(h(2), at(1, 1), true, false, 0).unwrap();
    assert_eq!(all.upsert(h(3), at(1, 1), true, false, 0), Err(Full::SwarmsOfIp));
    all.upsert(h(2), at(1, 2), true, false, 0).unwrap();
    assert_eq!(all.upsert(h(1), at(2, 1), true, false, 0), Ok(Change::Joined), "another address may join");
    assert_eq!(all.upsert(h(3), at(2, 1), true, false, 0), Ok(Change::Joined));
    assert_eq!(all.upsert(h(4), at(3, 1), true, false, 0), Err(Full::Swarms));
    assert_eq!(all.upsert(h(3), at(3, 1), true, false, 0), Err(Full::Peers));
    all.remove(&h(3), at(2, 1));
    assert_eq!(all.upsert(h(3), at(3, 1), true, false, 0), Ok(Change::Joined), "room again after a leave");
    let mut per_ip = Swarms::new(Limits { max_peers_per_ip_in_swarm: 9, ..limits });
    for (n, hash) in [(1, h(1)), (2, h(1)), (3, h(2)), (4, h(2))] {
        per_ip.upsert(hash, at(1, n), true, false, 0).unwrap();
    }
    assert_eq!(per_ip.upsert(h(2), at(1, 5), true, false, 0), Err(Full::PeersOfIp));
    assert_eq!(per_ip.len(), 2, "a refused announce leaves no swarm behind");
}

#[test]
fn usage_is_released_by_leaves_and_expiry() {
    let mut all = roomy();
    for p in 1..=5 {
        all.upsert(Hash20([p as u8; 20]), at(1, p), false, false, 10).unwrap();
    }
    all.upsert(h(1), at(2, 1), false, false, 20).unwrap();
    assert_eq!(all.addresses(), 2);
    all.expire(11, |_, _| {});
    assert_eq!((all.len(), all.peer_count()), (1, 1));
    assert_eq!(all.addresses(), 2, "10.0.0.1 still owns the swarm 10.0.0.2 is in");
    all.remove(&h(1), at(2, 1));
    assert_eq!((all.len(), all.peer_count(), all.addresses()), (0, 0, 0));
}

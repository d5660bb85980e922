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
    Swarms::new(
        Limits {
            max_swarms: 1000,
            max_peers: 10_000,
            max_swarms_per_ip: 1000,
            max_peers_per_ip: 10_000,
            max_peers_per_ip_in_swarm: 1000,
        },
        1,
    )
}

fn h(n: u8) -> Hash20 {
    Hash20([n; 20])
}

#[test]
fn upsert_moves_between_roles_and_counts() {
    let mut all = roomy();
    assert_eq!(all.upsert(h(1), addr(1), false, false, 0, 0), Ok(Change::Joined));
    assert_eq!(all.upsert(h(1), addr(1), false, false, 0, 0), Ok(Change::Refreshed));
    assert_eq!(all.upsert(h(1), addr(1), true, false, 0, 0), Ok(Change::Refreshed));
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
    all.upsert(h(1), addr(1), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(1), mapped, true, false, 0, 0), Ok(Change::Refreshed), "same peer as 127.0.0.1:1");
    let v6: SocketAddr = "[2001:db8::1]:7".parse().unwrap();
    all.upsert(h(1), v6, true, false, 0, 0).unwrap();
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

impl Swarms {
    /// Expires everything due, however many calls it takes.
    fn expire_all(&mut self, now: Millis, mut dropped: impl FnMut(&Hash20, usize)) {
        while self.expire(now, 7, &mut dropped) {}
    }
}

#[test]
fn expire_one_tick_before_and_at_the_bucket_end() {
    let mut all = roomy();
    // A ttl of 3200 ms has a grain of 100 ms: deadlines 3200 and 6400 are bucket ends.
    all.upsert(h(1), addr(1), true, false, 0, 3200).unwrap();
    all.upsert(h(1), addr(2), false, false, 3200, 3200).unwrap();
    all.expire_all(3200, |_, _| panic!("a deadline equal to now is alive"));
    let mut gone = 0;
    all.expire_all(3201, |_, n| gone += n);
    assert_eq!(gone, 1);
    let s = all.get(&h(1)).unwrap();
    assert_eq!((s.seeders(), s.leechers()), (0, 1));
}

#[test]
fn a_deadline_is_rounded_up_to_its_bucket_end() {
    let mut all = roomy();
    // Grain 100 ms: heard at 1 ms, the deadline 3201 rounds up to 3300.
    all.upsert(h(1), addr(1), true, false, 1, 3200).unwrap();
    all.expire_all(3300, |_, _| panic!("kept to the end of its bucket"));
    all.expire_all(3301, |_, _| {});
    assert_eq!((all.len(), all.peer_count()), (0, 0));
    assert_eq!(bucket_end(5, 0), 5, "no ttl: gone a millisecond later");
}

#[test]
fn a_refresh_moves_a_peer_to_its_new_bucket() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), true, false, 0, 3200).unwrap();
    all.upsert(h(1), addr(2), true, false, 0, 3200).unwrap();
    assert_eq!(all.upsert(h(1), addr(1), true, false, 1000, 3200), Ok(Change::Refreshed));
    let mut gone = 0;
    all.expire_all(3201, |_, n| gone += n);
    assert_eq!((gone, all.peer_count()), (1, 1), "the refreshed peer stays");
    all.expire_all(4201, |_, n| gone += n);
    assert_eq!((gone, all.len(), all.addresses()), (2, 0, 0));
}

#[test]
fn expiry_goes_a_budget_at_a_time_and_resumes() {
    let mut all = roomy();
    for p in 1..=50 {
        all.upsert(h(1), addr(p), p % 2 == 0, false, 0, 32).unwrap();
        all.upsert(h(2), addr(p), false, false, 0, 32).unwrap();
    }
    let mut gone = 0;
    assert!(all.expire(33, 30, |_, n| gone += n), "more is due");
    assert_eq!((gone, all.peer_count()), (30, 70));
    assert!(all.expire(33, 60, |_, n| gone += n));
    assert!(!all.expire(33, 60, |_, n| gone += n), "all done");
    assert_eq!((gone, all.peer_count(), all.len(), all.addresses()), (100, 0, 0, 0));
}

#[test]
fn expiry_visits_only_swarms_with_a_bucket_due() {
    let mut all = roomy();
    for n in 1..=100 {
        all.upsert(h(n), addr(1), false, false, 0, 1 << 20).unwrap();
    }
    all.upsert(h(200), addr(1), false, false, 0, 32).unwrap();
    // A budget of one peer: a scan of the 100 living swarms could not finish.
    assert!(!all.expire(33, 1, |hash, _| assert_eq!(*hash, h(200))));
    assert_eq!(all.len(), 100);
}

#[test]
fn pick_orders_and_bounds() {
    let mut all = roomy();
    for p in 1..=10 {
        all.upsert(h(1), addr(p), true, false, 0, 0).unwrap();
    }
    for p in 11..=20 {
        all.upsert(h(1), addr(p), false, false, 0, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let mut rng = Rng::new(3);
    let mut out = Vec::new();
    s.pick(addr(11), false, 15, &mut rng, &mut out);
    assert_eq!(out.len(), 15);
    assert!(out[..8].iter().all(|a| a.port() <= 10), "seeders first");
    assert!(out[8..].iter().all(|a| a.port() > 10), "but at most half while leechers wait");
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
        all.upsert(h(1), addr(p), true, false, 0, 0).unwrap();
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
    all.upsert(h(1), addr(1), false, false, 0, 0).unwrap();
    all.upsert(h(1), addr(1), true, true, 0, 0).unwrap();
    all.upsert(h(1), addr(1), true, true, 0, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 1, "completed twice counts once");
    all.upsert(h(1), addr(2), true, true, 0, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 2, "a new seeder with completed counts");
    all.upsert(h(1), addr(3), false, true, 0, 0).unwrap();
    assert_eq!(all.get(&h(1)).unwrap().completed, 2, "completed with bytes left is no completion");
}

#[test]
fn empty_swarms_go_whatever_their_completed_count() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), true, true, 0, 96).unwrap();
    all.upsert(h(2), addr(1), true, true, 0, 96).unwrap();
    all.remove(&h(1), addr(1));
    all.expire_all(97, |_, _| {});
    assert_eq!((all.len(), all.peer_count(), all.addresses()), (0, 0, 0));
}

#[test]
fn each_cap_refuses_new_peers_and_swarms_only() {
    let limits =
        Limits { max_swarms: 3, max_peers: 6, max_swarms_per_ip: 2, max_peers_per_ip: 4, max_peers_per_ip_in_swarm: 2 };
    let mut all = Swarms::new(limits, 1);
    all.upsert(h(1), at(1, 1), true, false, 0, 0).unwrap();
    all.upsert(h(1), at(1, 2), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(1), at(1, 3), true, false, 0, 0), Err(Full::PeersOfIpInSwarm));
    assert_eq!(all.upsert(h(1), at(1, 2), false, false, 0, 0), Ok(Change::Refreshed), "a held peer is refreshed");
    all.upsert(h(2), at(1, 1), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(3), at(1, 1), true, false, 0, 0), Err(Full::SwarmsOfIp));
    all.upsert(h(2), at(1, 2), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(1), at(2, 1), true, false, 0, 0), Ok(Change::Joined), "another address may join");
    assert_eq!(all.upsert(h(3), at(2, 1), true, false, 0, 0), Ok(Change::Joined));
    assert_eq!(all.upsert(h(4), at(3, 1), true, false, 0, 0), Err(Full::Swarms));
    assert_eq!(all.upsert(h(3), at(3, 1), true, false, 0, 0), Err(Full::Peers));
    all.remove(&h(3), at(2, 1));
    assert_eq!(all.upsert(h(3), at(3, 1), true, false, 0, 0), Ok(Change::Joined), "room again after a leave");
    let mut per_ip = Swarms::new(Limits { max_peers_per_ip_in_swarm: 9, ..limits }, 1);
    for (n, hash) in [(1, h(1)), (2, h(1)), (3, h(2)), (4, h(2))] {
        per_ip.upsert(hash, at(1, n), true, false, 0, 0).unwrap();
    }
    assert_eq!(per_ip.upsert(h(2), at(1, 5), true, false, 0, 0), Err(Full::PeersOfIp));
    assert_eq!(per_ip.len(), 2, "a refused announce leaves no swarm behind");
}

#[test]
fn usage_is_released_by_leaves_and_expiry() {
    let mut all = roomy();
    for p in 1..=5 {
        all.upsert(Hash20([p as u8; 20]), at(1, p), false, false, 0, 10).unwrap();
    }
    all.upsert(h(1), at(2, 1), false, false, 0, 20).unwrap();
    assert_eq!(all.addresses(), 2);
    all.expire_all(11, |_, _| {});
    assert_eq!((all.len(), all.peer_count()), (1, 1));
    assert_eq!(all.addresses(), 2, "10.0.0.1 still owns the swarm 10.0.0.2 is in");
    all.remove(&h(1), at(2, 1));
    assert_eq!((all.len(), all.peer_count(), all.addresses()), (0, 0, 0));
}

fn v6(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn ipv6_caps_count_the_slash_64() {
    let limits = Limits {
        max_swarms: 100,
        max_peers: 100,
        max_swarms_per_ip: 2,
        max_peers_per_ip: 5,
        max_peers_per_ip_in_swarm: 2,
    };
    let mut all = Swarms::new(limits, 1);
    all.upsert(h(1), v6("[2001:db8:0:1::1]:1"), true, false, 0, 0).unwrap();
    all.upsert(h(1), v6("[2001:db8:0:1::2]:1"), true, false, 0, 0).unwrap();
    let other_host_same_64 = v6("[2001:db8:0:1:ffff::3]:1");
    assert_eq!(all.upsert(h(1), other_host_same_64, true, false, 0, 0), Err(Full::PeersOfIpInSwarm));
    assert_eq!(all.upsert(h(1), v6("[2001:db8:0:2::1]:1"), true, false, 0, 0), Ok(Change::Joined), "another /64");
    all.upsert(h(2), v6("[2001:db8:0:1::9]:1"), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(3), v6("[2001:db8:0:1::a]:1"), true, false, 0, 0), Err(Full::SwarmsOfIp));
    all.upsert(h(2), v6("[2001:db8:0:1::b]:1"), true, false, 0, 0).unwrap();
    assert_eq!(all.upsert(h(1), v6("[2001:db8:0:1::c]:1"), true, false, 0, 0), Err(Full::PeersOfIpInSwarm));
    assert_eq!(all.upsert(h(2), v6("[2001:db8:0:1::d]:1"), true, false, 0, 0), Err(Full::PeersOfIpInSwarm));
    assert_eq!(all.addresses(), 2);
}

#[test]
fn ipv4_caps_count_each_address() {
    let limits = Limits {
        max_swarms: 100,
        max_peers: 100,
        max_swarms_per_ip: 100,
        max_peers_per_ip: 100,
        max_peers_per_ip_in_swarm: 1,
    };
    let mut all = Swarms::new(limits, 1);
    for ip in 1..=50 {
        assert_eq!(all.upsert(h(1), at(ip, 1), true, false, 0, 0), Ok(Change::Joined));
        assert_eq!(all.upsert(h(1), at(ip, 2), true, false, 0, 0), Err(Full::PeersOfIpInSwarm));
    }
    assert_eq!(all.addresses(), 50);
}

#[test]
fn an_answer_favours_peers_of_other_blocks() {
    let mut all = roomy();
    // 1000 seeders from one /24 (250 addresses, 4 ports each) and 10 from ten other /24s.
    for ip in 1..=250u8 {
        for port in 1..=4 {
            all.upsert(h(1), at(ip, port), true, false, 0, 0).unwrap();
        }
    }
    let others: Vec<SocketAddr> = (1..=10u8).map(|n| SocketAddr::from(([10, n, 0, 1], 7))).collect();
    for &a in &others {
        all.upsert(h(1), a, true, false, 0, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let mut rng = Rng::new(5);
    let mut out = Vec::new();
    for _ in 0..20 {
        s.pick(addr(99), false, 50, &mut rng, &mut out);
        assert_eq!(out.len(), 50, "filled up from the crowded block");
        assert!(others.iter().all(|a| out.contains(a)), "every other block is in the answer: {out:?}");
        let mut dedup = out.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 50, "no peer twice");
    }
}

#[test]
fn records_are_compact() {
    assert_eq!(std::mem::size_of::<V4>(), 6);
    assert_eq!(std::mem::size_of::<V6>(), 18);
    let r = pools::v4(std::net::Ipv4Addr::new(10, 1, 2, 3), 6881);
    assert_eq!(r.addr(), SocketAddr::from(([10, 1, 2, 3], 6881)));
    let a = v6("[2001:db8::1]:7");
    let std::net::IpAddr::V6(ip) = a.ip() else { unreachable!() };
    assert_eq!(pools::v6(ip, 7).addr(), a);
}

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

impl Swarm {
    /// `answer`'s entries read back as addresses into `out`.
    fn pick(
        &self,
        requester: SocketAddr,
        requester_is_seeder: bool,
        want: usize,
        rng: &mut Rng,
        out: &mut Vec<SocketAddr>,
    ) {
        let mut entries = Vec::new();
        self.answer(requester, requester_is_seeder, want, rng, &mut entries);
        *out = addresses(&entries, matches!(Key::of(requester), Key::V6(_)));
    }
}

/// An answer's entries (6 bytes each, or 18 for IPv6) as addresses.
fn addresses(entries: &[u8], ipv6: bool) -> Vec<SocketAddr> {
    let read = |e: &[u8]| {
        let port = u16::from_be_bytes([e[e.len() - 2], e[e.len() - 1]]);
        match e.len() {
            6 => SocketAddr::from(([e[0], e[1], e[2], e[3]], port)),
            _ => SocketAddr::from((<[u8; 16]>::try_from(&e[..16]).unwrap(), port)),
        }
    };
    assert_eq!(entries.len() % if ipv6 { 18 } else { 6 }, 0, "whole entries");
    entries.chunks(if ipv6 { 18 } else { 6 }).map(read).collect()
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
    assert_eq!(addresses(&r, false), vec![SocketAddr::from(([10, 1, 2, 3], 6881))], "a record is its answer entry");
    let a = v6("[2001:db8::1]:7");
    let std::net::IpAddr::V6(ip) = a.ip() else { unreachable!() };
    assert_eq!(addresses(&pools::v6(ip, 7), true), vec![a]);
}

/// Swarms of random shapes (a few /24s or many, peers in several expiry
/// pools, both roles), each asked by a random peer, in it or not.
#[test]
fn answers_hold_distinct_peers_of_the_swarm_never_the_asker() {
    let mut gen = Rng::new(11);
    for case in 0..400 {
        let mut all = roomy();
        let blocks = 1 + gen.below(if case % 2 == 0 { 3 } else { 100 }) as u32;
        let mut roles = std::collections::HashMap::new();
        for _ in 0..gen.below(400) {
            let ip =
                std::net::Ipv4Addr::from((10 << 24) | ((gen.below(blocks as usize) as u32) << 8) | gen.below(8) as u32);
            let peer = SocketAddr::from((ip, 1 + gen.below(4) as u16));
            let seeder = gen.below(3) == 0;
            // Heard at different times: several expiry pools.
            if all.upsert(h(1), peer, seeder, false, gen.below(5) as u64 * 1000, 3200).is_ok() {
                roles.insert(peer, seeder);
            }
        }
        let Some(s) = all.get(&h(1)) else { continue };
        let listed: Vec<SocketAddr> = roles.keys().copied().collect();
        let me = if gen.below(2) == 0 { listed[gen.below(listed.len())] } else { at(200, 9) };
        let me_seeder = roles.get(&me).copied().unwrap_or(gen.below(2) == 0);
        let want = 1 + gen.below(200);
        let mut out = Vec::new();
        s.pick(me, me_seeder, want, &mut gen, &mut out);

        let others = |seeder: bool| roles.iter().filter(|(a, r)| **r == seeder && **a != me).count();
        let room = want - (s.leechers() as usize).saturating_sub(1).min(want / 2);
        let seeders = if me_seeder { 0 } else { room.min(others(true)) };
        let leechers = (want - seeders).min(others(false));
        assert_eq!(out.len(), seeders + leechers, "case {case}: as full as the swarm allows");
        assert!(out[..seeders].iter().all(|a| roles[a]), "case {case}: seeders first");
        assert!(out[seeders..].iter().all(|a| !roles[a]), "case {case}: then leechers");
        assert!(!out.contains(&me), "case {case}: never the asker");
        let mut distinct = out.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), out.len(), "case {case}: no peer twice");
    }
}

/// Over a fixed seed, every peer is answered as often as any other, and in
/// every place of the answer as often: 20 seeders in 20 /24s, 5 wanted.
#[test]
fn answers_are_uniform() {
    let mut all = roomy();
    let seeders: Vec<SocketAddr> = (1..=20u8).map(|n| SocketAddr::from(([10, n, 0, 1], 7))).collect();
    for &a in &seeders {
        all.upsert(h(1), a, true, false, 0, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let (answers, want) = (20_000, 5);
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    let mut times = std::collections::HashMap::<SocketAddr, usize>::new();
    let mut placed = std::collections::HashMap::<(usize, SocketAddr), usize>::new();
    let mut firsts = std::collections::HashMap::<(SocketAddr, SocketAddr), usize>::new();
    for _ in 0..answers {
        s.pick(addr(99), false, want, &mut rng, &mut out);
        assert_eq!(out.len(), want);
        for (place, a) in out.iter().enumerate() {
            *times.entry(*a).or_default() += 1;
            *placed.entry((place, *a)).or_default() += 1;
        }
        *firsts.entry((out[0], out[1])).or_default() += 1;
    }
    // Expected: 5,000 answers per peer, 1,000 per peer and place. The bounds
    // are 4 to 5 standard deviations of a fair draw (the seed is fixed).
    for a in &seeders {
        let n = times[a];
        assert!(n.abs_diff(answers * want / 20) <= 250, "{a} answered {n} times");
        for place in 0..want {
            let n = placed[&(place, *a)];
            assert!(n.abs_diff(answers / 20) <= 150, "{a} in place {place} {n} times");
        }
    }
    // The stride sampler takes one of 4 sets of 5 (every fourth /24); in an
    // answer, the first peer says nothing of the second: 4 x 5 x 4 ordered
    // pairs, 250 times each (unshuffled, only 20 pairs would occur).
    assert_eq!(firsts.len(), 80);
    for (pair, n) in &firsts {
        assert!(n.abs_diff(answers / 80) <= 80, "{pair:?} first and second {n} times");
    }
}

/// A swarm small enough to be answered whole comes in every order as often
/// as any other: 4 seeders, 10 wanted, 24 orders over 24,000 answers.
#[test]
fn a_whole_swarm_comes_in_every_order_alike() {
    let mut all = roomy();
    for n in 1..=4 {
        all.upsert(h(1), at(n, 7), true, false, 0, 0).unwrap();
    }
    let s = all.get(&h(1)).unwrap();
    let mut rng = Rng::new(5);
    let mut out = Vec::new();
    let mut orders = std::collections::HashMap::<Vec<SocketAddr>, usize>::new();
    for _ in 0..24_000 {
        s.pick(addr(99), false, 10, &mut rng, &mut out);
        *orders.entry(out.clone()).or_default() += 1;
    }
    assert_eq!(orders.len(), 24);
    // Expected 1,000 each; 150 is about 5 standard deviations of a fair draw.
    for (order, n) in &orders {
        assert!(n.abs_diff(1000) <= 150, "{order:?} {n} times");
    }
}

#[test]
fn a_v4_mapped_asker_is_not_answered_itself() {
    let mut all = roomy();
    all.upsert(h(1), addr(1), false, false, 0, 0).unwrap();
    all.upsert(h(1), addr(2), false, false, 0, 0).unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
    let mut out = Vec::new();
    all.get(&h(1)).unwrap().pick(mapped, false, 50, &mut Rng::new(1), &mut out);
    assert_eq!(out, vec![addr(2)], "127.0.0.1:1 itself is left out");
}

#[test]
fn an_answer_holds_at_most_max_want_peers() {
    let mut all = roomy();
    for p in 1..=300 {
        all.upsert(h(1), at((p % 250) as u8, p), true, false, 0, 0).unwrap();
    }
    let mut out = Vec::new();
    all.get(&h(1)).unwrap().pick(addr(1), false, 1000, &mut Rng::new(1), &mut out);
    assert_eq!(out.len(), pools::MAX_WANT);
}

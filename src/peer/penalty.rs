//! Peers that misbehaved, remembered by the address block they connect from
//! (an IPv4 address, an IPv6 /64), never by the port their Hello names: a
//! peer chooses that, and an inbound one may name none. Each offence adds
//! strikes, and the block is refused (no dial there, its calls closed at
//! once) for a time that doubles with the strikes, up to [`MAX_BAN`]. Peers
//! sharing an address (a NAT) share its record, as with any per-address rule.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::{backoff, ip_block};

/// The ban of one strike; each further strike doubles it.
const FIRST_BAN: Duration = Duration::from_secs(2);
/// The longest ban.
pub const MAX_BAN: Duration = Duration::from_secs(600);
/// Blocks remembered at most: a full table forgets the record whose ban
/// ended first, so misbehaving from many addresses holds little.
pub const MAX_RECORDS: usize = 4096;

/// What a peer did wrong, from least to most certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// Owed us chunks and sent none for the stall time (a staller, a trickler).
    Stall,
    /// Broke the protocol: rejected a chunk it said it holds, asked beyond the pipeline.
    Violation,
    /// Sent a chunk that failed its hash.
    Poison,
}

impl Offence {
    fn strikes(self) -> u32 {
        match self {
            Offence::Stall => 1,
            Offence::Violation => 3,
            Offence::Poison => 5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    strikes: u32,
    until: Instant,
}

#[derive(Default)]
pub struct Penalties {
    blocks: BTreeMap<IpAddr, Record>,
}

impl Penalties {
    /// Records an offence from `ip`; returns how long its block is refused.
    pub fn punish(&mut self, ip: IpAddr, offence: Offence, now: Instant) -> Duration {
        let block = ip_block(ip);
        if !self.blocks.contains_key(&block) && self.blocks.len() >= MAX_RECORDS {
            let first = self.blocks.iter().min_by_key(|(_, r)| r.until).map(|(b, _)| *b);
            if let Some(b) = first {
                self.blocks.remove(&b);
            }
        }
        let r = self.blocks.entry(block).or_insert(Record { strikes: 0, until: now });
        r.strikes = r.strikes.saturating_add(offence.strikes());
        let ban = backoff(FIRST_BAN, r.strikes - 1, MAX_BAN);
        r.until = r.until.max(now + ban);
        ban
    }

    /// Until when `ip`'s block is refused, if it is now.
    pub fn banned_until(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        self.blocks.get(&ip_block(ip)).map(|r| r.until).filter(|until| *until > now)
    }

    /// Whether `ip`'s block misbehaved before (banned now or not).
    pub fn remembers(&self, ip: IpAddr) -> bool {
        self.blocks.contains_key(&ip_block(ip))
    }

    /// Blocks remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn bans_grow_with_strikes_up_to_the_longest() {
        let t0 = Instant::now();
        let mut p = Penalties::default();
        let stalls: Vec<u64> = (0..3).map(|_| p.punish(v4(1), Offence::Stall, t0).as_secs()).collect();
        assert_eq!(stalls, [2, 4, 8]);
        assert_eq!(p.banned_until(v4(1), t0), Some(t0 + Duration::from_secs(8)));
        assert_eq!(p.banned_until(v4(1), t0 + Duration::from_secs(8)), None, "over at its end");
        assert_eq!(p.banned_until(v4(2), t0), None, "another address");
        assert!(p.remembers(v4(1)) && !p.remembers(v4(2)), "remembered after its ban");
        assert_eq!(p.punish(v4(3), Offence::Poison, t0).as_secs(), 32, "a bad chunk weighs more");
        assert_eq!(p.punish(v4(3), Offence::Poison, t0), MAX_BAN);
    }

    #[test]
    fn an_ipv6_block_is_one_record() {
        let t0 = Instant::now();
        let mut p = Penalties::default();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2::ffff".parse().unwrap();
        p.punish(IpAddr::V6(a), Offence::Violation, t0);
        assert!(p.banned_until(IpAddr::V6(b), t0).is_some(), "the same /64");
        assert!(p.banned_until("2001:db8:1:3::1".parse().unwrap(), t0).is_none());
    }

    #[test]
    fn the_table_is_capped_and_forgets_the_earliest_ending_ban() {
        let t0 = Instant::now();
        let mut p = Penalties::default();
        p.punish(v4(0), Offence::Poison, t0);
        for n in 1..=MAX_RECORDS as u32 {
            p.punish(v4(n), Offence::Stall, t0 + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(p.len(), MAX_RECORDS);
        assert!(p.banned_until(v4(0), t0).is_some(), "the long ban stays");
        assert!(p.banned_until(v4(1), t0).is_none(), "the earliest-ending one went");
    }
}

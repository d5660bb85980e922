//! Who holds our upload slots: a pure function over the connected peers, run
//! on every change, at the end of each turn and on a rotation timer. Slots go
//! to peers that lack something we hold: one that has waited `starve` first,
//! then the one holding fewest chunks (a cooperative swarm serves the
//! furthest behind: a newcomer gets its first chunk early wherever it
//! connected), then the longest waiting; a holder that asks for nothing or
//! drains nothing loses its slot at once; a holder whose turn is over gives
//! it to a waiting peer. Short turns share the uplink by bytes among everyone
//! who wants something, so nobody is far behind at the end.
//!
//! Slots are shared by address block (an IPv4 address, an IPv6 /64): while
//! peers of other blocks want one, a block holds at most
//! ceil(slots / blocks wanting), so many connections from one address
//! cannot take every slot. Slots nobody else wants go to whoever wants them.
//!
//! A deferred peer waits behind every other peer, whatever it holds: one
//! whose address misbehaved before (it held a slot and read nothing, say),
//! whose queue has not moved since chunks went into it, or that asked for
//! nothing in its last turn. It takes only a slot nobody else wants, or the
//! slot of a holder whose turn is over once it has waited `starve`. A
//! non-reader does not take the first slot again at each rechoke or call,
//! and peers that want nothing from us (complete ones whose progress we did
//! not hear of: a peer tells a complete one of no chunk until it completes,
//! or is given a slot it has no use for) neither go before one that still
//! wants something nor take its slot at the end of its turn.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::common::net::ConnId;

/// One connected peer as the choker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub conn: ConnId,
    /// Since when it holds one of our slots, if it does.
    pub slot_since: Option<Instant>,
    /// A holder whose turn is over: it yields to a waiting peer.
    pub due: bool,
    /// It lacks a chunk we hold.
    pub interested: bool,
    /// Since when it has been waiting (connected, or since it last lost a slot).
    pub waiting_since: Instant,
    /// A holder that requested or received something recently.
    pub active: bool,
    /// Chunks it holds: the furthest behind are served first.
    pub held: u32,
    /// Its address block (`common::ip_block`): slots are shared by block.
    pub block: IpAddr,
    /// It waits behind every other peer (misbehaved, reads nothing, or
    /// asked for nothing in its last turn).
    pub deferred: bool,
}

/// The connections that hold a slot after this round, at most `slots` of them.
pub fn choose(cands: &[Candidate], slots: usize, now: Instant, starve: Duration) -> Vec<ConnId> {
    let mut holders: Vec<&Candidate> =
        cands.iter().filter(|c| c.slot_since.is_some() && c.interested && c.active).collect();
    let starved = |c: &Candidate| now.saturating_duration_since(c.waiting_since) >= starve;
    let (mut waiters, mut deferred): (Vec<&Candidate>, Vec<&Candidate>) =
        cands.iter().filter(|c| c.slot_since.is_none() && c.interested).partition(|c| !c.deferred);
    // The furthest behind first, but a peer that has waited `starve` goes
    // before all of them, so none waits without bound.
    waiters.sort_by_key(|c| (!starved(c), if starved(c) { 0 } else { c.held }, c.waiting_since, c.conn));
    deferred.sort_by_key(|c| (c.waiting_since, c.conn));
    // Oldest grants first: they are the first to rotate out.
    holders.sort_by_key(|c| (c.slot_since, c.conn));
    holders.truncate(slots);
    let mut blocks: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for c in holders.iter().chain(&waiters) {
        blocks.insert(c.block, 0);
    }
    let share = slots.div_ceil(blocks.len().max(1));
    let mut kept: Vec<ConnId> = Vec::with_capacity(slots);
    let mut taken = vec![false; waiters.len()];
    // A block's next waiter under its share, in the waiters' order.
    let next_waiter = |taken: &[bool], blocks: &BTreeMap<IpAddr, usize>| {
        (0..waiters.len()).find(|&i| !taken[i] && blocks.get(&waiters[i].block).is_some_and(|n| *n < share))
    };
    let mut over_share = Vec::new();
    let mut given = vec![false; deferred.len()];
    // A turn ends only for a peer that would wait otherwise: with a slot
    // for everyone, a holder that yielded would take a free one back at
    // once, its requests between the two refused (4 peers of a seed with 8
    // slots: one of them always without).
    let scarce = holders.len() + waiters.len() + deferred.len() > slots;
    for h in holders {
        let yields = h.due && scarce;
        if let Some(i) = next_waiter(&taken, &blocks).filter(|_| yields) {
            taken[i] = true;
            kept.push(waiters[i].conn);
            *blocks.entry(waiters[i].block).or_default() += 1;
            continue;
        }
        if let Some(j) = (0..deferred.len()).find(|&j| !given[j] && starved(deferred[j])).filter(|_| yields) {
            given[j] = true;
            kept.push(deferred[j].conn);
            continue;
        }
        match blocks.get_mut(&h.block) {
            Some(n) if *n < share => {
                *n += 1;
                kept.push(h.conn);
            }
            _ => over_share.push(h.conn),
        }
    }
    while kept.len() < slots {
        let Some(i) = next_waiter(&taken, &blocks) else { break };
        taken[i] = true;
        kept.push(waiters[i].conn);
        *blocks.entry(waiters[i].block).or_default() += 1;
    }
    // Nobody under a share waits: the rest go to whoever wants them,
    // holders before waiters, the deferred last.
    let untaken = (0..waiters.len()).filter(|&i| !taken[i]).map(|i| waiters[i].conn);
    let later = (0..deferred.len()).filter(|&j| !given[j]).map(|j| deferred[j].conn);
    let rest = over_share.into_iter().chain(untaken).chain(later);
    let room = slots.saturating_sub(kept.len());
    kept.extend(rest.take(room));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROT: Duration = Duration::from_secs(10);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn cand(id: usize, slot: Option<u64>, waiting: u64, t0: Instant) -> Candidate {
        Candidate {
            conn: ConnId(id),
            slot_since: slot.map(|s| t0 + Duration::from_secs(s)),
            due: false,
            interested: true,
            waiting_since: t0 + Duration::from_secs(waiting),
            active: true,
            held: 0,
            block: IpAddr::from([10, 0, 0, 1]),
            deferred: false,
        }
    }

    #[test]
    fn free_slots_go_to_the_longest_waiting() {
        let t0 = Instant::now();
        let cands = [cand(1, None, 5, t0), cand(2, None, 1, t0), cand(3, None, 3, t0)];
        assert_eq!(choose(&cands, 2, t0 + ROT, ROT), vec![ConnId(2), ConnId(3)]);
    }

    #[test]
    fn the_peer_furthest_behind_goes_first() {
        let t0 = Instant::now();
        let mut late_and_empty = cand(1, None, 9, t0);
        late_and_empty.held = 0;
        let mut early_with_chunks = cand(2, None, 1, t0);
        early_with_chunks.held = 30;
        let mut early_with_few = cand(3, None, 2, t0);
        early_with_few.held = 3;
        let cands = [early_with_chunks, late_and_empty, early_with_few];
        assert_eq!(
            choose(&cands, 2, t0 + secs(9), ROT),
            vec![ConnId(1), ConnId(3)],
            "fewest chunks, then longest waiting"
        );
        assert_eq!(
            choose(&cands, 2, t0 + secs(12), ROT),
            vec![ConnId(2), ConnId(3)],
            "a rotation period of waiting goes before fewer chunks: nobody waits without bound"
        );
    }

    #[test]
    fn a_deferred_peer_waits_behind_everyone_but_takes_a_slot_nobody_wants() {
        let t0 = Instant::now();
        let mut suspect = cand(1, None, 0, t0);
        suspect.deferred = true;
        let mut full = cand(2, None, 5, t0);
        full.held = 30;
        let cands = [suspect, full];
        assert_eq!(choose(&cands, 1, t0 + secs(6), ROT), vec![ConnId(2)], "though it holds nothing");
        assert_eq!(choose(&cands, 1, t0 + ROT * 3, ROT), vec![ConnId(2)], "though it waited longer");
        assert_eq!(choose(&cands, 2, t0, ROT), vec![ConnId(2), ConnId(1)], "a slot nobody else wants");
    }

    #[test]
    fn uninterested_peers_get_nothing() {
        let t0 = Instant::now();
        let mut c = cand(1, None, 0, t0);
        c.interested = false;
        let mut h = cand(2, Some(0), 0, t0);
        h.interested = false;
        assert!(choose(&[c, h], 4, t0, ROT).is_empty());
    }

    #[test]
    fn holders_keep_their_slot_until_their_turn_is_over() {
        let t0 = Instant::now();
        let mut cands = [cand(1, Some(0), 0, t0), cand(2, None, 1, t0)];
        assert_eq!(choose(&cands, 1, t0 + secs(2), ROT), vec![ConnId(1)], "its turn goes on");
        cands[0].due = true;
        assert_eq!(choose(&cands, 1, t0 + secs(2), ROT), vec![ConnId(2)], "its turn is over");
    }

    #[test]
    fn a_turn_ends_only_when_slots_are_short() {
        let t0 = Instant::now();
        let mut holder = cand(1, Some(0), 0, t0);
        holder.due = true;
        let mut deferred = cand(3, None, 0, t0);
        deferred.deferred = true;
        let cands = [holder, cand(2, None, 1, t0), deferred];
        assert_eq!(choose(&cands, 3, t0 + ROT, ROT), vec![ConnId(1), ConnId(2), ConnId(3)], "a slot for each");
        assert_eq!(choose(&cands, 2, t0 + ROT, ROT), vec![ConnId(2), ConnId(3)], "short: its turn is over");
    }

    #[test]
    fn nobody_waiting_means_no_rotation() {
        let t0 = Instant::now();
        let mut holder = cand(1, Some(0), 0, t0);
        holder.due = true;
        assert_eq!(choose(&[holder], 1, t0 + ROT * 5, ROT), vec![ConnId(1)]);
    }

    #[test]
    fn an_idle_holder_loses_its_slot_at_once() {
        let t0 = Instant::now();
        let mut idle = cand(1, Some(0), 0, t0);
        idle.active = false;
        let cands = [idle, cand(2, None, 1, t0)];
        assert_eq!(choose(&cands, 1, t0 + Duration::from_secs(1), ROT), vec![ConnId(2)]);
        assert!(choose(&[idle], 1, t0, ROT).is_empty(), "even with nobody waiting");
    }

    #[test]
    fn a_deferred_peer_takes_a_turn_that_is_over_only_once_it_has_waited() {
        let t0 = Instant::now();
        let mut deferred = cand(1, None, 0, t0);
        deferred.deferred = true;
        let mut holder = cand(2, Some(0), 0, t0);
        holder.due = true;
        let fresh = cand(3, None, 5, t0);
        assert_eq!(choose(&[deferred, holder], 1, t0 + secs(6), ROT), vec![ConnId(2)], "a due holder keeps its slot");
        assert_eq!(
            choose(&[deferred, holder, fresh], 1, t0 + secs(6), ROT),
            vec![ConnId(3)],
            "it yields to a fresh one"
        );
        assert_eq!(choose(&[deferred, holder], 1, t0 + ROT, ROT), vec![ConnId(1)], "after waiting a rotation");
    }

    fn from(block: u8, c: Candidate) -> Candidate {
        Candidate { block: IpAddr::from([10, 0, 0, block]), ..c }
    }

    #[test]
    fn one_address_holds_at_most_its_share_while_others_wait() {
        let t0 = Instant::now();
        // Eight slots held by one address, which has more waiting; one peer of another address waits.
        let mut cands: Vec<Candidate> = (0..8).map(|i| from(1, cand(i, Some(0), 0, t0))).collect();
        cands.extend((8..40).map(|i| from(1, cand(i, None, 0, t0))));
        cands.push(from(2, cand(99, None, 5, t0)));
        let got = choose(&cands, 8, t0 + secs(1), ROT);
        assert_eq!(got.len(), 8);
        assert!(got.contains(&ConnId(99)), "the other address gets a slot at once, not a rotation later");
        assert_eq!(got.iter().filter(|c| c.0 < 8).count(), 7, "one holder over the share gave its slot, the rest stay");
        // Three addresses wanting: at most ceil(8 / 3) = 3 each while the others wait.
        cands.push(from(3, cand(100, None, 5, t0)));
        cands.push(from(3, cand(101, None, 5, t0)));
        cands.push(from(3, cand(102, None, 5, t0)));
        cands.push(from(3, cand(103, None, 5, t0)));
        let got = choose(&cands, 8, t0 + secs(1), ROT);
        let of = |lo: usize, hi: usize| got.iter().filter(|c| (lo..=hi).contains(&c.0)).count();
        assert_eq!((of(0, 39), of(99, 99), of(100, 103)), (4, 1, 3), "3 for the third block, and its 4th waits");
        assert_eq!(got.len(), 8, "the slot the second block does not want goes to the first");
    }

    #[test]
    fn a_rotation_goes_to_a_waiter_under_its_share() {
        let t0 = Instant::now();
        let mut cands =
            [from(1, cand(1, Some(0), 0, t0)), from(2, cand(2, Some(0), 0, t0)), from(1, cand(3, None, 1, t0))];
        cands[0].due = true;
        cands[1].due = true;
        // Both holders are due; the waiter's block already holds its share (1 of 2 slots).
        assert_eq!(choose(&cands, 2, t0 + ROT, ROT), vec![ConnId(3), ConnId(2)], "it replaces its own block's holder");
    }

    #[test]
    fn due_holders_yield_and_slots_cap() {
        let t0 = Instant::now();
        let mut cands = [cand(1, Some(2), 0, t0), cand(2, Some(0), 0, t0), cand(3, None, 1, t0), cand(4, None, 9, t0)];
        cands[1].due = true;
        let got = choose(&cands, 2, t0 + Duration::from_secs(11), ROT);
        assert_eq!(got, vec![ConnId(3), ConnId(1)], "conn 2's turn is over; conn 1's is not");
        assert_eq!(choose(&cands, 1, t0 + Duration::from_secs(30), ROT).len(), 1);
    }
}

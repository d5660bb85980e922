//! The uploading side of the peer core: requests answered in order, chunks
//! read into the connection's queue under the upload bucket, the seed's
//! spreading of distinct chunks, and who holds the upload slots.

use super::*;

impl Machine {
    pub(super) fn on_request(&mut self, now: Instant, conn: ConnId, index: u32, sole: bool, more: bool) {
        let mut spread_over = false;
        let served = self.served(conn).min(self.slots());
        if let Some((_, t)) = self.pair(conn) {
            t.asked(now, served);
        }
        let (again, refuse) = self.spread_rule(now, conn, index, sole, more);
        let Some((s, t)) = self.pair(conn) else { return };
        if s.owed.len() >= MAX_PIPELINE {
            return self.violation(now, conn, "too many requests outstanding");
        }
        s.last_request = now;
        s.idle_turn = false;
        t.last_asked = now;
        let answer = if s.slot_since.is_none() {
            Answer::Reject(index, RejectReason::NoSlot)
        } else if index >= t.meta.chunk_count() {
            Answer::Reject(index, RejectReason::BadIndex)
        } else if t.stage == Stage::Done {
            Answer::Reject(index, RejectReason::Withdrawn)
        } else if !t.held().get(index) {
            debug!("{conn} {}: asked for chunk {index}, which we never said we hold", s.addr);
            Answer::Reject(index, RejectReason::NotHeld)
        } else if refuse {
            s.spread.push(index);
            s.spread_refusals.push(index);
            t.refused_spread(index);
            Answer::Reject(index, RejectReason::Spread)
        } else {
            if again {
                s.spread.retain(|i| *i != index);
                s.spread_refusals.retain(|i| *i != index);
            }
            spread_over = t.promise(index);
            Answer::Chunk(index)
        };
        s.owed.push_back(answer);
        if matches!(answer, Answer::Reject(_, RejectReason::NotHeld)) {
            self.violations += 1;
        }
        self.outputs.push_back(Output::Feed(conn));
        if let Some(id) = self.sessions.get(&conn).and_then(|s| s.torrent).filter(|_| spread_over) {
            self.offer_spread(id);
        }
    }

    /// Appends the next answer owed on `conn`, whose queue so far ends at
    /// stream offset `queued`: a Reject, or the next piece of a Chunk frame
    /// (its header with the first). Returns whether it changed a file's
    /// state, and the chunk bytes appended.
    pub(super) fn answer(&mut self, now: Instant, conn: ConnId, queued: u64, out: &mut Vec<u8>) -> (bool, u64) {
        let free_ahead = self.next_turn(Some(conn)).is_some_and(|next| next != conn);
        let Some(s) = self.sessions.get_mut(&conn) else { return (false, 0) };
        let Some(answer) = s.owed.front().copied() else { return (false, 0) };
        let Some(t) = s.torrent.and_then(|id| self.torrents.get_mut(&id)) else { return (false, 0) };
        let reason = match answer {
            Answer::Reject(_, reason) => reason,
            Answer::Chunk(index) => {
                let begun = s.sending;
                let Sending { offset, left } = begun.unwrap_or(Sending {
                    offset: t.meta.chunk_offset(index),
                    left: t.storage.body_len(t.meta.chunk_len(index).unwrap_or(0) as usize),
                });
                let len = left.min(PIECE);
                // The chunk bytes this piece stands for: a frame sent in one
                // piece counts the chunk's length (the simulator's token is
                // 12 bytes on the wire but the chunk's on its link).
                let whole = t.meta.chunk_len(index).map_or(0, u64::from);
                let counted = if begun.is_none() && len == left { whole } else { len as u64 };
                // The budget holds a piece per frame under way, as the daemons
                // queue it: a token standing for a whole big chunk takes one
                // piece of it, or the simulator would send a chunk at a time.
                let budgeted = counted.min(PIECE as u64);
                let waits = self.unsent + budgeted > budget(self.config.slots, t.meta.chunk_size());
                if waits != s.waits_budget {
                    s.waits_budget = waits;
                    if waits {
                        self.budget_waiters += 1;
                    } else {
                        self.budget_waiters -= 1;
                    }
                }
                if waits {
                    return (false, 0); // fed again when chunk bytes leave or a connection closes
                }
                if begun.is_none() && self.up.rate().is_some() {
                    if !self.turns.contains(&conn) {
                        self.turns.push_back(conn);
                    }
                    if free_ahead || !self.up.ready(now) {
                        return (false, 0); // the bucket refills on a timer, which feeds the next in turn
                    }
                    self.turns.retain(|c| *c != conn);
                }
                let start = out.len();
                if begun.is_none() {
                    put_chunk_header(out, index, left);
                }
                let body = out.len();
                let read = t.storage.read(offset, len, out);
                let read = match read {
                    Ok(()) if out.len() - body == len => Ok(()),
                    Ok(()) => Err(ReadError::Io(std::io::Error::other("short read"))),
                    Err(e) => Err(e),
                };
                let e = match read {
                    Ok(()) => {
                        s.unsent.push(queued + (out.len() - start) as u64, budgeted, Some(now));
                        self.unsent += budgeted;
                        s.last_sent = now;
                        s.sent_rate.add(now, counted);
                        s.unwritten = true;
                        if len < left {
                            s.sending = Some(Sending { offset: offset + len as u64, left: left - len });
                            return (false, counted);
                        }
                        // The frame is whole: what waited behind it follows.
                        s.sending = None;
                        out.append(&mut s.deferred);
                        s.owed.pop_front();
                        if self.up.rate().is_some() && matches!(s.owed.front(), Some(Answer::Chunk(_))) {
                            self.turns.push_back(conn);
                        }
                        if t.is_complete() {
                            // It holds it now (its Have is on the way): a seed may send others there.
                            if let Some(theirs) = s.theirs.as_mut() {
                                theirs.set(index);
                            }
                            s.arriving.retain(|(_, at)| now < *at + IN_FLIGHT);
                            s.arriving.push((index, now));
                        }
                        t.counters.uploaded += whole;
                        s.turn_sent += whole;
                        let turn = turn_bytes(t.meta.chunk_size());
                        self.turn_over |= s.turn_sent >= turn && s.turn_sent - whole < turn;
                        if begun.is_none() {
                            self.up.take(now, whole);
                        }
                        return (t.goal_met(now), counted);
                    }
                    Err(e) => e,
                };
                out.truncate(start);
                let changed = matches!(e, ReadError::Changed);
                match e {
                    ReadError::Changed => {
                        warn!("{} changed on disk since it was hashed: withdrawn", t.meta.name());
                        t.stage = Stage::Done;
                    }
                    ReadError::Io(e) => warn!("{}: read failed: {e}", t.meta.name()),
                }
                if begun.is_some() {
                    // In the middle of its frame: nothing else may follow on this connection.
                    self.disconnect(now, conn);
                    return (changed, 0);
                }
                match changed {
                    true => RejectReason::Withdrawn,
                    false => RejectReason::ReadError,
                }
            }
        };
        s.owed.pop_front();
        let index = match answer {
            Answer::Chunk(i) | Answer::Reject(i, _) => i,
        };
        Message::Reject { index, reason }.encode(out);
        (true, 0)
    }

    /// Under an upload limit, whose chunk may begin next: the first in turn
    /// that is `asking` (its queue has room) or whose queue the kernel has
    /// taken. A turn whose chunk bytes still wait for the kernel is passed
    /// over: one slow or non-reading peer at the front held every other's.
    pub(super) fn next_turn(&self, asking: Option<ConnId>) -> Option<ConnId> {
        let free = |c: &ConnId| Some(*c) == asking || self.sessions.get(c).is_some_and(|s| s.unsent.is_empty());
        self.turns.iter().copied().find(|c| free(c))
    }

    /// Whether a seed refuses `conn` chunk `index` with `Spread`, and whether
    /// that peer is owed it whatever its past refusals (`again`). Only a seed
    /// looks at its other connections: a leecher's requests stay off the scans.
    ///
    /// While our uplink bounds the swarm and some chunk has not gone out
    /// yet, distinct chunks go first (`Torrent::spreading`). A chunk refused
    /// twice and asked again is sent: the peers we pointed to did not give it
    /// (a poisoner that claims it, one that left or stalls). The refusals are
    /// counted until it is sent, whatever came between (a NoSlot, the chunk
    /// offered again with a Have).
    ///
    /// Once every chunk has gone out, or while the peers' uplinks bound the
    /// swarm (`Torrent::peers_bound`), a chunk we sent before goes to an asker
    /// that has no other holder to use (`sole`), and to no one while a copy of
    /// ours is on its way to another. Rounds of second copies to whoever asked
    /// kept a seed busy to the end of 1000 peers (lmk-sim, seed 1: 1.097
    /// copies, last at 1.094 x T_p2p; 1.022 copies at 1.101 this way). The
    /// holders we know of are only our peers, which hold what we sent them:
    /// an asker with other chunks to fetch meanwhile (`more`) loses no time
    /// to a refusal and is sent to its own holders whatever we know; any
    /// other only to a holder we know (1000 peers of 64 MiB arriving over
    /// 30 s: 3.26 -> 1.42 copies; refusing every asker that is not `sole`
    /// put the last of 200 with churn at 1.25 x T_p2p against 1.18).
    fn spread_rule(&self, now: Instant, conn: ConnId, index: u32, sole: bool, more: bool) -> (bool, bool) {
        let Some(s) = self.sessions.get(&conn) else { return (false, false) };
        let Some(t) = s.torrent.and_then(|id| self.torrents.get(&id)) else { return (false, false) };
        if t.is_origin() && (t.every_chunk_out() || t.peers_bound(now)) {
            let refuse = t.promised_once(index)
                && (self.in_flight(now, conn, index) || (!sole && (more || self.elsewhere(conn, index))));
            return (sole, refuse);
        }
        let again = s.spread_refusals.iter().filter(|i| **i == index).count() >= SPREAD_REFUSALS;
        (again, !again && t.spreading(index) && self.elsewhere(conn, index))
    }

    /// How many open sessions share `conn`'s file (counted only at a seed,
    /// whose judge needs them: a leecher's requests stay off the scans).
    fn served(&self, conn: ConnId) -> usize {
        let Some(s) = self.sessions.get(&conn) else { return 0 };
        let Some(id) = s.torrent.filter(|id| self.torrents.get(id).is_some_and(|t| t.is_origin())) else { return 0 };
        self.sessions.values().filter(|o| o.torrent == Some(id) && o.phase == Phase::Open).count()
    }

    /// Whether another peer of `conn`'s file is owed chunk `index` by us, or
    /// got it from us less than `IN_FLIGHT` ago and has not said so yet.
    fn in_flight(&self, now: Instant, conn: ConnId, index: u32) -> bool {
        let Some(id) = self.sessions.get(&conn).and_then(|s| s.torrent) else { return false };
        self.sessions.iter().any(|(c, s)| {
            *c != conn
                && s.torrent == Some(id)
                && (s.owed.contains(&Answer::Chunk(index))
                    || s.arriving.iter().any(|(i, at)| *i == index && now < *at + IN_FLIGHT))
        })
    }

    /// Whether another peer of `conn`'s file holds chunk `index` or is owed it
    /// by us: only then may a seed send the asker there (`Spread`).
    pub(super) fn elsewhere(&self, conn: ConnId, index: u32) -> bool {
        let Some(id) = self.sessions.get(&conn).and_then(|s| s.torrent) else { return false };
        self.sessions.iter().any(|(c, s)| {
            *c != conn
                && s.torrent == Some(id)
                && (s.theirs.as_ref().is_some_and(|b| b.get(index)) || s.owed.contains(&Answer::Chunk(index)))
        })
    }

    /// Every chunk of a seed's file has gone out one more time, or a peer
    /// that held some left: the chunks refused with `Spread` are offered
    /// again with a Have.
    pub(super) fn offer_spread(&mut self, id: ContentId) {
        for (conn, s) in self.sessions.iter_mut().filter(|(_, s)| s.torrent == Some(id) && !s.spread.is_empty()) {
            s.idle_turn = false; // it may want what it is offered
            for index in std::mem::take(&mut s.spread) {
                self.outputs.push_back(Output::Send(*conn, Message::Have(index)));
            }
        }
    }

    /// Gives the upload slots to the chosen peers and tells each that gained or lost one.
    pub(super) fn rechoke(&mut self, now: Instant) {
        let mut cands: Vec<Candidate> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.phase == Phase::Open)
            .filter_map(|(c, s)| {
                let t = self.torrents.get(&s.torrent?)?;
                let theirs = s.theirs.as_ref()?;
                Some(Candidate {
                    conn: *c,
                    slot_since: s.slot_since,
                    // A suspect holder's turn is over as soon as another peer waits.
                    due: s.suspect
                        || s.slot_since.is_some_and(|since| now.saturating_duration_since(since) >= ROTATION)
                        || s.turn_sent >= turn_bytes(t.meta.chunk_size()),
                    interested: t.stage != Stage::Done && t.held().has_any_missing_from(theirs),
                    waiting_since: s.waiting_since,
                    active: s.active(now, SLOT_IDLE, SLOT_IDLE),
                    held: held_rank(t, theirs),
                    block: crate::common::ip_block(s.addr.ip()),
                    deferred: s.suspect || s.idle_turn || s.stuck(now, ASK_IDLE),
                })
            })
            .collect();
        // While somebody waits, a holder that asks for nothing gives its slot back sooner.
        let contended = cands.iter().any(|c| c.slot_since.is_none() && c.interested && !c.deferred);
        if contended != self.contended {
            self.contended = contended;
            self.all_touched = true; // every holder's idle timer moves
        }
        if contended {
            for c in cands.iter_mut().filter(|c| c.active) {
                c.active = self.sessions.get(&c.conn).is_some_and(|s| s.active(now, ASK_IDLE, SLOT_IDLE));
            }
        }
        let slots = self.slots();
        if slots != self.slots_given {
            debug!("upload slots: {slots} (uplink {})", crate::common::fmt::rate(self.up_rate.smoothed()));
            self.slots_given = slots;
        }
        let chosen = choker::choose(&cands, slots, now, ROTATION);
        for c in &cands {
            let Some(s) = self.sessions.get_mut(&c.conn) else { continue };
            let keep = chosen.contains(&c.conn);
            // Only a slot given or taken moves a session's timers.
            if s.slot_since.is_some() != keep {
                self.touched.push(c.conn);
            }
            match (s.slot_since.is_some(), keep) {
                (false, true) => {
                    s.slot_since = Some(now);
                    s.turn_sent = 0;
                    s.last_request = now;
                    let state = if s.told_state { State::Connected } else { State::Available };
                    s.told_state = true;
                    self.outputs.push_back(Output::Send(c.conn, Message::State(state)));
                }
                (true, false) => {
                    s.slot_since = None;
                    s.idle_turn = c.interested && !c.active && s.owed.is_empty();
                    s.waiting_since = now;
                    // A holder whose turn is over (or that is over its
                    // block's share) still gets what it asked for before:
                    // refusing it costs a round trip and a request elsewhere
                    // for a pipeline of a fraction of a second (half the
                    // peers at 5 MiB/s in lmk-sim: 1.17-1.20 -> 1.11 x
                    // T_p2p). An idle one's requests are refused, in order,
                    // so it can ask elsewhere.
                    let t = s.torrent.and_then(|id| self.torrents.get_mut(&id));
                    let mut dropped = Vec::new();
                    for a in s.owed_pending().filter(|_| !c.active) {
                        if let Answer::Chunk(i) = *a {
                            *a = Answer::Reject(i, RejectReason::NoSlot);
                            dropped.push(i);
                        }
                    }
                    if let Some(t) = t {
                        dropped.into_iter().for_each(|i| t.unpromise(i));
                    }
                    self.outputs.push_back(Output::Send(c.conn, Message::State(State::Unavailable)));
                    self.outputs.push_back(Output::Feed(c.conn));
                }
                _ => {}
            }
        }
    }
}

/// The chunks the choker counts a peer as holding (the fewest go first). A
/// seed counts none, so its slots go in turn: its view of a peer is stale
/// (Haves reach it only while it serves that peer), and the peers furthest
/// behind are often those every other peer refuses, poisoners, which took
/// up to half of its upload (lmk-sim, 300 x 64 MiB, 10% poisoners, seed 2:
/// last 6.91 s -> 4.85 s).
fn held_rank(t: &Torrent, theirs: &Bitfield) -> u32 {
    if t.is_origin() {
        0
    } else {
        theirs.count()
    }
}

//! The downloading side of the peer core: which chunk to ask each peer for,
//! what comes back and whether it is true, and the file's completion.

use super::*;
use crate::peer::session::Incoming;
use crate::wire::FRAME_HEADER;

impl Machine {
    /// A whole Chunk frame: its body in one piece.
    pub(super) fn on_chunk(&mut self, now: Instant, conn: ConnId, index: u32, data: &[u8]) -> Result<(), Fatal> {
        self.chunk_begin(now, conn, index, data.len());
        self.chunk_data(conn, data)?;
        self.chunk_end(now, conn)
    }

    /// A Chunk frame of `len` bytes of data for chunk `index` begins. It must
    /// answer our oldest request still to be answered. Its connection writes
    /// the chunk as it comes unless we hold the chunk or its length is wrong
    /// (then it fails its check at the end). Two may write one chunk at once
    /// (an end-game duplicate): either may be the one that ends, the other
    /// may stall, leave or lie, and a chunk that came whole and true is
    /// never thrown away for one still coming.
    pub(super) fn chunk_begin(&mut self, now: Instant, conn: ConnId, index: u32, len: usize) {
        self.down.take(now, len as u64);
        let Some(id) = self.sessions.get(&conn).and_then(|s| s.torrent) else { return };
        let written = self
            .sessions
            .values()
            .any(|o| o.torrent == Some(id) && o.incoming.as_ref().is_some_and(|i| i.index == index && i.writer));
        let Some((s, t)) = self.pair(conn) else { return };
        if s.incoming.is_some() || !s.expects(index) {
            return self.violation(now, conn, &format!("chunk {index} that was not asked for"));
        }
        let expected = t.storage.body_len(t.meta.chunk_len(index).unwrap_or(0) as usize);
        let writer = len == expected && !t.held().get(index);
        if writer && written {
            t.contested.insert(index);
        }
        s.incoming = Some(Incoming { index, len, got: 0, check: t.storage.check(), writer });
    }

    /// More of the Chunk frame arriving on `conn`: checked, and written at
    /// its place if this connection is a writer of the chunk.
    pub(super) fn chunk_data(&mut self, conn: ConnId, data: &[u8]) -> Result<(), Fatal> {
        let Some((s, t)) = self.pair(conn) else { return Ok(()) };
        let Some(incoming) = s.incoming.as_mut() else { return Ok(()) };
        let take = data.get(..incoming.len.saturating_sub(incoming.got)).unwrap_or(data);
        incoming.check.update(take);
        // Never over a chunk another connection finished meanwhile.
        if incoming.writer && !t.held().get(incoming.index) {
            let at = t.meta.chunk_offset(incoming.index) + incoming.got as u64;
            t.storage
                .write(at, take)
                .map_err(|e| Fatal { id: t.id, reason: format!("cannot write {}.part: {e}", t.meta.name()) })?;
        }
        incoming.got += take.len();
        Ok(())
    }

    /// The Chunk frame on `conn` is whole: its check says whether it is
    /// true. A true chunk is held from now on, if it was written and (when
    /// another connection wrote it too) it reads back true; a duplicate of
    /// a chunk held is dropped.
    pub(super) fn chunk_end(&mut self, now: Instant, conn: ConnId) -> Result<(), Fatal> {
        let Some((s, t)) = self.pair(conn) else { return Ok(()) };
        let Some(incoming) = s.incoming.take() else { return Ok(()) };
        let index = incoming.index;
        let Some(asked) = s.take_answer(index) else {
            self.violation(now, conn, &format!("chunk {index} that was not asked for"));
            return Ok(());
        };
        if !asked.cancelled {
            t.answers.add(now.saturating_duration_since(asked.at));
        }
        s.restart_clocks(now);
        s.behind = false;
        let (addr, listen) = (s.addr, s.listen);
        let expected_len = t.meta.chunk_len(index).unwrap_or(0) as usize;
        let expected_hash = t.meta.hashes().get(index as usize).copied().unwrap_or_default();
        let whole = incoming.got == incoming.len;
        if !(whole && incoming.check.passes(expected_len, &expected_hash)) {
            t.counters.bad_chunks += 1;
            if asked.counted() {
                t.picker.release(index);
            }
            let name = t.meta.name().to_string();
            if let Some(l) = listen {
                t.ban(l);
            }
            let id = t.id;
            let ban = self.penalties.punish(addr.ip(), Offence::Poison, now);
            warn!("{conn} {addr}: chunk {index} of {name} failed its SHA-1 check; dropped, refused for {ban:?}");
            self.close(conn);
            self.refill(now, id);
            return Ok(());
        }
        // Read back only when all else says it is ours to hold.
        if t.held().get(index) || !incoming.writer || (t.contested.contains(&index) && !written_true(t, index)) {
            // A duplicate from the end game, or one whose bytes another
            // connection wrote over (that one's end decides, or it is asked again).
            if asked.counted() && !t.held().get(index) {
                t.picker.release(index);
            }
            let id = t.id;
            self.fill(now, conn, id);
            return Ok(());
        }
        t.contested.remove(&index);
        t.picker.complete(index);
        // Counted by the metadata's length: the bytes that verified (in the
        // simulator a short token stands for them, and the pipeline's depth
        // follows this rate).
        let len = u64::from(t.meta.chunk_len(index).unwrap_or(0));
        s.downloaded += len;
        s.rate.add(now, len);
        let seed = s.is_seed();
        t.count_download(addr, seed, len, now);
        let id = t.id;
        self.announce_have(id, index);
        if self.slots_used() < self.slots() {
            self.rechoke(now); // peers that lacked nothing we had may want this chunk
        }
        self.fill(now, conn, id);
        if self.torrents.get(&id).is_some_and(Torrent::is_complete) {
            self.complete(now, id);
        }
        Ok(())
    }

    pub(super) fn on_reject(&mut self, now: Instant, conn: ConnId, index: u32, reason: RejectReason) {
        let Some((s, t)) = self.pair(conn) else { return };
        let Some(asked) = s.take_answer(index) else {
            return self.violation(now, conn, &format!("reject of chunk {index} that was not asked for"));
        };
        if asked.counted() {
            t.picker.release(index);
        }
        let id = t.id;
        match reason {
            // Refused before the slot it has given us since: ask again.
            RejectReason::NoSlot if asked.granted => {}
            // "Not now": asked again only once it says we hold a slot (a peer
            // that answers NoSlot without its State Unavailable is not asked in a loop).
            RejectReason::NoSlot => s.their_state = State::Unavailable,
            // Offered again since we asked: the refusal is stale, ask again.
            RejectReason::Spread if asked.offered => {}
            RejectReason::Spread => {
                // Ask it of the peer that got it; the sender says Have again
                // later, and we ask it again after a while whatever it says.
                if let Some(theirs) = s.theirs.as_mut() {
                    if theirs.clear(index) {
                        t.picker.remove_have(index);
                        s.spread_to_us.push((index, now + RESPREAD));
                    }
                }
            }
            RejectReason::NotHeld | RejectReason::BadIndex => {
                return self.violation(now, conn, &format!("rejected chunk {index} it said it holds"));
            }
            RejectReason::Withdrawn | RejectReason::ReadError => {
                warn!("{conn} {}: cannot serve {}: {reason:?}; dropped for this file", s.addr, t.meta.name());
                if let Some(l) = s.listen {
                    t.ban(l);
                }
                self.close(conn);
            }
        }
        self.refill(now, id);
    }

    /// Which end-game duplicates `conn` may be asked for. Any, if it has
    /// delivered a verified chunk, on this connection or an earlier one from
    /// its address: a staller that claims every chunk is not asked for the
    /// last ones too. Else only once nothing is left unrequested, and only
    /// chunks no peer that delivered is asked for (the one asked may be a
    /// staller, and the peers that hold it may all be new to us).
    fn duplicates_for(&self, conn: ConnId, id: ContentId) -> Duplicates {
        let (Some(s), Some(t)) = (self.sessions.get(&conn), self.torrents.get(&id)) else { return Duplicates::No };
        let proven = |s: &Session| proven(s, t);
        if proven(s) {
            return Duplicates::Any;
        }
        if !t.picker.all_requested() {
            return Duplicates::No;
        }
        let mut asked: Vec<u32> = Vec::new();
        for o in self.sessions.values().filter(|o| o.torrent == Some(id) && !o.asked.is_empty() && proven(o)) {
            asked.extend(o.asked.iter().filter(|a| a.counted()).map(|a| a.index));
        }
        Duplicates::Except(asked)
    }

    /// Tops up one peer's pipeline with the rarest chunks it holds.
    pub(super) fn fill(&mut self, now: Instant, conn: ConnId, id: ContentId) {
        self.touched.push(conn);
        // Most calls (a Have from a peer whose pipeline is full) end here,
        // before the end game's look at every peer.
        let down_ready = self.down.ready(now);
        let Some(depth) = self.room(now, conn, id).filter(|_| down_ready) else { return };
        let duplicates = self.duplicates_for(conn, id);
        let (Some(t), Some(s)) = (self.torrents.get_mut(&id), self.sessions.get_mut(&conn)) else { return };
        // Behind until a chunk comes, or until it owes nothing (what it owed
        // was rejected, or cancelled once got elsewhere); its stall window runs on.
        let was_behind = std::mem::take(&mut s.behind);
        if was_behind && s.outstanding() > 0 {
            s.behind = true;
            return;
        }
        if s.theirs.is_some() && s.outstanding() == 0 && !was_behind {
            s.restart_clocks(now); // an idle peer given work starts a fresh stall window
        }
        let Some(theirs) = s.theirs.as_ref() else { return };
        // An end-game duplicate asked of a peer that has delivered nothing is
        // not counted against `ENDGAME_MAX`: two such peers (stallers) holding
        // a last chunk must not keep a peer that delivers from being asked.
        let spare = matches!(duplicates, Duplicates::Except(_));
        if s.outstanding() < depth {
            s.patience = if proven(s, t) { None } else { patience(&t.answers) };
        }
        let mut picked = Vec::new();
        // Cancelled requests may still sit in its queue: they count against its cap.
        while s.outstanding() < depth && s.asked.len() < MAX_PIPELINE {
            let asked = &s.asked;
            // (`pick` asks this only in the end game: true rules a chunk out.)
            let taken = |i| {
                asked.iter().any(|a| a.index == i && !a.cancelled)
                    || match &duplicates {
                        Duplicates::Any => false,
                        Duplicates::Except(v) => v.contains(&i),
                        Duplicates::No => true,
                    }
            };
            let Some(index) = t.picker.pick(theirs, taken) else {
                break;
            };
            if spare {
                t.picker.release(index);
            }
            s.asked.push_back(Asked { overdue: spare, ..Asked::new(index, now) });
            // What is queued, and the rest of a chunk frame under way (our Request waits for its end).
            s.ahead_of_request = s.unsent.bytes() + s.sending.map_or(0, |x| x.left as u64);
            picked.push(index);
        }
        // Only a holder of every chunk may be a seed, which refuses chunks it
        // sent before unless told it is the only holder we can use (its
        // refusals clear bits for a while: it is still a seed), and refuses
        // them whatever it knows when told we have others to fetch.
        let whole = self.sessions.get(&conn).is_some_and(Session::is_seed);
        let more = whole && self.more_to_fetch(conn, id);
        for index in picked {
            let sole = whole && self.sole_holder(conn, id, index);
            self.outputs.push_back(Output::Send(conn, Message::Request { index, sole, more }));
        }
    }

    /// Whether we have other chunks of file `id` to fetch meanwhile, so that
    /// a seed's refusal on `conn` costs us no time: another peer that serves
    /// us holds one we have asked nobody for.
    fn more_to_fetch(&self, conn: ConnId, id: ContentId) -> bool {
        let Some(t) = self.torrents.get(&id) else { return false };
        self.sessions.iter().any(|(c, o)| {
            *c != conn
                && o.torrent == Some(id)
                && o.phase == Phase::Open
                && o.their_state.serves()
                && !o.behind
                && o.theirs.as_ref().is_some_and(|b| t.picker.unasked_in(b))
        })
    }

    /// Whether `conn` is the only peer of file `id` we can use for chunk
    /// `index`: no other open one holds it and has delivered. One that gives
    /// us no slot now will in its turn: counting only those that did sent a
    /// seed's second copies to the tail of 1000 peers (lmk-sim, 64 MiB:
    /// 1.121 copies, 1.343 x T_p2p; 1.071 and 1.324 this way).
    fn sole_holder(&self, conn: ConnId, id: ContentId, index: u32) -> bool {
        let Some(t) = self.torrents.get(&id) else { return true };
        !self.sessions.iter().any(|(c, o)| {
            *c != conn
                && o.torrent == Some(id)
                && o.phase == Phase::Open
                && proven(o, t)
                && o.theirs.as_ref().is_some_and(|b| b.get(index))
        })
    }

    /// How deep the peer's pipeline may be, if it may be asked for more:
    /// deep enough for `PIPELINE_SECS` at the rate it has shown, and for
    /// the time our requests wait behind the chunks we send it.
    fn room(&self, now: Instant, conn: ConnId, id: ContentId) -> Option<usize> {
        let (t, s) = (self.torrents.get(&id)?, self.sessions.get(&conn)?);
        if t.stage != Stage::Downloading || !s.their_state.serves() || s.theirs.is_none() {
            return None;
        }
        let sent = if s.slot_since.is_some() { s.sent_rate.per_sec(now) } else { 0.0 };
        let depth = depth(s.rate.per_sec(now), sent, f64::from(t.meta.chunk_size()));
        (s.outstanding() < depth && s.asked.len() < MAX_PIPELINE).then_some(depth)
    }

    /// A peer's requests are far overdue: the picker counts them no more, so
    /// other holders are asked for them (its answers still count), and it is
    /// asked for nothing more until a chunk comes from it. One that has
    /// delivered nothing, judged by the file's answer times, is closed
    /// instead (`UNPROVEN_ANSWERS`): its chunks go to the others as well.
    pub(super) fn overdue(&mut self, now: Instant, conn: ConnId) {
        let Some((s, t)) = self.pair(conn) else { return };
        if unproven_patience(s).is_some() && !proven(s, t) {
            debug!(
                "{conn} {}: has delivered nothing in {:?}; closed",
                s.addr,
                now.saturating_duration_since(s.due_from)
            );
            return self.disconnect(now, conn);
        }
        for a in s.asked.iter_mut().filter(|a| a.counted()) {
            a.overdue = true;
            t.picker.release(a.index);
        }
        s.behind = true;
        debug!("{conn} {}: its requests are overdue; asked of others too", s.addr);
        let id = t.id;
        self.refill(now, id);
    }

    /// Tops up every peer of a file (after chunks were handed back).
    pub(super) fn refill(&mut self, now: Instant, id: ContentId) {
        let conns: Vec<ConnId> = self.sessions.iter().filter(|(_, s)| s.torrent == Some(id)).map(|(c, _)| *c).collect();
        for conn in conns {
            self.fill(now, conn, id);
        }
    }

    /// Tells every peer of the file that lacks `index`, or serves us, that we
    /// hold it now, and cancels end-game duplicates.
    pub(super) fn announce_have(&mut self, id: ContentId, index: u32) {
        for (conn, s) in self.sessions.iter_mut().filter(|(_, s)| s.torrent == Some(id) && s.phase == Phase::Open) {
            if s.cancel(index) {
                self.touched.push(*conn); // it owes us less: its stall timer moves
                self.outputs.push_back(Output::Send(*conn, Message::Cancel(index)));
            }
            // A peer that serves us hears of every chunk, so it sees when we want nothing more of it.
            let lacks = s.theirs.as_ref().is_none_or(|b| !b.get(index));
            if s.their_state.serves() || lacks {
                s.told.set(index);
                self.outputs.push_back(Output::Send(*conn, Message::Have(index)));
            }
            s.idle_turn &= !lacks; // it may want this one
        }
    }

    /// Tells the peer on `conn` of the chunks we hold and never told it of:
    /// every one (`all`), or those it holds, which it takes us to want. As
    /// Haves, or as a later Bitfield where that is fewer bytes: no chunk is
    /// told twice, so a peer that gives and takes slots without end makes us
    /// queue no more than a Have per chunk.
    pub(super) fn tell(&mut self, conn: ConnId, all: bool) {
        let Some((s, t)) = self.pair(conn) else { return };
        let (held, told) = (t.held(), &s.told);
        let untold: Vec<u32> = match (&s.theirs, all) {
            (Some(theirs), false) => theirs.common(held).filter(|i| !told.get(*i)).collect(),
            _ => held.ones().filter(|i| !told.get(*i)).collect(),
        };
        // A Have frame is its header and an index; a Bitfield's, its header and bytes.
        let said: Vec<Output> = if (FRAME_HEADER + 4) * untold.len() < FRAME_HEADER + held.as_bytes().len() {
            for &index in &untold {
                s.told.set(index);
            }
            untold.into_iter().map(|index| Output::Send(conn, Message::Have(index))).collect()
        } else {
            s.told = held.clone();
            vec![Output::Bitfield(conn, held.as_bytes().to_vec())]
        };
        self.outputs.extend(said);
    }

    pub(super) fn complete(&mut self, now: Instant, id: ContentId) {
        let Some(t) = self.torrents.get_mut(&id) else { return };
        if let Err(e) = t.storage.finish() {
            let reason = format!("cannot finish {}: {e}", t.meta.name());
            return self.fail(now, id, reason);
        }
        t.stage = Stage::Seeding { since: now };
        info!("{}: complete and verified; seeding", t.meta.name());
        self.events.push_back(Event::Complete {
            id,
            name: t.meta.name().to_string(),
            size: t.meta.size(),
            elapsed: now.saturating_duration_since(t.started),
            counters: t.counters.clone(),
        });
        let done =
            Announce { info_hash: id, left: 0, event: AnnounceEvent::Completed, port: self.config.port, num_want: 0 };
        t.next_announce = now + self.interval;
        self.announcer.announce(now, done);
        // Seeds have nothing to give us now and want nothing from us.
        let seeds: Vec<ConnId> =
            self.sessions.iter().filter(|(_, s)| s.torrent == Some(id) && s.is_seed()).map(|(c, _)| *c).collect();
        for conn in seeds {
            self.close(conn);
        }
        // The others heard of no chunk we got that they held: each would
        // give us a slot for them. Every chunk now (a complete one closes).
        let open: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.torrent == Some(id) && s.phase == Phase::Open)
            .map(|(c, _)| *c)
            .collect();
        for conn in open {
            self.tell(conn, true);
        }
        self.sweep(now);
        self.rechoke(now);
    }

    /// Chunks a seed refused with `Spread` long enough ago count as held by it
    /// again (only `due` sessions can have such chunks).
    pub(super) fn respread(&mut self, now: Instant, due: &[ConnId]) {
        let spread =
            |c: &&ConnId| self.sessions.get(c).is_some_and(|s| s.spread_to_us.iter().any(|(_, at)| *at <= now));
        let due: Vec<ConnId> = due.iter().filter(spread).copied().collect();
        for conn in due {
            let Some((s, t)) = self.pair(conn) else { continue };
            let Some(theirs) = s.theirs.as_mut() else { continue };
            for (index, _) in s.spread_to_us.iter().filter(|(_, at)| *at <= now) {
                if theirs.set(*index) {
                    t.picker.add_have(*index);
                }
            }
            s.spread_to_us.retain(|(_, at)| *at > now);
            let id = t.id;
            self.fill(now, conn, id);
        }
    }
}

/// Requests kept outstanding at a peer that sends us `rate` bytes a second
/// while we send it `sent` (0 if it holds no slot of ours): `PIPELINE_SECS`
/// of its rate, plus the time a request waits behind our chunks to it.
fn depth(rate: f64, sent: f64, chunk: f64) -> usize {
    let most = (PIPELINE_BYTES as f64 / chunk).clamp(MIN_PIPELINE as f64, MAX_PIPELINE as f64);
    let ahead = if sent > 0.0 { (AHEAD_CHUNKS * chunk / sent).min(AHEAD_MAX_SECS) } else { 0.0 };
    (1.0 + (rate * (PIPELINE_SECS + ahead) / chunk).ceil()).clamp(MIN_PIPELINE as f64, most) as usize
}

/// Whether the peer has sent us a verified chunk of the file, on this
/// connection or an earlier one from its address.
fn proven(s: &Session, t: &Torrent) -> bool {
    s.downloaded > 0 || t.delivered_from(s.addr.ip())
}

/// Which end-game duplicates a peer may be asked for.
enum Duplicates {
    Any,
    /// Those not asked of a peer that delivered.
    Except(Vec<u32>),
    No,
}

/// Whether chunk `index` as it stands in `t`'s storage passes its check:
/// read back a piece at a time, so nothing holds the whole chunk.
fn written_true(t: &mut Torrent, index: u32) -> bool {
    let len = t.meta.chunk_len(index).unwrap_or(0) as usize;
    let Some(hash) = t.meta.hashes().get(index as usize).copied() else { return false };
    let (offset, body) = (t.meta.chunk_offset(index), t.storage.body_len(len));
    let mut check = t.storage.check();
    let mut piece = Vec::with_capacity(body.min(PIECE));
    let mut at = 0;
    while at < body {
        let n = (body - at).min(PIECE);
        piece.clear();
        if t.storage.read(offset + at as u64, n, &mut piece).is_err() || piece.len() != n {
            return false;
        }
        check.update(&piece);
        at += n;
    }
    check.passes(len, &hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: f64 = 131072.0;
    const MIB: f64 = 1048576.0;

    #[test]
    fn the_pipeline_covers_a_quarter_second_and_the_wait_behind_our_chunks() {
        assert_eq!(depth(0.0, 0.0, CHUNK), MIN_PIPELINE, "nothing measured yet");
        assert_eq!(depth(2.0 * MIB, 0.0, CHUNK), 5, "0.25 s at 2 MiB/s is 4 chunks, plus one");
        // We send it 0.75 MiB/s: a request waits 3 chunks' time (0.5 s) behind ours.
        assert_eq!(depth(2.0 * MIB, 0.75 * MIB, CHUNK), 13);
        assert_eq!(depth(0.5 * MIB, 1.0, CHUNK), 26, "the wait counts 6 s at most: 6.25 s at 4 chunks a second");
        assert_eq!(depth(1e12, 0.0, CHUNK), MAX_PIPELINE, "capped");
    }
}

//! Chunk frames sent in pieces: a big chunk is read from storage a piece at
//! a time as the connection's queue asks for more, nothing cuts into a
//! frame under way, and the unsent budget counts pieces, not chunks.

use std::cell::Cell;

use super::*;
use crate::common::net::LOW_WATER;
use crate::sim::content::Store;

const BIG: u32 = 4 << 20;

/// A file of `chunks` chunks of 4 MiB, travelling as their bytes.
fn big_file(chunks: u64) -> TestFile {
    Content::with_bytes("big.bin", chunks * u64::from(BIG), BIG, chunks).unwrap()
}

/// The chunks host `i` sent on `conn`, each with whether its bytes are right.
fn chunks_sent(sw: &Harness, i: usize, conn: ConnId, f: &TestFile) -> Vec<(u32, bool)> {
    let chunk = |m: Message<'_>| match m {
        Message::Chunk { index, data } => Some((index, data == f.chunk(index))),
        _ => None,
    };
    sw.messages_on(i, conn).filter_map(chunk).collect()
}

/// Seed `s` is fed only when the test says (a full socket); two callers
/// greet it and the first asks for chunk 0.
fn two_callers_one_asking(sw: &mut Harness, t0: Instant, s: usize, f: &TestFile) -> (ConnId, ConnId) {
    sw.run(t0);
    sw.hosts[s].hold = true;
    let (c, other) = (sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2)));
    sw.greet(t0, s, c, f, &[], None);
    sw.greet(t0, s, other, f, &[], None);
    sw.inject(t0, s, c, Message::Request { index: 0, sole: false, more: false });
    (c, other)
}

/// A 4 MiB chunk goes out in 16 pieces of `PIECE` bytes, one each time its
/// connection's queue asks for more, and arrives byte-exact. A Cancel once
/// it has begun does not stop it (it is mid-frame), and a State that comes
/// meanwhile (the holder's turn ends) waits for its end: frames never interleave.
#[test]
fn a_big_chunk_goes_out_in_pieces_as_the_queue_asks_and_nothing_cuts_into_it() {
    let (t0, f, mut sw) = (Instant::now(), big_file(2), Harness::default());
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    let (c, _other) = two_callers_one_asking(&mut sw, t0, s, &f);
    let mut pieces = Vec::new();
    for step in 0..20 {
        let now = t0 + ms(700 * step);
        let before = sw.queued_through(s, c);
        if !sw.feed(now, s, c) {
            break;
        }
        pieces.push(sw.queued_through(s, c) - before);
        if step == 0 {
            sw.inject(now, s, c, Message::Cancel(0));
        }
        sw.run(now); // delivered: the queue has room again; the turn ends at 10 s
        assert!(sw.is_open(s, c), "closed at step {step}");
    }
    let mut want = vec![PIECE as u64; 16];
    want[0] += 9; // the frame's header goes with the first piece
    assert_eq!(pieces, want);
    assert_eq!(chunks_sent(&sw, s, c, &f), [(0, true)], "byte-exact, once, despite the Cancel");
    let said = sw.said_on(s, c);
    assert_eq!(said[said.len() - 2..], [Seen::Chunk(0), Seen::State(State::Unavailable)], "the State waited");
    assert_eq!(sw.garbled, 0);
    assert_eq!(sw.hosts[s].m.unsent, 0);
}

/// A store whose file is edited once `changed` is set.
struct Edited {
    inner: Store,
    changed: Rc<Cell<bool>>,
}

impl crate::peer::storage::Storage for Edited {
    fn read(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        match self.changed.get() {
            true => Err(ReadError::Changed),
            false => self.inner.read(offset, len, out),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.inner.finish()
    }
}

/// The shared file changes in the middle of a chunk frame: no Reject can
/// follow half a frame, so the connection is closed, and the file is
/// withdrawn as when a chunk is about to start (its other peers are let go).
#[test]
fn a_file_changed_in_the_middle_of_a_chunk_closes_its_connection_and_is_withdrawn() {
    let (t0, f, mut sw) = (Instant::now(), big_file(2), Harness::default());
    let s = sw.add_host(t0, |_| {});
    let changed = Rc::new(Cell::new(false));
    let store = Edited { inner: f.store(None, f.bits(&f.all())), changed: Rc::clone(&changed) };
    sw.hosts[s].m.add(t0, f.meta.clone(), Box::new(store), f.bits(&f.all()), Goal::Forever);
    let (c, other) = two_callers_one_asking(&mut sw, t0, s, &f);
    assert!(sw.feed(t0, s, c), "the first piece");
    sw.run(t0);
    changed.set(true);
    assert!(!sw.feed(t0, s, c), "the second cannot be read");
    sw.run(t0);
    assert!(sw.closed.contains(&(s, c)), "closed mid-frame, no Reject");
    assert!(!sw.said_on(s, c).iter().any(|m| matches!(m, Seen::Reject(..))));
    assert!(chunks_sent(&sw, s, c, &f).is_empty());
    assert_eq!(sw.hosts[s].m.files().count(), 0, "withdrawn");
    assert!(!sw.is_open(s, other), "its other peers are let go");
    assert_eq!(sw.hosts[s].m.unsent, 0);
}

/// Callers that never read ask for 4 MiB chunks: what the seed queues for
/// them is pieces within the budget, (slots + 2) x (PIECE + LOW_WATER), 3 MiB
/// at 4 slots whatever the chunk size (it was 25.5 MiB at 4 MiB chunks), and
/// the non-readers are closed after SLOT_IDLE as with small chunks.
#[test]
fn callers_that_never_read_big_chunks_hold_pieces_within_the_budget() {
    let (t0, f, mut sw) = (Instant::now(), big_file(8), Harness::default());
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 4);
    sw.run(t0);
    let budget = budget(4, BIG);
    assert_eq!(budget, 6 * (PIECE + LOW_WATER) as u64);
    let callers: Vec<ConnId> = (1..=6).map(|n| sw.accept(t0, s, hand_addr(n))).collect();
    for (k, &c) in callers.iter().enumerate() {
        sw.greet(t0, s, c, &f, &[], None);
        sw.unread.insert((s, c));
        ask(&mut sw, t0, s, c, k as u32..k as u32 + 2);
    }
    sw.run(t0 + ms(1));
    let unsent = sw.hosts[s].m.unsent;
    assert!(unsent <= budget && unsent + PIECE as u64 > budget, "{unsent} bytes queued, budget {budget}");
    let queued: usize = callers.iter().map(|&c| sw.queued(s, c)).sum();
    assert!(queued as u64 <= budget + 1024, "{queued} bytes in the queues, frames and headers included");
    sw.run(t0 + SLOT_IDLE);
    let closed = callers.iter().filter(|c| sw.closed.contains(&(s, **c))).count();
    assert!(closed > 0, "the non-readers holding pieces are closed");
    assert!(sw.hosts[s].m.unsent <= budget);
    // Each holds the budget in turn here (this shell has no low-water mark) and is closed for it.
    for k in 2..=8 {
        sw.run(t0 + SLOT_IDLE * k);
        assert!(sw.hosts[s].m.unsent <= budget);
    }
    assert!(callers.iter().all(|&c| sw.closed.contains(&(s, c)) || sw.queued(s, c) < 1024), "what was queued went");
    assert_eq!(sw.hosts[s].m.unsent, 0);
}

/// The file leaves (its seeding time is over) in the middle of a chunk
/// frame that waits for the budget: the rest of the frame is still sent,
/// whatever the budget, and the connection closes after it.
#[test]
fn a_chunk_begun_when_its_file_leaves_is_finished_before_the_close() {
    let (t0, f, mut sw) = (Instant::now(), big_file(2), Harness::default());
    let s = sw.add_host(t0, |c| c.slots = 1);
    sw.add_file(s, t0, &f, &f.all(), Goal::Until { idle: LONG, ratio: None, time: Some(secs(2)) });
    sw.run(t0);
    let c = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, c, &f, &[], None);
    sw.unread.insert((s, c));
    sw.inject(t0, s, c, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(sw.hosts[s].m.unsent, budget(1, BIG) / (PIECE + LOW_WATER) as u64 * PIECE as u64 * 2);
    sw.run(t0 + secs(2));
    assert_eq!(sw.hosts[s].m.files().count(), 0, "the file left");
    sw.unread.remove(&(s, c));
    sw.run(t0 + secs(2));
    assert_eq!(chunks_sent(&sw, s, c, &f), [(0, true)], "the whole chunk");
    assert!(sw.closed.contains(&(s, c)), "then closed");
    assert_eq!(sw.hosts[s].m.unsent, 0);
}

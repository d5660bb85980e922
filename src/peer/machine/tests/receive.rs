//! Chunk frames received in pieces: the shell hands a chunk's data to the
//! core as it arrives, the core checks and writes it as it comes, so no
//! connection holds a whole chunk; a chunk two connections wrote at once is
//! held only once it reads back true.

use super::*;

const BIG: usize = 4 << 20;

/// The peer on host `d`'s `conn` begins a Chunk frame for `index` and sends
/// `data` of it in pieces of `piece` bytes, at `now`; the frame ends if `end`.
fn send(sw: &mut Harness, now: Instant, d: usize, conn: ConnId, index: u32, data: &[u8], end: bool) {
    let m = &mut sw.hosts[d].m;
    m.handle_chunk_begin(now, conn, index, BIG);
    for piece in data.chunks(256 * 1024) {
        m.handle_chunk_data(now, conn, piece).unwrap();
    }
    if end {
        m.handle_chunk_end(now, conn).unwrap();
    }
    sw.run(now);
}

/// Whether host `d` holds chunk `index` of `f`, in its core and in its storage.
fn holds(sw: &Harness, d: usize, f: &TestFile, index: u32) -> (bool, bool) {
    let core = sw.hosts[d].m.torrents.get(&f.id()).is_some_and(|t| t.held().get(index));
    (core, sw.hosts[d].store.as_ref().is_some_and(|s| s.holds(index)))
}

/// Two 4 MiB chunks come in pieces of 256 KiB: each is written as it
/// comes, held once whole and true, and the file completes.
#[test]
fn chunks_received_in_pieces_are_written_as_they_come_and_held_once_true() {
    let (t0, f, mut sw, d, c) = big_chunks_from_one_peer();
    let half = &f.chunk(0)[..BIG / 2];
    sw.hosts[d].m.handle_chunk_begin(t0, c, 0, BIG);
    sw.hosts[d].m.handle_chunk_data(t0, c, half).unwrap();
    sw.run(t0);
    assert_eq!(holds(&sw, d, &f, 0), (false, false), "half of it");
    sw.hosts[d].m.handle_chunk_data(t0, c, &f.chunk(0)[BIG / 2..]).unwrap();
    sw.hosts[d].m.handle_chunk_end(t0, c).unwrap();
    sw.run(t0);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    send(&mut sw, t0, d, c, 1, &f.chunk(1), true);
    assert!(sw.holds_file(d, &f));
    assert_eq!(sw.events(d), ["Complete"]);
}

/// A downloader of one 4 MiB chunk asks two peers for it (the end game):
/// their connections on it.
fn one_chunk_from_two() -> (Instant, TestFile, Harness, usize, [ConnId; 2]) {
    let (t0, mut sw) = (Instant::now(), Harness::default());
    let f = Content::with_bytes("one.bin", BIG as u64, BIG as u32, 3).unwrap();
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, Vec::new());
    sw.run(t0);
    let conns = [sw.accept(t0, d, hand_addr(1)), sw.accept(t0, d, hand_addr(2))];
    for c in conns {
        sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
        assert_eq!(of(&sw.said_on(d, c), Seen::Request), [0], "asked of both");
    }
    (t0, f, sw, d, conns)
}

/// The same chunk arrives on two connections at once, a liar's copy whole
/// while the true one is under way: the liar is banned as ever, and what
/// it wrote is written over by the true copy, held once it reads back true.
#[test]
fn a_duplicate_arriving_at_once_is_held_only_as_it_reads_back() {
    let (t0, f, mut sw, d, [first, second]) = one_chunk_from_two();
    sw.hosts[d].m.handle_chunk_begin(t0, first, 0, BIG);
    send(&mut sw, t0, d, second, 0, &vec![7; BIG], true);
    assert!(sw.closed.contains(&(d, second)), "the liar is dropped");
    assert_eq!(holds(&sw, d, &f, 0), (false, false), "nothing held yet");
    for piece in f.chunk(0).chunks(256 * 1024) {
        sw.hosts[d].m.handle_chunk_data(t0, first, piece).unwrap();
    }
    sw.hosts[d].m.handle_chunk_end(t0, first).unwrap();
    sw.run(t0);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    assert!(sw.holds_file(d, &f));
}

/// A liar's bytes land over half of a true copy still arriving: the true
/// copy passes its own check but not read back, so it is not held; the
/// liar is banned and the chunk asked again, then held once it comes alone.
#[test]
fn a_true_copy_written_over_by_a_liar_is_asked_again() {
    let (t0, f, mut sw, d, [honest, liar]) = one_chunk_from_two();
    let chunk = f.chunk(0);
    let (front, back) = chunk.split_at(BIG / 2);
    sw.hosts[d].m.handle_chunk_begin(t0, honest, 0, BIG);
    sw.hosts[d].m.handle_chunk_data(t0, honest, front).unwrap();
    send(&mut sw, t0, d, liar, 0, &vec![9; BIG], true);
    assert!(sw.closed.contains(&(d, liar)), "the liar is dropped");
    for piece in back.chunks(256 * 1024) {
        sw.hosts[d].m.handle_chunk_data(t0, honest, piece).unwrap();
    }
    sw.hosts[d].m.handle_chunk_end(t0, honest).unwrap();
    sw.run(t0);
    assert!(!holds(&sw, d, &f, 0).0, "its first half was written over");
    assert!(sw.is_open(d, honest), "the true copy's sender is not blamed");
    assert_eq!(of(&sw.said_on(d, honest), Seen::Request), [0, 0], "asked again");
    send(&mut sw, t0, d, honest, 0, &f.chunk(0), true);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    assert!(sw.holds_file(d, &f));
}

/// A true copy comes whole while the first sender of the chunk is still
/// under way, and that sender then leaves: the copy is held at once (a
/// chunk that came true is never dropped for one still coming, which may
/// never end), and nothing the slow one sends after lands over it.
#[test]
fn a_true_copy_that_ends_first_is_held_whoever_began_first() {
    let (t0, f, mut sw, d, [slow, fast]) = one_chunk_from_two();
    sw.hosts[d].m.handle_chunk_begin(t0, slow, 0, BIG);
    sw.hosts[d].m.handle_chunk_data(t0, slow, &f.chunk(0)[..BIG / 4]).unwrap();
    send(&mut sw, t0, d, fast, 0, &f.chunk(0), true);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    assert!(sw.holds_file(d, &f));
    sw.hosts[d].m.handle_chunk_data(t0, slow, &vec![5; BIG / 4]).unwrap();
    sw.run(t0);
    assert_eq!(holds(&sw, d, &f, 0), (true, true), "not written over once held");
    sw.close(t0, d, slow);
    assert_eq!(sw.events(d), ["Complete"]);
}

/// A 4 MiB chunk trickling in pieces at 64 KiB/s takes 64 s: its pieces
/// keep its sender from being dropped as stalled (as bytes of a whole frame
/// still arriving do), and one sending a byte a second is dropped at STALL.
#[test]
fn the_stall_rule_counts_the_pieces_of_a_chunk_as_they_come() {
    let (t0, f, mut sw, d, c) = big_chunks_from_one_peer();
    sw.hosts[d].m.handle_chunk_begin(t0, c, 0, BIG);
    let data = f.chunk(0);
    for (tick, piece) in data.chunks(64 * 1024 / 10).enumerate() {
        let now = t0 + ms(100 * (tick as u64 + 1));
        sw.hosts[d].m.handle_chunk_data(now, c, piece).unwrap();
        sw.run(now);
        assert!(sw.is_open(d, c), "dropped at {tick} x 100 ms");
    }
    let late = t0 + ms(100 * data.chunks(64 * 1024 / 10).len() as u64);
    sw.hosts[d].m.handle_chunk_end(late, c).unwrap();
    sw.run(late);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    let (t0, _f, mut sw, d, c) = big_chunks_from_one_peer();
    sw.hosts[d].m.handle_chunk_begin(t0, c, 0, BIG);
    for second in 1..15 {
        sw.hosts[d].m.handle_chunk_data(t0 + secs(second), c, &[0]).unwrap();
        sw.run(t0 + secs(second));
    }
    sw.run(t0 + STALL - ms(1));
    assert!(sw.is_open(d, c), "one tick before STALL");
    sw.run(t0 + STALL + ms(1));
    sw.run(t0 + STALL + ms(10));
    assert!(!sw.is_open(d, c), "a byte a second: dropped");
}

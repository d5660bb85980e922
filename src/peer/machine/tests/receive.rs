//! Chunk frames received in pieces: the shell hands a chunk's data to the
//! core as it arrives, the core checks it as it comes and writes it from one
//! connection per chunk only, so no connection holds a whole chunk.

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

/// The same chunk arrives on two connections at once: only the first
/// writes it; the other's bytes (here a liar's) are only checked, so they
/// never land over the true ones; the liar is banned as ever.
#[test]
fn a_duplicate_arriving_at_once_never_writes_over_the_chunk() {
    let (t0, f, mut sw, d, [first, second]) = one_chunk_from_two();
    sw.hosts[d].m.handle_chunk_begin(t0, first, 0, BIG);
    send(&mut sw, t0, d, second, 0, &vec![7; BIG], true);
    assert!(sw.closed.contains(&(d, second)), "the liar is dropped");
    assert_eq!(holds(&sw, d, &f, 0), (false, false), "nothing written over, nothing held yet");
    for piece in f.chunk(0).chunks(256 * 1024) {
        sw.hosts[d].m.handle_chunk_data(t0, first, piece).unwrap();
    }
    sw.hosts[d].m.handle_chunk_end(t0, first).unwrap();
    sw.run(t0);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    assert!(sw.holds_file(d, &f));
}

/// The writer of a chunk sends garbage while a true copy arrives on
/// another connection: the copy is checked and dropped (it was not its to
/// write), the writer is banned, and the chunk is asked again and written
/// by the next connection that sends it.
#[test]
fn a_chunk_whose_writer_lied_is_fetched_again_and_rewritten() {
    let (t0, f, mut sw, d, [liar, honest]) = one_chunk_from_two();
    sw.hosts[d].m.handle_chunk_begin(t0, liar, 0, BIG);
    send(&mut sw, t0, d, honest, 0, &f.chunk(0), true);
    assert_eq!(holds(&sw, d, &f, 0), (false, false), "a true copy that was not its to write");
    for piece in vec![9; BIG].chunks(256 * 1024) {
        sw.hosts[d].m.handle_chunk_data(t0, liar, piece).unwrap();
    }
    sw.hosts[d].m.handle_chunk_end(t0, liar).unwrap();
    sw.run(t0);
    assert!(sw.closed.contains(&(d, liar)), "the writer that lied is dropped");
    assert!(of(&sw.said_on(d, honest), Seen::Request).len() >= 2, "asked again");
    send(&mut sw, t0, d, honest, 0, &f.chunk(0), true);
    assert_eq!(holds(&sw, d, &f, 0), (true, true));
    assert!(sw.holds_file(d, &f));
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

//! One file's download on its own: an in-memory disk, seeders played by hand
//! and a fake clock.

use super::*;
use crate::common::rng::Rng;
use crate::leecher::output::MemDisk;
use crate::meta::MIN_CHUNK;
use crate::wire::peer::RejectReason;

const CHUNK: usize = MIN_CHUNK as usize;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `len` random bytes and their metadata (MIN_CHUNK chunks, real hashes).
fn file(name: &str, len: usize, seed: u64) -> (FileMeta, Vec<u8>) {
    let mut data = vec![0u8; len];
    Rng::new(seed).fill(&mut data);
    let hashes = data.chunks(CHUNK).map(Hash20::of).collect();
    (FileMeta::new(name.into(), len as u64, MIN_CHUNK, hashes).unwrap(), data)
}

/// A download of 5.5 chunks (6, the last one short) into a created disk file.
fn small(now: Instant, max_peers: usize) -> (Download, Vec<u8>, MemDisk) {
    sized(now, max_peers, 11 * CHUNK / 2)
}

fn sized(now: Instant, max_peers: usize, len: usize) -> (Download, Vec<u8>, MemDisk) {
    let (meta, data) = file("f.bin", len, 42);
    let mut disk = MemDisk::default();
    disk.create(meta.name(), meta.size()).unwrap();
    (Download::new(meta, max_peers, now), data, disk)
}

fn piece(data: &[u8], index: u32) -> &[u8] {
    let start = index as usize * CHUNK;
    &data[start..(start + CHUNK).min(data.len())]
}

fn actions(d: &mut Download) -> Vec<Action> {
    std::iter::from_fn(|| d.poll_action()).collect()
}

fn connects(acts: &[Action]) -> Vec<SocketAddr> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Connect(addr) => Some(*addr),
            _ => None,
        })
        .collect()
}

/// Chunk indices requested of `conn`, in order.
fn requests(acts: &[Action], conn: ConnId) -> Vec<u32> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Request(c, _, index) if *c == conn => Some(*index),
            _ => None,
        })
        .collect()
}

fn all_requests(acts: &[Action]) -> Vec<(ConnId, u32)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Request(c, _, index) => Some((*c, *index)),
            _ => None,
        })
        .collect()
}

fn closes(acts: &[Action]) -> Vec<ConnId> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Close(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn available() -> Message<'static> {
    Message::State { version: PEER_VERSION, state: SeederState::Available }
}

/// Dialling (already asked for with a Connect), connection and greeting of
/// `a` as `conn`; returns what the download did on the greeting.
fn greet(d: &mut Download, disk: &mut MemDisk, now: Instant, a: SocketAddr, conn: ConnId) -> Vec<Action> {
    d.handle_dialling(now, a, conn);
    d.handle_connected(now, conn);
    assert!(actions(d).is_empty(), "nothing is sent before the seeder's state");
    d.handle_message(now, conn, available(), disk).unwrap();
    actions(d)
}

/// A new seeder `a`, told by the tracker, dialled at once and greeted as `conn`.
fn join(d: &mut Download, disk: &mut MemDisk, now: Instant, a: SocketAddr, conn: ConnId) -> Vec<Action> {
    d.add_seeders(now, &[a]);
    assert_eq!(connects(&actions(d)), [a], "{a} dialled");
    greet(d, disk, now, a, conn)
}

/// `conn` answers `index` with its true bytes.
fn send(d: &mut Download, disk: &mut MemDisk, now: Instant, conn: ConnId, data: &[u8], index: u32) -> Vec<Action> {
    let id = d.id();
    d.handle_message(now, conn, Message::Chunk { id, index, data: piece(data, index) }, disk).unwrap();
    actions(d)
}

/// True when a later tick with `a` told again never dials it.
fn never_dialled_again(d: &mut Download, now: Instant, a: SocketAddr) -> bool {
    let mut dials = Vec::new();
    for n in [0, 1, 2, 4, 8, 16, 32, 60] {
        let t = now + secs(n);
        d.add_seeders(t, &[a]);
        d.handle_timeout(t);
        dials.extend(connects(&actions(d)));
    }
    !dials.contains(&a)
}

#[test]
fn dials_up_to_max_peers_and_first_greeted_takes_the_pipeline() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    assert_eq!(d.meta().chunk_count(), 6);
    let (a, b, c) = (addr(7001), addr(7002), addr(7003));
    d.add_seeders(t0, &[c, a, b]);
    let dialled = connects(&actions(&mut d));
    assert_eq!(dialled, [a, b], "two of three, lowest address first");
    let (ca, cb) = (ConnId(1), ConnId(2));
    d.handle_dialling(t0, a, ca);
    d.handle_dialling(t0, b, cb);
    assert_eq!(d.next_deadline(), None, "both slots dialling: nothing to wait for");
    d.handle_timeout(t0 + secs(1));
    assert!(actions(&mut d).is_empty(), "no third dial while both slots are taken");
    d.handle_connected(t0, ca);
    d.handle_connected(t0, cb);
    assert_eq!(d.next_deadline(), Some(t0 + GREETING));
    let t1 = t0 + secs(1);
    d.handle_message(t1, ca, available(), &mut disk).unwrap();
    let acts = actions(&mut d);
    // MIN_CHUNK chunks: depth 8 MiB / 16 KiB capped at 64, so all 6 go to the first seeder.
    assert_eq!(acts, (0..6).map(|i| Action::Request(ca, d.id(), i)).collect::<Vec<_>>());
    d.handle_message(t1, cb, available(), &mut disk).unwrap();
    assert!(actions(&mut d).is_empty(), "the second seeder gets nothing: every chunk is out");
    assert_eq!((d.connected(), d.stats.seeders_used), (2, 2));
    // Only a's pipeline can stall.
    assert_eq!(d.next_deadline(), Some(t1 + STALL));
}

#[test]
fn full_download_lands_every_byte() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let conn = ConnId(1);
    let asked = requests(&join(&mut d, &mut disk, t0, addr(7001), conn), conn);
    assert_eq!(asked, [0, 1, 2, 3, 4, 5]);
    for (n, index) in asked.into_iter().enumerate() {
        assert!(!d.is_complete());
        let acts = send(&mut d, &mut disk, t0 + secs(1 + n as u64), conn, &data, index);
        assert!(acts.is_empty(), "nothing left to ask: {acts:?}");
    }
    assert!(d.is_complete());
    assert_eq!((d.bytes_done, d.remaining()), (data.len() as u64, 0));
    assert_eq!(d.stats.bad_chunks, 0);
    assert_eq!(d.next_deadline(), None);
    disk.finish().unwrap();
    assert!(disk.files["f.bin"] == data, "byte for byte");
    // A done download dials no one.
    d.add_seeders(t0 + secs(10), &[addr(7002)]);
    d.handle_timeout(t0 + secs(10));
    assert!(actions(&mut d).is_empty());
}

#[test]
fn bad_chunk_bans_the_liar_and_is_fetched_elsewhere() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let (a, b) = (addr(7001), addr(7002));
    let (ca, cb) = (ConnId(1), ConnId(2));
    assert_eq!(requests(&join(&mut d, &mut disk, t0, a, ca), ca).len(), 6);
    assert!(join(&mut d, &mut disk, t0, b, cb).is_empty());
    let t1 = t0 + secs(1);
    let mut wrong = piece(&data, 0).to_vec();
    wrong[100] ^= 1;
    let id = d.id();
    d.handle_message(t1, ca, Message::Chunk { id, index: 0, data: &wrong }, &mut disk).unwrap();
    let acts = actions(&mut d);
    assert_eq!(closes(&acts), [ca]);
    assert_eq!(requests(&acts, cb), [0, 1, 2, 3, 4, 5], "every chunk of the liar goes to b, the bad one first");
    assert_eq!((d.stats.bad_chunks, d.stats.seeders_banned, d.bytes_done), (1, 1, 0));
    assert!(disk.part.as_ref().unwrap().1[..CHUNK].iter().all(|&x| x == 0), "bad bytes never written");
    // Never dialled again, however often the tracker names it, past any backoff
    // (ticks stay before t0 + STALL: b's stall clock runs from its greeting,
    // see idle_seeder_given_requeued_chunks_gets_a_full_stall_window).
    for n in [1, 2, 4, 8] {
        let t = t1 + secs(n);
        d.add_seeders(t, &[a]);
        d.handle_timeout(t);
        assert!(!connects(&actions(&mut d)).contains(&a), "{a} dialled again at t1 + {n}s");
    }
    // b serves everything.
    let t2 = t1 + secs(8);
    for index in 0..6 {
        assert!(send(&mut d, &mut disk, t2, cb, &data, index).is_empty());
    }
    assert!(d.is_complete());
    disk.finish().unwrap();
    assert!(disk.files["f.bin"] == data, "byte for byte");
    assert_eq!(d.stats.bad_chunks, 1);
}

#[test]
fn short_chunk_counts_as_bad() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let ca = ConnId(1);
    join(&mut d, &mut disk, t0, addr(7001), ca);
    let id = d.id();
    d.handle_message(t0, ca, Message::Chunk { id, index: 0, data: &data[..CHUNK - 1] }, &mut disk).unwrap();
    assert_eq!(closes(&actions(&mut d)), [ca]);
    assert_eq!((d.stats.bad_chunks, d.stats.seeders_banned), (1, 1));
}

#[test]
fn unexpected_answers_are_violations() {
    let t0 = Instant::now();
    let cases = [
        "chunk out of order",
        "chunk of another file",
        "chunk never asked for",
        "reject out of order",
        "state again",
        "request",
    ];
    for what in cases {
        let (mut d, data, mut disk) = small(t0, 2);
        let (a, b) = (addr(7001), addr(7002));
        let (ca, cb) = (ConnId(1), ConnId(2));
        join(&mut d, &mut disk, t0, a, ca);
        join(&mut d, &mut disk, t0, b, cb);
        // a owes chunks 0..=5, in that order.
        let id = d.id();
        let msg = match what {
            "chunk out of order" => Message::Chunk { id, index: 1, data: piece(&data, 1) },
            "chunk of another file" => {
                Message::Chunk { id: Hash20::of(b"another file"), index: 0, data: piece(&data, 0) }
            }
            "chunk never asked for" => Message::Chunk { id, index: 9, data: piece(&data, 0) },
            "reject out of order" => Message::Reject { id, index: 3, reason: RejectReason::ReadError },
            "state again" => available(),
            _ => Message::Request { id, index: 0 },
        };
        d.handle_message(t0 + secs(1), ca, msg, &mut disk).unwrap();
        let acts = actions(&mut d);
        assert_eq!(closes(&acts), [ca], "{what}");
        assert_eq!(requests(&acts, cb), [0, 1, 2, 3, 4, 5], "{what}: requeued to b");
        assert_eq!((d.stats.bad_chunks, d.stats.seeders_banned, d.bytes_done), (0, 1, 0), "{what}");
        assert!(never_dialled_again(&mut d, t0 + secs(1), a), "{what}: banned");
    }
}

#[test]
fn frames_on_unknown_or_greeting_connections() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let id = d.id();
    // A connection the download does not know is ignored.
    d.handle_message(t0, ConnId(9), Message::Chunk { id, index: 0, data: piece(&data, 0) }, &mut disk).unwrap();
    assert!(actions(&mut d).is_empty());
    // A chunk before the state is a violation.
    let (a, ca) = (addr(7001), ConnId(1));
    d.add_seeders(t0, &[a]);
    actions(&mut d);
    d.handle_dialling(t0, a, ca);
    d.handle_connected(t0, ca);
    d.handle_message(t0, ca, Message::Chunk { id, index: 0, data: piece(&data, 0) }, &mut disk).unwrap();
    assert_eq!(closes(&actions(&mut d)), [ca]);
    assert_eq!(d.stats.seeders_banned, 1);
    assert_eq!(d.bytes_done, 0);
}

#[test]
fn reject_drops_the_seeder_for_this_file() {
    let t0 = Instant::now();
    for reason in [RejectReason::UnknownFile, RejectReason::BadIndex, RejectReason::Withdrawn, RejectReason::ReadError]
    {
        let (mut d, data, mut disk) = small(t0, 2);
        let (a, b) = (addr(7001), addr(7002));
        let (ca, cb) = (ConnId(1), ConnId(2));
        join(&mut d, &mut disk, t0, a, ca);
        join(&mut d, &mut disk, t0, b, cb);
        let t1 = t0 + secs(1);
        // a serves chunk 0, then rejects chunk 1.
        assert!(send(&mut d, &mut disk, t1, ca, &data, 0).is_empty());
        let id = d.id();
        d.handle_message(t1, ca, Message::Reject { id, index: 1, reason }, &mut disk).unwrap();
        let acts = actions(&mut d);
        assert_eq!(closes(&acts), [ca], "{reason:?}");
        assert_eq!(requests(&acts, cb), [1, 2, 3, 4, 5], "{reason:?}: the rest goes to b");
        assert_eq!((d.stats.bad_chunks, d.bytes_done), (0, CHUNK as u64), "{reason:?}");
        if reason != RejectReason::ReadError {
            assert!(never_dialled_again(&mut d, t1, a), "{reason:?}: never asked again");
        }
    }
}

/// PROTOCOL.md 6.1: ReadError "requeues the chunk; may retry this seeder
/// later", unlike the other reasons ("asks this seeder nothing more").
#[test]
/// Every reject reason drops the seeder for the file (PROTOCOL.md 6.1): one
/// whose disk fails to read is not asked again while others can serve.
fn read_error_reject_drops_the_seeder_for_the_file() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    let (a, ca) = (addr(7001), ConnId(1));
    join(&mut d, &mut disk, t0, a, ca);
    let id = d.id();
    d.handle_message(t0, ca, Message::Reject { id, index: 0, reason: RejectReason::ReadError }, &mut disk).unwrap();
    assert_eq!(closes(&actions(&mut d)), [ca]);
    assert_eq!(d.stats.seeders_banned, 1);
    assert!(never_dialled_again(&mut d, t0, a), "a is not tried again for this file");
}

#[test]
fn unavailable_is_retried_after_busy_backoff() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    let (a, ca) = (addr(7001), ConnId(1));
    d.add_seeders(t0, &[a]);
    actions(&mut d);
    d.handle_dialling(t0, a, ca);
    d.handle_connected(t0, ca);
    let t1 = t0 + secs(1);
    d.handle_message(t1, ca, Message::State { version: PEER_VERSION, state: SeederState::Unavailable }, &mut disk)
        .unwrap();
    assert_eq!(actions(&mut d), [Action::Close(ca)]);
    assert_eq!((d.stats.busy_answers, d.stats.seeders_used, d.stats.seeders_banned), (1, 0, 0));
    // The seeder closes after its state: nothing more to do.
    d.handle_closed(t1, ca);
    assert!(actions(&mut d).is_empty());
    assert_eq!(d.stats.lost_connections, 0, "never held a slot");
    assert_eq!(d.next_deadline(), Some(t1 + BUSY_RETRY));
    d.handle_timeout(t1 + BUSY_RETRY - ms(1));
    assert!(actions(&mut d).is_empty(), "not before the backoff");
    d.handle_timeout(t1 + BUSY_RETRY);
    assert_eq!(actions(&mut d), [Action::Connect(a)]);
}

#[test]
fn lost_seeder_chunks_go_out_first_and_it_is_redialled() {
    let t0 = Instant::now();
    // 200 chunks: each seeder's pipeline (64) holds only part of the file.
    let (mut d, data, mut disk) = sized(t0, 2, 200 * CHUNK);
    let (a, b) = (addr(7001), addr(7002));
    let (ca, cb, ca2) = (ConnId(1), ConnId(2), ConnId(3));
    assert_eq!(requests(&join(&mut d, &mut disk, t0, a, ca), ca), (0..64).collect::<Vec<_>>());
    assert_eq!(requests(&join(&mut d, &mut disk, t0, b, cb), cb), (64..128).collect::<Vec<_>>());
    // A fast seeder simply takes more.
    assert_eq!(all_requests(&send(&mut d, &mut disk, t0 + secs(1), cb, &data, 64)), [(cb, 128)]);
    let t2 = t0 + secs(2);
    d.handle_closed(t2, ca);
    assert!(requests(&actions(&mut d), cb).is_empty(), "b's pipeline is full");
    assert_eq!(d.stats.lost_connections, 1);
    // b's next free slots get a's lost chunks before any new one.
    assert_eq!(all_requests(&send(&mut d, &mut disk, t2, cb, &data, 65)), [(cb, 0)]);
    assert_eq!(all_requests(&send(&mut d, &mut disk, t2, cb, &data, 66)), [(cb, 1)]);
    // a is dialled again after FAIL_RETRY, not before.
    assert_eq!(d.next_deadline(), Some(t2 + FAIL_RETRY));
    d.handle_timeout(t2 + FAIL_RETRY - ms(1));
    assert!(actions(&mut d).is_empty());
    let t3 = t2 + FAIL_RETRY;
    d.handle_timeout(t3);
    assert_eq!(actions(&mut d), [Action::Connect(a)]);
    // Back, it takes the rest of the lost chunks first, then new ones.
    let asked = requests(&greet(&mut d, &mut disk, t3, a, ca2), ca2);
    let want: Vec<u32> = (2..64).chain(129..131).collect();
    assert_eq!(asked, want);
}

#[test]
fn dialling_seeder_refused_is_retried_and_not_counted_lost() {
    let t0 = Instant::now();
    let (mut d, _, _) = small(t0, 2);
    let (a, ca) = (addr(7001), ConnId(1));
    d.add_seeders(t0, &[a]);
    actions(&mut d);
    d.handle_dialling(t0, a, ca);
    // The connect is refused after the shell started it.
    d.handle_closed(t0, ca);
    assert_eq!(d.stats.lost_connections, 0);
    assert_eq!(d.next_deadline(), Some(t0 + FAIL_RETRY));
    d.handle_timeout(t0 + FAIL_RETRY);
    assert_eq!(connects(&actions(&mut d)), [a]);
}

#[test]
fn synchronous_dial_failures_back_off_exponentially() {
    let t0 = Instant::now();
    let (mut d, _, _) = small(t0, 2);
    let a = addr(7001);
    d.add_seeders(t0, &[a]);
    let mut t = t0;
    for delay in [1, 2, 4, 8, 16, 16] {
        assert_eq!(connects(&actions(&mut d)), [a]);
        d.handle_dial_failed(t, a);
        assert_eq!(d.next_deadline(), Some(t + secs(delay)));
        d.handle_timeout(t + secs(delay) - ms(1));
        assert!(actions(&mut d).is_empty());
        t += secs(delay);
        d.handle_timeout(t);
    }
}

#[test]
fn repeated_connection_failures_back_off() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    let a = addr(7001);
    d.add_seeders(t0, &[a]);
    let mut t = t0;
    for (n, delay) in [1, 2, 4].into_iter().enumerate() {
        assert_eq!(connects(&actions(&mut d)), [a]);
        let conn = ConnId(n + 1);
        d.handle_dialling(t, a, conn);
        d.handle_closed(t, conn);
        assert_eq!(d.next_deadline(), Some(t + secs(delay)), "refused connect #{}", n + 1);
        t += secs(delay);
        d.handle_timeout(t);
    }
    // Busy answers likewise.
    let (mut d, _, _) = small(t0, 2);
    d.add_seeders(t0, &[a]);
    let mut t = t0;
    for (n, delay) in [500, 1000, 2000].into_iter().enumerate() {
        assert_eq!(connects(&actions(&mut d)), [a]);
        let conn = ConnId(n + 1);
        d.handle_dialling(t, a, conn);
        d.handle_connected(t, conn);
        let busy = Message::State { version: PEER_VERSION, state: SeederState::Unavailable };
        d.handle_message(t, conn, busy, &mut disk).unwrap();
        assert_eq!(d.next_deadline(), Some(t + ms(delay)), "busy answer #{}", n + 1);
        t += ms(delay);
        d.handle_timeout(t);
    }
}

#[test]
fn stalled_seeder_is_dropped_at_exactly_stall() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let (a, c) = (addr(7001), addr(7003));
    let (ca, cc) = (ConnId(1), ConnId(3));
    join(&mut d, &mut disk, t0, a, ca);
    assert_eq!(d.next_deadline(), Some(t0 + STALL));
    d.handle_timeout(t0 + STALL - ms(1));
    assert!(actions(&mut d).is_empty(), "one tick before: still there");
    // Data restarts the clock.
    let t1 = t0 + STALL - ms(1);
    assert!(send(&mut d, &mut disk, t1, ca, &data, 0).is_empty());
    assert_eq!(d.next_deadline(), Some(t1 + STALL));
    d.handle_timeout(t1 + STALL - ms(1));
    assert!(actions(&mut d).is_empty());
    let t2 = t1 + STALL;
    d.handle_timeout(t2);
    assert_eq!(actions(&mut d), [Action::Close(ca)]);
    assert_eq!((d.connected(), d.stats.seeders_banned), (0, 0));
    // Its chunks go to the next seeder; a itself is tried again later.
    assert_eq!(requests(&join(&mut d, &mut disk, t2, c, cc), cc), [1, 2, 3, 4, 5]);
    d.handle_timeout(t2 + FAIL_RETRY);
    assert_eq!(connects(&actions(&mut d)), [a]);
}

#[test]
fn idle_seeder_does_not_stall() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    let (ca, cb) = (ConnId(1), ConnId(2));
    join(&mut d, &mut disk, t0, addr(7001), ca);
    join(&mut d, &mut disk, t0, addr(7002), cb);
    // b owes nothing: only a can stall.
    d.handle_timeout(t0 + STALL);
    assert_eq!(closes(&actions(&mut d)), [ca]);
}

#[test]
fn idle_seeder_given_requeued_chunks_gets_a_full_stall_window() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let (ca, cb) = (ConnId(1), ConnId(2));
    join(&mut d, &mut disk, t0, addr(7001), ca);
    assert!(join(&mut d, &mut disk, t0, addr(7002), cb).is_empty(), "b idle");
    // a serves slowly but steadily, then vanishes.
    for (n, index) in [0, 1, 2].into_iter().enumerate() {
        send(&mut d, &mut disk, t0 + secs(5 * (n as u64 + 1)), ca, &data, index);
        d.handle_timeout(t0 + secs(5 * (n as u64 + 1)));
        assert!(actions(&mut d).is_empty());
    }
    let t1 = t0 + secs(16);
    d.handle_closed(t1, ca);
    assert_eq!(requests(&actions(&mut d), cb), [3, 4, 5]);
    assert!(d.next_deadline().unwrap() > t1, "deadline in the past: {:?}", d.next_deadline().map(|x| x - t0));
    d.handle_timeout(t1 + secs(1));
    assert!(!closes(&actions(&mut d)).contains(&cb), "b asked 1 s ago, dropped as stalled");
}

#[test]
fn silent_greeting_is_dropped_after_five_seconds() {
    let t0 = Instant::now();
    let (mut d, _, _) = small(t0, 2);
    let (a, ca) = (addr(7001), ConnId(1));
    d.add_seeders(t0, &[a]);
    actions(&mut d);
    d.handle_dialling(t0, a, ca);
    let t1 = t0 + secs(1);
    d.handle_connected(t1, ca);
    assert_eq!(d.next_deadline(), Some(t1 + GREETING));
    d.handle_timeout(t1 + GREETING - ms(1));
    assert!(actions(&mut d).is_empty());
    let t2 = t1 + GREETING;
    d.handle_timeout(t2);
    assert_eq!(actions(&mut d), [Action::Close(ca)]);
    assert_eq!(d.stats.seeders_banned, 0);
    // Not banned: tried again after the backoff.
    assert_eq!(d.next_deadline(), Some(t2 + FAIL_RETRY));
    d.handle_timeout(t2 + FAIL_RETRY);
    assert_eq!(actions(&mut d), [Action::Connect(a)]);
}

#[test]
fn wrong_protocol_version_is_dropped_and_banned() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 2);
    let (a, b) = (addr(7001), addr(7002));
    let (ca, cb) = (ConnId(1), ConnId(2));
    d.add_seeders(t0, &[a, b]);
    actions(&mut d);
    d.handle_dialling(t0, a, ca);
    d.handle_dialling(t0, b, cb);
    d.handle_connected(t0, ca);
    d.handle_connected(t0, cb);
    for (conn, version) in [(ca, PEER_VERSION + 1), (cb, 0)] {
        let msg = Message::State { version, state: SeederState::Available };
        d.handle_message(t0, conn, msg, &mut disk).unwrap();
        assert_eq!(actions(&mut d), [Action::Close(conn)], "version {version}");
    }
    assert_eq!((d.stats.seeders_banned, d.stats.seeders_used, d.connected()), (2, 0, 0));
    assert!(never_dialled_again(&mut d, t0, a));
    assert!(never_dialled_again(&mut d, t0, b));
}

#[test]
fn disk_write_failure_is_fatal() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let ca = ConnId(1);
    join(&mut d, &mut disk, t0, addr(7001), ca);
    disk.fail_writes = true;
    let id = d.id();
    let got = d.handle_message(t0, ca, Message::Chunk { id, index: 0, data: piece(&data, 0) }, &mut disk);
    let Err(Fatal(message)) = got else { panic!("a write failure must be fatal") };
    assert!(message.contains("cannot write f.bin.part") && message.contains("disk full"), "{message}");
    assert_eq!(d.bytes_done, 0);
}

#[test]
fn close_all_closes_every_connection() {
    let t0 = Instant::now();
    let (mut d, _, mut disk) = small(t0, 3);
    let (ca, cb, cc) = (ConnId(1), ConnId(2), ConnId(3));
    join(&mut d, &mut disk, t0, addr(7001), ca);
    join(&mut d, &mut disk, t0, addr(7002), cb);
    d.add_seeders(t0, &[addr(7003)]);
    actions(&mut d);
    d.handle_dialling(t0, addr(7003), cc);
    d.close_all();
    let mut closed = closes(&actions(&mut d));
    closed.sort();
    assert_eq!(closed, [ca, cb, cc]);
    assert_eq!(d.connected(), 0);
}

#[test]
fn seeders_used_counts_distinct_seeders() {
    let t0 = Instant::now();
    let (mut d, data, mut disk) = small(t0, 2);
    let a = addr(7001);
    join(&mut d, &mut disk, t0, a, ConnId(1));
    d.handle_closed(t0, ConnId(1));
    actions(&mut d);
    d.handle_timeout(t0 + FAIL_RETRY);
    assert_eq!(connects(&actions(&mut d)), [a]);
    greet(&mut d, &mut disk, t0 + FAIL_RETRY, a, ConnId(2));
    for index in 0..6 {
        send(&mut d, &mut disk, t0 + FAIL_RETRY, ConnId(2), &data, index);
    }
    assert!(d.is_complete());
    assert_eq!(d.stats.seeders_used, 1);
}

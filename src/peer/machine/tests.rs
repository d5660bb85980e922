//! The peer core on a fake clock, in the simulator's hand-driven harness:
//! machines wired together in memory, every frame through the real codec,
//! datagrams through a real tracker core, and peers played by hand where a
//! test needs a liar, a staller or exact timing.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use super::*;
use crate::meta::MIN_CHUNK;
use crate::peer::torrent::CHUNK_REFUSALS;
use crate::sim::content::Content;
use crate::sim::harness::{addr, hand_addr, Harness, HAND};
use crate::tracker::machine::{Config as TrackerConfig, Tracker};

const CHUNK: usize = MIN_CHUNK as usize;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A file whose chunks travel as their bytes.
type TestFile = Rc<Content>;

trait File {
    fn id(&self) -> ContentId;
    fn bits(&self, held: &[u32]) -> Bitfield;
    fn all(&self) -> Vec<u32>;
}

impl File for TestFile {
    fn id(&self) -> ContentId {
        self.meta.content_id()
    }

    fn bits(&self, held: &[u32]) -> Bitfield {
        let mut bits = Bitfield::new(self.meta.chunk_count());
        held.iter().for_each(|&i| assert!(bits.set(i)));
        bits
    }

    fn all(&self) -> Vec<u32> {
        (0..self.meta.chunk_count()).collect()
    }
}

/// The clock's zero, a file of `chunks` chunks (the last one half size) and
/// an empty swarm.
fn start(chunks: usize) -> (Instant, TestFile, Harness) {
    let size = ((chunks - 1) * CHUNK + CHUNK / 2) as u64;
    let file = Content::with_bytes("f.bin", size, MIN_CHUNK, chunks as u64).unwrap();
    (Instant::now(), file, Harness::default())
}

/// A downloader with nothing, to which the tracker gives no address: its
/// peers are the ones a test accepts by hand.
fn lone_downloader(chunks: usize) -> (Instant, TestFile, Harness, usize) {
    let (t0, f, mut sw) = start(chunks);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, Vec::new());
    sw.run(t0);
    (t0, f, sw, d)
}

/// A seed (its options tweaked) and two callers that hold nothing and have
/// greeted it: their connections at the seed.
fn seed_and_two_callers(
    chunks: usize,
    tweak: impl FnOnce(&mut Config),
) -> (Instant, TestFile, Harness, usize, [ConnId; 2]) {
    let (t0, f, mut sw) = start(chunks);
    let s = sw.peer(t0, &f, &f.all(), tweak);
    sw.run(t0);
    let callers = [sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2))];
    for c in callers {
        sw.greet(t0, s, c, &f, &[], None);
    }
    (t0, f, sw, s, callers)
}

/// A peer with one upload slot that holds `held` of `chunks` (the tracker
/// gives it no address) and two callers that hold nothing and have greeted
/// it: the first holds the slot, the second waits.
fn one_slot_and_two_callers(chunks: usize, held: &[u32]) -> (Instant, TestFile, Harness, usize, [ConnId; 2]) {
    let (t0, f, mut sw) = start(chunks);
    let u = sw.peer(t0, &f, held, |c| c.slots = 1);
    sw.tracker_says.insert(u, Vec::new());
    sw.run(t0);
    let callers = [sw.accept(t0, u, hand_addr(1)), sw.accept(t0, u, hand_addr(2))];
    for c in callers {
        sw.greet(t0, u, c, &f, &[], None);
    }
    assert_eq!(sw.said_on(u, callers[0]).last(), Some(&Seen::State(State::Available)));
    assert_eq!(sw.said_on(u, callers[1]).last(), Some(&Seen::State(State::Unavailable)));
    (t0, f, sw, u, callers)
}

/// A frame as its receiver decoded it (chunk bytes are checked in storage).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Hello,
    Bitfield(Vec<u8>),
    Have(u32),
    State(State),
    Request(u32),
    Chunk(u32),
    Reject(u32, RejectReason),
    Cancel(u32),
}

impl From<Message<'_>> for Seen {
    fn from(msg: Message<'_>) -> Seen {
        match msg {
            Message::Hello { .. } => Seen::Hello,
            Message::Bitfield(bits) => Seen::Bitfield(bits.to_vec()),
            Message::Have(i) => Seen::Have(i),
            Message::State(s) => Seen::State(s),
            Message::Request { index: i, .. } => Seen::Request(i),
            Message::Chunk { index, .. } => Seen::Chunk(index),
            Message::Reject { index, reason } => Seen::Reject(index, reason),
            Message::Cancel(i) => Seen::Cancel(i),
        }
    }
}

/// The indices of the frames of one kind: `of(&seen, Seen::Request)`.
fn of(seen: &[Seen], kind: fn(u32) -> Seen) -> Vec<u32> {
    let index = |s: &Seen| match s {
        Seen::Have(i) | Seen::Request(i) | Seen::Chunk(i) | Seen::Reject(i, _) | Seen::Cancel(i) => Some(*i),
        _ => None,
    };
    seen.iter().filter_map(|s| index(s).filter(|&i| kind(i) == *s)).collect()
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

/// What these tests read from the harness, in their own terms.
trait InTestTerms {
    fn peer(&mut self, t0: Instant, f: &TestFile, held: &[u32], tweak: impl FnOnce(&mut Config)) -> usize;
    fn greet(&mut self, now: Instant, i: usize, conn: ConnId, f: &TestFile, held: &[u32], state: Option<State>);
    fn serve(&mut self, now: Instant, i: usize, conn: ConnId, f: &TestFile);
    fn said_on(&self, i: usize, conn: ConnId) -> Vec<Seen>;
    fn said(&self, from: usize, to: usize) -> Vec<Seen>;
    fn theirs(&self, i: usize, conn: ConnId) -> Vec<u32>;
    fn holds_file(&self, i: usize, f: &TestFile) -> bool;
    fn events(&self, i: usize) -> Vec<&'static str>;
    fn stopped(&self, i: usize, f: &TestFile) -> bool;
}

impl InTestTerms for Harness {
    /// A host holding `held` of `f` for good, configured by `tweak`.
    fn peer(&mut self, t0: Instant, f: &TestFile, held: &[u32], tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.add_host(t0, tweak);
        self.add_file(i, t0, f, held, Goal::Forever);
        i
    }

    /// The hand-played peer introduces itself: Hello, Bitfield, and a State if given.
    fn greet(&mut self, now: Instant, i: usize, conn: ConnId, f: &TestFile, held: &[u32], state: Option<State>) {
        self.inject(now, i, conn, Message::Hello { id: f.id(), port: 0, nonce: 1000 + conn.0 as u64 });
        self.inject(now, i, conn, Message::Bitfield(f.bits(held).as_bytes()));
        if let Some(state) = state {
            self.inject(now, i, conn, Message::State(state));
        }
    }

    /// The hand-played peer answers, in order and with the right bytes, every
    /// request host `i` sent on `conn`, until the host asks for nothing more.
    fn serve(&mut self, now: Instant, i: usize, conn: ConnId, f: &TestFile) {
        while let Some((n, c)) = self.far_end(i, conn) {
            let asked = of(&self.said_on(i, conn), Seen::Request);
            let answered = self.said_on(n, c).iter().filter(|s| matches!(s, Seen::Chunk(_) | Seen::Reject(..))).count();
            let Some(&index) = asked.get(answered) else { return };
            self.inject(now, i, conn, Message::Chunk { index, data: &f.chunk(index) });
        }
    }

    /// What host `i` sent on `conn`, as its peer decoded it.
    fn said_on(&self, i: usize, conn: ConnId) -> Vec<Seen> {
        self.messages_on(i, conn).map(Seen::from).collect()
    }

    /// What host `from` sent host `to` over all their connections.
    fn said(&self, from: usize, to: usize) -> Vec<Seen> {
        self.messages(from, to).map(Seen::from).collect()
    }

    /// Which chunks host `i` believes the peer on `conn` holds.
    fn theirs(&self, i: usize, conn: ConnId) -> Vec<u32> {
        self.hosts[i].m.sessions[&conn].theirs.as_ref().map_or(Vec::new(), |b| b.ones().collect())
    }

    fn holds_file(&self, i: usize, _: &TestFile) -> bool {
        self.hosts[i].store.as_ref().is_some_and(|s| s.holds_file())
    }

    /// Host `i`'s events so far, by name.
    fn events(&self, i: usize) -> Vec<&'static str> {
        let name = |e: &Event| match e {
            Event::Complete { .. } => "Complete",
            Event::Failed { .. } => "Failed",
            Event::Finished { .. } => "Finished",
            Event::Reconnected => "Reconnected",
        };
        self.hosts[i].events.iter().map(name).collect()
    }

    fn stopped(&self, i: usize, f: &TestFile) -> bool {
        self.announces.iter().any(|(n, a)| *n == i && a.info_hash == f.id() && a.event == AnnounceEvent::Stopped)
    }
}

#[test]
fn bitfield_and_have_tell_each_side_what_the_other_holds() {
    let (t0, f, mut sw) = start(4);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 0); // serves nobody: nothing moves by itself
    let (a, b) = (sw.peer(t0, &f, &[], |_| {}), sw.peer(t0, &f, &[], |_| {}));
    sw.run(t0);
    assert_eq!(sw.theirs(a, sw.conn(a, s)), f.all(), "a knows the seeder holds everything");
    assert_eq!(sw.theirs(s, sw.conn(s, a)), [], "and the seeder knows a holds nothing");
    assert_eq!(sw.theirs(b, sw.conn(b, a)), []);
    assert_eq!(sw.theirs(a, sw.conn(a, b)), []);

    // A peer played by hand holds chunk 1 and serves a; a verifies it.
    let h = sw.accept(t0, a, hand_addr(1));
    sw.greet(t0, a, h, &f, &[1], Some(State::Available));
    assert_eq!(sw.theirs(a, h), [1]);
    assert_eq!(of(&sw.said_on(a, h), Seen::Request), [1], "the only chunk it holds");
    sw.inject(t0, a, h, Message::Chunk { index: 1, data: &f.chunk(1) });
    assert_eq!(of(&sw.said(a, b), Seen::Have), [1], "b lacked it");
    assert_eq!(of(&sw.said(a, s), Seen::Have), [], "the seeder holds it");
    assert_eq!(of(&sw.said_on(a, h), Seen::Have), [1], "it serves a: it hears of every chunk a verifies");
    // b learnt it from the Have and fetched it from a; it tells a, which serves it, and nobody else.
    assert_eq!(sw.theirs(b, sw.conn(b, a)), [1]);
    assert_eq!(of(&sw.said(a, b), Seen::Chunk), [1]);
    assert_eq!(of(&sw.said(b, a), Seen::Have), [1]);
    assert_eq!(of(&sw.said(b, s), Seen::Have), []);

    // A Bitfield of the wrong length (or with spare bits set) closes that connection.
    for (n, bad) in [vec![0u8, 0], vec![0x0F]].into_iter().enumerate() {
        let before = sw.hosts[a].m.violations;
        let liar = sw.accept(t0, a, hand_addr(2 + n as u16));
        sw.inject(t0, a, liar, Message::Hello { id: f.id(), port: 0, nonce: 99 });
        sw.inject(t0, a, liar, Message::Bitfield(&bad));
        assert!(sw.closed.contains(&(a, liar)), "bitfield {bad:?} closes");
        assert_eq!(sw.hosts[a].m.violations, before + 1);
    }
    assert_eq!(sw.hosts[a].m.peers(), 3, "the others stay");
}

#[test]
fn requests_go_only_to_peers_that_hold_the_chunk() {
    let (t0, f, mut sw) = start(6);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.run(t0);
    let (h1, h2) = (sw.accept(t0, d, hand_addr(1)), sw.accept(t0, d, hand_addr(2)));
    sw.greet(t0, d, h1, &f, &[0], Some(State::Available));
    sw.greet(t0, d, h2, &f, &[1, 2, 3], Some(State::Available));
    sw.inject(t0, d, h2, Message::Have(4)); // chunk 5 is held by nobody
    sw.serve(t0, d, h1, &f);
    sw.serve(t0, d, h2, &f);
    assert_eq!(of(&sw.said_on(d, h1), Seen::Request), [0]);
    assert_eq!(sorted(of(&sw.said_on(d, h2), Seen::Request)), [1, 2, 3, 4], "including what it announced later");
    sw.inject(t0, d, h1, Message::Have(5));
    sw.serve(t0, d, h1, &f);
    assert_eq!(of(&sw.said_on(d, h1), Seen::Request), [0, 5]);
    assert!(sw.holds_file(d, &f));
}

#[test]
fn before_hello_only_a_hello_is_taken_and_callers_not_greeted_are_capped() {
    let (t0, f, mut sw) = start(4);
    let s = sw.peer(t0, &f, &f.all(), |_| {});
    sw.run(t0);
    let one = |n: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 5000 + n);
    let conns: Vec<ConnId> = (0..=GREETING_PER_IP as u16).map(|n| sw.accept(t0, s, one(n))).collect();
    for c in &conns[..GREETING_PER_IP] {
        assert_eq!(sw.limit(s, *c), Some(HELLO_FRAME), "a Hello-sized frame until the Hello");
    }
    let last = conns[GREETING_PER_IP];
    assert!(sw.closed.contains(&(s, last)), "one caller more from that address is closed at once");
    let other = sw.accept(t0, s, hand_addr(1));
    assert!(!sw.closed.contains(&(s, other)), "another address is taken");
    sw.greet(t0, s, other, &f, &[], None);
    assert_eq!(sw.limit(s, other), Some(max_control_frame(f.meta.chunk_count())), "a seed asks for no chunk");
    let (t0, f, mut sw, d) = lone_downloader(4);
    let caller = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, caller, &f, &[], None);
    assert_eq!(sw.limit(d, caller), Some(max_frame(f.meta.chunk_size(), f.meta.chunk_count())), "a downloader does");
}

/// Over all files at most `max_inbound` callers are held, whatever the
/// number of files. A newcomer takes the place of a caller of the address
/// block holding two more than its own, or of its own block in a file
/// holding two more than its own; the most crowded block first, then the
/// most crowded file, then the caller heard from longest ago; never of a
/// slot holder; else it is refused.
#[test]
fn callers_over_all_files_are_capped_and_make_room_by_address_then_by_file() {
    let t0 = Instant::now();
    let files: Vec<TestFile> = (0..3u64)
        .map(|n| Content::with_bytes(&format!("f{n}.bin"), 2 * CHUNK as u64, MIN_CHUNK, n + 1).unwrap())
        .collect();
    let mut sw = Harness::default();
    // Per file 3 callers, 2 from one block; 4 over all files; one upload slot.
    let s = sw.add_host(t0, |c| (c.max_peers, c.max_inbound, c.slots) = (4, 4, 1));
    for f in &files {
        sw.add_file(s, t0, f, &f.all(), Goal::Forever);
    }
    sw.run(t0);
    // Within 500 ms, so the slot stays where it went first.
    let call = |sw: &mut Harness, at: SocketAddr, f: &TestFile, after: u64| {
        let now = t0 + ms(after);
        let c = sw.accept(now, s, at);
        sw.inject(now, s, c, Message::Hello { id: f.id(), port: 0, nonce: 1000 + c.0 as u64 });
        if sw.is_open(s, c) {
            sw.inject(now, s, c, Message::Bitfield(f.bits(&[]).as_bytes()));
        }
        c
    };
    let crowd = |n: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 5000 + n);
    let first: Vec<ConnId> =
        (0..4u16).map(|n| call(&mut sw, crowd(n), &files[usize::from(n / 2)], 100 * u64::from(n))).collect();
    assert_eq!(sw.hosts[s].m.peers(), 4, "two callers of one address in each of two files");
    let holder = first[0];
    assert!(sw.hosts[s].m.sessions[&holder].slot_since.is_some(), "the first holds the slot");

    // Full: one more of that address, for the third file, takes the place of its
    // own caller heard from longest ago in a file holding two: not the slot holder's.
    let third = call(&mut sw, crowd(4), &files[2], 400);
    assert!(sw.is_open(s, third));
    assert!(sw.closed.contains(&(s, first[1])), "the oldest caller without a slot made room");
    assert!(sw.is_open(s, holder));
    assert_eq!(sw.hosts[s].m.peers(), 4);
    // Its files hold 1, 2 and 1 callers now: one more from there is refused.
    let refused = call(&mut sw, crowd(5), &files[2], 450);
    assert!(sw.closed.contains(&(s, refused)));
    assert_eq!(sw.said_on(s, refused).last(), Some(&Seen::State(State::Unavailable)));
    assert_eq!(sw.hosts[s].m.peers(), 4);

    // Another address takes the place of one of the crowd's, whatever the file:
    // of the fullest file first.
    let honest = call(&mut sw, hand_addr(1), &files[2], 460);
    assert!(sw.is_open(s, honest), "a newcomer of an address holding none is taken");
    assert!(sw.closed.contains(&(s, first[2])));
    let second = call(&mut sw, hand_addr(2), &files[0], 470);
    assert!(sw.is_open(s, second));
    assert!(sw.closed.contains(&(s, third)), "the crowd's caller in the fullest file (2 against 1)");
    // The crowd holds two, one of them the slot holder: the other makes room.
    let late = call(&mut sw, hand_addr(3), &files[1], 480);
    assert!(sw.is_open(s, late));
    assert!(sw.closed.contains(&(s, first[3])) && sw.is_open(s, holder));
    // Every address holds one caller now, the files 2, 1 and 1: a fourth address is refused.
    let refused = call(&mut sw, hand_addr(4), &files[2], 490);
    assert!(sw.closed.contains(&(s, refused)));
    assert!([holder, honest, second, late].iter().all(|c| sw.is_open(s, *c)));
    assert_eq!(sw.hosts[s].m.peers(), 4);
}

#[test]
fn no_slot_means_not_now_until_a_slot_is_offered() {
    let (t0, f, mut sw) = start(8);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, vec![hand_addr(1)]);
    sw.listeners.push(hand_addr(1));
    sw.run(t0);
    let c = sw.dialled(d, hand_addr(1));
    assert_eq!(sw.far_end(d, c).unwrap().0, HAND, "a peer played by the test");
    sw.inject(t0, d, c, Message::Hello { id: f.id(), port: 0, nonce: 99 });
    sw.inject(t0, d, c, Message::Bitfield(f.bits(&f.all()).as_bytes()));
    sw.inject(t0, d, c, Message::State(State::Available));
    let asked = of(&sw.said_on(d, c), Seen::Request);
    assert!(!asked.is_empty());
    for &index in &asked {
        sw.inject(t0, d, c, Message::Reject { index, reason: RejectReason::NoSlot });
    }
    sw.run(t0 + secs(1));
    assert_eq!(of(&sw.said_on(d, c), Seen::Request).len(), asked.len(), "not asked again while it has no slot for us");
    sw.inject(t0 + secs(1), d, c, Message::State(State::Connected));
    assert!(of(&sw.said_on(d, c), Seen::Request).len() > asked.len(), "asked again once a slot is ours");
}

#[test]
fn one_address_takes_at_most_half_of_a_files_connections() {
    let (t0, f, mut sw) = start(4);
    let s = sw.peer(t0, &f, &f.all(), |c| c.max_peers = 8);
    sw.run(t0);
    let one = |n: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 5000 + n);
    let crowd: Vec<ConnId> = (0..5).map(|n| sw.accept(t0, s, one(n))).collect();
    for &c in &crowd[..4] {
        sw.greet(t0, s, c, &f, &[], None);
    }
    sw.inject(t0, s, crowd[4], Message::Hello { id: f.id(), port: 0, nonce: 77 });
    assert!(sw.closed.contains(&(s, crowd[4])), "the fifth from one address is told Unavailable");
    assert_eq!(sw.said_on(s, crowd[4]).last(), Some(&Seen::State(State::Unavailable)));
    let other = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, other, &f, &[], None);
    assert!(!sw.closed.contains(&(s, other)), "another address is taken");
    assert_eq!(sw.hosts[s].m.peers(), 5);
}

#[test]
fn callers_leave_room_for_our_own_dials() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |c| c.max_peers = 4); // half, two connections, is kept for dials
    sw.tracker_says.insert(d, Vec::new());
    let s = sw.peer(t0, &f, &f.all(), |c| c.max_peers = 4);
    sw.run(t0);
    let callers: Vec<ConnId> = (1..=3).map(|n| sw.accept(t0, d, hand_addr(n))).collect();
    for &c in &callers[..2] {
        sw.greet(t0, d, c, &f, &[], None);
    }
    sw.inject(t0, d, callers[2], Message::Hello { id: f.id(), port: 0, nonce: 77 });
    assert_eq!(sw.hosts[d].m.peers(), 2, "the third caller is told Unavailable");
    assert_eq!(sw.said_on(d, callers[2]).last(), Some(&Seen::State(State::Unavailable)));
    sw.tracker_says.insert(d, vec![addr(s)]);
    for n in 1..=60 {
        sw.run(t0 + secs(n));
    }
    assert!(sw.dials.iter().any(|x| x.host == d && x.to == addr(s)), "the seed it learnt of later is dialled");
    assert!(sw.holds_file(d, &f), "and the file fetched from it");
    // A complete peer dials nobody: callers may take all its connections.
    let t = t0 + secs(60);
    let at_seed: Vec<ConnId> = (1..=4).map(|n| sw.accept(t, s, hand_addr(n))).collect();
    for &c in &at_seed {
        sw.greet(t, s, c, &f, &[], None);
    }
    assert!(
        at_seed.iter().all(|c| !sw.closed.contains(&(s, *c))),
        "the seed, whose downloader left, takes four callers"
    );
    assert_eq!(sw.hosts[s].m.peers(), 4);
}

#[test]
fn a_peer_dials_at_most_half_its_connections_so_later_peers_reach_it() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |c| c.max_peers = 8);
    let known: Vec<SocketAddr> = (1..=10).map(hand_addr).collect();
    sw.blackholes.extend(&known); // dials that stay pending: each holds its place
    sw.tracker_says.insert(d, known);
    sw.run(t0);
    assert_eq!(sw.dials.iter().filter(|x| x.host == d).count(), 4, "half of --max-peers-per-file");
    let callers: Vec<ConnId> = (20..24).map(|n| sw.accept(t0, d, hand_addr(n))).collect();
    for &c in &callers {
        sw.greet(t0, d, c, &f, &[], None);
    }
    assert!(callers.iter().all(|c| !sw.closed.contains(&(d, *c))), "peers that arrive later are taken");
    assert_eq!(sw.hosts[d].m.peers(), 4, "greeted: the callers; our dials are still pending");
}

#[test]
fn requests_for_chunks_never_announced_or_without_a_slot_are_rejected() {
    let (t0, _, mut sw, a, [h1, h2]) = one_slot_and_two_callers(4, &[0, 1]);

    let before = sw.hosts[a].m.violations;
    for index in [2, 0, 9] {
        sw.inject(t0, a, h1, Message::Request { index, sole: false, more: false });
    }
    let answers = sw.said_on(a, h1).split_off(3);
    let reject = Seen::Reject;
    assert_eq!(answers, [reject(2, RejectReason::NotHeld), Seen::Chunk(0), reject(9, RejectReason::BadIndex)]);
    assert_eq!(sw.hosts[a].m.violations, before + 1, "asking for what we never announced is a violation");

    sw.inject(t0, a, h2, Message::Request { index: 1, sole: false, more: false });
    assert_eq!(sw.said_on(a, h2).last(), Some(&reject(1, RejectReason::NoSlot)));
    assert_eq!(sw.hosts[a].m.violations, before + 1, "a request that crossed a lost slot is no violation");
    assert_eq!(sw.hosts[a].m.peers(), 2);
}

#[test]
fn the_rarest_chunks_are_asked_first_after_the_random_ones() {
    let (t0, f, mut sw) = start(30);
    let rare = [3, 7, 11];
    let common: Vec<u32> = f.all().into_iter().filter(|i| !rare.contains(i)).collect();
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.run(t0);
    let (h1, h2) = (sw.accept(t0, d, hand_addr(1)), sw.accept(t0, d, hand_addr(2)));
    sw.greet(t0, d, h1, &f, &f.all(), None);
    sw.greet(t0, d, h2, &f, &common, None); // never serves: it only makes the others common
    let picker = &sw.hosts[d].m.torrents[&f.id()].picker;
    assert_eq!((picker.availability(3), picker.availability(0)), (1, 2));
    sw.inject(t0, d, h1, Message::State(State::Available));
    sw.serve(t0, d, h1, &f);
    assert!(sw.holds_file(d, &f));
    let asked = of(&sw.said_on(d, h1), Seen::Request);
    assert_eq!(sorted(asked.clone()), f.all());
    let (random, rest) = asked.split_at(4); // the picker's RANDOM_FIRST
    let want: Vec<u32> = rare.into_iter().filter(|r| !random.contains(r)).collect();
    assert_eq!(sorted(rest[..want.len()].to_vec()), want, "after {random:?} at random, the rare chunks");
}

#[test]
fn end_game_asks_a_second_peer_cancels_and_ignores_the_duplicate() {
    // u1 holds chunks 0-2 and is asked for two; nobody holds chunk 3.
    let (t0, f, mut sw) = start(4);
    let (u1, d) = (sw.peer(t0, &f, &[0, 1, 2], |_| {}), sw.peer(t0, &f, &[], |_| {}));
    sw.hosts[u1].hold = true;
    sw.run(t0);
    let (a, b) = match of(&sw.said(d, u1), Seen::Request)[..] {
        [a, b] => (a, b),
        ref asked => panic!("a pipeline of two: {asked:?}"),
    };
    // A second peer delivers u1's third chunk, which nobody was asked for:
    // now every chunk someone holds is requested or held, so the end game
    // is on, and the second peer has delivered: it is asked for `a` too.
    let h = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, h, &f, &[], Some(State::Available));
    let c = (0..3).find(|i| ![a, b].contains(i)).unwrap();
    sw.inject(t0, d, h, Message::Have(c));
    sw.inject(t0, d, h, Message::Chunk { index: c, data: &f.chunk(c) });
    sw.inject(t0, d, h, Message::Have(a));
    assert_eq!(of(&sw.said_on(d, h), Seen::Request), [c, a], "the outstanding chunk is asked of the second peer");

    // u1 sends a while the second peer's copy is on its way: the Cancel comes too late.
    let c1 = sw.conn(u1, d);
    assert!(sw.feed(t0, u1, c1));
    sw.inject(t0, d, h, Message::Chunk { index: a, data: &f.chunk(a) });
    assert_eq!(of(&sw.said(d, u1), Seen::Cancel), [a]);
    assert_eq!(of(&sw.said(u1, d), Seen::Chunk), [a], "the duplicate arrived and was ignored");
    assert_eq!(sw.hosts[d].m.violations, 0);

    // In time, a Cancel keeps the duplicate from being sent at all.
    sw.inject(t0, d, h, Message::Have(b));
    assert_eq!(of(&sw.said_on(d, h), Seen::Request), [c, a, b]);
    sw.inject(t0, d, h, Message::Chunk { index: b, data: &f.chunk(b) });
    assert_eq!(of(&sw.said(d, u1), Seen::Cancel), [a, b]);
    sw.hosts[u1].hold = false;
    sw.run(t0);
    assert_eq!(of(&sw.said(u1, d), Seen::Chunk), [a], "all it was asked but b");
    assert_eq!(sorted(of(&sw.said_on(d, h), Seen::Have)), [0, 1, 2], "h serves d: it hears of every chunk d verifies");
    sw.inject(t0, d, h, Message::Have(3));
    sw.inject(t0, d, h, Message::Chunk { index: 3, data: &f.chunk(3) });
    assert!(sw.holds_file(d, &f));
    assert_eq!(sw.events(d), ["Complete"]);
    let Some(Event::Complete { counters, .. }) = sw.hosts[d].events.first() else { unreachable!() };
    assert_eq!(counters.from_seeders + counters.from_leechers, f.meta.size(), "the duplicate is not counted");
}

#[test]
fn end_game_asks_only_peers_that_have_delivered() {
    let (t0, f, mut sw) = start(3);
    let (u1, d) = (sw.peer(t0, &f, &f.all(), |_| {}), sw.peer(t0, &f, &[], |_| {}));
    sw.hosts[u1].hold = true;
    sw.run(t0);
    let c1 = sw.conn(u1, d);
    assert!(sw.feed(t0, u1, c1), "u1 delivers one chunk");
    sw.run(t0);
    assert_eq!(of(&sw.said(d, u1), Seen::Request).len(), 3, "every chunk asked of u1, which has delivered");
    // A peer that claims every chunk but never sent one is not asked for duplicates.
    let h = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, h, &f, &f.all(), Some(State::Available));
    assert_eq!(of(&sw.said_on(d, h), Seen::Request), [], "no end game with a peer that delivered nothing");
    // u1 goes: its chunks are unrequested again and asked of h as usual.
    sw.close(t0, d, sw.conn(d, u1));
    sw.run(t0);
    assert_eq!(of(&sw.said_on(d, h), Seen::Request).len(), 2);
}

/// Two peers that delivered nothing hold the last chunks (one asked
/// normally, one as an end-game duplicate): the duplicate does not count
/// against the end game's two requests a chunk, so a peer that delivers is
/// still asked for them (two stallers held a last chunk for 2 s in lmk-sim).
#[test]
fn end_game_duplicates_of_peers_that_delivered_nothing_leave_room_for_one_that_did() {
    let (t0, f, mut sw, d) = lone_downloader(4);
    let (h1, h2, h3) = (sw.accept(t0, d, hand_addr(1)), sw.accept(t0, d, hand_addr(2)), sw.accept(t0, d, hand_addr(3)));
    sw.greet(t0, d, h1, &f, &f.all(), Some(State::Available));
    sw.greet(t0, d, h2, &f, &f.all(), Some(State::Available));
    let last = of(&sw.said_on(d, h2), Seen::Request);
    assert_eq!(last.len(), 2, "h1 and h2 are asked for two chunks each");
    sw.greet(t0, d, h3, &f, &last, Some(State::Available));
    assert_eq!(sorted(of(&sw.said_on(d, h3), Seen::Request)), sorted(last.clone()), "end-game duplicates");
    // h1 delivers its two: it is asked for the last two though two peers are asked for each.
    for index in of(&sw.said_on(d, h1), Seen::Request) {
        sw.inject(t0, d, h1, Message::Chunk { index, data: &f.chunk(index) });
    }
    let to_h1 = of(&sw.said_on(d, h1), Seen::Request);
    assert!(last.iter().all(|i| to_h1.contains(i)), "{last:?} asked of the peer that delivered: {to_h1:?}");
}

#[test]
fn a_slot_rotates_to_the_waiting_peer_and_the_old_holder_gets_what_it_asked_before() {
    let (t0, f, mut sw, s, [h1, h2]) = seed_and_two_callers(6, |c| c.slots = 1);
    let bits = Seen::Bitfield(f.bits(&f.all()).as_bytes().to_vec());
    assert_eq!(sw.said_on(s, h1), [Seen::Hello, bits.clone(), Seen::State(State::Available)]);
    assert_eq!(sw.said_on(s, h2), [Seen::Hello, bits, Seen::State(State::Unavailable)]);
    // The holder keeps asking, so it is never idle; at 9.5 s its queue stops draining.
    sw.inject(t0 + secs(4), s, h1, Message::Request { index: 0, sole: false, more: false });
    sw.inject(t0 + secs(8), s, h1, Message::Request { index: 1, sole: false, more: false });
    sw.hosts[s].hold = true;
    for index in [2, 3, 4] {
        sw.inject(t0 + ms(9500), s, h1, Message::Request { index, sole: false, more: false });
    }
    sw.run(t0 + secs(10) - ms(1));
    assert_eq!(sw.said_on(s, h1).len(), 5, "one tick before the rotation nothing changes");
    sw.run(t0 + secs(10));
    sw.hosts[s].hold = false;
    sw.run(t0 + secs(10));
    let no_slot = |i| Seen::Reject(i, RejectReason::NoSlot);
    let (chunk, unavailable) = (Seen::Chunk, Seen::State(State::Unavailable));
    assert_eq!(sw.said_on(s, h1)[3..], [chunk(0), chunk(1), unavailable.clone(), chunk(2), chunk(3), chunk(4)]);
    sw.inject(t0 + secs(10), s, h1, Message::Request { index: 5, sole: false, more: false });
    assert_eq!(sw.said_on(s, h1).last(), Some(&no_slot(5)), "what it asks after Unavailable is refused");
    assert_eq!(sw.said_on(s, h2).last(), Some(&Seen::State(State::Connected)));
    assert_eq!(sw.hosts[s].m.sessions[&h2].slot_since, Some(t0 + secs(10)));
    assert_eq!(sw.hosts[s].m.slots_used(), 1);
}

/// Callers from one address hold every slot; a peer from another address
/// gets one at once (at most ceil(4 / 2) stay with the first address).
#[test]
fn upload_slots_are_shared_by_address() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| (c.slots, c.max_peers) = (4, 16));
    sw.run(t0);
    let one = |n: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 5000 + n);
    let crowd: Vec<ConnId> = (0..6).map(|n| sw.accept(t0, s, one(n))).collect();
    for &c in &crowd {
        sw.greet(t0, s, c, &f, &[], None);
        sw.inject(t0, s, c, Message::Request { index: 0, sole: false, more: false });
        // they keep asking
    }
    assert_eq!(sw.hosts[s].m.slots_used(), 4);
    let other = sw.accept(t0 + secs(1), s, hand_addr(1));
    sw.greet(t0 + secs(1), s, other, &f, &[], None);
    assert_eq!(sw.said_on(s, other).last(), Some(&Seen::State(State::Available)), "a slot at once");
    let held_by_crowd = crowd.iter().filter(|c| sw.hosts[s].m.sessions[c].slot_since.is_some()).count();
    assert_eq!(held_by_crowd, 3, "the crowd keeps the slot the other address does not want");
}

#[test]
fn an_idle_slot_holder_loses_its_slot_to_a_waiting_peer() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let at = t0 + secs(1);
    let h1 = sw.accept(at, s, hand_addr(1));
    sw.greet(at, s, h1, &f, &[], None);
    sw.inject(at, s, h1, Message::Request { index: 0, sole: false, more: false }); // one request, then nothing
    let h2 = sw.accept(at, s, hand_addr(2));
    sw.greet(at, s, h2, &f, &[], None);
    assert_eq!(sw.said_on(s, h2).last(), Some(&Seen::State(State::Unavailable)));
    sw.run(at + ASK_IDLE - ms(1));
    assert_eq!(sw.said_on(s, h2).len(), 3, "one tick before ASK_IDLE it keeps the slot");
    sw.run(at + ASK_IDLE);
    assert_eq!(sw.said_on(s, h1).last(), Some(&Seen::State(State::Unavailable)), "asked for nothing for ASK_IDLE");
    assert_eq!(sw.said_on(s, h2).last(), Some(&Seen::State(State::Connected)));
    assert!(sw.hosts[s].m.next_deadline().is_some_and(|d| d > at + ASK_IDLE), "no busy wake-ups");
}

/// A holder that asked for nothing most likely holds all it wants of ours
/// (peers tell only those who lack a chunk of it): it waits behind a peer
/// that has not shown that, although it has waited longer.
#[test]
fn a_peer_that_asked_for_nothing_waits_behind_the_others() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let at = t0 + secs(1);
    let h1 = sw.accept(at, s, hand_addr(1));
    sw.greet(at, s, h1, &f, &[], None); // asks for nothing
    let h2 = sw.accept(at, s, hand_addr(2));
    sw.greet(at, s, h2, &f, &[], None);
    sw.run(at + ASK_IDLE);
    assert_eq!(sw.said_on(s, h2).last(), Some(&Seen::State(State::Connected)), "h1 gave its slot to h2");
    let later = at + ASK_IDLE + ms(1);
    let h3 = sw.accept(later, s, hand_addr(3));
    sw.greet(later, s, h3, &f, &[], None);
    sw.run(later + ASK_IDLE);
    assert_eq!(sw.said_on(s, h2).last(), Some(&Seen::State(State::Unavailable)), "h2 asked for nothing either");
    assert_eq!(sw.said_on(s, h3).last(), Some(&Seen::State(State::Connected)), "h3 goes before h1");
    assert_eq!(sw.said_on(s, h1).last(), Some(&Seen::State(State::Unavailable)));
    sw.run(later + ASK_IDLE * 3);
    assert!(sw.hosts[s].m.sessions[&h3].slot_since.is_some(), "only stale peers wait: h3 keeps its slot");
    sw.run(at + ROTATION * 2);
    assert!(sw.said_on(s, h1).contains(&Seen::State(State::Connected)), "h1 waited a rotation: it got a turn");
}

/// Two slot holders whose queues the shell cannot refill: one reads slowly
/// (the kernel takes some of its bytes every second), one never reads. The
/// one whose queue takes nothing for SLOT_IDLE is closed and its address
/// refused for a while; the slow reader keeps its slot.
#[test]
fn a_slot_holder_that_reads_nothing_is_closed_and_a_slow_reader_is_not() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 2);
    sw.run(t0);
    sw.hosts[s].hold = true; // its queues are full: no handle_drained
    let (slow, never) = (sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2)));
    for c in [slow, never] {
        sw.greet(t0, s, c, &f, &[], None);
        sw.inject(t0, s, c, Message::Request { index: 0, sole: false, more: false });
    }
    assert_eq!(sw.hosts[s].m.slots_used(), 2);
    let written = |sw: &mut Harness, now: Instant| {
        let bytes = now.duration_since(t0).as_secs(); // a byte a second
        sw.hosts[s].m.handle_written(now, slow, bytes);
        sw.run(now);
    };
    for n in 1..=4 {
        written(&mut sw, t0 + secs(n));
    }
    sw.run(t0 + secs(5) - ms(1));
    assert!(!sw.closed.contains(&(s, never)), "one tick before SLOT_IDLE");
    written(&mut sw, t0 + secs(5));
    assert!(sw.closed.contains(&(s, never)), "its queue took nothing for SLOT_IDLE");
    let again = sw.accept(t0 + secs(5), s, hand_addr(2));
    assert!(sw.closed.contains(&(s, again)), "the non-reader's address is refused for a while");
    for n in 6..=20 {
        written(&mut sw, t0 + secs(n));
    }
    assert!(sw.is_open(s, slow), "the slow reader stays");
    assert!(sw.hosts[s].m.sessions[&slow].slot_since.is_some(), "and keeps its slot");
}

/// The peer on host `i`'s `conn` asks for `chunks`, all in one write.
fn ask(sw: &mut Harness, now: Instant, i: usize, conn: ConnId, chunks: std::ops::Range<u32>) {
    let mut bytes = Vec::new();
    chunks.for_each(|index| Message::Request { index, sole: false, more: false }.encode(&mut bytes));
    sw.inject_bytes(now, i, conn, &bytes);
}

/// The chunk bytes host `i` has queued and not yet sent, over all its connections.
fn unsent_bytes(sw: &Harness, i: usize, f: &TestFile) -> u64 {
    sw.unsent_chunks(i).iter().map(|&(_, index)| u64::from(f.meta.chunk_len(index).unwrap())).sum()
}

/// Four slot holders ask for 50 chunks each and read nothing. The shell
/// would take all 200 (this one has no low-water mark): chunks are queued
/// only within the budget of unsent chunk bytes, and once the queues have
/// moved nothing for SLOT_IDLE the non-readers are closed, freeing it.
#[test]
fn chunks_queued_for_peers_that_never_read_stay_within_the_budget() {
    let (t0, f, mut sw) = start(200);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 4);
    sw.run(t0);
    let callers: Vec<ConnId> = (1..=4).map(|n| sw.accept(t0, s, hand_addr(n))).collect();
    for (k, &c) in callers.iter().enumerate() {
        sw.greet(t0, s, c, &f, &[], None);
        sw.unread.insert((s, c));
        ask(&mut sw, t0, s, c, 50 * k as u32..50 * k as u32 + 50);
    }
    sw.run(t0 + ms(1));
    let (queued, budget) = (unsent_bytes(&sw, s, &f), budget(4, MIN_CHUNK));
    assert!(queued <= budget, "{queued} bytes of chunks queued, budget {budget}");
    assert!(queued + CHUNK as u64 > budget, "{queued} bytes queued: the budget is used, not more");
    let holding = |sw: &Harness| -> BTreeSet<ConnId> { sw.unsent_chunks(s).into_iter().map(|(c, _)| c).collect() };
    let first = holding(&sw);
    assert_eq!(first.len(), 3, "the fourth waits for the budget");
    sw.run(t0 + SLOT_IDLE - ms(1));
    assert!(callers.iter().all(|&c| sw.is_open(s, c)), "one tick before SLOT_IDLE");
    sw.run(t0 + SLOT_IDLE);
    assert!(first.iter().all(|c| sw.closed.contains(&(s, *c))), "their queues moved nothing for SLOT_IDLE");
    let last: Vec<ConnId> = callers.iter().copied().filter(|c| !first.contains(c)).collect();
    assert_eq!(holding(&sw).into_iter().collect::<Vec<_>>(), last, "the freed budget went to the one that waited");
    assert!(unsent_bytes(&sw, s, &f) <= budget);
    sw.run(t0 + SLOT_IDLE * 2);
    assert!(callers.iter().all(|c| sw.closed.contains(&(s, *c))));
    assert_eq!(sw.hosts[s].m.unsent, 0, "their chunks went with them");
}

/// A seed with 3 slots (a budget of 85 chunks of 16 KiB): two slot holders
/// that read nothing take all of it; a reader asks for 4 chunks. Returns the
/// seed, the two non-readers and the reader.
fn budget_taken_by_two_non_readers(t0: Instant, f: &TestFile, sw: &mut Harness) -> (usize, [ConnId; 2], ConnId) {
    let s = sw.peer(t0, f, &f.all(), |c| c.slots = 3);
    sw.run(t0);
    assert_eq!(budget(3, MIN_CHUNK), 85 * CHUNK as u64);
    let never = [sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2))];
    for (c, chunks) in never.into_iter().zip([0..64, 64..85]) {
        sw.greet(t0, s, c, f, &[], None);
        sw.unread.insert((s, c));
        ask(sw, t0, s, c, chunks);
    }
    let reader = sw.accept(t0, s, hand_addr(3));
    sw.greet(t0, s, reader, f, &[], None);
    ask(sw, t0, s, reader, 85..89);
    sw.run(t0);
    assert_eq!(unsent_bytes(sw, s, f), 85 * CHUNK as u64);
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [] as [u32; 0], "its answers wait for the budget");
    (s, never, reader)
}

/// The non-readers' chunks hold the whole budget: the reader's answers wait
/// (it keeps its slot meanwhile) until the non-readers are closed for
/// SLOT_IDLE, then go at once, in order.
#[test]
fn answers_waiting_for_the_budget_go_once_the_non_readers_are_closed() {
    let (t0, f, mut sw) = start(120);
    let (s, never, reader) = budget_taken_by_two_non_readers(t0, &f, &mut sw);
    sw.run(t0 + SLOT_IDLE - ms(1));
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [] as [u32; 0]);
    assert!(sw.hosts[s].m.sessions[&reader].slot_since.is_some(), "waiting for the budget is not idleness");
    sw.run(t0 + SLOT_IDLE);
    assert!(never.iter().all(|c| sw.closed.contains(&(s, *c))));
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [85, 86, 87, 88], "served once the budget is free");
    assert!(sw.is_open(s, reader));
}

/// The same, but one of the slow peers starts reading: its chunks leave, and
/// the bytes they free go to the answers that waited.
#[test]
fn answers_waiting_for_the_budget_go_once_bytes_drain() {
    let (t0, f, mut sw) = start(120);
    let (s, [slow, _], reader) = budget_taken_by_two_non_readers(t0, &f, &mut sw);
    sw.unread.remove(&(s, slow));
    sw.run(t0 + secs(1));
    assert_eq!(of(&sw.said_on(s, slow), Seen::Chunk).len(), 64, "it read all it was sent");
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [85, 86, 87, 88], "served as bytes left");
    assert!(sw.is_open(s, reader) && sw.is_open(s, slow));
}

/// The same, but the two read a byte a second of their queues: not idle,
/// yet they would keep the budget for good. While the reader's answers wait,
/// a piece may stay queued `SHARE_HOLD` (30 s): then
/// they are closed and the reader is served. With nobody waiting, a slow
/// reader keeps its chunk as long as it reads.
#[test]
fn readers_of_a_trickle_keep_their_share_of_the_budget_only_so_long_while_others_wait() {
    let (t0, f, mut sw) = start(120);
    let (s, slow, reader) = budget_taken_by_two_non_readers(t0, &f, &mut sw);
    let hold = SHARE_HOLD;
    for n in 1..=hold.as_secs() {
        let now = t0 + secs(n) - ms(1);
        for c in slow {
            sw.hosts[s].m.handle_written(now, c, 100 + n); // a byte a second
        }
        sw.run(now);
    }
    assert!(slow.iter().all(|&c| sw.is_open(s, c)), "one tick before the hold time");
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [] as [u32; 0]);
    sw.run(t0 + hold);
    assert!(slow.iter().all(|c| sw.closed.contains(&(s, *c))), "they held their share too long while others waited");
    assert_eq!(of(&sw.said_on(s, reader), Seen::Chunk), [85, 86, 87, 88]);
}

/// With nobody waiting for the budget, a peer reading a byte a second keeps
/// its queued chunks as long as it reads (it is only slow).
#[test]
fn a_reader_of_a_trickle_keeps_its_chunks_while_nobody_waits_for_the_budget() {
    let (t0, f, mut sw) = start(12);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 2);
    sw.run(t0);
    let slow = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, slow, &f, &[], None);
    sw.unread.insert((s, slow));
    ask(&mut sw, t0, s, slow, 0..4);
    for n in 1..=100 {
        sw.hosts[s].m.handle_written(t0 + secs(n), slow, 100 + n);
        sw.run(t0 + secs(n));
    }
    assert!(sw.is_open(s, slow));
    assert_eq!(sw.unsent_chunks(s).len(), 4);
}

/// A file leaves (its seeding time is over) while a peer that reads nothing
/// has chunks queued: its connection is left to flush, and its chunks stay
/// in the budget until it is gone, closed outright after `flush_hold`.
#[test]
fn a_connection_left_to_flush_that_reads_nothing_is_closed_after_the_hold_time() {
    let (t0, f, mut sw) = start(12);
    let s = sw.add_host(t0, |_| {});
    sw.add_file(s, t0, &f, &f.all(), Goal::Until { idle: LONG, ratio: None, time: Some(secs(2)) });
    sw.run(t0);
    let never = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, never, &f, &[], None);
    sw.unread.insert((s, never));
    ask(&mut sw, t0, s, never, 0..2);
    sw.run(t0 + secs(2));
    assert_eq!(sw.hosts[s].m.files().count(), 0, "the file left");
    assert_eq!(sw.hosts[s].m.unsent, 2 * CHUNK as u64, "its chunks still count");
    let at = t0 + secs(2) + flush_hold(MIN_CHUNK);
    sw.run(at - ms(1));
    assert!(sw.is_open(s, never), "left to flush");
    sw.run(at);
    assert!(sw.closed.contains(&(s, never)), "closed outright");
    assert_eq!(sw.hosts[s].m.unsent, 0);
}

/// A non-reader closed for reading nothing calls back after its ban, holding
/// no chunk: the slot goes to the other waiter, not to the peer furthest behind.
#[test]
fn an_address_that_read_nothing_waits_behind_the_other_peers() {
    let (t0, f, mut sw) = start(8);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    sw.hosts[s].hold = true;
    let never = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, never, &f, &[], None);
    sw.inject(t0, s, never, Message::Request { index: 0, sole: false, more: false });
    sw.run(t0 + SLOT_IDLE);
    assert!(sw.closed.contains(&(s, never)), "its queue took nothing for SLOT_IDLE");
    sw.hosts[s].hold = false;
    // Its ban over, it calls again while a reader holds the slot and a peer with chunks waits.
    let at = t0 + secs(8);
    let reader = sw.accept(at, s, hand_addr(2));
    sw.greet(at, s, reader, &f, &[], None);
    let back = sw.accept(at, s, hand_addr(1));
    sw.greet(at, s, back, &f, &[], None);
    let other = sw.accept(at, s, hand_addr(3));
    sw.greet(at, s, other, &f, &[4, 5, 6], None);
    for index in 0..4 {
        sw.inject(at, s, reader, Message::Request { index, sole: false, more: false });
        // a whole turn
    }
    sw.run(at);
    assert_eq!(sw.said_on(s, other).last(), Some(&Seen::State(State::Connected)), "the turn goes to the other waiter");
    assert_eq!(sw.said_on(s, back).last(), Some(&Seen::State(State::Unavailable)));
}

/// A peer whose queue has not moved since a chunk went into it (it reads
/// nothing) waits behind the other peers for a slot, though it holds no
/// chunk: it does not take the first slot again at each rechoke.
#[test]
fn a_peer_that_reads_nothing_of_its_queue_waits_behind_the_others() {
    let (t0, f, mut sw) = start(12);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let never = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, never, &f, &[], None);
    sw.unread.insert((s, never)); // from now on not a byte of its queue leaves
    sw.inject(t0, s, never, Message::Request { index: 0, sole: false, more: false });
    let (other, fresh) = (sw.accept(t0, s, hand_addr(2)), sw.accept(t0, s, hand_addr(3)));
    sw.greet(t0, s, other, &f, &[8, 9, 10], None);
    sw.greet(t0, s, fresh, &f, &[7, 8, 9, 10], None);
    let t1 = t0 + ASK_IDLE;
    sw.run(t1);
    assert_eq!(sw.said_on(s, other).last(), Some(&Seen::State(State::Connected)), "it asked for nothing more");
    for index in 1..=4 {
        sw.inject(t1, s, other, Message::Request { index, sole: false, more: false });
        // a whole turn, read at once
    }
    sw.run(t1);
    assert_eq!(sw.said_on(s, fresh).last(), Some(&Seen::State(State::Connected)), "the turn skips the non-reader");
    assert!(sw.hosts[s].m.sessions[&never].slot_since.is_none());
}

/// A peer that asked for nothing in its turn waits behind the others, though
/// it seems to hold fewer chunks: a complete peer hears of no chunk a peer
/// verifies (ours tell it all at completion; a peer that does not would
/// have it hand its turns to those that want nothing before the one that
/// still does).
#[test]
fn a_peer_that_asked_for_nothing_in_its_turn_waits_behind_the_others() {
    let (t0, f, mut sw) = start(12);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let done = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, done, &f, &[], None); // it holds everything by now, but we never heard
    let (other, wants) = (sw.accept(t0, s, hand_addr(2)), sw.accept(t0, s, hand_addr(3)));
    sw.greet(t0, s, other, &f, &[8, 9, 10], None);
    sw.greet(t0, s, wants, &f, &[0, 7, 8, 9, 10, 11], None);
    let t1 = t0 + ASK_IDLE;
    sw.run(t1);
    assert_eq!(sw.said_on(s, done).last(), Some(&Seen::State(State::Unavailable)), "asked for nothing in its turn");
    assert_eq!(sw.said_on(s, other).last(), Some(&Seen::State(State::Connected)));
    for index in 1..=4 {
        sw.inject(t1, s, other, Message::Request { index, sole: false, more: false });
        // a whole turn
    }
    sw.run(t1);
    assert_eq!(sw.said_on(s, wants).last(), Some(&Seen::State(State::Connected)), "not the idle peer with fewer");
    // Once it asks again (a slot nobody else wants), it is an ordinary waiter.
    sw.inject(t1, s, done, Message::Request { index: 5, sole: false, more: false });
    assert!(!sw.hosts[s].m.sessions[&done].idle_turn);
}

#[test]
fn a_holder_that_asks_for_nothing_keeps_its_slot_while_nobody_waits() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let at = t0 + secs(1);
    let h = sw.accept(at, s, hand_addr(1));
    sw.greet(at, s, h, &f, &[], None); // held back by its own download limit, say: asks nothing
    assert_eq!(sw.said_on(s, h).last(), Some(&Seen::State(State::Available)));
    sw.run(at + ASK_IDLE * 2);
    assert_eq!(sw.said_on(s, h).last(), Some(&Seen::State(State::Available)), "nobody waits: no ASK_IDLE");
    sw.run(at + SLOT_IDLE);
    assert_eq!(sw.said_on(s, h).last(), Some(&Seen::State(State::Unavailable)), "idle for SLOT_IDLE");
}

#[test]
fn the_upload_bucket_paces_chunks_and_serves_downloaders_in_turn() {
    let (t0, f, mut sw) = start(9);
    let s = sw.peer(t0, &f, &f.all(), |c| c.up_limit = Some(4 * CHUNK as u64)); // 4 chunks a second
    sw.run(t0);
    let (h1, h2) = (sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2)));
    // Distinct chunks: a seed refuses a chunk it already promised (Spread).
    for (k, h) in [h1, h2].into_iter().enumerate() {
        sw.greet(t0, s, h, &f, &[], None);
        for index in 4 * k as u32..4 * k as u32 + 4 {
            sw.inject(t0, s, h, Message::Request { index, sole: false, more: false });
        }
    }
    let served = |sw: &Harness| -> Vec<ConnId> {
        sw.log
            .iter()
            .filter(|l| l.from == s && matches!(l.message(), Some(Message::Chunk { .. })))
            .map(|l| l.conn)
            .collect()
    };
    assert_eq!(served(&sw), [h1], "the first chunk overdraws the bucket");
    for (h, at) in [(h1, 100), (h2, 100), (h1, 249)] {
        let mut out = Vec::new();
        let queued = sw.queued_through(s, h);
        sw.hosts[s].m.handle_drained(t0 + ms(at), h, queued, &mut out);
        assert!(out.is_empty(), "nothing handed out while in debt");
    }
    for k in 1..8 {
        let at = sw.hosts[s].m.next_deadline().unwrap();
        assert_eq!(at, t0 + ms(250) * k, "woken when the debt is repaid");
        sw.run(at - ms(1));
        assert_eq!(served(&sw).len(), k as usize, "not a tick early");
        sw.run(at);
        assert_eq!(served(&sw).len(), k as usize + 1);
    }
    // h1 was in line before h2 asked; then they alternate until h1 has had all it asked for.
    assert_eq!(served(&sw), [h1, h1, h2, h1, h2, h1, h2, h2], "served in turn");
}

/// Under an upload limit a peer in turn whose queue the kernel has not taken
/// is passed over: a slow or non-reading peer held every other's chunks.
#[test]
fn the_upload_bucket_passes_over_a_peer_whose_queue_is_not_taken() {
    let (t0, f, mut sw) = start(9);
    let s = sw.peer(t0, &f, &f.all(), |c| c.up_limit = Some(4 * CHUNK as u64)); // 4 chunks a second
    sw.run(t0);
    let (h1, h2) = (sw.accept(t0, s, hand_addr(1)), sw.accept(t0, s, hand_addr(2)));
    sw.unread.insert((s, h1)); // from now on not a byte of its queue leaves
    for (k, h) in [h1, h2].into_iter().enumerate() {
        sw.greet(t0, s, h, &f, &[], None);
        for index in 4 * k as u32..4 * k as u32 + 4 {
            sw.inject(t0, s, h, Message::Request { index, sole: false, more: false });
        }
    }
    sw.run(t0 + secs(1));
    let served: Vec<ConnId> = sw
        .log
        .iter()
        .filter(|l| l.from == s && matches!(l.message(), Some(Message::Chunk { .. })))
        .map(|l| l.conn)
        .collect();
    assert_eq!(served, [h2; 4], "one every 250 ms: h1 is first in turn but its first chunk has not left");
    assert_eq!(
        sw.hosts[s].m.sessions[&h1].unsent.bytes(),
        CHUNK as u64,
        "h1 got only the chunk that overdrew the bucket"
    );
}

/// An idle time no test reaches.
const LONG: Duration = Duration::from_secs(1 << 20);

/// A leecher completes from a seeder at t0 and then seeds towards `goal`.
fn seeding(goal: Goal) -> (Harness, usize, TestFile, Instant) {
    let (t0, f, mut sw) = start(4);
    sw.peer(t0, &f, &f.all(), |_| {});
    let d = sw.add_host(t0, |_| {});
    sw.add_file(d, t0, &f, &[], goal);
    sw.run(t0);
    assert!(sw.holds_file(d, &f));
    assert_eq!(sw.events(d)[0], "Complete");
    (sw, d, f, t0)
}

/// After `seeding`, a downloader asks the seed for chunks 0..3 at 1 s; the last is left to ask.
fn upload_all_but_the_last(sw: &mut Harness, d: usize, f: &TestFile, t0: Instant) -> ConnId {
    let h = sw.accept(t0 + secs(1), d, hand_addr(1));
    sw.greet(t0 + secs(1), d, h, f, &[], None);
    for index in 0..3 {
        sw.inject(t0 + secs(1), d, h, Message::Request { index, sole: false, more: false });
    }
    assert_eq!(of(&sw.said_on(d, h), Seen::Chunk), [0, 1, 2]);
    h
}

#[test]
fn a_ratio_goal_keeps_seeding_until_one_file_size_is_uploaded() {
    let (mut sw, d, f, t0) = seeding(Goal::Until { idle: LONG, ratio: Some(1.0), time: None });
    let h = upload_all_but_the_last(&mut sw, d, &f, t0);
    assert!(!sw.events(d).contains(&"Finished"), "short of one file size");
    assert!(!sw.stopped(d, &f));
    sw.inject(t0 + secs(2), d, h, Message::Request { index: 3, sole: false, more: false });
    assert_eq!(of(&sw.said_on(d, h), Seen::Chunk), [0, 1, 2, 3]);
    // At the latest at the core's next deadline (the ignored test below wants it at once).
    let at = sw.hosts[d].m.next_deadline().unwrap();
    sw.run(at);
    assert!(sw.events(d).contains(&"Finished"), "one file size uploaded");
    assert!(sw.stopped(d, &f), "and the tracker is told");
    assert_eq!(sw.hosts[d].m.files().count(), 0);
    assert_eq!(sw.hosts[d].m.uploaded(), f.meta.size());
}

#[test]
fn a_met_ratio_goal_finishes_with_the_upload_that_meets_it() {
    let (mut sw, d, f, t0) = seeding(Goal::Until { idle: LONG, ratio: Some(1.0), time: None });
    let h = upload_all_but_the_last(&mut sw, d, &f, t0);
    let at = t0 + secs(1) + ASK_IDLE / 2;
    assert!(sw.hosts[d].m.next_deadline().unwrap() > at, "no timer of its own fires then");
    sw.inject(at, d, h, Message::Request { index: 3, sole: false, more: false });
    assert_eq!(of(&sw.said_on(d, h), Seen::Chunk), [0, 1, 2, 3]);
    assert!(sw.events(d).contains(&"Finished"), "the upload that meets the goal ends seeding");
}

#[test]
fn a_zero_ratio_finishes_at_completion() {
    let (sw, d, _, _) = seeding(Goal::AT_ONCE);
    assert_eq!(sw.events(d), ["Complete", "Finished"]);
    assert_eq!(sw.hosts[d].m.files().count(), 0);
}

#[test]
fn completion_and_leaving_are_announced_at_once_without_a_false_reconnect() {
    let (mut sw, d, _, t0) = seeding(Goal::AT_ONCE);
    let sent = |sw: &Harness| sw.announces.iter().filter(|(n, _)| *n == d).map(|(_, a)| a.event).collect::<Vec<_>>();
    assert_eq!(sent(&sw), [AnnounceEvent::Started, AnnounceEvent::Completed, AnnounceEvent::Stopped]);
    sw.run(t0 + secs(2));
    assert_eq!(sw.events(d), ["Complete", "Finished"], "no Reconnected: the tracker did not restart");
    assert_eq!(sent(&sw).len(), 3);
}

#[test]
fn a_seed_time_finishes_at_that_time_without_uploads() {
    let (mut sw, d, f, t0) = seeding(Goal::Until { idle: LONG, ratio: Some(100.0), time: Some(secs(30)) });
    sw.run(t0 + secs(30) - ms(1));
    assert!(!sw.events(d).contains(&"Finished"), "one tick before");
    assert!(!sw.stopped(d, &f));
    sw.run(t0 + secs(30));
    assert!(sw.events(d).contains(&"Finished"));
    assert!(sw.stopped(d, &f));
}

#[test]
fn an_idle_goal_leaves_once_nobody_has_asked_for_anything_that_long() {
    let idle = secs(20);
    let (mut sw, d, f, t0) = seeding(Goal::Until { idle, ratio: None, time: None });
    let h = sw.accept(t0 + secs(10), d, hand_addr(1));
    sw.greet(t0 + secs(10), d, h, &f, &[], None);
    sw.inject(t0 + secs(10), d, h, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(of(&sw.said_on(d, h), Seen::Chunk), [0]);
    sw.run(t0 + secs(25));
    assert!(!sw.stopped(d, &f), "asked at 10 s: 20 s of idle run from there");
    assert_eq!(sw.hosts[d].m.next_deadline(), Some(t0 + secs(30)));
    sw.run(t0 + secs(30) - ms(1));
    assert!(!sw.events(d).contains(&"Finished"), "one tick before");
    sw.run(t0 + secs(30));
    assert!(sw.events(d).contains(&"Finished"), "nobody asked for 20 s");
    assert!(sw.stopped(d, &f));
}

#[test]
fn a_zero_idle_or_time_finishes_at_completion() {
    for goal in [
        Goal::Until { idle: Duration::ZERO, ratio: None, time: None },
        Goal::Until { idle: LONG, ratio: None, time: Some(Duration::ZERO) },
    ] {
        let (sw, d, _, _) = seeding(goal);
        assert_eq!(sw.events(d), ["Complete", "Finished"], "{goal:?}");
    }
}

#[test]
fn a_bad_chunk_bans_its_sender_and_is_fetched_from_another_peer() {
    let (t0, f, mut sw) = start(4);
    let liar = hand_addr(9);
    let (s, d) = (sw.peer(t0, &f, &f.all(), |_| {}), sw.peer(t0, &f, &[], |_| {}));
    sw.listeners.push(liar);
    sw.tracker_says.insert(d, vec![liar, addr(s)]);
    sw.hosts[s].hold = true;
    sw.run(t0);
    let cl = sw.dialled(d, liar);
    sw.greet(t0, d, cl, &f, &f.all(), Some(State::Available));
    let asked = of(&sw.said_on(d, cl), Seen::Request);
    assert!(!asked.is_empty());
    let bad: Vec<u8> = f.chunk(asked[0]).iter().map(|b| b ^ 1).collect();
    sw.inject(t0, d, cl, Message::Chunk { index: asked[0], data: &bad });
    assert!(sw.closed.contains(&(d, cl)), "the liar is dropped");
    let t = &sw.hosts[d].m.torrents[&f.id()];
    assert!(t.is_banned(liar));
    assert_eq!(t.counters.bad_chunks, 1);
    assert!(!t.held().get(asked[0]));
    // It dials in again from its address: refused at once, whatever port it would name.
    let again = sw.accept(t0 + secs(1), d, SocketAddr::new(liar.ip(), 50000));
    assert!(sw.closed.contains(&(d, again)));
    sw.hosts[s].hold = false;
    sw.run(t0 + secs(1));
    assert!(of(&sw.said(s, d), Seen::Chunk).contains(&asked[0]));
    assert!(sw.holds_file(d, &f));
    assert_eq!(sw.dials.iter().filter(|d| d.to == liar).count(), 1, "never dialled again");
}

/// An inbound poisoner that names no port (Hello port 0) is still refused:
/// by the address it calls from, for longer at each offence.
#[test]
fn an_inbound_poisoner_is_refused_by_its_address_for_longer_each_time() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |c| c.timeout = secs(3600));
    sw.tracker_says.insert(d, Vec::new());
    sw.run(t0);
    let from = |port| SocketAddr::new(hand_addr(1).ip(), port);
    let mut refused_for = Vec::new();
    let mut now = t0;
    for round in 0..2u16 {
        let c = sw.accept(now, d, from(40000 + round));
        assert!(!sw.closed.contains(&(d, c)), "round {round}: taken");
        sw.greet(now, d, c, &f, &f.all(), Some(State::Available));
        let index = of(&sw.said_on(d, c), Seen::Request)[0];
        let bad: Vec<u8> = f.chunk(index).iter().map(|b| b ^ 1).collect();
        sw.inject(now, d, c, Message::Chunk { index, data: &bad });
        assert!(sw.closed.contains(&(d, c)), "round {round}: dropped");
        let banned = now;
        loop {
            let c = sw.accept(now, d, from(50000));
            if !sw.closed.contains(&(d, c)) {
                sw.close(now, d, c);
                break;
            }
            now += secs(1);
        }
        refused_for.push((now - banned).as_secs());
    }
    assert_eq!(refused_for, [32, 600], "refused by its address, the second time for the longest ban");
    assert_eq!(sw.hosts[d].m.torrents[&f.id()].counters.bad_chunks, 2);
}

#[test]
fn a_peer_that_rejects_a_chunk_it_claimed_is_refused_by_its_address() {
    let (t0, f, mut sw, d) = lone_downloader(4);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    let index = of(&sw.said_on(d, c), Seen::Request)[0];
    sw.inject(t0, d, c, Message::Reject { index, reason: RejectReason::NotHeld });
    assert!(sw.closed.contains(&(d, c)));
    let again = sw.accept(t0 + secs(8) - ms(1), d, hand_addr(1));
    assert!(sw.closed.contains(&(d, again)), "refused one tick before its 8 s");
    let later = sw.accept(t0 + secs(8), d, hand_addr(1));
    assert!(!sw.closed.contains(&(d, later)), "taken again at 8 s");
}

#[test]
fn a_stalled_peer_is_dropped_and_its_chunks_go_to_another() {
    let (t0, f, mut sw) = start(4);
    let staller = hand_addr(1);
    let (d, s) = (sw.peer(t0, &f, &[], |c| c.max_peers = 1), sw.peer(t0, &f, &f.all(), |_| {}));
    sw.listeners.push(staller);
    sw.tracker_says.insert(d, vec![staller]); // one peer at a time: the staller first
    sw.run(t0);
    let c = sw.dialled(d, staller);
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    sw.tracker_says.insert(d, vec![staller, addr(s)]);
    let owed = of(&sw.said_on(d, c), Seen::Request);
    assert!(!owed.is_empty());
    assert!(sw.said(d, s).is_empty());
    sw.run(t0 + secs(15) - ms(1));
    assert!(!sw.closed.contains(&(d, c)), "one tick before STALL");
    sw.run(t0 + secs(15));
    assert!(sw.closed.contains(&(d, c)), "nothing for STALL: dropped");
    for n in 16..=30 {
        sw.run(t0 + secs(n));
    }
    let to_s = of(&sw.said(d, s), Seen::Request);
    assert!(owed.iter().all(|i| to_s.contains(i)), "its chunks went to the other peer");
    assert!(sw.holds_file(d, &f));
}

/// A downloader with nothing and one caller holding every chunk of a file of
/// two 4 MiB chunks, greeted: both are asked of it at once.
fn big_chunks_from_one_peer() -> (Instant, TestFile, Harness, usize, ConnId) {
    let (t0, mut sw) = (Instant::now(), Harness::default());
    let f = Content::with_bytes("big.bin", 8 << 20, 4 << 20, 2).unwrap();
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, Vec::new());
    sw.run(t0);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    assert_eq!(of(&sw.said_on(d, c), Seen::Request), [0, 1]);
    (t0, f, sw, d, c)
}

/// A 4 MiB chunk at 64 KiB/s (a slow uplink split among slots) takes 64 s,
/// longer than STALL and the download's timeout (60 s here): its bytes as
/// they arrive keep its sender from being dropped as stalled, or judged
/// behind, and the download from being given up; the chunk counts (told
/// only of whole frames, the core dropped it at 15 s and the swarm starved).
#[test]
fn an_honest_slow_sender_of_a_chunk_longer_than_stall_is_kept() {
    let (t0, f, mut sw, d, c) = big_chunks_from_one_peer();
    for tick in 1..=640 {
        let now = t0 + ms(100 * tick);
        sw.hosts[d].m.handle_receiving(now, c, 64 * 1024 / 10);
        sw.run(now);
        assert!(sw.is_open(d, c), "dropped at {tick} x 100 ms");
        assert!(!sw.hosts[d].m.sessions[&c].behind, "behind at {tick} x 100 ms");
    }
    let late = t0 + secs(64);
    sw.inject(late, d, c, Message::Chunk { index: 0, data: &f.chunk(0) });
    assert!(sw.is_open(d, c));
    assert_eq!(sw.hosts[d].m.sessions[&c].downloaded, 4 << 20, "the chunk counts");
}

/// A peer that claims chunks and sends one a byte a second is dropped as a
/// staller is, just after STALL, and its address is refused: its bytes
/// move its stall clock 1/STALL_RATE s each.
#[test]
fn a_trickler_is_dropped_as_a_staller() {
    let (t0, _f, mut sw, d, c) = big_chunks_from_one_peer();
    for second in 1..15 {
        let now = t0 + secs(second);
        sw.hosts[d].m.handle_receiving(now, c, 1);
        sw.run(now);
    }
    sw.run(t0 + STALL - ms(1));
    assert!(sw.is_open(d, c), "one tick before STALL");
    sw.run(t0 + STALL + ms(1));
    assert!(sw.hosts[d].m.sessions[&c].behind, "behind (STALL caps the overdue time)");
    let at = t0 + STALL + ms(10);
    sw.run(at);
    assert!(!sw.is_open(d, c), "14 bytes in STALL: dropped");
    let again = sw.accept(at + secs(1), d, hand_addr(1));
    assert!(sw.closed.contains(&(d, again)), "its address is refused");
}

/// Our requests to a peer wait behind our chunk to it on the one stream:
/// while that chunk's bytes leave at STALL_RATE or more, the peer has not
/// seen them and is not dropped; once they stop, it stalls as any other.
/// Our bytes leaving count only while a request is behind them.
#[test]
fn requests_behind_our_own_chunk_do_not_stall_while_it_leaves() {
    let (t0, _f, mut sw, d, c) = big_chunks_from_one_peer();
    sw.hosts[d].m.handle_written(t0 + ms(50), c, 4 << 20);
    sw.run(t0 + STALL);
    assert!(!sw.is_open(d, c), "bytes that left before the Requests did not hold them");
    let (t0, _f, mut sw, d, c) = big_chunks_from_one_peer();
    // Our 4 MiB chunk to it was queued ahead of our Requests.
    let s = sw.hosts[d].m.sessions.get_mut(&c).unwrap();
    s.ahead_of_request = 4 << 20;
    for tick in 1..=200 {
        let now = t0 + ms(100 * tick);
        sw.hosts[d].m.handle_written(now, c, tick * 64 * 1024 / 10); // 64 KiB/s in all
        sw.run(now);
    }
    assert!(sw.is_open(d, c), "20 s with our bytes leaving");
    sw.run(t0 + secs(20) + STALL - ms(1));
    assert!(sw.is_open(d, c), "one tick before STALL after the last");
    sw.run(t0 + secs(20) + STALL);
    assert!(!sw.is_open(d, c), "dropped STALL after our bytes stopped");
}

/// A trickler of small chunks is behind as one that sends nothing is, just
/// after MIN_OVERDUE: what it owes is asked of others.
#[test]
fn a_trickler_is_behind_after_min_overdue() {
    let (t0, f, mut sw, d) = lone_downloader(8);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    sw.hosts[d].m.handle_receiving(t0 + secs(1), c, 1);
    sw.run(t0 + MIN_OVERDUE - ms(1));
    assert!(!sw.hosts[d].m.sessions[&c].behind, "one tick before MIN_OVERDUE");
    sw.run(t0 + MIN_OVERDUE + ms(1));
    assert!(sw.hosts[d].m.sessions[&c].behind, "a byte a second is nothing");
}

/// A peer that keeps up STALL_RATE and no more is not dropped; one just
/// under it is, once it has fallen STALL behind.
#[test]
fn the_stall_rule_counts_a_rate_not_any_byte() {
    for (per_sec, dropped) in [(STALL_RATE as u64, false), (STALL_RATE as u64 / 2, true)] {
        let (t0, _f, mut sw, d, c) = big_chunks_from_one_peer();
        for second in 1..=40 {
            let now = t0 + secs(second);
            sw.hosts[d].m.handle_receiving(now, c, per_sec);
            sw.run(now);
        }
        // Half the rate falls behind half a second a second: STALL behind at 30 s.
        assert_eq!(!sw.is_open(d, c), dropped, "{per_sec} B/s for 40 s");
    }
}

/// A peer that claims every chunk and sends none is behind after
/// MIN_OVERDUE (it has shown no rate): what it owes is asked of another
/// holder at once, though the end game is far off, and it is asked for
/// nothing more; it is not dropped for it, and its late answer counts and
/// makes it a source again.
#[test]
fn overdue_requests_are_asked_of_another_holder_and_the_slow_peer_stays() {
    let (t0, f, mut sw, d) = lone_downloader(8);
    let slow = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, slow, &f, &f.all(), Some(State::Available));
    let owed = of(&sw.said_on(d, slow), Seen::Request);
    assert_eq!(owed.len(), 2, "a pipeline of two");
    // Another peer holds exactly those two: rarer chunks elsewhere keep the end game off.
    let other = sw.accept(t0, d, hand_addr(2));
    sw.greet(t0, d, other, &f, &owed, Some(State::Available));
    sw.run(t0 + MIN_OVERDUE - ms(1));
    assert_eq!(of(&sw.said_on(d, other), Seen::Request), [], "one tick before MIN_OVERDUE");
    sw.run(t0 + MIN_OVERDUE);
    assert_eq!(sorted(of(&sw.said_on(d, other), Seen::Request)), sorted(owed.clone()), "asked of the other holder");
    assert_eq!(of(&sw.said_on(d, slow), Seen::Request), owed, "the slow peer is asked for nothing more");
    // Its late answer counts: the other copy is cancelled, and it is asked again.
    let late = t0 + secs(3);
    sw.inject(late, d, slow, Message::Chunk { index: owed[0], data: &f.chunk(owed[0]) });
    assert_eq!(of(&sw.said_on(d, other), Seen::Cancel), [owed[0]]);
    assert!(of(&sw.said_on(d, slow), Seen::Request).len() > 2, "a source again once a chunk came");
    sw.run(late + STALL - ms(1));
    assert!(!sw.closed.contains(&(d, slow)), "not dropped before STALL without a chunk");
}

/// A downloader of 40 chunks whose one peer, holding the first 24, answers
/// each request 100 ms after it was sent until it has nothing more we lack:
/// the file's median answer time is 100 ms. Returns when it ended.
fn answers_of_100ms(t0: Instant, f: &TestFile, sw: &mut Harness, d: usize) -> Instant {
    let p = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, p, f, &(0..24).collect::<Vec<_>>(), Some(State::Available));
    let (mut now, mut answered) = (t0, 0);
    loop {
        let asked = of(&sw.said_on(d, p), Seen::Request);
        if asked.len() == answered {
            break;
        }
        now += ms(100);
        for &index in &asked[answered..] {
            sw.inject(now, d, p, Message::Chunk { index, data: &f.chunk(index) });
        }
        answered = asked.len();
    }
    assert_eq!(sw.hosts[d].m.torrents[&f.id()].answers.median(), Some(ms(100)));
    now
}

/// A peer that has delivered nothing and owes chunks is closed after
/// UNPROVEN_ANSWERS times the file's median answer time (a staller that
/// claims every chunk), not after MIN_OVERDUE; what it owed is asked of
/// another holder at once, and its address is backed off, not banned.
#[test]
fn a_peer_that_has_delivered_nothing_is_closed_after_four_times_the_swarms_answer_time() {
    let (t0, f, mut sw, d) = lone_downloader(40);
    let t = answers_of_100ms(t0, &f, &mut sw, d);
    let staller = sw.accept(t, d, hand_addr(2));
    sw.greet(t, d, staller, &f, &f.all(), Some(State::Available));
    let owed = of(&sw.said_on(d, staller), Seen::Request);
    assert!(!owed.is_empty());
    // Another holds exactly those: not asked while the staller's requests count.
    let other = sw.accept(t + ms(100), d, hand_addr(3));
    sw.greet(t + ms(100), d, other, &f, &owed, Some(State::Available));
    assert_eq!(of(&sw.said_on(d, other), Seen::Request), []);
    let patience = ms(100) * UNPROVEN_ANSWERS;
    sw.run(t + patience - ms(1));
    assert!(sw.is_open(d, staller), "one tick before four answer times");
    sw.run(t + patience);
    assert!(!sw.is_open(d, staller), "closed after four answer times");
    assert_eq!(sorted(of(&sw.said_on(d, other), Seen::Request)), sorted(owed), "asked of the other holder");
    let again = sw.accept(t + secs(1), d, hand_addr(2));
    assert!(!sw.closed.contains(&(d, again)), "backed off for our dials, not refused");
}

/// A newcomer whose first chunk is slow but whose bytes arrive (at a quarter
/// of FLOOR_RATE or more) is not closed, though the chunk takes eight answer times; once
/// the chunk is in, the rate it shows rules its requests, not the swarm's
/// answer times.
#[test]
fn a_slow_newcomer_sending_its_first_chunk_is_not_closed() {
    // Chunks of 64 KiB, so that one can take four answer times at that rate.
    let (t0, mut sw) = (Instant::now(), Harness::default());
    let f = Content::with_bytes("f.bin", 40 << 16, 1 << 16, 40).unwrap();
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, Vec::new());
    sw.run(t0);
    let t = answers_of_100ms(t0, &f, &mut sw, d);
    let slow = sw.accept(t, d, hand_addr(2));
    sw.greet(t, d, slow, &f, &f.all(), Some(State::Available));
    let first = of(&sw.said_on(d, slow), Seen::Request)[0];
    // 16 KiB every 200 ms, 80 KiB/s: its chunk takes 800 ms, eight answer times.
    for tick in 1..4 {
        let now = t + ms(200 * tick);
        sw.hosts[d].m.handle_receiving(now, slow, 16 << 10);
        sw.run(now);
    }
    let late = t + ms(800);
    sw.run(late);
    assert!(sw.is_open(d, slow), "still sending its first chunk");
    sw.inject(late, d, slow, Message::Chunk { index: first, data: &f.chunk(first) });
    sw.run(late + MIN_OVERDUE - ms(1));
    assert!(sw.is_open(d, slow), "proven: MIN_OVERDUE at least, not four answer times");
    assert!(!sw.hosts[d].m.sessions[&slow].behind);
}

/// A peer behind that answers what it owed with NoSlot (it took our slot
/// away) owes nothing more: once it serves again it is asked again (found by
/// the swarm_core fuzz target: the only seeder was never asked again).
#[test]
fn a_peer_behind_that_owes_nothing_more_is_asked_again() {
    let (t0, f, mut sw, d) = lone_downloader(8);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    let owed = of(&sw.said_on(d, c), Seen::Request);
    sw.run(t0 + MIN_OVERDUE);
    assert!(sw.hosts[d].m.sessions[&c].behind);
    let later = t0 + secs(3);
    sw.inject(later, d, c, Message::State(State::Unavailable));
    for &index in &owed {
        sw.inject(later, d, c, Message::Reject { index, reason: RejectReason::NoSlot });
    }
    sw.inject(later, d, c, Message::State(State::Connected));
    assert!(of(&sw.said_on(d, c), Seen::Request).len() > owed.len(), "asked again");
}

/// A peer that has shown a rate is behind only after OVERDUE_CHUNKS chunk
/// times at that rate without a chunk, not after MIN_OVERDUE.
#[test]
fn a_peer_is_overdue_against_the_rate_it_has_shown() {
    let (t0, f, mut sw, d) = lone_downloader(16);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    for k in 1..=3 {
        let index = of(&sw.said_on(d, c), Seen::Request)[k - 1];
        sw.inject(t0 + secs(k as u64), d, c, Message::Chunk { index, data: &f.chunk(index) });
    }
    // One chunk a second: four chunk times are 4 s after the last one.
    let last = t0 + secs(3);
    sw.run(last + secs(4) - ms(1));
    assert!(!sw.hosts[d].m.sessions[&c].behind, "one tick before four chunk times");
    sw.run(last + secs(4));
    assert!(sw.hosts[d].m.sessions[&c].behind, "four chunk times without a chunk");
    assert!(sw.is_open(d, c));
}

/// A peer that takes our slot away without answering what we asked (an
/// honest one rejects it with NoSlot), then gives it back, stalls like any
/// other: saying it serves does not restart the stall window.
#[test]
fn requests_left_unanswered_after_unavailable_stall() {
    let (t0, f, mut sw, d) = lone_downloader(4);
    let c = sw.accept(t0, d, hand_addr(1));
    sw.greet(t0, d, c, &f, &f.all(), Some(State::Available));
    assert!(!of(&sw.said_on(d, c), Seen::Request).is_empty());
    sw.inject(t0 + secs(1), d, c, Message::State(State::Unavailable));
    sw.inject(t0 + secs(10), d, c, Message::State(State::Connected)); // "serving" again, still sending nothing
    sw.run(t0 + secs(15) - ms(1));
    assert!(!sw.closed.contains(&(d, c)), "one tick before STALL");
    sw.run(t0 + secs(15));
    assert!(sw.closed.contains(&(d, c)), "its requests never answered: dropped");
}

#[test]
fn a_staller_is_redialled_later_each_time_whatever_it_delivered_before() {
    let (t0, f, mut sw) = start(8);
    let staller = hand_addr(1);
    let d = sw.peer(t0, &f, &[], |c| c.timeout = secs(600));
    sw.listeners.push(staller);
    sw.tracker_says.insert(d, vec![staller]);
    sw.run(t0);
    let mut now = t0;
    let mut drops = Vec::new();
    for round in 0..3 {
        let c = sw.dials.iter().rev().find(|x| x.to == staller).and_then(|x| x.conn).expect("dialled");
        sw.greet(now, d, c, &f, &f.all(), Some(State::Available));
        if round == 0 {
            let index = of(&sw.said_on(d, c), Seen::Request)[0];
            sw.inject(now, d, c, Message::Chunk { index, data: &f.chunk(index) });
            // one chunk, then nothing
        }
        while !sw.closed.contains(&(d, c)) {
            now += secs(1);
            sw.run(now);
        }
        drops.push(now);
        let dials = sw.dials.len();
        while sw.dials.len() == dials {
            now += secs(1);
            sw.run(now);
        }
    }
    let redials: Vec<u64> = sw
        .dials
        .iter()
        .filter(|x| x.to == staller)
        .skip(1)
        .zip(&drops)
        .map(|(x, dropped)| (x.at - *dropped).as_secs())
        .collect();
    assert_eq!(redials, [2, 4, 8], "each stall doubles the wait, the first included though it delivered a chunk");
}

#[test]
fn the_download_fails_when_no_chunk_is_verified_for_the_timeout() {
    let (t0, f, mut sw) = start(4);
    let (idle, fed) = (sw.peer(t0, &f, &[], |c| c.timeout = secs(30)), sw.peer(t0, &f, &[], |c| c.timeout = secs(30)));
    sw.tracker_says.extend([(idle, vec![]), (fed, vec![])]);
    let h = sw.accept(t0 + secs(19), fed, hand_addr(1));
    sw.greet(t0 + secs(19), fed, h, &f, &[0], Some(State::Available));
    sw.inject(t0 + secs(20), fed, h, Message::Chunk { index: 0, data: &f.chunk(0) });
    sw.run(t0 + secs(30) - ms(1));
    assert_eq!(sw.events(idle), [""; 0], "one tick before");
    sw.run(t0 + secs(30));
    assert_eq!(sw.events(idle), ["Failed"]);
    assert!(sw.stopped(idle, &f));
    assert_eq!(sw.events(fed), [""; 0], "a verified chunk at 20 s restarts the count");
    sw.run(t0 + secs(50) - ms(1));
    assert_eq!(sw.events(fed), [""; 0]);
    sw.run(t0 + secs(50));
    assert_eq!(sw.events(fed), ["Failed"]);
    assert_eq!(sw.hosts[fed].m.files().count(), 0);
}

#[test]
fn an_unreachable_peer_is_redialled_less_and_less_often() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, vec![hand_addr(1)]); // nobody listens there
    for n in 0..=40 {
        sw.run(t0 + secs(n));
    }
    let at: Vec<u64> = sw.dials.iter().map(|d| (d.at - t0).as_secs()).collect();
    assert_eq!(at, [0, 2, 6, 14, 30], "the delay doubles up to MAX_FAIL_RETRY");
}

#[test]
fn a_dial_that_never_connects_is_abandoned_and_retried_later() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.blackholes.push(hand_addr(1));
    sw.tracker_says.insert(d, vec![hand_addr(1)]);
    sw.run(t0);
    let conn = sw.dialled(d, hand_addr(1));
    sw.run(t0 + DIAL_TIMEOUT - ms(1));
    assert!(sw.closed.is_empty());
    sw.run(t0 + DIAL_TIMEOUT);
    assert_eq!(sw.closed, [(d, conn)], "the core closes the dial itself");
    for n in 6..=20 {
        sw.run(t0 + secs(n));
    }
    let at: Vec<u64> = sw.dials.iter().map(|d| (d.at - t0).as_secs()).collect();
    assert_eq!(at, [0, 7, 16], "a timed-out dial is a failure: redialled 2 s, then 4 s after it timed out");
}

#[test]
fn with_every_known_address_failed_the_tracker_is_asked_again_soon() {
    let (t0, f, mut sw) = start(4);
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(d, vec![hand_addr(1)]); // nobody listens there
    for n in 0..=40 {
        sw.run(t0 + secs(n));
    }
    let asked = sw.announces.iter().filter(|a| a.0 == d).count();
    assert!(asked >= 4, "asked {asked} times in 40 s, not once a minute (the interval)");
}

#[test]
fn a_connection_silent_for_the_idle_time_is_closed() {
    let (t0, f, mut sw) = start(4);
    let s = sw.peer(t0, &f, &f.all(), |_| {});
    let conn = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, conn, &f, &f.all(), None); // holds everything too: nothing to trade, nothing said
    assert!(sw.is_open(s, conn) || sw.closed.contains(&(s, conn)));
    let conn = sw.accept(t0, s, hand_addr(2));
    sw.greet(t0, s, conn, &f, &[], None);
    sw.inject(t0 + secs(60), s, conn, Message::State(State::Unavailable));
    sw.run(t0 + secs(179));
    assert!(sw.is_open(s, conn), "a frame 60 s in restarted the idle time");
    sw.run(t0 + secs(180));
    assert!(sw.closed.contains(&(s, conn)), "120 s without a frame");
}

#[test]
fn two_peers_dialling_each_other_keep_the_connection_dialled_by_the_smaller_nonce() {
    let (t0, f, mut sw) = start(4);
    let (a, b) = (sw.peer(t0, &f, &[0, 1], |_| {}), sw.peer(t0, &f, &[2], |_| {})); // chunk 3 is nowhere
    sw.tracker_says.extend([(a, vec![addr(b)]), (b, vec![addr(a)])]);
    sw.run(t0);
    assert_eq!(sw.dials.len(), 2, "both dialled before either Hello arrived");
    let smaller = if sw.hosts[a].m.nonce < sw.hosts[b].m.nonce { a } else { b };
    let kept = sw.dialled(smaller, addr(a + b - smaller));
    assert!(sw.is_open(smaller, kept), "the connection dialled by the smaller nonce");
    assert_eq!(sw.closed.len(), 1);
    assert_eq!((sw.hosts[a].m.peers(), sw.hosts[b].m.peers()), (1, 1));
    for i in [a, b] {
        assert_eq!(sw.hosts[i].m.torrents[&f.id()].held().count(), 3, "they traded over it");
    }
    for n in 1..=20 {
        sw.run(t0 + secs(n));
    }
    assert_eq!(sw.dials.len(), 2, "the loser does not redial a peer it is connected to");
}

/// A third peer replays the nonce a leecher sent it: the seeder keeps the
/// leecher's connection (a duplicate needs the same nonce from the same address).
#[test]
fn a_replayed_nonce_from_another_address_is_not_a_duplicate() {
    let (t0, f, mut sw) = start(4);
    let s = sw.peer(t0, &f, &f.all(), |_| {});
    let d = sw.peer(t0, &f, &[], |_| {});
    sw.hosts[s].hold = true; // nothing is sent, so the leecher stays connected
    sw.run(t0);
    let real = sw.conn(s, d);
    let nonce = sw.hosts[d].m.nonce;
    let replay = sw.accept(t0, s, hand_addr(1));
    sw.inject(t0, s, replay, Message::Hello { id: f.id(), port: 0, nonce });
    assert!(sw.is_open(s, real), "the leecher's connection stays");
    assert!(!sw.closed.contains(&(s, replay)), "the replayer is a peer like any other");
    assert_eq!(sw.hosts[s].m.peers(), 2);
}

#[test]
fn a_connection_to_ourselves_is_closed() {
    let (t0, f, mut sw) = start(4);
    let a = sw.peer(t0, &f, &[], |_| {});
    sw.tracker_says.insert(a, vec![addr(a)]);
    sw.run(t0);
    let out = sw.dialled(a, addr(a));
    assert_eq!(sw.closed.len(), 1);
    assert_ne!(sw.closed[0], (a, out), "the accepting end sees its own nonce and closes");
    assert!(sw.open_ends() == 0);
    assert_eq!(sw.hosts[a].m.peers(), 0);
    assert!(sw.hosts[a].m.sessions.is_empty());
}

#[test]
fn a_seed_sends_each_chunk_once_before_any_twice() {
    let (t0, _, mut sw, s, [h1, h2]) = seed_and_two_callers(3, |_| {});
    sw.inject(t0, s, h1, Message::Request { index: 0, sole: false, more: false });
    sw.inject(t0, s, h2, Message::Request { index: 0, sole: false, more: false });
    let refused =
        |sw: &Harness| sw.said_on(s, h2).into_iter().filter(|m| matches!(m, Seen::Reject(..))).collect::<Vec<_>>();
    assert_eq!(refused(&sw), [Seen::Reject(0, RejectReason::Spread)], "chunk 0 went to h1: h2 gets it there");
    assert!(!sw.said_on(s, h2).contains(&Seen::Have(0)), "no Have while chunks 1 and 2 have gone to nobody");
    sw.inject(t0, s, h2, Message::Request { index: 1, sole: false, more: false });
    sw.inject(t0, s, h1, Message::Request { index: 2, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [1]);
    assert!(sw.said_on(s, h2).contains(&Seen::Have(0)), "every chunk has left once: chunk 0 is offered again");
}

/// Once every chunk has gone out, a seed whose own uplink bounds the swarm
/// sends a chunk again only to an asker with no other holder to use, as one
/// bound by its peers does: no rounds of second copies to whoever asks.
#[test]
fn a_seed_that_sent_every_chunk_sends_one_again_only_to_a_sole_asker() {
    let (t0, _, mut sw, s, [h1, h2]) = seed_and_two_callers(2, |_| {});
    sw.inject(t0, s, h1, Message::Request { index: 0, sole: false, more: false });
    sw.inject(t0, s, h2, Message::Request { index: 1, sole: false, more: false });
    sw.inject(t0, s, h1, Message::Have(0));
    sw.inject(t0, s, h2, Message::Have(1));
    let at = t0 + ms(100); // long before the seed judges what bounds the swarm
    for n in 1..=SPREAD_REFUSALS + 1 {
        sw.inject(at, s, h2, Message::Request { index: 0, sole: false, more: false });
        let spread = sw.said_on(s, h2).iter().filter(|m| **m == Seen::Reject(0, RejectReason::Spread)).count();
        assert_eq!(spread, n, "h1 holds it: refused however often h2 asks");
    }
    sw.inject(at, s, h2, Message::Request { index: 0, sole: true, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [1, 0], "h2 has nobody else");
}

/// A seed sees only the chunks of its own peers. An asker that has other
/// holders and other chunks to fetch meanwhile (`more`) is sent to them
/// whatever the seed knows; one that says nothing is refused only for a
/// holder the seed knows (Poisson arrivals, 1000 x 64 MiB in lmk-sim: 3.26
/// copies -> 1.42).
#[test]
fn a_seed_sends_an_asker_with_more_to_fetch_to_holders_it_does_not_know() {
    let (t0, _, mut sw, s, [h1, h2]) = seed_and_two_callers(2, |_| {});
    sw.inject(t0, s, h1, Message::Request { index: 0, sole: false, more: true });
    sw.inject(t0, s, h1, Message::Have(0));
    sw.close(t0, s, h1);
    sw.inject(t0, s, h2, Message::Request { index: 1, sole: false, more: true });
    sw.inject(t0, s, h2, Message::Have(1));
    let at = t0 + ms(500); // every chunk has gone out
    sw.inject(at, s, h2, Message::Request { index: 0, sole: false, more: true });
    assert!(sw.said_on(s, h2).contains(&Seen::Reject(0, RejectReason::Spread)), "it has a holder and more to fetch");
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [1]);
    sw.inject(at + ms(100), s, h2, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [1, 0], "no more to fetch, and no holder the seed knows of");
}

/// The peer a seed points to may not give the chunk (a poisoner claims
/// every chunk): refused twice and asked again, the seed sends it. (Within
/// `JUDGE_AFTER` of its first request a seed takes its own uplink for the bound.)
#[test]
fn a_chunk_refused_with_spread_twice_and_asked_again_is_sent() {
    let (t0, _, mut sw, s, [liar, h]) = seed_and_two_callers(3, |_| {});
    sw.inject(t0, s, liar, Message::Request { index: 0, sole: false, more: false });
    sw.inject(t0, s, h, Message::Request { index: 0, sole: false, more: false });
    assert!(sw.said_on(s, h).contains(&Seen::Reject(0, RejectReason::Spread)), "refused: the liar has it");
    sw.inject(t0 + ms(100), s, h, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h), Seen::Chunk), [], "refused twice");
    sw.inject(t0 + ms(200), s, h, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h), Seen::Chunk), [0], "asked a third time: sent");
}

/// The refusals count until the chunk is sent: neither a NoSlot between them
/// (the asker had lost its slot) nor the chunk offered again with a Have (a
/// peer left) starts the count over (a seed once refused one chunk to every
/// honest peer for 10 s, alternating Spread and NoSlot).
#[test]
fn spread_refusals_count_across_a_no_slot_and_an_offer() {
    let (t0, f, mut sw, s, [liar, h]) = seed_and_two_callers(3, |c| c.slots = 2);
    sw.inject(t0, s, liar, Message::Request { index: 0, sole: false, more: false });
    sw.inject(t0, s, h, Message::Request { index: 0, sole: false, more: false });
    assert!(sw.said_on(s, h).contains(&Seen::Reject(0, RejectReason::Spread)), "refused: the liar has it");
    // A peer comes and goes: the refused chunk is offered again.
    let passer = sw.accept(t0, s, hand_addr(3));
    sw.greet(t0, s, passer, &f, &[0], None);
    sw.close(t0, s, passer);
    sw.run(t0);
    assert!(sw.said_on(s, h).contains(&Seen::Have(0)), "offered again");
    sw.inject(t0 + ms(100), s, h, Message::Request { index: 0, sole: false, more: false });
    let spreads =
        |sw: &Harness| sw.said_on(s, h).iter().filter(|m| **m == Seen::Reject(0, RejectReason::Spread)).count();
    assert_eq!(spreads(&sw), 2, "refused a second time");
    // It asks again while the slot is away: NoSlot, which does not use up the count.
    sw.hosts[s].m.sessions.get_mut(&h).unwrap().slot_since = None;
    sw.inject(t0 + ms(200), s, h, Message::Request { index: 0, sole: false, more: false });
    assert!(sw.said_on(s, h).contains(&Seen::Reject(0, RejectReason::NoSlot)));
    sw.hosts[s].m.sessions.get_mut(&h).unwrap().slot_since = Some(t0 + ms(200));
    sw.inject(t0 + ms(300), s, h, Message::Request { index: 0, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h), Seen::Chunk), [0], "refused twice, asked again with a slot: sent");
}

/// A chunk whose holders pass it on to nobody (poisoners, banned by every
/// peer they sent a bad chunk to) is asked of the seed by peer after peer:
/// refused `CHUNK_REFUSALS` times since it last went out, it is sent to the
/// next asker, and refused again after that (the new holder spreads it).
#[test]
fn a_chunk_refused_to_many_askers_since_it_went_out_is_sent() {
    let (t0, f, mut sw) = start(3);
    let s = sw.peer(t0, &f, &f.all(), |c| (c.slots, c.max_peers) = (8, 16));
    sw.run(t0);
    let liar = sw.accept(t0, s, hand_addr(1));
    sw.greet(t0, s, liar, &f, &[], None);
    sw.inject(t0, s, liar, Message::Request { index: 0, sole: false, more: false });
    let mut askers = Vec::new();
    for n in 0..CHUNK_REFUSALS + 2 {
        let at = t0 + ms(n as u64);
        let h = sw.accept(at, s, hand_addr(n as u16 + 2));
        sw.greet(at, s, h, &f, &[], None);
        sw.inject(at, s, h, Message::Request { index: 0, sole: false, more: false });
        let got = of(&sw.said_on(s, h), Seen::Chunk).contains(&0);
        assert_eq!(got, n == CHUNK_REFUSALS, "asker {n}: refused {CHUNK_REFUSALS} times, then sent once");
        askers.push(h);
    }
    assert!(sw.said_on(s, askers[CHUNK_REFUSALS + 1]).contains(&Seen::Reject(0, RejectReason::Spread)));
}

/// While the peers bound the swarm (here they relayed nothing), a seed sends
/// a chunk a second time only to an asker with no other holder to use, and
/// to nobody while its copy to another peer is on its way (no Have yet).
#[test]
fn a_seed_bound_by_its_peers_sends_a_chunk_again_only_to_a_sole_asker() {
    let (t0, _, mut sw, s, [h1, h2]) = seed_and_two_callers(3, |_| {});
    sw.inject(t0, s, h1, Message::Request { index: 0, sole: false, more: false });
    let t1 = t0 + secs(2);
    sw.inject(t1, s, h2, Message::Request { index: 0, sole: false, more: false });
    let spread = |sw: &Harness| of(&sw.said_on(s, h2), |i| Seen::Reject(i, RejectReason::Spread));
    assert_eq!(spread(&sw), [0], "h1 holds it and h2 may use h1");
    sw.inject(t1, s, h2, Message::Request { index: 0, sole: true, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [0], "h2 cannot use h1");
    sw.inject(t1, s, h1, Message::Request { index: 1, sole: false, more: false });
    assert_eq!(of(&sw.said_on(s, h1), Seen::Chunk), [0, 1], "a first copy goes to anyone");
    sw.inject(t1 + ms(299), s, h2, Message::Request { index: 1, sole: true, more: false });
    assert_eq!(spread(&sw), [0, 1], "on its way to h1");
    sw.inject(t1 + IN_FLIGHT, s, h2, Message::Request { index: 1, sole: true, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [0, 1], "h1 has had it for a while");
    sw.inject(t1, s, h1, Message::Request { index: 2, sole: false, more: false });
    sw.inject(t1, s, h1, Message::Have(2));
    sw.inject(t1, s, h2, Message::Request { index: 2, sole: true, more: false });
    assert_eq!(of(&sw.said_on(s, h2), Seen::Chunk), [0, 1, 2], "h1 said it has it");
}

/// A seed judges by the most peers it served at once: one that leaves takes
/// no relayed chunk with it, so the judgement stands. (Over the two left,
/// the 6 relayed chunks would be 3 each, above 0.9 x the 3 sent: the seed
/// would take its own uplink for the bound and refuse h1's *sole* request.)
#[test]
fn a_seed_judges_by_the_most_peers_it_served_when_some_leave() {
    let (t0, f, mut sw, s, [h1, h2]) = seed_and_two_callers(8, |_| {});
    let h3 = sw.accept(t0, s, hand_addr(3));
    sw.greet(t0, s, h3, &f, &[], None);
    for (h, index) in [(h1, 0), (h2, 1), (h3, 2)] {
        sw.inject(t0, s, h, Message::Request { index, sole: false, more: false });
    }
    for index in 3..8 {
        sw.inject(t0, s, h1, Message::Have(index));
    }
    sw.inject(t0, s, h2, Message::Have(0));
    let t1 = t0 + secs(2);
    sw.close(t1, s, h3);
    sw.inject(t1, s, h1, Message::Request { index: 1, sole: true, more: false });
    assert_eq!(of(&sw.said_on(s, h1), Seen::Chunk), [0, 1], "2 relayed each of three: still the peers' bound");
}

/// An asker tells a holder of every chunk (a seed, perhaps, which then sends
/// a chunk it sent before) when it can use no other holder of that chunk:
/// one that holds it and has delivered a verified chunk, serving us now or not.
#[test]
fn a_request_says_sole_while_no_other_open_holder_has_delivered() {
    let (t0, f, mut sw) = start(16);
    let l = sw.peer(t0, &f, &[], |_| {});
    sw.run(t0);
    let asked =
        |sw: &Harness, conn| requests(sw, l, conn).into_iter().map(|(i, sole, _)| (i, sole)).collect::<Vec<_>>();
    let deliver = |sw: &mut Harness, conn, nth: usize| {
        let (index, _) = asked(sw, conn)[nth];
        sw.inject(t0, l, conn, Message::Chunk { index, data: &f.chunk(index) });
    };
    let (a, b) = (sw.accept(t0, l, hand_addr(1)), sw.accept(t0, l, hand_addr(2)));
    sw.greet(t0, l, a, &f, &f.all(), Some(State::Available));
    sw.greet(t0, l, b, &f, &f.all(), Some(State::Available));
    assert!(asked(&sw, a).iter().chain(&asked(&sw, b)).all(|(_, sole)| *sole), "neither has delivered");
    deliver(&mut sw, b, 0);
    let before = asked(&sw, a).len();
    deliver(&mut sw, a, 0);
    let later = asked(&sw, a)[before..].to_vec();
    assert!(!later.is_empty() && later.iter().all(|(_, sole)| !sole), "b delivered: {later:?}");
    sw.inject(t0, l, b, Message::State(State::Unavailable));
    let before = asked(&sw, a).len();
    deliver(&mut sw, a, 1);
    let later = asked(&sw, a)[before..].to_vec();
    assert!(!later.is_empty() && later.iter().all(|(_, sole)| !sole), "b serves us again in its turn: {later:?}");
    sw.close(t0, l, b);
    let before = asked(&sw, a).len();
    deliver(&mut sw, a, 2);
    let later = asked(&sw, a)[before..].to_vec();
    assert!(!later.is_empty() && later.iter().all(|(_, sole)| *sole), "b is gone: {later:?}");
}

/// A leecher of `chunks` that holds nothing, greeted by a seed that gives it a slot.
fn a_leecher_and_its_seed(chunks: usize) -> (Instant, TestFile, Harness, usize, ConnId) {
    let (t0, f, mut sw) = start(chunks);
    let l = sw.peer(t0, &f, &[], |_| {});
    sw.run(t0);
    let seed = sw.accept(t0, l, hand_addr(1));
    sw.greet(t0, l, seed, &f, &f.all(), Some(State::Available));
    (t0, f, sw, l, seed)
}

/// The Requests host `h` sent on `conn`: index, *sole* and *more*.
fn requests(sw: &Harness, h: usize, conn: ConnId) -> Vec<(u32, bool, bool)> {
    let requests = sw.messages_on(h, conn).filter_map(|m| match m {
        Message::Request { index, sole, more } => Some((index, sole, more)),
        _ => None,
    });
    requests.collect()
}

/// An asker tells a seed `more` while another peer that serves it holds a
/// chunk it has asked nobody for: a refusal costs it no time then. Chunks
/// merely left unasked do not count: those a seed refused wait on nobody
/// (the last of 1000 peers asked a seed for its last 8 chunks, each refused
/// every 40 ms for 0.4 s, saying *more*).
#[test]
fn a_request_says_more_while_a_peer_that_serves_us_has_chunks_left_to_ask() {
    let (t0, f, mut sw, l, seed) = a_leecher_and_its_seed(16);
    let first = requests(&sw, l, seed);
    assert!(first.iter().all(|(_, _, more)| !more), "nobody else serves us: {first:?}");
    let p = sw.accept(t0, l, hand_addr(2));
    sw.greet(t0, l, p, &f, &(0..16).collect::<Vec<_>>(), Some(State::Available));
    let (index, _, _) = first[0];
    sw.inject(t0, l, seed, Message::Chunk { index, data: &f.chunk(index) });
    let next = requests(&sw, l, seed)[first.len()..].to_vec();
    assert!(!next.is_empty() && next.iter().all(|(_, _, more)| *more), "p serves us: {next:?}");
    sw.inject(t0, l, p, Message::State(State::Unavailable));
    let before = requests(&sw, l, seed).len();
    let (index, _, _) = first[1];
    sw.inject(t0, l, seed, Message::Chunk { index, data: &f.chunk(index) });
    let last = requests(&sw, l, seed)[before..].to_vec();
    assert!(!last.is_empty() && last.iter().all(|(_, _, more)| !more), "p serves us no more: {last:?}");
}

/// A seed's `Spread` refusal clears its bit for a while (we ask the chunk
/// elsewhere), but it is still a seed: the requests that follow still say
/// *sole* (they said nothing once the seed had refused anything, and it sent
/// no second copy to the slow half of the mixed row: lmk-sim 1.105 x T_p2p
/// against 1.095).
#[test]
fn a_seed_that_refused_a_chunk_is_still_told_when_it_is_the_sole_holder() {
    let (t0, f, mut sw, l, seed) = a_leecher_and_its_seed(16);
    let first = requests(&sw, l, seed);
    assert!(first.len() >= 2 && first.iter().all(|(_, sole, _)| *sole), "no other holder: {first:?}");
    sw.inject(t0, l, seed, Message::Reject { index: first[0].0, reason: RejectReason::Spread });
    sw.inject(t0, l, seed, Message::Chunk { index: first[1].0, data: &f.chunk(first[1].0) });
    let later = requests(&sw, l, seed)[first.len()..].to_vec();
    assert!(!later.is_empty() && later.iter().all(|(_, sole, _)| *sole), "still the sole holder: {later:?}");
}

/// Host `h` (1 slot, held by a peer that asked for one chunk) is called by
/// a peer holding 3 chunks, then by one holding none; the holder asks for
/// nothing more. Returns the two callers once the holder's slot went.
fn two_waiting(sw: &mut Harness, t0: Instant, h: usize, f: &TestFile) -> (ConnId, ConnId) {
    let holder = sw.accept(t0, h, hand_addr(1));
    sw.greet(t0, h, holder, f, &[], None);
    sw.inject(t0, h, holder, Message::Request { index: 0, sole: false, more: false });
    let older = sw.accept(t0 + ms(1), h, hand_addr(2));
    sw.greet(t0 + ms(1), h, older, f, &[1, 2, 3], None);
    let behind = sw.accept(t0 + ms(2), h, hand_addr(3));
    sw.greet(t0 + ms(2), h, behind, f, &[], None);
    sw.run(t0 + ASK_IDLE);
    (older, behind)
}

/// A seed's slots go in turn (the longest waiting first), not to the peer
/// that holds the fewest chunks: the peers behind are those the others shun
/// (poisoners banned wherever they sent a bad chunk), and its view of what
/// a peer holds is stale anyway (Haves reach it only while it serves the peer).
#[test]
fn a_seeds_slots_go_in_turn_not_to_the_peer_holding_fewest() {
    let (t0, f, mut sw) = start(6);
    let s = sw.peer(t0, &f, &f.all(), |c| c.slots = 1);
    sw.run(t0);
    let (older, behind) = two_waiting(&mut sw, t0, s, &f);
    assert_eq!(sw.said_on(s, older).last(), Some(&Seen::State(State::Connected)), "the longest waiting");
    assert_eq!(sw.said_on(s, behind).last(), Some(&Seen::State(State::Unavailable)));
    // A leecher that completed still serves the furthest behind first.
    let (t0, f, mut sw) = start(6);
    let l = sw.peer(t0, &f, &[], |c| c.slots = 1);
    sw.run(t0);
    let seed = sw.accept(t0, l, hand_addr(9));
    sw.greet(t0, l, seed, &f, &f.all(), Some(State::Available));
    sw.serve(t0, l, seed, &f);
    assert!(sw.holds_file(l, &f));
    let (_, behind) = two_waiting(&mut sw, t0, l, &f);
    assert_eq!(sw.said_on(l, behind).last(), Some(&Seen::State(State::Connected)), "the furthest behind");
}

/// A downloader greeted by a holder of every chunk (a seed, say): the
/// harness, the downloader, the seed's connection and the first chunk asked.
fn asking_a_seed() -> (Instant, Harness, usize, ConnId, u32) {
    let (t0, _, sw, d, h) = a_leecher_and_its_seed(2);
    let first = of(&sw.said_on(d, h), Seen::Request)[0];
    (t0, sw, d, h, first)
}

/// How often `d` asked for chunk `index` on `h`.
fn times_asked(sw: &Harness, d: usize, h: ConnId, index: u32) -> usize {
    of(&sw.said_on(d, h), Seen::Request).iter().filter(|&&i| i == index).count()
}

#[test]
fn a_chunk_refused_with_spread_is_asked_again_later() {
    let (t0, mut sw, d, h, first) = asking_a_seed();
    sw.inject(t0, d, h, Message::Reject { index: first, reason: RejectReason::Spread });
    sw.run(t0 + RESPREAD - ms(1));
    assert_eq!(times_asked(&sw, d, h, first), 1, "not before RESPREAD: it is to be fetched from the peer that got it");
    sw.run(t0 + RESPREAD);
    assert_eq!(times_asked(&sw, d, h, first), 2, "asked again, should the seed's Have be lost");
}

/// A seed answers in order, so its Spread refusal can arrive after the Have
/// with which it offered the chunk again (every chunk went out as often, or
/// the peer it pointed to left). That refusal is stale: the chunk is asked
/// again at once, not after RESPREAD (with the other downloaders gone, the
/// last one waited for it with the seed idle).
#[test]
fn a_spread_refusal_that_comes_after_the_chunk_was_offered_again_is_stale() {
    let (t0, mut sw, d, h, first) = asking_a_seed();
    sw.inject(t0, d, h, Message::Have(first));
    sw.inject(t0, d, h, Message::Reject { index: first, reason: RejectReason::Spread });
    sw.run(t0);
    assert_eq!(times_asked(&sw, d, h, first), 2, "asked again at once");
}

/// A slot taken and given back at once: the uploader's State Connected goes
/// out at once, but its NoSlot refusals of the requests it got in between
/// follow the answers queued before them, so they arrive after it. They are
/// stale: the downloader asks again, not wait for a State that will not come
/// (on loopback the last leecher waited 8 s, until the seed took back the
/// slot it did not use).
#[test]
fn a_no_slot_refusal_that_comes_after_a_slot_was_given_is_stale() {
    let (t0, mut sw, d, h, _) = asking_a_seed();
    let asked = of(&sw.said_on(d, h), Seen::Request);
    sw.inject(t0, d, h, Message::State(State::Unavailable));
    sw.inject(t0, d, h, Message::State(State::Connected));
    for &index in &asked {
        sw.inject(t0, d, h, Message::Reject { index, reason: RejectReason::NoSlot });
    }
    sw.run(t0);
    let again = of(&sw.said_on(d, h), Seen::Request);
    assert!(again.len() > asked.len(), "asked again at once");
    // A refusal of a request made under the slot it has now does take it away.
    for &index in again.get(asked.len()..).unwrap_or_default() {
        sw.inject(t0, d, h, Message::Reject { index, reason: RejectReason::NoSlot });
    }
    sw.run(t0 + secs(1));
    assert_eq!(of(&sw.said_on(d, h), Seen::Request).len(), again.len(), "not asked again: it has no slot for us");
}

/// A seeder's first announce can beat its own publish (`--catalog-only`):
/// refused announces are tried again after 1 s, doubling, not a whole
/// interval later, and the first accepted one brings the normal interval back.
#[test]
fn a_refused_announce_is_tried_again_soon_with_backoff() {
    let (t0, f, mut sw) = start(4);
    let config =
        TrackerConfig { interval: secs(60), expiry: secs(300), seed: 1, catalog_only: true, ..Default::default() };
    sw.tracker = Some(Tracker::new(config, t0));
    let s = sw.peer(t0, &f, &f.all(), |_| {});
    let announced = |sw: &Harness| sw.announces.iter().filter(|(i, _)| *i == s).count();
    sw.run(t0);
    assert_eq!(announced(&sw), 1);
    sw.run(t0 + ms(999));
    assert_eq!(announced(&sw), 1, "not before 1 s");
    sw.run(t0 + secs(1));
    assert_eq!(announced(&sw), 2, "again after 1 s");
    sw.run(t0 + secs(2));
    assert_eq!(announced(&sw), 2, "then after 2 s more");
    sw.run(t0 + secs(3));
    assert_eq!(announced(&sw), 3);

    let tracker = sw.tracker.as_mut().unwrap();
    let published =
        tracker.handle_catalog(t0 + secs(3), LOOPBACK, crate::wire::catalog::Request::Publish(f.meta.clone()));
    assert_eq!(published, crate::wire::catalog::Response::Published(f.id()));
    sw.run(t0 + secs(7));
    assert_eq!(announced(&sw), 4);
    assert_eq!(sw.tracker.as_ref().unwrap().stats().refused, 3, "accepted once published");
    sw.run(t0 + secs(66));
    assert_eq!(announced(&sw), 4, "then at the interval");
    sw.run(t0 + secs(67));
    assert_eq!(announced(&sw), 5);
}

mod pieces;
mod receive;

/// A peer given a slot it has no use for tells the uploader of the chunks it
/// holds that we got elsewhere (we told it of none: it held them), as a
/// Bitfield or as Haves, whichever is fewer bytes. No chunk is told twice:
/// a peer that gives and takes slots without end makes us queue no more
/// than a Have per chunk.
#[test]
fn a_slot_we_have_no_use_for_is_answered_with_the_chunks_it_did_not_know() {
    for (chunks, as_haves) in [(8, false), (200, true)] {
        let (t0, f, mut sw) = start(chunks);
        let l = sw.peer(t0, &f, &[0], |_| {});
        sw.tracker_says.insert(l, Vec::new());
        sw.run(t0);
        let (server, stale) = (sw.accept(t0, l, hand_addr(1)), sw.accept(t0, l, hand_addr(2)));
        sw.greet(t0, l, stale, &f, &[1, 2], None);
        sw.greet(t0, l, server, &f, &[1, 2, 3], Some(State::Available));
        sw.serve(t0, l, server, &f);
        let told = |sw: &Harness| chunks_told(sw, l, stale)[1..].to_vec(); // after the greeting's Bitfield
        assert_eq!(told(&sw), vec![Seen::Have(3)], "it lacked 3 only");
        sw.inject(t0, l, stale, Message::State(State::Available));
        let fresh = match as_haves {
            true => vec![Seen::Have(1), Seen::Have(2)],
            false => vec![Seen::Bitfield(f.bits(&[0, 1, 2, 3]).as_bytes().to_vec())],
        };
        assert_eq!(told(&sw)[1..], fresh, "{chunks} chunks");
        sw.inject(t0, l, stale, Message::State(State::Unavailable));
        sw.inject(t0, l, stale, Message::State(State::Connected));
        assert_eq!(told(&sw)[1..], fresh, "nothing twice");
    }
}

/// An uploader whose holder says it holds what we hold gives its slot to a
/// peer that wants something at once, not after `ASK_IDLE`.
#[test]
fn a_later_bitfield_frees_the_slot_of_a_holder_that_wants_nothing() {
    let (t0, f, mut sw, u, [holder, waiter]) = one_slot_and_two_callers(8, &[0, 1, 2, 3]);
    sw.inject(t0, u, holder, Message::Bitfield(f.bits(&[0, 1, 2, 3, 7]).as_bytes()));
    assert_eq!(sw.theirs(u, holder), vec![0, 1, 2, 3, 7]);
    assert_eq!(sw.said_on(u, holder).last(), Some(&Seen::State(State::Unavailable)));
    assert_eq!(sw.said_on(u, waiter).last(), Some(&Seen::State(State::Connected)), "the same instant");
}

/// So does one whose Haves say it holds all we hold (a chunk it got
/// elsewhere, or the chunks a later Bitfield would have cost more bytes).
#[test]
fn a_holder_whose_haves_leave_it_nothing_to_want_frees_its_slot_at_once() {
    let (t0, _, mut sw, u, [holder, waiter]) = one_slot_and_two_callers(8, &[0, 1]);
    sw.inject(t0, u, holder, Message::Have(0));
    assert_eq!(sw.said_on(u, holder).last(), Some(&Seen::State(State::Available)), "it still lacks 1");
    sw.inject(t0, u, holder, Message::Have(1));
    assert_eq!(sw.said_on(u, holder).last(), Some(&Seen::State(State::Unavailable)));
    assert_eq!(sw.said_on(u, waiter).last(), Some(&Seen::State(State::Connected)), "the same instant");
}

#[test]
fn a_later_bitfield_may_not_drop_chunks_or_change_length() {
    let (t0, f, mut sw) = start(8);
    let u = sw.peer(t0, &f, &[0], |_| {});
    sw.tracker_says.insert(u, Vec::new());
    sw.run(t0);
    let good = sw.accept(t0, u, hand_addr(1));
    sw.greet(t0, u, good, &f, &[5], None);
    sw.inject(t0, u, good, Message::Bitfield(f.bits(&[5, 6]).as_bytes()));
    sw.inject(t0, u, good, Message::Bitfield(f.bits(&[5, 6]).as_bytes()));
    assert_eq!((sw.theirs(u, good), sw.hosts[u].m.violations), (vec![5, 6], 0), "the same chunks again is no fault");
    let (dropper, longer) = (sw.accept(t0, u, hand_addr(2)), sw.accept(t0, u, hand_addr(3)));
    sw.greet(t0, u, dropper, &f, &[5, 6], None);
    sw.greet(t0, u, longer, &f, &[5], None);
    sw.inject(t0, u, dropper, Message::Bitfield(f.bits(&[5]).as_bytes()));
    sw.inject(t0, u, longer, Message::Bitfield(&[0, 0]));
    assert!(sw.closed.contains(&(u, dropper)) && sw.closed.contains(&(u, longer)));
    assert_eq!(sw.hosts[u].m.violations, 2);
}

/// On completion a peer sends its chunks to every peer left: those that held
/// chunks it got elsewhere would give it slots for them, and a complete one
/// closes.
#[test]
fn a_peer_that_completes_tells_every_peer_left_its_chunks() {
    let (t0, f, mut sw) = start(4);
    let l = sw.peer(t0, &f, &[0], |_| {});
    sw.tracker_says.insert(l, Vec::new());
    sw.run(t0);
    let (server, partial) = (sw.accept(t0, l, hand_addr(1)), sw.accept(t0, l, hand_addr(2)));
    sw.greet(t0, l, partial, &f, &[0, 1, 2], None);
    sw.greet(t0, l, server, &f, &[1, 2, 3], Some(State::Available));
    sw.serve(t0, l, server, &f);
    assert!(sw.holds_file(l, &f));
    let full = Seen::Bitfield(f.bits(&f.all()).as_bytes().to_vec());
    assert_eq!(chunks_told(&sw, l, partial)[1..], [Seen::Have(3), full], "it heard of 3 only: it held 1 and 2");
    let bitfields = sw.said_on(l, server).into_iter().filter(|m| matches!(m, Seen::Bitfield(_))).count();
    assert_eq!(bitfields, 1, "it serves us: it heard of every chunk");
}

/// The Bitfields and Haves host `h` sent on `conn`.
fn chunks_told(sw: &Harness, h: usize, conn: ConnId) -> Vec<Seen> {
    sw.said_on(h, conn).into_iter().filter(|m| matches!(m, Seen::Bitfield(_) | Seen::Have(_))).collect()
}

/// Upload slots follow the uplink: one per `SLOT_RATE` of what it sends,
/// at least `MIN_SLOTS`, at most `--slots`, and all of them until a rate is
/// measured.
#[test]
fn upload_slots_follow_the_uplinks_rate() {
    const MIB: f64 = 1048576.0;
    assert_eq!(slots_for(0.0, 8), 8, "not measured yet");
    assert_eq!(slots_for(4.8 * MIB, 8), 4);
    assert_eq!(slots_for(0.5 * MIB, 8), MIN_SLOTS);
    assert_eq!(slots_for(0.5 * MIB, 2), 2, "never more than --slots");
    assert_eq!(slots_for(8.0 * MIB, 8), 6);
    assert_eq!(slots_for(20.0 * MIB, 8), 8);
    // A seed held to 1 MiB/s, six callers asking for 40 chunks each.
    let (t0, f, mut sw) = start(240);
    let s = sw.peer(t0, &f, &f.all(), |c| (c.slots, c.max_peers, c.up_limit) = (8, 16, Some(1 << 20)));
    sw.run(t0);
    let callers: Vec<ConnId> = (1..=6).map(|n| sw.accept(t0, s, hand_addr(n))).collect();
    for (k, &c) in callers.iter().enumerate() {
        sw.greet(t0, s, c, &f, &[], None);
        for index in 40 * k as u32..40 * (k as u32 + 1) {
            sw.inject(t0, s, c, Message::Request { index, sole: false, more: false });
        }
    }
    assert_eq!(sw.hosts[s].m.slots_used(), 6, "a slot each until the uplink is measured");
    for step in 1..=200 {
        sw.run(t0 + ms(10) * step);
    }
    let rate = sw.hosts[s].m.up_rate.smoothed() / MIB;
    assert!((0.8..1.2).contains(&rate), "measured {rate:.2} MiB/s");
    assert_eq!(sw.hosts[s].m.slots(), MIN_SLOTS);
    assert_eq!(sw.hosts[s].m.slots_used(), MIN_SLOTS);
}

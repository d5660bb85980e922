//! The leecher core on its own: an in-memory disk, a real tracker core for the
//! UDP and catalog side, seeders played by hand and a fake clock.

use super::*;
use crate::common::rng::Rng;
use crate::hash::Hash20;
use crate::leecher::output::MemDisk;
use crate::meta::MIN_CHUNK;
use crate::tracker::machine::{Config as TrackerConfig, Tracker};
use crate::wire::catalog::ErrorCode;
use crate::wire::peer::{SeederState, PEER_VERSION};
use crate::wire::udp::{self, AnnounceRequest};

const CHUNK: usize = MIN_CHUNK as usize;
const TIMEOUT: Duration = Duration::from_secs(30);
const TRACKER_PORT: u16 = 6969;
/// Where the leecher's datagrams come from, as the tracker sees it.
const LEECHER_UDP_PORT: u16 = 50000;
/// Where the seeder's datagrams come from, and the port it announces.
const SEEDER_UDP_PORT: u16 = 40000;
const SEEDER_PORT: u16 = 7000;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn seeder_addr() -> SocketAddr {
    local(SEEDER_PORT)
}

/// `len` random bytes and their metadata (MIN_CHUNK chunks, real hashes).
fn file(name: &str, len: usize, seed: u64) -> (FileMeta, Vec<u8>) {
    let mut data = vec![0u8; len];
    Rng::new(seed).fill(&mut data);
    let hashes = data.chunks(CHUNK).map(Hash20::of).collect();
    (FileMeta::new(name.into(), len as u64, MIN_CHUNK, hashes).unwrap(), data)
}

/// a.bin: 5.5 chunks; b.bin: 2.5 chunks.
fn two_files() -> [(FileMeta, Vec<u8>); 2] {
    [file("a.bin", 11 * CHUNK / 2, 1), file("b.bin", 5 * CHUNK / 2, 2)]
}

fn by_name(name: &str) -> Selector {
    Selector::Name(name.into())
}

fn config(command: Command) -> Config {
    Config { tracker: local(TRACKER_PORT), command, max_seeders: 2, timeout: TIMEOUT, seed: 1 }
}

/// A tracker whose catalog holds `files` (no seeder yet).
fn tracker_with(now: Instant, files: &[&FileMeta]) -> Tracker {
    tracker_config(now, secs(10), files)
}

fn tracker_config(now: Instant, interval: Duration, files: &[&FileMeta]) -> Tracker {
    let mut tracker = Tracker::new(TrackerConfig { interval, expiry: secs(30), seed: 1 }, now);
    for meta in files {
        let got = tracker.handle_catalog(now, Request::Publish((*meta).clone()));
        assert_eq!(got, Response::Published(meta.content_id()));
    }
    tracker
}

/// A seeder at [`seeder_addr`] joins the swarms of `ids` over UDP.
fn seed(tracker: &mut Tracker, now: Instant, ids: &[ContentId]) {
    let mut client = Announcer::new(local(TRACKER_PORT), 7);
    for id in ids {
        client
            .announce(now, Announce { info_hash: *id, left: 0, event: Event::Started, port: SEEDER_PORT, num_want: 0 });
    }
    let mut answer = Vec::new();
    while let Some(dgram) = client.poll_transmit() {
        if tracker.handle_datagram(now, local(SEEDER_UDP_PORT), &dgram, &mut answer) {
            client.handle_datagram(now, &answer);
        }
    }
    assert!(!client.busy(), "seeder joined");
}

fn outputs<D: Disk>(l: &mut Leecher<D>) -> Vec<Output> {
    std::iter::from_fn(|| l.poll_output()).collect()
}

fn notes<D: Disk>(l: &mut Leecher<D>) -> Vec<Note> {
    std::iter::from_fn(|| l.poll_note()).collect()
}

/// After any tick the core asks to be woken later, or never.
fn assert_deadline_ahead<D: Disk>(l: &Leecher<D>, now: Instant) {
    if let Some(at) = l.next_deadline() {
        assert!(at > now, "next_deadline {:?} not after the tick", now.saturating_duration_since(at));
    }
}

/// The shell around the core: catalog connections and datagrams go to a real
/// tracker core, dials succeed, requests and closes are recorded.
struct World {
    l: Leecher<MemDisk>,
    tracker: Tracker,
    /// Catalog connections open; otherwise every open fails at once.
    catalog_up: bool,
    /// Catalog requests wait in `held` instead of being answered.
    hold: bool,
    held: VecDeque<Request>,
    /// Catalog answers given instead of the tracker's, in order.
    canned: VecDeque<Response>,
    /// Datagrams reach the tracker.
    udp_up: bool,
    next_conn: usize,
    opens: usize,
    dialled: Vec<(SocketAddr, ConnId)>,
    requests: VecDeque<(ConnId, ContentId, u32)>,
    closed: Vec<ConnId>,
    sent: Vec<udp::Request>,
    notes: Vec<Note>,
}

impl World {
    fn new(now: Instant, command: Command, tracker: Tracker) -> World {
        World::build(now, config(command), tracker, true)
    }

    /// Like `new`, but the first outputs are left for the test to drain.
    fn build(now: Instant, config: Config, tracker: Tracker, drain: bool) -> World {
        let mut w = World {
            l: Leecher::new(config, MemDisk::default(), now),
            tracker,
            catalog_up: true,
            hold: false,
            held: VecDeque::new(),
            canned: VecDeque::new(),
            udp_up: true,
            next_conn: 1,
            opens: 0,
            dialled: Vec::new(),
            requests: VecDeque::new(),
            closed: Vec::new(),
            sent: Vec::new(),
            notes: Vec::new(),
        };
        if drain {
            w.drain(now);
        }
        w
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn - 1)
    }

    fn drain(&mut self, now: Instant) {
        while let Some(output) = self.l.poll_output() {
            match output {
                Output::Datagram(d) => {
                    self.sent.push(udp::Request::decode(&d).expect("a well-formed datagram"));
                    let mut answer = Vec::new();
                    if self.udp_up && self.tracker.handle_datagram(now, local(LEECHER_UDP_PORT), &d, &mut answer) {
                        self.l.handle_datagram(now, &answer);
                    }
                }
                Output::OpenCatalog => {
                    self.opens += 1;
                    if self.catalog_up {
                        let conn = self.conn();
                        self.l.handle_catalog_opened(conn);
                    } else {
                        self.l.handle_catalog_failed(now);
                    }
                }
                Output::CatalogSend(_, request) if self.hold => self.held.push_back(request),
                Output::CatalogSend(_, request) => self.answer(now, request),
                Output::Connect(addr) => {
                    let conn = self.conn();
                    self.dialled.push((addr, conn));
                    self.l.handle_dialling(now, addr, conn);
                }
                Output::Request(conn, id, index) => self.requests.push_back((conn, id, index)),
                Output::Close(conn) => self.closed.push(conn),
            }
        }
        self.notes.extend(notes(&mut self.l));
    }

    fn answer(&mut self, now: Instant, request: Request) {
        let response = self.canned.pop_front().unwrap_or_else(|| self.tracker.handle_catalog(now, request));
        self.l.handle_catalog_response(now, response);
    }

    /// Answers the oldest held catalog request.
    fn answer_held(&mut self, now: Instant) {
        let request = self.held.pop_front().expect("a held catalog request");
        self.answer(now, request);
        self.drain(now);
    }

    fn tick(&mut self, now: Instant) {
        self.l.handle_timeout(now);
        self.drain(now);
        assert_deadline_ahead(&self.l, now);
    }

    /// The seeder on `conn` accepts and grants a slot.
    fn greet(&mut self, now: Instant, conn: ConnId) {
        self.l.handle_peer_connected(now, conn);
        self.drain(now);
        assert!(self.requests.is_empty(), "nothing is asked before the seeder's state");
        self.l.handle_peer_message(now, conn, Message::State { version: PEER_VERSION, state: SeederState::Available });
        self.drain(now);
    }

    /// The seeder answers every outstanding request with the true bytes.
    fn serve(&mut self, now: Instant, files: &[&(FileMeta, Vec<u8>)]) {
        while let Some((conn, id, index)) = self.requests.pop_front() {
            self.l.handle_peer_message(now, conn, chunk(files, id, index));
            self.drain(now);
        }
    }

    fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    fn announces(&self) -> Vec<AnnounceRequest> {
        announces(&self.sent)
    }
}

fn announces(sent: &[udp::Request]) -> Vec<AnnounceRequest> {
    sent.iter()
        .filter_map(|r| match r {
            udp::Request::Announce(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// (info hash, event, left, port) of each announce.
fn summary(announces: &[AnnounceRequest]) -> Vec<(ContentId, Event, u64, u16)> {
    announces.iter().map(|a| (a.info_hash, a.event, a.left, a.port)).collect()
}

fn chunk<'a>(files: &[&'a (FileMeta, Vec<u8>)], id: ContentId, index: u32) -> Message<'a> {
    let (meta, data) = files.iter().find(|(m, _)| m.content_id() == id).expect("a request for a known file");
    let start = meta.chunk_offset(index) as usize;
    let len = meta.chunk_len(index).expect("a request within the file") as usize;
    Message::Chunk { id, index, data: &data[start..start + len] }
}

fn failed(notes: &[Note]) -> Vec<(String, String)> {
    notes
        .iter()
        .filter_map(|n| match n {
            Note::Failed { name, reason } => Some((name.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn started(notes: &[Note]) -> Vec<String> {
    notes
        .iter()
        .filter_map(|n| match n {
            Note::Started { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn list_prints_the_catalog() {
    let t0 = Instant::now();
    let [a, _] = two_files();
    let mut tracker = tracker_with(t0, &[&a.0]);
    let mut l = Leecher::new(config(Command::List), MemDisk::default(), t0);
    assert_eq!(outputs(&mut l), [Output::OpenCatalog]);
    assert_eq!(l.next_deadline(), Some(t0 + TIMEOUT));
    let conn = ConnId(1);
    l.handle_catalog_opened(conn);
    assert_eq!(outputs(&mut l), [Output::CatalogSend(conn, Request::List)]);
    assert!(!l.finished());
    let response = tracker.handle_catalog(t0, Request::List);
    l.handle_catalog_response(t0, response);
    assert_eq!(outputs(&mut l), [Output::Close(conn)]);
    let entry =
        ListEntry { id: a.0.content_id(), name: "a.bin".into(), size: a.0.size(), chunk_size: MIN_CHUNK, seeders: 0 };
    assert_eq!(notes(&mut l), [Note::Listing(vec![entry])]);
    assert!(l.finished());
    assert_eq!((l.failures(), l.next_deadline()), (0, None));
    assert!(l.disk.part.is_none() && l.disk.files.is_empty(), "a listing writes nothing");
}

#[test]
fn list_answered_with_anything_else_fails() {
    let t0 = Instant::now();
    let mut l = Leecher::new(config(Command::List), MemDisk::default(), t0);
    outputs(&mut l);
    l.handle_catalog_opened(ConnId(1));
    outputs(&mut l);
    l.handle_catalog_response(t0, Response::Error { code: ErrorCode::Refused, message: "go away".into() });
    assert_eq!(outputs(&mut l), [Output::Close(ConnId(1))]);
    let got = failed(&notes(&mut l));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "list");
    assert!(got[0].1.contains("go away"), "{got:?}");
    assert!(l.finished());
    assert_eq!(l.failures(), 1);
}

#[test]
fn metadata_is_checked_before_anything_is_written() {
    let t0 = Instant::now();
    let [a, b] = two_files();
    let evil = FileMeta::new("../x".into(), 10, MIN_CHUNK, vec![Hash20::of(b"x")]).unwrap();
    let cases = [
        (by_name("a.bin"), b.0.clone(), "a.bin".to_string(), "different file"),
        (Selector::Id(a.0.content_id()), b.0.clone(), a.0.content_id().to_hex(), "different file"),
        (by_name("../x"), evil.clone(), "../x".to_string(), "unsafe"),
        (Selector::Id(evil.content_id()), evil.clone(), evil.content_id().to_hex(), "unsafe"),
    ];
    for (selector, answer, label, why) in cases {
        let mut w = World::build(t0, config(Command::Get(vec![selector.clone()])), tracker_with(t0, &[]), false);
        w.canned.push_back(Response::Meta(answer));
        w.drain(t0);
        let got = failed(&w.notes);
        assert_eq!(got.len(), 1, "{selector:?}: {:?}", w.notes);
        assert_eq!(got[0].0, label);
        assert!(got[0].1.contains(why), "{selector:?}: {}", got[0].1);
        assert!(started(&w.notes).is_empty());
        assert!(w.l.disk.part.is_none() && w.l.disk.files.is_empty(), "{selector:?}: Disk::create called");
        assert!(w.sent.is_empty() && w.dialled.is_empty(), "{selector:?}: nothing announced or dialled");
        assert_eq!(w.closed, [ConnId(1)], "catalog closed");
        assert!(w.l.finished());
        assert_eq!((w.l.failures(), w.l.next_deadline()), (1, None));
    }
    // The true answer, by name and by id, starts the download.
    for selector in [by_name("a.bin"), Selector::Id(a.0.content_id())] {
        let w = World::new(t0, Command::Get(vec![selector]), tracker_with(t0, &[&a.0, &b.0]));
        assert_eq!(w.notes, [Note::Started { name: "a.bin".into(), size: a.0.size() }]);
        assert_eq!(w.l.disk.part.as_ref().map(|(n, d)| (n.as_str(), d.len())), Some(("a.bin", a.1.len())));
    }
}

#[test]
fn not_found_fails_that_file_only() {
    let t0 = Instant::now();
    let [a, _] = two_files();
    let missing = Hash20::of(b"missing");
    let command = Command::Get(vec![by_name("nope"), Selector::Id(missing), by_name("a.bin")]);
    let mut w = World::build(t0, config(command), tracker_with(t0, &[&a.0]), false);
    w.hold = true;
    w.drain(t0);
    assert_eq!(w.held.len(), 3, "every request sent at once");
    w.answer_held(t0);
    assert_eq!(failed(&w.take_notes()), [("nope".into(), "tracker: no such file in the catalog".into())]);
    assert_eq!(w.l.failures(), 1);
    assert!(!w.l.finished() && w.closed.is_empty());
    w.answer_held(t0);
    assert_eq!(failed(&w.take_notes()), [(missing.to_hex(), "tracker: no such file in the catalog".into())]);
    assert!(!w.l.finished());
    w.answer_held(t0);
    assert_eq!(w.closed, [ConnId(1)]);
    assert_eq!(started(&w.take_notes()), ["a.bin"]);
    assert_eq!(w.l.failures(), 2);
    assert!(!w.l.finished());
}

#[test]
fn last_not_found_finishes() {
    let t0 = Instant::now();
    let mut w = World::new(t0, Command::Get(vec![by_name("x"), by_name("y")]), tracker_with(t0, &[]));
    assert_eq!(failed(&w.notes).len(), 2);
    assert_eq!(w.closed, [ConnId(1)]);
    assert!(w.l.finished());
    assert_eq!((w.l.failures(), w.l.next_deadline()), (2, None));
    w.take_notes();
    w.tick(t0 + secs(100));
    assert!(w.sent.is_empty() && w.notes.is_empty(), "nothing happens after the end");
}

#[test]
fn downloads_two_files_one_after_the_other() {
    let t0 = Instant::now();
    let files = two_files();
    let [a, b] = &files;
    let (ida, idb) = (a.0.content_id(), b.0.content_id());
    let mut tracker = tracker_with(t0, &[&a.0, &b.0]);
    seed(&mut tracker, t0, &[ida, idb]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin"), by_name("b.bin")]), tracker);
    assert_eq!(w.take_notes(), [Note::Started { name: "a.bin".into(), size: a.0.size() }]);
    assert_eq!(w.closed, [ConnId(1)], "catalog closed once every answer is in");
    assert!(matches!(w.sent[0], udp::Request::Connect { .. }));
    assert_eq!(summary(&w.announces()), [(ida, Event::Started, a.0.size(), 0)]);
    assert_eq!(w.announces()[0].num_want, NUM_WANT);
    // The tracker named the seeder: dialled at once.
    assert_eq!(w.dialled, [(seeder_addr(), ConnId(2))]);
    let t1 = t0 + secs(1);
    w.tick(t1);
    w.greet(t1, ConnId(2));
    let want: Vec<_> = (0..6).map(|i| (ConnId(2), ida, i)).collect();
    assert_eq!(w.requests.iter().copied().collect::<Vec<_>>(), want);
    let p = w.l.progress(t1).unwrap();
    assert_eq!((p.name.as_str(), p.size, p.done, p.seeders), ("a.bin", a.0.size(), 0, 1));
    let t2 = t0 + secs(2);
    w.tick(t2);
    w.serve(t2, &[a, b]);
    // a.bin is done: its connection closed, Completed announced, b.bin started.
    assert!(w.closed.contains(&ConnId(2)));
    assert_eq!(
        w.take_notes(),
        [
            Note::Finished { name: "a.bin".into(), size: a.0.size(), elapsed: secs(2), seeders: 1, bad_chunks: 0 },
            Note::Started { name: "b.bin".into(), size: b.0.size() },
        ]
    );
    assert_eq!(
        summary(&w.announces()),
        [(ida, Event::Started, a.0.size(), 0), (ida, Event::Completed, 0, 0), (idb, Event::Started, b.0.size(), 0)]
    );
    assert_eq!(w.l.disk.files["a.bin"], a.1);
    assert_eq!(w.dialled[1], (seeder_addr(), ConnId(3)));
    let t3 = t0 + secs(3);
    w.tick(t3);
    w.greet(t3, ConnId(3));
    assert_eq!(w.requests.len(), 3);
    w.serve(t3, &[a, b]);
    assert!(w.closed.contains(&ConnId(3)));
    assert_eq!(
        w.take_notes(),
        [Note::Finished { name: "b.bin".into(), size: b.0.size(), elapsed: secs(1), seeders: 1, bad_chunks: 0 }]
    );
    assert_eq!(summary(&w.announces()[3..]), [(idb, Event::Completed, 0, 0)]);
    assert!(w.l.finished());
    assert_eq!(w.l.failures(), 0);
    assert!(w.l.progress(t3).is_none());
    assert!(w.l.disk.part.is_none());
    assert_eq!(w.l.disk.files.len(), 2);
    assert!(w.l.disk.files["b.bin"] == b.1, "byte for byte");
    w.tick(t3);
}

#[test]
fn periodic_announces_report_what_is_left() {
    let t0 = Instant::now();
    let files = two_files();
    let [a, _] = &files;
    let ida = a.0.content_id();
    let mut tracker = tracker_with(t0, &[&a.0]);
    seed(&mut tracker, t0, &[ida]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin")]), tracker);
    w.greet(t0, ConnId(2));
    // Two chunks in, at 1 s apart.
    for n in 1..=2 {
        let (conn, id, index) = w.requests.pop_front().unwrap();
        w.l.handle_peer_message(t0 + secs(n), conn, chunk(&[a], id, index));
        w.drain(t0 + secs(n));
        w.tick(t0 + secs(n));
    }
    assert_eq!(w.l.next_deadline(), Some(t0 + secs(10)), "the tracker's interval");
    w.sent.clear();
    // Keep the seeder from stalling, then the interval announce.
    let (conn, id, index) = w.requests.pop_front().unwrap();
    w.l.handle_peer_message(t0 + secs(9), conn, chunk(&[a], id, index));
    w.drain(t0 + secs(9));
    w.tick(t0 + secs(10));
    let left = a.0.size() - 3 * CHUNK as u64;
    assert_eq!(summary(&w.announces()), [(ida, Event::None, left, 0)]);
}

#[test]
fn gives_up_on_a_file_nobody_seeds() {
    let t0 = Instant::now();
    let files = two_files();
    let [a, b] = &files;
    let tracker = tracker_with(t0, &[&a.0, &b.0]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin"), by_name("b.bin")]), tracker);
    assert_eq!(started(&w.take_notes()), ["a.bin"]);
    // No seeder known: the tracker is asked again every second.
    assert_eq!(w.l.next_deadline(), Some(t0 + EAGER_ANNOUNCE));
    for n in 1..30 {
        w.tick(t0 + secs(n));
        assert!(w.take_notes().is_empty(), "at {n} s");
    }
    let asked = summary(&w.announces());
    assert_eq!(asked.len(), 30);
    let ida = a.0.content_id();
    assert!(asked[1..].iter().all(|x| *x == (ida, Event::None, a.0.size(), 0)), "{asked:?}");
    assert!(w.dialled.is_empty());
    w.tick(t0 + TIMEOUT - ms(1));
    assert!(w.take_notes().is_empty(), "one tick before the timeout");
    w.tick(t0 + TIMEOUT);
    assert_eq!(
        w.take_notes(),
        [
            Note::Failed { name: "a.bin".into(), reason: "no seeder answered within 30s".into() },
            Note::Started { name: "b.bin".into(), size: b.0.size() },
        ]
    );
    assert_eq!(summary(&w.announces()).last(), Some(&(b.0.content_id(), Event::Started, b.0.size(), 0)));
    for n in 31..=60 {
        w.tick(t0 + secs(n));
    }
    assert_eq!(failed(&w.take_notes()), [("b.bin".into(), "no seeder answered within 30s".into())]);
    assert!(w.l.finished());
    assert_eq!((w.l.failures(), w.l.next_deadline()), (2, None));
    assert!(w.l.disk.files.is_empty());
}

#[test]
fn catalog_connect_is_retried_every_second_until_the_timeout() {
    let t0 = Instant::now();
    let mut w =
        World::build(t0, config(Command::Get(vec![by_name("a.bin"), by_name("b.bin")])), tracker_with(t0, &[]), false);
    w.catalog_up = false;
    w.drain(t0);
    assert_eq!(w.opens, 1);
    assert_eq!(w.l.next_deadline(), Some(t0 + secs(1)));
    w.tick(t0 + secs(1) - ms(1));
    assert_eq!(w.opens, 1, "not before the retry delay");
    for n in 1..30 {
        w.tick(t0 + secs(n) - ms(1));
        w.tick(t0 + secs(n));
        assert_eq!(w.opens, 1 + n as usize, "one open per second");
    }
    assert!(w.notes.is_empty() && !w.l.finished());
    w.tick(t0 + TIMEOUT);
    assert_eq!(w.opens, 30);
    let got = failed(&w.take_notes());
    assert_eq!(got.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["a.bin", "b.bin"]);
    assert!(got.iter().all(|f| f.1.contains("did not answer within")), "{got:?}");
    assert!(w.l.finished());
    assert_eq!((w.l.failures(), w.l.next_deadline()), (2, None));
}

#[test]
fn silent_catalog_times_out() {
    let t0 = Instant::now();
    let mut w = World::build(t0, config(Command::List), tracker_with(t0, &[]), false);
    w.hold = true;
    w.drain(t0);
    assert_eq!(w.held.len(), 1);
    w.tick(t0 + TIMEOUT - ms(1));
    assert!(!w.l.finished());
    w.tick(t0 + TIMEOUT);
    assert_eq!(failed(&w.take_notes()).len(), 1);
    assert!(w.l.finished());
    assert_eq!(w.l.failures(), 1);
}

#[test]
fn catalog_reconnect_does_not_queue_files_twice() {
    let t0 = Instant::now();
    let [a, b] = two_files();
    let command = Command::Get(vec![by_name("a.bin"), by_name("b.bin"), by_name("nope")]);
    let mut w = World::build(t0, config(command), tracker_with(t0, &[&a.0, &b.0]), false);
    w.hold = true;
    w.drain(t0);
    w.answer_held(t0);
    // The tracker's idle timeout or a reset cuts the connection after one answer.
    w.held.clear();
    w.l.handle_catalog_failed(t0);
    w.drain(t0);
    w.tick(t0 + secs(1));
    assert_eq!(w.held.len(), 2, "only the unanswered selectors asked again");
    for _ in 0..2 {
        w.answer_held(t0 + secs(1));
    }
    assert_eq!(started(&w.notes), ["a.bin"]);
    assert_eq!(failed(&w.notes).len(), 1, "nope reported once: {:?}", w.notes);
    assert_eq!(w.l.failures(), 1);
    assert_eq!(w.l.queue.iter().map(|m| m.name()).collect::<Vec<_>>(), ["b.bin"], "a.bin queued again");
}

#[test]
fn disk_failure_fails_the_file_and_moves_on() {
    let t0 = Instant::now();
    let files = two_files();
    let [a, b] = &files;
    let mut tracker = tracker_with(t0, &[&a.0, &b.0]);
    seed(&mut tracker, t0, &[a.0.content_id(), b.0.content_id()]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin"), by_name("b.bin")]), tracker);
    w.take_notes();
    w.greet(t0, ConnId(2));
    w.l.disk.fail_writes = true;
    let (conn, id, index) = w.requests.pop_front().unwrap();
    w.l.handle_peer_message(t0, conn, chunk(&[a, b], id, index));
    w.drain(t0);
    assert!(w.closed.contains(&ConnId(2)));
    let got = w.take_notes();
    assert_eq!(failed(&got).len(), 1);
    assert!(failed(&got)[0].1.contains("cannot write a.bin.part"), "{got:?}");
    assert_eq!(started(&got), ["b.bin"]);
    assert_eq!(w.l.failures(), 1);
    w.tick(t0);
}

#[test]
fn busy_seeder_is_asked_again_and_lost_one_redialled() {
    let t0 = Instant::now();
    let files = two_files();
    let [a, _] = &files;
    let mut tracker = tracker_with(t0, &[&a.0]);
    seed(&mut tracker, t0, &[a.0.content_id()]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin")]), tracker);
    assert_eq!(w.dialled.len(), 1);
    w.l.handle_peer_connected(t0, ConnId(2));
    w.l.handle_peer_message(t0, ConnId(2), Message::State { version: PEER_VERSION, state: SeederState::Unavailable });
    w.drain(t0);
    assert_eq!(w.closed.last(), Some(&ConnId(2)));
    w.l.handle_peer_closed(t0, ConnId(2));
    w.drain(t0);
    w.tick(t0 + ms(499));
    assert_eq!(w.dialled.len(), 1);
    w.tick(t0 + ms(500));
    assert_eq!(w.dialled.len(), 2);
    let t1 = t0 + ms(500);
    w.greet(t1, ConnId(3));
    // The connection drops mid-download: requeued, redialled after a second.
    let (conn, id, index) = w.requests.pop_front().unwrap();
    w.l.handle_peer_message(t1, conn, chunk(&[a], id, index));
    w.drain(t1);
    w.l.handle_peer_closed(t1, ConnId(3));
    w.drain(t1);
    w.requests.clear();
    w.tick(t1 + secs(1));
    assert_eq!(w.dialled.last(), Some(&(seeder_addr(), ConnId(4))));
    let t2 = t1 + secs(1);
    w.greet(t2, ConnId(4));
    assert_eq!(w.requests.iter().map(|r| r.2).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    w.serve(t2, &[a]);
    assert!(w.l.finished());
    assert!(w.l.disk.files["a.bin"] == a.1);
    assert_eq!(w.l.failures(), 0);
}

#[test]
fn completed_announce_is_handed_over_before_finished() {
    let t0 = Instant::now();
    // 8 chunks served 9.5 s apart: the download outlives the connection id.
    let a = file("a.bin", 8 * CHUNK, 3);
    let mut tracker = tracker_config(t0, secs(120), &[&a.0]);
    seed(&mut tracker, t0, &[a.0.content_id()]);
    let mut w = World::new(t0, Command::Get(vec![by_name("a.bin")]), tracker);
    w.greet(t0, ConnId(2));
    for n in 1..=8u64 {
        let t = t0 + ms(9500 * n);
        w.tick(t);
        if n == 8 {
            // The shell sends; whatever the tracker answers arrives after finished().
            w.udp_up = false;
            w.sent.clear();
        }
        let (conn, id, index) = w.requests.pop_front().unwrap();
        w.l.handle_peer_message(t, conn, chunk(&[&a], id, index));
        w.drain(t);
    }
    assert!(matches!(w.notes.last(), Some(Note::Finished { .. })));
    if w.l.finished() {
        let events: Vec<Event> = w.announces().iter().map(|x| x.event).collect();
        assert!(events.contains(&Event::Completed), "finished with the Completed announce unsent: {:?}", w.sent);
    }
}

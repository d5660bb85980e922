//! The seeder core on its own: an in-memory chunk store, a real tracker core
//! for the UDP and catalog side, and a fake clock.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::hash::Hash20;
use crate::meta::MIN_CHUNK;
use crate::tracker::machine::{Config as TrackerConfig, Tracker};
use crate::wire::peer::MAX_PEER_FRAME;
use crate::wire::split_frame;
use crate::wire::udp::{self, AnnounceRequest};

const CHUNK: usize = MIN_CHUNK as usize;
const CATALOG_CONN: ConnId = ConnId(100);

/// File bytes by store number; a file marked changed or broken fails its reads.
struct MemStore {
    files: Vec<Vec<u8>>,
    changed: Vec<bool>,
    broken: Vec<bool>,
    reads: Rc<Cell<usize>>,
}

impl MemStore {
    fn new(files: Vec<Vec<u8>>) -> MemStore {
        let n = files.len();
        MemStore { files, changed: vec![false; n], broken: vec![false; n], reads: Rc::default() }
    }
}

impl ChunkStore for MemStore {
    fn read(&mut self, file: usize, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), ReadError> {
        self.reads.set(self.reads.get() + 1);
        if self.changed[file] {
            return Err(ReadError::Changed);
        }
        if self.broken[file] {
            return Err(ReadError::Io(std::io::Error::other("disk on fire")));
        }
        let start = offset as usize;
        out.extend_from_slice(&self.files[file][start..start + len]);
        Ok(())
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

/// Two files: 2 chunks, and 2.5 chunks (the last one short).
fn two_files() -> MemStore {
    MemStore::new(vec![bytes(2 * CHUNK, 1), bytes(5 * CHUNK / 2, 2)])
}

fn meta(name: String, data: &[u8]) -> FileMeta {
    FileMeta::new(name, data.len() as u64, MIN_CHUNK, data.chunks(CHUNK).map(Hash20::of).collect()).unwrap()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const TRACKER_PORT: u16 = 6969;
/// Where the seeder's datagrams come from, as the tracker sees it.
const SEEDER_UDP_PORT: u16 = 40000;

/// A seeder of `store`'s files (file i is store number i) and their content ids.
fn seeder(now: Instant, slots: usize, store: MemStore) -> (Seeder<MemStore>, Vec<ContentId>) {
    let files: Vec<(FileMeta, usize)> =
        store.files.iter().enumerate().map(|(i, d)| (meta(format!("file{i}"), d), i)).collect();
    let ids = files.iter().map(|(m, _)| m.content_id()).collect();
    // A long default interval, so adopting the tracker's 10 s is visible.
    let config = Config { slots, interval: secs(60), port: 7000, tracker: local(TRACKER_PORT), seed: 1 };
    (Seeder::new(config, files, store, now), ids)
}

fn tracker(now: Instant, seed: u64) -> Tracker {
    Tracker::new(TrackerConfig { interval: secs(10), expiry: secs(30), seed }, now)
}

fn outputs(s: &mut Seeder<MemStore>) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn datagrams(outs: &[Output]) -> Vec<udp::Request> {
    let each = |o: &Output| match o {
        Output::Datagram(d) => Some(udp::Request::decode(d).unwrap()),
        _ => None,
    };
    outs.iter().filter_map(each).collect()
}

fn announces(outs: &[Output]) -> Vec<AnnounceRequest> {
    let each = |r| match r {
        udp::Request::Announce(a) => Some(a),
        _ => None,
    };
    datagrams(outs).into_iter().filter_map(each).collect()
}

fn opens(outs: &[Output]) -> usize {
    outs.iter().filter(|o| **o == Output::OpenCatalog).count()
}

/// Delivers datagrams (`taken` first, then the seeder's) to the tracker and
/// its answers back until both are quiet; returns every other output.
fn deliver(s: &mut Seeder<MemStore>, tracker: &mut Tracker, now: Instant, taken: Vec<Output>) -> Vec<Output> {
    let (mut rest, mut answer) = (Vec::new(), Vec::new());
    let mut taken = taken.into_iter();
    while let Some(output) = taken.next().or_else(|| s.poll_output()) {
        match output {
            Output::Datagram(d) => {
                if tracker.handle_datagram(now, local(SEEDER_UDP_PORT), &d, &mut answer) {
                    s.handle_datagram(now, &answer);
                }
            }
            other => rest.push(other),
        }
    }
    rest
}

fn exchange(s: &mut Seeder<MemStore>, tracker: &mut Tracker, now: Instant) -> Vec<Output> {
    deliver(s, tracker, now, Vec::new())
}

/// Runs the publish over `conn`, which the shell has just opened.
fn publish(s: &mut Seeder<MemStore>, tracker: &mut Tracker, now: Instant, conn: ConnId) {
    s.handle_catalog_opened(now, conn);
    loop {
        match s.poll_output() {
            Some(Output::CatalogSend(c, request)) => {
                let response = tracker.handle_catalog(now, request);
                s.handle_catalog_response(now, c, response);
            }
            Some(Output::Close(c)) if c == conn => return,
            other => panic!("publish: {other:?}"),
        }
    }
}

/// The first tick at `now`: connect, announce Started, publish.
fn join(s: &mut Seeder<MemStore>, tracker: &mut Tracker, now: Instant) {
    s.handle_timeout(now);
    assert_eq!(exchange(s, tracker, now), [Output::OpenCatalog]);
    publish(s, tracker, now, CATALOG_CONN);
}

/// The tracker's catalog entry for `id`: its seeder count, `None` if not listed.
fn listed(tracker: &mut Tracker, now: Instant, id: ContentId) -> Option<u32> {
    match tracker.handle_catalog(now, catalog::Request::List) {
        catalog::Response::List(l) => l.iter().find(|e| e.id == id).map(|e| e.seeders),
        other => panic!("{other:?}"),
    }
}

/// An answer to a request, owned.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Chunk(ContentId, u32, Vec<u8>),
    Reject(ContentId, u32, RejectReason),
}

/// Every frame in `buf`, which must hold whole frames only.
fn answers(mut buf: &[u8]) -> Vec<Answer> {
    let mut all = Vec::new();
    while let Some((frame, used)) = split_frame(buf, MAX_PEER_FRAME).unwrap() {
        all.push(match Message::decode(frame).unwrap() {
            Message::Chunk { id, index, data } => Answer::Chunk(id, index, data.to_vec()),
            Message::Reject { id, index, reason } => Answer::Reject(id, index, reason),
            other => panic!("not an answer: {other:?}"),
        });
        buf = &buf[used..];
    }
    assert!(buf.is_empty(), "partial frame left");
    all
}

/// Asks one request of leecher `conn` and returns the single answer. Outputs
/// queued before the request are dropped.
fn ask(s: &mut Seeder<MemStore>, now: Instant, conn: ConnId, id: ContentId, index: u32) -> Answer {
    s.handle_message(conn, Message::Request { id, index });
    let outs = outputs(s);
    assert!(outs.contains(&Output::Feed(conn)), "{outs:?}");
    let mut out = Vec::new();
    s.handle_drained(now, conn, &mut out);
    let mut got = answers(&out);
    assert_eq!(got.len(), 1);
    got.remove(0)
}

/// A leecher holding a slot.
fn leecher(s: &mut Seeder<MemStore>, conn: ConnId) {
    s.handle_accept(conn, local(50000 + conn.0 as u16));
    assert_eq!(outputs(s), [Output::Greet(conn, SeederState::Available)]);
}

#[test]
fn slots_are_granted_turned_away_and_freed() {
    let t0 = Instant::now();
    let (mut s, _) = seeder(t0, 1, two_files());
    let (a, b, c, d) = (ConnId(1), ConnId(2), ConnId(3), ConnId(4));
    leecher(&mut s, a);
    s.handle_accept(b, local(2));
    assert_eq!(outputs(&mut s), [Output::Greet(b, SeederState::Unavailable)]);
    assert_eq!((s.stats().accepted, s.stats().turned_away, s.connected()), (1, 1, 1));
    // A turned-away connection closing frees nothing.
    s.handle_closed(t0, b);
    s.handle_accept(c, local(3));
    assert_eq!(outputs(&mut s), [Output::Greet(c, SeederState::Unavailable)]);
    // The holder leaving does.
    s.handle_closed(t0, a);
    assert_eq!(s.connected(), 0);
    leecher(&mut s, d);
    assert_eq!((s.stats().accepted, s.stats().turned_away), (2, 2));
}

#[test]
fn requests_are_answered_in_order() {
    let t0 = Instant::now();
    let store = two_files();
    let data = store.files[0].clone();
    let (mut s, ids) = seeder(t0, 4, store);
    let conn = ConnId(1);
    leecher(&mut s, conn);
    s.handle_message(conn, Message::Request { id: ids[0], index: 1 });
    s.handle_message(conn, Message::Request { id: ids[0], index: 0 });
    assert_eq!(outputs(&mut s), [Output::Feed(conn), Output::Feed(conn)]);
    // Each call appends one answer to what the buffer already holds.
    let mut out = Vec::new();
    s.handle_drained(t0, conn, &mut out);
    let first = out.len();
    s.handle_drained(t0, conn, &mut out);
    assert!(out.len() > first);
    assert_eq!(
        answers(&out),
        [Answer::Chunk(ids[0], 1, data[CHUNK..].to_vec()), Answer::Chunk(ids[0], 0, data[..CHUNK].to_vec())]
    );
    let len = out.len();
    s.handle_drained(t0, conn, &mut out);
    assert_eq!(out.len(), len, "nothing left to answer");
    assert_eq!((s.stats().chunks_sent, s.stats().bytes_sent, s.stats().rejects), (2, 2 * CHUNK as u64, 0));
}

#[test]
fn last_chunk_is_short() {
    let t0 = Instant::now();
    let store = two_files();
    let data = store.files[1].clone();
    let (mut s, ids) = seeder(t0, 4, store);
    leecher(&mut s, ConnId(1));
    let got = ask(&mut s, t0, ConnId(1), ids[1], 2);
    assert_eq!(got, Answer::Chunk(ids[1], 2, data[2 * CHUNK..].to_vec()));
    assert_eq!(s.stats().bytes_sent, CHUNK as u64 / 2);
}

#[test]
fn unknown_file_bad_index_and_read_error_are_rejected() {
    let t0 = Instant::now();
    let mut store = two_files();
    store.broken[1] = true;
    let (mut s, ids) = seeder(t0, 4, store);
    let conn = ConnId(1);
    leecher(&mut s, conn);
    let unknown = Hash20::of(b"not shared");
    assert_eq!(ask(&mut s, t0, conn, unknown, 0), Answer::Reject(unknown, 0, RejectReason::UnknownFile));
    assert_eq!(ask(&mut s, t0, conn, ids[0], 2), Answer::Reject(ids[0], 2, RejectReason::BadIndex));
    assert_eq!(ask(&mut s, t0, conn, ids[0], u32::MAX), Answer::Reject(ids[0], u32::MAX, RejectReason::BadIndex));
    // An I/O error rejects the chunk but keeps the file shared.
    assert_eq!(ask(&mut s, t0, conn, ids[1], 0), Answer::Reject(ids[1], 0, RejectReason::ReadError));
    assert_eq!(s.shared(), 2);
    assert_eq!((s.stats().rejects, s.stats().chunks_sent), (4, 0));
}

#[test]
fn changed_file_is_withdrawn_for_good() {
    let t0 = Instant::now();
    let mut store = two_files();
    store.changed[0] = true;
    let reads = store.reads.clone();
    let (mut s, ids) = seeder(t0, 4, store);
    let conn = ConnId(1);
    leecher(&mut s, conn);
    assert_eq!(ask(&mut s, t0, conn, ids[0], 1), Answer::Reject(ids[0], 1, RejectReason::Withdrawn));
    assert_eq!((s.shared(), reads.get()), (1, 1));
    // Later requests are refused without reading; the other file is still served.
    assert_eq!(ask(&mut s, t0, conn, ids[0], 0), Answer::Reject(ids[0], 0, RejectReason::Withdrawn));
    assert_eq!(reads.get(), 1);
    assert!(matches!(ask(&mut s, t0, conn, ids[1], 0), Answer::Chunk(..)));
    assert_eq!((s.stats().rejects, s.stats().chunks_sent), (2, 1));
}

#[test]
fn changed_file_is_announced_stopped_at_once() {
    let t0 = Instant::now();
    let mut store = two_files();
    store.changed[0] = true;
    let (mut s, ids) = seeder(t0, 4, store);
    let mut tracker = tracker(t0, 1);
    join(&mut s, &mut tracker, t0);
    assert_eq!(listed(&mut tracker, t0, ids[0]), Some(1));
    leecher(&mut s, ConnId(1));
    assert_eq!(ask(&mut s, t0, ConnId(1), ids[0], 0), Answer::Reject(ids[0], 0, RejectReason::Withdrawn));
    let outs = outputs(&mut s);
    let stopped = announces(&outs);
    assert_eq!(stopped.len(), 1, "one Stopped announce: {outs:?}");
    assert_eq!((stopped[0].info_hash, stopped[0].event, stopped[0].port), (ids[0], Event::Stopped, 7000));
}

#[test]
fn changed_file_goodbye_runs_on_the_callers_clock() {
    let t = Instant::now() + secs(100);
    let mut store = two_files();
    store.changed[0] = true;
    let (mut s, ids) = seeder(t, 4, store);
    let mut tracker = tracker(t, 1);
    join(&mut s, &mut tracker, t);
    leecher(&mut s, ConnId(1));
    ask(&mut s, t, ConnId(1), ids[0], 0);
    assert!(s.next_deadline().unwrap() > t, "deadline in the past");
    // A tick before the tracker's answer arrives must not time the goodbye out.
    s.handle_timeout(t);
    let outs = outputs(&mut s);
    assert!(!datagrams(&outs).iter().any(|r| matches!(r, udp::Request::Connect { .. })), "reconnect: {outs:?}");
}

#[test]
fn non_request_or_overlong_pipeline_closes() {
    let t0 = Instant::now();
    let (mut s, ids) = seeder(t0, 4, two_files());
    let (a, b) = (ConnId(1), ConnId(2));
    leecher(&mut s, a);
    leecher(&mut s, b);
    s.handle_message(a, Message::State { version: 1, state: SeederState::Available });
    assert_eq!(outputs(&mut s), [Output::Close(a)]);
    assert_eq!(s.stats().violations, 1);
    for _ in 0..MAX_PIPELINE {
        s.handle_message(b, Message::Request { id: ids[0], index: 0 });
    }
    assert_eq!(outputs(&mut s), vec![Output::Feed(b); MAX_PIPELINE]);
    s.handle_message(b, Message::Request { id: ids[0], index: 0 });
    assert_eq!(outputs(&mut s), [Output::Close(b)]);
    assert_eq!(s.stats().violations, 2);
    // A connection without a slot is ignored.
    s.handle_message(ConnId(9), Message::Request { id: ids[0], index: 0 });
    assert!(outputs(&mut s).is_empty());
}

#[test]
fn joins_publishes_and_heartbeats() {
    let t0 = Instant::now();
    let (mut s, ids) = seeder(t0, 4, two_files());
    let mut tracker = tracker(t0, 1);
    s.handle_timeout(t0);
    let outs = outputs(&mut s);
    assert_eq!(outs[0], Output::OpenCatalog);
    assert!(matches!(datagrams(&outs)[..], [udp::Request::Connect { .. }]), "{outs:?}");
    assert_eq!(deliver(&mut s, &mut tracker, t0, outs), [Output::OpenCatalog]);
    assert_eq!(tracker.stats().joins, 2, "both files' swarms joined over UDP");
    assert_eq!(listed(&mut tracker, t0, ids[0]), None, "not in the catalog before the publish");
    publish(&mut s, &mut tracker, t0, CATALOG_CONN);
    assert_eq!(s.stats().publishes, 1);
    for id in &ids {
        assert_eq!(listed(&mut tracker, t0, *id), Some(1));
    }
    // The tracker's 10 s interval replaces our 60 s.
    assert_eq!(s.next_deadline(), Some(t0 + secs(10)));
    s.handle_timeout(t0 + secs(10) - Duration::from_millis(1));
    assert!(outputs(&mut s).is_empty(), "early tick is a no-op");
    let t1 = t0 + secs(10);
    s.handle_timeout(t1);
    let beats = announces(&outputs(&mut s));
    assert_eq!(beats.len(), 2);
    for (a, id) in beats.iter().zip(&ids) {
        assert_eq!((a.info_hash, a.event, a.left, a.port), (*id, Event::None, 0, 7000));
    }
    assert_eq!(s.next_deadline(), Some(t1 + Duration::from_millis(500)), "announce retry");
}

#[test]
fn tracker_restart_leads_to_rejoin_and_republish() {
    let t0 = Instant::now();
    let (mut s, ids) = seeder(t0, 4, two_files());
    let mut old = tracker(t0, 1);
    join(&mut s, &mut old, t0);
    let mut new = tracker(t0, 2);
    let t1 = t0 + secs(10);
    s.handle_timeout(t1);
    assert!(exchange(&mut s, &mut new, t1).is_empty());
    assert!(new.stats().errors_sent >= 1, "old connection id rejected");
    assert_eq!(new.stats().joins, 2, "announces resent with a new connection id");
    // The re-publish is due at once.
    assert_eq!(s.next_deadline(), Some(t1));
    s.handle_timeout(t1);
    assert_eq!(outputs(&mut s), [Output::OpenCatalog]);
    publish(&mut s, &mut new, t1, ConnId(101));
    assert_eq!(s.stats().publishes, 2);
    for id in &ids {
        assert_eq!(listed(&mut new, t1, *id), Some(1));
    }
    // The next heartbeat says Started again: the new tracker had lost us.
    let t2 = t1 + secs(10);
    s.handle_timeout(t2);
    let beats = announces(&outputs(&mut s));
    assert_eq!(beats.iter().filter(|a| a.event == Event::Started).count(), 2, "{beats:?}");
}

#[test]
fn shutdown_waits_for_the_goodbye_to_be_acknowledged() {
    let t0 = Instant::now();
    let (mut s, ids) = seeder(t0, 4, two_files());
    let mut tracker = tracker(t0, 1);
    join(&mut s, &mut tracker, t0);
    let t1 = t0 + secs(5);
    assert!(!s.finished(t1));
    s.shutdown(t1);
    let outs = outputs(&mut s);
    let stopped = announces(&outs);
    assert_eq!(
        stopped.iter().map(|a| (a.info_hash, a.event)).collect::<Vec<_>>(),
        [(ids[0], Event::Stopped), (ids[1], Event::Stopped)]
    );
    assert!(!s.finished(t1));
    s.handle_accept(ConnId(1), local(1));
    assert_eq!(outputs(&mut s), [Output::Greet(ConnId(1), SeederState::Unavailable)]);
    deliver(&mut s, &mut tracker, t1, outs);
    assert!(s.finished(t1));
    for id in &ids {
        assert_eq!(listed(&mut tracker, t1, *id), Some(0));
    }
    // No heartbeat after shutdown.
    s.handle_timeout(t1 + secs(60));
    assert_eq!(announces(&outputs(&mut s)).len(), 0);
}

#[test]
fn shutdown_gives_up_on_a_silent_tracker() {
    let t0 = Instant::now();
    let (mut s, _) = seeder(t0, 4, two_files());
    let mut tracker = tracker(t0, 1);
    join(&mut s, &mut tracker, t0);
    let t1 = t0 + secs(5);
    s.shutdown(t1);
    assert_eq!(announces(&outputs(&mut s)).len(), 2);
    s.shutdown(t1 + secs(1) / 2);
    assert!(outputs(&mut s).is_empty(), "a second shutdown is a no-op");
    assert!(!s.finished(t1 + GOODBYE_TIMEOUT - Duration::from_millis(1)));
    assert!(s.next_deadline().unwrap() <= t1 + GOODBYE_TIMEOUT);
    assert!(s.finished(t1 + GOODBYE_TIMEOUT));
}

#[test]
fn shutdown_leaves_no_deadline_in_the_past() {
    let t0 = Instant::now();
    let (mut s, _) = seeder(t0, 4, two_files());
    s.shutdown(t0);
    s.handle_timeout(t0);
    assert_eq!(opens(&outputs(&mut s)), 0, "no publish while stopping");
    assert!(s.next_deadline().unwrap() > t0);
}

#[test]
fn failed_publish_is_retried_after_the_delay() {
    let t0 = Instant::now();
    let (mut s, _) = seeder(t0, 4, two_files());
    s.handle_timeout(t0);
    assert_eq!(opens(&outputs(&mut s)), 1);
    let t1 = t0 + secs(1);
    s.handle_catalog_failed(t1);
    s.handle_timeout(t1 + secs(2) - Duration::from_millis(1));
    assert_eq!(opens(&outputs(&mut s)), 0, "not before the retry delay");
    assert!(s.next_deadline().unwrap() <= t1 + secs(2));
    s.handle_timeout(t1 + secs(2));
    assert_eq!(opens(&outputs(&mut s)), 1);
    // An open that never completes is abandoned after PUBLISH_TIMEOUT and retried.
    let t2 = t1 + secs(2) + PUBLISH_TIMEOUT;
    s.handle_timeout(t2);
    s.handle_timeout(t2 + secs(2));
    assert_eq!(opens(&outputs(&mut s)), 1);
}

#[test]
fn stalled_publish_is_closed_and_retried() {
    let t0 = Instant::now();
    let (mut s, _) = seeder(t0, 4, two_files());
    s.handle_timeout(t0);
    outputs(&mut s);
    s.handle_catalog_opened(t0, CATALOG_CONN);
    assert_eq!(outputs(&mut s).len(), 2, "one publish per file");
    s.handle_timeout(t0 + PUBLISH_TIMEOUT);
    let outs = outputs(&mut s);
    assert!(outs.contains(&Output::Close(CATALOG_CONN)), "{outs:?}");
    s.handle_closed(t0, CATALOG_CONN);
    s.handle_timeout(t0 + PUBLISH_TIMEOUT + secs(2));
    assert_eq!(opens(&outputs(&mut s)), 1);
}

#[test]
fn publish_cut_midway_is_retried_after_the_delay() {
    let t = Instant::now() + secs(100);
    let (mut s, _) = seeder(t, 4, two_files());
    s.handle_timeout(t);
    outputs(&mut s);
    s.handle_catalog_opened(t, CATALOG_CONN);
    outputs(&mut s);
    s.handle_closed(t, CATALOG_CONN);
    s.handle_timeout(t + secs(1));
    assert_eq!(opens(&outputs(&mut s)), 0, "not before the retry delay");
    s.handle_timeout(t + secs(2));
    assert_eq!(opens(&outputs(&mut s)), 1);
}

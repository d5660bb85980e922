//! The seeder's sans-IO core: slots for leechers, chunk requests answered in
//! order, the tracker join and heartbeat, the catalog publish (again after a
//! tracker restart) and the goodbye on shutdown.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::store::{ChunkStore, ReadError};
use crate::announce::{Announce, Announcer, Reply};
use crate::common::net::ConnId;
use crate::hash::ContentId;
use crate::meta::FileMeta;
use crate::wire::catalog;
use crate::wire::peer::{put_chunk_header, Message, RejectReason, SeederState};
use crate::wire::udp::Event;

/// Requests a leecher may have outstanding; more is a protocol violation.
pub const MAX_PIPELINE: usize = 64;
/// A catalog publish not finished in this long is abandoned and retried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the tracker to acknowledge our goodbye.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    /// Leechers served at once; others are told Unavailable.
    pub slots: usize,
    /// Heartbeat interval until the tracker tells us its own.
    pub interval: Duration,
    /// The peer port announced to the tracker.
    pub port: u16,
    pub tracker: SocketAddr,
    pub seed: u64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A datagram for the tracker.
    Datagram(Vec<u8>),
    /// Send the state, then keep asking for responses (`Feed`) or close.
    Greet(ConnId, SeederState),
    /// Requests are queued: call `handle_drained` while the queue has room.
    Feed(ConnId),
    Close(ConnId),
    /// Open a TCP connection to the tracker for the catalog publish.
    OpenCatalog,
    /// A catalog request for the publish connection.
    CatalogSend(ConnId, catalog::Request),
}

/// One shared file.
struct Shared {
    meta: FileMeta,
    id: ContentId,
    /// The file's number in the chunk store.
    store_index: usize,
    withdrawn: bool,
}

struct Leecher {
    addr: SocketAddr,
    queue: VecDeque<(ContentId, u32)>,
}

enum Publish {
    Needed { at: Instant },
    Opening { since: Instant },
    Sending { conn: ConnId, pending: usize, since: Instant },
    Done,
}

/// Counters for the status line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub accepted: u64,
    pub turned_away: u64,
    pub chunks_sent: u64,
    pub bytes_sent: u64,
    pub rejects: u64,
    pub violations: u64,
    pub publishes: u64,
}

pub struct Seeder<S: ChunkStore> {
    config: Config,
    files: Vec<Shared>,
    by_id: HashMap<ContentId, usize>,
    store: S,
    leechers: HashMap<ConnId, Leecher>,
    announcer: Announcer,
    interval: Duration,
    next_heartbeat: Instant,
    /// Started has been sent since the last (re)connection.
    joined: bool,
    publish: Publish,
    stopping: Option<Instant>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl<S: ChunkStore> Seeder<S> {
    /// `files` pairs each file's metadata with its number in `store`.
    pub fn new(config: Config, files: Vec<(FileMeta, usize)>, store: S, now: Instant) -> Self {
        let files: Vec<Shared> = files
            .into_iter()
            .map(|(meta, store_index)| Shared { id: meta.content_id(), meta, store_index, withdrawn: false })
            .collect();
        let by_id = files.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
        Seeder {
            announcer: Announcer::new(config.tracker, config.seed),
            interval: config.interval,
            config,
            files,
            by_id,
            store,
            leechers: HashMap::new(),
            next_heartbeat: now,
            joined: false,
            publish: Publish::Needed { at: now },
            stopping: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// A leecher connected: it gets a slot (Available) or Unavailable.
    pub fn handle_accept(&mut self, conn: ConnId, addr: SocketAddr) {
        if self.stopping.is_some() || self.leechers.len() >= self.config.slots {
            self.stats.turned_away += 1;
            debug!("{conn} {addr}: unavailable, {} of {} slots busy", self.leechers.len(), self.config.slots);
            self.outputs.push_back(Output::Greet(conn, SeederState::Unavailable));
            return;
        }
        self.stats.accepted += 1;
        info!("{conn} {addr}: leecher connected ({}/{} slots)", self.leechers.len() + 1, self.config.slots);
        self.leechers.insert(conn, Leecher { addr, queue: VecDeque::new() });
        self.outputs.push_back(Output::Greet(conn, SeederState::Available));
    }

    /// A frame from a leecher. Anything but a request, or too many
    /// outstanding requests, closes the connection.
    pub fn handle_message(&mut self, conn: ConnId, msg: Message<'_>) {
        let Some(leecher) = self.leechers.get_mut(&conn) else {
            return;
        };
        match msg {
            Message::Request { id, index } if leecher.queue.len() < MAX_PIPELINE => {
                leecher.queue.push_back((id, index));
                self.outputs.push_back(Output::Feed(conn));
            }
            other => {
                self.stats.violations += 1;
                debug!("{conn} {}: protocol violation: {other:?}", leecher.addr);
                self.outputs.push_back(Output::Close(conn));
            }
        }
    }

    /// The connection can take more: appends the answer to the oldest request.
    pub fn handle_drained(&mut self, now: Instant, conn: ConnId, out: &mut Vec<u8>) {
        let Some((id, index)) = self.leechers.get_mut(&conn).and_then(|l| l.queue.pop_front()) else {
            return;
        };
        let reason = match self.by_id.get(&id).and_then(|&i| self.files.get_mut(i)) {
            None => RejectReason::UnknownFile,
            Some(f) if f.withdrawn => RejectReason::Withdrawn,
            Some(f) => match f.meta.chunk_len(index) {
                None => RejectReason::BadIndex,
                Some(len) => {
                    let start = out.len();
                    put_chunk_header(out, id, index, len as usize);
                    match self.store.read(f.store_index, f.meta.chunk_offset(index), len as usize, out) {
                        Ok(()) => {
                            self.stats.chunks_sent += 1;
                            self.stats.bytes_sent += u64::from(len);
                            return;
                        }
                        Err(e) => {
                            out.truncate(start);
                            match e {
                                ReadError::Changed => {
                                    warn!("{} changed on disk since it was hashed: withdrawn", f.meta.name());
                                    f.withdrawn = true;
                                    let goodbye = self.goodbye(id);
                                    self.announcer.announce(now, goodbye);
                                    self.after_announcer(now);
                                    RejectReason::Withdrawn
                                }
                                ReadError::Io(e) => {
                                    warn!("{}: read failed: {e}", f.meta.name());
                                    RejectReason::ReadError
                                }
                            }
                        }
                    }
                }
            },
        };
        self.stats.rejects += 1;
        Message::Reject { id, index, reason }.encode(out);
    }

    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(l) = self.leechers.remove(&conn) {
            info!("{conn} {}: leecher gone, slot free", l.addr);
        }
        if let Publish::Sending { conn: c, .. } = self.publish {
            if c == conn {
                self.publish_failed(now);
            }
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.announcer.handle_datagram(now, data);
        self.after_announcer(now);
    }

    /// The publish connection is open: send every file's metadata.
    pub fn handle_catalog_opened(&mut self, now: Instant, conn: ConnId) {
        let sends: Vec<Output> = self
            .files
            .iter()
            .filter(|f| !f.withdrawn)
            .map(|f| Output::CatalogSend(conn, catalog::Request::Publish(f.meta.clone())))
            .collect();
        self.publish = if sends.is_empty() {
            self.outputs.push_back(Output::Close(conn));
            Publish::Done
        } else {
            Publish::Sending { conn, pending: sends.len(), since: now }
        };
        self.outputs.extend(sends);
    }

    /// The publish connection could not be opened.
    pub fn handle_catalog_failed(&mut self, now: Instant) {
        self.publish_failed(now);
    }

    pub fn handle_catalog_response(&mut self, _now: Instant, conn: ConnId, response: catalog::Response) {
        let Publish::Sending { conn: c, pending, since } = self.publish else { return };
        if c != conn {
            return;
        }
        match response {
            catalog::Response::Published(id) if self.by_id.contains_key(&id) => {}
            other => warn!("tracker refused a publish: {other:?}"),
        }
        if pending <= 1 {
            self.stats.publishes += 1;
            info!("catalog published: {} file(s) at {}", self.files.len(), self.config.tracker);
            self.publish = Publish::Done;
            self.outputs.push_back(Output::Close(conn));
        } else {
            self.publish = Publish::Sending { conn, pending: pending - 1, since };
        }
    }

    /// Heartbeats, publish retries and announce retries. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.announcer.handle_timeout(now);
        match self.publish {
            Publish::Needed { at } if now >= at && self.stopping.is_none() => {
                self.publish = Publish::Opening { since: now };
                self.outputs.push_back(Output::OpenCatalog);
            }
            Publish::Sending { conn, since, .. } if now >= since + PUBLISH_TIMEOUT => {
                self.outputs.push_back(Output::Close(conn));
                self.publish_failed(now);
            }
            Publish::Opening { since } if now >= since + PUBLISH_TIMEOUT => self.publish_failed(now),
            _ => {}
        }
        if now >= self.next_heartbeat && self.stopping.is_none() {
            self.next_heartbeat = now + self.interval;
            let event = if self.joined { Event::None } else { Event::Started };
            self.joined = true;
            for i in 0..self.files.len() {
                if let Some(f) = self.files.get(i).filter(|f| !f.withdrawn) {
                    let announce = Announce { info_hash: f.id, left: 0, event, port: self.config.port, num_want: 0 };
                    self.announcer.announce(now, announce);
                }
            }
        }
        self.after_announcer(now);
    }

    /// Leaves the swarms (announce stopped) and turns new leechers away.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now);
        for i in 0..self.files.len() {
            if let Some(id) = self.files.get(i).filter(|f| !f.withdrawn).map(|f| f.id) {
                let goodbye = self.goodbye(id);
                self.announcer.announce(now, goodbye);
            }
        }
        self.after_announcer(now);
    }

    /// True once the goodbye is acknowledged or has had its time.
    pub fn finished(&self, now: Instant) -> bool {
        self.stopping.is_some_and(|at| !self.announcer.busy() || now >= at + GOODBYE_TIMEOUT)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let publish = match self.publish {
            _ if self.stopping.is_some() => None,
            Publish::Needed { at } => Some(at),
            Publish::Opening { since } | Publish::Sending { since, .. } => Some(since + PUBLISH_TIMEOUT),
            Publish::Done => None,
        };
        let heartbeat = self.stopping.is_none().then_some(self.next_heartbeat);
        let goodbye = self.stopping.map(|at| at + GOODBYE_TIMEOUT);
        [publish, heartbeat, goodbye, self.announcer.next_deadline()].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn connected(&self) -> usize {
        self.leechers.len()
    }

    pub fn shared(&self) -> usize {
        self.files.iter().filter(|f| !f.withdrawn).count()
    }

    fn goodbye(&self, id: ContentId) -> Announce {
        Announce { info_hash: id, left: 0, event: Event::Stopped, port: self.config.port, num_want: 0 }
    }

    fn publish_failed(&mut self, now: Instant) {
        debug!("catalog publish to {} failed; retrying", self.config.tracker);
        self.publish = Publish::Needed { at: now + self.interval.min(Duration::from_secs(2)) };
    }

    fn after_announcer(&mut self, now: Instant) {
        while let Some(reply) = self.announcer.poll_reply() {
            match reply {
                Reply::Peers { interval, .. } => {
                    if interval != self.interval && self.stopping.is_none() {
                        debug!("tracker interval {interval:?}");
                        self.next_heartbeat = self.next_heartbeat.min(now + interval);
                        self.interval = interval;
                    }
                }
                Reply::Reconnected => {
                    info!("tracker {} answered again with a new connection id: re-publishing", self.config.tracker);
                    self.joined = false;
                    if matches!(self.publish, Publish::Done) {
                        self.publish = Publish::Needed { at: now };
                    }
                }
                Reply::Refused { info_hash, message } => warn!("tracker refused {}: {message}", info_hash.short()),
                Reply::Timeout => debug!("tracker {} did not answer; retrying", self.config.tracker),
            }
        }
        while let Some(datagram) = self.announcer.poll_transmit() {
            self.outputs.push_back(Output::Datagram(datagram));
        }
    }
}

#[cfg(test)]
mod tests;

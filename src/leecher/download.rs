//! One file's download: which seeders to dial, what each is asked for, what
//! comes back and whether it is true. Sans-IO: the leecher core owns one of
//! these per file and relays its outputs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::output::Disk;
use super::picker::Picker;
use crate::common::net::ConnId;
use crate::hash::{ContentId, Hash20};
use crate::meta::FileMeta;
use crate::wire::peer::{Message, SeederState, PEER_VERSION};

/// Bytes kept requested from each seeder: enough to keep its pipe full.
const PIPELINE_BYTES: u64 = 8 * 1024 * 1024;
/// A seeder that sends nothing for this long while owing chunks is dropped.
pub const STALL: Duration = Duration::from_secs(10);
/// How long a connected seeder may take to send its state.
const GREETING: Duration = Duration::from_secs(5);
/// Retry delays: a busy seeder (Unavailable), a failed or lost connection.
const BUSY_RETRY: Duration = Duration::from_millis(500);
const MAX_BUSY_RETRY: Duration = Duration::from_secs(4);
const FAIL_RETRY: Duration = Duration::from_secs(1);
const MAX_FAIL_RETRY: Duration = Duration::from_secs(16);

/// What the download needs done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connect(SocketAddr),
    Request(ConnId, ContentId, u32),
    Close(ConnId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    Dialling,
    Greeting { since: Instant },
    Connected,
}

struct Peer {
    addr: SocketAddr,
    /// Consecutive failed or busy attempts at this address, for the backoff.
    failures: u32,
    state: PeerState,
    /// Requested chunks, in the order the seeder answers them.
    in_flight: VecDeque<u32>,
    last_data: Instant,
}

/// What we know of a seeder address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Idle {
        retry_at: Instant,
        failures: u32,
    },
    Active(ConnId),
    /// Sent bad data or cannot serve this file: never asked again.
    Banned,
}

/// Counters for the progress line and the summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub bad_chunks: u64,
    /// Distinct seeders that granted a slot.
    pub seeders_used: usize,
    pub seeders_banned: usize,
    pub busy_answers: u64,
    pub lost_connections: u64,
}

pub struct Download {
    meta: FileMeta,
    id: ContentId,
    picker: Picker,
    peers: HashMap<ConnId, Peer>,
    known: HashMap<SocketAddr, Known>,
    /// Seeders that granted us a slot, for the summary.
    used: HashSet<SocketAddr>,
    max_peers: usize,
    depth: usize,
    pub bytes_done: u64,
    pub started: Instant,
    /// Last time any seeder showed it was alive (state, chunk).
    pub last_alive: Instant,
    actions: VecDeque<Action>,
    pub stats: Stats,
}

/// Why the download cannot go on.
#[derive(Debug)]
pub struct Fatal(pub String);

impl Download {
    pub fn new(meta: FileMeta, max_peers: usize, now: Instant) -> Download {
        let depth = (PIPELINE_BYTES / u64::from(meta.chunk_size())).clamp(2, 64) as usize;
        Download {
            id: meta.content_id(),
            picker: Picker::new(meta.chunk_count()),
            meta,
            peers: HashMap::new(),
            known: HashMap::new(),
            used: HashSet::new(),
            max_peers,
            depth,
            bytes_done: 0,
            started: now,
            last_alive: now,
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn meta(&self) -> &FileMeta {
        &self.meta
    }

    pub fn id(&self) -> ContentId {
        self.id
    }

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn remaining(&self) -> u64 {
        self.meta.size() - self.bytes_done
    }

    /// Seeders currently holding a slot for us.
    pub fn connected(&self) -> usize {
        self.peers.values().filter(|p| p.state == PeerState::Connected).count()
    }

    /// Seeder addresses from the tracker; new ones are dialled as room allows.
    pub fn add_seeders(&mut self, now: Instant, addrs: &[SocketAddr]) {
        for addr in addrs {
            self.known.entry(*addr).or_insert(Known::Idle { retry_at: now, failures: 0 });
        }
        self.dial(now);
    }

    /// The shell started dialling `addr` as `conn` (after an `Action::Connect`).
    pub fn handle_dialling(&mut self, now: Instant, addr: SocketAddr, conn: ConnId) {
        let failures = match self.known.insert(addr, Known::Active(conn)) {
            Some(Known::Idle { failures, .. }) => failures,
            _ => 0,
        };
        let peer = Peer { addr, failures, state: PeerState::Dialling, in_flight: VecDeque::new(), last_data: now };
        self.peers.insert(conn, peer);
    }

    /// Dialling `addr` failed before a connection existed.
    pub fn handle_dial_failed(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(Known::Idle { failures, .. }) = self.known.get(&addr).copied() {
            self.backoff(now, addr, failures, false);
        }
    }

    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&conn) {
            p.state = PeerState::Greeting { since: now };
        }
    }

    /// A frame from a seeder. Returns an error only for a local disk failure.
    pub fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: Message<'_>,
        disk: &mut dyn Disk,
    ) -> Result<(), Fatal> {
        let Some(peer) = self.peers.get_mut(&conn) else { return Ok(()) };
        let addr = peer.addr;
        match (peer.state, msg) {
            (PeerState::Greeting { .. }, Message::State { version, state }) if version == PEER_VERSION => {
                self.last_alive = now;
                match state {
                    SeederState::Available => {
                        debug!("{conn} {addr}: available");
                        peer.state = PeerState::Connected;
                        peer.failures = 0;
                        self.used.insert(addr);
                        self.stats.seeders_used = self.used.len();
                        self.fill(now, conn);
                    }
                    SeederState::Unavailable => {
                        debug!("{conn} {addr}: unavailable (busy)");
                        self.stats.busy_answers += 1;
                        self.drop_peer(now, conn, Retry::Busy);
                    }
                }
            }
            (PeerState::Connected, Message::Chunk { id, index, data }) if self.expects(conn, id, index) => {
                self.chunk(now, conn, index, data, disk)?;
            }
            (PeerState::Connected, Message::Reject { id, index, reason }) if self.expects(conn, id, index) => {
                warn!("{addr}: cannot serve chunk {index} of {}: {reason:?}; dropped for this file", self.meta.name());
                self.drop_peer(now, conn, Retry::Never);
            }
            (_, other) => {
                warn!("{addr}: protocol violation ({}); dropped for this file", describe(&other));
                self.drop_peer(now, conn, Retry::Never);
            }
        }
        Ok(())
    }

    /// The connection is gone (closed by either side, failed, idle).
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(peer) = self.peers.get(&conn) {
            if peer.state == PeerState::Connected {
                self.stats.lost_connections += 1;
                info!("{conn} {}: seeder connection lost; its chunks go to the others", peer.addr);
            }
            self.drop_peer(now, conn, Retry::Failed);
        }
    }

    /// Drops stalled and silent seeders, dials more. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stuck: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| match p.state {
                PeerState::Greeting { since } => now >= since + GREETING,
                PeerState::Connected => !p.in_flight.is_empty() && now >= p.last_data + STALL,
                PeerState::Dialling => false,
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in stuck {
            if let Some(p) = self.peers.get(&conn) {
                warn!("{conn} {}: stalled; its chunks go to the others", p.addr);
            }
            self.drop_peer(now, conn, Retry::Failed);
        }
        self.dial(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let peers = self.peers.values().filter_map(|p| match p.state {
            PeerState::Greeting { since } => Some(since + GREETING),
            PeerState::Connected if !p.in_flight.is_empty() => Some(p.last_data + STALL),
            _ => None,
        });
        let retries = self.known.values().filter_map(|k| match k {
            Known::Idle { retry_at, .. } if self.peers.len() < self.max_peers && !self.is_complete() => Some(*retry_at),
            _ => None,
        });
        peers.chain(retries).min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Closes every connection (the file is done or abandoned).
    pub fn close_all(&mut self) {
        for conn in self.peers.keys() {
            self.actions.push_back(Action::Close(*conn));
        }
        self.peers.clear();
    }

    fn expects(&self, conn: ConnId, id: ContentId, index: u32) -> bool {
        id == self.id && self.peers.get(&conn).and_then(|p| p.in_flight.front()) == Some(&index)
    }

    fn chunk(&mut self, now: Instant, conn: ConnId, index: u32, data: &[u8], disk: &mut dyn Disk) -> Result<(), Fatal> {
        let expected_len = self.meta.chunk_len(index).unwrap_or(0) as usize;
        let expected_hash = self.meta.hashes().get(index as usize).copied().unwrap_or_default();
        if data.len() != expected_len || Hash20::of(data) != expected_hash {
            self.stats.bad_chunks += 1;
            let addr = self.peers.get(&conn).map(|p| p.addr);
            warn!("{conn} {addr:?}: chunk {index} of {} failed its SHA-1 check; seeder dropped", self.meta.name());
            self.drop_peer(now, conn, Retry::Never);
            return Ok(());
        }
        disk.write(self.meta.chunk_offset(index), data)
            .map_err(|e| Fatal(format!("cannot write {}.part: {e}", self.meta.name())))?;
        if let Some(p) = self.peers.get_mut(&conn) {
            p.in_flight.pop_front();
            p.last_data = now;
        }
        self.last_alive = now;
        if self.picker.complete(index) {
            self.bytes_done += expected_len as u64;
        }
        self.fill(now, conn);
        Ok(())
    }

    /// Tops up a connected seeder's pipeline. An idle seeder given work
    /// starts a fresh stall window.
    fn fill(&mut self, now: Instant, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else { return };
        if peer.in_flight.is_empty() {
            peer.last_data = now;
        }
        while peer.in_flight.len() < self.depth {
            let Some(index) = self.picker.next() else { break };
            peer.in_flight.push_back(index);
            self.actions.push_back(Action::Request(conn, self.id, index));
        }
    }

    /// Dials known idle seeders while there is room.
    fn dial(&mut self, now: Instant) {
        if self.picker.is_complete() {
            return;
        }
        let mut ready: Vec<SocketAddr> = self
            .known
            .iter()
            .filter(|(_, k)| matches!(k, Known::Idle { retry_at, .. } if *retry_at <= now))
            .map(|(a, _)| *a)
            .collect();
        ready.sort();
        for addr in ready.into_iter().take(self.max_peers.saturating_sub(self.peers.len())) {
            if let Some(Known::Idle { failures, .. }) = self.known.get(&addr).copied() {
                // Remembered until the shell confirms with `handle_dialling`.
                self.known.insert(addr, Known::Idle { retry_at: now + MAX_FAIL_RETRY, failures });
                self.actions.push_back(Action::Connect(addr));
            }
        }
    }

    fn drop_peer(&mut self, now: Instant, conn: ConnId, retry: Retry) {
        let Some(peer) = self.peers.remove(&conn) else { return };
        for index in peer.in_flight.iter().rev() {
            self.picker.requeue(*index);
        }
        self.actions.push_back(Action::Close(conn));
        match retry {
            Retry::Never => {
                self.stats.seeders_banned += 1;
                self.known.insert(peer.addr, Known::Banned);
            }
            Retry::Busy => self.backoff(now, peer.addr, peer.failures, true),
            Retry::Failed => self.backoff(now, peer.addr, peer.failures, false),
        }
        // Requeued chunks go to seeders that have room now.
        let open: Vec<ConnId> =
            self.peers.iter().filter(|(_, p)| p.state == PeerState::Connected).map(|(c, _)| *c).collect();
        for c in open {
            self.fill(now, c);
        }
        self.dial(now);
    }

    /// Makes `addr` idle until a delay that doubles with each consecutive failure.
    fn backoff(&mut self, now: Instant, addr: SocketAddr, failures: u32, busy: bool) {
        if self.known.get(&addr) == Some(&Known::Banned) {
            return;
        }
        let failures = failures.saturating_add(1);
        let (base, max) = if busy { (BUSY_RETRY, MAX_BUSY_RETRY) } else { (FAIL_RETRY, MAX_FAIL_RETRY) };
        let delay = base.saturating_mul(1 << failures.min(6).saturating_sub(1)).min(max);
        self.known.insert(addr, Known::Idle { retry_at: now + delay, failures });
    }
}

enum Retry {
    /// Busy: try again soon.
    Busy,
    /// Connection failed or lost: try again later.
    Failed,
    /// Lied or cannot serve: never again for this file.
    Never,
}

fn describe(msg: &Message<'_>) -> String {
    match msg {
        Message::State { version, state } => format!("state {state:?} version {version}"),
        Message::Request { index, .. } => format!("request {index}"),
        Message::Chunk { index, data, .. } => format!("unexpected chunk {index} ({} bytes)", data.len()),
        Message::Reject { index, reason, .. } => format!("unexpected reject {index} {reason:?}"),
    }
}

#[cfg(test)]
mod tests;

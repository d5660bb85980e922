//! The leecher's sans-IO core: ask the catalog, check what it says, then
//! download the files one after another, asking the tracker for seeders
//! every interval while chunks remain.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::download::{Action, Download};
use super::output::Disk;
use crate::announce::{Announce, Announcer, Reply};
use crate::common::net::ConnId;
use crate::hash::ContentId;
use crate::meta::{check_name, FileMeta};
use crate::wire::catalog::{ListEntry, Request, Response, Selector};
use crate::wire::peer::Message;
use crate::wire::udp::Event;

/// Catalog connection attempts are this far apart.
const CATALOG_RETRY: Duration = Duration::from_secs(1);
/// Ask the tracker again this soon while no seeder is known at all.
const EAGER_ANNOUNCE: Duration = Duration::from_secs(1);
/// Peers asked of the tracker per announce.
const NUM_WANT: i32 = 50;
/// How long a finished leecher waits for its Completed announce to go out.
const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the catalog.
    List,
    /// Download these files.
    Get(Vec<Selector>),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tracker: SocketAddr,
    pub command: Command,
    /// Seeders connected at once per file.
    pub max_seeders: usize,
    /// Give up on a file when no seeder has shown life for this long.
    pub timeout: Duration,
    pub seed: u64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Datagram(Vec<u8>),
    OpenCatalog,
    CatalogSend(ConnId, Request),
    /// Dial a seeder; answer with `handle_dialling` or `handle_dial_failed`.
    Connect(SocketAddr),
    Request(ConnId, ContentId, u32),
    Close(ConnId),
}

/// What the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Listing(Vec<ListEntry>),
    Started { name: String, size: u64 },
    Finished { name: String, size: u64, elapsed: Duration, seeders: usize, bad_chunks: u64 },
    Failed { name: String, reason: String },
}

/// Where a running download stands, for the progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub name: String,
    pub size: u64,
    pub done: u64,
    pub seeders: usize,
    pub elapsed: Duration,
}

enum Phase {
    /// `unanswered`: the selectors still to resolve, asked again in full on a new connection.
    Catalog {
        conn: Option<ConnId>,
        unanswered: VecDeque<Selector>,
        retry_at: Option<Instant>,
        deadline: Instant,
    },
    Downloading {
        download: Box<Download>,
        next_announce: Instant,
    },
    /// Nothing left to do but let the last announce leave (at most [`LINGER`]).
    Done {
        since: Instant,
    },
}

pub struct Leecher<D: Disk> {
    config: Config,
    disk: D,
    announcer: Announcer,
    phase: Phase,
    queue: VecDeque<FileMeta>,
    interval: Duration,
    failures: usize,
    linger_over: bool,
    outputs: VecDeque<Output>,
    notes: VecDeque<Note>,
}

impl<D: Disk> Leecher<D> {
    pub fn new(config: Config, disk: D, now: Instant) -> Self {
        let mut leecher = Leecher {
            announcer: Announcer::new(config.tracker, config.seed),
            phase: Phase::Catalog {
                conn: None,
                unanswered: match &config.command {
                    Command::List => VecDeque::new(),
                    Command::Get(selectors) => selectors.iter().cloned().collect(),
                },
                retry_at: None,
                deadline: now + config.timeout,
            },
            config,
            disk,
            queue: VecDeque::new(),
            interval: Duration::from_secs(10),
            failures: 0,
            linger_over: false,
            outputs: VecDeque::new(),
            notes: VecDeque::new(),
        };
        leecher.outputs.push_back(Output::OpenCatalog);
        leecher
    }

    /// The catalog connection is open: ask everything still unanswered at once.
    pub fn handle_catalog_opened(&mut self, conn: ConnId) {
        let Phase::Catalog { conn: slot, unanswered, .. } = &mut self.phase else { return };
        *slot = Some(conn);
        if self.config.command == Command::List {
            self.outputs.push_back(Output::CatalogSend(conn, Request::List));
        }
        for s in unanswered.iter() {
            self.outputs.push_back(Output::CatalogSend(conn, Request::GetMeta(s.clone())));
        }
    }

    /// The catalog connection failed or closed before every answer came.
    pub fn handle_catalog_failed(&mut self, now: Instant) {
        if let Phase::Catalog { conn, retry_at, .. } = &mut self.phase {
            *conn = None;
            *retry_at = Some(now + CATALOG_RETRY);
        }
    }

    pub fn handle_catalog_response(&mut self, now: Instant, response: Response) {
        let Phase::Catalog { conn: Some(conn), unanswered, .. } = &mut self.phase else { return };
        let conn = *conn;
        if self.config.command == Command::List {
            match response {
                Response::List(entries) => self.notes.push_back(Note::Listing(entries)),
                other => self.fail_all(format!("tracker answered the list with {other:?}")),
            }
            self.outputs.push_back(Output::Close(conn));
            self.phase = Phase::Done { since: now };
            return;
        }
        let Some(selector) = unanswered.pop_front() else { return };
        let last = unanswered.is_empty();
        match checked_meta(&selector, response) {
            Ok(meta) => self.queue.push_back(meta),
            Err(reason) => self.fail(label(&selector), reason),
        }
        if last {
            self.outputs.push_back(Output::Close(conn));
            self.next_file(now);
        }
    }

    pub fn handle_dialling(&mut self, now: Instant, addr: SocketAddr, conn: ConnId) {
        if let Some(d) = self.download() {
            d.handle_dialling(now, addr, conn);
        }
        self.pump(now);
    }

    pub fn handle_dial_failed(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(d) = self.download() {
            d.handle_dial_failed(now, addr);
        }
        self.pump(now);
    }

    pub fn handle_peer_connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(d) = self.download() {
            d.handle_connected(now, conn);
        }
    }

    pub fn handle_peer_message(&mut self, now: Instant, conn: ConnId, msg: Message<'_>) {
        let Phase::Downloading { download, .. } = &mut self.phase else { return };
        if let Err(fatal) = download.handle_message(now, conn, msg, &mut self.disk) {
            let name = download.meta().name().to_string();
            download.close_all();
            self.pump(now);
            self.fail(name, fatal.0);
            self.next_file(now);
            return;
        }
        self.pump(now);
    }

    pub fn handle_peer_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(d) = self.download() {
            d.handle_closed(now, conn);
        }
        self.pump(now);
    }

    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.announcer.handle_datagram(now, data);
        self.pump(now);
    }

    /// Retries, re-announces, stalls and give-ups. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.announcer.handle_timeout(now);
        match &mut self.phase {
            Phase::Catalog { deadline, .. } if now >= *deadline => {
                let tracker = self.config.tracker;
                self.fail_all(format!("tracker catalog at {tracker} did not answer within {:?}", self.config.timeout));
                self.phase = Phase::Done { since: now };
            }
            Phase::Catalog { conn: None, retry_at: retry @ Some(_), .. } if retry.is_some_and(|at| now >= at) => {
                *retry = None;
                self.outputs.push_back(Output::OpenCatalog);
            }
            Phase::Downloading { download, next_announce } => {
                download.handle_timeout(now);
                if now >= download.last_alive + self.config.timeout {
                    let reason = format!("no seeder answered within {}s", self.config.timeout.as_secs());
                    let name = download.meta().name().to_string();
                    download.close_all();
                    self.pump(now);
                    self.fail(name, reason);
                    self.next_file(now);
                    return;
                }
                if now >= *next_announce {
                    let announce = Announce {
                        info_hash: download.id(),
                        left: download.remaining(),
                        event: Event::None,
                        port: 0,
                        num_want: NUM_WANT,
                    };
                    *next_announce = now + self.interval;
                    self.announcer.announce(now, announce);
                }
            }
            Phase::Done { since } if now >= *since + LINGER => self.linger_over = true,
            _ => {}
        }
        self.pump(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Catalog { retry_at, deadline, .. } => Some(retry_at.map_or(*deadline, |r| r.min(*deadline))),
            Phase::Downloading { download, next_announce } => {
                [Some(*next_announce), Some(download.last_alive + self.config.timeout), download.next_deadline()]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Done { since } => self.announcer.busy().then_some(*since + LINGER),
        };
        [phase, self.announcer.next_deadline()].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    pub fn progress(&self, now: Instant) -> Option<Progress> {
        let Phase::Downloading { download, .. } = &self.phase else { return None };
        Some(Progress {
            name: download.meta().name().to_string(),
            size: download.meta().size(),
            done: download.bytes_done,
            seeders: download.connected(),
            elapsed: now.saturating_duration_since(download.started),
        })
    }

    /// True once every file is done or failed and the last announce has
    /// left (or had [`LINGER`] to).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done { .. }) && (!self.announcer.busy() || self.linger_over)
    }

    /// Files that could not be downloaded.
    pub fn failures(&self) -> usize {
        self.failures
    }

    fn download(&mut self) -> Option<&mut Download> {
        match &mut self.phase {
            Phase::Downloading { download, .. } => Some(download),
            _ => None,
        }
    }

    /// Moves the current download's and the announcer's wishes to the outputs,
    /// and finishes the file once every chunk is in.
    fn pump(&mut self, now: Instant) {
        while let Some(reply) = self.announcer.poll_reply() {
            self.on_reply(now, reply);
        }
        if let Phase::Downloading { download, .. } = &mut self.phase {
            if download.is_complete() {
                download.close_all();
            }
            while let Some(action) = download.poll_action() {
                self.outputs.push_back(match action {
                    Action::Connect(addr) => Output::Connect(addr),
                    Action::Request(conn, id, index) => Output::Request(conn, id, index),
                    Action::Close(conn) => Output::Close(conn),
                });
            }
            if download.is_complete() {
                self.complete(now);
            }
        }
        while let Some(datagram) = self.announcer.poll_transmit() {
            self.outputs.push_back(Output::Datagram(datagram));
        }
    }

    fn on_reply(&mut self, now: Instant, reply: Reply) {
        match reply {
            Reply::Peers { info_hash, peers, interval, .. } => {
                self.interval = interval;
                if let Phase::Downloading { download, next_announce } = &mut self.phase {
                    // The tracker's interval replaces our default at once.
                    *next_announce = (*next_announce).min(now + interval);
                    if info_hash == download.id() {
                        debug!("tracker: {} seeder(s) for {}", peers.len(), download.meta().name());
                        if peers.is_empty() && download.connected() == 0 {
                            *next_announce = (*next_announce).min(now + EAGER_ANNOUNCE);
                        }
                        download.add_seeders(now, &peers);
                    }
                }
            }
            Reply::Refused { message, .. } => warn!("tracker refused our announce: {message}"),
            Reply::Reconnected | Reply::Timeout => {}
        }
    }

    fn complete(&mut self, now: Instant) {
        let Phase::Downloading { download, .. } = &self.phase else { return };
        let meta = download.meta().clone();
        let (elapsed, stats) = (now.saturating_duration_since(download.started), download.stats.clone());
        match self.disk.finish() {
            Ok(()) => {
                info!("{}: complete and verified", meta.name());
                self.notes.push_back(Note::Finished {
                    name: meta.name().to_string(),
                    size: meta.size(),
                    elapsed,
                    seeders: stats.seeders_used,
                    bad_chunks: stats.bad_chunks,
                });
                let done =
                    Announce { info_hash: meta.content_id(), left: 0, event: Event::Completed, port: 0, num_want: 0 };
                self.announcer.announce(now, done);
            }
            Err(e) => self.fail(meta.name().to_string(), format!("cannot finish {}: {e}", meta.name())),
        }
        self.next_file(now);
    }

    /// Starts the next queued file, or ends.
    fn next_file(&mut self, now: Instant) {
        self.phase = Phase::Done { since: now };
        while let Some(meta) = self.queue.pop_front() {
            if let Err(e) = self.disk.create(meta.name(), meta.size()) {
                self.fail(meta.name().to_string(), format!("cannot create {}.part: {e}", meta.name()));
                continue;
            }
            self.notes.push_back(Note::Started { name: meta.name().to_string(), size: meta.size() });
            let download = Download::new(meta, self.config.max_seeders, now);
            let announce = Announce {
                info_hash: download.id(),
                left: download.remaining(),
                event: Event::Started,
                port: 0,
                num_want: NUM_WANT,
            };
            self.announcer.announce(now, announce);
            self.phase = Phase::Downloading { download: Box::new(download), next_announce: now + self.interval };
            break;
        }
        self.pump(now);
    }

    fn fail(&mut self, name: String, reason: String) {
        self.failures += 1;
        self.notes.push_back(Note::Failed { name, reason });
    }

    fn fail_all(&mut self, reason: String) {
        match self.config.command.clone() {
            Command::List => self.fail("list".into(), reason),
            Command::Get(selectors) => {
                for s in selectors {
                    self.fail(label(&s), reason.clone());
                }
            }
        }
    }
}

/// Checks the catalog's answer: it must be the file asked for, by name or by
/// content id, and its name must be safe to create in the output directory.
fn checked_meta(selector: &Selector, response: Response) -> Result<FileMeta, String> {
    let meta = match response {
        Response::Meta(meta) => meta,
        Response::Error { message, .. } => return Err(format!("tracker: {message}")),
        other => return Err(format!("tracker answered with {other:?}")),
    };
    let matches = match selector {
        Selector::Name(name) => meta.name() == name,
        Selector::Id(id) => meta.content_id() == *id,
    };
    if !matches {
        return Err("tracker returned metadata for a different file".into());
    }
    check_name(meta.name()).map_err(|e| format!("refusing to write it: {e}"))?;
    Ok(meta)
}

fn label(selector: &Selector) -> String {
    match selector {
        Selector::Name(name) => name.clone(),
        Selector::Id(id) => id.to_hex(),
    }
}

#[cfg(test)]
mod tests;

//! The leecher's sans-IO core: ask the catalog, check what it says, then
//! hand the files to the peer core one after another. A finished file keeps
//! being served while the next downloads, until its seeding goal is met.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::common::net::ConnId;
use crate::hash::ContentId;
use crate::meta::{check_name, FileMeta};
use crate::peer::bitfield::Bitfield;
use crate::peer::machine::{Config as PeerConfig, Event, Machine};
use crate::peer::storage::Storage;
use crate::peer::torrent::{Counters, Goal};
use crate::wire::catalog::{ErrorCode, ListEntry, Request, Response, Selector};

/// Catalog connection attempts are this far apart.
const CATALOG_RETRY: Duration = Duration::from_secs(1);
/// With `wait`, a download another process writes is tried again this often.
const LOCK_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the catalog.
    List,
    /// Download these files.
    Get(Vec<Selector>),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub command: Command,
    pub peer: PeerConfig,
    /// After a file is complete: serve it until this ratio or time.
    pub goal: Goal,
    /// A download another process writes: wait for it rather than give up.
    pub wait: bool,
}

/// What opening a download found.
pub enum Opened {
    /// The file is complete under its final name already.
    Complete,
    /// Go on fetching: `have` are the chunks verified present.
    Part { storage: Box<dyn Storage>, have: Bitfield },
    /// Another process writes this download; `holder` names it.
    Busy { holder: String },
}

/// Opens the storage of a download; the real one is `scratch::Dir`.
pub trait Disk {
    fn open(&mut self, meta: &FileMeta) -> Result<Opened, String>;
}

/// What the shell must do for the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    OpenCatalog,
    CatalogSend(ConnId, Request),
    Close(ConnId),
}

/// What the user is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Listing(Vec<ListEntry>),
    /// `resumed` of `chunks` were verified present at start.
    Started {
        id: ContentId,
        name: String,
        size: u64,
        resumed: u32,
        chunks: u32,
    },
    AlreadyComplete {
        name: String,
    },
    Waiting {
        name: String,
        holder: String,
    },
    Done {
        id: ContentId,
        name: String,
        size: u64,
        elapsed: Duration,
        counters: Counters,
    },
    /// A complete file's seeding is over.
    Seeded {
        id: ContentId,
        name: String,
        size: u64,
        counters: Counters,
    },
    Failed {
        name: String,
        reason: String,
    },
}

/// Asking the catalog for the files of a `get` (or the list).
struct Lookup {
    conn: Option<ConnId>,
    /// The selectors still to resolve, asked again in full on a new connection.
    unanswered: VecDeque<Selector>,
    /// Names the catalog does not have yet, asked again at `retry_at` until
    /// `deadline`, with the tracker's last word on them.
    absent: Vec<(Selector, String)>,
    /// Names the user was told are waited for.
    told: Vec<Selector>,
    /// Reconnect, or ask the absent names again, then.
    retry_at: Option<Instant>,
    deadline: Instant,
    /// A List asked to resolve content-id prefixes is unanswered.
    listing: bool,
    /// Prefixes were resolved (or there were none).
    resolved: bool,
}

enum Phase {
    Catalog(Lookup),
    /// Downloading `current` (if any) while finished files seed.
    Trading {
        current: Option<ContentId>,
    },
}

pub struct Leecher<D: Disk> {
    config: Config,
    disk: D,
    pub peer: Machine,
    phase: Phase,
    queue: VecDeque<FileMeta>,
    failures: usize,
    stopping: bool,
    /// Waiting for another process's lock on the next file: try again then.
    retry_open: Option<Instant>,
    outputs: VecDeque<Output>,
    notes: VecDeque<Note>,
}

impl<D: Disk> Leecher<D> {
    pub fn new(config: Config, disk: D, now: Instant) -> Self {
        let unanswered: VecDeque<Selector> = match &config.command {
            Command::List => VecDeque::new(),
            Command::Get(selectors) => selectors.iter().cloned().collect(),
        };
        let resolved = !unanswered.iter().any(|s| id_prefix(s).is_some());
        let deadline = now + config.peer.timeout;
        let lookup = Lookup {
            conn: None,
            unanswered,
            absent: Vec::new(),
            told: Vec::new(),
            retry_at: None,
            deadline,
            listing: false,
            resolved,
        };
        let mut leecher = Leecher {
            peer: Machine::new(config.peer.clone(), now),
            phase: Phase::Catalog(lookup),
            config,
            disk,
            queue: VecDeque::new(),
            failures: 0,
            stopping: false,
            retry_open: None,
            outputs: VecDeque::new(),
            notes: VecDeque::new(),
        };
        leecher.outputs.push_back(Output::OpenCatalog);
        leecher
    }

    /// The catalog connection is open: ask everything still unanswered at
    /// once (first the list, if a content-id prefix is to be resolved).
    pub fn handle_catalog_opened(&mut self, conn: ConnId) {
        let Phase::Catalog(lookup) = &mut self.phase else { return };
        lookup.conn = Some(conn);
        if self.config.command == Command::List || !lookup.resolved {
            lookup.listing = !lookup.resolved;
            self.outputs.push_back(Output::CatalogSend(conn, Request::List));
            return;
        }
        for s in lookup.unanswered.iter() {
            self.outputs.push_back(Output::CatalogSend(conn, Request::GetMeta(s.clone())));
        }
    }

    /// The catalog connection failed or closed before every answer came:
    /// try again in a second, or, when `refused` names why it could not be
    /// opened at all (refused, unreachable), give up at once saying so.
    pub fn handle_catalog_failed(&mut self, now: Instant, refused: Option<String>) {
        let Phase::Catalog(lookup) = &mut self.phase else { return };
        lookup.conn = None;
        lookup.listing = false;
        match refused {
            Some(why) => {
                let reason = format!("cannot reach the tracker's catalog at {}: {why}", self.config.peer.tracker);
                self.give_up_lookup(now, &reason);
            }
            None => lookup.retry_at = Some(now + CATALOG_RETRY),
        }
    }

    pub fn handle_catalog_response(&mut self, now: Instant, response: Response) {
        let Phase::Catalog(lookup) = &mut self.phase else { return };
        let Some(conn) = lookup.conn else { return };
        if self.config.command == Command::List {
            match response {
                Response::List(entries) => self.notes.push_back(Note::Listing(entries)),
                other => self.fail_all(format!("tracker answered the list with {}", other.summary())),
            }
            self.outputs.push_back(Output::Close(conn));
            self.phase = Phase::Trading { current: None };
            return;
        }
        if lookup.listing {
            (lookup.listing, lookup.resolved) = (false, true);
            let entries = match response {
                Response::List(entries) => entries,
                _ => Vec::new(),
            };
            let mut failed = Vec::new();
            lookup.unanswered.retain_mut(|s| match resolve_prefix(s, &entries) {
                Ok(None) => true,
                Ok(Some(id)) => {
                    *s = Selector::Id(id);
                    true
                }
                Err(reason) => {
                    failed.push((label(s), reason));
                    false
                }
            });
            for s in lookup.unanswered.iter() {
                self.outputs.push_back(Output::CatalogSend(conn, Request::GetMeta(s.clone())));
            }
            for (name, reason) in failed {
                self.fail(name, reason);
            }
            self.lookup_step(now);
            return;
        }
        let Some(selector) = lookup.unanswered.pop_front() else { return };
        match checked_meta(&selector, response) {
            // A file named twice (by name and by id, say) is fetched once.
            Ok(meta) if self.queue.iter().any(|q| q.content_id() == meta.content_id()) => {}
            Ok(meta) if self.peer.files().any(|id| id == meta.content_id()) => {}
            Ok(meta) => self.queue.push_back(meta),
            Err(Absent(why)) if now < lookup.deadline => {
                if !lookup.told.contains(&selector) {
                    lookup.told.push(selector.clone());
                    let holder = format!(
                        "not in the catalog yet; asking again until it is, for up to {} (--timeout)",
                        crate::common::fmt::duration(lookup.deadline.saturating_duration_since(now))
                    );
                    self.notes.push_back(Note::Waiting { name: label(&selector), holder });
                }
                lookup.absent.push((selector, why));
            }
            Err(Absent(why)) => self.fail(label(&selector), format!("tracker: {why}")),
            Err(Refused(reason)) => self.fail(label(&selector), reason),
        }
        self.lookup_step(now);
    }

    /// After an answer: with every selector answered, either wait to ask
    /// the absent names again, or close the catalog and start the downloads.
    fn lookup_step(&mut self, now: Instant) {
        let Phase::Catalog(lookup) = &mut self.phase else { return };
        if !lookup.unanswered.is_empty() || lookup.listing {
            return;
        }
        if !lookup.absent.is_empty() {
            lookup.retry_at = Some(now + CATALOG_RETRY);
            return;
        }
        if let Some(conn) = lookup.conn {
            self.outputs.push_back(Output::Close(conn));
        }
        self.phase = Phase::Trading { current: None };
        self.next_file(now);
    }

    /// The lookup's deadline passed: what is unanswered or absent fails, the rest downloads.
    fn give_up_lookup(&mut self, now: Instant, unanswered_reason: &str) {
        let Phase::Catalog(lookup) = &mut self.phase else { return };
        let unanswered: Vec<Selector> = lookup.unanswered.drain(..).collect();
        let absent = std::mem::take(&mut lookup.absent);
        let waited = self.config.peer.timeout;
        if self.config.command == Command::List {
            self.fail_all(unanswered_reason.to_string());
        }
        for s in unanswered {
            self.fail(label(&s), unanswered_reason.to_string());
        }
        for (s, why) in absent {
            self.fail(label(&s), format!("tracker: {why} (waited {})", crate::common::fmt::duration(waited)));
        }
        if let Phase::Catalog(lookup) = &mut self.phase {
            lookup.listing = false;
        }
        self.lookup_step(now);
    }

    /// Catalog retries and give-up, then the peer core's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Catalog(lookup) = &mut self.phase {
            if now >= lookup.deadline {
                let reason = format!("tracker catalog did not answer within {:?}", self.config.peer.timeout);
                self.give_up_lookup(now, &reason);
            } else if lookup.retry_at.is_some_and(|at| now >= at) {
                lookup.retry_at = None;
                let again: Vec<Selector> = std::mem::take(&mut lookup.absent).into_iter().map(|(s, _)| s).collect();
                match lookup.conn {
                    Some(conn) => {
                        for s in &again {
                            self.outputs.push_back(Output::CatalogSend(conn, Request::GetMeta(s.clone())));
                        }
                    }
                    None => self.outputs.push_back(Output::OpenCatalog),
                }
                lookup.unanswered.extend(again);
            }
        }
        if self.retry_open.is_some_and(|at| now >= at) {
            self.next_file(now);
        }
        self.peer.handle_timeout(now);
        self.after_peer(now);
    }

    /// Reads what the peer core reported: a file complete or failed starts
    /// the next; a file done seeding is reported. Call after every peer input.
    pub fn after_peer(&mut self, now: Instant) {
        while let Some(event) = self.peer.poll_event() {
            match event {
                Event::Complete { id, name, size, elapsed, counters } => {
                    self.notes.push_back(Note::Done { id, name, size, elapsed, counters });
                    self.current_ended(now, id);
                }
                Event::Failed { id, name, reason } => {
                    self.fail(name, reason);
                    self.current_ended(now, id);
                }
                // The file downloading now never completed: nothing was seeded.
                Event::Finished { id, .. } if self.current() == Some(id) => self.current_ended(now, id),
                Event::Finished { id, name, size, counters } => {
                    self.notes.push_back(Note::Seeded { id, name, size, counters });
                }
                Event::Reconnected => {}
            }
        }
    }

    /// Ctrl-C: leave every swarm.
    pub fn shutdown(&mut self, now: Instant) {
        self.stopping = true;
        self.queue.clear();
        self.retry_open = None;
        if let Phase::Catalog(Lookup { conn: Some(conn), .. }) = self.phase {
            self.outputs.push_back(Output::Close(conn));
        }
        // While `current` still names the file downloading, so that leaving
        // it is not reported as seeding over.
        self.peer.shutdown(now);
        self.after_peer(now);
        self.phase = Phase::Trading { current: None };
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Catalog(l) => Some(l.retry_at.map_or(l.deadline, |r| r.min(l.deadline))),
            Phase::Trading { .. } => None,
        };
        [phase, self.retry_open, self.peer.next_deadline()].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_note(&mut self) -> Option<Note> {
        self.notes.pop_front()
    }

    /// The file being downloaded, if any.
    pub fn current(&self) -> Option<ContentId> {
        match self.phase {
            Phase::Trading { current } => current,
            Phase::Catalog(_) => None,
        }
    }

    /// True once every file is done (downloaded and seeded) or failed, and
    /// the last announce has left.
    pub fn finished(&self, now: Instant) -> bool {
        if self.stopping {
            return self.peer.stopped(now);
        }
        matches!(self.phase, Phase::Trading { current: None })
            && self.queue.is_empty()
            && self.peer.files().next().is_none()
            && !self.peer.announcing()
    }

    /// True while every file asked for is done (complete or failed) and
    /// some are still served to other peers.
    pub fn only_seeding(&self) -> bool {
        matches!(self.phase, Phase::Trading { current: None })
            && self.queue.is_empty()
            && self.retry_open.is_none()
            && self.peer.files().next().is_some()
    }

    /// Files that could not be downloaded.
    pub fn failures(&self) -> usize {
        self.failures
    }

    fn current_ended(&mut self, now: Instant, id: ContentId) {
        if self.current() == Some(id) {
            self.phase = Phase::Trading { current: None };
            self.next_file(now);
        }
    }

    /// Starts the next queued file, if none is downloading.
    fn next_file(&mut self, now: Instant) {
        if self.current().is_some() || self.stopping {
            return;
        }
        while let Some(meta) = self.queue.pop_front() {
            let name = meta.name().to_string();
            let opened = self.disk.open(&meta);
            if !matches!(opened, Ok(Opened::Busy { .. })) {
                self.retry_open = None;
            }
            let (storage, have) = match opened {
                Ok(Opened::Part { storage, have }) => (storage, have),
                Ok(Opened::Complete) => {
                    self.notes.push_back(Note::AlreadyComplete { name });
                    continue;
                }
                Ok(Opened::Busy { holder }) if self.config.wait => {
                    if self.retry_open.is_none() {
                        self.notes.push_back(Note::Waiting { name, holder });
                    }
                    self.queue.push_front(meta);
                    self.retry_open = Some(now + LOCK_RETRY);
                    return;
                }
                Ok(Opened::Busy { holder }) => {
                    self.fail(name, format!("{holder}; not starting a second writer (--wait waits for it)"));
                    continue;
                }
                Err(reason) => {
                    self.fail(name, reason);
                    continue;
                }
            };
            let id = meta.content_id();
            let (resumed, chunks) = (have.count(), meta.chunk_count());
            self.notes.push_back(Note::Started { id, name, size: meta.size(), resumed, chunks });
            self.phase = Phase::Trading { current: Some(id) };
            self.peer.add(now, meta, storage, have, self.config.goal);
            self.after_peer(now);
            return;
        }
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

/// Why a catalog answer gave no file.
enum NoMeta {
    /// The catalog has no file of that name or content id (yet).
    Absent(String),
    Refused(String),
}
use NoMeta::{Absent, Refused};

/// Checks the catalog's answer: it must be the file asked for, by name or by
/// content id, and its name must be safe to create in the output directory.
fn checked_meta(selector: &Selector, response: Response) -> Result<FileMeta, NoMeta> {
    let meta = match response {
        Response::Meta(meta) => meta,
        Response::Error { code: ErrorCode::NotFound, message } => return Err(Absent(message)),
        Response::Error { message, .. } => return Err(Refused(format!("tracker: {message}"))),
        other => return Err(Refused(format!("tracker answered with {}", other.summary()))),
    };
    let matches = match selector {
        Selector::Name(name) => meta.name() == name,
        Selector::Id(id) => meta.content_id() == *id,
    };
    if !matches {
        return Err(Refused("tracker returned metadata for a different file".into()));
    }
    check_name(meta.name()).map_err(|e| Refused(format!("refusing to write it: {e}")))?;
    Ok(meta)
}

/// Shortest content-id prefix `get` takes (the tracker's table shows 12 digits).
pub const MIN_ID_PREFIX: usize = 8;

/// The lowercase prefix if `selector` is a name of 8 to 39 hex digits: it may
/// be the start of a content id.
fn id_prefix(selector: &Selector) -> Option<String> {
    let Selector::Name(name) = selector else { return None };
    let hex = (MIN_ID_PREFIX..40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| name.to_ascii_lowercase())
}

/// A prefix names the one listed file whose content id starts with it; a
/// prefix no id starts with stays a name; one that several start with is an error.
fn resolve_prefix(selector: &Selector, entries: &[ListEntry]) -> Result<Option<ContentId>, String> {
    let Some(prefix) = id_prefix(selector) else { return Ok(None) };
    let mut ids: Vec<ContentId> = entries.iter().map(|e| e.id).filter(|id| id.to_hex().starts_with(&prefix)).collect();
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(*id)),
        more => Err(format!(
            "content id prefix {prefix} is ambiguous: {}",
            more.iter().map(|id| id.to_hex()).collect::<Vec<_>>().join(" ")
        )),
    }
}

fn label(selector: &Selector) -> String {
    match selector {
        Selector::Name(name) => name.clone(),
        Selector::Id(id) => id.to_hex(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;
    use crate::sim::content::Content;

    struct Mem;

    impl Disk for Mem {
        fn open(&mut self, meta: &FileMeta) -> Result<Opened, String> {
            let content = Content::with_bytes(meta.name(), meta.size(), meta.chunk_size(), 1).unwrap();
            let storage = Box::new(content.store(None, Bitfield::new(meta.chunk_count())));
            Ok(Opened::Part { storage, have: Bitfield::new(meta.chunk_count()) })
        }
    }

    fn config(command: Command) -> Config {
        let peer = PeerConfig {
            tracker: "127.0.0.1:6969".parse().unwrap(),
            port: 7000,
            slots: 8,
            max_peers: 50,
            max_inbound: 128,
            up_limit: None,
            down_limit: None,
            timeout: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            seed: 1,
        };
        Config { command, peer, goal: Goal::AT_ONCE, wait: false }
    }

    fn meta(name: &str) -> FileMeta {
        FileMeta::new(name.into(), 10, 16384, vec![Hash20::of(name.as_bytes())]).unwrap()
    }

    fn outputs<D: Disk>(l: &mut Leecher<D>) -> Vec<Output> {
        std::iter::from_fn(|| l.poll_output()).collect()
    }

    fn notes<D: Disk>(l: &mut Leecher<D>) -> Vec<Note> {
        std::iter::from_fn(|| l.poll_note()).collect()
    }

    /// Ctrl-C during a download: the file never completed, so it is not
    /// reported as seeded (`seeded, 0 B uploaded`), and nothing is only seeding.
    #[test]
    fn an_incomplete_file_is_not_reported_seeded() {
        let t0 = Instant::now();
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name("a".into())])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        l.handle_catalog_response(t0, Response::Meta(meta("a")));
        assert!(matches!(notes(&mut l).as_slice(), [Note::Started { .. }]));
        assert!(!l.only_seeding(), "downloading");
        l.shutdown(t0);
        let notes = notes(&mut l);
        assert!(!notes.iter().any(|n| matches!(n, Note::Seeded { .. })), "{notes:?}");
    }

    /// `get 3fb3da7e`: the list is asked first, and the one file whose
    /// content id starts with it is fetched by id; two such files are an error.
    #[test]
    fn a_content_id_prefix_is_resolved_through_the_list() {
        let t0 = Instant::now();
        let (a, b) = (meta("a"), meta("b"));
        let entry = |m: &FileMeta| ListEntry {
            id: m.content_id(),
            name: m.name().into(),
            size: m.size(),
            chunk_size: m.chunk_size(),
            seeders: 1,
        };
        let prefix = a.content_id().to_hex()[..8].to_uppercase();
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name(prefix)])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        assert_eq!(outputs(&mut l), [Output::CatalogSend(ConnId(1), Request::List)]);
        l.handle_catalog_response(t0, Response::List(vec![entry(&a), entry(&b)]));
        let asked = Request::GetMeta(Selector::Id(a.content_id()));
        assert_eq!(outputs(&mut l), [Output::CatalogSend(ConnId(1), asked)]);
        l.handle_catalog_response(t0, Response::Meta(a.clone()));
        assert!(matches!(notes(&mut l).as_slice(), [Note::Started { name, .. }] if name == "a"));

        // Two ids share the prefix: ambiguous, named.
        let shared = a.content_id().to_hex()[..8].to_string();
        let twin =
            ListEntry { name: "twin".into(), id: format!("{shared}{}", "0".repeat(32)).parse().unwrap(), ..entry(&b) };
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name(shared)])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        outputs(&mut l);
        l.handle_catalog_response(t0, Response::List(vec![entry(&a), twin]));
        assert!(matches!(notes(&mut l).as_slice(), [Note::Failed { reason, .. }] if reason.contains("ambiguous")));
        assert_eq!(l.failures(), 1);
    }

    /// A name the catalog does not have yet is asked again every second
    /// until `--timeout`, saying so once, and fetched once it is there.
    #[test]
    fn a_name_not_yet_in_the_catalog_is_waited_for() {
        let t0 = Instant::now();
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name("a".into())])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        outputs(&mut l);
        let absent = || Response::Error { code: ErrorCode::NotFound, message: "no such file".into() };
        l.handle_catalog_response(t0, absent());
        assert!(
            matches!(notes(&mut l).as_slice(), [Note::Waiting { holder, .. }] if holder.contains("not in the catalog yet"))
        );
        assert_eq!(l.next_deadline(), Some(t0 + CATALOG_RETRY));
        l.handle_timeout(t0 + CATALOG_RETRY);
        let again = Output::CatalogSend(ConnId(1), Request::GetMeta(Selector::Name("a".into())));
        assert_eq!(outputs(&mut l), [again]);
        l.handle_catalog_response(t0 + CATALOG_RETRY, absent());
        assert_eq!(notes(&mut l), [], "said once");
        l.handle_timeout(t0 + CATALOG_RETRY * 2);
        outputs(&mut l);
        l.handle_catalog_response(t0 + CATALOG_RETRY * 2, Response::Meta(meta("a")));
        assert!(matches!(notes(&mut l).as_slice(), [Note::Started { .. }]));
        assert_eq!(l.failures(), 0);

        // Never published: fails at the timeout, saying it waited.
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name("a".into())])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        l.handle_catalog_response(t0, absent());
        notes(&mut l);
        l.handle_timeout(t0 + Duration::from_secs(30));
        assert!(
            matches!(notes(&mut l).as_slice(), [Note::Failed { reason, .. }] if reason.contains("no such file (waited 30.0s)"))
        );
    }

    /// Nothing listens at the tracker's address: the reason, at once.
    #[test]
    fn a_refused_catalog_connection_fails_at_once() {
        let t0 = Instant::now();
        let mut l = Leecher::new(config(Command::List), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_failed(t0, Some("connection refused".into()));
        let notes = notes(&mut l);
        assert!(
            matches!(notes.as_slice(), [Note::Failed { reason, .. }] if reason == "cannot reach the tracker's catalog at 127.0.0.1:6969: connection refused"),
            "{notes:?}"
        );
        assert!(l.finished(t0));
        // A connection that closes after opening is tried again.
        let mut l = Leecher::new(config(Command::List), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_failed(t0, None);
        assert_eq!(l.next_deadline(), Some(t0 + CATALOG_RETRY));
    }

    #[test]
    fn list_asks_once_and_closes() {
        let t0 = Instant::now();
        let mut l = Leecher::new(config(Command::List), Mem, t0);
        assert_eq!(outputs(&mut l), [Output::OpenCatalog]);
        l.handle_catalog_opened(ConnId(1));
        assert_eq!(outputs(&mut l), [Output::CatalogSend(ConnId(1), Request::List)]);
        l.handle_catalog_response(t0, Response::List(Vec::new()));
        assert_eq!(outputs(&mut l), [Output::Close(ConnId(1))]);
        assert_eq!(notes(&mut l), [Note::Listing(Vec::new())]);
        assert!(l.finished(t0));
        assert_eq!(l.failures(), 0);
    }

    #[test]
    fn metadata_must_be_the_file_asked_for_and_safe_to_write() {
        let t0 = Instant::now();
        let asked =
            vec![Selector::Name("a".into()), Selector::Name("../x".into()), Selector::Id(meta("c").content_id())];
        let mut l = Leecher::new(config(Command::Get(asked)), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        assert_eq!(outputs(&mut l).len(), 3, "every selector asked at once");
        l.handle_catalog_response(t0, Response::Meta(meta("b")));
        l.handle_catalog_response(t0, Response::Meta(meta("../x")));
        l.handle_catalog_response(t0, Response::Meta(meta("c")));
        let notes = notes(&mut l);
        let failed: Vec<&str> = notes
            .iter()
            .filter_map(|n| match n {
                Note::Failed { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 2, "{notes:?}");
        assert!(failed[0].contains("different file"), "{failed:?}");
        assert!(failed[1].contains("refusing"), "{failed:?}");
        assert!(matches!(notes.last(), Some(Note::Started { name, .. }) if name == "c"), "{notes:?}");
        assert_eq!(l.current(), Some(meta("c").content_id()));
    }

    #[test]
    fn a_file_named_twice_is_fetched_once() {
        let t0 = Instant::now();
        let asked = vec![Selector::Name("a".into()), Selector::Id(meta("a").content_id()), Selector::Name("a".into())];
        let mut l = Leecher::new(config(Command::Get(asked)), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        for _ in 0..3 {
            l.handle_catalog_response(t0, Response::Meta(meta("a")));
        }
        let started = notes(&mut l).iter().filter(|n| matches!(n, Note::Started { .. })).count();
        assert_eq!(started, 1);
        assert!(l.queue.is_empty(), "nothing left to start");
    }

    #[test]
    fn a_name_two_files_claim_fails_naming_both_and_an_id_still_works() {
        let t0 = Instant::now();
        let (real, squat) = (meta("a").content_id(), Hash20::of(b"squat"));
        let asked = vec![Selector::Name("a".into()), Selector::Id(real)];
        let mut l = Leecher::new(config(Command::Get(asked)), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        let message = format!("2 files claim that name; get one by content id: {real} {squat}");
        l.handle_catalog_response(t0, Response::Error { code: ErrorCode::Ambiguous, message });
        l.handle_catalog_response(t0, Response::Meta(meta("a")));
        let notes = notes(&mut l);
        assert!(
            matches!(&notes[0], Note::Failed { name, reason }
                if name == "a" && reason.contains(&real.to_hex()) && reason.contains(&squat.to_hex())),
            "{notes:?}"
        );
        assert!(matches!(&notes[1], Note::Started { id, .. } if *id == real), "{notes:?}");
    }

    #[test]
    fn a_lost_catalog_is_retried_then_given_up() {
        let t0 = Instant::now();
        let mut l = Leecher::new(config(Command::Get(vec![Selector::Name("a".into())])), Mem, t0);
        outputs(&mut l);
        l.handle_catalog_failed(t0, None);
        l.handle_timeout(t0 + CATALOG_RETRY - Duration::from_millis(1));
        assert!(!outputs(&mut l).contains(&Output::OpenCatalog), "not a tick early");
        l.handle_timeout(t0 + CATALOG_RETRY);
        assert!(outputs(&mut l).contains(&Output::OpenCatalog));
        l.handle_timeout(t0 + Duration::from_secs(30));
        assert!(matches!(notes(&mut l).as_slice(), [Note::Failed { reason, .. }] if reason.contains("did not answer")));
        assert_eq!(l.failures(), 1);
        assert!(l.finished(t0 + Duration::from_secs(30)));
    }

    /// Busy for the first `busy` opens, then a fresh download.
    struct Locked {
        busy: u32,
    }

    impl Disk for Locked {
        fn open(&mut self, meta: &FileMeta) -> Result<Opened, String> {
            if self.busy > 0 {
                self.busy -= 1;
                return Ok(Opened::Busy { holder: "process 7 is downloading it".into() });
            }
            Mem.open(meta)
        }
    }

    fn answered(wait: bool, busy: u32, t0: Instant) -> Leecher<Locked> {
        let mut config = config(Command::Get(vec![Selector::Name("a".into())]));
        config.wait = wait;
        let mut l = Leecher::new(config, Locked { busy }, t0);
        outputs(&mut l);
        l.handle_catalog_opened(ConnId(1));
        l.handle_catalog_response(t0, Response::Meta(meta("a")));
        l
    }

    #[test]
    fn a_file_another_process_writes_fails_or_is_waited_for() {
        let t0 = Instant::now();
        let mut l = answered(false, 1, t0);
        assert!(matches!(notes(&mut l).as_slice(), [Note::Failed { reason, .. }] if reason.contains("process 7")));
        assert_eq!(l.failures(), 1);

        let mut l = answered(true, 2, t0);
        assert!(matches!(notes(&mut l).as_slice(), [Note::Waiting { .. }]));
        assert_eq!(l.next_deadline().map(|d| d <= t0 + LOCK_RETRY), Some(true));
        l.handle_timeout(t0 + LOCK_RETRY - Duration::from_millis(1));
        l.handle_timeout(t0 + LOCK_RETRY);
        assert!(notes(&mut l).is_empty(), "still busy: waiting is said once");
        assert_eq!(l.current(), None);
        l.handle_timeout(t0 + LOCK_RETRY * 2);
        assert!(matches!(notes(&mut l).as_slice(), [Note::Started { name, .. }] if name == "a"));
        assert_eq!(l.failures(), 0);
    }
}

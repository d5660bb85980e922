//! The seeder's catalog client, sans-IO: publishes every shared file's
//! metadata over one short TCP connection to the tracker (signed over the
//! tracker's challenge when it has a publish key), retries what failed or was
//! refused with a doubling delay, and publishes again when the tracker restarts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::common::fmt as human;
use crate::common::net::ConnId;
use crate::common::publish_key::PublishKey;
use crate::common::text::escape;
use crate::hash::ContentId;
use crate::meta::FileMeta;
use crate::wire::catalog::{ErrorCode, Nonce, Request, Response};

/// A publish not finished in this long is abandoned and retried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay before a failed or refused publish is tried again; it doubles up to
/// [`MAX_RETRY`] while publishes keep failing and starts over once one succeeds.
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the tracker; answer with `handle_opened` or `handle_failed`.
    Open,
    Send(ConnId, Request),
    Close(ConnId),
}

enum Phase {
    Needed {
        at: Instant,
    },
    Opening {
        since: Instant,
    },
    /// Waiting for the tracker's challenge (with a publish key only).
    Challenging {
        conn: ConnId,
        since: Instant,
    },
    /// `sent`: the files asked for, in the order the answers come.
    Sending {
        conn: ConnId,
        sent: VecDeque<ContentId>,
        refused: usize,
        since: Instant,
    },
    Done,
}

struct Shared {
    meta: FileMeta,
    /// The tracker holds it (since its last restart).
    published: bool,
}

pub struct Publisher {
    tracker: SocketAddr,
    key: Option<PublishKey>,
    files: Vec<Shared>,
    phase: Phase,
    /// The delay of the next retry.
    backoff: Duration,
    stopping: bool,
    outputs: VecDeque<Output>,
    /// Completed publishes of every file (more than one after tracker restarts).
    pub publishes: u64,
}

impl Publisher {
    pub fn new(tracker: SocketAddr, key: Option<PublishKey>, files: Vec<FileMeta>, now: Instant) -> Publisher {
        Publisher {
            tracker,
            key,
            files: files.into_iter().map(|meta| Shared { meta, published: false }).collect(),
            phase: Phase::Needed { at: now },
            backoff: RETRY,
            stopping: false,
            outputs: VecDeque::new(),
            publishes: 0,
        }
    }

    /// The connection is open: ask for a challenge (with a key) or send
    /// every file not yet published.
    pub fn handle_opened(&mut self, now: Instant, conn: ConnId) {
        if self.key.is_some() {
            self.phase = Phase::Challenging { conn, since: now };
            self.outputs.push_back(Output::Send(conn, Request::Challenge));
        } else {
            self.send_unpublished(now, conn, None);
        }
    }

    /// The connection could not be opened, or closed before every answer.
    pub fn handle_failed(&mut self, now: Instant, conn: Option<ConnId>) {
        match self.phase {
            Phase::Opening { .. } => self.retry(now),
            Phase::Sending { conn: c, .. } | Phase::Challenging { conn: c, .. } if Some(c) == conn => {
                debug!("catalog connection to {} lost", self.tracker);
                self.retry(now);
            }
            _ => {}
        }
    }

    pub fn handle_response(&mut self, now: Instant, conn: ConnId, response: Response) {
        match (&mut self.phase, response) {
            (Phase::Challenging { conn: c, .. }, Response::Challenge(nonce)) if *c == conn => {
                self.send_unpublished(now, conn, Some(nonce));
            }
            (Phase::Challenging { conn: c, .. }, other) if *c == conn => {
                warn!("tracker {} refused a publish challenge: {}", self.tracker, escape(&other.summary()));
                self.outputs.push_back(Output::Close(conn));
                self.retry(now);
            }
            (Phase::Sending { conn: c, sent, refused, .. }, response) if *c == conn => {
                let Some(id) = sent.pop_front() else { return };
                let last = sent.is_empty();
                let Some(file) = self.files.iter_mut().find(|f| f.meta.content_id() == id) else {
                    return self.answered(now, conn, last); // withdrawn meanwhile
                };
                match response {
                    Response::Published(got) if got == id => file.published = true,
                    other => {
                        *refused += 1;
                        let name = escape(file.meta.name());
                        let hint = match (&other, &self.key) {
                            (Response::Error { code: ErrorCode::Unauthorized, .. }, None) => {
                                "; it takes only signed publishes: give this seeder a copy of its key file with --publish-key"
                            }
                            (Response::Error { code: ErrorCode::Unauthorized, .. }, Some(_)) => {
                                "; this seeder's key is not the tracker's"
                            }
                            _ => "",
                        };
                        let why = other.summary();
                        warn!("tracker {} refused to publish {name}: {}{hint}", self.tracker, escape(&why));
                    }
                }
                self.answered(now, conn, last);
            }
            _ => {}
        }
    }

    /// The tracker answered something (an announce): a publish waiting out
    /// its backoff (the tracker was down) goes now, not up to 30 s later.
    pub fn handle_tracker_heard(&mut self, now: Instant) {
        if let Phase::Needed { at } = &mut self.phase {
            if *at > now {
                debug!("tracker {} answers: publishing now", self.tracker);
                *at = now;
                self.backoff = RETRY;
            }
        }
    }

    /// The tracker restarted and forgot the catalog.
    pub fn republish(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done) {
            info!("re-publishing to {}", self.tracker);
            for f in &mut self.files {
                f.published = false;
            }
            self.backoff = RETRY;
            self.phase = Phase::Needed { at: now };
        }
    }

    /// A file is no longer shared (it changed on disk).
    pub fn withdraw(&mut self, id: ContentId) {
        self.files.retain(|f| f.meta.content_id() != id);
    }

    /// Files shared (and not withdrawn).
    pub fn shared(&self) -> usize {
        self.files.len()
    }

    pub fn shutdown(&mut self) {
        self.stopping = true;
    }

    /// Starts due publishes and abandons slow ones. Early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Needed { at } if now >= at && !self.stopping => {
                self.phase = Phase::Opening { since: now };
                self.outputs.push_back(Output::Open);
            }
            Phase::Sending { conn, since, .. } | Phase::Challenging { conn, since }
                if now >= since + PUBLISH_TIMEOUT =>
            {
                self.outputs.push_back(Output::Close(conn));
                self.retry(now);
            }
            Phase::Opening { since } if now >= since + PUBLISH_TIMEOUT => self.retry(now),
            _ => {}
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            _ if self.stopping => None,
            Phase::Needed { at } => Some(at),
            Phase::Opening { since } | Phase::Challenging { since, .. } | Phase::Sending { since, .. } => {
                Some(since + PUBLISH_TIMEOUT)
            }
            Phase::Done => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Sends a publish of every file the tracker does not hold yet, signed
    /// over `nonce` when there is one.
    fn send_unpublished(&mut self, now: Instant, conn: ConnId, nonce: Option<Nonce>) {
        let mut sent = VecDeque::new();
        for f in self.files.iter().filter(|f| !f.published) {
            let request = match (nonce, &self.key) {
                (Some(nonce), Some(key)) => {
                    Request::SignedPublish { nonce, mac: key.sign(&nonce, &f.meta), meta: f.meta.clone() }
                }
                _ => Request::Publish(f.meta.clone()),
            };
            self.outputs.push_back(Output::Send(conn, request));
            sent.push_back(f.meta.content_id());
        }
        self.phase = Phase::Sending { conn, sent, refused: 0, since: now };
        if self.files.iter().all(|f| f.published) {
            self.answered(now, conn, true);
        }
    }

    /// One answer read; after the last, done or (when any was refused) retry.
    fn answered(&mut self, now: Instant, conn: ConnId, last: bool) {
        if !last {
            return;
        }
        self.outputs.push_back(Output::Close(conn));
        let held = self.files.iter().filter(|f| f.published).count();
        if held == self.files.len() {
            self.publishes += 1;
            self.backoff = RETRY;
            info!("catalog published: {} at {}", human::plural(self.files.len() as u64, "file"), self.tracker);
            self.phase = Phase::Done;
        } else {
            warn!(
                "catalog publish incomplete: {} of {} refused by {}; trying again in {}",
                self.files.len() - held,
                human::plural(self.files.len() as u64, "file"),
                self.tracker,
                human::duration(self.backoff)
            );
            self.schedule_retry(now);
        }
    }

    fn retry(&mut self, now: Instant) {
        debug!("catalog publish to {} failed; retrying in {}", self.tracker, human::duration(self.backoff));
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.phase = Phase::Needed { at: now + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_that_answers_ends_the_backoff() {
        let t0 = Instant::now();
        let meta = FileMeta::new("f".into(), 10, 16384, vec![crate::hash::Hash20::of(b"f")]).unwrap();
        let mut p = Publisher::new("127.0.0.1:6969".parse().unwrap(), None, vec![meta], t0);
        let mut now = t0;
        for _ in 0..6 {
            p.handle_timeout(now);
            assert_eq!(p.poll_output(), Some(Output::Open));
            p.handle_failed(now, None);
            now = p.next_deadline().unwrap();
        }
        assert!(p.next_deadline().unwrap() >= t0 + Duration::from_secs(30), "backed off");
        let heard = t0 + Duration::from_secs(33);
        p.handle_tracker_heard(heard);
        assert_eq!(p.next_deadline(), Some(heard), "publishes at once");
        p.handle_timeout(heard);
        assert_eq!(p.poll_output(), Some(Output::Open));
        p.handle_tracker_heard(heard + Duration::from_secs(1));
        assert_eq!(p.next_deadline(), Some(heard + PUBLISH_TIMEOUT), "an attempt under way is left alone");
    }
    use crate::hash::Hash20;
    use crate::wire::catalog::ErrorCode;

    fn meta(name: &str) -> FileMeta {
        FileMeta::new(name.into(), 10, 16384, vec![Hash20::of(name.as_bytes())]).unwrap()
    }

    fn publisher(key: Option<PublishKey>, files: Vec<FileMeta>, t0: Instant) -> Publisher {
        Publisher::new("127.0.0.1:6969".parse().unwrap(), key, files, t0)
    }

    fn drain(p: &mut Publisher) -> Vec<Output> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn full() -> Response {
        Response::Error { code: ErrorCode::Full, message: "publish quota: \x1b[2J".into() }
    }

    #[test]
    fn publishes_every_file_then_closes() {
        let t0 = Instant::now();
        let (a, b) = (meta("a"), meta("b"));
        let mut p = publisher(None, vec![a.clone(), b.clone()], t0);
        p.handle_timeout(t0);
        assert_eq!(drain(&mut p), vec![Output::Open]);
        p.handle_opened(t0, ConnId(3));
        assert_eq!(drain(&mut p).len(), 2);
        p.handle_response(t0, ConnId(3), Response::Published(a.content_id()));
        assert!(drain(&mut p).is_empty());
        p.handle_response(t0, ConnId(3), Response::Published(b.content_id()));
        assert_eq!(drain(&mut p), vec![Output::Close(ConnId(3))]);
        assert_eq!((p.publishes, p.next_deadline()), (1, None));
        p.republish(t0);
        p.handle_timeout(t0);
        assert_eq!(drain(&mut p), vec![Output::Open], "again after a tracker restart");
        p.handle_opened(t0, ConnId(4));
        assert_eq!(drain(&mut p).len(), 2, "every file again");
    }

    #[test]
    fn a_failed_or_slow_publish_is_retried() {
        let t0 = Instant::now();
        let mut p = publisher(None, vec![meta("a")], t0);
        p.handle_timeout(t0);
        drain(&mut p);
        p.handle_failed(t0, None);
        assert_eq!(p.next_deadline(), Some(t0 + RETRY));
        p.handle_timeout(t0 + RETRY);
        assert_eq!(drain(&mut p), vec![Output::Open]);
        p.handle_opened(t0 + RETRY, ConnId(1));
        drain(&mut p);
        p.handle_timeout(t0 + RETRY + PUBLISH_TIMEOUT);
        assert_eq!(drain(&mut p), vec![Output::Close(ConnId(1))]);
        assert_eq!(p.next_deadline(), Some(t0 + RETRY * 3 + PUBLISH_TIMEOUT), "the delay doubled");
        p.shutdown();
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn refused_files_are_retried_with_backoff_until_published() {
        let t0 = Instant::now();
        let (a, b) = (meta("a"), meta("b"));
        let mut p = publisher(None, vec![a.clone(), b.clone()], t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            p.handle_timeout(now);
            assert_eq!(drain(&mut p), vec![Output::Open]);
            p.handle_opened(now, ConnId(1));
            drain(&mut p);
            p.handle_response(now, ConnId(1), Response::Published(a.content_id()));
            p.handle_response(now, ConnId(1), full());
            assert_eq!(drain(&mut p), vec![Output::Close(ConnId(1))]);
            assert_eq!(p.publishes, 0, "a refusal is never a completed publish");
            let at = p.next_deadline().unwrap();
            delays.push((at - now).as_secs());
            now = at;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        p.handle_timeout(now);
        p.handle_opened(now, ConnId(2));
        assert_eq!(
            drain(&mut p),
            [Output::Open, Output::Send(ConnId(2), Request::Publish(b.clone()))],
            "only what was refused"
        );
        p.handle_response(now, ConnId(2), Response::Published(b.content_id()));
        assert_eq!(drain(&mut p), [Output::Close(ConnId(2))]);
        assert_eq!((p.publishes, p.next_deadline()), (1, None));
    }

    #[test]
    fn with_a_key_publishes_are_signed_over_the_challenge() {
        let t0 = Instant::now();
        let key = PublishKey::from_bytes(b"sixteen byte key").unwrap();
        let a = meta("a");
        let mut p = publisher(Some(key.clone()), vec![a.clone()], t0);
        p.handle_timeout(t0);
        p.handle_opened(t0, ConnId(1));
        assert_eq!(drain(&mut p), [Output::Open, Output::Send(ConnId(1), Request::Challenge)]);
        p.handle_response(t0, ConnId(1), Response::Challenge([5; 16]));
        let mac = key.sign(&[5; 16], &a);
        assert_eq!(
            drain(&mut p),
            [Output::Send(ConnId(1), Request::SignedPublish { nonce: [5; 16], mac, meta: a.clone() })]
        );
        p.handle_response(t0, ConnId(1), Response::Error { code: ErrorCode::Unauthorized, message: "wrong".into() });
        assert_eq!(drain(&mut p), [Output::Close(ConnId(1))]);
        assert_eq!((p.publishes, p.next_deadline()), (0, Some(t0 + RETRY)));
        // A tracker that does not answer the challenge: dropped, tried again later.
        p.handle_timeout(t0 + RETRY);
        p.handle_opened(t0 + RETRY, ConnId(2));
        drain(&mut p);
        p.handle_response(t0 + RETRY, ConnId(2), full());
        assert_eq!(drain(&mut p), [Output::Close(ConnId(2))]);
        assert_eq!(p.next_deadline(), Some(t0 + RETRY * 3));
    }
}

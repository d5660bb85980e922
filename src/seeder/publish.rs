//! The seeder's catalog client, sans-IO: publishes every shared file's
//! metadata over one short TCP connection to the tracker, retries until it
//! is done, and publishes again when the tracker restarts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::common::net::ConnId;
use crate::hash::ContentId;
use crate::meta::FileMeta;
use crate::wire::catalog::{Request, Response};

/// A publish not finished in this long is abandoned and retried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay before a failed publish is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the tracker; answer with `handle_opened` or `handle_failed`.
    Open,
    Send(ConnId, Request),
    Close(ConnId),
}

enum Phase {
    Needed { at: Instant },
    Opening { since: Instant },
    Sending { conn: ConnId, pending: usize, since: Instant },
    Done,
}

pub struct Publisher {
    tracker: SocketAddr,
    files: Vec<FileMeta>,
    phase: Phase,
    stopping: bool,
    outputs: VecDeque<Output>,
    /// Completed publishes (more than one after tracker restarts).
    pub publishes: u64,
}

impl Publisher {
    pub fn new(tracker: SocketAddr, files: Vec<FileMeta>, now: Instant) -> Publisher {
        Publisher {
            tracker,
            files,
            phase: Phase::Needed { at: now },
            stopping: false,
            outputs: VecDeque::new(),
            publishes: 0,
        }
    }

    /// The connection is open: send every file's metadata.
    pub fn handle_opened(&mut self, now: Instant, conn: ConnId) {
        if self.files.is_empty() {
            self.outputs.push_back(Output::Close(conn));
            self.phase = Phase::Done;
            return;
        }
        self.phase = Phase::Sending { conn, pending: self.files.len(), since: now };
        for meta in &self.files {
            self.outputs.push_back(Output::Send(conn, Request::Publish(meta.clone())));
        }
    }

    /// The connection could not be opened, or closed before every answer.
    pub fn handle_failed(&mut self, now: Instant, conn: Option<ConnId>) {
        match self.phase {
            Phase::Opening { .. } => self.retry(now),
            Phase::Sending { conn: c, .. } if Some(c) == conn => self.retry(now),
            _ => {}
        }
    }

    pub fn handle_response(&mut self, conn: ConnId, response: Response) {
        let Phase::Sending { conn: c, pending, since } = self.phase else { return };
        if c != conn {
            return;
        }
        match response {
            Response::Published(id) if self.shares(id) => {}
            other => warn!("tracker refused a publish: {other:?}"),
        }
        if pending <= 1 {
            self.publishes += 1;
            info!("catalog published: {} file(s) at {}", self.files.len(), self.tracker);
            self.phase = Phase::Done;
            self.outputs.push_back(Output::Close(conn));
        } else {
            self.phase = Phase::Sending { conn, pending: pending - 1, since };
        }
    }

    /// The tracker restarted and forgot the catalog.
    pub fn republish(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done) {
            info!("re-publishing to {}", self.tracker);
            self.phase = Phase::Needed { at: now };
        }
    }

    /// A file is no longer shared (it changed on disk).
    pub fn withdraw(&mut self, id: ContentId) {
        self.files.retain(|m| m.content_id() != id);
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
            Phase::Sending { conn, since, .. } if now >= since + PUBLISH_TIMEOUT => {
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
            Phase::Opening { since } | Phase::Sending { since, .. } => Some(since + PUBLISH_TIMEOUT),
            Phase::Done => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn shares(&self, id: ContentId) -> bool {
        self.files.iter().any(|m| m.content_id() == id)
    }

    fn retry(&mut self, now: Instant) {
        debug!("catalog publish to {} failed; retrying", self.tracker);
        self.phase = Phase::Needed { at: now + RETRY };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;

    fn meta(name: &str) -> FileMeta {
        FileMeta::new(name.into(), 10, 16384, vec![Hash20::of(name.as_bytes())]).unwrap()
    }

    fn drain(p: &mut Publisher) -> Vec<Output> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    #[test]
    fn publishes_every_file_then_closes() {
        let t0 = Instant::now();
        let (a, b) = (meta("a"), meta("b"));
        let mut p = Publisher::new("127.0.0.1:6969".parse().unwrap(), vec![a.clone(), b.clone()], t0);
        p.handle_timeout(t0);
        assert_eq!(drain(&mut p), vec![Output::Open]);
        p.handle_opened(t0, ConnId(3));
        assert_eq!(drain(&mut p).len(), 2);
        p.handle_response(ConnId(3), Response::Published(a.content_id()));
        assert!(drain(&mut p).is_empty());
        p.handle_response(ConnId(3), Response::Published(b.content_id()));
        assert_eq!(drain(&mut p), vec![Output::Close(ConnId(3))]);
        assert_eq!((p.publishes, p.next_deadline()), (1, None));
        p.republish(t0);
        p.handle_timeout(t0);
        assert_eq!(drain(&mut p), vec![Output::Open], "again after a tracker restart");
    }

    #[test]
    fn a_failed_or_slow_publish_is_retried() {
        let t0 = Instant::now();
        let mut p = Publisher::new("127.0.0.1:6969".parse().unwrap(), vec![meta("a")], t0);
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
        p.shutdown();
        assert_eq!(p.next_deadline(), None);
    }
}

//! What a test reads back from the harness: connections, what was queued
//! and what each host said.

use std::net::SocketAddr;

use crate::common::net::ConnId;
use crate::wire::peer::Message;

use super::{Harness, Sent};

impl Harness {
    /// Bytes host `i` wrote on `conn` that have not arrived yet.
    pub fn queued(&self, i: usize, conn: ConnId) -> usize {
        self.wire.iter().filter(|w| w.from == (i, conn)).filter_map(|w| w.bytes.as_ref()).map(Vec::len).sum()
    }

    /// Host `i`'s connections, in order; the dials not yet complete when `dialling`.
    pub fn conns(&self, i: usize, dialling: bool) -> Vec<ConnId> {
        self.ends.iter().filter(|((n, _), e)| *n == i && e.dialling == dialling).map(|((_, c), _)| *c).collect()
    }

    /// Host `i`'s end of its first dial to `to`.
    pub fn dialled(&self, i: usize, to: SocketAddr) -> ConnId {
        self.dials.iter().find(|d| d.host == i && d.to == to).and_then(|d| d.conn).expect("dialled")
    }

    /// Whether host `i`'s `conn` is open.
    pub fn is_open(&self, i: usize, conn: ConnId) -> bool {
        self.ends.contains_key(&(i, conn))
    }

    /// Who is at the far end of host `i`'s open `conn`, and on which of its connections.
    pub fn far_end(&self, i: usize, conn: ConnId) -> Option<(usize, ConnId)> {
        self.ends.get(&(i, conn)).map(|e| e.far)
    }

    /// The largest frame host `i`'s open `conn` takes.
    pub fn limit(&self, i: usize, conn: ConnId) -> Option<u32> {
        self.ends.get(&(i, conn)).map(|e| e.limit)
    }

    /// Open connections, both ends counted.
    pub fn open_ends(&self) -> usize {
        self.ends.len()
    }

    /// Host `i`'s open connection to host `j`.
    pub fn conn(&self, i: usize, j: usize) -> ConnId {
        let mut found = self.ends.iter().filter(|((a, _), e)| *a == i && e.far.0 == j).map(|((_, c), _)| *c);
        let conn = found.next().expect("a connection");
        assert!(found.next().is_none(), "one connection between {i} and {j}");
        conn
    }

    /// What host `i` sent on `conn`, as its peer decoded it.
    pub fn messages_on(&self, i: usize, conn: ConnId) -> impl Iterator<Item = Message<'_>> {
        self.log.iter().filter(move |s| s.from == i && s.conn == conn).filter_map(Sent::message)
    }

    /// What host `from` sent host `to` over all their connections.
    pub fn messages(&self, from: usize, to: usize) -> impl Iterator<Item = Message<'_>> {
        self.log.iter().filter(move |s| s.from == from && s.to == to).filter_map(Sent::message)
    }
}

//! The tracker shell's HTTP side: connections whose first byte is an ASCII
//! letter (a method; a catalog frame starts with the high byte of a length
//! of at most 16 MiB, 0 or 1) are served by the HTTP rules of
//! `http::conns`, routed to the tracker core or to the pages of `http`.

use std::collections::BTreeMap;
use std::time::Instant;

use log::debug;

use super::conns::Conns as CatalogConns;
use super::machine::Tracker;
use crate::common::admission::Admit;
use crate::common::net::{ConnId, Net};
use crate::http::answer::{self, HTML, JSON, NOT_FOUND, OK, PROMETHEUS, TEXT};
use crate::http::conns::{Conns, Limits, Next, Step};
use crate::http::page::{Format, Stream};
use crate::http::request::MAX_HEAD;
use crate::http::{metrics, Figures, Rate, Route};
use crate::wire::FrameLimit;

/// Whether the first bytes of a connection are an HTTP request's.
pub fn is_http(buf: &[u8]) -> bool {
    buf.first().is_some_and(u8::is_ascii_alphabetic)
}

pub struct Web {
    conns: Conns,
    /// Streamed answers under way, by connection.
    streams: BTreeMap<ConnId, Stream>,
    announces: Rate,
    scrapes: Rate,
    /// Reused for every announce and scrape answer body.
    body: Vec<u8>,
}

impl Web {
    pub fn new(now: Instant) -> Web {
        Web {
            conns: Conns::new(Limits::default()),
            streams: BTreeMap::new(),
            announces: Rate::new(now),
            scrapes: Rate::new(now),
            body: Vec::new(),
        }
    }

    pub fn holds(&self, conn: ConnId) -> bool {
        self.conns.contains(conn)
    }

    /// Takes `conn` under the HTTP rules; false when they refuse it (closed).
    pub fn handle_open(&mut self, net: &mut Net, now: Instant, conn: ConnId) -> bool {
        let Some(peer) = net.peer_addr(conn) else { return false };
        match self.conns.handle_open(now, conn, peer.ip()) {
            Admit::Accept => {}
            Admit::Evict(idlest) => {
                debug!("{idlest}: evicted for {conn} {peer}: HTTP connections full");
                net.close(idlest);
            }
            Admit::Refuse => {
                debug!("{conn} {peer}: refused: too many HTTP connections from {}", peer.ip());
                net.close(conn);
                return false;
            }
        }
        net.set_limit(conn, FrameLimit::Any(MAX_HEAD as u32));
        true
    }

    /// Serves the request at the start of `buf`, if whole; returns the bytes consumed.
    pub fn handle_bytes(
        &mut self,
        net: &mut Net,
        core: &mut Tracker,
        catalog: &CatalogConns,
        now: Instant,
        conn: ConnId,
        buf: &[u8],
    ) -> usize {
        let (used, head) = match self.conns.handle_bytes(now, conn, buf) {
            Step::More => return 0,
            Step::Refuse(error) => {
                debug!("{conn}: refused request: {error:?}");
                if let Some(out) = net.out(conn) {
                    answer::refusal(out, error);
                }
                (buf.len(), None)
            }
            Step::Request(head) => (head.len, Some(head)),
        };
        let streaming = match head {
            Some(head) => {
                debug!("{conn}: GET {}", crate::common::text::escape(head.path));
                let route = Route::of(head.path, head.query);
                self.answer(net, core, catalog, now, conn, route, head.keep_alive)
            }
            None => false,
        };
        let next = self.conns.handle_answered(conn, net.queued(conn), streaming);
        self.proceed(net, core, conn, next);
        used
    }

    /// Queues the answer to `route`, or the start of it; returns true when
    /// the rest is to be streamed.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        net: &mut Net,
        core: &mut Tracker,
        catalog: &CatalogConns,
        now: Instant,
        conn: ConnId,
        route: Route<'_>,
        keep: bool,
    ) -> bool {
        let ip = net.peer_addr(conn).map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
        self.body.clear();
        let route_page = matches!(route, Route::Page(_));
        let (status, kind) = match route {
            Route::Announce(query) => {
                core.handle_http_announce(now, ip, query, &mut self.body);
                (OK, TEXT)
            }
            Route::Scrape(query) => {
                core.handle_http_scrape(query, &mut self.body);
                (OK, TEXT)
            }
            Route::Metrics => {
                let mut text = String::new();
                metrics::prometheus(&self.figures(net, core, catalog, now), &mut text);
                self.body.extend_from_slice(text.as_bytes());
                (OK, PROMETHEUS)
            }
            Route::Stats(listing) | Route::Page(listing) => {
                let (format, kind) = if route_page { (Format::Html, HTML) } else { (Format::Json, JSON) };
                let figures = self.figures(net, core, catalog, now);
                let mut first = Vec::new();
                let stream = Stream::start(format, listing, &figures, &core.files(), &mut first);
                if let Some(out) = net.out(conn) {
                    answer::head(out, OK, kind, None, keep);
                    answer::chunk(out, &first);
                }
                self.streams.insert(conn, stream);
                return true;
            }
            Route::NotFound => {
                self.body.extend_from_slice(b"404 Not Found\n");
                (NOT_FOUND, TEXT)
            }
        };
        if let Some(out) = net.out(conn) {
            answer::whole(out, status, kind, &self.body, keep);
        }
        false
    }

    /// The answer queue of `conn` shrank.
    pub fn handle_drained(&mut self, net: &mut Net, core: &Tracker, now: Instant, conn: ConnId) {
        let next = self.conns.handle_drained(now, conn, net.queued(conn));
        self.proceed(net, core, conn, next);
    }

    /// Does what the rules say next: feed a streamed answer while its queue
    /// has room, read on, wait for the queue to drain, or close.
    fn proceed(&mut self, net: &mut Net, core: &Tracker, conn: ConnId, mut next: Next) {
        loop {
            match next {
                Next::Feed => {
                    let Some(stream) = self.streams.get_mut(&conn) else { return net.close(conn) };
                    let mut piece = Vec::new();
                    let more = stream.feed(&core.files(), &mut piece);
                    let Some(out) = net.out(conn) else { return };
                    answer::chunk(out, &piece);
                    if !more {
                        answer::last_chunk(out);
                        self.streams.remove(&conn);
                    }
                    next = self.conns.handle_answered(conn, net.queued(conn), more);
                }
                Next::Read => {
                    net.want_drained(conn, false);
                    return net.set_reading(conn, true);
                }
                Next::Wait => {
                    net.set_reading(conn, false);
                    return net.want_drained(conn, true);
                }
                Next::Close => {
                    net.set_reading(conn, false);
                    return net.close_after_flush(conn);
                }
            }
        }
    }

    pub fn handle_closed(&mut self, conn: ConnId) {
        self.conns.handle_closed(conn);
        self.streams.remove(&conn);
    }

    /// Closes late and idle connections; samples the rates.
    pub fn handle_timeout(&mut self, net: &mut Net, core: &Tracker, now: Instant) {
        for conn in self.conns.handle_timeout(now) {
            debug!("{conn}: closed: an HTTP request took too long, or idle");
            self.streams.remove(&conn);
            net.close(conn);
        }
        let (announces, scrapes) = core.requests();
        self.announces.update(now, announces);
        self.scrapes.update(now, scrapes);
    }

    pub fn evict_one(&mut self) -> Option<ConnId> {
        let conn = self.conns.evict_one()?;
        self.streams.remove(&conn);
        Some(conn)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        // The rates are sampled on whatever wake-up comes; none is needed for them.
        self.conns.next_deadline()
    }

    fn figures(&mut self, net: &Net, core: &Tracker, catalog: &CatalogConns, now: Instant) -> Figures {
        let mut f = core.figures(now);
        let (announces, scrapes) = core.requests();
        f.announce_rate = self.announces.update(now, announces);
        f.scrape_rate = self.scrapes.update(now, scrapes);
        f.rss_bytes = resident_bytes();
        f.connections = vec![(["catalog"], catalog.len() as u64), (["http"], self.conns.len() as u64)];
        let (c, h) = (catalog.stats(), self.conns.stats());
        f.http_requests = h.requests;
        f.connections_closed = vec![
            (["catalog", "refused_per_ip"], c.refused),
            (["catalog", "evicted"], c.evicted),
            (["catalog", "slow_frame"], c.slow_frames),
            (["catalog", "idle"], c.idle),
            (["http", "refused_per_ip"], h.refused),
            (["http", "evicted"], h.evicted),
            (["http", "slow_request"], h.slow_requests),
            (["http", "idle"], h.idle),
            (["any", "out_of_descriptors"], net.accept_failures),
        ];
        let bad = h.bad_heads;
        f.errors.extend([
            (["http_head_too_large"], bad[0]),
            (["http_head_malformed"], bad[1]),
            (["http_method"], bad[2]),
            (["http_body"], bad[3]),
        ]);
        let t = net.traffic;
        f.received_bytes = vec![(["udp"], t.udp_in), (["tcp"], t.tcp_in)];
        f.sent_bytes = vec![(["udp"], t.udp_out), (["tcp"], t.tcp_out)];
        f
    }
}

/// Resident set size from /proc/self/statm (0 where there is none).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

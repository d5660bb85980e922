//! The tracker's mio shell: datagrams to the core and straight back,
//! catalog frames to the core and their answers onto the connection.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::conns::{Admit, Conns, Limits};
use super::machine::Tracker;
use super::web::Web;
use super::{Config, Error};
use crate::common::net::{CloseReason, ConnId, Handler, Net};
use crate::common::rng;
use crate::common::status::Status;
use crate::common::text::escape;
use crate::wire::catalog::{Request, Selector, REQUEST_LIMIT};
use crate::wire::{DecodeError, Frame};

/// Stands in for a connection's address that could not be read.
const UNSPECIFIED: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// The UDP receive buffer asked for (the kernel caps it at net.core.rmem_max
/// and counts each datagram's overhead): at 4 MiB about 4,000 announces wait
/// out a few milliseconds without the process instead of being dropped.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;
/// A change is shown at most this often, so a busy tracker does not print a
/// table per datagram.
const STATUS_GAP: Duration = Duration::from_secs(1);

struct Shell {
    core: Tracker,
    conns: Conns,
    /// The HTTP face: connections found to speak HTTP leave `conns` for it.
    web: Web,
    reply: Vec<u8>,
    status_every: Duration,
    next_status: Option<Instant>,
    last_status: Instant,
    bad_frames: u64,
    /// Redrawn on a terminal, else printed when it changed.
    status: Status,
    /// The counters at the last status, for the rates beside them.
    counted: (Instant, [u64; 5]),
    /// SIGINT or SIGTERM arrived: the tracker keeps only soft state, so it just stops.
    stopping: bool,
}

pub fn run(config: Config) -> Result<(), Error> {
    let (mut net, local) = bind(config.listen)?;
    let now = Instant::now();
    let mut core_config = config.core.clone();
    core_config.seed ^= rng::seed_from_os();
    let mut shell = Shell {
        core: Tracker::new(core_config, now).with_catalog(config.catalog.clone()),
        conns: Conns::new(Limits::default()),
        web: Web::new(now),
        reply: Vec::with_capacity(2048),
        status_every: config.status_every,
        next_status: (!config.status_every.is_zero()).then_some(now),
        last_status: now,
        bad_frames: 0,
        status: Status::new(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        counted: (now, [0; 5]),
        stopping: false,
    };
    net.catch_signals().map_err(Error::Poll)?;
    info!("interval {:?}, expiry {:?}", config.core.interval, config.core.expiry);
    crate::say!("listening on {local}");
    let _ = std::io::stdout().flush();
    net.run(&mut shell, REQUEST_LIMIT).map_err(Error::Poll)
}

/// UDP and TCP on the same port. With port 0 the UDP port is picked first
/// and TCP follows it; a clash with a TCP user of that port picks again.
fn bind(addr: SocketAddr) -> Result<(Net, SocketAddr), Error> {
    let mut last_err = None;
    for _ in 0..if addr.port() == 0 { 20 } else { 1 } {
        let mut candidate = Net::new().map_err(Error::Poll)?;
        let udp = candidate.bind_udp(addr).map_err(|e| Error::Bind(addr, e))?;
        match candidate.set_udp_receive_buffer(UDP_RECEIVE_BUFFER) {
            Ok(got) => debug!("udp receive buffer: {got} bytes (asked {UDP_RECEIVE_BUFFER})"),
            Err(e) => debug!("udp receive buffer: {e}"),
        }
        match candidate.listen(udp) {
            Ok(_) => return Ok((candidate, udp)),
            Err(e) => last_err = Some(Error::Bind(udp, e)),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Bind(addr, std::io::ErrorKind::AddrInUse.into())))
}

impl Shell {
    /// Reads again from connections whose large frame was given a turn.
    fn resume_turns(&mut self, net: &mut Net) {
        while let Some(conn) = self.conns.poll_resumed() {
            net.set_reading(conn, true);
        }
    }
}

impl Shell {
    /// `  per second: udp 120.0, joins 3.0, leaves 1.0, expired 0.0, catalog 2.0`, since the last status.
    fn rates(&mut self, now: Instant) -> String {
        let s = self.core.stats();
        let counts = [s.datagrams, s.joins, s.leaves, s.expiries, s.catalog_requests];
        let (then, before) = std::mem::replace(&mut self.counted, (now, counts));
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let rate = |i: usize| counts[i].saturating_sub(before[i]) as f64 / secs;
        format!(
            "  per second: udp {:.1}, joins {:.1}, leaves {:.1}, expired {:.1}, catalog {:.1}\n",
            rate(0),
            rate(1),
            rate(2),
            rate(3),
            rate(4)
        )
    }
}

impl Handler for Shell {
    fn on_accept(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        let Some(peer) = net.peer_addr(conn) else { return };
        match self.conns.handle_accept(now, conn, peer.ip()) {
            Admit::Accept => {}
            Admit::Evict(idlest) => {
                debug!("{idlest}: evicted for {conn} {peer}: catalog connections full");
                net.close(idlest);
            }
            Admit::Refuse => {
                debug!("{conn} {peer}: refused: too many catalog connections from {}", peer.ip());
                net.close(conn);
            }
        }
    }

    fn on_bytes(&mut self, net: &mut Net, now: Instant, conn: ConnId, buf: &[u8]) -> Option<usize> {
        if !self.web.holds(conn) {
            if !super::web::is_http(buf) {
                return None;
            }
            // Not a catalog frame: the connection moves to the HTTP rules.
            self.conns.handle_closed(conn);
            self.resume_turns(net);
            if !self.web.handle_open(net, now, conn) {
                return Some(0);
            }
        }
        Some(self.web.handle_bytes(net, &mut self.core, &self.conns, now, conn, buf))
    }

    fn on_read(&mut self, net: &mut Net, now: Instant, conn: ConnId, buffered: usize) {
        if self.web.holds(conn) {
            return;
        }
        if !self.conns.handle_read(now, conn, buffered) {
            net.set_reading(conn, false);
        }
    }

    fn on_drained(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.web.holds(conn) {
            return self.web.handle_drained(net, &self.core, now, conn);
        }
        if self.conns.handle_drained(now, conn, net.queued(conn)) {
            net.want_drained(conn, false);
            net.set_reading(conn, true);
        }
    }

    fn on_descriptors_exhausted(&mut self, net: &mut Net, _now: Instant) -> bool {
        let Some(idlest) = self.conns.evict_one().or_else(|| self.web.evict_one()) else { return false };
        debug!("{idlest}: evicted: out of file descriptors");
        net.close(idlest);
        true
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        let request = Request::decode(frame)?;
        debug!("{conn}: {}", describe(&request));
        let from = net.peer_addr(conn).map_or(UNSPECIFIED, |a| a.ip());
        net.send_shared(conn, self.core.handle_catalog_shared(now, from, request));
        // Pipelined requests wait, unread, while this answer is not taken.
        if !self.conns.handle_request(now, conn, net.queued(conn)) {
            net.set_reading(conn, false);
            net.want_drained(conn, true);
        }
        self.resume_turns(net);
        Ok(())
    }

    fn on_closed(&mut self, net: &mut Net, _now: Instant, conn: ConnId, reason: CloseReason) {
        self.conns.handle_closed(conn);
        self.web.handle_closed(conn);
        self.resume_turns(net);
        if let CloseReason::Malformed(e) = reason {
            self.bad_frames += 1;
            debug!("{conn}: closed on a malformed frame: {e} ({} so far)", self.bad_frames);
        }
    }

    fn on_datagram(&mut self, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.core.handle_datagram(now, from, data, &mut self.reply) {
            net.send_to(from, &self.reply);
        }
    }

    fn on_tick(&mut self, net: &mut Net, now: Instant) {
        if net.stop_signal().is_some() {
            self.stopping = true;
            info!("stopping");
            return;
        }
        self.core.handle_timeout(now);
        for conn in self.conns.handle_timeout(now) {
            debug!("{conn}: closed: a frame took too long, or idle");
            net.close(conn);
        }
        self.resume_turns(net);
        self.web.handle_timeout(net, &self.core, now);
        let Some(next) = self.next_status else { return };
        if now >= next || (self.core.changed() && now >= self.last_status + STATUS_GAP) {
            self.core.take_changed();
            self.last_status = now;
            let mut status = self.core.status();
            if self.bad_frames > 0 {
                status.push_str(&format!("  (malformed catalog frames: {})\n", self.bad_frames));
            }
            let c = self.conns.stats();
            if c.refused + c.evicted + c.slow_frames + net.accept_failures > 0 {
                let _ = writeln!(
                    status,
                    "  (catalog connections {}: refused per IP {}, evicted {}, slow frames {}, out of descriptors {})",
                    self.conns.len(),
                    c.refused,
                    c.evicted,
                    c.slow_frames,
                    net.accept_failures
                );
            }
            let rates = self.rates(now);
            self.status.show(&format!("{status}{rates}"), &status, std::time::SystemTime::now());
            self.next_status = Some(now + self.status_every);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let status = self.next_status.map(|next| match self.core.changed() {
            true => next.min(self.last_status + STATUS_GAP),
            false => next,
        });
        [self.core.next_deadline(), self.conns.next_deadline(), self.web.next_deadline(), status]
            .into_iter()
            .flatten()
            .min()
    }

    /// The tracker keeps only soft state: on SIGINT or SIGTERM it just stops.
    fn done(&self) -> bool {
        self.stopping
    }
}

fn describe(request: &Request) -> String {
    match request {
        Request::Publish(meta) | Request::SignedPublish { meta, .. } => format!("publish {}", escape(meta.name())),
        Request::List => "list".into(),
        Request::Challenge => "challenge".into(),
        Request::GetMeta(Selector::Name(name)) => format!("get {}", escape(name)),
        Request::GetMeta(Selector::Id(id)) => format!("get {id}"),
    }
}

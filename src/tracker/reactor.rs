//! The tracker's mio shell: datagrams to the core and straight back,
//! catalog frames to the core and their answers onto the connection.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::conns::{Admit, Conns, Limits};
use super::machine::Tracker;
use super::{Config, Error};
use crate::common::net::{CloseReason, ConnId, Handler, Net};
use crate::common::rng;
use crate::common::text::escape;
use crate::wire::catalog::{Request, Selector, REQUEST_LIMIT};
use crate::wire::{DecodeError, Frame};

/// Stands in for a connection's address that could not be read.
const UNSPECIFIED: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// A change is shown at most this often, so a busy tracker does not print a
/// table per datagram.
const STATUS_GAP: Duration = Duration::from_secs(1);

struct Shell {
    core: Tracker,
    conns: Conns,
    reply: Vec<u8>,
    status_every: Duration,
    next_status: Option<Instant>,
    last_status: Instant,
    bad_frames: u64,
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
        reply: Vec::with_capacity(2048),
        status_every: config.status_every,
        next_status: (!config.status_every.is_zero()).then_some(now),
        last_status: now,
        bad_frames: 0,
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

    fn on_read(&mut self, net: &mut Net, now: Instant, conn: ConnId, buffered: usize) {
        if !self.conns.handle_read(now, conn, buffered) {
            net.set_reading(conn, false);
        }
    }

    fn on_drained(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.conns.handle_drained(now, conn, net.queued(conn)) {
            net.want_drained(conn, false);
            net.set_reading(conn, true);
        }
    }

    fn on_descriptors_exhausted(&mut self, net: &mut Net, _now: Instant) -> bool {
        let Some(idlest) = self.conns.evict_one() else { return false };
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
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(status.as_bytes());
            let _ = stdout.flush();
            self.next_status = Some(now + self.status_every);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let status = self.next_status.map(|next| match self.core.changed() {
            true => next.min(self.last_status + STATUS_GAP),
            false => next,
        });
        [self.core.next_deadline(), self.conns.next_deadline(), status].into_iter().flatten().min()
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

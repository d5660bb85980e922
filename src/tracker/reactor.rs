//! The tracker's mio shell: datagrams to the core and straight back,
//! catalog frames to the core and their answers onto the connection.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::machine::Tracker;
use super::{Config, Error};
use crate::common::net::{CloseReason, ConnId, Handler, Net};
use crate::common::text::escape;
use crate::common::{rng, signal};
use crate::wire::catalog::{Request, Selector, MAX_CATALOG_FRAME};
use crate::wire::{DecodeError, Frame};

/// Stands in for a connection's address that could not be read.
const UNSPECIFIED: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// A catalog connection that sends nothing for this long is closed.
pub const CATALOG_IDLE: Duration = Duration::from_secs(30);
/// A change is shown at most this often, so a busy tracker does not print a
/// table per datagram.
const STATUS_GAP: Duration = Duration::from_secs(1);
/// Catalog connections served at once; more are closed on accept.
const MAX_CATALOG_CONNS: usize = 512;

struct Shell {
    core: Tracker,
    reply: Vec<u8>,
    status_every: Duration,
    next_status: Option<Instant>,
    last_status: Instant,
    bad_frames: u64,
}

pub fn run(config: Config) -> Result<(), Error> {
    let (mut net, local) = bind(config.listen)?;
    let now = Instant::now();
    let mut core_config = config.core.clone();
    core_config.seed ^= rng::seed_from_os();
    let mut shell = Shell {
        core: Tracker::new(core_config, now).with_catalog(config.catalog.clone()),
        reply: Vec::with_capacity(2048),
        status_every: config.status_every,
        next_status: (!config.status_every.is_zero()).then_some(now),
        last_status: now,
        bad_frames: 0,
    };
    signal::install();
    info!("interval {:?}, expiry {:?}", config.core.interval, config.core.expiry);
    crate::say!("listening on {local}");
    let _ = std::io::stdout().flush();
    net.run(&mut shell, MAX_CATALOG_FRAME).map_err(Error::Poll)
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

impl Handler for Shell {
    fn on_accept(&mut self, net: &mut Net, _now: Instant, conn: ConnId) {
        if net.connection_count() > MAX_CATALOG_CONNS {
            debug!("{conn}: too many catalog connections");
            net.close(conn);
            return;
        }
        net.set_idle(conn, Some(CATALOG_IDLE));
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        let request = Request::decode(frame)?;
        debug!("{conn}: {}", describe(&request));
        let response = self.core.handle_catalog(now, net.peer_addr(conn).map_or(UNSPECIFIED, |a| a.ip()), request);
        if let Some(out) = net.out(conn) {
            response.encode(out);
        }
        Ok(())
    }

    fn on_closed(&mut self, _net: &mut Net, _now: Instant, conn: ConnId, reason: CloseReason) {
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

    fn on_tick(&mut self, _net: &mut Net, now: Instant) {
        if signal::stop_requested() {
            info!("stopping");
            return;
        }
        self.core.handle_timeout(now);
        let Some(next) = self.next_status else { return };
        if now >= next || (self.core.changed() && now >= self.last_status + STATUS_GAP) {
            self.core.take_changed();
            self.last_status = now;
            let mut status = self.core.status();
            if self.bad_frames > 0 {
                status.push_str(&format!("  (malformed catalog frames: {})\n", self.bad_frames));
            }
            {
                use std::io::Write as _;
                let _ = write!(std::io::stdout(), "{status}");
            }
            let _ = std::io::stdout().flush();
            self.next_status = Some(now + self.status_every);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let status = self.next_status.map(|next| match self.core.changed() {
            true => next.min(self.last_status + STATUS_GAP),
            false => next,
        });
        [self.core.next_deadline(), status].into_iter().flatten().min()
    }

    /// The tracker keeps only soft state: on SIGINT or SIGTERM it just stops.
    fn done(&self) -> bool {
        signal::stop_requested()
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

//! The seeder's mio shell: the peer listener, the UDP socket to the tracker,
//! the short-lived catalog connection, and the status line.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::machine::{Config as CoreConfig, Output, Seeder};
use super::store::FileStore;
use super::{Config, Error};
use crate::common::fmt as human;
use crate::common::net::{CloseReason, ConnId, Handler, Net};
use crate::common::{rng, signal};
use crate::meta::FileMeta;
use crate::wire::catalog::{self, MAX_CATALOG_FRAME};
use crate::wire::peer::{Message, PEER_VERSION};
use crate::wire::{DecodeError, Frame};

/// A leecher that moves no bytes for this long loses its slot.
const LEECHER_IDLE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame a leecher may send us: a chunk request is 25 bytes (type and body).
const MAX_INBOUND_PEER_FRAME: u32 = 64;

struct Shell {
    core: Seeder<FileStore>,
    tracker: SocketAddr,
    catalog_conn: Option<ConnId>,
    status_every: Duration,
    next_status: Option<Instant>,
    last_status: (Instant, u64),
    stopping: bool,
    finished: bool,
}

pub fn run(config: Config, files: Vec<(FileMeta, usize)>, store: FileStore) -> Result<(), Error> {
    let mut net = Net::new().map_err(Error::Poll)?;
    let local = net.listen(config.listen).map_err(|e| Error::Bind(config.listen, e))?;
    net.bind_udp_towards(config.tracker).map_err(|e| Error::Bind(config.tracker, e))?;
    signal::install();
    let now = Instant::now();
    let core_config = CoreConfig {
        slots: config.slots,
        interval: Duration::from_secs(10),
        port: local.port(),
        tracker: config.tracker,
        seed: rng::seed_from_os(),
    };
    let mut shell = Shell {
        core: Seeder::new(core_config, files, store, now),
        tracker: config.tracker,
        catalog_conn: None,
        status_every: config.status_every,
        next_status: (!config.status_every.is_zero()).then_some(now + config.status_every),
        last_status: (now, 0),
        stopping: false,
        finished: false,
    };
    info!("sharing {} file(s) with {} slot(s); tracker {}", shell.core.shared(), config.slots, config.tracker);
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    shell.core.handle_timeout(now);
    shell.drain(&mut net, now);
    net.run(&mut shell, MAX_INBOUND_PEER_FRAME).map_err(Error::Poll)
}

impl Shell {
    /// Carries out everything the core asked for.
    fn drain(&mut self, net: &mut Net, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Datagram(d) => net.send_to(self.tracker, &d),
                Output::Greet(conn, state) => {
                    if let Some(out) = net.out(conn) {
                        Message::State { version: PEER_VERSION, state }.encode(out);
                    }
                    match state {
                        crate::wire::peer::SeederState::Available => net.set_idle(conn, Some(LEECHER_IDLE)),
                        crate::wire::peer::SeederState::Unavailable => net.close_after_flush(conn),
                    }
                }
                Output::Feed(conn) => net.want_drained(conn, true),
                Output::Close(conn) => net.close(conn),
                Output::OpenCatalog => match net.connect(self.tracker, MAX_CATALOG_FRAME, now, CONNECT_TIMEOUT) {
                    Ok(conn) => self.catalog_conn = Some(conn),
                    Err(e) => {
                        debug!("catalog connect to {}: {e}", self.tracker);
                        self.core.handle_catalog_failed(now);
                    }
                },
                Output::CatalogSend(conn, request) => {
                    if let Some(out) = net.out(conn) {
                        request.encode(out);
                    }
                }
            }
        }
    }

    fn print_status(&mut self, now: Instant) {
        let stats = self.core.stats();
        let (then, sent_then) = self.last_status;
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let rate = (stats.bytes_sent - sent_then) as f64 / secs;
        println!(
            "seeder: {} file(s) | leechers {} | served {} in {} chunks | {} | turned away {} | rejects {}",
            self.core.shared(),
            self.core.connected(),
            human::bytes(stats.bytes_sent),
            stats.chunks_sent,
            human::rate(rate),
            stats.turned_away,
            stats.rejects,
        );
        let _ = std::io::stdout().flush();
        self.last_status = (now, stats.bytes_sent);
    }
}

impl Handler for Shell {
    fn on_accept(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if let Some(addr) = net.peer_addr(conn) {
            self.core.handle_accept(conn, addr);
        }
        self.drain(net, now);
    }

    fn on_connected(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_opened(now, conn);
            self.drain(net, now);
        }
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_response(now, conn, catalog::Response::decode(frame)?);
        } else {
            self.core.handle_message(conn, Message::decode(frame)?);
        }
        self.drain(net, now);
        Ok(())
    }

    fn on_drained(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if let Some(out) = net.out(conn) {
            self.core.handle_drained(now, conn, out);
        }
        self.drain(net, now);
    }

    fn on_closed(&mut self, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        if self.catalog_conn == Some(conn) {
            self.catalog_conn = None;
            if reason == CloseReason::ConnectFailed {
                self.core.handle_catalog_failed(now);
            }
        }
        if let CloseReason::Malformed(e) = &reason {
            debug!("{conn}: malformed frame: {e}");
        }
        self.core.handle_closed(now, conn);
        self.drain(net, now);
    }

    fn on_datagram(&mut self, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if from == self.tracker {
            self.core.handle_datagram(now, data);
            self.drain(net, now);
        }
    }

    fn on_tick(&mut self, net: &mut Net, now: Instant) {
        if signal::stop_requested() && !self.stopping {
            info!("stopping: leaving the tracker's swarms");
            self.stopping = true;
            self.core.shutdown(now);
        }
        self.core.handle_timeout(now);
        self.drain(net, now);
        if self.stopping && self.core.finished(now) {
            self.print_status(now);
            self.finished = true;
        }
        if self.next_status.is_some_and(|next| now >= next) {
            self.print_status(now);
            self.next_status = Some(now + self.status_every);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.core.next_deadline(), self.next_status].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.finished
    }
}

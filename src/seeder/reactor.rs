//! The seeder's mio shell: the peer listener and connections (through the
//! peer core), the UDP socket to the tracker, the short-lived catalog
//! connection, and the status line.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};

use super::publish::{Output as PublishOutput, Publisher};
use super::watch::{Change, TrackerWatch};
use super::{Config, Error};
use crate::common::fmt as human;
use crate::common::net::{CloseReason, ConnId, Handler, Net, CONNECT_TIMEOUT};
use crate::common::rng;
use crate::common::status::Status;
use crate::meta::FileMeta;
use crate::peer::bitfield::Bitfield;
use crate::peer::machine::{Config as CoreConfig, Event, Machine};
use crate::peer::reactor::Peers;
use crate::peer::storage::SharedFile;
use crate::peer::torrent::Goal;
use crate::wire::catalog::{self, MAX_CATALOG_FRAME};
use crate::wire::peer::MAX_PEER_FRAME;
use crate::wire::{DecodeError, Frame};

struct Shell {
    core: Machine,
    peers: Peers,
    publisher: Publisher,
    tracker: SocketAddr,
    catalog_conn: Option<ConnId>,
    /// Total size of the shared files, for "copies sent".
    total_size: u64,
    status_every: Duration,
    next_status: Option<Instant>,
    last_status: (Instant, u64),
    /// Whether the tracker answers at all.
    watch: TrackerWatch,
    status: Status,
    /// When the first stop signal came: from then on no request is taken,
    /// and the chunks already started are finished within `DRAIN`.
    stopping: Option<Instant>,
    finished: bool,
}

/// How long a stopping seeder keeps finishing the chunks it has started.
const DRAIN: Duration = Duration::from_secs(10);

/// The sockets, bound before the files are hashed.
pub struct Bound {
    net: Net,
    local: SocketAddr,
}

/// Binds the peer listener and the UDP socket to the tracker.
pub fn bind(config: &Config) -> Result<Bound, Error> {
    let mut net = Net::new().map_err(Error::Poll)?;
    let local = net.listen(config.listen).map_err(|e| Error::Bind(config.listen, e))?;
    net.bind_udp_towards(config.tracker).map_err(|e| Error::Bind(config.tracker, e))?;
    Ok(Bound { net, local })
}

pub fn run(config: Config, bound: Bound, files: Vec<(FileMeta, SharedFile)>) -> Result<(), Error> {
    let Bound { mut net, local } = bound;
    if crate::common::net::loopback_only(local, config.tracker) {
        warn!("{}", crate::common::net::loopback_warning(local, config.tracker));
    }
    net.catch_signals().map_err(Error::Poll)?;
    let now = Instant::now();
    let core_config = CoreConfig {
        tracker: config.tracker,
        port: local.port(),
        slots: config.peer.slots,
        max_peers: config.peer.max_peers,
        up_limit: config.peer.up_limit,
        down_limit: config.peer.down_limit,
        timeout: Duration::MAX / 4,
        seed: rng::seed_from_os(),
        ..CoreConfig::default()
    };
    let mut core = Machine::new(core_config, now);
    let metas: Vec<FileMeta> = files.iter().map(|(m, _)| m.clone()).collect();
    let total_size = metas.iter().map(FileMeta::size).sum();
    for (meta, file) in files {
        let have = Bitfield::full(meta.chunk_count());
        core.add(now, meta, Box::new(file), have, Goal::Forever);
    }
    let mut shell = Shell {
        core,
        peers: Peers::new(config.tracker),
        publisher: Publisher::new(config.tracker, config.publish_key.clone(), metas, now),
        tracker: config.tracker,
        catalog_conn: None,
        total_size,
        status_every: config.status_every,
        next_status: (!config.status_every.is_zero()).then_some(now + config.status_every),
        last_status: (now, 0),
        watch: TrackerWatch::new(now),
        status: Status::new(std::io::stdout().is_terminal()),
        stopping: None,
        finished: false,
    };
    info!(
        "sharing {}, at most {}, up to {} per file; tracker {}",
        human::plural(shell.core.files().count() as u64, "file"),
        human::plural(config.peer.slots as u64, "upload slot"),
        human::plural(config.peer.max_peers as u64, "peer"),
        config.tracker
    );
    crate::say!("listening on {local}");
    let _ = std::io::stdout().flush();
    shell.on_tick(&mut net, now);
    net.run(&mut shell, MAX_PEER_FRAME).map_err(Error::Poll)
}

impl Shell {
    /// Carries out everything the cores asked for.
    fn carry_out(&mut self, net: &mut Net, now: Instant) {
        self.peers.carry_out(&mut self.core, net, now);
        self.note_asked(now);
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Reconnected => self.publisher.republish(now),
                // Withdrawn (changed on disk); at shutdown every file finishes, and stays counted.
                Event::Finished { id, name, .. } if self.stopping.is_none() => {
                    info!("{name}: no longer shared");
                    self.publisher.withdraw(id);
                }
                Event::Finished { .. } => {}
                Event::Complete { .. } | Event::Failed { .. } => {}
            }
        }
        while let Some(output) = self.publisher.poll_output() {
            match output {
                PublishOutput::Open => match net.connect(self.tracker, MAX_CATALOG_FRAME, now, Some(CONNECT_TIMEOUT)) {
                    Ok(conn) => self.catalog_conn = Some(conn),
                    Err(e) => {
                        debug!("catalog connect to {}: {e}", self.tracker);
                        self.publisher.handle_failed(now, None);
                    }
                },
                PublishOutput::Send(conn, request) => {
                    if let Some(out) = net.out(conn) {
                        request.encode(out);
                    }
                }
                PublishOutput::Close(conn) => net.close(conn),
            }
        }
    }

    /// The status line: `seeder: 2 files | peers 3 | slots 2 | up 1.2 MiB/s | sent 30.0 MiB (0.47 copies) | bad
    /// frames 0 | tracker ok`, redrawn on a terminal, else printed when it changed.
    fn print_status(&mut self, now: Instant, last: bool) {
        let core = &self.core;
        let uploaded = self.peers.sent;
        let (then, sent_then) = self.last_status;
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let rate = uploaded.saturating_sub(sent_then) as f64 / secs;
        let copies = uploaded as f64 / self.total_size.max(1) as f64;
        let silent = self.watch.silent_for(now);
        let tracker = silent.map_or_else(|| "ok".to_string(), |s| format!("SILENT {}", human::duration(s)));
        let counts = (self.publisher.shared(), core.peers(), core.slots_used());
        let line = format!(
            "seeder: {} | peers {} | slots {} | up {} | sent {} ({copies:.2} copies) | bad frames {} | tracker {tracker}",
            human::plural(counts.0 as u64, "file"),
            counts.1,
            counts.2,
            human::rate(rate),
            human::bytes(uploaded),
            core.violations + core.malformed,
        );
        // A change: any count, the bytes sent, whether it is sending, whether the tracker answers.
        let key = format!("{counts:?} {uploaded} {} {}", rate > 0.0, silent.is_some());
        match last {
            true => self.status.last(&line, SystemTime::now()),
            false => self.status.show(&line, &key, SystemTime::now()),
        }
        self.last_status = (now, uploaded);
    }
}

impl Shell {
    /// The peer core sent the tracker a datagram: its answer is awaited.
    fn note_asked(&mut self, now: Instant) {
        if std::mem::take(&mut self.peers.asked_tracker) {
            self.watch.asked(now);
        }
    }

    /// Anything came from the tracker: it is up, so a waiting publish goes now.
    fn tracker_heard(&mut self, now: Instant) {
        self.note_asked(now); // an ask not yet noted came before this answer
        if self.watch.heard() == Some(Change::Back) {
            info!("the tracker {} answers again", self.tracker);
        }
        self.publisher.handle_tracker_heard(now);
    }
}

impl Handler for Shell {
    fn on_accept(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        self.peers.on_accept(&mut self.core, net, now, conn);
        self.carry_out(net, now);
    }

    fn on_connected(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.catalog_conn == Some(conn) {
            self.publisher.handle_opened(now, conn);
        } else {
            self.peers.on_connected(&mut self.core, net, now, conn);
        }
        self.carry_out(net, now);
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        if self.catalog_conn == Some(conn) {
            self.tracker_heard(now);
            self.publisher.handle_response(now, conn, catalog::Response::decode(frame)?);
        } else {
            self.peers.on_frame(&mut self.core, net, now, conn, frame)?;
        }
        self.carry_out(net, now);
        Ok(())
    }

    fn on_drained(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        self.peers.on_drained(&mut self.core, net, now, conn);
        self.carry_out(net, now);
    }

    fn on_written(&mut self, net: &mut Net, now: Instant, conn: ConnId, written: u64) {
        self.peers.on_written(&mut self.core, net, now, conn, written);
    }

    fn on_bytes(&mut self, net: &mut Net, now: Instant, conn: ConnId, buf: &[u8]) -> Option<usize> {
        if self.catalog_conn == Some(conn) {
            return None;
        }
        let taken = self.peers.on_bytes(&mut self.core, net, now, conn, buf);
        if taken.is_some() {
            self.carry_out(net, now);
        }
        taken
    }

    fn on_read(&mut self, _net: &mut Net, now: Instant, conn: ConnId, buffered: usize) {
        if self.catalog_conn != Some(conn) {
            self.peers.on_read(&mut self.core, now, conn, buffered);
        }
    }

    fn on_closed(&mut self, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        if self.catalog_conn == Some(conn) {
            self.catalog_conn = None;
            self.publisher.handle_failed(now, Some(conn));
        } else {
            self.peers.on_closed(&mut self.core, net, now, conn, reason);
        }
        self.carry_out(net, now);
    }

    fn on_datagram(&mut self, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if from == self.tracker {
            self.tracker_heard(now);
        }
        self.peers.on_datagram(&mut self.core, net, now, from, data);
        self.carry_out(net, now);
    }

    fn on_tick(&mut self, net: &mut Net, now: Instant) {
        if net.stop_signal().is_some() && self.stopping.is_none() {
            match self.watch.ever_heard() {
                true => info!("stopping: leaving the tracker's swarms, finishing the chunks under way"),
                false => info!("stopping; the tracker {} never answered, so no swarm was joined", self.tracker),
            }
            self.stopping = Some(now);
            net.linger_on_close();
            self.publisher.shutdown();
            self.core.shutdown(now);
        }
        if let Some(Change::Silent { never }) = self.watch.check(now) {
            let since = if never { " since the start" } else { "" };
            warn!(
                "the tracker {} has not answered for {}{since}: nobody can find these files until it does \
                 (is it running, and are UDP and TCP port {} reachable from here?)",
                self.tracker,
                human::duration(super::watch::SILENT),
                self.tracker.port()
            );
        }
        self.peers.on_tick(&mut self.core, net, now);
        self.publisher.handle_timeout(now);
        self.carry_out(net, now);
        if let Some(since) = self.stopping {
            // Every peer connection is flushed and closed by its peer, or the drain has had its time.
            let drained = net.connection_count() == 0 || now >= since + DRAIN;
            if drained && self.core.stopped(now) {
                self.print_status(now, true);
                self.finished = true;
            }
        }
        if self.next_status.is_some_and(|next| now >= next) {
            self.print_status(now, false);
            self.next_status = Some(now + self.status_every);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let drain = self.stopping.map(|since| since + DRAIN);
        let watch = self.watch.next_deadline();
        [self.core.next_deadline(), self.publisher.next_deadline(), self.next_status, drain, watch]
            .into_iter()
            .flatten()
            .min()
    }

    fn done(&self) -> bool {
        self.finished
    }
}

//! The leecher's mio shell: the catalog connection, the peer listener and
//! connections (through the peer core), the UDP socket to the tracker, and
//! what the user sees.

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info};

use super::machine::{Command, Config as CoreConfig, Leecher, Note, Output};
use super::out_dir::SCRATCH_DIR;
use super::progress::View;
use super::scratch::Dir;
use super::{Config, Error};
use crate::common::fmt;
use crate::common::net::{CloseReason, ConnId, Handler, Net, CONNECT_TIMEOUT};
use crate::common::rng;
use crate::common::text::escape;
use crate::peer::machine::Config as PeerConfig;
use crate::peer::reactor::Peers;
use crate::peer::torrent::Counters;
use crate::wire::catalog::{Response, MAX_CATALOG_FRAME};
use crate::wire::peer::MAX_PEER_FRAME;
use crate::wire::{DecodeError, Frame};

struct Shell {
    core: Leecher<Dir>,
    peers: Peers,
    tracker: SocketAddr,
    catalog_conn: Option<ConnId>,
    view: View,
    /// Bytes of every finished file, for the closing summary.
    total_bytes: u64,
    started: Instant,
    out_dir: std::path::PathBuf,
    /// The stop signal, and what of the current download stays for a resume.
    interrupted: Option<(i32, Option<String>)>,
    finished: bool,
}

pub fn run(config: Config) -> Result<(), Error> {
    if matches!(config.command, Command::Get(_)) {
        std::fs::create_dir_all(&config.out_dir).map_err(|e| Error::OutDir(config.out_dir.clone(), e))?;
    }
    let asked = match &config.command {
        Command::List => 0,
        Command::Get(s) => s.len(),
    };
    let mut net = Net::new().map_err(Error::Poll)?;
    net.bind_udp_towards(config.tracker).map_err(Error::Poll)?;
    let port = match config.command {
        Command::Get(_) => net.listen(config.listen).map_err(|e| Error::Bind(config.listen, e))?.port(),
        Command::List => 0,
    };
    net.catch_signals().map_err(Error::Poll)?;
    let now = Instant::now();
    let core_config = CoreConfig {
        command: config.command.clone(),
        peer: PeerConfig {
            tracker: config.tracker,
            port,
            slots: config.peer.slots,
            max_peers: config.peer.max_peers,
            up_limit: config.peer.up_limit,
            down_limit: config.peer.down_limit,
            timeout: config.timeout,
            seed: rng::seed_from_os(),
            ..PeerConfig::default()
        },
        goal: config.goal,
        wait: config.wait,
    };
    let dir = Dir { path: config.out_dir.clone(), overwrite: config.overwrite };
    let core = Leecher::new(core_config, dir, now);
    let mut shell = Shell {
        peers: Peers::new(config.tracker),
        core,
        tracker: config.tracker,
        catalog_conn: None,
        view: View::new(config.tty),
        total_bytes: 0,
        started: now,
        out_dir: config.out_dir.clone(),
        interrupted: None,
        finished: false,
    };
    shell.carry_out(&mut net, now);
    net.run(&mut shell, MAX_PEER_FRAME).map_err(Error::Poll)?;
    shell.view.clear();
    if shell.total_bytes > 0 {
        let bytes = shell.total_bytes;
        let secs = shell.started.elapsed().as_secs_f64().max(1e-9);
        crate::say!("total: {} in {:.2}s ({})", fmt::bytes(bytes), secs, fmt::rate(bytes as f64 / secs));
    }
    if let Some((signal, kept)) = shell.interrupted {
        return Err(Error::Interrupted { signal, kept });
    }
    match (shell.core.failures(), &config.command) {
        (0, _) => Ok(()),
        (_, Command::List) => Err(Error::ListFailed),
        (failed, Command::Get(_)) => Err(Error::Incomplete { failed, asked }),
    }
}

impl Shell {
    fn carry_out(&mut self, net: &mut Net, now: Instant) {
        self.peers.carry_out(&mut self.core.peer, net, now);
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::OpenCatalog => match net.connect(self.tracker, MAX_CATALOG_FRAME, now, Some(CONNECT_TIMEOUT)) {
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
                Output::Close(conn) => {
                    if self.catalog_conn == Some(conn) {
                        self.catalog_conn = None;
                    }
                    net.close(conn);
                }
            }
        }
        self.peers.carry_out(&mut self.core.peer, net, now);
        while let Some(note) = self.core.poll_note() {
            self.show(now, note);
        }
    }

    fn show(&mut self, now: Instant, note: Note) {
        self.view.clear();
        match note {
            Note::Listing(entries) => {
                crate::say!("{:<32} {:>10} {:>7}  CONTENT ID", "NAME", "SIZE", "SEEDERS");
                for e in entries {
                    crate::say!(
                        "{:<32} {:>10} {:>7}  {}",
                        escape(&e.name).to_string(),
                        fmt::bytes(e.size),
                        e.seeders,
                        e.id
                    );
                }
            }
            Note::Started { id, name, size, resumed, chunks } => {
                let resumed = (resumed > 0).then_some((resumed, chunks));
                match resumed {
                    Some((have, all)) => crate::say!(
                        "{name}: downloading {} (content id {id}), resumed: {have} of {all} chunks verified on disk",
                        fmt::bytes(size)
                    ),
                    None => crate::say!("{name}: downloading {} (content id {id})", fmt::bytes(size)),
                }
                self.view.reset(now, resumed);
            }
            Note::AlreadyComplete { name } => crate::say!("{name}: already complete"),
            Note::Waiting { name, holder } => crate::say!("{name}: waiting: {holder}"),
            Note::Done { name, size, elapsed, counters } => {
                let secs = elapsed.as_secs_f64().max(1e-9);
                let bad = match counters.bad_chunks {
                    0 => String::new(),
                    n => format!(", {n} bad chunk(s) re-fetched"),
                };
                crate::say!(
                    "{name}: done, {} in {secs:.2}s ({}) from {} peer(s); {}{bad}",
                    fmt::bytes(size),
                    // What was fetched in this run: a resumed file had part of it on disk.
                    fmt::rate((counters.from_seeders + counters.from_leechers) as f64 / secs),
                    counters.sources,
                    sources(&counters),
                );
                self.total_bytes += size;
            }
            Note::Seeded { name, size, counters } => {
                let ratio = counters.uploaded as f64 / size.max(1) as f64;
                crate::say!("{name}: seeded, {} uploaded (ratio {ratio:.2})", fmt::bytes(counters.uploaded));
            }
            Note::Failed { name, reason } => eprintln!("lmk-leecher: {}: {}", escape(&name), escape(&reason)),
        }
    }
}

/// `12.0 MiB from seeders, 20.0 MiB from leechers`
fn sources(c: &Counters) -> String {
    format!("{} from seeders, {} from leechers", fmt::bytes(c.from_seeders), fmt::bytes(c.from_leechers))
}

impl Handler for Shell {
    fn on_accept(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        self.peers.on_accept(&mut self.core.peer, net, now, conn);
        self.core.after_peer(now);
        self.carry_out(net, now);
    }

    fn on_connected(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_opened(conn);
        } else {
            self.peers.on_connected(&mut self.core.peer, net, now, conn);
        }
        self.core.after_peer(now);
        self.carry_out(net, now);
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_response(now, Response::decode(frame)?);
        } else {
            self.peers.on_frame(&mut self.core.peer, net, now, conn, frame)?;
            self.core.after_peer(now);
        }
        self.carry_out(net, now);
        Ok(())
    }

    fn on_written(&mut self, _net: &mut Net, _now: Instant, conn: ConnId, written: u64) {
        self.peers.on_written(conn, written);
    }

    fn on_drained(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        self.peers.on_drained(&mut self.core.peer, net, now, conn);
        self.core.after_peer(now);
        self.carry_out(net, now);
    }

    fn on_closed(&mut self, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        if self.catalog_conn == Some(conn) {
            self.catalog_conn = None;
            debug!("catalog connection closed: {reason:?}");
            self.core.handle_catalog_failed(now);
        } else {
            self.peers.on_closed(&mut self.core.peer, net, now, conn, reason);
            self.core.after_peer(now);
        }
        self.carry_out(net, now);
    }

    fn on_datagram(&mut self, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if from == self.tracker {
            self.core.peer.handle_datagram(now, data);
            self.core.after_peer(now);
            self.carry_out(net, now);
        }
    }

    fn on_tick(&mut self, net: &mut Net, now: Instant) {
        if let (Some(signal), None) = (net.stop_signal(), &self.interrupted) {
            let kept = self.core.current().and_then(|id| self.core.peer.snapshot(id, now)).map(|p| {
                let dir = self.out_dir.join(SCRATCH_DIR);
                format!("{}: {} of {} kept in {}", p.name, fmt::bytes(p.done), fmt::bytes(p.size), dir.display())
            });
            self.interrupted = Some((signal, kept));
            self.view.clear();
            info!("interrupted: leaving the swarms");
            self.core.shutdown(now);
        }
        self.core.handle_timeout(now);
        self.carry_out(net, now);
        let current = self.core.current();
        let peer = &self.core.peer;
        self.view.tick(now, || current.and_then(|id| peer.snapshot(id, now)));
        self.finished = self.core.finished(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.core.next_deadline(), self.view.next_deadline()].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.finished
    }
}

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
use super::{json, listing};
use super::{Config, Error};
use crate::common::fmt;
use crate::common::net::{CloseReason, ConnId, Handler, Net, CONNECT_TIMEOUT};
use crate::common::rng;
use crate::peer::machine::Config as PeerConfig;
use crate::peer::reactor::Peers;
use crate::wire::catalog::{Response, MAX_CATALOG_FRAME};
use crate::wire::peer::MAX_PEER_FRAME;
use crate::wire::{DecodeError, Frame};

struct Shell {
    core: Leecher<Dir>,
    peers: Peers,
    tracker: SocketAddr,
    catalog_conn: Option<ConnId>,
    view: View,
    /// `--json`: the listing as JSON lines.
    json: bool,
    started: Instant,
    out_dir: std::path::PathBuf,
    /// The stop signal, and what of the current download stays for a resume.
    interrupted: Option<(i32, Option<String>)>,
    /// Stopped while every file was complete and only served to others.
    stopped_seeding: bool,
    finished: bool,
}

pub fn run(config: Config) -> Result<(), Error> {
    // DIR is created when the first file is to be written; one that exists must be a directory.
    if matches!(config.command, Command::Get(_)) && config.out_dir.exists() && !config.out_dir.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
        return Err(Error::OutDir(config.out_dir.clone(), e));
    }
    let asked = match &config.command {
        Command::List => 0,
        Command::Get(s) => s.len(),
    };
    let mut net = Net::new().map_err(Error::Poll)?;
    net.bind_udp_towards(config.tracker).map_err(Error::Poll)?;
    let port = match config.command {
        Command::Get(_) => {
            let local = net.listen(config.listen).map_err(|e| Error::Bind(config.listen, e))?;
            if crate::common::net::loopback_only(local, config.tracker) {
                log::warn!("{}", crate::common::net::loopback_warning(local, config.tracker));
            }
            local.port()
        }
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
        view: View::new(config.mode, config.goal, config.out_dir.clone()),
        json: config.mode == super::Mode::Json,
        started: now,
        out_dir: config.out_dir.clone(),
        interrupted: None,
        stopped_seeding: false,
        finished: false,
    };
    shell.carry_out(&mut net, now);
    net.run(&mut shell, MAX_PEER_FRAME).map_err(Error::Poll)?;
    shell.view.finish(shell.started);
    if shell.stopped_seeding && shell.core.failures() == 0 {
        shell.view.say(&format!(
            "stopped seeding: {} complete in {}",
            fmt::plural(asked as u64, "file"),
            config.out_dir.display()
        ));
        return Ok(());
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
                        self.core.handle_catalog_failed(now, unreachable(e.kind()));
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
        // After any event, not only a timer: a refused catalog ends a list with no timer left.
        self.finished = self.core.finished(now);
    }

    fn show(&mut self, now: Instant, note: Note) {
        match note {
            Note::Listing(entries) if self.json => entries.iter().for_each(|e| json::print(json::entry(e))),
            Note::Listing(entries) => listing::table(&entries).iter().for_each(|line| crate::say!("{line}")),
            Note::Started { .. } => {
                self.peers.unreachable.clear();
                self.view.note(now, note);
            }
            // A download that gives up names the peers it could not reach, and why.
            Note::Failed { name, reason } if !self.peers.unreachable.is_empty() => {
                let reason = format!("{reason}; {}", unreached(&self.peers.unreachable));
                self.peers.unreachable.clear();
                self.view.note(now, Note::Failed { name, reason });
            }
            note => self.view.note(now, note),
        }
    }
}

/// `could not reach 10.0.0.7:7000 (connection refused), 10.0.0.8:7000 (timed out)`, the first few.
fn unreached(unreachable: &std::collections::BTreeMap<SocketAddr, String>) -> String {
    const SHOWN: usize = 5;
    let mut list: Vec<String> = unreachable.iter().take(SHOWN).map(|(a, why)| format!("{a} ({why})")).collect();
    if unreachable.len() > SHOWN {
        list.push(format!("and {} more", unreachable.len() - SHOWN));
    }
    format!("could not reach {}", list.join(", "))
}

/// Why a connection could not be opened, when retrying cannot help soon:
/// nothing listens there, or there is no route to it.
fn unreachable(kind: std::io::ErrorKind) -> Option<String> {
    use std::io::ErrorKind::*;
    matches!(kind, ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable)
        .then(|| std::io::Error::from(kind).to_string())
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

    fn on_written(&mut self, net: &mut Net, now: Instant, conn: ConnId, written: u64) {
        self.peers.on_written(&mut self.core.peer, net, now, conn, written);
    }

    fn on_bytes(&mut self, net: &mut Net, now: Instant, conn: ConnId, buf: &[u8]) -> Option<usize> {
        if self.catalog_conn == Some(conn) {
            return None;
        }
        let taken = self.peers.on_bytes(&mut self.core.peer, net, now, conn, buf);
        if taken.is_some() {
            self.core.after_peer(now);
            self.carry_out(net, now);
        }
        taken
    }

    fn on_read(&mut self, _net: &mut Net, now: Instant, conn: ConnId, buffered: usize) {
        if self.catalog_conn != Some(conn) {
            self.peers.on_read(&mut self.core.peer, now, conn, buffered);
        }
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
            let refused = match reason {
                CloseReason::ConnectFailed(kind) => unreachable(kind),
                _ => None,
            };
            self.core.handle_catalog_failed(now, refused);
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
            self.stopped_seeding = self.core.only_seeding();
            self.interrupted = Some((signal, kept));
            info!("interrupted: leaving the swarms");
            self.core.shutdown(now);
        }
        self.core.handle_timeout(now);
        self.carry_out(net, now);
        let peer = &self.core.peer;
        // The bar moves as bytes arrive, not a whole chunk at a time.
        self.view.tick(now, |id| peer.snapshot(id, now), self.peers.arriving());
        self.finished = self.core.finished(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.core.next_deadline(), self.view.next_deadline()].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.finished
    }
}

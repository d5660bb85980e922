//! The leecher's mio shell: the catalog connection, seeder connections, the
//! UDP socket to the tracker, and what the user sees.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use super::machine::{Config as CoreConfig, Leecher, Note, Output};
use super::output::PartFiles;
use super::progress::View;
use super::{Command, Config, Error};
use crate::common::fmt;
use crate::common::net::{CloseReason, ConnId, Handler, Net};
use crate::common::rng;
use crate::wire::catalog::{Response, MAX_CATALOG_FRAME};
use crate::wire::peer::{Message, MAX_PEER_FRAME};
use crate::wire::{DecodeError, Frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Shell {
    core: Leecher<PartFiles>,
    tracker: SocketAddr,
    catalog_conn: Option<ConnId>,
    view: View,
    /// Bytes of every finished file, for the closing summary.
    total_bytes: u64,
    started: Instant,
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
    let now = Instant::now();
    let core_config = CoreConfig {
        tracker: config.tracker,
        command: config.command.clone(),
        max_seeders: config.max_seeders,
        timeout: config.timeout,
        seed: rng::seed_from_os(),
    };
    let mut shell = Shell {
        core: Leecher::new(core_config, PartFiles::new(config.out_dir.clone()), now),
        tracker: config.tracker,
        catalog_conn: None,
        view: View::new(config.tty),
        total_bytes: 0,
        started: now,
    };
    shell.drain(&mut net, now);
    net.run(&mut shell, MAX_PEER_FRAME).map_err(Error::Poll)?;
    shell.view.clear();
    if shell.total_bytes > 0 {
        let bytes = shell.total_bytes;
        let secs = shell.started.elapsed().as_secs_f64().max(1e-9);
        println!("total: {} in {:.2}s ({})", fmt::bytes(bytes), secs, fmt::rate(bytes as f64 / secs));
    }
    match (shell.core.failures(), &config.command) {
        (0, _) => Ok(()),
        (_, Command::List) => Err(Error::ListFailed),
        (failed, Command::Get(_)) => Err(Error::Incomplete { failed, asked }),
    }
}

impl Shell {
    fn drain(&mut self, net: &mut Net, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Datagram(d) => net.send_to(self.tracker, &d),
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
                Output::Connect(addr) => match net.connect(addr, MAX_PEER_FRAME, now, CONNECT_TIMEOUT) {
                    Ok(conn) => self.core.handle_dialling(now, addr, conn),
                    Err(e) => {
                        debug!("connect to {addr}: {e}");
                        self.core.handle_dial_failed(now, addr);
                    }
                },
                Output::Request(conn, id, index) => {
                    if let Some(out) = net.out(conn) {
                        Message::Request { id, index }.encode(out);
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
        while let Some(note) = self.core.poll_note() {
            self.show(now, note);
        }
    }

    fn show(&mut self, now: Instant, note: Note) {
        self.view.clear();
        match note {
            Note::Listing(entries) => {
                println!("{:<32} {:>10} {:>7}  CONTENT ID", "NAME", "SIZE", "SEEDERS");
                for e in entries {
                    println!("{:<32} {:>10} {:>7}  {}", e.name, fmt::bytes(e.size), e.seeders, e.id);
                }
            }
            Note::Started { name, size } => {
                println!("{name}: downloading {}", fmt::bytes(size));
                self.view.reset(now);
            }
            Note::Finished { name, size, elapsed, seeders, bad_chunks } => {
                let secs = elapsed.as_secs_f64().max(1e-9);
                let bad =
                    if bad_chunks > 0 { format!(", {bad_chunks} bad chunk(s) re-fetched") } else { String::new() };
                println!(
                    "{name}: done, {} in {:.2}s ({}) from {seeders} seeder(s){bad}",
                    fmt::bytes(size),
                    secs,
                    fmt::rate(size as f64 / secs)
                );
                self.total_bytes += size;
            }
            Note::Failed { name, reason } => eprintln!("lmk-leecher: {name}: {reason}"),
        }
    }
}

impl Handler for Shell {
    fn on_connected(&mut self, net: &mut Net, now: Instant, conn: ConnId) {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_opened(conn);
        } else {
            self.core.handle_peer_connected(now, conn);
        }
        self.drain(net, now);
    }

    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError> {
        if self.catalog_conn == Some(conn) {
            self.core.handle_catalog_response(now, Response::decode(frame)?);
        } else {
            self.core.handle_peer_message(now, conn, Message::decode(frame)?);
        }
        self.drain(net, now);
        Ok(())
    }

    fn on_closed(&mut self, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        if self.catalog_conn == Some(conn) {
            self.catalog_conn = None;
            debug!("catalog connection closed: {reason:?}");
            self.core.handle_catalog_failed(now);
        } else {
            if let CloseReason::Malformed(e) = &reason {
                debug!("{conn}: malformed frame from seeder: {e}");
            }
            self.core.handle_peer_closed(now, conn);
        }
        self.drain(net, now);
    }

    fn on_datagram(&mut self, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if from == self.tracker {
            self.core.handle_datagram(now, data);
            self.drain(net, now);
        }
    }

    fn on_tick(&mut self, net: &mut Net, now: Instant) {
        self.core.handle_timeout(now);
        self.drain(net, now);
        self.view.tick(now, || self.core.progress(now));
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.core.next_deadline(), self.view.next_deadline()].into_iter().flatten().min()
    }

    fn done(&self) -> bool {
        self.core.finished()
    }
}

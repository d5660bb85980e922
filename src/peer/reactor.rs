//! The peer core's side of a role's mio shell: moves frames between the
//! peer connections and the core and carries out what the core asks. The
//! seeder and leecher shells call these with the core they own.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::machine::{Machine, Output};
use crate::common::net::{CloseReason, ConnId, Net, CONNECT_TIMEOUT};
use crate::wire::peer::{Message, MAX_PEER_FRAME};
use crate::wire::{DecodeError, Frame};

/// A peer connection on which no byte moves either way for this long is closed.
const PEER_IDLE: Duration = Duration::from_secs(120);

pub struct Peers {
    tracker: SocketAddr,
    /// Frames that failed to decode, over all peer connections.
    pub malformed: u64,
    /// Connections being dialled, and to where.
    dialling: HashMap<ConnId, SocketAddr>,
    /// Addresses whose last dial failed, and why, so that a download that
    /// gives up can name them (at most `MAX_UNREACHABLE`; the caller clears it).
    pub unreachable: BTreeMap<SocketAddr, String>,
}

/// Unreachable addresses remembered at most.
const MAX_UNREACHABLE: usize = 64;

impl Peers {
    pub fn new(tracker: SocketAddr) -> Peers {
        Peers { tracker, malformed: 0, dialling: HashMap::new(), unreachable: BTreeMap::new() }
    }

    fn dial_failed(&mut self, addr: SocketAddr, why: String) {
        if self.unreachable.len() < MAX_UNREACHABLE || self.unreachable.contains_key(&addr) {
            self.unreachable.insert(addr, why);
        }
    }

    /// Carries out everything the core asked for.
    pub fn carry_out(&mut self, core: &mut Machine, net: &mut Net, now: Instant) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Datagram(d) => net.send_to(self.tracker, &d),
                Output::Connect(addr, id) => match net.connect(addr, MAX_PEER_FRAME, now, CONNECT_TIMEOUT) {
                    Ok(conn) => {
                        net.set_idle(conn, Some(PEER_IDLE));
                        self.dialling.insert(conn, addr);
                        core.handle_dialling(now, addr, id, conn);
                    }
                    Err(e) => {
                        debug!("connect to {addr}: {e}");
                        self.dial_failed(addr, e.to_string());
                        core.handle_dial_failed(now, addr, id);
                    }
                },
                Output::Send(conn, msg) => {
                    if let Some(out) = net.out(conn) {
                        msg.encode(out);
                    }
                }
                Output::Bitfield(conn, bits) => {
                    if let Some(out) = net.out(conn) {
                        Message::Bitfield(&bits).encode(out);
                    }
                }
                Output::Feed(conn) => net.want_drained(conn, true),
                Output::Close(conn) => net.close(conn),
                Output::CloseAfterFlush(conn) => net.close_after_flush(conn),
            }
        }
    }

    pub fn on_accept(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId) {
        if let Some(addr) = net.peer_addr(conn) {
            net.set_idle(conn, Some(PEER_IDLE));
            core.handle_accept(now, conn, addr);
        }
        self.carry_out(core, net, now);
    }

    pub fn on_connected(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId) {
        if let Some(addr) = self.dialling.remove(&conn) {
            self.unreachable.remove(&addr);
        }
        core.handle_connected(now, conn);
        self.carry_out(core, net, now);
    }

    pub fn on_frame(
        &mut self,
        core: &mut Machine,
        net: &mut Net,
        now: Instant,
        conn: ConnId,
        frame: Frame<'_>,
    ) -> Result<(), DecodeError> {
        let msg = Message::decode(frame)?;
        if let Err(fatal) = core.handle_message(now, conn, msg) {
            core.handle_fatal(now, fatal);
        }
        self.carry_out(core, net, now);
        Ok(())
    }

    pub fn on_drained(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId) {
        if let Some(out) = net.out(conn) {
            core.handle_drained(now, conn, out);
        }
        self.carry_out(core, net, now);
    }

    pub fn on_closed(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        if let (Some(addr), CloseReason::ConnectFailed(kind)) = (self.dialling.remove(&conn), &reason) {
            self.dial_failed(addr, std::io::Error::from(*kind).to_string());
        }
        match &reason {
            CloseReason::Malformed(DecodeError::Version { got, want }) => {
                info!("{conn}: refused a peer speaking protocol version {got} (we speak {want})");
            }
            CloseReason::Malformed(DecodeError::UnknownType(2)) => {
                info!("{conn}: refused a version 1 leecher (protocol version 2 starts with Hello)");
            }
            CloseReason::Malformed(e) => {
                self.malformed += 1;
                debug!("{conn}: malformed frame from peer: {e}");
            }
            _ => {}
        }
        core.handle_closed(now, conn);
        self.carry_out(core, net, now);
    }

    pub fn on_datagram(&mut self, core: &mut Machine, net: &mut Net, now: Instant, from: SocketAddr, data: &[u8]) {
        if from == self.tracker {
            core.handle_datagram(now, data);
            self.carry_out(core, net, now);
        }
    }

    pub fn on_tick(&mut self, core: &mut Machine, net: &mut Net, now: Instant) {
        core.handle_timeout(now);
        self.carry_out(core, net, now);
    }
}

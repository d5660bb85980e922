//! The peer core's side of a role's mio shell: moves frames between the
//! peer connections and the core and carries out what the core asks. The
//! seeder and leecher shells call these with the core they own.

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use super::machine::{Machine, Output};
use crate::common::net::{CloseReason, ConnId, Net};
use crate::wire::peer::{Message, MAX_PEER_FRAME};
use crate::wire::{DecodeError, Frame};

pub struct Peers {
    tracker: SocketAddr,
}

impl Peers {
    pub fn new(tracker: SocketAddr) -> Peers {
        Peers { tracker }
    }

    /// Carries out everything the core asked for.
    pub fn carry_out(&mut self, core: &mut Machine, net: &mut Net, now: Instant) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Datagram(d) => net.send_to(self.tracker, &d),
                // The core times the dial and the connection's idleness.
                Output::Connect(addr, id) => match net.connect(addr, MAX_PEER_FRAME, now, None) {
                    Ok(conn) => core.handle_dialling(now, addr, id, conn),
                    Err(e) => {
                        debug!("connect to {addr}: {e}");
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
            core.handle_accept(now, conn, addr);
        }
        self.carry_out(core, net, now);
    }

    pub fn on_connected(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId) {
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
        if let CloseReason::Malformed(e) = &reason {
            core.handle_malformed(conn, e);
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

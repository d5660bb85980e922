//! The peer core's side of a role's mio shell: moves frames between the
//! peer connections and the core and carries out what the core asks. The
//! seeder and leecher shells call these with the core they own.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use super::machine::{Machine, Output};
use super::unsent::Unsent;
use crate::common::net::{CloseReason, ConnId, Net};
use crate::wire::peer::{chunk_head, Message, MAX_PEER_FRAME};
use crate::wire::{DecodeError, Frame};

pub struct Peers {
    tracker: SocketAddr,
    /// Chunk bytes the kernel has taken, over all peer connections: what a
    /// status line may call sent (bytes merely queued die with the process).
    pub sent: u64,
    /// Per connection, the chunks queued and not yet taken by the kernel
    /// (kept here too: a connection closing after its flush is no longer the core's).
    unsent: BTreeMap<ConnId, Unsent>,
    /// Per connection, the bytes of its unfinished frame read so far (the
    /// last read's count): what more arrived is told to the core.
    partial: BTreeMap<ConnId, usize>,
    /// Per connection, the Chunk frame whose data is handed to the core as
    /// it arrives: (bytes still to come, bytes come).
    streaming: BTreeMap<ConnId, (usize, usize)>,
    /// Connections being dialled, and to where.
    dialling: HashMap<ConnId, SocketAddr>,
    /// Addresses whose last dial failed, and why, so that a download that
    /// gives up can name them (at most `MAX_UNREACHABLE`; the caller clears it).
    pub unreachable: BTreeMap<SocketAddr, String>,
    /// A datagram went to the tracker since the caller last took this.
    pub asked_tracker: bool,
}

/// Unreachable addresses remembered at most.
const MAX_UNREACHABLE: usize = 64;

impl Peers {
    pub fn new(tracker: SocketAddr) -> Peers {
        Peers {
            tracker,
            sent: 0,
            unsent: BTreeMap::new(),
            partial: BTreeMap::new(),
            streaming: BTreeMap::new(),
            dialling: HashMap::new(),
            unreachable: BTreeMap::new(),
            asked_tracker: false,
        }
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
                Output::Datagram(d) => {
                    net.send_to(self.tracker, &d);
                    self.asked_tracker = true;
                }
                // The core times the dial and the connection's idleness.
                Output::Connect(addr, id) => match net.connect(addr, MAX_PEER_FRAME, now, None) {
                    Ok(conn) => {
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
                Output::Limit(conn, max) => net.set_limit(conn, max.into()),
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

    /// Bytes read on `conn` before the next frame is split: a Chunk frame
    /// not yet whole is not held whole but handed to the core as its data
    /// arrives (`Some(n)`: `n` bytes taken); anything else is split as a
    /// frame (`None`), a whole Chunk frame included.
    pub fn on_bytes(
        &mut self,
        core: &mut Machine,
        net: &mut Net,
        now: Instant,
        conn: ConnId,
        buf: &[u8],
    ) -> Option<usize> {
        if let Some((left, came)) = self.streaming.get_mut(&conn) {
            let data = buf.get(..(*left).min(buf.len())).unwrap_or_default();
            if data.is_empty() {
                return Some(0);
            }
            (*left, *came) = (*left - data.len(), *came + data.len());
            let mut result = core.handle_chunk_data(now, conn, data);
            if *left == 0 {
                self.streaming.remove(&conn);
                result = result.and_then(|()| core.handle_chunk_end(now, conn));
            }
            if let Err(fatal) = result {
                core.handle_fatal(now, fatal);
            }
            self.carry_out(core, net, now);
            return Some(data.len());
        }
        let (index, len, head) = chunk_head(buf, net.limit(conn)?)?;
        core.handle_chunk_begin(now, conn, index, len);
        self.streaming.insert(conn, (len, 0));
        self.carry_out(core, net, now);
        Some(head)
    }

    pub fn on_drained(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId) {
        let mut chunk = 0;
        let queued = net.queued_through(conn);
        if let Some(out) = net.out(conn) {
            chunk = core.handle_drained(now, conn, queued, out);
        }
        // Chunk bytes were queued: they count as sent once the kernel has taken them.
        if chunk > 0 {
            self.unsent.entry(conn).or_default().push(net.queued_through(conn), chunk, None);
        }
        self.carry_out(core, net, now);
    }

    /// The kernel has taken `written` bytes of `conn` in all.
    pub fn on_written(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId, written: u64) {
        core.handle_written(now, conn, written);
        if let Some(queue) = self.unsent.get_mut(&conn) {
            self.sent += queue.written(written);
            if queue.is_empty() {
                self.unsent.remove(&conn);
            }
        }
        self.carry_out(core, net, now); // bytes left: answers waiting for the budget may go
    }

    /// A read left `buffered` bytes of an unfinished frame on `conn`: the
    /// core hears how many more arrived than the last read left (after a
    /// frame ended, all of them: the frame's own end is its message).
    pub fn on_read(&mut self, core: &mut Machine, now: Instant, conn: ConnId, buffered: usize) {
        let before = self.partial.insert(conn, buffered).unwrap_or(0);
        let more = if buffered >= before { buffered - before } else { buffered };
        if more > 0 {
            core.handle_receiving(now, conn, more as u64);
        }
    }

    /// Bytes of unfinished frames (chunks under way) over all peer connections.
    pub fn arriving(&self) -> u64 {
        let streamed = self.streaming.values().map(|&(_, came)| came as u64);
        self.partial.values().map(|&n| n as u64).chain(streamed).sum()
    }

    pub fn on_closed(&mut self, core: &mut Machine, net: &mut Net, now: Instant, conn: ConnId, reason: CloseReason) {
        match (self.dialling.remove(&conn), &reason) {
            (Some(addr), CloseReason::ConnectFailed(kind)) => {
                self.dial_failed(addr, std::io::Error::from(*kind).to_string())
            }
            // The core gave up on a dial that never connected.
            (Some(addr), CloseReason::Local) => self.dial_failed(addr, "no answer (timed out)".into()),
            _ => {}
        }
        if let CloseReason::Malformed(e) = &reason {
            core.handle_malformed(conn, e);
        }
        self.unsent.remove(&conn);
        self.partial.remove(&conn);
        self.streaming.remove(&conn);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_of_unfinished_frames_are_counted_once() {
        let mut peers = Peers::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let now = Instant::now();
        let mut core = Machine::new(crate::peer::machine::Config::default(), now);
        let (a, b) = (ConnId(1), ConnId(2));
        peers.on_read(&mut core, now, a, 1000);
        peers.on_read(&mut core, now, a, 3000);
        peers.on_read(&mut core, now, b, 500);
        assert_eq!(peers.arriving(), 3500);
        peers.on_read(&mut core, now, a, 10); // a frame ended: 10 bytes of the next
        assert_eq!(peers.arriving(), 510);
        peers.on_closed(&mut core, &mut Net::new().unwrap(), now, b, CloseReason::Remote);
        assert_eq!(peers.arriving(), 10, "nothing is kept for a closed connection");
    }
}

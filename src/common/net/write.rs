//! The outbound side of the loop: at the end of each batch, flushing every
//! touched connection, feeding the handlers that want more, and removing
//! closed connections.

use std::time::Instant;

use log::{debug, trace};
use mio::{Interest, Token};

use super::{CloseReason, ConnId, Handler, Net, FIRST_CONN};

impl Net {
    /// Flushes every touched connection, feeds drained ones, removes closed ones.
    pub(super) fn finish_batch<H: Handler>(&mut self, handler: &mut H, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            if let Some(c) = self.conns.get_mut(id.0).filter(|c| c.resume && c.closing.is_none()) {
                c.resume = false;
                self.drain_frames(handler, now, id);
                self.read_conn(handler, now, id);
            }
            self.pump(handler, now, id);
            // Cleared after the pump: what the pump itself queues is already
            // being handled. Reading resumed by the pump is done in another turn.
            if let Some(c) = self.conns.get_mut(id.0) {
                c.dirty = c.resume && c.closing.is_none();
                if c.dirty {
                    self.dirty.push(id);
                    continue;
                }
            }
            let closing = self.conns.get(id.0).and_then(|c| c.closing.clone());
            if let Some(reason) = closing {
                if let Some(mut c) = self.conns.try_remove(id.0) {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                    debug!("{id} {}: closed ({reason:?})", c.peer);
                    handler.on_closed(self, now, id, reason);
                }
            }
        }
    }

    /// Writes until `WouldBlock` or empty, asking the handler for more while
    /// it wants to be fed, and keeps WRITABLE interest only while bytes wait.
    /// A queue that one write empties is offered to the handler again at
    /// once, even one it was asked about earlier in the pass (whose answer
    /// may depend on the queue's length): stopping there would drop write
    /// interest with nothing queued and nobody left to ask (a lost wake-up).
    fn pump<H: Handler>(&mut self, handler: &mut H, now: Instant, id: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(id.0) else { return };
            if c.closing.is_some() || c.connecting {
                return;
            }
            let before = c.queued();
            let asked = c.want_drained && before < self.low_water;
            if asked {
                handler.on_drained(self, now, id);
            }
            let Some(c) = self.conns.get_mut(id.0) else { return };
            let fed = c.queued() > before;
            let wrote = match c.flush() {
                Ok(n) => n,
                Err(e) => {
                    trace!("{id}: write error {e}");
                    self.mark_closing(id, CloseReason::Remote);
                    return;
                }
            };
            self.traffic.tcp_out += wrote as u64;
            if wrote > 0 {
                c.last_active = now;
                c.last_written = now;
                let written = c.written;
                handler.on_written(self, now, id, written);
            }
            let Some(c) = self.conns.get_mut(id.0) else { return };
            let pending = c.queued() > 0;
            if pending != c.writable_interest {
                let interest = if pending { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                let token = Token(FIRST_CONN + id.0);
                if self.poll.registry().reregister(&mut c.stream, token, interest).is_err() {
                    self.mark_closing(id, CloseReason::Remote);
                    return;
                }
                c.writable_interest = pending;
            }
            // A handler that feeds the queue is asked until it has nothing
            // more (the rest of a chunk frame) before the close, even when
            // the kernel took the queue whole before it was asked.
            if !pending && c.close_after_flush && (!c.want_drained || (asked && !fed)) {
                if !self.linger {
                    self.mark_closing(id, CloseReason::Local);
                } else if !std::mem::replace(&mut c.write_shut, true) {
                    trace!("{id}: flushed; write side shut down, waiting for the peer to close");
                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                }
                return;
            }
            // Stop when the socket is full (a writable event follows), when
            // nobody wants feeding, or when the handler was asked, had
            // nothing, and no byte has left since (it would say the same).
            if pending || !c.want_drained || (asked && !fed && wrote == 0) {
                return;
            }
        }
    }
}

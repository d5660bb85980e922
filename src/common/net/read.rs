//! The inbound side of the loop: reading a connection until `WouldBlock`
//! or a pause, and handing its complete frames to the handler.

use std::io::ErrorKind;
use std::time::Instant;

use log::{debug, trace};

use super::{CloseReason, ConnId, Handler, Net};
use crate::wire::split_frame;

impl Net {
    /// Reads until `WouldBlock` (readiness is edge-triggered) or until the
    /// handler pauses reading, handing every complete frame to the handler.
    pub(super) fn read_conn<H: Handler>(&mut self, handler: &mut H, now: Instant, id: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(id.0) else { return };
            if c.closing.is_some() {
                return;
            }
            if !c.reading {
                break;
            }
            match c.read_some() {
                Ok(0) => {
                    self.drain_frames(handler, now, id);
                    self.mark_closing(id, CloseReason::Remote);
                    return;
                }
                Ok(n) => {
                    self.traffic.tcp_in += n as u64;
                    c.last_active = now;
                    self.drain_frames(handler, now, id);
                    self.report_read(handler, now, id);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    trace!("{id}: read error {e}");
                    self.mark_closing(id, CloseReason::Remote);
                    return;
                }
            }
        }
        // Also after a pass that read nothing (resumed, or paused): the
        // frames handed over since may have left another one unfinished.
        self.report_read(handler, now, id);
    }

    fn report_read<H: Handler>(&mut self, handler: &mut H, now: Instant, id: ConnId) {
        if let Some(buffered) = self.conns.get(id.0).filter(|c| c.closing.is_none()).map(|c| c.rlen) {
            handler.on_read(self, now, id, buffered);
        }
    }

    /// Hands the buffered complete frames to the handler while it reads.
    pub(super) fn drain_frames<H: Handler>(&mut self, handler: &mut H, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id.0) else { return };
        // Take the buffer so the handler may use `self` while a frame borrows it.
        let rbuf = std::mem::take(&mut c.rbuf);
        let rlen = c.rlen;
        let mut used = 0;
        let mut error = None;
        while let Some(rest) = rbuf.get(used..rlen) {
            // The handler may change the limit with each frame (a peer's
            // grows once its Hello is read): read it afresh.
            let Some(limit) = self.conns.get(id.0).filter(|c| c.closing.is_none() && c.reading).map(|c| c.limit) else {
                break;
            };
            match handler.on_bytes(self, now, id, rest) {
                Some(0) => break,
                Some(n) => {
                    used += n.min(rest.len());
                    continue;
                }
                None => {}
            }
            match split_frame(rest, limit) {
                Ok(Some((frame, n))) => {
                    used += n;
                    if let Err(e) = handler.on_frame(self, now, id, frame) {
                        error = Some(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(id.0) {
            c.rbuf = rbuf;
            c.rbuf.copy_within(used..rlen, 0);
            c.rlen = rlen - used;
        }
        if let Some(e) = error {
            debug!("{id}: malformed frame: {e}");
            self.mark_closing(id, CloseReason::Malformed(e));
        }
    }
}

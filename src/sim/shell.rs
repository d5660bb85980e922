//! What a peer core's shell does with a connection's bytes, done once for
//! the simulated world and the hand-driven harness as the daemons' reactor
//! does it: a frame is decoded under the connection's limit before the core
//! sees it, and a drained connection is fed frame by frame.

use std::time::Instant;

use crate::common::net::ConnId;
use crate::peer::machine::Machine;
use crate::wire::peer::{Message, MAX_PEER_FRAME};
use crate::wire::{split_frame, DecodeError};

/// Hands one whole frame that arrived on `conn` to `core`. `None`: it was
/// over the limit or did not decode, the core is told, and the caller
/// closes the connection as malformed; else whether it was a Chunk.
pub fn hand_over(core: &mut Machine, now: Instant, conn: ConnId, frame: &[u8], limit: u32) -> Option<bool> {
    let msg = match split_frame(frame, limit).and_then(|f| match f {
        Some((f, _)) => Message::decode(f),
        None => Err(DecodeError::Truncated),
    }) {
        Ok(msg) => msg,
        Err(e) => {
            core.handle_malformed(conn, &e);
            return None;
        }
    };
    let chunk = matches!(msg, Message::Chunk { .. });
    if let Err(fatal) = core.handle_message(now, conn, msg) {
        core.handle_fatal(now, fatal);
    }
    Some(chunk)
}

/// Asks `core` once for more on a drained `conn`, whose stream so far ends
/// at offset `queued` (`carry` included); calls `send` with each whole frame
/// at the head of `carry` and what it gave, and leaves the start of an
/// unfinished one there (a chunk frame comes in pieces). False if it had nothing.
pub fn feed(
    core: &mut Machine,
    now: Instant,
    conn: ConnId,
    queued: u64,
    carry: &mut Vec<u8>,
    mut send: impl FnMut(&[u8]),
) -> bool {
    let before = carry.len();
    core.handle_drained(now, conn, queued, carry);
    let fed = carry.len() > before;
    let mut used = 0;
    while let Ok(Some((_, n))) = split_frame(carry.get(used..).unwrap_or_default(), MAX_PEER_FRAME) {
        send(carry.get(used..used + n).unwrap_or_default());
        used += n;
    }
    carry.drain(..used);
    fed
}

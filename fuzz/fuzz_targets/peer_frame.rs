//! Peer frames as any peer can send them.
#![no_main]

#[path = "../common/frame_target.rs"]
mod frame_target;

use lmk::wire::peer::{Message, MAX_PEER_FRAME};

frame_target!(Message, MAX_PEER_FRAME);

//! Seeder <-> leecher frames. On accept the seeder speaks first with its
//! state; a leecher holding a slot then pipelines chunk requests, and the
//! seeder answers each, in order, with the chunk's bytes or a rejection.

use byteorder::{NetworkEndian, ReadBytesExt, WriteBytesExt};

use super::{finish, put_frame, put_frame_header, read_hash, take, DecodeError, Frame};
use crate::hash::ContentId;
use crate::meta::MAX_CHUNK;

/// Protocol version carried in the state message.
pub const PEER_VERSION: u8 = 1;
/// Magic bytes that open the state message, so a leecher that dialled the
/// wrong service finds out at once.
pub const MAGIC: [u8; 3] = *b"LMK";
/// Bytes of a chunk frame's body before the data: content id and index.
pub const CHUNK_PREFIX: usize = 24;
/// Largest peer frame (type byte and body): a chunk of the largest size.
pub const MAX_PEER_FRAME: u32 = 1 + CHUNK_PREFIX as u32 + MAX_CHUNK;

const STATE: u8 = 0x01;
const REQUEST: u8 = 0x02;
const CHUNK: u8 = 0x03;
const REJECT: u8 = 0x04;

/// What a seeder says to a new connection (the original design's states).
/// `Available` grants a slot: from then on the leecher is Connected.
/// `Unavailable` means every slot is taken: go elsewhere; the seeder closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeederState {
    Available = 1,
    Unavailable = 2,
}

/// Why a seeder will not send a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The seeder does not share that content id.
    UnknownFile = 1,
    /// The index is past the file's last chunk.
    BadIndex = 2,
    /// The file changed on the seeder's disk since it was hashed; it is withdrawn.
    Withdrawn = 3,
    /// The seeder could not read its file.
    ReadError = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    State {
        version: u8,
        state: SeederState,
    },
    Request {
        id: ContentId,
        index: u32,
    },
    /// Borrowed from the receive buffer: the leecher hashes and writes it in place.
    Chunk {
        id: ContentId,
        index: u32,
        data: &'a [u8],
    },
    Reject {
        id: ContentId,
        index: u32,
        reason: RejectReason,
    },
}

impl Message<'_> {
    /// Appends the frame. Chunk data longer than [`MAX_CHUNK`] is never built:
    /// the seeder's chunk size is bounded when its metadata is made.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::State { version, state } => put_frame(out, STATE, |o| {
                o.extend_from_slice(&MAGIC);
                o.push(version);
                o.push(state as u8);
            }),
            Message::Request { id, index } => put_frame(out, REQUEST, |o| put_ref(o, id, index)),
            Message::Chunk { id, index, data } => {
                put_chunk_header(out, id, index, data.len());
                out.extend_from_slice(data);
            }
            Message::Reject { id, index, reason } => put_frame(out, REJECT, |o| {
                put_ref(o, id, index);
                o.push(reason as u8);
            }),
        }
    }

    pub fn decode(frame: Frame<'_>) -> Result<Message<'_>, DecodeError> {
        let mut input = frame.body;
        let msg = match frame.kind {
            STATE => {
                if take(&mut input, 3)? != MAGIC {
                    return Err(DecodeError::BadValue { field: "magic" });
                }
                let version = input.read_u8()?;
                let state = match input.read_u8()? {
                    1 => SeederState::Available,
                    2 => SeederState::Unavailable,
                    _ => return Err(DecodeError::BadValue { field: "state" }),
                };
                Message::State { version, state }
            }
            REQUEST => {
                let (id, index) = read_ref(&mut input)?;
                Message::Request { id, index }
            }
            CHUNK => {
                let (id, index) = read_ref(&mut input)?;
                if input.is_empty() {
                    return Err(DecodeError::BadValue { field: "chunk data" });
                }
                let data = std::mem::take(&mut input);
                Message::Chunk { id, index, data }
            }
            REJECT => {
                let (id, index) = read_ref(&mut input)?;
                let reason = match input.read_u8()? {
                    1 => RejectReason::UnknownFile,
                    2 => RejectReason::BadIndex,
                    3 => RejectReason::Withdrawn,
                    4 => RejectReason::ReadError,
                    _ => return Err(DecodeError::BadValue { field: "reject reason" }),
                };
                Message::Reject { id, index, reason }
            }
            other => return Err(DecodeError::UnknownType(other.into())),
        };
        finish(input)?;
        Ok(msg)
    }
}

/// Appends a chunk frame's header for `data_len` bytes of data; the caller
/// appends the data itself (the seeder reads it from disk straight into the buffer).
pub fn put_chunk_header(out: &mut Vec<u8>, id: ContentId, index: u32, data_len: usize) {
    put_frame_header(out, CHUNK, CHUNK_PREFIX + data_len);
    put_ref(out, id, index);
}

fn put_ref(out: &mut Vec<u8>, id: ContentId, index: u32) {
    out.extend_from_slice(&id.0);
    let _ = out.write_u32::<NetworkEndian>(index);
}

fn read_ref(input: &mut &[u8]) -> Result<(ContentId, u32), DecodeError> {
    Ok((read_hash(input)?, input.read_u32::<NetworkEndian>()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::rng::Rng;
    use crate::hash::Hash20;
    use crate::wire::split_frame;

    fn messages(data: &[u8]) -> Vec<Message<'_>> {
        let id = Hash20::of(b"file");
        vec![
            Message::State { version: PEER_VERSION, state: SeederState::Available },
            Message::State { version: PEER_VERSION, state: SeederState::Unavailable },
            Message::Request { id, index: 7 },
            Message::Chunk { id, index: u32::MAX, data },
            Message::Reject { id, index: 1, reason: RejectReason::UnknownFile },
            Message::Reject { id, index: 1, reason: RejectReason::BadIndex },
            Message::Reject { id, index: 1, reason: RejectReason::Withdrawn },
            Message::Reject { id, index: 1, reason: RejectReason::ReadError },
        ]
    }

    #[test]
    fn round_trips() {
        let data = b"chunk bytes";
        for msg in messages(data) {
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            let (frame, used) = split_frame(&buf, MAX_PEER_FRAME).unwrap().unwrap();
            assert_eq!(used, buf.len());
            assert_eq!(Message::decode(frame), Ok(msg));
        }
    }

    #[test]
    fn golden_state_and_request() {
        let mut buf = Vec::new();
        Message::State { version: 1, state: SeederState::Available }.encode(&mut buf);
        assert_eq!(buf, [0, 0, 0, 6, 0x01, b'L', b'M', b'K', 1, 1]);
        buf.clear();
        Message::Request { id: Hash20([0xAB; 20]), index: 0x0102_0304 }.encode(&mut buf);
        let mut want = vec![0, 0, 0, 25, 0x02];
        want.extend_from_slice(&[0xAB; 20]);
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(buf, want);
    }

    #[test]
    fn every_truncation_rejected() {
        for msg in messages(b"x") {
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            let (frame, _) = split_frame(&buf, MAX_PEER_FRAME).unwrap().unwrap();
            for n in 0..frame.body.len() {
                let cut = Frame { kind: frame.kind, body: &frame.body[..n] };
                assert!(Message::decode(cut).is_err(), "{msg:?} cut at {n}");
            }
        }
    }

    #[test]
    fn each_error() {
        fn f(kind: u8, body: &[u8]) -> Frame<'_> {
            Frame { kind, body }
        }
        assert_eq!(Message::decode(f(0x99, &[])), Err(DecodeError::UnknownType(0x99)));
        assert_eq!(Message::decode(f(STATE, b"XYZ\x01\x01")), Err(DecodeError::BadValue { field: "magic" }));
        assert_eq!(Message::decode(f(STATE, b"LMK\x01\x07")), Err(DecodeError::BadValue { field: "state" }));
        assert_eq!(Message::decode(f(STATE, b"LMK\x01\x01\x00")), Err(DecodeError::TrailingBytes));
        assert_eq!(Message::decode(f(CHUNK, &[0; 24])), Err(DecodeError::BadValue { field: "chunk data" }));
        let mut reject = vec![0; 24];
        reject.push(9);
        assert_eq!(Message::decode(f(REJECT, &reject)), Err(DecodeError::BadValue { field: "reject reason" }));
        let huge = (MAX_PEER_FRAME + 1).to_be_bytes();
        assert!(matches!(split_frame(&huge, MAX_PEER_FRAME), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(7);
        let mut buf = [0u8; 64];
        for i in 0..20_000 {
            let len = rng.below(buf.len());
            rng.fill(&mut buf[..len]);
            let _ = Message::decode(Frame { kind: (i % 6) as u8, body: &buf[..len] });
            let _ = split_frame(&buf[..len], MAX_PEER_FRAME);
        }
    }
}

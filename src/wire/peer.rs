//! Peer <-> peer frames, version 3. One connection carries one file in both
//! directions. The dialler sends Hello naming the file; the other side
//! answers with its own Hello (or closes: it does not share that file). Then
//! both send their Bitfield, then a State saying whether the other may
//! request now; from then on Have announces each newly verified chunk, and
//! requests are answered in order with the chunk's bytes or a typed Reject.

use byteorder::{NetworkEndian, ReadBytesExt, WriteBytesExt};

use super::{finish, put_frame, put_frame_header, read_hash, take, DecodeError, Frame};
use crate::hash::ContentId;
use crate::meta::{MAX_CHUNK, MAX_CHUNKS};

/// Protocol version carried in Hello; any other is refused. Version 3 added
/// Request's flags; version 1 (seeder-only, the seeder spoke first with its
/// state) and 2 are refused.
pub const PEER_VERSION: u8 = 3;
/// Magic bytes that open Hello, so a peer that dialled the wrong service finds out at once.
pub const MAGIC: [u8; 3] = *b"LMK";
/// Bytes of a chunk frame's body before the data: the index.
pub const CHUNK_PREFIX: usize = 4;
/// Largest peer frame (type byte and body): a chunk of the largest size.
pub const MAX_PEER_FRAME: u32 = 1 + CHUNK_PREFIX as u32 + MAX_CHUNK;
/// Largest bitfield body: one bit per chunk of the largest file.
pub const MAX_BITFIELD: usize = MAX_CHUNKS.div_ceil(8) as usize;
/// A Hello frame's length field: the largest frame taken before Hellos are exchanged.
pub const HELLO_FRAME: u32 = 1 + 3 + 1 + 20 + 2 + 8;

/// The largest frame a peer of a file of `chunks` chunks of `chunk_size`
/// bytes may send once greeted: one chunk, or its bitfield.
pub fn max_frame(chunk_size: u32, chunks: u32) -> u32 {
    (1 + CHUNK_PREFIX as u32 + chunk_size).max(max_control_frame(chunks)).min(MAX_PEER_FRAME)
}

/// The largest frame a peer of a file of `chunks` chunks may send once
/// greeted when it is asked for no chunk (we hold the whole file): its
/// bitfield, a Reject or a Request. So a caller of a seed holds a read buffer of a few
/// KiB at most, not one of a chunk.
pub fn max_control_frame(chunks: u32) -> u32 {
    (1 + chunks.div_ceil(8)).max(REJECT_FRAME)
}

/// A Reject or Request frame's length field: type, index, reason or flags.
const REJECT_FRAME: u32 = 1 + 4 + 1;

const HELLO: u8 = 0x01;
const BITFIELD: u8 = 0x10;
const HAVE: u8 = 0x11;
const STATE: u8 = 0x12;
const REQUEST: u8 = 0x13;
const CHUNK: u8 = 0x14;
const REJECT: u8 = 0x15;
const CANCEL: u8 = 0x16;

/// Request's flag: the asker can use no other holder of this chunk.
const SOLE: u8 = 0x01;
/// Request's flag: the asker has other chunks to fetch meanwhile.
const MORE: u8 = 0x02;

/// The seed notes' three states, said by the uploading side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A slot was free when you arrived: it is yours, request now.
    Available = 1,
    /// No upload slot for you: fetch elsewhere without waiting. The
    /// connection stays open while we trade; you are told when a slot is yours.
    Unavailable = 2,
    /// You now hold an upload slot (after waiting for it): request now.
    Connected = 3,
}

impl State {
    /// Whether requests will be served.
    pub fn serves(self) -> bool {
        self != State::Unavailable
    }
}

/// Why a peer will not send a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// We never said we hold that chunk (no Bitfield bit, no Have).
    NotHeld = 1,
    /// The index is past the file's last chunk.
    BadIndex = 2,
    /// The file changed on our disk since it was hashed; it is withdrawn.
    Withdrawn = 3,
    /// We could not read our file.
    ReadError = 4,
    /// You hold no upload slot (it was taken away while the request travelled).
    NoSlot = 5,
    /// A complete peer already sent that chunk into the swarm and still has
    /// chunks it never sent: get this one from the peer that has it. A Have
    /// for it follows once every chunk has left the sender once.
    Spread = 6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `port`: where the sender accepts peers (0: it does not). `nonce`: a
    /// random number per process, to spot a connection to ourselves and to
    /// keep one of two connections dialled at once between the same peers.
    Hello {
        id: ContentId,
        port: u16,
        nonce: u64,
    },
    /// Borrowed: the receiver checks its length against the file's chunk count.
    Bitfield(&'a [u8]),
    Have(u32),
    State(State),
    /// `sole`: the asker has no other holder of the chunk it can use (one
    /// that has delivered a verified chunk), so a seed that refuses chunks
    /// held elsewhere sends this one. `more`: another peer that serves the
    /// asker holds chunks it has asked nobody for, so a refusal costs it no time.
    Request {
        index: u32,
        sole: bool,
        more: bool,
    },
    /// Borrowed from the receive buffer: hashed and written in place.
    Chunk {
        index: u32,
        data: &'a [u8],
    },
    Reject {
        index: u32,
        reason: RejectReason,
    },
    /// The end game: the chunk arrived from someone else; drop the request if still queued.
    Cancel(u32),
}

/// Names the message and its fields, never the chunk's bytes (for logs).
impl std::fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Hello { .. } => write!(f, "Hello"),
            Message::Bitfield(b) => write!(f, "Bitfield ({} bytes)", b.len()),
            Message::Have(i) => write!(f, "Have {i}"),
            Message::State(s) => write!(f, "State {s:?}"),
            Message::Request { index, sole, more } => {
                write!(f, "Request {index}")?;
                match (sole, more) {
                    (true, true) => write!(f, " (sole, more)"),
                    (true, false) => write!(f, " (sole)"),
                    (false, true) => write!(f, " (more)"),
                    (false, false) => Ok(()),
                }
            }
            Message::Chunk { index, data } => write!(f, "Chunk {index} ({} bytes)", data.len()),
            Message::Reject { index, reason } => write!(f, "Reject {index} {reason:?}"),
            Message::Cancel(i) => write!(f, "Cancel {i}"),
        }
    }
}

impl Message<'_> {
    /// Appends the frame. Chunk data longer than [`MAX_CHUNK`] and bitfields
    /// longer than [`MAX_BITFIELD`] are never built: both are bounded by the metadata.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::Hello { id, port, nonce } => put_frame(out, HELLO, |o| {
                o.extend_from_slice(&MAGIC);
                o.push(PEER_VERSION);
                o.extend_from_slice(&id.0);
                let _ = o.write_u16::<NetworkEndian>(port);
                let _ = o.write_u64::<NetworkEndian>(nonce);
            }),
            Message::Bitfield(bits) => put_frame(out, BITFIELD, |o| o.extend_from_slice(bits)),
            Message::Have(index) => put_frame(out, HAVE, |o| put_index(o, index)),
            Message::State(state) => put_frame(out, STATE, |o| o.push(state as u8)),
            Message::Request { index, sole, more } => put_frame(out, REQUEST, |o| {
                put_index(o, index);
                o.push(if sole { SOLE } else { 0 } | if more { MORE } else { 0 });
            }),
            Message::Chunk { index, data } => {
                put_chunk_header(out, index, data.len());
                out.extend_from_slice(data);
            }
            Message::Reject { index, reason } => put_frame(out, REJECT, |o| {
                put_index(o, index);
                o.push(reason as u8);
            }),
            Message::Cancel(index) => put_frame(out, CANCEL, |o| put_index(o, index)),
        }
    }

    pub fn decode(frame: Frame<'_>) -> Result<Message<'_>, DecodeError> {
        let mut input = frame.body;
        let msg = match frame.kind {
            HELLO => {
                if take(&mut input, 3)? != MAGIC {
                    return Err(DecodeError::BadValue { field: "magic" });
                }
                let version = input.read_u8()?;
                if version != PEER_VERSION {
                    return Err(DecodeError::Version { got: version, want: PEER_VERSION });
                }
                let id = read_hash(&mut input)?;
                let port = input.read_u16::<NetworkEndian>()?;
                let nonce = input.read_u64::<NetworkEndian>()?;
                Message::Hello { id, port, nonce }
            }
            BITFIELD => {
                if input.is_empty() {
                    return Err(DecodeError::BadValue { field: "bitfield" });
                }
                if input.len() > MAX_BITFIELD {
                    return Err(DecodeError::TooLarge { len: input.len() as u64, max: MAX_BITFIELD as u64 });
                }
                Message::Bitfield(std::mem::take(&mut input))
            }
            HAVE => Message::Have(input.read_u32::<NetworkEndian>()?),
            STATE => Message::State(match input.read_u8()? {
                1 => State::Available,
                2 => State::Unavailable,
                3 => State::Connected,
                _ => return Err(DecodeError::BadValue { field: "state" }),
            }),
            REQUEST => {
                let index = input.read_u32::<NetworkEndian>()?;
                let flags = input.read_u8()?;
                if flags & !(SOLE | MORE) != 0 {
                    return Err(DecodeError::BadValue { field: "request flags" });
                }
                Message::Request { index, sole: flags & SOLE != 0, more: flags & MORE != 0 }
            }
            CHUNK => {
                let index = input.read_u32::<NetworkEndian>()?;
                if input.is_empty() {
                    return Err(DecodeError::BadValue { field: "chunk data" });
                }
                Message::Chunk { index, data: std::mem::take(&mut input) }
            }
            REJECT => {
                let index = input.read_u32::<NetworkEndian>()?;
                let reason = match input.read_u8()? {
                    1 => RejectReason::NotHeld,
                    2 => RejectReason::BadIndex,
                    3 => RejectReason::Withdrawn,
                    4 => RejectReason::ReadError,
                    5 => RejectReason::NoSlot,
                    6 => RejectReason::Spread,
                    _ => return Err(DecodeError::BadValue { field: "reject reason" }),
                };
                Message::Reject { index, reason }
            }
            CANCEL => Message::Cancel(input.read_u32::<NetworkEndian>()?),
            other => return Err(DecodeError::UnknownType(other.into())),
        };
        finish(input)?;
        Ok(msg)
    }
}

/// Appends a chunk frame's header for `data_len` bytes of data; the caller
/// appends the data itself (read from disk straight into the buffer).
pub fn put_chunk_header(out: &mut Vec<u8>, index: u32, data_len: usize) {
    put_frame_header(out, CHUNK, CHUNK_PREFIX + data_len);
    put_index(out, index);
}

/// The start of a Chunk frame not yet whole in `buf` (its header and
/// index are in, its data not all): the chunk's index, the data's length and
/// the bytes taken by header and index. `None` for anything else: another
/// type, a whole frame, too few bytes, or a length the ordinary split
/// refuses (over `limit`, or no data), so the frame is split and checked
/// as usual. A receiver hands such a chunk's data on as it arrives instead
/// of holding the whole frame.
pub fn chunk_head(buf: &[u8], limit: u32) -> Option<(u32, usize, usize)> {
    let head = super::FRAME_HEADER + CHUNK_PREFIX;
    let mut input = buf.get(..head)?;
    let len = input.read_u32::<NetworkEndian>().ok()?;
    let kind = input.read_u8().ok()?;
    let index = input.read_u32::<NetworkEndian>().ok()?;
    let data = usize::try_from(len).ok()?.checked_sub(1 + CHUNK_PREFIX).filter(|d| *d > 0)?;
    let whole = buf.len() >= head + data;
    (kind == CHUNK && len <= limit && !whole).then_some((index, data, head))
}

/// The index of an encoded Chunk frame; `None` for any other frame. (The
/// simulator charges a chunk's length for it on the link.)
pub fn chunk_frame_index(frame: &[u8]) -> Option<u32> {
    if frame.get(4) != Some(&CHUNK) {
        return None;
    }
    Some(u32::from_be_bytes(frame.get(5..9)?.try_into().ok()?))
}

fn put_index(out: &mut Vec<u8>, index: u32) {
    let _ = out.write_u32::<NetworkEndian>(index);
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
            Message::Hello { id, port: 7000, nonce: u64::MAX },
            Message::Bitfield(&[0x81, 0x40]),
            Message::Have(9),
            Message::State(State::Available),
            Message::State(State::Unavailable),
            Message::State(State::Connected),
            Message::Request { index: 7, sole: false, more: false },
            Message::Request { index: 7, sole: true, more: false },
            Message::Request { index: 7, sole: false, more: true },
            Message::Request { index: 7, sole: true, more: true },
            Message::Chunk { index: u32::MAX, data },
            Message::Reject { index: 1, reason: RejectReason::NotHeld },
            Message::Reject { index: 1, reason: RejectReason::BadIndex },
            Message::Reject { index: 1, reason: RejectReason::Withdrawn },
            Message::Reject { index: 1, reason: RejectReason::ReadError },
            Message::Reject { index: 1, reason: RejectReason::NoSlot },
            Message::Reject { index: 1, reason: RejectReason::Spread },
            Message::Cancel(3),
        ]
    }

    #[test]
    fn a_chunk_frame_sent_as_its_header_then_pieces_decodes_whole() {
        let mut out = vec![7];
        put_chunk_header(&mut out, 3, 6);
        out.extend_from_slice(b"abc");
        out.extend_from_slice(b"def");
        let (frame, used) = split_frame(&out[1..], MAX_PEER_FRAME).unwrap().unwrap();
        assert_eq!(used, out.len() - 1);
        assert_eq!(Message::decode(frame).unwrap(), Message::Chunk { index: 3, data: b"abcdef" });
    }

    #[test]
    fn a_chunk_head_is_taken_only_from_a_chunk_frame_not_yet_whole_within_the_limit() {
        let mut out = Vec::new();
        Message::Chunk { index: 7, data: &[1; 100] }.encode(&mut out);
        assert_eq!(chunk_head(&out[..9], 105), Some((7, 100, 9)));
        assert_eq!(chunk_head(&out[..50], 105), Some((7, 100, 9)));
        assert_eq!(chunk_head(&out, 105), None, "whole: split as usual");
        assert_eq!(chunk_head(&out[..8], 105), None, "the index is not in yet");
        assert_eq!(chunk_head(&out[..9], 104), None, "over the limit: refused by the split");
        let mut other = Vec::new();
        Message::Have(7).encode(&mut other);
        other.extend_from_slice(&[0; 10]);
        assert_eq!(chunk_head(&other, 105), None);
        assert_eq!(chunk_head(&[0, 0, 0, 5, CHUNK, 0, 0, 0, 1, 9], 105), None, "no data: refused by decoding");
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
    fn golden_bytes() {
        let enc = |m: Message<'_>| {
            let mut b = Vec::new();
            m.encode(&mut b);
            b
        };
        let mut hello = vec![0, 0, 0, 35, 0x01, b'L', b'M', b'K', 3];
        hello.extend_from_slice(&[0xAB; 20]);
        hello.extend_from_slice(&[0x1B, 0x58, 0, 0, 0, 0, 0, 0, 0, 0x2A]);
        assert_eq!(enc(Message::Hello { id: Hash20([0xAB; 20]), port: 7000, nonce: 42 }), hello);
        assert_eq!(HELLO_FRAME as usize, hello.len() - 4, "the limit before Hello is one Hello");
        assert_eq!(max_frame(16384, 8), 16389);
        assert_eq!(max_frame(16384, 1 << 20), 1 + (1 << 17), "a bitfield larger than a chunk");
        assert_eq!(max_control_frame(8), 6, "a Reject, the largest frame but Chunk and Hello");
        assert_eq!(max_control_frame(8192), 1025, "the bitfield of 8192 chunks");
        assert_eq!(enc(Message::Bitfield(&[0x81, 0x40])), [0, 0, 0, 3, 0x10, 0x81, 0x40]);
        assert_eq!(enc(Message::Have(0x0102_0304)), [0, 0, 0, 5, 0x11, 1, 2, 3, 4]);
        assert_eq!(enc(Message::State(State::Connected)), [0, 0, 0, 2, 0x12, 3]);
        assert_eq!(enc(Message::Request { index: 5, sole: false, more: false }), [0, 0, 0, 6, 0x13, 0, 0, 0, 5, 0]);
        assert_eq!(enc(Message::Request { index: 5, sole: true, more: false }), [0, 0, 0, 6, 0x13, 0, 0, 0, 5, 1]);
        assert_eq!(enc(Message::Request { index: 5, sole: false, more: true }), [0, 0, 0, 6, 0x13, 0, 0, 0, 5, 2]);
        assert_eq!(enc(Message::Request { index: 5, sole: true, more: true }), [0, 0, 0, 6, 0x13, 0, 0, 0, 5, 3]);
        assert_eq!(enc(Message::Chunk { index: 2, data: b"xy" }), [0, 0, 0, 7, 0x14, 0, 0, 0, 2, b'x', b'y']);
        assert_eq!(enc(Message::Reject { index: 5, reason: RejectReason::NotHeld }), [0, 0, 0, 6, 0x15, 0, 0, 0, 5, 1]);
        assert_eq!(enc(Message::Reject { index: 5, reason: RejectReason::Spread }), [0, 0, 0, 6, 0x15, 0, 0, 0, 5, 6]);
        assert_eq!(enc(Message::Cancel(5)), [0, 0, 0, 5, 0x16, 0, 0, 0, 5]);
    }

    #[test]
    fn every_truncation_rejected() {
        for msg in messages(b"x") {
            let mut buf = Vec::new();
            msg.encode(&mut buf);
            let (frame, _) = split_frame(&buf, MAX_PEER_FRAME).unwrap().unwrap();
            // A shorter bitfield is well-formed here; its length is checked against the file by the core.
            let shortest = if frame.kind == BITFIELD { 1 } else { frame.body.len() };
            for n in 0..shortest.min(frame.body.len()) {
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
        assert_eq!(Message::decode(f(0x02, &[0; 24])), Err(DecodeError::UnknownType(0x02)), "a version 1 request");
        assert_eq!(Message::decode(f(HELLO, b"XYZ\x02")), Err(DecodeError::BadValue { field: "magic" }));
        // A version 1 seeder's first frame (State Available) is a Hello of version 1.
        assert_eq!(Message::decode(f(HELLO, b"LMK\x01\x01")), Err(DecodeError::Version { got: 1, want: 3 }));
        assert_eq!(Message::decode(f(HELLO, b"LMK\x02")), Err(DecodeError::Version { got: 2, want: 3 }));
        assert_eq!(
            Message::decode(f(REQUEST, &[0, 0, 0, 1, 4])),
            Err(DecodeError::BadValue { field: "request flags" })
        );
        assert_eq!(Message::decode(f(REQUEST, &[0, 0, 0, 1])), Err(DecodeError::Truncated), "a version 2 Request");
        assert_eq!(Message::decode(f(STATE, &[7])), Err(DecodeError::BadValue { field: "state" }));
        assert_eq!(Message::decode(f(STATE, &[1, 0])), Err(DecodeError::TrailingBytes));
        assert_eq!(Message::decode(f(CHUNK, &[0; 4])), Err(DecodeError::BadValue { field: "chunk data" }));
        assert_eq!(Message::decode(f(BITFIELD, &[])), Err(DecodeError::BadValue { field: "bitfield" }));
        let big = vec![0; MAX_BITFIELD + 1];
        assert!(matches!(Message::decode(f(BITFIELD, &big)), Err(DecodeError::TooLarge { .. })));
        assert_eq!(Message::decode(f(REJECT, &[0, 0, 0, 1, 7])), Err(DecodeError::BadValue { field: "reject reason" }));
        let huge = (MAX_PEER_FRAME + 1).to_be_bytes();
        assert!(matches!(split_frame(&huge, MAX_PEER_FRAME), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(7);
        let mut buf = [0u8; 64];
        let kinds = [HELLO, BITFIELD, HAVE, STATE, REQUEST, CHUNK, REJECT, CANCEL, 0x02, 0xFF];
        for i in 0..20_000 {
            let len = rng.below(buf.len());
            rng.fill(&mut buf[..len]);
            let _ = Message::decode(Frame { kind: kinds[i % kinds.len()], body: &buf[..len] });
            let _ = split_frame(&buf[..len], MAX_PEER_FRAME);
        }
    }
}

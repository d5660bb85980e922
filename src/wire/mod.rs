//! Every byte LMKtorrent puts on the wire is built and parsed here.
//!
//! Three channels, each in its own module: [`udp`] (BEP 15 tracker datagrams),
//! [`catalog`] (tracker TCP frames) and [`peer`] (peer <-> peer frames).
//! The TCP channels share one framing, `u32 length | u8 type | body`, where
//! `length` counts the type byte and the body; it is checked against the
//! channel's maximum before a single byte of the body is buffered.
//!
//! Decoding never panics and never trusts a length: every count is checked
//! against the bytes actually present before anything is allocated.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod bencode;
pub mod catalog;
pub mod http;
pub mod peer;
pub mod udp;

use std::fmt;

use byteorder::{NetworkEndian, ReadBytesExt, WriteBytesExt};

use crate::hash::Hash20;

/// Why a datagram or frame was rejected. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated,
    /// A length prefix or count exceeds the channel's limit.
    TooLarge { len: u64, max: u64 },
    /// A message type or action this channel does not know.
    UnknownType(u32),
    /// A field holds a value outside its range.
    BadValue { field: &'static str },
    /// A name is not valid UTF-8.
    BadUtf8,
    /// Bytes left over after a complete message.
    TrailingBytes,
    /// A peer speaks another protocol version.
    Version { got: u8, want: u8 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "message truncated"),
            DecodeError::TooLarge { len, max } => write!(f, "length {len} exceeds limit {max}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
            DecodeError::BadValue { field } => write!(f, "bad value in field `{field}`"),
            DecodeError::BadUtf8 => write!(f, "name is not valid UTF-8"),
            DecodeError::TrailingBytes => write!(f, "trailing bytes after message"),
            DecodeError::Version { got, want } => write!(f, "peer speaks protocol version {got}, we speak {want}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<std::io::Error> for DecodeError {
    /// Reading from a `&[u8]` fails only at its end.
    fn from(_: std::io::Error) -> Self {
        DecodeError::Truncated
    }
}

/// Bytes of the frame header: `u32 length | u8 type`.
pub const FRAME_HEADER: usize = 5;

/// One complete TCP frame, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
}

/// How large a frame a connection accepts: one maximum for every type, or
/// one per type (catalog requests: only a Publish may be large).
#[derive(Debug, Clone, Copy)]
pub enum FrameLimit {
    Any(u32),
    /// `of(kind)` is the maximum for a frame of that type (an unknown type
    /// is an error); `max` bounds them all.
    ByKind {
        max: u32,
        of: fn(u8) -> Result<u32, DecodeError>,
    },
}

impl FrameLimit {
    /// The largest frame of any type.
    pub fn max(self) -> u32 {
        match self {
            FrameLimit::Any(max) | FrameLimit::ByKind { max, .. } => max,
        }
    }
}

impl From<u32> for FrameLimit {
    fn from(max: u32) -> FrameLimit {
        FrameLimit::Any(max)
    }
}

/// Splits the first complete frame off `buf`.
///
/// `Ok(None)` means more bytes are needed. A length above the limit (which
/// counts the type byte and the body) is an error as soon as the header is
/// in: the 4 length bytes for the overall maximum, the type byte for a
/// per-type one. So a peer cannot make us buffer a frame we would refuse.
/// On success returns the frame and the bytes it occupied.
pub fn split_frame(buf: &[u8], limit: impl Into<FrameLimit>) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let limit = limit.into();
    let Some(mut len_bytes) = buf.get(..4) else {
        return Ok(None);
    };
    let len = len_bytes.read_u32::<NetworkEndian>()?;
    if len == 0 {
        return Err(DecodeError::BadValue { field: "frame length" });
    }
    let max = limit.max();
    if len > max {
        return Err(DecodeError::TooLarge { len: len.into(), max: max.into() });
    }
    if let (FrameLimit::ByKind { of, .. }, Some(&kind)) = (limit, buf.get(4)) {
        let max = of(kind)?;
        if len > max {
            return Err(DecodeError::TooLarge { len: len.into(), max: max.into() });
        }
    }
    let total = 4 + len as usize;
    let Some(frame) = buf.get(4..total) else {
        return Ok(None);
    };
    match frame.split_first() {
        Some((&kind, body)) => Ok(Some((Frame { kind, body }, total))),
        None => Err(DecodeError::Truncated),
    }
}

/// Appends a frame header for a body of `body_len` bytes; the body follows.
pub fn put_frame_header(out: &mut Vec<u8>, kind: u8, body_len: usize) {
    let len = u32::try_from(body_len + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
}

/// Appends a whole frame, writing the body with `body` and patching the length.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    put_frame_header(out, kind, 0);
    body(out);
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Maximum bytes of a name on the wire (a file name on every common filesystem fits).
pub const MAX_NAME: usize = 255;

/// Reads a `u16 length | UTF-8 bytes` string of at most `max` bytes.
pub fn read_str(input: &mut &[u8], max: usize) -> Result<String, DecodeError> {
    let len = usize::from(input.read_u16::<NetworkEndian>()?);
    if len > max {
        return Err(DecodeError::TooLarge { len: len as u64, max: max as u64 });
    }
    let bytes = take(input, len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8)
}

/// Writes a `u16 length | UTF-8 bytes` string; callers bound its length when building it.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let _ = out.write_u16::<NetworkEndian>(len);
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

/// Reads a 20-byte hash.
pub fn read_hash(input: &mut &[u8]) -> Result<Hash20, DecodeError> {
    let bytes = take(input, 20)?;
    let mut h = [0u8; 20];
    h.copy_from_slice(bytes);
    Ok(Hash20(h))
}

/// Takes exactly `n` bytes off the front of `input`.
pub fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// Fails with `TrailingBytes` unless `input` was consumed whole.
pub fn finish(input: &[u8]) -> Result<(), DecodeError> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_more_then_splits() {
        let mut buf = Vec::new();
        put_frame(&mut buf, 7, |o| o.extend_from_slice(b"abc"));
        for n in 0..buf.len() {
            assert_eq!(split_frame(&buf[..n], 100), Ok(None), "prefix {n}");
        }
        buf.extend_from_slice(b"next");
        let (frame, used) = split_frame(&buf, 100).unwrap().unwrap();
        assert_eq!(frame, Frame { kind: 7, body: b"abc" });
        assert_eq!(used, 8);
    }

    #[test]
    fn huge_length_rejected_before_body_arrives() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(split_frame(&buf, 1024), Err(DecodeError::TooLarge { len: u32::MAX as u64, max: 1024 }));
    }

    #[test]
    fn per_kind_maximum_checked_on_the_header() {
        fn of(kind: u8) -> Result<u32, DecodeError> {
            match kind {
                1 => Ok(2),
                2 => Ok(1000),
                k => Err(DecodeError::UnknownType(k.into())),
            }
        }
        let limit = FrameLimit::ByKind { max: 1000, of };
        // Five bytes of a 900-byte frame of a small type: refused before its body.
        assert_eq!(split_frame(&[0, 0, 3, 132, 1], limit), Err(DecodeError::TooLarge { len: 900, max: 2 }));
        assert_eq!(split_frame(&[0, 0, 3, 132, 2], limit), Ok(None));
        assert_eq!(split_frame(&[0, 0, 0, 1, 9], limit), Err(DecodeError::UnknownType(9)));
        assert_eq!(split_frame(&[0, 0, 0, 2], limit), Ok(None), "the type byte is not in yet");
        let (frame, used) = split_frame(&[0, 0, 0, 2, 1, 7], limit).unwrap().unwrap();
        assert_eq!((frame, used), (Frame { kind: 1, body: &[7] }, 6));
    }

    #[test]
    fn zero_length_frame_rejected() {
        assert_eq!(split_frame(&[0, 0, 0, 0], 10), Err(DecodeError::BadValue { field: "frame length" }));
    }

    #[test]
    fn str_round_trip_and_limits() {
        let mut out = Vec::new();
        put_str(&mut out, "héllo");
        let mut input = &out[..];
        assert_eq!(read_str(&mut input, 10).unwrap(), "héllo");
        assert!(input.is_empty());
        assert_eq!(read_str(&mut &out[..], 3), Err(DecodeError::TooLarge { len: 6, max: 3 }));
        assert_eq!(read_str(&mut &out[..4], 10), Err(DecodeError::Truncated));
        assert_eq!(read_str(&mut &[0u8, 2, 0xff, 0xfe][..], 10), Err(DecodeError::BadUtf8));
    }

    #[test]
    fn finish_rejects_leftovers() {
        assert_eq!(finish(b""), Ok(()));
        assert_eq!(finish(b"x"), Err(DecodeError::TrailingBytes));
    }
}

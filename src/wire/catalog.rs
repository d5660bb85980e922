//! Tracker TCP frames: the catalog. Seeders publish file metadata; leechers
//! list the files and fetch one file's metadata. Request/response, in order,
//! several requests may be sent before the first answer.

use byteorder::{NetworkEndian, ReadBytesExt, WriteBytesExt};

use super::{finish, put_frame, put_str, read_hash, read_str, DecodeError, Frame, FrameLimit, MAX_NAME};
use crate::hash::ContentId;
use crate::meta::{FileMeta, MAX_CHUNKS};

/// Largest catalog frame (type byte and body), checked before buffering.
pub const MAX_CATALOG_FRAME: u32 = 16 * 1024 * 1024;
/// What a tracker accepts from a catalog client: List, GetMeta and
/// Challenge are tiny, only a (Signed)Publish may be as large as the
/// metadata limit.
pub const REQUEST_LIMIT: FrameLimit = FrameLimit::ByKind { max: MAX_CATALOG_FRAME, of: request_max };
/// Largest GetMeta frame: type, selector byte and a name of `MAX_NAME` bytes.
const MAX_GET_META: u32 = 1 + 1 + 2 + MAX_NAME as u32;
/// Version byte that starts every encoded [`FileMeta`].
pub const META_VERSION: u8 = 1;
/// Bytes of one list entry besides its name.
const ENTRY_FIXED: usize = 20 + 8 + 4 + 4 + 2;

const PUBLISH: u8 = 0x01;
const LIST: u8 = 0x02;
const GET_META: u8 = 0x03;
const CHALLENGE: u8 = 0x04;
const SIGNED_PUBLISH: u8 = 0x05;
const PUBLISHED: u8 = 0x81;
const FILE_LIST: u8 = 0x82;
const META: u8 = 0x83;
const CHALLENGE_NONCE: u8 = 0x84;
const ERROR: u8 = 0xFF;

/// What a tracker's challenge holds: bound to the client's address and a time window.
pub type Nonce = [u8; 16];
/// HMAC-SHA1 of a publish under the shared publish key.
pub type Mac = [u8; 20];

/// How a leecher names the file it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    Id(ContentId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A seeder shares this file.
    Publish(FileMeta),
    /// Every file the tracker knows.
    List,
    /// One file's metadata.
    GetMeta(Selector),
    /// A nonce to sign publishes with.
    Challenge,
    /// A publish proven to come from a holder of the publish key.
    SignedPublish { nonce: Nonce, mac: Mac, meta: FileMeta },
}

/// One row of the file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub id: ContentId,
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    pub seeders: u32,
}

/// Why the tracker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound = 1,
    Ambiguous = 2,
    Refused = 3,
    Full = 4,
    /// The tracker wants a publish signed with its key, and this one was not
    /// (or with another key, or over a stale challenge).
    Unauthorized = 5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Published(ContentId),
    List(Vec<ListEntry>),
    Meta(FileMeta),
    Challenge(Nonce),
    Error { code: ErrorCode, message: String },
}

/// The canonical metadata encoding; its SHA-1 is the content id.
/// `u8 version | str name | u64 size | u32 chunk_size | u32 count | count x 20-byte hash`
pub fn encode_meta(meta: &FileMeta, out: &mut Vec<u8>) {
    out.push(META_VERSION);
    put_str(out, meta.name());
    let _ = out.write_u64::<NetworkEndian>(meta.size());
    let _ = out.write_u32::<NetworkEndian>(meta.chunk_size());
    let _ = out.write_u32::<NetworkEndian>(meta.chunk_count());
    for h in meta.hashes() {
        out.extend_from_slice(&h.0);
    }
}

/// Decodes metadata, checking the hash count against the bytes present
/// before allocating and the structure through [`FileMeta::new`].
pub fn decode_meta(input: &mut &[u8]) -> Result<FileMeta, DecodeError> {
    if input.read_u8()? != META_VERSION {
        return Err(DecodeError::BadValue { field: "meta version" });
    }
    let name = read_str(input, MAX_NAME)?;
    let size = input.read_u64::<NetworkEndian>()?;
    let chunk_size = input.read_u32::<NetworkEndian>()?;
    let count = input.read_u32::<NetworkEndian>()?;
    if count > MAX_CHUNKS {
        return Err(DecodeError::TooLarge { len: count.into(), max: MAX_CHUNKS.into() });
    }
    if (input.len() as u64) < u64::from(count) * 20 {
        return Err(DecodeError::Truncated);
    }
    let hashes = (0..count).map(|_| read_hash(input)).collect::<Result<Vec<_>, _>>()?;
    FileMeta::new(name, size, chunk_size, hashes).map_err(|e| DecodeError::BadValue {
        field: match e {
            crate::meta::MetaError::NameLength(_) => "name",
            crate::meta::MetaError::EmptyFile => "size",
            crate::meta::MetaError::ChunkSize(_) => "chunk_size",
            crate::meta::MetaError::ChunkCount { .. } => "chunk count",
        },
    })
}

/// The frame maximum (type byte and body) of a catalog request type.
pub fn request_max(kind: u8) -> Result<u32, DecodeError> {
    match kind {
        PUBLISH | SIGNED_PUBLISH => Ok(MAX_CATALOG_FRAME),
        LIST | CHALLENGE => Ok(1),
        GET_META => Ok(MAX_GET_META),
        other => Err(DecodeError::UnknownType(other.into())),
    }
}

impl Request {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Publish(meta) => put_frame(out, PUBLISH, |o| encode_meta(meta, o)),
            Request::List => put_frame(out, LIST, |_| {}),
            Request::GetMeta(Selector::Name(name)) => put_frame(out, GET_META, |o| {
                o.push(1);
                put_str(o, name);
            }),
            Request::GetMeta(Selector::Id(id)) => put_frame(out, GET_META, |o| {
                o.push(2);
                o.extend_from_slice(&id.0);
            }),
            Request::Challenge => put_frame(out, CHALLENGE, |_| {}),
            Request::SignedPublish { nonce, mac, meta } => put_frame(out, SIGNED_PUBLISH, |o| {
                o.extend_from_slice(nonce);
                o.extend_from_slice(mac);
                encode_meta(meta, o);
            }),
        }
    }

    pub fn decode(frame: Frame<'_>) -> Result<Request, DecodeError> {
        let mut input = frame.body;
        let req = match frame.kind {
            PUBLISH => Request::Publish(decode_meta(&mut input)?),
            LIST => Request::List,
            GET_META => match input.read_u8()? {
                1 => Request::GetMeta(Selector::Name(read_str(&mut input, MAX_NAME)?)),
                2 => Request::GetMeta(Selector::Id(read_hash(&mut input)?)),
                _ => return Err(DecodeError::BadValue { field: "selector" }),
            },
            CHALLENGE => Request::Challenge,
            SIGNED_PUBLISH => {
                let nonce = read_array(&mut input)?;
                let mac = read_array(&mut input)?;
                Request::SignedPublish { nonce, mac, meta: decode_meta(&mut input)? }
            }
            other => return Err(DecodeError::UnknownType(other.into())),
        };
        finish(input)?;
        Ok(req)
    }
}

/// Appends the frame `Response::Meta(meta)` encodes to, from a borrowed
/// `meta` (the tracker answers from its catalog without a copy).
pub fn encode_meta_response(meta: &FileMeta, out: &mut Vec<u8>) {
    put_frame(out, META, |o| encode_meta(meta, o));
}

impl Response {
    /// A few words for a log or error line: an error's code and text as
    /// sent (escape it before printing), any other response by its kind.
    pub fn summary(&self) -> String {
        match self {
            Response::Error { code, message } => format!("{code:?}: {message}"),
            Response::List(entries) => format!("a list of {} file(s)", entries.len()),
            Response::Meta(meta) => format!("metadata of {}", meta.content_id()),
            Response::Published(id) => format!("Published {id}"),
            Response::Challenge(_) => "a challenge".into(),
        }
    }

    /// Appends the response frame. A file list is cut to what fits one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Response::Published(id) => put_frame(out, PUBLISHED, |o| o.extend_from_slice(&id.0)),
            Response::List(entries) => put_frame(out, FILE_LIST, |o| {
                let fits = entries_that_fit(entries);
                let _ = o.write_u32::<NetworkEndian>(fits as u32);
                for e in entries.iter().take(fits) {
                    o.extend_from_slice(&e.id.0);
                    let _ = o.write_u64::<NetworkEndian>(e.size);
                    let _ = o.write_u32::<NetworkEndian>(e.chunk_size);
                    let _ = o.write_u32::<NetworkEndian>(e.seeders);
                    put_str(o, &e.name);
                }
            }),
            Response::Meta(meta) => encode_meta_response(meta, out),
            Response::Challenge(nonce) => put_frame(out, CHALLENGE_NONCE, |o| o.extend_from_slice(nonce)),
            Response::Error { code, message } => put_frame(out, ERROR, |o| {
                o.push(*code as u8);
                put_str(o, truncate(message, MAX_NAME * 2));
            }),
        }
    }

    pub fn decode(frame: Frame<'_>) -> Result<Response, DecodeError> {
        let mut input = frame.body;
        let resp = match frame.kind {
            PUBLISHED => Response::Published(read_hash(&mut input)?),
            FILE_LIST => {
                let count = input.read_u32::<NetworkEndian>()?;
                if u64::from(count) * ENTRY_FIXED as u64 > input.len() as u64 {
                    return Err(DecodeError::Truncated);
                }
                let mut entries = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    entries.push(ListEntry {
                        id: read_hash(&mut input)?,
                        size: input.read_u64::<NetworkEndian>()?,
                        chunk_size: input.read_u32::<NetworkEndian>()?,
                        seeders: input.read_u32::<NetworkEndian>()?,
                        name: read_str(&mut input, MAX_NAME)?,
                    });
                }
                Response::List(entries)
            }
            META => Response::Meta(decode_meta(&mut input)?),
            CHALLENGE_NONCE => Response::Challenge(read_array(&mut input)?),
            ERROR => {
                let code = match input.read_u8()? {
                    1 => ErrorCode::NotFound,
                    2 => ErrorCode::Ambiguous,
                    3 => ErrorCode::Refused,
                    4 => ErrorCode::Full,
                    5 => ErrorCode::Unauthorized,
                    _ => return Err(DecodeError::BadValue { field: "error code" }),
                };
                Response::Error { code, message: read_str(&mut input, MAX_NAME * 2)? }
            }
            other => return Err(DecodeError::UnknownType(other.into())),
        };
        finish(input)?;
        Ok(resp)
    }
}

/// `N` bytes, as they are.
fn read_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let (head, rest) = input.split_first_chunk::<N>().ok_or(DecodeError::Truncated)?;
    *input = rest;
    Ok(*head)
}

/// How many leading entries fit one frame.
fn entries_that_fit(entries: &[ListEntry]) -> usize {
    let mut room = MAX_CATALOG_FRAME as usize - 1 - 4;
    entries
        .iter()
        .take_while(|e| {
            let need = ENTRY_FIXED + e.name.len();
            let fits = need <= room;
            room = room.saturating_sub(need);
            fits
        })
        .count()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::rng::Rng;
    use crate::hash::Hash20;
    use crate::meta::MIN_CHUNK;
    use crate::wire::split_frame;

    fn meta() -> FileMeta {
        let size = u64::from(MIN_CHUNK) * 2 + 1;
        FileMeta::new("a.bin".into(), size, MIN_CHUNK, vec![Hash20::of(b"0"), Hash20::of(b"1"), Hash20::of(b"2")])
            .unwrap()
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Publish(meta()),
            Request::List,
            Request::GetMeta(Selector::Name("a.bin".into())),
            Request::GetMeta(Selector::Id(Hash20::of(b"id"))),
            Request::Challenge,
            Request::SignedPublish { nonce: [7; 16], mac: [9; 20], meta: meta() },
        ]
    }

    fn responses() -> Vec<Response> {
        vec![
            Response::Published(meta().content_id()),
            Response::List(vec![]),
            Response::List(vec![ListEntry {
                id: Hash20::of(b"i"),
                name: "ß.txt".into(),
                size: 1 << 40,
                chunk_size: MIN_CHUNK,
                seeders: 3,
            }]),
            Response::Meta(meta()),
            Response::Error { code: ErrorCode::NotFound, message: "no file named x".into() },
            Response::Error { code: ErrorCode::Ambiguous, message: String::new() },
            Response::Error { code: ErrorCode::Refused, message: "r".into() },
            Response::Error { code: ErrorCode::Full, message: "f".into() },
            Response::Error { code: ErrorCode::Unauthorized, message: "u".into() },
            Response::Challenge([3; 16]),
        ]
    }

    fn frame_of(bytes: &[u8]) -> Frame<'_> {
        let (frame, used) = split_frame(bytes, MAX_CATALOG_FRAME).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        frame
    }

    #[test]
    fn requests_fit_their_type_maximum_and_larger_headers_are_refused() {
        let longest = Request::GetMeta(Selector::Name("n".repeat(MAX_NAME)));
        for req in requests().into_iter().chain([longest]) {
            let mut buf = Vec::new();
            req.encode(&mut buf);
            let (frame, _) = split_frame(&buf, REQUEST_LIMIT).unwrap().unwrap();
            assert_eq!(Request::decode(frame), Ok(req));
        }
        // A List or GetMeta header announcing 16 MiB is refused on its 5 bytes.
        for (kind, max) in [(LIST, 1), (GET_META, MAX_GET_META), (CHALLENGE, 1)] {
            let mut header = Vec::new();
            crate::wire::put_frame_header(&mut header, kind, MAX_CATALOG_FRAME as usize - 1);
            let err = split_frame(&header, REQUEST_LIMIT).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { len: MAX_CATALOG_FRAME.into(), max: max.into() });
        }
        assert_eq!(split_frame(&[0, 0, 0, 1, 0x42], REQUEST_LIMIT), Err(DecodeError::UnknownType(0x42)));
    }

    #[test]
    fn round_trips() {
        for req in requests() {
            let mut buf = Vec::new();
            req.encode(&mut buf);
            assert_eq!(Request::decode(frame_of(&buf)), Ok(req));
        }
        for resp in responses() {
            let mut buf = Vec::new();
            resp.encode(&mut buf);
            assert_eq!(Response::decode(frame_of(&buf)), Ok(resp));
        }
    }

    #[test]
    fn golden_list_request_and_meta_layout() {
        let mut buf = Vec::new();
        Request::List.encode(&mut buf);
        assert_eq!(buf, [0, 0, 0, 1, 0x02]);
        buf.clear();
        Request::Challenge.encode(&mut buf);
        assert_eq!(buf, [0, 0, 0, 1, 0x04]);
        buf.clear();
        Response::Challenge([0xab; 16]).encode(&mut buf);
        assert_eq!(buf[..5], [0, 0, 0, 17, 0x84]);
        buf.clear();
        Request::SignedPublish { nonce: [1; 16], mac: [2; 20], meta: meta() }.encode(&mut buf);
        assert_eq!(buf[4], 0x05);
        assert_eq!((&buf[5..21], &buf[21..41]), (&[1u8; 16][..], &[2u8; 20][..]));
        assert_eq!(buf.len(), 5 + 36 + 84);
        let mut m = Vec::new();
        encode_meta(&meta(), &mut m);
        assert_eq!(&m[..8], &[1, 0, 5, b'a', b'.', b'b', b'i', b'n']);
        assert_eq!(&m[8..16], &(u64::from(MIN_CHUNK) * 2 + 1).to_be_bytes());
        assert_eq!(&m[16..24], &[0, 0, 0x40, 0, 0, 0, 0, 3]);
        assert_eq!(m.len(), 24 + 60);
    }

    #[test]
    fn every_truncation_rejected() {
        for req in requests() {
            let mut buf = Vec::new();
            req.encode(&mut buf);
            let frame = frame_of(&buf);
            for n in 0..frame.body.len() {
                let cut = Frame { kind: frame.kind, body: &frame.body[..n] };
                assert!(Request::decode(cut).is_err(), "{req:?} cut at {n}");
            }
        }
        for resp in responses() {
            let mut buf = Vec::new();
            resp.encode(&mut buf);
            let frame = frame_of(&buf);
            for n in 0..frame.body.len() {
                let cut = Frame { kind: frame.kind, body: &frame.body[..n] };
                assert!(Response::decode(cut).is_err(), "{resp:?} cut at {n}");
            }
        }
    }

    #[test]
    fn each_error() {
        fn f(kind: u8, body: &[u8]) -> Frame<'_> {
            Frame { kind, body }
        }
        assert_eq!(Request::decode(f(0x42, &[])), Err(DecodeError::UnknownType(0x42)));
        assert_eq!(Response::decode(f(0x42, &[])), Err(DecodeError::UnknownType(0x42)));
        assert_eq!(Request::decode(f(LIST, &[0])), Err(DecodeError::TrailingBytes));
        assert_eq!(Request::decode(f(GET_META, &[9])), Err(DecodeError::BadValue { field: "selector" }));
        assert_eq!(Request::decode(f(GET_META, &[1, 0, 1, 0xff])), Err(DecodeError::BadUtf8));
        assert_eq!(Response::decode(f(ERROR, &[7, 0, 0])), Err(DecodeError::BadValue { field: "error code" }));
        // A hash count beyond the limit is refused before any allocation.
        let mut body = vec![META_VERSION, 0, 1, b'a'];
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&MIN_CHUNK.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Request::decode(f(PUBLISH, &body)), Err(DecodeError::TooLarge { .. })));
        // A count that fits the limit but not the bytes present.
        let n = body.len();
        body[n - 4..].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(Request::decode(f(PUBLISH, &body)), Err(DecodeError::Truncated));
        // Structure: one hash for a file of one chunk, but the wrong version byte.
        body[n - 4..].copy_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&[0; 20]);
        assert!(Request::decode(f(PUBLISH, &body)).is_ok());
        body[0] = 9;
        assert_eq!(Request::decode(f(PUBLISH, &body)), Err(DecodeError::BadValue { field: "meta version" }));
        // Zero size is structural, not a name problem.
        body[0] = META_VERSION;
        body[4..12].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(Request::decode(f(PUBLISH, &body)), Err(DecodeError::BadValue { field: "size" }));
        // A list whose count promises more entries than the bytes hold.
        assert_eq!(Response::decode(f(FILE_LIST, &[0, 0xff, 0xff, 0xff])), Err(DecodeError::Truncated));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(42);
        let mut buf = vec![0u8; 512];
        for i in 0..20_000 {
            let len = rng.below(buf.len());
            rng.fill(&mut buf[..len]);
            let kinds = [
                PUBLISH,
                LIST,
                GET_META,
                CHALLENGE,
                SIGNED_PUBLISH,
                PUBLISHED,
                FILE_LIST,
                META,
                CHALLENGE_NONCE,
                ERROR,
            ];
            let kind = kinds[i % kinds.len()];
            let frame = Frame { kind, body: &buf[..len] };
            let _ = Request::decode(frame);
            let _ = Response::decode(frame);
        }
    }
}

//! BEP 15 UDP tracker datagrams: one datagram is one message, decoded whole.
//!
//! The tracker parses requests from anyone, including spoofed sources, so request
//! errors carry aquatic's answer-or-drop split ([`RequestError`]). Clients parse
//! responses and only need to know a datagram was bad, so those return a plain
//! [`DecodeError`]. Every field is big-endian (`NetworkEndian`), as BEP 15 says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use byteorder::{NetworkEndian, ReadBytesExt, WriteBytesExt};

use super::{finish, read_hash, DecodeError};
use crate::hash::Hash20;

/// The magic first 8 bytes of a connect request; it proves the sender speaks BEP 15.
pub const PROTOCOL_ID: u64 = 0x417_2710_1980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;
/// Largest request datagram we parse: a scrape of MAX_SCRAPE hashes (16 + 74*20 = 1496).
/// Longer datagrams are dropped unparsed (Unsendable TooLarge).
pub const MAX_REQUEST: usize = 1496;
/// BEP 15: up to about 74 torrents per scrape.
pub const MAX_SCRAPE: usize = 74;
/// Peers per announce response we build or accept: bounds the datagram at 3620 bytes (IPv6).
pub const MAX_PEERS: usize = 200;
/// Error message bytes we send or accept.
pub const MAX_ERROR_MESSAGE: usize = 200;

/// Request header: `u64 connection_id | u32 action | u32 transaction_id`.
const REQUEST_HEADER: usize = 16;
/// Bytes per peer entry: `u32 ip | u16 port` or `[u8; 16] ip | u16 port`.
const PEER_V4: usize = 6;
const PEER_V6: usize = 18;
/// Bytes per scrape entry: `u32 seeders | u32 completed | u32 leechers`.
const STATS: usize = 12;

/// The announce `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None = 0,
    Completed = 1,
    Started = 2,
    Stopped = 3,
}

impl Event {
    fn from_wire(value: u32) -> Result<Event, DecodeError> {
        match value {
            0 => Ok(Event::None),
            1 => Ok(Event::Completed),
            2 => Ok(Event::Started),
            3 => Ok(Event::Stopped),
            _ => Err(DecodeError::BadValue { field: "event" }),
        }
    }
}

/// An announce request: 98 bytes. Anything after byte 98 is BEP 41 options, which
/// we accept and ignore (within MAX_REQUEST) rather than reject as trailing bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: Hash20,
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// BEP 15 "IP address"; 0 means "use the source address".
    pub ip: Ipv4Addr,
    pub key: u32,
    /// -1 means "tracker's default".
    pub num_want: i32,
    pub port: u16,
}

/// A scrape request for 1..=MAX_SCRAPE info hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hashes: Vec<Hash20>,
}

/// A client-to-tracker datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect { transaction_id: u32 },
    Announce(AnnounceRequest),
    Scrape(ScrapeRequest),
}

/// Why a request was rejected: the aquatic split. Before the connection id and transaction id are known
/// (too short, too long, wrong protocol id in a connect) it is `Unsendable`: answered with silence, so a
/// spoofed source gets nothing. After them, `Sendable`: worth an error response naming the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    Unsendable(DecodeError),
    Sendable { connection_id: u64, transaction_id: u32, error: DecodeError },
}

impl Request {
    /// Parses one datagram. For a connect, `Sendable::connection_id` is the protocol id.
    pub fn decode(datagram: &[u8]) -> Result<Request, RequestError> {
        if datagram.len() < REQUEST_HEADER {
            return Err(RequestError::Unsendable(DecodeError::Truncated));
        }
        if datagram.len() > MAX_REQUEST {
            return Err(RequestError::Unsendable(too_large(datagram.len(), MAX_REQUEST)));
        }
        let mut input = datagram;
        let header = (|| -> Result<(u64, u32, u32), DecodeError> {
            let connection_id = input.read_u64::<NetworkEndian>()?;
            let action = input.read_u32::<NetworkEndian>()?;
            let transaction_id = input.read_u32::<NetworkEndian>()?;
            Ok((connection_id, action, transaction_id))
        })();
        let (connection_id, action, transaction_id) = header.map_err(RequestError::Unsendable)?;
        if action == ACTION_CONNECT && connection_id != PROTOCOL_ID {
            // Not BEP 15 at all (or a reflection attempt): stay silent.
            return Err(RequestError::Unsendable(DecodeError::BadValue { field: "protocol_id" }));
        }
        decode_request_body(connection_id, action, transaction_id, input).map_err(|error| RequestError::Sendable {
            connection_id,
            transaction_id,
            error,
        })
    }

    /// Appends the datagram. A scrape writes at most MAX_SCRAPE hashes, so what we send decodes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Connect { transaction_id } => {
                put_u64(out, PROTOCOL_ID);
                put_u32(out, ACTION_CONNECT);
                put_u32(out, *transaction_id);
            }
            Request::Announce(a) => {
                put_u64(out, a.connection_id);
                put_u32(out, ACTION_ANNOUNCE);
                put_u32(out, a.transaction_id);
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id);
                put_u64(out, a.downloaded);
                put_u64(out, a.left);
                put_u64(out, a.uploaded);
                put_u32(out, a.event as u32);
                put_u32(out, u32::from(a.ip));
                put_u32(out, a.key);
                let _ = out.write_i32::<NetworkEndian>(a.num_want);
                put_u16(out, a.port);
            }
            Request::Scrape(s) => {
                put_u64(out, s.connection_id);
                put_u32(out, ACTION_SCRAPE);
                put_u32(out, s.transaction_id);
                for hash in s.info_hashes.iter().take(MAX_SCRAPE) {
                    out.extend_from_slice(&hash.0);
                }
            }
        }
    }

    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect { transaction_id } => *transaction_id,
            Request::Announce(a) => a.transaction_id,
            Request::Scrape(s) => s.transaction_id,
        }
    }
}

/// Everything after the 16-byte header; any error here is answerable.
fn decode_request_body(
    connection_id: u64,
    action: u32,
    transaction_id: u32,
    mut input: &[u8],
) -> Result<Request, DecodeError> {
    match action {
        ACTION_CONNECT => {
            finish(input)?;
            Ok(Request::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            let info_hash = read_hash(&mut input)?;
            let peer_id = read_hash(&mut input)?.0;
            let downloaded = input.read_u64::<NetworkEndian>()?;
            let left = input.read_u64::<NetworkEndian>()?;
            let uploaded = input.read_u64::<NetworkEndian>()?;
            let event = Event::from_wire(input.read_u32::<NetworkEndian>()?)?;
            let ip = Ipv4Addr::from(input.read_u32::<NetworkEndian>()?);
            let key = input.read_u32::<NetworkEndian>()?;
            let num_want = input.read_i32::<NetworkEndian>()?;
            let port = input.read_u16::<NetworkEndian>()?;
            // Whatever follows is BEP 41 options; we use none of them.
            Ok(Request::Announce(AnnounceRequest {
                connection_id,
                transaction_id,
                info_hash,
                peer_id,
                downloaded,
                left,
                uploaded,
                event,
                ip,
                key,
                num_want,
                port,
            }))
        }
        ACTION_SCRAPE => {
            // A full scrape (no hashes) is not offered over UDP.
            if input.is_empty() {
                return Err(DecodeError::BadValue { field: "info_hashes" });
            }
            let count = input.len() / 20;
            if count > MAX_SCRAPE {
                return Err(too_large(count, MAX_SCRAPE));
            }
            let mut info_hashes = Vec::with_capacity(count);
            while !input.is_empty() {
                // A partial hash at the end fails here as Truncated.
                info_hashes.push(read_hash(&mut input)?);
            }
            Ok(Request::Scrape(ScrapeRequest { connection_id, transaction_id, info_hashes }))
        }
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// One torrent's counters in a scrape response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// An announce answer's fixed part. Its peers follow as compact entries
/// ([`peer_v4`], [`peer_v6`]), all of the requester's family, at most
/// [`MAX_PEERS`]: a tracker that stores its peers as these entries appends
/// them straight from its tables, with no address built per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceHead {
    pub transaction_id: u32,
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
}

impl AnnounceHead {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, ACTION_ANNOUNCE);
        put_u32(out, self.transaction_id);
        put_u32(out, self.interval);
        put_u32(out, self.leechers);
        put_u32(out, self.seeders);
    }
}

/// A peer entry of an IPv4 answer: `u32 ip | u16 port`, big-endian, so byte
/// order is address order (BEP 23's compact form is the same bytes).
pub type PeerV4 = [u8; PEER_V4];
/// A peer entry of an IPv6 answer: `[u8; 16] ip | u16 port` (BEP 7's `peers6`).
pub type PeerV6 = [u8; PEER_V6];

pub fn peer_v4(ip: Ipv4Addr, port: u16) -> PeerV4 {
    let [a, b, c, d] = ip.octets();
    let [p, q] = port.to_be_bytes();
    [a, b, c, d, p, q]
}

pub fn peer_v6(ip: Ipv6Addr, port: u16) -> PeerV6 {
    let mut entry = [0; PEER_V6];
    let (addr, rest) = entry.split_at_mut(16);
    addr.copy_from_slice(&ip.octets());
    rest.copy_from_slice(&port.to_be_bytes());
    entry
}

/// A tracker-to-client datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Connect { transaction_id: u32, connection_id: u64 },
    Announce { transaction_id: u32, interval: u32, leechers: u32, seeders: u32, peers: Vec<SocketAddr> },
    Scrape { transaction_id: u32, stats: Vec<ScrapeStats> },
    Error { transaction_id: u32, message: String },
}

impl Response {
    /// `ipv6` selects the peer entry format (BEP 15: 6 bytes for IPv4 trackers, 18 for IPv6).
    /// Peers of the other family are skipped when encoding (an IPv4-mapped IPv6 address counts as
    /// IPv4); at most MAX_PEERS peers and MAX_SCRAPE stats are written; an error message is cut to
    /// MAX_ERROR_MESSAGE bytes at a char boundary. So everything we send also decodes.
    pub fn encode(&self, out: &mut Vec<u8>, ipv6: bool) {
        match self {
            Response::Connect { transaction_id, connection_id } => {
                put_u32(out, ACTION_CONNECT);
                put_u32(out, *transaction_id);
                put_u64(out, *connection_id);
            }
            Response::Announce { transaction_id, interval, leechers, seeders, peers } => {
                let head = AnnounceHead {
                    transaction_id: *transaction_id,
                    interval: *interval,
                    leechers: *leechers,
                    seeders: *seeders,
                };
                head.encode(out);
                // One room check for the list and one copy per entry.
                out.reserve(peers.len().min(MAX_PEERS) * if ipv6 { PEER_V6 } else { PEER_V4 });
                for (ip, port) in peers.iter().filter_map(|p| wire_ip(p, ipv6)).take(MAX_PEERS) {
                    match ip {
                        IpAddr::V4(ip) => out.extend_from_slice(&peer_v4(ip, port)),
                        IpAddr::V6(ip) => out.extend_from_slice(&peer_v6(ip, port)),
                    }
                }
            }
            Response::Scrape { transaction_id, stats } => {
                put_u32(out, ACTION_SCRAPE);
                put_u32(out, *transaction_id);
                for s in stats.iter().take(MAX_SCRAPE) {
                    put_u32(out, s.seeders);
                    put_u32(out, s.completed);
                    put_u32(out, s.leechers);
                }
            }
            Response::Error { transaction_id, message } => {
                put_u32(out, ACTION_ERROR);
                put_u32(out, *transaction_id);
                out.extend_from_slice(cut_message(message).as_bytes());
            }
        }
    }

    /// Decodes a tracker's reply; the caller knows which family it talks to.
    /// Peer list: remaining bytes must be a multiple of 6 (or 18) -> else BadValue{field:"peers"};
    /// more than MAX_PEERS -> TooLarge. Scrape: remainder a multiple of 12 (else BadValue{field:"stats"}),
    /// at most MAX_SCRAPE. Error message: rest of datagram, lossy UTF-8 (it is only shown to a human),
    /// at most MAX_ERROR_MESSAGE bytes else TooLarge.
    pub fn decode(datagram: &[u8], ipv6: bool) -> Result<Response, DecodeError> {
        let mut input = datagram;
        let action = input.read_u32::<NetworkEndian>()?;
        let transaction_id = input.read_u32::<NetworkEndian>()?;
        match action {
            ACTION_CONNECT => {
                let connection_id = input.read_u64::<NetworkEndian>()?;
                finish(input)?;
                Ok(Response::Connect { transaction_id, connection_id })
            }
            ACTION_ANNOUNCE => {
                let interval = input.read_u32::<NetworkEndian>()?;
                let leechers = input.read_u32::<NetworkEndian>()?;
                let seeders = input.read_u32::<NetworkEndian>()?;
                let peers = if ipv6 {
                    read_list(input, PEER_V6, MAX_PEERS, "peers", |i| {
                        let ip = Ipv6Addr::from(i.read_u128::<NetworkEndian>()?);
                        Ok(SocketAddr::new(IpAddr::V6(ip), i.read_u16::<NetworkEndian>()?))
                    })?
                } else {
                    read_list(input, PEER_V4, MAX_PEERS, "peers", |i| {
                        let ip = Ipv4Addr::from(i.read_u32::<NetworkEndian>()?);
                        Ok(SocketAddr::new(IpAddr::V4(ip), i.read_u16::<NetworkEndian>()?))
                    })?
                };
                Ok(Response::Announce { transaction_id, interval, leechers, seeders, peers })
            }
            ACTION_SCRAPE => {
                let stats = read_list(input, STATS, MAX_SCRAPE, "stats", |i| {
                    Ok(ScrapeStats {
                        seeders: i.read_u32::<NetworkEndian>()?,
                        completed: i.read_u32::<NetworkEndian>()?,
                        leechers: i.read_u32::<NetworkEndian>()?,
                    })
                })?;
                Ok(Response::Scrape { transaction_id, stats })
            }
            ACTION_ERROR => {
                if input.len() > MAX_ERROR_MESSAGE {
                    return Err(too_large(input.len(), MAX_ERROR_MESSAGE));
                }
                let message = String::from_utf8_lossy(input).into_owned();
                Ok(Response::Error { transaction_id, message })
            }
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

/// Reads the rest of a response as fixed-size entries, checking the count before allocating.
fn read_list<T>(
    mut input: &[u8],
    stride: usize,
    max: usize,
    field: &'static str,
    read: impl Fn(&mut &[u8]) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    if !input.len().is_multiple_of(stride) {
        return Err(DecodeError::BadValue { field });
    }
    let count = input.len() / stride;
    if count > max {
        return Err(too_large(count, max));
    }
    let mut items = Vec::with_capacity(count);
    while !input.is_empty() {
        items.push(read(&mut input)?);
    }
    Ok(items)
}

/// The peer's address and port as written for the tracker's family, or `None` if it
/// belongs to the other family (BEP 15 has no mixed lists).
fn wire_ip(peer: &SocketAddr, ipv6: bool) -> Option<(IpAddr, u16)> {
    let v4 = match peer.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    match (v4, ipv6) {
        (Some(ip), false) => Some((IpAddr::V4(ip), peer.port())),
        (None, true) => Some((peer.ip(), peer.port())),
        _ => None,
    }
}

/// The longest prefix of `message` within MAX_ERROR_MESSAGE bytes that is still valid UTF-8.
fn cut_message(message: &str) -> &str {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    message.get(..end).unwrap_or("")
}

fn too_large(len: usize, max: usize) -> DecodeError {
    DecodeError::TooLarge { len: u64::try_from(len).unwrap_or(u64::MAX), max: u64::try_from(max).unwrap_or(u64::MAX) }
}

// Writing into a Vec cannot fail, so the io::Result is dropped here once.
fn put_u16(out: &mut Vec<u8>, v: u16) {
    let _ = out.write_u16::<NetworkEndian>(v);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    let _ = out.write_u32::<NetworkEndian>(v);
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    let _ = out.write_u64::<NetworkEndian>(v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::rng::Rng;
    use std::net::{SocketAddrV4, SocketAddrV6};

    /// Bytes from hex digits; spaces, `|` and anything else not hex are ignored.
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.chars().filter_map(|c| c.to_digit(16)).map(|d| d as u8).collect();
        assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn enc_req(r: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    fn enc_resp(r: &Response, ipv6: bool) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out, ipv6);
        out
    }

    fn sendable(connection_id: u64, transaction_id: u32, error: DecodeError) -> RequestError {
        RequestError::Sendable { connection_id, transaction_id, error }
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    }

    fn v6(s: &str, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), port, 0, 0))
    }

    fn announce() -> AnnounceRequest {
        AnnounceRequest {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 12345,
            info_hash: Hash20([0xaa; 20]),
            peer_id: *b"-LM0001-123456789012",
            downloaded: 4096,
            left: 0x10_0000,
            uploaded: 512,
            event: Event::Started,
            ip: Ipv4Addr::new(192, 168, 0, 1),
            key: 0xcafe_babe,
            num_want: -1,
            port: 6881,
        }
    }

    fn scrape() -> ScrapeRequest {
        ScrapeRequest {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 7,
            info_hashes: vec![Hash20([0x11; 20]), Hash20([0x22; 20])],
        }
    }

    const AA20: &str = "aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa aa";

    fn golden_announce() -> Vec<u8> {
        hex(&[
            "01 02 03 04 05 06 07 08",                                     // 0  connection_id
            "00 00 00 01",                                                 // 8  action: announce
            "00 00 30 39",                                                 // 12 transaction_id 12345
            AA20,                                                          // 16 info_hash
            "2d 4c 4d 30 30 30 31 2d 31 32 33 34 35 36 37 38 39 30 31 32", // 36 peer_id "-LM0001-123456789012"
            "00 00 00 00 00 00 10 00",                                     // 56 downloaded 4096
            "00 00 00 00 00 10 00 00",                                     // 64 left 1 MiB
            "00 00 00 00 00 00 02 00",                                     // 72 uploaded 512
            "00 00 00 02",                                                 // 80 event: started
            "c0 a8 00 01",                                                 // 84 IP address 192.168.0.1
            "ca fe ba be",                                                 // 88 key
            "ff ff ff ff",                                                 // 92 num_want -1
            "1a e1",                                                       // 96 port 6881
        ]
        .concat())
    }

    #[test]
    fn golden_requests() {
        let connect = hex(concat!(
            "00 00 04 17 27 10 19 80 |", // 0  protocol_id 0x41727101980
            "00 00 00 00 |",             // 8  action: connect
            "de ad be ef",               // 12 transaction_id
        ));
        let req = Request::Connect { transaction_id: 0xdead_beef };
        assert_eq!(enc_req(&req), connect);
        assert_eq!(Request::decode(&connect), Ok(req));

        let golden = golden_announce();
        assert_eq!(golden.len(), 98);
        let req = Request::Announce(announce());
        assert_eq!(enc_req(&req), golden);
        assert_eq!(Request::decode(&golden), Ok(req));

        let golden = hex(concat!(
            "01 02 03 04 05 06 07 08 |",                                     // 0  connection_id
            "00 00 00 02 |",                                                 // 8  action: scrape
            "00 00 00 07 |",                                                 // 12 transaction_id
            "11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 |", // 16 info_hash 0
            "22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22",   // 36 info_hash 1
        ));
        let req = Request::Scrape(scrape());
        assert_eq!(enc_req(&req), golden);
        assert_eq!(Request::decode(&golden), Ok(req));
    }

    /// Every response with its golden bytes and the family it is read in.
    fn golden_responses() -> Vec<(Response, bool, Vec<u8>)> {
        vec![
            (
                Response::Connect { transaction_id: 0xdead_beef, connection_id: 0x0102_0304_0506_0708 },
                false,
                hex(concat!(
                    "00 00 00 00 |",           // 0 action: connect
                    "de ad be ef |",           // 4 transaction_id
                    "01 02 03 04 05 06 07 08", // 8 connection_id
                )),
            ),
            (
                Response::Announce {
                    transaction_id: 9,
                    interval: 1800,
                    leechers: 5,
                    seeders: 10,
                    peers: vec![v4([127, 0, 0, 1], 6881), v4([10, 0, 0, 2], 51413)],
                },
                false,
                hex(concat!(
                    "00 00 00 01 |",       // 0  action: announce
                    "00 00 00 09 |",       // 4  transaction_id
                    "00 00 07 08 |",       // 8  interval 1800
                    "00 00 00 05 |",       // 12 leechers
                    "00 00 00 0a |",       // 16 seeders
                    "7f 00 00 01 1a e1 |", // 20 127.0.0.1:6881
                    "0a 00 00 02 c8 d5",   // 26 10.0.0.2:51413
                )),
            ),
            (
                Response::Announce {
                    transaction_id: 9,
                    interval: 1800,
                    leechers: 5,
                    seeders: 10,
                    peers: vec![v6("2001:db8::1", 6881)],
                },
                true,
                hex(concat!(
                    "00 00 00 01 | 00 00 00 09 | 00 00 07 08 | 00 00 00 05 | 00 00 00 0a |",
                    "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 |", // 20 [2001:db8::1]
                    "1a e1",                                             // 36 port 6881
                )),
            ),
            (
                Response::Scrape {
                    transaction_id: 7,
                    stats: vec![
                        ScrapeStats { seeders: 10, completed: 3, leechers: 5 },
                        ScrapeStats { seeders: 0, completed: 0, leechers: 1 },
                    ],
                },
                false,
                hex(concat!(
                    "00 00 00 02 |",                           // 0 action: scrape
                    "00 00 00 07 |",                           // 4 transaction_id
                    "00 00 00 0a  00 00 00 03  00 00 00 05 |", // 8 seeders, completed, leechers
                    "00 00 00 00  00 00 00 00  00 00 00 01",   // 20 second torrent
                )),
            ),
            (
                Response::Error { transaction_id: 7, message: "no such torrent".into() },
                false,
                hex(concat!(
                    "00 00 00 03 |",                                // 0 action: error
                    "00 00 00 07 |",                                // 4 transaction_id
                    "6e 6f 20 73 75 63 68 20 74 6f 72 72 65 6e 74", // 8 "no such torrent"
                )),
            ),
        ]
    }

    #[test]
    fn golden_responses_encode_and_decode() {
        for (resp, ipv6, golden) in golden_responses() {
            assert_eq!(enc_resp(&resp, ipv6), golden, "{resp:?}");
            assert_eq!(Response::decode(&golden, ipv6), Ok(resp));
        }
    }

    #[test]
    fn requests_round_trip() {
        let full = ScrapeRequest { info_hashes: (0..MAX_SCRAPE as u8).map(|i| Hash20([i; 20])).collect(), ..scrape() };
        let none_event = AnnounceRequest { event: Event::None, num_want: 50, ..announce() };
        for req in [
            Request::Connect { transaction_id: 0 },
            Request::Announce(announce()),
            Request::Announce(AnnounceRequest { event: Event::Completed, ..announce() }),
            Request::Announce(AnnounceRequest { event: Event::Stopped, ..announce() }),
            Request::Announce(none_event),
            Request::Scrape(scrape()),
            Request::Scrape(full),
        ] {
            let bytes = enc_req(&req);
            assert!(bytes.len() <= MAX_REQUEST);
            assert_eq!(Request::decode(&bytes).as_ref(), Ok(&req));
            assert_eq!(Request::decode(&bytes).unwrap().transaction_id(), req.transaction_id());
        }
    }

    #[test]
    fn responses_round_trip_both_families() {
        let peers4: Vec<SocketAddr> = (0..MAX_PEERS as u32).map(|i| v4(i.to_be_bytes(), i as u16)).collect();
        let peers6: Vec<SocketAddr> = (0..MAX_PEERS as u16).map(|i| v6(&format!("2001:db8::{i:x}"), i)).collect();
        for (peers, ipv6) in [(peers4, false), (peers6, true), (vec![], false), (vec![], true)] {
            let resp = Response::Announce { transaction_id: 1, interval: 60, leechers: 2, seeders: 3, peers };
            assert_eq!(Response::decode(&enc_resp(&resp, ipv6), ipv6), Ok(resp.clone()));
        }
        let stats = (0..MAX_SCRAPE as u32).map(|i| ScrapeStats { seeders: i, completed: !i, leechers: i << 8 });
        for resp in [
            Response::Connect { transaction_id: u32::MAX, connection_id: u64::MAX },
            Response::Scrape { transaction_id: 4, stats: stats.collect() },
            Response::Scrape { transaction_id: 4, stats: vec![] },
            Response::Error { transaction_id: 5, message: "é".repeat(MAX_ERROR_MESSAGE / 2) },
            Response::Error { transaction_id: 5, message: String::new() },
        ] {
            for ipv6 in [false, true] {
                let decoded = Response::decode(&enc_resp(&resp, ipv6), ipv6).unwrap();
                assert_eq!(decoded, resp);
                assert_eq!(decoded.transaction_id(), resp.transaction_id());
            }
        }
    }

    #[test]
    fn announce_encoding_filters_family_and_caps_peers() {
        let mapped = v6("::ffff:1.2.3.4", 80);
        let mixed = vec![v4([5, 6, 7, 8], 1), v6("2001:db8::2", 2), mapped];
        let resp = |peers| Response::Announce { transaction_id: 1, interval: 2, leechers: 3, seeders: 4, peers };
        let only = |peers| Response::decode(&enc_resp(&resp(mixed.clone()), peers), peers).unwrap();
        assert_eq!(only(false), resp(vec![v4([5, 6, 7, 8], 1), v4([1, 2, 3, 4], 80)]));
        assert_eq!(only(true), resp(vec![v6("2001:db8::2", 2)]));

        let many = vec![v4([1, 1, 1, 1], 1); MAX_PEERS + 5];
        assert_eq!(enc_resp(&resp(many), false).len(), 20 + PEER_V4 * MAX_PEERS);
    }

    #[test]
    fn encoding_caps_scrape_lists_and_error_message() {
        let hashes = vec![Hash20([1; 20]); MAX_SCRAPE + 1];
        let req = Request::Scrape(ScrapeRequest { info_hashes: hashes, ..scrape() });
        assert_eq!(enc_req(&req).len(), MAX_REQUEST);
        let resp = Response::Scrape { transaction_id: 1, stats: vec![ScrapeStats::default(); MAX_SCRAPE + 1] };
        assert_eq!(enc_resp(&resp, false).len(), 8 + STATS * MAX_SCRAPE);

        // 'a' then 2-byte chars: byte 200 falls inside a char, so the cut lands at 199.
        let message = format!("a{}", "é".repeat(150));
        let bytes = enc_resp(&Response::Error { transaction_id: 1, message: message.clone() }, false);
        assert_eq!(bytes.len(), 8 + 199);
        let Ok(Response::Error { message: got, .. }) = Response::decode(&bytes, false) else { panic!() };
        assert!(message.starts_with(&got) && got.len() == 199);
    }

    #[test]
    fn request_errors_before_ids_are_unsendable() {
        let connect = enc_req(&Request::Connect { transaction_id: 1 });
        assert_eq!(Request::decode(&connect[..15]), Err(RequestError::Unsendable(DecodeError::Truncated)));
        assert_eq!(Request::decode(&[]), Err(RequestError::Unsendable(DecodeError::Truncated)));
        let mut wrong = connect.clone();
        wrong[0] = 1;
        assert_eq!(
            Request::decode(&wrong),
            Err(RequestError::Unsendable(DecodeError::BadValue { field: "protocol_id" }))
        );
        for len in [MAX_REQUEST + 1, 65_535] {
            let mut huge = enc_req(&Request::Scrape(scrape()));
            huge.resize(len, 0x33);
            let max = MAX_REQUEST as u64;
            assert_eq!(
                Request::decode(&huge),
                Err(RequestError::Unsendable(DecodeError::TooLarge { len: len as u64, max }))
            );
        }
    }

    #[test]
    fn request_errors_after_ids_are_sendable() {
        let mut connect = enc_req(&Request::Connect { transaction_id: 1 });
        connect.push(0);
        assert_eq!(Request::decode(&connect), Err(sendable(PROTOCOL_ID, 1, DecodeError::TrailingBytes)));

        let unknown = hex("00 00 00 00 00 00 00 2a | 00 00 00 04 | 00 00 00 05");
        assert_eq!(Request::decode(&unknown), Err(sendable(42, 5, DecodeError::UnknownType(4))));

        let cid = announce().connection_id;
        let golden = golden_announce();
        assert_eq!(Request::decode(&golden[..97]), Err(sendable(cid, 12345, DecodeError::Truncated)));
        let mut bad_event = golden.clone();
        bad_event[83] = 4;
        let event = DecodeError::BadValue { field: "event" };
        assert_eq!(Request::decode(&bad_event), Err(sendable(cid, 12345, event)));

        let s = enc_req(&Request::Scrape(scrape()));
        let empty = DecodeError::BadValue { field: "info_hashes" };
        assert_eq!(Request::decode(&s[..16]), Err(sendable(cid, 7, empty)));
        assert_eq!(Request::decode(&s[..55]), Err(sendable(cid, 7, DecodeError::Truncated)));
    }

    #[test]
    fn announce_accepts_bep41_options() {
        let mut bytes = golden_announce();
        bytes.extend_from_slice(&hex("02 0c 2f 61 6e 6e 6f 75 6e 63 65 3f 6b 3d | 01 | 00")); // URLData, NOP, EndOfOptions
        assert_eq!(Request::decode(&bytes), Ok(Request::Announce(announce())));
        bytes.resize(MAX_REQUEST, 1);
        assert_eq!(Request::decode(&bytes), Ok(Request::Announce(announce())));
    }

    #[test]
    fn response_errors() {
        let dec4 = |s: &str| Response::decode(&hex(s), false);
        assert_eq!(dec4("00 00 00 04 | 00 00 00 01"), Err(DecodeError::UnknownType(4)));
        assert_eq!(dec4("00 00 00 00 | 00 00 00"), Err(DecodeError::Truncated));
        assert_eq!(dec4("00 00 00 00 | 00 00 00 01 | 00 00 00 00 00 00 00 01 | ff"), Err(DecodeError::TrailingBytes));
        let peers = DecodeError::BadValue { field: "peers" };
        let announce = "00 00 00 01 | 00 00 00 01 | 00 00 00 3c 00 00 00 00 00 00 00 00";
        assert_eq!(dec4(&format!("{announce} 7f 00 00 01 1a")), Err(peers.clone()));
        // Six bytes are one IPv4 peer but a third of an IPv6 one.
        let six = hex(&format!("{announce} 7f 00 00 01 1a e1"));
        assert_eq!(Response::decode(&six, true), Err(peers));
        let scrape = "00 00 00 02 | 00 00 00 01";
        assert_eq!(dec4(&format!("{scrape} 00")), Err(DecodeError::BadValue { field: "stats" }));

        let mut many = hex(announce);
        many.resize(20 + PEER_V4 * (MAX_PEERS + 1), 1);
        assert_eq!(Response::decode(&many, false), Err(too_large(MAX_PEERS + 1, MAX_PEERS)));
        let mut many = hex(scrape);
        many.resize(8 + STATS * (MAX_SCRAPE + 1), 0);
        assert_eq!(Response::decode(&many, false), Err(too_large(MAX_SCRAPE + 1, MAX_SCRAPE)));
        let mut long = hex("00 00 00 03 | 00 00 00 01");
        long.resize(8 + MAX_ERROR_MESSAGE + 1, b'x');
        assert_eq!(Response::decode(&long, false), Err(too_large(MAX_ERROR_MESSAGE + 1, MAX_ERROR_MESSAGE)));
        assert_eq!(
            dec4("00 00 00 03 | 00 00 00 01 | 6f 6b ff"),
            Ok(Response::Error { transaction_id: 1, message: "ok\u{fffd}".into() })
        );
    }

    #[test]
    fn every_truncated_prefix_is_rejected() {
        let requests =
            [Request::Connect { transaction_id: 3 }, Request::Announce(announce()), Request::Scrape(scrape())];
        for req in requests {
            let bytes = enc_req(&req);
            for n in 0..bytes.len() {
                let got = Request::decode(&bytes[..n]);
                // A scrape cut on a hash boundary is a smaller valid scrape, never the original.
                let shorter_scrape =
                    matches!(req, Request::Scrape(_)) && n > REQUEST_HEADER && (n - REQUEST_HEADER).is_multiple_of(20);
                assert!(got.is_err() || shorter_scrape, "{req:?} prefix {n}: {got:?}");
                assert_ne!(got, Ok(req.clone()));
            }
        }
        for (resp, ipv6, bytes) in golden_responses() {
            // Announce and scrape fixed parts; an error message has only its header.
            let fixed = match resp {
                Response::Connect { .. } => 16,
                Response::Announce { .. } => 20,
                _ => 8,
            };
            for n in 0..bytes.len() {
                let got = Response::decode(&bytes[..n], ipv6);
                assert!(n >= fixed || got == Err(DecodeError::Truncated), "{resp:?} prefix {n}: {got:?}");
                assert_ne!(got, Ok(resp.clone()));
            }
        }
    }

    /// Re-encoding what decoded must reproduce the datagram (announce: its first 98 bytes).
    fn check_request(datagram: &[u8]) {
        if let Ok(req) = Request::decode(datagram) {
            assert!(datagram.starts_with(&enc_req(&req)), "{datagram:02x?}");
        }
    }

    fn check_response(datagram: &[u8]) {
        for ipv6 in [false, true] {
            match Response::decode(datagram, ipv6) {
                Ok(Response::Error { .. }) | Err(_) => {}
                Ok(resp) => assert_eq!(enc_resp(&resp, ipv6), datagram),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(0x1517);
        let mut buf = vec![0u8; 1600];
        for i in 0..20_000 {
            let len = rng.below(1600);
            let datagram = &mut buf[..len];
            rng.fill(datagram);
            // Every third round gets a valid header for a random action (0..=4), so the
            // bodies are exercised and not just the length and action checks.
            let action = rng.below(5) as u32;
            if i % 3 == 1 && len >= 16 {
                let cid = if action == 0 { PROTOCOL_ID } else { rng.next_u64() };
                datagram[..8].copy_from_slice(&cid.to_be_bytes());
                datagram[8..12].copy_from_slice(&action.to_be_bytes());
            }
            if i % 3 == 2 && len >= 8 {
                datagram[..4].copy_from_slice(&action.to_be_bytes());
            }
            check_request(datagram);
            check_response(datagram);
        }
        // Valid headers followed by whole entries of random bytes, to reach the Ok paths.
        for i in 0..2_000 {
            let action = i % 3;
            let mut d = match action {
                0 => enc_req(&Request::Connect { transaction_id: i }),
                1 => golden_announce(),
                _ => enc_req(&Request::Scrape(scrape())),
            };
            let tail = d.len().saturating_sub(16);
            let mut body = vec![0u8; tail + rng.below(3)];
            rng.fill(&mut body);
            if action == 1 {
                body[64..68].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
                // a valid event
            }
            d.truncate(16);
            d.extend_from_slice(&body);
            check_request(&d);
            let mut r = (i % 4).to_be_bytes().to_vec();
            r.resize(8 + [8, 12 + 18 * 2, 24, 30][(i % 4) as usize], 0);
            rng.fill(&mut r[4..]);
            check_response(&r);
        }
    }
}

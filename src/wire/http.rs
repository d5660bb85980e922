//! The HTTP tracker protocol: BEP 3 announce and scrape queries in, bencoded
//! answers out, peers in the compact forms of BEP 23 (`peers`, 6 bytes each)
//! and BEP 7 (`peers6`, 18 bytes each). The query is at most as long as a
//! request head (8 KiB), so decoding holds at most that much.

use super::bencode::{put_bytes, put_dict, put_int_entry};
use super::udp::Event;
use super::DecodeError;
use crate::hash::Hash20;

/// Info hashes one scrape may ask about (as BEP 15's 74, rounded down).
pub const MAX_SCRAPE: usize = 64;

/// One BEP 3 announce. `uploaded`, `downloaded`, `compact` (we always answer
/// compact, as aquatic does), `key` and `ip` (the source address is used,
/// as for UDP) are not needed and not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: Hash20,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub left: u64,
    pub event: Event,
    /// `numwant`; `None` for the tracker's default.
    pub num_want: Option<usize>,
}

/// The `key=value` pairs of a query string, values still percent-encoded.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Decodes `%XX` escapes (and `+` as a space) of a query value, appending to `out`.
pub fn percent_decode(raw: &str, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_digit);
                let lo = bytes.next().and_then(hex_digit);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => hi << 4 | lo,
                    _ => return Err(DecodeError::BadValue { field: "percent escape" }),
                }
            }
            b'+' => b' ',
            b => b,
        });
    }
    Ok(())
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn twenty(raw: &str, field: &'static str) -> Result<[u8; 20], DecodeError> {
    let mut bytes = Vec::with_capacity(20);
    percent_decode(raw, &mut bytes)?;
    bytes.try_into().map_err(|_| DecodeError::BadValue { field })
}

fn number<T: std::str::FromStr>(raw: &str, field: &'static str) -> Result<T, DecodeError> {
    raw.parse().map_err(|_| DecodeError::BadValue { field })
}

impl Announce {
    /// Decodes the query of `GET /announce?...`.
    pub fn decode(query: &str) -> Result<Announce, DecodeError> {
        let (mut info_hash, mut peer_id, mut port, mut left) = (None, None, None, None);
        let (mut event, mut num_want) = (Event::None, None);
        for (key, value) in pairs(query) {
            match key {
                "info_hash" => info_hash = Some(Hash20(twenty(value, "info_hash")?)),
                "peer_id" => peer_id = Some(twenty(value, "peer_id")?),
                "port" => port = Some(number::<u16>(value, "port")?),
                "left" => left = Some(number::<u64>(value, "left")?),
                "numwant" => num_want = usize::try_from(number::<i64>(value, "numwant")?).ok().filter(|&n| n > 0),
                "event" => {
                    event = match value {
                        "started" => Event::Started,
                        "completed" => Event::Completed,
                        "stopped" => Event::Stopped,
                        "" | "empty" => Event::None,
                        _ => return Err(DecodeError::BadValue { field: "event" }),
                    }
                }
                _ => {}
            }
        }
        let missing = |field| DecodeError::BadValue { field };
        Ok(Announce {
            info_hash: info_hash.ok_or(missing("info_hash"))?,
            peer_id: peer_id.ok_or(missing("peer_id"))?,
            port: port.ok_or(missing("port"))?,
            left: left.ok_or(missing("left"))?,
            event,
            num_want,
        })
    }
}

/// Decodes the query of `GET /scrape?...`: 1..=MAX_SCRAPE info hashes,
/// sorted and without repeats (the order their answer takes).
pub fn decode_scrape(query: &str) -> Result<Vec<Hash20>, DecodeError> {
    let mut hashes = Vec::new();
    for (_, value) in pairs(query).filter(|(key, _)| *key == "info_hash") {
        if hashes.len() == MAX_SCRAPE {
            return Err(DecodeError::TooLarge { len: MAX_SCRAPE as u64 + 1, max: MAX_SCRAPE as u64 });
        }
        hashes.push(Hash20(twenty(value, "info_hash")?));
    }
    if hashes.is_empty() {
        return Err(DecodeError::BadValue { field: "info_hash" });
    }
    hashes.sort_unstable();
    hashes.dedup();
    Ok(hashes)
}

/// An announce answer. `peers` are compact entries of the requester's
/// address family (`udp::PeerV4` for IPv4, `udp::PeerV6` if `ipv6`), as the
/// tracker stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceAnswer<'a> {
    pub interval: u32,
    pub seeders: u32,
    pub leechers: u32,
    pub peers: &'a [u8],
    pub ipv6: bool,
}

impl AnnounceAnswer<'_> {
    /// Appends the bencoded dictionary: IPv4 peers in `peers`, IPv6 peers
    /// in `peers6` (`peers` is then empty: some clients require the key).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (v4, v6) = if self.ipv6 { (&[][..], self.peers) } else { (self.peers, &[][..]) };
        put_dict(out, |out| {
            put_int_entry(out, "complete", self.seeders.into());
            put_int_entry(out, "incomplete", self.leechers.into());
            put_int_entry(out, "interval", self.interval.into());
            put_int_entry(out, "min interval", self.interval.into());
            put_bytes(out, b"peers");
            put_bytes(out, v4);
            if !v6.is_empty() {
                put_bytes(out, b"peers6");
                put_bytes(out, v6);
            }
        });
    }
}

/// What a scrape tells of one info hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeFile {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// Appends a scrape answer; `files` must be sorted by hash (as `decode_scrape` returns them).
pub fn encode_scrape(files: &[(Hash20, ScrapeFile)], out: &mut Vec<u8>) {
    put_dict(out, |out| {
        put_bytes(out, b"files");
        put_dict(out, |out| {
            for (hash, f) in files {
                put_bytes(out, &hash.0);
                put_dict(out, |out| {
                    put_int_entry(out, "complete", f.seeders.into());
                    put_int_entry(out, "downloaded", f.completed.into());
                    put_int_entry(out, "incomplete", f.leechers.into());
                });
            }
        });
    });
}

/// Appends `{"failure reason": reason}`, the answer to a refused request.
pub fn encode_failure(reason: &str, out: &mut Vec<u8>) {
    put_dict(out, |out| {
        put_bytes(out, b"failure reason");
        put_bytes(out, reason.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::udp::{peer_v4, peer_v6};

    const HASH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";
    const HASH_BYTES: [u8; 20] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x12, 0x34, 0x56,
        0x78, 0x9a,
    ];

    #[test]
    fn announce_query_as_clients_send_it() {
        // The shape of a libtorrent announce (BEP 3's example hash).
        let q = format!("info_hash={HASH}&peer_id=-LT2090-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=1024&corrupt=0&key=1A2B&event=started&numwant=200&compact=1&no_peer_id=1");
        let a = Announce::decode(&q).unwrap();
        assert_eq!(a.info_hash, Hash20(HASH_BYTES));
        assert_eq!(&a.peer_id, b"-LT2090-abcdefghijkl");
        assert_eq!((a.port, a.left, a.event, a.num_want), (6881, 1024, Event::Started, Some(200)));
        let q = format!("info_hash={HASH}&peer_id=-LT2090-abcdefghijkl&port=1&left=0&numwant=-1&event=");
        let a = Announce::decode(&q).unwrap();
        assert_eq!((a.event, a.num_want, a.left), (Event::None, None, 0));
    }

    #[test]
    fn announce_errors_name_the_field() {
        let ok = format!("info_hash={HASH}&peer_id=-LT2090-abcdefghijkl&port=6881&left=0");
        assert!(Announce::decode(&ok).is_ok());
        for (q, field) in [
            (ok.replace("port=6881", "port=65536"), "port"),
            (ok.replace("port=6881", "port=x"), "port"),
            (ok.replace("&port=6881", ""), "port"),
            (ok.replace("&left=0", ""), "left"),
            (ok.replace("peer_id=-LT2090-abcdefghijkl", "peer_id=short"), "peer_id"),
            (ok.replace("%12", "%1"), "info_hash"),
            (ok.replace("%12", "%zz"), "percent escape"),
            (format!("{ok}&event=paused"), "event"),
            (String::new(), "info_hash"),
        ] {
            assert_eq!(Announce::decode(&q), Err(DecodeError::BadValue { field }), "{q}");
        }
    }

    #[test]
    fn scrape_query_sorted_deduplicated_and_capped() {
        let low = "info_hash=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%01";
        let q = format!("info_hash={HASH}&{low}&info_hash={HASH}");
        let mut first = [0; 20];
        first[19] = 1;
        assert_eq!(decode_scrape(&q).unwrap(), vec![Hash20(first), Hash20(HASH_BYTES)]);
        assert_eq!(decode_scrape(""), Err(DecodeError::BadValue { field: "info_hash" }));
        let many = vec![format!("info_hash={HASH}"); MAX_SCRAPE + 1].join("&");
        assert!(matches!(decode_scrape(&many), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn announce_answer_golden_bytes() {
        let peers = [peer_v4([10, 0, 0, 1].into(), 6881), peer_v4([192, 168, 1, 2].into(), 80)].concat();
        let mut out = Vec::new();
        AnnounceAnswer { interval: 1800, seeders: 1, leechers: 2, peers: &peers, ipv6: false }.encode(&mut out);
        assert_eq!(
            out,
            b"d8:completei1e10:incompletei2e8:intervali1800e12:min intervali1800e5:peers12:\x0a\x00\x00\x01\x1a\xe1\xc0\xa8\x01\x02\x00\x50e"
        );
        let peers = peer_v6("2001:db8::1".parse().unwrap(), 6881);
        out.clear();
        AnnounceAnswer { interval: 10, seeders: 0, leechers: 1, peers: &peers, ipv6: true }.encode(&mut out);
        let mut want = b"d8:completei0e10:incompletei1e8:intervali10e12:min intervali10e5:peers0:6:peers618:".to_vec();
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1]);
        want.push(b'e');
        assert_eq!(out, want);
    }

    #[test]
    fn scrape_and_failure_golden_bytes() {
        let mut out = Vec::new();
        encode_scrape(&[(Hash20([b'a'; 20]), ScrapeFile { seeders: 3, completed: 7, leechers: 1 })], &mut out);
        assert_eq!(
            out,
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei3e10:downloadedi7e10:incompletei1eeee".as_slice()
        );
        out.clear();
        encode_failure("tracker full: too many peers", &mut out);
        assert_eq!(out, b"d14:failure reason28:tracker full: too many peerse".as_slice());
    }

    #[test]
    fn percent_decoding() {
        let mut out = Vec::new();
        percent_decode("a%20b+c%7e%7E", &mut out).unwrap();
        assert_eq!(out, b"a b c~~");
        for bad in ["%", "%4", "%g0"] {
            assert_eq!(percent_decode(bad, &mut Vec::new()), Err(DecodeError::BadValue { field: "percent escape" }));
        }
    }
}

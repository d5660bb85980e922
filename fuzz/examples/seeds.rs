//! Writes the seed corpora in fuzz/seeds/TARGET/: valid encodings of every
//! message, made by the encoders, so the decoder targets start past the
//! first length checks. Run from fuzz/: `cargo +nightly run --example seeds`.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use lmk::hash::Hash20;
use lmk::meta::{FileMeta, MIN_CHUNK};
use lmk::wire::catalog::{encode_meta, ErrorCode, ListEntry, Request as CatReq, Response as CatResp, Selector};
use lmk::wire::peer::{Message, RejectReason, State};
use lmk::wire::udp::{AnnounceRequest, Event, Request, Response, ScrapeRequest, ScrapeStats, PROTOCOL_ID};

fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new("seeds").join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create seed dir");
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("{i:02}")), seed).expect("write seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

/// A frame as the frame targets take it: type byte, then body (no length).
fn unframed(frame: Vec<u8>) -> Vec<u8> {
    frame[4..].to_vec()
}

fn main() {
    let meta =
        FileMeta::new("f.bin".into(), u64::from(MIN_CHUNK) * 2 + 5, MIN_CHUNK, vec![Hash20([3; 20]); 3]).unwrap();
    let id = meta.content_id();
    let announce = AnnounceRequest {
        connection_id: PROTOCOL_ID + 1,
        transaction_id: 7,
        info_hash: id,
        peer_id: *b"-LMK010-123456789012",
        downloaded: 1,
        left: 2,
        uploaded: 3,
        event: Event::Started,
        ip: Ipv4Addr::UNSPECIFIED,
        key: 5,
        num_want: -1,
        port: 7000,
    };
    let requests = [
        Request::Connect { transaction_id: 1 },
        Request::Announce(announce),
        Request::Scrape(ScrapeRequest { connection_id: 9, transaction_id: 2, info_hashes: vec![id, Hash20([1; 20])] }),
    ];
    write("udp_request", &requests.iter().map(|r| enc(|o| r.encode(o))).collect::<Vec<_>>());

    let v4 = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 7000));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 7001));
    let responses = [
        (Response::Connect { transaction_id: 1, connection_id: 2 }, false),
        (Response::Announce { transaction_id: 1, interval: 10, leechers: 1, seeders: 1, peers: vec![v4, v4] }, false),
        (Response::Announce { transaction_id: 1, interval: 10, leechers: 1, seeders: 0, peers: vec![v6] }, true),
        (
            Response::Scrape { transaction_id: 3, stats: vec![ScrapeStats { seeders: 1, completed: 2, leechers: 3 }] },
            false,
        ),
        (Response::Error { transaction_id: 4, message: "unknown connection id".into() }, false),
    ];
    write("udp_response", &responses.iter().map(|(r, v6)| enc(|o| r.encode(o, *v6))).collect::<Vec<_>>());

    let cat_requests = [
        CatReq::Publish(meta.clone()),
        CatReq::List,
        CatReq::GetMeta(Selector::Name("f.bin".into())),
        CatReq::GetMeta(Selector::Id(id)),
        CatReq::Challenge,
        CatReq::SignedPublish { nonce: [7; 16], mac: [9; 20], meta: meta.clone() },
    ];
    write("catalog_request", &cat_requests.iter().map(|r| unframed(enc(|o| r.encode(o)))).collect::<Vec<_>>());

    let entry = ListEntry { id, name: "f.bin".into(), size: meta.size(), chunk_size: MIN_CHUNK, seeders: 2 };
    let cat_responses = [
        CatResp::Published(id),
        CatResp::List(vec![entry.clone(), ListEntry { name: "g".into(), ..entry }]),
        CatResp::Meta(meta.clone()),
        CatResp::Error { code: ErrorCode::Ambiguous, message: "two files".into() },
        CatResp::Challenge([7; 16]),
    ];
    write("catalog_response", &cat_responses.iter().map(|r| unframed(enc(|o| r.encode(o)))).collect::<Vec<_>>());

    write("meta", &[enc(|o| encode_meta(&meta, o)), id.to_hex().into_bytes(), b"f.bin".to_vec()]);

    let messages = [
        Message::Hello { id, port: 7000, nonce: 42 },
        Message::Bitfield(&[0xe0]),
        Message::Have(2),
        Message::State(State::Available),
        Message::Request { index: 1, sole: false, more: false },
        Message::Request { index: 2, sole: true, more: false },
        Message::Request { index: 1, sole: false, more: true },
        Message::Chunk { index: 0, data: b"data" },
        Message::Reject { index: 1, reason: RejectReason::Spread },
        Message::Cancel(1),
    ];
    let frames: Vec<Vec<u8>> = messages.iter().map(|m| enc(|o| m.encode(o))).collect();
    write("peer_frame", &frames.iter().cloned().map(unframed).collect::<Vec<_>>());

    // Split: a 2-byte maximum, then frames back to back (the last one cut short).
    let mut stream = 1024u16.to_be_bytes().to_vec();
    frames.iter().for_each(|f| stream.extend_from_slice(f));
    let cut = stream[..stream.len() - 2].to_vec();
    write("split_frame", &[stream, cut]);

    // The HTTP request path: a piece count, then pipelined requests.
    let hash: String = id.0.iter().map(|b| format!("%{b:02X}")).collect();
    let announce = format!(
        "GET /announce?info_hash={hash}&peer_id=-TR4000-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=0&event=started&compact=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    let http = [
        format!("\x00{announce}GET /scrape?info_hash={hash} HTTP/1.1\r\n\r\n"),
        format!("\x03{announce}GET /?q=f&page=1&per=10 HTTP/1.1\r\n\r\nGET /stats.json HTTP/1.0\r\n\r\n"),
        "\x01GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
    ];
    write("http_request", &http.iter().map(|r| r.as_bytes().to_vec()).collect::<Vec<_>>());
}

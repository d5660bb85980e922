//! The HTTP request path of the tracker: bytes arriving in pieces on one
//! connection, parsed under the connection rules, routed, and answered by a
//! real tracker core (announce, scrape, the status page and /stats.json
//! streamed to their end). First byte: how many pieces the rest is cut
//! into. Never a panic; a request is never longer than what was buffered
//! nor than 8 KiB; a refusal ends the connection; every bencoded answer is
//! one dictionary; every stream ends.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lmk::common::admission::Admit;
use lmk::common::net::ConnId;
use lmk::http::conns::{Conns, Limits, Next, Step};
use lmk::http::page::{Format, Stream};
use lmk::http::request::MAX_HEAD;
use lmk::http::{Figures, Route};
use lmk::tracker::machine::{Config, Tracker};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, bytes)) = data.split_first() else { return };
    let t0 = Instant::now();
    let mut core = Tracker::new(Config { seed: 1, ..Config::default() }, t0);
    let mut conns = Conns::new(Limits::default());
    let conn = ConnId(0);
    let ip = IpAddr::from([127, 0, 0, 1]);
    assert_eq!(conns.handle_open(t0, conn, ip), Admit::Accept);
    let piece = bytes.len() / (usize::from(cuts % 8) + 1) + 1;
    let mut buf: Vec<u8> = Vec::new();
    let mut now = t0;
    for chunk in bytes.chunks(piece) {
        now += Duration::from_millis(100);
        buf.extend_from_slice(chunk);
        loop {
            let (used, next) = match conns.handle_bytes(now, conn, &buf) {
                Step::More => break,
                Step::Refuse(_) => {
                    assert_eq!(conns.handle_answered(conn, 0, false), Next::Close);
                    return;
                }
                Step::Request(head) => {
                    assert!(head.len <= buf.len() && head.len <= MAX_HEAD);
                    let mut out = Vec::new();
                    let streaming = match Route::of(head.path, head.query) {
                        Route::Announce(q) => {
                            core.handle_http_announce(now, ip, q, &mut out);
                            assert!(out.first() == Some(&b'd') && out.last() == Some(&b'e'), "{out:?}");
                            false
                        }
                        Route::Scrape(q) => {
                            core.handle_http_scrape(q, &mut out);
                            assert!(out.first() == Some(&b'd') && out.last() == Some(&b'e'), "{out:?}");
                            false
                        }
                        Route::Stats(listing) | Route::Page(listing) => {
                            let format = if head.path == "/" { Format::Html } else { Format::Json };
                            let mut s = Stream::start(format, listing, &Figures::default(), &core.files(), &mut out);
                            let mut pieces = 0;
                            while s.feed(&core.files(), &mut out) {
                                pieces += 1;
                                assert!(pieces < 10_000, "a stream that does not end");
                            }
                            false
                        }
                        Route::Metrics | Route::NotFound => false,
                    };
                    let keep = head.keep_alive;
                    let used = head.len;
                    (used, (conns.handle_answered(conn, 0, streaming), keep))
                }
            };
            buf.drain(..used);
            match next {
                (Next::Close, keep) => {
                    assert!(!keep);
                    return;
                }
                (Next::Read, _) => {}
                (other, _) => panic!("an answer taken at once left {other:?}"),
            }
        }
    }
});

//! The BEP 15 client fed arbitrary event sequences: announces, replies from
//! the tracker (garbage, or well-formed and naming a transaction it has in
//! flight), a real tracker core answering, and time moving forward. It must
//! never panic; everything it sends decodes; while busy it has a deadline, so
//! a lost reply is always retried.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::announce::{Announce, Announcer};
use lmk::hash::Hash20;
use lmk::tracker::machine::{Config, Tracker, UNKNOWN_CONNECTION_ID};
use lmk::wire::udp::{Event, Request, Response, ScrapeStats};

#[derive(Arbitrary, Debug)]
enum Reply {
    Connect { connection_id: u64 },
    Announce { interval: u32, peers: Vec<u16> },
    Scrape,
    Error { unknown_id: bool },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Announce {
        hash: u8,
        left: u64,
        event: u8,
        port: u16,
        num_want: i32,
    },
    /// Answers sent datagram number `which` (of those not yet answered).
    Reply {
        which: u8,
        reply: Reply,
    },
    /// The real tracker core answers the oldest sent datagram.
    Tracker,
    /// The oldest sent datagram is lost.
    Lose,
    Advance {
        millis: u16,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let t0 = Instant::now();
    let mut now = t0;
    let me = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    let mut client = Announcer::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 6969)), 3);
    let mut tracker = Tracker::new(
        Config { interval: Duration::from_secs(10), expiry: Duration::from_secs(30), seed: 5, ..Config::default() },
        t0,
    );
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut answer = Vec::new();
    for op in ops {
        match op {
            Op::Announce { hash, left, event, port, num_want } => {
                let event = [Event::None, Event::Completed, Event::Started, Event::Stopped][usize::from(event % 4)];
                client.announce(now, Announce { info_hash: Hash20([hash % 4; 20]), left, event, port, num_want });
            }
            Op::Reply { which, reply } => {
                if sent.is_empty() {
                    continue;
                }
                let req = sent.remove(usize::from(which) % sent.len());
                let transaction_id = Request::decode(&req).expect("checked when sent").transaction_id();
                let resp = match reply {
                    Reply::Connect { connection_id } => Response::Connect { transaction_id, connection_id },
                    Reply::Announce { interval, peers } => Response::Announce {
                        transaction_id,
                        interval,
                        leechers: 1,
                        seeders: 2,
                        peers: peers.into_iter().map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))).collect(),
                    },
                    Reply::Scrape => Response::Scrape { transaction_id, stats: vec![ScrapeStats::default()] },
                    Reply::Error { unknown_id } => Response::Error {
                        transaction_id,
                        message: if unknown_id { UNKNOWN_CONNECTION_ID.into() } else { "no".into() },
                    },
                    Reply::Raw(bytes) => {
                        client.handle_datagram(now, &bytes);
                        continue;
                    }
                };
                let mut bytes = Vec::new();
                resp.encode(&mut bytes, false);
                client.handle_datagram(now, &bytes);
            }
            Op::Tracker => {
                if sent.is_empty() {
                    continue;
                }
                let req = sent.remove(0);
                if tracker.handle_datagram(now, me, &req, &mut answer) {
                    client.handle_datagram(now, &answer);
                }
            }
            Op::Lose => {
                if !sent.is_empty() {
                    sent.remove(0);
                }
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis));
                client.handle_timeout(now);
                tracker.handle_timeout(now);
            }
        }
        while let Some(datagram) = client.poll_transmit() {
            Request::decode(&datagram).expect("every datagram sent decodes");
            sent.push(datagram);
        }
        while client.poll_reply().is_some() {}
        if client.busy() {
            let deadline = client.next_deadline().expect("a busy client has a retry deadline");
            assert!(deadline > now, "a deadline in the past was not fired");
        }
    }
});

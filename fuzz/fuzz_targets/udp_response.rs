//! BEP 15 responses as a client parses them from a tracker it may not trust:
//! never panic; decode -> encode -> decode is the identity, except for what the
//! encoder is documented to drop (a v4-mapped peer in an IPv6 list, an error
//! message whose lossy UTF-8 grew past MAX_ERROR_MESSAGE).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use lmk::wire::udp::{Response, MAX_ERROR_MESSAGE};

fuzz_target!(|data: &[u8]| {
    for ipv6 in [false, true] {
        let Ok(resp) = Response::decode(data, ipv6) else { continue };
        let mut out = Vec::new();
        resp.encode(&mut out, ipv6);
        let again = Response::decode(&out, ipv6).expect("what we encode decodes");
        match (resp, again) {
            (Response::Announce { peers, .. }, Response::Announce { peers: kept, .. }) => {
                let v4_mapped =
                    |p: &std::net::SocketAddr| matches!(p.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
                let expected: Vec<_> = peers.into_iter().filter(|p| !(ipv6 && v4_mapped(p))).collect();
                assert_eq!(kept, expected);
            }
            (Response::Error { message, .. }, Response::Error { message: kept, .. }) => {
                assert!(message.starts_with(&kept) && kept.len() <= MAX_ERROR_MESSAGE);
                assert!(kept.len() == message.len() || kept.len() + 4 > MAX_ERROR_MESSAGE);
            }
            (resp, again) => assert_eq!(resp, again),
        }
    }
});

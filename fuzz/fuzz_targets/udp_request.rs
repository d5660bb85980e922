//! BEP 15 requests as the tracker parses them from anyone: never panic, and
//! whatever decodes re-encodes to a datagram that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmk::wire::udp::{Request, RequestError, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    match Request::decode(data) {
        Ok(req) => {
            let mut out = Vec::new();
            req.encode(&mut out);
            assert!(out.len() <= data.len(), "re-encoding grew: {} > {}", out.len(), data.len());
            assert_eq!(Request::decode(&out), Ok(req));
        }
        // Silence for anything before the ids: too short, too long or not BEP 15.
        Err(RequestError::Unsendable(_)) => {}
        Err(RequestError::Sendable { transaction_id, .. }) => {
            assert!((16..=MAX_REQUEST).contains(&data.len()));
            assert_eq!(data.get(12..16), Some(&transaction_id.to_be_bytes()[..]));
        }
    }
});

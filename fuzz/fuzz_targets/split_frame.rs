//! Frame splitting over a receive buffer, as every TCP connection does it
//! (first 2 bytes: the channel maximum, rest: the buffer): never panic, never
//! claim more bytes than are there, and split a stream of frames exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmk::wire::{put_frame, split_frame, DecodeError, FRAME_HEADER};

fuzz_target!(|data: &[u8]| {
    let Some((max, mut buf)) = data.split_first_chunk::<2>().map(|(m, b)| (u32::from(u16::from_be_bytes(*m)), b))
    else {
        return;
    };
    // Split the buffer as a reader would, re-framing every frame it finds.
    let mut rebuilt = Vec::new();
    loop {
        match split_frame(buf, max) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, FRAME_HEADER + frame.body.len());
                assert!(used <= buf.len() && frame.body.len() < max as usize);
                let start = rebuilt.len();
                put_frame(&mut rebuilt, frame.kind, |o| o.extend_from_slice(frame.body));
                assert_eq!(rebuilt[start..], buf[..used]);
                buf = &buf[used..];
            }
            Ok(None) => {
                // Need more: no complete header, or a legal length whose body is not all here.
                if let Some(len) = buf.first_chunk::<4>().map(|l| u32::from_be_bytes(*l)) {
                    assert!(len > 0 && len <= max && buf.len() < 4 + len as usize);
                }
                break;
            }
            Err(DecodeError::TooLarge { len, max: m }) => {
                assert!(len > u64::from(max) && m == u64::from(max));
                break;
            }
            Err(e) => {
                assert_eq!(e, DecodeError::BadValue { field: "frame length" });
                break;
            }
        }
    }
});

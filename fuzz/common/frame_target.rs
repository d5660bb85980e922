//! One body for the frame decoder targets: the input is a frame's type byte
//! then its body; decoding must never panic, and whatever decodes must encode
//! back to the same frame, which decodes to the same value.

#[macro_export]
macro_rules! frame_target {
    ($message:ident, $max:expr) => {
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            use lmk::wire::{split_frame, Frame};
            let Some((&kind, body)) = data.split_first() else { return };
            let Ok(msg) = $message::decode(Frame { kind, body }) else { return };
            let mut out = Vec::new();
            msg.encode(&mut out);
            let (frame, used) = split_frame(&out, $max).expect("valid header").expect("whole frame");
            assert_eq!(used, out.len());
            assert_eq!(frame, Frame { kind, body }, "canonical encoding");
            assert_eq!($message::decode(frame), Ok(msg));
        });
    };
}

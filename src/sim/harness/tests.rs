//! The harness's own rules, which the core tests take for granted: bytes
//! are cut into frames whatever their cut, a frame is taken under the
//! connection's limit, and ids are new or reused as asked.

use std::time::Instant;

use super::*;
use crate::meta::MIN_CHUNK;
use crate::wire::peer::HELLO_FRAME;

fn seeder() -> (Instant, Rc<Content>, Harness, usize) {
    let (t0, mut sw) = (Instant::now(), Harness::default());
    let file = Content::with_bytes("f.bin", 3 * u64::from(MIN_CHUNK), MIN_CHUNK, 1).unwrap();
    let s = sw.add_host(t0, |_| {});
    sw.add_file(s, t0, &file, &[0, 1, 2], Goal::Forever);
    sw.tracker_says.insert(s, Vec::new());
    sw.run(t0);
    (t0, file, sw, s)
}

#[test]
fn bytes_arrive_as_whole_frames_whatever_their_cut() {
    let (t0, file, mut sw, s) = seeder();
    let c = sw.accept(t0, s, hand_addr(1));
    let mut hello = Vec::new();
    Message::Hello { id: file.meta.content_id(), port: 0, nonce: 5 }.encode(&mut hello);
    let (head, tail) = hello.split_at(7);
    sw.inject_bytes(t0, s, c, head);
    assert_eq!(sw.messages_on(s, c).count(), 0, "half a Hello is not a frame");
    sw.inject_bytes(t0, s, c, tail);
    assert!(matches!(sw.messages_on(s, c).next(), Some(Message::Hello { .. })), "the whole one is answered");
    assert_eq!(sw.garbled, 0);
}

#[test]
fn a_frame_over_the_limit_closes_its_connection_as_malformed() {
    let (t0, _, mut sw, s) = seeder();
    let c = sw.accept(t0, s, hand_addr(1));
    assert_eq!(sw.limit(s, c), Some(HELLO_FRAME), "the core's limit before a Hello");
    let mut big = Vec::new();
    Message::Bitfield(&[0; 64]).encode(&mut big);
    let before = sw.hosts[s].m.malformed;
    sw.inject_bytes(t0, s, c, &big);
    assert!(!sw.is_open(s, c));
    assert_eq!(sw.closed, [(s, c)]);
    assert_eq!(sw.hosts[s].m.malformed, before + 1, "the core was told");
    assert_eq!(sw.garbled, 0, "sent by hand, not by a core");
}

#[test]
fn connection_ids_are_new_unless_reused_as_slab_keys() {
    for reuse in [false, true] {
        let (t0, _, mut sw, s) = seeder();
        sw.reuse_ids = reuse;
        let first = sw.accept(t0, s, hand_addr(1));
        sw.close(t0, HAND, sw.far_end(s, first).unwrap().1);
        let second = sw.accept(t0, s, hand_addr(2));
        assert_eq!(first == second, reuse);
        assert_eq!(sw.stale, 0);
    }
}

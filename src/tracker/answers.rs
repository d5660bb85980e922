//! Encoded catalog answers shared by every connection sending them: a
//! file's metadata (up to 16 MiB) is encoded once however many connections
//! ask for it, and each connection writes it from that copy at its own
//! offset (`Net::send_shared`). An answer is forgotten as soon as no
//! connection holds it any more. The file list changes with every seeder,
//! so a list is reused for `LIST_FRESH`, and at most `MAX_LISTS` of them
//! live at once: past that the newest is reused, stale or not, so clients
//! that take lists slowly cannot make the tracker hold one per request.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::hash::ContentId;

/// A file list younger than this is answered again rather than rebuilt.
pub const LIST_FRESH: Duration = Duration::from_secs(10);
/// File lists held at once (each at most one 16 MiB frame).
pub const MAX_LISTS: usize = 2;

#[derive(Default)]
pub struct Answers {
    meta: HashMap<ContentId, Rc<[u8]>>,
    /// Oldest first, with when each was made.
    lists: Vec<(Rc<[u8]>, Instant)>,
}

impl Answers {
    /// The encoded metadata answer of `id`, encoded by `encode` unless a
    /// connection is still sending it.
    pub fn meta(&mut self, id: ContentId, encode: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
        self.prune();
        self.meta.entry(id).or_insert_with(|| encoded(encode)).clone()
    }

    /// The encoded file list: the newest one if it is fresh or if `MAX_LISTS` are held.
    pub fn list(&mut self, now: Instant, encode: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
        self.prune();
        match self.lists.last() {
            Some((list, made))
                if now.saturating_duration_since(*made) < LIST_FRESH || self.lists.len() >= MAX_LISTS =>
            {
                list.clone()
            }
            _ => {
                let list = encoded(encode);
                self.lists.push((list.clone(), now));
                list
            }
        }
    }

    /// Forgets answers that no connection holds.
    pub fn prune(&mut self) {
        self.meta.retain(|_, bytes| Rc::strong_count(bytes) > 1);
        self.lists.retain(|(bytes, _)| Rc::strong_count(bytes) > 1);
    }

    /// Bytes of the answers held.
    pub fn bytes(&self) -> usize {
        self.meta.values().chain(self.lists.iter().map(|(b, _)| b)).map(|b| b.len()).sum()
    }
}

fn encoded(encode: impl FnOnce(&mut Vec<u8>)) -> Rc<[u8]> {
    let mut out = Vec::new();
    encode(&mut out);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;

    #[test]
    fn one_copy_while_held_then_forgotten() {
        let mut a = Answers::default();
        let id = Hash20([1; 20]);
        let first = a.meta(id, |o| o.extend_from_slice(b"meta"));
        let second = a.meta(id, |_| panic!("encoded once while held"));
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(a.bytes(), 4);
        drop((first, second));
        a.prune();
        assert_eq!(a.bytes(), 0, "nobody holds it: forgotten");
    }

    #[test]
    fn lists_are_fresh_for_a_while_and_few() {
        let t0 = Instant::now();
        let mut a = Answers::default();
        let l1 = a.list(t0, |o| o.push(1));
        let again = a.list(t0 + LIST_FRESH / 2, |_| panic!("fresh"));
        assert!(Rc::ptr_eq(&l1, &again));
        let l2 = a.list(t0 + LIST_FRESH, |o| o.push(2));
        assert_eq!(&*l2, &[2]);
        let l3 = a.list(t0 + LIST_FRESH * 3, |_| panic!("two held: the newest is reused"));
        assert!(Rc::ptr_eq(&l2, &l3));
        drop((l1, again));
        let l4 = a.list(t0 + LIST_FRESH * 3, |o| o.push(4));
        assert_eq!(&*l4, &[4], "room again once one is let go");
    }
}

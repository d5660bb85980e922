//! Which chunk to ask for next. Chunks are handed out one request at a time
//! as each seeder's pipeline has room, so a fast seeder simply takes more;
//! a chunk that comes back bad or is lost with its seeder goes back first.

/// The state of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Missing,
    Requested,
    Done,
}

#[derive(Debug)]
pub struct Picker {
    chunks: Vec<State>,
    /// Every chunk below this index has been handed out at least once.
    cursor: usize,
    /// Chunks handed back, served before the cursor moves on.
    retry: Vec<u32>,
    done: u32,
}

impl Picker {
    pub fn new(count: u32) -> Picker {
        Picker { chunks: vec![State::Missing; count as usize], cursor: 0, retry: Vec::new(), done: 0 }
    }

    /// The next missing chunk, now marked requested.
    pub fn next(&mut self) -> Option<u32> {
        while let Some(i) = self.retry.pop() {
            if self.take(i) {
                return Some(i);
            }
        }
        while self.cursor < self.chunks.len() {
            let i = self.cursor as u32;
            self.cursor += 1;
            if self.take(i) {
                return Some(i);
            }
        }
        None
    }

    /// A requested chunk that will not arrive: hand it out again.
    pub fn requeue(&mut self, index: u32) {
        if let Some(s @ State::Requested) = self.chunks.get_mut(index as usize) {
            *s = State::Missing;
            self.retry.push(index);
        }
    }

    /// A verified chunk. Returns false if it was not outstanding.
    pub fn complete(&mut self, index: u32) -> bool {
        match self.chunks.get_mut(index as usize) {
            Some(s @ State::Requested) => {
                *s = State::Done;
                self.done += 1;
                true
            }
            _ => false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done as usize == self.chunks.len()
    }

    fn take(&mut self, index: u32) -> bool {
        match self.chunks.get_mut(index as usize) {
            Some(s @ State::Missing) => {
                *s = State::Requested;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_in_order_then_retries_first() {
        let mut p = Picker::new(4);
        assert_eq!((p.next(), p.next()), (Some(0), Some(1)));
        p.requeue(0);
        assert_eq!(p.next(), Some(0), "a returned chunk goes out before new ones");
        assert_eq!((p.next(), p.next(), p.next()), (Some(2), Some(3), None));
    }

    #[test]
    fn completion_counts_once() {
        let mut p = Picker::new(2);
        let (a, b) = (p.next().unwrap(), p.next().unwrap());
        assert!(p.complete(a));
        assert!(!p.complete(a), "duplicate");
        p.requeue(a);
        assert_eq!(p.next(), None, "a done chunk is never requeued");
        assert!(p.complete(b));
        assert!(p.is_complete());
    }

    #[test]
    fn unknown_indices_are_ignored() {
        let mut p = Picker::new(1);
        assert!(!p.complete(5));
        p.requeue(5);
        assert_eq!(p.next(), Some(0));
    }
}

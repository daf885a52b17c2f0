//! The table of open read snapshots.
//!
//! The writer asks it for the oldest snapshot still open: pages freed by a
//! commit newer than that snapshot may still be visible to it and are held
//! back from reuse. Register and unregister are O(1); finding the oldest is
//! O(open readers) and happens once per write transaction.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Readers {
    slots: Vec<Option<(u64, Instant)>>,
    vacant: Vec<usize>,
    open: usize,
}

impl Readers {
    /// Records a reader of snapshot `txid`; returns its slot.
    pub fn register(&mut self, txid: u64) -> usize {
        self.open += 1;
        let entry = Some((txid, Instant::now()));
        match self.vacant.pop() {
            Some(slot) => {
                self.slots[slot] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        }
    }

    pub fn unregister(&mut self, slot: usize) {
        debug_assert!(self.slots[slot].is_some());
        self.slots[slot] = None;
        self.vacant.push(slot);
        self.open -= 1;
    }

    /// The commits of the open snapshots, ascending and without repeats,
    /// into `out` (cleared first).
    pub fn snapshots(&self, out: &mut Vec<u64>) {
        out.clear();
        out.extend(self.slots.iter().flatten().map(|&(t, _)| t));
        out.sort_unstable();
        out.dedup();
    }

    /// The oldest snapshot still open.
    pub fn oldest(&self) -> Option<u64> {
        self.slots.iter().flatten().map(|&(t, _)| t).min()
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// How long the longest-open reader has been open.
    pub fn longest_open(&self) -> Option<Duration> {
        self.slots
            .iter()
            .flatten()
            .map(|&(_, since)| since.elapsed())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_tracks_registrations() {
        let mut r = Readers::default();
        assert_eq!(r.oldest(), None);
        let a = r.register(5);
        let b = r.register(3);
        let c = r.register(9);
        assert_eq!(r.oldest(), Some(3));
        r.unregister(b);
        assert_eq!(r.oldest(), Some(5));
        let d = r.register(7);
        assert_eq!(d, b, "vacant slots are reused");
        let mut open = vec![1];
        r.snapshots(&mut open);
        assert_eq!(open, [5, 7, 9]);
        let e = r.register(7);
        r.snapshots(&mut open);
        assert_eq!(open, [5, 7, 9], "one entry per snapshot");
        r.unregister(e);
        r.unregister(a);
        r.unregister(c);
        r.unregister(d);
        r.snapshots(&mut open);
        assert!(open.is_empty());
        assert_eq!((r.oldest(), r.open()), (None, 0));
    }
}

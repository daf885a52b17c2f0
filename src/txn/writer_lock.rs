//! The writer lock, and turns between foreground writers and batched
//! background work (compaction, defragmentation).
//!
//! One write transaction runs at a time; it holds the lock from begin to
//! commit or abort. Background work runs as a series of short batches and
//! must neither delay foreground writers by much nor be starved by them:
//!
//! * a foreground writer counts itself in `waiting_writers` while it waits,
//!   and a batch ends early (at its next safe point, after a minimum slice)
//!   when that count is not zero;
//! * a background batch begins by handing the lock to any thread already
//!   waiting for it (fairly), then taking it back: a foreground write waits
//!   for at most the batch in progress instead of being overtaken by the
//!   next one;
//! * a transaction that ends while the other side waits hands the lock over
//!   fairly, rather than leaving it to whichever thread grabs it first:
//!   parking_lot's mutex is only eventually fair (it forces a hand-over
//!   after about half a millisecond), so a thread that begins again at once
//!   takes the lock before the woken waiter runs. A batch that ended early
//!   for a waiting writer then began the next batch ahead of it, again and
//!   again: the slowest 1% of puts during compaction waited through
//!   several batches (median 2.8 ms; the bump at a batch's start misses a
//!   writer that was woken but not yet parked again). Measured in
//!   docs/benchmarks.md.
//!
//! So under a saturating foreground, writers and batches take turns; with an
//! idle foreground, batches run back to back at full size.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, RawMutex};

/// Who waits for the writer lock.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// Foreground writers waiting for the lock.
    foreground: AtomicUsize,
    /// Background batches waiting for the lock.
    background: AtomicUsize,
}

impl Waiting {
    /// Whether a foreground writer waits: a background batch should end.
    pub fn foreground(&self) -> bool {
        self.foreground.load(Ordering::Relaxed) > 0
    }

    fn background(&self) -> bool {
        self.background.load(Ordering::Relaxed) > 0
    }

    /// Tests: acts as if `n` more foreground writers waited (negative:
    /// fewer).
    #[cfg(test)]
    pub fn pretend_foreground(&self, n: isize) {
        if n >= 0 {
            self.foreground.fetch_add(n as usize, Ordering::Relaxed);
        } else {
            self.foreground
                .fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// The held writer lock of a write transaction.
pub(crate) struct WriterGuard<T> {
    /// Always `Some` until dropped.
    guard: Option<ArcMutexGuard<RawMutex, T>>,
    /// Set when the transaction ends while the other side waits (background
    /// work for a foreground writer, a foreground writer for a batch): the
    /// lock then goes straight to the longest waiter.
    hand_over: bool,
    /// Whether a background batch holds it.
    background: bool,
}

impl<T> WriterGuard<T> {
    /// Takes the lock for a foreground writer.
    pub fn foreground(lock: &std::sync::Arc<Mutex<T>>, waiting: &Waiting) -> WriterGuard<T> {
        waiting.foreground.fetch_add(1, Ordering::Relaxed);
        let guard = lock.lock_arc();
        waiting.foreground.fetch_sub(1, Ordering::Relaxed);
        WriterGuard {
            guard: Some(guard),
            hand_over: false,
            background: false,
        }
    }

    /// Takes the lock for a foreground writer if it is free.
    pub fn try_foreground(lock: &std::sync::Arc<Mutex<T>>) -> Option<WriterGuard<T>> {
        lock.try_lock_arc().map(|guard| WriterGuard {
            guard: Some(guard),
            hand_over: false,
            background: false,
        })
    }

    /// Takes the lock for a background batch, after any thread already
    /// waiting has had its turn.
    pub fn background(lock: &std::sync::Arc<Mutex<T>>, waiting: &Waiting) -> WriterGuard<T> {
        waiting.background.fetch_add(1, Ordering::Relaxed);
        let mut guard = lock.lock_arc();
        ArcMutexGuard::bump(&mut guard);
        waiting.background.fetch_sub(1, Ordering::Relaxed);
        WriterGuard {
            guard: Some(guard),
            hand_over: false,
            background: true,
        }
    }

    /// Called as the transaction ends: if the other side waits (background
    /// work after a foreground writer, a foreground writer after a batch),
    /// or `making_way` (a thread flushed the parked transaction and waits
    /// for the lock, see `Shared::make_way`), the lock is handed to the
    /// longest waiter instead of being left to whichever thread grabs it
    /// first.
    pub fn end(&mut self, waiting: &Waiting, making_way: bool) {
        self.hand_over = making_way
            || if self.background {
                waiting.foreground()
            } else {
                waiting.background()
            };
    }
}

impl<T> Deref for WriterGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.guard
            .as_ref()
            .expect("the writer lock is held until dropped")
    }
}

impl<T> DerefMut for WriterGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard
            .as_mut()
            .expect("the writer lock is held until dropped")
    }
}

impl<T> Drop for WriterGuard<T> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            if self.hand_over {
                ArcMutexGuard::unlock_fair(guard);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    #[test]
    fn a_waiting_foreground_writer_is_counted_until_it_holds_the_lock() {
        let lock = Arc::new(Mutex::new(0u32));
        let waiting = Arc::new(Waiting::default());
        let held = WriterGuard::background(&lock, &waiting);
        assert!(!waiting.foreground());
        let (tx, rx) = mpsc::channel();
        let t = {
            let (lock, waiting) = (Arc::clone(&lock), Arc::clone(&waiting));
            std::thread::spawn(move || {
                let mut g = WriterGuard::foreground(&lock, &waiting);
                *g += 1;
                tx.send(()).unwrap();
            })
        };
        // The writer counts itself before it blocks; the count is seen
        // eventually (no sleep: spin on the observable state).
        while !waiting.foreground() {
            std::thread::yield_now();
        }
        assert!(rx.try_recv().is_err(), "the writer got a held lock");
        drop(held);
        rx.recv().unwrap();
        t.join().unwrap();
        assert!(!waiting.foreground());
        assert_eq!(*lock.lock(), 1);
    }

    #[test]
    fn a_foreground_writer_hands_the_lock_over_only_when_background_work_waits() {
        let lock = Arc::new(Mutex::new(Vec::new()));
        let waiting = Arc::new(Waiting::default());
        let mut fg = WriterGuard::foreground(&lock, &waiting);
        fg.end(&waiting, false);
        assert!(!fg.hand_over, "nobody waits: a plain unlock");
        drop(fg);

        let mut fg = WriterGuard::foreground(&lock, &waiting);
        let t = {
            let (lock, waiting) = (Arc::clone(&lock), Arc::clone(&waiting));
            std::thread::spawn(move || {
                let mut g = WriterGuard::background(&lock, &waiting);
                g.push("background");
            })
        };
        while !waiting.background() {
            std::thread::yield_now();
        }
        fg.push("foreground");
        fg.end(&waiting, false);
        // The fair unlock (parking_lot's `unlock_fair`) gives the lock to
        // the parked thread before this one can take it again.
        assert!(fg.hand_over);
        drop(fg);
        t.join().unwrap();
        assert!(!waiting.background());
        assert_eq!(*lock.lock(), ["foreground", "background"]);
    }

    #[test]
    fn a_batch_hands_the_lock_over_only_when_a_foreground_writer_waits() {
        let lock = Arc::new(Mutex::new(()));
        let waiting = Waiting::default();
        let mut bg = WriterGuard::background(&lock, &waiting);
        bg.end(&waiting, false);
        assert!(!bg.hand_over, "nobody waits: a plain unlock");
        drop(bg);
        // Background work waiting does not make a batch hand over (batches
        // run one after another in one thread); a foreground writer does.
        waiting.background.fetch_add(1, Ordering::Relaxed);
        let mut bg = WriterGuard::background(&lock, &waiting);
        bg.end(&waiting, false);
        assert!(!bg.hand_over);
        drop(bg);
        waiting.background.fetch_sub(1, Ordering::Relaxed);
        let mut bg = WriterGuard::background(&lock, &waiting);
        waiting.pretend_foreground(1);
        bg.end(&waiting, false);
        assert!(bg.hand_over, "a writer waits: the lock goes to it");
        waiting.pretend_foreground(-1);
    }
}

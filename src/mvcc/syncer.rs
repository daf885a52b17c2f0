//! The batched mode's background syncer. Writers count their unsynced
//! writes; half way to `max_writes` they wake the syncer, which syncs
//! without stopping them, and a writer that fills `max_writes` hands its
//! writes to the syncer's next round and waits only for the round in
//! flight. It syncs at least every `max_delay` while writes are unsynced,
//! like etcd's backend commits its batch every 100 ms.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{CommitMode, Inner, Store};
use crate::error::{Error, Result};

/// The background syncer's rounds, for writers that fill `max_writes`:
/// they hand their writes to it and wait for the round in flight, not for
/// a sync of their own.
#[derive(Default)]
pub(super) struct SyncRounds {
    pub(super) state: Mutex<RoundState>,
    /// Notified when a round ends.
    pub(super) ended: Condvar,
}

/// The rounds' counters, under [`SyncRounds::state`].
#[derive(Default)]
pub(super) struct RoundState {
    /// Rounds begun and ended (each a sync); a round is in flight while
    /// `begun > ended`.
    pub(super) begun: u64,
    pub(super) ended: u64,
    /// The last round that failed.
    pub(super) failed: u64,
    /// Writes handed over by writers that filled `max_writes`, for the
    /// next round.
    pub(super) handed: u32,
}

/// The batched mode's background syncer.
pub(super) struct Syncer {
    /// A message starts a sync now; dropping it wakes the thread and ends
    /// it.
    pub(super) wake: mpsc::Sender<()>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread: it syncs every `delay` while writes are
    /// unsynced, or at once when a writer or compaction hands it writes.
    pub(super) fn start(inner: &Inner, delay: Duration) -> Result<Syncer> {
        let (wake, rx) = mpsc::channel::<()>();
        // The thread holds its own database handle, not the store: the
        // store's drop stops and joins it, so the last handle (and the
        // file lock) goes away with the store, on the caller's thread.
        let db = inner.db.clone();
        let unsynced = Arc::clone(&inner.unsynced);
        let rounds = Arc::clone(&inner.rounds);
        let thread = std::thread::Builder::new()
            .name("revkv-syncer".into())
            .spawn(move || {
                // Syncs every `max_delay`, or at once when writers
                // ask; ends when the store is dropped (the sender goes
                // away).
                while rx.recv_timeout(delay) != Err(mpsc::RecvTimeoutError::Disconnected) {
                    // The count is taken, not held, during the sync:
                    // writers count on (and hand their count over at
                    // `max_writes`) while the disk works.
                    let n = std::mem::take(&mut *unsynced.lock());
                    let round = {
                        let mut s = rounds.state.lock();
                        let n = n + std::mem::take(&mut s.handed);
                        (n > 0).then(|| {
                            s.begun += 1;
                            (n, s.begun)
                        })
                    };
                    let Some((n, round)) = round else { continue };
                    let failed = db.sync_unmarked().is_err();
                    if failed {
                        *unsynced.lock() += n;
                    }
                    let mut s = rounds.state.lock();
                    s.ended = round;
                    if failed {
                        s.failed = round;
                    }
                    drop(s);
                    rounds.ended.notify_all();
                }
            })
            .map_err(|e| Error::io("starting the sync thread", e))?;
        Ok(Syncer { wake, thread })
    }
}

impl Store {
    /// Batched mode: sync once enough writes are unsynced.
    ///
    /// Half way to `max_writes` the background syncer is asked to start, so
    /// writers go on while the disk works. A writer that fills `max_writes`
    /// hands them to the syncer's next round and waits for the round in
    /// flight, if any, to end: writers never run more than one sync ahead
    /// of the disk, and none waits for a whole sync of its own (it used to
    /// wait out the rest of the round in flight and then its own sync:
    /// 0.17 to 0.78 s beside compaction and defragmentation at 1M keys).
    /// If the round it waited for failed, it syncs itself, so the error
    /// reaches a writer.
    pub(super) fn after_commit(&self, writes: u32) -> Result<()> {
        if let CommitMode::Batched { max_writes, .. } = self.inner.opts.commit {
            let half = (max_writes / 2).max(1);
            let due = {
                let mut n = self.inner.unsynced.lock();
                let before = *n;
                *n += writes;
                if *n < max_writes {
                    let crossed_half = before < half && *n >= half;
                    drop(n);
                    if crossed_half {
                        if let Some(syncer) = &*self.inner.syncer.lock() {
                            // A send fails only while the store is dropped.
                            let _ = syncer.wake.send(());
                        }
                    }
                    return Ok(());
                }
                std::mem::take(&mut *n)
            };
            if self.hand_to_syncer(due) {
                return Ok(());
            }
            // Every write counted in `due` committed before this sync began,
            // so the sync covers it; on failure it stays counted.
            if let Err(e) = self.inner.db.sync_unmarked() {
                *self.inner.unsynced.lock() += due;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Hands `writes` to the background syncer's next round and waits for
    /// the round in flight to end. False if there is no syncer, or the
    /// round waited for failed: the caller then syncs itself.
    pub(super) fn hand_to_syncer(&self, writes: u32) -> bool {
        let rounds = &self.inner.rounds;
        let in_flight = {
            let syncer = self.inner.syncer.lock();
            let Some(syncer) = &*syncer else {
                return false;
            };
            let mut s = rounds.state.lock();
            let in_flight = (s.begun > s.ended).then_some(s.begun);
            s.handed = s.handed.saturating_add(writes);
            drop(s);
            // A send fails only while the store is dropped.
            let _ = syncer.wake.send(());
            in_flight
        };
        let Some(round) = in_flight else {
            return true;
        };
        let mut s = rounds.state.lock();
        while s.ended < round {
            rounds.ended.wait(&mut s);
        }
        s.failed != round
    }

    /// Makes every write so far durable (a no-op in immediate mode).
    pub fn sync(&self) -> Result<()> {
        let n = std::mem::take(&mut *self.inner.unsynced.lock());
        if let Err(e) = self.inner.db.sync() {
            *self.inner.unsynced.lock() += n;
            return Err(e);
        }
        Ok(())
    }
}

//! A write transaction kept open between writes: "parked".
//!
//! A batched store (`mvcc::CommitMode::Batched`) applies each write to the
//! parked transaction and leaves it open instead of committing it. A run of
//! small writes then shares one copy-on-write commit: a page that many of
//! them touch (the revision log's last leaf, the branches above the leaves)
//! is copied and checksummed once per run instead of once per write, and
//! the per-commit bookkeeping is paid once. etcd's backend batches its bbolt
//! transaction the same way. The store's readers read point keys through
//! the parked transaction and have it committed before anything longer (see
//! `mvcc::Store`), so an acknowledged write is visible at once.
//!
//! The parked transaction holds the writer lock. Everyone else who needs
//! that lock (a [`Db::begin_write`], a sync, compaction, defragmentation)
//! goes through [`Shared::lock_writer`] or `WriteTxn::begin`, which count
//! the caller in [`Parked::others`] and then commit the parked transaction
//! before waiting for the lock; a store writer that sees the count commits
//! instead of parking. So nobody waits on a parked transaction: the count
//! goes up before the flush takes the slot, and the store writer checks it
//! while holding the slot, so either the writer sees the count or the
//! flush sees the parked transaction.
//!
//! Lock order: nobody waits for the writer lock while holding the slot. A
//! parked transaction already holds the writer lock, and a store writer
//! that finds the slot empty lets go of it before beginning a transaction.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{RwLock, RwLockWriteGuard};

use super::{Db, Shared, WriteTxn};
use crate::error::{Error, Result};

/// Most pages a parked transaction may hold in memory: a reader that needs
/// the parked writes committed waits for a commit of at most this many
/// pages (checksums and bookkeeping: well under a millisecond).
pub(crate) const PARK_MAX_PAGES: usize = 1024;

/// The slot of the parked transaction.
#[derive(Default)]
pub(crate) struct Parked {
    slot: RwLock<Option<WriteTxn>>,
    /// Whether the slot holds a transaction: the readers' fast check.
    occupied: AtomicBool,
    /// Threads on their way to the writer lock other than by resuming the
    /// parked transaction: a store writer that sees one commits.
    others: AtomicUsize,
}

/// Counts its thread in [`Parked::others`] until dropped.
pub(crate) struct Turn<'a>(&'a AtomicUsize);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Parked {
    /// Counts the caller among those about to wait for the writer lock.
    pub fn enter(&self) -> Turn<'_> {
        self.others.fetch_add(1, Ordering::SeqCst);
        Turn(&self.others)
    }

    /// Whether anyone other than the store's writers is on the way to the
    /// writer lock.
    fn wanted(&self) -> bool {
        self.others.load(Ordering::SeqCst) > 0
    }

    /// Whether a transaction is parked (it may be gone by the time the
    /// caller looks).
    pub fn occupied(&self) -> bool {
        self.occupied.load(Ordering::SeqCst)
    }
}

impl Shared {
    /// Commits the parked transaction, if any, so that its writes are in the
    /// published snapshot. A failure loses the parked writes (acknowledged,
    /// but as unsynced as the batched mode's writes before a crash): the
    /// writer is poisoned so nothing builds on a state that lost them.
    pub(crate) fn flush_parked(&self) -> Result<()> {
        if !self.parked.occupied() {
            return Ok(());
        }
        let slot = self.parked.slot.write();
        if slot.is_none() {
            return Ok(());
        }
        Resumed { slot, shared: self }.commit()
    }

    /// Makes way for a thread about to wait for the writer lock: counts it
    /// among those on the way, then commits the parked transaction, which
    /// holds the lock. Keep the turn until the lock is taken. A failed
    /// flush poisons the writer, for the caller to find under the lock.
    pub(crate) fn make_way(&self) -> Turn<'_> {
        let turn = self.parked.enter();
        let _ = self.flush_parked();
        turn
    }

    /// The writer's state, for work done under the writer lock outside a
    /// write transaction (a sync's steps, trimming the file).
    pub(crate) fn lock_writer(&self) -> parking_lot::MutexGuard<'_, super::Writer> {
        let _turn = self.make_way();
        self.writer.lock()
    }
}

/// The parked transaction, resumed: held exclusively (readers of the slot
/// wait) until [`Resumed::park`], [`Resumed::commit`] or drop, which parks.
pub(crate) struct Resumed<'a> {
    slot: RwLockWriteGuard<'a, Option<WriteTxn>>,
    shared: &'a Shared,
}

impl Db {
    /// Resumes the parked write transaction, or begins one (waiting for the
    /// writer lock like [`Db::begin_write`]) that will be parked.
    pub(crate) fn resume_parked(&self) -> Result<Resumed<'_>> {
        let shared = &*self.shared;
        let slot = shared.parked.slot.write();
        if slot.is_some() {
            return Ok(Resumed { slot, shared });
        }
        // Never wait for the writer lock holding the slot (see the module
        // docs): let go of it, begin, take it again.
        drop(slot);
        let txn = WriteTxn::begin_parked(&self.shared)?;
        let mut slot = shared.parked.slot.write();
        debug_assert!(slot.is_none(), "a parked transaction holds the writer lock");
        *slot = Some(txn);
        shared.parked.occupied.store(true, Ordering::SeqCst);
        Ok(Resumed { slot, shared })
    }

    /// Runs `read` on the parked transaction if one is parked; None if not
    /// (then every acknowledged write is in the published snapshot).
    pub(crate) fn read_parked<R>(&self, read: impl FnOnce(&WriteTxn) -> R) -> Option<R> {
        if !self.shared.parked.occupied() {
            return None;
        }
        self.shared.parked.slot.read().as_ref().map(read)
    }

    /// Commits the parked transaction, if any (see `Shared::flush_parked`).
    pub(crate) fn flush_parked(&self) -> Result<()> {
        self.shared.flush_parked()
    }
}

impl Resumed<'_> {
    /// The transaction.
    pub fn txn(&mut self) -> &mut WriteTxn {
        self.slot
            .as_mut()
            .expect("a resumed slot holds a transaction")
    }

    /// Leaves the transaction parked, unless someone else is on the way to
    /// the writer lock, it holds [`PARK_MAX_PAGES`] or more, `keep` is
    /// false, or it changed nothing: then commits it.
    pub fn park(mut self, keep: bool) -> Result<()> {
        let wanted = self.shared.parked.wanted();
        let txn = self.txn();
        if keep && !wanted && txn.is_changed() && txn.dirty_pages() < PARK_MAX_PAGES {
            txn.hold_in_memory();
            return Ok(());
        }
        self.commit()
    }

    /// Commits the transaction now, holding the slot until the commit is
    /// published (a reader that finds the slot empty must find these
    /// writes in the snapshot). If it had been parked, a failure loses
    /// acknowledged writes and poisons the writer (see
    /// `Shared::flush_parked`); if not, it fails like any commit (only
    /// this call's writes are lost) and the handle stays usable.
    pub fn commit(mut self) -> Result<()> {
        let txn = self
            .slot
            .take()
            .expect("a resumed slot holds a transaction");
        let was_parked = txn.holds_in_memory();
        let result = txn.commit();
        self.shared.parked.occupied.store(false, Ordering::SeqCst);
        drop(self.slot);
        if let (Err(e), true) = (&result, was_parked) {
            let why = format!("committing parked writes: {e}");
            self.shared.lock_writer().poisoned.get_or_insert(why);
        }
        result
    }

    /// Drops the transaction's changes, acknowledged ones included, and
    /// poisons the writer: for a transaction left in an unknown state.
    pub fn abandon(mut self, why: &Error) {
        drop(self.slot.take());
        self.shared.parked.occupied.store(false, Ordering::SeqCst);
        let why = format!("a write failed half-applied and could not be undone: {why}");
        drop(self.slot);
        self.shared.lock_writer().poisoned.get_or_insert(why);
    }
}

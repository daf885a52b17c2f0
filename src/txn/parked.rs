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
//! goes through [`Shared::lock_writer`] or `WriteTxn::begin`, which take
//! the slot, commit the parked transaction and count the caller in
//! [`Parked::locking`] (a sync's step or a foreground `begin_write` takes
//! the lock there and then if it is free)
//! before they let go of the slot and wait for the lock; a store writer
//! that sees the count commits instead of parking, and one that finds the
//! slot empty waits for the count to fall before it begins. So nobody
//! waits on a parked transaction: the flush commits what was parked before
//! it took the slot, and a writer that takes the slot after it sees the
//! count, which it checks while holding the slot. And no store writer runs
//! ahead of such a thread while it is yet to take the lock.
//!
//! Lock order: nobody waits for the writer lock while holding the slot. A
//! parked transaction already holds the writer lock, and a store writer
//! that finds the slot empty lets go of it before beginning a transaction.
//! Such writers begin one at a time (`Parked::beginning`), so whoever holds
//! the writer lock while one of them waits is not parked; they do not
//! count themselves among the others (if they did, two of them would make
//! each other commit in turn: measured at 100,000 needless commits in 26 s
//! of compaction beside a saturating writer).
//!
//! Background work of a batched store (compaction, defragmentation) also
//! runs in the parked transaction, in slices of a few microseconds between
//! foreground writes: no commit per batch, and a writer that arrives waits
//! for the slice in hand only. A slice ends at its next safe point when
//! anyone waits for the slot ([`Parked::contended`]); the slot is then
//! released to the longest waiter, and waiters spin briefly before they
//! sleep, since being woken costs as much as the wait. A point reader does
//! not wait for slices at all when the key it reads has no parked write:
//! writes mark their keys in [`TouchedKeys`] before they are acknowledged,
//! and a reader that finds its key unmarked reads the last commit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Db, Shared, WriteTxn};
use crate::error::{Error, Result};

/// Most pages a parked transaction may hold in memory: a reader that needs
/// the parked writes committed waits for a commit of at most this many
/// pages (checksums and bookkeeping, about 0.6 us a page: 2.1-2.5 ms for
/// 3,500 pages of random puts at 1M keys, against 0.4-0.7 ms at the 1024
/// of earlier builds). Each commit makes the writes after it copy their
/// root-to-leaf paths afresh, and the write that fills the transaction
/// pays for its commit: at 1024 pages, compaction's removals filled it
/// often enough that the slowest 1% of puts beside compaction took 4x
/// their idle time; at 4096, 2.1x (docs/benchmarks.md).
pub(crate) const PARK_MAX_PAGES: usize = 4096;

/// The slot of the parked transaction.
#[derive(Default)]
pub(crate) struct Parked {
    slot: RwLock<Option<WriteTxn>>,
    /// Whether the slot holds a transaction: the readers' fast check.
    occupied: AtomicBool,
    /// Threads on their way to the writer lock other than by resuming the
    /// parked transaction: work done in slices gives way to them.
    others: AtomicUsize,
    /// Those of `others` past their flush, waiting for the writer lock
    /// itself: a store writer that sees one commits instead of parking,
    /// and one that finds the slot empty waits for them before it begins.
    locking: AtomicUsize,
    /// Where store writers wait for `locking` to fall to zero.
    lockers_gone: (Mutex<()>, Condvar),
    /// Threads waiting for the slot (to resume, read or commit the parked
    /// transaction): work done in slices there gives way to them.
    waiters: AtomicUsize,
    /// Held by the one thread that begins a transaction to park.
    beginning: Mutex<()>,
    /// The keys the parked transaction's writes touched.
    touched: TouchedKeys,
}

/// Words of [`TouchedKeys`]: 65,536 bits, so a batch of a few thousand
/// writes leaves most keys unmarked.
const TOUCHED_WORDS: usize = 1024;

/// Which keys the parked transaction's writes may have touched: a Bloom
/// filter of two bits per key, set before a write is acknowledged and
/// cleared once the transaction is committed (published). A key with a bit
/// clear has no write parked: a point read of it can read the last commit
/// instead of waiting for the slot, where background work (compaction) may
/// be in the middle of a slice.
pub(crate) struct TouchedKeys {
    words: Box<[AtomicU64]>,
    /// Whether any bit is set (clearing is then worth its 8 KiB of stores).
    any: AtomicBool,
}

impl Default for TouchedKeys {
    fn default() -> Self {
        TouchedKeys {
            words: (0..TOUCHED_WORDS).map(|_| AtomicU64::new(0)).collect(),
            any: AtomicBool::new(false),
        }
    }
}

impl TouchedKeys {
    /// The key's two bits, as (word, mask) pairs.
    fn bits(key: &[u8]) -> [(usize, u64); 2] {
        let h = crc32fast::hash(key);
        [h & 0xffff, h >> 16].map(|b| ((b as usize >> 6) % TOUCHED_WORDS, 1u64 << (b & 63)))
    }

    /// Marks `key` as written.
    pub fn mark(&self, key: &[u8]) {
        self.any.store(true, Ordering::Release);
        for (w, m) in Self::bits(key) {
            self.words[w].fetch_or(m, Ordering::Release);
        }
    }

    fn may_hold(&self, key: &[u8]) -> bool {
        Self::bits(key)
            .iter()
            .all(|&(w, m)| self.words[w].load(Ordering::Acquire) & m != 0)
    }

    /// Called once the transaction's writes are published (or dropped).
    fn clear(&self) {
        if self.any.swap(false, Ordering::AcqRel) {
            for w in self.words.iter() {
                w.store(0, Ordering::Release);
            }
        }
    }
}

/// Counts its thread in [`Parked::others`] or [`Parked::waiters`] until
/// dropped.
pub(crate) struct Turn<'a>(&'a AtomicUsize);

impl<'a> Turn<'a> {
    fn count(n: &'a AtomicUsize) -> Turn<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Turn(n)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts its thread in [`Parked::locking`] until dropped, then wakes the
/// store writers waiting for the count to fall to zero.
pub(crate) struct LockingTurn<'a>(&'a Parked);

impl<'a> LockingTurn<'a> {
    fn count(parked: &'a Parked) -> LockingTurn<'a> {
        parked.locking.fetch_add(1, Ordering::SeqCst);
        LockingTurn(parked)
    }
}

impl Drop for LockingTurn<'_> {
    fn drop(&mut self) {
        if self.0.locking.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the gate: a writer checks the count and sleeps under
            // it, so it cannot miss this wake-up.
            let (gate, gone) = &self.0.lockers_gone;
            let _gate = gate.lock();
            gone.notify_all();
        }
    }
}

impl Parked {
    /// Counts the caller among those about to wait for the writer lock.
    pub fn enter(&self) -> Turn<'_> {
        Turn::count(&self.others)
    }

    /// Whether anyone other than the store's writers is on the way to the
    /// writer lock.
    fn wanted(&self) -> bool {
        self.others.load(Ordering::SeqCst) > 0
    }

    /// Whether anyone has flushed the slot and now waits for the writer
    /// lock: a transaction parked since then must be committed.
    pub fn locking(&self) -> bool {
        self.locking.load(Ordering::SeqCst) > 0
    }

    /// For a store writer that found the slot empty and is about to begin
    /// a transaction: waits until every thread that made way for itself
    /// has taken the writer lock. Without this wait a writer took the lock
    /// while it was free and the thread was yet to run (on two busy cores
    /// a woken thread can wait milliseconds for a processor), committed
    /// for it, and began again, write after write, until it ran.
    ///
    /// It spins first, as waiters for the slot do (see [`SPIN`]): on an
    /// otherwise idle machine the thread takes the lock within
    /// microseconds, and sleeping until it wakes this one costs more
    /// (sleeping at once raised the put p999 of a store with nothing else
    /// running from 52 to 84 us).
    fn wait_for_lockers(&self) {
        if !self.locking() || spin(|| (!self.locking()).then_some(())).is_some() {
            return;
        }
        let (gate, gone) = &self.lockers_gone;
        let mut gate = gate.lock();
        while self.locking() {
            gone.wait(&mut gate);
        }
    }

    /// Whether a transaction is parked (it may be gone by the time the
    /// caller looks).
    pub fn occupied(&self) -> bool {
        self.occupied.load(Ordering::SeqCst)
    }

    /// Whether anyone waits for the slot or is on the way to the writer
    /// lock: someone holding the slot for work of its own should let go.
    pub fn contended(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0 || self.wanted() || self.locking()
    }

    /// The slot, exclusively, counted among its waiters while it waits (it
    /// spins first, see [`SPIN`]).
    fn write(&self) -> RwLockWriteGuard<'_, Option<WriteTxn>> {
        if let Some(slot) = self.slot.try_write() {
            return slot;
        }
        let _waiting = Turn::count(&self.waiters);
        spin(|| self.slot.try_write()).unwrap_or_else(|| self.slot.write())
    }

    /// The slot, shared, counted among its waiters while it waits.
    fn read(&self) -> RwLockReadGuard<'_, Option<WriteTxn>> {
        if let Some(slot) = self.slot.try_read() {
            return slot;
        }
        let _waiting = Turn::count(&self.waiters);
        spin(|| self.slot.try_read()).unwrap_or_else(|| self.slot.read())
    }

    /// Waits, briefly, while anyone waits for the slot: for work done in
    /// slices, so that a waiter spinning or woken at one slice's end takes
    /// the slot before the next slice does.
    pub fn let_waiters_in(&self) {
        spin(|| (self.waiters.load(Ordering::SeqCst) == 0).then_some(()));
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
        let slot = self.parked.write();
        if slot.is_none() {
            return Ok(());
        }
        Resumed { slot, shared: self }.commit()
    }

    /// Makes way for a thread about to wait for the writer lock: counts it
    /// among those on the way, then takes the slot and commits the parked
    /// transaction, which holds the lock. Before it lets go of the slot it
    /// tries `take` (which must not wait: nobody waits for the writer lock
    /// while holding the slot), so a free lock passes to the caller with no
    /// store writer beginning in between. Keep the turn until the lock is
    /// taken. A failed flush poisons the writer, for the caller to find
    /// under the lock.
    ///
    /// Two counts, so that store writers commit only when they must. Until
    /// the caller holds the slot it is among [`Parked::others`] alone:
    /// whatever is parked then, it commits itself, so store writers go on
    /// parking (background slices give way to it). Before it lets go of
    /// the slot it joins [`Parked::locking`]: a writer that takes the slot
    /// after that sees the count when it parks, and commits. Counting it
    /// there from the start made every store write commit while it waited
    /// for the slot, and letting go of the slot before taking a free lock
    /// let store writers begin, commit and begin again ahead of it: on two
    /// busy cores a woken thread can wait milliseconds for a processor, and
    /// beside compaction the prober's puts committed 3,000-7,000 times in
    /// 14 s, each copying its paths afresh (docs/benchmarks.md).
    pub(crate) fn make_way<G>(
        &self,
        take: impl FnOnce() -> Option<G>,
    ) -> (LockingTurn<'_>, Option<G>) {
        let on_the_way = self.parked.enter();
        let mut resumed = Resumed {
            slot: self.parked.write(),
            shared: self,
        };
        let locking = LockingTurn::count(&self.parked);
        let flushed = resumed
            .slot
            .is_some()
            .then(|| resumed.commit_holding_slot());
        let taken = match &flushed {
            Some((Err(_), _)) => None,
            _ => take(),
        };
        release(resumed.slot, &self.parked);
        if let Some((result, was_parked)) = &flushed {
            poison_on_failure(self, result, *was_parked);
        }
        drop(on_the_way);
        (locking, taken)
    }

    /// Runs `f` on the writer's state without committing the parked
    /// transaction: through it if one is parked (its guard holds the
    /// writer lock, and the slot keeps everyone else out), else under the
    /// writer lock. For a write-ahead's bookkeeping, which needs the
    /// writer's state but not the parked writes: committing them at both
    /// locked steps of every write-ahead round made a batched store commit
    /// its parked transaction several times per sync, each time a wait for
    /// the foreground and a fresh copy of every root-to-leaf path for the
    /// writes after it. `f` holds the slot: it must do no I/O.
    ///
    /// `f` must leave alone what a write transaction in flight relies on:
    /// it may make free runs reusable (the transaction never reaches a
    /// freed run) and change the bookkeeping of unsynced pages, but never
    /// drop a page from memory that the last commit reaches.
    pub(crate) fn with_writer<R>(&self, f: impl FnOnce(&mut super::Writer) -> R) -> R {
        if self.parked.occupied() {
            let mut slot = self.parked.write();
            if let Some(txn) = slot.as_mut() {
                let r = f(txn.writer_state());
                release(slot, &self.parked);
                return r;
            }
        }
        // Nothing parked: a transaction parked from here on is committed
        // by `lock_writer`, which is only the cost this avoids.
        f(&mut self.lock_writer())
    }

    /// The writer's state, for work done under the writer lock outside a
    /// write transaction (a sync's steps, trimming the file).
    pub(crate) fn lock_writer(&self) -> parking_lot::MutexGuard<'_, super::Writer> {
        let (_turn, taken) = self.make_way(|| self.writer.try_lock());
        taken.unwrap_or_else(|| self.writer.lock())
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
        let slot = shared.parked.write();
        if slot.is_some() {
            return Ok(Resumed { slot, shared });
        }
        // Never wait for the writer lock holding the slot (see the module
        // docs): let go of it, begin, take it again. One thread at a time
        // begins, so whoever holds the writer lock meanwhile is not parked.
        drop(slot);
        shared.parked.wait_for_lockers();
        let _beginning = shared.parked.beginning.lock();
        let slot = shared.parked.write();
        if slot.is_some() {
            return Ok(Resumed { slot, shared });
        }
        drop(slot);
        let txn = WriteTxn::begin_parked(&self.shared)?;
        let mut slot = shared.parked.write();
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
        self.shared.parked.read().as_ref().map(read)
    }

    /// Whether a write to `key` may be parked: if not, the last commit
    /// holds every acknowledged write to it (see [`TouchedKeys`]).
    pub(crate) fn parked_may_hold(&self, key: &[u8]) -> bool {
        let parked = &self.shared.parked;
        parked.occupied() && parked.touched.may_hold(key)
    }

    /// Commits the parked transaction, if any (see `Shared::flush_parked`).
    pub(crate) fn flush_parked(&self) -> Result<()> {
        self.shared.flush_parked()
    }

    /// Whether anyone waits for the parked transaction or the writer lock:
    /// background work done in the parked transaction should park it.
    pub(crate) fn parked_contended(&self) -> bool {
        self.shared.parked.contended()
    }

    /// Waits, briefly, while anyone waits for the parked transaction: for
    /// background work done there in slices, before it resumes.
    pub(crate) fn let_parked_waiters_in(&self) {
        self.shared.parked.let_waiters_in()
    }
}

/// How long a thread waiting for the slot spins before it sleeps. The slot
/// is held for microseconds at a time (a write, a point read, a slice of
/// background work); being woken from a sleep takes about as long again on
/// a busy machine, and a waiter that sleeps costs the one it waits for a
/// wake-up call.
const SPIN: Duration = Duration::from_micros(50);

/// Tries `attempt` until it succeeds or [`SPIN`] has passed.
fn spin<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + SPIN;
    loop {
        for _ in 0..8 {
            std::hint::spin_loop();
        }
        if let Some(t) = attempt() {
            return Some(t);
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

/// A failed commit of parked writes loses acknowledged writes: poisons the
/// writer (see `Shared::flush_parked`). Called without the slot, since it
/// takes the writer lock.
fn poison_on_failure(shared: &Shared, result: &Result<()>, was_parked: bool) {
    if let (Err(e), true) = (result, was_parked) {
        let why = format!("committing parked writes: {e}");
        shared.lock_writer().poisoned.get_or_insert(why);
    }
}

/// Lets go of the slot; to the longest waiter if anyone waits, so that a
/// thread that resumes again at once (background work in slices) does not
/// take it back before a woken waiter runs.
fn release(slot: RwLockWriteGuard<'_, Option<WriteTxn>>, parked: &Parked) {
    if parked.contended() {
        RwLockWriteGuard::unlock_fair(slot);
    }
}

impl Resumed<'_> {
    /// The transaction.
    pub fn txn(&mut self) -> &mut WriteTxn {
        self.txn_and_touched().0
    }

    /// The transaction, and the record of the keys its writes touch: a
    /// write must mark its keys before it is acknowledged.
    pub fn txn_and_touched(&mut self) -> (&mut WriteTxn, &TouchedKeys) {
        let txn = self
            .slot
            .as_mut()
            .expect("a resumed slot holds a transaction");
        (txn, &self.shared.parked.touched)
    }

    /// Leaves the transaction parked, unless someone else waits for the
    /// writer lock (see [`Shared::make_way`]), it holds [`PARK_MAX_PAGES`]
    /// or more, `keep` is false, or it changed nothing: then commits it.
    pub fn park(mut self, keep: bool) -> Result<()> {
        let locking = self.shared.parked.locking();
        let txn = self.txn();
        if keep && !locking && txn.is_changed() && txn.dirty_pages() < PARK_MAX_PAGES {
            txn.hold_in_memory();
            release(self.slot, &self.shared.parked);
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
        let (result, was_parked) = self.commit_holding_slot();
        release(self.slot, &self.shared.parked);
        poison_on_failure(self.shared, &result, was_parked);
        result
    }

    /// Commits the transaction, leaving the slot held and empty (a reader
    /// that finds the slot empty must find these writes in the snapshot).
    /// Also returns whether it had been parked, for [`poison_on_failure`]
    /// once the slot is released.
    fn commit_holding_slot(&mut self) -> (Result<()>, bool) {
        let txn = self
            .slot
            .take()
            .expect("a resumed slot holds a transaction");
        let was_parked = txn.holds_in_memory();
        let result = txn.commit();
        // After the commit is published (or failed, which poisons): a
        // reader that finds a key unmarked finds its writes there.
        self.shared.parked.touched.clear();
        self.shared.parked.occupied.store(false, Ordering::SeqCst);
        (result, was_parked)
    }

    /// Drops the transaction's changes, acknowledged ones included, and
    /// poisons the writer: for a transaction left in an unknown state.
    pub fn abandon(mut self, why: &Error) {
        drop(self.slot.take());
        self.shared.parked.touched.clear();
        self.shared.parked.occupied.store(false, Ordering::SeqCst);
        let why = format!("a write failed half-applied and could not be undone: {why}");
        drop(self.slot);
        self.shared.lock_writer().poisoned.get_or_insert(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_keys_hold_what_was_marked_until_cleared() {
        let touched = TouchedKeys::default();
        let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("/k/{i}").into_bytes()).collect();
        assert!(keys.iter().all(|k| !touched.may_hold(k)), "nothing marked");
        for k in &keys[..250] {
            touched.mark(k);
        }
        // No false negatives; few false positives at this load (two bits
        // of 65,536 per key, 250 keys: about 0.003%).
        assert!(keys[..250].iter().all(|k| touched.may_hold(k)));
        let false_positives = keys[250..].iter().filter(|k| touched.may_hold(k)).count();
        assert!(false_positives <= 2, "{false_positives} of 250");
        touched.clear();
        assert!(keys.iter().all(|k| !touched.may_hold(k)), "cleared");
        assert!(touched.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    use crate::txn::{Durability, Options, TxnRead};

    /// Writes `key` in the parked transaction (beginning one) and returns
    /// it resumed, holding the slot.
    fn write<'d>(db: &'d Db, key: &[u8]) -> Resumed<'d> {
        let mut resumed = db.resume_parked().unwrap();
        let w = resumed.txn();
        let t = w.open_table("t").unwrap();
        w.insert(t, key, b"v").unwrap();
        resumed
    }

    fn open(dir: &std::path::Path) -> Db {
        Options::new()
            .durability(Durability::None)
            .open(dir.join("db"))
            .unwrap()
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri cannot execute file-backed mappings, which opening reads through"
    )]
    fn a_store_writer_commits_only_for_a_thread_past_its_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let parked = &db.shared.parked;
        // On the way, not yet holding the slot: whatever is parked when it
        // gets there, it commits itself, so the writer parks.
        let on_the_way = parked.enter();
        write(&db, b"a").park(true).unwrap();
        assert!(parked.occupied(), "parked while the other is on the way");
        assert!(parked.contended(), "background slices give way to it");
        drop(on_the_way);
        // Making way commits what is parked and counts the caller as
        // waiting for the lock until its turn is dropped.
        let txid = db.stats().txid;
        let (locking, _) = db.shared.make_way(|| None::<()>);
        assert!(!parked.occupied(), "the flush committed the parked write");
        assert_eq!(db.stats().txid, txid + 1);
        assert!(parked.locking() && !parked.wanted());
        assert!(parked.contended());
        drop(locking);
        assert!(!parked.locking() && !parked.contended());
        // Past its flush: a writer that parks now commits instead (one
        // that had found the slot empty would wait for it first).
        let resumed = write(&db, b"b");
        let locking = LockingTurn::count(parked);
        resumed.park(true).unwrap();
        assert!(
            !parked.occupied(),
            "committed for the thread waiting for the lock"
        );
        assert_eq!(db.stats().txid, txid + 2);
        drop(locking);
        write(&db, b"c").park(true).unwrap();
        assert!(parked.occupied(), "parked again once nobody waits");
    }

    /// A thread that takes the writer lock while store writers keep
    /// parking gets it: each writer either finds its transaction committed
    /// by the flush or, parking after the flush, commits it.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri cannot execute file-backed mappings, which opening reads through"
    )]
    fn a_thread_making_way_gets_the_lock_while_writers_keep_parking() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut n = 0u64;
                // At least one write after the locker finished, so the
                // writes overlap it whatever the scheduling.
                while !done.load(Ordering::SeqCst) || n == 0 {
                    write(&db, &n.to_be_bytes()).park(true).unwrap();
                    n += 1;
                }
                n
            });
            for _ in 0..100 {
                let w = db.shared.lock_writer();
                assert!(
                    !db.shared.parked.occupied(),
                    "no transaction parked under the lock"
                );
                drop(w);
            }
            done.store(true, Ordering::SeqCst);
            let n = writer.join().unwrap();
            db.flush_parked().unwrap();
            let r = db.begin_read().unwrap();
            let t = r.open_table("t").unwrap();
            for i in 0..n {
                assert!(
                    r.get(t, &i.to_be_bytes()).unwrap().is_some(),
                    "write {i} of {n}"
                );
            }
        });
    }
}

//! Syncing: making unsynced commits durable.
//!
//! Commits made with [`Durability::None`] keep their pages in memory
//! ([`Shared::unwritten`]) and write no meta. A sync makes all of them
//! durable in up to three steps:
//!
//! 1. **Write-ahead**, when the last commit `T` reaches many pages held in
//!    memory: list them under the writer lock, then write them to their
//!    places in the file and sync them *without* the lock, reading them
//!    straight from memory, so writers keep committing while the disk works.
//!    Sound because every such page was allocated after the last durable
//!    commit (it is free in every meta on disk, so no fallback needs what it
//!    overwrites), and until the write-ahead ends a listed page that a commit
//!    frees is neither reused nor dropped from memory (`Writer::release`
//!    defers it, `Writer::release_pending` holds back its retirement).
//!    Afterwards, under the lock, if every page `T` held was listed, every
//!    page of commits up to `T` that later commits reach is on stable
//!    storage: `data_synced_txid` records it, new snapshots read those pages
//!    from the file, and memory lets go of them once older snapshots end.
//! 2. **A durable commit**, itself a last write-ahead round: made under the
//!    writer lock with a free list and the meta of a durable commit, but
//!    holding its pages in memory; its pages and those commits made during
//!    step 1 left in memory are then written and synced without the lock,
//!    as in step 1, and only its meta is written and synced under the lock
//!    again. Until that meta is on disk the commit is an unsynced one to
//!    every rule about reuse, so a crash before it opens the durable commit
//!    before. Its meta's `synced_txid` is its own: open verifies nothing.
//! 3. **The synced marker** (explicit syncs and the last handle's close),
//!    when the last durable commit is not a sync's own (an `Immediate`
//!    commit's meta names the durable commit before it): a copy of its
//!    meta in the other slot saying everything is synced, so the next open
//!    verifies nothing.
//!
//! "Under the writer lock" above includes a batched store's parked
//! transaction's hold of it: a write-ahead's two locked steps (no I/O)
//! need the writer's bookkeeping, not the parked writes, and go through
//! the parked transaction without committing it (`Shared::with_writer`).
//! The durable commit and its meta's write and sync commit it: the meta's
//! sync would otherwise hold the slot, which point reads of keys with
//! parked writes wait for.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

use super::write::{PageRuns, VERIFY_BUDGET};
use super::{Db, Durability, Retired, Shared, Writer};
use crate::error::{Error, PageId, Result};
use crate::storage::meta::Meta;

/// Default of the fewest in-memory pages that make a sync write ahead in a
/// round before its durable commit's own: below it, that round writes
/// them, and an earlier one would only add a sync.
pub(crate) const WRITE_AHEAD_MIN_PAGES: u64 = VERIFY_BUDGET;
/// Most write-ahead rounds per sync, the durable commit's own included:
/// each writes what commits made during the previous one left in memory,
/// which shrinks as long as the disk outpaces the writers; the commit's
/// round writes whatever is left.
const WRITE_AHEAD_ROUNDS: usize = 4;

/// Whether a sync is in its last round (its durable commit, which writes
/// under the writer lock whatever is left in memory), and a way to wait
/// for that round to end.
///
/// Batched background work waits for the round in flight, not for the
/// sync lock: a background syncer under a steady write load retakes that
/// lock for its next sync before a woken waiter runs, and compaction beside
/// a saturating writer was measured waiting through 83 back-to-back syncs
/// (3.6 s) at a time, 70 s of a compaction that otherwise takes 14 s.
#[derive(Default)]
pub(crate) struct ClosingRound {
    /// Set while a round runs: the waiters' fast check.
    closing: AtomicBool,
    /// Rounds ended so far.
    ended: Mutex<u64>,
    round_ended: Condvar,
}

impl ClosingRound {
    /// Marks a round as running until the guard is dropped (however the
    /// round ends: a waiter must never be left waiting for it).
    fn begin(&self) -> RoundRunning<'_> {
        self.closing.store(true, Ordering::SeqCst);
        RoundRunning(self)
    }

    fn end(&self) {
        let mut ended = self.ended.lock();
        *ended += 1;
        self.closing.store(false, Ordering::SeqCst);
        drop(ended);
        self.round_ended.notify_all();
    }

    /// Waits for the round in flight, if any, to end (or for the next one,
    /// should that one end and another begin before this looks again);
    /// whether there was one.
    fn wait(&self) -> bool {
        if !self.closing.load(Ordering::SeqCst) {
            return false;
        }
        let mut ended = self.ended.lock();
        // `end` clears the flag under this lock: set here, the round seen
        // has not ended, and it ends by counting one more.
        if !self.closing.load(Ordering::SeqCst) {
            return true;
        }
        let seen = *ended;
        while *ended == seen {
            self.round_ended.wait(&mut ended);
        }
        true
    }
}

/// A closing round in flight: ends it when dropped.
struct RoundRunning<'a>(&'a ClosingRound);

impl Drop for RoundRunning<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The pages a write-ahead writes, and what to record once they are synced.
pub(super) struct WriteAhead {
    /// The pages (first page of each run) held in memory, ascending; their
    /// entries stay put until the write-ahead ends (see `Writer::release`
    /// and `Writer::release_pending`), so they are read without the lock.
    ids: Vec<PageId>,
    /// Their size in pages.
    pages: u64,
    /// The commit whose pages these are.
    txid: u64,
    /// The last durable commit and the unsynced pages when taken.
    counted: (u64, u64),
    /// Whether every page of that commit held in memory is among them.
    complete: bool,
}

impl WriteAhead {
    /// Lists the pages the last commit holds in memory and marks them
    /// neither reusable nor removable from memory until
    /// [`Db::finish_write_ahead`]. Pages beyond the file's end are left
    /// out (the write-ahead is then not `complete`).
    pub(super) fn list(shared: &Shared, w: &mut Writer) -> WriteAhead {
        debug_assert!(w.writing_ahead.is_empty() && w.deferred.is_empty());
        let ps = shared.limits.page_size as u64;
        let file_pages = w.file_len / ps;
        let mut ids = Vec::with_capacity(w.unwritten_live.len());
        let (mut pages, mut complete) = (0, true);
        for id in w.unwritten_live.iter() {
            // Every live entry is in memory (`unwritten_live` says so); a
            // missing one is reported when the write-ahead reads it.
            let span = shared
                .unwritten
                .get(id)
                .map_or(1, |buf| buf.len() as u64 / ps);
            if id + span > file_pages {
                // Beyond the file's end: the commit grows the file and
                // writes it (unsynced until its own sync, so the commit
                // must not claim this write-ahead's commit synced).
                complete = false;
                continue;
            }
            ids.push(id);
            pages += span;
        }
        w.writing_ahead = ids.iter().copied().collect();
        w.writing_ahead_bytes = (pages * ps) as usize;
        shared
            .writing_ahead_bytes
            .store(w.writing_ahead_bytes, Ordering::Release);
        WriteAhead {
            ids,
            pages,
            txid: w.meta.txid,
            counted: (w.synced_txid, w.unsynced_pages),
            complete,
        }
    }
}

impl Db {
    /// Makes every commit so far durable (see [`Durability::None`]) and
    /// records that in the meta page, so the next open verifies nothing.
    /// Writers wait only for the final, short part: the bulk of the pages
    /// goes to the file while they keep committing. Also done when the last
    /// handle closes.
    pub fn sync(&self) -> Result<()> {
        if self.shared.read_only {
            return Ok(());
        }
        self.sync_unmarked()?;
        self.mark_synced()
    }

    /// Steps 1 and 2 of a sync: every commit so far durable, without the
    /// marker (a batched store syncs this way; open then verifies at most
    /// the pages of the commits after the write-ahead).
    pub(crate) fn sync_unmarked(&self) -> Result<()> {
        if self.shared.read_only {
            return Ok(());
        }
        let shared = &*self.shared;
        let _one_sync_at_a_time = shared.syncing.lock();
        // Writers keep committing during a write-ahead, so what is left
        // for the commit shrinks round by round while the disk keeps up.
        // Background batches (which dirty pages far faster than the disk
        // writes them) wait out the commit, the last round: what they
        // dirtied meanwhile would be left in memory for the next sync.
        // Earlier rounds keep up with them well enough.
        let rounds = (|| {
            for _ in 1..WRITE_AHEAD_ROUNDS {
                if !self.write_ahead()? {
                    break;
                }
            }
            Ok(())
        })();
        rounds.and_then(|()| {
            let _closing = shared.sync_closing.begin();
            self.commit_durably()
        })
    }

    /// Pacing for batched background work (compaction, defragmentation),
    /// called between batches: waits for a sync in its last round (see
    /// [`Db::sync_unmarked`]), and when unsynced commits
    /// hold more than half of [`Options::unwritten_limit`](super::Options)
    /// in memory, syncs itself (its writes ahead of the writer lock).
    /// Either way the background work waits for the disk instead of
    /// dirtying pages that a commit, a sync's or a foreground writer's,
    /// would have to write under the writer lock. Durable commits hold
    /// nothing in memory: a no-op for them.
    pub(crate) fn pace_background(&self) -> Result<()> {
        self.pace_background_with(|| false)
    }

    /// [`Db::pace_background`], with `hand_off` tried before syncing here:
    /// a caller with a background syncer starts a round of it instead
    /// (true) so the work goes on while the disk writes; false (no syncer,
    /// or its last round failed) makes this thread sync, which also
    /// surfaces the error.
    pub(crate) fn pace_background_with(&self, hand_off: impl FnOnce() -> bool) -> Result<()> {
        let shared = &*self.shared;
        if shared.read_only || shared.durability == Durability::Immediate {
            return Ok(());
        }
        if shared.sync_closing.wait() {
            return Ok(());
        }
        // Without the writer lock: taking it commits a parked transaction,
        // which background work done there (batched compaction) must not
        // cause between every two of its slices.
        let held = shared
            .unwritten
            .bytes()
            .saturating_sub(shared.writing_ahead_bytes.load(Ordering::Acquire));
        if held <= shared.unwritten_limit / 2 || hand_off() {
            return Ok(());
        }
        // A whole sync, not only a write-ahead: the pages this work frees
        // become reusable only once a durable commit no longer reaches
        // them. Without it a compaction with no foreground writes (so no
        // batched syncs) grew a 4.5 GB file to 6.6 GB instead of reusing
        // what it freed.
        self.sync_unmarked()
    }

    /// Step 1: takes note of the pages the last commit holds in memory
    /// (under the writer lock, briefly), then writes them to the file and
    /// syncs without the lock. Returns whether it wrote anything.
    fn write_ahead(&self) -> Result<bool> {
        match self.begin_write_ahead()? {
            Some(ahead) => self.finish_write_ahead(ahead).map(|()| true),
            None => Ok(false),
        }
    }

    /// The locked half of a write-ahead (see [`WriteAhead::list`]); `None`
    /// if too few pages are held in memory to be worth it.
    fn begin_write_ahead(&self) -> Result<Option<WriteAhead>> {
        let shared = &*self.shared;
        // Lists what the last commit holds in memory: a parked
        // transaction's writes are not needed, so it stays parked.
        shared.with_writer(|w| {
            if let Some(why) = &w.poisoned {
                return Err(Error::Poisoned(why.clone()));
            }
            if (w.unwritten_live.len() as u64) < shared.write_ahead_min {
                return Ok(None);
            }
            Ok(Some(WriteAhead::list(shared, w)))
        })
    }

    /// The unlocked half: writes the pages, neighbours coalesced, and syncs
    /// them, then records what is on stable storage now and makes pages
    /// freed meanwhile reusable.
    fn finish_write_ahead(&self, ahead: WriteAhead) -> Result<()> {
        let shared = &*self.shared;
        let ps = shared.limits.page_size as u64;
        let txid = ahead.txid;
        let mut write = |start: PageId, run: &[&[u8]]| {
            shared
                .file
                .write_run(run, start * ps)
                .map_err(|e| Error::io(format!("writing ahead pages at {start}"), e))
        };
        let mut runs = PageRuns::new(ps);
        let result = ahead
            .ids
            .iter()
            .try_for_each(|&id| {
                // Held since `begin_write_ahead` listed it: entries in
                // `writing_ahead` are neither replaced nor removed.
                let buf = shared
                    .unwritten
                    .get(id)
                    .ok_or_else(|| Error::corrupt(id, "a page being written ahead left memory"))?;
                runs.push(id, buf, &mut write)
            })
            .and_then(|()| runs.finish(&mut write))
            .and_then(|()| {
                shared.file.sync().map_err(|e| {
                    // A failed sync may have dropped any unsynced page,
                    // earlier write-outs' included, and a later sync could
                    // still succeed: only reopening (which verifies) tells
                    // what the disk holds.
                    let what = format!("syncing pages written ahead of transaction {txid}");
                    shared.lock_writer().poisoned = Some(format!("{what}: {e}"));
                    Error::io(what, e)
                })
            });
        if result.is_ok() {
            // The file holds exactly these bytes now, and none of these pages
            // is reused before the write-ahead ends (below): reads of them
            // from the file need not check their checksums. Done before
            // taking the writer lock, which writers wait for.
            let ps = ps as usize;
            for &id in &ahead.ids {
                if let Some(buf) = shared.unwritten.get(id) {
                    shared.verified.insert(id, (buf.len() / ps) as u64);
                }
            }
        }
        // A parked transaction stays parked: this only records what is on
        // stable storage and makes runs freed meanwhile reusable. Memory
        // lets go of the pages written only at a later transaction's
        // begin (`Writer::release_pending`), after the parked one ended.
        shared.with_writer(|w| {
            if result.is_ok() {
                let synced = if ahead.complete {
                    Synced::Commit(txid)
                } else {
                    Synced::Pages(ahead.pages)
                };
                record_write_ahead(shared, w, ahead.counted, synced);
            }
            w.end_write_ahead(&shared.unwritten);
            shared.writing_ahead_bytes.store(0, Ordering::Release);
        });
        result
    }

    /// Step 2: a durable commit if any commit is unsynced (unsynced commits
    /// wrote no free list and no meta: a durable commit with no changes of
    /// its own writes both). The commit is made under the writer lock but
    /// its pages are written and synced after it is released, like a
    /// write-ahead, and only the meta is written and synced under the lock
    /// again (see `WriteTxn::commit_for_sync`).
    pub(super) fn commit_durably(&self) -> Result<()> {
        let unsynced = {
            let w = self.shared.lock_writer();
            w.synced_txid < w.meta.txid
        };
        if !unsynced {
            return Ok(());
        }
        let (meta, slot, ahead) = self.begin_write()?.commit_for_sync()?;
        let complete = ahead.complete;
        self.finish_write_ahead(ahead)?;
        if !complete {
            // Cannot happen (the commit grew the file to hold every page it
            // listed), but should it, the meta would claim pages synced
            // that are not: make everything durable the plain way instead.
            debug_assert!(complete, "a sync's commit listed pages beyond the file");
            let mut txn = self.begin_write()?;
            txn.force();
            txn.set_durability(Durability::Immediate);
            return txn.commit();
        }
        // Pages that later commits wrote out meanwhile (past the unwritten
        // limit) sit in the page cache: the meta's sync would flush them
        // with the lock held (0.1 s a sync during bulk overwrites). Flush
        // them first, without it.
        let written_out = self.shared.state.lock().snapshot.written > meta.txid;
        if written_out {
            self.shared.file.sync().map_err(|e| {
                let what = format!("syncing pages written after transaction {}", meta.txid);
                self.shared.lock_writer().poisoned = Some(format!("{what}: {e}"));
                Error::io(what, e)
            })?;
        }
        // Under the writer lock proper, committing a parked transaction:
        // going through it would hold its slot for the meta's sync, and
        // point reads of keys it wrote wait for the slot.
        let mut w = self.shared.lock_writer();
        write_sync_meta(&self.shared, &mut w, meta, slot)
    }

    /// Step 3: marks the last commit synced in its meta, so the next open
    /// verifies nothing.
    pub(super) fn mark_synced(&self) -> Result<()> {
        let mut w = self.shared.lock_writer();
        if w.synced_txid != w.meta.txid {
            // An unsynced commit slipped in after the durable one. Even if
            // it wrote its pages out, it wrote no free list (its meta names
            // the durable one's), so a copy of its meta must never reach the
            // disk. Everything before the sync is durable already.
            return Ok(());
        }
        sync_writer(&self.shared, &mut w)
    }
}

/// Ends a sync's durable commit (see [`Db::commit_durably`]): its pages,
/// and every page of the commits before it, are on stable storage, so its
/// meta, which says so (`synced_txid` its own), goes to the slot that does
/// not hold the durable meta, and is synced.
///
/// Under the writer lock, so no other meta is written meanwhile. A durable
/// commit made since (another thread's [`Durability::Immediate`] commit)
/// wrote a newer meta into that same slot: nothing is left to do then,
/// and writing this one would undo it.
fn write_sync_meta(shared: &Shared, w: &mut Writer, meta: Meta, slot: u64) -> Result<()> {
    if let Some(why) = &w.poisoned {
        return Err(Error::Poisoned(why.clone()));
    }
    if w.synced_txid >= meta.txid {
        return Ok(());
    }
    debug_assert_eq!(slot, 1 - w.durable_slot);
    debug_assert!(w.data_synced_txid >= meta.txid);
    let ps = shared.limits.page_size;
    let mut buf = vec![0u8; ps];
    meta.encode(&mut buf);
    let result = shared
        .file
        .write_at(&buf, slot * ps as u64)
        .and_then(|()| shared.file.sync());
    if let Err(e) = result {
        let what = format!("writing the meta page of transaction {}", meta.txid);
        w.poisoned = Some(format!("{what}: {e}"));
        return Err(Error::io(what, e));
    }
    w.synced_txid = meta.txid;
    w.durable_slot = slot;
    w.meta_slot = slot;
    shared.publish_space(w);
    Ok(())
}

/// What a finished write-ahead put on stable storage.
enum Synced {
    /// Every page of this commit (and so of every earlier one) that later
    /// commits reach.
    Commit(u64),
    /// Only these many pages: some of the commit's were beyond the file's
    /// end, so open must still verify back to the last durable commit, and
    /// these pages count among those it may visit.
    Pages(u64),
}

/// Records a finished write-ahead: the pages it wrote that the last commit
/// still reaches need not be written again. `counted` is the last durable
/// commit and the pages written but unsynced then: a write-ahead of a whole
/// commit synced those too, unless a durable commit came since (the count
/// then started again from zero, with pages newer than the write-ahead).
///
/// After a whole commit `T` was written, every page of commits up to `T`
/// that later commits reach is in the file: snapshots from now on read them
/// there (the published `written` moves to `T`), and memory lets go of them
/// once the snapshots that predate this have ended. Otherwise they stay in
/// memory until the next write-out.
fn record_write_ahead(shared: &Shared, w: &mut Writer, counted: (u64, u64), synced: Synced) {
    // A page freed since is not in `unwritten_live` any more; one written
    // out since by a commit was retired with it.
    let written = std::mem::take(&mut w.writing_ahead);
    let written = written.into_iter().filter(|id| w.unwritten_live.remove(id));
    match synced {
        Synced::Commit(txid) => {
            let (synced_then, unsynced_then) = counted;
            if w.synced_txid == synced_then {
                debug_assert!(w.unsynced_pages >= unsynced_then);
                w.unsynced_pages -= unsynced_then;
            }
            w.data_synced_txid = w.data_synced_txid.max(txid);
            // Known good (`verified`) since their write-ahead ended.
            let ids: Vec<PageId> = written
                .chain(std::mem::take(&mut w.written_ahead))
                .collect();
            w.written_txid = w.written_txid.max(txid);
            w.retired.push_back(Retired {
                read_before: w.meta.txid + 1,
                written: txid,
                ids,
            });
            let mut state = shared.state.lock();
            state.snapshot.written = state.snapshot.written.max(w.written_txid);
        }
        Synced::Pages(pages) => {
            w.written_ahead.extend(written);
            w.unsynced_pages += pages;
        }
    }
}

/// Writes a copy of the last meta, a durable commit's, saying everything up
/// to it is durable, and syncs. After this the next open verifies nothing,
/// and damage to the last commit's pages is reported as corruption instead
/// of being taken for a commit that power loss interrupted.
///
/// The copy goes to the other slot, never over the meta it copies: a write
/// torn by power loss then destroys only the older meta, which the durable
/// commit no longer needs, and open falls back to the original.
fn sync_writer(shared: &Shared, w: &mut Writer) -> Result<()> {
    if let Some(why) = &w.poisoned {
        return Err(Error::Poisoned(why.clone()));
    }
    if w.meta.synced_txid == w.meta.txid {
        return Ok(());
    }
    assert_eq!(
        w.synced_txid, w.meta.txid,
        "only a durable commit (one with its own free list, all its pages synced) can be marked synced"
    );
    let ps = shared.limits.page_size;
    let mut meta = w.meta;
    meta.synced_txid = meta.txid;
    meta.written_pages = 0;
    let mut buf = vec![0u8; ps];
    meta.encode(&mut buf);
    let result = shared
        .file
        .write_at(&buf, (1 - w.meta_slot) * ps as u64)
        .and_then(|()| shared.file.sync());
    if let Err(e) = result {
        w.poisoned = Some(format!("syncing transaction {}: {e}", meta.txid));
        return Err(Error::io(format!("syncing transaction {}", meta.txid), e));
    }
    w.meta = meta;
    w.synced_txid = meta.txid;
    w.data_synced_txid = meta.txid;
    w.meta_slot = 1 - w.meta_slot;
    w.durable_slot = w.meta_slot;
    w.unsynced_pages = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::tests::disk_copy;
    use crate::{Options, TxnRead};

    /// A wait for the closing round returns at once when none runs, and
    /// otherwise only after that round's end.
    #[test]
    fn a_wait_for_the_closing_round_ends_with_that_round() {
        use std::sync::atomic::AtomicBool;
        let closing = ClosingRound::default();
        assert!(!closing.wait(), "no round runs");
        let round = closing.begin();
        let ending = AtomicBool::new(false);
        let started = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            // Whether the waiter gets in before the end or not, it must
            // not return before it.
            let waiter = s.spawn(|| {
                started.wait();
                closing.wait();
                ending.load(Ordering::SeqCst)
            });
            started.wait();
            ending.store(true, Ordering::SeqCst);
            drop(round);
            assert!(waiter.join().unwrap(), "returned before the round ended");
        });
        assert!(!closing.wait(), "the round ended");
    }

    /// Rows per commit: a few pages' worth (small, for Miri's sake).
    const ROWS: usize = 30;

    fn commit(db: &Db, durability: Durability, prefix: &str, value: Option<u8>) {
        let mut w = db.begin_write().unwrap();
        w.set_durability(durability);
        let t = w.open_table("t").unwrap();
        for i in 0..ROWS {
            let key = format!("{prefix}{i:03}");
            match value {
                Some(v) => w.insert(t, key.as_bytes(), &[v; 100]).unwrap(),
                None => w.remove(t, key.as_bytes()).unwrap(),
            };
        }
        w.commit().unwrap();
    }

    /// A table's rows, in order.
    type Rows = Vec<(Vec<u8>, Vec<u8>)>;

    fn contents(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
        snapshot_contents(&db.begin_read().unwrap())
    }

    fn snapshot_contents(r: &crate::ReadTxn) -> Vec<(Vec<u8>, Vec<u8>)> {
        let t = r.open_table("t").unwrap();
        r.range(t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_>>()
            .unwrap()
    }

    /// A database of small pages whose syncs always write ahead.
    fn always_writing_ahead(path: &std::path::Path) -> Db {
        let mut opts = Options::new().page_size(512).durability(Durability::None);
        opts.write_ahead_min = 1;
        opts.open(path).unwrap()
    }

    /// The rows `commit` writes for each (prefix, value), in order.
    fn rows_of(commits: &[(&str, u8)]) -> Rows {
        commits
            .iter()
            .flat_map(|&(p, v)| {
                (0..ROWS).map(move |i| (format!("{p}{i:03}").into_bytes(), vec![v; 100]))
            })
            .collect()
    }

    /// A database whose syncs always write ahead, with room inside the
    /// file (written, then freed, durably) and unsynced pages in that room.
    fn with_pages_held(path: &std::path::Path) -> Db {
        let db = always_writing_ahead(path);
        commit(&db, Durability::Immediate, "k", Some(1));
        commit(&db, Durability::Immediate, "k", None);
        commit(&db, Durability::None, "a", Some(2));
        db
    }

    /// Pages freed and reused while a write-ahead writes their old contents
    /// wait for it to end: its late write never lands on a newer page that a
    /// durable commit already put in the file.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_write_ahead_never_overwrites_a_page_reused_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        // Unsynced pages copied by a write-ahead...
        let ahead = db
            .begin_write_ahead()
            .unwrap()
            .expect("pages held in memory");
        assert!(!ahead.ids.is_empty() && ahead.complete);
        // ...then freed, their room taken by new pages, which a durable
        // commit writes to the file before the write-ahead writes.
        commit(&db, Durability::None, "a", None);
        commit(&db, Durability::None, "b", Some(3));
        commit(&db, Durability::Immediate, "c", Some(4));
        assert!(
            !db.shared.lock_writer().deferred.is_empty(),
            "nothing was freed meanwhile"
        );
        db.finish_write_ahead(ahead).unwrap();
        db.check().unwrap();
        let expected: Vec<_> = (0..ROWS)
            .map(|i| (format!("b{i:03}").into_bytes(), vec![3u8; 100]))
            .chain((0..ROWS).map(|i| (format!("c{i:03}").into_bytes(), vec![4u8; 100])))
            .collect();
        assert_eq!(contents(&db), expected);
        drop(db);
        let db = Options::new().open(&path).unwrap();
        assert!(db.recovery().is_none(), "{:?}", db.recovery());
        db.check().unwrap();
        assert_eq!(contents(&db), expected);
    }

    /// A sync that writes ahead leaves a meta whose `synced_txid` is the
    /// written-ahead commit, and the file as a crash right after it would
    /// leave it opens to the synced state with nothing to recover.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_sync_with_a_write_ahead_is_durable_and_opens_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        commit(&db, Durability::None, "b", Some(3));
        db.sync_unmarked().unwrap();
        let w = db.shared.lock_writer();
        assert_eq!(w.synced_txid, w.meta.txid);
        assert!(w.unwritten_live.is_empty() && w.written_ahead.is_empty());
        drop(w);
        // What the disk holds now, before the last handle's marker.
        let copy = disk_copy(&path);
        let expected = contents(&db);
        drop(db);
        let db = Options::new().read_only(true).open(&copy).unwrap();
        assert!(db.recovery().is_none(), "{:?}", db.recovery());
        db.check().unwrap();
        assert_eq!(contents(&db), expected);
    }

    /// A database that writes every page out (an unwritten limit of zero)
    /// and always writes ahead, with a durable state (`before`, room freed
    /// inside the file) and one unsynced commit on top (`synced` once a
    /// sync makes it durable).
    fn durable_then_unsynced(path: &std::path::Path) -> (Db, Rows, Rows) {
        let mut opts = Options::new()
            .page_size(512)
            .durability(Durability::None)
            .unwritten_limit(0);
        opts.write_ahead_min = 1;
        let db = opts.open(path).unwrap();
        commit(&db, Durability::Immediate, "k", Some(1));
        commit(&db, Durability::Immediate, "k", None);
        let before = contents(&db);
        commit(&db, Durability::None, "a", Some(2));
        let synced = contents(&db);
        (db, before, synced)
    }

    /// Asserts that a crash now (a copy of the file as it is on disk)
    /// opens, checks clean and holds `expected`.
    fn opens_to(path: &std::path::Path, expected: &[(Vec<u8>, Vec<u8>)], step: &str) {
        let copy = disk_copy(path);
        let db = Options::new().read_only(true).open(&copy).unwrap();
        db.check().unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(contents(&db), expected, "{step}");
    }

    /// What a crash leaves at each step of a sync's durable commit whose
    /// pages are written after the writer lock is released: the durable
    /// state before it until its meta is on disk, its own after, however
    /// commits made in between free and reuse pages. Those commits write
    /// every page out (an unwritten limit of zero), so a page reused too
    /// early would be overwritten in the file.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_sync_commit_written_without_the_lock_opens_to_the_state_it_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (db, before, synced) = durable_then_unsynced(&path);
        let opens_to =
            |expected: &[(Vec<u8>, Vec<u8>)], step: &str| opens_to(&path, expected, step);
        let (meta, slot, ahead) = db.begin_write().unwrap().commit_for_sync().unwrap();
        opens_to(&before, "after the commit, before its pages");
        db.finish_write_ahead(ahead).unwrap();
        opens_to(&before, "after its pages, before its meta");
        // Between the write-ahead and the meta: free the synced commit's
        // pages, then allocate (and write out) new ones.
        commit(&db, Durability::None, "a", None);
        commit(&db, Durability::None, "b", Some(3));
        opens_to(&before, "after later commits, before its meta");
        write_sync_meta(&db.shared, &mut db.shared.lock_writer(), meta, slot).unwrap();
        opens_to(&synced, "after its meta");
        commit(&db, Durability::None, "c", Some(4));
        opens_to(&synced, "after one more commit");
        let last = contents(&db);
        db.sync().unwrap();
        opens_to(&last, "after the next sync");
        drop(db);
        let db = Options::new().open(&path).unwrap();
        assert!(db.recovery().is_none(), "{:?}", db.recovery());
        db.check().unwrap();
        assert_eq!(contents(&db), last);
    }

    /// Syncs `db`, closes it and asserts it reopens clean holding `expected`.
    fn synced_reopens_to(db: Db, path: &std::path::Path, expected: &[(Vec<u8>, Vec<u8>)]) {
        db.sync().unwrap();
        drop(db);
        let db = Options::new().open(path).unwrap();
        db.check().unwrap();
        assert_eq!(contents(&db), expected);
    }

    /// Runs `f` in the parked transaction (beginning one) and parks it.
    fn park(db: &Db, f: impl FnOnce(&mut crate::WriteTxn, crate::Table)) {
        let mut resumed = db.resume_parked().unwrap();
        let w = resumed.txn();
        let t = w.open_table("t").unwrap();
        f(w, t);
        resumed.park(true).unwrap();
        assert!(db.shared.parked.occupied(), "parked");
    }

    /// The locked step after a sync's commit that records its pages synced
    /// goes through a transaction parked meanwhile instead of committing
    /// it; the meta's step commits it first (unsynced). At each step a
    /// crash opens to the durable state, never to the parked writes, which
    /// free pages of the commit being synced and allocate new ones; once
    /// synced they are all there.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_sync_leaves_a_transaction_parked_meanwhile_parked_until_its_meta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (db, before, synced) = durable_then_unsynced(&path);
        let opens_to =
            |expected: &[(Vec<u8>, Vec<u8>)], step: &str| opens_to(&path, expected, step);
        let (meta, slot, ahead) = db.begin_write().unwrap().commit_for_sync().unwrap();
        park(&db, |w, t| {
            for i in 0..ROWS {
                w.remove(t, format!("a{i:03}").as_bytes()).unwrap();
                w.insert(t, format!("p{i:03}").as_bytes(), &[5; 100])
                    .unwrap();
            }
        });
        db.finish_write_ahead(ahead).unwrap();
        assert!(
            db.shared.parked.occupied(),
            "recording the write-ahead committed the parked transaction"
        );
        assert_eq!(contents(&db), synced, "parked writes are not published");
        opens_to(&before, "after its pages, before its meta");
        write_sync_meta(&db.shared, &mut db.shared.lock_writer(), meta, slot).unwrap();
        assert!(
            !db.shared.parked.occupied(),
            "committed for the meta's step"
        );
        opens_to(&synced, "after its meta");
        let last = contents(&db);
        assert!(last.iter().any(|(k, _)| k == b"p000") && !last.iter().any(|(k, _)| k == b"a000"));
        synced_reopens_to(db, &path, &last);
    }

    /// A plain write-ahead round, both its locked steps, leaves a parked
    /// transaction parked, and what it wrote stays correct after the
    /// parked one commits on top of it.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_write_ahead_leaves_the_parked_transaction_parked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        let held = contents(&db);
        park(&db, |w, t| {
            w.insert(t, b"parked", b"p").unwrap();
            w.remove(t, b"a000").unwrap();
        });
        assert!(db.write_ahead().unwrap(), "nothing was written ahead");
        assert!(
            db.shared.parked.occupied(),
            "the write-ahead committed the parked transaction"
        );
        assert_eq!(contents(&db), held, "parked writes are not published");
        let (synced_to, last_commit) = db.shared.with_writer(|w| (w.data_synced_txid, w.meta.txid));
        assert_eq!(
            synced_to, last_commit,
            "the last commit's pages are on stable storage"
        );
        assert!(db.shared.parked.occupied());
        db.flush_parked().unwrap();
        let last = contents(&db);
        assert!(
            last.iter().any(|(k, _)| k == b"parked") && !last.iter().any(|(k, _)| k == b"a000")
        );
        synced_reopens_to(db, &path, &last);
    }

    /// A durable commit made by another thread while a sync writes its
    /// commit's pages puts a newer meta in the slot the sync's meta was
    /// meant for: the sync must not write its older meta over it.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_sync_never_writes_its_meta_over_a_newer_durable_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        let (meta, slot, ahead) = db.begin_write().unwrap().commit_for_sync().unwrap();
        commit(&db, Durability::Immediate, "b", Some(3));
        let expected = contents(&db);
        db.finish_write_ahead(ahead).unwrap();
        write_sync_meta(&db.shared, &mut db.shared.lock_writer(), meta, slot).unwrap();
        assert!(db.shared.lock_writer().synced_txid > meta.txid);
        let copy = disk_copy(&path);
        drop(db);
        for path in [copy, path] {
            let db = Options::new().open(&path).unwrap();
            db.check().unwrap();
            assert_eq!(contents(&db), expected);
        }
    }

    /// The synced marker copies only a durable commit's meta: a commit made
    /// after the sync's durable one has no free list of its own (its meta
    /// names the last durable one's), even when it wrote its pages out, so a
    /// marked copy of it would open with pages in use listed as free.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn the_synced_marker_never_copies_a_commit_without_its_free_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // No room in memory: every unsynced commit writes its pages out.
        let db = Options::new()
            .page_size(512)
            .unwritten_limit(0)
            .open(&path)
            .unwrap();
        commit(&db, Durability::Immediate, "a", Some(1));
        commit(&db, Durability::Immediate, "a", None);
        // Slips in between a sync's durable commit and its marker.
        commit(&db, Durability::None, "b", Some(2));
        db.mark_synced().unwrap();
        let copy = disk_copy(&path);
        drop(db);
        let db = Options::new().open(&copy).unwrap();
        db.check().unwrap();
        // Pages the free list wrongly offered would be overwritten here.
        commit(&db, Durability::Immediate, "c", Some(3));
        db.check().unwrap();
        let r = contents(&db);
        assert!(r.iter().all(|(k, _)| k[0] != b'a'));
        assert!(r.iter().all(|(k, v)| k[0] != b'c' || v[0] == 3));
    }

    /// The pages the last commit holds in memory, and that commit's id.
    fn held_by_last_commit(db: &Db) -> (Vec<PageId>, u64) {
        let ids: Vec<PageId> = db.shared.writer.lock().unwritten_live.iter().collect();
        assert!(!ids.is_empty());
        (ids, db.shared.lock_writer().meta.txid)
    }

    /// Whether memory holds the version of commit `txid` or older of any of
    /// `ids` (a newer page at a reused id is another matter).
    fn in_memory(db: &Db, ids: &[PageId], txid: u64) -> bool {
        ids.iter().any(|&id| {
            db.shared
                .unwritten
                .get(id)
                .is_some_and(|b| crate::storage::page::Header(b).txid() <= txid)
        })
    }

    /// Syncs, closes and reopens `db`: it opens clean, checks, and holds
    /// `expected`.
    fn reopens_with(db: Db, path: &std::path::Path, expected: &Rows) {
        db.sync().unwrap();
        drop(db);
        let db = Options::new().open(path).unwrap();
        assert!(db.recovery().is_none(), "{:?}", db.recovery());
        db.check().unwrap();
        assert_eq!(&contents(&db), expected);
    }

    /// After a write-ahead of a whole commit, snapshots read its pages from
    /// the file, and memory lets go of them once the snapshots that read
    /// them from memory have ended (never while one still may).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn pages_written_ahead_leave_memory_once_older_snapshots_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        let expected = contents(&db);
        let older = db.begin_read().unwrap();
        let (ahead, txid) = held_by_last_commit(&db);
        let held = || in_memory(&db, &ahead, txid);
        assert!(db.write_ahead().unwrap());
        assert_eq!(
            db.shared.state.lock().snapshot.written,
            db.shared.lock_writer().meta.txid
        );
        // A commit releases what no snapshot needs: `older` still reads
        // the written-ahead pages from memory.
        commit(&db, Durability::None, "z", Some(9));
        assert!(held());
        assert_eq!(snapshot_contents(&older), expected);
        let newer = db.begin_read().unwrap();
        let newer_expected = snapshot_contents(&newer);
        assert_eq!(newer_expected.len(), 2 * ROWS);
        drop(older);
        commit(&db, Durability::None, "z", None);
        assert!(!held());
        // `newer` began after the write-ahead: it reads them from the file.
        assert!(snapshot_contents(&newer) == newer_expected);
        drop(newer);
        assert_eq!(contents(&db), expected);
        db.check().unwrap();
        reopens_with(db, &path, &expected);
    }

    /// Pages an earlier write-ahead wrote leave memory even while a later
    /// write-ahead is in flight (under a steady write load one nearly always
    /// is: holding every retirement back for it let memory grow with the
    /// load), and the pages that later one lists stay until it ends.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn pages_written_ahead_leave_memory_while_a_later_write_ahead_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = with_pages_held(&path);
        // A snapshot that reads the first pages from memory holds them
        // there until the second write-ahead has begun.
        let older = db.begin_read().unwrap();
        let (first, txid) = held_by_last_commit(&db);
        let held = || in_memory(&db, &first, txid);
        assert!(db.write_ahead().unwrap());
        commit(&db, Durability::None, "b", Some(3));
        assert!(held(), "retired while a snapshot could still read them");
        let ahead = db
            .begin_write_ahead()
            .unwrap()
            .expect("the second commit's pages are held in memory");
        assert!(!ahead.ids.is_empty());
        drop(older);
        // This commit's begin retires the first pages, the second
        // write-ahead still in flight.
        commit(&db, Durability::None, "z", Some(9));
        assert!(!held(), "pages written ahead stayed in memory");
        assert!(
            ahead
                .ids
                .iter()
                .all(|&id| db.shared.unwritten.get(id).is_some()),
            "a page the write-ahead in flight lists left memory"
        );
        db.finish_write_ahead(ahead).unwrap();
        let expected = rows_of(&[("a", 2u8), ("b", 3), ("z", 9)]);
        assert_eq!(contents(&db), expected);
        db.check().unwrap();
        reopens_with(db, &path, &expected);
    }

    /// A long-lived snapshot holds in memory only the written pages it can
    /// reach (those of its commit and before); pages of later commits
    /// leave memory once written, while it is still open, and it goes on
    /// reading what it saw. Without this a pinned stream held through a
    /// write load kept every page written meanwhile in memory.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn an_old_snapshot_holds_in_memory_only_the_pages_it_can_reach() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = always_writing_ahead(&path);
        // Room inside the file for both commits below, so that each
        // write-ahead writes a whole commit (pages past the file's end
        // would wait for a later write-out).
        for prefix in ["k", "l", "m", "n"] {
            commit(&db, Durability::Immediate, prefix, Some(1));
        }
        for prefix in ["k", "l", "m", "n"] {
            commit(&db, Durability::Immediate, prefix, None);
        }
        commit(&db, Durability::None, "a", Some(2));
        let whole_write_ahead = || {
            let ahead = db.begin_write_ahead().unwrap().expect("pages held");
            assert!(ahead.complete, "pages past the end of the file");
            db.finish_write_ahead(ahead).unwrap();
        };
        let older = db.begin_read().unwrap();
        let seen_then = snapshot_contents(&older);
        let (first, first_txid) = held_by_last_commit(&db);
        whole_write_ahead();
        commit(&db, Durability::None, "b", Some(3));
        let (second, second_txid) = held_by_last_commit(&db);
        assert!(second_txid > older.txid());
        // A snapshot that reads the second pages from memory, while the
        // older one goes on.
        let newer = db.begin_read().unwrap();
        let newer_saw = snapshot_contents(&newer);
        whole_write_ahead();
        // This commit's begin retires both write-aheads' pages.
        commit(&db, Durability::None, "z", Some(9));
        assert!(
            in_memory(&db, &first, first_txid) && in_memory(&db, &second, second_txid),
            "retired while a snapshot could still read them"
        );
        assert_eq!(snapshot_contents(&newer), newer_saw);
        drop(newer);
        commit(&db, Durability::None, "z", Some(7));
        assert!(
            !in_memory(&db, &second, second_txid),
            "pages of a commit after the open snapshot stayed in memory"
        );
        assert!(
            in_memory(&db, &first, first_txid),
            "retired while a snapshot could still read them"
        );
        // Pages superseded while still in memory (never written to the
        // file) leave it too, though their room waits for the older
        // snapshot before it is reused.
        commit(&db, Durability::None, "c", Some(4));
        let (third, third_txid) = held_by_last_commit(&db);
        let third: Vec<PageId> = third
            .into_iter()
            .filter(|&id| {
                db.shared
                    .unwritten
                    .get(id)
                    .is_some_and(|b| crate::storage::page::Header(b).txid() == third_txid)
            })
            .collect();
        assert!(!third.is_empty());
        commit(&db, Durability::None, "c", Some(5));
        let third: Vec<PageId> = {
            let live: Vec<PageId> = db.shared.lock_writer().unwritten_live.iter().collect();
            third.into_iter().filter(|id| !live.contains(id)).collect()
        };
        assert!(!third.is_empty(), "the second commit of c freed none");
        commit(&db, Durability::None, "y", Some(1));
        assert!(
            !in_memory(&db, &third, third_txid),
            "pages freed after the open snapshot stayed in memory"
        );
        assert_eq!(snapshot_contents(&older), seen_then);
        drop(older);
        commit(&db, Durability::None, "z", Some(8));
        assert!(
            !in_memory(&db, &first, first_txid),
            "pages stayed in memory after the snapshot that could read them ended"
        );
        let expected = rows_of(&[("a", 2u8), ("b", 3), ("c", 5), ("y", 1), ("z", 8)]);
        assert_eq!(contents(&db), expected);
        db.check().unwrap();
        reopens_with(db, &path, &expected);
    }

    /// A snapshot never looks in memory for a page of a commit newer than
    /// its own: such a pointer can only come from a damaged page, and
    /// memory lets go of newer pages while the snapshot is open.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see pages rewritten in place, which these tests do"
    )]
    fn a_pointer_to_a_page_newer_than_the_snapshot_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = with_pages_held(&dir.path().join("db"));
        let older = db.begin_read().unwrap();
        commit(&db, Durability::None, "b", Some(3));
        let (ids, txid) = held_by_last_commit(&db);
        assert!(txid > older.txid());
        let (id, header) = ids
            .iter()
            .find_map(|&id| {
                let b = db.shared.unwritten.get(id)?;
                let h = crate::storage::page::Header(b);
                (h.txid() == txid).then(|| (id, (h.txid(), h.checksum())))
            })
            .expect("a page of the newer commit in memory");
        let at = crate::storage::page::PageRef {
            id,
            txid: header.0,
            crc: header.1,
        };
        let shared = &db.shared;
        let err = older
            .mapped()
            .node(at, &shared.verified, &shared.unwritten)
            .err()
            .expect("read a page newer than the snapshot");
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("newer than the snapshot"), "{err}");
        // The newest snapshot reads the same page.
        let newer = db.begin_read().unwrap();
        newer
            .mapped()
            .node(at, &shared.verified, &shared.unwritten)
            .unwrap();
    }
}

//! Online defragmentation: give the file's unused space back to the
//! filesystem without stopping readers or writers.
//!
//! Copy-on-write trees free pages all over the file, and the file never
//! shrinks on its own. etcd's defragmentation copies the whole database to a
//! new file while every request waits. revkv instead moves the pages that lie
//! beyond the size the live data needs ("the limit") to free pages below it,
//! in small batches, then cuts the file at the end of the last live
//! page:
//!
//! 1. limit = pages the last commit references, plus a little slack;
//! 2. relocation plans, each made on a snapshot without the writer, find
//!    the leaves whose path or overflow runs reach the limit (most leaves
//!    need nothing, and looking at them is most of the work); relocation
//!    batches then copy those pages, if still at or above the limit, to the
//!    lowest free pages, up to `batch_pages` pages each (copy-on-write does
//!    the rest: the old pages are freed by the commit). With
//!    [`Durability::None`](crate::Durability) (a batched store's database)
//!    a batch runs in the parked transaction (`txn::parked`) between
//!    foreground writes, giving way after any step of a few leaves that a
//!    writer waits behind, and is not committed on its own; a sync (its
//!    writes ahead of the writer lock) follows every four batches' worth
//!    of pages moved, so the pages they free become reusable for the next.
//!    With `Immediate` every batch is a durable write transaction of its
//!    own;
//! 3. a sync, after which the old pages become reusable as soon as no open
//!    snapshot predates the batches;
//! 4. a shrink transaction that lowers the high-water mark to the start of the
//!    free run at the end of the file, and truncates the file once that commit
//!    is durable, in 32 MiB steps. A step holds the writer lock only to
//!    publish the shorter length; the truncation itself runs without it (a
//!    writer that must grow the file meanwhile waits for the step).
//!
//! Readers are never blocked. Defragmentation gives way to foreground
//! writers as compaction does: in the parked transaction after the step in
//! hand; in transactions of its own (`txn::writer_lock`) after a short
//! minimum of work, a writer that ends handing the lock back to the
//! waiting batch. Between batches it paces itself to the disk.
//! [`DefragReport::longest_batch`] is the longest time a batch held the
//! writer lock. Snapshots and pinned streams stay valid: pages they can see
//! are only freed, never rewritten, until they end; pages they still pin at
//! the end of the file keep the file from shrinking that far, and the
//! report says how many.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::txn::relocate::{RelocatePosition, Relocations};
use crate::{Db, Durability, WriteTxn};

/// How defragmentation runs; a builder.
#[derive(Debug, Clone)]
pub struct DefragOptions {
    batch_pages: usize,
    passes: usize,
}

impl Default for DefragOptions {
    fn default() -> Self {
        DefragOptions {
            batch_pages: 512,
            passes: 4,
        }
    }
}

impl DefragOptions {
    /// Defaults: batches of about 512 pages (2 MiB at 4 KiB pages), at most
    /// 4 passes.
    pub fn new() -> DefragOptions {
        DefragOptions::default()
    }

    /// Pages moved per write transaction: smaller batches hold the writer
    /// lock for less time, larger ones finish sooner.
    pub fn batch_pages(mut self, pages: usize) -> DefragOptions {
        self.batch_pages = pages.max(1);
        self
    }

    /// Passes over the data before giving up on pages that concurrent writes
    /// keep placing past the limit.
    pub fn passes(mut self, passes: usize) -> DefragOptions {
        self.passes = passes.max(1);
        self
    }
}

/// What a defragmentation did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefragReport {
    /// File size before, in bytes.
    pub size_before: u64,
    /// File size after, in bytes.
    pub size_after: u64,
    /// Bytes the last commit references afterwards.
    pub bytes_in_use: u64,
    /// Pages copied to lower positions.
    pub pages_moved: u64,
    /// Relocation transactions committed.
    pub batches: u64,
    /// The longest time one batch held the writer lock. Not the longest
    /// pause a concurrent writer can see: a batched store's writer that
    /// fills `max_writes` waits for the sync round in flight, which the
    /// pages defragmentation moves keep busy, and a sync waits for the
    /// truncation step in hand (10-20 ms for 32 MiB on ext4); at 1M keys
    /// the longest put during a defrag took 13 ms (docs/benchmarks.md).
    pub longest_batch: Duration,
    /// Pages open snapshots still pinned at the end, keeping the file from
    /// shrinking further (0 when nothing stood in the way).
    pub pinned_pages: u64,
}

/// Relocation batches between syncs in batched mode (a durable database
/// syncs every batch).
const SYNC_EVERY_BATCHES: usize = 4;

/// The least work a batch of its own transaction does before it ends early
/// for a waiting writer.
const MIN_SLICE: Duration = Duration::from_micros(200);

/// Leaves one step of a batch moves before it looks for a waiting writer:
/// in a transaction of its own, and in the parked transaction (where a
/// writer waits for the step in hand and nothing else: no commit). A leaf
/// moved copies its page and any page above it not yet copied.
const STEP_LEAVES: usize = 16;
const PARKED_STEP_LEAVES: usize = 4;

/// Leaves one relocation plan looks at, on a snapshot taken for it. The
/// snapshot keeps the pages freed meanwhile from reuse until it ends, so it
/// is short: a few milliseconds at most.
const PLAN_LEAVES: usize = 4096;

/// One relocation batch: the planned leaves from where `plan` stands, up to
/// about `budget` pages, in steps of `step` leaves, fewer when `give_way`
/// says to stop (asked after every step). Returns the pages moved.
fn relocate_batch(
    w: &mut WriteTxn,
    limit: u64,
    plan: &mut Relocations,
    budget: usize,
    step: usize,
    mut give_way: impl FnMut(&WriteTxn) -> bool,
) -> Result<usize> {
    let mut moved = 0;
    while !plan.is_used_up() {
        moved += w.relocate(limit, plan, step, budget - moved)?;
        if moved >= budget || give_way(w) {
            break;
        }
    }
    Ok(moved)
}

impl Db {
    /// Defragments the file online with default [`DefragOptions`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use revkv::Db;
    /// let db = Db::open(dir.path().join("db"))?;
    /// let mut w = db.begin_write()?;
    /// let t = w.open_table("t")?;
    /// for i in 0..20_000u32 {
    ///     w.insert(t, &i.to_be_bytes(), &[7; 100])?;
    /// }
    /// w.commit()?;
    /// let mut w = db.begin_write()?;
    /// let t = w.open_table("t")?;
    /// for i in 0..19_000u32 {
    ///     w.remove(t, &i.to_be_bytes())?;
    /// }
    /// w.commit()?;
    /// let report = db.defrag()?;
    /// assert!(report.size_after < report.size_before / 4);
    /// # Ok::<(), revkv::Error>(())
    /// ```
    pub fn defrag(&self) -> Result<DefragReport> {
        self.defrag_with(&DefragOptions::default())
    }

    /// One relocation batch of the leaves `plan` names. With
    /// [`Durability::None`] (a batched store's database) it runs in the
    /// parked transaction, between foreground writes, giving way after any
    /// step that someone waits behind: no commit per batch, a writer waits
    /// for a few leaves' copies at most. Otherwise it is a transaction of its
    /// own that gives way to a waiting writer after [`MIN_SLICE`]. Returns
    /// the pages moved and how long the batch held the writer.
    fn relocation_batch(
        &self,
        limit: u64,
        plan: &mut Relocations,
        opts: &DefragOptions,
    ) -> Result<(usize, Duration)> {
        if self.shared.durability == Durability::None {
            self.let_parked_waiters_in();
            let mut resumed = self.resume_parked()?;
            let began = Instant::now();
            let batch = relocate_batch(
                resumed.txn(),
                limit,
                plan,
                opts.batch_pages,
                PARKED_STEP_LEAVES,
                |_| self.parked_contended(),
            );
            return match batch {
                Ok(moved) => {
                    resumed.park(true)?;
                    Ok((moved, began.elapsed()))
                }
                // Acknowledged writes may share the transaction, now in an
                // unknown state: neither can be kept.
                Err(e) => {
                    resumed.abandon(&e);
                    Err(e)
                }
            };
        }
        let mut w = self.begin_write_yielding()?;
        let began = Instant::now();
        let moved = relocate_batch(&mut w, limit, plan, opts.batch_pages, STEP_LEAVES, |w| {
            w.writer_waiting() && began.elapsed() >= MIN_SLICE
        })?;
        w.commit()?;
        Ok((moved, began.elapsed()))
    }

    /// Defragments the file online; see the [module docs](crate::defrag).
    pub fn defrag_with(&self, opts: &DefragOptions) -> Result<DefragReport> {
        let before = self.stats();
        let ps = before.page_size as u64;
        let mut report = DefragReport {
            size_before: before.file_size,
            size_after: before.file_size,
            bytes_in_use: before.bytes_in_use,
            pages_moved: 0,
            batches: 0,
            longest_batch: Duration::ZERO,
            pinned_pages: 0,
        };
        for _ in 0..opts.passes {
            let moved_before = report.pages_moved;
            let s = self.stats();
            let live = s.bytes_in_use / ps;
            // Room for the free list and for writes that land meanwhile.
            let limit = live + live / 64 + 16;
            if s.allocated_pages > limit {
                let mut pos = RelocatePosition::default();
                let mut plan = Relocations::default();
                let mut unsynced_moves = 0;
                loop {
                    if plan.is_used_up() {
                        // On a snapshot, without the writer: most leaves
                        // need nothing, and looking at them is most of the
                        // work.
                        let snapshot = self.begin_read()?;
                        if snapshot.plan_relocations(limit, &mut pos, PLAN_LEAVES, &mut plan)? {
                            break;
                        }
                        continue;
                    }
                    let (moved, held) = self.relocation_batch(limit, &mut plan, opts)?;
                    report.pages_moved += moved as u64;
                    report.longest_batch = report.longest_batch.max(held);
                    report.batches += 1;
                    // Pages a batch frees are reusable only once a durable
                    // commit no longer reaches them: unsynced batches would
                    // leave the next ones no room below the limit, and they
                    // would push the tail further out instead of emptying
                    // it. Syncs write ahead without the writer lock.
                    unsynced_moves += moved;
                    if unsynced_moves >= SYNC_EVERY_BATCHES * opts.batch_pages {
                        self.sync_unmarked()?;
                        unsynced_moves = 0;
                    } else {
                        self.pace_background()?;
                    }
                }
            }
            // Shrink until the tail stops moving: each shrink frees the
            // previous free-list run, which may itself sit in the tail.
            let mut released_any = false;
            for _ in 0..4 {
                self.sync()?;
                let mut w = self.begin_write()?;
                // The hold starts once the lock is ours: waiting for it is
                // not a pause anyone else sees.
                let start = Instant::now();
                let released = w.shrink();
                w.commit()?;
                report.longest_batch = report.longest_batch.max(start.elapsed());
                report.longest_batch = report.longest_batch.max(self.trim_file());
                if released == 0 {
                    break;
                }
                released_any = true;
            }
            // Another pass only if this one got somewhere: a shrink can
            // release nothing because a concurrent commit put a page at the
            // very end of the file while this pass ran (or a reader still
            // pinned the tail), and the next pass moves it (or finds the
            // reader gone). (Files left at twice the data under a busy
            // writer, once blamed on this, came from the file growing by
            // doubling right after the trim; it now grows by a sixteenth.)
            let moved = report.pages_moved > moved_before;
            if self.stats().allocated_pages <= limit || !(released_any || moved) {
                break;
            }
        }
        let after = self.stats();
        report.size_after = after.file_size;
        report.bytes_in_use = after.bytes_in_use;
        report.pinned_pages = after.pinned_pages;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of 20,000 entries of which the first 19,000 are deleted: the
    /// survivors' pages lie far beyond what they need.
    fn fragmented(dir: &std::path::Path) -> Db {
        let db = Db::open(dir.join("db")).unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        for i in 0..20_000u32 {
            w.insert(t, &i.to_be_bytes(), &[7; 100]).unwrap();
        }
        w.commit().unwrap();
        let mut w = db.begin_write().unwrap();
        let t = w.open_table("t").unwrap();
        for i in 0..19_000u32 {
            w.remove(t, &i.to_be_bytes()).unwrap();
        }
        w.commit().unwrap();
        db
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the mapping is a copy of the file taken when it is made: it does not see later commits"
    )]
    fn a_relocation_batch_gives_way_to_a_waiting_writer_after_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let db = fragmented(dir.path());
        let limit = db.stats().bytes_in_use / db.stats().page_size as u64 + 16;
        let long_ago = Instant::now().checked_sub(MIN_SLICE * 2).unwrap();
        // The table's leaves to move (the catalog's root is low).
        let plan = || {
            let r = db.begin_read().unwrap();
            let (mut pos, mut plan) = (RelocatePosition::default(), Relocations::default());
            while plan.table.is_none() {
                assert!(!r
                    .plan_relocations(limit, &mut pos, 1 << 20, &mut plan)
                    .unwrap());
            }
            assert!(plan.plan.len() > STEP_LEAVES, "{} leaves", plan.plan.len());
            plan
        };

        let mut w = db.begin_write().unwrap();
        let waiting = |w: &WriteTxn| w.writer_waiting() && long_ago.elapsed() >= MIN_SLICE;
        let mut whole = plan();
        let all = relocate_batch(&mut w, limit, &mut whole, 10_000, STEP_LEAVES, waiting).unwrap();
        assert!(
            whole.is_used_up() && all > STEP_LEAVES,
            "nobody waits: the whole plan ({all} pages)"
        );
        drop(w);

        db.shared.waiting.pretend_foreground(1);
        let mut w = db.begin_write().unwrap();
        let mut stepped = plan();
        let first =
            relocate_batch(&mut w, limit, &mut stepped, 10_000, STEP_LEAVES, waiting).unwrap();
        assert!(
            !stepped.is_used_up() && stepped.applied == STEP_LEAVES && first > 0 && first < all,
            "one step: {first} of {all} pages"
        );
        // It resumes where it stopped, and the plan still covers everything.
        let mut moved = first;
        while !stepped.is_used_up() {
            moved +=
                relocate_batch(&mut w, limit, &mut stepped, 10_000, STEP_LEAVES, waiting).unwrap();
        }
        assert_eq!(moved, all);
        drop(w);
        db.shared.waiting.pretend_foreground(-1);
    }
}

//! Online defragmentation: give the file's unused space back to the
//! filesystem without stopping readers or writers.
//!
//! Copy-on-write trees free pages all over the file, and the file never
//! shrinks on its own. etcd's defragmentation copies the whole database to a
//! new file while every request waits. revkv instead moves the pages that lie
//! beyond the size the live data needs ("the limit") to free pages below it,
//! in small write transactions, then cuts the file at the end of the last live
//! page:
//!
//! 1. limit = pages the last commit references, plus a little slack;
//! 2. relocation batches: each a write transaction that copies about
//!    `batch_pages` pages from at or above the limit to the lowest free pages
//!    (copy-on-write does the rest: the old pages are freed by the commit);
//! 3. a sync, after which the old pages become reusable as soon as no open
//!    snapshot predates the batches;
//! 4. a shrink transaction that lowers the high-water mark to the start of the
//!    free run at the end of the file, and truncates the file once that commit
//!    is durable.
//!
//! Readers are never blocked. Writers wait at most for one batch (the writer
//! lock is released between batches). Snapshots and pinned streams stay
//! valid: pages they can see are only freed, never rewritten, until they end;
//! pages they still pin at the end of the file keep the file from shrinking
//! that far, and the report says how many.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::txn::write::RelocatePosition;
use crate::Db;

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
    /// The longest time one batch held the writer lock: the longest pause a
    /// concurrent writer could see.
    pub longest_batch: Duration,
    /// Pages open snapshots still pinned at the end, keeping the file from
    /// shrinking further (0 when nothing stood in the way).
    pub pinned_pages: u64,
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
            let s = self.stats();
            let live = s.bytes_in_use / ps;
            // Room for the free list and for writes that land meanwhile.
            let limit = live + live / 64 + 16;
            if s.allocated_pages > limit {
                let mut pos = RelocatePosition::default();
                loop {
                    let start = Instant::now();
                    // Each batch is durable, so the pages it frees can take the
                    // next batch's pages (unsynced frees are not reusable), and
                    // the tail is emptied instead of pushed further out.
                    let mut w = self.begin_write_yielding()?;
                    w.set_durability(crate::Durability::Immediate);
                    let (done, moved) = w.relocate_tail(limit, &mut pos, opts.batch_pages)?;
                    w.commit()?;
                    report.pages_moved += moved as u64;
                    report.longest_batch = report.longest_batch.max(start.elapsed());
                    report.batches += 1;
                    if done {
                        break;
                    }
                }
            }
            // Shrink until the tail stops moving: each shrink frees the
            // previous free-list run, which may itself sit in the tail.
            let mut released_any = false;
            for _ in 0..4 {
                self.sync()?;
                let start = Instant::now();
                let mut w = self.begin_write()?;
                let released = w.shrink();
                w.commit()?;
                report.longest_batch = report.longest_batch.max(start.elapsed());
                report.longest_batch = report.longest_batch.max(self.trim_file());
                if released == 0 {
                    break;
                }
                released_any = true;
            }
            if self.stats().allocated_pages <= limit || !released_any {
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
